/* tern/gguf.h - the GGUF reader (v2, v3) and writer (v3).
 *
 * The reader mmaps the file and validates everything before handing out a
 * pointer: every count, length and offset goes through checked arithmetic,
 * and a bad file gets one precise error line naming the file, the field and
 * the byte offset. Strings returned point into the mapping and are NOT
 * NUL-terminated unless stated: use the (ptr, len) pairs.
 *
 * Type ids: GGUF's ids map to tern_type; 36 is bitnet.cpp's I2_S (llama.cpp
 * retired 36..38); 38/39 (bitnet.cpp TL1/TL2, llama.cpp MXFP4 = 39) and
 * every other quant type are rejected with a message naming the type. */
#ifndef TERN_GGUF_H
#define TERN_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_gguf_vtype {
    TERN_GGUF_U8 = 0,
    TERN_GGUF_I8 = 1,
    TERN_GGUF_U16 = 2,
    TERN_GGUF_I16 = 3,
    TERN_GGUF_U32 = 4,
    TERN_GGUF_I32 = 5,
    TERN_GGUF_F32 = 6,
    TERN_GGUF_BOOL = 7,
    TERN_GGUF_STRING = 8,
    TERN_GGUF_ARRAY = 9,
    TERN_GGUF_U64 = 10,
    TERN_GGUF_I64 = 11,
    TERN_GGUF_F64 = 12,
    TERN_GGUF_VTYPE_COUNT
} tern_gguf_vtype;

typedef struct tern_gguf tern_gguf;

/* A string inside the file: not NUL-terminated. */
typedef struct tern_gguf_str {
    const char *ptr;
    uint64_t len;
} tern_gguf_str;

/* One tensor as the file describes it. data points into the mapping. */
typedef struct tern_gguf_tensor {
    tern_gguf_str name;
    char name_z[256];  /* NUL-terminated copy (names longer are rejected) */
    int32_t type;      /* tern_type */
    uint32_t file_type_id; /* the id as written in the file */
    int n_dims;
    int64_t ne[TERN_MAX_DIMS];
    uint64_t offset;   /* relative to the data section */
    uint64_t size;     /* bytes, from tern_tensor_file_bytes */
    const void *data;
    float scale;       /* I2_S: the trailer's f32 scale; others 1 */
} tern_gguf_tensor;

/* Opens and validates a file. On failure *out is NULL and err says why. */
tern_status tern_gguf_open(const char *path, tern_gguf **out, tern_error *err);
/* The same over a caller-owned buffer that must outlive the handle (fuzzing,
 * tests). name is used in messages. */
tern_status tern_gguf_open_memory(const void *data, size_t size, const char *name, tern_gguf **out,
                                  tern_error *err);
void tern_gguf_close(tern_gguf *g); /* accepts NULL */

const char *tern_gguf_path(const tern_gguf *g);
uint32_t tern_gguf_version(const tern_gguf *g);
size_t tern_gguf_file_size(const tern_gguf *g);
uint64_t tern_gguf_alignment(const tern_gguf *g);
uint64_t tern_gguf_data_offset(const tern_gguf *g);
/* The mapping base (for madvise after repacking). */
const void *tern_gguf_base(const tern_gguf *g);
/* Copies n bytes of the file from mapped address at (inside the mapping)
 * into dst without touching the mapping (pread; memcpy for a memory
 * handle), so no page of it becomes resident in this process. */
tern_status tern_gguf_read(const tern_gguf *g, const void *at, size_t n, void *dst, tern_error *err);

/* ---- metadata ---- */
int64_t tern_gguf_n_kv(const tern_gguf *g);
tern_gguf_str tern_gguf_key(const tern_gguf *g, int64_t i);
int64_t tern_gguf_find_key(const tern_gguf *g, const char *key); /* -1 when absent */
tern_gguf_vtype tern_gguf_kv_type(const tern_gguf *g, int64_t i);
/* Scalar values: converted to the requested C type when the stored type
 * converts losslessly (any integer type to int64 when it fits, u32 from any
 * unsigned that fits, f32/f64 to double, bool). Return TERN_ENOTFOUND when
 * the key is absent, TERN_EFORMAT (naming key and stored type) when the
 * stored type does not convert. */
tern_status tern_gguf_get_int(const tern_gguf *g, const char *key, int64_t *out, tern_error *err);
tern_status tern_gguf_get_float(const tern_gguf *g, const char *key, double *out, tern_error *err);
tern_status tern_gguf_get_bool(const tern_gguf *g, const char *key, int *out, tern_error *err);
tern_status tern_gguf_get_str(const tern_gguf *g, const char *key, tern_gguf_str *out,
                              tern_error *err);
/* Arrays: element type and count; numeric elements read one at a time
 * (the data may be unaligned in the file); string elements by index. */
tern_status tern_gguf_get_array(const tern_gguf *g, const char *key, tern_gguf_vtype *elem_type,
                                uint64_t *n, tern_error *err);
int64_t tern_gguf_arr_int(const tern_gguf *g, int64_t kv, uint64_t j);    /* integer/bool elements */
double tern_gguf_arr_float(const tern_gguf *g, int64_t kv, uint64_t j);   /* f32/f64 elements */
tern_gguf_str tern_gguf_arr_str(const tern_gguf *g, int64_t kv, uint64_t j); /* string elements */

/* The same by key index (0 .. n_kv-1), for walking every key. */
tern_status tern_gguf_kv_int(const tern_gguf *g, int64_t i, int64_t *out, tern_error *err);
tern_status tern_gguf_kv_float(const tern_gguf *g, int64_t i, double *out, tern_error *err);
tern_status tern_gguf_kv_bool(const tern_gguf *g, int64_t i, int *out, tern_error *err);
tern_status tern_gguf_kv_str(const tern_gguf *g, int64_t i, tern_gguf_str *out, tern_error *err);
tern_status tern_gguf_kv_array(const tern_gguf *g, int64_t i, tern_gguf_vtype *elem_type,
                               uint64_t *n, tern_error *err);
/* The value's bytes exactly as serialized after its type field (arrays:
 * element type, count, elements), for copying a key verbatim. */
tern_status tern_gguf_kv_raw(const tern_gguf *g, int64_t i, const void **value, uint64_t *size);
/* "u32", "string", ...; "?" for ids outside the enum. */
const char *tern_gguf_vtype_name(tern_gguf_vtype t);

/* ---- tensors ---- */
int64_t tern_gguf_n_tensors(const tern_gguf *g);
const tern_gguf_tensor *tern_gguf_tensor_at(const tern_gguf *g, int64_t i);
const tern_gguf_tensor *tern_gguf_find_tensor(const tern_gguf *g, const char *name); /* NULL when absent */
/* Fills a tern_tensor (file layout, host memory) describing the tensor. */
void tern_gguf_tensor_view(const tern_gguf_tensor *gt, tern_tensor *out);

/* Maps a GGUF type id to a tern_type, or -1 with a message naming the id
 * ("type 2 (q4_0) is not supported", "type 39 (tl2 in bitnet.cpp, mxfp4 in
 * llama.cpp) is not supported"). */
int tern_gguf_map_type(uint32_t id, char *why, size_t why_len);

/* ---- writer (GGUF v3) ---- */
typedef struct tern_gguf_writer tern_gguf_writer;

tern_status tern_gguf_writer_create(tern_gguf_writer **out, tern_error *err);
void tern_gguf_writer_free(tern_gguf_writer *w);
/* Metadata (keys copied; duplicates rejected at write time). */
tern_status tern_gguf_set_u32(tern_gguf_writer *w, const char *key, uint32_t v);
tern_status tern_gguf_set_i32(tern_gguf_writer *w, const char *key, int32_t v);
tern_status tern_gguf_set_f32(tern_gguf_writer *w, const char *key, float v);
tern_status tern_gguf_set_bool(tern_gguf_writer *w, const char *key, int v);
tern_status tern_gguf_set_str(tern_gguf_writer *w, const char *key, const char *v);
/* Any fixed-size scalar type (u8 .. f64, bool): v points to one value. */
tern_status tern_gguf_set_scalar(tern_gguf_writer *w, const char *key, tern_gguf_vtype type,
                                 const void *v);
/* A value already serialized as GGUF stores it after the type field (what
 * tern_gguf_kv_raw returns): arrays of arrays, verbatim copies. */
tern_status tern_gguf_set_raw(tern_gguf_writer *w, const char *key, tern_gguf_vtype type,
                              const void *value, uint64_t size);
/* Arrays: numeric data copied (n elements of elem_type); strings copied. */
tern_status tern_gguf_set_arr(tern_gguf_writer *w, const char *key, tern_gguf_vtype elem_type,
                              const void *data, uint64_t n);
tern_status tern_gguf_set_arr_str(tern_gguf_writer *w, const char *key, const char *const *strs,
                                  const uint64_t *lens, uint64_t n);
/* Copies every metadata key of src whose name starts with prefix (e.g.
 * "tokenizer."). */
tern_status tern_gguf_copy_kv(tern_gguf_writer *w, const tern_gguf *src, const char *prefix,
                              tern_error *err);
/* Declares a tensor; its bytes come later from fill (called once while
 * writing, with a buffer of size bytes) so huge files stream to disk. */
typedef tern_status (*tern_gguf_fill_fn)(void *user, void *buf, uint64_t size, tern_error *err);
tern_status tern_gguf_add_tensor(tern_gguf_writer *w, const char *name, int type, int n_dims,
                                 const int64_t *ne, tern_gguf_fill_fn fill, void *user,
                                 tern_error *err);
/* Writes the file beside path and renames it over path, so a failed write
 * leaves no partial file. Only a regular file is replaced, and a symlink to
 * one is written through (its target replaced, the link kept); a device, a
 * FIFO, a folder or a dangling link at path is refused (tern/io.h). */
tern_status tern_gguf_write(tern_gguf_writer *w, const char *path, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
