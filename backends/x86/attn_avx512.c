/* attn_avx512.c - ATTENTION in double with AVX-512 (8 doubles a vector),
 * built to give the f32 bits scalar gives (backends/scalar/ops_attention.c).
 *
 * Scalar's formula, followed step by step:
 *   dot_j   = sum_d q[d] * k_j[d]            (double; f32 x f16/f32 products
 *                                             are exact in double)
 *   s_j     = dot_j * (double)scale;  m = fmax over s_j (NaN skipped)
 *   e_j     = exp(s_j - m)   (libm exp, the function scalar calls)
 *   sum     = e_0 + e_1 + ... in j order
 *   acc[d]  = e_0 v_0[d] + e_1 v_1[d] + ... in j order, each product
 *             rounded, then added (no FMA: scalar's build contracts none)
 *   y[d]    = (float)(acc[d] / sum)
 * Only the order of the 128 (hd) exact products inside dot_j differs
 * (8 lanes, then a fixed reduction): that moves the last bit of a double at
 * most, far below the f32 rounding of y. Everything after dot_j is the same
 * double operation on the same operands in the same order, so in practice
 * y is bit-identical (the conformance table shows "exact"; tests/x86 checks
 * it with tolerance 0).
 *
 * It still streams the cache: per token and kv head, K rows are read once
 * (pass 1) and V rows once per 32 dimensions (pass 3), each row widened
 * once for all the heads of the group (up to 4); the scores wait in scratch
 * (n_ctx doubles per head, as scalar keeps them),
 * which replaces the earlier f32 online softmax: its rescaling by
 * exp(m_old - m_new) cannot give scalar's e_j. */
#include <immintrin.h>
#include <math.h>

#include "x86.h"

#define AI static inline __attribute__((always_inline))

/* 8 cache values from d (mask m) widened to double; F16 and F32 both widen
 * exactly. */
AI __m512d load8d(const uint8_t *row, int f16, int64_t d, __mmask8 m)
{
    if (f16) return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(m, row + 2 * d)));
    return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, row + 4 * d));
}

AI __mmask8 mask_at(int64_t d, int64_t hd)
{
    int64_t n = hd - d;
    return n >= 8 ? (__mmask8)0xff : n <= 0 ? (__mmask8)0 : (__mmask8)((1u << n) - 1);
}

/* Work unit: one token and one kv head, i.e. the G query heads of its
 * group (G <= 4 at a time): each K and V row is loaded and widened once and
 * used for all G heads. Per head the operations are exactly those above. */
#define GMAX 4

/* pass 1 for G heads: sc[g][j] = dot(q_g, K_j) * scale; returns in mx[g]
 * the max (s > max skips NaN, as fmax does). Keys two at a time, so 2G
 * independent FMA chains. */
AI void scores(int G, const double *qd, int64_t hd8, const uint8_t *kb, size_t stride, int f16,
               int64_t hd, int64_t n, double scale, double *const *sc, double *mx)
{
    for (int g = 0; g < G; g++) mx[g] = -INFINITY;
    for (int64_t j = 0; j < n; j += 2) {
        int two = j + 1 < n;
        const uint8_t *k0 = kb + (size_t)j * stride, *k1 = two ? k0 + stride : k0;
        __m512d a0[GMAX], a1[GMAX];
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) a0[g] = a1[g] = _mm512_setzero_pd();
        for (int64_t d = 0; d < hd; d += 8) {
            __mmask8 m = mask_at(d, hd);
            __m512d v0 = load8d(k0, f16, d, m), v1 = load8d(k1, f16, d, m);
            _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
                __m512d q = _mm512_loadu_pd(qd + g * hd8 + d); /* zero past hd */
                a0[g] = _mm512_fmadd_pd(q, v0, a0[g]); /* products exact: fma = mul + add */
                a1[g] = _mm512_fmadd_pd(q, v1, a1[g]);
            }
        }
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
            double s0 = _mm512_reduce_add_pd(a0[g]) * scale;
            sc[g][j] = s0;
            mx[g] = s0 > mx[g] ? s0 : mx[g];
            if (two) {
                double s1 = _mm512_reduce_add_pd(a1[g]) * scale;
                sc[g][j + 1] = s1;
                mx[g] = s1 > mx[g] ? s1 : mx[g];
            }
        }
    }
}

/* pass 3 for G heads: y_g[d] = (float)(sum_j e_g[j] v_j[d] / sum_g), j in
 * order, product rounded then added; 32 dimensions a sweep (4G
 * accumulators). */
AI void weighted(int G, const uint8_t *vb, size_t stride, int f16, int64_t hd, int64_t n,
                 double *const *sc, const double *sum, float *const *y)
{
    for (int64_t d0 = 0; d0 < hd; d0 += 32) {
        __m512d acc[GMAX][4];
        __mmask8 m[4];
        for (int u = 0; u < 4; u++) m[u] = mask_at(d0 + 8 * u, hd);
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++)
            _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) acc[g][u] = _mm512_setzero_pd();
        for (int64_t j = 0; j < n; j++) {
            const uint8_t *v = vb + (size_t)j * stride;
            __m512d vv[4];
            _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) vv[u] = load8d(v, f16, d0 + 8 * u, m[u]);
            _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
                __m512d p = _mm512_set1_pd(sc[g][j]);
                _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++)
                    acc[g][u] = _mm512_add_pd(acc[g][u], _mm512_mul_pd(p, vv[u]));
            }
        }
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
            __m512d vs = _mm512_set1_pd(sum[g]);
            _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++)
                if (m[u]) _mm256_mask_storeu_ps(y[g] + d0 + 8 * u, m[u], _mm512_cvtpd_ps(_mm512_div_pd(acc[g][u], vs)));
        }
    }
}

AI void group_heads(int G, const double *qd, int64_t hd8, const uint8_t *kb, const uint8_t *vb,
                    const tern_tensor *kc, const tern_tensor *vc, int64_t hd, int64_t n, double scale,
                    double *const *sc, float *const *y)
{
    double mx[GMAX], sum[GMAX];
    scores(G, qd, hd8, kb, kc->nb[2], kc->type == TERN_TYPE_F16, hd, n, scale, sc, mx);
    for (int g = 0; g < G; g++) { /* pass 2: libm exp, summed in j order */
        double s = 0.0, m = mx[g], *e = sc[g];
        for (int64_t j = 0; j < n; j++) {
            e[j] = exp(e[j] - m);
            s += e[j];
        }
        sum[g] = s;
    }
    weighted(G, vb, vc->nb[2], vc->type == TERN_TYPE_F16, hd, n, sc, sum, y);
}

void x86_attention_avx512(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *q = node->src[0], *kc = node->src[1], *vc = node->src[2], *pos = node->src[3];
    double scale = node->fparams[0];
    int64_t lo, hi, hd = q->ne[0], n_head = q->ne[1], n_kv = kc->ne[1], n_ctx = kc->ne[2];
    int64_t group = n_head / n_kv, n_tok = tern_tensor_nrows(q) / n_head;
    int64_t hd8 = (hd + 7) / 8 * 8;
    x86_split(n_tok * n_kv, ith, nth, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        int64_t t = u / n_kv, kvh = u % n_kv, last = x86_i32(pos, t);
        if (last < 0 || last >= n_ctx) x86_bad_position(ctx, node, last, n_ctx);
        if (last >= n_ctx) last = n_ctx - 1;
        const uint8_t *kb = (const uint8_t *)kc->data + (size_t)kvh * kc->nb[1];
        const uint8_t *vb = (const uint8_t *)vc->data + (size_t)kvh * vc->nb[1];
        for (int64_t g0 = 0; g0 < group; g0 += GMAX) {
            int G = group - g0 < GMAX ? (int)(group - g0) : GMAX;
            double *qd = scratch, *sc[GMAX];
            float *y[GMAX];
            for (int g = 0; g < G; g++) {
                int64_t r = t * n_head + kvh * group + g0 + g;
                y[g] = (float *)x86_row(node->dst, r);
                if (!scratch || last < 0) continue;
                const float *qv = (const float *)x86_row(q, r);
                for (int64_t d = 0; d < hd8; d++) qd[g * hd8 + d] = d < hd ? qv[d] : 0.0;
                sc[g] = qd + GMAX * hd8 + g * n_ctx;
            }
            if (!scratch || last < 0) {
                for (int g = 0; g < G; g++)
                    for (int64_t d = 0; d < hd; d++) y[g][d] = NAN;
                continue;
            }
            switch (G) {
            case 1: group_heads(1, qd, hd8, kb, vb, kc, vc, hd, last + 1, scale, sc, y); break;
            case 2: group_heads(2, qd, hd8, kb, vb, kc, vc, hd, last + 1, scale, sc, y); break;
            case 3: group_heads(3, qd, hd8, kb, vb, kc, vc, hd, last + 1, scale, sc, y); break;
            default: group_heads(4, qd, hd8, kb, vb, kc, vc, hd, last + 1, scale, sc, y); break;
            }
        }
    }
}
