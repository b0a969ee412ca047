/* ops_get_rows.c - embedding lookup: dst row r = dequant(src0 row ids[r]),
 * decoded by the reference decoders (tern_dequantize_rows) from the file
 * layout of F32, F16, BF16, Q8_0, TQ1_0, TQ2_0 or I2_S. An id outside the
 * table is reported through the evaluation's error slot (and its row is
 * NaN, so the bytes stay defined). */
#include <math.h>

#include "scalar.h"

void scalar_get_rows(void *ctx, const tern_node *node, int ith, int nth, void *scratch)
{
    (void)scratch;
    const scalar_ctx *c = ctx;
    const tern_tensor *table = node->src[0], *ids = node->src[1];
    int64_t lo, hi, n = table->ne[0], n_rows = tern_tensor_nrows(table);
    scalar_split(tern_tensor_nrows(node->dst), ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *y = (float *)scalar_row(node->dst, r);
        int32_t id = scalar_i32(ids, r);
        if (id < 0 || id >= n_rows || tern_dequantize_rows(table, id, 1, y, NULL) != TERN_OK) {
            for (int64_t k = 0; k < n; k++) y[k] = NAN;
            c->host->node_error(node, TERN_EINVAL, "row id %d outside the table of %lld rows", id,
                                (long long)n_rows);
        }
    }
}
