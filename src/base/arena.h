/*
 * base/arena — a request-scoped bump allocator with a ceiling and cleanup
 * hooks (nginx's pool). Everything allocated from an arena is freed at once by
 * arena_free; cleanup hooks release what is not memory (refs, fds), in
 * reverse order of registration. Not thread-safe: one owner at a time.
 */
#pragma once

#include <stddef.h>

#include "base/base.h"

typedef struct arena arena;

/* Creates an arena that refuses to hold more than max_bytes in total.
 * Returns NULL when out of memory. */
arena *arena_new(size_t max_bytes);
/* Runs cleanup hooks (last registered first), then frees all memory. NULL ok. */
void arena_free(arena *a);
/* Returns n bytes aligned to 16, or NULL when the ceiling or memory is hit. */
void *arena_alloc(arena *a, size_t n);
/* Like arena_alloc but zeroed. Checks count*size for overflow. */
void *arena_calloc(arena *a, size_t count, size_t size);
/* Copies n bytes of s plus a NUL; NULL on failure. */
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_strdup(arena *a, const char *s);
/* Registers fn(arg) to run at arena_free. Returns 0 or ERR_NOMEM/ERR_TOO_LARGE. */
int arena_on_free(arena *a, void (*fn)(void *), void *arg) MUST_USE;
/* Bytes handed out so far (including alignment padding). */
size_t arena_used(const arena *a);
