/* tern/session.h - a session: one conversation over a shared model. It owns
 * the KV cache (in the memory of the backend that runs attention), the
 * graphs built for its shape classes and the last logits; one thread uses
 * it at a time (tern_session_cancel excepted). Sessions of a process share
 * one thread pool and may run in parallel threads; tern_session_eval_async
 * runs one evaluation on the session's own worker thread while its owner
 * does something else (drafts with another session, say). */
#ifndef TERN_SESSION_H
#define TERN_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "model.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_session tern_session;

typedef struct tern_session_options {
    uint32_t struct_size;
    int n_ctx;    /* context size in tokens; 0 = the model's training context, at most 4096 */
    int n_batch;  /* most tokens per graph evaluation (prefill chunk) */
    int kv_type;  /* TERN_TYPE_F16 (default) or TERN_TYPE_F32 */
    int n_seq;    /* independent sequences, each with n_ctx positions of cache (default 1;
                   * more than 1 needs the cache in host memory) */
} tern_session_options;

tern_session_options tern_session_default_options(void);
/* A session on m (which must outlive it). On failure *out is NULL and m is
 * untouched: the caller still owns m and frees it (tern/status.h). */
tern_status tern_session_create(tern_model *m, const tern_session_options *opt, tern_session **out,
                                tern_error *err);
void tern_session_free(tern_session *s); /* accepts NULL */

/* Appends n tokens at the next positions and runs the model over them in
 * chunks of at most n_batch. With all_logits, the logits of every token are
 * kept ([n][n_vocab]); otherwise only the last token's. Fails with
 * TERN_ECONTEXT when the tokens do not fit, with the kernel's or device's
 * status when an evaluation fails, with TERN_ECANCELED after
 * tern_session_cancel: each time leaving the session as it was before the
 * call (usable; no logits). */
tern_status tern_session_eval(tern_session *s, const int32_t *tokens, size_t n, int all_logits,
                              tern_error *err);
/* Logits of the last evaluation: n_rows rows of n_vocab floats. */
const float *tern_session_logits(const tern_session *s, int64_t *n_rows);
int64_t tern_session_n_vocab(const tern_session *s);
int tern_session_n_past(const tern_session *s);
int tern_session_n_ctx(const tern_session *s);
/* Stops the evaluation running in another thread (or the next one) at
 * the next node: it returns TERN_ECANCELED. Safe from any thread and from
 * a signal handler. */
void tern_session_cancel(tern_session *s);
/* Forgets the last n tokens (speculative decoding rejects drafts). */
tern_status tern_session_rollback(tern_session *s, int n, tern_error *err);
/* Forgets everything. */
void tern_session_reset(tern_session *s);

/* A place in the cache to come back to: taken before tokens are
 * evaluated, it lets tern_session_rewind drop them again without counting
 * them. Each evaluation stamps the positions it writes; a mark remembers
 * the stamp of the position before it, so it goes stale exactly when the
 * cache is rewound below it and written again. Marks are plain values. */
typedef struct tern_mark {
    uint64_t session; /* which session took it */
    uint64_t stamp;   /* the evaluation that wrote position pos - 1 (0 when pos is 0) */
    int pos;          /* tokens in the cache when it was taken */
} tern_mark;

tern_mark tern_session_mark(const tern_session *s);
/* Cuts the cache back to the mark plus the first `keep` tokens evaluated
 * after it (speculative decoding keeps the accepted prefix of a batch).
 * Refuses with TERN_EINVAL a mark of another session, a stale mark (the
 * cache was cut below it, and written again or not), and a keep past the
 * cache's end; the last logits are dropped, as by rollback. */
tern_status tern_session_rewind(tern_session *s, tern_mark m, int keep, tern_error *err);

/* Asynchronous evaluation. tern_session_eval_async checks the arguments
 * as tern_session_eval does, copies the tokens, hands the evaluation to
 * the session's worker thread (started on first use, ended by
 * tern_session_free) and returns. Until tern_session_wait returns, the
 * session belongs to the worker: its owner may call only
 * tern_session_wait, tern_session_ready and tern_session_cancel (from any
 * thread) and tern_session_free (which cancels and waits). eval,
 * eval_async, rollback and rewind refuse with TERN_EINVAL meanwhile,
 * reset does nothing; anything else (logits, n_past) is undefined.
 * Sessions of other models, or of the same model, stay free to use: a
 * draft can run on one backend while its verifier runs on another. With
 * one thread per model (-t 1) the two evaluations run truly in parallel;
 * a model with more threads shares the process's pool, whose jobs take
 * turns. */
tern_status tern_session_eval_async(tern_session *s, const int32_t *tokens, size_t n, int all_logits,
                                    tern_error *err);
/* Waits for the pending evaluation and returns its status (its message
 * in err), with the session as tern_session_eval would have left it;
 * TERN_OK at once when none is pending. */
tern_status tern_session_wait(tern_session *s, tern_error *err);
/* 1 when no evaluation is pending or the pending one has finished (so
 * wait returns without blocking); 0 while it runs. */
int tern_session_ready(tern_session *s);
tern_model *tern_session_model(const tern_session *s);
/* Per-op time and fallback counts since creation. */
const tern_graph_stats *tern_session_stats(const tern_session *s);
void tern_session_reset_stats(tern_session *s);
/* Nodes per graph that run past the first backend of the list. */
int tern_session_fallback_nodes(const tern_session *s);
/* Where the nodes of the last graph built run, and its copies. */
const tern_graph_placement *tern_session_placement(const tern_session *s);
/* Index in the model's backend list of the backend holding the KV cache. */
int tern_session_kv_backend(const tern_session *s);

/* ---- multi-sequence batches ----
 * A session made with n_seq > 1 holds n_seq independent sequences (a
 * server's parallel slots). Each has its own positions 0..n_ctx-1 and its
 * own region of the KV cache; the calls above (eval, rollback, marks,
 * n_past) act on sequence 0. tern_session_eval_seqs evaluates tokens of
 * several sequences in ONE graph evaluation: the weights are read once for
 * all of them, and only the cache ops (KV store, attention) run per
 * sequence, on that sequence's slice of the cache, so a token attends its
 * own sequence only. The kernels see exactly what a one-sequence
 * evaluation shows them and every token's row is computed alone (batch
 * invariance), so the logits are bit-identical to evaluating each sequence
 * by itself. */
typedef struct tern_seq_tokens {
    int seq;               /* 0..n_seq-1, at most once per call */
    const int32_t *tokens; /* appended at the sequence's next positions */
    size_t n;              /* at least 1 */
} tern_seq_tokens;

/* Evaluates b[0..n_b) in one graph (in that token order); at most n_batch
 * tokens in all. The logits are n_b rows: row i for the last token of
 * b[i]. Fails (TERN_EINVAL: bad sequence, repeated sequence, empty entry,
 * too many tokens, bad id; TERN_ECONTEXT: a sequence would overflow
 * n_ctx; the kernel's status; TERN_ECANCELED) leaving every sequence as it
 * was. */
tern_status tern_session_eval_seqs(tern_session *s, const tern_seq_tokens *b, int n_b,
                                   tern_error *err);
int tern_session_n_seq(const tern_session *s);
/* Tokens in sequence seq's cache; -1 for no such sequence. */
int tern_session_seq_n_past(const tern_session *s, int seq);
/* Forgets the last n tokens of sequence seq (n = its n_past clears it). */
tern_status tern_session_seq_rollback(tern_session *s, int seq, int n, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
