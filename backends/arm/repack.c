/* repack.c - the arm backend's weight placement and layouts (see arm.h):
 * ternary weights into the MAD or LUT tiles, the optional Q8_0 output
 * head, into memory of its own (repack) or the runtime's (repack_into, a
 * pack cache's mapping); the LUT tables of a token, and the ternary
 * kernels' scratch. Baseline AArch64: runs once at load (the tables once
 * per token block). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "tern/checked.h"
#include "arm.h"

const char arm_tmat_tag = 't';
const char arm_owned_tag = 'o';
/* extra of the q8 head: like an arm_tmat, it starts with a tag pointer */
static const void *const arm_owned = &arm_owned_tag;
const char *const arm_isa_names[ARM_ISA_COUNT] = {"?", "neon", "dotprod", "sve", "sve2"};
const char *const arm_family_names[ARM_FAM_COUNT] = {"auto", "mad", "lut", "generated"};

/* The built-in table behind kernel = "auto" (a table, not a timing at load,
 * so a model loads the same way every time). From the instruction counts in
 * backends/arm/README.md: MAD spends 16 sdot + 16 mask/shift per 256 weights
 * on NEON (about 8 + 8 at VL 512), LUT 16 tbl + about 16 adds and widenings
 * to stay exact, so MAD wherever sdot exists; LUT is the family for CPUs
 * without it (Cortex-A53/A72 class), where MAD would need smull chains. */
int arm_auto_family(int isa, int64_t K, int64_t N)
{
    (void)K, (void)N;
    return arm_tmm_pick(ARM_FAM_MAD, isa) ? ARM_FAM_MAD : ARM_FAM_LUT;
}

/* Tiers ascending within a family: arm_tmm_pick takes the last that fits. */
const arm_tmm_variant arm_tmm_variants[] = {
    {"mad-dotprod", ARM_FAM_MAD, ARM_ISA_DOTPROD, ARM_MAD_ROWS, 16, "neon sdot", arm_tmm_mad_dotprod},
    {"mad-sve", ARM_FAM_MAD, ARM_ISA_SVE, ARM_MAD_ROWS, 16, "sve sdot", arm_tmm_mad_sve},
    {"lut-neon", ARM_FAM_LUT, ARM_ISA_NEON, ARM_LUT_ROWS, 8, "neon tbl", arm_tmm_lut_neon},
    {"lut-sve2", ARM_FAM_LUT, ARM_ISA_SVE2, ARM_LUT_ROWS, 8, "sve2 tbl", arm_tmm_lut_sve2},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* 16-row tiles, K in blocks of 16 at most: what every generated layout
 * packs (its own packed_size says the bytes); run through the variant */
const arm_tmm_variant arm_tmm_plugin = {"plugin", ARM_FAM_PLUGIN, ARM_ISA_NEON, 16, 16, "generated", NULL};

const arm_tmm_variant *arm_tmm_pick(int family, int isa)
{
    const arm_tmm_variant *best = NULL;
    for (const arm_tmm_variant *v = arm_tmm_variants; v->name; v++)
        if (v->family == family && v->isa <= isa) best = v;
    return best;
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Weight (row r of the tile, k) in {-1,0,1} and whether it is inside the
 * matrix; codes holds the tile's rows, [rows][K]. */
static int code_at(const int8_t *codes, int64_t K, int64_t rows, int64_t r, int64_t k, int *in)
{
    *in = r < rows && k < K;
    return *in ? codes[r * K + k] : 0;
}

static void pack_mad_tile(const int8_t *codes, int64_t K, int64_t rows, int64_t Kp, uint8_t *out)
{
    for (int64_t kb = 0; kb < Kp / 16; kb++)
        for (int j = 0; j < 64; j++) {
            int g = j / 16, r = 4 * g + (j % 16) / 4, i = j % 4, in;
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
    for (int64_t kb = 0; kb < Kp / 4; kb++)
        for (int r = 0; r < ARM_LUT_ROWS; r++) {
            uint8_t b = 0;
            for (int h = 0; h < 2; h++) {
                int in, w0 = code_at(codes, K, rows, r, 4 * kb + 2 * h, &in);
                int w1 = code_at(codes, K, rows, r, 4 * kb + 2 * h + 1, &in);
                b |= (uint8_t)((3 * (w0 + 1) + (w1 + 1)) << (4 * h));
            }
            out[kb * 64 + r] = b;
        }
}

/* Runs fn over n_tasks on the runtime's threads where the host lends them
 * (host->parallel_for), else here one after the other. */
static void run_tasks(const tern_host_api *host, int n_tasks, tern_task_fn fn, void *arg)
{
    if (TERN_STRUCT_HAS(host, tern_host_api, parallel_for) && host->parallel_for)
        host->parallel_for(host, n_tasks, fn, arg);
    else
        for (int i = 0; i < n_tasks; i++) fn(arg, i, n_tasks);
}

/* What placing (src, purpose) makes, decided before any memory exists so
 * that the runtime can hand out the memory (repack_into: a cache file's
 * mapping) or we allocate it (repack). */
enum { PLAN_FILE, PLAN_TERNARY, PLAN_HEAD_Q8 };

typedef struct pack_plan {
    int kind;     /* PLAN_* */
    arm_tmat tmat; /* PLAN_TERNARY */
    size_t bytes; /* packed bytes (0 for PLAN_FILE) */
    float scale;  /* PLAN_TERNARY: the tensor's scale */
} pack_plan;

/* Bumped whenever a layout in arm.h changes: part of every layout line. */
#define ARM_LAYOUT_VERSION 1

static tern_status plan_ternary(arm_ctx *c, const tern_tensor *src, pack_plan *p, char *err,
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
    int fam = c->kernel == ARM_FAM_AUTO ? arm_auto_family(c->isa, K, N) : c->kernel;
    const arm_tmm_variant *v = arm_tmm_pick(fam, c->isa); /* init made sure there is one */
    const tern_kernel_variant *gv = NULL, *gm = NULL;
    if (tk_set_choose(&c->ks, K, N, &gv, &gm)) v = &arm_tmm_plugin;
    int64_t rows = v->rows, Kp = round_up(K, v->kalign), Np = round_up(N, rows);
    size_t tile_bytes = (size_t)Kp * (size_t)rows / 4;
    if (gv) {
        p->bytes = gv->packed_size(K, N);
        tile_bytes = p->bytes / (size_t)(Np / rows);
    }
    if ((gv && !p->bytes) || tern_mul_overflows((size_t)(Np / rows), tile_bytes, &p->bytes)) {
        snprintf(err, errlen, "tensor '%s': too large", name);
        return TERN_EINVAL;
    }
    p->kind = PLAN_TERNARY;
    p->tmat = (arm_tmat){&arm_tmat_tag, v, K, N, Kp, Np, tile_bytes, gv, gm, 0};
    return TERN_OK;
}

/* The q8 head (options.head = "q8"): a float head quantized to Q8_0 at
 * load as llama.cpp's quantizer writes it (tern_quantize_q8_0), then an
 * ordinary Q8_0 weight in file layout (+ 64 bytes: the kernels' loads may
 * run past the last row). Heads whose K is not whole blocks of 32 stay as
 * stored. */
static tern_status plan(arm_ctx *c, const tern_tensor *src, int purpose, pack_plan *p, char *err,
                        size_t errlen)
{
    int t = src->type, head = purpose == TERN_REPACK_HEAD;
    memset(p, 0, sizeof *p);
    if (src->layout != TERN_LAYOUT_FILE || src->buffer || !src->data) {
        snprintf(err, errlen, "tensor '%s': repack needs a host tensor in file layout",
                 src->name ? src->name : "?");
        return TERN_EINVAL;
    }
    if (purpose == TERN_REPACK_TERNARY && tern_type_get(t) && tern_type_get(t)->is_ternary)
        return plan_ternary(c, src, p, err, errlen);
    if ((purpose == TERN_REPACK_MATMUL || head) && tern_op_is_float_weight(t)) {
        p->kind = PLAN_FILE;
        int64_t K = src->ne[0], N = tern_tensor_nrows(src);
        if (!c->head_q8 || !head || !tern_head_q8_eligible(src)) return TERN_OK;
        if (N <= 0 || tern_mul_overflows((size_t)K / 32 * 34, (size_t)N, &p->bytes) ||
            tern_add_overflows(p->bytes, 64, &p->bytes)) {
            snprintf(err, errlen, "tensor '%s': bad shape", src->name ? src->name : "?");
            return TERN_EINVAL;
        }
        p->kind = PLAN_HEAD_Q8;
        return TERN_OK;
    }
    snprintf(err, errlen, "tensor '%s': arm cannot repack type %s for %s", src->name ? src->name : "?",
             tern_type_name(t),
             purpose == TERN_REPACK_TERNARY ? "a ternary matmul" : head ? "the output head" : "a matmul");
    return TERN_EUNSUPPORTED;
}

/* Both kinds are packed in parallel, a contiguous run of tiles (ternary) or
 * rows (the q8 head) per task; the first failure's message is kept. */
typedef struct pack_job {
    const tern_host_api *host;
    const tern_tensor *src;
    const pack_plan *p;
    uint8_t *data;
    atomic_int failed; /* first failure's task + 1 */
    tern_status st;
    char err[256];
} pack_job;

static void job_fail(pack_job *j, int task, tern_status st, const char *msg)
{
    int none = 0;
    if (atomic_compare_exchange_strong(&j->failed, &none, task + 1)) {
        j->st = st;
        snprintf(j->err, sizeof j->err, "%s", msg);
    }
}

static void pack_tiles(void *arg, int task, int n_tasks)
{
    pack_job *j = arg;
    const arm_tmat *m = &j->p->tmat;
    int64_t rows = m->v->rows, n_tiles = m->Np / rows;
    int64_t t0 = n_tiles * task / n_tasks, t1 = n_tiles * (task + 1) / n_tasks;
    int8_t *codes = j->host->alloc((size_t)m->K * (size_t)rows, 64);
    if (!codes) job_fail(j, task, TERN_ENOMEM, "out of memory for row codes");
    for (int64_t t = t0; codes && t < t1 && !atomic_load(&j->failed); t++) {
        int64_t n = m->N - rows * t < rows ? m->N - rows * t : rows;
        tern_error e;
        for (int64_t r = 0; r < n; r++)
            if (tern_ternary_row_codes(j->src, rows * t + r, codes + r * m->K, NULL, &e) != TERN_OK) {
                job_fail(j, task, e.status, e.msg);
                break;
            }
        uint8_t *out = j->data + (size_t)t * m->tile_bytes;
        if (m->gemv)
            m->gemv->repack(codes, m->K, n, t, j->data);
        else if (m->v->family == ARM_FAM_MAD)
            pack_mad_tile(codes, m->K, n, m->Kp, out);
        else
            pack_lut_tile(codes, m->K, n, m->Kp, out);
    }
    j->host->free(codes);
}

static void quantize_head_rows(void *arg, int task, int n_tasks)
{
    pack_job *j = arg;
    int64_t K = j->src->ne[0], N = tern_tensor_nrows(j->src);
    int64_t r0 = N * task / n_tasks, r1 = N * (task + 1) / n_tasks;
    float *row = j->host->alloc((size_t)K * sizeof(float), 64);
    if (!row) job_fail(j, task, TERN_ENOMEM, "out of memory quantizing the head");
    tern_error e;
    if (row && !atomic_load(&j->failed) &&
        tern_requantize_rows_q8_0(j->src, r0, r1 - r0, row, j->data + (size_t)r0 * ((size_t)K / 32 * 34), &e))
        job_fail(j, task, e.status, e.msg);
    j->host->free(row);
}

/* Builds *dst for a plan, the packed bytes at data (written when fill;
 * freed by release when owns). */
static tern_status place_planned(arm_ctx *c, const tern_tensor *src, int purpose, const pack_plan *p,
                                 void *data, int fill, int owns, tern_tensor *dst, char *err, size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    if (p->kind == PLAN_FILE) {
        if (purpose == TERN_REPACK_HEAD) c->n_head_f16++;
        *dst = *src;
        dst->extra = NULL;
        return TERN_OK;
    }
    if (fill) {
        pack_job job = {.host = c->host, .src = src, .p = p, .data = data};
        int64_t units = p->kind == PLAN_TERNARY ? p->tmat.Np / p->tmat.v->rows : tern_tensor_nrows(src);
        run_tasks(c->host, (int)(units < 64 ? units : 64), p->kind == PLAN_TERNARY ? pack_tiles : quantize_head_rows,
                  &job);
        if (atomic_load(&job.failed)) {
            snprintf(err, errlen, "tensor '%s': %s", name, job.err);
            return job.st;
        }
    }
    if (p->kind == PLAN_HEAD_Q8) {
        *dst = *src;
        tern_tensor_init(dst, TERN_TYPE_Q8_0, 2, (int64_t[]){src->ne[0], tern_tensor_nrows(src)});
        dst->owner = &arm_api;
        dst->data = data;
        dst->name = src->name;
        /* the layout is the file's; extra only says the bytes are ours to free */
        dst->extra = owns ? (void *)&arm_owned : NULL;
        c->n_head_q8++;
        return TERN_OK;
    }
    arm_tmat *m = c->host->alloc(sizeof *m, 64);
    if (!m) {
        snprintf(err, errlen, "tensor '%s': out of memory", name);
        return TERN_ENOMEM;
    }
    *m = p->tmat;
    m->owns_data = owns;
    *dst = *src;
    dst->layout = TERN_LAYOUT_BACKEND;
    dst->owner = &arm_api;
    dst->data = data;
    dst->nb[1] = m->tile_bytes / (size_t)m->v->rows; /* packed bytes per row */
    dst->nb[2] = dst->nb[1] * (size_t)m->N;
    dst->nb[3] = dst->nb[2];
    dst->scale = p->scale;
    dst->extra = m;
    c->n_family[m->v->family]++;
    return TERN_OK;
}

tern_status arm_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst, char *err,
                       size_t errlen)
{
    arm_ctx *c = ctx;
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

tern_status arm_repack_size(void *ctx, const tern_tensor *src, int purpose, size_t *bytes, char *layout,
                            size_t layout_len, char *err, size_t errlen)
{
    pack_plan p;
    tern_status st = plan(ctx, src, purpose, &p, err, errlen);
    if (st) return st;
    *bytes = p.bytes;
    if (p.kind == PLAN_TERNARY && p.tmat.gemv)
        snprintf(layout, layout_len, "arm layout %d: ternary %s [%s] k_block %d tile_rows %d, K %lld N %lld",
                 ARM_LAYOUT_VERSION, p.tmat.gemv->name, p.tmat.gemv->family, p.tmat.gemv->k_block,
                 p.tmat.gemv->tile_rows, (long long)p.tmat.K, (long long)p.tmat.N);
    else if (p.kind == PLAN_TERNARY)
        snprintf(layout, layout_len, "arm layout %d: ternary %s (%d-row tiles, K padded to %d), K %lld N %lld",
                 ARM_LAYOUT_VERSION, p.tmat.v->name, p.tmat.v->rows, p.tmat.v->kalign, (long long)p.tmat.K,
                 (long long)p.tmat.N);
    else
        snprintf(layout, layout_len, "arm layout %d: %s, K %lld N %lld", ARM_LAYOUT_VERSION,
                 p.kind == PLAN_HEAD_Q8 ? "q8 head rows" : "as stored", (long long)src->ne[0],
                 (long long)tern_tensor_nrows(src));
    return TERN_OK;
}

tern_status arm_repack_into(void *ctx, const tern_tensor *src, int purpose, void *data, int fill,
                            tern_tensor *dst, char *err, size_t errlen)
{
    pack_plan p;
    tern_status st = plan(ctx, src, purpose, &p, err, errlen);
    if (st) return st;
    if (p.bytes && !data) {
        snprintf(err, errlen, "tensor '%s': no memory given for %zu packed bytes", src->name ? src->name : "?",
                 p.bytes);
        return TERN_EINVAL;
    }
    return place_planned(ctx, src, purpose, &p, data, fill, 0, dst, err, errlen);
}

void arm_release(void *ctx, tern_tensor *t)
{
    arm_ctx *c = ctx;
    if (!t || !t->extra || t->owner != &arm_api) return; /* as stored, cache memory, or not ours */
    const void *tag = *(const void *const *)t->extra;
    if (tag == &arm_tmat_tag) {
        const arm_tmat *m = t->extra;
        c->n_family[m->v->family]--;
        if (m->owns_data) c->host->free(t->data);
        c->host->free(t->extra);
    } else if (tag == &arm_owned_tag) {
        c->host->free(t->data);
    } else {
        return;
    }
    t->data = NULL;
    t->extra = NULL;
}

/* TL and TH of one pair (see arm.h): entry c = 3 (w0 + 1) + (w1 + 1). */
void arm_lut_build(const arm_tok *x, int64_t K, int64_t Kp, int8_t *tables)
{
    for (int64_t p = 0; p < Kp / 2; p++) {
        int a0 = 2 * p < K ? x->q[2 * p] : 0, a1 = 2 * p + 1 < K ? x->q[2 * p + 1] : 0;
        int l0 = a0 & 15, l1 = a1 & 15, h0 = (a0 - l0) / 16, h1 = (a1 - l1) / 16;
        int8_t *tl = tables + p * ARM_LUT_PAIR_BYTES, *th = tl + 16;
        for (int c = 0; c < 16; c++) {
            int w0 = c / 3 - 1, w1 = c % 3 - 1;
            tl[c] = c < 9 ? (int8_t)(w0 * l0 + w1 * l1) : 0;
            th[c] = c < 9 ? (int8_t)(w0 * h0 + w1 * h1) : 0;
        }
    }
}

size_t arm_tmm_scratch(const tern_node *node)
{
    const tern_tensor *x = node->src[0], *w = node->src[1];
    if (!x || !w || !arm_tag_is(w, &arm_tmat_tag)) return 0;
    const arm_tmat *m = w->extra;
    if (m->gemv) return tk_matmul_scratch(m->gemv, m->gemm, m->K, tern_tensor_nrows(x));
    if (m->v->family != ARM_FAM_LUT) return 0;
    size_t n_tok = (size_t)tern_tensor_nrows(x), tb = n_tok < ARM_LUT_TOKENS ? n_tok : ARM_LUT_TOKENS;
    return tb * (size_t)(m->Kp / 2) * ARM_LUT_PAIR_BYTES + 64;
}
