/* tern/threadpool.h - persistent worker threads and a low-overhead barrier.
 *
 * The executor hands a whole graph to the pool once per evaluation: every
 * thread walks the node list, runs its share of each node and meets the
 * others at a spinning barrier, so one evaluation costs one wake-up. */
#ifndef TERN_THREADPOOL_H
#define TERN_THREADPOOL_H

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_threadpool tern_threadpool;

/* Work run on every thread: ith in [0, nth); the caller's thread is ith 0. */
typedef void (*tern_parallel_fn)(void *arg, int ith, int nth);

tern_status tern_threadpool_create(int n_threads, tern_threadpool **out, tern_error *err);
void tern_threadpool_free(tern_threadpool *tp); /* accepts NULL */
int tern_threadpool_size(const tern_threadpool *tp);
/* Runs fn on all threads and returns when every one has finished. */
void tern_threadpool_run(tern_threadpool *tp, tern_parallel_fn fn, void *arg);
/* Called from inside fn by all nth threads: returns when all have arrived. */
void tern_threadpool_barrier(tern_threadpool *tp);

#ifdef __cplusplus
}
#endif
#endif
