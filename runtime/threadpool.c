/* threadpool.c - persistent pthreads for the executor.
 *
 * Workers wait for a new job generation: they spin briefly (a job usually
 * follows the previous one within microseconds while a model runs), then
 * sleep on a condition variable so an idle pool costs no CPU. The barrier
 * is a sense-reversing counter; it spins with a pause and yields after a
 * while, so oversubscribed machines still make progress. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "tern/threadpool.h"

#define SPIN_BEFORE_SLEEP 200000
#define SPIN_BEFORE_YIELD 2000

struct tern_threadpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint generation; /* bumped for each job */
    atomic_int pending;     /* workers still running the current job */
    atomic_int stop;
    tern_parallel_fn fn;
    void *arg;
    /* barrier */
    atomic_int bar_count;
    atomic_uint bar_sense;
};

typedef struct worker_arg {
    tern_threadpool *tp;
    int ith;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    tern_threadpool *tp = wa.tp;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
               !atomic_load(&tp->stop)) {
            if (++spins < SPIN_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&tp->mu);
            while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = gen;
        tp->fn(tp->arg, wa.ith, tp->n);
        atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel);
    }
}

tern_status tern_threadpool_create(int n_threads, tern_threadpool **out, tern_error *err)
{
    if (n_threads < 1 || n_threads > 512)
        return tern_error_set(err, TERN_EINVAL, "thread count %d out of range 1..512", n_threads);
    tern_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return tern_error_set(err, TERN_ENOMEM, "out of memory creating thread pool");
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->threads = calloc((size_t)n_threads, sizeof *tp->threads);
    if (!tp->threads) {
        free(tp);
        return tern_error_set(err, TERN_ENOMEM, "out of memory creating thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->tp = tp;
            wa->ith = i;
        }
        if (!wa || pthread_create(&tp->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            tp->n = i; /* only these started */
            tern_threadpool_free(tp);
            return tern_error_set(err, TERN_ENOMEM, "cannot start worker thread %d", i);
        }
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
    free(tp->threads);
    free(tp);
}

int tern_threadpool_size(const tern_threadpool *tp) { return tp ? tp->n : 1; }

void tern_threadpool_run(tern_threadpool *tp, tern_parallel_fn fn, void *arg)
{
    if (!tp || tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->pending, tp->n - 1);
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    fn(arg, 0, tp->n);
    int spins = 0;
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_BEFORE_YIELD) cpu_relax();
        else sched_yield();
    }
}

void tern_threadpool_barrier(tern_threadpool *tp)
{
    if (!tp || tp->n == 1) return;
    unsigned sense = atomic_load_explicit(&tp->bar_sense, memory_order_acquire);
    if (atomic_fetch_add_explicit(&tp->bar_count, 1, memory_order_acq_rel) == tp->n - 1) {
        atomic_store_explicit(&tp->bar_count, 0, memory_order_relaxed);
        atomic_store_explicit(&tp->bar_sense, sense + 1, memory_order_release);
        return;
    }
    int spins = 0;
    while (atomic_load_explicit(&tp->bar_sense, memory_order_acquire) == sense) {
        if (++spins < SPIN_BEFORE_YIELD) cpu_relax();
        else sched_yield();
    }
}
