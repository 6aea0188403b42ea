/*
 * ferry bench compare A.json B.json ... [--html FILE]
 *
 * Reads reports written by `ferry bench --json` and prints one table with the
 * runs side by side: for every load level found in any run, one row per
 * metric and one column per run ("-" where a run has no such point). With
 * --html, one report with the runs overlaid: a summary table per run, latency
 * and throughput vs load with one line per run, and the TTFT distribution of
 * each run (all its points pooled) as a share histogram.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_bench.h"
#include "cli/report.h"

#define CMP_RUNS_MAX 16

typedef struct cmp_run {
    const char *path;
    char name[64];
    json_t *root;   // owned
    json_t *points; // borrowed from root
} cmp_run;

static double jnum(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static double point_load(json_t *p)
{
    double c = jnum(p, "concurrency", NULL);
    return isnan(c) ? jnum(p, "rate", NULL) : c;
}

static bool point_is_open(json_t *p)
{
    json_t *m = json_object_get(p, "mode");
    return json_is_string(m) && strcmp(json_string_value(m), "open") == 0;
}

typedef struct metric {
    const char *label, *a, *b;
} metric;

static const metric METRICS[] = {
    {"requests/s", "requests_per_s", NULL},
    {"output tok/s", "output_tokens_per_s", NULL},
    {"TTFT p50 ms", "ttft_ms", "p50"},
    {"TTFT p99 ms", "ttft_ms", "p99"},
    {"ITL p50 ms", "itl_ms", "p50"},
    {"TPOT p50 ms", "tpot_ms", "p50"},
    {"E2E p50 ms", "e2e_ms", "p50"},
    {"E2E p99 ms", "e2e_ms", "p99"},
    {"failed", "requests", "failed"},
    {"goodput share", "goodput", "share"},
    {"cost/1K out", "cost", "per_1k_output_tokens"},
};

static json_t *find_point(cmp_run *r, bool is_open, double load)
{
    size_t i;
    json_t *p;
    json_array_foreach(r->points, i,
                       p) if (point_is_open(p) == is_open && point_load(p) == load) return p;
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ferry bench compare A.json B.json ... [--html FILE]\n"
            "  side-by-side table of `ferry bench --json` reports (up to %d), and with --html\n"
            "  one report with the runs overlaid.\n",
            CMP_RUNS_MAX);
}

typedef struct loadkey {
    bool is_open;
    double load;
} loadkey;

static int cmp_load(const void *a, const void *b)
{
    const loadkey *x = a, *y = b;
    if (x->is_open != y->is_open)
        return x->is_open ? 1 : -1;
    return (x->load > y->load) - (x->load < y->load);
}

static int write_html(cmp_run *runs, size_t nr, const char *path, err_msg *e)
{
    buf b;
    buf_init(&b, (size_t)1 << 30);
    int rc = 0;
    report_series ser[CMP_RUNS_MAX];
    double *xs[CMP_RUNS_MAX] = {0}, *ys[CMP_RUNS_MAX] = {0}, *tt[CMP_RUNS_MAX] = {0};
    size_t ntt[CMP_RUNS_MAX] = {0};
    bool all_closed = true;
#define TRYC(x)                                                                                    \
    do {                                                                                           \
        if ((rc = (x)) != 0)                                                                       \
            goto out;                                                                              \
    } while (0)
    for (size_t r = 0; r < nr; r++) {
        size_t np = json_array_size(runs[r].points), total = 0, i;
        json_t *p;
        xs[r] = calloc(np + 1, sizeof(double));
        ys[r] = calloc((np + 1) * ARRAY_LEN(METRICS), sizeof(double));
        json_array_foreach(runs[r].points, i, p)
        {
            total += json_array_size(json_object_get(p, "request_log"));
            all_closed &= !point_is_open(p);
        }
        tt[r] = calloc(total + 1, sizeof(double));
        if (!xs[r] || !ys[r] || !tt[r]) {
            rc = ERR_NOMEM;
            goto out;
        }
        json_array_foreach(runs[r].points, i, p)
        {
            xs[r][i] = point_load(p);
            for (size_t m = 0; m < ARRAY_LEN(METRICS); m++)
                ys[r][m * (np + 1) + i] = jnum(p, METRICS[m].a, METRICS[m].b);
            size_t k;
            json_t *q;
            json_array_foreach(json_object_get(p, "request_log"), k, q)
            {
                json_t *er = json_object_get(q, "error");
                double v = jnum(q, "ttft_ms", NULL);
                if (json_is_string(er) && strcmp(json_string_value(er), "ok") == 0 && !isnan(v))
                    tt[r][ntt[r]++] = v;
            }
        }
    }
    TRYC(report_begin(&b, "ferry bench compare"));
    for (size_t r = 0; r < nr; r++) {
        json_t *cmd = json_object_get(runs[r].root, "command");
        char h[160];
        snprintf(h, sizeof h, "%s", runs[r].name);
        TRYC(report_heading(&b, 3, h));
        TRYC(report_pre(&b, json_is_string(cmd) ? json_string_value(cmd) : "?"));
    }
    TRYC(report_heading(&b, 2, "Summary"));
    const char *hdr[2 + ARRAY_LEN(METRICS)];
    hdr[0] = "run";
    hdr[1] = "load";
    for (size_t m = 0; m < ARRAY_LEN(METRICS); m++)
        hdr[2 + m] = METRICS[m].label;
    TRYC(report_table_begin(&b, hdr, ARRAY_LEN(hdr)));
    for (size_t r = 0; r < nr; r++) {
        size_t i;
        json_t *p;
        json_array_foreach(runs[r].points, i, p)
        {
            char c[2 + ARRAY_LEN(METRICS)][40];
            const char *cells[2 + ARRAY_LEN(METRICS)];
            snprintf(c[0], 40, "%s", runs[r].name);
            snprintf(c[1], 40, point_is_open(p) ? "rate=%g/s" : "c=%g", point_load(p));
            for (size_t m = 0; m < ARRAY_LEN(METRICS); m++)
                report_num(jnum(p, METRICS[m].a, METRICS[m].b), c[2 + m], 40);
            for (size_t k = 0; k < ARRAY_LEN(cells); k++)
                cells[k] = c[k];
            TRYC(report_table_row(&b, cells, ARRAY_LEN(cells)));
        }
    }
    TRYC(report_table_end(&b));
    static const struct {
        size_t metric;
        const char *title, *y;
    } charts[] = {
        {2, "TTFT p50 vs load", "ms"},          {3, "TTFT p99 vs load", "ms"},
        {6, "E2E p50 vs load", "ms"},           {7, "E2E p99 vs load", "ms"},
        {4, "ITL p50 vs load", "ms"},           {1, "Output throughput vs load", "tokens/s"},
        {0, "Requests/s vs load", "requests/s"}};
    TRYC(report_heading(&b, 2, "Runs overlaid"));
    for (size_t ci = 0; ci < ARRAY_LEN(charts); ci++) {
        for (size_t r = 0; r < nr; r++) {
            size_t np = json_array_size(runs[r].points);
            ser[r] = (report_series){runs[r].name, xs[r], ys[r] + charts[ci].metric * (np + 1), np};
        }
        report_chart ch = {.title = charts[ci].title,
                           .x_label = all_closed ? "concurrency" : "load (concurrency or req/s)",
                           .y_label = charts[ci].y,
                           .series = ser,
                           .n_series = nr,
                           .x_scale = all_closed ? REPORT_LOG2 : REPORT_LINEAR,
                           .y_from_zero = true};
        TRYC(report_line_chart(&b, &ch));
    }
    for (size_t r = 0; r < nr; r++)
        ser[r] = (report_series){runs[r].name, NULL, tt[r], ntt[r]};
    report_chart hc = {.title = "TTFT distribution (all points of each run)",
                       .x_label = "milliseconds",
                       .y_label = nr > 1 ? "% of the run's requests" : "requests",
                       .series = ser,
                       .n_series = nr,
                       .bins = 24};
    TRYC(report_histogram(&b, &hc));
    TRYC(report_end(&b));
    rc = bench_write_file(path, &b, e);
out:
    if (rc && e->code == 0)
        err_set(e, rc, "cannot build the HTML report %s: %s", path, err_str(rc));
    for (size_t r = 0; r < nr; r++) {
        free(xs[r]);
        free(ys[r]);
        free(tt[r]);
    }
    buf_deinit(&b);
    return rc;
#undef TRYC
}

int bench_compare_main(int argc, char **argv)
{
    cmp_run runs[CMP_RUNS_MAX];
    size_t nr = 0;
    const char *html = NULL;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(argv[i], "--html") == 0) {
            if (i + 1 >= argc) {
                cli_errorf("bench compare: missing value after --html");
                goto out;
            }
            html = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--", 2) == 0) {
            cli_errorf("bench compare: unknown flag %s (see ferry bench compare --help)", argv[i]);
            goto out;
        }
        if (nr == CMP_RUNS_MAX) {
            cli_errorf("bench compare: at most %d reports", CMP_RUNS_MAX);
            goto out;
        }
        json_error_t je;
        json_t *root = json_load_file(argv[i], 0, &je);
        json_t *pts = json_object_get(root, "points");
        if (!root || !json_is_array(pts) ||
            !json_is_integer(json_object_get(root, "ferry_bench"))) {
            cli_errorf("bench compare: %s: %s", argv[i],
                       root ? "not a ferry bench --json report" : je.text);
            json_decref(root);
            goto out;
        }
        cmp_run *r = &runs[nr++];
        r->path = argv[i];
        r->root = root;
        r->points = pts;
        const char *base = strrchr(argv[i], '/');
        snprintf(r->name, sizeof r->name, "%s", base ? base + 1 : argv[i]);
    }
    if (nr < 1) {
        cli_errorf("bench compare: give one or more reports (ferry bench --json FILE)");
        goto out;
    }
    /* the union of load levels */
    loadkey keys[CMP_RUNS_MAX * BENCH_POINTS_MAX];
    size_t nk = 0;
    for (size_t r = 0; r < nr; r++) {
        size_t i;
        json_t *p;
        json_array_foreach(runs[r].points, i, p)
        {
            loadkey k = {point_is_open(p), point_load(p)};
            bool seen = false;
            for (size_t j = 0; j < nk && !seen; j++)
                seen = keys[j].is_open == k.is_open && keys[j].load == k.load;
            if (!seen && nk < ARRAY_LEN(keys))
                keys[nk++] = k;
        }
    }
    qsort(keys, nk, sizeof *keys, cmp_load);
    printf("%-12s %-14s", "load", "metric");
    for (size_t r = 0; r < nr; r++)
        printf(" %16.16s", runs[r].name);
    printf("\n");
    for (size_t k = 0; k < nk; k++) {
        char lb[32];
        snprintf(lb, sizeof lb, keys[k].is_open ? "rate=%g/s" : "c=%g", keys[k].load);
        for (size_t m = 0; m < ARRAY_LEN(METRICS); m++) {
            printf("%-12s %-14s", m == 0 ? lb : "", METRICS[m].label);
            for (size_t r = 0; r < nr; r++) {
                json_t *p = find_point(&runs[r], keys[k].is_open, keys[k].load);
                char v[32];
                report_num(p ? jnum(p, METRICS[m].a, METRICS[m].b) : NAN, v, sizeof v);
                printf(" %16s", v);
            }
            printf("\n");
        }
    }
    rc = 0;
    if (html) {
        err_msg e;
        err_clear(&e);
        if (write_html(runs, nr, html, &e)) {
            cli_errorf("bench compare: %s", e.text);
            rc = 1;
        }
    }
out:
    for (size_t r = 0; r < nr; r++)
        json_decref(runs[r].root);
    return rc;
}
