/*
 * cli/report — self-contained HTML reports with inline SVG charts, for the
 * decision tools (ferry bench, ferry eval). A report is appended to a
 * caller-owned buf (base/buf.h, so it has a ceiling): report_begin, then any
 * headings, paragraphs, tables and charts, then report_end. The page needs
 * nothing at view time: CSS is inline, charts are SVG drawn here, there is no
 * script. Every text that comes from data (titles, labels, cells, series
 * names) is escaped for HTML.
 *
 * Charts:
 *   report_line_chart   y over x, several series overlaid (one colour each,
 *                       markers with a <title> tooltip), linear or log2/log10 x
 *   report_bar_chart    categories x series grouped bars (counts, shares)
 *   report_histogram    samples of several series binned on shared bins and
 *                       drawn as grouped bars (a distribution, e.g. TTFT)
 * Values that are NaN or infinite are skipped (a gap, no marker). Axes get
 * "nice" ticks (1, 2, 2.5, 5 x 10^k). Each chart is a
 * <figure class="chart" data-kind="line|bar|hist"> holding one <svg>.
 *
 * Every function returns 0 or the buf error (ERR_TOO_LARGE, ERR_NOMEM), or
 * ERR_INVAL for a malformed chart description. Thread: the caller's.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* Appends s[0..n) escaped for HTML text and attribute values (& < > " '). */
int report_escape(buf *out, const char *s, size_t n) MUST_USE;
/* report_escape of a NUL-terminated string (NULL writes nothing). */
int report_escape_str(buf *out, const char *s) MUST_USE;

/* <!DOCTYPE html>, <head> with the title and the style sheet, <body>, <h1>. */
int report_begin(buf *out, const char *title) MUST_USE;
/* Closes the body and the document. */
int report_end(buf *out) MUST_USE;
/* <h2>/<h3> (level 2 or 3) with an escaped text. */
int report_heading(buf *out, int level, const char *text) MUST_USE;
/* <p> with an escaped text; class "note" renders it smaller and grey when is_note. */
int report_paragraph(buf *out, const char *text, bool is_note) MUST_USE;
/* <pre> with an escaped text (command lines, JSON). */
int report_pre(buf *out, const char *text) MUST_USE;

/*
 * Tables: report_table_begin writes the header row (n columns), each
 * report_table_row one row of n cells (NULL cells are empty); cells that look
 * like numbers are right-aligned. A row whose first cell starts with "!" is
 * highlighted (the "!" is not shown): failures, regressions.
 */
int report_table_begin(buf *out, const char *const *headers, size_t n) MUST_USE;
int report_table_row(buf *out, const char *const *cells, size_t n) MUST_USE;
int report_table_end(buf *out) MUST_USE;

typedef struct report_series {
    const char *name; // legend text
    const double *x;  // line charts: n x values; histograms: unused
    const double *y;  // line charts: n y values; bars: one per category; histograms: samples
    size_t n;
} report_series;

typedef enum report_scale {
    REPORT_LINEAR = 0,
    REPORT_LOG2,  // ticks at powers of 2 (concurrency 1, 2, 4, ...); x must be > 0
    REPORT_LOG10, // ticks at powers of 10; x must be > 0
} report_scale;

typedef struct report_chart {
    const char *title;
    const char *x_label;
    const char *y_label;
    const report_series *series;
    size_t n_series;
    report_scale x_scale;          // line charts
    const char *const *categories; // bar charts: n_categories names
    size_t n_categories;
    size_t bins;      // histograms: number of bins (0: 20)
    bool y_from_zero; // line charts: the y axis starts at 0
} report_chart;

int report_line_chart(buf *out, const report_chart *c) MUST_USE;
int report_bar_chart(buf *out, const report_chart *c) MUST_USE;
int report_histogram(buf *out, const report_chart *c) MUST_USE;

/*
 * Formats v with about 3 significant digits and no exponent for the usual
 * range ("0.0123", "12.3", "1234", "1.2e+09" past 1e9) into out (>= 24
 * bytes); "-" for NaN. Returns out.
 */
char *report_num(double v, char *out, size_t n);
