/* devsim.c - tern-backend-devsim.so: a simulated device backend that walks
 * every device path of the executor and the conformance harness.
 *
 * - Memory the host cannot read: each buffer is its own mmap kept
 *   PROT_NONE except while devsim itself works on it (upload, download,
 *   sync), and the handle is the mapping's address. A runtime that
 *   dereferences a device tensor's data or buffer crashes at once.
 * - Queued work: ops only record the node; sync() runs the queue.
 * - Kernels: the scalar backend's own (compiled in), run on the unlocked
 *   buffers, so a model that runs wholly on devsim must give scalar's
 *   logits bit for bit.
 * - Configuration, read at init from the environment:
 *     TERN_DEVSIM_OPS=add,rms_norm,...  the ops it accepts (default: all)
 *     TERN_DEVSIM_FAIL=op:N             the N-th call of op fails with
 *                                       TERN_EDEVICE through node_error()
 *     TERN_DEVSIM_FAIL_SYNC=N           the N-th sync() returns TERN_EDEVICE
 * Weights: ternary ones as scalar's int8 codes, float ones as stored (a q8
 * head as scalar quantizes it), all uploaded at repack; lookup tables and parameters it declines, so the
 * executor uploads their file bytes. Score 0: never picked by "auto". */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "../../backends/scalar/scalar.h"
#include "mini.h"

/* scalar's repack and gate name their owner; here they run as devsim's
 * kernels, and this table only stands in as that owner tag. */
const tern_backend_api scalar_api = {.name = "scalar (inside devsim)"};

static const tern_backend_api devsim_api;
static const char codes_tag = 'd';

typedef struct dev_buf {
    uint8_t *base; /* the handle */
    size_t size;   /* mapped bytes */
} dev_buf;

typedef struct queued {
    tern_node node;
    tern_tensor src[TERN_NODE_MAX_SRC], dst;
} queued;

typedef struct dev_ctx {
    const tern_host_api *host;
    scalar_ctx sc;              /* the kernels' context */
    dev_buf *bufs;
    int n_bufs, cap_bufs;
    queued *q;
    int n_q, cap_q;
    uint32_t ops_mask;          /* bit op: accepted */
    int fail_op, fail_at, calls;
    int fail_sync_at, syncs;
} dev_ctx;

static void probe(const tern_host_api *host, tern_backend_probe *out)
{
    (void)host;
    out->runnable = 1;
    out->score = 0;
    snprintf(out->desc, sizeof out->desc, "simulated device: unreadable buffers, queued ops, scalar kernels");
}

static int op_from_name(const char *s, size_t len)
{
    for (int op = 0; op < TERN_OP_COUNT; op++)
        if (strlen(tern_op_name(op)) == len && !strncmp(tern_op_name(op), s, len)) return op;
    return -1;
}

static int configure(dev_ctx *c, char *err, size_t errlen)
{
    const char *ops = getenv("TERN_DEVSIM_OPS"), *fail = getenv("TERN_DEVSIM_FAIL");
    const char *fsync = getenv("TERN_DEVSIM_FAIL_SYNC");
    c->ops_mask = (1u << TERN_OP_COUNT) - 1;
    if (ops && *ops && strcmp(ops, "all")) {
        c->ops_mask = 0;
        for (const char *p = ops; *p;) {
            size_t len = strcspn(p, ",");
            int op = op_from_name(p, len);
            if (op < 0) return snprintf(err, errlen, "TERN_DEVSIM_OPS: unknown op '%.*s'", (int)len, p), 1;
            c->ops_mask |= 1u << op;
            p += len + (p[len] == ',');
        }
    }
    c->fail_op = -1;
    if (fail && *fail) {
        const char *colon = strchr(fail, ':');
        c->fail_op = colon ? op_from_name(fail, (size_t)(colon - fail)) : -1;
        c->fail_at = colon ? atoi(colon + 1) : 0;
        if (c->fail_op < 0 || c->fail_at < 1)
            return snprintf(err, errlen, "TERN_DEVSIM_FAIL: expected op:N, got '%s'", fail), 1;
    }
    c->fail_sync_at = fsync ? atoi(fsync) : 0;
    return 0;
}

static tern_status init(const tern_host_api *host, const tern_backend_options *opt, void **ctx,
                        char *err, size_t errlen)
{
    if (!TERN_STRUCT_HAS(host, tern_host_api, node_error) ||
        (opt && !TERN_STRUCT_HAS(opt, tern_backend_options, device))) {
        snprintf(err, errlen, "devsim needs a version-2 host table and options");
        return TERN_EABI;
    }
    dev_ctx *c = host->alloc(sizeof *c, 64);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return TERN_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->host = host;
    c->sc.host = host;
    c->sc.n_threads = 1;
    /* the q8 head as scalar makes it (scalar_repack quantizes, devsim uploads) */
    c->sc.head_q8 = opt && TERN_STRUCT_HAS(opt, tern_backend_options, head) && opt->head && !strcmp(opt->head, "q8");
    if (configure(c, err, errlen)) {
        host->free(c);
        return TERN_EINVAL;
    }
    *ctx = c;
    return TERN_OK;
}

static void dev_free(void *ctx)
{
    dev_ctx *c = ctx;
    if (!c) return;
    for (int i = 0; i < c->n_bufs; i++) munmap(c->bufs[i].base, c->bufs[i].size);
    c->host->free(c->bufs);
    c->host->free(c->q);
    c->host->free(c);
}

/* ---- memory ---- */

static dev_buf *find_buf(dev_ctx *c, const void *handle)
{
    for (int i = 0; i < c->n_bufs; i++)
        if (c->bufs[i].base == handle) return &c->bufs[i];
    return NULL;
}

static void unlock_all(dev_ctx *c, int rw)
{
    for (int i = 0; i < c->n_bufs; i++)
        mprotect(c->bufs[i].base, c->bufs[i].size, rw ? PROT_READ | PROT_WRITE : PROT_NONE);
}

static void *buf_alloc(void *ctx, size_t size)
{
    dev_ctx *c = ctx;
    if (c->n_bufs == c->cap_bufs) {
        int cap = c->cap_bufs ? 2 * c->cap_bufs : 64;
        dev_buf *nb = c->host->alloc((size_t)cap * sizeof *nb, 64);
        if (!nb) return NULL;
        if (c->n_bufs) memcpy(nb, c->bufs, (size_t)c->n_bufs * sizeof *nb);
        c->host->free(c->bufs);
        c->bufs = nb;
        c->cap_bufs = cap;
    }
    size_t mapped = size ? size : 1;
    void *p = mmap(NULL, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    c->bufs[c->n_bufs++] = (dev_buf){p, mapped};
    return p;
}

static void buf_free(void *ctx, void *buffer)
{
    dev_ctx *c = ctx;
    dev_buf *b = find_buf(c, buffer);
    if (!b) return;
    munmap(b->base, b->size);
    *b = c->bufs[--c->n_bufs];
}

/* Copies between host memory and one buffer, unlocking only that one. */
static tern_status transfer(dev_ctx *c, const void *buffer, size_t off, void *host, size_t n, int up)
{
    dev_buf *b = find_buf(c, buffer);
    if (!b || off > b->size || n > b->size - off) return TERN_EINVAL;
    mprotect(b->base, b->size, PROT_READ | PROT_WRITE);
    if (up) memcpy(b->base + off, host, n);
    else memcpy(host, b->base + off, n);
    mprotect(b->base, b->size, PROT_NONE);
    return TERN_OK;
}

static tern_status upload(void *ctx, void *buffer, size_t off, const void *src, size_t n)
{
    return transfer(ctx, buffer, off, (void *)src, n, 1);
}

static tern_status download(void *ctx, const void *buffer, size_t off, void *dst, size_t n)
{
    return transfer(ctx, buffer, off, dst, n, 0);
}

/* ---- a node as scalar's kernels see it ---- */

/* A device tensor made host-like: data = base + offset (or a stand-in
 * when only asking), owner and tag as scalar's for the int8 codes. */
static tern_tensor as_host(const tern_tensor *t, int real)
{
    tern_tensor h = *t;
    if (t->buffer) {
        h.data = real ? (uint8_t *)t->buffer + (uintptr_t)t->data : (void *)&codes_tag;
        h.buffer = NULL;
    }
    if (t->owner == &devsim_api && t->extra == &codes_tag) {
        h.owner = &scalar_api;
        h.extra = (void *)&scalar_ternary_tag;
    } else if (t->owner == &devsim_api) {
        h.owner = NULL;
    }
    return h;
}

static void host_node(const tern_node *nd, tern_node *out, tern_tensor *src, tern_tensor *dst, int real)
{
    *out = *nd;
    *dst = as_host(nd->dst, real);
    out->dst = dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++)
        if (nd->src[i]) {
            src[i] = as_host(nd->src[i], real);
            out->src[i] = &src[i];
        }
}

/* Every tensor on the device, the op switched on, and scalar's gate. */
static int supports(void *ctx, const tern_node *nd)
{
    dev_ctx *c = ctx;
    if (nd->op < 0 || nd->op >= TERN_OP_COUNT || !(c->ops_mask & (1u << nd->op))) return 0;
    if (!nd->dst->buffer) return 0;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++)
        if (nd->src[i] && !nd->src[i]->buffer) return 0;
    tern_node h;
    tern_tensor src[TERN_NODE_MAX_SRC], dst;
    host_node(nd, &h, src, &dst, 0);
    return scalar_supports_op(&c->sc, &h);
}

/* ---- the queue ---- */

static void enqueue(void *ctx, const tern_node *nd, int ith, int nth, void *scratch)
{
    (void)scratch, (void)nth;
    dev_ctx *c = ctx;
    if (ith != 0) return;
    if (c->n_q == c->cap_q) {
        int cap = c->cap_q ? 2 * c->cap_q : 64;
        queued *nq = c->host->alloc((size_t)cap * sizeof *nq, 64);
        if (!nq) {
            c->host->node_error(nd, TERN_ENOMEM, "devsim: out of memory queueing %s", tern_op_name(nd->op));
            return;
        }
        if (c->n_q) memcpy(nq, c->q, (size_t)c->n_q * sizeof *nq);
        for (int i = 0; i < c->n_q; i++) { /* re-point the copies at their new home */
            nq[i].node.dst = &nq[i].dst;
            for (int s = 0; s < TERN_NODE_MAX_SRC; s++)
                if (nq[i].node.src[s]) nq[i].node.src[s] = &nq[i].src[s];
        }
        c->host->free(c->q);
        c->q = nq;
        c->cap_q = cap;
    }
    queued *q = &c->q[c->n_q++];
    q->node = *nd; /* error slot included: node_error at sync reaches it */
    q->dst = *nd->dst;
    q->node.dst = &q->dst;
    for (int i = 0; i < TERN_NODE_MAX_SRC; i++)
        if (nd->src[i]) {
            q->src[i] = *nd->src[i];
            q->node.src[i] = &q->src[i];
        }
}

static tern_status sync_queue(void *ctx, char *err, size_t errlen)
{
    dev_ctx *c = ctx;
    int n = c->n_q;
    c->n_q = 0;
    if (c->fail_sync_at && ++c->syncs == c->fail_sync_at) {
        snprintf(err, errlen, "devsim: injected failure of sync %d (%d queued ops dropped)", c->syncs, n);
        return TERN_EDEVICE;
    }
    size_t need = 64;
    tern_node h[1];
    tern_tensor src[TERN_NODE_MAX_SRC], dst;
    for (int i = 0; i < n; i++) {
        host_node(&c->q[i].node, h, src, &dst, 0);
        size_t s = scalar_scratch_size(&c->sc, h, 1);
        if (s > need) need = s;
    }
    void *scratch = c->host->alloc(need, 64);
    if (!scratch) {
        snprintf(err, errlen, "devsim: out of memory for %zu bytes of scratch", need);
        return TERN_ENOMEM;
    }
    unlock_all(c, 1);
    for (int i = 0; i < n; i++) {
        const tern_node *nd = &c->q[i].node;
        if (nd->op == c->fail_op && ++c->calls == c->fail_at) {
            c->host->node_error(nd, TERN_EDEVICE, "devsim: injected failure of %s (call %d)",
                                tern_op_name(nd->op), c->calls);
            break; /* the rest of the queue is dropped, as a failed device would */
        }
        host_node(nd, h, src, &dst, 1);
        scalar_ops[nd->op](&c->sc, h, 0, 1, scratch);
    }
    unlock_all(c, 0);
    c->host->free(scratch);
    return TERN_OK;
}

/* ---- weights ---- */

static tern_status repack(void *ctx, const tern_tensor *src, int purpose, tern_tensor *dst,
                          char *err, size_t errlen)
{
    dev_ctx *c = ctx;
    if (purpose == TERN_REPACK_ROWS || purpose == TERN_REPACK_PARAM) return TERN_EUNSUPPORTED;
    tern_tensor host;
    tern_status st = scalar_repack(&c->sc, src, purpose, &host, err, errlen);
    if (st) return st;
    size_t n = tern_tensor_nbytes(&host);
    void *b = buf_alloc(c, n);
    if (!b || upload(c, b, 0, host.data, n)) {
        if (b) buf_free(c, b);
        scalar_release(&c->sc, &host);
        snprintf(err, errlen, "devsim: out of device memory for %zu bytes", n);
        return TERN_ENOMEM;
    }
    int codes = host.owner == &scalar_api && host.extra == &scalar_ternary_tag; /* else as stored, or the q8 head */
    scalar_release(&c->sc, &host);
    *dst = host;
    dst->buffer = b;
    dst->data = NULL;
    dst->owner = &devsim_api;
    dst->extra = codes ? (void *)&codes_tag : NULL;
    return TERN_OK;
}

static void release(void *ctx, tern_tensor *t)
{
    if (t->owner != &devsim_api) return;
    buf_free(ctx, t->buffer);
    t->buffer = NULL;
}

static const tern_op_fn ops[TERN_OP_COUNT] = {
    [TERN_OP_GET_ROWS] = enqueue,       [TERN_OP_RMS_NORM] = enqueue,  [TERN_OP_ADD] = enqueue,
    [TERN_OP_MUL] = enqueue,            [TERN_OP_RELU_SQ] = enqueue,   [TERN_OP_SILU] = enqueue,
    [TERN_OP_ROPE] = enqueue,           [TERN_OP_KV_STORE] = enqueue,  [TERN_OP_ATTENTION] = enqueue,
    [TERN_OP_SOFTMAX] = enqueue,        [TERN_OP_QUANTIZE_ACT] = enqueue,
    [TERN_OP_MATMUL_TERNARY] = enqueue, [TERN_OP_MATMUL] = enqueue,
};

static const tern_backend_api devsim_api = {
    .abi_version = TERN_BACKEND_ABI_VERSION,
    .struct_size = sizeof(tern_backend_api),
    .op_semantics = TERN_OP_SEMANTICS_VERSION,
    .name = "devsim",
    .caps = 0, /* device memory, one call per node */
    .probe = probe,
    .init = init,
    .free = dev_free,
    .repack = repack,
    .release = release,
    .buffer_alloc = buf_alloc,
    .buffer_free = buf_free,
    .buffer_upload = upload,
    .buffer_download = download,
    .sync = sync_queue,
    .supports_op = supports,
    .ops = ops,
    .n_ops = TERN_OP_COUNT,
};

TERN_EXPORT const tern_backend_api *tern_backend_entry(void) { return &devsim_api; }
