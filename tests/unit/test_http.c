/* Unit tests for http: the router (literal vs {param}, 404 vs 405 and Allow,
 * HEAD, refused tables) and the error body shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "http/http.h"

static int h(http_req *r, void *ctx)
{
    (void)r;
    (void)ctx;
    return 0;
}

static void test_router(void **state)
{
    (void)state;
    static const http_route routes[] = {
        {"GET", "/healthz", h, NULL, 0},
        {"GET", "/v1/models", h, NULL, 0},
        {"GET", "/v1/models/{model}", h, NULL, 0},
        {"DELETE", "/v1/models/{model}", h, NULL, 0},
        {"GET", "/v1/models/default", h, NULL, 0},
        {"POST", "/v1/collections/{c}/docs/{doc}", h, NULL, HTTP_ROUTE_JSON},
    };
    err_msg e;
    http_router *rt = http_router_new(routes, 6, &e);
    assert_non_null(rt);
    http_match m;
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/healthz"), &m), 0);
    assert_ptr_equal(m.route, &routes[0]);
    assert_int_equal(http_router_match(rt, "HEAD", STR_LIT("/healthz"), &m), 0);
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/v1/models/abc"), &m), 0);
    assert_ptr_equal(m.route, &routes[2]);
    assert_int_equal(m.n_params, 1);
    assert_true(str_eq_cstr(m.names[0], "model") && str_eq_cstr(m.values[0], "abc"));
    /* the literal route beats the {param} one whatever the declaration order */
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/v1/models/default"), &m), 0);
    assert_ptr_equal(m.route, &routes[4]);
    assert_int_equal(http_router_match(rt, "POST", STR_LIT("/v1/collections/kb/docs/7"), &m), 0);
    assert_int_equal(m.n_params, 2);
    assert_true(str_eq_cstr(m.values[0], "kb") && str_eq_cstr(m.values[1], "7"));
    /* 404s: unknown, trailing slash, empty param, prefix, too deep */
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/nope"), &m), ERR_NOT_FOUND);
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/healthz/"), &m), ERR_NOT_FOUND);
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/v1/models/"), &m), ERR_NOT_FOUND);
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/v1"), &m), ERR_NOT_FOUND);
    assert_int_equal(http_router_match(rt, "GET", STR_LIT("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q"), &m),
                     ERR_NOT_FOUND);
    assert_int_equal(http_router_match(rt, "GET", STR_LIT(""), &m), ERR_NOT_FOUND);
    /* 405 lists every method of the path, HEAD after GET */
    assert_int_equal(http_router_match(rt, "POST", STR_LIT("/healthz"), &m), ERR_METHOD);
    assert_string_equal(m.allow, "GET, HEAD");
    assert_int_equal(http_router_match(rt, "PUT", STR_LIT("/v1/models/x"), &m), ERR_METHOD);
    assert_string_equal(m.allow, "GET, HEAD, DELETE");
    http_router_free(rt);
}

static void test_router_refuses(void **state)
{
    (void)state;
    err_msg e;
    static const http_route dup[] = {{"GET", "/a/{x}", h, NULL, 0}, {"GET", "/a/{y}", h, NULL, 0}};
    assert_null(http_router_new(dup, 2, &e));
    assert_non_null(strstr(e.text, "twice"));
    static const http_route bad1[] = {{"GET", "nope", h, NULL, 0}};
    assert_null(http_router_new(bad1, 1, &e));
    static const http_route bad2[] = {{"GET", "/a{x}", h, NULL, 0}};
    assert_null(http_router_new(bad2, 1, &e));
    static const http_route bad3[] = {{"GET", "/a/{}", h, NULL, 0}};
    assert_null(http_router_new(bad3, 1, &e));
    static const http_route bad4[] = {{"GET", "/a", NULL, NULL, 0}};
    assert_null(http_router_new(bad4, 1, &e));
    static const http_route ok[] = {{"GET", "/a/{x}", h, NULL, 0}, {"POST", "/a/{y}", h, NULL, 0}};
    http_router *rt = http_router_new(ok, 2, &e);
    assert_non_null(rt);
    http_router_free(rt);
}

static void test_error_json(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(http_error_json(&b, ERR_TOO_LARGE, "body \"x\" too big\n", "messages", NULL),
                     0);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"body \\\"x\\\" too big\\n\","
                                "\"type\":\"invalid_request_error\",\"param\":\"messages\","
                                "\"code\":\"too_large\"}}");
    buf_reset(&b);
    assert_int_equal(http_error_json(&b, ERR_RATE_LIMIT, "slow down", NULL, "rpm"), 0);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"slow down\",\"type\":"
                                "\"rate_limit_error\",\"param\":null,\"code\":\"rpm\"}}");
    buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_router),
                                       cmocka_unit_test(test_router_refuses),
                                       cmocka_unit_test(test_error_json)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
