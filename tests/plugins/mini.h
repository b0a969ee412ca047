/* mini.h - the smallest backend boilerplate, shared by the test plugins in
 * this folder (each deliberately wrong in one way, except good.c and
 * devsim.c). Plugins never link libtern. */
#ifndef TERN_TEST_MINI_H
#define TERN_TEST_MINI_H

#include <stdio.h>
#include <string.h>

#include "tern/plugin.h"

#define TERN_EXPORT __attribute__((visibility("default")))

static inline void mini_probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    out->runnable = 1;
    out->score = 1;
    snprintf(out->desc, sizeof out->desc, "test plugin");
}

static inline tern_status mini_init(const tern_host_api *host, const tern_backend_options *opt, void **ctx,
                             char *err, size_t errlen)
{
    (void)opt, (void)err, (void)errlen;
    *ctx = (void *)host;
    return TERN_OK;
}

static inline void mini_free(void *ctx) { (void)ctx; }

/* The common members; each plugin states the ones it gets wrong. */
#define MINI_API(NAME, ABI, SIZE, PROBE, CAPS)                                     \
    .abi_version = (ABI), .struct_size = (SIZE), .name = (NAME), .caps = (CAPS), \
    .op_semantics = TERN_OP_SEMANTICS_VERSION, .probe = (PROBE), .init = mini_init,   \
    .free = mini_free

#endif
