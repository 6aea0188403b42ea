/*
 * model/tok_gguf — the GGUF adapter: reads the tokenizer.ggml.* metadata of a
 * gguf_file into a tok_vocab_desc and builds the vocab from it. Strings are
 * slices into the file's mapping; tok_vocab_build copies them.
 */
#include <stdlib.h>

#include "model/gguf.h"
#include "model/tok.h"

static int get_id(const gguf_file *f, const char *key, tok_id *out, err_msg *e)
{
    int64_t v;
    // Converters write u32 0xFFFFFFFF (llama.cpp's LLAMA_TOKEN_NULL as uint32)
    // for "no such token", e.g. tokenizer.ggml.seperator_token_id in
    // stories260K.gguf: any value outside [0, INT32_MAX] means none.
    int rc = gguf_get_int(f, key, INT64_MIN, INT64_MAX, &v, e);
    if (rc == 0 && (v < 0 || v > INT32_MAX)) {
        *out = TOK_NULL;
        return 0;
    }
    if (rc == ERR_NOT_FOUND) {
        err_clear(e);
        return 0; // keep TOK_UNSET
    }
    if (rc)
        return rc;
    *out = (tok_id)v;
    return 0;
}

static int get_flag(const gguf_file *f, const char *key, int *out, err_msg *e)
{
    bool b;
    int rc = gguf_get_bool(f, key, &b, e);
    if (rc == ERR_NOT_FOUND) {
        err_clear(e);
        return 0;
    }
    if (rc)
        return rc;
    *out = b;
    return 0;
}

int tok_vocab_from_gguf(const gguf_file *f, tok_vocab **out, err_msg *e)
{
    *out = NULL;
    str model;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, rc, "the file has no tokenizer (tokenizer.ggml.model is missing)");
    if (rc)
        return rc;
    tok_kind kind;
    if (str_eq_cstr(model, "llama"))
        kind = TOK_KIND_SPM;
    else if (str_eq_cstr(model, "gpt2"))
        kind = TOK_KIND_BPE;
    else if (str_eq_cstr(model, "bert"))
        kind = TOK_KIND_WPM;
    else
        return err_set(e, ERR_UNSUPPORTED, "tokenizer model \"%.*s\" is not supported",
                       (int)MIN(model.n, 64), model.p);

    tok_vocab_desc d;
    tok_vocab_desc_init(&d, kind);
    rc = gguf_get_str(f, "tokenizer.ggml.pre", &d.pre, e);
    if (rc && rc != ERR_NOT_FOUND)
        return rc;
    rc = gguf_get_str(f, "general.name", &d.name, e);
    if (rc && rc != ERR_NOT_FOUND)
        return rc;

    const gguf_value *toks, *scores = NULL, *types = NULL, *merges = NULL;
    rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, rc, "tokenizer.ggml.tokens is missing");
    if (rc)
        return rc;
    size_t n = gguf_arr_len(toks);
    if (n == 0 || n > TOK_MAX_TOKENS)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.tokens has %zu tokens (1..%u allowed)", n,
                       TOK_MAX_TOKENS);
    rc = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_COUNT, &scores, e);
    if (rc && rc != ERR_NOT_FOUND)
        return rc;
    rc = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_COUNT, &types, e);
    if (rc && rc != ERR_NOT_FOUND)
        return rc;
    rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, e);
    if (rc && rc != ERR_NOT_FOUND)
        return rc;
    rc = 0;
    err_clear(e);
    if (scores && gguf_arr_len(scores) != n)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.scores has %zu entries for %zu tokens",
                       gguf_arr_len(scores), n);
    if (types && gguf_arr_len(types) != n)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.token_type has %zu entries for %zu tokens",
                       gguf_arr_len(types), n);
    size_t nm = merges ? gguf_arr_len(merges) : 0;
    if (nm > TOK_MAX_MERGES)
        return err_set(e, ERR_TOO_LARGE, "tokenizer.ggml.merges has %zu entries (limit %u)", nm,
                       TOK_MAX_MERGES);

    str *tv = malloc(n * sizeof *tv);
    float *sv = scores ? malloc(n * sizeof *sv) : NULL;
    int32_t *yv = types ? malloc(n * sizeof *yv) : NULL;
    str *mv = nm ? malloc(nm * sizeof *mv) : NULL;
    if (!tv || (scores && !sv) || (types && !yv) || (nm && !mv)) {
        rc = ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = gguf_arr_str(toks, i, &tv[i]);
        if (rc == 0 && sv) {
            double x;
            rc = gguf_arr_f64(scores, i, &x);
            sv[i] = (float)x;
        }
        if (rc == 0 && yv) {
            int64_t t;
            rc = gguf_arr_i64(types, i, &t);
            yv[i] = (t >= 0 && t <= 6) ? (int32_t)t : 0;
        }
        if (rc)
            rc = err_set(e, ERR_FORMAT, "tokenizer arrays: element %zu has the wrong type", i);
    }
    for (size_t i = 0; i < nm && rc == 0; i++)
        if (gguf_arr_str(merges, i, &mv[i]) != 0)
            rc = err_set(e, ERR_FORMAT, "tokenizer.ggml.merges: element %zu is not a string", i);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.bos_token_id", &d.bos, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.eos_token_id", &d.eos, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.unknown_token_id", &d.unk, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.seperator_token_id", &d.sep, e); // sic, GGUF's spelling
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.padding_token_id", &d.pad, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.cls_token_id", &d.cls, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.mask_token_id", &d.mask, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.eot_token_id", &d.eot, e);
    if (rc == 0)
        rc = get_id(f, "tokenizer.ggml.eom_token_id", &d.eom, e);
    if (rc == 0)
        rc = get_flag(f, "tokenizer.ggml.add_bos_token", &d.add_bos, e);
    if (rc == 0)
        rc = get_flag(f, "tokenizer.ggml.add_eos_token", &d.add_eos, e);
    if (rc == 0)
        rc = get_flag(f, "tokenizer.ggml.add_sep_token", &d.add_sep, e);
    if (rc == 0)
        rc = get_flag(f, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix, e);
    if (rc == 0) {
        d.n_tokens = n;
        d.tokens = tv;
        d.scores = sv;
        d.types = yv;
        d.n_merges = nm;
        d.merges = mv;
        rc = tok_vocab_build(&d, out, e);
    }
done:
    free(tv);
    free(sv);
    free(yv);
    free(mv);
    return rc;
}
