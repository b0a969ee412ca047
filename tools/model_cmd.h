/* model_cmd.h - what the C model commands (eval, perplexity, bench) share:
 * loading a model and a session from the options, token input, and Ctrl-C
 * canceling a running evaluation. */
#ifndef TERN_MODEL_CMD_H
#define TERN_MODEL_CMD_H

#include "options.h"
#include "tern/session.h"

/* Loads the model (opts.model or the default) and a session on it. Prints
 * the error and returns 1 on failure, having freed what it created: *m and
 * *s are NULL then (tern/status.h's rule). */
int mc_open(const tern_opts *o, const char *cmd, tern_model **m, tern_session **s);
/* Token ids from --ids FILE (int32 LE) or by tokenizing -p TEXT or -f FILE
 * (each file read with tern/io.h's cap). *ids is malloc'ed. Returns 0 or 1
 * after printing an error. */
int mc_tokens(const tern_opts *o, const char *cmd, const tern_model *m, int32_t **ids, size_t *n);

/* From now on Ctrl-C cancels s's running (or next) evaluation, which then
 * fails with TERN_ECANCELED; NULL restores the default action. */
void mc_catch_interrupt(tern_session *s);
/* Exit code and message for a failed evaluation: 130 for Ctrl-C, else 1. */
int mc_eval_failed(const char *cmd, const tern_error *err);

#endif
