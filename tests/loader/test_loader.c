/* test_loader.c - the plugin loader against deliberately broken plugins
 * (tests/plugins/, built into BUILD/tests/plugins/<case>/): every refusal
 * names the file and says why; "auto" keeps the best runnable score; a
 * backend that cannot run or is missing is an error, never a fallback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/testutil.h"
#include "tern/tern.h"

static const char *plugin_dir(char *buf, size_t n, const char *folder)
{
    snprintf(buf, n, "%s/tests/plugins/%s", tu_build_dir(), folder);
    return buf;
}

static const char *plugin_file(char *buf, size_t n, const char *folder, const char *name)
{
    snprintf(buf, n, "%s/tests/plugins/%s/tern-backend-%s.so", tu_build_dir(), folder, name);
    return buf;
}

static tern_registry *empty_registry(void)
{
    tern_registry *reg;
    tern_error err;
    ck_assert_int_eq(tern_registry_scan_path("", &reg, &err), TERN_OK);
    ck_assert_int_eq(tern_registry_count(reg), 0);
    return reg;
}

#define ck_assert_has(hay, needle) \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' lacks '%s'", (hay), (needle))

/* Loads folder/name and expects status st; returns the info. */
static const tern_plugin_info *load_expect(tern_registry *reg, const char *folder, const char *name,
                                           tern_status st, tern_error *err)
{
    char path[4096];
    const tern_plugin_info *info = NULL;
    plugin_file(path, sizeof path, folder, name);
    ck_assert_msg(access(path, R_OK) == 0, "%s not built", path);
    tern_status got = tern_plugin_load(reg, path, &info, err);
    ck_assert_msg(got == st, "%s: got %s want %s: %s", path, tern_status_name(got),
                  tern_status_name(st), err->msg);
    ck_assert_ptr_nonnull(info);
    ck_assert_has(err->msg, path);
    return info;
}

START_TEST(test_bad_abi_version)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    const tern_plugin_info *info = load_expect(reg, "badabi", "badabi", TERN_EABI, &err);
    char cur[32];
    snprintf(cur, sizeof cur, "version %u", TERN_BACKEND_ABI_VERSION);
    ck_assert_has(err.msg, "999");
    ck_assert_has(err.msg, cur);
    ck_assert_int_eq(info->loaded, 0);
    ck_assert_str_eq(info->error, err.msg);
    /* naming it later reports why it did not load */
    const tern_plugin_info *sel;
    ck_assert_int_eq(tern_registry_select(reg, "badabi", &sel, &err), TERN_EABI);
    ck_assert_has(err.msg, "999");
    tern_registry_free(reg);
}
END_TEST

START_TEST(test_no_entry_symbol)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    load_expect(reg, "nosym", "nosym", TERN_ENOTFOUND, &err);
    ck_assert_has(err.msg, TERN_BACKEND_ENTRY_SYMBOL);
    tern_registry_free(reg);
}
END_TEST

START_TEST(test_struct_too_small)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    load_expect(reg, "small", "small", TERN_EABI, &err);
    ck_assert_has(err.msg, "bytes");
    tern_registry_free(reg);
}
END_TEST

/* ABI version 1 plugins are refused (plugin.h says why), naming both. */
START_TEST(test_abi_version_1)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    load_expect(reg, "v1abi", "v1abi", TERN_EABI, &err);
    ck_assert_has(err.msg, "plugin ABI version 1, this tern needs version 2");
    tern_registry_free(reg);
}
END_TEST

START_TEST(test_op_semantics)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    load_expect(reg, "semantics", "semantics", TERN_EABI, &err);
    char cur[64];
    snprintf(cur, sizeof cur, "op semantics 1, this tern defines version %u", TERN_OP_SEMANTICS_VERSION);
    ck_assert_has(err.msg, cur);
    tern_registry_free(reg);
}
END_TEST

/* The shortest version-2 table loads; its appended members count as absent
 * even where bytes past struct_size hold a pointer. */
START_TEST(test_minimal_table)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    char path[4096];
    const tern_plugin_info *info;
    plugin_file(path, sizeof path, "minimal", "minimal");
    ck_assert_msg(tern_plugin_load(reg, path, &info, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(info->api->struct_size, TERN_BACKEND_API_MIN_SIZE);
    ck_assert_ptr_nonnull(info->api->describe); /* the bytes are there ... */
    ck_assert(!TERN_API_HAS(info->api, describe)); /* ... but not part of the table */
    tern_registry_free(reg);
}
END_TEST

/* A plugin that calls into libtern does not link (-Wl,-z,defs). */
START_TEST(test_plugin_calling_libtern)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/plugins/callsin/link.txt", tu_build_dir());
    size_t size;
    char *txt = tu_read_file(path, &size);
    ck_assert_msg(txt != NULL, "%s not written by the build", path);
    ck_assert_msg(!strncmp(txt, "refused\n", 8), "the plugin calling libtern linked: %s", txt);
    ck_assert_has(txt, "tern_model_free");
    free(txt);
}
END_TEST

START_TEST(test_name_mismatch)
{
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    load_expect(reg, "mismatch", "mismatch", TERN_EABI, &err);
    ck_assert_has(err.msg, "'mismatch'");
    ck_assert_has(err.msg, "'othername'");
    tern_registry_free(reg);
}
END_TEST

/* A file named like a plugin that is not a shared object at all. */
START_TEST(test_garbage_file)
{
    char dir[] = "/tmp/tern-loader-XXXXXX", path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tern-backend-garbage.so", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    tern_registry *reg = empty_registry();
    tern_error err = {0};
    const tern_plugin_info *info;
    ck_assert_int_eq(tern_plugin_load(reg, path, &info, &err), TERN_EIO);
    ck_assert_has(err.msg, path);
    ck_assert_int_eq(info->loaded, 0);
    tern_registry_free(reg);
    /* a scan meets it, records it as not loadable, and carries on */
    ck_assert_int_eq(tern_registry_scan_path(dir, &reg, &err), TERN_OK);
    ck_assert_int_eq(tern_registry_count(reg), 1);
    ck_assert_int_eq(tern_registry_get(reg, 0)->loaded, 0);
    ck_assert_has(tern_registry_get(reg, 0)->error, path);
    tern_registry_free(reg);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_cannot_run)
{
    char dir[4096];
    tern_registry *reg;
    tern_error err = {0};
    ck_assert_int_eq(tern_registry_scan_path(plugin_dir(dir, sizeof dir, "cannotrun"), &reg, &err), TERN_OK);
    ck_assert_int_eq(tern_registry_count(reg), 1);
    const tern_plugin_info *p = tern_registry_get(reg, 0), *sel = NULL;
    ck_assert_int_eq(p->loaded, 1);
    ck_assert_int_eq(p->probe.runnable, 0);
    ck_assert_int_eq(tern_registry_select(reg, "cannotrun", &sel, &err), TERN_ECANNOTRUN);
    ck_assert_has(err.msg, "cannotrun");
    ck_assert_has(err.msg, "FROB-9000"); /* the probe's own reason */
    /* nothing runnable: auto is an error too, not a silent pick */
    ck_assert_int_eq(tern_registry_select(reg, "auto", &sel, &err), TERN_ENOTFOUND);
    tern_registry_free(reg);
}
END_TEST

/* scalar (score 1), fake (100), cannotrun (1000 but not runnable), badabi
 * (not loadable): auto keeps fake; each can still be named. */
START_TEST(test_auto_picks_best_score)
{
    char path[16384], a[4096], b[4096], c[4096];
    snprintf(path, sizeof path, "%s/lib:%s:%s:%s", tu_build_dir(), plugin_dir(a, sizeof a, "good"),
             plugin_dir(b, sizeof b, "cannotrun"), plugin_dir(c, sizeof c, "badabi"));
    tern_registry *reg;
    tern_error err = {0};
    ck_assert_int_eq(tern_registry_scan_path(path, &reg, &err), TERN_OK);
    const tern_plugin_info *sel = NULL;
    ck_assert_int_eq(tern_registry_select(reg, "auto", &sel, &err), TERN_OK);
    ck_assert_str_eq(sel->name, "fake");
    ck_assert_int_eq(sel->probe.score, 100);
    ck_assert_int_eq(tern_registry_select(reg, NULL, &sel, &err), TERN_OK); /* NULL = auto */
    ck_assert_str_eq(sel->name, "fake");
    ck_assert_int_eq(tern_registry_select(reg, "scalar", &sel, &err), TERN_OK);
    ck_assert_str_eq(sel->name, "scalar");
    ck_assert(sel->probe.runnable);
    ck_assert_int_eq(tern_registry_select(reg, "cannotrun", &sel, &err), TERN_ECANNOTRUN);
    ck_assert_int_eq(tern_registry_select(reg, "badabi", &sel, &err), TERN_EABI);
    /* fake has add and relu_sq only: the rest is NULL, i.e. scalar's */
    ck_assert_int_eq(tern_registry_select(reg, "fake", &sel, &err), TERN_OK);
    tern_backend *be;
    ck_assert_int_eq(tern_backend_create(sel, NULL, NULL, &be, &err), TERN_OK);
    ck_assert_ptr_nonnull(tern_backend_op(be, TERN_OP_ADD));
    ck_assert_ptr_null(tern_backend_op(be, TERN_OP_MATMUL_TERNARY));
    ck_assert_ptr_null(tern_backend_op(be, TERN_OP_COUNT + 5));
    float x[4] = {-1, 2, 3, -4}, y[4];
    tern_tensor tx, ty;
    int64_t ne[1] = {4};
    tern_tensor_init(&tx, TERN_TYPE_F32, 1, ne);
    tern_tensor_init(&ty, TERN_TYPE_F32, 1, ne);
    tx.data = x;
    ty.data = y;
    tern_node nd = {.op = TERN_OP_RELU_SQ, .dst = &ty, .src = {&tx}};
    ck_assert(tern_backend_supports(be, &nd));
    tern_backend_op(be, TERN_OP_RELU_SQ)(be->ctx, &nd, 0, 1, NULL);
    ck_assert_float_eq(y[0], 0.0f);
    ck_assert_float_eq(y[1], 4.0f);
    ck_assert_float_eq(y[3], 0.0f);
    nd.op = TERN_OP_SILU;
    ck_assert(!tern_backend_supports(be, &nd));
    tern_backend_free(be);
    tern_registry_free(reg);
}
END_TEST

START_TEST(test_missing_name)
{
    char dir[4096];
    tern_registry *reg;
    tern_error err = {0};
    ck_assert_int_eq(tern_registry_scan_path(plugin_dir(dir, sizeof dir, "good"), &reg, &err), TERN_OK);
    const tern_plugin_info *sel = NULL;
    ck_assert_int_eq(tern_registry_select(reg, "nonesuch", &sel, &err), TERN_ENOTFOUND);
    ck_assert_has(err.msg, "nonesuch");
    ck_assert_has(err.msg, "TERN_PLUGIN_PATH"); /* says where it looked */
    ck_assert(*tern_install_plugin_dir());
    ck_assert_has(err.msg, tern_install_plugin_dir()); /* this tree's folder, no compiled-in prefix */
    ck_assert_ptr_null(sel);
    tern_registry_free(reg);
}
END_TEST

/* tern_registry_scan searches $TERN_PLUGIN_PATH first, then libtern's
 * folder, so fake is found beside scalar and wins auto. */
START_TEST(test_plugin_path_env)
{
    char dir[4096], bad[4096], env[8300];
    snprintf(env, sizeof env, "%s:%s", plugin_dir(dir, sizeof dir, "good"),
             plugin_dir(bad, sizeof bad, "nosym"));
    ck_assert_int_eq(setenv("TERN_PLUGIN_PATH", env, 1), 0);
    tern_registry *reg;
    tern_error err = {0};
    ck_assert_int_eq(tern_registry_scan(&reg, &err), TERN_OK);
    unsetenv("TERN_PLUGIN_PATH");
    int fake = 0, scalar = 0, nosym = 0;
    for (int i = 0; i < tern_registry_count(reg); i++) {
        const tern_plugin_info *p = tern_registry_get(reg, i);
        if (strcmp(p->name, "fake") == 0) fake = p->loaded && strstr(p->path, dir) == p->path;
        if (strcmp(p->name, "scalar") == 0) scalar = p->loaded;
        if (strcmp(p->name, "nosym") == 0) nosym = !p->loaded && strstr(p->error, "nosym") != NULL;
    }
    ck_assert_msg(fake, "fake not found through $TERN_PLUGIN_PATH");
    ck_assert_msg(scalar, "scalar not found beside libtern");
    ck_assert_msg(nosym, "the broken nosym plugin was not listed with its error");
    const tern_plugin_info *sel;
    ck_assert_int_eq(tern_registry_select(reg, "auto", &sel, &err), TERN_OK);
    ck_assert_str_eq(sel->name, "fake");
    tern_registry_free(reg);
    /* without the variable, fake is gone and scalar is the pick */
    ck_assert_int_eq(tern_registry_scan(&reg, &err), TERN_OK);
    ck_assert_int_eq(tern_registry_select(reg, "fake", &sel, &err), TERN_ENOTFOUND);
    tern_registry_free(reg);
}
END_TEST

/* `tern info` lists scalar as runnable. */
START_TEST(test_tern_info)
{
    char cmd[4200], line[1024];
    snprintf(cmd, sizeof cmd, "env -u TERN_PLUGIN_PATH %s info 2>&1", tu_tern_exe());
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int scalar_runnable = 0;
    while (fgets(line, sizeof line, p)) {
        char name[64], state[64];
        if (sscanf(line, " %63s %63[^,],", name, state) == 2 && strcmp(name, "scalar") == 0 &&
            strcmp(state, "runnable") == 0)
            scalar_runnable = 1;
    }
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s exited with %d", cmd, st);
    ck_assert_msg(scalar_runnable, "`tern info` does not list scalar as runnable");
}
END_TEST

Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("plugins");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bad_abi_version);
    tcase_add_test(tc, test_no_entry_symbol);
    tcase_add_test(tc, test_struct_too_small);
    tcase_add_test(tc, test_name_mismatch);
    tcase_add_test(tc, test_abi_version_1);
    tcase_add_test(tc, test_op_semantics);
    tcase_add_test(tc, test_minimal_table);
    tcase_add_test(tc, test_plugin_calling_libtern);
    tcase_add_test(tc, test_garbage_file);
    tcase_add_test(tc, test_cannot_run);
    tcase_add_test(tc, test_auto_picks_best_score);
    tcase_add_test(tc, test_missing_name);
    tcase_add_test(tc, test_plugin_path_env);
    tcase_add_test(tc, test_tern_info);
    suite_add_tcase(s, tc);
    return s;
}
