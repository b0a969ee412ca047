/* tern/sampler.h - turning one row of logits into one token id.
 *
 * A sampler is session state (one owner thread): its options, the history of
 * accepted tokens the penalties look at, its own random generator and the
 * scratch it needs, all allocated at create so that sampling a token never
 * allocates.
 *
 * The chain is llama.cpp's common-sampler order:
 *
 *   penalties -> top_k -> top_p -> min_p -> temperature -> draw
 *
 * with llama.cpp's formulas at every stage (see sampler.c). The draw uses a
 * fixed, portable generator (xoshiro256** seeded through splitmix64), so a
 * given seed gives the same tokens on every machine; it does not reproduce
 * llama.cpp's std::mt19937 stream, so tern and llama.cpp agree on the
 * distribution, not on the individual draws.
 *
 * For speculative decoding the chain's distribution is available as a full
 * vocabulary vector (tern_sampler_probs) and the generator on its own
 * (tern_sampler_draw, tern_sampler_uniform). tern_sampler_sample(s, l) is
 * exactly tern_sampler_draw(s, probs, n_vocab) on tern_sampler_probs(s, l),
 * including the generator state it leaves: every draw, greedy ones too,
 * consumes exactly one uniform. */
#ifndef TERN_SAMPLER_H
#define TERN_SAMPLER_H

#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_sampler tern_sampler;

/* The seed that means "pick one from the clock" (llama.cpp's
 * LLAMA_DEFAULT_SEED). tern_sampler_seed() tells which one was picked. */
#define TERN_SAMPLER_SEED_RANDOM 0xFFFFFFFFu

/* Options; grows only at the end. Set struct_size = sizeof(tern_sampler_params)
 * (tern_sampler_default_params does); fields past a smaller struct_size take
 * their defaults. */
typedef struct tern_sampler_params {
    uint32_t struct_size;
    float temp;             /* 0.8; <= 0: greedy (argmax of the penalized logits, lowest id on ties) */
    int32_t top_k;          /* 40; <= 0: off */
    float top_p;            /* 0.95; >= 1: off */
    float min_p;            /* 0.05; <= 0: off */
    float repeat_penalty;   /* 1.0 (off); must be > 0 */
    int32_t repeat_last_n;  /* 64; 0: penalties off. llama.cpp's -1 ("the context size")
                             * is the caller's to resolve: pass n_ctx */
    float freq_penalty;     /* 0 */
    float presence_penalty; /* 0 */
    uint64_t seed;          /* TERN_SAMPLER_SEED_RANDOM */
} tern_sampler_params;

tern_sampler_params tern_sampler_default_params(void);

/* p == NULL takes the defaults. Fails with TERN_EINVAL on n_vocab <= 0, a NaN
 * option, repeat_penalty <= 0, repeat_last_n < 0 or a struct_size this
 * libtern does not know; TERN_ENOMEM when the scratch cannot be had. */
tern_status tern_sampler_create(const tern_sampler_params *p, int32_t n_vocab, tern_sampler **out,
                                tern_error *err);
void tern_sampler_free(tern_sampler *s); /* accepts NULL */

/* Forgets the history and reseeds (a fresh clock seed when the seed is
 * TERN_SAMPLER_SEED_RANDOM, as llama.cpp's reset does). */
void tern_sampler_reset(tern_sampler *s);

/* The seed in use (the picked one when the options asked for a random one). */
uint64_t tern_sampler_seed(const tern_sampler *s);
int32_t tern_sampler_n_vocab(const tern_sampler *s);

/* Runs the chain on logits (n_vocab floats; NaN counts as -inf) and draws a
 * token. Does not record it: call tern_sampler_accept with the token the
 * caller keeps (which is how prompt tokens enter the penalty window too).
 * Returns -1 only when s or logits is NULL. */
int32_t tern_sampler_sample(tern_sampler *s, const float *logits);

/* Records a token in the penalty window (the last repeat_last_n accepted).
 * Ids outside [0, n_vocab) are ignored. */
void tern_sampler_accept(tern_sampler *s, int32_t token);

/* Writes into probs (n_vocab floats) the distribution the chain would draw
 * from: zeros for filtered tokens, the kept ones summing to 1; for temp <= 0
 * a one-hot at the greedy token. Uses no randomness. TERN_EINVAL on a NULL
 * argument. */
tern_status tern_sampler_probs(tern_sampler *s, const float *logits, float *probs);

/* Draws an index from probs[0..n), nonnegative weights that need not sum to
 * 1 (negative, NaN and infinite weights count as 0), with the sampler's
 * generator: one uniform u, then the first i whose running sum (in double,
 * in index order) exceeds u * total.
 * Returns -1 when no weight is positive (the uniform is still consumed). */
int32_t tern_sampler_draw(tern_sampler *s, const float *probs, int32_t n);

/* The next uniform in [0, 1) from the sampler's generator (53 random bits). */
double tern_sampler_uniform(tern_sampler *s);

#ifdef __cplusplus
}
#endif
#endif
