/* badabi.c - a plugin built for ABI version 999: the loader must refuse it
 * before calling anything else, naming the file and both versions. */
#include "mini.h"

static const tern_backend_api api = {MINI_API("badabi", 999, sizeof(tern_backend_api), mini_probe,
                                              TERN_BACKEND_CAP_HOST_MEMORY)};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
