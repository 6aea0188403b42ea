/*
 * http/head — the strict pre-check of a request's head (and of a chunked
 * body's framing, as far as it is in view) that the front (front.c) runs on
 * bytes it peeks from a new connection before libmicrohttpd reads them.
 *
 * Why: libmicrohttpd answers malformed requests itself, with HTML bodies or
 * by closing silently (garbage request lines, bad versions, header lines
 * without a colon, oversized heads, bad Content-Length, broken chunked
 * framing). Whatever this check refuses is answered by the front with the
 * server's JSON error instead; whatever it passes is well-formed as far as
 * it could see, so libmicrohttpd has nothing to refuse there.
 *
 * Grammar (RFC 9112), with the tolerances libmicrohttpd has too:
 *   head          = *( CRLF ) request-line *( field-line ) CRLF
 *   request-line  = method SP request-target SP HTTP-version CRLF
 *   method        = 1*32tchar
 *   request-target= 1*( %x21-7E )
 *   HTTP-version  = "HTTP/" DIGIT "." DIGIT   (1.0 and 1.1 served, other -> 505)
 *   field-line    = field-name ":" OWS field-value OWS
 *   field-name    = 1*tchar ; field-value = *( HTAB / SP / %x21-7E / %x80-FF )
 *   chunked-body  = *chunk last-chunk trailer-section CRLF
 *   chunk         = 1*16HEXDIG [ chunk-ext ] CRLF chunk-data CRLF
 * A bare LF ends a line as CRLF does; a CR anywhere else, a NUL or another
 * control character is an error; obs-fold (a line starting with SP/HTAB) is
 * refused with 400, as RFC 9112 section 5.2 allows.
 */
#include <stdio.h>
#include <string.h>

#include "http/http.h"

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_value_char(unsigned char c)
{
    return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int fail(http_head *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(http_head *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->msg, sizeof h->msg, fmt, ap);
    va_end(ap);
    h->code = code;
    return HTTP_HEAD_ERROR;
}

/* Finds the line at p[*i..n): returns 1 with [*ls, *ll) the line without its
 * CRLF/LF and *i past it, 0 when no LF is in view yet, -1 on a stray CR. */
static int next_line(const char *p, size_t n, size_t *i, size_t *ls, size_t *ll)
{
    const char *lf = memchr(p + *i, '\n', n - *i);
    if (!lf)
        return 0;
    size_t end = (size_t)(lf - p);
    size_t len = end - *i;
    if (len && p[end - 1] == '\r')
        len--;
    if (memchr(p + *i, '\r', len))
        return -1;
    *ls = *i;
    *ll = len;
    *i = end + 1;
    return 1;
}

static bool name_is(const char *p, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

static void trim(const char **v, size_t *n)
{
    while (*n && (**v == ' ' || **v == '\t'))
        (*v)++, (*n)--;
    while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

static int request_line(http_head *h, const char *p, size_t n)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p || sp1 - p > 32)
        return fail(h, ERR_FORMAT, "malformed request line: no method");
    for (const char *c = p; c < sp1; c++)
        if (!is_tchar((unsigned char)*c))
            return fail(h, ERR_FORMAT, "malformed request line: bad method");
    memcpy(h->method, p, (size_t)(sp1 - p));
    h->method[sp1 - p] = '\0';
    const char *t = sp1 + 1, *end = p + n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t)
        return fail(h, ERR_FORMAT, "malformed request line: no target or version");
    for (const char *c = t; c < sp2; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
            return fail(h, ERR_FORMAT, "malformed request line: bad character in the target");
    size_t tn = MIN((size_t)(sp2 - t), sizeof h->path - 1);
    memcpy(h->path, t, tn);
    h->path[tn] = '\0';
    const char *v = sp2 + 1;
    size_t vn = (size_t)(end - v);
    if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return fail(h, ERR_FORMAT, "malformed request line: bad HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(h, ERR_HTTP_VERSION, "HTTP/%c.%c is not supported; use HTTP/1.1", v[5],
                    v[7]);
    h->is_http10 = v[7] == '0';
    return 0;
}

/* Keeps [A-Za-z0-9._:/+=@-] of v, at most HTTP_REQUEST_ID_MAX chars. */
static void keep_id(http_head *h, const char *v, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < HTTP_REQUEST_ID_MAX; i++) {
        char c = v[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr("._:/+=@-", c)))
            h->request_id[k++] = c;
    }
    h->request_id[k] = '\0';
}

static int field_line(http_head *h, const char *p, size_t n, const http_head_limits *lim)
{
    if (n && (p[0] == ' ' || p[0] == '\t'))
        return fail(h, ERR_FORMAT, "folded header lines (obs-fold) are not accepted");
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return fail(h, ERR_FORMAT, "malformed header line: no field name and colon");
    for (const char *c = p; c < colon; c++)
        if (!is_tchar((unsigned char)*c))
            return fail(h, ERR_FORMAT, "malformed header line: bad character in the field name");
    const char *v = colon + 1;
    size_t vn = (size_t)(p + n - v);
    for (size_t i = 0; i < vn; i++)
        if (!is_value_char((unsigned char)v[i]))
            return fail(h, ERR_FORMAT, "malformed header line: control character in a value");
    trim(&v, &vn);
    size_t nn = (size_t)(colon - p);
    if (name_is(p, nn, "Content-Length")) {
        uint64_t x = 0;
        bool over = false;
        if (vn == 0)
            return fail(h, ERR_FORMAT, "Content-Length is not a number");
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9')
                return fail(h, ERR_FORMAT, "Content-Length is not a number");
            if (x > (UINT64_MAX - 9) / 10)
                over = true;
            else
                x = x * 10 + (uint64_t)(v[i] - '0');
        }
        if (h->has_length && (over || x != h->content_length))
            return fail(h, ERR_FORMAT, "two different Content-Length headers");
        if (over || x > lim->max_body_bytes) {
            if (over)
                return fail(h, ERR_TOO_LARGE, "the body is %.*s bytes, the limit is %llu",
                            (int)MIN(vn, (size_t)40), v,
                            (unsigned long long)lim->max_body_bytes);
            return fail(h, ERR_TOO_LARGE, "the body is %llu bytes, the limit is %llu",
                        (unsigned long long)x, (unsigned long long)lim->max_body_bytes);
        }
        h->has_length = true;
        h->content_length = x;
    } else if (name_is(p, nn, "Transfer-Encoding")) {
        if (h->is_chunked || !(vn == 7 && strncasecmp(v, "chunked", 7) == 0))
            return fail(h, ERR_NOT_IMPLEMENTED,
                        "Transfer-Encoding \"%.*s\" is not supported; only chunked is",
                        (int)MIN(vn, (size_t)40), v);
        h->is_chunked = true;
    } else if (name_is(p, nn, "X-Request-Id")) {
        keep_id(h, v, vn);
    }
    return 0;
}

/* Checks the chunked framing of p[i..n) (chunk data is skipped, not read).
 * HTTP_HEAD_PASS once the whole body is in view, HTTP_HEAD_MORE when it
 * is cut short, HTTP_HEAD_ERROR on bad framing or a body past the limit. */
static int chunked_body(http_head *h, const char *p, size_t n, size_t i,
                        const http_head_limits *lim)
{
    uint64_t total = 0;
    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;
        while (i < n && hexval((unsigned char)p[i]) >= 0) {
            if (++digits > 16)
                return fail(h, ERR_TOO_LARGE, "a chunk size has more than 16 hex digits");
            size = size * 16 + (uint64_t)hexval((unsigned char)p[i]);
            i++;
        }
        if (i == n)
            return HTTP_HEAD_MORE;
        if (digits == 0)
            return fail(h, ERR_FORMAT, "malformed chunked body: a chunk size is not hex");
        if (size > lim->max_body_bytes - MIN(total, lim->max_body_bytes))
            return fail(h, ERR_TOO_LARGE, "the chunked body is over %llu bytes, the limit",
                        (unsigned long long)lim->max_body_bytes);
        total += size;
        size_t ls, ll;
        int rc = next_line(p, n, &i, &ls, &ll);
        if (rc == 0)
            return n - i > 1024 ? fail(h, ERR_FORMAT, "malformed chunked body: chunk "
                                                      "extension too long")
                                : HTTP_HEAD_MORE;
        if (rc < 0) // a stray CR: ls and ll were not set
            return fail(h, ERR_FORMAT, "malformed chunked body: bad chunk size line");
        /* The rest of the size line: BWS and chunk extensions. */
        const char *x = p + ls, *xe = p + ls + ll;
        while (x < xe && hexval((unsigned char)*x) >= 0)
            x++;
        while (x < xe && (*x == ' ' || *x == '\t'))
            x++;
        if (x < xe && *x != ';')
            return fail(h, ERR_FORMAT, "malformed chunked body: bad chunk size line");
        for (; x < xe; x++)
            if (!is_value_char((unsigned char)*x))
                return fail(h, ERR_FORMAT, "malformed chunked body: bad chunk extension");
        if (size == 0)
            break;
        if (n - i <= size)
            return HTTP_HEAD_MORE;
        i += (size_t)size;
        if (p[i] == '\n') {
            i++;
        } else if (p[i] == '\r') {
            if (i + 1 == n)
                return HTTP_HEAD_MORE;
            if (p[i + 1] != '\n')
                return fail(h, ERR_FORMAT, "malformed chunked body: no CRLF after chunk data");
            i += 2;
        } else {
            return fail(h, ERR_FORMAT, "malformed chunked body: no CRLF after chunk data");
        }
    }
    /* Trailer section: field lines up to an empty line. */
    for (;;) {
        size_t ls, ll;
        int rc = next_line(p, n, &i, &ls, &ll);
        if (rc == 0)
            return HTTP_HEAD_MORE;
        if (rc < 0)
            return fail(h, ERR_FORMAT, "malformed chunked body: stray CR in the trailer");
        if (ll == 0)
            return HTTP_HEAD_PASS;
        http_head tmp = *h;
        if (field_line(&tmp, p + ls, ll, lim) != 0) {
            h->code = tmp.code;
            memcpy(h->msg, tmp.msg, sizeof h->msg);
            return HTTP_HEAD_ERROR;
        }
    }
}

int http_head_check(const char *p, size_t n, bool is_complete_view, const http_head_limits *lim,
                    http_head *h)
{
    memset(h, 0, sizeof *h);
    size_t i = 0;
    /* Empty lines before the request line are tolerated (RFC 9112 2.2). */
    while (i < n && (p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')))
        i += p[i] == '\r' ? 2 : 1;
    size_t start = i, ls, ll;
    int rc = next_line(p, n, &i, &ls, &ll);
    if (rc < 0)
        return fail(h, ERR_FORMAT, "malformed request line: stray CR");
    if (rc == 0) {
        /* Refuse garbage as soon as it shows, not at the timeout. */
        size_t k = start;
        while (k < n && k - start < 33 && is_tchar((unsigned char)p[k]))
            k++;
        if (k < n && (p[k] != ' ' || k == start) && p[k] != '\r')
            return fail(h, ERR_FORMAT, "malformed request line: no method");
        goto more;
    }
    if (request_line(h, p + ls, ll) != 0)
        return HTTP_HEAD_ERROR;
    size_t fields = 0;
    for (;;) {
        rc = next_line(p, n, &i, &ls, &ll);
        if (rc < 0)
            return fail(h, ERR_FORMAT, "malformed header line: stray CR");
        if (rc == 0)
            goto more;
        if (i - start > lim->max_header_bytes)
            break;
        if (ll == 0)
            break;
        if (++fields > HTTP_HEADERS_MAX)
            return fail(h, ERR_HEADERS_TOO_LARGE, "more than %d header lines",
                        HTTP_HEADERS_MAX);
        if (field_line(h, p + ls, ll, lim) != 0)
            return HTTP_HEAD_ERROR;
    }
    if (i - start > lim->max_header_bytes)
        return fail(h, ERR_HEADERS_TOO_LARGE,
                    "the request line and headers are over %llu bytes, the limit",
                    (unsigned long long)lim->max_header_bytes);
    h->head_bytes = i - start;
    if (h->has_length && h->is_chunked)
        return fail(h, ERR_FORMAT, "both Content-Length and Transfer-Encoding are present");
    if (h->is_chunked && h->is_http10)
        return fail(h, ERR_FORMAT, "Transfer-Encoding is not allowed in HTTP/1.0");
    if (!h->is_chunked)
        return HTTP_HEAD_PASS;
    rc = chunked_body(h, p, n, i, lim);
    /* Framing past the view is libmicrohttpd's to check. */
    return rc == HTTP_HEAD_MORE && is_complete_view ? HTTP_HEAD_PASS : rc;

more:
    if (n - start > lim->max_header_bytes)
        return fail(h, ERR_HEADERS_TOO_LARGE,
                    "the request line and headers are over %llu bytes, the limit",
                    (unsigned long long)lim->max_header_bytes);
    if (is_complete_view) // nothing more will be seen: e.g. a view padded with empty lines
        return fail(h, ERR_FORMAT, "the request head does not end within the bytes received");
    return HTTP_HEAD_MORE;
}
