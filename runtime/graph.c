/* graph.c - the graph IR: builder calls, planning (backend per node, weight
 * placement, copies between memory spaces, arena offsets by tensor
 * lifetime) and the executor. See graph_impl.h for the plan's steps. */
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
    g->output_host = -1;
    pthread_mutex_init(&g->err.mu, NULL);
    int64_t ne_tok = n_tok, ne_out = n_out;
    g->in_tokens = tern_graph_add_tensor(g, GT_INPUT, TERN_TYPE_I32, 1, &ne_tok, "tokens", err);
    g->in_positions = tern_graph_add_tensor(g, GT_INPUT, TERN_TYPE_I32, 1, &ne_tok, "positions", err);
    g->in_out_ids = tern_graph_add_tensor(g, GT_INPUT, TERN_TYPE_I32, 1, &ne_out, "out_ids", err);
    if (g->in_tokens < 0 || g->in_positions < 0 || g->in_out_ids < 0) {
        tern_graph_free(g);
        return TERN_ENOMEM;
    }
    *out = g;
    return TERN_OK;
}

void tern_graph_free(tern_graph *g)
{
    if (!g) return;
    free(g->arena[0]);
    for (int s = 1; s < GRAPH_MAX_SPACES; s++)
        if (g->arena[s]) {
            const tern_backend *b = g->be[s - 1];
            b->api->buffer_free(b->ctx, g->arena[s]);
        }
    free(g->tensors);
    free(g->nodes);
    free(g->inputs_mem);
    free(g->staging);
    free(g->scratch);
    pthread_mutex_destroy(&g->err.mu);
    free(g);
}

int tern_graph_n_nodes(const tern_graph *g) { return g->n_nodes; }
int tern_graph_n_fallback(const tern_graph *g) { return g->n_fallback; }

size_t tern_graph_arena_bytes(const tern_graph *g)
{
    size_t total = 0;
    for (int s = 0; s < GRAPH_MAX_SPACES; s++) total += g->arena_size[s];
    return total;
}

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
    gt->space = -1;
    return g->n_tensors++;
}

int tern_graph_add_tensor(tern_graph *g, int kind, int type, int n_dims, const int64_t *ne,
                          const char *name, tern_error *err)
{
    if (g->planned) return tern_error_set(err, TERN_EINVAL, "graph already planned"), -1;
    if (n_dims < 1 || n_dims > TERN_MAX_DIMS)
        return tern_error_set(err, TERN_EINVAL, "tensor '%s': %d dimensions", name ? name : "?", n_dims), -1;
    int64_t shape[TERN_MAX_DIMS]; /* ne may point into the array new_tensor moves */
    for (int i = 0; i < n_dims; i++) {
        shape[i] = ne[i];
        if (ne[i] < 1 || ne[i] > ((int64_t)1 << 40))
            return tern_error_set(err, TERN_EINVAL, "tensor '%s': dimension %d is %lld",
                                  name ? name : "?", i, (long long)ne[i]), -1;
    }
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    graph_tensor *gt = &g->tensors[id];
    gt->kind = kind;
    if (kind == GT_INPUT) gt->space = 0;
    tern_tensor_init(&gt->t, type, n_dims, shape);
    snprintf(gt->name, sizeof gt->name, "%s", name ? name : "");
    gt->t.name = NULL;
    return id;
}

int tern_graph_add_weight(tern_graph *g, tern_model_weight *w, tern_error *err)
{
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    graph_tensor *gt = &g->tensors[id];
    gt->kind = GT_WEIGHT;
    gt->weight = w;
    gt->t = w->file;
    snprintf(gt->name, sizeof gt->name, "%s", w->gt->name_z);
    return id;
}

int tern_graph_add_extern(tern_graph *g, tern_tensor *t, int space, tern_error *err)
{
    int id = new_tensor(g, err);
    if (id < 0) return -1;
    g->tensors[id].kind = GT_EXTERN;
    g->tensors[id].t = *t;
    g->tensors[id].space = space;
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

/* ---- planning: placement ---- */

static int root_of(const tern_graph *g, int id)
{
    return g->tensors[id].kind == GT_VIEW ? g->tensors[id].view_of : id;
}

int tern_graph_space_of(const tern_backend *be, int b)
{
    return tern_backend_is_host(be) ? 0 : b + 1;
}

/* The planner asks supports_op before memory exists: a tensor about to be
 * placed in a space gets a non-NULL stand-in there (backends never
 * dereference data or buffer in supports_op). */
static char placeholder_byte;
#define PLACEHOLDER ((void *)&placeholder_byte)

static tern_tensor placed_as(const tern_tensor *t, int space)
{
    tern_tensor p = *t;
    if (space == 0) {
        p.buffer = NULL;
        if (!p.data) p.data = PLACEHOLDER;
    } else {
        p.buffer = PLACEHOLDER;
        p.data = NULL;
    }
    return p;
}

/* What a weight is for, from the node that reads it. */
static int purpose_of(const tern_node *n, int s, const tern_model_weight *w)
{
    if (n->op == TERN_OP_MATMUL_TERNARY && s == 1) return TERN_REPACK_TERNARY;
    if (n->op == TERN_OP_MATMUL && s == 1) return w->is_head ? TERN_REPACK_HEAD : TERN_REPACK_MATMUL;
    if (n->op == TERN_OP_GET_ROWS && s == 0) return TERN_REPACK_ROWS;
    return TERN_REPACK_PARAM;
}

/* Points node n at its tensors as backend b would see them: weights placed
 * for b; the rest as placed (bound = 1: their real memory) or as they would
 * be in b's space (bound = 0: stand-ins, for the planner's question). tmp
 * holds the stand-ins. Returns TERN_EUNSUPPORTED when b cannot have them
 * (a weight it does not take, a cache in other memory). */
static tern_status bind_node(tern_graph *g, graph_node *n, int b, int bound,
                             tern_tensor tmp[TERN_NODE_MAX_SRC + 1], tern_error *err)
{
    int space = tern_graph_space_of(g->be[b], b);
    graph_tensor *d = &g->tensors[n->dst];
    if (d->kind == GT_EXTERN && d->space != space) return TERN_EUNSUPPORTED;
    if (bound) {
        n->node.dst = &d->t;
    } else {
        tmp[TERN_NODE_MAX_SRC] = d->kind == GT_EXTERN ? d->t : placed_as(&d->t, space);
        n->node.dst = &tmp[TERN_NODE_MAX_SRC];
    }
    for (int s = 0; s < TERN_NODE_MAX_SRC; s++) {
        n->node.src[s] = NULL;
        if (n->src[s] < 0) continue;
        graph_tensor *t = &g->tensors[n->src[s]];
        if (t->kind == GT_WEIGHT) {
            tern_tensor *packed;
            tern_status st = tern_model_weight_resolve(t->weight, b, purpose_of(&n->node, s, t->weight),
                                                       &packed, err);
            if (st) return st;
            n->node.src[s] = packed;
            continue;
        }
        const graph_tensor *r = &g->tensors[root_of(g, n->src[s])];
        if (r->kind == GT_EXTERN && r->space != space) return TERN_EUNSUPPORTED; /* never copied */
        if (bound) {
            n->node.src[s] = &t->t;
        } else {
            tmp[s] = r->kind == GT_EXTERN ? t->t : placed_as(&t->t, space);
            n->node.src[s] = &tmp[s];
        }
    }
    return TERN_OK;
}

/* The first backend that takes node n; -1 with err set when none does. */
static int choose_backend(tern_graph *g, graph_node *n, int ni, tern_error *err)
{
    tern_tensor tmp[TERN_NODE_MAX_SRC + 1];
    for (int b = 0; b < g->n_be; b++) {
        if (!tern_backend_op(g->be[b], n->node.op)) continue;
        tern_status st = bind_node(g, n, b, 0, tmp, err);
        if (st == TERN_EUNSUPPORTED) continue;
        if (st) return -1;
        if (tern_backend_supports(g->be[b], &n->node)) return b;
    }
    return tern_error_set(err, TERN_EUNSUPPORTED,
                          "no backend of the list can run node %d (%s); the last resort, scalar, "
                          "refused it too", ni, tern_op_name(n->node.op)), -1;
}

/* The planner's growing node list and the copies made so far. */
typedef struct plan_state {
    graph_node *out;
    int n_out;
    int *copy_of; /* [tensor id * GRAPH_MAX_SPACES + space] -> copy id, -1 none */
    int n_memo;   /* tensors the memo covers (those that existed before planning) */
} plan_state;

/* The id of tensor id's copy in space, emitting the copy node once. */
static int copy_into(tern_graph *g, plan_state *ps, int id, int space, tern_error *err)
{
    int *memo = &ps->copy_of[(size_t)id * GRAPH_MAX_SPACES + (size_t)space];
    if (*memo >= 0) return *memo;
    tern_tensor t = g->tensors[id].t; /* adding a tensor may move the array */
    int c = tern_graph_add_tensor(g, GT_INTERMEDIATE, t.type, TERN_MAX_DIMS, t.ne, "copy", err);
    if (c < 0) return -1;
    g->tensors[c].space = space;
    graph_node *n = &ps->out[ps->n_out++];
    memset(n, 0, sizeof *n);
    n->node.op = GRAPH_OP_COPY;
    n->dst = c;
    n->src[0] = id;
    for (int s = 1; s < TERN_NODE_MAX_SRC; s++) n->src[s] = -1;
    n->be = -1;
    return *memo = c;
}

static int space_of_tensor(const tern_graph *g, int id)
{
    return g->tensors[root_of(g, id)].space;
}

/* Copies of the graph's inputs go first, in their order: an input is
 * there before anything runs, and a copy met mid-graph ends a device
 * backend's run (a sync, and no fusion across it: the positions' copy
 * landed between the first layer's q/k/v matmuls and its rotations). */
static void hoist_input_copies(const tern_graph *g, plan_state *ps)
{
    int k = 0;
    for (int i = 0; i < ps->n_out; i++) {
        graph_node n = ps->out[i];
        if (n.node.op != GRAPH_OP_COPY || g->tensors[root_of(g, n.src[0])].kind != GT_INPUT) continue;
        memmove(&ps->out[k + 1], &ps->out[k], (size_t)(i - k) * sizeof n);
        ps->out[k++] = n;
    }
}

/* Steps 1 and 2: a backend per node, copies where spaces differ. */
static tern_status place_nodes(tern_graph *g, tern_error *err)
{
    plan_state ps = {0};
    ps.n_memo = g->n_tensors;
    ps.out = calloc((size_t)g->n_nodes * (TERN_NODE_MAX_SRC + 1) + 1, sizeof *ps.out);
    ps.copy_of = malloc((size_t)ps.n_memo * GRAPH_MAX_SPACES * sizeof *ps.copy_of);
    if (!ps.out || !ps.copy_of) {
        free(ps.out);
        free(ps.copy_of);
        return tern_error_set(err, TERN_ENOMEM, "out of memory planning graph");
    }
    memset(ps.copy_of, 0xff, (size_t)ps.n_memo * GRAPH_MAX_SPACES * sizeof *ps.copy_of);
    tern_status st = TERN_OK;
    for (int ni = 0; ni < g->n_nodes && !st; ni++) {
        graph_node n = g->nodes[ni];
        int b = choose_backend(g, &n, ni, err);
        if (b < 0) {
            st = err->status;
            break;
        }
        int space = tern_graph_space_of(g->be[b], b);
        for (int s = 0; s < TERN_NODE_MAX_SRC && !st; s++) {
            if (n.src[s] < 0 || g->tensors[n.src[s]].kind == GT_WEIGHT) continue;
            if (space_of_tensor(g, n.src[s]) == space) continue;
            int c = copy_into(g, &ps, n.src[s], space, err);
            if (c < 0) st = err->status;
            else n.src[s] = c;
        }
        if (st) break;
        if (g->tensors[n.dst].kind == GT_INTERMEDIATE) g->tensors[n.dst].space = space;
        n.be = b;
        ps.out[ps.n_out++] = n;
    }
    if (!st) {
        g->output_host = g->output;
        if (space_of_tensor(g, g->output) != 0) { /* only the logits come back */
            g->output_host = copy_into(g, &ps, g->output, 0, err);
            if (g->output_host < 0) st = err->status;
        }
    }
    free(ps.copy_of);
    if (st) {
        free(ps.out);
        return st;
    }
    hoist_input_copies(g, &ps);
    free(g->nodes);
    g->nodes = ps.out;
    g->n_nodes = g->cap_nodes = ps.n_out;
    return TERN_OK;
}

/* ---- planning: memory ---- */

/* First-fit allocator over [0, high) with a sorted free list. */
typedef struct free_block {
    size_t off, size;
} free_block;

typedef struct arena_plan {
    free_block *blocks;
    int n, cap;
    size_t high;
} arena_plan;

static void arena_alloc(arena_plan *a, size_t size, size_t *off)
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
            return;
        }
    }
    /* grow: extend a trailing free block if it touches the end */
    if (a->n && a->blocks[a->n - 1].off + a->blocks[a->n - 1].size == a->high) {
        *off = a->blocks[a->n - 1].off;
        a->high = *off + size;
        a->n--;
        return;
    }
    *off = a->high;
    a->high += size;
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

/* Offsets of the intermediates in their space's arena, by lifetime. */
static tern_status plan_offsets(tern_graph *g, tern_error *err)
{
    for (int i = 0; i < g->n_tensors; i++) g->tensors[i].last_use = -1;
    for (int ni = 0; ni < g->n_nodes; ni++)
        for (int s = 0; s < TERN_NODE_MAX_SRC; s++)
            if (g->nodes[ni].src[s] >= 0) g->tensors[root_of(g, g->nodes[ni].src[s])].last_use = ni;
    g->tensors[root_of(g, g->output_host)].last_use = g->n_nodes; /* kept */
    arena_plan a[GRAPH_MAX_SPACES];
    memset(a, 0, sizeof a);
    tern_status st = TERN_OK;
    for (int ni = 0; ni < g->n_nodes && !st; ni++) {
        graph_tensor *d = &g->tensors[g->nodes[ni].dst];
        if (d->kind == GT_INTERMEDIATE) {
            arena_alloc(&a[d->space], align_up(tern_tensor_nbytes(&d->t)), &d->offset);
            if (d->last_use < 0) d->last_use = ni; /* written, never read */
        }
        /* release what this node read for the last time, and a dead dst */
        for (int s = 0; s <= TERN_NODE_MAX_SRC && !st; s++) {
            int id = s < TERN_NODE_MAX_SRC ? g->nodes[ni].src[s] : g->nodes[ni].dst;
            if (id < 0) continue;
            graph_tensor *t = &g->tensors[root_of(g, id)];
            if (t->kind != GT_INTERMEDIATE || t->last_use != ni) continue;
            if (arena_free(&a[t->space], t->offset, align_up(tern_tensor_nbytes(&t->t))))
                st = tern_error_set(err, TERN_ENOMEM, "out of memory planning graph");
            t->last_use = -2; /* freed */
        }
    }
    for (int s = 0; s < GRAPH_MAX_SPACES; s++) {
        free(a[s].blocks);
        g->arena_size[s] = a[s].high;
    }
    return st;
}

/* Step 3: one arena per space; every tensor gets its memory. */
static tern_status alloc_memory(tern_graph *g, tern_error *err)
{
    tern_status st = plan_offsets(g, err);
    if (st) return st;
    /* not cleared: every intermediate is written before it is read */
    if (posix_memalign(&g->arena[0], ALIGN, g->arena_size[0] ? g->arena_size[0] : ALIGN))
        return tern_error_set(err, TERN_ENOMEM, "out of memory: graph arena of %zu bytes",
                              g->arena_size[0]);
    for (int s = 1; s < GRAPH_MAX_SPACES; s++) {
        if (!g->arena_size[s]) continue;
        const tern_backend *b = g->be[s - 1];
        g->arena[s] = b->api->buffer_alloc(b->ctx, g->arena_size[s]);
        if (!g->arena[s])
            return tern_error_set(err, TERN_ENOMEM, "backend '%s': out of device memory for a graph "
                                  "arena of %zu bytes", b->plugin->name, g->arena_size[s]);
    }
    size_t inputs = 0;
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == GT_INPUT) inputs += align_up(tern_tensor_nbytes(&g->tensors[i].t));
    if (posix_memalign(&g->inputs_mem, ALIGN, inputs ? inputs : ALIGN))
        return tern_error_set(err, TERN_ENOMEM, "out of memory for graph inputs");
    memset(g->inputs_mem, 0, inputs);
    size_t in_off = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        graph_tensor *gt = &g->tensors[i];
        if (gt->kind == GT_INPUT) {
            gt->t.data = (char *)g->inputs_mem + in_off;
            in_off += align_up(tern_tensor_nbytes(&gt->t));
        } else if (gt->kind == GT_INTERMEDIATE && gt->space == 0) {
            gt->t.data = (char *)g->arena[0] + gt->offset;
        } else if (gt->kind == GT_INTERMEDIATE && gt->space > 0) {
            gt->t.buffer = g->arena[gt->space];
            gt->t.data = (void *)(uintptr_t)gt->offset; /* offset inside the buffer */
        }
    }
    for (int i = 0; i < g->n_tensors; i++) { /* views after their roots have memory */
        graph_tensor *v = &g->tensors[i];
        if (v->kind != GT_VIEW) continue;
        v->t.data = g->tensors[v->view_of].t.data;
        v->t.buffer = g->tensors[v->view_of].t.buffer;
    }
    return TERN_OK;
}

/* Step 4: kernels, scratch, runs and syncs. */
/* ---- which threaded nodes may start before the previous ones end ---- */

/* Ops whose only effect is writing their dst (no cache writes, no
 * per-sequence runs): only these skip a wait. */
static int pure_op(int op)
{
    static const unsigned char pure[TERN_OP_COUNT] = {
        [TERN_OP_GET_ROWS] = 1, [TERN_OP_RMS_NORM] = 1, [TERN_OP_ADD] = 1, [TERN_OP_MUL] = 1,
        [TERN_OP_RELU_SQ] = 1, [TERN_OP_SILU] = 1, [TERN_OP_ROPE] = 1, [TERN_OP_SOFTMAX] = 1,
        [TERN_OP_QUANTIZE_ACT] = 1, [TERN_OP_MATMUL_TERNARY] = 1, [TERN_OP_MATMUL] = 1,
    };
    return op >= 0 && op < TERN_OP_COUNT && pure[op];
}

/* The bytes a tensor's elements span, [lo, hi); empty for no data. */
static void extent(const tern_tensor *t, uintptr_t *lo, uintptr_t *hi)
{
    *lo = *hi = (uintptr_t)t->data;
    if (!t->data) return;
    size_t end = tern_row_size(t->type, t->ne[0]);
    for (int i = 1; i < 4; i++) {
        if (t->ne[i] <= 0) return;
        end += (size_t)(t->ne[i] - 1) * t->nb[i];
    }
    *hi = *lo + end;
}

static int overlap(const tern_tensor *a, const tern_tensor *b)
{
    uintptr_t alo, ahi, blo, bhi;
    extent(a, &alo, &ahi);
    extent(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

/* a and b may run at once: neither writes what the other reads or writes. */
static int independent(const graph_node *a, const graph_node *b)
{
    if (overlap(a->node.dst, b->node.dst)) return 0;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++) {
        if (a->node.src[i] && overlap(a->node.src[i], b->node.dst)) return 0;
        if (b->node.src[i] && overlap(b->node.src[i], a->node.dst)) return 0;
    }
    return 1;
}

/* Runs of consecutive pure threaded host nodes (at most OVERLAP_WINDOW)
 * that are pairwise independent: threads go from one to the next without
 * waiting, and wait for the whole run before the node after it. A decode
 * step of a 2B4T-shaped model has 723 nodes, each a wait otherwise. */
#define OVERLAP_WINDOW 8

static void plan_overlaps(tern_graph *g)
{
    int win = -1;
    g->n_no_wait = 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        graph_node *n = &g->nodes[ni];
        n->overlaps_prev = 0;
        if (n->be < 0 || !n->threaded || !pure_op(n->node.op)) {
            win = -1;
            continue;
        }
        int ok = win >= 0 && ni - win < OVERLAP_WINDOW;
        for (int w = win; ok && w < ni; w++) ok = independent(&g->nodes[w], n);
        if (ok) n->overlaps_prev = 1, g->n_no_wait++;
        else win = ni;
    }
}

static tern_status bind_all(tern_graph *g, tern_error *err)
{
    size_t scratch = 0, staging = 0;
    memset(g->nodes_on, 0, sizeof g->nodes_on);
    g->n_fallback = g->n_copies = 0;
    g->copy_bytes = 0;
    for (int ni = 0; ni < g->n_nodes; ni++) {
        graph_node *n = &g->nodes[ni];
        n->slot = (struct tern_node_slot){g, ni};
        n->node.error = &n->slot;
        if (n->be < 0) { /* a copy */
            n->node.dst = &g->tensors[n->dst].t;
            n->node.src[0] = &g->tensors[n->src[0]].t;
            size_t bytes = tern_tensor_nbytes(n->node.dst);
            g->n_copies++;
            g->copy_bytes += bytes;
            if (space_of_tensor(g, n->src[0]) > 0 && g->tensors[n->dst].space > 0 && bytes > staging)
                staging = bytes;
            continue;
        }
        const tern_backend *b = g->be[n->be];
        tern_status st = bind_node(g, n, n->be, 1, NULL, err);
        if (st) return st;
        if (!tern_backend_supports(b, &n->node))
            return tern_error_set(err, TERN_EUNSUPPORTED,
                                  "backend '%s' accepted node %d (%s) while planning but refuses it "
                                  "with its memory placed", b->plugin->name, ni, tern_op_name(n->node.op));
        n->fn = tern_backend_op(b, n->node.op);
        n->ctx = b->ctx;
        n->threaded = tern_backend_is_host(b) && (b->api->caps & TERN_BACKEND_CAP_THREADED);
        g->any_threaded |= n->threaded;
        g->nodes_on[n->be]++;
        if (n->be) g->n_fallback++;
        if (b->api->scratch_size) {
            size_t sz = b->api->scratch_size(b->ctx, &n->node, n->threaded ? g->n_threads : 1);
            if (sz > scratch) scratch = sz;
        }
    }
    for (int ni = g->n_nodes - 1; ni >= 0; ni--) {
        graph_node *n = &g->nodes[ni], *next = ni + 1 < g->n_nodes ? &g->nodes[ni + 1] : NULL;
        if (!n->threaded) n->seg_end = next && !next->threaded ? next->seg_end : ni + 1;
        n->sync_after = n->be >= 0 && g->be[n->be]->api->sync && (!next || next->be != n->be);
    }
    plan_overlaps(g);
    if (staging && !(g->staging = malloc(staging)))
        return tern_error_set(err, TERN_ENOMEM, "out of memory for a %zu-byte copy buffer", staging);
    g->scratch_stride = align_up(scratch ? scratch : ALIGN);
    if (posix_memalign(&g->scratch, ALIGN, g->scratch_stride * (size_t)g->n_threads))
        return tern_error_set(err, TERN_ENOMEM, "out of memory for scratch");
    return TERN_OK;
}

tern_status tern_graph_plan(tern_graph *g, tern_backend *const *be, int n_be, tern_threadpool *pool,
                            int n_threads, tern_error *err)
{
    if (g->output < 0) return tern_error_set(err, TERN_ESCRIPT, "graph script returned no output tensor");
    if (g->planned) return tern_error_set(err, TERN_EINVAL, "graph already planned");
    if (n_be < 1 || n_be > TERN_MAX_BACKENDS)
        return tern_error_set(err, TERN_EINVAL, "%d backends: 1..%d allowed", n_be, TERN_MAX_BACKENDS);
    g->be = be;
    g->n_be = n_be;
    g->pool = pool;
    g->n_threads = n_threads < 1 ? 1 : n_threads;
    tern_status st = place_nodes(g, err);
    if (!st) st = alloc_memory(g, err);
    if (!st) st = bind_all(g, err);
    if (st) return st;
    g->planned = 1;
    return TERN_OK;
}

void tern_graph_placement_get(const tern_graph *g, tern_graph_placement *out)
{
    memset(out, 0, sizeof *out);
    out->n_nodes = g->n_nodes - g->n_copies;
    memcpy(out->nodes_on, g->nodes_on, sizeof out->nodes_on);
    out->n_fallback = g->n_fallback;
    out->n_copies = g->n_copies;
    out->copy_bytes = g->copy_bytes;
    out->n_no_wait = g->n_no_wait;
}

int tern_graph_kv_backend(tern_backend *const *be, int n_be, int kv_type, int64_t head_dim,
                          int64_t n_head, int64_t n_head_kv, int64_t n_ctx)
{
    for (int b = 0; b < n_be; b++) {
        int space = tern_graph_space_of(be[b], b);
        tern_tensor q, kv, cache, pos, out;
        tern_tensor_init(&q, TERN_TYPE_F32, 3, (int64_t[]){head_dim, n_head, 1});
        tern_tensor_init(&kv, TERN_TYPE_F32, 3, (int64_t[]){head_dim, n_head_kv, 1});
        tern_tensor_init(&cache, kv_type, 3, (int64_t[]){head_dim, n_head_kv, n_ctx});
        tern_tensor_init(&pos, TERN_TYPE_I32, 1, (int64_t[]){1});
        out = q;
        q = placed_as(&q, space);
        kv = placed_as(&kv, space);
        cache = placed_as(&cache, space);
        pos = placed_as(&pos, space);
        out = placed_as(&out, space);
        tern_node store = {.op = TERN_OP_KV_STORE, .dst = &cache, .src = {&kv, &pos}};
        tern_node attn = {.op = TERN_OP_ATTENTION, .dst = &out, .src = {&q, &cache, &cache, &pos},
                          .fparams = {1.0f}};
        if (tern_backend_supports(be[b], &store) && tern_backend_supports(be[b], &attn)) return b;
    }
    return -1;
}

/* ---- the error slot ---- */

void tern_graph_node_failv(struct tern_node_slot *slot, tern_status st, const char *fmt, va_list ap)
{
    graph_error *e = &slot->g->err;
    if (st == TERN_OK) st = TERN_EINVAL;
    pthread_mutex_lock(&e->mu);
    if (!atomic_load_explicit(&e->status, memory_order_relaxed)) {
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        e->node = slot->index;
        atomic_store_explicit(&e->status, (int)st, memory_order_release);
    }
    pthread_mutex_unlock(&e->mu);
}

static void node_fail(tern_graph *g, int ni, tern_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void node_fail(tern_graph *g, int ni, tern_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tern_graph_node_failv(&g->nodes[ni].slot, st, fmt, ap);
    va_end(ap);
}

/* 1 when a failure at node `upto` or before is recorded. All threads read
 * this after the same barrier, and failures at later nodes cannot have
 * happened before it, so they all decide alike. */
static int failed_by(tern_graph *g, int upto)
{
    return atomic_load_explicit(&g->err.status, memory_order_acquire) && g->err.node <= upto;
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

void tern_graph_set_runs(tern_graph *g, const graph_seq_run *runs, int n_runs)
{
    g->runs = n_runs > 0 ? runs : NULL;
    g->n_runs = n_runs > 0 ? n_runs : 0;
}

/* ---- multi-sequence batches: the two cache ops run per sequence ---- */

enum { SLICE_NONE, SLICE_TOKENS, SLICE_ROWS };

/* For the ops that touch a cache, which operand is sliced how, and along
 * which dimension (tokens and cache rows are always the outermost one). */
static const struct seq_slicing {
    int src[TERN_NODE_MAX_SRC], src_dim[TERN_NODE_MAX_SRC];
    int dst, dst_dim;
} seq_slicing[TERN_OP_COUNT] = {
    /* src0 k or v [hd, n_kv, n_tok], src1 positions [n_tok]; dst the cache */
    [TERN_OP_KV_STORE] = {{SLICE_TOKENS, SLICE_TOKENS}, {2, 0}, SLICE_ROWS, 2},
    /* src0 q [hd, n_head, n_tok], src1/src2 caches, src3 positions; dst [hd, n_head, n_tok] */
    [TERN_OP_ATTENTION] = {{SLICE_TOKENS, SLICE_ROWS, SLICE_ROWS, SLICE_TOKENS}, {2, 2, 2, 0},
                           SLICE_TOKENS, 2},
};

static tern_tensor slice(const tern_tensor *t, int how, int dim, const graph_seq_run *r)
{
    tern_tensor s = *t;
    int64_t first = how == SLICE_ROWS ? r->row0 : r->tok0, n = how == SLICE_ROWS ? r->n_rows : r->n_tok;
    s.ne[dim] = n;
    s.data = (char *)t->data + (size_t)first * t->nb[dim]; /* a host pointer or an offset in a buffer */
    return s;
}

/* Runs node n's kernel: once, or once per sequence of the batch on
 * slices of its operands (same ith/nth: each share stays independent). */
static void run_kernel(tern_graph *g, graph_node *n, int ith, int nth, void *scratch)
{
    const struct seq_slicing *sl = n->node.op < TERN_OP_COUNT ? &seq_slicing[n->node.op] : NULL;
    if (!g->n_runs || !sl || sl->dst == SLICE_NONE) {
        n->fn(n->ctx, &n->node, ith, nth, scratch);
        return;
    }
    for (int r = 0; r < g->n_runs; r++) {
        const graph_seq_run *run = &g->runs[r];
        tern_tensor src[TERN_NODE_MAX_SRC], dst = slice(n->node.dst, sl->dst, sl->dst_dim, run);
        tern_node node = n->node;
        node.dst = &dst;
        for (int i = 0; i < TERN_NODE_MAX_SRC; i++) {
            if (!n->node.src[i] || sl->src[i] == SLICE_NONE) continue;
            src[i] = slice(n->node.src[i], sl->src[i], sl->src_dim[i], run);
            node.src[i] = &src[i];
        }
        n->fn(n->ctx, &node, ith, nth, scratch);
    }
}

/* A copy node: upload, download, or both through the staging buffer. */
static tern_status run_copy(tern_graph *g, const graph_node *n, char *msg, size_t msglen)
{
    const tern_tensor *src = n->node.src[0], *dst = n->node.dst;
    size_t bytes = tern_tensor_nbytes(dst);
    int from = space_of_tensor(g, n->src[0]), to = g->tensors[n->dst].space;
    const tern_backend *bs = from ? g->be[from - 1] : NULL, *bd = to ? g->be[to - 1] : NULL;
    tern_status st = TERN_OK;
    if (!from) {
        st = bd->api->buffer_upload(bd->ctx, dst->buffer, (size_t)(uintptr_t)dst->data, src->data, bytes);
    } else if (!to) {
        st = bs->api->buffer_download(bs->ctx, src->buffer, (size_t)(uintptr_t)src->data, dst->data, bytes);
    } else {
        st = bs->api->buffer_download(bs->ctx, src->buffer, (size_t)(uintptr_t)src->data, g->staging, bytes);
        if (!st)
            st = bd->api->buffer_upload(bd->ctx, dst->buffer, (size_t)(uintptr_t)dst->data, g->staging, bytes);
    }
    if (st)
        snprintf(msg, msglen, "copying %zu bytes from %s to %s failed (%s)", bytes,
                 bs ? bs->plugin->name : "host", bd ? bd->plugin->name : "host", tern_status_name(st));
    return st;
}

static void account(tern_graph *g, const graph_node *n, double seconds)
{
    tern_graph_stats *s = g->stats;
    if (n->be < 0) {
        s->copy_seconds += seconds;
        s->copy_calls++;
        s->copy_bytes += tern_tensor_nbytes(n->node.dst);
        return;
    }
    s->op_seconds[n->node.op] += seconds;
    s->op_calls[n->node.op]++;
    if (n->be) s->fallback_calls[n->node.op]++;
}

/* Nodes [i0, i1) that run on one thread: device ops (queued, synced at
 * the end of each run on a backend) and copies. */
static void run_serial(tern_graph *g, int i0, int i1, void *scratch)
{
    for (int ni = i0; ni < i1 && !failed_by(g, ni - 1); ni++) {
        graph_node *n = &g->nodes[ni];
        double t0 = g->stats ? now_seconds() : 0;
        char msg[TERN_ERROR_MSG_MAX] = "";
        if (n->be < 0) {
            tern_status st = run_copy(g, n, msg, sizeof msg);
            if (st) node_fail(g, ni, st, "%s", msg);
        } else {
            run_kernel(g, n, 0, 1, scratch);
        }
        if (n->sync_after) {
            tern_error e;
            if (tern_backend_sync(g->be[n->be], &e)) node_fail(g, ni, e.status, "%s", e.msg);
        }
        if (g->stats) account(g, n, now_seconds() - t0);
    }
}

/* Pieces per thread of a threaded node when there are more threads than
 * CPUs: the running threads then take over the share of a thread the OS
 * has descheduled, and a node waits at most for the one piece that thread
 * holds. Otherwise one piece a thread, still claimed (a thread another
 * process has descheduled does not hold up the pieces it has not begun):
 * each claim is a cache line crossing cores, and on a 20M model's
 * 2-microsecond nodes four pieces a thread halved decode speed at 2
 * threads. */
#define PIECES_OVERSUBSCRIBED 4

static void run_nodes(void *arg, int ith, int nth)
{
    tern_graph *g = arg;
    void *scratch = (char *)g->scratch + (size_t)ith * g->scratch_stride;
    double t0 = ith == 0 && g->stats ? now_seconds() : 0;
    int over = nth > tern_cpu_logical_cpus();
    unsigned pieces = (unsigned)(over ? nth * PIECES_OVERSUBSCRIBED : nth);
    int win = 0; /* first node not waited for yet */
    for (int ni = 0; ni < g->n_nodes;) {
        graph_node *n = &g->nodes[ni];
        int last = n->threaded ? ni : n->seg_end - 1;
        if (n->threaded) {
            for (unsigned p; (p = atomic_fetch_add(&n->pieces.claimed, 1)) < pieces;) {
                run_kernel(g, n, (int)p, (int)pieces, scratch);
                tern_threadpool_piece_done(g->pool, &n->pieces, pieces);
            }
        } else if (ith == 0) { /* devices and copies: in order, on one thread */
            run_serial(g, ni, n->seg_end, scratch);
            tern_threadpool_piece_done(g->pool, &n->pieces, 1);
        }
        if (ith == 0 && g->cancel && atomic_load_explicit(g->cancel, memory_order_relaxed))
            node_fail(g, last, TERN_ECANCELED, "evaluation canceled");
        /* the next node touches none of the memory of the nodes since the
         * last wait: go on (the profile counts this node's call and times
         * the run of such nodes on the last one) */
        if (last + 1 < g->n_nodes && g->nodes[last + 1].overlaps_prev) {
            if (ith == 0 && g->stats) account(g, n, 0);
            ni = last + 1;
            continue;
        }
        if (nth > 1) /* this node and the ones that went on without a wait */
            for (int w = win; w <= ni; w++) tern_threadpool_wait_pieces(g->pool, &g->nodes[w].pieces);
        win = last + 1;
        if (ith == 0 && g->stats) {
            double t1 = now_seconds();
            if (n->threaded) account(g, n, t1 - t0);
            t0 = t1;
        }
        if (failed_by(g, last)) break;
        ni = last + 1;
    }
}

tern_status tern_graph_compute(tern_graph *g, tern_graph_stats *stats, const atomic_int *cancel,
                               tern_error *err)
{
    if (!g->planned) return tern_error_set(err, TERN_EINVAL, "graph not planned");
    g->stats = stats;
    g->cancel = cancel;
    atomic_store(&g->err.status, 0);
    for (int i = 0; i < g->n_nodes; i++) {
        tern_pieces_reset(&g->nodes[i].pieces);
    }
    if (g->any_threaded && g->n_threads > 1)
        tern_threadpool_run_n(g->pool, g->n_threads, run_nodes, g);
    else /* one thread is all it needs: other sessions keep the pool */
        run_nodes(g, 0, 1);
    if (stats) stats->evals++;
    tern_status st = atomic_load(&g->err.status);
    if (!st) return TERN_OK;
    for (int b = 0; b < g->n_be; b++) { /* leave no queued work behind */
        tern_error ignored;
        if (!tern_backend_is_host(g->be[b])) tern_backend_sync(g->be[b], &ignored);
    }
    const graph_node *n = &g->nodes[g->err.node];
    return tern_error_set(err, st, "%s (node %d: %s on %s)", g->err.msg, g->err.node,
                          n->be < 0 ? "copy" : tern_op_name(n->node.op),
                          n->be < 0 ? "the executor" : g->be[n->be]->plugin->name);
}

const float *tern_graph_output(const tern_graph *g, int64_t *n_cols, int64_t *n_rows)
{
    const tern_tensor *t = &g->tensors[g->output_host].t;
    if (n_cols) *n_cols = t->ne[0];
    if (n_rows) *n_rows = tern_tensor_nrows(t);
    return t->data;
}
