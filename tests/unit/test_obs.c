/* Unit tests for obs: exposition golden text, escaping, histograms, cardinality
 * cap, name validation, concurrent updates, process metrics. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "obs/obs.h"

static char *expose(obs_registry *r)
{
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(obs_expose(r, &b), 0);
    if (!b.data)
        assert_int_equal(buf_append_str(&b, ""), 0);
    return buf_steal(&b);
}

static void test_golden(void **state)
{
    (void)state;
    obs_registry *r = obs_registry_new();
    err_msg e;
    const char *req_labels[] = {"route", "method", "code"};
    obs_family *req = obs_family_new(r, OBS_COUNTER, "ferry_http_requests_total",
                                     "HTTP requests by route, method and status.", req_labels,
                                     3, NULL, 0, 64, &e);
    const char *rl[] = {"route"};
    const double bounds[] = {0.005, 0.1, 1};
    obs_family *dur = obs_family_new(r, OBS_HISTOGRAM, "ferry_http_request_duration_seconds",
                                     "Request duration.\nSecond line with \\ backslash.", rl, 1,
                                     bounds, 3, 64, &e);
    obs_family *inflight = obs_family_new(r, OBS_GAUGE, "ferry_http_in_flight",
                                          "Requests being handled.", NULL, 0, NULL, 0, 1, &e);
    obs_family *unused = obs_family_new(r, OBS_GAUGE, "ferry_unused", "Never set.", NULL, 0,
                                        NULL, 0, 1, &e);
    assert_non_null(req);
    assert_non_null(dur);
    assert_non_null(inflight);
    assert_non_null(unused);

    const char *v1[] = {"/healthz", "GET", "200"};
    const char *v2[] = {"/x\"y\\z\nw", "POST", "404"};
    obs_counter_add(obs_series_get(req, v1), 1);
    obs_counter_add(obs_series_get(req, v1), 2);
    obs_counter_add(obs_series_get(req, v2), 1);
    obs_counter_add(obs_series_get(req, v2), -5); // ignored: counters only go up
    const char *d1[] = {"/healthz"};
    obs_series *h = obs_series_get(dur, d1);
    obs_hist_observe(h, 0.001);
    obs_hist_observe(h, 0.005); // on the bound: counted in le="0.005"
    obs_hist_observe(h, 0.5);
    obs_hist_observe(h, 7);
    obs_gauge_add(obs_series_get(inflight, NULL), 3);
    obs_gauge_add(obs_series_get(inflight, NULL), -1);

    char *text = expose(r);
    const char *want =
        "# HELP ferry_http_requests_total HTTP requests by route, method and status.\n"
        "# TYPE ferry_http_requests_total counter\n"
        "ferry_http_requests_total{route=\"/healthz\",method=\"GET\",code=\"200\"} 3\n"
        "ferry_http_requests_total{route=\"/x\\\"y\\\\z\\nw\",method=\"POST\",code=\"404\"} 1\n"
        "# HELP ferry_http_request_duration_seconds Request duration.\\nSecond line with \\\\ "
        "backslash.\n"
        "# TYPE ferry_http_request_duration_seconds histogram\n"
        "ferry_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} 2\n"
        "ferry_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.1\"} 2\n"
        "ferry_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"1\"} 3\n"
        "ferry_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 4\n"
        "ferry_http_request_duration_seconds_sum{route=\"/healthz\"} 7.506\n"
        "ferry_http_request_duration_seconds_count{route=\"/healthz\"} 4\n"
        "# HELP ferry_http_in_flight Requests being handled.\n"
        "# TYPE ferry_http_in_flight gauge\n"
        "ferry_http_in_flight 2\n";
    assert_string_equal(text, want);
    free(text);
    obs_registry_free(r);
}

static void test_numbers(void **state)
{
    (void)state;
    struct {
        double v;
        const char *s;
    } cases[] = {{0, "0"},           {-3, "-3"},         {0.1, "0.1"},  {2.5e-7, "2.5e-07"},
                 {1e20, "1e+20"},    {1.0 / 3, "0.333333333333333315"}, {INFINITY, "+Inf"},
                 {-INFINITY, "-Inf"}, {NAN, "NaN"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b;
        buf_init(&b, 64);
        assert_int_equal(obs_format_number(&b, cases[i].v), 0);
        if (i == 5) // shortest round-trip form of 1/3: 17 digits
            assert_true(strtod(b.data, NULL) == 1.0 / 3);
        else
            assert_string_equal(b.data, cases[i].s);
        buf_deinit(&b);
    }
}

static void test_bad_families(void **state)
{
    (void)state;
    obs_registry *r = obs_registry_new();
    err_msg e;
    const char *bad_label[] = {"9x"};
    const char *reserved[] = {"__x"};
    const char *le[] = {"le"};
    const double down[] = {1, 0.5};
    assert_null(obs_family_new(r, OBS_COUNTER, "1abc", "", NULL, 0, NULL, 0, 1, &e));
    assert_int_equal(e.code, ERR_INVAL);
    assert_null(obs_family_new(r, OBS_COUNTER, "a-b", "", NULL, 0, NULL, 0, 1, &e));
    assert_null(obs_family_new(r, OBS_COUNTER, "ok", "", bad_label, 1, NULL, 0, 1, &e));
    assert_null(obs_family_new(r, OBS_COUNTER, "ok", "", reserved, 1, NULL, 0, 1, &e));
    assert_null(obs_family_new(r, OBS_HISTOGRAM, "ok", "", le, 1, down, 1, 1, &e));
    assert_null(obs_family_new(r, OBS_HISTOGRAM, "ok", "", NULL, 0, down, 2, 1, &e));
    assert_null(obs_family_new(r, OBS_HISTOGRAM, "ok", "", NULL, 0, NULL, 0, 1, &e));
    assert_null(obs_family_new(r, OBS_GAUGE, "ok", "", NULL, 0, down, 1, 1, &e));
    assert_null(obs_family_new(r, OBS_GAUGE, "ok", "", NULL, 0, NULL, 0, 0, &e));
    assert_non_null(obs_family_new(r, OBS_GAUGE, "ok", "", NULL, 0, NULL, 0, 1, &e));
    assert_null(obs_family_new(r, OBS_GAUGE, "ok", "", NULL, 0, NULL, 0, 1, &e));
    assert_non_null(strstr(e.text, "twice"));
    obs_registry_free(r);
}

static void test_cardinality_cap(void **state)
{
    (void)state;
    obs_registry *r = obs_registry_new();
    err_msg e;
    const char *l[] = {"k"};
    obs_family *f = obs_family_new(r, OBS_COUNTER, "c_total", "h", l, 1, NULL, 0, 3, &e);
    char v[16];
    for (int i = 0; i < 3; i++) {
        snprintf(v, sizeof v, "v%d", i);
        const char *vv[] = {v};
        assert_non_null(obs_series_get(f, vv));
    }
    const char *more[] = {"v3"};
    assert_null(obs_series_get(f, more));
    obs_counter_add(obs_series_get(f, more), 1); // a no-op, not a crash
    const char *old[] = {"v1"};
    assert_non_null(obs_series_get(f, old)); // existing series still found
    /* A value longer than the cap is cut and still maps to one series. */
    char longv[OBS_LABEL_VALUE_MAX + 50];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    obs_family *g = obs_family_new(r, OBS_GAUGE, "g", "h", l, 1, NULL, 0, 4, &e);
    const char *lv[] = {longv};
    obs_series *s1 = obs_series_get(g, lv);
    assert_non_null(s1);
    assert_ptr_equal(obs_series_get(g, lv), s1);
    obs_registry_free(r);
}

typedef struct worker_arg {
    obs_family *f;
    obs_family *h;
    int id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    char code[8];
    for (int i = 0; i < 20000; i++) {
        snprintf(code, sizeof code, "%d", 200 + i % 5);
        const char *v[] = {code};
        obs_counter_add(obs_series_get(a->f, v), 1);
        obs_hist_observe(obs_series_get(a->h, NULL), 0.5);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    obs_registry *r = obs_registry_new();
    err_msg e;
    const char *l[] = {"code"};
    const double b[] = {1};
    worker_arg a = {obs_family_new(r, OBS_COUNTER, "c_total", "h", l, 1, NULL, 0, 16, &e),
                    obs_family_new(r, OBS_HISTOGRAM, "h", "h", NULL, 0, b, 1, 1, &e), 0};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, &a);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    double total = 0;
    for (int c = 200; c < 205; c++) {
        char code[8];
        snprintf(code, sizeof code, "%d", c);
        const char *v[] = {code};
        total += obs_value(obs_series_get(a.f, v));
    }
    assert_true(total == 80000.0);
    char *text = expose(r);
    assert_non_null(strstr(text, "h_count 80000\n"));
    assert_non_null(strstr(text, "h_sum 40000\n"));
    free(text);
    obs_registry_free(r);
}

static void test_process(void **state)
{
    (void)state;
    obs_registry *r = obs_registry_new();
    err_msg e;
    assert_int_equal(obs_register_process(r, &e), 0);
    char *text = expose(r);
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(text, "process_open_fds "));
    const char *p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL) > 1e5);
    p = strstr(text, "\nprocess_start_time_seconds ");
    assert_non_null(p);
    assert_true(strtod(p + strlen("\nprocess_start_time_seconds "), NULL) > 1.6e9);
    free(text);
    obs_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),          cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bad_families),    cmocka_unit_test(test_cardinality_cap),
        cmocka_unit_test(test_concurrent),      cmocka_unit_test(test_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
