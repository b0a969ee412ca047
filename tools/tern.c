/* tern.c - the tern command: a table of subcommands. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with parallel slots batched together"},
    {"tokenize", cmd_tokenize, "text to token ids and pieces with a model's tokenizer (--bench: speed)"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

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

/* A command's output that did not reach standard output (a full disk,
 * /dev/full, a closed descriptor) is an error whatever the command said. */
static int finish(const char *cmd, int rc)
{
    errno = 0;
    int bad = fflush(stdout) != 0, e = errno;
    if (rc || (!bad && !ferror(stdout))) return rc; /* a failed command said why already */
    fprintf(stderr, "tern%s%s: writing standard output failed%s%s\n", cmd ? " " : "", cmd ? cmd : "",
            bad ? ": " : "", bad ? strerror(e) : "");
    return 1;
}

/* A standard descriptor the caller closed would be reused by the next
 * open(), and a model or a logits file would then receive what tern
 * prints. Reopen them: input as empty, output as a full device (so writing
 * to a closed standard output fails, as it should), errors as nothing. */
static void reopen_closed_std(void)
{
    static const char *const dev[3] = {"/dev/null", "/dev/full", "/dev/null"};
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        int f = open(dev[fd], fd ? O_WRONLY : O_RDONLY);
        if (f >= 0 && f != fd) {
            dup2(f, fd);
            close(f);
        }
    }
}

int main(int argc, char **argv)
{
    reopen_closed_std();
    if (argc < 2) {
        usage(stderr);
        fprintf(stderr, "tern: no command given\n");
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return finish(NULL, 0);
    }
    if (strcmp(argv[1], "--version") == 0) return finish(NULL, version());
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return finish(commands[i].name, commands[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "tern: unknown command '%.64s' (try 'tern --help')\n", argv[1]);
    return 1;
}
