/* graph_impl.h - the graph IR behind tern/graph.h (runtime-internal).
 *
 * A graph is a static list of op nodes over tensors, built once per shape
 * class (number of tokens, which rows produce logits) by a Lua graph script
 * through the builder calls below, then planned:
 *   1. placement: every node goes to the first backend of the model's list
 *      that has the op and accepts the node with its tensors placed in that
 *      backend's memory (weights placed for it, see model_impl.h);
 *   2. copies: where a node reads a tensor that lives in another memory
 *      space (host, or one device backend's), a copy node is inserted
 *      before it, once per (tensor, space); logits on a device get a final
 *      copy to the host;
 *   3. memory: one arena per space (host memory, or one buffer_alloc per
 *      device backend), offsets by tensor lifetime;
 *   4. execution order: threaded host nodes are cut into pieces the
 *      pool's threads claim; a node starts when the nodes it depends on
 *      are done (consecutive nodes that touch disjoint memory, such as the
 *      q, k and v projections, run without a wait between them); device
 *      nodes and copies run on one thread, and each run of nodes on a
 *      backend ends with its sync().
 * Evaluating it allocates nothing. */
#ifndef TERN_GRAPH_IMPL_H
#define TERN_GRAPH_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "tern/backend.h"
#include "tern/graph.h"
#include "tern/threadpool.h"

struct tern_model_weight;

enum {
    GT_INTERMEDIATE = 0, /* produced by a node, lives in an arena */
    GT_INPUT,            /* filled by the session before each evaluation (host) */
    GT_WEIGHT,           /* a model weight: placed per backend at plan time */
    GT_EXTERN,           /* memory owned elsewhere (KV cache), in a fixed space */
    GT_VIEW              /* a reshape of another tensor, same bytes */
};

/* The executor's own node kind: dst = a copy of src[0] in another space. */
#define GRAPH_OP_COPY TERN_OP_COUNT
/* Memory spaces: the host, then one per device backend (index + 1). */
#define GRAPH_MAX_SPACES (TERN_MAX_BACKENDS + 1)

typedef struct graph_tensor {
    tern_tensor t;
    int kind;                         /* GT_* */
    int view_of;                      /* GT_VIEW: the viewed tensor id */
    struct tern_model_weight *weight; /* GT_WEIGHT */
    int space;                        /* where its bytes live; -1 not yet placed */
    int last_use;                     /* node index of the last reader */
    size_t offset;                    /* GT_INTERMEDIATE: arena offset */
    char name[48];
} graph_tensor;

/* Where a kernel's node_error() lands: the graph and the node's index. */
struct tern_node_slot {
    struct tern_graph *g;
    int index;
};

typedef struct graph_node {
    tern_node node;      /* src/dst pointers are filled at plan time */
    int dst;             /* tensor ids */
    int src[TERN_NODE_MAX_SRC];
    int be;              /* index in the backend list; -1 for a copy */
    int threaded;        /* every thread of the job runs a share */
    int seg_end;         /* one-thread nodes: end of the run starting here */
    int overlaps_prev;   /* threaded: may start before the nodes since the
                          * last wait are done (disjoint memory, pure op) */
    int sync_after;      /* last node of a run on its backend: sync after it */
    /* pieces of this node claimed and finished in the current evaluation
     * (threaded nodes are cut into pieces the threads claim: run_nodes) */
    tern_pieces pieces;
    struct tern_node_slot slot;
    tern_op_fn fn;
    void *ctx;
} graph_node;

/* The evaluation's error slot: the first failure wins. */
typedef struct graph_error {
    pthread_mutex_t mu;
    atomic_int status;   /* tern_status; 0 = none */
    int node;            /* index of the node that failed */
    char msg[TERN_ERROR_MSG_MAX];
} graph_error;

/* One sequence of a multi-sequence batch: tokens [tok0, tok0 + n_tok) of
 * the evaluation belong to it, and its KV rows are [row0, row0 + n_rows)
 * of every cache. KV_STORE and ATTENTION run once per run over those
 * slices (positions stay the sequence's own), so a token attends only its
 * own sequence and the kernels see exactly what a one-sequence evaluation
 * would show them: results are bit-identical. */
typedef struct graph_seq_run {
    int tok0, n_tok;
    int64_t row0, n_rows;
} graph_seq_run;

struct tern_graph {
    int n_tok;           /* tokens per evaluation (shape class) */
    int n_out;           /* rows of the output (logits) */
    graph_tensor *tensors;
    int n_tensors, cap_tensors;
    graph_node *nodes;
    int n_nodes, cap_nodes;
    int output;          /* tensor id of the logits as built */
    int output_host;     /* the host tensor the caller reads them from */
    int in_tokens, in_positions, in_out_ids; /* input tensor ids */
    tern_backend *const *be; /* the model's backend list */
    int n_be;
    void *arena[GRAPH_MAX_SPACES]; /* host memory ([0]) or a device buffer */
    size_t arena_size[GRAPH_MAX_SPACES];
    void *inputs_mem;    /* inputs, each 64-byte aligned */
    void *staging;       /* device-to-device copies pass through here */
    void *scratch;       /* per-thread scratch, scratch_stride apart */
    size_t scratch_stride;
    int n_threads;
    int any_threaded;    /* 0: the whole graph runs on the calling thread */
    int n_no_wait;       /* nodes with overlaps_prev */
    int n_fallback;      /* nodes not on the first backend of the list */
    int n_copies;        /* copy nodes per evaluation */
    size_t copy_bytes;   /* bytes they move per evaluation */
    int nodes_on[TERN_MAX_BACKENDS];
    tern_threadpool *pool;
    tern_graph_stats *stats;   /* accumulated op times; may be NULL */
    const atomic_int *cancel;  /* the session's cancel flag; may be NULL */
    graph_error err;
    int planned;
    const graph_seq_run *runs; /* the next evaluations' sequences; NULL: one sequence, whole caches */
    int n_runs;
};

/* Builder calls (used by the Lua bindings). Each returns a tensor id >= 0,
 * or -1 with err set. */
int tern_graph_add_tensor(tern_graph *g, int kind, int type, int n_dims, const int64_t *ne,
                          const char *name, tern_error *err);
int tern_graph_add_weight(tern_graph *g, struct tern_model_weight *w, tern_error *err);
/* t lives in memory space `space` (0 host, b + 1 device backend b). */
int tern_graph_add_extern(tern_graph *g, tern_tensor *t, int space, tern_error *err);
int tern_graph_add_view(tern_graph *g, int src, int n_dims, const int64_t *ne, tern_error *err);
/* Appends a node writing a new intermediate of the given type and shape. */
int tern_graph_add_node(tern_graph *g, int op, int type, int n_dims, const int64_t *ne,
                        const int *src, int n_src, const int32_t *ip, const float *fp,
                        tern_error *err);
/* Appends a node that writes into an existing tensor (KV cache store). */
tern_status tern_graph_add_node_into(tern_graph *g, int op, int dst, const int *src, int n_src,
                                     tern_error *err);

/* Sets the sequences of the next evaluations (runs is borrowed until the
 * next call; n_runs 0 = one sequence over the whole caches). The runs
 * cover the tokens in order; the caller checked them. Only host-memory
 * caches may be split (the session refuses others). */
void tern_graph_set_runs(tern_graph *g, const graph_seq_run *runs, int n_runs);

/* Memory space of backend b of a list: 0 for host-memory backends. */
int tern_graph_space_of(const tern_backend *be, int b);
/* The first backend of the list that runs both KV_STORE and ATTENTION for
 * a cache of this shape in its own memory: the KV cache goes there. */
int tern_graph_kv_backend(tern_backend *const *be, int n_be, int kv_type, int64_t head_dim,
                          int64_t n_head, int64_t n_head_kv, int64_t n_ctx);
/* Records a node's failure in its graph's error slot (host->node_error). */
void tern_graph_node_failv(struct tern_node_slot *slot, tern_status st, const char *fmt, va_list ap);

#endif
