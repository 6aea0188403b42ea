/*
 * cli/cmd_eval_html — the `ferry eval --html` report, drawn from the JSON
 * report (the same object --json writes), with cli/report.h:
 *   summary table (a target that misses a gate is highlighted), the pass
 *   rate by tag chart (bars: "all" and each tag, one series per target),
 *   the latency histogram (answered runs, one series per target), the paired
 *   outcomes chart (won/lost/tied per comparison) and its table, the per-tag
 *   table, the gates, the failing runs (first EVAL_HTML_FAILURES) and the
 *   command line. Self-contained: no script, nothing fetched at view time.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_eval.h"
#include "cli/report.h"

#define EVAL_HTML_MAX ((size_t)256 << 20) // bytes of the page
#define EVAL_HTML_FAILURES 500            // failing runs listed
#define EVAL_HTML_OUTPUT 300              // bytes of an answer shown in the failures table
#define EVAL_HTML_CHART_TAGS 40           // bar groups in the by-tag chart (the table has all)

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((rc = (x)) != 0)                                                                       \
            goto out;                                                                              \
    } while (0)

static const char *sget(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double nget(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static char *fmt_num(double v, char *out, size_t n)
{
    return report_num(v, out, n);
}

/* Did any gate fail on target name? */
static bool gate_failed(const json_t *rep, const char *name)
{
    const json_t *gates = json_object_get(rep, "gates");
    for (size_t i = 0; i < json_array_size(gates); i++) {
        const json_t *g = json_array_get(gates, i);
        if (strcmp(sget(g, "target"), name) == 0 && json_is_false(json_object_get(g, "pass")))
            return true;
    }
    return false;
}

/* The tag names of the report, from the first target (all targets list the
 * same tags), in a malloc'd array of *n (NULL when there are none). */
static const char **tag_names(const json_t *targets, size_t *n)
{
    const json_t *tags = json_object_get(json_array_get(targets, 0), "tags");
    *n = 0;
    const char **v = json_object_size(tags) ? calloc(json_object_size(tags), sizeof *v) : NULL;
    if (!v)
        return NULL;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)tags, k, x)
    {
        (void)x;
        v[(*n)++] = k;
    }
    return v;
}

static int summary_table(buf *b, const json_t *rep)
{
    static const char *const hdr[] = {"target",     "model",  "passed / runs", "pass rate",
                                      "95% CI",     "p50 ms", "p99 ms",        "tokens in",
                                      "tokens out", "cost",   "cost / 1K out", "errors"};
    int rc = report_table_begin(b, hdr, ARRAY_LEN(hdr));
    const json_t *targets = json_object_get(rep, "targets");
    for (size_t t = 0; t < json_array_size(targets) && rc == 0; t++) {
        const json_t *x = json_array_get(targets, t);
        const json_t *lat = json_object_get(x, "latency_ms"), *tok = json_object_get(x, "tokens");
        const json_t *cost = json_object_get(x, "cost"), *ci = json_object_get(x, "ci95");
        char c[12][96], lo[32], hi[32];
        snprintf(c[0], sizeof c[0], "%s%s", gate_failed(rep, sget(x, "name")) ? "!" : "",
                 sget(x, "name"));
        snprintf(c[1], sizeof c[1], "%s", sget(x, "model"));
        snprintf(c[2], sizeof c[2], "%.0f / %.0f", nget(x, "passed"), nget(x, "runs"));
        fmt_num(nget(x, "pass_rate"), c[3], sizeof c[3]);
        snprintf(c[4], sizeof c[4], "[%s, %s]",
                 fmt_num(json_number_value(json_array_get(ci, 0)), lo, sizeof lo),
                 fmt_num(json_number_value(json_array_get(ci, 1)), hi, sizeof hi));
        fmt_num(nget(lat, "p50"), c[5], sizeof c[5]);
        fmt_num(nget(lat, "p99"), c[6], sizeof c[6]);
        snprintf(c[7], sizeof c[7], "%.0f", nget(tok, "prompt"));
        snprintf(c[8], sizeof c[8], "%.0f", nget(tok, "completion"));
        snprintf(c[9], sizeof c[9], "%.6g", nget(cost, "total"));
        snprintf(c[10], sizeof c[10], "%.6g", nget(cost, "per_1k"));
        snprintf(c[11], sizeof c[11], "%.0f", nget(x, "errors"));
        const char *cells[12];
        for (size_t i = 0; i < 12; i++)
            cells[i] = c[i];
        rc = report_table_row(b, cells, 12);
    }
    return rc ? rc : report_table_end(b);
}

static int tag_section(buf *b, const json_t *rep)
{
    const json_t *targets = json_object_get(rep, "targets");
    size_t nt = json_array_size(targets);
    size_t ntag;
    const char **tags = tag_names(targets, &ntag);
    size_t ncat = ntag + 1;
    const char **cats = calloc(ncat, sizeof *cats);
    double *y = calloc(ncat * (nt ? nt : 1), sizeof *y);
    report_series *ser = calloc(nt ? nt : 1, sizeof *ser);
    int rc = 0;
    if (!cats || !y || !ser) {
        rc = ERR_NOMEM;
        goto out;
    }
    cats[0] = "all";
    for (size_t i = 0; i < ntag; i++)
        cats[i + 1] = tags[i];
    for (size_t t = 0; t < nt; t++) {
        const json_t *x = json_array_get(targets, t);
        const json_t *tt = json_object_get(x, "tags");
        y[t * ncat] = nget(x, "pass_rate");
        for (size_t i = 0; i < ntag; i++)
            y[t * ncat + i + 1] = nget(json_object_get(tt, tags[i]), "pass_rate");
        ser[t] = (report_series){sget(x, "name"), NULL, y + t * ncat, ncat};
    }
    TRY(report_heading(b, 2, "Pass rate by tag"));
    report_chart ch = {.title = ncat <= EVAL_HTML_CHART_TAGS ? "Pass rate (all runs, then by tag)"
                                                             : "Pass rate (all runs)",
                       .y_label = "pass rate",
                       .series = ser,
                       .n_series = nt,
                       .categories = cats,
                       .n_categories = ncat <= EVAL_HTML_CHART_TAGS ? ncat : 1};
    if (ncat > EVAL_HTML_CHART_TAGS) // one bar group per tag would be unreadable
        for (size_t t = 0; t < nt; t++)
            ser[t].n = 1;
    TRY(report_bar_chart(b, &ch));
    if (ntag) {
        const char **hdr = calloc(nt + 1, sizeof *hdr);
        char(*cells)[64] = calloc((nt + 1), sizeof *cells);
        const char **row = calloc(nt + 1, sizeof *row);
        if (!hdr || !cells || !row) {
            free(hdr);
            free(cells);
            free(row);
            rc = ERR_NOMEM;
            goto out;
        }
        hdr[0] = "tag";
        for (size_t t = 0; t < nt; t++)
            hdr[t + 1] = sget(json_array_get(targets, t), "name");
        rc = report_table_begin(b, hdr, nt + 1);
        for (size_t i = 0; i < ntag && rc == 0; i++) {
            snprintf(cells[0], sizeof cells[0], "%s", tags[i]);
            row[0] = cells[0];
            for (size_t t = 0; t < nt; t++) {
                const json_t *g =
                    json_object_get(json_object_get(json_array_get(targets, t), "tags"), tags[i]);
                char r[32];
                snprintf(cells[t + 1], sizeof cells[t + 1], "%.0f / %.0f (%s)", nget(g, "passed"),
                         nget(g, "runs"), fmt_num(nget(g, "pass_rate"), r, sizeof r));
                row[t + 1] = cells[t + 1];
            }
            rc = report_table_row(b, row, nt + 1);
        }
        if (rc == 0)
            rc = report_table_end(b);
        free(hdr);
        free(cells);
        free(row);
    }
out:
    free(tags);
    free(cats);
    free(y);
    free(ser);
    return rc;
}

static int latency_section(buf *b, const json_t *rep)
{
    const json_t *targets = json_object_get(rep, "targets"), *runs = json_object_get(rep, "runs");
    size_t nt = json_array_size(targets), nr = json_array_size(runs);
    double *v = malloc((nr ? nr : 1) * sizeof *v);
    report_series *ser = calloc(nt ? nt : 1, sizeof *ser);
    int rc = 0;
    if (!v || !ser) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t t = 0; t < nt; t++) {
        const char *name = sget(json_array_get(targets, t), "name");
        size_t start = k;
        for (size_t i = 0; i < nr; i++) {
            const json_t *r = json_array_get(runs, i);
            if (strcmp(sget(r, "target"), name) == 0 && !json_is_true(json_object_get(r, "error")))
                v[k++] = nget(r, "latency_ms");
        }
        ser[t] = (report_series){name, NULL, v + start, k - start};
    }
    TRY(report_heading(b, 2, "Latency"));
    report_chart ch = {.title = "End-to-end latency of the answered runs",
                       .x_label = "milliseconds",
                       .y_label = "runs",
                       .series = ser,
                       .n_series = nt};
    TRY(report_histogram(b, &ch));
out:
    free(v);
    free(ser);
    return rc;
}

static int paired_section(buf *b, const json_t *rep)
{
    const json_t *pairs = json_object_get(rep, "comparisons");
    size_t np = json_array_size(pairs);
    if (np == 0)
        return 0;
    double *y = calloc(np * 3, sizeof *y);
    report_series *ser = calloc(np, sizeof *ser);
    char(*names)[160] = calloc(np, sizeof *names);
    int rc = 0;
    if (!y || !ser || !names) {
        rc = ERR_NOMEM;
        goto out;
    }
    TRY(report_heading(b, 2, "Paired comparison"));
    TRY(report_paragraph(
        b,
        "Each later target against the first (the baseline), case by case. A case is won when "
        "its share of passed repeats is higher than on the baseline. McNemar's exact test "
        "compares pass/fail (a case passes on majority); the interval of the pass-rate "
        "difference is a seeded paired bootstrap over cases (docs/eval.md).",
        true));
    static const char *const hdr[] = {"target vs baseline",
                                      "cases",
                                      "won",
                                      "lost",
                                      "tied",
                                      "only target passes",
                                      "only baseline passes",
                                      "McNemar p",
                                      "pass-rate diff",
                                      "bootstrap 95% CI"};
    TRY(report_table_begin(b, hdr, ARRAY_LEN(hdr)));
    for (size_t i = 0; i < np; i++) {
        const json_t *p = json_array_get(pairs, i);
        const json_t *mc = json_object_get(p, "mcnemar"), *bs = json_object_get(p, "bootstrap");
        const json_t *ci = json_object_get(bs, "ci95");
        snprintf(names[i], sizeof names[i], "%s vs %s", sget(p, "a"), sget(p, "b"));
        char c[10][96], lo[32], hi[32];
        snprintf(c[0], sizeof c[0], "%s", names[i]);
        snprintf(c[1], sizeof c[1], "%.0f", nget(p, "cases"));
        snprintf(c[2], sizeof c[2], "%.0f", nget(p, "won"));
        snprintf(c[3], sizeof c[3], "%.0f", nget(p, "lost"));
        snprintf(c[4], sizeof c[4], "%.0f", nget(p, "tied"));
        snprintf(c[5], sizeof c[5], "%.0f", nget(mc, "only_a"));
        snprintf(c[6], sizeof c[6], "%.0f", nget(mc, "only_b"));
        snprintf(c[7], sizeof c[7], "%.4g", nget(mc, "p_value"));
        snprintf(c[8], sizeof c[8], "%+.3f", nget(p, "diff"));
        snprintf(c[9], sizeof c[9], "[%s, %s] (%.0f resamples, seed %.0f)",
                 fmt_num(json_number_value(json_array_get(ci, 0)), lo, sizeof lo),
                 fmt_num(json_number_value(json_array_get(ci, 1)), hi, sizeof hi),
                 nget(bs, "resamples"), nget(bs, "seed"));
        const char *cells[10];
        for (size_t k = 0; k < 10; k++)
            cells[k] = c[k];
        TRY(report_table_row(b, cells, 10));
        y[i * 3] = nget(p, "won");
        y[i * 3 + 1] = nget(p, "lost");
        y[i * 3 + 2] = nget(p, "tied");
        ser[i] = (report_series){names[i], NULL, y + i * 3, 3};
    }
    TRY(report_table_end(b));
    static const char *const cats[] = {"won", "lost", "tied"};
    report_chart ch = {.title = "Cases won, lost and tied against the baseline",
                       .y_label = "cases",
                       .series = ser,
                       .n_series = np,
                       .categories = cats,
                       .n_categories = 3};
    TRY(report_bar_chart(b, &ch));
out:
    free(y);
    free(ser);
    free(names);
    return rc;
}

static int gates_section(buf *b, const json_t *rep)
{
    const json_t *gates = json_object_get(rep, "gates");
    if (json_array_size(gates) == 0)
        return 0;
    int rc = report_heading(
        b, 2, json_is_true(json_object_get(rep, "passed")) ? "Gates: all passed" : "Gates: FAILED");
    static const char *const hdr[] = {"gate", "target", "value", "result"};
    if (rc == 0)
        rc = report_table_begin(b, hdr, 4);
    for (size_t i = 0; i < json_array_size(gates) && rc == 0; i++) {
        const json_t *g = json_array_get(gates, i);
        bool ok = json_is_true(json_object_get(g, "pass"));
        char c0[128], c2[32];
        snprintf(c0, sizeof c0, "%s%s", ok ? "" : "!", sget(g, "gate"));
        snprintf(c2, sizeof c2, "%.6g", nget(g, "value"));
        const char *cells[] = {c0, sget(g, "target"), c2, ok ? "ok" : "FAILED"};
        rc = report_table_row(b, cells, 4);
    }
    return rc ? rc : report_table_end(b);
}

static int failures_section(buf *b, const json_t *rep)
{
    const json_t *runs = json_object_get(rep, "runs");
    size_t nfail = 0;
    for (size_t i = 0; i < json_array_size(runs); i++)
        nfail += !json_is_true(json_object_get(json_array_get(runs, i), "pass"));
    char h[96];
    snprintf(h, sizeof h, "Failing runs (%zu)", nfail);
    int rc = report_heading(b, 2, h);
    if (rc || nfail == 0)
        return rc;
    if (nfail > EVAL_HTML_FAILURES) {
        snprintf(h, sizeof h, "The first %d are listed; the JSON report has all.",
                 EVAL_HTML_FAILURES);
        if ((rc = report_paragraph(b, h, true)))
            return rc;
    }
    static const char *const hdr[] = {"target",           "case",  "line", "repeat",
                                      "failed assertion", "answer"};
    if ((rc = report_table_begin(b, hdr, ARRAY_LEN(hdr))))
        return rc;
    size_t shown = 0;
    for (size_t i = 0; i < json_array_size(runs) && shown < EVAL_HTML_FAILURES && rc == 0; i++) {
        const json_t *r = json_array_get(runs, i);
        if (json_is_true(json_object_get(r, "pass")))
            continue;
        char line[32], rep_s[32], out[EVAL_HTML_OUTPUT + 8];
        snprintf(line, sizeof line, "%.0f", nget(r, "line"));
        snprintf(rep_s, sizeof rep_s, "%.0f", nget(r, "repeat"));
        const char *o = sget(r, "output");
        size_t n = strlen(o);
        if (n > EVAL_HTML_OUTPUT) { // cut at a UTF-8 boundary
            n = EVAL_HTML_OUTPUT;
            while (n > 0 && ((unsigned char)o[n] & 0xC0) == 0x80)
                n--;
        }
        snprintf(out, sizeof out, "%.*s%s", (int)n, o, n < strlen(o) ? "..." : "");
        const char *cells[] = {
            sget(r, "target"), sget(r, "case"), line, rep_s, sget(r, "failure"), out};
        rc = report_table_row(b, cells, ARRAY_LEN(cells));
        shown++;
    }
    return rc ? rc : report_table_end(b);
}

int eval_write_html(const json_t *rep, const char *path, err_msg *e)
{
    buf b, cmd;
    buf_init(&b, EVAL_HTML_MAX);
    buf_init(&cmd, (size_t)1 << 20);
    int rc = 0;
    char title[512], note[512];
    snprintf(title, sizeof title, "ferry eval: %.400s", sget(rep, "data"));
    const json_t *cfg = json_object_get(rep, "config");
    snprintf(note, sizeof note,
             "%.0f cases x %zu targets x %.0f repeats; seed %.0f (+ repeat index), temperature "
             "%g, max_tokens %.0f; %.1f s%s",
             nget(rep, "cases"), json_array_size(json_object_get(rep, "targets")),
             nget(cfg, "repeat"), nget(cfg, "seed"), nget(cfg, "temperature"),
             nget(cfg, "max_tokens"), nget(rep, "duration_s"),
             json_is_true(json_object_get(rep, "interrupted"))
                 ? "; INTERRUPTED by Ctrl-C: partial results"
                 : "");
    const json_t *argv = json_object_get(rep, "command");
    for (size_t i = 0; i < json_array_size(argv) && rc == 0; i++)
        rc = buf_printf(&cmd, "%sferry%s%s", i ? " " : "", i ? "" : " ",
                        json_string_value(json_array_get(argv, i)));
    TRY(rc);
    TRY(report_begin(&b, title));
    TRY(report_paragraph(&b, note, true));
    TRY(report_pre(&b, cmd.data ? cmd.data : ""));
    TRY(report_heading(&b, 2, "Summary"));
    TRY(summary_table(&b, rep));
    if (nget(cfg, "repeat") > 1)
        TRY(report_paragraph(&b,
                             "95% CI: Wilson interval clustered by case (the repeats of a case "
                             "are not independent; effective sample size from the spread "
                             "between cases, docs/eval.md)",
                             true));
    TRY(gates_section(&b, rep));
    TRY(tag_section(&b, rep));
    TRY(latency_section(&b, rep));
    TRY(paired_section(&b, rep));
    TRY(failures_section(&b, rep));
    TRY(report_end(&b));
out:
    buf_deinit(&cmd);
    if (rc) {
        buf_deinit(&b);
        return err_set(e, rc, "%s: cannot build the HTML report (%s)", path, err_str(rc));
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(b.data, 1, b.len, f) == b.len;
    if (f && fclose(f) != 0)
        ok = false;
    buf_deinit(&b);
    if (!ok || rename(tmp, path) != 0) {
        int en = errno;
        remove(tmp);
        return err_set(e, ERR_IO, "%s: cannot write the HTML report: %s", path, strerror(en));
    }
    return 0;
}
