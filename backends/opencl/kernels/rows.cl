/* rows.cl - the row-wise ops: get_rows, the elementwise ops, softmax,
 * rms_norm (alone or fused with the quantize_act that reads it) and
 * quantize_act. Row ops run one work-group of ROW_WG items per row. */

#define T_F32 0
#define T_F16 1
#define T_Q8_0 8
#define T_BF16 30
#define T_TQ1_0 34
#define T_TQ2_0 35
#define T_I2_S 36

/* Trit n of a TQ1_0 byte (a base-3 fraction of 243): *3^n, then *3 >> 8. */
int tq1_trit(uint q, int n)
{
    uint p = n == 0 ? 1 : n == 1 ? 3 : n == 2 ? 9 : n == 3 ? 27 : 81;
    return (int)((((q * p) & 255u) * 3u) >> 8);
}

/* Value k of table row id, decoded as tern_dequantize_rows decodes it. */
float table_value(int type, global const uchar *tb, ulong trow, int id, int K, int k, float scale)
{
    global const uchar *row = tb + (ulong)id * trow;
    if (type == T_F32) return ((global const float *)row)[k];
    if (type == T_F16) return vload_half(k, (global const half *)row);
    if (type == T_BF16) return as_float((uint)((global const ushort *)row)[k] << 16);
    if (type == T_Q8_0) { /* blocks of 34 bytes: an f16 scale, 32 int8 */
        global const uchar *blk = row + (k / 32) * 34;
        return vload_half(0, (global const half *)blk) * (float)((global const char *)blk)[2 + k % 32];
    }
    if (type == T_I2_S) { /* 128-value blocks of 32 bytes over the whole tensor, one scale */
        ulong i = (ulong)id * K + k, blk = i / 128;
        int j = i % 128;
        int code = (tb[blk * 32 + j % 32] >> (6 - 2 * (j / 32))) & 3;
        return (float)(code - 1) * scale;
    }
    int i = k % 256, code; /* TQ2_0: 64 bytes, f16 d; TQ1_0: 48 + 4 bytes, f16 d */
    global const uchar *blk = row + (k / 256) * (type == T_TQ2_0 ? 66 : 54);
    if (type == T_TQ2_0) {
        code = (blk[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
    } else if (i < 160) {
        code = tq1_trit(blk[i % 32], i / 32);
    } else if (i < 240) {
        code = tq1_trit(blk[32 + (i - 160) % 16], (i - 160) / 16);
    } else {
        code = tq1_trit(blk[48 + (i - 240) % 4], (i - 240) / 4);
    }
    return (float)(code - 1) * vload_half(0, (global const half *)(blk + (type == T_TQ2_0 ? 64 : 52)));
}

/* dst row r = table row ids[r], decoded from the file layout of F32, F16,
 * BF16, Q8_0, TQ1_0, TQ2_0 or I2_S (scale: I2_S's tensor scale). Global
 * size (K rounded up, rows). An id outside the table is reported, its row
 * NaN. */
kernel void get_rows(int type, global const uchar *tb, ulong to, ulong trow, int n_rows, float scale,
                     global const uchar *ib, ulong io, global uchar *yb, ulong yo, int K,
                     int node, global int *err)
{
    int k = get_global_id(0), r = get_global_id(1);
    if (k >= K) return;
    int id = CAT(int, ib, io)[r];
    global float *y = AT(float, yb, yo + (ulong)r * (ulong)K * 4);
    if (id < 0 || id >= n_rows) {
        if (k == 0) report_error(err, ERR_ROW_ID, node, id);
        y[k] = NAN;
        return;
    }
    y[k] = table_value(type, tb + to, trow, id, K, k, scale);
}

#define EW_ADD 0
#define EW_MUL 1
#define EW_RELU_SQ 2
#define EW_SILU 3

/* y = a op b (add, mul) or op(a) (relu_sq, silu), n elements. */
kernel void eltwise(int op, global const uchar *ab, ulong ao, global const uchar *bb, ulong bo,
                    global uchar *yb, ulong yo, ulong n)
{
    ulong i = get_global_id(0);
    if (i >= n) return;
    float a = CAT(float, ab, ao)[i], r;
    if (op == EW_ADD) r = a + CAT(float, bb, bo)[i];
    else if (op == EW_MUL) r = a * CAT(float, bb, bo)[i];
    else if (op == EW_RELU_SQ) r = relu_sq(a);
    else r = silu(a);
    AT(float, yb, yo)[i] = r;
}

/* softmax(x * scale) per row, as scalar: the products, the max and the sum
 * in double (acc_t), each output (float)(exp(x s - m) / sum). */
kernel void softmax(global const uchar *xb, ulong xo, global uchar *yb, ulong yo, int n, float scale)
{
    local acc_t red[ROW_WG];
    int r = get_group_id(0), lid = get_local_id(0);
    global const float *x = CAT(float, xb, xo + (ulong)r * (ulong)n * 4);
    global float *y = AT(float, yb, yo + (ulong)r * (ulong)n * 4);
    acc_t s = (acc_t)scale, mx = -INFINITY, sum = 0;
    for (int k = lid; k < n; k += ROW_WG) {
        acc_t v = (acc_t)x[k] * s;
        mx = v > mx ? v : mx;
    }
    mx = wg_max(mx, red);
    for (int k = lid; k < n; k += ROW_WG) sum += exp((acc_t)x[k] * s - mx);
    sum = wg_sum(sum, red);
    for (int k = lid; k < n; k += ROW_WG) y[k] = (float)(exp((acc_t)x[k] * s - mx) / sum);
}

/* RMS norm of row r, and with quant != 0 the quantize_act that reads it
 * (norm_quant_row; the host fuses only one row, or q apart from x). */
kernel void rms_norm_q(global const uchar *xb, ulong xo, global const uchar *wb, ulong wo, int has_w,
                       global uchar *yb, ulong yo, int n, float eps,
                       int quant, global uchar *qb, ulong qo, int qrow)
{
    local acc_t part[NORM_LANES];
    local float redf[ROW_WG];
    local int redi[ROW_WG];
    local float nbuf[NORM_LOCAL + 4];
    int r = get_group_id(0);
    norm_quant_row(CAT(float, xb, xo + (ulong)r * (ulong)n * 4), CAT(float, wb, wo), has_w,
                   AT(float, yb, yo + (ulong)r * (ulong)n * 4), n, eps, quant, qb + qo + (ulong)r * (ulong)qrow,
                   qrow, part, redf, redi, nbuf, NORM_LOCAL);
}

/* Per-token absmax int8 of row r (TERN_OP_QUANTIZE_ACT). */
kernel void quantize_act(global const uchar *xb, ulong xo, int K, global uchar *qb, ulong qo, int qrow)
{
    local float redf[ROW_WG];
    local int redi[ROW_WG];
    int r = get_group_id(0), lid = get_local_id(0);
    global const float *x = CAT(float, xb, xo + (ulong)r * (ulong)K * 4);
    float amax = 1e-5f;
    for (int k = lid; k < K; k += ROW_WG) {
        float a = fabs(x[k]);
        amax = a > amax ? a : amax;
    }
    amax = wg_maxf(amax, redf);
    quantize_row(x, K, amax, qb + qo + (ulong)r * (ulong)qrow, qrow, redi, 1);
}
