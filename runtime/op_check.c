/* op_check.c - the node gate every host-memory backend shares: types,
 * shapes and parameters of each op as op.h defines them. A backend's
 * supports_op() calls it first and then adds what is its own (the layout of
 * its repacked weights, stride limits of its kernels). Compiled into libtern
 * and into every plugin, like quant.c. */
#include "tern/op.h"

static int is_type(const tern_tensor *t, int type)
{
    return t && t->type == type && t->data && !t->buffer;
}

static int same_shape(const tern_tensor *a, const tern_tensor *b)
{
    for (int i = 0; i < TERN_MAX_DIMS; i++)
        if (a->ne[i] != b->ne[i]) return 0;
    return 1;
}

static int is_f32_like(const tern_tensor *a, const tern_tensor *b)
{
    return is_type(a, TERN_TYPE_F32) && is_type(b, TERN_TYPE_F32) && same_shape(a, b);
}

static int is_cache(const tern_tensor *t)
{
    return is_type(t, TERN_TYPE_F32) || is_type(t, TERN_TYPE_F16);
}

/* The I32 positions or ids hold at least n entries. */
static int has_i32(const tern_tensor *t, int64_t n)
{
    return is_type(t, TERN_TYPE_I32) && tern_tensor_nelements(t) >= n;
}

int tern_op_is_float_weight(int type)
{
    return type == TERN_TYPE_F32 || type == TERN_TYPE_F16 || type == TERN_TYPE_BF16 ||
           type == TERN_TYPE_Q8_0;
}

static int check_get_rows(const tern_node *nd)
{
    const tern_tensor *t = nd->src[0], *d = nd->dst;
    if (!t || !t->data || t->buffer || t->layout != TERN_LAYOUT_FILE) return 0;
    if (!tern_op_is_float_weight(t->type) && t->type != TERN_TYPE_TQ1_0 &&
        t->type != TERN_TYPE_TQ2_0 && t->type != TERN_TYPE_I2_S)
        return 0;
    return is_type(d, TERN_TYPE_F32) && d->ne[0] == t->ne[0] &&
           has_i32(nd->src[1], tern_tensor_nrows(d));
}

static int check_rope(const tern_node *nd)
{
    const tern_tensor *x = nd->src[0];
    int mode = nd->iparams[0], n_dims = nd->iparams[1];
    if (!is_f32_like(x, nd->dst) || (mode != TERN_ROPE_NORMAL && mode != TERN_ROPE_NEOX)) return 0;
    if (n_dims <= 0 || n_dims % 2 || n_dims > x->ne[0]) return 0;
    return has_i32(nd->src[1], tern_tensor_nrows(x) / x->ne[1]);
}

static int check_attention(const tern_node *nd)
{
    const tern_tensor *q = nd->src[0], *k = nd->src[1], *v = nd->src[2];
    if (!is_f32_like(q, nd->dst) || !is_cache(k) || !is_cache(v) || !same_shape(k, v)) return 0;
    if (k->ne[0] != q->ne[0] || k->ne[1] <= 0 || q->ne[1] % k->ne[1] || k->ne[3] != 1) return 0;
    return has_i32(nd->src[3], tern_tensor_nrows(q) / q->ne[1]);
}

static int check_quantize(const tern_node *nd)
{
    const tern_tensor *x = nd->src[0], *d = nd->dst;
    /* K < 2^24 keeps |sum q| and every matmul accumulator inside int32. */
    return is_type(x, TERN_TYPE_F32) && is_type(d, TERN_TYPE_Q8_TOK) && same_shape(x, d) &&
           x->ne[0] < (1 << 24) && d->nb[1] >= tern_row_size(TERN_TYPE_Q8_TOK, x->ne[0]);
}

/* Activations, output and the weight's outer shape; not its layout. */
static int check_matmul(const tern_node *nd, int ternary)
{
    const tern_tensor *x = nd->src[0], *w = nd->src[1], *d = nd->dst;
    if (!is_type(x, ternary ? TERN_TYPE_Q8_TOK : TERN_TYPE_F32) || !is_type(d, TERN_TYPE_F32))
        return 0;
    if (!w || !w->data || w->buffer || w->ne[0] != x->ne[0]) return 0;
    if (d->ne[0] != tern_tensor_nrows(w) || tern_tensor_nrows(d) != tern_tensor_nrows(x)) return 0;
    return !ternary || (x->ne[0] < (1 << 24) && x->nb[1] >= tern_row_size(TERN_TYPE_Q8_TOK, x->ne[0]));
}

int tern_op_check_host(const tern_node *nd)
{
    if (!nd || !nd->dst) return 0;
    switch (nd->op) {
    case TERN_OP_GET_ROWS: return check_get_rows(nd);
    case TERN_OP_RMS_NORM:
        return is_f32_like(nd->src[0], nd->dst) &&
               (!nd->src[1] || (is_type(nd->src[1], TERN_TYPE_F32) &&
                                tern_tensor_nelements(nd->src[1]) >= nd->dst->ne[0]));
    case TERN_OP_ADD:
    case TERN_OP_MUL: return is_f32_like(nd->src[0], nd->dst) && is_f32_like(nd->src[1], nd->dst);
    case TERN_OP_RELU_SQ:
    case TERN_OP_SILU:
    case TERN_OP_SOFTMAX: return is_f32_like(nd->src[0], nd->dst);
    case TERN_OP_ROPE: return check_rope(nd);
    case TERN_OP_KV_STORE: {
        const tern_tensor *x = nd->src[0], *c = nd->dst;
        return is_type(x, TERN_TYPE_F32) && is_cache(c) && c->ne[0] == x->ne[0] &&
               c->ne[1] == x->ne[1] && has_i32(nd->src[1], tern_tensor_nrows(x) / x->ne[1]);
    }
    case TERN_OP_ATTENTION: return check_attention(nd);
    case TERN_OP_QUANTIZE_ACT: return check_quantize(nd);
    case TERN_OP_MATMUL_TERNARY: return check_matmul(nd, 1);
    case TERN_OP_MATMUL: return check_matmul(nd, 0);
    default: return 0; /* an op newer than this build */
    }
}
