/* host.c - the host table libtern lends to plugins: aligned allocation,
 * logging, CPU features. Plugins never link libtern, so this is all they see. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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

static int log_level(void)
{
    static int level = -1;
    if (level < 0) {
        const char *e = getenv("TERN_LOG");
        level = e ? atoi(e) : TERN_LOG_WARN;
    }
    return level;
}

static void host_log(int level, const char *fmt, ...)
{
    if (level > log_level()) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("tern: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const tern_host_api *tern_host(void)
{
    static tern_host_api host;
    if (!host.abi_version) {
        host.struct_size = sizeof host;
        host.alloc = host_alloc;
        host.free = host_free;
        host.log = host_log;
        host.cpu_features = tern_cpu_features();
        host.cache_dir = NULL;
        host.abi_version = TERN_BACKEND_ABI_VERSION;
    }
    return &host;
}
