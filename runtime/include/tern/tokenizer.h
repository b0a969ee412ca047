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
 * spaces restored). Control tokens give "" unless special is set. Returns
 * the piece length; writes at most n bytes (no NUL); a return > n means the
 * buffer was too small. Unknown id: returns -1. */
int tern_token_to_piece(const tern_tokenizer *tok, int32_t id, char *buf, size_t n, int special);

/* Decodes a whole id list into buf (NUL-terminated, truncated to n-1).
 * Returns the full length. */
size_t tern_detokenize(const tern_tokenizer *tok, const int32_t *ids, size_t n_ids, char *buf,
                       size_t n, int special);

/* Streaming detokenizer for printing as tokens arrive: holds back an
 * incomplete UTF-8 sequence across token boundaries. */
typedef struct tern_detok_stream {
    char pending[8];
    size_t n_pending;
} tern_detok_stream;

/* Appends the piece of id to the stream and writes the complete UTF-8 text
 * available so far into out (at most n bytes); returns bytes written.
 * Invalid bytes that cannot start or continue a sequence are passed through
 * as-is. */
size_t tern_detok_stream_push(const tern_tokenizer *tok, tern_detok_stream *s, int32_t id,
                              char *out, size_t n);
/* Flushes whatever is held back (at end of generation). */
size_t tern_detok_stream_flush(tern_detok_stream *s, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
