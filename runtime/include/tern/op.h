/* tern/op.h - the op set: one enum, one node record, and for each op the
 * exact meaning of its sources and parameters. Backends implement ops over
 * these nodes; the scalar backend is the definition.
 *
 * Shapes use ggml order (ne[0] innermost). "rows" means all of ne[1..3].
 * Every f32 tensor below is contiguous. n_tok is the number of tokens in the
 * batch being evaluated. */
#ifndef TERN_OP_H
#define TERN_OP_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_op {
    /* dst[r] = dequant(src0 row src1[r]).  src0: table [ne0, n_rows] of F32,
     * F16, BF16, Q8_0, TQ1_0, TQ2_0 or I2_S (file layout); src1: I32 ids
     * [n]; dst: F32 [ne0, n]. */
    TERN_OP_GET_ROWS = 0,
    /* dst = src0 / sqrt(mean(src0^2) + eps) * src1, per row.  src1: F32 [ne0]
     * or NULL (no weight); fparams[0] = eps.  Rounding as the PyTorch
     * reference rounds: var = f32(sum of squares / n) (the sum itself
     * exact or nearly), r = 1/sqrtf(var + eps), y = f32(x * r) * w. */
    TERN_OP_RMS_NORM,
    /* dst = src0 + src1, elementwise, same shapes. */
    TERN_OP_ADD,
    /* dst = src0 * src1, elementwise, same shapes. */
    TERN_OP_MUL,
    /* dst = max(src0, 0)^2 (BitNet b1.58 2B4T FFN gate). */
    TERN_OP_RELU_SQ,
    /* dst = src0 / (1 + exp(-src0)). */
    TERN_OP_SILU,
    /* Rotary embedding.  src0: F32 [head_dim, n_head, n_tok]; src1: I32
     * positions [n_tok]; iparams[0] = mode (TERN_ROPE_NORMAL pairs (2i, 2i+1),
     * TERN_ROPE_NEOX pairs (i, i + n_dims/2)); iparams[1] = n_dims (the first
     * n_dims of each head rotate); fparams[0] = freq_base; fparams[1] =
     * freq_scale.  angle = pos * freq_scale * freq_base^(-2i/n_dims), formed
     * in f32 as the reference does (inv_freq = 1/powf(base, 2i/n_dims), one
     * f32 product with the position); cos/sin of that f32 angle.  These
     * roundings matter: they decide int8 rounding ties downstream. */
    TERN_OP_ROPE,
    /* Writes keys or values into a cache.  src0: F32 [head_dim, n_kv_head,
     * n_tok]; src1: I32 positions [n_tok]; dst: the cache, F32 or F16
     * [head_dim, n_kv_head, n_ctx], row src1[t] is overwritten. */
    TERN_OP_KV_STORE,
    /* Causal attention with GQA over a cache.  src0: q F32 [head_dim,
     * n_head, n_tok]; src1: K cache, src2: V cache (F32 or F16, [head_dim,
     * n_kv_head, n_ctx]); src3: I32 positions [n_tok].  Token t attends cache
     * rows 0..pos[t]; head h uses kv head h / (n_head / n_kv_head).
     * fparams[0] = score scale.  dst: F32 [head_dim, n_head, n_tok]. */
    TERN_OP_ATTENTION,
    /* dst = softmax(src0 * fparams[0]) per row (max subtracted first). */
    TERN_OP_SOFTMAX,
    /* Per-token absmax int8: src0 F32 [K, n_tok] -> dst Q8_TOK [K, n_tok]
     * (see tern_q8tok_header). */
    TERN_OP_QUANTIZE_ACT,
    /* Ternary matmul.  src0: Q8_TOK [K, n_tok]; src1: ternary weight [K, N]
     * repacked by this backend, scale in src1->scale; dst F32 [N, n_tok]:
     * acc = sum_k q[k] * w[n][k] (exact int32), dst = (float)acc / inv * scale. */
    TERN_OP_MATMUL_TERNARY,
    /* Float matmul.  src0: F32 [K, n_tok]; src1: weight [K, N] of F32, F16,
     * BF16 or Q8_0 (as repacked by this backend); dst F32 [N, n_tok]:
     * dst[t][n] = sum_k src0[t][k] * w[n][k].  Q8_0 is an integer path, as
     * in llama.cpp: each token's activations are quantized per block of 32
     * (tern_quantize_act_q8_0) and dst = tern_dot_q8_0 (quant.h) exactly,
     * bit for bit on every backend. */
    TERN_OP_MATMUL,
    TERN_OP_COUNT
} tern_op;

enum { TERN_ROPE_NORMAL = 0, TERN_ROPE_NEOX = 2 };

/* Bumped whenever what an op means changes (a plugin written for another
 * meaning is refused). 2: kernels report bad ids and positions through the
 * evaluation's error slot instead of writing NaN rows. */
#define TERN_OP_SEMANTICS_VERSION 2u

#define TERN_NODE_MAX_SRC 4
#define TERN_NODE_MAX_PARAMS 4

struct tern_node_slot; /* the executor's; opaque to backends */

/* One op application. The executor owns nodes; backends only read them
 * (a device backend may copy one into its queue, error slot included). */
typedef struct tern_node {
    int32_t op;                                /* enum tern_op */
    tern_tensor *dst;
    const tern_tensor *src[TERN_NODE_MAX_SRC]; /* unused slots NULL */
    int32_t iparams[TERN_NODE_MAX_PARAMS];
    float fparams[TERN_NODE_MAX_PARAMS];
    struct tern_node_slot *error; /* for host->node_error(); NULL outside the executor */
} tern_node;

/* The gate host-memory backends share: 1 when the node's types, shapes and
 * parameters are as this header defines them (for the matmuls: the
 * activations, the output and the weight's shape, not the weight's layout,
 * which is the backend's own). */
int tern_op_check_host(const tern_node *node);
/* F32, F16, BF16 or Q8_0: the float weight types of TERN_OP_MATMUL. */
int tern_op_is_float_weight(int type);

/* Name of an op ("matmul_ternary"); "?" when out of range. */
const char *tern_op_name(int op);

#ifdef __cplusplus
}
#endif
#endif
