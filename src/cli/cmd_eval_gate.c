/*
 * cli/cmd_eval_gate — `--gate pass_rate>=0.9,p99_ms<=2000,cost_per_1k<=0.01`.
 *
 * A gate is METRIC OP NUMBER with OP one of >= <= > <; gates are separated by
 * commas (the flag may be repeated). Every gate applies to every target; the
 * run fails (exit 1) when any target misses any gate. Metrics:
 *   pass_rate     passed runs / runs
 *   pass_rate_lo  lower end of the pass rate's Wilson 95% interval
 *   p50_ms p99_ms latency percentiles of the runs that got an answer
 *   cost          total cost of the target's runs (--price-in/--price-out)
 *   cost_per_1k   cost per 1000 completion tokens
 *   cost_per_case cost per run
 *   errors        runs that got no answer (HTTP or network errors)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/str.h"
#include "cli/cmd_eval.h"

static const char *const METRICS[EVAL_M_COUNT] = {
    [EVAL_M_PASS_RATE] = "pass_rate",
    [EVAL_M_PASS_RATE_LO] = "pass_rate_lo",
    [EVAL_M_P50_MS] = "p50_ms",
    [EVAL_M_P99_MS] = "p99_ms",
    [EVAL_M_COST] = "cost",
    [EVAL_M_COST_PER_1K] = "cost_per_1k",
    [EVAL_M_COST_PER_CASE] = "cost_per_case",
    [EVAL_M_ERRORS] = "errors",
};

const char *eval_metric_name(eval_metric m)
{
    return (unsigned)m < EVAL_M_COUNT ? METRICS[m] : "?";
}

static int parse_one(str g, eval_gate *out, err_msg *e)
{
    g = str_trim(g);
    if (g.n == 0)
        return err_set(e, ERR_INVAL, "--gate: empty gate in the list");
    if (g.n >= sizeof out->text)
        return err_set(e, ERR_INVAL, "--gate: gate \"%.*s...\" is too long", 40, g.p);
    size_t i = 0;
    while (i < g.n && g.p[i] != '>' && g.p[i] != '<')
        i++;
    if (i == g.n)
        return err_set(e, ERR_INVAL,
                       "--gate: \"%.*s\" has no operator (expected METRIC>=N, <=, > or <)",
                       (int)g.n, g.p);
    str name = str_trim((str){g.p, i});
    bool ge = g.p[i] == '>';
    bool eq = i + 1 < g.n && g.p[i + 1] == '=';
    out->op = ge ? (eq ? EVAL_GE : EVAL_GT) : (eq ? EVAL_LE : EVAL_LT);
    str num = str_trim((str){g.p + i + 1 + eq, g.n - i - 1 - eq});
    int m = -1;
    for (int k = 0; k < EVAL_M_COUNT; k++)
        if (str_eq_cstr(name, METRICS[k]))
            m = k;
    if (m < 0)
        return err_set(e, ERR_INVAL,
                       "--gate: unknown metric \"%.*s\" (expected pass_rate, pass_rate_lo, "
                       "p50_ms, p99_ms, cost, cost_per_1k, cost_per_case, errors)",
                       (int)name.n, name.p);
    out->metric = (eval_metric)m;
    char nb[64];
    if (num.n == 0 || num.n >= sizeof nb)
        return err_set(e, ERR_INVAL, "--gate: \"%.*s\" needs a number after the operator", (int)g.n,
                       g.p);
    memcpy(nb, num.p, num.n);
    nb[num.n] = 0;
    if (parse_f64(nb, &out->limit) != 0)
        return err_set(e, ERR_INVAL, "--gate: \"%s\" in \"%.*s\" is not a number", nb, (int)g.n,
                       g.p);
    memcpy(out->text, g.p, g.n);
    out->text[g.n] = 0;
    return 0;
}

int eval_gates_parse(const char *spec, eval_gate *g, size_t *n, err_msg *e)
{
    const char *p = spec;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (*n == EVAL_GATES_MAX)
            return err_set(e, ERR_INVAL, "--gate: more than %d gates", EVAL_GATES_MAX);
        int rc = parse_one((str){p, len}, &g[*n], e);
        if (rc)
            return rc;
        (*n)++;
        if (!c)
            return 0;
        p = c + 1;
    }
}

bool eval_gate_ok(const eval_gate *g, double v)
{
    if (isnan(v))
        return false;
    switch (g->op) {
    case EVAL_GE:
        return v >= g->limit;
    case EVAL_LE:
        return v <= g->limit;
    case EVAL_GT:
        return v > g->limit;
    case EVAL_LT:
        return v < g->limit;
    }
    return false;
}
