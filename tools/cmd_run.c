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
    "draft_max", "draft_min", "draft_p_min", "pipeline", "lookup", "overlap", NULL,
};

static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig)
{
    (void)sig;
    got_sigint = 1;
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
    tern_opts *o;
    if (options_parse(cmd, argc, argv, run_keys, &o)) return 1;
    const char *model = opt_model_path(o);
    if (!model) {
        options_free(o);
        return cli_fail(cmd, "no model given (-m FILE) and the default model is not installed");
    }
    /* for run: --pipeline FILE, --lookup (n-gram drafts), or a draft model
     * (speculative decoding); the file name outlives the options */
    const char *file = NULL;
    char file_buf[4096];
    if (strcmp(script, "generate.lua") == 0) {
        const char *p = opt_str(o, "pipeline", NULL);
        if (p && (size_t)snprintf(file_buf, sizeof file_buf, "%s", p) >= sizeof file_buf) {
            options_free(o);
            return cli_fail(cmd, "--pipeline: a path longer than %zu bytes", sizeof file_buf - 1);
        }
        if (p) file = file_buf;
        if (opt_bool(o, "lookup")) script = "examples/lookup.lua";
        else if (opt_has(o, "model_draft")) script = "speculative.lua";
    }
    lua_State *L = opt_set_str(o, "model", model) ? NULL : tern_lua_pipeline_state(0);
    if (!L || options_push_protected(L, o)) {
        tern_lua_pipeline_close(L);
        options_free(o);
        return cli_fail(cmd, "out of memory");
    }
    options_free(o); /* the pipeline has its own copy */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a blocked read returns */
    sigaction(SIGINT, &sa, NULL);
    tern_error err;
    tern_status st = file ? tern_lua_run_pipeline_file(L, file, -1, &err)
                          : tern_lua_run_pipeline(L, script, -1, &err);
    tern_lua_pipeline_close(L);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGINT, &sa, NULL);
    if (st && got_sigint) {
        cli_fail(cmd, "interrupted");
        return 130;
    }
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
