// FUZZ_MODULES: base
// FUZZ_SOURCES: src/http/head.c
// FUZZ_SECONDS: 10
/*
 * The server's request parser as its connections run it: http_head_parse on
 * the head (fields must be slices of the head, in order, names non-empty),
 * then the body by Content-Length or through the incremental chunked decoder.
 * Input: byte 0 picks the piece size the body arrives in (1..256 bytes), the
 * rest is the request. The chunked body is decoded (a) in one call and (b)
 * piece by piece the way a connection does (decoded in place, the
 * unconsumed tail kept and fed again with the next piece); both must give
 * the same verdict, error code, consumed length and decoded bytes, and agree
 * with http_head_check on the complete view. Anything else aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "http/http_int.h"

static const http_head_limits LIM = {4096, 1u << 16};

/* Decodes body[0..n) piecewise with piece bytes per read. Returns the
 * verdict; *used and the decoded bytes in dec/*dec_n; *code on error. */
static int decode_pieces(const char *body, size_t n, size_t piece, char *dec, size_t *dec_n,
                         size_t *used, int *code)
{
    http_chunked c;
    http_chunked_init(&c);
    char *win = malloc(n + 1); // the connection's buffer: unconsumed tail + new bytes
    if (!win)
        abort();
    size_t have = 0, fed = 0, consumed = 0;
    *dec_n = 0;
    int rc = HTTP_HEAD_MORE;
    while (fed < n || have) {
        size_t k = MIN(piece, n - fed);
        memcpy(win + have, body + fed, k);
        have += k;
        fed += k;
        size_t u, o;
        http_head h;
        memset(&h, 0, sizeof h);
        rc = http_chunked_decode(&c, win, have, win, &LIM, &u, &o, &h);
        if (u > have || o > u)
            abort();
        memcpy(dec + *dec_n, win, o);
        *dec_n += o;
        consumed += u;
        memmove(win, win + u, have - u);
        have -= u;
        if (rc == HTTP_HEAD_ERROR) {
            if (h.code >= 0 || err_http_status(h.code) < 400 || !h.msg[0])
                abort();
            *code = h.code;
            break;
        }
        if (rc == HTTP_HEAD_PASS)
            break;
        if (k == 0) // all fed, still more wanted
            break;
    }
    free(win);
    *used = consumed;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    size_t piece = (size_t)data[0] + 1;
    size_t n = size - 1;
    char *p = malloc(n ? n : 1); // exact size: ASan sees any read past the end
    if (!p)
        return 0;
    memcpy(p, data + 1, n);
    http_head h;
    http_field f[HTTP_HEADERS_MAX];
    size_t nf = 0;
    int rc = http_head_parse(p, n, &LIM, &h, f, &nf);
    if (rc == HTTP_HEAD_ERROR) {
        if (h.code >= 0 || err_http_status(h.code) < 400 || !h.msg[0])
            abort();
    } else if (rc == HTTP_HEAD_PASS) {
        if (h.head_end > n || h.head_bytes > LIM.max_header_bytes || nf > HTTP_HEADERS_MAX ||
            h.target_off + h.target_len > h.head_end || h.target_len == 0)
            abort();
        size_t prev = 0;
        for (size_t i = 0; i < nf; i++) {
            if (f[i].name_len == 0 || f[i].name_off < prev ||
                f[i].value_off + f[i].value_len > h.head_end ||
                f[i].value_off < f[i].name_off + f[i].name_len + 1 ||
                p[f[i].name_off + f[i].name_len] != ':')
                abort();
            prev = f[i].value_off + f[i].value_len;
        }
        if (h.is_chunked) {
            const char *body = p + h.head_end;
            size_t bn = n - h.head_end;
            /* (a) in one call, into a separate buffer */
            char *d1 = malloc(bn + 1), *d2 = malloc(bn + 1);
            if (!d1 || !d2)
                abort();
            http_chunked c;
            http_chunked_init(&c);
            size_t u1, o1;
            http_head e1;
            memset(&e1, 0, sizeof e1);
            int r1 = http_chunked_decode(&c, body, bn, d1, &LIM, &u1, &o1, &e1);
            /* (b) piece by piece, in place */
            size_t u2 = 0, o2 = 0;
            int code2 = 0;
            int r2 = decode_pieces(body, bn, piece, d2, &o2, &u2, &code2);
            if (r1 != r2)
                abort();
            if (r1 == HTTP_HEAD_ERROR && e1.code != code2)
                abort();
            if (r1 == HTTP_HEAD_PASS && (u1 != u2 || o1 != o2 || memcmp(d1, d2, o1) != 0))
                abort();
            if (r1 == HTTP_HEAD_PASS && o1 > LIM.max_body_bytes)
                abort();
            /* the pre-check on the complete view says the same */
            http_head hc;
            int rc3 = http_head_check(p, n, true, &LIM, &hc);
            if ((r1 == HTTP_HEAD_ERROR) != (rc3 == HTTP_HEAD_ERROR) ||
                (r1 == HTTP_HEAD_ERROR && hc.code != e1.code))
                abort();
            free(d1);
            free(d2);
        }
    }
    free(p);
    return 0;
}
