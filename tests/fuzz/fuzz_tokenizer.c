// FUZZ_MODULES: base model
// FUZZ_SECONDS: 15
// FUZZ_LIBS: libpcre2-8 libutf8proc
/*
 * libFuzzer harness for the tokenizers. The first input byte picks a small
 * in-memory vocab (SPM with byte fallback, byte-level BPE under one of the
 * pre-tokenizers, or WordPiece) and flags; the rest is the text. For any
 * bytes: tokenize must succeed with ids in range, the detokenizer (fed one
 * id at a time) must emit only valid UTF-8, and each pre-tokenizer split of
 * the repaired text must cover it exactly. For valid UTF-8 without special
 * parsing, SPM and BPE must round-trip: detokenize(tokenize(text)) == text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok.h"

static const char *const k_spm_words[] = {
    "\xE2\x96\x81",
    "\xE2\x96\x81t",
    "he",
    "\xE2\x96\x81the",
    "in",
    "er",
    "an",
    "\xE2\x96\x81"
    "a",
    "ll",
    "llo",
    "\xE2\x96\x81hello",
    "<",
    "s",
    ">",
};

static tok_vocab *make_spm(void)
{
    static char bytes[256][7];
    enum { NB = 256, NW = sizeof k_spm_words / sizeof k_spm_words[0], N = 3 + NB + NW };
    str toks[N];
    float scores[N];
    int32_t types[N];
    toks[0] = STR_LIT("<unk>");
    toks[1] = STR_LIT("<s>");
    toks[2] = STR_LIT("</s>");
    types[0] = TOK_TYPE_UNKNOWN;
    types[1] = types[2] = TOK_TYPE_CONTROL;
    scores[0] = scores[1] = scores[2] = 0;
    for (int b = 0; b < NB; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = str_from(bytes[b]);
        types[3 + b] = TOK_TYPE_BYTE;
        scores[3 + b] = 0;
    }
    for (int i = 0; i < NW; i++) {
        toks[3 + NB + i] = str_from(k_spm_words[i]);
        types[3 + NB + i] = TOK_TYPE_NORMAL;
        scores[3 + NB + i] = -(float)(i % 5);
    }
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_SPM);
    d.n_tokens = N;
    d.tokens = toks;
    d.scores = scores;
    d.types = types;
    tok_vocab *v = NULL;
    err_msg e;
    if (tok_vocab_build(&d, &v, &e) != 0)
        abort();
    return v;
}

static tok_vocab *make_bpe(const char *pre)
{
    static char chars[256][3];
    str toks[256 + 8];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int pr = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = (unsigned)b;
        if (!pr) {
            unsigned k = 0;
            for (int x = 0; x < b; x++)
                k += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
            cp = 0x100 + k;
        }
        if (cp < 0x80) {
            chars[b][0] = (char)cp;
            toks[n++] = (str){chars[b], 1};
        } else {
            chars[b][0] = (char)(0xC0 | (cp >> 6));
            chars[b][1] = (char)(0x80 | (cp & 0x3F));
            toks[n++] = (str){chars[b], 2};
        }
    }
    toks[n++] = STR_LIT("\xC4\xA0h");
    toks[n++] = STR_LIT("el");
    toks[n++] = STR_LIT("\xC4\xA0hel");
    toks[n++] = STR_LIT("lo");
    toks[n++] = STR_LIT("<|end|>");
    toks[n++] = STR_LIT("hello");
    toks[n++] = STR_LIT("\xC4\xA0\xC4\xA0");
    static const str merges[] = {STR_LIT("\xC4\xA0 h"), STR_LIT("e l"), STR_LIT("\xC4\xA0h el"),
                                 STR_LIT("l o"), STR_LIT("\xC4\xA0 \xC4\xA0")};
    int32_t types[256 + 8];
    for (int i = 0; i < n; i++)
        types[i] = TOK_TYPE_NORMAL;
    types[260] = TOK_TYPE_CONTROL;
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_BPE);
    d.pre = str_from(pre);
    d.n_tokens = (size_t)n;
    d.tokens = toks;
    d.types = types;
    d.n_merges = sizeof merges / sizeof merges[0];
    d.merges = merges;
    d.bos = d.eos = 260;
    tok_vocab *v = NULL;
    err_msg e;
    if (tok_vocab_build(&d, &v, &e) != 0)
        abort();
    return v;
}

static tok_vocab *make_wpm(void)
{
    static const str toks[] = {
        STR_LIT("[PAD]"), STR_LIT("[UNK]"), STR_LIT("[CLS]"), STR_LIT("[SEP]"),
        STR_LIT("hello"), STR_LIT("un"),    STR_LIT("##aff"), STR_LIT("##able"),
        STR_LIT(","),     STR_LIT("!"),     STR_LIT("cafe"),  STR_LIT("\xE4\xB8\xAD"),
        STR_LIT("a"),     STR_LIT("##a"),
    };
    int32_t types[sizeof toks / sizeof toks[0]];
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
        types[i] = i < 4 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_WPM);
    d.n_tokens = sizeof toks / sizeof toks[0];
    d.tokens = toks;
    d.types = types;
    d.unk = 1;
    d.cls = 2;
    d.sep = 3;
    tok_vocab *v = NULL;
    err_msg e;
    if (tok_vocab_build(&d, &v, &e) != 0)
        abort();
    return v;
}

static const char *const k_pres[] = {"gpt-2",          "llama-bpe", "qwen2",     "deepseek-llm",
                                     "deepseek-coder", "falcon",    "starcoder", "default"};
#define N_PRE (sizeof k_pres / sizeof k_pres[0])

/* Vocabs live for the whole run (the harness never exits normally). */
static tok_vocab *g_vocabs[N_PRE + 2];

static int valid_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_vocabs[0]) {
        g_vocabs[0] = make_spm();
        g_vocabs[1] = make_wpm();
        for (size_t i = 0; i < N_PRE; i++)
            g_vocabs[2 + i] = make_bpe(k_pres[i]);
    }
    if (size == 0 || size > 4096)
        return 0;
    uint8_t sel = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    size_t vi = (sel & 0x0F) % (N_PRE + 2);
    unsigned flags = (sel & 0x10 ? TOK_PARSE_SPECIAL : 0) | (sel & 0x20 ? TOK_ADD_SPECIAL : 0);
    const tok_vocab *v = g_vocabs[vi];

    tok_list l;
    tok_list_init(&l, 1u << 20);
    err_msg e;
    if (tok_tokenize(v, text, len, flags, &l, &e) != 0)
        abort();
    for (size_t i = 0; i < l.n; i++)
        if (l.ids[i] < 0 || (size_t)l.ids[i] >= tok_vocab_n_tokens(v))
            abort();

    // Stream the ids one at a time: whatever comes out is valid UTF-8.
    buf out;
    buf_init(&out, 1u << 24);
    tok_decoder d;
    tok_decoder_init(&d, v, TOK_DEC_STRIP_SPACE | (sel & 0x40 ? TOK_DEC_SPECIAL : 0));
    for (size_t i = 0; i < l.n; i++)
        if (tok_decoder_push(&d, l.ids[i], &out) != 0)
            abort();
    if (tok_decoder_flush(&d, &out) != 0)
        abort();
    if (!valid_utf8((const uint8_t *)out.data, out.len))
        abort();

    int utf8 = valid_utf8(data + 1, len);
    tok_kind kind = tok_vocab_kind(v);
    if (utf8 && !(flags & TOK_PARSE_SPECIAL) && !(sel & 0x40) && kind != TOK_KIND_WPM &&
        !(kind == TOK_KIND_SPM && memmem(text, len, "\xE2\x96\x81", 3))) {
        // Round trip (control tokens are not rendered: BOS adds nothing).
        if (out.len != len || (len && memcmp(out.data, text, len) != 0))
            abort();
    }

    // Pre-tokenizer splits cover the text exactly, in order (compiles the regexes: sometimes).
    if (utf8 && kind == TOK_KIND_BPE && (sel & 0x80)) {
        size_t offs[512], lens[512];
        long n = tok_pre_split(tok_vocab_pre(v), text, len, offs, lens, 512, &e);
        if (n < 0)
            abort();
        size_t pos = 0;
        for (long i = 0; i < n && i < 512; i++) {
            if (offs[i] != pos || lens[i] == 0)
                abort();
            pos += lens[i];
        }
        if (n <= 512 && pos != len)
            abort();
    }
    buf_deinit(&out);
    tok_list_free(&l);
    return 0;
}
