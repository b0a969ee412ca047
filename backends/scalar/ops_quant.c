/* ops_quant.c - per-token absmax int8 activations (Q8_TOK rows).
 *
 * Per row: amax = max(max_k |x_k|, TERN_ACT_AMAX_MIN); inv = 127 / amax in
 * f32; q_k = clamp(nearbyintf(x_k * inv), -128, 127), which rounds half to
 * even under the default rounding mode. The header holds inv and sum(q);
 * its pad and the bytes after q[K-1] up to the next row are zero, so rows
 * compare bit-exactly between backends. A NaN product (x = inf makes
 * inv = 0) quantizes to 0. */
#include <math.h>

#include "scalar.h"

static int8_t quantize_one(float x, float inv)
{
    float v = nearbyintf(x * inv);
    if (v != v) return 0;
    if (v > 127.0f) return 127;
    if (v < -128.0f) return -128;
    return (int8_t)v;
}

void scalar_quantize_act(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0];
    tern_tensor *dst = node->dst;
    int64_t lo, hi, K = a->ne[0];
    size_t row_bytes = tern_row_size(TERN_TYPE_Q8_TOK, K);
    scalar_split(tern_tensor_nrows(dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)scalar_row(a, r);
        uint8_t *row = scalar_row(dst, r);
        float amax = TERN_ACT_AMAX_MIN;
        for (int64_t k = 0; k < K; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        tern_q8tok_header h;
        memset(&h, 0, sizeof h);
        h.inv = 127.0f / amax;
        int8_t *q = (int8_t *)(row + TERN_Q8TOK_HEADER);
        memset(q, 0, row_bytes - TERN_Q8TOK_HEADER);
        for (int64_t k = 0; k < K; k++) {
            q[k] = quantize_one(x[k], h.inv);
            h.sum += q[k];
        }
        memcpy(row, &h, sizeof h);
    }
}
