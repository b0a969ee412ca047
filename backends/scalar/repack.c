/* repack.c - the scalar backend's weight layouts (see scalar.h).
 *
 * TERN_REPACK_TERNARY decodes TQ1_0, TQ2_0 or I2_S into one int8 code per
 * weight, [N][K], with the single per-tensor scale beside it: 1 byte per
 * weight, simple to read and to check. TERN_REPACK_MATMUL keeps F32, F16,
 * BF16 and Q8_0 as stored: the matmul decodes one weight row at a time with
 * the reference decoder, so no second copy of a large head is made.
 * TERN_REPACK_HEAD does the same unless options.head is "q8": then a float
 * head is quantized to Q8_0 rows (tern_quantize_q8_0), the definition every
 * backend's q8 head is checked against. */
#include <stdio.h>

#include "tern/checked.h"
#include "scalar.h"

const char scalar_ternary_tag = 's';
const char scalar_q8_head_tag = 'q';

static tern_status repack_ternary(scalar_ctx *c, const tern_tensor *src, tern_tensor *dst,
                                  char *err, size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    size_t bytes;
    if (K <= 0 || N <= 0 || tern_mul_overflows((size_t)K, (size_t)N, &bytes)) {
        snprintf(err, errlen, "tensor '%s': bad shape %lld x %lld", name, (long long)K,
                 (long long)N);
        return TERN_EINVAL;
    }
    tern_error e;
    float scale;
    if (tern_ternary_tensor_scale(src, &scale, &e) != TERN_OK) {
        snprintf(err, errlen, "%s", e.msg);
        return e.status;
    }
    int8_t *codes = c->host->alloc(bytes, 64);
    if (!codes) {
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    for (int64_t n = 0; n < N; n++) {
        if (tern_ternary_row_codes(src, n, codes + (size_t)n * (size_t)K, NULL, &e) != TERN_OK) {
            c->host->free(codes);
            snprintf(err, errlen, "%s", e.msg);
            return e.status;
        }
    }
    int64_t ne[2] = {K, N};
    tern_tensor_init(dst, TERN_TYPE_I8, 2, ne);
    dst->layout = TERN_LAYOUT_BACKEND;
    dst->owner = &scalar_api;
    dst->data = codes;
    dst->scale = scale;
    dst->extra = (void *)&scalar_ternary_tag;
    dst->name = src->name;
    return TERN_OK;
}

/* The q8 head: each row decoded to f32 by the reference decoder, then
 * quantized as llama.cpp writes Q8_0. Heads whose K is not whole blocks of
 * 32 (or that are Q8_0 already) stay as stored. */
static tern_status repack_head_q8(scalar_ctx *c, const tern_tensor *src, tern_tensor *dst, char *err,
                                  size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    size_t row_bytes = (size_t)(K / 32) * 34, bytes;
    if (N <= 0 || tern_mul_overflows(row_bytes, (size_t)N, &bytes)) {
        snprintf(err, errlen, "tensor '%s': bad shape %lld x %lld", name, (long long)K, (long long)N);
        return TERN_EINVAL;
    }
    uint8_t *rows = c->host->alloc(bytes, 64);
    float *row = c->host->alloc((size_t)K * sizeof(float), 64);
    if (!rows || !row) {
        c->host->free(rows);
        c->host->free(row);
        snprintf(err, errlen, "tensor '%s': out of memory quantizing the head (%zu bytes)", name, bytes);
        return TERN_ENOMEM;
    }
    tern_error e;
    tern_status st = tern_requantize_rows_q8_0(src, 0, N, row, rows, &e);
    c->host->free(row);
    if (st) {
        c->host->free(rows);
        snprintf(err, errlen, "%s", e.msg);
        return st;
    }
    tern_tensor_init(dst, TERN_TYPE_Q8_0, 2, (int64_t[]){K, N});
    dst->owner = &scalar_api;
    dst->data = rows;
    dst->extra = (void *)&scalar_q8_head_tag; /* file layout; only says the bytes are ours */
    dst->name = src->name;
    c->n_head_q8++;
    return TERN_OK;
}

tern_status scalar_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen)
{
    scalar_ctx *c = ctx;
    int t = src->type;
    if (src->layout != TERN_LAYOUT_FILE || src->buffer) {
        snprintf(err, errlen, "tensor '%s': repack needs a host tensor in file layout",
                 src->name ? src->name : "?");
        return TERN_EINVAL;
    }
    if (purpose == TERN_REPACK_TERNARY &&
        (t == TERN_TYPE_TQ1_0 || t == TERN_TYPE_TQ2_0 || t == TERN_TYPE_I2_S))
        return repack_ternary(c, src, dst, err, errlen);
    if ((purpose == TERN_REPACK_MATMUL || purpose == TERN_REPACK_HEAD) && tern_op_is_float_weight(t)) {
        if (purpose == TERN_REPACK_HEAD && c->head_q8 && tern_head_q8_eligible(src))
            return repack_head_q8(c, src, dst, err, errlen);
        *dst = *src;
        return TERN_OK;
    }
    snprintf(err, errlen, "tensor '%s': scalar cannot repack type %s for %s",
             src->name ? src->name : "?", tern_type_name(t),
             purpose == TERN_REPACK_TERNARY ? "a ternary matmul" : "a matmul");
    return TERN_EUNSUPPORTED;
}

void scalar_release(void *ctx, tern_tensor *t)
{
    scalar_ctx *c = ctx;
    if (!t || t->owner != &scalar_api || (t->extra != &scalar_ternary_tag && t->extra != &scalar_q8_head_tag))
        return; /* not ours */
    c->host->free(t->data);
    t->data = NULL;
    t->extra = NULL;
}
