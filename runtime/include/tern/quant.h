/* tern/quant.h - reference encoders and decoders for every weight type.
 *
 * These are the definitions of the on-disk layouts (see ../shared/ref/README.md
 * section 7): the scalar backend's embedding lookup and repack use them, so
 * do tern synth and the tests. Plain C, kept forever; fast paths live in the
 * backends and are tested against these. */
#ifndef TERN_QUANT_H
#define TERN_QUANT_H

#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_QK8_0 32
#define TERN_QK_K 256
#define TERN_I2S_BLOCK 128 /* values per 32-byte I2_S block (x86 layout) */
#define TERN_I2S_TRAILER 32 /* f32 scale + padding after an I2_S tensor's codes */

/* Decodes nrows rows starting at row `row` of a file-layout tensor t into
 * dst (nrows * t->ne[0] floats). I2_S reads its scale from t->scale, which
 * the GGUF reader fills from the tensor's trailer. */
tern_status tern_dequantize_rows(const tern_tensor *t, int64_t row, int64_t nrows, float *dst,
                                 tern_error *err);

/* Ternary types only: codes in {-1,0,+1} of one row, and the row's block
 * scales (one per 256 values for TQ*, the tensor scale for I2_S) in d
 * (ne0/256 floats; may be NULL). */
tern_status tern_ternary_row_codes(const tern_tensor *t, int64_t row, int8_t *codes, float *d,
                                   tern_error *err);

/* The single per-tensor scale of a ternary tensor: every block holding a
 * nonzero weight must carry the same scale (true of absmean-quantized
 * BitNet weights); a tensor whose blocks disagree is EUNSUPPORTED, naming
 * the tensor and the first differing block. An all-zero tensor has scale 0. */
tern_status tern_ternary_tensor_scale(const tern_tensor *t, float *scale, tern_error *err);

/* Encoders. Ternary ones take codes in {-1,0,+1} and one scale. n is the
 * number of values (a multiple of the block size; for I2_S, of 128). */
void tern_pack_tq2_0(const int8_t *codes, int64_t n, float scale, void *dst);
void tern_pack_tq1_0(const int8_t *codes, int64_t n, float scale, void *dst);
/* Writes n/4 bytes of codes then the f32 scale and padding: n/4 + 32 bytes. */
void tern_pack_i2_s(const int8_t *codes, int64_t n, float scale, void *dst);
void tern_quantize_f16(const float *src, int64_t n, void *dst);
void tern_quantize_bf16(const float *src, int64_t n, void *dst);
void tern_quantize_q8_0(const float *src, int64_t n, void *dst);
/* Rows [row, row + nrows) of a float tensor t in file layout, decoded
 * (tern_dequantize_rows) and written as Q8_0 rows (tern_quantize_q8_0) at
 * dst, t->ne[0] / 32 * 34 bytes a row: the q8 head every backend makes.
 * tmp holds one decoded row (t->ne[0] floats, a multiple of 32). */
tern_status tern_requantize_rows_q8_0(const tern_tensor *t, int64_t row, int64_t nrows, float *tmp, void *dst,
                                      tern_error *err);

/* Q8_0 matmul activations (see TERN_OP_MATMUL): n values (a multiple of
 * 32) become, per block of 32, d[b] = amax / 127 and q = round-half-even(x *
 * (127 / amax)) clamped to +-127 (0 for a zero block, and for NaN). Unlike
 * tern_quantize_q8_0 the scale stays f32: these never reach a file. */
void tern_quantize_act_q8_0(const float *x, int64_t n, int8_t *q, float *d);
/* The Q8_0 matmul's definition for one output: wrow is one Q8_0 weight row
 * of n values in file layout, q and d its activations as above. Per block b
 * in order, acc = fmaf((float)dot_b, f32(d_w[b]) * d[b], acc) from acc = 0,
 * dot_b the exact int32 dot of the block's codes. */
float tern_dot_q8_0(const void *wrow, const int8_t *q, const float *d, int64_t n);

/* Bytes a whole tensor of type with ne[0..3] occupies in a file; 0 when the
 * shape does not fit the type's blocks or the size overflows. */
uint64_t tern_tensor_file_bytes(int type, const int64_t ne[TERN_MAX_DIMS]);

#ifdef __cplusplus
}
#endif
#endif
