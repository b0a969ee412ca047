/* cmd_tune.c - `tern tune -m MODEL [-t N] [--patience estimate|measure|
 * exhaustive] [--time-limit S]`: the autotuner. For every distinct ternary
 * weight shape of the model it generates kernel variants (codegen/gen.lua,
 * embedded), compiles them with $CC into one plugin, checks each against
 * scalar on that shape, times GEMV (one token), a small batch (4 tokens:
 * a server's busy slots, a speculative verify) and a 128-token GEMM with
 * the real thread count (interleaved repetitions, median), and writes the
 * winners to the cache folder ($TERN_CACHE_DIR, $XDG_CACHE_HOME/tern or
 * ~/.cache/tern): wisdom.lua plus tern-kernels-tuned.so. The next tern
 * run/bench reads them (the x86 backend); no rebuild.
 *
 * Every candidate runs through the x86 backend itself (options.kernel
 * names it; TERN_KERNELS_PLUGIN points the backend at the fresh plugin), so
 * what is timed and checked is exactly what a run will execute. */
#include <dlfcn.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "embedded_codegen.h"
#include "tern/backend.h"
#include "tern/gguf.h"
#include "tern/kernels.h"
#include "tern/plugin.h"
#include "tern/quant.h"
#include "tern/threadpool.h"
#include "wisdom.h"

#define MAX_CAND 96
#define MAX_REPS 15

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
    int64_t K, N;
    int count; /* tensors of this shape */
} shape;

/* Distinct [K, N] of the model's ternary tensors, in file order. */
static int model_shapes(const char *path, shape *out, int max, tern_error *err)
{
    tern_gguf *g;
    if (tern_gguf_open(path, &g, err) != TERN_OK) return -1;
    int n = 0;
    for (int64_t i = 0; i < tern_gguf_n_tensors(g); i++) {
        const tern_gguf_tensor *ti = tern_gguf_tensor_at(g, i);
        if (!ti || (ti->type != TERN_TYPE_TQ1_0 && ti->type != TERN_TYPE_TQ2_0 && ti->type != TERN_TYPE_I2_S)) continue;
        int64_t K = ti->ne[0], N = 1;
        for (int d = 1; d < ti->n_dims; d++) N *= ti->ne[d];
        int j = 0;
        while (j < n && (out[j].K != K || out[j].N != N)) j++;
        if (j == n && n < max) out[n++] = (shape){K, N, 0};
        if (j < n) out[j].count++;
    }
    tern_gguf_close(g);
    return n;
}

/* ---- generating and compiling the candidates ---- */

static int write_file(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(text, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

static int mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

/* Runs the embedded generator on record -> out_c. */
static int generate(const char *record, const char *out_c, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (!L) return snprintf(err, errlen, "out of memory"), -1;
    luaL_openlibs(L);
    lua_createtable(L, 2, 1);
    lua_pushstring(L, "codegen/gen.lua");
    lua_rawseti(L, -2, 0);
    lua_pushstring(L, record);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, out_c);
    lua_rawseti(L, -2, 2);
    lua_setglobal(L, "arg");
    int rc = luaL_loadbufferx(L, tern_embedded_gen_lua, strlen(tern_embedded_gen_lua), "@codegen/gen.lua", "t") ||
             lua_pcall(L, 0, 0, 0);
    if (rc) snprintf(err, errlen, "generator: %s", lua_tostring(L, -1));
    lua_close(L);
    return rc ? -1 : 0;
}

typedef struct target {
    const char *isa, *cflags;
} target;

static target host_target(uint64_t f)
{
    uint64_t avx2 = TERN_CPU_AVX2 | TERN_CPU_FMA | TERN_CPU_F16C;
    uint64_t avx512 = avx2 | TERN_CPU_AVX512F | TERN_CPU_AVX512BW | TERN_CPU_AVX512VL | TERN_CPU_AVX512VNNI |
                      TERN_CPU_AVX512VBMI;
    if ((f & avx512) == avx512)
        return (target){"avx512", "-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi"};
    if ((f & avx2) == avx2) return (target){"avx2", "-mavx2 -mfma -mf16c"};
    return (target){NULL, NULL};
}

/* Generates and compiles the tuning grid into dir/tern-kernels-tuned.so;
 * 0 on success, else -1 with why (no compiler, failed build). */
static int build_candidates(const char *dir, target tg, const char *patience, char *so, size_t so_len, char *err,
                            size_t errlen)
{
    char inc[4200], rec[4200], c_file[4200], cmd[16384];
    snprintf(inc, sizeof inc, "%s/build/tern", dir);
    if (mkdirs(inc)) return snprintf(err, errlen, "cannot create %s", inc), -1;
    snprintf(inc, sizeof inc, "%s/build/tern/kernels.h", dir);
    snprintf(rec, sizeof rec, "%s/build/tuned.lua", dir);
    snprintf(c_file, sizeof c_file, "%s/build/tern-kernels-tuned.c", dir);
    snprintf(so, so_len, "%s/build/tern-kernels-tuned.so", dir);
    char text[512];
    int n = snprintf(text, sizeof text,
                     "-- written by tern tune: the %s grid of isa %s\nreturn { target = \"tuned\", isa = \"%s\", "
                     "grid = \"%s\", variants = {}, choices = {} }\n",
                     patience, tg.isa, tg.isa, patience);
    if (write_file(inc, tern_embedded_kernels_h, strlen(tern_embedded_kernels_h)) ||
        write_file(rec, text, (size_t)n))
        return snprintf(err, errlen, "cannot write into %s/build", dir), -1;
    if (generate(rec, c_file, err, errlen)) return -1;
    const char *cc = getenv("CC");
    if (!cc || !*cc) cc = "cc";
    snprintf(cmd, sizeof cmd, "command -v '%s' >/dev/null 2>&1", cc);
    if (system(cmd) != 0) return snprintf(err, errlen, "no C compiler ('%s' not found)", cc), -1;
    snprintf(cmd, sizeof cmd,
             "'%s' -std=c11 -O2 -fPIC -shared -fvisibility=hidden -Wl,-z,defs %s -mtune=native -I'%s/build' "
             "-o '%s' '%s' 2>'%s/build/cc.log'",
             cc, tg.cflags, dir, so, c_file, dir);
    if (system(cmd) != 0) return snprintf(err, errlen, "%s failed (see %s/build/cc.log)", cc, dir), -1;
    return 0;
}

/* ---- running a candidate through a backend ---- */

typedef struct cand {
    char name[TW_NAME];  /* variant name, or the built-in family */
    char family[32];
    int builtin;         /* a built-in family of the x86 backend */
    int layout;          /* TERN_KLAYOUT_*, -1 for built-ins */
    int tokens;          /* generated: tokens a step (1 = a GEMV variant) */
    tern_backend *be;
    tern_tensor w;       /* repacked */
    int ok;              /* matched scalar */
    /* per rep: one token, a small batch (SMALL_BATCH tokens), 128 tokens */
    double gemv[MAX_REPS], gemm[MAX_REPS], small[MAX_REPS];
    int n_gemv, n_gemm, n_small;
} cand;

/* The small batch tune times besides decode and prefill: a server's few
 * busy slots or a speculative verify evaluate 2..8 tokens a step, and the
 * GEMM variant that wins at 128 tokens can cost far more there. */
#define SMALL_BATCH 4

typedef struct run_job {
    tern_op_fn op;
    void *ctx;
    tern_node node;
    uint8_t *scratch;
    size_t scratch_each;
} run_job;

static void run_fn(void *arg, int ith, int nth)
{
    run_job *j = arg;
    j->op(j->ctx, &j->node, ith, nth, j->scratch + (size_t)ith * j->scratch_each);
}

/* dst = x (Q8_TOK [K, T]) times the candidate's weight, on nth threads. */
static void run_node(tern_threadpool *pool, int nth, tern_backend *be, const tern_tensor *w, const tern_tensor *x,
                     tern_tensor *dst, uint8_t *scratch, size_t scratch_cap)
{
    run_job j = {tern_backend_op(be, TERN_OP_MATMUL_TERNARY), be->ctx, {0}, scratch, 0};
    j.node.op = TERN_OP_MATMUL_TERNARY;
    j.node.dst = dst;
    j.node.src[0] = x;
    j.node.src[1] = w;
    size_t s = be->api->scratch_size ? be->api->scratch_size(be->ctx, &j.node, nth) : 0;
    j.scratch_each = (s + 63) / 64 * 64;
    if (j.scratch_each * (size_t)nth > scratch_cap) return; /* cannot happen: sized for the largest */
    tern_threadpool_run_n(pool, nth, run_fn, &j);
}

static void q8tok_fill(tern_tensor *x, unsigned long long *rng)
{
    int64_t K = x->ne[0];
    for (int64_t t = 0; t < x->ne[1]; t++) {
        uint8_t *row = (uint8_t *)x->data + (size_t)t * x->nb[1];
        int8_t *q = (int8_t *)(row + TERN_Q8TOK_HEADER);
        int32_t sum = 0;
        for (int64_t k = 0; k < K; k++) {
            *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
            q[k] = (int8_t)((int)((*rng >> 33) % 255) - 127);
            sum += q[k];
        }
        tern_q8tok_header h = {0};
        h.inv = 1.37f + (float)t;
        h.sum = sum;
        memcpy(row, &h, sizeof h);
    }
}

static tern_status alloc_tensor(tern_tensor *t, int type, int64_t ne0, int64_t ne1, size_t extra)
{
    tern_tensor_init(t, type, 2, (int64_t[]){ne0, ne1});
    size_t n = tern_tensor_nbytes(t) + extra + 128;
    t->data = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!t->data) return TERN_ENOMEM;
    memset(t->data, 0, n);
    return TERN_OK;
}

typedef struct flush_job {
    volatile uint8_t *buf;
    size_t n;
} flush_job;

/* Evicts the caches on every thread of the job: the pool's workers are
 * then awake and spinning when the timed call starts, as they are between
 * the nodes of a real evaluation (a sleeping worker costs a wake-up that
 * a decode step never pays). */
static void flush_fn(void *arg, int ith, int nth)
{
    flush_job *f = arg;
    size_t lo = f->n * (size_t)ith / (size_t)nth / 64 * 64, hi = f->n * (size_t)(ith + 1) / (size_t)nth / 64 * 64;
    for (size_t b = lo; b < hi; b += 64) f->buf[b] = (uint8_t)(f->buf[b] + 1);
}

/* One call of candidate c on x -> y after evicting the caches (fj: the
 * buffer to write; NULL when there is none), in milliseconds. */
static double cold_ms(tern_threadpool *pool, int nth, const cand *c, const tern_tensor *x, tern_tensor *y,
                      uint8_t *scratch, size_t scratch_cap, flush_job *fj)
{
    if (fj) tern_threadpool_run_n(pool, nth, flush_fn, fj);
    double t0 = now_s();
    run_node(pool, nth, c->be, &c->w, x, y, scratch, scratch_cap);
    return (now_s() - t0) * 1e3;
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : INFINITY;
}

typedef struct tune_opts {
    const char *model, *patience;
    int threads;
    double time_limit;
} tune_opts;

typedef struct shape_result {
    int best_gemv, best_gemm; /* candidate indices; -1 none */
    double builtin_gemv, builtin_gemm, builtin_small, gemv_ms, gemm_ms, small_ms;
} shape_result;

/* Creates the candidate list: the built-in families, then every variant of
 * the tuned plugin (names from tab). */
static int list_candidates(const tern_kernels_table *tab, cand *c, int max)
{
    static const char *const builtins[] = {"mad", "lut", "bitserial"};
    int n = 0;
    for (int i = 0; i < 3; i++) {
        memset(&c[n], 0, sizeof c[n]);
        snprintf(c[n].name, sizeof c[n].name, "%s", builtins[i]);
        snprintf(c[n].family, sizeof c[n].family, "built-in %s", builtins[i]);
        c[n].builtin = 1, c[n].layout = -1 - i, c[n].tokens = 0;
        n++;
    }
    for (uint32_t i = 0; tab && i < tab->n_variants && n < max; i++) {
        const tern_kernel_variant *v = (const tern_kernel_variant *)((const char *)tab->variants + (size_t)i * tab->variant_size);
        if (v->cpu_features & ~tern_cpu_features()) continue;
        memset(&c[n], 0, sizeof c[n]);
        snprintf(c[n].name, sizeof c[n].name, "%s", v->name);
        snprintf(c[n].family, sizeof c[n].family, "%s", v->family);
        c[n].layout = (int)v->layout, c[n].tokens = v->tokens;
        n++;
    }
    return n;
}

/* A GEMM variant's time relative to the built-in's (bsm: small batch,
 * bgm: 128 tokens), both batch sizes counting alike: ranked by minima. */
static double gemm_score(const cand *c, double bsm, double bgm)
{
    return c->small[MAX_REPS - 2] / bsm + c->gemm[MAX_REPS - 2] / bgm;
}

static int tune_shape(const tune_opts *o, const tern_plugin_info *x86, const tern_plugin_info *scalar,
                      tern_threadpool *pool, const shape *sh, cand *cands, int n_cand, double deadline,
                      shape_result *res, int si, int n_shapes)
{
    int64_t K = sh->K, N = sh->N;
    int reps = !strcmp(o->patience, "estimate") ? 3 : !strcmp(o->patience, "exhaustive") ? 11 : 7;
    unsigned long long rng = 0x7e57 + (unsigned long long)K * 31 + (unsigned long long)N;
    tern_tensor wf, x1, x7, x128, y1, y7, y128, r7, r1, xs, ys;
    int8_t *codes = malloc((size_t)(K * N));
    tern_status st = codes ? TERN_OK : TERN_ENOMEM;
    int type = K % 256 == 0 ? TERN_TYPE_TQ2_0 : TERN_TYPE_I2_S;
    st = st ? st : alloc_tensor(&wf, type, K, N, (size_t)(K * N) / 4 + 64);
    st = st ? st : alloc_tensor(&x1, TERN_TYPE_Q8_TOK, K, 1, 0);
    st = st ? st : alloc_tensor(&x7, TERN_TYPE_Q8_TOK, K, 7, 0);
    st = st ? st : alloc_tensor(&x128, TERN_TYPE_Q8_TOK, K, 128, 0);
    st = st ? st : alloc_tensor(&y1, TERN_TYPE_F32, N, 1, 0);
    st = st ? st : alloc_tensor(&y7, TERN_TYPE_F32, N, 7, 0);
    st = st ? st : alloc_tensor(&y128, TERN_TYPE_F32, N, 128, 0);
    st = st ? st : alloc_tensor(&r7, TERN_TYPE_F32, N, 7, 0);
    st = st ? st : alloc_tensor(&r1, TERN_TYPE_F32, N, 1, 0);
    st = st ? st : alloc_tensor(&xs, TERN_TYPE_Q8_TOK, K, SMALL_BATCH, 0);
    st = st ? st : alloc_tensor(&ys, TERN_TYPE_F32, N, SMALL_BATCH, 0);
    if (st) {
        fprintf(stderr, "tern tune: out of memory for shape %lldx%lld\n", (long long)K, (long long)N);
        return -1;
    }
    for (int64_t i = 0; i < K * N; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        codes[i] = (int8_t)((int)((rng >> 33) % 3) - 1);
    }
    float scale = tern_f16_to_f32(tern_f32_to_f16(0.0417f));
    if (type == TERN_TYPE_TQ2_0) tern_pack_tq2_0(codes, K * N, scale, wf.data);
    else tern_pack_i2_s(codes, K * N, scale, wf.data);
    free(codes);
    wf.scale = scale;
    wf.name = "tune.weight";
    q8tok_fill(&x1, &rng), q8tok_fill(&x7, &rng), q8tok_fill(&x128, &rng), q8tok_fill(&xs, &rng);
    size_t scratch_cap = (size_t)64 << 20;
    uint8_t *scratch = aligned_alloc(64, scratch_cap);
    /* the reference: scalar on 1 and 7 tokens */
    tern_error err;
    tern_backend_options opt = tern_backend_default_options();
    opt.n_threads = 1;
    tern_backend *sc;
    if (!scratch || tern_backend_create(scalar, &opt, NULL, &sc, &err) != TERN_OK) {
        fprintf(stderr, "tern tune: scalar: %s\n", scratch ? err.msg : "out of memory");
        return -1;
    }
    tern_tensor sw;
    char e[256];
    if (sc->api->repack(sc->ctx, &wf, TERN_REPACK_TERNARY, &sw, e, sizeof e) != TERN_OK) {
        fprintf(stderr, "tern tune: scalar repack: %s\n", e);
        return -1;
    }
    run_node(NULL, 1, sc, &sw, &x7, &r7, scratch, scratch_cap);
    run_node(NULL, 1, sc, &sw, &x1, &r1, scratch, scratch_cap);
    if (sc->api->release) sc->api->release(sc->ctx, &sw);
    tern_backend_free(sc);
    /* every candidate: create, repack, check */
    int n_ok = 0;
    for (int i = 0; i < n_cand; i++) {
        cand *c = &cands[i];
        c->ok = 0, c->n_gemv = c->n_gemm = c->n_small = 0, c->be = NULL;
        opt = tern_backend_default_options();
        opt.n_threads = o->threads;
        opt.kernel = c->name;
        if (tern_backend_create(x86, &opt, pool, &c->be, &err) != TERN_OK) {
            fprintf(stderr, "\ntern tune: %s: %s\n", c->name, err.msg);
            continue;
        }
        if (c->be->api->repack(c->be->ctx, &wf, TERN_REPACK_TERNARY, &c->w, e, sizeof e) != TERN_OK) {
            fprintf(stderr, "\ntern tune: %s: %s\n", c->name, e);
            tern_backend_free(c->be), c->be = NULL;
            continue;
        }
        run_node(pool, o->threads, c->be, &c->w, &x7, &y7, scratch, scratch_cap);
        run_node(pool, o->threads, c->be, &c->w, &x1, &y1, scratch, scratch_cap);
        c->ok = !memcmp(y7.data, r7.data, (size_t)N * 7 * 4) && !memcmp(y1.data, r1.data, (size_t)N * 4);
        if (!c->ok) fprintf(stderr, "\ntern tune: %s differs from scalar on %lldx%lld: not timed\n", c->name, (long long)K, (long long)N);
        n_ok += c->ok;
    }
    /* interleaved repetitions: every candidate once per round. Decode
     * streams each weight from memory once per token (the model is far
     * larger than the caches), so the weight is evicted before each
     * timing: the caches are flushed by writing a buffer larger than them. */
    size_t flush_n = (size_t)40 << 20; /* > the 32 MiB L3 of Zen 4 CCDs */
    volatile uint8_t *flush = malloc(flush_n);
    flush_job fj = {flush, flush_n};
    res->best_gemv = res->best_gemm = -1;
    for (int r = 0; r < reps && now_s() < deadline; r++)
        for (int i = 0; i < n_cand && now_s() < deadline; i++) {
            cand *c = &cands[i];
            if (!c->ok) continue;
            /* a sample is the better of two tries: on a shared machine a
             * try can lose a whole scheduler slice waiting for a core */
            double sv = INFINITY, sm = INFINITY, ss = INFINITY;
            for (int tr = 0; tr < 2; tr++) {
                sv = fmin(sv, cold_ms(pool, o->threads, c, &x1, &y1, scratch, scratch_cap, flush ? &fj : NULL));
                sm = fmin(sm, cold_ms(pool, o->threads, c, &x128, &y128, scratch, scratch_cap, flush ? &fj : NULL));
                ss = fmin(ss, cold_ms(pool, o->threads, c, &xs, &ys, scratch, scratch_cap, flush ? &fj : NULL));
            }
            c->gemv[c->n_gemv++] = sv;
            c->gemm[c->n_gemm++] = sm;
            c->small[c->n_small++] = ss;
            double bv = INFINITY, bm = INFINITY;
            for (int j = 0; j < n_cand; j++) {
                if (!cands[j].ok || !cands[j].n_gemv) continue;
                double a[MAX_REPS], b[MAX_REPS];
                memcpy(a, cands[j].gemv, sizeof a), memcpy(b, cands[j].gemm, sizeof b);
                double mv = median(a, cands[j].n_gemv), mm = median(b, cands[j].n_gemm);
                if (mv < bv) bv = mv;
                if (mm < bm) bm = mm;
            }
            fprintf(stderr, "\rtune: shape %d/%d %lldx%lld, round %d/%d, candidate %d/%d, best gemv %.3f ms, gemm %.2f ms, %.0f s left   ",
                    si + 1, n_shapes, (long long)K, (long long)N, r + 1, reps, i + 1, n_cand, bv, bm, deadline - now_s());
        }
    free((void *)flush);
    /* medians (reported) and minima (ranked). On a machine shared with
     * other work the samples are bimodal: the kernel's own time, or that
     * plus a scheduler slice lost waiting for a core; the median then
     * falls on either mode by chance, the minimum is the kernel's. */
    for (int i = 0; i < n_cand; i++) {
        cand *c = &cands[i];
        c->gemv[MAX_REPS - 1] = c->ok && c->n_gemv ? median(c->gemv, c->n_gemv) : INFINITY;
        c->gemm[MAX_REPS - 1] = c->ok && c->n_gemm ? median(c->gemm, c->n_gemm) : INFINITY;
        c->gemv[MAX_REPS - 2] = c->ok && c->n_gemv ? c->gemv[0] : INFINITY;
        c->gemm[MAX_REPS - 2] = c->ok && c->n_gemm ? c->gemm[0] : INFINITY;
        c->small[MAX_REPS - 1] = c->ok && c->n_small ? median(c->small, c->n_small) : INFINITY;
        c->small[MAX_REPS - 2] = c->ok && c->n_small ? c->small[0] : INFINITY;
    }
    /* the winner: per layout the best GEMV, and the GEMM variant (it runs
     * every batch of 2+ tokens) best over the small batch and 128 tokens
     * together (built-in mad is its own layout); the layout minimising the
     * sum of the three times relative to the built-in's */
    double bgv = cands[0].gemv[MAX_REPS - 2], bgm = cands[0].gemm[MAX_REPS - 2], bsm = cands[0].small[MAX_REPS - 2];
    res->builtin_gemv = bgv, res->builtin_gemm = bgm, res->builtin_small = bsm;
    double best = INFINITY;
    for (int L = -1; L < TERN_KLAYOUT_COUNT; L++) {
        int gv = -1, gm = -1;
        for (int i = 0; i < n_cand; i++) {
            cand *c = &cands[i];
            if (!c->ok || c->layout != L) continue;
            if (L >= 0 && c->tokens > 1) {
                if (gm < 0 || gemm_score(c, bsm, bgm) < gemm_score(&cands[gm], bsm, bgm)) gm = i;
            } else if (L >= 0) {
                if (gv < 0 || c->gemv[MAX_REPS - 2] < cands[gv].gemv[MAX_REPS - 2]) gv = i;
            } else {
                gv = gm = i;
            }
        }
        if (gv < 0 || gm < 0) continue;
        double s = cands[gv].gemv[MAX_REPS - 2] / bgv + gemm_score(&cands[gm], bsm, bgm);
        /* never slower than the built-in on any of the three (3% for noise) */
        if (L >= 0 && (cands[gv].gemv[MAX_REPS - 2] > 1.03 * bgv || cands[gm].gemm[MAX_REPS - 2] > 1.03 * bgm ||
                       cands[gm].small[MAX_REPS - 2] > 1.03 * bsm))
            continue;
        if (s < best) best = s, res->best_gemv = gv, res->best_gemm = gm;
    }
    if (res->best_gemv >= 0) {
        res->gemv_ms = cands[res->best_gemv].gemv[MAX_REPS - 2];
        res->gemm_ms = cands[res->best_gemm].gemm[MAX_REPS - 2];
        res->small_ms = cands[res->best_gemm].small[MAX_REPS - 2];
    }
    fprintf(stderr, "\n");
    /* the per-shape table: every family's best tile and time */
    printf("\nshape K=%lld N=%lld (%d tensor%s), %d thread%s, %d interleaved reps, each the best of 2 cache-cold "
           "tries: median (min-max), ranked by min:\n",
           (long long)K, (long long)N, sh->count, sh->count == 1 ? "" : "s", o->threads, o->threads == 1 ? "" : "s",
           cands[0].n_gemv);
    printf("  %-18s %-26s %-22s %-26s %-22s %-22s\n", "family", "best gemv variant", "gemv ms", "best gemm variant",
           "gemm 4 tok ms", "gemm 128 tok ms");
    /* a row per family, in the candidates' order (built-ins, then the plugin's) */
    for (int f = 0; f < n_cand; f++) {
        const char *fam = cands[f].family;
        int seen = 0;
        for (int i = 0; i < f && !seen; i++) seen = !strcmp(cands[i].family, fam);
        if (seen) continue;
        int gv = -1, gm = -1;
        for (int i = f; i < n_cand; i++) {
            cand *c = &cands[i];
            if (!c->ok || strcmp(c->family, fam)) continue;
            if (c->builtin || c->tokens == 1)
                if (gv < 0 || c->gemv[MAX_REPS - 2] < cands[gv].gemv[MAX_REPS - 2]) gv = i;
            if (c->builtin || c->tokens > 1)
                if (gm < 0 || gemm_score(c, bsm, bgm) < gemm_score(&cands[gm], bsm, bgm)) gm = i;
        }
        if (gv < 0 && gm < 0) continue;
        char a[40] = "-", b[40] = "-", sb[40] = "-";
        /* samples are sorted by median(): [0] is the min, [n-1] the max */
        if (gv >= 0)
            snprintf(a, sizeof a, "%.3f (%.3f-%.3f)", cands[gv].gemv[MAX_REPS - 1], cands[gv].gemv[0],
                     cands[gv].gemv[cands[gv].n_gemv - 1]);
        if (gm >= 0) {
            snprintf(b, sizeof b, "%.2f (%.2f-%.2f)", cands[gm].gemm[MAX_REPS - 1], cands[gm].gemm[0],
                     cands[gm].gemm[cands[gm].n_gemm - 1]);
            snprintf(sb, sizeof sb, "%.3f (%.3f-%.3f)", cands[gm].small[MAX_REPS - 1], cands[gm].small[0],
                     cands[gm].small[cands[gm].n_small - 1]);
        }
        printf("  %-18s %-26s %-22s %-26s %-22s %-22s\n", fam, gv >= 0 ? cands[gv].name : "-", a,
               gm >= 0 ? cands[gm].name : "-", sb, b);
    }
    if (res->best_gemv >= 0)
        printf("  winner (min): gemv %s %.3f ms (built-in mad %.3f, %.2fx), gemm %s: %d tokens %.3f ms (built-in "
               "mad %.3f, %.2fx), 128 tokens %.2f ms (built-in mad %.2f, %.2fx)\n",
               cands[res->best_gemv].name, res->gemv_ms, bgv, bgv / res->gemv_ms, cands[res->best_gemm].name,
               SMALL_BATCH, res->small_ms, bsm, bsm / res->small_ms, res->gemm_ms, bgm, bgm / res->gemm_ms);
    for (int i = 0; i < n_cand; i++) {
        if (cands[i].be) {
            if (cands[i].be->api->release) cands[i].be->api->release(cands[i].be->ctx, &cands[i].w);
            tern_backend_free(cands[i].be);
            cands[i].be = NULL;
        }
    }
    tern_tensor *all[] = {&wf, &x1, &x7, &x128, &y1, &y7, &y128, &r7, &r1, &xs, &ys};
    for (int i = 0; i < 11; i++) free(all[i]->data);
    free(scratch);
    return res->best_gemv >= 0 ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    size_t n;
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *g = fopen(tmp, "wb");
    if (!g) return fclose(f), -1;
    char buf[65536];
    int bad = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) bad |= fwrite(buf, 1, n, g) != n;
    fclose(f);
    bad |= fclose(g) != 0;
    if (bad || rename(tmp, to)) return remove(tmp), -1;
    return 0;
}

/* The cache folder as the runtime computes it (tern_cache_dir), else
 * ./.cache/tern without HOME. */
static void cache_folder(char *buf, size_t n)
{
    if (!tern_cache_dir(buf, n)) snprintf(buf, n, "./.cache/tern");
}

/* The plugin folder of this tern: BIN/../lib (the build tree and an installed tree alike). */
static const tern_kernels_table *prebuilt_plugin(target tg, char *path, size_t n)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return NULL;
    exe[len] = 0;
    char *s = strrchr(exe, '/');
    if (!s) return NULL;
    *s = 0;
    const char *names[] = {"zen4", "avx512", "avx2"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(tg.isa, "avx2") && i < 2) continue;
        for (int where = 0; where < 2; where++) {
            snprintf(path, n, "%s/../lib%s/tern-kernels-%s.so", exe, where ? "/tern" : "", names[i]);
            void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            tern_kernels_entry_fn e = dl ? (tern_kernels_entry_fn)dlsym(dl, TERN_KERNELS_ENTRY_SYMBOL) : NULL;
            const tern_kernels_table *t = e ? e() : NULL;
            if (t && t->abi_version == TERN_KERNELS_ABI_VERSION) return t;
        }
    }
    return NULL;
}

int cmd_tune(int argc, char **argv)
{
    tune_opts o = {NULL, "measure", 1, 300};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long long v;
        double d;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: tern tune -m MODEL [-t N] [--patience estimate|measure|exhaustive] [--time-limit S]\n"
                   "  generates, compiles ($CC), checks against scalar and times ternary kernel variants for\n"
                   "  every weight shape of MODEL; writes wisdom.lua and tern-kernels-tuned.so to\n"
                   "  $TERN_CACHE_DIR, $XDG_CACHE_HOME/tern or ~/.cache/tern (read by the next run/bench)\n");
            return 0;
        }
        if (i + 1 >= argc) return cli_fail("tune", "option '%s' needs a value (or is unknown)", a);
        const char *val = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o.model = val;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (cli_int("tune", a, val, 1, 1024, &v)) return 1;
            o.threads = (int)v;
        } else if (!strcmp(a, "--patience")) {
            if (strcmp(val, "estimate") && strcmp(val, "measure") && strcmp(val, "exhaustive"))
                return cli_fail("tune", "--patience: estimate, measure or exhaustive, not '%s'", val);
            o.patience = val;
        } else if (!strcmp(a, "--time-limit")) {
            if (cli_float("tune", a, val, 1e-3, 1e7, &d)) return 1;
            o.time_limit = d;
        } else {
            return cli_fail("tune", "unknown option '%s'", a);
        }
    }
    if (!o.model) return cli_fail("tune", "-m MODEL is required");
    double t_start = now_s(), deadline = t_start + o.time_limit;
    char cache[4096], scratch_dir[4200], so[4200], err[512];
    cache_folder(cache, sizeof cache);
    if (mkdirs(cache)) return cli_fail("tune", "cannot create the cache folder %s", cache);
    shape shapes[TW_MAX_SHAPES];
    tern_error terr;
    int n_shapes = model_shapes(o.model, shapes, TW_MAX_SHAPES, &terr);
    if (n_shapes < 0) return cli_fail("tune", "%s", terr.msg);
    if (n_shapes == 0) return cli_fail("tune", "%s has no ternary weights: nothing to tune", o.model);
    target tg = host_target(tern_cpu_features());
    if (!tg.isa) return cli_fail("tune", "this CPU has no AVX2: the x86 kernels cannot run, nothing to tune");
    /* candidates: compiled here, else the prebuilt plugin */
    const tern_kernels_table *tab = NULL;
    void *dl = NULL;
    double tc = now_s();
    if (build_candidates(cache, tg, o.patience, so, sizeof so, err, sizeof err) == 0) {
        dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        tern_kernels_entry_fn e = dl ? (tern_kernels_entry_fn)dlsym(dl, TERN_KERNELS_ENTRY_SYMBOL) : NULL;
        tab = e ? e() : NULL;
        printf("tune: generated and compiled %u %s variants (%s grid) in %.1f s\n", tab ? tab->n_variants : 0, tg.isa,
               o.patience, now_s() - tc);
    } else {
        printf("tune: %s; using the prebuilt variants instead\n", err);
        tab = prebuilt_plugin(tg, so, sizeof so);
        if (!tab) return cli_fail("tune", "no prebuilt tern-kernels-*.so for %s found either", tg.isa);
        printf("tune: prebuilt %s (%u variants)\n", so, tab->n_variants);
    }
    /* the backends: the fresh plugin beside the prebuilt ones, and no
     * existing wisdom (the built-in default is the baseline) */
    setenv("TERN_KERNELS_PLUGIN", so, 1);
    snprintf(scratch_dir, sizeof scratch_dir, "%s/build/empty", cache);
    mkdirs(scratch_dir);
    setenv("TERN_CACHE_DIR", scratch_dir, 1);
    tern_registry *reg;
    if (tern_registry_scan(&reg, &terr) != TERN_OK) return cli_fail("tune", "%s", terr.msg);
    const tern_plugin_info *x86 = NULL, *scalar = NULL;
    for (int i = 0; i < tern_registry_count(reg); i++) {
        const tern_plugin_info *p = tern_registry_get(reg, i);
        if (p->loaded && !strcmp(p->name, "x86")) x86 = p;
        if (p->loaded && !strcmp(p->name, "scalar")) scalar = p;
    }
    if (!x86 || !x86->probe.runnable || !scalar) {
        tern_registry_free(reg);
        return cli_fail("tune", "the x86 and scalar backends are needed");
    }
    tern_threadpool *pool = NULL;
    if (o.threads > 1 && tern_threadpool_create(o.threads, &pool, &terr) != TERN_OK) {
        tern_registry_free(reg);
        return cli_fail("tune", "%s", terr.msg);
    }
    static cand cands[MAX_CAND];
    int n_cand = list_candidates(tab, cands, MAX_CAND);
    printf("tune: %s, %d weight shape%s, %d candidates, %d thread%s, patience %s, time limit %.0f s\n", o.model,
           n_shapes, n_shapes == 1 ? "" : "s", n_cand, o.threads, o.threads == 1 ? "" : "s", o.patience, o.time_limit);
    tw_record *rec = calloc(1, sizeof *rec);
    if (!rec) return cli_fail("tune", "out of memory");
    snprintf(rec->tern, sizeof rec->tern, "%s", TERN_VERSION);
    rec->kernels_abi = TERN_KERNELS_ABI_VERSION;
    tw_cpu_signature(tern_cpu_features(), rec->cpu, sizeof rec->cpu, rec->features, sizeof rec->features);
    snprintf(rec->compiler, sizeof rec->compiler, "%s", tab->compiler);
    snprintf(rec->plugin, sizeof rec->plugin, "tern-kernels-tuned.so");
    rec->threads = o.threads;
    double sum_def = 0, sum_tuned = 0;
    for (int s = 0; s < n_shapes; s++) {
        /* leave each remaining shape its share of the time left */
        double share = (deadline - now_s()) / (n_shapes - s);
        shape_result r = {.best_gemv = -1, .best_gemm = -1};
        if (share <= 0 || tune_shape(&o, x86, scalar, pool, &shapes[s], cands, n_cand, now_s() + share, &r, s, n_shapes))
            continue;
        tw_shape *ws = &rec->shapes[rec->n_shapes++];
        ws->K = shapes[s].K, ws->N = shapes[s].N;
        snprintf(ws->gemv, sizeof ws->gemv, "%s", cands[r.best_gemv].builtin ? "builtin" : cands[r.best_gemv].name);
        snprintf(ws->gemm, sizeof ws->gemm, "%s", cands[r.best_gemm].builtin ? "builtin" : cands[r.best_gemm].name);
        snprintf(ws->why, sizeof ws->why, "gemv %.3f ms (built-in %.3f), gemm%d %.3f ms (built-in %.3f), gemm128 %.2f ms "
                 "(built-in %.2f), %d threads", r.gemv_ms, r.builtin_gemv, SMALL_BATCH, r.small_ms, r.builtin_small,
                 r.gemm_ms, r.builtin_gemm, o.threads);
        sum_def += shapes[s].count * (r.builtin_gemv + r.builtin_gemm / 128);
        sum_tuned += shapes[s].count * (r.gemv_ms + r.gemm_ms / 128);
    }
    tern_threadpool_free(pool);
    tern_registry_free(reg);
    if (!rec->n_shapes) {
        free(rec);
        return cli_fail("tune", "no shape was tuned within the time limit");
    }
    char dst_so[4200], wis[4200];
    snprintf(dst_so, sizeof dst_so, "%s/tern-kernels-tuned.so", cache);
    snprintf(wis, sizeof wis, "%s/wisdom.lua", cache);
    if (copy_file(so, dst_so) || tw_write(wis, rec, err, sizeof err)) {
        free(rec);
        return cli_fail("tune", "cannot write the record into %s: %s", cache, err);
    }
    printf("\ntune: wrote %s and %s (%d shape%s) in %.0f s; weighted kernel time per token vs built-in: %.2fx\n",
           wis, dst_so, rec->n_shapes, rec->n_shapes == 1 ? "" : "s", now_s() - t_start,
           sum_tuned > 0 ? sum_def / sum_tuned : 0);
    free(rec);
    if (dl) dlclose(dl);
    return 0;
}
