/*
 * rag/bm25 — the inverted index and BM25 scoring (formulas in rag.h), and
 * reciprocal rank fusion.
 *
 * Data: terms (string -> id, open addressing) each with a postings array of
 * (doc index, tf); docs (label -> index, open addressing) each with its
 * length in terms and the ids of its distinct terms, so removal touches only
 * its own postings. Removed docs stay as dead slots; re-adding a label makes a
 * new slot.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/lex.h"
#include "rag/rag.h"

typedef struct posting {
    uint32_t doc;
    uint32_t tf;
} posting;

typedef struct term {
    char *s;
    size_t n;
    uint64_t h;
    posting *p;
    size_t np, cap;
} term;

typedef struct doc {
    uint64_t label;
    uint32_t len;      // terms
    bool is_alive;
    uint32_t *terms;   // distinct term ids
    uint32_t nterms;
} doc;

struct rag_bm25 {
    rag_bm25_config cfg;
    term *terms;
    size_t nterms, capterms;
    uint32_t *tmap; // term id + 1, 0 empty; size tmask + 1
    size_t tmask;
    doc *docs;
    size_t ndocs, capdocs;
    uint32_t *dmap; // doc index + 1, 0 empty (dead docs are dropped from it)
    size_t dmask;
    size_t n_alive;
    uint64_t total_len; // sum of alive docs' lengths
};

rag_bm25_config rag_bm25_config_default(void)
{
    return (rag_bm25_config){1.2, 0.75};
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int rag_bm25_new(const rag_bm25_config *cfg, rag_bm25 **out, err_msg *e)
{
    *out = NULL;
    if (!(cfg->k1 >= 0 && cfg->k1 < 100) || !(cfg->b >= 0 && cfg->b <= 1))
        return err_set(e, ERR_INVAL, "rag: bm25 k1 %g must be in [0, 100) and b %g in [0, 1]",
                       cfg->k1, cfg->b);
    rag_bm25 *x = calloc(1, sizeof *x);
    if (!x)
        return err_set(e, ERR_NOMEM, "rag: out of memory");
    x->cfg = *cfg;
    x->tmask = 1023;
    x->dmask = 255;
    x->tmap = calloc(x->tmask + 1, sizeof *x->tmap);
    x->dmap = calloc(x->dmask + 1, sizeof *x->dmap);
    if (!x->tmap || !x->dmap) {
        rag_bm25_free(x);
        return err_set(e, ERR_NOMEM, "rag: out of memory");
    }
    *out = x;
    return 0;
}

void rag_bm25_free(rag_bm25 *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nterms; i++) {
        free(x->terms[i].s);
        free(x->terms[i].p);
    }
    for (size_t i = 0; i < x->ndocs; i++)
        free(x->docs[i].terms);
    free(x->terms);
    free(x->tmap);
    free(x->docs);
    free(x->dmap);
    free(x);
}

size_t rag_bm25_count(const rag_bm25 *x)
{
    return x->n_alive;
}

/* ---------------------------------------------------------------- term extraction */

typedef int (*term_fn)(void *ctx, const char *s, size_t n);

/* Calls fn for every index term of text: lower-cased words, CJK bigrams (or a lone CJK char). */
static int each_term(const char *text, size_t len, term_fn fn, void *ctx)
{
    char cur[LEX_TERM_MAX], prev[8], pair[16];
    size_t pos = 0, nprev = 0, prev_end = 0, run = 0;
    lex_term t;
    int rc = 0;
    while (rc == 0 && lex_next(text, len, &pos, &t)) {
        size_t n = lex_lower(text + t.off, t.len, cur, sizeof cur);
        bool joins = t.is_cjk && run > 0 && prev_end == t.off;
        if (run == 1 && !joins)
            rc = fn(ctx, prev, nprev); // a lone CJK character ended
        if (rc)
            break;
        if (!t.is_cjk) {
            run = 0;
            rc = fn(ctx, cur, n);
            continue;
        }
        if (joins && n <= 4 && nprev <= 4) {
            memcpy(pair, prev, nprev);
            memcpy(pair + nprev, cur, n);
            rc = fn(ctx, pair, nprev + n);
            run++;
        } else {
            run = 1;
        }
        memcpy(prev, cur, n <= 4 ? n : 4);
        nprev = n <= 4 ? n : 4;
        prev_end = t.off + t.len;
    }
    if (rc == 0 && run == 1)
        rc = fn(ctx, prev, nprev);
    return rc;
}

/* ---------------------------------------------------------------- maps */

static int64_t term_find(const rag_bm25 *x, const char *s, size_t n, uint64_t h)
{
    for (size_t i = h & x->tmask;; i = (i + 1) & x->tmask) {
        uint32_t v = x->tmap[i];
        if (!v)
            return -1;
        const term *t = &x->terms[v - 1];
        if (t->h == h && t->n == n && memcmp(t->s, s, n) == 0)
            return v - 1;
    }
}

static int tmap_grow(rag_bm25 *x)
{
    size_t nm = (x->tmask + 1) * 2 - 1;
    uint32_t *m = calloc(nm + 1, sizeof *m);
    if (!m)
        return ERR_NOMEM;
    for (size_t k = 0; k < x->nterms; k++) {
        size_t i = x->terms[k].h & nm;
        while (m[i])
            i = (i + 1) & nm;
        m[i] = (uint32_t)k + 1;
    }
    free(x->tmap);
    x->tmap = m;
    x->tmask = nm;
    return 0;
}

/* Id of term s (created when absent), or a negative ERR_NOMEM. */
static int64_t term_get(rag_bm25 *x, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n);
    int64_t id = term_find(x, s, n, h);
    if (id >= 0)
        return id;
    if ((x->nterms + 1) * 2 > x->tmask + 1 && tmap_grow(x) != 0)
        return ERR_NOMEM;
    if (x->nterms == x->capterms) {
        size_t nc = x->capterms ? x->capterms * 2 : 256;
        term *nt = realloc(x->terms, nc * sizeof *nt);
        if (!nt)
            return ERR_NOMEM;
        x->terms = nt;
        x->capterms = nc;
    }
    term *t = &x->terms[x->nterms];
    memset(t, 0, sizeof *t);
    if (!(t->s = malloc(n ? n : 1)))
        return ERR_NOMEM;
    memcpy(t->s, s, n);
    t->n = n;
    t->h = h;
    size_t i = h & x->tmask;
    while (x->tmap[i])
        i = (i + 1) & x->tmask;
    x->tmap[i] = (uint32_t)x->nterms + 1;
    return (int64_t)x->nterms++;
}

static int64_t doc_find(const rag_bm25 *x, uint64_t label, size_t *slot)
{
    for (size_t i = hash_u64(label) & x->dmask;; i = (i + 1) & x->dmask) {
        uint32_t v = x->dmap[i];
        if (!v) {
            *slot = i;
            return -1;
        }
        if (x->docs[v - 1].label == label) {
            *slot = i;
            return v - 1;
        }
    }
}

static int dmap_rebuild(rag_bm25 *x, size_t nm)
{
    uint32_t *m = calloc(nm + 1, sizeof *m);
    if (!m)
        return ERR_NOMEM;
    for (size_t k = 0; k < x->ndocs; k++) {
        if (!x->docs[k].is_alive)
            continue;
        size_t i = hash_u64(x->docs[k].label) & nm;
        while (m[i])
            i = (i + 1) & nm;
        m[i] = (uint32_t)k + 1;
    }
    free(x->dmap);
    x->dmap = m;
    x->dmask = nm;
    return 0;
}

/* ---------------------------------------------------------------- add / remove */

typedef struct add_ctx {
    rag_bm25 *x;
    uint32_t doc;
    uint32_t len;
    uint32_t *ids; // distinct term ids of the doc
    size_t nids, cap;
} add_ctx;

static int add_term(void *arg, const char *s, size_t n)
{
    add_ctx *a = arg;
    rag_bm25 *x = a->x;
    int64_t id = term_get(x, s, n);
    if (id < 0)
        return ERR_NOMEM;
    a->len++;
    term *t = &x->terms[id];
    if (t->np && t->p[t->np - 1].doc == a->doc) { // postings of this doc are appended last
        t->p[t->np - 1].tf++;
        return 0;
    }
    if (t->np == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4;
        posting *np_ = realloc(t->p, nc * sizeof *np_);
        if (!np_)
            return ERR_NOMEM;
        t->p = np_;
        t->cap = nc;
    }
    t->p[t->np++] = (posting){a->doc, 1};
    if (a->nids == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 32;
        uint32_t *ni = realloc(a->ids, nc * sizeof *ni);
        if (!ni)
            return ERR_NOMEM;
        a->ids = ni;
        a->cap = nc;
    }
    a->ids[a->nids++] = (uint32_t)id;
    return 0;
}

static void drop_postings(rag_bm25 *x, uint32_t d, const uint32_t *ids, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        term *t = &x->terms[ids[k]];
        for (size_t i = 0; i < t->np; i++)
            if (t->p[i].doc == d) {
                memmove(t->p + i, t->p + i + 1, (t->np - i - 1) * sizeof *t->p);
                t->np--;
                break;
            }
    }
}

int rag_bm25_remove(rag_bm25 *x, uint64_t label)
{
    size_t slot;
    int64_t d = doc_find(x, label, &slot);
    if (d < 0)
        return ERR_NOT_FOUND;
    doc *D = &x->docs[d];
    drop_postings(x, (uint32_t)d, D->terms, D->nterms);
    free(D->terms);
    D->terms = NULL;
    D->nterms = 0;
    D->is_alive = false;
    x->total_len -= D->len;
    x->n_alive--;
    // linear-probing delete by backward shift: later entries of the probe run move up
    // into the hole when their home slot does not lie cyclically in (hole, j]
    size_t i = slot, j = slot;
    x->dmap[i] = 0;
    for (;;) {
        j = (j + 1) & x->dmask;
        if (!x->dmap[j])
            break;
        size_t k = hash_u64(x->docs[x->dmap[j] - 1].label) & x->dmask;
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            x->dmap[i] = x->dmap[j];
            x->dmap[j] = 0;
            i = j;
        }
    }
    return 0;
}

int rag_bm25_add(rag_bm25 *x, uint64_t label, const char *text, size_t len)
{
    size_t slot;
    if (doc_find(x, label, &slot) >= 0 && rag_bm25_remove(x, label) != 0)
        return ERR_NOMEM;
    if (x->ndocs >= UINT32_MAX - 1)
        return ERR_TOO_LARGE;
    if ((x->n_alive + 1) * 2 > x->dmask + 1 && dmap_rebuild(x, (x->dmask + 1) * 2 - 1) != 0)
        return ERR_NOMEM;
    if (x->ndocs == x->capdocs) {
        size_t nc = x->capdocs ? x->capdocs * 2 : 64;
        doc *nd = realloc(x->docs, nc * sizeof *nd);
        if (!nd)
            return ERR_NOMEM;
        x->docs = nd;
        x->capdocs = nc;
    }
    add_ctx a = {x, (uint32_t)x->ndocs, 0, NULL, 0, 0};
    int rc = each_term(text, len, add_term, &a);
    if (rc) {
        drop_postings(x, a.doc, a.ids, a.nids);
        free(a.ids);
        return rc;
    }
    x->docs[x->ndocs] = (doc){label, a.len, true, a.ids, (uint32_t)a.nids};
    (void)doc_find(x, label, &slot);
    x->dmap[slot] = (uint32_t)x->ndocs + 1;
    x->ndocs++;
    x->n_alive++;
    x->total_len += a.len;
    return 0;
}

/* ---------------------------------------------------------------- search */

typedef struct q_ctx {
    const rag_bm25 *x;
    int64_t *ids;
    size_t n, cap;
    bool failed;
} q_ctx;

static int q_term(void *arg, const char *s, size_t n)
{
    q_ctx *q = arg;
    int64_t id = term_find(q->x, s, n, hash_bytes(s, n));
    if (id < 0)
        return 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->ids[i] == id)
            return 0; // distinct query terms
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 16;
        int64_t *ni = realloc(q->ids, nc * sizeof *ni);
        if (!ni)
            return ERR_NOMEM;
        q->ids = ni;
        q->cap = nc;
    }
    q->ids[q->n++] = id;
    return 0;
}

static int hit_cmp(const void *a, const void *b)
{
    const rag_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->label < y->label ? -1 : x->label > y->label;
}

int rag_bm25_search(const rag_bm25 *x, const char *q, size_t qlen, size_t k,
                    const vec_filter *filter, rag_hit *out)
{
    if (k == 0)
        return ERR_INVAL;
    if (x->n_alive == 0)
        return 0;
    q_ctx qc = {x, NULL, 0, 0, false};
    if (each_term(q, qlen, q_term, &qc) != 0) {
        free(qc.ids);
        return ERR_NOMEM;
    }
    double *score = calloc(x->ndocs ? x->ndocs : 1, sizeof *score);
    if (!score) {
        free(qc.ids);
        return ERR_NOMEM;
    }
    double N = (double)x->n_alive, avgdl = (double)x->total_len / N;
    double k1 = x->cfg.k1, b = x->cfg.b;
    for (size_t i = 0; i < qc.n; i++) {
        const term *t = &x->terms[qc.ids[i]];
        double nt = (double)t->np;
        double idf = log(1.0 + (N - nt + 0.5) / (nt + 0.5));
        for (size_t j = 0; j < t->np; j++) {
            const doc *D = &x->docs[t->p[j].doc];
            double tf = t->p[j].tf;
            double norm = avgdl > 0 ? 1.0 - b + b * (double)D->len / avgdl : 1.0;
            score[t->p[j].doc] += idf * tf * (k1 + 1.0) / (tf + k1 * norm);
        }
    }
    free(qc.ids);
    size_t nc = 0;
    rag_hit *cand = malloc(x->ndocs * sizeof *cand);
    if (!cand) {
        free(score);
        return ERR_NOMEM;
    }
    for (size_t d = 0; d < x->ndocs; d++) {
        if (!(score[d] > 0) || !x->docs[d].is_alive)
            continue;
        if (filter && filter->fn && !filter->fn(filter->ctx, x->docs[d].label))
            continue;
        cand[nc++] = (rag_hit){x->docs[d].label, score[d]};
    }
    free(score);
    qsort(cand, nc, sizeof *cand, hit_cmp);
    size_t n = nc < k ? nc : k;
    memcpy(out, cand, n * sizeof *out);
    free(cand);
    return (int)n;
}

/* ---------------------------------------------------------------- fusion */

int rag_rrf(const rag_hit *a, size_t na, const rag_hit *b, size_t nb, size_t rrf_k, size_t k,
            rag_hit *out)
{
    rag_hit *all = malloc((na + nb ? na + nb : 1) * sizeof *all);
    if (!all)
        return ERR_NOMEM;
    size_t n = 0;
    const rag_hit *lists[2] = {a, b};
    size_t lens[2] = {na, nb};
    for (int l = 0; l < 2; l++)
        for (size_t r = 0; r < lens[l]; r++) {
            double s = 1.0 / (double)(rrf_k + r + 1);
            size_t i = 0;
            while (i < n && all[i].label != lists[l][r].label)
                i++;
            if (i == n)
                all[n++] = (rag_hit){lists[l][r].label, 0};
            all[i].score += s;
        }
    qsort(all, n, sizeof *all, hit_cmp);
    size_t m = n < k ? n : k;
    memcpy(out, all, m * sizeof *out);
    free(all);
    return (int)m;
}
