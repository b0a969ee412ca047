/* test_kernels.c - generated kernel plugins (codegen/gen.lua ->
 * tern-kernels-<target>.so) and tuning records:
 *   - every variant of every plugin this CPU can run, forced through the
 *     CPU backend (x86 or arm; options.kernel = its name), on odd shapes (K not a
 *     multiple of the block, N not of the tile), 1..5/7/128 tokens and 1..3
 *     threads, bit-exact against scalar; and called directly through the
 *     kernel ABI alone;
 *   - the generator is reproducible (same record, same bytes, stamped);
 *   - wisdom robustness: a record from another CPU, a truncated one, one
 *     naming a missing variant, one whose plugin has a wrong kernel ABI,
 *     hostile chunks (endless loop, memory bomb, os.exit): each ignored with
 *     a one-line warning, the output still exact. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/testutil.h"
#include "conformance/conformance.h"
#include "tern/kernels.h"
/* the signature helper the backend and `tern tune` share */
#include "../../codegen/wisdom.c"

/* The CPU backend of this architecture (x86 or arm: both load kernel
 * plugins) and scalar. */
typedef struct be_pair {
    tern_registry *reg;
    const tern_plugin_info *cpu, *scalar;
} be_pair;

static int open_pair(be_pair *p)
{
    tern_error err;
    memset(p, 0, sizeof *p);
    ck_assert_msg(tern_registry_scan(&p->reg, &err) == TERN_OK, "%s", err.msg);
    p->cpu = tu_plugin(p->reg, "x86");
    if (!p->cpu || !p->cpu->probe.runnable) p->cpu = tu_plugin(p->reg, "arm");
    p->scalar = tu_plugin(p->reg, "scalar");
    ck_assert_ptr_nonnull(p->scalar);
    if (!p->cpu || !p->cpu->probe.runnable) {
        printf("skipped: no runnable x86 or arm backend\n");
        tern_registry_free(p->reg);
        return 0;
    }
    return 1;
}

static tern_backend *create(const tern_plugin_info *pi, const char *kernel, int nth)
{
    tern_backend_options opt = tern_backend_default_options();
    opt.n_threads = nth;
    if (kernel) opt.kernel = kernel;
    tern_backend *be;
    tern_error err;
    ck_assert_msg(tern_backend_create(pi, &opt, NULL, &be, &err) == TERN_OK, "%s: %s", pi->name, err.msg);
    return be;
}

static void *xalloc(size_t n)
{
    void *p = calloc(1, n + 64);
    ck_assert_ptr_nonnull(p);
    return p;
}

static conf_case *ternary_case(conf_list *l, int type, int64_t K, int64_t N, int64_t T, unsigned long long *rng)
{
    conf_case *c = conf_new(l, TERN_OP_MATMUL_TERNARY, "%s K=%lld N=%lld tok=%lld", tern_type_name(type),
                            (long long)K, (long long)N, (long long)T);
    int64_t xne[2] = {K, T}, wne[2] = {K, N}, dne[2] = {N, T};
    uint8_t *q = conf_src(c, 0, TERN_TYPE_Q8_TOK, 2, xne);
    float *x = xalloc((size_t)(K * T) * 4);
    for (int64_t i = 0; i < K * T; i++) x[i] = tu_randf(rng) * (i % 97 == 0 ? 30.0f : 1.0f);
    for (int64_t t = 0; t < T; t++) conf_quantize_row(x + t * K, K, q + t * c->src[0].nb[1]);
    free(x);
    uint8_t *w = conf_src(c, 1, type, 2, wne);
    int8_t *codes = xalloc((size_t)(K * N));
    for (int64_t i = 0; i < K * N; i++) codes[i] = (int8_t)((int)(tu_rand(rng) % 3) - 1);
    float scale = tern_f16_to_f32(tern_f32_to_f16(0.0371f));
    if (type == TERN_TYPE_TQ2_0) tern_pack_tq2_0(codes, K * N, scale, w);
    if (type == TERN_TYPE_I2_S) tern_pack_i2_s(codes, K * N, scale, w);
    c->src[1].scale = scale;
    c->codes = codes; /* for the direct calls; conf_list_free frees it */
    c->weight = 1;
    c->purpose = TERN_REPACK_TERNARY;
    conf_dst(c, TERN_TYPE_F32, 2, dne);
    return c;
}

/* out (case c's result by what on nth threads) equals ref byte for byte. */
static void same_bytes(const uint8_t *ref, const uint8_t *out, const conf_case *c, const char *what, int nth)
{
    for (size_t i = 0; i < c->dst_bytes; i += 4)
        ck_assert_msg(!memcmp(ref + i, out + i, 4), "%s [%s] nth=%d: output %zu: %a vs %a", what, c->label, nth, i / 4,
                      (double)((const float *)out)[i / 4], (double)((const float *)ref)[i / 4]);
}

/* c on be with nth 1..3 equals scalar byte for byte. */
static void expect_exact(const tern_backend *sc, const tern_backend *be, const conf_case *c, const char *what,
                         int nth_max)
{
    uint8_t *ref = xalloc(c->dst_bytes), *out = xalloc(c->dst_bytes);
    char why[300];
    ck_assert_msg(conf_run(sc, c, 1, ref, why, sizeof why) == CONF_RUN_OK, "scalar: %s", why);
    for (int nth = 1; nth <= nth_max; nth++) {
        conf_run_status rs = conf_run(be, c, nth, out, why, sizeof why);
        ck_assert_msg(rs == CONF_RUN_OK, "%s [%s] nth=%d: %s", what, c->label, nth,
                      rs == CONF_RUN_FALLBACK ? "fell back" : why);
        same_bytes(ref, out, c, what, nth);
    }
    free(ref);
    free(out);
}

/* ---- the plugins' variants ---- */

typedef struct plug {
    void *dl;
    const tern_kernels_table *tab;
    char path[4096];
} plug;

static int load_plugins(plug *p, int max)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/lib", tu_build_dir());
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;) {
        if (strncmp(e->d_name, "tern-kernels-", 13)) continue;
        snprintf(p[n].path, sizeof p[n].path, "%s/%s", dir, e->d_name);
        p[n].dl = dlopen(p[n].path, RTLD_NOW | RTLD_LOCAL);
        ck_assert_msg(p[n].dl != NULL, "%s", dlerror());
        tern_kernels_entry_fn f = (tern_kernels_entry_fn)dlsym(p[n].dl, TERN_KERNELS_ENTRY_SYMBOL);
        ck_assert_ptr_nonnull(f);
        p[n].tab = f();
        ck_assert_uint_eq(p[n].tab->abi_version, TERN_KERNELS_ABI_VERSION);
        ck_assert_ptr_nonnull(strstr(p[n].tab->stamp, "generated by codegen/gen.lua from plugins/"));
        n++;
    }
    closedir(d);
    return n;
}

static const tern_kernel_variant *variant(const tern_kernels_table *t, uint32_t i)
{
    return (const tern_kernel_variant *)((const char *)t->variants + (size_t)i * t->variant_size);
}

/* odd shapes: K off the 16 and 20 blocks, N off the 16-row tile */
static void odd_shapes(conf_list *l, unsigned long long *rng)
{
    /* (I2_S packs the whole tensor in groups of 128: K N a multiple of it) */
    ternary_case(l, TERN_TYPE_I2_S, 84, 32, 1, rng);
    ternary_case(l, TERN_TYPE_I2_S, 132, 32, 7, rng);
    ternary_case(l, TERN_TYPE_I2_S, 384, 7, 7, rng);
    ternary_case(l, TERN_TYPE_TQ2_0, 768, 50, 3, rng);
    ternary_case(l, TERN_TYPE_I2_S, 260, 32, 128, rng);
    /* small batches: with 3 and 7 above, every remainder 1..7 of a
     * variant's token step (2..8) runs as one block of that many tokens */
    ternary_case(l, TERN_TYPE_I2_S, 100, 64, 2, rng);
    ternary_case(l, TERN_TYPE_I2_S, 132, 32, 4, rng);
    ternary_case(l, TERN_TYPE_TQ2_0, 256, 40, 5, rng);
    /* K = 124: the last LUT3 block (12 k) ends past round_up(K, 64) codes */
    ternary_case(l, TERN_TYPE_I2_S, 124, 32, 3, rng);
}

START_TEST(test_every_variant_exact)
{
    be_pair p;
    if (!open_pair(&p)) return;
    plug pl[8];
    int np = load_plugins(pl, 8), n_run = 0, n_skip = 0;
    tern_backend *sc = create(p.scalar, NULL, 1);
    unsigned long long rng = 0x6e4e;
    conf_list l = {0};
    odd_shapes(&l, &rng);
    for (int k = 0; k < np; k++)
        for (uint32_t i = 0; i < pl[k].tab->n_variants; i++) {
            const tern_kernel_variant *v = variant(pl[k].tab, i);
            if (v->cpu_features & ~tern_cpu_features()) {
                n_skip++;
                continue;
            }
            tern_backend *be = create(p.cpu, v->name, 3);
            for (int c = 0; c < l.n; c++) expect_exact(sc, be, &l.v[c], v->name, 3);
            tern_backend_free(be);
            n_run++;
        }
    printf("kernels: %d generated variants from %d plugins exact on %d odd shapes x 1..3 threads (%d need "
           "features this CPU lacks)\n", n_run, np, l.n, n_skip);
    ck_assert_int_gt(n_run + n_skip, 0);
    conf_list_free(&l);
    tern_backend_free(sc);
    for (int k = 0; k < np; k++) dlclose(pl[k].dl);
    tern_registry_free(p.reg);
}
END_TEST

/* Every variant called through the kernel ABI alone, against the scalar
 * backend: its packed_size, its repack tile by tile into that many bytes
 * (rounded up to 64 for aligned_alloc), its scratch_size, then its kernel
 * for each share ith of nth as a backend's threads would; what a backend adds (pack cache, planning) is
 * not in the way of what the ABI promises. */
START_TEST(test_every_variant_direct)
{
    tern_registry *reg;
    tern_error err;
    ck_assert_msg(tern_registry_scan(&reg, &err) == TERN_OK, "%s", err.msg);
    const tern_plugin_info *scalar = tu_plugin(reg, "scalar");
    ck_assert_ptr_nonnull(scalar);
    tern_backend *sc = create(scalar, NULL, 1);
    plug pl[8];
    int np = load_plugins(pl, 8), n_run = 0, n_skip = 0;
    unsigned long long rng = 0xd1ec7;
    conf_list l = {0};
    odd_shapes(&l, &rng);
    for (int ci = 0; ci < l.n; ci++) {
        const conf_case *c = &l.v[ci];
        const tern_tensor *x = &c->src[0];
        int64_t K = x->ne[0], T = x->ne[1], N = c->dst.ne[0];
        uint8_t *ref = xalloc(c->dst_bytes), *out = xalloc(c->dst_bytes);
        char why[300];
        ck_assert_msg(conf_run(sc, c, 1, ref, why, sizeof why) == CONF_RUN_OK, "scalar: %s", why);
        for (int k = 0; k < np; k++)
            for (uint32_t i = 0; i < pl[k].tab->n_variants; i++) {
                const tern_kernel_variant *v = variant(pl[k].tab, i);
                if (v->cpu_features & ~tern_cpu_features()) {
                    n_skip += ci == 0;
                    continue;
                }
                n_run += ci == 0;
                ck_assert_msg(v->applicable(K, N, 3), "%s: not applicable to K=%lld N=%lld", v->name, (long long)K,
                              (long long)N);
                size_t wsz = v->packed_size(K, N);
                ck_assert_uint_gt(wsz, 0);
                uint8_t *w = aligned_alloc(64, (wsz + 63) / 64 * 64);
                ck_assert_ptr_nonnull(w);
                for (int64_t tile = 0; tile < (N + 15) / 16; tile++)
                    v->repack(c->codes + tile * 16 * K, K, N - 16 * tile < 16 ? N - 16 * tile : 16, tile, w);
                size_t scr = v->scratch_size(K, T);
                uint8_t *scratch = xalloc(scr);
                for (int nth = 1; nth <= 3; nth++) {
                    memset(out, 0xa5, c->dst_bytes);
                    tern_kernel_call call = {sizeof call, x->data, x->nb[1], w, (float *)out, c->dst.nb[1],
                                             K, N, T, c->src[1].scale};
                    for (int ith = 0; ith < nth; ith++) v->kernel(&call, ith, nth, scratch);
                    same_bytes(ref, out, c, v->name, nth);
                }
                free(scratch);
                free(w);
            }
        free(ref);
        free(out);
    }
    printf("kernels: %d generated variants from %d plugins exact when called directly on %d odd shapes x 1..3 "
           "shares (%d need features this CPU lacks)\n", n_run, np, l.n, n_skip);
    ck_assert_int_gt(np, 0);
    conf_list_free(&l);
    tern_backend_free(sc);
    for (int k = 0; k < np; k++) dlclose(pl[k].dl);
    tern_registry_free(reg);
}
END_TEST

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = xalloc((size_t)len + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

START_TEST(test_generator_reproducible)
{
    char cmd[8192], out[4096], built[4096], stamp[200];
    /* the record this architecture's build generated (x86-64, aarch64) */
    static const char *const recs[] = {"zen4", "sve2"};
    const char *rec = NULL;
    for (int i = 0; i < 2 && !rec; i++) {
        snprintf(built, sizeof built, "%s/gen/kernels/tern-kernels-%s.c", tu_build_dir(), recs[i]);
        if (!access(built, R_OK)) rec = recs[i];
    }
    if (!rec) {
        printf("skipped: no generated kernels under %s/gen/kernels\n", tu_build_dir());
        return;
    }
    snprintf(out, sizeof out, "%s/tests/gen-%s-again.c", tu_build_dir(), rec);
    snprintf(cmd, sizeof cmd, "cd '%s' && lua5.4 codegen/gen.lua plugins/%s.lua '%s'", TERN_SOURCE_DIR, rec, out);
    ck_assert_int_eq(system(cmd), 0);
    size_t na, nb;
    char *a = slurp(out, &na), *b = slurp(built, &nb);
    ck_assert_msg(na == nb && !memcmp(a, b, na), "the same record gave different bytes");
    snprintf(stamp, sizeof stamp, "generated by codegen/gen.lua from plugins/%s.lua, do not edit", rec);
    ck_assert_ptr_nonnull(strstr(a, stamp));
    free(a), free(b);
    /* a bad record is refused by the generator, not turned into C */
    snprintf(cmd, sizeof cmd, "cd '%s' && printf 'return {target=\"x\", isa=\"avx512\", variants={{family=\"lut9\", "
             "tiles=1, tokens=1}}}' > '%s.lua' && ! lua5.4 codegen/gen.lua '%s.lua' '%s' 2>/dev/null",
             TERN_SOURCE_DIR, out, out, out);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- wisdom ---- */

typedef struct wcase {
    const char *label;
    const char *expect_warning; /* NULL: accepted */
} wcase;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void copy(const char *from, const char *to)
{
    size_t n;
    char *b = slurp(from, &n);
    FILE *f = fopen(to, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

static const wcase wcases[] = {
    {"valid", NULL},
    {"other cpu", "tuned on 'Imaginary CPU 9000'"},
    {"truncated", "wisdom"},
    {"missing variant", "names variant 'zen4.mad.v9p9', which no loaded plugin has"},
    {"wrong kernel abi", "kernel ABI 99, this tern reads 1"},
    {"endless loop", "instruction budget exhausted"},
    {"memory bomb", "not enough memory"},
    {"os.exit", "attempt to index a nil value"},
    {"other tern", "tuned by tern 0.0.1"},
};

/* The record under test in a fresh cache folder; the backend's warning
 * (stderr) and its per-shape reason, then the output against scalar. */
START_TEST(test_wisdom_robust)
{
    const wcase *wc = &wcases[_i];
    char dir[4096], path[4200], sig_cpu[128], feat[32];
    snprintf(dir, sizeof dir, "%s/tests/wisdom-%d-XXXXXX", tu_build_dir(), _i);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("TERN_CACHE_DIR", dir, 1); /* read when this (forked) test first builds the host table */
    be_pair p;
    if (!open_pair(&p)) return;
    /* a plugin this CPU runs, as the tuned one */
    plug pl[8];
    int np = load_plugins(pl, 8), k = -1;
    for (int i = 0; i < np; i++)
        if (!(variant(pl[i].tab, 0)->cpu_features & ~tern_cpu_features()) && (k < 0 || strstr(pl[i].path, "zen4"))) k = i;
    if (k < 0) { /* a CPU below every plugin's ISA (Cortex-A53: no dotprod) */
        printf("skipped: wisdom %s: no kernel plugin this CPU runs\n", wc->label);
        for (int i = 0; i < np; i++) dlclose(pl[i].dl);
        tern_registry_free(p.reg);
        return;
    }
    const tern_kernel_variant *gv = NULL, *gm = NULL;
    for (uint32_t i = 0; i < pl[k].tab->n_variants; i++) {
        const tern_kernel_variant *v = variant(pl[k].tab, i);
        if (v->tokens == 1 && !gv) gv = v;
    }
    for (uint32_t i = 0; i < pl[k].tab->n_variants; i++) {
        const tern_kernel_variant *v = variant(pl[k].tab, i);
        if (v->tokens > 1 && v->layout == gv->layout && !gm) gm = v;
    }
    ck_assert(gv && gm);
    snprintf(path, sizeof path, "%s/tern-kernels-tuned.so", dir);
    copy(pl[k].path, path);
    snprintf(path, sizeof path, "%s/tests/tern-kernels-badabi.so", tu_build_dir());
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/tern-kernels-badabi.so", dir);
    copy(path, bad);
    /* the record */
    tw_cpu_signature(tern_cpu_features(), sig_cpu, sizeof sig_cpu, feat, sizeof feat);
    int other = !strcmp(wc->label, "other cpu");
    char text[4096];
    snprintf(text, sizeof text,
             "return { signature = { tern = \"%s\", kernels_abi = 1, cpu = \"%s\", features = \"%s\", compiler = \"%s\" },\n"
             "  plugin = \"%s\", threads = 2,\n"
             "  shapes = { { K = 1000, N = 48, gemv = \"%s\", gemm = \"%s\", why = \"test\" } } }\n",
             !strcmp(wc->label, "other tern") ? "0.0.1" : TERN_VERSION, other ? "Imaginary CPU 9000" : sig_cpu, feat,
             pl[k].tab->compiler, !strcmp(wc->label, "wrong kernel abi") ? "tern-kernels-badabi.so" : "tern-kernels-tuned.so",
             gv->name, !strcmp(wc->label, "missing variant") ? "zen4.mad.v9p9" : gm->name);
    if (!strcmp(wc->label, "missing variant")) {
        char *at = strstr(text, gv->name);
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%.*szen4.mad.v9p9%s", (int)(at - text), text, at + strlen(gv->name));
        snprintf(text, sizeof text, "%s", tmp);
    }
    if (!strcmp(wc->label, "truncated")) text[strlen(text) / 2] = 0;
    if (!strcmp(wc->label, "endless loop")) snprintf(text, sizeof text, "while true do end");
    if (!strcmp(wc->label, "memory bomb")) snprintf(text, sizeof text, "local t = {} for i = 1, 1e9 do t[i] = {i} end");
    if (!strcmp(wc->label, "os.exit")) snprintf(text, sizeof text, "os.exit(3)");
    snprintf(path, sizeof path, "%s/wisdom.lua", dir);
    write_text(path, text);
    /* stderr into a file while the backend loads */
    char log[4200];
    snprintf(log, sizeof log, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved = dup(2);
    FILE *lf = fopen(log, "wb");
    ck_assert_ptr_nonnull(lf);
    dup2(fileno(lf), 2);
    tern_backend *be = create(p.cpu, NULL, 2), *sc = create(p.scalar, NULL, 1);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(lf);
    size_t n;
    char *warn = slurp(log, &n);
    unsigned long long rng = 0x815d;
    conf_list l = {0};
    ternary_case(&l, TERN_TYPE_I2_S, 1000, 48, 7, &rng);
    expect_exact(sc, be, &l.v[0], wc->label, 2);
    char desc[2048];
    be->api->describe(be->ctx, desc, sizeof desc);
    if (wc->expect_warning) {
        ck_assert_msg(strstr(warn, wc->expect_warning) != NULL, "%s: warning '%s' missing in: %s", wc->label,
                      wc->expect_warning, warn);
        ck_assert_msg(strstr(warn, "ignoring tuning record") || strstr(warn, "skipping kernel plugin"),
                      "%s: %s", wc->label, warn);
        ck_assert_msg(!strstr(desc, "(wisdom"), "%s: the record was used: %s", wc->label, desc);
    } else {
        ck_assert_msg(!strstr(warn, "ignoring"), "valid record refused: %s", warn);
        ck_assert_msg(strstr(desc, "1000x48") && strstr(desc, gv->name) && strstr(desc, "(wisdom"), "%s", desc);
    }
    printf("wisdom %s: %s", wc->label, n ? warn : "accepted\n");
    free(warn);
    conf_list_free(&l);
    tern_backend_free(be);
    tern_backend_free(sc);
    for (int i = 0; i < np; i++) dlclose(pl[i].dl);
    tern_registry_free(p.reg);
    char rm[4200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(rm), 0);
}
END_TEST

Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("generated");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_every_variant_exact);
    tcase_add_test(tc, test_every_variant_direct);
    tcase_add_test(tc, test_generator_reproducible);
    tcase_add_loop_test(tc, test_wisdom_robust, 0, (int)(sizeof wcases / sizeof wcases[0]));
    suite_add_tcase(s, tc);
    return s;
}
