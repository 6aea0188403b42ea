/* base/str — pointer+length slices into someone else's bytes (h2o's iovec). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct str {
    const char *p;
    size_t n;
} str;

#define STR_LIT(s) ((str){(s), sizeof(s) - 1})

static inline str str_from(const char *s)
{
    return (str){s, s ? strlen(s) : 0};
}
static inline bool str_eq(str a, str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}
static inline bool str_eq_cstr(str a, const char *b)
{
    return str_eq(a, str_from(b));
}
static inline bool str_starts_with(str a, str prefix)
{
    return a.n >= prefix.n && memcmp(a.p, prefix.p, prefix.n) == 0;
}
/* The value 0..15 of an ASCII hex digit (either case), or -1 for any other byte. */
static inline int str_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
/* ASCII case-insensitive equality (HTTP header names, media types). */
bool str_case_eq(str a, str b);
/* Trims ASCII spaces and tabs at both ends. */
str str_trim(str s);
