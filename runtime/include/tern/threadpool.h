/* tern/threadpool.h - persistent worker threads and pieces of work.
 *
 * The executor hands a whole graph to the pool once per evaluation: every
 * thread walks the node list, claims pieces of each node and waits until
 * the node's pieces are done, so one evaluation costs one wake-up.
 *
 * A process has one shared pool (tern_threadpool_acquire): every model
 * uses it, and it holds as many threads as its users asked for together.
 * Jobs from different threads (a draft and a verifier overlapping, a
 * server's sessions) run at once on disjoint threads while there are CPUs
 * for them, else one after the other; a job uses as many threads as its
 * caller asks for, fewer when other jobs hold CPUs or threads. */
#ifndef TERN_THREADPOOL_H
#define TERN_THREADPOOL_H

#include <stdatomic.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_threadpool tern_threadpool;

/* Work run on every thread of a job: ith in [0, nth); the caller is ith 0. */
typedef void (*tern_parallel_fn)(void *arg, int ith, int nth);

/* A private pool (tests, tools). */
tern_status tern_threadpool_create(int n_threads, tern_threadpool **out, tern_error *err);
void tern_threadpool_free(tern_threadpool *tp); /* accepts NULL */
/* The process's shared pool, grown by n_threads - 1 workers over what its
 * other users hold; each acquire is matched by one release with the same
 * n_threads (accepts NULL), the last one stops the threads. */
tern_status tern_threadpool_acquire(int n_threads, tern_threadpool **out, tern_error *err);
void tern_threadpool_release(tern_threadpool *tp, int n_threads);
int tern_threadpool_size(tern_threadpool *tp);
/* The CPUs the pool's jobs share (default: the logical CPUs); tests set it. */
void tern_threadpool_set_cpus(tern_threadpool *tp, int cpus);
/* Runs fn(arg, ith, nth') on nth' threads, the caller as ith 0, and
 * returns when every one has finished: nth' = nth when no other job runs;
 * beside other jobs at most the CPUs they leave (it waits while they leave
 * none) and the workers they leave (fn must work for any nth' >= 1).
 * A job started inside a job (or with nth 1, or no pool) runs
 * fn(arg, 0, 1) inline. */
void tern_threadpool_run_n(tern_threadpool *tp, int nth, tern_parallel_fn fn, void *arg);
/* run_n with all of the pool's threads. */
void tern_threadpool_run(tern_threadpool *tp, tern_parallel_fn fn, void *arg);
/* Pieces of work inside a job, for steps that end when their pieces are
 * done rather than when every thread has arrived (a thread the OS has
 * descheduled then delays a step by at most the piece it holds). The
 * three counters sit 64 bytes apart: threads waiting for a step read
 * `done`, which the last finisher writes once, so they do not steal the
 * cache line of `finished` from the threads still counting their pieces
 * (with 16 threads polling the counter itself, every count moved the line
 * 16 ways). Zero all three before the step. */
typedef struct tern_pieces {
    atomic_uint claimed;  /* pieces taken: the next one's index */
    char pad0[60];
    atomic_uint finished; /* pieces done */
    char pad1[60];
    atomic_uint done;     /* 1 once finished reached the count */
    char pad2[60];
} tern_pieces;
void tern_pieces_reset(tern_pieces *p);
/* piece_done counts one finished piece of n and, at the last, marks the
 * step done and wakes its waiters; wait_pieces returns once it is done,
 * spinning briefly, then yielding, then sleeping. */
void tern_threadpool_piece_done(tern_threadpool *tp, tern_pieces *p, unsigned n);
void tern_threadpool_wait_pieces(tern_threadpool *tp, tern_pieces *p);

#ifdef __cplusplus
}
#endif
#endif
