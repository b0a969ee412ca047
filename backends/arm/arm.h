/* arm.h - private to the arm backend: its context, the ISA tiers and kernel
 * families, the repacked weight layouts, and the kernels each file provides.
 *
 * Files: backend.c (the ABI-facing part: entry table, probe, init, describe,
 * op table with its ISA dispatch, supports_op, scratch sizes), repack.c
 * (placement: repack, repack_size/repack_into for the pack cache, release;
 * the ternary kernel variant table, the weight layouts, the LUT tables;
 * baseline, packing on the runtime's threads), ops_neon.c (every float op,
 * QUANTIZE_ACT, GET_ROWS, the F32/F16/BF16 matmul and the Q8_0 matmul
 * without dotprod; baseline AArch64 NEON), q8mm_dotprod.c (Q8_0 with sdot),
 * tmm_dotprod.c (ternary MAD, NEON sdot), tmm_neon.c (ternary LUT, NEON
 * tbl), tmm_sve.c (ternary MAD, SVE sdot), tmm_sve2.c (ternary LUT, SVE2 tbl
 * and widening adds). Only *_dotprod.c / *_sve.c / *_sve2.c are built with
 * those extensions (SConscript), and backend.c calls them only after the
 * CPU features said yes, so the plugin loads on any AArch64 CPU.
 *
 * SVE code is vector-length agnostic: the layouts do not depend on the
 * vector length, and the kernels read svcntb() at run time (one binary,
 * correct at every VL from 128 to 2048 bits; a vector holds up to 4
 * 128-bit segments of a tile, so lengths above 512 bits leave lanes idle).
 *
 * Threads: every kernel splits output rows (ternary: whole tiles) into nth
 * contiguous chunks, and every output element is computed by one fixed
 * instruction sequence whatever n_tok, nth or the tile it falls in, so a
 * token's results are bit-identical in GEMV and GEMM. */
#ifndef TERN_ARM_H
#define TERN_ARM_H

#include <stdint.h>
#include <string.h>

#include "kplug.h"
#include "tern/plugin.h"
#include "tern/quant.h"

#define TERN_EXPORT __attribute__((visibility("default")))

/* ISA tiers: baseline AArch64 NEON, + dotprod (NEON sdot), SVE (its own
 * sdot), SVE2. Each tier's kernels are chosen over the one before; the NEON
 * sdot Q8_0 kernel also needs asimddp itself (arm_ctx.q8_sdot). */
enum { ARM_ISA_NEON = 1, ARM_ISA_DOTPROD = 2, ARM_ISA_SVE = 3, ARM_ISA_SVE2 = 4, ARM_ISA_COUNT };
extern const char *const arm_isa_names[ARM_ISA_COUNT]; /* "neon", "dotprod", "sve", "sve2" */

/* Ternary kernel families; ARM_FAM_AUTO only in options. MAD needs sdot
 * (dotprod or SVE); LUT runs on every tier (tbl). */
enum { ARM_FAM_AUTO = 0, ARM_FAM_MAD = 1, ARM_FAM_LUT = 2,
       ARM_FAM_PLUGIN = 3, /* a kernel plugin's variant (codegen/kplug.c); never asked for by name */
       ARM_FAM_COUNT };
extern const char *const arm_family_names[ARM_FAM_COUNT];

typedef struct arm_ctx {
    const tern_host_api *host;
    int n_threads;
    int isa;           /* ARM_ISA_*: the tier every kernel may use */
    int cpu_isa;       /* the tier the CPU has (isa <= cpu_isa when forced) */
    int q8_sdot;       /* the Q8_0 matmul uses NEON sdot (asimddp, tier not capped to neon) */
    int kernel;        /* ARM_FAM_* asked for (AUTO = built-in choice) */
    int head_q8;       /* options.head == "q8" */
    int n_family[ARM_FAM_COUNT]; /* ternary tensors repacked per family */
    int n_head_q8;     /* head tensors quantized to Q8_0 (options.head = "q8") */
    int n_head_f16;    /* head tensors kept as stored */
    tk_set ks;         /* kernel plugins (codegen/kplug.h): forced variant, wisdom, per-shape choices */
} arm_ctx;

/* ---- repacked ternary weights (TERN_REPACK_TERNARY) ----
 * tensor->extra points at an arm_tmat, tensor->data at its packed bytes,
 * Np/rows tiles of tile_bytes each (rows = 16 for MAD, 64 for LUT).
 *
 * MAD: 16-row tiles of Kp/16 blocks of 64 bytes (Kp = K rounded up to 16).
 * Byte 16 g + 4 r + i of block kb holds, in bits 2p..2p+1, u = w + 1 for row
 * 4 g + r of the tile and k = 16 kb + 4 p + i; padding holds u = 0, so it
 * never contributes and sum(q) over the real k (the Q8_TOK header) is the
 * exact correction: sum w q = sum u q - sum q. Each 16-byte row group is one
 * sdot-by-element operand per field p (lane r = row, 4 k per lane, the
 * activation's 32-bit element p); an SVE vector takes up to 4 row groups at
 * once against the activations replicated in every 128-bit segment.
 *
 * LUT: 64-row tiles of Kp/4 blocks of 64 bytes (Kp = K rounded up to 8).
 * Byte 16 g + r of block kb holds, for row 16 g + r of the tile, the pair
 * code c = 3 (w0 + 1) + (w1 + 1) of k = 4 kb, 4 kb + 1 in its low nibble and
 * of k = 4 kb + 2, 4 kb + 3 in its high nibble; padding holds c = 4 (two
 * zero weights), whose table entry is 0. The tables (arm_lut_build) are
 * exact: each int8 activation a = 16 ah + al (al = a & 15, ah = a >> 4),
 * and per pair of activations TL[c] = w0 al0 + w1 al1 (|TL| <= 30), TH[c] =
 * w0 ah0 + w1 ah1 (|TH| <= 16), so sum w a = 16 sum TH + sum TL with every
 * lookup an exact int8. */
/* ---- ternary kernel variants: the table behind --kernel and auto, in the
 * shape of the variant tables codegen's kernel plugins will export
 * (DESIGN.md): what each needs, its tile, its function. A matrix is packed
 * for one variant at load and always runs it. ---- */
typedef void (*arm_tmm_fn)(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch);
typedef struct arm_tmm_variant {
    const char *name; /* "mad-sve", as --kernel names it */
    int family;       /* ARM_FAM_MAD or ARM_FAM_LUT: the tile layout */
    int isa;          /* the tier it needs */
    int rows;         /* tile rows: N is padded to this */
    int kalign;       /* K is padded to this */
    const char *what; /* "sve sdot", for describe and probe */
    arm_tmm_fn run;   /* tiles [tile0, tile1) for every token */
} arm_tmm_variant;
extern const arm_tmm_variant arm_tmm_variants[];
/* the stand-in a matrix packed for a kernel plugin's variant points at */
extern const arm_tmm_variant arm_tmm_plugin;
/* The variant of family with the highest tier <= isa; NULL when none. */
const arm_tmm_variant *arm_tmm_pick(int family, int isa);

typedef struct arm_tmat {
    const void *tag;  /* &arm_tmat_tag */
    const arm_tmm_variant *v; /* the kernel this matrix is packed for */
    int64_t K, N, Kp, Np;
    size_t tile_bytes;
    /* v == &arm_tmm_plugin: the variants (one layout) for one token and batches */
    const tern_kernel_variant *gemv, *gemm;
    int owns_data; /* 0: the runtime's memory (a pack cache's mapping) */
} arm_tmat;
extern const char arm_tmat_tag;
/* Every extra this backend sets points at a struct starting with a tag
 * pointer: &arm_tmat_tag, or &arm_owned_tag for a file-layout copy it
 * allocated (the q8 head). */
extern const char arm_owned_tag;
/* This plugin's table: the owner of every tensor it repacks. */
extern const tern_backend_api arm_api;
/* extra is read only of tensors this plugin made (owner). */
static inline int arm_tag_is(const tern_tensor *w, const void *tag)
{
    return w->owner == &arm_api && w->extra && *(const void *const *)w->extra == tag;
}

#define ARM_MAD_ROWS 16
#define ARM_LUT_ROWS 64
#define ARM_LUT_TOKENS 4 /* tokens whose tables the LUT kernels build at once */
#define ARM_LUT_PAIR_BYTES 32 /* TL[16] then TH[16] per pair of activations */

/* The family auto picks for a [K, N] ternary matrix on this tier. */
int arm_auto_family(int isa, int64_t K, int64_t N);
/* The plugin's placement entry points (repack.c): ternary weights into the
 * tiles of the variant the tier and kernel option pick, float weights as
 * stored, the head (by its purpose) quantized to Q8_0 when options.head is
 * "q8"; repack allocates, repack_into packs into (or takes back from) the
 * runtime's memory, a pack cache's mapping. */
tern_status arm_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst, char *err,
                       size_t errlen);
tern_status arm_repack_size(void *ctx, const tern_tensor *src, int purpose, size_t *bytes, char *layout,
                            size_t layout_len, char *err, size_t errlen);
tern_status arm_repack_into(void *ctx, const tern_tensor *src, int purpose, void *data, int fill,
                            tern_tensor *dst, char *err, size_t errlen);
void arm_release(void *ctx, tern_tensor *t);

/* ---- helpers ---- */

static inline void arm_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    if (nth < 1) nth = 1;
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* A position outside the KV cache: the evaluation's error. */
static inline void arm_bad_position(void *ctx, const tern_node *node, int64_t p, int64_t n_ctx)
{
    ((const arm_ctx *)ctx)->host->node_error(node, TERN_ECONTEXT, "position %lld outside the KV cache of %lld",
                                             (long long)p, (long long)n_ctx);
}

static inline uint8_t *arm_row(const tern_tensor *t, int64_t r)
{
    int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
    return (uint8_t *)t->data + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
           (size_t)i3 * t->nb[3];
}

static inline int32_t arm_i32(const tern_tensor *t, int64_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)t->data + (size_t)i * sizeof v, sizeof v);
    return v;
}

/* One token's Q8_TOK row: codes, header values. */
typedef struct arm_tok {
    const int8_t *q;
    float inv;
    int32_t sum;
} arm_tok;

static inline arm_tok arm_token(const tern_tensor *x, int64_t t)
{
    const uint8_t *row = arm_row(x, t);
    tern_q8tok_header h;
    memcpy(&h, row, sizeof h);
    return (arm_tok){(const int8_t *)(row + TERN_Q8TOK_HEADER), h.inv, h.sum};
}

/* The ternary output: the exact int32 dot, then ((float)acc / inv) * scale,
 * the definition's two f32 steps. acc arrives as uint32 modulo 2^32 (the
 * kernels add in wrapping arithmetic; the true value fits in int32). */
static inline void arm_store_ternary(const tern_node *node, int64_t t, int64_t row, uint32_t acc,
                                     const arm_tok *x)
{
    float *y = (float *)arm_row(node->dst, t);
    float v = (float)(int32_t)acc / x->inv;
    y[row] = v * node->src[1]->scale;
}

/* ---- op kernels (tern_op_fn), baseline NEON (ops_neon.c) ---- */
void arm_get_rows(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_rms_norm(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_add(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_mul(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_relu_sq(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_silu(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_rope(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_kv_store(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_attention(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_softmax(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void arm_quantize_act(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
/* F32/F16/BF16 weights as stored: output rows [lo, hi) for every token. */
void arm_fmm_neon(const tern_node *node, int64_t lo, int64_t hi);
/* Scratch bytes per thread of the ops above and of the Q8_0 matmul. */
size_t arm_ops_scratch(const tern_node *node);

/* ---- Q8_0 matmul, file layout: each token's activations quantized once
 * per call into scratch (tern_quantize_act_q8_0, the reference itself) by
 * arm_q8act_prepare; then output rows [lo, hi) for every token. ---- */
static inline size_t arm_q8act_codes_bytes(int64_t K) { return ((size_t)K + 63) / 64 * 64; }
static inline size_t arm_q8act_stride(int64_t K)
{
    return arm_q8act_codes_bytes(K) + ((size_t)K / 32 * 4 + 63) / 64 * 64;
}
static inline size_t arm_q8act_scratch(int64_t K, int64_t n_tok) { return (size_t)n_tok * arm_q8act_stride(K) + 64; }
static inline uint8_t *arm_q8act_token(void *scratch, int64_t K, int64_t t)
{
    return (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63) + (size_t)t * arm_q8act_stride(K);
}
void arm_q8act_prepare(const tern_node *node, void *scratch);
void arm_q8mm_neon(const tern_node *node, int64_t lo, int64_t hi, void *scratch);
void arm_q8mm_dotprod(const tern_node *node, int64_t lo, int64_t hi, void *scratch);

/* ---- ternary matmul kernels: tiles [tile0, tile1) of the arm_tmat for
 * every token; scratch as from arm_tmm_scratch. ---- */
void arm_tmm_mad_dotprod(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch);
void arm_tmm_mad_sve(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch);
void arm_tmm_lut_neon(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch);
void arm_tmm_lut_sve2(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch);
size_t arm_tmm_scratch(const tern_node *node);
/* The LUT tables of one token: Kp/2 pairs of ARM_LUT_PAIR_BYTES (see the
 * layout above); pairs beyond K read activation 0. */
void arm_lut_build(const arm_tok *x, int64_t K, int64_t Kp, int8_t *tables);
/* Tables of token t of a LUT block in scratch (64-byte aligned). */
static inline int8_t *arm_lut_tables(void *scratch, int64_t Kp, int t)
{
    uintptr_t base = ((uintptr_t)scratch + 63) & ~(uintptr_t)63;
    return (int8_t *)(base + (size_t)t * (size_t)(Kp / 2) * ARM_LUT_PAIR_BYTES);
}

#endif
