/*
 * model/tok_wpm — WordPiece (BERT) as Hugging Face's BertNormalizer +
 * BertPreTokenizer + WordPiece model do it, over a GGUF-style vocab.
 *
 * Normalize and split, per character: drop NUL, U+FFFD and other/control
 * characters (category C*, except tab, LF, CR); whitespace ends a word; a
 * CJK ideograph is a word of its own; otherwise decompose (NFD) and drop
 * non-spacing marks (strip accents), lower-case, and make punctuation
 * (Unicode P* or any ASCII non-alphanumeric symbol) a word of its own.
 *
 * Match: GGUF converters store word-initial pieces as "\u2581piece" and
 * continuation pieces ("##piece" in BERT's vocab.txt) bare, so a word is
 * matched as "\u2581word" greedily, longest token first at each position
 * (the first match therefore is a word-initial piece, the rest
 * continuations). A word with an unmatched position, or longer than 100
 * characters, becomes [UNK].
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tok_impl.h"

#define WPM_MAX_WORD_CHARS 100 // Hugging Face's max_input_chars_per_word

static bool is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_other(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
        return true;
    default:
        return false;
    }
}

static bool is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    switch (utf8proc_category((utf8proc_int32_t)c)) {
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

typedef struct words {
    char *b; // normalized bytes: each word is U+2581 then its text
    size_t n, cap;
    tok_spans w;  // (start, length) of each word in b, including the U+2581
    size_t cur;   // start of the word being built, or SIZE_MAX
    size_t chars; // characters in the current word
} words;

static int wb_put(words *ws, const char *p, size_t n)
{
    if (ws->n + n > ws->cap) {
        size_t nc = ws->cap ? ws->cap * 2 : 256;
        while (nc < ws->n + n)
            nc *= 2;
        char *nb = realloc(ws->b, nc);
        if (!nb)
            return ERR_NOMEM;
        ws->b = nb;
        ws->cap = nc;
    }
    memcpy(ws->b + ws->n, p, n);
    ws->n += n;
    return 0;
}

static int word_end(words *ws)
{
    if (ws->cur == SIZE_MAX)
        return 0;
    size_t start = ws->cur;
    ws->cur = SIZE_MAX;
    // Too long: keep a marker span of length 0 (becomes [UNK]).
    size_t len = ws->chars > WPM_MAX_WORD_CHARS ? 0 : ws->n - start;
    return tok_spans_push_(&ws->w, start, len);
}

static int add_char(words *ws, uint32_t c, bool alone)
{
    int rc = 0;
    if (alone)
        rc = word_end(ws);
    if (rc == 0 && ws->cur == SIZE_MAX) {
        ws->cur = ws->n;
        ws->chars = 0;
        rc = wb_put(ws, "\xE2\x96\x81", 3);
    }
    char enc[4];
    if (rc == 0)
        rc = wb_put(ws, enc, tok_utf8_encode_(c, enc));
    ws->chars++;
    if (rc == 0 && alone)
        rc = word_end(ws);
    return rc;
}

static int normalize(const tok_vocab *v, const char *text, size_t len, words *ws)
{
    ws->cur = SIZE_MAX;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        uint32_t c;
        size_t k = tok_utf8_decode_((const uint8_t *)text + i, len - i, &c);
        if (k == 0) { // invalid byte: U+FFFD, which is dropped
            i++;
            continue;
        }
        i += k;
        if (c == 0 || c == 0xFFFD)
            continue;
        if (c != '\t' && c != '\n' && c != '\r' && is_other(c))
            continue;
        if (tok_is_space_(c)) {
            rc = word_end(ws);
            continue;
        }
        if (is_chinese(c)) {
            rc = add_char(ws, c, true);
            continue;
        }
        utf8proc_int32_t dec[8];
        utf8proc_ssize_t nd = 1;
        dec[0] = (utf8proc_int32_t)c;
        if (v->wpm_strip_accents) {
            int last = 0;
            nd = utf8proc_decompose_char((utf8proc_int32_t)c, dec, ARRAY_LEN(dec),
                                         UTF8PROC_DECOMPOSE, &last);
            if (nd < 1 || nd > (utf8proc_ssize_t)ARRAY_LEN(dec)) {
                dec[0] = (utf8proc_int32_t)c;
                nd = 1;
            }
        }
        for (utf8proc_ssize_t j = 0; j < nd && rc == 0; j++) {
            uint32_t d = (uint32_t)dec[j];
            if (v->wpm_strip_accents && utf8proc_category(dec[j]) == UTF8PROC_CATEGORY_MN)
                continue;
            if (v->wpm_lowercase)
                d = (uint32_t)utf8proc_tolower((utf8proc_int32_t)d);
            rc = add_char(ws, d, is_punct(d));
        }
    }
    if (rc == 0)
        rc = word_end(ws);
    return rc;
}

int tok_wpm_(const tok_vocab *v, const char *text, size_t len, tok_list *out)
{
    words ws = {0};
    int rc = normalize(v, text, len, &ws);
    for (size_t k = 0; k < ws.w.n && rc == 0; k++) {
        const char *w = ws.b + ws.w.off[k];
        size_t n = ws.w.len[k];
        size_t mark = out->n;
        bool ok = n > 0;
        for (size_t i = 0; i < n && ok && rc == 0;) {
            size_t j = n - i < v->max_token_len ? n : i + v->max_token_len;
            tok_id id = TOK_NULL;
            for (; j > i; j--) {
                id = tok_find_(v, w + i, j - i);
                if (id >= 0)
                    break;
            }
            if (id < 0) {
                ok = false;
                break;
            }
            rc = tok_list_push(out, id);
            i = j;
        }
        if (rc == 0 && !ok) {
            out->n = mark;
            if (v->unk >= 0)
                rc = tok_list_push(out, v->unk);
        }
    }
    free(ws.b);
    tok_spans_free_(&ws.w);
    return rc;
}
