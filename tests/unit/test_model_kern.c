/* Unit tests for model/tensor: type table, row sizes, f16/bf16, block layouts, quantizers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/tensor.h"

/* Deterministic N(0,1)-ish generator (xorshift + Box-Muller). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rng_u01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_normal(void)
{
    double u = rng_u01(), v = rng_u01();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void test_type_table(void **state)
{
    (void)state;
    static const struct {
        uint32_t id;
        const char *name;
        size_t be, bb;
        bool ok;
    } cases[] = {
        {0, "f32", 1, 4, true},       {1, "f16", 1, 2, true},      {2, "q4_0", 32, 18, true},
        {8, "q8_0", 32, 34, true},    {12, "q4_K", 256, 144, true}, {14, "q6_K", 256, 210, true},
        {30, "bf16", 1, 2, true},     {13, "q5_K", 256, 176, false}, {16, "iq2_xxs", 256, 66, false},
        {3, "q4_1", 32, 20, false},   {11, "q3_K", 256, 110, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_string_equal(tensor_type_name(cases[i].id), cases[i].name);
        assert_int_equal(tensor_type_supported(cases[i].id), cases[i].ok);
        assert_int_equal(tensor_type_block_elems((tensor_type)cases[i].id), cases[i].be);
        assert_int_equal(tensor_type_block_bytes((tensor_type)cases[i].id), cases[i].bb);
    }
    assert_string_equal(tensor_type_name(4), "unknown");
    assert_string_equal(tensor_type_name(1000), "unknown");
    assert_false(tensor_type_supported(4));
    assert_false(tensor_type_supported(0xffffffffu));
    assert_int_equal(tensor_type_block_elems((tensor_type)77), 0);
}

static void test_row_bytes(void **state)
{
    (void)state;
    size_t n = 0;
    assert_int_equal(tensor_row_bytes(TENSOR_F32, 10, &n), 0);
    assert_int_equal(n, 40);
    assert_int_equal(tensor_row_bytes(TENSOR_Q8_0, 4096, &n), 0);
    assert_int_equal(n, 128 * 34);
    assert_int_equal(tensor_row_bytes(TENSOR_Q4_0, 64, &n), 0);
    assert_int_equal(n, 36);
    assert_int_equal(tensor_row_bytes(TENSOR_Q4_K, 512, &n), 0);
    assert_int_equal(n, 288);
    assert_int_equal(tensor_row_bytes(TENSOR_Q6_K, 256, &n), 0);
    assert_int_equal(n, 210);
    assert_int_equal(tensor_row_bytes(TENSOR_BF16, 3, &n), 0);
    assert_int_equal(n, 6);
    assert_int_equal(tensor_row_bytes(TENSOR_Q8_0, 33, &n), ERR_FORMAT);
    assert_int_equal(tensor_row_bytes(TENSOR_Q4_K, 128, &n), ERR_FORMAT);
    assert_int_equal(tensor_row_bytes(TENSOR_F32, UINT64_MAX / 2, &n), ERR_OVERFLOW);
    assert_int_equal(tensor_row_bytes(TENSOR_Q8_0, (UINT64_MAX / 32) * 32, &n), ERR_OVERFLOW);
    /* 2^56 Q6_K blocks of 210 bytes still fit in 64 bits */
    assert_int_equal(tensor_row_bytes(TENSOR_Q6_K, (UINT64_MAX / 256) * 256, &n), 0);
    assert_int_equal(tensor_row_bytes((tensor_type)5, 32, &n), ERR_UNSUPPORTED);
}

static void test_f16_known(void **state)
{
    (void)state;
    assert_int_equal(tensor_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(tensor_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(tensor_f32_to_f16(0.5f), 0x3800);
    assert_int_equal(tensor_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(tensor_f32_to_f16(65519.0f), 0x7bff); /* below the halfway point */
    assert_int_equal(tensor_f32_to_f16(65520.0f), 0x7c00); /* ties to even: inf */
    assert_int_equal(tensor_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(tensor_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(tensor_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    assert_int_equal(tensor_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even 0 */
    assert_int_equal(tensor_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    assert_int_equal(tensor_f32_to_f16(ldexpf(1.0f, -14)), 0x0400);
    assert_int_equal(tensor_f32_to_f16(-0.0f), 0x8000);
    /* 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even (1.0) */
    assert_int_equal(tensor_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    assert_int_equal(tensor_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    uint16_t nan = tensor_f32_to_f16(NAN);
    assert_true((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
    assert_true(tensor_f16_to_f32(0x3c00) == 1.0f);
    assert_true(tensor_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(tensor_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(tensor_f16_to_f32(0xfc00) == -INFINITY);
    assert_true(isnan(tensor_f16_to_f32(0x7e00)));
}

/* Every f16 bit pattern survives f16 -> f32 -> f16; rounding is to nearest. */
static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tensor_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            assert_true(isnan(tensor_f16_to_f32(tensor_f32_to_f16(f))));
            continue;
        }
        assert_int_equal(tensor_f32_to_f16(f), h);
        /* a value just above f must round to f or the next pattern, never farther */
        if ((h & 0x7fff) < 0x7bff) {
            float next = tensor_f16_to_f32((uint16_t)(h + 1));
            float mid_lo = f + (next - f) * 0.25f;
            uint16_t r = tensor_f32_to_f16(mid_lo);
            assert_int_equal(r, h);
            float mid_hi = f + (next - f) * 0.75f;
            assert_int_equal(tensor_f32_to_f16(mid_hi), h + 1);
        }
    }
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(tensor_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(tensor_f32_to_bf16(-2.0f), 0xc000);
    assert_true(tensor_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1+2^-7: ties to even */
    assert_int_equal(tensor_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    assert_int_equal(tensor_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    assert_true(isnan(tensor_bf16_to_f32(tensor_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = tensor_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            assert_int_equal(tensor_f32_to_bf16(f), h);
    }
}

/* Hand-assembled blocks decode to the values ggml's layout defines. */
static void test_known_bits_q4_0_q8_0(void **state)
{
    (void)state;
    uint8_t raw[18] = {0};
    raw[0] = 0x00; /* d = f16 0.5 = 0x3800, little endian */
    raw[1] = 0x38;
    raw[2] = 0x9a; /* qs[0]: low nibble a (elem 0), high nibble 9 (elem 16) */
    raw[17] = 0x0f; /* qs[15]: elem 15 = 15, elem 31 = 0 */
    for (int j = 1; j < 15; j++)
        raw[2 + j] = 0x88;
    float y[32];
    tensor_dequantize_row(TENSOR_Q4_0, raw, y, 32);
    assert_true(y[0] == 1.0f);
    assert_true(y[16] == 0.5f);
    assert_true(y[15] == 3.5f);
    assert_true(y[31] == -4.0f);
    assert_true(y[5] == 0.0f);

    uint8_t r8[34];
    r8[0] = 0x00;
    r8[1] = 0xc0; /* d = -2 */
    for (int j = 0; j < 32; j++)
        r8[2 + j] = (uint8_t)(int8_t)(j - 16);
    tensor_dequantize_row(TENSOR_Q8_0, r8, y, 32);
    for (int j = 0; j < 32; j++)
        assert_true(y[j] == -2.0f * (float)(j - 16));
}

static void test_known_bits_q4_K(void **state)
{
    (void)state;
    tensor_block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = tensor_f32_to_f16(0.25f);
    b.dmin = tensor_f32_to_f16(0.5f);
    /* sub-block 1: scale 5, min 3; sub-block 6: scale 45 (0b101101), min 33 (0b100001) */
    b.scales[1] = 5;
    b.scales[5] = 3;
    b.scales[6 + 4] = (uint8_t)((45 & 0xf) | ((33 & 0xf) << 4));
    b.scales[6 - 4] |= (uint8_t)((45 >> 4) << 6);
    b.scales[6] |= (uint8_t)((33 >> 4) << 6);
    uint8_t sc, m;
    tensor_q4_K_scale_min(6, b.scales, &sc, &m);
    assert_int_equal(sc, 45);
    assert_int_equal(m, 33);
    tensor_q4_K_scale_min(2, b.scales, &sc, &m);
    assert_int_equal(sc, 0); /* top bits of byte 2 belong to sub-block 6 only */
    assert_int_equal(m, 0);
    /* element 32+7 is sub-block 1 (high nibble of qs[7]); element 192+3 is sub-block 6
     * (low nibble of chunk 3 byte 3) */
    b.qs[7] = 0xb0;
    b.qs[96 + 3] = 0x0e;
    float y[256];
    tensor_dequantize_row(TENSOR_Q4_K, &b, y, 256);
    assert_true(y[39] == 0.25f * 5 * 11 - 0.5f * 3);
    assert_true(y[32] == -0.5f * 3);
    assert_true(y[195] == 0.25f * 45 * 14 - 0.5f * 33);
    assert_true(y[7] == 0.0f); /* sub-block 0: scale 0, min 0 */
}

static void test_known_bits_q6_K(void **state)
{
    (void)state;
    tensor_block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = tensor_f32_to_f16(0.5f);
    for (int s = 0; s < 16; s++)
        b.scales[s] = (int8_t)(s - 8);
    /* element 128 + 64 + 5 (half 1, k = 2, l = 5): low bits = high nibble of ql[64+5],
     * high bits = bits 4-5 of qh[32+5]; set q = 0b10_0111 = 39 */
    b.ql[64 + 5] = 0x70;
    b.qh[32 + 5] = 0x20;
    /* element 32 + 17 (half 0, k = 1, l = 17): low nibble of ql[32+17], qh bits 2-3 */
    b.ql[32 + 17] = 0x03;
    b.qh[17] = 0x0c; /* q = 3 | 3<<4 = 51 */
    float y[256];
    tensor_dequantize_row(TENSOR_Q6_K, &b, y, 256);
    assert_true(y[197] == 0.5f * (float)((197 / 16) - 8) * (float)(39 - 32));
    assert_true(y[49] == 0.5f * (float)((49 / 16) - 8) * (float)(51 - 32));
    assert_true(y[0] == 0.5f * -8.0f * -32.0f);
}

/* Round trip error per type, on Gaussian data with a few outliers. */
static void check_roundtrip(tensor_type t, size_t n, double max_rel_rms, double max_abs_rel)
{
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    size_t bytes = 0;
    assert_int_equal(tensor_row_bytes(t, n, &bytes), 0);
    uint8_t *q = malloc(bytes + 1);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_normal() * 0.02f;
    x[3] = 0.3f; /* outliers and a zero block */
    x[n / 2] = -0.25f;
    for (size_t i = 64; i < 96 && i < n; i++)
        x[i] = 0.0f;
    /* quantize into a misaligned destination to prove no alignment is assumed */
    tensor_quantize_row(t, x, q + 1, n);
    tensor_dequantize_row(t, q + 1, y, n);
    double se = 0, sx = 0;
    size_t be = tensor_type_block_elems(t);
    for (size_t b0 = 0; b0 < n; b0 += be) {
        float amax = 0;
        for (size_t i = b0; i < b0 + be; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        for (size_t i = b0; i < b0 + be; i++) {
            double d = (double)y[i] - (double)x[i];
            se += d * d;
            sx += (double)x[i] * x[i];
            if (fabs(d) > max_abs_rel * amax + 3e-8) /* 3e-8: f16 subnormal half-step */
                fail_msg("%s elem %zu: x=%g y=%g (block amax %g)", tensor_type_name(t), i,
                         (double)x[i], (double)y[i], (double)amax);
        }
    }
    double rel = sqrt(se / sx);
    if (getenv("KERN_TEST_VERBOSE"))
        print_message("%s rel rms %g\n", tensor_type_name(t), rel);
    if (rel > max_rel_rms)
        fail_msg("%s: relative rms error %g > %g", tensor_type_name(t), rel, max_rel_rms);
    /* requantizing the dequantized row is stable for the exact-grid types */
    if (t == TENSOR_Q8_0 || t == TENSOR_F16 || t == TENSOR_BF16 || t == TENSOR_F32) {
        uint8_t *q2 = malloc(bytes);
        assert_non_null(q2);
        tensor_quantize_row(t, y, q2, n);
        assert_memory_equal(q2, q + 1, bytes);
        free(q2);
    }
    free(x);
    free(y);
    free(q);
}

static void test_roundtrip_errors(void **state)
{
    (void)state;
    check_roundtrip(TENSOR_F32, 512, 0.0, 0.0);
    check_roundtrip(TENSOR_F16, 512, 5e-4, 5e-4);
    check_roundtrip(TENSOR_BF16, 512, 4e-3, 4e-3);
    /* Q8_0: |err| <= d/2 + 127*|d - f16(d)|, d = amax/127: under 0.6/127 of amax */
    check_roundtrip(TENSOR_Q8_0, 1024, 0.01, 0.6 / 127.0);
    /* Q4_0: the clamped side may be off by a full step d = amax/8 */
    check_roundtrip(TENSOR_Q4_0, 1024, 0.16, 1.01 / 8.0);
    /* Q4_K: 4-bit affine per 32 with 6-bit scales; step <= range/15 */
    check_roundtrip(TENSOR_Q4_K, 1024, 0.12, 2.2 / 15.0);
    /* Q6_K: 6-bit symmetric per 16 with 8-bit scales */
    check_roundtrip(TENSOR_Q6_K, 1024, 0.03, 1.2 / 32.0);
}

static void test_all_zero_and_constant(void **state)
{
    (void)state;
    const tensor_type types[] = {TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};
    float x[256], y[256];
    uint8_t q[256 * 4];
    for (size_t k = 0; k < ARRAY_LEN(types); k++) {
        memset(x, 0, sizeof x);
        tensor_quantize_row(types[k], x, q, 256);
        tensor_dequantize_row(types[k], q, y, 256);
        for (int i = 0; i < 256; i++)
            assert_true(y[i] == 0.0f);
        for (int i = 0; i < 256; i++)
            x[i] = 0.125f;
        tensor_quantize_row(types[k], x, q, 256);
        tensor_dequantize_row(types[k], q, y, 256);
        for (int i = 0; i < 256; i++)
            assert_true(fabsf(y[i] - 0.125f) < 0.125f * 0.01f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_row_bytes),
        cmocka_unit_test(test_f16_known),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_known_bits_q4_0_q8_0),
        cmocka_unit_test(test_known_bits_q4_K),
        cmocka_unit_test(test_known_bits_q6_K),
        cmocka_unit_test(test_roundtrip_errors),
        cmocka_unit_test(test_all_zero_and_constant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
