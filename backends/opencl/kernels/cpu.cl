/* cpu.cl - matmuls for CPU devices (PoCL): one work-item per output row,
 * plain loops, no local memory or barriers, which a CPU OpenCL compiler
 * turns into good code where the lane-per-k GPU kernels crawl. Chosen for
 * CL_DEVICE_TYPE_CPU (TERN_OPENCL_VARIANT=gpu|cpu overrides). Results:
 * the ternary and Q8_0 ones are bit-identical to the GPU kernels (exact
 * integer dots, the same final roundings); fmv_cpu sums each output in an
 * order of its own (eight chains), which does not depend on the batch
 * either, but is not the GPU kernel's. */

/* Ternary: row n for every token; 16 codes times 16 activations as one
 * vector product (the codes of word w in byte order, opencl.h). */
kernel void tmv_cpu(global const uchar *xb, ulong xo, int xrow, int T, int ku, global const uint *w, int N,
                    float scale, global uchar *yb, ulong yo)
{
    int n = get_global_id(0);
    if (n >= N) return;
    global const uint *wr = w + (ulong)n * ku;
    for (int t = 0; t < T; t++) {
        global const uchar *hdr = xb + xo + (ulong)t * xrow;
        global const uint4 *x = (global const uint4 *)(hdr + 64);
        int16 acc16 = 0;
        for (int u = 0; u < ku; u++) {
            uint4 cw = ((uint4)(wr[u]) >> (uint4)(0, 2, 4, 6)) & 0x03030303u;
            acc16 += convert_int16(convert_short16(as_uchar16(cw)) * convert_short16(as_char16(x[u])));
        }
        int8 a8 = acc16.lo + acc16.hi;
        int4 a4 = a8.lo + a8.hi;
        int acc = a4.x + a4.y + a4.z + a4.w - ((global const int *)hdr)[1];
        AT(float, yb, yo)[(ulong)t * N + n] = div_rn((float)acc, ((global const float *)hdr)[0]) * scale;
    }
}

/* Float weights: row n for every token: eight fma chains over k = 8i + j,
 * then the tail in order, then the chains added in a fixed order. */
kernel void fmv_cpu(int type, global const uchar *xb, ulong xo, int K, int T, global const uchar *wb, ulong wo,
                    ulong wrow, int N, global uchar *yb, ulong yo)
{
    int n = get_global_id(0);
    if (n >= N) return;
    global const uchar *row = wb + wo + (ulong)n * wrow;
    int K8 = K / 8 * 8;
    for (int t = 0; t < T; t++) {
        global const float *x = CAT(float, xb, xo) + (ulong)t * K;
        float8 acc8 = 0.0f;
        for (int k = 0; k < K8; k += 8) acc8 = fma(wload8(type, row, k, K, 0), vload8(k / 8, x), acc8);
        float4 a4 = acc8.lo + acc8.hi;
        float acc = (a4.x + a4.y) + (a4.z + a4.w);
        for (int k = K8; k < K; k += 4) {
            float4 a = wload4(type, row, k, K), v = xload4(x, k, K);
            acc = fma(a.w, v.w, fma(a.z, v.z, fma(a.y, v.y, fma(a.x, v.x, acc))));
        }
        AT(float, yb, yo)[(ulong)t * N + n] = acc;
    }
}

/* Q8_0 (split layout, activations from q8act): row n for every token,
 * tern_dot_q8_0's chain. The GPU runs it too. */
kernel void q8mv(global const uchar *qa, int K, int T, global const uchar *wb, ulong wo, ulong d_off, int N,
                     global uchar *yb, ulong yo)
{
    int n = get_global_id(0);
    if (n >= N) return;
    int nb = K / 32;
    global const uint4 *wq = (global const uint4 *)(wb + wo + (ulong)n * K);
    global const half *dw = (global const half *)(wb + wo + d_off) + (ulong)n * nb;
    global const float *dx = (global const float *)(qa + (ulong)T * K);
    for (int t = 0; t < T; t++) {
        global const uint4 *aq = (global const uint4 *)(qa + (ulong)t * K);
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            uint4 w0 = wq[2 * b], w1 = wq[2 * b + 1], a0 = aq[2 * b], a1 = aq[2 * b + 1];
            int dot = dots4(w0.s0, a0.s0, 0);
            dot = dots4(w0.s1, a0.s1, dot);
            dot = dots4(w0.s2, a0.s2, dot);
            dot = dots4(w0.s3, a0.s3, dot);
            dot = dots4(w1.s0, a1.s0, dot);
            dot = dots4(w1.s1, a1.s1, dot);
            dot = dots4(w1.s2, a1.s2, dot);
            dot = dots4(w1.s3, a1.s3, dot);
            acc = fma((float)dot, vload_half(b, dw) * dx[(ulong)t * nb + b], acc);
        }
        AT(float, yb, yo)[(ulong)t * N + n] = acc;
    }
}
