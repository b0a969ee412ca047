/* gguf.c - the GGUF reader (v2, v3).
 *
 * Owns: mapping a file (or borrowing a caller's buffer), validating every
 * byte of the header, the metadata and the tensor infos once at open, and
 * O(1) accessors afterwards. Invariants after a successful open:
 *   - every key, string, array and tensor lies inside [0, size);
 *   - keys and tensor names are unique (hash indexes below);
 *   - string arrays have an offset table, so element j is O(1);
 *   - every tensor has a supported type, a shape its type's blocks divide,
 *     an offset aligned to general.alignment, and data inside the file.
 * Memory is bounded by the file: counts are checked against the bytes left
 * BEFORE anything is allocated, and tables grow as entries actually parse. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tern/checked.h"
#include "tern/gguf.h"
#include "tern/quant.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ARRAY_DEPTH 8      /* arrays of arrays nest at most this deep */
#define GGUF_MAX_ENTRIES (1u << 26) /* keys or tensors: far above any real model */
#define GGUF_MIN_KV_BYTES 13        /* key length 8 + type 4 + a 1-byte value */
#define GGUF_MIN_TENSOR_BYTES 32    /* name length 8 + n_dims 4 + ne 8 + type 4 + offset 8 */
#define GGUF_MAX_NAME 255           /* tensor names (tern_gguf_tensor.name_z) */

typedef struct gguf_kv {
    tern_gguf_str key;
    uint64_t key_off;  /* byte offset of the key's length field */
    uint64_t type_off; /* byte offset of the value type */
    uint64_t val_off;  /* first byte of the value (arrays: of the element type) */
    uint64_t val_end;  /* one past the value's last byte */
    uint64_t elem_off; /* arrays: first element */
    uint64_t n;        /* arrays: element count */
    uint32_t type;     /* tern_gguf_vtype */
    uint32_t elem_type;
    uint64_t *str_off; /* string arrays: offset of each element's length field */
} gguf_kv;

struct tern_gguf {
    char *path; /* the name used in messages */
    const uint8_t *base;
    size_t size;
    int mapped;
    int fd;     /* the open file behind the mapping (tern_gguf_read); -1 for memory */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    gguf_kv *kv; /* (n_kv) */
    int64_t n_kv;
    tern_gguf_tensor *tensors; /* (n_tensors) */
    uint64_t *tensor_off;      /* (n_tensors) byte offset of each tensor's info */
    int64_t n_tensors;
    uint32_t *kv_index; /* open addressing: entry index + 1, 0 = empty */
    uint32_t kv_mask;
    uint32_t *t_index;
    uint32_t t_mask;
};

/* Bytes of one scalar of each value type; 0 for string/array. */
static const uint8_t vtype_size[TERN_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const vtype_names[TERN_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

static const char *vtype_name(uint32_t t)
{
    return t < TERN_GGUF_VTYPE_COUNT ? vtype_names[t] : "?";
}

/* Smallest encoding of one element: what a count is checked against. */
static uint64_t vtype_min_size(uint32_t t)
{
    if (t == TERN_GGUF_STRING) return 8;
    if (t == TERN_GGUF_ARRAY) return 12;
    return vtype_size[t];
}

/* ---- type ids ---- */

/* ggml's type ids as llama.cpp numbers them (for messages); tern keeps a
 * subset. 36..39 are where the peers disagree. */
static const char *const ggml_type_names[] = {
    [0] = "f32",       [1] = "f16",        [2] = "q4_0",      [3] = "q4_1",
    [4] = "q4_2 (removed)", [5] = "q4_3 (removed)", [6] = "q5_0", [7] = "q5_1",
    [8] = "q8_0",      [9] = "q8_1",       [10] = "q2_k",     [11] = "q3_k",
    [12] = "q4_k",     [13] = "q5_k",      [14] = "q6_k",     [15] = "q8_k",
    [16] = "iq2_xxs",  [17] = "iq2_xs",    [18] = "iq3_xxs",  [19] = "iq1_s",
    [20] = "iq4_nl",   [21] = "iq3_s",     [22] = "iq2_s",    [23] = "iq4_xs",
    [24] = "i8",       [25] = "i16",       [26] = "i32",      [27] = "i64",
    [28] = "f64",      [29] = "iq1_m",     [30] = "bf16",     [31] = "q4_0_4_4 (removed)",
    [32] = "q4_0_4_8 (removed)", [33] = "q4_0_8_8 (removed)", [34] = "tq1_0", [35] = "tq2_0",
    [36] = "i2_s",     [37] = "i8_s (bitnet.cpp activations; retired iq4_nl_4_8 in llama.cpp)",
};

int tern_gguf_map_type(uint32_t id, char *why, size_t why_len)
{
    char tmp[8];
    if (!why) why = tmp, why_len = sizeof tmp;
    switch (id) {
    case 0: return TERN_TYPE_F32;
    case 1: return TERN_TYPE_F16;
    case 8: return TERN_TYPE_Q8_0;
    case 30: return TERN_TYPE_BF16;
    case 34: return TERN_TYPE_TQ1_0;
    case 35: return TERN_TYPE_TQ2_0;
    case 36: return TERN_TYPE_I2_S; /* llama.cpp retired 36, so it is always bitnet.cpp's */
    case 38:
        snprintf(why, why_len,
                 "type 38 (tl1 in bitnet.cpp, a retired iq4_nl_8_8 id in llama.cpp) is not supported: "
                 "its layout depends on a kernel configuration not stored in the file; convert the "
                 "model to i2_s (or tq2_0/tq1_0)");
        return -1;
    case 39:
        snprintf(why, why_len,
                 "type 39 (tl2 in bitnet.cpp, mxfp4 in llama.cpp) is not supported: convert the model "
                 "to i2_s (bitnet.cpp) or tq2_0/tq1_0 (llama.cpp)");
        return -1;
    default:
        if (id < sizeof ggml_type_names / sizeof ggml_type_names[0] && ggml_type_names[id])
            snprintf(why, why_len, "type %u (%s) is not supported: tern reads f32, f16, bf16, q8_0, "
                     "tq1_0, tq2_0 and i2_s", id, ggml_type_names[id]);
        else
            snprintf(why, why_len, "type %u is not a known ggml type", id);
        return -1;
    }
}

/* ---- the parse cursor ---- */

typedef struct cur {
    const tern_gguf *g;
    const uint8_t *b;
    uint64_t size, pos; /* invariant: pos <= size */
    tern_error *err;
    char ctx[200];      /* "key #3 'general.name'", "tensor #0 'x'" */
} cur;

static tern_status failf(cur *c, tern_status st, uint64_t off, const char *field, const char *fmt,
                         ...) __attribute__((format(printf, 5, 6)));

static tern_status failf(cur *c, tern_status st, uint64_t off, const char *field, const char *fmt,
                         ...)
{
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return tern_error_set(c->err, st, "%s: %s%s%s at byte %llu: %s", c->g->path, c->ctx,
                          c->ctx[0] ? " " : "", field, (unsigned long long)off, what);
}

static inline uint64_t left(const cur *c)
{
    return c->size - c->pos;
}

static tern_status need(cur *c, uint64_t n, const char *field)
{
    if (n <= left(c)) return TERN_OK;
    return failf(c, TERN_EFORMAT, c->pos, field, "truncated: needs %llu bytes, %llu left in the file",
                 (unsigned long long)n, (unsigned long long)left(c));
}

static tern_status rd_u32(cur *c, const char *field, uint32_t *v)
{
    tern_status st = need(c, 4, field);
    if (st) return st;
    memcpy(v, c->b + c->pos, 4);
    c->pos += 4;
    return TERN_OK;
}

static tern_status rd_u64(cur *c, const char *field, uint64_t *v)
{
    tern_status st = need(c, 8, field);
    if (st) return st;
    memcpy(v, c->b + c->pos, 8);
    c->pos += 8;
    return TERN_OK;
}

/* A length-prefixed string; its length is checked against the bytes left. */
static tern_status rd_str(cur *c, const char *field, tern_gguf_str *s)
{
    uint64_t at = c->pos, len;
    tern_status st = rd_u64(c, field, &len);
    if (st) return st;
    if (len > left(c))
        return failf(c, TERN_EFORMAT, at, field, "string length %llu exceeds the %llu bytes left",
                     (unsigned long long)len, (unsigned long long)left(c));
    s->ptr = (const char *)c->b + c->pos;
    s->len = len;
    c->pos += len;
    return TERN_OK;
}

/* The count of an array (or of header entries) must fit in the bytes left,
 * each element taking at least min bytes: checked before any allocation. */
static tern_status check_count(cur *c, uint64_t at, const char *field, uint64_t n, uint64_t min,
                               uint64_t avail, const char *what)
{
    if (min == 0 || n <= avail / min) return TERN_OK;
    return failf(c, TERN_EFORMAT, at, field,
                 "%llu %s cannot fit in the %llu bytes left (each takes at least %llu)",
                 (unsigned long long)n, what, (unsigned long long)avail, (unsigned long long)min);
}

/* Walks one array value (element type, count, elements) and leaves pos after
 * it. offs (may be NULL) receives each string element's offset. */
static tern_status walk_array(cur *c, int depth, uint32_t *elem_type, uint64_t *count,
                              uint64_t *elem_off, uint64_t **offs)
{
    uint64_t at = c->pos, n;
    uint32_t et;
    tern_status st = rd_u32(c, "array element type", &et);
    if (st) return st;
    if (et >= TERN_GGUF_VTYPE_COUNT)
        return failf(c, TERN_EFORMAT, at, "array element type", "%u is not a GGUF value type (0..12)",
                     et);
    if (et == TERN_GGUF_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
        return failf(c, TERN_EUNSUPPORTED, at, "array element type",
                     "arrays nested more than %d deep are not supported", GGUF_MAX_ARRAY_DEPTH);
    at = c->pos;
    if ((st = rd_u64(c, "array length", &n))) return st;
    if ((st = check_count(c, at, "array length", n, vtype_min_size(et), left(c), "elements")))
        return st;
    *elem_type = et;
    *count = n;
    *elem_off = c->pos;
    if (vtype_size[et]) {
        c->pos += n * vtype_size[et]; /* cannot overflow: checked above */
        return TERN_OK;
    }
    uint64_t *o = NULL;
    if (offs && et == TERN_GGUF_STRING && n) {
        o = malloc(n * sizeof *o); /* n * 8 <= bytes left: bounded by the file */
        if (!o) return failf(c, TERN_ENOMEM, at, "array length", "no memory for %llu offsets",
                             (unsigned long long)n);
    }
    for (uint64_t j = 0; j < n; j++) {
        if (et == TERN_GGUF_STRING) {
            uint64_t s_at = c->pos, len;
            /* The count check assumed empty strings: longer ones can still run out. */
            if (8 > left(c)) {
                free(o);
                return failf(c, TERN_EFORMAT, s_at, "array string length",
                             "element %llu of %llu: truncated, needs 8 bytes, %llu left",
                             (unsigned long long)j, (unsigned long long)n,
                             (unsigned long long)left(c));
            }
            memcpy(&len, c->b + c->pos, 8);
            c->pos += 8;
            if (len > left(c)) {
                free(o);
                return failf(c, TERN_EFORMAT, s_at, "array string length",
                             "element %llu of %llu: length %llu exceeds the %llu bytes left",
                             (unsigned long long)j, (unsigned long long)n, (unsigned long long)len,
                             (unsigned long long)left(c));
            }
            if (o) o[j] = s_at;
            c->pos += len;
        } else {
            uint32_t et2;
            uint64_t n2, off2;
            if ((st = walk_array(c, depth + 1, &et2, &n2, &off2, NULL))) return st;
        }
    }
    if (offs) *offs = o;
    return TERN_OK;
}

/* ---- hash indexes over keys and tensor names ---- */

static uint32_t hash_bytes(const char *p, uint64_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static int str_eq(tern_gguf_str a, const char *p, uint64_t n)
{
    return a.len == n && memcmp(a.ptr, p, n) == 0;
}

static uint32_t *index_alloc(int64_t n, uint32_t *mask)
{
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap <<= 1;
    *mask = cap - 1;
    return calloc(cap, sizeof(uint32_t));
}

/* Inserts entry i (name s); returns the index of an earlier equal entry, or -1. */
static int64_t index_insert(uint32_t *tab, uint32_t mask, tern_gguf_str s, int64_t i,
                            tern_gguf_str (*name_of)(const tern_gguf *, int64_t), const tern_gguf *g)
{
    for (uint32_t h = hash_bytes(s.ptr, s.len) & mask;; h = (h + 1) & mask) {
        if (!tab[h]) {
            tab[h] = (uint32_t)i + 1;
            return -1;
        }
        if (str_eq(name_of(g, tab[h] - 1), s.ptr, s.len)) return tab[h] - 1;
    }
}

static int64_t index_find(const uint32_t *tab, uint32_t mask, const char *p, uint64_t n,
                          tern_gguf_str (*name_of)(const tern_gguf *, int64_t), const tern_gguf *g)
{
    if (!tab) return -1;
    for (uint32_t h = hash_bytes(p, n) & mask;; h = (h + 1) & mask) {
        if (!tab[h]) return -1;
        if (str_eq(name_of(g, tab[h] - 1), p, n)) return tab[h] - 1;
    }
}

static tern_gguf_str kv_name(const tern_gguf *g, int64_t i)
{
    return g->kv[i].key;
}

static tern_gguf_str tensor_name(const tern_gguf *g, int64_t i)
{
    return g->tensors[i].name;
}

/* ---- parsing ---- */

static void set_ctx(cur *c, const char *what, int64_t i, tern_gguf_str name)
{
    if (name.ptr)
        snprintf(c->ctx, sizeof c->ctx, "%s #%lld '%.*s'", what, (long long)i,
                 (int)(name.len > 96 ? 96 : name.len), name.ptr);
    else
        snprintf(c->ctx, sizeof c->ctx, "%s #%lld", what, (long long)i);
}

static tern_status parse_header(cur *c, tern_gguf *g, uint64_t *n_tensors, uint64_t *n_kv)
{
    tern_status st;
    snprintf(c->ctx, sizeof c->ctx, "header");
    if ((st = need(c, 4, "magic"))) return st;
    if (memcmp(c->b, "GGUF", 4) != 0)
        return failf(c, TERN_EFORMAT, 0, "magic", "bytes %02x %02x %02x %02x are not 'GGUF'",
                     c->b[0], c->b[1], c->b[2], c->b[3]);
    c->pos = 4;
    if ((st = rd_u32(c, "version", &g->version))) return st;
    if (g->version == 1)
        return failf(c, TERN_EUNSUPPORTED, 4, "version",
                     "GGUF v1 is not supported (32-bit counts); re-convert the model to v3");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0)
            return failf(c, TERN_EUNSUPPORTED, 4, "version",
                         "0x%08x looks byte-swapped: big-endian GGUF is not supported", g->version);
        return failf(c, TERN_EUNSUPPORTED, 4, "version", "%u is not supported (2 or 3)", g->version);
    }
    uint64_t at_t = c->pos;
    if ((st = rd_u64(c, "n_tensors", n_tensors))) return st;
    uint64_t at_kv = c->pos;
    if ((st = rd_u64(c, "n_kv", n_kv))) return st;
    if ((st = check_count(c, at_kv, "n_kv", *n_kv, GGUF_MIN_KV_BYTES, left(c), "keys"))) return st;
    if ((st = check_count(c, at_t, "n_tensors", *n_tensors, GGUF_MIN_TENSOR_BYTES,
                          left(c) - *n_kv * GGUF_MIN_KV_BYTES, "tensor infos")))
        return st;
    if (*n_kv > GGUF_MAX_ENTRIES || *n_tensors > GGUF_MAX_ENTRIES)
        return failf(c, TERN_EUNSUPPORTED, *n_kv > GGUF_MAX_ENTRIES ? at_kv : at_t,
                     *n_kv > GGUF_MAX_ENTRIES ? "n_kv" : "n_tensors", "more than %u entries",
                     GGUF_MAX_ENTRIES);
    return TERN_OK;
}

static tern_status parse_kv(cur *c, tern_gguf *g, uint64_t n_kv)
{
    tern_status st;
    int64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        if ((int64_t)i == cap) {
            cap = cap ? 2 * cap : 64;
            gguf_kv *nk = realloc(g->kv, (size_t)cap * sizeof *nk);
            if (!nk) return failf(c, TERN_ENOMEM, c->pos, "key", "no memory for %lld keys",
                                  (long long)cap);
            g->kv = nk;
        }
        gguf_kv *kv = &g->kv[i];
        memset(kv, 0, sizeof *kv);
        set_ctx(c, "key", (int64_t)i, (tern_gguf_str){NULL, 0});
        kv->key_off = c->pos;
        if ((st = rd_str(c, "name", &kv->key))) return st;
        g->n_kv = (int64_t)i + 1; /* the entry is now safe to free */
        if (memchr(kv->key.ptr, 0, kv->key.len))
            return failf(c, TERN_EFORMAT, kv->key_off, "name", "key contains a NUL byte");
        set_ctx(c, "key", (int64_t)i, kv->key);
        kv->type_off = c->pos;
        if ((st = rd_u32(c, "value type", &kv->type))) return st;
        if (kv->type >= TERN_GGUF_VTYPE_COUNT)
            return failf(c, TERN_EFORMAT, kv->type_off, "value type",
                         "%u is not a GGUF value type (0..12)", kv->type);
        kv->val_off = c->pos;
        if (kv->type == TERN_GGUF_STRING) {
            tern_gguf_str s;
            if ((st = rd_str(c, "value", &s))) return st;
        } else if (kv->type == TERN_GGUF_ARRAY) {
            if ((st = walk_array(c, 0, &kv->elem_type, &kv->n, &kv->elem_off, &kv->str_off)))
                return st;
        } else {
            if ((st = need(c, vtype_size[kv->type], "value"))) return st;
            c->pos += vtype_size[kv->type];
        }
        kv->val_end = c->pos;
    }
    c->ctx[0] = 0;
    g->kv_index = index_alloc(g->n_kv, &g->kv_mask);
    if (!g->kv_index) return failf(c, TERN_ENOMEM, 0, "keys", "no memory for the key index");
    for (int64_t i = 0; i < g->n_kv; i++) {
        int64_t d = index_insert(g->kv_index, g->kv_mask, g->kv[i].key, i, kv_name, g);
        if (d >= 0) {
            set_ctx(c, "key", i, g->kv[i].key);
            return failf(c, TERN_EFORMAT, g->kv[i].key_off, "name",
                         "duplicate key (first defined as key #%lld at byte %llu)", (long long)d,
                         (unsigned long long)g->kv[d].key_off);
        }
    }
    return TERN_OK;
}

static tern_status parse_alignment(cur *c, tern_gguf *g)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = tern_gguf_find_key(g, "general.alignment");
    if (i < 0) return TERN_OK;
    const gguf_kv *kv = &g->kv[i];
    set_ctx(c, "key", i, kv->key);
    int64_t v;
    if (tern_gguf_kv_int(g, i, &v, NULL) != TERN_OK)
        return failf(c, TERN_EFORMAT, kv->type_off, "value type",
                     "general.alignment must be an unsigned integer, found %s",
                     vtype_name(kv->type));
    if (v <= 0 || (v & (v - 1)) != 0)
        return failf(c, TERN_EFORMAT, kv->val_off, "value",
                     "general.alignment %lld is not a nonzero power of two", (long long)v);
    g->alignment = (uint64_t)v;
    c->ctx[0] = 0;
    return TERN_OK;
}

/* Shape and type of one tensor info; pos is after its offset field. */
static tern_status parse_tensor_info(cur *c, tern_gguf *g, tern_gguf_tensor *t, uint64_t *off_at)
{
    tern_status st;
    uint64_t at = c->pos;
    if ((st = rd_str(c, "name", &t->name))) return st;
    if (t->name.len > GGUF_MAX_NAME)
        return failf(c, TERN_EFORMAT, at, "name", "tensor name of %llu bytes is longer than %d",
                     (unsigned long long)t->name.len, GGUF_MAX_NAME);
    if (memchr(t->name.ptr, 0, t->name.len))
        return failf(c, TERN_EFORMAT, at, "name", "tensor name contains a NUL byte");
    memcpy(t->name_z, t->name.ptr, t->name.len);
    t->name_z[t->name.len] = 0;
    set_ctx(c, "tensor", (int64_t)(t - g->tensors), t->name);
    at = c->pos;
    uint32_t n_dims;
    if ((st = rd_u32(c, "n_dims", &n_dims))) return st;
    if (n_dims == 0 || n_dims > TERN_MAX_DIMS)
        return failf(c, TERN_EFORMAT, at, "n_dims", "%u is outside 1..%d", n_dims, TERN_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < TERN_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t v;
        at = c->pos;
        if ((st = rd_u64(c, "ne", &v))) return st;
        if (v > (uint64_t)INT64_MAX)
            return failf(c, TERN_EFORMAT, at, "ne", "ne[%u] = %lld is negative", d, (long long)v);
        if (tern_mul_overflows_u64(nel, v, &nel) || nel > (uint64_t)INT64_MAX)
            return failf(c, TERN_EFORMAT, at, "ne",
                         "ne[%u] = %llu makes the element count overflow 64 bits", d,
                         (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    at = c->pos;
    if ((st = rd_u32(c, "type", &t->file_type_id))) return st;
    char why[256];
    t->type = tern_gguf_map_type(t->file_type_id, why, sizeof why);
    if (t->type < 0) return failf(c, TERN_EUNSUPPORTED, at, "type", "%s", why);
    const tern_type_traits *tt = tern_type_get(t->type);
    if (t->type == TERN_TYPE_I2_S) {
        /* bitnet.cpp's ARM builds write 64-value blocks, its x86 builds 128
         * (../shared/ref/README.md section 7) and no key says which; only
         * an element count that is an odd multiple of 64 gives it away */
        if (nel % TERN_I2S_BLOCK == TERN_I2S_BLOCK / 2 && t->ne[0] % 4 == 0)
            return failf(c, TERN_EUNSUPPORTED, at, "type",
                         "i2_s tensor of %llu elements (an odd multiple of 64): only bitnet.cpp's "
                         "ARM build writes that (64-value blocks); tern reads the x86 layout "
                         "(128-value blocks) - requantize the model on x86, or to tq2_0/tq1_0",
                         (unsigned long long)nel);
        if (nel % TERN_I2S_BLOCK != 0 || t->ne[0] % 4 != 0)
            return failf(c, TERN_EFORMAT, at, "type",
                         "i2_s needs a multiple of %d elements and ne[0] a multiple of 4; shape has "
                         "%llu elements, ne[0] = %lld", TERN_I2S_BLOCK, (unsigned long long)nel,
                         (long long)t->ne[0]);
    } else if (t->ne[0] % tt->blck_size != 0) {
        return failf(c, TERN_EFORMAT, at, "type",
                     "ne[0] = %lld is not a multiple of %s's block size %lld", (long long)t->ne[0],
                     tt->name, (long long)tt->blck_size);
    }
    t->size = nel == 0 && t->type != TERN_TYPE_I2_S ? 0 : tern_tensor_file_bytes(t->type, t->ne);
    if (t->size == 0 && nel != 0)
        return failf(c, TERN_EFORMAT, at, "type", "the byte size of %llu %s elements overflows",
                     (unsigned long long)nel, tt->name);
    *off_at = c->pos;
    if ((st = rd_u64(c, "offset", &t->offset))) return st;
    if (t->offset % g->alignment != 0)
        return failf(c, TERN_EFORMAT, *off_at, "offset",
                     "data offset %llu is not a multiple of the alignment %llu",
                     (unsigned long long)t->offset, (unsigned long long)g->alignment);
    t->scale = 1.0f;
    return TERN_OK;
}

static tern_status parse_tensors(cur *c, tern_gguf *g, uint64_t n_tensors)
{
    tern_status st;
    uint64_t at = c->pos;
    snprintf(c->ctx, sizeof c->ctx, "header");
    if ((st = check_count(c, at, "n_tensors", n_tensors, GGUF_MIN_TENSOR_BYTES, left(c),
                          "tensor infos")))
        return st;
    int64_t cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if ((int64_t)i == cap) {
            cap = cap ? 2 * cap : 64;
            tern_gguf_tensor *nt = realloc(g->tensors, (size_t)cap * sizeof *nt);
            uint64_t *no = realloc(g->tensor_off, (size_t)cap * sizeof *no);
            if (nt) g->tensors = nt;
            if (no) g->tensor_off = no;
            if (!nt || !no)
                return failf(c, TERN_ENOMEM, c->pos, "tensor", "no memory for %lld tensors",
                             (long long)cap);
        }
        tern_gguf_tensor *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        set_ctx(c, "tensor", (int64_t)i, (tern_gguf_str){NULL, 0});
        if ((st = parse_tensor_info(c, g, t, &g->tensor_off[i]))) return st;
        g->n_tensors = (int64_t)i + 1;
    }
    c->ctx[0] = 0;
    /* The data section starts at the next multiple of the alignment. */
    if (tern_align_overflows(c->pos, g->alignment, &g->data_offset))
        return failf(c, TERN_EFORMAT, c->pos, "data section", "aligned offset overflows");
    g->t_index = index_alloc(g->n_tensors, &g->t_mask);
    if (!g->t_index) return failf(c, TERN_ENOMEM, 0, "tensors", "no memory for the tensor index");
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tern_gguf_tensor *t = &g->tensors[i];
        set_ctx(c, "tensor", i, t->name);
        int64_t d = index_insert(g->t_index, g->t_mask, t->name, i, tensor_name, g);
        if (d >= 0)
            return failf(c, TERN_EFORMAT, g->tensor_off[i], "name",
                         "duplicate tensor name (first is tensor #%lld)", (long long)d);
        uint64_t start, end;
        if (tern_add_overflows_u64(g->data_offset, t->offset, &start) ||
            tern_add_overflows_u64(start, t->size, &end) || end > c->size)
            return failf(c, TERN_EFORMAT, g->tensor_off[i], "offset",
                         "data [%llu + %llu, +%llu bytes) ends past the end of the file (%llu bytes)",
                         (unsigned long long)g->data_offset, (unsigned long long)t->offset,
                         (unsigned long long)t->size, (unsigned long long)c->size);
        t->data = c->b + start;
        if (t->type == TERN_TYPE_I2_S) {
            uint64_t nel = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] *
                           (uint64_t)t->ne[3];
            memcpy(&t->scale, (const uint8_t *)t->data + nel / 4, 4);
        }
    }
    c->ctx[0] = 0;
    return TERN_OK;
}

static tern_status parse(tern_gguf *g, tern_error *err)
{
    cur c = {.g = g, .b = g->base, .size = g->size, .pos = 0, .err = err};
    uint64_t n_tensors, n_kv;
    tern_status st;
    if ((st = parse_header(&c, g, &n_tensors, &n_kv))) return st;
    if ((st = parse_kv(&c, g, n_kv))) return st;
    if ((st = parse_alignment(&c, g))) return st;
    return parse_tensors(&c, g, n_tensors);
}

static tern_status open_common(tern_gguf *g, tern_gguf **out, tern_error *err)
{
    tern_status st = parse(g, err);
    if (st) {
        tern_gguf_close(g);
        return st;
    }
    *out = g;
    return TERN_OK;
}

static tern_gguf *new_handle(const char *name)
{
    tern_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->fd = -1;
    g->path = strdup(name ? name : "<memory>");
    if (!g->path) {
        free(g);
        return NULL;
    }
    return g;
}

tern_status tern_gguf_open_memory(const void *data, size_t size, const char *name, tern_gguf **out,
                                  tern_error *err)
{
    *out = NULL;
    if (!data && size) return tern_error_set(err, TERN_EINVAL, "%s: NULL buffer", name ? name : "<memory>");
    tern_gguf *g = new_handle(name);
    if (!g) return tern_error_set(err, TERN_ENOMEM, "%s: no memory", name ? name : "<memory>");
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    return open_common(g, out, err);
}

/* The parse reads four bytes at the end of every I2_S tensor (its scale).
 * Where the page cache holds the file in 2 MB folios (Linux 6.x large
 * folios), each such read mapped the whole folio: ~250 MB of a 2B4T file
 * resident before anything used it, raising the load's peak RSS. The data
 * section's pages are unmapped again (they stay in the page cache). */
static void release_data_pages(const tern_gguf *g)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)g->base + g->data_offset + page - 1) & ~(page - 1);
    uintptr_t e = (uintptr_t)g->base + g->size;
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

tern_status tern_gguf_open(const char *path, tern_gguf **out, tern_error *err)
{
    *out = NULL;
    /* O_NONBLOCK: a FIFO (or a device that waits) must not block the open;
     * the type is checked on the open file before anything is read */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return tern_error_set(err, TERN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int e = errno;
        close(fd);
        return tern_error_set(err, TERN_EIO, "%s: %s", path,
                              S_ISREG(sb.st_mode) ? strerror(e) : "not a regular file");
    }
    tern_gguf *g = new_handle(path);
    if (!g) {
        close(fd);
        return tern_error_set(err, TERN_ENOMEM, "%s: no memory", path);
    }
    g->size = (size_t)sb.st_size;
    if (g->size > 0) {
        void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            tern_gguf_close(g);
            return tern_error_set(err, TERN_EIO, "%s: mmap of %zu bytes failed: %s", path,
                                  (size_t)sb.st_size, strerror(e));
        }
        g->base = m;
        g->mapped = 1;
    } else {
        g->base = (const uint8_t *)"";
    }
    g->fd = fd;
    tern_status st = open_common(g, out, err);
    if (!st && g->mapped) release_data_pages(g);
    return st;
}

void tern_gguf_close(tern_gguf *g)
{
    if (!g) return;
    if (g->mapped) munmap((void *)g->base, g->size);
    if (g->fd >= 0) close(g->fd);
    for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
    free(g->tensor_off);
    free(g->kv_index);
    free(g->t_index);
    free(g->path);
    free(g);
}

/* ---- file-level accessors ---- */

const char *tern_gguf_path(const tern_gguf *g) { return g->path; }
uint32_t tern_gguf_version(const tern_gguf *g) { return g->version; }
size_t tern_gguf_file_size(const tern_gguf *g) { return g->size; }
uint64_t tern_gguf_alignment(const tern_gguf *g) { return g->alignment; }
uint64_t tern_gguf_data_offset(const tern_gguf *g) { return g->data_offset; }
const void *tern_gguf_base(const tern_gguf *g) { return g->base; }

tern_status tern_gguf_read(const tern_gguf *g, const void *at, size_t n, void *dst, tern_error *err)
{
    uint64_t off = (uint64_t)((const uint8_t *)at - g->base);
    if ((const uint8_t *)at < g->base || off > g->size || n > g->size - off)
        return tern_error_set(err, TERN_EINVAL, "%s: read of %zu bytes outside the file", g->path, n);
    if (g->fd < 0) {
        memcpy(dst, at, n);
        return TERN_OK;
    }
    for (size_t done = 0; done < n;) {
        ssize_t r = pread(g->fd, (uint8_t *)dst + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return tern_error_set(err, TERN_EIO, "%s: reading %zu bytes at %llu: %s", g->path, n,
                                  (unsigned long long)(off + done), r < 0 ? strerror(errno) : "end of file");
        done += (size_t)r;
    }
    return TERN_OK;
}

/* ---- metadata ---- */

int64_t tern_gguf_n_kv(const tern_gguf *g) { return g->n_kv; }

static const gguf_kv *kv_at(const tern_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

tern_gguf_str tern_gguf_key(const tern_gguf *g, int64_t i)
{
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : (tern_gguf_str){NULL, 0};
}

int64_t tern_gguf_find_key(const tern_gguf *g, const char *key)
{
    return index_find(g->kv_index, g->kv_mask, key, strlen(key), kv_name, g);
}

tern_gguf_vtype tern_gguf_kv_type(const tern_gguf *g, int64_t i)
{
    const gguf_kv *kv = kv_at(g, i);
    return kv ? (tern_gguf_vtype)kv->type : TERN_GGUF_VTYPE_COUNT;
}

/* Reads one integer of type t at p as int64; 0 when it does not fit. */
static int scalar_int(uint32_t t, const uint8_t *p, int64_t *out)
{
    switch (t) {
    case TERN_GGUF_U8: *out = p[0]; return 1;
    case TERN_GGUF_I8: *out = (int8_t)p[0]; return 1;
    case TERN_GGUF_BOOL: *out = p[0] != 0; return 1;
    case TERN_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case TERN_GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 1; }
    case TERN_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case TERN_GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 1; }
    case TERN_GGUF_I64: { int64_t v; memcpy(&v, p, 8); *out = v; return 1; }
    case TERN_GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)v;
        return 1;
    }
    default: return 0;
    }
}

static int scalar_float(uint32_t t, const uint8_t *p, double *out)
{
    int64_t v;
    if (t == TERN_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
        return 1;
    }
    if (t == TERN_GGUF_F64) {
        memcpy(out, p, 8);
        return 1;
    }
    if (t != TERN_GGUF_BOOL && scalar_int(t, p, &v)) {
        *out = (double)v;
        return 1;
    }
    return 0;
}

static tern_status wrong_type(const tern_gguf *g, const gguf_kv *kv, const char *want,
                              tern_error *err)
{
    return tern_error_set(err, TERN_EFORMAT, "%s: key '%.*s' at byte %llu: expected %s, found %s",
                          g->path, (int)(kv->key.len > 96 ? 96 : kv->key.len), kv->key.ptr,
                          (unsigned long long)kv->key_off, want, vtype_name(kv->type));
}

static tern_status bad_index(const tern_gguf *g, int64_t i, tern_error *err)
{
    return tern_error_set(err, TERN_ENOTFOUND, "%s: no key #%lld (%lld keys)", g->path,
                          (long long)i, (long long)g->n_kv);
}

tern_status tern_gguf_kv_int(const tern_gguf *g, int64_t i, int64_t *out, tern_error *err)
{
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return bad_index(g, i, err);
    if (kv->type == TERN_GGUF_BOOL || !scalar_int(kv->type, g->base + kv->val_off, out))
        return wrong_type(g, kv, "an integer that fits in int64", err);
    return TERN_OK;
}

tern_status tern_gguf_kv_float(const tern_gguf *g, int64_t i, double *out, tern_error *err)
{
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return bad_index(g, i, err);
    if (!scalar_float(kv->type, g->base + kv->val_off, out))
        return wrong_type(g, kv, "a number", err);
    return TERN_OK;
}

tern_status tern_gguf_kv_bool(const tern_gguf *g, int64_t i, int *out, tern_error *err)
{
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return bad_index(g, i, err);
    if (kv->type != TERN_GGUF_BOOL) return wrong_type(g, kv, "bool", err);
    *out = g->base[kv->val_off] != 0;
    return TERN_OK;
}

tern_status tern_gguf_kv_str(const tern_gguf *g, int64_t i, tern_gguf_str *out, tern_error *err)
{
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return bad_index(g, i, err);
    if (kv->type != TERN_GGUF_STRING) return wrong_type(g, kv, "string", err);
    memcpy(&out->len, g->base + kv->val_off, 8);
    out->ptr = (const char *)g->base + kv->val_off + 8;
    return TERN_OK;
}

tern_status tern_gguf_kv_array(const tern_gguf *g, int64_t i, tern_gguf_vtype *elem_type,
                               uint64_t *n, tern_error *err)
{
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return bad_index(g, i, err);
    if (kv->type != TERN_GGUF_ARRAY) return wrong_type(g, kv, "array", err);
    if (elem_type) *elem_type = (tern_gguf_vtype)kv->elem_type;
    if (n) *n = kv->n;
    return TERN_OK;
}

tern_status tern_gguf_kv_raw(const tern_gguf *g, int64_t i, const void **value, uint64_t *size)
{
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return TERN_ENOTFOUND;
    *value = g->base + kv->val_off;
    *size = kv->val_end - kv->val_off;
    return TERN_OK;
}

static tern_status lookup(const tern_gguf *g, const char *key, int64_t *i, tern_error *err)
{
    *i = tern_gguf_find_key(g, key);
    if (*i < 0) return tern_error_set(err, TERN_ENOTFOUND, "%s: key '%s' not found", g->path, key);
    return TERN_OK;
}

tern_status tern_gguf_get_int(const tern_gguf *g, const char *key, int64_t *out, tern_error *err)
{
    int64_t i;
    tern_status st = lookup(g, key, &i, err);
    return st ? st : tern_gguf_kv_int(g, i, out, err);
}

tern_status tern_gguf_get_float(const tern_gguf *g, const char *key, double *out, tern_error *err)
{
    int64_t i;
    tern_status st = lookup(g, key, &i, err);
    return st ? st : tern_gguf_kv_float(g, i, out, err);
}

tern_status tern_gguf_get_bool(const tern_gguf *g, const char *key, int *out, tern_error *err)
{
    int64_t i;
    tern_status st = lookup(g, key, &i, err);
    return st ? st : tern_gguf_kv_bool(g, i, out, err);
}

tern_status tern_gguf_get_str(const tern_gguf *g, const char *key, tern_gguf_str *out,
                              tern_error *err)
{
    int64_t i;
    tern_status st = lookup(g, key, &i, err);
    return st ? st : tern_gguf_kv_str(g, i, out, err);
}

tern_status tern_gguf_get_array(const tern_gguf *g, const char *key, tern_gguf_vtype *elem_type,
                                uint64_t *n, tern_error *err)
{
    int64_t i;
    tern_status st = lookup(g, key, &i, err);
    return st ? st : tern_gguf_kv_array(g, i, elem_type, n, err);
}

/* Element j of array kv of a fixed-size element type, or NULL. */
static const uint8_t *arr_elem(const tern_gguf *g, int64_t kv_i, uint64_t j)
{
    const gguf_kv *kv = kv_at(g, kv_i);
    if (!kv || kv->type != TERN_GGUF_ARRAY || j >= kv->n || !vtype_size[kv->elem_type]) return NULL;
    return g->base + kv->elem_off + j * vtype_size[kv->elem_type];
}

int64_t tern_gguf_arr_int(const tern_gguf *g, int64_t kv, uint64_t j)
{
    const uint8_t *p = arr_elem(g, kv, j);
    int64_t v = 0;
    if (p && !scalar_int(g->kv[kv].elem_type, p, &v)) {
        uint64_t u; /* u64 above INT64_MAX: wraps, as documented */
        memcpy(&u, p, 8);
        v = (int64_t)u;
    }
    return v;
}

double tern_gguf_arr_float(const tern_gguf *g, int64_t kv, uint64_t j)
{
    const uint8_t *p = arr_elem(g, kv, j);
    double v = 0;
    if (p) scalar_float(g->kv[kv].elem_type, p, &v);
    return v;
}

tern_gguf_str tern_gguf_arr_str(const tern_gguf *g, int64_t kv_i, uint64_t j)
{
    const gguf_kv *kv = kv_at(g, kv_i);
    tern_gguf_str s = {NULL, 0};
    if (!kv || kv->type != TERN_GGUF_ARRAY || kv->elem_type != TERN_GGUF_STRING || j >= kv->n)
        return s;
    memcpy(&s.len, g->base + kv->str_off[j], 8);
    s.ptr = (const char *)g->base + kv->str_off[j] + 8;
    return s;
}

/* ---- tensors ---- */

int64_t tern_gguf_n_tensors(const tern_gguf *g) { return g->n_tensors; }

const tern_gguf_tensor *tern_gguf_tensor_at(const tern_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const tern_gguf_tensor *tern_gguf_find_tensor(const tern_gguf *g, const char *name)
{
    int64_t i = index_find(g->t_index, g->t_mask, name, strlen(name), tensor_name, g);
    return i < 0 ? NULL : &g->tensors[i];
}

void tern_gguf_tensor_view(const tern_gguf_tensor *gt, tern_tensor *out)
{
    tern_tensor_init(out, gt->type, gt->n_dims, gt->ne);
    out->data = (void *)gt->data;
    out->scale = gt->scale;
    out->name = gt->name_z;
}

const char *tern_gguf_vtype_name(tern_gguf_vtype t)
{
    return vtype_name((uint32_t)t);
}
