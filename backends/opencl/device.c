/* device.c - OpenCL platforms and devices, and the program: the embedded
 * kernel source compiled for the chosen device at init, its binary kept in
 * $XDG_CACHE_HOME/tern/ (default ~/.cache/tern) under a name derived from
 * the device, the driver, the build options and the source, so the next
 * load skips the compiler. A cache file is a header (magic, key hash,
 * size, checksum) and the binary; one that does not match in every field
 * or that the driver refuses is ignored and rebuilt, never trusted. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "opencl.h"

extern const char ocl_source[]; /* generated: kernels/ *.cl, common.cl first */
extern const size_t ocl_source_len;

const char *const ocl_kernel_names[K_COUNT] = {
    [K_GET_ROWS] = "get_rows",   [K_RMS_NORM_Q] = "rms_norm_q", [K_QUANTIZE_ACT] = "quantize_act",
    [K_ELTWISE] = "eltwise",     [K_SOFTMAX] = "softmax",       [K_ROPE_KV] = "rope_kv",
    [K_ATTENTION] = "attention", [K_TMM] = "tmm",
    [K_TMV_QKV] = "tmv_qkv",     [K_TMV_ADD] = "tmv_add",       [K_TMV_GLU] = "tmv_glu",
    [K_TMV_QKV1] = "tmv_qkv1",   [K_TMV_ADD1] = "tmv_add1",     [K_TMV_GLU1] = "tmv_glu1",
    [K_FMV] = "fmv",             [K_FMV1] = "fmv1",             [K_FMV2] = "fmv2",             [K_FMV4] = "fmv4",             [K_Q8ACT] = "q8act",           [K_Q8MV] = "q8mv",
    [K_TMV_CPU] = "tmv_cpu",     [K_FMV_CPU] = "fmv_cpu",
};

const char *ocl_error_name(cl_int e)
{
    switch (e) {
#define E(x) case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_BUILD_PROGRAM_FAILURE) E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE_TYPE)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "CL error";
    }
}

/* ---- enumeration and scores ---- */

static void info_str(cl_device_id d, cl_device_info what, char *buf, size_t n)
{
    buf[0] = 0;
    if (clGetDeviceInfo(d, what, n, buf, NULL) != CL_SUCCESS) buf[0] = 0;
    buf[n - 1] = 0;
}

/* OpenCL C 1.2 or later, a compiler, available, and the local memory the
 * GEMM tile needs. Score: a discrete GPU above the CPU backends (x86 is
 * 20), an integrated one below them, a CPU device (PoCL) 0, so backend =
 * "auto" never picks a CPU device and `--backend opencl` still can. */
static void classify(ocl_devinfo *di)
{
    cl_bool avail = 0, compiler = 0, unified = 0;
    cl_ulong local = 0;
    char cver[64];
    clGetDeviceInfo(di->device, CL_DEVICE_AVAILABLE, sizeof avail, &avail, NULL);
    clGetDeviceInfo(di->device, CL_DEVICE_COMPILER_AVAILABLE, sizeof compiler, &compiler, NULL);
    clGetDeviceInfo(di->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
    clGetDeviceInfo(di->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    clGetDeviceInfo(di->device, CL_DEVICE_TYPE, sizeof di->type, &di->type, NULL);
    clGetDeviceInfo(di->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof di->units, &di->units, NULL);
    clGetDeviceInfo(di->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof di->mem, &di->mem, NULL);
    info_str(di->device, CL_DEVICE_OPENCL_C_VERSION, cver, sizeof cver);
    int major = 0, minor = 0;
    sscanf(cver, "OpenCL C %d.%d", &major, &minor);
    di->unified = unified != 0;
    di->usable = avail && compiler && (major > 1 || (major == 1 && minor >= 2)) && local >= 40 * 1024;
    if (di->type & CL_DEVICE_TYPE_GPU) di->score = unified ? 15 : 50;
    else if (di->type & CL_DEVICE_TYPE_ACCELERATOR) di->score = 10;
    else di->score = 0;
}

ocl_devinfo *ocl_list_devices(const tern_host_api *host, int *n, char *why, size_t whylen)
{
    cl_platform_id plats[16];
    cl_uint np = 0;
    *n = 0;
    cl_int e = clGetPlatformIDs(16, plats, &np);
    if (e != CL_SUCCESS || np == 0) {
        snprintf(why, whylen, "no OpenCL platform (clGetPlatformIDs: %s); install an ICD, e.g. pocl-opencl-icd, "
                 "or register a vendor's in /etc/OpenCL/vendors", e ? ocl_error_name(e) : "0 platforms");
        return NULL;
    }
    ocl_devinfo *list = host->alloc(64 * sizeof *list, 64);
    if (!list) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    for (cl_uint p = 0; p < np && *n < 64; p++) {
        cl_device_id devs[16];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS) continue;
        char pname[96] = "";
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = 0;
        for (cl_uint d = 0; d < nd && *n < 64; d++) {
            ocl_devinfo *di = &list[(*n)++];
            memset(di, 0, sizeof *di);
            di->platform = plats[p];
            di->device = devs[d];
            snprintf(di->platform_name, sizeof di->platform_name, "%s", pname);
            info_str(devs[d], CL_DEVICE_NAME, di->name, sizeof di->name);
            classify(di);
        }
    }
    if (*n == 0) snprintf(why, whylen, "%u OpenCL platform%s but no device", np, np == 1 ? "" : "s");
    return list;
}

int ocl_best_device(const ocl_devinfo *d, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (d[i].usable && (best < 0 || d[i].score > d[best].score)) best = i;
    return best;
}

/* ---- the binary cache ---- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV0 0xcbf29ce484222325ull

typedef struct cache_header {
    char magic[8];     /* "TERNCLB1" */
    uint64_t key;      /* hash of device, driver, options, source */
    uint64_t size;     /* binary bytes that follow */
    uint64_t checksum; /* fnv1a of the binary */
} cache_header;

/* The cache folder (created), or 0 when there is none to use. */
static int cache_dir(const tern_host_api *host, char *dir, size_t n)
{
    /* the environment as it is now first: the host table's cache_dir was
     * read from it once, when the process started */
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME"), *own = getenv("TERN_CACHE_DIR");
    if (own && own[0]) snprintf(dir, n, "%s", own);
    else if (xdg && xdg[0]) snprintf(dir, n, "%s/tern", xdg);
    else if (host->cache_dir && host->cache_dir[0]) snprintf(dir, n, "%s", host->cache_dir);
    else if (home && home[0]) snprintf(dir, n, "%s/.cache/tern", home);
    else return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

static void cache_path(const char *dir, uint64_t key, char *path, size_t n)
{
    snprintf(path, n, "%s/opencl-%016llx.bin", dir, (unsigned long long)key);
}

/* The cached binary for key, or NULL (absent, short, or not matching). */
static unsigned char *cache_read(const tern_host_api *host, const char *path, uint64_t key, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cache_header h;
    unsigned char *bin = NULL;
    if (fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, "TERNCLB1", 8) && h.key == key && h.size > 0 &&
        h.size < ((uint64_t)1 << 31) && (bin = host->alloc((size_t)h.size, 64)) != NULL &&
        fread(bin, 1, (size_t)h.size, f) == h.size && fnv1a(FNV0, bin, (size_t)h.size) == h.checksum) {
        *size = (size_t)h.size;
    } else {
        host->free(bin);
        bin = NULL;
    }
    fclose(f);
    return bin;
}

/* Written to a temporary name, then renamed: readers see all or nothing. */
static void cache_write(const char *path, uint64_t key, const unsigned char *bin, size_t size)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    cache_header h;
    memcpy(h.magic, "TERNCLB1", 8);
    h.key = key;
    h.size = size;
    h.checksum = fnv1a(FNV0, bin, size);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) remove(tmp);
}

/* ---- building ---- */

double ocl_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 1 when the NVIDIA compiler takes dp4a and cvt.f32.f16 as inline PTX
 * (its OpenCL has neither the integer dot product nor the fp16 extension). */
static int probe_dp4a(ocl_ctx *c)
{
    static const char *src =
        "kernel void t(global int *p) { int d; uint a = p[0], b = p[1]; float f, g;\n"
        " asm(\"dp4a.s32.s32 %0, %1, %2, %3;\" : \"=r\"(d) : \"r\"(a), \"r\"(b), \"r\"(0)); p[2] = d;\n"
        " asm(\"{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }\"\n"
        "     : \"=f\"(f), \"=f\"(g) : \"r\"(a)); p[3] = as_int(f + g); }\n";
    cl_int e;
    cl_program p = clCreateProgramWithSource(c->context, 1, &src, NULL, &e);
    if (e != CL_SUCCESS) return 0;
    e = clBuildProgram(p, 1, &c->device, "-cl-std=CL1.2", NULL, NULL);
    clReleaseProgram(p);
    return e == CL_SUCCESS;
}

/* The start of the build log (the first errors), on one line. */
static void build_log(ocl_ctx *c, cl_program p, char *buf, size_t n)
{
    size_t size = 0;
    buf[0] = 0;
    clGetProgramBuildInfo(p, c->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size);
    char *all = size ? c->host->alloc(size + 1, 64) : NULL;
    if (all && clGetProgramBuildInfo(p, c->device, CL_PROGRAM_BUILD_LOG, size, all, NULL) == CL_SUCCESS) {
        all[size] = 0;
        snprintf(buf, n, "%s", all);
        if (getenv("TERN_OPENCL_BUILD_LOG")) fprintf(stderr, "%s\n", all);
    }
    c->host->free(all);
    for (char *s = buf; *s; s++) /* one line */
        if (*s == '\n' || *s == '\r') *s = ' ';
}

static tern_status build_program(ocl_ctx *c, char *err, size_t errlen)
{
    char opts[512], key_text[1024], ver[128] = "", dver[128] = "";
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(c->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    int cr_div = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    /* the rows norm_quant_row keeps in local memory: what tmv (about 20 KB
     * of its own with 256 items) and attention (about 24 KB) leave of the
     * device's local memory (40 KB at least, ocl_list_devices), in floats */
    cl_ulong local = 0;
    clGetDeviceInfo(c->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    long norm_local = (long)((local - 21 * 1024) / 4) / 256 * 256;
    long norm_att = (long)((local - 24 * 1024) / 4) / 256 * 256;
    norm_local = norm_local > 8192 ? 8192 : norm_local;
    norm_att = norm_att > 4096 ? 4096 : norm_att;
    const char *cap = getenv("TERN_OPENCL_NORM_LOCAL"); /* diagnostics: a lower cap, 0 = the global path */
    if (cap && *cap) {
        long v = strtol(cap, NULL, 10) / 4 * 4;
        norm_local = v >= 0 && v < norm_local ? v : norm_local;
        norm_att = v >= 0 && v < norm_att ? v : norm_att;
    }
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DROW_WG=%d -DATT_WG=%d -DATT_SLICES=%d -DMV_WG=%d -DMV_ROWS=%d "
             "-DMV_TOK=%d -DHD_MAX=%d -DNORM_LOCAL=%ld -DNORM_LOCAL_ATT=%ld%s%s%s", c->row_wg, c->att_wg,
             c->att_wg >= 64 ? c->att_wg / 32 : 1, c->mv_wg, c->mv_wg / 16, OCL_MV_TOK, OCL_HD_MAX, norm_local, norm_att,
             c->fp64 ? " -DTERN_FP64" : "", cr_div ? " -cl-fp32-correctly-rounded-divide-sqrt -DTERN_CR_DIV" : "",
             c->nv_dp4a ? " -DTERN_NV_DP4A" : "");
    const char *more = getenv("TERN_OPENCL_BUILD_OPTS"); /* diagnostics: say -cl-nv-verbose (registers a kernel) */
    if (more && *more && strlen(opts) + strlen(more) + 2 < sizeof opts) strcat(strcat(opts, " "), more);
    if (!c->fp64 && !cr_div)
        c->host->log(TERN_LOG_WARN, "opencl: %s has neither fp64 nor correctly rounded f32 division: "
                     "integer paths may differ from scalar in the last bit of their scale", c->device_name);
    clGetPlatformInfo(c->platform, CL_PLATFORM_VERSION, sizeof ver, ver, NULL);
    clGetDeviceInfo(c->device, CL_DEVICE_VERSION, sizeof dver, dver, NULL);
    ver[sizeof ver - 1] = dver[sizeof dver - 1] = 0;
    snprintf(key_text, sizeof key_text, "%s|%s|%s|%s|%s|%s", c->platform_name, ver, c->device_name, dver,
             c->driver, opts);
    uint64_t src_hash = fnv1a(FNV0, ocl_source, ocl_source_len);
    uint64_t key = fnv1a(fnv1a(FNV0, key_text, strlen(key_text)), &src_hash, sizeof src_hash);
    char dir[4096], path[4200];
    int have_dir = cache_dir(c->host, dir, sizeof dir);
    cl_int e;
    double t0 = ocl_now_s();
    if (have_dir) {
        cache_path(dir, key, path, sizeof path);
        size_t size = 0;
        unsigned char *bin = cache_read(c->host, path, key, &size);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int status = CL_SUCCESS;
            c->program = clCreateProgramWithBinary(c->context, 1, &c->device, &size, bins, &status, &e);
            c->host->free(bin);
            if (e == CL_SUCCESS && status == CL_SUCCESS &&
                clBuildProgram(c->program, 1, &c->device, opts, NULL, NULL) == CL_SUCCESS) {
                snprintf(c->build_note, sizeof c->build_note, "program from cache in %.2f s", ocl_now_s() - t0);
                return TERN_OK;
            }
            c->host->log(TERN_LOG_WARN, "opencl: ignoring the cached program %s (the driver refused it); "
                         "rebuilding", path);
            if (c->program) clReleaseProgram(c->program);
            c->program = NULL;
        }
    }
    const char *src = ocl_source;
    c->program = clCreateProgramWithSource(c->context, 1, &src, &ocl_source_len, &e);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "opencl: clCreateProgramWithSource: %s", ocl_error_name(e));
        return TERN_EDEVICE;
    }
    e = clBuildProgram(c->program, 1, &c->device, opts, NULL, NULL);
    if (e != CL_SUCCESS) {
        char log[400];
        build_log(c, c->program, log, sizeof log);
        snprintf(err, errlen, "opencl: building the kernels for %s failed (%s): %s", c->device_name,
                 ocl_error_name(e), log);
        return TERN_EDEVICE;
    }
    snprintf(c->build_note, sizeof c->build_note, "program built in %.2f s", ocl_now_s() - t0);
    if (getenv("TERN_OPENCL_BUILD_LOG")) {
        char log[8];
        build_log(c, c->program, log, sizeof log); /* prints the whole log */
    }
    size_t size = 0;
    if (have_dir && clGetProgramInfo(c->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) == CL_SUCCESS &&
        size > 0) {
        unsigned char *bin = c->host->alloc(size, 64);
        unsigned char *bins[1] = {bin};
        if (bin && clGetProgramInfo(c->program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS)
            cache_write(path, key, bin, size);
        c->host->free(bin);
    }
    return TERN_OK;
}

/* A work-group size from the diagnostics variable `name`: a power of two
 * from 64 to max, else (unset or anything else) dflt. */
static int wg_option(const char *name, int max, int dflt)
{
    const char *v = getenv(name);
    int n = v ? atoi(v) : 0;
    return n >= 64 && n <= max && (n & (n - 1)) == 0 ? n : dflt;
}

tern_status ocl_open_device(ocl_ctx *c, const ocl_devinfo *d, int index, char *err, size_t errlen)
{
    c->platform = d->platform;
    c->device = d->device;
    c->device_index = index;
    const char *variant = getenv("TERN_OPENCL_VARIANT");
    c->cpu_kernels = variant && *variant ? !strcmp(variant, "cpu") : (d->type & CL_DEVICE_TYPE_CPU) != 0;
    c->row_wg = d->type & CL_DEVICE_TYPE_CPU ? OCL_ROW_WG_CPU : OCL_ROW_WG;
    c->mv_wg = wg_option("TERN_OPENCL_MV_WG", 512, OCL_MV_WG);
    c->att_wg = wg_option("TERN_OPENCL_ATT_WG", 256, d->type & CL_DEVICE_TYPE_CPU ? OCL_ATT_WG_CPU : OCL_ATT_WG);
    snprintf(c->device_name, sizeof c->device_name, "%s", d->name);
    snprintf(c->platform_name, sizeof c->platform_name, "%s", d->platform_name);
    info_str(d->device, CL_DRIVER_VERSION, c->driver, sizeof c->driver);
    char ext[4096];
    info_str(d->device, CL_DEVICE_EXTENSIONS, ext, sizeof ext);
    c->fp64 = strstr(ext, "cl_khr_fp64") != NULL && !getenv("TERN_OPENCL_NO_FP64");
    clGetDeviceInfo(d->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof c->max_alloc, &c->max_alloc, NULL);
    cl_int e;
    c->context = clCreateContext(NULL, 1, &c->device, NULL, NULL, &e);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "opencl: clCreateContext on %s: %s", c->device_name, ocl_error_name(e));
        return TERN_EDEVICE;
    }
    c->queue = clCreateCommandQueue(c->context, c->device, c->profile ? CL_QUEUE_PROFILING_ENABLE : 0, &e);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "opencl: clCreateCommandQueue on %s: %s", c->device_name, ocl_error_name(e));
        return TERN_EDEVICE;
    }
    c->nv_dp4a = strstr(c->platform_name, "NVIDIA") && !getenv("TERN_OPENCL_NO_DP4A") && probe_dp4a(c);
    tern_status st = build_program(c, err, errlen);
    if (st && c->nv_dp4a) { /* the probe took the PTX but the program did not: build without */
        c->host->log(TERN_LOG_WARN, "%s; building again without dp4a", err);
        if (c->program) clReleaseProgram(c->program);
        c->program = NULL;
        c->nv_dp4a = 0;
        st = build_program(c, err, errlen);
    }
    if (st) return st;
    for (int k = 0; k < K_COUNT; k++) {
        c->kernels[k] = clCreateKernel(c->program, ocl_kernel_names[k], &e);
        if (e != CL_SUCCESS) {
            snprintf(err, errlen, "opencl: kernel %s: %s", ocl_kernel_names[k], ocl_error_name(e));
            return TERN_EDEVICE;
        }
    }
    int zero[4] = {0, 0, 0, 0};
    c->err_mem = clCreateBuffer(c->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof zero, zero, &e);
    if (e == CL_SUCCESS) c->ctrs = clCreateBuffer(c->context, CL_MEM_READ_WRITE, OCL_CTRS * sizeof(int), NULL, &e);
    if (e == CL_SUCCESS) e = clEnqueueFillBuffer(c->queue, c->ctrs, zero, sizeof zero[0], 0, OCL_CTRS * sizeof(int), 0,
                                                 NULL, NULL);
    if (e == CL_SUCCESS) e = clFinish(c->queue);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "opencl: allocating the error word and counters: %s", ocl_error_name(e));
        return TERN_EDEVICE;
    }
    return TERN_OK;
}

void ocl_close_device(ocl_ctx *c)
{
    if (c->queue) clFinish(c->queue);
    for (int i = 0; i < c->n_ropes; i++) clReleaseMemObject(c->ropes[i].mem);
    if (c->err_mem) clReleaseMemObject(c->err_mem);
    if (c->ctrs) clReleaseMemObject(c->ctrs);
    if (c->scores) clReleaseMemObject(c->scores);
    if (c->q8act) clReleaseMemObject(c->q8act);
    for (int k = 0; k < K_COUNT; k++)
        if (c->kernels[k]) clReleaseKernel(c->kernels[k]);
    if (c->program) clReleaseProgram(c->program);
    if (c->queue) clReleaseCommandQueue(c->queue);
    if (c->context) clReleaseContext(c->context);
}
