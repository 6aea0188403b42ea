/*
 * model/lex — term iteration, lower-casing and the hashed lexical embedder
 * (see lex.h for the rules and the feature set).
 */
#include "model/lex.h"

#include <math.h>
#include <string.h>
#include <utf8proc.h>

bool lex_is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) ||   // CJK Unified Ideographs
           (cp >= 0x3400 && cp <= 0x4DBF) ||   // Extension A
           (cp >= 0x20000 && cp <= 0x2FA1F) || // Extensions B.. and compatibility supplement
           (cp >= 0xF900 && cp <= 0xFAFF) ||   // Compatibility Ideographs
           (cp >= 0x3040 && cp <= 0x30FF) ||   // Hiragana, Katakana
           (cp >= 0x31F0 && cp <= 0x31FF) ||   // Katakana phonetic extensions
           (cp >= 0xAC00 && cp <= 0xD7AF);     // Hangul syllables
}

/* Decodes one code point at p (n > 0 bytes left); invalid bytes give -1, length 1. */
static size_t decode(const char *p, size_t n, int32_t *cp)
{
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)(n > 4 ? 4 : n), cp);
    if (k <= 0) {
        *cp = -1;
        return 1;
    }
    return (size_t)k;
}

static bool is_word_cp(int32_t cp)
{
    if (cp < 0)
        return false;
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return true;
    default:
        return false;
    }
}

bool lex_next(const char *text, size_t len, size_t *pos, lex_term *t)
{
    size_t i = *pos;
    while (i < len) {
        int32_t cp;
        size_t k = decode(text + i, len - i, &cp);
        if (cp >= 0 && lex_is_cjk((uint32_t)cp)) {
            *t = (lex_term){i, k, true};
            *pos = i + k;
            return true;
        }
        if (!is_word_cp(cp)) {
            i += k;
            continue;
        }
        size_t start = i;
        i += k;
        while (i < len) {
            k = decode(text + i, len - i, &cp);
            if (!is_word_cp(cp) || lex_is_cjk((uint32_t)cp))
                break;
            i += k;
        }
        *t = (lex_term){start, i - start, false};
        *pos = i;
        return true;
    }
    *pos = len;
    return false;
}

size_t lex_lower(const char *text, size_t n, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    while (i < n) {
        int32_t cp;
        size_t k = decode(text + i, n - i, &cp);
        if (cp < 0)
            cp = 0xFFFD;
        cp = utf8proc_tolower(cp);
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t m = utf8proc_encode_char(cp, enc);
        if (m <= 0 || o + (size_t)m > cap)
            break;
        memcpy(out + o, enc, (size_t)m);
        o += (size_t)m;
        i += k;
    }
    return o;
}

size_t lex_count_terms(const char *text, size_t len)
{
    size_t pos = 0, n = 0;
    lex_term t;
    while (lex_next(text, len, &pos, &t))
        n++;
    return n;
}

/* ---------------------------------------------------------------- embedder */

static uint64_t fnv_feed(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void add_feature(float *out, size_t dim, char kind, const char *a, size_t na,
                        const char *b, size_t nb, float w)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv_feed(h, &kind, 1);
    h = fnv_feed(h, a, na);
    if (b) {
        h = fnv_feed(h, " ", 1);
        h = fnv_feed(h, b, nb);
    }
    // splitmix64 finalizer: spreads FNV's weak low bits over the bucket index
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    out[h % dim] += (h >> 63) ? -w : w;
}

/* Character trigrams of "<word>" (code points, not bytes). */
static void add_trigrams(float *out, size_t dim, const char *w, size_t n)
{
    char buf[LEX_TERM_MAX + 2];
    size_t starts[LEX_TERM_MAX + 3];
    size_t nb = 0, nc = 0;
    buf[nb++] = '<';
    memcpy(buf + nb, w, n);
    nb += n;
    buf[nb++] = '>';
    for (size_t i = 0; i < nb;) {
        int32_t cp;
        starts[nc++] = i;
        i += decode(buf + i, nb - i, &cp);
    }
    starts[nc] = nb;
    if (nc < 3)
        return;
    for (size_t i = 0; i + 3 <= nc; i++)
        add_feature(out, dim, 't', buf + starts[i], starts[i + 3] - starts[i], NULL, 0, 0.25f);
}

void lex_embed(const char *text, size_t len, float *out, size_t dim)
{
    memset(out, 0, dim * sizeof *out);
    char prev[LEX_TERM_MAX], cur[LEX_TERM_MAX];
    size_t nprev = 0, prev_end = 0, pos = 0;
    bool has_prev = false, prev_cjk = false;
    lex_term t;
    while (lex_next(text, len, &pos, &t)) {
        size_t n = lex_lower(text + t.off, t.len, cur, sizeof cur);
        if (t.is_cjk) {
            add_feature(out, dim, 'c', cur, n, NULL, 0, 0.5f);
            if (has_prev && prev_cjk && prev_end == t.off)
                add_feature(out, dim, 'd', prev, nprev, cur, n, 1.0f);
        } else {
            add_feature(out, dim, 'w', cur, n, NULL, 0, 1.0f);
            if (has_prev && !prev_cjk)
                add_feature(out, dim, 'b', prev, nprev, cur, n, 0.5f);
            add_trigrams(out, dim, cur, n);
        }
        memcpy(prev, cur, n);
        nprev = n;
        prev_end = t.off + t.len;
        prev_cjk = t.is_cjk;
        has_prev = true;
    }
    double norm = 0;
    for (size_t i = 0; i < dim; i++)
        norm += (double)out[i] * out[i];
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm));
        for (size_t i = 0; i < dim; i++)
            out[i] *= inv;
    }
}
