/* options.h - the one option layer of the model commands. One table maps
 * each flag (spelled as llama.cpp spells it) to a config.lua key, and one
 * table gives every key its type and accepted range: every numeric flag and
 * config key is parsed as 64-bit, range-checked and type-checked here, and
 * every error names the flag or key and what it accepts. The result is
 * plain C values (tern_opts); pipelines get them as a plain Lua table.
 *
 * config.lua (--config FILE, at most 1 MiB, a regular file) runs in a Lua
 * state of its own: the base, string, table, math and utf8 libraries and
 * os.getenv/time/clock/date only (no io, no load/dofile, no os.exit, no
 * __gc finalizers, which Lua runs with the instruction hook off), 16
 * MiB of memory and 100 million VM instructions at most. It returns a table
 * of known keys with values of the key's type; it is read raw (no
 * metamethod runs), and the state is closed before any model loads. */
#ifndef TERN_OPTIONS_H
#define TERN_OPTIONS_H

#include <lua.h>
#include <stddef.h>

enum { OPT_STR, OPT_INT, OPT_NUM, OPT_BOOL, OPT_LIST, OPT_BACKENDS };

#define OPT_CONFIG_MAX ((size_t)1 << 20)      /* bytes of config.lua */
#define OPT_CONFIG_MEM ((size_t)16 << 20)     /* memory of its Lua state */
#define OPT_CONFIG_STEPS 100000000LL          /* VM instructions it may run */

typedef struct tern_opts tern_opts;

/* The VM instructions config.lua may run (fuzz targets lower it). */
extern long long opt_config_steps;

/* Parses argv (argv[0] is the subcommand): --config FILE first, then the
 * flags over it. Flags whose key is not in `allowed` (a NULL-terminated
 * list of keys) are unknown options; config keys outside it are ignored
 * (one file may serve several commands), unknown keys are errors. Returns
 * 0 with *out set, or 1 after printing a one-line error (*out NULL). */
int options_parse(const char *cmd, int argc, char **argv, const char *const *allowed, tern_opts **out);
/* The same with the config text given (name used in messages; text NULL:
 * no config unless argv has --config). The fuzz target's entry. */
int options_parse_text(const char *cmd, int argc, char **argv, const char *const *allowed,
                       const char *config_name, const char *text, size_t len, tern_opts **out);
void options_free(tern_opts *o); /* accepts NULL */
/* 1 when arg is a flag followed by a value (bench's renaming skips values). */
int options_takes_value(const char *arg);
/* Prints the flags in `allowed` as a help text. */
void options_help(const char *cmd, const char *usage, const char *const *allowed);

/* Getters: the value, or def when the key was not set. */
int opt_has(const tern_opts *o, const char *key);
const char *opt_str(const tern_opts *o, const char *key, const char *def);
long long opt_int(const tern_opts *o, const char *key, long long def);
/* An integer key's values: a list where the command allows "key[]" and the
 * flag gave "a,b,c", else the one value; 0 when unset. */
int opt_int_list(const tern_opts *o, const char *key, long long *out, int max);
double opt_num(const tern_opts *o, const char *key, double def);
int opt_bool(const tern_opts *o, const char *key);
/* OPT_BACKENDS keys: the list joined with commas; "auto" when unset. */
const char *opt_backends(const tern_opts *o, const char *key);
/* Setters for values a command decides (bench's context size). 0 or 1 when
 * out of memory. */
int opt_set_int(tern_opts *o, const char *key, long long v);
int opt_set_str(tern_opts *o, const char *key, const char *v);
int opt_set_bool(tern_opts *o, const char *key, int v);

/* Checks every value set against its key's type and range (the fuzz
 * target's oracle): NULL when all hold, else the first key that does not. */
const char *options_check(const tern_opts *o);

/* The model to use: opts.model, else the default model shipped with tern
 * (tern_install_default_model); NULL when neither. */
const char *opt_model_path(const tern_opts *o);

/* Pushes the options as a plain table: strings, integers, numbers,
 * booleans, lists of strings. It allocates, so call it in protected mode
 * (options_push_protected does). */
void options_push(lua_State *L, const tern_opts *o);
/* Pushes that table from unprotected code: 0, or 1 (nothing pushed) when
 * Lua ran out of memory. */
int options_push_protected(lua_State *L, const tern_opts *o);

#endif
