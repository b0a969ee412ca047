/* q8mm_dotprod.c - the Q8_0 matmul with NEON sdot (built with +dotprod;
 * called only on CPUs with asimddp), weights as stored in the file.
 *
 * The definition (op.h, tern_dot_q8_0): per block b in order, acc =
 * fmaf((float)dot_b, f32(d_w[b]) * d[b], acc), dot_b the exact int32 dot
 * of the block's 32 codes. Four rows at a time: two sdot per row and block
 * give each row's dot in four partial lanes, two pairwise adds gather the
 * four rows' dots into one vector (lanes = rows), and one vector fma does
 * the four rows' f32 steps, lane by lane exactly the scalar fmaf. */
#include <arm_neon.h>

#include "arm.h"

#define AI static inline __attribute__((always_inline))

AI int32x4_t block_dot(const uint8_t *blk, int8x16_t q0, int8x16_t q1)
{
    int32x4_t s = vdotq_s32(vdupq_n_s32(0), vld1q_s8((const int8_t *)blk + 2), q0);
    return vdotq_s32(s, vld1q_s8((const int8_t *)blk + 18), q1);
}

/* The f16 scales of block b of four rows, as f32 (exact). */
AI float32x4_t scales4(const uint8_t *const *row, int64_t b)
{
    uint16x4_t h = vdup_n_u16(0);
    h = vld1_lane_u16((const uint16_t *)(row[0] + 34 * b), h, 0);
    h = vld1_lane_u16((const uint16_t *)(row[1] + 34 * b), h, 1);
    h = vld1_lane_u16((const uint16_t *)(row[2] + 34 * b), h, 2);
    h = vld1_lane_u16((const uint16_t *)(row[3] + 34 * b), h, 3);
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

void arm_q8mm_dotprod(const tern_node *node, int64_t lo, int64_t hi, void *scratch)
{
    const tern_tensor *xt = node->src[0], *w = node->src[1];
    int64_t K = xt->ne[0], nb = K / 32, n_tok = tern_tensor_nrows(xt);
    size_t qbytes = arm_q8act_codes_bytes(K);
    for (int64_t n0 = lo; n0 < hi; n0 += 4) {
        int rows = hi - n0 < 4 ? (int)(hi - n0) : 4;
        const uint8_t *row[4];
        for (int r = 0; r < 4; r++) /* edge rows repeat the last one; their lanes are dropped */
            row[r] = (const uint8_t *)w->data + (size_t)(n0 + (r < rows ? r : rows - 1)) * w->nb[1];
        for (int64_t t = 0; t < n_tok; t++) {
            const int8_t *q = (const int8_t *)arm_q8act_token(scratch, K, t);
            const float *d = (const float *)((const uint8_t *)q + qbytes);
            float32x4_t acc = vdupq_n_f32(0.0f);
            for (int64_t b = 0; b < nb; b++) {
                int8x16_t q0 = vld1q_s8(q + 32 * b), q1 = vld1q_s8(q + 32 * b + 16);
                int32x4_t d0 = block_dot(row[0] + 34 * b, q0, q1), d1 = block_dot(row[1] + 34 * b, q0, q1);
                int32x4_t d2 = block_dot(row[2] + 34 * b, q0, q1), d3 = block_dot(row[3] + 34 * b, q0, q1);
                int32x4_t dots = vpaddq_s32(vpaddq_s32(d0, d1), vpaddq_s32(d2, d3));
                float32x4_t sc = vmulq_n_f32(scales4(row, b), d[b]);
                acc = vfmaq_f32(acc, vcvtq_f32_s32(dots), sc);
            }
            float out[4];
            vst1q_f32(out, acc);
            float *y = (float *)arm_row(node->dst, t);
            for (int r = 0; r < rows; r++) y[n0 + r] = out[r];
        }
    }
}
