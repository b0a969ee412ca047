/* ops_neon.c - every op but the ternary matmul, with baseline AArch64 NEON
 * (Advanced SIMD is part of every AArch64 CPU, so these serve every tier;
 * they are memory-bound or small, and the SVE tiers gain little on them).
 *
 * Numerics against scalar (which keeps sums in double):
 *  - add, mul, relu_sq, get_rows, kv_store, quantize_act: bit-exact (the
 *    same f32 operations; fcvtl/fcvtn convert f16 exactly and round to
 *    nearest even as tern_f16_to_f32 / tern_f32_to_f16 do; frintn rounds
 *    half to even as nearbyintf does; Q8_0 d*q is exact in f32).
 *  - rms_norm and rope: the same double arithmetic as scalar per element
 *    (only rms_norm's sum of squares is reordered).
 *  - silu, softmax: f32 exp (Cephes polynomial, ~1 ulp); softmax forms
 *    x*s - max with an FMA and the rounding error of max, and sums in double.
 *  - attention: scalar's double formula and rounding points, libm exp.
 *  - matmul: f32 FMA chains (one 8-wide accumulator per output, k in order,
 *    a fixed horizontal sum), the same for every tile shape, so an output
 *    never depends on n_tok or nth. Q8_0: bit-exact (integer block dots,
 *    the reference's f32 steps), here with smull for CPUs without sdot.
 * Built with -std=c11, so the compiler contracts nothing into FMAs behind
 * our back: every fused multiply-add here is written out. */
#include <arm_neon.h>
#include <math.h>

#include "arm.h"

#define AI static inline __attribute__((always_inline))

/* ---- small helpers ---- */

/* e^x, Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial;
 * about 1 ulp on [-87, 88]; inputs are clamped there. */
AI float32x4_t exp4(float32x4_t x)
{
    x = vminq_f32(x, vdupq_n_f32(88.3762626647949f));
    x = vmaxq_f32(x, vdupq_n_f32(-87.3365478515625f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

AI float f16_at(const uint8_t *p, int64_t i)
{
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return tern_f16_to_f32(h);
}

/* 4 f16 or f32 values of a cache or weight row from element d. */
AI float32x4_t load4_f16(const uint8_t *row, int64_t d)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(row + 2 * d))));
}

AI float32x4_t load4_bf16(const uint8_t *row, int64_t d)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)(row + 2 * d)), 16));
}

/* ---- elementwise ---- */

enum { EW_ADD, EW_MUL, EW_RELU_SQ, EW_SILU };

AI float32x4_t ew_apply(int op, float32x4_t a, float32x4_t b)
{
    switch (op) {
    case EW_ADD: return vaddq_f32(a, b);
    case EW_MUL: return vmulq_f32(a, b);
    case EW_RELU_SQ: { /* x > 0 ? x : 0, so NaN and -0 give +0 */
        float32x4_t r = vreinterpretq_f32_u32(vandq_u32(vcgtq_f32(a, vdupq_n_f32(0.0f)), vreinterpretq_u32_f32(a)));
        return vmulq_f32(r, r);
    }
    default: return vdivq_f32(a, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(a))));
    }
}

AI void elementwise(const tern_node *node, int ith, int nth, int op)
{
    const tern_tensor *a = node->src[0], *b = node->src[1];
    int binary = op == EW_ADD || op == EW_MUL;
    int64_t lo, hi, n = a->ne[0];
    arm_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)arm_row(a, r);
        const float *z = binary ? (const float *)arm_row(b, r) : x;
        float *y = (float *)arm_row(node->dst, r);
        int64_t k = 0;
        for (; k + 4 <= n; k += 4) vst1q_f32(y + k, ew_apply(op, vld1q_f32(x + k), vld1q_f32(z + k)));
        if (k < n) { /* the tail through the same vector code, zero-padded */
            float xt[4] = {0}, zt[4] = {0}, yt[4];
            memcpy(xt, x + k, (size_t)(n - k) * 4);
            memcpy(zt, z + k, (size_t)(n - k) * 4);
            vst1q_f32(yt, ew_apply(op, vld1q_f32(xt), vld1q_f32(zt)));
            memcpy(y + k, yt, (size_t)(n - k) * 4);
        }
    }
}

void arm_add(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_ADD);
}

void arm_mul(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_MUL);
}

void arm_relu_sq(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_RELU_SQ);
}

void arm_silu(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_SILU);
}

/* ---- rms_norm: scalar's steps: the sum of squares in double (products
 * exact; summed 4 lanes wide here, in order in scalar, which moves only the
 * last bits of a double), then var = (float)(ss / n), 1/sqrtf(var + eps),
 * x*s and *w rounded to f32 as scalar rounds them. ---- */

void arm_rms_norm(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0], *w = node->src[1];
    const float *wv = w ? (const float *)w->data : NULL; /* [ne0] */
    float eps = node->fparams[0];
    int64_t lo, hi, n = a->ne[0];
    arm_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)arm_row(a, r);
        float *y = (float *)arm_row(node->dst, r);
        float64x2_t s0 = vdupq_n_f64(0.0), s1 = vdupq_n_f64(0.0);
        int64_t k = 0;
        for (; k + 4 <= n; k += 4) {
            float32x4_t v = vld1q_f32(x + k);
            float64x2_t x0 = vcvt_f64_f32(vget_low_f32(v)), x1 = vcvt_high_f64_f32(v);
            s0 = vfmaq_f64(s0, x0, x0);
            s1 = vfmaq_f64(s1, x1, x1);
        }
        double ss = vaddvq_f64(vaddq_f64(s0, s1));
        for (; k < n; k++) ss += (double)x[k] * x[k];
        float var = (float)(ss / (double)n);
        float s = 1.0f / sqrtf(var + eps);
        for (k = 0; k + 4 <= n; k += 4) {
            float32x4_t v = vmulq_n_f32(vld1q_f32(x + k), s);
            if (wv) v = vmulq_f32(v, vld1q_f32(wv + k));
            vst1q_f32(y + k, v);
        }
        for (; k < n; k++) {
            float v = x[k] * s;
            y[k] = wv ? v * wv[k] : v;
        }
    }
}

/* ---- softmax: y = exp(x s - m) / sum, x s - m as one FMA minus the
 * rounding error of m, the sum in double ---- */

void arm_softmax(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0];
    float scale = node->fparams[0];
    int64_t lo, hi, n = a->ne[0];
    arm_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)arm_row(a, r);
        float *y = (float *)arm_row(node->dst, r);
        float xmax = -INFINITY, xmin = INFINITY;
        int64_t k = 0;
        if (n >= 4) {
            float32x4_t vmax = vld1q_f32(x), vmin = vmax;
            for (k = 4; k + 4 <= n; k += 4) {
                float32x4_t v = vld1q_f32(x + k);
                vmax = vmaxnmq_f32(v, vmax); /* NaN skipped, as the scalar max skips it */
                vmin = vminnmq_f32(v, vmin);
            }
            xmax = vmaxnmvq_f32(vmax), xmin = vminnmvq_f32(vmin);
        }
        for (; k < n; k++) {
            xmax = x[k] > xmax ? x[k] : xmax;
            xmin = x[k] < xmin ? x[k] : xmin;
        }
        float xm = scale >= 0.0f ? xmax : xmin;
        float m_hi = xm * scale, m_lo = fmaf(xm, scale, -m_hi); /* m = m_hi + m_lo exactly */
        float32x4_t vs = vdupq_n_f32(scale), vmh = vdupq_n_f32(-m_hi), vml = vdupq_n_f32(m_lo);
        float64x2_t sum0 = vdupq_n_f64(0.0), sum1 = vdupq_n_f64(0.0);
        for (k = 0; k + 4 <= n; k += 4) {
            float32x4_t e = exp4(vsubq_f32(vfmaq_f32(vmh, vld1q_f32(x + k), vs), vml));
            vst1q_f32(y + k, e);
            sum0 = vaddq_f64(sum0, vcvt_f64_f32(vget_low_f32(e)));
            sum1 = vaddq_f64(sum1, vcvt_high_f64_f32(e));
        }
        double sum = vaddvq_f64(vaddq_f64(sum0, sum1));
        if (k < n) {
            float xt[4] = {0}, e[4];
            memcpy(xt, x + k, (size_t)(n - k) * 4);
            vst1q_f32(e, exp4(vsubq_f32(vfmaq_f32(vmh, vld1q_f32(xt), vs), vml)));
            for (int64_t i = 0; i < n - k; i++) {
                y[k + i] = e[i];
                sum += e[i];
            }
        }
        double inv = 1.0 / sum;
        float64x2_t vinv = vdupq_n_f64(inv);
        for (k = 0; k + 4 <= n; k += 4) {
            float32x4_t v = vld1q_f32(y + k);
            float64x2_t d0 = vmulq_f64(vcvt_f64_f32(vget_low_f32(v)), vinv);
            float64x2_t d1 = vmulq_f64(vcvt_high_f64_f32(v), vinv);
            vst1q_f32(y + k, vcvt_high_f32_f64(vcvt_f32_f64(d0), d1));
        }
        for (; k < n; k++) y[k] = (float)(y[k] * inv);
    }
}

/* ---- rope: per token the angles exactly as scalar forms them (f32
 * position * f32 inv_freq, then cos/sin in double), then each head rotates
 * with scalar's double arithmetic, 2 lanes at once: bit-identical. ---- */

typedef struct rope_tab {
    float *freq;          /* [half] inv_freq, f32 as scalar forms it */
    double *c, *s;        /* [n_dims], [n_dims] */
    int64_t pos;          /* the position c/s hold, -1 none */
} rope_tab;

static void rope_angles(rope_tab *tb, int mode, int64_t half, float p)
{
    for (int64_t i = 0; i < half; i++) {
        double theta = (double)(p * tb->freq[i]);
        double c = cos(theta), s = sin(theta);
        if (mode == TERN_ROPE_NEOX) {
            tb->c[i] = c, tb->s[i] = s;
        } else {
            tb->c[2 * i] = tb->c[2 * i + 1] = c;
            tb->s[2 * i] = -s; /* y0 = x0 c - x1 s */
            tb->s[2 * i + 1] = s; /* y1 = x1 c + x0 s */
        }
    }
}

void arm_rope(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *a = node->src[0], *pos = node->src[1];
    int mode = node->iparams[0];
    int64_t n_dims = node->iparams[1], head_dim = a->ne[0], half = n_dims / 2;
    float base = node->fparams[0], fscale = node->fparams[1];
    rope_tab tb = {(float *)((double *)scratch + 2 * n_dims), (double *)scratch, (double *)scratch + n_dims, -1};
    for (int64_t i = 0; i < half; i++) tb.freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)n_dims);
    int64_t lo, hi;
    arm_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)arm_row(a, r);
        float *y = (float *)arm_row(node->dst, r);
        int64_t p = arm_i32(pos, r / a->ne[1]);
        if (p != tb.pos) {
            rope_angles(&tb, mode, half, (float)p * fscale);
            tb.pos = p;
        }
        if (y != x)
            for (int64_t k = n_dims; k < head_dim; k++) y[k] = x[k];
        int64_t i = 0;
        if (mode == TERN_ROPE_NEOX) {
            for (; i + 2 <= half; i += 2) {
                float64x2_t x0 = vcvt_f64_f32(vld1_f32(x + i)), x1 = vcvt_f64_f32(vld1_f32(x + i + half));
                float64x2_t c = vld1q_f64(tb.c + i), s = vld1q_f64(tb.s + i);
                float64x2_t y0 = vsubq_f64(vmulq_f64(x0, c), vmulq_f64(x1, s));
                float64x2_t y1 = vaddq_f64(vmulq_f64(x0, s), vmulq_f64(x1, c));
                vst1_f32(y + i, vcvt_f32_f64(y0));
                vst1_f32(y + i + half, vcvt_f32_f64(y1));
            }
            for (; i < half; i++) {
                double x0 = x[i], x1 = x[i + half];
                y[i] = (float)(x0 * tb.c[i] - x1 * tb.s[i]);
                y[i + half] = (float)(x0 * tb.s[i] + x1 * tb.c[i]);
            }
        } else {
            /* lanes (x0, x1): y = x c + swap(x) s', with s' = (-s, s): the
             * same products and sums as scalar's, reordered only where
             * addition commutes */
            for (; i < half; i++) {
                float64x2_t v = vcvt_f64_f32(vld1_f32(x + 2 * i));
                float64x2_t sw = vextq_f64(v, v, 1);
                float64x2_t yv = vaddq_f64(vmulq_f64(v, vld1q_f64(tb.c + 2 * i)),
                                           vmulq_f64(sw, vld1q_f64(tb.s + 2 * i)));
                vst1_f32(y + 2 * i, vcvt_f32_f64(yv));
            }
        }
    }
}

/* ---- kv_store ---- */

void arm_kv_store(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)scratch;
    const tern_tensor *src = node->src[0], *pos = node->src[1];
    tern_tensor *cache = node->dst;
    int64_t lo, hi, head_dim = src->ne[0], n_kv = src->ne[1];
    arm_split(tern_tensor_nrows(src), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t h = r % n_kv, p = arm_i32(pos, r / n_kv);
        if (p < 0 || p >= cache->ne[2]) {
            arm_bad_position(ctx, node, p, cache->ne[2]);
            continue;
        }
        const float *x = (const float *)arm_row(src, r);
        uint8_t *y = (uint8_t *)cache->data + (size_t)h * cache->nb[1] + (size_t)p * cache->nb[2];
        if (cache->type != TERN_TYPE_F16) {
            memcpy(y, x, (size_t)head_dim * 4);
            continue;
        }
        int64_t d = 0;
        for (; d + 4 <= head_dim; d += 4)
            vst1_u16((uint16_t *)(y + 2 * d), vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + d))));
        for (; d < head_dim; d++) {
            uint16_t v = tern_f32_to_f16(x[d]);
            memcpy(y + 2 * d, &v, 2);
        }
    }
}

/* ---- attention: scalar's double formula, 2 doubles a vector, the scores
 * kept in scratch, libm exp, V summed in j order per dimension. scratch
 * holds q and acc widened to double (head_dim rounded up to 8 each) and
 * the n_ctx scores. ---- */

AI float32x4_t load4_cache(const uint8_t *row, int f16, int64_t d)
{
    return f16 ? load4_f16(row, d) : vld1q_f32((const float *)(row + 4 * d));
}

AI float cache1(const uint8_t *row, int f16, int64_t d)
{
    if (f16) return f16_at(row, d);
    float f;
    memcpy(&f, row + 4 * d, 4);
    return f;
}

static double attn_dot(const double *qd, const uint8_t *k, int f16, int64_t hd)
{
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = vdupq_n_f64(0.0);
    int64_t d = 0;
    for (; d + 4 <= hd; d += 4) { /* the products are exact in double: fma = mul + add */
        float32x4_t kv = load4_cache(k, f16, d);
        a0 = vfmaq_f64(a0, vld1q_f64(qd + d), vcvt_f64_f32(vget_low_f32(kv)));
        a1 = vfmaq_f64(a1, vld1q_f64(qd + d + 2), vcvt_high_f64_f32(kv));
    }
    double s = vaddvq_f64(vaddq_f64(a0, a1));
    for (; d < hd; d++) s += qd[d] * cache1(k, f16, d);
    return s;
}

void arm_attention(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    const tern_tensor *q = node->src[0], *kc = node->src[1], *vc = node->src[2], *pos = node->src[3];
    double scale = node->fparams[0];
    int64_t lo, hi, hd = q->ne[0], n_head = q->ne[1], n_ctx = kc->ne[2], group = n_head / kc->ne[1];
    int64_t hd8 = (hd + 7) / 8 * 8;
    double *qd = scratch, *acc = qd + hd8, *score = acc + hd8;
    int kf16 = kc->type == TERN_TYPE_F16, vf16 = vc->type == TERN_TYPE_F16;
    arm_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *qv = (const float *)arm_row(q, r);
        float *y = (float *)arm_row(node->dst, r);
        int64_t h = r % n_head, kvh = h / group, last = arm_i32(pos, r / n_head);
        if (last < 0 || last >= n_ctx) arm_bad_position(ctx, node, last, n_ctx);
        if (last >= n_ctx) last = n_ctx - 1;
        if (!scratch || last < 0) {
            for (int64_t d = 0; d < hd; d++) y[d] = NAN;
            continue;
        }
        const uint8_t *kb = (const uint8_t *)kc->data + (size_t)kvh * kc->nb[1];
        const uint8_t *vb = (const uint8_t *)vc->data + (size_t)kvh * vc->nb[1];
        for (int64_t d = 0; d < hd; d++) qd[d] = qv[d], acc[d] = 0.0;
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= last; j++) {
            score[j] = attn_dot(qd, kb + (size_t)j * kc->nb[2], kf16, hd) * scale;
            max = fmax(max, score[j]);
        }
        for (int64_t j = 0; j <= last; j++) {
            score[j] = exp(score[j] - max);
            sum += score[j];
        }
        for (int64_t j = 0; j <= last; j++) {
            const uint8_t *v = vb + (size_t)j * vc->nb[2];
            float64x2_t p = vdupq_n_f64(score[j]);
            int64_t d = 0;
            for (; d + 4 <= hd; d += 4) { /* product rounded, then added: no fma, as scalar */
                float32x4_t vv = load4_cache(v, vf16, d);
                float64x2_t v0 = vcvt_f64_f32(vget_low_f32(vv)), v1 = vcvt_high_f64_f32(vv);
                vst1q_f64(acc + d, vaddq_f64(vld1q_f64(acc + d), vmulq_f64(p, v0)));
                vst1q_f64(acc + d + 2, vaddq_f64(vld1q_f64(acc + d + 2), vmulq_f64(p, v1)));
            }
            for (; d < hd; d++) acc[d] += score[j] * (double)cache1(v, vf16, d);
        }
        for (int64_t d = 0; d < hd; d++) y[d] = (float)(acc[d] / sum);
    }
}

/* ---- quantize_act: scalar's definition, 4 lanes at a time ---- */

AI int8x8_t quant8(const float *x, float32x4_t inv, int32x4_t *sum)
{
    int32x4_t qi[2];
    for (int u = 0; u < 2; u++) {
        float32x4_t v = vmulq_f32(vld1q_f32(x + 4 * u), inv);
        uint32x4_t ord = vceqq_f32(v, v); /* NaN quantizes to 0 */
        v = vminq_f32(vmaxq_f32(vrndnq_f32(v), vdupq_n_f32(-128.0f)), vdupq_n_f32(127.0f));
        qi[u] = vandq_s32(vcvtq_s32_f32(v), vreinterpretq_s32_u32(ord));
        *sum = vaddq_s32(*sum, qi[u]);
    }
    return vqmovn_s16(vcombine_s16(vqmovn_s32(qi[0]), vqmovn_s32(qi[1])));
}

void arm_quantize_act(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0];
    tern_tensor *dst = node->dst;
    int64_t lo, hi, K = a->ne[0];
    size_t row_bytes = tern_row_size(TERN_TYPE_Q8_TOK, K);
    arm_split(tern_tensor_nrows(dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)arm_row(a, r);
        uint8_t *row = arm_row(dst, r);
        float32x4_t vmax = vdupq_n_f32(TERN_ACT_AMAX_MIN);
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) /* fmaxnm returns the number: NaN is skipped */
            vmax = vmaxnmq_f32(vabsq_f32(vld1q_f32(x + k)), vmax);
        float amax = vmaxnmvq_f32(vmax);
        for (; k < K; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        tern_q8tok_header h;
        memset(&h, 0, sizeof h);
        h.inv = 127.0f / amax;
        int8_t *q = (int8_t *)(row + TERN_Q8TOK_HEADER);
        memset(q + (K & ~(int64_t)7), 0, row_bytes - TERN_Q8TOK_HEADER - (size_t)(K & ~(int64_t)7));
        float32x4_t inv = vdupq_n_f32(h.inv);
        int32x4_t vsum = vdupq_n_s32(0);
        for (k = 0; k + 8 <= K; k += 8) vst1_s8(q + k, quant8(x + k, inv, &vsum));
        h.sum = vaddvq_s32(vsum);
        for (; k < K; k++) {
            float v = nearbyintf(x[k] * h.inv);
            int8_t qq = v != v ? 0 : v > 127.0f ? 127 : v < -128.0f ? -128 : (int8_t)v;
            q[k] = qq;
            h.sum += qq;
        }
        memcpy(row, &h, sizeof h);
    }
}

/* ---- get_rows ---- */

void arm_get_rows(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)scratch;
    const tern_host_api *host = ((const arm_ctx *)ctx)->host;
    const tern_tensor *table = node->src[0], *ids = node->src[1];
    int64_t lo, hi, n = table->ne[0], n_rows = tern_tensor_nrows(table);
    arm_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *y = (float *)arm_row(node->dst, r);
        int32_t id = arm_i32(ids, r);
        if (id < 0 || id >= n_rows) {
            for (int64_t k = 0; k < n; k++) y[k] = NAN;
            host->node_error(node, TERN_EINVAL, "row id %d outside the table of %lld rows", id,
                             (long long)n_rows);
            continue;
        }
        const uint8_t *src = (const uint8_t *)table->data + (size_t)id * table->nb[1];
        int64_t k = 0;
        switch (table->type) {
        case TERN_TYPE_F32: memcpy(y, src, (size_t)n * 4); break;
        case TERN_TYPE_F16:
            for (; k + 4 <= n; k += 4) vst1q_f32(y + k, load4_f16(src, k));
            for (; k < n; k++) y[k] = f16_at(src, k);
            break;
        case TERN_TYPE_BF16:
            for (; k + 4 <= n; k += 4) vst1q_f32(y + k, load4_bf16(src, k));
            for (; k < n; k++) {
                uint16_t b;
                memcpy(&b, src + 2 * k, 2);
                y[k] = tern_bf16_to_f32(b);
            }
            break;
        case TERN_TYPE_Q8_0:
            for (int64_t b = 0; b < n / TERN_QK8_0; b++) {
                const uint8_t *blk = src + b * 34;
                float d = f16_at(blk, 0);
                for (int u = 0; u < 4; u++) {
                    int16x8_t q16 = vmovl_s8(vld1_s8((const int8_t *)blk + 2 + 8 * u));
                    vst1q_f32(y + 32 * b + 8 * u, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q16))), d));
                    vst1q_f32(y + 32 * b + 8 * u + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(q16)), d));
                }
            }
            break;
        default: /* ternary tables: the reference decoder */
            if (tern_dequantize_rows(table, id, 1, y, NULL) != TERN_OK) {
                for (k = 0; k < n; k++) y[k] = NAN;
                host->node_error(node, TERN_EINVAL, "row %d of a %s table cannot be decoded", id,
                                 tern_type_name(table->type));
            }
        }
    }
}

/* ---- float matmul: F32, F16, BF16 as stored ----
 * One output = one 8-wide FMA chain over k (two 4-lane registers, 8
 * weights a step, the K%8 tail as one zero-padded step), then a fixed
 * horizontal sum. A tile of R rows x T tokens runs R*T such chains side by
 * side and never mixes them, so GEMV (8 x 1) and GEMM (4 x 2) give
 * identical bits. */

enum { W_F32, W_F16, W_BF16 };

AI float32x4_t wload(int wt, const uint8_t *row, int64_t k)
{
    switch (wt) {
    case W_F32: return vld1q_f32((const float *)row + k);
    case W_F16: return load4_f16(row, k);
    default: return load4_bf16(row, k);
    }
}

/* The tail step: weights k0..K-1 decoded one by one (exactly the values
 * wload gives), zero-padded to 8. */
static void wtail(int wt, const uint8_t *row, int64_t k0, int64_t K, float *w)
{
    memset(w, 0, 8 * sizeof *w);
    for (int64_t k = k0; k < K; k++) {
        uint16_t h;
        switch (wt) {
        case W_F32: memcpy(&w[k - k0], row + 4 * k, 4); break;
        case W_F16: memcpy(&h, row + 2 * k, 2), w[k - k0] = tern_f16_to_f32(h); break;
        default: memcpy(&h, row + 2 * k, 2), w[k - k0] = tern_bf16_to_f32(h); break;
        }
    }
}

AI void mm_tile(int wt, int R, int T, const uint8_t *const *wr, const float *const *x, int64_t K,
                float *out)
{
    float32x4_t acc[8][2][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) acc[r][t][0] = acc[r][t][1] = vdupq_n_f32(0.0f);
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        float32x4_t xv[2][2];
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) xv[t][0] = vld1q_f32(x[t] + k), xv[t][1] = vld1q_f32(x[t] + k + 4);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            float32x4_t w0 = wload(wt, wr[r], k), w1 = wload(wt, wr[r], k + 4);
            _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], w0, xv[t][0]);
                acc[r][t][1] = vfmaq_f32(acc[r][t][1], w1, xv[t][1]);
            }
        }
    }
    if (k < K) {
        float xt[2][8], wt8[8];
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {
            memset(xt[t], 0, sizeof xt[t]);
            memcpy(xt[t], x[t] + k, (size_t)(K - k) * 4);
        }
        for (int r = 0; r < R; r++) {
            wtail(wt, wr[r], k, K, wt8);
            float32x4_t w0 = vld1q_f32(wt8), w1 = vld1q_f32(wt8 + 4);
            for (int t = 0; t < T; t++) {
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], w0, vld1q_f32(xt[t]));
                acc[r][t][1] = vfmaq_f32(acc[r][t][1], w1, vld1q_f32(xt[t] + 4));
            }
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) out[r * T + t] = vaddvq_f32(vaddq_f32(acc[r][t][0], acc[r][t][1]));
}

AI void mm_rows(int wt, const tern_node *node, int64_t lo, int64_t hi)
{
    const tern_tensor *xt = node->src[0], *w = node->src[1];
    tern_tensor *dst = node->dst;
    int64_t K = xt->ne[0], n_tok = tern_tensor_nrows(xt);
    int R = n_tok == 1 ? 8 : 4;
    for (int64_t n0 = lo; n0 < hi; n0 += R) {
        int rows = hi - n0 < R ? (int)(hi - n0) : R;
        const uint8_t *wr[8];
        for (int r = 0; r < rows; r++) wr[r] = (const uint8_t *)w->data + (size_t)(n0 + r) * w->nb[1];
        for (int64_t t0 = 0; t0 < n_tok; t0 += 2) {
            int T = n_tok - t0 < 2 ? (int)(n_tok - t0) : 2;
            const float *x[2];
            float out[8 * 2];
            for (int t = 0; t < T; t++) x[t] = (const float *)arm_row(xt, t0 + t);
            if (rows == 8 && T == 1)
                mm_tile(wt, 8, 1, wr, x, K, out);
            else if (rows == 4 && T == 2)
                mm_tile(wt, 4, 2, wr, x, K, out);
            else if (rows == 4 && T == 1)
                mm_tile(wt, 4, 1, wr, x, K, out);
            else /* edges: one chain at a time, the same chain as in a tile */
                for (int r = 0; r < rows; r++)
                    for (int t = 0; t < T; t++) mm_tile(wt, 1, 1, wr + r, x + t, K, out + r * T + t);
            for (int t = 0; t < T; t++) {
                float *y = (float *)arm_row(dst, t0 + t);
                for (int r = 0; r < rows; r++) y[n0 + r] = out[r * T + t];
            }
        }
    }
}

void arm_fmm_neon(const tern_node *node, int64_t lo, int64_t hi)
{
    switch (node->src[1]->type) {
    case TERN_TYPE_F32: mm_rows(W_F32, node, lo, hi); break;
    case TERN_TYPE_F16: mm_rows(W_F16, node, lo, hi); break;
    default: mm_rows(W_BF16, node, lo, hi); break;
    }
}

/* ---- Q8_0 as stored, without sdot ----
 * Activations: arm_q8act_prepare, the reference quantizer per token. Per
 * row and block the exact int32 dot from smull (products <= 128 * 127 fit
 * int16) and pairwise widening adds, then tern_dot_q8_0's f32 fma, in
 * block order: bit-identical to scalar. */

void arm_q8act_prepare(const tern_node *node, void *scratch)
{
    const tern_tensor *xt = node->src[0];
    int64_t K = xt->ne[0], n_tok = tern_tensor_nrows(xt);
    size_t qbytes = arm_q8act_codes_bytes(K);
    for (int64_t t = 0; t < n_tok; t++) {
        uint8_t *p = arm_q8act_token(scratch, K, t);
        tern_quantize_act_q8_0((const float *)arm_row(xt, t), K, (int8_t *)p, (float *)(p + qbytes));
    }
}

AI int32_t q8_block_dot(const int8_t *w, const int8_t *q)
{
    int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16), q0 = vld1q_s8(q), q1 = vld1q_s8(q + 16);
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(q0)));
    s = vpadalq_s16(s, vmull_high_s8(w0, q0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(w1), vget_low_s8(q1)));
    s = vpadalq_s16(s, vmull_high_s8(w1, q1));
    return vaddvq_s32(s);
}

void arm_q8mm_neon(const tern_node *node, int64_t lo, int64_t hi, void *scratch)
{
    const tern_tensor *xt = node->src[0], *w = node->src[1];
    int64_t K = xt->ne[0], nb = K / 32, n_tok = tern_tensor_nrows(xt);
    size_t qbytes = arm_q8act_codes_bytes(K);
    for (int64_t n = lo; n < hi; n++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)n * w->nb[1];
        for (int64_t t = 0; t < n_tok; t++) {
            const int8_t *q = (const int8_t *)arm_q8act_token(scratch, K, t);
            const float *d = (const float *)((const uint8_t *)q + qbytes);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * 34;
                acc = fmaf((float)q8_block_dot((const int8_t *)blk + 2, q + 32 * b), f16_at(blk, 0) * d[b], acc);
            }
            ((float *)arm_row(node->dst, t))[n] = acc;
        }
    }
}

size_t arm_ops_scratch(const tern_node *nd)
{
    if (nd->op == TERN_OP_MATMUL && nd->src[0] && nd->src[1] && nd->src[1]->type == TERN_TYPE_Q8_0)
        return arm_q8act_scratch(nd->src[0]->ne[0], tern_tensor_nrows(nd->src[0]));
    if (nd->op == TERN_OP_ATTENTION && nd->src[0] && nd->src[1]) /* q, acc, n_ctx scores */
        return (size_t)(2 * ((nd->src[0]->ne[0] + 7) / 8 * 8) + nd->src[1]->ne[2]) * sizeof(double) + 64;
    if (nd->op == TERN_OP_ROPE) {
        size_t n_dims = nd->iparams[1] > 0 ? (size_t)nd->iparams[1] : 0;
        return (n_dims / 2 + 2 * n_dims) * sizeof(double);
    }
    return 0;
}
