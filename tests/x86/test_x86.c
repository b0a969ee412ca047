/* test_x86.c - what the shared conformance suite does not reach in the x86
 * backend: every ternary kernel family forced through options.kernel (and
 * the AVX2 kernels via "mad-avx2"), every ternary file type, odd shapes,
 * 1/2/3 threads, bit-exact against scalar; batch-size invariance of the
 * float matmul; the int8 output head against scalar's F16 head within its
 * stated bound. Skips visibly when the x86 plugin cannot run here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "conformance/conformance.h"

typedef struct be_pair {
    tern_registry *reg;
    const tern_plugin_info *x86, *scalar;
} be_pair;

/* 0 when x86 is missing or cannot run (the test then skips). */
static int open_pair(be_pair *p)
{
    tern_error err;
    memset(p, 0, sizeof *p);
    ck_assert_msg(tern_registry_scan(&p->reg, &err) == TERN_OK, "%s", err.msg);
    p->x86 = tu_plugin(p->reg, "x86");
    p->scalar = tu_plugin(p->reg, "scalar");
    ck_assert_ptr_nonnull(p->scalar);
    if (!p->x86 || !p->x86->probe.runnable) {
        printf("skipped: x86 backend %s\n", p->x86 ? p->x86->probe.desc : "not built");
        tern_registry_free(p->reg);
        return 0;
    }
    return 1;
}

static tern_backend *create(const tern_plugin_info *pi, const char *kernel, const char *head)
{
    tern_backend_options opt = tern_backend_default_options();
    opt.n_threads = 3;
    if (kernel) opt.kernel = kernel;
    if (head) opt.head = head;
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

/* A ternary matmul case: random codes packed as type, activation rows of
 * several kinds quantized by the test-side quantizer. */
static conf_case *ternary_case(conf_list *l, int type, int64_t K, int64_t N, int64_t T,
                               unsigned long long *rng)
{
    conf_case *c = conf_new(l, TERN_OP_MATMUL_TERNARY, "%s K=%lld N=%lld tok=%lld",
                            tern_type_name(type), (long long)K, (long long)N, (long long)T);
    int64_t xne[2] = {K, T}, wne[2] = {K, N}, dne[2] = {N, T};
    uint8_t *q = conf_src(c, 0, TERN_TYPE_Q8_TOK, 2, xne);
    float *x = xalloc((size_t)(K * T) * 4);
    for (int64_t i = 0; i < K * T; i++) x[i] = tu_randf(rng) * (i % 97 == 0 ? 30.0f : 1.0f);
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
        ck_assert_msg(rs == CONF_RUN_OK, "x86 %s [%s] nth=%d: %s", kernel, c->label, nth,
                      rs == CONF_RUN_FALLBACK ? "fell back" : why);
        for (size_t i = 0; i < c->dst_bytes; i += 4)
            ck_assert_msg(!memcmp(ref + i, out + i, 4), "x86 %s [%s] nth=%d: output %zu: %a vs %a",
                          kernel, c->label, nth, i / 4, (double)((float *)out)[i / 4],
                          (double)((float *)ref)[i / 4]);
    }
    free(ref);
    free(out);
}

static const char *const kernels[] = {"mad", "bitserial", "lut", "mad-avx2", "auto"};

START_TEST(test_ternary_families)
{
    be_pair p;
    if (!open_pair(&p)) return;
    tern_backend *sc = create(p.scalar, NULL, NULL), *be = create(p.x86, kernels[_i], NULL);
    static const int types[] = {TERN_TYPE_TQ1_0, TERN_TYPE_TQ2_0, TERN_TYPE_I2_S};
    static const int64_t Ks[] = {256, 768, 2560, 6912}, Ns[] = {1, 7, 257}, Ts[] = {1, 17};
    unsigned long long rng = 0x7e4a + (unsigned long long)_i;
    conf_list l = {0};
    for (int ti = 0; ti < 3; ti++)
        for (int ki = 0; ki < 4; ki++)
            for (int ni = 0; ni < 3; ni++)
                for (int si = 0; si < 2; si++)
                    if (Ks[ki] < 6912 || ni > 0) ternary_case(&l, types[ti], Ks[ki], Ns[ni], Ts[si], &rng);
    /* I2_S rows need not be whole 16- or 64-value blocks */
    ternary_case(&l, TERN_TYPE_I2_S, 100, 32, 17, &rng);
    ternary_case(&l, TERN_TYPE_I2_S, 132, 32, 1, &rng);
    ternary_case(&l, TERN_TYPE_I2_S, 4, 96, 3, &rng);
    for (int i = 0; i < l.n; i++) expect_exact(sc, be, &l.v[i], kernels[_i]);
    char desc[512];
    be->api->describe(be->ctx, desc, sizeof desc);
    printf("x86 kernel=%s: %d ternary cases exact (nth 1..3); %s\n", kernels[_i], l.n, desc);
    conf_list_free(&l);
    tern_backend_free(sc);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

static const char *const attn_kernels[] = {"auto", "mad-avx2"};

/* Token t of a batch gets the same bits as token t alone: the float
 * matmul's GEMM tiles run the GEMV's chains. Q8_0, an integer path, also
 * equals scalar byte for byte (AVX-512 tiles and AVX2 rows). */
START_TEST(test_matmul_batch_invariant)
{
    be_pair p;
    if (!open_pair(&p)) return;
    tern_backend *be = create(p.x86, attn_kernels[_i], NULL), *sc = create(p.scalar, NULL, NULL);
    static const int types[] = {TERN_TYPE_F32, TERN_TYPE_F16, TERN_TYPE_BF16, TERN_TYPE_Q8_0};
    unsigned long long rng = 0xba7c4;
    for (int ti = 0; ti < 4; ti++) {
        conf_list l = {0};
        int64_t K = 2560 + 32 * (ti == 0), N = 37, T = 7;
        conf_case *all = conf_float_matmul(&l, types[ti], K, N, T, "blk.0.w", &rng);
        uint8_t *out = xalloc(all->dst_bytes), *one = xalloc((size_t)N * 4);
        char why[300];
        ck_assert_msg(conf_run(be, all, 2, out, why, sizeof why) == CONF_RUN_OK, "%s", why);
        if (types[ti] == TERN_TYPE_Q8_0) {
            uint8_t *ref = xalloc(all->dst_bytes);
            ck_assert(conf_run(sc, all, 1, ref, why, sizeof why) == CONF_RUN_OK);
            ck_assert_msg(!memcmp(ref, out, all->dst_bytes), "q8_0 (%s) differs from scalar", attn_kernels[_i]);
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
 * then the Q8_0 matmul. Its outputs must equal the definition run on the
 * requantized rows bit for bit, and scalar's q8 head's, and stay within the quantization bound of
 * scalar's F16 result: per block b, each weight moves by at most
 * ew_b = amax_w,b (1/254 + 2^-11) (the code's rounding and the f16 scale's),
 * each activation by at most ex_b = amax_x,b / 254, so
 * |dy| <= sum_k |x_k| ew_b + |w_k| ex_b + ew_b ex_b (+ 1e-5 sum|x||w|). */
START_TEST(test_q8_head)
{
    be_pair p;
    if (!open_pair(&p)) return;
    tern_backend *sc = create(p.scalar, NULL, "f16"), *sq = create(p.scalar, NULL, "q8");
    tern_backend *be = create(p.x86, attn_kernels[_i], "q8");
    unsigned long long rng = 0x0e8d;
    const int64_t K = 2560, N = 257, nb = K / 32;
    float *wf = xalloc((size_t)K * 4), *xd = xalloc((size_t)nb * 4);
    uint8_t *wq = xalloc((size_t)nb * 34);
    int8_t *xq = xalloc((size_t)K);
    for (int64_t T = 1; T <= 3; T += 2) {
        conf_list l = {0};
        conf_case *c = conf_float_matmul(&l, TERN_TYPE_F16, K, N, T, "output.weight", &rng);
        c->purpose = TERN_REPACK_HEAD; /* the head is a purpose, not a name */
        uint8_t *ref = xalloc(c->dst_bytes), *out = xalloc(c->dst_bytes);
        char why[300];
        ck_assert(conf_run(sc, c, 1, ref, why, sizeof why) == CONF_RUN_OK);
        ck_assert_msg(conf_run(be, c, 2, out, why, sizeof why) == CONF_RUN_OK, "%s", why);
        uint8_t *ref_q8 = xalloc(c->dst_bytes); /* scalar's q8 head: the oracle's bytes */
        ck_assert_msg(conf_run(sq, c, 1, ref_q8, why, sizeof why) == CONF_RUN_OK, "%s", why);
        ck_assert_msg(!memcmp(ref_q8, out, c->dst_bytes), "q8 head (T=%lld): x86 and scalar differ", (long long)T);
        free(ref_q8);
        double worst = 0.0, maxd = 0.0;
        for (int64_t t = 0; t < T; t++) {
            const float *x = (const float *)c->src[0].data + t * K;
            tern_quantize_act_q8_0(x, K, xq, xd);
            for (int64_t n = 0; n < N; n++) {
                const uint16_t *w = (const uint16_t *)c->src[1].data + n * K;
                for (int64_t k = 0; k < K; k++) wf[k] = tern_f16_to_f32(w[k]);
                tern_quantize_q8_0(wf, K, wq);
                float want = tern_dot_q8_0(wq, xq, xd, K), got = ((float *)out)[t * N + n];
                ck_assert_msg(!memcmp(&got, &want, 4), "q8 head token %lld row %lld: %.9g, the definition %.9g",
                              (long long)t, (long long)n, got, want);
                double bound = 0.0, mag = 0.0;
                for (int64_t b = 0; b < nb; b++) {
                    double aw = 0.0, ax = 0.0, sx = 0.0, sw = 0.0;
                    for (int64_t k = 32 * b; k < 32 * b + 32; k++) {
                        aw = fmax(aw, fabs(wf[k])), ax = fmax(ax, fabs(x[k]));
                        sx += fabs(x[k]), sw += fabs(wf[k]), mag += fabs(x[k] * wf[k]);
                    }
                    double ew = aw * (1.0 / 254 + 1.0 / 2048), ex = ax / 254;
                    bound += sx * ew + sw * ex + 32 * ew * ex;
                }
                bound = bound * 1.001 + 1e-5 * mag;
                double d = fabs((double)got - ((float *)ref)[t * N + n]);
                ck_assert_msg(d <= bound, "q8 head token %lld row %lld: |dy| %g > bound %g",
                              (long long)t, (long long)n, d, bound);
                worst = fmax(worst, d / bound);
                maxd = fmax(maxd, d);
            }
        }
        if (T == 3) { /* batch invariance of the q8 head too */
            for (int64_t t = 0; t < T; t++) {
                conf_case single = *c;
                single.src[0].ne[1] = 1;
                single.src[0].data = (uint8_t *)c->src[0].data + t * c->src[0].nb[1];
                single.dst.ne[1] = 1;
                single.dst_bytes = (size_t)N * 4;
                uint8_t *one = xalloc((size_t)N * 4);
                ck_assert(conf_run(be, &single, 1, one, why, sizeof why) == CONF_RUN_OK);
                ck_assert_msg(!memcmp(one, out + t * N * 4, (size_t)N * 4), "q8 head: token %lld alone differs",
                              (long long)t);
                free(one);
            }
        }
        printf("x86 q8 head (q8_0) vs scalar f16 (K=%lld N=%lld tok=%lld): equal to the definition, max |dy| %.3g, "
               "worst %.2f of the bound\n",
               (long long)K, (long long)N, (long long)T, maxd, worst);
        free(ref);
        free(out);
        conf_list_free(&l);
    }
    free(wf), free(xd), free(wq), free(xq);
    char desc[512];
    be->api->describe(be->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "head q8") != NULL, "describe: %s", desc);
    /* a tensor that is not the head stays f16 as stored */
    conf_list l = {0};
    conf_case *c = conf_float_matmul(&l, TERN_TYPE_F16, 256, 7, 1, "blk.0.ffn_up.weight", &rng);
    tern_tensor dst;
    char msg[256];
    ck_assert(be->api->repack(be->ctx, &c->src[1], TERN_REPACK_MATMUL, &dst, msg, sizeof msg) == TERN_OK);
    ck_assert_int_eq(dst.layout, TERN_LAYOUT_FILE);
    ck_assert_ptr_eq(dst.data, c->src[1].data);
    conf_list_free(&l);
    tern_backend_free(sc);
    tern_backend_free(sq);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

/* ATTENTION bit-identical to scalar (it computes scalar's double formula,
 * see backends/x86/attn_avx512.c): the conformance cases plus head sizes
 * that are not multiples of 8 or 64, the 2B4T shape (128, 20/5 heads), F32
 * and F16 caches, on the AVX-512 path and the AVX2 one ("mad-avx2"). */
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
    if (!open_pair(&p)) return;
    tern_backend *sc = create(p.scalar, NULL, NULL), *be = create(p.x86, attn_kernels[_i], NULL);
    unsigned long long rng = 0xa77e + (unsigned long long)_i;
    conf_list l = {0};
    for (int o = 0; o < conf_n_ops; o++)
        if (conf_ops[o].op == TERN_OP_ATTENTION) conf_ops[o].gen(&l, &rng);
    static const int64_t cfg[][5] = {{128, 20, 5, 200, 9}, {80, 4, 2, 70, 5}, {100, 3, 1, 33, 4},
                                     {36, 2, 2, 19, 19}, {8, 2, 1, 5, 2}, {200, 2, 1, 9, 3}};
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++)
            attention_case(&l, f16 ? TERN_TYPE_F16 : TERN_TYPE_F32, cfg[i][0], cfg[i][1], cfg[i][2],
                           cfg[i][3], cfg[i][4], &rng);
    for (int i = 0; i < l.n; i++) expect_exact(sc, be, &l.v[i], attn_kernels[_i]);
    printf("x86 %s: %d attention cases bit-identical to scalar (nth 1..3)\n", attn_kernels[_i], l.n);
    conf_list_free(&l);
    tern_backend_free(sc);
    tern_backend_free(be);
    tern_registry_free(p.reg);
}
END_TEST

START_TEST(test_probe_and_options)
{
    be_pair p;
    if (!open_pair(&p)) return;
    ck_assert_int_gt(p.x86->probe.score, 1);
    ck_assert_msg(strstr(p.x86->probe.desc, "mad") != NULL, "%s", p.x86->probe.desc);
    tern_backend_options opt = tern_backend_default_options();
    opt.kernel = "fastest";
    tern_backend *be;
    tern_error err;
    ck_assert_int_eq(tern_backend_create(p.x86, &opt, NULL, &be, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "fastest") != NULL, "%s", err.msg);
    opt.kernel = "auto";
    opt.head = "q4";
    ck_assert_int_eq(tern_backend_create(p.x86, &opt, NULL, &be, &err), TERN_EINVAL);
    tern_registry_free(p.reg);
}
END_TEST

Suite *x86_suite(void)
{
    Suite *s = suite_create("x86");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_ternary_families, 0, (int)(sizeof kernels / sizeof kernels[0]));
    tcase_add_loop_test(tc, test_matmul_batch_invariant, 0, 2);
    tcase_add_loop_test(tc, test_q8_head, 0, 2);
    tcase_add_loop_test(tc, test_attention_exact, 0, 2);
    tcase_add_test(tc, test_probe_and_options);
    suite_add_tcase(s, tc);
    return s;
}
