/*
 * base/arena — chunks of at least 4 KiB chained in a list; allocations bump a
 * pointer in the newest chunk. Large requests get a chunk of their own.
 */
#include "base/arena.h"

#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t size; // usable bytes after the header
    size_t used;
    _Alignas(16) unsigned char data[];
} chunk;

typedef struct cleanup {
    struct cleanup *next;
    void (*fn)(void *);
    void *arg;
} cleanup;

struct arena {
    chunk *head;
    cleanup *cleanups;
    size_t used;
    size_t max_bytes;
};

#define CHUNK_MIN 4096

arena *arena_new(size_t max_bytes)
{
    arena *a = calloc(1, sizeof *a);
    if (a)
        a->max_bytes = max_bytes;
    return a;
}

void arena_free(arena *a)
{
    if (!a)
        return;
    for (cleanup *c = a->cleanups; c; c = c->next)
        c->fn(c->arg);
    chunk *c = a->head;
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *arena_alloc(arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        return NULL;
    size_t total;
    if (!size_add_ok(a->used, need, &total) || total > a->max_bytes)
        return NULL;
    chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = need > CHUNK_MIN ? need : CHUNK_MIN;
        chunk *nc = malloc(sizeof *nc + size);
        if (!nc)
            return NULL;
        nc->size = size;
        nc->used = 0;
        if (c && need > CHUNK_MIN) {
            /* Keep bumping in the current chunk: slot the big one behind it. */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used = total;
    return p;
}

void *arena_calloc(arena *a, size_t count, size_t size)
{
    size_t n;
    if (!size_mul_ok(count, size, &n))
        return NULL;
    void *p = arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *arena_strdup(arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

int arena_on_free(arena *a, void (*fn)(void *), void *arg)
{
    cleanup *c = arena_alloc(a, sizeof *c);
    if (!c)
        return ERR_TOO_LARGE;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

size_t arena_used(const arena *a)
{
    return a->used;
}
