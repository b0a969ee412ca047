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

#ifdef __cplusplus
}
#endif
#endif
