/* test_tokenizer.c - the tokenizer on small hand-made vocabularies: byte-level
 * BPE merges (including merge-only texts), SentencePiece scores and byte
 * fallback, special-token partition, decoding, streaming, errors. The
 * shared llama.cpp vectors are in test_tokenizer_shared.c. */
#include <stdint.h>
#include <stdlib.h>

#include "common/testutil.h"
#include "tern/tokenizer.h"

/* ---- a toy byte-level BPE vocabulary: id b = GPT-2 character of byte b ---- */

static int gpt2_printable(int b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

static void gpt2_char(int b, char *out)
{
    unsigned cp = (unsigned)b;
    if (!gpt2_printable(b)) {
        cp = 256;
        for (int c = 0; c < b; c++) cp += !gpt2_printable(c);
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

enum { B_HE = 256, B_LL, B_HELL, B_HELLO, B_GW, B_OR, B_GWOR, B_LD, B_GWORLD, B_END, B_TAG, B_XYZ, B_N };

static char bpe_texts[256][4];
static const char *bpe_tokens[B_N];
static int32_t bpe_types[B_N];
static const char *const bpe_merges[] = {
    "h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "\xc4\xa0w or", "l d", "\xc4\xa0wor ld",
    "x y",  /* "xy" is no token: only a step towards "xyz" */
    "xy z",
};

static tern_tokenizer *make_bpe(const char *pre)
{
    for (int b = 0; b < 256; b++) {
        gpt2_char(b, bpe_texts[b]);
        bpe_tokens[b] = bpe_texts[b];
        bpe_types[b] = TERN_TOKEN_NORMAL;
    }
    const char *extra[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "or", "\xc4\xa0wor", "ld",
                           "\xc4\xa0world", "<|end|>", "<tag>", "xyz"};
    for (int i = B_HE; i < B_N; i++) {
        bpe_tokens[i] = extra[i - B_HE];
        bpe_types[i] = TERN_TOKEN_NORMAL;
    }
    bpe_types[B_END] = TERN_TOKEN_CONTROL;
    bpe_types[B_TAG] = TERN_TOKEN_USER_DEFINED;
    tern_tokenizer_vocab v;
    tern_tokenizer_vocab_init(&v);
    v.name = "toy-bpe";
    v.model = "gpt2";
    v.pre = pre;
    v.n_tokens = B_N;
    v.tokens = bpe_tokens;
    v.token_types = bpe_types;
    v.n_merges = sizeof bpe_merges / sizeof bpe_merges[0];
    v.merges = bpe_merges;
    v.bos = B_END;
    v.eos = B_END;
    tern_tokenizer *tok = NULL;
    tern_error err;
    tern_status st = tern_tokenizer_from_vocab(&v, &tok, &err);
    ck_assert_msg(st == TERN_OK, "%s", err.msg);
    return tok;
}

/* Tokenizes text and compares with the expected ids (terminated by -1). */
static void expect_ids(const tern_tokenizer *tok, const char *text, size_t len, int add_special,
                       int parse_special, const int32_t *want)
{
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    tern_error err;
    tern_status st = tern_tokenize(tok, text, len, add_special, parse_special, &ids, &cap, &n, &err);
    ck_assert_msg(st == TERN_OK, "%s", err.msg);
    size_t nw = 0;
    while (want[nw] >= 0) nw++;
    char got[512] = "";
    for (size_t i = 0; i < n && strlen(got) < 480; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids[i]);
    ck_assert_msg(n == nw, "'%.*s': %zu ids (%s), want %zu", (int)len, text, n, got, nw);
    for (size_t i = 0; i < n; i++) ck_assert_msg(ids[i] == want[i], "'%.*s': id %zu is %d, want %d (%s)",
                                                 (int)len, text, i, ids[i], want[i], got);
    free(ids);
}

#define EXPECT(tok, text, add, parse, ...)                                            \
    do {                                                                               \
        const int32_t want_[] = {__VA_ARGS__, -1};                                     \
        expect_ids(tok, text, strlen(text), add, parse, want_);                        \
    } while (0)

START_TEST(test_bpe_merges)
{
    tern_tokenizer *tok = make_bpe("gpt-2");
    EXPECT(tok, "hello world", 0, 0, B_HELLO, B_GWORLD);
    EXPECT(tok, "hello", 1, 0, B_HELLO); /* add_bos is off for gpt-2 */
    EXPECT(tok, "hell", 0, 0, B_HELL);
    EXPECT(tok, "lol", 0, 0, 'l', 'o', 'l');
    EXPECT(tok, "xyz", 0, 0, B_XYZ);   /* through the merge-only text "xy" */
    EXPECT(tok, "xy", 0, 0, 'x', 'y'); /* a merge-only symbol is spelled out */
    EXPECT(tok, " ", 0, 0, ' ');
    EXPECT(tok, "a  b", 0, 0, 'a', ' ', ' ', 'b'); /* "\s+(?!\S)" leaves one space for " b" */
    EXPECT(tok, "it's", 0, 0, 'i', 't', '\'', 's');
    /* GPT-2 splits "'s" off, so no merge can cross it: ids are bytes here */
    ck_assert_int_eq(tern_tokenizer_n_vocab(tok), B_N);
    ck_assert_int_eq(tern_tokenizer_find(tok, "hello", 5), B_HELLO);
    ck_assert_int_eq(tern_tokenizer_find(tok, "xy", 2), -1); /* merge-only texts are no tokens */
    ck_assert_str_eq(tern_tokenizer_model(tok), "gpt2");
    ck_assert_str_eq(tern_tokenizer_pre(tok), "gpt-2");
    tern_tokenizer_free(tok);
}
END_TEST

/* llama.cpp turns each byte that cannot start a UTF-8 sequence into U+FFFD
 * before splitting, so a lone 0xff encodes as the bytes of U+FFFD. */
START_TEST(test_bpe_invalid_utf8)
{
    tern_tokenizer *tok = make_bpe("gpt-2");
    EXPECT(tok, "\xff", 0, 0, 0xef, 0xbf, 0xbd);
    EXPECT(tok, "a\xc3", 0, 0, 'a', 0xef, 0xbf, 0xbd); /* truncated sequence */
    EXPECT(tok, "\xc3\xa9", 0, 0, 0xc3, 0xa9);         /* valid: the two bytes */
    EXPECT(tok, "\xc0\x80", 0, 0, 0);                  /* overlong NUL comes out as NUL */
    tern_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bpe_special_partition)
{
    tern_tokenizer *tok = make_bpe("gpt-2");
    /* control text is plain text unless parse_special */
    EXPECT(tok, "hello<|end|>world", 0, 0, B_HELLO, '<', '|', 'e', 'n', 'd', '|', '>', 'w', B_OR, B_LD);
    EXPECT(tok, "hello<|end|>world", 0, 1, B_HELLO, B_END, 'w', B_OR, B_LD);
    EXPECT(tok, "<|end|><|end|>", 0, 1, B_END, B_END);
    /* user-defined tokens always split, as in llama.cpp */
    EXPECT(tok, "a<tag>b", 0, 0, 'a', B_TAG, 'b');
    EXPECT(tok, "<tag>", 0, 1, B_TAG);
    ck_assert_int_eq(tern_tokenizer_token_type(tok, B_END), TERN_TOKEN_CONTROL);
    ck_assert_int_eq(tern_tokenizer_token_type(tok, B_TAG), TERN_TOKEN_USER_DEFINED);
    ck_assert(tern_tokenizer_is_eog(tok, B_END));
    ck_assert(!tern_tokenizer_is_eog(tok, B_HELLO));
    tern_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bpe_decode)
{
    tern_tokenizer *tok = make_bpe("gpt-2");
    char buf[64];
    int n = tern_token_to_piece(tok, B_GWORLD, buf, sizeof buf, 0);
    ck_assert_int_eq(n, 6);
    ck_assert(memcmp(buf, " world", 6) == 0);
    ck_assert_int_eq(tern_token_to_piece(tok, B_END, buf, sizeof buf, 0), 0);
    ck_assert_int_eq(tern_token_to_piece(tok, B_END, buf, sizeof buf, 1), 7);
    ck_assert_int_eq(tern_token_to_piece(tok, B_TAG, buf, sizeof buf, 0), 5); /* user-defined shows */
    ck_assert_int_eq(tern_token_to_piece(tok, 0x0a, buf, sizeof buf, 0), 1);
    ck_assert_int_eq(buf[0], '\n');
    ck_assert_int_eq(tern_token_to_piece(tok, B_GWORLD, buf, 3, 0), 6); /* too small: says so */
    ck_assert_int_eq(tern_token_to_piece(tok, B_N, buf, sizeof buf, 0), -1);
    ck_assert_int_eq(tern_token_to_piece(tok, -1, buf, sizeof buf, 0), -1);

    const int32_t ids[] = {B_END, B_HELLO, B_GWORLD, 0xc3, 0xa9};
    ck_assert_uint_eq(tern_detokenize(tok, ids, 5, buf, sizeof buf, 0), 13);
    ck_assert_str_eq(buf, "hello world\xc3\xa9");
    ck_assert_uint_eq(tern_detokenize(tok, ids, 5, buf, sizeof buf, 1), 20);
    ck_assert_str_eq(buf, "<|end|>hello world\xc3\xa9");
    ck_assert_uint_eq(tern_detokenize(tok, ids, 5, buf, 4, 0), 13); /* truncated, NUL-terminated */
    ck_assert_str_eq(buf, "hel");
    tern_tokenizer_free(tok);
}
END_TEST

/* The stream holds back an incomplete UTF-8 sequence until it completes. */
START_TEST(test_detok_stream)
{
    tern_tokenizer *tok = make_bpe("gpt-2");
    tern_detok_stream s = {0};
    char out[64];
    /* U+1F642 = f0 9f 99 82, one byte per token */
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, B_HELLO, out, sizeof out), 5);
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, 0xf0, out, sizeof out), 0);
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, 0x9f, out, sizeof out), 0);
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, 0x99, out, sizeof out), 0);
    size_t n = tern_detok_stream_push(tok, &s, 0x82, out, sizeof out);
    ck_assert_uint_eq(n, 4);
    ck_assert(memcmp(out, "\xf0\x9f\x99\x82", 4) == 0);
    /* an invalid continuation releases the held bytes as they are */
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, 0xc3, out, sizeof out), 0);
    n = tern_detok_stream_push(tok, &s, 'a', out, sizeof out);
    ck_assert_uint_eq(n, 2);
    ck_assert(memcmp(out, "\xc3" "a", 2) == 0);
    /* control tokens print nothing; flush empties the stream */
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, 0xe2, out, sizeof out), 0);
    ck_assert_uint_eq(tern_detok_stream_push(tok, &s, B_END, out, sizeof out), 0);
    ck_assert_uint_eq(tern_detok_stream_flush(&s, out, sizeof out), 1);
    ck_assert_int_eq((unsigned char)out[0], 0xe2);
    ck_assert_uint_eq(tern_detok_stream_flush(&s, out, sizeof out), 0);
    tern_tokenizer_free(tok);
}
END_TEST

/* ---- a toy SentencePiece vocabulary ---- */

static tern_tokenizer *make_spm(int add_space_prefix)
{
    static char bytes[256][8];
    static const char *tokens[300];
    static int32_t types[300];
    static float scores[300];
    int n = 0;
    tokens[n] = "<unk>", types[n++] = TERN_TOKEN_UNKNOWN;
    tokens[n] = "<s>", types[n++] = TERN_TOKEN_CONTROL;
    tokens[n] = "</s>", types[n++] = TERN_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[n] = bytes[b], types[n++] = TERN_TOKEN_BYTE;
    }
    static const struct { const char *t; float s; } normal[] = {
        {"\xe2\x96\x81", -10}, {"h", -11}, {"e", -11}, {"l", -11}, {"o", -11}, {"w", -11},
        {"r", -11}, {"d", -11}, {"he", -4}, {"ll", -5}, {"hell", -3}, {"hello", -2},
        {"\xe2\x96\x81hello", -1}, {"\xe2\x96\x81w", -9}, {"or", -7}, {"\xe2\x96\x81wor", -6},
        {"ld", -8}, {"\xe2\x96\x81world", -1.5f}};
    for (size_t i = 0; i < sizeof normal / sizeof normal[0]; i++) {
        tokens[n] = normal[i].t;
        scores[n] = normal[i].s;
        types[n++] = TERN_TOKEN_NORMAL;
    }
    tern_tokenizer_vocab v;
    tern_tokenizer_vocab_init(&v);
    v.model = "llama";
    v.n_tokens = n;
    v.tokens = tokens;
    v.token_types = types;
    v.scores = scores;
    v.add_space_prefix = add_space_prefix;
    tern_tokenizer *tok = NULL;
    tern_error err;
    ck_assert_msg(tern_tokenizer_from_vocab(&v, &tok, &err) == TERN_OK, "%s", err.msg);
    return tok;
}

enum { S_SPACE = 259, S_H, S_E, S_L, S_O, S_W, S_R, S_D, S_HE, S_LL, S_HELL, S_HELLO, S_SHELLO, S_SW,
       S_OR, S_SWOR, S_LD, S_SWORLD };

START_TEST(test_spm)
{
    tern_tokenizer *tok = make_spm(-1);
    /* llama defaults: BOS 1, EOS 2, add_bos, a space before the text */
    ck_assert_int_eq(tern_tokenizer_bos(tok), 1);
    ck_assert_int_eq(tern_tokenizer_eos(tok), 2);
    ck_assert(tern_tokenizer_add_bos(tok));
    EXPECT(tok, "hello world", 1, 0, 1, S_SHELLO, S_SWORLD);
    EXPECT(tok, "hello", 0, 0, S_SHELLO);
    EXPECT(tok, "", 1, 0, 1);
    /* byte fallback: 'i' has no token */
    EXPECT(tok, "hi", 0, 0, S_SPACE, S_H, 3 + 'i');
    /* after a special token the space prefix comes again */
    EXPECT(tok, "hello</s>hello", 0, 1, S_SHELLO, 2, S_SHELLO);
    EXPECT(tok, "\xc3\xa9", 0, 0, S_SPACE, 3 + 0xc3, 3 + 0xa9);

    char buf[64];
    const int32_t ids[] = {S_SHELLO, S_SWORLD};
    ck_assert_uint_eq(tern_detokenize(tok, ids, 2, buf, sizeof buf, 0), 11);
    ck_assert_str_eq(buf, "hello world");
    const int32_t ids2[] = {1, S_SHELLO};
    tern_detokenize(tok, ids2, 2, buf, sizeof buf, 0);
    ck_assert_str_eq(buf, " hello"); /* llama.cpp strips only from the first token */
    ck_assert_int_eq(tern_token_to_piece(tok, 3 + 'A', buf, sizeof buf, 0), 1);
    ck_assert_int_eq(buf[0], 'A');
    ck_assert_int_eq(tern_token_to_piece(tok, 0, buf, sizeof buf, 0), 0); /* <unk> is special */
    tern_tokenizer_free(tok);

    tok = make_spm(0);
    EXPECT(tok, "hello world", 0, 0, S_HELLO, S_SWORLD);
    tern_tokenizer_free(tok);
}
END_TEST

/* A token spanning a word start ("a\xe2\x96\x81b") turns off the per-word
 * merging shortcut: the merge must still happen. */
START_TEST(test_spm_cross_word)
{
    static const char *tokens[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b",
                                   "a\xe2\x96\x81", "a\xe2\x96\x81" "b", "\xe2\x96\x81" "b"};
    static const float scores[] = {0, 0, 0, -9, -9, -9, -1, -0.5f, -2};
    tern_tokenizer_vocab v;
    tern_tokenizer_vocab_init(&v);
    v.model = "llama";
    v.n_tokens = 9;
    v.tokens = tokens;
    v.scores = scores;
    v.add_space_prefix = 0;
    tern_tokenizer *tok = NULL;
    tern_error err;
    ck_assert_msg(tern_tokenizer_from_vocab(&v, &tok, &err) == TERN_OK, "%s", err.msg);
    EXPECT(tok, "a b", 0, 0, 7);
    EXPECT(tok, "b a b", 0, 0, 5, 3, 7);
    tern_tokenizer_free(tok);
}
END_TEST

static tern_status try_vocab(tern_tokenizer_vocab *v, tern_error *err)
{
    tern_tokenizer *tok = NULL;
    tern_status st = tern_tokenizer_from_vocab(v, &tok, err);
    ck_assert(st == TERN_OK ? tok != NULL : tok == NULL);
    tern_tokenizer_free(tok);
    return st;
}

START_TEST(test_errors)
{
    static const char *toks[] = {"a", "b", "a"};
    static const char *merges[] = {"a b"};
    tern_tokenizer_vocab v;
    tern_error err;
    tern_tokenizer_vocab_init(&v);
    v.name = "x.gguf";
    v.model = "gpt2";
    v.pre = "gpt-2";
    v.tokens = toks;
    v.n_tokens = 3;
    v.merges = merges;
    v.n_merges = 1;
    ck_assert_int_eq(try_vocab(&v, &err), TERN_EFORMAT);
    ck_assert_msg(strstr(err.msg, "duplicate token 'a' at ids 0 and 2"), "%s", err.msg);
    v.n_tokens = 2;
    ck_assert_int_eq(try_vocab(&v, &err), TERN_OK);
    v.pre = "no-such-pre";
    ck_assert_int_eq(try_vocab(&v, &err), TERN_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "unknown pre-tokenizer type 'no-such-pre'"), "%s", err.msg);
    v.pre = "gpt-2";
    v.model = "t5";
    ck_assert_int_eq(try_vocab(&v, &err), TERN_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "x.gguf") && strstr(err.msg, "'t5'"), "%s", err.msg);
    v.model = "gpt2";
    v.add_bos = 1; /* the gpt2 default BOS (11) is out of range here */
    ck_assert_int_eq(try_vocab(&v, &err), TERN_EFORMAT);
    ck_assert_msg(strstr(err.msg, "bos_token_id is not set"), "%s", err.msg);
    v.add_bos = -1;
    v.n_merges = 0; /* an empty merges list is a bytes-only vocabulary */
    ck_assert_int_eq(try_vocab(&v, &err), TERN_OK);
    v.merges = NULL; /* no merges key at all is an error, as in llama.cpp */
    ck_assert_int_eq(try_vocab(&v, &err), TERN_EFORMAT);
    ck_assert_msg(strstr(err.msg, "merges is missing"), "%s", err.msg);
    v.merges = merges;
    v.n_merges = 1;
    v.n_tokens = 0;
    ck_assert_int_eq(try_vocab(&v, &err), TERN_EFORMAT);
    tern_tokenizer_free(NULL);
}
END_TEST

/* Every pre-tokenizer's regexes compile. */
START_TEST(test_all_pre_tokenizers)
{
    static const char *pres[] = {"default", "llama-bpe", "llama3", "dbrx", "glm4", "deepseek-llm",
                                 "deepseek-coder", "deepseek-v3", "falcon", "starcoder", "refact",
                                 "command-r", "gpt-2", "mpt", "olmo", "qwen2", "qwen35", "poro-chat",
                                 "viking", "tekken", "gpt-4o", "seed-coder", NULL};
    for (int i = 0; pres[i]; i++) {
        tern_tokenizer *tok = make_bpe(pres[i]);
        EXPECT(tok, "hello", 0, 0, B_HELLO);
        tern_tokenizer_free(tok);
    }
}
END_TEST

Suite *tokenizer_suite(void);
TCase *tokenizer_shared_tcase(void);

Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("toy");
    tcase_add_test(tc, test_bpe_merges);
    tcase_add_test(tc, test_bpe_invalid_utf8);
    tcase_add_test(tc, test_bpe_special_partition);
    tcase_add_test(tc, test_bpe_decode);
    tcase_add_test(tc, test_detok_stream);
    tcase_add_test(tc, test_spm);
    tcase_add_test(tc, test_spm_cross_word);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_all_pre_tokenizers);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, tokenizer_shared_tcase());
    return s;
}
