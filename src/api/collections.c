/*
 * api/collections — JSON <-> rag for the knowledge-base endpoints and
 * /v1/embeddings (contract in collections.h).
 *
 * The registry: up to KB_MAX collections by name behind one mutex (kb.mu),
 * held for the whole of each operation, including embedding (the lexical
 * embedder is microseconds per chunk). Results are serialized while the lock
 * is held, because rag_result pointers are borrowed from the collection.
 */
#include "api/collections.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/pool.h"
#include "engine/embq.h"
#include "model/embed.h"
#include "model/lex.h"
#include "rag/rag.h"

#define KB_MAX 256
#define EMBED_INPUTS_MAX 2048
#define QUERY_TOP_K_MAX 100
#define BODY_DOCS_MAX 1000

static struct {
    pthread_mutex_t mu; // guards the fields below up to lex, and every collection
    char dir[4096];     // persistence directory; "" = memory only
    rag_collection *c[KB_MAX];
    size_t n;
    /* Set by api_kb_init before serving, read-only afterwards. */
    rag_embedder lex, bert;
    bool has_bert;
    embed_model *em; // bert or decoder (llama/qwen2); used by the embedding queue's thread only
    pool *bp;
    embq *eq;     // every bert forward pass goes through it, batched across requests
    char bert_name[128];
} kb = {PTHREAD_MUTEX_INITIALIZER, "", {0}, 0, {LEX_EMBED_NAME, LEX_EMBED_DIM, NULL, NULL},
        {0}, false, NULL, NULL, NULL, ""};

/* The embedding queue's embedder (its thread only). */
static int bert_batch(void *ctx, const char *const *texts, const size_t *lens, size_t n,
                      float *out, size_t *ntok, err_msg *e)
{
    (void)ctx;
    return embed_texts(kb.em, texts, lens, n, out, ntok, NULL, e);
}

/* The collections' embedder: one job on the queue, waited for. */
static int bert_embed(void *ctx, const char *const *texts, const size_t *lens, size_t n,
                      float *out, err_msg *e)
{
    (void)ctx;
    return embq_embed(kb.eq, texts, lens, n, out, NULL, e);
}

/* The embedder new collections and /v1/embeddings use by default. */
static const rag_embedder *kb_default_embedder(void)
{
    return kb.has_bert ? &kb.bert : &kb.lex;
}

/* The embedder called name, or NULL. */
static const rag_embedder *kb_embedder_named(const char *name)
{
    if (strcmp(name, kb.lex.name) == 0)
        return &kb.lex;
    if (kb.has_bert && strcmp(name, kb.bert.name) == 0)
        return &kb.bert;
    return NULL;
}

static int load_bert(const char *path, obs_registry *metrics, err_msg *e)
{
    int rc = pool_new(0, &kb.bp);
    if (rc < 0)
        return err_set(e, rc, "embedding model: cannot start the compute threads");
    // a bert encoder, or a llama/qwen2 decoder (mean-pooled last hidden state)
    embed_config ec = embed_config_default();
    ec.pool = kb.bp;
    if ((rc = embed_load(path, &ec, &kb.em, e)) < 0)
        return rc;
    // the model's id: the file name without directory and ".gguf"
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && strcmp(b + n - 5, ".gguf") == 0)
        n -= 5;
    snprintf(kb.bert_name, sizeof kb.bert_name, "%.*s", (int)MIN(n, sizeof kb.bert_name - 1), b);
    embq_config qc = embq_config_default();
    qc.name = kb.bert_name;
    qc.dim = embed_dim(kb.em);
    qc.metrics = metrics;
    if ((rc = embq_new(&qc, bert_batch, NULL, &kb.eq, e)) < 0)
        return rc;
    kb.bert = (rag_embedder){kb.bert_name, embed_dim(kb.em), bert_embed, NULL};
    kb.has_bert = true;
    return 0;
}

int api_kb_models_json(buf *b, bool comma)
{
    int rc = buf_printf(b,
                        "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":"
                        "\"ferry\",\"type\":\"embedding\",\"dimensions\":%d,\"description\":"
                        "\"built-in lexical embedder (hashed word and character n-grams)%s\"}",
                        comma ? "," : "", LEX_EMBED_NAME, LEX_EMBED_DIM,
                        kb.has_bert ? "" : "; no embedding model is configured");
    if (rc == 0 && kb.has_bert) {
        rc = buf_printf(b,
                        ",{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":"
                        "\"ferry\",\"type\":\"embedding\",\"dimensions\":%zu,"
                        "\"context_length\":%zu,\"pooling\":\"%s\",\"description\":\"%s "
                        "embedding model (the default embedder)\"}",
                        kb.bert_name, embed_dim(kb.em), embed_n_ctx(kb.em), embed_pooling(kb.em),
                        embed_arch(kb.em));
    }
    return rc;
}

static int64_t kb_find(const char *name)
{
    for (size_t i = 0; i < kb.n; i++)
        if (strcmp(rag_collection_name(kb.c[i]), name) == 0)
            return (int64_t)i;
    return -1;
}

int api_kb_init(const char *data_dir, const char *embedding_model, obs_registry *metrics,
                err_msg *e)
{
    pthread_mutex_lock(&kb.mu);
    int rc = 0;
    kb.lex = rag_embedder_lexical();
    if (embedding_model && embedding_model[0]) {
        err_msg me;
        err_clear(&me);
        if ((rc = load_bert(embedding_model, metrics, &me)) < 0) {
            rc = err_set(e, rc, "embedding_model %s: %s", embedding_model, me.text);
            goto out;
        }
        LOG_INFO("collections", "embedding model %s: %u dimensions", kb.bert_name,
                 kb.bert.dim > 0 ? (unsigned)kb.bert.dim : 0u);
    }
    int k = snprintf(kb.dir, sizeof kb.dir, "%s/collections", data_dir);
    if (k < 0 || (size_t)k >= sizeof kb.dir) {
        kb.dir[0] = 0;
        rc = err_set(e, ERR_IO, "collections: data path %s is too long", data_dir);
        goto out;
    }
    if (mkdir(kb.dir, 0750) != 0 && errno != EEXIST) {
        rc = err_set(e, ERR_IO, "collections: cannot create %s: %s", kb.dir, strerror(errno));
        kb.dir[0] = 0;
        goto out;
    }
    DIR *d = opendir(kb.dir);
    if (!d) {
        rc = err_set(e, ERR_IO, "collections: cannot read %s: %s", kb.dir, strerror(errno));
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && kb.n < KB_MAX) {
        size_t n = strlen(de->d_name);
        if (n <= 5 || strcmp(de->d_name + n - 5, ".docs") != 0 || n - 5 > RAG_NAME_MAX)
            continue;
        char name[RAG_NAME_MAX + 1];
        memcpy(name, de->d_name, n - 5);
        name[n - 5] = 0;
        rag_collection *c;
        err_msg le;
        err_clear(&le);
        // each collection with the embedder it was built with: the model's, else lexical
        int lr = kb.has_bert ? rag_collection_load(kb.dir, name, &kb.bert, &c, &le) : -1;
        if (lr == 0)
            rag_collection_set_vocab(c, embed_vocab(kb.em));
        else
            lr = rag_collection_load(kb.dir, name, &kb.lex, &c, &le);
        if (lr != 0) {
            LOG_WARN("collections", "skipping collection %s: %s", name, le.text);
            continue;
        }
        kb.c[kb.n++] = c;
        LOG_INFO("collections", "loaded %s (%zu documents, %zu chunks)", name,
                 rag_collection_doc_count(c), rag_collection_chunk_count(c));
    }
    closedir(d);
out:
    pthread_mutex_unlock(&kb.mu);
    return rc;
}

void api_kb_free(void)
{
    pthread_mutex_lock(&kb.mu);
    for (size_t i = 0; i < kb.n; i++)
        rag_collection_free(kb.c[i]);
    kb.n = 0;
    embq_free(kb.eq); // before the context its thread uses
    kb.eq = NULL;
    embed_free(kb.em);
    pool_free(kb.bp);
    kb.em = NULL;
    kb.bp = NULL;
    kb.has_bert = false;
    pthread_mutex_unlock(&kb.mu);
}

/* Saves c when persistence is on; a failure is logged and reported as 500. */
static int kb_save(rag_collection *c)
{
    if (!kb.dir[0])
        return 0;
    err_msg e;
    err_clear(&e);
    int rc = rag_collection_save(c, kb.dir, &e);
    if (rc < 0)
        LOG_ERROR("collections", "saving %s: %s", rag_collection_name(c), e.text);
    return rc;
}

/* ---------------------------------------------------------------- JSON helpers */

/* Parses the body as a JSON object; on failure answers 400 and returns NULL. */
static json_t *body_object(http_req *r)
{
    size_t n = 0;
    const char *b = http_req_body(r, &n);
    json_error_t je;
    json_t *v = json_loadb(b ? b : "", n, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        api_fail(r, ERR_FORMAT, NULL, "invalid JSON body at line %d column %d: %s", je.line,
                 je.column, je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        api_fail(r, ERR_INVAL, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return v;
}

static int respond(http_req *r, int status, json_t *v)
{
    int rc = api_respond_json(r, status, v);
    json_decref(v);
    return rc;
}

/* A path parameter as a NUL-terminated copy (cap bytes); false when too long. */
static bool param(http_req *r, const char *name, char *out, size_t cap)
{
    str s = http_req_param(r, name);
    if (s.n == 0 || s.n >= cap)
        return false;
    memcpy(out, s.p, s.n);
    out[s.n] = 0;
    return true;
}

static json_t *coll_json(const rag_collection *c)
{
    const rag_collection_config *cfg = rag_collection_config_get(c);
    const rag_embedder *emb = rag_collection_embedder(c);
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "object", "collection",
                     "name", rag_collection_name(c), "embedder", emb->name, "dimensions",
                     (json_int_t)emb->dim, "metric", vec_metric_name(cfg->metric), "documents",
                     (json_int_t)rag_collection_doc_count(c), "chunks",
                     (json_int_t)rag_collection_chunk_count(c), "chunk_tokens",
                     (json_int_t)cfg->chunk.max_tokens, "chunk_overlap",
                     (json_int_t)cfg->chunk.overlap_tokens);
}

/* An optional integer field in [lo, hi]; answers 400 naming it when bad. */
static bool opt_int(http_req *r, json_t *o, const char *key, int64_t lo, int64_t hi,
                    int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        api_fail(r, ERR_INVAL, key, "%s must be an integer in [%lld, %lld]", key, (long long)lo,
                 (long long)hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* ---------------------------------------------------------------- collections */

int api_h_coll_create(http_req *r, void *ctx)
{
    (void)ctx;
    json_t *b = body_object(r);
    if (!b)
        return 0;
    int rc = 0;
    json_t *jn = json_object_get(b, "name");
    const char *name = json_is_string(jn) ? json_string_value(jn) : NULL;
    json_t *je = json_object_get(b, "embedder"), *jm = json_object_get(b, "metric");
    rag_embedder emb = *kb_default_embedder();
    rag_collection_config cfg = rag_collection_config_default();
    int64_t ct = (int64_t)cfg.chunk.max_tokens, co = (int64_t)cfg.chunk.overlap_tokens;
    if (!name) {
        rc = api_fail(r, ERR_INVAL, "name", "name is required (a string)");
        goto out;
    }
    if (je && !json_is_null(je)) {
        const rag_embedder *x = json_is_string(je) ? kb_embedder_named(json_string_value(je))
                                                   : NULL;
        if (!x) {
            rc = api_fail(r, ERR_UNSUPPORTED, "embedder", "embedder must be \"%s\"%s%s%s",
                          kb.lex.name, kb.has_bert ? " or \"" : " (no embedding model is "
                                                                "configured)",
                          kb.has_bert ? kb.bert.name : "", kb.has_bert ? "\"" : "");
            goto out;
        }
        emb = *x;
    }
    if (jm && !json_is_null(jm) &&
        (!json_is_string(jm) || vec_metric_parse(json_string_value(jm), &cfg.metric) != 0)) {
        rc = api_fail(r, ERR_INVAL, "metric", "metric must be cosine, ip or l2");
        goto out;
    }
    if (!opt_int(r, b, "chunk_tokens", 8, 8192, &ct) ||
        !opt_int(r, b, "chunk_overlap", 0, 4095, &co))
        goto out;
    if (co * 2 >= ct) {
        rc = api_fail(r, ERR_INVAL, "chunk_overlap", "chunk_overlap must be below half of "
                      "chunk_tokens (%lld)", (long long)ct);
        goto out;
    }
    cfg.chunk.max_tokens = (size_t)ct;
    cfg.chunk.overlap_tokens = (size_t)co;
    pthread_mutex_lock(&kb.mu);
    err_msg e;
    err_clear(&e);
    rag_collection *c = NULL;
    if (kb_find(name) >= 0)
        rc = api_fail(r, ERR_EXISTS, "name", "collection \"%.128s\" already exists", name);
    else if (kb.n >= KB_MAX)
        rc = api_fail(r, ERR_TOO_LARGE, NULL, "at most %d collections", KB_MAX);
    else if (rag_collection_new(name, &cfg, &emb, &c, &e) != 0)
        rc = api_fail(r, e.code ? e.code : ERR_INVAL, "name", "%s", e.text);
    else if (kb_save(c) != 0) {
        rag_collection_free(c);
        rc = ERR_IO;
    } else {
        // chunks of a model-embedded collection are counted in the model's own tokens
        if (kb.has_bert && strcmp(emb.name, kb.bert.name) == 0)
            rag_collection_set_vocab(c, embed_vocab(kb.em));
        kb.c[kb.n++] = c;
        rc = respond(r, 201, coll_json(c));
    }
    pthread_mutex_unlock(&kb.mu);
out:
    json_decref(b);
    return rc;
}

int api_h_coll_list(http_req *r, void *ctx)
{
    (void)ctx;
    json_t *data = json_array();
    pthread_mutex_lock(&kb.mu);
    for (size_t i = 0; i < kb.n; i++)
        json_array_append_new(data, coll_json(kb.c[i]));
    pthread_mutex_unlock(&kb.mu);
    return respond(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* What the handlers of /v1/collections/{c}/... share once coll_enter succeeded. */
typedef struct coll_call {
    json_t *body;                    // the parsed body (COLL_BODY), else NULL; owned
    rag_collection *c;               // the collection {c}; kb.mu is held
    int64_t idx;                     // its slot in kb.c
    char doc_id[RAG_DOC_ID_MAX + 1]; // the path's {id} (COLL_DOC_ID)
    bool has_doc_id;                 // {id} is present and short enough to name a document
} coll_call;

enum { COLL_BODY = 1, COLL_DOC_ID = 2 };

/*
 * The prologue of every handler on one collection: parses the body as a JSON
 * object (COLL_BODY), copies the {id} path parameter (COLL_DOC_ID), takes
 * kb.mu and looks up {c}. Returns true with kb.mu held (release with
 * coll_leave); false once it has answered (400 bad body, 404 no such
 * collection) with the lock released and nothing left to free.
 */
static bool coll_enter(http_req *r, unsigned need, coll_call *cc)
{
    memset(cc, 0, sizeof *cc);
    if ((need & COLL_BODY) && !(cc->body = body_object(r)))
        return false;
    if (need & COLL_DOC_ID)
        cc->has_doc_id = param(r, "id", cc->doc_id, sizeof cc->doc_id);
    char name[RAG_NAME_MAX + 1];
    pthread_mutex_lock(&kb.mu);
    cc->idx = param(r, "c", name, sizeof name) ? kb_find(name) : -1;
    if (cc->idx < 0) {
        pthread_mutex_unlock(&kb.mu);
        str s = http_req_param(r, "c");
        api_fail(r, ERR_NOT_FOUND, NULL, "collection \"%.*s\" does not exist",
                 (int)MIN(s.n, 128), s.p);
        json_decref(cc->body);
        return false;
    }
    cc->c = kb.c[cc->idx];
    return true;
}

/* Ends what coll_enter began: releases kb.mu and the body. Returns rc. */
static int coll_leave(coll_call *cc, int rc)
{
    pthread_mutex_unlock(&kb.mu);
    json_decref(cc->body);
    return rc;
}

/* The 404 of a document id absent from the collection. */
static int doc_not_found(http_req *r, const rag_collection *c)
{
    return api_fail(r, ERR_NOT_FOUND, NULL, "document not found in collection \"%s\"",
                    rag_collection_name(c));
}

int api_h_coll_get(http_req *r, void *ctx)
{
    (void)ctx;
    coll_call cc;
    if (!coll_enter(r, 0, &cc))
        return 0;
    return coll_leave(&cc, respond(r, 200, coll_json(cc.c)));
}

int api_h_coll_delete(http_req *r, void *ctx)
{
    (void)ctx;
    coll_call cc;
    if (!coll_enter(r, 0, &cc))
        return 0;
    rag_collection *c = cc.c;
    int64_t i = cc.idx;
    int rc = 0;
    {
        if (kb.dir[0]) {
            char p[4300];
            snprintf(p, sizeof p, "%s/%s.docs", kb.dir, rag_collection_name(c));
            unlink(p);
            snprintf(p, sizeof p, "%s/%s.hnsw", kb.dir, rag_collection_name(c));
            unlink(p);
        }
        json_t *v = json_pack("{s:s, s:s, s:b}", "object", "collection.deleted", "name",
                              rag_collection_name(c), "deleted", 1);
        rag_collection_free(c);
        memmove(kb.c + i, kb.c + i + 1, (kb.n - (size_t)i - 1) * sizeof *kb.c);
        kb.n--;
        rc = respond(r, 200, v);
    }
    return coll_leave(&cc, rc);
}

/* ---------------------------------------------------------------- documents */

static json_t *doc_json(const rag_doc_view *v)
{
    json_t *meta = NULL;
    if (v->meta)
        meta = json_loadb(v->meta, v->meta_len, 0, NULL);
    return json_pack("{s:s, s:s, s:s%, s:o, s:I}", "object", "document", "id", v->id, "text",
                     v->text, v->text_len, "metadata", meta ? meta : json_null(), "chunks",
                     (json_int_t)v->n_chunks);
}

/* Upserts one {id, text, metadata?} object; answers 400 itself and returns false on bad input. */
static bool upsert_one(http_req *r, rag_collection *c, json_t *d, size_t i, json_t *out,
                       size_t *tok_total)
{
    json_t *jid = json_object_get(d, "id"), *jt = json_object_get(d, "text"),
           *jm = json_object_get(d, "metadata");
    char pname[32];
    snprintf(pname, sizeof pname, "documents[%zu]", i);
    if (!json_is_object(d) || !json_is_string(jid) || !json_is_string(jt)) {
        api_fail(r, ERR_INVAL, pname, "%s needs \"id\" and \"text\" strings", pname);
        return false;
    }
    if (jm && !json_is_null(jm) && !json_is_object(jm)) {
        api_fail(r, ERR_INVAL, "metadata", "%s: metadata must be an object", pname);
        return false;
    }
    char *meta = jm && json_is_object(jm) ? json_dumps(jm, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    size_t nc = 0, nt = 0;
    err_msg e;
    err_clear(&e);
    int rc = rag_collection_upsert(c, json_string_value(jid), json_string_value(jt),
                                   json_string_length(jt), meta, meta ? strlen(meta) : 0, &nc,
                                   &nt, &e);
    free(meta);
    if (rc < 0) {
        api_fail(r, rc, pname, "%s: %s", pname, e.text);
        return false;
    }
    *tok_total += nt;
    json_array_append_new(out, json_pack("{s:s, s:I, s:I}", "id", json_string_value(jid),
                                         "chunks", (json_int_t)nc, "tokens", (json_int_t)nt));
    return true;
}

int api_h_docs_upsert(http_req *r, void *ctx)
{
    (void)ctx;
    coll_call cc;
    if (!coll_enter(r, COLL_BODY, &cc))
        return 0;
    json_t *b = cc.body;
    rag_collection *c = cc.c;
    int rc = 0;
    json_t *docs = json_object_get(b, "documents");
    json_t *data = json_array();
    size_t tok = 0;
    bool ok = true;
    if (docs) {
        if (!json_is_array(docs) || json_array_size(docs) == 0 ||
            json_array_size(docs) > BODY_DOCS_MAX) {
            rc = api_fail(r, ERR_INVAL, "documents", "documents must be an array of 1..%d "
                          "objects", BODY_DOCS_MAX);
            json_decref(data);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(docs) && ok; i++)
            ok = upsert_one(r, c, json_array_get(docs, i), i, data, &tok);
    } else {
        ok = upsert_one(r, c, b, 0, data, &tok);
    }
    if (json_array_size(data) > 0 && kb_save(c) != 0) {
        json_decref(data);
        rc = ok ? ERR_IO : 0;
        goto out;
    }
    if (!ok) { // the error is answered; documents before it stay upserted
        json_decref(data);
        goto out;
    }
    rc = respond(r, 200, json_pack("{s:s, s:s, s:o, s:{s:I, s:I}}", "object", "list",
                                   "collection", rag_collection_name(c), "data", data, "usage",
                                   "documents", (json_int_t)json_array_size(data), "tokens",
                                   (json_int_t)tok));
out:
    return coll_leave(&cc, rc);
}

int api_h_doc_get(http_req *r, void *ctx)
{
    (void)ctx;
    coll_call cc;
    if (!coll_enter(r, COLL_DOC_ID, &cc))
        return 0;
    rag_doc_view v;
    int rc;
    if (!cc.has_doc_id || rag_collection_get(cc.c, cc.doc_id, &v) != 0)
        rc = doc_not_found(r, cc.c);
    else
        rc = respond(r, 200, doc_json(&v));
    return coll_leave(&cc, rc);
}

int api_h_doc_delete(http_req *r, void *ctx)
{
    (void)ctx;
    coll_call cc;
    if (!coll_enter(r, COLL_DOC_ID, &cc))
        return 0;
    int rc;
    if (!cc.has_doc_id || rag_collection_delete(cc.c, cc.doc_id) != 0)
        rc = doc_not_found(r, cc.c);
    else if (kb_save(cc.c) != 0)
        rc = ERR_IO;
    else
        rc = respond(r, 200,
                     json_pack("{s:s, s:s, s:b}", "object", "document.deleted", "id", cc.doc_id,
                               "deleted", 1));
    return coll_leave(&cc, rc);
}

/* ---------------------------------------------------------------- query */

/* filter: every key of the filter object equals the same key of the document's metadata. */
static bool meta_filter(void *ctx, const rag_doc_view *d)
{
    json_t *f = ctx;
    if (!d->meta)
        return json_object_size(f) == 0;
    json_t *m = json_loadb(d->meta, d->meta_len, 0, NULL);
    bool ok = m != NULL;
    const char *k;
    json_t *v;
    json_object_foreach(f, k, v)
    {
        if (!ok)
            break;
        ok = json_equal(json_object_get(m, k), v);
    }
    json_decref(m);
    return ok;
}

int api_h_coll_query(http_req *r, void *ctx)
{
    (void)ctx;
    coll_call cc;
    if (!coll_enter(r, COLL_BODY, &cc))
        return 0;
    json_t *b = cc.body;
    rag_collection *c = cc.c;
    int rc = 0;
    rag_result *res = NULL;
    json_t *jq = json_object_get(b, "query");
    if (!jq)
        jq = json_object_get(b, "text");
    json_t *jmode = json_object_get(b, "mode"), *jf = json_object_get(b, "filter"),
           *jmin = json_object_get(b, "min_score");
    int64_t top_k = 5;
    rag_mode mode = RAG_MODE_HYBRID;
    if (!json_is_string(jq)) {
        rc = api_fail(r, ERR_INVAL, "query", "query (or text) is required (a string)");
        goto out;
    }
    if (!opt_int(r, b, "top_k", 1, QUERY_TOP_K_MAX, &top_k))
        goto out;
    if (jmode && !json_is_null(jmode) &&
        (!json_is_string(jmode) || rag_mode_parse(json_string_value(jmode), &mode) != 0)) {
        rc = api_fail(r, ERR_INVAL, "mode", "mode must be vector, keyword or hybrid");
        goto out;
    }
    if (jf && !json_is_null(jf) && !json_is_object(jf)) {
        rc = api_fail(r, ERR_INVAL, "filter", "filter must be an object of metadata values");
        goto out;
    }
    if (jmin && !json_is_null(jmin) && !json_is_number(jmin)) {
        rc = api_fail(r, ERR_INVAL, "min_score", "min_score must be a number");
        goto out;
    }
    rag_query q = {json_string_value(jq), json_string_length(jq), (size_t)top_k, mode,
                   jmin && json_is_number(jmin) ? json_number_value(jmin) : -INFINITY,
                   jf && json_is_object(jf) ? meta_filter : NULL, jf};
    res = malloc((size_t)top_k * sizeof *res);
    err_msg e;
    err_clear(&e);
    int n = res ? rag_collection_query(c, &q, res, &e) : ERR_NOMEM;
    if (n < 0) {
        rc = api_fail(r, n, NULL, "%s", e.text[0] ? e.text : err_str(n));
        goto out;
    }
    json_t *data = json_array();
    for (int i = 0; i < n; i++) {
        rag_doc_view v;
        json_t *meta = NULL;
        if (rag_collection_get(c, res[i].doc_id, &v) == 0 && v.meta)
            meta = json_loadb(v.meta, v.meta_len, 0, NULL);
        json_array_append_new(
            data, json_pack("{s:I, s:s, s:f, s:s%, s:I, s:I, s:o}", "chunk_id",
                            (json_int_t)res[i].chunk_id, "document_id", res[i].doc_id, "score",
                            res[i].score, "text", res[i].text, res[i].len, "offset",
                            (json_int_t)res[i].off, "length", (json_int_t)res[i].len, "metadata",
                            meta ? meta : json_null()));
    }
    rc = respond(r, 200, json_pack("{s:s, s:s, s:s, s:o}", "object", "list", "collection",
                                   rag_collection_name(c), "mode", rag_mode_name(mode), "data",
                                   data));
out:
    free(res);
    return coll_leave(&cc, rc);
}

int api_kb_retrieve(void *ctx, const char *collection, const char *query, size_t len,
                    size_t top_k, gw_chunk_fn each, void *each_ctx, err_msg *e)
{
    (void)ctx;
    if (top_k == 0 || top_k > QUERY_TOP_K_MAX)
        return err_set(e, ERR_INVAL, "top_k %zu is outside [1, %d]", top_k, QUERY_TOP_K_MAX);
    rag_result *res = malloc(top_k * sizeof *res);
    if (!res)
        return err_set(e, ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&kb.mu);
    int64_t i = kb_find(collection);
    int n;
    if (i < 0) {
        n = err_set(e, ERR_NOT_FOUND, "The collection '%.128s' does not exist", collection);
    } else {
        rag_query q = {query, len, top_k, RAG_MODE_HYBRID, -INFINITY, NULL, NULL};
        n = rag_collection_query(kb.c[i], &q, res, e);
        for (int k = 0; k < n; k++) {
            gw_chunk c = {res[k].chunk_id, res[k].doc_id, res[k].off,
                          res[k].len,      res[k].text,   res[k].score};
            each(each_ctx, &c);
        }
    }
    pthread_mutex_unlock(&kb.mu);
    free(res);
    return n;
}

/* ---------------------------------------------------------------- embeddings */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of n floats as little-endian f32 bytes (what OpenAI's base64 format holds). */
static int b64_floats(buf *out, const float *v, size_t n)
{
    const uint8_t *p = (const uint8_t *)v; // x86-64 / little-endian hosts
    size_t len = n * 4;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < len ? p[i + 2] : 0);
        char q[4] = {B64[x >> 18 & 63], B64[x >> 12 & 63], i + 1 < len ? B64[x >> 6 & 63] : '=',
                     i + 2 < len ? B64[x & 63] : '='};
        rc = buf_append(out, q, 4);
    }
    return rc;
}

/* The /v1/embeddings answer for n rows of dim floats from model mname. */
static int embeddings_body(buf *o, const float *vecs, const size_t *ntok, size_t n, size_t dim,
                           bool is_b64, const char *mname)
{
    size_t tokens = 0;
    int rc = buf_append_str(o, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const float *v = vecs + i * dim;
        tokens += ntok[i];
        rc = buf_printf(o, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
                        i ? "," : "", i);
        if (rc == 0 && is_b64) {
            rc = buf_append_char(o, '"');
            if (rc == 0)
                rc = b64_floats(o, v, dim);
            if (rc == 0)
                rc = buf_append_char(o, '"');
        } else {
            for (size_t k = 0; k < dim && rc == 0; k++)
                rc = buf_printf(o, "%s%.9g", k ? "," : "[", (double)v[k]);
            if (rc == 0)
                rc = buf_append_char(o, ']');
        }
        if (rc == 0)
            rc = buf_append_char(o, '}');
    }
    if (rc == 0) {
        rc = buf_append_str(o, "],\"model\":\"");
        if (rc == 0)
            rc = buf_append_json_str(o, mname, strlen(mname));
        if (rc == 0)
            rc = buf_printf(o, "\",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}",
                            tokens, tokens);
    }
    return rc;
}

/* One /v1/embeddings request waiting on the embedding queue. */
typedef struct emb_req {
    http_async *a;
    json_t *body; // owns the input strings texts point into
    const char **texts;
    size_t *lens, *ntok, n, dim;
    float *vecs;
    bool is_b64;
    const char *model;
} emb_req;

static void emb_req_free(emb_req *q)
{
    json_decref(q->body);
    free(q->texts);
    free(q->lens);
    free(q->ntok);
    free(q->vecs);
    free(q);
}

/* The queue's done callback (its thread): answer the suspended request. */
static void emb_req_done(void *ctx, int rc, const err_msg *e)
{
    emb_req *q = ctx;
    if (rc < 0) {
        http_async_error(q->a, rc, e && e->text[0] ? e->text : err_str(rc), "input");
    } else {
        buf o;
        buf_init(&o, (size_t)256 << 20);
        rc = embeddings_body(&o, q->vecs, q->ntok, q->n, q->dim, q->is_b64, q->model);
        if (rc == 0)
            http_async_respond(q->a, 200, "application/json", o.data, o.len);
        else
            http_async_error(q->a, rc, "cannot build the embeddings answer", NULL);
        buf_deinit(&o);
    }
    emb_req_free(q);
}

int api_h_embeddings(http_req *r, void *ctx)
{
    (void)ctx;
    json_t *b = body_object(r);
    if (!b)
        return 0;
    int rc = 0;
    emb_req *q = NULL;
    json_t *in = json_object_get(b, "input"), *jm = json_object_get(b, "model"),
           *jf = json_object_get(b, "encoding_format"), *jd = json_object_get(b, "dimensions");
    size_t n = json_is_string(in) ? 1 : json_is_array(in) ? json_array_size(in) : 0;
    if (n == 0 || n > EMBED_INPUTS_MAX) {
        rc = api_fail(r, ERR_INVAL, "input", "input must be a string or an array of 1..%d "
                      "strings", EMBED_INPUTS_MAX);
        goto out;
    }
    for (size_t i = 0; json_is_array(in) && i < n; i++)
        if (!json_is_string(json_array_get(in, i))) {
            rc = api_fail(r, ERR_INVAL, "input", "input[%zu] must be a string (token arrays "
                          "are not supported)", i);
            goto out;
        }
    const rag_embedder *emb = kb_default_embedder();
    if (jm && !json_is_null(jm)) {
        emb = json_is_string(jm) ? kb_embedder_named(json_string_value(jm)) : NULL;
        if (!emb) {
            char msg[400];
            snprintf(msg, sizeof msg, "the embedding model does not exist; available: \"%s\"%s%s%s",
                     kb.lex.name, kb.has_bert ? ", \"" : "", kb.has_bert ? kb.bert.name : "",
                     kb.has_bert ? "\"" : "");
            rc = http_respond_error(r, ERR_NOT_FOUND, msg, "model", "model_not_found", NULL);
            goto out;
        }
    }
    bool is_b64 = false;
    if (jf && !json_is_null(jf)) {
        const char *f = json_is_string(jf) ? json_string_value(jf) : "";
        if (strcmp(f, "base64") == 0)
            is_b64 = true;
        else if (strcmp(f, "float") != 0) {
            rc = api_fail(r, ERR_INVAL, "encoding_format", "encoding_format must be float or "
                          "base64");
            goto out;
        }
    }
    if (jd && !json_is_null(jd) &&
        (!json_is_integer(jd) || json_integer_value(jd) != (json_int_t)emb->dim)) {
        rc = api_fail(r, ERR_UNSUPPORTED, "dimensions", "dimensions is not supported by %s "
                      "(its vectors have %zu dimensions)", emb->name, emb->dim);
        goto out;
    }
    q = calloc(1, sizeof *q);
    if (!q) {
        rc = ERR_NOMEM;
        goto out;
    }
    *q = (emb_req){NULL, b, malloc(n * sizeof *q->texts), malloc(n * sizeof *q->lens),
                   calloc(n, sizeof *q->ntok), n, emb->dim, malloc(n * emb->dim * sizeof *q->vecs),
                   is_b64, emb->name};
    b = NULL; // q owns it now
    if (!q->texts || !q->lens || !q->ntok || !q->vecs) {
        rc = ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(in) ? in : json_array_get(in, i);
        q->texts[i] = json_string_value(s);
        q->lens[i] = json_string_length(s);
    }
    if (emb == &kb.bert) {
        // batched with other requests on the model's embedding queue; answered from there
        q->a = http_defer(r);
        if (!q->a) {
            rc = ERR_NOMEM;
            goto out;
        }
        rc = embq_submit(kb.eq, q->texts, q->lens, n, q->vecs, q->ntok, emb_req_done, q);
        if (rc < 0) {
            http_async_error(q->a, rc, rc == ERR_RATE_LIMIT ? "the embedding queue is full; "
                             "retry later" : "the embedding model is not accepting work", NULL);
            emb_req_free(q);
        }
        return 0;
    }
    // the lexical embedder is microseconds per text: answered on this thread
    for (size_t i = 0; i < n; i++) {
        lex_embed(q->texts[i], q->lens[i], q->vecs + i * emb->dim, emb->dim);
        q->ntok[i] = lex_count_terms(q->texts[i], q->lens[i]);
    }
    buf o;
    buf_init(&o, (size_t)256 << 20);
    rc = embeddings_body(&o, q->vecs, q->ntok, n, emb->dim, is_b64, emb->name);
    if (rc == 0)
        rc = http_respond(r, 200, "application/json", o.data, o.len, NULL);
    buf_deinit(&o);
out:
    if (q)
        emb_req_free(q);
    json_decref(b);
    return rc;
}
