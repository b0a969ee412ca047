/* test_hostile.c - malformed GGUF files, one per defect the reader rejects,
 * built in memory from a small valid file and cut or patched at the
 * boundaries (a length exactly one past the end, a count one too many).
 * Each must fail with the expected status and a message naming the field;
 * a few go through the file path (tern_gguf_open) as well. Every prefix of
 * the valid file must fail too (truncation anywhere). */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/testutil.h"
#include "tern/gguf.h"
#include "tern/tern.h"

/* ---- a byte builder ---- */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void put(bb *b, const void *v, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, v, n);
    b->n += n;
}

static void u32(bb *b, uint32_t v) { put(b, &v, 4); }
static void u64(bb *b, uint64_t v) { put(b, &v, 8); }

static void strn(bb *b, const char *s, size_t n)
{
    u64(b, n);
    put(b, s, n);
}

static void str(bb *b, const char *s) { strn(b, s, strlen(s)); }

static void patch32(bb *b, size_t off, uint32_t v) { memcpy(b->p + off, &v, 4); }
static void patch64(bb *b, size_t off, uint64_t v) { memcpy(b->p + off, &v, 8); }

/* ---- the valid base file and where its fields are ---- */

typedef struct opts {
    uint32_t version;
    const char *names[3];  /* tensor names */
    int alignment_kind;    /* 0 none, 1 u32 value, 2 string value */
    uint32_t alignment;
    int dup_key;           /* repeats key 1 at the end */
    int nest_depth;        /* extra key: arrays nested this deep (0 = none) */
    size_t long_name;      /* nonzero: tensor 0's name has this many bytes */
    size_t name_len1;      /* nonzero: tensor 1's name length (may hold a NUL) */
} opts;

typedef struct offs {
    size_t version, n_tensors, n_kv;
    size_t key0_len, kv1_type, kv1_val;
    size_t strarr_count, strarr_first_len, strarr_elem_type;
    size_t nested_inner_count, bytes_count, align_val;
    size_t t_ndims[3], t_ne[3], t_type[3], t_off[3];
    size_t data_start;
} offs;

/* kv: arch string, u32, string array, array of arrays, u8 array, [alignment], [dup], [deep]
 * tensors: a.weight f32 [32] @0 (128 B), b.weight i2_s [128, 2] @128 (96 B),
 *          c.weight tq2_0 [256] @224 (66 B); the file ends with c's last byte. */
static void build(bb *b, const opts *o, offs *f)
{
    memset(b, 0, sizeof *b);
    memset(f, 0, sizeof *f);
    uint32_t align = o->alignment_kind == 1 && o->alignment && !(o->alignment & (o->alignment - 1))
                         ? o->alignment : 32;
    int n_kv = 5 + (o->alignment_kind != 0) + o->dup_key + (o->nest_depth > 0);
    put(b, "GGUF", 4);
    f->version = b->n;
    u32(b, o->version ? o->version : 3);
    f->n_tensors = b->n;
    u64(b, 3);
    f->n_kv = b->n;
    u64(b, (uint64_t)n_kv);
    f->key0_len = b->n;
    str(b, "general.architecture");
    u32(b, TERN_GGUF_STRING);
    str(b, "bitnet-b1.58");
    str(b, "test.u32");
    f->kv1_type = b->n;
    u32(b, TERN_GGUF_U32);
    f->kv1_val = b->n;
    u32(b, 7);
    str(b, "test.strings");
    u32(b, TERN_GGUF_ARRAY);
    f->strarr_elem_type = b->n;
    u32(b, TERN_GGUF_STRING);
    f->strarr_count = b->n;
    u64(b, 3);
    f->strarr_first_len = b->n;
    str(b, "a");
    str(b, "bc");
    str(b, "");
    str(b, "test.nested"); /* [[1, 2], [3]] as u8 */
    u32(b, TERN_GGUF_ARRAY);
    u32(b, TERN_GGUF_ARRAY);
    u64(b, 2);
    u32(b, TERN_GGUF_U8);
    f->nested_inner_count = b->n;
    u64(b, 2);
    put(b, "\x01\x02", 2);
    u32(b, TERN_GGUF_U8);
    u64(b, 1);
    put(b, "\x03", 1);
    str(b, "test.bytes");
    u32(b, TERN_GGUF_ARRAY);
    u32(b, TERN_GGUF_U8);
    f->bytes_count = b->n;
    u64(b, 4);
    put(b, "\x09\x08\x07\x06", 4);
    if (o->alignment_kind == 1) {
        str(b, "general.alignment");
        u32(b, TERN_GGUF_U32);
        f->align_val = b->n;
        u32(b, o->alignment);
    } else if (o->alignment_kind == 2) {
        str(b, "general.alignment");
        u32(b, TERN_GGUF_STRING);
        str(b, "32");
    }
    if (o->dup_key) {
        str(b, "test.u32");
        u32(b, TERN_GGUF_U32);
        u32(b, 8);
    }
    if (o->nest_depth > 0) {
        str(b, "test.deep");
        u32(b, TERN_GGUF_ARRAY);
        for (int d = 1; d < o->nest_depth; d++) {
            u32(b, TERN_GGUF_ARRAY);
            u64(b, 1);
        }
        u32(b, TERN_GGUF_U8);
        u64(b, 0);
    }
    static const char *const def_names[3] = {"a.weight", "b.weight", "c.weight"};
    static const uint32_t types[3] = {0, 36, 35};
    static const int64_t ne0[3] = {32, 128, 256}, ne1[3] = {1, 2, 1};
    static const uint32_t ndims[3] = {1, 2, 1};
    const uint64_t off[3] = {0, align <= 128 ? 128 : align, 0};
    uint64_t off_c = (off[1] + 96 + align - 1) / align * align;
    for (int i = 0; i < 3; i++) {
        const char *nm = o->names[i] ? o->names[i] : def_names[i];
        if (i == 0 && o->long_name) {
            char *ln = malloc(o->long_name);
            memset(ln, 'x', o->long_name);
            strn(b, ln, o->long_name);
            free(ln);
        } else if (i == 1 && o->name_len1) {
            strn(b, nm, o->name_len1);
        } else {
            str(b, nm);
        }
        f->t_ndims[i] = b->n;
        u32(b, ndims[i]);
        f->t_ne[i] = b->n;
        u64(b, (uint64_t)ne0[i]);
        if (ndims[i] == 2) u64(b, (uint64_t)ne1[i]);
        f->t_type[i] = b->n;
        u32(b, types[i]);
        f->t_off[i] = b->n;
        u64(b, i == 2 ? off_c : off[i]);
    }
    while (b->n % align) put(b, "", 1);
    f->data_start = b->n;
    uint8_t data[4096] = {0};
    float one = 1.0f, half = 0.5f;
    for (int i = 0; i < 32; i++) memcpy(data + 4 * i, &one, 4);
    memset(data + off[1], 0x55, 64); /* every code 1 = zero weight */
    memcpy(data + off[1] + 64, &half, 4);
    memset(data + off_c, 0x55, 64);
    uint16_t d = tern_f32_to_f16(0.25f);
    memcpy(data + off_c + 64, &d, 2);
    put(b, data, off_c + 66);
}

static const opts base_opts = {0};

/* ---- the cases ---- */

typedef void (*mutate_fn)(bb *b, offs *f);

#define MUT(name) static void name(bb *b, offs *f)
#define REBUILD(...)                                                                               \
    do {                                                                                           \
        free(b->p);                                                                                \
        opts o_ = {__VA_ARGS__};                                                                   \
        build(b, &o_, f);                                                                          \
    } while (0)

MUT(m_bad_magic) { b->p[0] = 'X'; }
MUT(m_empty) { b->n = 0; }
MUT(m_magic_only) { b->n = 4; }
MUT(m_v1) { patch32(b, f->version, 1); }
MUT(m_v4) { patch32(b, f->version, 4); }
MUT(m_big_endian) { patch32(b, f->version, 0x03000000u); }
MUT(m_n_kv_huge) { patch64(b, f->n_kv, 1ull << 60); }
MUT(m_n_tensors_huge) { patch64(b, f->n_tensors, 1ull << 60); }
/* n_kv one past what the remaining bytes could hold at 13 bytes each */
MUT(m_n_kv_one_past) { patch64(b, f->n_kv, (b->n - (f->n_kv + 8)) / 13 + 1); }
/* n_tensors one more than the file has: the 4th info is read from the data section */
MUT(m_n_tensors_plus_one) { patch64(b, f->n_tensors, 4); }
MUT(m_key_len_one_past) { patch64(b, f->key0_len, b->n - (f->key0_len + 8) + 1); }
MUT(m_key_len_huge) { patch64(b, f->key0_len, UINT64_MAX); }
MUT(m_value_type_13) { patch32(b, f->kv1_type, 13); }
MUT(m_key_exact_end) /* one key that runs exactly to the end of the file: no room for its type */
{
    patch64(b, f->n_tensors, 0);
    patch64(b, f->n_kv, 1);
    b->n = f->key0_len + 8 + 20;
}
MUT(m_str_value_one_past) /* the arch string's value length, one past the end */
{
    size_t at = f->key0_len + 8 + 20 + 4;
    patch64(b, at, b->n - (at + 8) + 1);
}
MUT(m_arr_elem_type_99) { patch32(b, f->strarr_elem_type, 99); }
MUT(m_arr_count_one_past) /* u8 array: one more element than bytes remain */
{
    patch64(b, f->bytes_count, b->n - (f->bytes_count + 8) + 1);
}
MUT(m_strarr_count_huge) { patch64(b, f->strarr_count, (b->n - (f->strarr_count + 8)) / 8 + 1); }
MUT(m_strarr_elem_len_one_past)
{
    patch64(b, f->strarr_first_len, b->n - (f->strarr_first_len + 8) + 1);
}
MUT(m_nested_inner_count) { patch64(b, f->nested_inner_count, 1ull << 40); }
MUT(m_nested_too_deep) { REBUILD(.nest_depth = 9); }
MUT(m_dup_key) { REBUILD(.dup_key = 1); }
MUT(m_align_zero) { REBUILD(.alignment_kind = 1, .alignment = 0); }
MUT(m_align_48) { REBUILD(.alignment_kind = 1, .alignment = 48); }
MUT(m_align_string) { REBUILD(.alignment_kind = 2); }
MUT(m_ndims_0) { patch32(b, f->t_ndims[0], 0); }
MUT(m_ndims_5) { patch32(b, f->t_ndims[0], 5); }
MUT(m_ne_negative) { patch64(b, f->t_ne[1], (uint64_t)-128); }
MUT(m_ne_overflow) /* 128 * 2^57 = 2^64 */
{
    patch64(b, f->t_ne[1] + 8, 1ull << 57);
}
MUT(m_type_q4_0) { patch32(b, f->t_type[0], 2); }
MUT(m_type_i8) { patch32(b, f->t_type[0], 24); }
MUT(m_type_iq2_xxs) { patch32(b, f->t_type[0], 16); }
MUT(m_type_tl1) { patch32(b, f->t_type[1], 38); }
MUT(m_type_39) { patch32(b, f->t_type[1], 39); }
MUT(m_type_unknown) { patch32(b, f->t_type[0], 1000); }
MUT(m_offset_unaligned) { patch64(b, f->t_off[1], 144); }
MUT(m_data_one_short) { b->n -= 1; } /* the last tensor ends one byte past the end */
MUT(m_offset_past_end) { patch64(b, f->t_off[2], 256); }
MUT(m_offset_overflow) { patch64(b, f->t_off[2], UINT64_MAX - 31); }
MUT(m_tq2_0_ne0) { patch64(b, f->t_ne[2], 128); }
MUT(m_q8_0_ne0) /* f32 [32] relabelled q8_0 [33] */
{
    patch64(b, f->t_ne[0], 33);
    patch32(b, f->t_type[0], 8);
}
MUT(m_i2_s_count) { patch64(b, f->t_ne[1], 4); } /* [4, 2]: 8 values, not a multiple of 128 */
MUT(m_i2_s_ne0) /* [66, 64]: 33 blocks of 128 values, but rows are not whole bytes */
{
    patch64(b, f->t_ne[1], 66);
    patch64(b, f->t_ne[1] + 8, 64);
}
MUT(m_i2_s_arm) /* [64, 3]: 192 values, 3 blocks of 64: bitnet.cpp's ARM layout */
{
    patch64(b, f->t_ne[1], 64);
    patch64(b, f->t_ne[1] + 8, 3);
}
MUT(m_dup_tensor) { REBUILD(.names = {"a.weight", "a.weight", "c.weight"}); }
MUT(m_name_256) { REBUILD(.long_name = 256); }
MUT(m_tensor_name_nul) { REBUILD(.names = {"a.weight", "b.w\0ght", "c.weight"}, .name_len1 = 8); }
MUT(m_key_nul) { b->p[f->key0_len + 8 + 7] = 0; } /* "general\0architecture" */
MUT(m_infos_truncated) { b->n = f->t_type[2] + 2; }

typedef struct hcase {
    const char *name;
    mutate_fn mut;
    tern_status st; /* TERN_OK: must open */
    const char *want; /* substring of the message (NULL: any) */
} hcase;

static const hcase cases[] = {
    {"bad magic", m_bad_magic, TERN_EFORMAT, "magic"},
    {"empty file", m_empty, TERN_EFORMAT, "truncated"},
    {"magic only", m_magic_only, TERN_EFORMAT, "version at byte 4: truncated"},
    {"GGUF v1", m_v1, TERN_EUNSUPPORTED, "GGUF v1"},
    {"GGUF v4", m_v4, TERN_EUNSUPPORTED, "4 is not supported"},
    {"big-endian", m_big_endian, TERN_EUNSUPPORTED, "big-endian"},
    {"n_kv 2^60", m_n_kv_huge, TERN_EFORMAT, "n_kv at byte 16: 1152921504606846976 keys cannot fit"},
    {"n_tensors 2^60", m_n_tensors_huge, TERN_EFORMAT, "n_tensors at byte 8"},
    {"n_kv one past", m_n_kv_one_past, TERN_EFORMAT, "keys cannot fit"},
    {"n_tensors + 1", m_n_tensors_plus_one, TERN_EFORMAT, "tensor #3"},
    {"key length one past", m_key_len_one_past, TERN_EFORMAT, "key #0 name at byte 24: string length"},
    {"key length 2^64-1", m_key_len_huge, TERN_EFORMAT, "exceeds"},
    {"key to the end", m_key_exact_end, TERN_EFORMAT, "value type at byte 52: truncated"},
    {"value type 13", m_value_type_13, TERN_EFORMAT, "'test.u32' value type"},
    {"string value one past", m_str_value_one_past, TERN_EFORMAT, "'general.architecture' value at byte 56: string length"},
    {"array elem type 99", m_arr_elem_type_99, TERN_EFORMAT, "99 is not a GGUF value type"},
    {"u8 array one past", m_arr_count_one_past, TERN_EFORMAT, "'test.bytes' array length"},
    {"string array count", m_strarr_count_huge, TERN_EFORMAT, "'test.strings' array length"},
    {"string elem one past", m_strarr_elem_len_one_past, TERN_EFORMAT, "element 0 of 3"},
    {"nested count 2^40", m_nested_inner_count, TERN_EFORMAT, "'test.nested' array length"},
    {"nested 9 deep", m_nested_too_deep, TERN_EUNSUPPORTED, "nested more than 8"},
    {"duplicate key", m_dup_key, TERN_EFORMAT, "duplicate key (first defined as key #1"},
    {"alignment 0", m_align_zero, TERN_EFORMAT, "general.alignment 0 is not a nonzero power of two"},
    {"alignment 48", m_align_48, TERN_EFORMAT, "general.alignment 48"},
    {"alignment string", m_align_string, TERN_EFORMAT, "must be an unsigned integer"},
    {"n_dims 0", m_ndims_0, TERN_EFORMAT, "'a.weight' n_dims"},
    {"n_dims 5", m_ndims_5, TERN_EFORMAT, "5 is outside 1..4"},
    {"negative dim", m_ne_negative, TERN_EFORMAT, "ne[0] = -128 is negative"},
    {"dims overflow", m_ne_overflow, TERN_EFORMAT, "overflow"},
    {"type q4_0", m_type_q4_0, TERN_EUNSUPPORTED, "type 2 (q4_0) is not supported"},
    {"type i8", m_type_i8, TERN_EUNSUPPORTED, "type 24 (i8)"},
    {"type iq2_xxs", m_type_iq2_xxs, TERN_EUNSUPPORTED, "iq2_xxs"},
    {"type 38 tl1", m_type_tl1, TERN_EUNSUPPORTED, "tl1 in bitnet.cpp"},
    {"type 39 tl2/mxfp4", m_type_39, TERN_EUNSUPPORTED, "tl2 in bitnet.cpp, mxfp4 in llama.cpp"},
    {"type 1000", m_type_unknown, TERN_EUNSUPPORTED, "type 1000 is not a known ggml type"},
    {"offset unaligned", m_offset_unaligned, TERN_EFORMAT, "not a multiple of the alignment 32"},
    {"data one byte short", m_data_one_short, TERN_EFORMAT, "'c.weight' offset"},
    {"offset past end", m_offset_past_end, TERN_EFORMAT, "past the end of the file"},
    {"offset overflow", m_offset_overflow, TERN_EFORMAT, "past the end of the file"},
    {"tq2_0 ne0 128", m_tq2_0_ne0, TERN_EFORMAT, "ne[0] = 128 is not a multiple of tq2_0's block size 256"},
    {"q8_0 ne0 33", m_q8_0_ne0, TERN_EFORMAT, "q8_0's block size 32"},
    {"i2_s 8 values", m_i2_s_count, TERN_EFORMAT, "i2_s needs a multiple of 128 elements"},
    {"i2_s ne0 66", m_i2_s_ne0, TERN_EFORMAT, "ne[0] = 66"},
    {"i2_s arm blocks", m_i2_s_arm, TERN_EUNSUPPORTED, "only bitnet.cpp's ARM build writes that"},
    {"duplicate tensor", m_dup_tensor, TERN_EFORMAT, "duplicate tensor name (first is tensor #0)"},
    {"name 256 bytes", m_name_256, TERN_EFORMAT, "tensor name of 256 bytes is longer than 255"},
    {"tensor name with NUL", m_tensor_name_nul, TERN_EFORMAT, "tensor #1 name at byte"},
    {"key with NUL", m_key_nul, TERN_EFORMAT, "key contains a NUL byte"},
    {"infos truncated", m_infos_truncated, TERN_EFORMAT, "'c.weight' type"},
};

#define N_CASES (int)(sizeof cases / sizeof cases[0])

START_TEST(test_valid_base_opens)
{
    bb b;
    offs f;
    build(&b, &base_opts, &f);
    tern_gguf *g;
    tern_error err;
    ck_assert_msg(tern_gguf_open_memory(b.p, b.n, "base", &g, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_gguf_n_tensors(g), 3);
    ck_assert_float_eq(tern_gguf_find_tensor(g, "b.weight")->scale, 0.5f);
    ck_assert_int_eq(tern_gguf_data_offset(g), f.data_start);
    tern_gguf_vtype et;
    uint64_t n;
    ck_assert(tern_gguf_get_array(g, "test.nested", &et, &n, NULL) == TERN_OK && et == TERN_GGUF_ARRAY
              && n == 2);
    tern_gguf_str s = tern_gguf_arr_str(g, tern_gguf_find_key(g, "test.strings"), 2);
    ck_assert(s.ptr && s.len == 0);
    tern_gguf_close(g);
    /* boundaries that are still valid: a 255-byte name, nesting 8 deep, v2, alignment 64 */
    const opts ok[] = {{.long_name = 255}, {.nest_depth = 8}, {.version = 2},
                       {.alignment_kind = 1, .alignment = 64}, {.alignment_kind = 1, .alignment = 1}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        free(b.p);
        build(&b, &ok[i], &f);
        ck_assert_msg(tern_gguf_open_memory(b.p, b.n, "ok", &g, &err) == TERN_OK, "variant %zu: %s", i,
                      err.msg);
        if (ok[i].alignment_kind) ck_assert_int_eq(tern_gguf_alignment(g), ok[i].alignment);
        tern_gguf_close(g);
    }
    free(b.p);
}
END_TEST

static void expect(const hcase *c, tern_status st, const tern_error *err, const char *via)
{
    ck_assert_msg(st == c->st, "%s (%s): status %s, want %s: %s", c->name, via, tern_status_name(st),
                  tern_status_name(c->st), err->msg);
    ck_assert_msg(!c->want || strstr(err->msg, c->want), "%s (%s): message '%s' lacks '%s'", c->name,
                  via, err->msg, c->want);
    ck_assert_msg(!strchr(err->msg, '\n'), "%s: message is not one line", c->name);
}

START_TEST(test_hostile_in_memory)
{
    for (int i = 0; i < N_CASES; i++) {
        bb b;
        offs f;
        build(&b, &base_opts, &f);
        cases[i].mut(&b, &f);
        /* an exact-size copy, so ASan sees any read past the end */
        uint8_t *exact = malloc(b.n ? b.n : 1);
        if (b.n) memcpy(exact, b.p, b.n);
        tern_gguf *g = (tern_gguf *)1;
        tern_error err = {0};
        tern_status st = tern_gguf_open_memory(exact, b.n, "hostile.gguf", &g, &err);
        ck_assert_ptr_null(g);
        expect(&cases[i], st, &err, "memory");
        ck_assert_msg(strncmp(err.msg, "hostile.gguf: ", 14) == 0, "%s: no file name: %s", cases[i].name,
                      err.msg);
        free(exact);
        free(b.p);
    }
    printf("gguf: %d hostile files rejected with the expected message\n", N_CASES);
    ck_assert_int_ge(N_CASES, 30);
}
END_TEST

START_TEST(test_hostile_on_disk)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tern-hostile-%d.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    for (int i = 0; i < N_CASES; i += 4) {
        bb b;
        offs f;
        build(&b, &base_opts, &f);
        cases[i].mut(&b, &f);
        FILE *fp = fopen(path, "wb");
        ck_assert_ptr_nonnull(fp);
        ck_assert_uint_eq(fwrite(b.p, 1, b.n, fp), b.n);
        fclose(fp);
        tern_gguf *g;
        tern_error err;
        expect(&cases[i], tern_gguf_open(path, &g, &err), &err, "disk");
        ck_assert_ptr_nonnull(strstr(err.msg, path));
        free(b.p);
    }
    unlink(path);
    tern_gguf *g;
    tern_error err;
    ck_assert_int_eq(tern_gguf_open(path, &g, &err), TERN_EIO); /* gone */
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot open"));
    ck_assert_int_eq(tern_gguf_open("/", &g, &err), TERN_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
}
END_TEST

/* Every proper prefix of the valid file is rejected as malformed. */
START_TEST(test_truncation_anywhere)
{
    bb b;
    offs f;
    build(&b, &base_opts, &f);
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, b.p, n);
        tern_gguf *g;
        tern_error err;
        tern_status st = tern_gguf_open_memory(exact, n, "cut.gguf", &g, &err);
        ck_assert_msg(st == TERN_EFORMAT, "prefix of %zu bytes: %s %s", n, tern_status_name(st),
                      err.msg);
        ck_assert_msg(strstr(err.msg, "truncated") || strstr(err.msg, "exceeds") ||
                          strstr(err.msg, "cannot fit") || strstr(err.msg, "past the end"),
                      "prefix of %zu bytes: %s", n, err.msg);
        free(exact);
    }
    free(b.p);
}
END_TEST

/* Random byte flips of the valid file never crash and never leave a handle
 * that lies about its bounds (sanitizer builds check the reads). */
START_TEST(test_random_flips)
{
    bb b;
    offs f;
    build(&b, &base_opts, &f);
    unsigned long long s = 99;
    uint8_t *m = malloc(b.n);
    for (int it = 0; it < 3000; it++) {
        memcpy(m, b.p, b.n);
        int flips = 1 + (int)(tu_rand(&s) % 4);
        for (int k = 0; k < flips; k++) m[tu_rand(&s) % f.data_start] ^= (uint8_t)(1u << (tu_rand(&s) % 8));
        tern_gguf *g;
        tern_error err;
        if (tern_gguf_open_memory(m, b.n, "flip", &g, &err) == TERN_OK) {
            for (int64_t i = 0; i < tern_gguf_n_tensors(g); i++) {
                const tern_gguf_tensor *t = tern_gguf_tensor_at(g, i);
                ck_assert((const uint8_t *)t->data + t->size <= m + b.n);
            }
            tern_gguf_close(g);
        } else {
            ck_assert(err.status == TERN_EFORMAT || err.status == TERN_EUNSUPPORTED);
        }
    }
    free(m);
    free(b.p);
}
END_TEST

void gguf_add_hostile_cases(Suite *s)
{
    TCase *tc = tcase_create("hostile");
    tcase_add_test(tc, test_valid_base_opens);
    tcase_add_test(tc, test_hostile_in_memory);
    tcase_add_test(tc, test_hostile_on_disk);
    tcase_add_test(tc, test_truncation_anywhere);
    tcase_add_test(tc, test_random_flips);
    suite_add_tcase(s, tc);
}
