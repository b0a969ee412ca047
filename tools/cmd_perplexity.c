/* cmd_perplexity.c - `tern perplexity`: exp(mean negative log-likelihood)
 * over chunks of the context size, each chunk evaluated from position 0.
 *
 * Two scoring rules, as the two kinds of input call for:
 *  - text (-f FILE): llama-perplexity's rule. The text is tokenized with
 *    BOS, cut into chunks of n_ctx tokens whose first token becomes BOS,
 *    and only the second half of each chunk is scored (the first half is
 *    context).
 *  - token ids (--ids FILE.i32): the rule of the shared PyTorch references:
 *    chunks are taken as they are and every one of their n_ctx - 1
 *    next-token predictions is scored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_cmd.h"

static const char *const ppl_keys[] = {
    "model", "file", "ids", "prompt", "threads", "ctx_size", "batch_size", "backend", "kernel",
    "head", "device", "cache_type_k", "cache_type_v", "chunks", NULL,
};

/* -log softmax(row)[target], in double. */
static double nll_of(const float *row, int64_t n_vocab, int32_t target)
{
    double mx = row[0];
    for (int64_t i = 1; i < n_vocab; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; i++) sum += exp((double)row[i] - mx);
    return -(((double)row[target] - mx) - log(sum));
}

int cmd_perplexity(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) {
            options_help("perplexity", "[-m MODEL] (-f TEXT | --ids FILE.i32) [-c N] [--chunks N]", ppl_keys);
            return 0;
        }
    int rc = 1;
    tern_opts *o = NULL;
    tern_model *m = NULL;
    tern_session *s = NULL;
    int32_t *ids = NULL, *chunk = NULL;
    size_t n = 0;
    if (options_parse("perplexity", argc, argv, ppl_keys, &o)) goto done;
    int by_ids = opt_has(o, "ids");
    if (mc_open(o, "perplexity", &m, &s)) goto done;
    int n_ctx = tern_session_n_ctx(s);
    /* the scored predictions of a chunk: positions first .. n_ctx - 2 */
    int first = by_ids ? 0 : n_ctx / 2;
    if (n_ctx - 1 - first < 1) {
        cli_fail("perplexity", "a context of %d tokens leaves nothing to score: give -c %d or more", n_ctx,
                 by_ids ? 2 : 3);
        goto done;
    }
    if (mc_tokens(o, "perplexity", m, &ids, &n)) goto done;
    size_t n_chunks = n / (size_t)n_ctx;
    long long max_chunks = opt_int(o, "chunks", -1);
    if (max_chunks >= 0 && (size_t)max_chunks < n_chunks) n_chunks = (size_t)max_chunks;
    if (n_chunks == 0) {
        cli_fail("perplexity", "%zu tokens are fewer than one chunk of %d (lower -c)", n, n_ctx);
        goto done;
    }
    int32_t bos = tern_tokenizer_bos(tern_model_tokenizer(m));
    chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!chunk) {
        cli_fail("perplexity", "out of memory");
        goto done;
    }
    fprintf(stderr, "perplexity: %zu chunks of %d tokens, scoring %s\n", n_chunks, n_ctx,
            by_ids ? "every prediction (reference rule)" : "the second half (llama-perplexity rule)");
    double sum = 0, sum2 = 0;
    size_t count = 0;
    int64_t n_vocab = tern_session_n_vocab(s);
    mc_catch_interrupt(s);
    for (size_t c = 0; c < n_chunks; c++) {
        memcpy(chunk, ids + c * (size_t)n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (!by_ids && bos >= 0) chunk[0] = bos;
        tern_session_reset(s);
        tern_error err;
        if (tern_session_eval(s, chunk, (size_t)n_ctx, 1, &err)) {
            rc = mc_eval_failed("perplexity", &err);
            goto done;
        }
        const float *lg = tern_session_logits(s, NULL);
        for (int i = first; i < n_ctx - 1; i++) {
            double v = nll_of(lg + (size_t)i * (size_t)n_vocab, n_vocab, chunk[i + 1]);
            sum += v;
            sum2 += v * v;
            count++;
        }
        printf("[%zu]%.4f,", c + 1, exp(sum / (double)count));
        fflush(stdout);
    }
    double mean = sum / (double)count, var = sum2 / (double)count - mean * mean;
    if (!isfinite(mean)) {
        cli_fail("perplexity", "the model's logits are not finite (NaN or infinite): no perplexity");
        goto done;
    }
    double err_mean = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) : 0;
    double ppl = exp(mean);
    printf("\nFinal estimate: PPL = %.4f +/- %.5f (mean nll %.5f over %zu predictions)\n", ppl,
           ppl * err_mean, mean, count);
    rc = 0;
done:
    mc_catch_interrupt(NULL);
    free(chunk);
    free(ids);
    tern_session_free(s);
    tern_model_free(m);
    options_free(o);
    return rc;
}
