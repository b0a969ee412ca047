/* backend.c - the arm backend's entry table and everything else that faces
 * the plugin ABI but placement (repack.c): probe, instance (kernel
 * option), describe, the op table with its ISA dispatch, supports_op and
 * scratch sizes. Baseline AArch64 code: nothing here executes dotprod or SVE
 * instructions (the VL comes from tmm_sve.c, called only with SVE), so the
 * plugin loads and probes on any AArch64 CPU. Kernels live in the other
 * files (arm.h lists them). */
#include <stdio.h>
#include <string.h>

#include "arm.h"

int arm_sve_vector_bits(void); /* tmm_sve.c */

/* The best tier this CPU runs (0: not an AArch64 CPU with NEON). The SVE
 * tiers need no NEON dotprod (SVE has its own sdot), so an SVE CPU without
 * asimddp (A64FX) runs them too; the NEON sdot kernels (MAD on the dotprod
 * tier, Q8_0 on every tier) look at the dotprod bit itself. */
static int isa_of(uint64_t f)
{
    if (!(f & TERN_CPU_NEON)) return 0;
    if (f & TERN_CPU_SVE2) return ARM_ISA_SVE2;
    if (f & TERN_CPU_SVE) return ARM_ISA_SVE;
    return f & TERN_CPU_DOTPROD ? ARM_ISA_DOTPROD : ARM_ISA_NEON;
}

/* NEON sdot for the Q8_0 matmul: the CPU has it and the tier is not capped
 * to plain NEON. */
static int q8_sdot(uint64_t f, int isa) { return (f & TERN_CPU_DOTPROD) && isa >= ARM_ISA_DOTPROD; }

/* What a family runs on a tier ("sve sdot"); NULL when it cannot. */
static const char *family_kernel(int fam, int isa)
{
    const arm_tmm_variant *v = arm_tmm_pick(fam, isa);
    return v ? v->what : NULL;
}

static void arm_probe(const tern_host_api *host, tern_backend_probe *out)
{
    uint64_t f = host->cpu_features;
    int isa = isa_of(f);
    out->runnable = isa != 0;
    out->score = isa ? 5 * isa : 0;
    if (!isa) {
        snprintf(out->desc, sizeof out->desc, "cannot run: needs an AArch64 CPU (NEON)");
        return;
    }
    char vl[32] = "", mad[48] = "";
    if (isa >= ARM_ISA_SVE) snprintf(vl, sizeof vl, " (VL %d bits)", arm_sve_vector_bits());
    if (family_kernel(ARM_FAM_MAD, isa)) snprintf(mad, sizeof mad, "mad (%s), ", family_kernel(ARM_FAM_MAD, isa));
    snprintf(out->desc, sizeof out->desc,
             "found neon%s%s%s%s%s%s: tier %s; ternary %slut (%s); q8_0 %s; f32/f16/bf16 matmul, q8 head",
             f & TERN_CPU_DOTPROD ? " asimddp" : "", f & TERN_CPU_I8MM ? " i8mm" : "",
             f & TERN_CPU_FP16 ? " fp16" : "", f & TERN_CPU_SVE ? " sve" : "",
             f & TERN_CPU_SVE2 ? " sve2" : "", vl, arm_isa_names[isa], mad, family_kernel(ARM_FAM_LUT, isa),
             q8_sdot(f, isa) ? "sdot" : "smull");
}

/* options.kernel: FAMILY or FAMILY-TIER, FAMILY in auto|mad|lut, TIER in
 * neon|dotprod|sve|sve2 (caps every kernel at that tier, so tests reach the
 * NEON paths on an SVE CPU). 0 on success. */
static int parse_kernel(const char *s, int *fam, int *isa)
{
    *fam = ARM_FAM_AUTO, *isa = 0;
    if (!s || !*s) return 0;
    char buf[32];
    snprintf(buf, sizeof buf, "%s", s);
    char *dash = strchr(buf, '-');
    if (dash) {
        *dash = 0;
        for (int i = 1; i < ARM_ISA_COUNT; i++)
            if (!strcmp(dash + 1, arm_isa_names[i])) *isa = i;
        if (!*isa) return -1;
    }
    for (int f = 0; f < ARM_FAM_PLUGIN; f++)
        if (!strcmp(buf, arm_family_names[f])) {
            *fam = f;
            return 0;
        }
    return -1;
}

static tern_status arm_init(const tern_host_api *host, const tern_backend_options *opt, void **ctx,
                            char *err, size_t errlen)
{
    int cpu_isa = isa_of(host->cpu_features);
    if (!cpu_isa) {
        snprintf(err, errlen, "arm backend cannot run here: needs an AArch64 CPU (NEON)");
        return TERN_ECANNOTRUN;
    }
    /* an older runtime's options may end before a member: read what is there */
    const char *kernel = opt && TERN_STRUCT_HAS(opt, tern_backend_options, kernel) ? opt->kernel : NULL;
    int fam, isa;
    /* a kernel name that is no family may name a kernel plugin's variant */
    const char *variant = parse_kernel(kernel, &fam, &isa) ? kernel : NULL;
    if (variant) fam = ARM_FAM_AUTO, isa = 0;
    if (isa > cpu_isa) {
        snprintf(err, errlen, "arm: kernel '%s' needs tier %s; this CPU's tier is %s", kernel,
                 arm_isa_names[isa], arm_isa_names[cpu_isa]);
        return TERN_ECANNOTRUN;
    }
    if (isa == ARM_ISA_DOTPROD && !(host->cpu_features & TERN_CPU_DOTPROD)) {
        snprintf(err, errlen, "arm: kernel '%s' needs asimddp, which this CPU lacks", kernel);
        return TERN_ECANNOTRUN;
    }
    if (!isa) isa = cpu_isa;
    if (fam == ARM_FAM_MAD && !arm_tmm_pick(ARM_FAM_MAD, isa)) {
        if (strchr(kernel, '-')) {
            snprintf(err, errlen, "arm: kernel '%s': mad needs sdot (tier dotprod or above)", kernel);
            return TERN_EINVAL;
        }
        host->log(TERN_LOG_WARN, "arm: kernel 'mad' needs sdot (asimddp); using lut");
        fam = ARM_FAM_LUT;
    }
    int head_q8;
    tern_status st = tern_head_option("arm", opt, &head_q8, err, errlen);
    if (st) return st;
    arm_ctx *c = host->alloc(sizeof *c, 64);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return TERN_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->host = host;
    c->n_threads = opt && TERN_STRUCT_HAS(opt, tern_backend_options, n_threads) && opt->n_threads > 0
                       ? opt->n_threads : 1;
    c->isa = isa;
    c->cpu_isa = cpu_isa;
    c->q8_sdot = q8_sdot(host->cpu_features, isa);
    c->kernel = fam;
    c->head_q8 = head_q8;
    c->ks = (tk_set){.host = host, .who = "arm", .n_threads = c->n_threads, .family_forced = fam != ARM_FAM_AUTO};
    /* no wisdom while forcing a family or a variant */
    tk_set_load(&c->ks, &arm_api, fam == ARM_FAM_AUTO && !variant);
    if (variant && !(c->ks.forced = tk_set_find(&c->ks, variant, 0))) {
        tk_set_unload(&c->ks);
        host->free(c);
        snprintf(err, errlen, "arm: unknown kernel '%s' (auto, mad, lut, optionally -neon, -dotprod, -sve or -sve2 "
                 "to cap the tier: mad-dotprod, lut-neon, ...; or a variant of a tern-kernels-*.so this CPU runs)",
                 kernel);
        return TERN_EINVAL;
    }
    *ctx = c;
    return TERN_OK;
}

static void arm_free(void *ctx)
{
    if (!ctx) return;
    arm_ctx *c = ctx;
    tk_set_unload(&c->ks);
    c->host->free(c);
}

/* The built-in kernel a [K, N] weight gets. */
static const char *builtin_name(const void *ctx, int64_t K, int64_t N)
{
    const arm_ctx *c = ctx;
    return arm_tmm_pick(c->kernel == ARM_FAM_AUTO ? arm_auto_family(c->isa, K, N) : c->kernel, c->isa)->name;
}

static void arm_describe(void *ctx, char *buf, size_t n)
{
    arm_ctx *c = ctx;
    char fams[128] = "", vl[32] = "";
    size_t used = 0;
    for (int f = 1; f < ARM_FAM_COUNT; f++)
        if (c->n_family[f] && used < sizeof fams)
            used += (size_t)snprintf(fams + used, sizeof fams - used, "%s%s (%s) x%d", used ? ", " : "",
                                     arm_family_names[f],
                                     f == ARM_FAM_PLUGIN ? "kernel plugins" : family_kernel(f, c->isa), c->n_family[f]);
    if (c->isa >= ARM_ISA_SVE) snprintf(vl, sizeof vl, " VL %d", arm_sve_vector_bits());
    int k = snprintf(buf, n, "arm %s%s%s, kernel %s%s (%s%s), q8_0 %s, head %s", arm_isa_names[c->isa], vl,
                     c->isa < c->cpu_isa ? " (capped)" : "",
                     c->ks.forced ? c->ks.forced->name : arm_family_names[c->kernel],
                     c->kernel == ARM_FAM_AUTO && !c->ks.forced ? ": per shape" : "",
                     used ? "ternary: " : "no ternary weights yet", fams, c->q8_sdot ? "sdot" : "smull",
                     c->n_head_q8 ? "q8 (quantized to q8_0)" : c->head_q8 ? "q8 requested" : "as stored");
    /* per weight shape: what runs (gemv / gemm) and why */
    tk_set_describe(&c->ks, buf, n, k, builtin_name, c);
}

/* ---- the matmuls: split whole tiles (ternary: the variant the matrix was
 * packed for) or rows (float: the tier's kernel) ---- */

static void arm_matmul_ternary(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)ctx;
    const arm_tmat *m = node->src[1]->extra;
    if (m->gemv) {
        tk_matmul(m->gemv, m->gemm, m->K, m->N, node, ith, nth, scratch);
        return;
    }
    int64_t lo, hi;
    arm_split(m->Np / m->v->rows, ith, nth, &lo, &hi);
    if (lo < hi) m->v->run(node, lo, hi, scratch);
}

static void arm_matmul(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    arm_ctx *c = ctx;
    int64_t lo, hi;
    arm_split(node->dst->ne[0], ith, nth, &lo, &hi);
    if (node->src[1]->type != TERN_TYPE_Q8_0) {
        if (lo < hi) arm_fmm_neon(node, lo, hi);
        return;
    }
    if (lo >= hi) return;
    arm_q8act_prepare(node, scratch);
    if (c->q8_sdot)
        arm_q8mm_dotprod(node, lo, hi, scratch);
    else
        arm_q8mm_neon(node, lo, hi, scratch);
}

static const tern_op_fn arm_ops[TERN_OP_COUNT] = {
    [TERN_OP_GET_ROWS] = arm_get_rows,
    [TERN_OP_RMS_NORM] = arm_rms_norm,
    [TERN_OP_ADD] = arm_add,
    [TERN_OP_MUL] = arm_mul,
    [TERN_OP_RELU_SQ] = arm_relu_sq,
    [TERN_OP_SILU] = arm_silu,
    [TERN_OP_ROPE] = arm_rope,
    [TERN_OP_KV_STORE] = arm_kv_store,
    [TERN_OP_ATTENTION] = arm_attention,
    [TERN_OP_SOFTMAX] = arm_softmax,
    [TERN_OP_QUANTIZE_ACT] = arm_quantize_act,
    [TERN_OP_MATMUL_TERNARY] = arm_matmul_ternary,
    [TERN_OP_MATMUL] = arm_matmul,
};

/* Beyond the shared gate: contiguous output rows; ternary weights in this
 * backend's tiles; float weights in file layout (as stored, or the q8 head
 * this backend made). */
static int arm_supports_op(void *ctx, const tern_node *nd)
{
    (void)ctx;
    if (!tern_op_check_host(nd)) return 0;
    if (nd->op != TERN_OP_MATMUL && nd->op != TERN_OP_MATMUL_TERNARY) return 1;
    const tern_tensor *x = nd->src[0], *w = nd->src[1], *d = nd->dst;
    if (d->nb[0] != 4 || (d->ne[1] > 1 && d->nb[1] < (size_t)d->ne[0] * 4)) return 0;
    if (nd->op == TERN_OP_MATMUL_TERNARY) {
        if (w->layout != TERN_LAYOUT_BACKEND || !arm_tag_is(w, &arm_tmat_tag)) return 0;
        const arm_tmat *m = w->extra;
        return m->K == x->ne[0] && m->N == d->ne[0];
    }
    if (x->nb[0] != 4 || w->layout != TERN_LAYOUT_FILE || !tern_op_is_float_weight(w->type)) return 0;
    if (w->extra && !arm_tag_is(w, &arm_owned_tag)) return 0;
    return w->type != TERN_TYPE_Q8_0 || w->ne[0] % TERN_QK8_0 == 0;
}

static size_t arm_scratch_size(void *ctx, const tern_node *nd, int nth)
{
    (void)ctx, (void)nth;
    size_t n = nd->op == TERN_OP_MATMUL_TERNARY ? arm_tmm_scratch(nd) : arm_ops_scratch(nd);
    return (n + 63) / 64 * 64;
}

const tern_backend_api arm_api = {
    .abi_version = TERN_BACKEND_ABI_VERSION,
    .struct_size = sizeof(tern_backend_api),
    .op_semantics = TERN_OP_SEMANTICS_VERSION,
    .name = "arm",
    .caps = TERN_BACKEND_CAP_HOST_MEMORY | TERN_BACKEND_CAP_THREADED,
    .probe = arm_probe,
    .init = arm_init,
    .free = arm_free,
    .repack = arm_repack,
    .release = arm_release,
    .supports_op = arm_supports_op,
    .scratch_size = arm_scratch_size,
    .ops = arm_ops,
    .n_ops = TERN_OP_COUNT,
    .describe = arm_describe,
    .repack_size = arm_repack_size,
    .repack_into = arm_repack_into,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &arm_api; }
