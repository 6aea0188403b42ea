/*
 * ferry bench — statistics of a point and the three outputs: the console
 * table, the JSON report (schema in docs/bench.md) and the HTML report
 * (cli/report). Definitions (docs/bench.md): percentiles interpolate between
 * closest ranks; TTFT, TPOT, E2E and ITL are over successful requests only;
 * throughputs divide by the point's duration (first submit to last
 * completion); goodput counts successful requests meeting every SLO bound
 * that was given (a TPOT bound does not apply to a request without TPOT).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_bench.h"
#include "cli/report.h"

#define BENCH_OUT_MAX ((size_t)1 << 30)

static const char *const ERR_NAMES[BENCH_E_COUNT] = {
    "ok", "connect", "timeout", "http", "parse", "too_large", "io", "stream_error", "cancelled"};

const char *bench_err_name(bench_err e)
{
    return (unsigned)e < BENCH_E_COUNT ? ERR_NAMES[e] : "unknown";
}

double bench_quantile(const double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos), hi = (size_t)ceil(pos);
    return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

void bench_dist_of(double *v, size_t n, bench_dist *d)
{
    d->n = n;
    if (n == 0) {
        d->mean = d->p50 = d->p90 = d->p99 = d->min = d->max = NAN;
        return;
    }
    qsort(v, n, sizeof *v, cli_cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    d->mean = sum / (double)n;
    d->p50 = bench_quantile(v, n, 0.50);
    d->p90 = bench_quantile(v, n, 0.90);
    d->p99 = bench_quantile(v, n, 0.99);
    d->min = v[0];
    d->max = v[n - 1];
}

static bool meets_slo(const bench_slo *s, const bench_rec *r)
{
    if (!isnan(s->ttft_ms) && !(r->ttft_ms <= s->ttft_ms))
        return false;
    if (!isnan(s->tpot_ms) && !isnan(r->tpot_ms) && !(r->tpot_ms <= s->tpot_ms))
        return false;
    if (!isnan(s->e2e_ms) && !(r->e2e_ms <= s->e2e_ms))
        return false;
    return true;
}

int bench_summarize(const bench_run *run, const bench_point *p, bench_summary *s)
{
    memset(s, 0, sizeof *s);
    size_t n = p->n_recs;
    double *tt = malloc((n + 1) * sizeof *tt), *tp = malloc((n + 1) * sizeof *tp),
           *ee = malloc((n + 1) * sizeof *ee), *it = malloc((p->n_itl + 1) * sizeof *it);
    if (!tt || !tp || !ee || !it) {
        free(tt);
        free(tp);
        free(ee);
        free(it);
        return ERR_NOMEM;
    }
    size_t ntt = 0, ntp = 0, nee = 0, n_usage = 0;
    for (size_t i = 0; i < n; i++) {
        const bench_rec *r = &p->recs[i];
        s->total++;
        s->errors[r->err]++;
        if (r->err == BENCH_E_CANCELLED) {
            s->cancelled++;
            continue;
        }
        if (r->err != BENCH_OK) {
            s->failed++;
            continue;
        }
        s->ok++;
        if (r->prompt_tokens > 0)
            s->in_tokens += r->prompt_tokens;
        s->out_tokens += r->output_tokens;
        n_usage += r->has_usage;
        if (!isnan(r->ttft_ms))
            tt[ntt++] = r->ttft_ms;
        if (!isnan(r->tpot_ms))
            tp[ntp++] = r->tpot_ms;
        ee[nee++] = r->e2e_ms;
        if (run->cfg.slo.is_set && meets_slo(&run->cfg.slo, r))
            s->good++;
    }
    memcpy(it, p->itl, p->n_itl * sizeof *it);
    bench_dist_of(tt, ntt, &s->ttft);
    bench_dist_of(tp, ntp, &s->tpot);
    bench_dist_of(ee, nee, &s->e2e);
    bench_dist_of(it, p->n_itl, &s->itl);
    free(tt);
    free(tp);
    free(ee);
    free(it);
    s->token_source = s->ok == 0         ? "none"
                      : n_usage == s->ok ? "usage"
                      : n_usage          ? "mixed"
                                         : "chunks";
    double d = p->duration_s > 0 ? p->duration_s : NAN;
    s->req_per_s = (double)s->ok / d;
    s->out_tok_per_s = (double)s->out_tokens / d;
    s->in_tok_per_s = (double)s->in_tokens / d;
    size_t counted = s->ok + s->failed; // cancelled requests never had a chance
    s->good_share = run->cfg.slo.is_set && counted ? (double)s->good / (double)counted : NAN;
    s->good_rate = run->cfg.slo.is_set ? (double)s->good / d : NAN;
    const bench_cfg *c = &run->cfg;
    s->cost_total = s->cost_per_req = s->cost_per_1k_out = NAN;
    if (!isnan(c->price_in))
        s->cost_total =
            ((double)s->in_tokens * c->price_in + (double)s->out_tokens * c->price_out) / 1e6;
    else if (!isnan(c->hourly))
        s->cost_total = c->hourly * p->duration_s / 3600.0;
    if (!isnan(s->cost_total)) {
        s->cost_per_req = s->ok ? s->cost_total / (double)s->ok : NAN;
        s->cost_per_1k_out = s->out_tokens ? s->cost_total / (double)s->out_tokens * 1000 : NAN;
    }
    return 0;
}

static const char *load_label(const bench_point *p, char *out, size_t n)
{
    snprintf(out, n, p->is_open ? "rate=%g/s" : "c=%g", p->load);
    return out;
}

/* ------------------------------------------------------------- console -- */

void bench_print_table(const bench_run *run, FILE *f)
{
    fprintf(f, "%-11s %6s %5s %5s %8s %9s %9s %9s %8s %8s %8s %9s %9s %8s %10s\n", "load", "reqs",
            "ok", "err", "req/s", "out_tok/s", "ttft_p50", "ttft_p99", "itl_p50", "itl_p99",
            "tpot_p50", "e2e_p50", "e2e_p99", "goodput", "$/1k_out");
    for (size_t i = 0; i < run->n_points; i++) {
        const bench_point *p = &run->points[i];
        bench_summary s;
        char lb[32];
        if (bench_summarize(run, p, &s))
            continue;
        char good[16] = "-", cost[24] = "-";
        if (!isnan(s.good_share))
            snprintf(good, sizeof good, "%.1f%%", 100 * s.good_share);
        if (!isnan(s.cost_per_1k_out))
            snprintf(cost, sizeof cost, "%.6f", s.cost_per_1k_out);
        fprintf(f,
                "%-11s %6zu %5zu %5zu %8.2f %9.1f %9.1f %9.1f %8.1f %8.1f %8.1f %9.1f %9.1f %8s "
                "%10s%s\n",
                load_label(p, lb, sizeof lb), s.total, s.ok, s.failed, s.req_per_s, s.out_tok_per_s,
                s.ttft.p50, s.ttft.p99, s.itl.p50, s.itl.p99, s.tpot.p50, s.e2e.p50, s.e2e.p99,
                good, cost, p->interrupted ? "  (interrupted)" : "");
        if (s.failed) {
            fprintf(f, "%-11s errors:", "");
            for (int k = 1; k < BENCH_E_COUNT; k++)
                if (s.errors[k] && k != BENCH_E_CANCELLED)
                    fprintf(f, " %s=%zu", bench_err_name((bench_err)k), s.errors[k]);
            fputc('\n', f);
        }
    }
    fprintf(f, "(times in ms; tokens from %s)\n",
            run->n_points ? "server usage when given, else counted chunks" : "-");
}

/* ---------------------------------------------------------------- JSON -- */

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *dist_json(const bench_dist *d)
{
    return json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "n", (json_int_t)d->n, "mean", num(d->mean),
                     "p50", num(d->p50), "p90", num(d->p90), "p99", num(d->p99), "min", num(d->min),
                     "max", num(d->max));
}

static json_t *point_json(const bench_run *run, const bench_point *p)
{
    bench_summary s;
    if (bench_summarize(run, p, &s))
        return NULL;
    json_t *errs = json_object();
    for (int k = 1; k < BENCH_E_COUNT; k++)
        json_object_set_new(errs, bench_err_name((bench_err)k),
                            json_integer((json_int_t)s.errors[k]));
    json_t *status = json_object();
    for (size_t i = 0; i < p->n_recs; i++) {
        const bench_rec *r = &p->recs[i];
        if (r->err != BENCH_E_HTTP)
            continue;
        char k[16];
        snprintf(k, sizeof k, "%ld", r->status);
        json_t *c = json_object_get(status, k);
        json_object_set_new(status, k, json_integer(c ? json_integer_value(c) + 1 : 1));
    }
    json_t *reqs = json_array();
    for (size_t i = 0; i < p->n_recs; i++) {
        const bench_rec *r = &p->recs[i];
        json_t *itl = json_array();
        for (size_t k = 0; k < r->itl_n; k++)
            json_array_append_new(itl, json_real(p->itl[r->itl_from + k]));
        json_array_append_new(
            reqs, json_pack("{s:o,s:s,s:I,s:o,s:o,s:o,s:o,s:o,s:I,s:b,s:I,s:o}", "t_start_ms",
                            num(r->t_start_ms), "error", bench_err_name(r->err), "status",
                            (json_int_t)r->status, "ttft_ms", num(r->ttft_ms), "e2e_ms",
                            num(r->e2e_ms), "tpot_ms", num(r->tpot_ms), "prompt_tokens",
                            r->prompt_tokens >= 0 ? json_integer(r->prompt_tokens) : json_null(),
                            "output_tokens", json_integer(r->output_tokens), "chunks",
                            (json_int_t)r->n_chunks, "usage", r->has_usage, "itl_n",
                            (json_int_t)r->itl_n, "itl_ms", itl));
    }
    json_t *good = json_null();
    if (run->cfg.slo.is_set)
        good = json_pack("{s:I,s:o,s:o}", "requests", (json_int_t)s.good, "share",
                         num(s.good_share), "rate", num(s.good_rate));
    json_t *cost = json_null();
    if (!isnan(s.cost_total))
        cost = json_pack("{s:o,s:o,s:o}", "total", num(s.cost_total), "per_request",
                         num(s.cost_per_req), "per_1k_output_tokens", num(s.cost_per_1k_out));
    json_t *o = json_pack(
        "{s:s,s:o,s:o,s:b,s:o,s:{s:I,s:I,s:I,s:I},s:o,s:o,s:o,s:o,s:o,s:{s:I,s:I,s:s},"
        "s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:o}",
        "mode", p->is_open ? "open" : "closed", "concurrency",
        p->is_open ? json_null() : json_integer((json_int_t)p->load), "rate",
        p->is_open ? json_real(p->load) : json_null(), "interrupted", p->interrupted, "duration_s",
        num(p->duration_s), "requests", "total", (json_int_t)s.total, "ok", (json_int_t)s.ok,
        "failed", (json_int_t)s.failed, "cancelled", (json_int_t)s.cancelled, "errors", errs,
        "http_status", status, "requests_per_s", num(s.req_per_s), "output_tokens_per_s",
        num(s.out_tok_per_s), "input_tokens_per_s", num(s.in_tok_per_s), "tokens", "input",
        (json_int_t)s.in_tokens, "output", (json_int_t)s.out_tokens, "source", s.token_source,
        "ttft_ms", dist_json(&s.ttft), "itl_ms", dist_json(&s.itl), "tpot_ms", dist_json(&s.tpot),
        "e2e_ms", dist_json(&s.e2e), "goodput", good, "cost", cost, "itl_truncated",
        p->itl_truncated, "request_log", reqs);
    return o;
}

int bench_write_file(const char *path, const buf *b, err_msg *e)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return err_set(e, ERR_INVAL, "path too long: %.100s", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return err_set(e, ERR_IO, "cannot write %s: %s", path, strerror(errno));
    bool ok = fwrite(b->data ? b->data : "", 1, b->len, f) == b->len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int en = errno;
        unlink(tmp);
        return err_set(e, ERR_IO, "cannot write %s: %s", path, strerror(en));
    }
    return 0;
}

static json_t *run_json(const bench_run *run)
{
    const bench_cfg *c = &run->cfg;
    json_t *pts = json_array();
    for (size_t i = 0; i < run->n_points; i++) {
        json_t *pj = point_json(run, &run->points[i]);
        if (!pj) {
            json_decref(pts);
            return NULL;
        }
        json_array_append_new(pts, pj);
    }
    json_t *slo = json_null();
    if (c->slo.is_set)
        slo = json_pack("{s:o,s:o,s:o}", "ttft_ms", num(c->slo.ttft_ms), "tpot_ms",
                        num(c->slo.tpot_ms), "e2e_ms", num(c->slo.e2e_ms));
    json_t *cfg = json_pack(
        "{s:s,s:o,s:I,s:o,s:o,s:o,s:o,s:I,s:o,s:b,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "mode",
        c->is_open ? "open" : "closed", "loads", json_array(), "seed", (json_int_t)c->seed,
        "input_len_mean", num(c->prompts_file ? NAN : c->in_mean), "input_len_stddev",
        num(c->prompts_file ? NAN : c->in_sd), "output_len_mean", num(c->out_mean),
        "output_len_stddev", num(c->out_sd), "shared_prefix_len", (json_int_t)c->shared_prefix,
        "prompts_file", c->prompts_file ? json_string(c->prompts_file) : json_null(), "stream",
        c->is_stream, "ignore_eos", c->ignore_eos, "num_requests",
        c->num_requests ? json_integer(c->num_requests) : json_null(), "duration_s",
        c->duration_s > 0 ? json_real(c->duration_s) : json_null(), "timeout_s", num(c->timeout_s),
        "slo", slo, "price_in_per_1m", num(c->price_in), "price_out_per_1m", num(c->price_out),
        "hourly_cost", num(c->hourly));
    if (cfg)
        for (size_t i = 0; i < c->n_loads; i++)
            json_array_append_new(json_object_get(cfg, "loads"), json_real(c->loads[i]));
    return json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:o,s:O,s:b,s:o}", "ferry_bench", 1, "command",
                     run->command ? run->command : "", "started_at", run->started_at, "url", c->url,
                     "model", c->model, "endpoint", "chat/completions", "config", cfg,
                     "server_models", run->server_models ? run->server_models : json_null(),
                     "interrupted", run->interrupted, "points", pts);
}

int bench_write_json(const bench_run *run, const char *path, err_msg *e)
{
    json_t *v = run_json(run);
    char *s = v ? json_dumps(v, JSON_INDENT(1) | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(v);
    if (!s)
        return err_set(e, ERR_NOMEM, "out of memory writing %s", path);
    buf b = {.data = s, .len = strlen(s), .cap = strlen(s) + 1, .max_bytes = BENCH_OUT_MAX};
    int rc = bench_write_file(path, &b, e);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------- HTML -- */

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((rc = (x)) != 0)                                                                       \
            goto out;                                                                              \
    } while (0)

int bench_write_html(const bench_run *run, const char *path, err_msg *e)
{
    size_t np = run->n_points;
    bench_summary *ss = calloc(np + 1, sizeof *ss);
    double *x = calloc(np + 1, sizeof *x);
    double *y = calloc((np + 1) * 12, sizeof *y);
    double **ttfts = calloc(np + 1, sizeof *ttfts);
    size_t *nttft = calloc(np + 1, sizeof *nttft);
    char(*names)[48] = calloc(np + 1, sizeof *names);
    report_series *ser = calloc(np + 12, sizeof *ser);
    buf b;
    buf_init(&b, BENCH_OUT_MAX);
    int rc = 0;
    err_clear(e);
    if (!ss || !x || !y || !ttfts || !nttft || !names || !ser) {
        rc = ERR_NOMEM;
        goto out;
    }
    bool is_open = run->cfg.is_open;
    for (size_t i = 0; i < np; i++) {
        const bench_point *p = &run->points[i];
        TRY(bench_summarize(run, p, &ss[i]));
        x[i] = p->load;
        load_label(p, names[i], sizeof names[i]);
        ttfts[i] = malloc((p->n_recs + 1) * sizeof(double));
        if (!ttfts[i]) {
            rc = ERR_NOMEM;
            goto out;
        }
        for (size_t k = 0; k < p->n_recs; k++)
            if (p->recs[k].err == BENCH_OK && !isnan(p->recs[k].ttft_ms))
                ttfts[i][nttft[i]++] = p->recs[k].ttft_ms;
    }
    char title[512];
    snprintf(title, sizeof title, "ferry bench: %.200s at %.200s", run->cfg.model, run->cfg.url);
    TRY(report_begin(&b, title));
    char note[256];
    snprintf(note, sizeof note, "started %s; %s loop; %s%s", run->started_at,
             is_open ? "open (Poisson arrivals)" : "closed",
             run->cfg.is_stream ? "streaming" : "no streaming",
             run->interrupted ? "; INTERRUPTED by Ctrl-C: partial results" : "");
    TRY(report_paragraph(&b, note, true));
    TRY(report_pre(&b, run->command ? run->command : ""));

    TRY(report_heading(&b, 2, "Summary"));
    static const char *const hdr[] = {
        "load",         "requests",    "ok",          "failed",        "req/s",
        "output tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",    "TPOT p50 ms",
        "E2E p50 ms",   "E2E p99 ms",  "goodput",     "cost / 1K out", "cost / request"};
    TRY(report_table_begin(&b, hdr, ARRAY_LEN(hdr)));
    for (size_t i = 0; i < np; i++) {
        const bench_summary *s = &ss[i];
        char c[15][32];
        snprintf(c[0], 32, "%s%s%s", s->failed ? "!" : "", names[i],
                 run->points[i].interrupted ? " (interrupted)" : "");
        snprintf(c[1], 32, "%zu", s->total);
        snprintf(c[2], 32, "%zu", s->ok);
        snprintf(c[3], 32, "%zu", s->failed);
        report_num(s->req_per_s, c[4], 32);
        report_num(s->out_tok_per_s, c[5], 32);
        report_num(s->ttft.p50, c[6], 32);
        report_num(s->ttft.p99, c[7], 32);
        report_num(s->itl.p50, c[8], 32);
        report_num(s->tpot.p50, c[9], 32);
        report_num(s->e2e.p50, c[10], 32);
        report_num(s->e2e.p99, c[11], 32);
        if (isnan(s->good_share))
            snprintf(c[12], 32, "-");
        else
            snprintf(c[12], 32, "%.1f%% (%.2f/s)", 100 * s->good_share, s->good_rate);
        snprintf(c[13], 32, isnan(s->cost_per_1k_out) ? "-" : "%.6f", s->cost_per_1k_out);
        snprintf(c[14], 32, isnan(s->cost_per_req) ? "-" : "%.6f", s->cost_per_req);
        const char *cells[15];
        for (int k = 0; k < 15; k++)
            cells[k] = c[k];
        TRY(report_table_row(&b, cells, 15));
    }
    TRY(report_table_end(&b));

    const char *xl = is_open ? "offered load (requests/s)" : "concurrency";
    report_scale xs = is_open ? REPORT_LINEAR : REPORT_LOG2;
    TRY(report_heading(&b, 2, "Latency vs load"));
    /* y columns: 0-2 ttft p50/p90/p99, 3-5 e2e, 6-7 itl p50/p99, 8 tpot p50, 9 req/s,
     * 10 out tok/s, 11 goodput rate */
    for (size_t i = 0; i < np; i++) {
        const bench_summary *s = &ss[i];
        double v[12] = {s->ttft.p50, s->ttft.p90,  s->ttft.p99,      s->e2e.p50,
                        s->e2e.p90,  s->e2e.p99,   s->itl.p50,       s->itl.p99,
                        s->tpot.p50, s->req_per_s, s->out_tok_per_s, s->good_rate};
        for (int k = 0; k < 12; k++)
            y[(size_t)k * (np + 1) + i] = v[k];
    }
#define YS(k) (y + (size_t)(k) * (np + 1))
    report_series lat[] = {{"TTFT p50", x, YS(0), np}, {"TTFT p90", x, YS(1), np},
                           {"TTFT p99", x, YS(2), np}, {"E2E p50", x, YS(3), np},
                           {"E2E p90", x, YS(4), np},  {"E2E p99", x, YS(5), np}};
    report_chart ch = {.title = "Latency percentiles vs load",
                       .x_label = xl,
                       .y_label = "milliseconds",
                       .series = lat,
                       .n_series = 6,
                       .x_scale = xs,
                       .y_from_zero = true};
    TRY(report_line_chart(&b, &ch));
    report_series tok[] = {
        {"ITL p50", x, YS(6), np}, {"ITL p99", x, YS(7), np}, {"TPOT p50", x, YS(8), np}};
    ch = (report_chart){.title = "Inter-token latency and TPOT vs load",
                        .x_label = xl,
                        .y_label = "milliseconds",
                        .series = tok,
                        .n_series = 3,
                        .x_scale = xs,
                        .y_from_zero = true};
    TRY(report_line_chart(&b, &ch));
    TRY(report_heading(&b, 2, "Throughput"));
    report_series thr[] = {{"output tokens/s", x, YS(10), np}};
    ch = (report_chart){.title = is_open ? "Output throughput vs offered load"
                                         : "Output throughput vs concurrency",
                        .x_label = xl,
                        .y_label = "output tokens / s",
                        .series = thr,
                        .n_series = 1,
                        .x_scale = xs,
                        .y_from_zero = true};
    TRY(report_line_chart(&b, &ch));
    report_series rq[] = {{"requests/s", x, YS(9), np},
                          {"goodput (req/s meeting the SLO)", x, YS(11), np}};
    ch = (report_chart){.title = "Requests/s and goodput vs load",
                        .x_label = xl,
                        .y_label = "requests / s",
                        .series = rq,
                        .n_series = run->cfg.slo.is_set ? 2 : 1,
                        .x_scale = xs,
                        .y_from_zero = true};
    TRY(report_line_chart(&b, &ch));
#undef YS
    TRY(report_heading(&b, 2, "TTFT distribution"));
    for (size_t i = 0; i < np; i++)
        ser[i] = (report_series){names[i], NULL, ttfts[i], nttft[i]};
    ch = (report_chart){.title = "Time to first token",
                        .x_label = "milliseconds",
                        .y_label = np > 1 ? "% of the point's requests" : "requests",
                        .series = ser,
                        .n_series = np,
                        .bins = 24};
    TRY(report_histogram(&b, &ch));

    bool any_err = false;
    for (size_t i = 0; i < np; i++)
        any_err |= ss[i].failed > 0;
    if (any_err) {
        TRY(report_heading(&b, 2, "Errors"));
        static const char *const cats[] = {"connect",   "timeout", "http",        "parse",
                                           "too_large", "io",      "stream_error"};
        double *ev = calloc(np * 7 + 1, sizeof *ev);
        if (!ev) {
            rc = ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < np; i++) {
            for (int k = 0; k < 7; k++)
                ev[i * 7 + (size_t)k] = (double)ss[i].errors[k + 1];
            ser[i] = (report_series){names[i], NULL, ev + i * 7, 7};
        }
        ch = (report_chart){.title = "Errors by kind",
                            .y_label = "requests",
                            .series = ser,
                            .n_series = np,
                            .categories = cats,
                            .n_categories = 7};
        rc = report_bar_chart(&b, &ch);
        free(ev);
        if (rc)
            goto out;
    }
    TRY(report_heading(&b, 2, "Server"));
    char *models = run->server_models ? json_dumps(run->server_models, JSON_INDENT(1)) : NULL;
    rc = report_pre(&b, models ? models : "(no /v1/models answer)");
    free(models);
    if (rc)
        goto out;
    TRY(report_paragraph(&b,
                         "Definitions: docs/bench.md. Percentiles interpolate between closest "
                         "ranks; latencies are over successful requests.",
                         true));
    TRY(report_end(&b));
    rc = bench_write_file(path, &b, e);
out:
    if (rc && e && e->code == 0)
        err_set(e, rc, "cannot build the HTML report %s: %s", path, err_str(rc));
    for (size_t i = 0; ttfts && i < np; i++)
        free(ttfts[i]);
    free(ttfts);
    free(nttft);
    free(ss);
    free(x);
    free(y);
    free(names);
    free(ser);
    buf_deinit(&b);
    return rc;
}
