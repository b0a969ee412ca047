/* values.c - the scalar ops on hand-picked inputs whose answers are known
 * in closed form: rounding ties, the amax floor, exact norms, identity
 * rotations, one-row attention. Plus checks that the comparator catches a
 * wrong result, so the conformance table cannot pass vacuously. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "conformance/conformance.h"

static tern_registry *g_reg;

static tern_backend *scalar(void)
{
    tern_error err;
    const tern_plugin_info *p;
    ck_assert_msg(tern_registry_scan(&g_reg, &err) == TERN_OK, "%s", err.msg);
    ck_assert_msg(tern_registry_select(g_reg, "scalar", &p, &err) == TERN_OK, "%s", err.msg);
    tern_backend *be;
    ck_assert_msg(tern_backend_create(p, NULL, NULL, &be, &err) == TERN_OK, "%s", err.msg);
    return be;
}

static void done(tern_backend *be)
{
    tern_backend_free(be);
    tern_registry_free(g_reg);
    g_reg = NULL;
}

/* Runs c on scalar with nth threads into a fresh buffer (caller frees). */
static uint8_t *run(tern_backend *be, const conf_case *c, int nth)
{
    uint8_t *out = calloc(1, c->dst_bytes + 64);
    char why[256] = "";
    conf_run_status rs = conf_run(be, c, nth, out, why, sizeof why);
    ck_assert_msg(rs == CONF_RUN_OK, "%s: %s", c->label,
                  rs == CONF_RUN_FALLBACK ? "scalar refused the node" : why);
    return out;
}

static float f32(const uint8_t *p, int64_t i)
{
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

START_TEST(test_quantize_ties_and_floor)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    enum { K = 10 };
    int64_t ne[2] = {K, 4};
    conf_case *c = conf_new(&l, TERN_OP_QUANTIZE_ACT, "hand-picked");
    float *x = conf_src(c, 0, TERN_TYPE_F32, 2, ne);
    /* row 0: amax 127 so inv = 1 exactly and x*inv is x: ties to even */
    const float r0[K] = {127, 2.5f, 3.5f, -2.5f, 0.5f, 1.5f, -0.5f, -127, -126.5f, 126.5f};
    const int8_t q0[K] = {127, 2, 4, -2, 0, 2, 0, -127, -126, 126};
    /* row 2: below the floor, amax = 1e-5: inv = 127 / 1e-5f */
    const float r2[K] = {1e-6f, -3e-6f, 0, 0, 0, 0, 0, 0, 0, 0};
    /* row 3: inv = 127, 0.5 * 127 = 63.5 is a tie -> 64 */
    const float r3[K] = {-1, 1, 0.5f, -0.5f, 0, 0, 0, 0, 0, 0};
    const int8_t q3[K] = {-127, 127, 64, -64, 0, 0, 0, 0, 0, 0};
    memcpy(x, r0, sizeof r0);
    memset(x + K, 0, K * 4); /* row 1: zeros */
    memcpy(x + 2 * K, r2, sizeof r2);
    memcpy(x + 3 * K, r3, sizeof r3);
    conf_dst(c, TERN_TYPE_Q8_TOK, 2, ne);
    uint8_t *out = run(be, c, 2);
    size_t rs = c->dst.nb[1];
    ck_assert_uint_eq(rs, 128);
    const int8_t *expect[4] = {q0, NULL, NULL, q3};
    const float invs[4] = {1.0f, 127.0f / 1e-5f, 127.0f / 1e-5f, 127.0f};
    const int32_t sums[4] = {6, 0, 13 - 38, 0};
    for (int r = 0; r < 4; r++) {
        const uint8_t *row = out + r * rs;
        tern_q8tok_header h;
        memcpy(&h, row, sizeof h);
        ck_assert_msg(h.inv == invs[r], "row %d inv %.9g want %.9g", r, h.inv, invs[r]);
        ck_assert_int_eq(h.sum, sums[r]);
        for (int i = 0; i < 56; i++) ck_assert_uint_eq(h.pad[i], 0);
        for (int k = 0; k < K; k++) {
            int8_t q = (int8_t)row[64 + k];
            int8_t want = expect[r] ? expect[r][k] : 0;
            if (r == 2) want = k == 0 ? 13 : k == 1 ? -38 : 0; /* 12.7 -> 13, -38.1 -> -38 */
            ck_assert_msg(q == want, "row %d k %d: q %d want %d", r, k, q, want);
            ck_assert_int_ge(q, -127); /* x*inv never goes below -127 */
        }
        for (size_t k = 64 + K; k < rs; k++) ck_assert_uint_eq(row[k], 0); /* padding zeroed */
    }
    free(out);
    conf_list_free(&l);
    done(be);
}
END_TEST

START_TEST(test_rms_norm_values)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    int64_t ne[2] = {2, 3}, K = 2;
    conf_case *c = conf_new(&l, TERN_OP_RMS_NORM, "hand-picked");
    float *x = conf_src(c, 0, TERN_TYPE_F32, 2, ne), *w = conf_src(c, 1, TERN_TYPE_F32, 1, &K);
    const float in[6] = {3, 4, 1, 1, 0, 0};
    memcpy(x, in, sizeof in);
    w[0] = 2.0f;
    w[1] = 0.5f;
    c->fparams[0] = 0.0f;
    conf_dst(c, TERN_TYPE_F32, 2, ne);
    uint8_t *out = run(be, c, 1);
    /* rms of (3, 4) is sqrt(12.5) */
    ck_assert_float_eq(f32(out, 0), (float)(3 * 2.0 / sqrt(12.5)));
    ck_assert_float_eq(f32(out, 1), (float)(4 * 0.5 / sqrt(12.5)));
    ck_assert_float_eq(f32(out, 2), 2.0f);
    ck_assert_float_eq(f32(out, 3), 0.5f);
    ck_assert(isnan(f32(out, 4))); /* 0 / sqrt(0 + eps=0): the op does not invent an eps */
    free(out);
    c->fparams[0] = 1e-5f;
    out = run(be, c, 1);
    ck_assert_float_eq(f32(out, 4), 0.0f);
    ck_assert_float_eq(f32(out, 5), 0.0f);
    free(out);
    conf_list_free(&l);
    done(be);
}
END_TEST

START_TEST(test_rope_values)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    int64_t ne[3] = {4, 1, 2};
    conf_case *c = conf_new(&l, TERN_OP_ROPE, "hand-picked");
    float *x = conf_src(c, 0, TERN_TYPE_F32, 3, ne);
    int64_t two = 2;
    int32_t *pos = conf_src(c, 1, TERN_TYPE_I32, 1, &two);
    const float in[8] = {1, 0, 5, 7, 1, 0, 5, 7};
    memcpy(x, in, sizeof in);
    pos[0] = 0; /* no turn */
    pos[1] = 1; /* angle freq_scale * 1 = pi/2 for pair 0 */
    c->iparams[0] = TERN_ROPE_NORMAL;
    c->iparams[1] = 2; /* only (x0, x1) rotates; 5, 7 are copied */
    c->fparams[0] = 10000.0f;
    c->fparams[1] = (float)(M_PI / 2);
    conf_dst(c, TERN_TYPE_F32, 3, ne);
    uint8_t *out = run(be, c, 1);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(f32(out, i), in[i]);
    ck_assert_float_eq_tol(f32(out, 4), 0.0f, 1e-7);
    ck_assert_float_eq_tol(f32(out, 5), 1.0f, 1e-7);
    ck_assert_float_eq(f32(out, 6), 5.0f);
    ck_assert_float_eq(f32(out, 7), 7.0f);
    free(out);
    /* NEOX pairs (0, 2) and (1, 3) with n_dims = 4: pair 1 turns by
     * angle * 10000^(-1/2) = pi/200. */
    c->iparams[0] = TERN_ROPE_NEOX;
    c->iparams[1] = 4;
    out = run(be, c, 1);
    double a1 = M_PI / 2 / 100.0;
    ck_assert_float_eq_tol(f32(out, 4), 1 * cos(M_PI / 2) - 5 * sin(M_PI / 2), 1e-6);
    ck_assert_float_eq_tol(f32(out, 6), 1 * sin(M_PI / 2) + 5 * cos(M_PI / 2), 1e-6);
    ck_assert_float_eq_tol(f32(out, 5), 0 * cos(a1) - 7 * sin(a1), 1e-6);
    ck_assert_float_eq_tol(f32(out, 7), 0 * sin(a1) + 7 * cos(a1), 1e-6);
    free(out);
    conf_list_free(&l);
    done(be);
}
END_TEST

/* At position 0 a token sees one cache row: softmax of one score is 1,
 * so the output is that V row exactly. Two equal scores average. */
START_TEST(test_attention_values)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    int64_t qne[3] = {2, 4, 2}, cne[3] = {2, 1, 8}, two = 2;
    conf_case *c = conf_new(&l, TERN_OP_ATTENTION, "hand-picked");
    float *q = conf_src(c, 0, TERN_TYPE_F32, 3, qne);
    float *k = conf_src(c, 1, TERN_TYPE_F32, 3, cne), *v = conf_src(c, 2, TERN_TYPE_F32, 3, cne);
    int32_t *pos = conf_src(c, 3, TERN_TYPE_I32, 1, &two);
    for (int i = 0; i < 8; i++) q[i] = (float)i, q[8 + i] = 0.0f; /* token 1: q = 0, equal scores */
    for (int i = 0; i < 16; i++) k[i] = (float)(i % 3), v[i] = (float)(i * i);
    pos[0] = 0;
    pos[1] = 1;
    c->fparams[0] = 0.5f;
    conf_dst(c, TERN_TYPE_F32, 3, qne);
    uint8_t *out = run(be, c, 3);
    for (int h = 0; h < 4; h++) { /* GQA 4:1: every head reads kv head 0 */
        ck_assert_float_eq(f32(out, 2 * h), v[0]);
        ck_assert_float_eq(f32(out, 2 * h + 1), v[1]);
        ck_assert_float_eq(f32(out, 8 + 2 * h), (v[0] + v[2]) / 2);
        ck_assert_float_eq(f32(out, 8 + 2 * h + 1), (v[1] + v[3]) / 2);
    }
    free(out);
    conf_list_free(&l);
    done(be);
}
END_TEST

START_TEST(test_small_ops_values)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    int64_t ne[2] = {2, 2};
    conf_case *c = conf_new(&l, TERN_OP_SOFTMAX, "hand-picked");
    float *x = conf_src(c, 0, TERN_TYPE_F32, 2, ne);
    x[0] = 0.0f, x[1] = (float)log(3.0), x[2] = 1000.0f, x[3] = 1000.0f; /* no overflow */
    c->fparams[0] = 1.0f;
    conf_dst(c, TERN_TYPE_F32, 2, ne);
    uint8_t *out = run(be, c, 1);
    ck_assert_float_eq_tol(f32(out, 0), 0.25f, 1e-7);
    ck_assert_float_eq_tol(f32(out, 1), 0.75f, 1e-7);
    ck_assert_float_eq(f32(out, 2), 0.5f);
    ck_assert_float_eq(f32(out, 3), 0.5f);
    free(out);
    c->op = TERN_OP_RELU_SQ;
    x[0] = -3.0f, x[1] = 3.0f, x[2] = 0.5f, x[3] = -0.0f;
    out = run(be, c, 1);
    ck_assert_float_eq(f32(out, 0), 0.0f);
    ck_assert_float_eq(f32(out, 1), 9.0f);
    ck_assert_float_eq(f32(out, 2), 0.25f);
    ck_assert_float_eq(f32(out, 3), 0.0f);
    free(out);
    c->op = TERN_OP_SILU;
    x[0] = 0.0f, x[1] = 1.0f, x[2] = -100.0f, x[3] = 100.0f;
    out = run(be, c, 1);
    ck_assert_float_eq(f32(out, 0), 0.0f);
    ck_assert_float_eq_tol(f32(out, 1), (float)(1.0 / (1.0 + exp(-1.0))), 1e-7);
    ck_assert_float_eq_tol(f32(out, 2), 0.0f, 1e-30);
    ck_assert_float_eq(f32(out, 3), 100.0f);
    free(out);
    conf_list_free(&l);
    done(be);
}
END_TEST

/* An id outside the table gives NaN, not a read out of bounds. */
START_TEST(test_get_rows_bad_id)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    int64_t ne[2] = {4, 2}, n = 2, dne[2] = {4, 2};
    conf_case *c = conf_new(&l, TERN_OP_GET_ROWS, "bad id");
    float *t = conf_src(c, 0, TERN_TYPE_F32, 2, ne);
    for (int i = 0; i < 8; i++) t[i] = (float)i;
    int32_t *ids = conf_src(c, 1, TERN_TYPE_I32, 1, &n);
    ids[0] = 1;
    ids[1] = 2;
    conf_dst(c, TERN_TYPE_F32, 2, dne);
    uint8_t *out = run(be, c, 1);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(f32(out, i), (float)(4 + i));
    for (int i = 4; i < 8; i++) ck_assert(isnan(f32(out, i)));
    free(out);
    conf_list_free(&l);
    done(be);
}
END_TEST

/* scalar's repack: codes and scale come back; release frees; types it
 * cannot take are EUNSUPPORTED naming the tensor; blocks with different
 * scales are refused. */
START_TEST(test_scalar_repack)
{
    tern_backend *be = scalar();
    enum { K = 256, N = 2 };
    static int8_t codes[K * N];
    static uint8_t buf[K * N];
    for (int i = 0; i < K * N; i++) codes[i] = (int8_t)(i % 3 - 1);
    int64_t ne[2] = {K, N};
    tern_tensor t, r;
    tern_tensor_init(&t, TERN_TYPE_I2_S, 2, ne);
    tern_pack_i2_s(codes, K * N, 0.125f, buf);
    t.data = buf;
    t.scale = 0.125f;
    t.name = "blk.0.attn_q.weight";
    char err[256];
    ck_assert_int_eq(be->api->repack(be->ctx, &t, TERN_REPACK_TERNARY, &r, err, sizeof err), TERN_OK);
    ck_assert_int_eq(r.layout, TERN_LAYOUT_BACKEND);
    ck_assert_float_eq(r.scale, 0.125f);
    ck_assert_mem_eq(r.data, codes, K * N);
    be->api->release(be->ctx, &r);
    ck_assert_ptr_null(r.data);
    ck_assert_int_eq(be->api->repack(be->ctx, &t, TERN_REPACK_MATMUL, &r, err, sizeof err),
                     TERN_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "blk.0.attn_q.weight"));
    /* TQ2_0 whose second row has another scale */
    static uint8_t tq[2 * 66];
    tern_tensor_init(&t, TERN_TYPE_TQ2_0, 2, ne);
    tern_pack_tq2_0(codes, K, 0.5f, tq);
    tern_pack_tq2_0(codes + K, K, 0.25f, tq + 66);
    t.data = tq;
    t.name = "mixed";
    ck_assert_int_eq(be->api->repack(be->ctx, &t, TERN_REPACK_TERNARY, &r, err, sizeof err),
                     TERN_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "mixed"));
    done(be);
}
END_TEST

/* supports_op refuses what the kernels cannot do, e.g. a file-layout
 * ternary weight for matmul_ternary or shapes that disagree. */
START_TEST(test_scalar_supports)
{
    tern_backend *be = scalar();
    conf_list l = {0};
    unsigned long long rng = 5;
    conf_case *c = conf_new(&l, TERN_OP_ADD, "mismatch");
    int64_t a[2] = {8, 2}, b[2] = {8, 3};
    conf_src(c, 0, TERN_TYPE_F32, 2, a);
    conf_src(c, 1, TERN_TYPE_F32, 2, b);
    conf_dst(c, TERN_TYPE_F32, 2, a);
    uint8_t out[64];
    char why[128];
    ck_assert_int_eq(conf_run(be, c, 1, out, why, sizeof why), CONF_RUN_FALLBACK);
    /* a ternary matmul handed the weight in file layout (no repack) */
    c = conf_new(&l, TERN_OP_MATMUL_TERNARY, "file layout");
    int64_t xne[2] = {256, 1}, wne[2] = {256, 2}, dne[2] = {2, 1};
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = tu_randf(&rng);
    conf_quantize_row(x, 256, conf_src(c, 0, TERN_TYPE_Q8_TOK, 2, xne));
    conf_src(c, 1, TERN_TYPE_TQ2_0, 2, wne);
    conf_dst(c, TERN_TYPE_F32, 2, dne);
    ck_assert_int_eq(conf_run(be, c, 1, out, why, sizeof why), CONF_RUN_FALLBACK);
    conf_list_free(&l);
    done(be);
}
END_TEST

/* The comparator is what turns the table red: one flipped bit in an
 * integer path, one nudge beyond tolerance, one NaN must all be caught. */
START_TEST(test_comparator_catches)
{
    conf_list l = {0};
    int64_t ne[2] = {4, 2};
    conf_case *c = conf_new(&l, TERN_OP_ADD, "comparator");
    conf_dst(c, TERN_TYPE_F32, 2, ne);
    float want[8] = {1, 2, 3, 4, 5, 6, 7, 1e6f}, got[8];
    memcpy(got, want, sizeof got);
    ck_assert_int_eq(conf_compare(c, CONF_EXACT, 0, (uint8_t *)got, (uint8_t *)want).bad, 0);
    uint32_t bits;
    memcpy(&bits, &got[2], 4);
    bits ^= 1;
    memcpy(&got[2], &bits, 4);
    conf_score sc = conf_compare(c, CONF_EXACT, 0, (uint8_t *)got, (uint8_t *)want);
    ck_assert_int_eq(sc.bad, 1);
    ck_assert_int_eq(sc.first_bad, 8);
    memcpy(got, want, sizeof got);
    got[7] = 1e6f * (1 + 2e-5f); /* relative 2e-5 > 1e-5 */
    ck_assert_int_eq(conf_compare(c, CONF_FLOAT, 1e-5, (uint8_t *)got, (uint8_t *)want).bad, 1);
    got[7] = 1e6f * (1 + 5e-6f);
    ck_assert_int_eq(conf_compare(c, CONF_FLOAT, 1e-5, (uint8_t *)got, (uint8_t *)want).bad, 0);
    got[0] = NAN;
    ck_assert_int_eq(conf_compare(c, CONF_FLOAT, 1e-5, (uint8_t *)got, (uint8_t *)want).bad, 1);
    conf_list_free(&l);
}
END_TEST

/* The oracles themselves must be able to fail: a scalar result with one
 * output off by an ulp fails the matmul_ternary definition check. */
START_TEST(test_oracle_catches)
{
    tern_backend *be = scalar();
    unsigned long long rng = 99;
    for (int o = 0; o < conf_n_ops; o++) {
        if (conf_ops[o].op != TERN_OP_MATMUL_TERNARY && conf_ops[o].op != TERN_OP_ATTENTION)
            continue;
        conf_list l = {0};
        conf_ops[o].gen(&l, &rng);
        conf_case *c = &l.v[1];
        conf_ops[o].oracle(c);
        uint8_t *out = run(be, c, 2);
        ck_assert_int_eq(conf_compare(c, conf_ops[o].cmp, conf_ops[o].oracle_tol, out, c->expect).bad, 0);
        float f = f32(out, 3);
        f = nextafterf(f, INFINITY) * (conf_ops[o].cmp == CONF_EXACT ? 1.0f : 1.001f);
        memcpy(out + 12, &f, 4);
        ck_assert_int_eq(conf_compare(c, conf_ops[o].cmp, conf_ops[o].oracle_tol, out, c->expect).bad, 1);
        free(out);
        conf_list_free(&l);
    }
    done(be);
}
END_TEST

TCase *conformance_values_tcase(void)
{
    TCase *tc = tcase_create("scalar values");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_quantize_ties_and_floor);
    tcase_add_test(tc, test_rms_norm_values);
    tcase_add_test(tc, test_rope_values);
    tcase_add_test(tc, test_attention_values);
    tcase_add_test(tc, test_small_ops_values);
    tcase_add_test(tc, test_get_rows_bad_id);
    tcase_add_test(tc, test_scalar_repack);
    tcase_add_test(tc, test_scalar_supports);
    tcase_add_test(tc, test_comparator_catches);
    tcase_add_test(tc, test_oracle_catches);
    return tc;
}
