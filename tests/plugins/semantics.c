/* semantics.c - a plugin written for op semantics version 1: refused,
 * naming both versions, since its kernels mean something else. */
#include "mini.h"

static const tern_backend_api api = {
    .abi_version = TERN_BACKEND_ABI_VERSION, .struct_size = sizeof(tern_backend_api),
    .name = "semantics", .caps = TERN_BACKEND_CAP_HOST_MEMORY, .op_semantics = 1,
    .probe = mini_probe, .init = mini_init, .free = mini_free,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
