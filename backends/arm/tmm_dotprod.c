/* tmm_dotprod.c - the ternary MAD kernel with NEON sdot (built with
 * +dotprod; called only on CPUs with asimddp).
 *
 * Layout (arm.h): 16-row tiles, 64 bytes per 16 k, 16 bytes per row group
 * of 4 rows, 2-bit fields u = w + 1. A field is brought into place with one
 * mask (fields 0..2, kept at their weight 4^p) or one shift (field 3), and
 * each goes to its own accumulator by sdot against the activation's 32-bit
 * element p (4 rows x 4 k per instruction):
 *     a1 += u0 . x,  a4 += 4 u1 . x,  a16 += 16 u2 . x,  a1' += u3 . x
 * so 16 weights cost 1/4 load + 1 mask + 1 sdot. Every 4096 k the scaled
 * sums are divided back exactly (they are multiples of 4 and 16) and added
 * in wrapping uint32 to the running total, from which sum(q) of the token's
 * header is subtracted: sum w q = sum u q - sum q, exact in int32 for every
 * K the op allows. */
#include <arm_neon.h>

#include "arm.h"

#define AI static inline __attribute__((always_inline))
#define CHUNK_KB 256 /* 16-k blocks per flush: |a16| <= 256 * 4 * 32 * 128 = 2^22 */
#define TB 4         /* tokens per GEMM block */

/* Row groups [g0, g0 + G) of one tile against T tokens (G * T <= 4). */
AI void mad_tile(int G, int T, const tern_node *node, const uint8_t *w, int64_t tile, int g0,
                 const arm_tok *x, int64_t t0)
{
    const arm_tmat *m = node->src[1]->extra;
    const int64_t nkb = m->Kp / 16;
    const uint8x16_t m03 = vdupq_n_u8(0x03), m0c = vdupq_n_u8(0x0c), m30 = vdupq_n_u8(0x30);
    uint32x4_t total[4][TB];
    _Pragma("GCC unroll 4") for (int g = 0; g < G; g++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) total[g][t] = vdupq_n_u32(0);
    for (int64_t c0 = 0; c0 < nkb; c0 += CHUNK_KB) {
        int64_t c1 = nkb - c0 < CHUNK_KB ? nkb : c0 + CHUNK_KB;
        int32x4_t a[4][TB][4];
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++)
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)
                _Pragma("GCC unroll 4") for (int f = 0; f < 4; f++) a[g][t][f] = vdupq_n_s32(0);
        for (int64_t kb = c0; kb < c1; kb++) {
            int8x16_t xv[TB];
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) xv[t] = vld1q_s8(x[t].q + 16 * kb);
            _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
                uint8x16_t v = vld1q_u8(w + 64 * kb + 16 * (g0 + g));
                int8x16_t f0 = vreinterpretq_s8_u8(vandq_u8(v, m03));
                int8x16_t f1 = vreinterpretq_s8_u8(vandq_u8(v, m0c));
                int8x16_t f2 = vreinterpretq_s8_u8(vandq_u8(v, m30));
                int8x16_t f3 = vreinterpretq_s8_u8(vshrq_n_u8(v, 6));
                _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                    a[g][t][0] = vdotq_laneq_s32(a[g][t][0], f0, xv[t], 0);
                    a[g][t][1] = vdotq_laneq_s32(a[g][t][1], f1, xv[t], 1);
                    a[g][t][2] = vdotq_laneq_s32(a[g][t][2], f2, xv[t], 2);
                    a[g][t][3] = vdotq_laneq_s32(a[g][t][3], f3, xv[t], 3);
                }
            }
        }
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++)
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                int32x4_t s = vaddq_s32(vaddq_s32(a[g][t][0], a[g][t][3]),
                                        vaddq_s32(vshrq_n_s32(a[g][t][1], 2), vshrq_n_s32(a[g][t][2], 4)));
                total[g][t] = vaddq_u32(total[g][t], vreinterpretq_u32_s32(s));
            }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {
            uint32_t acc[4];
            vst1q_u32(acc, vsubq_u32(total[g][t], vdupq_n_u32((uint32_t)x[t].sum)));
            for (int r = 0; r < 4; r++) {
                int64_t row = tile * ARM_MAD_ROWS + 4 * (g0 + g) + r;
                if (row < m->N) arm_store_ternary(node, t0 + t, row, acc[r], &x[t]);
            }
        }
}

void arm_tmm_mad_dotprod(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch)
{
    (void)scratch;
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const arm_tmat *m = wt->extra;
    int64_t n_tok = tern_tensor_nrows(xt);
    for (int64_t tile = tile0; tile < tile1; tile++) {
        const uint8_t *w = (const uint8_t *)wt->data + (size_t)tile * m->tile_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TB) {
            arm_tok x[TB];
            int T = n_tok - t0 < TB ? (int)(n_tok - t0) : TB;
            for (int t = 0; t < T; t++) x[t] = arm_token(xt, t0 + t);
            /* GEMV: all 4 row groups (16 independent accumulators); GEMM:
             * fewer groups, more tokens per unpacked weight */
            if (T == 1) {
                mad_tile(4, 1, node, w, tile, 0, x, t0);
            } else if (T == 2) {
                mad_tile(2, 2, node, w, tile, 0, x, t0);
                mad_tile(2, 2, node, w, tile, 2, x, t0);
            } else {
                for (int g = 0; g < 4; g++) {
                    if (T == 3) mad_tile(1, 3, node, w, tile, g, x, t0);
                    else mad_tile(1, 4, node, w, tile, g, x, t0);
                }
            }
        }
    }
}
