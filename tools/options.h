/* options.h - the command-line flags every model command shares, one table
 * mapping each flag (spelled as llama.cpp spells it) to a config.lua key.
 * Options land in a Lua table: config.lua first, then flags over it. */
#ifndef TERN_OPTIONS_H
#define TERN_OPTIONS_H

#include <lua.h>

enum { OPT_STR, OPT_INT, OPT_NUM, OPT_BOOL, OPT_LIST };

typedef struct tern_flag {
    const char *short_name; /* may be NULL */
    const char *long_name;
    const char *key;        /* config.lua key */
    int kind;               /* OPT_* */
    const char *help;
} tern_flag;

/* Parses argv (argv[0] is the subcommand) into a new table pushed on L:
 * loads --config FILE (a Lua file returning a table) first, then applies
 * the flags; positional words go to key "args" as a list. Flags not in
 * `allowed` (a NULL-terminated list of keys; NULL = all) are rejected.
 * Returns 0, or 1 after printing a one-line error. */
int options_parse(lua_State *L, const char *cmd, int argc, char **argv, const char *const *allowed);
/* Prints the flags in `allowed` as a help text. */
void options_help(const char *cmd, const char *usage, const char *const *allowed);

/* Getters on the options table at index t. */
const char *opt_str(lua_State *L, int t, const char *key, const char *def);
long long opt_int(lua_State *L, int t, const char *key, long long def);
double opt_num(lua_State *L, int t, const char *key, double def);
int opt_bool(lua_State *L, int t, const char *key);

/* The model to use: opts.model, else the default model shipped with tern
 * (tern_install_default_model); NULL when neither. */
const char *opt_model_path(lua_State *L, int t);

#endif
