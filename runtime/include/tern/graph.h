/* tern/graph.h - the static op graph a Lua graph script builds once per
 * shape class, and the executor that runs it. */
#ifndef TERN_GRAPH_H
#define TERN_GRAPH_H

#include <stdatomic.h>
#include <stdint.h>

#include "backend.h"
#include "status.h"
#include "threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_graph tern_graph;

/* Time spent per op, how many nodes ran past the first backend of the
 * list, and the copies between memory spaces, summed over evaluations
 * (tern run --verbose, tern bench -v). */
typedef struct tern_graph_stats {
    double op_seconds[TERN_OP_COUNT];
    uint64_t op_calls[TERN_OP_COUNT];
    uint64_t fallback_calls[TERN_OP_COUNT]; /* of op_calls, not on the first backend */
    double copy_seconds;
    uint64_t copy_calls;
    uint64_t copy_bytes;
    uint64_t evals;
} tern_graph_stats;

/* Where a planned graph's nodes run. */
typedef struct tern_graph_placement {
    int n_nodes;                        /* op nodes (copies not counted) */
    int nodes_on[TERN_MAX_BACKENDS];    /* per backend of the list */
    int n_fallback;                     /* not on the first backend */
    int n_copies;                       /* copy nodes per evaluation */
    size_t copy_bytes;                  /* bytes they move per evaluation */
    int n_no_wait;                      /* threaded nodes that start without waiting
                                         * for the ones before (disjoint memory) */
} tern_graph_placement;

tern_status tern_graph_create(int n_tok, int n_out, tern_graph **out, tern_error *err);
void tern_graph_free(tern_graph *g);
int tern_graph_n_nodes(const tern_graph *g);
int tern_graph_n_fallback(const tern_graph *g);
size_t tern_graph_arena_bytes(const tern_graph *g);

/* Assigns nodes to the backends of the list be[0..n_be) (the first that
 * accepts each), places the weights they read, inserts copies between
 * memory spaces, plans the arenas and scratch. n_threads of pool's threads
 * run the threaded nodes. Called once after building. */
tern_status tern_graph_plan(tern_graph *g, tern_backend *const *be, int n_be,
                            tern_threadpool *pool, int n_threads, tern_error *err);
void tern_graph_placement_get(const tern_graph *g, tern_graph_placement *out);
/* Input buffers: tokens, positions (I32 [n_tok]) and output row ids
 * (I32 [n_out]); the session fills them before tern_graph_compute. */
int32_t *tern_graph_tokens(tern_graph *g);
int32_t *tern_graph_positions(tern_graph *g);
int32_t *tern_graph_out_ids(tern_graph *g);
/* Runs every node; the output is F32 [n_vocab, n_out]. A kernel's error, a
 * failed sync or copy, or *cancel becoming nonzero stops the evaluation
 * after the node concerned and returns the status with a message naming
 * the node, its op and backend; the graph stays usable. */
tern_status tern_graph_compute(tern_graph *g, tern_graph_stats *stats, const atomic_int *cancel,
                               tern_error *err);
const float *tern_graph_output(const tern_graph *g, int64_t *n_cols, int64_t *n_rows);

#ifdef __cplusplus
}
#endif
#endif
