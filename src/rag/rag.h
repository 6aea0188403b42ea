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
