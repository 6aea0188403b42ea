/* base/buf — capped growable buffer. */
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
}

void buf_deinit(buf *b)
{
    free(b->data);
    buf_init(b, b->max_bytes);
}

void buf_reset(buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(buf *b, size_t extra)
{
    size_t need;
    if (!size_add_ok(b->len, extra, &need) || need > b->max_bytes)
        return ERR_TOO_LARGE;
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1) {
        if (cap > SIZE_MAX / 2)
            return ERR_TOO_LARGE;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append_str(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_char(buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return ERR_INVAL;
    int rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int buf_append_json_str(buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        /* Copy runs of plain bytes in one append. */
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            int rc = buf_append(b, p + i, run - i);
            if (rc)
                return rc;
            i = run;
            continue;
        }
        unsigned c = p[i];
        int rc;
        if (c == '"')
            rc = buf_append(b, "\\\"", 2);
        else if (c == '\\')
            rc = buf_append(b, "\\\\", 2);
        else if (c == '\n')
            rc = buf_append(b, "\\n", 2);
        else if (c == '\r')
            rc = buf_append(b, "\\r", 2);
        else if (c == '\t')
            rc = buf_append(b, "\\t", 2);
        else if (c < 0x20)
            rc = buf_printf(b, "\\u%04x", c);
        else {
            size_t len = utf8_valid_len(p + i, n - i);
            if (len == 0) {
                rc = buf_append(b, "\xEF\xBF\xBD", 3);
                len = 1;
            } else {
                rc = buf_append(b, p + i, len);
            }
            if (rc)
                return rc;
            i += len;
            continue;
        }
        if (rc)
            return rc;
        i++;
    }
    return 0;
}

char *buf_steal(buf *b)
{
    char *p = b->data;
    if (!p) {
        p = malloc(1);
        if (p)
            p[0] = '\0';
    }
    buf_init(b, b->max_bytes);
    return p;
}
