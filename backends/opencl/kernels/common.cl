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

/* a / b correctly rounded: the device's own division under
 * -cl-fp32-correctly-rounded-divide-sqrt (TERN_CR_DIV), else through
 * double (NVIDIA's compiler turns the double form back into its f32
 * approximation, so the flag comes first). */
float div_rn(float a, float b)
{
#if defined(TERN_FP64) && !defined(TERN_CR_DIV)
    return (float)((double)a / (double)b);
#else
    return a / b;
#endif
}

/* 1.0f / sqrtf(v), each of the two steps correctly rounded, as C does. */
float rsqrt_rn(float v)
{
#if defined(TERN_FP64) && !defined(TERN_CR_DIV)
    float s = (float)sqrt((double)v);
    return (float)(1.0 / (double)s);
#else
    return 1.0f / sqrt(v);
#endif
}

/* ---- work-group reductions in two levels and a fixed order: the values
 * of n items (n a power of two, 16 <= n) in local memory; 16 items each
 * add n/16 of them in order, then every item adds the 16 sums in order.
 * Every item gets the same bits, after 32 dependent local reads rather
 * than n (every item reading all n cost ~2 us at 128 on a GPU) or log2(n)
 * barrier steps. ---- */
#define RED_LEVEL(T, OP)                                                      \
    int lid = get_local_id(0), n = get_local_size(0), c = n / 16;             \
    red[lid] = v;                                                             \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    T p = 0;                                                                  \
    if (lid < 16) {                                                           \
        p = red[lid * c];                                                     \
        for (int i = 1; i < c; i++) p = OP(p, red[lid * c + i]);              \
    }                                                                         \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    if (lid < 16) red[lid] = p;                                               \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    T r = red[0];                                                             \
    for (int i = 1; i < 16; i++) r = OP(r, red[i]);                           \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    return r;

#define ADD(a, b) ((a) + (b))
/* max with `a > b ? a : b` order: a NaN never wins (fmax's behaviour) */
#define MAX(a, b) ((b) > (a) ? (b) : (a))

acc_t wg_sum(acc_t v, local acc_t *red) { RED_LEVEL(acc_t, ADD) }
acc_t wg_max(acc_t v, local acc_t *red) { RED_LEVEL(acc_t, MAX) }
float wg_maxf(float v, local float *red) { RED_LEVEL(float, MAX) }
int wg_sumi(int v, local int *red) { RED_LEVEL(int, ADD) }

/* Sum of squares of a row in a fixed order whatever the work-group size,
 * so every kernel that norms a row (rms_norm_q, the fused tails) gets the
 * same bits: NORM_LANES partials, partial l over k = l, l + NORM_LANES, ...
 * in order, then sums of eight partials, those in order. */
#define NORM_LANES 128
#define ROW_SS(NAME, SPACE)                                                                          \
    acc_t NAME(SPACE const float *x, int n, local acc_t *part)                                     \
    {                                                                                              \
        int lid = get_local_id(0), wg = get_local_size(0);                                         \
        for (int l = lid; l < NORM_LANES; l += wg) {                                               \
            acc_t s = 0;                                                                           \
            int k = l;                                                                             \
            for (; k + 7 * NORM_LANES < n; k += 8 * NORM_LANES) { /* 8 loads in flight, sums in order */ \
                float v[8];                                                                        \
                _Pragma("unroll") for (int i = 0; i < 8; i++) v[i] = x[k + i * NORM_LANES];         \
                _Pragma("unroll") for (int i = 0; i < 8; i++) s += (acc_t)v[i] * (acc_t)v[i];       \
            }                                                                                      \
            for (; k < n; k += NORM_LANES) s += (acc_t)x[k] * (acc_t)x[k];                         \
            part[l] = s;                                                                           \
        }                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        /* sixteen sums of eight partials side by side (each into its first \
         * partial's place), then every item adds those in order */                               \
        for (int b = lid; b < 16; b += wg) {                                                       \
            acc_t p = part[8 * b];                                                                 \
            for (int i = 1; i < 8; i++) p += part[8 * b + i];                                      \
            part[8 * b] = p;                                                                       \
        }                                                                                          \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        acc_t ss = 0;                                                                              \
        for (int b = 0; b < 16; b++) ss += part[8 * b];                                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                              \
        return ss;                                                                                 \
    }
ROW_SS(row_ss, global)
ROW_SS(row_ss_l, local)

/* ---- per-token int8 activations (tern_q8tok_header) ----
 * One Q8_TOK row from K floats whose absmax (floored at 1e-5) is amax:
 * inv = 127 / amax, q = clamp(rint(x * inv), -128, 127) (NaN -> 0), then
 * the header (inv, sum, zero pad) and zero padding to row_bytes. */
#define QUANTIZE_ROW(NAME, SPACE)                                                                    \
    void NAME(SPACE const float *x, int K, float amax, global uchar *row, int row_bytes, local int *redi,   \
              int store)                                                                                 \
    {                                                                                                    \
        int lid = get_local_id(0), n = get_local_size(0);                                                \
        float inv = div_rn(127.0f, amax);                                                                \
        global char *q = (global char *)(row + 64);                                                      \
        int sum = 0;                                                                                     \
        /* eight values loaded, then stored: x and q may alias for the compiler */                        \
        for (int k0 = lid; store && k0 < row_bytes - 64; k0 += 8 * n) {                                  \
            int v[8];                                                                                    \
            _Pragma("unroll") for (int i = 0; i < 8; i++) {                                              \
                int k = k0 + i * n;                                                                      \
                v[i] = 0;                                                                                \
                if (k < K) {                                                                             \
                    float f = rint(x[k] * inv);                                                          \
                    v[i] = isnan(f) ? 0 : f > 127.0f ? 127 : f < -128.0f ? -128 : (int)f;                \
                }                                                                                        \
            }                                                                                            \
            _Pragma("unroll") for (int i = 0; i < 8; i++) {                                              \
                if (k0 + i * n >= row_bytes - 64) break;                                                 \
                q[k0 + i * n] = (char)v[i];                                                              \
                sum += v[i];                                                                             \
            }                                                                                            \
        }                                                                                                \
        sum = wg_sumi(sum, redi); /* every item, store or not: barriers are never conditional */         \
        if (store && lid < 16) ((global int *)row)[lid] = lid == 0 ? as_int(inv) : lid == 1 ? sum : 0;  \
    }
QUANTIZE_ROW(quantize_row, global)
QUANTIZE_ROW(quantize_row_l, local)

/* The RMS norm of row x (n values) into y, then with quant the Q8_TOK row
 * q of y: TERN_OP_RMS_NORM then TERN_OP_QUANTIZE_ACT, step for step, for
 * rms_norm_q and the fused tails of tmv and attention. var = f32(sum x^2 /
 * n) (row_ss), s = 1/sqrtf(var + eps), y = f32(x s) * w. Every item of the
 * group calls it (it holds barriers).
 * A row of up to buf_len values is read from global memory once, four
 * values a load, into buf (local), and normed and quantized there: a
 * group of 128 items over a 6912-wide row otherwise waits on about twenty
 * dependent rounds of global loads (x for the sum, x and w for y, y for q).
 * Longer rows take that path: y is read back after a global barrier, so q
 * may take the place of x. Both give the same bits (the same operations in
 * the same order; only where the operands wait differs). */
void norm_quant_row(global const float *x, global const float *w, int has_w, global float *y, int n,
                    float eps, int quant, global uchar *q, int qrow, local acc_t *part,
                    local float *redf, local int *redi, local float *buf, int buf_len)
{
    int lid = get_local_id(0), wg = get_local_size(0), n4 = n / 4;
    float amax = 1e-5f;
    if (n <= buf_len) {
#pragma unroll 8
        for (int k = lid; k < n4; k += wg) vstore4(vload4(k, x), k, buf);
        for (int k = 4 * n4 + lid; k < n; k += wg) buf[k] = x[k];
        barrier(CLK_LOCAL_MEM_FENCE);
        acc_t ss = row_ss_l(buf, n, part);
        float s = rsqrt_rn((float)(ss / (acc_t)n) + eps);
        /* y into buf first, then out to global memory: a load of w after
         * a store to y (both global) would wait for the store */
#pragma unroll 4
        for (int k = lid; k < n4; k += wg) {
            float4 v = vload4(k, buf) * s;
            if (has_w) v = v * vload4(k, w);
            vstore4(v, k, buf);
            float4 a = fabs(v);
            amax = a.x > amax ? a.x : amax;
            amax = a.y > amax ? a.y : amax;
            amax = a.z > amax ? a.z : amax;
            amax = a.w > amax ? a.w : amax;
        }
        for (int k = 4 * n4 + lid; k < n; k += wg) {
            float v = buf[k] * s;
            if (has_w) v = v * w[k];
            buf[k] = v;
            float a = fabs(v);
            amax = a > amax ? a : amax;
        }
        /* each item stores what it wrote: no barrier needed before */
#pragma unroll 4
        for (int k = lid; k < n4; k += wg) vstore4(vload4(k, buf), k, y);
        for (int k = 4 * n4 + lid; k < n; k += wg) y[k] = buf[k];
        barrier(CLK_LOCAL_MEM_FENCE);
        amax = wg_maxf(amax, redf);
        quantize_row_l(buf, n, amax, q, qrow, redi, quant);
        return;
    }
    acc_t ss = row_ss(x, n, part);
    float var = (float)(ss / (acc_t)n);
    float s = rsqrt_rn(var + eps);
    for (int k0 = lid; k0 < n; k0 += 8 * wg) { /* eight loads, then eight stores (as above) */
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int k = k0 + i * wg;
            v[i] = k < n ? x[k] * s : 0.0f;
            if (has_w && k < n) v[i] = v[i] * w[k];
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (k0 + i * wg >= n) break;
            y[k0 + i * wg] = v[i];
            float a = fabs(v[i]);
            amax = a > amax ? a : amax;
        }
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
    amax = wg_maxf(amax, redf);
    quantize_row(y, n, amax, q, qrow, redi, quant);
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

/* Eight halves (f16 bits) to f32, exactly. On NVIDIA (TERN_NV_DP4A: its
 * inline PTX builds) by the hardware conversion, two a word, instead of
 * the bit arithmetic below (about six integer operations a half): the
 * 2B4T head's GEMV 287 -> 257 us on an H100. */
#ifdef TERN_NV_DP4A
float2 h2f(uint w)
{
    float a, b;
    asm("{ .reg .b16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }" : "=f"(a), "=f"(b) : "r"(w));
    return (float2)(a, b);
}

float8 h8f(uint4 r) { return (float8)(h2f(r.x), h2f(r.y), h2f(r.z), h2f(r.w)); }
#else
/* In registers: the magnitude moved into an f32's fields and scaled by
 * 2^112 (subnormals too), inf and NaN set apart, then the sign. */
float8 h8f(uint4 r)
{
    uint8 h = convert_uint8(as_ushort8(r)), mag = (h & 0x7fffu) << 13;
    float8 f = as_float8(mag) * 0x1p112f;
    f = select(f, as_float8(mag | 0x7f800000u), (h & 0x7c00u) == 0x7c00u);
    return as_float8(as_uint8(f) | ((h & 0x8000u) << 16));
}
#endif

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
