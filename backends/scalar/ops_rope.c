/* ops_rope.c - rotary position embedding over [head_dim, n_head, n_tok].
 *
 * Pair i (i < n_dims/2) of a head at position p turns by
 * theta = p * freq_scale * freq_base^(-2i/n_dims). The angle is formed in
 * f32 the way the PyTorch/Hugging Face reference forms it (inv_freq =
 * 1 / base^(2i/n_dims) in f32, then one f32 product with the position):
 * at position 30 an f32 angle is off the exact one by ~1e-6, enough to move
 * int8 rounding decisions downstream, so the oracle follows the reference
 * rather than being more exact than it. cos/sin and the rotation are then
 * evaluated in double and rounded once.
 * NORMAL rotates (2i, 2i+1), NEOX rotates (i, i + n_dims/2); dims from
 * n_dims on are copied. Both values of a pair are read before either is
 * written, so dst may alias src0. */
#include <math.h>

#include "scalar.h"

void scalar_rope(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0], *pos = node->src[1];
    int mode = node->iparams[0];
    int64_t n_dims = node->iparams[1], head_dim = a->ne[0], half = n_dims / 2;
    float base = node->fparams[0], fscale = node->fparams[1];
    int64_t lo, hi;
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)scalar_row(a, r);
        float *y = (float *)scalar_row(node->dst, r);
        float p = (float)scalar_i32(pos, r / a->ne[1]) * fscale; /* row r: head r % n_head of token r / n_head */
        for (int64_t k = n_dims; k < head_dim; k++) y[k] = x[k];
        for (int64_t i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(base, (float)(2 * i) / (float)n_dims);
            double theta = (double)(p * inv_freq);
            double c = cos(theta), s = sin(theta);
            int64_t i0 = mode == TERN_ROPE_NEOX ? i : 2 * i;
            int64_t i1 = mode == TERN_ROPE_NEOX ? i + half : 2 * i + 1;
            double x0 = x[i0], x1 = x[i1];
            y[i0] = (float)(x0 * c - x1 * s);
            y[i1] = (float)(x0 * s + x1 * c);
        }
    }
}
