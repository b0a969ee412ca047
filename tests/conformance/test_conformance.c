/* test_conformance.c - the conformance suite: every op of every runnable
 * backend against scalar over the case table (cases.c), scalar against the
 * ops' definitions, and hand-picked values where the answer is known.
 *
 * Prints a table op x backend: "pass" with the largest error seen, "FAIL"
 * with the count of bad cases, "fallback" when the backend runs none of the
 * op's cases (the executor would run them on scalar). "definition" is
 * scalar checked against the oracles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "conformance/conformance.h"

#define MAX_BACKENDS 16
#define NTH_MAX 3

typedef struct cell {
    int cases, pass, fail, fallback;
    double max_err;
    char first_fail[300];
} cell;

typedef struct conf_backends {
    tern_registry *reg;
    tern_backend *be[MAX_BACKENDS];
    char label[MAX_BACKENDS][32]; /* the plugin's name, or name:kernel */
    int n, ref; /* ref: index of scalar */
} conf_backends;

/* One more instance of plugin p with options.kernel = kernel, labelled
 * name:kernel; a kernel this CPU cannot run is skipped visibly. */
static void open_variant(conf_backends *b, const tern_plugin_info *p, const char *kernel)
{
    tern_backend_options opt = tern_backend_default_options();
    opt.n_threads = NTH_MAX;
    opt.kernel = kernel;
    tern_error err;
    tern_status st = tern_backend_create(p, &opt, NULL, &b->be[b->n], &err);
    if (st == TERN_ECANNOTRUN) {
        printf("conformance: skipping %s:%s: %s\n", p->name, kernel, err.msg);
        return;
    }
    ck_assert_msg(st == TERN_OK, "backend %s:%s: %s", p->name, kernel, err.msg);
    snprintf(b->label[b->n], sizeof b->label[b->n], "%s:%s", p->name, kernel);
    b->n++;
}

/* $TERN_CONFORMANCE_KERNELS: space-separated name:kernel items, each run as
 * one more column (arm:lut-neon runs the arm plugin with kernel lut-neon),
 * so forced ISA paths meet the whole case table too. */
static void open_variants(conf_backends *b)
{
    const char *env = getenv("TERN_CONFORMANCE_KERNELS");
    char list[512], *save = NULL;
    snprintf(list, sizeof list, "%s", env ? env : "");
    for (char *item = strtok_r(list, " ", &save); item; item = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(item, ':');
        ck_assert_msg(colon != NULL, "TERN_CONFORMANCE_KERNELS: '%s' is not name:kernel", item);
        *colon = 0;
        for (int i = 0; i < tern_registry_count(b->reg) && b->n < MAX_BACKENDS; i++) {
            const tern_plugin_info *p = tern_registry_get(b->reg, i);
            if (p->loaded && p->probe.runnable && !strcmp(p->name, item)) open_variant(b, p, colon + 1);
        }
    }
}

/* Every runnable plugin the registry finds and the variants named in
 * $TERN_CONFORMANCE_KERNELS (extra == NULL), or scalar and the plugin file
 * extra only. The extra file is loaded before any backend
 * is created: loading grows the registry and moves its entries. */
static void open_backends(conf_backends *b, const char *extra)
{
    tern_error err;
    memset(b, 0, sizeof *b);
    b->ref = -1;
    ck_assert_msg(tern_registry_scan(&b->reg, &err) == TERN_OK, "%s", err.msg);
    const tern_plugin_info *xp = NULL;
    if (extra) ck_assert_msg(tern_plugin_load(b->reg, extra, &xp, &err) == TERN_OK, "%s", err.msg);
    for (int i = 0; i < tern_registry_count(b->reg) && b->n < MAX_BACKENDS; i++) {
        const tern_plugin_info *p = tern_registry_get(b->reg, i);
        if (!p->loaded || !p->probe.runnable) { /* visible, not silent */
            printf("conformance: skipping %s: %s\n", p->name, p->loaded ? p->probe.desc : p->error);
            continue;
        }
        if (extra && strcmp(p->name, "scalar") != 0 && strcmp(p->name, xp->name) != 0) continue;
        tern_backend_options opt = tern_backend_default_options();
        opt.n_threads = NTH_MAX;
        tern_status st = tern_backend_create(p, &opt, NULL, &b->be[b->n], &err);
        ck_assert_msg(st == TERN_OK, "backend %s: %s", p->name, err.msg);
        if (strcmp(p->name, "scalar") == 0) b->ref = b->n;
        snprintf(b->label[b->n], sizeof b->label[b->n], "%s", p->name);
        b->n++;
    }
    if (!extra) open_variants(b);
    ck_assert_msg(b->ref >= 0, "the scalar backend was not found (TERN_BUILD=%s)", tu_build_dir());
}

static void close_backends(conf_backends *b)
{
    for (int i = 0; i < b->n; i++) tern_backend_free(b->be[i]);
    tern_registry_free(b->reg);
}

static void *zalloc(size_t n)
{
    void *p = calloc(1, n + 64);
    ck_assert_ptr_nonnull(p);
    return p;
}

static void note(cell *cl, const conf_case *c, int nth, const char *what)
{
    cl->fail++;
    if (!cl->first_fail[0])
        snprintf(cl->first_fail, sizeof cl->first_fail, "[%s] nth=%d: %s", c->label, nth, what);
}

/* Compares and records; 1 when within tolerance. */
static int score(cell *cl, const conf_case *c, int nth, conf_cmp cmp, double tol,
                 const uint8_t *got, const uint8_t *want)
{
    conf_score sc = conf_compare(c, cmp, tol, got, want);
    if (sc.max_err > cl->max_err || isnan(sc.max_err)) cl->max_err = sc.max_err;
    if (!sc.bad) return 1;
    char msg[160];
    snprintf(msg, sizeof msg, "%ld %s differ, first at %ld, max error %.3g (tol %.3g)", sc.bad,
             cmp == CONF_EXACT ? "bytes" : "outputs", sc.first_bad, sc.max_err, tol);
    note(cl, c, nth, msg);
    return 0;
}

/* One case: scalar at nth=1 is the reference; it is checked against the
 * oracle, then every backend at nth = 1..3 is checked against it. */
static void run_case(conf_backends *b, const conf_op *op, conf_case *c, cell *row)
{
    uint8_t *ref = zalloc(c->dst_bytes), *out = zalloc(c->dst_bytes);
    char why[300];
    op->oracle(c);
    row[0].cases++;
    conf_run_status rs = conf_run(b->be[b->ref], c, 1, ref, why, sizeof why);
    if (rs != CONF_RUN_OK) {
        note(&row[0], c, 1, rs == CONF_RUN_FALLBACK ? "scalar refused the node" : why);
        goto done;
    }
    conf_cmp cmp = c->exact ? CONF_EXACT : op->cmp;
    if (score(&row[0], c, 1, cmp, op->oracle_tol, ref, c->expect)) row[0].pass++;
    for (int i = 0; i < b->n; i++) {
        cell *cl = &row[1 + i];
        cl->cases++;
        for (int nth = 1; nth <= NTH_MAX; nth++) {
            rs = conf_run(b->be[i], c, nth, out, why, sizeof why);
            if (rs == CONF_RUN_FALLBACK) {
                cl->fallback++;
                break;
            }
            if (rs == CONF_RUN_ERROR) {
                note(cl, c, nth, why);
                break;
            }
            if (!score(cl, c, nth, cmp, op->tol, out, ref)) break;
            if (nth == NTH_MAX) cl->pass++;
        }
    }
done:
    free(ref);
    free(out);
}

static void cell_text(const cell *cl, char *buf, size_t n)
{
    if (cl->fail)
        snprintf(buf, n, "FAIL %d/%d", cl->fail, cl->cases);
    else if (cl->fallback == cl->cases)
        snprintf(buf, n, "fallback");
    else {
        char err[24], fb[24] = "";
        snprintf(err, sizeof err, cl->max_err == 0.0 ? "exact" : "%.1e", cl->max_err);
        if (cl->fallback) snprintf(fb, sizeof fb, " (%d fb)", cl->fallback);
        snprintf(buf, n, "pass %s%s", err, fb);
    }
}

typedef cell row_cells[1 + MAX_BACKENDS];

/* Runs the whole table over b, prints it, returns the failing pairs. */
static int conformance_table(conf_backends *b, row_cells *cells)
{
    unsigned long long rng = 0x7e57c0de;
    int n_cases = 0, n_fail = 0;
    for (int o = 0; o < conf_n_ops; o++) {
        conf_list l = {0};
        conf_ops[o].gen(&l, &rng);
        for (int i = 0; i < l.n; i++) run_case(b, &conf_ops[o], &l.v[i], cells[o]);
        n_cases += l.n;
        conf_list_free(&l);
    }
    printf("\nconformance: %d cases, nth 1..%d, every backend against scalar\n", n_cases, NTH_MAX);
    printf("%-15s %6s  %-20s", "op", "cases", "definition");
    for (int i = 0; i < b->n; i++) printf(" %-20s", b->label[i]);
    printf("\n");
    for (int o = 0; o < conf_n_ops; o++) {
        char txt[64];
        cell_text(&cells[o][0], txt, sizeof txt);
        printf("%-15s %6d  %-20s", tern_op_name(conf_ops[o].op), cells[o][0].cases, txt);
        for (int i = 0; i < b->n; i++) {
            cell_text(&cells[o][1 + i], txt, sizeof txt);
            printf(" %-20s", txt);
        }
        printf("\n");
    }
    for (int o = 0; o < conf_n_ops; o++)
        for (int i = 0; i <= b->n; i++)
            if (cells[o][i].fail) {
                n_fail++;
                printf("FAIL %s on %s: %s\n", tern_op_name(conf_ops[o].op),
                       i ? b->label[i - 1] : "definition", cells[o][i].first_fail);
            }
    fflush(stdout);
    return n_fail;
}

START_TEST(test_conformance_all)
{
    conf_backends b;
    open_backends(&b, NULL);
    row_cells *cells = zalloc(sizeof(*cells) * (size_t)conf_n_ops);
    int n_fail = conformance_table(&b, cells);
    free(cells);
    close_backends(&b);
    ck_assert_msg(n_fail == 0, "%d op/backend pairs failed conformance (table above)", n_fail);
}
END_TEST

/* The device path (buffer_alloc/upload/download/sync, repack onto the
 * device, nth = 1) against devsim, the simulated device plugin built with
 * the tests (unreadable buffers, queued ops, scalar's kernels): every op
 * runs there and matches scalar bit for bit. */
START_TEST(test_conformance_device_path)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/plugins/devsim/tern-backend-devsim.so", tu_build_dir());
    conf_backends b;
    open_backends(&b, path);
    ck_assert_int_eq(b.n, 2);
    int dev = b.ref == 0 ? 1 : 0;
    ck_assert(!(b.be[dev]->api->caps & TERN_BACKEND_CAP_HOST_MEMORY));
    row_cells *cells = zalloc(sizeof(*cells) * (size_t)conf_n_ops);
    int n_fail = conformance_table(&b, cells);
    for (int o = 0; o < conf_n_ops; o++) {
        const cell *cl = &cells[o][1 + dev];
        ck_assert_msg(cl->fallback == 0 && cl->pass == cl->cases, "devsim: %s passed %d of %d cases, "
                      "%d fell back", tern_op_name(conf_ops[o].op), cl->pass, cl->cases, cl->fallback);
    }
    free(cells);
    close_backends(&b);
    ck_assert_msg(n_fail == 0, "%d op/backend pairs failed conformance (table above)", n_fail);
}
END_TEST

TCase *conformance_values_tcase(void); /* values.c */

Suite *conformance_suite(void)
{
    Suite *s = suite_create("conformance");
    TCase *tc = tcase_create("backends");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_conformance_all);
    suite_add_tcase(s, tc);
    /* a case of its own: the qemu runs (tests/run_qemu.sh) take "backends"
     * alone, and the simulated device has nothing ISA-specific to show */
    TCase *td = tcase_create("device");
    tcase_set_timeout(td, 900);
    tcase_add_test(td, test_conformance_device_path);
    suite_add_tcase(s, td);
    suite_add_tcase(s, conformance_values_tcase());
    return s;
}
