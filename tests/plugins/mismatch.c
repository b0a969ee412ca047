/* mismatch.c - built as tern-backend-mismatch.so but says it is
 * "othername": the loader refuses a file whose name lies. */
#include "mini.h"

static const tern_backend_api api = {MINI_API("othername", TERN_BACKEND_ABI_VERSION, sizeof(tern_backend_api), mini_probe,
                                              TERN_BACKEND_CAP_HOST_MEMORY)};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
