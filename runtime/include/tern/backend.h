/* tern/backend.h - the plugin ABI every compute backend implements, and the
 * runtime's loader for it.
 *
 * A backend is a shared object `tern-backend-<name>.so` that exports exactly
 * one symbol, tern_backend_entry, returning a const tern_backend_api *. The
 * struct starts with abi_version and struct_size; it only ever grows at the
 * end, and the loader refuses a different abi_version or a struct_size
 * smaller than the one it was built with. Plugins do not link libtern: what
 * they need from the host (memory, logging, CPU features) comes in
 * tern_host_api.
 *
 * Ops are a table of function pointers indexed by tern_op (op.h). A NULL
 * entry, or supports_op() saying no, means "not here": the executor runs
 * that node on the scalar backend and counts it. */
#ifndef TERN_BACKEND_H
#define TERN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "op.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_BACKEND_ABI_VERSION 1u
#define TERN_BACKEND_ENTRY_SYMBOL "tern_backend_entry"

/* CPU features the runtime detected (cpuid / HWCAP), passed to plugins. */
enum {
    TERN_CPU_SSE42 = 1u << 0,
    TERN_CPU_AVX = 1u << 1,
    TERN_CPU_AVX2 = 1u << 2,
    TERN_CPU_FMA = 1u << 3,
    TERN_CPU_F16C = 1u << 4,
    TERN_CPU_AVX_VNNI = 1u << 5,
    TERN_CPU_AVX512F = 1u << 6,
    TERN_CPU_AVX512BW = 1u << 7,
    TERN_CPU_AVX512VL = 1u << 8,
    TERN_CPU_AVX512VNNI = 1u << 9,
    TERN_CPU_AVX512VBMI = 1u << 10,
    TERN_CPU_AVX512VPOPCNTDQ = 1u << 11,
    TERN_CPU_AVX512BF16 = 1u << 12,
    TERN_CPU_NEON = 1u << 16,
    TERN_CPU_DOTPROD = 1u << 17,
    TERN_CPU_I8MM = 1u << 18,
    TERN_CPU_SVE = 1u << 19,
    TERN_CPU_SVE2 = 1u << 20
};

enum { TERN_LOG_ERROR = 0, TERN_LOG_WARN = 1, TERN_LOG_INFO = 2, TERN_LOG_DEBUG = 3 };

/* What the runtime lends a plugin. Grows only at the end. */
typedef struct tern_host_api {
    uint32_t abi_version;
    uint32_t struct_size;
    void *(*alloc)(size_t size, size_t align); /* NULL on failure */
    void (*free)(void *ptr);                   /* accepts NULL */
    void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    uint64_t cpu_features; /* TERN_CPU_* */
    const char *cache_dir; /* where tuned kernel plugins live (may be NULL) */
} tern_host_api;

/* What probe() found: can this machine run the backend, how well. */
typedef struct tern_backend_probe {
    int runnable;      /* 1 = yes */
    int score;         /* higher wins under backend = "auto"; scalar is 1 */
    char desc[256];    /* one line: features or devices found, or why not */
} tern_backend_probe;

/* Per-instance settings. Grows only at the end; plugins read struct_size. */
typedef struct tern_backend_options {
    uint32_t struct_size;
    int n_threads;       /* CPU backends: threads the executor will use */
    const char *kernel;  /* "auto" or a kernel family name; NULL = auto */
    const char *head;    /* output head storage: "f16" (as stored), "q8" */
    int device;          /* device backends: device index, -1 = default */
} tern_backend_options;

/* What a repacked tensor will be used by. */
enum {
    TERN_REPACK_TERNARY = 0, /* src1 of TERN_OP_MATMUL_TERNARY */
    TERN_REPACK_MATMUL = 1   /* src1 of TERN_OP_MATMUL */
};

/* Backend capabilities. */
enum {
    TERN_BACKEND_CAP_HOST_MEMORY = 1u << 0, /* tensors live in host memory */
    TERN_BACKEND_CAP_THREADED = 1u << 1     /* ops split work by (ith, nth) */
};

/* One op kernel. Called once per thread with ith in [0, nth); each call does
 * its share of the node (CPU backends split output rows). scratch is this
 * thread's scratch_size() bytes, 64-byte aligned. Device backends are called
 * with nth = 1 and may queue the work until sync(). */
typedef void (*tern_op_fn)(void *ctx, const tern_node *node, int ith, int nth, void *scratch);

typedef struct tern_backend_api {
    uint32_t abi_version; /* TERN_BACKEND_ABI_VERSION */
    uint32_t struct_size; /* sizeof(tern_backend_api) when built */
    const char *name;     /* "scalar", "x86", ... matches the file name */
    uint32_t caps;        /* TERN_BACKEND_CAP_* */

    /* Can this machine run it? Must not allocate instance state. */
    void (*probe)(const tern_host_api *host, tern_backend_probe *out);

    /* Instance life cycle. init fills *ctx; on failure it returns a status
     * and writes a one-line reason into err. free accepts NULL. */
    tern_status (*init)(const tern_host_api *host, const tern_backend_options *opt,
                        void **ctx, char *err, size_t errlen);
    void (*free)(void *ctx);

    /* Converts a weight tensor (file layout, host memory) into this
     * backend's preferred layout for `purpose`. Fills *dst completely
     * (type, layout, ne, nb, data, scale, extra); dst->data is owned by the
     * backend until release(). NULL repack: the backend reads file layouts. */
    tern_status (*repack)(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen);
    void (*release)(void *ctx, tern_tensor *t); /* (optional) frees repack's data */

    /* Device memory (optional: CPU backends leave these NULL). */
    void *(*buffer_alloc)(void *ctx, size_t size);
    void (*buffer_free)(void *ctx, void *buffer);
    tern_status (*buffer_upload)(void *ctx, void *buffer, size_t offset, const void *src, size_t n);
    tern_status (*buffer_download)(void *ctx, const void *buffer, size_t offset, void *dst, size_t n);
    tern_status (*sync)(void *ctx); /* (optional) waits for queued ops */

    /* (optional) finer check than a non-NULL op: can it run this node with
     * these types and shapes? 0 = no, the executor falls back to scalar. */
    int (*supports_op)(void *ctx, const tern_node *node);
    /* (optional) per-thread scratch bytes node needs; NULL = none. */
    size_t (*scratch_size)(void *ctx, const tern_node *node, int nth);

    /* Op table, n_ops entries indexed by tern_op; ops beyond n_ops (from a
     * plugin built against an older op.h) count as NULL. */
    const tern_op_fn *ops;
    uint32_t n_ops;

    /* (optional) a line describing the instance (kernels chosen, head). */
    void (*describe)(void *ctx, char *buf, size_t n);
} tern_backend_api;

typedef const tern_backend_api *(*tern_backend_entry_fn)(void);

/* ---- runtime side: finding, checking and instantiating plugins ---- */

/* The host table libtern hands every plugin (allocator, logger, features). */
const tern_host_api *tern_host(void);
/* CPU features of this machine (cpuid / HWCAP), TERN_CPU_* bits. */
uint64_t tern_cpu_features(void);
/* Writes the names of the set feature bits, space separated. */
void tern_cpu_features_string(uint64_t features, char *buf, size_t n);

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

/* A live backend instance. */
typedef struct tern_backend {
    const tern_backend_api *api;
    void *ctx;
    const tern_plugin_info *plugin;
    int n_threads;
} tern_backend;

tern_backend_options tern_backend_default_options(void);
tern_status tern_backend_create(const tern_plugin_info *plugin, const tern_backend_options *opt,
                                tern_backend **out, tern_error *err);
void tern_backend_free(tern_backend *be);
/* The op kernel for op, or NULL when the backend lacks it. */
tern_op_fn tern_backend_op(const tern_backend *be, int op);
/* 1 when the backend runs node itself (op present and supports_op agrees). */
int tern_backend_supports(const tern_backend *be, const tern_node *node);

#ifdef __cplusplus
}
#endif
#endif
