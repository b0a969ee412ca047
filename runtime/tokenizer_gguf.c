/* tokenizer_gguf.c - reads a GGUF file's tokenizer.ggml.* metadata into a
 * tern_tokenizer_vocab and builds the tokenizer from it (tokenizer.c).
 *
 * Owns only the reading: key names, their types, and arrays that must be
 * as long as the token list. Strings point into the file mapping while the
 * tokenizer is built; the tokenizer copies what it keeps. */
#include <stdlib.h>
#include <string.h>

#include "tern/gguf.h"
#include "tern/tokenizer.h"

static const char *vtype_name(tern_gguf_vtype t)
{
    static const char *const names[] = {"u8",   "i8",   "u16",  "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < TERN_GGUF_VTYPE_COUNT ? names[t] : "?";
}

/* A NUL-terminated copy of a string value; *out NULL when the key is absent. */
static tern_status get_str(const tern_gguf *g, const char *key, char **out, tern_error *err)
{
    tern_gguf_str s;
    *out = NULL;
    tern_status st = tern_gguf_get_str(g, key, &s, err);
    if (st == TERN_ENOTFOUND) return TERN_OK;
    if (st) return st;
    *out = malloc(s.len + 1);
    if (!*out) return tern_error_set(err, TERN_ENOMEM, "%s: %s: out of memory", tern_gguf_path(g), key);
    memcpy(*out, s.ptr, s.len);
    (*out)[s.len] = 0;
    return TERN_OK;
}

static tern_status get_id(const tern_gguf *g, const char *key, int64_t *out, tern_error *err)
{
    tern_status st = tern_gguf_get_int(g, key, out, err);
    if (st == TERN_ENOTFOUND) {
        *out = TERN_TOKEN_ID_UNSET;
        return TERN_OK;
    }
    return st;
}

static tern_status get_flag(const tern_gguf *g, const char *key, int *out, tern_error *err)
{
    tern_status st = tern_gguf_get_bool(g, key, out, err);
    if (st == TERN_ENOTFOUND) {
        *out = -1;
        return TERN_OK;
    }
    return st;
}

/* Finds an array key of one of the wanted element types; *kv = -1 when absent. */
static tern_status find_array(const tern_gguf *g, const char *key, unsigned wanted_mask, int64_t *kv,
                              tern_gguf_vtype *type, uint64_t *n, tern_error *err)
{
    *kv = tern_gguf_find_key(g, key);
    if (*kv < 0) return TERN_OK;
    tern_status st = tern_gguf_get_array(g, key, type, n, err);
    if (st) return st;
    if (!((1u << *type) & wanted_mask))
        return tern_error_set(err, TERN_EFORMAT, "%s: %s is an array of %s, which tern does not read here",
                              tern_gguf_path(g), key, vtype_name(*type));
    return TERN_OK;
}

/* String arrays as (pointer, length) lists into the mapping. */
static tern_status read_strings(const tern_gguf *g, const char *key, int64_t kv, uint64_t n,
                                const char ***ptrs, size_t **lens, tern_error *err)
{
    if (n > SIZE_MAX / sizeof(char *)) return tern_error_set(err, TERN_EFORMAT, "%s: %s: %llu entries",
                                                            tern_gguf_path(g), key, (unsigned long long)n);
    *ptrs = malloc((size_t)(n ? n : 1) * sizeof **ptrs);
    *lens = malloc((size_t)(n ? n : 1) * sizeof **lens);
    if (!*ptrs || !*lens) return tern_error_set(err, TERN_ENOMEM, "%s: %s: out of memory", tern_gguf_path(g), key);
    for (uint64_t i = 0; i < n; i++) {
        tern_gguf_str s = tern_gguf_arr_str(g, kv, i);
        if (s.len > SIZE_MAX / 2)
            return tern_error_set(err, TERN_EFORMAT, "%s: %s[%llu]: string of %llu bytes", tern_gguf_path(g), key,
                                  (unsigned long long)i, (unsigned long long)s.len);
        (*ptrs)[i] = s.ptr;
        (*lens)[i] = (size_t)s.len;
    }
    return TERN_OK;
}

#define INT_TYPES                                                                                  \
    ((1u << TERN_GGUF_U8) | (1u << TERN_GGUF_I8) | (1u << TERN_GGUF_U16) | (1u << TERN_GGUF_I16) | \
     (1u << TERN_GGUF_U32) | (1u << TERN_GGUF_I32) | (1u << TERN_GGUF_U64) | (1u << TERN_GGUF_I64))

typedef struct gguf_vocab {
    tern_tokenizer_vocab v;
    char *model, *pre;
    const char **tokens, **merges;
    size_t *token_lens, *merge_lens;
    int32_t *types;
    float *scores;
} gguf_vocab;

static void gguf_vocab_free(gguf_vocab *gv)
{
    free(gv->model);
    free(gv->pre);
    free(gv->tokens);
    free(gv->merges);
    free(gv->token_lens);
    free(gv->merge_lens);
    free(gv->types);
    free(gv->scores);
}

static tern_status read_vocab(const tern_gguf *g, gguf_vocab *gv, tern_error *err)
{
    const char *path = tern_gguf_path(g);
    tern_tokenizer_vocab *v = &gv->v;
    tern_status st;
    if ((st = get_str(g, "tokenizer.ggml.model", &gv->model, err))) return st;
    if (!gv->model)
        return tern_error_set(err, TERN_ENOTFOUND, "%s: no tokenizer (tokenizer.ggml.model is missing)", path);
    if ((st = get_str(g, "tokenizer.ggml.pre", &gv->pre, err))) return st;
    v->model = gv->model;
    v->pre = gv->pre;

    int64_t kv;
    tern_gguf_vtype type;
    uint64_t n;
    if ((st = find_array(g, "tokenizer.ggml.tokens", 1u << TERN_GGUF_STRING, &kv, &type, &n, err))) return st;
    if (kv < 0) return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.tokens is missing", path);
    if (n == 0 || n >= INT32_MAX / 2)
        return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path,
                              (unsigned long long)n);
    if ((st = read_strings(g, "tokenizer.ggml.tokens", kv, n, &gv->tokens, &gv->token_lens, err))) return st;
    v->n_tokens = (int64_t)n;
    v->tokens = gv->tokens;
    v->token_lens = gv->token_lens;

    uint64_t nt;
    if ((st = find_array(g, "tokenizer.ggml.token_type", INT_TYPES, &kv, &type, &nt, err))) return st;
    if (kv >= 0) {
        if (nt < n)
            return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens",
                                  path, (unsigned long long)nt, (unsigned long long)n);
        if (!(gv->types = malloc(n * sizeof *gv->types)))
            return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", path);
        for (uint64_t i = 0; i < n; i++) {
            int64_t t = tern_gguf_arr_int(g, kv, i);
            gv->types[i] = t >= 0 && t <= TERN_TOKEN_BYTE ? (int32_t)t : TERN_TOKEN_UNDEFINED;
        }
        v->token_types = gv->types;
    }

    if ((st = find_array(g, "tokenizer.ggml.scores",
                         (1u << TERN_GGUF_F32) | (1u << TERN_GGUF_F64) | (1u << TERN_GGUF_I32), &kv, &type, &nt, err)))
        return st;
    if (kv >= 0) {
        if (nt < n)
            return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.scores has %llu entries for %llu tokens",
                                  path, (unsigned long long)nt, (unsigned long long)n);
        if (!(gv->scores = malloc(n * sizeof *gv->scores)))
            return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", path);
        for (uint64_t i = 0; i < n; i++)
            gv->scores[i] = type == TERN_GGUF_I32 ? (float)tern_gguf_arr_int(g, kv, i)
                                                  : (float)tern_gguf_arr_float(g, kv, i);
        v->scores = gv->scores;
    }

    if ((st = find_array(g, "tokenizer.ggml.merges", 1u << TERN_GGUF_STRING, &kv, &type, &nt, err))) return st;
    if (kv >= 0) {
        if (nt >= INT32_MAX)
            return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.merges has %llu entries", path,
                                  (unsigned long long)nt);
        if ((st = read_strings(g, "tokenizer.ggml.merges", kv, nt, &gv->merges, &gv->merge_lens, err))) return st;
        v->n_merges = (int64_t)nt;
        v->merges = gv->merges;
        v->merge_lens = gv->merge_lens;
    }

    if ((st = get_id(g, "tokenizer.ggml.bos_token_id", &v->bos, err)) ||
        (st = get_id(g, "tokenizer.ggml.eos_token_id", &v->eos, err)) ||
        (st = get_id(g, "tokenizer.ggml.eot_token_id", &v->eot, err)) ||
        (st = get_id(g, "tokenizer.ggml.eom_token_id", &v->eom, err)) ||
        (st = get_id(g, "tokenizer.ggml.unknown_token_id", &v->unk, err)) ||
        (st = get_id(g, "tokenizer.ggml.padding_token_id", &v->pad, err)) ||
        (st = get_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) ||
        (st = get_flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) ||
        (st = get_flag(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)))
        return st;
    return TERN_OK;
}

tern_status tern_tokenizer_from_gguf(const tern_gguf *g, tern_tokenizer **out, tern_error *err)
{
    *out = NULL;
    if (!g) return tern_error_set(err, TERN_EINVAL, "tokenizer: no GGUF file");
    gguf_vocab gv;
    memset(&gv, 0, sizeof gv);
    tern_tokenizer_vocab_init(&gv.v);
    gv.v.name = tern_gguf_path(g);
    tern_status st = read_vocab(g, &gv, err);
    if (st == TERN_OK) st = tern_tokenizer_from_vocab(&gv.v, out, err);
    gguf_vocab_free(&gv);
    return st;
}
