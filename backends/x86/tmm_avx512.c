/* tmm_avx512.c - the ternary matmul kernel families for AVX-512 (F, BW,
 * VL, VNNI, VBMI, VPOPCNTDQ): MAD with vpdpbusd, bit-serial with vpopcntq,
 * LUT with vpermb. Layouts in x86.h. Every family computes the exact int32
 * dot, then dst = ((float)acc / inv) * scale as scalar does, so all three
 * are bit-exact against scalar and against each other, whatever the tile
 * or token block an output falls in. */
#include <immintrin.h>

#include "x86.h"

#define AI static inline __attribute__((always_inline))

typedef struct tok {
    const int8_t *q; /* K int8 activations (Q8_TOK row after its header) */
    float inv;
    int32_t sum;
} tok;

static tok token(const tern_tensor *x, int64_t t)
{
    const uint8_t *row = x86_row(x, t);
    tern_q8tok_header h;
    memcpy(&h, row, sizeof h);
    return (tok){(const int8_t *)(row + TERN_Q8TOK_HEADER), h.inv, h.sum};
}

static int32_t load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Rows r.. r+15 of token t: acc -> f32, as scalar: (float)acc / inv * scale. */
AI void store16(const tern_node *node, int64_t t, int64_t r, __m512i acc, float inv)
{
    const x86_tmat *m = node->src[1]->extra;
    float *y = (float *)x86_row(node->dst, t);
    __m512 v = _mm512_div_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(inv));
    v = _mm512_mul_ps(v, _mm512_set1_ps(node->src[1]->scale));
    int64_t n = m->N - r;
    _mm512_mask_storeu_ps(y + r, n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1), v);
}

/* ================= MAD: vpdpbusd, u8 (w + 1) x s8 activations ============
 * GEMV masks the 2-bit fields in place (value (w+1) 4^p) into four
 * accumulators: 4 ALU ops + 4 vpdpbusd per 256 weights, no shifts. Field
 * p = 3 sums up to 128 * 128 * K/4 = 4096 K, so this form is used for
 * Kp <= 65536 (|acc| < 2^28); GEMM and larger K shift the fields down to
 * {0,1,2} first, where int32 wrap-around cancels exactly in acc - sum. */

#define MAD_MASK_KMAX 65536

/* GEMV software prefetch distance in bytes (0: none). Decode streams each
 * ternary matrix once (0.4 to 4.4 MB a call, 210 calls a token); the
 * hardware prefetcher restarts at every call and every tile pair. */
#ifndef MAD_PF
#define MAD_PF 4096
#endif

AI __m512i mad_combine(__m512i a0, __m512i a1, __m512i a2, __m512i a3, int32_t sum)
{
    __m512i s = _mm512_add_epi32(a0, _mm512_srai_epi32(a1, 2));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_srai_epi32(a2, 4), _mm512_srai_epi32(a3, 6)));
    return _mm512_sub_epi32(s, _mm512_set1_epi32(sum));
}

/* GEMV over NT (1 or 2) consecutive 16-row tiles starting at w. */
AI void mad_gemv(int NT, const tern_node *node, const uint8_t *w, size_t tile_bytes, int64_t r,
                 const tok *x)
{
    const x86_tmat *m = node->src[1]->extra;
    const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0c);
    const __m512i m2 = _mm512_set1_epi8(0x30), m3 = _mm512_set1_epi8((char)0xc0);
    __m512i a[2][4];
    _Pragma("GCC unroll 16")
    for (int i = 0; i < NT; i++)
        _Pragma("GCC unroll 16")
        for (int p = 0; p < 4; p++) a[i][p] = _mm512_setzero_si512();
    for (int64_t kb = 0; kb < m->Kp / 16; kb++) {
        const int8_t *q = x->q + 16 * kb;
        __m512i x0 = _mm512_set1_epi32(load32(q)), x1 = _mm512_set1_epi32(load32(q + 4));
        __m512i x2 = _mm512_set1_epi32(load32(q + 8)), x3 = _mm512_set1_epi32(load32(q + 12));
        _Pragma("GCC unroll 16")
        for (int i = 0; i < NT; i++) {
            __m512i v = _mm512_loadu_si512(w + i * tile_bytes + 64 * kb);
#if MAD_PF
            _mm_prefetch((const char *)(w + i * tile_bytes + 64 * kb + MAD_PF), _MM_HINT_T0);
#endif
            a[i][0] = _mm512_dpbusd_epi32(a[i][0], _mm512_and_si512(v, m0), x0);
            a[i][1] = _mm512_dpbusd_epi32(a[i][1], _mm512_and_si512(v, m1), x1);
            a[i][2] = _mm512_dpbusd_epi32(a[i][2], _mm512_and_si512(v, m2), x2);
            a[i][3] = _mm512_dpbusd_epi32(a[i][3], _mm512_and_si512(v, m3), x3);
        }
    }
    _Pragma("GCC unroll 16")
    for (int i = 0; i < NT; i++)
        store16(node, 0, r + 16 * i, mad_combine(a[i][0], a[i][1], a[i][2], a[i][3], x->sum), x->inv);
}

/* GEMM block: NT tiles x T tokens. Field p of every tile is shifted down
 * to {0,1,2} once and used by all T tokens; each token's 4 activation
 * bytes are broadcast once and used by all NT tiles. Registers: NT*T
 * accumulators + NT fields + 1 broadcast (<= 30 of 32 for 4 x 6). */
AI void mad_gemm(int NT, int T, const tern_node *node, const uint8_t *w, size_t tile_bytes, int64_t r,
                 const tok *x, int64_t t0)
{
    const x86_tmat *m = node->src[1]->extra;
    const __m512i m3 = _mm512_set1_epi8(0x03);
    __m512i acc[4][8];
    _Pragma("GCC unroll 16")
    for (int i = 0; i < NT; i++)
        _Pragma("GCC unroll 16")
        for (int t = 0; t < T; t++) acc[i][t] = _mm512_setzero_si512();
    for (int64_t kb = 0; kb < m->Kp / 16; kb++) {
        __m512i v[4];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < NT; i++) v[i] = _mm512_loadu_si512(w + i * tile_bytes + 64 * kb);
        _Pragma("GCC unroll 16")
        for (int p = 0; p < 4; p++) {
            __m512i u[4];
            _Pragma("GCC unroll 16")
            for (int i = 0; i < NT; i++)
                u[i] = _mm512_and_si512(p ? _mm512_srli_epi16(v[i], 2 * p) : v[i], m3);
            _Pragma("GCC unroll 16")
            for (int t = 0; t < T; t++) {
                __m512i xv = _mm512_set1_epi32(load32(x[t].q + 16 * kb + 4 * p));
                _Pragma("GCC unroll 16")
                for (int i = 0; i < NT; i++) acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], u[i], xv);
            }
        }
    }
    _Pragma("GCC unroll 16")
    for (int t = 0; t < T; t++)
        _Pragma("GCC unroll 16")
        for (int i = 0; i < NT; i++)
            store16(node, t0 + t, r + 16 * i, _mm512_sub_epi32(acc[i][t], _mm512_set1_epi32(x[t].sum)),
                    x[t].inv);
}

#ifndef MAD_NT
#define MAD_NT 4 /* row tiles per GEMM block */
#endif
#ifndef MAD_TB
#define MAD_TB 6 /* tokens per GEMM block */
#endif

static void mad_gemm_block(int NT, int T, const tern_node *node, const uint8_t *w, size_t tb,
                           int64_t r, const tok *x, int64_t t0)
{
#define CASE(n)                                                            \
    case n:                                                                \
        if (NT == MAD_NT) mad_gemm(MAD_NT, n, node, w, tb, r, x, t0);      \
        else mad_gemm(1, n, node, w, tb, r, x, t0);                        \
        break;
    switch (T) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#if MAD_TB > 6
        CASE(7) CASE(8)
#endif
    }
#undef CASE
}

void x86_tmm_mad_avx512(const tern_node *node, int64_t r0, int64_t r1, void *scratch)
{
    (void)scratch;
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const x86_tmat *m = wt->extra;
    size_t tb = (size_t)m->Kp * 4;
    int64_t n_tok = tern_tensor_nrows(xt);
    const uint8_t *w0 = (const uint8_t *)wt->data;
    if (n_tok == 1 && m->Kp <= MAD_MASK_KMAX) {
        tok x = token(xt, 0);
        int64_t r = r0;
        for (; r + 32 <= r1; r += 32) mad_gemv(2, node, w0 + (size_t)(r / 16) * tb, tb, r, &x);
        for (; r < r1; r += 16) mad_gemv(1, node, w0 + (size_t)(r / 16) * tb, tb, r, &x);
        return;
    }
    for (int64_t r = r0; r < r1;) {
        int NT = r1 - r >= 16 * MAD_NT ? MAD_NT : 1;
        for (int64_t t0 = 0; t0 < n_tok; t0 += MAD_TB) {
            tok x[MAD_TB];
            int T = n_tok - t0 < MAD_TB ? (int)(n_tok - t0) : MAD_TB;
            _Pragma("GCC unroll 16")
            for (int t = 0; t < T; t++) x[t] = token(xt, t0 + t);
            mad_gemm_block(NT, T, node, w0 + (size_t)(r / 16) * tb, tb, r, x, t0);
        }
        r += 16 * NT;
    }
}

/* ================= bit-serial: vpopcntq over bit planes ==================
 * q = -128 b7 + sum_{b<7} 2^b b_b, so q.w = sum_b c_b (popcnt(x_b & w+) -
 * popcnt(x_b & w-)) with c_b = 2^b, c_7 = -128. Per thread, scratch holds
 * every token's 8 planes (Kp/8 bytes each), built with vpmovb2m. */

static void bs_planes(const tok *x, int64_t K, int64_t Kp, uint64_t *pl)
{
    int64_t nw = Kp / 64;
    for (int64_t wi = 0; wi < nw; wi++) {
        int64_t k = 64 * wi;
        __mmask64 valid = k + 64 <= K ? ~(__mmask64)0 : k < K ? ((__mmask64)1 << (K - k)) - 1 : 0;
        __m512i v = _mm512_maskz_loadu_epi8(valid, x->q + k);
        for (int b = 7; b >= 0; b--) {
            pl[b * nw + wi] = _mm512_movepi8_mask(v);
            v = _mm512_add_epi8(v, v);
        }
    }
}

AI int32_t bs_reduce(const __m512i *acc)
{
    __m512i s = _mm512_setzero_si512();
    _Pragma("GCC unroll 16")
    for (int b = 0; b < 7; b++) s = _mm512_add_epi64(s, _mm512_slli_epi64(acc[b], (unsigned)b));
    s = _mm512_sub_epi64(s, _mm512_slli_epi64(acc[7], 7));
    return (int32_t)_mm512_reduce_add_epi64(s);
}

/* One weight row against T tokens' planes. */
AI void bs_row(int T, const uint8_t *wrow, int64_t nch, const uint64_t *const *pl, int64_t nw,
               int32_t *out)
{
    __m512i acc[3][8];
    _Pragma("GCC unroll 16")
    for (int t = 0; t < T; t++)
        _Pragma("GCC unroll 16")
        for (int b = 0; b < 8; b++) acc[t][b] = _mm512_setzero_si512();
    for (int64_t c = 0; c < nch; c++) {
        __m512i P = _mm512_loadu_si512(wrow + 128 * c), N = _mm512_loadu_si512(wrow + 128 * c + 64);
        _Pragma("GCC unroll 16")
        for (int t = 0; t < T; t++)
            _Pragma("GCC unroll 16")
            for (int b = 0; b < 8; b++) {
                __m512i xb = _mm512_loadu_si512(pl[t] + b * nw + 8 * c);
                __m512i d = _mm512_sub_epi64(_mm512_popcnt_epi64(_mm512_and_si512(xb, P)),
                                             _mm512_popcnt_epi64(_mm512_and_si512(xb, N)));
                acc[t][b] = _mm512_add_epi64(acc[t][b], d);
            }
    }
    _Pragma("GCC unroll 16")
    for (int t = 0; t < T; t++) out[t] = bs_reduce(acc[t]);
}

void x86_tmm_bitserial_avx512(const tern_node *node, int64_t r0, int64_t r1, void *scratch)
{
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const x86_tmat *m = wt->extra;
    int64_t n_tok = tern_tensor_nrows(xt), nw = m->Kp / 64, nch = m->Kp / 512;
    size_t row_bytes = (size_t)m->Kp / 4;
    uint64_t *planes = scratch;
    for (int64_t t = 0; t < n_tok; t++) {
        tok x = token(xt, t);
        bs_planes(&x, m->K, m->Kp, planes + t * 8 * nw);
    }
    if (r1 > m->N) r1 = m->N;
    for (int64_t n = r0; n < r1; n++) {
        const uint8_t *wrow = (const uint8_t *)wt->data + (size_t)n * row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += 3) {
            int T = n_tok - t0 < 3 ? (int)(n_tok - t0) : 3;
            const uint64_t *pl[3] = {0};
            int32_t acc[3] = {0};
            _Pragma("GCC unroll 16")
            for (int t = 0; t < T; t++) pl[t] = planes + (t0 + t) * 8 * nw;
            if (T == 3) bs_row(3, wrow, nch, pl, nw, acc);
            else if (T == 2) bs_row(2, wrow, nch, pl, nw, acc);
            else bs_row(1, wrow, nch, pl, nw, acc);
            _Pragma("GCC unroll 16")
            for (int t = 0; t < T; t++) {
                tok x = token(xt, t0 + t);
                float v = (float)acc[t] / x.inv;
                ((float *)x86_row(node->dst, t0 + t))[n] = v * wt->scale;
            }
        }
    }
}

/* ================= LUT: vpermb over per-token tables =====================
 * For each 16-k block and half h, a 64-byte table holds, at 16 i + c, the
 * sum a0 (c/3 - 1) + a1 (c%3 - 1) of the pair (a0, a1) = q[16kb + 8h + 2i,
 * +1]: one vpermb looks up 16 rows x 4 pairs. Sums lie in [-256, 254], so
 * to stay exact a table is split into its low byte (unsigned, summed by
 * vpdpbusd against ones) and its high byte (0 or -1, summed the same way
 * and weighted by 256). Scratch: 4 tables (L0, L1, H0, H1) per block per
 * token, for X86_LUT_TOKENS tokens at a time. */

static void lut_tables(const tok *x, int64_t Kp, uint8_t *tab)
{
    /* lane e of a 32-lane half: pair i = e / 16 (+2 in the upper half), code c = e % 16 */
    int16_t ia0[32], ia1[32], c0[32], c1[32];
    for (int e = 0; e < 32; e++) {
        int c = e % 16;
        ia0[e] = (int16_t)(2 * (e / 16));
        ia1[e] = (int16_t)(2 * (e / 16) + 1);
        c0[e] = (int16_t)(c < 9 ? c / 3 - 1 : 0);
        c1[e] = (int16_t)(c < 9 ? c % 3 - 1 : 0);
    }
    const __m512i I0 = _mm512_loadu_si512(ia0), I1 = _mm512_loadu_si512(ia1);
    const __m512i two = _mm512_set1_epi16(4), C0 = _mm512_loadu_si512(c0), C1 = _mm512_loadu_si512(c1);
    for (int64_t kb = 0; kb < Kp / 16; kb++)
        _Pragma("GCC unroll 16")
        for (int h = 0; h < 2; h++) {
            __m128i a8 = _mm_loadl_epi64((const __m128i *)(x->q + 16 * kb + 8 * h));
            __m512i a16 = _mm512_zextsi128_si512(_mm_cvtepi8_epi16(a8));
            uint8_t *L = tab + kb * 256 + h * 64, *H = L + 128;
            for (int half = 0; half < 2; half++) {
                __m512i i0 = half ? _mm512_add_epi16(I0, two) : I0, i1 = half ? _mm512_add_epi16(I1, two) : I1;
                __m512i A0 = _mm512_permutexvar_epi16(i0, a16), A1 = _mm512_permutexvar_epi16(i1, a16);
                __m512i T = _mm512_add_epi16(_mm512_mullo_epi16(A0, C0), _mm512_mullo_epi16(A1, C1));
                _mm256_storeu_si256((__m256i *)(L + 32 * half), _mm512_cvtepi16_epi8(T));
                _mm256_storeu_si256((__m256i *)(H + 32 * half), _mm512_cvtepi16_epi8(_mm512_srai_epi16(T, 8)));
            }
        }
}

AI void lut_tile(int T, const tern_node *node, const uint8_t *w, int64_t r, const tok *x,
                 const uint8_t *const *tab, int64_t t0)
{
    const x86_tmat *m = node->src[1]->extra;
    const __m512i lo4 = _mm512_set1_epi8(0x0f), ones = _mm512_set1_epi8(1);
    const __m512i bias = _mm512_set1_epi32(0x30201000); /* byte j: 16 (j % 4) */
    __m512i accL[4], accH[4];
    _Pragma("GCC unroll 16")
    for (int t = 0; t < T; t++) accL[t] = accH[t] = _mm512_setzero_si512();
    for (int64_t kb = 0; kb < m->Kp / 16; kb++) {
        __m512i v = _mm512_loadu_si512(w + 64 * kb);
        __m512i i0 = _mm512_ternarylogic_epi32(v, lo4, bias, 0xEA); /* (v & 15) | bias */
        __m512i i1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), lo4, bias, 0xEA);
        _Pragma("GCC unroll 16")
        for (int t = 0; t < T; t++) {
            const uint8_t *tb = tab[t] + kb * 256;
            __m512i l0 = _mm512_permutexvar_epi8(i0, _mm512_loadu_si512(tb));
            __m512i l1 = _mm512_permutexvar_epi8(i1, _mm512_loadu_si512(tb + 64));
            __m512i h0 = _mm512_permutexvar_epi8(i0, _mm512_loadu_si512(tb + 128));
            __m512i h1 = _mm512_permutexvar_epi8(i1, _mm512_loadu_si512(tb + 192));
            accL[t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(accL[t], l0, ones), l1, ones);
            accH[t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(accH[t], ones, h0), ones, h1);
        }
    }
    _Pragma("GCC unroll 16")
    for (int t = 0; t < T; t++)
        store16(node, t0 + t, r, _mm512_add_epi32(accL[t], _mm512_slli_epi32(accH[t], 8)), x[t].inv);
}

void x86_tmm_lut_avx512(const tern_node *node, int64_t r0, int64_t r1, void *scratch)
{
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const x86_tmat *m = wt->extra;
    size_t tb = (size_t)m->Kp * 4, tab_bytes = (size_t)(m->Kp / 16) * 256;
    int64_t n_tok = tern_tensor_nrows(xt);
    for (int64_t t0 = 0; t0 < n_tok; t0 += X86_LUT_TOKENS) {
        int nt = n_tok - t0 < X86_LUT_TOKENS ? (int)(n_tok - t0) : X86_LUT_TOKENS;
        tok x[X86_LUT_TOKENS];
        const uint8_t *tab[X86_LUT_TOKENS];
        for (int t = 0; t < nt; t++) {
            x[t] = token(xt, t0 + t);
            tab[t] = (const uint8_t *)scratch + (size_t)t * tab_bytes;
            lut_tables(&x[t], m->Kp, (uint8_t *)scratch + (size_t)t * tab_bytes);
        }
        for (int64_t r = r0; r < r1; r += 16) {
            const uint8_t *w = (const uint8_t *)wt->data + (size_t)(r / 16) * tb;
            for (int t = 0; t < nt; t += 4) {
                int T = nt - t < 4 ? nt - t : 4;
                if (T == 4) lut_tile(4, node, w, r, x + t, tab + t, t0 + t);
                else if (T == 3) lut_tile(3, node, w, r, x + t, tab + t, t0 + t);
                else if (T == 2) lut_tile(2, node, w, r, x + t, tab + t, t0 + t);
                else lut_tile(1, node, w, r, x + t, tab + t, t0 + t);
            }
        }
    }
}
