/* types.c - the type traits table: one row per tensor type id. */
#include <string.h>

#include "tern/quant.h"
#include "tern/tensor.h"

static const tern_type_traits type_table[TERN_TYPE_COUNT] = {
    [TERN_TYPE_F32] = {"f32", 1, 4, 0, 1, 0, 1},
    [TERN_TYPE_F16] = {"f16", 1, 2, 0, 1, 0, 1},
    [TERN_TYPE_Q8_0] = {"q8_0", TERN_QK8_0, 34, 0, 1, 0, 1},
    [TERN_TYPE_I8] = {"i8", 1, 1, 0, 1, 0, 0},
    [TERN_TYPE_I32] = {"i32", 1, 4, 0, 1, 0, 0},
    [TERN_TYPE_BF16] = {"bf16", 1, 2, 0, 1, 0, 1},
    [TERN_TYPE_TQ1_0] = {"tq1_0", TERN_QK_K, 54, 0, 1, 1, 1},
    [TERN_TYPE_TQ2_0] = {"tq2_0", TERN_QK_K, 66, 0, 1, 1, 1},
    /* I2_S packs 4 values a byte over the whole tensor and appends a 32-byte
     * trailer holding the scale; see tern_tensor_file_bytes. */
    [TERN_TYPE_I2_S] = {"i2_s", 4, 1, 0, 1, 1, 1},
    [TERN_TYPE_Q8_TOK] = {"q8_tok", 1, 1, TERN_Q8TOK_HEADER, TERN_Q8TOK_ALIGN, 0, 0},
};

const tern_type_traits *tern_type_get(int type)
{
    if (type < 0 || type >= TERN_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

const char *tern_type_name(int type)
{
    const tern_type_traits *tt = tern_type_get(type);
    return tt ? tt->name : "?";
}

int tern_type_from_name(const char *name)
{
    for (int i = 0; i < TERN_TYPE_COUNT; i++)
        if (type_table[i].name && strcmp(type_table[i].name, name) == 0) return i;
    return -1;
}

size_t tern_row_size(int type, int64_t ne0)
{
    const tern_type_traits *tt = tern_type_get(type);
    if (!tt || ne0 < 0 || ne0 % tt->blck_size != 0 || ne0 >= ((int64_t)1 << 40)) return 0;
    size_t body = (size_t)(ne0 / tt->blck_size) * tt->type_size;
    body = (body + tt->row_align - 1) / tt->row_align * tt->row_align;
    return tt->row_header + body;
}

void tern_tensor_init(tern_tensor *t, int type, int n_dims, const int64_t *ne)
{
    memset(t, 0, sizeof *t);
    t->type = type;
    for (int i = 0; i < TERN_MAX_DIMS; i++) t->ne[i] = i < n_dims ? ne[i] : 1;
    const tern_type_traits *tt = tern_type_get(type);
    t->nb[0] = tt ? tt->type_size : 0;
    t->nb[1] = tern_row_size(type, t->ne[0]);
    for (int i = 2; i < TERN_MAX_DIMS; i++) t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
    t->scale = 1.0f;
}

int64_t tern_tensor_nelements(const tern_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

int64_t tern_tensor_nrows(const tern_tensor *t)
{
    return t->ne[1] * t->ne[2] * t->ne[3];
}

size_t tern_tensor_nbytes(const tern_tensor *t)
{
    return t->nb[3] * (size_t)t->ne[3];
}
