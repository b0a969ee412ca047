/* lua_util.c - Lua states with tern's capped allocator, and finding graph
 * and pipeline scripts (a folder named by $TERN_GRAPH_PATH first, so users
 * can experiment without rebuilding; else the copies embedded in libtern). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "embedded.h"
#include "lua_graph.h"

typedef struct capped_alloc {
    size_t used, cap;
} capped_alloc;

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    capped_alloc *a = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        a->used -= old;
        return NULL;
    }
    if (a->cap && nsize > old && a->used + (nsize - old) > a->cap) return NULL;
    void *p = realloc(ptr, nsize);
    if (!p && ptr && nsize <= old) return ptr; /* Lua assumes shrinking never fails: keep the block */
    if (p) a->used = a->used - old + nsize;
    return p;
}

/* Reached only through a bug: every call tern makes into a state runs in
 * protected mode (tern_lua_pcall), so no user input gets here. Lua aborts
 * when this returns; the message says why first. */
static int panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)";
    fprintf(stderr, "tern: Lua error outside a protected call (a bug in tern): %s\n", msg);
    return 0;
}

static int open_libs(lua_State *L)
{
    luaL_openlibs(L);
    return 0;
}

lua_State *tern_lua_newstate(size_t cap)
{
    capped_alloc *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->cap = cap;
    lua_State *L = lua_newstate(l_alloc, a);
    if (!L) {
        free(a);
        return NULL;
    }
    lua_atpanic(L, panic);
    lua_pushcfunction(L, open_libs);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        tern_lua_close(L);
        return NULL;
    }
    return L;
}

/* Message handler: whatever was raised becomes one line of text. error()
 * with a table, nil or a boolean says so, with the raising line. */
static int message(lua_State *L)
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

tern_status tern_lua_pcall(lua_State *L, int nargs, int nresults, tern_status st, tern_error *err)
{
    int base = lua_gettop(L) - nargs; /* the function */
    lua_pushcfunction(L, message);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc == LUA_OK) return TERN_OK;
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error";
    if (rc == LUA_ERRMEM) st = TERN_ENOMEM;
    tern_error_set(err, st, "%s", rc == LUA_ERRMEM ? "out of memory in a Lua script" : msg);
    lua_pop(L, 1);
    return st;
}

void tern_lua_close(lua_State *L)
{
    if (!L) return;
    void *ud;
    lua_getallocf(L, &ud);
    lua_close(L);
    free(ud);
}

static tern_status load_failed(lua_State *L, int rc, tern_error *err)
{
    tern_status st = rc == LUA_ERRMEM ? TERN_ENOMEM : TERN_ESCRIPT;
    tern_error_set(err, st, "%s", rc == LUA_ERRMEM ? "out of memory loading a Lua script" : lua_tostring(L, -1));
    lua_pop(L, 1);
    return st;
}

tern_status tern_lua_load_script(lua_State *L, const char *name, tern_error *err)
{
    const char *dir = getenv("TERN_GRAPH_PATH");
    if (dir && *dir) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (stat(path, &st) == 0) {
            if (!S_ISREG(st.st_mode))
                return tern_error_set(err, TERN_EIO, "%s: not a regular file", path);
            /* text only: a precompiled chunk is not checked by Lua's loader */
            int rc = luaL_loadfilex(L, path, "t");
            if (rc != LUA_OK) return load_failed(L, rc, err);
            return TERN_OK;
        }
    }
    for (const tern_embedded_file *f = tern_embedded_graphs; f->name; f++) {
        if (strcmp(f->name, name) != 0) continue;
        char chunk[128];
        snprintf(chunk, sizeof chunk, "@graphs/%s", name);
        int rc = luaL_loadbufferx(L, f->text, f->size, chunk, "t");
        if (rc != LUA_OK) return load_failed(L, rc, err);
        return TERN_OK;
    }
    return tern_error_set(err, TERN_ENOTFOUND, "script '%s' not found (embedded or in $TERN_GRAPH_PATH)", name);
}
