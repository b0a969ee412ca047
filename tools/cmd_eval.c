/* cmd_eval.c - `tern eval`: the logits of every position, as raw float32
 * [n_tokens][n_vocab] (the format of the shared references), plus the
 * token ids beside them (OUT with .f32 replaced by .tokens.i32). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_cmd.h"
#include "options.h"
#include "tern/lua.h"

static const char *const eval_keys[] = {
    "model", "prompt", "file", "ids", "logits", "batch_size", "threads", "ctx_size", "backend",
    "kernel", "head", "device", "cache_type_k", "cache_type_v", "special", "no_bos", NULL,
};

static int write_all(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    int bad = fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad;
}

int cmd_eval(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) {
            options_help("eval", "[-m MODEL] (-p TEXT | --ids FILE.i32) --logits OUT.f32 [--batch N]", eval_keys);
            return 0;
        }
    lua_State *L = tern_lua_pipeline_state(0);
    if (!L) return cli_fail("eval", "out of memory");
    int rc = 1;
    tern_model *m = NULL;
    tern_session *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (options_parse(L, "eval", argc, argv, eval_keys)) goto done;
    const char *out = opt_str(L, -1, "logits", NULL);
    if (!out) {
        cli_fail("eval", "give --logits OUT.f32");
        goto done;
    }
    if (mc_open(L, -1, "eval", &m, &s) || mc_tokens(L, -1, "eval", m, &ids, &n)) goto done;
    if (n == 0) {
        cli_fail("eval", "no tokens to evaluate");
        goto done;
    }
    tern_error err;
    if (tern_session_eval(s, ids, n, 1, &err)) {
        cli_fail("eval", "%s", err.msg);
        goto done;
    }
    int64_t rows;
    const float *lg = tern_session_logits(s, &rows);
    if (write_all(out, lg, (size_t)rows * (size_t)tern_session_n_vocab(s) * sizeof(float))) {
        cli_fail("eval", "cannot write %s", out);
        goto done;
    }
    char ids_path[4096];
    size_t ol = strlen(out);
    if (ol > 4 && strcmp(out + ol - 4, ".f32") == 0)
        snprintf(ids_path, sizeof ids_path, "%.*s.tokens.i32", (int)(ol - 4), out);
    else
        snprintf(ids_path, sizeof ids_path, "%s.tokens.i32", out);
    if (write_all(ids_path, ids, n * sizeof *ids)) {
        cli_fail("eval", "cannot write %s", ids_path);
        goto done;
    }
    fprintf(stderr, "tern eval: %zu tokens x %lld logits -> %s, ids -> %s\n", n,
            (long long)tern_session_n_vocab(s), out, ids_path);
    rc = 0;
done:
    free(ids);
    tern_session_free(s);
    tern_model_free(m);
    tern_lua_pipeline_close(L);
    return rc;
}
