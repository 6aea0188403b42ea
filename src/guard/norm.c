/*
 * guard/norm — the text the blocklist and the injection rules look at.
 *
 * Steps, in one pass over the input:
 *   1. each character -> NFKC + case fold (utf8proc), so full-width "ＡＢＣ"
 *      becomes "abc", ligatures and compatibility forms fold, and default-
 *      ignorable characters (zero-width space/joiners, BOM, soft hyphen,
 *      variation selectors) disappear; C0 controls other than whitespace and
 *      invalid UTF-8 bytes disappear too, so they cannot split a term;
 *   2. a gap of at most 8 spaces/punctuation between two CJK characters is
 *      removed ("炸 。弹" -> "炸弹");
 *   3. three or more single letters or digits separated by short gaps are
 *      joined ("b o m b", "k.i.l.l" -> "bomb", "kill").
 *
 * Every output byte maps back to the original byte range of the character it
 * came from (norm_buf segments, see guard_int.h), so a match maps back to
 * original offsets.
 *
 * Speed: the two kinds of run that make up most text are copied in tight
 * loops: ASCII words (lower-cased through a 256-byte table) and CJK
 * ideographs U+4E00-U+9FFF (NFKC and case folding leave them unchanged). A
 * run extends the current identity segment, so the map costs nothing per
 * byte. Other BMP characters go through a table built once (pthread_once)
 * holding each code point's normalized UTF-8 and class flags; utf8proc is
 * called only for a character followed by combining marks (composition) and
 * for characters outside the BMP.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "guard/guard_int.h"

// C_MB marks a byte >= 0x80 in the ASCII class table.
enum { C_NONE = 0, C_SEP = 1, C_CJK = 2, C_ALNUM = 3, C_OTHER = 4, C_MB = 5 };

// Table entry: bits 0-19 blob offset, 20-25 length, 26-28 class, 29 combining.
#define T_OFF(e) ((e)&0xFFFFFu)
#define T_LEN(e) (((e) >> 20) & 0x3Fu)
#define T_CLS(e) (((e) >> 26) & 0x7u)
#define T_COMB(e) (((e) >> 29) & 1u)

static uint32_t *g_tab;
static char *g_blob;
static int g_tab_ok;
static int g_cjk_ident;   // U+4E00-U+9FFF normalize to themselves
static uint8_t g_acls[256]; // class of an ASCII byte, C_MB for bytes >= 0x80
static uint8_t g_alow[256]; // normalized ASCII byte: lower case, white space -> ' '

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const utf8proc_option_t NORM_OPTS =
    UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE | UTF8PROC_STABLE;

static bool is_cjk_cp(int32_t c)
{
    return (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x3040 && c <= 0x30FF) ||
           (c >= 0x20000 && c <= 0x3134F);
}

static bool is_sep_cat(int cat)
{
    switch (cat) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return true;
    default:
        return false;
    }
}

static bool is_comb_cp(int32_t c)
{
    const utf8proc_property_t *pr = utf8proc_get_property(c);
    if (pr->combining_class != 0)
        return true;
    if (pr->category == UTF8PROC_CATEGORY_MN || pr->category == UTF8PROC_CATEGORY_MC ||
        pr->category == UTF8PROC_CATEGORY_ME)
        return true;
    return c >= 0x1160 && c <= 0x11FF; // Hangul medial vowels and finals compose
}

/* Normalizes one code point (or a short cluster) into UTF-8; returns bytes. */
static size_t norm_cps(const int32_t *cps, size_t ncp, unsigned char *out, size_t cap)
{
    int32_t tmp[64];
    utf8proc_ssize_t n = 0;
    for (size_t i = 0; i < ncp; i++) {
        int bc = 0;
        utf8proc_ssize_t k =
            utf8proc_decompose_char(cps[i], tmp + n, (utf8proc_ssize_t)(64 - n), NORM_OPTS, &bc);
        if (k < 0 || n + k > 64)
            return 0;
        n += k;
    }
    if (n == 0)
        return 0;
    utf8proc_ssize_t m = utf8proc_normalize_utf32(tmp, n, NORM_OPTS);
    if (m < 0)
        return 0;
    size_t w = 0;
    for (utf8proc_ssize_t i = 0; i < m; i++) {
        if (w + 4 > cap)
            return 0;
        w += (size_t)utf8proc_encode_char(tmp[i], out + w);
    }
    return w;
}

static size_t ascii_class(int c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return C_ALNUM;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
        return C_SEP;
    if (c < 0x20 || c == 0x7F)
        return C_NONE;
    return C_SEP; // ASCII punctuation and symbols
}

static void table_build(void)
{
    g_tab = malloc(sizeof(uint32_t) * 0x10000);
    size_t bcap = 1 << 19, bn = 0;
    g_blob = malloc(bcap);
    if (!g_tab || !g_blob)
        return;
    for (int32_t c = 0; c < 0x10000; c++) {
        unsigned char u[128];
        size_t w = 0;
        unsigned cls;
        if (c < 0x80) {
            cls = (unsigned)ascii_class(c);
            if (cls != C_NONE) {
                u[0] = (unsigned char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
                if (cls == C_SEP && (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'))
                    u[0] = ' ';
                w = 1;
            }
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            cls = C_NONE;
        } else {
            const utf8proc_property_t *pr = utf8proc_get_property(c);
            if (pr->category == UTF8PROC_CATEGORY_CC) {
                cls = C_NONE;
            } else {
                w = norm_cps(&c, 1, u, sizeof u);
                if (w == 0)
                    cls = C_NONE;
                else if (is_cjk_cp(c))
                    cls = C_CJK;
                else if (is_sep_cat(pr->category))
                    cls = C_SEP;
                else if (w == 1 && ascii_class(u[0]) == C_ALNUM)
                    cls = C_ALNUM;
                else
                    cls = C_OTHER;
            }
        }
        if (w > 63 || bn + w > 0xFFFFF)
            return; // cannot happen with Unicode as it is; leaves g_tab_ok = 0
        if (bn + w > bcap) {
            char *nb = realloc(g_blob, bcap * 2);
            if (!nb)
                return;
            g_blob = nb;
            bcap *= 2;
        }
        memcpy(g_blob + bn, u, w);
        uint32_t comb = (c >= 0x80 && is_comb_cp(c)) ? 1u : 0u;
        g_tab[c] = (uint32_t)bn | ((uint32_t)w << 20) | (cls << 26) | (comb << 29);
        bn += w;
    }
    for (int c = 0; c < 256; c++) {
        g_acls[c] = c < 0x80 ? (uint8_t)ascii_class(c) : C_MB;
        g_alow[c] = (uint8_t)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        if (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
            g_alow[c] = ' ';
    }
    // The CJK fast path copies U+4E00-U+9FFF unchanged: check that holds.
    g_cjk_ident = 1;
    for (int32_t c = 0x4E00; c <= 0x9FFF; c++) {
        unsigned char u[4];
        utf8proc_ssize_t w = utf8proc_encode_char(c, u);
        uint32_t e = g_tab[c];
        if (T_CLS(e) != C_CJK || T_LEN(e) != (uint32_t)w || T_COMB(e) ||
            memcmp(g_blob + T_OFF(e), u, (size_t)w) != 0)
            g_cjk_ident = 0;
    }
    g_tab_ok = 1;
}

size_t utf8_dec(const unsigned char *p, size_t n, int32_t *cp)
{
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    size_t len;
    int32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = -1;
        return 1;
    }
    if (n < len) {
        *cp = -1;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = -1;
        return 1;
    }
    *cp = v;
    return len;
}

void norm_buf_deinit(norm_buf *b)
{
    free(b->p);
    free(b->seg);
    memset(b, 0, sizeof *b);
}

static int reserve(norm_buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > (size_t)UINT32_MAX)
            return ERR_TOO_LARGE;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int seg_reserve(norm_buf *b, size_t need)
{
    if (need <= b->seg_cap)
        return 0;
    size_t cap = b->seg_cap ? b->seg_cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    size_t bytes;
    if (!size_mul_ok(cap, sizeof(norm_seg), &bytes))
        return ERR_TOO_LARGE;
    norm_seg *s = realloc(b->seg, bytes);
    if (!s)
        return ERR_NOMEM;
    b->seg = s;
    b->seg_cap = cap;
    return 0;
}

/* Records that the next output bytes come from source [a, e): extends the last
 * identity segment when they continue it, else starts a segment. */
static inline int seg_note(norm_buf *b, size_t a, size_t e, bool ident)
{
    if (b->nseg) {
        const norm_seg *l = &b->seg[b->nseg - 1];
        if (ident && l->ident && l->src + (b->n - l->out) == a)
            return 0;
    }
    if (UNLIKELY(b->nseg == b->seg_cap)) {
        int rc = seg_reserve(b, b->nseg + 1);
        if (rc)
            return rc;
    }
    b->seg[b->nseg++] = (norm_seg){(uint32_t)b->n, (uint32_t)a, (uint32_t)e, ident ? 1u : 0u};
    return 0;
}

/* Drops segments that start at or past the output end (after b->n shrank). */
static void seg_truncate(norm_buf *b)
{
    while (b->nseg && b->seg[b->nseg - 1].out >= b->n)
        b->nseg--;
}

/* Index of the segment holding output byte k (k < n, nseg > 0). */
static size_t seg_find(const norm_buf *b, size_t k)
{
    size_t lo = 0, hi = b->nseg; // answer in [lo, hi)
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->seg[mid].out <= k)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

size_t norm_src_start(const norm_buf *b, size_t k)
{
    const norm_seg *s = &b->seg[seg_find(b, k)];
    if (!s->ident)
        return s->src;
    size_t x = s->src + (k - s->out);
    while (x > s->src && (b->srct[x] & 0xC0) == 0x80)
        x--;
    return x;
}

size_t norm_src_end(const norm_buf *b, size_t k)
{
    size_t i = seg_find(b, k);
    const norm_seg *s = &b->seg[i];
    if (!s->ident)
        return s->src_end;
    size_t out_end = i + 1 < b->nseg ? b->seg[i + 1].out : b->n;
    size_t lim = s->src + (out_end - s->out);
    size_t x = s->src + (k - s->out) + 1;
    while (x < lim && (b->srct[x] & 0xC0) == 0x80)
        x++;
    return x;
}

bool norm_gap_before(const norm_buf *b, size_t k)
{
    size_t i = seg_find(b, k);
    const norm_seg *s = &b->seg[i];
    if (s->out != k || i == 0)
        return false;
    const norm_seg *p = &b->seg[i - 1];
    size_t pend = p->ident ? p->src + (s->out - p->out) : p->src_end;
    return s->src > pend;
}

/* Makes a segment start at output byte k (< n); returns its index, or a
 * negative error. k is always at a piece boundary, so only an identity
 * segment can need splitting. */
static ptrdiff_t seg_split(norm_buf *b, size_t k)
{
    size_t i = seg_find(b, k);
    if (b->seg[i].out == k)
        return (ptrdiff_t)i;
    int rc = seg_reserve(b, b->nseg + 1);
    if (rc)
        return rc;
    norm_seg s = b->seg[i];
    memmove(b->seg + i + 2, b->seg + i + 1, (b->nseg - i - 1) * sizeof *b->seg);
    b->seg[i + 1] = (norm_seg){(uint32_t)k, s.src + (uint32_t)(k - s.out), 0, s.ident};
    b->nseg++;
    return (ptrdiff_t)(i + 1);
}

/* Removes output bytes [at, at+n) (a gap between spaced-out letters). */
static int cut_bytes(norm_buf *b, size_t at, size_t n)
{
    if (n == 0 || at + n > b->n)
        return 0;
    ptrdiff_t i0 = seg_split(b, at);
    if (i0 < 0)
        return (int)i0;
    ptrdiff_t i1 = (ptrdiff_t)b->nseg;
    if (at + n < b->n) {
        i1 = seg_split(b, at + n);
        if (i1 < 0)
            return (int)i1;
    }
    memmove(b->seg + i0, b->seg + i1, (b->nseg - (size_t)i1) * sizeof *b->seg);
    b->nseg -= (size_t)(i1 - i0);
    for (size_t k = (size_t)i0; k < b->nseg; k++)
        b->seg[k].out -= (uint32_t)n;
    memmove(b->p + at, b->p + at + n, b->n - at - n);
    b->n -= n;
    return 0;
}

typedef struct gap {
    size_t start, len, cps;
} gap;

#define CJK_GAP_MAX 8    // separators dropped between two CJK characters
#define SPACED_GAP_MAX 3 // separators between spaced-out letters

/* The word/gap state of one run. */
typedef struct nstate {
    norm_buf *b;
    size_t gap_start, gap_cps; // current run of separators in out (SIZE_MAX: none)
    unsigned last_cls;         // class of the last non-separator
    size_t word_cps;
    bool word_alnum1;
    size_t run_n;      // consecutive single-letter words so far
    gap g_cur, g_prev; // gaps before the last two words
} nstate;

/* A separator arrives: a word may have just ended (spaced-out letters rule). */
static inline int on_sep(nstate *st)
{
    if (st->gap_start == SIZE_MAX) {
        bool single = st->word_cps == 1 && st->word_alnum1;
        if (single && st->run_n >= 1 && st->g_cur.cps <= SPACED_GAP_MAX) {
            st->run_n++;
            // The third single letter joins the run: cut both gaps (the later
            // one first, so the earlier offsets stay valid); later letters
            // cut the gap before them.
            int rc = 0;
            if (st->run_n >= 3)
                rc = cut_bytes(st->b, st->g_cur.start, st->g_cur.len);
            if (rc == 0 && st->run_n == 3)
                rc = cut_bytes(st->b, st->g_prev.start, st->g_prev.len);
            if (rc)
                return rc;
        } else {
            st->run_n = single ? 1 : 0;
        }
        st->gap_start = st->b->n;
        st->gap_cps = 0;
    }
    st->gap_cps++;
    return 0;
}

/* A word character of class cls arrives: close the gap before it. */
static inline void on_word(nstate *st, unsigned cls)
{
    if (st->gap_start != SIZE_MAX) {
        norm_buf *b = st->b;
        if (cls == C_CJK && st->last_cls == C_CJK && st->gap_cps <= CJK_GAP_MAX) {
            b->n = st->gap_start; // drop separators inside CJK text
            seg_truncate(b);
        } else {
            st->g_prev = st->g_cur;
            st->g_cur = (gap){st->gap_start, b->n - st->gap_start, st->gap_cps};
            st->word_cps = 0;
        }
        st->gap_start = SIZE_MAX;
    }
    if (st->word_cps == 0)
        st->word_alnum1 = cls == C_ALNUM;
    st->word_cps++;
    st->last_cls = cls;
}

static inline int grow_for(norm_buf *b, size_t on, size_t left)
{
    if (LIKELY(b->n + on <= b->cap))
        return 0;
    size_t need;
    if (!size_add_ok(b->n, on + 64 + left / 4, &need))
        return ERR_TOO_LARGE;
    return reserve(b, need);
}

/* fast = false: every character takes the general way (the reference the
 * tests hold the fast paths to). */
static int run(const char *text, size_t len, norm_buf *b, bool fast)
{
    pthread_once(&g_once, table_build);
    if (!g_tab_ok)
        return ERR_NOMEM;
    if (len > (size_t)UINT32_MAX - 1)
        return ERR_TOO_LARGE;
    b->n = 0;
    b->nseg = 0;
    b->srct = (const unsigned char *)text;
    int rc = reserve(b, len + 64);
    if (rc)
        return rc;
    const unsigned char *t = (const unsigned char *)text;
    nstate st = {b, SIZE_MAX, 0, C_NONE, 0, false, 0, {0, 0, SIZE_MAX}, {0, 0, SIZE_MAX}};
    size_t i = 0;
    while (i < len) {
        unsigned char c0 = t[i];
        unsigned acl = g_acls[c0];
        // Fast path 1: a run of ASCII letters and digits. Its last character
        // goes the slow way when a non-ASCII byte (a combining mark?) follows.
        if (acl == C_ALNUM && fast) {
            size_t j = guard_alnum_end(t, i + 1, len);
            if (j < len && t[j] >= 0x80)
                j--;
            if (j > i) {
                on_word(&st, C_ALNUM);
                st.word_cps += j - i - 1;
                if ((rc = grow_for(b, j - i, len - i)) || (rc = seg_note(b, i, j, true)))
                    return rc;
#if defined(__SSE2__)
                // A word of <= 16 bytes (most): one 16-byte store when both
                // buffers have the room (bytes past the word are overwritten
                // later or lie past n).
                if (j - i <= 16 && i + 16 <= len && b->n + 16 <= b->cap) {
                    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(t + i));
                    __m128i up = _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8((char)(0x80 - 'A'))),
                                                _mm_set1_epi8((char)(-128 + 26)));
                    v = _mm_or_si128(v, _mm_and_si128(up, _mm_set1_epi8(0x20)));
                    _mm_storeu_si128((__m128i *)(void *)(b->p + b->n), v);
                } else
#endif
                    guard_lower_copy(b->p + b->n, t + i, j - i);
                b->n += j - i;
                i = j;
                continue;
            }
        }
        // Fast path 2: a run of CJK ideographs U+4E00-U+9FFF (lead bytes
        // E4-E9), each followed by ASCII or another such lead byte (so no
        // combining mark), copied unchanged.
        if (c0 >= 0xE4 && c0 <= 0xE9 && g_cjk_ident && fast) {
            size_t j = i;
            while (j + 2 < len && t[j] >= 0xE4 && t[j] <= 0xE9 && (t[j + 1] & 0xC0) == 0x80 &&
                   (t[j + 2] & 0xC0) == 0x80 && (t[j] > 0xE4 || t[j + 1] >= 0xB8) &&
                   (j + 3 >= len || t[j + 3] < 0x80 || (t[j + 3] >= 0xE4 && t[j + 3] <= 0xE9)))
                j += 3;
            if (j > i) {
                on_word(&st, C_CJK);
                st.word_cps += (j - i) / 3 - 1;
                if ((rc = grow_for(b, j - i, len - i)) || (rc = seg_note(b, i, j, true)))
                    return rc;
                memcpy(b->p + b->n, t + i, j - i);
                b->n += j - i;
                i = j;
                continue;
            }
        }
        unsigned char u[256];
        const unsigned char *op;
        size_t on, step;
        unsigned cls;
        bool ident;
        if (c0 < 0x80 && (i + 1 >= len || t[i + 1] < 0x80)) {
            cls = acl;
            op = g_alow + c0;
            on = cls == C_NONE ? 0 : 1;
            step = 1;
            ident = true;
        } else {
            int32_t c;
            if (fast && c0 >= 0xE1 && c0 <= 0xEC && i + 2 < len && (t[i + 1] & 0xC0) == 0x80 &&
                (t[i + 2] & 0xC0) == 0x80) { // 3-byte, never over-long or a surrogate
                c = (int32_t)((c0 & 0x0Fu) << 12 | (t[i + 1] & 0x3Fu) << 6 | (t[i + 2] & 0x3Fu));
                step = 3;
            } else {
                step = utf8_dec(t + i, len - i, &c);
            }
            if (c < 0) {
                i += step;
                continue; // invalid byte: dropped like a zero-width character
            }
            // A following combining mark: normalize the whole cluster at once.
            // ASCII and CJK ideographs (lead bytes E4-E9) never combine, so the
            // common next characters skip the decode.
            size_t j = i + step;
            int32_t cl[32];
            size_t ncl = 0;
            cl[ncl++] = c;
            while (j < len && ncl < 32 && t[j] >= 0x80 && !(t[j] >= 0xE4 && t[j] <= 0xE9)) {
                int32_t d;
                size_t k = utf8_dec(t + j, len - j, &d);
                if (d < 0)
                    break;
                bool comb = d < 0x10000 ? T_COMB(g_tab[d]) : is_comb_cp(d);
                if (!comb)
                    break;
                cl[ncl++] = d;
                j += k;
            }
            if (ncl == 1 && c < 0x10000) {
                uint32_t e = g_tab[c];
                cls = T_CLS(e);
                op = (const unsigned char *)g_blob + T_OFF(e);
                on = T_LEN(e);
            } else {
                on = norm_cps(cl, ncl, u, sizeof u);
                op = u;
                if (on == 0 && c < 0x10000) { // over-long cluster: keep its starter
                    op = (const unsigned char *)g_blob + T_OFF(g_tab[c]);
                    on = T_LEN(g_tab[c]);
                }
                if (on == 0)
                    cls = C_NONE;
                else if (is_cjk_cp(c))
                    cls = C_CJK;
                else if (c < 0x10000)
                    cls = T_CLS(g_tab[c]) == C_NONE ? C_OTHER : T_CLS(g_tab[c]);
                else
                    cls = is_sep_cat(utf8proc_category(c)) ? C_SEP : C_OTHER;
            }
            ident = ncl == 1 && on == step;
            step = j - i;
        }
        if (cls == C_NONE) {
            i += step;
            continue;
        }
        if (cls == C_SEP) {
            if ((rc = on_sep(&st)))
                return rc;
            if (on == 1 && op[0] == ' ' && b->n > 0 && b->p[b->n - 1] == ' ') {
                i += step; // runs of white space count as one space
                continue;
            }
        } else {
            on_word(&st, cls);
        }
        if ((rc = grow_for(b, on, len - i)) || (rc = seg_note(b, i, i + step, ident)))
            return rc;
        memcpy(b->p + b->n, op, on);
        b->n += on;
        i += step;
    }
    return on_sep(&st); // the end of the text ends the last word
}

int norm_run(const char *text, size_t len, norm_buf *b)
{
    return run(text, len, b, true);
}

int norm_run_ref(const char *text, size_t len, norm_buf *b)
{
    return run(text, len, b, false);
}

int guard_normalize(const char *text, size_t len, buf *out)
{
    norm_buf nb = {0};
    int rc = norm_run(text, len, &nb);
    if (rc == 0)
        rc = buf_append(out, nb.p, nb.n);
    norm_buf_deinit(&nb);
    return rc;
}
