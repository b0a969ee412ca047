/* tmm_avx2.c - the ternary MAD kernel for AVX2: the same 16-row tile
 * layout as AVX-512 (x86.h), each 64-byte block read as two 8-row ymm
 * halves. u8 (w + 1) in {0,1,2} times s8 activations with vpmaddubsw
 * (pairs of products, at most 2 * 2 * 128 = 512, so no int16 saturation),
 * the four 2-bit fields summed in int16 (<= 2048), widened with vpmaddwd,
 * and the activation sum from the Q8_TOK header subtracted: the exact
 * int32 dot, then ((float)acc / inv) * scale as scalar. */
#include <immintrin.h>

#include "x86.h"

#define AI static inline __attribute__((always_inline))
#define TB 4 /* tokens per GEMM block */

typedef struct tok {
    const int8_t *q;
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

static const int32_t tail_idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};

/* Rows r..r+7 of token t. */
static void store8(const tern_node *node, int64_t t, int64_t r, __m256i acc, const tok *x)
{
    const x86_tmat *m = node->src[1]->extra;
    if (r >= m->N) return;
    float *y = (float *)x86_row(node->dst, t);
    acc = _mm256_sub_epi32(acc, _mm256_set1_epi32(x->sum));
    __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(x->inv));
    v = _mm256_mul_ps(v, _mm256_set1_ps(node->src[1]->scale));
    int64_t n = m->N - r;
    if (n >= 8) {
        _mm256_storeu_ps(y + r, v);
        return;
    }
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_loadu_si256((const __m256i *)tail_idx));
    _mm256_maskstore_ps(y + r, mask, v);
}

/* One 16-row tile against T tokens. */
AI void mad_tile(int T, const tern_node *node, const uint8_t *w, int64_t r, const tok *x, int64_t t0)
{
    const x86_tmat *m = node->src[1]->extra;
    const __m256i m3 = _mm256_set1_epi8(0x03), ones = _mm256_set1_epi16(1);
    __m256i acc[2][TB];
    _Pragma("GCC unroll 16")
    for (int h = 0; h < 2; h++)
        _Pragma("GCC unroll 16")
        for (int t = 0; t < T; t++) acc[h][t] = _mm256_setzero_si256();
    for (int64_t kb = 0; kb < m->Kp / 16; kb++)
        _Pragma("GCC unroll 16")
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(w + 64 * kb + 32 * h));
            __m256i u0 = _mm256_and_si256(v, m3), u1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
            __m256i u2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3), u3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
            _Pragma("GCC unroll 16")
            for (int t = 0; t < T; t++) {
                const int8_t *q = x[t].q + 16 * kb;
                __m256i s = _mm256_maddubs_epi16(u0, _mm256_set1_epi32(load32(q)));
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u1, _mm256_set1_epi32(load32(q + 4))));
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u2, _mm256_set1_epi32(load32(q + 8))));
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u3, _mm256_set1_epi32(load32(q + 12))));
                acc[h][t] = _mm256_add_epi32(acc[h][t], _mm256_madd_epi16(s, ones));
            }
        }
    _Pragma("GCC unroll 16")
    for (int t = 0; t < T; t++)
        _Pragma("GCC unroll 16")
        for (int h = 0; h < 2; h++) store8(node, t0 + t, r + 8 * h, acc[h][t], &x[t]);
}

void x86_tmm_mad_avx2(const tern_node *node, int64_t r0, int64_t r1, void *scratch)
{
    (void)scratch;
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const x86_tmat *m = wt->extra;
    size_t tb = (size_t)m->Kp * 4;
    int64_t n_tok = tern_tensor_nrows(xt);
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *w = (const uint8_t *)wt->data + (size_t)(r / 16) * tb;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TB) {
            tok x[TB];
            int T = n_tok - t0 < TB ? (int)(n_tok - t0) : TB;
            _Pragma("GCC unroll 16")
            for (int t = 0; t < T; t++) x[t] = token(xt, t0 + t);
            if (T == 4) mad_tile(4, node, w, r, x, t0);
            else if (T == 3) mad_tile(3, node, w, r, x, t0);
            else if (T == 2) mad_tile(2, node, w, r, x, t0);
            else mad_tile(1, node, w, r, x, t0);
        }
    }
}
