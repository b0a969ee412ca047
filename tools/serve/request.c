/* request.c - a request body (JSON, parsed by jansson) to a serve_request:
 * every field OpenAI defines for the two endpoints that tern honours,
 * type- and range-checked, plus tern's top_k and min_p. Unknown fields are
 * ignored, as OpenAI-compatible servers do (clients send logprobs, user,
 * ...); n other than 1 is refused. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static int fail(char *msg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A refusal: 400 and a one-line message. Keys and jansson's error text
 * quote the client's bytes, which may hold newlines or other controls:
 * those become '?'. */
static int fail(char *msg, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
    for (char *c = msg; n && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return 400;
}

/* Nesting depth of v, counting no further than limit + 1 (jansson itself
 * accepts 2048 levels; the server promises 64). */
static int depth(json_t *v, int limit)
{
    if (limit < 0) return 1;
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            int e = depth(x, limit - 1);
            if (e > d) d = e;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int e = depth(x, limit - 1);
            if (e > d) d = e;
        }
        return d + 1;
    }
    return 0;
}

/* A number field in [lo, hi]; absent or null keeps *out. */
static int number(json_t *o, const char *key, double lo, double hi, double *out, char *msg, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return fail(msg, n, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return fail(msg, n, "'%s' is %g: it must be in [%g, %g]", key, d, lo, hi);
    *out = d;
    return 0;
}

static int integer(json_t *o, const char *key, long long lo, long long hi, long long *out, char *msg,
                   size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return fail(msg, n, "'%s' must be an integer", key);
    long long i = json_integer_value(v);
    if (i < lo || i > hi) return fail(msg, n, "'%s' is %lld: it must be in [%lld, %lld]", key, i, lo, hi);
    *out = i;
    return 0;
}

static char *dup_str(json_t *v)
{
    size_t len = json_string_length(v);
    char *s = malloc(len + 1);
    if (!s) return NULL;
    memcpy(s, json_string_value(v), len);
    s[len] = 0;
    if (strlen(s) != len) { /* an embedded NUL ("\u0000") would cut the text silently */
        free(s);
        return NULL;
    }
    return s;
}

/* content: a string, or an array of {"type": "text", "text": ...} parts. */
static int content_of(json_t *c, int i, char **out, char *msg, size_t n)
{
    if (json_is_string(c)) {
        if (!(*out = dup_str(c))) return fail(msg, n, "messages[%d].content holds a NUL character", i);
        return 0;
    }
    if (!json_is_array(c)) return fail(msg, n, "messages[%d].content must be a string or an array of text parts", i);
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(json_object_get(part, "type")) ||
            strcmp(json_string_value(json_object_get(part, "type")), "text") || !json_is_string(t))
            return fail(msg, n, "messages[%d].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts "
                        "are supported", i, k);
        total += json_string_length(t);
    }
    char *s = malloc(total + 1), *p = s;
    if (!s) return fail(msg, n, "out of memory");
    json_array_foreach(c, k, part) {
        json_t *t = json_object_get(part, "text");
        memcpy(p, json_string_value(t), json_string_length(t));
        p += json_string_length(t);
    }
    *p = 0;
    if (strlen(s) != total) {
        free(s);
        return fail(msg, n, "messages[%d].content holds a NUL character", i);
    }
    *out = s;
    return 0;
}

static int messages(json_t *o, serve_request *r, char *msg, size_t n)
{
    json_t *m = json_object_get(o, "messages");
    if (!json_is_array(m) || json_array_size(m) == 0)
        return fail(msg, n, "'messages' must be a non-empty array");
    if (json_array_size(m) > SERVE_MAX_MESSAGES)
        return fail(msg, n, "'messages' holds %zu messages: at most %d", json_array_size(m), SERVE_MAX_MESSAGES);
    r->messages = calloc(json_array_size(m), sizeof *r->messages);
    if (!r->messages) return fail(msg, n, "out of memory");
    size_t i;
    json_t *x;
    json_array_foreach(m, i, x) {
        json_t *role = json_object_get(x, "role"), *c = json_object_get(x, "content");
        if (!json_is_object(x) || !json_is_string(role))
            return fail(msg, n, "messages[%zu] must be an object with a string 'role'", i);
        if (!c || json_is_null(c)) return fail(msg, n, "messages[%zu] has no 'content'", i);
        r->n_messages = (int)i + 1;
        if (!(r->messages[i].role = dup_str(role))) return fail(msg, n, "messages[%zu].role holds a NUL", i);
        int st = content_of(c, (int)i, &r->messages[i].content, msg, n);
        if (st) return st;
    }
    return 0;
}

static int prompt(json_t *o, serve_request *r, char *msg, size_t n)
{
    json_t *p = json_object_get(o, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0); /* ["text"]: one prompt, as clients often send it */
    if (!json_is_string(p)) return fail(msg, n, "'prompt' must be a string (batches of prompts are not supported)");
    if (!(r->prompt = dup_str(p))) return fail(msg, n, "'prompt' holds a NUL character");
    return 0;
}

static int stops(json_t *o, serve_request *r, char *msg, size_t n)
{
    json_t *s = json_object_get(o, "stop");
    if (!s || json_is_null(s)) return 0;
    if (json_is_string(s)) {
        if (!json_string_length(s)) return 0;
        if (!(r->stop[0] = dup_str(s))) return fail(msg, n, "'stop' holds a NUL character");
        r->n_stop = 1;
        return 0;
    }
    if (!json_is_array(s) || json_array_size(s) > SERVE_MAX_STOP)
        return fail(msg, n, "'stop' must be a string or an array of at most %d strings", SERVE_MAX_STOP);
    size_t i;
    json_t *x;
    json_array_foreach(s, i, x) {
        if (!json_is_string(x)) return fail(msg, n, "stop[%zu] must be a string", i);
        if (!json_string_length(x)) continue;
        if (!(r->stop[r->n_stop] = dup_str(x))) return fail(msg, n, "stop[%zu] holds a NUL character", i);
        r->n_stop++;
    }
    return 0;
}

static int fields(json_t *o, serve_request *r, char *msg, size_t n)
{
    int st = r->kind == SERVE_CHAT ? messages(o, r, msg, n) : prompt(o, r, msg, n);
    if (st) return st;
    json_t *v = json_object_get(o, "model");
    if (v && !json_is_null(v) && !json_is_string(v)) return fail(msg, n, "'model' must be a string");
    v = json_object_get(o, "stream");
    if (v && !json_is_null(v) && !json_is_boolean(v)) return fail(msg, n, "'stream' must be true or false");
    r->stream = json_is_true(v);
    v = json_object_get(o, "ignore_eos");
    if (v && !json_is_null(v) && !json_is_boolean(v)) return fail(msg, n, "'ignore_eos' must be true or false");
    r->ignore_eos = json_is_true(v);
    v = json_object_get(o, "stream_options");
    if (v && !json_is_null(v)) {
        json_t *u = json_object_get(v, "include_usage");
        if (!json_is_object(v) || (u && !json_is_boolean(u)))
            return fail(msg, n, "'stream_options' must be an object with a boolean 'include_usage'");
        r->include_usage = json_is_true(u);
    }
    long long n_choices = 1, max = -1, top_k = r->top_k;
    if ((st = integer(o, "n", 1, 1, &n_choices, msg, n))) return fail(msg, n, "'n' must be 1: one choice per request");
    if ((st = integer(o, "max_tokens", 0, 1 << 24, &max, msg, n)) ||
        (st = integer(o, "max_completion_tokens", 0, 1 << 24, &max, msg, n)) ||
        (st = integer(o, "top_k", 0, 1 << 24, &top_k, msg, n)) ||
        (st = integer(o, "seed", -(1LL << 62), 1LL << 62, &r->seed, msg, n)) ||
        (st = number(o, "temperature", 0, 2, &r->temperature, msg, n)) ||
        (st = number(o, "top_p", 0, 1, &r->top_p, msg, n)) ||
        (st = number(o, "min_p", 0, 1, &r->min_p, msg, n)) ||
        (st = number(o, "presence_penalty", -2, 2, &r->presence_penalty, msg, n)) ||
        (st = number(o, "frequency_penalty", -2, 2, &r->frequency_penalty, msg, n)))
        return st;
    r->max_tokens = (int)max;
    r->top_k = (int)top_k;
    return stops(o, r, msg, n);
}

int serve_request_parse(const char *body, size_t len, serve_kind kind, serve_request *r, char *msg,
                        size_t msglen)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = 1.0; /* OpenAI's defaults */
    r->top_p = 1.0;
    r->min_p = 0.0;
    r->top_k = 0;
    r->seed = -1;
    if (len > SERVE_MAX_BODY) {
        fail(msg, msglen, "request body over %u bytes", SERVE_MAX_BODY);
        return 413;
    }
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) return fail(msg, msglen, "malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
    int st = 0;
    if (!json_is_object(o)) st = fail(msg, msglen, "the request body must be a JSON object");
    else if (depth(o, SERVE_MAX_DEPTH) > SERVE_MAX_DEPTH)
        st = fail(msg, msglen, "JSON nested deeper than %d levels", SERVE_MAX_DEPTH);
    else st = fields(o, r, msg, msglen);
    json_decref(o);
    if (st) serve_request_free(r);
    return st;
}

void serve_request_free(serve_request *r)
{
    free(r->prompt);
    for (int i = 0; i < r->n_messages; i++) {
        free(r->messages[i].role);
        free(r->messages[i].content);
    }
    free(r->messages);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}
