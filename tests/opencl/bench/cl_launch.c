/* cl_launch.c - what a kernel launch costs on an OpenCL device, the floor
 * under a decode step's ~150 launches (run by hand, never by scons test):
 *   cl_launch [device index] [launches]
 * Enqueues `launches` (default 2000) launches of near-empty kernels (one
 * store a group; 2 arguments, 34 ints, or 12 buffers and 21 ints) back to
 * back on one in-order queue, with 1 and 264 groups of 256 items, and
 * prints per launch: the host's time inside the enqueue calls, the wall
 * time from the first enqueue to clFinish, the device's rate with the
 * host out of the way (launches enqueued behind a user event, then
 * released), and with profiling events their mean END - START and gap.
 * Then, on GPUs, what a barrier across all groups of one launch costs
 * (one and two groups a compute unit), and whether the device offers
 * cl_khr_command_buffer. Devices are numbered as tern info numbers them. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device_at.h"

#define MAX_ARGS 34

static const char *src =
    "kernel void few(global int *o, int v) { if (get_local_id(0) == 0) o[get_group_id(0)] = v; }\n"
    "kernel void many(global int *o, int v, int a2, int a3, int a4, int a5, int a6, int a7, int a8,\n"
    "  int a9, int a10, int a11, int a12, int a13, int a14, int a15, int a16, int a17, int a18,\n"
    "  int a19, int a20, int a21, int a22, int a23, int a24, int a25, int a26, int a27, int a28,\n"
    "  int a29, int a30, int a31, int a32, int a33)\n"
    "{ if (get_local_id(0) == 0) o[get_group_id(0)] = v + a2 + a9 + a17 + a33; }\n"
    "kernel void mems(global int *o, int v, global int *b1, global int *b2, global int *b3, global int *b4,\n"
    "  global int *b5, global int *b6, global int *b7, global int *b8, global int *b9, global int *b10,\n"
    "  global int *b11, int a13, int a14, int a15, int a16, int a17, int a18, int a19, int a20, int a21,\n"
    "  int a22, int a23, int a24, int a25, int a26, int a27, int a28, int a29, int a30, int a31, int a32, int a33)\n"
    "{ if (get_local_id(0) == 0) o[get_group_id(0)] = v + a13 + a33 + b1[0] + b11[0]; }\n"
    /* rounds of a grid-wide barrier: every group counts itself in bar[0]
     * and spins until the count reaches the round's total */
    "kernel void grid(global int *o, int rounds, volatile global int *bar)\n"
    "{ int n = get_num_groups(0);\n"
    "  for (int r = 1; r <= rounds; r++) {\n"
    "    barrier(CLK_GLOBAL_MEM_FENCE);\n"
    "    if (get_local_id(0) == 0) { mem_fence(CLK_GLOBAL_MEM_FENCE); atomic_inc(&bar[0]);\n"
    "      while (bar[0] < r * n) ; mem_fence(CLK_GLOBAL_MEM_FENCE); }\n"
    "    barrier(CLK_GLOBAL_MEM_FENCE);\n"
    "  }\n"
    "  if (get_local_id(0) == 0) o[get_group_id(0)] = bar[0]; }\n";

/* name as a whole word of the space-separated extension list */
static int has_ext(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return 1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the probes: kernel, label, argument kinds (as run() reads them), whether
 * each buffer argument is a buffer of its own */
static const struct {
    const char *kernel, *label, *kinds;
    int distinct;
} probes[] = {
    {"few", "2 args", "mi", 0},
    {"many", "34 ints", "miiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii", 0},
    {"mems", "12 bufs, same", "mimmmmmmmmmmmiiiiiiiiiiiiiiiiiiiii", 0},
    {"mems", "12 bufs", "mimmmmmmmmmmmiiiiiiiiiiiiiiiiiiiii", 1},
};

/* us a launch: host = inside the enqueue calls, dev = first enqueue to
 * clFinish; gated = from releasing a user event the launches waited on
 * to clFinish (the device's rate, with the host's enqueueing out of the
 * way); with events, their mean duration and mean gap */
struct timing {
    double host, dev, gated, busy, gap;
};

static cl_context ctx_of(cl_command_queue q)
{
    cl_context c = NULL;
    clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof c, &c, NULL);
    return c;
}

/* kinds: one letter an argument, set before every launch as tern does:
 * i an int, m a buffer (mem[j] for argument j, or all mem[0]) */
static struct timing run(cl_command_queue q, cl_kernel k, const char *kinds, const cl_mem *mem, size_t groups,
                         int launches, int profiled)
{
    struct timing t = {0, 0, 0, 0, 0};
    size_t lws = 256, gws = groups * lws;
    cl_event *ev = profiled ? calloc((size_t)launches, sizeof *ev) : NULL;
    clFinish(q);
    double t0 = now(), in_enqueue = 0;
    for (int i = 0; i < launches; i++) {
        double a = now();
        for (cl_uint j = 0; kinds[j]; j++)
            if (kinds[j] == 'm') clSetKernelArg(k, j, sizeof(cl_mem), &mem[j]);
            else clSetKernelArg(k, j, sizeof(int), &i);
        clEnqueueNDRangeKernel(q, k, 1, NULL, &gws, &lws, 0, NULL, ev ? &ev[i] : NULL);
        in_enqueue += now() - a;
    }
    clFinish(q);
    t.host = 1e6 * in_enqueue / launches;
    t.dev = 1e6 * (now() - t0) / launches;
    cl_event gate = clCreateUserEvent(ctx_of(q), NULL);
    clEnqueueBarrierWithWaitList(q, 1, &gate, NULL);
    for (int i = 0; i < launches; i++) clEnqueueNDRangeKernel(q, k, 1, NULL, &gws, &lws, 0, NULL, NULL);
    double r = now();
    clSetUserEventStatus(gate, CL_COMPLETE);
    clFinish(q);
    t.gated = 1e6 * (now() - r) / launches;
    clReleaseEvent(gate);
    if (ev) {
        cl_ulong prev_end = 0;
        double busy = 0, gap = 0;
        for (int i = 0; i < launches; i++) {
            cl_ulong s = 0, e = 0;
            clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_START, sizeof s, &s, NULL);
            clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_END, sizeof e, &e, NULL);
            busy += 1e-3 * (double)(e - s);
            if (i) gap += 1e-3 * ((double)s - (double)prev_end);
            prev_end = e;
            clReleaseEvent(ev[i]);
        }
        t.busy = busy / launches;
        t.gap = gap / (launches - 1);
        free(ev);
    }
    return t;
}

int main(int argc, char **argv)
{
    int want = argc > 1 ? atoi(argv[1]) : 0, launches = argc > 2 ? atoi(argv[2]) : 2000;
    if (launches < 2) launches = 2;
    cl_device_id dev = device_at(want);
    if (!dev) {
        fprintf(stderr, "cl_launch: no device %d\n", want);
        return 1;
    }
    char name[256] = "", ext[8192] = "";
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, sizeof ext, ext, NULL);
    cl_int e;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
    cl_command_queue plain = clCreateCommandQueue(ctx, dev, 0, &e);
    cl_command_queue prof = clCreateCommandQueue(ctx, dev, CL_QUEUE_PROFILING_ENABLE, &e);
    cl_mem same[MAX_ARGS], distinct[MAX_ARGS];
    for (int j = 0; j < MAX_ARGS; j++) {
        distinct[j] = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 4096 * sizeof(int), NULL, &e);
        same[j] = distinct[0];
    }
    cl_program prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &e);
    if (e != CL_SUCCESS || clBuildProgram(prog, 1, &dev, "", NULL, NULL) != CL_SUCCESS) {
        fprintf(stderr, "cl_launch: building the probe kernels failed\n");
        return 1;
    }
    printf("%s: cl_khr_command_buffer %s, mutable dispatch %s\n", name,
           has_ext(ext, "cl_khr_command_buffer") ? "yes" : "no",
           has_ext(ext, "cl_khr_command_buffer_mutable_dispatch") ? "yes" : "no");
    printf("%-14s %6s %8s %10s %10s %10s %10s %10s\n", "kernel", "groups", "queue", "host us", "wall us",
           "gated us", "busy us", "gap us");
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        cl_kernel k = clCreateKernel(prog, probes[i].kernel, &e);
        const cl_mem *mem = probes[i].distinct ? distinct : same;
        run(plain, k, probes[i].kinds, mem, 1, 100, 0); /* warm up */
        for (int g = 0; g < 2; g++) {
            size_t groups = g ? 264 : 1;
            for (int pq = 0; pq < 2; pq++) {
                struct timing t = run(pq ? prof : plain, k, probes[i].kinds, mem, groups, launches, pq);
                printf("%-14s %6zu %8s %10.2f %10.2f %10.2f", probes[i].label, groups, pq ? "profiled" : "plain",
                       t.host, t.dev, t.gated);
                if (pq) printf(" %10.2f %10.2f", t.busy, t.gap);
                printf("\n");
            }
        }
        clReleaseKernel(k);
    }
    /* grid barriers (GPUs only: every group must be resident at once,
     * which a CPU device's thread pool need not give) */
    cl_device_type type = 0;
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    cl_uint units = 1;
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    cl_kernel grid = clCreateKernel(prog, "grid", &e);
    for (int per_unit = 1; type & CL_DEVICE_TYPE_GPU && per_unit <= 2; per_unit++) {
        size_t lws = 256, gws = (size_t)units * per_unit * lws;
        double us[2];
        for (int j = 0; j < 2; j++) {
            int rounds = j ? 1001 : 1, zero = 0;
            clEnqueueFillBuffer(plain, distinct[1], &zero, sizeof zero, 0, sizeof zero, 0, NULL, NULL);
            clSetKernelArg(grid, 0, sizeof(cl_mem), &distinct[0]);
            clSetKernelArg(grid, 1, sizeof rounds, &rounds);
            clSetKernelArg(grid, 2, sizeof(cl_mem), &distinct[1]);
            clFinish(plain);
            double t = now();
            clEnqueueNDRangeKernel(plain, grid, 1, NULL, &gws, &lws, 0, NULL, NULL);
            clFinish(plain);
            us[j] = 1e6 * (now() - t);
        }
        printf("grid barrier, %zu groups of 256: %.2f us a round\n", gws / lws, (us[1] - us[0]) / 1000);
    }
    clReleaseKernel(grid);
    clReleaseProgram(prog);
    for (int j = 0; j < MAX_ARGS; j++) clReleaseMemObject(distinct[j]);
    clReleaseCommandQueue(plain), clReleaseCommandQueue(prof);
    clReleaseContext(ctx);
    return 0;
}
