/* op.c - op names, one table indexed by tern_op. */
#include "tern/op.h"

static const char *const op_names[TERN_OP_COUNT] = {
    [TERN_OP_GET_ROWS] = "get_rows",
    [TERN_OP_RMS_NORM] = "rms_norm",
    [TERN_OP_ADD] = "add",
    [TERN_OP_MUL] = "mul",
    [TERN_OP_RELU_SQ] = "relu_sq",
    [TERN_OP_SILU] = "silu",
    [TERN_OP_ROPE] = "rope",
    [TERN_OP_KV_STORE] = "kv_store",
    [TERN_OP_ATTENTION] = "attention",
    [TERN_OP_SOFTMAX] = "softmax",
    [TERN_OP_QUANTIZE_ACT] = "quantize_act",
    [TERN_OP_MATMUL_TERNARY] = "matmul_ternary",
    [TERN_OP_MATMUL] = "matmul",
};

const char *tern_op_name(int op)
{
    if (op < 0 || op >= TERN_OP_COUNT || !op_names[op]) return "?";
    return op_names[op];
}
