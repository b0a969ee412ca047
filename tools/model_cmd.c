/* model_cmd.c - loading helpers shared by the C model commands. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_cmd.h"
#include "options.h"
#include "tern/lua.h"

char *mc_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *size = n;
    return buf;
}

int mc_open(lua_State *L, int t, const char *cmd, tern_model **m, tern_session **s)
{
    const char *path = opt_model_path(L, t);
    if (!path) return cli_fail(cmd, "no model given (-m FILE) and the default model is not installed");
    tern_model_options mo = tern_model_default_options();
    char backends[256];
    mo.backend = tern_lua_backend_list(L, t, "backend", backends, sizeof backends);
    if (!mo.backend) return cli_fail(cmd, "%s", backends);
    mo.n_threads = (int)opt_int(L, t, "threads", 1);
    mo.kernel = opt_str(L, t, "kernel", "auto");
    mo.head = opt_str(L, t, "head", "f16");
    mo.device = (int)opt_int(L, t, "device", -1);
    tern_error err;
    if (tern_model_load(path, &mo, m, &err)) return cli_fail(cmd, "%s", err.msg);
    tern_session_options so = tern_session_default_options();
    so.n_ctx = (int)opt_int(L, t, "ctx_size", 0);
    so.n_batch = (int)opt_int(L, t, "batch_size", 512);
    const char *kt = opt_str(L, t, "cache_type_k", "f16"), *vt = opt_str(L, t, "cache_type_v", kt);
    if (strcmp(kt, vt) != 0) {
        tern_model_free(*m);
        return cli_fail(cmd, "tern keeps K and V in one type: -ctk %s and -ctv %s differ", kt, vt);
    }
    so.kv_type = tern_type_from_name(kt);
    if (tern_session_create(*m, &so, s, &err)) {
        tern_model_free(*m);
        return cli_fail(cmd, "%s", err.msg);
    }
    return 0;
}

int mc_tokens(lua_State *L, int t, const char *cmd, const tern_model *m, int32_t **ids, size_t *n)
{
    const char *ids_path = opt_str(L, t, "ids", NULL);
    *ids = NULL;
    *n = 0;
    if (ids_path) {
        size_t size;
        char *buf = mc_read_file(ids_path, &size);
        if (!buf) return cli_fail(cmd, "cannot read %s: %s", ids_path, strerror(errno));
        if (size % 4) {
            free(buf);
            return cli_fail(cmd, "%s: %zu bytes is not a whole number of int32 ids", ids_path, size);
        }
        *ids = (int32_t *)buf; /* little-endian on every machine tern runs on */
        *n = size / 4;
        return 0;
    }
    const char *text = opt_str(L, t, "prompt", NULL);
    char *file_text = NULL;
    size_t len = text ? strlen(text) : 0;
    if (!text) {
        const char *f = opt_str(L, t, "file", NULL);
        if (!f) return cli_fail(cmd, "no input: give -p TEXT, -f FILE or --ids FILE");
        file_text = mc_read_file(f, &len);
        if (!file_text) return cli_fail(cmd, "cannot read %s: %s", f, strerror(errno));
        text = file_text;
    }
    size_t cap = 0;
    tern_error err;
    tern_status st = tern_tokenize(tern_model_tokenizer(m), text, len, !opt_bool(L, t, "no_bos"),
                                   opt_bool(L, t, "special"), ids, &cap, n, &err);
    free(file_text);
    if (st) return cli_fail(cmd, "%s", err.msg);
    return 0;
}
