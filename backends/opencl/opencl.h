/* opencl.h - private to the opencl backend: the device context, device
 * buffers, repacked weights, the node queue and the kernels.
 *
 * Files: backend.c (entry table, probe, instance, supports_op, describe,
 * report), device.c (platforms and devices, the program and its binary
 * cache), memory.c (buffers), repack.c (weight layouts), queue.c (queued
 * nodes, the launch plan with its fusions, sync, kernel errors, profiling),
 * kernels/ *.cl (the device code, embedded at build time by SConscript:
 * common.cl shared helpers, rows.cl row ops, attention.cl rope, KV stores
 * and attention, matmul.cl the GPU matmuls, cpu.cl those for CPU devices).
 *
 * Execution (plugin.h's device contract): every op only copies its node
 * into the queue; sync() turns the queue into kernel launches on one
 * in-order command queue, fusing neighbours the graph allows (queue.c),
 * then waits once. Device memory is a handle (ocl_buf) plus a byte offset
 * in tensor->data; kernels take (cl_mem, offset) pairs, never sub-buffers.
 *
 * Numerics: integer paths (quantize_act, matmul_ternary, Q8_0 matmul,
 * get_rows, kv_store) are bit-exact; float paths follow scalar's formulas
 * in double where the device has cl_khr_fp64 (see kernels/common.cl and
 * README.md for the stated tolerances). */
#ifndef TERN_OPENCL_H
#define TERN_OPENCL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "tern/plugin.h"
#include "tern/quant.h"

#define TERN_EXPORT __attribute__((visibility("default")))

/* ---- kernels (one cl_kernel each; names as in kernels/ *.cl) ---- */
enum {
    K_GET_ROWS,
    K_RMS_NORM_Q,
    K_QUANTIZE_ACT,
    K_ELTWISE,
    K_SOFTMAX,
    K_ROPE_KV,
    K_ATTENTION,
    K_TMV_QKV,
    K_TMV_ADD,
    K_TMV_GLU,
    K_TMV_QKV1, /* the same three for one token */
    K_TMV_ADD1,
    K_TMV_GLU1,
    K_TMM,
    K_FMV,
    K_FMV1,
    K_FMV2,
    K_FMV4,
    K_Q8ACT,
    K_Q8MV,
    K_TMV_CPU,
    K_FMV_CPU,
    K_COUNT
};
extern const char *const ocl_kernel_names[K_COUNT];

/* Launch kinds, for counting and profiles: a kernel and, for fused
 * launches, which nodes it covers. */
enum {
    L_GET_ROWS,
    L_RMS_NORM,
    L_NORM_QUANT,
    L_QUANTIZE,
    L_ELTWISE,
    L_SOFTMAX,
    L_ROPE,
    L_KV_STORE,
    L_ROPE_KV,
    L_ATTENTION,
    L_ATTENTION_NQ,
    L_TMV,
    L_TMV_MULTI,
    L_TMV_QKV_ROPE,
    L_TMV_ADD,
    L_TMV_GLU,
    L_TMV_ADD_NQ,
    L_TMV_GLU_NQ,
    L_TMM,
    L_FMV,
    L_Q8ACT,
    L_Q8MV,
    L_TMV_CPU,
    L_FMV_CPU,
    L_COUNT
};
extern const char *const ocl_launch_names[L_COUNT];

/* Work-group sizes the kernels are written for (kernels/common.cl has the
 * same numbers; the build passes them as -D options). */
#define OCL_ROW_WG 128  /* rms_norm, quantize_act, softmax: one group per row (GPU) */
#define OCL_ATT_WG 256  /* attention: one group per (token, head) (GPU); 8 slices of positions
                          * (H200, 2B4T tg128 attention launch 23.1 -> 20.8 us against 128) */
#define OCL_ROW_WG_CPU 16 /* the same on CPU devices, where a group is a loop */
#define OCL_ATT_WG_CPU 16
/* tmv, fmv: 8 lanes-of-32 a group, tmv two rows a warp (16 rows a group):
 * the tails' one group has twice the items of 128 (H200: gate/up launch
 * 27.2 -> 23.9 us, decode device time 2.76 -> 2.62 ms a token; 512: 2.71) */
#define OCL_MV_WG 256
#define OCL_MV_TOK 8    /* tokens per GEMV pass */
#define OCL_TMM_WG 64   /* tmm: 8 x 8 threads, 64 x 64 tile */
#define OCL_TMM_TILE 64
#define OCL_HD_MAX 256  /* attention: head size it keeps in local memory */
#define OCL_CTRS 1024   /* tail counters, used round robin */

/* Fusions (queue.c), each one bit of TERN_OPENCL_FUSE. */
enum {
    OCL_FUSE_NORM_QUANT = 1,
    OCL_FUSE_MULTI = 2,
    OCL_FUSE_GLU = 4,
    OCL_FUSE_ADD = 8,
    OCL_FUSE_ROPE_KV = 16,
    OCL_FUSE_TAIL = 32, /* the next RMS_NORM + QUANTIZE_ACT as a GEMV's last-group tail */
    OCL_FUSE_QKV_ROPE = 64, /* q/k/v rotations and cache stores in the q/k/v GEMV */
    OCL_FUSE_ALL = 127
};

/* ---- device memory ---- */

/* What buffer_alloc returns: the handle tensors carry in ->buffer. */
typedef struct ocl_buf {
    cl_mem mem;
    size_t size;
} ocl_buf;

/* ---- repacked weights: tensor->extra of tensors this backend owns ---- */
enum {
    W_TERNARY = 1, /* 2-bit codes, see below */
    W_FLOAT,       /* F32/F16/BF16 rows as stored */
    W_Q8_0         /* Q8_0 split: N*K int8, then N*K/32 f16 scales at d_off */
};

/* TERNARY: row n is ku = 4 ceil(K/64) uints (whole 16-byte words, as the
 * Q8_TOK row is padded to 64 values); the uint u holds k = 16u + 4s + b
 * in bits 8b + 2s .. 8b + 2s + 1 as w + 1 (0, 1, 2), so (word >> 2s) &
 * 0x03030303 gives the four codes of activation bytes 16u + 4s .. + 3 in
 * byte order (one dp4a operand). Padding codes are 1 (w = 0). */
typedef struct ocl_weight {
    const void *tag; /* &ocl_weight_tag */
    int kind;        /* W_* */
    int64_t K, N;
    int64_t ku;      /* TERNARY: uints per row */
    size_t d_off;    /* Q8_0: byte offset of the scales */
    ocl_buf *buf;    /* owned */
} ocl_weight;
extern const char ocl_weight_tag;

/* ---- the node queue ---- */
typedef struct ocl_qnode {
    tern_node node;
    tern_tensor src[TERN_NODE_MAX_SRC], dst;
} ocl_qnode;

/* A rope frequency table on the device, one per (base, n_dims). */
typedef struct ocl_rope_tab {
    float base;
    int n_dims;
    cl_mem mem;
} ocl_rope_tab;

typedef struct ocl_event {
    int kind;
    cl_event ev;
} ocl_event;

typedef struct ocl_prof {
    uint64_t launches;
    double seconds;
    double host_seconds; /* in clEnqueueNDRangeKernel */
} ocl_prof;

typedef struct ocl_ctx {
    const tern_host_api *host;
    /* device */
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernels[K_COUNT];
    int device_index;
    char device_name[128], platform_name[128], driver[64];
    int fp64, nv_dp4a;
    int cpu_kernels;       /* the matmuls of kernels/cpu.cl (CPU devices) */
    int row_wg, att_wg;    /* work-group sizes of the row ops and attention */
    int mv_wg;             /* the GEMVs' (OCL_MV_WG; TERN_OPENCL_MV_WG for measurements): two rows a warp */
    cl_ulong max_alloc;
    char build_note[96];   /* "program from cache" / "built in 1.2 s" */
    /* serialisation: one thread records and syncs a run at a time */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int run_busy;
    pthread_t run_owner;
    /* the queue of the current run: nodes [0, n_flushed) are launched */
    ocl_qnode *q;
    uint8_t *done;         /* per node: covered by a launch */
    int n_q, cap_q, n_flushed;
    int dead;              /* a launch failed: the rest of the run is dropped */
    struct ocl_event *events; /* profiling: one per launch */
    int n_events, cap_events;
    /* device scratch (owned): kernel error word, attention scores, Q8_0 activations */
    cl_mem err_mem;
    cl_mem scores;
    size_t scores_size;
    cl_mem q8act;
    size_t q8act_size;
    cl_mem ctrs;           /* arrival counts of the fused tails (zero between launches) */
    int ctr_next;
    ocl_rope_tab ropes[8];
    int n_ropes;
    /* options and counters */
    int head_q8;
    int fuse;              /* OCL_FUSE_* bits (TERN_OPENCL_FUSE; default all) */
    int profile;           /* TERN_OPENCL_PROFILE=1: events per launch */
    int n_ternary, n_float, n_q8, n_head_q8;
    uint64_t launches[L_COUNT], syncs, nodes_run;
    ocl_prof prof[L_COUNT];
    double host_plan_s, host_wait_s; /* sync's planning and enqueueing, its wait */
    double host_enqueue_s;           /* of host_plan_s, in clEnqueueNDRangeKernel */
    int flush_every, unflushed;      /* TERN_OPENCL_FLUSH_EVERY: clFlush after so many launches */
    int gate; /* TERN_OPENCL_GATE: a sync's launches wait until all are enqueued (its wait = device time) */
    /* failure injection (tests): TERN_OPENCL_FAIL=op:N, TERN_OPENCL_FAIL_SYNC=N */
    int fail_op, fail_at, fail_calls, fail_sync_at, fail_syncs;
} ocl_ctx;

/* ---- device.c ---- */
double ocl_now_s(void); /* a monotonic clock, seconds */
typedef struct ocl_devinfo {
    cl_platform_id platform;
    cl_device_id device;
    char name[128], platform_name[96];
    cl_device_type type;
    cl_uint units;
    cl_ulong mem;
    int unified, usable, score;
} ocl_devinfo;

/* Every device of every platform, in order; *n set (0 with why filled when
 * none). Returns a host-allocated array (free with host->free) or NULL. */
ocl_devinfo *ocl_list_devices(const tern_host_api *host, int *n, char *why, size_t whylen);
/* Index of the best-scoring usable device; -1 none. */
int ocl_best_device(const ocl_devinfo *d, int n);
/* Context, queue, program (from the binary cache or built), kernels. */
tern_status ocl_open_device(ocl_ctx *c, const ocl_devinfo *d, int index, char *err, size_t errlen);
void ocl_close_device(ocl_ctx *c);
const char *ocl_error_name(cl_int e);

/* ---- memory.c ---- */
void *ocl_buffer_alloc(void *ctx, size_t size);
void ocl_buffer_free(void *ctx, void *buffer);
tern_status ocl_buffer_upload(void *ctx, void *buffer, size_t offset, const void *src, size_t n);
tern_status ocl_buffer_download(void *ctx, const void *buffer, size_t offset, void *dst, size_t n);
/* The run lock: taken by the first op of a run (or a transfer), released
 * by sync. Re-entrant for the owner. */
void ocl_run_lock(ocl_ctx *c);
void ocl_run_unlock(ocl_ctx *c);
int ocl_run_owned(ocl_ctx *c);
/* A device buffer of at least size bytes in *mem (grown, never shrunk). */
cl_int ocl_scratch(ocl_ctx *c, cl_mem *mem, size_t *have, size_t size);

/* ---- repack.c ---- */
tern_status ocl_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst, char *err,
                       size_t errlen);
void ocl_release(void *ctx, tern_tensor *t);
/* The weight descriptor of a tensor this backend repacked; NULL if not ours. */
const ocl_weight *ocl_weight_of(const tern_tensor *t);

/* ---- queue.c ---- */
void ocl_enqueue(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
tern_status ocl_sync(void *ctx, char *err, size_t errlen);
/* Launches what is queued (the run lock held); a failure is reported
 * through node_error and drops the rest of the run. */
void ocl_flush(ocl_ctx *c);

/* ---- helpers ---- */
static inline cl_mem ocl_mem(const tern_tensor *t) { return ((const ocl_buf *)t->buffer)->mem; }
static inline cl_ulong ocl_off(const tern_tensor *t) { return (cl_ulong)(uintptr_t)t->data; }

/* This plugin's table: the owner of every tensor it repacks. */
extern const tern_backend_api opencl_api;

#endif
