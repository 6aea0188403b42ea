/*
 * rag — chunking, keyword search (BM25), hybrid fusion and in-memory
 * collections for retrieval-augmented generation.
 *
 * Chunking (rag_chunk_text): a document is cut into headings (Markdown lines
 * starting with '#'), paragraphs (separated by blank lines) and sentences,
 * then the sentences are packed greedily into chunks of at most max_tokens
 * tokens. A heading always starts a new chunk (and stays with what follows);
 * a paragraph that does not fit the rest of a chunk already half full starts
 * a new one; consecutive chunks of one section share up to overlap_tokens
 * tokens of whole sentences. A sentence longer than max_tokens is cut at term
 * boundaries. Every chunk is one byte span [off, off + len) of the document,
 * so a chunk's text and its citation offsets are the same thing.
 *
 * Sentence rules: English ends at '.', '!' or '?' (with any closing quotes or
 * brackets) followed by whitespace or the end, except after an abbreviation
 * (Mr. Mrs. Ms. Dr. Prof. St. Jr. Sr. vs. etc. e.g. i.e. No. Fig. Inc. Ltd.
 * Co. a.m. p.m. U.S.) or a single capital initial ("J. Smith"); a '.' between
 * digits (3.14) never ends one since no space follows. Chinese and Japanese end
 * right after 。！？； (and full-width ！？；), closing quotes ”’」』）included,
 * with no space needed.
 *
 * Tokens: counted by the given tokenizer when there is one; otherwise the
 * approximation rag_approx_tokens: each CJK character 1, each other word
 * 1 + (bytes - 1) / 6 (about 1 token per 4-6 letters of English), each
 * punctuation or symbol character 1 — an overestimate for English under
 * BPE vocabularies, so budgets hold.
 *
 * BM25 (rag_bm25_*): an inverted index from terms to (document, tf) postings.
 * Terms are model/lex terms: non-CJK words lower-cased; CJK text as bigrams of
 * adjacent CJK characters (a lone CJK character as itself). Score of document
 * D for query Q (distinct query terms t):
 *   score = Σ idf(t) · tf(t,D)·(k1+1) / (tf(t,D) + k1·(1 − b + b·|D|/avgdl))
 *   idf(t) = ln(1 + (N − n_t + 0.5) / (n_t + 0.5))
 * N documents, n_t of them containing t, |D| terms in D, avgdl the mean |D|.
 *
 * Hybrid (rag_rrf): reciprocal rank fusion, score(d) = Σ over the lists that
 * contain d of 1 / (k + rank), rank from 1; ties by smaller label.
 *
 * Threads: chunking and fusion are pure. A rag_bm25 or rag_collection is used
 * by one thread at a time, or under the caller's lock.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "vector/vector.h"

struct tok_vocab;

/* ---------------------------------------------------------------- chunking */

#define RAG_CHUNK_TOKENS_DEFAULT 256
#define RAG_CHUNK_OVERLAP_DEFAULT 32
#define RAG_DOC_BYTES_MAX ((size_t)64 << 20) // longest document accepted

typedef struct rag_chunk_config {
    size_t max_tokens;             // budget per chunk (>= 8)
    size_t overlap_tokens;         // shared with the previous chunk (< max_tokens / 2)
    const struct tok_vocab *vocab; // count tokens with it; NULL: rag_approx_tokens
} rag_chunk_config;

/* max_tokens 256, overlap 32, no vocab. */
rag_chunk_config rag_chunk_config_default(void);

typedef struct rag_chunk {
    size_t off;      // first byte in the document
    size_t len;      // bytes
    size_t n_tokens; // tokens in the span (by the config's counter)
} rag_chunk;

/* Approximate token count of text[0..n) (see the top comment). */
size_t rag_approx_tokens(const char *text, size_t n);

/*
 * Cuts text[0..len) into chunks (see the top comment). On success *out is a
 * malloc'ed array of *n_out chunks in document order (free()), empty for a
 * text with no content. Returns 0, ERR_INVAL (budget out of range),
 * ERR_TOO_LARGE (len over RAG_DOC_BYTES_MAX) or ERR_NOMEM, with e set.
 */
int rag_chunk_text(const char *text, size_t len, const rag_chunk_config *cfg, rag_chunk **out,
                   size_t *n_out, err_msg *e) MUST_USE;

/*
 * Sentence ends in text[0..len): writes the byte offset just past each
 * sentence (after its closing punctuation and quotes) to ends, up to cap, and
 * returns how many there are (may exceed cap). The text's end is the last one
 * when it holds content after the previous end. For tests and tools.
 */
size_t rag_sentence_ends(const char *text, size_t len, size_t *ends, size_t cap);

/* ---------------------------------------------------------------- BM25 */

typedef struct rag_hit {
    uint64_t label;
    double score; // higher is better
} rag_hit;

typedef struct rag_bm25 rag_bm25;

typedef struct rag_bm25_config {
    double k1; // term-frequency saturation (default 1.2)
    double b;  // length normalization (default 0.75)
} rag_bm25_config;

rag_bm25_config rag_bm25_config_default(void);

/* An empty index. Returns 0, ERR_INVAL (k1 < 0, b outside [0, 1]) or ERR_NOMEM. */
int rag_bm25_new(const rag_bm25_config *cfg, rag_bm25 **out, err_msg *e) MUST_USE;
void rag_bm25_free(rag_bm25 *x);
/* Indexes text under label, replacing the label's previous text. Returns 0 or ERR_NOMEM. */
int rag_bm25_add(rag_bm25 *x, uint64_t label, const char *text, size_t len) MUST_USE;
/* Removes label. Returns 0 or ERR_NOT_FOUND. */
int rag_bm25_remove(rag_bm25 *x, uint64_t label) MUST_USE;
size_t rag_bm25_count(const rag_bm25 *x);
/*
 * The k best documents for query q (score > 0, passing filter when given),
 * best first, ties by smaller label, into out (k slots). Returns the number
 * written, ERR_INVAL (k == 0) or ERR_NOMEM.
 */
int rag_bm25_search(const rag_bm25 *x, const char *q, size_t qlen, size_t k,
                    const vec_filter *filter, rag_hit *out) MUST_USE;

/* ---------------------------------------------------------------- fusion */

#define RAG_RRF_K 60

/*
 * Reciprocal rank fusion of two ranked lists (best first) into out (up to k
 * entries, best first). rrf_k is the constant k (60 usual). Returns the number
 * written or ERR_NOMEM.
 */
int rag_rrf(const rag_hit *a, size_t na, const rag_hit *b, size_t nb, size_t rrf_k, size_t k,
            rag_hit *out) MUST_USE;

/* ---------------------------------------------------------------- collections */

/*
 * A collection: documents (caller ids, text, opaque metadata bytes such as a
 * JSON object the API layer keeps), cut into chunks; each chunk is embedded
 * into a vector index (vector/hnsw, under the chunk's 64-bit label) and
 * indexed by BM25. Queries run in one of three modes:
 *   RAG_MODE_VECTOR   score = similarity: 1 - distance for cosine and ip,
 *                     1 / (1 + distance) for l2
 *   RAG_MODE_KEYWORD  score = BM25
 *   RAG_MODE_HYBRID   score = RRF (k = 60) of the vector and BM25 rankings, each
 *                     taken to max(4 * top_k, 20) candidates
 * min_score drops results below it (in the mode's own score). Upserting an id
 * that exists replaces the document and all its chunks.
 *
 * Persistence (rag_collection_save/load) writes two files in a directory:
 * NAME.hnsw (vector/hnsw_index_save: temporary name, fsync, rename, checksum)
 * and NAME.docs, the documents and chunk table:
 *   "FRAGDOCS" u32 version (1) u32 metric u32 dim u32 max_tokens u32 overlap
 *   u64 next_label u64 n_docs, then per document:
 *     u32 id_len, id, u64 text_len, text, u32 meta_len, meta, u32 n_chunks,
 *     n_chunks x (u64 label, u64 off, u64 len, u64 n_tokens)
 *   then u64 FNV-1a 64 of every byte before it
 * (little-endian), written to NAME.docs.tmp, fsynced and renamed. A file whose
 * sizes, offsets or checksum disagree is refused with ERR_FORMAT. The embedder
 * (name and dim) must match on load. BM25 is rebuilt from the chunk texts.
 *
 * Threads: one thread at a time per collection (the caller's lock).
 */

typedef enum rag_mode {
    RAG_MODE_VECTOR = 0,
    RAG_MODE_KEYWORD = 1,
    RAG_MODE_HYBRID = 2,
} rag_mode;

/* Parses "vector", "keyword" or "hybrid". Returns 0 or ERR_INVAL. */
int rag_mode_parse(const char *s, rag_mode *out) MUST_USE;
const char *rag_mode_name(rag_mode m);

/*
 * An embedder: fn writes n rows of dim floats for texts[i] (lens[i] bytes).
 * Returns 0 or a negative ERR_* with e set; ctx is the embedder's own.
 */
typedef int (*rag_embed_fn)(void *ctx, const char *const *texts, const size_t *lens, size_t n,
                            float *out, err_msg *e);

typedef struct rag_embedder {
    const char *name; // stable name (stored with a saved collection)
    size_t dim;
    rag_embed_fn fn;
    void *ctx;
} rag_embedder;

/* The built-in lexical embedder (model/lex: LEX_EMBED_NAME, 384 dims). */
rag_embedder rag_embedder_lexical(void);

#define RAG_NAME_MAX 128    // collection name bytes
#define RAG_DOC_ID_MAX 256  // document id bytes
#define RAG_META_MAX 65536  // metadata bytes per document

typedef struct rag_collection_config {
    vec_metric metric;      // default cosine
    rag_chunk_config chunk; // rag_chunk_config_default()
    rag_bm25_config bm25;   // rag_bm25_config_default()
} rag_collection_config;

rag_collection_config rag_collection_config_default(void);

typedef struct rag_collection rag_collection;

/*
 * An empty collection named name (1..RAG_NAME_MAX bytes of [A-Za-z0-9_.-],
 * not starting with '.') embedding with emb (copied; emb->ctx must outlive
 * the collection). Returns 0, ERR_INVAL (name, config) or ERR_NOMEM.
 */
int rag_collection_new(const char *name, const rag_collection_config *cfg,
                       const rag_embedder *emb, rag_collection **out, err_msg *e) MUST_USE;
void rag_collection_free(rag_collection *c);
const char *rag_collection_name(const rag_collection *c);
const rag_embedder *rag_collection_embedder(const rag_collection *c);
const rag_collection_config *rag_collection_config_get(const rag_collection *c);
size_t rag_collection_doc_count(const rag_collection *c);
size_t rag_collection_chunk_count(const rag_collection *c);

/*
 * Adds or replaces document id with text and meta (meta may be NULL/0). The
 * text is chunked, embedded (one batched embedder call) and indexed. On
 * success *n_chunks and *n_tokens (either may be NULL) get the chunk count and
 * the tokens of all chunks. Returns 0, ERR_INVAL (empty or overlong id, meta
 * over RAG_META_MAX), the chunker's, the embedder's or the index's errors;
 * on error the collection is unchanged.
 */
int rag_collection_upsert(rag_collection *c, const char *id, const char *text, size_t len,
                          const char *meta, size_t meta_len, size_t *n_chunks, size_t *n_tokens,
                          err_msg *e) MUST_USE;
/*
 * Counts chunk tokens with vocab from now on (NULL: the approximation), e.g. the
 * embedding model's tokenizer, so chunks fit its context. vocab must outlive c.
 */
void rag_collection_set_vocab(rag_collection *c, const struct tok_vocab *vocab);

/* Removes document id and its chunks. Returns 0 or ERR_NOT_FOUND. */
int rag_collection_delete(rag_collection *c, const char *id) MUST_USE;

/* A document as stored; pointers are borrowed until the collection next changes. */
typedef struct rag_doc_view {
    const char *id;
    const char *text;
    size_t text_len;
    const char *meta; // NULL when none
    size_t meta_len;
    size_t n_chunks;
} rag_doc_view;

/* Looks up document id. Returns 0 with *out set, or ERR_NOT_FOUND. */
int rag_collection_get(const rag_collection *c, const char *id, rag_doc_view *out) MUST_USE;
/* Document i (< rag_collection_doc_count) in insertion order, for listing. */
int rag_collection_doc_at(const rag_collection *c, size_t i, rag_doc_view *out) MUST_USE;

/* A document predicate for filtered queries (the API matches metadata with it). */
typedef bool (*rag_doc_filter_fn)(void *ctx, const rag_doc_view *doc);

typedef struct rag_query {
    const char *text;
    size_t len;
    size_t top_k;             // 1..HNSW_EF_MAX
    rag_mode mode;
    double min_score;         // results below are dropped (-INFINITY: keep all)
    rag_doc_filter_fn filter; // NULL: every document
    void *filter_ctx;
} rag_query;

/* One result: a chunk of a document; pointers borrowed like rag_doc_view's. */
typedef struct rag_result {
    uint64_t chunk_id;
    const char *doc_id;
    size_t off, len; // the chunk's bytes in the document text
    const char *text; // doc text + off
    double score;
} rag_result;

/*
 * Runs q, writing up to q->top_k results (best first) to out. Returns the
 * count, ERR_INVAL (top_k out of range), or the embedder's / index's errors.
 */
int rag_collection_query(rag_collection *c, const rag_query *q, rag_result *out, err_msg *e)
    MUST_USE;

/* Writes dir/NAME.hnsw and dir/NAME.docs (see above). Returns 0 or ERR_IO. */
int rag_collection_save(rag_collection *c, const char *dir, err_msg *e) MUST_USE;
/*
 * Loads collection name from dir with embedder emb (which must have the saved
 * name and dim). Returns 0 and *out, ERR_IO (missing/unreadable), ERR_FORMAT
 * (damaged file, embedder mismatch) or ERR_NOMEM.
 */
int rag_collection_load(const char *dir, const char *name, const rag_embedder *emb,
                        rag_collection **out, err_msg *e) MUST_USE;
