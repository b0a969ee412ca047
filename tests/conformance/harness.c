/* harness.c - runs one conformance case through one backend and compares
 * results. Host backends get the case's own host pointers; backends
 * without TERN_BACKEND_CAP_HOST_MEMORY get every input through
 * buffer_alloc/upload and give dst back through sync/download. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

typedef struct thread_job {
    tern_op_fn fn;
    void *ctx;
    const tern_node *node;
    int ith, nth;
    void *scratch;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    j->fn(j->ctx, j->node, j->ith, j->nth, j->scratch);
    return NULL;
}

/* Calls fn for ith = 0..nth-1 at once, on nth real threads (ith 0 on this
 * one), each with its own scratch; 0 on success. */
static int run_threads(const tern_backend *be, tern_op_fn fn, const tern_node *node, int nth)
{
    if (nth > 8) nth = 8;
    size_t ss = be->api->scratch_size ? be->api->scratch_size(be->ctx, node, nth) : 0;
    thread_job jobs[8];
    pthread_t tid[8];
    int started = 0, rc = 0;
    for (int i = 0; i < nth; i++) {
        jobs[i] = (thread_job){fn, be->ctx, node, i, nth, NULL};
        if (ss) {
            jobs[i].scratch = aligned_alloc(64, (ss + 63) / 64 * 64);
            if (!jobs[i].scratch) rc = -1;
        }
    }
    for (int i = 1; i < nth && !rc; i++, started++)
        if (pthread_create(&tid[i], NULL, thread_main, &jobs[i]) != 0) rc = -1;
    if (!rc) thread_main(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < nth; i++) free(jobs[i].scratch);
    return rc;
}

/* State of one run, so every exit path releases what was taken. */
typedef struct run_state {
    const tern_backend *be;
    tern_tensor src[TERN_NODE_MAX_SRC], dst;
    void *bufs[TERN_NODE_MAX_SRC + 1];
    int repacked;
} run_state;

static int device(const tern_backend *be)
{
    return !(be->api->caps & TERN_BACKEND_CAP_HOST_MEMORY);
}

/* Gives t a device copy of n host bytes; 0 on success. */
static int to_device(run_state *s, int slot, tern_tensor *t, const void *host, size_t n)
{
    const tern_backend_api *api = s->be->api;
    void *buf = api->buffer_alloc(s->be->ctx, n);
    if (!buf) return -1;
    s->bufs[slot] = buf;
    if (api->buffer_upload(s->be->ctx, buf, 0, host, n) != TERN_OK) return -1;
    t->buffer = buf;
    t->data = NULL; /* offset base 0 inside the buffer */
    return 0;
}

static void run_cleanup(run_state *s, int weight)
{
    const tern_backend_api *api = s->be->api;
    if (s->repacked && api->release) api->release(s->be->ctx, &s->src[weight]);
    for (int i = 0; i <= TERN_NODE_MAX_SRC; i++)
        if (s->bufs[i]) api->buffer_free(s->be->ctx, s->bufs[i]);
}

static conf_run_status fail(char *why, size_t n, const char *msg)
{
    snprintf(why, n, "%s", msg);
    return CONF_RUN_ERROR;
}

/* Puts the case's inputs where the backend reads them. */
static conf_run_status place_inputs(run_state *s, const conf_case *c, char *why, size_t wl)
{
    const tern_backend_api *api = s->be->api;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++) {
        if (!c->has_src[i]) continue;
        s->src[i] = c->src[i];
        if (i == c->weight && api->repack) {
            char msg[256] = "";
            tern_status st = api->repack(s->be->ctx, &c->src[i], c->purpose, &s->src[i], msg, sizeof msg);
            if (st == TERN_EUNSUPPORTED) return CONF_RUN_FALLBACK;
            if (st != TERN_OK) {
                snprintf(why, wl, "repack failed: %s: %s", tern_status_name(st), msg);
                return CONF_RUN_ERROR;
            }
            s->repacked = 1;
            continue; /* a device backend's repack leaves the weight on the device */
        }
        if (device(s->be) && to_device(s, i, &s->src[i], c->src[i].data, c->src_bytes[i]))
            return fail(why, wl, "buffer alloc/upload failed for a source");
    }
    return CONF_RUN_OK;
}

conf_run_status conf_run(const tern_backend *be, const conf_case *c, int nth, uint8_t *out,
                         char *why, size_t whylen)
{
    const tern_backend_api *api = be->api;
    tern_op_fn fn = tern_backend_op(be, c->op);
    if (!fn) return CONF_RUN_FALLBACK;
    if (device(be) && (!api->buffer_alloc || !api->buffer_free || !api->buffer_upload ||
                       !api->buffer_download))
        return fail(why, whylen, "backend lacks host memory and the buffer functions");
    if (!(api->caps & TERN_BACKEND_CAP_THREADED) || device(be)) nth = 1;
    run_state s;
    memset(&s, 0, sizeof s);
    s.be = be;
    conf_run_status rs = place_inputs(&s, c, why, whylen);
    memcpy(out, c->dst_init, c->dst_bytes);
    s.dst = c->dst;
    s.dst.data = out;
    if (rs == CONF_RUN_OK && device(be) && to_device(&s, TERN_NODE_MAX_SRC, &s.dst, out, c->dst_bytes))
        rs = fail(why, whylen, "buffer alloc/upload failed for dst");
    tern_node node;
    memset(&node, 0, sizeof node);
    node.op = c->op;
    node.dst = &s.dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++) node.src[i] = c->has_src[i] ? &s.src[i] : NULL;
    memcpy(node.iparams, c->iparams, sizeof node.iparams);
    memcpy(node.fparams, c->fparams, sizeof node.fparams);
    if (rs == CONF_RUN_OK && !tern_backend_supports(be, &node)) rs = CONF_RUN_FALLBACK;
    if (rs == CONF_RUN_OK && run_threads(be, fn, &node, nth))
        rs = fail(why, whylen, "could not start threads or allocate scratch");
    if (rs == CONF_RUN_OK && api->sync && api->sync(be->ctx, why, whylen) != TERN_OK)
        rs = fail(why, whylen, "sync failed");
    if (rs == CONF_RUN_OK && device(be) &&
        api->buffer_download(be->ctx, s.dst.buffer, 0, out, c->dst_bytes) != TERN_OK)
        rs = fail(why, whylen, "download of dst failed");
    run_cleanup(&s, c->weight);
    return rs;
}

/* ---- comparison ---- */

static double f32_at(const uint8_t *p, size_t i)
{
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

static double float_err(double a, double b, double denom)
{
    if (isnan(a) && isnan(b)) return 0.0;
    if (isnan(a) || isnan(b)) return INFINITY;
    if (a == b) return 0.0; /* equal infinities too */
    return fabs(a - b) / denom;
}

conf_score conf_compare(const conf_case *c, conf_cmp cmp, double tol, const uint8_t *got,
                        const uint8_t *want)
{
    conf_score sc = {0.0, 0, -1};
    if (cmp == CONF_EXACT) {
        for (size_t i = 0; i < c->dst_bytes; i++)
            if (got[i] != want[i]) {
                if (sc.first_bad < 0) sc.first_bad = (long)i;
                sc.bad++;
            }
        if (sc.bad && c->dst.type == TERN_TYPE_F32)
            for (size_t i = 0; i < c->dst_bytes / 4; i++) {
                double e = float_err(f32_at(got, i), f32_at(want, i), 1.0);
                if (e > sc.max_err || isnan(e)) sc.max_err = e;
            }
        else if (sc.bad)
            sc.max_err = INFINITY;
        return sc;
    }
    for (size_t i = 0; i < c->dst_bytes / 4; i++) {
        double a = f32_at(got, i), b = f32_at(want, i);
        double denom = cmp == CONF_MAG ? fmax(c->mag[i], 1e-30) : fmax(1.0, fabs(b));
        double e = float_err(a, b, denom);
        if (e > sc.max_err || isnan(e)) sc.max_err = e;
        if (!(e <= tol)) {
            if (sc.first_bad < 0) sc.first_bad = (long)i;
            sc.bad++;
        }
    }
    return sc;
}
