/* common.cl - what every kernel file shares; concatenated first.
 *
 * Built as OpenCL C 1.2. Memory: every tensor is a (buffer, byte offset)
 * pair; AT() makes a typed pointer of it. Numerics follow the scalar
 * backend step by step:
 *   - no contraction: a*b+c is two roundings, as scalar's C (-std=c11)
 *     computes it; fma() is written out where a kernel wants it;
 *   - TERN_FP64 (the device has cl_khr_fp64): sums kept in double where
 *     scalar keeps them in double (acc_t), and f32 divisions and square
 *     roots rounded correctly through double (a double result rounded to
 *     f32 is the correctly rounded f32 result for / and sqrt);
 *   - without fp64 the build adds -cl-fp32-correctly-rounded-divide-sqrt
 *     when the device has it, and the sums are f32.
 * The host passes the work-group sizes as -D options (opencl.h).
 * No barrier is ever under a condition or after an early return, uniform
 * or not: PoCL's work-group compilation mishandles that. */
#pragma OPENCL FP_CONTRACT OFF

#ifdef TERN_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc_t;
#else
typedef float acc_t;
#endif

#define AT(T, base, off) ((global T *)((global uchar *)(base) + (off)))
#define CAT(T, base, off) ((global const T *)((global const uchar *)(base) + (off)))

/* Kernel errors: err[0] = code (first wins), err[1] = the node's index in
 * the queue, err[2] = the bad value. */
#define ERR_ROW_ID 1
#define ERR_POSITION 2

void report_error(global int *err, int code, int node, int value)
{
    if (atomic_cmpxchg(err, 0, code) == 0) {
        err[1] = node;
        err[2] = value;
    }
}

float div_rn(float a, float b)
{
#ifdef TERN_FP64
    return (float)((double)a / (double)b);
#else
    return a / b;
#endif
}

/* 1.0f / sqrtf(v), each of the two steps correctly rounded, as C does. */
float rsqrt_rn(float v)
{
#ifdef TERN_FP64
    float s = (float)sqrt((double)v);
    return (float)(1.0 / (double)s);
#else
    return 1.0f / sqrt(v);
#endif
}

/* ---- work-group reductions (size n, a power of two; all items call them
 * and all get the result) ---- */

acc_t wg_sum(acc_t v, local acc_t *red)
{
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc_t r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* max with `a > b ? a : b`: a NaN never wins (fmax's behaviour). */
acc_t wg_max(acc_t v, local acc_t *red)
{
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s && red[lid + s] > red[lid]) red[lid] = red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc_t r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

float wg_maxf(float v, local float *red)
{
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s && red[lid + s] > red[lid]) red[lid] = red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

int wg_sumi(int v, local int *red)
{
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    int r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* ---- per-token int8 activations (tern_q8tok_header) ----
 * One Q8_TOK row from K floats whose absmax (floored at 1e-5) is amax:
 * inv = 127 / amax, q = clamp(rint(x * inv), -128, 127) (NaN -> 0), then
 * the header (inv, sum, zero pad) and zero padding to row_bytes. */
void quantize_row(global const float *x, int K, float amax, global uchar *row, int row_bytes,
                  local int *redi, int store)
{
    int lid = get_local_id(0), n = get_local_size(0);
    float inv = div_rn(127.0f, amax);
    global char *q = (global char *)(row + 64);
    int sum = 0;
    for (int k = lid; store && k < row_bytes - 64; k += n) {
        int v = 0;
        if (k < K) {
            float f = rint(x[k] * inv);
            v = isnan(f) ? 0 : f > 127.0f ? 127 : f < -128.0f ? -128 : (int)f;
        }
        q[k] = (char)v;
        sum += v;
    }
    sum = wg_sumi(sum, redi); /* every item, store or not: barriers are never conditional */
    if (store && lid < 16) ((global int *)row)[lid] = lid == 0 ? as_int(inv) : lid == 1 ? sum : 0;
}

/* ---- elementwise functions as op.h defines them ---- */

float relu_sq(float x)
{
    float r = x > 0.0f ? x : 0.0f;
    return r * r;
}

float silu(float x)
{
#ifdef TERN_FP64
    return (float)((double)x / (1.0 + exp(-(double)x)));
#else
    return x / (1.0f + exp(-x));
#endif
}

/* A KV cache value: F16 (f16 != 0) or F32 element i of the bytes at p. */
acc_t cache_at(global const uchar *p, int f16, ulong i)
{
    if (f16) return (acc_t)vload_half(i, (global const half *)p);
    return (acc_t)((global const float *)p)[i];
}

void cache_put(global uchar *p, int f16, ulong i, float v)
{
    if (f16) vstore_half_rte(v, i, (global half *)p);
    else ((global float *)p)[i] = v;
}
