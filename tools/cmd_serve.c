/* cmd_serve.c - `tern serve`: the options (llama-server's flag names), then
 * the server (tools/serve/serve.h). */
#include <string.h>

#include "cli.h"
#include "options.h"
#include "serve/serve.h"

static const char *const serve_keys[] = {
    "model", "host", "port", "parallel", "ctx_size", "threads", "batch_size", "api_key", "backend",
    "max_queue", "alias", "kernel", "head", NULL,
};

int cmd_serve(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            options_help("serve", "[-m MODEL.gguf] [--host 127.0.0.1] [--port 8080] [-np N] [-c CTX] "
                         "[--api-key KEY]", serve_keys);
            return 0;
        }
    tern_opts *o;
    if (options_parse("serve", argc, argv, serve_keys, &o)) return 1;
    const char *model = opt_model_path(o);
    if (!model) {
        options_free(o);
        return cli_fail("serve", "no model given (-m FILE) and the default model is not installed");
    }
    serve_options so = {
        .model = model,
        .backend = opt_backends(o, "backend"),
        .host = opt_str(o, "host", "127.0.0.1"),
        .port = (int)opt_int(o, "port", 8080),
        .n_slots = (int)opt_int(o, "parallel", 1),
        .n_ctx = (int)opt_int(o, "ctx_size", 0),
        .n_threads = (int)opt_int(o, "threads", 0),
        .n_batch = (int)opt_int(o, "batch_size", 512),
        .max_queue = (int)opt_int(o, "max_queue", 0),
        .api_key = opt_str(o, "api_key", NULL),
        .model_name = opt_str(o, "alias", NULL),
        .kernel = opt_str(o, "kernel", NULL),
        .head = opt_str(o, "head", NULL),
    };
    if (so.api_key && !*so.api_key) {
        options_free(o);
        return cli_fail("serve", "--api-key: give a non-empty key");
    }
    int rc = serve_run(&so);
    options_free(o);
    return rc;
}
