// FUZZ_MODULES: base
// FUZZ_SOURCES: src/http/head.c src/http/router.c
// FUZZ_SECONDS: 10
/*
 * The HTTP server's two parsers of untrusted bytes: the strict pre-check of a
 * first request head (+ chunked framing in view) that the front thread runs on
 * every new connection, and the router's path matcher. Input: the bytes of a
 * request (the head check sees every split of it as "more may come" and the
 * whole as the complete view); the request line's method and path also go to
 * the router over a table shaped like ferry's. Checks: results in range; an
 * error always has a status code and a message; PASS gives a head length
 * inside the input; a complete view never answers MORE; matched params are
 * slices of the path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "http/http.h"

static int noop(http_req *r, void *ctx)
{
    (void)r;
    (void)ctx;
    return 0;
}

static const http_route ROUTES[] = {
    {"GET", "/healthz", noop, NULL, HTTP_ROUTE_PROBE},
    {"GET", "/v1/models", noop, NULL, 0},
    {"GET", "/v1/models/{model}", noop, NULL, 0},
    {"POST", "/v1/chat/completions", noop, NULL, HTTP_ROUTE_JSON},
    {"POST", "/v1/collections", noop, NULL, HTTP_ROUTE_JSON},
    {"GET", "/v1/collections/{c}", noop, NULL, 0},
    {"DELETE", "/v1/collections/{c}", noop, NULL, 0},
    {"POST", "/v1/collections/{c}/documents", noop, NULL, HTTP_ROUTE_JSON},
    {"GET", "/v1/collections/{c}/documents/{id}", noop, NULL, 0},
    {"DELETE", "/v1/collections/{c}/documents/{id}", noop, NULL, 0},
    {"GET", "/v1/collections/list", noop, NULL, 0},
};

static void check_head(const char *p, size_t n, bool is_complete)
{
    static const http_head_limits lim = {8192, 1u << 20};
    http_head h;
    memset(&h, 0xa5, sizeof h);
    int rc = http_head_check(p, n, is_complete, &lim, &h);
    if (rc == HTTP_HEAD_ERROR) {
        if (h.code >= 0 || err_http_status(h.code) < 400 || h.msg[0] == '\0' ||
            !memchr(h.msg, '\0', sizeof h.msg))
            abort();
    } else if (rc == HTTP_HEAD_PASS) {
        if (h.head_bytes > n || h.head_bytes > lim.max_header_bytes ||
            !memchr(h.method, '\0', sizeof h.method) || !memchr(h.path, '\0', sizeof h.path))
            abort();
        if (h.has_length && h.content_length > lim.max_body_bytes)
            abort();
    } else if (rc != HTTP_HEAD_MORE || is_complete) {
        abort();
    }
}

static void check_route(const http_router *rt, const char *p, size_t n)
{
    // "METHOD SP path ..." -> method and path up to '?', SP or the end
    const char *sp = memchr(p, ' ', n < 16 ? n : 16);
    if (!sp)
        return;
    char method[17];
    size_t ml = (size_t)(sp - p);
    memcpy(method, p, ml);
    method[ml] = '\0';
    const char *path = sp + 1;
    size_t pl = 0;
    while (path + pl < p + n && path[pl] != ' ' && path[pl] != '?' && path[pl] != '\r')
        pl++;
    http_match m;
    int rc = http_router_match(rt, method, (str){path, pl}, &m);
    if (rc == 0) {
        if (!m.route || m.n_params > HTTP_PARAMS_MAX)
            abort();
        for (size_t i = 0; i < m.n_params; i++)
            if (m.values[i].p < path || m.values[i].p + m.values[i].n > path + pl)
                abort();
    } else if (rc == ERR_METHOD) {
        if (m.allow[0] == '\0' || !memchr(m.allow, '\0', sizeof m.allow))
            abort();
    } else if (rc != ERR_NOT_FOUND) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_router *rt;
    if (!rt) {
        err_msg e;
        rt = http_router_new(ROUTES, sizeof ROUTES / sizeof ROUTES[0], &e);
        if (!rt)
            abort();
    }
    if (size > 32 * 1024)
        return 0;
    char *p = malloc(size ? size : 1); // exact size: ASan sees any read past the end
    if (!p)
        return 0;
    memcpy(p, data, size);
    check_head(p, size, true);
    check_head(p, size, false);
    // a few prefixes, as the front thread sees the bytes arrive
    for (size_t k = 1; k < 4 && size > k; k++)
        check_head(p, size * k / 4, false);
    check_route(rt, p, size);
    free(p);
    return 0;
}
