/*
 * api/collections — the knowledge-base endpoints over rag collections, and
 * POST /v1/embeddings:
 *
 *   POST   /v1/collections                      {name, embedder?, metric?,
 *                                                chunk_tokens?, chunk_overlap?} -> 201
 *   GET    /v1/collections                      list
 *   GET    /v1/collections/{c}                  counts and settings
 *   DELETE /v1/collections/{c}
 *   POST   /v1/collections/{c}/documents        {id, text, metadata?} or {documents: [...]}
 *                                                (upsert)
 *   GET    /v1/collections/{c}/documents/{id}
 *   DELETE /v1/collections/{c}/documents/{id}
 *   POST   /v1/collections/{c}/query            {query | text, top_k? (5), mode? (hybrid),
 *                                                filter? {key: value}, min_score?}
 *   POST   /v1/embeddings                       OpenAI shape: input string or array,
 *                                                encoding_format float|base64, dimensions
 *                                                refused unless equal to the model's
 *
 * The embedder is the configured bert model (embedding_model), whose forward
 * passes all go through one engine/embq queue: concurrent requests and
 * collection writes are batched into shared passes on the queue's thread and
 * /v1/embeddings answers from there (deferred; 429 when max_waiting jobs wait),
 * or the built-in lexical one (model/lex,
 * LEX_EMBED_NAME), which is always available. Collections live in one registry (a
 * mutex serializes every collection operation) and, after api_kb_init, are
 * persisted under DATA/collections (rag_collection_save after each change,
 * loaded at start).
 */
#pragma once

#include "gateway/gateway.h"
#include "http/http.h"
#include "obs/obs.h"

/*
 * Loads the embedding model (a bert GGUF; NULL or "" for none: the lexical
 * embedder only) with its embedding queue (metrics ferry_embedding_* into
 * metrics, may be NULL), sets the directory collections persist in
 * (DIR/collections, created) and loads every collection saved there (each
 * with the embedder it was built with: the model's name or the lexical one).
 * Returns 0, or ERR_IO / the model loader's errors with e set; a damaged
 * collection is skipped with a warning in the log. Call once, before serving.
 * Without it collections live in memory only and embed lexically.
 */
int api_kb_init(const char *data_dir, const char *embedding_model, obs_registry *metrics,
                err_msg *e);

/*
 * Appends the embedding models as /v1/models entries ({"id", "object":
 * "model", "type": "embedding", ...}) to b, each preceded by a comma when
 * comma is true or after the first. Returns 0 or buf's errors.
 */
struct buf;
int api_kb_models_json(struct buf *b, bool comma);
/* Frees every collection (after the server stopped). */
void api_kb_free(void);

/*
 * The pipeline's retriever (gw_retrieve_fn; ctx unused): a hybrid query of
 * top_k over collection, each result handed to each under the registry lock.
 * Returns the count, ERR_NOT_FOUND naming an unknown collection, or the
 * query's errors. Thread: any.
 */
int api_kb_retrieve(void *ctx, const char *collection, const char *query, size_t len,
                    size_t top_k, gw_chunk_fn each, void *each_ctx, err_msg *e);

int api_h_coll_create(http_req *r, void *ctx);
int api_h_coll_list(http_req *r, void *ctx);
int api_h_coll_get(http_req *r, void *ctx);
int api_h_coll_delete(http_req *r, void *ctx);
int api_h_docs_upsert(http_req *r, void *ctx);
int api_h_doc_get(http_req *r, void *ctx);
int api_h_doc_delete(http_req *r, void *ctx);
int api_h_coll_query(http_req *r, void *ctx);
int api_h_embeddings(http_req *r, void *ctx);
