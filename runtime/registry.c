/* registry.c - finds backend plugins, loads and checks them, picks one.
 *
 * Search order: $TERN_PLUGIN_PATH, then this tree's plugin folder, found
 * from where libtern itself lives (tern/install.h: <libdir>/tern installed,
 * <libdir> in the build tree), so no tree loads another's plugins. A
 * plugin is dlopen'ed RTLD_NOW | RTLD_LOCAL and its ABI checked before any
 * other call into it. */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tern/backend.h"
#include "tern/install.h"
#include "tern/threadpool.h"

#define PLUGIN_PREFIX "tern-backend-"
#define PLUGIN_SUFFIX ".so"

struct tern_registry {
    tern_plugin_info **items; /* each allocated alone: pointers stay valid */
    void **handles;
    int n, cap;
};

static tern_status reg_grow(tern_registry *reg, tern_error *err)
{
    if (reg->n < reg->cap) return TERN_OK;
    int cap = reg->cap ? reg->cap * 2 : 8;
    tern_plugin_info **items = realloc(reg->items, (size_t)cap * sizeof *items);
    if (!items) return tern_error_set(err, TERN_ENOMEM, "out of memory listing plugins");
    reg->items = items;
    void **handles = realloc(reg->handles, (size_t)cap * sizeof *handles);
    if (!handles) return tern_error_set(err, TERN_ENOMEM, "out of memory listing plugins");
    reg->handles = handles;
    reg->cap = cap;
    return TERN_OK;
}

/* "tern-backend-x86.so" -> "x86"; 0 when the name does not match. */
static int plugin_name_from_file(const char *file, char *name, size_t n)
{
    size_t lp = strlen(PLUGIN_PREFIX), ls = strlen(PLUGIN_SUFFIX), lf = strlen(file);
    if (lf <= lp + ls || strncmp(file, PLUGIN_PREFIX, lp) != 0 ||
        strcmp(file + lf - ls, PLUGIN_SUFFIX) != 0)
        return 0;
    size_t len = lf - lp - ls;
    if (len >= n) return 0;
    memcpy(name, file + lp, len);
    name[len] = 0;
    return 1;
}

/* Checks the entry table; fills info->error and returns nonzero if bad. */
static int check_api(tern_plugin_info *info, const tern_backend_api *api)
{
    const char *path = info->path;
    if (!api) {
        snprintf(info->error, sizeof info->error, "%s: %s() returned NULL", path,
                 TERN_BACKEND_ENTRY_SYMBOL);
        return 1;
    }
    if (api->abi_version != TERN_BACKEND_ABI_VERSION) {
        snprintf(info->error, sizeof info->error,
                 "%s: plugin ABI version %u, this tern needs version %u", path, api->abi_version,
                 TERN_BACKEND_ABI_VERSION);
        return 1;
    }
    if (api->struct_size < TERN_BACKEND_API_MIN_SIZE) {
        snprintf(info->error, sizeof info->error,
                 "%s: plugin API struct is %u bytes, ABI version %u needs at least %zu", path,
                 api->struct_size, TERN_BACKEND_ABI_VERSION, (size_t)TERN_BACKEND_API_MIN_SIZE);
        return 1;
    }
    if (api->op_semantics != TERN_OP_SEMANTICS_VERSION) {
        snprintf(info->error, sizeof info->error,
                 "%s: plugin implements op semantics %u, this tern defines version %u", path,
                 api->op_semantics, TERN_OP_SEMANTICS_VERSION);
        return 1;
    }
    if (!api->name || !api->probe || !api->init || !api->free || (!api->ops && api->n_ops)) {
        snprintf(info->error, sizeof info->error,
                 "%s: plugin API table lacks a required member (name, probe, init, free, ops)", path);
        return 1;
    }
    if (!(api->caps & TERN_BACKEND_CAP_HOST_MEMORY) &&
        (!api->buffer_alloc || !api->buffer_free || !api->buffer_upload || !api->buffer_download)) {
        snprintf(info->error, sizeof info->error,
                 "%s: a device backend (no host-memory capability) needs buffer_alloc, buffer_free, "
                 "buffer_upload and buffer_download", path);
        return 1;
    }
    if (strcmp(api->name, info->name) != 0) {
        snprintf(info->error, sizeof info->error, "%s: file is named for backend '%s' but the plugin says '%s'",
                 path, info->name, api->name);
        return 1;
    }
    return 0;
}

tern_status tern_plugin_load(tern_registry *reg, const char *path, const tern_plugin_info **out,
                             tern_error *err)
{
    tern_status st = reg_grow(reg, err);
    if (st) return st;
    tern_plugin_info *info = calloc(1, sizeof *info);
    if (!info) return tern_error_set(err, TERN_ENOMEM, "out of memory loading %s", path);
    reg->items[reg->n] = info;
    snprintf(info->path, sizeof info->path, "%s", path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!plugin_name_from_file(base, info->name, sizeof info->name))
        snprintf(info->name, sizeof info->name, "%s", base);
    struct stat sb; /* a FIFO or a device would block dlopen's read */
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        reg->handles[reg->n++] = NULL;
        if (out) *out = info;
        snprintf(info->error, sizeof info->error, "%s: cannot load: not a regular file", path);
        return tern_error_set(err, TERN_EIO, "%s", info->error);
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    reg->handles[reg->n] = h;
    reg->n++;
    if (out) *out = info;
    if (!h) {
        snprintf(info->error, sizeof info->error, "%s: cannot load: %s", path, dlerror());
        return tern_error_set(err, TERN_EIO, "%s", info->error);
    }
    tern_backend_entry_fn entry;
    *(void **)&entry = dlsym(h, TERN_BACKEND_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(info->error, sizeof info->error, "%s: not a tern backend: symbol %s not found",
                 path, TERN_BACKEND_ENTRY_SYMBOL);
        return tern_error_set(err, TERN_ENOTFOUND, "%s", info->error);
    }
    const tern_backend_api *api = entry();
    if (check_api(info, api)) return tern_error_set(err, TERN_EABI, "%s", info->error);
    info->api = api;
    info->loaded = 1;
    api->probe(tern_host(), &info->probe);
    info->probe.desc[sizeof info->probe.desc - 1] = 0;
    return TERN_OK;
}

/* A backend of that name was found earlier on the path: the first wins,
 * and a second file of the same name is named in a warning, never hidden. */
static int already_have(const tern_registry *reg, const char *name, const char *path)
{
    for (int i = 0; i < reg->n; i++) {
        if (strcmp(reg->items[i]->name, name) != 0) continue;
        char a[PATH_MAX], b[PATH_MAX];
        if (!realpath(reg->items[i]->path, a) || !realpath(path, b) || strcmp(a, b) != 0)
            tern_host()->log(TERN_LOG_WARN, "backend '%s': using %s, ignoring %s found later on the "
                             "plugin path", name, reg->items[i]->path, path);
        return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 when name is in the comma-separated list (spaces around names are
 * ignored); every name is when the list is NULL or holds "auto". */
static int listed(const char *list, const char *name)
{
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        const char *q = p;
        p += len;
        if (*p == ',') p++;
        while (len && *q == ' ') q++, len--;
        while (len && q[len - 1] == ' ') len--;
        if ((len == n && memcmp(q, name, n) == 0) || (len == 4 && memcmp(q, "auto", 4) == 0)) return 1;
    }
    return 0;
}

static tern_status scan_dir(tern_registry *reg, const char *dir, const char *only, tern_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return TERN_OK; /* a missing search folder is normal */
    char *names[256];
    int n = 0;
    tern_status st = TERN_OK;
    struct dirent *e;
    while (!st && (e = readdir(d)) && n < 256) {
        char name[64];
        if (!plugin_name_from_file(e->d_name, name, sizeof name)) continue;
        if (!(names[n++] = strdup(e->d_name))) st = tern_error_set(err, TERN_ENOMEM, "out of memory listing plugins");
    }
    closedir(d);
    if (!st) qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        char name[64], path[PATH_MAX];
        if (names[i]) snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!st && plugin_name_from_file(names[i], name, sizeof name) && listed(only, name) &&
            !already_have(reg, name, path)) {
            tern_error ignored;
            tern_status ls = tern_plugin_load(reg, path, NULL, &ignored);
            if (ls == TERN_ENOMEM) st = tern_error_set(err, ls, "%s", ignored.msg);
        }
        free(names[i]);
    }
    return st;
}

static tern_status scan_path(const char *dirs, const char *only, tern_registry **out, tern_error *err)
{
    *out = NULL;
    tern_registry *reg = calloc(1, sizeof *reg);
    if (!reg) return tern_error_set(err, TERN_ENOMEM, "out of memory creating plugin registry");
    char *copy = strdup(dirs ? dirs : "");
    if (!copy) {
        free(reg);
        return tern_error_set(err, TERN_ENOMEM, "out of memory creating plugin registry");
    }
    tern_status st = TERN_OK;
    for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !st;
         dir = strtok_r(NULL, ":", &save))
        st = scan_dir(reg, dir, only, err);
    free(copy);
    if (st) {
        tern_registry_free(reg);
        return st;
    }
    *out = reg;
    return TERN_OK;
}

tern_status tern_registry_scan_path(const char *dirs, tern_registry **out, tern_error *err)
{
    return scan_path(dirs, NULL, out, err);
}

tern_status tern_registry_scan_only(const char *names, tern_registry **out, tern_error *err)
{
    *out = NULL;
    size_t n = tern_install_plugin_dirs(NULL, 0) + 1;
    char *path = malloc(n);
    if (!path) return tern_error_set(err, TERN_ENOMEM, "out of memory creating plugin registry");
    tern_install_plugin_dirs(path, n);
    tern_status st = scan_path(path, names, out, err);
    free(path);
    return st;
}

tern_status tern_registry_scan(tern_registry **out, tern_error *err)
{
    return tern_registry_scan_only(NULL, out, err);
}

void tern_registry_free(tern_registry *reg)
{
    if (!reg) return;
    /* Plugins are not dlclose'd: backend instances may outlive the registry
     * in tests, and unloading buys nothing in a short-lived process. */
    for (int i = 0; i < reg->n; i++) free(reg->items[i]);
    free(reg->items);
    free(reg->handles);
    free(reg);
}

int tern_registry_count(const tern_registry *reg) { return reg ? reg->n : 0; }

const tern_plugin_info *tern_registry_get(const tern_registry *reg, int i)
{
    return reg && i >= 0 && i < reg->n ? reg->items[i] : NULL;
}

tern_status tern_registry_select(const tern_registry *reg, const char *name,
                                 const tern_plugin_info **out, tern_error *err)
{
    if (!name || !*name || strcmp(name, "auto") == 0) {
        const tern_plugin_info *best = NULL;
        for (int i = 0; i < reg->n; i++) {
            const tern_plugin_info *p = reg->items[i];
            if (p->loaded && p->probe.runnable && (!best || p->probe.score > best->probe.score))
                best = p;
        }
        if (!best)
            return tern_error_set(err, TERN_ENOTFOUND,
                                  "no runnable backend plugin found (searched $TERN_PLUGIN_PATH "
                                  "and %s)", tern_install_plugin_dir());
        *out = best;
        return TERN_OK;
    }
    for (int i = 0; i < reg->n; i++) {
        const tern_plugin_info *p = reg->items[i];
        if (strcmp(p->name, name) != 0) continue;
        if (!p->loaded) return tern_error_set(err, TERN_EABI, "backend '%s': %s", name, p->error);
        if (!p->probe.runnable)
            return tern_error_set(err, TERN_ECANNOTRUN, "backend '%s' cannot run here: %s", name,
                                  p->probe.desc);
        *out = p;
        return TERN_OK;
    }
    return tern_error_set(err, TERN_ENOTFOUND,
                          "backend '%s' not found: no tern-backend-%s.so in $TERN_PLUGIN_PATH "
                          "or %s", name, name, tern_install_plugin_dir());
}

tern_backend_options tern_backend_default_options(void)
{
    tern_backend_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.n_threads = 1;
    o.kernel = "auto";
    o.head = "f16";
    o.device = -1;
    return o;
}

tern_status tern_backend_create(const tern_plugin_info *plugin, const tern_backend_options *opt,
                                tern_threadpool *pool, tern_backend **out, tern_error *err)
{
    if (!plugin || !plugin->loaded)
        return tern_error_set(err, TERN_EINVAL, "backend plugin not loaded");
    tern_backend_options defaults = tern_backend_default_options();
    if (!opt) opt = &defaults;
    tern_backend *be = calloc(1, sizeof *be);
    if (!be) return tern_error_set(err, TERN_ENOMEM, "out of memory creating backend");
    be->api = plugin->api;
    be->plugin = plugin;
    be->n_threads = opt->n_threads > 0 ? opt->n_threads : 1;
    be->pool = pool;
    be->host = *tern_host();
    be->host.user = be;
    char msg[TERN_ERROR_MSG_MAX] = "";
    tern_status st = plugin->api->init(&be->host, opt, &be->ctx, msg, sizeof msg);
    if (st) {
        free(be);
        return tern_error_set(err, st, "backend '%s': %s", plugin->name, msg);
    }
    *out = be;
    return TERN_OK;
}

void tern_backend_free(tern_backend *be)
{
    if (!be) return;
    be->api->free(be->ctx);
    free(be);
}

tern_op_fn tern_backend_op(const tern_backend *be, int op)
{
    if (!be || op < 0 || (uint32_t)op >= be->api->n_ops) return NULL;
    return be->api->ops[op];
}

int tern_backend_supports(const tern_backend *be, const tern_node *node)
{
    if (!tern_backend_op(be, node->op)) return 0;
    return be->api->supports_op ? be->api->supports_op(be->ctx, node) : 1;
}

int tern_backend_is_host(const tern_backend *be)
{
    return (be->api->caps & TERN_BACKEND_CAP_HOST_MEMORY) != 0;
}

tern_status tern_backend_sync(const tern_backend *be, tern_error *err)
{
    if (!be->api->sync) return TERN_OK;
    char msg[TERN_ERROR_MSG_MAX] = "";
    tern_status st = be->api->sync(be->ctx, msg, sizeof msg);
    if (st) return tern_error_set(err, st, "backend '%s': %s", be->plugin->name, msg[0] ? msg : tern_status_name(st));
    return TERN_OK;
}

int tern_backend_report(const tern_backend *be, uint64_t n_tokens, char *buf, size_t n)
{
    if (n) buf[0] = 0;
    if (!be || !n || !TERN_API_HAS(be->api, report)) return 0;
    be->api->report(be->ctx, n_tokens, buf, n);
    buf[n - 1] = 0;
    return buf[0] != 0;
}
