/* ops_avx2.c - every op but the ternary matmul, vectorised with AVX2, FMA
 * and F16C (built with -mavx2 -mfma -mf16c; called only when probe saw
 * them). These ops are memory-bound or small, so 256-bit code serves the
 * AVX-512 path too.
 *
 * Numerics against scalar (which keeps sums in double):
 *  - add, mul, relu_sq, get_rows, kv_store, quantize_act: bit-exact (the
 *    same f32 operations; F16C and cvtps2ph round to nearest even as
 *    tern_f16_to_f32 / tern_f32_to_f16 do; Q8_0 d*q is exact in f32).
 *  - rms_norm and rope: the same double arithmetic as scalar per element
 *    (only rms_norm's sum of squares is reordered).
 *  - silu, softmax: f32 exp (Cephes polynomial, ~1 ulp); softmax forms
 *    x*s - max with an FMA so large scaled inputs keep their precision,
 *    and sums its exps in double.
 *  - attention: scalar's double formula and rounding points, libm exp:
 *    bit-identical in practice (see attn_avx512.c).
 *  - matmul: f32 FMA chains (one 8-lane accumulator per output, k in
 *    order, a fixed horizontal sum), the same for every tile shape, so an
 *    output never depends on n_tok or nth. Q8_0: bit-exact (integer dots,
 *    the reference's f32 steps).
 * This file is compiled with -std=c11, so the compiler contracts nothing
 * into FMAs behind our back: every fma here is written out. */
#include <immintrin.h>
#include <math.h>

#include "x86.h"

#define AI static inline __attribute__((always_inline))

/* ---- small helpers ---- */

static const int32_t tail_idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};

AI __m256i tail_mask(int64_t n) /* lanes < n set */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_loadu_si256((const __m256i *)tail_idx));
}

AI float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AI float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AI double hsum4d(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* e^x, Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial;
 * about 1 ulp on [-87, 88]; inputs are clamped there. */
AI __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365478515625f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* ---- elementwise ---- */

enum { EW_ADD, EW_MUL, EW_RELU_SQ, EW_SILU };

AI __m256 ew_apply(int op, __m256 a, __m256 b)
{
    switch (op) {
    case EW_ADD: return _mm256_add_ps(a, b);
    case EW_MUL: return _mm256_mul_ps(a, b);
    case EW_RELU_SQ: {
        __m256 r = _mm256_max_ps(a, _mm256_setzero_ps()); /* NaN and -0 give +0, as x > 0 ? x : 0 */
        return _mm256_mul_ps(r, r);
    }
    default: {
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), a));
        return _mm256_div_ps(a, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
    }
}

AI void elementwise(const tern_node *node, int ith, int nth, int op)
{
    const tern_tensor *a = node->src[0], *b = node->src[1];
    int binary = op == EW_ADD || op == EW_MUL;
    int64_t lo, hi, n = a->ne[0];
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)x86_row(a, r);
        const float *z = binary ? (const float *)x86_row(b, r) : x;
        float *y = (float *)x86_row(node->dst, r);
        int64_t k = 0;
        for (; k + 8 <= n; k += 8)
            _mm256_storeu_ps(y + k, ew_apply(op, _mm256_loadu_ps(x + k), _mm256_loadu_ps(z + k)));
        if (k < n) {
            __m256i m = tail_mask(n - k);
            __m256 v = ew_apply(op, _mm256_maskload_ps(x + k, m), _mm256_maskload_ps(z + k, m));
            _mm256_maskstore_ps(y + k, m, v);
        }
    }
}

void x86_add(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_ADD);
}

void x86_mul(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_MUL);
}

void x86_relu_sq(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_RELU_SQ);
}

void x86_silu(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    elementwise(node, ith, nth, EW_SILU);
}

/* ---- rms_norm: scalar's steps: the sum of squares in double (products
 * exact; summed 8 lanes wide here, in order in scalar, which moves only
 * the last bits of a double), then var = (float)(ss / n), 1/sqrtf(var +
 * eps), x*s and *w rounded to f32 as scalar rounds them. ---- */

void x86_rms_norm(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0], *w = node->src[1];
    const float *wv = w ? (const float *)w->data : NULL; /* [ne0] */
    float eps = node->fparams[0];
    int64_t lo, hi, n = a->ne[0];
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)x86_row(a, r);
        float *y = (float *)x86_row(node->dst, r);
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        int64_t k = 0;
        for (; k + 8 <= n; k += 8) {
            __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(x + k)), x1 = _mm256_cvtps_pd(_mm_loadu_ps(x + k + 4));
            s0 = _mm256_fmadd_pd(x0, x0, s0);
            s1 = _mm256_fmadd_pd(x1, x1, s1);
        }
        double ss = hsum4d(_mm256_add_pd(s0, s1));
        for (; k < n; k++) ss += (double)x[k] * x[k];
        float var = (float)(ss / (double)n);
        float s = 1.0f / sqrtf(var + eps);
        __m256 sv = _mm256_set1_ps(s);
        for (k = 0; k + 8 <= n; k += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k), sv);
            if (wv) v = _mm256_mul_ps(v, _mm256_loadu_ps(wv + k));
            _mm256_storeu_ps(y + k, v);
        }
        for (; k < n; k++) {
            float v = x[k] * s;
            y[k] = wv ? v * wv[k] : v;
        }
    }
}

/* ---- softmax: y = exp(x s - m) / sum, x s - m as one FMA minus the
 * rounding error of m, the sum in double ---- */

void x86_softmax(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0];
    float scale = node->fparams[0];
    int64_t lo, hi, n = a->ne[0];
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)x86_row(a, r);
        float *y = (float *)x86_row(node->dst, r);
        __m256 vmax = _mm256_set1_ps(-INFINITY), vmin = _mm256_set1_ps(INFINITY);
        int64_t k = 0;
        for (; k + 8 <= n; k += 8) {
            __m256 v = _mm256_loadu_ps(x + k);
            vmax = _mm256_max_ps(v, vmax);
            vmin = _mm256_min_ps(v, vmin);
        }
        float xmax = hmax8(vmax), xmin = -hmax8(_mm256_sub_ps(_mm256_setzero_ps(), vmin));
        for (; k < n; k++) {
            xmax = x[k] > xmax ? x[k] : xmax;
            xmin = x[k] < xmin ? x[k] : xmin;
        }
        float xm = scale >= 0.0f ? xmax : xmin;
        float m_hi = xm * scale, m_lo = fmaf(xm, scale, -m_hi); /* m = m_hi + m_lo exactly */
        __m256 vs = _mm256_set1_ps(scale), vmh = _mm256_set1_ps(-m_hi), vml = _mm256_set1_ps(m_lo);
        __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
        for (k = 0; k + 8 <= n; k += 8) {
            __m256 d = _mm256_sub_ps(_mm256_fmadd_ps(_mm256_loadu_ps(x + k), vs, vmh), vml);
            __m256 e = exp8(d);
            _mm256_storeu_ps(y + k, e);
            sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        double sum = hsum4d(_mm256_add_pd(sum0, sum1));
        if (k < n) {
            __m256i m = tail_mask(n - k);
            __m256 d = _mm256_sub_ps(_mm256_fmadd_ps(_mm256_maskload_ps(x + k, m), vs, vmh), vml);
            float e[8];
            _mm256_storeu_ps(e, exp8(d));
            for (int64_t i = 0; i < n - k; i++) {
                y[k + i] = e[i];
                sum += e[i];
            }
        }
        __m256d inv = _mm256_set1_pd(1.0 / sum);
        for (k = 0; k + 4 <= n; k += 4)
            _mm_storeu_ps(y + k, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(y + k)), inv)));
        for (; k < n; k++) y[k] = (float)(y[k] * (1.0 / sum));
    }
}

/* ---- rope: per token the angles exactly as scalar forms them (f32
 * position * f32 inv_freq, then cos/sin in double), then each head rotates
 * with scalar's double arithmetic, 4 lanes at once: bit-identical. ---- */

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

void x86_rope(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *a = node->src[0], *pos = node->src[1];
    int mode = node->iparams[0];
    int64_t n_dims = node->iparams[1], head_dim = a->ne[0], half = n_dims / 2;
    float base = node->fparams[0], fscale = node->fparams[1];
    rope_tab tb = {(float *)((double *)scratch + 2 * n_dims), (double *)scratch, (double *)scratch + n_dims, -1};
    for (int64_t i = 0; i < half; i++) tb.freq[i] = 1.0f / powf(base, (float)(2 * i) / (float)n_dims);
    int64_t lo, hi;
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)x86_row(a, r);
        float *y = (float *)x86_row(node->dst, r);
        int64_t p = x86_i32(pos, r / a->ne[1]);
        if (p != tb.pos) {
            rope_angles(&tb, mode, half, (float)p * fscale);
            tb.pos = p;
        }
        if (y != x)
            for (int64_t k = n_dims; k < head_dim; k++) y[k] = x[k];
        int64_t i = 0;
        if (mode == TERN_ROPE_NEOX) {
            for (; i + 4 <= half; i += 4) {
                __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), x1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + half));
                __m256d c = _mm256_loadu_pd(tb.c + i), s = _mm256_loadu_pd(tb.s + i);
                __m256d y0 = _mm256_sub_pd(_mm256_mul_pd(x0, c), _mm256_mul_pd(x1, s));
                __m256d y1 = _mm256_add_pd(_mm256_mul_pd(x0, s), _mm256_mul_pd(x1, c));
                _mm_storeu_ps(y + i, _mm256_cvtpd_ps(y0));
                _mm_storeu_ps(y + i + half, _mm256_cvtpd_ps(y1));
            }
            for (; i < half; i++) {
                double x0 = x[i], x1 = x[i + half];
                y[i] = (float)(x0 * tb.c[i] - x1 * tb.s[i]);
                y[i + half] = (float)(x0 * tb.s[i] + x1 * tb.c[i]);
            }
        } else {
            /* lanes (x0, x1, x0', x1'): y = x c + swap(x) s', with s' = (-s, s)
             * per pair: the same products and sums as scalar's, reordered
             * only where addition commutes. */
            for (; 2 * i + 4 <= n_dims; i += 2) {
                __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + 2 * i));
                __m256d sw = _mm256_permute_pd(v, 0x5);
                __m256d yv = _mm256_add_pd(_mm256_mul_pd(v, _mm256_loadu_pd(tb.c + 2 * i)),
                                           _mm256_mul_pd(sw, _mm256_loadu_pd(tb.s + 2 * i)));
                _mm_storeu_ps(y + 2 * i, _mm256_cvtpd_ps(yv));
            }
            for (; i < half; i++) {
                double x0 = x[2 * i], x1 = x[2 * i + 1], c = tb.c[2 * i], s = tb.s[2 * i + 1];
                y[2 * i] = (float)(x0 * c - x1 * s);
                y[2 * i + 1] = (float)(x0 * s + x1 * c);
            }
        }
    }
}

/* ---- kv_store ---- */

void x86_kv_store(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *src = node->src[0], *pos = node->src[1];
    tern_tensor *cache = node->dst;
    int64_t lo, hi, head_dim = src->ne[0], n_kv = src->ne[1];
    x86_split(tern_tensor_nrows(src), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t h = r % n_kv, p = x86_i32(pos, r / n_kv);
        if (p < 0 || p >= cache->ne[2]) {
            x86_bad_position(ctx, node, p, cache->ne[2]);
            continue;
        }
        const float *x = (const float *)x86_row(src, r);
        uint8_t *y = (uint8_t *)cache->data + (size_t)h * cache->nb[1] + (size_t)p * cache->nb[2];
        if (cache->type != TERN_TYPE_F16) {
            memcpy(y, x, (size_t)head_dim * 4);
            continue;
        }
        int64_t d = 0;
        for (; d + 8 <= head_dim; d += 8)
            _mm_storeu_si128((__m128i *)(y + 2 * d),
                             _mm256_cvtps_ph(_mm256_loadu_ps(x + d), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        for (; d < head_dim; d++) {
            uint16_t v = tern_f32_to_f16(x[d]);
            memcpy(y + 2 * d, &v, 2);
        }
    }
}

/* ---- attention: scratch holds q and acc widened to double (head_dim
 * rounded up to 8 each) and the n_ctx scores. ---- */

AI __m256 load8_cache(const uint8_t *row, int f16, int64_t d)
{
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * d)))
               : _mm256_loadu_ps((const float *)(row + 4 * d));
}

AI float cache1(const uint8_t *row, int f16, int64_t d)
{
    if (f16) {
        uint16_t h;
        memcpy(&h, row + 2 * d, 2);
        return tern_f16_to_f32(h);
    }
    float f;
    memcpy(&f, row + 4 * d, 4);
    return f;
}

/* AVX2 attention (the AVX-512 one is attn_avx512.c; the same numerics,
 * see its comment): scalar's double formula, 4 doubles a vector, the
 * scores kept in scratch, libm exp, V summed in j order per dimension. */
static double attn_dot(const double *qd, const uint8_t *k, int f16, int64_t hd)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
        __m256 kv = load8_cache(k, f16, d);
        a0 = _mm256_fmadd_pd(_mm256_loadu_pd(qd + d), _mm256_cvtps_pd(_mm256_castps256_ps128(kv)), a0);
        a1 = _mm256_fmadd_pd(_mm256_loadu_pd(qd + d + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(kv, 1)), a1);
    }
    double s = hsum4d(_mm256_add_pd(a0, a1));
    for (; d < hd; d++) s += qd[d] * cache1(k, f16, d);
    return s;
}

void x86_attention(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *q = node->src[0], *kc = node->src[1], *vc = node->src[2], *pos = node->src[3];
    double scale = node->fparams[0];
    int64_t lo, hi, hd = q->ne[0], n_head = q->ne[1], n_ctx = kc->ne[2], group = n_head / kc->ne[1];
    int64_t hd8 = (hd + 7) / 8 * 8;
    double *qd = scratch, *acc = qd + hd8, *score = acc + hd8;
    int kf16 = kc->type == TERN_TYPE_F16, vf16 = vc->type == TERN_TYPE_F16;
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *qv = (const float *)x86_row(q, r);
        float *y = (float *)x86_row(node->dst, r);
        int64_t h = r % n_head, kvh = h / group, last = x86_i32(pos, r / n_head);
        if (last < 0 || last >= n_ctx) x86_bad_position(ctx, node, last, n_ctx);
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
            __m256d p = _mm256_set1_pd(score[j]);
            int64_t d = 0;
            for (; d + 8 <= hd; d += 8) {
                __m256 vv = load8_cache(v, vf16, d);
                __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(vv)), v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(vv, 1));
                _mm256_storeu_pd(acc + d, _mm256_add_pd(_mm256_loadu_pd(acc + d), _mm256_mul_pd(p, v0)));
                _mm256_storeu_pd(acc + d + 4, _mm256_add_pd(_mm256_loadu_pd(acc + d + 4), _mm256_mul_pd(p, v1)));
            }
            for (; d < hd; d++) acc[d] += score[j] * (double)cache1(v, vf16, d);
        }
        for (int64_t d = 0; d < hd; d++) y[d] = (float)(acc[d] / sum);
    }
}

/* ---- quantize_act: scalar's definition, 8 lanes at a time ---- */

void x86_quantize_act(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0];
    tern_tensor *dst = node->dst;
    int64_t lo, hi, K = a->ne[0];
    size_t row_bytes = tern_row_size(TERN_TYPE_Q8_TOK, K);
    x86_split(tern_tensor_nrows(dst), ith, nth, &lo, &hi);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)x86_row(a, r);
        uint8_t *row = x86_row(dst, r);
        __m256 vmax = _mm256_set1_ps(TERN_ACT_AMAX_MIN);
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) /* max_ps returns its 2nd operand on NaN: NaN is skipped */
            vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absmask), vmax);
        float amax = hmax8(vmax);
        for (; k < K; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
        tern_q8tok_header h;
        memset(&h, 0, sizeof h);
        h.inv = 127.0f / amax;
        int8_t *q = (int8_t *)(row + TERN_Q8TOK_HEADER);
        memset(q + (K & ~(int64_t)31), 0, row_bytes - TERN_Q8TOK_HEADER - (size_t)(K & ~(int64_t)31));
        __m256 inv = _mm256_set1_ps(h.inv), lo_c = _mm256_set1_ps(-128.0f), hi_c = _mm256_set1_ps(127.0f);
        __m256i vsum = _mm256_setzero_si256();
        for (k = 0; k + 32 <= K; k += 32) {
            __m256i qi[4];
            for (int u = 0; u < 4; u++) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * u), inv);
                __m256 ord = _mm256_cmp_ps(v, v, _CMP_ORD_Q); /* NaN quantizes to 0 */
                v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm256_and_ps(_mm256_min_ps(_mm256_max_ps(v, lo_c), hi_c), ord);
                qi[u] = _mm256_cvtps_epi32(v);
                vsum = _mm256_add_epi32(vsum, qi[u]);
            }
            __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]), p16b = _mm256_packs_epi32(qi[2], qi[3]);
            __m256i p8 = _mm256_packs_epi16(p16a, p16b); /* lanes come out permuted: fix order */
            p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(q + k), p8);
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vsum), _mm256_extracti128_si256(vsum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        h.sum = _mm_cvtsi128_si32(s4);
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

void x86_get_rows(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *table = node->src[0], *ids = node->src[1];
    int64_t lo, hi, n = table->ne[0], n_rows = tern_tensor_nrows(table);
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *y = (float *)x86_row(node->dst, r);
        int32_t id = x86_i32(ids, r);
        if (id < 0 || id >= n_rows) {
            for (int64_t k = 0; k < n; k++) y[k] = NAN;
            ((const x86_ctx *)ctx)->host->node_error(node, TERN_EINVAL, "row id %d outside the table "
                                                     "of %lld rows", id, (long long)n_rows);
            continue;
        }
        const uint8_t *src = (const uint8_t *)table->data + (size_t)id * table->nb[1];
        int64_t k = 0;
        switch (table->type) {
        case TERN_TYPE_F32: memcpy(y, src, (size_t)n * 4); break;
        case TERN_TYPE_F16:
            for (; k + 8 <= n; k += 8)
                _mm256_storeu_ps(y + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * k))));
            for (; k < n; k++) y[k] = cache1(src, 1, k);
            break;
        case TERN_TYPE_BF16:
            for (; k + 8 <= n; k += 8) {
                __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * k)));
                _mm256_storeu_ps(y + k, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
            }
            for (; k < n; k++) {
                uint16_t b;
                memcpy(&b, src + 2 * k, 2);
                y[k] = tern_bf16_to_f32(b);
            }
            break;
        case TERN_TYPE_Q8_0:
            for (int64_t b = 0; b < n / TERN_QK8_0; b++) {
                const uint8_t *blk = src + b * 34;
                __m256 d = _mm256_set1_ps(cache1(blk, 1, 0));
                for (int u = 0; u < 4; u++) {
                    __m128i q8 = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * u));
                    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
                    _mm256_storeu_ps(y + 32 * b + 8 * u, _mm256_mul_ps(d, v));
                }
            }
            break;
        default: /* ternary tables: the reference decoder */
            if (tern_dequantize_rows(table, id, 1, y, NULL) != TERN_OK)
                for (k = 0; k < n; k++) y[k] = NAN;
        }
    }
}

/* ---- float matmul: F32, F16, BF16 as stored ----
 * One output = one 8-lane FMA chain over k (8 weights a step, the K%8 tail
 * as one zero-padded step), then hsum8. A tile of R rows x T tokens runs R*T such chains side by side and
 * never mixes them, so GEMV (8 x 1) and GEMM (4 x 3) give identical bits. */

enum { W_F32, W_F16, W_BF16 };

AI __m256 wload(int wt, const uint8_t *row, int64_t k)
{
    switch (wt) {
    case W_F32: return _mm256_loadu_ps((const float *)row + k);
    case W_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
    default:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k))), 16));
    }
}

/* The tail step: weights k0..K-1 decoded one by one (exactly the values
 * wload gives), zero-padded to 8. */
static __m256 wtail(int wt, const uint8_t *row, int64_t k0, int64_t K)
{
    float w[8] = {0};
    for (int64_t k = k0; k < K; k++) {
        uint16_t h;
        switch (wt) {
        case W_F32: memcpy(&w[k - k0], row + 4 * k, 4); break;
        case W_F16: memcpy(&h, row + 2 * k, 2), w[k - k0] = tern_f16_to_f32(h); break;
        default: memcpy(&h, row + 2 * k, 2), w[k - k0] = tern_bf16_to_f32(h); break;
        }
    }
    return _mm256_loadu_ps(w);
}

AI void mm_tile(int wt, int R, int T, const uint8_t *const *wr, const float *const *x, int64_t K,
                float *out, size_t pf)
{
    /* pf (GEMV, F32/F16/BF16): bytes from each row to the row the next
     * tile reads at the same k; that line is prefetched once per 64 bytes,
     * so the stream never waits for the hardware prefetcher to ramp up */
    int es = wt == W_F32 ? 4 : 2, pf_mask = wt == W_F32 ? 15 : 31;
    __m256 acc[8][3];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[3];
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) xv[t] = _mm256_loadu_ps(x[t] + k);
        if (pf && !(k & pf_mask))
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(wr[r] + (size_t)k * es + pf), _MM_HINT_T0);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m256 w = wload(wt, wr[r], k);
            _Pragma("GCC unroll 8")
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
    if (k < K) {
        __m256i m = tail_mask(K - k);
        __m256 xv[3];
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) xv[t] = _mm256_maskload_ps(x[t] + k, m);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m256 w = wtail(wt, wr[r], k, K);
            _Pragma("GCC unroll 8")
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) out[r * T + t] = hsum8(acc[r][t]);
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
        for (int64_t t0 = 0; t0 < n_tok; t0 += 3) {
            int T = n_tok - t0 < 3 ? (int)(n_tok - t0) : 3;
            const float *x[3];
            float out[8 * 3];
            for (int t = 0; t < T; t++) x[t] = (const float *)x86_row(xt, t0 + t);
            if (rows == 8 && T == 1)
                mm_tile(wt, 8, 1, wr, x, K, out, (size_t)8 * w->nb[1]);
            else if (rows == 4 && T == 3)
                mm_tile(wt, 4, 3, wr, x, K, out, 0);
            else /* edges: one chain at a time, the same chain as in a tile */
                for (int r = 0; r < rows; r++)
                    for (int t = 0; t < T; t++) mm_tile(wt, 1, 1, wr + r, x + t, K, out + r * T + t, 0);
            for (int t = 0; t < T; t++) {
                float *y = (float *)x86_row(dst, t0 + t);
                for (int r = 0; r < rows; r++)
                    y[n0 + r] = out[r * T + t];
            }
        }
    }
}

/* ---- Q8_0 as stored (AVX2; AVX-512 repacks to tiles, q8mm_avx512.c) ----
 * Each token's activations are quantized once (tern_quantize_act_q8_0,
 * the reference itself) into scratch; per row and block the exact int32
 * dot comes from vpsignb / vpabsb / vpmaddubsw (pair sums <= 2 * 128 * 127,
 * no saturation) / vpmaddwd, then tern_dot_q8_0's f32 fma, in block
 * order: bit-identical to scalar. */

AI int32_t q8_block_dot(const uint8_t *w, const int8_t *q)
{
    __m256i wv = _mm256_loadu_si256((const __m256i *)w), qv = _mm256_loadu_si256((const __m256i *)q);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(qv, wv));
    __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p32), _mm256_extracti128_si256(p32, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static void q8_0_rows(const tern_node *node, int64_t lo, int64_t hi, void *scratch)
{
    const tern_tensor *xt = node->src[0], *w = node->src[1];
    int64_t K = xt->ne[0], nb = K / 32, n_tok = tern_tensor_nrows(xt);
    size_t qbytes = x86_q8act_codes_bytes(K);
    for (int64_t t = 0; t < n_tok; t++) {
        uint8_t *p = x86_q8act_token(scratch, K, t);
        tern_quantize_act_q8_0((const float *)x86_row(xt, t), K, (int8_t *)p, (float *)(p + qbytes));
    }
    for (int64_t n = lo; n < hi; n++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)n * w->nb[1];
        for (int64_t t = 0; t < n_tok; t++) {
            const int8_t *q = (const int8_t *)x86_q8act_token(scratch, K, t);
            const float *d = (const float *)((const uint8_t *)q + qbytes);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * 34;
                float dw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[0] | blk[1] << 8)));
                acc = fmaf((float)q8_block_dot(blk + 2, q + 32 * b), dw * d[b], acc);
            }
            ((float *)x86_row(node->dst, t))[n] = acc;
        }
    }
}

void x86_matmul(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *w = node->src[1];
    int64_t lo, hi;
    x86_split(node->dst->ne[0], ith, nth, &lo, &hi);
    switch (w->type) {
    case TERN_TYPE_F32: mm_rows(W_F32, node, lo, hi); break;
    case TERN_TYPE_F16: mm_rows(W_F16, node, lo, hi); break;
    case TERN_TYPE_BF16: mm_rows(W_BF16, node, lo, hi); break;
    default: q8_0_rows(node, lo, hi, scratch); break;
    }
}

size_t x86_ops_scratch(const tern_node *nd)
{
    if (nd->op == TERN_OP_MATMUL && nd->src[0] && nd->src[1] && nd->src[1]->type == TERN_TYPE_Q8_0)
        return x86_q8act_scratch(nd->src[0]->ne[0], tern_tensor_nrows(nd->src[0])); /* both Q8_0 paths */
    if (nd->op == TERN_OP_ATTENTION && nd->src[0] && nd->src[1]) /* AVX2: q, acc, n_ctx scores; AVX-512: */
        return (size_t)4 * (2 * ((nd->src[0]->ne[0] + 7) / 8 * 8) + nd->src[1]->ne[2]) * sizeof(double) + 64; /* the same for 4 heads */
    if (nd->op == TERN_OP_ROPE) {
        size_t n_dims = nd->iparams[1] > 0 ? (size_t)nd->iparams[1] : 0;
        return (n_dims / 2 + 2 * n_dims) * sizeof(double);
    }
    return 0;
}
