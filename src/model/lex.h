/*
 * model/lex — lexical text units and the built-in lexical embedder.
 *
 * Terms: a text is cut into terms by one rule that keyword search (rag's BM25)
 * and the lexical embedder share:
 *   - a word is a maximal run of letters, digits and combining marks (Unicode
 *     categories L*, N*, M*) that are not CJK; it is compared lower-cased
 *     (Unicode simple lower case);
 *   - every CJK character (Han, Hiragana, Katakana, Hangul syllables and
 *     compatibility ideographs) is a term of its own, flagged is_cjk, so a
 *     caller can pair neighbours into bigrams (Chinese and Japanese have no
 *     spaces between words);
 *   - everything else (spaces, punctuation, symbols, invalid UTF-8) separates.
 *
 * The lexical embedder (lex_embed): signed feature hashing of
 *   word unigrams (weight 1), word bigrams (0.5), character trigrams of
 *   "<word>" (0.25 each), CJK character unigrams (0.5) and bigrams of adjacent
 *   CJK characters (1.0)
 * into dim buckets: feature f adds sign(f) * weight to bucket h(f) mod dim,
 * h = FNV-1a 64 of a kind byte and the feature's bytes, finished by the
 * splitmix64 mixer; sign from the top bit. The vector is then scaled to unit
 * L2 norm (a text without terms stays zero). Deterministic on every machine;
 * similar texts (shared words, shared word pieces, shared CJK bigrams) get a
 * high cosine, unrelated ones near 0. It is the embedder collections and
 * /v1/embeddings use when no embedding model is configured; its name is
 * LEX_EMBED_NAME.
 *
 * Everything here is pure and thread-safe; nothing allocates.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEX_EMBED_DIM 384
#define LEX_EMBED_NAME "ferry-lexical-384"
#define LEX_TERM_MAX 256 /* longest word kept whole, in bytes (longer ones are cut) */

typedef struct lex_term {
    size_t off;  // byte offset of the term in the text
    size_t len;  // bytes
    bool is_cjk; // one CJK character
} lex_term;

/* True for code points lex treats as CJK characters (see the top comment). */
bool lex_is_cjk(uint32_t cp);

/*
 * Finds the next term at or after *pos in text[0..len). Returns true with *t
 * set and *pos moved past it, false at the end of the text.
 */
bool lex_next(const char *text, size_t len, size_t *pos, lex_term *t);

/*
 * Writes the lower-cased UTF-8 form of text[0..n) into out (cap bytes) and
 * returns its length; stops before a character that would not fit (never
 * writes a partial character). Not NUL-terminated.
 */
size_t lex_lower(const char *text, size_t n, char *out, size_t cap);

/* Number of terms in the text (words plus CJK characters). */
size_t lex_count_terms(const char *text, size_t len);

/* Embeds text into out (dim floats, dim >= 1), as described at the top. */
void lex_embed(const char *text, size_t len, float *out, size_t dim);
