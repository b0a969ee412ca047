/* backend.c - the x86 backend's entry table: probe, instance, describe,
 * the op table with its ISA dispatch, supports_op and scratch sizes.
 * Baseline x86-64 code: nothing here executes AVX instructions, so the
 * plugin loads and probes on any x86-64. */
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "x86.h"

#define AVX2_NEED (TERN_CPU_AVX2 | TERN_CPU_FMA | TERN_CPU_F16C)
#define AVX512_NEED                                                                         \
    (AVX2_NEED | TERN_CPU_AVX512F | TERN_CPU_AVX512BW | TERN_CPU_AVX512VL |                 \
     TERN_CPU_AVX512VNNI | TERN_CPU_AVX512VBMI | TERN_CPU_AVX512VPOPCNTDQ)

static int isa_of(uint64_t f)
{
    if ((f & AVX512_NEED) == AVX512_NEED) return X86_ISA_AVX512;
    if ((f & AVX2_NEED) == AVX2_NEED) return X86_ISA_AVX2;
    return 0;
}

/* Rows of the float GEMV's decode tile by CPU vendor, as measured (see
 * fmm_avx512.c): one sequential stream on AMD's Zen 4, eight rows on
 * Intel's Xeon (and where nothing was measured). TERN_X86_FMM_ROWS=1|8
 * overrides it, to measure a new machine. */
static const struct {
    const char *vendor; /* cpuid leaf 0 */
    int rows;
} decode_rows_table[] = {{"AuthenticAMD", 1}, {"GenuineIntel", 8}};

static int decode_rows_for_cpu(void)
{
    const char *env = getenv("TERN_X86_FMM_ROWS");
    if (env && (strcmp(env, "1") == 0 || strcmp(env, "8") == 0)) return atoi(env);
    unsigned a, regs[3];
    char vendor[13] = "";
    if (__get_cpuid(0, &a, &regs[0], &regs[2], &regs[1])) { /* ebx, edx, ecx spell it */
        memcpy(vendor, regs, 12);
        vendor[12] = 0;
    }
    for (size_t i = 0; i < sizeof decode_rows_table / sizeof decode_rows_table[0]; i++)
        if (strcmp(vendor, decode_rows_table[i].vendor) == 0) return decode_rows_table[i].rows;
    return 8;
}

static void x86_probe(const tern_host_api *host, tern_backend_probe *out)
{
    int isa = isa_of(host->cpu_features);
    out->runnable = isa != 0;
    out->score = isa == X86_ISA_AVX512 ? 20 : isa == X86_ISA_AVX2 ? 10 : 0;
    if (isa == X86_ISA_AVX512)
        snprintf(out->desc, sizeof out->desc,
                 "AVX-512 F/BW/VL/VNNI/VBMI/VPOPCNTDQ + AVX2/FMA/F16C: ternary mad (vpdpbusd), "
                 "bitserial (vpopcntq), lut (vpermb); f16/bf16/q8_0/f32 matmul, q8 head");
    else if (isa == X86_ISA_AVX2)
        snprintf(out->desc, sizeof out->desc,
                 "AVX2/FMA/F16C: ternary mad (vpmaddubsw); f16/bf16/q8_0/f32 matmul, q8 head "
                 "(no AVX-512 VNNI/VBMI/VPOPCNTDQ: bitserial and lut unavailable)");
    else
        snprintf(out->desc, sizeof out->desc, "cannot run: needs AVX2, FMA and F16C");
}

static int family_from_name(const char *s)
{
    if (!s || !*s) return X86_FAM_AUTO;
    for (int f = 0; f < X86_FAM_PLUGIN; f++)
        if (!strcmp(s, x86_family_names[f])) return f;
    return -1;
}

static tern_status x86_init(const tern_host_api *host, const tern_backend_options *opt, void **ctx,
                            char *err, size_t errlen)
{
    int isa = isa_of(host->cpu_features);
    if (!isa) {
        snprintf(err, errlen, "x86 backend cannot run here: needs AVX2, FMA and F16C");
        return TERN_ECANNOTRUN;
    }
    /* an older runtime's options may end before a member: read what is there */
    const char *kernel = opt && TERN_STRUCT_HAS(opt, tern_backend_options, kernel) ? opt->kernel : NULL;
    /* "mad-avx2" runs the AVX2 kernels on an AVX-512 machine, so tests can
     * check that path where it does not run by itself. */
    int force_avx2 = kernel && !strcmp(kernel, "mad-avx2");
    int fam = force_avx2 ? X86_FAM_MAD : family_from_name(kernel);
    int head_q8;
    tern_status st = tern_head_option("x86", opt, &head_q8, err, errlen);
    if (st) return st;
    x86_ctx *c = host->alloc(sizeof *c, 64);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return TERN_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->host = host;
    c->kernel = fam < 0 ? X86_FAM_AUTO : fam;
    c->n_threads = opt && TERN_STRUCT_HAS(opt, tern_backend_options, n_threads) && opt->n_threads > 0
                       ? opt->n_threads : 1;
    c->ks = (tk_set){.host = host, .who = "x86", .n_threads = c->n_threads, .family_forced = fam > X86_FAM_AUTO};
    /* no wisdom while forcing a family or a variant */
    tk_set_load(&c->ks, &x86_api, fam == X86_FAM_AUTO);
    if (fam < 0) {
        /* a kernel name that is no family may name a kernel plugin's variant */
        c->ks.forced = tk_set_find(&c->ks, kernel, 0);
        if (!c->ks.forced) {
            tk_set_unload(&c->ks);
            host->free(c);
            snprintf(err, errlen, "x86: unknown kernel '%s' (auto, mad, bitserial, lut, mad-avx2, or a "
                     "variant of a tern-kernels-*.so)", kernel);
            return TERN_EINVAL;
        }
    }
    c->isa = force_avx2 ? X86_ISA_AVX2 : isa;
    c->head_q8 = head_q8;
    c->fmm_decode_rows = decode_rows_for_cpu();
    if (isa != X86_ISA_AVX512 && fam > X86_FAM_MAD)
        host->log(TERN_LOG_WARN, "x86: kernel '%s' needs AVX-512; using mad", kernel);
    *ctx = c;
    return TERN_OK;
}

static void x86_free(void *ctx)
{
    if (!ctx) return;
    x86_ctx *c = ctx;
    tk_set_unload(&c->ks);
    c->host->free(c);
}

/* The built-in family a [K, N] weight gets. */
static const char *builtin_name(const void *ctx, int64_t K, int64_t N)
{
    const x86_ctx *c = ctx;
    if (c->isa != X86_ISA_AVX512) return x86_family_names[X86_FAM_MAD];
    return x86_family_names[c->kernel == X86_FAM_AUTO ? x86_auto_family(c->isa, K, N) : c->kernel];
}

static void x86_describe(void *ctx, char *buf, size_t n)
{
    x86_ctx *c = ctx;
    char fams[128] = "";
    size_t used = 0;
    for (int f = 1; f < X86_FAM_COUNT; f++)
        if (c->n_family[f] && used < sizeof fams)
            used += (size_t)snprintf(fams + used, sizeof fams - used, "%s%s x%d", used ? ", " : "",
                                     x86_family_names[f], c->n_family[f]);
    char q8[48] = "";
    if (c->n_q8mat) snprintf(q8, sizeof q8, ", q8_0 vnni tiles x%d", c->n_q8mat);
    int k = snprintf(buf, n, "x86 %s, kernel %s%s (%s%s)%s, head %s", c->isa == X86_ISA_AVX512 ? "avx512" : "avx2",
                     c->ks.forced ? c->ks.forced->name : x86_family_names[c->kernel],
                     c->kernel == X86_FAM_AUTO && !c->ks.forced ? ": per shape" : "",
                     used ? "ternary: " : "no ternary weights yet", fams, q8,
                     c->n_head_q8 ? "q8 (quantized to q8_0)" : c->head_q8 ? "q8 requested" : "as stored");
    /* per weight shape: what runs (gemv / gemm) and why */
    tk_set_describe(&c->ks, buf, n, k, builtin_name, c);
}

/* ---- the ternary matmul: split 16-row tiles, then the family's kernel ---- */

static void x86_matmul_ternary(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    x86_ctx *c = ctx;
    const x86_tmat *m = node->src[1]->extra;
    int64_t lo, hi;
    if (m->family == X86_FAM_PLUGIN) {
        tk_matmul(m->gemv, m->gemm, m->K, m->N, node, ith, nth, scratch);
        return;
    }
    x86_split(m->Np / 16, ith, nth, &lo, &hi);
    if (lo >= hi) return;
    if (c->isa != X86_ISA_AVX512) {
        x86_tmm_mad_avx2(node, 16 * lo, 16 * hi, scratch);
        return;
    }
    switch (m->family) {
    case X86_FAM_BITSERIAL: x86_tmm_bitserial_avx512(node, 16 * lo, 16 * hi, scratch); break;
    case X86_FAM_LUT: x86_tmm_lut_avx512(node, 16 * lo, 16 * hi, scratch); break;
    default: x86_tmm_mad_avx512(node, 16 * lo, 16 * hi, scratch); break;
    }
}

/* extra is read only of tensors this plugin repacked (owner). */
static int tag_is(const tern_tensor *w, const void *tag)
{
    return w->layout == TERN_LAYOUT_BACKEND && w->owner == &x86_api && w->extra &&
           *(const void *const *)w->extra == tag;
}

/* ---- the float matmul: Q8_0 tiles split by tile, F32/F16/BF16 by rows
 * (16 lanes on AVX-512), AVX2 in ops_avx2.c ---- */

static void x86_matmul_any(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    const tern_tensor *w = node->src[1];
    if (tag_is(w, &x86_q8mat_tag)) {
        int64_t lo, hi;
        x86_split(((const x86_q8mat *)w->extra)->Np / 16, ith, nth, &lo, &hi);
        if (lo < hi) x86_q8mm_avx512(node, lo, hi, scratch);
        return;
    }
    if (((x86_ctx *)ctx)->isa == X86_ISA_AVX512 && w->type != TERN_TYPE_Q8_0) {
        int64_t lo, hi;
        x86_split(node->dst->ne[0], ith, nth, &lo, &hi);
        x86_fmm_avx512(node, lo, hi, ((x86_ctx *)ctx)->fmm_decode_rows);
        return;
    }
    x86_matmul(ctx, node, ith, nth, scratch);
}

static void x86_attention_any(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    x86_ctx *c = ctx;
    if (c->isa == X86_ISA_AVX512)
        x86_attention_avx512(ctx, node, ith, nth, scratch);
    else
        x86_attention(ctx, node, ith, nth, scratch);
}

static const tern_op_fn x86_ops[TERN_OP_COUNT] = {
    [TERN_OP_GET_ROWS] = x86_get_rows,
    [TERN_OP_RMS_NORM] = x86_rms_norm,
    [TERN_OP_ADD] = x86_add,
    [TERN_OP_MUL] = x86_mul,
    [TERN_OP_RELU_SQ] = x86_relu_sq,
    [TERN_OP_SILU] = x86_silu,
    [TERN_OP_ROPE] = x86_rope,
    [TERN_OP_KV_STORE] = x86_kv_store,
    [TERN_OP_ATTENTION] = x86_attention_any,
    [TERN_OP_SOFTMAX] = x86_softmax,
    [TERN_OP_QUANTIZE_ACT] = x86_quantize_act,
    [TERN_OP_MATMUL_TERNARY] = x86_matmul_ternary,
    [TERN_OP_MATMUL] = x86_matmul_any,
};

/* ---- which nodes the kernels accept (the same gate as scalar's, plus
 * this backend's own weight layouts) ---- */


/* Beyond the shared gate: contiguous rows, and weights in this backend's
 * own layouts (repacked ternary tiles, the q8 head) or a float type as
 * stored. */
static int x86_supports_op(void *ctx, const tern_node *nd)
{
    (void)ctx;
    if (!tern_op_check_host(nd)) return 0;
    if (nd->op != TERN_OP_MATMUL && nd->op != TERN_OP_MATMUL_TERNARY) return 1;
    const tern_tensor *x = nd->src[0], *w = nd->src[1], *d = nd->dst;
    if (d->nb[0] != 4 || (d->ne[1] > 1 && d->nb[1] < (size_t)d->ne[0] * 4)) return 0;
    if (nd->op == TERN_OP_MATMUL_TERNARY) {
        const x86_tmat *m = w->extra;
        if (!tag_is(w, &x86_tmat_tag) || m->K != x->ne[0] || m->N != d->ne[0]) return 0;
        /* plugin kernels see rows as one stride apart */
        return m->family != X86_FAM_PLUGIN ||
               ((x->ne[2] * x->ne[3] == 1 || x->nb[2] == x->nb[1] * (size_t)x->ne[1]) &&
                (x->ne[3] == 1 || x->nb[3] == x->nb[2] * (size_t)x->ne[2]) &&
                (d->ne[2] * d->ne[3] == 1 || d->nb[2] == d->nb[1] * (size_t)d->ne[1]) &&
                (d->ne[3] == 1 || d->nb[3] == d->nb[2] * (size_t)d->ne[2]));
    }
    if (x->nb[0] != 4) return 0;
    if (tag_is(w, &x86_q8mat_tag)) {
        const x86_q8mat *m = w->extra;
        return m->K == x->ne[0] && m->N == d->ne[0];
    }
    return w->layout == TERN_LAYOUT_FILE && (!w->extra || w->owner == &x86_api) &&
           tern_op_is_float_weight(w->type);
}

static size_t x86_scratch_size(void *ctx, const tern_node *nd, int nth)
{
    (void)ctx, (void)nth;
    size_t n = nd->op == TERN_OP_MATMUL_TERNARY ? x86_tmm_scratch(nd) : x86_ops_scratch(nd);
    return (n + 63) / 64 * 64;
}

const tern_backend_api x86_api = {
    .abi_version = TERN_BACKEND_ABI_VERSION,
    .struct_size = sizeof(tern_backend_api),
    .op_semantics = TERN_OP_SEMANTICS_VERSION,
    .name = "x86",
    .caps = TERN_BACKEND_CAP_HOST_MEMORY | TERN_BACKEND_CAP_THREADED,
    .probe = x86_probe,
    .init = x86_init,
    .free = x86_free,
    .repack = x86_repack,
    .release = x86_release,
    .supports_op = x86_supports_op,
    .scratch_size = x86_scratch_size,
    .ops = x86_ops,
    .n_ops = TERN_OP_COUNT,
    .describe = x86_describe,
    .repack_size = x86_repack_size,
    .repack_into = x86_repack_into,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &x86_api; }
