/* generate.c - the smallest program on libtern's public API: load a model,
 * tokenize a prompt, evaluate it, then feed back the most likely next token
 * (greedy sampling) until N tokens or the end of text.
 *
 *   cc generate.c $(pkg-config --cflags --libs tern) -o generate
 *   ./generate ["PROMPT" [N [MODEL.gguf]]]
 *
 * Without a model it uses the one installed with tern. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tern/tern.h>

static int fail(const char *what, const tern_error *err)
{
    fprintf(stderr, "generate: %s: %s\n", what, err->msg);
    return 1;
}

/* The id with the highest logit (the first one on ties). */
static int32_t argmax(const float *logits, int64_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* Evaluates the prompt, then one token at a time; prints as it goes. */
static tern_status generate(tern_session *s, const tern_tokenizer *tok, int32_t *ids, size_t n,
                            int n_predict, tern_error *err)
{
    tern_detok_stream stream = {0};
    char piece[512];
    for (int i = 0; i < n_predict; i++) {
        tern_status st = tern_session_eval(s, ids, n, 0, err);
        if (st) return st;
        int64_t rows, n_vocab = tern_session_n_vocab(s);
        const float *logits = tern_session_logits(s, &rows);
        int32_t next = argmax(logits + (rows - 1) * n_vocab, n_vocab);
        if (tern_tokenizer_is_eog(tok, next)) break;
        fwrite(piece, 1, tern_detok_stream_push(tok, &stream, next, piece, sizeof piece), stdout);
        fflush(stdout);
        ids[0] = next;
        n = 1;
    }
    fwrite(piece, 1, tern_detok_stream_flush(&stream, piece, sizeof piece), stdout);
    printf("\n");
    return TERN_OK;
}

int main(int argc, char **argv)
{
    const char *prompt = argc > 1 ? argv[1] : "Once upon a time";
    int n_predict = argc > 2 ? atoi(argv[2]) : 32;
    const char *path = argc > 3 ? argv[3] : tern_install_default_model();
    if (!path) {
        fprintf(stderr, "generate: no model given and tern's default model is not installed\n");
        return 1;
    }
    tern_error err;
    tern_model *model = NULL;
    tern_session *session = NULL;
    tern_model_options mo = tern_model_default_options();
    if (tern_model_load(path, &mo, &model, &err)) return fail(path, &err);
    tern_session_options so = tern_session_default_options();
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    const tern_tokenizer *tok = tern_model_tokenizer(model);
    tern_status st = tern_session_create(model, &so, &session, &err);
    if (!st) st = tern_tokenize(tok, prompt, strlen(prompt), 1, 0, &ids, &cap, &n, &err);
    if (!st && n == 0) st = tern_error_set(&err, TERN_EINVAL, "the prompt gives no tokens");
    if (!st) {
        printf("%s", prompt);
        st = generate(session, tok, ids, n, n_predict, &err);
    }
    free(ids);
    tern_session_free(session);
    tern_model_free(model);
    return st ? fail(path, &err) : 0;
}
