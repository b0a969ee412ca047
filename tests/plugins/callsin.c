/* callsin.c - a plugin that calls into libtern. Plugins are linked with
 * -Wl,-z,defs and without libtern, so this must fail to link; the build
 * records the linker's answer for the loader test (never loaded). */
#include "mini.h"
#include "tern/model.h"

static void probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    tern_model_free(NULL); /* a libtern symbol */
    mini_probe(host, out);
}

static const tern_backend_api api = {MINI_API("callsin", TERN_BACKEND_ABI_VERSION,
                                              sizeof(tern_backend_api), probe,
                                              TERN_BACKEND_CAP_HOST_MEMORY)};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
