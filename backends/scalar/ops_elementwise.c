/* ops_elementwise.c - the row-wise f32 ops: add, mul, relu_sq, silu,
 * softmax. Each thread takes a contiguous chunk of rows; every row is
 * addressed through the tensors' strides, so dst may alias src0. */
#include <math.h>

#include "scalar.h"

typedef float (*unary_fn)(float x);
typedef float (*binary_fn)(float a, float b);

static float f_add(float a, float b) { return a + b; }
static float f_mul(float a, float b) { return a * b; }

static float f_relu_sq(float x)
{
    float r = x > 0.0f ? x : 0.0f;
    return r * r;
}

static float f_silu(float x) { return (float)(x / (1.0 + exp(-(double)x))); }

static void unary(const tern_node *node, int ith, int nth, unary_fn f)
{
    const tern_tensor *a = node->src[0];
    int64_t lo, hi, n = a->ne[0];
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)scalar_row(a, r);
        float *y = (float *)scalar_row(node->dst, r);
        for (int64_t k = 0; k < n; k++) y[k] = f(x[k]);
    }
}

static void binary(const tern_node *node, int ith, int nth, binary_fn f)
{
    const tern_tensor *a = node->src[0], *b = node->src[1];
    int64_t lo, hi, n = a->ne[0];
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)scalar_row(a, r);
        const float *z = (const float *)scalar_row(b, r);
        float *y = (float *)scalar_row(node->dst, r);
        for (int64_t k = 0; k < n; k++) y[k] = f(x[k], z[k]);
    }
}

void scalar_add(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    binary(node, ith, nth, f_add);
}

void scalar_mul(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    binary(node, ith, nth, f_mul);
}

void scalar_relu_sq(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    unary(node, ith, nth, f_relu_sq);
}

void scalar_silu(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    unary(node, ith, nth, f_silu);
}

/* dst = softmax(src0 * fparams[0]) per row: the max is subtracted before
 * exp, and the sum is kept in double. */
void scalar_softmax(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx, (void)scratch;
    const tern_tensor *a = node->src[0];
    double scale = node->fparams[0];
    int64_t lo, hi, n = a->ne[0];
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *x = (const float *)scalar_row(a, r);
        float *y = (float *)scalar_row(node->dst, r);
        double max = -INFINITY, sum = 0.0;
        for (int64_t k = 0; k < n; k++) max = fmax(max, x[k] * scale);
        for (int64_t k = 0; k < n; k++) sum += exp(x[k] * scale - max);
        for (int64_t k = 0; k < n; k++) y[k] = (float)(exp(x[k] * scale - max) / sum);
    }
}
