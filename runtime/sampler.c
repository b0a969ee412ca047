/* sampler.c - the sampler chain and its generator. Owns struct tern_sampler:
 * the options, the penalty window (a ring of accepted ids plus a count per
 * vocabulary entry), the xoshiro256** state and the per-token scratch.
 *
 * The chain, in llama.cpp's common-sampler order and with its formulas:
 *   penalties   for each id seen c > 0 times in the window:
 *                 l = l <= 0 ? l * repeat_penalty : l / repeat_penalty
 *                 l -= c * freq_penalty + presence_penalty
 *   top_k       keep the k largest logits (ties: lowest id first)
 *   top_p       softmax (temperature 1) over the top_k set; keep the shortest
 *               best-first prefix whose probability reaches top_p (>= 1 token)
 *   min_p       keep l >= max + log(min_p) (the max always stays)
 *   temperature p = exp((l - max) / temp), normalised over what is kept
 *   draw        one uniform, inverse CDF over the kept ids in id order
 *
 * Cost per token for a vocabulary V: one pass over the logits (after a copy
 * only when a penalty applies) feeding a size-k heap (k <= HEAP_MAX; blocks
 * that cannot enter it are skipped on their maximum), or a quickselect over
 * all V for larger k. Only the kept prefix is ever sorted, never the
 * vocabulary; top_p without top_k selects that prefix in doubling steps. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tern/checked.h"
#include "tern/sampler.h"

/* top_k up to this uses a heap over the logits; larger k a quickselect. */
#define HEAP_MAX 256
/* Up to this many kept tokens sample() sorts them by id; beyond it, it
 * scatters them into a dense vector, as tern_sampler_probs does. */
#define SPARSE_MAX 4096

/* One candidate: v is its logit until the temperature stage and its
 * probability after it. */
typedef struct cand {
    float v;
    int32_t id;
} cand;

struct tern_sampler {
    tern_sampler_params p;
    int32_t n_vocab;
    uint64_t seed;     /* the seed in use (picked when p.seed asks for a random one) */
    uint64_t rng[4];   /* xoshiro256** state */
    int32_t *ring;     /* (repeat_last_n) accepted ids; NULL when penalties are off */
    int32_t ring_len;  /* ids held, <= repeat_last_n */
    int32_t ring_head; /* oldest id once the ring is full */
    int32_t *counts;   /* (n_vocab) occurrences of each id in the ring */
    float *work;       /* (n_vocab) penalized logits, later the dense draw vector */
    cand *cand;        /* (n_vocab) candidates; [0, n) kept after the chain */
};

/* ---- generator: splitmix64 seeding, xoshiro256** stream ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* A seed from the clock, the process and the heap, never the "random" marker. */
static uint64_t clock_seed(const void *salt)
{
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = (uint64_t)a.tv_sec * 1000000000ull + (uint64_t)a.tv_nsec;
    x ^= ((uint64_t)b.tv_nsec << 20) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)salt;
    uint64_t seed = splitmix64(&x);
    return seed == TERN_SAMPLER_SEED_RANDOM ? seed + 1 : seed;
}

static void reseed(tern_sampler *s)
{
    s->seed = s->p.seed == TERN_SAMPLER_SEED_RANDOM ? clock_seed(s) : s->p.seed;
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

double tern_sampler_uniform(tern_sampler *s)
{
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

/* ---- options ---- */

tern_sampler_params tern_sampler_default_params(void)
{
    tern_sampler_params p = {
        .struct_size = sizeof(tern_sampler_params),
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .freq_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .seed = TERN_SAMPLER_SEED_RANDOM,
    };
    return p;
}

/* Copies the fields a caller's struct_size covers over the defaults. */
static tern_status take_params(const tern_sampler_params *in, tern_sampler_params *p, tern_error *err)
{
    *p = tern_sampler_default_params();
    if (!in) return TERN_OK;
    size_t n = in->struct_size;
    if (n < sizeof in->struct_size || n > sizeof *in)
        return tern_error_set(err, TERN_EINVAL,
                              "sampler params: struct_size %zu is not in [%zu, %zu]; set it to "
                              "sizeof(tern_sampler_params)",
                              n, sizeof in->struct_size, sizeof *in);
#define TAKE(f) \
    if (n >= offsetof(tern_sampler_params, f) + sizeof in->f) p->f = in->f
    TAKE(temp);
    TAKE(top_k);
    TAKE(top_p);
    TAKE(min_p);
    TAKE(repeat_penalty);
    TAKE(repeat_last_n);
    TAKE(freq_penalty);
    TAKE(presence_penalty);
    TAKE(seed);
#undef TAKE
    p->struct_size = sizeof *p;
    return TERN_OK;
}

static tern_status check_params(const tern_sampler_params *p, tern_error *err)
{
    const struct { const char *name; float v; } f[] = {
        {"temp", p->temp}, {"top_p", p->top_p}, {"min_p", p->min_p},
        {"repeat_penalty", p->repeat_penalty}, {"freq_penalty", p->freq_penalty},
        {"presence_penalty", p->presence_penalty},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (isnan(f[i].v)) return tern_error_set(err, TERN_EINVAL, "sampler params: %s is NaN", f[i].name);
    if (!(p->repeat_penalty > 0))
        return tern_error_set(err, TERN_EINVAL, "sampler params: repeat_penalty %g must be > 0",
                              (double)p->repeat_penalty);
    if (p->repeat_last_n < 0)
        return tern_error_set(err, TERN_EINVAL,
                              "sampler params: repeat_last_n %d must be >= 0 (for llama.cpp's -1, pass "
                              "the context size)",
                              (int)p->repeat_last_n);
    return TERN_OK;
}

static int penalties_on(const tern_sampler_params *p)
{
    return p->repeat_last_n > 0 &&
           (p->repeat_penalty != 1.0f || p->freq_penalty != 0.0f || p->presence_penalty != 0.0f);
}

/* ---- lifetime ---- */

static void *alloc_array(size_t n, size_t size, int zero)
{
    size_t bytes;
    if (tern_mul_overflows(n, size, &bytes)) return NULL;
    return zero ? calloc(n, size) : malloc(bytes ? bytes : 1);
}

tern_status tern_sampler_create(const tern_sampler_params *params, int32_t n_vocab, tern_sampler **out,
                                tern_error *err)
{
    if (!out) return tern_error_set(err, TERN_EINVAL, "tern_sampler_create: out is NULL");
    *out = NULL;
    if (n_vocab <= 0)
        return tern_error_set(err, TERN_EINVAL, "tern_sampler_create: n_vocab %d must be > 0", (int)n_vocab);
    tern_sampler_params p;
    tern_status st = take_params(params, &p, err);
    if (st == TERN_OK) st = check_params(&p, err);
    if (st != TERN_OK) return st;

    tern_sampler *s = calloc(1, sizeof *s);
    if (!s) return tern_error_set(err, TERN_ENOMEM, "tern_sampler_create: out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    s->work = alloc_array((size_t)n_vocab, sizeof *s->work, 0);
    s->cand = alloc_array((size_t)n_vocab, sizeof *s->cand, 0);
    int ok = s->work && s->cand;
    if (ok && penalties_on(&p)) {
        s->ring = alloc_array((size_t)p.repeat_last_n, sizeof *s->ring, 0);
        s->counts = alloc_array((size_t)n_vocab, sizeof *s->counts, 1);
        ok = s->ring && s->counts;
    }
    if (!ok) {
        tern_sampler_free(s);
        return tern_error_set(err, TERN_ENOMEM,
                              "tern_sampler_create: out of memory for n_vocab %d, repeat_last_n %d",
                              (int)n_vocab, (int)p.repeat_last_n);
    }
    reseed(s);
    *out = s;
    return TERN_OK;
}

void tern_sampler_free(tern_sampler *s)
{
    if (!s) return;
    free(s->ring);
    free(s->counts);
    free(s->work);
    free(s->cand);
    free(s);
}

void tern_sampler_reset(tern_sampler *s)
{
    if (!s) return;
    for (int32_t i = 0; i < s->ring_len; i++) s->counts[s->ring[i]] = 0;
    s->ring_len = s->ring_head = 0;
    reseed(s);
}

uint64_t tern_sampler_seed(const tern_sampler *s)
{
    return s ? s->seed : 0;
}

int32_t tern_sampler_n_vocab(const tern_sampler *s)
{
    return s ? s->n_vocab : 0;
}

void tern_sampler_accept(tern_sampler *s, int32_t token)
{
    if (!s || !s->ring || token < 0 || token >= s->n_vocab) return;
    int32_t cap = s->p.repeat_last_n;
    if (s->ring_len < cap) {
        s->ring[s->ring_len++] = token;
    } else {
        s->counts[s->ring[s->ring_head]]--;
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % cap;
    }
    s->counts[token]++;
}

/* ---- the chain ---- */

/* The total order of the chain: larger logit first, then lower id. */
static int better(const cand *a, const cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cmp_best_first(const void *a, const void *b)
{
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static int cmp_id(const void *a, const void *b)
{
    int32_t x = ((const cand *)a)->id, y = ((const cand *)b)->id;
    return (x > y) - (x < y);
}

static void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Each id seen in the window is penalized once, with its count; a count is
 * negated while its id is done and restored after. */
static void apply_penalties(tern_sampler *s, float *l)
{
    const tern_sampler_params *p = &s->p;
    for (int32_t i = 0; i < s->ring_len; i++) {
        int32_t id = s->ring[i], c = s->counts[id];
        if (c <= 0) continue;
        float v = l[id];
        v = v <= 0 ? v * p->repeat_penalty : v / p->repeat_penalty;
        l[id] = v - ((float)c * p->freq_penalty + (float)(c > 0) * p->presence_penalty);
        s->counts[id] = -c;
    }
    for (int32_t i = 0; i < s->ring_len; i++) {
        int32_t id = s->ring[i];
        if (s->counts[id] < 0) s->counts[id] = -s->counts[id];
    }
}

/* The logits the chain reads: the caller's own when no penalty is on, else
 * a penalized copy in work. */
static const float *penalized(tern_sampler *s, const float *logits)
{
    if (!s->ring || s->ring_len == 0) return logits;
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
    apply_penalties(s, s->work);
    return s->work;
}

/* NaN as -inf, +inf as FLT_MAX: l - max stays a number. */
static float sane(float v)
{
    return isnan(v) ? -INFINITY : v > FLT_MAX ? FLT_MAX : v;
}

/* Largest of l[0..n) ignoring NaN (-inf when there is none); written so
 * that the compiler can vectorise it. */
static float max_of(const float *l, size_t n)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = l[i + j] > m[j] ? l[i + j] : m[j];
    for (; i < n; i++) m[0] = l[i] > m[0] ? l[i] : m[0];
    float r = m[0];
    for (int j = 1; j < 8; j++) r = m[j] > r ? m[j] : r;
    return r;
}

/* The greedy token: the first id holding the largest logit (NaN never
 * wins; when every logit is NaN or -inf, id 0). */
static int32_t argmax(const float *l, int32_t n)
{
    float m = max_of(l, (size_t)n);
    if (m == -INFINITY) return 0;
    for (int32_t i = 0; i < n; i++)
        if (l[i] == m) return i;
    return 0;
}

/* Restores the heap property below i; the root is the worst candidate. */
static void sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && better(&h[c], &h[c + 1])) c++;
        if (!better(&h[i], &h[c])) return;
        swap_cand(&h[i], &h[c]);
        i = c;
    }
}

/* cand[0..k) = the k best of l, in heap order. Blocks of 64 logits whose
 * maximum does not beat the root are skipped whole: after the first few
 * thousand logits almost every block is. */
static void top_k_heap(tern_sampler *s, const float *l, size_t k)
{
    cand *h = s->cand;
    size_t n = (size_t)s->n_vocab;
    for (size_t i = 0; i < k; i++) h[i] = (cand){sane(l[i]), (int32_t)i};
    for (size_t i = k / 2; i-- > 0;) sift_down(h, k, i);
    for (size_t i = k; i < n; i += 64) {
        size_t end = n - i < 64 ? n : i + 64;
        if (!(max_of(l + i, end - i) > h[0].v)) continue;
        for (size_t j = i; j < end; j++) {
            /* a tie with the root loses: its id is higher; NaN never enters */
            float v = sane(l[j]);
            if (!(v > h[0].v)) continue;
            h[0] = (cand){v, (int32_t)j};
            sift_down(h, k, 0);
        }
    }
}

static size_t median3(const cand *a, size_t i, size_t j, size_t k)
{
    if (better(&a[i], &a[j])) return better(&a[j], &a[k]) ? j : better(&a[i], &a[k]) ? k : i;
    return better(&a[i], &a[k]) ? i : better(&a[j], &a[k]) ? k : j;
}

/* Rearranges a[0..n) so that a[0..m) are its m best (in no order).
 * Quickselect with a median-of-three pivot: linear on model logits; the
 * order is total (ids break ties), so equal logits cannot stall it. */
static void select_best(cand *a, size_t n, size_t m)
{
    size_t lo = 0, hi = n;
    while (m > lo && m < hi && hi - lo > 16) {
        swap_cand(&a[median3(a, lo, lo + (hi - lo) / 2, hi - 1)], &a[hi - 1]);
        size_t store = lo;
        for (size_t i = lo; i < hi - 1; i++)
            if (better(&a[i], &a[hi - 1])) swap_cand(&a[i], &a[store++]);
        swap_cand(&a[store], &a[hi - 1]);
        if (store < m) lo = store + 1;
        else hi = store;
    }
    if (m > lo && m < hi) qsort(a + lo, hi - lo, sizeof *a, cmp_best_first);
}

/* cand[0..n) = the top_k set of l (all of it when top_k is off). */
static size_t keep_top_k(tern_sampler *s, const float *l)
{
    size_t v = (size_t)s->n_vocab;
    size_t k = s->p.top_k <= 0 || (size_t)s->p.top_k >= v ? v : (size_t)s->p.top_k;
    if (k <= HEAP_MAX) {
        top_k_heap(s, l, k);
        return k;
    }
    for (size_t i = 0; i < v; i++) s->cand[i] = (cand){sane(l[i]), (int32_t)i};
    select_best(s->cand, v, k);
    return k;
}

/* Index of the best of a[0..n). */
static size_t best_of(const cand *a, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (better(&a[i], &a[b])) b = i;
    return b;
}

/* Moves the candidates with l >= max + log(min_p) to the front; returns
 * their count (>= 1: the max always passes, as in llama.cpp). */
static size_t keep_min_p(cand *a, size_t n, float max, float min_p)
{
    if (!(min_p > 0)) return n;
    float floor_l = max + logf(min_p);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].v >= floor_l) swap_cand(&a[i], &a[kept++]);
    if (kept == 0) { /* min_p > 1: only the best stays */
        for (size_t i = 1; i < n; i++)
            if (better(&a[i], &a[0])) swap_cand(&a[i], &a[0]);
        kept = 1;
    }
    return kept;
}

/* The shortest best-first prefix of a[0..n) whose probability reaches
 * top_p, with z the softmax normaliser of the whole top_k set. Sorts only
 * that prefix, selecting it in doubling steps. */
static size_t keep_top_p(cand *a, size_t n, float max, double z, float top_p)
{
    size_t sorted = 0, m = 64;
    double cum = 0;
    for (;;) {
        if (m > n) m = n;
        select_best(a + sorted, n - sorted, m - sorted);
        qsort(a + sorted, m - sorted, sizeof *a, cmp_best_first);
        for (; sorted < m; sorted++) {
            cum += (double)expf(a[sorted].v - max) / z;
            if (cum >= top_p) return sorted + 1;
        }
        if (m == n) return n;
        m *= 2;
    }
}

static double softmax_norm(const cand *a, size_t n, float max)
{
    double z = 0;
    for (size_t i = 0; i < n; i++) z += (double)expf(a[i].v - max);
    return z;
}

/* Runs the chain on logits; leaves the kept candidates in cand[0..n) with
 * v their probability, and returns n >= 1. */
static size_t run_chain(tern_sampler *s, const float *logits)
{
    const float *l = penalized(s, logits);
    if (s->p.temp <= 0) {
        s->cand[0] = (cand){1.0f, argmax(l, s->n_vocab)};
        return 1;
    }
    size_t n = keep_top_k(s, l);
    cand best = s->cand[best_of(s->cand, n)];
    float max = best.v;
    if (max == -INFINITY) { /* nothing but NaN and -inf: the greedy token */
        s->cand[0] = (cand){1.0f, best.id};
        return 1;
    }
    double z = s->p.top_p < 1 ? softmax_norm(s->cand, n, max) : 1.0;
    n = keep_min_p(s->cand, n, max, s->p.min_p);
    if (s->p.top_p < 1) n = keep_top_p(s->cand, n, max, z, s->p.top_p);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        s->cand[i].v = expf((s->cand[i].v - max) / s->p.temp);
        sum += s->cand[i].v;
    }
    for (size_t i = 0; i < n; i++) s->cand[i].v = (float)(s->cand[i].v / sum);
    return n;
}

/* ---- drawing ---- */

static double weight(float w)
{
    return w > 0 && w <= FLT_MAX ? (double)w : 0.0; /* NaN, negatives, inf: 0 */
}

/* The one draw rule, for a dense vector (c == NULL) or for candidates
 * sorted by id: sums in double in index order. Zero weights change no sum,
 * so both forms of one distribution pick the same index for the same u. */
static int32_t draw_rule(double u, const float *w, const cand *c, size_t n)
{
    double total = 0;
    for (size_t i = 0; i < n; i++) total += weight(c ? c[i].v : w[i]);
    if (!(total > 0)) return -1;
    double target = u * total, cum = 0;
    int32_t last = -1;
    for (size_t i = 0; i < n; i++) {
        double x = weight(c ? c[i].v : w[i]);
        if (x == 0) continue;
        cum += x;
        last = c ? c[i].id : (int32_t)i;
        if (cum > target) return last;
    }
    return last; /* rounding left u * total past the sum */
}

int32_t tern_sampler_draw(tern_sampler *s, const float *probs, int32_t n)
{
    if (!s) return -1;
    double u = tern_sampler_uniform(s);
    if (!probs || n <= 0) return -1;
    return draw_rule(u, probs, NULL, (size_t)n);
}

tern_status tern_sampler_probs(tern_sampler *s, const float *logits, float *probs)
{
    if (!s || !logits || !probs)
        return TERN_EINVAL;
    size_t n = run_chain(s, logits);
    memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
    for (size_t i = 0; i < n; i++) probs[s->cand[i].id] = s->cand[i].v;
    return TERN_OK;
}

int32_t tern_sampler_sample(tern_sampler *s, const float *logits)
{
    if (!s || !logits) return -1;
    size_t n = run_chain(s, logits);
    double u = tern_sampler_uniform(s);
    if (n <= SPARSE_MAX) {
        qsort(s->cand, n, sizeof *s->cand, cmp_id);
        return draw_rule(u, NULL, s->cand, n);
    }
    memset(s->work, 0, (size_t)s->n_vocab * sizeof *s->work);
    for (size_t i = 0; i < n; i++) s->work[s->cand[i].id] = s->cand[i].v;
    return draw_rule(u, s->work, NULL, (size_t)s->n_vocab);
}
