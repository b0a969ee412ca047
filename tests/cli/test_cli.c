/* test_cli.c - the tern command as a user runs it: perplexity against the
 * shared PyTorch figures, eval's logits file, run's error paths (one line,
 * non-zero exit) and the default model. */
#include <math.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "common/testutil.h"

/* Runs `tern ARGS` through the shell; captures stdout+stderr into out.
 * Returns the exit status. */
static int tern_cmd(char *out, size_t n, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", tu_tern_exe(), args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t used = 0;
    out[0] = 0;
    while (used + 1 < n) {
        size_t got = fread(out + used, 1, n - 1 - used, p);
        if (got == 0) break;
        used += got;
    }
    out[used] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The number after "key": in the object that follows "\"model\": {". */
static double model_number(const char *json, const char *model, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": {", model);
    const char *p = strstr(json, pat);
    ck_assert_ptr_nonnull(p);
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(p, pat);
    ck_assert_ptr_nonnull(p);
    return strtod(p + strlen(pat), NULL);
}

static const char *const ppl_models[] = {"tiny-bitnet", "tiny-llama"};

/* Perplexity over the shared validation tokens, 16 chunks of 512, within
 * 0.5% of the PyTorch reference. */
START_TEST(test_perplexity_matches_reference)
{
    TU_REQUIRE_SHARED();
    char refs[4096], ids[4096], args[8192], out[1 << 16];
    tu_shared_path(refs, sizeof refs, "models/ref/refs.json");
    tu_shared_path(ids, sizeof ids, "models/ref/val.tokens8192.i32");
    char *json = tu_read_file(refs, NULL);
    ck_assert_ptr_nonnull(json);
    double want = model_number(json, ppl_models[_i], "val_ppl");
    free(json);
    snprintf(args, sizeof args, "perplexity -m %s/models/%s.gguf --ids %s -c 512 -t 2", tu_shared_dir(),
             ppl_models[_i], ids);
    ck_assert_int_eq(tern_cmd(out, sizeof out, args), 0);
    const char *p = strstr(out, "PPL = ");
    ck_assert_msg(p != NULL, "no PPL line in: %s", out);
    double got = strtod(p + 6, NULL);
    printf("perplexity %s: tern %.4f, PyTorch %.4f (%.3f%%)\n", ppl_models[_i], got, want,
           100 * fabs(got - want) / want);
    ck_assert_msg(fabs(got - want) / want < 0.005, "ppl %.4f vs %.4f", got, want);
}
END_TEST

/* tern eval writes [n_tokens][n_vocab] float32 and the ids beside it;
 * with the head as stored (--head f16), the reference's own, its logits
 * meet the README's 0.05 bound. */
START_TEST(test_eval_writes_logits)
{
    TU_REQUIRE_SHARED();
    char ids[4096], ref[4096], args[8192], out[1 << 14];
    tu_shared_path(ids, sizeof ids, "models/ref/tiny-llama.prompt0.tokens.i32");
    tu_shared_path(ref, sizeof ref, "models/ref/tiny-llama.prompt0.logits.f32");
    const char *lg = "/tmp/tern-test-eval.f32";
    snprintf(args, sizeof args, "eval -m %s/models/tiny-llama.gguf --head f16 --ids %s --logits %s --batch 5",
             tu_shared_dir(), ids, lg);
    ck_assert_msg(tern_cmd(out, sizeof out, args) == 0, "%s", out);
    size_t na, nb, ni, nr;
    float *a = tu_read_file(lg, &na), *b = tu_read_file(ref, &nb);
    int32_t *back = tu_read_file("/tmp/tern-test-eval.tokens.i32", &nr), *orig = tu_read_file(ids, &ni);
    ck_assert(a && b && back && orig);
    ck_assert_uint_eq(na, nb);
    ck_assert_uint_eq(nr, ni);
    ck_assert_mem_eq(back, orig, ni);
    double worst = 0;
    for (size_t i = 0; i < na / 4; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    printf("eval tiny-llama p0 (auto backend, batch 5): max|d| %.2e\n", worst);
    ck_assert(worst < 0.05);
    free(a), free(b), free(back), free(orig);
}
END_TEST

/* Bad input: one line naming the problem, exit status 1, no crash. */
START_TEST(test_run_errors)
{
    char out[1 << 14];
    static const struct {
        const char *args, *expect;
    } cases[] = {
        {"run -m /nonexistent.gguf -p hi", "/nonexistent.gguf"},
        {"run -p hi --backend nosuchbackend", "backend 'nosuchbackend' not found"},
        {"run -p hi --frobnicate", "unknown option '--frobnicate'"},
        {"run -p hi -n", "-n needs a value"},
        {"run -p hi -t zero", "not an integer"},
        {"run -p \"$(printf 'word %.0s' $(seq 600))\" -n 4", "does not fit the context"},
        {"run -p hi -ctk f16 -ctv f32", "differ"},
        {"eval -p hi", "--logits"},
        {"nosuchcommand", "unknown command"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = tern_cmd(out, sizeof out, cases[i].args);
        ck_assert_msg(rc == 1, "'%s' exited %d: %s", cases[i].args, rc, out);
        ck_assert_msg(strstr(out, cases[i].expect) != NULL, "'%s': expected '%s' in: %s",
                      cases[i].args, cases[i].expect, out);
    }
}
END_TEST

/* The embedded default model writes text; -n 0 only evaluates the prompt. */
START_TEST(test_run_default_model)
{
    char out[1 << 14];
    ck_assert_int_eq(tern_cmd(out, sizeof out, "run -p 'Once upon a time' -n 8 --temp 0"), 0);
    ck_assert_msg(strncmp(out, "Once upon a time", 16) == 0 && strlen(out) > 30, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "generation: 8 tokens"));
    ck_assert_int_eq(tern_cmd(out, sizeof out, "run -p 'Once upon a time' -n 0"), 0);
    ck_assert_ptr_nonnull(strstr(out, "generation: 0 tokens"));
    /* generation that fills the context stops there and says so */
    ck_assert_int_eq(tern_cmd(out, sizeof out, "run -p hi -c 4 -n 8"), 0);
    ck_assert_ptr_nonnull(strstr(out, "stop: context full"));
    /* a config.lua sets the same keys; a flag overrides it */
    FILE *f = fopen("/tmp/tern-test-config.lua", "w");
    ck_assert_ptr_nonnull(f);
    fputs("return { n_predict = 3, temp = 0, prompt = 'The committee said' }\n", f);
    fclose(f);
    ck_assert_int_eq(tern_cmd(out, sizeof out, "run --config /tmp/tern-test-config.lua"), 0);
    ck_assert_ptr_nonnull(strstr(out, "generation: 3 tokens"));
    ck_assert_int_eq(tern_cmd(out, sizeof out, "run --config /tmp/tern-test-config.lua -n 2"), 0);
    ck_assert_ptr_nonnull(strstr(out, "generation: 2 tokens"));
}
END_TEST

/* tern chat: two turns from standard input (the KV cache carries over),
 * then an empty line ends it; Ctrl-C while it waits ends it cleanly. */
START_TEST(test_chat)
{
    char out[1 << 14], cmd[8192];
    snprintf(cmd, sizeof cmd, "printf 'Tell me a story.\\nAnd another?\\n\\n' | %s chat -n 8 --temp 0 2>&1",
             tu_tern_exe());
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq(WEXITSTATUS(pclose(p)), 0);
    int prompts = 0;
    for (const char *q = out; (q = strstr(q, "> ")); q += 2) prompts++;
    ck_assert_msg(prompts == 3, "expected 3 prompts: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "template plain"));
    snprintf(cmd, sizeof cmd, "{ sleep 30 | %s chat & pid=$!; sleep 1; kill -INT $pid; wait $pid; } 2>&1",
             tu_tern_exe());
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq(WEXITSTATUS(pclose(p)), 0);
    ck_assert_msg(strstr(out, "interrupted") != NULL, "%s", out);
}
END_TEST

static int count(const char *s, const char *pat)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, pat)); p += strlen(pat)) n++;
    return n;
}

/* tern bench with a thread list: one row per (count, test), the JSON one
 * array of comma-separated rows (stdout only; the op table is stderr). */
START_TEST(test_bench_thread_list)
{
    char cmd[4200], out[1 << 16];
    snprintf(cmd, sizeof cmd, "%s/bin/tern bench -p 4 -n 4 -r 2 -t 1,2 -o json 2>/dev/null", tu_build_dir());
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t used = fread(out, 1, sizeof out - 1, p);
    out[used] = 0;
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_msg(out[0] == '[' && used >= 3 && strcmp(out + used - 2, "]\n") == 0, "not one array: %s", out);
    ck_assert_int_eq(count(out, "{\"model_filename\""), 4);
    ck_assert_int_eq(count(out, "]},\n  {"), 3); /* rows separated by exactly one comma */
    ck_assert_int_eq(count(out, ",,"), 0);
    ck_assert_int_eq(count(out, "\"n_threads\": 1,"), 2);
    ck_assert_int_eq(count(out, "\"n_threads\": 2,"), 2);
    ck_assert_int_eq(tern_cmd(out, sizeof out, "bench -p 4 -n 4 -r 1 -t 1,2"), 0);
    ck_assert_msg(strstr(out, "| 1 | pp4 |") && strstr(out, "| 1 | tg4 |") && strstr(out, "| 2 | pp4 |") &&
                      strstr(out, "| 2 | tg4 |") && count(out, "load: ") == 2,
                  "markdown rows missing: %s", out);
}
END_TEST

Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_perplexity_matches_reference, 0, 2);
    tcase_add_test(tc, test_eval_writes_logits);
    tcase_add_test(tc, test_run_errors);
    tcase_add_test(tc, test_run_default_model);
    tcase_add_test(tc, test_chat);
    tcase_add_test(tc, test_bench_thread_list);
    suite_add_tcase(s, tc);
    return s;
}
