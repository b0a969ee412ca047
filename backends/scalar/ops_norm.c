/* ops_norm.c - RMS norm: y = x * (1 / sqrt(mean(x^2) + eps)) * w, per row.
 * The sum of squares is kept in double (as exact as a careful f32
 * reduction); the steps after it are rounded to f32 in the reference's
 * order (var, rsqrt(var + eps), x * r, then * w), so int8 rounding
 * decisions downstream match the PyTorch reference. */
#include <math.h>

#include "scalar.h"

void scalar_rms_norm(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0], *w = node->src[1];
    const float *wv = w ? (const float *)w->data : NULL; /* [ne0] */
    float eps = node->fparams[0];
    int64_t lo, hi, n = a->ne[0];
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)scalar_row(a, r);
        float *y = (float *)scalar_row(node->dst, r);
        double ss = 0.0;
        for (int64_t k = 0; k < n; k++) ss += (double)x[k] * x[k];
        float var = (float)(ss / (double)n);
        float s = 1.0f / sqrtf(var + (float)eps);
        for (int64_t k = 0; k < n; k++) {
            float v = x[k] * s;
            y[k] = wv ? v * wv[k] : v;
        }
    }
}
