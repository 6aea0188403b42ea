// FUZZ_MODULES: base model vector rag
// FUZZ_SECONDS: 10
// FUZZ_LIBS: libpcre2-8 libutf8proc libxxhash
/*
 * libFuzzer harness for the text paths of rag and model/lex: any bytes (the
 * first two pick a chunk budget and overlap) are chunked, and every chunk must
 * be a non-empty in-range span within the budget, in increasing order; the
 * sentence splitter's ends must be increasing and in range; BM25 indexes the
 * chunks and answers a query made of the input's tail, with scores positive and
 * sorted; the lexical embedder gives a unit or zero vector.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/lex.h"
#include "rag/rag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    rag_chunk_config cfg = rag_chunk_config_default();
    cfg.max_tokens = 8 + data[0] % 120;
    cfg.overlap_tokens = (data[1] % 64) % (cfg.max_tokens / 2);
    const char *text = (const char *)data + 2;
    size_t len = size - 2;

    size_t ends[256];
    size_t ne = rag_sentence_ends(text, len, ends, 256);
    for (size_t i = 0; i < ne && i < 256; i++) {
        CHECK(ends[i] <= len);
        CHECK(i == 0 || ends[i] > ends[i - 1]);
    }

    rag_chunk *c;
    size_t n;
    CHECK(rag_chunk_text(text, len, &cfg, &c, &n, NULL) == 0);
    rag_bm25_config bc = rag_bm25_config_default();
    rag_bm25 *x;
    CHECK(rag_bm25_new(&bc, &x, NULL) == 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(c[i].len > 0 && c[i].off + c[i].len <= len);
        CHECK(i == 0 || c[i].off > c[i - 1].off);
        // a single term longer than the budget is the one thing allowed to exceed it
        CHECK(c[i].n_tokens <= cfg.max_tokens || lex_count_terms(text + c[i].off, c[i].len) <= 1);
        CHECK(rag_bm25_add(x, i + 1, text + c[i].off, c[i].len) == 0);
    }
    free(c);
    size_t qoff = len > 24 ? len - 24 : 0;
    rag_hit h[8];
    int k = rag_bm25_search(x, text + qoff, len - qoff, 8, NULL, h);
    CHECK(k >= 0 && k <= 8);
    for (int i = 0; i < k; i++) {
        CHECK(h[i].score > 0 && isfinite(h[i].score));
        CHECK(i == 0 || h[i].score <= h[i - 1].score);
    }
    if (n > 0)
        CHECK(rag_bm25_remove(x, 1) == 0);
    rag_bm25_free(x);

    float v[LEX_EMBED_DIM];
    lex_embed(text, len, v, LEX_EMBED_DIM);
    double norm = 0;
    for (size_t i = 0; i < LEX_EMBED_DIM; i++)
        norm += (double)v[i] * v[i];
    CHECK(norm == 0 || fabs(norm - 1) < 1e-3);
    return 0;
}
