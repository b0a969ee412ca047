/* info_placement.c - `tern info -m FILE --backend LIST`: where the model's
 * decode and prefill graphs run on that list of backends: nodes per
 * backend, nodes past the first one, the copy nodes between memories and
 * the bytes they move per evaluation, and where the KV cache lives. It
 * loads the model (repacks included), so it costs what a load costs. */
#include <string.h>

#include "cli.h"

static int show(tern_model *m, tern_session *s, int n_tok)
{
    int32_t ids[8] = {0};
    tern_error err;
    tern_session_reset(s);
    if (tern_session_eval(s, ids, (size_t)n_tok, 0, &err)) return cli_fail("info", "%s", err.msg);
    const tern_graph_placement *pl = tern_session_placement(s);
    printf("  %s graph (%d token%s): %d nodes:", n_tok == 1 ? "decode " : "prefill", n_tok,
           n_tok == 1 ? "" : "s", pl->n_nodes);
    for (int b = 0; b < tern_model_n_backends(m); b++)
        printf("%s %s %d", b ? "," : "", tern_model_backend_at(m, b)->plugin->name, pl->nodes_on[b]);
    printf("; past the first backend %d; copy nodes %d (%zu bytes per evaluation); %d start without a wait\n",
           pl->n_fallback, pl->n_copies, pl->copy_bytes, pl->n_no_wait);
    return 0;
}

int info_placement(const char *path, const char *backend)
{
    tern_model_options mo = tern_model_default_options();
    mo.backend = backend;
    tern_model *m;
    tern_session *s;
    tern_error err;
    if (tern_model_load(path, &mo, &m, &err)) return cli_fail("info", "%s", err.msg);
    tern_session_options so = tern_session_default_options();
    so.n_ctx = 64;
    if (tern_session_create(m, &so, &s, &err)) {
        tern_model_free(m);
        return cli_fail("info", "%s", err.msg);
    }
    char desc[2048];
    tern_model_describe(m, desc, sizeof desc);
    printf("placement on %s\n  %s\n  KV cache on %s\n", backend, desc,
           tern_model_backend_at(m, tern_session_kv_backend(s))->plugin->name);
    int rc = show(m, s, 1) || show(m, s, 8);
    tern_session_free(s);
    tern_model_free(m);
    return rc;
}
