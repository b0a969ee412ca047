/* test_tokenizer_shared.c - the tokenizer against ../shared: llama.cpp's own
 * test vectors (ref/tokenizer/NAME.gguf.inp/.out), the prompt ids both
 * engines agree on (ref/prompts.json, ref/README.md section 3), the
 * PyTorch references' prompt tokens (models/ref/refs.json), and edge cases
 * on real vocabularies. Prints per-vocabulary pass counts. */
#include <stdint.h>
#include <stdlib.h>

#include "common/testutil.h"
#include "tern/gguf.h"
#include "tern/tokenizer.h"

static tern_tokenizer *load_tok(const char *rel)
{
    char path[4096];
    tu_shared_path(path, sizeof path, rel);
    tern_gguf *g = NULL;
    tern_tokenizer *tok = NULL;
    tern_error err;
    ck_assert_msg(tern_gguf_open(path, &g, &err) == TERN_OK, "%s", err.msg);
    ck_assert_msg(tern_tokenizer_from_gguf(g, &tok, &err) == TERN_OK, "%s", err.msg);
    tern_gguf_close(g);
    return tok;
}

static char *read_shared(const char *rel, size_t *n)
{
    char path[4096];
    tu_shared_path(path, sizeof path, rel);
    char *s = tu_read_file(path, n);
    ck_assert_msg(s != NULL, "cannot read %s", path);
    char *z = realloc(s, *n + 1);
    ck_assert(z != NULL);
    z[*n] = 0;
    return z;
}

static size_t encode(const tern_tokenizer *tok, const char *s, size_t len, int add_special, int parse_special,
                     int32_t **ids, size_t *cap)
{
    size_t n = 0;
    tern_error err;
    ck_assert_msg(tern_tokenize(tok, s, len, add_special, parse_special, ids, cap, &n, &err) == TERN_OK, "%s",
                  err.msg);
    return n;
}

static char *decode(const tern_tokenizer *tok, const int32_t *ids, size_t n, size_t *len)
{
    size_t need = tern_detokenize(tok, ids, n, NULL, 0, 0);
    char *s = malloc(need + 1);
    ck_assert(s != NULL);
    *len = tern_detokenize(tok, ids, n, s, need + 1, 0);
    return s;
}

/* One vocabulary's .inp/.out pair: every string encodes to the listed ids
 * and decodes back to itself. */
static void run_vectors(const char *name, const char *vocab_rel)
{
    char rel[256];
    size_t n_inp, n_out;
    snprintf(rel, sizeof rel, "ref/tokenizer/ggml-vocab-%s.gguf.inp", name);
    char *inp = read_shared(rel, &n_inp);
    snprintf(rel, sizeof rel, "ref/tokenizer/ggml-vocab-%s.gguf.out", name);
    char *out = read_shared(rel, &n_out);
    tern_tokenizer *tok = load_tok(vocab_rel);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    int total = 0, enc_ok = 0, dec_ok = 0;
    int32_t *ids = NULL;
    size_t cap = 0;
    char *s = inp, *line = out;
    while (*s) {
        char *e = strstr(s, sep);
        ck_assert_msg(e != NULL, "%s: unterminated test string", name);
        char *eol = strchr(line, '\n');
        ck_assert_msg(eol != NULL, "%s: fewer expected lines than test strings", name);
        *eol = 0;
        total++;
        size_t n = encode(tok, s, (size_t)(e - s), 0, 0, &ids, &cap);
        int32_t want[4096];
        size_t nw = 0;
        for (char *q = line; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            ck_assert(nw < 4096);
            want[nw++] = (int32_t)v;
            q = end;
        }
        int ok = n == nw;
        for (size_t i = 0; ok && i < n; i++) ok = ids[i] == want[i];
        if (ok)
            enc_ok++;
        else
            printf("tokenizer: %s: '%.*s' encodes differently (%zu ids, want %zu)\n", name, (int)(e - s), s, n, nw);
        size_t dl;
        char *back = decode(tok, want, nw, &dl);
        if (dl == (size_t)(e - s) && memcmp(back, s, dl) == 0)
            dec_ok++;
        else
            printf("tokenizer: %s: '%.*s' decodes to '%s'\n", name, (int)(e - s), s, back);
        free(back);
        s = e + sizeof sep - 1;
        line = eol + 1;
    }
    printf("tokenizer: %-10s %2d/%d encode, %2d/%d decode (%s)\n", name, enc_ok, total, dec_ok, total, vocab_rel);
    ck_assert_int_gt(total, 0);
    ck_assert_int_eq(enc_ok, total);
    ck_assert_int_eq(dec_ok, total);
    free(ids);
    free(inp);
    free(out);
    tern_tokenizer_free(tok);
}

START_TEST(test_vectors_llama_bpe)
{
    TU_REQUIRE_SHARED();
    run_vectors("llama-bpe", "ref/models/tiny-bitnet-tq2_0.gguf");
}
END_TEST

START_TEST(test_vectors_gpt2)
{
    TU_REQUIRE_SHARED();
    run_vectors("gpt-2", "ref/tokenizer/ggml-vocab-gpt-2.gguf");
}
END_TEST

START_TEST(test_vectors_llama_spm)
{
    TU_REQUIRE_SHARED();
    run_vectors("llama-spm", "ref/tokenizer/ggml-vocab-llama-spm.gguf");
}
END_TEST

/* ---- just enough JSON for prompts.json and refs.json ---- */

/* Parses the JSON string starting at the quote at *p into a malloc'ed
 * buffer; advances *p past it. */
static char *json_string(const char **p, size_t *len)
{
    const char *s = *p;
    ck_assert(*s == '"');
    s++;
    char *out = malloc(strlen(s) + 1);
    size_t n = 0;
    ck_assert(out != NULL);
    while (*s && *s != '"') {
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        s++;
        char c = *s++;
        switch (c) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[]){s[0], s[1], s[2], s[3], 0}, NULL, 16);
            s += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && s[0] == '\\' && s[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[]){s[2], s[3], s[4], s[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                s += 6;
            }
            if (cp < 0x80) {
                out[n++] = (char)cp;
            } else if (cp < 0x800) {
                out[n++] = (char)(0xc0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xe0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            } else {
                out[n++] = (char)(0xf0 | (cp >> 18));
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[n++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: out[n++] = c; break; /* \" \\ \/ */
        }
    }
    ck_assert(*s == '"');
    *p = s + 1;
    out[n] = 0;
    *len = n;
    return out;
}

/* Moves *p to the value of the next "key": after it; NULL when absent. */
static const char *json_key(const char *p, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(p, pat);
    if (!k) return NULL;
    k += strlen(pat);
    while (*k == ' ' || *k == '\n') k++;
    return k;
}

/* README section 3: the ids llama.cpp and bitnet.cpp both produced for
 * prompts.json's p1..p3 with the Llama 3 vocabulary, add_special = true. */
START_TEST(test_prompts_llama_bpe)
{
    TU_REQUIRE_SHARED();
    static const int32_t want[3][13] = {
        {128000, 791, 6864, 315, 9822, 374, -1},
        {128000, 755, 923, 2948, 11, 293, 997, 262, 471, 264, 489, 293, -1},
        {128000, 6600, 2448, 24352, 11, 127365, 0, 28584, -1},
    };
    size_t n_json;
    char *json = read_shared("ref/prompts.json", &n_json);
    tern_tokenizer *tok = load_tok("ref/models/tiny-bitnet-tq2_0.gguf");
    int32_t *ids = NULL;
    size_t cap = 0;
    int pass = 0;
    for (int k = 0; k < 3; k++) {
        char key[8];
        snprintf(key, sizeof key, "p%d", k + 1);
        const char *v = json_key(json, key);
        ck_assert_msg(v != NULL, "prompts.json has no %s", key);
        size_t len;
        char *prompt = json_string(&v, &len);
        size_t n = encode(tok, prompt, len, 1, 0, &ids, &cap);
        size_t nw = 0;
        while (want[k][nw] >= 0) nw++;
        ck_assert_msg(n == nw, "%s: %zu ids, want %zu", key, n, nw);
        for (size_t i = 0; i < n; i++) ck_assert_msg(ids[i] == want[k][i], "%s: id %zu is %d, want %d", key, i, ids[i], want[k][i]);
        size_t dl;
        char *back = decode(tok, ids + 1, n - 1, &dl);
        ck_assert_msg(dl == len && memcmp(back, prompt, len) == 0, "%s decodes to '%s'", key, back);
        free(back);
        free(prompt);
        pass++;
    }
    printf("tokenizer: prompts.json p1..p3 (llama-bpe, add_special) %d/3\n", pass);
    free(ids);
    free(json);
    tern_tokenizer_free(tok);
}
END_TEST

/* refs.json: each model's prompts encode (with BOS) to the first
 * n_prompt_tokens of its .tokens.i32 file, and the generated tokens decode
 * to the recorded continuation. */
static void run_refs(const char *model)
{
    size_t n_json;
    char *json = read_shared("models/ref/refs.json", &n_json);
    char rel[256], key[64];
    snprintf(rel, sizeof rel, "models/%s.gguf", model);
    tern_tokenizer *tok = load_tok(rel);
    snprintf(key, sizeof key, "\"%s\": {", model);
    const char *p = strstr(strstr(json, "\"models\""), key);
    ck_assert_msg(p != NULL, "refs.json has no model %s", model);
    int32_t *ids = NULL;
    size_t cap = 0;
    int enc_ok = 0, dec_ok = 0, k;
    for (k = 0;; k++) {
        snprintf(rel, sizeof rel, "models/ref/%s.prompt%d.tokens.i32", model, k);
        char path[4096];
        tu_shared_path(path, sizeof path, rel);
        size_t nb;
        int32_t *ref = tu_read_file(path, &nb);
        if (!ref) break;
        p = json_key(p, "prompt");
        ck_assert(p != NULL);
        size_t len;
        char *prompt = json_string(&p, &len);
        p = json_key(p, "n_prompt_tokens");
        ck_assert(p != NULL);
        size_t n_prompt = (size_t)strtoul(p, NULL, 10);
        p = json_key(p, "continuation");
        ck_assert(p != NULL);
        size_t clen;
        char *cont = json_string(&p, &clen);

        size_t n = encode(tok, prompt, len, 1, 0, &ids, &cap);
        size_t n_ref = nb / sizeof(int32_t);
        int ok = n == n_prompt && n <= n_ref;
        for (size_t i = 0; ok && i < n; i++) ok = ids[i] == ref[i];
        enc_ok += ok;
        ck_assert_msg(ok, "%s prompt %d: '%s' does not encode to the reference's %zu prompt tokens", model, k,
                      prompt, n_prompt);
        size_t dl;
        char *back = decode(tok, ref + n_prompt, n_ref - n_prompt, &dl);
        ok = dl == clen && memcmp(back, cont, clen) == 0;
        dec_ok += ok;
        ck_assert_msg(ok, "%s prompt %d: generated tokens decode to '%s', want '%s'", model, k, back, cont);
        free(back);
        free(cont);
        free(prompt);
        free(ref);
    }
    printf("tokenizer: refs.json %-11s %d/%d prompts encode, %d/%d continuations decode\n", model, enc_ok, k,
           dec_ok, k);
    ck_assert_int_eq(k, 3);
    free(ids);
    free(json);
    tern_tokenizer_free(tok);
}

START_TEST(test_refs_tiny_bitnet)
{
    TU_REQUIRE_SHARED();
    run_refs("tiny-bitnet");
}
END_TEST

START_TEST(test_refs_tiny_llama)
{
    TU_REQUIRE_SHARED();
    run_refs("tiny-llama");
}
END_TEST

/* The validation stream (documents as BOS text EOS) decodes and, split at
 * the document markers, encodes back to the same ids: tokenizers gave
 * those ids, and llama.cpp agrees with it on this text (models/README). */
START_TEST(test_val_tokens_roundtrip)
{
    TU_REQUIRE_SHARED();
    size_t nb;
    char path[4096];
    tu_shared_path(path, sizeof path, "models/ref/val.tokens8192.i32");
    int32_t *val = tu_read_file(path, &nb);
    ck_assert(val != NULL);
    tern_tokenizer *tok = load_tok("models/tiny-bitnet.gguf");
    size_t n = nb / sizeof(int32_t), start = 0, docs = 0, ok = 0;
    int32_t *ids = NULL;
    size_t cap = 0;
    for (size_t i = 0; i <= n; i++) {
        int boundary = i == n || tern_tokenizer_token_type(tok, val[i]) == TERN_TOKEN_CONTROL;
        if (!boundary) continue;
        /* a document cut by the 8192-token window may end mid-merge: skip the last */
        if (i > start && i < n) {
            size_t dl;
            char *text = decode(tok, val + start, i - start, &dl);
            size_t m = encode(tok, text, dl, 0, 0, &ids, &cap);
            docs++;
            ok += m == i - start && memcmp(ids, val + start, m * sizeof *ids) == 0;
            free(text);
        }
        start = i + 1;
    }
    printf("tokenizer: val.tokens8192 %zu/%zu documents re-encode to the same ids\n", ok, docs);
    ck_assert_uint_gt(docs, 0);
    ck_assert_uint_eq(ok, docs);
    free(ids);
    free(val);
    tern_tokenizer_free(tok);
}
END_TEST

/* Edge cases as llama.cpp handles them, on the Llama 3 vocabulary. */
START_TEST(test_edges_llama_bpe)
{
    TU_REQUIRE_SHARED();
    tern_tokenizer *tok = load_tok("ref/models/tiny-bitnet-tq2_0.gguf");
    int32_t *ids = NULL, *ids2 = NULL;
    size_t cap = 0, cap2 = 0;
    ck_assert_int_eq(tern_tokenizer_bos(tok), 128000);
    ck_assert_int_eq(tern_tokenizer_eos(tok), 128001);
    ck_assert_int_eq(tern_tokenizer_eot(tok), 128009);
    ck_assert(tern_tokenizer_is_eog(tok, 128009) && tern_tokenizer_is_eog(tok, 128001));
    ck_assert(!tern_tokenizer_is_eog(tok, 128000));
    ck_assert_str_eq(tern_tokenizer_pre(tok), "llama-bpe");

    /* empty input: just BOS with add_special, nothing without */
    ck_assert_uint_eq(encode(tok, "", 0, 1, 0, &ids, &cap), 1);
    ck_assert_int_eq(ids[0], 128000);
    ck_assert_uint_eq(encode(tok, "", 0, 0, 0, &ids, &cap), 0);

    /* a lone invalid byte: llama.cpp reads it as U+FFFD */
    size_t n = encode(tok, "\xff", 1, 0, 0, &ids, &cap);
    size_t m = encode(tok, "\xef\xbf\xbd", 3, 0, 0, &ids2, &cap2);
    ck_assert_uint_gt(n, 0);
    ck_assert_uint_eq(n, m);
    ck_assert(memcmp(ids, ids2, n * sizeof *ids) == 0);

    /* control-token text: plain text without parse_special, the id with it */
    const char *bot = "<|begin_of_text|>Hi<|eot_id|>";
    n = encode(tok, bot, strlen(bot), 0, 0, &ids, &cap);
    ck_assert_uint_gt(n, 3);
    for (size_t i = 0; i < n; i++) ck_assert_int_lt(ids[i], 128000);
    size_t dl;
    char *back = decode(tok, ids, n, &dl);
    ck_assert_str_eq(back, bot);
    free(back);
    n = encode(tok, bot, strlen(bot), 0, 1, &ids, &cap);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 128000);
    ck_assert_int_eq(ids[1], 13347); /* "Hi" */
    ck_assert_int_eq(ids[2], 128009);
    n = encode(tok, bot, strlen(bot), 1, 1, &ids, &cap);
    ck_assert_uint_eq(n, 4); /* BOS added before the parsed one, as llama.cpp does */
    ck_assert_int_eq(ids[0], 128000);
    ck_assert_int_eq(ids[1], 128000);

    /* Llama 3's contractions ignore ASCII case, as llama.cpp matches them */
    n = encode(tok, "HE'S", 4, 0, 0, &ids, &cap);
    m = encode(tok, "HE", 2, 0, 0, &ids2, &cap2);
    ck_assert_uint_eq(n, m + 1);
    ck_assert(memcmp(ids, ids2, m * sizeof *ids) == 0);
    ck_assert_uint_eq(encode(tok, "'S", 2, 0, 0, &ids2, &cap2), 1);
    ck_assert_int_eq(ids[m], ids2[0]);

    /* a 1 MB line: no crash, reasonable time, lossless */
    size_t big = 1 << 20;
    char *line = malloc(big + 1);
    ck_assert(line != NULL);
    static const char words[] = "The quick brown fox, 1234567 jumps over the lazy dog! \xc3\xa9t\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c  ";
    for (size_t i = 0; i < big; i++) line[i] = words[i % (sizeof words - 1)];
    line[big] = 0;
    double t0 = tu_now_s();
    n = encode(tok, line, big, 0, 0, &ids, &cap);
    double dt = tu_now_s() - t0;
    back = decode(tok, ids, n, &dl);
    ck_assert(dl == big && memcmp(back, line, big) == 0);
    free(back);
    printf("tokenizer: 1 MB line -> %zu tokens in %.3f s\n", n, dt);
    /* one 1 MB word: a single pre-token through the merge heap */
    memset(line, 'a', big);
    t0 = tu_now_s();
    n = encode(tok, line, big, 0, 0, &ids, &cap);
    dt = tu_now_s() - t0;
    back = decode(tok, ids, n, &dl);
    ck_assert(dl == big && memcmp(back, line, big) == 0);
    free(back);
    printf("tokenizer: 1 MB word  -> %zu tokens in %.3f s\n", n, dt);
    /* 1 MB of invalid bytes */
    memset(line, 0xff, big);
    n = encode(tok, line, big, 0, 0, &ids, &cap);
    ck_assert_uint_gt(n, 0);
    free(line);
    free(ids);
    free(ids2);
    tern_tokenizer_free(tok);
}
END_TEST

/* The shared models' tokenizer: BOS/EOS and the control texts. */
START_TEST(test_edges_tiny)
{
    TU_REQUIRE_SHARED();
    tern_tokenizer *tok = load_tok("models/tiny-bitnet.gguf");
    int32_t *ids = NULL;
    size_t cap = 0;
    ck_assert_int_eq(tern_tokenizer_n_vocab(tok), 8192);
    ck_assert_int_eq(tern_tokenizer_bos(tok), 8190);
    ck_assert_int_eq(tern_tokenizer_eos(tok), 8191);
    ck_assert(tern_tokenizer_add_bos(tok) && !tern_tokenizer_add_eos(tok));
    ck_assert(tern_tokenizer_is_eog(tok, 8191));
    ck_assert_str_eq(tern_tokenizer_model(tok), "gpt2");
    ck_assert_str_eq(tern_tokenizer_pre(tok), "gpt-2");
    ck_assert_uint_eq(encode(tok, "", 0, 1, 0, &ids, &cap), 1);
    ck_assert_int_eq(ids[0], 8190);
    const char *s = "a<|end_of_text|>b";
    size_t n = encode(tok, s, strlen(s), 0, 1, &ids, &cap);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[1], 8191);
    n = encode(tok, s, strlen(s), 0, 0, &ids, &cap);
    ck_assert_uint_gt(n, 3);
    for (size_t i = 0; i < n; i++) ck_assert_int_lt(ids[i], 8190);
    char piece[32];
    ck_assert_int_eq(tern_token_to_piece(tok, 8191, piece, sizeof piece, 0), 0);
    ck_assert_int_eq(tern_token_to_piece(tok, 8191, piece, sizeof piece, 1), 15);
    free(ids);
    tern_tokenizer_free(tok);
}
END_TEST

/* A GGUF file without a tokenizer, or a broken one, is a clear error.
 * The files are built by hand: a header and a few string/array keys. */
typedef struct mini_gguf {
    uint8_t b[512];
    size_t n;
} mini_gguf;

static void mg_put(mini_gguf *m, const void *p, size_t k)
{
    ck_assert(m->n + k <= sizeof m->b);
    memcpy(m->b + m->n, p, k);
    m->n += k;
}

static void mg_u32(mini_gguf *m, uint32_t v) { mg_put(m, &v, 4); }
static void mg_u64(mini_gguf *m, uint64_t v) { mg_put(m, &v, 8); }

static void mg_str(mini_gguf *m, const char *s)
{
    mg_u64(m, strlen(s));
    mg_put(m, s, strlen(s));
}

static void mg_header(mini_gguf *m, uint64_t n_kv)
{
    m->n = 0;
    mg_put(m, "GGUF", 4);
    mg_u32(m, 3);
    mg_u64(m, 0);
    mg_u64(m, n_kv);
}

static tern_status tok_from_memory(const mini_gguf *m, tern_error *err)
{
    tern_gguf *g = NULL;
    tern_tokenizer *tok = (tern_tokenizer *)&tok; /* must come back NULL on failure */
    ck_assert_msg(tern_gguf_open_memory(m->b, m->n, "mini.gguf", &g, err) == TERN_OK, "%s", err->msg);
    tern_status st = tern_tokenizer_from_gguf(g, &tok, err);
    if (st) ck_assert_ptr_null(tok);
    tern_tokenizer_free(tok);
    tern_gguf_close(g);
    return st;
}

START_TEST(test_gguf_errors)
{
    mini_gguf m;
    tern_error err;
    mg_header(&m, 1);
    mg_str(&m, "general.architecture");
    mg_u32(&m, TERN_GGUF_STRING);
    mg_str(&m, "llama");
    ck_assert_int_eq(tok_from_memory(&m, &err), TERN_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "mini.gguf") && strstr(err.msg, "tokenizer.ggml.model is missing"), "%s",
                  err.msg);

    mg_header(&m, 2);
    mg_str(&m, "tokenizer.ggml.model");
    mg_u32(&m, TERN_GGUF_STRING);
    mg_str(&m, "gpt2");
    mg_str(&m, "tokenizer.ggml.tokens");
    mg_u32(&m, TERN_GGUF_ARRAY);
    mg_u32(&m, TERN_GGUF_U32);
    mg_u64(&m, 2);
    mg_u32(&m, 1);
    mg_u32(&m, 2);
    ck_assert_int_eq(tok_from_memory(&m, &err), TERN_EFORMAT);
    ck_assert_msg(strstr(err.msg, "tokenizer.ggml.tokens is an array of u32"), "%s", err.msg);

    /* strings, but a gpt2 vocabulary without merges */
    mg_header(&m, 2);
    mg_str(&m, "tokenizer.ggml.model");
    mg_u32(&m, TERN_GGUF_STRING);
    mg_str(&m, "gpt2");
    mg_str(&m, "tokenizer.ggml.tokens");
    mg_u32(&m, TERN_GGUF_ARRAY);
    mg_u32(&m, TERN_GGUF_STRING);
    mg_u64(&m, 2);
    mg_str(&m, "a");
    mg_str(&m, "b");
    ck_assert_int_eq(tok_from_memory(&m, &err), TERN_EFORMAT);
    ck_assert_msg(strstr(err.msg, "tokenizer.ggml.merges is missing"), "%s", err.msg);

    /* a working SentencePiece one: the defaults of model "llama" apply */
    mg_header(&m, 2);
    mg_str(&m, "tokenizer.ggml.model");
    mg_u32(&m, TERN_GGUF_STRING);
    mg_str(&m, "llama");
    mg_str(&m, "tokenizer.ggml.tokens");
    mg_u32(&m, TERN_GGUF_ARRAY);
    mg_u32(&m, TERN_GGUF_STRING);
    mg_u64(&m, 4);
    mg_str(&m, "<unk>");
    mg_str(&m, "<s>");
    mg_str(&m, "</s>");
    mg_str(&m, "\xe2\x96\x81hi");
    ck_assert_int_eq(tok_from_memory(&m, &err), TERN_OK);
}
END_TEST

TCase *tokenizer_shared_tcase(void);

TCase *tokenizer_shared_tcase(void)
{
    TCase *tc = tcase_create("shared");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_vectors_llama_bpe);
    tcase_add_test(tc, test_vectors_gpt2);
    tcase_add_test(tc, test_vectors_llama_spm);
    tcase_add_test(tc, test_prompts_llama_bpe);
    tcase_add_test(tc, test_refs_tiny_bitnet);
    tcase_add_test(tc, test_refs_tiny_llama);
    tcase_add_test(tc, test_val_tokens_roundtrip);
    tcase_add_test(tc, test_edges_llama_bpe);
    tcase_add_test(tc, test_edges_tiny);
    tcase_add_test(tc, test_gguf_errors);
    return tc;
}
