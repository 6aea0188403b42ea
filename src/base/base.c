/* base/base — assertion failure, number parsing, CPU count. */
#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void base_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}

int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return ERR_INVAL;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0')
        return ERR_INVAL;
    if (errno == ERANGE || v < min || v > max)
        return ERR_OVERFLOW;
    *out = (int64_t)v;
    return 0;
}

int parse_f64(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return ERR_INVAL;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return ERR_INVAL;
    *out = v;
    return 0;
}

int parse_size(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return ERR_INVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return ERR_OVERFLOW;
    uint64_t mul = 1;
    if (*end) {
        static const struct {
            const char *suffix;
            uint64_t mul;
        } units[] = {
            {"b", 1},
            {"k", 1ull << 10}, {"kb", 1ull << 10}, {"kib", 1ull << 10},
            {"m", 1ull << 20}, {"mb", 1ull << 20}, {"mib", 1ull << 20},
            {"g", 1ull << 30}, {"gb", 1ull << 30}, {"gib", 1ull << 30},
        };
        size_t i;
        for (i = 0; i < ARRAY_LEN(units); i++)
            if (strcasecmp(end, units[i].suffix) == 0)
                break;
        if (i == ARRAY_LEN(units))
            return ERR_INVAL;
        mul = units[i].mul;
    }
    uint64_t r;
    if (!u64_mul_ok(v, mul, &r) || r > max)
        return ERR_OVERFLOW;
    *out = r;
    return 0;
}

int parse_duration_ns(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return ERR_INVAL;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v) || v < 0)
        return ERR_INVAL;
    double mul;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1e9;
    else if (strcmp(end, "ms") == 0)
        mul = 1e6;
    else if (strcmp(end, "us") == 0)
        mul = 1e3;
    else if (strcmp(end, "ns") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0)
        mul = 60e9;
    else if (strcmp(end, "h") == 0)
        mul = 3600e9;
    else
        return ERR_INVAL;
    double ns = v * mul;
    if (ns >= 1.8e19)
        return ERR_OVERFLOW;
    *out = (uint64_t)ns;
    return 0;
}

int base_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
