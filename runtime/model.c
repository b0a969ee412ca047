/* model.c - loading a model: the file, its hyper-parameters and tokenizer,
 * the backend it runs on, and the weights repacked for that backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "model_impl.h"

tern_model_options tern_model_default_options(void)
{
    tern_model_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.backend = "auto";
    o.n_threads = 1;
    o.kernel = "auto";
    o.head = "f16";
    return o;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Weights are one per GGUF tensor in the file's order, so the reader's
 * hashed name lookup gives the index. */
tern_model_weight *tern_model_find_weight(tern_model *m, const char *name)
{
    const tern_gguf_tensor *gt = tern_gguf_find_tensor(m->gguf, name);
    return gt ? &m->weights[gt - tern_gguf_tensor_at(m->gguf, 0)] : NULL;
}

tern_status tern_model_weight_resolve(tern_model_weight *w, int slot, int purpose,
                                      tern_tensor **out, tern_error *err)
{
    tern_model *m = w->model;
    if (slot < 0 || slot > 1 || !m->be[slot]) slot = 0;
    tern_status st = TERN_OK;
    pthread_mutex_lock(&m->mu);
    if (!w->have[slot][purpose]) {
        tern_backend *be = m->be[slot];
        if (!be->api->repack) {
            w->packed[slot][purpose] = w->file;
        } else {
            char msg[TERN_ERROR_MSG_MAX] = "";
            st = be->api->repack(be->ctx, &w->file, purpose, &w->packed[slot][purpose], msg, sizeof msg);
            if (st)
                tern_error_set(err, st, "%s: repacking '%s' for backend %s: %s", m->path,
                               w->gt->name_z, be->plugin->name, msg);
        }
        if (!st) w->have[slot][purpose] = 1;
    }
    pthread_mutex_unlock(&m->mu);
    if (!st) *out = &w->packed[slot][purpose];
    return st;
}

/* The output head: output.weight, or token_embd when tied. */
static tern_model_weight *head_weight(tern_model *m)
{
    tern_model_weight *w = tern_model_find_weight(m, "output.weight");
    return w ? w : tern_model_find_weight(m, "token_embd.weight");
}

/* Repacks every linear weight for the main backend now (so load time is
 * paid once, up front), then drops the file pages that the repacked copies
 * replace so resident memory holds about one copy of the weights. */
static tern_status repack_all(tern_model *m, tern_error *err)
{
    long page = sysconf(_SC_PAGESIZE);
    const tern_model_weight *head = head_weight(m);
    for (int i = 0; i < m->n_weights; i++) {
        tern_model_weight *w = &m->weights[i];
        const char *name = w->gt->name_z;
        int is_linear = strncmp(name, "blk.", 4) == 0 && tern_type_get(w->file.type)->is_ternary;
        int is_float_linear = strncmp(name, "blk.", 4) == 0 && !is_linear && w->file.ne[1] > 1;
        int is_head = w == head;
        if (!is_linear && !is_float_linear && !is_head) continue;
        tern_tensor *packed;
        int purpose = is_linear ? TERN_REPACK_TERNARY : TERN_REPACK_MATMUL;
        tern_status st = tern_model_weight_resolve(w, 0, purpose, &packed, err);
        if (st) return st;
        /* token_embd stays mapped: the embedding lookup reads it */
        if (packed->data != w->file.data && strcmp(name, "token_embd.weight") != 0) {
            uintptr_t a = (uintptr_t)w->gt->data, e = a + w->gt->size;
            a = (a + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
            e &= ~((uintptr_t)page - 1);
            if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
        }
    }
    return TERN_OK;
}

static tern_status load_backends(tern_model *m, tern_error *err)
{
    tern_status st = tern_registry_scan(&m->reg, err);
    if (st) return st;
    const tern_plugin_info *main_p, *scalar_p;
    st = tern_registry_select(m->reg, m->opt.backend ? m->opt.backend : "auto", &main_p, err);
    if (st) return st;
    tern_backend_options bo = tern_backend_default_options();
    bo.n_threads = m->opt.n_threads;
    bo.kernel = m->opt.kernel;
    bo.head = m->opt.head;
    st = tern_backend_create(main_p, &bo, &m->be[0], err);
    if (st) return st;
    if (strcmp(main_p->name, "scalar") == 0) return TERN_OK;
    st = tern_registry_select(m->reg, "scalar", &scalar_p, err);
    if (st) return tern_error_prefix(err, "the scalar fallback backend is required: ");
    return tern_backend_create(scalar_p, &bo, &m->be[1], err);
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
    if (m->opt.n_threads < 1) m->opt.n_threads = 1;
    snprintf(m->path, sizeof m->path, "%s", path);
    tern_status st = tern_gguf_open(path, &m->gguf, err);
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
        const char *head = m->opt.head ? m->opt.head : "f16";
        tern_model_weight *hw = head_weight(m);
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
    for (int i = 0; i < m->n_weights; i++)
        for (int s = 0; s < 2; s++)
            for (int p = 0; p < 2; p++)
                if (m->weights[i].have[s][p] && m->be[s] && m->be[s]->api->release &&
                    m->weights[i].packed[s][p].data != m->weights[i].file.data)
                    m->be[s]->api->release(m->be[s]->ctx, &m->weights[i].packed[s][p]);
    free(m->weights);
    tern_backend_free(m->be[1]);
    tern_backend_free(m->be[0]);
    tern_registry_free(m->reg);
    tern_tokenizer_free(m->tok);
    tern_gguf_close(m->gguf);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const tern_hparams *tern_model_hparams(const tern_model *m) { return &m->hp; }
const tern_tokenizer *tern_model_tokenizer(const tern_model *m) { return m->tok; }
const tern_gguf *tern_model_gguf(const tern_model *m) { return m->gguf; }
const tern_backend *tern_model_backend(const tern_model *m) { return m->be[0]; }
double tern_model_load_seconds(const tern_model *m) { return m->load_seconds; }

void tern_model_describe(const tern_model *m, char *buf, size_t n)
{
    char inst[256] = "";
    if (m->be[0]->api->describe) m->be[0]->api->describe(m->be[0]->ctx, inst, sizeof inst);
    snprintf(buf, n, "backend %s (%s), %d thread%s, head %s", m->be[0]->plugin->name, inst,
             m->opt.n_threads, m->opt.n_threads == 1 ? "" : "s", m->head_desc);
}

uint64_t tern_model_weight_bytes_per_token(const tern_model *m)
{
    uint64_t total = 0;
    for (int i = 0; i < m->n_weights; i++)
        for (int p = 0; p < 2; p++)
            if (m->weights[i].have[0][p]) total += tern_tensor_nbytes(&m->weights[i].packed[0][p]);
    return total;
}
