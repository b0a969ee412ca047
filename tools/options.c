/* options.c - the option layer of options.h: the key table (type, range),
 * the flag table (names, help), number parsing, config.lua in its sandbox,
 * and the getters. Also the one-line error printer every command uses. */
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "options.h"
#include "tern/install.h"
#include "tern/io.h"

/* ---- keys: every config.lua key, its type and what it accepts ---- */

enum { K_ANY = 0, K_FLAG_ONLY = 1, K_CONFIG_ONLY = 2, K_INTERNAL = 3 };

typedef struct opt_key {
    const char *key;
    int kind;              /* OPT_* */
    long long lo, hi;      /* OPT_INT */
    double flo, fhi;       /* OPT_NUM */
    const char *choices;   /* OPT_STR: space-separated accepted words; NULL = any text */
    int where;             /* K_*: who may set it */
} opt_key;

#define I32 2147483647LL
#define STR(k) {k, OPT_STR, 0, 0, 0, 0, NULL, K_ANY}
#define WORD(k, c) {k, OPT_STR, 0, 0, 0, 0, c, K_ANY}
#define INT(k, lo, hi) {k, OPT_INT, lo, hi, 0, 0, NULL, K_ANY}
#define NUM(k, lo, hi) {k, OPT_NUM, 0, 0, lo, hi, NULL, K_ANY}
#define BOOL(k) {k, OPT_BOOL, 0, 0, 0, 0, NULL, K_ANY}

static const opt_key keys[] = {
    STR("model"),
    STR("prompt"),
    STR("file"),
    INT("n_predict", -1, I32),
    INT("threads", 1, 512),
    INT("ctx_size", 0, 1 << 24),
    INT("batch_size", 1, 1 << 24),
    NUM("temp", 0, 1000),
    INT("top_k", 0, I32),
    NUM("top_p", 0, 1),
    NUM("min_p", 0, 1),
    INT("seed", -1, 4294967295LL),
    NUM("repeat_penalty", 0.001, 1000),
    INT("repeat_last_n", 0, 1 << 24),
    NUM("frequency_penalty", -1000, 1000),
    NUM("presence_penalty", -1000, 1000),
    {"stop", OPT_LIST, 0, 0, 0, 0, NULL, K_ANY},
    {"backend", OPT_BACKENDS, 0, 0, 0, 0, NULL, K_ANY},
    STR("kernel"),
    INT("device", -1, 1023),
    WORD("head", "f16 q8"),
    WORD("cache_type_k", "f16 f32"),
    WORD("cache_type_v", "f16 f32"),
    {"config", OPT_STR, 0, 0, 0, 0, NULL, K_FLAG_ONLY},
    BOOL("verbose"),
    BOOL("special"),
    BOOL("no_bos"),
    STR("ids"),
    STR("logits"),
    STR("system"),
    STR("model_draft"),
    {"backend_draft", OPT_BACKENDS, 0, 0, 0, 0, NULL, K_ANY},
    INT("threads_draft", 1, 512),
    INT("draft_max", 0, 64),
    INT("draft_min", 0, 64),
    NUM("draft_p_min", 0, 1),
    STR("pipeline"),
    BOOL("lookup"),
    BOOL("overlap"),
    INT("chunks", 1, I32),
    INT("n_prompt_bench", 0, 1 << 20),
    INT("n_gen_bench", 0, 1 << 20),
    INT("reps", 1, 64),
    WORD("output", "md json"),
    BOOL("roofline"),
    NUM("spec_accept_rate", 0, 1),
    INT("spec_prompts", 1, 5),
    {"spec_compare", OPT_BOOL, 0, 0, 0, 0, NULL, K_CONFIG_ONLY},
    {"spec_bench", OPT_BOOL, 0, 0, 0, 0, NULL, K_INTERNAL},
    STR("host"),
    INT("port", 0, 65535),
    INT("parallel", 1, 256),
    STR("api_key"),
    INT("max_queue", 1, 65536),
    STR("alias"),
};

#define N_KEYS (sizeof keys / sizeof keys[0])

/* ---- flags: how each key is spelled on the command line ---- */

typedef struct tern_flag {
    const char *short_name; /* may be NULL */
    const char *long_name;
    const char *key;
    const char *help;
} tern_flag;

static const tern_flag flags[] = {
    {"-m", "--model", "model", "model file (GGUF); default: the embedded tiny BitNet model"},
    {"-p", "--prompt", "prompt", "prompt text"},
    {"-f", "--file", "file", "read the prompt / text from a file ('-': standard input; at most 64 MiB)"},
    {"-n", "--n-predict", "n_predict", "tokens to generate (-1 = until end of text or context)"},
    {"-t", "--threads", "threads", "threads (default: the physical cores)"},
    {"-c", "--ctx-size", "ctx_size", "context size in tokens (default: the model's, at most 4096)"},
    {"-b", "--batch-size", "batch_size", "most tokens per evaluation (default 512)"},
    {NULL, "--batch", "batch_size", "same as --batch-size"},
    {NULL, "--temp", "temp", "temperature (default 0.8; 0 = greedy)"},
    {NULL, "--top-k", "top_k", "top-k sampling (default 40, 0 = off)"},
    {NULL, "--top-p", "top_p", "top-p sampling (default 0.95, 1 = off)"},
    {NULL, "--min-p", "min_p", "min-p sampling (default 0.05, 0 = off)"},
    {"-s", "--seed", "seed", "random seed (-1 or 4294967295 = random)"},
    {NULL, "--repeat-penalty", "repeat_penalty", "repetition penalty (default 1.0 = off)"},
    {NULL, "--repeat-last-n", "repeat_last_n", "tokens the penalties look back on (default 64)"},
    {NULL, "--frequency-penalty", "frequency_penalty", "frequency penalty (default 0)"},
    {NULL, "--presence-penalty", "presence_penalty", "presence penalty (default 0)"},
    {"-r", "--reverse-prompt", "stop", "stop generating at this text (repeatable)"},
    {NULL, "--stop", "stop", "same as --reverse-prompt"},
    {NULL, "--backend", "backend", "backend: auto (default), scalar, x86, ... or a list 'x86,scalar'"},
    {NULL, "--kernel", "kernel", "kernel family of the backend (x86: auto, mad, bitserial, lut; arm: auto, mad, lut, or lut-neon and the like to cap the tier)"},
    {NULL, "--device", "device", "device backends (opencl): device index, as tern info lists them"},
    {NULL, "--head", "head", "output head storage: q8 (the default: quantized to Q8_0 at load) or f16 (as stored)"},
    {"-ctk", "--cache-type-k", "cache_type_k", "KV cache type for K: f16 (default) or f32"},
    {"-ctv", "--cache-type-v", "cache_type_v", "KV cache type for V: f16 (default) or f32"},
    {NULL, "--config", "config", "read options from a config.lua file"},
    {"-v", "--verbose", "verbose", "print per-op timings and fallback counts"},
    {NULL, "--special", "special", "parse special token texts in the prompt"},
    {NULL, "--no-bos", "no_bos", "do not add BOS"},
    {NULL, "--ids", "ids", "token ids file (int32 little-endian)"},
    {NULL, "--logits", "logits", "write logits to this file (float32 [n_tokens][n_vocab])"},
    {NULL, "--system", "system", "system prompt (chat)"},
    {"-md", "--model-draft", "model_draft", "draft model for speculative decoding"},
    {NULL, "--backend-draft", "backend_draft", "backend of the draft model"},
    {NULL, "--threads-draft", "threads_draft", "threads of the draft model"},
    {NULL, "--draft-max", "draft_max", "most tokens drafted per round (default 8)"},
    {NULL, "--draft-min", "draft_min", "fewest tokens drafted per round (default 0)"},
    {NULL, "--draft-p-min", "draft_p_min", "stop drafting under this top probability (default 0.1)"},
    {NULL, "--pipeline", "pipeline", "run: the pipeline script to run (a file, or a name such as examples/lookup.lua)"},
    {NULL, "--lookup", "lookup", "run: speculative decoding without a draft model: n-gram lookup in the text so far"},
    {NULL, "--overlap", "overlap",
     "speculative: verify on a worker thread while the draft drafts ahead (bench --model-draft: compare with sequential rounds)"},
    {NULL, "--chunks", "chunks", "perplexity: most chunks to score"},
    {NULL, "--n-prompt-bench", "n_prompt_bench", "bench: prompt tokens (-p, default 128)"},
    {NULL, "--n-gen-bench", "n_gen_bench", "bench: generated tokens (-n, default 64)"},
    {NULL, "--reps", "reps", "bench: repetitions (-r, default 5)"},
    {NULL, "--output", "output", "bench: md (default) or json (-o)"},
    {NULL, "--roofline", "roofline", "bench: measure memory bandwidth, report the decode bound"},
    {NULL, "--spec-accept-rate", "spec_accept_rate",
     "bench --model-draft: replay rounds accepting each draft token with this probability (text meaningless)"},
    {NULL, "--spec-prompts", "spec_prompts", "bench --model-draft: how many built-in prompts (1..5, default 5)"},
    {NULL, "--host", "host", "serve: address to listen on (default 127.0.0.1)"},
    {NULL, "--port", "port", "serve: TCP port (default 8080; 0 = any free one, printed)"},
    {"-np", "--parallel", "parallel", "serve: parallel slots, batched together (default 1)"},
    {NULL, "--api-key", "api_key", "serve: require 'Authorization: Bearer KEY'"},
    {NULL, "--max-queue", "max_queue", "serve: requests waiting for a slot before 503 (default 4 x slots)"},
    {"-a", "--alias", "alias", "serve: the model id /v1/models reports (default: the file name)"},
};

#define N_FLAGS (sizeof flags / sizeof flags[0])

/* ---- values ---- */

typedef struct opt_value {
    int set;
    long long i;   /* OPT_INT, OPT_BOOL */
    double d;      /* OPT_NUM */
    char *s;       /* OPT_STR, OPT_BACKENDS (joined) */
    char **list;   /* OPT_LIST */
    int n;
} opt_value;

struct tern_opts {
    opt_value v[N_KEYS];
};

static int key_index(const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, key) == 0) return (int)i;
    return -1;
}

static const opt_value *value_of(const tern_opts *o, const char *key)
{
    int k = key_index(key);
    return o && k >= 0 && o->v[k].set ? &o->v[k] : NULL;
}

static void clear_value(opt_value *v)
{
    free(v->s);
    for (int i = 0; i < v->n; i++) free(v->list[i]);
    free(v->list);
    memset(v, 0, sizeof *v);
}

void options_free(tern_opts *o)
{
    if (!o) return;
    for (size_t i = 0; i < N_KEYS; i++) clear_value(&o->v[i]);
    free(o);
}

static int set_text(opt_value *v, const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (!d) return 1;
    memcpy(d, s, len);
    d[len] = 0;
    clear_value(v);
    v->s = d;
    v->set = 1;
    return 0;
}

static int list_append(opt_value *v, const char *s, size_t len)
{
    char **l = realloc(v->list, (size_t)(v->n + 1) * sizeof *l);
    if (!l) return 1;
    v->list = l;
    if (!(l[v->n] = malloc(len + 1))) return 1;
    memcpy(l[v->n], s, len);
    l[v->n++][len] = 0;
    v->set = 1;
    return 0;
}

/* ---- errors and numbers ---- */

void (*cli_error_hook)(const char *line);

int cli_fail(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(msg, sizeof msg, "tern %s: ", cmd);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* one line, whatever the input held */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    if (cli_error_hook) cli_error_hook(msg);
    else fprintf(stderr, "%s\n", msg);
    return 1;
}

int cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi, long long *out)
{
    char *end;
    if (!val) return cli_fail(cmd, "%s needs a value", opt);
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi)
        return cli_fail(cmd, "%s: '%.64s' is not an integer in [%lld, %lld]", opt, val, lo, hi);
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out)
{
    char *end;
    if (!val) return cli_fail(cmd, "%s needs a value", opt);
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v) || v < lo || v > hi)
        return cli_fail(cmd, "%s: '%.64s' is not a number in [%g, %g]", opt, val, lo, hi);
    *out = v;
    return 0;
}

/* 1 when word is one of the space-separated choices. */
static int is_choice(const char *choices, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = choices; *p;) {
        size_t len = strcspn(p, " ");
        if (len == n && memcmp(p, word, n) == 0) return 1;
        p += len;
        while (*p == ' ') p++;
    }
    return 0;
}

/* Joins a backend name onto v->s ("x86" + "scalar" -> "x86,scalar"). */
static int backends_append(opt_value *v, const char *name, size_t len)
{
    size_t old = v->s ? strlen(v->s) : 0;
    char *s = realloc(v->s, old + len + 2);
    if (!s) return 1;
    if (old) s[old++] = ',';
    memcpy(s + old, name, len);
    s[old + len] = 0;
    v->s = s;
    v->set = 1;
    return 0;
}

/* ---- command-line values ---- */

/* Stores the text of flag `name` into key k. 0, or 1 after printing. */
static int set_from_flag(tern_opts *o, const char *cmd, int k, const char *name, const char *val, int list_ok)
{
    const opt_key *key = &keys[k];
    opt_value *v = &o->v[k];
    size_t len = val ? strlen(val) : 0;
    switch (key->kind) {
    case OPT_INT: {
        long long iv;
        if (list_ok && strchr(val, ',')) { /* each value range-checked; the first is the value */
            clear_value(v);
            for (const char *p = val; *p;) {
                char one[32];
                size_t n = strcspn(p, ",");
                if (!n || n >= sizeof one) return cli_fail(cmd, "%s: '%.64s' is not a list of integers 'a,b,c'", name, val);
                memcpy(one, p, n);
                one[n] = 0;
                if (cli_int(cmd, name, one, key->lo, key->hi, &iv)) return 1;
                if (v->n == 64) return cli_fail(cmd, "%s: more than 64 values", name);
                if (list_append(v, one, n)) return cli_fail(cmd, "out of memory");
                if (v->n == 1) v->i = iv;
                p += n + (p[n] == ',');
            }
            v->set = 1;
            return 0;
        }
        if (cli_int(cmd, name, val, key->lo, key->hi, &iv)) return 1;
        clear_value(v);
        v->i = iv;
        v->set = 1;
        return 0;
    }
    case OPT_NUM: {
        double dv;
        if (cli_float(cmd, name, val, key->flo, key->fhi, &dv)) return 1;
        clear_value(v);
        v->d = dv;
        v->set = 1;
        return 0;
    }
    case OPT_BOOL:
        clear_value(v);
        v->i = 1;
        v->set = 1;
        return 0;
    case OPT_LIST:
        if (list_append(v, val, len)) return cli_fail(cmd, "out of memory");
        return 0;
    case OPT_BACKENDS:
        if (!len || len > 255) return cli_fail(cmd, "%s: give a backend name or a list 'a,b' (1 to 255 characters)", name);
        if (set_text(v, val, len)) return cli_fail(cmd, "out of memory");
        return 0;
    default:
        if (key->choices && !is_choice(key->choices, val))
            return cli_fail(cmd, "%s: '%.64s' is not one of: %s", name, val, key->choices);
        if (set_text(v, val, len)) return cli_fail(cmd, "out of memory");
        return 0;
    }
}

static const tern_flag *find_flag(const char *arg)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if ((flags[i].short_name && strcmp(arg, flags[i].short_name) == 0) ||
            strcmp(arg, flags[i].long_name) == 0)
            return &flags[i];
    return NULL;
}

int options_takes_value(const char *arg)
{
    const tern_flag *f = find_flag(arg);
    return f && keys[key_index(f->key)].kind != OPT_BOOL;
}

/* 1 when `allowed` names key ("key", or "key[]": a list of integers on
 * the command line, as llama-bench takes -t 1,2,4); 2 for "key[]". */
static int allowed_key(const char *key, const char *const *allowed)
{
    if (strcmp(key, "config") == 0) return 1;
    if (!allowed) return 1;
    size_t n = strlen(key);
    for (; *allowed; allowed++)
        if (strncmp(*allowed, key, n) == 0 && (!(*allowed)[n] || strcmp(*allowed + n, "[]") == 0))
            return (*allowed)[n] ? 2 : 1;
    return 0;
}

/* ---- config.lua ---- */

typedef struct sandbox {
    size_t used, cap;
    long long steps;
} sandbox;

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        sb->used -= old;
        return NULL;
    }
    if (nsize > old && sb->used + (nsize - old) > sb->cap) return NULL;
    void *p = realloc(ptr, nsize);
    if (!p && ptr && nsize <= old) return ptr; /* shrinking never fails */
    if (p) sb->used = sb->used - old + nsize;
    return p;
}

static int sandbox_panic(lua_State *L)
{
    (void)L; /* config code runs only under lua_pcall: this is a bug */
    fprintf(stderr, "tern: Lua error outside a protected call while reading config.lua\n");
    return 0;
}

#define STEP_HOOK_EVERY 1000

long long opt_config_steps = OPT_CONFIG_STEPS;

static void step_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    void *ud;
    lua_getallocf(L, &ud);
    sandbox *sb = ud;
    sb->steps += STEP_HOOK_EVERY;
    if (sb->steps > opt_config_steps)
        luaL_error(L, "ran past %d million Lua instructions, the config limit (an endless loop?)",
                   (int)(opt_config_steps / 1000000));
}

typedef struct config_job {
    const char *cmd, *name, *text;
    size_t len;
    const char *const *allowed;
    tern_opts *o;
} config_job;

/* Raises a one-line error (the name of the file first). */
static int config_fail(lua_State *L, const config_job *j, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushfstring(L, "config %s: %s", j->name, msg);
    return lua_error(L);
}

static const char *type_words(const opt_key *k, char *buf, size_t n)
{
    switch (k->kind) {
    case OPT_INT: snprintf(buf, n, "an integer in [%lld, %lld]", k->lo, k->hi); break;
    case OPT_NUM: snprintf(buf, n, "a number in [%g, %g]", k->flo, k->fhi); break;
    case OPT_BOOL: snprintf(buf, n, "true or false"); break;
    case OPT_LIST: snprintf(buf, n, "a string or a list of strings"); break;
    case OPT_BACKENDS: snprintf(buf, n, "a backend name or a list of names"); break;
    default:
        if (k->choices) snprintf(buf, n, "one of: %s", k->choices);
        else snprintf(buf, n, "a string");
    }
    return buf;
}

/* The value at the stack top as a short text for messages. */
static const char *value_words(lua_State *L, char *buf, size_t n)
{
    int t = lua_type(L, -1);
    if (t == LUA_TNUMBER && lua_isinteger(L, -1)) snprintf(buf, n, "%lld", (long long)lua_tointeger(L, -1));
    else if (t == LUA_TNUMBER) snprintf(buf, n, "%g", (double)lua_tonumber(L, -1));
    else if (t == LUA_TSTRING) snprintf(buf, n, "the string '%.40s'", lua_tostring(L, -1));
    else if (t == LUA_TBOOLEAN) snprintf(buf, n, "%s", lua_toboolean(L, -1) ? "true" : "false");
    else snprintf(buf, n, "a %s", lua_typename(L, t));
    return buf;
}

/* A Lua string at idx without NUL bytes; NULL otherwise. */
static const char *plain_string(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING) return NULL;
    const char *s = lua_tolstring(L, idx, len);
    return memchr(s, 0, *len) ? NULL : s;
}

/* Stores the value at the stack top into key k (raw reads only). */
static void config_value(lua_State *L, const config_job *j, int k)
{
    const opt_key *key = &keys[k];
    opt_value *v = &j->o->v[k];
    char want[96], got[96];
    size_t len;
    const char *s;
    int t = lua_type(L, -1);
#define BAD() config_fail(L, j, "key '%s' must be %s, not %s", key->key, type_words(key, want, sizeof want), \
                          value_words(L, got, sizeof got))
    switch (key->kind) {
    case OPT_INT: {
        lua_Integer iv = 0;
        if (t != LUA_TNUMBER) BAD();
        if (!lua_isinteger(L, -1)) {
            lua_Number d = lua_tonumber(L, -1);
            if (!(d >= -9.2e18 && d <= 9.2e18) || d != floor(d)) BAD();
            iv = (lua_Integer)d;
        } else {
            iv = lua_tointeger(L, -1);
        }
        if (iv < key->lo || iv > key->hi) BAD();
        clear_value(v);
        v->i = iv;
        v->set = 1;
        break;
    }
    case OPT_NUM: {
        lua_Number d = t == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN;
        if (!isfinite(d) || d < key->flo || d > key->fhi) BAD();
        clear_value(v);
        v->d = d;
        v->set = 1;
        break;
    }
    case OPT_BOOL:
        if (t != LUA_TBOOLEAN) BAD();
        clear_value(v);
        v->i = lua_toboolean(L, -1);
        v->set = 1;
        break;
    case OPT_LIST:
    case OPT_BACKENDS: {
        clear_value(v);
        if ((s = plain_string(L, -1, &len))) {
            if (key->kind == OPT_LIST ? list_append(v, s, len) : set_text(v, s, len)) luaL_error(L, "out of memory");
            if (key->kind == OPT_BACKENDS && (len == 0 || len > 255)) BAD();
            break;
        }
        if (t != LUA_TTABLE) BAD();
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        lua_pushnil(L);
        int entries = 0;
        while (lua_next(L, -2)) { /* only 1..n, every one a string */
            entries++;
            lua_pop(L, 1);
        }
        if (entries != n || (key->kind == OPT_BACKENDS && n == 0)) BAD();
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            if (!(s = plain_string(L, -1, &len)) || (key->kind == OPT_BACKENDS && (len == 0 || memchr(s, ',', len)))) {
                lua_pop(L, 1);
                BAD();
            }
            int bad = key->kind == OPT_LIST ? list_append(v, s, len) : backends_append(v, s, len);
            if (bad) luaL_error(L, "out of memory");
            lua_pop(L, 1);
        }
        if (key->kind == OPT_BACKENDS && strlen(v->s) > 255) BAD();
        v->set = 1;
        break;
    }
    default:
        if (!(s = plain_string(L, -1, &len)) || (key->choices && !is_choice(key->choices, s))) BAD();
        if (set_text(v, s, len)) luaL_error(L, "out of memory");
        break;
    }
#undef BAD
}

/* setmetatable without finalizers: Lua runs __gc with hooks off, so the
 * instruction limit could not stop an endless one (at lua_close or in any
 * collection). A metatable is checked when it is set; a __gc added later
 * marks nothing for finalization (Lua 5.4 manual, 2.5.3). */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "config.lua may not set __gc finalizers");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void open_sandbox_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},        {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},  {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},  {NULL, NULL},
    };
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    /* nothing that reads files, loads bytecode or ends the process */
    static const char *const drop[] = {"dofile", "loadfile", "load", "require", NULL};
    for (int i = 0; drop[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, drop[i]);
    }
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    luaL_requiref(L, "os", luaopen_os, 0);
    lua_newtable(L);
    static const char *const keep[] = {"getenv", "time", "clock", "date", NULL};
    for (int i = 0; keep[i]; i++) {
        lua_getfield(L, -2, keep[i]);
        lua_setfield(L, -2, keep[i]);
    }
    lua_setglobal(L, "os");
    lua_pop(L, 1);
}

/* Runs config.lua and copies its table into j->o. Protected. */
static int run_config(lua_State *L)
{
    config_job *j = lua_touserdata(L, 1);
    open_sandbox_libs(L);
    char chunk[256];
    snprintf(chunk, sizeof chunk, "@%s", j->name);
    if (luaL_loadbufferx(L, j->text, j->len, chunk, "t") != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (strncmp(msg, j->name, strlen(j->name)) == 0) return lua_error(L); /* "FILE:3: ..." */
        return config_fail(L, j, "%s", msg);
    }
    /* the hook stays set: finalizers the config left run at lua_close */
    lua_sethook(L, step_hook, LUA_MASKCOUNT, STEP_HOOK_EVERY);
    lua_call(L, 0, 1);
    if (!lua_istable(L, -1)) {
        char got[96];
        return config_fail(L, j, "must return a table of options, not %s", value_words(L, got, sizeof got));
    }
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t klen;
        const char *key = plain_string(L, -2, &klen);
        if (!key) {
            char got[96];
            lua_pushvalue(L, -2);
            return config_fail(L, j, "a key that is not a name (%s)", value_words(L, got, sizeof got));
        }
        int k = key_index(key);
        if (k < 0 || keys[k].where == K_INTERNAL)
            return config_fail(L, j, "unknown key '%.64s' (keys are the long flags' names: ctx_size, temp, ...)", key);
        if (keys[k].where == K_FLAG_ONLY) return config_fail(L, j, "key '%s' works only as a flag", key);
        if (keys[k].where == K_CONFIG_ONLY || allowed_key(key, j->allowed)) config_value(L, j, k);
        lua_pop(L, 1);
    }
    return 0;
}

/* Message handler: error({}) and friends name the value and the line. */
static int config_message(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) return 1;
    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_tostring(L, 1);
        return 1;
    }
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    luaL_where(L, 2);
    lua_pushfstring(L, "%serror raised with a %s value instead of a message", lua_tostring(L, -1),
                    luaL_typename(L, 1));
    return 1;
}

/* Reads config text into o. 0, or 1 after printing. */
static int load_config(const config_job *j)
{
    sandbox sb = {0, OPT_CONFIG_MEM, 0};
    lua_State *L = lua_newstate(sandbox_alloc, &sb);
    if (!L) return cli_fail(j->cmd, "config %s: out of memory", j->name);
    lua_atpanic(L, sandbox_panic);
    lua_pushcfunction(L, config_message);
    lua_pushcfunction(L, run_config);
    lua_pushlightuserdata(L, (void *)j);
    int rc = lua_pcall(L, 1, 0, 1);
    if (rc == LUA_ERRMEM)
        cli_fail(j->cmd, "config %s: more than %zu MiB of memory, the config limit", j->name, OPT_CONFIG_MEM >> 20);
    else if (rc != LUA_OK)
        cli_fail(j->cmd, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "config error");
    lua_close(L);
    return rc != LUA_OK;
}

/* ---- parsing ---- */

typedef struct pending {
    const tern_flag *f;
    const char *name, *val;
} pending;

int options_parse_text(const char *cmd, int argc, char **argv, const char *const *allowed,
                       const char *config_name, const char *text, size_t len, tern_opts **out)
{
    *out = NULL;
    tern_opts *o = calloc(1, sizeof *o);
    pending *p = calloc((size_t)(argc > 0 ? argc : 1), sizeof *p);
    int n = 0, rc = 1;
    const char *config = NULL;
    if (!o || !p) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            cli_fail(cmd, "unexpected argument '%.64s' (options start with '-'; quote a prompt: -p 'TEXT')", a);
            goto done;
        }
        const tern_flag *f = find_flag(a);
        if (!f || !allowed_key(f->key, allowed)) {
            cli_fail(cmd, "unknown option '%.64s' (try 'tern %s --help')", a, cmd);
            goto done;
        }
        const char *val = NULL;
        if (keys[key_index(f->key)].kind != OPT_BOOL) {
            if (i + 1 >= argc) {
                cli_fail(cmd, "%s needs a value", a);
                goto done;
            }
            val = argv[++i];
        }
        if (strcmp(f->key, "config") == 0) config = val;
        else p[n++] = (pending){f, a, val};
    }
    if (config) {
        char *file = NULL;
        size_t flen = 0;
        if (!text) {
            tern_error err;
            if (tern_io_read(config, OPT_CONFIG_MAX, &file, &flen, &err)) {
                cli_fail(cmd, "config %s", err.msg);
                goto done;
            }
        }
        config_job j = {cmd, config_name ? config_name : config, text ? text : file, text ? len : flen, allowed, o};
        int bad = load_config(&j);
        free(file);
        if (bad) goto done;
    } else if (text) {
        config_job j = {cmd, config_name ? config_name : "config.lua", text, len, allowed, o};
        if (load_config(&j)) goto done;
    }
    for (int i = 0; i < n; i++) /* flags over the config */
        if (set_from_flag(o, cmd, key_index(p[i].f->key), p[i].name, p[i].val,
                          allowed_key(p[i].f->key, allowed) == 2))
            goto done;
    opt_value *seed = &o->v[key_index("seed")];
    if (seed->set && seed->i == -1) seed->i = 4294967295LL; /* llama.cpp's "random" spelled both ways */
    rc = 0;
done:
    free(p);
    if (rc) options_free(o);
    else *out = o;
    return rc;
}

int options_parse(const char *cmd, int argc, char **argv, const char *const *allowed, tern_opts **out)
{
    return options_parse_text(cmd, argc, argv, allowed, NULL, NULL, 0, out);
}

void options_help(const char *cmd, const char *usage, const char *const *allowed)
{
    printf("usage: tern %s %s\n\noptions:\n", cmd, usage);
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (!allowed_key(flags[i].key, allowed)) continue;
        const opt_key *k = &keys[key_index(flags[i].key)];
        char names[64], range[96] = "";
        snprintf(names, sizeof names, "%s%s%s%s", flags[i].short_name ? flags[i].short_name : "",
                 flags[i].short_name ? ", " : "", flags[i].long_name, k->kind == OPT_BOOL ? "" : " X");
        if (k->kind == OPT_INT) snprintf(range, sizeof range, " [%lld, %lld]", k->lo, k->hi);
        if (k->kind == OPT_NUM) snprintf(range, sizeof range, " [%g, %g]", k->flo, k->fhi);
        printf("  %-28s %s%s\n", names, flags[i].help, range);
    }
}

/* ---- getters and setters ---- */

int opt_has(const tern_opts *o, const char *key) { return value_of(o, key) != NULL; }

const char *opt_str(const tern_opts *o, const char *key, const char *def)
{
    const opt_value *v = value_of(o, key);
    return v && v->s ? v->s : def;
}

long long opt_int(const tern_opts *o, const char *key, long long def)
{
    const opt_value *v = value_of(o, key);
    return v ? v->i : def;
}

int opt_int_list(const tern_opts *o, const char *key, long long *out, int max)
{
    const opt_value *v = value_of(o, key);
    if (!v || max < 1) return 0;
    if (!v->n) {
        out[0] = v->i;
        return 1;
    }
    int n = v->n < max ? v->n : max;
    for (int i = 0; i < n; i++) out[i] = strtoll(v->list[i], NULL, 10); /* checked when set */
    return n;
}

double opt_num(const tern_opts *o, const char *key, double def)
{
    const opt_value *v = value_of(o, key);
    return v ? v->d : def;
}

int opt_bool(const tern_opts *o, const char *key)
{
    const opt_value *v = value_of(o, key);
    return v ? (int)v->i : 0;
}

const char *opt_backends(const tern_opts *o, const char *key) { return opt_str(o, key, "auto"); }

static opt_value *settable(tern_opts *o, const char *key, int kind)
{
    int k = key_index(key);
    return k >= 0 && keys[k].kind == kind ? &o->v[k] : NULL;
}

int opt_set_int(tern_opts *o, const char *key, long long val)
{
    opt_value *v = settable(o, key, OPT_INT);
    if (!v) return 1;
    clear_value(v);
    v->i = val;
    v->set = 1;
    return 0;
}

int opt_set_bool(tern_opts *o, const char *key, int val)
{
    opt_value *v = settable(o, key, OPT_BOOL);
    if (!v) return 1;
    clear_value(v);
    v->i = val != 0;
    v->set = 1;
    return 0;
}

int opt_set_str(tern_opts *o, const char *key, const char *val)
{
    opt_value *v = settable(o, key, OPT_STR);
    return !v || set_text(v, val, strlen(val));
}

const char *opt_model_path(const tern_opts *o)
{
    const char *m = opt_str(o, "model", NULL);
    return m ? m : tern_install_default_model();
}

const char *options_check(const tern_opts *o)
{
    for (size_t k = 0; k < N_KEYS; k++) {
        const opt_key *key = &keys[k];
        const opt_value *v = &o->v[k];
        if (!v->set) continue;
        int ok = 1;
        switch (key->kind) {
        case OPT_INT: ok = v->i >= key->lo && v->i <= key->hi; break;
        case OPT_NUM: ok = isfinite(v->d) && v->d >= key->flo && v->d <= key->fhi; break;
        case OPT_BOOL: ok = v->i == 0 || v->i == 1; break;
        case OPT_LIST: ok = v->n > 0 || !v->list; break;
        case OPT_BACKENDS: ok = v->s && *v->s && strlen(v->s) <= 255; break;
        default: ok = v->s && (!key->choices || is_choice(key->choices, v->s));
        }
        if (!ok) return key->key;
    }
    return NULL;
}

/* ---- the pipelines' opts table ---- */

void options_push(lua_State *L, const tern_opts *o)
{
    lua_createtable(L, 0, (int)N_KEYS);
    for (size_t k = 0; k < N_KEYS; k++) {
        const opt_value *v = &o->v[k];
        if (!v->set) continue;
        switch (keys[k].kind) {
        case OPT_INT: lua_pushinteger(L, (lua_Integer)v->i); break;
        case OPT_NUM: lua_pushnumber(L, v->d); break;
        case OPT_BOOL: lua_pushboolean(L, (int)v->i); break;
        case OPT_LIST:
            lua_createtable(L, v->n, 0);
            for (int i = 0; i < v->n; i++) {
                lua_pushstring(L, v->list[i]);
                lua_rawseti(L, -2, i + 1);
            }
            break;
        default: lua_pushstring(L, v->s); break;
        }
        lua_setfield(L, -2, keys[k].key);
    }
}

static int push_opts(lua_State *L)
{
    const tern_opts *o = lua_touserdata(L, 1);
    options_push(L, o);
    return 1;
}

int options_push_protected(lua_State *L, const tern_opts *o)
{
    lua_pushcfunction(L, push_opts);
    lua_pushlightuserdata(L, (void *)o);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) return 0;
    lua_pop(L, 1);
    return 1;
}
