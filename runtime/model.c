/* model.c - loading a model: the file, its hyper-parameters and tokenizer,
 * the backend it runs on, and the weights repacked for that backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model_impl.h"
#include "packcache.h"
#include "tern/install.h"

tern_model_options tern_model_default_options(void)
{
    tern_model_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.backend = "auto";
    o.n_threads = 0; /* the physical cores */
    o.kernel = "auto";
    o.head = TERN_HEAD_DEFAULT;
    o.device = -1;
    return o;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tern_load_progress_stderr(void *user, uint64_t done, uint64_t total)
{
    tern_load_progress *p = user;
    double now = now_seconds();
    if (p->t0 == 0) p->t0 = now;
    double dt = now - p->t0;
    if (dt < 1.0 && !p->shown) return;
    int tty = isatty(2), last = done >= total;
    if (!tty && !last) return;
    fprintf(stderr, "%stern: packing weights: %.0f / %.0f MiB, %.0f MiB/s%s", tty ? "\r" : "",
            (double)done / (1 << 20), (double)total / (1 << 20), dt > 0 ? (double)done / (1 << 20) / dt : 0,
            last ? "\n" : "");
    p->shown++;
}

/* Weights are one per GGUF tensor in the file's order, so the reader's
 * hashed name lookup gives the index. */
tern_model_weight *tern_model_find_weight(tern_model *m, const char *name)
{
    const tern_gguf_tensor *gt = tern_gguf_find_tensor(m->gguf, name);
    return gt ? &m->weights[gt - tern_gguf_tensor_at(m->gguf, 0)] : NULL;
}

static const char *const purpose_names[TERN_REPACK_COUNT] = {
    "a ternary matmul", "a matmul", "the output head", "an embedding lookup", "a parameter"};

/* The file's bytes in a buffer of device backend be (layout FILE). */
static tern_status upload_file(tern_model_weight *w, tern_backend *be, tern_tensor *dst, tern_error *err)
{
    size_t n = tern_tensor_nbytes(&w->file);
    void *buf = be->api->buffer_alloc(be->ctx, n ? n : 1);
    if (!buf)
        return tern_error_set(err, TERN_ENOMEM, "backend '%s': out of device memory for '%s' (%zu bytes)",
                              be->plugin->name, w->gt->name_z, n);
    tern_status st = be->api->buffer_upload(be->ctx, buf, 0, w->file.data, n);
    if (st) {
        be->api->buffer_free(be->ctx, buf);
        return tern_error_set(err, st, "backend '%s': uploading '%s' failed", be->plugin->name,
                              w->gt->name_z);
    }
    *dst = w->file;
    dst->buffer = buf;
    dst->data = NULL;
    return TERN_OK;
}

/* A parameter (norm weights: kilobytes) read from the file into memory of
 * our own, never through the mapping, once for every host backend that
 * reads it. Through the mapping, one read of a norm vector that shares a
 * 2 MB page-cache folio with packed matrices (Linux 6.x large folios) made
 * the whole folio resident in this process: 144 MB on the 2B4T file, over
 * its 1123 MiB of weights. Returns 0 when the read fails; the caller then
 * uses the mapping, as before. */
static int copy_param(tern_model_weight *w, tern_tensor *dst)
{
    size_t n = tern_tensor_nbytes(&w->file);
    void *buf = NULL;
    tern_error e;
    if (!w->copy) {
        if (!n || posix_memalign(&buf, 64, n) != 0) return 0;
        if (tern_gguf_read(w->model->gguf, w->file.data, n, buf, &e)) {
            free(buf);
            return 0;
        }
        w->copy = buf;
    }
    *dst = w->file;
    dst->data = w->copy;
    return 1;
}

/* Places w for backend be: repack, else the file view (host; parameters
 * copied, above) or an upload of the file bytes (device, for lookups and
 * parameters). */
static tern_status place(tern_model_weight *w, tern_backend *be, int purpose, tern_tensor *dst,
                         uint8_t *how, tern_error *err)
{
    int host = tern_backend_is_host(be), lookup = purpose >= TERN_REPACK_ROWS;
    tern_status st = TERN_EUNSUPPORTED;
    char msg[TERN_ERROR_MSG_MAX] = "";
    if (be->api->repack && !(host && lookup)) {
        st = be->api->repack(be->ctx, &w->file, purpose, dst, msg, sizeof msg);
        if (st && st != TERN_EUNSUPPORTED)
            return tern_error_set(err, st, "%s: placing '%s' for %s on backend %s: %s", w->model->path,
                                  w->gt->name_z, purpose_names[purpose], be->plugin->name, msg);
        if (!st && dst->layout != TERN_LAYOUT_FILE && dst->owner != be->api) {
            if (be->api->release) be->api->release(be->ctx, dst);
            return tern_error_set(err, TERN_EABI, "backend %s repacked '%s' into a layout of its own "
                                  "without claiming it (tensor owner not set)", be->plugin->name,
                                  w->gt->name_z);
        }
        if (!st && !host && !dst->buffer) {
            if (be->api->release) be->api->release(be->ctx, dst);
            return tern_error_set(err, TERN_EABI, "device backend %s placed '%s' in host memory",
                                  be->plugin->name, w->gt->name_z);
        }
        if (!st) {
            *how = dst->data == w->file.data && !dst->buffer ? PLACED_FILE : PLACED_REPACKED;
            return TERN_OK;
        }
    }
    if (!be->api->repack) st = TERN_OK; /* it reads file layouts */
    if (st == TERN_EUNSUPPORTED && !lookup) {
        *how = PLACED_REFUSED;
        return TERN_EUNSUPPORTED;
    }
    if (host) {
        *how = purpose == TERN_REPACK_PARAM && copy_param(w, dst) ? PLACED_COPIED : PLACED_FILE;
        if (*how == PLACED_FILE) *dst = w->file;
        return TERN_OK;
    }
    st = upload_file(w, be, dst, err);
    if (!st) *how = PLACED_UPLOADED;
    return st;
}

tern_status tern_model_weight_resolve(tern_model_weight *w, int b, int purpose,
                                      tern_tensor **out, tern_error *err)
{
    tern_model *m = w->model;
    if (b < 0 || b >= m->n_be || purpose < 0 || purpose >= TERN_REPACK_COUNT)
        return tern_error_set(err, TERN_EINVAL, "weight placement: backend %d, purpose %d", b, purpose);
    tern_status st = TERN_OK;
    pthread_mutex_lock(&m->mu);
    uint8_t *how = &w->how[b][purpose];
    if (*how == PLACED_NOT_YET) st = place(w, m->be[b], purpose, &w->placed[b][purpose], how, err);
    else if (*how == PLACED_REFUSED) st = TERN_EUNSUPPORTED;
    pthread_mutex_unlock(&m->mu);
    if (!st) *out = &w->placed[b][purpose];
    return st;
}

static void unplace(tern_model *m, tern_model_weight *w)
{
    for (int b = 0; b < m->n_be; b++)
        for (int p = 0; p < TERN_REPACK_COUNT; p++) {
            tern_backend *be = m->be[b];
            if (w->how[b][p] == PLACED_REPACKED && be->api->release)
                be->api->release(be->ctx, &w->placed[b][p]);
            else if (w->how[b][p] == PLACED_UPLOADED)
                be->api->buffer_free(be->ctx, w->placed[b][p].buffer);
            w->how[b][p] = PLACED_NOT_YET;
        }
    free(w->copy);
    w->copy = NULL;
}

/* The output head: output.weight, or token_embd when tied. */
static tern_model_weight *head_weight(tern_model *m)
{
    tern_model_weight *w = tern_model_find_weight(m, "output.weight");
    return w ? w : tern_model_find_weight(m, "token_embd.weight");
}

/* Drops the file pages of a weight that now lives packed elsewhere, so
 * resident memory holds one copy. The mapping stays: a tied head's
 * embedding lookups read rows of it, faulted back in a page at a time. */
static void drop_pages(const tern_model_weight *w)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)w->gt->data, e = a + w->gt->size;
    a = (a + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    e &= ~((uintptr_t)page - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* Maps the pages of [p, p + n) that the page cache holds (reading the
 * rest from the file); a kernel without MADV_POPULATE_READ just faults
 * them in later. */
static void populate(const void *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~((uintptr_t)page - 1), e = (uintptr_t)p + n;
    if (e > a) madvise((void *)a, e - a, MADV_POPULATE_READ);
}

/* The weights placed at load (so load time is paid once, up front): every
 * linear weight and the head; lookups and parameters are placed when a
 * graph first needs them. */
static int load_purpose(const tern_model_weight *w)
{
    const char *name = w->gt->name_z;
    int is_linear = strncmp(name, "blk.", 4) == 0 && tern_type_get(w->file.type)->is_ternary;
    int is_float_linear = strncmp(name, "blk.", 4) == 0 && !is_linear && w->file.ne[1] > 1;
    if (!is_linear && !is_float_linear && !w->is_head) return -1;
    return is_linear ? TERN_REPACK_TERNARY : w->is_head ? TERN_REPACK_HEAD : TERN_REPACK_MATMUL;
}

static void report_progress(tern_model *m, uint64_t done, uint64_t total)
{
    if (TERN_STRUCT_HAS(&m->opt, tern_model_options, progress) && m->opt.progress)
        m->opt.progress(m->opt.progress_user, done, total);
}

/* "<dev> <ino> <size> <mtime>" of a file, or "?" (then no cache matches). */
static void file_identity(const char *path, char *buf, size_t n)
{
    struct stat st;
    if (stat(path, &st)) snprintf(buf, n, "?");
    else snprintf(buf, n, "%llu %llu %lld %lld.%09ld", (unsigned long long)st.st_dev,
                  (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                  st.st_mtim.tv_nsec);
}

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *v = getenv(name);
    char *end;
    if (!v || !*v) return fallback;
    unsigned long long x = strtoull(v, &end, 10);
    return *end ? fallback : (uint64_t)x;
}

/* Packs the load-time weights of the first backend through the pack cache
 * (packcache.h): mapped from the cache file when it holds them, packed
 * into a new one otherwise. Leaves everything to repack_all (returning
 * TERN_OK) where the cache does not apply: a device or scalar first
 * backend, a backend without repack_into, under TERN_PACK_CACHE_MIN bytes
 * (default 64 MiB: small models pack faster than a file is checked),
 * TERN_PACK_CACHE=0, no cache folder, or one we cannot write. */
static tern_status pack_cached(tern_model *m, tern_error *err)
{
    tern_backend *be = m->be[0];
    const tern_host_api *host = tern_host();
    const char *off = getenv("TERN_PACK_CACHE");
    char cache[4096];
    if (!tern_backend_is_host(be) || !TERN_API_HAS(be->api, repack_size) || !TERN_API_HAS(be->api, repack_into) ||
        !tern_cache_dir(cache, sizeof cache) || (off && strcmp(off, "0") == 0))
        return TERN_OK;
    packcache_item *items = calloc((size_t)m->n_weights + 1, sizeof *items);
    if (!items) return TERN_OK;
    int n = 0;
    uint64_t total = 0;
    char msg[TERN_ERROR_MSG_MAX];
    for (int i = 0; i < m->n_weights; i++) {
        tern_model_weight *w = &m->weights[i];
        int purpose = load_purpose(w);
        size_t bytes = 0;
        if (purpose < 0) continue;
        if (be->api->repack_size(be->ctx, &w->file, purpose, &bytes, items[n].layout,
                                 sizeof items[n].layout, msg, sizeof msg))
            goto none; /* repack_all places it (or says why not) */
        if (!bytes) continue;
        items[n].weight = (uint32_t)i, items[n].purpose = (uint32_t)purpose, items[n].bytes = bytes;
        total += bytes;
        n++;
    }
    if (!n || total < env_u64("TERN_PACK_CACHE_MIN", (uint64_t)64 << 20)) goto none;
    char real[4096], ident[160], plug[160], key[PACKCACHE_KEY_MAX], dir[4200], name[64];
    if (!realpath(m->path, real)) goto none;
    file_identity(real, ident, sizeof ident);
    file_identity(be->plugin->path, plug, sizeof plug);
    snprintf(key, sizeof key, "tern %s pack cache\nmodel %s\n%s\nbackend %s %s\n%s\nkernel %s head %s\n",
             tern_install_version(), real, ident, be->plugin->name, be->plugin->path, plug,
             m->opt.kernel ? m->opt.kernel : "auto", m->opt.head);
    /* one file per model path and backend options: a changed model
     * replaces its old cache instead of leaving it behind */
    char naming[4400];
    snprintf(naming, sizeof naming, "%s\n%s\n%s\n%s", real, be->plugin->name,
             m->opt.kernel ? m->opt.kernel : "auto", m->opt.head);
    snprintf(name, sizeof name, "%016llx.pack",
             (unsigned long long)tern_packcache_hash(naming, strlen(naming), 0));
    snprintf(dir, sizeof dir, "%s/packed", cache);
    int fill;
    char why[512];
    tern_packcache *pc = tern_packcache_open(dir, name, key, items, n, m->pool, &fill, why, sizeof why);
    if (!pc) {
        host->log(TERN_LOG_WARN, "%s: packed weights not cached (%s)", m->path, why);
        goto none;
    }
    m->pack = pc;
    m->pack_state = fill ? "written" : "mapped";
    uint64_t done = 0;
    for (int k = 0; k < n; k++) {
        tern_model_weight *w = &m->weights[items[k].weight];
        int p = (int)items[k].purpose;
        tern_status st = be->api->repack_into(be->ctx, &w->file, p, tern_packcache_data(pc, k), fill,
                                              &w->placed[0][p], msg, sizeof msg);
        if (st) {
            free(items);
            return tern_error_set(err, st, "%s: placing '%s' on backend %s: %s", m->path, w->gt->name_z,
                                  be->plugin->name, msg);
        }
        w->how[0][p] = PLACED_REPACKED;
        if (fill) drop_pages(w); /* as we go: one copy resident at any time */
        done += items[k].bytes;
        if (fill) report_progress(m, done, total);
    }
    if (fill && tern_packcache_commit(pc, why, sizeof why)) {
        host->log(TERN_LOG_WARN, "%s: packed weights not cached (%s)", m->path, why);
        m->pack_state = "not kept";
    }
none:
    free(items);
    return TERN_OK;
}

/* Places every load-time weight (load_purpose) on the first backend that
 * takes it, then drops the file pages that the packed copies replace so
 * resident memory holds about one copy of the weights. */
static tern_status repack_all(tern_model *m, tern_error *err)
{
    tern_status st = pack_cached(m, err);
    uint64_t total = 0, done = 0;
    for (int i = 0; i < m->n_weights; i++)
        if (load_purpose(&m->weights[i]) >= 0) total += m->weights[i].gt->size;
    for (int i = 0; !st && i < m->n_weights; i++) {
        tern_model_weight *w = &m->weights[i];
        const char *name = w->gt->name_z;
        int purpose = load_purpose(w);
        if (purpose < 0) continue;
        tern_tensor *packed = NULL;
        st = TERN_EUNSUPPORTED;
        for (int b = 0; b < m->n_be && st == TERN_EUNSUPPORTED; b++)
            st = tern_model_weight_resolve(w, b, purpose, &packed, err);
        if (st == TERN_EUNSUPPORTED)
            return tern_error_set(err, TERN_EUNSUPPORTED, "%s: no backend of the list takes '%s' (%s) for %s",
                                  m->path, name, tern_type_name(w->file.type), purpose_names[purpose]);
        if (st) return st;
        if (!m->pack) report_progress(m, done += w->gt->size, total);
        /* weights read as stored get their page table now: the first
         * evaluation would otherwise take a fault per page (half a second
         * for a 2B model's F16 head) */
        if (packed->data == w->file.data && !packed->buffer) populate(w->gt->data, w->gt->size);
        if (packed->data != w->file.data) drop_pages(w);
    }
    return st;
}

/* Adds a backend to the list unless it is there already. */
static tern_status add_backend(tern_model *m, const tern_plugin_info *p, tern_error *err)
{
    for (int i = 0; i < m->n_be; i++)
        if (m->be[i]->plugin == p) return TERN_OK;
    if (m->n_be == TERN_MAX_BACKENDS)
        return tern_error_set(err, TERN_EINVAL, "more than %d backends listed", TERN_MAX_BACKENDS);
    tern_backend_options bo = tern_backend_default_options();
    bo.n_threads = m->opt.n_threads;
    bo.kernel = m->opt.kernel;
    bo.head = m->opt.head;
    bo.device = TERN_STRUCT_HAS(&m->opt, tern_model_options, device) ? m->opt.device : -1;
    tern_status st = tern_backend_create(p, &bo, m->pool, &m->be[m->n_be], err);
    if (!st) m->n_be++;
    return st;
}

/* The list in opt.backend ("x86", "opencl,x86", "auto"), in order, then
 * scalar, the last resort. A named backend that cannot run is an error. */
static tern_status load_backends(tern_model *m, tern_error *err)
{
    const char *list = m->opt.backend && *m->opt.backend ? m->opt.backend : "auto";
    char name[64], only[512];
    if ((size_t)snprintf(only, sizeof only, "%s,scalar", list) >= sizeof only)
        return tern_error_set(err, TERN_EINVAL, "backend list '%.64s...': too long", list);
    /* only the plugins the list names are opened (every one for auto) */
    tern_status st = tern_registry_scan_only(only, &m->reg, err);
    if (st) return st;
    for (const char *p = list; !st && *p;) {
        size_t len = strcspn(p, ",");
        const char *q = p;
        while (len && *q == ' ') q++, len--;
        while (len && q[len - 1] == ' ') len--;
        if (!len || len >= sizeof name)
            return tern_error_set(err, TERN_EINVAL, "backend list '%s': %s", list,
                                  len ? "a name is too long" : "an empty name");
        memcpy(name, q, len);
        name[len] = 0;
        const tern_plugin_info *pi;
        st = tern_registry_select(m->reg, name, &pi, err);
        if (!st) st = add_backend(m, pi, err);
        p = q + len;
        while (*p == ' ') p++;
        if (*p == ',') p++;
    }
    if (st) return st;
    const tern_plugin_info *scalar;
    st = tern_registry_select(m->reg, "scalar", &scalar, err);
    if (st) return tern_error_prefix(err, "the scalar backend, every list's last resort, is required: ");
    return add_backend(m, scalar, err);
}

uint64_t tern_model_weights_resident(const tern_gguf *g)
{
    uint64_t total = 0;
    for (int64_t i = 0; i < tern_gguf_n_tensors(g); i++) total += tern_gguf_tensor_at(g, i)->size;
    return total;
}

uint64_t tern_physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

/* Refuses weights that cannot stay resident: they would be paged in and
 * out of the file on every token, minutes a token, instead of an error. */
static tern_status check_fits(tern_model *m, tern_error *err)
{
    uint64_t need = tern_model_weights_resident(m->gguf), have = tern_physical_memory();
    if (have && need > have)
        return tern_error_set(err, TERN_ENOMEM, "%s: its weights need %.1f GiB resident and this machine has "
                              "%.1f GiB of RAM", m->path, (double)need / (1 << 30), (double)have / (1 << 30));
    return TERN_OK;
}

tern_status tern_model_load(const char *path, const tern_model_options *opt, tern_model **out,
                            tern_error *err)
{
    double t0 = now_seconds();
    *out = NULL;
    tern_model *m = calloc(1, sizeof *m);
    if (!m) return tern_error_set(err, TERN_ENOMEM, "out of memory loading %s", path);
    pthread_mutex_init(&m->mu, NULL);
    m->opt = opt ? *opt : tern_model_default_options();
    if (!m->opt.head || !*m->opt.head) m->opt.head = TERN_HEAD_DEFAULT;
    if (m->opt.n_threads < 1) m->opt.n_threads = tern_cpu_physical_cores();
    snprintf(m->path, sizeof m->path, "%s", path);
    tern_status st = tern_threadpool_acquire(m->opt.n_threads, &m->pool, err);
    if (!st) st = tern_gguf_open(path, &m->gguf, err);
    if (!st) st = check_fits(m, err);
    if (!st) st = tern_hparams_read(m->gguf, &m->hp, err);
    if (!st) st = tern_hparams_check_tensors(m->gguf, &m->hp, err);
    if (!st) st = tern_tokenizer_from_gguf(m->gguf, &m->tok, err);
    if (!st) st = load_backends(m, err);
    if (!st) {
        m->n_weights = (int)tern_gguf_n_tensors(m->gguf);
        m->weights = calloc((size_t)m->n_weights + 1, sizeof *m->weights);
        if (!m->weights) st = tern_error_set(err, TERN_ENOMEM, "out of memory loading %s", path);
    }
    for (int i = 0; !st && i < m->n_weights; i++) {
        tern_model_weight *w = &m->weights[i];
        w->model = m;
        w->gt = tern_gguf_tensor_at(m->gguf, i);
        tern_gguf_tensor_view(w->gt, &w->file);
    }
    if (!st) {
        const char *head = m->opt.head;
        tern_model_weight *hw = head_weight(m);
        if (hw) hw->is_head = 1;
        snprintf(m->head_desc, sizeof m->head_desc, "%s%s (%s)", hw ? hw->gt->name_z : "?",
                 m->hp.tied_output ? " tied" : "", strcmp(head, "q8") == 0 ? "repacked q8" : tern_type_name(hw ? hw->file.type : 0));
        st = repack_all(m, err);
    }
    if (st) {
        tern_model_free(m);
        return st;
    }
    m->load_seconds = now_seconds() - t0;
    *out = m;
    return TERN_OK;
}

void tern_model_free(tern_model *m)
{
    if (!m) return;
    for (int i = 0; m->weights && i < m->n_weights; i++) unplace(m, &m->weights[i]);
    free(m->weights);
    for (int b = m->n_be - 1; b >= 0; b--) tern_backend_free(m->be[b]);
    tern_packcache_close(m->pack); /* after every backend released its weights */
    tern_registry_free(m->reg);
    tern_tokenizer_free(m->tok);
    tern_gguf_close(m->gguf);
    tern_threadpool_release(m->pool, m->opt.n_threads);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const tern_hparams *tern_model_hparams(const tern_model *m) { return &m->hp; }
const tern_tokenizer *tern_model_tokenizer(const tern_model *m) { return m->tok; }
const tern_gguf *tern_model_gguf(const tern_model *m) { return m->gguf; }
const tern_backend *tern_model_backend(const tern_model *m) { return m->be[0]; }
double tern_model_load_seconds(const tern_model *m) { return m->load_seconds; }
const char *tern_model_pack_cache(const tern_model *m) { return m->pack_state; }

int tern_model_n_backends(const tern_model *m) { return m->n_be; }

const tern_backend *tern_model_backend_at(const tern_model *m, int i)
{
    return i >= 0 && i < m->n_be ? m->be[i] : NULL;
}

void tern_model_describe(const tern_model *m, char *buf, size_t n)
{
    char inst[1536] = "", rest[160] = "";
    const tern_backend *b0 = m->be[0];
    if (TERN_API_HAS(b0->api, describe)) b0->api->describe(b0->ctx, inst, sizeof inst);
    size_t used = 0;
    for (int b = 1; b < m->n_be && used < sizeof rest; b++)
        used += (size_t)snprintf(rest + used, sizeof rest - used, "%s%s", b > 1 ? ", " : "",
                                 m->be[b]->plugin->name);
    snprintf(buf, n, "backend %s%s%s%s, then %s; %d thread%s, head %s", b0->plugin->name,
             inst[0] ? " (" : "", inst, inst[0] ? ")" : "", m->n_be > 1 ? rest : "nothing",
             m->opt.n_threads, m->opt.n_threads == 1 ? "" : "s", m->head_desc);
}

/* What the matmuls read per decoded token: each linear weight as the first
 * backend that placed it holds it. */
uint64_t tern_model_weight_bytes_per_token(const tern_model *m)
{
    uint64_t total = 0;
    for (int i = 0; i < m->n_weights; i++)
        for (int p = TERN_REPACK_TERNARY; p <= TERN_REPACK_HEAD; p++)
            for (int b = 0; b < m->n_be; b++) {
                const tern_model_weight *w = &m->weights[i];
                if (w->how[b][p] == PLACED_NOT_YET || w->how[b][p] == PLACED_REFUSED) continue;
                total += tern_tensor_nbytes(&w->placed[b][p]);
                break;
            }
    return total;
}
