/*
 * model/tok_spm — SentencePiece-style BPE over token scores (llama.cpp's
 * llm_tokenizer_spm).
 *
 * The text (with a leading space when asked) has every ' ' replaced by
 * U+2581 and is cut into UTF-8 characters, each a symbol in a doubly linked
 * list. Every adjacent pair whose concatenation is a token goes into a
 * max-heap keyed by that token's score (ties: leftmost first). Popping the
 * best pair merges the right symbol into the left and offers the two new
 * neighbour pairs; a popped pair whose symbols have changed since it was
 * pushed is stale and skipped. O(n log n) for n characters. Finally each
 * symbol is its token, or one <0xXX> byte token per byte (byte fallback),
 * or unk when the vocab has no byte tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

typedef struct sym {
    uint32_t start; // byte offset in the escaped text
    uint32_t n;     // 0 = merged away
    int32_t prev, next;
} sym;

typedef struct pair {
    float score;
    int32_t left, right;
    uint32_t size; // bytes of left+right when pushed
} pair;

/* True when a should pop before b: higher score, then smaller left. */
static inline bool pair_before(const pair *a, const pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct heap {
    pair *a;
    size_t n, cap;
} heap;

static int heap_push(heap *h, pair p)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        pair *na = realloc(h->a, nc * sizeof *na);
        if (!na)
            return ERR_NOMEM;
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &h->a[parent]))
            break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = p;
    return 0;
}

static pair heap_pop(heap *h)
{
    pair top = h->a[0];
    pair last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n)
            break;
        size_t c = l;
        if (l + 1 < h->n && pair_before(&h->a[l + 1], &h->a[l]))
            c = l + 1;
        if (!pair_before(&h->a[c], &last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

static int try_pair(const tok_vocab *v, const char *s, const sym *syms, int32_t l, int32_t r,
                    heap *h)
{
    if (l < 0 || r < 0)
        return 0;
    size_t n = (size_t)syms[l].n + syms[r].n;
    tok_id id = tok_find_(v, s + syms[l].start, n);
    if (id < 0)
        return 0;
    return heap_push(h, (pair){v->tok[id].score, l, r, (uint32_t)n});
}

int tok_spm_(const tok_vocab *v, const char *text, size_t len, bool prefix_space, tok_list *out)
{
    // Escape: optional leading space, then ' ' -> U+2581 (3 bytes).
    size_t spaces = prefix_space ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    size_t n = len + (prefix_space ? 1 : 0) + spaces * 2;
    if (n == 0)
        return 0;
    if (n > UINT32_MAX / 2)
        return ERR_TOO_LARGE;
    char *s = malloc(n);
    sym *syms = malloc(n * sizeof *syms);
    heap h = {0};
    int rc = 0;
    if (!s || !syms) {
        rc = ERR_NOMEM;
        goto done;
    }
    size_t o = 0;
    if (prefix_space) {
        memcpy(s, "\xE2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            s[o++] = text[i];
        }
    }
    // Characters (a bad lead byte counts as one byte, a truncated tail as what is left).
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t k = tok_utf8_len((uint8_t)s[i]);
        if (k > n - i)
            k = n - i;
        syms[ns] = (sym){(uint32_t)i, (uint32_t)k, ns - 1, ns + 1};
        ns++;
        i += k;
    }
    syms[ns - 1].next = -1;
    for (int32_t i = 1; i < ns && rc == 0; i++)
        rc = try_pair(v, s, syms, i - 1, i, &h);
    while (rc == 0 && h.n > 0) {
        pair p = heap_pop(&h);
        sym *l = &syms[p.left], *r = &syms[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue; // stale
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = p.left;
        rc = try_pair(v, s, syms, l->prev, p.left, &h);
        if (rc == 0)
            rc = try_pair(v, s, syms, p.left, l->next, &h);
    }
    for (int32_t i = 0; i != -1 && rc == 0; i = syms[i].next) {
        tok_id id = tok_find_(v, s + syms[i].start, syms[i].n);
        if (id >= 0) {
            rc = tok_list_push(out, id);
            continue;
        }
        for (uint32_t j = 0; j < syms[i].n && rc == 0; j++) {
            tok_id b = v->byte_tok[(uint8_t)s[syms[i].start + j]];
            if (b < 0)
                b = v->unk;
            if (b >= 0)
                rc = tok_list_push(out, b);
        }
    }
done:
    free(s);
    free(syms);
    free(h.a);
    return rc;
}
