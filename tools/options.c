/* options.c - shared flags of the model commands (see options.h). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"

static const tern_flag flags[] = {
    {"-m", "--model", "model", OPT_STR, "model file (GGUF); default: the embedded tiny BitNet model"},
    {"-p", "--prompt", "prompt", OPT_STR, "prompt text"},
    {"-f", "--file", "file", OPT_STR, "read the prompt / text from a file"},
    {"-n", "--n-predict", "n_predict", OPT_INT, "tokens to generate (-1 = until end of text or context)"},
    {"-t", "--threads", "threads", OPT_INT, "threads (default 1)"},
    {"-c", "--ctx-size", "ctx_size", OPT_INT, "context size in tokens (default: the model's, at most 4096)"},
    {"-b", "--batch-size", "batch_size", OPT_INT, "most tokens per evaluation (default 512)"},
    {NULL, "--batch", "batch_size", OPT_INT, "same as --batch-size"},
    {NULL, "--temp", "temp", OPT_NUM, "temperature (default 0.8; 0 = greedy)"},
    {NULL, "--top-k", "top_k", OPT_INT, "top-k sampling (default 40, 0 = off)"},
    {NULL, "--top-p", "top_p", OPT_NUM, "top-p sampling (default 0.95, 1 = off)"},
    {NULL, "--min-p", "min_p", OPT_NUM, "min-p sampling (default 0.05, 0 = off)"},
    {"-s", "--seed", "seed", OPT_INT, "random seed"},
    {NULL, "--repeat-penalty", "repeat_penalty", OPT_NUM, "repetition penalty (default 1.0 = off)"},
    {NULL, "--repeat-last-n", "repeat_last_n", OPT_INT, "tokens the penalties look back on (default 64)"},
    {NULL, "--frequency-penalty", "frequency_penalty", OPT_NUM, "frequency penalty (default 0)"},
    {NULL, "--presence-penalty", "presence_penalty", OPT_NUM, "presence penalty (default 0)"},
    {"-r", "--reverse-prompt", "stop", OPT_LIST, "stop generating at this text (repeatable)"},
    {NULL, "--stop", "stop", OPT_LIST, "same as --reverse-prompt"},
    {NULL, "--backend", "backend", OPT_STR, "backend: auto (default), scalar, x86, ..."},
    {NULL, "--kernel", "kernel", OPT_STR, "kernel family of the backend (auto, mad, bitserial, lut)"},
    {NULL, "--head", "head", OPT_STR, "output head storage: f16 (as stored) or q8"},
    {NULL, "--device", "device", OPT_INT, "device backends (opencl): device index, as tern info lists them"},
    {"-ctk", "--cache-type-k", "cache_type_k", OPT_STR, "KV cache type for K: f16 (default) or f32"},
    {"-ctv", "--cache-type-v", "cache_type_v", OPT_STR, "KV cache type for V: f16 (default) or f32"},
    {NULL, "--config", "config", OPT_STR, "read options from a config.lua file"},
    {"-v", "--verbose", "verbose", OPT_BOOL, "print per-op timings and fallback counts"},
    {NULL, "--special", "special", OPT_BOOL, "parse special token texts in the prompt"},
    {NULL, "--no-bos", "no_bos", OPT_BOOL, "do not add BOS"},
    {NULL, "--ids", "ids", OPT_STR, "token ids file (int32 little-endian)"},
    {NULL, "--logits", "logits", OPT_STR, "write logits to this file (float32 [n_tokens][n_vocab])"},
    {NULL, "--all-logits", "all_logits", OPT_BOOL, "keep the logits of every position"},
    {NULL, "--system", "system", OPT_STR, "system prompt (chat)"},
    {"-md", "--model-draft", "model_draft", OPT_STR, "draft model for speculative decoding"},
    {NULL, "--backend-draft", "backend_draft", OPT_STR, "backend of the draft model"},
    {NULL, "--threads-draft", "threads_draft", OPT_INT, "threads of the draft model"},
    {NULL, "--draft-max", "draft_max", OPT_INT, "most tokens drafted per round (default 8)"},
    {NULL, "--draft-min", "draft_min", OPT_INT, "fewest tokens drafted per round (default 0)"},
    {NULL, "--draft-p-min", "draft_p_min", OPT_NUM, "stop drafting under this top probability (default 0.75)"},
    {NULL, "--ppl-chunk", "ppl_chunk", OPT_INT, "perplexity chunk size (default: the context size)"},
    {NULL, "--chunks", "chunks", OPT_INT, "perplexity: most chunks to score"},
    {NULL, "--n-prompt-bench", "n_prompt_bench", OPT_INT, "bench: prompt tokens (-p, default 128)"},
    {NULL, "--n-gen-bench", "n_gen_bench", OPT_INT, "bench: generated tokens (-n, default 64)"},
    {NULL, "--reps", "reps", OPT_INT, "bench: repetitions (-r, default 5)"},
    {NULL, "--output", "output", OPT_STR, "bench: md (default) or json (-o)"},
    {NULL, "--roofline", "roofline", OPT_BOOL, "bench: measure memory bandwidth, report the decode bound"},
    {NULL, "--spec-accept-rate", "spec_accept_rate", OPT_NUM,
     "bench --model-draft: replay rounds accepting each draft token with this probability (text meaningless)"},
    {NULL, "--spec-prompts", "spec_prompts", OPT_INT, "bench --model-draft: how many built-in prompts (1..5, default 5)"},
};

#define N_FLAGS (sizeof flags / sizeof flags[0])

static int allowed_key(const char *key, const char *const *allowed)
{
    if (!allowed) return 1;
    for (; *allowed; allowed++)
        if (strcmp(*allowed, key) == 0) return 1;
    return strcmp(key, "config") == 0;
}

static const tern_flag *find_flag(const char *arg)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if ((flags[i].short_name && strcmp(arg, flags[i].short_name) == 0) ||
            strcmp(arg, flags[i].long_name) == 0)
            return &flags[i];
    return NULL;
}

static int load_config(lua_State *L, const char *cmd, const char *path)
{
    /* config.lua is plain Lua returning a table of the same keys */
    if (luaL_loadfile(L, path) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        cli_fail(cmd, "config %s: %s", path, lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return cli_fail(cmd, "config %s must return a table", path);
    }
    return 0;
}

static int set_flag(lua_State *L, const char *cmd, int t, const tern_flag *f, const char *val)
{
    long long iv;
    double nv;
    switch (f->kind) {
    case OPT_STR:
        lua_pushstring(L, val);
        break;
    case OPT_INT:
        if (cli_int(cmd, f->long_name, val, -(1LL << 53), 1LL << 53, &iv)) return 1;
        lua_pushinteger(L, iv);
        break;
    case OPT_NUM:
        if (cli_float(cmd, f->long_name, val, &nv)) return 1;
        lua_pushnumber(L, nv);
        break;
    case OPT_BOOL:
        lua_pushboolean(L, 1);
        break;
    case OPT_LIST:
        if (lua_getfield(L, t, f->key) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        lua_pushstring(L, val);
        lua_rawseti(L, -2, luaL_len(L, -2) + 1);
        break;
    }
    lua_setfield(L, t, f->key);
    return 0;
}

int options_parse(lua_State *L, const char *cmd, int argc, char **argv, const char *const *allowed)
{
    const char *config = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) config = argv[i + 1];
    if (config) {
        if (load_config(L, cmd, config)) return 1;
    } else {
        lua_newtable(L);
    }
    int t = lua_gettop(L);
    lua_newtable(L);
    int n_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            lua_pushstring(L, a);
            lua_rawseti(L, -2, ++n_args);
            continue;
        }
        const tern_flag *f = find_flag(a);
        if (!f || !allowed_key(f->key, allowed)) {
            lua_pop(L, 2);
            return cli_fail(cmd, "unknown option '%s' (try 'tern %s --help')", a, cmd);
        }
        const char *val = NULL;
        if (f->kind != OPT_BOOL) {
            if (i + 1 >= argc) {
                lua_pop(L, 2);
                return cli_fail(cmd, "%s needs a value", a);
            }
            val = argv[++i];
        }
        if (set_flag(L, cmd, t, f, val)) {
            lua_pop(L, 2);
            return 1;
        }
    }
    lua_setfield(L, t, "args");
    return 0;
}

void options_help(const char *cmd, const char *usage, const char *const *allowed)
{
    printf("usage: tern %s %s\n\noptions:\n", cmd, usage);
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (!allowed_key(flags[i].key, allowed)) continue;
        char names[64];
        snprintf(names, sizeof names, "%s%s%s%s", flags[i].short_name ? flags[i].short_name : "",
                 flags[i].short_name ? ", " : "", flags[i].long_name,
                 flags[i].kind == OPT_BOOL ? "" : " X");
        printf("  %-28s %s\n", names, flags[i].help);
    }
}

const char *opt_str(lua_State *L, int t, const char *key, const char *def)
{
    lua_getfield(L, t, key);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

long long opt_int(lua_State *L, int t, const char *key, long long def)
{
    lua_getfield(L, t, key);
    long long v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : lua_isnumber(L, -1) ? (long long)lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

double opt_num(lua_State *L, int t, const char *key, double def)
{
    lua_getfield(L, t, key);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

int opt_bool(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

const char *opt_model_path(lua_State *L, int t)
{
    const char *m = opt_str(L, t, "model", NULL);
    return m ? m : tern_install_default_model();
}
