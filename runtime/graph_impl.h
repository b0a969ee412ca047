/* graph_impl.h - the graph IR behind tern/graph.h (runtime-internal).
 *
 * A graph is a static list of op nodes over tensors, built once per shape
 * class (number of tokens, which rows produce logits) by a Lua graph script
 * through the builder calls below, then planned: every node is assigned to
 * the session's backend or, where that backend lacks the op, to scalar;
 * intermediate tensors get offsets in one arena sized by their lifetimes.
 * Evaluating it allocates nothing. */
#ifndef TERN_GRAPH_IMPL_H
#define TERN_GRAPH_IMPL_H

#include "tern/backend.h"
#include "tern/graph.h"
#include "tern/threadpool.h"

struct tern_model_weight;

enum {
    GT_INTERMEDIATE = 0, /* produced by a node, lives in the arena */
    GT_INPUT,            /* filled by the session before each evaluation */
    GT_WEIGHT,           /* a model weight: resolved per backend at plan time */
    GT_EXTERN,           /* memory owned elsewhere (KV cache) */
    GT_VIEW              /* a reshape of another tensor, same bytes */
};

typedef struct graph_tensor {
    tern_tensor t;
    int kind;                         /* GT_* */
    int view_of;                      /* GT_VIEW: the viewed tensor id */
    struct tern_model_weight *weight; /* GT_WEIGHT */
    int purpose;                      /* GT_WEIGHT: TERN_REPACK_* */
    int last_use;                     /* node index of the last reader */
    size_t offset;                    /* GT_INTERMEDIATE: arena offset */
    char name[48];
} graph_tensor;

typedef struct graph_node {
    tern_node node;      /* src/dst pointers are filled at plan time */
    int dst;             /* tensor ids */
    int src[TERN_NODE_MAX_SRC];
    int slot;            /* backend slot that runs it (0 main, 1 scalar) */
    tern_op_fn fn;
    void *ctx;
} graph_node;

struct tern_graph {
    int n_tok;           /* tokens per evaluation (shape class) */
    int n_out;           /* rows of the output (logits) */
    graph_tensor *tensors;
    int n_tensors, cap_tensors;
    graph_node *nodes;
    int n_nodes, cap_nodes;
    int output;          /* tensor id of the logits */
    int in_tokens, in_positions, in_out_ids; /* input tensor ids */
    void *arena;         /* intermediates */
    size_t arena_size;
    void *inputs_mem;    /* inputs, each 64-byte aligned */
    void *scratch;       /* per-thread scratch, scratch_stride apart */
    size_t scratch_stride;
    int n_threads;
    int n_fallback;      /* nodes that run on scalar though the main backend is not */
    tern_threadpool *pool;
    tern_graph_stats *stats; /* accumulated op times; may be NULL */
    int planned;
};

/* Builder calls (used by the Lua bindings). Each returns a tensor id >= 0,
 * or -1 with err set. */
int tern_graph_add_tensor(tern_graph *g, int kind, int type, int n_dims, const int64_t *ne,
                          const char *name, tern_error *err);
int tern_graph_add_weight(tern_graph *g, struct tern_model_weight *w, int purpose, tern_error *err);
int tern_graph_add_extern(tern_graph *g, tern_tensor *t, tern_error *err);
int tern_graph_add_view(tern_graph *g, int src, int n_dims, const int64_t *ne, tern_error *err);
/* Appends a node writing a new intermediate of the given type and shape. */
int tern_graph_add_node(tern_graph *g, int op, int type, int n_dims, const int64_t *ne,
                        const int *src, int n_src, const int32_t *ip, const float *fp,
                        tern_error *err);
/* Appends a node that writes into an existing tensor (KV cache store). */
tern_status tern_graph_add_node_into(tern_graph *g, int op, int dst, const int *src, int n_src,
                                     tern_error *err);

#endif
