/* model_cmd.c - loading helpers shared by the C model commands. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_cmd.h"
#include "tern/io.h"

int mc_open(const tern_opts *o, const char *cmd, tern_model **m, tern_session **s)
{
    *m = NULL;
    *s = NULL;
    const char *path = opt_model_path(o);
    if (!path) return cli_fail(cmd, "no model given (-m FILE) and the default model is not installed");
    const char *kt = opt_str(o, "cache_type_k", "f16"), *vt = opt_str(o, "cache_type_v", kt);
    if (strcmp(kt, vt) != 0) return cli_fail(cmd, "tern keeps K and V in one type: -ctk %s and -ctv %s differ", kt, vt);
    tern_model_options mo = tern_model_default_options();
    mo.backend = opt_backends(o, "backend");
    mo.n_threads = (int)opt_int(o, "threads", 0); /* 0: the physical cores */
    mo.kernel = opt_str(o, "kernel", "auto");
    mo.head = opt_str(o, "head", mo.head);
    mo.device = (int)opt_int(o, "device", -1);
    tern_load_progress progress = {0};
    mo.progress = tern_load_progress_stderr;
    mo.progress_user = &progress;
    tern_error err;
    if (tern_model_load(path, &mo, m, &err)) return cli_fail(cmd, "%s", err.msg);
    tern_session_options so = tern_session_default_options();
    so.n_ctx = (int)opt_int(o, "ctx_size", 0);
    so.n_batch = (int)opt_int(o, "batch_size", 512);
    so.kv_type = tern_type_from_name(kt);
    if (tern_session_create(*m, &so, s, &err)) {
        tern_model_free(*m);
        *m = NULL;
        return cli_fail(cmd, "%s", err.msg);
    }
    return 0;
}

int mc_tokens(const tern_opts *o, const char *cmd, const tern_model *m, int32_t **ids, size_t *n)
{
    const char *ids_path = opt_str(o, "ids", NULL);
    tern_error err;
    *ids = NULL;
    *n = 0;
    if (ids_path) {
        size_t size;
        char *buf;
        if (tern_io_read(ids_path, TERN_IO_INPUT_MAX, &buf, &size, &err)) return cli_fail(cmd, "--ids %s", err.msg);
        if (size % 4) {
            free(buf);
            return cli_fail(cmd, "%s: %zu bytes is not a whole number of int32 ids", ids_path, size);
        }
        *ids = (int32_t *)(void *)buf; /* malloc'ed: aligned; little-endian on every machine tern runs on */
        *n = size / 4;
        return 0;
    }
    const char *text = opt_str(o, "prompt", NULL);
    char *file_text = NULL;
    size_t len = text ? strlen(text) : 0;
    if (!text) {
        const char *f = opt_str(o, "file", NULL);
        if (!f) return cli_fail(cmd, "no input: give -p TEXT, -f FILE or --ids FILE");
        if (tern_io_read(f, TERN_IO_INPUT_MAX, &file_text, &len, &err)) return cli_fail(cmd, "-f %s", err.msg);
        text = file_text;
    }
    size_t cap = 0;
    tern_status st = tern_tokenize(tern_model_tokenizer(m), text, len, !opt_bool(o, "no_bos"),
                                   opt_bool(o, "special"), ids, &cap, n, &err);
    free(file_text);
    if (st) {
        free(*ids);
        *ids = NULL;
        *n = 0;
        return cli_fail(cmd, "%s", err.msg);
    }
    return 0;
}

static tern_session *volatile interruptible;

static void on_sigint(int sig)
{
    (void)sig;
    tern_session *s = interruptible;
    if (s) tern_session_cancel(s); /* an atomic store: async-signal-safe */
}

void mc_catch_interrupt(tern_session *s)
{
    interruptible = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s ? on_sigint : SIG_DFL;
    sigaction(SIGINT, &sa, NULL);
}

int mc_eval_failed(const char *cmd, const tern_error *err)
{
    if (err->status == TERN_ECANCELED) {
        cli_fail(cmd, "interrupted");
        return 130;
    }
    return cli_fail(cmd, "%s", err->msg);
}
