/* codegen/wisdom.c - reading and writing tuning records (wisdom.h): the
 * reader runs the record in a Lua state with no libraries, a memory cap
 * and an instruction budget, then copies out only checked fields. */
#include "wisdom.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#define TW_MEM_CAP (1u << 20)
#define TW_MAX_FILE (256u << 10)

void tw_cpu_signature(uint64_t cpu_features, char *cpu, size_t cpu_len, char *feat, size_t feat_len)
{
    char brand[49] = "";
#if defined(__x86_64__) || defined(__i386__)
    unsigned r[12] = {0}, a, b, c, d;
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(brand, r, 48);
    }
#endif
    /* trim the padding cpuid pads with */
    char *s = brand;
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') s[--n] = 0;
    snprintf(cpu, cpu_len, "%s", *s ? s : "unknown");
    snprintf(feat, feat_len, "0x%llx", (unsigned long long)cpu_features);
}

typedef struct cap_alloc {
    size_t used;
} cap_alloc;

static void *cap_realloc(void *ud, void *p, size_t osize, size_t nsize)
{
    cap_alloc *c = ud;
    size_t old = p ? osize : 0;
    if (nsize == 0) {
        free(p);
        c->used -= old;
        return NULL;
    }
    if (nsize > old && c->used + (nsize - old) > TW_MEM_CAP) return NULL;
    void *q = realloc(p, nsize);
    if (q) c->used = c->used - old + nsize;
    return q;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "instruction budget exhausted");
}

/* t[key] as a string into buf; 0 ok. */
static int get_str(lua_State *L, int t, const char *key, char *buf, size_t n, char *err, size_t errlen)
{
    int ty = lua_getfield(L, t, key);
    size_t len = 0;
    const char *s = ty == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!s || len >= n || strlen(s) != len) {
        snprintf(err, errlen, "field '%s' is %s", key, s ? "too long" : "missing or not a string");
        lua_pop(L, 1);
        return -1;
    }
    memcpy(buf, s, len + 1);
    lua_pop(L, 1);
    return 0;
}

static int get_int(lua_State *L, int t, const char *key, int64_t lo, int64_t hi, int64_t *v, char *err,
                   size_t errlen)
{
    lua_getfield(L, t, key);
    int ok = lua_isinteger(L, -1);
    lua_Integer x = ok ? lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    if (!ok || x < lo || x > hi) {
        snprintf(err, errlen, "field '%s' is %s", key, ok ? "out of range" : "missing or not an integer");
        return -1;
    }
    *v = x;
    return 0;
}

static int no_slash_name(const char *s)
{
    if (!*s || s[0] == '.') return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static int copy_record(lua_State *L, tw_record *r, char *err, size_t errlen)
{
    int64_t v;
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "the chunk does not return a table");
        return -1;
    }
    int top = lua_gettop(L);
    if (lua_getfield(L, top, "signature") != LUA_TTABLE) {
        snprintf(err, errlen, "no signature table");
        return -1;
    }
    int sig = lua_gettop(L);
    if (get_str(L, sig, "tern", r->tern, sizeof r->tern, err, errlen) ||
        get_int(L, sig, "kernels_abi", 0, 1 << 20, &v, err, errlen))
        return -1;
    r->kernels_abi = (unsigned)v;
    if (get_str(L, sig, "cpu", r->cpu, sizeof r->cpu, err, errlen) ||
        get_str(L, sig, "features", r->features, sizeof r->features, err, errlen) ||
        get_str(L, sig, "compiler", r->compiler, sizeof r->compiler, err, errlen))
        return -1;
    lua_pop(L, 1);
    if (get_str(L, top, "plugin", r->plugin, sizeof r->plugin, err, errlen)) return -1;
    if (!no_slash_name(r->plugin)) {
        snprintf(err, errlen, "plugin '%s' is not a plain file name", r->plugin);
        return -1;
    }
    if (get_int(L, top, "threads", 1, 4096, &v, err, errlen)) return -1;
    r->threads = (int)v;
    if (lua_getfield(L, top, "shapes") != LUA_TTABLE) {
        snprintf(err, errlen, "no shapes table");
        return -1;
    }
    int shapes = lua_gettop(L);
    lua_Integer n = luaL_len(L, shapes);
    if (n < 1 || n > TW_MAX_SHAPES) {
        snprintf(err, errlen, "%lld shapes (1..%d)", (long long)n, TW_MAX_SHAPES);
        return -1;
    }
    r->n_shapes = (int)n;
    for (int i = 0; i < r->n_shapes; i++) {
        tw_shape *s = &r->shapes[i];
        if (lua_geti(L, shapes, i + 1) != LUA_TTABLE) {
            snprintf(err, errlen, "shape %d is not a table", i + 1);
            return -1;
        }
        int t = lua_gettop(L);
        char why[160];
        if (get_int(L, t, "K", 1, 1 << 24, &s->K, err, errlen) || get_int(L, t, "N", 1, (int64_t)1 << 32, &s->N, err, errlen) ||
            get_str(L, t, "gemv", s->gemv, sizeof s->gemv, err, errlen) ||
            get_str(L, t, "gemm", s->gemm, sizeof s->gemm, err, errlen)) {
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "shape %d: %s", i + 1, why);
            return -1;
        }
        if (lua_getfield(L, t, "why") == LUA_TSTRING) snprintf(s->why, sizeof s->why, "%s", lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    return 0;
}

typedef struct copy_job {
    tw_record *r;
    char *why;
    size_t whylen;
    int rc;
} copy_job;

/* copy_record under lua_pcall: any Lua error (memory) is caught */
static int copy_cf(lua_State *L)
{
    copy_job *j = lua_touserdata(L, 1);
    lua_settop(L, 2);
    j->rc = copy_record(L, j->r, j->why, j->whylen);
    return 0;
}

int tw_read(const char *path, tw_record *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return -1;
    }
    char *text = malloc(TW_MAX_FILE + 1);
    size_t n = text ? fread(text, 1, TW_MAX_FILE + 1, f) : 0;
    fclose(f);
    if (!text || n > TW_MAX_FILE) {
        free(text);
        snprintf(err, errlen, "%s: %s", path, text ? "larger than 256 KiB" : "out of memory");
        return -1;
    }
    cap_alloc cap = {0};
    lua_State *L = lua_newstate(cap_realloc, &cap);
    if (!L) {
        free(text);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    char why[200] = "";
    int rc = -1;
    /* no libraries are opened: the chunk sees an empty environment */
    if (luaL_loadbufferx(L, text, n, "=wisdom", "t") != LUA_OK) {
        snprintf(why, sizeof why, "%s", lua_tostring(L, -1));
    } else {
        lua_newtable(L);
        lua_setupvalue(L, -2, 1); /* _ENV = {} */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1000000);
        if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
            const char *m = lua_tostring(L, -1);
            snprintf(why, sizeof why, "%s", m ? m : "error object is not a string");
        } else {
            lua_sethook(L, NULL, 0, 0);
            copy_job j = {r, why, sizeof why, -1};
            lua_pushcfunction(L, copy_cf);
            lua_pushlightuserdata(L, &j);
            lua_pushvalue(L, -3);
            if (lua_pcall(L, 2, 0, 0) != LUA_OK) snprintf(why, sizeof why, "%s", lua_tostring(L, -1));
            else rc = j.rc;
        }
    }
    lua_close(L);
    free(text);
    if (rc) snprintf(err, errlen, "%s", why);
    return rc;
}

int tw_check(const tw_record *r, const char *tern_version, unsigned kernels_abi, uint64_t cpu_features,
             char *err, size_t errlen)
{
    char cpu[128], feat[32];
    tw_cpu_signature(cpu_features, cpu, sizeof cpu, feat, sizeof feat);
    if (strcmp(r->tern, tern_version))
        snprintf(err, errlen, "tuned by tern %s, this is %s", r->tern, tern_version);
    else if (r->kernels_abi != kernels_abi)
        snprintf(err, errlen, "kernel ABI %u, this tern has %u", r->kernels_abi, kernels_abi);
    else if (strcmp(r->cpu, cpu))
        snprintf(err, errlen, "tuned on '%s', this CPU is '%s'", r->cpu, cpu);
    else if (strcmp(r->features, feat))
        snprintf(err, errlen, "tuned with CPU features %s, this CPU has %s", r->features, feat);
    else
        return 0;
    return -1;
}

/* s as a Lua string literal (%q-like: quotes, backslashes, controls) */
static void put_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 32 || c == 127) fprintf(f, "\\%03u", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int tw_write(const char *path, const tw_record *r, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot create", tmp);
        return -1;
    }
    fprintf(f, "-- tern wisdom: written by `tern tune`, read by the x86 backend. A record that\n"
               "-- does not match this tern, kernel ABI, CPU or compiler is ignored.\nreturn {\n");
    fprintf(f, "  signature = { tern = ");
    put_str(f, r->tern);
    fprintf(f, ", kernels_abi = %u, cpu = ", r->kernels_abi);
    put_str(f, r->cpu);
    fprintf(f, ",\n                features = ");
    put_str(f, r->features);
    fprintf(f, ", compiler = ");
    put_str(f, r->compiler);
    fprintf(f, " },\n  plugin = ");
    put_str(f, r->plugin);
    fprintf(f, ", threads = %d,\n  shapes = {\n", r->threads);
    for (int i = 0; i < r->n_shapes; i++) {
        const tw_shape *s = &r->shapes[i];
        fprintf(f, "    { K = %lld, N = %lld, gemv = ", (long long)s->K, (long long)s->N);
        put_str(f, s->gemv);
        fprintf(f, ", gemm = ");
        put_str(f, s->gemm);
        fprintf(f, ",\n      why = ");
        put_str(f, s->why);
        fprintf(f, " },\n");
    }
    fprintf(f, "  },\n}\n");
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmp, path)) {
        remove(tmp);
        snprintf(err, errlen, "%s: write failed", path);
        return -1;
    }
    return 0;
}
