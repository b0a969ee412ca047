/* backend.c - the opencl backend's entry table: probe, instance, the op
 * table (every op queues its node; queue.c launches at sync), the node
 * gate, describe and the work report.
 *
 * Environment (read at init):
 *   TERN_OPENCL_PROFILE=1   an event per launch; report() gives time per kernel
 *   TERN_OPENCL_FUSE=0      no fused launches (every node alone); a mask
 *                           of OCL_FUSE_* bits picks some (tests) 
 *   TERN_OPENCL_FAIL=op:N   the launch of the N-th node of op fails (tests)
 *   TERN_OPENCL_FAIL_SYNC=N the N-th sync fails (tests)
 *   TERN_OPENCL_VARIANT=gpu|cpu  the matmul kernels (default: cpu on CPU devices)
 *   TERN_OPENCL_NO_FP64, TERN_OPENCL_NO_DP4A   turn off those device paths
 *   TERN_OPENCL_FLUSH_EVERY=K   clFlush after every K launches (diagnostics)
 *   TERN_OPENCL_MV_WG=64|128|256|512   the GEMVs' work-group size (diagnostics) */
#include <stdio.h>
#include <stdlib.h>

#include "opencl.h"

/* Devices are listed once per process: plugins stay loaded, and each
 * registry scan probes again. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static tern_backend_probe probe_cache;
static const tern_host_api *probe_host;

static void describe_device(const ocl_devinfo *d, int i, int best, char *buf, size_t n)
{
    const char *type = d->type & CL_DEVICE_TYPE_GPU ? (d->unified ? "integrated GPU" : "GPU")
                       : d->type & CL_DEVICE_TYPE_CPU ? "CPU" : "accelerator";
    snprintf(buf, n, "%s[%d] %s (%s, %u CU, %.1f GiB, %s, score %d%s)%s", i ? "; " : "", i, d->name, type, d->units,
             (double)d->mem / (1 << 30), d->platform_name, d->score, d->usable ? "" : ", unusable",
             i == best ? " *" : "");
}

static void probe_devices(void)
{
    tern_backend_probe *out = &probe_cache;
    char why[200] = "";
    int n = 0;
    ocl_devinfo *d = ocl_list_devices(probe_host, &n, why, sizeof why);
    int best = d ? ocl_best_device(d, n) : -1;
    out->runnable = best >= 0;
    out->score = best >= 0 ? d[best].score : 0;
    if (!d || !n) {
        snprintf(out->desc, sizeof out->desc, "cannot run: %s", why);
    } else if (best < 0) {
        snprintf(out->desc, sizeof out->desc, "cannot run: no device with OpenCL C 1.2, a compiler and 40 KiB "
                 "of local memory among %d", n);
    } else {
        size_t used = 0;
        for (int i = 0; i < n && used < sizeof out->desc; i++) {
            char one[256];
            describe_device(&d[i], i, best, one, sizeof one);
            used += (size_t)snprintf(out->desc + used, sizeof out->desc - used, "%s", one);
        }
    }
    probe_host->free(d);
}

static void ocl_probe(const tern_host_api *host, tern_backend_probe *out)
{
    probe_host = host;
    pthread_once(&probe_once, probe_devices);
    *out = probe_cache;
}

static int op_from_name(const char *s, size_t len)
{
    for (int op = 0; op < TERN_OP_COUNT; op++)
        if (strlen(tern_op_name(op)) == len && !strncmp(tern_op_name(op), s, len)) return op;
    return -1;
}

static int configure(ocl_ctx *c, const tern_backend_options *opt, char *err, size_t errlen)
{
    const char *fuse = getenv("TERN_OPENCL_FUSE"), *prof = getenv("TERN_OPENCL_PROFILE");
    const char *fail = getenv("TERN_OPENCL_FAIL"), *fsync = getenv("TERN_OPENCL_FAIL_SYNC");
    const char *flush = getenv("TERN_OPENCL_FLUSH_EVERY");
    c->flush_every = flush ? atoi(flush) : 0;
    c->gate = getenv("TERN_OPENCL_GATE") != NULL;
    c->fuse = fuse && *fuse ? (int)strtol(fuse, NULL, 0) : OCL_FUSE_ALL;
    c->profile = prof && strcmp(prof, "0") != 0;
    c->fail_op = -1;
    if (fail && *fail) {
        const char *colon = strchr(fail, ':');
        c->fail_op = colon ? op_from_name(fail, (size_t)(colon - fail)) : -1;
        c->fail_at = colon ? atoi(colon + 1) : 0;
        if (c->fail_op < 0 || c->fail_at < 1)
            return snprintf(err, errlen, "TERN_OPENCL_FAIL: expected op:N, got '%s'", fail), 1;
    }
    c->fail_sync_at = fsync ? atoi(fsync) : 0;
    return tern_head_option("opencl", opt, &c->head_q8, err, errlen) != TERN_OK;
}

static void ocl_free(void *ctx)
{
    ocl_ctx *c = ctx;
    if (!c) return;
    for (int i = 0; i < c->n_events; i++) clReleaseEvent(c->events[i].ev);
    ocl_close_device(c);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    c->host->free(c->q);
    c->host->free(c->done);
    c->host->free(c->events);
    c->host->free(c);
}

static tern_status ocl_init(const tern_host_api *host, const tern_backend_options *opt, void **ctx, char *err,
                            size_t errlen)
{
    if (!TERN_STRUCT_HAS(host, tern_host_api, node_error)) {
        snprintf(err, errlen, "opencl needs a version-2 host table");
        return TERN_EABI;
    }
    int want = opt && TERN_STRUCT_HAS(opt, tern_backend_options, device) ? opt->device : -1;
    char why[200] = "";
    int n = 0;
    ocl_devinfo *d = ocl_list_devices(host, &n, why, sizeof why);
    if (!d || !n) {
        host->free(d);
        snprintf(err, errlen, "opencl cannot run here: %s", why);
        return TERN_ECANNOTRUN;
    }
    int pick = want >= 0 ? want : ocl_best_device(d, n);
    if (pick < 0 || pick >= n || !d[pick].usable) {
        if (pick < 0) snprintf(err, errlen, "opencl cannot run here: no usable device among %d", n);
        else if (pick >= n) snprintf(err, errlen, "opencl: no device %d (there %s %d: 0..%d; see tern info)", pick,
                                     n == 1 ? "is" : "are", n, n - 1);
        else snprintf(err, errlen, "opencl: device %d (%s) cannot run the kernels (needs OpenCL C 1.2, a compiler "
                      "and 40 KiB of local memory)", pick, d[pick].name);
        host->free(d);
        return pick < 0 ? TERN_ECANNOTRUN : TERN_EINVAL;
    }
    ocl_ctx *c = host->alloc(sizeof *c, 64);
    if (!c) {
        host->free(d);
        snprintf(err, errlen, "out of memory");
        return TERN_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->host = host;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    tern_status st = configure(c, opt, err, errlen) ? TERN_EINVAL : TERN_OK;
    if (!st) st = ocl_open_device(c, &d[pick], pick, err, errlen);
    host->free(d);
    if (st) {
        ocl_free(c);
        return st;
    }
    host->log(TERN_LOG_INFO, "opencl: device %d, %s (%s), %s", pick, c->device_name, c->platform_name, c->build_note);
    *ctx = c;
    return TERN_OK;
}

static void ocl_describe(void *ctx, char *buf, size_t n)
{
    ocl_ctx *c = ctx;
    snprintf(buf, n, "opencl device %d: %s (%s, driver %s), %s%s%s%s; %d ternary, %d float, %d q8_0 weights, "
             "head %s; %s", c->device_index, c->device_name, c->platform_name, c->driver,
             c->fp64 ? "fp64" : "f32 only", c->nv_dp4a ? ", dp4a" : "", c->cpu_kernels ? ", cpu matmuls" : "", c->fuse ? ", fused launches" : ", no fusion",
             c->n_ternary, c->n_float, c->n_q8, c->n_head_q8 ? "q8 (quantized to q8_0)" : "as stored", c->build_note);
}

/* Launches since the last report: per kind, count (per token when the
 * caller gives tokens) and, when profiling, device time. Then resets. */
static void ocl_report(void *ctx, uint64_t n_tokens, char *buf, size_t n)
{
    ocl_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    uint64_t total = 0;
    double secs = 0;
    for (int k = 0; k < L_COUNT; k++) {
        total += c->launches[k];
        secs += c->prof[k].seconds;
    }
    size_t used = 0;
#define OUT(...) do { if (used < n) used += (size_t)snprintf(buf + used, n - used, __VA_ARGS__); } while (0)
    double per = n_tokens ? (double)n_tokens : 1.0;
    OUT("opencl %s: %llu launches, %llu nodes, %llu syncs", c->device_name, (unsigned long long)total,
        (unsigned long long)c->nodes_run, (unsigned long long)c->syncs);
    if (n_tokens) OUT("; per token: %.1f launches, %.1f syncs", (double)total / per, (double)c->syncs / per);
    if (c->profile && secs > 0) OUT("; device time %.3f ms per token", 1e3 * secs / per);
    OUT("; host: plan+enqueue %.3f ms (enqueue calls %.3f), wait %.3f ms per %s", 1e3 * c->host_plan_s / per,
        1e3 * c->host_enqueue_s / per, 1e3 * c->host_wait_s / per, n_tokens ? "token" : "report");
    OUT("\n%-22s %10s %10s %10s %10s %7s %10s\n", "kernel", "launches", "per token", "us each", "ms/token", "share",
        "host us");
    for (int k = 0; k < L_COUNT; k++) {
        if (!c->launches[k]) continue;
        const ocl_prof *p = &c->prof[k];
        if (c->profile && p->launches)
            OUT("%-22s %10llu %10.1f %10.2f %10.3f %6.1f%% %10.2f\n", ocl_launch_names[k],
                (unsigned long long)c->launches[k], (double)c->launches[k] / per,
                1e6 * p->seconds / (double)p->launches, 1e3 * p->seconds / per, secs > 0 ? 100 * p->seconds / secs : 0,
                1e6 * p->host_seconds / (double)c->launches[k]);
        else
            OUT("%-22s %10llu %10.1f %10s %10s %7s %10.2f\n", ocl_launch_names[k], (unsigned long long)c->launches[k],
                (double)c->launches[k] / per, "-", "-", "-", 1e6 * p->host_seconds / (double)c->launches[k]);
    }
    if (!c->profile) OUT("(TERN_OPENCL_PROFILE=1 adds device time per kernel)\n");
#undef OUT
    memset(c->launches, 0, sizeof c->launches);
    memset(c->prof, 0, sizeof c->prof);
    c->syncs = c->nodes_run = 0;
    c->host_plan_s = c->host_wait_s = c->host_enqueue_s = 0;
    pthread_mutex_unlock(&c->mu);
}

/* ---- the node gate ---- */

/* A device tensor as the shared host gate sees it: data a stand-in. */
static tern_tensor as_host(const tern_tensor *t)
{
    static char stand_in;
    tern_tensor h = *t;
    h.data = &stand_in;
    h.buffer = NULL;
    return h;
}

static int contiguous(const tern_tensor *t)
{
    tern_tensor ref;
    tern_tensor_init(&ref, t->type, TERN_MAX_DIMS, t->ne);
    for (int i = 0; i < TERN_MAX_DIMS; i++)
        if (t->ne[i] > 1 && t->nb[i] != ref.nb[i]) return 0;
    return 1;
}

static int is_float_type(int t) { return t == TERN_TYPE_F32 || t == TERN_TYPE_F16 || t == TERN_TYPE_BF16; }

static int ocl_supports(void *ctx, const tern_node *nd)
{
    ocl_ctx *c = ctx;
    if (nd->op < 0 || nd->op >= TERN_OP_COUNT || !nd->dst || !nd->dst->buffer) return 0;
    tern_node h = *nd;
    tern_tensor src[TERN_NODE_MAX_SRC], dst = as_host(nd->dst);
    h.dst = &dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++) {
        if (!nd->src[i]) continue;
        if (!nd->src[i]->buffer) return 0;
        src[i] = as_host(nd->src[i]);
        h.src[i] = &src[i];
        if (!ocl_weight_of(nd->src[i]) && !contiguous(nd->src[i])) return 0;
    }
    if (!contiguous(nd->dst) || !tern_op_check_host(&h)) return 0;
    const tern_tensor *x = nd->src[0], *w = nd->src[1];
    const ocl_weight *ow = w ? ocl_weight_of(w) : NULL;
    switch (nd->op) {
    case TERN_OP_MATMUL_TERNARY:
        return ow && ow->kind == W_TERNARY && ow->K == x->ne[0] && ow->N == nd->dst->ne[0] && w->data == NULL;
    case TERN_OP_MATMUL:
        return ow && ow->K == x->ne[0] && ow->N == nd->dst->ne[0] && w->data == NULL &&
               ((ow->kind == W_FLOAT && is_float_type(w->type)) || (ow->kind == W_Q8_0 && x->ne[0] % 32 == 0));
    case TERN_OP_GET_ROWS: return tern_tensor_nrows(x) < INT32_MAX && x->ne[0] < INT32_MAX;
    case TERN_OP_ROPE: return x->ne[0] <= OCL_HD_MAX;
    case TERN_OP_ATTENTION:
        return x->ne[0] <= OCL_HD_MAX && nd->src[1]->type == nd->src[2]->type &&
               (uint64_t)tern_tensor_nrows(x) * (uint64_t)nd->src[1]->ne[2] * (c->fp64 ? 8 : 4) <= c->max_alloc;
    default: return 1;
    }
}

static const tern_op_fn ocl_ops[TERN_OP_COUNT] = {
    [TERN_OP_GET_ROWS] = ocl_enqueue,       [TERN_OP_RMS_NORM] = ocl_enqueue,  [TERN_OP_ADD] = ocl_enqueue,
    [TERN_OP_MUL] = ocl_enqueue,            [TERN_OP_RELU_SQ] = ocl_enqueue,   [TERN_OP_SILU] = ocl_enqueue,
    [TERN_OP_ROPE] = ocl_enqueue,           [TERN_OP_KV_STORE] = ocl_enqueue,  [TERN_OP_ATTENTION] = ocl_enqueue,
    [TERN_OP_SOFTMAX] = ocl_enqueue,        [TERN_OP_QUANTIZE_ACT] = ocl_enqueue,
    [TERN_OP_MATMUL_TERNARY] = ocl_enqueue, [TERN_OP_MATMUL] = ocl_enqueue,
};

const tern_backend_api opencl_api = {
    .abi_version = TERN_BACKEND_ABI_VERSION,
    .struct_size = sizeof(tern_backend_api),
    .op_semantics = TERN_OP_SEMANTICS_VERSION,
    .name = "opencl",
    .caps = 0, /* device memory, one call per node, queued until sync */
    .probe = ocl_probe,
    .init = ocl_init,
    .free = ocl_free,
    .repack = ocl_repack,
    .release = ocl_release,
    .buffer_alloc = ocl_buffer_alloc,
    .buffer_free = ocl_buffer_free,
    .buffer_upload = ocl_buffer_upload,
    .buffer_download = ocl_buffer_download,
    .sync = ocl_sync,
    .supports_op = ocl_supports,
    .ops = ocl_ops,
    .n_ops = TERN_OP_COUNT,
    .describe = ocl_describe,
    .report = ocl_report,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &opencl_api; }
