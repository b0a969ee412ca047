/* repack.c - weights onto the device, once, at load (see opencl.h for the
 * layouts):
 *   TERNARY  TQ1_0/TQ2_0/I2_S -> 2-bit codes, 16 a word, the per-tensor
 *            scale in tensor->scale;
 *   MATMUL   F32/F16/BF16 as stored; Q8_0 split into codes and scales;
 *   HEAD     as MATMUL, or with options.head = "q8" a float head
 *            quantized to Q8_0 (tern_quantize_q8_0, as x86's q8 head);
 *   ROWS and PARAM declined: the executor uploads the file bytes, which
 *            get_rows decodes on the device (kernels/rows.cl).
 * Host-side conversion runs on the model's threads (parallel_for). */
#include <stdio.h>

#include "tern/checked.h"
#include "opencl.h"

const char ocl_weight_tag = 'w';

const ocl_weight *ocl_weight_of(const tern_tensor *t)
{
    if (!t || t->owner != &opencl_api || !t->extra) return NULL;
    const ocl_weight *w = t->extra;
    return w->tag == &ocl_weight_tag ? w : NULL;
}

/* ---- host-side conversion, in row chunks on the model's threads ---- */

typedef struct conv_job {
    const tern_tensor *src;
    void *out;
    int64_t K, N, ku;
    size_t d_off; /* Q8_0: where the scales start */
    int kind;
    tern_status st;
    char msg[TERN_ERROR_MSG_MAX];
} conv_job;

#define CHUNK_ROWS 256

/* Rows [r0, r1) of a ternary tensor into 2-bit words (opencl.h). */
static void pack_ternary_rows(conv_job *j, int64_t r0, int64_t r1, int8_t *codes)
{
    uint32_t *out = j->out;
    for (int64_t r = r0; r < r1; r++) {
        tern_error e;
        if (tern_ternary_row_codes(j->src, r, codes, NULL, &e) != TERN_OK) {
            j->st = e.status;
            snprintf(j->msg, sizeof j->msg, "%s", e.msg);
            return;
        }
        uint32_t *row = out + (size_t)r * (size_t)j->ku;
        for (int64_t u = 0; u < j->ku; u++) {
            uint32_t w = 0;
            for (int i = 0; i < 16; i++) {
                int64_t k = 16 * u + i;
                uint32_t c = k < j->K ? (uint32_t)(codes[k] + 1) : 1u; /* padding: w = 0 */
                int s = i / 4, b = i % 4;
                w |= c << (8 * b + 2 * s);
            }
            row[u] = w;
        }
    }
}

/* Rows [r0, r1) of a Q8_0 tensor (file layout, or a float head quantized
 * here) into the split layout: codes at out + r*K, f16 scales at d_off. */
static void split_q8_rows(conv_job *j, int64_t r0, int64_t r1, float *tmp, uint8_t *blk)
{
    uint8_t *codes = j->out;
    uint16_t *scales = (uint16_t *)(codes + j->d_off);
    int64_t nb = j->K / 32;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = (const uint8_t *)j->src->data + (size_t)r * j->src->nb[1];
        if (j->src->type != TERN_TYPE_Q8_0) { /* the q8 head */
            tern_error e;
            if (tern_requantize_rows_q8_0(j->src, r, 1, tmp, blk, &e) != TERN_OK) {
                j->st = e.status;
                snprintf(j->msg, sizeof j->msg, "%s", e.msg);
                return;
            }
            src = blk;
        }
        for (int64_t b = 0; b < nb; b++) {
            memcpy(&scales[(size_t)r * (size_t)nb + (size_t)b], src + 34 * b, 2);
            memcpy(codes + (size_t)r * (size_t)j->K + 32 * b, src + 34 * b + 2, 32);
        }
    }
}

static void conv_task(void *arg, int i, int n)
{
    (void)n;
    conv_job *j = arg;
    int64_t r0 = (int64_t)i * CHUNK_ROWS, r1 = r0 + CHUNK_ROWS < j->N ? r0 + CHUNK_ROWS : j->N;
    if (j->st) return;
    size_t tmp_bytes = (size_t)j->K * (j->kind == W_TERNARY ? 1 : sizeof(float) + 2);
    void *tmp = malloc(tmp_bytes + 64);
    if (!tmp) {
        j->st = TERN_ENOMEM;
        snprintf(j->msg, sizeof j->msg, "out of memory converting rows");
        return;
    }
    if (j->kind == W_TERNARY) pack_ternary_rows(j, r0, r1, tmp);
    else split_q8_rows(j, r0, r1, tmp, (uint8_t *)tmp + (size_t)j->K * sizeof(float));
    free(tmp);
}

/* A device buffer holding n host bytes; NULL with err on failure. */
static ocl_buf *upload_new(ocl_ctx *c, const void *data, size_t n, const char *name, char *err, size_t errlen)
{
    ocl_buf *b = ocl_buffer_alloc(c, n);
    if (!b) {
        snprintf(err, errlen, "tensor '%s': out of device memory for %zu bytes on %s", name, n, c->device_name);
        return NULL;
    }
    if (ocl_buffer_upload(c, b, 0, data, n) != TERN_OK) {
        ocl_buffer_free(c, b);
        snprintf(err, errlen, "tensor '%s': uploading %zu bytes to %s failed", name, n, c->device_name);
        return NULL;
    }
    return b;
}

/* Converts src on the host (kind), uploads, fills dst. */
static tern_status place(ocl_ctx *c, const tern_tensor *src, int kind, int out_type, int64_t ku, size_t bytes,
                         size_t d_off, tern_tensor *dst, char *err, size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    ocl_weight *w = c->host->alloc(sizeof *w, 64);
    void *host = kind == W_FLOAT ? NULL : c->host->alloc(bytes + 64, 64);
    if (!w || (kind != W_FLOAT && !host)) {
        c->host->free(w), c->host->free(host);
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    if (kind == W_Q8_0) memset((uint8_t *)host + (size_t)K * (size_t)N, 0, d_off - (size_t)K * (size_t)N);
    if (kind != W_FLOAT) {
        conv_job j = {src, host, K, N, ku, d_off, kind, TERN_OK, ""};
        int n_tasks = (int)((N + CHUNK_ROWS - 1) / CHUNK_ROWS);
        if (TERN_STRUCT_HAS(c->host, tern_host_api, parallel_for) && c->host->parallel_for)
            c->host->parallel_for(c->host, n_tasks, conv_task, &j);
        else
            for (int i = 0; i < n_tasks; i++) conv_task(&j, i, n_tasks);
        if (j.st) {
            c->host->free(w), c->host->free(host);
            snprintf(err, errlen, "%s", j.msg);
            return j.st;
        }
    }
    ocl_buf *b = upload_new(c, kind == W_FLOAT ? src->data : host, bytes, name, err, errlen);
    c->host->free(host);
    if (!b) {
        c->host->free(w);
        return TERN_ENOMEM;
    }
    *w = (ocl_weight){&ocl_weight_tag, kind, K, N, ku, d_off, b};
    /* the type and shape stay the matrix's (tensor bytes then count what a
     * token reads: 2 bits a ternary weight); extra has the real layout */
    *dst = *src;
    if (out_type != src->type) tern_tensor_init(dst, out_type, 2, (int64_t[]){K, N});
    dst->layout = kind == W_FLOAT ? TERN_LAYOUT_FILE : TERN_LAYOUT_BACKEND;
    dst->owner = &opencl_api;
    dst->extra = w;
    dst->buffer = b;
    dst->data = NULL;
    dst->scale = src->scale;
    dst->name = src->name;
    return TERN_OK;
}

static int is_ternary_type(int t)
{
    return t == TERN_TYPE_TQ1_0 || t == TERN_TYPE_TQ2_0 || t == TERN_TYPE_I2_S;
}

tern_status ocl_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst, char *err,
                       size_t errlen)
{
    ocl_ctx *c = ctx;
    int t = src->type;
    const char *name = src->name ? src->name : "?";
    if (src->layout != TERN_LAYOUT_FILE || src->buffer || !src->data) {
        snprintf(err, errlen, "tensor '%s': repack needs a host tensor in file layout", name);
        return TERN_EINVAL;
    }
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    size_t bytes;
    if (K <= 0 || N <= 0 || src->ne[2] != 1 || src->ne[3] != 1) goto unsupported;
    if (purpose == TERN_REPACK_TERNARY && is_ternary_type(t)) {
        tern_error e;
        float scale;
        if (tern_ternary_tensor_scale(src, &scale, &e) != TERN_OK) {
            snprintf(err, errlen, "%s", e.msg);
            return e.status;
        }
        int64_t ku = (K + 63) / 64 * 4; /* whole 16-byte words: the Q8_TOK row's padding */
        if (tern_mul_overflows((size_t)ku * 4, (size_t)N, &bytes)) goto unsupported;
        tern_tensor tmp = *src;
        tmp.scale = scale;
        tern_status st = place(c, &tmp, W_TERNARY, t, ku, bytes, 0, dst, err, errlen);
        if (!st) c->n_ternary++;
        return st;
    }
    int head = purpose == TERN_REPACK_HEAD;
    if ((purpose == TERN_REPACK_MATMUL || head) && tern_op_is_float_weight(t)) {
        int q8 = t == TERN_TYPE_Q8_0 || (head && c->head_q8 && tern_head_q8_eligible(src));
        if (!q8) {
            if (tern_mul_overflows((size_t)src->nb[1], (size_t)N, &bytes)) goto unsupported;
            tern_status st = place(c, src, W_FLOAT, t, 0, bytes, 0, dst, err, errlen);
            if (!st) c->n_float++;
            return st;
        }
        if (tern_mul_overflows((size_t)K, (size_t)N, &bytes)) goto unsupported;
        size_t d_off = (bytes + 63) / 64 * 64;
        tern_status st = place(c, src, W_Q8_0, TERN_TYPE_Q8_0, 0, d_off + (size_t)N * (size_t)(K / 32) * 2, d_off,
                               dst, err, errlen);
        if (!st) {
            dst->layout = TERN_LAYOUT_BACKEND;
            if (t == TERN_TYPE_Q8_0) c->n_q8++;
            else c->n_head_q8++;
        }
        return st;
    }
unsupported:
    snprintf(err, errlen, "tensor '%s': opencl does not place type %s for this use", name, tern_type_name(t));
    return TERN_EUNSUPPORTED;
}

void ocl_release(void *ctx, tern_tensor *t)
{
    ocl_ctx *c = ctx;
    const ocl_weight *cw = ocl_weight_of(t);
    if (!cw) return;
    ocl_weight *w = t->extra;
    if (w->kind == W_TERNARY) c->n_ternary--;
    ocl_buffer_free(c, w->buf);
    c->host->free(w);
    t->extra = NULL;
    t->buffer = NULL;
}
