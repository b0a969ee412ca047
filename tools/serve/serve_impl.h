/* serve_impl.h - what the server's files share (never installed): the
 * engine (model, session of n_slots sequences, scheduler thread) and the
 * job a request becomes. */
#ifndef TERN_SERVE_IMPL_H
#define TERN_SERVE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "serve.h"
#include "tern/tern.h"

typedef enum { FINISH_NONE = 0, FINISH_STOP, FINISH_LENGTH, FINISH_ERROR, FINISH_CANCEL } finish_reason;

/* One generation. The HTTP side and the scheduler each hold a reference;
 * everything below mu is guarded by it, and cv signals new text or the end. */
typedef struct serve_job {
    atomic_int refs;
    atomic_int cancel;       /* set by the HTTP side: the client went away */
    serve_request req;
    int32_t *prompt;         /* token ids */
    int n_prompt;
    double t_submit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;              /* generated so far (stop strings cut off) */
    size_t len, cap;
    size_t safe;             /* bytes of text that no stop string can still claim */
    int n_gen;
    finish_reason finish;    /* FINISH_NONE while running */
    char err[256];           /* FINISH_ERROR */
    double t_first, t_done;  /* time of the first token, of the end */
} serve_job;

typedef struct serve_engine serve_engine;

typedef struct serve_stats {
    long long requests, errors, prompt_tokens, gen_tokens, evals;
    int queued, busy_slots, n_slots;
    int slot_busy[256];
    double decode_tps;       /* generated tokens per second over the last few seconds */
} serve_stats;

int engine_create(const serve_options *o, serve_engine **out, char *msg, size_t n);
void engine_free(serve_engine *e); /* stops the scheduler first */
const tern_model *engine_model(const serve_engine *e);
int engine_n_ctx(const serve_engine *e);
int engine_chat_style(const serve_engine *e);
/* Tokenizes the request (chat: through the model's template) into a new
 * job with one reference for the caller. 0, or the HTTP status (400: the
 * prompt is empty or does not fit the context) with a message. */
int engine_prepare(serve_engine *e, serve_request *r, serve_job **out, char *msg, size_t n);
/* Queues the job (the engine takes its own reference). 0, or 503 when the
 * queue is full or the server drains. */
int engine_submit(serve_engine *e, serve_job *j);
void job_release(serve_job *j);
void engine_stats(serve_engine *e, serve_stats *s);
void engine_count_request(serve_engine *e, int error);
/* Stops taking jobs (submit answers 503); waits up to `seconds` for the
 * running and queued ones to end. */
void engine_drain(serve_engine *e, double seconds);
double serve_now(void);

#endif
