/* tmm_sve.c - the ternary MAD kernel with SVE sdot, vector-length agnostic
 * (built with +sve; called only on CPUs with SVE).
 *
 * The same 16-row tiles as the NEON kernel (arm.h), read S row groups per
 * vector: S = 1, 2 or 4 for a vector of 128, 256 or >= 512 bits (svcntb()
 * at run time; lengths that are not a power of two use the largest S that
 * fits, lengths above 512 bits leave the upper lanes idle), so one loop
 * iteration takes the whole 64-byte block of 16 rows x 16 k in 4 / S
 * vectors. The 16 bytes of activations are replicated into every 128-bit
 * segment (ld1rqb), so the indexed sdot gives segment s the rows of row
 * group s. Per field p, as in tmm_dotprod.c: one mask or shift, one sdot
 * into the accumulator of weight 4^p; at VL 512 one 64-byte load, 3 ANDs, a
 * shift and 4 sdots cover 256 weights. Every tile holds whole 64-byte
 * blocks, so no loop needs a predicated tail. */
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

/* One vector position vi of a 64-byte block: the masks are registers, so
 * every AND is the constructive three-operand form (no movprfx). */
#define MAD_STEP(vi, A0, A1, A2, A3, B0, B1, B2, B3)                               \
    if (NVI > vi) {                                                                  \
        svuint8_t v = svld1_u8(pb, wk + 16 * S * vi);                                \
        svint8_t f0 = svreinterpret_s8_u8(svand_u8_x(pb, v, m03));                  \
        svint8_t f1 = svreinterpret_s8_u8(svand_u8_x(pb, v, m0c));                  \
        svint8_t f2 = svreinterpret_s8_u8(svand_u8_x(pb, v, m30));                  \
        svint8_t f3 = svreinterpret_s8_u8(svlsr_n_u8_x(pb, v, 6));                  \
        A0 = svdot_lane_s32(A0, f0, x0, 0), A1 = svdot_lane_s32(A1, f1, x0, 1);     \
        A2 = svdot_lane_s32(A2, f2, x0, 2), A3 = svdot_lane_s32(A3, f3, x0, 3);     \
        if (T > 1) {                                                                 \
            B0 = svdot_lane_s32(B0, f0, x1, 0), B1 = svdot_lane_s32(B1, f1, x1, 1); \
            B2 = svdot_lane_s32(B2, f2, x1, 2), B3 = svdot_lane_s32(B3, f3, x1, 3); \
        }                                                                            \
    }

/* The scaled sums of one accumulator set, divided back exactly, added in
 * wrapping uint32 to out (lanes 4 S vi ..). */
#define MAD_FLUSH(vi, t, A0, A1, A2, A3)                                                    \
    if (NVI > vi && T > t) {                                                                \
        svint32_t s_ = svadd_s32_x(pw, svadd_s32_x(pw, A0, A3),                             \
                                   svadd_s32_x(pw, svasr_n_s32_x(pw, A1, 2), svasr_n_s32_x(pw, A2, 4))); \
        uint32_t *o_ = out + 16 * t + 4 * S * vi;                                           \
        svst1_u32(pw, o_, svadd_u32_x(pw, svld1_u32(pw, o_), svreinterpret_u32_s32(s_)));  \
    }

/* Vector positions v0 .. v0 + NVI - 1 (row groups S v ..) of a tile against
 * T tokens (NVI * T <= 4: at most 32 accumulators... 16 live here);
 * out[t][r] += sum u q of tile row r. */
AI void mad_block(int NVI, int T, const uint8_t *w, int64_t nkb, int S, const arm_tok *x, uint32_t *out)
{
    const svbool_t pb = svwhilelt_b8_s32(0, 16 * S), pw = svwhilelt_b32_s32(0, 4 * S), all = svptrue_b8();
    svuint8_t m03 = svdup_n_u8(0x03), m0c = svdup_n_u8(0x0c), m30 = svdup_n_u8(0x30);
    /* opaque to the compiler, which would fold them into the destructive
     * AND-immediate form and copy v with a movprfx before each */
    __asm__("" : "+w"(m03), "+w"(m0c), "+w"(m30));
    for (int64_t c0 = 0; c0 < nkb; c0 += CHUNK_KB) {
        int64_t c1 = nkb - c0 < CHUNK_KB ? nkb : c0 + CHUNK_KB;
        svint32_t z = svdup_n_s32(0);
        svint32_t a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
        svint32_t a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
        svint32_t b00 = z, b01 = z, b02 = z, b03 = z, b10 = z, b11 = z, b12 = z, b13 = z;
        for (int64_t kb = c0; kb < c1; kb++) {
            const uint8_t *wk = w + 64 * kb;
            svint8_t x0 = svld1rq_s8(all, x[0].q + 16 * kb), x1 = x0;
            if (T > 1) x1 = svld1rq_s8(all, x[1].q + 16 * kb);
            MAD_STEP(0, a00, a01, a02, a03, b00, b01, b02, b03)
            MAD_STEP(1, a10, a11, a12, a13, b10, b11, b12, b13)
            MAD_STEP(2, a20, a21, a22, a23, b00, b01, b02, b03) /* NVI 4 only with T 1 */
            MAD_STEP(3, a30, a31, a32, a33, b00, b01, b02, b03)
        }
        MAD_FLUSH(0, 0, a00, a01, a02, a03)
        MAD_FLUSH(1, 0, a10, a11, a12, a13)
        MAD_FLUSH(2, 0, a20, a21, a22, a23)
        MAD_FLUSH(3, 0, a30, a31, a32, a33)
        MAD_FLUSH(0, 1, b00, b01, b02, b03)
        MAD_FLUSH(1, 1, b10, b11, b12, b13)
    }
}

void arm_tmm_mad_sve(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch)
{
    (void)scratch;
    const tern_tensor *xt = node->src[0], *wt = node->src[1];
    const arm_tmat *m = wt->extra;
    int64_t n_tok = tern_tensor_nrows(xt), nkb = m->Kp / 16;
    int S = groups_per_vector(), NV = 4 / S;
    uint32_t out[2][16];
    for (int64_t tile = tile0; tile < tile1; tile++) {
        const uint8_t *w = (const uint8_t *)wt->data + (size_t)tile * m->tile_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += 2) {
            arm_tok x[2];
            int T = n_tok - t0 < 2 ? 1 : 2;
            for (int t = 0; t < T; t++) x[t] = arm_token(xt, t0 + t);
            memset(out, 0, sizeof out);
            /* the whole 64-byte block per iteration: 1 (VL >= 512), 2 or 4
             * (VL 128) vectors; two tokens share each unpacked weight, except
             * at VL 128, where the pair takes two half blocks */
            if (NV == 1) {
                if (T == 2) mad_block(1, 2, w, nkb, S, x, out[0]);
                else mad_block(1, 1, w, nkb, S, x, out[0]);
            } else if (NV == 2) {
                if (T == 2) mad_block(2, 2, w, nkb, S, x, out[0]);
                else mad_block(2, 1, w, nkb, S, x, out[0]);
            } else if (T == 1) {
                mad_block(4, 1, w, nkb, S, x, out[0]);
            } else {
                mad_block(2, 2, w, nkb, S, x, out[0]);
                mad_block(2, 2, w + 32, nkb, S, x, &out[0][8]);
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
