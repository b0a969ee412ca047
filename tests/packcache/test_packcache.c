/* test_packcache.c - packed weights kept in a cache file (runtime/packcache.h).
 *
 *   - a model packed into a new cache file ("written") and mapped from it
 *     on the next load ("mapped") gives logits bit-identical to a load
 *     that does not use the cache, with the F16 head and the q8 head;
 *   - a stale or damaged cache file is never trusted: after the model
 *     file's modification time changes, or the cache file is truncated, or
 *     a byte of its data, directory or key is flipped, the next load
 *     writes it anew, with the same logits;
 *   - a cache folder that cannot be made leaves the model loading without
 *     the cache;
 *   - a mid-size model (tern synth's bitnet-700m preset) loads, packing
 *     into the cache and mapping it, with peak resident memory within 1.1x
 *     the file plus the runtime's own: no second copy of the weights.
 * The embedded tiny model is small, so TERN_PACK_CACHE_MIN=0 makes it use
 * the cache. Every test runs in a forked process (its environment is its
 * own) on the CPU backend that packs here: x86 on x86-64, arm on AArch64
 * (under qemu in the cross build, where the 700m case stays out: a case of
 * its own). */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testutil.h"
#include "tern/tern.h"

static char tmp[4096], model[4200], cache_home[4200];

/* A fresh folder with a copy of the embedded model and a cache home. */
static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tern-packcache-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    char src[4096], cmd[9000];
    snprintf(src, sizeof src, "%s/share/tern/models/tiny-bitnet.gguf", tu_build_dir());
    snprintf(model, sizeof model, "%s/model.gguf", tmp);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, model);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    snprintf(cache_home, sizeof cache_home, "%s/cache", tmp);
    setenv("XDG_CACHE_HOME", cache_home, 1);
    unsetenv("TERN_CACHE_DIR");
    setenv("TERN_PACK_CACHE_MIN", "0", 1);
    unsetenv("TERN_PACK_CACHE");
}

static void teardown(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) {}
}

/* The backend under test: the first of x86 and arm that runs here (each
 * is built for its own arch only). */
static const char *packer = "x86";

/* 1 when this machine runs x86 or arm (else the tests say so and pass). */
static int have_packer(void)
{
    static const char *const names[] = {"x86", "arm"};
    tern_error err;
    for (int i = 0; i < 2; i++) {
        tern_model_options mo = tern_model_default_options();
        mo.backend = names[i];
        tern_model *m;
        setenv("TERN_PACK_CACHE", "0", 1);
        tern_status st = tern_model_load(model, &mo, &m, &err);
        unsetenv("TERN_PACK_CACHE");
        if (st == TERN_OK) {
            packer = names[i];
            tern_model_free(m);
            return 1;
        }
    }
    printf("skipped: neither x86 nor arm runs here (%s)\n", err.msg);
    return 0;
}

/* Loads path on the packer (head "f16" or "q8") and returns the logits of a fixed
 * prompt (a batch, then one token); *state gets what the cache did. */
static float *logits_of(const char *path, const char *head, const char **state, size_t *n_out)
{
    tern_model_options mo = tern_model_default_options();
    mo.backend = packer;
    mo.head = head;
    mo.n_threads = 2;
    tern_model *m;
    tern_session *s;
    tern_error err;
    ck_assert_msg(tern_model_load(path, &mo, &m, &err) == TERN_OK, "%s", err.msg);
    static char state_copy[32];
    const char *st = tern_model_pack_cache(m);
    snprintf(state_copy, sizeof state_copy, "%s", st ? st : "none");
    *state = state_copy;
    tern_session_options so = tern_session_default_options();
    so.n_ctx = 64;
    ck_assert_msg(tern_session_create(m, &so, &s, &err) == TERN_OK, "%s", err.msg);
    int32_t ids[9] = {1, 450, 4996, 1735, 1701, 432, 1720, 975, 278};
    int64_t nv = tern_session_n_vocab(s);
    float *out = malloc((size_t)10 * (size_t)nv * sizeof *out);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(tern_session_eval(s, ids, 8, 1, &err) == TERN_OK, "%s", err.msg);
    memcpy(out, tern_session_logits(s, NULL), (size_t)8 * (size_t)nv * sizeof *out);
    ck_assert_msg(tern_session_eval(s, ids + 8, 1, 1, &err) == TERN_OK, "%s", err.msg);
    memcpy(out + 8 * nv, tern_session_logits(s, NULL), (size_t)nv * sizeof *out);
    *n_out = (size_t)9 * (size_t)nv;
    tern_session_free(s);
    tern_model_free(m);
    return out;
}

static float *reference(const char *head, size_t *n)
{
    const char *state;
    setenv("TERN_PACK_CACHE", "0", 1);
    float *l = logits_of(model, head, &state, n);
    unsetenv("TERN_PACK_CACHE");
    ck_assert_str_eq(state, "none");
    return l;
}

/* Loads through the cache, expects `want` ("written", "mapped", "none")
 * and logits bit-identical to ref. */
static void expect_load(const char *head, const float *ref, size_t n, const char *want, const char *why)
{
    const char *state;
    size_t m;
    float *l = logits_of(model, head, &state, &m);
    ck_assert_msg(strcmp(state, want) == 0, "%s: the cache was %s, expected %s", why, state, want);
    ck_assert_int_eq((int)m, (int)n);
    ck_assert_msg(memcmp(l, ref, n * sizeof *l) == 0, "%s: logits differ from a load without the cache", why);
    free(l);
}

/* The one cache file under the cache home. */
static void cache_file(char *path, size_t n)
{
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/tern/packed", cache_home);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "no folder %s", dir);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".pack") && !strstr(e->d_name, ".tmp")) {
            ck_assert_msg(!found, "more than one cache file in %s", dir);
            snprintf(path, n, "%s/%s", dir, e->d_name);
            found = 1;
        }
    closedir(d);
    ck_assert_msg(found, "no cache file in %s", dir);
}

static off_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char b;
    ck_assert_int_eq((int)pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    ck_assert_int_eq((int)pwrite(fd, &b, 1, at), 1);
    close(fd);
}

START_TEST(test_written_then_mapped)
{
    if (!have_packer()) return;
    const char *heads[] = {"f16", "q8"};
    for (int h = 0; h < 2; h++) {
        size_t n;
        float *ref = reference(heads[h], &n);
        expect_load(heads[h], ref, n, "written", "first load");
        expect_load(heads[h], ref, n, "mapped", "second load");
        expect_load(heads[h], ref, n, "mapped", "third load");
        free(ref);
        printf("packcache: head %s: written, then mapped twice, logits bit-identical to no cache\n", heads[h]);
    }
}
END_TEST

START_TEST(test_stale_and_damaged)
{
    if (!have_packer()) return;
    size_t n;
    float *ref = reference("f16", &n);
    char path[8600];
    expect_load("f16", ref, n, "written", "first load");
    cache_file(path, sizeof path);
    off_t size = file_size(path);

    /* the model file changed (its modification time, as a rewrite leaves it) */
    struct timeval tv[2] = {{1700000000, 0}, {1700000000, 0}};
    ck_assert_int_eq(utimes(model, tv), 0);
    expect_load("f16", ref, n, "written", "model file touched");
    expect_load("f16", ref, n, "mapped", "after the rewrite");

    ck_assert_int_eq(truncate(path, size - 4096), 0);
    expect_load("f16", ref, n, "written", "cache truncated");
    ck_assert_int_eq((int)file_size(path), (int)size);

    flip_byte(path, size - 1); /* the last item's last byte */
    expect_load("f16", ref, n, "written", "a data byte flipped");

    flip_byte(path, 8 + 4 + 4 + 8 * 4 + 10); /* inside the key */
    expect_load("f16", ref, n, "written", "a key byte flipped");

    flip_byte(path, 8); /* the version */
    expect_load("f16", ref, n, "written", "the version changed");

    flip_byte(path, 0); /* the magic */
    expect_load("f16", ref, n, "written", "the magic damaged");
    expect_load("f16", ref, n, "mapped", "after all that");
    free(ref);
    printf("packcache: stale model, truncated file, flipped data/key/version/magic: each rebuilt, never trusted\n");
}
END_TEST

START_TEST(test_no_cache_folder)
{
    if (!have_packer()) return;
    size_t n;
    float *ref = reference("f16", &n);
    /* the cache home is a regular file: no folder can be made under it */
    char blocker[4300];
    snprintf(blocker, sizeof blocker, "%s/not-a-folder", tmp);
    FILE *f = fopen(blocker, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    setenv("XDG_CACHE_HOME", blocker, 1);
    expect_load("f16", ref, n, "none", "no cache folder");
    setenv("TERN_PACK_CACHE", "0", 1);
    setenv("XDG_CACHE_HOME", cache_home, 1);
    expect_load("f16", ref, n, "none", "TERN_PACK_CACHE=0");
    free(ref);
}
END_TEST

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

/* In a child: load path (cache on) and decode a token; exits with 0 when
 * the peak resident memory stayed within limit_kib, and prints it. */
static void rss_child(const char *path, long limit_kib, const char *want_state)
{
    tern_model_options mo = tern_model_default_options();
    mo.backend = packer;
    mo.n_threads = 2;
    tern_model *m;
    tern_session *s;
    tern_error err;
    if (tern_model_load(path, &mo, &m, &err)) {
        printf("load failed: %s\n", err.msg);
        _exit(2);
    }
    const char *state = tern_model_pack_cache(m);
    tern_session_options so = tern_session_default_options();
    so.n_ctx = 64;
    int32_t id = 1;
    if (tern_session_create(m, &so, &s, &err) || tern_session_eval(s, &id, 1, 0, &err)) {
        printf("eval failed: %s\n", err.msg);
        _exit(2);
    }
    long hwm = vm_hwm_kib();
    printf("packcache: bitnet-700m (%s): peak RSS %.1f MiB, limit %.1f MiB\n", state ? state : "none",
           hwm / 1024.0, limit_kib / 1024.0);
    fflush(stdout);
    tern_session_free(s);
    tern_model_free(m);
    _exit(hwm > 0 && hwm <= limit_kib && state && strcmp(state, want_state) == 0 ? 0 : 1);
}

START_TEST(test_rss_700m)
{
    if (!have_packer()) return;
    char path[4300], cmd[9000];
    snprintf(path, sizeof path, "%s/700m.gguf", tmp);
    snprintf(cmd, sizeof cmd, "%s synth --preset bitnet-700m -o '%s' > /dev/null", tu_tern_exe(), path);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    unsetenv("TERN_PACK_CACHE_MIN"); /* the default threshold: this file is above it */
    /* one copy of the weights plus the runtime's own (libraries, tables,
     * the session): 64 MiB */
    long limit = (long)(file_size(path) * 1.1 / 1024) + 64 * 1024;
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer's shadow and quarantine are resident too */
    printf("packcache: under AddressSanitizer the RSS bound is doubled\n");
    limit *= 2;
#endif
    const char *states[] = {"written", "mapped"};
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) rss_child(path, limit, states[i]);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "%s load: peak RSS over the limit, or the cache was not %s (status %d)", states[i],
                      states[i], status);
    }
}
END_TEST

Suite *packcache_suite(void)
{
    Suite *s = suite_create("packcache");
    TCase *tc = tcase_create("packcache");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_written_then_mapped);
    tcase_add_test(tc, test_stale_and_damaged);
    tcase_add_test(tc, test_no_cache_folder);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("rss");
    tcase_add_checked_fixture(tr, setup, teardown);
    tcase_set_timeout(tr, 300);
    tcase_add_test(tr, test_rss_700m);
    suite_add_tcase(s, tr);
    return s;
}
