/* fuzz_request.c - libFuzzer target for the server's request parser
 * (tools/serve/request.c): any bytes as the body of /v1/completions (first
 * byte even) or /v1/chat/completions (odd). Checks that a refusal is 400
 * or 413 with a one-line message, and that an accepted request holds what
 * the server relies on: a prompt or at least one message with role and
 * content, numbers in their documented ranges, at most four non-empty stop
 * strings; then frees it (ASan sees leaks and double frees). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

static void check_ok(const serve_request *r)
{
    if (r->kind == SERVE_COMPLETION ? !r->prompt : (r->n_messages < 1 || !r->messages)) abort();
    for (int i = 0; i < r->n_messages; i++)
        if (!r->messages[i].role || !r->messages[i].content) abort();
    if (r->temperature < 0 || r->temperature > 2 || r->top_p < 0 || r->top_p > 1 || r->min_p < 0 ||
        r->min_p > 1 || r->top_k < 0 || r->max_tokens < -1 || r->presence_penalty < -2 ||
        r->presence_penalty > 2 || r->frequency_penalty < -2 || r->frequency_penalty > 2)
        abort();
    if (r->n_stop < 0 || r->n_stop > SERVE_MAX_STOP) abort();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !*r->stop[i]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    serve_kind kind = data[0] & 1 ? SERVE_CHAT : SERVE_COMPLETION;
    serve_request r;
    char msg[512];
    int st = serve_request_parse((const char *)data + 1, size - 1, kind, &r, msg, sizeof msg);
    if (st) {
        if ((st != 400 && st != 413) || !msg[0] || strchr(msg, '\n')) abort();
        return 0;
    }
    check_ok(&r);
    serve_request_free(&r);
    return 0;
}
