/* good.c - tern-backend-fake.so: a valid, runnable backend that scores
 * above scalar but has only two ops (add, relu_sq); "auto" must pick it
 * and the executor must run the rest on scalar. */
#include "mini.h"

static void probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    out->runnable = 1;
    out->score = 100;
    snprintf(out->desc, sizeof out->desc, "fake backend for the loader tests");
}

/* Contiguous f32 only (supports_op below says so); rows split by thread. */
static void elementwise(const tern_node *nd, int ith, int nth, int add)
{
    const float *a = nd->src[0]->data, *b = add ? nd->src[1]->data : NULL;
    float *y = nd->dst->data;
    int64_t n = nd->dst->ne[0] * nd->dst->ne[1] * nd->dst->ne[2] * nd->dst->ne[3];
    int64_t lo = n * ith / nth, hi = n * (ith + 1) / nth;
    for (int64_t i = lo; i < hi; i++) {
        float r = a[i] > 0 ? a[i] : 0.0f;
        y[i] = add ? a[i] + b[i] : r * r;
    }
}

static void op_add(void *ctx, const tern_node *nd, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(nd, ith, nth, 1);
}

static void op_relu_sq(void *ctx, const tern_node *nd, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(nd, ith, nth, 0);
}

static int f32_contiguous(const tern_tensor *t, const tern_tensor *like)
{
    if (!t || t->type != TERN_TYPE_F32 || t->buffer || t->nb[0] != 4) return 0;
    for (int i = 0; i < TERN_MAX_DIMS; i++) {
        if (t->ne[i] != like->ne[i]) return 0;
        if (i && t->nb[i] != t->nb[i - 1] * (size_t)t->ne[i - 1]) return 0;
    }
    return 1;
}

static int supports(void *ctx, const tern_node *nd)
{
    (void)ctx;
    const tern_tensor *d = nd->dst;
    if (nd->op == TERN_OP_ADD) return f32_contiguous(d, d) && f32_contiguous(nd->src[0], d) && f32_contiguous(nd->src[1], d);
    return f32_contiguous(d, d) && f32_contiguous(nd->src[0], d);
}

static const tern_op_fn ops[TERN_OP_COUNT] = {[TERN_OP_ADD] = op_add, [TERN_OP_RELU_SQ] = op_relu_sq};

static const tern_backend_api api = {
    MINI_API("fake", TERN_BACKEND_ABI_VERSION, sizeof(tern_backend_api), probe, TERN_BACKEND_CAP_HOST_MEMORY | TERN_BACKEND_CAP_THREADED),
    .supports_op = supports,
    .ops = ops,
    .n_ops = TERN_OP_COUNT,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
