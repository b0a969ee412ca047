/* test_sampler.c - the sampler chain against hand-built logits, against a
 * plain full-sort reference of llama.cpp's chain, the draw's statistics,
 * determinism per seed, and a speed sanity check at Llama 3's vocabulary. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/testutil.h"
#include "tern/sampler.h"

/* Every filter off: probs is the softmax of the penalized logits at temp. */
static tern_sampler_params plain_params(float temp)
{
    tern_sampler_params p = tern_sampler_default_params();
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

static tern_sampler *make(const tern_sampler_params *p, int32_t n_vocab)
{
    tern_sampler *s = NULL;
    tern_error err = {0};
    ck_assert_msg(tern_sampler_create(p, n_vocab, &s, &err) == TERN_OK, "%s", err.msg);
    return s;
}

/* logits[i] = log(p[i]), so the softmax at temp 1 gives p back. */
static void log_probs(const double *p, int n, float *logits)
{
    for (int i = 0; i < n; i++) logits[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

static int n_nonzero(const float *probs, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += probs[i] != 0;
    return c;
}

START_TEST(test_defaults)
{
    tern_sampler_params p = tern_sampler_default_params();
    ck_assert_uint_eq(p.struct_size, sizeof p);
    ck_assert_float_eq(p.temp, 0.8f);
    ck_assert_int_eq(p.top_k, 40);
    ck_assert_float_eq(p.top_p, 0.95f);
    ck_assert_float_eq(p.min_p, 0.05f);
    ck_assert_float_eq(p.repeat_penalty, 1.0f);
    ck_assert_int_eq(p.repeat_last_n, 64);
    ck_assert_float_eq(p.freq_penalty, 0.0f);
    ck_assert_float_eq(p.presence_penalty, 0.0f);
    ck_assert_uint_eq(p.seed, TERN_SAMPLER_SEED_RANDOM);

    tern_sampler *s = make(NULL, 10);
    ck_assert_uint_ne(tern_sampler_seed(s), TERN_SAMPLER_SEED_RANDOM);
    ck_assert_int_eq(tern_sampler_n_vocab(s), 10);
    tern_sampler_free(s);
    tern_sampler_free(NULL);
    tern_sampler_reset(NULL);
}
END_TEST

START_TEST(test_create_errors)
{
    tern_sampler *s = (tern_sampler *)1;
    tern_error err = {0};
    tern_sampler_params p = tern_sampler_default_params();
    ck_assert_int_eq(tern_sampler_create(&p, 0, &s, &err), TERN_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err.msg, "tern_sampler_create: n_vocab 0 must be > 0");
    p.temp = NAN;
    ck_assert_int_eq(tern_sampler_create(&p, 8, &s, &err), TERN_EINVAL);
    ck_assert_str_eq(err.msg, "sampler params: temp is NaN");
    p = tern_sampler_default_params();
    p.repeat_penalty = 0;
    ck_assert_int_eq(tern_sampler_create(&p, 8, &s, &err), TERN_EINVAL);
    ck_assert_str_eq(err.msg, "sampler params: repeat_penalty 0 must be > 0");
    p = tern_sampler_default_params();
    p.repeat_last_n = -1;
    ck_assert_int_eq(tern_sampler_create(&p, 8, &s, &err), TERN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "repeat_last_n -1"));
    p = tern_sampler_default_params();
    p.struct_size = 0;
    ck_assert_int_eq(tern_sampler_create(&p, 8, &s, &err), TERN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "struct_size 0"));
    p.struct_size = sizeof p + 8;
    ck_assert_int_eq(tern_sampler_create(&p, 8, &s, &err), TERN_EINVAL);
    ck_assert_int_eq(tern_sampler_create(&p, 8, NULL, &err), TERN_EINVAL);
}
END_TEST

/* An older, shorter struct: the fields it lacks take their defaults. */
START_TEST(test_short_struct)
{
    tern_sampler_params p = tern_sampler_default_params();
    p.temp = 0;
    p.top_k = 7;
    p.seed = 99;
    p.struct_size = offsetof(tern_sampler_params, top_k) + sizeof p.top_k;
    tern_sampler *s = make(&p, 4);
    ck_assert_uint_ne(tern_sampler_seed(s), 99); /* seed was past the end: random */
    float logits[4] = {0, 2, 1, 0}, probs[4];
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    ck_assert_float_eq(probs[1], 1.0f); /* temp 0 was inside: greedy */
    tern_sampler_free(s);
}
END_TEST

START_TEST(test_greedy)
{
    tern_sampler_params p = tern_sampler_default_params();
    p.temp = 0;
    tern_sampler *s = make(&p, 6);
    float logits[6] = {1, 3, -2, 3, 2.5f, 3};
    for (int i = 0; i < 5; i++) ck_assert_int_eq(tern_sampler_sample(s, logits), 1); /* lowest id of the ties */
    float probs[6];
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(probs[i], i == 1 ? 1.0f : 0.0f);
    /* NaN is -inf; all of them NaN or -inf: id 0 */
    float odd[6] = {NAN, -INFINITY, NAN, -1, NAN, -3};
    ck_assert_int_eq(tern_sampler_sample(s, odd), 3);
    float none[6] = {NAN, -INFINITY, NAN, -INFINITY, NAN, NAN};
    ck_assert_int_eq(tern_sampler_sample(s, none), 0);
    float inf[6] = {0, INFINITY, 1, INFINITY, 0, 0};
    ck_assert_int_eq(tern_sampler_sample(s, inf), 1);
    ck_assert_int_eq(tern_sampler_sample(s, NULL), -1);
    ck_assert_int_eq(tern_sampler_sample(NULL, logits), -1);
    ck_assert_int_eq(tern_sampler_probs(s, NULL, probs), TERN_EINVAL);
    tern_sampler_free(s);
}
END_TEST

START_TEST(test_top_k_1_is_greedy)
{
    enum { V = 3000 };
    static float logits[V];
    tern_sampler_params pg = tern_sampler_default_params(), pk = pg;
    pg.temp = 0;
    pk.top_k = 1;
    pk.temp = 1.5f;
    pk.seed = 7;
    tern_sampler *g = make(&pg, V), *k = make(&pk, V);
    unsigned long long r = 5;
    for (int t = 0; t < 200; t++) {
        /* coarse logits so that ties at the top are common */
        for (int i = 0; i < V; i++) logits[i] = roundf(tu_randf(&r) * 8);
        ck_assert_int_eq(tern_sampler_sample(k, logits), tern_sampler_sample(g, logits));
    }
    tern_sampler_free(g);
    tern_sampler_free(k);
}
END_TEST

START_TEST(test_determinism)
{
    enum { V = 500, N = 300 };
    static float logits[V];
    static int32_t a[N], b[N], c[N], d[N];
    tern_sampler_params p = tern_sampler_default_params();
    p.seed = 42;
    p.top_k = 0;
    p.temp = 1.2f;
    tern_sampler *s1 = make(&p, V), *s2 = make(&p, V);
    p.seed = 43;
    tern_sampler *s3 = make(&p, V);
    unsigned long long r = 1;
    for (int i = 0; i < V; i++) logits[i] = tu_randf(&r) * 2;
    for (int t = 0; t < N; t++) {
        a[t] = tern_sampler_sample(s1, logits);
        b[t] = tern_sampler_sample(s2, logits);
        c[t] = tern_sampler_sample(s3, logits);
    }
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_int_ne(memcmp(a, c, sizeof a), 0);
    tern_sampler_reset(s1); /* the same seed again: the same stream */
    for (int t = 0; t < N; t++) d[t] = tern_sampler_sample(s1, logits);
    ck_assert_mem_eq(a, d, sizeof a);
    ck_assert_uint_eq(tern_sampler_seed(s1), 42);
    /* the stream is fixed by the algorithm: the first uniforms for seed 42 */
    tern_sampler_reset(s1);
    double u0 = tern_sampler_uniform(s1), u1 = tern_sampler_uniform(s1);
    ck_assert(u0 >= 0 && u0 < 1 && u1 >= 0 && u1 < 1 && u0 != u1);
    tern_sampler_reset(s2);
    ck_assert(tern_sampler_uniform(s2) == u0);
    tern_sampler_free(s1);
    tern_sampler_free(s2);
    tern_sampler_free(s3);
}
END_TEST

/* Candidate sets on hand-built distributions, ids scattered and the rest
 * of the vocabulary at -inf or NaN. */
START_TEST(test_top_k_set)
{
    float logits[10] = {0.5f, 3, 1, 2, 2, -1, 4, 2, 0, -5}, probs[10];
    tern_sampler_params p = plain_params(1.0f);
    p.top_k = 4; /* 6 (4), 1 (3), then the 2s: 3 and 4 beat 7 */
    tern_sampler *s = make(&p, 10);
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    ck_assert_int_eq(n_nonzero(probs, 10), 4);
    ck_assert(probs[6] > 0 && probs[1] > 0 && probs[3] > 0 && probs[4] > 0);
    double z = exp(4) + exp(3) + 2 * exp(2);
    ck_assert_double_eq_tol(probs[6], exp(4) / z, 1e-6);
    ck_assert_double_eq_tol(probs[3], exp(2) / z, 1e-6);
    tern_sampler_free(s);
}
END_TEST

START_TEST(test_top_p_set)
{
    enum { V = 1000 };
    static float logits[V], probs[V];
    const double dist[5] = {0.5, 0.2, 0.15, 0.1, 0.05};
    const int ids[5] = {731, 12, 999, 400, 0};
    struct { float top_p; int kept; } cases[] = {
        {0.0f, 1}, {0.45f, 1}, {0.55f, 2}, {0.69f, 2}, {0.71f, 3}, {0.84f, 3}, {0.86f, 4},
        {0.94f, 4}, {0.96f, 5}, {1.0f, 5},
    };
    for (int i = 0; i < V; i++) logits[i] = i % 3 ? -INFINITY : NAN;
    for (int i = 0; i < 5; i++) logits[ids[i]] = (float)log(dist[i]);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tern_sampler_params p = plain_params(1.0f);
        p.top_p = cases[c].top_p;
        tern_sampler *s = make(&p, V);
        ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
        ck_assert_msg(n_nonzero(probs, V) == cases[c].kept, "top_p %g kept %d, want %d",
                      (double)cases[c].top_p, n_nonzero(probs, V), cases[c].kept);
        double z = 0;
        for (int i = 0; i < cases[c].kept; i++) z += dist[i];
        for (int i = 0; i < cases[c].kept; i++) ck_assert_double_eq_tol(probs[ids[i]], dist[i] / z, 1e-6);
        tern_sampler_free(s);
    }
}
END_TEST

START_TEST(test_min_p_set)
{
    const double dist[6] = {0.4, 0.3, 0.15, 0.1, 0.04, 0.01};
    float logits[6], probs[6];
    log_probs(dist, 6, logits);
    /* keeps p >= min_p * p_max */
    struct { float min_p; int kept; } cases[] = {
        {0.0f, 6}, {0.02f, 6}, {0.05f, 5}, {0.2f, 4}, {0.3f, 3}, {0.5f, 2}, {0.8f, 1}, {1.0f, 1}, {3.0f, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tern_sampler_params p = plain_params(1.0f);
        p.min_p = cases[c].min_p;
        tern_sampler *s = make(&p, 6);
        ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
        ck_assert_msg(n_nonzero(probs, 6) == cases[c].kept, "min_p %g kept %d, want %d",
                      (double)cases[c].min_p, n_nonzero(probs, 6), cases[c].kept);
        for (int i = 0; i < cases[c].kept; i++) ck_assert(probs[i] > 0);
        tern_sampler_free(s);
    }
    /* the chain in order: top_k 4 -> top_p 0.8 (over the top 4: 0.4/0.95,
     * 0.7/0.95 = 0.737, 0.85/0.95 = 0.895: 3 kept) -> min_p 0.4 (0.15 < 0.16: 2 kept) */
    tern_sampler_params p = plain_params(1.0f);
    p.top_k = 4;
    p.top_p = 0.8f;
    tern_sampler *s = make(&p, 6);
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    ck_assert_int_eq(n_nonzero(probs, 6), 3);
    tern_sampler_free(s);
    p.min_p = 0.4f;
    s = make(&p, 6);
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    ck_assert_int_eq(n_nonzero(probs, 6), 2);
    ck_assert_double_eq_tol(probs[0], 0.4 / 0.7, 1e-6);
    tern_sampler_free(s);
}
END_TEST

START_TEST(test_temperature)
{
    float logits[4] = {0, 1, 2, -1}, probs[4];
    const float temps[] = {0.25f, 0.5f, 1.0f, 2.0f, 10.0f};
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        tern_sampler_params p = plain_params(temps[t]);
        tern_sampler *s = make(&p, 4);
        ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
        double z = 0;
        for (int i = 0; i < 4; i++) z += exp(logits[i] / temps[t]);
        for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(probs[i], exp(logits[i] / temps[t]) / z, 1e-6);
        tern_sampler_free(s);
    }
}
END_TEST

/* llama.cpp's formulas: l > 0 ? l / rp : l * rp, minus c * freq + (c > 0) * presence,
 * read back from the softmax at temperature 1 as log-ratios to an untouched id. */
START_TEST(test_penalties)
{
    float logits[8] = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f, 1.0f, -2.0f, 0.25f}, probs[8];
    tern_sampler_params p = plain_params(1.0f);
    p.repeat_penalty = 1.5f;
    p.freq_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    p.repeat_last_n = 8;
    tern_sampler *s = make(&p, 8);
    const int32_t hist[] = {0, 1, 1, 3, 4, 4, 4, 99, -1}; /* 99 and -1 are ignored */
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) tern_sampler_accept(s, hist[i]);
    float want[8];
    memcpy(want, logits, sizeof want);
    want[0] = 2.0f / 1.5f - 1 * 0.25f - 0.5f;
    want[1] = -1.0f * 1.5f - 2 * 0.25f - 0.5f;
    want[3] = 3.0f / 1.5f - 1 * 0.25f - 0.5f;
    want[4] = 0.0f * 1.5f - 3 * 0.25f - 0.5f; /* 0 is "<= 0": multiplied */
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    for (int i = 0; i < 8; i++)
        ck_assert_double_eq_tol(log(probs[i] / probs[2]), want[i] - want[2], 1e-5);

    /* the window keeps the last repeat_last_n: 3 more tokens push 0, 1, 1 out */
    tern_sampler_params q = p;
    q.repeat_last_n = 4;
    tern_sampler *w = make(&q, 8);
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++) tern_sampler_accept(w, hist[i]);
    /* window: 3, 4, 4, 4 */
    ck_assert_int_eq(tern_sampler_probs(w, logits, probs), TERN_OK);
    ck_assert_double_eq_tol(log(probs[0] / probs[2]), logits[0] - logits[2], 1e-5);
    ck_assert_double_eq_tol(log(probs[1] / probs[2]), logits[1] - logits[2], 1e-5);
    ck_assert_double_eq_tol(log(probs[3] / probs[2]), want[3] - want[2], 1e-5);
    ck_assert_double_eq_tol(log(probs[4] / probs[2]), want[4] - want[2], 1e-5);

    /* reset forgets the history */
    tern_sampler_reset(s);
    ck_assert_int_eq(tern_sampler_probs(s, logits, probs), TERN_OK);
    for (int i = 0; i < 8; i++) ck_assert_double_eq_tol(log(probs[i] / probs[2]), logits[i] - logits[2], 1e-5);
    tern_sampler_free(s);
    tern_sampler_free(w);

    /* greedy reads the penalized logits */
    tern_sampler_params g = tern_sampler_default_params();
    g.temp = 0;
    g.repeat_penalty = 2.0f;
    s = make(&g, 2);
    float two[2] = {5, 4};
    ck_assert_int_eq(tern_sampler_sample(s, two), 0);
    tern_sampler_accept(s, 0);
    ck_assert_int_eq(tern_sampler_sample(s, two), 1);
    tern_sampler_free(s);
}
END_TEST

/* ---- a plain reference of the chain: full sort, llama.cpp's loops ---- */

static const float *g_ref_l;
static int cmp_ref(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (g_ref_l[x] != g_ref_l[y]) return g_ref_l[x] > g_ref_l[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static void ref_chain(const tern_sampler_params *p, const float *logits, int v, const int32_t *hist, int n_hist,
                      float *out)
{
    float *l = malloc(sizeof *l * (size_t)v);
    int *ord = malloc(sizeof *ord * (size_t)v), *cnt = calloc((size_t)v, sizeof *cnt);
    memcpy(l, logits, sizeof *l * (size_t)v);
    int first = n_hist > p->repeat_last_n ? n_hist - p->repeat_last_n : 0;
    for (int i = first; i < n_hist; i++) cnt[hist[i]]++;
    for (int i = 0; i < v; i++) {
        if (!cnt[i] || p->repeat_last_n == 0) continue;
        l[i] = l[i] <= 0 ? l[i] * p->repeat_penalty : l[i] / p->repeat_penalty;
        l[i] -= (float)cnt[i] * p->freq_penalty + (float)(cnt[i] > 0) * p->presence_penalty;
    }
    for (int i = 0; i < v; i++) ord[i] = i;
    g_ref_l = l;
    qsort(ord, (size_t)v, sizeof *ord, cmp_ref);
    int n = p->top_k <= 0 || p->top_k > v ? v : p->top_k;
    float max = l[ord[0]];
    if (p->top_p < 1) {
        double z = 0, cum = 0;
        for (int i = 0; i < n; i++) z += (double)expf(l[ord[i]] - max);
        for (int i = 0; i < n; i++) {
            cum += (double)expf(l[ord[i]] - max) / z;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        float floor_l = max + logf(p->min_p);
        for (int i = 1; i < n; i++)
            if (l[ord[i]] < floor_l) {
                n = i;
                break;
            }
    }
    memset(out, 0, sizeof *out * (size_t)v);
    double z = 0;
    for (int i = 0; i < n; i++) z += (double)expf((l[ord[i]] - max) / p->temp);
    for (int i = 0; i < n; i++) out[ord[i]] = (float)(expf((l[ord[i]] - max) / p->temp) / z);
    free(l);
    free(ord);
    free(cnt);
}

/* Random options and logits (coarse ones too, for ties) against the reference. */
START_TEST(test_chain_matches_reference)
{
    const int vocabs[] = {7, 300, 5000};
    const int32_t top_ks[] = {0, 1, 3, 40, 300, 1000000};
    const float top_ps[] = {1.0f, 0.95f, 0.6f, 0.1f};
    const float min_ps[] = {0.0f, 0.05f, 0.3f};
    const float temps[] = {0.5f, 1.0f, 1.7f};
    unsigned long long r = 77;
    int32_t hist[100];
    for (int vi = 0; vi < 3; vi++) {
        int v = vocabs[vi];
        float *logits = malloc(sizeof *logits * (size_t)v), *got = malloc(sizeof *got * (size_t)v),
              *want = malloc(sizeof *want * (size_t)v);
        for (int trial = 0; trial < 60; trial++) {
            tern_sampler_params p = tern_sampler_default_params();
            p.top_k = top_ks[tu_rand(&r) % 6];
            p.top_p = top_ps[tu_rand(&r) % 4];
            p.min_p = min_ps[tu_rand(&r) % 3];
            p.temp = temps[tu_rand(&r) % 3];
            p.repeat_last_n = (int32_t)(tu_rand(&r) % 3) * 16;
            p.repeat_penalty = trial % 2 ? 1.3f : 1.0f;
            p.freq_penalty = trial % 3 ? 0.1f : 0.0f;
            p.presence_penalty = trial % 5 ? 0.2f : 0.0f;
            int coarse = trial % 4 == 0;
            for (int i = 0; i < v; i++) logits[i] = coarse ? roundf(tu_randf(&r) * 4) : tu_randf(&r) * 6;
            int n_hist = (int)(tu_rand(&r) % 100);
            for (int i = 0; i < n_hist; i++) hist[i] = (int32_t)(tu_rand(&r) % (unsigned)v);
            tern_sampler *s = make(&p, v);
            for (int i = 0; i < n_hist; i++) tern_sampler_accept(s, hist[i]);
            ck_assert_int_eq(tern_sampler_probs(s, logits, got), TERN_OK);
            ref_chain(&p, logits, v, hist, n_hist, want);
            for (int i = 0; i < v; i++) {
                ck_assert_msg((got[i] > 0) == (want[i] > 0),
                              "V %d top_k %d top_p %g min_p %g: id %d kept %d, reference %d", v, (int)p.top_k,
                              (double)p.top_p, (double)p.min_p, i, got[i] > 0, want[i] > 0);
                ck_assert_double_eq_tol(got[i], want[i], 1e-6);
            }
            tern_sampler_free(s);
        }
        free(logits);
        free(got);
        free(want);
    }
}
END_TEST

/* sample() is draw(probs()) on the same generator, token for token, on the
 * sparse path (few kept) and the dense one (more than 4096 kept). */
START_TEST(test_sample_equals_draw_of_probs)
{
    enum { V = 20000 };
    static float logits[V], probs[V];
    for (int dense = 0; dense < 2; dense++) {
        tern_sampler_params p = tern_sampler_default_params();
        p.seed = 2024;
        if (dense) {
            p.top_k = 0;
            p.top_p = 1;
            p.min_p = 0;
        }
        tern_sampler *a = make(&p, V), *b = make(&p, V);
        unsigned long long r = 9;
        for (int t = 0; t < 100; t++) {
            for (int i = 0; i < V; i++) logits[i] = tu_randf(&r) * 3;
            int32_t x = tern_sampler_sample(a, logits);
            ck_assert_int_eq(tern_sampler_probs(b, logits, probs), TERN_OK);
            if (dense) ck_assert_int_gt(n_nonzero(probs, V), 4096);
            ck_assert_int_eq(x, tern_sampler_draw(b, probs, V));
            tern_sampler_accept(a, x);
            tern_sampler_accept(b, x);
        }
        ck_assert(tern_sampler_uniform(a) == tern_sampler_uniform(b));
        tern_sampler_free(a);
        tern_sampler_free(b);
    }
}
END_TEST

/* Pearson's chi-square over k categories: sum (O - E)^2 / E. */
static double chi_square(const int *obs, const double *p, int k, int n)
{
    double chi = 0;
    for (int i = 0; i < k; i++) {
        double e = p[i] * n;
        chi += (obs[i] - e) * (obs[i] - e) / e;
    }
    return chi;
}

/* 20000 draws from a known distribution. With 5 categories there are 4
 * degrees of freedom; P(chi2_4 > 18.467) = 0.001, so a correct sampler
 * fails this bound for one seed in a thousand (and the seed is fixed). */
START_TEST(test_chi_square)
{
    enum { N = 20000, K = 5 };
    const double dist[K] = {0.4, 0.25, 0.2, 0.1, 0.05};
    float logits[K];
    int obs[K] = {0};
    log_probs(dist, K, logits);
    tern_sampler_params p = plain_params(1.0f);
    tern_sampler *s = make(&p, K);
    for (int t = 0; t < N; t++) {
        int32_t x = tern_sampler_sample(s, logits);
        ck_assert(x >= 0 && x < K);
        obs[x]++;
    }
    double chi = chi_square(obs, dist, K, N);
    ck_assert_msg(chi < 18.467, "chi-square %g over 4 degrees of freedom", chi);

    /* tern_sampler_draw on unnormalised weights with a zero and junk: the
     * three live categories give 2 degrees of freedom; P(chi2_2 > 13.816) = 0.001 */
    const float w[6] = {2, 0, 1, -3, NAN, 1};
    const double pw[3] = {0.5, 0.25, 0.25};
    int ow[6] = {0};
    for (int t = 0; t < N; t++) {
        int32_t x = tern_sampler_draw(s, w, 6);
        ck_assert(x >= 0 && x < 6);
        ow[x]++;
    }
    ck_assert_int_eq(ow[1] + ow[3] + ow[4], 0);
    int o3[3] = {ow[0], ow[2], ow[5]};
    chi = chi_square(o3, pw, 3, N);
    ck_assert_msg(chi < 13.816, "draw chi-square %g over 2 degrees of freedom", chi);

    const float zero[3] = {0, -1, NAN};
    ck_assert_int_eq(tern_sampler_draw(s, zero, 3), -1);
    ck_assert_int_eq(tern_sampler_draw(s, w, 0), -1);
    tern_sampler_free(s);
}
END_TEST

/* Llama 3's vocabulary with the default chain (top_k 40): 1000 tokens in
 * well under a second (sanitizer builds get 5 s). */
START_TEST(test_speed_llama3_vocab)
{
    enum { V = 128256, N = 1000 };
    float *logits = malloc(sizeof *logits * V);
    unsigned long long r = 3;
    for (int i = 0; i < V; i++) logits[i] = tu_randf(&r) * 10;
    tern_sampler_params p = tern_sampler_default_params();
    p.seed = 1;
    p.repeat_penalty = 1.1f;
    tern_sampler *s = make(&p, V);
    double t0 = tu_now_s();
    for (int t = 0; t < N; t++) {
        logits[(t * 7919) % V] += 0.5f; /* a different row each time, cheaply */
        int32_t x = tern_sampler_sample(s, logits);
        ck_assert(x >= 0 && x < V);
        tern_sampler_accept(s, x);
    }
    double dt = tu_now_s() - t0;
    printf("sampler: %d samples, n_vocab %d, top_k 40: %.1f ms, %.0f tokens/s\n", N, V, dt * 1e3, N / dt);
#if defined(__SANITIZE_ADDRESS__)
    double limit = 5.0;
#else
    double limit = 1.0;
#endif
    const char *slow = getenv("TERN_TEST_SLOWDOWN"); /* under emulation (tests/run_qemu.sh) */
    if (slow && atof(slow) > 1.0) limit *= atof(slow);
    ck_assert_msg(dt < limit, "1000 samples took %.3f s", dt);
    tern_sampler_free(s);
    free(logits);
}
END_TEST

Suite *sampler_suite(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sampler");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_short_struct);
    tcase_add_test(tc, test_greedy);
    tcase_add_test(tc, test_top_k_1_is_greedy);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_top_k_set);
    tcase_add_test(tc, test_top_p_set);
    tcase_add_test(tc, test_min_p_set);
    tcase_add_test(tc, test_temperature);
    tcase_add_test(tc, test_penalties);
    tcase_add_test(tc, test_chain_matches_reference);
    tcase_add_test(tc, test_sample_equals_draw_of_probs);
    tcase_add_test(tc, test_chi_square);
    tcase_add_test(tc, test_speed_llama3_vocab);
    suite_add_tcase(s, tc);
    return s;
}
