/*
 * base/base — macros every module uses: assertions, MUST_USE, checked size
 * arithmetic, and small helpers. Include "base/base.h" rather than the pieces
 * when in doubt.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define MUST_USE __attribute__((warn_unused_result))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Prints "file:line: assertion failed: expr" and aborts. */
_Noreturn void base_assert_fail(const char *file, int line, const char *expr);

/*
 * ASSERT is for programmer errors and invariants, never for input. It is on
 * unless FERRY_NDEBUG is defined. DASSERT is for expensive checks, debug only.
 * NEVER(cond) marks a branch that cannot happen: it asserts in debug builds
 * and evaluates to cond in release so the caller can return ERR_INTERNAL.
 */
#ifndef FERRY_NDEBUG
#define ASSERT(x) ((x) ? (void)0 : base_assert_fail(__FILE__, __LINE__, #x))
#else
#define ASSERT(x) ((void)0)
#endif
#ifdef FERRY_DEBUG
#define DASSERT(x) ASSERT(x)
#define NEVER(x) ((x) ? (base_assert_fail(__FILE__, __LINE__, #x), 1) : 0)
#else
#define DASSERT(x) ((void)0)
#define NEVER(x) (x)
#endif

/* Checked arithmetic for sizes derived from untrusted numbers: true when it fits. */
static inline bool size_mul_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool size_add_ok(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool u64_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool u64_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/*
 * Parses a whole string as a base-10 signed integer in [min, max]. Returns 0,
 * or ERR_INVAL (not a number, trailing junk, empty) or ERR_OVERFLOW (out of
 * range). The replacement for atoi/strtol at every call site.
 */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) MUST_USE;
/* Parses a whole string as a finite double. Returns 0 or ERR_INVAL. */
int parse_f64(const char *s, double *out) MUST_USE;
/*
 * Parses a size with an optional unit suffix (k, m, g, kb, mb, gb, kib, mib,
 * gib; powers of 1024, case-insensitive) in [0, max]. Returns 0, ERR_INVAL or
 * ERR_OVERFLOW.
 */
int parse_size(const char *s, uint64_t max, uint64_t *out) MUST_USE;
/* Parses a duration ("250ms", "2s", "1.5m", "1h", bare number = seconds) into ns. */
int parse_duration_ns(const char *s, uint64_t *out) MUST_USE;

/* Number of online CPUs, at least 1. */
int base_ncpu(void);
