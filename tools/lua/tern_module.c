/* tern_module.c - tern.so, the `tern` module for a stock Lua 5.4
 * interpreter (installed in <prefix>/lib/lua/5.4/): `require "tern"` gets
 * the bindings `tern run` uses (runtime/lua_tern.c), so pipelines can be
 * scripted outside the tern command. It only forwards to libtern; the
 * interpreter supplies the Lua core. Built with -fvisibility=hidden, so
 * luaopen_tern is its one export. */
#include <lua.h>

#include "tern/lua.h"

/* The module table, also set as the global `tern`: the embedded pipelines
 * (tern.script("generate.lua")) refer to it by that name. */
__attribute__((visibility("default"))) int luaopen_tern(lua_State *L)
{
    return tern_lua_open(L);
}
