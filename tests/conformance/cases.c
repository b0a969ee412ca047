/* cases.c - the conformance op table: for each op, the cases that cover it
 * (shapes, weight and cache types, modes), its definition recomputed here
 * independently of every backend (the oracle), and its tolerances.
 *
 * Oracles are written from op.h's text, not from the scalar code, and
 * where a second formulation exists they use it (complex multiplication
 * for NORMAL rope, rotate_half for NEOX, a full masked softmax for
 * attention, log-sum-exp for softmax), so a wrong scalar kernel fails. */
#include <complex.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "conformance.h"

/* ---- case plumbing ---- */

static void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    ck_assert_ptr_nonnull(p);
    memset(p, 0, (n + 63) / 64 * 64 + 64);
    return p;
}

conf_case *conf_new(conf_list *l, int op, const char *fmt, ...)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
        ck_assert_ptr_nonnull(l->v);
    }
    conf_case *c = &l->v[l->n++];
    memset(c, 0, sizeof *c);
    c->op = op;
    c->weight = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->label, sizeof c->label, fmt, ap);
    va_end(ap);
    return c;
}

void *conf_src(conf_case *c, int i, int type, int n_dims, const int64_t *ne)
{
    tern_tensor *t = &c->src[i];
    tern_tensor_init(t, type, n_dims, ne);
    size_t bytes = tern_type_get(type)->is_weight_type ? (size_t)tern_tensor_file_bytes(type, t->ne)
                                                       : tern_tensor_nbytes(t);
    ck_assert_uint_gt(bytes, 0);
    t->data = xalloc(bytes);
    c->src_bytes[i] = bytes;
    c->has_src[i] = 1;
    return t->data;
}

void conf_dst(conf_case *c, int type, int n_dims, const int64_t *ne)
{
    tern_tensor_init(&c->dst, type, n_dims, ne);
    c->dst_bytes = tern_tensor_nbytes(&c->dst);
    c->dst_init = xalloc(c->dst_bytes);
    memset(c->dst_init, 0xA5, c->dst_bytes); /* unwritten bytes show up */
    c->expect = xalloc(c->dst_bytes);
}

conf_case *conf_float_matmul(conf_list *l, int type, int64_t K, int64_t N, int64_t T, const char *name,
                             unsigned long long *rng)
{
    conf_case *c = conf_new(l, TERN_OP_MATMUL, "%s K=%lld N=%lld tok=%lld", tern_type_name(type),
                            (long long)K, (long long)N, (long long)T);
    int64_t xne[2] = {K, T}, wne[2] = {K, N}, dne[2] = {N, T};
    float *x = conf_src(c, 0, TERN_TYPE_F32, 2, xne);
    for (int64_t i = 0; i < K * T; i++) x[i] = tu_randf(rng);
    uint8_t *w = conf_src(c, 1, type, 2, wne);
    float *v = xalloc((size_t)(K * N) * 4);
    for (int64_t i = 0; i < K * N; i++) v[i] = 0.05f * tu_randf(rng) * (i % 31 == 0 ? 8.0f : 1.0f);
    if (type == TERN_TYPE_F16) tern_quantize_f16(v, K * N, w);
    if (type == TERN_TYPE_BF16) tern_quantize_bf16(v, K * N, w);
    if (type == TERN_TYPE_Q8_0) tern_quantize_q8_0(v, K * N, w);
    if (type == TERN_TYPE_F32) memcpy(w, v, (size_t)(K * N) * 4);
    free(v);
    c->src[1].name = name;
    c->weight = 1;
    c->purpose = TERN_REPACK_MATMUL;
    conf_dst(c, TERN_TYPE_F32, 2, dne);
    return c;
}

void conf_list_free(conf_list *l)
{
    for (int i = 0; i < l->n; i++) {
        conf_case *c = &l->v[i];
        for (int s = 0; s < TERN_NODE_MAX_SRC; s++) free(c->has_src[s] ? c->src[s].data : NULL);
        free(c->dst_init);
        free(c->expect);
        free(c->mag);
        free(c->wdec);
        free(c->codes);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int64_t rndi(unsigned long long *rng, int64_t n) { return (int64_t)(tu_rand(rng) % (unsigned long long)n); }

static void fill(float *x, int64_t n, float amp, unsigned long long *rng)
{
    for (int64_t i = 0; i < n; i++) x[i] = amp * tu_randf(rng);
}

static float f32_at(const void *p, int64_t i)
{
    float f;
    memcpy(&f, (const uint8_t *)p + 4 * i, 4);
    return f;
}

static void put_f32(void *p, int64_t i, double v)
{
    float f = (float)v;
    memcpy((uint8_t *)p + 4 * i, &f, 4);
}

static uint16_t u16_at(const void *p, int64_t i)
{
    uint16_t h;
    memcpy(&h, (const uint8_t *)p + 2 * i, 2);
    return h;
}

static int32_t i32_at(const void *p, int64_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)p + 4 * i, 4);
    return v;
}

static int32_t *positions(conf_case *c, int i, int64_t n)
{
    return conf_src(c, i, TERN_TYPE_I32, 1, &n);
}

/* A weight [K, N] of the given type in src i, with its values decoded here
 * (c->wdec) and, for ternary types, its codes (c->codes). */
static void make_weight(conf_case *c, int i, int type, int64_t K, int64_t N, unsigned long long *rng)
{
    int64_t ne[2] = {K, N}, n = K * N;
    uint8_t *data = conf_src(c, i, type, 2, ne);
    float *vals = xalloc((size_t)n * 4);
    c->wdec = xalloc((size_t)n * 4);
    fill(vals, n, 1.0f, rng);
    switch (type) {
    case TERN_TYPE_F32:
        memcpy(data, vals, (size_t)n * 4);
        memcpy(c->wdec, vals, (size_t)n * 4);
        break;
    case TERN_TYPE_F16:
        tern_quantize_f16(vals, n, data);
        for (int64_t k = 0; k < n; k++) c->wdec[k] = tern_f16_to_f32(u16_at(data, k));
        break;
    case TERN_TYPE_BF16:
        tern_quantize_bf16(vals, n, data);
        for (int64_t k = 0; k < n; k++) c->wdec[k] = tern_bf16_to_f32(u16_at(data, k));
        break;
    case TERN_TYPE_Q8_0: /* blocks of 32: f16 d, then 32 int8 */
        tern_quantize_q8_0(vals, n, data);
        for (int64_t k = 0; k < n; k++) {
            const uint8_t *blk = data + (k / 32) * 34;
            c->wdec[k] = tern_f16_to_f32(u16_at(blk, 0)) * (float)(int8_t)blk[2 + k % 32];
        }
        break;
    default: { /* ternary: codes in {-1,0,1}, one f16-exact scale */
        float scale = tern_f16_to_f32(tern_f32_to_f16(0.01f + 0.04f * fabsf(tu_randf(rng))));
        c->codes = xalloc((size_t)n);
        for (int64_t k = 0; k < n; k++) c->codes[k] = (int8_t)(rndi(rng, 3) - 1);
        if (type == TERN_TYPE_TQ1_0) tern_pack_tq1_0(c->codes, n, scale, data);
        if (type == TERN_TYPE_TQ2_0) tern_pack_tq2_0(c->codes, n, scale, data);
        if (type == TERN_TYPE_I2_S) tern_pack_i2_s(c->codes, n, scale, data);
        for (int64_t k = 0; k < n; k++) c->wdec[k] = (float)c->codes[k] * scale;
        c->src[i].scale = scale;
    }
    }
    free(vals);
}

/* Activation rows of several kinds, so amax comes from different places:
 * plain, one outlier, tiny (amax clamps to 1e-5), zero, exact .5 ties. */
static void activation_rows(float *x, int64_t K, int64_t rows, unsigned long long *rng)
{
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * K;
        switch (r % 5) {
        case 0: fill(row, K, 1.0f, rng); break;
        case 1:
            fill(row, K, 0.1f, rng);
            row[rndi(rng, K)] = tu_randf(rng) < 0 ? -20.0f : 20.0f;
            break;
        case 2: fill(row, K, 1e-7f, rng); break;
        case 3: memset(row, 0, (size_t)K * 4); break;
        default: /* amax 127 makes inv exactly 1, so x*inv lands on .5 */
            for (int64_t k = 0; k < K; k++) row[k] = (float)((k * 37) % 254 - 127) + 0.5f;
            row[0] = 127.0f;
        }
    }
}

/* ---- the test-side quantizer: round half to even by hand ---- */

void conf_quantize_row(const float *x, int64_t K, uint8_t *row)
{
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        float a = x[k] < 0 ? -x[k] : x[k];
        if (a > amax) amax = a;
    }
    if (amax < TERN_ACT_AMAX_MIN) amax = TERN_ACT_AMAX_MIN;
    float inv = 127.0f / amax;
    int32_t sum = 0;
    memset(row, 0, tern_row_size(TERN_TYPE_Q8_TOK, K));
    for (int64_t k = 0; k < K; k++) {
        float v = x[k] * inv;
        double f = floor(v), frac = v - f;
        long q = (long)f;
        if (frac > 0.5 || (frac == 0.5 && (q & 1))) q++;
        if (q > 127) q = 127;
        if (q < -128) q = -128;
        row[TERN_Q8TOK_HEADER + k] = (uint8_t)(int8_t)q;
        sum += (int32_t)q;
    }
    memcpy(row, &inv, 4);
    memcpy(row + 4, &sum, 4);
}

/* ---- get_rows ---- */

static void gen_get_rows(conf_list *l, unsigned long long *rng)
{
    static const struct { int type; int64_t K; } types[] = {
        {TERN_TYPE_F32, 100}, {TERN_TYPE_F32, 256}, {TERN_TYPE_F16, 100}, {TERN_TYPE_BF16, 100},
        {TERN_TYPE_Q8_0, 96}, {TERN_TYPE_Q8_0, 256}, {TERN_TYPE_TQ1_0, 256},
        {TERN_TYPE_TQ2_0, 512}, {TERN_TYPE_I2_S, 256}};
    static const int64_t shapes[][2] = {{7, 1}, {64, 7}, {64, 17}}; /* table rows, ids */
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int si = 0; si < 3; si++) {
            int64_t K = types[ti].K, rows = shapes[si][0], n = shapes[si][1];
            conf_case *c = conf_new(l, TERN_OP_GET_ROWS, "%s K=%lld rows=%lld ids=%lld",
                                    tern_type_name(types[ti].type), (long long)K, (long long)rows,
                                    (long long)n);
            make_weight(c, 0, types[ti].type, K, rows, rng);
            int32_t *ids = positions(c, 1, n);
            for (int64_t j = 0; j < n; j++) ids[j] = (int32_t)(j == 0 ? rows - 1 : j == 1 ? 0 : rndi(rng, rows));
            int64_t ne[2] = {K, n};
            conf_dst(c, TERN_TYPE_F32, 2, ne);
        }
}

static void oracle_get_rows(conf_case *c)
{
    int64_t K = c->src[0].ne[0];
    for (int64_t j = 0; j < c->dst.ne[1]; j++)
        memcpy(c->expect + j * K * 4, c->wdec + i32_at(c->src[1].data, j) * K, (size_t)K * 4);
}

/* ---- rms_norm ---- */

static void gen_rms_norm(conf_list *l, unsigned long long *rng)
{
    static const int64_t shapes[][2] = {{1, 1}, {7, 7}, {256, 17}, {2560, 1}, {100, 3}};
    static const float amps[] = {1.0f, 10.0f, 0.01f, 3.0f, 1.0f};
    for (int si = 0; si < 5; si++)
        for (int with_w = 0; with_w < 2; with_w++) {
            int64_t K = shapes[si][0], ne[2] = {K, shapes[si][1]};
            conf_case *c = conf_new(l, TERN_OP_RMS_NORM, "K=%lld rows=%lld %s", (long long)K,
                                    (long long)ne[1], with_w ? "weight" : "no weight");
            fill(conf_src(c, 0, TERN_TYPE_F32, 2, ne), K * ne[1], amps[si], rng);
            if (with_w) {
                float *w = conf_src(c, 1, TERN_TYPE_F32, 1, &K);
                for (int64_t k = 0; k < K; k++) w[k] = 1.0f + 0.5f * tu_randf(rng);
            }
            c->fparams[0] = si % 2 ? 1e-6f : 1e-5f;
            conf_dst(c, TERN_TYPE_F32, 2, ne);
        }
}

static void oracle_rms_norm(conf_case *c)
{
    int64_t K = c->src[0].ne[0];
    const float *x = c->src[0].data, *w = c->has_src[1] ? c->src[1].data : NULL;
    for (int64_t r = 0; r < c->src[0].ne[1]; r++, x += K) {
        double ss = 0.0;
        for (int64_t k = 0; k < K; k++) ss += (double)x[k] * (double)x[k];
        double rms = sqrt(ss / (double)K + (double)c->fparams[0]);
        for (int64_t k = 0; k < K; k++)
            put_f32(c->expect, r * K + k, (double)x[k] * (w ? w[k] : 1.0) / rms);
    }
}

/* ---- elementwise: add, mul, relu_sq, silu ---- */

static void gen_elementwise(conf_list *l, unsigned long long *rng, int op, int binary, float amp)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 7, 1}, {256, 17, 1}, {2560, 2, 1}, {64, 4, 3}};
    for (int si = 0; si < 5; si++) {
        const int64_t *ne = shapes[si];
        int64_t n = ne[0] * ne[1] * ne[2];
        conf_case *c = conf_new(l, op, "%lldx%lldx%lld", (long long)ne[0], (long long)ne[1],
                                (long long)ne[2]);
        fill(conf_src(c, 0, TERN_TYPE_F32, 3, ne), n, amp, rng);
        if (binary) fill(conf_src(c, 1, TERN_TYPE_F32, 3, ne), n, amp, rng);
        conf_dst(c, TERN_TYPE_F32, 3, ne);
    }
}

static void gen_add(conf_list *l, unsigned long long *rng) { gen_elementwise(l, rng, TERN_OP_ADD, 1, 4.0f); }
static void gen_mul(conf_list *l, unsigned long long *rng) { gen_elementwise(l, rng, TERN_OP_MUL, 1, 4.0f); }
static void gen_relu_sq(conf_list *l, unsigned long long *rng) { gen_elementwise(l, rng, TERN_OP_RELU_SQ, 0, 4.0f); }
static void gen_silu(conf_list *l, unsigned long long *rng) { gen_elementwise(l, rng, TERN_OP_SILU, 0, 12.0f); }

static void oracle_elementwise(conf_case *c)
{
    int64_t n = tern_tensor_nelements(&c->dst);
    for (int64_t i = 0; i < n; i++) {
        double a = f32_at(c->src[0].data, i), b = c->has_src[1] ? f32_at(c->src[1].data, i) : 0, y = 0;
        switch (c->op) {
        case TERN_OP_ADD: y = a + b; break;
        case TERN_OP_MUL: y = a * b; break;
        case TERN_OP_RELU_SQ: y = a > 0 ? a * a : 0.0; break;
        case TERN_OP_SILU: y = a * 0.5 * (1.0 + tanh(a / 2)); break; /* x * sigmoid(x) */
        }
        put_f32(c->expect, i, y);
    }
}

/* ---- softmax ---- */

static void gen_softmax(conf_list *l, unsigned long long *rng)
{
    static const int64_t shapes[][2] = {{1, 1}, {7, 7}, {256, 17}, {8192, 1}, {100, 3}};
    static const float scales[] = {1.0f, 0.125f, 1.0f, 0.5f, 2.0f}, amps[] = {1, 30, 5, 10, 50};
    for (int si = 0; si < 5; si++) {
        int64_t ne[2] = {shapes[si][0], shapes[si][1]};
        conf_case *c = conf_new(l, TERN_OP_SOFTMAX, "%lldx%lld scale %g", (long long)ne[0],
                                (long long)ne[1], scales[si]);
        fill(conf_src(c, 0, TERN_TYPE_F32, 2, ne), ne[0] * ne[1], amps[si], rng);
        c->fparams[0] = scales[si];
        conf_dst(c, TERN_TYPE_F32, 2, ne);
    }
}

static void oracle_softmax(conf_case *c)
{
    int64_t K = c->src[0].ne[0];
    double s = c->fparams[0];
    const float *x = c->src[0].data;
    for (int64_t r = 0; r < c->src[0].ne[1]; r++, x += K) {
        double m = -INFINITY, sum = 0.0;
        for (int64_t k = 0; k < K; k++) m = x[k] * s > m ? x[k] * s : m;
        for (int64_t k = 0; k < K; k++) sum += exp(x[k] * s - m);
        double lse = m + log(sum);
        for (int64_t k = 0; k < K; k++) put_f32(c->expect, r * K + k, exp(x[k] * s - lse));
    }
}

/* ---- rope ---- */

static void gen_rope(conf_list *l, unsigned long long *rng)
{
    static const struct { int64_t hd, n_head, n_tok, n_dims; float base, fscale; } cfg[] = {
        {64, 4, 1, 64, 10000.0f, 1.0f}, {128, 8, 17, 128, 500000.0f, 1.0f},
        {64, 1, 17, 32, 10000.0f, 0.25f}, {32, 3, 7, 16, 10000.0f, 1.0f}};
    for (int mode = 0; mode < 2; mode++)
        for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
            int64_t ne[3] = {cfg[i].hd, cfg[i].n_head, cfg[i].n_tok};
            conf_case *c = conf_new(l, TERN_OP_ROPE, "%s hd=%lld heads=%lld tok=%lld dims=%lld",
                                    mode ? "neox" : "normal", (long long)ne[0], (long long)ne[1],
                                    (long long)ne[2], (long long)cfg[i].n_dims);
            fill(conf_src(c, 0, TERN_TYPE_F32, 3, ne), ne[0] * ne[1] * ne[2], 1.0f, rng);
            int32_t *pos = positions(c, 1, ne[2]);
            for (int64_t t = 0; t < ne[2]; t++) pos[t] = t == 0 ? 0 : (int32_t)rndi(rng, 4096);
            c->iparams[0] = mode ? TERN_ROPE_NEOX : TERN_ROPE_NORMAL;
            c->iparams[1] = (int32_t)cfg[i].n_dims;
            c->fparams[0] = cfg[i].base;
            c->fparams[1] = cfg[i].fscale;
            conf_dst(c, TERN_TYPE_F32, 3, ne);
        }
}

static void oracle_rope(conf_case *c)
{
    int64_t hd = c->src[0].ne[0], n_head = c->src[0].ne[1], nd = c->iparams[1], half = nd / 2;
    const float *x = c->src[0].data;
    c->mag = xalloc((size_t)tern_tensor_nelements(&c->dst) * sizeof *c->mag);
    for (int64_t r = 0; r < n_head * c->src[0].ne[2]; r++, x += hd) {
        double pos = i32_at(c->src[1].data, r / n_head);
        double ang[4096];
        for (int64_t i = 0; i < half; i++)
            ang[i] = pos * c->fparams[1] / pow(c->fparams[0], (double)(2 * i) / (double)nd);
        for (int64_t d = 0; d < hd; d++) { /* see the table: error scales with the angle */
            int64_t i = d >= nd ? -1 : c->iparams[0] == TERN_ROPE_NORMAL ? d / 2 : d % half;
            int64_t mate = i < 0 ? d : c->iparams[0] == TERN_ROPE_NORMAL ? (d ^ 1) : (d + half) % nd;
            c->mag[r * hd + d] = 1.0 + (i < 0 ? 0.0 : fabs(ang[i]) * (fabs(x[d]) + fabs(x[mate])));
        }
        for (int64_t d = nd; d < hd; d++) put_f32(c->expect, r * hd + d, x[d]);
        if (c->iparams[0] == TERN_ROPE_NORMAL) { /* (x0 + i x1) * e^(i angle) */
            for (int64_t i = 0; i < half; i++) {
                double complex z = (x[2 * i] + I * x[2 * i + 1]) * cexp(I * ang[i]);
                put_f32(c->expect, r * hd + 2 * i, creal(z));
                put_f32(c->expect, r * hd + 2 * i + 1, cimag(z));
            }
        } else { /* x * cos + rotate_half(x) * sin, as in Hugging Face */
            for (int64_t d = 0; d < nd; d++) {
                double rot = d < half ? -x[d + half] : x[d - half], a = ang[d % half];
                put_f32(c->expect, r * hd + d, x[d] * cos(a) + rot * sin(a));
            }
        }
    }
}

/* ---- kv_store and attention: caches [head_dim, n_kv_head, n_ctx] ---- */

static void fill_cache(conf_case *c, int i, int type, int64_t hd, int64_t n_kv, int64_t n_ctx,
                       unsigned long long *rng)
{
    int64_t ne[3] = {hd, n_kv, n_ctx}, n = hd * n_kv * n_ctx;
    void *data = conf_src(c, i, type, 3, ne);
    float *v = xalloc((size_t)n * 4);
    fill(v, n, 1.0f, rng);
    if (type == TERN_TYPE_F16)
        tern_quantize_f16(v, n, data);
    else
        memcpy(data, v, (size_t)n * 4);
    free(v);
}

static double cache_value(const tern_tensor *t, int64_t d, int64_t h, int64_t p)
{
    int64_t i = (p * t->ne[1] + h) * t->ne[0] + d;
    return t->type == TERN_TYPE_F16 ? tern_f16_to_f32(u16_at(t->data, i)) : f32_at(t->data, i);
}

static void gen_kv_store(conf_list *l, unsigned long long *rng)
{
    static const int64_t cfg[][4] = {{64, 1, 64, 1}, {32, 2, 40, 17}, {64, 4, 300, 7}};
    for (int f16 = 0; f16 < 2; f16++)
        for (int i = 0; i < 3; i++) {
            int64_t hd = cfg[i][0], n_kv = cfg[i][1], n_ctx = cfg[i][2], T = cfg[i][3];
            int type = f16 ? TERN_TYPE_F16 : TERN_TYPE_F32;
            conf_case *c = conf_new(l, TERN_OP_KV_STORE, "%s hd=%lld kv=%lld ctx=%lld tok=%lld",
                                    tern_type_name(type), (long long)hd, (long long)n_kv,
                                    (long long)n_ctx, (long long)T);
            int64_t ne[3] = {hd, n_kv, T};
            fill(conf_src(c, 0, TERN_TYPE_F32, 3, ne), hd * n_kv * T, 2.0f, rng);
            /* distinct positions: two tokens never write one row */
            int32_t *pos = positions(c, 1, T), *perm = xalloc((size_t)n_ctx * 4);
            for (int64_t p = 0; p < n_ctx; p++) perm[p] = (int32_t)p;
            for (int64_t p = n_ctx - 1; p > 0; p--) {
                int64_t j = rndi(rng, p + 1);
                int32_t tmp = perm[p];
                perm[p] = perm[j];
                perm[j] = tmp;
            }
            memcpy(pos, perm, (size_t)T * 4);
            free(perm);
            fill_cache(c, 2, type, hd, n_kv, n_ctx, rng); /* the cache before: becomes dst */
            int64_t cne[3] = {hd, n_kv, n_ctx};
            conf_dst(c, type, 3, cne);
            memcpy(c->dst_init, c->src[2].data, c->dst_bytes);
            free(c->src[2].data);
            c->has_src[2] = 0;
            c->src_bytes[2] = 0;
        }
}

static void oracle_kv_store(conf_case *c)
{
    int64_t hd = c->src[0].ne[0], n_kv = c->src[0].ne[1];
    size_t es = c->dst.type == TERN_TYPE_F16 ? 2 : 4;
    memcpy(c->expect, c->dst_init, c->dst_bytes);
    for (int64_t t = 0; t < c->src[0].ne[2]; t++)
        for (int64_t h = 0; h < n_kv; h++)
            for (int64_t d = 0; d < hd; d++) {
                int64_t p = i32_at(c->src[1].data, t);
                float v = f32_at(c->src[0].data, (t * n_kv + h) * hd + d);
                uint8_t *at = c->expect + ((size_t)(p * n_kv + h) * hd + d) * es;
                uint16_t half = tern_f32_to_f16(v);
                memcpy(at, es == 2 ? (void *)&half : (void *)&v, es);
            }
}

static void gen_attention(conf_list *l, unsigned long long *rng)
{
    /* hd, n_head, n_kv, n_ctx, n_tok, positions: 0 = last row, 1 = random,
     * 2 = consecutive from a random start, 3 = consecutive from 0 */
    static const int64_t cfg[][6] = {{64, 4, 4, 64, 1, 0},  {64, 8, 2, 64, 1, 1},
                                     {32, 8, 8, 300, 17, 2}, {32, 8, 2, 300, 17, 2},
                                     {64, 4, 1, 40, 7, 3}};
    for (int f16 = 0; f16 < 2; f16++)
        for (int i = 0; i < 5; i++) {
            int64_t hd = cfg[i][0], n_head = cfg[i][1], n_kv = cfg[i][2], n_ctx = cfg[i][3];
            int64_t T = cfg[i][4];
            int type = f16 ? TERN_TYPE_F16 : TERN_TYPE_F32;
            conf_case *c = conf_new(l, TERN_OP_ATTENTION, "%s hd=%lld heads=%lld/%lld ctx=%lld tok=%lld",
                                    tern_type_name(type), (long long)hd, (long long)n_head,
                                    (long long)n_kv, (long long)n_ctx, (long long)T);
            int64_t ne[3] = {hd, n_head, T};
            fill(conf_src(c, 0, TERN_TYPE_F32, 3, ne), hd * n_head * T, i % 2 ? 3.0f : 1.0f, rng);
            fill_cache(c, 1, type, hd, n_kv, n_ctx, rng);
            fill_cache(c, 2, type, hd, n_kv, n_ctx, rng);
            int32_t *pos = positions(c, 3, T);
            int64_t start = rndi(rng, n_ctx - T + 1);
            for (int64_t t = 0; t < T; t++)
                pos[t] = (int32_t)(cfg[i][5] == 0 ? n_ctx - 1 : cfg[i][5] == 1 ? rndi(rng, n_ctx)
                                   : cfg[i][5] == 2 ? start + t : t);
            c->fparams[0] = (float)(1.0 / sqrt((double)hd));
            conf_dst(c, TERN_TYPE_F32, 3, ne);
        }
}

/* A full masked softmax over all n_ctx rows: rows after pos get -inf. */
static void oracle_attention(conf_case *c)
{
    const tern_tensor *q = &c->src[0], *k = &c->src[1], *v = &c->src[2];
    int64_t hd = q->ne[0], n_head = q->ne[1], n_ctx = k->ne[2], group = n_head / k->ne[1];
    double *p = xalloc((size_t)n_ctx * sizeof *p);
    for (int64_t t = 0; t < q->ne[2]; t++)
        for (int64_t h = 0; h < n_head; h++) {
            int64_t pos = i32_at(c->src[3].data, t), kh = h / group;
            const float *qv = (const float *)q->data + (t * n_head + h) * hd;
            double m = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < n_ctx; j++) {
                double dot = 0.0;
                for (int64_t d = 0; d < hd; d++) dot += qv[d] * cache_value(k, d, kh, j);
                p[j] = j <= pos ? dot * c->fparams[0] : -INFINITY;
                if (p[j] > m) m = p[j];
            }
            for (int64_t j = 0; j < n_ctx; j++) sum += (p[j] = exp(p[j] - m));
            for (int64_t d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int64_t j = 0; j < n_ctx; j++) acc += p[j] / sum * cache_value(v, d, kh, j);
                put_f32(c->expect, (t * n_head + h) * hd + d, acc);
            }
        }
    free(p);
}

/* ---- quantize_act ---- */

static void gen_quantize_act(conf_list *l, unsigned long long *rng)
{
    static const int64_t shapes[][2] = {{1, 1}, {7, 1}, {100, 7}, {256, 17}, {1280, 1}, {2560, 5}};
    for (int si = 0; si < 6; si++) {
        int64_t ne[2] = {shapes[si][0], shapes[si][1]};
        conf_case *c = conf_new(l, TERN_OP_QUANTIZE_ACT, "K=%lld rows=%lld", (long long)ne[0],
                                (long long)ne[1]);
        activation_rows(conf_src(c, 0, TERN_TYPE_F32, 2, ne), ne[0], ne[1], rng);
        conf_dst(c, TERN_TYPE_Q8_TOK, 2, ne);
    }
}

static void oracle_quantize_act(conf_case *c)
{
    int64_t K = c->src[0].ne[0];
    for (int64_t r = 0; r < c->src[0].ne[1]; r++)
        conf_quantize_row((const float *)c->src[0].data + r * K, K, c->expect + r * c->dst.nb[1]);
}

/* ---- matmuls ---- */

static const int64_t mm_shapes[][3] = { /* K, N, n_tok */
    {256, 1, 1}, {256, 7, 17}, {512, 64, 1}, {768, 257, 17},
    {1280, 7, 1}, {2560, 64, 17}, {2560, 257, 1}, {512, 1, 17},
    {6912, 9, 2}}; /* rows of 108 16-byte words: a GEMV lane's fourth step is partial (3 x 32 + 12) */

static void gen_matmul_ternary(conf_list *l, unsigned long long *rng)
{
    static const int types[] = {TERN_TYPE_TQ1_0, TERN_TYPE_TQ2_0, TERN_TYPE_I2_S};
    for (int ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof mm_shapes / sizeof mm_shapes[0]; si++) {
            int64_t K = mm_shapes[si][0], N = mm_shapes[si][1], T = mm_shapes[si][2];
            conf_case *c = conf_new(l, TERN_OP_MATMUL_TERNARY, "%s K=%lld N=%lld tok=%lld",
                                    tern_type_name(types[ti]), (long long)K, (long long)N, (long long)T);
            int64_t xne[2] = {K, T}, dne[2] = {N, T};
            uint8_t *q = conf_src(c, 0, TERN_TYPE_Q8_TOK, 2, xne);
            float *x = xalloc((size_t)(K * T) * 4);
            activation_rows(x, K, T, rng);
            for (int64_t t = 0; t < T; t++) conf_quantize_row(x + t * K, K, q + t * c->src[0].nb[1]);
            free(x);
            make_weight(c, 1, types[ti], K, N, rng);
            c->weight = 1;
            c->purpose = TERN_REPACK_TERNARY;
            conf_dst(c, TERN_TYPE_F32, 2, dne);
        }
}

/* acc is an exact integer; then (float)acc / inv * scale, in f32, in order. */
static void oracle_matmul_ternary(conf_case *c)
{
    int64_t K = c->src[0].ne[0], N = c->dst.ne[0];
    for (int64_t t = 0; t < c->dst.ne[1]; t++) {
        const uint8_t *row = (const uint8_t *)c->src[0].data + t * c->src[0].nb[1];
        float inv = f32_at(row, 0);
        for (int64_t n = 0; n < N; n++) {
            int64_t acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (int8_t)row[TERN_Q8TOK_HEADER + k] * c->codes[n * K + k];
            float y = (float)acc;
            y = y / inv;
            y = y * c->src[1].scale;
            put_f32(c->expect, t * N + n, y);
        }
    }
}

static void gen_matmul(conf_list *l, unsigned long long *rng)
{
    static const int types[] = {TERN_TYPE_F32, TERN_TYPE_F16, TERN_TYPE_BF16, TERN_TYPE_Q8_0};
    static const int64_t odd[][3] = {{100, 7, 17}, {7, 1, 1}, {33, 257, 1}, {1, 3, 2}};
    for (int ti = 0; ti < 4; ti++)
        for (int si = 0; si < 12; si++) {
            const int64_t *s = si < 8 ? mm_shapes[si] : odd[si - 8];
            int64_t K = s[0], N = s[1], T = s[2];
            if (types[ti] == TERN_TYPE_Q8_0 && K % 32) K = (K + 31) / 32 * 32; /* Q8_0 needs whole blocks */
            conf_case *c = conf_new(l, TERN_OP_MATMUL, "%s K=%lld N=%lld tok=%lld",
                                    tern_type_name(types[ti]), (long long)K, (long long)N, (long long)T);
            int64_t xne[2] = {K, T}, dne[2] = {N, T};
            fill(conf_src(c, 0, TERN_TYPE_F32, 2, xne), K * T, 1.0f, rng);
            make_weight(c, 1, types[ti], K, N, rng);
            c->weight = 1;
            c->purpose = TERN_REPACK_MATMUL;
            c->exact = types[ti] == TERN_TYPE_Q8_0;
            conf_dst(c, TERN_TYPE_F32, 2, dne);
        }
}

/* op.h's Q8_0 definition, written out here: activations per block of 32
 * to int8 with an f32 scale amax/127, exact block dots, one f32 fma per
 * block in order. */
static float q8_0_definition(const float *x, const uint8_t *wrow, int64_t K)
{
    float acc = 0.0f;
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + 32 * b;
        const uint8_t *blk = wrow + 34 * b;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++)
            if (fabsf(xb[i]) > amax) amax = fabsf(xb[i]);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f, dx = amax / 127.0f;
        int64_t dot = 0;
        for (int i = 0; i < 32; i++) {
            float v = rintf(xb[i] * id);
            int qi = v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v;
            dot += (int64_t)qi * (int8_t)blk[2 + i];
        }
        uint16_t h = (uint16_t)(blk[0] | blk[1] << 8);
        acc = fmaf((float)dot, tern_f16_to_f32(h) * dx, acc);
    }
    return acc;
}

static void oracle_matmul(conf_case *c)
{
    int64_t K = c->src[0].ne[0], N = c->dst.ne[0], T = c->dst.ne[1];
    c->mag = xalloc((size_t)(N * T) * sizeof *c->mag);
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            const float *x = (const float *)c->src[0].data + t * K, *w = c->wdec + n * K;
            if (c->exact) {
                put_f32(c->expect, t * N + n,
                        q8_0_definition(x, (const uint8_t *)c->src[1].data + n * c->src[1].nb[1], K));
                c->mag[t * N + n] = 1.0;
                continue;
            }
            double acc = 0.0, mag = 0.0;
            for (int64_t k = 0; k < K; k++) {
                acc += (double)x[k] * w[k];
                mag += fabs((double)x[k] * w[k]);
            }
            put_f32(c->expect, t * N + n, acc);
            c->mag[t * N + n] = mag;
        }
}

/* ---- the table: tolerances sit beside each op ----
 * tol: a backend against scalar. oracle_tol: scalar against the
 * definition. CONF_FLOAT errors are |a-b| / max(1, |b|). CONF_MAG errors
 * are |a-b| / mag: for matmul mag = sum|x||w| (an f32 dot product over K
 * terms drifts with K); for rope mag = 1 + |angle| (|x_i| + |x_pair|), since
 * op.h fixes the angle's formula but not its precision, and an angle formed
 * in f32 (as llama.cpp and the PyTorch reference form it) is off by about
 * |angle| * 2^-24 at large positions. */
const conf_op conf_ops[] = {
    {TERN_OP_GET_ROWS, gen_get_rows, oracle_get_rows, CONF_EXACT, 0, 0},
    {TERN_OP_RMS_NORM, gen_rms_norm, oracle_rms_norm, CONF_FLOAT, 1e-5, 1e-6},
    {TERN_OP_ADD, gen_add, oracle_elementwise, CONF_FLOAT, 1e-6, 0},
    {TERN_OP_MUL, gen_mul, oracle_elementwise, CONF_FLOAT, 1e-6, 0},
    {TERN_OP_RELU_SQ, gen_relu_sq, oracle_elementwise, CONF_FLOAT, 1e-6, 0},
    {TERN_OP_SILU, gen_silu, oracle_elementwise, CONF_FLOAT, 1e-6, 1e-6},
    {TERN_OP_ROPE, gen_rope, oracle_rope, CONF_MAG, 1e-5, 1e-6},
    {TERN_OP_KV_STORE, gen_kv_store, oracle_kv_store, CONF_EXACT, 0, 0},
    {TERN_OP_ATTENTION, gen_attention, oracle_attention, CONF_FLOAT, 1e-5, 1e-6},
    {TERN_OP_SOFTMAX, gen_softmax, oracle_softmax, CONF_FLOAT, 1e-6, 2e-7},
    {TERN_OP_QUANTIZE_ACT, gen_quantize_act, oracle_quantize_act, CONF_EXACT, 0, 0},
    {TERN_OP_MATMUL_TERNARY, gen_matmul_ternary, oracle_matmul_ternary, CONF_EXACT, 0, 0},
    {TERN_OP_MATMUL, gen_matmul, oracle_matmul, CONF_MAG, 1e-4, 1e-6},
};
const int conf_n_ops = (int)(sizeof conf_ops / sizeof conf_ops[0]);
