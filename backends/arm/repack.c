/* repack.c - the arm backend's weight layouts (see arm.h): ternary weights
 * into the MAD or LUT tiles, the optional Q8_0 output head, the LUT tables
 * of a token, and the ternary kernels' scratch. Baseline AArch64: runs once
 * at load (the tables once per token block). */
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
const char *const arm_family_names[ARM_FAM_COUNT] = {"auto", "mad", "lut"};

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

/* Tiles are packed in parallel (host->parallel_for: the runtime's threads),
 * a contiguous run of tiles per task, each with its own row codes. */
typedef struct pack_job {
    const tern_host_api *host;
    const arm_tmm_variant *v;
    const tern_tensor *src;
    int64_t K, N, Kp, n_tiles;
    size_t tile_bytes;
    uint8_t *data;
    atomic_int failed; /* first failure's task + 1 */
    tern_status st;
    char err[256];
} pack_job;

static void pack_tiles(void *arg, int task, int n_tasks)
{
    pack_job *j = arg;
    int64_t rows = j->v->rows, t0 = j->n_tiles * task / n_tasks, t1 = j->n_tiles * (task + 1) / n_tasks;
    int8_t *codes = j->host->alloc((size_t)j->K * (size_t)rows, 64);
    char err[256] = "out of memory for row codes";
    tern_status st = codes ? TERN_OK : TERN_ENOMEM;
    for (int64_t t = t0; st == TERN_OK && t < t1 && !atomic_load(&j->failed); t++) {
        int64_t n = j->N - rows * t < rows ? j->N - rows * t : rows;
        tern_error e;
        for (int64_t r = 0; r < n && st == TERN_OK; r++)
            if (tern_ternary_row_codes(j->src, rows * t + r, codes + r * j->K, NULL, &e) != TERN_OK) {
                snprintf(err, sizeof err, "%s", e.msg);
                st = e.status;
            }
        if (st != TERN_OK) break;
        uint8_t *out = j->data + (size_t)t * j->tile_bytes;
        if (j->v->family == ARM_FAM_MAD)
            pack_mad_tile(codes, j->K, n, j->Kp, out);
        else
            pack_lut_tile(codes, j->K, n, j->Kp, out);
    }
    j->host->free(codes);
    int none = 0;
    if (st != TERN_OK && atomic_compare_exchange_strong(&j->failed, &none, task + 1)) {
        j->st = st;
        snprintf(j->err, sizeof j->err, "%s", err);
    }
}

tern_status arm_repack_ternary(const tern_host_api *host, const arm_tmm_variant *v, const tern_tensor *src,
                               tern_tensor *dst, char *err, size_t errlen)
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
    int64_t rows = v->rows, Kp = round_up(K, v->kalign), Np = round_up(N, rows);
    size_t bytes, tile_bytes = (size_t)Kp * (size_t)rows / 4;
    if (tern_mul_overflows((size_t)(Np / rows), tile_bytes, &bytes)) {
        snprintf(err, errlen, "tensor '%s': too large", name);
        return TERN_EINVAL;
    }
    arm_tmat *m = host->alloc(sizeof *m, 64);
    uint8_t *data = host->alloc(bytes, 64);
    if (!m || !data) {
        host->free(m);
        host->free(data);
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    pack_job job = {.host = host, .v = v, .src = src, .K = K, .N = N, .Kp = Kp, .n_tiles = Np / rows,
                    .tile_bytes = tile_bytes, .data = data};
    int n_tasks = (int)(job.n_tiles < 64 ? job.n_tiles : 64);
    if (TERN_STRUCT_HAS(host, tern_host_api, parallel_for) && host->parallel_for)
        host->parallel_for(host, n_tasks, pack_tiles, &job);
    else
        for (int i = 0; i < n_tasks; i++) pack_tiles(&job, i, n_tasks);
    if (atomic_load(&job.failed)) {
        host->free(m);
        host->free(data);
        snprintf(err, errlen, "%s", job.err);
        return job.st;
    }
    *m = (arm_tmat){&arm_tmat_tag, v, K, N, Kp, Np, tile_bytes};
    *dst = *src;
    dst->layout = TERN_LAYOUT_BACKEND;
    dst->owner = &arm_api;
    dst->data = data;
    dst->nb[1] = (size_t)Kp / 4; /* packed bytes per row */
    dst->nb[2] = dst->nb[1] * (size_t)N;
    dst->nb[3] = dst->nb[2];
    dst->scale = scale;
    dst->extra = m;
    return TERN_OK;
}

tern_status arm_repack_head_q8(const tern_host_api *host, const tern_tensor *src, tern_tensor *dst,
                               char *err, size_t errlen)
{
    const char *name = src->name ? src->name : "?";
    int64_t K = src->ne[0], N = tern_tensor_nrows(src);
    size_t row_bytes = (size_t)K / 32 * 34, bytes;
    if (K <= 0 || K % 32 || src->ne[2] != 1 || src->ne[3] != 1) return TERN_EUNSUPPORTED;
    if (N <= 0 || tern_mul_overflows(row_bytes, (size_t)N, &bytes)) {
        snprintf(err, errlen, "tensor '%s': bad shape", name);
        return TERN_EINVAL;
    }
    uint8_t *q = host->alloc(bytes + 64, 64);
    float *row = host->alloc((size_t)K * sizeof(float), 64);
    if (!q || !row) {
        host->free(q), host->free(row);
        snprintf(err, errlen, "tensor '%s': out of memory repacking %zu bytes", name, bytes);
        return TERN_ENOMEM;
    }
    for (int64_t n = 0; n < N; n++) {
        tern_error e;
        if (tern_dequantize_rows(src, n, 1, row, &e) != TERN_OK) {
            host->free(q), host->free(row);
            snprintf(err, errlen, "%s", e.msg);
            return e.status;
        }
        tern_quantize_q8_0(row, K, q + (size_t)n * row_bytes);
    }
    host->free(row);
    *dst = *src;
    tern_tensor_init(dst, TERN_TYPE_Q8_0, 2, (int64_t[]){K, N});
    dst->data = q;
    dst->name = src->name;
    dst->owner = &arm_api;
    dst->extra = (void *)&arm_owned; /* ours to free; the layout is the file's */
    return TERN_OK;
}

int arm_release_tensor(const tern_host_api *host, tern_tensor *t)
{
    if (!t || !t->extra || t->owner != &arm_api) return -1; /* as stored, or not ours */
    int fam;
    const void *tag = *(const void *const *)t->extra;
    if (tag == &arm_owned_tag) {
        fam = 0;
    } else if (tag == &arm_tmat_tag) {
        fam = ((const arm_tmat *)t->extra)->v->family;
        host->free(t->extra);
    } else {
        return -1;
    }
    host->free(t->data);
    t->data = NULL;
    t->extra = NULL;
    return fam;
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
    if (m->v->family != ARM_FAM_LUT) return 0;
    size_t n_tok = (size_t)tern_tensor_nrows(x), tb = n_tok < ARM_LUT_TOKENS ? n_tok : ARM_LUT_TOKENS;
    return tb * (size_t)(m->Kp / 2) * ARM_LUT_PAIR_BYTES + 64;
}
