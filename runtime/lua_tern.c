/* lua_tern.c - the `tern` Lua module for pipelines: one userdata type per
 * runtime object, lauxlib style. Errors that come from user input (a
 * prompt too long for the context, a missing file) are raised as plain
 * messages without a script position, so the command prints them as is. */
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua_graph.h"
#include "model_impl.h"
#include "tern/chat.h"
#include "tern/io.h"
#include "tern/lua.h"
#include "tern/sampler.h"
#include "tern/tern.h"
#include "tern/session.h"

#define MODEL_MT "tern.Model"
#define SESSION_MT "tern.Session"
#define SAMPLER_MT "tern.Sampler"
#define DETOK_MT "tern.Detok"

static volatile sig_atomic_t interrupted;
/* The session inside tern_session_eval now (pipelines run on one thread):
 * an interrupt cancels it at its next node, a long prefill included. */
static tern_session *volatile evaluating;
/* The session s:wait() waits for (its evaluation runs on its worker). */
static tern_session *volatile waiting;

void tern_lua_set_interrupted(int on)
{
    interrupted = on;
    tern_session *s = evaluating, *w = waiting;
    if (on && s) tern_session_cancel(s);
    if (on && w) tern_session_cancel(w);
}

/* Raises msg as a Lua error without position information. */
static int raise_msg(lua_State *L, const char *msg)
{
    lua_pushstring(L, msg);
    return lua_error(L);
}

typedef struct lmodel { tern_model *m; } lmodel;
typedef struct lsession { tern_session *s; int pending; /* s:eval_async not yet waited for */ } lsession;
typedef struct lsampler { tern_sampler *smp; } lsampler;
typedef struct ldetok { const tern_tokenizer *tok; tern_detok_stream st; } ldetok;

static tern_model *check_model(lua_State *L, int i)
{
    lmodel *u = luaL_checkudata(L, i, MODEL_MT);
    if (!u->m) luaL_error(L, "model is closed");
    return u->m;
}

static tern_session *check_session(lua_State *L, int i)
{
    lsession *u = luaL_checkudata(L, i, SESSION_MT);
    if (!u->s) luaL_error(L, "session is closed");
    if (u->pending) luaL_error(L, "session has an evaluation pending (s:eval_async): call s:wait() first");
    return u->s;
}

static const char *opt_string(lua_State *L, int t, const char *k, const char *def)
{
    lua_getfield(L, t, k);
    const char *v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* strings from the opts table stay alive while it does */
    return v;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def)
{
    lua_getfield(L, t, k);
    lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

static lua_Number opt_num(lua_State *L, int t, const char *k, lua_Number def)
{
    lua_getfield(L, t, k);
    lua_Number v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Field k of the options table at t: a backend name, a comma-separated
 * list, or a Lua list of names (config.lua's backend = {"opencl", "x86"}),
 * as one comma-separated string in buf; "auto" when absent. Raises no Lua
 * error (the C commands call it unprotected): NULL with the message in buf. */
const char *tern_lua_backend_list(lua_State *L, int t, const char *k, char *buf, size_t n)
{
    t = lua_absindex(L, t);
    int type = lua_getfield(L, t, k);
    const char *bad = NULL;
    size_t used = 0;
    if (type == LUA_TNIL) {
        snprintf(buf, n, "auto");
    } else if (type == LUA_TSTRING) {
        used = (size_t)snprintf(buf, n, "%s", lua_tostring(L, -1));
    } else if (type == LUA_TTABLE) {
        buf[0] = 0;
        lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
        if (len < 1) bad = "an empty list of backends";
        for (lua_Integer i = 1; i <= len && !bad; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING) bad = "a list entry that is not a backend name";
            else used += (size_t)snprintf(buf + used, used < n ? n - used : 0, "%s%s", i > 1 ? "," : "",
                                          lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else {
        bad = "neither a backend name nor a list of names";
    }
    lua_pop(L, 1);
    if (!bad && used >= n) bad = "a list of backends too long";
    if (!bad) return buf;
    snprintf(buf, n, "option '%s': %s", k, bad);
    return NULL;
}

/* ---- tern.Model ---- */

/* tern.load_model(path, {backend=, threads=, kernel=, head=, device=, progress=}): a
 * progress line on stderr for loads over a second unless progress = false */
static int l_load_model(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (lua_isnoneornil(L, 2)) lua_newtable(L);
    else luaL_checktype(L, 2, LUA_TTABLE);
    tern_model_options o = tern_model_default_options();
    char backends[256];
    o.backend = tern_lua_backend_list(L, 2, "backend", backends, sizeof backends);
    if (!o.backend) return raise_msg(L, backends);
    o.n_threads = (int)opt_int(L, 2, "threads", 0);
    o.kernel = opt_string(L, 2, "kernel", "auto");
    o.head = opt_string(L, 2, "head", o.head);
    o.device = (int)opt_int(L, 2, "device", -1);
    tern_load_progress progress = {0};
    lua_getfield(L, 2, "progress");
    if (lua_isnil(L, -1) || lua_toboolean(L, -1)) { /* on unless progress = false */
        o.progress = tern_load_progress_stderr;
        o.progress_user = &progress;
    }
    lua_pop(L, 1);
    lmodel *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->m = NULL;
    luaL_setmetatable(L, MODEL_MT);
    tern_error err;
    if (tern_model_load(path, &o, &u->m, &err)) return raise_msg(L, err.msg);
    return 1;
}

static int model_close(lua_State *L)
{
    lmodel *u = luaL_checkudata(L, 1, MODEL_MT);
    tern_model_free(u->m);
    u->m = NULL;
    return 0;
}

/* m:tokenize(text, add_special=true, parse_special=false) -> {ids} */
static int model_tokenize(lua_State *L)
{
    tern_model *m = check_model(L, 1);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    int add = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
    int special = lua_toboolean(L, 4);
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    tern_error err;
    if (tern_tokenize(m->tok, text, len, add, special, &ids, &cap, &n, &err)) {
        free(ids);
        return raise_msg(L, err.msg);
    }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(ids);
    return 1;
}

/* m:piece(id, special=false) -> string */
static int model_piece(lua_State *L)
{
    tern_model *m = check_model(L, 1);
    int32_t id = (int32_t)luaL_checkinteger(L, 2);
    char buf[256];
    int n = tern_token_to_piece(m->tok, id, buf, sizeof buf, lua_toboolean(L, 3));
    if (n < 0) return luaL_error(L, "token id %d outside the vocabulary", id);
    if ((size_t)n > sizeof buf) {
        char *big = malloc((size_t)n);
        if (!big) return luaL_error(L, "out of memory");
        tern_token_to_piece(m->tok, id, big, (size_t)n, lua_toboolean(L, 3));
        lua_pushlstring(L, big, (size_t)n);
        free(big);
    } else {
        lua_pushlstring(L, buf, (size_t)n);
    }
    return 1;
}

static int model_info(lua_State *L)
{
    tern_model *m = check_model(L, 1);
    tern_lua_push_hparams(L, &m->hp); /* n_vocab, n_layer, arch, ... */
    lua_pushinteger(L, tern_tokenizer_bos(m->tok));
    lua_setfield(L, -2, "bos");
    lua_pushinteger(L, tern_tokenizer_eos(m->tok));
    lua_setfield(L, -2, "eos");
    lua_pushinteger(L, tern_tokenizer_eot(m->tok));
    lua_setfield(L, -2, "eot");
    lua_pushboolean(L, tern_tokenizer_add_bos(m->tok));
    lua_setfield(L, -2, "add_bos");
    lua_pushnumber(L, m->load_seconds);
    lua_setfield(L, -2, "load_seconds");
    if (m->pack_state) {
        lua_pushstring(L, m->pack_state);
        lua_setfield(L, -2, "pack_cache");
    }
    char desc[512];
    tern_model_describe(m, desc, sizeof desc);
    lua_pushstring(L, desc);
    lua_setfield(L, -2, "describe");
    lua_pushstring(L, m->path);
    lua_setfield(L, -2, "path");
    tern_gguf_str tmpl;
    if (tern_gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl, NULL) == TERN_OK)
        lua_pushlstring(L, tmpl.ptr, (size_t)tmpl.len);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, "chat_template");
    return 1;
}

static int model_is_eog(lua_State *L)
{
    tern_model *m = check_model(L, 1);
    lua_pushboolean(L, tern_tokenizer_is_eog(m->tok, (int32_t)luaL_checkinteger(L, 2)));
    return 1;
}

static const luaL_Reg model_methods[] = {
    {"tokenize", model_tokenize}, {"piece", model_piece}, {"info", model_info},
    {"is_eog", model_is_eog},     {"close", model_close}, {NULL, NULL},
};

/* ---- tern.Session ---- */

/* tern.session(model, {n_ctx=, n_batch=, kv_type="f16"|"f32"}) */
static int l_session(lua_State *L)
{
    tern_model *m = check_model(L, 1);
    if (lua_isnoneornil(L, 2)) lua_newtable(L);
    else luaL_checktype(L, 2, LUA_TTABLE);
    tern_session_options o = tern_session_default_options();
    o.n_ctx = (int)opt_int(L, 2, "n_ctx", 0);
    o.n_batch = (int)opt_int(L, 2, "n_batch", 512);
    const char *kv = opt_string(L, 2, "kv_type", "f16");
    o.kv_type = tern_type_from_name(kv);
    if (o.kv_type != TERN_TYPE_F16 && o.kv_type != TERN_TYPE_F32)
        return luaL_error(L, "KV cache type '%s': use f16 or f32", kv);
    lsession *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->s = NULL;
    u->pending = 0;
    luaL_setmetatable(L, SESSION_MT);
    lua_pushvalue(L, 1); /* the model outlives its sessions */
    lua_setiuservalue(L, -2, 1);
    tern_error err;
    if (tern_session_create(m, &o, &u->s, &err)) return raise_msg(L, err.msg);
    return 1;
}

static int session_close(lua_State *L)
{
    lsession *u = luaL_checkudata(L, 1, SESSION_MT);
    tern_session_free(u->s);
    u->s = NULL;
    return 0;
}

/* The ids of the table at idx in buf (cap entries) or, when longer, in a
 * malloc'ed array the caller frees; NULL when out of memory. */
static int32_t *table_ids(lua_State *L, int idx, int32_t *buf, lua_Integer cap, lua_Integer *n)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = luaL_len(L, idx);
    int32_t *ids = *n <= cap ? buf : malloc((size_t)*n * sizeof *ids);
    for (lua_Integer i = 0; ids && i < *n; i++) {
        lua_rawgeti(L, idx, i + 1);
        ids[i] = (int32_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    return ids;
}

/* s:eval({ids}, all_logits=false) */
static int session_eval(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    lua_Integer n;
    int32_t stackbuf[64], *ids = table_ids(L, 2, stackbuf, 64, &n);
    if (!ids) return luaL_error(L, "out of memory");
    tern_error err;
    evaluating = s;
    tern_status st = interrupted ? TERN_ECANCELED : tern_session_eval(s, ids, (size_t)n, lua_toboolean(L, 3), &err);
    evaluating = NULL;
    if (ids != stackbuf) free(ids);
    if (st == TERN_ECANCELED) return raise_msg(L, "interrupted");
    if (st) return raise_msg(L, err.msg);
    return 0;
}

static const float *row_of(lua_State *L, tern_session *s, int arg)
{
    int64_t rows;
    const float *lg = tern_session_logits(s, &rows);
    lua_Integer r = luaL_optinteger(L, arg, rows);
    if (rows < 1 || r < 1 || r > rows) luaL_error(L, "no logits row %I (have %I)", (lua_Integer)r, (lua_Integer)rows);
    return lg + (size_t)(r - 1) * (size_t)tern_session_n_vocab(s);
}

/* s:argmax(row=last) -> id (lowest id on ties) */
static int session_argmax(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    const float *lg = row_of(L, s, 2);
    int64_t best = 0, n = tern_session_n_vocab(s);
    for (int64_t i = 1; i < n; i++)
        if (lg[i] > lg[best]) best = i;
    lua_pushinteger(L, best);
    return 1;
}

static int session_n_past(lua_State *L)
{
    lua_pushinteger(L, tern_session_n_past(check_session(L, 1)));
    return 1;
}

static int session_n_ctx(lua_State *L)
{
    lua_pushinteger(L, tern_session_n_ctx(check_session(L, 1)));
    return 1;
}

static int session_rollback(lua_State *L)
{
    tern_error err;
    if (tern_session_rollback(check_session(L, 1), (int)luaL_checkinteger(L, 2), &err))
        return raise_msg(L, err.msg);
    return 0;
}

static int session_reset(lua_State *L)
{
    tern_session_reset(check_session(L, 1));
    return 0;
}

/* s:stats() -> {fallback_nodes=, copy_nodes=, copy_bytes=, copies=, copy_seconds=,
 *   placement = { {backend=, nodes=}, ... }, kv_backend=,
 *   ops = { {name=, seconds=, calls=, fallback=}, ... }} */
static int session_stats(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    const tern_graph_stats *st = tern_session_stats(s);
    const tern_graph_placement *pl = tern_session_placement(s);
    const tern_model *m = tern_session_model(s);
    lua_newtable(L);
    lua_pushinteger(L, tern_session_fallback_nodes(s));
    lua_setfield(L, -2, "fallback_nodes");
    lua_pushinteger(L, pl->n_copies);
    lua_setfield(L, -2, "copy_nodes");
    lua_pushinteger(L, (lua_Integer)pl->copy_bytes);
    lua_setfield(L, -2, "copy_bytes");
    lua_pushinteger(L, (lua_Integer)st->copy_calls);
    lua_setfield(L, -2, "copies");
    lua_pushnumber(L, st->copy_seconds);
    lua_setfield(L, -2, "copy_seconds");
    lua_pushstring(L, tern_model_backend_at(m, tern_session_kv_backend(s))->plugin->name);
    lua_setfield(L, -2, "kv_backend");
    lua_newtable(L);
    for (int b = 0; b < tern_model_n_backends(m); b++) {
        lua_newtable(L);
        lua_pushstring(L, tern_model_backend_at(m, b)->plugin->name);
        lua_setfield(L, -2, "backend");
        lua_pushinteger(L, pl->nodes_on[b]);
        lua_setfield(L, -2, "nodes");
        lua_rawseti(L, -2, b + 1);
    }
    lua_setfield(L, -2, "placement");
    lua_newtable(L);
    int k = 1;
    for (int op = 0; op < TERN_OP_COUNT; op++) {
        if (!st->op_calls[op]) continue;
        lua_newtable(L);
        lua_pushstring(L, tern_op_name(op));
        lua_setfield(L, -2, "name");
        lua_pushnumber(L, st->op_seconds[op]);
        lua_setfield(L, -2, "seconds");
        lua_pushinteger(L, (lua_Integer)st->op_calls[op]);
        lua_setfield(L, -2, "calls");
        lua_pushinteger(L, (lua_Integer)st->fallback_calls[op]);
        lua_setfield(L, -2, "fallback");
        lua_rawseti(L, -2, k++);
    }
    lua_setfield(L, -2, "ops");
    return 1;
}

static const luaL_Reg session_methods[] = {
    {"eval", session_eval},         {"argmax", session_argmax}, {"n_past", session_n_past},
    {"n_ctx", session_n_ctx},       {"rollback", session_rollback}, {"reset", session_reset},
    {"stats", session_stats},       {"close", session_close},   {NULL, NULL},
};

/* ---- tern.Sampler ---- */

/* tern.sampler({temp=, top_k=, top_p=, min_p=, seed=, repeat_penalty=, ...}, n_vocab) */
static int l_sampler(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n_vocab = luaL_checkinteger(L, 2);
    tern_sampler_params p = tern_sampler_default_params();
    p.temp = (float)opt_num(L, 1, "temp", p.temp);
    p.top_k = (int32_t)opt_int(L, 1, "top_k", p.top_k);
    p.top_p = (float)opt_num(L, 1, "top_p", p.top_p);
    p.min_p = (float)opt_num(L, 1, "min_p", p.min_p);
    p.repeat_penalty = (float)opt_num(L, 1, "repeat_penalty", p.repeat_penalty);
    p.repeat_last_n = (int32_t)opt_int(L, 1, "repeat_last_n", p.repeat_last_n);
    p.freq_penalty = (float)opt_num(L, 1, "frequency_penalty", p.freq_penalty);
    p.presence_penalty = (float)opt_num(L, 1, "presence_penalty", p.presence_penalty);
    p.seed = (uint64_t)opt_int(L, 1, "seed", (lua_Integer)p.seed);
    lsampler *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->smp = NULL;
    luaL_setmetatable(L, SAMPLER_MT);
    tern_error err;
    if (tern_sampler_create(&p, (int32_t)n_vocab, &u->smp, &err)) return raise_msg(L, err.msg);
    return 1;
}

static tern_sampler *check_sampler(lua_State *L, int i)
{
    lsampler *u = luaL_checkudata(L, i, SAMPLER_MT);
    if (!u->smp) luaL_error(L, "sampler is closed");
    return u->smp;
}

static int sampler_close(lua_State *L)
{
    lsampler *u = luaL_checkudata(L, 1, SAMPLER_MT);
    tern_sampler_free(u->smp);
    u->smp = NULL;
    return 0;
}

/* smp:sample(session, row=last) -> id; the token is also accepted */
static int sampler_sample(lua_State *L)
{
    tern_sampler *smp = check_sampler(L, 1);
    tern_session *s = check_session(L, 2);
    const float *lg = row_of(L, s, 3);
    int32_t id = tern_sampler_sample(smp, lg);
    tern_sampler_accept(smp, id);
    lua_pushinteger(L, id);
    return 1;
}

static int sampler_accept(lua_State *L)
{
    tern_sampler_accept(check_sampler(L, 1), (int32_t)luaL_checkinteger(L, 2));
    return 0;
}

static int sampler_reset(lua_State *L)
{
    tern_sampler_reset(check_sampler(L, 1));
    return 0;
}

static const luaL_Reg sampler_methods[] = {
    {"sample", sampler_sample}, {"accept", sampler_accept}, {"reset", sampler_reset},
    {"close", sampler_close},   {NULL, NULL},
};

/* ---- tern.Detok: streaming detokenizer ---- */

static int l_detok(lua_State *L)
{
    tern_model *m = check_model(L, 1);
    ldetok *u = lua_newuserdatauv(L, sizeof *u, 1);
    memset(u, 0, sizeof *u);
    u->tok = m->tok;
    luaL_setmetatable(L, DETOK_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int detok_push(lua_State *L)
{
    ldetok *u = luaL_checkudata(L, 1, DETOK_MT);
    char buf[1024];
    size_t n = tern_detok_stream_push(u->tok, &u->st, (int32_t)luaL_checkinteger(L, 2), buf, sizeof buf);
    lua_pushlstring(L, buf, n);
    return 1;
}

static int detok_flush(lua_State *L)
{
    ldetok *u = luaL_checkudata(L, 1, DETOK_MT);
    char buf[16];
    size_t n = tern_detok_stream_flush(&u->st, buf, sizeof buf);
    lua_pushlstring(L, buf, n);
    return 1;
}

static const luaL_Reg detok_methods[] = {{"push", detok_push}, {"flush", detok_flush}, {NULL, NULL}};

/* ---- chat templates ---- */

/* tern.chat_format(template_text|nil, {{role=, content=}, ...}, add_assistant) -> text, style */
static int l_chat_format(lua_State *L)
{
    const char *tmpl = luaL_optstring(L, 1, NULL);
    luaL_checktype(L, 2, LUA_TTABLE);
    int add = lua_toboolean(L, 3);
    lua_Integer n = luaL_len(L, 2);
    tern_chat_msg *msgs = calloc((size_t)(n ? n : 1), sizeof *msgs);
    if (!msgs) return luaL_error(L, "out of memory");
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 2, i + 1);
        lua_getfield(L, -1, "role");
        lua_getfield(L, -2, "content");
        msgs[i].role = lua_tostring(L, -2);
        msgs[i].content = lua_tostring(L, -1);
        lua_pop(L, 3); /* the strings stay referenced by the message tables */
        if (!msgs[i].role || !msgs[i].content) {
            free(msgs);
            return luaL_error(L, "chat message %I needs role and content", (lua_Integer)i + 1);
        }
    }
    tern_chat_style style = tern_chat_detect(tmpl);
    char *out = NULL;
    size_t out_len = 0;
    tern_error err;
    tern_status st = tern_chat_format(style, msgs, (size_t)n, add, &out, &out_len, &err);
    free(msgs);
    if (st) return raise_msg(L, err.msg);
    lua_pushlstring(L, out, out_len);
    free(out);
    lua_pushstring(L, tern_chat_style_name(style));
    return 2;
}

/* ---- misc ---- */

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}

static int l_write(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    errno = 0;
    if (fwrite(s, 1, n, stdout) != n || fflush(stdout) != 0) /* a full disk, a closed pipe: stop */
        return raise_msg(L, lua_pushfstring(L, "writing standard output failed: %s", strerror(errno ? errno : EIO)));
    return 0;
}

static int l_log(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    fwrite(s, 1, n, stderr);
    fflush(stderr);
    return 0;
}

static int l_interrupted(lua_State *L)
{
    lua_pushboolean(L, interrupted);
    return 1;
}

/* tern.script(name) -> what the script returns; loaded once per state
 * (graphs/<name>, or $TERN_GRAPH_PATH/<name>), like require. */
static int l_script(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "tern.scripts");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "tern.scripts");
    }
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    tern_error err;
    if (tern_lua_load_script(L, name, &err)) return raise_msg(L, err.msg);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

/* tern.default_model() -> path | nil: the model shipped with this tree
 * (tern/install.h), what `tern run` uses without -m. */
static int l_default_model(lua_State *L)
{
    const char *path = tern_install_default_model();
    if (path) lua_pushstring(L, path);
    else lua_pushnil(L);
    return 1;
}

static const luaL_Reg tern_funcs[] = {
    {"script", l_script},         {"default_model", l_default_model},
    {"load_model", l_load_model}, {"session", l_session}, {"sampler", l_sampler},
    {"detok", l_detok},           {"chat_format", l_chat_format}, {"now", l_now},
    {"write", l_write},           {"log", l_log},          {"interrupted", l_interrupted},
    {NULL, NULL},
};

static void new_type(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction close)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    if (close) {
        lua_pushcfunction(L, close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
}

/* ---- speculative decoding (graphs/speculative.lua) ----
 *
 * The per-token probability work of speculative decoding stays in C: a
 * tern.Probs buffer holds whole-vocabulary distributions (one row per
 * drafted token, reused every round), samplers fill it and draw from it,
 * and smp:speculate performs the accept / resample step of speculative
 * sampling (Leviathan et al. 2023, Chen et al. 2023): accept the draft
 * token x with probability min(1, p(x)/q(x)), else draw from
 * normalize(max(0, p - q)); what comes out is distributed exactly as p. */

#define PROBS_MT "tern.Probs"

typedef struct lprobs {
    int32_t n_vocab;
    int32_t rows;
    float p[]; /* (rows, n_vocab) */
} lprobs;

/* tern.probs(n_vocab, rows=1) -> a zeroed buffer of rows distributions */
static int l_probs(lua_State *L)
{
    lua_Integer nv = luaL_checkinteger(L, 1), rows = luaL_optinteger(L, 2, 1);
    luaL_argcheck(L, nv > 0 && nv <= (1 << 24), 1, "n_vocab out of range");
    luaL_argcheck(L, rows > 0 && rows <= 256, 2, "rows out of range (1..256)");
    size_t n = (size_t)nv * (size_t)rows;
    lprobs *u = lua_newuserdatauv(L, sizeof *u + n * sizeof(float), 0);
    u->n_vocab = (int32_t)nv;
    u->rows = (int32_t)rows;
    memset(u->p, 0, n * sizeof(float));
    luaL_setmetatable(L, PROBS_MT);
    return 1;
}

/* Row `arg+1` (1-based) of the buffer at arg; checks it fits n_vocab. */
static float *probs_row(lua_State *L, int arg, int64_t n_vocab, lprobs **out)
{
    lprobs *u = luaL_checkudata(L, arg, PROBS_MT);
    lua_Integer r = luaL_checkinteger(L, arg + 1);
    if (r < 1 || r > u->rows) luaL_error(L, "probs row %I outside 1..%d", (lua_Integer)r, u->rows);
    if (n_vocab >= 0 && n_vocab != u->n_vocab)
        luaL_error(L, "probs buffer holds %d entries, the vocabulary has %I", u->n_vocab, (lua_Integer)n_vocab);
    if (out) *out = u;
    return u->p + (size_t)(r - 1) * (size_t)u->n_vocab;
}

/* probs:get(row, id) -> probability (0-based id) */
static int probs_get(lua_State *L)
{
    lprobs *u;
    float *p = probs_row(L, 1, -1, &u);
    lua_Integer id = luaL_checkinteger(L, 3);
    luaL_argcheck(L, id >= 0 && id < u->n_vocab, 3, "id outside the buffer");
    lua_pushnumber(L, p[id]);
    return 1;
}

/* probs:set(row, {p0, p1, ...}): fills a row from a table (tests and
 * synthetic distributions); entries past the table are zeroed. */
static int probs_set(lua_State *L)
{
    lprobs *u;
    float *p = probs_row(L, 1, -1, &u);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 3);
    luaL_argcheck(L, n <= u->n_vocab, 3, "more entries than the buffer holds");
    memset(p, 0, (size_t)u->n_vocab * sizeof *p);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 3, i + 1);
        p[i] = (float)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    return 0;
}

static int probs_size(lua_State *L)
{
    lprobs *u = luaL_checkudata(L, 1, PROBS_MT);
    lua_pushinteger(L, u->n_vocab);
    lua_pushinteger(L, u->rows);
    return 2;
}

static const luaL_Reg probs_methods[] = {
    {"get", probs_get}, {"set", probs_set}, {"size", probs_size}, {NULL, NULL},
};

/* s:top(row=last) -> id, p: the argmax (lowest id on ties) and its
 * probability under softmax at temperature 1 (the draft's confidence that
 * --draft-p-min is compared with in greedy mode). */
static int session_top(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    const float *lg = row_of(L, s, 2);
    int64_t best = 0, n = tern_session_n_vocab(s);
    for (int64_t i = 1; i < n; i++)
        if (lg[i] > lg[best]) best = i;
    double sum = 0, mx = lg[best];
    for (int64_t i = 0; i < n; i++) sum += exp((double)lg[i] - mx); /* NaN logits make sum NaN: p = NaN < p_min is false */
    lua_pushinteger(L, best);
    lua_pushnumber(L, sum > 0 ? 1.0 / sum : 0.0);
    return 2;
}

/* smp:probs(session, row|nil, probs, slot) -> top id, top p: writes the
 * chain's distribution for that logits row into probs[slot]. */
static int sampler_probs(lua_State *L)
{
    tern_sampler *smp = check_sampler(L, 1);
    tern_session *s = check_session(L, 2);
    const float *lg = row_of(L, s, 3);
    float *p = probs_row(L, 4, tern_session_n_vocab(s), NULL);
    if (tern_sampler_probs(smp, lg, p)) return luaL_error(L, "sampler:probs failed");
    int32_t n = tern_sampler_n_vocab(smp), best = 0;
    for (int32_t i = 1; i < n; i++)
        if (p[i] > p[best]) best = i;
    lua_pushinteger(L, best);
    lua_pushnumber(L, p[best]);
    return 2;
}

/* smp:draw(probs, slot) -> id (not accepted into the penalty window) */
static int sampler_draw(lua_State *L)
{
    tern_sampler *smp = check_sampler(L, 1);
    float *p = probs_row(L, 2, tern_sampler_n_vocab(smp), NULL);
    lua_pushinteger(L, tern_sampler_draw(smp, p, tern_sampler_n_vocab(smp)));
    return 1;
}

/* The accept / resample step. p (the verifier's distribution) is scratch:
 * on rejection it is overwritten with the residual max(0, p - q). Consumes
 * one uniform to decide and, on rejection, one more to draw. Returns the
 * token to emit and sets *accepted. */
static int32_t speculate_step(tern_sampler *smp, float *p, const float *q, int32_t n, int32_t x,
                              int *accepted)
{
    double px = p[x], qx = q[x], u = tern_sampler_uniform(smp);
    /* u < p/q without dividing: also right for q(x) = 0 (accept iff p(x) > 0) */
    if (u * qx < px) {
        *accepted = 1;
        return x;
    }
    *accepted = 0;
    double resid = 0;
    for (int32_t i = 0; i < n; i++)
        if (p[i] > q[i]) resid += (double)p[i] - q[i];
    /* resid = 0 means p <= q everywhere, so p = q and a rejection had
     * probability 0: only rounding gets here; draw from p itself */
    if (resid > 0)
        for (int32_t i = 0; i < n; i++) p[i] = p[i] > q[i] ? p[i] - q[i] : 0.0f;
    int32_t tok = tern_sampler_draw(smp, p, n);
    return tok >= 0 ? tok : x;
}

/* smp:speculate(p, pslot, q, qslot, x) -> accepted, token. The emitted
 * token is accepted into the sampler's penalty window, as sample does. */
static int sampler_speculate(lua_State *L)
{
    tern_sampler *smp = check_sampler(L, 1);
    int32_t n = tern_sampler_n_vocab(smp);
    float *p = probs_row(L, 2, n, NULL);
    const float *q = probs_row(L, 4, n, NULL);
    lua_Integer x = luaL_checkinteger(L, 6);
    luaL_argcheck(L, x >= 0 && x < n, 6, "draft token outside the vocabulary");
    int accepted;
    int32_t tok = speculate_step(smp, p, q, n, (int32_t)x, &accepted);
    tern_sampler_accept(smp, tok);
    lua_pushboolean(L, accepted);
    lua_pushinteger(L, tok);
    return 2;
}

/* A token's stored text, "" for an id the tokenizer does not know. */
static const char *token_text_or_empty(const tern_tokenizer *tok, int32_t id, size_t *len)
{
    const char *t = tern_tokenizer_token_text(tok, id, len);
    if (!t) *len = 0;
    return t ? t : "";
}

/* tern.same_vocab(a, b) -> true | false, why: the two models tokenize
 * alike (same n_vocab, same token texts, same BOS/EOS), so ids pass
 * between a draft and its verifier unchanged. */
static int l_same_vocab(lua_State *L)
{
    tern_model *a = check_model(L, 1), *b = check_model(L, 2);
    int32_t na = tern_tokenizer_n_vocab(a->tok), nb = tern_tokenizer_n_vocab(b->tok);
    char why[512];
    why[0] = 0;
    if (a->hp.n_vocab != b->hp.n_vocab || na != nb) {
        snprintf(why, sizeof why, "%lld tokens (%d in the tokenizer) against %lld (%d)",
                 (long long)a->hp.n_vocab, na, (long long)b->hp.n_vocab, nb);
    } else if (tern_tokenizer_bos(a->tok) != tern_tokenizer_bos(b->tok) ||
               tern_tokenizer_eos(a->tok) != tern_tokenizer_eos(b->tok)) {
        snprintf(why, sizeof why, "BOS/EOS ids %d/%d against %d/%d", tern_tokenizer_bos(a->tok),
                 tern_tokenizer_eos(a->tok), tern_tokenizer_bos(b->tok), tern_tokenizer_eos(b->tok));
    } else {
        for (int32_t i = 0; i < na; i++) {
            size_t la = 0, lb = 0;
            const char *ta = token_text_or_empty(a->tok, i, &la), *tb = token_text_or_empty(b->tok, i, &lb);
            if (la != lb || memcmp(ta, tb, la) != 0) {
                snprintf(why, sizeof why, "token %d is '%.*s' against '%.*s'", i, (int)(la < 40 ? la : 40),
                         ta, (int)(lb < 40 ? lb : 40), tb);
                break;
            }
        }
    }
    lua_pushboolean(L, why[0] == 0);
    if (!why[0]) return 1;
    lua_pushstring(L, why);
    return 2;
}

/* ---- bounded input (tern/io.h) ---- */

#define LINE_MAX_BYTES ((size_t)1 << 20)

static int push_buffer(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* tern.read_file(path) -> text: a regular file, or "-" for standard input,
 * of at most 64 MiB (TERN_IO_INPUT_MAX). */
static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char *buf;
    size_t n;
    tern_error err;
    tern_status st = tern_io_read(path, TERN_IO_INPUT_MAX, &buf, &n, &err);
    if (st == TERN_ECANCELED) return raise_msg(L, "interrupted");
    if (st) return raise_msg(L, err.msg);
    lua_pushcfunction(L, push_buffer); /* protected, so buf is freed whatever happens */
    lua_pushlightuserdata(L, buf);
    lua_pushinteger(L, (lua_Integer)n);
    int rc = lua_pcall(L, 2, 1, 0);
    free(buf);
    return rc == LUA_OK ? 1 : lua_error(L);
}

/* tern.read_line() -> a line of standard input without its newline, or nil
 * at the end of input or when Ctrl-C interrupts the wait; at most 1 MiB. */
static int l_read_line(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t n = 0;
    int c;
    while ((c = getc(stdin)) != EOF && c != '\n') {
        if (++n > LINE_MAX_BYTES) return raise_msg(L, "an input line longer than 1 MiB, the line limit");
        luaL_addchar(&b, (char)c);
    }
    if (c == EOF && (n == 0 || ferror(stdin))) {
        clearerr(stdin);
        lua_pushnil(L);
        return 1;
    }
    luaL_pushresult(&b);
    return 1;
}

static void io_register(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"read_file", l_read_file}, {"read_line", l_read_line}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}

/* ---- marks and asynchronous evaluation (graphs/lib/spec.lua) ---- */

#define MARK_MT "tern.Mark"

/* s:mark() -> a tern.Mark: where to s:rewind() to (m.pos: its position) */
static int session_mark(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    tern_mark *m = lua_newuserdatauv(L, sizeof *m, 0);
    *m = tern_session_mark(s);
    luaL_setmetatable(L, MARK_MT);
    return 1;
}

static int mark_index(lua_State *L)
{
    tern_mark *m = luaL_checkudata(L, 1, MARK_MT);
    if (strcmp(luaL_checkstring(L, 2), "pos") != 0) return 0;
    lua_pushinteger(L, m->pos);
    return 1;
}

static int mark_tostring(lua_State *L)
{
    tern_mark *m = luaL_checkudata(L, 1, MARK_MT);
    lua_pushfstring(L, "tern.Mark(session %d, position %d)", (int)m->session, m->pos);
    return 1;
}

/* s:rewind(mark, keep=0): back to the mark plus `keep` tokens after it */
static int session_rewind(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    tern_mark *m = luaL_checkudata(L, 2, MARK_MT);
    lua_Integer keep = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, keep >= 0 && keep <= INT32_MAX, 3, "keep out of range");
    tern_error err;
    if (tern_session_rewind(s, *m, (int)keep, &err)) return luaL_error(L, "%s", err.msg);
    return 0;
}

/* s:eval_async({ids}, all_logits=false): starts the evaluation on the
 * session's worker and returns; until s:wait(), the session answers only
 * wait and ready (every other method raises). */
static int session_eval_async(lua_State *L)
{
    tern_session *s = check_session(L, 1);
    lsession *u = lua_touserdata(L, 1);
    lua_Integer n;
    int32_t stackbuf[64], *ids = table_ids(L, 2, stackbuf, 64, &n);
    if (!ids) return luaL_error(L, "out of memory");
    tern_error err;
    tern_status st = interrupted ? TERN_ECANCELED : tern_session_eval_async(s, ids, (size_t)n, lua_toboolean(L, 3), &err);
    if (ids != stackbuf) free(ids);
    if (st == TERN_ECANCELED) return raise_msg(L, "interrupted");
    if (st) return raise_msg(L, err.msg);
    u->pending = 1;
    return 0;
}

/* s:wait(): the pending evaluation's end; raises its error. A no-op when
 * nothing is pending. */
static int session_wait(lua_State *L)
{
    lsession *u = luaL_checkudata(L, 1, SESSION_MT);
    if (!u->s) return luaL_error(L, "session is closed");
    if (!u->pending) return 0;
    tern_error err;
    waiting = u->s;
    if (interrupted) tern_session_cancel(u->s);
    tern_status st = tern_session_wait(u->s, &err);
    waiting = NULL;
    u->pending = 0;
    if (st == TERN_ECANCELED) return raise_msg(L, "interrupted");
    if (st) return raise_msg(L, err.msg);
    return 0;
}

/* s:ready() -> true when s:wait() would not block */
static int session_ready(lua_State *L)
{
    lsession *u = luaL_checkudata(L, 1, SESSION_MT);
    if (!u->s) return luaL_error(L, "session is closed");
    lua_pushboolean(L, !u->pending || tern_session_ready(u->s));
    return 1;
}

/* probs:onehot(row, id): the distribution of a proposal that was not
 * sampled (an n-gram match, a greedy draft): all mass on id. Speculative
 * sampling against it accepts id with probability p(id) and otherwise
 * draws from p without id, which is exactly p whatever chose id. */
static int probs_onehot(lua_State *L)
{
    lprobs *u;
    float *p = probs_row(L, 1, -1, &u);
    lua_Integer id = luaL_checkinteger(L, 3);
    luaL_argcheck(L, id >= 0 && id < u->n_vocab, 3, "id outside the buffer");
    memset(p, 0, (size_t)u->n_vocab * sizeof *p);
    p[id] = 1.0f;
    return 0;
}

static void async_register(lua_State *L)
{
    luaL_newmetatable(L, MARK_MT);
    lua_pushcfunction(L, mark_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, mark_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    static const luaL_Reg ses[] = {
        {"mark", session_mark}, {"rewind", session_rewind}, {"eval_async", session_eval_async},
        {"wait", session_wait}, {"ready", session_ready},   {NULL, NULL},
    };
    static const luaL_Reg prb[] = {{"onehot", probs_onehot}, {NULL, NULL}};
    const struct { const char *mt; const luaL_Reg *fns; } add[] = {{SESSION_MT, ses}, {PROBS_MT, prb}};
    for (size_t i = 0; i < sizeof add / sizeof add[0]; i++) {
        luaL_getmetatable(L, add[i].mt);
        lua_getfield(L, -1, "__index");
        luaL_setfuncs(L, add[i].fns, 0);
        lua_pop(L, 2);
    }
}

/* Adds the speculative functions to the module table (on the stack top)
 * and the methods to the existing types. */
static void spec_register(lua_State *L)
{
    new_type(L, PROBS_MT, probs_methods, NULL);
    static const luaL_Reg funcs[] = {{"probs", l_probs}, {"same_vocab", l_same_vocab}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
    static const luaL_Reg smp[] = {
        {"probs", sampler_probs}, {"draw", sampler_draw}, {"speculate", sampler_speculate}, {NULL, NULL},
    };
    static const luaL_Reg ses[] = {{"top", session_top}, {NULL, NULL}};
    const struct { const char *mt; const luaL_Reg *fns; } add[] = {{SAMPLER_MT, smp}, {SESSION_MT, ses}};
    for (size_t i = 0; i < sizeof add / sizeof add[0]; i++) {
        luaL_getmetatable(L, add[i].mt);
        lua_getfield(L, -1, "__index");
        luaL_setfuncs(L, add[i].fns, 0);
        lua_pop(L, 2);
    }
}

int tern_lua_open(lua_State *L)
{
    new_type(L, MODEL_MT, model_methods, model_close);
    new_type(L, SESSION_MT, session_methods, session_close);
    new_type(L, SAMPLER_MT, sampler_methods, sampler_close);
    new_type(L, DETOK_MT, detok_methods, NULL);
    luaL_newlib(L, tern_funcs);
    spec_register(L);
    io_register(L);
    async_register(L);
    lua_pushstring(L, TERN_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushvalue(L, -1);
    lua_setglobal(L, "tern");
    return 1;
}

lua_State *tern_lua_pipeline_state(size_t cap)
{
    lua_State *L = tern_lua_newstate(cap);
    if (!L) return NULL;
    lua_pushcfunction(L, tern_lua_open);
    if (tern_lua_pcall(L, 0, 0, TERN_ENOMEM, NULL)) {
        tern_lua_close(L);
        return NULL;
    }
    return L;
}

void tern_lua_pipeline_close(lua_State *L) { tern_lua_close(L); }

/* Calls the loaded chunk on the stack top, which must return
 * function(opts), then that function with the options; `what` names the
 * script in messages. */
static tern_status call_pipeline(lua_State *L, const char *what, int opts_index, tern_error *err)
{
    tern_status st = TERN_OK;
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        st = tern_error_set(err, TERN_ESCRIPT, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    } else if (!lua_isfunction(L, -1)) {
        st = tern_error_set(err, TERN_ESCRIPT, "%s: a pipeline script must return a function(opts), not %s",
                            what, luaL_typename(L, -1));
    } else {
        lua_pushvalue(L, opts_index);
        if (lua_pcall(L, 1, 0, 0) == LUA_OK) return TERN_OK;
        st = tern_error_set(err, TERN_ESCRIPT, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
    }
    lua_pop(L, 1);
    return st;
}

tern_status tern_lua_run_pipeline(lua_State *L, const char *name, int opts_index, tern_error *err)
{
    opts_index = lua_absindex(L, opts_index);
    tern_status st = tern_lua_load_script(L, name, err);
    if (!st) st = tern_lua_pcall(L, 0, 1, TERN_ESCRIPT, err);
    if (st) return st;
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return tern_error_set(err, TERN_ESCRIPT, "pipeline script %s must return a function(opts)", name);
    }
    lua_pushvalue(L, opts_index);
    return tern_lua_pcall(L, 1, 0, TERN_ESCRIPT, err);
    return call_pipeline(L, name, opts_index, err);
}

tern_status tern_lua_run_pipeline_file(lua_State *L, const char *path, int opts_index, tern_error *err)
{
    opts_index = lua_absindex(L, opts_index);
    FILE *f = fopen(path, "rb");
    if (!f) { /* a name: "examples/lookup.lua" */
        tern_status st = tern_lua_load_script(L, path, err);
        if (st == TERN_ENOTFOUND)
            return tern_error_set(err, st, "pipeline %s: no such file, nor a script of that name (embedded "
                                  "or in $TERN_GRAPH_PATH)", path);
        return st ? st : call_pipeline(L, path, opts_index, err);
    }
    fclose(f);
    if (luaL_loadfile(L, path) != LUA_OK) {
        tern_status st = tern_error_set(err, TERN_ESCRIPT, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return st;
    }
    return call_pipeline(L, path, opts_index, err);
}
