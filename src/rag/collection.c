/*
 * rag/collection — documents, chunks, the vector index and BM25 of one
 * collection; queries in vector, keyword and hybrid modes; persistence.
 *
 * Data: docs is an array of owned rdoc pointers in insertion order (lookup by
 * id is a linear scan: collections here are thousands of documents, not
 * millions); chunks is an array sorted by label (labels only grow), each
 * pointing at its rdoc; deleted chunks are marked dead and compacted when
 * they reach half the array. The vector index and BM25 hold exactly the live
 * chunk labels.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/lex.h"
#include "rag/rag.h"

typedef struct rdoc {
    char *id;
    char *text;
    size_t text_len;
    char *meta;
    size_t meta_len;
    size_t n_chunks;
} rdoc;

typedef struct rchunk {
    uint64_t label;
    rdoc *doc;
    size_t off, len, n_tokens;
    bool is_alive;
} rchunk;

struct rag_collection {
    char name[RAG_NAME_MAX + 1];
    rag_collection_config cfg;
    rag_embedder emb;
    char emb_name[128];
    hnsw_index *vec;
    rag_bm25 *bm25;
    rdoc **docs;
    size_t ndocs, capdocs;
    rchunk *chunks;
    size_t nchunks, capchunks, ndead;
    uint64_t next_label;
};

int rag_mode_parse(const char *s, rag_mode *out)
{
    static const char *const names[] = {"vector", "keyword", "hybrid"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (rag_mode)i;
            return 0;
        }
    return ERR_INVAL;
}

const char *rag_mode_name(rag_mode m)
{
    return m == RAG_MODE_VECTOR ? "vector" : m == RAG_MODE_KEYWORD ? "keyword" : "hybrid";
}

static int lexical_embed(void *ctx, const char *const *texts, const size_t *lens, size_t n,
                         float *out, err_msg *e)
{
    (void)ctx;
    (void)e;
    for (size_t i = 0; i < n; i++)
        lex_embed(texts[i], lens[i], out + i * LEX_EMBED_DIM, LEX_EMBED_DIM);
    return 0;
}

rag_embedder rag_embedder_lexical(void)
{
    return (rag_embedder){LEX_EMBED_NAME, LEX_EMBED_DIM, lexical_embed, NULL};
}

rag_collection_config rag_collection_config_default(void)
{
    return (rag_collection_config){VEC_METRIC_COSINE, rag_chunk_config_default(),
                                   rag_bm25_config_default()};
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RAG_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int rag_collection_new(const char *name, const rag_collection_config *cfg,
                       const rag_embedder *emb, rag_collection **out, err_msg *e)
{
    *out = NULL;
    if (!name_ok(name))
        return err_set(e, ERR_INVAL, "rag: collection name \"%.*s\" must be 1..%d characters of "
                       "A-Z a-z 0-9 _ . - (not starting with '.')", 64, name, RAG_NAME_MAX);
    if (!emb || !emb->fn || emb->dim < 1 || emb->dim > VEC_DIM_MAX || !emb->name ||
        strlen(emb->name) >= 128)
        return err_set(e, ERR_INVAL, "rag: the embedder is incomplete (name, dim 1..%d, fn)",
                       VEC_DIM_MAX);
    rag_collection *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(e, ERR_NOMEM, "rag: out of memory");
    snprintf(c->name, sizeof c->name, "%s", name);
    c->cfg = *cfg;
    c->emb = *emb;
    snprintf(c->emb_name, sizeof c->emb_name, "%s", emb->name);
    c->emb.name = c->emb_name;
    c->next_label = 1;
    hnsw_config hc = hnsw_config_default();
    hc.dim = emb->dim;
    hc.metric = cfg->metric;
    int rc;
    if ((rc = hnsw_index_new(&hc, &c->vec, e)) < 0 || (rc = rag_bm25_new(&cfg->bm25, &c->bm25, e))) {
        rag_collection_free(c);
        return rc;
    }
    // check the chunk budget now rather than at the first upsert
    rag_chunk *tmp;
    size_t ntmp;
    if ((rc = rag_chunk_text("", 0, &cfg->chunk, &tmp, &ntmp, e)) < 0) {
        rag_collection_free(c);
        return rc;
    }
    free(tmp);
    *out = c;
    return 0;
}

static void rdoc_free(rdoc *d)
{
    if (!d)
        return;
    free(d->id);
    free(d->text);
    free(d->meta);
    free(d);
}

void rag_collection_free(rag_collection *c)
{
    if (!c)
        return;
    hnsw_index_free(c->vec);
    rag_bm25_free(c->bm25);
    for (size_t i = 0; i < c->ndocs; i++)
        rdoc_free(c->docs[i]);
    free(c->docs);
    free(c->chunks);
    free(c);
}

const char *rag_collection_name(const rag_collection *c)
{
    return c->name;
}

const rag_embedder *rag_collection_embedder(const rag_collection *c)
{
    return &c->emb;
}

const rag_collection_config *rag_collection_config_get(const rag_collection *c)
{
    return &c->cfg;
}

size_t rag_collection_doc_count(const rag_collection *c)
{
    return c->ndocs;
}

size_t rag_collection_chunk_count(const rag_collection *c)
{
    return c->nchunks - c->ndead;
}

static int64_t doc_index(const rag_collection *c, const char *id)
{
    for (size_t i = 0; i < c->ndocs; i++)
        if (strcmp(c->docs[i]->id, id) == 0)
            return (int64_t)i;
    return -1;
}

static void view_of(const rdoc *d, rag_doc_view *v)
{
    *v = (rag_doc_view){d->id, d->text, d->text_len, d->meta, d->meta_len, d->n_chunks};
}

int rag_collection_get(const rag_collection *c, const char *id, rag_doc_view *out)
{
    int64_t i = doc_index(c, id);
    if (i < 0)
        return ERR_NOT_FOUND;
    view_of(c->docs[i], out);
    return 0;
}

int rag_collection_doc_at(const rag_collection *c, size_t i, rag_doc_view *out)
{
    if (i >= c->ndocs)
        return ERR_NOT_FOUND;
    view_of(c->docs[i], out);
    return 0;
}

static rchunk *chunk_find(const rag_collection *c, uint64_t label)
{
    size_t lo = 0, hi = c->nchunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->chunks[mid].label < label)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->nchunks && c->chunks[lo].label == label && c->chunks[lo].is_alive)
        return &c->chunks[lo];
    return NULL;
}

static void compact(rag_collection *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->nchunks; i++)
        if (c->chunks[i].is_alive)
            c->chunks[k++] = c->chunks[i];
    c->nchunks = k;
    c->ndead = 0;
}

/* Removes every chunk of d from the indexes and marks it dead. */
static void drop_chunks(rag_collection *c, rdoc *d)
{
    for (size_t i = 0; i < c->nchunks; i++) {
        rchunk *ch = &c->chunks[i];
        if (!ch->is_alive || ch->doc != d)
            continue;
        (void)!hnsw_index_delete(c->vec, ch->label, NULL);
        (void)!rag_bm25_remove(c->bm25, ch->label);
        ch->is_alive = false;
        c->ndead++;
    }
    if (c->ndead * 2 > c->nchunks)
        compact(c);
}

void rag_collection_set_vocab(rag_collection *c, const struct tok_vocab *vocab)
{
    c->cfg.chunk.vocab = vocab;
}

int rag_collection_delete(rag_collection *c, const char *id)
{
    int64_t i = doc_index(c, id);
    if (i < 0)
        return ERR_NOT_FOUND;
    rdoc *d = c->docs[i];
    drop_chunks(c, d);
    memmove(c->docs + i, c->docs + i + 1, (c->ndocs - (size_t)i - 1) * sizeof *c->docs);
    c->ndocs--;
    rdoc_free(d);
    return 0;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Indexes the chunks ch[0..n) of d with embeddings vecs (n x dim), labels from next_label. */
static int index_chunks(rag_collection *c, rdoc *d, const rag_chunk *ch, size_t n,
                        const float *vecs, err_msg *e)
{
    if (c->nchunks + n > c->capchunks) {
        size_t nc = c->capchunks ? c->capchunks : 64;
        while (nc < c->nchunks + n)
            nc *= 2;
        rchunk *nch = realloc(c->chunks, nc * sizeof *nch);
        if (!nch)
            return err_set(e, ERR_NOMEM, "rag: out of memory");
        c->chunks = nch;
        c->capchunks = nc;
    }
    size_t done = 0;
    int rc = 0;
    for (; done < n; done++) {
        uint64_t label = c->next_label + done;
        if ((rc = hnsw_index_add(c->vec, label, vecs + done * c->emb.dim, e)) < 0)
            break;
        if ((rc = rag_bm25_add(c->bm25, label, d->text + ch[done].off, ch[done].len)) < 0) {
            (void)!hnsw_index_delete(c->vec, label, NULL);
            err_set(e, rc, "rag: out of memory indexing a chunk");
            break;
        }
    }
    if (rc < 0) { // roll back what was added
        for (size_t i = 0; i < done; i++) {
            (void)!hnsw_index_delete(c->vec, c->next_label + i, NULL);
            (void)!rag_bm25_remove(c->bm25, c->next_label + i);
        }
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        c->chunks[c->nchunks++] =
            (rchunk){c->next_label + i, d, ch[i].off, ch[i].len, ch[i].n_tokens, true};
    c->next_label += n;
    d->n_chunks = n;
    return 0;
}

int rag_collection_upsert(rag_collection *c, const char *id, const char *text, size_t len,
                          const char *meta, size_t meta_len, size_t *n_chunks, size_t *n_tokens,
                          err_msg *e)
{
    size_t idn = strlen(id);
    if (idn == 0 || idn > RAG_DOC_ID_MAX)
        return err_set(e, ERR_INVAL, "rag: document id must be 1..%d bytes (got %zu)",
                       RAG_DOC_ID_MAX, idn);
    if (meta_len > RAG_META_MAX)
        return err_set(e, ERR_INVAL, "rag: metadata of %zu bytes is over the %d-byte limit",
                       meta_len, RAG_META_MAX);
    rag_chunk *ch = NULL;
    size_t n = 0;
    int rc = rag_chunk_text(text, len, &c->cfg.chunk, &ch, &n, e);
    if (rc < 0)
        return rc;
    rdoc *d = calloc(1, sizeof *d);
    float *vecs = malloc((n ? n : 1) * c->emb.dim * sizeof *vecs);
    const char **texts = malloc((n ? n : 1) * sizeof *texts);
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    if (!d || !vecs || !texts || !lens || !(d->id = dup_bytes(id, idn)) ||
        !(d->text = dup_bytes(text, len)) || (meta && !(d->meta = dup_bytes(meta, meta_len)))) {
        rc = err_set(e, ERR_NOMEM, "rag: out of memory");
        goto out;
    }
    d->text_len = len;
    d->meta_len = meta ? meta_len : 0;
    size_t tok = 0;
    for (size_t i = 0; i < n; i++) {
        texts[i] = d->text + ch[i].off;
        lens[i] = ch[i].len;
        tok += ch[i].n_tokens;
    }
    if (n && (rc = c->emb.fn(c->emb.ctx, texts, lens, n, vecs, e)) < 0)
        goto out;
    if (c->ndocs == c->capdocs) {
        size_t nc = c->capdocs ? c->capdocs * 2 : 16;
        rdoc **nd = realloc(c->docs, nc * sizeof *nd);
        if (!nd) {
            rc = err_set(e, ERR_NOMEM, "rag: out of memory");
            goto out;
        }
        c->docs = nd;
        c->capdocs = nc;
    }
    if ((rc = index_chunks(c, d, ch, n, vecs, e)) < 0)
        goto out;
    // the new document is indexed: now retire the old one, if any
    int64_t old = doc_index(c, id);
    if (old >= 0) {
        rdoc *od = c->docs[old];
        drop_chunks(c, od);
        rdoc_free(od);
        c->docs[old] = d;
    } else {
        c->docs[c->ndocs++] = d;
    }
    d = NULL;
    if (n_chunks)
        *n_chunks = n;
    if (n_tokens)
        *n_tokens = tok;
    rc = 0;
out:
    rdoc_free(d);
    free(vecs);
    free(texts);
    free(lens);
    free(ch);
    return rc;
}

/* ---------------------------------------------------------------- query */

typedef struct filt_ctx {
    rag_collection *c;
    const rag_query *q;
} filt_ctx;

static bool label_filter(void *arg, uint64_t label)
{
    filt_ctx *f = arg;
    rchunk *ch = chunk_find(f->c, label);
    if (!ch)
        return false;
    rag_doc_view v;
    view_of(ch->doc, &v);
    return f->q->filter(f->q->filter_ctx, &v);
}

static double similarity(vec_metric m, float dist)
{
    return m == VEC_METRIC_L2 ? 1.0 / (1.0 + (double)dist) : 1.0 - (double)dist;
}

static int vector_hits(rag_collection *c, const rag_query *q, const vec_filter *vf, size_t k,
                       rag_hit *out, err_msg *e)
{
    float *qv = malloc(c->emb.dim * sizeof *qv);
    vec_hit *vh = malloc(k * sizeof *vh);
    int rc;
    if (!qv || !vh) {
        rc = err_set(e, ERR_NOMEM, "rag: out of memory");
        goto out;
    }
    const char *t = q->text;
    size_t l = q->len;
    if ((rc = c->emb.fn(c->emb.ctx, &t, &l, 1, qv, e)) < 0)
        goto out;
    hnsw_search_params sp = {0};
    sp.ef = k < 64 ? 64 : k;
    sp.filter = vf;
    if ((rc = hnsw_index_search(c->vec, qv, k, &sp, vh, e)) < 0)
        goto out;
    for (int i = 0; i < rc; i++)
        out[i] = (rag_hit){vh[i].label, similarity(c->cfg.metric, vh[i].dist)};
out:
    free(qv);
    free(vh);
    return rc;
}

int rag_collection_query(rag_collection *c, const rag_query *q, rag_result *out, err_msg *e)
{
    if (q->top_k < 1 || q->top_k > HNSW_EF_MAX)
        return err_set(e, ERR_INVAL, "rag: top_k %zu is outside [1, %d]", q->top_k, HNSW_EF_MAX);
    filt_ctx fc = {c, q};
    vec_filter vf = {label_filter, &fc};
    const vec_filter *fp = q->filter ? &vf : NULL;
    size_t cand = q->mode == RAG_MODE_HYBRID ? MAX(4 * q->top_k, (size_t)20) : q->top_k;
    if (cand > HNSW_EF_MAX)
        cand = HNSW_EF_MAX;
    rag_hit *a = malloc(cand * sizeof *a), *b = malloc(cand * sizeof *b),
            *f = malloc(q->top_k * sizeof *f);
    int na = 0, nb = 0, n = 0;
    if (!a || !b || !f) {
        n = err_set(e, ERR_NOMEM, "rag: out of memory");
        goto out;
    }
    if (c->nchunks - c->ndead == 0)
        goto out;
    if (q->mode != RAG_MODE_KEYWORD && (na = vector_hits(c, q, fp, cand, a, e)) < 0) {
        n = na;
        goto out;
    }
    if (q->mode != RAG_MODE_VECTOR &&
        (nb = rag_bm25_search(c->bm25, q->text, q->len, cand, fp, b)) < 0) {
        n = err_set(e, nb, "rag: keyword search failed");
        goto out;
    }
    const rag_hit *src;
    int ns;
    if (q->mode == RAG_MODE_VECTOR) {
        src = a;
        ns = MIN(na, (int)q->top_k);
    } else if (q->mode == RAG_MODE_KEYWORD) {
        src = b;
        ns = MIN(nb, (int)q->top_k);
    } else {
        if ((ns = rag_rrf(a, (size_t)na, b, (size_t)nb, RAG_RRF_K, q->top_k, f)) < 0) {
            n = err_set(e, ns, "rag: out of memory");
            goto out;
        }
        src = f;
    }
    for (int i = 0; i < ns; i++) {
        if (src[i].score < q->min_score)
            continue;
        rchunk *ch = chunk_find(c, src[i].label);
        if (NEVER(!ch))
            continue;
        out[n++] = (rag_result){ch->label, ch->doc->id, ch->off, ch->len,
                                ch->doc->text + ch->off, src[i].score};
    }
out:
    free(a);
    free(b);
    free(f);
    return n;
}

/* ---------------------------------------------------------------- persistence */

#define DOCS_MAGIC "FRAGDOCS"
#define DOCS_VERSION 1u

typedef struct wbuf {
    char *p;
    size_t n, cap;
    bool failed;
} wbuf;

static void w_put(wbuf *w, const void *p, size_t n)
{
    if (w->failed)
        return;
    if (w->n + n > w->cap) {
        size_t nc = w->cap ? w->cap : 4096;
        while (nc < w->n + n)
            nc *= 2;
        char *np = realloc(w->p, nc);
        if (!np) {
            w->failed = true;
            return;
        }
        w->p = np;
        w->cap = nc;
    }
    memcpy(w->p + w->n, p, n);
    w->n += n;
}

static void w_u32(wbuf *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    w_put(w, b, 4);
}

static void w_u64(wbuf *w, uint64_t v)
{
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}

static uint64_t fnv64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h;
}

static int path_of(char *out, size_t cap, const char *dir, const char *name, const char *ext,
                   err_msg *e)
{
    int k = snprintf(out, cap, "%s/%s%s", dir, name, ext);
    if (k < 0 || (size_t)k >= cap)
        return err_set(e, ERR_INVAL, "rag: path %s/%s%s is too long", dir, name, ext);
    return 0;
}

/* Writes bytes to path through path.tmp, fsync and rename. */
static int write_atomic(const char *path, const char *p, size_t n, err_msg *e)
{
    char tmp[4200];
    int k = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (k < 0 || (size_t)k >= sizeof tmp)
        return err_set(e, ERR_IO, "rag: path %s is too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_set(e, ERR_IO, "rag: cannot create %s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int er = errno;
            close(fd);
            unlink(tmp);
            return err_set(e, ERR_IO, "rag: writing %s: %s", tmp, strerror(er));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int er = errno;
        unlink(tmp);
        return err_set(e, ERR_IO, "rag: cannot write %s: %s", path, strerror(er));
    }
    return 0;
}

int rag_collection_save(rag_collection *c, const char *dir, err_msg *e)
{
    char path[4096];
    int rc;
    if ((rc = path_of(path, sizeof path, dir, c->name, ".hnsw", e)) < 0 ||
        (rc = hnsw_index_save(c->vec, path, e)) < 0)
        return rc;
    wbuf w = {0};
    w_put(&w, DOCS_MAGIC, 8);
    w_u32(&w, DOCS_VERSION);
    w_u32(&w, (uint32_t)c->cfg.metric);
    w_u32(&w, (uint32_t)c->emb.dim);
    w_u32(&w, (uint32_t)c->cfg.chunk.max_tokens);
    w_u32(&w, (uint32_t)c->cfg.chunk.overlap_tokens);
    w_u32(&w, (uint32_t)strlen(c->emb_name));
    w_put(&w, c->emb_name, strlen(c->emb_name));
    w_u64(&w, c->next_label);
    w_u64(&w, c->ndocs);
    for (size_t i = 0; i < c->ndocs; i++) {
        const rdoc *d = c->docs[i];
        w_u32(&w, (uint32_t)strlen(d->id));
        w_put(&w, d->id, strlen(d->id));
        w_u64(&w, d->text_len);
        w_put(&w, d->text, d->text_len);
        w_u32(&w, (uint32_t)d->meta_len);
        w_put(&w, d->meta ? d->meta : "", d->meta_len);
        w_u32(&w, (uint32_t)d->n_chunks);
        for (size_t k = 0; k < c->nchunks; k++) {
            const rchunk *ch = &c->chunks[k];
            if (ch->is_alive && ch->doc == d) {
                w_u64(&w, ch->label);
                w_u64(&w, ch->off);
                w_u64(&w, ch->len);
                w_u64(&w, ch->n_tokens);
            }
        }
    }
    w_u64(&w, fnv64(w.p, w.n));
    if (w.failed) {
        free(w.p);
        return err_set(e, ERR_NOMEM, "rag: out of memory saving %s", c->name);
    }
    if ((rc = path_of(path, sizeof path, dir, c->name, ".docs", e)) == 0)
        rc = write_atomic(path, w.p, w.n, e);
    free(w.p);
    return rc;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, o;
    bool bad;
} rbuf;

static const void *r_take(rbuf *r, uint64_t n)
{
    if (r->bad || n > r->n - r->o) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p + r->o;
    r->o += (size_t)n;
    return p;
}

static uint32_t r_u32(rbuf *r)
{
    const uint8_t *b = r_take(r, 4);
    return b ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24
             : 0;
}

static uint64_t r_u64(rbuf *r)
{
    uint64_t lo = r_u32(r);
    return lo | (uint64_t)r_u32(r) << 32;
}

static int read_file(const char *path, char **out, size_t *n, err_msg *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "rag: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > (1ull << 40)) {
        fclose(f);
        return err_set(e, ERR_IO, "rag: cannot size %s", path);
    }
    char *p = malloc((size_t)st.st_size + 1);
    if (!p) {
        fclose(f);
        return err_set(e, ERR_NOMEM, "rag: out of memory reading %s", path);
    }
    size_t got = fread(p, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        free(p);
        return err_set(e, ERR_IO, "rag: short read on %s", path);
    }
    *out = p;
    *n = got;
    return 0;
}

static int chunk_cmp(const void *a, const void *b)
{
    uint64_t x = ((const rchunk *)a)->label, y = ((const rchunk *)b)->label;
    return x < y ? -1 : x > y;
}

int rag_collection_load(const char *dir, const char *name, const rag_embedder *emb,
                        rag_collection **out, err_msg *e)
{
    *out = NULL;
    if (!name_ok(name))
        return err_set(e, ERR_INVAL, "rag: bad collection name \"%.64s\"", name);
    char path[4096];
    char *data = NULL;
    size_t n = 0;
    int rc;
    if ((rc = path_of(path, sizeof path, dir, name, ".docs", e)) < 0 ||
        (rc = read_file(path, &data, &n, e)) < 0)
        return rc;
    rag_collection *c = NULL;
    rag_chunk *ch = NULL;
    if (n < 8 + 8 || memcmp(data, DOCS_MAGIC, 8) != 0) {
        rc = err_set(e, ERR_FORMAT, "rag: %s is not a collection file (bad magic or size)", path);
        goto fail;
    }
    uint64_t sum;
    memcpy(&sum, data + n - 8, 8); // little-endian hosts only (as the index files)
    if (fnv64(data, n - 8) != sum) {
        rc = err_set(e, ERR_FORMAT, "rag: %s: checksum mismatch (damaged or truncated file)",
                     path);
        goto fail;
    }
    rbuf r = {(const uint8_t *)data, n - 8, 8, false};
    uint32_t ver = r_u32(&r), metric = r_u32(&r), dim = r_u32(&r), maxt = r_u32(&r),
             ovl = r_u32(&r), en = r_u32(&r);
    const char *ename = r_take(&r, en);
    if (r.bad || ver != DOCS_VERSION) {
        rc = err_set(e, ERR_FORMAT, "rag: %s: unsupported version %u", path, ver);
        goto fail;
    }
    if (!emb || emb->dim != dim || strlen(emb->name) != en || memcmp(emb->name, ename, en) != 0) {
        rc = err_set(e, ERR_FORMAT, "rag: %s was built with embedder \"%.*s\" (%u dims), not "
                     "\"%s\" (%zu dims)", path, (int)MIN(en, 100u), ename ? ename : "", dim,
                     emb ? emb->name : "", emb ? emb->dim : 0);
        goto fail;
    }
    rag_collection_config cfg = rag_collection_config_default();
    cfg.metric = (vec_metric)metric;
    cfg.chunk.max_tokens = maxt;
    cfg.chunk.overlap_tokens = ovl;
    if ((rc = rag_collection_new(name, &cfg, emb, &c, e)) < 0)
        goto fail;
    // the vector index comes from its own file; replace the empty one
    hnsw_index_free(c->vec);
    c->vec = NULL;
    if ((rc = path_of(path, sizeof path, dir, name, ".hnsw", e)) < 0 ||
        (rc = hnsw_index_load(path, &c->vec, e)) < 0)
        goto fail;
    c->next_label = r_u64(&r);
    uint64_t nd = r_u64(&r);
    for (uint64_t i = 0; i < nd && !r.bad; i++) {
        uint32_t idn = r_u32(&r);
        const char *id = r_take(&r, idn);
        uint64_t tl = r_u64(&r);
        const char *text = r_take(&r, tl);
        uint32_t ml = r_u32(&r);
        const char *meta = r_take(&r, ml);
        uint32_t nc = r_u32(&r);
        if (r.bad || idn == 0 || idn > RAG_DOC_ID_MAX || ml > RAG_META_MAX)
            break;
        rdoc *d = calloc(1, sizeof *d);
        if (!d || !(d->id = dup_bytes(id, idn)) || !(d->text = dup_bytes(text, tl)) ||
            (ml && !(d->meta = dup_bytes(meta, ml)))) {
            rdoc_free(d);
            rc = err_set(e, ERR_NOMEM, "rag: out of memory loading %s", name);
            goto fail;
        }
        d->text_len = tl;
        d->meta_len = ml;
        d->n_chunks = nc;
        if (c->ndocs == c->capdocs) {
            size_t cap = c->capdocs ? c->capdocs * 2 : 16;
            rdoc **ndp = realloc(c->docs, cap * sizeof *ndp);
            if (!ndp) {
                rdoc_free(d);
                rc = err_set(e, ERR_NOMEM, "rag: out of memory loading %s", name);
                goto fail;
            }
            c->docs = ndp;
            c->capdocs = cap;
        }
        c->docs[c->ndocs++] = d;
        for (uint32_t k = 0; k < nc && !r.bad; k++) {
            uint64_t label = r_u64(&r), off = r_u64(&r), len = r_u64(&r), nt = r_u64(&r);
            if (r.bad || off > tl || len > tl - off || label == 0 || label >= c->next_label) {
                r.bad = true;
                break;
            }
            if (c->nchunks == c->capchunks) {
                size_t cap = c->capchunks ? c->capchunks * 2 : 64;
                rchunk *ncp = realloc(c->chunks, cap * sizeof *ncp);
                if (!ncp) {
                    rc = err_set(e, ERR_NOMEM, "rag: out of memory loading %s", name);
                    goto fail;
                }
                c->chunks = ncp;
                c->capchunks = cap;
            }
            c->chunks[c->nchunks++] = (rchunk){label, d, (size_t)off, (size_t)len, (size_t)nt,
                                               true};
            if (!hnsw_index_contains(c->vec, label) ||
                rag_bm25_add(c->bm25, label, d->text + off, (size_t)len) != 0) {
                r.bad = true;
                break;
            }
        }
    }
    // the chunk table is sorted by label (a replaced document's chunks come later than
    // those of documents after it in the file); a label used twice is damage
    qsort(c->chunks, c->nchunks, sizeof *c->chunks, chunk_cmp);
    for (size_t k = 1; k < c->nchunks && !r.bad; k++)
        if (c->chunks[k].label == c->chunks[k - 1].label)
            r.bad = true;
    if (r.bad || r.o != r.n || hnsw_index_count(c->vec) != c->nchunks) {
        rc = err_set(e, ERR_FORMAT, "rag: %s/%s.docs is damaged (a size, offset or label is out "
                     "of range, or it disagrees with %s.hnsw)", dir, name, name);
        goto fail;
    }
    free(data);
    *out = c;
    return 0;
fail:
    free(ch);
    free(data);
    rag_collection_free(c);
    return rc;
}
