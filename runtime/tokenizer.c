/* tokenizer.c - text <-> token ids, matching llama.cpp's llama_tokenize and
 * llama_token_to_piece.
 *
 * Owns: the vocabulary tables (token texts, types, scores, text -> id hash,
 * BPE merge ranks keyed by (left id, right id)), the pre-tokenizer regexes
 * (PCRE2, compiled once per tokenizer), the byte-level BPE and SentencePiece
 * encoders, the special-token partition and every decoding path.
 *
 * The tokenizer is immutable after construction and may be shared between
 * threads: every tokenize call keeps its scratch memory in a tok_ctx of its
 * own. Filling it from GGUF metadata lives in tokenizer_gguf.c. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tern/checked.h"
#include "tern/tokenizer.h"

/* Token attributes as llama.cpp keeps them (a file's type plus the
 * overrides applied at load, e.g. an EOT token forced to control). */
enum {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5
};

enum { KIND_BPE, KIND_SPM };

#define MAX_REGEX 6

/* One entry per pre-tokenizer: the names llama.cpp maps to it, the regexes
 * applied in turn (each splits the pieces the previous one left), and the
 * flags llama.cpp sets with it. */
typedef struct pre_def {
    const char *names[12];
    const char *regex[MAX_REGEX];
    unsigned flags;
} pre_def;

enum { PRE_IGNORE_MERGES = 1, PRE_ADD_BOS = 2, PRE_NO_BOS = 4 };

/* GPT-2's split. llama.cpp runs a hand-written equivalent of this exact
 * expression; PCRE2 with UCP gives the same pieces. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Llama 3's split; the case-insensitive contractions are spelled out the
 * way llama.cpp matches them (ASCII case only, as its unicode_tolower does
 * for these letters; PCRE2's (?i) would also fold U+017F to 's'). */
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                       \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
                "\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                        \
    RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
                "\\s+(?!\\S)|\\s+"
#define RE_PORO " ?[^(\\s|.,!?…。，、।۔،)]+"

static const pre_def pre_defs[] = {
    {{"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     0},
    {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
     {RE_LLAMA3},
     PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {{"dbrx", "smaug-bpe"}, {RE_LLAMA3}, 0},
    {{"glm4", "chatglm-bpe"}, {RE_LLAMA3}, PRE_NO_BOS},
    /* The letter class is llama.cpp's, code point for code point; the \u
     * escapes are characters that Unicode normalization (NFC) would
     * silently replace when the file is edited or copied. */
    {{"deepseek-llm"},
     {"[\r\n]",
      "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1F7Dᾀ-ᾴᾶ-ᾼ\u1FBEῂ-ῄῆ-ῌῐ-\u1FD3ῖ-\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212A-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     0},
    {{"deepseek-coder"},
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     0},
    {{"deepseek-v3"},
     {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     0},
    {{"falcon"}, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, 0},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
     {"\\p{N}", RE_GPT2},
     0},
    {{"gpt-2", "mpt", "olmo", "jais", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
      "jina-v2-de", "exaone4"},
     {RE_GPT2},
     0},
    {{"jina-v1-en", "jina-v2-code", "roberta-bpe", "a.x-4.0", "mellum", "modern-bert", "trillion",
      "granite-docling"},
     {RE_GPT2},
     0},
    {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "kormo"}, {RE_QWEN2}, 0},
    {{"qwen35"},
     {RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     0},
    {{"poro-chat", "bloom", "gpt3-finnish"}, {RE_PORO}, 0},
    {{"viking"}, {RE_PORO, "\\p{N}"}, 0},
    {{"tekken"},
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {{"gpt-4o", "llama4"},
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" RE_CONTRACT
      "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" RE_CONTRACT
      "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     0},
    {{"seed-coder"},
     {RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|"
                  "\\s+(?!\\S)|\\s+"},
     0},
};

#define N_PRE_DEFS (sizeof pre_defs / sizeof pre_defs[0])

/* text -> id slot: the id and 32 bits of the hash, so most mismatches are
 * rejected without touching the text. */
typedef struct text_slot {
    uint32_t tag;
    int32_t id; /* -1: empty */
} text_slot;

/* (left id, right id) -> merge rank and the id of the merged text. */
typedef struct merge_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0: empty */
    int32_t rank;
    int32_t result;
} merge_slot;

struct tern_tokenizer {
    int kind;
    char model[32];
    char pre[64];

    int32_t n_vocab;  /* real tokens: ids [0, n_vocab) */
    int32_t n_texts;  /* plus texts that only merges produce (ids >= n_vocab) */
    char *blob;       /* every text, back to back */
    uint64_t *off;    /* (n_texts + 1) start of each text in blob */
    uint8_t *attr;    /* (n_vocab) ATTR_* */
    float *scores;    /* (n_vocab) */

    text_slot *texts; /* (text_mask + 1) open addressing over blob texts */
    uint64_t text_mask;
    merge_slot *merges; /* (merge_mask + 1) */
    uint64_t merge_mask;
    int64_t n_merges;

    char *pieces;       /* decoded text of every token (special = true) */
    uint64_t *piece_off; /* (n_vocab + 1) */

    int32_t *specials; /* control / user-defined / unknown ids, longest text first */
    int32_t n_specials;

    char byte_enc[256][2];    /* GPT-2's character for each byte, UTF-8 */
    uint8_t byte_enc_len[256];
    int32_t byte_sym[256];    /* BPE: id of each byte's GPT-2 character */
    int32_t single_tok[256];  /* BPE: id of the one-byte text, or -1 */
    int32_t spm_byte[256];    /* SPM: id of <0xXX> (else the byte's text), or -1 */

    int32_t bos, eos, eot, eom, unk, pad;
    uint8_t *eog; /* (n_vocab) end-of-generation flags */
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    int spm_word_split; /* SPM: no token holds "X\xe2\x96\x81" (X not U+2581), see spm_fragment */

    pcre2_code *re[MAX_REGEX];
    int n_re;
    int re_jit[MAX_REGEX];
};

/* ------------------------------------------------------------------ */
/* hashing */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static uint64_t hash_u64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    return k ^ (k >> 33);
}

static inline const char *text_at(const tern_tokenizer *t, int32_t id, size_t *len)
{
    *len = (size_t)(t->off[id + 1] - t->off[id]);
    return t->blob + t->off[id];
}

/* Any text's id (merge-only texts included), or -1. */
static int32_t lookup_any(const tern_tokenizer *t, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint64_t i = h & t->text_mask;; i = (i + 1) & t->text_mask) {
        const text_slot *sl = &t->texts[i];
        if (sl->id < 0) return -1;
        if (sl->tag != tag) continue;
        size_t len;
        const char *txt = text_at(t, sl->id, &len);
        if (len == n && memcmp(txt, s, n) == 0) return sl->id;
    }
}

/* A vocabulary token's id, or -1. */
static inline int32_t lookup(const tern_tokenizer *t, const char *s, size_t n)
{
    int32_t id = lookup_any(t, s, n);
    return id < t->n_vocab ? id : -1;
}

static void text_insert(tern_tokenizer *t, int32_t id)
{
    size_t len;
    const char *s = text_at(t, id, &len);
    uint64_t h = hash_bytes(s, len);
    uint64_t i = h & t->text_mask;
    while (t->texts[i].id >= 0) i = (i + 1) & t->text_mask;
    t->texts[i].tag = (uint32_t)(h >> 32);
    t->texts[i].id = id;
}

static const merge_slot *merge_find(const tern_tokenizer *t, int32_t l, int32_t r)
{
    if (!t->merges || l < 0 || r < 0) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    for (uint64_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == 0) return NULL;
    }
}

/* ------------------------------------------------------------------ */
/* UTF-8 and GPT-2's byte <-> character mapping */

static inline size_t utf8_len(uint8_t c)
{
    static const uint8_t lookup_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup_len[c >> 4];
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one code point the way llama.cpp's unicode_cpt_from_utf8 does
 * (no overlong or surrogate checks); returns its length, or 0 when the
 * byte at s cannot start a sequence here. */
static size_t utf8_get(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (!(c & 0x40)) return 0;
    size_t len = !(c & 0x20) ? 2 : !(c & 0x10) ? 3 : !(c & 0x08) ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t v = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * rest to U+0100 and up, in byte order. */
static uint32_t gpt2_byte_cp(int b)
{
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff))) n++;
    return 256u + (uint32_t)n;
}

/* The byte a GPT-2 character stands for, or -1 (cp_byte: 324 entries,
 * filled by gpt2_cp_table). */
static void gpt2_cp_table(int16_t *cp_byte)
{
    for (int i = 0; i < 324; i++) cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) cp_byte[gpt2_byte_cp(b)] = (int16_t)b;
}

/* ------------------------------------------------------------------ */
/* construction */

void tern_tokenizer_vocab_init(tern_tokenizer_vocab *v)
{
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = TERN_TOKEN_ID_UNSET;
    v->add_bos = v->add_eos = v->add_space_prefix = -1;
}

void tern_tokenizer_free(tern_tokenizer *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->blob);
    free(t->off);
    free(t->attr);
    free(t->scores);
    free(t->texts);
    free(t->merges);
    free(t->pieces);
    free(t->piece_off);
    free(t->specials);
    free(t->eog);
    free(t);
}

/* A growing byte buffer for the text blob and the piece cache. */
typedef struct bbuf {
    char *p;
    size_t n, cap;
} bbuf;

static int bbuf_add(bbuf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static uint8_t attr_of_type(int32_t type)
{
    switch (type) {
    case TERN_TOKEN_NORMAL: return ATTR_NORMAL;
    case TERN_TOKEN_UNKNOWN: return ATTR_UNKNOWN;
    case TERN_TOKEN_CONTROL: return ATTR_CONTROL;
    case TERN_TOKEN_USER_DEFINED: return ATTR_USER_DEFINED;
    case TERN_TOKEN_UNUSED: return ATTR_UNUSED;
    case TERN_TOKEN_BYTE: return ATTR_BYTE;
    default: return ATTR_UNDEFINED;
    }
}

static const char *vname(const tern_tokenizer_vocab *v)
{
    return v->name ? v->name : "vocabulary";
}

/* Token texts into the blob and the hash; duplicates are an error as in
 * llama.cpp, empty texts become "[EMPTY_<id>]" as there. */
static tern_status build_texts(tern_tokenizer *t, const tern_tokenizer_vocab *v, bbuf *blob,
                               tern_error *err)
{
    int32_t n = t->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        const char *s = v->tokens[i];
        size_t len = s ? (v->token_lens ? v->token_lens[i] : strlen(s)) : 0;
        char tmp[32];
        if (len == 0) {
            len = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%d]", (int)i);
            s = tmp;
        }
        t->off[i] = blob->n;
        if (bbuf_add(blob, s, len)) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
        t->blob = blob->p;
        t->off[i + 1] = blob->n;
        int32_t dup = lookup_any(t, s, len);
        if (dup >= 0)
            return tern_error_set(err, TERN_EFORMAT,
                                  "%s: tokenizer.ggml.tokens: duplicate token '%.*s' at ids %d and %d",
                                  vname(v), (int)(len > 64 ? 64 : len), s, (int)dup, (int)i);
        text_insert(t, i);
    }
    return TERN_OK;
}

/* An id for a text that merges mention: the vocabulary's, else a new
 * merge-only id past n_vocab (llama.cpp keeps such symbols as text and
 * spells them out byte by byte at the end). */
static int32_t intern(tern_tokenizer *t, bbuf *blob, const char *s, size_t n, size_t *cap_texts)
{
    int32_t id = lookup_any(t, s, n);
    if (id >= 0) return id;
    if (t->n_texts == INT32_MAX) return -1;
    if ((size_t)t->n_texts + 1 >= *cap_texts) {
        size_t cap = *cap_texts * 2;
        uint64_t *off = realloc(t->off, (cap + 1) * sizeof *off);
        if (!off) return -1;
        t->off = off;
        *cap_texts = cap;
    }
    /* the hash must stay under half full */
    if ((uint64_t)(t->n_texts + 1) * 2 > t->text_mask + 1) {
        size_t cap = (size_t)(t->text_mask + 1) * 2;
        text_slot *nt = malloc(cap * sizeof *nt);
        if (!nt) return -1;
        free(t->texts);
        t->texts = nt;
        t->text_mask = cap - 1;
        for (size_t i = 0; i < cap; i++) t->texts[i].id = -1;
        for (int32_t i = 0; i < t->n_texts; i++) text_insert(t, i);
    }
    id = t->n_texts;
    t->off[id] = blob->n;
    if (bbuf_add(blob, s, n)) return -1;
    t->blob = blob->p;
    t->off[id + 1] = blob->n;
    t->n_texts++;
    text_insert(t, id);
    return id;
}

static tern_status build_merges(tern_tokenizer *t, const tern_tokenizer_vocab *v, bbuf *blob,
                                tern_error *err)
{
    size_t cap_texts = (size_t)t->n_vocab + 1;
    size_t slots = pow2_at_least((size_t)v->n_merges * 2 + 2);
    t->merges = calloc(slots, sizeof *t->merges);
    if (!t->merges) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory for merges", vname(v));
    t->merge_mask = slots - 1;
    char *cat = NULL;
    size_t cat_cap = 0;
    for (int64_t r = 0; r < v->n_merges; r++) {
        const char *s = v->merges[r];
        size_t len = s ? (v->merge_lens ? v->merge_lens[r] : strlen(s)) : 0;
        /* llama.cpp splits at the first space after the first byte; a merge
         * without one becomes ("", "") and can never apply */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) continue;
        size_t nl = (size_t)(sp - s), nr = len - nl - 1;
        if (nl + nr > cat_cap) {
            cat_cap = (nl + nr) * 2;
            char *c = realloc(cat, cat_cap);
            if (!c) goto oom;
            cat = c;
        }
        int32_t l = intern(t, blob, s, nl, &cap_texts);
        int32_t rr = l < 0 ? -1 : intern(t, blob, sp + 1, nr, &cap_texts);
        if (rr < 0) goto oom;
        memcpy(cat, s, nl);
        memcpy(cat + nl, sp + 1, nr);
        int32_t res = intern(t, blob, cat, nl + nr, &cap_texts);
        if (res < 0) goto oom;
        uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)rr) + 1;
        uint64_t i = hash_u64(key) & t->merge_mask;
        while (t->merges[i].key && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        if (t->merges[i].key) continue; /* the first rank of a repeated pair wins, as in llama.cpp */
        t->merges[i].key = key;
        t->merges[i].rank = (int32_t)r;
        t->merges[i].result = res;
        t->n_merges++;
    }
    free(cat);
    return TERN_OK;
oom:
    free(cat);
    return tern_error_set(err, TERN_ENOMEM, "%s: out of memory for merges", vname(v));
}

/* The decoded text of a token as llama.cpp's token_to_piece gives it with
 * special = true (control and unknown tokens show their text). */
static int build_piece(const tern_tokenizer *t, int32_t id, const int16_t *cp_byte, bbuf *out)
{
    size_t len;
    const char *s = text_at(t, id, &len);
    uint8_t a = t->attr[id];
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) return bbuf_add(out, s, len);
    if (a & ATTR_BYTE) {
        /* "<0xXX>": llama.cpp reads the two hex digits at offset 3 */
        char hex[3] = {len > 3 ? s[3] : 0, len > 4 ? s[4] : 0, 0};
        char b = (char)strtol(hex, NULL, 16);
        return bbuf_add(out, &b, 1);
    }
    if (!(a & ATTR_NORMAL)) return 0;
    if (t->kind == KIND_SPM) {
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                if (bbuf_add(out, " ", 1)) return -1;
                i += 3;
            } else {
                if (bbuf_add(out, s + i, 1)) return -1;
                i++;
            }
        }
        return 0;
    }
    /* byte-level: each character is one byte; a character outside GPT-2's
     * table is spelled as llama.cpp's llama_decode_text does */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_get((const uint8_t *)s + i, len - i, &cp);
        if (k == 0) {
            cp = 0xfffd;
            k = 1;
        }
        int b = cp < 324 ? cp_byte[cp] : -1;
        if (b >= 0) {
            char c = (char)b;
            if (bbuf_add(out, &c, 1)) return -1;
        } else {
            char u[4], tmp[32];
            size_t un = utf8_put(cp, u);
            if (bbuf_add(out, "[UNK_BYTE_0x", 12)) return -1;
            for (size_t j = 0; j < un; j++) {
                snprintf(tmp, sizeof tmp, "%02x", (uint8_t)u[j]);
                if (bbuf_add(out, tmp, 2)) return -1;
            }
            if (bbuf_add(out, s, len) || bbuf_add(out, "]", 1)) return -1;
        }
        i += k;
    }
    return 0;
}

static const pre_def *find_pre(const char *name)
{
    for (size_t i = 0; i < N_PRE_DEFS; i++)
        for (size_t j = 0; j < 12 && pre_defs[i].names[j]; j++)
            if (strcmp(pre_defs[i].names[j], name) == 0) return &pre_defs[i];
    return NULL;
}

/* PCRE2 allocates through libtern's allocator (runtime/fault.h): the
 * compiled patterns keep these, and match data made from a pattern too. */
static void *re_malloc(PCRE2_SIZE n, void *data)
{
    (void)data;
    return malloc(n);
}

static void re_free(void *p, void *data)
{
    (void)data;
    free(p);
}

static tern_status compile_regexes(tern_tokenizer *t, const pre_def *pd, const char *name,
                                   tern_error *err)
{
    pcre2_general_context *gc = pcre2_general_context_create(re_malloc, re_free, NULL);
    pcre2_compile_context *cc = gc ? pcre2_compile_context_create(gc) : NULL;
    tern_status st = cc ? TERN_OK : tern_error_set(err, TERN_ENOMEM, "%s: out of memory compiling regexes", name);
    for (int i = 0; !st && i < MAX_REGEX && pd->regex[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pd->regex[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, cc);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            int oom = ec == PCRE2_ERROR_HEAP_FAILED || ec == PCRE2_ERROR_NOMEMORY;
            st = tern_error_set(err, oom ? TERN_ENOMEM : TERN_EUNSUPPORTED,
                                "%s: pre-tokenizer '%s' regex %d: %s at offset %zu", name, t->pre, i,
                                (const char *)msg, (size_t)eo);
            break;
        }
        t->re[t->n_re] = re;
        t->re_jit[t->n_re] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
        t->n_re++;
    }
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(gc);
    return st;
}

/* Text lists llama.cpp uses to find EOT and end-of-generation tokens. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<end_of_utterance>", NULL};
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", NULL};

static int32_t find_text(const tern_tokenizer *t, const char *s)
{
    return lookup(t, s, strlen(s));
}

/* Special ids: the model's defaults, then the file's values (out-of-range
 * ones ignored, as llama.cpp does with a warning). */
static int32_t pick_id(int64_t given, int32_t dflt, int32_t n)
{
    if (dflt >= n) dflt = -1;
    if (given == TERN_TOKEN_ID_UNSET || given < 0 || given >= n) return dflt;
    return (int32_t)given;
}

static tern_status build_specials(tern_tokenizer *t, const tern_tokenizer_vocab *v, const pre_def *pd,
                                  tern_error *err)
{
    int spm = t->kind == KIND_SPM;
    int32_t n = t->n_vocab;
    t->bos = pick_id(v->bos, spm ? 1 : (pd->flags & PRE_NO_BOS) ? -1 : 11, n);
    t->eos = pick_id(v->eos, spm ? 2 : 11, n);
    t->unk = pick_id(v->unk, spm ? 0 : -1, n);
    t->pad = pick_id(v->pad, -1, n);
    t->eot = pick_id(v->eot, -1, n);
    t->eom = pick_id(v->eom, -1, n);
    t->add_bos = spm || (pd->flags & PRE_ADD_BOS);
    t->add_eos = 0;
    t->add_space_prefix = spm;
    if (v->add_bos >= 0) t->add_bos = v->add_bos != 0;
    if (v->add_eos >= 0) t->add_eos = v->add_eos != 0;
    if (v->add_space_prefix >= 0) t->add_space_prefix = v->add_space_prefix != 0;
    if (t->add_bos && t->bos < 0)
        return tern_error_set(err, TERN_EFORMAT,
                              "%s: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set",
                              vname(v));
    if (t->add_eos && t->eos < 0)
        return tern_error_set(err, TERN_EFORMAT,
                              "%s: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set",
                              vname(v));
    if (t->eot < 0) {
        for (int i = 0; eot_texts[i] && t->eot < 0; i++) t->eot = find_text(t, eot_texts[i]);
        if (t->eot >= 0) t->attr[t->eot] |= ATTR_CONTROL;
    }
    if (t->eom < 0) {
        t->eom = find_text(t, "<|eom_id|>");
        if (t->eom >= 0) t->attr[t->eom] |= ATTR_CONTROL;
    }
    /* control tokens named "unused" are unused, as llama.cpp decides */
    for (int32_t i = 0; i < n; i++) {
        size_t len;
        const char *s = text_at(t, i, &len);
        if ((t->attr[i] & ATTR_CONTROL) && memmem(s, len, "unused", 6)) t->attr[i] |= ATTR_UNUSED;
    }
    t->eog = calloc((size_t)n, 1);
    if (!t->eog) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
    for (int i = 0; eog_texts[i]; i++) {
        int32_t id = find_text(t, eog_texts[i]);
        if (id >= 0) {
            t->eog[id] = 1;
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
    return TERN_OK;
}

typedef struct len_id {
    uint64_t len;
    int32_t id;
} len_id;

static int cmp_special(const void *a, const void *b)
{
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static tern_status build_caches(tern_tokenizer *t, const tern_tokenizer_vocab *v, tern_error *err)
{
    int32_t n = t->n_vocab;
    t->specials = malloc(((size_t)n + 1) * sizeof *t->specials);
    t->piece_off = malloc(((size_t)n + 1) * sizeof *t->piece_off);
    if (!t->specials || !t->piece_off) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
    size_t n_sp = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) n_sp++;
    len_id *sp = malloc((n_sp + 1) * sizeof *sp);
    if (!sp) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
    n_sp = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
            sp[n_sp++] = (len_id){t->off[i + 1] - t->off[i], i};
    /* longest first; equal lengths by id, so the order is reproducible
     * (llama.cpp's std::sort leaves ties unspecified) */
    qsort(sp, n_sp, sizeof *sp, cmp_special);
    for (size_t i = 0; i < n_sp; i++) t->specials[i] = sp[i].id;
    t->n_specials = (int32_t)n_sp;
    free(sp);

    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t un = utf8_put(gpt2_byte_cp(b), u);
        memcpy(t->byte_enc[b], u, 2);
        t->byte_enc_len[b] = (uint8_t)un;
    }

    bbuf pieces = {0};
    int16_t cp_byte[324];
    gpt2_cp_table(cp_byte);
    for (int32_t i = 0; i < n; i++) {
        t->piece_off[i] = pieces.n;
        if (build_piece(t, i, cp_byte, &pieces)) {
            free(pieces.p);
            return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
        }
    }
    t->piece_off[n] = pieces.n;
    t->pieces = pieces.p ? pieces.p : malloc(1);
    if (!t->pieces) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));

    /* SentencePiece merges can only cross a word start (U+2581 after
     * another character) through a token that contains one */
    t->spm_word_split = t->kind == KIND_SPM;
    for (int32_t i = 0; i < n && t->spm_word_split; i++) {
        size_t len;
        const char *s = text_at(t, i, &len);
        for (const char *p = len > 3 ? memmem(s + 1, len - 1, "\xe2\x96\x81", 3) : NULL; p;
             p = (size_t)(p - s) + 1 < len ? memmem(p + 1, len - (size_t)(p - s) - 1, "\xe2\x96\x81", 3) : NULL)
            if (p - s < 3 || memcmp(p - 3, "\xe2\x96\x81", 3) != 0) t->spm_word_split = 0;
    }

    for (int b = 0; b < 256; b++) {
        char c = (char)b, hex[8];
        t->byte_sym[b] = lookup_any(t, t->byte_enc[b], t->byte_enc_len[b]);
        t->single_tok[b] = lookup(t, &c, 1);
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        t->spm_byte[b] = lookup(t, hex, 6);
        if (t->spm_byte[b] < 0) t->spm_byte[b] = t->single_tok[b];
    }
    return TERN_OK;
}

tern_status tern_tokenizer_from_vocab(const tern_tokenizer_vocab *v, tern_tokenizer **out, tern_error *err)
{
    *out = NULL;
    if (!v->model) return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.model is missing", vname(v));
    int kind;
    if (strcmp(v->model, "gpt2") == 0)
        kind = KIND_BPE;
    else if (strcmp(v->model, "llama") == 0)
        kind = KIND_SPM;
    else
        return tern_error_set(err, TERN_EUNSUPPORTED,
                              "%s: tokenizer.ggml.model '%s' is not supported (tern reads 'gpt2' and 'llama')",
                              vname(v), v->model);
    if (v->n_tokens <= 0 || v->n_tokens >= INT32_MAX / 2 || !v->tokens)
        return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.tokens: %lld tokens", vname(v),
                              (long long)v->n_tokens);
    if (v->n_merges < 0 || v->n_merges >= INT32_MAX || (v->n_merges > 0 && !v->merges))
        return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.merges: %lld merges", vname(v),
                              (long long)v->n_merges);
    const char *pre = v->pre && *v->pre ? v->pre : "default";
    const pre_def *pd = kind == KIND_BPE ? find_pre(pre) : &pre_defs[0];
    if (!pd)
        return tern_error_set(err, TERN_EUNSUPPORTED, "%s: tokenizer.ggml.pre: unknown pre-tokenizer type '%s'",
                              vname(v), pre);
    if (kind == KIND_BPE && !v->merges) /* present but empty is valid: bytes only */
        return tern_error_set(err, TERN_EFORMAT, "%s: tokenizer.ggml.merges is missing (model 'gpt2')", vname(v));

    tern_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
    t->kind = kind;
    snprintf(t->model, sizeof t->model, "%s", v->model);
    snprintf(t->pre, sizeof t->pre, "%s", kind == KIND_BPE ? pre : "default");
    t->n_vocab = t->n_texts = (int32_t)v->n_tokens;
    t->ignore_merges = kind == KIND_BPE && (pd->flags & PRE_IGNORE_MERGES);

    size_t n = (size_t)v->n_tokens;
    size_t slots = pow2_at_least(n * 2 + 2);
    t->off = malloc((n + 2) * sizeof *t->off);
    t->attr = malloc(n);
    t->scores = malloc(n * sizeof *t->scores);
    t->texts = malloc(slots * sizeof *t->texts);
    tern_status st = TERN_OK;
    bbuf blob = {0};
    if (!t->off || !t->attr || !t->scores || !t->texts) {
        st = tern_error_set(err, TERN_ENOMEM, "%s: out of memory for %zu tokens", vname(v), n);
        goto fail;
    }
    t->text_mask = slots - 1;
    for (size_t i = 0; i < slots; i++) t->texts[i].id = -1;
    for (size_t i = 0; i < n; i++) {
        t->attr[i] = v->token_types ? attr_of_type(v->token_types[i]) : ATTR_NORMAL;
        t->scores[i] = v->scores ? v->scores[i] : 0.0f;
    }
    t->off[0] = 0;
    if ((st = build_texts(t, v, &blob, err))) goto fail;
    if (kind == KIND_BPE && (st = build_merges(t, v, &blob, err))) goto fail;
    if (!t->blob && !(t->blob = malloc(1))) {
        st = tern_error_set(err, TERN_ENOMEM, "%s: out of memory", vname(v));
        goto fail;
    }
    if ((st = build_specials(t, v, pd, err))) goto fail;
    if ((st = build_caches(t, v, err))) goto fail;
    if (kind == KIND_BPE && (st = compile_regexes(t, pd, vname(v), err))) goto fail;
    *out = t;
    return TERN_OK;
fail:
    if (!t->blob) free(blob.p);
    tern_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------ */
/* encoding: per-call scratch */

typedef struct bpe_sym {
    int32_t id;   /* token (or merge-only text) id of the symbol */
    int32_t prev, next;
    uint32_t len; /* bytes of the word it covers; 0 once merged away */
} bpe_sym;

typedef struct bpe_pair {
    int32_t rank, left, right, lid, rid, result;
} bpe_pair;

typedef struct spm_sym {
    int32_t prev, next;
    uint32_t start, len;
} spm_sym;

typedef struct spm_pair {
    float score;
    int32_t left, right;
    uint32_t size;
} spm_pair;

typedef struct frag {
    size_t off, len;
    int32_t token; /* -1: raw text */
} frag;

typedef struct tok_ctx {
    const tern_tokenizer *t;
    int32_t **ids;
    size_t *cap, n;
    int oom;
    char *text; /* sanitised fragment (BPE) or escaped fragment (SPM) */
    size_t text_cap;
    char *rtext; /* the same with surrogates as U+FFFD, for PCRE2 */
    size_t rtext_cap;
    char *enc; /* byte-level encoded word, for whole-word lookups */
    size_t enc_cap;
    size_t *chunks[2];
    size_t chunk_cap[2], n_chunks[2];
    bpe_sym *syms;
    size_t syms_cap;
    bpe_pair *heap;
    size_t heap_cap, heap_n;
    spm_sym *ssyms;
    size_t ssyms_cap;
    spm_pair *sheap;
    size_t sheap_cap, sheap_n;
    frag *frags[2];
    size_t frag_cap[2];
    pcre2_match_data *md;
    int re_error; /* PCRE2's code when a match failed, and where */
    size_t re_error_at;
} tok_ctx;

static int grow(void *pp, size_t *cap, size_t need, size_t elem)
{
    void **p = pp;
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 4) return -1;
        c *= 2;
    }
    size_t bytes;
    if (tern_mul_overflows(c, elem, &bytes)) return -1;
    void *q = realloc(*p, bytes);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void ctx_free(tok_ctx *c)
{
    free(c->text);
    free(c->rtext);
    free(c->enc);
    free(c->chunks[0]);
    free(c->chunks[1]);
    free(c->syms);
    free(c->heap);
    free(c->ssyms);
    free(c->sheap);
    free(c->frags[0]);
    free(c->frags[1]);
    if (c->md) pcre2_match_data_free(c->md);
}

static inline void emit(tok_ctx *c, int32_t id)
{
    if (c->n == *c->cap && grow(c->ids, c->cap, c->n + 1, sizeof(int32_t))) {
        c->oom = 1;
        return;
    }
    (*c->ids)[c->n++] = id;
}

/* ---- special-token partition (llama.cpp's tokenizer_st_partition) ---- */

/* Splits the raw fragments at every occurrence of each special token's
 * text, longest tokens first. User-defined tokens always split; control
 * and unknown ones only when parse_special is set. Leaves the result in
 * c->frags[*which], *n_out fragments. */
static int partition(tok_ctx *c, const char *text, size_t len, int parse_special, int *which,
                     size_t *n_out)
{
    const tern_tokenizer *t = c->t;
    int cur = 0;
    size_t n = 0;
    if (len > 0) {
        if (grow(&c->frags[0], &c->frag_cap[0], 1, sizeof(frag))) return -1;
        c->frags[0][0] = (frag){0, len, -1};
        n = 1;
    }
    for (int32_t k = 0; k < t->n_specials && n > 0; k++) {
        int32_t id = t->specials[k];
        if (!parse_special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        size_t sl;
        const char *s = text_at(t, id, &sl);
        /* cheap pre-check: most specials occur nowhere */
        int found = 0;
        for (size_t i = 0; i < n && !found; i++) {
            const frag *f = &c->frags[cur][i];
            found = f->token < 0 && f->len >= sl && memmem(text + f->off, f->len, s, sl);
        }
        if (!found) continue;
        int nxt = 1 - cur;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            frag f = c->frags[cur][i];
            while (f.token < 0 && f.len > 0) {
                const char *hit = f.len >= sl ? memmem(text + f.off, f.len, s, sl) : NULL;
                if (!hit) break;
                size_t at = (size_t)(hit - text);
                if (grow(&c->frags[nxt], &c->frag_cap[nxt], m + 2, sizeof(frag))) return -1;
                if (at > f.off) c->frags[nxt][m++] = (frag){f.off, at - f.off, -1};
                c->frags[nxt][m++] = (frag){at, sl, id};
                f.len -= at + sl - f.off;
                f.off = at + sl;
            }
            if (f.token >= 0 || f.len > 0) {
                if (grow(&c->frags[nxt], &c->frag_cap[nxt], m + 1, sizeof(frag))) return -1;
                c->frags[nxt][m++] = f;
            }
        }
        cur = nxt;
        n = m;
    }
    *which = cur;
    *n_out = n;
    return 0;
}

/* ---- byte-level BPE ---- */

static inline int pair_better(const bpe_pair *a, const bpe_pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void bpe_push(tok_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    const bpe_sym *L = &c->syms[left], *R = &c->syms[right];
    const merge_slot *m = merge_find(c->t, L->id, R->id);
    if (!m) return;
    if (grow(&c->heap, &c->heap_cap, c->heap_n + 1, sizeof(bpe_pair))) {
        c->oom = 1;
        return;
    }
    bpe_pair p = {m->rank, left, right, L->id, R->id, m->result};
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_better(&p, &c->heap[up])) break;
        c->heap[i] = c->heap[up];
        i = up;
    }
    c->heap[i] = p;
}

static bpe_pair bpe_pop(tok_ctx *c)
{
    bpe_pair top = c->heap[0], last = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t b = l + 1 < n && pair_better(&c->heap[l + 1], &c->heap[l]) ? l + 1 : l;
        if (!pair_better(&c->heap[b], &last)) break;
        c->heap[i] = c->heap[b];
        i = b;
    }
    if (n) c->heap[i] = last;
    return top;
}

/* A symbol that is no vocabulary token: llama.cpp spells its encoded text
 * out byte by byte, keeping the bytes that are one-byte tokens. */
static void emit_spelled(tok_ctx *c, const uint8_t *w, size_t n)
{
    const tern_tokenizer *t = c->t;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < t->byte_enc_len[w[i]]; j++) {
            int32_t id = t->single_tok[(uint8_t)t->byte_enc[w[i]][j]];
            if (id >= 0) emit(c, id);
        }
}

static void bpe_word(tok_ctx *c, const uint8_t *w, size_t n)
{
    const tern_tokenizer *t = c->t;
    if (n == 0) return;
    if (t->ignore_merges) {
        if (grow(&c->enc, &c->enc_cap, 2 * n + 2, 1)) {
            c->oom = 1;
            return;
        }
        size_t en = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(c->enc + en, t->byte_enc[w[i]], 2);
            en += t->byte_enc_len[w[i]];
        }
        int32_t id = lookup(t, c->enc, en);
        if (id >= 0) {
            emit(c, id);
            return;
        }
    }
    if (n > INT32_MAX || grow(&c->syms, &c->syms_cap, n, sizeof(bpe_sym))) {
        c->oom = 1;
        return;
    }
    bpe_sym *s = c->syms;
    for (size_t i = 0; i < n; i++)
        s[i] = (bpe_sym){t->byte_sym[w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    c->heap_n = 0;
    for (size_t i = 1; i < n; i++) bpe_push(c, (int32_t)i - 1, (int32_t)i);
    while (c->heap_n > 0) {
        bpe_pair p = bpe_pop(c);
        bpe_sym *L = &s[p.left], *R = &s[p.right];
        /* stale: one side has been merged into something else since */
        if (L->len == 0 || R->len == 0 || L->id != p.lid || R->id != p.rid) continue;
        L->id = p.result;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = p.left;
        bpe_push(c, L->prev, p.left);
        bpe_push(c, p.left, L->next);
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        if (s[i].id >= 0 && s[i].id < t->n_vocab)
            emit(c, s[i].id);
        else
            emit_spelled(c, w + i, s[i].len);
    }
}

/* Rewrites a fragment the way llama.cpp's unicode_cpts_from_utf8 +
 * unicode_cpt_to_utf8 do before splitting: each byte that cannot start a
 * valid sequence becomes U+FFFD, overlong forms come out shortest. Code
 * points past U+10FFFF (which make llama.cpp throw) are treated as invalid
 * bytes. c->rtext gets a copy with surrogates as U+FFFD (same length) when
 * there are any, because PCRE2 only matches valid UTF-8. */
static int sanitize(tok_ctx *c, const uint8_t *s, size_t n, size_t *out_n, const char **rx)
{
    size_t cap;
    if (tern_mul_overflows(n, 3, &cap) || grow(&c->text, &c->text_cap, cap + 1, 1)) return -1;
    char *o = c->text;
    size_t k = 0;
    int surrogates = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            o[k++] = (char)s[i++];
            continue;
        }
        uint32_t cp;
        size_t l = utf8_get(s + i, n - i, &cp);
        if (l == 0 || cp > 0x10ffff) {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
            continue;
        }
        surrogates |= cp >= 0xd800 && cp <= 0xdfff;
        k += utf8_put(cp, o + k);
        i += l;
    }
    *out_n = k;
    *rx = c->text;
    if (!surrogates) return 0;
    if (grow(&c->rtext, &c->rtext_cap, k + 1, 1)) return -1;
    memcpy(c->rtext, c->text, k);
    for (size_t i = 0; i + 2 < k; i++) {
        uint8_t b0 = (uint8_t)c->rtext[i], b1 = (uint8_t)c->rtext[i + 1];
        if (b0 == 0xed && b1 >= 0xa0) memcpy(c->rtext + i, "\xef\xbf\xbd", 3);
    }
    *rx = c->rtext;
    return 0;
}

static int add_chunk(tok_ctx *c, int level, size_t start, size_t len)
{
    size_t n = c->n_chunks[level];
    if (grow(&c->chunks[level], &c->chunk_cap[level], 2 * (n + 1), sizeof(size_t))) return -1;
    c->chunks[level][2 * n] = start;
    c->chunks[level][2 * n + 1] = len;
    c->n_chunks[level] = n + 1;
    return 0;
}

/* Splits [start, start+len) of the text with regex r: matches and the text
 * between them are pieces, as llama.cpp's unicode_regex_split keeps both.
 * The last regex hands pieces straight to BPE; earlier ones collect them. */
static int split(tok_ctx *c, int r, const char *rx, size_t start, size_t len, int level)
{
    const tern_tokenizer *t = c->t;
    int last = r == t->n_re - 1;
    const PCRE2_SPTR subj = (PCRE2_SPTR)rx + start;
    size_t pos = 0, done = 0;
    while (pos < len) {
        int rc = PCRE2_ERROR_JIT_STACKLIMIT;
        if (t->re_jit[r]) rc = pcre2_jit_match(t->re[r], subj, len, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        /* the interpreter keeps its backtracking on the heap: the fallback
         * when JIT code runs out of its stack */
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(t->re[r], subj, len, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            c->re_error = rc;
            c->re_error_at = start + pos;
            return rc == PCRE2_ERROR_NOMEMORY ? -1 : -2;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing; step one character */
            if (ms >= len) break;
            pos = ms + utf8_len(subj[ms]);
            continue;
        }
        if (ms > done) {
            if (last)
                bpe_word(c, (const uint8_t *)c->text + start + done, ms - done);
            else if (add_chunk(c, level, start + done, ms - done))
                return -1;
        }
        if (last)
            bpe_word(c, (const uint8_t *)c->text + start + ms, me - ms);
        else if (add_chunk(c, level, start + ms, me - ms))
            return -1;
        done = pos = me;
    }
    if (done < len) {
        if (last)
            bpe_word(c, (const uint8_t *)c->text + start + done, len - done);
        else if (add_chunk(c, level, start + done, len - done))
            return -1;
    }
    return c->oom ? -1 : 0;
}

static tern_status bpe_fragment(tok_ctx *c, const char *s, size_t n, tern_error *err)
{
    const tern_tokenizer *t = c->t;
    size_t len;
    const char *rx;
    if (sanitize(c, (const uint8_t *)s, n, &len, &rx)) return tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
    int level = 0, rc = 0;
    c->n_chunks[0] = 0;
    if (t->n_re == 1) {
        rc = split(c, 0, rx, 0, len, 0);
    } else {
        rc = add_chunk(c, 0, 0, len);
        for (int r = 0; r < t->n_re && rc == 0; r++) {
            int nxt = 1 - level;
            c->n_chunks[nxt] = 0;
            for (size_t i = 0; i < c->n_chunks[level] && rc == 0; i++)
                rc = split(c, r, rx, c->chunks[level][2 * i], c->chunks[level][2 * i + 1], nxt);
            level = nxt;
        }
    }
    if (rc == -2) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(c->re_error, msg, sizeof msg);
        return tern_error_set(err, TERN_EINVAL, "tokenize: pre-tokenizer '%s': regex match failed at byte %zu of a fragment: %s",
                              t->pre, c->re_error_at, (const char *)msg);
    }
    if (rc || c->oom) return tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
    return TERN_OK;
}

/* ---- SentencePiece BPE ---- */

static inline int spair_better(const spm_pair *a, const spm_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void spm_push(tok_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    const spm_sym *L = &c->ssyms[left], *R = &c->ssyms[right];
    int32_t id = lookup(c->t, c->text + L->start, L->len + R->len);
    if (id < 0) return;
    if (grow(&c->sheap, &c->sheap_cap, c->sheap_n + 1, sizeof(spm_pair))) {
        c->oom = 1;
        return;
    }
    spm_pair p = {c->t->scores[id], left, right, L->len + R->len};
    size_t i = c->sheap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!spair_better(&p, &c->sheap[up])) break;
        c->sheap[i] = c->sheap[up];
        i = up;
    }
    c->sheap[i] = p;
}

static spm_pair spm_pop(tok_ctx *c)
{
    spm_pair top = c->sheap[0], last = c->sheap[--c->sheap_n];
    size_t i = 0, n = c->sheap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t b = l + 1 < n && spair_better(&c->sheap[l + 1], &c->sheap[l]) ? l + 1 : l;
        if (!spair_better(&c->sheap[b], &last)) break;
        c->sheap[i] = c->sheap[b];
        i = b;
    }
    if (n) c->sheap[i] = last;
    return top;
}

/* Merges symbols [a, b) by score as llama.cpp's llm_tokenizer_spm_session
 * does (best score first, leftmost on ties) and emits the result, with
 * byte fallback for symbols that are no token. */
static void spm_segment(tok_ctx *c, int32_t a, int32_t b)
{
    const tern_tokenizer *t = c->t;
    spm_sym *y = c->ssyms;
    y[a].prev = -1;
    y[b - 1].next = -1;
    c->sheap_n = 0;
    for (int32_t i = a + 1; i < b; i++) spm_push(c, i - 1, i);
    while (c->sheap_n > 0) {
        spm_pair p = spm_pop(c);
        spm_sym *L = &y[p.left], *R = &y[p.right];
        if (L->len == 0 || R->len == 0 || L->len + R->len != p.size) continue;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) y[R->next].prev = p.left;
        spm_push(c, L->prev, p.left);
        spm_push(c, p.left, L->next);
    }
    for (int32_t i = a; i >= 0; i = y[i].next) {
        int32_t id = lookup(t, c->text + y[i].start, y[i].len);
        if (id >= 0) {
            emit(c, id);
            continue;
        }
        /* llama.cpp throws where the vocabulary has no token for a byte;
         * tern uses <unk> (or drops the byte when there is none) */
        for (uint32_t j = 0; j < y[i].len; j++) {
            int32_t bt = t->spm_byte[(uint8_t)c->text[y[i].start + j]];
            if (bt < 0) bt = t->unk;
            if (bt >= 0) emit(c, bt);
        }
    }
}

static int is_space_mark(const char *s) { return memcmp(s, "\xe2\x96\x81", 3) == 0; }

/* One raw fragment: optional leading space, spaces as U+2581, symbols one
 * UTF-8 character each. Where the vocabulary allows (spm_word_split), each
 * word is merged on its own: no token spans a word start there, so the
 * result is the same as merging the whole fragment, with small heaps. */
static tern_status spm_fragment(tok_ctx *c, const char *s, size_t n, int prefix_space, tern_error *err)
{
    const tern_tokenizer *t = c->t;
    size_t cap;
    if (tern_mul_overflows(n + 1, 3, &cap) || grow(&c->text, &c->text_cap, cap, 1))
        return tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
    size_t k = 0;
    if (prefix_space) {
        memcpy(c->text, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(c->text + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            c->text[k++] = s[i];
        }
    }
    if (k == 0) return TERN_OK;
    if (k > UINT32_MAX / 2 || grow(&c->ssyms, &c->ssyms_cap, k, sizeof(spm_sym)))
        return tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
    spm_sym *y = c->ssyms;
    int32_t m = 0;
    for (size_t off = 0; off < k;) {
        size_t l = utf8_len((uint8_t)c->text[off]);
        if (l > k - off) l = k - off;
        y[m] = (spm_sym){m - 1, off + l == k ? -1 : m + 1, (uint32_t)off, (uint32_t)l};
        off += l;
        m++;
    }
    int32_t seg = 0;
    for (int32_t i = 1; i <= m; i++) {
        int cut = i == m;
        if (!cut && t->spm_word_split && y[i].len == 3 && is_space_mark(c->text + y[i].start))
            cut = y[i].start < 3 || !is_space_mark(c->text + y[i].start - 3);
        if (cut) {
            spm_segment(c, seg, i);
            seg = i;
        }
    }
    return c->oom ? tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory") : TERN_OK;
}

tern_status tern_tokenize(const tern_tokenizer *t, const char *text, size_t len, int add_special,
                          int parse_special, int32_t **ids, size_t *cap, size_t *n, tern_error *err)
{
    *n = 0;
    if (!t || (!text && len)) return tern_error_set(err, TERN_EINVAL, "tokenize: no tokenizer or no text");
    tok_ctx c = {.t = t, .ids = ids, .cap = cap};
    if (*ids == NULL) *cap = 0;
    tern_status st = TERN_OK;
    int which = 0;
    size_t nf = 0;
    if (partition(&c, text, len, parse_special, &which, &nf)) {
        st = tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
        goto done;
    }
    if (add_special && t->add_bos) emit(&c, t->bos);
    if (t->kind == KIND_BPE && t->n_re > 0) {
        c.md = pcre2_match_data_create_from_pattern(t->re[0], NULL); /* 1 pair is all matching uses */
        if (!c.md) {
            st = tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
            goto done;
        }
    }
    int prev_special = 1; /* SPM: a space goes before the text at the start and after specials */
    for (size_t i = 0; i < nf && st == TERN_OK; i++) {
        const frag *f = &c.frags[which][i];
        if (f->token >= 0) {
            emit(&c, f->token);
            prev_special = 1;
        } else if (t->kind == KIND_BPE) {
            st = bpe_fragment(&c, text + f->off, f->len, err);
        } else {
            st = spm_fragment(&c, text + f->off, f->len, t->add_space_prefix && prev_special, err);
            prev_special = 0;
        }
    }
    if (st == TERN_OK && add_special && t->add_eos) emit(&c, t->eos);
    if (st == TERN_OK && c.oom) st = tern_error_set(err, TERN_ENOMEM, "tokenize: out of memory");
done:
    *n = st == TERN_OK ? c.n : 0;
    ctx_free(&c);
    return st;
}

/* ------------------------------------------------------------------ */
/* decoding */

int tern_token_to_piece(const tern_tokenizer *t, int32_t id, char *buf, size_t n, int special)
{
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    if (!special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) return 0;
    size_t len = (size_t)(t->piece_off[id + 1] - t->piece_off[id]);
    if (len > INT_MAX) return -1;
    if (buf) memcpy(buf, t->pieces + t->piece_off[id], len <= n ? len : n);
    return (int)len;
}

size_t tern_detokenize(const tern_tokenizer *t, const int32_t *ids, size_t n_ids, char *buf, size_t n,
                       int special)
{
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (!t || id < 0 || id >= t->n_vocab) continue;
        if (!special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        const char *p = t->pieces + t->piece_off[id];
        size_t len = (size_t)(t->piece_off[id + 1] - t->piece_off[id]);
        /* SentencePiece: the space tokenize added before the first word */
        if (i == 0 && t->add_space_prefix && len > 0 && p[0] == ' ') {
            p++;
            len--;
        }
        if (buf && n > 0 && total < n - 1) {
            size_t k = n - 1 - total < len ? n - 1 - total : len;
            memcpy(buf + total, p, k);
        }
        total += len;
    }
    if (buf && n > 0) buf[total < n - 1 ? total : n - 1] = 0;
    return total;
}

/* Length of the incomplete UTF-8 sequence at the end of s[0..n), or 0 when
 * it ends on a boundary (or with bytes that can never complete). */
static size_t utf8_incomplete_tail(const char *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = (uint8_t)s[n - back];
        if ((b & 0xc0) == 0x80) continue; /* continuation: keep looking for the lead */
        size_t need = b >= 0xf0 && b < 0xf8 ? 4 : b >= 0xe0 && b < 0xf0 ? 3 : b >= 0xc0 && b < 0xe0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

size_t tern_detok_stream_push(const tern_tokenizer *t, tern_detok_stream *s, int32_t id, char *out, size_t n)
{
    if (!out || n < s->n_pending) return 0;
    memcpy(out, s->pending, s->n_pending);
    size_t total = s->n_pending;
    s->n_pending = 0;
    int len = tern_token_to_piece(t, id, out + total, n - total, 0);
    if (len > 0) total += (size_t)len <= n - total ? (size_t)len : n - total; /* what fits */
    size_t tail = utf8_incomplete_tail(out, total);
    memcpy(s->pending, out + total - tail, tail);
    s->n_pending = tail;
    return total - tail;
}

size_t tern_detok_stream_flush(tern_detok_stream *s, char *out, size_t n)
{
    size_t k = s->n_pending <= n ? s->n_pending : n;
    if (out) memcpy(out, s->pending, k);
    s->n_pending = 0;
    return k;
}

/* ------------------------------------------------------------------ */
/* accessors */

int32_t tern_tokenizer_n_vocab(const tern_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t tern_tokenizer_bos(const tern_tokenizer *t) { return t ? t->bos : -1; }
int32_t tern_tokenizer_eos(const tern_tokenizer *t) { return t ? t->eos : -1; }
int32_t tern_tokenizer_eot(const tern_tokenizer *t) { return t ? t->eot : -1; }
int tern_tokenizer_add_bos(const tern_tokenizer *t) { return t && t->add_bos; }
int tern_tokenizer_add_eos(const tern_tokenizer *t) { return t && t->add_eos; }
const char *tern_tokenizer_model(const tern_tokenizer *t) { return t ? t->model : ""; }
const char *tern_tokenizer_pre(const tern_tokenizer *t) { return t ? t->pre : ""; }

int tern_tokenizer_is_eog(const tern_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}

int tern_tokenizer_token_type(const tern_tokenizer *t, int32_t id)
{
    if (!t || id < 0 || id >= t->n_vocab) return TERN_TOKEN_UNDEFINED;
    uint8_t a = t->attr[id];
    if (a & ATTR_UNUSED) return TERN_TOKEN_UNUSED;
    if (a & ATTR_CONTROL) return TERN_TOKEN_CONTROL;
    if (a & ATTR_USER_DEFINED) return TERN_TOKEN_USER_DEFINED;
    if (a & ATTR_UNKNOWN) return TERN_TOKEN_UNKNOWN;
    if (a & ATTR_BYTE) return TERN_TOKEN_BYTE;
    if (a & ATTR_NORMAL) return TERN_TOKEN_NORMAL;
    return TERN_TOKEN_UNDEFINED;
}

int32_t tern_tokenizer_find(const tern_tokenizer *t, const char *text, size_t len)
{
    return t && text ? lookup(t, text, len) : -1;
}

const char *tern_tokenizer_token_text(const tern_tokenizer *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    size_t l;
    const char *s = text_at(t, id, &l);
    if (len) *len = l;
    return s;
}
