/* repack.c - the x86 backend's weight layouts (see x86.h): ternary weights
 * into the layout of the kernel family chosen for the matrix, and the
 * optional int8 output head. Baseline x86-64: runs once at load. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#include "tern/checked.h"
#include "x86.h"

const char x86_tmat_tag = 't';
const char x86_q8mat_tag = 'q';
const char x86_owned_tag = 'o';
/* extra of a file-layout copy this backend allocated (the AVX2 q8 head) */
static const void *const x86_owned = &x86_owned_tag;
const char *const x86_family_names[X86_FAM_COUNT] = {"auto", "mad", "bitserial", "lut", "plugin"};

/* The built-in table behind kernel = "auto" (a table rather than a timing
 * at load, so that a model loads the same way every time and the choice is
 * reproducible). Measured with tests/x86/bench_kernels on the 2B4T shapes
 * (Zen 4, 2 threads; numbers in the commit log and bench output): MAD with
 * vpdpbusd needs 8 vector ops per 256 weights and reaches the memory bound
 * in GEMV and the best GOPS in GEMM on every shape; bit-serial spends ~48
 * ops and LUT ~11 ops (two vpermb + two vpdpbusd per 128 weights, to stay
 * exact) on the same work, so neither wins anywhere on a VNNI CPU. Both stay
 * selectable for CPUs and shapes where that changes. */
int x86_auto_family(int isa, int64_t K, int64_t N)
{
    (void)isa, (void)K, (void)N;
    return X86_FAM_MAD;
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Codes of rows [row0, row0 + n) into codes ([n][K]); rows >= N are not
 * touched. */
static tern_status row_codes(const tern_tensor *src, int64_t row0, int64_t n, int8_t *codes,
                             char *err, size_t errlen)
{
    tern_error e;
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    for (int64_t r = 0; r < n && row0 + r < N; r++)
        if (tern_ternary_row_codes(src, row0 + r, codes + r * K, NULL, &e) != TERN_OK) {
            snprintf(err, errlen, "%s", e.msg);
            return e.status;
        }
    return TERN_OK;
}

/* Weight (row r of the tile, k) in {-1,0,1}; 0 outside the matrix; *in
 * says whether it is inside. */
static int code_at(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t k, int *in)
{
    *in = r < rows && k < K;
    return *in ? codes[r * K + k] : 0;
}

static void pack_mad_tile(const int8_t *codes, int64_t K, int64_t rows, int64_t Kp, uint8_t *out)
{
    for (int64_t kb = 0; kb < Kp / 16; kb++)
        for (int j = 0; j < 64; j++) {
            int r = j / 4, i = j % 4, in;
            uint8_t b = 0;
            for (int p = 0; p < 4; p++) {
                int w = code_at(codes, K, rows, r, 16 * kb + 4 * p + i, &in);
                b |= (uint8_t)((in ? w + 1 : 0) << (2 * p));
            }
            out[kb * 64 + j] = b;
        }
}

static void pack_lut_tile(const int8_t *codes, int64_t K, int64_t rows, int64_t Kp, uint8_t *out)
{
    for (int64_t kb = 0; kb < Kp / 16; kb++)
        for (int j = 0; j < 64; j++) {
            int r = j / 4, i = j % 4, in;
            uint8_t b = 0;
            for (int h = 0; h < 2; h++) {
                int64_t k = 16 * kb + 8 * h + 2 * i;
                int w0 = code_at(codes, K, rows, r, k, &in), w1 = code_at(codes, K, rows, r, k + 1, &in);
                b |= (uint8_t)((3 * (w0 + 1) + (w1 + 1)) << (4 * h));
            }
            out[kb * 64 + j] = b;
        }
}

static void pack_bitserial_tile(const int8_t *codes, int64_t K, int64_t rows, int64_t Kp, uint8_t *out)
{
    size_t row_bytes = (size_t)Kp / 4;
    memset(out, 0, 16 * row_bytes);
    for (int64_t r = 0; r < 16 && r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            int w = codes[r * K + k];
            if (!w) continue;
            uint8_t *chunk = out + (size_t)r * row_bytes + (size_t)(k / 512) * 128;
            int64_t bit = k % 512;
            chunk[(w > 0 ? 0 : 64) + bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
}

/* Tiles are packed in parallel (host->parallel_for: the runtime's threads),
 * a contiguous run of tiles per task, each with its own row codes. */
typedef struct pack_job {
    const x86_ctx *c;
    const tern_tensor *src;
    int fam;
    const tern_kernel_variant *v; /* X86_FAM_PLUGIN */
    int64_t K, N, Kp, n_tiles;
    size_t tile_bytes;
    uint8_t *data;
    atomic_int failed;   /* first failure's task + 1 */
    tern_status st;
    char err[256];
} pack_job;

static void pack_tiles(void *arg, int task, int n_tasks)
{
    pack_job *j = arg;
    int64_t t0 = j->n_tiles * task / n_tasks, t1 = j->n_tiles * (task + 1) / n_tasks;
    int8_t *codes = j->c->host->alloc((size_t)j->K * 16, 64);
    char err[256] = "out of memory for row codes";
    tern_status st = codes ? TERN_OK : TERN_ENOMEM;
    for (int64_t t = t0; st == TERN_OK && t < t1 && !atomic_load(&j->failed); t++) {
        st = row_codes(j->src, 16 * t, 16, codes, err, sizeof err);
        uint8_t *out = j->data + (size_t)t * j->tile_bytes;
        int64_t rows = j->N - 16 * t < 16 ? j->N - 16 * t : 16;
        if (st != TERN_OK) break;
        if (j->fam == X86_FAM_MAD) pack_mad_tile(codes, j->K, rows, j->Kp, out);
        if (j->fam == X86_FAM_LUT) pack_lut_tile(codes, j->K, rows, j->Kp, out);
        if (j->fam == X86_FAM_BITSERIAL) pack_bitserial_tile(codes, j->K, rows, j->Kp, out);
        if (j->fam == X86_FAM_PLUGIN) j->v->repack(codes, j->K, rows, t, j->data);
    }
    j->c->host->free(codes);
    int none = 0;
    if (st != TERN_OK && atomic_compare_exchange_strong(&j->failed, &none, task + 1)) {
        j->st = st;
        snprintf(j->err, sizeof j->err, "%s", err);
    }
}

static tern_status repack_ternary(x86_ctx *c, const tern_tensor *src, tern_tensor *dst, char *err,
                                  size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    if (K <= 0 || N <= 0 || K >= (1 << 24) || N > ((int64_t)1 << 40)) {
        snprintf(err, errlen, "tensor '%s': bad shape %lld x %lld", name, (long long)K, (long long)N);
        return TERN_EINVAL;
    }
    tern_error e;
    float scale;
    if (tern_ternary_tensor_scale(src, &scale, &e) != TERN_OK) {
        snprintf(err, errlen, "%s", e.msg);
        return e.status;
    }
    const tern_kernel_variant *gv, *gm;
    int fam = c->kernel == X86_FAM_AUTO ? x86_auto_family(c->isa, K, N) : c->kernel;
    if (c->isa != X86_ISA_AVX512) fam = X86_FAM_MAD; /* the only AVX2 family */
    if (x86_kernels_choose(c, K, N, &gv, &gm)) fam = X86_FAM_PLUGIN;
    int64_t Kp = round_up(K, fam == X86_FAM_BITSERIAL ? 512 : 16), Np = round_up(N, 16);
    size_t bytes, tile_bytes = (size_t)Kp * 4;
    if (fam == X86_FAM_PLUGIN) {
        bytes = gv->packed_size(K, N);
        tile_bytes = bytes / (size_t)(Np / 16);
    }
    if ((fam == X86_FAM_PLUGIN && !bytes) || tern_mul_overflows((size_t)Np / 16, tile_bytes, &bytes)) {
        snprintf(err, errlen, "tensor '%s': too large", name);
        return TERN_EINVAL;
    }
    x86_tmat *m = c->host->alloc(sizeof *m, 64);
    uint8_t *data = c->host->alloc(bytes, 64);
    if (!m || !data) {
        c->host->free(m);
        c->host->free(data);
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    pack_job job = {.c = c, .src = src, .fam = fam, .v = fam == X86_FAM_PLUGIN ? gv : NULL, .K = K, .N = N, .Kp = Kp, .n_tiles = Np / 16,
                    .tile_bytes = tile_bytes, .data = data};
    int n_tasks = (int)(job.n_tiles < 64 ? job.n_tiles : 64);
    if (TERN_STRUCT_HAS(c->host, tern_host_api, parallel_for) && c->host->parallel_for)
        c->host->parallel_for(c->host, n_tasks, pack_tiles, &job);
    else
        for (int i = 0; i < n_tasks; i++) pack_tiles(&job, i, n_tasks);
    if (atomic_load(&job.failed)) {
        c->host->free(m);
        c->host->free(data);
        snprintf(err, errlen, "%s", job.err);
        return job.st;
    }
    *m = (x86_tmat){&x86_tmat_tag, fam, K, N, Kp, Np, fam == X86_FAM_PLUGIN ? gv : NULL,
                    fam == X86_FAM_PLUGIN ? gm : NULL};
    *dst = *src;
    dst->layout = TERN_LAYOUT_BACKEND;
    dst->owner = &x86_api;
    dst->data = data;
    dst->nb[1] = tile_bytes / 16; /* packed bytes per row */
    dst->nb[2] = dst->nb[1] * (size_t)N;
    dst->nb[3] = dst->nb[2];
    dst->scale = scale;
    dst->extra = m;
    c->n_family[fam]++;
    return TERN_OK;
}

/* Q8_0 rows into x86_q8mat tiles (x86.h): the same codes and f16 scales,
 * reordered, codes offset by 128 for vpdpbusd's unsigned operand. */
static tern_status repack_q8_0(x86_ctx *c, const tern_tensor *src, tern_tensor *dst, char *err,
                               size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src), Np = round_up(N, 16), nb = K / 32;
    size_t tile_bytes = (size_t)round_up(nb * 544, 64), bytes;
    if (K <= 0 || K % 32 || N <= 0 || src->ne[2] != 1 || src->ne[3] != 1 ||
        tern_mul_overflows(tile_bytes, (size_t)(Np / 16), &bytes)) {
        snprintf(err, errlen, "tensor '%s': bad Q8_0 shape", name);
        return TERN_EINVAL;
    }
    x86_q8mat *m = c->host->alloc(sizeof *m, 64);
    uint8_t *data = c->host->alloc(bytes, 64);
    if (!m || !data) {
        c->host->free(m), c->host->free(data);
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    memset(data, 0, bytes);
    for (int64_t i = 0; i < Np / 16; i++) {
        uint8_t *tile = data + (size_t)i * tile_bytes;
        uint16_t *scales = (uint16_t *)(tile + nb * 512);
        for (int r = 0; r < 16; r++) {
            const uint8_t *row = 16 * i + r < N ? (const uint8_t *)src->data + (size_t)(16 * i + r) * src->nb[1] : NULL;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row ? row + b * 34 : NULL;
                if (blk) memcpy(&scales[16 * b + r], blk, 2);
                for (int k = 0; k < 32; k++)
                    tile[b * 512 + 64 * (k / 4) + 4 * r + k % 4] = (uint8_t)((blk ? blk[2 + k] : 0) ^ 0x80);
            }
        }
    }
    *m = (x86_q8mat){&x86_q8mat_tag, K, N, Np, tile_bytes};
    c->n_q8mat++;
    *dst = *src;
    dst->layout = TERN_LAYOUT_BACKEND;
    dst->owner = &x86_api;
    dst->data = data;
    dst->extra = m;
    dst->name = src->name;
    return TERN_OK;
}

/* The q8 head (options.head = "q8"): a float head is quantized to Q8_0 at
 * load, as llama.cpp's quantizer writes Q8_0 (tern_quantize_q8_0), and is
 * then an ordinary Q8_0 weight: vnni tiles on AVX-512, the file-layout
 * Q8_0 rows on AVX2, the Q8_0 matmul's numerics either way. 1.06 bytes a
 * weight instead of 2 cuts an F16 head's decode traffic by 47%. Heads
 * whose K is not whole blocks of 32 stay as stored. */
static tern_status repack_head_q8(x86_ctx *c, const tern_tensor *src, tern_tensor *dst, char *err,
                                  size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    size_t row_bytes = (size_t)K / 32 * 34, bytes;
    if (K % 32 || src->ne[2] != 1 || src->ne[3] != 1) {
        c->n_head_f16++;
        *dst = *src;
        dst->extra = NULL;
        return TERN_OK;
    }
    if (K <= 0 || N <= 0 || tern_mul_overflows(row_bytes, (size_t)N, &bytes)) {
        snprintf(err, errlen, "tensor '%s': bad shape", name);
        return TERN_EINVAL;
    }
    uint8_t *q = c->host->alloc(bytes + 64, 64);
    float *row = c->host->alloc((size_t)K * sizeof(float), 64);
    if (!q || !row) {
        c->host->free(q), c->host->free(row);
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    for (int64_t n = 0; n < N; n++) {
        tern_error e;
        if (tern_dequantize_rows(src, n, 1, row, &e) != TERN_OK) {
            c->host->free(q), c->host->free(row);
            snprintf(err, errlen, "%s", e.msg);
            return e.status;
        }
        tern_quantize_q8_0(row, K, q + (size_t)n * row_bytes);
    }
    c->host->free(row);
    tern_tensor q8 = *src;
    tern_tensor_init(&q8, TERN_TYPE_Q8_0, 2, (int64_t[]){K, N});
    q8.data = q;
    q8.name = src->name;
    tern_status st = TERN_OK;
    if (c->isa == X86_ISA_AVX512) {
        st = repack_q8_0(c, &q8, dst, err, errlen);
        c->host->free(q);
    } else {
        *dst = q8;
        dst->owner = &x86_api;
        dst->extra = (void *)&x86_owned; /* ours to free */
    }
    if (st == TERN_OK) c->n_head_q8++;
    return st;
}

tern_status x86_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                       char *err, size_t errlen)
{
    x86_ctx *c = ctx;
    int t = src->type;
    if (src->layout != TERN_LAYOUT_FILE || src->buffer || !src->data) {
        snprintf(err, errlen, "tensor '%s': repack needs a host tensor in file layout",
                 src->name ? src->name : "?");
        return TERN_EINVAL;
    }
    if (purpose == TERN_REPACK_TERNARY &&
        (t == TERN_TYPE_TQ1_0 || t == TERN_TYPE_TQ2_0 || t == TERN_TYPE_I2_S))
        return repack_ternary(c, src, dst, err, errlen);
    int head = purpose == TERN_REPACK_HEAD;
    if ((purpose == TERN_REPACK_MATMUL || head) && tern_op_is_float_weight(t)) {
        /* Q8_0 is int8 already: its tiles serve a head as well as the int16
         * q8 head would, and batches better */
        if (t == TERN_TYPE_Q8_0 && c->isa == X86_ISA_AVX512) return repack_q8_0(c, src, dst, err, errlen);
        if (c->head_q8 && head) return repack_head_q8(c, src, dst, err, errlen);
        if (head) c->n_head_f16++;
        *dst = *src;
        dst->extra = NULL;
        return TERN_OK;
    }
    snprintf(err, errlen, "tensor '%s': x86 cannot repack type %s for %s",
             src->name ? src->name : "?", tern_type_name(t),
             purpose == TERN_REPACK_TERNARY ? "a ternary matmul" : "a matmul");
    return TERN_EUNSUPPORTED;
}

void x86_release(void *ctx, tern_tensor *t)
{
    x86_ctx *c = ctx;
    if (!t || !t->extra || t->owner != &x86_api) return; /* file layout: not ours */
    if (*(const void *const *)t->extra == &x86_tmat_tag) {
        c->n_family[((const x86_tmat *)t->extra)->family]--;
        c->host->free(t->data);
        c->host->free(t->extra);
    } else if (*(const void *const *)t->extra == &x86_q8mat_tag) {
        c->n_q8mat--;
        c->host->free(t->data);
        c->host->free(t->extra);
    } else if (*(const void *const *)t->extra == &x86_owned_tag) {
        c->host->free(t->data);
    } else {
        return;
    }
    t->data = NULL;
    t->extra = NULL;
}

size_t x86_tmm_scratch(const tern_node *node)
{
    const tern_tensor *x = node->src[0], *w = node->src[1];
    if (!x || !w || !w->extra) return 0;
    const x86_tmat *m = w->extra;
    size_t n_tok = (size_t)tern_tensor_nrows(x);
    if (m->family == X86_FAM_PLUGIN) {
        size_t a = m->gemv->scratch_size(m->K, (int64_t)n_tok), b = m->gemm->scratch_size(m->K, (int64_t)n_tok);
        return a > b ? a : b;
    }
    if (m->family == X86_FAM_BITSERIAL) return n_tok * (size_t)m->Kp; /* 8 bit planes */
    if (m->family == X86_FAM_LUT) {
        size_t tb = n_tok < X86_LUT_TOKENS ? n_tok : X86_LUT_TOKENS;
        return tb * (size_t)(m->Kp / 16) * 256 + 64; /* 4 tables of 64 B per block */
    }
    return 0;
}
