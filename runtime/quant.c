/* quant.c - reference decoders and encoders of the weight types.
 *
 * The layouts are those written by llama.cpp (Q8_0, TQ1_0, TQ2_0) and by
 * bitnet.cpp (I2_S, x86 layout); ../shared/ref/README.md section 7 has them
 * in words. This file is compiled into libtern and into the scalar backend
 * (plugins do not link libtern), so both use one definition. */
#include <math.h>
#include <string.h>

#include "tern/checked.h"
#include "tern/quant.h"

/* Values a TQ1_0 byte yields for trit n: the byte holds a base-3 number as
 * a fixed-point fraction of 243, so multiplying by 3^n moves trit n to the
 * top, and *3 >> 8 reads it. */
static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};

static inline int tq1_trit(uint8_t q, int n)
{
    uint8_t v = (uint8_t)(q * pow3[n]);
    return (int)(((uint16_t)v * 3) >> 8);
}

static inline uint16_t read_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ---- one block of codes (0, 1, 2 = -1, 0, +1) ---- */

static void tq2_0_block_codes(const uint8_t *b, int8_t *codes)
{
    for (int h = 0; h < 2; h++)
        for (int n = 0; n < 4; n++)
            for (int m = 0; m < 32; m++)
                codes[128 * h + 32 * n + m] = (int8_t)(((b[32 * h + m] >> (2 * n)) & 3) - 1);
}

static void tq1_0_block_codes(const uint8_t *b, int8_t *codes)
{
    const uint8_t *qs = b, *qh = b + 48;
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 32; m++) codes[m + 32 * n] = (int8_t)(tq1_trit(qs[m], n) - 1);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 16; m++) codes[160 + m + 16 * n] = (int8_t)(tq1_trit(qs[32 + m], n) - 1);
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) codes[240 + 4 * n + j] = (int8_t)(tq1_trit(qh[j], n) - 1);
}

/* I2_S code of flat value index i (x86 layout: 128-value blocks of 32
 * bytes; value 32g + j of a block sits in bits 6-2g..7-2g of byte j). */
static inline int i2s_code(const uint8_t *base, int64_t i)
{
    int64_t blk = i / TERN_I2S_BLOCK;
    int j = (int)(i % TERN_I2S_BLOCK);
    uint8_t byte = base[blk * 32 + (j % 32)];
    return (byte >> (6 - 2 * (j / 32))) & 3;
}

static float block_d(int type, const uint8_t *b)
{
    size_t off = type == TERN_TYPE_TQ2_0 ? 64 : 52;
    return tern_f16_to_f32(read_u16(b + off));
}

tern_status tern_ternary_row_codes(const tern_tensor *t, int64_t row, int8_t *codes, float *d,
                                   tern_error *err)
{
    int64_t K = t->ne[0];
    const uint8_t *base = (const uint8_t *)t->data;
    switch (t->type) {
    case TERN_TYPE_TQ2_0:
    case TERN_TYPE_TQ1_0: {
        const uint8_t *r = base + (size_t)row * t->nb[1];
        size_t bs = tern_type_get(t->type)->type_size;
        for (int64_t b = 0; b < K / TERN_QK_K; b++) {
            if (t->type == TERN_TYPE_TQ2_0)
                tq2_0_block_codes(r + b * bs, codes + b * TERN_QK_K);
            else
                tq1_0_block_codes(r + b * bs, codes + b * TERN_QK_K);
            if (d) d[b] = block_d(t->type, r + b * bs);
        }
        return TERN_OK;
    }
    case TERN_TYPE_I2_S:
        if (K % TERN_I2S_BLOCK == 0) { /* whole blocks from the row's start: a byte at a time */
            const uint8_t *blk = base + (size_t)(row * K / TERN_I2S_BLOCK) * 32;
            for (int64_t b = 0; b < K / TERN_I2S_BLOCK; b++, blk += 32, codes += TERN_I2S_BLOCK)
                for (int j = 0; j < 32; j++) {
                    codes[j] = (int8_t)((blk[j] >> 6 & 3) - 1);
                    codes[32 + j] = (int8_t)((blk[j] >> 4 & 3) - 1);
                    codes[64 + j] = (int8_t)((blk[j] >> 2 & 3) - 1);
                    codes[96 + j] = (int8_t)((blk[j] & 3) - 1);
                }
        } else {
            for (int64_t k = 0; k < K; k++) codes[k] = (int8_t)(i2s_code(base, row * K + k) - 1);
        }
        if (d)
            for (int64_t b = 0; b < (K + TERN_QK_K - 1) / TERN_QK_K; b++) d[b] = t->scale;
        return TERN_OK;
    default:
        return tern_error_set(err, TERN_EUNSUPPORTED, "tensor '%s': type %s is not ternary",
                              t->name ? t->name : "?", tern_type_name(t->type));
    }
}

tern_status tern_ternary_tensor_scale(const tern_tensor *t, float *scale, tern_error *err)
{
    if (t->type == TERN_TYPE_I2_S) {
        *scale = t->scale;
        return TERN_OK;
    }
    if (t->type != TERN_TYPE_TQ1_0 && t->type != TERN_TYPE_TQ2_0)
        return tern_error_set(err, TERN_EUNSUPPORTED, "tensor '%s': type %s is not ternary",
                              t->name ? t->name : "?", tern_type_name(t->type));
    size_t bs = tern_type_get(t->type)->type_size;
    int64_t nblk = t->ne[0] / TERN_QK_K;
    int8_t codes[TERN_QK_K];
    float s = 0.0f;
    int have = 0;
    for (int64_t r = 0; r < tern_tensor_nrows(t); r++) {
        const uint8_t *row = (const uint8_t *)t->data + (size_t)r * t->nb[1];
        for (int64_t b = 0; b < nblk; b++) {
            const uint8_t *blk = row + b * bs;
            float d = block_d(t->type, blk);
            if (have && d == s) continue;
            if (t->type == TERN_TYPE_TQ2_0)
                tq2_0_block_codes(blk, codes);
            else
                tq1_0_block_codes(blk, codes);
            int nonzero = 0;
            for (int i = 0; i < TERN_QK_K; i++) nonzero |= codes[i];
            if (!nonzero || d == 0.0f) continue;
            if (!have) {
                s = d;
                have = 1;
            } else {
                return tern_error_set(err, TERN_EUNSUPPORTED,
                                      "tensor '%s': block %lld of row %lld has scale %g, block 0 "
                                      "has %g; tern needs one scale per ternary tensor",
                                      t->name ? t->name : "?", (long long)b, (long long)r, d, s);
            }
        }
    }
    *scale = s;
    return TERN_OK;
}

tern_status tern_dequantize_rows(const tern_tensor *t, int64_t row, int64_t nrows, float *dst,
                                 tern_error *err)
{
    int64_t K = t->ne[0];
    if (row < 0 || nrows < 0 || row + nrows > tern_tensor_nrows(t))
        return tern_error_set(err, TERN_EINVAL, "tensor '%s': rows %lld..%lld out of range",
                              t->name ? t->name : "?", (long long)row, (long long)(row + nrows));
    for (int64_t r = row; r < row + nrows; r++, dst += K) {
        const uint8_t *src = (const uint8_t *)t->data + (size_t)r * t->nb[1];
        switch (t->type) {
        case TERN_TYPE_F32:
            memcpy(dst, src, (size_t)K * 4);
            break;
        case TERN_TYPE_F16:
            for (int64_t k = 0; k < K; k++) dst[k] = tern_f16_to_f32(read_u16(src + 2 * k));
            break;
        case TERN_TYPE_BF16:
            for (int64_t k = 0; k < K; k++) dst[k] = tern_bf16_to_f32(read_u16(src + 2 * k));
            break;
        case TERN_TYPE_Q8_0:
            for (int64_t b = 0; b < K / TERN_QK8_0; b++) {
                const uint8_t *blk = src + b * 34;
                float d = tern_f16_to_f32(read_u16(blk));
                for (int i = 0; i < TERN_QK8_0; i++) dst[b * TERN_QK8_0 + i] = d * (int8_t)blk[2 + i];
            }
            break;
        case TERN_TYPE_TQ1_0:
        case TERN_TYPE_TQ2_0:
        case TERN_TYPE_I2_S: {
            int8_t codes[TERN_QK_K];
            float d[1];
            int64_t step = t->type == TERN_TYPE_I2_S ? K : TERN_QK_K;
            if (t->type == TERN_TYPE_I2_S) {
                for (int64_t k = 0; k < K; k++)
                    dst[k] = (float)(i2s_code((const uint8_t *)t->data, r * K + k) - 1) * t->scale;
                break;
            }
            size_t bs = tern_type_get(t->type)->type_size;
            for (int64_t b = 0; b < K / step; b++) {
                const uint8_t *blk = src + b * bs;
                if (t->type == TERN_TYPE_TQ2_0)
                    tq2_0_block_codes(blk, codes);
                else
                    tq1_0_block_codes(blk, codes);
                d[0] = block_d(t->type, blk);
                for (int i = 0; i < TERN_QK_K; i++) dst[b * TERN_QK_K + i] = codes[i] * d[0];
            }
            break;
        }
        default:
            return tern_error_set(err, TERN_EUNSUPPORTED, "tensor '%s': cannot decode type %s",
                                  t->name ? t->name : "?", tern_type_name(t->type));
        }
    }
    return TERN_OK;
}

/* ---- encoders ---- */

void tern_pack_tq2_0(const int8_t *codes, int64_t n, float scale, void *dst)
{
    uint8_t *out = (uint8_t *)dst;
    uint16_t d = tern_f32_to_f16(scale);
    for (int64_t b = 0; b < n / TERN_QK_K; b++, out += 66, codes += TERN_QK_K) {
        memset(out, 0, 64);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int m = 0; m < 32; m++)
                    out[32 * h + m] |= (uint8_t)((codes[128 * h + 32 * k + m] + 1) << (2 * k));
        memcpy(out + 64, &d, 2);
    }
}

static uint8_t tq1_pack(const int8_t *c, int count, int stride)
{
    unsigned q = 0;
    for (int i = 0; i < count; i++) q = q * 3 + (unsigned)(c[i * stride] + 1);
    if (count == 4) q *= 3; /* the first value goes to the most significant trit */
    return (uint8_t)((q * 256 + 242) / 243);
}

void tern_pack_tq1_0(const int8_t *codes, int64_t n, float scale, void *dst)
{
    uint8_t *out = (uint8_t *)dst;
    uint16_t d = tern_f32_to_f16(scale);
    for (int64_t b = 0; b < n / TERN_QK_K; b++, out += 54, codes += TERN_QK_K) {
        for (int m = 0; m < 32; m++) out[m] = tq1_pack(codes + m, 5, 32);
        for (int m = 0; m < 16; m++) out[32 + m] = tq1_pack(codes + 160 + m, 5, 16);
        for (int j = 0; j < 4; j++) out[48 + j] = tq1_pack(codes + 240 + j, 4, 4);
        memcpy(out + 52, &d, 2);
    }
}

void tern_pack_i2_s(const int8_t *codes, int64_t n, float scale, void *dst)
{
    uint8_t *out = (uint8_t *)dst;
    memset(out, 0, (size_t)(n / 4) + TERN_I2S_TRAILER);
    for (int64_t i = 0; i < n; i++) {
        int64_t blk = i / TERN_I2S_BLOCK;
        int j = (int)(i % TERN_I2S_BLOCK);
        out[blk * 32 + j % 32] |= (uint8_t)((codes[i] + 1) << (6 - 2 * (j / 32)));
    }
    memcpy(out + n / 4, &scale, 4);
}

void tern_quantize_f16(const float *src, int64_t n, void *dst)
{
    uint8_t *out = (uint8_t *)dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = tern_f32_to_f16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

void tern_quantize_bf16(const float *src, int64_t n, void *dst)
{
    uint8_t *out = (uint8_t *)dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = tern_f32_to_bf16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

void tern_quantize_q8_0(const float *src, int64_t n, void *dst)
{
    uint8_t *out = (uint8_t *)dst;
    for (int64_t b = 0; b < n / TERN_QK8_0; b++, out += 34, src += TERN_QK8_0) {
        float amax = 0.0f;
        for (int i = 0; i < TERN_QK8_0; i++) amax = fmaxf(amax, fabsf(src[i]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = tern_f32_to_f16(d);
        memcpy(out, &h, 2);
        for (int i = 0; i < TERN_QK8_0; i++) out[2 + i] = (uint8_t)(int8_t)roundf(src[i] * id);
    }
}

tern_status tern_requantize_rows_q8_0(const tern_tensor *t, int64_t row, int64_t nrows, float *tmp, void *dst,
                                      tern_error *err)
{
    size_t row_bytes = (size_t)(t->ne[0] / TERN_QK8_0) * 34;
    for (int64_t r = 0; r < nrows; r++) {
        tern_status st = tern_dequantize_rows(t, row + r, 1, tmp, err);
        if (st) return st;
        tern_quantize_q8_0(tmp, t->ne[0], (uint8_t *)dst + (size_t)r * row_bytes);
    }
    return TERN_OK;
}

void tern_quantize_act_q8_0(const float *x, int64_t n, int8_t *q, float *d)
{
    for (int64_t b = 0; b < n / TERN_QK8_0; b++, x += TERN_QK8_0, q += TERN_QK8_0) {
        float amax = 0.0f;
        for (int i = 0; i < TERN_QK8_0; i++) {
            float a = fabsf(x[i]);
            amax = a > amax ? a : amax; /* NaN never wins */
        }
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int i = 0; i < TERN_QK8_0; i++) {
            float v = nearbyintf(x[i] * id);
            q[i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v == v ? v : 0);
        }
    }
}

float tern_dot_q8_0(const void *wrow, const int8_t *q, const float *d, int64_t n)
{
    const uint8_t *blk = (const uint8_t *)wrow;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / TERN_QK8_0; b++, blk += 34, q += TERN_QK8_0) {
        uint16_t h;
        memcpy(&h, blk, 2);
        int32_t dot = 0;
        for (int i = 0; i < TERN_QK8_0; i++) dot += (int32_t)(int8_t)blk[2 + i] * q[i];
        acc = fmaf((float)dot, tern_f16_to_f32(h) * d[b], acc);
    }
    return acc;
}

uint64_t tern_tensor_file_bytes(int type, const int64_t ne[TERN_MAX_DIMS])
{
    const tern_type_traits *tt = tern_type_get(type);
    if (!tt || !tt->is_weight_type) return 0;
    uint64_t n = 1;
    for (int i = 0; i < TERN_MAX_DIMS; i++) {
        if (ne[i] < 0 || tern_mul_overflows_u64(n, (uint64_t)ne[i], &n)) return 0;
    }
    if (type == TERN_TYPE_I2_S) {
        if (n % TERN_I2S_BLOCK != 0 || (uint64_t)ne[0] % 4 != 0) return 0;
        return n / 4 + TERN_I2S_TRAILER;
    }
    if ((uint64_t)ne[0] % (uint64_t)tt->blck_size != 0) return 0;
    uint64_t bytes;
    if (tern_mul_overflows_u64(n / (uint64_t)tt->blck_size, tt->type_size, &bytes)) return 0;
    return bytes;
}
