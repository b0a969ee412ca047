/* model_impl.h - runtime-internal parts of a loaded model. */
#ifndef TERN_MODEL_IMPL_H
#define TERN_MODEL_IMPL_H

#include <pthread.h>

#include "tern/model.h"

/* One weight of the model: the file's bytes and, per backend slot and
 * purpose, that backend's repacked copy (made once, shared by sessions). */
typedef struct tern_model_weight {
    struct tern_model *model;
    const tern_gguf_tensor *gt;
    tern_tensor file;              /* file layout, points into the mapping */
    tern_tensor packed[2][2];      /* [slot][purpose] */
    int have[2][2];
} tern_model_weight;

struct tern_model {
    tern_gguf *gguf;
    tern_hparams hp;
    tern_tokenizer *tok;
    tern_registry *reg;
    tern_backend *be[2];           /* [0] chosen backend, [1] scalar if [0] is not */
    tern_model_options opt;
    tern_model_weight *weights;    /* one per GGUF tensor, same order */
    int n_weights;
    pthread_mutex_t mu;            /* guards lazy repacks */
    double load_seconds;
    char path[1024];
    char head_desc[64];            /* what the output head is stored as */
};

/* The repacked tensor for (slot, purpose), repacking on first use. */
tern_status tern_model_weight_resolve(tern_model_weight *w, int slot, int purpose,
                                      tern_tensor **out, tern_error *err);
tern_model_weight *tern_model_find_weight(tern_model *m, const char *name);

#endif
