/* model_impl.h - runtime-internal parts of a loaded model. */
#ifndef TERN_MODEL_IMPL_H
#define TERN_MODEL_IMPL_H

#include <pthread.h>

#include "tern/model.h"
#include "tern/threadpool.h"

/* Placement of a weight for one (backend, purpose). */
enum {
    PLACED_NOT_YET = 0,
    PLACED_REPACKED,  /* the backend's repack() made it: release() frees */
    PLACED_FILE,      /* the file's bytes as mapped (host backends) */
    PLACED_UPLOADED,  /* the file's bytes uploaded into a buffer we own */
    PLACED_COPIED,    /* the weight's own copy of the file's bytes (tern_model_weight.copy) */
    PLACED_REFUSED    /* repack() said TERN_EUNSUPPORTED */
};

/* One weight of the model: the file's bytes and, per backend of the list
 * and purpose, where that backend reads it (made once, shared by
 * sessions). */
typedef struct tern_model_weight {
    struct tern_model *model;
    const tern_gguf_tensor *gt;
    tern_tensor file;              /* file layout, points into the mapping */
    int is_head;                   /* the output head (output.weight, or token_embd when tied) */
    void *copy;                    /* a parameter's bytes read once for every host backend (PLACED_COPIED) */
    tern_tensor placed[TERN_MAX_BACKENDS][TERN_REPACK_COUNT];
    uint8_t how[TERN_MAX_BACKENDS][TERN_REPACK_COUNT]; /* PLACED_* */
} tern_model_weight;

struct tern_model {
    tern_gguf *gguf;
    tern_hparams hp;
    tern_tokenizer *tok;
    tern_registry *reg;
    tern_backend *be[TERN_MAX_BACKENDS]; /* in order of preference; scalar last */
    int n_be;
    tern_threadpool *pool;         /* the process's shared pool (acquired) */
    tern_model_options opt;
    tern_model_weight *weights;    /* one per GGUF tensor, same order */
    int n_weights;
    pthread_mutex_t mu;            /* guards lazy repacks */
    double load_seconds;
    char path[1024];
    char head_desc[64];            /* what the output head is stored as */
    struct tern_packcache *pack;   /* the pack cache file mapped, or NULL */
    const char *pack_state;        /* "mapped", "written", "not kept", or NULL */
};

/* The weight as backend b reads it for purpose, placed on first use
 * (repack, the file view, or an upload). TERN_EUNSUPPORTED: b does not
 * take it (err not set). */
tern_status tern_model_weight_resolve(tern_model_weight *w, int b, int purpose,
                                      tern_tensor **out, tern_error *err);
tern_model_weight *tern_model_find_weight(tern_model *m, const char *name);

#endif
