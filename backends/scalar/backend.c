/* backend.c - the scalar backend's entry table: probe, instance, repack.
 *
 * scalar is the oracle every other backend is tested against: plain C,
 * obviously correct, runnable everywhere. Its ops live in ops_*.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scalar.h"

static void scalar_probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    out->runnable = 1;
    out->score = 1;
    snprintf(out->desc, sizeof out->desc, "portable C reference, runs everywhere");
}

static tern_status scalar_init(const tern_host_api *host, const tern_backend_options *opt,
                               void **ctx, char *err, size_t errlen)
{
    scalar_ctx *c = host->alloc(sizeof *c, 64);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return TERN_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->host = host;
    /* an older runtime's options may end before a member: read what is there */
    c->n_threads = opt && TERN_STRUCT_HAS(opt, tern_backend_options, n_threads) && opt->n_threads > 0
                       ? opt->n_threads : 1;
    tern_status st = tern_head_option("scalar", opt, &c->head_q8, err, errlen);
    if (st) {
        host->free(c);
        return st;
    }
    *ctx = c;
    return TERN_OK;
}

static void scalar_free(void *ctx)
{
    if (!ctx) return;
    scalar_ctx *c = ctx;
    c->host->free(c);
}

static void scalar_describe(void *ctx, char *buf, size_t n)
{
    scalar_ctx *c = ctx;
    snprintf(buf, n, "scalar reference kernels, head %s",
             c->n_head_q8 ? "q8 (quantized to q8_0)" : c->head_q8 ? "q8 requested" : "as stored");
}

const tern_backend_api scalar_api = {
    .abi_version = TERN_BACKEND_ABI_VERSION,
    .struct_size = sizeof(tern_backend_api),
    .op_semantics = TERN_OP_SEMANTICS_VERSION,
    .name = "scalar",
    .caps = TERN_BACKEND_CAP_HOST_MEMORY | TERN_BACKEND_CAP_THREADED,
    .probe = scalar_probe,
    .init = scalar_init,
    .free = scalar_free,
    .repack = scalar_repack,
    .release = scalar_release,
    .supports_op = scalar_supports_op,
    .scratch_size = scalar_scratch_size,
    .ops = scalar_ops,
    .n_ops = TERN_OP_COUNT,
    .describe = scalar_describe,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &scalar_api; }
