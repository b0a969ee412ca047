/* q8mm_avx512.c - the Q8_0 matmul on 16-row tiles with vpdpbusd (AVX-512
 * VNNI), for weights repack.c laid out as x86_q8mat (see x86.h).
 *
 * Per tile, per block of 32 k, per token: eight vpdpbusd (each multiplies
 * the tile's 16 rows x 4 k of u8 weights, w + 128, by 4 broadcast int8
 * activations) into an accumulator that starts at -128 * sum of the
 * block's activation codes, which leaves the exact int32 dot of every row;
 * then one f32 FMA per row: acc = fma((float)dot, d_w * d_x, acc). That is
 * tern_dot_q8_0's sequence lane by lane, so results equal scalar's bit for
 * bit whatever the batch, the thread count or the tile an output is in.
 *
 * The tile's weights are loaded once per block and reused by up to
 * Q8MM_TOKENS tokens, so a verifier batch of 2..8 tokens reads the matrix
 * once, as a single token does: its cost stays near a decode's while the
 * dot products fit under the memory stream. */
#include <immintrin.h>
#include <math.h>

#include "x86.h"

#define AI static inline __attribute__((always_inline))
#define Q8MM_TOKENS 8
#define Q8MM_PREFETCH 4096

/* One token's activations as tern_quantize_act_q8_0 forms them, plus the
 * per-block correction -128 * sum(q). Bit-identical to the reference:
 * the same f32 products, round-half-even, NaN never the max and coded 0. */
static void quantize_token(const float *x, int64_t nb, int8_t *q, float *d, int32_t *corr)
{
    const __m512 lo_c = _mm512_set1_ps(-127.0f), hi_c = _mm512_set1_ps(127.0f);
    for (int64_t b = 0; b < nb; b++, x += 32, q += 32) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        /* max_ps returns its second operand when either is NaN */
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i sum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512 p = _mm512_mul_ps(h ? v1 : v0, vid);
            __mmask16 ord = _mm512_cmp_ps_mask(p, p, _CMP_ORD_Q);
            p = _mm512_roundscale_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            p = _mm512_maskz_mov_ps(ord, _mm512_min_ps(_mm512_max_ps(p, lo_c), hi_c));
            __m512i i32 = _mm512_cvtps_epi32(p);
            sum = _mm512_add_epi32(sum, i32);
            _mm_storeu_si128((__m128i *)(q + 16 * h), _mm512_cvtepi32_epi8(i32));
        }
        corr[b] = -128 * _mm512_reduce_add_epi32(sum);
    }
}

typedef struct q8act {
    const int8_t *q;
    const float *d;
    const int32_t *corr;
} q8act;

static q8act act_at(void *scratch, int64_t K, int64_t t)
{
    const uint8_t *p = x86_q8act_token(scratch, K, t);
    const float *d = (const float *)(p + x86_q8act_codes_bytes(K));
    return (q8act){(const int8_t *)p, d, (const int32_t *)(d + K / 32)};
}

/* T tokens (T a constant after inlining) against one tile: out[t][r]. */
AI void tile_tokens(int T, const uint8_t *tile, int64_t nb, const q8act *a, float *out)
{
    const uint16_t *scales = (const uint16_t *)(tile + nb * 512);
    __m512 f[Q8MM_TOKENS];
    _Pragma("GCC unroll 8")
    for (int t = 0; t < T; t++) f[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = tile + b * 512;
        /* the stream runs on: tiles lie end to end, so Q8MM_PREFETCH bytes
         * ahead is this tile's later blocks, its scales or the next tile */
        _Pragma("GCC unroll 8")
        for (int g = 0; g < 8; g++) _mm_prefetch((const char *)(wb + Q8MM_PREFETCH + 64 * g), _MM_HINT_T0);
        __m512i w[8];
        _Pragma("GCC unroll 8")
        for (int g = 0; g < 8; g++) w[g] = _mm512_load_si512((const void *)(wb + 64 * g));
        __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(scales + 16 * b)));
        _Pragma("GCC unroll 8")
        for (int t = 0; t < T; t++) {
            const int32_t *qb = (const int32_t *)(a[t].q + 32 * b);
            __m512i acc = _mm512_set1_epi32(a[t].corr[b]);
            _Pragma("GCC unroll 8")
            for (int g = 0; g < 8; g++) acc = _mm512_dpbusd_epi32(acc, w[g], _mm512_set1_epi32(qb[g]));
            __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(a[t].d[b]));
            f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s, f[t]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + 16 * t, f[t]);
}

static void tile_group(int T, const uint8_t *tile, int64_t nb, const q8act *a, float *out)
{
    switch (T) {
    case 1: tile_tokens(1, tile, nb, a, out); break;
    case 2: tile_tokens(2, tile, nb, a, out); break;
    case 3: tile_tokens(3, tile, nb, a, out); break;
    case 4: tile_tokens(4, tile, nb, a, out); break;
    case 5: tile_tokens(5, tile, nb, a, out); break;
    case 6: tile_tokens(6, tile, nb, a, out); break;
    case 7: tile_tokens(7, tile, nb, a, out); break;
    default: tile_tokens(8, tile, nb, a, out); break;
    }
}

void x86_q8mm_avx512(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch)
{
    const tern_tensor *xt = node->src[0], *w = node->src[1];
    const x86_q8mat *m = w->extra;
    int64_t K = m->K, nb = K / 32, n_tok = tern_tensor_nrows(xt);
    for (int64_t t = 0; t < n_tok; t++) {
        q8act a = act_at(scratch, K, t);
        quantize_token((const float *)x86_row(xt, t), nb, (int8_t *)a.q, (float *)a.d, (int32_t *)a.corr);
    }
    for (int64_t i = tile0; i < tile1; i++) {
        const uint8_t *tile = (const uint8_t *)w->data + (size_t)i * m->tile_bytes;
        int rows = m->N - 16 * i < 16 ? (int)(m->N - 16 * i) : 16;
        for (int64_t t0 = 0; t0 < n_tok; t0 += Q8MM_TOKENS) {
            int T = n_tok - t0 < Q8MM_TOKENS ? (int)(n_tok - t0) : Q8MM_TOKENS;
            q8act a[Q8MM_TOKENS];
            float out[16 * Q8MM_TOKENS];
            for (int t = 0; t < T; t++) a[t] = act_at(scratch, K, t0 + t);
            tile_group(T, tile, nb, a, out);
            for (int t = 0; t < T; t++) {
                float *y = (float *)x86_row(node->dst, t0 + t) + 16 * i;
                if (rows == 16)
                    _mm512_storeu_ps(y, _mm512_loadu_ps(out + 16 * t));
                else
                    memcpy(y, out + 16 * t, (size_t)rows * sizeof(float));
            }
        }
    }
}
