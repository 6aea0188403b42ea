/*
 * cli/cmd_eval_sum — the numbers of an eval report, from the runs alone:
 * per target (pass rate and its interval, clustered by case when cases are
 * repeated: evalstats_cluster_ci; latency percentiles,
 * tokens, cost), per tag, and the paired comparison of two targets.
 * Formulas: cli/evalstats.h; definitions: docs/eval.md.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_eval.h"
#include "cli/evalstats.h"

static const eval_run *run_at(const eval_run *runs, size_t nt, size_t c, size_t t, size_t repeat,
                              size_t r)
{
    return &runs[(c * nt + t) * repeat + r];
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void eval_target_sum_deinit(eval_target_sum *ts)
{
    free(ts->tags);
    ts->tags = NULL;
    ts->n_tags = 0;
}

/* The distinct tags of the set, sorted; *out is malloc'd (NULL when none). */
static int distinct_tags(const eval_set *s, char ***out, size_t *n)
{
    size_t total = 0;
    for (size_t c = 0; c < s->n; c++)
        total += s->cases[c].n_tags;
    *out = NULL;
    *n = 0;
    if (total == 0)
        return 0;
    char **v = malloc(total * sizeof *v);
    if (!v)
        return ERR_NOMEM;
    size_t k = 0;
    for (size_t c = 0; c < s->n; c++)
        for (size_t i = 0; i < s->cases[c].n_tags; i++)
            v[k++] = s->cases[c].tags[i];
    qsort(v, k, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || strcmp(v[u - 1], v[i]) != 0)
            v[u++] = v[i];
    *out = v;
    *n = u;
    return 0;
}

static bool has_tag(const eval_case *c, const char *tag)
{
    for (size_t i = 0; i < c->n_tags; i++)
        if (strcmp(c->tags[i], tag) == 0)
            return true;
    return false;
}

/*
 * The pass rate's interval over the cases selected by tag (all when NULL):
 * per case its passes k[c] of its finished runs n[c] (scratch of s->n each),
 * then evalstats_cluster_ci, which reduces to Wilson over the runs when each
 * case ran once.
 */
static void case_ci(const eval_set *s, const eval_run *runs, size_t nt, size_t t, size_t repeat,
                    const char *tag, size_t *k, size_t *n, double *n_eff, double *lo, double *hi)
{
    size_t m = 0;
    for (size_t c = 0; c < s->n; c++) {
        if (tag && !has_tag(&s->cases[c], tag))
            continue;
        k[m] = n[m] = 0;
        for (size_t r = 0; r < repeat; r++) {
            const eval_run *x = run_at(runs, nt, c, t, repeat, r);
            n[m] += x->done;
            k[m] += x->done && x->pass;
        }
        m++;
    }
    double p;
    evalstats_cluster_ci(k, n, m, EVALSTATS_Z95, &p, n_eff, lo, hi);
}

int eval_summarize_target(const eval_set *s, const eval_run *runs, size_t nt, size_t t,
                          size_t repeat, const eval_prices *price, eval_target_sum *out)
{
    memset(out, 0, sizeof *out);
    size_t total = s->n * repeat;
    double *lat = malloc((total ? total : 1) * sizeof *lat);
    size_t *ck = malloc((s->n ? s->n : 1) * sizeof *ck);
    size_t *cn = malloc((s->n ? s->n : 1) * sizeof *cn);
    if (!lat || !ck || !cn) {
        free(lat);
        free(ck);
        free(cn);
        return ERR_NOMEM;
    }
    size_t nlat = 0;
    double lat_sum = 0;
    for (size_t c = 0; c < s->n; c++) {
        for (size_t r = 0; r < repeat; r++) {
            const eval_run *x = run_at(runs, nt, c, t, repeat, r);
            if (!x->done)
                continue; // an interrupted eval reports the runs that finished
            out->runs++;
            out->passed += x->pass;
            if (x->error) {
                out->errors++;
                continue;
            }
            lat[nlat++] = x->latency_ms;
            lat_sum += x->latency_ms;
            if (x->prompt_tokens > 0)
                out->prompt_tokens += x->prompt_tokens;
            if (x->completion_tokens > 0)
                out->completion_tokens += x->completion_tokens;
        }
    }
    out->rate = out->runs ? (double)out->passed / (double)out->runs : 0.0;
    case_ci(s, runs, nt, t, repeat, NULL, ck, cn, &out->n_eff, &out->lo, &out->hi);
    if (nlat) {
        out->mean_ms = lat_sum / (double)nlat;
        out->p99_ms = evalstats_quantile(lat, nlat, 0.99);
        out->p50_ms = evalstats_quantile(lat, nlat, 0.50);
    } else {
        out->mean_ms = out->p50_ms = out->p99_ms = NAN;
    }
    free(lat);
    out->cost = ((double)out->prompt_tokens * price->in_per_m +
                 (double)out->completion_tokens * price->out_per_m) /
                1e6;
    out->cost_per_1k =
        out->completion_tokens ? out->cost * 1000.0 / (double)out->completion_tokens : 0.0;
    out->cost_per_case = out->runs ? out->cost / (double)out->runs : 0.0;

    char **tags;
    size_t ntags;
    if (distinct_tags(s, &tags, &ntags) != 0) {
        free(ck);
        free(cn);
        return ERR_NOMEM;
    }
    if (ntags) {
        out->tags = calloc(ntags, sizeof *out->tags);
        if (!out->tags) {
            free(tags);
            free(ck);
            free(cn);
            return ERR_NOMEM;
        }
        out->n_tags = ntags;
        for (size_t i = 0; i < ntags; i++) {
            eval_tag_sum *ts = &out->tags[i];
            ts->tag = tags[i];
            for (size_t c = 0; c < s->n; c++) {
                if (!has_tag(&s->cases[c], tags[i]))
                    continue;
                for (size_t r = 0; r < repeat; r++) {
                    const eval_run *x = run_at(runs, nt, c, t, repeat, r);
                    ts->runs += x->done; // as for the target: finished runs only
                    ts->passed += x->done && x->pass;
                }
            }
            ts->rate = ts->runs ? (double)ts->passed / (double)ts->runs : 0.0;
            case_ci(s, runs, nt, t, repeat, tags[i], ck, cn, &ts->n_eff, &ts->lo, &ts->hi);
        }
    }
    free(tags);
    free(ck);
    free(cn);
    return 0;
}

int eval_pair(const eval_set *s, const eval_run *runs, size_t nt, size_t a, size_t b, size_t repeat,
              size_t resamples, uint64_t seed, eval_pair_sum *out)
{
    memset(out, 0, sizeof *out);
    if (s->n == 0 || repeat == 0 || a >= nt || b >= nt)
        return ERR_INVAL;
    out->a = a;
    out->b = b;
    out->resamples = resamples;
    out->seed = seed;
    double *sa = malloc(s->n * sizeof *sa), *sb = malloc(s->n * sizeof *sb);
    if (!sa || !sb) {
        free(sa);
        free(sb);
        return ERR_NOMEM;
    }
    double suma = 0, sumb = 0;
    size_t m = 0; // complete cases (an interrupted eval leaves some runs undone)
    for (size_t c = 0; c < s->n; c++) {
        size_t pa = 0, pb = 0;
        bool complete = true;
        for (size_t r = 0; r < repeat; r++) {
            const eval_run *ra = run_at(runs, nt, c, a, repeat, r);
            const eval_run *rb = run_at(runs, nt, c, b, repeat, r);
            complete = complete && ra->done && rb->done;
            pa += ra->pass;
            pb += rb->pass;
        }
        if (!complete)
            continue;
        sa[m] = (double)pa / (double)repeat;
        sb[m] = (double)pb / (double)repeat;
        suma += sa[m];
        sumb += sb[m];
        m++;
        if (pa > pb)
            out->won++;
        else if (pa < pb)
            out->lost++;
        else
            out->tied++;
        bool ma = 2 * pa > repeat, mb = 2 * pb > repeat; // majority of the repeats passed
        out->only_a += ma && !mb;
        out->only_b += mb && !ma;
    }
    out->cases = m;
    if (m == 0) {
        free(sa);
        free(sb);
        return ERR_NOT_FOUND;
    }
    out->diff = (suma - sumb) / (double)m;
    out->p_value = evalstats_mcnemar_exact(out->only_a, out->only_b);
    int rc = evalstats_bootstrap_diff(sa, sb, m, resamples, seed, &out->lo, &out->hi);
    free(sa);
    free(sb);
    return rc;
}

double eval_metric_value(const eval_target_sum *ts, eval_metric m)
{
    switch (m) {
    case EVAL_M_PASS_RATE:
        return ts->rate;
    case EVAL_M_PASS_RATE_LO:
        return ts->lo;
    case EVAL_M_P50_MS:
        return ts->p50_ms;
    case EVAL_M_P99_MS:
        return ts->p99_ms;
    case EVAL_M_COST:
        return ts->cost;
    case EVAL_M_COST_PER_1K:
        return ts->cost_per_1k;
    case EVAL_M_COST_PER_CASE:
        return ts->cost_per_case;
    case EVAL_M_ERRORS:
        return (double)ts->errors;
    case EVAL_M_COUNT:
        break;
    }
    return NAN;
}
