/* lua_util.c - Lua states with tern's capped allocator, and finding graph
 * and pipeline scripts (a folder named by $TERN_GRAPH_PATH first, so users
 * can experiment without rebuilding; else the copies embedded in libtern). */
#include <lauxlib.h>
#include <lualib.h>
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
    if (p) a->used = a->used - old + nsize;
    return p;
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
    luaL_openlibs(L);
    return L;
}

void tern_lua_close(lua_State *L)
{
    if (!L) return;
    void *ud;
    lua_getallocf(L, &ud);
    lua_close(L);
    free(ud);
}

tern_status tern_lua_load_script(lua_State *L, const char *name, tern_error *err)
{
    const char *dir = getenv("TERN_GRAPH_PATH");
    if (dir && *dir) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (stat(path, &st) == 0) {
            if (luaL_loadfile(L, path) != LUA_OK) {
                tern_error_set(err, TERN_ESCRIPT, "%s", lua_tostring(L, -1));
                lua_pop(L, 1);
                return TERN_ESCRIPT;
            }
            return TERN_OK;
        }
    }
    for (const tern_embedded_file *f = tern_embedded_graphs; f->name; f++) {
        if (strcmp(f->name, name) != 0) continue;
        char chunk[128];
        snprintf(chunk, sizeof chunk, "@graphs/%s", name);
        if (luaL_loadbuffer(L, f->text, f->size, chunk) != LUA_OK) {
            tern_error_set(err, TERN_ESCRIPT, "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
            return TERN_ESCRIPT;
        }
        return TERN_OK;
    }
    return tern_error_set(err, TERN_ENOTFOUND, "script '%s' not found (embedded or in $TERN_GRAPH_PATH)", name);
}
