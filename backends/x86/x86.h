/* x86.h - private to the x86 backend: its context, the repacked weight
 * layouts, and the kernels each ISA file provides.
 *
 * Files: backend.c (probe, init, describe, op table, supports_op, scratch),
 * repack.c (weight layouts; baseline x86-64), ops_avx2.c (every float op
 * and QUANTIZE_ACT, AVX2+FMA+F16C), tmm_avx2.c (ternary MAD, vpmaddubsw),
 * tmm_avx512.c (ternary MAD with vpdpbusd, bit-serial with vpopcntq, LUT
 * with vpermb), q8mm_avx512.c (Q8_0 matmul with vpdpbusd), fmm_avx512.c
 * (float matmul, 16 lanes). Only *_avx2.c / *_avx512.c are built with ISA
 * flags, so the plugin loads anywhere and probe() says "cannot run"
 * without AVX2.
 *
 * Threads: every kernel splits output rows (ternary: 16-row tiles) into nth
 * contiguous chunks, and every output element is computed by one fixed
 * instruction sequence whatever n_tok, nth or the tile it falls in, so a
 * token's results are bit-identical in GEMV and GEMM. */
#ifndef TERN_X86_H
#define TERN_X86_H

#include <stdint.h>
#include <string.h>

#include "tern/kernels.h"
#include "tern/plugin.h"
#include "tern/quant.h"
#include "kplug.h"

#define TERN_EXPORT __attribute__((visibility("default")))

enum { X86_ISA_AVX2 = 1, X86_ISA_AVX512 = 2 };

/* Ternary kernel families; X86_FAM_AUTO only in options. */
enum { X86_FAM_AUTO = 0, X86_FAM_MAD = 1, X86_FAM_BITSERIAL = 2, X86_FAM_LUT = 3,
       X86_FAM_PLUGIN = 4, /* a kernel plugin's variant (codegen/kplug.c); never asked for by name */
       X86_FAM_COUNT };

extern const char *const x86_family_names[X86_FAM_COUNT];

typedef struct x86_ctx {
    const tern_host_api *host;
    int n_threads;
    int isa;           /* X86_ISA_* */
    int kernel;        /* X86_FAM_* asked for (AUTO = per shape) */
    int head_q8;       /* options.head == "q8" */
    int n_family[X86_FAM_COUNT]; /* ternary tensors repacked per family */
    int n_head_q8;     /* head tensors quantized to Q8_0 (options.head = "q8") */
    int n_head_f16;    /* head tensors kept as stored */
    int n_q8mat;       /* Q8_0 tensors repacked to vnni tiles */
    int fmm_decode_rows; /* rows of the float GEMV's decode tile (fmm_avx512.c): 1 or 8 by CPU */
    tk_set ks;         /* kernel plugins (codegen/kplug.h): forced variant, wisdom, per-shape choices */
} x86_ctx;

/* ---- repacked ternary weights (TERN_REPACK_TERNARY) ----
 * tensor->extra points at an x86_tmat, tensor->data at its packed bytes.
 * Rows are padded to Np (a multiple of 16), K to Kp; padding weights never
 * contribute (MAD stores u8 0 there, which the sum correction does not
 * count; bit-serial and LUT store weight 0), so a Q8_TOK row's padding is
 * never trusted.
 *
 * MAD (AVX2 and AVX-512 share it): 16-row tiles of Kp/16 blocks of 64
 * bytes; byte j = 4r + i of block kb holds, in bits 2p..2p+1, w + 1 for row
 * r of the tile and k = 16 kb + 4p + i. A zmm load is one vpdpbusd operand
 * per p (lane r = row r, 4 k values per lane); a ymm load is its 8-row half.
 *
 * BITSERIAL: per row, Kp/512 chunks of 128 bytes: a 512-bit mask of the +1
 * weights, then one of the -1 weights (bit k%64 of qword k/64 of a chunk).
 *
 * LUT: 16-row tiles of Kp/16 blocks of 64 bytes; byte j = 4r + i holds in
 * its low nibble the pair code 3 (w0 + 1) + (w1 + 1) of row r and
 * k = 16 kb + 2i, 2i+1, in its high nibble that of k = 16 kb + 8 + 2i, 2i+1. */
typedef struct x86_tmat {
    const void *tag;  /* &x86_tmat_tag */
    int family;       /* X86_FAM_* */
    int64_t K, N, Kp, Np;
    /* X86_FAM_PLUGIN: the variants (one layout) for one token and batches */
    const tern_kernel_variant *gemv, *gemm;
    int owns_data;    /* 0: the runtime's memory (a cache file's mapping) */
} x86_tmat;
extern const char x86_tmat_tag;

/* ---- Q8_0 weights in 16-row tiles (TERN_REPACK_MATMUL, AVX-512) ----
 * tensor->extra points at an x86_q8mat, tensor->data at Np/16 tiles of
 * tile_bytes (a multiple of 64). A tile holds nb = K/32 blocks of 512
 * bytes, then nb groups of 16 f16 scales (row r of block b at 16 b + r).
 * Byte 64 g + 4 r + j of block b is w + 128 (u8) for row r of the tile and
 * k = 32 b + 4 g + j: one zmm load per g is one vpdpbusd operand (lane r =
 * row r, 4 k per lane). Padding rows hold w = 0 and scale 0. */
typedef struct x86_q8mat {
    const void *tag; /* &x86_q8mat_tag */
    int64_t K, N, Np;
    size_t tile_bytes;
    int owns_data;   /* 0: the runtime's memory (a cache file's mapping) */
} x86_q8mat;
extern const char x86_q8mat_tag;

/* This plugin's table: the owner of every tensor it repacks. */
extern const tern_backend_api x86_api;

tern_status x86_repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                       char *err, size_t errlen);
void x86_release(void *ctx, tern_tensor *t);
tern_status x86_repack_size(void *ctx, const tern_tensor *src, int purpose, size_t *bytes,
                            char *layout, size_t layout_len, char *err, size_t errlen);
tern_status x86_repack_into(void *ctx, const tern_tensor *src, int purpose, void *data, int fill,
                            tern_tensor *dst, char *err, size_t errlen);
/* The family auto picks for a [K, N] ternary matrix on this ISA. */
int x86_auto_family(int isa, int64_t K, int64_t N);

/* ---- helpers ---- */

static inline void x86_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    if (nth < 1) nth = 1;
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* A position outside the KV cache: the evaluation's error. */
static inline void x86_bad_position(void *ctx, const tern_node *node, int64_t p, int64_t n_ctx)
{
    ((const x86_ctx *)ctx)->host->node_error(node, TERN_ECONTEXT, "position %lld outside the KV cache of %lld",
                                             (long long)p, (long long)n_ctx);
}

static inline uint8_t *x86_row(const tern_tensor *t, int64_t r)
{
    int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
    return (uint8_t *)t->data + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
           (size_t)i3 * t->nb[3];
}

static inline int32_t x86_i32(const tern_tensor *t, int64_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)t->data + (size_t)i * sizeof v, sizeof v);
    return v;
}

/* ---- op kernels (tern_op_fn), AVX2 (ops_avx2.c) ---- */
void x86_get_rows(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_rms_norm(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_add(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_mul(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_relu_sq(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_silu(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_rope(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_kv_store(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_attention(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_softmax(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_quantize_act(void *ctx, const tern_node *node, int ith, int nth, void *scratch);
void x86_matmul(void *ctx, const tern_node *node, int ith, int nth, void *scratch);

/* Scratch bytes per thread of the float ops above. */
size_t x86_ops_scratch(const tern_node *node);
/* AVX-512 attention (attn_avx512.c); the same scratch as x86_attention. */
void x86_attention_avx512(void *ctx, const tern_node *node, int ith, int nth, void *scratch);

/* ---- ternary matmul kernels: the rows [r0, r1) (multiples of 16 but r1
 * may be Np) of dst for every token. scratch as from x86_tmm_scratch. ---- */
void x86_tmm_mad_avx2(const tern_node *node, int64_t r0, int64_t r1, void *scratch);
void x86_tmm_mad_avx512(const tern_node *node, int64_t r0, int64_t r1, void *scratch);
void x86_tmm_bitserial_avx512(const tern_node *node, int64_t r0, int64_t r1, void *scratch);
void x86_tmm_lut_avx512(const tern_node *node, int64_t r0, int64_t r1, void *scratch);
size_t x86_tmm_scratch(const tern_node *node);

/* ---- F32/F16/BF16 matmul with 16-lane chains (fmm_avx512.c): output
 * rows [lo, hi) for every token. ---- */
/* decode_rows: rows a decode's tile reads side by side (1 or 8; x86_ctx) */
void x86_fmm_avx512(const tern_node *node, int64_t lo, int64_t hi, int decode_rows);

/* ---- Q8_0 matmul activations in scratch (both Q8_0 paths): token t at
 * x86_q8act_token holds K int8 codes (padded to 64 bytes), then K/32 f32
 * scales, then (AVX-512) K/32 int32 corrections -128 * sum(codes). ---- */
static inline size_t x86_q8act_codes_bytes(int64_t K) { return ((size_t)K + 63) / 64 * 64; }
static inline size_t x86_q8act_stride(int64_t K)
{
    return x86_q8act_codes_bytes(K) + ((size_t)K / 32 * 8 + 63) / 64 * 64;
}
static inline size_t x86_q8act_scratch(int64_t K, int64_t n_tok) { return (size_t)n_tok * x86_q8act_stride(K) + 64; }
static inline uint8_t *x86_q8act_token(void *scratch, int64_t K, int64_t t)
{
    return (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63) + (size_t)t * x86_q8act_stride(K);
}

/* ---- Q8_0 matmul (q8mm_avx512.c): tiles [tile0, tile1) of an x86_q8mat
 * for every token; scratch as above. ---- */
void x86_q8mm_avx512(const tern_node *node, int64_t tile0, int64_t tile1, void *scratch);
#define X86_LUT_TOKENS 8 /* tokens whose tables the LUT kernel builds at once */

#endif
