/* cli.h - what the tern command's subcommands share: their table entry
 * signature and small argument helpers. */
#ifndef TERN_CLI_H
#define TERN_CLI_H

#include <stdio.h>

#include "tern/tern.h"

/* A subcommand: argv[0] is the subcommand name. Returns the exit code. */
typedef int (*tern_cmd_fn)(int argc, char **argv);

typedef struct tern_cmd {
    const char *name;
    tern_cmd_fn fn;
    const char *summary;
} tern_cmd;

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_synth(int argc, char **argv);
/* `tern info -m FILE`: describes a model from its header (info_model.c). */
int info_model(const char *path);
/* `tern info -m FILE --backend LIST`: where its graphs run (info_placement.c). */
int info_placement(const char *path, const char *backend);
int cmd_tokenize(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Prints "tern <cmd>: <message>" as one line on stderr (control characters
 * from the input become spaces) and returns 1 (tools/options.c). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* When set, cli_fail hands it the line instead of printing (fuzz targets). */
extern void (*cli_error_hook)(const char *line);
/* Parses an integer/float option value in [lo, hi] (64-bit; a float must be
 * finite) or fails with a message naming opt and the range. */
int cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
            long long *out);
int cli_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out);

#endif
