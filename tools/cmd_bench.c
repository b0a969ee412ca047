/* cmd_bench.c - `tern bench`, modelled on llama-bench: prompt processing
 * (pp) and generation (tg) speed in tokens/s over repetitions after a
 * warm-up, mean +- stddev and median, a markdown table or JSON with
 * llama-bench's field names; per-op time shares and scalar-fallback counts;
 * with --roofline, the machine's memory read bandwidth measured in the same
 * run and decode speed as a share of the bandwidth bound; with -v, what
 * each backend launched per token in each test (its report(): device
 * kernels, and their time when it measures them). With --model-draft, the
 * speculative mode (bench_speculative). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model_cmd.h"
#include "tern/lua.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct bench_row {
    char test[32];
    int n_prompt, n_gen;
    double samples[64];
    int n;
    double avg, stddev, median;
} bench_row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(bench_row *r)
{
    double s = 0, s2 = 0, sorted[64];
    for (int i = 0; i < r->n; i++) {
        s += r->samples[i];
        sorted[i] = r->samples[i];
    }
    r->avg = s / r->n;
    for (int i = 0; i < r->n; i++) s2 += (r->samples[i] - r->avg) * (r->samples[i] - r->avg);
    r->stddev = r->n > 1 ? sqrt(s2 / (r->n - 1)) : 0;
    qsort(sorted, (size_t)r->n, sizeof sorted[0], cmp_double);
    r->median = r->n % 2 ? sorted[r->n / 2] : 0.5 * (sorted[r->n / 2 - 1] + sorted[r->n / 2]);
}

/* ---- memory read bandwidth (for --roofline) ---- */

typedef struct bw_arg {
    const uint64_t *buf;
    size_t n;
    uint64_t sink;
} bw_arg;

static void *bw_read(void *p)
{
    bw_arg *a = p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 ^= a->buf[i];
        s1 ^= a->buf[i + 1];
        s2 ^= a->buf[i + 2];
        s3 ^= a->buf[i + 3];
    }
    a->sink = s0 ^ s1 ^ s2 ^ s3;
    return NULL;
}

/* Best of 5 passes over 1 GiB split between n threads, in bytes/s. */
static double measure_bandwidth(int n_threads)
{
    size_t bytes = (size_t)1 << 30, words = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < words; i++) buf[i] = i;
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        pthread_t th[64];
        bw_arg args[64];
        int nt = n_threads < 64 ? n_threads : 64;
        double t0 = now_s();
        for (int t = 0; t < nt; t++) {
            args[t].buf = buf + words / (size_t)nt * (size_t)t;
            args[t].n = words / (size_t)nt;
            pthread_create(&th[t], NULL, bw_read, &args[t]);
        }
        for (int t = 0; t < nt; t++) pthread_join(th[t], NULL);
        double bw = (double)bytes / (now_s() - t0);
        if (bw > best) best = bw;
    }
    free(buf);
    return best;
}

static const char *const bench_keys[] = {
    "model", "threads[]", "backend", "kernel", "head", "device", "ctx_size", "batch_size", "cache_type_k",
    "cache_type_v", "n_prompt_bench", "n_gen_bench", "reps", "output", "roofline",
    "model_draft", "backend_draft", "threads_draft", "draft_max", "draft_p_min", "spec_accept_rate",
    "spec_prompts", "overlap", "verbose", NULL,
};

/* With --model-draft, bench measures speculative decoding instead: the
 * draft's decode cost, the verifier's cost per batch of 1..k+1, the
 * acceptance rate (or a replayed one, --spec-accept-rate), the speed-up
 * the cost model predicts and the one measured. The pipeline code is
 * graphs/spec_bench.lua, on graphs/lib/spec.lua (with --overlap, sequential
 * rounds against overlapped ones), so the rounds timed are the ones
 * `tern run --model-draft` runs. Options table on the stack top. */
static int bench_speculative(tern_opts *o, int n_gen)
{
    const char *model = opt_model_path(o);
    if (!model) return cli_fail("bench", "no model given (-m FILE) and the default model is not installed");
    /* short built-in prompts + n_gen + one round */
    if (opt_set_str(o, "model", model) || opt_set_bool(o, "spec_bench", 1) ||
        (!opt_int(o, "ctx_size", 0) && opt_set_int(o, "ctx_size", n_gen + 96)))
        return cli_fail("bench", "out of memory");
    lua_State *L = tern_lua_pipeline_state(0);
    if (!L || options_push_protected(L, o)) {
        tern_lua_pipeline_close(L);
        return cli_fail("bench", "out of memory");
    }
    tern_error err;
    tern_status st = tern_lua_run_pipeline(L, "spec_bench.lua", -1, &err);
    tern_lua_pipeline_close(L);
    if (st) return cli_fail("bench", "%s", err.msg);
    return 0;
}

static int run_pp(tern_session *s, const int32_t *toks, int n, double *tps, tern_error *err)
{
    tern_session_reset(s);
    double t0 = now_s();
    if (tern_session_eval(s, toks, (size_t)n, 0, err)) return 1;
    *tps = n / (now_s() - t0);
    return 0;
}

static int run_tg(tern_session *s, const int32_t *toks, int n, double *tps, tern_error *err)
{
    tern_session_reset(s);
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        if (tern_session_eval(s, toks + i, 1, 0, err)) return 1;
    *tps = n / (now_s() - t0);
    return 0;
}

/* Each backend's report of the work since the last call, per token. */
static void backend_reports(const tern_model *m, const char *test, uint64_t n_tokens, char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    for (int b = 0; b < tern_model_n_backends(m); b++) {
        char buf[4096];
        if (!tern_backend_report(tern_model_backend_at(m, b), n_tokens, buf, sizeof buf) || !test) continue;
        if (used < n) used += (size_t)snprintf(out + used, n - used, "\n%s, %llu tokens: %s", test,
                                               (unsigned long long)n_tokens, buf);
    }
}

static void print_ops(tern_session *s)
{
    const tern_graph_stats *st = tern_session_stats(s);
    double total = 0;
    for (int op = 0; op < TERN_OP_COUNT; op++) total += st->op_seconds[op];
    fprintf(stderr, "\n%-16s %10s %7s %10s\n", "op", "calls", "share", "fallback");
    for (int op = 0; op < TERN_OP_COUNT; op++) {
        if (!st->op_calls[op]) continue;
        fprintf(stderr, "%-16s %10llu %6.1f%% %10llu\n", tern_op_name(op),
                (unsigned long long)st->op_calls[op], total > 0 ? 100 * st->op_seconds[op] / total : 0,
                (unsigned long long)st->fallback_calls[op]);
    }
    const tern_graph_placement *pl = tern_session_placement(s);
    const tern_model *m = tern_session_model(s);
    fprintf(stderr, "nodes per graph:");
    for (int b = 0; b < tern_model_n_backends(m); b++)
        fprintf(stderr, "%s %s %d", b ? "," : "", tern_model_backend_at(m, b)->plugin->name, pl->nodes_on[b]);
    fprintf(stderr, "; past the first backend: %d; KV cache on %s\n", pl->n_fallback,
            tern_model_backend_at(m, tern_session_kv_backend(s))->plugin->name);
    fprintf(stderr, "copy nodes per graph: %d (%zu bytes); copies run: %llu, %.2f ms\n", pl->n_copies,
            pl->copy_bytes, (unsigned long long)st->copy_calls, st->copy_seconds * 1000);
}

/* One bench of the loaded model at opt "threads": pp and tg rows, printed
 * (JSON rows are the caller's array's; first says whether a comma goes
 * before them). 0, or 1 after printing why. */
static int bench_model(tern_opts *o, int n_prompt, int n_gen, int reps, const char *output, int first)
{
    int rc = 1;
    tern_model *m = NULL;
    tern_session *s = NULL;
    int32_t *toks = NULL;
    if (mc_open(o, "bench", &m, &s)) goto out;
    int64_t nv = tern_model_hparams(m)->n_vocab;
    int maxn = (n_prompt > n_gen ? n_prompt : n_gen) + 1;
    toks = malloc((size_t)maxn * sizeof *toks);
    if (!toks) {
        cli_fail("bench", "out of memory");
        goto out;
    }
    unsigned long long seed = 1234;
    for (int i = 0; i < maxn; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((seed >> 33) % (unsigned long long)nv);
    }
    bench_row rows[2];
    int n_rows = 0;
    tern_error err;
    /* warm-up: build the graphs, fault the weights in */
    double dummy;
    mc_catch_interrupt(s);
    if ((n_prompt && run_pp(s, toks, n_prompt, &dummy, &err)) || (n_gen && run_tg(s, toks, n_gen < 4 ? n_gen : 4, &dummy, &err))) {
        rc = mc_eval_failed("bench", &err);
        goto out;
    }
    tern_session_reset_stats(s);
    int verbose = opt_bool(o, "verbose");
    char reports[2][8192] = {"", ""};
    backend_reports(m, NULL, 0, reports[0], sizeof reports[0]); /* counting starts here */
    if (n_prompt) {
        bench_row *r = &rows[n_rows++];
        memset(r, 0, sizeof *r);
        snprintf(r->test, sizeof r->test, "pp%d", n_prompt);
        r->n_prompt = n_prompt;
        for (int i = 0; i < reps; i++)
            if (run_pp(s, toks, n_prompt, &r->samples[r->n++], &err)) {
                rc = mc_eval_failed("bench", &err);
                goto out;
            }
        summarize(r);
        backend_reports(m, r->test, (uint64_t)n_prompt * (uint64_t)reps, reports[0], sizeof reports[0]);
    }
    if (n_gen) {
        bench_row *r = &rows[n_rows++];
        memset(r, 0, sizeof *r);
        snprintf(r->test, sizeof r->test, "tg%d", n_gen);
        r->n_gen = n_gen;
        for (int i = 0; i < reps; i++)
            if (run_tg(s, toks, n_gen, &r->samples[r->n++], &err)) {
                rc = mc_eval_failed("bench", &err);
                goto out;
            }
        summarize(r);
        backend_reports(m, r->test, (uint64_t)n_gen * (uint64_t)reps, reports[1], sizeof reports[1]);
    }
    int threads = (int)opt_int(o, "threads", 1);
    double bw = opt_bool(o, "roofline") ? measure_bandwidth(threads) : 0;
    double bpt = (double)tern_model_weight_bytes_per_token(m);
    char desc[2048];
    tern_model_describe(m, desc, sizeof desc);
    const char *path = opt_model_path(o), *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(output, "json") == 0) {
        for (int i = 0; i < n_rows; i++) {
            bench_row *r = &rows[i];
            printf("%s  {\"model_filename\": \"%s\", \"backend\": \"%s\", \"n_threads\": %d, \"n_prompt\": %d, "
                   "\"n_gen\": %d, \"test\": \"%s\", \"avg_ts\": %.6f, \"stddev_ts\": %.6f, \"median_ts\": %.6f, "
                   "\"bytes_per_token\": %.0f",
                   first && i == 0 ? "" : ",\n", base, tern_model_backend(m)->plugin->name, threads, r->n_prompt, r->n_gen, r->test,
                   r->avg, r->stddev, r->median, bpt);
            printf(", \"load_seconds\": %.6f, \"pack_cache\": \"%s\"", tern_model_load_seconds(m),
                   tern_model_pack_cache(m) ? tern_model_pack_cache(m) : "none");
            if (bw > 0) printf(", \"bandwidth_bytes_per_s\": %.0f, \"roofline_ts\": %.6f", bw, bw / bpt);
            printf(", \"samples_ts\": [");
            for (int k = 0; k < r->n; k++) printf("%s%.6f", k ? ", " : "", r->samples[k]);
            printf("]}");
        }
    } else {
        printf("%s\n\n| model | backend | threads | test | t/s (mean ± sd) | median t/s |\n", desc);
        printf("| --- | --- | ---: | --- | ---: | ---: |\n");
        for (int i = 0; i < n_rows; i++)
            printf("| %s | %s | %d | %s | %.2f ± %.2f | %.2f |\n", base,
                   tern_model_backend(m)->plugin->name, threads, rows[i].test, rows[i].avg,
                   rows[i].stddev, rows[i].median);
        printf("\nload: %.1f ms%s%s%s\n", tern_model_load_seconds(m) * 1000,
               tern_model_pack_cache(m) ? " (packed weights " : "",
               tern_model_pack_cache(m) ? tern_model_pack_cache(m) : "", tern_model_pack_cache(m) ? ")" : "");
        printf("weights read per decoded token: %.1f MB\n", bpt / 1e6);
        if (bw > 0) {
            printf("memory read bandwidth (%d threads): %.1f GB/s -> bandwidth-bound decode %.2f tok/s\n",
                   threads, bw / 1e9, bw / bpt);
            for (int i = 0; i < n_rows; i++)
                if (rows[i].n_gen)
                    printf("%s median is %.1f%% of the bandwidth bound\n", rows[i].test,
                           100 * rows[i].median / (bw / bpt));
        }
    }
    print_ops(s);
    if (verbose) fprintf(stderr, "%s%s", reports[0], reports[1]);
    rc = 0;
out:
    mc_catch_interrupt(NULL);
    free(toks);
    tern_session_free(s);
    tern_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    /* llama-bench spells -p/-n/-r/-o differently from run: map them here */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) return cli_fail("bench", "out of memory");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            free(args);
            options_help("bench", "[-m MODEL] [-t N[,N...]] [-p 128] [-n 64] [-r 5] [-o md|json] [--roofline]\n"
                         "       tern bench --model-draft DRAFT -m VERIFIER [--draft-max K] [-n 64] [-r 3] "
                         "[--spec-accept-rate P] [--spec-prompts N]", bench_keys);
            return 0;
        }
        if (strcmp(a, "-p") == 0 || strcmp(a, "--n-prompt") == 0) a = "--n-prompt-bench";
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-gen") == 0) a = "--n-gen-bench";
        else if (strcmp(a, "-r") == 0 || strcmp(a, "--repetitions") == 0) a = "--reps";
        else if (strcmp(a, "-o") == 0) a = "--output";
        args[i] = (char *)a;
        if (i + 1 < argc && options_takes_value(a)) args[i + 1] = argv[i + 1], i++; /* never renamed */
    }
    int rc = 1;
    tern_opts *o = NULL;
    if (options_parse("bench", argc, args, bench_keys, &o)) goto done;
    /* each at most 2^20 (options.c), so the sums below fit an int */
    int n_prompt = (int)opt_int(o, "n_prompt_bench", 128), n_gen = (int)opt_int(o, "n_gen_bench", 64);
    int reps = (int)opt_int(o, "reps", 5);
    const char *output = opt_str(o, "output", "md");
    if (opt_has(o, "model_draft")) {
        rc = bench_speculative(o, n_gen);
        goto done;
    }
    if (!n_prompt && !n_gen) {
        cli_fail("bench", "nothing to measure: -p 0 and -n 0");
        goto done;
    }
    if (!opt_int(o, "ctx_size", 0) && opt_set_int(o, "ctx_size", (n_prompt > n_gen ? n_prompt : n_gen) + 16)) {
        cli_fail("bench", "out of memory");
        goto done;
    }
    if (opt_int(o, "ctx_size", 0) < (n_prompt > n_gen ? n_prompt : n_gen)) {
        cli_fail("bench", "-c %lld is smaller than the %d tokens of the test (-p %d, -n %d)",
                 opt_int(o, "ctx_size", 0), n_prompt > n_gen ? n_prompt : n_gen, n_prompt, n_gen);
        goto done;
    }
    long long threads[64];
    int n_threads = opt_int_list(o, "threads", threads, 64);
    if (n_threads == 0) threads[0] = tern_cpu_physical_cores(), n_threads = 1;
    int json = strcmp(output, "json") == 0;
    if (json) printf("[\n");
    for (int t = 0; t < n_threads; t++) {
        if (opt_set_int(o, "threads", threads[t])) {
            cli_fail("bench", "out of memory");
            goto done;
        }
        if (bench_model(o, n_prompt, n_gen, reps, output, t == 0)) goto done;
    }
    if (json) printf("\n]\n");
    rc = 0;
done:
    options_free(o);
    free(args);
    return rc;
}
