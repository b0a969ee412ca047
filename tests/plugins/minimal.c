/* minimal.c - the shortest table ABI version 2 accepts: it ends before the
 * appended members, so the loader must treat describe as absent although
 * the bytes past struct_size happen to hold a pointer. */
#include "mini.h"

static void describe(void *ctx, char *buf, size_t n)
{
    (void)ctx;
    snprintf(buf, n, "must never be called");
}

static const tern_backend_api api = {
    .abi_version = TERN_BACKEND_ABI_VERSION, .struct_size = TERN_BACKEND_API_MIN_SIZE,
    .name = "minimal", .caps = TERN_BACKEND_CAP_HOST_MEMORY, .op_semantics = TERN_OP_SEMANTICS_VERSION,
    .probe = mini_probe, .init = mini_init, .free = mini_free,
    .describe = describe, /* past struct_size: not part of the table */
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
