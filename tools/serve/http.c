/* http.c - the HTTP side of `tern serve` on libmicrohttpd (one thread per
 * connection, so a handler may block on its job): the route table, limits
 * (headers, body, API key), OpenAI-shaped responses and errors, Server-Sent
 * Events, /metrics, the chat page, and serve_run's start, signal wait and
 * drain. */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve_impl.h"

extern const char serve_page_html[]; /* page.html, embedded by SConstruct */

typedef struct server {
    serve_options opt;
    _Atomic(serve_engine *) engine; /* NULL while the model loads: /health answers 503 */
    atomic_int draining;            /* after SIGTERM: /health answers 503 so balancers move on */
    atomic_llong next_id;
    char model_id[256];
    time_t created;
} server;

/* Per connection: the body as it arrives. */
typedef struct conn_state {
    char *body;
    size_t len, cap;
    int too_big, headers_too_big;
} conn_state;

typedef enum MHD_Result mhd_result;
typedef mhd_result (*route_fn)(server *sv, struct MHD_Connection *c, conn_state *cs);

/* ---- responses ---- */

static mhd_result send_text(struct MHD_Connection *c, unsigned status, const char *type, const char *text,
                            size_t len, const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    mhd_result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static mhd_result send_json(struct MHD_Connection *c, unsigned status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return send_text(c, 500, "text/plain", "out of memory\n", 14, NULL);
    mhd_result ret = send_text(c, status, "application/json", s, strlen(s), NULL);
    free(s);
    return ret;
}

/* The error type OpenAI's clients expect for each status. */
static const struct { unsigned status; const char *type, *code; } error_kinds[] = {
    {400, "invalid_request_error", "invalid_request"},   {401, "authentication_error", "invalid_api_key"},
    {404, "invalid_request_error", "not_found"},          {405, "invalid_request_error", "method_not_allowed"},
    {413, "invalid_request_error", "request_too_large"}, {431, "invalid_request_error", "headers_too_large"},
    {500, "server_error", "internal_error"},              {503, "server_error", "unavailable"},
};

static json_t *error_json(unsigned status, const char *message)
{
    const char *type = "server_error", *code = "error";
    for (size_t i = 0; i < sizeof error_kinds / sizeof error_kinds[0]; i++)
        if (error_kinds[i].status == status) type = error_kinds[i].type, code = error_kinds[i].code;
    return json_pack("{s:{s:s,s:s,s:s}}", "error", "message", message, "type", type, "code", code);
}

static mhd_result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static mhd_result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = error_json(status, msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    mhd_result ret = send_text(c, status, "application/json", s ? s : "{}", s ? strlen(s) : 2,
                               status == 503 ? "1" : NULL);
    free(s);
    return ret;
}

/* Generated text as a JSON string: bytes that are not UTF-8 (a model can
 * produce them) become U+FFFD, which jansson requires. */
static json_t *text_json(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    if (v) return v;
    char *out = malloc(n * 3 + 1);
    size_t o = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)s[i];
        size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        int ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        json_t *probe = ok ? json_stringn(s + i, len) : NULL; /* jansson's check: overlongs, surrogates */
        ok = probe != NULL;
        json_decref(probe);
        if (ok) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    v = json_stringn(out, o);
    free(out);
    return v;
}

/* ---- the client: still there? ---- */

static int client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return 1;
    char b;
    return (p.revents & POLLIN) && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Waits on the job until it has text past `sent` or ends, or 200 ms pass
 * (job lock held). */
static void wait_job(serve_job *j, size_t sent)
{
    if (j->safe > sent || j->finish) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

/* ---- completions ---- */

static const char *finish_name(finish_reason f) { return f == FINISH_LENGTH ? "length" : "stop"; }

static json_t *usage_json(const serve_job *j)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", j->n_prompt, "completion_tokens", j->n_gen,
                     "total_tokens", j->n_prompt + j->n_gen);
}

/* llama-server's "timings" (the chat page shows tokens/s from them). */
static json_t *timings_json(const serve_job *j)
{
    double gen = j->t_done - j->t_first;
    return json_pack("{s:i,s:i,s:f,s:f}", "prompt_n", j->n_prompt, "predicted_n", j->n_gen,
                     "ttft_ms", (j->t_first > 0 ? j->t_first - j->t_submit : 0) * 1000,
                     "predicted_per_second", gen > 0 && j->n_gen > 1 ? (j->n_gen - 1) / gen : 0.0);
}

static json_t *envelope(server *sv, const serve_job *j, long long id, int chunk)
{
    int chat = j->req.kind == SERVE_CHAT;
    char sid[64];
    snprintf(sid, sizeof sid, "%s-%lld", chat ? "chatcmpl" : "cmpl", id);
    return json_pack("{s:s,s:s,s:I,s:s}", "id", sid, "object",
                     chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion",
                     "created", (json_int_t)time(NULL), "model", sv->model_id);
}

/* choice for a chunk (delta, finish) or for the whole answer. */
static json_t *choice(const serve_job *j, const char *text, size_t n, int chunk, const char *finish,
                      int role)
{
    json_t *t = text_json(text, n);
    json_t *c = json_pack("{s:i,s:o}", "index", 0, "finish_reason", finish ? json_string(finish) : json_null());
    if (j->req.kind == SERVE_CHAT) {
        json_t *m = json_object();
        if (role || !chunk) json_object_set_new(m, "role", json_string("assistant"));
        if (n || !chunk || role) json_object_set(m, "content", t);
        json_object_set_new(c, chunk ? "delta" : "message", m);
    } else {
        json_object_set(c, "text", t);
        json_object_set_new(c, "logprobs", json_null());
    }
    json_decref(t);
    return c;
}

/* ---- streaming ---- */

typedef struct stream {
    server *sv;
    serve_job *j;
    struct MHD_Connection *c;
    long long id;
    size_t sent;      /* bytes of job text already sent */
    int phase;        /* 0 role chunk (chat), 1 text, 2 usage, 3 [DONE], 4 end */
    char *out;        /* an event not yet handed to MHD */
    size_t out_len, out_off;
} stream;

static void stream_event(stream *st, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    free(st->out);
    st->out = NULL;
    st->out_len = st->out_off = 0;
    if (!s) return;
    size_t n = strlen(s);
    if ((st->out = malloc(n + 9))) st->out_len = (size_t)sprintf(st->out, "data: %s\n\n", s);
    free(s);
}

/* Makes the next event; 0 when one is ready, 1 at the end, -1 when the
 * client left. */
static int stream_next(stream *st)
{
    serve_job *j = st->j;
    if (st->phase == 0) {
        st->phase = 1;
        if (j->req.kind == SERVE_CHAT) {
            json_t *o = envelope(st->sv, j, st->id, 1);
            json_object_set_new(o, "choices", json_pack("[o]", choice(j, "", 0, 1, NULL, 1)));
            stream_event(st, o);
            return 0;
        }
    }
    if (st->phase == 1) {
        pthread_mutex_lock(&j->mu);
        while (j->safe <= st->sent && !j->finish) {
            wait_job(j, st->sent);
            if (j->safe <= st->sent && !j->finish && client_gone(st->c)) {
                pthread_mutex_unlock(&j->mu);
                atomic_store(&j->cancel, 1);
                return -1;
            }
        }
        json_t *o = envelope(st->sv, j, st->id, 1);
        if (j->safe > st->sent) {
            json_object_set_new(o, "choices", json_pack("[o]", choice(j, j->text + st->sent, j->safe - st->sent, 1, NULL, 0)));
            st->sent = j->safe;
        } else if (j->finish == FINISH_ERROR || j->finish == FINISH_CANCEL) {
            json_decref(o);
            o = error_json(500, j->finish == FINISH_ERROR ? j->err : "the server is shutting down");
            st->phase = 3;
        } else {
            json_object_set_new(o, "choices", json_pack("[o]", choice(j, "", 0, 1, finish_name(j->finish), 0)));
            json_object_set_new(o, "timings", timings_json(j));
            st->phase = j->req.include_usage ? 2 : 3;
        }
        pthread_mutex_unlock(&j->mu);
        stream_event(st, o);
        return 0;
    }
    if (st->phase == 2) {
        json_t *o = envelope(st->sv, j, st->id, 1);
        json_object_set_new(o, "choices", json_array());
        json_object_set_new(o, "usage", usage_json(j));
        stream_event(st, o);
        st->phase = 3;
        return 0;
    }
    if (st->phase == 3) {
        free(st->out);
        st->out = strdup("data: [DONE]\n\n");
        st->out_len = st->out ? strlen(st->out) : 0;
        st->out_off = 0;
        st->phase = 4;
        return 0;
    }
    return 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream *st = cls;
    while (st->out_off >= st->out_len) {
        int r = stream_next(st);
        if (r > 0) return MHD_CONTENT_READER_END_OF_STREAM;
        if (r < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out_len - st->out_off < max ? st->out_len - st->out_off : max;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    return (ssize_t)n;
}

/* The response is gone (sent, or the client left): a job still running
 * has nobody to tell, so it stops and frees its slot. */
static void stream_free(void *cls)
{
    stream *st = cls;
    atomic_store(&st->j->cancel, 1);
    job_release(st->j);
    free(st->out);
    free(st);
}

static mhd_result answer_stream(server *sv, struct MHD_Connection *c, serve_job *j, long long id)
{
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        atomic_store(&j->cancel, 1);
        job_release(j);
        return send_error(c, 500, "out of memory");
    }
    *st = (stream){sv, j, c, id, 0, 0, NULL, 0, 0};
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!r) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    mhd_result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static mhd_result answer_whole(server *sv, struct MHD_Connection *c, serve_job *j, long long id)
{
    pthread_mutex_lock(&j->mu);
    while (!j->finish) {
        wait_job(j, (size_t)-1);
        if (!j->finish && client_gone(c)) {
            pthread_mutex_unlock(&j->mu);
            atomic_store(&j->cancel, 1);
            job_release(j);
            return MHD_NO; /* nobody to answer: close */
        }
    }
    pthread_mutex_unlock(&j->mu);
    mhd_result ret;
    if (j->finish == FINISH_ERROR || j->finish == FINISH_CANCEL) {
        ret = send_error(c, j->finish == FINISH_ERROR ? 500 : 503, "%s",
                         j->finish == FINISH_ERROR ? j->err : "the server is shutting down");
    } else {
        json_t *o = envelope(sv, j, id, 0);
        json_object_set_new(o, "choices", json_pack("[o]", choice(j, j->text ? j->text : "", j->len, 0,
                                                                   finish_name(j->finish), 0)));
        json_object_set_new(o, "usage", usage_json(j));
        json_object_set_new(o, "timings", timings_json(j));
        ret = send_json(c, 200, o);
    }
    job_release(j);
    return ret;
}

static mhd_result generate(server *sv, struct MHD_Connection *c, conn_state *cs, serve_kind kind)
{
    serve_engine *e = atomic_load(&sv->engine);
    serve_request r;
    char msg[512];
    int st = serve_request_parse(cs->body ? cs->body : "", cs->len, kind, &r, msg, sizeof msg);
    if (st) return engine_count_request(e, 1), send_error(c, (unsigned)st, "%s", msg);
    serve_job *j;
    st = engine_prepare(e, &r, &j, msg, sizeof msg);
    serve_request_free(&r);
    if (st) return engine_count_request(e, 1), send_error(c, (unsigned)st, "%s", msg);
    if (engine_submit(e, j)) {
        job_release(j);
        engine_count_request(e, 1);
        return send_error(c, 503, "all %d slots are busy and the queue is full: retry later",
                          sv->opt.n_slots);
    }
    engine_count_request(e, 0);
    long long id = atomic_fetch_add(&sv->next_id, 1);
    return j->req.stream ? answer_stream(sv, c, j, id) : answer_whole(sv, c, j, id);
}

static mhd_result h_chat(server *sv, struct MHD_Connection *c, conn_state *cs) { return generate(sv, c, cs, SERVE_CHAT); }
static mhd_result h_completions(server *sv, struct MHD_Connection *c, conn_state *cs) { return generate(sv, c, cs, SERVE_COMPLETION); }

/* ---- the small endpoints ---- */

static mhd_result h_health(server *sv, struct MHD_Connection *c, conn_state *cs)
{
    (void)cs;
    if (!atomic_load(&sv->engine)) return send_json(c, 503, json_pack("{s:s}", "status", "loading model"));
    if (atomic_load(&sv->draining)) return send_json(c, 503, json_pack("{s:s}", "status", "draining"));
    return send_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

static mhd_result h_models(server *sv, struct MHD_Connection *c, conn_state *cs)
{
    (void)cs;
    serve_engine *e = atomic_load(&sv->engine);
    const tern_hparams *hp = tern_model_hparams(engine_model(e));
    return send_json(c, 200, json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:{s:i,s:I,s:I}}]}", "object", "list", "data",
                                       "id", sv->model_id, "object", "model", "created", (json_int_t)sv->created,
                                       "owned_by", "tern", "meta", "n_ctx", engine_n_ctx(e), "n_vocab",
                                       (json_int_t)hp->n_vocab, "n_layer", (json_int_t)hp->n_layer));
}

static mhd_result h_metrics(server *sv, struct MHD_Connection *c, conn_state *cs)
{
    (void)cs;
    serve_stats s;
    engine_stats(atomic_load(&sv->engine), &s);
    size_t cap = 4096 + (size_t)s.n_slots * 64, n = 0;
    char *b = malloc(cap);
    if (!b) return send_error(c, 500, "out of memory");
#define PUT(...) n += (size_t)snprintf(b + n, cap - n, __VA_ARGS__)
    PUT("# HELP tern_requests_total Generation requests received.\n# TYPE tern_requests_total counter\n"
        "tern_requests_total %lld\n", s.requests);
    PUT("# HELP tern_request_errors_total Generation requests refused or failed.\n# TYPE tern_request_errors_total counter\n"
        "tern_request_errors_total %lld\n", s.errors);
    PUT("# HELP tern_prompt_tokens_total Prompt tokens evaluated.\n# TYPE tern_prompt_tokens_total counter\n"
        "tern_prompt_tokens_total %lld\n", s.prompt_tokens);
    PUT("# HELP tern_generated_tokens_total Tokens generated.\n# TYPE tern_generated_tokens_total counter\n"
        "tern_generated_tokens_total %lld\n", s.gen_tokens);
    PUT("# HELP tern_evals_total Batched graph evaluations.\n# TYPE tern_evals_total counter\n"
        "tern_evals_total %lld\n", s.evals);
    PUT("# HELP tern_queue_depth Requests waiting for a slot.\n# TYPE tern_queue_depth gauge\n"
        "tern_queue_depth %d\n", s.queued);
    PUT("# HELP tern_slots_busy Slots generating.\n# TYPE tern_slots_busy gauge\ntern_slots_busy %d\n", s.busy_slots);
    PUT("# HELP tern_slot_busy 1 while the slot holds a request.\n# TYPE tern_slot_busy gauge\n");
    for (int i = 0; i < s.n_slots; i++) PUT("tern_slot_busy{slot=\"%d\"} %d\n", i, s.slot_busy[i]);
    PUT("# HELP tern_decode_tokens_per_second Generated tokens per second, all slots, last window.\n"
        "# TYPE tern_decode_tokens_per_second gauge\ntern_decode_tokens_per_second %.3f\n", s.decode_tps);
#undef PUT
    mhd_result ret = send_text(c, 200, "text/plain; version=0.0.4", b, n < cap ? n : cap - 1, NULL);
    free(b);
    return ret;
}

static json_t *parse_object(conn_state *cs, char *msg, size_t n)
{
    json_error_t je;
    json_t *o = json_loadb(cs->body ? cs->body : "", cs->len, JSON_REJECT_DUPLICATES, &je);
    if (!o) snprintf(msg, n, "malformed JSON at line %d, column %d: %s", je.line, je.column, je.text);
    else if (!json_is_object(o)) {
        snprintf(msg, n, "the request body must be a JSON object");
        json_decref(o);
        o = NULL;
    }
    return o;
}

static mhd_result h_tokenize(server *sv, struct MHD_Connection *c, conn_state *cs)
{
    char msg[512];
    json_t *o = parse_object(cs, msg, sizeof msg);
    if (!o) return send_error(c, 400, "%s", msg);
    json_t *t = json_object_get(o, "content"), *sp = json_object_get(o, "add_special");
    if (!json_is_string(t) || (sp && !json_is_boolean(sp))) {
        json_decref(o);
        return send_error(c, 400, "'content' must be a string and 'add_special' a boolean");
    }
    const tern_tokenizer *tok = tern_model_tokenizer(engine_model(atomic_load(&sv->engine)));
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    tern_error err;
    tern_status st = tern_tokenize(tok, json_string_value(t), json_string_length(t), json_is_true(sp), 0, &ids,
                                   &cap, &n, &err);
    json_decref(o);
    if (st) {
        free(ids);
        return send_error(c, 400, "%s", err.msg);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    return send_json(c, 200, json_pack("{s:o}", "tokens", arr));
}

static mhd_result h_detokenize(server *sv, struct MHD_Connection *c, conn_state *cs)
{
    char msg[512];
    json_t *o = parse_object(cs, msg, sizeof msg);
    if (!o) return send_error(c, 400, "%s", msg);
    json_t *t = json_object_get(o, "tokens");
    const tern_tokenizer *tok = tern_model_tokenizer(engine_model(atomic_load(&sv->engine)));
    int32_t nv = tern_tokenizer_n_vocab(tok);
    size_t n = json_is_array(t) ? json_array_size(t) : 0, i;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    json_t *x;
    if (!json_is_array(t) || !ids) {
        free(ids);
        json_decref(o);
        return send_error(c, 400, "'tokens' must be an array of token ids");
    }
    json_array_foreach(t, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= nv) {
            free(ids);
            json_decref(o);
            return send_error(c, 400, "tokens[%zu] is not a token id in [0, %d]", i, nv - 1);
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    json_decref(o);
    size_t len = tern_detokenize(tok, ids, n, NULL, 0, 0);
    char *text = malloc(len + 1);
    if (text) tern_detokenize(tok, ids, n, text, len + 1, 0);
    free(ids);
    if (!text) return send_error(c, 500, "out of memory");
    mhd_result ret = send_json(c, 200, json_pack("{s:o}", "content", text_json(text, len)));
    free(text);
    return ret;
}

static mhd_result h_page(server *sv, struct MHD_Connection *c, conn_state *cs)
{
    (void)sv, (void)cs;
    return send_text(c, 200, "text/html; charset=utf-8", serve_page_html, strlen(serve_page_html), NULL);
}

/* ---- routing ---- */

static const struct route {
    const char *method, *path;
    route_fn fn;
    int needs_key;   /* --api-key applies */
    int needs_model; /* 503 while the model loads */
} routes[] = {
    {"POST", "/v1/chat/completions", h_chat, 1, 1},
    {"POST", "/v1/completions", h_completions, 1, 1},
    {"GET", "/v1/models", h_models, 1, 1},
    {"POST", "/tokenize", h_tokenize, 1, 1},
    {"POST", "/detokenize", h_detokenize, 1, 1},
    {"GET", "/metrics", h_metrics, 1, 1},
    {"GET", "/health", h_health, 0, 0},
    {"GET", "/", h_page, 0, 0},
};

/* Compares the whole key whatever the input, so the time taken says
 * nothing about how much of it matched. */
static int key_ok(const char *want, const char *auth)
{
    const char *got = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : "";
    size_t lw = strlen(want), lg = strlen(got);
    unsigned diff = lw != lg;
    for (size_t i = 0; i < lw; i++) diff |= (unsigned char)want[i] ^ (unsigned char)(lg ? got[i % lg] : 0);
    return diff == 0;
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static mhd_result dispatch(server *sv, struct MHD_Connection *c, const char *url, const char *method,
                           conn_state *cs)
{
    if (cs->headers_too_big) return send_error(c, 431, "request headers over %d bytes", SERVE_MAX_HEADERS);
    const struct route *rt = NULL;
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            path_known = 1;
            if (!strcmp(method, routes[i].method)) rt = &routes[i];
        }
    if (!rt && path_known) return send_error(c, 405, "%s is not allowed on %s", method, url);
    if (!rt) return send_error(c, 404, "no endpoint %s", url);
    if (rt->needs_key && sv->opt.api_key &&
        !key_ok(sv->opt.api_key, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")))
        return send_error(c, 401, "missing or wrong API key (Authorization: Bearer KEY)");
    if (cs->too_big) return send_error(c, 413, "request body over %u bytes", SERVE_MAX_BODY);
    if (rt->needs_model && !atomic_load(&sv->engine)) return send_error(c, 503, "the model is still loading");
    return rt->fn(sv, c, cs);
}

static mhd_result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                             const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    server *sv = cls;
    conn_state *cs = *con_cls;
    if (!cs) { /* headers are in: check them before any body arrives */
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        size_t hb = 0;
        MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &hb);
        cs->headers_too_big = hb > SERVE_MAX_HEADERS;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > SERVE_MAX_BODY) cs->too_big = 1;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_big && cs->len + *upload_size > SERVE_MAX_BODY) cs->too_big = 1;
        if (!cs->too_big) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = cs->cap ? cs->cap : 4096;
                while (cap < cs->len + *upload_size + 1) cap *= 2;
                char *b = realloc(cs->body, cap);
                if (!b) return MHD_NO;
                cs->body = b;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload, *upload_size);
            cs->len += *upload_size;
            cs->body[cs->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(sv, c, url, method, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ---- the server's life ---- */

static struct MHD_Daemon *start_daemon(server *sv, char *msg, size_t n)
{
    const char *host = sv->opt.host ? sv->opt.host : "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)sv->opt.port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)sv->opt.port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(msg, n, "--host '%.100s' is not an IPv4 or IPv6 address", host);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)sv->opt.port, NULL, NULL, on_request, sv,
                                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, sv,
                                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                                            MHD_OPTION_CONNECTION_LIMIT, 256u,
                                            MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!d) snprintf(msg, n, "cannot listen on %s port %d (in use, or not allowed)", host, sv->opt.port);
    return d;
}

int serve_run(const serve_options *o)
{
    server *sv = calloc(1, sizeof *sv);
    if (!sv) return fprintf(stderr, "tern serve: out of memory\n"), 1;
    sv->opt = *o;
    sv->created = time(NULL);
    atomic_init(&sv->next_id, 1);
    const char *base = o->model_name ? o->model_name : strrchr(o->model, '/');
    snprintf(sv->model_id, sizeof sv->model_id, "%s", o->model_name ? base : base ? base + 1 : o->model);
    /* every thread started from here on leaves the signals to sigwait below */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    char msg[512];
    struct MHD_Daemon *d = start_daemon(sv, msg, sizeof msg);
    if (!d) {
        fprintf(stderr, "tern serve: %s\n", msg);
        free(sv);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "tern serve: listening on http://%s:%u (loading %s)\n", o->host ? o->host : "127.0.0.1",
            di ? di->port : (unsigned)o->port, o->model);
    serve_engine *e;
    if (engine_create(o, &e, msg, sizeof msg)) {
        fprintf(stderr, "tern serve: %s\n", msg);
        MHD_stop_daemon(d);
        free(sv);
        return 1;
    }
    atomic_store(&sv->engine, e);
    fprintf(stderr, "tern serve: ready: %d slot%s of %d tokens, model '%s'\n", o->n_slots > 0 ? o->n_slots : 1,
            o->n_slots > 1 ? "s" : "", engine_n_ctx(e), sv->model_id);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "tern serve: %s: draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    atomic_store(&sv->draining, 1);
    MHD_quiesce_daemon(d); /* no new connections; open ones may still ask (and get 503) */
    engine_drain(e, 30);
    for (int i = 0; i < 50; i++) { /* let the last answers reach their clients */
        const union MHD_DaemonInfo *ci = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!ci || !ci->num_connections) break;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
    engine_free(e);
    free(sv);
    fprintf(stderr, "tern serve: stopped\n");
    return 0;
}
