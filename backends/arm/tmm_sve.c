/* tmm_sve.c - the ternary MAD kernel with SVE sdot, vector-length agnostic
 * (built with +sve; called only on CPUs with SVE).
 *
 * The same 16-row tiles as the NEON kernel (arm.h), read S row groups at a
 * time: S = 1, 2 or 4 for a vector of 128, 256 or >= 512 bits (svcntb() at
 * run time; lengths that are not a power of two use the largest S that
 * fits, lengths above 512 bits leave the upper lanes idle). The 16 bytes of
 * activations are replicated into every 128-bit segment (ld1rqb), so the
 * indexed sdot gives segment s the rows of row group s. Per field p, as in
 * tmm_dotprod.c: one mask or shift, one sdot into the accumulator of weight
 * 4^p; at VL 512 a 64-byte load and 4 sdots cover 256 weights. The
 * predicated tail is not needed: every tile holds whole 64-byte blocks. */
#include <arm_sve.h>

#include "arm.h"

#define AI static inline __attribute__((always_inline))
#define CHUNK_KB 256 /* as in tmm_dotprod.c */

/* Row groups in a vector: 1, 2 or 4. */
static int groups_per_vector(void)
{
    uint64_t vb = svcntb();
    return vb >= 64 ? 4 : vb >= 32 ? 2 : 1;
}

/* One vector position (row groups S v .. S v + S - 1) of a tile against T
 * tokens (T = 1 or 2); out[t][j] receives sum u q for row 4 S v + j. */
AI void mad_pass(int T, const uint8_t *w, int64_t nkb, int S, const arm_tok *x, uint32_t *out)
{
    const svbool_t pb = svwhilelt_b8_s32(0, 16 * S), pw = svwhilelt_b32_s32(0, 4 * S), all = svptrue_b8();
    svuint32_t tot0 = svdup_n_u32(0), tot1 = svdup_n_u32(0);
    for (int64_t c0 = 0; c0 < nkb; c0 += CHUNK_KB) {
        int64_t c1 = nkb - c0 < CHUNK_KB ? nkb : c0 + CHUNK_KB;
        svint32_t a0 = svdup_n_s32(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int64_t kb = c0; kb < c1; kb++) {
            svuint8_t v = svld1_u8(pb, w + 64 * kb);
            svint8_t f0 = svreinterpret_s8_u8(svand_n_u8_x(pb, v, 0x03));
            svint8_t f1 = svreinterpret_s8_u8(svand_n_u8_x(pb, v, 0x0c));
            svint8_t f2 = svreinterpret_s8_u8(svand_n_u8_x(pb, v, 0x30));
            svint8_t f3 = svreinterpret_s8_u8(svlsr_n_u8_x(pb, v, 6));
            svint8_t x0 = svld1rq_s8(all, x[0].q + 16 * kb);
            a0 = svdot_lane_s32(a0, f0, x0, 0);
            a1 = svdot_lane_s32(a1, f1, x0, 1);
            a2 = svdot_lane_s32(a2, f2, x0, 2);
            a3 = svdot_lane_s32(a3, f3, x0, 3);
            if (T > 1) {
                svint8_t x1 = svld1rq_s8(all, x[1].q + 16 * kb);
                b0 = svdot_lane_s32(b0, f0, x1, 0);
                b1 = svdot_lane_s32(b1, f1, x1, 1);
                b2 = svdot_lane_s32(b2, f2, x1, 2);
                b3 = svdot_lane_s32(b3, f3, x1, 3);
            }
        }
        svint32_t s0 = svadd_s32_x(pw, svadd_s32_x(pw, a0, a3),
                                   svadd_s32_x(pw, svasr_n_s32_x(pw, a1, 2), svasr_n_s32_x(pw, a2, 4)));
        tot0 = svadd_u32_x(pw, tot0, svreinterpret_u32_s32(s0));
        if (T > 1) {
            svint32_t s1 = svadd_s32_x(pw, svadd_s32_x(pw, b0, b3),
                                       svadd_s32_x(pw, svasr_n_s32_x(pw, b1, 2), svasr_n_s32_x(pw, b2, 4)));
            tot1 = svadd_u32_x(pw, tot1, svreinterpret_u32_s32(s1));
        }
    }
    svst1_u32(pw, out, tot0);
    if (T > 1) svst1_u32(pw, out + 16, tot1);
}

void arm_tmm_mad_sve(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch)
{
    (void)scratch;
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const arm_tmat *m = wt->extra;
    int64_t n_tok = tern_tensor_nrows(xt), nkb = m->Kp / 16;
    int S = groups_per_vector();
    uint32_t out[2][16];
    for (int64_t tile = tile0; tile < tile1; tile++) {
        const uint8_t *w = (const uint8_t *)wt->data + (size_t)tile * m->tile_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += 2) {
            arm_tok x[2];
            int T = n_tok - t0 < 2 ? 1 : 2;
            for (int t = 0; t < T; t++) x[t] = arm_token(xt, t0 + t);
            for (int v = 0; v < 4 / S; v++) {
                if (T == 2)
                    mad_pass(2, w + 16 * S * v, nkb, S, x, &out[0][4 * S * v]);
                else
                    mad_pass(1, w + 16 * S * v, nkb, S, x, &out[0][4 * S * v]);
            }
            for (int t = 0; t < T; t++)
                for (int r = 0; r < ARM_MAD_ROWS && tile * ARM_MAD_ROWS + r < m->N; r++)
                    arm_store_ternary(node, t0 + t, tile * ARM_MAD_ROWS + r,
                                      out[t][r] - (uint32_t)x[t].sum, &x[t]);
        }
    }
}

/* The vector length, for probe and describe (backend.c runs no SVE code). */
int arm_sve_vector_bits(void) { return (int)svcntb() * 8; }
