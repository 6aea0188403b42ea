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

static void test_cluster_ci(void **state)
{
    (void)state;
    double p, ne, lo, hi;
    /* 4 cases x 3 repeats, passes k = 3 3 0 1: N = 12, K = 7, p = 7/12 = 0.583333;
     * residuals k - p n = 1.25 1.25 -1.75 -0.75, squares 1.5625 1.5625 3.0625 0.5625,
     * sum 6.75; V = 6.75 / 144 = 0.046875; n_eff = p(1-p)/V = 0.243056/0.046875 =
     * 5.185185 (of 12 runs). Wilson at n = 5.185185: z^2/n = 0.740853, d = 1.740853,
     * centre = (0.583333 + 0.370427)/d = 0.547870; half = z sqrt(0.046875 +
     * 3.841459/(4 n^2) = 0.035720)/d = 1.959964 * 0.287393 / 1.740853 = 0.323566 ->
     * [0.224304, 0.871436]: wider than Wilson over the 12 runs as if independent,
     * [0.319511, 0.806740]. */
    size_t k1[] = {3, 3, 0, 1}, n1[] = {3, 3, 3, 3};
    evalstats_cluster_ci(k1, n1, 4, EVALSTATS_Z95, &p, &ne, &lo, &hi);
    near(p, 7.0 / 12.0, 1e-12);
    near(ne, 5.185185, 1e-6);
    near(lo, 0.224304, 2e-6);
    near(hi, 0.871435, 2e-6);
    evalstats_wilson(7, 12, EVALSTATS_Z95, &lo, &hi);
    near(lo, 0.319511, 2e-6);
    near(hi, 0.806740, 2e-6);
    /* one run per case: n_eff = N and exactly the Wilson interval of the runs (8 of 10) */
    size_t k2[] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, n2[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    evalstats_cluster_ci(k2, n2, 10, EVALSTATS_Z95, &p, &ne, &lo, &hi);
    near(ne, 10.0, 1e-9);
    near(lo, 0.490162, 2e-6);
    near(hi, 0.943318, 2e-6);
    /* 5 cases x 3 repeats all passing: no spread, the cases are the units: n_eff = 5,
     * lo = 1 - (z^2/5)/(1 + z^2/5) = 1 - 0.768292/1.768292 = 0.565518 (runs: 0.796117) */
    size_t k3[] = {3, 3, 3, 3, 3}, n3[] = {3, 3, 3, 3, 3};
    evalstats_cluster_ci(k3, n3, 5, EVALSTATS_Z95, &p, &ne, &lo, &hi);
    near(p, 1.0, 0);
    near(ne, 5.0, 0);
    near(lo, 0.565518, 2e-6);
    near(hi, 1.0, 0);
    /* every case passes exactly 1 of 2: V = 0, as if the 8 runs were independent:
     * Wilson(4, 8) = 0.5 -+ z sqrt(1/32 + z^2/256)/(1 + z^2/8) = 0.5 -+ 0.284784 */
    size_t k4[] = {1, 1, 1, 1}, n4[] = {2, 2, 2, 2};
    evalstats_cluster_ci(k4, n4, 4, EVALSTATS_Z95, &p, &ne, &lo, &hi);
    near(ne, 8.0, 0);
    near(lo, 0.215216, 2e-6);
    near(hi, 0.784784, 2e-6);
    /* unequal clusters (an interrupted run): one case 10 of 10, nine cases 0 of 1, one
     * case not run (skipped): p = 10/19; residuals 10 - 100/19 = 90/19 and nine of
     * -10/19: sum of squares (8100 + 900)/361 = 24.930748; V = 24.930748/361 = 0.069060;
     * n_eff = (10/19)(9/19)/V = 0.249307/0.069060 = 3.61 -- the big case dominates */
    size_t k5[] = {10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, n5[] = {10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    evalstats_cluster_ci(k5, n5, 11, EVALSTATS_Z95, &p, &ne, &lo, &hi);
    near(p, 10.0 / 19.0, 1e-12);
    near(ne, 3.61, 1e-9);
    near(lo, 0.153988, 2e-6);
    near(hi, 0.871511, 2e-6);
    /* nothing run */
    size_t z0[] = {0, 0};
    evalstats_cluster_ci(z0, z0, 2, EVALSTATS_Z95, &p, &ne, &lo, &hi);
    assert_true(p == 0 && ne == 0 && lo == 0 && hi == 1);
    /* wilson_p with a fractional n matches the integer form at whole n */
    double lo2, hi2;
    evalstats_wilson_p(0.3, 10, EVALSTATS_Z95, &lo, &hi);
    evalstats_wilson(3, 10, EVALSTATS_Z95, &lo2, &hi2);
    near(lo, lo2, 1e-15);
    near(hi, hi2, 1e-15);
    evalstats_wilson_p(0.5, 0, EVALSTATS_Z95, &lo, &hi);
    assert_true(lo == 0 && hi == 1);
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
        cmocka_unit_test(test_wilson),   cmocka_unit_test(test_cluster_ci),
        cmocka_unit_test(test_quantile), cmocka_unit_test(test_mcnemar),
        cmocka_unit_test(test_rng),      cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_cosine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
