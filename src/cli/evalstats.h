/*
 * cli/evalstats — the statistics of `ferry eval`: confidence interval of a
 * pass rate, percentiles, McNemar's exact test and a seeded paired bootstrap.
 *
 * Pure functions of their arguments (no globals, no I/O), so every figure in
 * an eval report can be recomputed by hand or by an independent script; the
 * formulas are written out beside each function and in docs/eval.md.
 * Thread-safe: nothing is shared.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* z of a two-sided 95% normal interval: Phi^-1(0.975). */
#define EVALSTATS_Z95 1.959963984540054

/* Cap on bootstrap resamples (--bootstrap); keeps one report under a second. */
#define EVALSTATS_BOOTSTRAP_MAX 1000000

/*
 * Wilson score interval of a proportion with k successes out of n trials at
 * normal quantile z (EVALSTATS_Z95 for 95%):
 *   p = k/n, d = 1 + z^2/n,
 *   centre = (p + z^2/(2n)) / d,
 *   half   = z * sqrt(p(1-p)/n + z^2/(4n^2)) / d,
 *   [lo, hi] = [centre - half, centre + half], clamped to [0, 1].
 * n == 0 gives [0, 1] (no information). k > n is a programmer error.
 */
void evalstats_wilson(size_t k, size_t n, double z, double *lo, double *hi);

/*
 * The Wilson interval above for a proportion p observed with an effective
 * sample size n > 0 that need not be whole (the same formulas with k/n = p).
 * n <= 0 or p outside [0, 1] gives [0, 1].
 */
void evalstats_wilson_p(double p, double n, double z, double *lo, double *hi);

/*
 * Pass rate and 95%-style interval when the runs come in clusters (the
 * repeats of one case, which are not independent): cluster c has k[c] passes
 * out of n[c] runs, c in [0, m); clusters with n[c] == 0 are skipped. With
 * N = sum n[c], K = sum k[c], p = K / N and m' the clusters with runs:
 *   V     = sum_c (k[c] - p n[c])^2 / N^2     (between-cluster variance of p,
 *                                              ratio estimator, divisor m')
 *   n_eff = p (1 - p) / V, clamped to [1, N]  (Kish's effective sample size)
 *         = m' when p is 0 or 1 (no spread to estimate; the clusters count
 *           as the independent units)
 *   [lo, hi] = evalstats_wilson_p(p, n_eff, z).
 * With one run per cluster n_eff = N and the result is evalstats_wilson(K, N).
 * Repeats that always agree give n_eff = m' (Wilson over cases); repeats that
 * vary independently of the case give n_eff near N. Writes p, n_eff, lo, hi;
 * no run at all gives p = 0, n_eff = 0, [0, 1].
 */
void evalstats_cluster_ci(const size_t *k, const size_t *n, size_t m, double z, double *p,
                          double *n_eff, double *lo, double *hi);

/*
 * The q-quantile (q in [0, 1]) of v[0..n) by linear interpolation between
 * closest ranks (Hyndman and Fan type 7, numpy's default): with v sorted,
 * h = (n-1) q, result = v[floor h] + (h - floor h)(v[floor h + 1] - v[floor h]).
 * Sorts v in place. n == 0 returns 0.
 */
double evalstats_quantile(double *v, size_t n, double q);

/*
 * Two-sided exact McNemar test on paired pass/fail outcomes: b = pairs where
 * only the first passed, c = pairs where only the second passed. Under the
 * null, b ~ Binomial(b + c, 1/2), and
 *   p = min(1, 2 * P(X <= min(b, c))),  X ~ Binomial(b + c, 1/2).
 * b + c == 0 gives p = 1. Binomial terms are summed in log space (lgamma),
 * so large counts neither overflow nor underflow to a wrong answer.
 */
double evalstats_mcnemar_exact(size_t b, size_t c);

/*
 * The PRNG of the bootstrap, written out so a script can reproduce it:
 * xoshiro256** (Blackman and Vigna) whose four words are the first four
 * outputs of splitmix64 started at seed. evalstats_rng_below(r, n) returns
 * floor(u * n) with u = (next >> 11) * 2^-53, a uniform index in [0, n).
 */
typedef struct evalstats_rng {
    uint64_t s[4];
} evalstats_rng;

void evalstats_rng_seed(evalstats_rng *r, uint64_t seed);
uint64_t evalstats_rng_next(evalstats_rng *r);
size_t evalstats_rng_below(evalstats_rng *r, size_t n);

/*
 * Paired percentile bootstrap of mean(a) - mean(b) over n paired scores
 * (per-case pass shares in [0, 1]). Each of `resamples` rounds draws n case
 * indices with replacement, i = evalstats_rng_below(rng, n) in order, from
 * one rng seeded with seed, and records mean(a[i]) - mean(b[i]) over the
 * drawn cases. The interval is [quantile(0.025), quantile(0.975)] of the
 * recorded differences (evalstats_quantile). Returns 0, ERR_INVAL (n == 0,
 * resamples == 0 or above EVALSTATS_BOOTSTRAP_MAX) or ERR_NOMEM.
 */
int evalstats_bootstrap_diff(const double *a, const double *b, size_t n, size_t resamples,
                             uint64_t seed, double *lo, double *hi) MUST_USE;

/* Cosine similarity of two vectors of length n; 0 when either has norm 0. */
double evalstats_cosine(const float *x, const float *y, size_t n);
