/* fmm_avx512.c - the float matmul (F32, F16, BF16 weights as stored) with
 * 16-lane FMA chains, for batches as well as single tokens.
 *
 * One output = one 16-lane f32 FMA chain over k (16 weights a step, the
 * K % 16 tail as one zero-padded step), then a fixed horizontal sum. A tile
 * runs R rows x T tokens of such chains side by side and never mixes them,
 * so an output's bits depend on neither the batch size, the tile shape nor
 * the thread count (the speculative verifier relies on it).
 *
 * Why tiles: a weight step is converted once (vcvtph2ps for F16) and feeds
 * T tokens, so a verifier batch of up to 4 tokens streams the matrix once,
 * as a decode does, and its cost stays close to a decode's while the FMAs
 * fit under the memory stream. Rows are prefetched one tile ahead.
 *
 * A decode's tile shape depends on the CPU (x86_ctx.fmm_decode_rows, from
 * a table in backend.c): one row at a time makes the matrix one
 * sequential stream, which Zen 4's prefetchers follow at the memory's
 * bandwidth: on 2 threads its F16 head (2B4T, 657 MB) took 17-19 ms a token
 * against 21 with eight rows side by side (eight streams 5 KB apart), and
 * a probe read the same bytes at 35-37 GB/s against 31-32. The 16-core
 * Xeon of the GPU machine is the other way round: one stream a core leaves
 * it short of requests in flight; with one row its head took 49-63% of a
 * decode step against 43-52% with eight, at 2, 8 and 16 threads (5 and 3
 * alternating runs each). One row is one FMA chain of 4-cycle latency, 16
 * weights (32 bytes) a step: 8 bytes a cycle, twice what a core's share of
 * the bandwidth needs. */
#include <immintrin.h>

#include "x86.h"

#define AI static inline __attribute__((always_inline))
#define FMM_TOKENS 4

enum { FW_F32, FW_F16, FW_BF16 };

AI __m512 wload(int wt, const uint8_t *row, int64_t k)
{
    switch (wt) {
    case FW_F32: return _mm512_loadu_ps((const float *)row + k);
    case FW_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * k)));
    default:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + 2 * k))), 16));
    }
}

AI __m512 wload_tail(int wt, const uint8_t *row, int64_t k, __mmask16 m)
{
    switch (wt) {
    case FW_F32: return _mm512_maskz_loadu_ps(m, (const float *)row + k);
    case FW_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * k));
    default:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * k)), 16));
    }
}

/* R rows x T tokens; pf: bytes from a row to the row the next tile reads
 * at the same k (0: no prefetch). */
AI void tile(int wt, int R, int T, const uint8_t *const *wr, const float *const *x, int64_t K, float *out,
             size_t pf)
{
    int es = wt == FW_F32 ? 4 : 2;
    int64_t pf_step = 64 / es; /* weights per cache line */
    __m512 acc[8][FMM_TOKENS];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        if (pf && !(k & (pf_step - 1)))
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(wr[r] + (size_t)k * es + pf), _MM_HINT_T0);
        __m512 xv[FMM_TOKENS];
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) xv[t] = _mm512_loadu_ps(x[t] + k);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m512 w = wload(wt, wr[r], k);
            _Pragma("GCC unroll 8")
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 xv[FMM_TOKENS];
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) xv[t] = _mm512_maskz_loadu_ps(m, x[t] + k);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m512 w = wload_tail(wt, wr[r], k, m);
            _Pragma("GCC unroll 8")
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(w, xv[t], acc[r][t]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) out[r * T + t] = _mm512_reduce_add_ps(acc[r][t]);
}

/* The tile shapes: 8 x 1 or 1 x 1 for decode (above), 4 x 2..4 for
 * batches (groups of 4 tokens: 2 x 8 tiles measured 30-40% slower per
 * token, their activation loads outnumbering the FMAs' slots), 1 x T at the
 * row edge. */
AI void tile_any(int wt, int R, int T, const uint8_t *const *wr, const float *const *x, int64_t K, float *out,
                 size_t pf)
{
#define FMM_T(RR, TT) if (R == RR && T == TT) return tile(wt, RR, TT, wr, x, K, out, pf)
    FMM_T(8, 1); FMM_T(4, 2); FMM_T(4, 3); FMM_T(4, 4);
    FMM_T(1, 1); FMM_T(1, 2); FMM_T(1, 3); FMM_T(1, 4);
#undef FMM_T
}

static int rows_for(int T, int decode_rows) { return T == 1 ? decode_rows : 4; }

/* Prefetch distance of a tile: a tile of several rows fetches the rows of
 * the next chunk (first token group only; later groups find them in
 * cache); a single stream fetches four lines ahead in its own row (the
 * probe on Zen 4: 256 bytes ahead at least as fast as none, 1-8 KB
 * slower). */
static size_t prefetch_for(int R, int T, int64_t t0, size_t row_bytes)
{
    if (R == 1 && T == 1) return 256;
    return t0 == 0 ? 8 * row_bytes : 0;
}

/* Chunks of 8 rows; each token group of up to 8 runs over the chunk in
 * tiles of rows_for(T) rows, so a prefill's chunk is read from memory once
 * and from cache by the later groups. The first group prefetches the same
 * rows of the next chunk. */
AI void rows(int wt, const tern_node *node, int64_t lo, int64_t hi, int decode_rows)
{
    const tern_tensor *xt = node->src[0], *w = node->src[1];
    int64_t K = xt->ne[0], n_tok = tern_tensor_nrows(xt);
    for (int64_t n0 = lo; n0 < hi; n0 += 8) {
        int nc = hi - n0 < 8 ? (int)(hi - n0) : 8;
        const uint8_t *wr[8];
        for (int r = 0; r < nc; r++) wr[r] = (const uint8_t *)w->data + (size_t)(n0 + r) * w->nb[1];
        for (int64_t t0 = 0; t0 < n_tok; t0 += FMM_TOKENS) {
            int T = n_tok - t0 < FMM_TOKENS ? (int)(n_tok - t0) : FMM_TOKENS, R = rows_for(T, decode_rows);
            const float *x[FMM_TOKENS];
            float out[8 * FMM_TOKENS];
            for (int t = 0; t < T; t++) x[t] = (const float *)x86_row(xt, t0 + t);
            for (int r0 = 0; r0 < nc; r0 += R) {
                if (nc - r0 >= R)
                    tile_any(wt, R, T, wr + r0, x, K, out + r0 * T, prefetch_for(R, T, t0, w->nb[1]));
                else /* the row edge: one row at a time, the same chains */
                    for (int r = r0; r < nc; r++) tile_any(wt, 1, T, wr + r, x, K, out + r * T, 0);
            }
            for (int t = 0; t < T; t++) {
                float *y = (float *)x86_row(node->dst, t0 + t);
                for (int r = 0; r < nc; r++) y[n0 + r] = out[r * T + t];
            }
        }
    }
}

void x86_fmm_avx512(const tern_node *node, int64_t lo, int64_t hi, int decode_rows)
{
    switch (node->src[1]->type) {
    case TERN_TYPE_F32: rows(FW_F32, node, lo, hi, decode_rows); break;
    case TERN_TYPE_F16: rows(FW_F16, node, lo, hi, decode_rows); break;
    default: rows(FW_BF16, node, lo, hi, decode_rows); break;
    }
}
