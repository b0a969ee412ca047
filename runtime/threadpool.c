/* threadpool.c - persistent pthreads for the executor, one pool per process.
 *
 * Workers wait for a new job generation: they spin briefly (a job usually
 * follows the previous one within microseconds while a model runs), then
 * sleep on a condition variable so an idle pool costs no CPU. Inside a
 * job, a step ends when its pieces are done (piece_done / wait_pieces): a
 * waiter spins with a pause, then yields a few times, then sleeps on a
 * futex, so with more threads than free cores the thread holding the last
 * piece gets a core instead of competing with spinners.
 *
 * One job runs at a time: callers from several threads (two sessions, a
 * draft and a verifier) take turns per job instead of running two spinning
 * pools against each other. A job may use fewer threads than the pool has;
 * the others sit it out. A job started from inside a job runs inline on
 * the calling thread. */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tern/threadpool.h"

#define SPIN_BEFORE_SLEEP 20000 /* idle workers, between jobs: pauses, then yields */
#define SPIN_BEFORE_YIELD 2000   /* waiting for pieces and job end: then yield ... */
#define YIELDS_BEFORE_SLEEP 64   /* ... then sleep on the futex */
#define MAX_THREADS 512

struct tern_threadpool {
    int n;                  /* threads, the caller's included */
    pthread_t *threads;     /* [MAX_THREADS], [0] unused (the caller) */
    pthread_mutex_t mu;     /* guards sleeping and growing */
    pthread_cond_t cv;
    pthread_mutex_t job_mu; /* one job at a time */
    atomic_uint generation; /* bumped for each job */
    atomic_int pending;     /* workers still inside the current job */
    atomic_int stop;
    tern_parallel_fn fn;
    void *arg;
    int job_n;              /* threads the current job uses */
    atomic_int sleepers;    /* wait_pieces callers asleep on a futex */
    int refs;               /* users of the shared pool */
};

typedef struct worker_arg {
    tern_threadpool *tp;
    int ith;
    unsigned seen; /* the generation when it started */
} worker_arg;

static _Thread_local int in_job; /* this thread runs a job's fn now */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void futex_wait(atomic_uint *addr, unsigned val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    tern_threadpool *tp = wa.tp;
    unsigned seen = wa.seen;
    in_job = 1; /* anything a worker calls is inside a job */
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop)) {
            /* pause first, then yield: with more threads than cores, an
             * idle worker that only paused kept the core from the thread
             * that starts the next job until the scheduler's tick (4 ms a
             * token); a yield with nothing else to run returns at once */
            if (++spins < SPIN_BEFORE_YIELD) {
                cpu_relax();
                continue;
            }
            if (spins < SPIN_BEFORE_SLEEP) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&tp->mu);
            while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = gen;
        if (wa.ith < tp->job_n) tp->fn(tp->arg, wa.ith, tp->job_n);
        atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel);
    }
}

/* Starts workers until the pool has n threads; call with no job running. */
static tern_status grow(tern_threadpool *tp, int n, tern_error *err)
{
    while (tp->n < n) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){tp, tp->n, atomic_load(&tp->generation)};
        if (!wa || pthread_create(&tp->threads[tp->n], NULL, worker_main, wa) != 0) {
            free(wa);
            return tern_error_set(err, TERN_ENOMEM, "cannot start worker thread %d", tp->n);
        }
        tp->n++;
    }
    return TERN_OK;
}

tern_status tern_threadpool_create(int n_threads, tern_threadpool **out, tern_error *err)
{
    if (n_threads < 1 || n_threads > MAX_THREADS)
        return tern_error_set(err, TERN_EINVAL, "thread count %d out of range 1..%d", n_threads,
                              MAX_THREADS);
    tern_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return tern_error_set(err, TERN_ENOMEM, "out of memory creating thread pool");
    tp->n = 1;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    pthread_mutex_init(&tp->job_mu, NULL);
    tp->threads = calloc(MAX_THREADS, sizeof *tp->threads);
    tern_status st = tp->threads ? grow(tp, n_threads, err)
                                 : tern_error_set(err, TERN_ENOMEM, "out of memory creating thread pool");
    if (st) {
        tern_threadpool_free(tp);
        return st;
    }
    *out = tp;
    return TERN_OK;
}

void tern_threadpool_free(tern_threadpool *tp)
{
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->job_mu);
    free(tp->threads);
    free(tp);
}

int tern_threadpool_size(const tern_threadpool *tp) { return tp ? tp->n : 1; }

void tern_threadpool_run_n(tern_threadpool *tp, int nth, tern_parallel_fn fn, void *arg)
{
    if (!tp || nth <= 1 || in_job) {
        int was = in_job;
        in_job = 1;
        fn(arg, 0, 1);
        in_job = was;
        return;
    }
    pthread_mutex_lock(&tp->job_mu);
    if (nth > tp->n) nth = tp->n;
    tp->fn = fn;
    tp->arg = arg;
    tp->job_n = nth;
    atomic_store(&tp->pending, tp->n - 1);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    in_job = 1;
    fn(arg, 0, nth);
    in_job = 0;
    int spins = 0;
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_BEFORE_YIELD) cpu_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&tp->job_mu);
}

void tern_threadpool_run(tern_threadpool *tp, tern_parallel_fn fn, void *arg)
{
    tern_threadpool_run_n(tp, tern_threadpool_size(tp), fn, arg);
}

void tern_threadpool_piece_done(tern_threadpool *tp, atomic_uint *finished, unsigned n)
{
    /* seq_cst: either a waiter sees the last count, or we see it asleep */
    if (atomic_fetch_add(finished, 1) + 1 == n && tp && atomic_load(&tp->sleepers))
        futex_wake_all(finished);
}

void tern_threadpool_wait_pieces(tern_threadpool *tp, atomic_uint *finished, unsigned n)
{
    int spins = 0;
    unsigned v;
    while ((v = atomic_load_explicit(finished, memory_order_acquire)) < n) {
        if (++spins < SPIN_BEFORE_YIELD) {
            cpu_relax();
        } else if (spins < SPIN_BEFORE_YIELD + YIELDS_BEFORE_SLEEP || !tp) {
            sched_yield();
        } else {
            atomic_fetch_add(&tp->sleepers, 1);
            if (atomic_load(finished) == v) futex_wait(finished, v);
            atomic_fetch_sub(&tp->sleepers, 1);
        }
    }
}

/* ---- the process's shared pool ---- */

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static tern_threadpool *shared;

tern_status tern_threadpool_acquire(int n_threads, tern_threadpool **out, tern_error *err)
{
    if (n_threads < 1 || n_threads > MAX_THREADS)
        return tern_error_set(err, TERN_EINVAL, "thread count %d out of range 1..%d", n_threads,
                              MAX_THREADS);
    tern_status st = TERN_OK;
    pthread_mutex_lock(&shared_mu);
    if (!shared) {
        st = tern_threadpool_create(n_threads, &shared, err);
    } else if (shared->n < n_threads) {
        pthread_mutex_lock(&shared->job_mu); /* no job while workers join */
        st = grow(shared, n_threads, err);
        pthread_mutex_unlock(&shared->job_mu);
    }
    if (!st) {
        shared->refs++;
        *out = shared;
    }
    pthread_mutex_unlock(&shared_mu);
    return st;
}

void tern_threadpool_release(tern_threadpool *tp)
{
    if (!tp) return;
    pthread_mutex_lock(&shared_mu);
    if (tp == shared && --shared->refs == 0) {
        tern_threadpool_free(shared);
        shared = NULL;
    }
    pthread_mutex_unlock(&shared_mu);
}
