/* test_spec.c - speculative decoding (graphs/speculative.lua) on the shared
 * draft/verifier pair: greedy output equal to the verifier alone, the
 * sampler's distribution equal to the verifier's, the verifier's logits
 * independent of the batch a token sits in, rollback leaving no trace, and
 * a clear error for models that do not share a vocabulary. The Lua side of
 * the checks is spec_helpers.lua beside this file. */
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
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
 * rollbacks happen all the time), draft_max 8 at the default p_min 0.75,
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

/* End to end on the shared pair: 1200 speculative rounds from one context
 * (temperature 1, top_k 8 in both chains, draft_max 1, fixed seeds); the
 * first emitted token of each round is accepted from the draft about half
 * the time and resampled from the residual otherwise, and its distribution
 * must be the verifier's. Chi-square over the verifier's 8 tokens (bins
 * under 5 expected merged), bound at the 1 - 1e-6 quantile: a false
 * failure has probability 1e-6 for an arbitrary seed. */
START_TEST(test_sampling_e2e)
{
    TU_REQUIRE_SHARED();
    char vpath[4096], dpath[4096];
    model_path(vpath, sizeof vpath, "tiny-llama");
    model_path(dpath, sizeof dpath, "tiny-bitnet");
    lua_State *L = helpers();
    push_fn(L, "sampling_e2e");
    lua_pushstring(L, vpath);
    lua_pushstring(L, dpath);
    lua_pushstring(L, "It was a bright cold day in April, and");
    lua_pushinteger(L, 1200);
    lua_pushinteger(L, 7);
    call(L, 5, 4);
    double chi2 = lua_tonumber(L, -4), acc = lua_tonumber(L, -1);
    int df = (int)lua_tointeger(L, -3), impossible = (int)lua_tointeger(L, -2);
    double bound = chi2_quantile(df, 4.753);
    printf("spec sampling e2e: chi2 %.2f (df %d, bound %.2f), draft acceptance %.3f\n", chi2, df, bound, acc);
    ck_assert_int_ge(df, 2);
    ck_assert_int_eq(impossible, 0);
    ck_assert_msg(chi2 < bound, "chi2 %.2f >= %.2f", chi2, bound);
    ck_assert_msg(acc > 0.05 && acc < 0.95, "acceptance %.3f: both branches must run", acc);
    tern_lua_pipeline_close(L);
}
END_TEST

static tern_model *load(const char *path, const char *backend)
{
    tern_model_options mo = tern_model_default_options();
    mo.backend = backend;
    mo.n_threads = 2;
    tern_model *m;
    tern_error err;
    ck_assert_msg(tern_model_load(path, &mo, &m, &err) == TERN_OK, "%s", err.msg);
    return m;
}

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
        tern_model *m = load(vpath, names[b]);
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
            tern_model *m = load(path, names[b]);
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
    TCase *tc = tcase_create("spec");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_greedy_equals_verifier);
    tcase_add_test(tc, test_speculate_synthetic);
    tcase_add_test(tc, test_sampling_e2e);
    tcase_add_test(tc, test_batch_invariance);
    tcase_add_test(tc, test_rollback_exact);
    tcase_add_test(tc, test_vocab_mismatch);
    tcase_add_test(tc, test_run_command);
    suite_add_tcase(s, tc);
    return s;
}
