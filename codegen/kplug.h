/* codegen/kplug.h - the kernel plugins a CPU backend runs (tern/kernels.h):
 * loading tern-kernels-*.so from beside the backend and the tuned one from
 * the cache folder, reading the wisdom record (wisdom.h), and choosing per
 * weight shape: the wisdom's variants, else the most specific plugin
 * record's, else the backend's built-in kernels. Compiled into the x86 and
 * arm backends (plugins cannot link libtern), not part of libtern.
 * Baseline code: only a variant's own code uses its ISA, and a variant is
 * usable only when host->cpu_features has every bit it needs. */
#ifndef TERN_KPLUG_H
#define TERN_KPLUG_H

#include <stdint.h>

#include "tern/kernels.h"
#include "tern/plugin.h"
#include "wisdom.h"

#define TK_MAX_PLUGINS 8
#define TK_MAX_SHAPES 32

/* A loaded kernel plugin. */
typedef struct tk_plugin {
    void *dl;
    const tern_kernels_table *tab;
    int from_cache; /* the tuned plugin the wisdom names */
    char file[128];
} tk_plugin;

/* What runs for one weight shape, and why (for describe). */
typedef struct tk_choice {
    int64_t K, N;
    const tern_kernel_variant *gemv, *gemm; /* NULL: the backend's built-in kernels */
    char why[96];
} tk_choice;

typedef struct tk_set {
    const tern_host_api *host;
    const char *who;    /* the backend's name, for its log lines */
    int n_threads;      /* variants must apply at this count */
    int family_forced;  /* options asked for a built-in family: no plugin choices */
    const tern_kernel_variant *forced; /* options named a variant: it runs everywhere it applies */
    tk_plugin plug[TK_MAX_PLUGINS];
    int n_plug;
    tw_record *wisdom;  /* the accepted tuning record, or NULL */
    tk_choice chosen[TK_MAX_SHAPES];
    int n_chosen;
} tk_set;

/* Loads the plugins beside the shared object that holds self (a symbol of
 * the backend), $TERN_KERNELS_PLUGIN, and with use_wisdom the tuning
 * record; set host, who and n_threads first. A bad plugin or record is
 * skipped with a one-line warning. */
void tk_set_load(tk_set *s, const void *self, int use_wisdom);
void tk_set_unload(tk_set *s);
/* The usable variant of that name (from the tuned plugin first when
 * prefer_cache), or NULL. */
const tern_kernel_variant *tk_set_find(const tk_set *s, const char *name, int prefer_cache);
/* 1 and the variants (one layout) for a [K, N] weight, or 0: the backend's
 * built-in kernels run. Remembers the choice and why. */
int tk_set_choose(tk_set *s, int64_t K, int64_t N, const tern_kernel_variant **gemv,
                  const tern_kernel_variant **gemm);
/* Thread ith of nth of a MATMUL_TERNARY node whose weight [K, N] was
 * packed for gemv/gemm: gemv runs one token, gemm a batch. */
void tk_matmul(const tern_kernel_variant *gemv, const tern_kernel_variant *gemm, int64_t K, int64_t N,
               const tern_node *node, int ith, int nth, void *scratch);
/* The scratch one thread of tk_matmul needs for n_tok tokens. */
size_t tk_matmul_scratch(const tern_kernel_variant *gemv, const tern_kernel_variant *gemm, int64_t K, int64_t n_tok);
/* Appends "; kernels K x N: 2560x640: gemv / gemm (why); ..." at buf + k
 * (n bytes in all), naming a shape the backend's built-in kernels run by
 * builtin(ctx, K, N). Returns the new length, as snprintf counts. */
int tk_set_describe(const tk_set *s, char *buf, size_t n, int k,
                    const char *(*builtin)(const void *ctx, int64_t K, int64_t N), const void *ctx);

#endif
