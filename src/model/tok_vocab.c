/*
 * model/tok_vocab — building the immutable vocab from a tok_vocab_desc.
 *
 * Defaults follow llama.cpp's llama_vocab::load: per kind (SPM: bos 1, eos 2,
 * unk 0, add BOS, add a space prefix; BPE: bos = eos = 11; WPM: [CLS] 101,
 * [UNK] 100, [SEP] 102, [PAD] 0, [MASK] 103), then per pre-tokenizer (llama3
 * adds BOS and skips merges for whole-token words), then what the file says.
 * A special id the file gives out of range is ignored (the default stays), as
 * llama.cpp does; a default out of range becomes TOK_NULL.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "model/tok_impl.h"

void tok_vocab_desc_init(tok_vocab_desc *d, tok_kind kind)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->bos = d->eos = d->unk = d->sep = d->pad = d->cls = d->mask = d->eot = d->eom = TOK_UNSET;
    d->add_bos = d->add_eos = d->add_sep = d->add_space_prefix = -1;
    d->wpm_lowercase = d->wpm_strip_accents = -1;
}

static uint32_t table_size_for(size_t n)
{
    uint32_t s = 16;
    while (s < n * 2)
        s <<= 1;
    return s;
}

tok_id tok_find_(const tok_vocab *v, const char *p, size_t n)
{
    if (n == 0 || n > v->max_token_len)
        return TOK_NULL;
    uint32_t h = tok_hash_bytes(p, n, 0) & v->hash_mask;
    for (;;) {
        uint32_t slot = v->hash[h];
        if (slot == 0)
            return TOK_NULL;
        const tok_info *t = &v->tok[slot - 1];
        if (t->len == n && memcmp(v->text + t->off, p, n) == 0)
            return (tok_id)(slot - 1);
        h = (h + 1) & v->hash_mask;
    }
}

int32_t tok_merge_rank_(const tok_vocab *v, const char *p, size_t left_n, size_t right_n)
{
    if (v->n_merges == 0)
        return -1;
    size_t n = left_n + right_n;
    uint32_t h = tok_hash_bytes(p, n, (uint32_t)left_n) & v->mhash_mask;
    for (;;) {
        uint32_t slot = v->mhash[h];
        if (slot == 0)
            return -1;
        const tok_merge *m = &v->merges[slot - 1];
        if (m->len == n && m->left_len == left_n && memcmp(v->merge_text + m->off, p, n) == 0)
            return m->rank;
        h = (h + 1) & v->mhash_mask;
    }
}

/* Inserts id into the text hash; a later id with the same text replaces the earlier (llama.cpp). */
static void hash_insert(tok_vocab *v, tok_id id)
{
    const tok_info *t = &v->tok[id];
    uint32_t h = tok_hash_bytes(v->text + t->off, t->len, 0) & v->hash_mask;
    for (;;) {
        uint32_t slot = v->hash[h];
        if (slot == 0) {
            v->hash[h] = (uint32_t)id + 1;
            return;
        }
        const tok_info *o = &v->tok[slot - 1];
        if (o->len == t->len && memcmp(v->text + o->off, v->text + t->off, t->len) == 0) {
            v->hash[h] = (uint32_t)id + 1;
            return;
        }
        h = (h + 1) & v->hash_mask;
    }
}

static int parse_hex_byte(str s)
{
    // "<0xAB>"
    if (s.n != 6 || memcmp(s.p, "<0x", 3) != 0 || s.p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s.p[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                         : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decoded bytes of token id into out (room for its text's length); returns the length. */
static size_t make_piece(const tok_vocab *v, const int16_t *cp2b, tok_id id, char *out)
{
    const tok_info *t = &v->tok[id];
    const char *p = v->text + t->off;
    size_t n = t->len, o = 0;
    switch (t->type) {
    case TOK_TYPE_UNUSED:
        return 0;
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
    case TOK_TYPE_USER_DEFINED:
        memcpy(out, p, n);
        return n;
    case TOK_TYPE_BYTE:
        if (v->kind != TOK_KIND_BPE) {
            int b = parse_hex_byte((str){p, n});
            if (b >= 0) {
                out[0] = (char)b;
                return 1;
            }
        }
        break;
    default:
        break;
    }
    if (v->kind == TOK_KIND_BPE) {
        // Undo the GPT-2 byte mapping; a character outside it passes through.
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = tok_utf8_decode_((const uint8_t *)p + i, n - i, &cp);
            if (k == 0) {
                out[o++] = p[i++];
                continue;
            }
            int b = cp < 0x144 ? cp2b[cp] : -1;
            if (b >= 0) {
                out[o++] = (char)b;
            } else {
                memcpy(out + o, p + i, k);
                o += k;
            }
            i += k;
        }
        return o;
    }
    // SPM and WordPiece: U+2581 is a space.
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = p[i++];
        }
    }
    return o;
}

static bool contains_ci(str hay, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= hay.n; i++) {
        size_t j = 0;
        while (j < m && tolower((unsigned char)hay.p[i + j]) == needle[j])
            j++;
        if (j == m)
            return true;
    }
    return false;
}

/* Sort specials by text length, longest first; ties by id so the order is reproducible. */
static int cmp_special(const void *a, const void *b, void *arg)
{
    const tok_vocab *v = arg;
    tok_id x = *(const tok_id *)a, y = *(const tok_id *)b;
    uint32_t lx = v->tok[x].len, ly = v->tok[y].len;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x < y ? -1 : (x > y);
}

static tok_id pick_id(tok_id given, tok_id dflt, uint32_t n_tokens)
{
    if (given >= 0 && (uint32_t)given < n_tokens)
        return given;
    if (given == TOK_NULL)
        return TOK_NULL;
    if (given != TOK_UNSET)
        LOG_WARN("model", "special token id %d is out of range (%u tokens); using the default",
                 (int)given, n_tokens);
    return dflt >= 0 && (uint32_t)dflt < n_tokens ? dflt : TOK_NULL;
}

/* Converts a Hugging Face WordPiece vocab ("##" continuations) to the GGUF phantom-space form. */
static bool wpm_needs_phantom(const tok_vocab_desc *d)
{
    bool has_hash = false;
    for (size_t i = 0; i < d->n_tokens; i++) {
        str s = d->tokens[i];
        if (s.n >= 3 && memcmp(s.p, "\xE2\x96\x81", 3) == 0)
            return false;
        if (s.n > 2 && s.p[0] == '#' && s.p[1] == '#')
            has_hash = true;
    }
    return has_hash;
}

int tok_vocab_build(const tok_vocab_desc *d, tok_vocab **out, err_msg *e)
{
    *out = NULL;
    if (d->kind != TOK_KIND_SPM && d->kind != TOK_KIND_BPE && d->kind != TOK_KIND_WPM)
        return err_set(e, ERR_UNSUPPORTED, "tokenizer kind %d is not supported", (int)d->kind);
    if (d->n_tokens == 0 || !d->tokens)
        return err_set(e, ERR_FORMAT, "the vocabulary has no tokens");
    if (d->n_tokens > TOK_MAX_TOKENS)
        return err_set(e, ERR_TOO_LARGE, "the vocabulary has %zu tokens, over the limit of %u",
                       d->n_tokens, TOK_MAX_TOKENS);
    if (d->n_merges > TOK_MAX_MERGES)
        return err_set(e, ERR_TOO_LARGE, "the vocabulary has %zu merges, over the limit of %u",
                       d->n_merges, TOK_MAX_MERGES);
    if (d->n_merges && !d->merges)
        return err_set(e, ERR_INVAL, "merge count without merges");
    tok_pre pre = TOK_PRE_DEFAULT;
    if (d->kind == TOK_KIND_BPE && tok_pre_from_name(d->pre, &pre) != 0)
        return err_set(e, ERR_UNSUPPORTED, "unknown pre-tokenizer \"%.*s\"", (int)MIN(d->pre.n, 64),
                       d->pre.p);
    if (d->kind == TOK_KIND_BPE && d->n_merges == 0)
        return err_set(e, ERR_FORMAT, "a byte-level BPE vocabulary needs tokenizer.ggml.merges");

    tok_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return ERR_NOMEM;
    v->kind = d->kind;
    v->pre = pre;
    v->n_tokens = (uint32_t)d->n_tokens;
    int rc = 0;
    bool phantom = d->kind == TOK_KIND_WPM && wpm_needs_phantom(d);

    // Token texts. Sizes are bounded by TOK_MAX_TOKENS * (TOK_MAX_TOKEN_BYTES + 3),
    // which fits size_t; uint32 offsets are checked as we go.
    size_t total = 0;
    for (size_t i = 0; i < d->n_tokens; i++) {
        if (d->tokens[i].n > TOK_MAX_TOKEN_BYTES) {
            rc = err_set(e, ERR_TOO_LARGE, "token %zu is %zu bytes long, over the limit of %u", i,
                         d->tokens[i].n, TOK_MAX_TOKEN_BYTES);
            goto fail;
        }
        total += d->tokens[i].n + 3;
    }
    if (total > UINT32_MAX / 4) {
        rc = err_set(e, ERR_TOO_LARGE, "the token texts total %zu bytes", total);
        goto fail;
    }
    v->tok = calloc(d->n_tokens, sizeof *v->tok);
    v->text = malloc(total + 1);
    v->piece = malloc(total + 1); // a piece is never longer than its text
    v->hash_mask = table_size_for(d->n_tokens) - 1;
    v->hash = calloc((size_t)v->hash_mask + 1, sizeof *v->hash);
    if (!v->tok || !v->text || !v->piece || !v->hash) {
        rc = ERR_NOMEM;
        goto fail;
    }
    uint32_t off = 0;
    for (size_t i = 0; i < d->n_tokens; i++) {
        str s = d->tokens[i];
        tok_info *t = &v->tok[i];
        t->off = off;
        int32_t ty = d->types ? d->types[i] : TOK_TYPE_NORMAL;
        t->type = (ty >= TOK_TYPE_UNDEFINED && ty <= TOK_TYPE_BYTE) ? (uint8_t)ty
                                                                    : (uint8_t)TOK_TYPE_UNDEFINED;
        t->score = d->scores ? d->scores[i] : 0.0f;
        if (phantom && t->type == TOK_TYPE_NORMAL &&
            !(s.n >= 2 && s.p[0] == '[' && s.p[s.n - 1] == ']')) {
            if (s.n > 2 && s.p[0] == '#' && s.p[1] == '#') {
                s.p += 2;
                s.n -= 2;
            } else {
                memcpy(v->text + off, "\xE2\x96\x81", 3);
                off += 3;
            }
        }
        if (s.n)
            memcpy(v->text + off, s.p, s.n);
        off += (uint32_t)s.n;
        t->len = off - t->off;
        if (t->len > v->max_token_len)
            v->max_token_len = t->len;
    }
    v->text[off] = 0;
    for (size_t i = 0; i < d->n_tokens; i++)
        if (v->tok[i].len)
            hash_insert(v, (tok_id)i);

    // Merges: "left right", split at the first space after the first byte.
    if (d->n_merges) {
        size_t mt = 0;
        for (size_t i = 0; i < d->n_merges; i++)
            mt += d->merges[i].n;
        if (mt > UINT32_MAX / 2) {
            rc = err_set(e, ERR_TOO_LARGE, "the merges total %zu bytes", mt);
            goto fail;
        }
        v->merges = calloc(d->n_merges, sizeof *v->merges);
        v->merge_text = malloc(mt + 1);
        v->mhash_mask = table_size_for(d->n_merges) - 1;
        v->mhash = calloc((size_t)v->mhash_mask + 1, sizeof *v->mhash);
        if (!v->merges || !v->merge_text || !v->mhash) {
            rc = ERR_NOMEM;
            goto fail;
        }
        uint32_t mo = 0;
        for (size_t i = 0; i < d->n_merges; i++) {
            str s = d->merges[i];
            const char *sp = s.n > 1 ? memchr(s.p + 1, ' ', s.n - 1) : NULL;
            if (!sp) {
                rc = err_set(e, ERR_FORMAT, "merge %zu has no space between its two parts", i);
                goto fail;
            }
            size_t ln = (size_t)(sp - s.p), rn = s.n - ln - 1;
            tok_merge *m = &v->merges[v->n_merges];
            m->off = mo;
            m->left_len = (uint32_t)ln;
            m->len = (uint32_t)(ln + rn);
            m->rank = (int32_t)i;
            memcpy(v->merge_text + mo, s.p, ln);
            memcpy(v->merge_text + mo + ln, sp + 1, rn);
            mo += m->len;
            // Insert unless the same pair is already there (the first rank wins, as in llama.cpp).
            if (tok_merge_rank_(v, v->merge_text + m->off, ln, rn) >= 0) {
                mo -= m->len;
                continue;
            }
            uint32_t h =
                tok_hash_bytes(v->merge_text + m->off, m->len, m->left_len) & v->mhash_mask;
            while (v->mhash[h])
                h = (h + 1) & v->mhash_mask;
            v->mhash[h] = v->n_merges + 1;
            v->n_merges++;
        }
    }

    // Defaults by kind, then by pre-tokenizer, then the file.
    tok_id dbos = TOK_NULL, deos = TOK_NULL, dunk = TOK_NULL, dsep = TOK_NULL, dpad = TOK_NULL,
           dcls = TOK_NULL, dmask = TOK_NULL;
    bool abos = false, aeos = false, asep = false, aspace = false;
    switch (d->kind) {
    case TOK_KIND_SPM:
        dbos = 1, deos = 2, dunk = 0;
        abos = true, aspace = true;
        break;
    case TOK_KIND_BPE:
        dbos = 11, deos = 11;
        if (pre == TOK_PRE_LLAMA3) {
            abos = true;
            v->ignore_merges = true;
        }
        break;
    case TOK_KIND_WPM:
        dbos = 101, dunk = 100, dsep = 102, dpad = 0, dmask = 103, dcls = 101;
        abos = true, asep = true;
        break;
    }
    v->bos = pick_id(d->bos, dbos, v->n_tokens);
    v->eos = pick_id(d->eos, deos, v->n_tokens);
    v->unk = pick_id(d->unk, dunk, v->n_tokens);
    v->sep = pick_id(d->sep, dsep, v->n_tokens);
    v->pad = pick_id(d->pad, dpad, v->n_tokens);
    v->cls = pick_id(d->cls, dcls, v->n_tokens);
    v->mask = pick_id(d->mask, dmask, v->n_tokens);
    v->eot = pick_id(d->eot, TOK_NULL, v->n_tokens);
    v->eom = pick_id(d->eom, TOK_NULL, v->n_tokens);
    v->add_bos = d->add_bos >= 0 ? d->add_bos != 0 : abos;
    v->add_eos = d->add_eos >= 0 ? d->add_eos != 0 : aeos;
    v->add_sep = d->add_sep >= 0 ? d->add_sep != 0 : asep;
    v->add_space_prefix = d->add_space_prefix >= 0 ? d->add_space_prefix != 0 : aspace;
    v->wpm_lowercase = d->wpm_lowercase != 0;
    v->wpm_strip_accents = d->wpm_strip_accents != 0;
    if (v->add_bos && (d->kind == TOK_KIND_WPM ? (v->cls < 0 && v->bos < 0) : v->bos < 0))
        v->add_bos = false;
    if (v->add_eos && v->eos < 0)
        v->add_eos = false;
    if (v->add_sep && v->sep < 0)
        v->add_sep = false;

    // End-of-turn tokens known by their text (llama.cpp's list): the first one found is the
    // eot token unless the file names one, and it becomes a control token; all end a generation.
    static const char *const eot_texts[] = {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<EOT>",
        "<\xEF\xBD\x9C"
        "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    };
    static const char *const eog_texts[] = {"<|eom_id|>", "<|end_of_text|>"};
    for (size_t i = 0; i < ARRAY_LEN(eot_texts); i++) {
        tok_id id = tok_find_(v, eot_texts[i], strlen(eot_texts[i]));
        if (id < 0)
            continue;
        if (v->eot == TOK_NULL) {
            v->eot = id;
            v->tok[id].type = TOK_TYPE_CONTROL;
        }
        v->tok[id].attr |= TOK_ATTR_EOG;
    }
    for (size_t i = 0; i < ARRAY_LEN(eog_texts); i++) {
        tok_id id = tok_find_(v, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0)
            v->tok[id].attr |= TOK_ATTR_EOG;
    }
    if (v->eos >= 0)
        v->tok[v->eos].attr |= TOK_ATTR_EOG;
    if (v->eot >= 0)
        v->tok[v->eot].attr |= TOK_ATTR_EOG;
    if (v->eom >= 0)
        v->tok[v->eom].attr |= TOK_ATTR_EOG;

    // Special tokens matched in text, longest first.
    v->specials = malloc(d->n_tokens * sizeof *v->specials);
    if (!v->specials) {
        rc = ERR_NOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        uint8_t ty = v->tok[i].type;
        if (v->tok[i].len &&
            (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN))
            v->specials[v->n_specials++] = (tok_id)i;
    }
    qsort_r(v->specials, v->n_specials, sizeof *v->specials, cmp_special, v);

    // Phi-3 (llama.cpp): special tokens swallow the whitespace after them, except <unk>, <s>,
    // <|endoftext|>.
    if (contains_ci(d->name, "phi-3") || contains_ci(d->name, "phi3")) {
        for (uint32_t i = 0; i < v->n_specials; i++)
            v->tok[v->specials[i]].attr |= TOK_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        tok_id t = tok_find_(v, "</s>", 4);
        if (t >= 0)
            v->tok[t].attr |= TOK_ATTR_RSTRIP;
        for (size_t i = 0; i < ARRAY_LEN(keep); i++) {
            t = tok_find_(v, keep[i], strlen(keep[i]));
            if (t >= 0)
                v->tok[t].attr &= (uint8_t)~TOK_ATTR_RSTRIP;
        }
    }

    // First bytes and distinct lengths of special texts (the partition's prefilter).
    for (uint32_t k = 0; k < v->n_specials; k++) {
        const tok_info *t = &v->tok[v->specials[k]];
        uint8_t c = (uint8_t)v->text[t->off];
        v->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
        uint32_t j = 0;
        while (j < v->n_special_lens && v->special_lens[j] != t->len)
            j++;
        if (j == v->n_special_lens) {
            if (j < ARRAY_LEN(v->special_lens))
                v->special_lens[v->n_special_lens++] = t->len;
            else
                v->special_lens_full = true;
        }
    }

    // Byte fallback tokens.
    for (int b = 0; b < 256; b++) {
        v->byte_tok[b] = TOK_NULL;
        if (d->kind == TOK_KIND_BPE) {
            char enc[4];
            size_t k = tok_utf8_encode_(tok_byte_to_cp_((uint8_t)b), enc);
            memcpy(v->byte_enc[b], enc, 2); // GPT-2 characters are below U+0800
            v->byte_enc_len[b] = (uint8_t)k;
            v->byte_tok[b] = tok_find_(v, enc, k);
        } else {
            static const char hex[] = "0123456789ABCDEF";
            char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            tok_id t = tok_find_(v, name, 6);
            if (t < 0) {
                char c = (char)b;
                t = tok_find_(v, &c, 1);
            }
            v->byte_tok[b] = t;
        }
    }

    // Decoded pieces.
    int16_t cp2b[0x144];
    tok_cp_to_byte_table_(cp2b);
    uint32_t po = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        v->tok[i].piece_off = po;
        v->tok[i].piece_len = (uint32_t)make_piece(v, cp2b, (tok_id)i, v->piece + po);
        po += v->tok[i].piece_len;
    }

    if (d->kind == TOK_KIND_BPE) {
        rc = tok_re_compile_(pre, &v->re, e);
        if (rc)
            goto fail;
    }
    *out = v;
    return 0;
fail:
    tok_vocab_free(v);
    return rc;
}

void tok_vocab_free(tok_vocab *v)
{
    if (!v)
        return;
    tok_re_free_(&v->re);
    free(v->tok);
    free(v->text);
    free(v->piece);
    free(v->hash);
    free(v->merges);
    free(v->merge_text);
    free(v->mhash);
    free(v->specials);
    free(v);
}

tok_kind tok_vocab_kind(const tok_vocab *v)
{
    return v->kind;
}
tok_pre tok_vocab_pre(const tok_vocab *v)
{
    return v->pre;
}
size_t tok_vocab_n_tokens(const tok_vocab *v)
{
    return v->n_tokens;
}
str tok_vocab_text(const tok_vocab *v, tok_id id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return (str){"", 0};
    return (str){v->text + v->tok[id].off, v->tok[id].len};
}
tok_type tok_vocab_type(const tok_vocab *v, tok_id id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return TOK_TYPE_UNDEFINED;
    return (tok_type)v->tok[id].type;
}
float tok_vocab_score(const tok_vocab *v, tok_id id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return 0.0f;
    return v->tok[id].score;
}
tok_id tok_vocab_find(const tok_vocab *v, str s)
{
    return tok_find_(v, s.p, s.n);
}
tok_id tok_vocab_bos(const tok_vocab *v)
{
    return v->kind == TOK_KIND_WPM && v->cls >= 0 ? v->cls : v->bos;
}
tok_id tok_vocab_eos(const tok_vocab *v)
{
    return v->eos;
}
tok_id tok_vocab_eot(const tok_vocab *v)
{
    return v->eot;
}
tok_id tok_vocab_unk(const tok_vocab *v)
{
    return v->unk;
}
tok_id tok_vocab_sep(const tok_vocab *v)
{
    return v->sep;
}
tok_id tok_vocab_pad(const tok_vocab *v)
{
    return v->pad;
}
bool tok_vocab_add_bos(const tok_vocab *v)
{
    return v->add_bos;
}
bool tok_vocab_add_eos(const tok_vocab *v)
{
    return v->add_eos;
}
bool tok_vocab_is_eog(const tok_vocab *v, tok_id id)
{
    return id >= 0 && (uint32_t)id < v->n_tokens && (v->tok[id].attr & TOK_ATTR_EOG);
}
bool tok_vocab_is_control(const tok_vocab *v, tok_id id)
{
    return id >= 0 && (uint32_t)id < v->n_tokens &&
           (v->tok[id].type == TOK_TYPE_CONTROL || v->tok[id].type == TOK_TYPE_UNKNOWN);
}
