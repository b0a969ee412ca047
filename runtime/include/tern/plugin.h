/* tern/plugin.h - the ABI a compute backend plugin implements: the one
 * header a plugin includes (with op.h, tensor.h and status.h, which it
 * pulls in). The runtime's loader API is backend.h.
 *
 * A backend is a shared object `tern-backend-<name>.so`, linked with
 * -Wl,-z,defs and without libtern, that exports exactly one symbol,
 * tern_backend_entry, returning a const tern_backend_api *. What it needs
 * from the runtime (memory, logging, CPU features, the thread pool, the
 * error slot) comes in the tern_host_api it is handed.
 *
 * ABI version 2 (this header). Changes from version 1:
 *   - tern_backend_api: op_semantics (the TERN_OP_SEMANTICS_VERSION the
 *     plugin implements); sync() returns a message; describe() became an
 *     appended member read through TERN_API_HAS.
 *   - tern_host_api: user, parallel_for(), node_error().
 *   - tern_node: error, the evaluation's error slot for node_error().
 *   - tern_tensor: owner, the backend whose repacked layout a tensor holds
 *     (replaces the unused backend index); a backend reads `extra` only of
 *     tensors it owns.
 *   - repack purposes HEAD, ROWS and PARAM: the output head is named by its
 *     purpose, not by its tensor name; every weight a node reads is placed
 *     on the backend that runs it.
 *   - TERN_STATUS EDEVICE for device failures.
 *   - appended since: report(), a backend's launches (and device time) per
 *     token for tern bench -v; read through TERN_API_HAS.
 * Version 1 plugins are refused with a message naming both versions: their
 * kernels cannot report errors and their tensors carry no owner, so
 * running them beside version-2 backends would bring back the very hazards
 * version 2 removes; no version-1 plugin exists outside this tree.
 *
 * Growth rule, from version 2 on: every struct here starts with its size
 * (struct_size) and only grows at the end. The loader accepts a
 * tern_backend_api at least TERN_BACKEND_API_MIN_SIZE bytes long and reads
 * a member beyond that only through TERN_API_HAS; a plugin reads members of
 * the host table and the options it is handed the same way. Changing the
 * meaning of an op (op.h) bumps TERN_OP_SEMANTICS_VERSION instead.
 *
 * Placement and execution (what the executor promises a plugin):
 *   - Nodes go to the first backend of the model's list whose op table has
 *     the op and whose supports_op() accepts the node with its tensors
 *     placed for that backend; scalar ends every list.
 *   - Tensors of a backend with TERN_BACKEND_CAP_HOST_MEMORY are host
 *     pointers (buffer NULL). Tensors of a device backend have buffer = a
 *     handle from its buffer_alloc() and data = the byte offset inside it.
 *     supports_op() decides from types, shapes, parameters, layout, owner
 *     and buffer/data being NULL or not; it never dereferences either (the
 *     planner asks before memory exists).
 *   - Each device backend gets one arena (intermediates) and, where it
 *     runs attention, the KV cache of those layers, both through
 *     buffer_alloc(); weights come through repack() (or, for ROWS and
 *     PARAM weights a device backend declines, an upload of the file
 *     bytes); inputs are uploaded once per evaluation; where consecutive
 *     nodes run on backends with different memory, the executor inserts
 *     copy nodes (download + upload) of its own.
 *   - Threaded host backends are called with (ith, nth) = (piece, pieces)
 *     for every piece of a node, from whichever thread of the pool claims
 *     it (a thread may run several pieces of a node, pieces may be more
 *     than the threads); the node ends when all its pieces are done, and
 *     the next node starts after that. Other backends are called
 *     once per node with ith 0, nth 1, may queue the work, and are sync()ed
 *     at the end of each run of consecutive nodes on them; sync's status
 *     ends the evaluation.
 *   - A kernel that meets bad data (a token id outside the table, a
 *     position past the cache, a device failure) calls host->node_error()
 *     and returns; the evaluation stops after that node and the caller gets
 *     the status and message. The next evaluation runs normally. */
#ifndef TERN_PLUGIN_H
#define TERN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "op.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TERN_BACKEND_ABI_VERSION 2u
#define TERN_BACKEND_ENTRY_SYMBOL "tern_backend_entry"

/* 1 when struct *p (which starts with or holds struct_size) is long enough
 * to have member. */
#define TERN_STRUCT_HAS(p, type, member) \
    ((p)->struct_size >= offsetof(type, member) + sizeof(((const type *)0)->member))
/* 1 when a backend table has the (appended, optional) member set. */
#define TERN_API_HAS(api, member) (TERN_STRUCT_HAS(api, tern_backend_api, member) && (api)->member)

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
    TERN_CPU_SVE2 = 1u << 20,
    TERN_CPU_FP16 = 1u << 21 /* AArch64 half-precision arithmetic (asimdhp) */
};

enum { TERN_LOG_ERROR = 0, TERN_LOG_WARN = 1, TERN_LOG_INFO = 2, TERN_LOG_DEBUG = 3 };

/* Work for parallel_for: task i of n. */
typedef void (*tern_task_fn)(void *arg, int i, int n);

/* What the runtime lends a plugin instance. Grows only at the end: a plugin
 * checks TERN_STRUCT_HAS(host, tern_host_api, member) before using a member
 * newer than the version it was built against. */
typedef struct tern_host_api {
    uint32_t abi_version; /* TERN_BACKEND_ABI_VERSION of the runtime */
    uint32_t struct_size; /* sizeof(tern_host_api) of the runtime */
    void *(*alloc)(size_t size, size_t align); /* NULL on failure */
    void (*free)(void *ptr);                   /* accepts NULL */
    void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    uint64_t cpu_features; /* TERN_CPU_* */
    const char *cache_dir; /* where tuned kernel plugins live (may be NULL) */
    /* ---- version 2 ---- */
    void *user; /* the runtime's, for the calls below; plugins never read it */
    /* Runs fn(arg, i, n) for every i in [0, n) on the runtime's thread pool
     * (the threads of the model the instance serves) and returns when all
     * are done. For load-time work (repack); never call it from a kernel. */
    void (*parallel_for)(const struct tern_host_api *host, int n, tern_task_fn fn, void *arg);
    /* Records that node failed: the first error of an evaluation wins, the
     * executor stops after the node and returns st with the message. Safe
     * from any thread, and from sync() for queued nodes. */
    void (*node_error)(const tern_node *node, tern_status st, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
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

/* options.head for a backend named `who`: *q8 = 1 when a float head is to
 * become Q8_0 rows ("q8"), 0 when it stays as stored ("f16"; NULL or ""
 * as well: the runtime resolves its default before it gets here). Any other
 * value is TERN_EINVAL with a one-line reason in err. */
static inline tern_status tern_head_option(const char *who, const tern_backend_options *opt, int *q8,
                                           char *err, size_t errlen)
{
    /* an older runtime's options may end before head */
    const char *head = opt && TERN_STRUCT_HAS(opt, tern_backend_options, head) ? opt->head : NULL;
    *q8 = head && !strcmp(head, "q8");
    if (!head || !*head || *q8 || !strcmp(head, "f16")) return TERN_OK;
    snprintf(err, errlen, "%s: unknown head '%s' (f16, q8)", who, head);
    return TERN_EINVAL;
}

/* Can head weight w become Q8_0 rows under the q8 head? A float type other
 * than Q8_0 itself, one matrix, rows of whole 32-element blocks. */
static inline int tern_head_q8_eligible(const tern_tensor *w)
{
    return tern_op_is_float_weight(w->type) && w->type != TERN_TYPE_Q8_0 && w->ne[0] > 0 && w->ne[0] % 32 == 0 &&
           w->ne[2] == 1 && w->ne[3] == 1;
}

/* What a placed weight will be used by. */
enum {
    TERN_REPACK_TERNARY = 0, /* src1 of TERN_OP_MATMUL_TERNARY */
    TERN_REPACK_MATMUL = 1,  /* src1 of TERN_OP_MATMUL */
    TERN_REPACK_HEAD = 2,    /* src1 of the TERN_OP_MATMUL producing the logits */
    TERN_REPACK_ROWS = 3,    /* src0 of TERN_OP_GET_ROWS (the embedding table) */
    TERN_REPACK_PARAM = 4,   /* any other weight a node reads (norm weights) */
    TERN_REPACK_COUNT
};

/* Backend capabilities. */
enum {
    TERN_BACKEND_CAP_HOST_MEMORY = 1u << 0, /* tensors live in host memory */
    TERN_BACKEND_CAP_THREADED = 1u << 1     /* ops split work by (ith, nth) */
};

/* One op kernel. Called once per piece with ith in [0, nth); each call does
 * piece ith of nth of the node (CPU backends split output rows), the same
 * work whichever thread runs it, and never waits for another piece.
 * scratch is the calling thread's scratch_size() bytes, 64-byte aligned.
 * Device backends are called with nth = 1 and may queue the work until
 * sync(). */
typedef void (*tern_op_fn)(void *ctx, const tern_node *node, int ith, int nth, void *scratch);

typedef struct tern_backend_api {
    uint32_t abi_version;  /* TERN_BACKEND_ABI_VERSION */
    uint32_t struct_size;  /* sizeof(tern_backend_api) when built */
    const char *name;      /* "scalar", "x86", ... matches the file name */
    uint32_t caps;         /* TERN_BACKEND_CAP_* */
    uint32_t op_semantics; /* TERN_OP_SEMANTICS_VERSION it implements */

    /* Can this machine run it? Must not allocate instance state. */
    void (*probe)(const tern_host_api *host, tern_backend_probe *out);

    /* Instance life cycle. init fills *ctx; on failure it returns a status
     * and writes a one-line reason into err. host stays valid until free.
     * free accepts NULL. */
    tern_status (*init)(const tern_host_api *host, const tern_backend_options *opt,
                        void **ctx, char *err, size_t errlen);
    void (*free)(void *ctx);

    /* Places a weight (file layout, host memory) for `purpose`. Fills *dst
     * completely; a layout of its own is TERN_LAYOUT_BACKEND with owner set
     * to this table, dst->data (or buffer) owned by the backend until
     * release(). TERN_EUNSUPPORTED: not on this backend (the node goes to
     * the next one). Called for TERNARY, MATMUL and HEAD on every backend;
     * for ROWS and PARAM only on device backends (host backends read those
     * as stored), where EUNSUPPORTED means "upload the file bytes". NULL
     * repack: the backend reads file layouts. */
    tern_status (*repack)(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen);
    void (*release)(void *ctx, tern_tensor *t); /* (optional) frees repack's data */

    /* Device memory (device backends; host backends leave these NULL). */
    void *(*buffer_alloc)(void *ctx, size_t size);
    void (*buffer_free)(void *ctx, void *buffer);
    tern_status (*buffer_upload)(void *ctx, void *buffer, size_t offset, const void *src, size_t n);
    tern_status (*buffer_download)(void *ctx, const void *buffer, size_t offset, void *dst, size_t n);
    /* (optional) Waits for queued ops; a failure writes a one-line reason
     * into err and leaves the queue empty. */
    tern_status (*sync)(void *ctx, char *err, size_t errlen);

    /* (optional) finer check than a non-NULL op: can it run this node with
     * these types, shapes and placements? 0 = no, the next backend runs it. */
    int (*supports_op)(void *ctx, const tern_node *node);
    /* (optional) per-thread scratch bytes node needs; NULL = none. */
    size_t (*scratch_size)(void *ctx, const tern_node *node, int nth);

    /* Op table, n_ops entries indexed by tern_op; ops beyond n_ops (from a
     * plugin built against an older op.h) count as NULL. */
    const tern_op_fn *ops;
    uint32_t n_ops;

    /* ---- appended members: read through TERN_API_HAS ---- */
    /* (optional) a line describing the instance (kernels chosen, head). */
    void (*describe)(void *ctx, char *buf, size_t n);
    /* (optional) What the instance launched since the previous call, as
     * lines ending in '\n': device kernels by kind and, where the backend
     * measures them, their device time; per token when n_tokens > 0. The
     * counts start anew after each call. (tern bench -v prints it.) */
    void (*report)(void *ctx, uint64_t n_tokens, char *buf, size_t n);
    /* (optional, both or neither) Packing into memory the runtime hands
     * out, so that a packed model can be kept in a cache file and mapped
     * by later runs instead of packed again (runtime/packcache.h).
     * repack_size: the bytes repack_into needs for (src, purpose), and in
     * layout one line naming the packed layout exactly (family, variant,
     * tile parameters, layout version): a cache entry is used only where
     * size and line both equal the ones it was written with. *bytes = 0:
     * nothing worth keeping, repack() places this weight. repack_into: as
     * repack(), with the packed bytes at data (bytes long, 64-byte
     * aligned), written when fill is 1, already there (read back from the
     * cache) when fill is 0; release() leaves such data alone. */
    tern_status (*repack_size)(void *ctx, const tern_tensor *src, int purpose, size_t *bytes,
                               char *layout, size_t layout_len, char *err, size_t errlen);
    tern_status (*repack_into)(void *ctx, const tern_tensor *src, int purpose, void *data,
                               int fill, tern_tensor *dst, char *err, size_t errlen);
} tern_backend_api;

/* The smallest table the loader accepts: everything before describe. */
#define TERN_BACKEND_API_MIN_SIZE offsetof(tern_backend_api, describe)

typedef const tern_backend_api *(*tern_backend_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
