/* tern/tokenizer.h - text <-> token ids from a GGUF file's tokenizer.ggml.*
 * metadata: byte-level BPE ("gpt2": Llama 3, GPT-2 and the other
 * pre-tokenizers llama.cpp's test vectors cover) and SentencePiece BPE
 * ("llama"). Matches llama.cpp's llama_tokenize / llama_token_to_piece. */
#ifndef TERN_TOKENIZER_H
#define TERN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_tokenizer tern_tokenizer;

/* Token types as GGUF stores them (tokenizer.ggml.token_type). */
enum {
    TERN_TOKEN_UNDEFINED = 0,
    TERN_TOKEN_NORMAL = 1,
    TERN_TOKEN_UNKNOWN = 2,
    TERN_TOKEN_CONTROL = 3,
    TERN_TOKEN_USER_DEFINED = 4,
    TERN_TOKEN_UNUSED = 5,
    TERN_TOKEN_BYTE = 6
};

/* Builds a tokenizer from the file's metadata (copies what it needs; the
 * gguf handle may be closed afterwards). */
tern_status tern_tokenizer_from_gguf(const tern_gguf *g, tern_tokenizer **out, tern_error *err);

/* A vocabulary as plain arrays, the way GGUF's tokenizer.ggml.* keys hold
 * it: what tern_tokenizer_from_gguf reads, and what tests and converters
 * build by hand. Fields left as tern_tokenizer_vocab_init() sets them mean
 * "not given" and take llama.cpp's defaults for the model. */
typedef struct tern_tokenizer_vocab {
    const char *name;            /* used in messages (file path); may be NULL */
    const char *model;           /* "gpt2" (byte-level BPE) or "llama" (SentencePiece) */
    const char *pre;             /* pre-tokenizer ("llama-bpe", "gpt-2", ...); NULL: "default" */
    int64_t n_tokens;
    const char *const *tokens;   /* (n_tokens) token texts */
    const size_t *token_lens;    /* (n_tokens) byte lengths; NULL: NUL-terminated texts */
    const int32_t *token_types;  /* (n_tokens) TERN_TOKEN_*; NULL: all normal */
    const float *scores;         /* (n_tokens) SentencePiece scores; NULL: all 0 */
    int64_t n_merges;
    const char *const *merges;   /* (n_merges) "left right", rank = index */
    const size_t *merge_lens;    /* NULL: NUL-terminated */
    int64_t bos, eos, eot, eom, unk, pad; /* TERN_TOKEN_ID_UNSET when not given */
    int add_bos, add_eos, add_space_prefix; /* -1 when not given */
} tern_tokenizer_vocab;

#define TERN_TOKEN_ID_UNSET INT64_MIN

void tern_tokenizer_vocab_init(tern_tokenizer_vocab *v);
tern_status tern_tokenizer_from_vocab(const tern_tokenizer_vocab *v, tern_tokenizer **out,
                                      tern_error *err);
void tern_tokenizer_free(tern_tokenizer *tok); /* accepts NULL */

int32_t tern_tokenizer_n_vocab(const tern_tokenizer *tok);
int32_t tern_tokenizer_bos(const tern_tokenizer *tok); /* -1 when none */
int32_t tern_tokenizer_eos(const tern_tokenizer *tok);
int32_t tern_tokenizer_eot(const tern_tokenizer *tok);
int tern_tokenizer_add_bos(const tern_tokenizer *tok);
int tern_tokenizer_add_eos(const tern_tokenizer *tok);
/* End of generation: eos, eot, or another token llama.cpp treats as such. */
int tern_tokenizer_is_eog(const tern_tokenizer *tok, int32_t id);
int tern_tokenizer_token_type(const tern_tokenizer *tok, int32_t id);
/* Looks up the id of an exact token text; -1 when absent. */
int32_t tern_tokenizer_find(const tern_tokenizer *tok, const char *text, size_t len);
/* The stored text of a token (not decoded: byte-level or "\xe2\x96\x81" forms
 * as in the vocabulary); NULL for an unknown id. */
const char *tern_tokenizer_token_text(const tern_tokenizer *tok, int32_t id, size_t *len);
/* "gpt2"/"llama" and the pre-tokenizer name, for tern info. */
const char *tern_tokenizer_model(const tern_tokenizer *tok);
const char *tern_tokenizer_pre(const tern_tokenizer *tok);

/* Encodes len bytes of text. add_special: prepend BOS / append EOS as the
 * vocabulary's flags say; parse_special: recognise control/user-defined
 * token texts in the input (only when asked). *ids is realloc'ed as needed
 * (pass NULL and 0 the first time); *n receives the count. */
tern_status tern_tokenize(const tern_tokenizer *tok, const char *text, size_t len, int add_special,
                          int parse_special, int32_t **ids, size_t *cap, size_t *n,
                          tern_error *err);

/* The bytes of one token as text (byte-level decoding applied, SentencePiece
 * spaces restored). Control and unknown tokens give "" unless special is
 * set; unused ones always give "". Returns the piece length; writes at most
 * n bytes (no NUL; the first n when it does not fit); a return > n means the
 * buffer was too small. Unknown id: returns -1. */
int tern_token_to_piece(const tern_tokenizer *tok, int32_t id, char *buf, size_t n, int special);

/* Decodes a whole id list into buf (NUL-terminated, truncated to n-1):
 * the pieces back to back, and for SentencePiece the space tokenize put
 * before the first word removed from the first token (llama.cpp's
 * llama_detokenize with remove_special = false). Unlike llama.cpp, no
 * "clean up tokenization spaces" pass runs, so byte-level vocabularies
 * give back exactly the text that was encoded. Returns the full length. */
size_t tern_detokenize(const tern_tokenizer *tok, const int32_t *ids, size_t n_ids, char *buf,
                       size_t n, int special);

/* Streaming detokenizer for printing as tokens arrive: holds back an
 * incomplete UTF-8 sequence across token boundaries. */
typedef struct tern_detok_stream {
    char pending[8];
    size_t n_pending;
} tern_detok_stream;

/* Appends the piece of id (special = 0) to the stream and writes the
 * complete UTF-8 text available so far into out (at most n bytes; give it
 * room for the longest piece plus 8); returns bytes written. Invalid bytes
 * that cannot start or continue a sequence are passed through as-is.
 * Start a stream zeroed: tern_detok_stream s = {0}. */
size_t tern_detok_stream_push(const tern_tokenizer *tok, tern_detok_stream *s, int32_t id,
                              char *out, size_t n);
/* Flushes whatever is held back (at end of generation). */
size_t tern_detok_stream_flush(tern_detok_stream *s, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
