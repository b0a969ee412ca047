/* engine.c - the model, one session of n_slots sequences, and the
 * scheduler thread that batches them (continuous batching): each step
 * evaluates, in ONE graph evaluation (tern_session_eval_seqs), the next
 * token of every decoding slot plus a chunk of the prompt of slots still
 * prefilling; queued requests take free slots between steps. A slot's
 * sequence is cleared when a request takes it. The sampler, the stop
 * rules and the detokenizer follow graphs/generate.lua, so greedy output
 * equals `tern run --temp 0`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve_impl.h"

#define PREFILL_CHUNK 256 /* most prompt tokens of one slot per step: others keep decoding */

typedef struct slot {
    serve_job *job;           /* NULL: free */
    int fed;                  /* prompt tokens evaluated */
    int32_t next;             /* the token to evaluate next while decoding */
    tern_sampler *smp;
    tern_detok_stream ds;
} slot;

struct serve_engine {
    serve_options opt;
    tern_model *m;
    tern_session *s;
    const tern_tokenizer *tok;
    tern_chat_style style;
    int n_slots, n_ctx, n_batch, max_queue;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;       /* guards what follows */
    pthread_cond_t cv;        /* a job was queued, or stop */
    pthread_cond_t idle_cv;   /* a job ended */
    int stop, draining, rr;
    serve_job **queue;        /* ring of max_queue */
    int q_head, q_len;
    slot *slots;
    long long requests, errors, prompt_tokens, gen_tokens, evals;
    double win_t0, tps;
    long long win_gen0;
};

double serve_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void job_release(serve_job *j)
{
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    serve_request_free(&j->req);
    free(j->prompt);
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* ---- the job's text (the scheduler writes, the HTTP side reads) ---- */

static int append(serve_job *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 256;
        while (cap < j->len + n + 1) cap *= 2;
        char *t = realloc(j->text, cap);
        if (!t) return -1;
        j->text = t;
        j->cap = cap;
    }
    memcpy(j->text + j->len, s, n);
    j->len += n;
    j->text[j->len] = 0;
    return 0;
}

/* After new text: cut at a stop string (1 when one was hit), else move
 * `safe` up to the longest tail no stop string could still begin with. */
static int apply_stops(serve_job *j)
{
    size_t hold = 0;
    for (int i = 0; i < j->req.n_stop; i++) {
        const char *s = j->req.stop[i], *hit = strstr(j->text, s);
        if (hit) {
            j->len = (size_t)(hit - j->text);
            j->text[j->len] = 0;
            j->safe = j->len;
            return 1;
        }
        size_t n = strlen(s);
        for (size_t k = n - 1; k > hold; k--) /* does text end with s[0..k)? */
            if (k <= j->len && !memcmp(j->text + j->len - k, s, k)) {
                hold = k;
                break;
            }
    }
    j->safe = j->len - hold;
    return 0;
}

/* ---- slots ---- */

static void finish(serve_engine *e, int i, finish_reason why, const char *err)
{
    slot *sl = &e->slots[i];
    serve_job *j = sl->job;
    pthread_mutex_lock(&j->mu);
    if (why != FINISH_STOP || !j->req.n_stop) { /* what the detokenizer held back */
        char tail[16];
        size_t n = tern_detok_stream_flush(&sl->ds, tail, sizeof tail);
        if (n && append(j, tail, n) == 0 && apply_stops(j)) why = FINISH_STOP;
    }
    j->safe = j->len;
    j->finish = why;
    if (err) snprintf(j->err, sizeof j->err, "%s", err);
    j->t_done = serve_now();
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    tern_sampler_free(sl->smp);
    sl->smp = NULL;
    pthread_mutex_lock(&e->mu);
    sl->job = NULL; /* under the lock: /metrics reads the slots */
    if (why == FINISH_ERROR) e->errors++;
    pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
    job_release(j);
}

/* Gives slot i to job j (engine lock held). 0, or -1 with j finished. */
static int take_slot(serve_engine *e, int i, serve_job *j)
{
    slot *sl = &e->slots[i];
    tern_error err;
    tern_session_seq_rollback(e->s, i, tern_session_seq_n_past(e->s, i), &err);
    tern_sampler_params p = tern_sampler_default_params();
    p.temp = (float)j->req.temperature;
    p.top_k = j->req.top_k;
    p.top_p = (float)j->req.top_p;
    p.min_p = (float)j->req.min_p;
    p.presence_penalty = (float)j->req.presence_penalty;
    p.freq_penalty = (float)j->req.frequency_penalty;
    p.seed = j->req.seed < 0 ? TERN_SAMPLER_SEED_RANDOM : (uint64_t)j->req.seed;
    memset(sl, 0, sizeof *sl);
    sl->job = j;
    if (tern_sampler_create(&p, tern_tokenizer_n_vocab(e->tok), &sl->smp, &err)) {
        pthread_mutex_unlock(&e->mu);
        finish(e, i, FINISH_ERROR, err.msg);
        pthread_mutex_lock(&e->mu);
        return -1;
    }
    for (int k = 0; k < j->n_prompt; k++) tern_sampler_accept(sl->smp, j->prompt[k]);
    e->prompt_tokens += j->n_prompt;
    return 0;
}

/* Moves queued jobs into free slots (engine lock held). */
static void admit(serve_engine *e)
{
    for (int i = 0; i < e->n_slots && e->q_len; i++) {
        if (e->slots[i].job) continue;
        serve_job *j = e->queue[e->q_head];
        e->q_head = (e->q_head + 1) % e->max_queue;
        e->q_len--;
        take_slot(e, i, j);
    }
}

/* The sampled token id of slot i: text, stops, limits. */
static void emit(serve_engine *e, int i, const float *logits)
{
    slot *sl = &e->slots[i];
    serve_job *j = sl->job;
    if (j->req.max_tokens == 0) {
        finish(e, i, FINISH_LENGTH, NULL);
        return;
    }
    int32_t id = tern_sampler_sample(sl->smp, logits);
    tern_sampler_accept(sl->smp, id);
    if (!j->n_gen) j->t_first = serve_now();
    if (tern_tokenizer_is_eog(e->tok, id) && !j->req.ignore_eos) {
        finish(e, i, FINISH_STOP, NULL);
        return;
    }
    char piece[1100];
    size_t n = tern_detok_stream_push(e->tok, &sl->ds, id, piece, sizeof piece);
    pthread_mutex_lock(&j->mu);
    int bad = append(j, piece, n), stopped = !bad && apply_stops(j);
    j->n_gen++;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&e->mu);
    e->gen_tokens++;
    pthread_mutex_unlock(&e->mu);
    if (bad) finish(e, i, FINISH_ERROR, "out of memory for the generated text");
    else if (stopped) finish(e, i, FINISH_STOP, NULL);
    else if ((j->req.max_tokens > 0 && j->n_gen >= j->req.max_tokens) ||
             tern_session_seq_n_past(e->s, i) >= e->n_ctx)
        finish(e, i, FINISH_LENGTH, NULL);
    else
        sl->next = id;
}

/* One evaluation over every busy slot. */
static void step(serve_engine *e)
{
    tern_seq_tokens b[256];
    int who[256], prefill[256], n_b = 0, budget = e->n_batch;
    for (int i = 0; i < e->n_slots; i++) { /* departed clients free their slots first */
        slot *sl = &e->slots[i];
        if (sl->job && atomic_load(&sl->job->cancel)) finish(e, i, FINISH_CANCEL, NULL);
    }
    for (int i = 0; i < e->n_slots; i++) { /* decoding slots: one token each */
        slot *sl = &e->slots[i];
        if (!sl->job || sl->fed < sl->job->n_prompt) continue;
        b[n_b] = (tern_seq_tokens){i, &sl->next, 1};
        prefill[n_b] = 0;
        who[n_b++] = i;
        budget--;
    }
    for (int k = 0; k < e->n_slots && budget > 0; k++) { /* prompt chunks, taking turns */
        int i = (e->rr + k) % e->n_slots;
        slot *sl = &e->slots[i];
        if (!sl->job || sl->fed >= sl->job->n_prompt) continue;
        int len = sl->job->n_prompt - sl->fed;
        if (len > budget) len = budget;
        if (len > PREFILL_CHUNK) len = PREFILL_CHUNK;
        b[n_b] = (tern_seq_tokens){i, sl->job->prompt + sl->fed, (size_t)len};
        prefill[n_b] = len;
        who[n_b++] = i;
        budget -= len;
    }
    e->rr = (e->rr + 1) % e->n_slots;
    if (!n_b) return;
    tern_error err;
    tern_status st = tern_session_eval_seqs(e->s, b, n_b, &err);
    pthread_mutex_lock(&e->mu);
    e->evals++;
    pthread_mutex_unlock(&e->mu);
    if (st) {
        for (int k = 0; k < n_b; k++) finish(e, who[k], FINISH_ERROR, err.msg);
        return;
    }
    const float *lg = tern_session_logits(e->s, NULL);
    int64_t nv = tern_session_n_vocab(e->s);
    for (int k = 0; k < n_b; k++) {
        slot *sl = &e->slots[who[k]];
        sl->fed += prefill[k];
        if (sl->fed < sl->job->n_prompt) continue; /* mid-prompt: its logits mean nothing */
        emit(e, who[k], lg + (size_t)k * (size_t)nv);
    }
}

static void update_rate(serve_engine *e)
{
    double t = serve_now();
    if (t - e->win_t0 >= 2.0) {
        e->tps = (double)(e->gen_tokens - e->win_gen0) / (t - e->win_t0);
        e->win_t0 = t;
        e->win_gen0 = e->gen_tokens;
    }
}

static int n_busy(const serve_engine *e)
{
    int n = 0;
    for (int i = 0; i < e->n_slots; i++) n += e->slots[i].job != NULL;
    return n;
}

static void *sched_main(void *p)
{
    serve_engine *e = p;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        admit(e);
        update_rate(e);
        if (!n_busy(e)) {
            if (e->stop) break;
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        step(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- the public side ---- */

int engine_create(const serve_options *o, serve_engine **out, char *msg, size_t n)
{
    *out = NULL;
    serve_engine *e = calloc(1, sizeof *e);
    if (!e) return snprintf(msg, n, "out of memory"), -1;
    e->opt = *o;
    e->n_slots = o->n_slots > 0 ? o->n_slots : 1;
    e->max_queue = o->max_queue > 0 ? o->max_queue : 4 * e->n_slots;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->idle_cv, NULL);
    tern_model_options mo = tern_model_default_options();
    mo.backend = o->backend;
    mo.n_threads = o->n_threads;
    if (o->kernel) mo.kernel = o->kernel;
    if (o->head) mo.head = o->head;
    tern_error err;
    if (tern_model_load(o->model, &mo, &e->m, &err)) {
        snprintf(msg, n, "%s", err.msg);
        engine_free(e);
        return -1;
    }
    tern_session_options so = tern_session_default_options();
    so.n_ctx = o->n_ctx;
    so.n_seq = e->n_slots;
    if (o->n_batch > 0) so.n_batch = o->n_batch;
    if (e->n_slots > 256 || tern_session_create(e->m, &so, &e->s, &err)) {
        snprintf(msg, n, "%s", e->n_slots > 256 ? "at most 256 slots (-np)" : err.msg);
        engine_free(e);
        return -1;
    }
    e->tok = tern_model_tokenizer(e->m);
    e->n_ctx = tern_session_n_ctx(e->s);
    e->n_batch = so.n_batch;
    if (e->n_batch < e->n_slots) { /* every decoding slot needs its token in each step */
        snprintf(msg, n, "-b %d is less than -np %d: a step must hold one token of every slot", e->n_batch,
                 e->n_slots);
        engine_free(e);
        return -1;
    }
    tern_gguf_str tmpl;
    char *t = NULL;
    if (tern_gguf_get_str(tern_model_gguf(e->m), "tokenizer.chat_template", &tmpl, NULL) == TERN_OK &&
        (t = malloc((size_t)tmpl.len + 1))) {
        memcpy(t, tmpl.ptr, (size_t)tmpl.len);
        t[tmpl.len] = 0;
    }
    e->style = tern_chat_detect(t);
    free(t);
    e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
    e->queue = calloc((size_t)e->max_queue, sizeof *e->queue);
    if (!e->slots || !e->queue) {
        snprintf(msg, n, "out of memory");
        engine_free(e);
        return -1;
    }
    e->win_t0 = serve_now();
    if (pthread_create(&e->thread, NULL, sched_main, e)) {
        snprintf(msg, n, "cannot start the scheduler thread");
        engine_free(e);
        return -1;
    }
    e->started = 1;
    *out = e;
    return 0;
}

void engine_free(serve_engine *e)
{
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = e->draining = 1;
    for (int i = 0; i < e->n_slots && e->slots; i++)
        if (e->slots[i].job) atomic_store(&e->slots[i].job->cancel, 1);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started) pthread_join(e->thread, NULL);
    for (; e->q_len; e->q_len--, e->q_head = (e->q_head + 1) % e->max_queue) { /* never started */
        serve_job *j = e->queue[e->q_head];
        pthread_mutex_lock(&j->mu);
        j->finish = FINISH_CANCEL;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        job_release(j);
    }
    free(e->queue);
    free(e->slots);
    tern_session_free(e->s);
    tern_model_free(e->m);
    pthread_cond_destroy(&e->idle_cv);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

const tern_model *engine_model(const serve_engine *e) { return e->m; }
int engine_n_ctx(const serve_engine *e) { return e->n_ctx; }
int engine_chat_style(const serve_engine *e) { return (int)e->style; }

int engine_prepare(serve_engine *e, serve_request *r, serve_job **out, char *msg, size_t n)
{
    *out = NULL;
    char *text = r->prompt, *owned = NULL;
    tern_error err;
    if (r->kind == SERVE_CHAT) {
        tern_chat_msg *msgs = calloc((size_t)r->n_messages, sizeof *msgs);
        if (!msgs) return snprintf(msg, n, "out of memory"), 500;
        for (int i = 0; i < r->n_messages; i++) msgs[i] = (tern_chat_msg){r->messages[i].role, r->messages[i].content};
        tern_status st = tern_chat_format(e->style, msgs, (size_t)r->n_messages, 1, &owned, NULL, &err);
        free(msgs);
        if (st) return snprintf(msg, n, "%s", err.msg), 400;
        text = owned;
    }
    int32_t *ids = NULL;
    size_t cap = 0, n_ids = 0;
    tern_status st = tern_tokenize(e->tok, text, strlen(text), 1, r->kind == SERVE_CHAT, &ids, &cap, &n_ids, &err);
    free(owned);
    if (st) {
        free(ids);
        return snprintf(msg, n, "%s", err.msg), 400;
    }
    if (n_ids == 0 || n_ids > (size_t)e->n_ctx) {
        free(ids);
        if (!n_ids) return snprintf(msg, n, "empty prompt: nothing to evaluate"), 400;
        return snprintf(msg, n, "the prompt is %zu tokens: it does not fit the context of %d tokens "
                        "per slot", n_ids, e->n_ctx), 400;
    }
    serve_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(ids);
        return snprintf(msg, n, "out of memory"), 500;
    }
    atomic_init(&j->refs, 1);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->req = *r; /* the job owns the request's strings now */
    memset(r, 0, sizeof *r);
    j->prompt = ids;
    j->n_prompt = (int)n_ids;
    j->t_submit = serve_now();
    *out = j;
    return 0;
}

int engine_submit(serve_engine *e, serve_job *j)
{
    pthread_mutex_lock(&e->mu);
    int full = e->draining || e->q_len >= e->max_queue;
    if (!full) {
        atomic_fetch_add(&j->refs, 1);
        e->queue[(e->q_head + e->q_len) % e->max_queue] = j;
        e->q_len++;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return full ? 503 : 0;
}

void engine_count_request(serve_engine *e, int error)
{
    pthread_mutex_lock(&e->mu);
    e->requests++;
    if (error) e->errors++;
    pthread_mutex_unlock(&e->mu);
}

void engine_stats(serve_engine *e, serve_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&e->mu);
    update_rate(e);
    s->requests = e->requests;
    s->errors = e->errors;
    s->prompt_tokens = e->prompt_tokens;
    s->gen_tokens = e->gen_tokens;
    s->evals = e->evals;
    s->queued = e->q_len;
    s->n_slots = e->n_slots;
    for (int i = 0; i < e->n_slots; i++) s->slot_busy[i] = e->slots[i].job != NULL;
    s->busy_slots = n_busy(e);
    s->decode_tps = e->tps;
    pthread_mutex_unlock(&e->mu);
}

void engine_drain(serve_engine *e, double seconds)
{
    double end = serve_now() + seconds;
    pthread_mutex_lock(&e->mu);
    e->draining = 1;
    while ((e->q_len || n_busy(e)) && serve_now() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&e->idle_cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
}
