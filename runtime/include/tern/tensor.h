/* tern/tensor.h - element types, their traits table, and the plain tensor
 * descriptor that crosses the plugin boundary.
 *
 * Type ids are GGUF's where GGUF has one. The peers disagree above 35
 * (llama.cpp retired 36..38 and uses 39 for MXFP4; bitnet.cpp uses 36 = I2_S,
 * 38 = TL1, 39 = TL2), so the GGUF reader maps a file's id to a tern_type
 * with the file's architecture in hand; tern's own ids stay unambiguous. */
#ifndef TERN_TENSOR_H
#define TERN_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_type {
    TERN_TYPE_F32 = 0,
    TERN_TYPE_F16 = 1,
    TERN_TYPE_Q8_0 = 8,
    TERN_TYPE_I8 = 24,
    TERN_TYPE_I32 = 26,
    TERN_TYPE_BF16 = 30,
    TERN_TYPE_TQ1_0 = 34,
    TERN_TYPE_TQ2_0 = 35,
    TERN_TYPE_I2_S = 36,   /* bitnet.cpp, x86 layout; one f32 scale per tensor */
    TERN_TYPE_Q8_TOK = 64, /* tern activations: per-row int8 + header, see below */
    TERN_TYPE_COUNT = 65
} tern_type;

/* What the traits table says about one type. Rows of a tensor are
 * row_header bytes, then ne0/blck_size blocks of type_size bytes, padded to a
 * multiple of row_align. Quantized types have row_header 0 and row_align 1. */
typedef struct tern_type_traits {
    const char *name;      /* "tq2_0"; NULL marks an unused id */
    int64_t blck_size;     /* values per block */
    size_t type_size;      /* bytes per block */
    size_t row_header;     /* bytes before the blocks of every row */
    size_t row_align;      /* row size rounds up to this */
    int is_ternary;        /* values are d * {-1, 0, +1} */
    int is_weight_type;    /* may appear in a GGUF file */
} tern_type_traits;

/* NULL for ids outside the table or unused ones: unknown ids are rejected. */
const tern_type_traits *tern_type_get(int type);
const char *tern_type_name(int type); /* "?" for unknown ids */
/* Looks a type up by its name ("i2_s"); -1 when none has it. */
int tern_type_from_name(const char *name);
/* Bytes of one row of ne0 values; 0 when ne0 is not a multiple of the block
 * size or the type is unknown. Never overflows for ne0 < 2^40. */
size_t tern_row_size(int type, int64_t ne0);

/* Q8_TOK row header: activations quantized per token (row) to int8 with
 * scale inv = 127 / max(max|x|, 1e-5); q = clamp(round_half_even(x * inv),
 * -128, 127); sum = sum of q (for kernels that offset unsigned weights).
 * The int8 values follow the 64-byte header, padded to 64 bytes. */
typedef struct tern_q8tok_header {
    float inv;     /* 127 / amax */
    int32_t sum;   /* sum of the row's q */
    uint8_t pad[56];
} tern_q8tok_header;
#define TERN_Q8TOK_HEADER 64
#define TERN_Q8TOK_ALIGN 64
#define TERN_ACT_AMAX_MIN 1e-5f

#define TERN_MAX_DIMS 4

/* Layout of a tensor's bytes: the file's own, or a backend's repacked one. */
enum {
    TERN_LAYOUT_FILE = 0,       /* exactly as the type's GGUF layout */
    TERN_LAYOUT_BACKEND = 1     /* private to the backend that repacked it */
};

/* A plain tensor descriptor. ne[0] is the innermost (contiguous) dimension,
 * as in GGUF/ggml; nb[i] is the byte stride of dimension i (nb[0] is the
 * element or block size). Unused dims have ne = 1. */
typedef struct tern_tensor {
    int32_t type;              /* enum tern_type */
    int32_t layout;            /* TERN_LAYOUT_* */
    int64_t ne[TERN_MAX_DIMS]; /* elements per dimension */
    size_t nb[TERN_MAX_DIMS];  /* byte strides */
    void *data;                /* host pointer, or offset base inside buffer */
    void *buffer;              /* backend buffer handle; NULL = host memory */
    float scale;               /* per-tensor scale of ternary weights */
    const void *owner;         /* TERN_LAYOUT_BACKEND: the tern_backend_api whose layout
                                * this is; a backend reads extra only of its own */
    void *extra;               /* backend-private (repacked layout details) */
    const char *name;          /* for messages; may be NULL */
} tern_tensor;

/* Fills ne/nb for a contiguous tensor of the given type and dims. */
void tern_tensor_init(tern_tensor *t, int type, int n_dims, const int64_t *ne);
int64_t tern_tensor_nelements(const tern_tensor *t);
int64_t tern_tensor_nrows(const tern_tensor *t); /* ne1*ne2*ne3 */
size_t tern_tensor_nbytes(const tern_tensor *t);

/* IEEE half and bfloat16 conversions (exact, round-to-nearest-even). */
static inline float tern_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t tern_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal */
        if (ax < 0x33000000u) return (uint16_t)sign; /* < 2^-25: zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;           /* 14..24 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float tern_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t tern_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#ifdef __cplusplus
}
#endif
#endif
