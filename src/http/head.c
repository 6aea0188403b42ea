/*
 * http/head — the request-head parser and the chunked body decoder of the
 * server, and the strict pre-check the front (front.c) runs on the bytes it
 * peeks from a new connection.
 *
 * Every byte of every request passes these before anything else reads it,
 * so whatever they refuse is answered with the server's JSON error (400 /
 * 413 / 431 / 501 / 505), on first and follow-up requests alike, however
 * deep into a body the fault is.
 *
 * Grammar (RFC 9112), with a few common tolerances:
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

#include "base/str.h"
#include "http/http_int.h"

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

static int request_line(http_head *h, const char *base, const char *p, size_t n)
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
    h->target_off = (size_t)(t - base);
    h->target_len = (size_t)(sp2 - t);
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

/* Checks one field line p[0..n) and, when f is given, records where its
 * name and trimmed value are (offsets from base). */
static int field_line(http_head *h, const char *base, const char *p, size_t n,
                      const http_head_limits *lim, http_field *f)
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
    if (f) {
        f->name_off = (uint32_t)(p - base);
        f->name_len = (uint32_t)nn;
        f->value_off = (uint32_t)(v - base);
        f->value_len = (uint32_t)vn;
    }
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

/* ------------------------------------------------------------ chunked -- */

enum { CK_SIZE = 0, CK_DATA, CK_DATA_END, CK_TRAILER, CK_DONE };

#define CHUNK_EXT_MAX 1024 // bytes after a chunk size's digits, up to its LF

void http_chunked_init(http_chunked *c)
{
    memset(c, 0, sizeof *c);
}

/*
 * One incremental decoder for both the pre-check (out NULL) and the server.
 * A size line and a trailer line are only taken whole (their LF in view):
 * what is left unconsumed at MORE is a partial line the caller feeds again
 * with more bytes after it, so the verdict never depends on how the bytes
 * were split. Chunk data is taken as it comes.
 */
int http_chunked_decode(http_chunked *c, const char *p, size_t n, char *out,
                        const http_head_limits *lim, size_t *used, size_t *out_n, http_head *h)
{
    size_t i = 0, o = 0;
    int rc = HTTP_HEAD_MORE;
    while (rc == HTTP_HEAD_MORE) {
        if (c->state == CK_SIZE) {
            size_t j = i;
            uint64_t size = 0;
            size_t digits = 0;
            while (j < n && str_hexval((unsigned char)p[j]) >= 0) {
                if (++digits > 16) {
                    rc = fail(h, ERR_TOO_LARGE, "a chunk size has more than 16 hex digits");
                    goto out;
                }
                size = size * 16 + (uint64_t)str_hexval((unsigned char)p[j]);
                j++;
            }
            if (j == n)
                goto out;
            if (digits == 0) {
                rc = fail(h, ERR_FORMAT, "malformed chunked body: a chunk size is not hex");
                goto out;
            }
            if (size > lim->max_body_bytes - MIN(c->total, lim->max_body_bytes)) {
                rc = fail(h, ERR_TOO_LARGE, "the chunked body is over %llu bytes, the limit",
                          (unsigned long long)lim->max_body_bytes);
                goto out;
            }
            const char *lf = memchr(p + j, '\n', n - j);
            if (!lf) {
                if (n - j > CHUNK_EXT_MAX)
                    rc = fail(h, ERR_FORMAT, "malformed chunked body: chunk extension too long");
                goto out;
            }
            size_t end = (size_t)(lf - p);
            if (end - j > CHUNK_EXT_MAX) {
                rc = fail(h, ERR_FORMAT, "malformed chunked body: chunk extension too long");
                goto out;
            }
            size_t xl = end - j; // the rest of the line: BWS and extensions
            if (xl && p[end - 1] == '\r')
                xl--;
            const char *x = p + j, *xe = p + j + xl;
            if (memchr(x, '\r', xl)) {
                rc = fail(h, ERR_FORMAT, "malformed chunked body: bad chunk size line");
                goto out;
            }
            while (x < xe && (*x == ' ' || *x == '\t'))
                x++;
            if (x < xe && *x != ';') {
                rc = fail(h, ERR_FORMAT, "malformed chunked body: bad chunk size line");
                goto out;
            }
            for (; x < xe; x++)
                if (!is_value_char((unsigned char)*x)) {
                    rc = fail(h, ERR_FORMAT, "malformed chunked body: bad chunk extension");
                    goto out;
                }
            i = end + 1;
            c->total += size;
            c->left = size;
            c->state = size ? CK_DATA : CK_TRAILER;
        } else if (c->state == CK_DATA) {
            size_t take = (size_t)MIN(c->left, (uint64_t)(n - i));
            if (out && take)
                memmove(out + o, p + i, take);
            o += take;
            i += take;
            c->left -= take;
            if (c->left)
                goto out;
            c->state = CK_DATA_END;
        } else if (c->state == CK_DATA_END) {
            if (i == n)
                goto out;
            if (p[i] == '\n') {
                i++;
            } else if (p[i] == '\r') {
                if (i + 1 == n)
                    goto out;
                if (p[i + 1] != '\n') {
                    rc = fail(h, ERR_FORMAT, "malformed chunked body: no CRLF after chunk data");
                    goto out;
                }
                i += 2;
            } else {
                rc = fail(h, ERR_FORMAT, "malformed chunked body: no CRLF after chunk data");
                goto out;
            }
            c->state = CK_SIZE;
        } else if (c->state == CK_TRAILER) {
            size_t ls, ll, k = i;
            int lr = next_line(p, n, &k, &ls, &ll);
            if (lr == 0) {
                if (c->trailer_bytes + (n - i) > lim->max_header_bytes)
                    rc = fail(h, ERR_HEADERS_TOO_LARGE, "the chunked trailer is over %llu "
                              "bytes, the limit", (unsigned long long)lim->max_header_bytes);
                goto out;
            }
            c->trailer_bytes += k - i;
            if (c->trailer_bytes > lim->max_header_bytes) {
                rc = fail(h, ERR_HEADERS_TOO_LARGE, "the chunked trailer is over %llu bytes, "
                          "the limit", (unsigned long long)lim->max_header_bytes);
                goto out;
            }
            if (lr < 0) {
                rc = fail(h, ERR_FORMAT, "malformed chunked body: stray CR in the trailer");
                goto out;
            }
            i = k;
            if (ll == 0) {
                c->state = CK_DONE;
                rc = HTTP_HEAD_PASS;
                goto out;
            }
            http_head tmp; // each trailer line alone: its syntax, not the head's state
            memset(&tmp, 0, sizeof tmp);
            if (field_line(&tmp, p, p + ls, ll, lim, NULL) != 0) {
                h->code = tmp.code;
                memcpy(h->msg, tmp.msg, sizeof h->msg);
                rc = HTTP_HEAD_ERROR;
                goto out;
            }
        } else { // CK_DONE: nothing more belongs to this body
            rc = HTTP_HEAD_PASS;
        }
    }
out:
    *used = i;
    *out_n = o;
    return rc;
}

/* ---------------------------------------------------------------- head -- */

/* The head of p[0..n): PASS with h and (when given) fields filled, MORE, or
 * ERROR. Does not look at the body. */
static int head_parse(const char *p, size_t n, bool is_complete_view,
                      const http_head_limits *lim, http_head *h, http_field *fields,
                      size_t *n_fields)
{
    memset(h, 0, sizeof *h);
    if (n_fields)
        *n_fields = 0;
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
    if (request_line(h, p, p + ls, ll) != 0)
        return HTTP_HEAD_ERROR;
    size_t nf = 0;
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
        if (nf + 1 > HTTP_HEADERS_MAX)
            return fail(h, ERR_HEADERS_TOO_LARGE, "more than %d header lines",
                        HTTP_HEADERS_MAX);
        if (field_line(h, p, p + ls, ll, lim, fields ? &fields[nf] : NULL) != 0)
            return HTTP_HEAD_ERROR;
        nf++;
    }
    if (i - start > lim->max_header_bytes)
        return fail(h, ERR_HEADERS_TOO_LARGE,
                    "the request line and headers are over %llu bytes, the limit",
                    (unsigned long long)lim->max_header_bytes);
    h->head_bytes = i - start;
    h->head_end = i;
    if (n_fields)
        *n_fields = nf;
    if (h->has_length && h->is_chunked)
        return fail(h, ERR_FORMAT, "both Content-Length and Transfer-Encoding are present");
    if (h->is_chunked && h->is_http10)
        return fail(h, ERR_FORMAT, "Transfer-Encoding is not allowed in HTTP/1.0");
    return HTTP_HEAD_PASS;

more:
    if (n - start > lim->max_header_bytes)
        return fail(h, ERR_HEADERS_TOO_LARGE,
                    "the request line and headers are over %llu bytes, the limit",
                    (unsigned long long)lim->max_header_bytes);
    if (is_complete_view) // nothing more will be seen: e.g. a view padded with empty lines
        return fail(h, ERR_FORMAT, "the request head does not end within the bytes received");
    return HTTP_HEAD_MORE;
}

int http_head_parse(const char *p, size_t n, const http_head_limits *lim, http_head *h,
                    http_field *fields, size_t *n_fields)
{
    return head_parse(p, n, false, lim, h, fields, n_fields);
}

int http_head_check(const char *p, size_t n, bool is_complete_view, const http_head_limits *lim,
                    http_head *h)
{
    int rc = head_parse(p, n, is_complete_view, lim, h, NULL, NULL);
    if (rc != HTTP_HEAD_PASS || !h->is_chunked)
        return rc;
    http_chunked c;
    http_chunked_init(&c);
    size_t used, out_n;
    rc = http_chunked_decode(&c, p + h->head_end, n - h->head_end, NULL, lim, &used, &out_n, h);
    /* Framing past the view is the server's to check as it reads. */
    return rc == HTTP_HEAD_MORE && is_complete_view ? HTTP_HEAD_PASS : rc;
}
