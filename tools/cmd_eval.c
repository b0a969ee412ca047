/* cmd_eval.c - `tern eval`: the logits of every position, as raw float32
 * [n_tokens][n_vocab] (the format of the shared references), plus the
 * token ids beside them (OUT with .f32 replaced by .tokens.i32). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model_cmd.h"
#include "tern/io.h"

static const char *const eval_keys[] = {
    "model", "prompt", "file", "ids", "logits", "batch_size", "threads", "ctx_size", "backend",
    "kernel", "head", "device", "cache_type_k", "cache_type_v", "special", "no_bos", NULL,
};

/* Writes data to path: only a regular file is created or replaced
 * (tern/io.h). 0, or 1 after printing. */
static int write_all(const char *path, const void *data, size_t n)
{
    tern_error err;
    int fd;
    if (tern_io_create(path, &fd, &err)) return cli_fail("eval", "%s", err.msg);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        return cli_fail("eval", "%s: cannot write", path);
    }
    int bad = fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad) return cli_fail("eval", "%s: write failed: %s", path, strerror(errno));
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) {
            options_help("eval", "[-m MODEL] (-p TEXT | --ids FILE.i32) --logits OUT.f32 [--batch N]", eval_keys);
            return 0;
        }
    int rc = 1;
    tern_opts *o = NULL;
    tern_model *m = NULL;
    tern_session *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (options_parse("eval", argc, argv, eval_keys, &o)) goto done;
    const char *out = opt_str(o, "logits", NULL);
    if (!out) {
        cli_fail("eval", "give --logits OUT.f32");
        goto done;
    }
    if (mc_open(o, "eval", &m, &s) || mc_tokens(o, "eval", m, &ids, &n)) goto done;
    if (n == 0) {
        cli_fail("eval", "no tokens to evaluate");
        goto done;
    }
    tern_error err;
    mc_catch_interrupt(s);
    if (tern_session_eval(s, ids, n, 1, &err)) {
        rc = mc_eval_failed("eval", &err);
        goto done;
    }
    int64_t rows;
    const float *lg = tern_session_logits(s, &rows);
    if (write_all(out, lg, (size_t)rows * (size_t)tern_session_n_vocab(s) * sizeof(float))) goto done;
    char ids_path[4096];
    size_t ol = strlen(out);
    if (ol > 4 && strcmp(out + ol - 4, ".f32") == 0)
        snprintf(ids_path, sizeof ids_path, "%.*s.tokens.i32", (int)(ol - 4), out);
    else
        snprintf(ids_path, sizeof ids_path, "%s.tokens.i32", out);
    if (write_all(ids_path, ids, n * sizeof *ids)) goto done;
    fprintf(stderr, "tern eval: %zu tokens x %lld logits -> %s, ids -> %s\n", n,
            (long long)tern_session_n_vocab(s), out, ids_path);
    rc = 0;
done:
    mc_catch_interrupt(NULL);
    free(ids);
    tern_session_free(s);
    tern_model_free(m);
    options_free(o);
    return rc;
}
