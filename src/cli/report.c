/*
 * cli/report — HTML + inline SVG report writer (see report.h).
 *
 * Chart geometry: every chart is an SVG of CHART_W x (CHART_H + legend
 * height) user units, scaled by CSS to the page width (viewBox). The plot
 * area is [PAD_L, CHART_W - PAD_R] x [top, top + PLOT_H]; the legend rows sit
 * between the title and the plot. Data coordinates map to the plot by an
 * axis (linear or log) whose range is widened to nice tick values.
 */
#include "cli/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHART_W 720.0
#define PAD_L 72.0
#define PAD_R 24.0
#define PLOT_H 260.0
#define TITLE_H 30.0
#define LEGEND_ROW_H 18.0
#define BOTTOM_H 52.0
#define HIST_BINS_MAX 200

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* ----------------------------------------------------------------- text -- */

int report_escape(buf *out, const char *s, size_t n)
{
    size_t i = 0, run = 0;
    for (; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        if (!rep)
            continue;
        TRY(buf_append(out, s + run, i - run));
        TRY(buf_append_str(out, rep));
        run = i + 1;
    }
    return buf_append(out, s + run, i - run);
}

int report_escape_str(buf *out, const char *s)
{
    return s ? report_escape(out, s, strlen(s)) : 0;
}

char *report_num(double v, char *out, size_t n)
{
    double a = fabs(v);
    if (!isfinite(v))
        snprintf(out, n, "-");
    else if (a == 0)
        snprintf(out, n, "0");
    else if (a >= 1e9 || a < 1e-4)
        snprintf(out, n, "%.3g", v);
    else if (v == floor(v))
        snprintf(out, n, "%.0f", v); // whole numbers as such: ticks 64, counts 3
    else if (a >= 100)
        snprintf(out, n, "%.0f", v);
    else if (a >= 10)
        snprintf(out, n, "%.1f", v);
    else if (a >= 1)
        snprintf(out, n, "%.2f", v);
    else
        snprintf(out, n, "%.3g", v);
    return out;
}

static const char STYLE[] =
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;"
    "max-width:1100px;color:#222;background:#fff;padding:0 16px}"
    "h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}"
    "h3{font-size:1.05em}"
    "table{border-collapse:collapse;margin:8px 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.hl td{background:#fde8e8}"
    "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:0.85em;white-space:pre-wrap}"
    "p.note{color:#666;font-size:0.85em}"
    "figure.chart{margin:12px 0;max-width:900px}figure.chart svg{width:100%;height:auto}"
    ".charts{display:flex;flex-wrap:wrap;gap:8px}";

int report_begin(buf *out, const char *title)
{
    TRY(buf_append_str(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                            "<meta name=\"viewport\" content=\"width=device-width\"><title>"));
    TRY(report_escape_str(out, title));
    TRY(buf_printf(out, "</title><style>%s</style></head>\n<body>\n<h1>", STYLE));
    TRY(report_escape_str(out, title));
    return buf_append_str(out, "</h1>\n");
}

int report_end(buf *out)
{
    return buf_append_str(out, "</body></html>\n");
}

int report_heading(buf *out, int level, const char *text)
{
    if (level != 2 && level != 3)
        return ERR_INVAL;
    TRY(buf_printf(out, "<h%d>", level));
    TRY(report_escape_str(out, text));
    return buf_printf(out, "</h%d>\n", level);
}

int report_paragraph(buf *out, const char *text, bool is_note)
{
    TRY(buf_append_str(out, is_note ? "<p class=\"note\">" : "<p>"));
    TRY(report_escape_str(out, text));
    return buf_append_str(out, "</p>\n");
}

int report_pre(buf *out, const char *text)
{
    TRY(buf_append_str(out, "<pre>"));
    TRY(report_escape_str(out, text));
    return buf_append_str(out, "</pre>\n");
}

int report_table_begin(buf *out, const char *const *headers, size_t n)
{
    TRY(buf_append_str(out, "<table><thead><tr>"));
    for (size_t i = 0; i < n; i++) {
        TRY(buf_append_str(out, "<th>"));
        TRY(report_escape_str(out, headers[i]));
        TRY(buf_append_str(out, "</th>"));
    }
    return buf_append_str(out, "</tr></thead><tbody>\n");
}

static bool looks_numeric(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    return (*s >= '0' && *s <= '9') || (*s == '.' && s[1] >= '0' && s[1] <= '9');
}

int report_table_row(buf *out, const char *const *cells, size_t n)
{
    bool hl = n > 0 && cells[0] && cells[0][0] == '!';
    TRY(buf_append_str(out, hl ? "<tr class=\"hl\">" : "<tr>"));
    for (size_t i = 0; i < n; i++) {
        const char *c = cells[i] ? cells[i] : "";
        if (i == 0 && hl)
            c++;
        TRY(buf_append_str(out, looks_numeric(c) ? "<td class=\"n\">" : "<td>"));
        TRY(report_escape_str(out, c));
        TRY(buf_append_str(out, "</td>"));
    }
    return buf_append_str(out, "</tr>\n");
}

int report_table_end(buf *out)
{
    return buf_append_str(out, "</tbody></table>\n");
}

/* ----------------------------------------------------------------- axes -- */

typedef struct axis {
    report_scale scale;
    double lo, hi; // in data units (log scales: lo, hi > 0)
    double p0, p1; // pixel range (p0 maps lo)
    double ticks[32];
    size_t n_ticks;
} axis;

static double nice_step(double range)
{
    double raw = range / 5, mag = pow(10, floor(log10(raw))), m = raw / mag;
    double f = m < 1.5 ? 1 : m < 2.25 ? 2 : m < 3.5 ? 2.5 : m < 7.5 ? 5 : 10;
    return f * mag;
}

/* Fits the axis to [mn, mx] (finite; mn <= mx), with nice ticks. */
static void axis_fit(axis *a, report_scale sc, double mn, double mx, bool from_zero)
{
    a->scale = sc;
    a->n_ticks = 0;
    if (sc != REPORT_LINEAR) {
        double b = sc == REPORT_LOG2 ? 2 : 10;
        double k0 = floor(log(mn) / log(b) + 1e-9), k1 = ceil(log(mx) / log(b) - 1e-9);
        if (k1 <= k0)
            k1 = k0 + 1;
        a->lo = pow(b, k0);
        a->hi = pow(b, k1);
        size_t stride = (size_t)ceil((k1 - k0 + 1) / 12.0);
        for (double k = k0; k <= k1 + 1e-9 && a->n_ticks < ARRAY_LEN(a->ticks); k += (double)stride)
            a->ticks[a->n_ticks++] = pow(b, k);
        return;
    }
    if (from_zero && mn > 0)
        mn = 0;
    if (mx - mn < 1e-12 * (fabs(mx) + 1)) {
        double d = fabs(mx) > 0 ? fabs(mx) * 0.1 : 1;
        mn = from_zero && mn >= 0 ? mn : mn - d;
        mx += d;
    }
    double step = nice_step(mx - mn);
    a->lo = floor(mn / step + 1e-9) * step;
    a->hi = ceil(mx / step - 1e-9) * step;
    if (a->hi <= a->lo)
        a->hi = a->lo + step;
    for (double t = a->lo; t <= a->hi + step * 1e-6 && a->n_ticks < ARRAY_LEN(a->ticks); t += step)
        a->ticks[a->n_ticks++] = fabs(t) < step * 1e-9 ? 0 : t;
}

static double axis_map(const axis *a, double v)
{
    double f;
    if (a->scale == REPORT_LINEAR)
        f = (v - a->lo) / (a->hi - a->lo);
    else
        f = (log(v) - log(a->lo)) / (log(a->hi) - log(a->lo));
    return a->p0 + f * (a->p1 - a->p0);
}

/* ---------------------------------------------------------------- frame -- */

typedef struct frame {
    double top, bottom, left, right, height; // plot box and total SVG height
} frame;

/* Legend rows needed for the series names at CHART_W (about 7 px a char). */
static size_t legend_rows(const report_chart *c, double *widths)
{
    size_t rows = c->n_series > 1 ? 1 : 0;
    double x = PAD_L;
    for (size_t i = 0; c->n_series > 1 && i < c->n_series; i++) {
        size_t len = c->series[i].name ? strlen(c->series[i].name) : 0;
        widths[i] = 22 + 7.0 * (double)MIN(len, (size_t)60);
        if (x + widths[i] > CHART_W - PAD_R && x > PAD_L) {
            rows++;
            x = PAD_L;
        }
        x += widths[i];
    }
    return rows;
}

static int svg_text(buf *out, double x, double y, const char *anchor, const char *extra,
                    const char *text)
{
    TRY(buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor,
                   extra ? extra : ""));
    TRY(report_escape_str(out, text));
    return buf_append_str(out, "</text>");
}

/* Opens the figure and SVG, writes title and legend, fills f. */
static int frame_begin(buf *out, const report_chart *c, const char *kind, frame *f)
{
    double widths[256] = {0};
    if (c->n_series > ARRAY_LEN(widths))
        return ERR_INVAL;
    size_t rows = legend_rows(c, widths);
    f->top = TITLE_H + (double)rows * LEGEND_ROW_H + 10;
    f->bottom = f->top + PLOT_H;
    f->left = PAD_L;
    f->right = CHART_W - PAD_R;
    f->height = f->bottom + BOTTOM_H;
    TRY(buf_printf(
        out,
        "<figure class=\"chart\" data-kind=\"%s\"><svg xmlns=\"http://www.w3.org/2000/svg\" "
        "viewBox=\"0 0 %.0f %.0f\" role=\"img\" font-family=\"sans-serif\" "
        "font-size=\"12\"><title>",
        kind, CHART_W, f->height));
    TRY(report_escape_str(out, c->title));
    TRY(buf_printf(out,
                   "</title><rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
                   "fill=\"#fff\"/>",
                   CHART_W, f->height));
    TRY(svg_text(out, CHART_W / 2, 20, "middle", " font-size=\"15\" font-weight=\"bold\"",
                 c->title ? c->title : ""));
    if (c->n_series > 1) {
        double x = PAD_L, y = TITLE_H + 4;
        for (size_t i = 0; i < c->n_series; i++) {
            if (x + widths[i] > CHART_W - PAD_R && x > PAD_L) {
                x = PAD_L;
                y += LEGEND_ROW_H;
            }
            TRY(buf_printf(out,
                           "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>",
                           x, y, palette[i % ARRAY_LEN(palette)]));
            TRY(svg_text(out, x + 16, y + 10, "start", NULL,
                         c->series[i].name ? c->series[i].name : ""));
            x += widths[i];
        }
    }
    return 0;
}

/* Grid, tick labels and axis titles for the y axis and (when xa) a numeric x axis. */
static int frame_axes(buf *out, const report_chart *c, const frame *f, const axis *xa,
                      const axis *ya)
{
    char num[32];
    for (size_t i = 0; i < ya->n_ticks; i++) {
        double y = axis_map(ya, ya->ticks[i]);
        TRY(buf_printf(out,
                       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>",
                       f->left, f->right, y, y));
        TRY(svg_text(out, f->left - 6, y + 4, "end", NULL,
                     report_num(ya->ticks[i], num, sizeof num)));
    }
    for (size_t i = 0; xa && i < xa->n_ticks; i++) {
        double x = axis_map(xa, xa->ticks[i]);
        TRY(buf_printf(out,
                       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", x,
                       x, f->top, f->bottom));
        TRY(svg_text(out, x, f->bottom + 16, "middle", NULL,
                     report_num(xa->ticks[i], num, sizeof num)));
    }
    TRY(buf_printf(out,
                   "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                   "stroke=\"#888\"/>",
                   f->left, f->top, f->right - f->left, f->bottom - f->top));
    if (c->x_label)
        TRY(svg_text(out, (f->left + f->right) / 2, f->bottom + 40, "middle", NULL, c->x_label));
    if (c->y_label) {
        char tr[96];
        snprintf(tr, sizeof tr, " transform=\"rotate(-90 16 %.1f)\"", (f->top + f->bottom) / 2);
        TRY(svg_text(out, 16, (f->top + f->bottom) / 2, "middle", tr, c->y_label));
    }
    return 0;
}

static int frame_end(buf *out)
{
    return buf_append_str(out, "</svg></figure>\n");
}

static int no_data(buf *out, const frame *f)
{
    return svg_text(out, CHART_W / 2, (f->top + f->bottom) / 2, "middle", " fill=\"#888\"",
                    "no data");
}

/* ---------------------------------------------------------------- lines -- */

int report_line_chart(buf *out, const report_chart *c)
{
    double xmn = INFINITY, xmx = -INFINITY, ymn = INFINITY, ymx = -INFINITY;
    for (size_t s = 0; s < c->n_series; s++) {
        const report_series *se = &c->series[s];
        for (size_t i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!isfinite(x) || !isfinite(y) || (c->x_scale != REPORT_LINEAR && x <= 0))
                continue;
            xmn = MIN(xmn, x);
            xmx = MAX(xmx, x);
            ymn = MIN(ymn, y);
            ymx = MAX(ymx, y);
        }
    }
    frame f;
    TRY(frame_begin(out, c, "line", &f));
    if (!(xmn <= xmx)) {
        TRY(no_data(out, &f));
        return frame_end(out);
    }
    axis xa, ya;
    axis_fit(&xa, c->x_scale, xmn, xmx, false);
    axis_fit(&ya, REPORT_LINEAR, ymn, ymx, c->y_from_zero);
    xa.p0 = f.left;
    xa.p1 = f.right;
    ya.p0 = f.bottom;
    ya.p1 = f.top;
    TRY(frame_axes(out, c, &f, &xa, &ya));
    char nx[32], ny[32];
    for (size_t s = 0; s < c->n_series; s++) {
        const report_series *se = &c->series[s];
        const char *col = palette[s % ARRAY_LEN(palette)];
        TRY(buf_printf(out, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" d=\"", col));
        bool pen = false;
        for (size_t i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!isfinite(x) || !isfinite(y) || (c->x_scale != REPORT_LINEAR && x <= 0)) {
                pen = false;
                continue;
            }
            TRY(buf_printf(out, "%c%.1f %.1f ", pen ? 'L' : 'M', axis_map(&xa, x),
                           axis_map(&ya, y)));
            pen = true;
        }
        TRY(buf_append_str(out, "\"/>"));
        for (size_t i = 0; i < se->n; i++) {
            double x = se->x[i], y = se->y[i];
            if (!isfinite(x) || !isfinite(y) || (c->x_scale != REPORT_LINEAR && x <= 0))
                continue;
            TRY(buf_printf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>",
                           axis_map(&xa, x), axis_map(&ya, y), col));
            TRY(report_escape_str(out, se->name));
            TRY(buf_printf(out, ": %s, %s</title></circle>", report_num(x, nx, sizeof nx),
                           report_num(y, ny, sizeof ny)));
        }
    }
    return frame_end(out);
}

/* ----------------------------------------------------------------- bars -- */

/* Grouped bars: ncat groups of n_series bars; v(s, k) the height of series s in group k. */
static int bars(buf *out, const report_chart *c, const frame *f, size_t ncat,
                double (*v)(const report_chart *, const void *, size_t, size_t), const void *arg,
                const axis *xa, const char *const *cat_names)
{
    double ymx = 0;
    for (size_t s = 0; s < c->n_series; s++)
        for (size_t k = 0; k < ncat; k++) {
            double y = v(c, arg, s, k);
            if (isfinite(y))
                ymx = MAX(ymx, y);
        }
    axis ya;
    axis_fit(&ya, REPORT_LINEAR, 0, ymx > 0 ? ymx : 1, true);
    ya.p0 = f->bottom;
    ya.p1 = f->top;
    TRY(frame_axes(out, c, f, xa, &ya));
    double gw = (f->right - f->left) / (double)ncat;
    double bw = gw * (xa ? 0.96 : 0.8) / (double)MAX(c->n_series, (size_t)1);
    char num[32];
    for (size_t k = 0; k < ncat; k++) {
        double g0 = f->left + gw * (double)k + gw * (xa ? 0.02 : 0.1);
        for (size_t s = 0; s < c->n_series; s++) {
            double y = v(c, arg, s, k);
            if (!isfinite(y) || y <= 0)
                continue;
            double py = axis_map(&ya, y);
            TRY(buf_printf(out,
                           "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                           "fill=\"%s\"><title>",
                           g0 + bw * (double)s, py, bw, f->bottom - py,
                           palette[s % ARRAY_LEN(palette)]));
            TRY(report_escape_str(out, c->series[s].name));
            if (cat_names) {
                TRY(buf_append_str(out, " / "));
                TRY(report_escape_str(out, cat_names[k]));
            }
            TRY(buf_printf(out, ": %s</title></rect>", report_num(y, num, sizeof num)));
        }
        if (cat_names) {
            char lbl[40];
            snprintf(lbl, sizeof lbl, "%.18s%s", cat_names[k] ? cat_names[k] : "",
                     cat_names[k] && strlen(cat_names[k]) > 18 ? "…" : "");
            TRY(svg_text(out, f->left + gw * ((double)k + 0.5), f->bottom + 16, "middle", NULL,
                         lbl));
        }
    }
    return 0;
}

static double bar_value(const report_chart *c, const void *arg, size_t s, size_t k)
{
    (void)arg;
    return k < c->series[s].n ? c->series[s].y[k] : NAN;
}

int report_bar_chart(buf *out, const report_chart *c)
{
    if (c->n_categories == 0 || !c->categories)
        return ERR_INVAL;
    frame f;
    TRY(frame_begin(out, c, "bar", &f));
    TRY(bars(out, c, &f, c->n_categories, bar_value, NULL, NULL, c->categories));
    return frame_end(out);
}

typedef struct hist {
    size_t bins;
    double *val; // (n_series, bins): count, or percent of the series when several
} hist;

static double hist_value(const report_chart *c, const void *arg, size_t s, size_t k)
{
    (void)c;
    const hist *h = arg;
    return h->val[s * h->bins + k];
}

int report_histogram(buf *out, const report_chart *c)
{
    size_t bins = c->bins ? c->bins : 20;
    if (bins > HIST_BINS_MAX || c->n_series > 256)
        return ERR_INVAL;
    double mn = INFINITY, mx = -INFINITY;
    for (size_t s = 0; s < c->n_series; s++)
        for (size_t i = 0; i < c->series[s].n; i++) {
            double y = c->series[s].y[i];
            if (isfinite(y)) {
                mn = MIN(mn, y);
                mx = MAX(mx, y);
            }
        }
    frame f;
    TRY(frame_begin(out, c, "hist", &f));
    if (!(mn <= mx)) {
        TRY(no_data(out, &f));
        return frame_end(out);
    }
    axis xa;
    axis_fit(&xa, REPORT_LINEAR, mn, mx, false);
    xa.p0 = f.left;
    xa.p1 = f.right;
    hist h = {bins, calloc(MAX(c->n_series, (size_t)1) * bins, sizeof(double))};
    if (!h.val)
        return ERR_NOMEM;
    double w = (xa.hi - xa.lo) / (double)bins;
    for (size_t s = 0; s < c->n_series; s++) {
        size_t n_ok = 0;
        for (size_t i = 0; i < c->series[s].n; i++) {
            double y = c->series[s].y[i];
            if (!isfinite(y))
                continue;
            size_t k = (size_t)MAX(0.0, floor((y - xa.lo) / w));
            h.val[s * bins + MIN(k, bins - 1)] += 1;
            n_ok++;
        }
        if (c->n_series > 1 && n_ok)
            for (size_t k = 0; k < bins; k++)
                h.val[s * bins + k] *= 100.0 / (double)n_ok;
    }
    int rc = bars(out, c, &f, bins, hist_value, &h, &xa, NULL);
    free(h.val);
    TRY(rc);
    return frame_end(out);
}
