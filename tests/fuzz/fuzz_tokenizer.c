/* fuzz_tokenizer.c - libFuzzer target for the tokenizer: encode any bytes
 * with each of four vocabulary kinds, decode the ids back, stream them
 * through the detokenizer, and check:
 *   - every id is in the vocabulary and every piece decodes;
 *   - valid UTF-8 (with special-token parsing off) round-trips exactly on
 *     the three kinds that can spell every byte (for SentencePiece, text
 *     without a literal U+2581, which is how it writes a space);
 *   - the streaming detokenizer gives the same text as the whole-list one.
 * The kinds: byte-level BPE with the GPT-2 pre-tokenizer (the embedded
 * tiny model's vocabulary), the same tokens with the Llama 3 pre-tokenizer
 * (llama-bpe, BitNet 2B4T's kind), SentencePiece with byte fallback, and
 * SentencePiece without byte tokens (unknown characters become <unk>).
 * The first input byte picks the kind and the flags; the rest is the text.
 * Built by tests/fuzz/SConscript from the tokenizer and GGUF sources. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/gguf.h"
#include "tern/tokenizer.h"

#ifndef TERN_SOURCE_DIR
#define TERN_SOURCE_DIR "."
#endif

enum { K_GPT2, K_LLAMA_BPE, K_SPM_BYTES, K_SPM_UNK, N_KINDS };
static tern_tokenizer *toks[N_KINDS];

static void die(const char *what, const tern_error *err)
{
    fprintf(stderr, "fuzz_tokenizer: %s: %s\n", what, err ? err->msg : "");
    abort();
}

/* The embedded model's vocabulary, with the pre-tokenizer replaced. */
static tern_tokenizer *bpe_with_pre(const tern_gguf *g, const char *pre)
{
    tern_tokenizer_vocab v;
    tern_tokenizer_vocab_init(&v);
    int64_t kt = tern_gguf_find_key(g, "tokenizer.ggml.tokens"), km = tern_gguf_find_key(g, "tokenizer.ggml.merges");
    int64_t ky = tern_gguf_find_key(g, "tokenizer.ggml.token_type");
    uint64_t nt = 0, nm = 0, ny = 0;
    tern_gguf_vtype et;
    if (kt < 0 || km < 0 || tern_gguf_kv_array(g, kt, &et, &nt, NULL) || tern_gguf_kv_array(g, km, &et, &nm, NULL))
        die("tiny-bitnet.gguf has no BPE vocabulary", NULL);
    const char **tokens = calloc(nt, sizeof *tokens), **merges = calloc(nm, sizeof *merges);
    size_t *tl = calloc(nt, sizeof *tl), *ml = calloc(nm, sizeof *ml);
    int32_t *types = calloc(nt, sizeof *types);
    for (uint64_t i = 0; i < nt; i++) {
        tern_gguf_str s = tern_gguf_arr_str(g, kt, i);
        tokens[i] = s.ptr;
        tl[i] = s.len;
        types[i] = TERN_TOKEN_NORMAL;
    }
    if (ky >= 0 && !tern_gguf_kv_array(g, ky, &et, &ny, NULL) && ny == nt)
        for (uint64_t i = 0; i < nt; i++) types[i] = (int32_t)tern_gguf_arr_int(g, ky, i);
    for (uint64_t i = 0; i < nm; i++) {
        tern_gguf_str s = tern_gguf_arr_str(g, km, i);
        merges[i] = s.ptr;
        ml[i] = s.len;
    }
    v.name = pre;
    v.model = "gpt2";
    v.pre = pre;
    v.n_tokens = (int64_t)nt;
    v.tokens = tokens;
    v.token_lens = tl;
    v.token_types = types;
    v.n_merges = (int64_t)nm;
    v.merges = merges;
    v.merge_lens = ml;
    int64_t id;
    if (!tern_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &id, NULL)) v.bos = id;
    if (!tern_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &id, NULL)) v.eos = id;
    tern_tokenizer *t;
    tern_error err;
    if (tern_tokenizer_from_vocab(&v, &t, &err)) die(pre, &err);
    free(tokens), free(merges), free(tl), free(ml), free(types);
    return t;
}

/* A small SentencePiece vocabulary: control tokens, optionally the 256
 * byte tokens, and pieces scored longer-is-better. */
static tern_tokenizer *toy_spm(int with_bytes)
{
    static const char *const pieces[] = {
        "\xe2\x96\x81", "\xe2\x96\x81t", "\xe2\x96\x81th", "\xe2\x96\x81the", "he", "e", "t", "h", "a", "n", "d",
        "\xe2\x96\x81" "a", "\xe2\x96\x81" "an", "\xe2\x96\x81" "and", "o", "\xe2\x96\x81o", "\xe2\x96\x81of",
        "\xc3\xa9", "\xe6\x97\xa5", "\xe6\x9c\xac", "\xf0\x9f\x99\x82", " ", "\n", "in", "ing", "s", "r", "l",
    };
    size_t np = sizeof pieces / sizeof pieces[0], n = 3 + (with_bytes ? 256 : 0) + np, k = 0;
    const char **tok = calloc(n, sizeof *tok);
    int32_t *types = calloc(n, sizeof *types);
    float *scores = calloc(n, sizeof *scores);
    static char hex[256][8];
    tok[k] = "<unk>", types[k++] = TERN_TOKEN_UNKNOWN;
    tok[k] = "<s>", types[k++] = TERN_TOKEN_CONTROL;
    tok[k] = "</s>", types[k++] = TERN_TOKEN_CONTROL;
    for (int b = 0; with_bytes && b < 256; b++) {
        snprintf(hex[b], sizeof hex[b], "<0x%02X>", b);
        tok[k] = hex[b], types[k++] = TERN_TOKEN_BYTE;
    }
    for (size_t i = 0; i < np; i++) {
        tok[k] = pieces[i];
        scores[k] = -10.0f + (float)strlen(pieces[i]);
        types[k++] = TERN_TOKEN_NORMAL;
    }
    tern_tokenizer_vocab v;
    tern_tokenizer_vocab_init(&v);
    v.name = with_bytes ? "toy-spm-bytes" : "toy-spm";
    v.model = "llama";
    v.n_tokens = (int64_t)n;
    v.tokens = tok;
    v.token_types = types;
    v.scores = scores;
    v.bos = 1;
    v.eos = 2;
    v.unk = 0;
    tern_tokenizer *t;
    tern_error err;
    if (tern_tokenizer_from_vocab(&v, &t, &err)) die(v.name, &err);
    free(tok), free(types), free(scores);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    tern_gguf *g;
    tern_error err;
    if (tern_gguf_open(TERN_SOURCE_DIR "/graphs/models/tiny-bitnet.gguf", &g, &err)) die("open", &err);
    if (tern_tokenizer_from_gguf(g, &toks[K_GPT2], &err)) die("gpt-2", &err);
    toks[K_LLAMA_BPE] = bpe_with_pre(g, "llama-bpe");
    tern_gguf_close(g);
    toks[K_SPM_BYTES] = toy_spm(1);
    toks[K_SPM_UNK] = toy_spm(0);
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int kind = data[0] & 3, add_special = (data[0] >> 2) & 1, parse_special = (data[0] >> 3) & 1;
    const tern_tokenizer *t = toks[kind];
    size_t len = size - 1;
    char *text = malloc(len ? len : 1); /* exact size: reads past the end are caught */
    memcpy(text, data + 1, len);
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    tern_error err;
    if (tern_tokenize(t, text, len, add_special, parse_special, &ids, &cap, &n, &err)) {
        if (!err.msg[0] || strchr(err.msg, '\n')) abort();
        free(ids);
        free(text);
        return 0;
    }
    int32_t nv = tern_tokenizer_n_vocab(t);
    char piece[512];
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= nv) abort();
        int pl = tern_token_to_piece(t, ids[i], piece, sizeof piece, 1);
        if (pl < 0) abort();
    }
    size_t need = tern_detokenize(t, ids, n, NULL, 0, 0);
    char *back = malloc(need + 1);
    if (tern_detokenize(t, ids, n, back, need + 1, 0) != need || back[need]) abort();
    /* the stream gives the whole-list text (byte-level BPE: exactly) */
    tern_detok_stream st;
    memset(&st, 0, sizeof st);
    char *streamed = malloc(need + 16);
    size_t sn = 0;
    for (size_t i = 0; i < n; i++) {
        char out[600];
        size_t k = tern_detok_stream_push(t, &st, ids[i], out, sizeof out);
        if (k > sizeof out || sn + k > need + 8) abort();
        memcpy(streamed + sn, out, k);
        sn += k;
    }
    sn += tern_detok_stream_flush(&st, streamed + sn, 8);
    if (kind <= K_LLAMA_BPE && (sn != need || memcmp(streamed, back, need) != 0)) {
        fprintf(stderr, "stream and list decode differ on kind %d\n", kind);
        abort();
    }
    free(streamed);
    /* SentencePiece writes spaces as U+2581, so a literal one decodes as a space */
    int spm_space = kind == K_SPM_BYTES && memmem(text, len, "\xe2\x96\x81", 3);
    if (!add_special && !parse_special && kind != K_SPM_UNK && !spm_space && valid_utf8((const uint8_t *)text, len)) {
        if (need != len || memcmp(back, text, len) != 0) {
            fprintf(stderr, "round trip failed on kind %d: %zu bytes in, %zu out\n", kind, len, need);
            abort();
        }
    }
    free(back);
    free(ids);
    free(text);
    return 0;
}
