/* tmm_sve2.c - the ternary LUT kernel with SVE2, vector-length agnostic
 * (built with +sve2; called only on CPUs with SVE2).
 *
 * The same 64-row tiles and tables as the NEON LUT kernel (arm.h,
 * tmm_neon.c), read S row groups of 16 rows a vector (S = 1, 2 or 4 for
 * 128, 256 or >= 512-bit vectors, from svcntb() at run time), up to two
 * vectors an iteration sharing the step's table loads. Each table is
 * replicated into every 128-bit segment (ld1rqb), so the full-width tbl with
 * indices 0..15 finds the right entry in every segment. The int8 sums of
 * four lookups are widened with SVE2's saddwb/saddwt (even and odd byte
 * lanes into int16), then added to int32 totals every 2048 k. */
#include <arm_sve.h>

#include "arm.h"

#define CHUNK 256 /* as in tmm_neon.c */

static int groups_per_vector(void)
{
    uint64_t vb = svcntb();
    return vb >= 64 ? 4 : vb >= 32 ? 2 : 1;
}

/* One vector position vi: its 2 x 16 S pair codes of the step, 8 lookups
 * in the step's tables, int8 sums, widened into even/odd int16 lanes. */
#define LUT_STEP(vi, LB, LT, HB, HT)                                                              \
    if (NVI > vi) {                                                                                \
        svuint8_t v0 = svld1_u8(pb, ws + 16 * S * vi), v1 = svld1_u8(pb, ws + 64 + 16 * S * vi);   \
        svuint8_t ia = svand_u8_x(pb, v0, m0f), ib = svlsr_n_u8_x(pb, v0, 4);                      \
        svuint8_t ic = svand_u8_x(pb, v1, m0f), id = svlsr_n_u8_x(pb, v1, 4);                      \
        svint8_t l = svadd_s8_x(pb, svadd_s8_x(pb, svtbl_s8(tla, ia), svtbl_s8(tlb, ib)),         \
                                svadd_s8_x(pb, svtbl_s8(tlc, ic), svtbl_s8(tld, id)));             \
        svint8_t h = svadd_s8_x(pb, svadd_s8_x(pb, svtbl_s8(tha, ia), svtbl_s8(thb, ib)),         \
                                svadd_s8_x(pb, svtbl_s8(thc, ic), svtbl_s8(thd, id)));             \
        LB = svaddwb_s16(LB, l), LT = svaddwt_s16(LT, l);                                          \
        HB = svaddwb_s16(HB, h), HT = svaddwt_s16(HT, h);                                          \
    }

/* int16 lane j of the bottom/top sums is byte lane 2 j / 2 j + 1, i.e. row
 * 16 S vi + 2 j (+ 1); added to totals as lo + 16 hi. */
#define LUT_FLUSH(vi, LB, LT, HB, HT)                                                   \
    if (NVI > vi) {                                                                      \
        int16_t lb[128], lt[128], hb[128], ht[128]; /* up to 2048-bit vectors */         \
        svst1_s16(ph, lb, LB), svst1_s16(ph, lt, LT), svst1_s16(ph, hb, HB), svst1_s16(ph, ht, HT); \
        int32_t *t_ = totals + 16 * S * vi;                                              \
        for (int j = 0; j < 8 * S; j++) {                                                \
            t_[2 * j] += lb[j] + 16 * hb[j];                                             \
            t_[2 * j + 1] += lt[j] + 16 * ht[j];                                         \
        }                                                                                \
    }

/* Vector positions 0 .. NVI - 1 (row groups S vi ..) of w against one
 * token's tables, sharing each step's 8 table loads; totals[16 S vi + j]
 * += sum w q. NVI <= 2 keeps 8 accumulators and 8 tables in registers. */
static inline __attribute__((always_inline)) void lut_block(int NVI, const uint8_t *w, int64_t nk8, int S,
                                                             const int8_t *tab, int32_t *totals)
{
    const svbool_t pb = svwhilelt_b8_s32(0, 16 * S), ph = svwhilelt_b16_s32(0, 8 * S), all = svptrue_b8();
    svuint8_t m0f = svdup_n_u8(0x0f);
    __asm__("" : "+w"(m0f)); /* a register operand: the constructive AND, no movprfx */
    for (int64_t c0 = 0; c0 < nk8; c0 += CHUNK) {
        int64_t c1 = nk8 - c0 < CHUNK ? nk8 : c0 + CHUNK;
        svint16_t z = svdup_n_s16(0);
        svint16_t lb0 = z, lt0 = z, hb0 = z, ht0 = z, lb1 = z, lt1 = z, hb1 = z, ht1 = z;
        for (int64_t s = c0; s < c1; s++) {
            const int8_t *tp = tab + s * 4 * ARM_LUT_PAIR_BYTES; /* pairs 4s .. 4s + 3 */
            const uint8_t *ws = w + 128 * s;
            svint8_t tla = svld1rq_s8(all, tp), tha = svld1rq_s8(all, tp + 16);
            svint8_t tlb = svld1rq_s8(all, tp + 32), thb = svld1rq_s8(all, tp + 48);
            svint8_t tlc = svld1rq_s8(all, tp + 64), thc = svld1rq_s8(all, tp + 80);
            svint8_t tld = svld1rq_s8(all, tp + 96), thd = svld1rq_s8(all, tp + 112);
            LUT_STEP(0, lb0, lt0, hb0, ht0)
            LUT_STEP(1, lb1, lt1, hb1, ht1)
        }
        LUT_FLUSH(0, lb0, lt0, hb0, ht0)
        LUT_FLUSH(1, lb1, lt1, hb1, ht1)
    }
}

/* One 64-row tile: 4 / S vector positions, two at a time. */
static void lut_tile(const uint8_t *w, int64_t nk8, int S, const int8_t *tab, int32_t *totals)
{
    memset(totals, 0, ARM_LUT_ROWS * sizeof *totals);
    if (S == 4) {
        lut_block(1, w, nk8, S, tab, totals);
        return;
    }
    for (int v = 0; v < 4 / S; v += 2) lut_block(2, w + 16 * S * v, nk8, S, tab, totals + 16 * S * v);
}

void arm_tmm_lut_sve2(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch)
{
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const arm_tmat *m = wt->extra;
    int64_t n_tok = tern_tensor_nrows(xt);
    int S = groups_per_vector();
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
                lut_tile(w, m->Kp / 8, S, arm_lut_tables(scratch, m->Kp, t), totals);
                for (int r = 0; r < ARM_LUT_ROWS && tile * ARM_LUT_ROWS + r < m->N; r++)
                    arm_store_ternary(node, t0 + t, tile * ARM_LUT_ROWS + r, (uint32_t)totals[r], &x[t]);
            }
        }
    }
}
