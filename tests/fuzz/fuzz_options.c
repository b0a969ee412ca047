/* fuzz_options.c - libFuzzer target for the option layer (tools/options.c):
 * any bytes as a command line and as a config.lua text. Checks that a
 * parse either succeeds with every value inside its key's type and range
 * (options_check) or fails with exactly one one-line message; that the
 * options then make a plain Lua table; and that nothing crashes, leaks or
 * reads out of bounds, whatever the config's Lua does (errors, error({}),
 * metatables, endless loops, huge strings: its state has 16 MiB and, here,
 * a million instructions).
 *
 * Input: byte 0 picks the command (low 2 bits) and whether there is a
 * config (bit 2); with a config, its text runs to the first NUL; the rest
 * is NUL-separated arguments. */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"

/* options.c asks libtern for the default model; the fuzz target links only
 * the option layer, the input reader and the error helpers. */
const char *tern_install_default_model(void) { return NULL; }

static const char *const run_keys[] = {
    "model", "prompt", "file", "n_predict", "threads", "ctx_size", "batch_size", "temp", "top_k",
    "top_p", "min_p", "seed", "repeat_penalty", "repeat_last_n", "frequency_penalty",
    "presence_penalty", "stop", "backend", "kernel", "head", "cache_type_k", "cache_type_v",
    "verbose", "special", "no_bos", "system", "model_draft", "backend_draft", "threads_draft",
    "draft_max", "draft_min", "draft_p_min", NULL,
};
static const char *const eval_keys[] = {
    "model", "prompt", "file", "ids", "logits", "batch_size", "threads", "ctx_size", "backend",
    "kernel", "head", "cache_type_k", "cache_type_v", "special", "no_bos", NULL,
};
static const char *const bench_keys[] = {
    "model", "threads", "backend", "kernel", "head", "ctx_size", "batch_size", "cache_type_k",
    "cache_type_v", "n_prompt_bench", "n_gen_bench", "reps", "output", "roofline",
    "model_draft", "backend_draft", "threads_draft", "draft_max", "draft_p_min", "spec_accept_rate",
    "spec_prompts", NULL,
};
static const char *const *const allowed[4] = {run_keys, eval_keys, bench_keys, NULL};
static const char *const cmds[4] = {"run", "eval", "bench", "all"};

static int n_msgs;

static void on_error(const char *line)
{
    n_msgs++;
    if (!line[0] || strchr(line, '\n') || strncmp(line, "tern ", 5) != 0) abort();
    for (const char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20) abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    cli_error_hook = on_error;
    opt_config_steps = 1000000;
    return 0;
}

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int which = data[0] & 3, has_config = (data[0] >> 2) & 1;
    char *buf = malloc(size + 1);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    const char *text = NULL;
    size_t text_len = 0, pos = 0, end = size - 1;
    if (has_config) {
        text = buf;
        text_len = strnlen(buf, end);
        pos = text_len + 1;
    }
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = (char *)cmds[which];
    while (pos < end && argc < MAX_ARGS) {
        argv[argc++] = buf + pos;
        pos += strlen(buf + pos) + 1;
    }
    argv[argc] = NULL;
    n_msgs = 0;
    tern_opts *o = NULL;
    int rc = options_parse_text(cmds[which], argc, argv, allowed[which], "fuzz.lua", text, text_len, &o);
    if (rc != 0 && rc != 1) abort();
    if (rc == 1 && (n_msgs != 1 || o)) abort(); /* one message, nothing to free */
    if (rc == 0) {
        if (n_msgs || !o || options_check(o)) abort();
        lua_State *L = luaL_newstate();
        if (options_push_protected(L, o) == 0 && !lua_istable(L, -1)) abort();
        lua_close(L);
        (void)opt_backends(o, "backend");
        (void)opt_model_path(o);
    }
    options_free(o);
    free(buf);
    return 0;
}
