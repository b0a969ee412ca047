/* testutil.c - shared test helpers (see testutil.h). */
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "common/testutil.h"
#include "tern/tern.h"

const char *tu_shared_dir(void)
{
    static char path[4096];
    static int done;
    if (!done) {
        done = 1;
        const char *env = getenv("TERN_SHARED");
        snprintf(path, sizeof path, "%s", env && *env ? env : TERN_SOURCE_DIR "/../shared");
        struct stat st;
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/ref/README.md", path);
        if (stat(probe, &st) != 0) path[0] = 0;
    }
    return path[0] ? path : NULL;
}

const char *tu_shared_path(char *buf, size_t n, const char *rel)
{
    const char *s = tu_shared_dir();
    if (!s) return NULL;
    snprintf(buf, n, "%s/%s", s, rel);
    return buf;
}

const char *tu_build_dir(void)
{
    const char *env = getenv("TERN_BUILD");
    return env && *env ? env : TERN_SOURCE_DIR "/build";
}

const char *tu_tern_exe(void)
{
    static char cmd[4400];
    const char *wrap = getenv("TERN_TEST_EXEC");
    snprintf(cmd, sizeof cmd, "%s%s'%s/bin/tern'", wrap && *wrap ? wrap : "", wrap && *wrap ? " " : "",
             tu_build_dir());
    return cmd;
}

void *tu_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) {
        fclose(f);
        return NULL;
    }
    char *buf = malloc((size_t)n + 1); /* NUL-terminated for text files */
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    if (buf && size) *size = (size_t)n;
    return buf;
}

unsigned long long tu_rand(unsigned long long *s)
{
    /* splitmix64: small, good enough for test data, identical everywhere */
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float tu_randf(unsigned long long *s)
{
    return (float)((tu_rand(s) >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
}

int tu_json_int_array(const char *json, const char *key, long long *out, int max)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return -1;
    p = strchr(p + strlen(pat), '[');
    if (!p) return -1;
    p++;
    int n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',') p++;
        if (*p == ']') return n;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || n >= max) return -1;
        out[n++] = v;
        p = end;
    }
}

double tu_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

const char *tu_default_model(void)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/graphs/models/tiny-bitnet.gguf", TERN_SOURCE_DIR);
    return path;
}

tern_model *tu_load_model(const char *path, const char *backend, int threads)
{
    return tu_load_model_head(path, backend, threads, NULL);
}

tern_model *tu_load_model_head(const char *path, const char *backend, int threads, const char *head)
{
    tern_model_options mo = tern_model_default_options();
    mo.backend = backend;
    mo.n_threads = threads;
    if (head) mo.head = head;
    tern_model *m;
    tern_error err;
    ck_assert_msg(tern_model_load(path, &mo, &m, &err) == TERN_OK, "%s: %s", backend, err.msg);
    return m;
}

const tern_plugin_info *tu_plugin(const tern_registry *reg, const char *name)
{
    for (int i = 0; i < tern_registry_count(reg); i++) {
        const tern_plugin_info *pi = tern_registry_get(reg, i);
        if (pi->loaded && !strcmp(pi->name, name)) return pi;
    }
    return NULL;
}
