/* test_executor.c - the executor over several backends and device memory.
 *
 * devsim (tests/plugins/devsim.c) is a device whose buffers the host cannot
 * read (PROT_NONE), which queues ops until sync and runs scalar's kernels:
 *   - the shared trained models run with every node on devsim, and with
 *     devsim taking only half the ops (copy nodes between host and device):
 *     logits bit-identical to scalar;
 *   - backend lists ("x86,scalar", "devsim,x86"), and a named backend that
 *     cannot run is an error with the probe's reason;
 *   - errors: a bad token id, a position past the cache and a row id past
 *     the table reported by the kernels, a devsim op or sync made to fail
 *     mid-graph; each returns a clear status and the session (or graph)
 *     works again on the next evaluation;
 *   - cancel; two sessions on one model generating in two threads.
 * Tests run in forked processes, so the environment they set stays theirs. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "common/testutil.h"
#include "graph_impl.h"
#include "model_impl.h"
#include "tern/tern.h"

static const char *const trained[] = {"tiny-bitnet", "tiny-llama"};
/* the ops devsim keeps in the "half" runs: everything else stays on host */
static const char *const half_ops = "rms_norm,mul,relu_sq,silu,quantize_act,matmul_ternary,softmax";

static void use_devsim(const char *ops)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/plugins/devsim", tu_build_dir());
    setenv("TERN_PLUGIN_PATH", dir, 1);
    if (ops) setenv("TERN_DEVSIM_OPS", ops, 1);
    else unsetenv("TERN_DEVSIM_OPS");
}

static int shared_prompt(int mi, int p, int32_t *ids, int max)
{
    char rel[256], path[4096];
    snprintf(rel, sizeof rel, "models/ref/%s.prompt%d.tokens.i32", trained[mi], p);
    tu_shared_path(path, sizeof path, rel);
    size_t size;
    int32_t *buf = tu_read_file(path, &size);
    ck_assert_msg(buf != NULL, "cannot read %s", path);
    int n = (int)(size / 4);
    if (n > max) n = max;
    memcpy(ids, buf, (size_t)n * 4);
    free(buf);
    return n;
}

/* Teacher-forced logits of ids, fed in pieces of `batch`. */
static float *logits_of(tern_model *m, const int32_t *ids, int n, int batch, tern_graph_placement *pl)
{
    tern_session *s;
    tern_error err;
    ck_assert_msg(tern_session_create(m, NULL, &s, &err) == TERN_OK, "%s", err.msg);
    int64_t nv = tern_session_n_vocab(s);
    float *out = malloc((size_t)n * (size_t)nv * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (int i = 0; i < n; i += batch) {
        int len = n - i < batch ? n - i : batch;
        ck_assert_msg(tern_session_eval(s, ids + i, (size_t)len, 1, &err) == TERN_OK, "%s", err.msg);
        memcpy(out + (size_t)i * nv, tern_session_logits(s, NULL), (size_t)len * (size_t)nv * sizeof *out);
    }
    if (pl) *pl = *tern_session_placement(s);
    tern_session_free(s);
    return out;
}

static void model_path(int mi, char *buf, size_t n)
{
    snprintf(buf, n, "%s/models/%s.gguf", tu_shared_dir(), trained[mi]);
}

/* _i: model (2) x {every op on devsim, half of them} */
START_TEST(test_devsim_model)
{
    TU_REQUIRE_SHARED();
    int mi = _i / 2, half = _i % 2;
    char path[4096];
    model_path(mi, path, sizeof path);
    int32_t ids[128];
    int n = shared_prompt(mi, 1, ids, 40);
    tern_model *sm = tu_load_model(path, "scalar", 1);
    float *want = logits_of(sm, ids, n, 64, NULL);
    int64_t nv = tern_model_hparams(sm)->n_vocab;
    tern_model_free(sm);
    use_devsim(half ? half_ops : NULL);
    tern_model *dm = tu_load_model(path, "devsim", 2);
    ck_assert_int_eq(tern_model_n_backends(dm), 2); /* devsim, then scalar */
    for (int batch = 64; batch >= 1; batch = batch == 64 ? 7 : batch == 7 ? 1 : 0) {
        tern_graph_placement pl;
        float *got = logits_of(dm, ids, n, batch, &pl);
        printf("devsim %-12s %-4s batch %2d: %d nodes, %d on devsim, %d on scalar, %d copies "
               "(%zu bytes) per evaluation\n", trained[mi], half ? "half" : "all", batch, pl.n_nodes,
               pl.nodes_on[0], pl.nodes_on[1], pl.n_copies, pl.copy_bytes);
        ck_assert_msg(!memcmp(got, want, (size_t)n * (size_t)nv * 4),
                      "%s on devsim (%s ops), batch %d: logits differ from scalar", trained[mi],
                      half ? "half the" : "all", batch);
        if (half) {
            ck_assert_int_gt(pl.nodes_on[0], 0);
            ck_assert_int_gt(pl.nodes_on[1], 0);
            ck_assert_int_gt(pl.n_copies, 0);
        } else {
            ck_assert_int_eq(pl.nodes_on[1], 0);
            ck_assert_int_eq(pl.n_copies, 3); /* token ids and positions up, the logits down */
        }
        free(got);
    }
    free(want);
    tern_model_free(dm);
}
END_TEST

START_TEST(test_backend_lists)
{
    use_devsim(NULL);
    tern_model *m = tu_load_model(tu_default_model(), "devsim, scalar", 1);
    ck_assert_int_eq(tern_model_n_backends(m), 2);
    ck_assert_str_eq(tern_model_backend_at(m, 0)->plugin->name, "devsim");
    ck_assert_str_eq(tern_model_backend_at(m, 1)->plugin->name, "scalar");
    tern_model_free(m);
    m = tu_load_model(tu_default_model(), "scalar", 1);
    ck_assert_int_eq(tern_model_n_backends(m), 1);
    tern_model_free(m);
    tern_model_options mo = tern_model_default_options();
    tern_error err;
    static const struct {
        const char *list;
        tern_status st;
        const char *says;
    } bad[] = {
        {"nosuch", TERN_ENOTFOUND, "backend 'nosuch' not found"},
        {"scalar,,devsim", TERN_EINVAL, "an empty name"},
        {"devsim,nosuch", TERN_ENOTFOUND, "nosuch"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mo.backend = bad[i].list;
        ck_assert_int_eq(tern_model_load(tu_default_model(), &mo, &m, &err), bad[i].st);
        ck_assert_msg(strstr(err.msg, bad[i].says), "'%s': %s", bad[i].list, err.msg);
    }
    /* a named backend whose probe says no: its reason, never a fallback */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/plugins/cannotrun", tu_build_dir());
    setenv("TERN_PLUGIN_PATH", dir, 1);
    mo.backend = "cannotrun,scalar";
    ck_assert_int_eq(tern_model_load(tu_default_model(), &mo, &m, &err), TERN_ECANNOTRUN);
    ck_assert_msg(strstr(err.msg, "cannot run here"), "%s", err.msg);
}
END_TEST

/* A session error leaves the session as it was: the next evaluation's
 * logits equal a fresh session's. */
static void expect_recovers(tern_model *m, tern_session *s, const int32_t *ids, int n)
{
    tern_error err;
    ck_assert_int_eq(tern_session_n_past(s), 0);
    ck_assert_msg(tern_session_eval(s, ids, (size_t)n, 1, &err) == TERN_OK, "after the error: %s", err.msg);
    int64_t nv = tern_session_n_vocab(s);
    float *fresh = logits_of(m, ids, n, 64, NULL);
    ck_assert_msg(!memcmp(fresh, tern_session_logits(s, NULL), (size_t)n * (size_t)nv * 4),
                  "logits after an error differ from a fresh session's");
    free(fresh);
}

START_TEST(test_session_errors)
{
    tern_model *m = tu_load_model(tu_default_model(), "auto", 2);
    tern_session *s;
    tern_error err;
    tern_session_options so = tern_session_default_options();
    so.n_ctx = 16;
    ck_assert_int_eq(tern_session_create(m, &so, &s, &err), TERN_OK);
    int32_t ids[12] = {1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150};
    int32_t bad[3] = {1, 999999, 3};
    ck_assert_int_eq(tern_session_eval(s, bad, 3, 0, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "999999") && strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    ck_assert_int_eq(tern_session_eval(s, ids, 12, 0, &err), TERN_OK);
    ck_assert_int_eq(tern_session_eval(s, ids, 12, 0, &err), TERN_ECONTEXT);
    ck_assert_msg(strstr(err.msg, "context"), "%s", err.msg);
    tern_session_reset(s);
    tern_session_cancel(s); /* honoured by the next evaluation, then consumed */
    ck_assert_int_eq(tern_session_eval(s, ids, 12, 0, &err), TERN_ECANCELED);
    ck_assert_msg(strstr(err.msg, "canceled"), "%s", err.msg);
    expect_recovers(m, s, ids, 12);
    tern_session_free(s);
    tern_model_free(m);
}
END_TEST

/* devsim made to fail an op mid-graph (through node_error at sync) or a
 * whole sync: TERN_EDEVICE with devsim's message, then all is well. */
START_TEST(test_device_failure)
{
    use_devsim(NULL);
    setenv(_i ? "TERN_DEVSIM_FAIL_SYNC" : "TERN_DEVSIM_FAIL", _i ? "1" : "matmul_ternary:9", 1);
    tern_model *m = tu_load_model(tu_default_model(), "devsim", 1);
    tern_session *s;
    tern_error err;
    ck_assert_int_eq(tern_session_create(m, NULL, &s, &err), TERN_OK);
    int32_t ids[6] = {1, 50, 60, 70, 80, 90};
    ck_assert_int_eq(tern_session_eval(s, ids, 6, 1, &err), TERN_EDEVICE);
    printf("device failure %d: %s\n", _i, err.msg);
    ck_assert_msg(strstr(err.msg, _i ? "injected failure of sync" : "injected failure of matmul_ternary"),
                  "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "devsim"), "the message names the backend: %s", err.msg);
    expect_recovers(m, s, ids, 6);
    tern_session_free(s);
    tern_model_free(m);
}
END_TEST

/* Kernels report what only the data reveals. A two-node graph, built and
 * planned by hand: get_rows over the embedding table, then kv_store into
 * a cache, with positions and ids past their ends. _i: scalar, x86, devsim,
 * opencl (a real device: the kernels flag the bad value on the device and
 * sync reports it), arm (x86 and arm are built for their own arch only) */
START_TEST(test_kernel_errors)
{
    static const char *const backends[] = {"scalar", "x86", "devsim", "opencl", "arm"};
    use_devsim(NULL);
    tern_model_options mo = tern_model_default_options();
    mo.backend = backends[_i];
    tern_model *m;
    tern_error err;
    tern_status ls = tern_model_load(tu_default_model(), &mo, &m, &err);
    if (ls == TERN_ECANNOTRUN || (ls == TERN_ENOTFOUND && (_i == 1 || _i >= 3))) {
        printf("skipped: %s cannot run here: %s\n", backends[_i], err.msg);
        return;
    }
    ck_assert_msg(ls == TERN_OK, "%s", err.msg);
    const tern_hparams *hp = tern_model_hparams(m);
    tern_backend *be = m->be[0];
    int dev = !tern_backend_is_host(be);
    int64_t n_ctx = 8, ne_c[3] = {hp->n_embd, 1, n_ctx};
    tern_tensor cache;
    tern_tensor_init(&cache, TERN_TYPE_F32, 3, ne_c);
    size_t cbytes = tern_tensor_nbytes(&cache);
    void *cmem = dev ? be->api->buffer_alloc(be->ctx, cbytes) : malloc(cbytes);
    ck_assert_ptr_nonnull(cmem);
    if (dev) cache.buffer = cmem;
    else cache.data = cmem;
    tern_graph *g;
    ck_assert_int_eq(tern_graph_create(2, 2, &g, &err), TERN_OK);
    int w = tern_graph_add_weight(g, tern_model_find_weight(m, "token_embd.weight"), &err);
    int rows = tern_graph_add_node(g, TERN_OP_GET_ROWS, TERN_TYPE_F32, 2, (int64_t[]){hp->n_embd, 2},
                                   (int[]){w, g->in_tokens}, 2, NULL, NULL, &err);
    int view = tern_graph_add_view(g, rows, 3, (int64_t[]){hp->n_embd, 1, 2}, &err);
    int c = tern_graph_add_extern(g, &cache, tern_graph_space_of(be, 0), &err);
    ck_assert_int_eq(tern_graph_add_node_into(g, TERN_OP_KV_STORE, c, (int[]){view, g->in_positions}, 2, &err),
                     TERN_OK);
    g->output = rows;
    ck_assert_msg(tern_graph_plan(g, m->be, m->n_be, m->pool, 2, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(g->nodes_on[0], 2); /* both on the backend under test */
    static const struct {
        int32_t tok, pos;
        tern_status st;
        const char *says;
    } runs[] = {
        {5, 1, TERN_OK, NULL},
        {1 << 30, 1, TERN_EINVAL, "row id 1073741824 outside the table"},
        {5, 1, TERN_OK, NULL},
        {5, 99, TERN_ECONTEXT, "position 99 outside the KV cache of 8"},
        {-3, 1, TERN_EINVAL, "row id -3 outside the table"},
        {7, 2, TERN_OK, NULL},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        int32_t *tok = tern_graph_tokens(g), *pos = tern_graph_positions(g);
        tok[0] = 3, tok[1] = runs[r].tok;
        pos[0] = 0, pos[1] = runs[r].pos;
        tern_status st = tern_graph_compute(g, NULL, NULL, &err);
        ck_assert_msg(st == runs[r].st, "%s run %zu: %s, expected %s (%s)", backends[_i], r,
                      tern_status_name(st), tern_status_name(runs[r].st), st ? err.msg : "");
        if (st) {
            ck_assert_msg(strstr(err.msg, runs[r].says), "%s: %s", backends[_i], err.msg);
            ck_assert_msg(strstr(err.msg, backends[_i]), "names the backend: %s", err.msg);
        }
    }
    tern_graph_free(g);
    if (dev) be->api->buffer_free(be->ctx, cmem);
    else free(cmem);
    tern_model_free(m);
}
END_TEST

/* Two sessions on one model in two threads at once: each generates what it
 * generates alone. */
typedef struct gen_job {
    tern_model *m;
    int32_t prompt[8];
    int32_t out[24];
    tern_status st;
} gen_job;

static void *generate(void *p)
{
    gen_job *j = p;
    tern_session *s;
    tern_error err;
    j->st = tern_session_create(j->m, NULL, &s, &err);
    if (j->st) return NULL;
    j->st = tern_session_eval(s, j->prompt, 8, 0, &err);
    for (int i = 0; i < 24 && !j->st; i++) {
        int64_t nv = tern_session_n_vocab(s);
        const float *l = tern_session_logits(s, NULL);
        int best = 0;
        for (int64_t k = 1; k < nv; k++)
            if (l[k] > l[best]) best = (int)k;
        j->out[i] = best;
        j->st = tern_session_eval(s, &j->out[i], 1, 0, &err);
    }
    tern_session_free(s);
    return NULL;
}

START_TEST(test_two_sessions_in_threads)
{
    tern_model *m = tu_load_model(tu_default_model(), "auto", 2);
    gen_job alone[2], both[2];
    for (int k = 0; k < 2; k++) {
        memset(&alone[k], 0, sizeof alone[k]);
        alone[k].m = m;
        for (int i = 0; i < 8; i++) alone[k].prompt[i] = 1 + (k + 1) * 37 * (i + 3) % 4000;
        both[k] = alone[k];
        generate(&alone[k]);
        ck_assert_int_eq(alone[k].st, TERN_OK);
    }
    pthread_t t[2];
    for (int k = 0; k < 2; k++) ck_assert_int_eq(pthread_create(&t[k], NULL, generate, &both[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(both[k].st, TERN_OK);
        ck_assert_msg(!memcmp(both[k].out, alone[k].out, sizeof both[k].out),
                      "session %d generated otherwise in parallel than alone", k);
    }
    tern_model_free(m);
}
END_TEST

/* Threaded nodes that touch disjoint memory (q, k, v; gate, up) start
 * without waiting for each other: the decode graph has such nodes, and
 * the logits of a prompt and of every greedy step are the same bytes on
 * 1 and 3 threads (3 threads on this 2-CPU machine: pieces out of order). */
START_TEST(test_no_wait_nodes_exact)
{
    float *ref = NULL;
    int64_t nv = 0;
    for (int threads = 1; threads <= 3; threads += 2) {
        tern_model *m = tu_load_model(tu_default_model(), "x86", threads);
        tern_session *s;
        tern_error err;
        ck_assert_int_eq(tern_session_create(m, NULL, &s, &err), TERN_OK);
        int32_t ids[8] = {1, 450, 2943, 17, 5, 99, 1000, 3};
        ck_assert_int_eq(tern_session_eval(s, ids, 8, 0, &err), TERN_OK);
        ck_assert_int_eq(tern_session_eval(s, ids, 1, 0, &err), TERN_OK);
        ck_assert_int_gt(tern_session_placement(s)->n_no_wait, 0);
        nv = tern_session_n_vocab(s);
        float *l = malloc((size_t)nv * 17 * sizeof *l);
        ck_assert_ptr_nonnull(l);
        for (int i = 0; i < 16; i++) {
            memcpy(l + (size_t)i * nv, tern_session_logits(s, NULL), (size_t)nv * sizeof *l);
            int32_t best = 0;
            for (int64_t k = 1; k < nv; k++)
                if (l[(size_t)i * nv + k] > l[(size_t)i * nv + best]) best = (int32_t)k;
            ck_assert_int_eq(tern_session_eval(s, &best, 1, 0, &err), TERN_OK);
        }
        if (!ref) ref = l;
        else {
            ck_assert_msg(!memcmp(ref, l, (size_t)nv * 16 * sizeof *l), "logits differ between 1 and 3 threads");
            free(l);
        }
        tern_session_free(s);
        tern_model_free(m);
    }
    free(ref);
}
END_TEST

/* Runs a tern command line with stderr folded in; returns its exit status
 * and the first line that contains `want` (or "" ) in line. */
static int tern_cli(const char *args, const char *want, char *line, size_t n)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", tu_tern_exe(), args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char buf[1024];
    line[0] = 0;
    while (fgets(buf, sizeof buf, p))
        if (!line[0] && strstr(buf, want)) snprintf(line, n, "%s", buf);
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st), "%s died", cmd);
    return WEXITSTATUS(st);
}

/* The command line shows placement and copies, and a device failure is a
 * one-line error with a non-zero exit. */
START_TEST(test_cli_placement_and_failure)
{
    use_devsim(half_ops);
    char args[4096], line[1024];
    snprintf(args, sizeof args, "info -m %s --backend devsim,scalar", tu_default_model());
    ck_assert_int_eq(tern_cli(args, "decode  graph", line, sizeof line), 0);
    ck_assert_msg(strstr(line, "devsim") && strstr(line, "copy nodes") && !strstr(line, "copy nodes 0 "),
                  "%s", line);
    setenv("TERN_DEVSIM_FAIL", "quantize_act:3", 1);
    snprintf(args, sizeof args, "run -m %s --backend devsim -p Hello -n 4", tu_default_model());
    ck_assert_int_eq(tern_cli(args, "tern run:", line, sizeof line), 1);
    ck_assert_msg(strstr(line, "injected failure of quantize_act") && strstr(line, "on devsim"), "%s", line);
}
END_TEST

TCase *pool_tcase(void); /* test_pool.c */

Suite *executor_suite(void)
{
    Suite *s = suite_create("executor");
    TCase *tc = tcase_create("executor");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_devsim_model, 0, 4);
    tcase_add_test(tc, test_backend_lists);
    tcase_add_test(tc, test_session_errors);
    tcase_add_loop_test(tc, test_device_failure, 0, 2);
    tcase_add_test(tc, test_two_sessions_in_threads);
    tcase_add_test(tc, test_no_wait_nodes_exact);
    tcase_add_test(tc, test_cli_placement_and_failure);
    suite_add_tcase(s, tc);
    /* a case of its own, so the qemu runs (tests/run_qemu.sh) can take it
     * alone for the arm backend */
    TCase *tk = tcase_create("kernel_errors");
    tcase_set_timeout(tk, 300);
    tcase_add_loop_test(tk, test_kernel_errors, 0, 5);
    suite_add_tcase(s, tk);
    suite_add_tcase(s, pool_tcase());
    return s;
}
