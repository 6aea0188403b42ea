/*
 * model/tok — tokenize entry point: special-token partition, BOS/EOS, and
 * dispatch of raw-text fragments to the SPM, BPE or WordPiece tokenizer.
 *
 * Partition (llama.cpp's tokenizer_st_partition): the text starts as one raw
 * fragment. For each special token, longest text first, every raw fragment
 * is split around each occurrence of its text (leftmost first), leaving
 * token fragments in between. Control and unknown tokens take part only with
 * TOK_PARSE_SPECIAL; user-defined tokens always do. A token with the rstrip
 * (lstrip) attribute also swallows the ASCII whitespace after (before) it.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

typedef struct frag {
    size_t off;
    size_t len;
    tok_id id; // TOK_NULL: raw text [off, off+len)
} frag;

typedef struct frags {
    frag *f;
    size_t n, cap;
} frags;

static int frags_push(frags *fs, size_t off, size_t len, tok_id id)
{
    if (fs->n == fs->cap) {
        size_t nc = fs->cap ? fs->cap * 2 : 16;
        frag *nf = realloc(fs->f, nc * sizeof *nf);
        if (!nf)
            return ERR_NOMEM;
        fs->f = nf;
        fs->cap = nc;
    }
    fs->f[fs->n++] = (frag){off, len, id};
    return 0;
}

/* Splits every raw fragment of *fs around occurrences of special token id. */
static int partition_one(const tok_vocab *v, const char *text, tok_id id, frags *fs, frags *tmp)
{
    const tok_info *t = &v->tok[id];
    const char *tt = v->text + t->off;
    size_t tl = t->len;
    tmp->n = 0;
    int rc = 0;
    for (size_t i = 0; i < fs->n && rc == 0; i++) {
        frag f = fs->f[i];
        if (f.id != TOK_NULL || f.len < tl) {
            rc = frags_push(tmp, f.off, f.len, f.id);
            continue;
        }
        size_t off = f.off, len = f.len;
        while (rc == 0) {
            const char *m = memmem(text + off, len, tt, tl);
            if (!m) {
                if (len)
                    rc = frags_push(tmp, off, len, TOK_NULL);
                break;
            }
            size_t mpos = (size_t)(m - text);
            size_t left = mpos - off;
            if (t->attr & TOK_ATTR_LSTRIP)
                while (left > 0 && isspace((unsigned char)text[off + left - 1]))
                    left--;
            if (left)
                rc = frags_push(tmp, off, left, TOK_NULL);
            if (rc == 0)
                rc = frags_push(tmp, mpos, tl, id);
            size_t roff = mpos + tl, rlen = off + len - roff;
            if (t->attr & TOK_ATTR_RSTRIP)
                while (rlen > 0 && isspace((unsigned char)text[roff])) {
                    roff++;
                    rlen--;
                }
            off = roff;
            len = rlen;
            if (len == 0)
                break;
        }
    }
    if (rc == 0) {
        frags x = *fs;
        *fs = *tmp;
        *tmp = x;
    }
    return rc;
}

/*
 * Marks in present (a bitmap by id) the special tokens that occur in text: at
 * each position whose byte can start a special text, every distinct special
 * length is looked up in the token hash. Far cheaper than one memmem per
 * special token when a vocab has thousands (deepseek: 2,400 user-defined).
 */
static void find_present(const tok_vocab *v, const char *text, size_t len, uint8_t *present)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)text[i];
        if (!(v->special_first[c >> 3] & (1u << (c & 7))))
            continue;
        for (uint32_t k = 0; k < v->n_special_lens; k++) {
            uint32_t l = v->special_lens[k];
            if (l > len - i)
                continue;
            tok_id id = tok_find_(v, text + i, l);
            if (id >= 0)
                present[id >> 3] |= (uint8_t)(1u << (id & 7));
        }
    }
}

static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                     frags *fs)
{
    int rc = frags_push(fs, 0, len, TOK_NULL);
    if (rc || v->n_specials == 0)
        return rc;
    uint8_t *present = NULL;
    if (!v->special_lens_full) {
        present = calloc((size_t)v->n_tokens / 8 + 1, 1);
        if (!present)
            return ERR_NOMEM;
        find_present(v, text, len, present);
    }
    frags tmp = {0};
    for (uint32_t k = 0; k < v->n_specials && rc == 0; k++) {
        tok_id id = v->specials[k];
        const tok_info *t = &v->tok[id];
        if (!parse_special && t->type != TOK_TYPE_USER_DEFINED)
            continue;
        if (present ? !(present[id >> 3] & (1u << (id & 7)))
                    : (t->len > len || !memmem(text, len, v->text + t->off, t->len)))
            continue;
        rc = partition_one(v, text, id, fs, &tmp);
    }
    free(tmp.f);
    free(present);
    return rc;
}

int tok_tokenize(const tok_vocab *v, const char *text, size_t len, unsigned flags, tok_list *out,
                 err_msg *e)
{
    if (len > TOK_MAX_TEXT_BYTES)
        return err_set(e, ERR_TOO_LARGE, "text of %zu bytes is over the %zu-byte limit", len,
                       (size_t)TOK_MAX_TEXT_BYTES);
    bool add_special = (flags & TOK_ADD_SPECIAL) != 0;
    int rc = 0;
    if (add_special && v->add_bos) {
        tok_id b = v->kind == TOK_KIND_WPM && v->cls >= 0 ? v->cls : v->bos;
        rc = tok_list_push(out, b);
        if (rc)
            return err_set(e, rc, "token list is full (%zu ids)", out->max);
    }
    frags fs = {0};
    if (len > 0)
        rc = partition(v, text, len, (flags & TOK_PARSE_SPECIAL) != 0, &fs);
    if (rc) {
        free(fs.f);
        return err_set(e, rc, "out of memory splitting special tokens");
    }
    bool prev_special = true; // SPM: a space is prefixed to text at the start or after a token
    for (size_t i = 0; i < fs.n && rc == 0; i++) {
        frag f = fs.f[i];
        if (f.id != TOK_NULL) {
            rc = tok_list_push(out, f.id);
            prev_special = true;
            continue;
        }
        switch (v->kind) {
        case TOK_KIND_SPM:
            rc = tok_spm_(v, text + f.off, f.len, v->add_space_prefix && prev_special, out);
            break;
        case TOK_KIND_BPE:
            rc = tok_bpe_(v, text + f.off, f.len, out, e);
            break;
        case TOK_KIND_WPM:
            rc = tok_wpm_(v, text + f.off, f.len, out);
            break;
        }
        prev_special = false;
    }
    free(fs.f);
    if (rc == 0 && add_special && v->add_eos)
        rc = tok_list_push(out, v->eos);
    if (rc == 0 && add_special && v->add_sep)
        rc = tok_list_push(out, v->sep);
    if (rc == ERR_TOO_LARGE)
        return err_set(e, rc, "token list is full (%zu ids)", out->max);
    if (rc == ERR_NOMEM)
        return err_set(e, rc, "out of memory while tokenizing %zu bytes", len);
    return rc;
}
