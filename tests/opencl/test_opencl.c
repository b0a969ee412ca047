/* test_opencl.c - what the shared suites do not reach in the opencl
 * backend (the conformance suite runs it like every plugin; e2e runs the
 * shared models on it):
 *   - the GPU kernels on whatever device is here (TERN_OPENCL_VARIANT=gpu:
 *     under PoCL the CPU kernels are the default), op by op against scalar,
 *     with ternary shapes around the GEMV/GEMM boundary and padded K;
 *   - fused launches: a model's logits equal the unfused ones bit for bit,
 *     match scalar, and do not depend on the batch size;
 *   - a forced device failure (a refused launch, a failed sync) is an
 *     error, and the session works again afterwards;
 *   - the program-binary cache: written, a corrupt entry ignored and
 *     rebuilt;
 *   - device selection errors, auto never picking a CPU device, the work
 *     report, two sessions in two threads.
 * Skips visibly when the plugin is not built or has no device. Tests run
 * in forked processes, so the environment they set stays theirs. */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/testutil.h"
#include "conformance/conformance.h"
#include "tern/session.h"
#include "tern/tern.h"

/* 1 when the opencl plugin loads and has a device; else prints why. */
static int opencl_here(void)
{
    tern_registry *reg;
    tern_error err;
    ck_assert_msg(tern_registry_scan(&reg, &err) == TERN_OK, "%s", err.msg);
    const char *why = "not built (no OpenCL headers or loader)";
    int ok = 0;
    for (int i = 0; i < tern_registry_count(reg); i++) {
        const tern_plugin_info *p = tern_registry_get(reg, i);
        if (strcmp(p->name, "opencl") != 0) continue;
        ok = p->loaded && p->probe.runnable;
        why = p->loaded ? p->probe.desc : p->error;
    }
    if (!ok) printf("skipped: opencl backend: %s\n", why);
    tern_registry_free(reg);
    return ok;
}

/* Logits of every position of ids, fed `batch` at a time. */
static float *logits(tern_model *m, const int32_t *ids, int n, int batch)
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
    tern_session_free(s);
    return out;
}

static void prompt(int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) ids[i] = 1 + (i * 37 + 11) % 4000;
}

/* head: the backend option (NULL: the backend's default, as stored) */
static const tern_backend *create(const char *name, const char *head, tern_registry **reg)
{
    tern_error err;
    const tern_plugin_info *p;
    ck_assert_msg(tern_registry_scan(reg, &err) == TERN_OK, "%s", err.msg);
    ck_assert_msg(tern_registry_select(*reg, name, &p, &err) == TERN_OK, "%s", err.msg);
    tern_backend_options opt = tern_backend_default_options();
    if (head) opt.head = head;
    tern_backend *be;
    ck_assert_msg(tern_backend_create(p, &opt, NULL, &be, &err) == TERN_OK, "%s", err.msg);
    return be;
}

/* ---- the GPU kernels, op by op ---- */

/* Ternary matmul cases the shared table lacks: batches at the GEMV / GEMM
 * boundary (8, 9 tokens) and past a GEMM tile (65), K that is not whole
 * 64-value words (I2_S K = 384). */
static void extra_ternary(conf_list *l, unsigned long long *rng)
{
    static const int64_t shapes[][3] = {{384, 33, 1}, {384, 70, 8}, {512, 65, 9}, {256, 130, 65}, {1024, 64, 3}};
    for (int si = 0; si < 5; si++) {
        int64_t K = shapes[si][0], N = shapes[si][1], T = shapes[si][2];
        conf_case *c = conf_new(l, TERN_OP_MATMUL_TERNARY, "i2_s K=%lld N=%lld tok=%lld", (long long)K, (long long)N,
                                (long long)T);
        int64_t xne[2] = {K, T}, wne[2] = {K, N}, dne[2] = {N, T};
        uint8_t *q = conf_src(c, 0, TERN_TYPE_Q8_TOK, 2, xne);
        float *x = malloc((size_t)(K * T) * 4);
        for (int64_t i = 0; i < K * T; i++) x[i] = tu_randf(rng) * (i % 61 == 0 ? 20.0f : 1.0f);
        for (int64_t t = 0; t < T; t++) conf_quantize_row(x + t * K, K, q + t * c->src[0].nb[1]);
        free(x);
        uint8_t *w = conf_src(c, 1, TERN_TYPE_I2_S, 2, wne);
        int8_t *codes = malloc((size_t)(K * N));
        for (int64_t i = 0; i < K * N; i++) codes[i] = (int8_t)(tu_rand(rng) % 3) - 1;
        tern_pack_i2_s(codes, K * N, 0.0371f, w);
        c->codes = codes; /* the oracle's; freed with the list */
        c->src[1].scale = 0.0371f;
        c->weight = 1;
        c->purpose = TERN_REPACK_TERNARY;
        conf_dst(c, TERN_TYPE_F32, 2, dne);
    }
}

/* Runs every case of the conformance table (and the extra ones) on scalar
 * and on opencl with the GPU kernels; no fallbacks, all within the
 * table's tolerances. */
START_TEST(test_gpu_kernels)
{
    if (!opencl_here()) return;
    setenv("TERN_OPENCL_VARIANT", "gpu", 1);
    tern_registry *r1, *r2;
    const tern_backend *sc = create("scalar", NULL, &r1), *cl = create("opencl", NULL, &r2);
    unsigned long long rng = 0x0c1;
    int n_cases = 0;
    for (int o = 0; o <= conf_n_ops; o++) {
        const conf_op *op = &conf_ops[o < conf_n_ops ? o : 0];
        for (int k = 0; k < conf_n_ops && o == conf_n_ops; k++)
            if (conf_ops[k].op == TERN_OP_MATMUL_TERNARY) op = &conf_ops[k];
        conf_list l = {0};
        if (o < conf_n_ops) op->gen(&l, &rng);
        else extra_ternary(&l, &rng);
        for (int i = 0; i < l.n; i++) {
            conf_case *c = &l.v[i];
            uint8_t *want = calloc(1, c->dst_bytes + 64), *got = calloc(1, c->dst_bytes + 64);
            char why[300];
            op->oracle(c);
            ck_assert_int_eq(conf_run(sc, c, 1, want, why, sizeof why), CONF_RUN_OK);
            conf_run_status rs = conf_run(cl, c, 1, got, why, sizeof why);
            ck_assert_msg(rs == CONF_RUN_OK, "opencl [%s %s]: %s", tern_op_name(c->op), c->label,
                          rs == CONF_RUN_FALLBACK ? "refused the node" : why);
            conf_score s = conf_compare(c, c->exact ? CONF_EXACT : op->cmp, op->tol, got, want);
            ck_assert_msg(s.bad == 0, "opencl gpu kernels [%s %s]: %ld outputs differ, first %ld, max error %.3g",
                          tern_op_name(c->op), c->label, s.bad, s.first_bad, s.max_err);
            free(want);
            free(got);
            n_cases++;
        }
        conf_list_free(&l);
    }
    printf("opencl gpu kernels: %d cases match scalar\n", n_cases);
    tern_backend_free((tern_backend *)sc);
    tern_backend_free((tern_backend *)cl);
    tern_registry_free(r1);
    tern_registry_free(r2);
}
END_TEST

/* The q8 head (an F16 head quantized to Q8_0 at load, then the Q8_0
 * matmul) gives scalar's q8 head's bits, one token and a batch; _i: 0 =
 * the default kernels, 1 = the GPU kernels. */
START_TEST(test_q8_head)
{
    if (!opencl_here()) return;
    if (_i) setenv("TERN_OPENCL_VARIANT", "gpu", 1);
    tern_registry *r1, *r2;
    const tern_backend *sc = create("scalar", "q8", &r1), *cl = create("opencl", "q8", &r2);
    unsigned long long rng = 0x0e8d;
    for (int64_t T = 1; T <= 3; T += 2) {
        conf_list l = {0};
        conf_case *c = conf_float_matmul(&l, TERN_TYPE_F16, 1024, 67, T, "output.weight", &rng);
        c->purpose = TERN_REPACK_HEAD; /* the head is a purpose, not a name */
        uint8_t *want = calloc(1, c->dst_bytes), *got = calloc(1, c->dst_bytes);
        char why[300];
        ck_assert_msg(conf_run(sc, c, 1, want, why, sizeof why) == CONF_RUN_OK, "%s", why);
        ck_assert_msg(conf_run(cl, c, 1, got, why, sizeof why) == CONF_RUN_OK, "%s", why);
        ck_assert_msg(!memcmp(want, got, c->dst_bytes), "%s kernels, q8 head, %lld tokens: not scalar's bits",
                      _i ? "gpu" : "default", (long long)T);
        free(want);
        free(got);
        conf_list_free(&l);
    }
    char desc[512];
    cl->api->describe(cl->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "q8") != NULL, "describe: %s", desc);
    printf("opencl %s kernels: q8 head equal to scalar's; %s\n", _i ? "gpu" : "default", desc);
    tern_backend_free((tern_backend *)sc);
    tern_backend_free((tern_backend *)cl);
    tern_registry_free(r1);
    tern_registry_free(r2);
}
END_TEST

/* ---- fused launches ---- */

/* _i: 0 = the default kernels, 1 = the GPU kernels (with their fusions).
 * Fused and unfused give the same bits, at batch 1, 7 and whole. */
START_TEST(test_fusion_exact)
{
    if (!opencl_here()) return;
    if (_i) setenv("TERN_OPENCL_VARIANT", "gpu", 1);
    enum { N = 24 };
    int32_t ids[N];
    prompt(ids, N);
    tern_model *sm = tu_load_model(tu_default_model(), "scalar", 2);
    int64_t nv = tern_model_hparams(sm)->n_vocab;
    float *ref = logits(sm, ids, N, N);
    tern_model_free(sm);
    float *base = NULL;
    /* none, all but the q/k/v rotations (OCL_FUSE_QKV_ROPE = 64), all */
    static const char *const masks[3] = {"0", "63", "127"};
    for (int fuse = 0; fuse < 3; fuse++) {
        setenv("TERN_OPENCL_FUSE", masks[fuse], 1);
        tern_model *m = tu_load_model(tu_default_model(), "opencl", 2);
        static const int batches[3] = {N, 7, 1};
        for (int b = 0; b < 3; b++) {
            float *got = logits(m, ids, N, batches[b]);
            double worst = 0;
            for (size_t k = 0; k < (size_t)N * (size_t)nv; k++) worst = fmax(worst, fabs((double)got[k] - ref[k]));
            ck_assert_msg(worst < 1e-3, "%s kernels, fuse %s, batch %d: logits %.3g from scalar's",
                          _i ? "gpu" : "default", masks[fuse], batches[b], worst);
            if (!base) {
                base = got;
                continue;
            }
            ck_assert_msg(!memcmp(base, got, (size_t)N * (size_t)nv * 4),
                          "%s kernels: fuse %s batch %d gives other bits than unfused batch %d",
                          _i ? "gpu" : "default", masks[fuse], batches[b], N);
            free(got);
        }
        char rep[4096];
        ck_assert(tern_backend_report(tern_model_backend(m), 0, rep, sizeof rep));
        ck_assert_msg(strstr(rep, "launches"), "%s", rep);
        if (fuse == 2 && _i) printf("opencl gpu kernels, fused: %.*s\n", (int)strcspn(rep, "\n"), rep);
        tern_model_free(m);
    }
    free(base);
    free(ref);
}
END_TEST

/* ---- device failures ---- */

/* _i 0: the 9th ternary matmul's launch is refused; 1: the first sync
 * fails. Either is TERN_EDEVICE naming opencl; the session works after. */
START_TEST(test_device_failure)
{
    if (!opencl_here()) return;
    setenv(_i ? "TERN_OPENCL_FAIL_SYNC" : "TERN_OPENCL_FAIL", _i ? "1" : "matmul_ternary:9", 1);
    tern_model *m = tu_load_model(tu_default_model(), "opencl", 2);
    tern_session *s;
    tern_error err;
    ck_assert_int_eq(tern_session_create(m, NULL, &s, &err), TERN_OK);
    int32_t ids[6] = {1, 50, 60, 70, 80, 90};
    ck_assert_int_eq(tern_session_eval(s, ids, 6, 1, &err), TERN_EDEVICE);
    printf("opencl device failure %d: %s\n", _i, err.msg);
    ck_assert_msg(strstr(err.msg, _i ? "injected failure of sync" : "injected by TERN_OPENCL_FAIL"), "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "opencl"), "the message names the backend: %s", err.msg);
    tern_session_reset(s);
    ck_assert_msg(tern_session_eval(s, ids, 6, 1, &err) == TERN_OK, "after the failure: %s", err.msg);
    unsetenv("TERN_OPENCL_FAIL");
    unsetenv("TERN_OPENCL_FAIL_SYNC");
    float *fresh = logits(m, ids, 6, 6);
    ck_assert_msg(!memcmp(fresh, tern_session_logits(s, NULL), 6 * (size_t)tern_session_n_vocab(s) * 4),
                  "logits after the failure differ from a fresh session's");
    free(fresh);
    tern_session_free(s);
    tern_model_free(m);
}
END_TEST

/* ---- the program-binary cache ---- */

static int cache_files(const char *dir, char *first, size_t n)
{
    DIR *d = opendir(dir);
    int count = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, "opencl-", 7) && strstr(e->d_name, ".bin")) {
            if (!count++) snprintf(first, n, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    return count;
}

START_TEST(test_binary_cache)
{
    if (!opencl_here()) return;
    char root[] = "/tmp/tern-clcache-XXXXXX", dir[4200], file[4400];
    ck_assert_ptr_nonnull(mkdtemp(root));
    setenv("XDG_CACHE_HOME", root, 1);
    snprintf(dir, sizeof dir, "%s/tern", root);
    tern_registry *reg;
    char desc[512];
    const tern_backend *be = create("opencl", NULL, &reg);
    be->api->describe(be->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "built"), "first load builds: %s", desc);
    tern_backend_free((tern_backend *)be);
    tern_registry_free(reg);
    ck_assert_int_eq(cache_files(dir, file, sizeof file), 1);
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    be = create("opencl", NULL, &reg);
    be->api->describe(be->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "from cache"), "second load reads the cache: %s", desc);
    tern_backend_free((tern_backend *)be);
    tern_registry_free(reg);
    /* corrupt the binary (keep the header): the checksum refuses it */
    FILE *f = fopen(file, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 64, SEEK_SET);
    for (int i = 0; i < 64; i++) fputc(0x5a, f);
    fclose(f);
    be = create("opencl", NULL, &reg);
    be->api->describe(be->ctx, desc, sizeof desc);
    ck_assert_msg(strstr(desc, "built"), "a corrupt entry is rebuilt: %s", desc);
    tern_backend_free((tern_backend *)be);
    tern_registry_free(reg);
    struct stat st2;
    ck_assert_int_eq(stat(file, &st2), 0);
    ck_assert_int_eq(st2.st_size, st.st_size);
    /* truncated to its header: ignored too */
    ck_assert_int_eq(truncate(file, 20), 0);
    be = create("opencl", NULL, &reg);
    tern_backend_free((tern_backend *)be);
    tern_registry_free(reg);
    ck_assert_int_eq(stat(file, &st2), 0);
    ck_assert_int_eq(st2.st_size, st.st_size);
    printf("opencl binary cache: %s, %lld bytes, corrupt and truncated entries rebuilt\n", file, (long long)st.st_size);
    remove(file);
    rmdir(dir);
    rmdir(root);
}
END_TEST

/* ---- devices, auto, threads ---- */

START_TEST(test_devices)
{
    if (!opencl_here()) return;
    tern_model_options mo = tern_model_default_options();
    mo.backend = "opencl";
    mo.device = 99;
    tern_model *m;
    tern_error err;
    ck_assert_int_eq(tern_model_load(tu_default_model(), &mo, &m, &err), TERN_EINVAL);
    ck_assert_msg(strstr(err.msg, "no device 99"), "%s", err.msg);
    mo.device = 0;
    ck_assert_msg(tern_model_load(tu_default_model(), &mo, &m, &err) == TERN_OK, "%s", err.msg);
    tern_model_free(m);
    /* auto never picks a CPU device (score 0): opencl wins only with a GPU */
    tern_registry *reg;
    const tern_plugin_info *best, *cl;
    ck_assert_int_eq(tern_registry_scan(&reg, &err), TERN_OK);
    ck_assert_int_eq(tern_registry_select(reg, "auto", &best, &err), TERN_OK);
    ck_assert_int_eq(tern_registry_select(reg, "opencl", &cl, &err), TERN_OK);
    if (strstr(cl->probe.desc, "GPU") == NULL) ck_assert_str_ne(best->name, "opencl");
    printf("opencl probe: score %d: %s\n", cl->probe.score, cl->probe.desc);
    tern_registry_free(reg);
}
END_TEST

typedef struct gen_job {
    tern_model *m;
    int32_t prompt[8], out[16];
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
    for (int i = 0; i < 16 && !j->st; i++) {
        const float *l = tern_session_logits(s, NULL);
        int best = 0;
        for (int64_t k = 1; k < tern_session_n_vocab(s); k++)
            if (l[k] > l[best]) best = (int)k;
        j->out[i] = best;
        j->st = tern_session_eval(s, &j->out[i], 1, 0, &err);
    }
    tern_session_free(s);
    return NULL;
}

/* Runs of two sessions never interleave in the queue (the run lock). */
START_TEST(test_two_sessions_in_threads)
{
    if (!opencl_here()) return;
    tern_model *m = tu_load_model(tu_default_model(), "opencl", 2);
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
        ck_assert_msg(!memcmp(both[k].out, alone[k].out, sizeof both[k].out), "session %d differs in parallel", k);
    }
    tern_model_free(m);
}
END_TEST

Suite *opencl_suite(void)
{
    Suite *s = suite_create("opencl");
    TCase *tc = tcase_create("opencl");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_gpu_kernels);
    tcase_add_loop_test(tc, test_q8_head, 0, 2);
    tcase_add_loop_test(tc, test_fusion_exact, 0, 2);
    tcase_add_loop_test(tc, test_device_failure, 0, 2);
    tcase_add_test(tc, test_binary_cache);
    tcase_add_test(tc, test_devices);
    tcase_add_test(tc, test_two_sessions_in_threads);
    suite_add_tcase(s, tc);
    return s;
}
