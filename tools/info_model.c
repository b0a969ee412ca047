/* info_model.c - `tern info -m FILE`: what a GGUF model file holds, read
 * from its header alone: architecture and hyper-parameters, a tokenizer
 * summary (straight from tokenizer.ggml.* metadata), the tensor table,
 * totals, and the bits per weight of the ternary layers. Tensor data is
 * never touched (beyond the 4-byte I2_S scales the reader takes at open), so
 * this stays cheap on multi-GB files. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tern/gguf.h"
#include "tern/kernels.h"
#include "tern/model.h"
#include "wisdom.h"

static const char *human(double bytes, char *buf, size_t n)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
    return buf;
}

static void print_str(const tern_gguf *g, const char *key, const char *label)
{
    tern_gguf_str s;
    if (tern_gguf_get_str(g, key, &s, NULL) == TERN_OK)
        printf("%s%.*s\n", label, (int)(s.len > 200 ? 200 : s.len), s.ptr);
}

/* "<id> '<piece>'" for a special-token id key, or "-" when absent. */
static void token_ref(const tern_gguf *g, int64_t tokens, const char *key, char *buf, size_t n)
{
    int64_t id;
    if (tern_gguf_get_int(g, key, &id, NULL) != TERN_OK) {
        snprintf(buf, n, "-");
        return;
    }
    tern_gguf_str s = tokens >= 0 && id >= 0 ? tern_gguf_arr_str(g, tokens, (uint64_t)id)
                                             : (tern_gguf_str){NULL, 0};
    if (s.ptr)
        snprintf(buf, n, "%lld '%.*s'", (long long)id, (int)(s.len > 40 ? 40 : s.len), s.ptr);
    else
        snprintf(buf, n, "%lld", (long long)id);
}

static void print_tokenizer(const tern_gguf *g)
{
    tern_gguf_str model = {"-", 1}, pre = {"-", 1};
    tern_gguf_get_str(g, "tokenizer.ggml.model", &model, NULL);
    tern_gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL);
    int64_t tokens = tern_gguf_find_key(g, "tokenizer.ggml.tokens");
    uint64_t n_tok = 0, n_merges = 0;
    tern_gguf_vtype et;
    if (tokens >= 0 && (tern_gguf_kv_array(g, tokens, &et, &n_tok, NULL) || et != TERN_GGUF_STRING))
        tokens = -1, n_tok = 0;
    tern_gguf_get_array(g, "tokenizer.ggml.merges", NULL, &n_merges, NULL);
    if (tern_gguf_find_key(g, "tokenizer.ggml.model") < 0 && tokens < 0) {
        printf("tokenizer: none in this file\n");
        return;
    }
    char bos[96], eos[96], eot[96];
    token_ref(g, tokens, "tokenizer.ggml.bos_token_id", bos, sizeof bos);
    token_ref(g, tokens, "tokenizer.ggml.eos_token_id", eos, sizeof eos);
    token_ref(g, tokens, "tokenizer.ggml.eot_token_id", eot, sizeof eot);
    int add_bos = -1, add_eos = -1;
    tern_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, NULL);
    tern_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos, NULL);
    printf("tokenizer: model %.*s, pre %.*s, %" PRIu64 " tokens, %" PRIu64 " merges\n",
           (int)(model.len > 40 ? 40 : model.len), model.ptr, (int)(pre.len > 40 ? 40 : pre.len),
           pre.ptr, n_tok, n_merges);
    printf("  bos %s, eos %s, eot %s, add_bos %s, add_eos %s\n", bos, eos, eot,
           add_bos < 0 ? "-" : add_bos ? "true" : "false",
           add_eos < 0 ? "-" : add_eos ? "true" : "false");
}

static void print_hparams(const tern_hparams *hp)
{
    static const char *const arch_desc[] = {"BitNet b1.58 (bitnet.cpp / 2B4T)",
                                            "BitNet (llama.cpp / 1bitLLM)", "Llama"};
    printf("architecture: %s = %s; graph %s, FFN %s, rope %s%s\n", hp->arch_name,
           arch_desc[hp->arch], hp->graph, hp->ffn_act == TERN_ACT_RELU_SQ ? "relu^2" : "silu",
           hp->rope_mode == TERN_ROPE_NEOX ? "neox" : "normal",
           hp->has_sub_norms ? ", sub-norms" : "");
    printf("hyper-parameters:\n");
    printf("  n_vocab %-8lld n_ctx_train %-6lld n_embd %-6lld n_layer %-4lld n_ff %lld\n",
           (long long)hp->n_vocab, (long long)hp->n_ctx_train, (long long)hp->n_embd,
           (long long)hp->n_layer, (long long)hp->n_ff);
    printf("  n_head %-9lld n_head_kv %-8lld head_dim %-4lld n_rot %-6lld\n", (long long)hp->n_head,
           (long long)hp->n_head_kv, (long long)hp->head_dim, (long long)hp->n_rot);
    printf("  rope_freq_base %g, rope_freq_scale %g, norm_eps %g, output %s\n", hp->rope_freq_base,
           hp->rope_freq_scale, hp->norm_eps,
           hp->tied_output ? "tied to token_embd" : "output.weight");
}

typedef struct type_total {
    int64_t n_tensors;
    double n_el, bytes;
} type_total;

static void print_tensors(const tern_gguf *g)
{
    type_total tot[TERN_TYPE_COUNT];
    memset(tot, 0, sizeof tot);
    double all_el = 0, all_bytes = 0;
    printf("tensors:\n  %-4s %-32s %-6s %-22s %12s\n", "#", "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < tern_gguf_n_tensors(g); i++) {
        const tern_gguf_tensor *t = tern_gguf_tensor_at(g, i);
        char shape[96];
        int k = snprintf(shape, sizeof shape, "[");
        double n_el = 1;
        for (int d = 0; d < t->n_dims; d++) {
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", d ? ", " : "",
                          (long long)t->ne[d]);
            n_el *= (double)t->ne[d];
        }
        snprintf(shape + k, sizeof shape - (size_t)k, "]");
        printf("  %-4lld %-32s %-6s %-22s %12" PRIu64 "\n", (long long)i, t->name_z,
               tern_type_name(t->type), shape, t->size);
        tot[t->type].n_tensors++;
        tot[t->type].n_el += n_el;
        tot[t->type].bytes += (double)t->size;
        all_el += n_el;
        all_bytes += (double)t->size;
    }
    char h[32];
    printf("totals: %lld tensors, %.3f M parameters, %s of tensor data\n",
           (long long)tern_gguf_n_tensors(g), all_el / 1e6, human(all_bytes, h, sizeof h));
    double tern_el = 0, tern_bytes = 0;
    for (int ty = 0; ty < TERN_TYPE_COUNT; ty++) {
        if (!tot[ty].n_tensors) continue;
        printf("  %-6s %4lld tensors %12.3f M params %12s  %.4f bits/weight\n", tern_type_name(ty),
               (long long)tot[ty].n_tensors, tot[ty].n_el / 1e6, human(tot[ty].bytes, h, sizeof h),
               tot[ty].n_el ? tot[ty].bytes * 8 / tot[ty].n_el : 0.0);
        if (tern_type_get(ty)->is_ternary) {
            tern_el += tot[ty].n_el;
            tern_bytes += tot[ty].bytes;
        }
    }
    if (tern_el > 0)
        printf("ternary layers: %.3f M weights in %s: %.4f bits/weight\n", tern_el / 1e6,
               human(tern_bytes, h, sizeof h), tern_bytes * 8 / tern_el);
    else
        printf("ternary layers: none\n");
}

/* What a run of this file will keep resident, before it starts. */
static void print_memory(const tern_gguf *g, const tern_hparams *hp)
{
    double weights = (double)tern_model_weights_resident(g), ram = (double)tern_physical_memory();
    int64_t ctx = hp->n_ctx_train > 0 && hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    double kv = 2.0 * (double)hp->n_layer * (double)ctx * (double)hp->n_head_kv * (double)hp->head_dim * 2;
    char w[32], k[32], r[32];
    printf("memory: weights %s resident (one copy), KV cache %s at %lld tokens (f16); RAM %s: %s\n",
           human(weights, w, sizeof w), human(kv, k, sizeof k), (long long)ctx, human(ram, r, sizeof r),
           weights > ram ? "does not fit (tern refuses to load it)" : weights + kv > ram ? "tight" : "fits");
}

/* The cache folder as the runtime computes it (tern_cache_dir), else
 * ./.cache/tern without HOME. */
static void cache_folder(char *buf, size_t n)
{
    if (!tern_cache_dir(buf, n)) snprintf(buf, n, "./.cache/tern");
}

/* Per distinct ternary weight shape: what the tuning record (if this
 * machine's and readable) names, from the header and the record alone; the
 * loaded backend's exact choice is `--backend auto`'s describe line. */
static void print_kernels(const tern_gguf *g)
{
    char dir[4096], path[4200], err[300];
    cache_folder(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/wisdom.lua", dir);
    static tw_record rec;
    const char *why = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        why = "not tuned (no wisdom.lua)";
    } else {
        fclose(f);
        if (tw_read(path, &rec, err, sizeof err) ||
            tw_check(&rec, TERN_VERSION, TERN_KERNELS_ABI_VERSION, tern_cpu_features(), err, sizeof err))
            why = err;
    }
    printf("ternary kernels per weight shape (x86; tuning record %s: %s):\n", path, why ? why : "valid");
    int64_t seen[64][2];
    int n_seen = 0;
    for (int64_t i = 0; i < tern_gguf_n_tensors(g) && n_seen < 64; i++) {
        const tern_gguf_tensor *t = tern_gguf_tensor_at(g, i);
        if (!t || (t->type != TERN_TYPE_TQ1_0 && t->type != TERN_TYPE_TQ2_0 && t->type != TERN_TYPE_I2_S)) continue;
        int64_t K = t->ne[0], N = 1;
        for (int d = 1; d < t->n_dims; d++) N *= t->ne[d];
        int dup = 0;
        for (int j = 0; j < n_seen; j++) dup |= seen[j][0] == K && seen[j][1] == N;
        if (dup) continue;
        seen[n_seen][0] = K, seen[n_seen][1] = N, n_seen++;
        const tw_shape *s = NULL;
        for (int j = 0; !why && j < rec.n_shapes; j++)
            if (rec.shapes[j].K == K && rec.shapes[j].N == N) s = &rec.shapes[j];
        if (s)
            printf("  %lld x %lld: gemv %s, gemm %s (wisdom: %s)\n", (long long)K, (long long)N, s->gemv, s->gemm, s->why);
        else
            printf("  %lld x %lld: plugin record or built-in default (exact choice: tern info -m M --backend auto)\n",
                   (long long)K, (long long)N);
    }
}

int info_model(const char *path)
{
    tern_gguf *g;
    tern_error err;
    if (tern_gguf_open(path, &g, &err)) return cli_fail("info", "%s", err.msg);
    char h[32];
    printf("model: %s\n  %s, GGUF v%u, %lld keys, %lld tensors, alignment %" PRIu64
           ", data at byte %" PRIu64 "\n",
           path, human((double)tern_gguf_file_size(g), h, sizeof h), tern_gguf_version(g),
           (long long)tern_gguf_n_kv(g), (long long)tern_gguf_n_tensors(g), tern_gguf_alignment(g),
           tern_gguf_data_offset(g));
    print_str(g, "general.name", "name: ");
    int64_t ft;
    if (tern_gguf_get_int(g, "general.file_type", &ft, NULL) == TERN_OK)
        printf("file type: %lld\n", (long long)ft);
    tern_hparams hp;
    tern_error herr;
    tern_status hst = tern_hparams_read(g, &hp, &herr);
    if (hst == TERN_OK) {
        print_hparams(&hp);
        hst = tern_hparams_check_tensors(g, &hp, &herr);
    } else {
        print_str(g, "general.architecture", "architecture: ");
    }
    print_tokenizer(g);
    print_tensors(g);
    if (hst == TERN_OK) print_memory(g, &hp);
    print_kernels(g);
    tern_gguf_close(g);
    if (hst) return cli_fail("info", "%s", herr.msg);
    printf("check: every tensor the %s graph needs is present with the expected shape and type\n",
           hp.graph);
    return 0;
}
