/*
 * base/buf — a growable byte buffer with a ceiling (curl's dynbuf idea).
 *
 * Every buf has max_bytes: appending past it fails with ERR_TOO_LARGE and
 * leaves the contents unchanged, so nothing grows without bound. The data is
 * always NUL-terminated (the NUL is not counted in len). Not thread-safe.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "base/base.h"

typedef struct buf {
    char *data;       // NULL until the first append
    size_t len;       // bytes used, excluding the trailing NUL
    size_t cap;       // bytes allocated
    size_t max_bytes; // ceiling on len
} buf;

/* Initializes caller-owned storage with the given ceiling. Allocates nothing. */
void buf_init(buf *b, size_t max_bytes);
/* Frees the data; b may be reused after buf_init. */
void buf_deinit(buf *b);
/* Sets len to 0, keeping the allocation. */
void buf_reset(buf *b);
/* Appends n bytes. Returns 0, ERR_TOO_LARGE (ceiling) or ERR_NOMEM. */
int buf_append(buf *b, const void *p, size_t n) MUST_USE;
int buf_append_str(buf *b, const char *s) MUST_USE;
int buf_append_char(buf *b, char c) MUST_USE;
int buf_printf(buf *b, const char *fmt, ...) MUST_USE __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap) MUST_USE;
/*
 * Appends s as the inside of a JSON string (no quotes): escapes ", \, control
 * characters; invalid UTF-8 bytes become U+FFFD.
 */
int buf_append_json_str(buf *b, const char *s, size_t n) MUST_USE;
/* Hands the data to the caller (who must free() it) and reinitializes b. */
char *buf_steal(buf *b);
