/*
 * vector/flat — the flat exact index: rows of 64-byte aligned vectors in one
 * array, a label per row and a label -> row map. Delete moves the last row
 * into the hole, so rows [0, n) are always the live vectors.
 * Search scans every row and keeps the best k in a max-heap.
 */
#include <stdlib.h>
#include <string.h>

#include "vector/vec_int.h"

struct flat_index {
    size_t dim, row, n, cap;
    vec_metric metric;
    vec_kernels k;
    float *vecs;      // (cap, row)
    uint64_t *labels; // (cap)
    vec_map map;
};

int flat_index_new(size_t dim, vec_metric metric, flat_index **out, err_msg *e)
{
    *out = NULL;
    if (dim == 0 || dim > VEC_DIM_MAX)
        return err_set(e, ERR_INVAL, "flat: dim %zu is outside 1..%d", dim, VEC_DIM_MAX);
    if (metric != VEC_METRIC_L2 && metric != VEC_METRIC_IP && metric != VEC_METRIC_COSINE)
        return err_set(e, ERR_INVAL, "flat: unknown metric %d", (int)metric);
    flat_index *x = calloc(1, sizeof *x);
    if (!x)
        return err_set(e, ERR_NOMEM, "flat: out of memory");
    x->dim = dim;
    x->row = vec_row_floats(dim);
    x->metric = metric;
    vec_kernels_select(&x->k);
    vec_map_init(&x->map);
    *out = x;
    return 0;
}

void flat_index_free(flat_index *x)
{
    if (!x)
        return;
    free(x->vecs);
    free(x->labels);
    vec_map_deinit(&x->map);
    free(x);
}

size_t flat_index_count(const flat_index *x)
{
    return x->n;
}

static int grow(flat_index *x, err_msg *e)
{
    size_t cap = x->cap ? x->cap * 2 : 64, vb, ob = x->cap * x->row * sizeof(float), lb;
    if (cap > HNSW_NODES_MAX)
        return err_set(e, ERR_TOO_LARGE, "flat: more than %u vectors", HNSW_NODES_MAX);
    if (!size_mul_ok(cap, x->row * sizeof(float), &vb) || !size_mul_ok(cap, sizeof(uint64_t), &lb))
        return err_set(e, ERR_TOO_LARGE, "flat: %zu vectors of %zu floats overflow", cap, x->dim);
    float *v = vec_realloc64(x->vecs, ob, vb);
    if (!v)
        return err_set(e, ERR_NOMEM, "flat: out of memory for %zu vectors", cap);
    x->vecs = v;
    uint64_t *l = realloc(x->labels, lb);
    if (!l)
        return err_set(e, ERR_NOMEM, "flat: out of memory for %zu labels", cap);
    x->labels = l;
    x->cap = cap;
    return 0;
}

int flat_index_add(flat_index *x, uint64_t label, const float *v, err_msg *e)
{
    if (!vec_all_finite(v, x->dim))
        return err_set(e, ERR_INVAL, "flat: vector for label %llu has a non-finite value",
                       (unsigned long long)label);
    uint32_t r;
    if (!vec_map_get(&x->map, label, &r)) {
        if (x->n == x->cap) {
            int rc = grow(x, e);
            if (rc)
                return rc;
        }
        r = (uint32_t)x->n;
        int rc = vec_map_put(&x->map, label, r);
        if (rc)
            return err_set(e, rc, "flat: out of memory for the label map");
        x->labels[r] = label;
        x->n++;
    }
    float *dst = x->vecs + (size_t)r * x->row;
    memcpy(dst, v, x->dim * sizeof(float));
    if (x->metric == VEC_METRIC_COSINE)
        vec_normalize(dst, x->dim);
    return 0;
}

int flat_index_delete(flat_index *x, uint64_t label, err_msg *e)
{
    uint32_t r;
    if (!vec_map_get(&x->map, label, &r))
        return err_set(e, ERR_NOT_FOUND, "flat: label %llu not found", (unsigned long long)label);
    (void)vec_map_del(&x->map, label);
    size_t last = x->n - 1;
    if (r != last) {
        memcpy(x->vecs + (size_t)r * x->row, x->vecs + last * x->row, x->row * sizeof(float));
        x->labels[r] = x->labels[last];
        int rc = vec_map_put(&x->map, x->labels[r], r); // overwrite: no allocation
        if (NEVER(rc))
            return ERR_INTERNAL;
    }
    x->n--;
    return 0;
}

/* Max-heap of hits on (dist, label): the root is the worst kept hit. */
static bool worse(const vec_hit *a, const vec_hit *b)
{
    return a->dist > b->dist || (a->dist == b->dist && a->label > b->label);
}

static void heap_down(vec_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && worse(&h[l], &h[m]))
            m = l;
        if (l + 1 < n && worse(&h[l + 1], &h[m]))
            m = l + 1;
        if (m == i)
            return;
        vec_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_up(vec_hit *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!worse(&h[i], &h[p]))
            return;
        vec_hit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

int flat_index_search(const flat_index *x, const float *q, size_t k, const vec_filter *filter,
                      vec_hit *out, err_msg *e)
{
    if (k == 0 || k > HNSW_EF_MAX)
        return err_set(e, ERR_INVAL, "flat: k %zu is outside 1..%d", k, HNSW_EF_MAX);
    float *qq = vec_alloc64(x->row * sizeof(float));
    if (!qq)
        return err_set(e, ERR_NOMEM, "flat: out of memory for the query");
    memcpy(qq, q, x->dim * sizeof(float));
    if (x->metric == VEC_METRIC_COSINE)
        vec_normalize(qq, x->dim);
    bool is_ip = x->metric != VEC_METRIC_L2;
    size_t m = 0;
    for (size_t r = 0; r < x->n; r++) {
        if (filter && !filter->fn(filter->ctx, x->labels[r]))
            continue;
        const float *v = x->vecs + r * x->row;
        vec_hit h = {x->labels[r], is_ip ? 1.0f - x->k.dot(qq, v, x->row) : x->k.l2sq(qq, v, x->row)};
        if (m < k) {
            out[m] = h;
            heap_up(out, m++);
        } else if (worse(&out[0], &h)) {
            out[0] = h;
            heap_down(out, m, 0);
        }
    }
    free(qq);
    /* Heap sort in place: repeatedly move the worst to the end. */
    for (size_t n = m; n > 1; n--) {
        vec_hit t = out[0];
        out[0] = out[n - 1];
        out[n - 1] = t;
        heap_down(out, n - 1, 0);
    }
    return (int)m;
}
