/* tern/lua.h - tern's Lua API for pipelines (graphs/generate.lua, chat.lua,
 * speculative.lua): models, sessions, samplers, tokenizers as userdata
 * (tern.Model, tern.Session, tern.Sampler, tern.Detok), with __gc and
 * __close sharing one idempotent close. */
#ifndef TERN_LUA_H
#define TERN_LUA_H

#include <lua.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the `tern` module as a global in L and returns 1 (it also
 * leaves the module table on the stack). */
int tern_lua_open(lua_State *L);

/* A state for pipelines: tern's allocator (cap bytes, 0 = none), the
 * standard libraries and the tern module. */
lua_State *tern_lua_pipeline_state(size_t cap);
void tern_lua_pipeline_close(lua_State *L);

/* Loads the pipeline script `name` (embedded or from $TERN_GRAPH_PATH),
 * which returns function(opts), and calls it with the table at stack index
 * opts_index. Errors come back as one line in err. */
tern_status tern_lua_run_pipeline(lua_State *L, const char *name, int opts_index, tern_error *err);
/* The same for a pipeline in a file of the user's (`tern run --pipeline
 * FILE`): read from path when it exists, else taken as a script name
 * ("examples/lookup.lua"). Errors name the file and line. */
tern_status tern_lua_run_pipeline_file(lua_State *L, const char *path, int opts_index, tern_error *err);

/* Set by SIGINT handlers; pipelines poll it through tern.interrupted(),
 * and an evaluation running when it is set is canceled (the pipeline's
 * s:eval raises "interrupted"). Async-signal-safe. */
void tern_lua_set_interrupted(int on);

/* Field k of the table at index t as a backend list for
 * tern_model_options.backend: a name, "a,b", or a Lua list {"a", "b"}
 * joined into buf; "auto" when absent. Otherwise NULL, with the message
 * in buf (it raises no Lua error). */
const char *tern_lua_backend_list(lua_State *L, int t, const char *k, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
