/* devsim.c - tern-backend-devsim.so: a pretend device backend for the
 * conformance harness's device path. It lacks TERN_BACKEND_CAP_HOST_MEMORY,
 * so every tensor reaches it as a buffer handle (data = offset inside the
 * buffer), weights are repacked "onto the device", ops are queued and only
 * run at sync(), and results come back through download. Its buffers are
 * host memory behind a handle with a guard word.
 *
 * Ops: add, relu_sq, quantize_act, matmul_ternary (repack from TQ2_0 only,
 * so TQ1_0 and I2_S weights fall back to scalar). */
#include <math.h>
#include <stdint.h>

#include "mini.h"

#define DEV_MAGIC 0x64657673u
#define QUEUE_MAX 8

typedef struct dev_buf {
    uint32_t magic;
    size_t size;
    uint8_t bytes[];
} dev_buf;

typedef struct queued {
    tern_op_fn fn;
    tern_node node;
    tern_tensor src[TERN_NODE_MAX_SRC], dst;
} queued;

typedef struct dev_ctx {
    const tern_host_api *host;
    queued q[QUEUE_MAX];
    int n;
} dev_ctx;

static const char codes_tag = 'd';

static uint8_t *at(const tern_tensor *t)
{
    return ((dev_buf *)t->buffer)->bytes + (uintptr_t)t->data;
}

static void probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    out->runnable = 1;
    out->score = 0; /* never wins "auto" over scalar */
    snprintf(out->desc, sizeof out->desc, "simulated device for the conformance tests");
}

static tern_status init(const tern_host_api *host, const tern_backend_options *opt, void **ctx,
                        char *err, size_t errlen)
{
    (void)opt;
    dev_ctx *c = host->alloc(sizeof *c, 64);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return TERN_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->host = host;
    *ctx = c;
    return TERN_OK;
}

static void dev_free(void *ctx)
{
    if (ctx) ((dev_ctx *)ctx)->host->free(ctx);
}

static void *buf_alloc(void *ctx, size_t size)
{
    dev_buf *b = ((dev_ctx *)ctx)->host->alloc(sizeof *b + size, 64);
    if (b) {
        b->magic = DEV_MAGIC;
        b->size = size;
    }
    return b;
}

static void buf_free(void *ctx, void *buffer)
{
    dev_buf *b = buffer;
    if (b) b->magic = 0;
    ((dev_ctx *)ctx)->host->free(b);
}

static tern_status buf_check(const dev_buf *b, size_t off, size_t n)
{
    return b && b->magic == DEV_MAGIC && off <= b->size && n <= b->size - off ? TERN_OK : TERN_EINVAL;
}

static tern_status upload(void *ctx, void *buffer, size_t off, const void *src, size_t n)
{
    (void)ctx;
    dev_buf *b = buffer;
    if (buf_check(b, off, n)) return TERN_EINVAL;
    memcpy(b->bytes + off, src, n);
    return TERN_OK;
}

static tern_status download(void *ctx, const void *buffer, size_t off, void *dst, size_t n)
{
    (void)ctx;
    const dev_buf *b = buffer;
    if (buf_check(b, off, n)) return TERN_EINVAL;
    memcpy(dst, b->bytes + off, n);
    return TERN_OK;
}

/* ---- kernels, run at sync ---- */

static void k_elementwise(const tern_node *nd)
{
    int64_t n = nd->dst->ne[0] * nd->dst->ne[1] * nd->dst->ne[2] * nd->dst->ne[3];
    const float *a = (const float *)at(nd->src[0]);
    float *y = (float *)at(nd->dst);
    for (int64_t i = 0; i < n; i++) {
        float r = a[i] > 0 ? a[i] : 0.0f;
        y[i] = nd->op == TERN_OP_ADD ? a[i] + ((const float *)at(nd->src[1]))[i] : r * r;
    }
}

static void k_quantize(const tern_node *nd)
{
    int64_t K = nd->src[0]->ne[0];
    for (int64_t r = 0; r < nd->dst->ne[1]; r++) {
        const float *x = (const float *)(at(nd->src[0]) + r * nd->src[0]->nb[1]);
        uint8_t *row = at(nd->dst) + r * nd->dst->nb[1];
        float amax = TERN_ACT_AMAX_MIN;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[k]));
        tern_q8tok_header h = {127.0f / amax, 0, {0}};
        memset(row, 0, nd->dst->nb[1]);
        for (int64_t k = 0; k < K; k++) {
            float v = nearbyintf(x[k] * h.inv);
            int8_t q = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
            row[TERN_Q8TOK_HEADER + k] = (uint8_t)q;
            h.sum += q;
        }
        memcpy(row, &h, sizeof h);
    }
}

static void k_matmul_ternary(const tern_node *nd)
{
    const tern_tensor *x = nd->src[0], *w = nd->src[1];
    int64_t K = x->ne[0], N = nd->dst->ne[0];
    for (int64_t t = 0; t < x->ne[1]; t++) {
        const uint8_t *row = at(x) + t * x->nb[1];
        tern_q8tok_header h;
        memcpy(&h, row, sizeof h);
        float *y = (float *)(at(nd->dst) + t * nd->dst->nb[1]);
        for (int64_t n = 0; n < N; n++) {
            const int8_t *wn = (const int8_t *)at(w) + n * K;
            int32_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (int8_t)row[TERN_Q8TOK_HEADER + k] * wn[k];
            float v = (float)acc / h.inv;
            y[n] = v * w->scale;
        }
    }
}

static tern_status sync_queue(void *ctx)
{
    dev_ctx *c = ctx;
    for (int i = 0; i < c->n; i++) {
        queued *q = &c->q[i];
        switch (q->node.op) {
        case TERN_OP_QUANTIZE_ACT: k_quantize(&q->node); break;
        case TERN_OP_MATMUL_TERNARY: k_matmul_ternary(&q->node); break;
        default: k_elementwise(&q->node);
        }
    }
    c->n = 0;
    return TERN_OK;
}

/* Every op is this: copy the node and its tensors into the queue. */
static void enqueue(void *ctx, const tern_node *nd, int ith, int nth, void *scratch)
{
    (void)scratch, (void)nth;
    dev_ctx *c = ctx;
    if (ith != 0) return;
    if (c->n == QUEUE_MAX) sync_queue(c);
    queued *q = &c->q[c->n++];
    q->node = *nd;
    q->dst = *nd->dst;
    q->node.dst = &q->dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++)
        if (nd->src[i]) {
            q->src[i] = *nd->src[i];
            q->node.src[i] = &q->src[i];
        }
}

/* ---- weights ---- */

static tern_status repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen)
{
    if (purpose != TERN_REPACK_TERNARY || src->type != TERN_TYPE_TQ2_0) {
        snprintf(err, errlen, "devsim repacks only tq2_0 for matmul_ternary");
        return TERN_EUNSUPPORTED;
    }
    int64_t K = src->ne[0], N = src->ne[1] * src->ne[2] * src->ne[3];
    dev_buf *b = buf_alloc(ctx, (size_t)(K * N));
    if (!b) {
        snprintf(err, errlen, "out of device memory");
        return TERN_ENOMEM;
    }
    float scale = 0.0f;
    for (int64_t n = 0; n < N; n++)
        for (int64_t blk = 0; blk < K / 256; blk++) {
            const uint8_t *p = (const uint8_t *)src->data + n * src->nb[1] + blk * 66;
            int8_t *codes = (int8_t *)b->bytes + n * K + blk * 256;
            int nonzero = 0;
            for (int h = 0; h < 2; h++)
                for (int s = 0; s < 4; s++)
                    for (int m = 0; m < 32; m++) {
                        int8_t v = (int8_t)(((p[32 * h + m] >> (2 * s)) & 3) - 1);
                        codes[128 * h + 32 * s + m] = v;
                        nonzero |= v;
                    }
            uint16_t d;
            memcpy(&d, p + 64, 2);
            if (nonzero && scale == 0.0f) scale = tern_f16_to_f32(d);
        }
    int64_t ne[2] = {K, N};
    memset(dst, 0, sizeof *dst);
    dst->type = TERN_TYPE_I8;
    dst->layout = TERN_LAYOUT_BACKEND;
    for (int i = 0; i < TERN_MAX_DIMS; i++) dst->ne[i] = i < 2 ? ne[i] : 1;
    dst->nb[0] = 1;
    dst->nb[1] = (size_t)K;
    dst->nb[2] = dst->nb[3] = (size_t)(K * N);
    dst->buffer = b;
    dst->data = NULL;
    dst->scale = scale;
    dst->extra = (void *)&codes_tag;
    dst->name = src->name;
    return TERN_OK;
}

static void release(void *ctx, tern_tensor *t)
{
    if (t->extra != &codes_tag) return;
    buf_free(ctx, t->buffer);
    t->buffer = NULL;
}

static int on_device(const tern_tensor *t, int type)
{
    return t && t->buffer && t->type == type;
}

static int supports(void *ctx, const tern_node *nd)
{
    (void)ctx;
    const tern_tensor *d = nd->dst, *a = nd->src[0];
    switch (nd->op) {
    case TERN_OP_ADD: return on_device(d, TERN_TYPE_F32) && on_device(a, TERN_TYPE_F32) && on_device(nd->src[1], TERN_TYPE_F32);
    case TERN_OP_RELU_SQ: return on_device(d, TERN_TYPE_F32) && on_device(a, TERN_TYPE_F32);
    case TERN_OP_QUANTIZE_ACT: return on_device(d, TERN_TYPE_Q8_TOK) && on_device(a, TERN_TYPE_F32) && d->ne[2] == 1;
    case TERN_OP_MATMUL_TERNARY:
        return on_device(d, TERN_TYPE_F32) && on_device(a, TERN_TYPE_Q8_TOK) && a->ne[2] == 1 &&
               nd->src[1] && nd->src[1]->extra == &codes_tag;
    default: return 0;
    }
}

static const tern_op_fn ops[TERN_OP_COUNT] = {
    [TERN_OP_ADD] = enqueue, [TERN_OP_RELU_SQ] = enqueue,
    [TERN_OP_QUANTIZE_ACT] = enqueue, [TERN_OP_MATMUL_TERNARY] = enqueue};

static const tern_backend_api api = {
    .abi_version = TERN_BACKEND_ABI_VERSION,
    .struct_size = sizeof(tern_backend_api),
    .name = "devsim",
    .caps = 0, /* device memory, one call per node */
    .probe = probe,
    .init = init,
    .free = dev_free,
    .repack = repack,
    .release = release,
    .buffer_alloc = buf_alloc,
    .buffer_free = buf_free,
    .buffer_upload = upload,
    .buffer_download = download,
    .sync = sync_queue,
    .supports_op = supports,
    .ops = ops,
    .n_ops = TERN_OP_COUNT,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
