/* tern/backend.h - the runtime's side of the backend plugins: finding,
 * checking and instantiating them. The ABI itself (what a plugin
 * implements, what the executor promises it) is tern/plugin.h.
 *
 * The loader refuses a plugin whose abi_version differs from
 * TERN_BACKEND_ABI_VERSION, whose table is shorter than
 * TERN_BACKEND_API_MIN_SIZE, or whose op_semantics differs from
 * TERN_OP_SEMANTICS_VERSION, naming the file and both numbers. */
#ifndef TERN_BACKEND_H
#define TERN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "op.h"
#include "plugin.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- runtime side: finding, checking and instantiating plugins ---- */

/* The process-wide host table (allocator, logger, features; parallel_for
 * runs serially, node_error reaches the slot in the node). Instances get a
 * copy of their own whose parallel_for uses their model's threads. */
const tern_host_api *tern_host(void);
/* tern's cache folder as the environment names it now: $TERN_CACHE_DIR,
 * else $XDG_CACHE_HOME/tern, else $HOME/.cache/tern; NULL without any.
 * (The host table's cache_dir is this, read once at start.) */
const char *tern_cache_dir(char *buf, size_t n);
/* CPU features of this machine (cpuid / HWCAP), TERN_CPU_* bits. */
uint64_t tern_cpu_features(void);
/* Writes the names of the set feature bits, space separated. */
void tern_cpu_features_string(uint64_t features, char *buf, size_t n);
/* Physical cores this process may use (SMT siblings once): the default
 * thread count. */
int tern_cpu_physical_cores(void);
/* CPUs of the affinity mask, SMT siblings each counted. */
int tern_cpu_logical_cpus(void);

/* One plugin file found on the search path, loaded or not. */
typedef struct tern_plugin_info {
    char path[1024];
    char name[64];              /* from the file name, tern-backend-<name>.so */
    int loaded;                 /* dlopen, symbol and ABI checks passed */
    char error[TERN_ERROR_MSG_MAX]; /* why it did not load */
    tern_backend_probe probe;   /* valid when loaded */
    const tern_backend_api *api; /* valid when loaded */
} tern_plugin_info;

typedef struct tern_registry tern_registry;

/* Scans, in order: every directory in $TERN_PLUGIN_PATH (':'-separated),
 * then this tree's plugin folder (tern/install.h: <libdir>/tern when
 * installed, <libdir> in the build tree). The first file of a given
 * backend name wins. */
tern_status tern_registry_scan(tern_registry **out, tern_error *err);
/* Same, but opens only the plugins named in names (comma-separated; every
 * one for NULL or a list holding "auto"): others are never dlopen'ed, so
 * their constructors never run. A file that is not a regular one is listed
 * as not loadable, never opened. */
tern_status tern_registry_scan_only(const char *names, tern_registry **out, tern_error *err);
/* Same, over exactly the given ':'-separated directories (tests). */
tern_status tern_registry_scan_path(const char *dirs, tern_registry **out, tern_error *err);
void tern_registry_free(tern_registry *reg);
int tern_registry_count(const tern_registry *reg);
const tern_plugin_info *tern_registry_get(const tern_registry *reg, int i);
/* Loads one plugin file and checks it; the message names the file and,
 * for an ABI mismatch, both versions. The handle stays open until the
 * registry is freed. */
tern_status tern_plugin_load(tern_registry *reg, const char *path, const tern_plugin_info **out,
                             tern_error *err);

/* Picks a backend: "auto" keeps the runnable one with the best score; a
 * name that is missing or cannot run is an error carrying the probe's
 * reason, never a silent fallback. */
tern_status tern_registry_select(const tern_registry *reg, const char *name,
                                 const tern_plugin_info **out, tern_error *err);

struct tern_threadpool;

/* Most backends one model runs on (its list, scalar included). */
#define TERN_MAX_BACKENDS 8

/* A live backend instance. */
typedef struct tern_backend {
    const tern_backend_api *api;
    void *ctx;
    const tern_plugin_info *plugin;
    int n_threads;
    struct tern_threadpool *pool; /* serves host.parallel_for; may be NULL */
    tern_host_api host;           /* this instance's table: user = this */
} tern_backend;

tern_backend_options tern_backend_default_options(void);
/* pool (may be NULL) serves the instance's host->parallel_for. */
tern_status tern_backend_create(const tern_plugin_info *plugin, const tern_backend_options *opt,
                                struct tern_threadpool *pool, tern_backend **out, tern_error *err);
void tern_backend_free(tern_backend *be);
/* The op kernel for op, or NULL when the backend lacks it. */
tern_op_fn tern_backend_op(const tern_backend *be, int op);
/* 1 when the backend runs node itself (op present and supports_op agrees). */
int tern_backend_supports(const tern_backend *be, const tern_node *node);
/* 1 when its tensors live in host memory (no buffers). */
int tern_backend_is_host(const tern_backend *be);
/* Calls sync() if the backend has one; the message names the backend. */
tern_status tern_backend_sync(const tern_backend *be, tern_error *err);
/* The backend's work report since the previous call (report(), per token
 * when n_tokens > 0); 0 and an empty buf when it has none. */
int tern_backend_report(const tern_backend *be, uint64_t n_tokens, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
