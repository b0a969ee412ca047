/* ops_matmul.c - the two matmuls. Threads split the N output columns into
 * contiguous chunks and do every token for their columns; each output is a
 * sum over k in order, independent of nth and of the batch size. */
#include <math.h>

#include "scalar.h"

/* src0 Q8_TOK [K, n_tok]; src1 int8 codes [K, N] (scalar repack);
 * dst[t][n] = ((float)acc / inv) * scale, acc the exact int32 dot. */
void scalar_matmul_ternary(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *x = node->src[0], *w = node->src[1];
    tern_tensor *dst = node->dst;
    int64_t lo, hi, K = x->ne[0], n_tok = tern_tensor_nrows(x);
    scalar_split(dst->ne[0], ith, nth, &lo, &hi);
    for (int64_t t = 0; t < n_tok; t++) {
        const uint8_t *row = scalar_row(x, t);
        tern_q8tok_header h;
        memcpy(&h, row, sizeof h);
        const int8_t *q = (const int8_t *)(row + TERN_Q8TOK_HEADER);
        float *y = (float *)scalar_row(dst, t);
        for (int64_t n = lo; n < hi; n++) {
            const int8_t *wn = (const int8_t *)w->data + (size_t)n * w->nb[1];
            int32_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (int32_t)q[k] * wn[k];
            float v = (float)acc / h.inv;
            y[n] = v * w->scale;
        }
    }
}

/* Q8_0 weights: each token's activations are quantized once into scratch
 * (K int8 codes, then K/32 f32 scales), then every output is
 * tern_dot_q8_0, the definition itself. */
static void matmul_q8_0(const tern_node *node, int64_t lo, int64_t hi, void *scratch)
{
    const tern_tensor *x = node->src[0], *w = node->src[1];
    int64_t K = x->ne[0], n_tok = tern_tensor_nrows(x);
    int8_t *q = scratch;
    float *d = (float *)(q + (K + 63) / 64 * 64);
    for (int64_t t = 0; t < n_tok; t++) {
        float *y = (float *)scalar_row(node->dst, t);
        if (!scratch) {
            for (int64_t n = lo; n < hi; n++) y[n] = NAN;
            continue;
        }
        tern_quantize_act_q8_0((const float *)scalar_row(x, t), K, q, d);
        for (int64_t n = lo; n < hi; n++)
            y[n] = tern_dot_q8_0((const uint8_t *)w->data + (size_t)n * w->nb[1], q, d, K);
    }
}

/* src0 F32 [K, n_tok]; src1 F32/F16/BF16 [K, N] in file layout;
 * dst[t][n] = sum_k x[t][k] * w[n][k] in double, stored as f32. Each weight
 * row is decoded once into scratch (K floats); without scratch the
 * outputs are NaN. Q8_0: matmul_q8_0. */
void scalar_matmul(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *x = node->src[0], *w = node->src[1];
    tern_tensor *dst = node->dst;
    float *wrow = scratch;
    int64_t lo, hi, K = x->ne[0], n_tok = tern_tensor_nrows(x);
    scalar_split(dst->ne[0], ith, nth, &lo, &hi);
    if (w->type == TERN_TYPE_Q8_0) {
        matmul_q8_0(node, lo, hi, scratch);
        return;
    }
    for (int64_t n = lo; n < hi; n++) {
        int ok = wrow && tern_dequantize_rows(w, n, 1, wrow, NULL) == TERN_OK;
        for (int64_t t = 0; t < n_tok; t++) {
            const float *xt = (const float *)scalar_row(x, t);
            double acc = 0.0;
            for (int64_t k = 0; ok && k < K; k++) acc += (double)xt[k] * wrow[k];
            ((float *)scalar_row(dst, t))[n] = ok ? (float)acc : NAN;
        }
    }
}
