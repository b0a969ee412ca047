/* tern.c - the tern command: a table of subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const tern_cmd commands[] = {
    {"run", cmd_run, "generate text from a prompt (the main job)"},
    {"chat", cmd_chat, "interactive multi-turn chat with the model's chat template"},
    {"eval", cmd_eval, "logits of every position as raw float32 (--logits OUT.f32)"},
    {"perplexity", cmd_perplexity, "perplexity of a text or token-id file"},
    {"bench", cmd_bench, "prompt and generation speed, llama-bench style (md or json)"},
    {"info", cmd_info, "version, CPU features, backends and their ops; -m FILE describes a model"},
    {"synth", cmd_synth, "write a random-weight model (bitnet-2b4t, llama-8b, tiny ... shapes)"},
    {"tune", cmd_tune, "generate, check and time ternary kernels for a model's shapes; keep the winners"},
    {"tokenize", cmd_tokenize, "text to token ids and pieces with a model's tokenizer (--bench: speed)"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tern %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
            long long *out)
{
    char *end;
    if (!val) return cli_fail(cmd, "%s needs a value", opt);
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi)
        return cli_fail(cmd, "%s: '%s' is not an integer in [%lld, %lld]", opt, val, lo, hi);
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *val, double *out)
{
    char *end;
    if (!val) return cli_fail(cmd, "%s needs a value", opt);
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end) return cli_fail(cmd, "%s: '%s' is not a number", opt, val);
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "tern %s - ternary (BitNet b1.58) language model runtime\n\nusage: tern COMMAND [options]\n\n",
            TERN_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'tern COMMAND --help' describes a command's options.\n");
}

/* `tern --version`: what was built and which tree it runs from, so a
 * mismatched library or plugin folder shows at a glance. */
static int version(void)
{
    char dirs[8192];
    const char *model = tern_install_default_model();
    tern_install_plugin_dirs(dirs, sizeof dirs);
    printf("tern %s\n", TERN_VERSION);
    printf("libtern %s in %s\n", tern_install_version(), *tern_install_libdir() ? tern_install_libdir() : "?");
    printf("backend ABI version %u\n", TERN_BACKEND_ABI_VERSION);
    printf("build: %s\n", tern_install_build());
    printf("compiler: %s\n", tern_install_compiler());
    printf("plugins: %s\n", dirs);
    printf("default model: %s\n", model ? model : "(none)");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) return version();
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tern: unknown command '%s' (try 'tern --help')\n", argv[1]);
    return 1;
}
