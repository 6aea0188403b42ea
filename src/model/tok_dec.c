/*
 * model/tok_dec — the streaming detokenizer.
 *
 * Each token's decoded bytes (its "piece", computed once at build: U+2581 ->
 * space for SPM/WordPiece, the GPT-2 byte mapping undone for BPE, <0xXX> ->
 * one byte) are fed through a UTF-8 validator. Complete characters go out;
 * the bytes of a character not yet complete wait in the decoder (at most 3);
 * a byte that cannot start or continue a character becomes U+FFFD (one per
 * maximal bad subsequence, as the Unicode standard recommends).
 *
 * Leading space: with TOK_DEC_STRIP_SPACE, and a vocab that prefixes a space
 * to text (SPM with add_space_prefix) or marks word starts with one
 * (WordPiece), the first byte the decoder would emit is dropped if it is a
 * space. Tokens that render nothing (control tokens when not asked) do not
 * use up the rule, so "<s>" + "\u2581Hello" decodes to "Hello", as Hugging
 * Face's Strip decoder does.
 */
#include <string.h>

#include "model/tok_impl.h"

static const char k_repl[3] = {'\xEF', '\xBF', '\xBD'};

void tok_decoder_init(tok_decoder *d, const tok_vocab *v, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->v = v;
    d->flags = flags;
    bool strip = (flags & TOK_DEC_STRIP_SPACE) &&
                 ((v->kind == TOK_KIND_SPM && v->add_space_prefix) || v->kind == TOK_KIND_WPM);
    d->started = !strip;
}

static int emit(tok_decoder *d, const char *p, size_t n, buf *out)
{
    if (n == 0)
        return 0;
    if (!d->started) {
        d->started = true;
        if (p[0] == ' ') {
            p++;
            n--;
            if (n == 0)
                return 0;
        }
    }
    return buf_append(out, p, n);
}

/* Expected length of a character from its lead byte; 0 if it cannot lead. */
static uint8_t lead_len(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* True when b may be byte number idx (1-based) of a character led by lead. */
static bool cont_ok(uint8_t lead, size_t idx, uint8_t b)
{
    uint8_t lo = 0x80, hi = 0xBF;
    if (idx == 1) {
        if (lead == 0xE0)
            lo = 0xA0;
        else if (lead == 0xED)
            hi = 0x9F;
        else if (lead == 0xF0)
            lo = 0x90;
        else if (lead == 0xF4)
            hi = 0x8F;
    }
    return b >= lo && b <= hi;
}

static int feed(tok_decoder *d, const uint8_t *p, size_t n, buf *out)
{
    size_t run = 0; // start of a run of complete bytes in p not yet emitted
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        uint8_t b = p[i];
        if (d->npend > 0) {
            if (cont_ok(d->pend[0], d->npend, b)) {
                d->pend[d->npend++] = b;
                i++;
                if (d->npend == d->need) {
                    rc = emit(d, (const char *)d->pend, d->npend, out);
                    d->npend = 0;
                }
                run = i;
            } else {
                // The held character is broken: replace it and look at b afresh.
                d->npend = 0;
                rc = emit(d, k_repl, 3, out);
                run = i;
            }
            continue;
        }
        uint8_t need = lead_len(b);
        size_t k = 1;
        if (need >= 2) {
            while (k < need && i + k < n && cont_ok(b, k, p[i + k]))
                k++;
        }
        if (need == 1 || k == need) {
            i += need; // a whole valid character: it stays in the run
            continue;
        }
        // Flush the complete bytes before this one, then handle b.
        if (i > run)
            rc = emit(d, (const char *)p + run, i - run, out);
        if (rc)
            break;
        if (need != 0 && i + k == n) {
            // Ends inside a character: hold it until the next token.
            memcpy(d->pend, p + i, k);
            d->npend = (uint8_t)k;
            d->need = need;
        } else {
            // Cannot lead, or a bad continuation: one U+FFFD for the maximal subpart.
            rc = emit(d, k_repl, 3, out);
        }
        i += k;
        run = i;
    }
    if (rc == 0 && i > run)
        rc = emit(d, (const char *)p + run, i - run, out);
    return rc;
}

int tok_decoder_push(tok_decoder *d, tok_id id, buf *out)
{
    const tok_vocab *v = d->v;
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return ERR_INVAL;
    const tok_info *t = &v->tok[id];
    if ((t->type == TOK_TYPE_CONTROL || t->type == TOK_TYPE_UNKNOWN) &&
        !(d->flags & TOK_DEC_SPECIAL))
        return 0;
    return feed(d, (const uint8_t *)v->piece + t->piece_off, t->piece_len, out);
}

int tok_decoder_flush(tok_decoder *d, buf *out)
{
    if (d->npend == 0)
        return 0;
    d->npend = 0;
    return emit(d, k_repl, 3, out);
}

int tok_detokenize(const tok_vocab *v, const tok_id *ids, size_t n, unsigned dec_flags, buf *out)
{
    tok_decoder d;
    tok_decoder_init(&d, v, dec_flags);
    for (size_t i = 0; i < n; i++) {
        int rc = tok_decoder_push(&d, ids[i], out);
        if (rc)
            return rc;
    }
    return tok_decoder_flush(&d, out);
}
