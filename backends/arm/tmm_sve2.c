/* tmm_sve2.c - the ternary LUT kernel with SVE2, vector-length agnostic
 * (built with +sve2; called only on CPUs with SVE2).
 *
 * The same 64-row tiles and tables as the NEON LUT kernel (arm.h,
 * tmm_neon.c), read S row groups of 16 rows at a time (S = 1, 2 or 4 for
 * 128, 256 or >= 512-bit vectors, from svcntb() at run time). Each table is
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

/* Row groups S v .. S v + S - 1 of a tile against one token's tables;
 * totals[j] receives sum w q for row 16 S v + j (j < 16 S). */
static void lut_pass(const uint8_t *w, int64_t nk8, int S, const int8_t *tab, int32_t *totals)
{
    const svbool_t pb = svwhilelt_b8_s32(0, 16 * S), ph = svwhilelt_b16_s32(0, 8 * S), all = svptrue_b8();
    int16_t lb[128], lt[128], hb[128], ht[128]; /* up to 2048-bit vectors of int16 */
    memset(totals, 0, 16 * (size_t)S * sizeof *totals);
    for (int64_t c0 = 0; c0 < nk8; c0 += CHUNK) {
        int64_t c1 = nk8 - c0 < CHUNK ? nk8 : c0 + CHUNK;
        svint16_t lob = svdup_n_s16(0), lot = lob, hib = lob, hit = lob;
        for (int64_t s = c0; s < c1; s++) {
            const int8_t *tp = tab + s * 4 * ARM_LUT_PAIR_BYTES; /* pairs 4s .. 4s + 3 */
            svuint8_t v0 = svld1_u8(pb, w + 128 * s), v1 = svld1_u8(pb, w + 128 * s + 64);
            svuint8_t ia = svand_n_u8_x(pb, v0, 0x0f), ib = svlsr_n_u8_x(pb, v0, 4);
            svuint8_t ic = svand_n_u8_x(pb, v1, 0x0f), id = svlsr_n_u8_x(pb, v1, 4);
            svint8_t l = svadd_s8_x(pb, svadd_s8_x(pb, svtbl_s8(svld1rq_s8(all, tp), ia),
                                                   svtbl_s8(svld1rq_s8(all, tp + 32), ib)),
                                    svadd_s8_x(pb, svtbl_s8(svld1rq_s8(all, tp + 64), ic),
                                               svtbl_s8(svld1rq_s8(all, tp + 96), id)));
            svint8_t h = svadd_s8_x(pb, svadd_s8_x(pb, svtbl_s8(svld1rq_s8(all, tp + 16), ia),
                                                   svtbl_s8(svld1rq_s8(all, tp + 48), ib)),
                                    svadd_s8_x(pb, svtbl_s8(svld1rq_s8(all, tp + 80), ic),
                                               svtbl_s8(svld1rq_s8(all, tp + 112), id)));
            lob = svaddwb_s16(lob, l);
            lot = svaddwt_s16(lot, l);
            hib = svaddwb_s16(hib, h);
            hit = svaddwt_s16(hit, h);
        }
        svst1_s16(ph, lb, lob), svst1_s16(ph, lt, lot), svst1_s16(ph, hb, hib), svst1_s16(ph, ht, hit);
        for (int j = 0; j < 8 * S; j++) { /* int16 lane j: byte lanes 2j (b) and 2j + 1 (t) */
            totals[2 * j] += lb[j] + 16 * hb[j];
            totals[2 * j + 1] += lt[j] + 16 * ht[j];
        }
    }
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
                for (int v = 0; v < 4 / S; v++)
                    lut_pass(w + 16 * S * v, m->Kp / 8, S, arm_lut_tables(scratch, m->Kp, t), totals + 16 * S * v);
                for (int r = 0; r < ARM_LUT_ROWS && tile * ARM_LUT_ROWS + r < m->N; r++)
                    arm_store_ternary(node, t0 + t, tile * ARM_LUT_ROWS + r, (uint32_t)totals[r], &x[t]);
            }
        }
    }
}
