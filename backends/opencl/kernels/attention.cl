/* attention.cl - rotary embedding and KV cache stores (one kernel, so the
 * q and k rotations and both cache stores of a layer are one launch), and
 * causal GQA attention over the cache.
 *
 * Caches are [head_dim, n_kv, n_ctx], F16 or F32: element (d, h, p) at
 * (p * n_kv + h) * head_dim + d. */

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
    acc_t theta = (acc_t)(p * inv_freq[j]);
    acc_t c = cos(theta), s = sin(theta), a = (acc_t)x[i0], b = (acc_t)x[i1];
    *d0 = i0;
    *d1 = i1;
    *y0 = (float)(a * c - b * s);
    *y1 = (float)(a * s + b * c);
}

/* Up to two rotations (A, B) and two cache stores in one launch. Items:
 * rows_a * P rope items of A, rows_b * P of B (P = n_dims/2 + head_dim -
 * n_dims), then rows_c * head_dim store items of C. B's rows also go to
 * cache cb when store_b (a KV_STORE of B's output fused in); C stores
 * src xc into cache cc. A position outside [0, n_ctx) is reported for the
 * store's node and that row is not stored. */
kernel void rope_kv(int mode, int n_dims, int hd, float fscale, global const float *inv_freq,
                    global const uchar *pb, ulong po,
                    int heads_a, int rows_a, global const uchar *xa, ulong xao, global uchar *ya, ulong yao,
                    int heads_b, int rows_b, global const uchar *xb, ulong xbo, global uchar *yb, ulong ybo,
                    int store_b, global uchar *cb, ulong cbo, int f16_b, int node_b,
                    int rows_c, int heads_c, global const uchar *xc, ulong xco, global uchar *cc, ulong cco,
                    int f16_c, int node_c, int n_ctx, global int *err)
{
    global const int *pos = CAT(int, pb, po);
    ulong g = get_global_id(0);
    int P = n_dims / 2 + hd - n_dims;
    ulong na = (ulong)rows_a * P, nb = (ulong)rows_b * P, nc = (ulong)rows_c * hd;
    if (g < na + nb) {
        int b = g >= na;
        ulong gi = b ? g - na : g;
        int r = gi / P, j = gi % P, heads = b ? heads_b : heads_a;
        int t = r / heads;
        global const float *x = b ? CAT(float, xb, xbo) : CAT(float, xa, xao);
        global float *y = b ? AT(float, yb, ybo) : AT(float, ya, yao);
        x += (ulong)r * hd;
        y += (ulong)r * hd;
        int d0, d1;
        float y0, y1;
        rope_item(x, j, mode, n_dims, (float)pos[t] * fscale, inv_freq, &d0, &d1, &y0, &y1);
        y[d0] = y0;
        if (d1 >= 0) y[d1] = y1;
        if (b && store_b) {
            int p = pos[t];
            if (p < 0 || p >= n_ctx) {
                report_error(err, ERR_POSITION, node_b, p);
                return;
            }
            global uchar *row = cb + cbo + (((ulong)p * heads + r % heads) * hd) * (f16_b ? 2 : 4);
            cache_put(row, f16_b, d0, y0);
            if (d1 >= 0) cache_put(row, f16_b, d1, y1);
        }
        return;
    }
    g -= na + nb;
    if (g >= nc) return;
    int r = g / hd, d = g % hd, t = r / heads_c, p = pos[t];
    if (p < 0 || p >= n_ctx) {
        report_error(err, ERR_POSITION, node_c, p);
        return;
    }
    float v = CAT(float, xc, xco)[(ulong)r * hd + d];
    cache_put(cc + cco + (((ulong)p * heads_c + r % heads_c) * hd) * (f16_c ? 2 : 4), f16_c, d, v);
}

/* Row r = (token t, head h) of the output: scalar's formula in acc_t:
 * s_j = dot(q, K_j) * scale for j <= pos[t], m = max s_j, e_j = exp(s_j -
 * m), y = (float)(sum_j e_j V_j / sum_j e_j). The scores wait in the
 * scratch row r of `scores` (n_ctx values). A position outside the cache
 * is reported; past the end it is clamped, below 0 the row is NaN. */
kernel void attention(global const uchar *qb, ulong qo, global const uchar *kb, ulong ko,
                      global const uchar *vb, ulong vo, global const uchar *pb, ulong po,
                      global uchar *yb, ulong yo, int hd, int n_head, int n_kv, int n_ctx, int f16,
                      float scale, global acc_t *scores, int node, global int *err)
{
    local acc_t ql[HD_MAX];
    local acc_t red[ATT_WG];
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
    ulong stride = (ulong)n_kv * hd, head = (ulong)kvh * hd;
    global const uchar *kp = kb + ko, *vp = vb + vo;
    acc_t mx = -INFINITY, sum = 0;
    for (int j = lid; j <= last; j += ATT_WG) {
        ulong base = (ulong)j * stride + head;
        acc_t dot = 0;
        for (int d = 0; d < hd; d++) dot += ql[d] * cache_at(kp, f16, base + d);
        acc_t s = dot * (acc_t)scale;
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
    for (int d = lid; d < hd; d += ATT_WG) {
        acc_t acc = 0;
        for (int j = 0; j <= last; j++) acc += sc[j] * cache_at(vp, f16, (ulong)j * stride + head + d);
        y[d] = last < 0 ? NAN : (float)(acc / sum);
    }
}
