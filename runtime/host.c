/* host.c - the host table libtern lends to plugins: aligned allocation,
 * logging, CPU features, the thread pool and the evaluation's error slot.
 * Plugins never link libtern, so this is all they see. The process-wide
 * table is built once (pthread_once); each backend instance gets a copy
 * whose user pointer is the instance, so parallel_for runs on its model's
 * threads. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "graph_impl.h"
#include "tern/backend.h"

static void *host_alloc(size_t size, size_t align)
{
    void *p = NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (size == 0) size = 1;
    if (posix_memalign(&p, align, size) != 0) return NULL;
    return p;
}

static void host_free(void *p) { free(p); }

static int level;
static void read_level(void)
{
    const char *e = getenv("TERN_LOG");
    level = e ? atoi(e) : TERN_LOG_WARN;
}

static int log_level(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_level);
    return level;
}

static void host_log(int lvl, const char *fmt, ...)
{
    if (lvl > log_level()) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("tern: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Tasks handed out one at a time, so uneven tasks (weights of different
 * sizes) balance across threads. */
typedef struct task_job {
    tern_task_fn fn;
    void *arg;
    int n;
    atomic_int next;
} task_job;

static void run_tasks(void *p, int ith, int nth)
{
    (void)ith, (void)nth;
    task_job *j = p;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) j->fn(j->arg, i, j->n);
}

static void host_parallel_for(const tern_host_api *host, int n, tern_task_fn fn, void *arg)
{
    const tern_backend *be = host ? host->user : NULL;
    task_job j = {fn, arg, n, 0};
    int nth = be && be->pool ? be->n_threads : 1;
    if (nth > n) nth = n;
    tern_threadpool_run_n(be ? be->pool : NULL, nth, run_tasks, &j);
}

static void host_node_error(const tern_node *node, tern_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (node && node->error) {
        tern_graph_node_failv(node->error, st, fmt, ap);
    } else if (log_level() >= TERN_LOG_DEBUG) { /* a kernel called outside the executor (a test) */
        fputs("tern: kernel error outside an evaluation: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

const char *tern_cache_dir(char *buf, size_t n)
{
    const char *t = getenv("TERN_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    buf[0] = 0;
    if (t && *t) snprintf(buf, n, "%s", t);
    else if (x && *x) snprintf(buf, n, "%s/tern", x);
    else if (h && *h) snprintf(buf, n, "%s/.cache/tern", h);
    return buf[0] ? buf : NULL;
}

/* Where `tern tune` keeps wisdom and tuned kernel plugins. */
static char cache_dir[4096];

static tern_host_api host;
static void build_host(void)
{
    host.struct_size = sizeof host;
    host.alloc = host_alloc;
    host.free = host_free;
    host.log = host_log;
    host.cpu_features = tern_cpu_features();
    host.cache_dir = tern_cache_dir(cache_dir, sizeof cache_dir);
    host.user = NULL;
    host.parallel_for = host_parallel_for;
    host.node_error = host_node_error;
    host.abi_version = TERN_BACKEND_ABI_VERSION;
}

const tern_host_api *tern_host(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_host);
    return &host;
}
