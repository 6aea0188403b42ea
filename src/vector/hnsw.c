/*
 * vector/hnsw — the HNSW graph index (Malkov & Yashunin, "Efficient and robust
 * approximate nearest neighbor search using Hierarchical Navigable Small World
 * graphs", 2016/2018): insert (algorithm 1), layer search (algorithm 2), the
 * neighbour-selection heuristic (algorithm 4), plus tombstone deletion with
 * link repair and filtered search.
 *
 * Layout (struct hnsw_index in vec_int.h):
 *   vecs    (cap, row) floats, rows 64-byte aligned, padding zero, so distance
 *           kernels always run on whole 16-float blocks;
 *   links0  (cap, 1 + 2M) uint32: level-0 list of node i at i*(1+2M), count first;
 *   upper   per node with level >= 1: (level, 1 + M) uint32, count first;
 *   labels, levels, deleted  (cap) each.
 * Invariants: a link at level l names a node of level >= l below n; counts
 * never exceed 2M (level 0) or M (above); a node is complete (vector, label,
 * level, its own lists) before n covers it and before any list names it.
 *
 * Scratch per search (visited stamps, two heaps, the padded query) comes from
 * a pool so a search allocates nothing once warm. The visited set is an array
 * of uint16 generation stamps: a new search bumps the generation instead of
 * clearing, and clears only when the stamp wraps.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vector/vec_int.h"

typedef struct hnsw_cand {
    float d;
    uint32_t id;
} hnsw_cand;

struct hnsw_scratch {
    uint16_t *visited;  // (vcap) generation stamps
    size_t vcap;
    uint16_t gen;
    hnsw_cand *cand;    // min-heap on d: nodes still to expand
    size_t cand_n, cand_cap;
    hnsw_cand *res;     // max-heap on d: best nodes found so far
    size_t res_n, res_cap;
    hnsw_cand *tmp;     // sorted candidate lists for neighbour selection
    size_t tmp_cap;
    hnsw_cand *tmp2;
    size_t tmp2_cap;
    uint32_t *sel;      // selected neighbour ids
    float *q;           // (row) padded, normalized query
    size_t ndist;       // distance computations of the current call
    hnsw_scratch *next; // pool link
};

/* ---------------------------------------------------------------- small helpers */

static inline const float *vec_at(const hnsw_index *x, uint32_t id)
{
    return x->vecs + (size_t)id * x->row;
}

static inline _Atomic uint32_t *links_at(const hnsw_index *x, uint32_t id, unsigned level)
{
    if (level == 0)
        return x->links0 + (size_t)id * (1 + x->M0);
    return x->upper[id] + (size_t)(level - 1) * (1 + x->M);
}

static inline uint32_t ld(_Atomic uint32_t *p)
{
    return atomic_load_explicit(p, memory_order_acquire);
}

static inline void st(_Atomic uint32_t *p, uint32_t v)
{
    atomic_store_explicit(p, v, memory_order_release);
}

static inline float dist(const hnsw_index *x, const float *a, const float *b)
{
    if (x->metric == VEC_METRIC_L2)
        return x->k.l2sq(a, b, x->row);
    return 1.0f - x->k.dot(a, b, x->row);
}

static inline bool is_deleted(const hnsw_index *x, uint32_t id)
{
    return atomic_load_explicit(&x->deleted[id], memory_order_relaxed) != 0;
}

static inline void prefetch_vec(const hnsw_index *x, uint32_t id)
{
    const char *p = (const char *)vec_at(x, id);
    size_t bytes = x->row * sizeof(float);
    /* The whole row (up to 2 KiB: 512 dims): the hardware streamer does not
     * start soon enough on a 1.5 KiB row read once, and a 384-dim distance
     * stalls on every line it has to fetch itself. */
    size_t lim = bytes < 2048 ? bytes : 2048;
    for (size_t o = 0; o < lim; o += 64)
        __builtin_prefetch(p + o, 0, 3);
}

/* --- heaps on hnsw_cand: cand is a min-heap, res a max-heap ---------------- */

static inline void minheap_up(hnsw_cand *h, size_t i)
{
    hnsw_cand v = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].d <= v.d)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline void minheap_pop(hnsw_cand *h, size_t *n)
{
    hnsw_cand v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m)
            break;
        if (l + 1 < m && h[l + 1].d < h[l].d)
            l++;
        if (v.d <= h[l].d)
            break;
        h[i] = h[l];
        i = l;
    }
    h[i] = v;
}

static inline void maxheap_up(hnsw_cand *h, size_t i)
{
    hnsw_cand v = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].d >= v.d)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline void maxheap_pop(hnsw_cand *h, size_t *n)
{
    hnsw_cand v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m)
            break;
        if (l + 1 < m && h[l + 1].d > h[l].d)
            l++;
        if (v.d >= h[l].d)
            break;
        h[i] = h[l];
        i = l;
    }
    h[i] = v;
}

static int grow_cands(hnsw_cand **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    hnsw_cand *q = realloc(*p, c * sizeof *q);
    if (!q)
        return ERR_NOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int cmp_cand(const void *a, const void *b)
{
    const hnsw_cand *x = a, *y = b;
    if (x->d < y->d)
        return -1;
    if (x->d > y->d)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* ---------------------------------------------------------------- scratch */

static void scratch_free(hnsw_scratch *s)
{
    if (!s)
        return;
    free(s->visited);
    free(s->cand);
    free(s->res);
    free(s->tmp);
    free(s->tmp2);
    free(s->sel);
    free(s->q);
    free(s);
}

static size_t scratch_bytes(const hnsw_index *x, const hnsw_scratch *s)
{
    return sizeof *s + s->vcap * sizeof(uint16_t) +
           (s->cand_cap + s->res_cap + s->tmp_cap + s->tmp2_cap) * sizeof(hnsw_cand) +
           (x->M0 + 1) * sizeof(uint32_t) + x->row * sizeof(float);
}

static hnsw_scratch *scratch_new(const hnsw_index *x)
{
    hnsw_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->sel = malloc((x->M0 + 1) * sizeof(uint32_t));
    s->q = vec_alloc64(x->row * sizeof(float));
    if (!s->sel || !s->q || grow_cands(&s->cand, &s->cand_cap, 256) ||
        grow_cands(&s->res, &s->res_cap, 256)) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

/* Makes the visited array cover every slot (x->cap is stable: the caller holds
 * grow_lock shared or is the writer) and starts a new generation. */
static int scratch_visit_begin(const hnsw_index *x, hnsw_scratch *s)
{
    if (s->vcap < x->cap) {
        uint16_t *v = calloc(x->cap, sizeof *v);
        if (!v)
            return ERR_NOMEM;
        free(s->visited);
        s->visited = v;
        s->vcap = x->cap;
        s->gen = 0;
    }
    if (++s->gen == 0) {
        memset(s->visited, 0, s->vcap * sizeof *s->visited);
        s->gen = 1;
    }
    return 0;
}

static hnsw_scratch *scratch_get(hnsw_index *x)
{
    pthread_mutex_lock(&x->pool_mu);
    hnsw_scratch *s = x->pool;
    if (s)
        x->pool = s->next;
    pthread_mutex_unlock(&x->pool_mu);
    return s ? s : scratch_new(x);
}

static void scratch_put(hnsw_index *x, hnsw_scratch *s)
{
    pthread_mutex_lock(&x->pool_mu);
    s->next = x->pool;
    x->pool = s;
    pthread_mutex_unlock(&x->pool_mu);
}

/* ---------------------------------------------------------------- searching */

/* Greedy descent (ef = 1) from level `from` down to level `to` + 1. */
static uint32_t greedy(const hnsw_index *x, hnsw_scratch *s, const float *q, uint32_t cur,
                       float *curd, unsigned from, unsigned to)
{
    for (unsigned l = from; l > to; l--) {
        bool changed = true;
        while (changed) {
            changed = false;
            _Atomic uint32_t *ll = links_at(x, cur, l);
            uint32_t c = ld(&ll[0]);
            for (uint32_t j = 0; j < c; j++) {
                uint32_t nb = ld(&ll[1 + j]);
                float d = dist(x, q, vec_at(x, nb));
                s->ndist++;
                if (d < *curd) {
                    *curd = d;
                    cur = nb;
                    changed = true;
                }
            }
        }
    }
    return cur;
}

static inline bool eligible(const hnsw_index *x, uint32_t id, const vec_filter *f)
{
    if (is_deleted(x, id))
        return false;
    return !f || f->fn(f->ctx, x->labels[id]);
}

/*
 * Algorithm 2: best-first search of one level from ep, keeping the ef best
 * nodes in s->res. With check, only eligible nodes (not deleted, passing f)
 * enter res, but all are expanded, and the search goes on until res holds ef
 * nodes or the graph is exhausted (so selective filters still fill k).
 */
static int search_layer(const hnsw_index *x, hnsw_scratch *s, const float *q, uint32_t ep,
                        float epd, size_t ef, unsigned level, const vec_filter *f, bool check)
{
    int rc = scratch_visit_begin(x, s);
    if (rc)
        return rc;
    rc = grow_cands(&s->res, &s->res_cap, ef + 2);
    if (rc)
        return rc;
    uint16_t *visited = s->visited, gen = s->gen;
    hnsw_cand *res = s->res;
    s->cand_n = 0;
    s->res_n = 0;
    visited[ep] = gen;
    s->cand[s->cand_n++] = (hnsw_cand){epd, ep};
    float lower = INFINITY;
    if (!check || eligible(x, ep, f)) {
        res[s->res_n++] = (hnsw_cand){epd, ep};
        lower = epd;
    }
    size_t maxc = level ? x->M : x->M0;
    uint32_t todo[2 * HNSW_M_MAX];
    while (s->cand_n) {
        hnsw_cand c = s->cand[0];
        if (c.d > lower && (s->res_n == ef || !check))
            break;
        minheap_pop(s->cand, &s->cand_n);
        /* The next candidate's list is a separate cache miss: start it now. */
        if (s->cand_n)
            __builtin_prefetch(links_at(x, s->cand[0].id, level), 0, 3);
        _Atomic uint32_t *ll = links_at(x, c.id, level);
        uint32_t cnt = ld(&ll[0]);
        if (cnt > maxc)
            cnt = (uint32_t)maxc; // cannot happen (writer and loader cap it); stay in bounds
        /* First pass: drop visited neighbours, start loading the others' vectors. */
        size_t nt = 0;
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t nb = ld(&ll[1 + j]);
            if (visited[nb] == gen)
                continue;
            visited[nb] = gen;
            todo[nt++] = nb;
            __builtin_prefetch(vec_at(x, nb), 0, 3);
        }
        if (s->cand_n + nt > s->cand_cap) {
            rc = grow_cands(&s->cand, &s->cand_cap, s->cand_n + nt);
            if (rc)
                return rc;
        }
        for (size_t t = 0; t < nt; t++) {
            uint32_t nb = todo[t];
            if (t + 1 < nt)
                prefetch_vec(x, todo[t + 1]);
            float d = dist(x, q, vec_at(x, nb));
            if (s->res_n < ef || d < lower) {
                s->cand[s->cand_n++] = (hnsw_cand){d, nb};
                minheap_up(s->cand, s->cand_n - 1);
                if (!check || eligible(x, nb, f)) {
                    res[s->res_n++] = (hnsw_cand){d, nb};
                    maxheap_up(res, s->res_n - 1);
                    if (s->res_n > ef)
                        maxheap_pop(res, &s->res_n);
                    lower = res[0].d;
                }
            }
        }
        s->ndist += nt;
    }
    return 0;
}

/* Moves s->res into s->tmp sorted by ascending distance; returns the count. */
static int res_sorted(hnsw_scratch *s)
{
    if (grow_cands(&s->tmp, &s->tmp_cap, s->res_n + 1))
        return ERR_NOMEM;
    size_t n = s->res_n;
    while (s->res_n) {
        s->tmp[s->res_n - 1] = s->res[0];
        maxheap_pop(s->res, &s->res_n);
    }
    return (int)n;
}

/*
 * Algorithm 4 (the heuristic, without extending candidates or keeping pruned
 * ones): walk candidates nearest first and keep one only if it is closer to
 * the base than to every neighbour kept so far. Writes at most m ids to out.
 */
static size_t select_heuristic(const hnsw_index *x, hnsw_scratch *s, const hnsw_cand *c, size_t n,
                               size_t m, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < m; i++) {
        const float *v = vec_at(x, c[i].id);
        bool good = true;
        for (size_t r = 0; r < k; r++) {
            s->ndist++;
            if (dist(x, v, vec_at(x, out[r])) < c[i].d) {
                good = false;
                break;
            }
        }
        if (good)
            out[k++] = c[i].id;
    }
    return k;
}

/* Replaces node b's list at level l by ids (count last, so a reader never
 * sees a count covering unwritten entries). */
static void write_list(const hnsw_index *x, uint32_t b, unsigned l, const uint32_t *ids, size_t n)
{
    _Atomic uint32_t *ll = links_at(x, b, l);
    uint32_t old = ld(&ll[0]);
    if (n < old)
        st(&ll[0], (uint32_t)n);
    for (size_t j = 0; j < n; j++)
        st(&ll[1 + j], ids[j]);
    st(&ll[0], (uint32_t)n);
}

/* Adds link b -> id at level l; when b's list is full, re-selects its list
 * from the old entries plus id with the heuristic (tombstones dropped). */
static int link_to(hnsw_index *x, hnsw_scratch *s, uint32_t b, uint32_t id, unsigned l)
{
    size_t maxc = l ? x->M : x->M0;
    _Atomic uint32_t *ll = links_at(x, b, l);
    uint32_t c = ld(&ll[0]);
    for (uint32_t j = 0; j < c; j++)
        if (ld(&ll[1 + j]) == id)
            return 0;
    if (c < maxc) {
        st(&ll[1 + c], id);
        st(&ll[0], c + 1);
        return 0;
    }
    if (grow_cands(&s->tmp2, &s->tmp2_cap, maxc + 1))
        return ERR_NOMEM;
    const float *bv = vec_at(x, b);
    size_t n = 0;
    s->tmp2[n++] = (hnsw_cand){dist(x, bv, vec_at(x, id)), id};
    for (uint32_t j = 0; j < c; j++) {
        uint32_t o = ld(&ll[1 + j]);
        if (is_deleted(x, o))
            continue;
        s->tmp2[n++] = (hnsw_cand){dist(x, bv, vec_at(x, o)), o};
    }
    s->ndist += n;
    qsort(s->tmp2, n, sizeof *s->tmp2, cmp_cand);
    uint32_t ids[2 * HNSW_M_MAX];
    size_t k = select_heuristic(x, s, s->tmp2, n, maxc, ids);
    write_list(x, b, l, ids, k);
    return 0;
}

/* ---------------------------------------------------------------- lifecycle */

hnsw_config hnsw_config_default(void)
{
    return (hnsw_config){.dim = 0,
                         .metric = VEC_METRIC_L2,
                         .M = 16,
                         .ef_construction = 200,
                         .capacity = 1024,
                         .seed = 42};
}

static int check_config(const hnsw_config *c, err_msg *e)
{
    if (c->dim == 0 || c->dim > VEC_DIM_MAX)
        return err_set(e, ERR_INVAL, "hnsw: dim %zu is outside 1..%d", c->dim, VEC_DIM_MAX);
    if (c->metric != VEC_METRIC_L2 && c->metric != VEC_METRIC_IP && c->metric != VEC_METRIC_COSINE)
        return err_set(e, ERR_INVAL, "hnsw: unknown metric %d", (int)c->metric);
    if (c->M < HNSW_M_MIN || c->M > HNSW_M_MAX)
        return err_set(e, ERR_INVAL, "hnsw: M %zu is outside %d..%d", c->M, HNSW_M_MIN,
                       HNSW_M_MAX);
    if (c->ef_construction < c->M || c->ef_construction > HNSW_EF_MAX)
        return err_set(e, ERR_INVAL, "hnsw: ef_construction %zu is outside M(%zu)..%d",
                       c->ef_construction, c->M, HNSW_EF_MAX);
    if (c->capacity > HNSW_NODES_MAX)
        return err_set(e, ERR_INVAL, "hnsw: capacity %zu is above %u", c->capacity,
                       HNSW_NODES_MAX);
    return 0;
}

/* Reallocates every per-node array to cap slots. Caller holds write_mu and,
 * when searches may run, grow_lock exclusively. On failure the index is
 * unchanged in meaning (arrays that did grow are just larger). */
static int resize(hnsw_index *x, size_t cap, err_msg *e)
{
    size_t vb, lb, ob = x->cap;
    if (!size_mul_ok(cap, x->row * sizeof(float), &vb) ||
        !size_mul_ok(cap, (1 + x->M0) * sizeof(uint32_t), &lb))
        return err_set(e, ERR_TOO_LARGE, "hnsw: %zu slots of %zu floats overflow", cap, x->dim);
    float *v = vec_realloc64(x->vecs, ob * x->row * sizeof(float), vb);
    if (!v)
        goto nomem;
    x->vecs = v;
    _Atomic uint32_t *l0 = vec_realloc64(x->links0, ob * (1 + x->M0) * sizeof(uint32_t), lb);
    if (!l0)
        goto nomem;
    x->links0 = l0;
    _Atomic uint32_t **up = vec_realloc64(x->upper, ob * sizeof *up, cap * sizeof *up);
    if (!up)
        goto nomem;
    x->upper = up;
    uint8_t *lv = vec_realloc64(x->levels, ob, cap);
    if (!lv)
        goto nomem;
    x->levels = lv;
    _Atomic uint8_t *dl = vec_realloc64(x->deleted, ob, cap);
    if (!dl)
        goto nomem;
    x->deleted = dl;
    uint64_t *lab = vec_realloc64(x->labels, ob * sizeof *lab, cap * sizeof *lab);
    if (!lab)
        goto nomem;
    x->labels = lab;
    x->cap = cap;
    return 0;
nomem:
    return err_set(e, ERR_NOMEM, "hnsw: out of memory growing to %zu slots", cap);
}

int hnsw_alloc(const hnsw_config *cfg, hnsw_index **out, err_msg *e)
{
    *out = NULL;
    int rc = check_config(cfg, e);
    if (rc)
        return rc;
    hnsw_index *x = calloc(1, sizeof *x);
    if (!x)
        return err_set(e, ERR_NOMEM, "hnsw: out of memory");
    x->dim = cfg->dim;
    x->row = vec_row_floats(cfg->dim);
    x->metric = cfg->metric;
    x->M = cfg->M;
    x->M0 = 2 * cfg->M;
    x->efc = cfg->ef_construction;
    x->level_mult = 1.0 / log((double)cfg->M);
    x->seed = cfg->seed;
    x->rng = cfg->seed;
    vec_kernels_select(&x->k);
    atomic_init(&x->n, 0);
    atomic_init(&x->entry, hnsw_entry_pack(HNSW_EMPTY, 0));
    atomic_init(&x->n_deleted, 0);
    vec_map_init(&x->map);
    pthread_mutex_init(&x->write_mu, NULL);
    pthread_mutex_init(&x->pool_mu, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* A steady stream of searches must not starve the writer that grows the arrays. */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&x->grow_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    size_t cap = cfg->capacity ? cfg->capacity : 16;
    x->ws = scratch_new(x);
    if (!x->ws) {
        hnsw_index_free(x);
        return err_set(e, ERR_NOMEM, "hnsw: out of memory");
    }
    rc = resize(x, cap, e);
    if (rc) {
        hnsw_index_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int hnsw_index_new(const hnsw_config *cfg, hnsw_index **out, err_msg *e)
{
    return hnsw_alloc(cfg, out, e);
}

void hnsw_index_free(hnsw_index *x)
{
    if (!x)
        return;
    uint32_t n = atomic_load(&x->n);
    if (x->upper)
        for (uint32_t i = 0; i < n; i++)
            free((void *)x->upper[i]);
    free(x->vecs);
    free((void *)x->links0);
    free((void *)x->upper);
    free(x->levels);
    free((void *)x->deleted);
    free(x->labels);
    vec_map_deinit(&x->map);
    scratch_free(x->ws);
    while (x->pool) {
        hnsw_scratch *s = x->pool;
        x->pool = s->next;
        scratch_free(s);
    }
    pthread_mutex_destroy(&x->write_mu);
    pthread_mutex_destroy(&x->pool_mu);
    pthread_rwlock_destroy(&x->grow_lock);
    free(x);
}

int hnsw_rebuild_map(hnsw_index *x, err_msg *e)
{
    uint32_t n = atomic_load(&x->n);
    for (uint32_t i = 0; i < n; i++) {
        if (x->deleted[i])
            continue;
        uint32_t other;
        if (vec_map_get(&x->map, x->labels[i], &other))
            return err_set(e, ERR_FORMAT, "hnsw: label %llu is on live nodes %u and %u",
                           (unsigned long long)x->labels[i], other, i);
        if (vec_map_put(&x->map, x->labels[i], i))
            return err_set(e, ERR_NOMEM, "hnsw: out of memory for the label map");
    }
    return 0;
}

/* ---------------------------------------------------------------- writing */

static unsigned random_level(hnsw_index *x)
{
    /* splitmix64 step, then a uniform in (0, 1]. */
    uint64_t z = (x->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    double u = ((double)(z >> 11) + 1.0) * 0x1.0p-53;
    double l = -log(u) * x->level_mult;
    return l >= HNSW_LEVEL_MAX ? HNSW_LEVEL_MAX : (unsigned)l;
}

/*
 * Repairs the lists that link to tombstone d: every live out-neighbour b of d
 * that links back to d gets a list re-selected (heuristic) from its other
 * links and d's links. Nodes that link to d without d linking to them keep
 * the link; d stays traversable, so paths through it still work.
 */
static int repair(hnsw_index *x, uint32_t d)
{
    hnsw_scratch *s = x->ws;
    for (unsigned l = 0; l <= x->levels[d]; l++) {
        size_t maxc = l ? x->M : x->M0;
        _Atomic uint32_t *dl = links_at(x, d, l);
        uint32_t dc = ld(&dl[0]);
        for (uint32_t j = 0; j < dc; j++) {
            uint32_t b = ld(&dl[1 + j]);
            if (b == d || is_deleted(x, b))
                continue;
            _Atomic uint32_t *bl = links_at(x, b, l);
            uint32_t bc = ld(&bl[0]);
            bool links_back = false;
            for (uint32_t t = 0; t < bc; t++)
                links_back |= ld(&bl[1 + t]) == d;
            if (!links_back)
                continue;
            int rc = scratch_visit_begin(x, s);
            if (rc)
                return rc;
            rc = grow_cands(&s->tmp2, &s->tmp2_cap, bc + dc);
            if (rc)
                return rc;
            s->visited[b] = s->gen;
            s->visited[d] = s->gen;
            const float *bv = vec_at(x, b);
            size_t n = 0;
            for (int pass = 0; pass < 2; pass++) {
                _Atomic uint32_t *src = pass ? dl : bl;
                uint32_t sc = pass ? dc : bc;
                for (uint32_t t = 0; t < sc; t++) {
                    uint32_t o = ld(&src[1 + t]);
                    if (s->visited[o] == s->gen || is_deleted(x, o))
                        continue;
                    s->visited[o] = s->gen;
                    s->tmp2[n++] = (hnsw_cand){dist(x, bv, vec_at(x, o)), o};
                }
            }
            if (n == 0)
                continue; // d was b's only way out: keep the link through the tombstone
            qsort(s->tmp2, n, sizeof *s->tmp2, cmp_cand);
            uint32_t ids[2 * HNSW_M_MAX];
            size_t k = select_heuristic(x, s, s->tmp2, n, maxc, ids);
            write_list(x, b, l, ids, k);
        }
    }
    return 0;
}

/*
 * Tombstones node id and repairs links. Caller holds write_mu. A repair cut
 * short by a failed scratch allocation leaves a valid graph (lists are only
 * ever replaced whole), merely less well connected, so it is not an error.
 */
static void tombstone(hnsw_index *x, uint32_t id)
{
    atomic_store_explicit(&x->deleted[id], 1, memory_order_release);
    atomic_fetch_add(&x->n_deleted, 1);
    (void)repair(x, id);
    uint64_t en = atomic_load(&x->entry);
    if ((uint32_t)(en >> 32) == id) {
        /* Move the entry point to the highest live node, if any. */
        uint32_t n = atomic_load(&x->n), best = HNSW_EMPTY;
        for (uint32_t i = 0; i < n; i++)
            if (!x->deleted[i] && (best == HNSW_EMPTY || x->levels[i] > x->levels[best]))
                best = i;
        if (best != HNSW_EMPTY)
            atomic_store(&x->entry, hnsw_entry_pack(best, x->levels[best]));
    }
}

int hnsw_index_delete(hnsw_index *x, uint64_t label, err_msg *e)
{
    pthread_mutex_lock(&x->write_mu);
    uint32_t id;
    int rc = 0;
    if (!vec_map_get(&x->map, label, &id)) {
        rc = err_set(e, ERR_NOT_FOUND, "hnsw: label %llu not found", (unsigned long long)label);
        goto out;
    }
    (void)vec_map_del(&x->map, label);
    tombstone(x, id);
out:
    pthread_mutex_unlock(&x->write_mu);
    return rc;
}

bool hnsw_index_contains(hnsw_index *x, uint64_t label)
{
    pthread_mutex_lock(&x->write_mu);
    uint32_t id;
    bool r = vec_map_get(&x->map, label, &id);
    pthread_mutex_unlock(&x->write_mu);
    return r;
}

/* Algorithm 1 for node id (already complete and published). Caller holds write_mu. */
static int insert_links(hnsw_index *x, uint32_t id, unsigned level, uint64_t en)
{
    hnsw_scratch *s = x->ws;
    const float *v = vec_at(x, id);
    uint32_t cur = (uint32_t)(en >> 32);
    unsigned top = (unsigned)(en & 0xffffffffu);
    float curd = dist(x, v, vec_at(x, cur));
    if (level < top)
        cur = greedy(x, s, v, cur, &curd, top, level);
    bool check = atomic_load(&x->n_deleted) > 0;
    for (int l = (int)MIN(level, top); l >= 0; l--) {
        int rc = search_layer(x, s, v, cur, curd, x->efc, (unsigned)l, NULL, check);
        if (rc == 0 && s->res_n == 0 && check)
            rc = search_layer(x, s, v, cur, curd, x->efc, (unsigned)l, NULL, false);
        if (rc)
            return rc;
        int n = res_sorted(s);
        if (n < 0)
            return n;
        /* Drop the node itself (it is published, so a search may meet it). */
        size_t m = 0;
        for (int i = 0; i < n; i++)
            if (s->tmp[i].id != id)
                s->tmp[m++] = s->tmp[i];
        if (m == 0)
            continue;
        cur = s->tmp[0].id;
        curd = s->tmp[0].d;
        size_t k = select_heuristic(x, s, s->tmp, m, x->M, s->sel);
        write_list(x, id, (unsigned)l, s->sel, k);
        for (size_t j = 0; j < k; j++) {
            rc = link_to(x, s, s->sel[j], id, (unsigned)l);
            if (rc)
                return rc;
        }
    }
    /* A deleted entry point means every node was deleted (tombstone() moves it
     * otherwise): the new live node takes over. */
    if (level > top || is_deleted(x, (uint32_t)(en >> 32)))
        atomic_store(&x->entry, hnsw_entry_pack(id, level));
    return 0;
}

int hnsw_index_add(hnsw_index *x, uint64_t label, const float *v, err_msg *e)
{
    if (!vec_all_finite(v, x->dim))
        return err_set(e, ERR_INVAL, "hnsw: vector for label %llu has a non-finite value",
                       (unsigned long long)label);
    pthread_mutex_lock(&x->write_mu);
    int rc = 0;
    uint32_t id = atomic_load_explicit(&x->n, memory_order_relaxed), old;
    if (id >= HNSW_NODES_MAX) {
        rc = err_set(e, ERR_TOO_LARGE, "hnsw: index is full (%u node slots)", HNSW_NODES_MAX);
        goto out;
    }
    if (id == x->cap) {
        size_t cap = MIN(x->cap * 2, (size_t)HNSW_NODES_MAX);
        pthread_rwlock_wrlock(&x->grow_lock);
        rc = resize(x, cap, e);
        pthread_rwlock_unlock(&x->grow_lock);
        if (rc)
            goto out;
    }
    bool had = vec_map_get(&x->map, label, &old);
    rc = vec_map_put(&x->map, label, id);
    if (rc) {
        rc = err_set(e, rc, "hnsw: out of memory for the label map");
        goto out;
    }
    unsigned level = random_level(x);
    if (level > 0) {
        size_t ub = (size_t)level * (1 + x->M) * sizeof(uint32_t);
        x->upper[id] = calloc(1, ub);
        if (!x->upper[id]) {
            if (had) {
                int prc = vec_map_put(&x->map, label, old); // overwrite: allocates nothing
                (void)prc;
            } else
                (void)vec_map_del(&x->map, label);
            rc = err_set(e, ERR_NOMEM, "hnsw: out of memory for %u levels of links", level);
            goto out;
        }
        x->upper_bytes += ub;
    }
    /* An update: the old node goes first, so no search returns the label twice. */
    if (had)
        tombstone(x, old);
    float *dst = x->vecs + (size_t)id * x->row;
    memcpy(dst, v, x->dim * sizeof(float));
    if (x->metric == VEC_METRIC_COSINE)
        vec_normalize(dst, x->dim);
    x->labels[id] = label;
    x->levels[id] = (uint8_t)level;
    atomic_store_explicit(&x->deleted[id], 0, memory_order_relaxed);
    st(&links_at(x, id, 0)[0], 0);
    uint64_t en = atomic_load(&x->entry);
    /* Publish the complete (still unlinked) node; links to it come after. */
    atomic_store_explicit(&x->n, id + 1, memory_order_release);
    if ((uint32_t)(en >> 32) == HNSW_EMPTY) {
        atomic_store(&x->entry, hnsw_entry_pack(id, level));
        goto out;
    }
    x->ws->ndist = 0;
    rc = insert_links(x, id, level, en);
    if (rc) {
        /* Half-linked but valid: retire it so the failed call leaves no label behind. */
        (void)vec_map_del(&x->map, label);
        tombstone(x, id);
        rc = err_set(e, rc, "hnsw: out of memory linking label %llu", (unsigned long long)label);
    }
out:
    pthread_mutex_unlock(&x->write_mu);
    return rc;
}

/* ---------------------------------------------------------------- search */

/*
 * Estimates the share of live nodes passing f from up to 256 evenly spaced
 * slots. Costs at most 256 filter calls.
 */
static double filter_share(const hnsw_index *x, uint32_t n, const vec_filter *f)
{
    uint32_t samples = n < 256 ? n : 256, live = 0, pass = 0;
    for (uint32_t i = 0; i < samples; i++) {
        uint32_t id = (uint32_t)(((uint64_t)i * n) / samples);
        if (is_deleted(x, id))
            continue;
        live++;
        pass += f->fn(f->ctx, x->labels[id]);
    }
    return live ? (double)pass / live : 0.0;
}

/* Exact scan of slots [0, n) into s->res (a max-heap of k). */
static void exact_scan(const hnsw_index *x, hnsw_scratch *s, const float *q, uint32_t n, size_t k,
                       const vec_filter *f)
{
    s->res_n = 0;
    for (uint32_t id = 0; id < n; id++) {
        if (!eligible(x, id, f))
            continue;
        float d = dist(x, q, vec_at(x, id));
        s->ndist++;
        if (s->res_n < k) {
            s->res[s->res_n++] = (hnsw_cand){d, id};
            maxheap_up(s->res, s->res_n - 1);
        } else if (d < s->res[0].d) {
            maxheap_pop(s->res, &s->res_n);
            s->res[s->res_n++] = (hnsw_cand){d, id};
            maxheap_up(s->res, s->res_n - 1);
        }
    }
}

int hnsw_index_search(hnsw_index *x, const float *q, size_t k, const hnsw_search_params *p,
                      vec_hit *out, err_msg *e)
{
    if (k == 0 || k > HNSW_EF_MAX)
        return err_set(e, ERR_INVAL, "hnsw: k %zu is outside 1..%d", k, HNSW_EF_MAX);
    size_t ef = p && p->ef ? p->ef : k;
    ef = MIN(MAX(ef, k), (size_t)HNSW_EF_MAX);
    const vec_filter *f = p && p->filter && p->filter->fn ? p->filter : NULL;
    double scan_below = p && p->scan_below != 0 ? p->scan_below : 0.02;
    if (p && p->stats)
        *p->stats = (hnsw_search_stats){0};

    pthread_rwlock_rdlock(&x->grow_lock);
    hnsw_scratch *s = scratch_get(x);
    int rc = 0;
    if (!s || grow_cands(&s->res, &s->res_cap, ef + 2)) {
        rc = err_set(e, ERR_NOMEM, "hnsw: out of memory for search scratch");
        goto out;
    }
    s->ndist = 0;
    memcpy(s->q, q, x->dim * sizeof(float));
    if (x->metric == VEC_METRIC_COSINE)
        vec_normalize(s->q, x->dim);
    uint64_t en = atomic_load_explicit(&x->entry, memory_order_acquire);
    uint32_t ep = (uint32_t)(en >> 32), n = atomic_load_explicit(&x->n, memory_order_acquire);
    s->res_n = 0;
    bool scan = false;
    if (ep != HNSW_EMPTY && f)
        scan = n <= 2 * ef || (scan_below > 0 && filter_share(x, n, f) < scan_below);
    if (ep == HNSW_EMPTY) {
        /* empty index */
    } else if (scan) {
        exact_scan(x, s, s->q, n, k, f);
    } else {
        float d = dist(x, s->q, vec_at(x, ep));
        unsigned top = (unsigned)(en & 0xffffffffu);
        ep = greedy(x, s, s->q, ep, &d, top, 0);
        bool check = f || atomic_load_explicit(&x->n_deleted, memory_order_relaxed) > 0;
        rc = search_layer(x, s, s->q, ep, d, ef, 0, f, check);
        if (rc) {
            rc = err_set(e, rc, "hnsw: out of memory for search scratch");
            goto out;
        }
    }
    while (s->res_n > k)
        maxheap_pop(s->res, &s->res_n);
    size_t m = s->res_n;
    while (s->res_n) {
        hnsw_cand c = s->res[0];
        out[s->res_n - 1] = (vec_hit){x->labels[c.id], c.d};
        maxheap_pop(s->res, &s->res_n);
    }
    rc = (int)m;
    if (p && p->stats)
        *p->stats = (hnsw_search_stats){.distances = s->ndist, .exact_scan = scan};
out:
    if (s)
        scratch_put(x, s);
    pthread_rwlock_unlock(&x->grow_lock);
    return rc;
}

/* ---------------------------------------------------------------- info */

size_t hnsw_index_count(hnsw_index *x)
{
    pthread_mutex_lock(&x->write_mu);
    size_t n = x->map.used;
    pthread_mutex_unlock(&x->write_mu);
    return n;
}

size_t hnsw_index_deleted(hnsw_index *x)
{
    return atomic_load(&x->n_deleted);
}

size_t hnsw_index_memory_bytes(hnsw_index *x)
{
    pthread_mutex_lock(&x->write_mu);
    size_t b = sizeof *x + x->cap * (x->row * sizeof(float) + (1 + x->M0) * sizeof(uint32_t) +
                                     sizeof(void *) + 1 + 1 + sizeof(uint64_t));
    b += x->upper_bytes + vec_map_bytes(&x->map) + scratch_bytes(x, x->ws);
    pthread_mutex_lock(&x->pool_mu);
    for (hnsw_scratch *s = x->pool; s; s = s->next)
        b += scratch_bytes(x, s);
    pthread_mutex_unlock(&x->pool_mu);
    pthread_mutex_unlock(&x->write_mu);
    return b;
}

hnsw_config hnsw_index_config(hnsw_index *x)
{
    pthread_mutex_lock(&x->write_mu);
    hnsw_config c = {.dim = x->dim,
                     .metric = x->metric,
                     .M = x->M,
                     .ef_construction = x->efc,
                     .capacity = x->cap,
                     .seed = x->seed};
    pthread_mutex_unlock(&x->write_mu);
    return c;
}
