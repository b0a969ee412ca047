/* tern/graph.h - the static op graph a Lua graph script builds once per
 * shape class, and the executor that runs it. */
#ifndef TERN_GRAPH_H
#define TERN_GRAPH_H

#include <stdint.h>

#include "backend.h"
#include "status.h"
#include "threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_graph tern_graph;

/* Time spent per op and how many nodes fell back to scalar, summed over
 * evaluations (tern run --verbose, tern bench). */
typedef struct tern_graph_stats {
    double op_seconds[TERN_OP_COUNT];
    uint64_t op_calls[TERN_OP_COUNT];
    uint64_t fallback_calls[TERN_OP_COUNT]; /* of op_calls, run on scalar */
    uint64_t evals;
} tern_graph_stats;

tern_status tern_graph_create(int n_tok, int n_out, tern_graph **out, tern_error *err);
void tern_graph_free(tern_graph *g);
int tern_graph_n_nodes(const tern_graph *g);
int tern_graph_n_fallback(const tern_graph *g);
size_t tern_graph_arena_bytes(const tern_graph *g);

/* Assigns nodes to backends (be[0] main; be[1] scalar for what be[0] lacks,
 * may be NULL when be[0] is scalar), resolves weights for them, plans the
 * arena and scratch. Called once after building. */
tern_status tern_graph_plan(tern_graph *g, tern_backend *const be[2], tern_threadpool *pool,
                            tern_error *err);
/* Input buffers: tokens, positions (I32 [n_tok]) and output row ids
 * (I32 [n_out]); the session fills them before tern_graph_compute. */
int32_t *tern_graph_tokens(tern_graph *g);
int32_t *tern_graph_positions(tern_graph *g);
int32_t *tern_graph_out_ids(tern_graph *g);
/* Runs every node; the output is F32 [n_vocab, n_out]. */
tern_status tern_graph_compute(tern_graph *g, tern_graph_stats *stats, tern_error *err);
const float *tern_graph_output(const tern_graph *g, int64_t *n_cols, int64_t *n_rows);

#ifdef __cplusplus
}
#endif
#endif
