/*
 * vector/vec_kernels — the scalar reference distance kernels, run-time kernel
 * selection, metric names, aligned allocation and the label map.
 *
 * Reference formulas: l2sq(a, b) = sum_i (a_i - b_i)^2, dot(a, b) = sum_i a_i b_i.
 * The scalar versions keep four partial sums so the compiler can overlap the
 * additions; the AVX2 versions (vec_kernels_avx2.c) are tested against them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vector/vec_int.h"

static float l2sq_scalar(const float *a, const float *b, size_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
        float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

static float dot_scalar(const float *a, const float *b, size_t n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void vec_kernels_scalar(vec_kernels *out)
{
    out->l2sq = l2sq_scalar;
    out->dot = dot_scalar;
    out->name = "scalar";
}

void vec_kernels_select(vec_kernels *out)
{
    const char *env = getenv("FERRY_SIMD");
    if (env && strcmp(env, "scalar") == 0) {
        vec_kernels_scalar(out);
        return;
    }
    if (!vec_kernels_avx2(out))
        vec_kernels_scalar(out);
}

void vec_normalize(float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    if (s <= 0)
        return;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < n; i++)
        v[i] *= inv;
}

bool vec_all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

int vec_metric_parse(const char *s, vec_metric *out)
{
    if (!s)
        return ERR_INVAL;
    if (strcmp(s, "l2") == 0)
        *out = VEC_METRIC_L2;
    else if (strcmp(s, "ip") == 0)
        *out = VEC_METRIC_IP;
    else if (strcmp(s, "cosine") == 0)
        *out = VEC_METRIC_COSINE;
    else
        return ERR_INVAL;
    return 0;
}

const char *vec_metric_name(vec_metric m)
{
    switch (m) {
    case VEC_METRIC_L2:
        return "l2";
    case VEC_METRIC_IP:
        return "ip";
    case VEC_METRIC_COSINE:
        return "cosine";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- memory */

/*
 * Blocks of at least VEC_HUGE_MIN bytes (an index's vectors and level-0 lists)
 * are aligned to 2 MiB, rounded up to whole 2 MiB and advised as huge pages
 * (the kernel's transparent_hugepage setting is often "madvise"): a search
 * touches a few hundred random rows of an array of tens of MiB, and with 4 KiB
 * pages nearly every row is a TLB miss as well as a cache miss. The rounding
 * costs at most 2 MiB per block; without THP the advice is a no-op.
 */
#define VEC_HUGE_PAGE ((size_t)2 << 20)
#define VEC_HUGE_MIN ((size_t)8 << 20)

void *vec_alloc64(size_t n)
{
    size_t r;
    if (!size_add_ok(n, 63, &r))
        return NULL;
    r &= ~(size_t)63;
    if (r == 0)
        r = 64;
    size_t align = 64;
#ifdef MADV_HUGEPAGE
    if (r >= VEC_HUGE_MIN) {
        if (!size_add_ok(r, VEC_HUGE_PAGE - 1, &r))
            return NULL;
        r &= ~(VEC_HUGE_PAGE - 1);
        align = VEC_HUGE_PAGE;
    }
#endif
    void *p = aligned_alloc(align, r);
    if (!p)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == VEC_HUGE_PAGE)
        (void)madvise(p, r, MADV_HUGEPAGE); // advice only: 4 KiB pages still work
#endif
    memset(p, 0, r);
    return p;
}

void *vec_realloc64(void *p, size_t old_n, size_t new_n)
{
    void *q = vec_alloc64(new_n);
    if (!q)
        return NULL;
    if (p)
        memcpy(q, p, MIN(old_n, new_n));
    free(p);
    return q;
}

/* ---------------------------------------------------------------- label map */

static size_t map_hash(uint64_t k)
{
    /* splitmix64 finalizer: labels are often small consecutive integers. */
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebull;
    k ^= k >> 31;
    return (size_t)k;
}

void vec_map_init(vec_map *m)
{
    memset(m, 0, sizeof *m);
}

void vec_map_deinit(vec_map *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

bool vec_map_get(const vec_map *m, uint64_t key, uint32_t *val)
{
    if (m->cap == 0)
        return false;
    size_t mask = m->cap - 1;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        const vec_map_entry *en = &m->e[i];
        if (en->state == 0)
            return false;
        if (en->state == 1 && en->key == key) {
            *val = en->val;
            return true;
        }
    }
}

static int map_resize(vec_map *m, size_t cap)
{
    vec_map_entry *ne = calloc(cap, sizeof *ne);
    if (!ne)
        return ERR_NOMEM;
    size_t mask = cap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        if (m->e[j].state != 1)
            continue;
        size_t i = map_hash(m->e[j].key) & mask;
        while (ne[i].state)
            i = (i + 1) & mask;
        ne[i] = m->e[j];
    }
    free(m->e);
    m->e = ne;
    m->cap = cap;
    m->dirty = m->used;
    return 0;
}

int vec_map_put(vec_map *m, uint64_t key, uint32_t val)
{
    /* Keep full + removed entries at most 5/8 of the table so probes stay short. */
    if ((m->dirty + 1) * 8 > m->cap * 5) {
        size_t cap = m->cap ? m->cap : 16;
        while ((m->used + 1) * 8 > cap * 4)
            cap *= 2;
        int rc = map_resize(m, cap);
        if (rc)
            return rc;
    }
    size_t mask = m->cap - 1, slot = SIZE_MAX;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        vec_map_entry *en = &m->e[i];
        if (en->state == 1 && en->key == key) {
            en->val = val;
            return 0;
        }
        if (en->state == 2 && slot == SIZE_MAX)
            slot = i;
        if (en->state == 0) {
            if (slot == SIZE_MAX) {
                slot = i;
                m->dirty++;
            }
            break;
        }
    }
    m->e[slot] = (vec_map_entry){key, val, 1};
    m->used++;
    return 0;
}

bool vec_map_del(vec_map *m, uint64_t key)
{
    if (m->cap == 0)
        return false;
    size_t mask = m->cap - 1;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        vec_map_entry *en = &m->e[i];
        if (en->state == 0)
            return false;
        if (en->state == 1 && en->key == key) {
            en->state = 2;
            m->used--;
            return true;
        }
    }
}

size_t vec_map_bytes(const vec_map *m)
{
    return m->cap * sizeof(vec_map_entry);
}
