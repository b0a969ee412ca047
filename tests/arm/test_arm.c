/* test_arm.c - what the shared conformance suite does not reach in the arm
 * backend (built for aarch64 only, run under qemu at several CPU models by
 * tests/run_qemu.sh): every ternary kernel family on every tier this CPU
 * has, forced through options.kernel (mad-dotprod, mad-sve, lut-neon,
 * lut-sve2, ...), every ternary file type, odd shapes, K long enough for
 * the accumulator flushes, 1/2/3 threads, bit-exact against scalar;
 * batch-size invariance of the float matmul and Q8_0 bytes on the sdot and
 * smull paths; the q8 head; attention; probe and options. A kernel whose
 * tier this CPU lacks is skipped visibly (another qemu CPU model runs it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "conformance/conformance.h"

typedef struct be_pair {
    tern_registry *reg;
    const tern_plugin_info *arm, *scalar;
} be_pair;

static void open_pair(be_pair *p)
{
    tern_error err;
    memset(p, 0, sizeof *p);
    ck_assert_msg(tern_registry_scan(&p->reg, &err) == TERN_OK, "%s", err.msg);
    p->arm = tu_plugin(p->reg, "arm");
    p->scalar = tu_plugin(p->reg, "scalar");
    ck_assert_ptr_nonnull(p->scalar);
    /* this suite is built for aarch64 only: there the plugin must run */
    ck_assert_msg(p->arm != NULL, "the arm plugin was not found (TERN_BUILD=%s)", tu_build_dir());
    ck_assert_msg(p->arm->probe.runnable, "arm cannot run: %s", p->arm->probe.desc);
}

/* The backend with options.kernel = kernel, or NULL (and a skip line) when
 * this CPU lacks the kernel's tier. */
static tern_backend *create(const tern_plugin_info *pi, const char *kernel, const char *head)
{
    tern_backend_options opt = tern_backend_default_options();
    opt.n_threads = 3;
    if (kernel) opt.kernel = kernel;
    if (head) opt.head = head;
    tern_backend *be;
    tern_error err;
    tern_status st = tern_backend_create(pi, &opt, NULL, &be, &err);
    if (st == TERN_ECANNOTRUN) {
        printf("skipped: arm kernel=%s on this CPU: %s\n", kernel, err.msg);
        return NULL;
    }
    ck_assert_msg(st == TERN_OK, "%s: %s", pi->name, err.msg);
    return be;
}

static void *xalloc(size_t n)
{
    void *p = calloc(1, n + 64);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* A ternary matmul case: random codes packed as type, activation rows of
 * several kinds (outliers, all -128/127 extremes) quantized by the
 * test-side quantizer. */
static conf_case *ternary_case(conf_list *l, int type, int64_t K, int64_t N, int64_t T,
                               unsigned long long *rng)
{
    conf_case *c = conf_new(l, TERN_OP_MATMUL_TERNARY, "%s K=%lld N=%lld tok=%lld",
                            tern_type_name(type), (long long)K, (long long)N, (long long)T);
    int64_t xne[2] = {K, T}, wne[2] = {K, N}, dne[2] = {N, T};
    uint8_t *q = conf_src(c, 0, TERN_TYPE_Q8_TOK, 2, xne);
    float *x = xalloc((size_t)(K * T) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < K; k++) {
            float v = tu_randf(rng);
            x[t * K + k] = t % 4 == 3 ? (v < 0 ? -1.0f : 1.0f) : v * (k % 97 == 0 ? 30.0f : 1.0f);
        }
    for (int64_t t = 0; t < T; t++) conf_quantize_row(x + t * K, K, q + t * c->src[0].nb[1]);
    free(x);
    uint8_t *w = conf_src(c, 1, type, 2, wne);
    int8_t *codes = xalloc((size_t)(K * N));
    int density = (int)(tu_rand(rng) % 3); /* all three codes, mostly zero, or no zeros */
    for (int64_t i = 0; i < K * N; i++) {
        unsigned long long v = tu_rand(rng) % 8;
        codes[i] = (int8_t)(density == 0 ? (int)(v % 3) - 1 : density == 1 ? (v == 0) - (v == 1)
                                                                            : (v & 1 ? 1 : -1));
    }
    float scale = tern_f16_to_f32(tern_f32_to_f16(0.0371f));
    if (type == TERN_TYPE_TQ1_0) tern_pack_tq1_0(codes, K * N, scale, w);
    if (type == TERN_TYPE_TQ2_0) tern_pack_tq2_0(codes, K * N, scale, w);
    if (type == TERN_TYPE_I2_S) tern_pack_i2_s(codes, K * N, scale, w);
    c->src[1].scale = scale;
    free(codes);
    c->weight = 1;
    c->purpose = TERN_REPACK_TERNARY;
    conf_dst(c, TERN_TYPE_F32, 2, dne);
    return c;
}

/* Runs c on scalar (nth 1) and on be with nth 1..3; bytes must match. */
static void expect_exact(const tern_backend *sc, const tern_backend *be, const conf_case *c,
                         const char *kernel)
{
    uint8_t *ref = xalloc(c->dst_bytes), *out = xalloc(c->dst_bytes);
    char why[300];
    ck_assert_msg(conf_run(sc, c, 1, ref, why, sizeof why) == CONF_RUN_OK, "scalar: %s", why);
    for (int nth = 1; nth <= 3; nth++) {
        conf_run_status rs = conf_run(be, c, nth, out, why, sizeof why);
        ck_assert_msg(rs == CONF_RUN_OK, "arm %s [%s] nth=%d: %s", kernel, c->label, nth,
                      rs == CONF_RUN_FALLBACK ? "fell back" : why);
        for (size_t i = 0; i < c->dst_bytes; i += 4)
            ck_assert_msg(!memcmp(ref + i, out + i, 4), "arm %s [%s] nth=%d: output %zu: %a vs %a",
                          kernel, c->label, nth, i / 4, (double)((float *)out)[i / 4],
                          (double)((float *)ref)[i / 4]);
    }
    free(ref);
    free(out);
}

/* Every family on every tier; "auto-neon" is the tier of a CPU without
 * sdot (LUT, smull Q8_0) reached on any CPU. */
static const char *const kernels[] = {"auto", "mad", "lut", "mad-dotprod", "mad-sve", "lut-neon", "lut-sve2",
                                      "auto-neon"};

START_TEST(test_ternary_families)
{
    be_pair p;
    open_pair(&p);
    tern_backend *be = create(p.arm, kernels[_i], NULL);
    if (!be) {
        tern_registry_free(p.reg);
        return;
    }
    tern_backend *sc = create(p.scalar, NULL, NULL);
    static const int types[] = {TERN_TYPE_TQ1_0, TERN_TYPE_TQ2_0, TERN_TYPE_I2_S};
    static const int64_t Ks[] = {256, 768, 2560}, Ns[] = {1, 7, 70}, Ts[] = {1, 2, 5};
    unsigned long long rng = 0xa2a4 + (unsigned long long)_i;
    conf_list l = {0};
    for (int ti = 0; ti < 3; ti++)
        for (int ki = 0; ki < 3; ki++)
            for (int ni = 0; ni < 3; ni++) ternary_case(&l, types[ti], Ks[ki], Ns[ni], Ts[(ki + ni) % 3], &rng);
    /* K past the accumulator flushes (LUT every 2048 k, MAD every 4096 k) */
    ternary_case(&l, TERN_TYPE_TQ2_0, 4608, 17, 3, &rng);
    ternary_case(&l, TERN_TYPE_I2_S, 4100, 32, 2, &rng);
    /* I2_S rows need not be whole 16- or 8-value blocks */
    ternary_case(&l, TERN_TYPE_I2_S, 100, 32, 5, &rng);
    ternary_case(&l, TERN_TYPE_I2_S, 132, 32, 1, &rng);
    ternary_case(&l, TERN_TYPE_I2_S, 36, 160, 4, &rng);
    ternary_case(&l, TERN_TYPE_I2_S, 4, 96, 3, &rng);
    for (int i = 0; i < l.n; i++) expect_exact(sc, be, &l.v[i], kernels[_i]);
    char desc[512];
    be->api->describe(be->ctx, desc, sizeof desc);
    printf("arm kernel=%s: %d ternary cases exact (nth 1..3); %s\n", kernels[_i], l.n, desc);
    conf_list_free(&l);
    tern_backend_free(sc);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

static const char *const tiers[] = {"auto", "auto-neon"};

/* Token t of a batch gets the same bits as token t alone: the float
 * matmul's GEMM tiles run the GEMV's chains. Q8_0, an integer path, also
 * equals scalar byte for byte (sdot and smull). */
START_TEST(test_matmul_batch_invariant)
{
    be_pair p;
    open_pair(&p);
    tern_backend *be = create(p.arm, tiers[_i], NULL), *sc = create(p.scalar, NULL, NULL);
    static const int types[] = {TERN_TYPE_F32, TERN_TYPE_F16, TERN_TYPE_BF16, TERN_TYPE_Q8_0};
    unsigned long long rng = 0xba7c4;
    for (int ti = 0; ti < 4; ti++) {
        conf_list l = {0};
        int64_t K = 1000 + 24 * (ti == 3) + 3 * (ti == 0), N = 37, T = 7;
        conf_case *all = conf_float_matmul(&l, types[ti], K, N, T, "blk.0.w", &rng);
        uint8_t *out = xalloc(all->dst_bytes), *one = xalloc((size_t)N * 4);
        char why[300];
        ck_assert_msg(conf_run(be, all, 2, out, why, sizeof why) == CONF_RUN_OK, "%s", why);
        if (types[ti] == TERN_TYPE_Q8_0) {
            uint8_t *ref = xalloc(all->dst_bytes);
            ck_assert(conf_run(sc, all, 1, ref, why, sizeof why) == CONF_RUN_OK);
            ck_assert_msg(!memcmp(ref, out, all->dst_bytes), "q8_0 (%s) differs from scalar", tiers[_i]);
            free(ref);
        }
        for (int64_t t = 0; t < T; t++) {
            conf_case single = *all; /* the same weight, one token */
            single.src[0].ne[1] = 1;
            single.src[0].data = (uint8_t *)all->src[0].data + t * all->src[0].nb[1];
            single.dst.ne[1] = 1;
            single.dst_bytes = (size_t)N * 4;
            for (int nth = 1; nth <= 3; nth += 2) {
                ck_assert_msg(conf_run(be, &single, nth, one, why, sizeof why) == CONF_RUN_OK, "%s", why);
                ck_assert_msg(!memcmp(one, out + t * N * 4, (size_t)N * 4),
                              "%s: token %lld alone differs from the batch (nth %d)",
                              tern_type_name(types[ti]), (long long)t, nth);
            }
        }
        free(out);
        free(one);
        conf_list_free(&l);
    }
    tern_backend_free(sc);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

/* The q8 head: an F16 head quantized to Q8_0 at load (tern_quantize_q8_0),
 * then the Q8_0 matmul: its outputs equal the definition run on the
 * requantized rows and scalar's q8 head bit for bit (test_x86.c also bounds its distance from
 * the F16 result; the quantizer is the same). A tensor that is not the head
 * stays as stored. */
START_TEST(test_q8_head)
{
    be_pair p;
    open_pair(&p);
    tern_backend *be = create(p.arm, tiers[_i], "q8");
    unsigned long long rng = 0x0e8d;
    const int64_t K = 512, N = 67, T = 3, nb = K / 32;
    float *wf = xalloc((size_t)K * 4), *xd = xalloc((size_t)nb * 4);
    uint8_t *wq = xalloc((size_t)nb * 34);
    int8_t *xq = xalloc((size_t)K);
    conf_list l = {0};
    conf_case *c = conf_float_matmul(&l, TERN_TYPE_F16, K, N, T, "output.weight", &rng);
    c->purpose = TERN_REPACK_HEAD; /* the head is a purpose, not a name */
    uint8_t *out = xalloc(c->dst_bytes);
    char why[300];
    ck_assert_msg(conf_run(be, c, 2, out, why, sizeof why) == CONF_RUN_OK, "%s", why);
    tern_backend *sq = create(p.scalar, NULL, "q8"); /* the oracle's q8 head: the same bytes */
    uint8_t *ref_q8 = xalloc(c->dst_bytes);
    ck_assert_msg(conf_run(sq, c, 1, ref_q8, why, sizeof why) == CONF_RUN_OK, "%s", why);
    ck_assert_msg(!memcmp(ref_q8, out, c->dst_bytes), "q8 head: arm %s and scalar differ", tiers[_i]);
    free(ref_q8);
    tern_backend_free(sq);
    for (int64_t t = 0; t < T; t++) {
        tern_quantize_act_q8_0((const float *)c->src[0].data + t * K, K, xq, xd);
        for (int64_t n = 0; n < N; n++) {
            const uint16_t *w = (const uint16_t *)c->src[1].data + n * K;
            for (int64_t k = 0; k < K; k++) wf[k] = tern_f16_to_f32(w[k]);
            tern_quantize_q8_0(wf, K, wq);
            float want = tern_dot_q8_0(wq, xq, xd, K), got = ((float *)out)[t * N + n];
            ck_assert_msg(!memcmp(&got, &want, 4), "q8 head token %lld row %lld: %.9g, the definition %.9g",
                          (long long)t, (long long)n, got, want);
        }
    }
    free(wf), free(xd), free(wq), free(xq), free(out);
    char desc[512];
    be->api->describe(be->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "head q8") != NULL, "describe: %s", desc);
    conf_case *other = conf_float_matmul(&l, TERN_TYPE_F16, 256, 7, 1, "blk.0.ffn_up.weight", &rng);
    tern_tensor dst;
    char msg[256];
    ck_assert(be->api->repack(be->ctx, &other->src[1], TERN_REPACK_MATMUL, &dst, msg, sizeof msg) == TERN_OK);
    ck_assert_int_eq(dst.layout, TERN_LAYOUT_FILE);
    ck_assert_ptr_eq(dst.data, other->src[1].data);
    printf("arm %s q8 head: %lld outputs equal to the definition; %s\n", tiers[_i], (long long)(N * T), desc);
    conf_list_free(&l);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

/* ATTENTION bit-identical to scalar (scalar's double formula, see
 * ops_neon.c): the conformance cases plus head sizes that are not
 * multiples of 4, the 2B4T shape, F32 and F16 caches. */
static void attention_case(conf_list *l, int type, int64_t hd, int64_t n_head, int64_t n_kv,
                           int64_t n_ctx, int64_t T, unsigned long long *rng)
{
    conf_case *c = conf_new(l, TERN_OP_ATTENTION, "%s hd=%lld heads=%lld/%lld ctx=%lld tok=%lld",
                            tern_type_name(type), (long long)hd, (long long)n_head, (long long)n_kv,
                            (long long)n_ctx, (long long)T);
    int64_t qne[3] = {hd, n_head, T}, cne[3] = {hd, n_kv, n_ctx}, pne[1] = {T}, nc = hd * n_kv * n_ctx;
    float *qv = conf_src(c, 0, TERN_TYPE_F32, 3, qne);
    for (int64_t i = 0; i < hd * n_head * T; i++) qv[i] = 2.0f * tu_randf(rng);
    float *v = xalloc((size_t)nc * 4);
    for (int s = 1; s <= 2; s++) {
        void *d = conf_src(c, s, type, 3, cne);
        for (int64_t i = 0; i < nc; i++) v[i] = tu_randf(rng);
        if (type == TERN_TYPE_F16)
            tern_quantize_f16(v, nc, d);
        else
            memcpy(d, v, (size_t)nc * 4);
    }
    free(v);
    int32_t *pos = conf_src(c, 3, TERN_TYPE_I32, 1, pne);
    int64_t start = (int64_t)(tu_rand(rng) % (unsigned long long)(n_ctx - T + 1));
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)(start + t);
    c->fparams[0] = (float)(1.0 / sqrt((double)hd));
    conf_dst(c, TERN_TYPE_F32, 3, qne);
}

START_TEST(test_attention_exact)
{
    be_pair p;
    open_pair(&p);
    tern_backend *sc = create(p.scalar, NULL, NULL), *be = create(p.arm, NULL, NULL);
    unsigned long long rng = 0xa77e;
    conf_list l = {0};
    static const int64_t cfg[][5] = {{128, 20, 5, 60, 3}, {80, 4, 2, 70, 5}, {100, 3, 1, 33, 4},
                                     {36, 2, 2, 19, 19}, {6, 2, 1, 5, 2}};
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++)
            attention_case(&l, f16 ? TERN_TYPE_F16 : TERN_TYPE_F32, cfg[i][0], cfg[i][1], cfg[i][2],
                           cfg[i][3], cfg[i][4], &rng);
    for (int i = 0; i < l.n; i++) expect_exact(sc, be, &l.v[i], "auto");
    printf("arm: %d attention cases bit-identical to scalar (nth 1..3)\n", l.n);
    conf_list_free(&l);
    tern_backend_free(sc);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

/* The probe reports the tier the HWCAP bits give, and options are checked:
 * a kernel above this CPU's tier cannot run, mad needs sdot, unknown names
 * are refused, capping the tier shows in describe. */
START_TEST(test_probe_and_options)
{
    be_pair p;
    open_pair(&p);
    uint64_t f = tern_host()->cpu_features;
    const char *tier = f & TERN_CPU_SVE2 ? "sve2" : f & TERN_CPU_SVE ? "sve"
                       : f & TERN_CPU_DOTPROD ? "dotprod" : "neon";
    char want[32];
    snprintf(want, sizeof want, "tier %s;", tier);
    ck_assert_int_gt(p.arm->probe.score, 1);
    ck_assert_msg(strstr(p.arm->probe.desc, want) != NULL, "expected '%s' in: %s", want, p.arm->probe.desc);
    ck_assert_msg(!(f & TERN_CPU_SVE) == !strstr(p.arm->probe.desc, "(VL "), "%s", p.arm->probe.desc);
    printf("arm probe: score %d: %s\n", p.arm->probe.score, p.arm->probe.desc);
    tern_backend_options opt = tern_backend_default_options();
    tern_backend *be;
    tern_error err;
    static const char *const bad[] = {"fastest", "mad-avx2", "lut-", "-sve"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opt.kernel = bad[i];
        ck_assert_int_eq(tern_backend_create(p.arm, &opt, NULL, &be, &err), TERN_EINVAL);
        ck_assert_msg(strstr(err.msg, bad[i]) != NULL, "%s", err.msg);
    }
    opt.kernel = "mad-neon";
    ck_assert_int_eq(tern_backend_create(p.arm, &opt, NULL, &be, &err), TERN_EINVAL);
    opt.kernel = "lut-sve2";
    ck_assert_int_eq(tern_backend_create(p.arm, &opt, NULL, &be, &err), f & TERN_CPU_SVE2 ? TERN_OK : TERN_ECANNOTRUN);
    if (f & TERN_CPU_SVE2) tern_backend_free(be);
    opt.kernel = "auto-neon";
    ck_assert_int_eq(tern_backend_create(p.arm, &opt, NULL, &be, &err), TERN_OK);
    char desc[512];
    be->api->describe(be->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "arm neon") && strstr(desc, "q8_0 smull"), "%s", desc);
    ck_assert_msg(!(f & (TERN_CPU_DOTPROD | TERN_CPU_SVE)) == !strstr(desc, "(capped)"), "%s", desc);
    tern_backend_free(be);
    opt.kernel = "auto";
    opt.head = "q4";
    ck_assert_int_eq(tern_backend_create(p.arm, &opt, NULL, &be, &err), TERN_EINVAL);
    tern_registry_free(p.reg);
}
END_TEST

Suite *arm_suite(void)
{
    Suite *s = suite_create("arm");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 900);
    tcase_add_loop_test(tc, test_ternary_families, 0, (int)(sizeof kernels / sizeof kernels[0]));
    tcase_add_loop_test(tc, test_matmul_batch_invariant, 0, 2);
    tcase_add_loop_test(tc, test_q8_head, 0, 2);
    tcase_add_test(tc, test_attention_exact);
    tcase_add_test(tc, test_probe_and_options);
    suite_add_tcase(s, tc);
    return s;
}
