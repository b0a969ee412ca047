/* v1abi.c - a plugin as ABI version 1 laid it out (no op_semantics, no
 * appended members): refused with a message naming versions 1 and 2. */
#include <stddef.h>

#include "mini.h"

static const tern_backend_api api = {MINI_API("v1abi", 1, offsetof(tern_backend_api, describe) - 8,
                                              mini_probe, TERN_BACKEND_CAP_HOST_MEMORY)};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
