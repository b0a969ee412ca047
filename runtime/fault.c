/* fault.c - the allocation fault injection of fault.h (the short reads are
 * input.c's, which the fuzz targets link without these wrappers), and a
 * count of the blocks libtern holds, for leak checks without ASan.
 *
 * The wrappers below are what libtern's calls to malloc, calloc, realloc,
 * strdup, posix_memalign and free resolve to (-Wl,--wrap in SConstruct); they
 * forward to the C library unless a test armed a failure. Disarmed, the
 * cost is a relaxed atomic load and add per allocation. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"

void *__real_malloc(size_t n);
void __real_free(void *p);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void __wrap_free(void *p);

static atomic_long fail_at;     /* 0 = disarmed; else the allocation number that fails */
static atomic_int fail_after;   /* persistent: every allocation from fail_at on fails */
static atomic_long seen, failed;
static atomic_long live; /* blocks allocated and not yet freed */

void tern_fault_alloc_fail(long n, int persistent)
{
    atomic_store(&fail_at, 0);
    atomic_store(&seen, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_after, persistent);
    atomic_store(&fail_at, n > 0 ? n : 0);
}

long tern_fault_alloc_count(void) { return atomic_load(&seen); }
long tern_fault_alloc_failures(void) { return atomic_load(&failed); }
long tern_fault_alloc_live(void) { return atomic_load(&live); }

static void *counted(void *p)
{
    if (p) atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return p;
}

/* 1 when this allocation is to fail. */
static int inject(void)
{
    long at = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (!at) return 0;
    long k = atomic_fetch_add(&seen, 1) + 1;
    if (k == at || (k > at && atomic_load(&fail_after))) {
        atomic_fetch_add(&failed, 1);
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    return counted(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (inject()) {
        errno = ENOMEM;
        return NULL;
    }
    return counted(__real_calloc(n, size));
}

void *__wrap_realloc(void *p, size_t n)
{
    if (n && inject()) { /* realloc(p, 0) frees: never a failure */
        errno = ENOMEM;
        return NULL;
    }
    void *q = __real_realloc(p, n);
    if (!p) counted(q);
    else if (!n) atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    return q;
}

void __wrap_free(void *p)
{
    if (p) atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    __real_free(p);
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = __wrap_malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    if (inject()) return ENOMEM;
    int rc = __real_posix_memalign(p, align, n);
    if (!rc) counted(*p);
    return rc;
}
