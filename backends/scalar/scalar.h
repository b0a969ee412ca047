/* scalar.h - private to the scalar backend: its context and op kernels. */
#ifndef TERN_SCALAR_H
#define TERN_SCALAR_H

#include "tern/backend.h"
#include "tern/quant.h"

#define TERN_EXPORT __attribute__((visibility("default")))

typedef struct scalar_ctx {
    const tern_host_api *host;
    int n_threads;
} scalar_ctx;

/* Repacked ternary weights: one int8 code per weight, row-major [N][K],
 * and the per-tensor scale in tensor->scale. Float weights stay as stored. */
tern_status scalar_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen);
void scalar_release(void *ctx, tern_tensor *t);
int scalar_supports_op(void *ctx, const tern_node *node);
size_t scalar_scratch_size(void *ctx, const tern_node *node, int nth);

extern const tern_op_fn scalar_ops[TERN_OP_COUNT];

#endif
