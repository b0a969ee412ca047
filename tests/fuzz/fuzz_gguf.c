/* fuzz_gguf.c - libFuzzer target for the GGUF reader: open any bytes with
 * tern_gguf_open_memory and, when they are accepted, walk every key, every
 * array element and every tensor (decoding the first row of small ones), so
 * the sanitizers check that what the reader validated is what the accessors
 * and decoders touch. Built by tests/fuzz/SConscript from runtime/gguf.c,
 * status.c, types.c and quant.c only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tern/gguf.h"
#include "tern/quant.h"

static volatile uint64_t sink;

static void walk_kv(const tern_gguf *g)
{
    for (int64_t i = 0; i < tern_gguf_n_kv(g); i++) {
        tern_gguf_str k = tern_gguf_key(g, i);
        char key[256];
        size_t n = k.len < sizeof key - 1 ? (size_t)k.len : sizeof key - 1;
        memcpy(key, k.ptr, n);
        key[n] = 0;
        sink += (uint64_t)tern_gguf_find_key(g, key);
        int64_t v;
        double f;
        int b;
        tern_gguf_str s;
        tern_gguf_vtype et;
        uint64_t cnt;
        if (tern_gguf_kv_int(g, i, &v, NULL) == TERN_OK) sink += (uint64_t)v;
        if (tern_gguf_kv_float(g, i, &f, NULL) == TERN_OK) sink += (uint64_t)(f == f);
        if (tern_gguf_kv_bool(g, i, &b, NULL) == TERN_OK) sink += (uint64_t)b;
        if (tern_gguf_kv_str(g, i, &s, NULL) == TERN_OK && s.len) sink += (uint8_t)s.ptr[s.len - 1];
        if (tern_gguf_get_int(g, key, &v, NULL) == TERN_OK) sink += (uint64_t)v;
        const void *raw;
        uint64_t raw_n;
        if (tern_gguf_kv_raw(g, i, &raw, &raw_n) == TERN_OK && raw_n)
            sink += ((const uint8_t *)raw)[raw_n - 1];
        if (tern_gguf_kv_array(g, i, &et, &cnt, NULL) != TERN_OK) continue;
        for (uint64_t j = 0; j < cnt; j++) {
            if (et == TERN_GGUF_STRING) {
                s = tern_gguf_arr_str(g, i, j);
                if (s.len) sink += (uint8_t)s.ptr[s.len - 1];
            } else if (et == TERN_GGUF_F32 || et == TERN_GGUF_F64) {
                f = tern_gguf_arr_float(g, i, j);
                sink += (uint64_t)(f == f);
            } else {
                sink += (uint64_t)tern_gguf_arr_int(g, i, j);
            }
        }
        sink += (uint64_t)tern_gguf_arr_int(g, i, cnt); /* one past: must be harmless */
        sink += (uint64_t)tern_gguf_arr_str(g, i, cnt).len;
    }
}

static void walk_tensors(const tern_gguf *g)
{
    for (int64_t i = 0; i < tern_gguf_n_tensors(g); i++) {
        const tern_gguf_tensor *t = tern_gguf_tensor_at(g, i);
        if (tern_gguf_find_tensor(g, t->name_z) == NULL) abort(); /* names are unique and findable */
        if (t->size) sink += ((const uint8_t *)t->data)[t->size - 1];
        tern_tensor v;
        tern_gguf_tensor_view(t, &v);
        int64_t n = tern_tensor_nelements(&v);
        if (n <= 0 || v.ne[0] > 4096 || n > (1 << 16)) continue;
        float row[4096];
        if (tern_dequantize_rows(&v, 0, 1, row, NULL) == TERN_OK) sink += (uint64_t)(row[0] == row[0]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so any read past the end is caught */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    tern_gguf *g;
    tern_error err;
    if (tern_gguf_open_memory(buf, size, "fuzz", &g, &err) == TERN_OK) {
        walk_kv(g);
        walk_tensors(g);
        tern_gguf_close(g);
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort(); /* every rejection carries one line */
    }
    free(buf);
    return 0;
}
