/*
 * model/tok_bpe — byte-level BPE with merge ranks (llama.cpp's
 * llm_tokenizer_bpe, GPT-2's encoder).
 *
 * The fragment (invalid UTF-8 repaired to U+FFFD) is split by the vocab's
 * pre-tokenizer regexes into words. Each word's bytes are mapped to GPT-2's
 * printable characters (byte 0x20 -> 'Ġ', ...) and cut into characters,
 * which form a linked list of symbols. Adjacent pairs that appear in the
 * merge table go into a min-heap by rank (ties: leftmost first); popping
 * merges the pair and offers the new neighbour pairs, skipping stale ones.
 * Each final symbol is looked up as a token; a symbol that is not one is
 * emitted byte by byte where single bytes are tokens (as llama.cpp does).
 * With ignore_merges (llama3), a word that is already a token is emitted
 * whole.
 */
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

typedef struct sym {
    uint32_t start;
    uint32_t n;
    int32_t prev, next;
} sym;

typedef struct pair {
    int32_t rank;
    int32_t left, right;
    uint32_t size;
} pair;

static inline bool pair_before(const pair *a, const pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct scratch {
    char *w; // the mapped word
    size_t wcap;
    sym *syms;
    size_t scap;
    pair *h;
    size_t hn, hcap;
} scratch;

static int heap_push(scratch *sc, pair p)
{
    if (sc->hn == sc->hcap) {
        size_t nc = sc->hcap ? sc->hcap * 2 : 64;
        pair *na = realloc(sc->h, nc * sizeof *na);
        if (!na)
            return ERR_NOMEM;
        sc->h = na;
        sc->hcap = nc;
    }
    size_t i = sc->hn++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &sc->h[parent]))
            break;
        sc->h[i] = sc->h[parent];
        i = parent;
    }
    sc->h[i] = p;
    return 0;
}

static pair heap_pop(scratch *sc)
{
    pair top = sc->h[0];
    pair last = sc->h[--sc->hn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= sc->hn)
            break;
        size_t c = l;
        if (l + 1 < sc->hn && pair_before(&sc->h[l + 1], &sc->h[l]))
            c = l + 1;
        if (!pair_before(&sc->h[c], &last))
            break;
        sc->h[i] = sc->h[c];
        i = c;
    }
    if (sc->hn)
        sc->h[i] = last;
    return top;
}

static int try_pair(const tok_vocab *v, scratch *sc, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return 0;
    const sym *a = &sc->syms[l], *b = &sc->syms[r];
    int32_t rank = tok_merge_rank_(v, sc->w + a->start, a->n, b->n);
    if (rank < 0)
        return 0;
    return heap_push(sc, (pair){rank, l, r, a->n + b->n});
}

static int emit_symbol(const tok_vocab *v, const char *p, size_t n, tok_list *out)
{
    tok_id id = tok_find_(v, p, n);
    if (id >= 0)
        return tok_list_push(out, id);
    for (size_t j = 0; j < n; j++) {
        tok_id b = tok_find_(v, p + j, 1);
        if (b >= 0) {
            int rc = tok_list_push(out, b);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Tokenizes one pre-tokenized word of text. */
static int word(const tok_vocab *v, scratch *sc, const char *text, size_t len, tok_list *out)
{
    // Map bytes: each becomes a 1- or 2-byte UTF-8 character.
    if (sc->wcap < len * 2) {
        char *nw = realloc(sc->w, len * 2);
        if (!nw)
            return ERR_NOMEM;
        sc->w = nw;
        sc->wcap = len * 2;
    }
    size_t wn = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        memcpy(sc->w + wn, v->byte_enc[b], 2);
        wn += v->byte_enc_len[b];
    }
    if (v->ignore_merges) {
        tok_id id = tok_find_(v, sc->w, wn);
        if (id >= 0)
            return tok_list_push(out, id);
    }
    if (sc->scap < len) {
        sym *ns = realloc(sc->syms, len * sizeof *ns);
        if (!ns)
            return ERR_NOMEM;
        sc->syms = ns;
        sc->scap = len;
    }
    int32_t n = 0;
    for (size_t i = 0; i < wn;) {
        size_t k = tok_utf8_len((uint8_t)sc->w[i]);
        if (k > wn - i)
            k = wn - i;
        sc->syms[n] = (sym){(uint32_t)i, (uint32_t)k, n - 1, n + 1};
        n++;
        i += k;
    }
    if (n == 0)
        return 0;
    sc->syms[n - 1].next = -1;
    sc->hn = 0;
    int rc = 0;
    for (int32_t i = 1; i < n && rc == 0; i++)
        rc = try_pair(v, sc, i - 1, i);
    while (rc == 0 && sc->hn > 0) {
        pair p = heap_pop(sc);
        sym *l = &sc->syms[p.left], *r = &sc->syms[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue; // stale: one side changed since the pair was offered
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sc->syms[r->next].prev = p.left;
        rc = try_pair(v, sc, l->prev, p.left);
        if (rc == 0)
            rc = try_pair(v, sc, p.left, l->next);
    }
    for (int32_t i = 0; i != -1 && rc == 0; i = sc->syms[i].next)
        rc = emit_symbol(v, sc->w + sc->syms[i].start, sc->syms[i].n, out);
    return rc;
}

int tok_bpe_(const tok_vocab *v, const char *text, size_t len, tok_list *out, err_msg *e)
{
    size_t clen;
    char *clean = tok_utf8_sanitize_(text, len, &clen);
    if (!clean)
        return ERR_NOMEM;
    tok_spans sp = {0};
    int rc = tok_re_split_(&v->re, clean, clen, &sp, e);
    scratch sc = {0};
    for (size_t i = 0; i < sp.n && rc == 0; i++)
        rc = word(v, &sc, clean + sp.off[i], sp.len[i], out);
    free(sc.w);
    free(sc.syms);
    free(sc.h);
    tok_spans_free_(&sp);
    free(clean);
    return rc;
}
