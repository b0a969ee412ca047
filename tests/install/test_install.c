/* test_install.c - tern as another program embeds it. `scons test` installs
 * into BUILD/test-install first (SConstruct's install_tree); these tests
 * check the symbol policy, the SONAME, the installed tree's contents, that
 * the installed and the build tree each find only their own plugins and
 * default model, and that the C example (built against the build tree by
 * SCons, and here against the installed tree through pkg-config) and
 * `require "tern"` from a stock lua5.4 generate the same text as
 * `tern run --temp 0`. */
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testutil.h"
#include "tern/tern.h"

#define PROMPT "Once upon a time, there was a little girl who"
#define N_PREDICT "24"

/* Runs cmd through the shell; its stdout goes into out (stderr is the
 * test's). Returns the exit status, -1 when it did not exit. */
static int run(char *out, size_t n, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s", cmd);
    size_t used = 0;
    while (used + 1 < n) {
        size_t got = fread(out + used, 1, n - 1 - used, p);
        if (got == 0) break;
        used += got;
    }
    out[used] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* BUILD/test-install with symlinks resolved (libtern reports real paths). */
static const char *inst(void)
{
    static char path[PATH_MAX];
    char raw[PATH_MAX + 32];
    snprintf(raw, sizeof raw, "%s/test-install", tu_build_dir());
    ck_assert_msg(realpath(raw, path) != NULL,
                  "%s is missing: `scons test` installs there before running the suites", raw);
    return path;
}

static const char *build_real(void)
{
    static char path[PATH_MAX];
    ck_assert_msg(realpath(tu_build_dir(), path) != NULL, "no build folder %s", tu_build_dir());
    return path;
}

static int exists(const char *dir, const char *rel)
{
    char path[PATH_MAX + 256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return lstat(path, &st) == 0;
}

/* Environment prefix for commands run from an installed tree: nothing
 * pointing at the build tree. */
#define CLEAN_ENV "env -u TERN_PLUGIN_PATH -u LD_LIBRARY_PATH"

/* The same for the stock lua5.4, which under ASan must load the runtime
 * first and whose own allocations are not ours to leak-check. */
#if defined(__SANITIZE_ADDRESS__)
#define LUA_ENV CLEAN_ENV " ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=\"$(${CC:-gcc} -print-file-name=libasan.so)\""
#else
#define LUA_ENV CLEAN_ENV
#endif

/* What `tern run --temp 0` prints on stdout for the test prompt: the text
 * every other way of generating must reproduce. */
static void reference_text(char *out, size_t n)
{
    char cmd[PATH_MAX + 256];
    snprintf(cmd, sizeof cmd, "'%s/bin/tern' run -p '" PROMPT "' -n " N_PREDICT " --temp 0 2>/dev/null",
             tu_build_dir());
    ck_assert_int_eq(run(out, n, cmd), 0);
    ck_assert_msg(strncmp(out, PROMPT, strlen(PROMPT)) == 0 && strlen(out) > strlen(PROMPT) + 20,
                  "tern run printed: %s", out);
}

/* libtern exports tern_* and nothing else. */
START_TEST(test_exports_only_tern)
{
    char cmd[PATH_MAX + 64], out[1 << 16];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/lib/libtern.so.0'", tu_build_dir());
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *name = strrchr(line, ' ');
        name = name ? name + 1 : line;
        ck_assert_msg(strncmp(name, "tern_", 5) == 0, "libtern exports '%s'", name);
        n++;
    }
    ck_assert_msg(n > 50, "only %d symbols exported", n);
    /* the Lua module exports its entry alone */
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s/lib/lua/5.4/tern.so'", inst());
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    const char *name = strrchr(out, ' ');
    ck_assert_msg(name && strcmp(name, " luaopen_tern\n") == 0 && strchr(out, '\n') == out + strlen(out) - 1,
                  "tern.so exports: %s", out);
}
END_TEST

/* libtern.so.0 carries its SONAME; the development link points at it. */
START_TEST(test_soname_and_links)
{
    char cmd[PATH_MAX + 64], out[1 << 14];
    snprintf(cmd, sizeof cmd, "objdump -p '%s/lib/libtern.so.0' | grep SONAME", inst());
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    ck_assert_msg(strstr(out, "libtern.so.0\n") != NULL, "SONAME line: %s", out);
    char a[PATH_MAX + 32], b[PATH_MAX + 32], ra[PATH_MAX], rb[PATH_MAX];
    snprintf(a, sizeof a, "%s/lib/libtern.so", inst());
    snprintf(b, sizeof b, "%s/lib/libtern.so.0", inst());
    struct stat st;
    ck_assert(lstat(a, &st) == 0 && S_ISLNK(st.st_mode));
    ck_assert(realpath(a, ra) && realpath(b, rb));
    ck_assert_str_eq(ra, rb);
}
END_TEST

static int is_header(const char *name)
{
    size_t n = strlen(name);
    return n > 2 && strcmp(name + n - 2, ".h") == 0;
}

static int count_headers(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += is_header(e->d_name);
    closedir(d);
    return n;
}

/* The installed tree holds what the issue lists, and of the headers only
 * the public ones (runtime/include/tern/, nothing from runtime/). */
START_TEST(test_tree_contents)
{
    const char *root = inst();
    static const char *const want[] = {
        "bin/tern", "lib/libtern.so", "lib/libtern.so.0", "lib/tern/tern-backend-scalar.so",
        "lib/lua/5.4/tern.so", "lib/pkgconfig/tern.pc", "include/tern/tern.h",
        "include/tern/install.h", "share/tern/models/tiny-bitnet.gguf",
        "share/doc/tern/README.md", "share/doc/tern/generate.c",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(exists(root, want[i]), "%s/%s is missing", root, want[i]);
    ck_assert_msg(!exists(root, "lib/tern-backend-scalar.so"), "plugins belong in lib/tern/, not lib/");
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/include/tern", root);
    ck_assert_int_eq(count_headers(dir), count_headers(TERN_SOURCE_DIR "/runtime/include/tern"));
    ck_assert(!exists(root, "include/tern/model_impl.h") && !exists(root, "include/model_impl.h"));
}
END_TEST

/* Finds "key: value" in text; copies value (up to the newline) into v. */
static void field(const char *text, const char *key, char *v, size_t n)
{
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no '%s' in:\n%s", key, text);
    p += strlen(key);
    size_t len = strcspn(p, "\n");
    ck_assert(len < n);
    memcpy(v, p, len);
    v[len] = 0;
}

/* `tern --version` of tree `root` (installed: clean environment) names
 * its libtern, plugin folder and default model inside root itself. */
static void check_version(const char *root, const char *plugins)
{
    char cmd[PATH_MAX + 256], out[8192], v[PATH_MAX + 64], want[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, CLEAN_ENV " '%s/bin/tern' --version", root);
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    ck_assert_msg(strncmp(out, "tern " TERN_VERSION "\n", strlen(TERN_VERSION) + 6) == 0, "%s", out);
    snprintf(want, sizeof want, "%u", TERN_BACKEND_ABI_VERSION);
    field(out, "backend ABI version ", v, sizeof v);
    ck_assert_str_eq(v, want);
    field(out, "compiler: ", v, sizeof v);
    ck_assert_msg(strncmp(v, "gcc ", 4) == 0 || strncmp(v, "clang ", 6) == 0, "compiler: %s", v);
    field(out, "build: ", v, sizeof v);
    ck_assert_msg(strstr(v, "debug=") && strstr(v, "san="), "build: %s", v);
    snprintf(want, sizeof want, "libtern " TERN_VERSION " in %s/lib", root);
    ck_assert_msg(strstr(out, want) != NULL, "want '%s' in:\n%s", want, out);
    field(out, "plugins: ", v, sizeof v);
    snprintf(want, sizeof want, "%s/%s", root, plugins);
    ck_assert_str_eq(v, want);
    field(out, "default model: ", v, sizeof v);
    snprintf(want, sizeof want, "%s/share/tern/models/tiny-bitnet.gguf", root);
    ck_assert_str_eq(v, want);
}

/* Every plugin `tern info` of tree root lists lives in root/plugins/. */
static void check_info(const char *root, const char *plugins)
{
    char cmd[PATH_MAX + 256], out[1 << 15], dir[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, CLEAN_ENV " '%s/bin/tern' info", root);
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    snprintf(dir, sizeof dir, "%s/%s/tern-backend-", root, plugins);
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line += strspn(line, " ");
        if (line[0] != '/') continue;
        ck_assert_msg(strncmp(line, dir, strlen(dir)) == 0, "%s/bin/tern loaded %s", root, line);
        n++;
    }
    ck_assert_msg(n >= 1, "%s/bin/tern info lists no plugin", root);
}

/* Installed: lib/tern/ and share/; build tree: lib/ and its own share/
 * (the link to graphs/models/). Neither sees the other's files. */
START_TEST(test_each_tree_finds_its_own)
{
    check_version(inst(), "lib/tern");
    check_info(inst(), "lib/tern");
    check_version(build_real(), "lib");
    check_info(build_real(), "lib");
}
END_TEST

/* The installed tern runs the default model without -m, as the README's
 * quick start does from the checkout. */
START_TEST(test_installed_run)
{
    char cmd[PATH_MAX + 256], out[8192], want[8192];
    reference_text(want, sizeof want);
    snprintf(cmd, sizeof cmd, "cd / && " CLEAN_ENV " '%s/bin/tern' run -p '" PROMPT "' -n " N_PREDICT
             " --temp 0 2>/dev/null", inst());
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    ck_assert_str_eq(out, want);
}
END_TEST

/* tools/examples/generate.c as SCons built it against the build tree. */
START_TEST(test_example_build_tree)
{
    char cmd[PATH_MAX + 256], out[8192], want[8192];
    reference_text(want, sizeof want);
    snprintf(cmd, sizeof cmd, "'%s/examples/generate' '" PROMPT "' " N_PREDICT, tu_build_dir());
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    ck_assert_str_eq(out, want);
}
END_TEST

/* The installed copy of the example, built as a user would with
 * pkg-config against the installed tree alone, run on the installed
 * default model. */
START_TEST(test_example_pkg_config)
{
    char tmp[] = "/tmp/tern-example-XXXXXX", cmd[4 * PATH_MAX], out[8192], want[8192];
    ck_assert(mkdtemp(tmp) != NULL);
    const char *root = inst();
#if defined(__SANITIZE_ADDRESS__)
    const char *san = "-fsanitize=address,undefined";
#else
    const char *san = "";
#endif
    snprintf(cmd, sizeof cmd,
             "export PKG_CONFIG_PATH='%s/lib/pkgconfig'; "
             "pkg-config --cflags tern | grep -q -- '-I%s/include' || exit 3; "
             "${CC:-gcc} -std=c11 -Wall -Wextra -Werror %s '%s/share/doc/tern/generate.c' -o '%s/generate' "
             "$(pkg-config --cflags --libs tern) -Wl,-rpath,\"$(pkg-config --variable=libdir tern)\" 2>&1",
             root, root, san, root, tmp);
    int st = run(out, sizeof out, cmd);
    ck_assert_msg(st == 0, "building the example with pkg-config failed (%d):\n%s", st, out);
    reference_text(want, sizeof want);
    snprintf(cmd, sizeof cmd, "cd / && " CLEAN_ENV " '%s/generate' '" PROMPT "' " N_PREDICT, tmp);
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    ck_assert_str_eq(out, want);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* require "tern" from Debian's lua5.4 loads the installed module, which
 * finds the installed default model and runs the embedded pipeline. */
START_TEST(test_lua_require)
{
    char cmd[4 * PATH_MAX], out[8192], want[8192], model[PATH_MAX + 64];
    ck_assert_msg(system("command -v lua5.4 >/dev/null") == 0,
                  "lua5.4 not found: the stock interpreter is a test dependency (tools/setup.sh)");
    const char *root = inst();
    snprintf(cmd, sizeof cmd,
             "cd / && " LUA_ENV " LUA_CPATH='%s/lib/lua/5.4/?.so' lua5.4 -e '"
             "local tern = require \"tern\" "
             "assert(package.loaded.tern == tern and tern.version == \"" TERN_VERSION "\") "
             "io.write(tern.default_model(), \"\\n\") "
             "tern.script(\"generate.lua\"){prompt = \"" PROMPT "\", n_predict = " N_PREDICT ", temp = 0}"
             "' 2>/dev/null",
             root);
    ck_assert_int_eq(run(out, sizeof out, cmd), 0);
    snprintf(model, sizeof model, "%s/share/tern/models/tiny-bitnet.gguf\n", root);
    ck_assert_msg(strncmp(out, model, strlen(model)) == 0, "want the installed model first, got:\n%s", out);
    reference_text(want, sizeof want);
    ck_assert_str_eq(out + strlen(model), want);
}
END_TEST

Suite *install_suite(void)
{
    Suite *s = suite_create("install");
    TCase *tc = tcase_create("install");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_exports_only_tern);
    tcase_add_test(tc, test_soname_and_links);
    tcase_add_test(tc, test_tree_contents);
    tcase_add_test(tc, test_each_tree_finds_its_own);
    tcase_add_test(tc, test_installed_run);
    tcase_add_test(tc, test_example_build_tree);
    tcase_add_test(tc, test_example_pkg_config);
    tcase_add_test(tc, test_lua_require);
    suite_add_tcase(s, tc);
    return s;
}
