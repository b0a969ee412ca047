/* ops_attention.c - the KV cache write and causal GQA attention over it.
 *
 * Cache layout: [head_dim, n_kv_head, n_ctx], F32 or F16, so cache row
 * (kv head h, position p) starts at data + h*nb[1] + p*nb[2]. */
#include <math.h>

#include "scalar.h"

static const uint8_t *cache_row(const tern_tensor *c, int64_t h, int64_t p)
{
    return (const uint8_t *)c->data + (size_t)h * c->nb[1] + (size_t)p * c->nb[2];
}

static double cache_at(const tern_tensor *c, const uint8_t *row, int64_t d)
{
    if (c->type == TERN_TYPE_F16) {
        uint16_t h;
        memcpy(&h, row + 2 * d, 2);
        return tern_f16_to_f32(h);
    }
    float f;
    memcpy(&f, row + 4 * d, 4);
    return f;
}

/* Row (h, t) of src0 goes to cache row (h, pos[t]); a position outside
 * [0, n_ctx) is reported and skipped. */
void scalar_kv_store(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)scratch;
    const scalar_ctx *c = ctx;
    const tern_tensor *src = node->src[0], *pos = node->src[1];
    tern_tensor *cache = node->dst;
    int64_t lo, hi, head_dim = src->ne[0], n_kv = src->ne[1];
    scalar_split(tern_tensor_nrows(src), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t h = r % n_kv, p = scalar_i32(pos, r / n_kv);
        if (p < 0 || p >= cache->ne[2]) {
            c->host->node_error(node, TERN_ECONTEXT, "position %lld outside the KV cache of %lld",
                                (long long)p, (long long)cache->ne[2]);
            continue;
        }
        const float *x = (const float *)scalar_row(src, r);
        uint8_t *y = (uint8_t *)cache_row(cache, h, p);
        for (int64_t d = 0; d < head_dim; d++) {
            if (cache->type == TERN_TYPE_F16) {
                uint16_t v = tern_f32_to_f16(x[d]);
                memcpy(y + 2 * d, &v, 2);
            } else {
                memcpy(y + 4 * d, &x[d], 4);
            }
        }
    }
}

/* Output row (h, t): softmax over j = 0..pos[t] of scale * q.K[j], in
 * double with the max subtracted, then the weighted sum of V[j]. scratch
 * holds the scores (n_ctx doubles); without it the row is NaN. */
void scalar_attention(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    const scalar_ctx *c = ctx;
    const tern_tensor *q = node->src[0], *kc = node->src[1], *vc = node->src[2];
    const tern_tensor *pos = node->src[3];
    double scale = node->fparams[0], *score = scratch;
    int64_t lo, hi, head_dim = q->ne[0], n_head = q->ne[1], n_ctx = kc->ne[2];
    int64_t group = n_head / kc->ne[1];
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *qv = (const float *)scalar_row(q, r);
        float *y = (float *)scalar_row(node->dst, r);
        int64_t h = r % n_head, kvh = h / group, last = scalar_i32(pos, r / n_head);
        if (last < 0 || last >= n_ctx)
            c->host->node_error(node, TERN_ECONTEXT, "position %lld outside the KV cache of %lld",
                                (long long)last, (long long)n_ctx);
        if (last >= n_ctx) last = n_ctx - 1;
        if (!score || last < 0) {
            for (int64_t d = 0; d < head_dim; d++) y[d] = NAN;
            continue;
        }
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= last; j++) {
            const uint8_t *k = cache_row(kc, kvh, j);
            double dot = 0.0;
            for (int64_t d = 0; d < head_dim; d++) dot += qv[d] * cache_at(kc, k, d);
            score[j] = dot * scale;
            max = fmax(max, score[j]);
        }
        for (int64_t j = 0; j <= last; j++) {
            score[j] = exp(score[j] - max);
            sum += score[j];
        }
        for (int64_t d = 0; d < head_dim; d++) {
            double acc = 0.0;
            for (int64_t j = 0; j <= last; j++) acc += score[j] * cache_at(vc, cache_row(vc, kvh, j), d);
            y[d] = (float)(acc / sum);
        }
    }
}
