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
    if (rows == 16 && K == Kp) { /* a whole tile: no bounds to check (most of a model) */
        for (int64_t kb = 0; kb < Kp / 16; kb++)
            for (int j = 0; j < 64; j++) {
                const int8_t *w = codes + (j / 4) * K + 16 * kb + j % 4;
                out[kb * 64 + j] = (uint8_t)((w[0] + 1) | (w[4] + 1) << 2 | (w[8] + 1) << 4 | (w[12] + 1) << 6);
            }
        return;
    }
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

/* What placing (src, purpose) makes, decided before any memory exists so
 * that the runtime can hand out the memory (repack_into: a cache file's
 * mapping) or we allocate it (repack). */
enum { PLAN_FILE, PLAN_TERNARY, PLAN_Q8_TILES, PLAN_HEAD_Q8_TILES, PLAN_HEAD_Q8_ROWS };

typedef struct pack_plan {
    int kind;          /* PLAN_* */
    x86_tmat tmat;     /* PLAN_TERNARY */
    x86_q8mat q8;      /* the q8 tile kinds */
    size_t bytes;      /* packed bytes (0 for PLAN_FILE) */
    size_t tile_bytes; /* PLAN_TERNARY: bytes per 16-row tile */
    float scale;       /* PLAN_TERNARY: the tensor's scale */
} pack_plan;

/* Bumped whenever a layout in x86.h changes: part of every layout line. */
#define X86_LAYOUT_VERSION 1

static tern_status plan_ternary(x86_ctx *c, const tern_tensor *src, pack_plan *p, char *err,
                                size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    if (K <= 0 || N <= 0 || K >= (1 << 24) || N > ((int64_t)1 << 40)) {
        snprintf(err, errlen, "tensor '%s': bad shape %lld x %lld", name, (long long)K, (long long)N);
        return TERN_EINVAL;
    }
    tern_error e;
    if (tern_ternary_tensor_scale(src, &p->scale, &e) != TERN_OK) {
        snprintf(err, errlen, "%s", e.msg);
        return e.status;
    }
    const tern_kernel_variant *gv, *gm;
    int fam = c->kernel == X86_FAM_AUTO ? x86_auto_family(c->isa, K, N) : c->kernel;
    if (c->isa != X86_ISA_AVX512) fam = X86_FAM_MAD; /* the only AVX2 family */
    if (tk_set_choose(&c->ks, K, N, &gv, &gm)) fam = X86_FAM_PLUGIN;
    int64_t Kp = round_up(K, fam == X86_FAM_BITSERIAL ? 512 : 16), Np = round_up(N, 16);
    size_t bytes = 0, tile_bytes = (size_t)Kp * 4;
    if (fam == X86_FAM_PLUGIN) {
        bytes = gv->packed_size(K, N);
        tile_bytes = bytes / (size_t)(Np / 16);
    }
    if ((fam == X86_FAM_PLUGIN && !bytes) || tern_mul_overflows((size_t)Np / 16, tile_bytes, &bytes)) {
        snprintf(err, errlen, "tensor '%s': too large", name);
        return TERN_EINVAL;
    }
    p->kind = PLAN_TERNARY;
    p->tmat = (x86_tmat){&x86_tmat_tag, fam, K, N, Kp, Np, fam == X86_FAM_PLUGIN ? gv : NULL,
                         fam == X86_FAM_PLUGIN ? gm : NULL, 0};
    p->bytes = bytes;
    p->tile_bytes = tile_bytes;
    return TERN_OK;
}

/* Q8_0 [K, N] as vnni tiles (x86_q8mat). */
static tern_status plan_q8_tiles(int kind, const tern_tensor *src, pack_plan *p, char *err, size_t errlen)
{
    int64_t K = src->ne[0], N = tern_tensor_nrows(src), Np = round_up(N, 16), nb = K / 32;
    size_t tile_bytes = (size_t)round_up(nb * 544, 64), bytes;
    if (K <= 0 || K % 32 || N <= 0 || src->ne[2] != 1 || src->ne[3] != 1 ||
        tern_mul_overflows(tile_bytes, (size_t)(Np / 16), &bytes)) {
        snprintf(err, errlen, "tensor '%s': bad Q8_0 shape", src->name ? src->name : "?");
        return TERN_EINVAL;
    }
    p->kind = kind;
    p->q8 = (x86_q8mat){&x86_q8mat_tag, K, N, Np, tile_bytes, 0};
    p->bytes = bytes;
    return TERN_OK;
}

/* The q8 head (options.head = "q8"): a float head is quantized to Q8_0 at
 * load, as llama.cpp's quantizer writes Q8_0 (tern_quantize_q8_0), and is
 * then an ordinary Q8_0 weight: vnni tiles on AVX-512, the file-layout
 * Q8_0 rows on AVX2, the Q8_0 matmul's numerics either way. 1.06 bytes a
 * weight instead of 2 cuts an F16 head's decode traffic by 47%. Heads
 * whose K is not whole blocks of 32 stay as stored. */
static tern_status plan(x86_ctx *c, const tern_tensor *src, int purpose, pack_plan *p, char *err,
                        size_t errlen)
{
    int t = src->type, head = purpose == TERN_REPACK_HEAD;
    memset(p, 0, sizeof *p);
    if (src->layout != TERN_LAYOUT_FILE || src->buffer || !src->data) {
        snprintf(err, errlen, "tensor '%s': repack needs a host tensor in file layout",
                 src->name ? src->name : "?");
        return TERN_EINVAL;
    }
    if (purpose == TERN_REPACK_TERNARY &&
        (t == TERN_TYPE_TQ1_0 || t == TERN_TYPE_TQ2_0 || t == TERN_TYPE_I2_S))
        return plan_ternary(c, src, p, err, errlen);
    if ((purpose == TERN_REPACK_MATMUL || head) && tern_op_is_float_weight(t)) {
        /* Q8_0 is int8 already: its tiles serve a head as well as the int16
         * q8 head would, and batches better */
        if (t == TERN_TYPE_Q8_0 && c->isa == X86_ISA_AVX512)
            return plan_q8_tiles(PLAN_Q8_TILES, src, p, err, errlen);
        if (c->head_q8 && head && tern_head_q8_eligible(src)) {
            int64_t K = src->ne[0], N = tern_tensor_nrows(src);
            if (c->isa == X86_ISA_AVX512) return plan_q8_tiles(PLAN_HEAD_Q8_TILES, src, p, err, errlen);
            /* + 64: the AVX2 Q8_0 kernel's loads may run past the last row */
            if (K <= 0 || N <= 0 || tern_mul_overflows((size_t)K / 32 * 34, (size_t)N, &p->bytes) ||
                tern_add_overflows(p->bytes, 64, &p->bytes)) {
                snprintf(err, errlen, "tensor '%s': bad shape", src->name ? src->name : "?");
                return TERN_EINVAL;
            }
            p->kind = PLAN_HEAD_Q8_ROWS;
            return TERN_OK;
        }
        p->kind = PLAN_FILE;
        return TERN_OK;
    }
    snprintf(err, errlen, "tensor '%s': x86 cannot repack type %s for %s",
             src->name ? src->name : "?", tern_type_name(t),
             purpose == TERN_REPACK_TERNARY ? "a ternary matmul" : "a matmul");
    return TERN_EUNSUPPORTED;
}

/* Runs fn over n_tasks on the runtime's threads (all of them at load). */
static void run_tasks(const x86_ctx *c, int n_tasks, void (*fn)(void *, int, int), void *arg)
{
    if (TERN_STRUCT_HAS(c->host, tern_host_api, parallel_for) && c->host->parallel_for)
        c->host->parallel_for(c->host, n_tasks, fn, arg);
    else
        for (int i = 0; i < n_tasks; i++) fn(arg, i, n_tasks);
}

static tern_status fill_ternary(x86_ctx *c, const tern_tensor *src, const pack_plan *p, uint8_t *data,
                                char *err, size_t errlen)
{
    const x86_tmat *m = &p->tmat;
    pack_job job = {.c = c, .src = src, .fam = m->family, .v = m->gemv, .K = m->K, .N = m->N,
                    .Kp = m->Kp, .n_tiles = m->Np / 16, .tile_bytes = p->tile_bytes, .data = data};
    run_tasks(c, (int)(job.n_tiles < 64 ? job.n_tiles : 64), pack_tiles, &job);
    if (atomic_load(&job.failed)) {
        snprintf(err, errlen, "%s", job.err);
        return job.st;
    }
    return TERN_OK;
}

/* Tile `tile` of an x86_q8mat from Q8_0 rows (row r at rows + r * stride;
 * rows past N are padding). */
static void pack_q8_tile(const x86_q8mat *m, int64_t tile, const uint8_t *rows, size_t stride, uint8_t *out)
{
    int64_t nb = m->K / 32;
    uint16_t *scales = (uint16_t *)(out + nb * 512);
    memset(out, 0, m->tile_bytes);
    for (int r = 0; r < 16; r++) {
        const uint8_t *row = 16 * tile + r < m->N ? rows + (size_t)r * stride : NULL;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row ? row + b * 34 : NULL;
            if (blk) memcpy(&scales[16 * b + r], blk, 2);
            for (int k = 0; k < 32; k++)
                out[b * 512 + 64 * (k / 4) + 4 * r + k % 4] = (uint8_t)((blk ? blk[2 + k] : 0) ^ 0x80);
        }
    }
}

/* The q8 kinds, a contiguous run of 16-row groups per task: Q8_0 file
 * rows into tiles, or a float head quantized (into tiles or Q8_0 rows). */
typedef struct q8_job {
    const x86_ctx *c;
    const tern_tensor *src;
    const pack_plan *p;
    uint8_t *data;
    atomic_int failed;
    char err[256];
} q8_job;

static void q8_tasks(void *arg, int task, int n_tasks)
{
    q8_job *j = arg;
    const pack_plan *p = j->p;
    int64_t K = j->src->ne[0], N = tern_tensor_nrows(j->src), groups = (N + 15) / 16;
    int64_t g0 = groups * task / n_tasks, g1 = groups * (task + 1) / n_tasks;
    size_t row_bytes = (size_t)K / 32 * 34;
    int quantize = p->kind != PLAN_Q8_TILES;
    uint8_t *q = quantize && p->kind == PLAN_HEAD_Q8_TILES ? j->c->host->alloc(16 * row_bytes, 64) : NULL;
    float *row = quantize ? j->c->host->alloc((size_t)K * sizeof(float), 64) : NULL;
    if (quantize && (!row || (p->kind == PLAN_HEAD_Q8_TILES && !q))) {
        if (!atomic_exchange(&j->failed, 1)) snprintf(j->err, sizeof j->err, "out of memory quantizing the head");
        g1 = g0;
    }
    for (int64_t g = g0; g < g1 && !atomic_load(&j->failed); g++) {
        if (!quantize) {
            const uint8_t *rows = (const uint8_t *)j->src->data + (size_t)(16 * g) * j->src->nb[1];
            pack_q8_tile(&p->q8, g, rows, j->src->nb[1], j->data + (size_t)g * p->q8.tile_bytes);
            continue;
        }
        /* quantized rows: into the group's own Q8_0 rows, or a tile's temporary */
        uint8_t *out = p->kind == PLAN_HEAD_Q8_ROWS ? j->data + (size_t)(16 * g) * row_bytes : q;
        tern_error e;
        int64_t rows = N - 16 * g < 16 ? N - 16 * g : 16;
        if (tern_requantize_rows_q8_0(j->src, 16 * g, rows, row, out, &e)) {
            if (!atomic_exchange(&j->failed, 1)) snprintf(j->err, sizeof j->err, "%s", e.msg);
            break;
        }
        if (p->kind == PLAN_HEAD_Q8_TILES)
            pack_q8_tile(&p->q8, g, q, row_bytes, j->data + (size_t)g * p->q8.tile_bytes);
    }
    j->c->host->free(q);
    j->c->host->free(row);
}

/* Builds *dst for a plan, the packed bytes at data (written when fill). */
static tern_status place_planned(x86_ctx *c, const tern_tensor *src, int purpose, pack_plan *p,
                                 void *data, int fill, int owns, tern_tensor *dst, char *err, size_t errlen)
{
    tern_status st = TERN_OK;
    if (p->kind == PLAN_FILE) {
        if (purpose == TERN_REPACK_HEAD) c->n_head_f16++;
        *dst = *src;
        dst->extra = NULL;
        return TERN_OK;
    }
    if (fill && p->kind == PLAN_TERNARY) st = fill_ternary(c, src, p, data, err, errlen);
    if (fill && p->kind != PLAN_TERNARY) {
        q8_job job = {.c = c, .src = src, .p = p, .data = data};
        int64_t groups = (tern_tensor_nrows(src) + 15) / 16;
        run_tasks(c, (int)(groups < 64 ? groups : 64), q8_tasks, &job);
        if (atomic_load(&job.failed)) {
            snprintf(err, errlen, "tensor '%s': %s", src->name ? src->name : "?", job.err);
            st = TERN_ENOMEM;
        }
    }
    void *extra = NULL;
    if (!st && p->kind == PLAN_TERNARY && (extra = c->host->alloc(sizeof(x86_tmat), 64)))
        *(x86_tmat *)extra = p->tmat, ((x86_tmat *)extra)->owns_data = owns;
    if (!st && (p->kind == PLAN_Q8_TILES || p->kind == PLAN_HEAD_Q8_TILES) &&
        (extra = c->host->alloc(sizeof(x86_q8mat), 64)))
        *(x86_q8mat *)extra = p->q8, ((x86_q8mat *)extra)->owns_data = owns;
    if (p->kind == PLAN_HEAD_Q8_ROWS) extra = owns ? (void *)&x86_owned : NULL;
    if (!st && !extra && p->kind != PLAN_HEAD_Q8_ROWS) {
        snprintf(err, errlen, "tensor '%s': out of memory", src->name ? src->name : "?");
        st = TERN_ENOMEM;
    }
    if (st) return st;
    *dst = *src;
    dst->owner = &x86_api;
    dst->data = data;
    dst->extra = extra;
    if (p->kind == PLAN_TERNARY) {
        dst->layout = TERN_LAYOUT_BACKEND;
        dst->nb[1] = p->tile_bytes / 16; /* packed bytes per row */
        dst->nb[2] = dst->nb[1] * (size_t)p->tmat.N;
        dst->nb[3] = dst->nb[2];
        dst->scale = p->scale;
        c->n_family[p->tmat.family]++;
    } else if (p->kind == PLAN_HEAD_Q8_ROWS) {
        tern_tensor_init(dst, TERN_TYPE_Q8_0, 2, (int64_t[]){src->ne[0], tern_tensor_nrows(src)});
        dst->owner = &x86_api;
        dst->data = data;
        dst->extra = extra;
        dst->name = src->name;
    } else {
        if (p->kind == PLAN_HEAD_Q8_TILES)
            tern_tensor_init(dst, TERN_TYPE_Q8_0, 2, (int64_t[]){src->ne[0], tern_tensor_nrows(src)});
        dst->layout = TERN_LAYOUT_BACKEND;
        dst->owner = &x86_api;
        dst->data = data;
        dst->extra = extra;
        dst->name = src->name;
        c->n_q8mat++;
    }
    if (p->kind == PLAN_HEAD_Q8_TILES || p->kind == PLAN_HEAD_Q8_ROWS) c->n_head_q8++;
    return TERN_OK;
}

tern_status x86_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                       char *err, size_t errlen)
{
    x86_ctx *c = ctx;
    pack_plan p;
    tern_status st = plan(c, src, purpose, &p, err, errlen);
    if (st) return st;
    void *data = p.bytes ? c->host->alloc(p.bytes, 64) : NULL;
    if (p.bytes && !data) {
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", src->name ? src->name : "?",
                 p.bytes);
        return TERN_ENOMEM;
    }
    st = place_planned(c, src, purpose, &p, data, 1, 1, dst, err, errlen);
    if (st) c->host->free(data);
    return st;
}

tern_status x86_repack_size(void *ctx, const tern_tensor *src, int purpose, size_t *bytes,
                            char *layout, size_t layout_len, char *err, size_t errlen)
{
    x86_ctx *c = ctx;
    pack_plan p;
    tern_status st = plan(c, src, purpose, &p, err, errlen);
    if (st) return st;
    *bytes = p.bytes;
    const x86_tmat *m = &p.tmat;
    if (p.kind == PLAN_TERNARY && m->family == X86_FAM_PLUGIN)
        snprintf(layout, layout_len, "x86 layout %d: ternary %s [%s] k_block %d tile_rows %d, K %lld N %lld",
                 X86_LAYOUT_VERSION, m->gemv->name, m->gemv->family, m->gemv->k_block, m->gemv->tile_rows,
                 (long long)m->K, (long long)m->N);
    else if (p.kind == PLAN_TERNARY)
        snprintf(layout, layout_len, "x86 layout %d: ternary %s, K %lld N %lld", X86_LAYOUT_VERSION,
                 x86_family_names[m->family], (long long)m->K, (long long)m->N);
    else
        snprintf(layout, layout_len, "x86 layout %d: %s, K %lld N %lld", X86_LAYOUT_VERSION,
                 p.kind == PLAN_Q8_TILES ? "q8_0 tiles" : p.kind == PLAN_HEAD_Q8_TILES ? "q8 head tiles"
                 : p.kind == PLAN_HEAD_Q8_ROWS ? "q8 head rows" : "as stored",
                 (long long)src->ne[0], (long long)tern_tensor_nrows(src));
    return TERN_OK;
}

tern_status x86_repack_into(void *ctx, const tern_tensor *src, int purpose, void *data, int fill,
                            tern_tensor *dst, char *err, size_t errlen)
{
    x86_ctx *c = ctx;
    pack_plan p;
    tern_status st = plan(c, src, purpose, &p, err, errlen);
    if (st) return st;
    if (p.bytes && !data) {
        snprintf(err, errlen, "tensor '%s': no memory given for %zu packed bytes", src->name ? src->name : "?",
                 p.bytes);
        return TERN_EINVAL;
    }
    return place_planned(c, src, purpose, &p, data, fill, 0, dst, err, errlen);
}

void x86_release(void *ctx, tern_tensor *t)
{
    x86_ctx *c = ctx;
    if (!t || !t->extra || t->owner != &x86_api) return; /* file layout, or data not ours */
    if (*(const void *const *)t->extra == &x86_tmat_tag) {
        const x86_tmat *m = t->extra;
        c->n_family[m->family]--;
        if (m->owns_data) c->host->free(t->data);
        c->host->free(t->extra);
    } else if (*(const void *const *)t->extra == &x86_q8mat_tag) {
        c->n_q8mat--;
        if (((const x86_q8mat *)t->extra)->owns_data) c->host->free(t->data);
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
    if (m->family == X86_FAM_PLUGIN) return tk_matmul_scratch(m->gemv, m->gemm, m->K, (int64_t)n_tok);
    if (m->family == X86_FAM_BITSERIAL) return n_tok * (size_t)m->Kp; /* 8 bit planes */
    if (m->family == X86_FAM_LUT) {
        size_t tb = n_tok < X86_LUT_TOKENS ? n_tok : X86_LUT_TOKENS;
        return tb * (size_t)(m->Kp / 16) * 256 + 64; /* 4 tables of 64 B per block */
    }
    return 0;
}
