/* scalar.h - private to the scalar backend: its context, the row helpers
 * every op shares, and the op kernels (one ops_*.c file per family).
 *
 * Every kernel follows one rule for threads: the output rows (or, for the
 * matmuls, the output columns) are cut into nth contiguous chunks and thread
 * ith does chunk ith, each output computed on its own. So results never
 * depend on nth nor on the batch size. Kernels never exit or abort; nodes
 * they cannot run are refused beforehand by scalar_supports_op. */
#ifndef TERN_SCALAR_H
#define TERN_SCALAR_H

#include <stdint.h>
#include <string.h>

#include "tern/plugin.h"
#include "tern/quant.h"

#define TERN_EXPORT __attribute__((visibility("default")))

typedef struct scalar_ctx {
    const tern_host_api *host;
    int n_threads;
    int head_q8;   /* options.head is "q8" */
    int n_head_q8; /* heads quantized (describe) */
} scalar_ctx;

/* Repacked ternary weights (TERN_REPACK_TERNARY): type I8, layout
 * TERN_LAYOUT_BACKEND, one int8 code in {-1,0,+1} per weight, row-major
 * [N][K] (nb[1] = K), the per-tensor scale in tensor->scale, and
 * extra == &scalar_ternary_tag so no other backend's layout is mistaken for
 * it. Float weights (TERN_REPACK_MATMUL) stay as stored in the file: the
 * descriptor is copied and data points at the source; release does nothing. */
extern const char scalar_ternary_tag;
/* The q8 head (options.head "q8", TERN_REPACK_HEAD): a float head quantized
 * to Q8_0 rows, type Q8_0 in file layout, bytes owned by this backend:
 * extra == &scalar_q8_head_tag. */
extern const char scalar_q8_head_tag;
/* This plugin's table: the owner of every tensor it repacks. */
extern const tern_backend_api scalar_api;

tern_status scalar_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen);
void scalar_release(void *ctx, tern_tensor *t);
int scalar_supports_op(void *ctx, const tern_node *node);
size_t scalar_scratch_size(void *ctx, const tern_node *node, int nth);

extern const tern_op_fn scalar_ops[TERN_OP_COUNT];

/* ---- helpers ---- */

/* This thread's share [*lo, *hi) of n items: contiguous chunks. */
static inline void scalar_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    if (nth < 1) nth = 1;
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* Address of flattened row r (over ne[1..3]) of t, through its strides. */
static inline uint8_t *scalar_row(const tern_tensor *t, int64_t r)
{
    int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
    return (uint8_t *)t->data + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
           (size_t)i3 * t->nb[3];
}

static inline int32_t scalar_i32(const tern_tensor *t, int64_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)t->data + (size_t)i * sizeof v, sizeof v);
    return v;
}

/* ---- op kernels (tern_op_fn) ---- */
void scalar_get_rows(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_rms_norm(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_add(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_mul(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_relu_sq(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_silu(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_rope(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_kv_store(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_attention(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_softmax(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_quantize_act(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_matmul_ternary(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void scalar_matmul(void *ctx, const tern_node *node, int ith, int nth, void *scratch);

#endif
