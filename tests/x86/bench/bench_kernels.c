/* bench_kernels.c - times the x86 backend's kernels on the BitNet b1.58 2B4T
 * shapes, by hand (timings never gate tests):
 *
 *   build/tests/bench_kernels [-k mad,bitserial,lut,mad-avx2] [-t 1,2] [-s seconds]
 *                             [-p gemm_tokens] [-m MB of GEMV weight copies, 0 = hot]
 *
 * For each kernel family and ternary shape [K, N]: GEMV (n_tok = 1) in
 * GB/s of packed weights, over enough copies of the matrix to defeat the
 * caches, and GEMM (n_tok = 128) in GOPS (2 K N n_tok / s, weights hot).
 * Then the whole 30-layer model from those: ternary decode ms/token and
 * prefill tokens/s. Also the F16 and q8 output head GEMV (2560 x 128256)
 * and a plain read of a 1 GiB buffer, for the memory bound. Threads are a
 * persistent pool with a spinning barrier, split as the executor splits. */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tern/tern.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- a tiny persistent pool ---- */

typedef void (*job_fn)(void *arg, int ith, int nth);
typedef struct pool {
    int nth;
    pthread_t tid[16];
    atomic_int gen, done, quit;
    job_fn fn;
    void *arg;
} pool;
typedef struct worker_arg { pool *p; int ith; } worker_arg;
static worker_arg wargs[16];

static void *worker(void *a)
{
    worker_arg *w = a;
    pool *p = w->p;
    int g = 0;
    for (;;) {
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == g) _mm_pause();
        g = atomic_load(&p->gen);
        if (atomic_load(&p->quit)) return NULL;
        p->fn(p->arg, w->ith, p->nth);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void pool_start(pool *p, int nth)
{
    memset(p, 0, sizeof *p);
    p->nth = nth;
    for (int i = 1; i < nth; i++) {
        wargs[i] = (worker_arg){p, i};
        pthread_create(&p->tid[i], NULL, worker, &wargs[i]);
    }
}

static void pool_run(pool *p, job_fn fn, void *arg)
{
    p->fn = fn, p->arg = arg;
    atomic_store(&p->done, 0);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    fn(arg, 0, p->nth);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->nth - 1) _mm_pause();
}

static void pool_stop(pool *p)
{
    atomic_store(&p->quit, 1);
    atomic_fetch_add(&p->gen, 1);
    for (int i = 1; i < p->nth; i++) pthread_join(p->tid[i], NULL);
}

/* ---- one op node run by the pool ---- */

typedef struct op_job {
    tern_backend *be;
    tern_op_fn fn;
    tern_node *node;
    void *scratch[16];
} op_job;

static void op_run(void *arg, int ith, int nth)
{
    op_job *j = arg;
    j->fn(j->be->ctx, j->node, ith, nth, j->scratch[ith]);
}

static void job_init(op_job *j, tern_backend *be, tern_node *node, int nth)
{
    memset(j, 0, sizeof *j);
    j->be = be, j->node = node, j->fn = tern_backend_op(be, node->op);
    size_t ss = be->api->scratch_size ? be->api->scratch_size(be->ctx, node, nth) : 0;
    for (int i = 0; i < nth; i++) j->scratch[i] = ss ? aligned_alloc(64, (ss + 63) / 64 * 64) : NULL;
}

static void job_free(op_job *j)
{
    for (int i = 0; i < 16; i++) free(j->scratch[i]);
}

static unsigned long long rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) % 2000001) / 1000000.0f - 1.0f;
}

/* Quantized activations [K, T] through the backend's own QUANTIZE_ACT. */
static tern_tensor make_act(tern_backend *be, int64_t K, int64_t T)
{
    int64_t ne[2] = {K, T};
    tern_tensor x, q;
    tern_tensor_init(&x, TERN_TYPE_F32, 2, ne);
    tern_tensor_init(&q, TERN_TYPE_Q8_TOK, 2, ne);
    x.data = aligned_alloc(64, tern_tensor_nbytes(&x));
    q.data = aligned_alloc(64, tern_tensor_nbytes(&q));
    for (int64_t i = 0; i < K * T; i++) ((float *)x.data)[i] = frand();
    tern_node nd = {.op = TERN_OP_QUANTIZE_ACT, .dst = &q, .src = {&x}};
    tern_backend_op(be, nd.op)(be->ctx, &nd, 0, 1, NULL);
    free(x.data);
    return q;
}

static tern_tensor make_f32(int64_t K, int64_t T)
{
    int64_t ne[2] = {K, T};
    tern_tensor x;
    tern_tensor_init(&x, TERN_TYPE_F32, 2, ne);
    x.data = aligned_alloc(64, tern_tensor_nbytes(&x) + 64);
    for (int64_t i = 0; i < K * T; i++) ((float *)x.data)[i] = frand();
    return x;
}

/* Times node over the weight copies w[0..nc) until min_s passed; seconds per call. */
static double time_node(pool *p, tern_backend *be, tern_node *node, tern_tensor *w, int nc, double min_s)
{
    op_job j;
    job_init(&j, be, node, p->nth);
    for (int c = 0; c < nc; c++) { /* warm-up: one pass */
        node->src[1] = &w[c];
        pool_run(p, op_run, &j);
    }
    long it = 0;
    double t0 = now(), t;
    do {
        for (int c = 0; c < nc; c++, it++) {
            node->src[1] = &w[c];
            pool_run(p, op_run, &j);
        }
        t = now() - t0;
    } while (t < min_s);
    job_free(&j);
    return t / (double)it;
}

/* ---- memory read bound ---- */

typedef struct rd_job { const __m256i *buf; size_t n; long long sink[16]; } rd_job;
static void rd_run(void *arg, int ith, int nth)
{
    rd_job *r = arg;
    size_t lo = r->n * (size_t)ith / (size_t)nth, hi = r->n * (size_t)(ith + 1) / (size_t)nth;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = lo; i + 4 <= hi; i += 4) {
        a = _mm256_add_epi64(a, _mm256_load_si256(r->buf + i));
        b = _mm256_add_epi64(b, _mm256_load_si256(r->buf + i + 1));
        c = _mm256_add_epi64(c, _mm256_load_si256(r->buf + i + 2));
        d = _mm256_add_epi64(d, _mm256_load_si256(r->buf + i + 3));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    r->sink[ith] = _mm256_extract_epi64(a, 0);
}

static double read_bw(pool *p, size_t bytes)
{
    rd_job r = {aligned_alloc(64, bytes), bytes / 32, {0}};
    memset((void *)r.buf, 1, bytes);
    pool_run(p, rd_run, &r);
    double best = 0;
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        pool_run(p, rd_run, &r);
        double bw = (double)bytes / (now() - t0) / 1e9;
        best = bw > best ? bw : best;
    }
    free((void *)r.buf);
    return best;
}

/* ---- main ---- */

static const int64_t shapes[4][3] = { /* K, N, uses per layer */
    {2560, 2560, 2}, {2560, 640, 2}, {2560, 6912, 2}, {6912, 2560, 1}};

int main(int argc, char **argv)
{
    const char *kernels = "mad,bitserial,lut,mad-avx2", *threads = "1,2";
    double min_s = 0.3;
    int n_layer = 30, gemm_tok = 128, copies_mb = 512;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-k")) kernels = argv[i + 1];
        else if (!strcmp(argv[i], "-t")) threads = argv[i + 1];
        else if (!strcmp(argv[i], "-s")) min_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "-p")) gemm_tok = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-m")) copies_mb = atoi(argv[i + 1]); /* 0: weights stay hot */
    }
    tern_registry *reg;
    tern_error err;
    const tern_plugin_info *pi;
    if (tern_registry_scan(&reg, &err) != TERN_OK || tern_registry_select(reg, "x86", &pi, &err) != TERN_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 1;
    }
    printf("x86: %s\n", pi->probe.desc);
    int nths[4], n_nth = 0;
    for (const char *s = threads; *s && n_nth < 4; s = strchr(s, ',') ? strchr(s, ',') + 1 : s + strlen(s))
        nths[n_nth++] = atoi(s);
    pool pools[4];
    for (int i = 0; i < n_nth; i++) pool_start(&pools[i], nths[i]);
    for (int i = 0; i < n_nth; i++)
        printf("memory read bandwidth, %d thread(s): %.1f GB/s\n", nths[i], read_bw(&pools[i], (size_t)1 << 30));

    char kl[256];
    snprintf(kl, sizeof kl, "%s", kernels);
    for (char *save, *k = strtok_r(kl, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        tern_backend_options opt = tern_backend_default_options();
        opt.kernel = k;
        opt.n_threads = 2;
        tern_backend *be;
        if (tern_backend_create(pi, &opt, NULL, &be, &err) != TERN_OK) {
            fprintf(stderr, "%s\n", err.msg);
            continue;
        }
        printf("\nkernel %s\n%-12s %8s", k, "K x N", "MB");
        for (int i = 0; i < n_nth; i++) printf("  gemv t%d GB/s  (us)", nths[i]);
        for (int i = 0; i < n_nth; i++) printf("  gemm%d t%d GOPS", gemm_tok, nths[i]);
        printf("\n");
        double dec_s[4] = {0}, pre_s[4] = {0};
        for (int s = 0; s < 4; s++) {
            int64_t K = shapes[s][0], N = shapes[s][1], ne[2] = {K, N};
            tern_tensor src;
            tern_tensor_init(&src, TERN_TYPE_TQ2_0, 2, ne);
            size_t fb = (size_t)tern_tensor_file_bytes(TERN_TYPE_TQ2_0, src.ne);
            int8_t *codes = malloc((size_t)(K * N));
            for (int64_t i = 0; i < K * N; i++) codes[i] = (int8_t)((rng = rng * 6364136223846793005ull + 1) >> 62) % 3 - 1;
            src.data = malloc(fb);
            tern_pack_tq2_0(codes, K * N, 0.02f, src.data);
            free(codes);
            src.name = "bench";
            tern_tensor w0;
            char msg[256];
            if (be->api->repack(be->ctx, &src, TERN_REPACK_TERNARY, &w0, msg, sizeof msg) != TERN_OK) {
                fprintf(stderr, "repack: %s\n", msg);
                return 1;
            }
            free(src.data);
            size_t wbytes = w0.nb[1] * (size_t)((N + 15) / 16 * 16);
            int nc = copies_mb ? (int)(((size_t)copies_mb << 20) / wbytes) + 1 : 1; /* past every cache */
            tern_tensor *w = malloc((size_t)nc * sizeof *w);
            for (int c = 0; c < nc; c++) {
                w[c] = w0;
                w[c].data = aligned_alloc(64, (wbytes + 63) / 64 * 64);
                memcpy(w[c].data, w0.data, wbytes);
            }
            printf("%5lldx%-6lld %8.2f", (long long)K, (long long)N, wbytes / 1e6);
            tern_tensor x1 = make_act(be, K, 1), xg = make_act(be, K, gemm_tok);
            int64_t dn1[2] = {N, 1}, dng[2] = {N, gemm_tok};
            tern_tensor y1, yg;
            tern_tensor_init(&y1, TERN_TYPE_F32, 2, dn1);
            tern_tensor_init(&yg, TERN_TYPE_F32, 2, dng);
            y1.data = aligned_alloc(64, tern_tensor_nbytes(&y1) + 64);
            yg.data = aligned_alloc(64, tern_tensor_nbytes(&yg) + 64);
            tern_node n1 = {.op = TERN_OP_MATMUL_TERNARY, .dst = &y1, .src = {&x1, &w[0]}};
            tern_node ng = {.op = TERN_OP_MATMUL_TERNARY, .dst = &yg, .src = {&xg, &w[0]}};
            for (int i = 0; i < n_nth; i++) {
                double t = time_node(&pools[i], be, &n1, w, nc, min_s);
                printf("  %12.1f %6.1f", wbytes / t / 1e9, t * 1e6);
                if (i == n_nth - 1) dec_s[s] = t;
            }
            for (int i = 0; i < n_nth; i++) {
                double t = time_node(&pools[i], be, &ng, w, 1, min_s);
                printf("  %14.1f", 2.0 * K * N * gemm_tok / t / 1e9);
                if (i == n_nth - 1) pre_s[s] = t;
            }
            printf("\n");
            for (int c = 0; c < nc; c++) free(w[c].data);
            free(w);
            be->api->release(be->ctx, &w0);
            free(x1.data), free(xg.data), free(y1.data), free(yg.data);
        }
        double dec = 0, pre = 0, bytes = 0;
        for (int s = 0; s < 4; s++) {
            dec += n_layer * shapes[s][2] * dec_s[s];
            pre += n_layer * shapes[s][2] * pre_s[s];
            bytes += n_layer * shapes[s][2] * (double)shapes[s][0] * shapes[s][1] / 4;
        }
        printf("model (30 layers, %d threads): ternary decode %.2f ms/token (%.1f GB/s), "
               "ternary prefill %.1f tokens/s\n", nths[n_nth - 1], dec * 1e3, bytes / dec / 1e9,
               gemm_tok / pre);
        tern_backend_free(be);
    }

    /* the output head, F16 as stored and int8 rows */
    for (int q8 = 0; q8 < 2; q8++) {
        int64_t K = 2560, N = 128256, ne[2] = {K, N};
        tern_backend_options opt = tern_backend_default_options();
        opt.head = q8 ? "q8" : "f16";
        tern_backend *be;
        if (tern_backend_create(pi, &opt, NULL, &be, &err) != TERN_OK) return 1;
        tern_tensor src, w;
        tern_tensor_init(&src, TERN_TYPE_F16, 2, ne);
        src.data = aligned_alloc(64, tern_tensor_nbytes(&src));
        uint16_t *h = src.data;
        for (int64_t i = 0; i < K * N; i++) h[i] = tern_f32_to_f16(0.05f * frand());
        src.name = "output.weight";
        char msg[256];
        double t0 = now();
        if (be->api->repack(be->ctx, &src, TERN_REPACK_MATMUL, &w, msg, sizeof msg) != TERN_OK) return 1;
        double trep = now() - t0;
        size_t wbytes = (size_t)K * N * (q8 ? 1 : 2) + (q8 ? (size_t)N * 4 : 0);
        tern_tensor x = make_f32(K, 1), y = make_f32(N, 1);
        tern_node nd = {.op = TERN_OP_MATMUL, .dst = &y, .src = {&x, &w}};
        printf("\nhead %s (%lld x %lld, %.0f MB%s):", q8 ? "q8" : "f16", (long long)K, (long long)N,
               wbytes / 1e6, q8 ? "" : ", as stored");
        if (q8) printf(" repack %.2f s;", trep);
        for (int i = 0; i < n_nth; i++) {
            double t = time_node(&pools[i], be, &nd, &w, 1, min_s);
            printf("  t%d %.2f ms = %.1f GB/s", nths[i], t * 1e3, wbytes / t / 1e9);
        }
        printf("\n");
        be->api->release(be->ctx, &w);
        free(src.data), free(x.data), free(y.data);
        tern_backend_free(be);
    }
    for (int i = 0; i < n_nth; i++) pool_stop(&pools[i]);
    tern_registry_free(reg);
    return 0;
}
