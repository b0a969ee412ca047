/* testutil.h - helpers every suite shares: where ../shared is, where the
 * build is, and a visible skip when the shared references are absent. */
#ifndef TERN_TESTUTIL_H
#define TERN_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <string.h>

/* Path of the shared reference folder ($TERN_SHARED, else ../shared beside
 * the checkout), or NULL when it is not there. */
const char *tu_shared_dir(void);
/* Builds "<shared>/<rel>" into buf; returns buf, or NULL if no shared dir. */
const char *tu_shared_path(char *buf, size_t n, const char *rel);
/* The build folder ($TERN_BUILD, else build/ in the checkout). */
const char *tu_build_dir(void);
/* The command that runs the tern executable of the build folder, quoted for
 * sh: its path, behind $TERN_TEST_EXEC when set (the cross build's tests
 * run it under qemu: TERN_TEST_EXEC="qemu-aarch64-static -cpu max"). */
const char *tu_tern_exe(void);
/* Reads a whole file, NUL-terminated (not counted in *size); caller frees.
 * NULL on failure. */
void *tu_read_file(const char *path, size_t *size);
/* Deterministic pseudo-random numbers for test inputs. */
unsigned long long tu_rand(unsigned long long *state);
float tu_randf(unsigned long long *state); /* uniform in [-1, 1) */
/* Seconds on the monotonic clock, for timing inside a test. */
double tu_now_s(void);

/* The embedded default model in the checkout (graphs/models/tiny-bitnet.gguf). */
const char *tu_default_model(void);
/* Loads path on the backend list with n threads; fails the test (naming
 * the backend) when it cannot. */
struct tern_model *tu_load_model(const char *path, const char *backend, int threads);
/* The same with the output head option ("f16", "q8"; NULL: the default). */
struct tern_model *tu_load_model_head(const char *path, const char *backend, int threads, const char *head);
/* The loaded plugin of that name in reg (runnable or not), or NULL. */
struct tern_plugin_info;
struct tern_registry;
const struct tern_plugin_info *tu_plugin(const struct tern_registry *reg, const char *name);

/* Reads the integer array after "key": [ in a JSON text (a small scanner
 * for the shared reference files). Returns the count, or -1. */
int tu_json_int_array(const char *json, const char *key, long long *out, int max);

/* Prints the visible skip line and returns from the test when ../shared is
 * absent, so a fresh clone without it still passes. */
#define TU_REQUIRE_SHARED()                                                   \
    do {                                                                      \
        if (!tu_shared_dir()) {                                               \
            printf("skipped: ../shared not found (%s)\n", __func__);          \
            return;                                                           \
        }                                                                     \
    } while (0)

#endif
