/*
 * http/router — method + path -> route. Patterns are split into segments once
 * at construction; matching walks the request path segment by segment
 * against each route (linear: tens of routes, a few segments each).
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "http/http.h"

typedef struct seg {
    str text;   // literal text, or the param name without braces
    bool param; // {name}
} seg;

typedef struct compiled {
    const http_route *route;
    size_t n_segs;
    seg segs[HTTP_SEGMENTS_MAX];
    size_t n_literal;
} compiled;

struct http_router {
    size_t n;
    compiled *c; // (n)
};

/* Splits "/a/b/" into "a", "b", "" (a trailing slash is a distinct empty segment). */
static int split(str path, str *out, size_t max, size_t *n)
{
    *n = 0;
    if (path.n == 0 || path.p[0] != '/')
        return ERR_INVAL;
    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < path.n && path.p[j] != '/')
            j++;
        if (*n >= max)
            return ERR_TOO_LARGE;
        out[(*n)++] = (str){path.p + i, j - i};
        if (j >= path.n)
            return 0;
        i = j + 1;
    }
}

static bool same_shape(const compiled *a, const compiled *b)
{
    if (a->n_segs != b->n_segs || strcmp(a->route->method, b->route->method) != 0)
        return false;
    for (size_t i = 0; i < a->n_segs; i++) {
        if (a->segs[i].param != b->segs[i].param)
            return false;
        if (!a->segs[i].param && !str_eq(a->segs[i].text, b->segs[i].text))
            return false;
    }
    return true;
}

http_router *http_router_new(const http_route *routes, size_t n, err_msg *e)
{
    if (n > HTTP_ROUTES_MAX) {
        err_set(e, ERR_INVAL, "router: %zu routes, the limit is %d", n, HTTP_ROUTES_MAX);
        return NULL;
    }
    http_router *rt = calloc(1, sizeof *rt);
    if (!rt || (n && !(rt->c = calloc(n, sizeof *rt->c)))) {
        free(rt);
        err_set(e, ERR_NOMEM, "router: out of memory");
        return NULL;
    }
    rt->n = n;
    for (size_t i = 0; i < n; i++) {
        compiled *c = &rt->c[i];
        c->route = &routes[i];
        str parts[HTTP_SEGMENTS_MAX];
        size_t np = 0, nparams = 0;
        if (!routes[i].method || !routes[i].fn ||
            split(str_from(routes[i].pattern), parts, HTTP_SEGMENTS_MAX, &np) != 0) {
            err_set(e, ERR_INVAL, "router: route \"%s\" is not a valid pattern",
                    routes[i].pattern ? routes[i].pattern : "");
            goto fail;
        }
        c->n_segs = np;
        for (size_t k = 0; k < np; k++) {
            str p = parts[k];
            if (p.n >= 2 && p.p[0] == '{' && p.p[p.n - 1] == '}') {
                if (p.n == 2 || ++nparams > HTTP_PARAMS_MAX) {
                    err_set(e, ERR_INVAL, "router: route \"%s\" has a bad {param}",
                            routes[i].pattern);
                    goto fail;
                }
                c->segs[k] = (seg){{p.p + 1, p.n - 2}, true};
            } else {
                if (memchr(p.p, '{', p.n) || memchr(p.p, '}', p.n)) {
                    err_set(e, ERR_INVAL, "router: route \"%s\": braces must enclose a whole segment",
                            routes[i].pattern);
                    goto fail;
                }
                c->segs[k] = (seg){p, false};
                c->n_literal++;
            }
        }
        for (size_t k = 0; k < i; k++)
            if (same_shape(&rt->c[k], c)) {
                err_set(e, ERR_INVAL, "router: %s %s is declared twice (same shape as %s)",
                        routes[i].method, routes[i].pattern, rt->c[k].route->pattern);
                goto fail;
            }
    }
    return rt;
fail:
    http_router_free(rt);
    return NULL;
}

void http_router_free(http_router *rt)
{
    if (!rt)
        return;
    free(rt->c);
    free(rt);
}

static bool path_matches(const compiled *c, const str *parts, size_t np)
{
    if (c->n_segs != np)
        return false;
    for (size_t i = 0; i < np; i++) {
        if (c->segs[i].param) {
            if (parts[i].n == 0)
                return false; // {param} never matches an empty segment
        } else if (!str_eq(c->segs[i].text, parts[i])) {
            return false;
        }
    }
    return true;
}

static bool method_ok(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

static void add_allow(http_match *m, const char *method)
{
    /* Keep the list unique; it is short. */
    size_t ml = strlen(method);
    for (const char *p = m->allow; (p = strstr(p, method)); p += ml)
        if ((p == m->allow || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0'))
            return;
    size_t n = strlen(m->allow);
    if (n + ml + 3 >= sizeof m->allow)
        return;
    if (n) {
        memcpy(m->allow + n, ", ", 2);
        n += 2;
    }
    memcpy(m->allow + n, method, ml + 1);
}

int http_router_match(const http_router *rt, const char *method, str path, http_match *m)
{
    memset(m, 0, sizeof *m);
    str parts[HTTP_SEGMENTS_MAX];
    size_t np = 0;
    if (split(path, parts, HTTP_SEGMENTS_MAX, &np) != 0)
        return ERR_NOT_FOUND;
    const compiled *best = NULL;
    bool path_known = false;
    for (size_t i = 0; i < rt->n; i++) {
        const compiled *c = &rt->c[i];
        if (!path_matches(c, parts, np))
            continue;
        path_known = true;
        if (method_ok(c->route->method, method)) {
            if (!best || c->n_literal > best->n_literal)
                best = c;
        }
    }
    if (!best) {
        if (!path_known)
            return ERR_NOT_FOUND;
        /* Allow lists the methods of every route with this path shape, in
         * declaration order, with HEAD after GET. */
        for (size_t i = 0; i < rt->n; i++)
            if (path_matches(&rt->c[i], parts, np)) {
                add_allow(m, rt->c[i].route->method);
                if (strcmp(rt->c[i].route->method, "GET") == 0)
                    add_allow(m, "HEAD");
            }
        return ERR_METHOD;
    }
    m->route = best->route;
    for (size_t i = 0; i < np; i++)
        if (best->segs[i].param) {
            m->names[m->n_params] = best->segs[i].text;
            m->values[m->n_params] = parts[i];
            m->n_params++;
        }
    return 0;
}
