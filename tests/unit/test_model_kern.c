/* Unit tests for model/tensor: type table, row sizes, f16/bf16, block layouts, quantizers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "model/kern.h"
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


/* ================================================================ kernels */

static bool have_avx2(void)
{
    if (kern_simd_set("avx2") != 0)
        return false;
    assert_int_equal(kern_simd_set("scalar"), 0);
    return true;
}

typedef struct mm_case {
    tensor_type t;
    size_t rows, cols, n;
    uint8_t *w;
    float *wf; /* dequantized weights */
    float *x;
    kern_mat m;
    void *scratch;
    size_t scratch_bytes;
} mm_case;

static void mm_case_init(mm_case *c, tensor_type t, size_t rows, size_t cols, size_t n)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    c->rows = rows;
    c->cols = cols;
    c->n = n;
    size_t rb = 0;
    assert_int_equal(tensor_row_bytes(t, cols, &rb), 0);
    c->w = malloc(rb * rows);
    c->wf = malloc(rows * cols * sizeof(float));
    c->x = malloc(n * cols * sizeof(float));
    float *tmp = malloc(cols * sizeof(float));
    assert_true(c->w && c->wf && c->x && tmp);
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < cols; j++)
            tmp[j] = rng_normal() * 0.02f;
        tensor_quantize_row(t, tmp, c->w + r * rb, cols);
        tensor_dequantize_row(t, c->w + r * rb, c->wf + r * cols, cols);
    }
    for (size_t i = 0; i < n * cols; i++)
        c->x[i] = rng_normal();
    /* a zero activation block and an outlier, as real activations have */
    for (size_t j = 0; j < 32 && j < cols; j++)
        c->x[j] = 0.0f;
    c->x[cols / 2] = 40.0f;
    free(tmp);
    assert_int_equal(kern_mat_init(&c->m, t, rows, cols, c->w), 0);
    c->scratch_bytes = kern_scratch_bytes(t, cols, n);
    c->scratch = c->scratch_bytes ? malloc(c->scratch_bytes) : NULL;
}

static void mm_case_free(mm_case *c)
{
    free(c->w);
    free(c->wf);
    free(c->x);
    free(c->scratch);
}

/* Y for activation rows [i0, i0+n) of the case, on pool p. */
static void mm_run(mm_case *c, pool *p, size_t i0, size_t n, float *y)
{
    kern_matmul(p, &c->m, c->x + i0 * c->cols, n, y, c->scratch, c->scratch_bytes);
}

/* Error bound of a matmul result against the exact f64 product of the
 * dequantized weights: activation quantization moves each x_j by at most
 * half a step (amax of its block / 254), plus float rounding. */
static void check_against_exact(mm_case *c, const float *y, const char *impl)
{
    size_t blk = c->t == TENSOR_Q4_K || c->t == TENSOR_Q6_K ? 256
                 : (c->t == TENSOR_Q8_0 || c->t == TENSOR_Q4_0) ? 32 : 0;
    for (size_t i = 0; i < c->n; i++) {
        const float *x = c->x + i * c->cols;
        for (size_t r = 0; r < c->rows; r++) {
            const float *w = c->wf + r * c->cols;
            double exact = 0, mag = 0, qbound = 0;
            for (size_t j = 0; j < c->cols; j++) {
                exact += (double)w[j] * x[j];
                mag += fabs((double)w[j] * x[j]);
            }
            if (blk) {
                for (size_t b0 = 0; b0 < c->cols; b0 += blk) {
                    double amax = 0, sw = 0;
                    for (size_t j = b0; j < b0 + blk; j++) {
                        amax = fmax(amax, fabs(x[j]));
                        sw += fabs(w[j]);
                    }
                    qbound += sw * amax / 254.0;
                }
            }
            double tol = qbound * 1.01 + 2e-6 * mag + 1e-6;
            double got = y[i * c->rows + r];
            if (fabs(got - exact) > tol)
                fail_msg("%s %s row %zu act %zu: got %.9g exact %.9g tol %.3g", impl,
                         tensor_type_name(c->t), r, i, got, exact, tol);
        }
    }
}

static const tensor_type ALL_TYPES[] = {TENSOR_F32, TENSOR_F16, TENSOR_BF16, TENSOR_Q8_0,
                                        TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};

/* Scalar and AVX2 against the exact product, and against each other. */
static void test_matmul_accuracy(void **state)
{
    (void)state;
    bool avx2 = have_avx2();
    for (size_t k = 0; k < ARRAY_LEN(ALL_TYPES); k++) {
        tensor_type t = ALL_TYPES[k];
        size_t cols = tensor_type_block_elems(t) == 1 ? 200 : 512; /* 200: SIMD tail */
        mm_case c;
        mm_case_init(&c, t, 37, cols, 6);
        float *ys = malloc(c.n * c.rows * sizeof(float));
        float *yv = malloc(c.n * c.rows * sizeof(float));
        assert_true(ys && yv);
        assert_int_equal(kern_simd_set("scalar"), 0);
        mm_run(&c, NULL, 0, c.n, ys);
        check_against_exact(&c, ys, "scalar");
        if (avx2) {
            assert_int_equal(kern_simd_set("avx2"), 0);
            mm_run(&c, NULL, 0, c.n, yv);
            check_against_exact(&c, yv, "avx2");
            /* same integer block sums, same float order: bitwise equal (kern_int.h) */
            if (memcmp(ys, yv, c.n * c.rows * sizeof(float)) != 0)
                fail_msg("%s: avx2 and scalar results differ", tensor_type_name(t));
        }
        free(ys);
        free(yv);
        mm_case_free(&c);
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
}

/* Bitwise batch invariance: a row's result is the same alone, in any batch, on
 * any thread count. */
static void check_invariance(const char *impl)
{
    pool *p2 = NULL, *p3 = NULL;
    assert_int_equal(pool_new(2, &p2), 0);
    assert_int_equal(pool_new(3, &p3), 0);
    for (size_t k = 0; k < ARRAY_LEN(ALL_TYPES); k++) {
        tensor_type t = ALL_TYPES[k];
        size_t cols = tensor_type_block_elems(t) == 1 ? 72 : 256;
        mm_case c;
        mm_case_init(&c, t, 41, cols, 64);
        size_t ny = c.n * c.rows;
        float *full = malloc(ny * sizeof(float)), *other = malloc(ny * sizeof(float));
        assert_true(full && other);
        mm_run(&c, NULL, 0, c.n, full);
        /* one row at a time */
        for (size_t i = 0; i < c.n; i++)
            mm_run(&c, NULL, i, 1, other + i * c.rows);
        if (memcmp(full, other, ny * sizeof(float)) != 0)
            fail_msg("%s %s: n=1 differs from n=64", impl, tensor_type_name(t));
        /* odd-sized batches at odd offsets, on 2 and 3 threads */
        size_t i = 0, step = 1;
        while (i < c.n) {
            size_t len = step < c.n - i ? step : c.n - i;
            mm_run(&c, step % 2 ? p3 : p2, i, len, other + i * c.rows);
            i += len;
            step += 2;
        }
        if (memcmp(full, other, ny * sizeof(float)) != 0)
            fail_msg("%s %s: uneven batches / threads differ from one batch", impl,
                     tensor_type_name(t));
        mm_run(&c, p3, 0, c.n, other);
        if (memcmp(full, other, ny * sizeof(float)) != 0)
            fail_msg("%s %s: 3 threads differ from 1", impl, tensor_type_name(t));
        free(full);
        free(other);
        mm_case_free(&c);
    }
    pool_free(p2);
    pool_free(p3);
}

static void test_matmul_batch_invariance(void **state)
{
    (void)state;
    bool avx2 = have_avx2();
    assert_int_equal(kern_simd_set("scalar"), 0);
    check_invariance("scalar");
    if (avx2) {
        assert_int_equal(kern_simd_set("avx2"), 0);
        check_invariance("avx2");
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
}

/*
 * Decode's matvec (n = 1) runs its own Q8_0/Q4_0/Q4_K kernels on AVX2 (four
 * quarter streams per pool chunk, the last < 4 rows one at a time; two half
 * streams for Q4_K): every row must
 * be bitwise the scalar reference's and the batched tiles' result, for row
 * counts that leave every remainder, and for pool splits whose chunks do too.
 */
static void test_matvec_decode_rows(void **state)
{
    (void)state;
    bool avx2 = have_avx2();
    pool *p2 = NULL, *p3 = NULL;
    assert_int_equal(pool_new(2, &p2), 0);
    assert_int_equal(pool_new(3, &p3), 0);
    static const tensor_type types[] = {TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_Q4_K};
    static const size_t rows_list[] = {1, 2, 3, 4, 5, 7, 8, 13, 17, 64, 67, 301};
    static const size_t cols_list[] = {256, 576, 2048};
    for (size_t k = 0; k < ARRAY_LEN(types); k++)
        for (size_t ri = 0; ri < ARRAY_LEN(rows_list); ri++)
            for (size_t ci = 0; ci < ARRAY_LEN(cols_list); ci++) {
                size_t rows = rows_list[ri], cols = cols_list[ci], n = 5;
                if (cols % tensor_type_block_elems(types[k]) != 0)
                    continue;
                mm_case c;
                mm_case_init(&c, types[k], rows, cols, n);
                float *ref = malloc(n * rows * sizeof(float));
                float *got = malloc(n * rows * sizeof(float));
                assert_true(ref && got);
                assert_int_equal(kern_simd_set("scalar"), 0);
                mm_run(&c, NULL, 0, n, ref);
                for (int impl = 0; impl < (avx2 ? 2 : 1); impl++) {
                    assert_int_equal(kern_simd_set(impl ? "avx2" : "scalar"), 0);
                    pool *pools[] = {NULL, p2, p3};
                    for (size_t pi = 0; pi < ARRAY_LEN(pools); pi++) {
                        memset(got, 0xff, n * rows * sizeof(float));
                        for (size_t i = 0; i < n; i++)
                            mm_run(&c, pools[pi], i, 1, got + i * rows);
                        if (memcmp(ref, got, n * rows * sizeof(float)) != 0)
                            fail_msg("%s %s rows %zu cols %zu pool %zu: n=1 differs from the "
                                     "scalar batch",
                                     impl ? "avx2" : "scalar", tensor_type_name(types[k]), rows,
                                     cols, pi);
                    }
                    /* and the batched tiles of this implementation */
                    mm_run(&c, p2, 0, n, got);
                    if (memcmp(ref, got, n * rows * sizeof(float)) != 0)
                        fail_msg("%s %s rows %zu cols %zu: batch differs from scalar",
                                 impl ? "avx2" : "scalar", tensor_type_name(types[k]), rows, cols);
                }
                free(ref);
                free(got);
                mm_case_free(&c);
            }
    assert_int_equal(kern_simd_set("scalar"), 0);
    pool_free(p2);
    pool_free(p3);
}

static void test_mat_init_and_scratch(void **state)
{
    (void)state;
    kern_mat m;
    uint8_t dummy[64] = {0};
    assert_int_equal(kern_mat_init(&m, TENSOR_Q8_0, 2, 64, dummy), 0);
    assert_int_equal(m.row_bytes, 68);
    assert_int_equal(kern_mat_init(&m, TENSOR_Q8_0, 2, 65, dummy), ERR_FORMAT);
    assert_int_equal(kern_mat_init(&m, TENSOR_F32, 2, 0, dummy), ERR_FORMAT);
    assert_int_equal(kern_mat_init(&m, (tensor_type)13, 2, 256, dummy), ERR_UNSUPPORTED);
    assert_int_equal(kern_mat_init(&m, TENSOR_F32, SIZE_MAX / 2, 8, dummy), ERR_OVERFLOW);
    assert_int_equal(kern_scratch_bytes(TENSOR_F16, 4096, 64), 0);
    assert_true(kern_scratch_bytes(TENSOR_Q8_0, 4096, 2) >= 2 * (4096 + 512));
    assert_int_equal(kern_scratch_bytes(TENSOR_Q4_K, 4096, SIZE_MAX / 1000), SIZE_MAX);
    assert_int_equal(kern_simd_set("neon"), ERR_INVAL);
    const char *name = kern_simd_name();
    assert_true(strcmp(name, "scalar") == 0 || strcmp(name, "avx2") == 0);
}

/* ---- helpers: each implementation against a double reference ---- */

static void check_helpers(const char *impl)
{
    enum { N = 203 };
    float x[N], w[N], y[N], g[N], u[N];
    for (int i = 0; i < N; i++) {
        x[i] = rng_normal();
        w[i] = 1.0f + 0.1f * rng_normal();
        g[i] = 4.0f * rng_normal();
        u[i] = rng_normal();
    }
    /* rmsnorm */
    double ss = 0;
    for (int i = 0; i < N; i++)
        ss += (double)x[i] * x[i];
    double rr = 1.0 / sqrt(ss / N + 1e-5);
    kern_rmsnorm(y, x, w, N, 1e-5f);
    for (int i = 0; i < N; i++)
        if (fabs(y[i] - x[i] * rr * w[i]) > 1e-5 * (fabs(x[i] * rr * w[i]) + 1e-3))
            fail_msg("%s rmsnorm %d", impl, i);
    /* softmax, including a -inf (masked) entry and large values */
    float s[N];
    for (int i = 0; i < N; i++)
        s[i] = 10.0f * x[i];
    s[7] = -INFINITY;
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < N; i++)
        mx = fmax(mx, s[i]);
    for (int i = 0; i < N; i++)
        sum += exp((double)s[i] - mx);
    float sm[N];
    memcpy(sm, s, sizeof s);
    kern_softmax(sm, N);
    for (int i = 0; i < N; i++) {
        double e = exp((double)s[i] - mx) / sum;
        if (fabs(sm[i] - e) > 1e-6 * e + 1e-9)
            fail_msg("%s softmax %d: %g vs %g", impl, i, (double)sm[i], e);
    }
    assert_true(sm[7] == 0.0f);
    float one = 3.0f;
    kern_softmax(&one, 1);
    assert_true(one == 1.0f);
    /* swiglu */
    kern_swiglu(y, g, u, N);
    for (int i = 0; i < N; i++) {
        double e = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (fabs(y[i] - e) > 1e-6 * fabs(e) + 1e-7)
            fail_msg("%s swiglu %d: %g vs %g", impl, i, (double)y[i], e);
    }
    /* add */
    kern_add(y, x, w, N);
    for (int i = 0; i < N; i++)
        assert_true(y[i] == x[i] + w[i]);
    /* f16 rows match the scalar converters bit for bit */
    uint16_t h[N];
    kern_f32_to_f16(h, x, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(h[i], tensor_f32_to_f16(x[i]));
    kern_f16_to_f32(y, h, N);
    for (int i = 0; i < N; i++)
        assert_true(y[i] == tensor_f16_to_f32(h[i]));
    /* attention over f16 K/V: 9 positions, head_dim 72 (SIMD + tail), stride 80 */
    enum { T = 9, HD = 72, ST = 80 };
    uint16_t kv[T * ST];
    float q[HD], sc[T], out[HD];
    for (int i = 0; i < T * ST; i++)
        kv[i] = tensor_f32_to_f16(rng_normal());
    for (int i = 0; i < HD; i++)
        q[i] = rng_normal();
    kern_attn_scores(sc, q, kv, ST, T, HD, 0.125f);
    for (int t = 0; t < T; t++) {
        double e = 0, mag = 0;
        for (int d = 0; d < HD; d++) {
            e += (double)q[d] * tensor_f16_to_f32(kv[t * ST + d]);
            mag += fabs((double)q[d] * tensor_f16_to_f32(kv[t * ST + d]));
        }
        if (fabs(sc[t] - 0.125 * e) > 1e-6 * mag)
            fail_msg("%s attn_scores %d", impl, t);
    }
    kern_softmax(sc, T);
    kern_attn_accum(out, sc, kv, ST, T, HD);
    for (int d = 0; d < HD; d++) {
        double e = 0;
        for (int t = 0; t < T; t++)
            e += (double)sc[t] * tensor_f16_to_f32(kv[t * ST + d]);
        if (fabs(out[d] - e) > 1e-5)
            fail_msg("%s attn_accum %d", impl, d);
    }
}

static void test_helpers(void **state)
{
    (void)state;
    bool avx2 = have_avx2();
    assert_int_equal(kern_simd_set("scalar"), 0);
    check_helpers("scalar");
    if (avx2) {
        assert_int_equal(kern_simd_set("avx2"), 0);
        check_helpers("avx2");
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
}

static void test_rope(void **state)
{
    (void)state;
    enum { H = 3, D = 8 };
    float x[H * D], y[H * D];
    for (int i = 0; i < H * D; i++)
        x[i] = rng_normal();
    /* position 0 is the identity */
    memcpy(y, x, sizeof x);
    kern_rope(y, H, D, D, 0, 10000.0f, 1.0f, false);
    assert_memory_equal(x, y, sizeof x);
    /* normal ordering rotates (0,1) by pos*1 rad for pair 0, (2,3) by pos*base^(-2/8) */
    memcpy(y, x, sizeof x);
    kern_rope(y, H, D, D, 3, 10000.0f, 1.0f, false);
    for (int h = 0; h < H; h++) {
        const float *a = x + h * D, *b = y + h * D;
        for (int i = 0; i < D / 2; i++) {
            double th = 3.0 * pow(10000.0, -2.0 * i / D);
            double e0 = a[2 * i] * cos(th) - a[2 * i + 1] * sin(th);
            double e1 = a[2 * i] * sin(th) + a[2 * i + 1] * cos(th);
            assert_true(fabs(b[2 * i] - e0) < 1e-5 && fabs(b[2 * i + 1] - e1) < 1e-5);
        }
    }
    /* NeoX pairs (i, i+D/2); partial rotation leaves the tail alone */
    memcpy(y, x, sizeof x);
    kern_rope(y, H, D, 4, 5, 1000.0f, 0.5f, true);
    for (int h = 0; h < H; h++) {
        const float *a = x + h * D, *b = y + h * D;
        for (int i = 0; i < 2; i++) {
            double th = 5.0 * 0.5 * pow(1000.0, -2.0 * i / 4);
            double e0 = a[i] * cos(th) - a[i + 2] * sin(th);
            double e1 = a[i] * sin(th) + a[i + 2] * cos(th);
            assert_true(fabs(b[i] - e0) < 1e-5 && fabs(b[i + 2] - e1) < 1e-5);
        }
        for (int i = 4; i < D; i++)
            assert_true(b[i] == a[i]);
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
        cmocka_unit_test(test_mat_init_and_scratch),
        cmocka_unit_test(test_matmul_accuracy),
        cmocka_unit_test(test_matmul_batch_invariance),
        cmocka_unit_test(test_matvec_decode_rows),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
