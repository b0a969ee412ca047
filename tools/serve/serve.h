/* serve.h - `tern serve`: an OpenAI-compatible HTTP server over one model
 * (libmicrohttpd for HTTP, jansson for JSON; libtern itself knows nothing
 * of either). The module's public surface: the server's options and its
 * run call (cmd_serve.c), and the request parser (the libFuzzer target
 * drives it alone).
 *
 * Inside: http.c routes requests and writes responses (JSON, Server-Sent
 * Events), request.c turns a body into a serve_request, engine.c owns the
 * model and one session of n_slots sequences and runs the scheduler thread
 * (continuous batching through tern_session_eval_seqs), page.html is the
 * chat page served at /. */
#ifndef TERN_SERVE_H
#define TERN_SERVE_H

#include <stddef.h>
#include <stdint.h>

#define SERVE_MAX_BODY (4u << 20)   /* bytes of a request body */
#define SERVE_MAX_HEADERS 8192      /* bytes of all request headers */
#define SERVE_MAX_DEPTH 64          /* JSON nesting */
#define SERVE_MAX_STOP 4            /* stop strings, as OpenAI allows */
#define SERVE_MAX_MESSAGES 1024

typedef struct serve_options {
    const char *model;     /* GGUF path */
    const char *backend;   /* NULL: auto */
    const char *host;      /* "127.0.0.1" */
    int port;              /* 8080; 0 picks a free one (printed) */
    int n_slots;           /* parallel sequences (-np), default 1 */
    int n_ctx;             /* context per slot; 0: the model's, at most 4096 */
    int n_threads;         /* 0: the physical cores */
    int n_batch;           /* most tokens per evaluation (default 512) */
    int max_queue;         /* requests waiting for a slot before 503 (default 4 * n_slots) */
    const char *api_key;   /* NULL: no key needed */
    const char *model_name;/* the id /v1/models reports (default: the file name) */
    const char *kernel;    /* the backend's kernel family (--kernel), NULL: auto */
    const char *head;      /* output head storage (--head f16|q8), NULL: f16 */
} serve_options;

/* Runs until SIGTERM or SIGINT, then drains (no new requests; running
 * ones finish) and returns the exit code. Prints one line per failure. */
int serve_run(const serve_options *o);

/* ---- requests ---- */

typedef enum { SERVE_COMPLETION = 0, SERVE_CHAT = 1 } serve_kind;

typedef struct serve_msg {
    char *role, *content;
} serve_msg;

/* A parsed /v1/completions or /v1/chat/completions body. Numbers are
 * range-checked; absent fields hold OpenAI's defaults. */
typedef struct serve_request {
    serve_kind kind;
    char *prompt;          /* completions */
    serve_msg *messages;   /* chat */
    int n_messages;
    int stream;
    int max_tokens;        /* -1: until end of text or context */
    double temperature, top_p, min_p, presence_penalty, frequency_penalty;
    int top_k;
    long long seed;        /* -1: random */
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    int include_usage;     /* stream_options.include_usage */
    int ignore_eos;        /* llama-server's extension: generate past end of text */
} serve_request;

/* Parses len bytes of JSON into *r (zeroed first). 0 on success; else the
 * HTTP status to answer (400) with a one-line message in msg. */
int serve_request_parse(const char *body, size_t len, serve_kind kind, serve_request *r, char *msg,
                        size_t msglen);
void serve_request_free(serve_request *r); /* leaves *r zeroed */

#endif
