/* session.c - KV cache (on the backend that runs attention), graphs per
 * shape class, evaluation in chunks, cancel, marks to rewind to, and
 * evaluation on a worker thread (tern_session_eval_async). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"
#include "tern/checked.h"
#include "lua_graph.h"
#include "model_impl.h"
#include "tern/session.h"

#define MAX_GRAPHS 16 /* decode, prefill chunks, and every verify batch size of speculative decoding */

typedef struct cached_graph {
    int n_tok, n_out;
    tern_graph *g;
    unsigned long last_used;
} cached_graph;

struct tern_session {
    tern_model *m;
    tern_session_options opt;
    int n_past;
    tern_tensor *k_cache, *v_cache; /* per layer: [head_dim, n_head_kv, n_ctx] */
    void *kv_mem;                   /* host memory, or a buffer of be[kv_be] */
    int kv_be;                      /* backend that runs attention and holds the cache */
    atomic_int cancel;              /* set by tern_session_cancel, any thread */
    tern_graph_builder *builder;    /* Lua state running the graph script */
    cached_graph graphs[MAX_GRAPHS];
    unsigned long clock;
    float *logits;                  /* [n_logit_rows][n_vocab] */
    size_t logits_cap;              /* floats */
    int64_t n_logit_rows;
    tern_graph_stats stats;
    tern_graph_placement placement; /* of the last graph built */
    /* marks: stamps[p] is the evaluation that wrote position p, so a mark
     * (position, stamp of the position before it) goes stale exactly when
     * that position is rewritten */
    uint64_t id;                    /* this session among the process's */
    uint64_t n_evals;               /* evaluations started; stamps come from it */
    uint64_t *stamps;               /* [n_ctx] */
    struct async_worker *worker;    /* started by the first tern_session_eval_async */
    atomic_int pending;             /* an asynchronous evaluation was started and not waited for */
    /* multi-sequence batches: sequence q owns cache rows [q * n_ctx, (q + 1) * n_ctx) */
    int *seq_past;                  /* [n_seq]: tokens of sequence q > 0 (sequence 0's is n_past) */
    graph_seq_run *runs;            /* [n_seq]: the sequences of the evaluation being run */
};

/* The worker thread of tern_session_eval_async: one per session that asks
 * for it, idle on its condition variable between jobs. */
typedef struct async_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int job;          /* 1: tokens queued for the worker; 0: none or done */
    int done;         /* the job finished: status and err hold its result */
    int stop;
    int32_t *tokens;
    size_t n, cap;
    int all_logits;
    tern_status status;
    tern_error err;
} async_worker;

static atomic_ullong next_session_id = 1;

tern_session_options tern_session_default_options(void)
{
    tern_session_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.n_ctx = 0;
    o.n_batch = 512;
    o.kv_type = TERN_TYPE_F16;
    o.n_seq = 1;
    return o;
}

/* One allocation for every layer's K and V, on the backend the planner
 * will run attention on (all layers have one shape, so one answer). */
static tern_status alloc_kv(tern_session *s, tern_error *err)
{
    const tern_hparams *hp = &s->m->hp;
    int64_t ne[3] = {hp->head_dim, hp->n_head_kv, (int64_t)s->opt.n_ctx * s->opt.n_seq};
    tern_tensor proto;
    tern_tensor_init(&proto, s->opt.kv_type, 3, ne);
    size_t per = tern_tensor_nbytes(&proto), total;
    if (tern_mul_overflows(per, (size_t)hp->n_layer * 2, &total))
        return tern_error_set(err, TERN_ENOMEM, "KV cache size overflows");
    s->kv_be = tern_graph_kv_backend(s->m->be, s->m->n_be, s->opt.kv_type, hp->head_dim, hp->n_head,
                                     hp->n_head_kv, ne[2]);
    if (s->kv_be < 0)
        return tern_error_set(err, TERN_EUNSUPPORTED, "no backend of the list runs attention over a "
                              "%s KV cache of %lld positions", tern_type_name(s->opt.kv_type),
                              (long long)ne[2]);
    tern_backend *be = s->m->be[s->kv_be];
    if (s->opt.n_seq > 1 && !tern_backend_is_host(be)) /* the executor slices the cache per sequence */
        return tern_error_set(err, TERN_EUNSUPPORTED, "%d sequences need the KV cache in host memory, "
                              "but backend '%s' runs attention in its own", s->opt.n_seq, be->plugin->name);
    s->k_cache = calloc((size_t)hp->n_layer, sizeof *s->k_cache);
    s->v_cache = calloc((size_t)hp->n_layer, sizeof *s->v_cache);
    if (!s->k_cache || !s->v_cache)
        return tern_error_set(err, TERN_ENOMEM, "out of memory creating session");
    int host = tern_backend_is_host(be);
    if (host ? posix_memalign(&s->kv_mem, 64, total ? total : 64) != 0
             : !(s->kv_mem = be->api->buffer_alloc(be->ctx, total ? total : 64))) {
        s->kv_mem = NULL;
        return tern_error_set(err, TERN_ENOMEM, "out of %s memory: KV cache of %zu bytes (n_ctx %d)",
                              host ? "host" : be->plugin->name, total, s->opt.n_ctx);
    }
    /* not cleared: a row is read only after KV_STORE wrote it, and untouched
     * pages of a large context cost no resident memory */
    for (int64_t l = 0; l < hp->n_layer; l++) {
        s->k_cache[l] = proto;
        s->v_cache[l] = proto;
        size_t ko = (size_t)(2 * l) * per, vo = (size_t)(2 * l + 1) * per;
        if (host) {
            s->k_cache[l].data = (char *)s->kv_mem + ko;
            s->v_cache[l].data = (char *)s->kv_mem + vo;
        } else {
            s->k_cache[l].buffer = s->v_cache[l].buffer = s->kv_mem;
            s->k_cache[l].data = (void *)(uintptr_t)ko;
            s->v_cache[l].data = (void *)(uintptr_t)vo;
        }
    }
    return TERN_OK;
}

static void free_kv(tern_session *s)
{
    if (s->kv_mem && !tern_backend_is_host(s->m->be[s->kv_be]))
        s->m->be[s->kv_be]->api->buffer_free(s->m->be[s->kv_be]->ctx, s->kv_mem);
    else
        free(s->kv_mem);
}

tern_status tern_session_create(tern_model *m, const tern_session_options *opt, tern_session **out,
                                tern_error *err)
{
    *out = NULL;
    tern_session *s = calloc(1, sizeof *s);
    if (!s) return tern_error_set(err, TERN_ENOMEM, "out of memory creating session");
    s->m = m;
    s->opt = tern_session_default_options();
    if (opt) /* an older caller's struct ends before n_seq */
        memcpy(&s->opt, opt, opt->struct_size && opt->struct_size < sizeof *opt ? opt->struct_size : sizeof *opt);
    s->opt.struct_size = sizeof s->opt;
    if (s->opt.n_seq <= 0) s->opt.n_seq = 1;
    if (s->opt.n_ctx <= 0) s->opt.n_ctx = (int)(m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    if (s->opt.n_ctx <= 0) s->opt.n_ctx = 4096;
    if (s->opt.n_batch <= 0) s->opt.n_batch = 512;
    tern_status st = TERN_OK;
    if (s->opt.kv_type != TERN_TYPE_F16 && s->opt.kv_type != TERN_TYPE_F32)
        st = tern_error_set(err, TERN_EINVAL, "KV cache type must be f16 or f32, not %s",
                            tern_type_name(s->opt.kv_type));
    if (!st && s->opt.n_ctx > (1 << 24))
        st = tern_error_set(err, TERN_EINVAL, "context size %d too large", s->opt.n_ctx);
    if (!st && (s->opt.n_seq > 256 || (int64_t)s->opt.n_seq * s->opt.n_ctx > (1 << 24)))
        st = tern_error_set(err, TERN_EINVAL, "%d sequences of %d positions: too many (at most 256 "
                            "sequences and 16M positions in all)", s->opt.n_seq, s->opt.n_ctx);
    if (!st && (!(s->seq_past = calloc((size_t)s->opt.n_seq, sizeof *s->seq_past)) ||
                !(s->runs = calloc((size_t)s->opt.n_seq, sizeof *s->runs))))
        st = tern_error_set(err, TERN_ENOMEM, "out of memory creating session");
    s->id = atomic_fetch_add(&next_session_id, 1);
    if (!st && !(s->stamps = calloc((size_t)s->opt.n_ctx, sizeof *s->stamps)))
        st = tern_error_set(err, TERN_ENOMEM, "out of memory creating session");
    if (!st) st = alloc_kv(s, err);
    if (!st) st = tern_graph_builder_create(m, m->hp.graph, &s->builder, err);
    if (st) {
        tern_session_free(s);
        return st;
    }
    *out = s;
    return TERN_OK;
}

static void worker_stop(tern_session *s);

void tern_session_free(tern_session *s)
{
    if (!s) return;
    worker_stop(s);
    free(s->stamps);
    free(s->seq_past);
    free(s->runs);
    for (int i = 0; i < MAX_GRAPHS; i++) tern_graph_free(s->graphs[i].g);
    tern_graph_builder_free(s->builder);
    free_kv(s);
    free(s->k_cache);
    free(s->v_cache);
    free(s->logits);
    free(s);
}

/* The graph for (n_tok, n_out), built by the Lua script on first use. */
static tern_status get_graph(tern_session *s, int n_tok, int n_out, tern_graph **out,
                             tern_error *err)
{
    cached_graph *victim = &s->graphs[0];
    for (int i = 0; i < MAX_GRAPHS; i++) {
        cached_graph *c = &s->graphs[i];
        if (c->g && c->n_tok == n_tok && c->n_out == n_out) {
            c->last_used = ++s->clock;
            *out = c->g;
            return TERN_OK;
        }
        if (!c->g || c->last_used < victim->last_used) victim = c;
        if (!c->g) break;
    }
    tern_graph *g;
    tern_status st = tern_graph_create(n_tok, n_out, &g, err);
    if (st) return st;
    int kv_space = tern_graph_space_of(s->m->be[s->kv_be], s->kv_be);
    st = tern_graph_builder_run(s->builder, g, s->k_cache, s->v_cache, kv_space, err);
    if (!st) st = tern_graph_plan(g, s->m->be, s->m->n_be, s->m->pool, s->m->opt.n_threads, err);
    if (st) {
        tern_graph_free(g);
        return st;
    }
    tern_graph_placement_get(g, &s->placement);
    tern_graph_free(victim->g);
    victim->g = g;
    victim->n_tok = n_tok;
    victim->n_out = n_out;
    victim->last_used = ++s->clock;
    *out = g;
    return TERN_OK;
}

static tern_status reserve_logits(tern_session *s, size_t rows, tern_error *err)
{
    size_t need;
    if (tern_mul_overflows(rows, (size_t)s->m->hp.n_vocab, &need))
        return tern_error_set(err, TERN_ENOMEM, "logits buffer size overflows");
    if (need <= s->logits_cap) return TERN_OK;
    float *p = realloc(s->logits, need * sizeof *p);
    if (!p) return tern_error_set(err, TERN_ENOMEM, "out of memory: logits for %zu tokens", rows);
    s->logits = p;
    s->logits_cap = need;
    return TERN_OK;
}

#define BUSY_MSG "an asynchronous evaluation is pending on this session: wait for it first"

/* What tern_session_eval refuses before it starts, for eval_async too. */
static tern_status check_eval(const tern_session *s, const int32_t *tokens, size_t n, tern_error *err)
{
    if (n == 0) return tern_error_set(err, TERN_EINVAL, "nothing to evaluate: empty token list");
    if ((size_t)s->n_past + n > (size_t)s->opt.n_ctx)
        return tern_error_set(err, TERN_ECONTEXT,
                              "context overflow: %zu new tokens after %d in the cache exceed the "
                              "context size %d (raise it with -c)", n, s->n_past, s->opt.n_ctx);
    int64_t n_vocab = s->m->hp.n_vocab;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return tern_error_set(err, TERN_EINVAL, "token %zu: id %d outside the vocabulary (0..%lld)",
                                  i, tokens[i], (long long)n_vocab - 1);
    return TERN_OK;
}

/* The evaluation itself; the caller (the owner, or the worker while an
 * asynchronous evaluation is pending) has the session to itself. */
static tern_status eval_now(tern_session *s, const int32_t *tokens, size_t n, int all_logits,
                            tern_error *err)
{
    tern_status st = check_eval(s, tokens, n, err);
    if (st) return st;
    int64_t n_vocab = s->m->hp.n_vocab;
    st = reserve_logits(s, all_logits ? n : 1, err);
    if (st) return st;
    int n_past0 = s->n_past;
    uint64_t stamp = ++s->n_evals;
    for (size_t start = 0; start < n && !st; start += (size_t)s->opt.n_batch) {
        int len = (int)(n - start < (size_t)s->opt.n_batch ? n - start : (size_t)s->opt.n_batch);
        int n_out = all_logits ? len : 1;
        tern_graph *g;
        st = get_graph(s, len, n_out, &g, err);
        if (st) break;
        int32_t *tok = tern_graph_tokens(g), *pos = tern_graph_positions(g), *ids = tern_graph_out_ids(g);
        for (int i = 0; i < len; i++) {
            tok[i] = tokens[start + (size_t)i];
            pos[i] = s->n_past + i;
        }
        for (int i = 0; i < n_out; i++) ids[i] = all_logits ? i : len - 1;
        /* sequence 0 of several: its slice of the cache (alone, it is the whole cache) */
        s->runs[0] = (graph_seq_run){0, len, 0, s->opt.n_ctx};
        tern_graph_set_runs(g, s->runs, s->opt.n_seq > 1 ? 1 : 0);
        st = tern_graph_compute(g, &s->stats, &s->cancel, err);
        if (st) break;
        for (int i = 0; i < len; i++) s->stamps[s->n_past + i] = stamp;
        s->n_past += len;
        const float *out = tern_graph_output(g, NULL, NULL);
        if (all_logits)
            memcpy(s->logits + start * (size_t)n_vocab, out, (size_t)len * (size_t)n_vocab * sizeof(float));
        else if (start + (size_t)len == n)
            memcpy(s->logits, out, (size_t)n_vocab * sizeof(float));
    }
    if (st) { /* as if it never ran: the next evaluation starts where this one did */
        if (st == TERN_ECANCELED) atomic_store(&s->cancel, 0); /* consumed */
        s->n_past = n_past0;
        s->n_logit_rows = 0;
        return st;
    }
    s->n_logit_rows = all_logits ? (int64_t)n : 1;
    return TERN_OK;
}

tern_status tern_session_eval(tern_session *s, const int32_t *tokens, size_t n, int all_logits,
                              tern_error *err)
{
    if (atomic_load(&s->pending)) return tern_error_set(err, TERN_EINVAL, BUSY_MSG);
    return eval_now(s, tokens, n, all_logits, err);
}

void tern_session_cancel(tern_session *s) { atomic_store(&s->cancel, 1); }

const float *tern_session_logits(const tern_session *s, int64_t *n_rows)
{
    if (n_rows) *n_rows = s->n_logit_rows;
    return s->logits;
}

int64_t tern_session_n_vocab(const tern_session *s) { return s->m->hp.n_vocab; }
int tern_session_n_past(const tern_session *s) { return s->n_past; }
int tern_session_n_ctx(const tern_session *s) { return s->opt.n_ctx; }
tern_model *tern_session_model(const tern_session *s) { return s->m; }
const tern_graph_stats *tern_session_stats(const tern_session *s) { return &s->stats; }
void tern_session_reset_stats(tern_session *s) { memset(&s->stats, 0, sizeof s->stats); }
int tern_session_fallback_nodes(const tern_session *s) { return s->placement.n_fallback; }
const tern_graph_placement *tern_session_placement(const tern_session *s) { return &s->placement; }
int tern_session_kv_backend(const tern_session *s) { return s->kv_be; }

tern_status tern_session_rollback(tern_session *s, int n, tern_error *err)
{
    if (atomic_load(&s->pending)) return tern_error_set(err, TERN_EINVAL, BUSY_MSG);
    if (n < 0 || n > s->n_past)
        return tern_error_set(err, TERN_EINVAL, "cannot roll back %d tokens: %d in the cache", n, s->n_past);
    s->n_past -= n;
    s->n_logit_rows = 0;
    return TERN_OK;
}

void tern_session_reset(tern_session *s)
{
    if (atomic_load(&s->pending)) return; /* documented as not allowed; refused rather than racing */
    s->n_past = 0;
    memset(s->seq_past, 0, (size_t)s->opt.n_seq * sizeof *s->seq_past);
    s->n_logit_rows = 0;
}

/* ---- multi-sequence batches ---- */

static int *past_of(tern_session *s, int seq) { return seq == 0 ? &s->n_past : &s->seq_past[seq]; }

int tern_session_n_seq(const tern_session *s) { return s->opt.n_seq; }

int tern_session_seq_n_past(const tern_session *s, int seq)
{
    if (seq < 0 || seq >= s->opt.n_seq) return -1;
    return seq == 0 ? s->n_past : s->seq_past[seq];
}

tern_status tern_session_seq_rollback(tern_session *s, int seq, int n, tern_error *err)
{
    if (seq < 0 || seq >= s->opt.n_seq)
        return tern_error_set(err, TERN_EINVAL, "no sequence %d: the session has %d", seq, s->opt.n_seq);
    if (seq == 0) return tern_session_rollback(s, n, err);
    if (atomic_load(&s->pending)) return tern_error_set(err, TERN_EINVAL, BUSY_MSG);
    if (n < 0 || n > s->seq_past[seq])
        return tern_error_set(err, TERN_EINVAL, "cannot roll back %d tokens of sequence %d: it holds %d",
                              n, seq, s->seq_past[seq]);
    s->seq_past[seq] -= n;
    s->n_logit_rows = 0;
    return TERN_OK;
}

/* What eval_seqs refuses before it starts; *total gets the token count. */
static tern_status check_seqs(tern_session *s, const tern_seq_tokens *b, int n_b, size_t *total,
                              tern_error *err)
{
    if (n_b < 1 || n_b > s->opt.n_seq)
        return tern_error_set(err, TERN_EINVAL, "%d entries in a batch over %d sequences", n_b, s->opt.n_seq);
    *total = 0;
    for (int i = 0; i < n_b; i++) {
        if (b[i].seq < 0 || b[i].seq >= s->opt.n_seq)
            return tern_error_set(err, TERN_EINVAL, "entry %d: no sequence %d (the session has %d)", i,
                                  b[i].seq, s->opt.n_seq);
        for (int j = 0; j < i; j++)
            if (b[j].seq == b[i].seq)
                return tern_error_set(err, TERN_EINVAL, "entries %d and %d: sequence %d twice", j, i, b[i].seq);
        if (b[i].n == 0 || !b[i].tokens)
            return tern_error_set(err, TERN_EINVAL, "entry %d (sequence %d): no tokens", i, b[i].seq);
        if (b[i].n > (size_t)s->opt.n_batch || *total + b[i].n > (size_t)s->opt.n_batch)
            return tern_error_set(err, TERN_EINVAL, "more than n_batch = %d tokens in one batch",
                                  s->opt.n_batch);
        *total += b[i].n;
        int past = *past_of(s, b[i].seq);
        if ((size_t)past + b[i].n > (size_t)s->opt.n_ctx)
            return tern_error_set(err, TERN_ECONTEXT, "context overflow: %zu new tokens after %d in sequence "
                                  "%d exceed the context size %d", b[i].n, past, b[i].seq, s->opt.n_ctx);
        for (size_t k = 0; k < b[i].n; k++)
            if (b[i].tokens[k] < 0 || b[i].tokens[k] >= s->m->hp.n_vocab)
                return tern_error_set(err, TERN_EINVAL, "entry %d, token %zu: id %d outside the vocabulary "
                                      "(0..%lld)", i, k, b[i].tokens[k], (long long)s->m->hp.n_vocab - 1);
    }
    return TERN_OK;
}

tern_status tern_session_eval_seqs(tern_session *s, const tern_seq_tokens *b, int n_b, tern_error *err)
{
    if (atomic_load(&s->pending)) return tern_error_set(err, TERN_EINVAL, BUSY_MSG);
    size_t total = 0;
    tern_status st = check_seqs(s, b, n_b, &total, err);
    if (!st) st = reserve_logits(s, (size_t)n_b, err);
    tern_graph *g = NULL;
    if (!st) st = get_graph(s, (int)total, n_b, &g, err);
    if (st) return st;
    int32_t *tok = tern_graph_tokens(g), *pos = tern_graph_positions(g), *ids = tern_graph_out_ids(g);
    int t = 0;
    for (int i = 0; i < n_b; i++) {
        int past = *past_of(s, b[i].seq);
        s->runs[i] = (graph_seq_run){t, (int)b[i].n, (int64_t)b[i].seq * s->opt.n_ctx, s->opt.n_ctx};
        for (size_t k = 0; k < b[i].n; k++, t++) {
            tok[t] = b[i].tokens[k];
            pos[t] = past + (int)k;
        }
        ids[i] = t - 1;
    }
    tern_graph_set_runs(g, s->runs, n_b);
    st = tern_graph_compute(g, &s->stats, &s->cancel, err);
    if (st) {
        if (st == TERN_ECANCELED) atomic_store(&s->cancel, 0);
        s->n_logit_rows = 0;
        return st;
    }
    uint64_t stamp = ++s->n_evals;
    for (int i = 0; i < n_b; i++) {
        int *past = past_of(s, b[i].seq);
        if (b[i].seq == 0)
            for (size_t k = 0; k < b[i].n; k++) s->stamps[*past + (int)k] = stamp;
        *past += (int)b[i].n;
    }
    memcpy(s->logits, tern_graph_output(g, NULL, NULL), (size_t)n_b * (size_t)s->m->hp.n_vocab * sizeof(float));
    s->n_logit_rows = n_b;
    return TERN_OK;
}

/* ---- marks ---- */

tern_mark tern_session_mark(const tern_session *s)
{
    tern_mark m;
    m.session = s->id;
    m.pos = s->n_past;
    m.stamp = s->n_past > 0 ? s->stamps[s->n_past - 1] : 0;
    return m;
}

tern_status tern_session_rewind(tern_session *s, tern_mark m, int keep, tern_error *err)
{
    if (atomic_load(&s->pending)) return tern_error_set(err, TERN_EINVAL, BUSY_MSG);
    if (m.session != s->id)
        return tern_error_set(err, TERN_EINVAL, "mark of another session (session %llu, this is %llu)",
                              (unsigned long long)m.session, (unsigned long long)s->id);
    if (m.pos < 0 || m.pos > s->n_past)
        return tern_error_set(err, TERN_EINVAL, "stale mark: it is at position %d but the cache now "
                              "holds %d tokens (rewound past it)", m.pos, s->n_past);
    if (m.pos > 0 && s->stamps[m.pos - 1] != m.stamp)
        return tern_error_set(err, TERN_EINVAL, "stale mark: position %d was rewound and evaluated "
                              "again after the mark was taken", m.pos);
    if (keep < 0 || keep > s->n_past - m.pos)
        return tern_error_set(err, TERN_EINVAL, "cannot keep %d tokens past the mark at %d: the cache "
                              "holds %d", keep, m.pos, s->n_past);
    s->n_past = m.pos + keep;
    s->n_logit_rows = 0;
    return TERN_OK;
}

/* ---- asynchronous evaluation ---- */

static void *worker_main(void *p)
{
    tern_session *s = p;
    async_worker *w = s->worker;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->job && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        pthread_mutex_unlock(&w->mu);
        tern_status st = eval_now(s, w->tokens, w->n, w->all_logits, &w->err);
        pthread_mutex_lock(&w->mu);
        w->status = st;
        w->job = 0;
        w->done = 1;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static tern_status worker_start(tern_session *s, tern_error *err)
{
    async_worker *w = calloc(1, sizeof *w);
    if (!w) return tern_error_set(err, TERN_ENOMEM, "out of memory starting the session's worker");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    s->worker = w;
    if (pthread_create(&w->thread, NULL, worker_main, s) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        s->worker = NULL;
        return tern_error_set(err, TERN_ENOMEM, "cannot start the session's worker thread");
    }
    return TERN_OK;
}

/* Cancels and waits for a pending evaluation, then ends the thread. */
static void worker_stop(tern_session *s)
{
    async_worker *w = s->worker;
    if (!w) return;
    if (atomic_load(&s->pending)) {
        tern_session_cancel(s);
        tern_session_wait(s, NULL);
    }
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->tokens);
    free(w);
    s->worker = NULL;
}

tern_status tern_session_eval_async(tern_session *s, const int32_t *tokens, size_t n, int all_logits,
                                    tern_error *err)
{
    if (atomic_load(&s->pending)) return tern_error_set(err, TERN_EINVAL, BUSY_MSG);
    tern_status st = check_eval(s, tokens, n, err);
    if (!st && !s->worker) st = worker_start(s, err);
    if (st) return st;
    async_worker *w = s->worker;
    if (n > w->cap) {
        int32_t *t = realloc(w->tokens, n * sizeof *t);
        if (!t) return tern_error_set(err, TERN_ENOMEM, "out of memory: %zu tokens to evaluate", n);
        w->tokens = t;
        w->cap = n;
    }
    memcpy(w->tokens, tokens, n * sizeof *tokens);
    pthread_mutex_lock(&w->mu);
    w->n = n;
    w->all_logits = all_logits;
    w->done = 0;
    w->job = 1;
    atomic_store(&s->pending, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return TERN_OK;
}

tern_status tern_session_wait(tern_session *s, tern_error *err)
{
    if (!atomic_load(&s->pending)) return TERN_OK;
    async_worker *w = s->worker;
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    tern_status st = w->status;
    if (st && err) *err = w->err;
    w->done = 0;
    pthread_mutex_unlock(&w->mu);
    atomic_store(&s->pending, 0);
    return st;
}

int tern_session_ready(tern_session *s)
{
    if (!atomic_load(&s->pending)) return 1;
    async_worker *w = s->worker;
    pthread_mutex_lock(&w->mu);
    int done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}
