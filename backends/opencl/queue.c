/* queue.c - the node queue, the launch plan and sync.
 *
 * Ops only copy their node here (the run lock taken by the first). sync()
 * plans the queued run into launches and enqueues them on the in-order
 * queue, then waits once: a blocking read of the kernel error word.
 *
 * Fusion (a decode step is bound by launches, not bytes): at each node the
 * planner tries the patterns below, else launches the node alone.
 *   norm_quant  RMS_NORM then the QUANTIZE_ACT reading it;
 *   tmv_multi   up to three ternary matmuls over one input (q, k, v), and
 *               for a decode step the rotations of their outputs and the
 *               cache stores (NEOX over whole heads: a lane-group makes
 *               both rows of a rotation pair);
 *   tmv_glu     gate matmul, its relu_sq/silu, up matmul, mul;
 *   tmv_add     a ternary matmul and the ADD reading it (the residual);
 *   rope_kv     the q and k rotations and the K and V cache stores (where
 *               tmv_multi did not take them);
 *   tails       the RMS_NORM + QUANTIZE_ACT after tmv_add, tmv_glu or an
 *               ATTENTION, run by the launch's last work-group.
 * (the matmul patterns and tails for at most OCL_MV_TOK tokens: prefill is
 * compute bound). A group runs as one kernel at the place of its first
 * node, so it is checked like a reordering: every member moved above a
 * node not in the group must not touch what that node reads or writes
 * (byte ranges in device memory), and, as the members then run at once,
 * no output may overlap another output or an input read from memory. A
 * tail, the part one group runs once every group is past the first phase,
 * runs its members in queue order with barriers between, as the nodes
 * would run: it needs no such checks. An output whose bytes a later node
 * overwrites before anything outside the group reads them is dead: the
 * kernel skips it (the arena may have given its bytes to a later output
 * of the same group). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "opencl.h"

const char *const ocl_launch_names[L_COUNT] = {
    [L_GET_ROWS] = "get_rows",     [L_RMS_NORM] = "rms_norm",   [L_NORM_QUANT] = "norm+quantize",
    [L_QUANTIZE] = "quantize_act", [L_ELTWISE] = "elementwise", [L_SOFTMAX] = "softmax",
    [L_ROPE] = "rope",             [L_KV_STORE] = "kv_store",   [L_ROPE_KV] = "rope+kv_store",
    [L_ATTENTION] = "attention",   [L_ATTENTION_NQ] = "attention+norm+quant",
    [L_TMV] = "tmv",               [L_TMV_MULTI] = "tmv qkv", [L_TMV_QKV_ROPE] = "tmv qkv+rope+kv_store",
    [L_TMV_ADD] = "tmv+add",       [L_TMV_GLU] = "tmv gate/up+act+mul", [L_TMM] = "tmm",
    [L_TMV_ADD_NQ] = "tmv+add+norm+quant", [L_TMV_GLU_NQ] = "tmv glu+norm+quant",
    [L_FMV] = "fmv",               [L_Q8ACT] = "q8_0 act",      [L_Q8MV] = "q8_0 mv",
    [L_TMV_CPU] = "tmv (cpu)",     [L_FMV_CPU] = "fmv (cpu)",
};

/* ---- recording ---- */

void ocl_enqueue(void *ctx, const tern_node *nd, int ith, int nth, void *scratch)
{
    (void)nth, (void)scratch;
    ocl_ctx *c = ctx;
    if (ith != 0) return;
    ocl_run_lock(c);
    if (c->n_q == c->cap_q) {
        int cap = c->cap_q ? 2 * c->cap_q : 256;
        ocl_qnode *nq = c->host->alloc((size_t)cap * sizeof *nq, 64);
        uint8_t *nd_done = c->host->alloc((size_t)cap, 64);
        if (!nq || !nd_done) {
            c->host->free(nq), c->host->free(nd_done);
            c->host->node_error(nd, TERN_ENOMEM, "opencl: out of memory queueing %s", tern_op_name(nd->op));
            return;
        }
        if (c->n_q) {
            memcpy(nq, c->q, (size_t)c->n_q * sizeof *nq);
            memcpy(nd_done, c->done, (size_t)c->n_q);
        }
        for (int i = 0; i < c->n_q; i++) { /* re-point the copies at their new home */
            nq[i].node.dst = &nq[i].dst;
            for (int s = 0; s < TERN_NODE_MAX_SRC; s++)
                if (nq[i].node.src[s]) nq[i].node.src[s] = &nq[i].src[s];
        }
        c->host->free(c->q), c->host->free(c->done);
        c->q = nq;
        c->done = nd_done;
        c->cap_q = cap;
    }
    ocl_qnode *q = &c->q[c->n_q];
    q->node = *nd; /* the error slot too: node_error at sync reaches it */
    q->dst = *nd->dst;
    q->node.dst = &q->dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++)
        if (nd->src[i]) {
            q->src[i] = *nd->src[i];
            q->node.src[i] = &q->src[i];
        }
    c->done[c->n_q++] = 0;
}

/* ---- byte ranges ---- */

typedef struct span {
    cl_mem mem;
    cl_ulong lo, hi;
} span;

static span span_of(const tern_tensor *t)
{
    span s = {ocl_mem(t), ocl_off(t), ocl_off(t) + tern_tensor_nbytes(t)};
    return s;
}

static int overlap(span a, span b) { return a.mem == b.mem && a.lo < b.hi && b.lo < a.hi; }
static int covers(span a, span b) { return a.mem == b.mem && a.lo <= b.lo && a.hi >= b.hi; }

static int same(const tern_tensor *a, const tern_tensor *b)
{
    return a && b && a->buffer == b->buffer && a->data == b->data && a->type == b->type &&
           tern_tensor_nbytes(a) == tern_tensor_nbytes(b);
}

/* Weights are never written: they need no range checks. */
static int is_weight(const tern_tensor *t) { return t->owner == &opencl_api || t->layout != TERN_LAYOUT_FILE; }

static int reads(const ocl_qnode *n, span s)
{
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++)
        if (n->node.src[i] && !is_weight(n->node.src[i]) && overlap(span_of(n->node.src[i]), s)) return 1;
    return 0;
}

/* ---- groups ---- */

#define GMAX 8
#define WINDOW 24 /* how far ahead a dead-output proof may look */

typedef struct group {
    int n, node[GMAX];       /* members in queue order; node[0] is where it runs */
    int force[GMAX];         /* member's output is read back by the kernel: always written */
    int write[GMAX];         /* member's output is stored (set by group_ok) */
    int phase[GMAX];         /* 0, or 1: a tail that runs after every group of phase 0 */
    span rd[4 * GMAX];       /* inputs the kernel reads from memory */
    int rd_of[4 * GMAX], rd_phase[4 * GMAX], n_rd;
    int cur;                 /* the phase members and reads are added to */
} group;

static int member(const group *g, int i)
{
    for (int k = 0; k < g->n; k++)
        if (g->node[k] == i) return 1;
    return 0;
}

/* Adds node i to g in the phase g->cur; members stay in queue order. */
static void add_member(group *g, int i, int force)
{
    int k = g->n++;
    for (; k > 0 && g->node[k - 1] > i; k--) {
        g->node[k] = g->node[k - 1];
        g->force[k] = g->force[k - 1];
        g->phase[k] = g->phase[k - 1];
    }
    g->node[k] = i;
    g->force[k] = force;
    g->phase[k] = g->cur;
}

static void add_read(group *g, int i, const tern_tensor *t)
{
    if (!t || is_weight(t)) return;
    g->rd[g->n_rd] = span_of(t);
    g->rd_phase[g->n_rd] = g->cur;
    g->rd_of[g->n_rd++] = i;
}

/* Member k's output dead after the group: nodes after it (in queue
 * order, within WINDOW) overwrite all of it before anything outside the
 * group reads it. */
static int dead(const ocl_ctx *c, const group *g, int k)
{
    span o = span_of(&c->q[g->node[k]].dst);
    int end = c->n_q < g->node[k] + 1 + WINDOW ? c->n_q : g->node[k] + 1 + WINDOW;
    for (int m = g->node[k] + 1; m < end; m++) {
        if (c->done[m]) continue; /* ran before this group: proven not to read it */
        const ocl_qnode *x = &c->q[m];
        if (!member(g, m) && reads(x, o)) return 0;
        if (covers(span_of(&x->dst), o)) return 1;
    }
    return 0;
}

static void why_not(const ocl_ctx *c, const group *g, const char *what, int a, int b)
{
    if (!getenv("TERN_OPENCL_DEBUG")) return;
    fprintf(stderr, "opencl: no fusion at node %d (%s, %d members): %s (%d %s, %d %s)\n", g->node[0],
            tern_op_name(c->q[g->node[0]].node.op), g->n, what, a, a >= 0 ? tern_op_name(c->q[a].node.op) : "-", b,
            b >= 0 ? tern_op_name(c->q[b].node.op) : "-");
}

/* The checks in the file comment; fills g->write. */
static int group_ok(const ocl_ctx *c, group *g)
{
    for (int k = 0; k < g->n; k++) g->write[k] = g->force[k] || !dead(c, g, k);
    for (int a = 0; a < g->n; a++) {
        if (!g->write[a] || g->phase[a]) continue; /* the tail runs its members in order, passes apart */
        span oa = span_of(&c->q[g->node[a]].dst);
        for (int b = a + 1; b < g->n; b++)
            if (g->write[b] && g->phase[b] == g->phase[a] && overlap(oa, span_of(&c->q[g->node[b]].dst)))
                return why_not(c, g, "two outputs overlap", g->node[a], g->node[b]), 0;
        for (int r = 0; r < g->n_rd; r++)
            if (g->rd_phase[r] == g->phase[a] && overlap(oa, g->rd[r]))
                return why_not(c, g, "an output overlaps an input", g->node[a], g->rd_of[r]), 0;
    }
    for (int k = 1; k < g->n; k++) {
        int j = g->node[k];
        for (int m = g->node[0] + 1; m < j; m++) {
            if (c->done[m] || member(g, m)) continue;
            const ocl_qnode *x = &c->q[m];
            span xw = span_of(&x->dst);
            if (g->write[k]) {
                span o = span_of(&c->q[j].dst);
                if (overlap(o, xw) || reads(x, o))
                    return why_not(c, g, "moving a member's write above", j, m), 0;
            }
            for (int r = 0; r < g->n_rd; r++)
                if (g->rd_of[r] == j && overlap(g->rd[r], xw))
                    return why_not(c, g, "moving a member's read above", j, m), 0;
        }
    }
    return 1;
}

/* ---- launching ---- */

typedef struct args {
    cl_kernel k;
    cl_uint i;
    cl_int e;
} args;

static args args_of(const ocl_ctx *c, int k) { return (args){c->kernels[k], 0, CL_SUCCESS}; }

static void a_raw(args *a, size_t n, const void *v)
{
    if (a->e == CL_SUCCESS) a->e = clSetKernelArg(a->k, a->i, n, v);
    if (a->e == CL_SUCCESS) a->i++;
}
static void a_mem(args *a, cl_mem m) { a_raw(a, sizeof m, &m); }
static void a_u64(args *a, cl_ulong v) { a_raw(a, sizeof v, &v); }
static void a_i32(args *a, cl_int v) { a_raw(a, sizeof v, &v); }
static void a_f32(args *a, cl_float v) { a_raw(a, sizeof v, &v); }
static void a_t(args *a, const tern_tensor *t)
{
    a_mem(a, ocl_mem(t));
    a_u64(a, ocl_off(t));
}
/* A placeholder (buffer, offset) for an absent tensor. */
static void a_none(args *a, const ocl_ctx *c)
{
    a_mem(a, c->err_mem);
    a_u64(a, 0);
}

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

static void keep_event(ocl_ctx *c, int kind, cl_event ev)
{
    if (c->n_events == c->cap_events) {
        int cap = c->cap_events ? 2 * c->cap_events : 512;
        ocl_event *ne = c->host->alloc((size_t)cap * sizeof *ne, 64);
        if (!ne) {
            clReleaseEvent(ev);
            return;
        }
        if (c->n_events) memcpy(ne, c->events, (size_t)c->n_events * sizeof *ne);
        c->host->free(c->events);
        c->events = ne;
        c->cap_events = cap;
    }
    c->events[c->n_events++] = (ocl_event){kind, ev};
}

/* Enqueues kernel a.k for the group's nodes (marking them done when
 * `last`); on failure reports it for the first member and drops the rest
 * of the run. TERN_OPENCL_FAIL=op:N makes the launch holding the N-th
 * node of op fail as a refused enqueue would. */
static int launch(ocl_ctx *c, args *a, int kind, cl_uint dims, const size_t *gws, const size_t *lws,
                  const int *nodes, int n, int last)
{
    if (c->dead) return -1;
    const tern_node *first = &c->q[nodes[0]].node;
    cl_int e = a->e;
    int injected = 0;
    for (int i = 0; i < n && last && c->fail_op >= 0; i++)
        if (c->q[nodes[i]].node.op == c->fail_op && ++c->fail_calls == c->fail_at) injected = 1;
    if (e != CL_SUCCESS) {
        c->host->node_error(first, TERN_EDEVICE, "opencl: argument %u of kernel %s: %s", a->i,
                            ocl_launch_names[kind], ocl_error_name(e));
        c->dead = 1;
        return -1;
    }
    cl_event ev = NULL;
    double t0 = ocl_now_s();
    e = injected ? CL_OUT_OF_RESOURCES
                 : clEnqueueNDRangeKernel(c->queue, a->k, dims, NULL, gws, lws, 0, NULL, c->profile ? &ev : NULL);
    double dt = ocl_now_s() - t0;
    c->host_enqueue_s += dt;
    c->prof[kind].host_seconds += dt;
    if (e != CL_SUCCESS) {
        c->host->node_error(first, TERN_EDEVICE, "opencl: launching %s for %s on %s failed: %s%s",
                            ocl_launch_names[kind], tern_op_name(first->op), c->device_name, ocl_error_name(e),
                            injected ? " (injected by TERN_OPENCL_FAIL)" : "");
        c->dead = 1;
        return -1;
    }
    if (ev) keep_event(c, kind, ev);
    c->launches[kind]++;
    if (c->flush_every && ++c->unflushed >= c->flush_every) {
        clFlush(c->queue);
        c->unflushed = 0;
    }
    if (last)
        for (int i = 0; i < n; i++) c->done[nodes[i]] = 1;
    return 0;
}

static int n_tok(const tern_tensor *x) { return (int)tern_tensor_nrows(x); }

/* ---- one launch per op kind ---- */

static void l_get_rows(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *tb = q->node.src[0], *ids = q->node.src[1], *y = q->node.dst;
    int K = (int)y->ne[0];
    args a = args_of(c, K_GET_ROWS);
    a_i32(&a, tb->type);
    a_t(&a, tb);
    a_u64(&a, tb->nb[1]);
    a_i32(&a, (cl_int)tern_tensor_nrows(tb));
    a_f32(&a, tb->scale);
    a_t(&a, ids);
    a_t(&a, y);
    a_i32(&a, K);
    a_i32(&a, i);
    a_mem(&a, c->err_mem);
    size_t gws[2] = {round_up((size_t)K, 64), (size_t)tern_tensor_nrows(y)}, lws[2] = {64, 1};
    launch(c, &a, L_GET_ROWS, 2, gws, lws, &i, 1, 1);
}

/* RMS_NORM i, and the QUANTIZE_ACT qi reading it (qi < 0: none). */
static void l_rms_norm(ocl_ctx *c, int i, int qi)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *x = q->node.src[0], *w = q->node.src[1], *y = q->node.dst;
    int n = (int)x->ne[0], rows = (int)tern_tensor_nrows(x);
    args a = args_of(c, K_RMS_NORM_Q);
    a_t(&a, x);
    if (w) a_t(&a, w);
    else a_none(&a, c);
    a_i32(&a, w != NULL);
    a_t(&a, y);
    a_i32(&a, n);
    a_f32(&a, q->node.fparams[0]);
    a_i32(&a, qi >= 0);
    if (qi >= 0) {
        a_t(&a, c->q[qi].node.dst);
        a_i32(&a, (cl_int)c->q[qi].node.dst->nb[1]);
    } else {
        a_none(&a, c);
        a_i32(&a, 0);
    }
    size_t gws = (size_t)rows * (size_t)c->row_wg, lws = (size_t)c->row_wg;
    int nodes[2] = {i, qi};
    launch(c, &a, qi >= 0 ? L_NORM_QUANT : L_RMS_NORM, 1, &gws, &lws, nodes, qi >= 0 ? 2 : 1, 1);
}

static void l_quantize(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *x = q->node.src[0], *y = q->node.dst;
    args a = args_of(c, K_QUANTIZE_ACT);
    a_t(&a, x);
    a_i32(&a, (cl_int)x->ne[0]);
    a_t(&a, y);
    a_i32(&a, (cl_int)y->nb[1]);
    size_t gws = (size_t)tern_tensor_nrows(x) * (size_t)c->row_wg, lws = (size_t)c->row_wg;
    launch(c, &a, L_QUANTIZE, 1, &gws, &lws, &i, 1, 1);
}

static void l_eltwise(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    int op = q->node.op == TERN_OP_ADD ? 0 : q->node.op == TERN_OP_MUL ? 1 : q->node.op == TERN_OP_RELU_SQ ? 2 : 3;
    const tern_tensor *x = q->node.src[0], *b = q->node.src[1] ? q->node.src[1] : x, *y = q->node.dst;
    size_t n = (size_t)tern_tensor_nelements(y);
    args a = args_of(c, K_ELTWISE);
    a_i32(&a, op);
    a_t(&a, x);
    a_t(&a, b);
    a_t(&a, y);
    a_u64(&a, n);
    size_t gws = round_up(n, 256), lws = 256;
    launch(c, &a, L_ELTWISE, 1, &gws, &lws, &i, 1, 1);
}

static void l_softmax(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *x = q->node.src[0];
    args a = args_of(c, K_SOFTMAX);
    a_t(&a, x);
    a_t(&a, q->node.dst);
    a_i32(&a, (cl_int)x->ne[0]);
    a_f32(&a, q->node.fparams[0]);
    size_t gws = (size_t)tern_tensor_nrows(x) * (size_t)c->row_wg, lws = (size_t)c->row_wg;
    launch(c, &a, L_SOFTMAX, 1, &gws, &lws, &i, 1, 1);
}

/* The f32 table 1/powf(base, 2i/n_dims), i < n_dims/2, formed on the host
 * exactly as scalar forms it; one buffer per (base, n_dims). */
static cl_mem rope_table(ocl_ctx *c, float base, int n_dims)
{
    for (int i = 0; i < c->n_ropes; i++)
        if (c->ropes[i].base == base && c->ropes[i].n_dims == n_dims) return c->ropes[i].mem;
    if (c->n_ropes == (int)(sizeof c->ropes / sizeof c->ropes[0])) return NULL;
    float tab[OCL_HD_MAX / 2];
    for (int i = 0; i < n_dims / 2; i++) tab[i] = 1.0f / powf(base, (float)(2 * i) / (float)n_dims);
    cl_int e;
    cl_mem m = clCreateBuffer(c->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              (size_t)(n_dims / 2 > 0 ? n_dims / 2 : 1) * sizeof(float), tab, &e);
    if (e != CL_SUCCESS) return NULL;
    c->ropes[c->n_ropes++] = (ocl_rope_tab){base, n_dims, m};
    return m;
}

/* Rotations ra, rb and cache stores sb (of rb's output) and sc; -1 absent.
 * tail_b: rb (and sb) run in the launch's last group. */
static void l_rope_kv(ocl_ctx *c, int ra, int rb, int sb, int sc, int tail_b)
{
    const ocl_qnode *A = ra >= 0 ? &c->q[ra] : NULL, *B = rb >= 0 ? &c->q[rb] : NULL;
    const ocl_qnode *SB = sb >= 0 ? &c->q[sb] : NULL, *SC = sc >= 0 ? &c->q[sc] : NULL;
    const ocl_qnode *r = A ? A : B, *any = r ? r : SC;
    const tern_tensor *pos = any->node.src[1];
    int hd = (int)any->node.src[0]->ne[0];
    int n_dims = r ? r->node.iparams[1] : hd;
    cl_mem tab = r ? rope_table(c, r->node.fparams[0], n_dims) : c->err_mem;
    int nodes[4], n = 0, kind = SB || SC ? (r ? L_ROPE_KV : L_KV_STORE) : L_ROPE;
    if (ra >= 0) nodes[n++] = ra;
    if (rb >= 0) nodes[n++] = rb;
    if (sb >= 0) nodes[n++] = sb;
    if (sc >= 0) nodes[n++] = sc;
    if (!tab) {
        c->host->node_error(&any->node, TERN_ENOMEM, "opencl: no room for a rope table");
        c->dead = 1;
        return;
    }
    args a = args_of(c, K_ROPE_KV);
    a_i32(&a, r ? r->node.iparams[0] : 0);
    a_i32(&a, n_dims);
    a_i32(&a, hd);
    a_f32(&a, r ? r->node.fparams[1] : 1.0f);
    a_mem(&a, tab);
    a_t(&a, pos);
    size_t rows_a = A ? (size_t)tern_tensor_nrows(A->node.src[0]) : 0;
    size_t rows_b = B ? (size_t)tern_tensor_nrows(B->node.src[0]) : 0;
    size_t rows_c = SC ? (size_t)tern_tensor_nrows(SC->node.src[0]) : 0;
    for (int k = 0; k < 2; k++) {
        const ocl_qnode *R = k ? B : A;
        a_i32(&a, R ? (cl_int)R->node.src[0]->ne[1] : 1);
        a_i32(&a, (cl_int)(k ? rows_b : rows_a));
        if (R) {
            a_t(&a, R->node.src[0]);
            a_t(&a, R->node.dst);
        } else {
            a_none(&a, c);
            a_none(&a, c);
        }
    }
    a_i32(&a, SB != NULL);
    if (SB) a_t(&a, SB->node.dst);
    else a_none(&a, c);
    a_i32(&a, SB && SB->node.dst->type == TERN_TYPE_F16);
    a_i32(&a, sb);
    a_i32(&a, (cl_int)rows_c);
    a_i32(&a, SC ? (cl_int)SC->node.src[0]->ne[1] : 1);
    if (SC) {
        a_t(&a, SC->node.src[0]);
        a_t(&a, SC->node.dst);
    } else {
        a_none(&a, c);
        a_none(&a, c);
    }
    a_i32(&a, SC && SC->node.dst->type == TERN_TYPE_F16);
    a_i32(&a, sc);
    a_i32(&a, (cl_int)(SB ? SB->node.dst->ne[2] : SC ? SC->node.dst->ne[2] : 1));
    a_mem(&a, c->err_mem);
    a_i32(&a, tail_b);
    a_mem(&a, c->ctrs);
    a_i32(&a, c->ctr_next);
    if (tail_b) c->ctr_next = (c->ctr_next + 1) % OCL_CTRS;
    size_t P = (size_t)(n_dims / 2 + hd - n_dims);
    size_t items = (rows_a + (tail_b ? 0 : rows_b)) * P + rows_c * (size_t)hd;
    size_t gws = round_up(items ? items : 1, 64), lws = 64;
    launch(c, &a, kind, 1, &gws, &lws, nodes, n, 1);
}

/* A tail's arguments (tmv_add, tmv_glu, attention): the RMS_NORM `norm`
 * (-1: none) and the QUANTIZE_ACT after it, the arrival counter. */
static void a_tail(args *a, ocl_ctx *c, int norm)
{
    const ocl_qnode *qn = norm >= 0 ? &c->q[norm] : NULL, *qq = norm >= 0 ? &c->q[norm + 1] : NULL;
    a_i32(a, qn != NULL);
    if (qn && qn->node.src[1]) a_t(a, qn->node.src[1]);
    else a_none(a, c);
    a_i32(a, qn && qn->node.src[1]);
    a_f32(a, qn ? qn->node.fparams[0] : 0.0f);
    if (qn) a_t(a, qn->node.dst), a_t(a, qq->node.dst);
    else a_none(a, c), a_none(a, c);
    a_i32(a, qq ? (cl_int)qq->node.dst->nb[1] : 0);
    a_mem(a, c->ctrs);
    a_i32(a, c->ctr_next);
}

/* ATTENTION i; norm >= 0: the RMS_NORM of its output and the QUANTIZE_ACT
 * after it as the launch's tail. */
static void l_attention(ocl_ctx *c, int i, int norm)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *qt = q->node.src[0], *kc = q->node.src[1], *vc = q->node.src[2];
    size_t rows = (size_t)tern_tensor_nrows(qt), n_ctx = (size_t)kc->ne[2];
    cl_int e = ocl_scratch(c, &c->scores, &c->scores_size, rows * n_ctx * (c->fp64 ? 8 : 4));
    if (e != CL_SUCCESS) {
        c->host->node_error(&q->node, TERN_ENOMEM, "opencl: attention scores (%zu bytes): %s",
                            rows * n_ctx * (c->fp64 ? 8 : 4), ocl_error_name(e));
        c->dead = 1;
        return;
    }
    args a = args_of(c, K_ATTENTION);
    a_t(&a, qt);
    a_t(&a, kc);
    a_t(&a, vc);
    a_t(&a, q->node.src[3]);
    a_t(&a, q->node.dst);
    a_i32(&a, (cl_int)qt->ne[0]);
    a_i32(&a, (cl_int)qt->ne[1]);
    a_i32(&a, (cl_int)kc->ne[1]);
    a_i32(&a, (cl_int)n_ctx);
    a_i32(&a, kc->type == TERN_TYPE_F16);
    a_f32(&a, q->node.fparams[0]);
    a_mem(&a, c->scores);
    a_i32(&a, i);
    a_mem(&a, c->err_mem);
    a_tail(&a, c, norm);
    if (norm >= 0) c->ctr_next = (c->ctr_next + 1) % OCL_CTRS;
    size_t gws = rows * (size_t)c->att_wg, lws = (size_t)c->att_wg;
    int nodes[3] = {i, norm, norm + 1};
    launch(c, &a, norm >= 0 ? L_ATTENTION_NQ : L_ATTENTION, 1, &gws, &lws, nodes, norm >= 0 ? 3 : 1, 1);
}

/* The rotations and cache stores a mode-0 GEMV runs for its matrices
 * (slot m: the ROPE of matrix m's output, the KV_STORE of that rotation
 * or of the output itself; -1 absent; write: the rotation is stored;
 * tab: the rotations' frequency table). */
typedef struct tmv_rope {
    int rope[3], store[3], write[3];
    cl_mem tab;
} tmv_rope;

/* tmv_qkv's rotation and cache arguments: rotations of y0 and y1, stores
 * of y1 and y2 (with_rope plans no others). */
static void a_rope(args *a, ocl_ctx *c, const tmv_rope *rp)
{
    const ocl_qnode *r = NULL, *any = NULL;
    int bits = 0;
    for (int m = 0; rp && m < 3; m++) {
        if (rp->rope[m] >= 0) r = &c->q[rp->rope[m]], bits |= 1 << m | rp->write[m] << (3 + m);
        if (rp->store[m] >= 0) {
            any = &c->q[rp->store[m]];
            bits |= 1 << (6 + m) | (any->node.dst->type == TERN_TYPE_F16) << (9 + m);
        }
    }
    if (r) any = r;
    a_i32(a, bits);
    a_i32(a, any ? (cl_int)any->node.src[0]->ne[0] : 2);
    a_f32(a, r ? r->node.fparams[1] : 1.0f);
    a_mem(a, r ? rp->tab : c->err_mem);
    if (any) a_t(a, any->node.src[1]);
    else a_none(a, c);
    for (int m = 0; m < 2; m++) {
        if (rp && rp->rope[m] >= 0) a_t(a, c->q[rp->rope[m]].node.dst);
        else a_none(a, c);
    }
    int n_ctx = 0;
    for (int m = 1; m < 3; m++) {
        if (rp && rp->store[m] >= 0) a_t(a, c->q[rp->store[m]].node.dst), n_ctx = (int)c->q[rp->store[m]].node.dst->ne[2];
        else a_none(a, c);
    }
    for (int m = 1; m < 3; m++) a_i32(a, rp ? rp->store[m] : -1);
    a_i32(a, n_ctx);
    a_mem(a, c->err_mem);
}

/* Matrix node qm's weights: buffer, (rows,) scale, output. */
static void a_matrix(args *a, const ocl_qnode *qm, int rows)
{
    const ocl_weight *w = ocl_weight_of(qm->node.src[1]);
    a_mem(a, w->buf->mem);
    if (rows >= 0) a_i32(a, rows);
    a_f32(a, qm->node.src[1]->scale);
    a_t(a, qm->node.dst);
}

/* Ternary GEMV (kernels/matmul.cl): mode 0 (tmv_qkv) over the matmuls
 * mt[0..n) (one input), with the rotations and cache stores rp (NULL:
 * none); mode 1 (tmv_add) mt[0] then ADD node `add`; mode 2 (tmv_glu) gate
 * mt[0], activation `act`, up mt[1], MUL `mul`; norm >= 0 (modes 1, 2):
 * the RMS_NORM of the sum or product and the QUANTIZE_ACT after it as the
 * launch's tail. wmask as in kernels/matmul.cl. */
static void l_tmv(ocl_ctx *c, int mode, const int *mt, int n, const tmv_rope *rp, int add, int act, int mul, int norm,
                  int wmask, int kind)
{
    static const int kernels[2][3] = {{K_TMV_QKV, K_TMV_ADD, K_TMV_GLU}, {K_TMV_QKV1, K_TMV_ADD1, K_TMV_GLU1}};
    const ocl_qnode *q0 = &c->q[mt[0]];
    const tern_tensor *x = q0->node.src[0];
    const ocl_weight *w0 = ocl_weight_of(q0->node.src[1]);
    args a = args_of(c, kernels[n_tok(x) == 1][mode]);
    a_t(&a, x);
    a_i32(&a, (cl_int)x->nb[1]);
    a_i32(&a, n_tok(x));
    a_i32(&a, (cl_int)w0->ku);
    size_t groups = 0;
    if (mode == 0) {
        a_i32(&a, wmask);
        for (int m = 0; m < 3; m++) {
            const ocl_weight *w = ocl_weight_of(c->q[mt[m < n ? m : 0]].node.src[1]);
            a_matrix(&a, &c->q[mt[m < n ? m : 0]], m < n ? (cl_int)w->N : 0);
            if (m < n) groups += (size_t)(w->N + c->mv_wg / 16 - 1) / (c->mv_wg / 16);
        }
        a_rope(&a, c, rp);
    } else if (mode == 1) {
        const ocl_qnode *qa = &c->q[add];
        a_matrix(&a, q0, (cl_int)w0->N);
        a_t(&a, same(qa->node.src[0], q0->node.dst) ? qa->node.src[1] : qa->node.src[0]);
        a_t(&a, qa->node.dst);
        a_tail(&a, c, norm);
        c->ctr_next = (c->ctr_next + 1) % OCL_CTRS;
        groups = (size_t)(w0->N + c->mv_wg / 16 - 1) / (c->mv_wg / 16);
    } else {
        a_i32(&a, c->q[act].node.op == TERN_OP_SILU);
        a_i32(&a, wmask);
        a_matrix(&a, q0, (cl_int)w0->N);
        a_matrix(&a, &c->q[mt[1]], -1);
        a_t(&a, c->q[mul].node.dst);
        a_t(&a, c->q[act].node.dst);
        a_tail(&a, c, norm);
        if (norm >= 0) c->ctr_next = (c->ctr_next + 1) % OCL_CTRS;
        groups = (size_t)(w0->N + c->mv_wg / 32 - 1) / (c->mv_wg / 32);
    }
    int nodes[12], k = 0;
    for (int m = 0; m < n; m++) nodes[k++] = mt[m];
    for (int m = 0; rp && m < 3; m++) {
        if (rp->rope[m] >= 0) nodes[k++] = rp->rope[m];
        if (rp->store[m] >= 0) nodes[k++] = rp->store[m];
    }
    if (mode == 1) nodes[k++] = add;
    if (mode == 2) nodes[k++] = act, nodes[k++] = mul;
    if (norm >= 0) nodes[k++] = norm, nodes[k++] = norm + 1;
    size_t gws = groups * c->mv_wg, lws = c->mv_wg;
    launch(c, &a, kind, 1, &gws, &lws, nodes, k, 1);
}

static void l_tmm(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *x = q->node.src[0];
    const ocl_weight *w = ocl_weight_of(q->node.src[1]);
    args a = args_of(c, K_TMM);
    a_t(&a, x);
    a_i32(&a, (cl_int)x->nb[1]);
    a_i32(&a, n_tok(x));
    a_i32(&a, (cl_int)w->ku);
    a_mem(&a, w->buf->mem);
    a_i32(&a, (cl_int)w->N);
    a_f32(&a, q->node.src[1]->scale);
    a_t(&a, q->node.dst);
    size_t gws[2] = {round_up((size_t)w->N, OCL_TMM_TILE), (size_t)(n_tok(x) + OCL_TMM_TILE - 1) / OCL_TMM_TILE};
    size_t lws[2] = {OCL_TMM_WG, 1};
    launch(c, &a, L_TMM, 2, gws, lws, &i, 1, 1);
}

/* CPU devices: one work-item per output row, every token. */
static void l_tmv_cpu(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *x = q->node.src[0];
    const ocl_weight *w = ocl_weight_of(q->node.src[1]);
    args a = args_of(c, K_TMV_CPU);
    a_t(&a, x);
    a_i32(&a, (cl_int)x->nb[1]);
    a_i32(&a, n_tok(x));
    a_i32(&a, (cl_int)w->ku);
    a_mem(&a, w->buf->mem);
    a_i32(&a, (cl_int)w->N);
    a_f32(&a, q->node.src[1]->scale);
    a_t(&a, q->node.dst);
    size_t gws = round_up((size_t)w->N, 16), lws = 16;
    launch(c, &a, L_TMV_CPU, 1, &gws, &lws, &i, 1, 1);
}

static void l_matmul(ocl_ctx *c, int i)
{
    const ocl_qnode *q = &c->q[i];
    const tern_tensor *x = q->node.src[0];
    const ocl_weight *w = ocl_weight_of(q->node.src[1]);
    int K = (int)x->ne[0], T = n_tok(x);
    if (w->kind == W_FLOAT) {
        /* the float GEMV for the fewest tokens a group that hold T (8 lanes a row) */
        static const struct { int tokens, kernel; } fmvs[] = {{1, K_FMV1}, {2, K_FMV2}, {4, K_FMV4}, {OCL_MV_TOK, K_FMV}};
        int f = 0, last = (int)(sizeof fmvs / sizeof fmvs[0]) - 1;
        while (f < last && fmvs[f].tokens < T) f++;
        size_t gf[2] = {(size_t)(w->N + c->mv_wg / 8 - 1) / (c->mv_wg / 8) * c->mv_wg,
                        (size_t)(T + fmvs[f].tokens - 1) / fmvs[f].tokens};
        size_t lws[2] = {c->mv_wg, 1}, gcpu = round_up((size_t)w->N, 16), lcpu = 16;
        args a = args_of(c, c->cpu_kernels ? K_FMV_CPU : fmvs[f].kernel);
        a_i32(&a, q->node.src[1]->type);
        a_t(&a, x);
        a_i32(&a, K);
        a_i32(&a, T);
        a_mem(&a, w->buf->mem);
        a_u64(&a, 0);
        a_u64(&a, q->node.src[1]->nb[1]);
        a_i32(&a, (cl_int)w->N);
        a_t(&a, q->node.dst);
        if (c->cpu_kernels) launch(c, &a, L_FMV_CPU, 1, &gcpu, &lcpu, &i, 1, 1);
        else launch(c, &a, L_FMV, 2, gf, lws, &i, 1, 1);
        return;
    }
    size_t need = (size_t)T * (size_t)K + (size_t)T * (size_t)(K / 32) * 4;
    cl_int e = ocl_scratch(c, &c->q8act, &c->q8act_size, need);
    if (e != CL_SUCCESS) {
        c->host->node_error(&q->node, TERN_ENOMEM, "opencl: Q8_0 activations (%zu bytes): %s", need, ocl_error_name(e));
        c->dead = 1;
        return;
    }
    args a = args_of(c, K_Q8ACT);
    a_t(&a, x);
    a_i32(&a, K);
    a_i32(&a, T);
    a_mem(&a, c->q8act);
    size_t g1[2] = {round_up((size_t)K / 32, 32), (size_t)T}, l1[2] = {32, 1};
    if (launch(c, &a, L_Q8ACT, 2, g1, l1, &i, 1, 0)) return;
    a = args_of(c, K_Q8MV);
    a_mem(&a, c->q8act);
    a_i32(&a, K);
    a_i32(&a, T);
    a_mem(&a, w->buf->mem);
    a_u64(&a, 0);
    a_u64(&a, w->d_off);
    a_i32(&a, (cl_int)w->N);
    a_t(&a, q->node.dst);
    size_t lq = c->cpu_kernels ? 16 : 64, gq = round_up((size_t)w->N, lq);
    launch(c, &a, L_Q8MV, 1, &gq, &lq, &i, 1, 1);
}

/* ---- the planner ---- */

static int is_op(const ocl_ctx *c, int i, int op) { return i >= 0 && i < c->n_q && !c->done[i] && c->q[i].node.op == op; }

static int small_tmv(const ocl_ctx *c, int i)
{
    return is_op(c, i, TERN_OP_MATMUL_TERNARY) && n_tok(c->q[i].node.src[0]) <= OCL_MV_TOK;
}

/* The next not-done node after i (within NEAR) for which ok() holds:
 * partners of a fusion are neighbours in the graphs. */
#define NEAR 6
static int find(const ocl_ctx *c, int i, int (*ok)(const ocl_ctx *, int, int), int arg)
{
    int end = c->n_q < i + 1 + NEAR ? c->n_q : i + 1 + NEAR;
    for (int j = i + 1; j < end; j++)
        if (!c->done[j] && ok(c, j, arg)) return j;
    return -1;
}

static int same_input_mt(const ocl_ctx *c, int j, int i)
{
    return small_tmv(c, j) && same(c->q[j].node.src[0], c->q[i].node.src[0]) &&
           ocl_weight_of(c->q[j].node.src[1])->ku == ocl_weight_of(c->q[i].node.src[1])->ku;
}

static int act_of(const ocl_ctx *c, int j, int i)
{
    return (is_op(c, j, TERN_OP_RELU_SQ) || is_op(c, j, TERN_OP_SILU)) && same(c->q[j].node.src[0], c->q[i].node.dst);
}

/* The MUL of the outputs of nodes a and u, after both; -1 none. */
static int find_mul(const ocl_ctx *c, int a, int u)
{
    const tern_tensor *ta = c->q[a].node.dst, *tu = c->q[u].node.dst;
    int from = a > u ? a : u, end = c->n_q < from + 1 + WINDOW ? c->n_q : from + 1 + WINDOW;
    for (int j = from + 1; j < end; j++) {
        const tern_node *m = &c->q[j].node;
        if (is_op(c, j, TERN_OP_MUL) &&
            ((same(m->src[0], ta) && same(m->src[1], tu)) || (same(m->src[0], tu) && same(m->src[1], ta))))
            return j;
    }
    return -1;
}

/* g (its last member `last` writing z) grows a tail when the RMS_NORM of z
 * and the QUANTIZE_ACT of that follow: the norm index, or -1 (g as it was;
 * 0 when g itself fails). */
static int with_tail(ocl_ctx *c, group *g, int last, int *ok)
{
    const tern_tensor *z = c->q[last].node.dst;
    int nn = last + 1, qn = last + 2, cur = g->cur;
    *ok = 1;
    if (c->fuse & OCL_FUSE_TAIL && is_op(c, nn, TERN_OP_RMS_NORM) && same(c->q[nn].node.src[0], z) &&
        is_op(c, qn, TERN_OP_QUANTIZE_ACT) && same(c->q[qn].node.src[0], c->q[nn].node.dst)) {
        group h = *g;
        h.cur = 1;
        add_member(&h, nn, 1);
        add_member(&h, qn, 1);
        add_read(&h, nn, z);
        add_read(&h, nn, c->q[nn].node.src[1]);
        if (group_ok(c, &h)) {
            *g = h;
            return nn;
        }
    }
    g->cur = cur;
    *ok = group_ok(c, g);
    return -1;
}

static int try_glu(ocl_ctx *c, int i)
{
    int act = find(c, i, act_of, i), up = find(c, i, same_input_mt, i);
    if (act < 0 || up < 0 || ocl_weight_of(c->q[up].node.src[1])->N != ocl_weight_of(c->q[i].node.src[1])->N)
        return 0;
    int mul = find_mul(c, act, up);
    if (mul < 0) return 0;
    group g = {0};
    add_member(&g, i, 0);
    add_member(&g, act, 0);
    add_member(&g, up, 0);
    add_member(&g, mul, 0);
    add_read(&g, i, c->q[i].node.src[0]);
    add_read(&g, up, c->q[up].node.src[0]);
    int ok, norm = mul == g.node[g.n - 1] ? with_tail(c, &g, mul, &ok) : (ok = group_ok(c, &g), -1);
    if (!ok) return 0;
    int wmask = 0;
    for (int k = 0; k < g.n; k++) {
        if (!g.write[k]) continue;
        int n = g.node[k];
        if (g.phase[k] == 0) wmask |= n == i ? 1 : n == up ? 2 : n == mul ? 8 : 16;
    }
    int mt[2] = {i, up};
    l_tmv(c, 2, mt, 2, NULL, -1, act, mul, norm, wmask, norm >= 0 ? L_TMV_GLU_NQ : L_TMV_GLU);
    return 1;
}

static int rope_like(const ocl_ctx *c, int j, int i)
{
    const tern_node *a = &c->q[i].node, *b = &c->q[j].node;
    return is_op(c, j, TERN_OP_ROPE) && same(a->src[1], b->src[1]) && a->iparams[0] == b->iparams[0] &&
           a->iparams[1] == b->iparams[1] && a->fparams[0] == b->fparams[0] && a->fparams[1] == b->fparams[1] &&
           a->src[0]->ne[0] == b->src[0]->ne[0];
}

/* A KV_STORE of node i's output (i a ROPE). */
static int store_of(const ocl_ctx *c, int j, int i)
{
    return is_op(c, j, TERN_OP_KV_STORE) && same(c->q[j].node.src[0], c->q[i].node.dst);
}

/* A ROPE of node i's output. */
static int rope_of(const ocl_ctx *c, int j, int i)
{
    return is_op(c, j, TERN_OP_ROPE) && same(c->q[j].node.src[0], c->q[i].node.dst);
}

/* Can the GEMV of matrix node `mt` (N rows) make node k's rows (a ROPE or
 * KV_STORE of its output, of head size hd and positions pos) a rotation
 * pair a lane-group? */
static int pairs_ok(const ocl_ctx *c, int k, int mt, int hd, const tern_tensor *pos)
{
    const tern_node *n = &c->q[k].node;
    int64_t N = ocl_weight_of(c->q[mt].node.src[1])->N;
    if (n->src[0]->ne[0] != hd || hd < 2 || hd % 2 || N % hd || n->src[0]->ne[0] * n->src[0]->ne[1] != N ||
        !same(n->src[1], pos))
        return 0;
    if (n->op == TERN_OP_KV_STORE) return n->dst->type == TERN_TYPE_F16 || n->dst->type == TERN_TYPE_F32;
    /* NEOX over whole heads only: how the models with ternary weights rotate */
    return n->iparams[0] == TERN_ROPE_NEOX && n->iparams[1] == hd;
}

/* The q/k/v group g (matrices mt[0..n)) grows the rotations of its outputs
 * and the cache stores of those rotations or of the outputs, all over one
 * head size and one position tensor, when the checks allow (and in the
 * places tmv_qkv has: rotations of the first two, stores of the last
 * two): rp says which; g and rp as they were otherwise. */
static void with_rope(ocl_ctx *c, group *g, const int *mt, int n, tmv_rope *rp)
{
    tmv_rope r;
    group h = *g;
    int first = -1, n_ctx = -1, hd = 0;
    const tern_tensor *pos = NULL;
    for (int m = 0; m < 3; m++) r.rope[m] = r.store[m] = -1, r.write[m] = 0;
    for (int m = 0; m < n; m++) {
        int ro = find(c, mt[m], rope_of, mt[m]), from = ro >= 0 ? ro : mt[m], st = find(c, from, store_of, from);
        if (!pos) {
            int k = ro >= 0 ? ro : st;
            if (k < 0) continue;
            pos = c->q[k].node.src[1];
            hd = (int)c->q[k].node.src[0]->ne[0];
        }
        if ((ro >= 0 && m > 1) || (st >= 0 && m < 1)) return; /* tmv_qkv: q, k rotate; k, v are stored */
        if (ro >= 0 && (!pairs_ok(c, ro, mt[m], hd, pos) || (first >= 0 && !rope_like(c, ro, first)))) return;
        if (st >= 0 && (!pairs_ok(c, st, mt[m], hd, pos) || (n_ctx >= 0 && c->q[st].node.dst->ne[2] != n_ctx))) return;
        if (ro >= 0) {
            if (first < 0) first = ro;
            r.rope[m] = ro;
            add_member(&h, ro, 0);
            add_read(&h, ro, pos);
        }
        if (st >= 0) {
            n_ctx = (int)c->q[st].node.dst->ne[2];
            r.store[m] = st;
            add_member(&h, st, 1);
            add_read(&h, st, pos);
        }
    }
    r.tab = first >= 0 ? rope_table(c, c->q[first].node.fparams[0], c->q[first].node.iparams[1]) : NULL;
    if (!pos || (first >= 0 && !r.tab) || !group_ok(c, &h)) return;
    for (int k = 0; k < h.n; k++)
        for (int m = 0; m < 3; m++)
            if (h.node[k] == r.rope[m]) r.write[m] = h.write[k];
    *g = h;
    *rp = r;
}

static int try_multi(ocl_ctx *c, int i)
{
    group g = {0};
    add_member(&g, i, 0);
    add_read(&g, i, c->q[i].node.src[0]);
    for (int j = i; g.n < 3;) {
        j = find(c, j, same_input_mt, i);
        if (j < 0) break;
        group h = g;
        add_member(&h, j, 0);
        add_read(&h, j, c->q[j].node.src[0]);
        if (group_ok(c, &h)) g = h;
    }
    if (g.n < 2 || !group_ok(c, &g)) return 0;
    int wmask = 0, mt[3], n = g.n;
    for (int k = 0; k < n; k++) wmask |= g.write[k] << k, mt[k] = g.node[k];
    tmv_rope rp = {{-1, -1, -1}, {-1, -1, -1}, {0}, NULL};
    if (c->fuse & OCL_FUSE_QKV_ROPE) with_rope(c, &g, mt, n, &rp);
    for (int k = 0; k < g.n; k++) /* the matrices' outputs may be dead now */
        for (int m = 0; m < n; m++)
            if (g.node[k] == mt[m]) wmask = (wmask & ~(1 << m)) | g.write[k] << m;
    int fused = rp.rope[0] >= 0 || rp.rope[1] >= 0 || rp.rope[2] >= 0 || rp.store[0] >= 0 || rp.store[1] >= 0 ||
                rp.store[2] >= 0;
    l_tmv(c, 0, mt, n, &rp, -1, -1, -1, -1, wmask, fused ? L_TMV_QKV_ROPE : L_TMV_MULTI);
    return 1;
}

static int try_add(ocl_ctx *c, int i)
{
    int j = i + 1;
    if (!is_op(c, j, TERN_OP_ADD)) return 0;
    const tern_node *add = &c->q[j].node;
    const tern_tensor *y = c->q[i].node.dst;
    int first = same(add->src[0], y), second = same(add->src[1], y);
    if (first == second) return 0; /* not read, or y + y */
    group g = {0};
    add_member(&g, i, 1); /* the tail reads y back */
    add_read(&g, i, c->q[i].node.src[0]);
    g.cur = 1; /* the add runs in the tail, after every group read x */
    add_member(&g, j, 1);
    add_read(&g, j, first ? add->src[1] : add->src[0]);
    int ok, norm = with_tail(c, &g, j, &ok);
    if (!ok) return 0;
    int mt[1] = {i};
    l_tmv(c, 1, mt, 1, NULL, j, -1, -1, norm, 1, norm >= 0 ? L_TMV_ADD_NQ : L_TMV_ADD);
    return 1;
}

/* Another KV_STORE that can share rope i's launch (same positions, head
 * size); not one of the two stores already chosen. */
static int other_store(const ocl_ctx *c, int i, int not1, int not2, int cache_like)
{
    int end = c->n_q < i + 1 + WINDOW ? c->n_q : i + 1 + WINDOW;
    const tern_node *r = &c->q[i].node;
    for (int j = i + 1; j < end; j++) {
        if (j == not1 || j == not2 || !is_op(c, j, TERN_OP_KV_STORE)) continue;
        const tern_node *s = &c->q[j].node;
        if (same(s->src[1], r->src[1]) && s->src[0]->ne[0] == r->src[0]->ne[0] &&
            (cache_like < 0 || (s->dst->ne[2] == c->q[cache_like].node.dst->ne[2] &&
                                s->dst->buffer == c->q[cache_like].node.dst->buffer)))
            return j;
    }
    return -1;
}

/* At ROPE i: one launch with a second ROPE over the same positions, the
 * store of whichever output is stored (slot B) and one more store (slot
 * C), or the largest part of that the checks allow; i alone at worst. */
static void plan_rope(ocl_ctx *c, int i)
{
    int ro = -1, si = -1, so = -1, sc = -1;
    if (c->fuse & OCL_FUSE_ROPE_KV) {
        ro = find(c, i, rope_like, i);
        si = find(c, i, store_of, i);
        so = ro >= 0 ? find(c, ro, store_of, ro) : -1;
        if (si >= 0) so = -1; /* one rotation's store per launch: i's */
        sc = other_store(c, i, si, so, si >= 0 ? si : so);
    }
    /* masks over {other rope, the store of slot B, the extra store}, most
     * first; each tried with B in the main phase, then (when A is there)
     * with B and its store in the tail */
    static const int order[8] = {7, 6, 5, 3, 4, 2, 1, 0};
    for (int k = 0; k < 8; k++) {
        int m = order[k], r2 = m & 1 ? ro : -1, sB = m & 2 ? (si >= 0 ? si : so) : -1, s3 = m & 4 ? sc : -1;
        if ((m & 1 && ro < 0) || (m & 2 && sB < 0) || (m & 4 && sc < 0)) continue;
        if (sB >= 0 && sB == so && r2 < 0) continue; /* the other rope's store needs it */
        int A = si >= 0 ? r2 : i, B = si >= 0 ? i : r2;
        for (int tail = 0; tail < 2; tail++) {
            /* one group does a tail: for a decode step's few rows only */
            if (tail && (A < 0 || B < 0 || tern_tensor_nrows(c->q[B].node.src[0]) > 8 * OCL_MV_TOK)) break;
            group g = {0};
            int mem[4] = {A, B, sB, s3};
            for (int q = 0; q < 4; q++) {
                if (mem[q] < 0) continue;
                g.cur = tail && (mem[q] == B || mem[q] == sB);
                add_member(&g, mem[q], 1); /* this kernel stores every output */
            }
            g.cur = 0;
            add_read(&g, i, c->q[i].node.src[1]);
            if (A >= 0) add_read(&g, A, c->q[A].node.src[0]);
            if (s3 >= 0) add_read(&g, s3, c->q[s3].node.src[0]);
            g.cur = tail;
            if (B >= 0) add_read(&g, B, c->q[B].node.src[0]);
            if (g.n == 1 || group_ok(c, &g)) {
                l_rope_kv(c, A, B, sB, s3, tail);
                return;
            }
        }
    }
}

static void plan_node(ocl_ctx *c, int i)
{
    const tern_node *nd = &c->q[i].node;
    switch (nd->op) {
    case TERN_OP_GET_ROWS: l_get_rows(c, i); return;
    case TERN_OP_RMS_NORM: {
        int qi = i + 1;
        if (c->fuse & OCL_FUSE_NORM_QUANT && is_op(c, qi, TERN_OP_QUANTIZE_ACT) && same(c->q[qi].node.src[0], nd->dst)) {
            group g = {0};
            add_member(&g, i, 1); /* read back by the kernel */
            add_member(&g, qi, 1);
            add_read(&g, i, nd->src[0]);
            add_read(&g, i, nd->src[1]);
            /* one row: the group reads all of x before it writes q */
            if (tern_tensor_nrows(nd->src[0]) == 1) g.n_rd = 0;
            if (group_ok(c, &g)) {
                l_rms_norm(c, i, qi);
                return;
            }
        }
        l_rms_norm(c, i, -1);
        return;
    }
    case TERN_OP_QUANTIZE_ACT: l_quantize(c, i); return;
    case TERN_OP_ADD:
    case TERN_OP_MUL:
    case TERN_OP_RELU_SQ:
    case TERN_OP_SILU: l_eltwise(c, i); return;
    case TERN_OP_SOFTMAX: l_softmax(c, i); return;
    case TERN_OP_ROPE: plan_rope(c, i); return;
    case TERN_OP_KV_STORE: l_rope_kv(c, -1, -1, -1, i, 0); return;
    case TERN_OP_ATTENTION: {
        int ok = 1, norm = -1;
        if (n_tok(nd->src[0]) / (int)nd->src[0]->ne[1] <= OCL_MV_TOK && !c->cpu_kernels) {
            group g = {0};
            add_member(&g, i, 1); /* the tail reads the output back */
            add_read(&g, i, nd->src[0]);
            norm = with_tail(c, &g, i, &ok);
        }
        l_attention(c, i, ok ? norm : -1);
        return;
    }
    case TERN_OP_MATMUL_TERNARY:
        if (c->cpu_kernels) {
            l_tmv_cpu(c, i);
            return;
        }
        if (n_tok(nd->src[0]) > OCL_MV_TOK) {
            l_tmm(c, i);
            return;
        }
        if ((c->fuse & OCL_FUSE_GLU && try_glu(c, i)) || (c->fuse & OCL_FUSE_MULTI && try_multi(c, i)) ||
            (c->fuse & OCL_FUSE_ADD && try_add(c, i)))
            return;
        l_tmv(c, 0, &i, 1, NULL, -1, -1, -1, -1, 1, L_TMV);
        return;
    case TERN_OP_MATMUL: l_matmul(c, i); return;
    default:
        c->host->node_error(nd, TERN_EUNSUPPORTED, "opencl: no kernel for %s", tern_op_name(nd->op));
        c->dead = 1;
    }
}

void ocl_flush(ocl_ctx *c)
{
    for (int i = c->n_flushed; i < c->n_q && !c->dead; i++)
        if (!c->done[i]) plan_node(c, i);
    c->n_flushed = c->n_q;
}

/* ---- sync ---- */

static void kernel_error(ocl_ctx *c, const int *e)
{
    int idx = e[1] >= 0 && e[1] < c->n_q ? e[1] : 0;
    const tern_node *nd = &c->q[idx].node;
    if (e[0] == 1 && nd->op == TERN_OP_GET_ROWS)
        c->host->node_error(nd, TERN_EINVAL, "row id %d outside the table of %lld rows", e[2],
                            (long long)tern_tensor_nrows(nd->src[0]));
    else if (e[0] == 2)
        c->host->node_error(nd, TERN_ECONTEXT, "position %d outside the KV cache of %lld", e[2],
                            (long long)(nd->op == TERN_OP_ATTENTION ? nd->src[1]->ne[2] : nd->dst->ne[2]));
    else
        c->host->node_error(nd, TERN_EDEVICE, "opencl: kernel error %d at node %d", e[0], e[1]);
}

static void collect_profile(ocl_ctx *c)
{
    for (int i = 0; i < c->n_events; i++) {
        cl_ulong t0 = 0, t1 = 0;
        if (clGetEventProfilingInfo(c->events[i].ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) ==
                CL_SUCCESS &&
            clGetEventProfilingInfo(c->events[i].ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS &&
            t1 >= t0) {
            c->prof[c->events[i].kind].launches++;
            c->prof[c->events[i].kind].seconds += 1e-9 * (double)(t1 - t0);
        }
        clReleaseEvent(c->events[i].ev);
    }
    c->n_events = 0;
}

tern_status ocl_sync(void *ctx, char *err, size_t errlen)
{
    ocl_ctx *c = ctx;
    if (!ocl_run_owned(c)) return TERN_OK; /* nothing of this thread's is queued */
    int n = c->n_q;
    double t0 = ocl_now_s();
    /* TERN_OPENCL_GATE: the device starts only once the host has enqueued
     * everything, so the wait is the device's time alone (not overlapped
     * with the host's enqueueing, as it is otherwise) */
    cl_event gate = c->gate ? clCreateUserEvent(c->context, NULL) : NULL;
    if (gate) clEnqueueBarrierWithWaitList(c->queue, 1, &gate, NULL);
    ocl_flush(c);
    double t1 = ocl_now_s();
    if (gate) clSetUserEventStatus(gate, CL_COMPLETE), clReleaseEvent(gate);
    c->syncs++;
    tern_status st = TERN_OK;
    int e4[4] = {0, 0, 0, 0};
    cl_int e = clEnqueueReadBuffer(c->queue, c->err_mem, CL_TRUE, 0, sizeof e4, e4, 0, NULL, NULL);
    if (e == CL_SUCCESS) e = clFinish(c->queue);
    if (e != CL_SUCCESS) {
        snprintf(err, errlen, "opencl: waiting for %d queued nodes on %s: %s", n, c->device_name, ocl_error_name(e));
        st = TERN_EDEVICE;
    } else if (e4[0]) {
        kernel_error(c, e4);
        int zero[4] = {0, 0, 0, 0};
        clEnqueueWriteBuffer(c->queue, c->err_mem, CL_TRUE, 0, sizeof zero, zero, 0, NULL, NULL);
    }
    if (st || c->dead) { /* a launch that never finished may have left tail counts behind */
        int zero = 0;
        clEnqueueFillBuffer(c->queue, c->ctrs, &zero, sizeof zero, 0, OCL_CTRS * sizeof(int), 0, NULL, NULL);
        clFinish(c->queue);
    }
    if (!st && c->fail_sync_at && ++c->fail_syncs == c->fail_sync_at) {
        snprintf(err, errlen, "opencl: injected failure of sync %d (TERN_OPENCL_FAIL_SYNC; %d nodes)", c->fail_syncs, n);
        st = TERN_EDEVICE;
    }
    collect_profile(c);
    c->host_plan_s += t1 - t0;
    c->host_wait_s += ocl_now_s() - t1;
    for (int i = 0; i < n; i++) c->nodes_run += c->done[i];
    c->n_q = c->n_flushed = 0;
    c->dead = 0;
    ocl_run_unlock(c);
    return st;
}
