/*
 * model/tok_impl — internals shared by the tok_*.c files (not a public API).
 *
 * The vocab keeps every token text in one blob (text), its decoded bytes in
 * another (piece), and two open-addressing hash tables: text -> id and
 * (left, right) merge -> rank. Slots hold index+1 so 0 means empty; tables
 * are sized to a power of two at least twice the entry count, so probing
 * always ends.
 */
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/tok.h"

#define TOK_MAX_REGEX 6

/* Per-token attribute bits beyond the type (llama.cpp's lstrip/rstrip). */
#define TOK_ATTR_RSTRIP 1u
#define TOK_ATTR_LSTRIP 2u
#define TOK_ATTR_EOG 4u

typedef struct tok_info {
    uint32_t off; // into v->text
    uint32_t len;
    uint32_t piece_off; // into v->piece: decoded bytes (spaces unescaped, bytes unmapped)
    uint32_t piece_len;
    float score;
    uint8_t type; // tok_type
    uint8_t attr; // TOK_ATTR_*
} tok_info;

typedef struct tok_merge {
    uint32_t off; // into v->merge_text: left bytes then right bytes
    uint32_t left_len;
    uint32_t len; // left_len + right_len
    int32_t rank;
} tok_merge;

/* A compiled pre-tokenizer: regexes applied in sequence (each splits the pieces of the last). */
typedef struct tok_re_set {
    pcre2_code *re[TOK_MAX_REGEX];
    int n;
} tok_re_set;

struct tok_vocab {
    tok_kind kind;
    tok_pre pre;
    uint32_t n_tokens;
    tok_info *tok;  // (n_tokens)
    char *text;     // all token texts, back to back
    char *piece;    // all decoded pieces
    uint32_t *hash; // text -> id+1
    uint32_t hash_mask;
    uint32_t max_token_len;

    uint32_t n_merges;
    tok_merge *merges;
    char *merge_text;
    uint32_t *mhash; // merge -> index+1
    uint32_t mhash_mask;

    tok_id *specials; // control/unknown/user-defined ids, longest text first
    uint32_t n_specials;

    tok_id bos, eos, unk, sep, pad, cls, mask, eot, eom;
    bool add_bos, add_eos, add_sep, add_space_prefix;
    bool ignore_merges; // llama3: a pre-token that is a whole token skips merging
    bool wpm_lowercase, wpm_strip_accents;
    tok_id byte_tok[256];  // SPM: token of <0xXX>; BPE: token of the mapped byte; TOK_NULL if none
    char byte_enc[256][2]; // BPE: UTF-8 of each byte's GPT-2 character
    uint8_t byte_enc_len[256];
    uint8_t special_first[32]; // bitmap of the first bytes of special tokens' texts
    uint32_t special_lens[64]; // distinct lengths of special tokens' texts
    uint32_t n_special_lens;
    bool special_lens_full; // more distinct lengths than special_lens holds: no prefilter

    tok_re_set re;
};

/* FNV-1a over bytes, finished with a multiply-xorshift so low bits mix. */
static inline uint32_t tok_hash_bytes(const char *p, size_t n, uint32_t seed)
{
    uint32_t h = 2166136261u ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

/* Token id of exactly n bytes at p, or TOK_NULL. */
tok_id tok_find_(const tok_vocab *v, const char *p, size_t n);
/* Merge rank of (left, right) where right starts at p+left_n, or -1. */
int32_t tok_merge_rank_(const tok_vocab *v, const char *p, size_t left_n, size_t right_n);

/* Compiles the regexes of pre into rs (JIT where available). Returns 0 or ERR_INTERNAL. */
int tok_re_compile_(tok_pre pre, tok_re_set *rs, err_msg *e);
void tok_re_free_(tok_re_set *rs);

/* A growable list of (offset, length) spans with a ceiling on count. */
typedef struct tok_spans {
    size_t *off;
    size_t *len;
    size_t n;
    size_t cap;
} tok_spans;

int tok_spans_push_(tok_spans *s, size_t off, size_t len);
void tok_spans_free_(tok_spans *s);

/*
 * Splits valid UTF-8 text[0..len) with the regex sequence of rs into out
 * (matches and the gaps between them, in order, covering all of text).
 * Returns 0, ERR_NOMEM or ERR_INTERNAL.
 */
int tok_re_split_(const tok_re_set *rs, const char *text, size_t len, tok_spans *out, err_msg *e);

/* UTF-8 helpers. */
/* Length of a UTF-8 sequence from its first byte (1 for invalid leads), as llama.cpp counts. */
static inline size_t tok_utf8_len(uint8_t c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}
/*
 * Decodes one well-formed UTF-8 character at p (n bytes available) into *cp
 * and returns its length, or 0 when the bytes are not a valid character
 * (overlong, surrogate, past U+10FFFF, truncated, bad continuation).
 */
size_t tok_utf8_decode_(const uint8_t *p, size_t n, uint32_t *cp);
/* Encodes cp (<= 0x10FFFF) into out (4 bytes room); returns the length. */
size_t tok_utf8_encode_(uint32_t cp, char *out);
/*
 * Copies text into a new malloc'd buffer where each byte that does not
 * start a valid character is replaced by U+FFFD. *out_len gets the length.
 * Returns the buffer or NULL (out of memory).
 */
char *tok_utf8_sanitize_(const char *text, size_t len, size_t *out_len);
/* True for the White_Space property (llama.cpp's whitespace table). */
bool tok_is_space_(uint32_t cp);

/* The three tokenizers: append ids for one raw-text fragment. */
int tok_spm_(const tok_vocab *v, const char *text, size_t len, bool prefix_space, tok_list *out);
int tok_bpe_(const tok_vocab *v, const char *text, size_t len, tok_list *out, err_msg *e);
int tok_wpm_(const tok_vocab *v, const char *text, size_t len, tok_list *out);

/* GPT-2 byte <-> unicode mapping (bytes_to_unicode of the GPT-2 encoder). */
uint32_t tok_byte_to_cp_(uint8_t b);
/* Fills map[cp] = byte for cp < 0x144 (-1 where no byte maps there). */
void tok_cp_to_byte_table_(int16_t map[0x144]);
