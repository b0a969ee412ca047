/* test_core.c - status messages, checked arithmetic, half floats, the type table. */
#include <math.h>
#include <stdint.h>

#include "common/testutil.h"
#include "tern/tern.h"

START_TEST(test_error_record)
{
    tern_error err;
    tern_status st = tern_error_set(&err, TERN_EFORMAT, "file %s: bad\nline", "x.gguf");
    ck_assert_int_eq(st, TERN_EFORMAT);
    ck_assert_int_eq(err.status, TERN_EFORMAT);
    ck_assert_str_eq(err.msg, "file x.gguf: bad line");
    tern_error_prefix(&err, "loading: ");
    ck_assert_str_eq(err.msg, "loading: file x.gguf: bad line");
    ck_assert_str_eq(tern_status_name(TERN_EABI), "EABI");
    ck_assert_str_eq(tern_status_name((tern_status)999), "E?");
    ck_assert_int_eq(tern_error_set(NULL, TERN_EIO, "ignored"), TERN_EIO);
}
END_TEST

START_TEST(test_checked_arith)
{
    size_t r;
    uint64_t u;
    ck_assert_int_eq(tern_mul_overflows(SIZE_MAX / 2 + 1, 2, &r), 1);
    ck_assert_int_eq(tern_mul_overflows(1000, 1000, &r), 0);
    ck_assert_uint_eq(r, 1000000);
    ck_assert_int_eq(tern_add_overflows(SIZE_MAX, 1, &r), 1);
    ck_assert_int_eq(tern_align_overflows(UINT64_MAX - 3, 32, &u), 1);
    ck_assert_int_eq(tern_align_overflows(33, 32, &u), 0);
    ck_assert_uint_eq(u, 64);
}
END_TEST

/* Every half converts to float and back unchanged (NaNs stay NaN). */
START_TEST(test_f16_roundtrip_exhaustive)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tern_f16_to_f32((uint16_t)h);
        uint16_t back = tern_f32_to_f16(f);
        if (isnan(f))
            ck_assert(isnan(tern_f16_to_f32(back)));
        else
            ck_assert_msg(back == h, "half 0x%04x -> %g -> 0x%04x", h, f, back);
    }
    /* rounding: halfway between 1 and the next half rounds to even */
    ck_assert_uint_eq(tern_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);
    ck_assert_uint_eq(tern_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    ck_assert_uint_eq(tern_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(tern_f32_to_f16(65519.0f), 0x7bff);
    ck_assert_float_eq(tern_bf16_to_f32(tern_f32_to_bf16(1.5f)), 1.5f);
}
END_TEST

START_TEST(test_type_table)
{
    ck_assert_str_eq(tern_type_name(TERN_TYPE_TQ2_0), "tq2_0");
    ck_assert_int_eq(tern_type_from_name("i2_s"), TERN_TYPE_I2_S);
    ck_assert_int_eq(tern_type_from_name("nope"), -1);
    ck_assert_ptr_null(tern_type_get(2)); /* Q4_0 is not a tern type */
    ck_assert_ptr_null(tern_type_get(-1));
    ck_assert_uint_eq(tern_row_size(TERN_TYPE_TQ2_0, 512), 132);
    ck_assert_uint_eq(tern_row_size(TERN_TYPE_TQ2_0, 100), 0);
    ck_assert_uint_eq(tern_row_size(TERN_TYPE_Q8_TOK, 100), 64 + 128);
    int64_t ne[4] = {256, 64, 1, 1};
    ck_assert_uint_eq(tern_tensor_file_bytes(TERN_TYPE_I2_S, ne), 256 * 64 / 4 + 32);
    ck_assert_uint_eq(tern_tensor_file_bytes(TERN_TYPE_TQ1_0, ne), 64 * 54);
}
END_TEST

/* Packing then decoding every ternary type gives back the codes. */
START_TEST(test_ternary_pack_roundtrip)
{
    enum { K = 512, N = 3 };
    static int8_t codes[K * N], back[K];
    static uint8_t buf[K * N];
    unsigned long long s = 42;
    for (int i = 0; i < K * N; i++) codes[i] = (int8_t)(tu_rand(&s) % 3) - 1;
    const int types[] = {TERN_TYPE_TQ1_0, TERN_TYPE_TQ2_0, TERN_TYPE_I2_S};
    for (int ti = 0; ti < 3; ti++) {
        int64_t ne[2] = {K, N};
        tern_tensor t;
        tern_tensor_init(&t, types[ti], 2, ne);
        t.data = buf;
        t.scale = 0.25f;
        if (types[ti] == TERN_TYPE_TQ1_0) tern_pack_tq1_0(codes, K * N, 0.25f, buf);
        if (types[ti] == TERN_TYPE_TQ2_0) tern_pack_tq2_0(codes, K * N, 0.25f, buf);
        if (types[ti] == TERN_TYPE_I2_S) tern_pack_i2_s(codes, K * N, 0.25f, buf);
        float scale = 0, row[K];
        ck_assert_int_eq(tern_ternary_tensor_scale(&t, &scale, NULL), TERN_OK);
        ck_assert_float_eq(scale, 0.25f);
        for (int r = 0; r < N; r++) {
            ck_assert_int_eq(tern_ternary_row_codes(&t, r, back, NULL, NULL), TERN_OK);
            ck_assert_mem_eq(back, codes + r * K, K);
            ck_assert_int_eq(tern_dequantize_rows(&t, r, 1, row, NULL), TERN_OK);
            for (int k = 0; k < K; k++) ck_assert_float_eq(row[k], 0.25f * codes[r * K + k]);
        }
    }
}
END_TEST

Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_error_record);
    tcase_add_test(tc, test_checked_arith);
    tcase_add_test(tc, test_f16_roundtrip_exhaustive);
    tcase_add_test(tc, test_type_table);
    tcase_add_test(tc, test_ternary_pack_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}
