/* threadpool.c - persistent pthreads for the executor, one pool per process.
 *
 * Each worker has its own mailbox: a job hands it (fn, arg, ith, nth) and
 * bumps its generation; an idle worker spins briefly on that (a job
 * usually follows the previous one within microseconds while a model
 * runs), then yields, then sleeps on a futex so an idle pool costs no CPU.
 * Inside a job, a step ends when its pieces are done (piece_done /
 * wait_pieces): a waiter spins with a pause, then yields a few times, then
 * sleeps on a futex, so with more threads than free cores the thread
 * holding the last piece gets a core instead of competing with spinners.
 *
 * Jobs from several threads (a draft and a verifier evaluating at once, a
 * server's sessions) run at the same time on disjoint workers while the
 * CPUs go round: a job that starts alone takes the nth - 1 workers it
 * asks for; one that starts beside others takes at most the CPUs they
 * leave, and waits for its turn when they leave none (two spinning jobs on
 * the same cores ran slower together than one after the other: 0.62-0.86x
 * on 2 cores). The shared pool holds as many workers as its users' thread
 * counts add up to, so each gets its count where the CPUs allow; one user
 * alone never wakes the others' workers. A job started from inside a job
 * runs inline on the calling thread. */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tern/backend.h" /* tern_cpu_logical_cpus */
#include "tern/threadpool.h"

#define SPIN_BEFORE_SLEEP 20000 /* idle workers, between jobs: pauses, then yields */
#define SPIN_BEFORE_YIELD 2000   /* waiting for pieces and job end: then yield ... */
#define YIELDS_BEFORE_SLEEP 64   /* ... then sleep on the futex */
#define MAX_THREADS 512

typedef struct job {
    tern_parallel_fn fn;
    void *arg;
    int nth;
    atomic_int pending; /* workers still inside fn */
} job;

typedef struct worker {
    tern_threadpool *tp;
    pthread_t thread;
    atomic_uint gen;     /* bumped when a job is handed over (or at stop) */
    atomic_int sleeping; /* asleep on gen's futex */
    job *job;            /* written before gen is bumped, read after */
    int ith;
    int busy;            /* handed a job its caller has not taken back (tp->mu) */
} worker;

struct tern_threadpool {
    pthread_mutex_t mu;            /* guards n, workers, busy, demand, active */
    pthread_cond_t turn;           /* signalled when a job ends */
    int active;                    /* threads inside jobs now, callers included */
    int cpus;                      /* CPUs the jobs share */
    int n;                         /* threads a job can use: the workers + its caller */
    worker *workers[MAX_THREADS];  /* [1, n); [0] unused (the caller) */
    atomic_int stop;
    atomic_int sleepers;           /* wait_pieces callers asleep on a futex */
    int refs;                      /* users of the shared pool */
    int demand;                    /* workers its users asked for together */
};

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

/* Bumps w's generation and wakes it if it sleeps. seq_cst on both sides:
 * either the worker sees the new generation before sleeping, or we see
 * it asleep. */
static void wake(worker *w)
{
    atomic_fetch_add(&w->gen, 1);
    if (atomic_load(&w->sleeping)) futex_wake_all(&w->gen);
}

static void *worker_main(void *p)
{
    worker *w = p;
    tern_threadpool *tp = w->tp;
    unsigned seen = 0; /* gen starts at 0, before the thread does */
    in_job = 1;        /* anything a worker calls is inside a job */
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&w->gen, memory_order_acquire)) == seen) {
            /* pause first, then yield: with more threads than cores, an
             * idle worker that only paused kept the core from the thread
             * that starts the next job until the scheduler's tick (4 ms a
             * token); a yield with nothing else to run returns at once */
            if (++spins < SPIN_BEFORE_YIELD) {
                cpu_relax();
            } else if (spins < SPIN_BEFORE_SLEEP) {
                sched_yield();
            } else {
                atomic_store(&w->sleeping, 1);
                if (atomic_load(&w->gen) == seen) futex_wait(&w->gen, seen);
                atomic_store(&w->sleeping, 0);
            }
        }
        seen = gen;
        if (atomic_load(&tp->stop)) return NULL;
        job *j = w->job;
        j->fn(j->arg, w->ith, j->nth);
        /* the last touch of the job: its caller's frame may go after this */
        atomic_fetch_sub_explicit(&j->pending, 1, memory_order_acq_rel);
    }
}

/* Starts workers until the pool has n threads (at most MAX_THREADS); with
 * tp->mu held, so a job never sees a half-started worker. */
static tern_status grow(tern_threadpool *tp, int n, tern_error *err)
{
    if (n > MAX_THREADS) n = MAX_THREADS;
    while (tp->n < n) {
        worker *w = calloc(1, sizeof *w);
        if (w) w->tp = tp;
        if (!w || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            free(w);
            return tern_error_set(err, TERN_ENOMEM, "cannot start worker thread %d", tp->n);
        }
        tp->workers[tp->n++] = w;
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
    tp->cpus = tern_cpu_logical_cpus();
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->turn, NULL);
    pthread_mutex_lock(&tp->mu);
    tern_status st = grow(tp, n_threads, err);
    pthread_mutex_unlock(&tp->mu);
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
    atomic_store(&tp->stop, 1);
    for (int i = 1; i < tp->n; i++) wake(tp->workers[i]);
    for (int i = 1; i < tp->n; i++) {
        pthread_join(tp->workers[i]->thread, NULL);
        free(tp->workers[i]);
    }
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->turn);
    free(tp);
}

int tern_threadpool_size(tern_threadpool *tp)
{
    if (!tp) return 1;
    pthread_mutex_lock(&tp->mu);
    int n = tp->n;
    pthread_mutex_unlock(&tp->mu);
    return n;
}

void tern_threadpool_run_n(tern_threadpool *tp, int nth, tern_parallel_fn fn, void *arg)
{
    if (!tp || nth <= 1 || in_job) {
        int was = in_job;
        in_job = 1;
        fn(arg, 0, 1);
        in_job = was;
        return;
    }
    /* take up to nth - 1 idle workers, within the CPUs other jobs leave */
    worker *mine[MAX_THREADS];
    int k = 0;
    pthread_mutex_lock(&tp->mu);
    while (tp->active > 0 && tp->active >= tp->cpus) pthread_cond_wait(&tp->turn, &tp->mu);
    if (tp->active > 0 && nth > tp->cpus - tp->active) nth = tp->cpus - tp->active;
    for (int i = 1; i < tp->n && k < nth - 1; i++)
        if (!tp->workers[i]->busy) {
            tp->workers[i]->busy = 1;
            mine[k++] = tp->workers[i];
        }
    tp->active += k + 1;
    pthread_mutex_unlock(&tp->mu);
    job j = {.fn = fn, .arg = arg, .nth = k + 1};
    atomic_init(&j.pending, k);
    for (int t = 0; t < k; t++) {
        mine[t]->job = &j;
        mine[t]->ith = t + 1;
        wake(mine[t]);
    }
    in_job = 1;
    fn(arg, 0, k + 1);
    in_job = 0;
    int spins = 0;
    while (atomic_load_explicit(&j.pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_BEFORE_YIELD) cpu_relax();
        else sched_yield();
    }
    pthread_mutex_lock(&tp->mu);
    for (int t = 0; t < k; t++) mine[t]->busy = 0;
    tp->active -= k + 1;
    pthread_cond_broadcast(&tp->turn);
    pthread_mutex_unlock(&tp->mu);
}

void tern_threadpool_set_cpus(tern_threadpool *tp, int cpus)
{
    pthread_mutex_lock(&tp->mu);
    tp->cpus = cpus < 1 ? 1 : cpus;
    pthread_mutex_unlock(&tp->mu);
}

void tern_threadpool_run(tern_threadpool *tp, tern_parallel_fn fn, void *arg)
{
    tern_threadpool_run_n(tp, tern_threadpool_size(tp), fn, arg);
}

void tern_pieces_reset(tern_pieces *p)
{
    atomic_store_explicit(&p->claimed, 0, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
}

void tern_threadpool_piece_done(tern_threadpool *tp, tern_pieces *p, unsigned n)
{
    if (atomic_fetch_add(&p->finished, 1) + 1 != n) return;
    /* seq_cst: either a waiter sees done, or we see it asleep */
    atomic_store(&p->done, 1);
    if (tp && atomic_load(&tp->sleepers)) futex_wake_all(&p->done);
}

void tern_threadpool_wait_pieces(tern_threadpool *tp, tern_pieces *p)
{
    int spins = 0;
    while (!atomic_load_explicit(&p->done, memory_order_acquire)) {
        if (++spins < SPIN_BEFORE_YIELD) {
            cpu_relax();
        } else if (spins < SPIN_BEFORE_YIELD + YIELDS_BEFORE_SLEEP || !tp) {
            sched_yield();
        } else {
            atomic_fetch_add(&tp->sleepers, 1);
            if (!atomic_load(&p->done)) futex_wait(&p->done, 0);
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
    if (!shared) st = tern_threadpool_create(1, &shared, err);
    if (!st) {
        pthread_mutex_lock(&shared->mu);
        shared->demand += n_threads - 1;
        st = grow(shared, shared->demand + 1, err);
        if (st) shared->demand -= n_threads - 1;
        pthread_mutex_unlock(&shared->mu);
    }
    if (!st) {
        shared->refs++;
        *out = shared;
    } else if (shared && !shared->refs) {
        tern_threadpool_free(shared);
        shared = NULL;
    }
    pthread_mutex_unlock(&shared_mu);
    return st;
}

void tern_threadpool_release(tern_threadpool *tp, int n_threads)
{
    if (!tp) return;
    pthread_mutex_lock(&shared_mu);
    if (tp == shared) {
        pthread_mutex_lock(&shared->mu);
        shared->demand -= n_threads - 1; /* the workers stay until the last release */
        pthread_mutex_unlock(&shared->mu);
        if (--shared->refs == 0) {
            tern_threadpool_free(shared);
            shared = NULL;
        }
    }
    pthread_mutex_unlock(&shared_mu);
}
