/*
 * Unit tests for cli/evalstats, against values worked out by hand from the
 * formulas in evalstats.h (the arithmetic is written beside each check).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "cli/evalstats.h"

#define near(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

static void test_wilson(void **state)
{
    (void)state;
    double lo, hi;
    /* 1 of 2: p = 1/2, z^2 = 3.841459, d = 1 + z^2/2 = 2.920729; centre = (0.5 + 0.960365)/d
     * = 0.5; half = z sqrt(0.125 + z^2/16)/d = 1.959964 * 0.604228 / 2.920729 = 0.405469 */
    evalstats_wilson(1, 2, EVALSTATS_Z95, &lo, &hi);
    near(lo, 0.5 - 0.405469, 1e-6);
    near(hi, 0.5 + 0.405469, 1e-6);
    /* 8 of 10: d = 1.3841459; centre = (0.8 + 0.192073)/d = 0.716740;
     * half = z sqrt(0.016 + 0.0096037)/d = 1.959964 * 0.160011 / 1.3841459 = 0.226578 */
    evalstats_wilson(8, 10, EVALSTATS_Z95, &lo, &hi);
    near(lo, 0.490162, 2e-6);
    near(hi, 0.943318, 2e-6);
    /* 0 of 10: lo = 0, hi = (z^2/n)/(1 + z^2/n) = 0.3841459/1.3841459 = 0.277533 */
    evalstats_wilson(0, 10, EVALSTATS_Z95, &lo, &hi);
    near(lo, 0.0, 1e-12);
    near(hi, 0.277533, 1e-6);
    /* 10 of 10 mirrors it */
    evalstats_wilson(10, 10, EVALSTATS_Z95, &lo, &hi);
    near(lo, 1.0 - 0.277533, 1e-6);
    near(hi, 1.0, 1e-12);
    /* no runs: no information */
    evalstats_wilson(0, 0, EVALSTATS_Z95, &lo, &hi);
    near(lo, 0.0, 0);
    near(hi, 1.0, 0);
}

static void test_quantile(void **state)
{
    (void)state;
    double v[] = {4, 1, 3, 2};
    near(evalstats_quantile(v, 4, 0.5), 2.5, 1e-12);   // h = 1.5 -> 2 + 0.5
    near(evalstats_quantile(v, 4, 0.99), 3.97, 1e-12); // h = 2.97 -> 3 + 0.97
    near(evalstats_quantile(v, 4, 0.0), 1.0, 0);
    near(evalstats_quantile(v, 4, 1.0), 4.0, 0);
    double w[] = {50, 15, 40, 20, 35};
    near(evalstats_quantile(w, 5, 0.4), 29.0, 1e-12); // h = 1.6 -> 20 + 0.6 * 15
    double one[] = {7};
    near(evalstats_quantile(one, 1, 0.99), 7.0, 0);
    near(evalstats_quantile(NULL, 0, 0.5), 0.0, 0);
}

static void test_mcnemar(void **state)
{
    (void)state;
    /* b=1, c=6: P(X<=1 | n=7) = (1 + 7)/128 = 1/16; doubled = 1/8 */
    near(evalstats_mcnemar_exact(1, 6), 0.125, 1e-12);
    near(evalstats_mcnemar_exact(6, 1), 0.125, 1e-12);
    /* b=0, c=5: 2 * 2^-5 */
    near(evalstats_mcnemar_exact(0, 5), 0.0625, 1e-12);
    /* b=3, c=10: (1 + 13 + 78 + 286)/8192 = 378/8192, doubled = 0.092285156 */
    near(evalstats_mcnemar_exact(3, 10), 756.0 / 8192.0, 1e-12);
    /* b=1, c=2: P(X<=1 | 3) = 4/8, doubled = 1 */
    near(evalstats_mcnemar_exact(1, 2), 1.0, 1e-12);
    near(evalstats_mcnemar_exact(2, 2), 1.0, 0);
    near(evalstats_mcnemar_exact(0, 0), 1.0, 0);
    /* b=0, c=60: 2 * 2^-60, far below double's epsilon next to 1 */
    double p = evalstats_mcnemar_exact(0, 60);
    assert_true(fabs(p / (2.0 * ldexp(1.0, -60)) - 1.0) < 1e-9);
    /* large and balanced-ish: 4000 vs 4200 stays in (0, 1) without overflow */
    p = evalstats_mcnemar_exact(4000, 4200);
    assert_true(p > 0.0 && p < 1.0 && isfinite(p));
}

static void test_rng(void **state)
{
    (void)state;
    /* splitmix64 from 0: its published first four outputs */
    evalstats_rng r;
    evalstats_rng_seed(&r, 0);
    assert_true(r.s[0] == 0xe220a8397b1dcdafull);
    assert_true(r.s[1] == 0x6e789e6aa1b965f4ull);
    assert_true(r.s[2] == 0x06c45d188009454full);
    assert_true(r.s[3] == 0xf88bb8a8724c81ecull);
    /* xoshiro256** first output = rotl(s1 * 5, 7) * 9 */
    uint64_t x = r.s[1] * 5;
    uint64_t want = ((x << 7) | (x >> 57)) * 9;
    assert_true(evalstats_rng_next(&r) == want);
    for (int i = 0; i < 1000; i++)
        assert_true(evalstats_rng_below(&r, 7) < 7);
}

static void test_bootstrap(void **state)
{
    (void)state;
    double lo, hi;
    /* every pair differs by exactly +1: every resample's mean is 1 */
    double a1[] = {1, 1, 1}, b1[] = {0, 0, 0};
    assert_int_equal(evalstats_bootstrap_diff(a1, b1, 3, 1000, 7, &lo, &hi), 0);
    near(lo, 1.0, 0);
    near(hi, 1.0, 0);
    /* one case: the resample is always that case */
    double a2[] = {0}, b2[] = {1};
    assert_int_equal(evalstats_bootstrap_diff(a2, b2, 1, 50, 7, &lo, &hi), 0);
    near(lo, -1.0, 0);
    near(hi, -1.0, 0);
    /* 10 cases, diff 0.5: seeded (same seed, same interval), brackets the
     * observed difference, within [-1, 1] and on the 1/10 grid of means */
    double a3[] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, b3[] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 0};
    double lo2, hi2;
    assert_int_equal(evalstats_bootstrap_diff(a3, b3, 10, 2000, 1, &lo, &hi), 0);
    assert_int_equal(evalstats_bootstrap_diff(a3, b3, 10, 2000, 1, &lo2, &hi2), 0);
    near(lo, lo2, 0);
    near(hi, hi2, 0);
    assert_true(lo < 0.5 && hi > 0.5 && lo >= -1.0 && hi <= 1.0);
    /* the interval an independent Python rendering of the documented algorithm
     * (splitmix64 -> xoshiro256**, numpy's linear quantiles) gives for these
     * inputs; the integration test carries that rendering */
    near(lo, 0.0, 1e-12);
    near(hi, 0.9, 1e-12);
    /* invalid calls */
    assert_int_equal(evalstats_bootstrap_diff(a3, b3, 0, 10, 1, &lo, &hi), ERR_INVAL);
    assert_int_equal(evalstats_bootstrap_diff(a3, b3, 10, 0, 1, &lo, &hi), ERR_INVAL);
    assert_int_equal(evalstats_bootstrap_diff(a3, b3, 10, EVALSTATS_BOOTSTRAP_MAX + 1, 1, &lo, &hi),
                     ERR_INVAL);
}

static void test_cosine(void **state)
{
    (void)state;
    float x[] = {1, 0, 0}, y[] = {0, 1, 0}, z[] = {2, 0, 0}, w[] = {1, 1, 0}, o[] = {0, 0, 0};
    near(evalstats_cosine(x, y, 3), 0.0, 1e-12);
    near(evalstats_cosine(x, z, 3), 1.0, 1e-12);
    near(evalstats_cosine(x, w, 3), 1.0 / sqrt(2.0), 1e-7);
    near(evalstats_cosine(x, o, 3), 0.0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson),    cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_mcnemar),   cmocka_unit_test(test_rng),
        cmocka_unit_test(test_bootstrap), cmocka_unit_test(test_cosine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
