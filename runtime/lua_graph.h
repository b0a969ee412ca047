/* lua_graph.h - runtime-internal: the Lua state that runs a model's graph
 * script, and the shared helpers for Lua states tern creates. */
#ifndef TERN_LUA_GRAPH_H
#define TERN_LUA_GRAPH_H

#include <lua.h>

#include "tern/graph.h"
#include "tern/model.h"

typedef struct tern_graph_builder tern_graph_builder;

/* Loads graphs/<script> (from $TERN_GRAPH_PATH if set, else the copy
 * embedded at build time) into a fresh capped Lua state. */
tern_status tern_graph_builder_create(tern_model *m, const char *script, tern_graph_builder **out,
                                      tern_error *err);
void tern_graph_builder_free(tern_graph_builder *b);
/* Calls the script's function with a builder over g; k_cache/v_cache are
 * the session's per-layer caches, in memory space kv_space. */
tern_status tern_graph_builder_run(tern_graph_builder *b, tern_graph *g, tern_tensor *k_cache,
                                   tern_tensor *v_cache, int kv_space, tern_error *err);

/* Pushes a table of the hyper-parameters (the `m.hparams` graph scripts
 * see; pipelines get it from model:info()). */
void tern_lua_push_hparams(lua_State *L, const tern_hparams *hp);

/* A Lua state with tern's allocator capped at cap bytes (0 = no cap) and
 * the standard libraries opened. NULL when out of memory. */
lua_State *tern_lua_newstate(size_t cap);
void tern_lua_close(lua_State *L);
/* lua_pcall of the function below nargs arguments, with a message handler
 * that turns any error value into one line of text. On failure: err gets
 * st (TERN_ENOMEM for a memory error) and the message, the stack loses the
 * function and its arguments, and the status is returned. Every call tern
 * makes into a Lua state goes through here or lua_pcall: none raises
 * outside protected mode (each state's panic handler reports a bug). */
tern_status tern_lua_pcall(lua_State *L, int nargs, int nresults, tern_status st, tern_error *err);
/* Pushes the loaded chunk of a graph/pipeline script by file name
 * ("generate.lua"): $TERN_GRAPH_PATH/<name> when that file exists, else the
 * embedded copy. Returns TERN_OK or ENOTFOUND/ESCRIPT with err filled. */
tern_status tern_lua_load_script(lua_State *L, const char *name, tern_error *err);

#endif
