/* gguf_write.c - the GGUF v3 writer.
 *
 * Owns: collecting metadata (serialized as it is set) and tensor
 * declarations, then writing header, metadata, tensor infos and data to a
 * temporary file beside the target and renaming it into place, so a reader
 * never sees a half-written model. Tensor bytes come from each tensor's fill
 * callback, one tensor at a time, so memory is one tensor, not one file.
 * Alignment is 32, or general.alignment when the caller sets it (u32).
 * Setters that cannot report an error themselves (they take no tern_error)
 * record the first failure; tern_gguf_write returns it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tern/checked.h"
#include "tern/gguf.h"
#include "tern/io.h"
#include "tern/quant.h"

#define WRITER_ALIGNMENT 32

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *val; /* serialized value */
    uint64_t len;
} wkv;

typedef struct wtensor {
    char *name;
    int type, n_dims;
    int64_t ne[TERN_MAX_DIMS];
    uint64_t size, offset;
    tern_gguf_fill_fn fill;
    void *user;
} wtensor;

struct tern_gguf_writer {
    wkv *kv; /* (n_kv) */
    int64_t n_kv, cap_kv;
    wtensor *t; /* (n_t) */
    int64_t n_t, cap_t;
    tern_status st; /* first failure of a setter */
    tern_error err;
};

static const uint8_t scalar_size[TERN_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static tern_status sticky(tern_gguf_writer *w, tern_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tern_status sticky(tern_gguf_writer *w, tern_status st, const char *fmt, ...)
{
    if (w->st == TERN_OK) {
        va_list ap;
        va_start(ap, fmt);
        tern_error_setv(&w->err, st, fmt, ap);
        va_end(ap);
        w->st = st;
    }
    return st;
}

tern_status tern_gguf_writer_create(tern_gguf_writer **out, tern_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return tern_error_set(err, TERN_ENOMEM, "gguf writer: no memory");
    return TERN_OK;
}

void tern_gguf_writer_free(tern_gguf_writer *w)
{
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* ---- metadata ---- */

/* Adds key with an already-serialized value (takes ownership of val). */
static tern_status add_kv(tern_gguf_writer *w, const char *key, uint32_t type, uint8_t *val,
                          uint64_t len)
{
    if (!key || !val) {
        free(val);
        return sticky(w, TERN_ENOMEM, "gguf writer: no memory for key '%s'", key ? key : "(null)");
    }
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            free(val);
            return sticky(w, TERN_EINVAL, "gguf writer: duplicate key '%s'", key);
        }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *nk = realloc(w->kv, (size_t)cap * sizeof *nk);
        if (!nk) {
            free(val);
            return sticky(w, TERN_ENOMEM, "gguf writer: no memory for key '%s'", key);
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return sticky(w, TERN_ENOMEM, "gguf writer: no memory for key '%s'", key);
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return TERN_OK;
}

static uint8_t *dup_bytes(const void *p, uint64_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    if (b && n) memcpy(b, p, n);
    return b;
}

tern_status tern_gguf_set_scalar(tern_gguf_writer *w, const char *key, tern_gguf_vtype type,
                                 const void *v)
{
    if ((unsigned)type >= TERN_GGUF_VTYPE_COUNT || !scalar_size[type])
        return sticky(w, TERN_EINVAL, "gguf writer: key '%s': type %d is not a scalar type", key,
                      (int)type);
    return add_kv(w, key, type, dup_bytes(v, scalar_size[type]), scalar_size[type]);
}

tern_status tern_gguf_set_u32(tern_gguf_writer *w, const char *key, uint32_t v)
{
    return tern_gguf_set_scalar(w, key, TERN_GGUF_U32, &v);
}

tern_status tern_gguf_set_i32(tern_gguf_writer *w, const char *key, int32_t v)
{
    return tern_gguf_set_scalar(w, key, TERN_GGUF_I32, &v);
}

tern_status tern_gguf_set_f32(tern_gguf_writer *w, const char *key, float v)
{
    return tern_gguf_set_scalar(w, key, TERN_GGUF_F32, &v);
}

tern_status tern_gguf_set_bool(tern_gguf_writer *w, const char *key, int v)
{
    uint8_t b = v != 0;
    return tern_gguf_set_scalar(w, key, TERN_GGUF_BOOL, &b);
}

tern_status tern_gguf_set_str(tern_gguf_writer *w, const char *key, const char *v)
{
    uint64_t n = strlen(v);
    uint8_t *b = malloc(8 + n);
    if (b) {
        memcpy(b, &n, 8);
        memcpy(b + 8, v, n);
    }
    return add_kv(w, key, TERN_GGUF_STRING, b, 8 + n);
}

tern_status tern_gguf_set_raw(tern_gguf_writer *w, const char *key, tern_gguf_vtype type,
                              const void *value, uint64_t size)
{
    if ((unsigned)type >= TERN_GGUF_VTYPE_COUNT)
        return sticky(w, TERN_EINVAL, "gguf writer: key '%s': bad type %d", key, (int)type);
    return add_kv(w, key, type, dup_bytes(value, size), size);
}

tern_status tern_gguf_set_arr(tern_gguf_writer *w, const char *key, tern_gguf_vtype elem_type,
                              const void *data, uint64_t n)
{
    if ((unsigned)elem_type >= TERN_GGUF_VTYPE_COUNT || !scalar_size[elem_type])
        return sticky(w, TERN_EINVAL, "gguf writer: key '%s': arrays of type %d need set_arr_str",
                      key, (int)elem_type);
    uint64_t bytes, total;
    if (tern_mul_overflows_u64(n, scalar_size[elem_type], &bytes) ||
        tern_add_overflows_u64(bytes, 12, &total) || total > SIZE_MAX)
        return sticky(w, TERN_EINVAL, "gguf writer: key '%s': %llu elements overflow", key,
                      (unsigned long long)n);
    uint8_t *b = malloc((size_t)total);
    if (b) {
        uint32_t et = elem_type;
        memcpy(b, &et, 4);
        memcpy(b + 4, &n, 8);
        if (bytes) memcpy(b + 12, data, (size_t)bytes);
    }
    return add_kv(w, key, TERN_GGUF_ARRAY, b, total);
}

tern_status tern_gguf_set_arr_str(tern_gguf_writer *w, const char *key, const char *const *strs,
                                  const uint64_t *lens, uint64_t n)
{
    uint64_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        if (tern_add_overflows_u64(total, 8, &total) || tern_add_overflows_u64(total, len, &total))
            return sticky(w, TERN_EINVAL, "gguf writer: key '%s': string array too large", key);
    }
    if (total > SIZE_MAX)
        return sticky(w, TERN_EINVAL, "gguf writer: key '%s': string array too large", key);
    uint8_t *b = malloc((size_t)total);
    if (b) {
        uint32_t et = TERN_GGUF_STRING;
        memcpy(b, &et, 4);
        memcpy(b + 4, &n, 8);
        uint8_t *p = b + 12;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len = lens ? lens[i] : strlen(strs[i]);
            memcpy(p, &len, 8);
            if (len) memcpy(p + 8, strs[i], (size_t)len);
            p += 8 + len;
        }
    }
    return add_kv(w, key, TERN_GGUF_ARRAY, b, total);
}

tern_status tern_gguf_copy_kv(tern_gguf_writer *w, const tern_gguf *src, const char *prefix,
                              tern_error *err)
{
    size_t plen = strlen(prefix);
    char key[1024];
    for (int64_t i = 0; i < tern_gguf_n_kv(src); i++) {
        tern_gguf_str k = tern_gguf_key(src, i);
        if (k.len < plen || memcmp(k.ptr, prefix, plen) != 0) continue;
        if (k.len >= sizeof key || memchr(k.ptr, 0, k.len))
            return tern_error_set(err, TERN_EUNSUPPORTED, "%s: key #%lld: cannot copy a key of %llu bytes",
                                  tern_gguf_path(src), (long long)i, (unsigned long long)k.len);
        memcpy(key, k.ptr, k.len);
        key[k.len] = 0;
        const void *val;
        uint64_t size;
        tern_gguf_kv_raw(src, i, &val, &size);
        tern_status st = tern_gguf_set_raw(w, key, tern_gguf_kv_type(src, i), val, size);
        if (st) {
            if (err) *err = w->err;
            return st;
        }
    }
    return TERN_OK;
}

/* ---- tensors ---- */

tern_status tern_gguf_add_tensor(tern_gguf_writer *w, const char *name, int type, int n_dims,
                                 const int64_t *ne, tern_gguf_fill_fn fill, void *user,
                                 tern_error *err)
{
    if (strlen(name) > 255 || !*name)
        return tern_error_set(err, TERN_EINVAL, "gguf writer: tensor name '%.64s' must be 1..255 bytes",
                              name);
    if (n_dims < 1 || n_dims > TERN_MAX_DIMS)
        return tern_error_set(err, TERN_EINVAL, "gguf writer: tensor '%s': n_dims %d outside 1..4",
                              name, n_dims);
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return tern_error_set(err, TERN_EINVAL, "gguf writer: duplicate tensor '%s'", name);
    wtensor t = {.type = type, .n_dims = n_dims, .fill = fill, .user = user};
    for (int d = 0; d < TERN_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    t.size = tern_tensor_file_bytes(type, t.ne);
    if (t.size == 0)
        return tern_error_set(err, TERN_EINVAL,
                              "gguf writer: tensor '%s': shape [%lld, %lld, %lld, %lld] does not fit "
                              "type %s", name, (long long)t.ne[0], (long long)t.ne[1],
                              (long long)t.ne[2], (long long)t.ne[3], tern_type_name(type));
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return tern_error_set(err, TERN_ENOMEM, "gguf writer: no memory");
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return tern_error_set(err, TERN_ENOMEM, "gguf writer: no memory");
    w->t[w->n_t++] = t;
    return TERN_OK;
}

/* ---- writing ---- */

typedef struct out {
    FILE *f;
    const char *path;
    uint64_t pos;
    uint64_t align; /* of the data section and of every tensor */
    tern_error *err;
} out;

static tern_status put(out *o, const void *p, uint64_t n)
{
    if (n && fwrite(p, 1, (size_t)n, o->f) != n)
        return tern_error_set(o->err, TERN_EIO, "%s: write failed at byte %llu: %s", o->path,
                              (unsigned long long)o->pos, strerror(errno));
    o->pos += n;
    return TERN_OK;
}

static tern_status put_u32(out *o, uint32_t v) { return put(o, &v, 4); }
static tern_status put_u64(out *o, uint64_t v) { return put(o, &v, 8); }

static tern_status put_str(out *o, const char *s)
{
    uint64_t n = strlen(s);
    tern_status st = put_u64(o, n);
    return st ? st : put(o, s, n);
}

static tern_status pad(out *o)
{
    static const uint8_t zeros[256];
    uint64_t to = o->pos;
    tern_status st = TERN_OK;
    if (tern_align_overflows(o->pos, o->align, &to))
        return tern_error_set(o->err, TERN_EINVAL, "%s: file too large", o->path);
    while (!st && o->pos < to) st = put(o, zeros, to - o->pos < 256 ? to - o->pos : 256);
    return st;
}

/* general.alignment when the caller set one (a u32 power of two), else 32. */
static tern_status alignment_of(const tern_gguf_writer *w, out *o)
{
    o->align = WRITER_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0) continue;
        uint32_t a = 0;
        if (w->kv[i].type == TERN_GGUF_U32) memcpy(&a, w->kv[i].val, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return tern_error_set(o->err, TERN_EINVAL,
                                  "%s: general.alignment must be a u32 power of two", o->path);
        o->align = a;
    }
    return TERN_OK;
}

static tern_status write_all(tern_gguf_writer *w, out *o)
{
    tern_status st = alignment_of(w, o);
    uint64_t off = 0, max = 0;
    if (st) return st;
    for (int64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (tern_align_overflows(off + w->t[i].size, o->align, &off))
            return tern_error_set(o->err, TERN_EINVAL, "%s: tensor data too large", o->path);
        if (w->t[i].size > max) max = w->t[i].size;
    }
    if ((st = put(o, "GGUF", 4)) || (st = put_u32(o, 3)) || (st = put_u64(o, (uint64_t)w->n_t)) ||
        (st = put_u64(o, (uint64_t)w->n_kv)))
        return st;
    for (int64_t i = 0; i < w->n_kv; i++)
        if ((st = put_str(o, w->kv[i].key)) || (st = put_u32(o, w->kv[i].type)) ||
            (st = put(o, w->kv[i].val, w->kv[i].len)))
            return st;
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if ((st = put_str(o, t->name)) || (st = put_u32(o, (uint32_t)t->n_dims))) return st;
        for (int d = 0; d < t->n_dims; d++)
            if ((st = put_u64(o, (uint64_t)t->ne[d]))) return st;
        if ((st = put_u32(o, (uint32_t)t->type)) || (st = put_u64(o, t->offset))) return st;
    }
    if ((st = pad(o))) return st;
    if (max > SIZE_MAX) return tern_error_set(o->err, TERN_ENOMEM, "%s: tensor too large", o->path);
    void *buf = w->n_t ? malloc((size_t)max) : NULL;
    if (w->n_t && !buf)
        return tern_error_set(o->err, TERN_ENOMEM, "%s: no memory for a %llu-byte tensor", o->path,
                              (unsigned long long)max);
    for (int64_t i = 0; i < w->n_t && !st; i++) {
        const wtensor *t = &w->t[i];
        memset(buf, 0, (size_t)t->size);
        if (t->fill && (st = t->fill(t->user, buf, t->size, o->err))) {
            tern_error_prefix(o->err, "%s: tensor '%s': ", o->path, t->name);
            break;
        }
        if (!(st = put(o, buf, t->size))) st = pad(o);
    }
    free(buf);
    return st;
}

tern_status tern_gguf_write(tern_gguf_writer *w, const char *path, tern_error *err)
{
    if (w->st) {
        if (err) *err = w->err;
        return w->st;
    }
    /* the file is written beside the target and renamed over it: only a
     * regular file is replaced, and through a symlink, not the link */
    char real[PATH_MAX];
    tern_status cs = tern_io_output_path(path, real, sizeof real, err);
    if (cs) return cs;
    size_t n = strlen(real);
    char *tmp = malloc(n + 16);
    if (!tmp) return tern_error_set(err, TERN_ENOMEM, "%s: no memory", path);
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", real);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        tern_status st = tern_error_set(err, TERN_EIO, "%s: cannot create a temporary file: %s",
                                        path, strerror(errno));
        free(tmp);
        return st;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a model file is for everyone to read */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return tern_error_set(err, TERN_EIO, "%s: fdopen failed", path);
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    out o = {f, path, 0, WRITER_ALIGNMENT, err};
    tern_status st = write_all(w, &o);
    if (fclose(f) != 0 && !st)
        st = tern_error_set(err, TERN_EIO, "%s: write failed: %s", path, strerror(errno));
    if (!st && rename(tmp, real) != 0)
        st = tern_error_set(err, TERN_EIO, "%s: rename from %s failed: %s", path, tmp,
                            strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    return st;
}
