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
 * It still streams the cache: K rows are read once (pass 1, four keys side
 * by side), V rows once per 64 dimensions (pass 3, 8 register accumulators
 * over j); the scores wait in scratch (n_ctx doubles, as scalar keeps them),
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

/* Scores of keys j0..j0+3 (nk of them valid) into s[]. */
AI void dot4(const double *qd, const uint8_t *kb, size_t stride, int f16, int64_t hd, int64_t j0,
             int nk, double *s)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    const uint8_t *k0 = kb + (size_t)j0 * stride;
    const uint8_t *k1 = nk > 1 ? k0 + stride : k0, *k2 = nk > 2 ? k0 + 2 * stride : k0,
                  *k3 = nk > 3 ? k0 + 3 * stride : k0;
    for (int64_t d = 0; d < hd; d += 8) {
        __mmask8 m = mask_at(d, hd);
        __m512d q = _mm512_maskz_loadu_pd(m, qd + d);
        a0 = _mm512_fmadd_pd(q, load8d(k0, f16, d, m), a0); /* products exact: fma = mul + add */
        a1 = _mm512_fmadd_pd(q, load8d(k1, f16, d, m), a1);
        a2 = _mm512_fmadd_pd(q, load8d(k2, f16, d, m), a2);
        a3 = _mm512_fmadd_pd(q, load8d(k3, f16, d, m), a3);
    }
    s[0] = _mm512_reduce_add_pd(a0);
    if (nk > 1) s[1] = _mm512_reduce_add_pd(a1);
    if (nk > 2) s[2] = _mm512_reduce_add_pd(a2);
    if (nk > 3) s[3] = _mm512_reduce_add_pd(a3);
}

void x86_attention_avx512(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const tern_tensor *q = node->src[0], *kc = node->src[1], *vc = node->src[2], *pos = node->src[3];
    double scale = node->fparams[0];
    int64_t lo, hi, hd = q->ne[0], n_head = q->ne[1], n_ctx = kc->ne[2], group = n_head / kc->ne[1];
    int64_t hd8 = (hd + 7) / 8 * 8;
    double *qd = scratch, *score = qd + hd8;
    int kf16 = kc->type == TERN_TYPE_F16, vf16 = vc->type == TERN_TYPE_F16;
    x86_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *qv = (const float *)x86_row(q, r);
        float *y = (float *)x86_row(node->dst, r);
        int64_t h = r % n_head, kvh = h / group, last = x86_i32(pos, r / n_head);
        if (last >= n_ctx) last = n_ctx - 1;
        if (!scratch || last < 0) {
            for (int64_t d = 0; d < hd; d++) y[d] = NAN;
            continue;
        }
        const uint8_t *kb = (const uint8_t *)kc->data + (size_t)kvh * kc->nb[1];
        const uint8_t *vb = (const uint8_t *)vc->data + (size_t)kvh * vc->nb[1];
        for (int64_t d = 0; d < hd; d++) qd[d] = qv[d];
        /* pass 1: scores and their max (s > max skips NaN, as fmax does) */
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= last; j += 4) {
            int nk = last + 1 - j < 4 ? (int)(last + 1 - j) : 4;
            dot4(qd, kb, kc->nb[2], kf16, hd, j, nk, score + j);
            for (int i = 0; i < nk; i++) {
                score[j + i] *= scale;
                max = fmax(max, score[j + i]);
            }
        }
        /* pass 2: libm exp, summed in j order */
        for (int64_t j = 0; j <= last; j++) {
            score[j] = exp(score[j] - max);
            sum += score[j];
        }
        /* pass 3: acc[d] in j order, 64 dimensions a sweep */
        __m512d vsum = _mm512_set1_pd(sum);
        for (int64_t d0 = 0; d0 < hd; d0 += 64) {
            __m512d acc[8];
            __mmask8 m[8];
            for (int u = 0; u < 8; u++) {
                acc[u] = _mm512_setzero_pd();
                m[u] = mask_at(d0 + 8 * u, hd);
            }
            for (int64_t j = 0; j <= last; j++) {
                const uint8_t *v = vb + (size_t)j * vc->nb[2];
                __m512d p = _mm512_set1_pd(score[j]);
                _Pragma("GCC unroll 8") for (int u = 0; u < 8; u++) if (m[u])
                    acc[u] = _mm512_add_pd(acc[u], _mm512_mul_pd(p, load8d(v, vf16, d0 + 8 * u, m[u])));
            }
            for (int u = 0; u < 8; u++)
                if (m[u]) _mm256_mask_storeu_ps(y + d0 + 8 * u, m[u], _mm512_cvtpd_ps(_mm512_div_pd(acc[u], vsum)));
        }
    }
}
