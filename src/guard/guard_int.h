/*
 * guard_int.h — private to src/guard: the normalizer with its offset map,
 * the Aho-Corasick automaton, the policy and engine structs, the scratch.
 */
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "guard/guard.h"

/* ---- normalization with an offset map ---------------------------------- */

/*
 * Normalized text plus a map back to the source, kept as segments rather than
 * per byte (writing two offsets per byte cost more than the normalization).
 * A segment starts at output byte `out`:
 *   ident = 1: output bytes map one to one onto source bytes from `src` on,
 *              a run of whole characters each normalized to the same number
 *              of bytes (ASCII words, CJK ideographs, lower-cased letters);
 *              the source character of output byte k is found from the
 *              source's UTF-8 structure around src + (k - out).
 *   ident = 0: one source cluster [src, src_end) whose normalized form is the
 *              segment's bytes (full-width forms, ligatures, clusters with
 *              combining marks).
 * Segments are in increasing order of out and of src; a segment ends where
 * the next begins (the last at n). Source bytes between two segments were
 * dropped (zero-width characters, collapsed spaces, gaps inside CJK text).
 * text < 4 GiB (uint32 offsets). srct points at the source of the last run.
 */
typedef struct norm_seg {
    uint32_t out, src, src_end;
    uint32_t ident;
} norm_seg;

typedef struct norm_buf {
    char *p;
    size_t n, cap;
    norm_seg *seg;
    size_t nseg, seg_cap;
    const unsigned char *srct; // borrowed: the text given to the last norm_run
} norm_buf;

void norm_buf_deinit(norm_buf *b);
/* Normalizes text into b (replacing its contents); b keeps a pointer to text,
 * which must outlive the use of the map. 0, ERR_NOMEM, ERR_TOO_LARGE. */
int norm_run(const char *text, size_t len, norm_buf *b);
/* norm_run with every character taken the general way (no ASCII-word or
 * CJK-run fast path, no inline decode): the tests' reference. */
int norm_run_ref(const char *text, size_t len, norm_buf *b);
/* Source byte range of the character that output byte k (< n) came from. */
size_t norm_src_start(const norm_buf *b, size_t k);
size_t norm_src_end(const norm_buf *b, size_t k);
/* True when source bytes were dropped between output bytes k-1 and k (0 < k < n). */
bool norm_gap_before(const norm_buf *b, size_t k);

/* ---- Aho-Corasick -------------------------------------------------------- */

/*
 * A DFA over code points (guard/ac.c). Patterns and text are UTF-8; the walk
 * takes one step per character (a CJK ideograph is one step, not three).
 * Symbols: ASCII bytes that occur in patterns get classes [1, na), other code
 * points that occur in patterns get ids [1, nx) through a two-level page
 * table; everything else is symbol 0 (back to the root). A state is named by
 * a key K < 2^30; a transition value is K | AC_OUT (the state, or one of its
 * suffixes, ends a pattern) | AC_HASX (the state has non-ASCII transitions
 * other than the root's).
 *   ASCII step:     adelta[(K < alim ? K : 0) + class]: states whose ASCII
 *                   transitions differ from the root's own a row of na cells
 *                   (K = row * na < alim); the others use the root's row.
 *   non-ASCII step: a state without an ASCII row has K = alim + offset of
 *                   its node in xnodes: [index, n, n symbols, n values], the
 *                   transitions that differ from the root's (laid out in
 *                   breadth-first order, so the shallow ones share lines);
 *                   a state with a row and such transitions (AC_HASX) keeps
 *                   them in a table (K, symbol) -> value behind a bitmap
 *                   filter; otherwise xroot[symbol], the root's transitions.
 * Invalid UTF-8 bytes are symbols of their own (pseudo code points 0x110000 +
 * byte), so any byte string walks the same way from any decode start.
 * A pattern whose first/last byte is an ASCII letter or digit only matches at
 * a word boundary on that side (so "ass" does not match inside "class").
 */
#define AC_OUT 0x80000000u
#define AC_HASX 0x40000000u
#define AC_KMASK 0x3FFFFFFFu

typedef struct ac_xent {
    uint32_t k, x, v; // state key, symbol, transition value; k = UINT32_MAX: empty
} ac_xent;

typedef struct ac_auto {
    uint8_t acls[128]; // ASCII byte -> class, 0: in no pattern
    uint32_t na;       // ASCII classes including 0
    uint32_t nx;       // non-ASCII symbols including 0
    uint32_t nstates;
    uint32_t narows;    // states with an ASCII row
    uint32_t alim;      // narows * na: keys below it own a row
    uint32_t *adelta;   // (narows, na) transition values
    uint32_t *xroot;    // (nx) the root's transition values on non-ASCII symbols
    uint16_t *xtop;     // (AC_XTOP) code point >> 8 -> page, 0: the page of zeros
    uint32_t *xpages;   // (npages, 256) symbol of each code point
    uint32_t *xnodes;   // nodes of the states without an ASCII row
    uint64_t *xfilt;    // bitmap over hashes of (K, symbol) of the exceptions
    uint32_t xfbits;    // log2 of the bitmap's bits
    ac_xent *xtab;      // exceptions of states with a row, open addressing
    uint32_t xtbits;    // log2 of its slots
    size_t nexc;        // exceptions stored (nodes and table)
    uint32_t *own;      // per state index: first entry in out_pat/out_next, UINT32_MAX none
    uint32_t *dict;     // per state index: nearest proper suffix with outputs, 0 none
    uint32_t *out_pat;  // entries: pattern id
    uint32_t *out_next; // entries: next entry of the same state
    uint32_t *pat_len;  // per pattern: bytes
    uint8_t *pat_wb;    // per pattern: bit0 needs boundary before, bit1 after
    size_t npat;
    size_t maxlen; // longest pattern in bytes
} ac_auto;

/* Called per match: pattern id and [start, end) in the searched bytes.
 * Return nonzero to stop. */
typedef int (*ac_match_fn)(void *ctx, uint32_t pat, size_t start, size_t end);

/*
 * Builds an automaton of n patterns (pats[i] of lens[i] bytes, already
 * normalized; empty patterns never match). Returns 0, ERR_NOMEM or
 * ERR_TOO_LARGE (more than 2^30 states or ASCII cells, or more than 2^26
 * non-ASCII exceptions).
 */
int ac_build(const char *const *pats, const size_t *lens, size_t n, ac_auto *out, err_msg *e);
void ac_free(ac_auto *a);
/* Reports every match in order of end position. nb (may be NULL) is the
 * normalizer's output that text/len are (nb->p, nb->n): its map shows dropped
 * separators as word boundaries. Returns what fn returned to stop, or 0. */
int ac_search(const ac_auto *a, const char *text, size_t len, const norm_buf *nb, ac_match_fn fn,
              void *ctx);

/* ---- injection rules ---------------------------------------------------- */

typedef struct inj_set inj_set; // compiled keyword automaton + rule table

int inj_set_new(inj_set **out, err_msg *e);
void inj_set_free(inj_set *s);
/* The set's distinct normalized keywords (borrowed; keyword i is pattern i of
 * its automaton). Returns their number. A policy with a blocklist compiles
 * them into its own automaton after its terms, so one walk serves both. */
size_t inj_keywords(const inj_set *s, const char *const **pats, const size_t **lens);

/* Rule matching state of one text: keyword hits are fed in order of end. */
#define INJ_RULES_MAX 32
#define INJ_GROUPS 4
typedef struct inj_match {
    size_t chain[INJ_RULES_MAX][INJ_GROUPS]; // end of the latest chain reaching group g
    bool fired[INJ_RULES_MAX];
} inj_match;

void inj_match_init(inj_match *m);
/* Keyword kw (an index of inj_keywords) matched normalized bytes [start, end). */
void inj_match_kw(const inj_set *s, inj_match *m, uint32_t kw, size_t start, size_t end);
/* Rule score of the fired rules, combined with the encoded-payload score of
 * text (decoded and rescanned down to depth). */
double inj_match_score(const inj_set *s, const inj_match *m, const char *text, size_t len,
                       int depth);
/* Encoded-payload score of text, the straightforward way (one table lookup
 * per byte): the reference the tests hold the scan's faster pass to. */
double inj_encoded_score_ref(const inj_set *s, const char *text, size_t len, int depth);
/*
 * Rule score in [0,1] of text (normalized view nb of the same text); decodes
 * base64 / hex / URL-encoded runs of text and rescans them down to depth.
 */
double inj_score(const inj_set *s, const char *text, size_t len, const norm_buf *nb, int depth);

/* ---- policy documents (yaml.c) ------------------------------------------ */

/* Line and column (1-based) of each node of a parsed document, for errors. */
typedef struct guard_pos {
    const void *node; // a json_t of the tree
    uint32_t line, col;
} guard_pos;

typedef struct guard_pos_map {
    guard_pos *ents;
    size_t n, cap;
} guard_pos_map;

struct json_t;
/*
 * Parses a YAML policy document into a jansson tree (*out, caller decrefs),
 * recording node positions in pm (may be NULL). file names the document in
 * messages. Returns 0, ERR_FORMAT (with file:line:column in e) or ERR_NOMEM.
 */
int guard_yaml_load(const char *text, size_t len, const char *file, struct json_t **out,
                    guard_pos_map *pm, err_msg *e) MUST_USE;
bool guard_pos_find(const guard_pos_map *pm, const void *node, uint32_t *line, uint32_t *col);
void guard_pos_map_free(guard_pos_map *pm);

/* ---- policies and engine ----------------------------------------------- */

typedef struct guard_custom {
    char *name;
    char *placeholder; // upper-case name
    pcre2_code *re;
    guard_action action;
} guard_custom;

struct guard_policy {
    char *id;
    guard_action act[GUARD_N_BUILTIN];
    guard_action act_blocklist;
    guard_action act_injection;
    double inj_threshold;   // attack when score >= this
    double judge_threshold; // judge runs when rule score >= this (and a judge exists)
    bool judge_on;
    int decode_depth;
    bool restore;         // restore placeholders in the output
    size_t stream_window; // hold-back window in bytes
    size_t stream_max;    // most bytes held back at once
    bool retrieved_quote; // chunks over the threshold: quote (true) or drop
    guard_custom *custom;
    size_t n_custom;
    pcre2_match_context *mctx; // match limit for custom patterns (read-only once built)
    ac_auto terms;             // blocklist terms [0, n_terms), then the injection keywords
    size_t n_terms;
    bool has_terms;
    const guard_engine *g;
};

typedef struct guard_map_ent {
    char *name; // route or key
    size_t policy;
} guard_map_ent;

struct guard_engine {
    guard_config cfg;
    guard_policy *pol;
    size_t n_pol;
    size_t def;
    guard_map_ent *routes, *keys;
    size_t n_routes, n_keys;
    inj_set *inj;
    uint8_t key[32];
};

struct guard_scratch {
    norm_buf nb;
    guard_span *ents;
    size_t n_ents, cap_ents;
    guard_span *terms;
    size_t n_terms, cap_terms;
    pcre2_match_data *md;
    size_t spans_max;
    int err;
};

/* Appends a span; ERR_TOO_LARGE past spans_max. */
int scratch_push(guard_scratch *s, bool term, guard_span sp);

/* ---- detectors ---------------------------------------------------------- */

/* Finds PII and secrets (built-in types whose action is not off) in text. */
int pii_scan(const guard_policy *p, guard_scratch *s, const char *text, size_t len);

/* Policy construction helpers (policy.c). */
void policy_defaults(guard_policy *p);
void policy_deinit(guard_policy *p);

/* Keyed BLAKE2b-128 hash in hex of bytes (audit). */
void guard_hash_hex(const guard_engine *g, const void *p, size_t n, char out[33]);

/* The first index >= i (and <= len) whose 8 bytes from there are not all
 * >= 0x80, or i itself: skips runs of non-ASCII text (CJK) 8 bytes at a time
 * in scans whose detectors start only at ASCII bytes. */
static inline size_t guard_skip_high8(const unsigned char *t, size_t i, size_t len)
{
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, t + i, 8);
        if ((w & 0x8080808080808080ull) != 0x8080808080808080ull)
            break;
        i += 8;
    }
    return i;
}

/* The end of the run of ASCII letters and digits that starts at i: the first
 * index >= i whose byte is not one, or len. 16 bytes per step with SSE2 (a
 * word ends without a mispredicted loop exit). */
static inline size_t guard_alnum_end(const unsigned char *t, size_t i, size_t len)
{
#if defined(__SSE2__)
    // x in [lo, lo + n) <=> (int8)(x + 0x80 - lo) < -128 + n, bytes >= 0x80 included.
    const __m128i k20 = _mm_set1_epi8(0x20);
    const __m128i dgo = _mm_set1_epi8((char)(0x80 - '0')), dgn = _mm_set1_epi8((char)(-128 + 10));
    const __m128i alo = _mm_set1_epi8((char)(0x80 - 'a')), aln = _mm_set1_epi8((char)(-128 + 26));
    while (i + 16 <= len) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(t + i));
        __m128i dg = _mm_cmplt_epi8(_mm_add_epi8(v, dgo), dgn);
        __m128i al = _mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(v, k20), alo), aln);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(dg, al)) ^ 0xFFFFu;
        if (m)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
    }
#endif
    while (i < len && ((t[i] >= '0' && t[i] <= '9') || ((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z')))
        i++;
    return i;
}

/* Copies n bytes of ASCII letters and digits from src to dst, lower-cased. */
static inline void guard_lower_copy(char *dst, const unsigned char *src, size_t n)
{
    size_t k = 0;
#if defined(__SSE2__)
    const __m128i ao = _mm_set1_epi8((char)(0x80 - 'A')), an = _mm_set1_epi8((char)(-128 + 26));
    const __m128i k20 = _mm_set1_epi8(0x20);
    for (; k + 16 <= n; k += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + k));
        __m128i up = _mm_cmplt_epi8(_mm_add_epi8(v, ao), an);
        _mm_storeu_si128((__m128i *)(void *)(dst + k), _mm_or_si128(v, _mm_and_si128(up, k20)));
    }
#endif
    for (; k < n; k++)
        dst[k] = (char)(src[k] >= 'A' && src[k] <= 'Z' ? src[k] + 32 : src[k]);
}

/* UTF-8 decode of one code point at p (n > 0 bytes left); returns its length
 * and the code point, or length 1 and -1 for an invalid byte. */
size_t utf8_dec(const unsigned char *p, size_t n, int32_t *cp);

/* Stream support (guard.c): the request's policy; emit output text [from, to)
 * of a scanned text (findings redacted as "[TYPE]", placeholders restored per
 * policy); audit the findings ending in (from, to]. */
const guard_policy *guard_req_policy_(const guard_req *r);
int guard_req_emit_(guard_req *r, const char *text, const guard_result *res, size_t from, size_t to,
                    buf *out);
void guard_req_audit_(guard_req *r, const char *text, size_t len, const guard_result *res,
                      size_t from, size_t to);
