/*
 * rag/chunk — sentence splitting and chunk packing (rules in rag.h).
 *
 * The text is first cut into units: heading lines, and the sentences of each
 * paragraph (a unit never crosses a blank line). Units carry their byte span,
 * token count and flags; packing then works on units only, and a chunk spans
 * from its first unit's start to its last unit's end.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/lex.h"
#include "model/tok.h"
#include "rag/rag.h"

rag_chunk_config rag_chunk_config_default(void)
{
    return (rag_chunk_config){RAG_CHUNK_TOKENS_DEFAULT, RAG_CHUNK_OVERLAP_DEFAULT, NULL};
}

/* ---------------------------------------------------------------- tokens */

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

size_t rag_approx_tokens(const char *text, size_t n)
{
    size_t pos = 0, count = 0, prev_end = 0;
    lex_term t;
    while (lex_next(text, n, &pos, &t)) {
        // punctuation and symbols between terms: one token per non-space byte run char
        for (size_t i = prev_end; i < t.off; i++) {
            unsigned char c = (unsigned char)text[i];
            if (!is_space(c) && (c < 0x80 || (c & 0xC0) == 0xC0))
                count++;
        }
        count += t.is_cjk ? 1 : 1 + (t.len - 1) / 6;
        prev_end = t.off + t.len;
    }
    for (size_t i = prev_end; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!is_space(c) && (c < 0x80 || (c & 0xC0) == 0xC0))
            count++;
    }
    return count;
}

static size_t count_tokens(const rag_chunk_config *cfg, const char *p, size_t n)
{
    if (!cfg->vocab)
        return rag_approx_tokens(p, n);
    tok_list l;
    tok_list_init(&l, n + 16);
    size_t r;
    if (tok_tokenize(cfg->vocab, p, n, 0, &l, NULL) == 0)
        r = l.n;
    else
        r = rag_approx_tokens(p, n); // out of memory: the estimate still bounds the chunk
    tok_list_free(&l);
    return r;
}

/* ---------------------------------------------------------------- sentences */

static const char *const ABBREV[] = {"mr",  "mrs", "ms",  "dr",  "prof", "st",  "jr", "sr",
                                     "vs",  "etc", "e.g", "i.e", "no",   "fig", "inc", "ltd",
                                     "co",  "a.m", "p.m", "u.s", "cf",   "al",  "approx"};

/* True when the word ending at text[end) (just before a '.') is an abbreviation or an
 * initial: the '.' does not end a sentence. */
static bool is_abbrev(const char *text, size_t end)
{
    size_t s = end;
    while (s > 0 && !is_space((unsigned char)text[s - 1]) && text[s - 1] != '(' &&
           text[s - 1] != '"')
        s--;
    size_t n = end - s;
    if (n == 0)
        return false;
    if (n == 1 && text[s] >= 'A' && text[s] <= 'Z')
        return true; // an initial: "J. Smith"
    for (size_t i = 0; i < ARRAY_LEN(ABBREV); i++)
        if (strlen(ABBREV[i]) == n && strncasecmp(ABBREV[i], text + s, n) == 0)
            return true;
    return false;
}

/* UTF-8 sequences that end a CJK sentence, and closers that stay with a sentence. */
static const char *const CJK_ENDS[] = {"\xE3\x80\x82" /* 。 */, "\xEF\xBC\x81" /* ！ */,
                                       "\xEF\xBC\x9F" /* ？ */, "\xEF\xBC\x9B" /* ； */};
static const char *const CLOSERS[] = {"\"", "'", ")", "]", "\xE2\x80\x9D" /* ” */,
                                      "\xE2\x80\x99" /* ’ */, "\xE3\x80\x8D" /* 」 */,
                                      "\xE3\x80\x8F" /* 』 */, "\xEF\xBC\x89" /* ） */};

static size_t match_any(const char *p, size_t n, const char *const *set, size_t nset)
{
    for (size_t i = 0; i < nset; i++) {
        size_t k = strlen(set[i]);
        if (k <= n && memcmp(p, set[i], k) == 0)
            return k;
    }
    return 0;
}

static size_t skip_closers(const char *text, size_t len, size_t i)
{
    size_t k;
    while (i < len && (k = match_any(text + i, len - i, CLOSERS, ARRAY_LEN(CLOSERS))) > 0)
        i += k;
    return i;
}

size_t rag_sentence_ends(const char *text, size_t len, size_t *ends, size_t cap)
{
    size_t n = 0, last = 0;
    size_t i = 0;
    while (i < len) {
        size_t k = match_any(text + i, len - i, CJK_ENDS, ARRAY_LEN(CJK_ENDS));
        size_t end = 0;
        if (k) {
            end = skip_closers(text, len, i + k);
        } else if (text[i] == '.' || text[i] == '!' || text[i] == '?') {
            size_t j = i + 1;
            while (j < len && (text[j] == '.' || text[j] == '!' || text[j] == '?'))
                j++; // "?!", "..."
            j = skip_closers(text, len, j);
            bool at_break = j >= len || is_space((unsigned char)text[j]);
            if (at_break && !(text[i] == '.' && j == i + 1 && is_abbrev(text, i)))
                end = j;
            k = j - i;
        } else {
            k = 1;
        }
        if (end) {
            if (n < cap)
                ends[n] = end;
            n++;
            last = end;
            i = end;
        } else {
            i += k;
        }
    }
    // trailing content without a terminator
    for (size_t j = last; j < len; j++)
        if (!is_space((unsigned char)text[j])) {
            if (n < cap)
                ends[n] = len;
            n++;
            break;
        }
    return n;
}

/* ---------------------------------------------------------------- units */

typedef struct unit {
    size_t off, len, tok;
    bool is_heading;
    bool starts_para;
} unit;

typedef struct units {
    unit *u;
    size_t n, cap;
} units;

static int units_push(units *us, unit u)
{
    if (us->n == us->cap) {
        size_t nc = us->cap ? us->cap * 2 : 64;
        unit *nu = realloc(us->u, nc * sizeof *nu);
        if (!nu)
            return ERR_NOMEM;
        us->u = nu;
        us->cap = nc;
    }
    us->u[us->n++] = u;
    return 0;
}

/* Trims spaces at both ends of [*off, *off + *len). */
static void trim(const char *text, size_t *off, size_t *len)
{
    while (*len && is_space((unsigned char)text[*off])) {
        (*off)++;
        (*len)--;
    }
    while (*len && is_space((unsigned char)text[*off + *len - 1]))
        (*len)--;
}

/* Adds a sentence, cut at term boundaries into pieces of at most max tokens. */
static int add_sentence(units *us, const char *text, size_t off, size_t len, bool starts_para,
                        const rag_chunk_config *cfg)
{
    trim(text, &off, &len);
    if (!len)
        return 0;
    size_t tok = count_tokens(cfg, text + off, len);
    if (tok <= cfg->max_tokens)
        return units_push(us, (unit){off, len, tok, false, starts_para});
    // too long: grow a piece term by term until the budget is reached. The running count
    // is the approximation's (additive over terms and the punctuation before them), so the
    // walk is linear in the sentence; each piece's recorded count is the configured one.
    size_t pos = 0, start = 0, acc = 0;
    lex_term t;
    const char *s = text + off;
    size_t piece_end = 0;
    while (lex_next(s, len, &pos, &t)) {
        size_t end = t.off + t.len;
        size_t add = rag_approx_tokens(s + piece_end, end - piece_end);
        if (piece_end > start && acc + add > cfg->max_tokens) {
            size_t o = off + start, l = piece_end - start;
            trim(text, &o, &l);
            if (l && units_push(us, (unit){o, l, count_tokens(cfg, text + o, l), false,
                                           starts_para}) != 0)
                return ERR_NOMEM;
            starts_para = false;
            start = piece_end;
            acc = rag_approx_tokens(s + start, end - start);
        } else {
            acc += add;
        }
        piece_end = end;
    }
    // the rest; trailing punctuation may push it over: then the last term goes alone
    size_t cuts[3] = {start, len, len}, nc = 2;
    if (piece_end > start && count_tokens(cfg, s + start, len - start) > cfg->max_tokens) {
        cuts[1] = piece_end;
        nc = 3;
    }
    for (size_t i = 0; i + 1 < nc; i++) {
        size_t o = off + cuts[i], l = cuts[i + 1] - cuts[i];
        trim(text, &o, &l);
        if (l && units_push(us, (unit){o, l, count_tokens(cfg, text + o, l), false,
                                       starts_para}) != 0)
            return ERR_NOMEM;
        starts_para = false;
    }
    return 0;
}

/* Cuts a paragraph (no blank lines inside) into sentence units. */
static int add_paragraph(units *us, const char *text, size_t off, size_t len,
                         const rag_chunk_config *cfg)
{
    size_t cap = 64, n;
    size_t *ends = malloc(cap * sizeof *ends);
    if (!ends)
        return ERR_NOMEM;
    while ((n = rag_sentence_ends(text + off, len, ends, cap)) > cap) {
        free(ends);
        cap = n;
        if (!(ends = malloc(cap * sizeof *ends)))
            return ERR_NOMEM;
    }
    size_t prev = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = add_sentence(us, text, off + prev, ends[i] - prev, i == 0, cfg);
        prev = ends[i];
    }
    free(ends);
    return rc;
}

/* Splits the document into heading and sentence units. */
static int build_units(const char *text, size_t len, const rag_chunk_config *cfg, units *us)
{
    size_t i = 0, para = SIZE_MAX; // start of the current paragraph, SIZE_MAX: none
    int rc = 0;
    while (i < len && rc == 0) {
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        size_t lo = i, ln = e - i;
        trim(text, &lo, &ln);
        bool blank = ln == 0, heading = ln > 0 && text[lo] == '#';
        if ((blank || heading) && para != SIZE_MAX) {
            rc = add_paragraph(us, text, para, i - para, cfg);
            para = SIZE_MAX;
        }
        if (rc == 0 && heading) {
            size_t first = us->n, tok = count_tokens(cfg, text + lo, ln);
            if (tok <= cfg->max_tokens)
                rc = units_push(us, (unit){lo, ln, tok, true, true});
            else if ((rc = add_sentence(us, text, lo, ln, true, cfg)) == 0 && us->n > first)
                us->u[first].is_heading = true; // an overlong heading line is cut like a sentence
        }
        else if (!blank && para == SIZE_MAX)
            para = i;
        i = e < len ? e + 1 : e;
    }
    if (rc == 0 && para != SIZE_MAX)
        rc = add_paragraph(us, text, para, len - para, cfg);
    return rc;
}

/* ---------------------------------------------------------------- packing */

int rag_chunk_text(const char *text, size_t len, const rag_chunk_config *cfg, rag_chunk **out,
                   size_t *n_out, err_msg *e)
{
    *out = NULL;
    *n_out = 0;
    if (cfg->max_tokens < 8 || cfg->max_tokens > (1u << 20) ||
        cfg->overlap_tokens >= cfg->max_tokens / 2)
        return err_set(e, ERR_INVAL, "rag: chunk budget %zu tokens with overlap %zu is out of "
                       "range (budget 8..1048576, overlap below half the budget)",
                       cfg->max_tokens, cfg->overlap_tokens);
    if (len > RAG_DOC_BYTES_MAX)
        return err_set(e, ERR_TOO_LARGE, "rag: document of %zu bytes is over the %zu-byte limit",
                       len, RAG_DOC_BYTES_MAX);
    units us = {0};
    rag_chunk *ch = NULL;
    size_t nch = 0, cap = 0;
    int rc = build_units(text, len, cfg, &us);
    if (rc)
        goto fail;
    size_t i = 0;
    while (i < us.n) {
        size_t start = i, j = i, tok = 0;
        while (j < us.n) {
            const unit *u = &us.u[j];
            if (j > start && u->is_heading && !us.u[j - 1].is_heading)
                break; // a heading starts a chunk (consecutive headings stay together)
            if (j > start && tok + u->tok > cfg->max_tokens)
                break;
            if (j > start && u->starts_para && !us.u[j - 1].is_heading &&
                tok >= cfg->max_tokens / 2) {
                // prefer a paragraph break when the whole paragraph does not fit
                size_t ptok = 0;
                for (size_t k = j; k < us.n && (k == j || !us.u[k].starts_para); k++)
                    ptok += us.u[k].tok;
                if (tok + ptok > cfg->max_tokens)
                    break;
            }
            tok += u->tok;
            j++;
        }
        if (nch == cap) {
            size_t nc = cap ? cap * 2 : 16;
            rag_chunk *nc_ = realloc(ch, nc * sizeof *nc_);
            if (!nc_) {
                rc = ERR_NOMEM;
                goto fail;
            }
            ch = nc_;
            cap = nc;
        }
        size_t off = us.u[start].off, end = us.u[j - 1].off + us.u[j - 1].len;
        ch[nch++] = (rag_chunk){off, end - off, count_tokens(cfg, text + off, end - off)};
        if (j >= us.n)
            break;
        // overlap: restart a few whole sentences back, within the section, always progressing
        size_t next = j;
        if (!us.u[j].is_heading && cfg->overlap_tokens > 0) {
            size_t ov = 0;
            while (next - 1 > start && !us.u[next - 1].is_heading &&
                   ov + us.u[next - 1].tok <= cfg->overlap_tokens) {
                ov += us.u[next - 1].tok;
                next--;
            }
        }
        i = next;
    }
    free(us.u);
    *out = ch;
    *n_out = nch;
    return 0;
fail:
    free(us.u);
    free(ch);
    return err_set(e, rc, "rag: out of memory chunking %zu bytes", len);
}
