/* attention.cl - rotary embedding and KV cache stores (one kernel, so the
 * q and k rotations and both cache stores of a layer are one launch), and
 * causal GQA attention over the cache.
 *
 * Caches are [head_dim, n_kv, n_ctx], F16 or F32: element (d, h, p) at
 * (p * n_kv + h) * head_dim + d. */

/* The rotation of the pair (a, b) by the angle p * f (p: the position
 * times freq_scale, f: inv_freq of the pair), as scalar forms it. */
void rope_pair(float a, float b, float p, float f, float *y0, float *y1)
{
    acc_t theta = (acc_t)(p * f);
    acc_t c = cos(theta), s = sin(theta);
    *y0 = (float)((acc_t)a * c - (acc_t)b * s);
    *y1 = (float)((acc_t)a * s + (acc_t)b * c);
}

/* One rotation pair (or copied element) of a row: the angle formed as
 * scalar forms it (f32 position * freq_scale, times the host's f32
 * inv_freq table = 1/powf(base, 2i/n_dims)), cos/sin and the rotation in
 * acc_t, each output rounded once. Returns the two outputs in *y0, *y1 at
 * dims *d0, *d1 (d1 < 0: a copied dim). */
void rope_item(global const float *x, int j, int mode, int n_dims, float p,
               global const float *inv_freq, int *d0, int *d1, float *y0, float *y1)
{
    int nh = n_dims / 2;
    if (j >= nh) {
        *d0 = n_dims + (j - nh);
        *d1 = -1;
        *y0 = x[*d0];
        return;
    }
    int i0 = mode == 2 ? j : 2 * j, i1 = mode == 2 ? j + nh : 2 * j + 1;
    *d0 = i0;
    *d1 = i1;
    rope_pair(x[i0], x[i1], p, inv_freq[j], y0, y1);
}

/* Rope item j of row r of x into y (and, with store, into the cache at
 * the row's position: a position outside [0, n_ctx) is reported for node
 * and not stored). */
void rope_row_item(global const float *x, global float *y, int r, int j, int heads, int mode, int n_dims, int hd,
                   float fscale, global const float *inv_freq, global const int *pos, int store, global uchar *cache,
                   int f16, int node, int n_ctx, global int *err)
{
    int t = r / heads, d0, d1;
    float y0, y1;
    x += (ulong)r * hd;
    y += (ulong)r * hd;
    rope_item(x, j, mode, n_dims, (float)pos[t] * fscale, inv_freq, &d0, &d1, &y0, &y1);
    y[d0] = y0;
    if (d1 >= 0) y[d1] = y1;
    if (!store) return;
    int p = pos[t];
    if (p < 0 || p >= n_ctx) {
        report_error(err, ERR_POSITION, node, p);
        return;
    }
    global uchar *row = cache + (((ulong)p * heads + r % heads) * hd) * (f16 ? 2 : 4);
    cache_put(row, f16, d0, y0);
    if (d1 >= 0) cache_put(row, f16, d1, y1);
}

/* Up to two rotations (A, B) and two cache stores in one launch. Items:
 * rows_a * P rope items of A, rows_b * P of B (P = n_dims/2 + head_dim -
 * n_dims), then rows_c * head_dim store items of C. B's rows also go to
 * cache cb when store_b (a KV_STORE of B's output fused in); C stores
 * src xc into cache cc. A position outside [0, n_ctx) is reported for the
 * store's node and that row is not stored. tail_b: B (with its store)
 * waits for every group to be done (A's reads of its input included) and
 * runs in the last one, so B's output may take A's input's bytes (the
 * arrival count as in tmv, kernels/matmul.cl). Groups of 64 items. */
kernel void rope_kv(int mode, int n_dims, int hd, float fscale, global const float *inv_freq,
                    global const uchar *pb, ulong po,
                    int heads_a, int rows_a, global const uchar *xa, ulong xao, global uchar *ya, ulong yao,
                    int heads_b, int rows_b, global const uchar *xb, ulong xbo, global uchar *yb, ulong ybo,
                    int store_b, global uchar *cb, ulong cbo, int f16_b, int node_b,
                    int rows_c, int heads_c, global const uchar *xc, ulong xco, global uchar *cc, ulong cco,
                    int f16_c, int node_c, int n_ctx, global int *err, int tail_b, global int *ctrs, int ctr)
{
    local int last;
    global const int *pos = CAT(int, pb, po);
    ulong g = get_global_id(0);
    int P = n_dims / 2 + hd - n_dims;
    ulong na = (ulong)rows_a * P, nb = tail_b ? 0 : (ulong)rows_b * P, nc = (ulong)rows_c * hd;
    if (g < na) {
        rope_row_item(CAT(float, xa, xao), AT(float, ya, yao), g / P, g % P, heads_a, mode, n_dims, hd, fscale,
                      inv_freq, pos, 0, cb, 0, -1, n_ctx, err);
    } else if (g < na + nb) {
        rope_row_item(CAT(float, xb, xbo), AT(float, yb, ybo), (g - na) / P, (g - na) % P, heads_b, mode, n_dims, hd,
                      fscale, inv_freq, pos, store_b, cb + cbo, f16_b, node_b, n_ctx, err);
    } else if (g < na + nb + nc) {
        g -= na + nb;
        int r = g / hd, d = g % hd, t = r / heads_c, p = pos[t];
        if (p < 0 || p >= n_ctx) {
            report_error(err, ERR_POSITION, node_c, p);
        } else {
            float v = CAT(float, xc, xco)[(ulong)r * hd + d];
            cache_put(cc + cco + (((ulong)p * heads_c + r % heads_c) * hd) * (f16_c ? 2 : 4), f16_c, d, v);
        }
    }
    /* the tail: the last group to count itself works, the others leave */
    if (!tail_b) return;
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    int lid = get_local_id(0);
    if (lid == 0) last = atomic_inc(&ctrs[ctr]) == (int)get_num_groups(0) - 1;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!last) return;
    if (lid == 0) ctrs[ctr] = 0;
    for (ulong i = lid; i < (ulong)rows_b * P; i += get_local_size(0))
        rope_row_item(CAT(float, xb, xbo), AT(float, yb, ybo), i / P, i % P, heads_b, mode, n_dims, hd, fscale,
                      inv_freq, pos, store_b, cb + cbo, f16_b, node_b, n_ctx, err);
}

/* dot + the products of q[0..7] and v (dot8) or q[0..3] and v (dot4), in
 * order */
acc_t dot8(local const acc_t *q, float8 v, acc_t dot)
{
    dot += q[0] * v.s0;
    dot += q[1] * v.s1;
    dot += q[2] * v.s2;
    dot += q[3] * v.s3;
    dot += q[4] * v.s4;
    dot += q[5] * v.s5;
    dot += q[6] * v.s6;
    return dot + q[7] * v.s7;
}

acc_t dot4(local const acc_t *q, float4 v, acc_t dot)
{
    dot += q[0] * v.x;
    dot += q[1] * v.y;
    dot += q[2] * v.z;
    return dot + q[3] * v.w;
}

/* h . K_j over d, in acc_t, d in order: 16-byte loads when the row allows,
 * four of them issued before their sums (one round trip to memory for 32
 * halves, not four: the sums wait on each other, the loads need not). */
acc_t key_dot(local const acc_t *ql, global const uchar *row, int f16, int hd)
{
    acc_t dot = 0;
    if (f16 && hd % 8 == 0) {
        int d = 0;
        for (; d + 32 <= hd; d += 32) {
            global const uint4 *p = (global const uint4 *)(row + 2 * d);
            uint4 r[4] = {p[0], p[1], p[2], p[3]};
#pragma unroll
            for (int i = 0; i < 4; i++) dot = dot8(ql + d + 8 * i, h8f(r[i]), dot);
        }
        for (; d < hd; d += 8) dot = dot8(ql + d, h8f(*(global const uint4 *)(row + 2 * d)), dot);
    } else if (!f16 && hd % 4 == 0) {
        int d = 0;
        for (; d + 16 <= hd; d += 16) {
            global const float4 *p = (global const float4 *)(row + 4 * d);
            float4 r[4] = {p[0], p[1], p[2], p[3]};
#pragma unroll
            for (int i = 0; i < 4; i++) dot = dot4(ql + d + 4 * i, r[i], dot);
        }
        for (; d < hd; d += 4) dot = dot4(ql + d, *(global const float4 *)(row + 4 * d), dot);
    } else {
        for (int d = 0; d < hd; d++) dot += ql[d] * cache_at(row, f16, d);
    }
    return dot;
}

/* Row r = (token t, head h) of the output: scalar's formula in acc_t:
 * s_j = dot(q, K_j) * scale for j <= pos[t], m = max s_j, e_j = exp(s_j -
 * m), y = (float)(sum_j e_j V_j / sum_j e_j). The scores wait in the
 * scratch row r of `scores` (n_ctx values). The weighted sum runs in
 * ATT_SLICES slices of positions (j = s, s + ATT_SLICES, ...) side by
 * side, the slices then added in order. A position outside the cache is
 * reported; past the end it is clamped, below 0 the row is NaN.
 * tail: as tmv's (kernels/matmul.cl), the last group norms the T output
 * rows (hd * n_head each) into yn and quantizes them into q. */
kernel void attention(global const uchar *qb, ulong qo, global const uchar *kb, ulong ko,
                      global const uchar *vb, ulong vo, global const uchar *pb, ulong po,
                      global uchar *yb, ulong yo, int hd, int n_head, int n_kv, int n_ctx, int f16,
                      float scale, global acc_t *scores, int node, global int *err,
                      int tail, global const uchar *nwb, ulong nwo, int has_nw, float eps, global uchar *ynb, ulong yno,
                      global uchar *qqb, ulong qqo, int qrow, global int *ctrs, int ctr)
{
    local acc_t ql[HD_MAX];
    local acc_t red[ATT_WG];
    local acc_t accp[ATT_SLICES][HD_MAX];
    local acc_t tpart[NORM_LANES];
    local float redf[ATT_WG];
    local int redi[ATT_WG];
    local float nbuf[NORM_LOCAL_ATT + 4]; /* the tail's row (norm_quant_row; + 4: never empty) */
    local int lastg;
    int r = get_group_id(0), lid = get_local_id(0);
    int t = r / n_head, h = r % n_head, kvh = h / (n_head / n_kv);
    int last = CAT(int, pb, po)[t];
    global float *y = AT(float, yb, yo + (ulong)r * hd * 4);
    if ((last < 0 || last >= n_ctx) && lid == 0) report_error(err, ERR_POSITION, node, last);
    if (last >= n_ctx) last = n_ctx - 1; /* last < 0: the loops are empty, the row NaN */
    global const float *q = CAT(float, qb, qo + (ulong)r * hd * 4);
    for (int d = lid; d < hd; d += ATT_WG) ql[d] = (acc_t)q[d];
    barrier(CLK_LOCAL_MEM_FENCE);
    global acc_t *sc = scores + (ulong)r * n_ctx;
    ulong stride = (ulong)n_kv * hd, head = (ulong)kvh * hd, es = f16 ? 2 : 4;
    global const uchar *kp = kb + ko, *vp = vb + vo;
    acc_t mx = -INFINITY, sum = 0;
    for (int j = lid; j <= last; j += ATT_WG) {
        acc_t s = key_dot(ql, kp + ((ulong)j * stride + head) * es, f16, hd) * (acc_t)scale;
        sc[j] = s;
        mx = s > mx ? s : mx;
    }
    mx = wg_max(mx, red);
    for (int j = lid; j <= last; j += ATT_WG) {
        acc_t e = exp(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    sum = wg_sum(sum, red);
    barrier(CLK_GLOBAL_MEM_FENCE);
    int dl = ATT_WG / ATT_SLICES, sl = lid / dl, l = lid % dl;
    for (int d0 = 4 * l; d0 < hd; d0 += 4 * dl) {
        acc_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        int j = sl;
        /* four positions' weights and values loaded, then added in order
         * (the same sums as the loop below, one memory round trip for four) */
        for (; d0 + 3 < hd && j + 3 * ATT_SLICES <= last; j += 4 * ATT_SLICES) {
            acc_t e[4];
            float4 v[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int ji = j + i * ATT_SLICES;
                global const uchar *row = vp + ((ulong)ji * stride + head) * es;
                e[i] = sc[ji];
                v[i] = f16 ? vload_half4(d0 / 4, (global const half *)row) : vload4(d0 / 4, (global const float *)row);
            }
#pragma unroll
            for (int i = 0; i < 4; i++) {
                a0 += e[i] * v[i].x, a1 += e[i] * v[i].y;
                a2 += e[i] * v[i].z, a3 += e[i] * v[i].w;
            }
        }
        for (; j <= last; j += ATT_SLICES) {
            acc_t e = sc[j];
            global const uchar *row = vp + ((ulong)j * stride + head) * es;
            if (d0 + 3 < hd) {
                float4 v = f16 ? vload_half4(d0 / 4, (global const half *)row) : vload4(d0 / 4, (global const float *)row);
                a0 += e * v.x, a1 += e * v.y, a2 += e * v.z, a3 += e * v.w;
            } else {
                a0 += e * cache_at(row, f16, d0);
                if (d0 + 1 < hd) a1 += e * cache_at(row, f16, d0 + 1);
                if (d0 + 2 < hd) a2 += e * cache_at(row, f16, d0 + 2);
            }
        }
        accp[sl][d0] = a0;
        if (d0 + 1 < hd) accp[sl][d0 + 1] = a1;
        if (d0 + 2 < hd) accp[sl][d0 + 2] = a2;
        if (d0 + 3 < hd) accp[sl][d0 + 3] = a3;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int d = lid; d < hd; d += ATT_WG) {
        acc_t acc = 0;
        for (int s = 0; s < ATT_SLICES; s++) acc += accp[s][d];
        y[d] = last < 0 ? NAN : (float)(acc / sum);
    }
    /* the tail: the last group to count itself works, the others leave at
     * once (as tmv's) */
    if (!tail) return;
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    if (lid == 0) lastg = atomic_inc(&ctrs[ctr]) == (int)get_num_groups(0) - 1;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!lastg) return;
    int n = hd * n_head, T = get_num_groups(0) / n_head;
    if (lid == 0) ctrs[ctr] = 0;
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    for (int tt = 0; tt < T; tt++)
        norm_quant_row(CAT(float, yb, yo) + (ulong)tt * n, CAT(float, nwb, nwo), has_nw, AT(float, ynb, yno) + (ulong)tt * n,
                       n, eps, 1, qqb + qqo + (ulong)tt * qrow, qrow, tpart, redf, redi, nbuf, NORM_LOCAL_ATT);
}
