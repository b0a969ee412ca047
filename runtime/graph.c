/* graph.c - the graph IR: builder calls, planning (backend per node, weight
 * resolution, arena offsets by tensor lifetime) and the executor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph_impl.h"
#include "model_impl.h"

#define ALIGN 64

static size_t align_up(size_t v) { return (v + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

tern_status tern_graph_create(int n_tok, int n_out, tern_graph **out, tern_error *err)
{
    if (n_tok < 1 || n_out < 1 || n_out > n_tok)
        return tern_error_set(err, TERN_EINVAL, "graph shape: n_tok %d, n_out %d", n_tok, n_out);
    tern_graph *g = calloc(1, sizeof *g);
    if (!g) return tern_error_set(err, TERN_ENOMEM, "out of memory creating graph");
    g->n_tok = n_tok;
    g->n_out = n_out;
    g->output = -1;
    int64_t ne_tok = n_tok, ne_out = n_out;
    g->in_tokens = tern_graph_add_tensor(g, GT_INPUT, TERN_TYPE_I32, 1, &ne_tok, "tokens", err);
    g->in_positions = tern_graph_add_tensor(g, GT_INPUT, TERN_TYPE_I32, 1, &ne_tok, "positions", err);
    g->in_out_ids = tern_graph_add_tensor(g, GT_INPUT, TERN_TYPE_I32, 1, &ne_out, "out_ids", err);
    if (g->in_out_ids < 0) {
        tern_graph_free(g);
        return TERN_ENOMEM;
    }
    *out = g;
    return TERN_OK;
}

void tern_graph_free(tern_graph *g)
{
    if (!g) return;
    free(g->tensors);
    free(g->nodes);
    free(g->arena);
    free(g->inputs_mem);
    free(g->scratch);
    free(g);
}

int tern_graph_n_nodes(const tern_graph *g) { return g->n_nodes; }
int tern_graph_n_fallback(const tern_graph *g) { return g->n_fallback; }
size_t tern_graph_arena_bytes(const tern_graph *g) { return g->arena_size; }

static int new_tensor(tern_graph *g, tern_error *err)
{
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? g->cap_tensors * 2 : 256;
        graph_tensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
        if (!t) return tern_error_set(err, TERN_ENOMEM, "out of memory building graph"), -1;
        g->tensors = t;
        g->cap_tensors = cap;
    }
    graph_tensor *gt = &g->tensors[g->n_tensors];
    memset(gt, 0, sizeof *gt);
    gt->view_of = -1;
    gt->last_use = -1;
    return g->n_tensors++;
}

int tern_graph_add_tensor(tern_graph *g, int kind, int type, int n_dims, const int64_t *ne,
                          const char *name, tern_error *err)
{
    if (g->planned) return tern_error_set(err, TERN_EINVAL, "graph already planned"), -1;
    for (int i = 0; i < n_dims; i++)
        if (ne[i] < 1 || ne[i] > ((int64_t)1 << 40))
            return tern_error_set(err, TERN_EINVAL, "tensor '%s': dimension %d is %lld",
                                  name ? name : "?", i, (long long)ne[i]), -1;
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    graph_tensor *gt = &g->tensors[id];
    gt->kind = kind;
    tern_tensor_init(&gt->t, type, n_dims, ne);
    snprintf(gt->name, sizeof gt->name, "%s", name ? name : "");
    gt->t.name = NULL;
    return id;
}

int tern_graph_add_weight(tern_graph *g, tern_model_weight *w, int purpose, tern_error *err)
{
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    graph_tensor *gt = &g->tensors[id];
    gt->kind = GT_WEIGHT;
    gt->weight = w;
    gt->purpose = purpose;
    gt->t = w->file;
    snprintf(gt->name, sizeof gt->name, "%s", w->gt->name_z);
    return id;
}

int tern_graph_add_extern(tern_graph *g, tern_tensor *t, tern_error *err)
{
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    g->tensors[id].kind = GT_EXTERN;
    g->tensors[id].t = *t;
    return id;
}

static int valid_id(const tern_graph *g, int id) { return id >= 0 && id < g->n_tensors; }

int tern_graph_add_view(tern_graph *g, int src, int n_dims, const int64_t *ne, tern_error *err)
{
    if (!valid_id(g, src)) return tern_error_set(err, TERN_EINVAL, "view of unknown tensor %d", src), -1;
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= ne[i];
    const tern_tensor *st = &g->tensors[src].t;
    if (n != tern_tensor_nelements(st) || st->type != TERN_TYPE_F32)
        return tern_error_set(err, TERN_EINVAL, "view: %lld elements of a %lld-element %s tensor",
                              (long long)n, (long long)tern_tensor_nelements(st),
                              tern_type_name(st->type)), -1;
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    graph_tensor *gt = &g->tensors[id];
    gt->kind = GT_VIEW;
    while (g->tensors[src].kind == GT_VIEW) src = g->tensors[src].view_of;
    gt->view_of = src;
    tern_tensor_init(&gt->t, TERN_TYPE_F32, n_dims, ne);
    return id;
}

static int push_node(tern_graph *g, int op, int dst, const int *src, int n_src, const int32_t *ip,
                     const float *fp, tern_error *err)
{
    if (n_src > TERN_NODE_MAX_SRC) return tern_error_set(err, TERN_EINVAL, "too many sources"), -1;
    for (int i = 0; i < n_src; i++)
        if (src[i] != -1 && !valid_id(g, src[i]))
            return tern_error_set(err, TERN_EINVAL, "%s: source %d is not a tensor",
                                  tern_op_name(op), i), -1;
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 256;
        graph_node *n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n) return tern_error_set(err, TERN_ENOMEM, "out of memory building graph"), -1;
        g->nodes = n;
        g->cap_nodes = cap;
    }
    graph_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->node.op = op;
    n->dst = dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++) n->src[i] = i < n_src ? src[i] : -1;
    if (ip) memcpy(n->node.iparams, ip, sizeof n->node.iparams);
    if (fp) memcpy(n->node.fparams, fp, sizeof n->node.fparams);
    return g->n_nodes++;
}

int tern_graph_add_node(tern_graph *g, int op, int type, int n_dims, const int64_t *ne,
                        const int *src, int n_src, const int32_t *ip, const float *fp,
                        tern_error *err)
{
    int dst = tern_graph_add_tensor(g, GT_INTERMEDIATE, type, n_dims, ne, tern_op_name(op), err);
    if (dst < 0) return -1;
    if (push_node(g, op, dst, src, n_src, ip, fp, err) < 0) return -1;
    return dst;
}

tern_status tern_graph_add_node_into(tern_graph *g, int op, int dst, const int *src, int n_src,
                                     tern_error *err)
{
    if (!valid_id(g, dst)) return tern_error_set(err, TERN_EINVAL, "%s: bad destination", tern_op_name(op));
    return push_node(g, op, dst, src, n_src, NULL, NULL, err) < 0 ? err->status : TERN_OK;
}

/* ---- planning ---- */

static int root_of(const tern_graph *g, int id)
{
    return g->tensors[id].kind == GT_VIEW ? g->tensors[id].view_of : id;
}

/* First-fit allocator over [0, high) with a sorted free list. */
typedef struct free_block {
    size_t off, size;
} free_block;

typedef struct arena_plan {
    free_block *blocks;
    int n, cap;
    size_t high;
} arena_plan;

static int arena_alloc(arena_plan *a, size_t size, size_t *off)
{
    for (int i = 0; i < a->n; i++) {
        if (a->blocks[i].size >= size) {
            *off = a->blocks[i].off;
            a->blocks[i].off += size;
            a->blocks[i].size -= size;
            if (!a->blocks[i].size) {
                memmove(&a->blocks[i], &a->blocks[i + 1], (size_t)(a->n - i - 1) * sizeof *a->blocks);
                a->n--;
            }
            return 0;
        }
    }
    /* grow: extend a trailing free block if it touches the end */
    if (a->n && a->blocks[a->n - 1].off + a->blocks[a->n - 1].size == a->high) {
        *off = a->blocks[a->n - 1].off;
        a->high = *off + size;
        a->n--;
        return 0;
    }
    *off = a->high;
    a->high += size;
    return 0;
}

static int arena_free(arena_plan *a, size_t off, size_t size)
{
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        free_block *b = realloc(a->blocks, (size_t)cap * sizeof *b);
        if (!b) return -1;
        a->blocks = b;
        a->cap = cap;
    }
    int i = 0;
    while (i < a->n && a->blocks[i].off < off) i++;
    memmove(&a->blocks[i + 1], &a->blocks[i], (size_t)(a->n - i) * sizeof *a->blocks);
    a->blocks[i] = (free_block){off, size};
    a->n++;
    /* coalesce with neighbours */
    if (i + 1 < a->n && a->blocks[i].off + a->blocks[i].size == a->blocks[i + 1].off) {
        a->blocks[i].size += a->blocks[i + 1].size;
        memmove(&a->blocks[i + 1], &a->blocks[i + 2], (size_t)(a->n - i - 2) * sizeof *a->blocks);
        a->n--;
    }
    if (i > 0 && a->blocks[i - 1].off + a->blocks[i - 1].size == a->blocks[i].off) {
        a->blocks[i - 1].size += a->blocks[i].size;
        memmove(&a->blocks[i], &a->blocks[i + 1], (size_t)(a->n - i - 1) * sizeof *a->blocks);
        a->n--;
    }
    return 0;
}

static tern_status plan_arena(tern_graph *g, tern_error *err)
{
    for (int i = 0; i < g->n_tensors; i++) g->tensors[i].last_use = -1;
    for (int ni = 0; ni < g->n_nodes; ni++)
        for (int s = 0; s < TERN_NODE_MAX_SRC; s++)
            if (g->nodes[ni].src[s] >= 0) g->tensors[root_of(g, g->nodes[ni].src[s])].last_use = ni;
    if (g->output >= 0) g->tensors[root_of(g, g->output)].last_use = g->n_nodes; /* kept */
    arena_plan a = {0};
    tern_status st = TERN_OK;
    for (int ni = 0; ni < g->n_nodes && !st; ni++) {
        graph_tensor *d = &g->tensors[g->nodes[ni].dst];
        if (d->kind == GT_INTERMEDIATE) {
            size_t sz = align_up(tern_tensor_nbytes(&d->t));
            arena_alloc(&a, sz, &d->offset);
            if (d->last_use < 0) d->last_use = ni; /* written, never read */
        }
        /* release what this node read for the last time, and a dead dst */
        for (int s = 0; s < TERN_NODE_MAX_SRC; s++) {
            int id = g->nodes[ni].src[s];
            if (id < 0) continue;
            graph_tensor *t = &g->tensors[root_of(g, id)];
            if (t->kind == GT_INTERMEDIATE && t->last_use == ni) {
                if (arena_free(&a, t->offset, align_up(tern_tensor_nbytes(&t->t))))
                    st = tern_error_set(err, TERN_ENOMEM, "out of memory planning graph");
                t->last_use = -2; /* freed */
            }
        }
        if (d->kind == GT_INTERMEDIATE && d->last_use == ni) {
            arena_free(&a, d->offset, align_up(tern_tensor_nbytes(&d->t)));
            d->last_use = -2;
        }
    }
    free(a.blocks);
    if (st) return st;
    g->arena_size = a.high;
    if (posix_memalign(&g->arena, ALIGN, a.high ? a.high : ALIGN))
        return tern_error_set(err, TERN_ENOMEM, "out of memory: graph arena of %zu bytes", a.high);
    /* not cleared: every intermediate is written before it is read */
    return TERN_OK;
}

static tern_status plan_inputs(tern_graph *g, tern_error *err)
{
    size_t total = 0;
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == GT_INPUT) total += align_up(tern_tensor_nbytes(&g->tensors[i].t));
    if (posix_memalign(&g->inputs_mem, ALIGN, total ? total : ALIGN))
        return tern_error_set(err, TERN_ENOMEM, "out of memory for graph inputs");
    memset(g->inputs_mem, 0, total);
    size_t off = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        graph_tensor *gt = &g->tensors[i];
        if (gt->kind != GT_INPUT) continue;
        gt->t.data = (char *)g->inputs_mem + off;
        off += align_up(tern_tensor_nbytes(&gt->t));
    }
    return TERN_OK;
}

/* Points the node at its tensors; matmul weights become the copy repacked
 * for the backend in `slot`. */
static tern_status bind_node(tern_graph *g, graph_node *n, int slot, tern_error *err)
{
    n->node.dst = &g->tensors[n->dst].t;
    for (int s = 0; s < TERN_NODE_MAX_SRC; s++) {
        n->node.src[s] = n->src[s] >= 0 ? &g->tensors[n->src[s]].t : NULL;
        if (n->src[s] < 0 || g->tensors[n->src[s]].kind != GT_WEIGHT) continue;
        if (n->node.op != TERN_OP_MATMUL && n->node.op != TERN_OP_MATMUL_TERNARY) continue;
        int purpose = n->node.op == TERN_OP_MATMUL_TERNARY ? TERN_REPACK_TERNARY : TERN_REPACK_MATMUL;
        tern_tensor *packed;
        tern_status st = tern_model_weight_resolve(g->tensors[n->src[s]].weight, slot, purpose, &packed, err);
        if (st) return st;
        n->node.src[s] = packed;
    }
    return TERN_OK;
}

tern_status tern_graph_plan(tern_graph *g, tern_backend *const be[2], tern_threadpool *pool,
                            tern_error *err)
{
    if (g->output < 0) return tern_error_set(err, TERN_ESCRIPT, "graph script returned no output tensor");
    tern_status st = plan_inputs(g, err);
    if (!st) st = plan_arena(g, err);
    if (st) return st;
    for (int i = 0; i < g->n_tensors; i++) {
        graph_tensor *gt = &g->tensors[i];
        if (gt->kind == GT_INTERMEDIATE) gt->t.data = (char *)g->arena + gt->offset;
    }
    for (int i = 0; i < g->n_tensors; i++) /* views after their roots have data */
        if (g->tensors[i].kind == GT_VIEW) g->tensors[i].t.data = g->tensors[g->tensors[i].view_of].t.data;
    g->n_threads = tern_threadpool_size(pool);
    g->pool = pool;
    size_t scratch = 0;
    g->n_fallback = 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        graph_node *n = &g->nodes[ni];
        int slot = 0;
        st = bind_node(g, n, 0, err);
        if (!st && !tern_backend_supports(be[0], &n->node)) {
            if (!be[1] || bind_node(g, n, 1, err) || !tern_backend_supports(be[1], &n->node))
                return tern_error_set(err, TERN_EUNSUPPORTED, "no backend can run node %d (%s)", ni,
                                      tern_op_name(n->node.op));
            slot = 1;
            g->n_fallback++;
        }
        if (st) return st;
        n->slot = slot;
        n->fn = tern_backend_op(be[slot], n->node.op);
        n->ctx = be[slot]->ctx;
        if (be[slot]->api->scratch_size) {
            size_t sz = be[slot]->api->scratch_size(be[slot]->ctx, &n->node, g->n_threads);
            if (sz > scratch) scratch = sz;
        }
    }
    g->scratch_stride = align_up(scratch ? scratch : ALIGN);
    if (posix_memalign(&g->scratch, ALIGN, g->scratch_stride * (size_t)g->n_threads))
        return tern_error_set(err, TERN_ENOMEM, "out of memory for scratch");
    g->planned = 1;
    return TERN_OK;
}

int32_t *tern_graph_tokens(tern_graph *g) { return g->tensors[g->in_tokens].t.data; }
int32_t *tern_graph_positions(tern_graph *g) { return g->tensors[g->in_positions].t.data; }
int32_t *tern_graph_out_ids(tern_graph *g) { return g->tensors[g->in_out_ids].t.data; }

/* ---- execution ---- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_nodes(void *arg, int ith, int nth)
{
    tern_graph *g = arg;
    void *scratch = (char *)g->scratch + (size_t)ith * g->scratch_stride;
    double t0 = ith == 0 && g->stats ? now_seconds() : 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        graph_node *n = &g->nodes[ni];
        n->fn(n->ctx, &n->node, ith, nth, scratch);
        tern_threadpool_barrier(g->pool);
        if (ith == 0 && g->stats) {
            double t1 = now_seconds();
            g->stats->op_seconds[n->node.op] += t1 - t0;
            g->stats->op_calls[n->node.op]++;
            if (n->slot) g->stats->fallback_calls[n->node.op]++;
            t0 = t1;
        }
    }
}

tern_status tern_graph_compute(tern_graph *g, tern_graph_stats *stats, tern_error *err)
{
    if (!g->planned) return tern_error_set(err, TERN_EINVAL, "graph not planned");
    g->stats = stats;
    tern_threadpool_run(g->pool, run_nodes, g);
    if (stats) stats->evals++;
    return TERN_OK;
}

const float *tern_graph_output(const tern_graph *g, int64_t *n_cols, int64_t *n_rows)
{
    const tern_tensor *t = &g->tensors[g->output].t;
    if (n_cols) *n_cols = t->ne[0];
    if (n_rows) *n_rows = tern_tensor_nrows(t);
    return t->data;
}
