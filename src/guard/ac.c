/*
 * guard/ac — Aho-Corasick over bytes, compiled to a dense DFA.
 *
 * Bytes that occur in no pattern share class 0, so a row has one column per
 * distinct pattern byte plus one; for 10,000 mixed English/Chinese terms that
 * is ~100 columns. Each transition already holds the next state's row offset
 * with AC_OUT set when that state ends a pattern (itself or through a dict
 * suffix link), so the search loop is one load and one test per byte.
 *
 * Invariants: state 0 is the root; own/dict describe outputs; a transition
 * value v is (state * ncls) | flag, and nstates * ncls < 2^31.
 */
#include <stdlib.h>
#include <string.h>

#include "guard/guard_int.h"

#define NONE UINT32_MAX

static bool is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void ac_free(ac_auto *a)
{
    free(a->delta);
    free(a->own);
    free(a->dict);
    free(a->out_pat);
    free(a->out_next);
    free(a->pat_len);
    free(a->pat_wb);
    memset(a, 0, sizeof *a);
}

int ac_build(const char *const *pats, const size_t *lens, size_t n, ac_auto *out, err_msg *e)
{
    memset(out, 0, sizeof *out);
    bool used[256] = {false};
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < lens[i]; k++)
            used[(unsigned char)pats[i][k]] = true;
        if (!size_add_ok(total, lens[i], &total))
            return err_set(e, ERR_TOO_LARGE, "guard: blocklist too large");
    }
    uint32_t ncls = 1;
    for (int b = 0; b < 256; b++)
        out->cls[b] = used[b] ? (uint8_t)ncls++ : 0;
    size_t cells;
    if (!size_mul_ok(total, ncls, &cells) || cells >= (size_t)AC_OUT)
        return err_set(e, ERR_TOO_LARGE,
                       "guard: blocklist of %zu terms needs %zu transitions (limit 2^31)", n, cells);
    out->ncls = ncls;
    out->npat = n;
    uint32_t *fail = NULL, *queue = NULL;
    out->delta = calloc(cells, sizeof(uint32_t));
    out->own = malloc(total * sizeof(uint32_t));
    out->dict = calloc(total, sizeof(uint32_t));
    out->out_pat = malloc((n ? n : 1) * sizeof(uint32_t));
    out->out_next = malloc((n ? n : 1) * sizeof(uint32_t));
    out->pat_len = malloc((n ? n : 1) * sizeof(uint32_t));
    out->pat_wb = calloc(n ? n : 1, 1);
    fail = calloc(total, sizeof(uint32_t));
    queue = malloc(total * sizeof(uint32_t));
    if (!out->delta || !out->own || !out->dict || !out->out_pat || !out->out_next ||
        !out->pat_len || !out->pat_wb || !fail || !queue)
        goto nomem;
    memset(out->own, 0xFF, total * sizeof(uint32_t));
    uint32_t ns = 1;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)pats[i];
        out->pat_len[i] = (uint32_t)lens[i];
        out->maxlen = MAX(out->maxlen, lens[i]);
        out->out_pat[i] = (uint32_t)i;
        out->out_next[i] = NONE;
        if (lens[i] == 0)
            continue;
        out->pat_wb[i] = (uint8_t)((is_word_byte(p[0]) ? 1 : 0) |
                                   (is_word_byte(p[lens[i] - 1]) ? 2 : 0));
        uint32_t s = 0;
        for (size_t k = 0; k < lens[i]; k++) {
            uint32_t *slot = &out->delta[(size_t)s * ncls + out->cls[p[k]]];
            if (*slot == 0)
                *slot = ns++;
            s = *slot;
        }
        out->out_next[i] = out->own[s];
        out->own[s] = (uint32_t)i;
    }
    out->nstates = ns;
    // Breadth-first: a state's fail state is shallower, so its row is final.
    size_t qh = 0, qt = 0;
    for (uint32_t c = 0; c < ncls; c++) {
        uint32_t u = out->delta[c];
        if (u) {
            fail[u] = 0;
            queue[qt++] = u;
        }
    }
    while (qh < qt) {
        uint32_t s = queue[qh++];
        uint32_t *row = &out->delta[(size_t)s * ncls];
        const uint32_t *frow = &out->delta[(size_t)fail[s] * ncls];
        for (uint32_t c = 0; c < ncls; c++) {
            uint32_t u = row[c];
            if (u) {
                uint32_t f = frow[c];
                fail[u] = f;
                out->dict[u] = out->own[f] != NONE ? f : out->dict[f];
                queue[qt++] = u;
            } else {
                row[c] = frow[c];
            }
        }
    }
    // Renumber states in breadth-first order so the shallow states, where a
    // search spends most of its time, sit together in memory (cache).
    uint32_t *perm = fail; // fail links are no longer needed
    perm[0] = 0;
    for (size_t k = 0; k < qt; k++)
        perm[queue[k]] = (uint32_t)(k + 1);
    uint32_t *nd = malloc((size_t)ns * ncls * sizeof(uint32_t));
    uint32_t *nown = malloc((size_t)ns * sizeof(uint32_t));
    uint32_t *ndict = malloc((size_t)ns * sizeof(uint32_t));
    if (!nd || !nown || !ndict) {
        free(nd);
        free(nown);
        free(ndict);
        goto nomem;
    }
    for (uint32_t st = 0; st < ns; st++) {
        uint32_t to = perm[st];
        nown[to] = out->own[st];
        ndict[to] = out->dict[st] ? perm[out->dict[st]] : 0;
        const uint32_t *row = &out->delta[(size_t)st * ncls];
        uint32_t *nrow = &nd[(size_t)to * ncls];
        for (uint32_t c = 0; c < ncls; c++) {
            uint32_t v = row[c];
            bool has = out->own[v] != NONE || out->dict[v] != 0;
            nrow[c] = perm[v] * ncls | (has ? AC_OUT : 0);
        }
    }
    free(out->delta);
    free(out->own);
    free(out->dict);
    out->delta = nd;
    out->own = nown;
    out->dict = ndict;
    free(fail);
    free(queue);
    return 0;
nomem:
    free(fail);
    free(queue);
    ac_free(out);
    return err_set(e, ERR_NOMEM, "guard: out of memory building a %zu-term automaton", n);
}

/* A word boundary between normalized bytes k-1 and k: a non-word byte on
 * either side, or original bytes dropped between them (a spaced-out word
 * joined by the normalizer: "a b o m b" -> "abomb" still has "bomb"). */
static bool boundary(const unsigned char *t, const norm_buf *nb, size_t k)
{
    if (!is_word_byte(t[k - 1]) || !is_word_byte(t[k]))
        return true;
    return nb && norm_gap_before(nb, k);
}

static int report(const ac_auto *a, const unsigned char *t, size_t len, const norm_buf *nb,
                  uint32_t st, size_t end, ac_match_fn fn, void *ctx)
{
    for (; st; st = a->dict[st]) {
        for (uint32_t k = a->own[st]; k != NONE; k = a->out_next[k]) {
            uint32_t pat = a->out_pat[k];
            size_t start = end - a->pat_len[pat];
            uint8_t wb = a->pat_wb[pat];
            if ((wb & 1) && start > 0 && !boundary(t, nb, start))
                continue;
            if ((wb & 2) && end < len && !boundary(t, nb, end))
                continue;
            int rc = fn(ctx, pat, start, end);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Walks text[from, to) from the root state and reports the matches that end
 * after cut: a window of the text, started early enough (cut - from >=
 * maxlen - 1, or from == 0) to see every match that ends inside it. */
static int search_part(const ac_auto *a, const unsigned char *t, size_t len, const norm_buf *nb,
                       size_t from, size_t cut, size_t to, ac_match_fn fn, void *ctx)
{
    const uint32_t *d = a->delta;
    const uint8_t *cls = a->cls;
    uint32_t s = 0;
    for (size_t i = from; i < to; i++) {
        s = d[(s & ~AC_OUT) + cls[t[i]]];
        if (UNLIKELY(s & AC_OUT) && i + 1 > cut) {
            int rc = report(a, t, len, nb, (s & ~AC_OUT) / a->ncls, i + 1, fn, ctx);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/*
 * Interleaved search. A DFA walk is one chain of dependent loads, so a big
 * automaton runs at the speed of its cache misses, one at a time. The text
 * is taken in windows of WINDOW bytes; each window is cut into NSTREAM parts
 * walked in lock step, which keeps NSTREAM misses in flight. A part starts
 * maxlen - 1 bytes before its cut, in the root state, so it sees every match
 * ending after the cut, and reports only those: the parts' matches, each in
 * order of end, concatenate in order. Raw hits (state, end) are buffered per
 * part; a window with more hits than the buffers hold is walked again the
 * plain way (callbacks have effects, so none runs before the buffers are
 * known to suffice).
 */
#define NSTREAM 4
#define HITS_MAX 128
#define WINDOW (64 * 1024)
_Static_assert(NSTREAM == 4, "the lock-step loop below is unrolled for 4 parts");

typedef struct raw_hit {
    uint32_t st;
    uint32_t end;
} raw_hit;

static int search_window(const ac_auto *a, const unsigned char *t, size_t len,
                         const norm_buf *nb, size_t w0, size_t w1, size_t ov, ac_match_fn fn,
                         void *ctx)
{
    const uint32_t *d = a->delta;
    const uint8_t *cls = a->cls;
    size_t from[NSTREAM], cut[NSTREAM], to[NSTREAM], nh[NSTREAM] = {0};
    raw_hit hits[NSTREAM][HITS_MAX];
    uint32_t s[NSTREAM] = {0};
    size_t common = SIZE_MAX;
    for (int k = 0; k < NSTREAM; k++) {
        cut[k] = w0 + (w1 - w0) * (size_t)k / NSTREAM;
        to[k] = w0 + (w1 - w0) * (size_t)(k + 1) / NSTREAM;
        from[k] = cut[k] > ov ? cut[k] - ov : 0;
        common = MIN(common, to[k] - from[k]);
    }
    bool full = false;
#define STEP(k)                                                                                 \
    do {                                                                                        \
        size_t p_ = from[k] + i;                                                                \
        s[k] = d[(s[k] & ~AC_OUT) + cls[t[p_]]];                                                \
        if (UNLIKELY(s[k] & AC_OUT) && p_ + 1 > cut[k]) {                                       \
            if (nh[k] == HITS_MAX)                                                              \
                full = true;                                                                    \
            else                                                                                \
                hits[k][nh[k]++] = (raw_hit){(s[k] & ~AC_OUT) / a->ncls, (uint32_t)(p_ + 1)};   \
        }                                                                                       \
    } while (0)
    for (size_t i = 0; i < common && !full; i++) {
        STEP(0);
        STEP(1);
        STEP(2);
        STEP(3);
    }
    for (int k = 0; k < NSTREAM && !full; k++)
        for (size_t i = common; from[k] + i < to[k] && !full; i++)
            STEP(k);
#undef STEP
    if (full)
        return search_part(a, t, len, nb, w0 > ov ? w0 - ov : 0, w0, w1, fn, ctx);
    for (int k = 0; k < NSTREAM; k++)
        for (size_t h = 0; h < nh[k]; h++) {
            int rc = report(a, t, len, nb, hits[k][h].st, hits[k][h].end, fn, ctx);
            if (rc)
                return rc;
        }
    return 0;
}

int ac_search(const ac_auto *a, const char *text, size_t len, const norm_buf *nb,
              ac_match_fn fn, void *ctx)
{
    if (!a->delta || len == 0)
        return 0;
    const unsigned char *t = (const unsigned char *)text;
    size_t ov = a->maxlen ? a->maxlen - 1 : 0;
    for (size_t w0 = 0; w0 < len; w0 += WINDOW) {
        size_t w1 = MIN(len, w0 + WINDOW);
        // Parts shorter than a few overlaps would mostly re-walk the overlap.
        int rc = (w1 - w0) < 512 || (w1 - w0) < 16 * ov || len > UINT32_MAX
                     ? search_part(a, t, len, nb, w0 > ov ? w0 - ov : 0, w0, w1, fn, ctx)
                     : search_window(a, t, len, nb, w0, w1, ov, fn, ctx);
        if (rc)
            return rc;
    }
    return 0;
}
