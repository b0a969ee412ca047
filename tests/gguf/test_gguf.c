/* test_gguf.c - the GGUF reader on every shared file, decoded values across
 * files that hold the same weights, hyper-parameters, the writer round trip,
 * and `tern synth` against the reference layout. The hostile-file cases are
 * in test_hostile.c and join this suite. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/testutil.h"
#include "tern/gguf.h"
#include "tern/model.h"
#include "tern/tern.h"

void gguf_add_hostile_cases(Suite *s); /* test_hostile.c */

static char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/tern-gguf-test-%d-%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), name);
    return buf;
}

static tern_gguf *open_shared(const char *rel)
{
    char path[4096];
    tern_gguf *g = NULL;
    tern_error err;
    ck_assert_ptr_nonnull(tu_shared_path(path, sizeof path, rel));
    tern_status st = tern_gguf_open(path, &g, &err);
    ck_assert_msg(st == TERN_OK, "%s: %s", rel, err.msg);
    return g;
}

/* Touches every key, every array element and every tensor's metadata. */
static void walk_all(const tern_gguf *g)
{
    for (int64_t i = 0; i < tern_gguf_n_kv(g); i++) {
        tern_gguf_str k = tern_gguf_key(g, i);
        ck_assert_ptr_nonnull(k.ptr);
        char key[512];
        ck_assert_uint_lt(k.len, sizeof key);
        memcpy(key, k.ptr, k.len);
        key[k.len] = 0;
        ck_assert_int_eq(tern_gguf_find_key(g, key), i);
        tern_gguf_vtype et;
        uint64_t n;
        if (tern_gguf_kv_array(g, i, &et, &n, NULL) == TERN_OK) {
            for (uint64_t j = 0; j < n; j++) {
                if (et == TERN_GGUF_STRING) ck_assert_ptr_nonnull(tern_gguf_arr_str(g, i, j).ptr);
                else if (et == TERN_GGUF_F32 || et == TERN_GGUF_F64) (void)tern_gguf_arr_float(g, i, j);
                else (void)tern_gguf_arr_int(g, i, j);
            }
        }
    }
    for (int64_t i = 0; i < tern_gguf_n_tensors(g); i++) {
        const tern_gguf_tensor *t = tern_gguf_tensor_at(g, i);
        ck_assert_ptr_eq(tern_gguf_find_tensor(g, t->name_z), t);
        ck_assert_uint_eq(t->offset % tern_gguf_alignment(g), 0);
        ck_assert((const uint8_t *)t->data + t->size <=
                  (const uint8_t *)tern_gguf_base(g) + tern_gguf_file_size(g));
    }
}

static const char *const shared_dirs[] = {"ref/models", "models", "ref/tokenizer"};

START_TEST(test_open_every_shared_gguf)
{
    TU_REQUIRE_SHARED();
    int n_files = 0;
    for (size_t d = 0; d < 3; d++) {
        char dir[4096];
        tu_shared_path(dir, sizeof dir, shared_dirs[d]);
        DIR *dp = opendir(dir);
        ck_assert_ptr_nonnull(dp);
        for (struct dirent *e; (e = readdir(dp));) {
            size_t n = strlen(e->d_name);
            if (n < 5 || strcmp(e->d_name + n - 5, ".gguf") != 0) continue;
            char rel[1024];
            snprintf(rel, sizeof rel, "%s/%s", shared_dirs[d], e->d_name);
            tern_gguf *g = open_shared(rel);
            ck_assert_int_eq(tern_gguf_version(g), 3);
            ck_assert_int_gt(tern_gguf_n_kv(g), 0);
            walk_all(g);
            if (d < 2) { /* the models: hyper-parameters and every tensor check out */
                tern_hparams hp;
                tern_error err;
                ck_assert_msg(tern_hparams_read(g, &hp, &err) == TERN_OK, "%s: %s", rel, err.msg);
                ck_assert_msg(tern_hparams_check_tensors(g, &hp, &err) == TERN_OK, "%s: %s", rel,
                              err.msg);
            }
            tern_gguf_close(g);
            n_files++;
        }
        closedir(dp);
    }
    ck_assert_int_ge(n_files, 8);
}
END_TEST

/* Every ternary tensor of a decodes to the same floats as the same tensor of b;
 * other tensors must be byte-identical when both files store the same type. */
static void same_weights(const char *rel_a, const char *rel_b, int expect_ternary)
{
    tern_gguf *a = open_shared(rel_a), *b = open_shared(rel_b);
    ck_assert_int_eq(tern_gguf_n_tensors(a), tern_gguf_n_tensors(b));
    int n_tern = 0;
    for (int64_t i = 0; i < tern_gguf_n_tensors(a); i++) {
        const tern_gguf_tensor *ta = tern_gguf_tensor_at(a, i);
        const tern_gguf_tensor *tb = tern_gguf_find_tensor(b, ta->name_z);
        ck_assert_msg(tb != NULL, "%s missing in %s", ta->name_z, rel_b);
        ck_assert_mem_eq(ta->ne, tb->ne, sizeof ta->ne);
        if (ta->type == tb->type) {
            ck_assert_uint_eq(ta->size, tb->size);
            ck_assert_msg(memcmp(ta->data, tb->data, ta->size) == 0, "%s differs", ta->name_z);
            continue;
        }
        ck_assert(tern_type_get(ta->type)->is_ternary && tern_type_get(tb->type)->is_ternary);
        tern_tensor va, vb;
        tern_gguf_tensor_view(ta, &va);
        tern_gguf_tensor_view(tb, &vb);
        int64_t K = ta->ne[0], rows = ta->ne[1];
        float *ra = malloc((size_t)K * sizeof *ra), *rb = malloc((size_t)K * sizeof *rb);
        float sa, sb;
        ck_assert_int_eq(tern_ternary_tensor_scale(&va, &sa, NULL), TERN_OK);
        ck_assert_int_eq(tern_ternary_tensor_scale(&vb, &sb, NULL), TERN_OK);
        ck_assert_msg(sa == sb, "%s: scale %g vs %g", ta->name_z, sa, sb);
        for (int64_t r = 0; r < rows; r++) {
            ck_assert_int_eq(tern_dequantize_rows(&va, r, 1, ra, NULL), TERN_OK);
            ck_assert_int_eq(tern_dequantize_rows(&vb, r, 1, rb, NULL), TERN_OK);
            ck_assert_msg(memcmp(ra, rb, (size_t)K * sizeof *ra) == 0, "%s row %lld differs",
                          ta->name_z, (long long)r);
        }
        free(ra);
        free(rb);
        n_tern++;
    }
    ck_assert_int_eq(n_tern, expect_ternary);
    tern_gguf_close(a);
    tern_gguf_close(b);
}

START_TEST(test_ref_tq2_0_equals_i2_s)
{
    TU_REQUIRE_SHARED();
    same_weights("ref/models/tiny-bitnet-tq2_0.gguf", "ref/models/tiny-b158-i2_s.gguf", 4 * 7);
}
END_TEST

START_TEST(test_models_tq2_0_equals_i2_s)
{
    TU_REQUIRE_SHARED();
    same_weights("models/tiny-bitnet.gguf", "models/tiny-bitnet-i2_s.gguf", 6 * 7);
}
END_TEST

/* README section 2: every 32-value block of the reference token_embd is
 * 2^-k * q with k in {9,10,11} and one |q| = 127, so the Q8_0 block scale is
 * exactly 2^-k and every value is exact in F16: the Q8_0 table equals the
 * F16 table it came from, value for value. */
START_TEST(test_ref_q8_0_embd_is_exact_f16)
{
    TU_REQUIRE_SHARED();
    tern_gguf *g = open_shared("ref/models/tiny-bitnet-tq2_0.gguf");
    const tern_gguf_tensor *t = tern_gguf_find_tensor(g, "token_embd.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->type, TERN_TYPE_Q8_0);
    tern_tensor v;
    tern_gguf_tensor_view(t, &v);
    float row[256];
    for (int64_t r = 0; r < t->ne[1]; r += 97) {
        ck_assert_int_eq(tern_dequantize_rows(&v, r, 1, row, NULL), TERN_OK);
        for (int b = 0; b < 256 / 32; b++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) {
                float x = row[32 * b + i];
                ck_assert_msg(tern_f16_to_f32(tern_f32_to_f16(x)) == x, "row %lld: %g not exact",
                              (long long)r, x);
                amax = fmaxf(amax, fabsf(x));
            }
            ck_assert_msg(amax == 127.0f / 512 || amax == 127.0f / 1024 || amax == 127.0f / 2048,
                          "row %lld block %d: amax %g", (long long)r, b, amax);
        }
    }
    tern_gguf_close(g);
}
END_TEST

START_TEST(test_hparams_of_refs)
{
    TU_REQUIRE_SHARED();
    tern_hparams hp;
    tern_error err;
    tern_gguf *g = open_shared("ref/models/tiny-b158-i2_s.gguf");
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(hp.arch, TERN_ARCH_BITNET_B158);
    ck_assert_int_eq(hp.ffn_act, TERN_ACT_RELU_SQ);
    ck_assert_int_eq(hp.rope_mode, TERN_ROPE_NEOX);
    ck_assert_str_eq(hp.graph, "bitnet_b158.lua");
    ck_assert_int_eq(hp.n_vocab, 128256);
    ck_assert_int_eq(hp.n_embd, 256);
    ck_assert_int_eq(hp.n_layer, 4);
    ck_assert_int_eq(hp.n_ff, 768);
    ck_assert_int_eq(hp.n_head, 8);
    ck_assert_int_eq(hp.n_head_kv, 2);
    ck_assert_int_eq(hp.head_dim, 32);
    ck_assert_int_eq(hp.n_rot, 32);
    ck_assert_float_eq(hp.rope_freq_base, 500000.0f);
    ck_assert_float_eq(hp.norm_eps, 1e-5f);
    ck_assert(hp.tied_output && hp.has_sub_norms);
    /* I2_S scales come from the trailer; equal the TQ2_0 file's block scale */
    ck_assert_float_eq(tern_gguf_find_tensor(g, "blk.0.attn_q.weight")->scale, 0.0234375f);
    tern_gguf_close(g);

    g = open_shared("ref/models/tiny-bitnet-tq2_0.gguf");
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(hp.arch, TERN_ARCH_BITNET);
    ck_assert_int_eq(hp.ffn_act, TERN_ACT_SILU);
    ck_assert_str_eq(hp.arch_name, "bitnet");
    tern_gguf_close(g);

    g = open_shared("models/tiny-llama.gguf");
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(hp.arch, TERN_ARCH_LLAMA);
    ck_assert_int_eq(hp.rope_mode, TERN_ROPE_NORMAL);
    ck_assert_str_eq(hp.graph, "llama.lua");
    ck_assert_int_eq(hp.n_layer, 7);
    ck_assert_int_eq(hp.n_vocab, 8192);
    ck_assert(!hp.has_sub_norms);
    ck_assert_int_eq(tern_hparams_check_tensors(g, &hp, &err), TERN_OK);
    tern_gguf_close(g);

    g = open_shared("models/tiny-bitnet.gguf");
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(hp.n_embd, 512);
    ck_assert_int_eq(hp.head_dim, 64);
    /* a bitnet file read as llama: ternary linears are refused, naming the tensor */
    tern_hparams ll = hp;
    ll.arch = TERN_ARCH_LLAMA;
    ll.has_sub_norms = 0;
    ck_assert_int_eq(tern_hparams_check_tensors(g, &ll, &err), TERN_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "blk.0.attn_q.weight"));
    ck_assert_ptr_nonnull(strstr(err.msg, "tq2_0"));
    /* a wrong hyper-parameter shows up as a shape mismatch naming both shapes */
    tern_hparams bad = hp;
    bad.n_ff = 1024;
    ck_assert_int_eq(tern_hparams_check_tensors(g, &bad, &err), TERN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "expected shape [512, 1024], found [512, 1280]"));
    tern_gguf_close(g);
}
END_TEST

/* A metadata-only file with the given arch and keys, opened. */
static tern_gguf *hp_file(const char *arch, const char *drop, const char *act_key, const char *act,
                          uint32_t embd)
{
    tern_gguf_writer *w;
    tern_error err;
    ck_assert_int_eq(tern_gguf_writer_create(&w, &err), TERN_OK);
    tern_gguf_set_str(w, "general.architecture", arch);
    static const char *const keys[] = {"context_length", "embedding_length", "block_count",
                                       "feed_forward_length", "attention.head_count"};
    const uint32_t vals[] = {512, embd, 2, 1024, 8};
    char key[128];
    for (int i = 0; i < 5; i++) {
        if (drop && strcmp(drop, keys[i]) == 0) continue;
        snprintf(key, sizeof key, "%s.%s", arch, keys[i]);
        tern_gguf_set_u32(w, key, vals[i]);
    }
    if (act_key) {
        snprintf(key, sizeof key, "%s.%s", arch, act_key);
        tern_gguf_set_str(w, key, act);
    }
    char path[512];
    tmp_path(path, sizeof path, "hp.gguf");
    ck_assert_int_eq(tern_gguf_write(w, path, &err), TERN_OK);
    tern_gguf_writer_free(w);
    tern_gguf *g;
    ck_assert_int_eq(tern_gguf_open(path, &g, &err), TERN_OK);
    unlink(path); /* the mapping stays valid */
    return g;
}

START_TEST(test_hparams_errors)
{
    tern_hparams hp;
    tern_error err;
    tern_gguf *g = hp_file("gpt2", NULL, NULL, NULL, 512);
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "'gpt2' is not supported"));
    tern_gguf_close(g);
    g = hp_file("llama", "block_count", NULL, NULL, 512);
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "'llama.block_count' is missing"));
    tern_gguf_close(g);
    g = hp_file("bitnet", NULL, NULL, NULL, 500);
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "embedding_length 500 is not a multiple"));
    tern_gguf_close(g);
    /* defaults, and the activation a file may name */
    g = hp_file("bitnet", NULL, NULL, NULL, 512);
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert(hp.ffn_act == TERN_ACT_SILU && hp.n_head_kv == 8 && hp.n_rot == 64 &&
              hp.rope_freq_base == 10000.0f && hp.rope_mode == TERN_ROPE_NEOX && hp.n_vocab == 0);
    ck_assert_int_eq(tern_hparams_check_tensors(g, &hp, &err), TERN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "'token_embd.weight' is missing"));
    tern_gguf_close(g);
    g = hp_file("bitnet", NULL, "hidden_act", "relu2", 512);
    ck_assert(tern_hparams_read(g, &hp, &err) == TERN_OK && hp.ffn_act == TERN_ACT_RELU_SQ);
    tern_gguf_close(g);
    g = hp_file("bitnet", NULL, "hidden_activation", "relu_squared", 512);
    ck_assert(tern_hparams_read(g, &hp, &err) == TERN_OK && hp.ffn_act == TERN_ACT_RELU_SQ);
    tern_gguf_close(g);
    g = hp_file("bitnet", NULL, "hidden_act", "gelu", 512);
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "'gelu'"));
    tern_gguf_close(g);
    g = hp_file("bitnet-25", NULL, NULL, NULL, 512);
    ck_assert(tern_hparams_read(g, &hp, &err) == TERN_OK && hp.arch == TERN_ARCH_BITNET_B158 &&
              hp.ffn_act == TERN_ACT_RELU_SQ && hp.has_sub_norms);
    tern_gguf_close(g);
}
END_TEST

START_TEST(test_accessors_and_errors)
{
    TU_REQUIRE_SHARED();
    tern_gguf *g = open_shared("models/tiny-bitnet.gguf");
    tern_error err;
    int64_t v;
    double f;
    tern_gguf_str s;
    ck_assert_int_eq(tern_gguf_find_key(g, "no.such.key"), -1);
    ck_assert_int_eq(tern_gguf_get_int(g, "no.such.key", &v, &err), TERN_ENOTFOUND);
    ck_assert_int_eq(tern_gguf_get_int(g, "general.architecture", &v, &err), TERN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "general.architecture"));
    ck_assert_ptr_nonnull(strstr(err.msg, "string"));
    ck_assert_int_eq(tern_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v, &err), TERN_OK);
    ck_assert_int_eq(v, 8190);
    ck_assert_int_eq(tern_gguf_get_float(g, "bitnet-b1.58.rope.freq_base", &f, &err), TERN_OK);
    ck_assert(f == 10000.0);
    ck_assert_int_eq(tern_gguf_get_str(g, "tokenizer.ggml.pre", &s, &err), TERN_OK);
    ck_assert(s.len == 5 && memcmp(s.ptr, "gpt-2", 5) == 0);
    int64_t tok = tern_gguf_find_key(g, "tokenizer.ggml.tokens");
    s = tern_gguf_arr_str(g, tok, 8190);
    ck_assert(s.len == 17 && memcmp(s.ptr, "<|begin_of_text|>", 17) == 0);
    ck_assert_ptr_null(tern_gguf_arr_str(g, tok, 8192).ptr); /* out of range */
    ck_assert_int_eq(tern_gguf_arr_int(g, tern_gguf_find_key(g, "tokenizer.ggml.token_type"), 8191),
                     3);
    ck_assert_ptr_null(tern_gguf_find_tensor(g, "nope"));
    ck_assert_ptr_null(tern_gguf_tensor_at(g, 68));
    tern_tensor t;
    tern_gguf_tensor_view(tern_gguf_find_tensor(g, "blk.0.ffn_down.weight"), &t);
    ck_assert_int_eq(t.ne[0], 1280);
    ck_assert_uint_eq(t.nb[1], 1280 / 256 * 66);
    tern_gguf_close(g);
    tern_gguf_close(NULL);
}
END_TEST

/* Opening the 128k-token reference (408k strings) stays fast. */
START_TEST(test_open_big_vocab_fast)
{
    TU_REQUIRE_SHARED();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 5; i++) tern_gguf_close(open_shared("ref/models/tiny-bitnet-tq2_0.gguf"));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("gguf: 5 opens of the 128k-vocab model: %.3f s\n", s);
    ck_assert_msg(s < 5.0, "opening took %.3f s", s); /* ~0.1 s; generous for sanitizers */
}
END_TEST

/* ---- writer round trip ---- */

typedef struct fill_ctx {
    uint64_t seed;
    int type;
    int64_t n;
} fill_ctx;

static tern_status fill_random(void *user, void *buf, uint64_t size, tern_error *err)
{
    fill_ctx *c = user;
    unsigned long long s = c->seed;
    uint8_t *p = buf;
    for (uint64_t i = 0; i < size; i++) p[i] = (uint8_t)tu_rand(&s);
    if (c->type == TERN_TYPE_I2_S) {
        float scale = 0.125f;
        memcpy(p + c->n / 4, &scale, 4);
    }
    return TERN_OK;
}

static tern_status fill_fail(void *user, void *buf, uint64_t size, tern_error *err)
{
    return tern_error_set(err, TERN_EIO, "source went away");
}

START_TEST(test_writer_roundtrip)
{
    tern_gguf_writer *w;
    tern_error err;
    ck_assert_int_eq(tern_gguf_writer_create(&w, &err), TERN_OK);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint64_t u64 = 0xfedcba9876543210ull;
    int64_t i64 = -1234567890123ll;
    double f64 = 3.141592653589793;
    ck_assert_int_eq(tern_gguf_set_scalar(w, "s.u8", TERN_GGUF_U8, &u8), TERN_OK);
    tern_gguf_set_scalar(w, "s.i8", TERN_GGUF_I8, &i8);
    tern_gguf_set_scalar(w, "s.u16", TERN_GGUF_U16, &u16);
    tern_gguf_set_scalar(w, "s.i16", TERN_GGUF_I16, &i16);
    tern_gguf_set_u32(w, "s.u32", 4000000000u);
    tern_gguf_set_i32(w, "s.i32", -2000000000);
    tern_gguf_set_f32(w, "s.f32", 0.25f);
    tern_gguf_set_bool(w, "s.bool", 1);
    tern_gguf_set_str(w, "s.str", "h\xc3\xa9llo");
    tern_gguf_set_scalar(w, "s.u64", TERN_GGUF_U64, &u64);
    tern_gguf_set_scalar(w, "s.i64", TERN_GGUF_I64, &i64);
    tern_gguf_set_scalar(w, "s.f64", TERN_GGUF_F64, &f64);
    int32_t ai32[5] = {-1, 0, 1, 2147483647, -2147483647 - 1};
    float af32[3] = {1.5f, -2.0f, 1e-30f};
    double af64[2] = {1e300, -0.5};
    uint8_t abool[3] = {1, 0, 1};
    int16_t ai16[2] = {-5, 5};
    uint64_t au64[2] = {0, 1ull << 62};
    tern_gguf_set_arr(w, "a.i32", TERN_GGUF_I32, ai32, 5);
    tern_gguf_set_arr(w, "a.f32", TERN_GGUF_F32, af32, 3);
    tern_gguf_set_arr(w, "a.f64", TERN_GGUF_F64, af64, 2);
    tern_gguf_set_arr(w, "a.bool", TERN_GGUF_BOOL, abool, 3);
    tern_gguf_set_arr(w, "a.i16", TERN_GGUF_I16, ai16, 2);
    tern_gguf_set_arr(w, "a.u64", TERN_GGUF_U64, au64, 2);
    tern_gguf_set_arr(w, "a.empty", TERN_GGUF_U8, NULL, 0);
    const char *strs[4] = {"alpha", "", "with\0nul", "\xe4\xb8\x96"};
    uint64_t lens[4] = {5, 0, 8, 3};
    tern_gguf_set_arr_str(w, "a.str", strs, lens, 4);
    /* an array of two arrays of u16, serialized by hand */
    uint8_t nested[12 + 12 + 4 + 12 + 2];
    uint8_t *p = nested;
    uint32_t t_arr = TERN_GGUF_ARRAY, t_u16 = TERN_GGUF_U16;
    uint64_t two = 2, one = 1;
    uint16_t vals[3] = {1, 2, 3};
    memcpy(p, &t_arr, 4), memcpy(p + 4, &two, 8), p += 12;
    memcpy(p, &t_u16, 4), memcpy(p + 4, &two, 8), memcpy(p + 12, vals, 4), p += 16;
    memcpy(p, &t_u16, 4), memcpy(p + 4, &one, 8), memcpy(p + 12, vals + 2, 2), p += 14;
    ck_assert_int_eq(p - nested, (long)sizeof nested);
    tern_gguf_set_raw(w, "a.nested", TERN_GGUF_ARRAY, nested, sizeof nested);

    static const struct { const char *name; int type; int n_dims; int64_t ne[3]; } ts[] = {
        {"t.f32", TERN_TYPE_F32, 1, {7}},          {"t.f16", TERN_TYPE_F16, 2, {3, 5}},
        {"t.bf16", TERN_TYPE_BF16, 3, {2, 3, 4}},   {"t.q8_0", TERN_TYPE_Q8_0, 2, {64, 3}},
        {"t.tq1_0", TERN_TYPE_TQ1_0, 2, {256, 2}}, {"t.tq2_0", TERN_TYPE_TQ2_0, 2, {512, 3}},
        {"t.i2_s", TERN_TYPE_I2_S, 2, {128, 3}},
    };
    enum { NT = sizeof ts / sizeof ts[0] };
    fill_ctx fc[NT];
    for (int i = 0; i < NT; i++) {
        fc[i] = (fill_ctx){(uint64_t)i * 77 + 1, ts[i].type, 1};
        for (int d = 0; d < ts[i].n_dims; d++) fc[i].n *= ts[i].ne[d];
        ck_assert_int_eq(tern_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne,
                                              fill_random, &fc[i], &err), TERN_OK);
    }
    int64_t bad_ne[2] = {100, 2};
    ck_assert_int_eq(tern_gguf_add_tensor(w, "bad", TERN_TYPE_TQ2_0, 2, bad_ne, fill_random, fc, &err),
                     TERN_EINVAL);
    ck_assert_int_eq(tern_gguf_add_tensor(w, "t.f32", TERN_TYPE_F32, 1, bad_ne, fill_random, fc, &err),
                     TERN_EINVAL);

    char path[512];
    tmp_path(path, sizeof path, "roundtrip.gguf");
    ck_assert_msg(tern_gguf_write(w, path, &err) == TERN_OK, "%s", err.msg);

    tern_gguf *g;
    ck_assert_msg(tern_gguf_open(path, &g, &err) == TERN_OK, "%s", err.msg);
    ck_assert_int_eq(tern_gguf_version(g), 3);
    ck_assert_int_eq(tern_gguf_n_kv(g), 21);
    int64_t v;
    double f;
    int b;
    tern_gguf_str s;
    ck_assert(tern_gguf_get_int(g, "s.u8", &v, NULL) == TERN_OK && v == 200);
    ck_assert(tern_gguf_get_int(g, "s.i8", &v, NULL) == TERN_OK && v == -100);
    ck_assert(tern_gguf_get_int(g, "s.u16", &v, NULL) == TERN_OK && v == 60000);
    ck_assert(tern_gguf_get_int(g, "s.i16", &v, NULL) == TERN_OK && v == -30000);
    ck_assert(tern_gguf_get_int(g, "s.u32", &v, NULL) == TERN_OK && v == 4000000000ll);
    ck_assert(tern_gguf_get_int(g, "s.i32", &v, NULL) == TERN_OK && v == -2000000000);
    ck_assert(tern_gguf_get_float(g, "s.f32", &f, NULL) == TERN_OK && f == 0.25);
    ck_assert(tern_gguf_get_bool(g, "s.bool", &b, NULL) == TERN_OK && b == 1);
    ck_assert(tern_gguf_get_str(g, "s.str", &s, NULL) == TERN_OK && s.len == 6 &&
              memcmp(s.ptr, "h\xc3\xa9llo", 6) == 0);
    ck_assert_int_eq(tern_gguf_get_int(g, "s.u64", &v, &err), TERN_EFORMAT); /* > INT64_MAX */
    ck_assert(tern_gguf_get_int(g, "s.i64", &v, NULL) == TERN_OK && v == i64);
    ck_assert(tern_gguf_get_float(g, "s.f64", &f, NULL) == TERN_OK && f == f64);
    ck_assert_int_eq(tern_gguf_kv_type(g, tern_gguf_find_key(g, "s.u64")), TERN_GGUF_U64);
    tern_gguf_vtype et;
    uint64_t n;
    ck_assert(tern_gguf_get_array(g, "a.i32", &et, &n, NULL) == TERN_OK && et == TERN_GGUF_I32 && n == 5);
    int64_t k = tern_gguf_find_key(g, "a.i32");
    for (int i = 0; i < 5; i++) ck_assert_int_eq(tern_gguf_arr_int(g, k, (uint64_t)i), ai32[i]);
    k = tern_gguf_find_key(g, "a.f32");
    for (int i = 0; i < 3; i++) ck_assert(tern_gguf_arr_float(g, k, (uint64_t)i) == af32[i]);
    k = tern_gguf_find_key(g, "a.f64");
    for (int i = 0; i < 2; i++) ck_assert(tern_gguf_arr_float(g, k, (uint64_t)i) == af64[i]);
    k = tern_gguf_find_key(g, "a.bool");
    for (int i = 0; i < 3; i++) ck_assert_int_eq(tern_gguf_arr_int(g, k, (uint64_t)i), abool[i]);
    k = tern_gguf_find_key(g, "a.i16");
    for (int i = 0; i < 2; i++) ck_assert_int_eq(tern_gguf_arr_int(g, k, (uint64_t)i), ai16[i]);
    k = tern_gguf_find_key(g, "a.u64");
    ck_assert_int_eq(tern_gguf_arr_int(g, k, 1), (int64_t)(1ull << 62));
    ck_assert(tern_gguf_get_array(g, "a.empty", &et, &n, NULL) == TERN_OK && n == 0);
    k = tern_gguf_find_key(g, "a.str");
    for (int i = 0; i < 4; i++) {
        s = tern_gguf_arr_str(g, k, (uint64_t)i);
        ck_assert(s.len == lens[i] && memcmp(s.ptr, strs[i], lens[i]) == 0);
    }
    ck_assert(tern_gguf_get_array(g, "a.nested", &et, &n, NULL) == TERN_OK && et == TERN_GGUF_ARRAY &&
              n == 2);
    const void *raw;
    uint64_t raw_n;
    ck_assert_int_eq(tern_gguf_kv_raw(g, tern_gguf_find_key(g, "a.nested"), &raw, &raw_n), TERN_OK);
    ck_assert(raw_n == sizeof nested && memcmp(raw, nested, sizeof nested) == 0);

    ck_assert_int_eq(tern_gguf_n_tensors(g), NT);
    for (int i = 0; i < NT; i++) {
        const tern_gguf_tensor *t = tern_gguf_tensor_at(g, i);
        ck_assert_str_eq(t->name_z, ts[i].name);
        ck_assert_int_eq(t->type, ts[i].type);
        ck_assert_int_eq(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < ts[i].n_dims; d++) ck_assert_int_eq(t->ne[d], ts[i].ne[d]);
        ck_assert_uint_eq(t->offset % 32, 0);
        uint8_t *want = malloc(t->size);
        fill_random(&fc[i], want, t->size, NULL);
        ck_assert_msg(memcmp(want, t->data, t->size) == 0, "%s bytes differ", t->name_z);
        free(want);
        if (t->type == TERN_TYPE_I2_S) ck_assert_float_eq(t->scale, 0.125f);
    }

    /* copy_kv: every "a." key lands byte-identical in a second file */
    tern_gguf_writer *w2;
    ck_assert_int_eq(tern_gguf_writer_create(&w2, &err), TERN_OK);
    ck_assert_int_eq(tern_gguf_copy_kv(w2, g, "a.", &err), TERN_OK);
    char path2[512];
    tmp_path(path2, sizeof path2, "copy.gguf");
    ck_assert_int_eq(tern_gguf_write(w2, path2, &err), TERN_OK);
    tern_gguf *g2;
    ck_assert_int_eq(tern_gguf_open(path2, &g2, &err), TERN_OK);
    ck_assert_int_eq(tern_gguf_n_kv(g2), 9);
    ck_assert_int_eq(tern_gguf_n_tensors(g2), 0);
    for (int64_t i = 0; i < tern_gguf_n_kv(g2); i++) {
        const void *r1, *r2;
        uint64_t n1, n2;
        tern_gguf_str key = tern_gguf_key(g2, i);
        char kz[64];
        snprintf(kz, sizeof kz, "%.*s", (int)key.len, key.ptr);
        int64_t j = tern_gguf_find_key(g, kz);
        ck_assert_int_ge(j, 0);
        tern_gguf_kv_raw(g, j, &r1, &n1);
        tern_gguf_kv_raw(g2, i, &r2, &n2);
        ck_assert(n1 == n2 && memcmp(r1, r2, n1) == 0);
    }
    /* a duplicate key fails at write time, naming the key, and leaves no file */
    tern_gguf_set_u32(w2, "a.i32", 1);
    char path3[512];
    tmp_path(path3, sizeof path3, "dup.gguf");
    ck_assert_int_eq(tern_gguf_write(w2, path3, &err), TERN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "duplicate key 'a.i32'"));
    ck_assert_int_ne(access(path3, F_OK), 0);
    tern_gguf_close(g2);
    tern_gguf_writer_free(w2);
    tern_gguf_close(g);
    tern_gguf_writer_free(w);
    unlink(path);
    unlink(path2);
}
END_TEST

START_TEST(test_writer_fill_failure)
{
    tern_gguf_writer *w;
    tern_error err;
    ck_assert_int_eq(tern_gguf_writer_create(&w, &err), TERN_OK);
    int64_t ne[1] = {32};
    ck_assert_int_eq(tern_gguf_add_tensor(w, "x", TERN_TYPE_F32, 1, ne, fill_fail, NULL, &err), TERN_OK);
    char path[512];
    tmp_path(path, sizeof path, "fail.gguf");
    ck_assert_int_eq(tern_gguf_write(w, path, &err), TERN_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "tensor 'x'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "source went away"));
    ck_assert_int_ne(access(path, F_OK), 0);
    tern_gguf_writer_free(w);
    tern_gguf_writer_free(NULL);
}
END_TEST

/* ---- tern synth against the reference layout ---- */

static int run_synth(const char *args, const char *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s synth %s -o %s > /dev/null", tu_tern_exe(), args, out);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Key names of g, with "<arch>." replaced by "ARCH.". */
static int has_key_mapped(const tern_gguf *g, const char *arch, tern_gguf_str key, const char *key_arch)
{
    char k[256];
    size_t al = strlen(key_arch);
    if (key.len > al && memcmp(key.ptr, key_arch, al) == 0 && key.ptr[al] == '.')
        snprintf(k, sizeof k, "%s%.*s", arch, (int)(key.len - al), key.ptr + al);
    else
        snprintf(k, sizeof k, "%.*s", (int)key.len, key.ptr);
    return tern_gguf_find_key(g, k) >= 0;
}

static void same_layout(const char *synth_path, const char *ref_rel, int tokenizer_copied)
{
    tern_gguf *s, *r = open_shared(ref_rel);
    tern_error err;
    ck_assert_msg(tern_gguf_open(synth_path, &s, &err) == TERN_OK, "%s", err.msg);
    tern_gguf_str sa, ra;
    tern_gguf_get_str(s, "general.architecture", &sa, NULL);
    tern_gguf_get_str(r, "general.architecture", &ra, NULL);
    char s_arch[64], r_arch[64];
    snprintf(s_arch, sizeof s_arch, "%.*s", (int)sa.len, sa.ptr);
    snprintf(r_arch, sizeof r_arch, "%.*s", (int)ra.len, ra.ptr);
    ck_assert_str_eq(s_arch, "bitnet-b1.58");
    /* the same key set both ways (the tq2_0 reference names its arch "bitnet") */
    ck_assert_int_eq(tern_gguf_n_kv(s), tern_gguf_n_kv(r));
    for (int64_t i = 0; i < tern_gguf_n_kv(r); i++) {
        tern_gguf_str k = tern_gguf_key(r, i);
        ck_assert_msg(has_key_mapped(s, s_arch, k, r_arch), "synth lacks %.*s", (int)k.len, k.ptr);
        char kz[256];
        snprintf(kz, sizeof kz, "%.*s", (int)k.len, k.ptr);
        int64_t j = tern_gguf_find_key(s, kz);
        if (j < 0) continue; /* arch-prefixed: compare by mapped name below */
        ck_assert_int_eq(tern_gguf_kv_type(s, j), tern_gguf_kv_type(r, i));
        if (tokenizer_copied && strncmp(kz, "tokenizer.", 10) == 0) {
            const void *a, *b;
            uint64_t na, nb;
            tern_gguf_kv_raw(s, j, &a, &na);
            tern_gguf_kv_raw(r, i, &b, &nb);
            ck_assert_msg(na == nb && memcmp(a, b, na) == 0, "%s differs", kz);
        }
    }
    /* hyper-parameters agree */
    tern_hparams hs, hr;
    ck_assert_int_eq(tern_hparams_read(s, &hs, &err), TERN_OK);
    ck_assert_int_eq(tern_hparams_read(r, &hr, &err), TERN_OK);
    ck_assert_int_eq(tern_hparams_check_tensors(s, &hs, &err), TERN_OK);
    ck_assert(hs.n_vocab == hr.n_vocab && hs.n_embd == hr.n_embd && hs.n_layer == hr.n_layer &&
              hs.n_ff == hr.n_ff && hs.n_head == hr.n_head && hs.n_head_kv == hr.n_head_kv &&
              hs.n_rot == hr.n_rot && hs.n_ctx_train == hr.n_ctx_train &&
              hs.rope_freq_base == hr.rope_freq_base && hs.norm_eps == hr.norm_eps);
    /* the same tensors: names, types, shapes */
    ck_assert_int_eq(tern_gguf_n_tensors(s), tern_gguf_n_tensors(r));
    for (int64_t i = 0; i < tern_gguf_n_tensors(r); i++) {
        const tern_gguf_tensor *tr = tern_gguf_tensor_at(r, i);
        const tern_gguf_tensor *ts = tern_gguf_find_tensor(s, tr->name_z);
        ck_assert_msg(ts != NULL, "synth lacks %s", tr->name_z);
        ck_assert_msg(ts->type == tr->type, "%s: %s vs %s", tr->name_z, tern_type_name(ts->type),
                      tern_type_name(tr->type));
        ck_assert_int_eq(ts->n_dims, tr->n_dims);
        ck_assert_mem_eq(ts->ne, tr->ne, sizeof ts->ne);
        ck_assert_uint_eq(ts->size, tr->size);
        if (tern_type_get(ts->type)->is_ternary) { /* one scale per tensor, from the reference set */
            tern_tensor v;
            float sc;
            tern_gguf_tensor_view(ts, &v);
            ck_assert_int_eq(tern_ternary_tensor_scale(&v, &sc, &err), TERN_OK);
            ck_assert(sc == 0.015625f || sc == 0.01953125f || sc == 0.0234375f || sc == 0.02734375f ||
                      sc == 0.03125f);
        }
    }
    tern_gguf_close(s);
    tern_gguf_close(r);
}

START_TEST(test_synth_matches_reference_layout)
{
    TU_REQUIRE_SHARED();
    char out[512], vocab[4096];
    tu_shared_path(vocab, sizeof vocab, "ref/models/tiny-bitnet-tq2_0.gguf");
    tmp_path(out, sizeof out, "synth-i2_s.gguf");
    ck_assert_int_eq(run_synth("--preset tiny --type i2_s --embd-type q8_0", out), 0);
    same_layout(out, "ref/models/tiny-b158-i2_s.gguf", 0);
    char args[4200];
    snprintf(args, sizeof args, "--preset tiny --type tq2_0 --embd-type q8_0 --seed 7 --vocab %s", vocab);
    ck_assert_int_eq(run_synth(args, out), 0);
    same_layout(out, "ref/models/tiny-bitnet-tq2_0.gguf", 1);
    unlink(out);
}
END_TEST

START_TEST(test_synth_shapes_and_errors)
{
    char out[512];
    tmp_path(out, sizeof out, "synth-small.gguf");
    /* a small llama with q8_0 linears and the built-in vocabulary */
    ck_assert_int_eq(run_synth("--dims embd=128,layers=2,heads=4,kv=2,ff=256,vocab=300 --arch llama "
                               "--type q8_0", out), 0);
    tern_gguf *g;
    tern_error err;
    ck_assert_msg(tern_gguf_open(out, &g, &err) == TERN_OK, "%s", err.msg);
    tern_hparams hp;
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(hp.arch, TERN_ARCH_LLAMA);
    ck_assert_int_eq(tern_hparams_check_tensors(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(tern_gguf_find_tensor(g, "blk.1.ffn_down.weight")->type, TERN_TYPE_Q8_0);
    ck_assert_ptr_null(tern_gguf_find_tensor(g, "blk.0.attn_sub_norm.weight"));
    int64_t tok = tern_gguf_find_key(g, "tokenizer.ggml.tokens");
    tern_gguf_str s = tern_gguf_arr_str(g, tok, 'A');
    ck_assert(s.len == 1 && s.ptr[0] == 'A');
    s = tern_gguf_arr_str(g, tok, ' '); /* GPT-2 maps the space byte to U+0120 */
    ck_assert(s.len == 2 && memcmp(s.ptr, "\xc4\xa0", 2) == 0);
    s = tern_gguf_arr_str(g, tok, 299);
    ck_assert(s.len == 16 && memcmp(s.ptr, "<|reserved_299|>", 16) == 0);
    tern_gguf_close(g);
    /* tq1_0 bitnet with --vocab-size; same seed, same bytes */
    ck_assert_int_eq(run_synth("--preset tiny --vocab-size 512 --type tq1_0 --seed 3", out), 0);
    size_t n1, n2;
    void *a = tu_read_file(out, &n1);
    ck_assert_int_eq(run_synth("--preset tiny --vocab-size 512 --type tq1_0 --seed 3", out), 0);
    void *b = tu_read_file(out, &n2);
    ck_assert(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
    free(a);
    free(b);
    ck_assert_int_eq(tern_gguf_open(out, &g, &err), TERN_OK);
    ck_assert_int_eq(tern_hparams_read(g, &hp, &err), TERN_OK);
    ck_assert_int_eq(hp.n_vocab, 512);
    ck_assert_int_eq(tern_hparams_check_tensors(g, &hp, &err), TERN_OK);
    tern_gguf_close(g);
    /* refusals */
    ck_assert_int_eq(run_synth("--preset tiny --type f16 2>/dev/null", out), 1);
    ck_assert_int_eq(run_synth("--preset bitnet-3b --type tq2_0 2>/dev/null", out), 1);
    ck_assert_int_eq(run_synth("--preset nope 2>/dev/null", out), 1);
    unlink(out);
}
END_TEST

Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_open_every_shared_gguf);
    tcase_add_test(tc, test_ref_tq2_0_equals_i2_s);
    tcase_add_test(tc, test_models_tq2_0_equals_i2_s);
    tcase_add_test(tc, test_ref_q8_0_embd_is_exact_f16);
    tcase_add_test(tc, test_hparams_of_refs);
    tcase_add_test(tc, test_hparams_errors);
    tcase_add_test(tc, test_accessors_and_errors);
    tcase_add_test(tc, test_open_big_vocab_fast);
    tcase_add_test(tc, test_writer_roundtrip);
    tcase_add_test(tc, test_writer_fill_failure);
    tcase_add_test(tc, test_synth_matches_reference_layout);
    tcase_add_test(tc, test_synth_shapes_and_errors);
    suite_add_tcase(s, tc);
    gguf_add_hostile_cases(s);
    return s;
}
