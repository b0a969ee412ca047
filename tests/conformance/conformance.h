/* conformance.h - the conformance harness: a table of op test cases, run
 * through any backend and compared against the scalar backend and against
 * the op's definition recomputed here.
 *
 * A case is one node with its inputs in host memory, file layout (weights
 * as a GGUF would hold them), and the initial bytes of its dst. The harness
 * repacks the weight with each backend's own repack, moves data to the
 * backend (host pointers, or buffer_alloc/upload for device backends), runs
 * the op for ith = 0..nth-1 on real threads, and fetches dst back. New
 * backends need no new test code: every plugin the registry finds runnable
 * is run over every case. */
#ifndef TERN_CONFORMANCE_H
#define TERN_CONFORMANCE_H

#include <stddef.h>
#include <stdint.h>

#include "tern/tern.h"

/* How a backend's dst is compared with the scalar one. */
typedef enum conf_cmp {
    CONF_EXACT, /* every byte equal (integer paths, copies, decoders) */
    CONF_FLOAT, /* f32: |a - b| / max(1, |b|) <= tol */
    CONF_MAG    /* f32: |a - b| / mag <= tol, mag per output from the case */
} conf_cmp;

typedef struct conf_case {
    char label[128];
    int op;
    int32_t iparams[TERN_NODE_MAX_PARAMS];
    float fparams[TERN_NODE_MAX_PARAMS];
    int has_src[TERN_NODE_MAX_SRC];
    tern_tensor src[TERN_NODE_MAX_SRC]; /* host, file layout; data owned */
    size_t src_bytes[TERN_NODE_MAX_SRC];
    int weight;   /* src index the backend repacks, -1 = none */
    int purpose;  /* TERN_REPACK_* for it */
    tern_tensor dst;      /* shape and type; data unused */
    size_t dst_bytes;
    uint8_t *dst_init;    /* dst's bytes before the op (a cache, or 0xA5 filler) */
    uint8_t *expect;      /* the definition's result, filled by the oracle */
    double *mag;          /* CONF_MAG: per f32 output, sum |x||w| */
    float *wdec;          /* weights decoded independently, [N][K] */
    int8_t *codes;        /* ternary codes, [N][K] */
    int exact;            /* compare bytes whatever the op's cmp (Q8_0 matmul: an integer path) */
} conf_case;

typedef struct conf_list {
    conf_case *v;
    int n, cap;
} conf_list;

/* One row of the op table: how to make its cases, what the op means, and
 * how close results must be. */
typedef struct conf_op {
    int op;
    void (*gen)(conf_list *out, unsigned long long *rng);
    void (*oracle)(conf_case *c); /* fills c->expect (and c->mag) */
    conf_cmp cmp;
    double tol;        /* a backend against scalar */
    double oracle_tol; /* scalar against the definition (same cmp) */
} conf_op;

extern const conf_op conf_ops[];
extern const int conf_n_ops;

/* ---- building cases (cases.c) ---- */
conf_case *conf_new(conf_list *l, int op, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void *conf_src(conf_case *c, int i, int type, int n_dims, const int64_t *ne);
void conf_dst(conf_case *c, int type, int n_dims, const int64_t *ne);
void conf_list_free(conf_list *l);
/* A MATMUL case over a float (F32/F16/BF16) or Q8_0 weight [K, N] named
 * name (purpose MATMUL: set TERN_REPACK_HEAD for a head), T tokens of f32
 * activations in [-1, 1), weights 0.05 x that with every 31st 8x larger. */
conf_case *conf_float_matmul(conf_list *l, int type, int64_t K, int64_t N, int64_t T, const char *name,
                             unsigned long long *rng);
/* Test-side per-token quantizer, written apart from any backend: fills one
 * Q8_TOK row (header, values, zero padding). */
void conf_quantize_row(const float *x, int64_t K, uint8_t *row);

/* ---- running (harness.c) ---- */
typedef enum conf_run_status { CONF_RUN_OK, CONF_RUN_FALLBACK, CONF_RUN_ERROR } conf_run_status;

/* Runs case c on be with nth threads; on OK, out holds dst_bytes bytes.
 * FALLBACK: the backend lacks the op or refuses the node or the weight
 * type. ERROR: something that must not happen (why says what). */
conf_run_status conf_run(const tern_backend *be, const conf_case *c, int nth, uint8_t *out,
                         char *why, size_t whylen);

typedef struct conf_score {
    double max_err;  /* largest error seen (CONF_EXACT: largest f32 |diff|, or 0) */
    long bad;        /* outputs (bytes for CONF_EXACT) beyond tolerance */
    long first_bad;  /* index of the first, -1 none */
} conf_score;

/* Compares got with want under cmp/tol; mag only for CONF_MAG. */
conf_score conf_compare(const conf_case *c, conf_cmp cmp, double tol, const uint8_t *got,
                        const uint8_t *want);

#endif
