/* Unit tests for cli/report: escaping, number formatting, tables, and the
 * SVG charts (markers per finite point, NaN gaps, log2 ticks, histogram bin
 * counts and shares, the buf ceiling). The rendering itself is checked in a
 * browser by tests/integration/test_bench_*.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "cli/report.h"

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_escape_and_num(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(report_escape_str(&b, "<a href=\"x\">'&'</a>"), 0);
    assert_string_equal(b.data, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    char n[32];
    assert_string_equal(report_num(NAN, n, sizeof n), "-");
    assert_string_equal(report_num(0, n, sizeof n), "0");
    assert_string_equal(report_num(0.01234, n, sizeof n), "0.0123");
    assert_string_equal(report_num(1.234, n, sizeof n), "1.23");
    assert_string_equal(report_num(12.34, n, sizeof n), "12.3");
    assert_string_equal(report_num(1234.4, n, sizeof n), "1234");
    assert_string_equal(report_num(-5e10, n, sizeof n), "-5e+10");
    assert_string_equal(report_num(64, n, sizeof n), "64");
    buf_deinit(&b);
}

static void test_document_and_table(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(report_begin(&b, "run <1>"), 0);
    assert_int_equal(report_heading(&b, 2, "a&b"), 0);
    assert_int_equal(report_heading(&b, 5, "x"), ERR_INVAL);
    assert_int_equal(report_paragraph(&b, "note", true), 0);
    assert_int_equal(report_pre(&b, "ferry bench --url 'x'"), 0);
    const char *h[] = {"metric", "value"};
    assert_int_equal(report_table_begin(&b, h, 2), 0);
    const char *r1[] = {"ttft", "12.5"};
    const char *r2[] = {"!failed <case>", NULL};
    assert_int_equal(report_table_row(&b, r1, 2), 0);
    assert_int_equal(report_table_row(&b, r2, 2), 0);
    assert_int_equal(report_table_end(&b), 0);
    assert_int_equal(report_end(&b), 0);
    assert_non_null(strstr(b.data, "<title>run &lt;1&gt;</title>"));
    assert_non_null(strstr(b.data, "<h2>a&amp;b</h2>"));
    assert_non_null(strstr(b.data, "<td>ttft</td><td class=\"n\">12.5</td>"));
    assert_non_null(strstr(b.data, "<tr class=\"hl\"><td>failed &lt;case&gt;</td><td></td>"));
    assert_non_null(strstr(b.data, "ferry bench --url &#39;x&#39;"));
    assert_true(strstr(b.data, "</html>") != NULL && strstr(b.data, "<script") == NULL);
    buf_deinit(&b);
}

static void test_line_chart(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    double x[] = {1, 4, 16, 64};
    double y1[] = {10, 20, NAN, 80};
    double y2[] = {5, 6, 7, 8};
    report_series s[] = {{"p50 <ms>", x, y1, 4}, {"p99", x, y2, 4}};
    report_chart c = {.title = "latency vs load",
                      .x_label = "concurrency",
                      .y_label = "ms",
                      .series = s,
                      .n_series = 2,
                      .x_scale = REPORT_LOG2,
                      .y_from_zero = true};
    assert_int_equal(report_line_chart(&b, &c), 0);
    assert_int_equal(count(b.data, "<circle"), 7); // the NaN point has no marker
    assert_int_equal(count(b.data, "<path"), 2);
    /* the NaN breaks the first line into two pieces: two M commands */
    const char *p = strstr(b.data, "<path");
    const char *e = strstr(p, "/>");
    size_t ms = 0;
    for (const char *q = p; q < e; q++)
        ms += *q == 'M';
    assert_int_equal(ms, 2);
    /* log2 ticks at 1 2 4 ... 64, legend entries escaped */
    assert_non_null(strstr(b.data, ">64</text>"));
    assert_non_null(strstr(b.data, ">32</text>"));
    assert_non_null(strstr(b.data, "p50 &lt;ms&gt;"));
    assert_non_null(strstr(b.data, "data-kind=\"line\""));
    /* no finite point: a "no data" chart, still valid */
    buf_reset(&b);
    double yn[] = {NAN};
    report_series sn = {"x", x, yn, 1};
    report_chart cn = {.title = "empty", .series = &sn, .n_series = 1};
    assert_int_equal(report_line_chart(&b, &cn), 0);
    assert_non_null(strstr(b.data, "no data"));
    assert_int_equal(count(b.data, "<circle"), 0);
    buf_deinit(&b);
}

static void test_bars_and_histogram(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    const char *cats[] = {"ok", "timeout", "http"};
    double v[] = {10, 0, 3};
    report_series s = {"run A", NULL, v, 3};
    report_chart c = {
        .title = "errors", .series = &s, .n_series = 1, .categories = cats, .n_categories = 3};
    assert_int_equal(report_bar_chart(&b, &c), 0);
    assert_int_equal(count(b.data, "<rect x"), 4); // background, plot box, 2 bars (0 has none)
    assert_non_null(strstr(b.data, "run A / http: 3</title>"));
    c.n_categories = 0;
    assert_int_equal(report_bar_chart(&b, &c), ERR_INVAL);

    /* 10 samples over 5 bins [0,10): 2 per bin */
    buf_reset(&b);
    double smp[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9.5};
    report_series hs = {"ttft", NULL, smp, 10};
    report_chart hc = {.title = "TTFT", .series = &hs, .n_series = 1, .bins = 5};
    assert_int_equal(report_histogram(&b, &hc), 0);
    assert_int_equal(count(b.data, "ttft: 2</title>"), 5);
    /* two series: shares in percent */
    buf_reset(&b);
    double smp2[] = {0, 0, 0, 9.5};
    report_series two[] = {{"a", NULL, smp, 10}, {"b", NULL, smp2, 4}};
    hc.series = two;
    hc.n_series = 2;
    assert_int_equal(report_histogram(&b, &hc), 0);
    assert_int_equal(count(b.data, "a: 20</title>"), 5);
    assert_int_equal(count(b.data, "b: 75</title>"), 1);
    assert_int_equal(count(b.data, "b: 25</title>"), 1);
    hc.bins = 1000;
    assert_int_equal(report_histogram(&b, &hc), ERR_INVAL);
    buf_deinit(&b);
}

static void test_ceiling(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 600);
    double x[] = {1, 2, 3}, y[] = {1, 2, 3};
    report_series s = {"s", x, y, 3};
    report_chart c = {.title = "t", .series = &s, .n_series = 1};
    assert_int_equal(report_line_chart(&b, &c), ERR_TOO_LARGE);
    buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_and_num), cmocka_unit_test(test_document_and_table),
        cmocka_unit_test(test_line_chart),     cmocka_unit_test(test_bars_and_histogram),
        cmocka_unit_test(test_ceiling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
