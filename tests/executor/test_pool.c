/* test_pool.c - the thread pool: jobs from two threads run at the same
 * time on disjoint workers, each with the threads it asked for, when there
 * are CPUs for both, and one after the other when not; the shared pool
 * holds its users' threads together; under many concurrent jobs every
 * thread of every job runs exactly once; a job inside a job runs inline. */
#include <pthread.h>
#include <stdatomic.h>

#include "common/testutil.h"
#include "tern/tern.h"
#include "tern/threadpool.h"

typedef struct rendezvous_job {
    tern_threadpool *tp;
    int nth_asked, nth_seen;
    atomic_int calls[8];
    atomic_int *started;      /* [2]: set by each job's thread 0 */
    int self, met;            /* met: thread 0 saw the other job running */
    double wait_s;            /* how long thread 0 waits for the other */
} rendezvous_job;

static void rendezvous_fn(void *arg, int ith, int nth)
{
    rendezvous_job *j = arg;
    atomic_fetch_add(&j->calls[ith], 1);
    if (ith) return;
    j->nth_seen = nth;
    atomic_store(&j->started[j->self], 1);
    /* wait (bounded) until the other job is inside its fn too: only
     * possible if the pool runs both at once */
    for (double t0 = tu_now_s(); tu_now_s() - t0 < j->wait_s;)
        if (atomic_load(&j->started[1 - j->self])) {
            j->met = 1;
            break;
        }
}

static void *rendezvous_thread(void *arg)
{
    rendezvous_job *j = arg;
    tern_threadpool_run_n(j->tp, j->nth_asked, rendezvous_fn, j);
    return NULL;
}

/* Two jobs of nth threads on a private pool of 5 that shares `cpus` CPUs;
 * returns how many of the two saw the other one running. */
static int two_jobs(int cpus, int nth, double wait_s, int nth_seen[2])
{
    tern_threadpool *tp;
    tern_error err;
    ck_assert_int_eq(tern_threadpool_create(5, &tp, &err), TERN_OK);
    tern_threadpool_set_cpus(tp, cpus);
    atomic_int started[2] = {0, 0};
    rendezvous_job j[2];
    for (int k = 0; k < 2; k++) {
        memset(&j[k], 0, sizeof j[k]);
        j[k].tp = tp, j[k].nth_asked = nth, j[k].started = started, j[k].self = k, j[k].wait_s = wait_s;
    }
    pthread_t t[2];
    for (int k = 0; k < 2; k++) ck_assert_int_eq(pthread_create(&t[k], NULL, rendezvous_thread, &j[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++) {
        nth_seen[k] = j[k].nth_seen;
        for (int i = 0; i < 8; i++) ck_assert_int_eq(atomic_load(&j[k].calls[i]), i < j[k].nth_seen);
    }
    tern_threadpool_free(tp);
    return j[0].met + j[1].met;
}

START_TEST(test_pool_concurrent_jobs)
{
    int nth[2];
    /* CPUs for both: they run at once, with all the threads they asked for */
    ck_assert_int_eq(two_jobs(8, 3, 10, nth), 2);
    ck_assert_int_eq(nth[0], 3);
    ck_assert_int_eq(nth[1], 3);
    /* CPUs for one: the second waits for the first, then gets its threads */
    ck_assert_int_le(two_jobs(2, 2, 0.3, nth), 1);
    ck_assert_int_eq(nth[0], 2);
    ck_assert_int_eq(nth[1], 2);
}
END_TEST

START_TEST(test_pool_shared_size)
{
    tern_threadpool *a, *b;
    tern_error err;
    ck_assert_int_eq(tern_threadpool_acquire(3, &a, &err), TERN_OK);
    ck_assert_int_eq(tern_threadpool_acquire(3, &b, &err), TERN_OK);
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(tern_threadpool_size(a), 5); /* 2 workers each + a caller */
    tern_threadpool_release(a, 3);
    tern_threadpool_release(b, 3);
}
END_TEST

typedef struct stress_job {
    int nth_seen;
    atomic_int calls[8];
} stress_job;

static void stress_fn(void *arg, int ith, int nth)
{
    stress_job *j = arg;
    if (ith == 0) j->nth_seen = nth;
    atomic_fetch_add(&j->calls[ith], 1);
}

typedef struct stress_thread_arg {
    tern_threadpool *tp;
    int bad;
} stress_thread_arg;

static void *stress_thread(void *arg)
{
    stress_thread_arg *s = arg;
    for (int r = 0; r < 3000; r++) {
        stress_job j = {0};
        int asked = 1 + r % 4;
        tern_threadpool_run_n(s->tp, asked, stress_fn, &j);
        if (j.nth_seen < 1 || j.nth_seen > asked) s->bad++;
        for (int i = 0; i < 8; i++) s->bad += atomic_load(&j.calls[i]) != (i < j.nth_seen);
    }
    return NULL;
}

START_TEST(test_pool_many_jobs)
{
    tern_threadpool *tp;
    tern_error err;
    ck_assert_int_eq(tern_threadpool_create(4, &tp, &err), TERN_OK);
    stress_thread_arg s[4];
    pthread_t t[4];
    for (int k = 0; k < 4; k++) {
        s[k] = (stress_thread_arg){tp, 0};
        ck_assert_int_eq(pthread_create(&t[k], NULL, stress_thread, &s[k]), 0);
    }
    for (int k = 0; k < 4; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 4; k++) ck_assert_msg(!s[k].bad, "thread %d: %d jobs ran a thread twice, never or out of range", k, s[k].bad);
    tern_threadpool_free(tp);
}
END_TEST

static void inner_fn(void *arg, int ith, int nth)
{
    atomic_int *n = arg;
    ck_assert_int_eq(ith, 0);
    ck_assert_int_eq(nth, 1);
    atomic_fetch_add(n, 1);
}

typedef struct nested_arg {
    tern_threadpool *tp;
    atomic_int inner;
} nested_arg;

static void outer_fn(void *arg, int ith, int nth)
{
    (void)ith, (void)nth;
    nested_arg *a = arg;
    tern_threadpool_run_n(a->tp, 4, inner_fn, &a->inner);
}

START_TEST(test_pool_nested_inline)
{
    tern_threadpool *tp;
    tern_error err;
    ck_assert_int_eq(tern_threadpool_create(3, &tp, &err), TERN_OK);
    nested_arg a = {tp, 0};
    tern_threadpool_run_n(tp, 3, outer_fn, &a);
    ck_assert_int_eq(atomic_load(&a.inner), 3); /* once per outer thread, inline */
    tern_threadpool_free(tp);
}
END_TEST

TCase *pool_tcase(void)
{
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pool_concurrent_jobs);
    tcase_add_test(tc, test_pool_shared_size);
    tcase_add_test(tc, test_pool_many_jobs);
    tcase_add_test(tc, test_pool_nested_inline);
    return tc;
}
