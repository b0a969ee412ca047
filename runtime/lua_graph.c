/* lua_graph.c - the builder a graph script drives: `g` (ops over tensor
 * ids) and `m` (hyper-parameters, weights by name). It runs once per shape
 * class; each call appends nodes to a tern_graph, and shapes are checked
 * here so a script bug is a clear error, not a bad kernel call. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"
#include "lua_graph.h"
#include "model_impl.h"

#define GRAPH_LUA_CAP (64u << 20) /* graph scripts need little memory */
#define GRAPH_LUA_STEPS 100000000L /* nor much time: a build runs a few thousand instructions */
#define STEP_HOOK_EVERY 1000
#define MAX_QUANT_MEMO 64

struct tern_graph_builder {
    lua_State *L;                 /* stack: [1] the script's function(g, m), nothing else */
    tern_model *m;
};

/* What the methods of one build reach through the `g` table. */
typedef struct build_ctx {
    tern_graph *g;
    tern_model *m;
    tern_tensor *kc, *vc;
    int kv_space;                 /* memory space of the caches */
    int q_src[MAX_QUANT_MEMO], q_dst[MAX_QUANT_MEMO], n_q; /* quantize_act memo */
    tern_error err;
} build_ctx;

static build_ctx *ctx_of(lua_State *L)
{
    build_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    return c;
}

static int fail(lua_State *L, build_ctx *c)
{
    return luaL_error(L, "%s", c->err.msg);
}

static const tern_tensor *tensor_of(lua_State *L, build_ctx *c, int arg, int *id)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < 0 || v >= c->g->n_tensors) luaL_argerror(L, arg, "not a tensor of this graph");
    *id = (int)v;
    return &c->g->tensors[v].t;
}

static int push_id(lua_State *L, build_ctx *c, int id)
{
    if (id < 0) return fail(L, c);
    lua_pushinteger(L, id);
    return 1;
}

static void require_f32(lua_State *L, const tern_tensor *t, int arg)
{
    if (t->type != TERN_TYPE_F32) luaL_argerror(L, arg, "expected an f32 activation tensor");
}

/* ---- g methods (self is argument 1) ---- */

static int g_embed(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int w, ids;
    const tern_tensor *tw = tensor_of(L, c, 2, &w), *ti = tensor_of(L, c, 3, &ids);
    if (ti->type != TERN_TYPE_I32) luaL_argerror(L, 3, "expected token ids (i32)");
    int64_t ne[2] = {tw->ne[0], ti->ne[0]};
    int src[2] = {w, ids};
    return push_id(L, c, tern_graph_add_node(c->g, TERN_OP_GET_ROWS, TERN_TYPE_F32, 2, ne, src, 2,
                                             NULL, NULL, &c->err));
}

static int g_get_rows(lua_State *L) { return g_embed(L); }

static int g_rms_norm(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int x, w = -1;
    const tern_tensor *tx = tensor_of(L, c, 2, &x);
    require_f32(L, tx, 2);
    if (!lua_isnil(L, 3)) {
        const tern_tensor *tw = tensor_of(L, c, 3, &w);
        if (tw->type != TERN_TYPE_F32 || tw->ne[0] != tx->ne[0])
            luaL_argerror(L, 3, "norm weight must be f32 with the row length of x");
    }
    float fp[TERN_NODE_MAX_PARAMS] = {(float)luaL_checknumber(L, 4)};
    int src[2] = {x, w};
    return push_id(L, c, tern_graph_add_node(c->g, TERN_OP_RMS_NORM, TERN_TYPE_F32, 4, tx->ne, src,
                                             2, NULL, fp, &c->err));
}

static int binary(lua_State *L, int op)
{
    build_ctx *c = ctx_of(L);
    int a, b;
    const tern_tensor *ta = tensor_of(L, c, 2, &a), *tb = tensor_of(L, c, 3, &b);
    require_f32(L, ta, 2);
    require_f32(L, tb, 3);
    if (tern_tensor_nelements(ta) != tern_tensor_nelements(tb) || ta->ne[0] != tb->ne[0])
        return luaL_error(L, "%s: shapes differ (%I x %I vs %I x %I)", tern_op_name(op),
                          (lua_Integer)ta->ne[0], (lua_Integer)tern_tensor_nrows(ta),
                          (lua_Integer)tb->ne[0], (lua_Integer)tern_tensor_nrows(tb));
    int src[2] = {a, b};
    return push_id(L, c, tern_graph_add_node(c->g, op, TERN_TYPE_F32, 4, ta->ne, src, 2, NULL, NULL,
                                             &c->err));
}

static int g_add(lua_State *L) { return binary(L, TERN_OP_ADD); }
static int g_mul(lua_State *L) { return binary(L, TERN_OP_MUL); }

static int unary(lua_State *L, int op)
{
    build_ctx *c = ctx_of(L);
    int x;
    const tern_tensor *tx = tensor_of(L, c, 2, &x);
    require_f32(L, tx, 2);
    return push_id(L, c, tern_graph_add_node(c->g, op, TERN_TYPE_F32, 4, tx->ne, &x, 1, NULL, NULL,
                                             &c->err));
}

static int g_relu_sq(lua_State *L) { return unary(L, TERN_OP_RELU_SQ); }
static int g_silu(lua_State *L) { return unary(L, TERN_OP_SILU); }

static int g_view(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int x;
    tensor_of(L, c, 2, &x);
    int64_t ne[TERN_MAX_DIMS];
    int n = lua_gettop(L) - 2;
    if (n < 1 || n > TERN_MAX_DIMS) return luaL_error(L, "view: 1 to 4 dimensions");
    for (int i = 0; i < n; i++) ne[i] = luaL_checkinteger(L, 3 + i);
    return push_id(L, c, tern_graph_add_view(c->g, x, n, ne, &c->err));
}

/* rope(x, n_head, opts): x [n_head * head_dim, n] -> [head_dim, n_head, n] */
static int g_rope(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int x;
    const tern_tensor *tx = tensor_of(L, c, 2, &x);
    require_f32(L, tx, 2);
    lua_Integer n_head = luaL_checkinteger(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    if (n_head < 1 || tx->ne[0] % n_head) return luaL_error(L, "rope: %I heads do not divide %I",
                                                            (lua_Integer)n_head, (lua_Integer)tx->ne[0]);
    int64_t hd = tx->ne[0] / n_head;
    lua_getfield(L, 4, "n_rot");
    lua_getfield(L, 4, "base");
    lua_getfield(L, 4, "scale");
    lua_getfield(L, 4, "neox");
    int32_t ip[TERN_NODE_MAX_PARAMS] = {lua_toboolean(L, -1) ? TERN_ROPE_NEOX : TERN_ROPE_NORMAL,
                                        (int32_t)luaL_optinteger(L, -4, hd)};
    float fp[TERN_NODE_MAX_PARAMS] = {(float)luaL_optnumber(L, -3, 10000.0),
                                      (float)luaL_optnumber(L, -2, 1.0)};
    lua_pop(L, 4);
    if (ip[1] < 2 || ip[1] > hd || ip[1] % 2) return luaL_error(L, "rope: n_rot %d invalid for head size %I", ip[1], (lua_Integer)hd);
    int64_t ne[3] = {hd, n_head, tern_tensor_nrows(tx)};
    int v = tern_graph_add_view(c->g, x, 3, ne, &c->err);
    if (v < 0) return fail(L, c);
    int src[2] = {v, c->g->in_positions};
    return push_id(L, c, tern_graph_add_node(c->g, TERN_OP_ROPE, TERN_TYPE_F32, 3, ne, src, 2, ip,
                                             fp, &c->err));
}

/* attention(q, k, v, layer, scale): q [hd, n_head, n], k/v [hd, n_kv, n]
 * (v may be 2-D [hd * n_kv, n]); stores k and v in the layer's cache, then
 * attends. Returns [hd * n_head, n]. */
static int g_attention(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int q, k, v;
    const tern_tensor *tq = tensor_of(L, c, 2, &q), *tk = tensor_of(L, c, 3, &k);
    const tern_tensor *tv = tensor_of(L, c, 4, &v);
    lua_Integer layer = luaL_checkinteger(L, 5);
    float scale = (float)luaL_checknumber(L, 6);
    if (layer < 0 || layer >= c->m->hp.n_layer) return luaL_error(L, "attention: no layer %I", (lua_Integer)layer);
    const tern_tensor *kc = &c->kc[layer];
    int64_t hd = kc->ne[0], n_kv = kc->ne[1], n = tq->ne[2], n_head = tq->ne[1];
    if (tq->ne[0] != hd || tq->ne[1] % n_kv || tk->ne[0] != hd || tk->ne[1] != n_kv ||
        tern_tensor_nelements(tv) != hd * n_kv * n)
        return luaL_error(L, "attention: q/k/v shapes do not match the cache (head %I, kv heads %I)",
                          (lua_Integer)hd, (lua_Integer)n_kv);
    int64_t ne3[3] = {hd, n_kv, n};
    if (tv->ne[0] != hd || tv->ne[1] != n_kv) { /* a 2-D [hd * n_kv, n] projection */
        v = tern_graph_add_view(c->g, v, 3, ne3, &c->err);
        if (v < 0) return fail(L, c);
    }
    int kc_id = tern_graph_add_extern(c->g, &c->kc[layer], c->kv_space, &c->err);
    int vc_id = tern_graph_add_extern(c->g, &c->vc[layer], c->kv_space, &c->err);
    if (kc_id < 0 || vc_id < 0) return fail(L, c);
    int sk[2] = {k, c->g->in_positions}, sv[2] = {v, c->g->in_positions};
    if (tern_graph_add_node_into(c->g, TERN_OP_KV_STORE, kc_id, sk, 2, &c->err) ||
        tern_graph_add_node_into(c->g, TERN_OP_KV_STORE, vc_id, sv, 2, &c->err))
        return fail(L, c);
    int src[4] = {q, kc_id, vc_id, c->g->in_positions};
    float fp[TERN_NODE_MAX_PARAMS] = {scale};
    int64_t q_ne[3] = {hd, n_head, n}; /* tq may have moved: tensors were added since */
    int a = tern_graph_add_node(c->g, TERN_OP_ATTENTION, TERN_TYPE_F32, 3, q_ne, src, 4, NULL, fp,
                                &c->err);
    if (a < 0) return fail(L, c);
    int64_t ne2[2] = {hd * n_head, n};
    return push_id(L, c, tern_graph_add_view(c->g, a, 2, ne2, &c->err));
}

static int weight_check(lua_State *L, build_ctx *c, int arg, const tern_tensor *tx, int *w)
{
    const tern_tensor *tw = tensor_of(L, c, arg, w);
    if (c->g->tensors[*w].kind != GT_WEIGHT) luaL_argerror(L, arg, "expected a model weight");
    if (tw->ne[0] != tx->ne[0])
        return luaL_error(L, "%s: weight rows have %I values, input has %I",
                          c->g->tensors[*w].name, (lua_Integer)tw->ne[0], (lua_Integer)tx->ne[0]);
    return tern_type_get(tw->type)->is_ternary;
}

static int bitlinear_ids(lua_State *L, build_ctx *c, int x, int w)
{
    const tern_tensor *tx = &c->g->tensors[x].t, *tw = &c->g->tensors[w].t;
    int q = -1;
    for (int i = 0; i < c->n_q && i < MAX_QUANT_MEMO; i++)
        if (c->q_src[i] == x) q = c->q_dst[i];
    if (q < 0) { /* q, k, v (and gate, up) share one quantized input */
        q = tern_graph_add_node(c->g, TERN_OP_QUANTIZE_ACT, TERN_TYPE_Q8_TOK, 2,
                                (int64_t[]){tx->ne[0], tern_tensor_nrows(tx)}, &x, 1, NULL, NULL,
                                &c->err);
        if (q < 0) return fail(L, c);
        /* a ring of the most recent inputs: sharing is between neighbours,
         * and a memo that filled up (16 layers) quantized every later
         * layer's input once per matmul */
        c->q_src[c->n_q % MAX_QUANT_MEMO] = x;
        c->q_dst[c->n_q % MAX_QUANT_MEMO] = q;
        c->n_q++;
    }
    int64_t ne[2] = {tw->ne[1], tern_tensor_nrows(tx)};
    int src[2] = {q, w};
    return push_id(L, c, tern_graph_add_node(c->g, TERN_OP_MATMUL_TERNARY, TERN_TYPE_F32, 2, ne, src,
                                             2, NULL, NULL, &c->err));
}

static int matmul_ids(lua_State *L, build_ctx *c, int x, int w)
{
    const tern_tensor *tx = &c->g->tensors[x].t, *tw = &c->g->tensors[w].t;
    int64_t ne[2] = {tw->ne[1], tern_tensor_nrows(tx)};
    int src[2] = {x, w};
    return push_id(L, c, tern_graph_add_node(c->g, TERN_OP_MATMUL, TERN_TYPE_F32, 2, ne, src, 2,
                                             NULL, NULL, &c->err));
}

static int g_bitlinear(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int x, w;
    const tern_tensor *tx = tensor_of(L, c, 2, &x);
    require_f32(L, tx, 2);
    if (!weight_check(L, c, 3, tx, &w)) luaL_argerror(L, 3, "bitlinear needs a ternary weight");
    return bitlinear_ids(L, c, x, w);
}

static int g_matmul(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int x, w;
    const tern_tensor *tx = tensor_of(L, c, 2, &x);
    require_f32(L, tx, 2);
    if (weight_check(L, c, 3, tx, &w)) luaL_argerror(L, 3, "matmul needs a float weight (use bitlinear)");
    return matmul_ids(L, c, x, w);
}

/* linear: bitlinear for ternary weights, matmul for float ones. */
static int g_linear(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    int x, w;
    const tern_tensor *tx = tensor_of(L, c, 2, &x);
    require_f32(L, tx, 2);
    return weight_check(L, c, 3, tx, &w) ? bitlinear_ids(L, c, x, w) : matmul_ids(L, c, x, w);
}

static const luaL_Reg graph_methods[] = {
    {"embed", g_embed},         {"get_rows", g_get_rows}, {"rms_norm", g_rms_norm},
    {"add", g_add},             {"mul", g_mul},           {"relu_sq", g_relu_sq},
    {"silu", g_silu},           {"view", g_view},         {"rope", g_rope},
    {"attention", g_attention}, {"bitlinear", g_bitlinear}, {"matmul", g_matmul},
    {"linear", g_linear},       {NULL, NULL},
};

/* ---- m: model access ---- */

static int add_weight(lua_State *L, build_ctx *c, const char *name)
{
    tern_model_weight *w = tern_model_find_weight(c->m, name);
    if (!w) return -2;
    return tern_graph_add_weight(c->g, w, &c->err);
}

/* m:w(name) -> tensor id, or nil when the model has no such tensor. Each
 * weight enters a graph once (memo in m._w). */
static int m_w(lua_State *L)
{
    build_ctx *c = ctx_of(L);
    const char *name = luaL_checkstring(L, 2);
    lua_getfield(L, 1, "_w");
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    int id = add_weight(L, c, name);
    if (id == -2) {
        lua_pushnil(L);
        return 1;
    }
    if (id < 0) return fail(L, c);
    lua_pushinteger(L, id);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

static const char *const layer_tensors[] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_sub_norm",
    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "ffn_sub_norm", NULL,
};

/* m:layer(i) -> { attn_q = id, ... } (absent tensors are nil) */
static int m_layer(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 2);
    lua_newtable(L);
    for (int k = 0; layer_tensors[k]; k++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)i, layer_tensors[k]);
        lua_getfield(L, 1, "w");
        lua_pushvalue(L, 1);
        lua_pushstring(L, name);
        lua_call(L, 2, 1);
        lua_setfield(L, -2, layer_tensors[k]);
    }
    return 1;
}

void tern_lua_push_hparams(lua_State *L, const tern_hparams *hp)
{
    lua_newtable(L);
#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
#define SETN(k, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, k))
    SETI("n_vocab", hp->n_vocab);
    SETI("n_ctx_train", hp->n_ctx_train);
    SETI("n_embd", hp->n_embd);
    SETI("n_layer", hp->n_layer);
    SETI("n_ff", hp->n_ff);
    SETI("n_head", hp->n_head);
    SETI("n_head_kv", hp->n_head_kv);
    SETI("head_dim", hp->head_dim);
    SETI("n_rot", hp->n_rot);
    SETN("rope_freq_base", hp->rope_freq_base);
    SETN("rope_freq_scale", hp->rope_freq_scale);
    SETN("eps", hp->norm_eps);
#undef SETI
#undef SETN
    lua_pushboolean(L, hp->rope_mode == TERN_ROPE_NEOX);
    lua_setfield(L, -2, "rope_neox");
    lua_pushstring(L, hp->ffn_act == TERN_ACT_RELU_SQ ? "relu_sq" : "silu");
    lua_setfield(L, -2, "ffn_act");
    lua_pushstring(L, hp->arch_name);
    lua_setfield(L, -2, "arch");
}

/* The instructions the state has run since the last reset, in its extra space. */
static long *steps_of(lua_State *L) { return (long *)lua_getextraspace(L); }

static void step_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if ((*steps_of(L) += STEP_HOOK_EVERY) > GRAPH_LUA_STEPS)
        luaL_error(L, "graph script ran past %d million Lua instructions (an endless loop?)",
                   (int)(GRAPH_LUA_STEPS / 1000000));
}

tern_status tern_graph_builder_create(tern_model *m, const char *script, tern_graph_builder **out,
                                      tern_error *err)
{
    *out = NULL;
    tern_graph_builder *b = calloc(1, sizeof *b);
    if (!b) return tern_error_set(err, TERN_ENOMEM, "out of memory creating graph builder");
    b->m = m;
    b->L = tern_lua_newstate(GRAPH_LUA_CAP);
    tern_status st = b->L ? tern_lua_load_script(b->L, script, err)
                          : tern_error_set(err, TERN_ENOMEM, "cannot create Lua state");
    if (!st) {
        *steps_of(b->L) = 0;
        lua_sethook(b->L, step_hook, LUA_MASKCOUNT, STEP_HOOK_EVERY);
    }
    if (!st) st = tern_lua_pcall(b->L, 0, 1, TERN_ESCRIPT, err);
    if (!st && !lua_isfunction(b->L, -1))
        st = tern_error_set(err, TERN_ESCRIPT, "graph script %s must return a function(g, m)", script);
    if (st) {
        tern_graph_builder_free(b);
        return st;
    }
    *out = b;
    return TERN_OK;
}

void tern_graph_builder_free(tern_graph_builder *b)
{
    if (!b) return;
    tern_lua_close(b->L);
    free(b);
}

static void push_methods(lua_State *L, build_ctx *c, const luaL_Reg *regs)
{
    for (; regs->name; regs++) {
        lua_pushlightuserdata(L, c);
        lua_pushcclosure(L, regs->func, 1);
        lua_setfield(L, -2, regs->name);
    }
}

/* build(c, fn): makes `g` and `m` over the build context and returns
 * fn(g, m). Runs under tern_lua_pcall, so a failed allocation while the
 * tables are made is an error like any other. */
static int build(lua_State *L)
{
    build_ctx *c = lua_touserdata(L, 1);
    tern_graph *g = c->g;
    lua_settop(L, 2);
    /* g */
    lua_newtable(L);
    push_methods(L, c, graph_methods);
    lua_pushinteger(L, g->in_tokens);
    lua_setfield(L, -2, "tokens");
    lua_pushinteger(L, g->in_positions);
    lua_setfield(L, -2, "positions");
    lua_pushinteger(L, g->in_out_ids);
    lua_setfield(L, -2, "out_ids");
    lua_pushinteger(L, g->n_tok);
    lua_setfield(L, -2, "n_tokens");
    lua_pushinteger(L, g->n_out);
    lua_setfield(L, -2, "n_out");
    /* m */
    lua_newtable(L);
    static const luaL_Reg model_methods[] = {{"w", m_w}, {"layer", m_layer}, {NULL, NULL}};
    push_methods(L, c, model_methods);
    lua_newtable(L);
    lua_setfield(L, -2, "_w");
    tern_lua_push_hparams(L, &c->m->hp);
    lua_setfield(L, -2, "hparams");
    lua_call(L, 2, 1);
    return 1;
}

tern_status tern_graph_builder_run(tern_graph_builder *b, tern_graph *g, tern_tensor *k_cache,
                                   tern_tensor *v_cache, int kv_space, tern_error *err)
{
    lua_State *L = b->L;
    build_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.m = b->m;
    c.kc = k_cache;
    c.vc = v_cache;
    c.kv_space = kv_space;
    int top = lua_gettop(L);
    *steps_of(L) = 0;
    lua_pushcfunction(L, build);
    lua_pushlightuserdata(L, &c);
    lua_pushvalue(L, 1);
    tern_status st = tern_lua_pcall(L, 2, 1, TERN_ESCRIPT, err);
    if (st && c.err.status == TERN_ENOMEM) /* a graph call ran out: say so, not ESCRIPT */
        st = tern_error_set(err, TERN_ENOMEM, "%s", c.err.msg);
    if (st) {
        lua_settop(L, top);
        return st;
    }
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) >= g->n_tensors) {
        st = tern_error_set(err, TERN_ESCRIPT, "graph script %s returned %s, not a tensor",
                            b->m->hp.graph, luaL_typename(L, -1));
    } else {
        g->output = (int)lua_tointeger(L, -1);
        const tern_tensor *o = &g->tensors[g->output].t;
        if (o->type != TERN_TYPE_F32 || o->ne[0] != b->m->hp.n_vocab || tern_tensor_nrows(o) != g->n_out)
            st = tern_error_set(err, TERN_ESCRIPT,
                                "graph script %s: output is %lld x %lld, expected n_vocab %lld x %d rows",
                                b->m->hp.graph, (long long)o->ne[0], (long long)tern_tensor_nrows(o),
                                (long long)b->m->hp.n_vocab, g->n_out);
    }
    lua_settop(L, top);
    lua_gc(L, LUA_GCCOLLECT);
    return st;
}
