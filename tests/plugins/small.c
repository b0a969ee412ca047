/* small.c - a plugin whose API struct claims to be shorter than the one
 * this tern needs (an older, smaller table). */
#include <stddef.h>

#include "mini.h"

static const tern_backend_api api = {MINI_API("small", TERN_BACKEND_ABI_VERSION,
                                              offsetof(tern_backend_api, ops), mini_probe,
                                              TERN_BACKEND_CAP_HOST_MEMORY)};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
