/*
 * Unit tests for model/kern_gemm (the n >= 8 matmul path): for every weight
 * type and every n = 1..33, each row of an n-row kern_matmul is BITWISE the
 * n = 1 (matvec) result for that row, on the scalar and on the AVX2 path, on
 * the calling thread and on a pool; the two paths agree bitwise with each
 * other; kern_matmul_multi over mixed formats equals the single calls; and the
 * results stay within the activation quantization bound of the exact product
 * of the dequantized weights (so a kernel that is consistently wrong cannot
 * pass by matching itself). Shapes cross the kernels' K chunk (512 elements)
 * and row block (16) edges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "model/kern.h"
#include "model/tensor.h"

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

static const tensor_type TYPES[] = {TENSOR_F32,  TENSOR_F16,  TENSOR_BF16, TENSOR_Q8_0,
                                    TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};

enum { N_MAX = 33 };

typedef struct gcase {
    tensor_type t;
    size_t rows, cols, rb;
    uint8_t *w;
    float *x;     // N_MAX rows
    double *ref;  // exact products of the dequantized weights, N_MAX x rows
    double *bound; // allowed |error| per output
    kern_mat m;
} gcase;

static void gcase_init(gcase *c, tensor_type t, size_t rows, size_t cols)
{
    c->t = t;
    c->rows = rows;
    c->cols = cols;
    assert_int_equal(tensor_row_bytes(t, cols, &c->rb), 0);
    c->w = malloc(c->rb * rows);
    c->x = malloc(N_MAX * cols * sizeof(float));
    c->ref = malloc(N_MAX * rows * sizeof(double));
    c->bound = malloc(N_MAX * rows * sizeof(double));
    float *tmp = malloc(cols * sizeof(float)), *deq = malloc(rows * cols * sizeof(float));
    assert_true(c->w && c->x && c->ref && c->bound && tmp && deq);
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < cols; j++)
            tmp[j] = 0.05f * rng_normal();
        tensor_quantize_row(t, tmp, c->w + r * c->rb, cols);
        tensor_dequantize_row(t, c->w + r * c->rb, deq + r * cols, cols);
    }
    for (size_t i = 0; i < N_MAX * cols; i++)
        c->x[i] = rng_normal() * (i % 97 == 0 ? 30.0f : 1.0f); // outliers, as real activations
    for (size_t j = 0; j < 40; j++)
        c->x[3 * cols + j] = 0.0f; // an all-zero activation block in row 3
    size_t blk = tensor_type_block_elems(t) == 1 ? 1 : tensor_type_block_elems(t) == 32 ? 32 : 256;
    for (size_t i = 0; i < N_MAX; i++)
        for (size_t r = 0; r < rows; r++) {
            const float *xi = c->x + i * cols, *wr = deq + r * cols;
            double s = 0, sa = 0, qerr = 0;
            for (size_t b0 = 0; b0 < cols; b0 += blk) {
                double amax = 0, wabs = 0;
                for (size_t j = b0; j < b0 + blk; j++) {
                    s += (double)wr[j] * xi[j];
                    sa += fabs((double)wr[j] * xi[j]);
                    amax = fmax(amax, fabs(xi[j]));
                    wabs += fabs(wr[j]);
                }
                if (blk > 1) // activation quantization: |x - d*q| <= amax/254 per element
                    qerr += wabs * amax / 254.0;
            }
            c->ref[i * rows + r] = s;
            c->bound[i * rows + r] = qerr * 1.01 + 1e-5 * sa + 1e-6;
        }
    assert_int_equal(kern_mat_init(&c->m, t, rows, cols, c->w), 0);
    free(tmp);
    free(deq);
}

static void gcase_free(gcase *c)
{
    kern_mat_unpack(&c->m);
    free(c->w);
    free(c->x);
    free(c->ref);
    free(c->bound);
}

static void run(const gcase *c, pool *p, size_t i0, size_t n, float *y)
{
    size_t sb = kern_scratch_bytes(c->t, c->cols, n);
    void *scratch = sb ? malloc(sb) : NULL;
    assert_true(!sb || scratch);
    kern_matmul(p, &c->m, c->x + i0 * c->cols, n, y, scratch, sb);
    free(scratch);
}

static void check_bits(const float *a, const float *b, size_t n_out, const char *what,
                       const gcase *c, size_t n)
{
    for (size_t k = 0; k < n_out; k++)
        if (memcmp(&a[k], &b[k], sizeof(float)) != 0)
            fail_msg("%s: %s %zux%zu n=%zu: activation row %zu weight row %zu: %.9g vs %.9g",
                     what, tensor_type_name(c->t), c->rows, c->cols, n, k / c->rows,
                     k % c->rows, (double)a[k], (double)b[k]);
}

/* Every n = 1..N_MAX against the single-row results, on impl, with and without a pool. */
static void check_case(const gcase *c, pool *p, const char *impl, float *single)
{
    float *y = malloc(N_MAX * c->rows * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < N_MAX; i++)
        run(c, NULL, i, 1, single + i * c->rows);
    for (size_t i = 0; i < N_MAX * c->rows; i++)
        if (!(fabs((double)single[i] - c->ref[i]) <= c->bound[i]))
            fail_msg("%s %s: row %zu: %.9g, exact %.9g, bound %.3g", impl,
                     tensor_type_name(c->t), i, (double)single[i], c->ref[i], c->bound[i]);
    char what[64];
    for (size_t n = 1; n <= N_MAX; n++) {
        snprintf(what, sizeof what, "%s, one thread", impl);
        run(c, NULL, 0, n, y);
        check_bits(y, single, n * c->rows, what, c, n);
        // a batch starting at another row puts every row at another panel position
        if (n + 3 <= N_MAX) {
            run(c, p, 3, n, y);
            snprintf(what, sizeof what, "%s, pool, offset 3", impl);
            check_bits(y, single + 3 * c->rows, n * c->rows, what, c, n);
        }
    }
    free(y);
}

/* One weight shape: check_case on scalar and AVX2, and the two paths against each other. */
static void check_shape(pool *p, tensor_type t, size_t rows, size_t cols, bool avx2)
{
    gcase c;
    gcase_init(&c, t, rows, cols);
    float *ys = malloc(N_MAX * c.rows * sizeof(float));
    float *yv = malloc(N_MAX * c.rows * sizeof(float));
    assert_true(ys && yv);
    assert_int_equal(kern_simd_set("scalar"), 0);
    check_case(&c, p, "scalar", ys);
    if (avx2) {
        assert_int_equal(kern_simd_set("avx2"), 0);
        check_case(&c, p, "avx2", yv);
        check_bits(ys, yv, N_MAX * c.rows, "scalar vs avx2 (n=1)", &c, 1);
        run(&c, p, 0, N_MAX, yv);
        check_bits(ys, yv, N_MAX * c.rows, "scalar n=1 vs avx2 n=33", &c, N_MAX);
        // kern_mat_pack's groups (Q8_0/Q4_0; a no-op for the others): the same bits
        assert_int_equal(kern_mat_pack(&c.m), 0);
        if (c.m.pack)
            assert_int_equal(c.m.pack_groups, c.rows / 8);
        check_case(&c, p, "avx2 packed", yv);
        check_bits(ys, yv, N_MAX * c.rows, "scalar vs avx2 packed (n=1)", &c, 1);
        run(&c, p, 0, N_MAX, yv);
        check_bits(ys, yv, N_MAX * c.rows, "scalar n=1 vs avx2 packed n=33", &c, N_MAX);
        assert_int_equal(kern_simd_set("scalar"), 0); // the scalar path ignores the packing
        run(&c, p, 0, N_MAX, yv);
        check_bits(ys, yv, N_MAX * c.rows, "scalar vs scalar on a packed matrix", &c, N_MAX);
    }
    free(ys);
    free(yv);
    gcase_free(&c);
}

static void test_gemm_matches_matvec(void **state)
{
    (void)state;
    bool avx2 = kern_simd_set("avx2") == 0;
    if (!avx2)
        fprintf(stderr, "note: no AVX2/FMA/F16C here, scalar path only\n");
    pool *p = NULL;
    assert_int_equal(pool_new(3, &p), 0);
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++) {
        // 768 crosses the 512-element K chunk; 37 rows cross the 16-row block
        check_shape(p, TYPES[k], 37, 768, avx2);
        check_shape(p, TYPES[k], 5, 256, avx2);
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
    pool_free(p);
}

/*
 * Q8_0/Q4_0 rows of 5632 elements (tinyllama's ffn_down): kern_q8_avx2.c
 * takes activation rows in L2-sized blocks (192 KiB: 28 rows of this length),
 * so n = 1..33 crosses a block edge, with 1-group x 4-row micro-kernels, their
 * 1..3-row leftovers and the prefetch of the next 2-group tile (35 rows: four
 * packed groups and 3 rows after them) at every position.
 */
static void test_gemm_long_rows(void **state)
{
    (void)state;
    bool avx2 = kern_simd_set("avx2") == 0;
    pool *p = NULL;
    assert_int_equal(pool_new(2, &p), 0);
    check_shape(p, TENSOR_Q8_0, 35, 5632, avx2);
    check_shape(p, TENSOR_Q4_0, 35, 5632, avx2);
    assert_int_equal(kern_simd_set("scalar"), 0);
    pool_free(p);
}

/*
 * kern_matmul_multi over these K matrices, n = 1, 8 and 21, equals single calls.
 * With pack, Q8_0/Q4_0 matrices are packed: matrices after one whose rows are
 * not a multiple of 16 get pool chunks that start inside a group of 8, so the
 * rows around it run row by row and the rest packed.
 */
enum { K = 4, COLS = 768 };
static void check_multi(const tensor_type types[K], const size_t rows[K], bool pack)
{
    gcase c[K];
    const kern_mat *mp[K];
    float *ya[K], *yb[K], *ys[K]; // ys: the scalar path's n = 21 results
    for (int k = 0; k < K; k++) {
        gcase_init(&c[k], types[k], rows[k], COLS);
        if (k > 0) // one shared activation input
            memcpy(c[k].x, c[0].x, N_MAX * COLS * sizeof(float));
        if (pack)
            assert_int_equal(kern_mat_pack(&c[k].m), 0);
        mp[k] = &c[k].m;
        ya[k] = malloc(N_MAX * rows[k] * sizeof(float));
        yb[k] = malloc(N_MAX * rows[k] * sizeof(float));
        ys[k] = malloc(N_MAX * rows[k] * sizeof(float));
        assert_true(ya[k] && yb[k] && ys[k]);
    }
    size_t sb = kern_scratch_bytes_multi(mp, K, N_MAX);
    void *scratch = malloc(sb);
    assert_non_null(scratch);
    pool *p = NULL;
    assert_int_equal(pool_new(2, &p), 0);
    for (int impl = 0; impl < 2; impl++) {
        if (kern_simd_set(impl ? "avx2" : "scalar") != 0)
            break;
        for (size_t n = 1; n <= 21; n += n == 1 ? 7 : 13) {
            for (int k = 0; k < K; k++)
                for (size_t i = 0; i < n; i++)
                    run(&c[k], NULL, i, 1, ya[k] + i * rows[k]);
            kern_matmul_multi(p, mp, yb, K, c[0].x, n, scratch, sb);
            for (int k = 0; k < K; k++)
                check_bits(ya[k], yb[k], n * rows[k], impl ? "multi avx2" : "multi scalar",
                           &c[k], n);
            for (int k = 0; k < K && n == 21; k++) {
                if (impl == 0)
                    memcpy(ys[k], yb[k], n * rows[k] * sizeof(float));
                else
                    check_bits(ys[k], yb[k], n * rows[k], "multi scalar vs avx2", &c[k], n);
            }
        }
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
    pool_free(p);
    free(scratch);
    for (int k = 0; k < K; k++) {
        free(ya[k]);
        free(yb[k]);
        free(ys[k]);
        gcase_free(&c[k]);
    }
}

/* Every activation format at once. */
static void test_gemm_multi(void **state)
{
    (void)state;
    const tensor_type types[K] = {TENSOR_Q4_0, TENSOR_Q6_K, TENSOR_F16, TENSOR_Q4_K};
    const size_t rows[K] = {19, 33, 7, 16};
    check_multi(types, rows, false);
    check_multi(types, rows, true);
}

/* Packed Q8_0/Q4_0 matrices whose pool chunks split groups (see check_multi). */
static void test_gemm_multi_packed(void **state)
{
    (void)state;
    const tensor_type types[K] = {TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_Q8_0, TENSOR_Q4_0};
    const size_t rows[K] = {21, 37, 40, 67};
    check_multi(types, rows, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_matvec),
        cmocka_unit_test(test_gemm_multi),
        cmocka_unit_test(test_gemm_multi_packed),
        cmocka_unit_test(test_gemm_long_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
