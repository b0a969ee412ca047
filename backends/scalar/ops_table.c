/* ops_table.c - the scalar op table, which nodes it accepts, and the
 * scratch its kernels need.
 *
 * scalar_supports_op is the gate that lets kernels trust their node: it
 * checks types, layouts and shape agreement, so a kernel never meets a
 * combination it cannot do. Data-dependent limits (an id outside a table,
 * a position outside the cache) are handled in the kernels. */
#include "scalar.h"

const tern_op_fn scalar_ops[TERN_OP_COUNT] = {
    [TERN_OP_GET_ROWS] = scalar_get_rows,
    [TERN_OP_RMS_NORM] = scalar_rms_norm,
    [TERN_OP_ADD] = scalar_add,
    [TERN_OP_MUL] = scalar_mul,
    [TERN_OP_RELU_SQ] = scalar_relu_sq,
    [TERN_OP_SILU] = scalar_silu,
    [TERN_OP_ROPE] = scalar_rope,
    [TERN_OP_KV_STORE] = scalar_kv_store,
    [TERN_OP_ATTENTION] = scalar_attention,
    [TERN_OP_SOFTMAX] = scalar_softmax,
    [TERN_OP_QUANTIZE_ACT] = scalar_quantize_act,
    [TERN_OP_MATMUL_TERNARY] = scalar_matmul_ternary,
    [TERN_OP_MATMUL] = scalar_matmul,
};

/* Weights: the int8 codes this backend repacked (its own: owner), or a
 * float type as stored. */
int scalar_supports_op(void *ctx, const tern_node *nd)
{
    (void)ctx;
    if (!tern_op_check_host(nd)) return 0;
    const tern_tensor *w = nd->src[1];
    if (nd->op == TERN_OP_MATMUL_TERNARY)
        return w->layout == TERN_LAYOUT_BACKEND && w->owner == &scalar_api && w->extra == &scalar_ternary_tag;
    if (nd->op == TERN_OP_MATMUL)
        return w->layout == TERN_LAYOUT_FILE && (!w->extra || w->extra == &scalar_q8_head_tag) &&
               tern_op_is_float_weight(w->type);
    return 1;
}

/* Attention keeps one score per cache row (double); matmul one decoded
 * weight row (K floats). Rounded up to keep the next thread's scratch
 * 64-byte aligned if the caller packs them. */
size_t scalar_scratch_size(void *ctx, const tern_node *nd, int nth)
{
    (void)ctx, (void)nth;
    size_t n = 0;
    if (nd->op == TERN_OP_ATTENTION && nd->src[1]) n = (size_t)nd->src[1]->ne[2] * sizeof(double);
    if (nd->op == TERN_OP_MATMUL && nd->src[0]) /* a decoded weight row, or Q8_0 codes + scales */
        n = (size_t)nd->src[0]->ne[0] * sizeof(float) + 64;
    return (n + 63) / 64 * 64;
}
