/* matmul.cl - the matmuls.
 *
 * Ternary (opencl.h has the 2-bit layout): tmv for up to MV_TOK tokens (a
 * GEMV per group of MV_ROWS rows, 32 lanes a row, with fused epilogues:
 * several matrices over one input, a residual add, gate/up + activation +
 * mul), tmm for more (64 x 64 tiles in local memory, dp4a on codes and
 * int8). Both give scalar's bits: the integer dot is exact, then
 * (float)acc / inv * scale with a correctly rounded division.
 * Float weights (F32/F16/BF16): fmv, every output summed in one fixed
 * order whatever the batch: lane l takes k = 4(l + 32i) .. +3 with an f32
 * fma chain, then lanes 0..31 are added in order.
 * Q8_0: q8act quantizes the activations per block of 32; q8mv (cpu.cl, one
 * row per item on either kind of device: each item reads whole 32-byte
 * blocks, full memory sectors) runs tern_dot_q8_0's fma chain. */

/* acc + the dot of four int8 pairs (dots4) or of four codes 0..2 with
 * four int8 (dotc4). On NVIDIA (TERN_NV_DP4A, chosen when a test build of
 * the inline PTX succeeds) both are one dp4a. */
#ifdef TERN_NV_DP4A
int dots4(uint c, uint a, int acc)
{
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(c), "r"(a), "r"(acc));
    return d;
}
#define dotc4 dots4
#else
int dots4(uint c, uint a, int acc)
{
    char4 av = as_char4(a), cv = as_char4(c);
    return acc + (int)cv.x * av.x + (int)cv.y * av.y + (int)cv.z * av.z + (int)cv.w * av.w;
}
int dotc4(uint c, uint a, int acc)
{
    char4 av = as_char4(a);
    uchar4 cv = as_uchar4(c);
    return acc + (int)cv.x * av.x + (int)cv.y * av.y + (int)cv.z * av.z + (int)cv.w * av.w;
}
#endif

/* sum over 16 values of code (w + 1) times activation: word w holds k =
 * 4s + b in bits 8b + 2s; a.s[s] holds activation bytes 4s .. 4s + 3. */
int dot16(uint w, uint4 a, int acc)
{
    acc = dotc4(w & 0x03030303u, a.s0, acc);
    acc = dotc4((w >> 2) & 0x03030303u, a.s1, acc);
    acc = dotc4((w >> 4) & 0x03030303u, a.s2, acc);
    return dotc4((w >> 6) & 0x03030303u, a.s3, acc);
}

#define MV_LANES 32
#define MV_WARPS (MV_WG / MV_LANES)

/* Ternary GEMV. mode 0: up to three matrices over the same activations
 * (group g covers MV_ROWS rows of the matrix its index falls in, two rows
 * a lane-group); mode 1: matrix 0 and z = addend + y; mode 2: gate (0) and
 * up (1) rows n together, g = act(y0) into gb, z = g * y1. Each output:
 * (float)(sum c*q - sum q) / inv * scale. Lane l reads the 16-byte words
 * l + 32i of its rows (64 weights each; rows are ku words, ku % 4 == 0).
 * wmask bits (y0, y1, y2, z, g) say which outputs are stored: the host
 * leaves out those it proved dead, whose bytes a later output of the same
 * launch may reuse.
 * The tail: every group fences its writes and counts itself in ctrs[ctr];
 * the last one to arrive (all the others are done, reads of x included)
 * resets the count and, with tail bit 0 (mode 1), writes z = addend + y0
 * (so z may take x's bytes), then with bit 1 the RMS norm (weight nw) of
 * z into yn and its quantize_act into q, T rows each, in that order.
 * Plain loads are enough there, as in CUDA's last-block reductions: the
 * writers fenced before counting, and the last group never read those
 * bytes earlier in the launch, so its cache holds no stale copy of them
 * (volatile loads, which cannot be overlapped, made the tail 20-40 us).
 * Mode 0 also runs the q and k rotations and the K and V cache stores of a
 * decode step (rope bits, for matrix m: m, rotated (NEOX over the whole
 * head: pairs j and j + hd / 2); 3 + m, the rotated rows stored into r_m;
 * 6 + m, the rows stored into cache c_m at the tokens' positions, F16 with
 * bit 9 + m): a lane-group then makes the two rows of one rotation pair,
 * so lane t has both values of token t in registers; the rotation is
 * rope_pair's, as the rope kernel's. A position outside [0, n_ctx) is
 * reported for node_m and that row is not stored. */
/* ntok: the tokens the entry point is built for (MV_TOK, or 1 for a decode
 * step; a constant once inlined), T <= ntok; part: the lanes' sums
 * [warp][row][token][lane]; res: the rows' values [warp][row][token] */
#define PART(w, r, t, i) part[(((w) * 2 + (r)) * ntok + (t)) * MV_LANES + (i)]
#define RES(w, r, t) res[((w) * 2 + (r)) * ntok + (t)]
void tmv_body(const int ntok, global const uchar *xb, ulong xo, int xrow, int T, int ku, const int mode, int act,
              int wmask,
              global const uint *w0, int n0, float s0, global uchar *y0b, ulong y0o,
              global const uint *w1, int n1, float s1, global uchar *y1b, ulong y1o,
              global const uint *w2, int n2, float s2, global uchar *y2b, ulong y2o,
              global const uchar *ab, ulong ao, global uchar *zb, ulong zo, global uchar *gb, ulong go,
              const int tail, global const uchar *nwb, ulong nwo, int has_nw, float eps, global uchar *ynb, ulong yno,
              global uchar *qb, ulong qo, int qrow, global int *ctrs, int ctr,
              int rope, int hd, float fscale, global const float *inv_freq,
              global const uchar *pb, ulong po, global uchar *r0b, ulong r0o, global uchar *r1b, ulong r1o,
              global uchar *r2b, ulong r2o, global uchar *c0b, ulong c0o, global uchar *c1b, ulong c1o,
              global uchar *c2b, ulong c2o, int node0, int node1, int node2, int n_ctx, global int *err,
              local int *part, local float *res, local acc_t *tpart,
              local float *redf, local int *redi, local float *nbuf, int nloc, local int *last)
{
    int lid = get_local_id(0), warp = lid / MV_LANES, lane = lid % MV_LANES;
    int g = get_group_id(0);
    int m = 0, row[2], N;
    if (mode == 2) {
        N = n0;
        row[0] = row[1] = g * MV_WARPS + warp;
    } else {
        int g0 = (n0 + MV_ROWS - 1) / MV_ROWS, g1 = (n1 + MV_ROWS - 1) / MV_ROWS;
        if (g >= g0 + g1) m = 2, g -= g0 + g1;
        else if (g >= g0) m = 1, g -= g0;
        N = m == 0 ? n0 : m == 1 ? n1 : n2;
        row[0] = g * MV_ROWS + 2 * warp;
        row[1] = row[0] + 1;
        if (rope >> m & 1) { /* the two rows of rotation pair row[0] / 2 */
            int pair = row[0] / 2;
            row[0] = pair / (hd / 2) * hd + pair % (hd / 2);
            row[1] = row[0] + hd / 2;
        }
    }
    global const uint *wm = m == 0 ? w0 : m == 1 ? w1 : w2;
    global const uint4 *wr0 = (global const uint4 *)((mode == 2 ? w0 : wm) + (ulong)(row[0] < N ? row[0] : 0) * ku);
    global const uint4 *wr1 = (global const uint4 *)((mode == 2 ? w1 : wm) + (ulong)(row[1] < N ? row[1] : 0) * ku);
    int acc[2][MV_TOK];
    for (int t = 0; t < ntok; t++) acc[0][t] = acc[1][t] = 0;
    global const uchar *x = xb + xo + 64;
    for (int u = lane; u < ku / 4; u += MV_LANES) {
        uint4 a0 = wr0[u], a1 = wr1[u];
#pragma unroll
        for (int t = 0; t < ntok; t++) {
            if (t < T) {
                global const uint4 *v = (global const uint4 *)(x + (ulong)t * xrow + 64 * (ulong)u);
                uint4 v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
                acc[0][t] = dot16(a0.s3, v3, dot16(a0.s2, v2, dot16(a0.s1, v1, dot16(a0.s0, v0, acc[0][t]))));
                acc[1][t] = dot16(a1.s3, v3, dot16(a1.s2, v2, dot16(a1.s1, v1, dot16(a1.s0, v0, acc[1][t]))));
            }
        }
    }
    for (int t = 0; t < ntok; t++) {
        PART(warp, 0, t, lane) = acc[0][t];
        PART(warp, 1, t, lane) = acc[1][t];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    int r = (lane / ntok) & 1, t = lane % ntok, n = row[r];
    float v = 0.0f;
    if (lane < 2 * ntok && t < T && n < N) {
        int s = 0;
        for (int i = 0; i < MV_LANES; i++) s += PART(warp, r, t, i);
        global const uchar *hdr = xb + xo + (ulong)t * xrow;
        float inv = ((global const float *)hdr)[0];
        s -= ((global const int *)hdr)[1];
        int which = mode == 2 ? r : m;
        float scale = which == 0 ? s0 : which == 1 ? s1 : s2;
        global uchar *yb = which == 0 ? y0b : which == 1 ? y1b : y2b;
        ulong yo = which == 0 ? y0o : which == 1 ? y1o : y2o;
        v = div_rn((float)s, inv) * scale;
        ulong at = (ulong)t * N + n;
        if (wmask & (1 << which)) AT(float, yb, yo)[at] = v;
    }
    if (lane < 2 * ntok) RES(warp, r, t) = v;
    barrier(CLK_LOCAL_MEM_FENCE); /* every mode: no barrier under a condition */
    if (mode == 2 && lane < ntok && lane < T && row[0] < N) {
        n = row[0];
        float a = act ? silu(RES(warp, 0, lane)) : relu_sq(RES(warp, 0, lane));
        ulong at = (ulong)lane * N + n;
        if (wmask & 16) AT(float, gb, go)[at] = a;
        if (wmask & 8) AT(float, zb, zo)[at] = a * RES(warp, 1, lane);
    }
    if (mode == 0 && rope >> m & 0111 && lane < T && row[0] < N) {
        float a = RES(warp, 0, lane), b = RES(warp, 1, lane);
        int p = CAT(int, pb, po)[lane], d0 = row[0] % hd, d1 = row[1] % hd;
        if (rope >> m & 1)
            rope_pair(a, b, (float)p * fscale, inv_freq[d0], &a, &b);
        if (rope >> (3 + m) & 1) {
            global float *y = AT(float, m == 0 ? r0b : m == 1 ? r1b : r2b, m == 0 ? r0o : m == 1 ? r1o : r2o);
            y[(ulong)lane * N + row[0]] = a;
            y[(ulong)lane * N + row[1]] = b;
        }
        if (rope >> (6 + m) & 1) {
            if (p < 0 || p >= n_ctx) {
                report_error(err, ERR_POSITION, m == 0 ? node0 : m == 1 ? node1 : node2, p);
            } else {
                int f16 = rope >> (9 + m) & 1;
                global uchar *c = (m == 0 ? c0b : m == 1 ? c1b : c2b) + (m == 0 ? c0o : m == 1 ? c1o : c2o);
                c += (((ulong)p * (N / hd) + row[0] / hd) * hd) * (f16 ? 2 : 4);
                cache_put(c, f16, d0, a);
                cache_put(c, f16, d1, b);
            }
        }
    }
    /* the tail: the last group to count itself works, the others leave at
     * once (whole groups leave, so no barrier misses part of a group) */
    if (!tail) return;
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    if (lid == 0) *last = atomic_inc(&ctrs[ctr]) == (int)get_num_groups(0) - 1;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!*last) return;
    if (lid == 0) ctrs[ctr] = 0;
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    global const float *yv = CAT(float, y0b, y0o), *av = CAT(float, ab, ao);
    global float *zv = AT(float, zb, zo);
    /* eight sums an item loaded before any is stored: z may share bytes
     * with a or y for all the compiler knows, so a load after a store
     * waits for it, one L2 round trip an element (6 us of a 2560-wide
     * tail on an H100 when loads and stores alternated) */
    for (int k0 = lid; (tail & 1) && k0 < T * N; k0 += 8 * MV_WG) {
        float sum[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int k = k0 + i * MV_WG;
            sum[i] = k < T * N ? av[k] + yv[k] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (k0 + i * MV_WG < T * N) zv[k0 + i * MV_WG] = sum[i];
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int tt = 0; (tail & 2) && tt < T; tt++)
        norm_quant_row(CAT(float, zb, zo) + (ulong)tt * N, CAT(float, nwb, nwo), has_nw,
                       AT(float, ynb, yno) + (ulong)tt * N, N, eps, 1, qb + qo + (ulong)tt * qrow, qrow, tpart,
                       redf, redi, nbuf, nloc);
}

/* The entry points: tmv_body for each mode with only the arguments the
 * mode reads (a launch's cost grows with its argument count: on NVIDIA
 * about 0.08 us an int and 0.35 us a buffer, tests/cl_launch) and local
 * memory for what it runs
 * (the tail's only where there is a tail: PoCL 5 aborts on a kernel's
 * local array that no code left after inlining uses). */
#define TMV_LOCALS(NT)                              \
    local int part[MV_WARPS * 2 * (NT) * MV_LANES]; \
    local float res[MV_WARPS * 2 * (NT)]
#define TMV_TAIL_LOCALS                                         \
    local acc_t tpart[NORM_LANES];                              \
    local float redf[MV_WG];                                    \
    local int redi[MV_WG];                                      \
    local float nbuf[NORM_LOCAL + 4]; /* + 4: never empty */    \
    local int last
#define TMV_TAIL_ARGS part, res, tpart, redf, redi, nbuf, NORM_LOCAL, &last
#define TMV_NO_TAIL_ARGS part, res, (local acc_t *)0, (local float *)0, (local int *)0, (local float *)0, 0, (local int *)0
#define NO_BUF ((global uchar *)0)

/* Up to three matrices (y0, y1, y2), the rotations of y0 and y1 and the
 * cache stores of y1 and y2 (rope bits as in tmv_body). */
#define TMV_QKV_ARGS                                                                                              \
    global const uchar *xb, ulong xo, int xrow, int T, int ku, int wmask, global const uint *w0, int n0, float s0, \
        global uchar *y0b, ulong y0o, global const uint *w1, int n1, float s1, global uchar *y1b, ulong y1o,       \
        global const uint *w2, int n2, float s2, global uchar *y2b, ulong y2o, int rope, int hd, float fscale,     \
        global const float *inv_freq, global const uchar *pb, ulong po, global uchar *r0b, ulong r0o,              \
        global uchar *r1b, ulong r1o, global uchar *c1b, ulong c1o, global uchar *c2b, ulong c2o, int node1,      \
        int node2, int n_ctx, global int *err
#define TMV_QKV_CALL(NT)                                                                                          \
    tmv_body(NT, xb, xo, xrow, T, ku, 0, 0, wmask, w0, n0, s0, y0b, y0o, w1, n1, s1, y1b, y1o, w2, n2, s2, y2b,    \
             y2o, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0, 0, NO_BUF, 0, 0, 0.0f, NO_BUF, 0, NO_BUF, 0, 0, (global int *)0, \
             0, rope, hd, fscale, inv_freq, pb, po, r0b, r0o, r1b, r1o, NO_BUF, 0, NO_BUF, 0, c1b, c1o, c2b, c2o,  \
             -1, node1, node2, n_ctx, err, TMV_NO_TAIL_ARGS)

/* y0, then z = a + y0 in the tail, with norm the RMS norm and quantize. */
#define TMV_ADD_ARGS                                                                                             \
    global const uchar *xb, ulong xo, int xrow, int T, int ku, global const uint *w0, int n0, float s0,           \
        global uchar *y0b, ulong y0o, global const uchar *ab, ulong ao, global uchar *zb, ulong zo, int norm,     \
        global const uchar *nwb, ulong nwo, int has_nw, float eps, global uchar *ynb, ulong yno, global uchar *qb, \
        ulong qo, int qrow, global int *ctrs, int ctr
#define TMV_ADD_CALL(NT)                                                                                         \
    tmv_body(NT, xb, xo, xrow, T, ku, 1, 0, 1, w0, n0, s0, y0b, y0o, w0, 0, s0, y0b, y0o, w0, 0, s0, y0b, y0o,    \
             ab, ao, zb, zo, NO_BUF, 0, 1 | (norm ? 2 : 0), nwb, nwo, has_nw, eps, ynb, yno, qb, qo, qrow, ctrs, \
             ctr, 0, 2, 1.0f, (global const float *)0, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0,    \
             NO_BUF, 0, NO_BUF, 0, -1, -1, -1, 0, (global int *)0, TMV_TAIL_ARGS)

/* gate (w0) and up (w1) rows together, g = act(y0), z = g * y1, with norm
 * the RMS norm of z and its quantize in the tail. */
#define TMV_GLU_ARGS                                                                                             \
    global const uchar *xb, ulong xo, int xrow, int T, int ku, int act, int wmask, global const uint *w0, int n0, \
        float s0, global uchar *y0b, ulong y0o, global const uint *w1, float s1, global uchar *y1b, ulong y1o,    \
        global uchar *zb, ulong zo, global uchar *gb, ulong go, int norm, global const uchar *nwb, ulong nwo,      \
        int has_nw, float eps, global uchar *ynb, ulong yno, global uchar *qb, ulong qo, int qrow,                \
        global int *ctrs, int ctr
#define TMV_GLU_CALL(NT)                                                                                           \
    tmv_body(NT, xb, xo, xrow, T, ku, 2, act, wmask, w0, n0, s0, y0b, y0o, w1, n0, s1, y1b, y1o, w0, 0, s0, y0b, \
             y0o, NO_BUF, 0, zb, zo, gb, go, norm ? 2 : 0, nwb, nwo, has_nw, eps, ynb, yno, qb, qo, qrow, ctrs,   \
             ctr, 0, 2, 1.0f, (global const float *)0, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0, NO_BUF, 0,     \
             NO_BUF, 0, NO_BUF, 0, -1, -1, -1, 0, (global int *)0, TMV_TAIL_ARGS)

/* Each mode's kernel for up to NT tokens: tmv_qkv, tmv_add, tmv_glu for
 * MV_TOK, and the same with suffix 1 for one token (a decode step): a
 * lane then holds two sums, not 2 x MV_TOK, and the group's sums take an
 * eighth of the local memory, so more groups fit a compute unit. */
#define TMV_KERNELS(S, NT)                         \
    kernel void tmv_qkv##S(TMV_QKV_ARGS)            \
    {                                              \
        TMV_LOCALS(NT);                            \
        TMV_QKV_CALL(NT);                          \
    }                                              \
    kernel void tmv_add##S(TMV_ADD_ARGS)            \
    {                                              \
        TMV_LOCALS(NT);                            \
        TMV_TAIL_LOCALS;                           \
        TMV_ADD_CALL(NT);                          \
    }                                              \
    kernel void tmv_glu##S(TMV_GLU_ARGS)            \
    {                                              \
        TMV_LOCALS(NT);                            \
        TMV_TAIL_LOCALS;                           \
        TMV_GLU_CALL(NT);                          \
    }
TMV_KERNELS(, MV_TOK)
TMV_KERNELS(1, 1)

/* Ternary GEMM: a 64-row x 64-token tile per group of 8 x 8 items, each
 * item 8 rows x 8 tokens; k in chunks of 64 staged in local memory as
 * dp4a operands: for rows, words of four codes (c = w + 1 in bytes, from
 * (word >> 2s) & 0x03030303), for tokens, words of four int8. Integer
 * sums, then (sum - sum q) / inv * scale as tmv: the same bits. */
#define TT 64
kernel __attribute__((reqd_work_group_size(64, 1, 1)))
void tmm(global const uchar *xb, ulong xo, int xrow, int T, int ku, global const uint *w, int N,
         float scale, global uchar *yb, ulong yo)
{
    local uint wl[TT / 4][TT + 4];
    local uint xl[TT / 4][TT + 4];
    int lid = get_local_id(0), tx = lid % 8, ty = lid / 8;
    int n0 = get_group_id(0) * TT, t0 = get_group_id(1) * TT;
    int acc[8][8];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) acc[i][j] = 0;
    int n = n0 + lid, t = t0 + lid;
    global const uint *wr = w + (ulong)(n < N ? n : 0) * ku;
    global const uchar *xr = xb + xo + (ulong)(t < T ? t : 0) * xrow + 64;
    for (int u0 = 0; u0 < ku; u0 += 4) {
        uint4 word = n < N ? *(global const uint4 *)(wr + u0) : (uint4)(0x55555555u);
        for (int qd = 0; qd < 4; qd++) {
            uint wq = qd == 0 ? word.s0 : qd == 1 ? word.s1 : qd == 2 ? word.s2 : word.s3;
            uint4 a = t < T ? *(global const uint4 *)(xr + 16 * (ulong)(u0 + qd)) : (uint4)(0);
            for (int s = 0; s < 4; s++) {
                wl[4 * qd + s][lid] = (wq >> (2 * s)) & 0x03030303u;
                xl[4 * qd + s][lid] = s == 0 ? a.s0 : s == 1 ? a.s1 : s == 2 ? a.s2 : a.s3;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k4 = 0; k4 < TT / 4; k4++) {
            uint4 wa = vload4(0, &wl[k4][ty * 8]), wb = vload4(0, &wl[k4][ty * 8 + 4]);
            uint4 xa = vload4(0, &xl[k4][tx * 8]), xc = vload4(0, &xl[k4][tx * 8 + 4]);
            uint wv[8] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
            uint xv[8] = {xa.x, xa.y, xa.z, xa.w, xc.x, xc.y, xc.z, xc.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] = dotc4(wv[i], xv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int j = 0; j < 8; j++) {
        int tt = t0 + tx * 8 + j;
        if (tt >= T) break;
        global const uchar *hdr = xb + xo + (ulong)tt * xrow;
        float inv = ((global const float *)hdr)[0];
        int sq = ((global const int *)hdr)[1];
        for (int i = 0; i < 8; i++) {
            int nn = n0 + ty * 8 + i;
            if (nn < N) AT(float, yb, yo)[(ulong)tt * N + nn] = div_rn((float)(acc[i][j] - sq), inv) * scale;
        }
    }
}

#define WT_F32 0
#define WT_F16 1
#define WT_BF16 30

/* Four weights k .. k+3 of a row (zero past K). */
float4 wload4(int type, global const uchar *row, int k, int K)
{
    if (k + 3 < K) {
        if (type == WT_F16) return vload_half4(k / 4, (global const half *)row); /* k % 4 == 0 */
        if (type == WT_F32) return vload4(k / 4, (global const float *)row);
        uint4 b = convert_uint4(vload4(k / 4, (global const ushort *)row)) << 16;
        return as_float4(b);
    }
    float v[4];
    for (int i = 0; i < 4; i++) {
        int kk = k + i;
        v[i] = kk >= K ? 0.0f
             : type == WT_F16 ? vload_half(kk, (global const half *)row)
             : type == WT_F32 ? ((global const float *)row)[kk]
                              : as_float((uint)((global const ushort *)row)[kk] << 16);
    }
    return (float4)(v[0], v[1], v[2], v[3]);
}

float4 xload4(global const float *x, int k, int K)
{
    if (k + 3 < K) return vload4(k / 4, x);
    return (float4)(x[k], k + 1 < K ? x[k + 1] : 0.0f, k + 2 < K ? x[k + 2] : 0.0f,
                    k + 3 < K ? x[k + 3] : 0.0f);
}

/* Weights k .. k+7 of a row (zero past K); `wide` (K % 8 == 0, rows
 * 16-byte aligned) loads them as one or two 16-byte words. */
float8 wload8(int type, global const uchar *row, int k, int K, int wide)
{
    if (wide && k + 8 <= K) {
        if (type == WT_F32) {
            global const uint4 *p = (global const uint4 *)(row + 4 * (ulong)k);
            return as_float8((uint8)(p[0], p[1]));
        }
        uint4 r = *(global const uint4 *)(row + 2 * (ulong)k);
        return type == WT_F16 ? h8f(r) : as_float8(convert_uint8(as_ushort8(r)) << 16);
    }
    float v[8];
    for (int i = 0; i < 8; i++) {
        int kk = k + i;
        v[i] = kk >= K ? 0.0f
             : type == WT_F16 ? vload_half(kk, (global const half *)row)
             : type == WT_F32 ? ((global const float *)row)[kk]
                              : as_float((uint)((global const ushort *)row)[kk] << 16);
    }
    return vload8(0, v);
}

float8 xload8(global const float *x, int k, int K, int wide)
{
    if (wide && k + 8 <= K) return *(global const float8 *)(x + k);
    float v[8];
    for (int i = 0; i < 8; i++) v[i] = k + i < K ? x[k + i] : 0.0f;
    return vload8(0, v);
}

float fma8(float8 a, float8 v, float acc)
{
    acc = fma(a.s0, v.s0, acc);
    acc = fma(a.s1, v.s1, acc);
    acc = fma(a.s2, v.s2, acc);
    acc = fma(a.s3, v.s3, acc);
    acc = fma(a.s4, v.s4, acc);
    acc = fma(a.s5, v.s5, acc);
    acc = fma(a.s6, v.s6, acc);
    return fma(a.s7, v.s7, acc);
}

/* Float GEMV over tokens [NTOK * group_id(1), + NTOK): 8 lanes a row, 4
 * rows a lane-group, 16 rows a group (long loops with many loads in
 * flight and a short reduction: the head is the largest read of a decode
 * step). Lane l of a row takes k = 8(l + 8i) .. + 7, an fma chain in k
 * order; its 8 lanes are added 0..7. fmv takes MV_TOK tokens a group;
 * fmv1, for one token (decode), holds one accumulator and keeps twice the
 * weight loads in flight, fmv2 and fmv4 two and four tokens: the same sums
 * in the same order whatever the kernel. */
#define FMV_LPR 8
#define FMV_BODY(NTOK, UNROLL)                                                                     \
    local float part[MV_WG / FMV_LPR][NTOK][FMV_LPR + 1];                                          \
    int lid = get_local_id(0), slot = lid / FMV_LPR, lane = lid % FMV_LPR;                         \
    int row = get_group_id(0) * (MV_WG / FMV_LPR) + slot, t0 = get_group_id(1) * NTOK;             \
    int tc = T - t0 < NTOK ? T - t0 : NTOK, wide = K % 8 == 0;                                     \
    global const uchar *rw = wb + wo + (ulong)(row < N ? row : 0) * wrow;                          \
    global const float *x = CAT(float, xb, xo) + (ulong)t0 * K;                                   \
    float acc[NTOK];                                                                               \
    for (int t = 0; t < NTOK; t++) acc[t] = 0.0f;                                                  \
    int k0 = 8 * lane;                                                                             \
    if (wide && type == WT_F16) { /* four weight loads issued before their sums use them */        \
        for (; k0 + 3 * 8 * FMV_LPR + 8 <= K; k0 += 4 * 8 * FMV_LPR) {                             \
            uint4 r[4];                                                                            \
            _Pragma("unroll") for (int j = 0; j < 4; j++)                                          \
                r[j] = *(global const uint4 *)(rw + 2 * (ulong)(k0 + j * 8 * FMV_LPR));            \
            _Pragma("unroll") for (int j = 0; j < 4; j++) {                                        \
                float8 a = h8f(r[j]);                                                              \
                _Pragma("unroll") for (int t = 0; t < NTOK; t++)                                   \
                    if (t < tc) acc[t] = fma8(a, xload8(x + (ulong)t * K, k0 + j * 8 * FMV_LPR, K, 1), acc[t]); \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    _Pragma(UNROLL) for (int k = k0; k < K; k += 8 * FMV_LPR) {                                    \
        float8 a = wload8(type, rw, k, K, wide);                                                   \
        _Pragma("unroll") for (int t = 0; t < NTOK; t++)                                           \
            if (t < tc) acc[t] = fma8(a, xload8(x + (ulong)t * K, k, K, wide), acc[t]);            \
    }                                                                                              \
    for (int t = 0; t < NTOK; t++) part[slot][t][lane] = acc[t];                                   \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                  \
    int t = lane; /* lane t of the row sums token t */                                             \
    if (t < tc && row < N) {                                                                       \
        float s = 0.0f;                                                                            \
        for (int i = 0; i < FMV_LPR; i++) s += part[slot][t][i];                                   \
        AT(float, yb, yo)[(ulong)(t0 + t) * N + row] = s;                                          \
    }

kernel void fmv(int type, global const uchar *xb, ulong xo, int K, int T, global const uchar *wb,
                ulong wo, ulong wrow, int N, global uchar *yb, ulong yo)
{
    FMV_BODY(MV_TOK, "unroll 2")
}

kernel void fmv1(int type, global const uchar *xb, ulong xo, int K, int T, global const uchar *wb,
                 ulong wo, ulong wrow, int N, global uchar *yb, ulong yo)
{
    FMV_BODY(1, "unroll 4")
}

/* two and four tokens (a speculative verify, a few server slots): the
 * weights read once for all of them, as few accumulators as they need */
kernel void fmv2(int type, global const uchar *xb, ulong xo, int K, int T, global const uchar *wb,
                 ulong wo, ulong wrow, int N, global uchar *yb, ulong yo)
{
    FMV_BODY(2, "unroll 4")
}

kernel void fmv4(int type, global const uchar *xb, ulong xo, int K, int T, global const uchar *wb,
                 ulong wo, ulong wrow, int N, global uchar *yb, ulong yo)
{
    FMV_BODY(4, "unroll 2")
}

/* Q8_0 activations: item (block b, token t): d = amax / 127, codes
 * rint(x * 127 / amax) clamped to +-127 (0 for a zero block and NaN), as
 * tern_quantize_act_q8_0. Codes at qa + t*K, scales (f32) at qa + T*K. */
kernel void q8act(global const uchar *xb, ulong xo, int K, int T, global uchar *qa)
{
    int b = get_global_id(0), t = get_global_id(1), nb = K / 32;
    if (b >= nb) return;
    global const float *x = CAT(float, xb, xo) + (ulong)t * K + 32 * b;
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) {
        float a = fabs(x[i]);
        amax = a > amax ? a : amax;
    }
    float id = amax > 0.0f ? div_rn(127.0f, amax) : 0.0f;
    global char *q = (global char *)qa + (ulong)t * K + 32 * b;
    for (int i = 0; i < 32; i++) {
        float v = rint(x[i] * id);
        q[i] = (char)(v > 127.0f ? 127 : v < -127.0f ? -127 : v == v ? (int)v : 0);
    }
    ((global float *)(qa + (ulong)T * K))[(ulong)t * nb + b] = div_rn(amax, 127.0f);
}

