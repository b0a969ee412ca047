/* cmd_synth.c - `tern synth`: writes a random-weight model in the exact
 * layout llama.cpp / bitnet.cpp write (architecture string, keys, tensor
 * names and order as in ../shared/ref/models), for speed tests and tests
 * that need shapes no shipped file has.
 *
 * Weights are drawn the way the shared references were: ternary linears are
 * s * t with t uniform over {-1, 0, +1} and one scale s per tensor from
 * {1/64 .. 1/32} (exact in f16), so every ternary type stores them
 * losslessly; embedding and float linears are blocks of 32 values
 * 2^-k * q with one |q| = 127 per block (exact in f16 and in q8_0); norms
 * are f32 near 1. Each tensor has its own PRNG stream (seed, index), and is
 * generated inside the writer's fill callback, so a 1.2 GB file needs one
 * tensor of memory. */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "tern/gguf.h"
#include "tern/model.h"
#include "tern/backend.h"
#include "tern/threadpool.h"

typedef struct synth_shape {
    const char *name;
    int llama;                /* arch "llama" (else "bitnet-b1.58") */
    int64_t embd, layers, heads, kv, ff, vocab, ctx;
    double rope_base;
    int untied;               /* writes output.weight */
} synth_shape;

static const synth_shape presets[] = {
    {"bitnet-2b4t", 0, 2560, 30, 20, 5, 6912, 128256, 4096, 500000.0, 0},
    {"bitnet-700m", 0, 1536, 24, 24, 24, 4096, 32002, 2048, 10000.0, 0},
    {"bitnet-3b", 0, 3200, 26, 32, 32, 8640, 32002, 2048, 10000.0, 0},
    {"llama-1b", 1, 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0, 0},
    {"llama-8b", 1, 4096, 32, 32, 8, 14336, 128256, 8192, 500000.0, 1},
    {"tiny", 0, 256, 4, 8, 2, 768, 128256, 4096, 500000.0, 0},
};

#define N_PRESETS (sizeof presets / sizeof presets[0])
#define SYNTH_MAX_BYTES 32e9 /* a 16 B f16 model, a 100 B ternary one */

/* ---- PRNG: xoshiro256**, seeded per tensor through splitmix64 ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform integer in [0, n) from 32 random bits (bias < n / 2^32). */
static inline uint32_t below(uint32_t x, uint32_t n)
{
    return (uint32_t)(((uint64_t)x * n) >> 32);
}

/* ---- tensor contents ---- */

enum { FILL_TERNARY, FILL_BLOCKS, FILL_NORM };

typedef struct synth_tensor {
    int kind, type;
    int64_t n;     /* elements */
    uint64_t seed, stream;
} synth_tensor;

static tern_status no_mem(tern_error *err, int64_t n)
{
    return tern_error_set(err, TERN_ENOMEM, "no memory for %lld values", (long long)n);
}

/* 32-value blocks 2^-k * q, k in {9, 10, 11}, q in [-127, 127], one |q| = 127. */
static void gen_blocks(rng *r, float *v, int64_t n)
{
    for (int64_t b = 0; b < n; b += 32) {
        uint64_t h = rng_next(r);
        float scale = ldexpf(1.0f, -9 - (int)below((uint32_t)h, 3));
        int peak = (int)((h >> 32) & 31), sign = (h >> 40) & 1 ? -1 : 1;
        for (int i = 0; i < 32; i += 2) {
            uint64_t x = rng_next(r);
            v[b + i] = scale * (float)((int)below((uint32_t)x, 255) - 127);
            v[b + i + 1] = scale * (float)((int)below((uint32_t)(x >> 32), 255) - 127);
        }
        v[b + peak] = scale * (float)(127 * sign);
    }
}

/* Tensors are filled in chunks on all cores (a 100B file is 25 GB of
 * random codes): chunk c draws from its own stream (the tensor's stream,
 * then c), so the bytes depend on the seed alone, not on the thread count. */
enum { CHUNK = 1 << 20 }; /* values per chunk: whole blocks of every type (256) */

/* I2_S codes of whole 128-value blocks (the tensor's scale trailer is
 * written once, after the chunks). */
static void pack_i2s_blocks(const int8_t *c, int64_t n, uint8_t *out)
{
    for (int64_t b = 0; b < n; b += TERN_I2S_BLOCK, c += TERN_I2S_BLOCK, out += 32)
        for (int j = 0; j < 32; j++)
            out[j] = (uint8_t)((c[j] + 1) << 6 | (c[32 + j] + 1) << 4 | (c[64 + j] + 1) << 2 | (c[96 + j] + 1));
}

typedef struct fill_job {
    const synth_tensor *t;
    uint8_t *out;
    float scale; /* FILL_TERNARY */
    atomic_llong next;
    atomic_int failed;
} fill_job;

static void fill_chunks(void *arg, int ith, int nth)
{
    (void)ith, (void)nth;
    fill_job *j = arg;
    const synth_tensor *t = j->t;
    int ternary = t->kind == FILL_TERNARY;
    void *tmp = malloc(ternary ? (size_t)CHUNK : (size_t)CHUNK * sizeof(float));
    if (!tmp) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (long long c; (c = atomic_fetch_add(&j->next, 1)) * CHUNK < t->n;) {
        int64_t done = c * CHUNK, m = t->n - done < CHUNK ? t->n - done : CHUNK;
        rng r;
        rng_seed(&r, t->seed, t->stream * 0x100000001b3ull + (uint64_t)c);
        if (ternary) {
            int8_t *codes = tmp;
            for (int64_t i = 0; i < m; i += 2) { /* m is a multiple of 128 */
                uint64_t x = rng_next(&r);
                codes[i] = (int8_t)((int)below((uint32_t)x, 3) - 1);
                codes[i + 1] = (int8_t)((int)below((uint32_t)(x >> 32), 3) - 1);
            }
            if (t->type == TERN_TYPE_I2_S) pack_i2s_blocks(codes, m, j->out + done / 4);
            else if (t->type == TERN_TYPE_TQ2_0) tern_pack_tq2_0(codes, m, j->scale, j->out + done / TERN_QK_K * 66);
            else tern_pack_tq1_0(codes, m, j->scale, j->out + done / TERN_QK_K * 54);
            continue;
        }
        float *v = tmp;
        gen_blocks(&r, v, m);
        if (t->type == TERN_TYPE_F16) tern_quantize_f16(v, m, j->out + 2 * done);
        else if (t->type == TERN_TYPE_Q8_0) tern_quantize_q8_0(v, m, j->out + done / 32 * 34);
        else if (t->type == TERN_TYPE_BF16) tern_quantize_bf16(v, m, j->out + 2 * done);
        else memcpy(j->out + 4 * done, v, (size_t)m * 4);
    }
    free(tmp);
}

static tern_threadpool *fill_pool; /* all physical cores, for the command's life */

static tern_status fill_parallel(const synth_tensor *t, void *buf, tern_error *err)
{
    static const float scales[5] = {0.015625f, 0.01953125f, 0.0234375f, 0.02734375f, 0.03125f};
    fill_job j = {.t = t, .out = buf};
    if (t->kind == FILL_TERNARY) {
        rng r;
        rng_seed(&r, t->seed, t->stream);
        j.scale = scales[below((uint32_t)rng_next(&r), 5)];
    }
    tern_threadpool_run(fill_pool, fill_chunks, &j);
    if (atomic_load(&j.failed)) return no_mem(err, CHUNK);
    if (t->kind == FILL_TERNARY && t->type == TERN_TYPE_I2_S) {
        memset((uint8_t *)buf + t->n / 4, 0, TERN_I2S_TRAILER);
        memcpy((uint8_t *)buf + t->n / 4, &j.scale, 4);
    }
    return TERN_OK;
}

/* Norm weights: 1 + 0.1 * N(0, 1), the normal approximated by the sum of 12 uniforms. */
static tern_status fill_norm(const synth_tensor *t, rng *r, void *buf)
{
    float *w = buf;
    for (int64_t i = 0; i < t->n; i++) {
        double s = 0;
        for (int k = 0; k < 12; k++) s += (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
        w[i] = (float)(1.0 + 0.1 * (s - 6.0));
    }
    return TERN_OK;
}

static tern_status fill(void *user, void *buf, uint64_t size, tern_error *err)
{
    const synth_tensor *t = user;
    rng r;
    rng_seed(&r, t->seed, t->stream);
    (void)size;
    return t->kind == FILL_NORM ? fill_norm(t, &r, buf) : fill_parallel(t, buf, err);
}

/* ---- the built-in byte-level vocabulary ---- */

/* GPT-2's byte-to-unicode table: printable bytes stand for themselves, the
 * rest map to U+0100 onwards in byte order. Writes UTF-8, returns length. */
static int byte_token(int b, char *out)
{
    int cp = b, n = 0;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        cp = 256;
        for (int i = 0; i < b; i++)
            if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255))) cp++;
    }
    if (cp < 0x80) {
        out[n++] = (char)cp;
    } else {
        out[n++] = (char)(0xc0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3f));
    }
    return n;
}

static int builtin_vocab(tern_gguf_writer *w, int64_t n_vocab)
{
    enum { BOS = 256, EOS = 257, EOT = 258 };
    char **toks = calloc((size_t)n_vocab, sizeof *toks);
    int32_t *types = malloc((size_t)n_vocab * sizeof *types);
    char *pool = malloc((size_t)n_vocab * 32);
    int rc = 1;
    if (!toks || !types || !pool) goto done;
    char *p = pool;
    for (int64_t i = 0; i < n_vocab; i++) {
        toks[i] = p;
        if (i < 256) {
            p += byte_token((int)i, p);
            *p++ = 0;
        } else {
            const char *special = i == BOS ? "<|begin_of_text|>" : i == EOS ? "<|end_of_text|>"
                                : i == EOT ? "<|eot_id|>" : NULL;
            p += special ? sprintf(p, "%s", special) : sprintf(p, "<|reserved_%lld|>", (long long)i);
            p++;
        }
        types[i] = i < 256 ? 1 : 3; /* normal, control */
    }
    tern_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    tern_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    tern_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL,
                          (uint64_t)n_vocab);
    tern_gguf_set_arr(w, "tokenizer.ggml.token_type", TERN_GGUF_I32, types, (uint64_t)n_vocab);
    tern_gguf_set_arr_str(w, "tokenizer.ggml.merges", NULL, NULL, 0);
    tern_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", BOS);
    tern_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", EOS);
    tern_gguf_set_u32(w, "tokenizer.ggml.eot_token_id", EOT);
    tern_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    tern_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
    rc = 0;
done:
    free(toks);
    free(types);
    free(pool);
    return rc ? cli_fail("synth", "no memory for a %lld-token vocabulary", (long long)n_vocab) : 0;
}

/* ---- options ---- */

typedef struct synth_opts {
    synth_shape sh;
    int have_shape;
    const char *out, *vocab_file, *arch;
    int type, embd_type;
    long long seed, vocab_size;
} synth_opts;

static int parse_dims(const char *spec, synth_shape *sh)
{
    char buf[512];
    if (strlen(spec) >= sizeof buf) return cli_fail("synth", "--dims: longer than %zu characters", sizeof buf - 1);
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return cli_fail("synth", "--dims: '%s' is not key=value", tok);
        *eq = 0;
        static const char *const keys[] = {"embd", "layers", "heads", "kv", "ff", "vocab", "ctx"};
        int64_t *dst[] = {&sh->embd, &sh->layers, &sh->heads, &sh->kv, &sh->ff, &sh->vocab, &sh->ctx};
        long long v;
        if (strcmp(tok, "rope") == 0) {
            double d;
            if (cli_float("synth", "--dims rope", eq + 1, 1, 1e12, &d)) return 1;
            sh->rope_base = d;
            continue;
        }
        size_t k = 0;
        while (k < 7 && strcmp(tok, keys[k]) != 0) k++;
        if (k == 7)
            return cli_fail("synth", "--dims: unknown key '%s' (embd, layers, heads, kv, ff, vocab, "
                            "ctx, rope)", tok);
        char name[32];
        snprintf(name, sizeof name, "--dims %s", tok);
        if (cli_int("synth", name, eq + 1, 1, 1 << 24, &v)) return 1;
        *dst[k] = v;
    }
    return 0;
}

static void usage(void)
{
    printf("usage: tern synth (--preset NAME | --dims SPEC) -o FILE [options]\n"
           "  --preset NAME     ");
    for (size_t i = 0; i < N_PRESETS; i++) printf("%s%s", i ? ", " : "", presets[i].name);
    printf("\n  --dims SPEC       embd=N,layers=N,heads=N,kv=N,ff=N,vocab=N[,ctx=N,rope=F]\n"
           "                    (after --preset: overrides its fields)\n"
           "  --arch NAME       bitnet-b1.58 (default for bitnet shapes), bitnet, llama\n"
           "  --type T          linears: i2_s (bitnet default), tq2_0, tq1_0; f16 (llama default), q8_0\n"
           "  --embd-type T     token_embd: f16 (default), q8_0, f32\n"
           "  --vocab FILE      copy tokenizer.* keys from a GGUF (n_vocab = its token count)\n"
           "  --vocab-size N    n_vocab for the built-in byte-level vocabulary\n"
           "  --seed N          PRNG seed (default 1234)\n");
}

static int parse_type(const char *opt, const char *v, const int *allowed, int n, int *out)
{
    int t = v ? tern_type_from_name(v) : -1;
    for (int i = 0; i < n; i++)
        if (t == allowed[i]) {
            *out = t;
            return 0;
        }
    return cli_fail("synth", "%s: '%s' is not one of the allowed types", opt, v ? v : "");
}

static int parse_args(int argc, char **argv, synth_opts *o)
{
    static const int lin_types[] = {TERN_TYPE_I2_S, TERN_TYPE_TQ2_0, TERN_TYPE_TQ1_0, TERN_TYPE_F16,
                                    TERN_TYPE_Q8_0, TERN_TYPE_BF16, TERN_TYPE_F32};
    static const int embd_types[] = {TERN_TYPE_F16, TERN_TYPE_Q8_0, TERN_TYPE_F32, TERN_TYPE_BF16};
    const char *dims = NULL;
    memset(o, 0, sizeof *o);
    o->type = o->embd_type = -1;
    o->seed = 1234;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return -1;
        }
        if (!v) return cli_fail("synth", "%s needs a value (or unknown option)", a);
        i++;
        if (strcmp(a, "--preset") == 0) {
            size_t k = 0;
            while (k < N_PRESETS && strcmp(v, presets[k].name) != 0) k++;
            if (k == N_PRESETS) return cli_fail("synth", "unknown preset '%s' (see --help)", v);
            o->sh = presets[k];
            o->have_shape = 1;
        } else if (strcmp(a, "--dims") == 0) {
            dims = v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            o->out = v;
        } else if (strcmp(a, "--type") == 0) {
            if (parse_type(a, v, lin_types, 7, &o->type)) return 1;
        } else if (strcmp(a, "--embd-type") == 0) {
            if (parse_type(a, v, embd_types, 4, &o->embd_type)) return 1;
        } else if (strcmp(a, "--vocab") == 0) {
            o->vocab_file = v;
        } else if (strcmp(a, "--arch") == 0) {
            o->arch = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (cli_int("synth", a, v, 0, INT64_MAX, &o->seed)) return 1;
        } else if (strcmp(a, "--vocab-size") == 0) {
            if (cli_int("synth", a, v, 259, 1 << 24, &o->vocab_size)) return 1;
        } else {
            return cli_fail("synth", "unknown option '%s'", a);
        }
    }
    if (dims) {
        if (!o->have_shape) o->sh = (synth_shape){"custom", 0, 0, 0, 0, 0, 0, 0, 4096, 10000.0, 0};
        if (parse_dims(dims, &o->sh)) return 1;
        if (!o->have_shape && !o->sh.kv) o->sh.kv = o->sh.heads;
        o->have_shape = 1;
    }
    if (!o->have_shape) return cli_fail("synth", "give --preset NAME or --dims SPEC (see --help)");
    if (!o->out) return cli_fail("synth", "-o FILE is required");
    if (o->arch) {
        if (strcmp(o->arch, "llama") == 0) o->sh.llama = 1;
        else if (strcmp(o->arch, "bitnet-b1.58") == 0 || strcmp(o->arch, "bitnet") == 0) o->sh.llama = 0;
        else return cli_fail("synth", "--arch: '%s' is not bitnet-b1.58, bitnet or llama", o->arch);
    }
    if (o->vocab_size) o->sh.vocab = o->vocab_size;
    return 0;
}

/* ---- the model ---- */

static int check_shape(const synth_opts *o)
{
    const synth_shape *s = &o->sh;
    if (!s->embd || !s->layers || !s->heads || !s->ff || !s->vocab)
        return cli_fail("synth", "--dims needs embd, layers, heads, ff and vocab");
    if (s->embd % s->heads || s->heads % s->kv || (s->embd / s->heads) % 2)
        return cli_fail("synth", "embd %lld / heads %lld / kv %lld: heads must divide embd into an "
                        "even head size and kv must divide heads", (long long)s->embd,
                        (long long)s->heads, (long long)s->kv);
    /* a bound on what one command may write (32 GB): the largest preset
     * is 8 G parameters; a 100 B ternary model is about 25 GB */
    int ternary = tern_type_get(o->type)->is_ternary;
    double E = (double)s->embd, KV = (double)s->kv * (E / (double)s->heads), F = (double)s->ff;
    double embd = (double)s->vocab * E * (s->untied ? 2 : 1), linear = (double)s->layers * (2 * E * E + 2 * E * KV + 3 * E * F);
    double bytes = embd * 4 + linear * (ternary ? 0.25 : 2);
    if (bytes > SYNTH_MAX_BYTES)
        return cli_fail("synth", "these dimensions make %.3g parameters, a file of about %.0f GB, more than the "
                        "synth limit of %.0f GB", embd + linear, bytes / 1e9, SYNTH_MAX_BYTES / 1e9);
    if (!s->llama && !ternary)
        return cli_fail("synth", "bitnet models need ternary linears (--type i2_s, tq2_0 or tq1_0); "
                        "%s linears are for llama presets", tern_type_name(o->type));
    if (s->llama && ternary)
        return cli_fail("synth", "llama models take float or q8_0 linears, not %s",
                        tern_type_name(o->type));
    return 0;
}

static int file_type_of(int type)
{
    switch (type) {
    case TERN_TYPE_I2_S: return 40; /* bitnet.cpp MOSTLY_I2_S */
    case TERN_TYPE_TQ2_0: return 37;
    case TERN_TYPE_TQ1_0: return 36;
    case TERN_TYPE_Q8_0: return 7;
    case TERN_TYPE_BF16: return 32;
    case TERN_TYPE_F32: return 0;
    default: return 1;
    }
}

typedef struct synth_model {
    tern_gguf_writer *w;
    synth_tensor *t; /* (n) */
    int n, cap;
    uint64_t seed;
    tern_error err;
} synth_model;

static int add(synth_model *m, const char *name, int kind, int type, int64_t ne0, int64_t ne1)
{
    if (m->n == m->cap) {
        /* fill callbacks keep pointers into this array: it is sized once, up front */
        return cli_fail("synth", "internal: tensor table full");
    }
    synth_tensor *t = &m->t[m->n];
    *t = (synth_tensor){kind, type, ne0 * (ne1 ? ne1 : 1), m->seed, (uint64_t)m->n + 1};
    int64_t ne[2] = {ne0, ne1};
    if (tern_gguf_add_tensor(m->w, name, type, ne1 ? 2 : 1, ne, fill, t, &m->err))
        return cli_fail("synth", "%s%s", m->err.msg,
                        tern_type_get(type)->is_ternary && type != TERN_TYPE_I2_S
                            ? " (tq types need rows that are multiples of 256; try --type i2_s)"
                            : "");
    m->n++;
    return 0;
}

static int add_tensors(synth_model *m, const synth_opts *o)
{
    const synth_shape *s = &o->sh;
    int64_t E = s->embd, F = s->ff, KV = s->kv * (E / s->heads), L = o->type;
    if (add(m, "token_embd.weight", FILL_BLOCKS, o->embd_type, E, s->vocab) ||
        add(m, "output_norm.weight", FILL_NORM, TERN_TYPE_F32, E, 0))
        return 1;
    if (s->untied && add(m, "output.weight", FILL_BLOCKS, o->embd_type, E, s->vocab)) return 1;
    int lin = s->llama ? FILL_BLOCKS : FILL_TERNARY;
    for (int64_t l = 0; l < s->layers; l++) {
        char nm[11][64];
        static const char *const parts[11] = {"attn_norm", "attn_q", "attn_k", "attn_v",
                                              "attn_sub_norm", "attn_output", "ffn_norm",
                                              "ffn_gate", "ffn_up", "ffn_sub_norm", "ffn_down"};
        for (int i = 0; i < 11; i++)
            snprintf(nm[i], sizeof nm[i], "blk.%lld.%s.weight", (long long)l, parts[i]);
        if (add(m, nm[0], FILL_NORM, TERN_TYPE_F32, E, 0) || add(m, nm[1], lin, (int)L, E, E) ||
            add(m, nm[2], lin, (int)L, E, KV) || add(m, nm[3], lin, (int)L, E, KV))
            return 1;
        if (!s->llama && add(m, nm[4], FILL_NORM, TERN_TYPE_F32, E, 0)) return 1;
        if (add(m, nm[5], lin, (int)L, E, E) || add(m, nm[6], FILL_NORM, TERN_TYPE_F32, E, 0) ||
            add(m, nm[7], lin, (int)L, E, F) || add(m, nm[8], lin, (int)L, E, F))
            return 1;
        if (!s->llama && add(m, nm[9], FILL_NORM, TERN_TYPE_F32, F, 0)) return 1;
        if (add(m, nm[10], lin, (int)L, F, E)) return 1;
    }
    return 0;
}

static int add_metadata(synth_model *m, const synth_opts *o, const tern_gguf *vocab)
{
    const synth_shape *s = &o->sh;
    const char *arch = s->llama ? "llama" : o->arch ? o->arch : "bitnet-b1.58";
    char key[128], name[96];
    tern_gguf_writer *w = m->w;
    snprintf(name, sizeof name, "tern-synth-%s", s->name);
    tern_gguf_set_str(w, "general.architecture", arch);
    tern_gguf_set_str(w, "general.name", name);
#define ARCH_U32(k, v) (snprintf(key, sizeof key, "%s." k, arch), tern_gguf_set_u32(w, key, (uint32_t)(v)))
#define ARCH_F32(k, v) (snprintf(key, sizeof key, "%s." k, arch), tern_gguf_set_f32(w, key, (float)(v)))
    ARCH_U32("context_length", s->ctx);
    ARCH_U32("embedding_length", s->embd);
    ARCH_U32("block_count", s->layers);
    ARCH_U32("feed_forward_length", s->ff);
    ARCH_U32("attention.head_count", s->heads);
    ARCH_U32("attention.head_count_kv", s->kv);
    ARCH_F32("rope.freq_base", s->rope_base);
    ARCH_F32("attention.layer_norm_rms_epsilon", 1e-5);
    ARCH_U32("rope.dimension_count", s->embd / s->heads);
    ARCH_U32("vocab_size", s->vocab);
#undef ARCH_U32
#undef ARCH_F32
    tern_gguf_set_u32(w, "general.file_type", (uint32_t)file_type_of(o->type));
    if (vocab) {
        if (tern_gguf_copy_kv(w, vocab, "tokenizer.", &m->err))
            return cli_fail("synth", "%s", m->err.msg);
    } else if (builtin_vocab(w, s->vocab)) {
        return 1;
    }
    if (o->type != TERN_TYPE_F16 && o->type != TERN_TYPE_F32 && o->type != TERN_TYPE_BF16)
        tern_gguf_set_u32(w, "general.quantization_version", 2);
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    synth_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (o.type < 0) o.type = o.sh.llama ? TERN_TYPE_F16 : TERN_TYPE_I2_S;
    if (o.embd_type < 0) o.embd_type = TERN_TYPE_F16;
    tern_gguf *vocab = NULL;
    tern_error err;
    if (o.vocab_file) {
        if (tern_gguf_open(o.vocab_file, &vocab, &err)) return cli_fail("synth", "%s", err.msg);
        uint64_t n_tok;
        if (tern_gguf_get_array(vocab, "tokenizer.ggml.tokens", NULL, &n_tok, &err)) {
            tern_gguf_close(vocab);
            return cli_fail("synth", "--vocab: %s", err.msg);
        }
        if (o.vocab_size && (uint64_t)o.vocab_size != n_tok) {
            tern_gguf_close(vocab);
            return cli_fail("synth", "--vocab-size %lld differs from the %llu tokens of %s",
                            o.vocab_size, (unsigned long long)n_tok, o.vocab_file);
        }
        o.sh.vocab = (int64_t)n_tok;
    }
    if (check_shape(&o)) {
        tern_gguf_close(vocab);
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    synth_model m = {.seed = (uint64_t)o.seed};
    m.cap = 3 + 11 * (int)o.sh.layers;
    m.t = calloc((size_t)m.cap, sizeof *m.t);
    rc = 1;
    if (!m.t || tern_gguf_writer_create(&m.w, &err)) {
        cli_fail("synth", "no memory");
        goto done;
    }
    if (tern_threadpool_acquire(tern_cpu_physical_cores(), &fill_pool, &err)) {
        cli_fail("synth", "%s", err.msg);
        goto done;
    }
    if (add_metadata(&m, &o, vocab) || add_tensors(&m, &o)) goto done;
    if (tern_gguf_write(m.w, o.out, &err)) {
        cli_fail("synth", "%s", err.msg);
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("wrote %s: %s %s, %d tensors, linears %s, token_embd %s, %.1f s\n", o.out,
           o.sh.llama ? "llama" : o.arch ? o.arch : "bitnet-b1.58", o.sh.name, m.n,
           tern_type_name(o.type), tern_type_name(o.embd_type),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    rc = 0;
done:
    tern_threadpool_release(fill_pool, tern_cpu_physical_cores());
    fill_pool = NULL;
    tern_gguf_writer_free(m.w);
    tern_gguf_close(vocab);
    free(m.t);
    return rc;
}
