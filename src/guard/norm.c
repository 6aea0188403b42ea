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
 * Every output byte keeps the original byte range of the character it came
 * from (norm_buf.src/srcend), so a match maps back to original offsets.
 *
 * Speed: ASCII is handled inline; other BMP characters go through a table
 * built once (pthread_once) holding each code point's normalized UTF-8 and
 * class flags. utf8proc is called per match only for a character followed by
 * combining marks (composition) and for characters outside the BMP.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "guard/guard_int.h"

enum { C_NONE = 0, C_SEP = 1, C_CJK = 2, C_ALNUM = 3, C_OTHER = 4 };

// Table entry: bits 0-19 blob offset, 20-25 length, 26-28 class, 29 combining.
#define T_OFF(e) ((e)&0xFFFFFu)
#define T_LEN(e) (((e) >> 20) & 0x3Fu)
#define T_CLS(e) (((e) >> 26) & 0x7u)
#define T_COMB(e) (((e) >> 29) & 1u)

static uint32_t *g_tab;
static char *g_blob;
static int g_tab_ok;
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
    free(b->src);
    free(b->srcend);
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
    uint32_t *s = realloc(b->src, cap * sizeof(uint32_t));
    if (!s)
        return ERR_NOMEM;
    b->src = s;
    uint32_t *se = realloc(b->srcend, cap * sizeof(uint32_t));
    if (!se)
        return ERR_NOMEM;
    b->srcend = se;
    b->cap = cap;
    return 0;
}

/* Removes out bytes [at, at+n) (a gap between spaced-out letters). */
static void cut_bytes(norm_buf *b, size_t at, size_t n)
{
    size_t tail = b->n - at - n;
    memmove(b->p + at, b->p + at + n, tail);
    memmove(b->src + at, b->src + at + n, tail * sizeof(uint32_t));
    memmove(b->srcend + at, b->srcend + at + n, tail * sizeof(uint32_t));
    b->n -= n;
}

typedef struct gap {
    size_t start, len, cps;
} gap;

#define CJK_GAP_MAX 8    // separators dropped between two CJK characters
#define SPACED_GAP_MAX 3 // separators between spaced-out letters

int norm_run(const char *text, size_t len, norm_buf *b)
{
    pthread_once(&g_once, table_build);
    if (!g_tab_ok)
        return ERR_NOMEM;
    if (len > (size_t)UINT32_MAX - 1)
        return ERR_TOO_LARGE;
    b->n = 0;
    int rc = reserve(b, len + 64);
    if (rc)
        return rc;
    const unsigned char *t = (const unsigned char *)text;
    size_t gap_start = SIZE_MAX, gap_cps = 0; // current run of separators in out
    unsigned last_cls = C_NONE;               // class of the last non-separator
    size_t word_cps = 0;
    bool word_alnum1 = false;
    size_t run_n = 0;           // consecutive single-letter words so far
    gap g_cur = {0, 0, SIZE_MAX}, g_prev = {0, 0, SIZE_MAX}; // gaps before the last two words
    size_t i = 0;
    while (i <= len) {
        unsigned char u[256];
        const unsigned char *op;
        size_t on, step;
        unsigned cls;
        if (i == len) {
            cls = C_SEP; // end of text ends the last word
            on = 0;
            op = u;
            step = 1;
        } else if (t[i] < 0x80 && (i + 1 >= len || t[i + 1] < 0x80)) {
            uint32_t e = g_tab[t[i]];
            cls = T_CLS(e);
            op = (const unsigned char *)g_blob + T_OFF(e);
            on = T_LEN(e);
            step = 1;
        } else {
            int32_t c;
            step = utf8_dec(t + i, len - i, &c);
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
            step = j - i;
        }
        if (cls == C_NONE) {
            i += step;
            continue;
        }
        if (cls == C_SEP) {
            if (gap_start == SIZE_MAX) {
                // A word just ended: the spaced-out-letters rule.
                bool single = word_cps == 1 && word_alnum1;
                if (single && run_n >= 1 && g_cur.cps <= SPACED_GAP_MAX) {
                    run_n++;
                    if (run_n == 3) {
                        cut_bytes(b, g_cur.start, g_cur.len);
                        cut_bytes(b, g_prev.start, g_prev.len);
                    } else if (run_n > 3) {
                        cut_bytes(b, g_cur.start, g_cur.len);
                    }
                } else {
                    run_n = single ? 1 : 0;
                }
                gap_start = b->n;
                gap_cps = 0;
            }
            gap_cps++;
        } else {
            if (gap_start != SIZE_MAX) {
                if (cls == C_CJK && last_cls == C_CJK && gap_cps <= CJK_GAP_MAX) {
                    b->n = gap_start; // drop separators inside CJK text
                    gap_start = SIZE_MAX;
                } else {
                    g_prev = g_cur;
                    g_cur = (gap){gap_start, b->n - gap_start, gap_cps};
                    gap_start = SIZE_MAX;
                    word_cps = 0;
                }
            }
            if (word_cps == 0)
                word_alnum1 = cls == C_ALNUM;
            word_cps++;
            last_cls = cls;
        }
        if (i == len)
            break;
        if (cls == C_SEP && on == 1 && op[0] == ' ' && b->n > 0 && b->p[b->n - 1] == ' ') {
            i += step; // runs of white space count as one space
            continue;
        }
        if (b->n + on + 8 > b->cap) {
            size_t need;
            if (!size_add_ok(b->n, on + 64 + (len - i) / 4, &need))
                return ERR_TOO_LARGE;
            rc = reserve(b, need);
            if (rc)
                return rc;
        }
        for (size_t k = 0; k < on; k++) {
            b->p[b->n] = (char)op[k];
            b->src[b->n] = (uint32_t)i;
            b->srcend[b->n] = (uint32_t)(i + step);
            b->n++;
        }
        i += step;
    }
    return 0;
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
