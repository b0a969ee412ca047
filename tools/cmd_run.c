/* cmd_run.c - `tern run` and `tern chat`: parse the options, then hand
 * them to a Lua pipeline (graphs/generate.lua, graphs/chat.lua). */
#include <signal.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "tern/lua.h"

static const char *const run_keys[] = {
    "model", "prompt", "file", "n_predict", "threads", "ctx_size", "batch_size", "temp", "top_k",
    "top_p", "min_p", "seed", "repeat_penalty", "repeat_last_n", "frequency_penalty",
    "presence_penalty", "stop", "backend", "kernel", "head", "device", "cache_type_k", "cache_type_v",
    "verbose", "special", "no_bos", "system", "model_draft", "backend_draft", "threads_draft",
    "draft_max", "draft_min", "draft_p_min", NULL,
};

static void on_sigint(int sig)
{
    (void)sig;
    tern_lua_set_interrupted(1);
}

/* Runs pipeline `script` over the options; shared by run and chat. */
static int run_pipeline(const char *cmd, const char *script, const char *usage, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            options_help(cmd, usage, run_keys);
            return 0;
        }
    lua_State *L = tern_lua_pipeline_state(0);
    if (!L) return cli_fail(cmd, "out of memory");
    if (options_parse(L, cmd, argc, argv, run_keys)) {
        tern_lua_pipeline_close(L);
        return 1;
    }
    const char *model = opt_model_path(L, -1);
    if (!model) {
        tern_lua_pipeline_close(L);
        return cli_fail(cmd, "no model given (-m FILE) and the default model is not installed");
    }
    lua_pushstring(L, model);
    lua_setfield(L, -2, "model");
    /* a draft model turns generation into speculative decoding */
    if (strcmp(script, "generate.lua") == 0 && opt_str(L, -1, "model_draft", NULL)) script = "speculative.lua";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a blocked read returns */
    sigaction(SIGINT, &sa, NULL);
    tern_error err;
    tern_status st = tern_lua_run_pipeline(L, script, -1, &err);
    tern_lua_pipeline_close(L);
    if (st) return cli_fail(cmd, "%s", err.msg);
    return 0;
}

int cmd_run(int argc, char **argv)
{
    return run_pipeline("run", "generate.lua", "[-m MODEL.gguf] -p TEXT [-n N] [options]", argc, argv);
}

int cmd_chat(int argc, char **argv)
{
    return run_pipeline("chat", "chat.lua", "[-m MODEL.gguf] [--system TEXT] [options]", argc, argv);
}
