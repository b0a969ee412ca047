/* test_batch.c - multi-sequence batches (tern_session_eval_seqs): several
 * sequences evaluated in one graph give logits bit-identical to each
 * sequence evaluated alone, on the embedded model and the shared trained
 * ones, on scalar and on x86; prompts are prefilled in chunks while other
 * sequences decode (as a server's continuous batching does); a cleared
 * sequence is reused; bad batches are refused leaving the sequences as
 * they were. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "tern/backend.h"
#include "tern/session.h"
#include "tern/tern.h"

#define N_SEQ 4
#define N_GEN 8
#define MAX_PROMPT 40

static const char *model_file(char *buf, size_t n, int mi)
{
    static const char *shared[] = {"tiny-bitnet", "tiny-llama", "tiny-bitnet-i2_s"};
    if (mi == 0) {
        snprintf(buf, n, "%s/graphs/models/tiny-bitnet.gguf", TERN_SOURCE_DIR);
        return buf;
    }
    if (!tu_shared_dir()) return NULL;
    snprintf(buf, n, "%s/models/%s.gguf", tu_shared_dir(), shared[mi - 1]);
    return buf;
}

static int runnable(const char *name)
{
    tern_registry *reg;
    tern_error err;
    ck_assert_msg(tern_registry_scan(&reg, &err) == TERN_OK, "%s", err.msg);
    const tern_plugin_info *pi = tu_plugin(reg, name);
    int ok = pi && pi->probe.runnable;
    tern_registry_free(reg);
    if (!ok) printf("skipped: multi-sequence batches on %s: backend not runnable here\n", name);
    return ok;
}

static tern_session *session(tern_model *m, int n_seq)
{
    tern_session_options so = tern_session_default_options();
    so.n_ctx = 128;
    so.n_seq = n_seq;
    tern_session *s;
    tern_error err;
    ck_assert_msg(tern_session_create(m, &so, &s, &err) == TERN_OK, "%s", err.msg);
    return s;
}

static int32_t argmax(const float *x, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int32_t)i;
    return best;
}

typedef struct prompt {
    int32_t ids[MAX_PROMPT];
    int n;
} prompt;

static void make_prompts(prompt *p, int count, int64_t n_vocab, unsigned long long seed)
{
    for (int i = 0; i < count; i++) {
        p[i].n = 3 + (int)(tu_rand(&seed) % (MAX_PROMPT - 3));
        for (int k = 0; k < p[i].n; k++) p[i].ids[k] = (int32_t)(tu_rand(&seed) % (unsigned long long)n_vocab);
    }
}

/* The reference: the sequence alone in its own session, prompt in one
 * evaluation, then N_GEN greedy steps; logits of the prompt's last token
 * and of every step ([N_GEN + 1][n_vocab]). */
static float *alone(tern_model *m, const prompt *p)
{
    int64_t nv = tern_model_hparams(m)->n_vocab;
    float *out = malloc((size_t)(N_GEN + 1) * (size_t)nv * sizeof *out);
    ck_assert_ptr_nonnull(out);
    tern_session *s = session(m, 1);
    tern_error err;
    ck_assert_msg(tern_session_eval(s, p->ids, (size_t)p->n, 0, &err) == TERN_OK, "%s", err.msg);
    for (int j = 0; j <= N_GEN; j++) {
        memcpy(out + (size_t)j * (size_t)nv, tern_session_logits(s, NULL), (size_t)nv * sizeof *out);
        if (j == N_GEN) break;
        int32_t t = argmax(out + (size_t)j * (size_t)nv, nv);
        ck_assert_msg(tern_session_eval(s, &t, 1, 0, &err) == TERN_OK, "%s", err.msg);
    }
    tern_session_free(s);
    return out;
}

/* A slot of the batched run: its prompt, how far its prefill got, the
 * logits rows it produced so far. */
typedef struct slot {
    const prompt *p;
    int fed, step, chunk, start_at;
    int32_t next;
    float *got;
} slot;

/* Runs the prompts through one session of N_SEQ sequences, continuous
 * batching style: slot i starts at round start_at, prefills in chunks of
 * `chunk`, and decodes one token per round while others still prefill.
 * Fills each slot's `got` like alone(). */
static void batched(tern_model *m, tern_session *s, slot *sl, int n_slots)
{
    int64_t nv = tern_model_hparams(m)->n_vocab;
    tern_error err;
    for (int round = 0;; round++) {
        tern_seq_tokens b[N_SEQ];
        int who[N_SEQ], n_b = 0, active = 0;
        for (int i = 0; i < n_slots; i++) {
            slot *x = &sl[i];
            if (x->step > N_GEN) continue;
            active = 1;
            if (round < x->start_at) continue;
            b[n_b].seq = i;
            if (x->fed < x->p->n) {
                int len = x->p->n - x->fed < x->chunk ? x->p->n - x->fed : x->chunk;
                b[n_b].tokens = x->p->ids + x->fed;
                b[n_b].n = (size_t)len;
                x->fed += len;
            } else {
                b[n_b].tokens = &x->next;
                b[n_b].n = 1;
            }
            who[n_b++] = i;
        }
        if (!active) break;
        if (!n_b) continue;
        ck_assert_msg(tern_session_eval_seqs(s, b, n_b, &err) == TERN_OK, "%s", err.msg);
        int64_t rows;
        const float *lg = tern_session_logits(s, &rows);
        ck_assert_int_eq(rows, n_b);
        for (int k = 0; k < n_b; k++) {
            slot *x = &sl[who[k]];
            if (x->fed < x->p->n) continue; /* mid-prompt: no logits wanted */
            const float *row = lg + (size_t)k * (size_t)nv;
            memcpy(x->got + (size_t)x->step * (size_t)nv, row, (size_t)nv * sizeof(float));
            x->next = argmax(row, nv);
            x->step++;
        }
    }
}

static void check_same(const float *want, const float *got, int64_t nv, const char *what, int seq)
{
    for (int j = 0; j <= N_GEN; j++)
        ck_assert_msg(!memcmp(want + (size_t)j * (size_t)nv, got + (size_t)j * (size_t)nv,
                              (size_t)nv * sizeof(float)),
                      "%s: sequence %d, step %d: logits differ from the sequence alone", what, seq, j);
}

/* _i: model (embedded, 3 shared) x backend (scalar, x86) */
START_TEST(test_batch_invariance)
{
    static const char *backends[] = {"scalar", "x86"};
    const char *backend = backends[_i % 2];
    char path[4096], what[256];
    if (!model_file(path, sizeof path, _i / 2)) {
        printf("skipped: ../shared not found (multi-sequence batches, model %d)\n", _i / 2);
        return;
    }
    if (strcmp(backend, "scalar") && !runnable(backend)) return;
    snprintf(what, sizeof what, "%s on %s", path, backend);
    tern_model *m = tu_load_model(path, backend, 2);
    int64_t nv = tern_model_hparams(m)->n_vocab;
    prompt p[N_SEQ + 1];
    make_prompts(p, N_SEQ + 1, nv, 1234 + (unsigned long long)_i);
    float *want[N_SEQ + 1];
    for (int i = 0; i <= N_SEQ; i++) want[i] = alone(m, &p[i]);

    tern_session *s = session(m, N_SEQ);
    slot sl[N_SEQ];
    memset(sl, 0, sizeof sl);
    for (int i = 0; i < N_SEQ; i++) {
        sl[i].p = &p[i];
        sl[i].chunk = 1 + 5 * i;   /* 1, 6, 11, 16 tokens per prefill chunk */
        sl[i].start_at = 3 * i;    /* joins while the others decode */
        sl[i].got = malloc((size_t)(N_GEN + 1) * (size_t)nv * sizeof(float));
    }
    batched(m, s, sl, N_SEQ);
    for (int i = 0; i < N_SEQ; i++) check_same(want[i], sl[i].got, nv, what, i);

    /* a slot freed and taken by a new request: sequence 2 cleared, the
     * fifth prompt runs in it while sequence 0 keeps its whole history */
    tern_error err;
    ck_assert_int_eq(tern_session_seq_rollback(s, 2, tern_session_seq_n_past(s, 2), &err), TERN_OK);
    ck_assert_int_eq(tern_session_seq_n_past(s, 2), 0);
    sl[2].p = &p[N_SEQ];
    sl[2].fed = sl[2].step = 0;
    sl[2].start_at = 0;
    batched(m, s, sl, N_SEQ);
    check_same(want[N_SEQ], sl[2].got, nv, what, 2);

    for (int i = 0; i < N_SEQ; i++) free(sl[i].got);
    for (int i = 0; i <= N_SEQ; i++) free(want[i]);
    tern_session_free(s);
    tern_model_free(m);
}
END_TEST

/* Refused batches name the entry and leave every sequence as it was. */
START_TEST(test_batch_errors)
{
    char path[4096];
    tern_model *m = tu_load_model(model_file(path, sizeof path, 0), "scalar", 2);
    tern_session *s = session(m, 3);
    tern_error err;
    int32_t t[130] = {1, 2, 3};
    tern_seq_tokens ok = {1, t, 3};
    ck_assert_int_eq(tern_session_eval_seqs(s, &ok, 1, &err), TERN_OK);
    struct {
        tern_seq_tokens b[2];
        int n;
        tern_status st;
        const char *msg;
    } bad[] = {
        {{{3, t, 1}}, 1, TERN_EINVAL, "no sequence 3"},
        {{{-1, t, 1}}, 1, TERN_EINVAL, "no sequence -1"},
        {{{1, t, 1}, {1, t, 1}}, 2, TERN_EINVAL, "sequence 1 twice"},
        {{{0, t, 0}}, 1, TERN_EINVAL, "no tokens"},
        {{{0, t, 129}}, 1, TERN_ECONTEXT, "context overflow"},
        {{{2, t, 1}, {1, t, 126}}, 2, TERN_ECONTEXT, "sequence 1 exceed"},
        {{{0, (int32_t[]){-5}, 1}}, 1, TERN_EINVAL, "outside the vocabulary"},
        {{{0, t, 1}}, 0, TERN_EINVAL, "0 entries"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(tern_session_eval_seqs(s, bad[i].b, bad[i].n, &err), bad[i].st);
        ck_assert_msg(strstr(err.msg, bad[i].msg), "case %zu: '%s' lacks '%s'", i, err.msg, bad[i].msg);
        ck_assert_int_eq(tern_session_seq_n_past(s, 0), 0);
        ck_assert_int_eq(tern_session_seq_n_past(s, 1), 3);
        ck_assert_int_eq(tern_session_seq_n_past(s, 2), 0);
    }
    ck_assert_int_eq(tern_session_seq_n_past(s, 7), -1);
    ck_assert_int_eq(tern_session_seq_rollback(s, 1, 4, &err), TERN_EINVAL);
    ck_assert_int_eq(tern_session_n_seq(s), 3);
    tern_session_reset(s);
    ck_assert_int_eq(tern_session_seq_n_past(s, 1), 0);
    tern_session_free(s);
    tern_model_free(m);
}
END_TEST

Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_batch_invariance, 0, 8);
    tcase_add_test(tc, test_batch_errors);
    suite_add_tcase(s, tc);
    return s;
}
