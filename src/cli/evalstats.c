/*
 * cli/evalstats — statistics of `ferry eval` (see evalstats.h for the
 * formulas; docs/eval.md explains how to read them).
 */
#include "cli/evalstats.h"

#include <math.h>
#include <stdlib.h>

#include "cli/cli.h"

void evalstats_wilson(size_t k, size_t n, double z, double *lo, double *hi)
{
    ASSERT(k <= n);
    if (n == 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double nn = (double)n, p = (double)k / nn, z2 = z * z;
    double d = 1.0 + z2 / nn;
    double centre = (p + z2 / (2.0 * nn)) / d;
    double half = z * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn)) / d;
    *lo = centre - half < 0.0 ? 0.0 : centre - half;
    *hi = centre + half > 1.0 ? 1.0 : centre + half;
}

void evalstats_wilson_p(double p, double n, double z, double *lo, double *hi)
{
    if (!(n > 0) || !(p >= 0.0 && p <= 1.0)) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double z2 = z * z, d = 1.0 + z2 / n;
    double centre = (p + z2 / (2.0 * n)) / d;
    double half = z * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / d;
    *lo = centre - half < 0.0 ? 0.0 : centre - half;
    *hi = centre + half > 1.0 ? 1.0 : centre + half;
}

void evalstats_cluster_ci(const size_t *k, const size_t *n, size_t m, double z, double *p,
                          double *n_eff, double *lo, double *hi)
{
    double nn = 0, kk = 0;
    size_t used = 0;
    for (size_t c = 0; c < m; c++) {
        ASSERT(k[c] <= n[c]);
        if (n[c] == 0)
            continue;
        nn += (double)n[c];
        kk += (double)k[c];
        used++;
    }
    if (used == 0) {
        *p = 0.0;
        *n_eff = 0.0;
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double pp = kk / nn, ss = 0;
    for (size_t c = 0; c < m; c++) {
        double r = (double)k[c] - pp * (double)n[c];
        ss += r * r;
    }
    double v = ss / (nn * nn), pq = pp * (1.0 - pp), ne;
    if (kk == 0 || kk == nn)
        ne = (double)used;
    else if (v <= 0 || pq / v > nn) // no spread between clusters: as if independent
        ne = nn;
    else
        ne = pq / v < 1.0 ? 1.0 : pq / v;
    *p = pp;
    *n_eff = ne;
    evalstats_wilson_p(pp, ne, z, lo, hi);
}

double evalstats_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cli_cmp_double);
    if (q <= 0.0)
        return v[0];
    if (q >= 1.0)
        return v[n - 1];
    double h = (double)(n - 1) * q;
    size_t i = (size_t)floor(h);
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (h - (double)i) * (v[i + 1] - v[i]);
}

/* log C(n, k) */
static double log_choose(double n, double k)
{
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0);
}

double evalstats_mcnemar_exact(size_t b, size_t c)
{
    size_t n = b + c, m = b < c ? b : c;
    if (n == 0)
        return 1.0;
    if (2 * m == n)
        return 1.0; // P(X <= n/2) >= 1/2, so the doubled tail is at least 1
    /* P(X <= m) = sum_{i<=m} C(n,i) 2^-n, summed as exp(log term - log max) to
     * keep precision when n is large; the largest term is the last (m < n/2). */
    double ln2n = (double)n * log(2.0);
    double top = log_choose((double)n, (double)m);
    double s = 0.0;
    for (size_t i = 0; i <= m; i++)
        s += exp(log_choose((double)n, (double)i) - top);
    double p = 2.0 * exp(top - ln2n + log(s));
    return p > 1.0 ? 1.0 : p;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void evalstats_rng_seed(evalstats_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t evalstats_rng_next(evalstats_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

size_t evalstats_rng_below(evalstats_rng *r, size_t n)
{
    double u = (double)(evalstats_rng_next(r) >> 11) * 0x1.0p-53;
    size_t i = (size_t)(u * (double)n);
    return i < n ? i : n - 1; // u < 1, but guard the rounding of u * n
}

int evalstats_bootstrap_diff(const double *a, const double *b, size_t n, size_t resamples,
                             uint64_t seed, double *lo, double *hi)
{
    if (n == 0 || resamples == 0 || resamples > EVALSTATS_BOOTSTRAP_MAX)
        return ERR_INVAL;
    double *d = malloc(resamples * sizeof *d);
    if (!d)
        return ERR_NOMEM;
    evalstats_rng r;
    evalstats_rng_seed(&r, seed);
    for (size_t k = 0; k < resamples; k++) {
        double s = 0.0;
        for (size_t j = 0; j < n; j++) {
            size_t i = evalstats_rng_below(&r, n);
            s += a[i] - b[i];
        }
        d[k] = s / (double)n;
    }
    *lo = evalstats_quantile(d, resamples, 0.025);
    *hi = evalstats_quantile(d, resamples, 0.975);
    free(d);
    return 0;
}

double evalstats_cosine(const float *x, const float *y, size_t n)
{
    double dot = 0.0, nx = 0.0, ny = 0.0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)x[i] * y[i];
        nx += (double)x[i] * x[i];
        ny += (double)y[i] * y[i];
    }
    if (nx <= 0.0 || ny <= 0.0)
        return 0.0;
    return dot / (sqrt(nx) * sqrt(ny));
}
