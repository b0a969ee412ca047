/* tmm_neon.c - the ternary LUT kernel with NEON tbl (baseline AArch64:
 * the family for CPUs without sdot).
 *
 * Layout and tables in arm.h: a weight pair is a 4-bit code c, and per pair
 * of activations two 16-entry int8 tables hold w0 al0 + w1 al1 (TL) and
 * w0 ah0 + w1 ah1 (TH), the low and high nibbles of the activations. One
 * tbl looks up 16 rows' pair at once, exactly. Per 8 k (4 pairs) and row
 * group of 16 rows (two groups a pass, sharing the step's 8 tables): the
 * four TL lookups are summed in int8 (|sum| <= 120),
 * the four TH lookups too (<= 64), then each is widened into int16
 * accumulators (saddw); every 2048 k those are added to int32 totals as
 * lo + 16 hi. The total is sum w q itself: no correction term. */
#include <arm_neon.h>

#include "arm.h"

#define AI static inline __attribute__((always_inline))
#define CHUNK 256 /* 8-k steps per int16 flush: |lo| <= 256 * 120 < 2^15 */

/* Row groups g0, g0 + 1 (32 rows) of a 64-row tile against one token's
 * tables; totals[16 g + r] += sum w q of row 16 g + r. Two groups a pass:
 * 8 int16 accumulators and the 8 tables of a step stay in registers (four
 * groups would spill). */
static void lut_half(const uint8_t *w, int64_t nk8, const int8_t *tab, int g0, int32_t *totals)
{
    const uint8x16_t m0f = vdupq_n_u8(0x0f);
    for (int64_t c0 = 0; c0 < nk8; c0 += CHUNK) {
        int64_t c1 = nk8 - c0 < CHUNK ? nk8 : c0 + CHUNK;
        int16x8_t lo[2][2], hi[2][2];
        for (int g = 0; g < 2; g++) lo[g][0] = lo[g][1] = hi[g][0] = hi[g][1] = vdupq_n_s16(0);
        for (int64_t s = c0; s < c1; s++) {
            const int8_t *tp = tab + s * 4 * ARM_LUT_PAIR_BYTES; /* pairs 4s .. 4s + 3 */
            int8x16_t tla = vld1q_s8(tp), tha = vld1q_s8(tp + 16), tlb = vld1q_s8(tp + 32), thb = vld1q_s8(tp + 48);
            int8x16_t tlc = vld1q_s8(tp + 64), thc = vld1q_s8(tp + 80), tld = vld1q_s8(tp + 96), thd = vld1q_s8(tp + 112);
            _Pragma("GCC unroll 2") for (int g = 0; g < 2; g++) {
                uint8x16_t v0 = vld1q_u8(w + 128 * s + 16 * (g0 + g)), v1 = vld1q_u8(w + 128 * s + 64 + 16 * (g0 + g));
                uint8x16_t ia = vandq_u8(v0, m0f), ib = vshrq_n_u8(v0, 4);
                uint8x16_t ic = vandq_u8(v1, m0f), id = vshrq_n_u8(v1, 4);
                int8x16_t l = vaddq_s8(vaddq_s8(vqtbl1q_s8(tla, ia), vqtbl1q_s8(tlb, ib)),
                                       vaddq_s8(vqtbl1q_s8(tlc, ic), vqtbl1q_s8(tld, id)));
                int8x16_t h = vaddq_s8(vaddq_s8(vqtbl1q_s8(tha, ia), vqtbl1q_s8(thb, ib)),
                                       vaddq_s8(vqtbl1q_s8(thc, ic), vqtbl1q_s8(thd, id)));
                lo[g][0] = vaddw_s8(lo[g][0], vget_low_s8(l));
                lo[g][1] = vaddw_high_s8(lo[g][1], l);
                hi[g][0] = vaddw_s8(hi[g][0], vget_low_s8(h));
                hi[g][1] = vaddw_high_s8(hi[g][1], h);
            }
        }
        for (int g = 0; g < 2; g++)
            for (int half = 0; half < 2; half++) {
                int32_t *t = totals + 16 * (g0 + g) + 8 * half;
                int16x8_t l = lo[g][half], h = hi[g][half];
                int32x4_t t0 = vmlal_n_s16(vaddw_s16(vld1q_s32(t), vget_low_s16(l)), vget_low_s16(h), 16);
                int32x4_t t1 = vmlal_high_n_s16(vaddw_high_s16(vld1q_s32(t + 4), l), h, 16);
                vst1q_s32(t, t0);
                vst1q_s32(t + 4, t1);
            }
    }
}

/* One 64-row tile against one token's tables: totals[64] = sum w q. */
static void lut_tile(const uint8_t *w, int64_t nk8, const int8_t *tab, int32_t *totals)
{
    memset(totals, 0, ARM_LUT_ROWS * sizeof *totals);
    lut_half(w, nk8, tab, 0, totals);
    lut_half(w, nk8, tab, 2, totals);
}

void arm_tmm_lut_neon(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch)
{
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const arm_tmat *m = wt->extra;
    int64_t n_tok = tern_tensor_nrows(xt);
    int32_t totals[ARM_LUT_ROWS];
    for (int64_t t0 = 0; t0 < n_tok; t0 += ARM_LUT_TOKENS) {
        arm_tok x[ARM_LUT_TOKENS];
        int T = n_tok - t0 < ARM_LUT_TOKENS ? (int)(n_tok - t0) : ARM_LUT_TOKENS;
        for (int t = 0; t < T; t++) {
            x[t] = arm_token(xt, t0 + t);
            arm_lut_build(&x[t], m->K, m->Kp, arm_lut_tables(scratch, m->Kp, t));
        }
        for (int64_t tile = tile0; tile < tile1; tile++) {
            const uint8_t *w = (const uint8_t *)wt->data + (size_t)tile * m->tile_bytes;
            for (int t = 0; t < T; t++) {
                lut_tile(w, m->Kp / 8, arm_lut_tables(scratch, m->Kp, t), totals);
                for (int r = 0; r < ARM_LUT_ROWS && tile * ARM_LUT_ROWS + r < m->N; r++)
                    arm_store_ternary(node, t0 + t, tile * ARM_LUT_ROWS + r, (uint32_t)totals[r], &x[t]);
            }
        }
    }
}
