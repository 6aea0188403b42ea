/*
 * model/tok_pre — pre-tokenizer regexes of byte-level BPE vocabs, run with
 * PCRE2 (UTF + UCP, JIT).
 *
 * A pre-tokenizer is a sequence of regexes. The first splits the text; each
 * next one splits every piece of the previous result on its own (the piece
 * is the whole subject: `$` and lookahead see its end, not the text's).
 * Both the matches and the gaps between them are kept, in order, so the
 * pieces always cover the text. This is the Hugging Face "Split, Isolated"
 * behaviour and what llama.cpp's unicode_regex_split does.
 *
 * The patterns are the tokenizer.json ones (as llama.cpp lists them), with
 * two spelled-out changes so PCRE2 means the same thing:
 *  - `\s` is the explicit White_Space set WS below (PCRE2's UCP `\s` leaves
 *    out U+0085, which Hugging Face and llama.cpp count as space);
 *  - `(?i:'s|...)` is written `'[sS]|...` as llama.cpp does, so it never
 *    folds non-ASCII letters (the Kelvin sign, long s).
 * `$` is compiled with PCRE2_DOLLAR_ENDONLY (end of piece only, as in ECMAScript).
 */
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

#define WS                                                                                         \
    "\\t-\\r "                                                                                     \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define S_ "[" WS "]"
#define NS_ "[^" WS "]"

#define GPT2_RE                                                                                    \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S_ "+(?!" NS_ ")"

#define CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

#define LLAMA3_RE                                                                                  \
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS                           \
                    "\\p{L}\\p{N}]+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NS_ ")|" S_ "+"

#define QWEN2_RE                                                                                   \
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S_  \
                    "*[\\r\\n]+|" S_ "+(?!" NS_ ")|" S_ "+"

/* The cased letters (Unicode L&) as deepseek-llm's tokenizer.json lists them. */
#define DEEPSEEK_LETTERS                                                                           \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{"    \
    "293}"                                                                                         \
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"          \
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{"    \
    "52F}"                                                                                         \
    "\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{"     \
    "1CBA}"                                                                                        \
    "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{"   \
    "1F15}"                                                                                        \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{"    \
    "1F5B}"                                                                                        \
    "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{"    \
    "1FC4}"                                                                                        \
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{"   \
    "1FF4}"                                                                                        \
    "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{"     \
    "2124}"                                                                                        \
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"         \
    "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"         \
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{"    \
    "A76F}"                                                                                        \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{"   \
    "FB17}"                                                                                        \
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"             \
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"         \
    "\\x{1E900}-\\x{1E943}"

#define CJK_RE "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

static const char *const *patterns_of(tok_pre pre)
{
    static const char *const gpt2[] = {GPT2_RE, NULL};
    static const char *const llama3[] = {LLAMA3_RE, NULL};
    static const char *const qwen2[] = {QWEN2_RE, NULL};
    static const char *const deepseek_llm[] = {
        "[\\r\\n]",
        S_ "?[" DEEPSEEK_LETTERS "]+",
        S_ "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
        S_ "+$",
        CJK_RE,
        "\\p{N}+",
        NULL,
    };
    static const char *const deepseek_coder[] = {
        "[\\r\\n]", S_ "?\\p{L}+", S_ "?\\p{P}+", CJK_RE, "\\p{N}", NULL,
    };
    static const char *const falcon[] = {
        "[\\p{P}\\$\\+<=>\\^~\\|`]+",
        GPT2_RE,
        "[0-9][0-9][0-9]",
        NULL,
    };
    static const char *const starcoder[] = {"\\p{N}", GPT2_RE, NULL};
    static const char *const dflt[] = {
        "[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]", NULL,
    };
    switch (pre) {
    case TOK_PRE_GPT2:
        return gpt2;
    case TOK_PRE_LLAMA3:
        return llama3;
    case TOK_PRE_QWEN2:
        return qwen2;
    case TOK_PRE_DEEPSEEK_LLM:
        return deepseek_llm;
    case TOK_PRE_DEEPSEEK_CODER:
        return deepseek_coder;
    case TOK_PRE_FALCON:
        return falcon;
    case TOK_PRE_STARCODER:
        return starcoder;
    case TOK_PRE_DEFAULT:
    case TOK_PRE_COUNT_:
        break;
    }
    return dflt;
}

int tok_pre_from_name(str name, tok_pre *out)
{
    static const struct {
        const char *name;
        tok_pre pre;
    } map[] = {
        {"default", TOK_PRE_DEFAULT},
        {"gpt-2", TOK_PRE_GPT2},
        {"gpt2", TOK_PRE_GPT2},
        {"mpt", TOK_PRE_GPT2},
        {"olmo", TOK_PRE_GPT2},
        {"jais", TOK_PRE_GPT2},
        {"phi-2", TOK_PRE_GPT2},
        {"jina-es", TOK_PRE_GPT2},
        {"jina-de", TOK_PRE_GPT2},
        {"gigachat", TOK_PRE_GPT2},
        {"jina-v1-en", TOK_PRE_GPT2},
        {"jina-v2-es", TOK_PRE_GPT2},
        {"jina-v2-de", TOK_PRE_GPT2},
        {"jina-v2-code", TOK_PRE_GPT2},
        {"roberta-bpe", TOK_PRE_GPT2},
        {"llama3", TOK_PRE_LLAMA3},
        {"llama-v3", TOK_PRE_LLAMA3},
        {"llama-bpe", TOK_PRE_LLAMA3},
        {"falcon3", TOK_PRE_LLAMA3},
        {"dbrx", TOK_PRE_LLAMA3},
        {"smaug-bpe", TOK_PRE_LLAMA3},
        {"qwen2", TOK_PRE_QWEN2},
        {"deepseek-r1-qwen", TOK_PRE_QWEN2},
        {"stablelm2", TOK_PRE_QWEN2},
        {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM},
        {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER},
        {"falcon", TOK_PRE_FALCON},
        {"starcoder", TOK_PRE_STARCODER},
        {"refact", TOK_PRE_STARCODER},
        {"command-r", TOK_PRE_STARCODER},
        {"smollm", TOK_PRE_STARCODER},
        {"codeshell", TOK_PRE_STARCODER},
        {"exaone", TOK_PRE_STARCODER},
        {"minerva-7b", TOK_PRE_STARCODER},
    };
    if (name.n == 0) {
        *out = TOK_PRE_DEFAULT;
        return 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        if (str_eq_cstr(name, map[i].name)) {
            *out = map[i].pre;
            return 0;
        }
    }
    return ERR_UNSUPPORTED;
}

int tok_re_compile_(tok_pre pre, tok_re_set *rs, err_msg *e)
{
    memset(rs, 0, sizeof *rs);
    const char *const *pats = patterns_of(pre);
    for (int i = 0; pats[i]; i++) {
        if (NEVER(i >= TOK_MAX_REGEX)) {
            tok_re_free_(rs);
            return ERR_INTERNAL;
        }
        int ecode;
        PCRE2_SIZE eoff;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)pats[i], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ecode, &eoff, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ecode, msg, sizeof msg);
            tok_re_free_(rs);
            return err_set(e, ERR_INTERNAL, "pre-tokenizer regex %d does not compile at %zu: %s", i,
                           (size_t)eoff, (const char *)msg);
        }
        // JIT is an optimisation: when it is unavailable the interpreter runs.
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        rs->re[rs->n++] = re;
    }
    return 0;
}

void tok_re_free_(tok_re_set *rs)
{
    for (int i = 0; i < rs->n; i++)
        pcre2_code_free(rs->re[i]);
    rs->n = 0;
}

/* Splits the span [off, off+len) of text with re, appending pieces to out. */
static int split_one(const pcre2_code *re, pcre2_match_data *md, const char *text, size_t off,
                     size_t len, tok_spans *out, err_msg *e)
{
    const PCRE2_SPTR subj = (PCRE2_SPTR)(text + off);
    size_t pos = 0, last = 0;
    while (pos < len) {
        int rc = pcre2_match(re, subj, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, subj, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set(e, ERR_INTERNAL, "pre-tokenizer regex failed: %s", (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
            // An empty match (none of our patterns can make one): step one character.
            pos = ms + 1;
            while (pos < len && ((uint8_t)text[off + pos] & 0xC0) == 0x80)
                pos++;
            continue;
        }
        int rc2 = 0;
        if (ms > last)
            rc2 = tok_spans_push_(out, off + last, ms - last);
        if (rc2 == 0)
            rc2 = tok_spans_push_(out, off + ms, me - ms);
        if (rc2)
            return rc2;
        last = pos = me;
    }
    if (last < len)
        return tok_spans_push_(out, off + last, len - last);
    return 0;
}

int tok_re_split_(const tok_re_set *rs, const char *text, size_t len, tok_spans *out, err_msg *e)
{
    out->n = 0;
    if (len == 0)
        return 0;
    int rc = tok_spans_push_(out, 0, len);
    if (rc)
        return rc;
    if (rs->n == 0)
        return 0;
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!md)
        return ERR_NOMEM;
    tok_spans next = {0};
    for (int r = 0; r < rs->n && rc == 0; r++) {
        next.n = 0;
        for (size_t i = 0; i < out->n && rc == 0; i++)
            rc = split_one(rs->re[r], md, text, out->off[i], out->len[i], &next, e);
        if (rc == 0) {
            tok_spans t = *out;
            *out = next;
            next = t;
        }
    }
    tok_spans_free_(&next);
    pcre2_match_data_free(md);
    return rc;
}

long tok_pre_split(tok_pre pre, const char *text, size_t len, size_t *offs, size_t *lens,
                   size_t cap, err_msg *e)
{
    if (len > TOK_MAX_TEXT_BYTES)
        return err_set(e, ERR_TOO_LARGE, "text of %zu bytes is over the %zu-byte limit", len,
                       (size_t)TOK_MAX_TEXT_BYTES);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = tok_utf8_decode_((const uint8_t *)text + i, len - i, &cp);
        if (k == 0)
            return err_set(e, ERR_INVAL, "text is not valid UTF-8 at byte %zu", i);
        i += k;
    }
    tok_re_set rs;
    int rc = tok_re_compile_(pre, &rs, e);
    if (rc)
        return rc;
    tok_spans sp = {0};
    rc = tok_re_split_(&rs, text, len, &sp, e);
    tok_re_free_(&rs);
    if (rc) {
        tok_spans_free_(&sp);
        return rc;
    }
    for (size_t i = 0; i < sp.n && i < cap; i++) {
        offs[i] = sp.off[i];
        lens[i] = sp.len[i];
    }
    long n = (long)sp.n;
    tok_spans_free_(&sp);
    return n;
}
