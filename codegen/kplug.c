/* codegen/kplug.c - kernel plugins in a CPU backend (kplug.h). */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kplug.h"
#include "tern/tern.h"

static int variant_usable(const tk_set *set, const tern_kernel_variant *v)
{
    return v->op == TERN_OP_MATMUL_TERNARY && v->act_type == TERN_TYPE_Q8_TOK &&
           !(v->cpu_features & ~set->host->cpu_features) && v->layout >= 1 && v->layout < TERN_KLAYOUT_COUNT &&
           v->name && v->applicable && v->packed_size && v->repack && v->scratch_size && v->kernel;
}

static const tern_kernel_variant *variant_at(const tern_kernels_table *t, uint32_t i)
{
    return (const tern_kernel_variant *)((const char *)t->variants + (size_t)i * t->variant_size);
}

/* Loads one kernel plugin; a bad one is skipped with a one-line reason. */
static int load_one(tk_set *set, const char *path, int from_cache)
{
    if (set->n_plug >= TK_MAX_PLUGINS) return -1;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        set->host->log(TERN_LOG_WARN, "%s: skipping kernel plugin %s: %s", set->who, base, dlerror());
        return -1;
    }
    tern_kernels_entry_fn entry = (tern_kernels_entry_fn)dlsym(dl, TERN_KERNELS_ENTRY_SYMBOL);
    const tern_kernels_table *t = entry ? entry() : NULL;
    const char *why = !entry ? "no " TERN_KERNELS_ENTRY_SYMBOL " symbol" : !t ? "its entry returned NULL" : NULL;
    char msg[160];
    if (!why && t->abi_version != TERN_KERNELS_ABI_VERSION) {
        snprintf(msg, sizeof msg, "kernel ABI %u, this tern reads %u", t->abi_version, TERN_KERNELS_ABI_VERSION);
        why = msg;
    } else if (!why && (t->struct_size < sizeof *t || t->variant_size < sizeof(tern_kernel_variant) ||
                        t->choice_size < sizeof(tern_kernel_choice) || !t->target || !t->compiler ||
                        (t->n_variants && !t->variants) || (t->n_choices && !t->choices))) {
        why = "malformed table";
    }
    int usable = 0;
    for (uint32_t i = 0; !why && i < t->n_variants; i++) usable += variant_usable(set, variant_at(t, i));
    if (!why && !usable) {
        /* expected on a CPU the plugin was not built for: not a warning */
        set->host->log(TERN_LOG_INFO, "%s: skipping kernel plugin %s: this CPU lacks the features its variants need", set->who, base);
        dlclose(dl);
        return -1;
    }
    if (why) {
        set->host->log(TERN_LOG_WARN, "%s: skipping kernel plugin %s: %s", set->who, base, why);
        dlclose(dl);
        return -1;
    }
    tk_plugin *k = &set->plug[set->n_plug++];
    k->dl = dl;
    k->tab = t;
    k->from_cache = from_cache;
    snprintf(k->file, sizeof k->file, "%s", base);
    return set->n_plug - 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every tern-kernels-*.so in dir, in name order. */
static void load_dir(tk_set *set, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char *names[TK_MAX_PLUGINS];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < TK_MAX_PLUGINS;) {
        size_t len = strlen(e->d_name);
        if (len > 16 && !strncmp(e->d_name, "tern-kernels-", 13) && !strcmp(e->d_name + len - 3, ".so") &&
            (names[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        load_one(set, path, 0);
        free(names[i]);
    }
}

const tern_kernel_variant *tk_set_find(const tk_set *set, const char *name, int prefer_cache)
{
    const tern_kernel_variant *found = NULL;
    for (int pass = 0; pass < 2 && !found; pass++)
        for (int p = 0; p < set->n_plug && !found; p++) {
            if (prefer_cache && (pass == 0) != set->plug[p].from_cache) continue;
            if (!prefer_cache && pass) break;
            const tern_kernels_table *t = set->plug[p].tab;
            for (uint32_t i = 0; i < t->n_variants; i++) {
                const tern_kernel_variant *v = variant_at(t, i);
                if (variant_usable(set, v) && !strcmp(v->name, name)) {
                    found = v;
                    break;
                }
            }
        }
    return found;
}

/* The wisdom record in the cache folder, all or nothing. */
static void load_wisdom(tk_set *set)
{
    const char *dir = set->host->cache_dir;
    if (!dir || !*dir) return;
    char path[4096], err[300];
    snprintf(path, sizeof path, "%s/wisdom.lua", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return; /* not tuned: nothing to say */
    fclose(f);
    tw_record *r = set->host->alloc(sizeof *r, 64);
    if (!r) return;
    const char *why = NULL;
    if (tw_read(path, r, err, sizeof err)) {
        why = err;
    } else if (tw_check(r, TERN_VERSION, TERN_KERNELS_ABI_VERSION, set->host->cpu_features, err, sizeof err)) {
        why = err;
    } else {
        char so[4200];
        snprintf(so, sizeof so, "%s/%s", dir, r->plugin);
        int k = load_one(set, so, 1);
        if (k < 0) {
            snprintf(err, sizeof err, "its plugin %s did not load", r->plugin);
            why = err;
        } else if (strcmp(set->plug[k].tab->compiler, r->compiler)) {
            snprintf(err, sizeof err, "plugin built by compiler '%s', record says '%s'", set->plug[k].tab->compiler, r->compiler);
            why = err;
        }
        for (int i = 0; !why && i < r->n_shapes; i++) {
            const tw_shape *s = &r->shapes[i];
            if (!strcmp(s->gemv, "builtin") && !strcmp(s->gemm, "builtin")) continue;
            const tern_kernel_variant *gv = tk_set_find(set, s->gemv, 1), *gm = tk_set_find(set, s->gemm, 1);
            if (!gv || !gm) {
                snprintf(err, sizeof err, "shape %lldx%lld names variant '%s', which no loaded plugin has",
                         (long long)s->K, (long long)s->N, !gv ? s->gemv : s->gemm);
                why = err;
            } else if (gv->layout != gm->layout) {
                snprintf(err, sizeof err, "shape %lldx%lld: '%s' and '%s' pack different layouts", (long long)s->K,
                         (long long)s->N, s->gemv, s->gemm);
                why = err;
            }
        }
    }
    if (why) {
        set->host->log(TERN_LOG_WARN, "%s: ignoring tuning record %s: %s; built-in choices run", set->who, path, why);
        set->host->free(r);
        return;
    }
    set->wisdom = r;
}

void tk_set_load(tk_set *set, const void *self, int use_wisdom)
{
    Dl_info info;
    if (dladdr(self, &info) && info.dli_fname) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            load_dir(set, dir);
        }
    }
    /* `tern tune` points here at the plugin it is timing */
    const char *extra = getenv("TERN_KERNELS_PLUGIN");
    if (extra && *extra) load_one(set, extra, 0);
    if (use_wisdom) load_wisdom(set);
}

void tk_set_unload(tk_set *set)
{
    for (int i = 0; i < set->n_plug; i++) dlclose(set->plug[i].dl);
    set->n_plug = 0;
    set->host->free(set->wisdom);
    set->wisdom = NULL;
}

/* The CPU model, for records' cpu_match. */
static int cpu_matches(const tk_set *set, const char *match)
{
    if (!match || !*match) return 0;
    char cpu[128], feat[32];
    tw_cpu_signature(set->host->cpu_features, cpu, sizeof cpu, feat, sizeof feat);
    return strstr(cpu, match) != NULL;
}

static int popcount64(uint64_t v)
{
    int n = 0;
    for (; v; v &= v - 1) n++;
    return n;
}

static void remember(tk_set *set, int64_t K, int64_t N, const tern_kernel_variant *gv,
                     const tern_kernel_variant *gm, const char *why)
{
    for (int i = 0; i < set->n_chosen; i++)
        if (set->chosen[i].K == K && set->chosen[i].N == N) return;
    if (set->n_chosen >= TK_MAX_SHAPES) return;
    tk_choice *ch = &set->chosen[set->n_chosen++];
    ch->K = K, ch->N = N, ch->gemv = gv, ch->gemm = gm;
    snprintf(ch->why, sizeof ch->why, "%s", why);
}

int tk_set_choose(tk_set *set, int64_t K, int64_t N, const tern_kernel_variant **gv,
                       const tern_kernel_variant **gm)
{
    *gv = *gm = NULL;
    int nth = set->n_threads;
    if (set->forced) {
        if (!set->forced->applicable(K, N, nth)) return 0;
        *gv = *gm = set->forced;
        remember(set, K, N, *gv, *gm, "forced by --kernel");
        return 1;
    }
    if (set->family_forced) {
        remember(set, K, N, NULL, NULL, "forced family");
        return 0;
    }
    if (set->wisdom)
        for (int i = 0; i < set->wisdom->n_shapes; i++) {
            const tw_shape *s = &set->wisdom->shapes[i];
            if (s->K != K || s->N != N) continue;
            if (!strcmp(s->gemv, "builtin") && !strcmp(s->gemm, "builtin")) {
                remember(set, K, N, NULL, NULL, "wisdom: built-in won");
                return 0;
            }
            const tern_kernel_variant *a = tk_set_find(set, s->gemv, 1), *b = tk_set_find(set, s->gemm, 1);
            if (a && b && a->applicable(K, N, nth) && b->applicable(K, N, nth)) {
                *gv = a, *gm = b;
                char why[96];
                snprintf(why, sizeof why, "wisdom, tuned at %d thread%s", set->wisdom->threads,
                         set->wisdom->threads == 1 ? "" : "s");
                remember(set, K, N, a, b, why);
                return 1;
            }
        }
    /* plugin records: the most specific plugin choosing for this shape */
    int best = -1, best_score = -1, builtin = 0;
    for (int p = 0; p < set->n_plug; p++) {
        const tern_kernels_table *t = set->plug[p].tab;
        if (set->plug[p].from_cache) continue;
        for (uint32_t i = 0; i < t->n_choices; i++) {
            const tern_kernel_choice *ch = (const tern_kernel_choice *)((const char *)t->choices + (size_t)i * t->choice_size);
            if (ch->K != K || ch->N != N || !ch->gemv || !ch->gemm) continue;
            int is_builtin = !strcmp(ch->gemv, "builtin") || !strcmp(ch->gemm, "builtin");
            const tern_kernel_variant *a = is_builtin ? NULL : tk_set_find(set, ch->gemv, 0);
            const tern_kernel_variant *b = is_builtin ? NULL : tk_set_find(set, ch->gemm, 0);
            if (!is_builtin && (!a || !b || a->layout != b->layout || !a->applicable(K, N, nth) || !b->applicable(K, N, nth)))
                continue;
            uint64_t f = 0;
            for (uint32_t j = 0; j < t->n_variants; j++) f |= variant_at(t, j)->cpu_features;
            int score = popcount64(f) + 100 * cpu_matches(set, t->cpu_match);
            if (score > best_score) {
                best_score = score, best = p, builtin = is_builtin;
                *gv = a, *gm = b;
            }
        }
    }
    if (best >= 0) {
        char why[96];
        snprintf(why, sizeof why, "record %s%s", set->plug[best].tab->target, builtin ? ": built-in" : "");
        remember(set, K, N, *gv, *gm, why);
        return !builtin;
    }
    remember(set, K, N, NULL, NULL, "built-in default");
    return 0;
}

int tk_set_describe(const tk_set *s, char *buf, size_t n, int k,
                    const char *(*builtin)(const void *ctx, int64_t K, int64_t N), const void *ctx)
{
    for (int i = 0; i < s->n_chosen && k > 0 && (size_t)k < n; i++) {
        const tk_choice *ch = &s->chosen[i];
        char what[200];
        if (ch->gemv)
            snprintf(what, sizeof what, "%s / %s", ch->gemv->name, ch->gemm->name);
        else
            snprintf(what, sizeof what, "built-in %s", builtin(ctx, ch->K, ch->N));
        k += snprintf(buf + k, n - (size_t)k, "%s%lldx%lld: %s (%s)", i ? "; " : "; kernels K x N: ",
                      (long long)ch->K, (long long)ch->N, what, ch->why);
    }
    return k;
}

void tk_matmul(const tern_kernel_variant *gemv, const tern_kernel_variant *gemm, int64_t K, int64_t N,
               const tern_node *node, int ith, int nth, void *scratch)
{
    const tern_tensor *x = node->src[0];
    int64_t n_tok = tern_tensor_nrows(x);
    tern_kernel_call call = {sizeof call, x->data, x->nb[1], node->src[1]->data, node->dst->data,
                             node->dst->nb[1], K, N, n_tok, node->src[1]->scale};
    (n_tok == 1 ? gemv : gemm)->kernel(&call, ith, nth, scratch);
}

size_t tk_matmul_scratch(const tern_kernel_variant *gemv, const tern_kernel_variant *gemm, int64_t K, int64_t n_tok)
{
    size_t a = gemv->scratch_size(K, n_tok), b = gemm->scratch_size(K, n_tok);
    return a > b ? a : b;
}
