/* cmd_info.c - `tern info`: version, CPU features, every plugin found with
 * its probe and score, and each backend's op coverage. */
#include <string.h>

#include "cli.h"

static void print_plugins(const tern_registry *reg)
{
    printf("backends:\n");
    for (int i = 0; i < tern_registry_count(reg); i++) {
        const tern_plugin_info *p = tern_registry_get(reg, i);
        if (!p->loaded) {
            printf("  %-8s not loadable: %s\n", p->name, p->error);
            continue;
        }
        printf("  %-8s %s, score %d: %s\n           %s\n", p->name,
               p->probe.runnable ? "runnable" : "cannot run", p->probe.score, p->probe.desc,
               p->path);
    }
}

static void print_coverage(const tern_registry *reg)
{
    printf("op coverage (+ = native, . = runs on scalar):\n  %-16s", "op");
    for (int i = 0; i < tern_registry_count(reg); i++)
        if (tern_registry_get(reg, i)->loaded) printf(" %-8s", tern_registry_get(reg, i)->name);
    printf("\n");
    for (int op = 0; op < TERN_OP_COUNT; op++) {
        printf("  %-16s", tern_op_name(op));
        for (int i = 0; i < tern_registry_count(reg); i++) {
            const tern_plugin_info *p = tern_registry_get(reg, i);
            if (!p->loaded) continue;
            int have = (uint32_t)op < p->api->n_ops && p->api->ops[op];
            printf(" %-8s", have ? "+" : ".");
        }
        printf("\n");
    }
}

int cmd_info(int argc, char **argv)
{
    const char *model = NULL, *backend = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: tern info [-m MODEL.gguf [--backend LIST]]\n"
                   "  with --backend: where each node of the model's graphs runs on that list\n");
            return 0;
        }
        int is_model = !strcmp(argv[i], "-m") || !strcmp(argv[i], "--model");
        if (!is_model && strcmp(argv[i], "--backend")) return cli_fail("info", "unknown option '%s'", argv[i]);
        if (i + 1 >= argc) return cli_fail("info", "%s needs a value", argv[i]);
        *(is_model ? &model : &backend) = argv[++i];
    }
    if (backend && !model) return cli_fail("info", "--backend needs a model (-m FILE)");
    if (model) return backend ? info_placement(model, backend) : info_model(model);
    char feats[512];
    tern_cpu_features_string(tern_cpu_features(), feats, sizeof feats);
    printf("tern %s\ncpu features: %s\n", TERN_VERSION, feats);
    tern_registry *reg;
    tern_error err;
    if (tern_registry_scan(&reg, &err)) return cli_fail("info", "%s", err.msg);
    print_plugins(reg);
    print_coverage(reg);
    tern_registry_free(reg);
    return 0;
}
