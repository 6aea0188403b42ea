/*
 * model/tok_util — UTF-8 decoding and repair, the whitespace table, the
 * GPT-2 byte<->unicode mapping and span lists used by the tokenizers.
 */
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

size_t tok_utf8_decode_(const uint8_t *p, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    uint8_t c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; // overlong
        else if (c == 0xED)
            hi = 0x9F; // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90; // overlong
        else if (c == 0xF4)
            hi = 0x8F; // past U+10FFFF
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        uint8_t b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return 0;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need;
}

size_t tok_utf8_encode_(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *tok_utf8_sanitize_(const char *text, size_t len, size_t *out_len)
{
    // Each bad byte becomes 3 bytes at most; len is capped by the caller
    // (TOK_MAX_TEXT_BYTES), so 3*len+1 cannot overflow.
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    const uint8_t *p = (const uint8_t *)text;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        size_t k = tok_utf8_decode_(p + i, len - i, &cp);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

bool tok_is_space_(uint32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85)
        return false;
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/*
 * GPT-2's bytes_to_unicode: the printable bytes '!'..'~', 0xA1..0xAC and
 * 0xAE..0xFF map to themselves; the other 68 bytes map, in increasing
 * order, to U+0100, U+0101, ... so every byte becomes a visible character.
 */
static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tok_byte_to_cp_(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++)
        n += !byte_is_printable(x);
    return 0x100 + n;
}

void tok_cp_to_byte_table_(int16_t map[0x144])
{
    for (unsigned i = 0; i < 0x144; i++)
        map[i] = -1;
    for (unsigned b = 0; b < 256; b++)
        map[tok_byte_to_cp_((uint8_t)b)] = (int16_t)b;
}

int tok_spans_push_(tok_spans *s, size_t off, size_t len)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        size_t *no = realloc(s->off, nc * sizeof *no);
        if (!no)
            return ERR_NOMEM;
        s->off = no;
        size_t *nl = realloc(s->len, nc * sizeof *nl);
        if (!nl)
            return ERR_NOMEM;
        s->len = nl;
        s->cap = nc;
    }
    s->off[s->n] = off;
    s->len[s->n] = len;
    s->n++;
    return 0;
}

void tok_spans_free_(tok_spans *s)
{
    free(s->off);
    free(s->len);
    memset(s, 0, sizeof *s);
}

void tok_list_init(tok_list *l, size_t max)
{
    l->ids = NULL;
    l->n = 0;
    l->cap = 0;
    l->max = max;
}

void tok_list_free(tok_list *l)
{
    free(l->ids);
    l->ids = NULL;
    l->n = l->cap = 0;
}

int tok_list_push(tok_list *l, tok_id id)
{
    if (l->n >= l->max)
        return ERR_TOO_LARGE;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        if (nc > l->max)
            nc = l->max;
        tok_id *ni = realloc(l->ids, nc * sizeof *ni);
        if (!ni)
            return ERR_NOMEM;
        l->ids = ni;
        l->cap = nc;
    }
    l->ids[l->n++] = id;
    return 0;
}
