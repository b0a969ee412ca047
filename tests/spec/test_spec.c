/* test_spec.c - speculative decoding (graphs/lib/spec.lua and every
 * pipeline shipped on it) on the shared draft/verifier pair and the
 * shared trained models: greedy output equal to the verifier alone, the
 * sampler's distribution equal to the verifier's, the verifier's logits
 * independent of the batch a token sits in, rollback and rewind leaving
 * no trace, stale marks refused, asynchronous evaluation, user pipelines
 * (`tern run --pipeline`) and their errors, and a clear error for models
 * that do not share a vocabulary. The Lua side of the checks is
 * spec_helpers.lua beside this file. */
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/wait.h>

#include "common/testutil.h"
#include "tern/backend.h"
#include "tern/lua.h"
#include "tern/session.h"
#include "tern/tern.h"

#define HELPERS TERN_SOURCE_DIR "/tests/spec/spec_helpers.lua"

static void model_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/models/%s.gguf", tu_shared_dir(), name);
}

/* A pipeline state with spec_helpers.lua's table on the stack top. */
static lua_State *helpers(void)
{
    lua_State *L = tern_lua_pipeline_state(0);
    ck_assert_ptr_nonnull(L);
    if (luaL_dofile(L, HELPERS) != LUA_OK) ck_abort_msg("%s", lua_tostring(L, -1));
    return L;
}

/* Calls helpers[name] with the nargs values pushed after it; nres results. */
static void call(lua_State *L, int nargs, int nres)
{
    if (lua_pcall(L, nargs, nres, 0) != LUA_OK) ck_abort_msg("%s", lua_tostring(L, -1));
}

static void push_fn(lua_State *L, const char *name)
{
    lua_getfield(L, 1, name);
    ck_assert_msg(lua_isfunction(L, -1), "no helper %s", name);
}

/* Wilson-Hilferty approximation of the chi-square quantile with df degrees
 * of freedom whose upper tail is the normal tail beyond z (z = 4.753: 1e-6). */
static double chi2_quantile(int df, double z)
{
    double a = 2.0 / (9.0 * df), t = 1 - a + z * sqrt(a);
    return df * t * t * t;
}

/* Greedy exactness: 5 prompts (refs.json's three and two more), draft_max
 * 1..8 with p_min 0 (every round drafts in full, so rejections and
 * rollbacks happen all the time), draft_max 8 at the default p_min (0.1),
 * and draft_min 2 / p_min 0.5; 24 tokens each, token for token equal to
 * the verifier alone. */
START_TEST(test_greedy_equals_verifier)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], dpath[4096], refs[4096];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    tu_shared_path(refs, sizeof refs, "models/ref/refs.json");
    size_t json_len;
    char *json = tu_read_file(refs, &json_len); /* not NUL-terminated */
    ck_assert_ptr_nonnull(json);
    lua_State *L = helpers();
    push_fn(L, "prompts");
    lua_pushlstring(L, json, json_len);
    call(L, 1, 1);
    free(json);
    int prompts = lua_gettop(L);
    ck_assert_int_ge(luaL_len(L, prompts), 5);
    push_fn(L, "greedy");
    lua_pushstring(L, vpath);
    lua_pushstring(L, dpath);
    lua_pushstring(L, "auto");
    lua_pushvalue(L, prompts);
    lua_pushinteger(L, 24);
    call(L, 5, 2);
    ck_assert_msg(lua_isnil(L, -2), "%s", lua_tostring(L, -2));
    printf("spec greedy (auto backend): %s\n", lua_tostring(L, -1));
    tern_lua_pipeline_close(L);
}
END_TEST

/* The shipped pipelines: speculative.lua and every .lua in graphs/examples,
 * each run as `tern run` runs it (greedy, 32 tokens), write the verifier's
 * own tokens: on the shared pair (tiny-llama verifying, tiny-bitnet
 * drafting), the other way round, the I2_S copy of tiny-bitnet verified
 * with the TQ2_0 one drafting, and the shared pair with the verifier on
 * scalar and the draft on the best backend (a hybrid, overlapped where the
 * pipeline overlaps; one prompt). Six prompts, one of them a passage said
 * twice. */
START_TEST(test_pipelines_exact)
{
    TU_REQUIRE_SHARED();
    char refs[4096], llama[4096], bitnet[4096], i2s[4096];
    model_path(llama, sizeof llama, "tiny-llama");
    model_path(bitnet, sizeof bitnet, "tiny-bitnet");
    model_path(i2s, sizeof i2s, "tiny-bitnet-i2_s");
    tu_shared_path(refs, sizeof refs, "models/ref/refs.json");
    size_t json_len;
    char *json = tu_read_file(refs, &json_len);
    ck_assert_ptr_nonnull(json);
    lua_State *L = helpers();
    push_fn(L, "pipelines");
    /* the pipeline names: speculative.lua and graphs/examples/ */
    lua_newtable(L);
    int n_names = 0;
    lua_pushstring(L, "speculative.lua");
    lua_rawseti(L, -2, ++n_names);
    DIR *dir = opendir(TERN_SOURCE_DIR "/graphs/examples");
    ck_assert_ptr_nonnull(dir);
    for (struct dirent *e; (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0) continue;
        lua_pushfstring(L, "examples/%s", e->d_name);
        lua_rawseti(L, -2, ++n_names);
    }
    closedir(dir);
    ck_assert_int_ge(n_names, 4);
    const struct {
        const char *v, *d, *backend, *backend_draft;
        int prompts;
    } pairs[] = {
        {llama, bitnet, "auto", "auto", 6},
        {bitnet, llama, "auto", "auto", 6},
        {i2s, bitnet, "auto", "auto", 6},
        {llama, bitnet, "scalar", "auto", 1}, /* scalar is slow: one prompt */
    };
    lua_newtable(L);
    for (int i = 0; i < 4; i++) {
        lua_newtable(L);
        lua_pushstring(L, pairs[i].v);
        lua_setfield(L, -2, "v");
        lua_pushstring(L, pairs[i].d);
        lua_setfield(L, -2, "d");
        lua_pushstring(L, pairs[i].backend);
        lua_setfield(L, -2, "backend");
        lua_pushstring(L, pairs[i].backend_draft);
        lua_setfield(L, -2, "backend_draft");
        lua_pushinteger(L, pairs[i].prompts);
        lua_setfield(L, -2, "prompts");
        lua_rawseti(L, -2, i + 1);
    }
    push_fn(L, "prompts");
    lua_pushlstring(L, json, json_len);
    call(L, 1, 1);
    free(json);
    ck_assert_int_eq(luaL_len(L, -1), 6);
    lua_pushinteger(L, 32);
    call(L, 4, 2);
    ck_assert_msg(lua_isnil(L, -2), "%s", lua_tostring(L, -2));
    printf("spec pipelines: %s\n", lua_tostring(L, -1));
    tern_lua_pipeline_close(L);
}
END_TEST

/* smp:speculate with synthetic p and q (n = 200000 draws, fixed seeds):
 * the emitted tokens follow p. Pearson's chi-square against p with 7
 * degrees of freedom; the bound is its 1 - 1e-6 quantile, so a correct
 * sampler with an arbitrary seed fails with probability 1e-6. The
 * acceptance rate must be sum_i min(p_i, q_i) = 0.57 within 5 standard
 * errors (0.0055). */
START_TEST(test_speculate_synthetic)
{
    lua_State *L = helpers();
    push_fn(L, "synthetic");
    lua_pushinteger(L, 200000);
    lua_pushinteger(L, 42);
    call(L, 2, 4);
    double chi2 = lua_tonumber(L, -4), acc = lua_tonumber(L, -1);
    int df = (int)lua_tointeger(L, -3), impossible = (int)lua_tointeger(L, -2);
    double bound = chi2_quantile(df, 4.753);
    printf("spec synthetic: chi2 %.2f (df %d, bound %.2f), acceptance %.4f (expected 0.57)\n", chi2, df,
           bound, acc);
    ck_assert_int_eq(df, 7);
    ck_assert_int_eq(impossible, 0);
    ck_assert_msg(chi2 < bound, "chi2 %.2f >= %.2f", chi2, bound);
    ck_assert_msg(fabs(acc - 0.57) < 5 * sqrt(0.57 * 0.43 / 200000), "acceptance %.4f", acc);
    tern_lua_pipeline_close(L);
}
END_TEST

/* End to end on the shared pair through graphs/lib/spec.lua: 1200 rounds
 * from one context (temperature 1, top_k 8 in both chains, one token
 * drafted, fixed seeds) for each kind of proposal: the draft model's
 * sampled token with its q, the same verified on the worker thread while
 * the draft drafts ahead, a user function's fixed token (judged one-hot),
 * and the winner of best_of (judged one-hot). The first emitted token of
 * each round must follow the verifier's distribution: chi-square over its
 * 8 tokens (bins under 5 expected merged), bound at the 1 - 1e-6 quantile,
 * so a false failure has probability 1e-6 per kind for an arbitrary seed;
 * both branches (accept, resample) must run. */
START_TEST(test_sampling_e2e)
{
    TU_REQUIRE_SHARED();
    static const char *const kinds[] = {"draft", "overlap", "onehot", "best_of"};
    char vpath[4096], dpath[4096];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    for (int k = 0; k < 4; k++) {
        lua_State *L = helpers();
        push_fn(L, "sampling_e2e");
        lua_pushstring(L, vpath);
        lua_pushstring(L, dpath);
        lua_pushstring(L, "It was a bright cold day in April, and");
        lua_pushinteger(L, 1200);
        lua_pushinteger(L, 7 + k);
        lua_pushstring(L, kinds[k]);
        call(L, 6, 4);
        double chi2 = lua_tonumber(L, -4), acc = lua_tonumber(L, -1);
        int df = (int)lua_tointeger(L, -3), impossible = (int)lua_tointeger(L, -2);
        double bound = chi2_quantile(df, 4.753);
        printf("spec sampling e2e %-8s: chi2 %.2f (df %d, bound %.2f), draft acceptance %.3f\n", kinds[k], chi2, df,
               bound, acc);
        ck_assert_int_ge(df, 2);
        ck_assert_int_eq(impossible, 0);
        ck_assert_msg(chi2 < bound, "%s: chi2 %.2f >= %.2f", kinds[k], chi2, bound);
        ck_assert_msg(acc > 0.05 && acc < 0.95, "%s: acceptance %.3f: both branches must run", kinds[k], acc);
        tern_lua_pipeline_close(L);
    }
}
END_TEST

static tern_session *session(tern_model *m)
{
    tern_session_options so = tern_session_default_options(); /* f16 KV, as the pipeline runs */
    so.n_ctx = 512;
    tern_session *s;
    tern_error err;
    ck_assert_msg(tern_session_create(m, &so, &s, &err) == TERN_OK, "%s", err.msg);
    return s;
}

static void eval(tern_session *s, const int32_t *ids, size_t n, int all)
{
    tern_error err;
    ck_assert_msg(tern_session_eval(s, ids, n, all, &err) == TERN_OK, "%s", err.msg);
}

/* Names of the backends this machine can run, from the registry. */
static int runnable_backends(char names[][64], int max)
{
    tern_registry *reg;
    tern_error err;
    ck_assert_msg(tern_registry_scan(&reg, &err) == TERN_OK, "%s", err.msg);
    int n = 0;
    for (int i = 0; i < tern_registry_count(reg) && n < max; i++) {
        const tern_plugin_info *p = tern_registry_get(reg, i);
        if (p->loaded && p->probe.runnable) snprintf(names[n++], 64, "%s", p->name);
    }
    tern_registry_free(reg);
    ck_assert_int_ge(n, 1);
    return n;
}

/* The prompt and the 32 reference tokens after it (tiny-llama, prompt 0). */
static int ref_tokens(int32_t *ids, int max, int *n_prompt)
{
    char path[4096];
    tu_shared_path(path, sizeof path, "models/ref/tiny-llama.prompt0.tokens.i32");
    size_t size;
    int32_t *buf = tu_read_file(path, &size);
    ck_assert_ptr_nonnull(buf);
    int n = (int)(size / 4);
    ck_assert_int_le(n, max);
    memcpy(ids, buf, size);
    free(buf);
    *n_prompt = 12;
    return n;
}

/* On every runnable backend, the verifier's logits for each token of a
 * proposal are bit-identical whether the token is evaluated alone (after
 * the ones before it) or inside a batch of 1..9 tokens with all logits. */
START_TEST(test_batch_invariance)
{
    TU_REQUIRE_SHARED();
    char names[16][64], vpath[4096];
    int nb = runnable_backends(names, 16);
    model_path(vpath, sizeof vpath, "tiny-llama");
    int32_t ids[64];
    int n_prompt, n = ref_tokens(ids, 64, &n_prompt);
    ck_assert_int_ge(n, n_prompt + 9);
    const int32_t *prop = ids + n_prompt; /* 9 tokens: last accepted + 8 drafted */
    for (int b = 0; b < nb; b++) {
        tern_model *m = tu_load_model(vpath, names[b], 2);
        int64_t nv = tern_model_hparams(m)->n_vocab;
        size_t row = (size_t)nv * sizeof(float);
        float *alone = malloc(9 * row);
        ck_assert_ptr_nonnull(alone);
        tern_session *s = session(m);
        eval(s, ids, (size_t)n_prompt, 0);
        for (int i = 0; i < 9; i++) {
            eval(s, prop + i, 1, 1);
            memcpy(alone + (size_t)i * nv, tern_session_logits(s, NULL), row);
        }
        tern_error err;
        int checked = 0;
        for (int len = 1; len <= 9; len++) {
            ck_assert_int_eq(tern_session_rollback(s, tern_session_n_past(s) - n_prompt, &err), TERN_OK);
            eval(s, prop, (size_t)len, 1);
            int64_t rows;
            const float *lg = tern_session_logits(s, &rows);
            ck_assert_int_eq(rows, len);
            for (int i = 0; i < len; i++, checked++)
                ck_assert_msg(memcmp(lg + (size_t)i * nv, alone + (size_t)i * nv, row) == 0,
                              "%s: token %d in a batch of %d differs from alone", names[b], i, len);
        }
        printf("spec batch invariance %-8s: %d rows bit-identical (batches 1..9)\n", names[b], checked);
        free(alone);
        tern_session_free(s);
        tern_model_free(m);
    }
}
END_TEST

/* Rollback is exact: a session put through random speculative rounds
 * (evaluate the last token and k drafted ones with all logits, keep m,
 * roll back k - m) gives, for the next token, the same logits bits as a
 * fresh session fed only the accepted tokens one at a time. Both models,
 * on every runnable backend. */
START_TEST(test_rollback_exact)
{
    TU_REQUIRE_SHARED();
    static const char *const models[] = {"tiny-llama", "tiny-bitnet"};
    char names[16][64], path[4096];
    int nb = runnable_backends(names, 16);
    int32_t ids[64];
    int n_prompt;
    ref_tokens(ids, 64, &n_prompt);
    for (int mi = 0; mi < 2; mi++)
        for (int b = 0; b < nb; b++) {
            model_path(path, sizeof path, models[mi]);
            tern_model *m = tu_load_model(path, names[b], 2);
            int64_t nv = tern_model_hparams(m)->n_vocab;
            tern_session *s = session(m), *f = session(m);
            int32_t kept[512];
            int n_kept = n_prompt;
            memcpy(kept, ids, (size_t)n_prompt * sizeof *kept);
            eval(s, ids, (size_t)n_prompt - 1, 0);
            int32_t last = ids[n_prompt - 1];
            n_kept--; /* the last token is kept but not yet evaluated */
            unsigned long long rng = 99 + (unsigned long long)mi;
            tern_error err;
            for (int round = 0; round < 12; round++) {
                int32_t batch[9];
                int k = 1 + (int)(tu_rand(&rng) % 8), keep = (int)(tu_rand(&rng) % (unsigned)(k + 1));
                batch[0] = last;
                for (int i = 1; i <= k; i++) batch[i] = (int32_t)(tu_rand(&rng) % (unsigned long long)nv);
                eval(s, batch, (size_t)k + 1, 1);
                ck_assert_int_eq(tern_session_rollback(s, k - keep, &err), TERN_OK);
                memcpy(kept + n_kept, batch, (size_t)(keep + 1) * sizeof *kept);
                n_kept += keep + 1;
                last = (int32_t)(tu_rand(&rng) % (unsigned long long)nv);
            }
            ck_assert_int_eq(tern_session_n_past(s), n_kept);
            eval(s, &last, 1, 0);
            for (int i = 0; i < n_kept; i++) eval(f, kept + i, 1, 0);
            eval(f, &last, 1, 0);
            ck_assert_msg(memcmp(tern_session_logits(s, NULL), tern_session_logits(f, NULL), (size_t)nv * 4) == 0,
                          "%s on %s: logits after rollbacks differ from a fresh session", models[mi], names[b]);
            printf("spec rollback %-11s %-8s: 12 rounds, %d tokens kept, next logits bit-identical\n", models[mi],
                   names[b], n_kept);
            tern_session_free(s);
            tern_session_free(f);
            tern_model_free(m);
        }
}
END_TEST

/* s:mark() / s:rewind() are exact: a session put through random rounds
 * (mark, evaluate the last token and k drafted ones with all logits,
 * rewind to the mark keeping the last one and m accepted) gives, for the
 * next token, the same logits bits as a fresh session fed only the kept
 * tokens one at a time. Both models, every runnable backend. */
START_TEST(test_rewind_exact)
{
    TU_REQUIRE_SHARED();
    static const char *const models[] = {"tiny-llama", "tiny-bitnet"};
    char names[16][64], path[4096];
    int nb = runnable_backends(names, 16);
    int32_t ids[64];
    int n_prompt;
    ref_tokens(ids, 64, &n_prompt);
    for (int mi = 0; mi < 2; mi++)
        for (int b = 0; b < nb; b++) {
            model_path(path, sizeof path, models[mi]);
            tern_model *m = tu_load_model(path, names[b], 2);
            int64_t nv = tern_model_hparams(m)->n_vocab;
            tern_session *s = session(m), *f = session(m);
            int32_t kept[512], last = ids[n_prompt - 1];
            int n_kept = n_prompt - 1;
            memcpy(kept, ids, (size_t)n_kept * sizeof *kept);
            eval(s, ids, (size_t)n_kept, 0);
            unsigned long long rng = 7 + (unsigned long long)mi;
            tern_error err;
            for (int round = 0; round < 12; round++) {
                int32_t batch[9];
                int k = 1 + (int)(tu_rand(&rng) % 8), keep = (int)(tu_rand(&rng) % (unsigned)(k + 1));
                batch[0] = last;
                for (int i = 1; i <= k; i++) batch[i] = (int32_t)(tu_rand(&rng) % (unsigned long long)nv);
                tern_mark mk = tern_session_mark(s);
                ck_assert_int_eq(mk.pos, n_kept);
                eval(s, batch, (size_t)k + 1, 1);
                ck_assert_msg(tern_session_rewind(s, mk, keep + 1, &err) == TERN_OK, "%s", err.msg);
                memcpy(kept + n_kept, batch, (size_t)(keep + 1) * sizeof *kept);
                n_kept += keep + 1;
                last = (int32_t)(tu_rand(&rng) % (unsigned long long)nv);
            }
            ck_assert_int_eq(tern_session_n_past(s), n_kept);
            eval(s, &last, 1, 0);
            for (int i = 0; i < n_kept; i++) eval(f, kept + i, 1, 0);
            eval(f, &last, 1, 0);
            ck_assert_msg(memcmp(tern_session_logits(s, NULL), tern_session_logits(f, NULL), (size_t)nv * 4) == 0,
                          "%s on %s: logits after rewinds differ from a fresh session", models[mi], names[b]);
            printf("spec rewind %-11s %-8s: 12 rounds, %d tokens kept, next logits bit-identical\n", models[mi],
                   names[b], n_kept);
            tern_session_free(s);
            tern_session_free(f);
            tern_model_free(m);
        }
}
END_TEST

/* Rewind refuses, each with a clear message, a mark of another session, a
 * mark the cache was cut below (whether or not it was written again), and
 * keeping tokens past the end; a mark stays good while the cache only
 * grows, and a mark at 0 survives anything. */
START_TEST(test_marks_stale)
{
    TU_REQUIRE_SHARED();
    char path[4096];
    model_path(path, sizeof path, "tiny-bitnet");
    tern_model *m = tu_load_model(path, "auto", 2);
    tern_session *s = session(m), *o = session(m);
    int32_t ids[64];
    int n_prompt;
    ref_tokens(ids, 64, &n_prompt);
    tern_error err;
    tern_mark zero = tern_session_mark(s);
    eval(s, ids, 4, 0);
    tern_mark m4 = tern_session_mark(s);
    eval(s, ids + 4, 4, 0);
    tern_mark m8 = tern_session_mark(s);
    ck_assert_int_eq(m8.pos, 8);
    eval(s, ids + 8, 2, 0); /* grown past both: both still good */
    ck_assert_msg(tern_session_rewind(s, m8, 1, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_session_n_past(s), 9);
    ck_assert_int_eq(tern_session_rewind(s, m8, 2, &err), TERN_EINVAL); /* past the end */
    ck_assert_msg(strstr(err.msg, "cannot keep 2 tokens past the mark at 8"), "%s", err.msg);
    ck_assert_int_eq(tern_session_rewind(o, m4, 0, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "mark of another session"), "%s", err.msg);
    ck_assert_msg(tern_session_rewind(s, m4, 0, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_session_rewind(s, m8, 0, &err), TERN_EINVAL); /* cut below it */
    ck_assert_msg(strstr(err.msg, "stale mark: it is at position 8 but the cache now holds 4"), "%s", err.msg);
    eval(s, ids + 4, 4, 0); /* the same tokens again: still a new cache */
    ck_assert_int_eq(tern_session_rewind(s, m8, 0, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "stale mark: position 8 was rewound and evaluated again"), "%s", err.msg);
    ck_assert_msg(tern_session_rewind(s, m4, 0, &err) == TERN_OK, "%s", err.msg);
    tern_session_reset(s);
    eval(s, ids, 6, 0);
    ck_assert_int_eq(tern_session_rewind(s, m4, 0, &err), TERN_EINVAL); /* reset cut below it */
    ck_assert_msg(tern_session_rewind(s, zero, 0, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_session_n_past(s), 0);
    printf("spec marks: stale, foreign and overlong rewinds refused: %s\n", err.msg);
    tern_session_free(s);
    tern_session_free(o);
    tern_model_free(m);
}
END_TEST

/* tern_session_eval_async: the logits equal a synchronous evaluation's;
 * while it is pending eval, rollback and rewind refuse; a draft session
 * on another model evaluates meanwhile (its logits unchanged by the
 * overlap); a bad call fails at once; cancel leaves the session as it
 * was; freeing a session with an evaluation pending cancels and joins. */
START_TEST(test_eval_async)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], dpath[4096];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    tern_model *vm = tu_load_model(vpath, "auto", 2), *dm = tu_load_model(dpath, "auto", 2);
    int64_t nv = tern_model_hparams(vm)->n_vocab;
    size_t row = (size_t)nv * sizeof(float);
    int32_t ids[64];
    int n_prompt;
    ref_tokens(ids, 64, &n_prompt);
    tern_session *a = session(vm), *sync = session(vm), *d = session(dm), *dref = session(dm);
    tern_error err;
    eval(sync, ids, (size_t)n_prompt, 1);
    eval(dref, ids, 4, 0);
    ck_assert_msg(tern_session_eval_async(a, ids, (size_t)n_prompt, 1, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_session_eval(a, ids, 1, 0, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "asynchronous evaluation is pending"), "%s", err.msg);
    ck_assert_int_eq(tern_session_eval_async(a, ids, 1, 0, &err), TERN_EINVAL);
    ck_assert_int_eq(tern_session_rollback(a, 1, &err), TERN_EINVAL);
    ck_assert_int_eq(tern_session_rewind(a, tern_session_mark(sync), 0, &err), TERN_EINVAL);
    eval(d, ids, 4, 0); /* the draft meanwhile */
    ck_assert_msg(tern_session_wait(a, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_session_ready(a), 1);
    ck_assert_int_eq(tern_session_wait(a, &err), TERN_OK); /* nothing pending */
    int64_t rows;
    const float *lg = tern_session_logits(a, &rows);
    ck_assert_int_eq(rows, n_prompt);
    ck_assert_int_eq(tern_session_n_past(a), n_prompt);
    ck_assert(memcmp(lg, tern_session_logits(sync, NULL), (size_t)n_prompt * row) == 0);
    ck_assert(memcmp(tern_session_logits(d, NULL), tern_session_logits(dref, NULL), row) == 0);
    /* refused before it starts: nothing pending afterwards */
    int32_t bad = (int32_t)nv;
    ck_assert_int_eq(tern_session_eval_async(a, &bad, 1, 0, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    ck_assert_int_eq(tern_session_ready(a), 1);
    /* canceled: the session as before the call */
    tern_session_cancel(a);
    ck_assert_msg(tern_session_eval_async(a, ids, 8, 0, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_session_wait(a, &err), TERN_ECANCELED);
    ck_assert_int_eq(tern_session_n_past(a), n_prompt);
    eval(a, ids, 1, 0); /* usable */
    /* many short jobs in a row, each waited for */
    for (int i = 0; i < 50; i++) {
        ck_assert_msg(tern_session_eval_async(a, ids + (i % 8), 1, 0, &err) == TERN_OK, "%s", err.msg);
        while (!tern_session_ready(a)) {}
        ck_assert_int_eq(tern_session_wait(a, &err), TERN_OK);
        ck_assert_int_eq(tern_session_rollback(a, 1, &err), TERN_OK);
    }
    /* freed while pending */
    ck_assert_msg(tern_session_eval_async(a, ids, (size_t)n_prompt, 1, &err) == TERN_OK, "%s", err.msg);
    tern_session_free(a);
    printf("spec eval_async: %d logits rows equal to eval, draft evaluated alongside, cancel and free while "
           "pending clean\n", n_prompt);
    tern_session_free(sync);
    tern_session_free(d);
    tern_session_free(dref);
    tern_model_free(vm);
    tern_model_free(dm);
}
END_TEST

/* Runs `tern ARGS` through the shell; stdout+stderr into out; exit status. */
static int tern_cmd(char *out, size_t n, const char *args)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", tu_tern_exe(), args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t used = fread(out, 1, n - 1, p);
    out[used] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Writes a copy of src where the first stored string equal to `from`
 * (u64 length prefix + bytes, as GGUF stores token texts) becomes `to`
 * (same length), so the file stays valid and one token's text changes. */
static void patched_copy(const char *src, const char *dst, const char *from, const char *to)
{
    size_t size, len = strlen(from);
    ck_assert_uint_eq(len, strlen(to));
    unsigned char *buf = tu_read_file(src, &size), pat[64];
    ck_assert_ptr_nonnull(buf);
    uint64_t l = len;
    memcpy(pat, &l, 8); /* little-endian host, as the tern build assumes */
    memcpy(pat + 8, from, len);
    unsigned char *hit = memmem(buf, size, pat, len + 8);
    ck_assert_ptr_nonnull(hit);
    memcpy(hit + 8, to, len);
    FILE *f = fopen(dst, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, size, f), size);
    fclose(f);
    free(buf);
}

/* A draft with another vocabulary is refused with one clear line: a model
 * of 128256 tokens (../shared/ref), and a copy of the tiny draft whose
 * token 8191 reads <|end_of_TEXT|> (same count, one text differs). */
START_TEST(test_vocab_mismatch)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], dpath[4096], other[4096], args[16384], out[1 << 14];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    tu_shared_path(other, sizeof other, "ref/models/tiny-b158-i2_s.gguf");
    const char *patched = "/tmp/tern-spec-vocab.gguf";
    patched_copy(dpath, patched, "<|end_of_text|>", "<|end_of_TEXT|>");
    const struct {
        const char *draft, *expect;
    } cases[] = {
        {other, "128256 tokens (128256 in the tokenizer) against 8192"},
        {patched, "token 8191 is '<|end_of_TEXT|>' against '<|end_of_text|>'"},
    };
    for (size_t i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "run --model-draft %s -m %s -p hi -n 2", cases[i].draft, vpath);
        int rc = tern_cmd(out, sizeof out, args);
        printf("spec vocab mismatch: %s", out);
        ck_assert_int_eq(rc, 1);
        ck_assert_msg(strstr(out, "do not share a vocabulary") && strstr(out, cases[i].expect), "%s", out);
    }
    /* the patched draft itself still loads and runs: only the pairing fails */
    snprintf(args, sizeof args, "run -m %s -p hi -n 2", patched);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    remove(patched);
}
END_TEST

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The user pipeline of the README (the ```lua block that starts with
 * "-- my_pipeline.lua"), written out as it stands: under 40 lines, and
 * `tern run --pipeline FILE` runs it with the verifier's own output. */
START_TEST(test_readme_pipeline)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], args[16384], out[1 << 14];
    model_path(vpath, sizeof vpath, "tiny-llama");
    size_t len;
    char *readme = tu_read_file(TERN_SOURCE_DIR "/README.md", &len);
    ck_assert_ptr_nonnull(readme);
    char *start = strstr(readme, "```lua\n-- my_pipeline.lua");
    ck_assert_ptr_nonnull(start);
    start += strlen("```lua\n");
    char *end = strstr(start, "```");
    ck_assert_ptr_nonnull(end);
    *end = 0;
    int lines = 0;
    for (char *c = start; *c; c++) lines += *c == '\n';
    ck_assert_int_lt(lines, 40);
    const char *path = "/tmp/tern-spec-my_pipeline.lua";
    write_text(path, start);
    free(readme);
    snprintf(args, sizeof args,
             "run --pipeline %s -m %s -p 'It was a bright cold day in April, and it was a bright cold day in' "
             "-n 24 --temp 0 -v", path, vpath);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "speculative:") && strstr(out, "same tokens"), "%s", out);
    printf("spec README pipeline: %d lines, runs: %s", lines, strstr(out, "speculative:"));
    remove(path);
}
END_TEST

/* Broken user pipelines: each fails with exit status 1 and one message
 * naming the file and line at fault, never a crash (the san=1 build runs
 * this too): a Lua error, a syntax error, a file that returns no
 * function, a proposer that returns a string, one that returns a token
 * outside the vocabulary, one that raises, a policy that returns no draft
 * length, a proposer whose drafting ahead fails while the verifier runs
 * on its worker, a session used while its evaluation is pending, a
 * pipeline that ends with one pending, and a file that is not there. */
START_TEST(test_broken_pipelines)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], args[16384], out[1 << 14];
    model_path(vpath, sizeof vpath, "tiny-llama");
#define HEAD "local spec = tern.script(\"lib/spec.lua\")\n"
#define MAIN(cfg) "return function(opts)\n  return spec.main(opts, " cfg ")\nend\n"
    const struct {
        const char *text, *expect;
    } cases[] = {
        {HEAD "return function(opts)\n  local x\n  return x.y\nend\n", "broken0.lua:4: attempt to index a nil value"},
        {HEAD "return function(opts)\n  return spec.main(opts, {\nend\n", "broken1.lua:4:"},
        {HEAD "return 42\n", "broken2.lua: a pipeline script must return a function(opts), not number"},
        {HEAD "local function p(run, k) return \"abc\" end\n" MAIN("{ proposer = p }"),
         "broken3.lua:2: proposer 'function at /tmp/tern-spec-broken3.lua:2' returned string, not a list of token ids"},
        {HEAD "local function p(run, k)\n  return { 1, 99999 }\nend\n" MAIN("{ proposer = p }"),
         "broken4.lua:2: proposer 'function at /tmp/tern-spec-broken4.lua:2' returned 99999 at position 2, not a "
         "token id of the vocabulary (0..8191)"},
        {HEAD "local function p(run, k)\n  error(\"no idea\")\nend\n" MAIN("{ proposer = p }"),
         "broken5.lua:3: no idea"},
        {HEAD "local function k(run) return 1.5 end\n" MAIN("{ proposer = spec.ngram(), policy = k }"),
         "broken6.lua:2: policy returned 1.5, not a draft length"},
        {HEAD "local p = { name = \"mine\", propose = function(self, run, k) return { 1 } end,\n"
              "  ahead = function(self, run, ids, ready)\n    error(\"ahead failed\")\n  end }\n"
              MAIN("{ proposer = p, overlap = true }"), "broken7.lua:4: ahead failed"},
        {HEAD "return function(opts)\n  local v = spec.verifier(opts)\n  v.sess:eval_async({ 1, 2, 3 })\n"
              "  return v.sess:n_past()\nend\n",
         "broken8.lua:5: session has an evaluation pending (s:eval_async): call s:wait() first"},
        {HEAD "return function(opts)\n  local v = spec.verifier(opts)\n  v.sess:eval_async({ 1, 2, 3 }, true)\n"
              "  error(\"left it pending\")\nend\n", "broken9.lua:5: left it pending"},
    };
#undef HEAD
#undef MAIN
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "/tmp/tern-spec-broken%zu.lua", i);
        write_text(path, cases[i].text);
        snprintf(args, sizeof args, "run --pipeline %s -m %s -p 'It was a bright cold day' -n 8 --temp 0", path,
                 vpath);
        int rc = tern_cmd(out, sizeof out, args);
        printf("spec broken pipeline %zu: %s", i, out);
        ck_assert_msg(rc == 1, "case %zu: exit %d: %s", i, rc, out);
        ck_assert_msg(strstr(out, cases[i].expect) != NULL, "case %zu: %s", i, out);
        ck_assert_msg(strstr(out, "tern run: ") && !strstr(out, "stack traceback"), "case %zu: %s", i, out);
        remove(path);
    }
    snprintf(args, sizeof args, "run --pipeline /tmp/tern-spec-no-such.lua -m %s -p hi", vpath);
    ck_assert_int_eq(tern_cmd(out, sizeof out, args), 1);
    ck_assert_msg(strstr(out, "pipeline /tmp/tern-spec-no-such.lua: no such file"), "%s", out);
}
END_TEST

/* tern run --lookup: n-gram lookup without a draft model, greedy, on a
 * passage said once and half again (the tiny model does not quote it back,
 * but falls into a loop the lookup predicts): the verifier's own tokens
 * (-v compares), rounds that accept drafted tokens. */
START_TEST(test_lookup_command)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], args[16384], out[1 << 14];
    model_path(vpath, sizeof vpath, "tiny-llama");
    const char *p = "The old man looked out over the sea and said that the boats would come back before the "
                    "storm. His daughter stood beside him at the window,";
    snprintf(args, sizeof args, "run --lookup -m %s -p '%s and for a long time neither of them spoke. Far away, "
             "where the grey water met the sky, a single light moved slowly toward the harbour.\n\n%s' -n 60 "
             "--temp 0 -v", vpath, p, p);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "speculative:") && strstr(out, "same tokens"), "%s", out);
    int accepted = 0;
    const char *sp = strstr(out, "speculative:");
    ck_assert_msg(sscanf(strstr(sp, "accepted "), "accepted %d", &accepted) == 1, "%s", out);
    ck_assert_int_gt(accepted, 10);
    printf("spec lookup: %s", sp);
}
END_TEST

/* tern bench --model-draft (graphs/spec_bench.lua) keeps its cost-model
 * report, and --overlap compares sequential and overlapped rounds that
 * write the same tokens. Small settings: what is checked is the report,
 * not the timings (the machine is shared). */
START_TEST(test_bench_command)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], dpath[4096], args[16384], out[1 << 14];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    snprintf(args, sizeof args, "bench --model-draft %s -m %s --draft-max 2 -n 8 -r 1 --spec-prompts 1", dpath,
             vpath);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "| draft_max | a (per token) |") && strstr(out, "measured / predicted") &&
                      strstr(out, "best draft_max:") && strstr(out, "T_verify(k+1) ms"), "%s", out);
    snprintf(args, sizeof args, "bench --model-draft %s -m %s --draft-max 2 -n 8 -r 1 --spec-prompts 1 --overlap",
             dpath, vpath);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "| overlapped |") && strstr(out, "same tokens: yes"), "%s", out);
    printf("spec bench: cost-model report and --overlap comparison print\n");
}
END_TEST

/* tern run --model-draft: text, the speculative report, and with -v the
 * verifier alone on the same prompt (same tokens, greedy) and the speed-up. */
START_TEST(test_run_command)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], dpath[4096], args[16384], out[1 << 14];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    snprintf(args, sizeof args,
             "run --model-draft %s -m %s -p 'It was a bright cold day in April, and' -n 20 --temp 0 "
             "--draft-max 4 --draft-p-min 0 -v", dpath, vpath);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    ck_assert_msg(strstr(out, "It was a bright cold day in April, and the sun was shining") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "generation: 20 tokens") && strstr(out, "speculative:") &&
                      strstr(out, "acceptance") && strstr(out, "same tokens") && strstr(out, "speed-up"),
                  "%s", out);
}
END_TEST

Suite *spec_suite(void)
{
    Suite *s = suite_create("spec");
    /* the exactness runs: minutes under the sanitizers on a busy machine */
    TCase *exact = tcase_create("spec-exact");
    tcase_set_timeout(exact, 1800);
    tcase_add_test(exact, test_greedy_equals_verifier);
    tcase_add_test(exact, test_pipelines_exact);
    tcase_add_test(exact, test_sampling_e2e);
    suite_add_tcase(s, exact);
    TCase *tc = tcase_create("spec");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_speculate_synthetic);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_rollback_exact);
    tcase_add_test(tc, test_rewind_exact);
    tcase_add_test(tc, test_marks_stale);
    tcase_add_test(tc, test_eval_async);
    tcase_add_test(tc, test_vocab_mismatch);
    tcase_add_test(tc, test_run_command);
    tcase_add_test(tc, test_readme_pipeline);
    tcase_add_test(tc, test_broken_pipelines);
    tcase_add_test(tc, test_lookup_command);
    tcase_add_test(tc, test_bench_command);
    suite_add_tcase(s, tc);
    return s;
}
