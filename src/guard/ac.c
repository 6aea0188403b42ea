/*
 * guard/ac — Aho-Corasick over code points, compiled to a DFA with a small
 * footprint.
 *
 * Why code points: the blocklist walk is a chain of dependent loads, so it
 * runs at the speed of its cache misses. A byte-level DFA takes three steps
 * per CJK character and, with 10,000 mixed terms, has ~70k states x ~110 byte
 * classes (33 MB). Here a CJK character is one step, and the table is split
 * by what the text needs:
 *   - ASCII: a dense row of na cells (ASCII pattern bytes + 1) only for the
 *     states whose ASCII transitions differ from the root's; every other state
 *     (all states inside CJK terms) uses the root's row;
 *   - other code points: symbols through a two-level page table; the root's
 *     transitions in xroot[symbol]; the other states' differing transitions
 *     ("exceptions": their own children and those inherited through failure
 *     links) in an open-addressing table, behind a bitmap filter, looked at
 *     only for states flagged AC_HASX.
 * For the bench's 10,000 terms: ~48k states, ~34k ASCII rows of ~45 cells,
 * ~55k exceptions (~6 MB + 1.5 MB, of which a walk touches a small part).
 *
 * A transition value is the next state's key K (a row offset below alim,
 * alim + rank above) with AC_OUT when that state or a suffix ends a pattern
 * and AC_HASX when it has exceptions. Matches are reported at the byte after
 * the character that ends them, in order of end, each state's outputs then
 * its dictionary suffixes' (the same order as a byte-level automaton: on
 * valid UTF-8 a pattern can only match at character boundaries).
 *
 * Invariants: the root is key 0 with no outputs and no exceptions; a state's
 * failure state is shallower (breadth-first construction); K < 2^30.
 */
#include <stdlib.h>
#include <string.h>

#include "guard/guard_int.h"

#define NONE UINT32_MAX
#define PSEUDO 0x110000u               // invalid byte b is code point PSEUDO + b
#define AC_XTOP ((PSEUDO + 256u) >> 8) // pages: code points and pseudo code points
#define EXC_MAX (1u << 26)             // exceptions a build may store
#define FILT_BITS_MAX 24u              // bitmap at most 2 MiB

static bool is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void ac_free(ac_auto *a)
{
    free(a->adelta);
    free(a->xroot);
    free(a->xtop);
    free(a->xpages);
    free(a->xnodes);
    free(a->xfilt);
    free(a->xtab);
    free(a->own);
    free(a->dict);
    free(a->out_pat);
    free(a->out_next);
    free(a->pat_len);
    free(a->pat_wb);
    memset(a, 0, sizeof *a);
}

/* One character of t at i (i < len): its length and code point, PSEUDO + byte
 * for an invalid byte (utf8_dec's rules; the 3-byte case inline). */
static inline size_t dec(const unsigned char *t, size_t len, size_t i, uint32_t *cp)
{
    unsigned c = t[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xE0 && c <= 0xEF && i + 2 < len) {
        unsigned c1 = t[i + 1], c2 = t[i + 2];
        if ((c1 & 0xC0) == 0x80 && (c2 & 0xC0) == 0x80) {
            uint32_t v = (c & 0x0Fu) << 12 | (c1 & 0x3Fu) << 6 | (c2 & 0x3Fu);
            if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) {
                *cp = v;
                return 3;
            }
        }
    }
    int32_t v;
    size_t n = utf8_dec(t + i, len - i, &v);
    *cp = v < 0 ? PSEUDO + c : (uint32_t)v;
    return n;
}

static inline uint32_t xsym(const ac_auto *a, uint32_t cp)
{
    return a->xpages[(size_t)a->xtop[cp >> 8] << 8 | (cp & 255u)];
}

static inline uint64_t xhash(uint32_t k, uint32_t x)
{
    uint64_t z = (uint64_t)k * 0x9E3779B97F4A7C15ull ^ (uint64_t)x * 0xC2B2AE3D27D4EB4Full;
    return z ^ (z >> 32);
}

/* ---- build ------------------------------------------------------------------- */

typedef struct builder {
    uint32_t na, nx; // ASCII classes, non-ASCII symbols (both with 0)
    uint32_t *cps;   // sorted distinct non-ASCII code points; symbol = index + 1
    size_t ncps;
    uint32_t *seq;           // patterns as unified symbols (ASCII class, or na - 1 + x)
    size_t *seq_off;         // (n + 1)
    uint32_t *parent, *psym; // per trie node (creation order)
    uint32_t *cfirst;        // (nodes + 1) children of node s: cto/csym[cfirst[s], cfirst[s+1])
    uint32_t *cto, *csym;
    uint32_t *fail, *dict, *own, *end_node;
    uint32_t *rows;      // (nodes, na) full ASCII transitions, node ids
    uint32_t *eoff, *en; // per node: its exceptions in ex/et
    uint32_t *ex, *et;   // exception symbol (x), target node
    size_t nexc, exc_cap;
    uint32_t *order;    // breadth-first
    uint32_t *key, *ni; // per node: key K, index into own/dict
    uint32_t nodes;
} builder;

static void builder_free(builder *b)
{
    free(b->cps);
    free(b->seq);
    free(b->seq_off);
    free(b->parent);
    free(b->psym);
    free(b->cfirst);
    free(b->cto);
    free(b->csym);
    free(b->fail);
    free(b->dict);
    free(b->own);
    free(b->end_node);
    free(b->rows);
    free(b->eoff);
    free(b->en);
    free(b->ex);
    free(b->et);
    free(b->order);
    free(b->key);
    free(b->ni);
}

static int u32_cmp(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static int seq_cmp_r(const void *x, const void *y, void *ctx)
{
    const builder *b = ctx;
    size_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    const uint32_t *p = b->seq + b->seq_off[i], *q = b->seq + b->seq_off[j];
    size_t n = b->seq_off[i + 1] - b->seq_off[i], m = b->seq_off[j + 1] - b->seq_off[j];
    for (size_t k = 0; k < n && k < m; k++)
        if (p[k] != q[k])
            return p[k] < q[k] ? -1 : 1;
    if (n != m)
        return n < m ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* The child of node s on unified symbol u, NONE without one (binary search:
 * children are in increasing symbol order). */
static uint32_t child(const builder *b, uint32_t s, uint32_t u)
{
    uint32_t lo = b->cfirst[s], hi = b->cfirst[s + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (b->csym[mid] == u)
            return b->cto[mid];
        if (b->csym[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NONE;
}

/* The transition of node s (already processed) on non-ASCII symbol x. */
static uint32_t xdelta(const builder *b, uint32_t s, uint32_t x)
{
    uint32_t lo = b->eoff[s], hi = lo + b->en[s];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (b->ex[mid] == x)
            return b->et[mid];
        if (b->ex[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t c = child(b, 0, b->na - 1 + x);
    return c == NONE ? 0 : c;
}

static int exc_push(builder *b, uint32_t x, uint32_t t)
{
    if (b->nexc == b->exc_cap) {
        if (b->exc_cap >= EXC_MAX)
            return ERR_TOO_LARGE;
        size_t cap = b->exc_cap ? b->exc_cap * 2 : 1024;
        uint32_t *nx = realloc(b->ex, cap * sizeof *nx);
        if (!nx)
            return ERR_NOMEM;
        b->ex = nx;
        uint32_t *nt = realloc(b->et, cap * sizeof *nt);
        if (!nt)
            return ERR_NOMEM;
        b->et = nt;
        b->exc_cap = cap;
    }
    b->ex[b->nexc] = x;
    b->et[b->nexc] = t;
    b->nexc++;
    return 0;
}

static uint32_t value(const builder *b, uint32_t s)
{
    bool out = b->own[s] != NONE || b->dict[s] != 0;
    return b->key[s] | (out ? AC_OUT : 0) | (b->en[s] ? AC_HASX : 0);
}

static uint32_t log2_ceil(size_t n)
{
    uint32_t k = 0;
    while (((size_t)1 << k) < n)
        k++;
    return k;
}

int ac_build(const char *const *pats, const size_t *lens, size_t n, ac_auto *out, err_msg *e)
{
    memset(out, 0, sizeof *out);
    builder B = {0}, *b = &B;
    int rc = ERR_NOMEM;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (!size_add_ok(total, lens[i], &total) || total >= AC_KMASK)
            return err_set(e, ERR_TOO_LARGE, "guard: blocklist of %zu terms is too large", n);
    out->npat = n;
    // Symbols: ASCII classes, then the distinct non-ASCII code points.
    bool used[128] = {false};
    b->cps = malloc((total ? total : 1) * sizeof *b->cps);
    b->seq = malloc((total ? total : 1) * sizeof *b->seq);
    b->seq_off = malloc((n + 1) * sizeof *b->seq_off);
    if (!b->cps || !b->seq || !b->seq_off)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)pats[i];
        for (size_t k = 0; k < lens[i];) {
            uint32_t cp;
            k += dec(p, lens[i], k, &cp);
            if (cp < 0x80)
                used[cp] = true;
            else
                b->cps[b->ncps++] = cp;
        }
    }
    b->na = 1;
    for (int c = 0; c < 128; c++)
        out->acls[c] = used[c] ? (uint8_t)b->na++ : 0;
    qsort(b->cps, b->ncps, sizeof *b->cps, u32_cmp);
    size_t w = 0;
    for (size_t i = 0; i < b->ncps; i++)
        if (w == 0 || b->cps[w - 1] != b->cps[i])
            b->cps[w++] = b->cps[i];
    b->ncps = w;
    b->nx = (uint32_t)w + 1;
    out->na = b->na;
    out->nx = b->nx;
    // Patterns as symbol sequences.
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)pats[i];
        b->seq_off[i] = ns;
        for (size_t k = 0; k < lens[i];) {
            uint32_t cp;
            k += dec(p, lens[i], k, &cp);
            if (cp < 0x80) {
                b->seq[ns++] = out->acls[cp];
            } else {
                uint32_t *f = bsearch(&cp, b->cps, b->ncps, sizeof *b->cps, u32_cmp);
                b->seq[ns++] = b->na + (uint32_t)(f - b->cps); // na - 1 + (index + 1)
            }
        }
    }
    b->seq_off[n] = ns;
    // Trie: patterns in sorted order share prefixes with their predecessor,
    // so nodes are created along one path at a time, children in order.
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    uint32_t *path = malloc((ns + 1) * sizeof *path);
    b->parent = malloc((ns + 1) * sizeof *b->parent);
    b->psym = malloc((ns + 1) * sizeof *b->psym);
    b->end_node = malloc((n ? n : 1) * sizeof *b->end_node);
    if (!idx || !path || !b->parent || !b->psym || !b->end_node) {
        free(idx);
        free(path);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    qsort_r(idx, n, sizeof *idx, seq_cmp_r, b);
    uint32_t nodes = 1;
    b->parent[0] = NONE;
    b->psym[0] = 0;
    path[0] = 0;
    size_t prev_len = 0;
    const uint32_t *prev = NULL;
    for (size_t r = 0; r < n; r++) {
        size_t i = idx[r];
        const uint32_t *p = b->seq + b->seq_off[i];
        size_t m = b->seq_off[i + 1] - b->seq_off[i];
        size_t common = 0;
        while (prev && common < m && common < prev_len && p[common] == prev[common])
            common++;
        for (size_t k = common; k < m; k++) {
            b->parent[nodes] = path[k];
            b->psym[nodes] = p[k];
            path[k + 1] = nodes++;
        }
        b->end_node[i] = m ? path[m] : NONE;
        prev = p;
        prev_len = m;
    }
    free(idx);
    free(path);
    b->nodes = nodes;
    out->nstates = nodes;
    // Children lists (creation order is symbol order for each parent).
    b->cfirst = calloc((size_t)nodes + 1, sizeof *b->cfirst);
    b->cto = malloc((size_t)nodes * sizeof *b->cto);
    b->csym = malloc((size_t)nodes * sizeof *b->csym);
    b->fail = calloc(nodes, sizeof *b->fail);
    b->dict = calloc(nodes, sizeof *b->dict);
    b->own = malloc((size_t)nodes * sizeof *b->own);
    b->eoff = calloc(nodes, sizeof *b->eoff);
    b->en = calloc(nodes, sizeof *b->en);
    b->order = malloc((size_t)nodes * sizeof *b->order);
    b->key = malloc((size_t)nodes * sizeof *b->key);
    b->ni = malloc((size_t)nodes * sizeof *b->ni);
    size_t cells;
    if (!size_mul_ok(nodes, b->na, &cells) || cells > AC_KMASK) {
        rc = ERR_TOO_LARGE;
        goto fail;
    }
    b->rows = malloc(cells * sizeof *b->rows);
    if (!b->cfirst || !b->cto || !b->csym || !b->fail || !b->dict || !b->own || !b->eoff ||
        !b->en || !b->order || !b->key || !b->ni || !b->rows)
        goto fail;
    for (uint32_t s = 1; s < nodes; s++)
        b->cfirst[b->parent[s] + 1]++;
    for (uint32_t s = 0; s < nodes; s++)
        b->cfirst[s + 1] += b->cfirst[s];
    {
        uint32_t *fill = malloc((size_t)nodes * sizeof *fill);
        if (!fill)
            goto fail;
        memcpy(fill, b->cfirst, (size_t)nodes * sizeof *fill);
        for (uint32_t s = 1; s < nodes; s++) {
            uint32_t at = fill[b->parent[s]]++;
            b->cto[at] = s;
            b->csym[at] = b->psym[s];
        }
        free(fill);
    }
    memset(b->own, 0xFF, (size_t)nodes * sizeof *b->own);
    // Pattern outputs, in pattern order (a state lists its patterns newest first).
    out->out_pat = malloc((n ? n : 1) * sizeof(uint32_t));
    out->out_next = malloc((n ? n : 1) * sizeof(uint32_t));
    out->pat_len = malloc((n ? n : 1) * sizeof(uint32_t));
    out->pat_wb = calloc(n ? n : 1, 1);
    if (!out->out_pat || !out->out_next || !out->pat_len || !out->pat_wb)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)pats[i];
        out->pat_len[i] = (uint32_t)lens[i];
        out->maxlen = MAX(out->maxlen, lens[i]);
        out->out_pat[i] = (uint32_t)i;
        out->out_next[i] = NONE;
        if (lens[i] == 0)
            continue;
        out->pat_wb[i] =
            (uint8_t)((is_word_byte(p[0]) ? 1 : 0) | (is_word_byte(p[lens[i] - 1]) ? 2 : 0));
        uint32_t s = b->end_node[i];
        out->out_next[i] = b->own[s];
        b->own[s] = (uint32_t)i;
    }
    // Breadth-first: failure links, dictionary links, full ASCII rows and the
    // exception lists (sorted by symbol), each from the shallower failure state.
    size_t qh = 0, qt = 0;
    b->order[qt++] = 0;
    while (qh < qt) {
        uint32_t s = b->order[qh++];
        uint32_t f = b->fail[s];
        uint32_t *row = &b->rows[(size_t)s * b->na];
        const uint32_t *frow = &b->rows[(size_t)f * b->na];
        uint32_t c0 = b->cfirst[s], c1 = b->cfirst[s + 1];
        for (uint32_t a = 0; a < b->na; a++)
            row[a] = s ? frow[a] : 0;
        uint32_t c = c0;
        for (; c < c1 && b->csym[c] < b->na; c++)
            row[b->csym[c]] = b->cto[c];
        // Exceptions: own non-ASCII children merged with the failure state's.
        b->eoff[s] = (uint32_t)b->nexc;
        if (s) {
            uint32_t fe = b->eoff[f], fn = b->en[f], k = 0;
            while (c < c1 || k < fn) {
                uint32_t cx = c < c1 ? b->csym[c] - (b->na - 1) : NONE;
                uint32_t fx = k < fn ? b->ex[fe + k] : NONE;
                if (cx <= fx) {
                    rc = exc_push(b, cx, b->cto[c]);
                    c++;
                    if (cx == fx)
                        k++;
                } else {
                    rc = exc_push(b, fx, b->et[fe + k]);
                    k++;
                }
                if (rc)
                    goto fail;
            }
            b->en[s] = (uint32_t)(b->nexc - b->eoff[s]);
        }
        for (uint32_t k = c0; k < c1; k++) {
            uint32_t t = b->cto[k], u = b->csym[k];
            uint32_t ft = 0;
            if (s)
                ft = u < b->na ? frow[u] : xdelta(b, f, u - (b->na - 1));
            b->fail[t] = ft;
            b->dict[t] = b->own[ft] != NONE ? ft : b->dict[ft];
            b->order[qt++] = t;
        }
    }
    // Keys: states with an ASCII row different from the root's first, both
    // groups in breadth-first order (shallow states, where walks spend their
    // time, together).
    uint32_t narows = 0;
    for (size_t q = 0; q < qt; q++) {
        uint32_t s = b->order[q];
        bool has =
            s == 0 || memcmp(&b->rows[(size_t)s * b->na], b->rows, b->na * sizeof *b->rows) != 0;
        b->ni[s] = has ? narows++ : NONE;
    }
    size_t alim = (size_t)narows * b->na;
    if (alim > AC_KMASK) {
        rc = ERR_TOO_LARGE;
        goto fail;
    }
    // A state without a row is named by its node in xnodes:
    // [index, n, n symbols, n values].
    uint32_t other = 0;
    size_t xoff = 0, nhash = 0;
    for (size_t q = 0; q < qt; q++) {
        uint32_t s = b->order[q];
        if (b->ni[s] != NONE) {
            b->key[s] = b->ni[s] * b->na;
            nhash += b->en[s];
        } else {
            b->ni[s] = narows + other++;
            b->key[s] = (uint32_t)(alim + xoff);
            xoff += 2 + 2 * (size_t)b->en[s];
            if (alim + xoff > AC_KMASK) {
                rc = ERR_TOO_LARGE;
                goto fail;
            }
        }
    }
    out->narows = narows;
    out->alim = (uint32_t)alim;
    out->adelta = malloc((alim ? alim : 1) * sizeof *out->adelta);
    out->xroot = calloc(b->nx, sizeof *out->xroot);
    out->own = malloc((size_t)nodes * sizeof *out->own);
    out->dict = malloc((size_t)nodes * sizeof *out->dict);
    out->xtop = calloc(AC_XTOP, sizeof *out->xtop);
    out->xnodes = calloc(xoff + 4, sizeof *out->xnodes); // + 4: xstep reads 4 symbols
    if (!out->adelta || !out->xroot || !out->own || !out->dict || !out->xtop || !out->xnodes)
        goto fail;
    for (uint32_t s = 0; s < nodes; s++) {
        out->own[b->ni[s]] = b->own[s];
        out->dict[b->ni[s]] = b->dict[s] ? b->ni[b->dict[s]] : 0;
        if (b->ni[s] < narows) {
            uint32_t *dst = &out->adelta[b->key[s]];
            const uint32_t *row = &b->rows[(size_t)s * b->na];
            for (uint32_t a = 0; a < b->na; a++)
                dst[a] = a ? value(b, row[a]) : 0;
        } else {
            uint32_t *nd = &out->xnodes[b->key[s] - alim], m = b->en[s];
            nd[0] = b->ni[s];
            nd[1] = m;
            for (uint32_t k = 0; k < m; k++) {
                nd[2 + k] = b->ex[b->eoff[s] + k];
                nd[2 + m + k] = value(b, b->et[b->eoff[s] + k]);
            }
        }
    }
    for (uint32_t k = b->cfirst[0]; k < b->cfirst[1]; k++)
        if (b->csym[k] >= b->na)
            out->xroot[b->csym[k] - (b->na - 1)] = value(b, b->cto[k]);
    // Code point pages: page 0 is all zeros (code points in no pattern).
    uint32_t npages = 1;
    for (size_t i = 0; i < b->ncps; i++) {
        uint32_t pg = b->cps[i] >> 8;
        if (!out->xtop[pg])
            out->xtop[pg] = (uint16_t)npages++;
    }
    out->xpages = calloc((size_t)npages << 8, sizeof *out->xpages);
    if (!out->xpages)
        goto fail;
    for (size_t i = 0; i < b->ncps; i++)
        out->xpages[(size_t)out->xtop[b->cps[i] >> 8] << 8 | (b->cps[i] & 255u)] = (uint32_t)i + 1;
    // Exceptions of states with a row: table with load <= 1/2, bitmap with
    // ~16 bits per entry.
    out->nexc = b->nexc;
    out->xtbits = MAX(4u, log2_ceil(nhash * 2));
    out->xfbits = MIN(FILT_BITS_MAX, MAX(6u, log2_ceil(nhash * 16)));
    out->xtab = malloc(((size_t)1 << out->xtbits) * sizeof *out->xtab);
    out->xfilt = calloc((size_t)1 << (out->xfbits - 6), sizeof *out->xfilt);
    if (!out->xtab || !out->xfilt)
        goto fail;
    memset(out->xtab, 0xFF, ((size_t)1 << out->xtbits) * sizeof *out->xtab);
    size_t tmask = ((size_t)1 << out->xtbits) - 1;
    for (uint32_t s = 0; s < nodes; s++) {
        if (b->ni[s] >= narows)
            continue;
        for (uint32_t k = b->eoff[s]; k < b->eoff[s] + b->en[s]; k++) {
            uint32_t key = b->key[s], x = b->ex[k];
            uint64_t h = xhash(key, x);
            uint64_t fi = h >> (64 - out->xfbits);
            out->xfilt[fi >> 6] |= 1ull << (fi & 63);
            size_t slot = h & tmask;
            while (out->xtab[slot].k != NONE)
                slot = (slot + 1) & tmask;
            out->xtab[slot] = (ac_xent){key, x, value(b, b->et[k])};
        }
    }
    builder_free(b);
    return 0;
fail:
    builder_free(b);
    ac_free(out);
    if (rc == ERR_TOO_LARGE)
        return err_set(e, rc, "guard: blocklist of %zu terms needs too large an automaton", n);
    return err_set(e, ERR_NOMEM, "guard: out of memory building a %zu-term automaton", n);
}

/* ---- search ------------------------------------------------------------------ */

/* The tables a walk reads, copied into locals so the compiler keeps them in
 * registers (stores of states and hits could otherwise alias the automaton). */
typedef struct walk {
    const uint32_t *adelta, *xroot, *xnodes, *xpages;
    const uint16_t *xtop;
    const uint8_t *acls;
    uint32_t alim;
    const ac_auto *a;
} walk;

static inline walk walk_of(const ac_auto *a)
{
    return (walk){a->adelta, a->xroot, a->xnodes, a->xpages, a->xtop, a->acls, a->alim, a};
}

/* The next state's value from state value v on ASCII byte c. */
static inline uint32_t astep(const walk *w, uint32_t v, unsigned char c)
{
    uint32_t k = v & AC_KMASK;
    k &= -(uint32_t)(k < w->alim); // states without a row use the root's
    return w->adelta[k + w->acls[c]];
}

/* The exception table of states with a row (rare: mixed ASCII/CJK patterns). */
__attribute__((noinline)) static uint32_t xstep_hash(const ac_auto *a, uint32_t k, uint32_t x)
{
    uint64_t h = xhash(k, x);
    uint64_t fi = h >> (64 - a->xfbits);
    if ((a->xfilt[fi >> 6] >> (fi & 63)) & 1) {
        size_t mask = ((size_t)1 << a->xtbits) - 1;
        for (size_t s = h & mask;; s = (s + 1) & mask) {
            const ac_xent *x_ = &a->xtab[s];
            if (x_->k == k && x_->x == x)
                return x_->v;
            if (x_->k == NONE)
                break;
        }
    }
    return a->xroot[x];
}

/* The next state's value from state value v on non-ASCII symbol x. */
static inline uint32_t xstep(const walk *w, uint32_t v, uint32_t x)
{
    uint32_t r = w->xroot[x]; // off the chain: does not depend on the state
    uint32_t k = v & AC_KMASK;
    if (k >= w->alim) {
        const uint32_t *nd = &w->xnodes[k - w->alim];
        uint32_t m = nd[1];
#if defined(__SSE2__)
        // Most nodes hold <= 4 symbols: one compare (xnodes is padded by 4).
        if (LIKELY(m <= 4)) {
            __m128i c = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *)(const void *)(nd + 2)),
                                        _mm_set1_epi32((int)x));
            unsigned hit = (unsigned)_mm_movemask_ps(_mm_castsi128_ps(c)) & ((1u << m) - 1);
            return hit ? nd[2 + m + (uint32_t)__builtin_ctz(hit)] : r;
        }
#endif
        for (uint32_t j = 0; j < m; j++)
            if (nd[2 + j] == x)
                return nd[2 + m + j];
    } else if (UNLIKELY(v & AC_HASX)) {
        return xstep_hash(w->a, k, x);
    }
    return r;
}

static inline uint32_t state_index(const ac_auto *a, uint32_t v)
{
    uint32_t k = v & AC_KMASK;
    return k < a->alim ? k / a->na : a->xnodes[k - a->alim];
}

/* One character at t[i]: advances i and the state value v. */
#define AC_STEP(w, t, len, i, v)                                                                   \
    do {                                                                                           \
        unsigned char c_ = (t)[i];                                                                 \
        if (c_ < 0x80) {                                                                           \
            (v) = astep((w), (v), c_);                                                             \
            (i)++;                                                                                 \
        } else {                                                                                   \
            uint32_t cp_;                                                                          \
            (i) += dec((t), (len), (i), &cp_);                                                     \
            (v) = xstep((w), (v), (w)->xpages[(size_t)(w)->xtop[cp_ >> 8] << 8 | (cp_ & 255u)]);   \
        }                                                                                          \
    } while (0)

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

/* True when a character starts at byte y of t (the sequential decode passes
 * through y): no character that starts at y-1..y-3 covers it. A byte that is
 * not a continuation byte always starts a character. */
static bool char_start(const unsigned char *t, size_t len, size_t y)
{
    for (size_t d = 1; d <= 3 && d <= y; d++) {
        if ((t[y - d] & 0xC0) == 0x80)
            continue;
        uint32_t cp;
        return dec(t, len, y - d, &cp) <= d;
    }
    return true;
}

static size_t snap_back(const unsigned char *t, size_t len, size_t y)
{
    while (y > 0 && y < len && !char_start(t, len, y))
        y--;
    return y;
}

static size_t snap_fwd(const unsigned char *t, size_t len, size_t y)
{
    while (y < len && !char_start(t, len, y))
        y++;
    return y;
}

/* Walks text[from, to) from the root state (from and to at character starts)
 * and reports the matches that end after cut: started early enough (cut -
 * from >= maxlen - 1, or from == 0) to see every match ending inside. */
static int search_part(const ac_auto *a, const unsigned char *t, size_t len, const norm_buf *nb,
                       size_t from, size_t cut, size_t to, ac_match_fn fn, void *ctx)
{
    const walk w = walk_of(a);
    uint32_t v = 0;
    for (size_t i = from; i < to;) {
        AC_STEP(&w, t, len, i, v);
        if (UNLIKELY(v & AC_OUT) && i > cut) {
            int rc = report(a, t, len, nb, state_index(a, v), i, fn, ctx);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/*
 * Interleaved search. A walk is one chain of dependent loads, so it runs at
 * the speed of its cache misses, one at a time. The text is taken in windows
 * of WINDOW bytes; each window is cut (at character starts) into NSTREAM
 * parts walked in lock step, which keeps NSTREAM misses in flight. A part
 * starts maxlen - 1 bytes before its cut (moved back to a character start),
 * in the root state, so it sees every match ending after the cut, and reports
 * only those: the parts' matches, each in order of end, concatenate in order.
 * Raw hits (state value, end) are buffered per part; a window with more hits
 * than the buffers hold is walked again the plain way (callbacks have
 * effects, so none runs before the buffers are known to suffice).
 */
#define NSTREAM 4
#define HITS_MAX 128
#define WINDOW (64 * 1024)
_Static_assert(NSTREAM == 4, "the lock-step loop below is unrolled for 4 parts");

typedef struct raw_hit {
    uint32_t v;
    uint32_t end;
} raw_hit;

static int search_window(const ac_auto *a, const unsigned char *t, size_t len, const norm_buf *nb,
                         size_t w0, size_t w1, size_t ov, ac_match_fn fn, void *ctx)
{
    const walk w = walk_of(a);
    size_t cut[NSTREAM], to[NSTREAM], nh[NSTREAM] = {0};
    raw_hit hits[NSTREAM][HITS_MAX];
    for (int k = 0; k < NSTREAM; k++)
        cut[k] = k == 0 ? w0 : snap_fwd(t, len, w0 + (w1 - w0) * (size_t)k / NSTREAM);
    for (int k = 0; k + 1 < NSTREAM; k++)
        to[k] = cut[k + 1];
    to[NSTREAM - 1] = w1;
#define START(k) snap_back(t, len, cut[k] > ov ? cut[k] - ov : 0)
    size_t p0 = START(0), p1 = START(1), p2 = START(2), p3 = START(3);
#undef START
    uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    bool full = false;
#define STEP(k)                                                                                    \
    do {                                                                                           \
        AC_STEP(&w, t, len, p##k, s##k);                                                           \
        if (UNLIKELY(s##k & AC_OUT) && p##k > cut[k]) {                                            \
            if (nh[k] == HITS_MAX)                                                                 \
                full = true;                                                                       \
            else                                                                                   \
                hits[k][nh[k]++] = (raw_hit){s##k, (uint32_t)p##k};                                \
        }                                                                                          \
    } while (0)
    while (!full && p0 < to[0] && p1 < to[1] && p2 < to[2] && p3 < to[3]) {
        STEP(0);
        STEP(1);
        STEP(2);
        STEP(3);
    }
    while (!full && p0 < to[0])
        STEP(0);
    while (!full && p1 < to[1])
        STEP(1);
    while (!full && p2 < to[2])
        STEP(2);
    while (!full && p3 < to[3])
        STEP(3);
#undef STEP
    if (full)
        return search_part(a, t, len, nb, snap_back(t, len, w0 > ov ? w0 - ov : 0), w0, w1, fn,
                           ctx);
    for (int k = 0; k < NSTREAM; k++)
        for (size_t h = 0; h < nh[k]; h++) {
            int rc = report(a, t, len, nb, state_index(a, hits[k][h].v), hits[k][h].end, fn, ctx);
            if (rc)
                return rc;
        }
    return 0;
}

int ac_search(const ac_auto *a, const char *text, size_t len, const norm_buf *nb, ac_match_fn fn,
              void *ctx)
{
    if (!a->adelta || len == 0)
        return 0;
    const unsigned char *t = (const unsigned char *)text;
    size_t ov = a->maxlen ? a->maxlen - 1 : 0;
    for (size_t w0 = 0; w0 < len;) {
        size_t w1 = snap_fwd(t, len, MIN(len, w0 + WINDOW));
        // Parts shorter than a few overlaps would mostly re-walk the overlap.
        int rc = (w1 - w0) < 512 || (w1 - w0) < 16 * ov || len > UINT32_MAX
                     ? search_part(a, t, len, nb, snap_back(t, len, w0 > ov ? w0 - ov : 0), w0, w1,
                                   fn, ctx)
                     : search_window(a, t, len, nb, w0, w1, ov, fn, ctx);
        if (rc)
            return rc;
        w0 = w1;
    }
    return 0;
}
