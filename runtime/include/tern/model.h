/* tern/model.h - a model: the architecture and hyper-parameters read from a
 * GGUF file, the weights repacked for a backend, and the tokenizer. The
 * model is immutable once loaded and may be shared by many sessions. */
#ifndef TERN_MODEL_H
#define TERN_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "gguf.h"
#include "status.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Architectures tern runs; each maps to one Lua graph. */
typedef enum tern_arch {
    TERN_ARCH_BITNET_B158 = 0, /* "bitnet-b1.58" / "bitnet-25" (bitnet.cpp, 2B4T): relu^2 FFN */
    TERN_ARCH_BITNET = 1,      /* "bitnet" (llama.cpp, 1bitLLM): SiLU FFN unless the file says */
    TERN_ARCH_LLAMA = 2,       /* "llama": SiLU FFN, no sub-norms, float weights */
    TERN_ARCH_COUNT
} tern_arch;

typedef enum tern_ffn_act { TERN_ACT_SILU = 0, TERN_ACT_RELU_SQ = 1 } tern_ffn_act;

typedef struct tern_hparams {
    char arch_name[64];     /* general.architecture as written */
    int arch;               /* tern_arch */
    const char *graph;      /* Lua graph file: "bitnet_b158.lua" or "llama.lua" */
    int64_t n_vocab;        /* rows of token_embd */
    int64_t n_ctx_train;    /* <arch>.context_length */
    int64_t n_embd;         /* <arch>.embedding_length */
    int64_t n_layer;        /* <arch>.block_count */
    int64_t n_ff;           /* <arch>.feed_forward_length */
    int64_t n_head;         /* <arch>.attention.head_count */
    int64_t n_head_kv;      /* <arch>.attention.head_count_kv (default n_head) */
    int64_t head_dim;       /* n_embd / n_head */
    int64_t n_rot;          /* <arch>.rope.dimension_count (default head_dim) */
    float rope_freq_base;   /* <arch>.rope.freq_base (default 10000) */
    float rope_freq_scale;  /* 1 / <arch>.rope.scale_linear (default 1) */
    float norm_eps;         /* <arch>.attention.layer_norm_rms_epsilon */
    int rope_mode;          /* TERN_ROPE_NEOX for bitnet*, TERN_ROPE_NORMAL for llama */
    int ffn_act;            /* tern_ffn_act, from the arch or <arch>.hidden_activation/hidden_act */
    int tied_output;        /* no output.weight: logits use token_embd */
    int has_sub_norms;      /* attn_sub_norm / ffn_sub_norm present (bitnet) */
} tern_hparams;

/* Reads architecture and hyper-parameters; rejects unknown architectures
 * and impossible values (n_head not dividing n_embd, ...) with a message
 * naming the key and value. */
tern_status tern_hparams_read(const tern_gguf *g, tern_hparams *hp, tern_error *err);
/* Checks that every tensor the graph needs is present with the shape hp
 * implies and a type tern handles for that role; the message names the
 * tensor, the expected and the found shape or type. */
tern_status tern_hparams_check_tensors(const tern_gguf *g, const tern_hparams *hp,
                                       tern_error *err);

/* ---- a loaded model ---- */
typedef struct tern_model tern_model;

/* The output head a model gets unless told otherwise: a float head
 * quantized to Q8_0 at load. It reads 1.06 bytes a weight instead of 2 in
 * every decode step (the 2B4T head is half of a step's bytes); perplexity
 * over the shared models' 8192 validation tokens moved by +0.02% at most
 * (tiny-bitnet 102.0002 -> 102.0234, tiny-llama 85.6310 -> 85.6361).
 * "f16" keeps the head as the file stores it. */
#define TERN_HEAD_DEFAULT "q8"

typedef struct tern_model_options {
    uint32_t struct_size;
    const char *backend; /* backends in order of preference, comma-separated
                          * ("opencl,x86"); "auto" = the best probe score.
                          * scalar ends every list as the last resort. */
    int n_threads;       /* threads of the sessions on this model; 0 = the
                          * physical cores (tern_cpu_physical_cores) */
    const char *kernel;  /* backend kernel family: "auto" or a name */
    const char *head;    /* output head storage: "f16" (as stored) or "q8";
                          * NULL or "" = TERN_HEAD_DEFAULT */
    int device;          /* device backends: device index (tern info lists
                          * them), -1 = the backend's best */
    /* (optional) called while weights are packed at load, after each
     * weight, with the bytes done and the total (tern's CLI prints a
     * progress line from it for loads over a second) */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} tern_model_options;

tern_model_options tern_model_default_options(void);

/* A ready-made progress callback: once a load has run a second, a line on
 * stderr with the bytes packed, the total and the rate (updated in place
 * on a terminal; one line at the end otherwise). user points at a
 * tern_load_progress zeroed before the load. */
typedef struct tern_load_progress {
    double t0;  /* set on the first call */
    int shown;  /* lines printed */
} tern_load_progress;
void tern_load_progress_stderr(void *user, uint64_t done, uint64_t total);
/* Opens the file, checks it, loads the backend, repacks the weights for
 * it and releases the file pages the repacked copies replace. On failure
 * *out is NULL and nothing is left to free (tern/status.h). */
tern_status tern_model_load(const char *path, const tern_model_options *opt, tern_model **out,
                            tern_error *err);
/* Bytes a run of file g keeps resident for its weights: one copy of the
 * tensor data (packed weights replace the file pages they come from). A
 * load refuses a file whose weights exceed the machine's RAM
 * (tern_physical_memory), naming both, instead of swapping. */
uint64_t tern_model_weights_resident(const tern_gguf *g);
uint64_t tern_physical_memory(void);
void tern_model_free(tern_model *m); /* accepts NULL */
const tern_hparams *tern_model_hparams(const tern_model *m);
const tern_tokenizer *tern_model_tokenizer(const tern_model *m);
const tern_gguf *tern_model_gguf(const tern_model *m);
/* The first backend of the model's list (the preferred one). */
const tern_backend *tern_model_backend(const tern_model *m);
/* The whole list, scalar last. */
int tern_model_n_backends(const tern_model *m);
const tern_backend *tern_model_backend_at(const tern_model *m, int i);
double tern_model_load_seconds(const tern_model *m);
/* What the pack cache did at load: "mapped" (packed weights read from the
 * cache file), "written" (packed into a new one), "not kept" (packed, but
 * the file could not be kept), or NULL (not used; packcache.h says when). */
const char *tern_model_pack_cache(const tern_model *m);
/* Bytes of repacked weights the matmuls read for one decoded token (the
 * numerator of the bandwidth bound on decode speed). */
uint64_t tern_model_weight_bytes_per_token(const tern_model *m);
/* One line: backend, its instance description, the output head in use. */
void tern_model_describe(const tern_model *m, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
