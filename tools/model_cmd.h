/* model_cmd.h - what the C model commands (eval, perplexity, bench) share:
 * loading a model and a session from the options table, and token input. */
#ifndef TERN_MODEL_CMD_H
#define TERN_MODEL_CMD_H

#include <lua.h>

#include "tern/session.h"

/* Loads the model (opts.model or the default) and a session on it, from the
 * options at index t. Prints the error and returns 1 on failure, having
 * freed what it created: *m and *s are NULL then (tern/status.h's rule). */
int mc_open(lua_State *L, int t, const char *cmd, tern_model **m, tern_session **s);
/* Token ids from --ids FILE (int32 LE) or by tokenizing -p/-f text. *ids is
 * malloc'ed. Returns 0 or 1 after printing an error. */
int mc_tokens(lua_State *L, int t, const char *cmd, const tern_model *m, int32_t **ids, size_t *n);
/* Reads a whole file; NULL (and errno) on failure. */
char *mc_read_file(const char *path, size_t *size);

#endif
