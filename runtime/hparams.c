/* hparams.c - architecture and hyper-parameters from GGUF metadata, and the
 * check that a file holds every tensor its graph needs, with the right shape
 * and a type tern handles for that role.
 *
 * Architectures (general.architecture):
 *   bitnet-b1.58, bitnet-25  bitnet.cpp / 2B4T: relu^2 FFN, NEOX rope, sub-norms
 *   bitnet                   llama.cpp / 1bitLLM: SiLU FFN unless the file says
 *                            relu2 in <arch>.hidden_activation or hidden_act
 *   llama                    SiLU FFN, NORMAL rope, no sub-norms, float weights */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tern/model.h"
#include "tern/op.h"

static const struct arch_row {
    const char *name;
    int arch;
} arch_table[] = {
    {"bitnet-b1.58", TERN_ARCH_BITNET_B158},
    {"bitnet-25", TERN_ARCH_BITNET_B158},
    {"bitnet", TERN_ARCH_BITNET},
    {"llama", TERN_ARCH_LLAMA},
};

#define N_ARCH (sizeof arch_table / sizeof arch_table[0])

/* Reads <arch>.<suffix> as an integer in [lo, hi]; def < 0 means required. */
static tern_status key_int(const tern_gguf *g, const tern_hparams *hp, const char *suffix,
                           int64_t def, int64_t lo, int64_t hi, int64_t *out, tern_error *err)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", hp->arch_name, suffix);
    tern_status st = tern_gguf_get_int(g, key, out, err);
    if (st == TERN_ENOTFOUND && def >= 0) {
        *out = def;
        return TERN_OK;
    }
    if (st == TERN_ENOTFOUND)
        return tern_error_set(err, TERN_EFORMAT, "%s: required key '%s' is missing",
                              tern_gguf_path(g), key);
    if (st) return st;
    if (*out < lo || *out > hi)
        return tern_error_set(err, TERN_EFORMAT, "%s: key '%s' = %lld is outside [%lld, %lld]",
                              tern_gguf_path(g), key, (long long)*out, (long long)lo, (long long)hi);
    return TERN_OK;
}

static tern_status key_float(const tern_gguf *g, const tern_hparams *hp, const char *suffix,
                             double def, double *out, tern_error *err)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", hp->arch_name, suffix);
    tern_status st = tern_gguf_get_float(g, key, out, err);
    if (st == TERN_ENOTFOUND) {
        *out = def;
        return TERN_OK;
    }
    if (st) return st;
    if (!isfinite(*out) || *out <= 0)
        return tern_error_set(err, TERN_EFORMAT, "%s: key '%s' = %g must be a positive number",
                              tern_gguf_path(g), key, *out);
    return TERN_OK;
}

/* The FFN activation a bitnet file asks for, if it says. */
static tern_status read_activation(const tern_gguf *g, tern_hparams *hp, tern_error *err)
{
    static const char *const keys[] = {"hidden_activation", "hidden_act"};
    static const char *const relu2[] = {"relu2", "relu_squared", "relu^2", "relu_sq", "squared_relu"};
    static const char *const silu[] = {"silu", "swish", "swiglu"};
    for (size_t k = 0; k < 2; k++) {
        char key[160];
        tern_gguf_str v;
        snprintf(key, sizeof key, "%s.%s", hp->arch_name, keys[k]);
        tern_status st = tern_gguf_get_str(g, key, &v, err);
        if (st == TERN_ENOTFOUND) continue;
        if (st) return st;
        for (size_t i = 0; i < sizeof relu2 / sizeof relu2[0]; i++)
            if (v.len == strlen(relu2[i]) && memcmp(v.ptr, relu2[i], v.len) == 0) {
                hp->ffn_act = TERN_ACT_RELU_SQ;
                return TERN_OK;
            }
        for (size_t i = 0; i < sizeof silu / sizeof silu[0]; i++)
            if (v.len == strlen(silu[i]) && memcmp(v.ptr, silu[i], v.len) == 0) {
                hp->ffn_act = TERN_ACT_SILU;
                return TERN_OK;
            }
        return tern_error_set(err, TERN_EUNSUPPORTED,
                              "%s: key '%s' = '%.*s' is not an activation tern knows (relu2, silu)",
                              tern_gguf_path(g), key, (int)(v.len > 64 ? 64 : v.len), v.ptr);
    }
    return TERN_OK;
}

static tern_status read_arch(const tern_gguf *g, tern_hparams *hp, tern_error *err)
{
    tern_gguf_str a;
    tern_status st = tern_gguf_get_str(g, "general.architecture", &a, err);
    if (st == TERN_ENOTFOUND)
        return tern_error_set(err, TERN_EFORMAT, "%s: key 'general.architecture' is missing",
                              tern_gguf_path(g));
    if (st) return st;
    if (a.len >= sizeof hp->arch_name || memchr(a.ptr, 0, a.len))
        return tern_error_set(err, TERN_EUNSUPPORTED,
                              "%s: general.architecture '%.*s' is not supported", tern_gguf_path(g),
                              (int)(a.len > 64 ? 64 : a.len), a.ptr);
    memcpy(hp->arch_name, a.ptr, a.len);
    hp->arch_name[a.len] = 0;
    hp->arch = -1;
    for (size_t i = 0; i < N_ARCH; i++)
        if (strcmp(hp->arch_name, arch_table[i].name) == 0) hp->arch = arch_table[i].arch;
    if (hp->arch < 0)
        return tern_error_set(err, TERN_EUNSUPPORTED,
                              "%s: general.architecture '%s' is not supported (tern runs bitnet-b1.58, "
                              "bitnet-25, bitnet and llama)", tern_gguf_path(g), hp->arch_name);
    int bitnet = hp->arch != TERN_ARCH_LLAMA;
    hp->graph = bitnet ? "bitnet_b158.lua" : "llama.lua";
    hp->rope_mode = bitnet ? TERN_ROPE_NEOX : TERN_ROPE_NORMAL;
    hp->has_sub_norms = bitnet;
    hp->ffn_act = hp->arch == TERN_ARCH_BITNET_B158 ? TERN_ACT_RELU_SQ : TERN_ACT_SILU;
    return bitnet ? read_activation(g, hp, err) : TERN_OK;
}

tern_status tern_hparams_read(const tern_gguf *g, tern_hparams *hp, tern_error *err)
{
    memset(hp, 0, sizeof *hp);
    tern_status st = read_arch(g, hp, err);
    if (st) return st;
    const int64_t big = (int64_t)1 << 20;
    if ((st = key_int(g, hp, "context_length", -1, 1, (int64_t)1 << 24, &hp->n_ctx_train, err)) ||
        (st = key_int(g, hp, "embedding_length", -1, 1, big, &hp->n_embd, err)) ||
        (st = key_int(g, hp, "block_count", -1, 1, 4096, &hp->n_layer, err)) ||
        (st = key_int(g, hp, "feed_forward_length", -1, 1, big, &hp->n_ff, err)) ||
        (st = key_int(g, hp, "attention.head_count", -1, 1, 4096, &hp->n_head, err)) ||
        (st = key_int(g, hp, "attention.head_count_kv", hp->n_head, 1, hp->n_head, &hp->n_head_kv,
                      err)))
        return st;
    const char *path = tern_gguf_path(g);
    if (hp->n_embd % hp->n_head != 0)
        return tern_error_set(err, TERN_EFORMAT,
                              "%s: %s.embedding_length %lld is not a multiple of "
                              "attention.head_count %lld", path, hp->arch_name,
                              (long long)hp->n_embd, (long long)hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return tern_error_set(err, TERN_EFORMAT,
                              "%s: %s.attention.head_count %lld is not a multiple of head_count_kv %lld",
                              path, hp->arch_name, (long long)hp->n_head, (long long)hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = key_int(g, hp, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot, err)))
        return st;
    if (hp->n_rot % 2 != 0)
        return tern_error_set(err, TERN_EFORMAT, "%s: %s.rope.dimension_count %lld is odd", path,
                              hp->arch_name, (long long)hp->n_rot);
    double base, scale, eps;
    if ((st = key_float(g, hp, "rope.freq_base", 10000.0, &base, err)) ||
        (st = key_float(g, hp, "rope.scale_linear", 1.0, &scale, err)) ||
        (st = key_float(g, hp, "attention.layer_norm_rms_epsilon", 1e-5, &eps, err)))
        return st;
    hp->rope_freq_base = (float)base;
    hp->rope_freq_scale = (float)(1.0 / scale);
    hp->norm_eps = (float)eps;
    const tern_gguf_tensor *embd = tern_gguf_find_tensor(g, "token_embd.weight");
    int64_t vocab = 0;
    if (embd) {
        vocab = embd->ne[1];
    } else if (key_int(g, hp, "vocab_size", 0, 0, (int64_t)1 << 31, &vocab, NULL) != TERN_OK) {
        vocab = 0;
    }
    hp->n_vocab = vocab;
    hp->tied_output = tern_gguf_find_tensor(g, "output.weight") == NULL;
    return TERN_OK;
}

/* ---- tensor checks ---- */

enum {
    ROLE_EMBD,   /* token_embd / output: any float, q8_0 or ternary */
    ROLE_NORM,   /* f32 */
    ROLE_LINEAR, /* bitnet: ternary; llama: float or q8_0 */
};

static int type_ok(int role, int arch, int type)
{
    int fl = type == TERN_TYPE_F32 || type == TERN_TYPE_F16 || type == TERN_TYPE_BF16;
    int tern = type == TERN_TYPE_TQ1_0 || type == TERN_TYPE_TQ2_0 || type == TERN_TYPE_I2_S;
    switch (role) {
    case ROLE_EMBD: return fl || tern || type == TERN_TYPE_Q8_0;
    case ROLE_NORM: return type == TERN_TYPE_F32;
    default: return arch == TERN_ARCH_LLAMA ? fl || type == TERN_TYPE_Q8_0 : tern;
    }
}

static const char *role_types(int role, int arch)
{
    switch (role) {
    case ROLE_EMBD: return "f32, f16, bf16, q8_0, tq1_0, tq2_0 or i2_s";
    case ROLE_NORM: return "f32";
    default:
        return arch == TERN_ARCH_LLAMA
                   ? "f32, f16, bf16 or q8_0"
                   : "ternary tq1_0, tq2_0 or i2_s (tern does not quantize float bitnet linears: "
                     "convert with llama-quantize --type tq2_0 or bitnet.cpp's i2_s)";
    }
}

static void shape_str(char *buf, size_t n, const int64_t *ne, int n_dims)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < n_dims && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)ne[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Checks one tensor: present (unless optional), shape [ne0] or [ne0, ne1], type for role. */
static tern_status check_one(const tern_gguf *g, const tern_hparams *hp, const char *name,
                             int64_t ne0, int64_t ne1, int role, int optional, tern_error *err)
{
    const tern_gguf_tensor *t = tern_gguf_find_tensor(g, name);
    if (!t) {
        if (optional) return TERN_OK;
        return tern_error_set(err, TERN_EFORMAT, "%s: tensor '%s' is missing (architecture %s needs it)",
                              tern_gguf_path(g), name, hp->arch_name);
    }
    int64_t want[2] = {ne0, ne1};
    int want_dims = ne1 > 0 ? 2 : 1;
    int ok = t->ne[0] == ne0 && t->ne[1] == (ne1 > 0 ? ne1 : 1) && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, want, want_dims);
        shape_str(b, sizeof b, t->ne, t->n_dims);
        return tern_error_set(err, TERN_EFORMAT, "%s: tensor '%s': expected shape %s, found %s",
                              tern_gguf_path(g), name, a, b);
    }
    if (!type_ok(role, hp->arch, t->type))
        return tern_error_set(err, TERN_EUNSUPPORTED,
                              "%s: tensor '%s': type %s is not usable here; %s expects %s",
                              tern_gguf_path(g), name, tern_type_name(t->type), hp->arch_name,
                              role_types(role, hp->arch));
    return TERN_OK;
}

tern_status tern_hparams_check_tensors(const tern_gguf *g, const tern_hparams *hp,
                                       tern_error *err)
{
    const int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    const int64_t Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    tern_status st;
    if (!tern_gguf_find_tensor(g, "token_embd.weight"))
        return check_one(g, hp, "token_embd.weight", E, V, ROLE_EMBD, 0, err);
    if ((st = check_one(g, hp, "token_embd.weight", E, V, ROLE_EMBD, 0, err)) ||
        (st = check_one(g, hp, "output_norm.weight", E, 0, ROLE_NORM, 0, err)) ||
        (st = check_one(g, hp, "output.weight", E, V, ROLE_EMBD, 1, err)))
        return st;
    static const struct {
        const char *name;
        int rows, cols; /* 0 = none, 1 = E, 2 = F, 3 = Q, 4 = KV */
        int role, bitnet_only;
    } layer[] = {
        {"attn_norm", 1, 0, ROLE_NORM, 0},     {"attn_q", 1, 3, ROLE_LINEAR, 0},
        {"attn_k", 1, 4, ROLE_LINEAR, 0},      {"attn_v", 1, 4, ROLE_LINEAR, 0},
        {"attn_sub_norm", 3, 0, ROLE_NORM, 1}, {"attn_output", 3, 1, ROLE_LINEAR, 0},
        {"ffn_norm", 1, 0, ROLE_NORM, 0},      {"ffn_gate", 1, 2, ROLE_LINEAR, 0},
        {"ffn_up", 1, 2, ROLE_LINEAR, 0},      {"ffn_sub_norm", 2, 0, ROLE_NORM, 1},
        {"ffn_down", 2, 1, ROLE_LINEAR, 0},
    };
    const int64_t dim[5] = {0, E, F, Q, KV};
    for (int64_t l = 0; l < hp->n_layer; l++)
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            if (layer[i].bitnet_only && !hp->has_sub_norms) continue;
            char name[96];
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l, layer[i].name);
            if ((st = check_one(g, hp, name, dim[layer[i].rows], dim[layer[i].cols], layer[i].role,
                                0, err)))
                return st;
        }
    return TERN_OK;
}
