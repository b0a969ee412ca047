/* test_fault.c - fault injection, SQLite style (runtime/fault.h).
 *
 * The allocation sweep: the path a program takes to generate one token
 * (load the default tiny model on the auto backend and one thread, tokenize, create a
 * session, evaluate the prompt, sample, evaluate that token, sample again)
 * is run once to count its allocations, then again with allocation N made
 * to fail, for every N: once alone (the rest succeed) and once from N on
 * (every later one fails too, so cleanup paths run while memory stays
 * short). Each failure must come back as an error carrying TERN_ENOMEM and
 * a one-line message (or, where the code retries, as the same tokens),
 * nothing may leak, and the next attempt must give the same tokens.
 *
 * The short-read test: tern_io_read returns the same bytes whatever size
 * read() returns (1 byte, 7 bytes, ...), from files and pipes.
 *
 * TERN_FAULT_STRIDE=k visits every k-th failure point only (quick local
 * runs); the default visits all. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testutil.h"
#include "fault.h"
#include "tern/tern.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_recoverable_leak_check()
#else
#define LEAK_CHECK() 0
#endif

#define N_GEN 2

typedef struct result {
    int32_t tokens[N_GEN];
} result;

static long handed_out;

/* Load, tokenize, session, eval, sample, eval, sample. Frees everything it
 * made whatever happens; the first failure's status is returned. */
static tern_status generate(result *r, tern_error *err)
{
    tern_model *m = NULL;
    tern_session *s = NULL;
    tern_sampler *smp = NULL;
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    tern_model_options mo = tern_model_default_options();
    mo.n_threads = 1; /* one thread: the allocations come in the same order every run */
    tern_session_options so = tern_session_default_options();
    so.n_ctx = 32;
    tern_sampler_params sp = tern_sampler_default_params();
    sp.seed = 42;
    tern_status st = tern_model_load(tu_default_model(), &mo, &m, err);
    if (!st) st = tern_tokenize(tern_model_tokenizer(m), "Once upon a time", 16, 1, 0, &ids, &cap, &n, err);
    if (!st) st = tern_session_create(m, &so, &s, err);
    if (!st) st = tern_sampler_create(&sp, (int32_t)tern_model_hparams(m)->n_vocab, &smp, err);
    if (!st) st = tern_session_eval(s, ids, n, 0, err);
    for (int i = 0; !st && i < N_GEN; i++) {
        r->tokens[i] = tern_sampler_sample(smp, tern_session_logits(s, NULL));
        tern_sampler_accept(smp, r->tokens[i]);
        if (i + 1 < N_GEN) st = tern_session_eval(s, &r->tokens[i], 1, 0, err);
    }
    if (ids) handed_out++; /* libtern's block, freed here by a free() its counter does not see */
    free(ids);
    tern_sampler_free(smp);
    tern_session_free(s);
    tern_model_free(m);
    return st;
}

static void check_clean_run(const result *want, long point)
{
    result got;
    tern_error err;
    tern_status st = generate(&got, &err);
    ck_assert_msg(st == TERN_OK, "after failure point %ld: the next attempt failed: %s", point, err.msg);
    ck_assert_msg(memcmp(&got, want, sizeof got) == 0, "after failure point %ld: other tokens", point);
}

/* Blocks libtern holds, counting those it handed out (tokenize's ids) as
 * given back when the test freed them. */
static long heap_in_use(void) { return tern_fault_alloc_live() - handed_out; }

static void sweep(int persistent)
{
    result want;
    tern_error err;
    ck_assert_msg(generate(&want, &err) == TERN_OK, "%s", err.msg);
    tern_fault_alloc_fail(1L << 40, 0); /* armed past the end: counts only */
    ck_assert(generate(&want, &err) == TERN_OK);
    long total = tern_fault_alloc_count();
    tern_fault_alloc_fail(0, 0);
    const char *e = getenv("TERN_FAULT_STRIDE");
    long stride = e && atol(e) > 0 ? atol(e) : 1;
    int trace = getenv("TERN_FAULT_TRACE") != NULL; /* which point crashed */
    long heap0 = heap_in_use();
    long visited = 0, errors = 0, absorbed = 0, first_growth = 0;
    long heap_prev = heap0;
    for (long n = 1;; n += stride) {
        result got;
        memset(&got, 0, sizeof got);
        if (trace) fprintf(stderr, "fault: point %ld\n", n);
        tern_fault_alloc_fail(n, persistent);
        tern_status st = generate(&got, &err);
        long failures = tern_fault_alloc_failures();
        tern_fault_alloc_fail(0, 0);
        if (failures == 0) break; /* past the last allocation */
        visited++;
        if (st == TERN_OK) { /* the code retried (Lua's emergency collection) */
            ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "failure point %ld: success with other tokens", n);
            absorbed++;
        } else {
            errors++;
            ck_assert_msg(st == TERN_ENOMEM && err.status == TERN_ENOMEM,
                          "failure point %ld of %ld: status %s, not ENOMEM: %s", n, total, tern_status_name(st),
                          err.msg);
            ck_assert_msg(err.msg[0] && !strchr(err.msg, '\n'), "failure point %ld: message '%s'", n, err.msg);
        }
        if (!persistent || n % 16 == 1) check_clean_run(&want, n);
        long now = heap_in_use();
        if (now > heap_prev && !first_growth) first_growth = n;
        heap_prev = now;
    }
    long heap1 = heap_in_use();
    printf("fault: allocation sweep (%s): %ld allocations on the path, %ld failure points visited "
           "(stride %ld): %ld errors (all ENOMEM), %ld retried to the same tokens; blocks held %ld -> %ld\n",
           persistent ? "from N on" : "N alone", total, visited, stride, errors, absorbed, heap0, heap1);
    ck_assert_msg(visited >= total / stride, "visited %ld of %ld points", visited, total);
    ck_assert_msg(heap1 == heap0, "libtern holds %ld blocks more after the sweep (first at failure point %ld): a leak",
                  heap1 - heap0, first_growth);
    ck_assert_msg(LEAK_CHECK() == 0, "LeakSanitizer found leaks");
}

START_TEST(test_alloc_sweep_once) { sweep(0); }
END_TEST

START_TEST(test_alloc_sweep_from_n) { sweep(1); }
END_TEST

/* ---- short reads ---- */

static void expect_read(const char *path, const char *want, size_t n)
{
    char *buf;
    size_t len;
    tern_error err;
    ck_assert_msg(tern_io_read(path, 1 << 20, &buf, &len, &err) == TERN_OK, "%s", err.msg);
    ck_assert_uint_eq(len, n);
    ck_assert_msg(memcmp(buf, want, n) == 0, "%s: other bytes", path);
    ck_assert_int_eq(buf[n], 0);
    free(buf);
}

START_TEST(test_short_reads)
{
    size_t n = 100000;
    char *data = malloc(n);
    unsigned long long rs = 7;
    for (size_t i = 0; i < n; i++) data[i] = (char)tu_rand(&rs);
    const char *path = "/tmp/tern-test-short-read.bin";
    FILE *f = fopen(path, "wb");
    ck_assert(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
    static const size_t maxes[] = {1, 2, 3, 7, 4095, 4096, 4097, 65537, 0};
    int cases = 0;
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
        tern_fault_read_max(maxes[i]);
        expect_read(path, data, n);
        /* standard input as a pipe that a writer fills in small pieces */
        int p[2];
        ck_assert(pipe(p) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            for (size_t off = 0; off < n; off += 1000) {
                ssize_t w = write(p[1], data + off, n - off < 1000 ? n - off : 1000);
                (void)w;
            }
            _exit(0);
        }
        close(p[1]);
        int saved = dup(0);
        dup2(p[0], 0);
        close(p[0]);
        expect_read("-", data, n);
        dup2(saved, 0);
        close(saved);
        waitpid(pid, NULL, 0);
        cases += 2;
    }
    /* the cap holds whatever the read sizes */
    tern_fault_read_max(3);
    char *buf;
    size_t len;
    tern_error err;
    ck_assert_int_eq(tern_io_read(path, 1000, &buf, &len, &err), TERN_EINVAL);
    ck_assert_ptr_null(buf);
    ck_assert_ptr_nonnull(strstr(err.msg, "the input limit"));
    tern_fault_read_max(0);
    printf("fault: short reads: %d file and pipe reads, read() capped at 1 .. 65537 bytes: same bytes\n", cases);
    free(data);
    unlink(path);
}
END_TEST

Suite *fault_suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("fault");
    tcase_set_timeout(tc, 1200);
    tcase_add_test(tc, test_short_reads);
    tcase_add_test(tc, test_alloc_sweep_once);
    tcase_add_test(tc, test_alloc_sweep_from_n);
    suite_add_tcase(s, tc);
    return s;
}
