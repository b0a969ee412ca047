/* cannotrun.c - a valid plugin whose probe says this machine cannot run
 * it, with a reason; its high score must not win "auto". */
#include "mini.h"

static void probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    out->runnable = 0;
    out->score = 1000;
    snprintf(out->desc, sizeof out->desc, "needs a FROB-9000 accelerator, none found");
}

static const tern_backend_api api = {MINI_API("cannotrun", TERN_BACKEND_ABI_VERSION, sizeof(tern_backend_api), probe,
                                              TERN_BACKEND_CAP_HOST_MEMORY)};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &api; }
