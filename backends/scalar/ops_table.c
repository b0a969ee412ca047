/* ops_table.c - placeholder op table until the scalar ops land. */
#include <stdio.h>

#include "scalar.h"

const tern_op_fn scalar_ops[TERN_OP_COUNT] = {0};

tern_status scalar_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen)
{
    (void)ctx; (void)src; (void)purpose; (void)dst;
    snprintf(err, errlen, "not yet");
    return TERN_EUNSUPPORTED;
}
void scalar_release(void *ctx, tern_tensor *t) { (void)ctx; (void)t; }
int scalar_supports_op(void *ctx, const tern_node *node) { (void)ctx; (void)node; return 1; }
size_t scalar_scratch_size(void *ctx, const tern_node *node, int nth) { (void)ctx; (void)node; (void)nth; return 0; }
