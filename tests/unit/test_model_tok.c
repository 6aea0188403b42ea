/*
 * Unit tests for model/tok: pre-tokenizer splits (llama3, qwen2, gpt2) against
 * hand-checked expectations, the three tokenizers on small in-memory vocabs
 * (score-ordered SPM merges, byte fallback, the leading-space rule, special
 * tokens on and off, BPE merge ranks, WordPiece normalization), the streaming
 * detokenizer on split UTF-8, concurrent use of one vocab, speed on 100 KB,
 * and refusal of bad descriptions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "model/gguf.h"
#include "model/tok.h"

/* ------------------------------------------------------------ pre-tokenizers */

/* Splits text with pre and compares the pieces with the NULL-terminated want. */
static void check_split(tok_pre pre, const char *text, const char *const *want)
{
    size_t offs[64], lens[64];
    err_msg e;
    long n = tok_pre_split(pre, text, strlen(text), offs, lens, 64, &e);
    assert_true(n >= 0);
    size_t nw = 0;
    while (want[nw])
        nw++;
    int ok = (size_t)n == nw;
    for (long i = 0; ok && i < n; i++)
        ok = lens[i] == strlen(want[i]) && memcmp(text + offs[i], want[i], lens[i]) == 0;
    if (!ok) {
        fprintf(stderr, "split of \"%s\" (pre %d):\n", text, (int)pre);
        for (long i = 0; i < n && i < 64; i++)
            fprintf(stderr, "  got [%.*s]\n", (int)lens[i], text + offs[i]);
        for (size_t i = 0; i < nw; i++)
            fprintf(stderr, "  want [%s]\n", want[i]);
    }
    assert_true(ok);
}

#define SPLIT(pre, text, ...) check_split(pre, text, (const char *const[]){__VA_ARGS__, NULL})

static void test_llama3_split(void **state)
{
    (void)state;
    const tok_pre p = TOK_PRE_LLAMA3;
    SPLIT(p, "Hello world", "Hello", " world");
    // Contractions match case-insensitively and split from the word before.
    SPLIT(p, "I'm HE'S they'll don't", "I", "'m", " HE", "'S", " they", "'ll", " don", "'t");
    // Numbers: runs of at most three digits.
    SPLIT(p, "1234567", "123", "456", "7");
    SPLIT(p, "x 2024!", "x", " ", "202", "4", "!");
    // Whitespace: a run before a word leaves its last space to the word.
    SPLIT(p, "  hello", " ", " hello");
    SPLIT(p, "\t\tfoo", "\t", "\tfoo");
    // Newlines: spaces and newlines up to the last newline go together.
    SPLIT(p, "a\n\nb", "a", "\n\n", "b");
    SPLIT(p, "x   \n  y", "x", "   \n", " ", " y");
    // Punctuation runs take trailing newlines; a leading non-letter joins a word.
    SPLIT(p, "hello!!! ok?\n", "hello", "!!!", " ok", "?\n");
    SPLIT(p, ".Net $100", ".Net", " $", "100");
    // CJK letters form one word with adjacent Latin letters; emoji are symbols.
    SPLIT(p,
          "\xE6\x88\x91\xE6\x83\xB3"
          "apple\xE5\xB7\xA5",
          "\xE6\x88\x91\xE6\x83\xB3"
          "apple\xE5\xB7\xA5");
    SPLIT(p, "\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99 hi", "\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99", " hi");
    // Trailing whitespace is one piece.
    SPLIT(p, "ok  ", "ok", "  ");
    // U+3000 (ideographic space) is whitespace.
    SPLIT(p,
          "a\xE3\x80\x80"
          "b",
          "a",
          "\xE3\x80\x80"
          "b");
}

static void test_qwen2_split(void **state)
{
    (void)state;
    const tok_pre p = TOK_PRE_QWEN2;
    // Qwen2 differs from llama3 in one point: each digit is its own piece.
    SPLIT(p, "1234", "1", "2", "3", "4");
    SPLIT(p, "x2024\xE5\xB9\xB4", "x", "2", "0", "2", "4", "\xE5\xB9\xB4");
    SPLIT(p, "We'Ve a'lL", "We", "'Ve", " a", "'lL");
    SPLIT(p, "  \n\n hi", "  \n\n", " hi");
    SPLIT(p, "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE \xF0\x9F\x98\x81 ?",
          "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE", " \xF0\x9F\x98\x81", " ?");
    SPLIT(p, "3.14", "3", ".", "1", "4");
}

static void test_gpt2_split(void **state)
{
    (void)state;
    const tok_pre p = TOK_PRE_GPT2;
    // gpt-2: contractions are case-sensitive, digits run on, a space joins the next word.
    SPLIT(p, "Hello world's 123 !!", "Hello", " world", "'s", " 123", " !!");
    SPLIT(p, "I'M", "I", "'", "M");
    SPLIT(p, "a  b", "a", " ", " b");
    // "\t" before "\n" is a lone space run; the "\n" before "y" matches nothing and stays a piece.
    SPLIT(p, "x\t\ny", "x", "\t", "\n", "y");
}

static void test_pre_split_rejects_bad_utf8(void **state)
{
    (void)state;
    size_t o[4], l[4];
    err_msg e;
    assert_int_equal(tok_pre_split(TOK_PRE_GPT2, "a\xFF", 2, o, l, 4, &e), ERR_INVAL);
    assert_int_equal(tok_pre_split(TOK_PRE_GPT2, "", 0, o, l, 4, &e), 0);
    tok_pre pre;
    assert_int_equal(tok_pre_from_name(STR_LIT("llama-bpe"), &pre), 0);
    assert_int_equal(pre, TOK_PRE_LLAMA3);
    assert_int_equal(tok_pre_from_name(STR_LIT("refact"), &pre), 0);
    assert_int_equal(pre, TOK_PRE_STARCODER);
    assert_int_equal(tok_pre_from_name(STR_LIT("nonesuch"), &pre), ERR_UNSUPPORTED);
}

/* ------------------------------------------------------------ SPM */

#define SPM_FIRST_BYTE 3
/* <unk> <s> </s>, 256 byte tokens, then normal pieces with scores. */
static const char *const spm_words[] = {
    "\xE2\x96\x81", "h", "e", "l", "o", "he", "ll", "llo", "\xE2\x96\x81he", "w", "r", "d",
};
static const float spm_scores[] = {-1, -2, -2, -2, -2, -3, -1.5f, -1, -0.5f, -2, -2, -2};
#define SPM_N (SPM_FIRST_BYTE + 256 + (int)ARRAY_LEN(spm_words))

static tok_id spm_id(const char *w)
{
    for (size_t i = 0; i < ARRAY_LEN(spm_words); i++)
        if (strcmp(spm_words[i], w) == 0)
            return (tok_id)(SPM_FIRST_BYTE + 256 + i);
    fail_msg("no word %s", w);
    return -1;
}

static tok_vocab *make_spm(void)
{
    static char bytes[256][7];
    str toks[SPM_N];
    float scores[SPM_N];
    int32_t types[SPM_N];
    toks[0] = STR_LIT("<unk>");
    toks[1] = STR_LIT("<s>");
    toks[2] = STR_LIT("</s>");
    types[0] = TOK_TYPE_UNKNOWN;
    types[1] = types[2] = TOK_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[SPM_FIRST_BYTE + b] = str_from(bytes[b]);
        types[SPM_FIRST_BYTE + b] = TOK_TYPE_BYTE;
    }
    for (size_t i = 0; i < ARRAY_LEN(spm_words); i++) {
        toks[SPM_FIRST_BYTE + 256 + i] = str_from(spm_words[i]);
        types[SPM_FIRST_BYTE + 256 + i] = TOK_TYPE_NORMAL;
    }
    for (int i = 0; i < SPM_N; i++)
        scores[i] = i >= SPM_FIRST_BYTE + 256 ? spm_scores[i - SPM_FIRST_BYTE - 256] : 0;
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_SPM);
    d.n_tokens = SPM_N;
    d.tokens = toks;
    d.scores = scores;
    d.types = types;
    tok_vocab *v = NULL;
    err_msg e;
    assert_int_equal(tok_vocab_build(&d, &v, &e), 0);
    return v;
}

static void tokenize(const tok_vocab *v, const char *text, unsigned flags, tok_list *l)
{
    err_msg e;
    tok_list_init(l, 1u << 22);
    assert_int_equal(tok_tokenize(v, text, strlen(text), flags, l, &e), 0);
}

#define IDS(...) ((const tok_id[]){__VA_ARGS__}), ARRAY_LEN(((const tok_id[]){__VA_ARGS__}))

static void expect(const tok_vocab *v, const char *text, unsigned flags, const tok_id *want,
                   size_t nw)
{
    tok_list l;
    tokenize(v, text, flags, &l);
    int ok = l.n == nw && (nw == 0 || memcmp(l.ids, want, nw * sizeof *want) == 0);
    if (!ok) {
        fprintf(stderr, "tokenize \"%s\": got", text);
        for (size_t i = 0; i < l.n; i++)
            fprintf(stderr, " %d", l.ids[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < nw; i++)
            fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    tok_list_free(&l);
    assert_true(ok);
}

static void test_spm_merges_and_fallback(void **state)
{
    (void)state;
    tok_vocab *v = make_spm();
    // "▁hello": ll (-1.5) first, then llo (-1), he (-3), ▁he (-0.5): [▁he, llo].
    expect(v, "hello", 0, IDS(spm_id("\xE2\x96\x81he"), spm_id("llo")));
    // BOS only when asked; the leading space rule applies either way.
    expect(v, "hello", TOK_ADD_SPECIAL, IDS(1, spm_id("\xE2\x96\x81he"), spm_id("llo")));
    // é is not a piece: its two bytes fall back to <0xC3> <0xA9>.
    expect(v, "h\xC3\xA9", 0,
           IDS(spm_id("\xE2\x96\x81"), spm_id("h"), SPM_FIRST_BYTE + 0xC3, SPM_FIRST_BYTE + 0xA9));
    // Spaces become U+2581 ("▁" pieces).
    expect(
        v, "he  w", 0,
        IDS(spm_id("\xE2\x96\x81he"), spm_id("\xE2\x96\x81"), spm_id("\xE2\x96\x81"), spm_id("w")));
    expect(v, "", 0, NULL, 0);
    tok_vocab_free(v);
}

static void test_spm_special_tokens(void **state)
{
    (void)state;
    tok_vocab *v = make_spm();
    const tok_id lt = SPM_FIRST_BYTE + '<', gt = SPM_FIRST_BYTE + '>', s = SPM_FIRST_BYTE + 's';
    // Off: "<s>" is text (byte fallback for '<', 's', '>').
    expect(v, "<s>he", 0, IDS(spm_id("\xE2\x96\x81"), lt, s, gt, spm_id("he")));
    // On: the control token is recognised and the text after it gets the space prefix.
    expect(v, "<s>he", TOK_PARSE_SPECIAL, IDS(1, spm_id("\xE2\x96\x81he")));
    expect(v, "he</s>", TOK_PARSE_SPECIAL, IDS(spm_id("\xE2\x96\x81he"), 2));
    tok_vocab_free(v);
}

/* ------------------------------------------------------------ detokenizer */

static void test_decoder_streams_split_utf8(void **state)
{
    (void)state;
    tok_vocab *v = make_spm();
    tok_decoder d;
    buf out;
    buf_init(&out, 1 << 16);
    tok_decoder_init(&d, v, TOK_DEC_STRIP_SPACE);
    // "▁" then the three byte tokens of "€" (E2 82 AC): nothing until the last one.
    assert_int_equal(tok_decoder_push(&d, spm_id("\xE2\x96\x81"), &out), 0);
    assert_int_equal(out.len, 0); // the leading space is stripped
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0xE2, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0x82, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0xAC, &out), 0);
    assert_string_equal(out.data, "\xE2\x82\xAC");
    // A broken sequence becomes U+FFFD and the next byte is kept.
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0xE2, &out), 0);
    assert_int_equal(tok_decoder_push(&d, spm_id("h"), &out), 0);
    assert_string_equal(out.data, "\xE2\x82\xAC\xEF\xBF\xBDh");
    // A lone continuation byte is U+FFFD; an incomplete tail is U+FFFD at flush.
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0x82, &out), 0);
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0xF0, &out), 0);
    assert_int_equal(tok_decoder_push(&d, SPM_FIRST_BYTE + 0x9F, &out), 0);
    assert_string_equal(out.data, "\xE2\x82\xAC\xEF\xBF\xBDh\xEF\xBF\xBD");
    assert_int_equal(tok_decoder_flush(&d, &out), 0);
    assert_string_equal(out.data, "\xE2\x82\xAC\xEF\xBF\xBDh\xEF\xBF\xBD\xEF\xBF\xBD");
    // Control tokens render only when asked; an id out of range is refused.
    buf_reset(&out);
    tok_decoder_init(&d, v, 0);
    assert_int_equal(tok_decoder_push(&d, 1, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_decoder_push(&d, SPM_N, &out), ERR_INVAL);
    tok_decoder_init(&d, v, TOK_DEC_SPECIAL);
    assert_int_equal(tok_decoder_push(&d, 1, &out), 0);
    assert_string_equal(out.data, "<s>");
    // Round trip: tokenize with BOS, detokenize from the start.
    buf_reset(&out);
    tok_list l;
    tokenize(v, " hello w\xC3\xA9 ", TOK_ADD_SPECIAL, &l);
    assert_int_equal(tok_detokenize(v, l.ids, l.n, TOK_DEC_STRIP_SPACE, &out), 0);
    assert_string_equal(out.data, " hello w\xC3\xA9 ");
    tok_list_free(&l);
    buf_deinit(&out);
    tok_vocab_free(v);
}

/* ------------------------------------------------------------ BPE */

/* Tokens 0..255: each byte's GPT-2 character (in byte order); then merged pieces. */
static tok_vocab *make_bpe(const char *pre)
{
    static char chars[256][3];
    str toks[256 + 8];
    int n = 0;
    for (int b = 0; b < 256; b++) {
        unsigned cp =
            (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE ? (unsigned)b : 0;
        if (!cp) {
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
    toks[n++] = STR_LIT("\xC4\xA0h");   // 256 "Ġh"
    toks[n++] = STR_LIT("el");          // 257
    toks[n++] = STR_LIT("\xC4\xA0hel"); // 258
    toks[n++] = STR_LIT("lo");          // 259
    toks[n++] = STR_LIT("<|end|>");     // 260 control
    toks[n++] = STR_LIT("hello");       // 261 (reachable only whole, with ignore_merges)
    static const str merges[] = {STR_LIT("\xC4\xA0 h"), STR_LIT("e l"), STR_LIT("\xC4\xA0h el"),
                                 STR_LIT("l o")};
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
    d.n_merges = ARRAY_LEN(merges);
    d.merges = merges;
    d.bos = 260;
    d.eos = 260;
    tok_vocab *v = NULL;
    err_msg e;
    assert_int_equal(tok_vocab_build(&d, &v, &e), 0);
    return v;
}

static void test_bpe_merges(void **state)
{
    (void)state;
    tok_vocab *v = make_bpe("gpt-2");
    // "hello" -> h el lo; " hello" -> Ġh, Ġh el = Ġhel, lo.
    expect(v, "hello hello", 0, IDS('h', 257, 259, 258, 259));
    // Bytes of "é" are two tokens (0xC3, 0xA9 map to themselves).
    expect(v, "\xC3\xA9", 0, IDS(0xC3, 0xA9));
    // Invalid UTF-8 is seen as U+FFFD (EF BF BD).
    expect(v, "\xFF", 0, IDS(0xEF, 0xBF, 0xBD));
    // Control token text only when asked; no BOS for gpt-2 by default.
    expect(v, "<|end|>", TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL, IDS(260));
    tok_list l;
    tokenize(v, "<|end|>", 0, &l);
    assert_true(l.n > 1);
    tok_list_free(&l);
    // Decoding undoes the byte mapping, also across tokens that split a character.
    buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(tok_detokenize(v, IDS(258, 259, 0xE2, 0x82, 0xAC), 0, &out), 0);
    assert_string_equal(out.data, " hello\xE2\x82\xAC");
    buf_deinit(&out);
    tok_vocab_free(v);
    // llama3 skips merging for a word that is a token, and adds BOS.
    v = make_bpe("llama-bpe");
    expect(v, "hello", TOK_ADD_SPECIAL, IDS(260, 261));
    tok_vocab_free(v);
}

/* ------------------------------------------------------------ WordPiece */

static void test_wordpiece(void **state)
{
    (void)state;
    // A Hugging Face style vocab ("##" continuations) is converted at build.
    static const str toks[] = {
        STR_LIT("[PAD]"), STR_LIT("[UNK]"), STR_LIT("[CLS]"), STR_LIT("[SEP]"),
        STR_LIT("hello"), STR_LIT("un"),    STR_LIT("##aff"), STR_LIT("##able"),
        STR_LIT(","),     STR_LIT("!"),     STR_LIT("cafe"),  STR_LIT("\xE4\xB8\xAD"),
    };
    int32_t types[ARRAY_LEN(toks)];
    for (size_t i = 0; i < ARRAY_LEN(toks); i++)
        types[i] = i < 4 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_WPM);
    d.n_tokens = ARRAY_LEN(toks);
    d.tokens = toks;
    d.types = types;
    d.unk = 1;
    d.cls = 2;
    d.sep = 3;
    d.pad = 0;
    tok_vocab *v = NULL;
    err_msg e;
    assert_int_equal(tok_vocab_build(&d, &v, &e), 0);
    // Lower-case, accents stripped (É -> e), punctuation and CJK split, unknown word -> [UNK].
    expect(v, "Hello, unaffable CAF\xC3\x89! \xE4\xB8\xADx", TOK_ADD_SPECIAL,
           IDS(2, 4, 8, 5, 6, 7, 10, 9, 11, 1, 3));
    // A word with an unmatched tail is one [UNK]; control characters vanish.
    expect(v, "unaffablex he\x01llo", 0, IDS(1, 4));
    buf out;
    buf_init(&out, 1 << 10);
    assert_int_equal(tok_detokenize(v, IDS(2, 4, 5, 6, 7, 3), TOK_DEC_STRIP_SPACE, &out), 0);
    assert_string_equal(out.data, "hello unaffable");
    buf_deinit(&out);
    tok_vocab_free(v);
}

/* ------------------------------------------------------------ errors */

static void test_build_refuses_bad_descriptions(void **state)
{
    (void)state;
    err_msg e;
    tok_vocab *v = NULL;
    tok_vocab_desc d;
    static const str toks[] = {STR_LIT("a"), STR_LIT("b"), STR_LIT("ab")};
    tok_vocab_desc_init(&d, TOK_KIND_BPE);
    d.n_tokens = 3;
    d.tokens = toks;
    static const str nospace[] = {STR_LIT("ab")};
    d.n_merges = 1;
    d.merges = nospace;
    assert_int_equal(tok_vocab_build(&d, &v, &e), ERR_FORMAT);
    assert_null(v);
    static const str ok[] = {STR_LIT("a b")};
    d.merges = ok;
    d.pre = STR_LIT("klingon");
    assert_int_equal(tok_vocab_build(&d, &v, &e), ERR_UNSUPPORTED);
    assert_non_null(strstr(e.text, "klingon"));
    d.pre = STR_LIT("gpt-2");
    d.n_merges = 0;
    assert_int_equal(tok_vocab_build(&d, &v, &e), ERR_FORMAT); // BPE needs merges
    tok_vocab_desc_init(&d, TOK_KIND_SPM);
    d.n_tokens = 0;
    assert_int_equal(tok_vocab_build(&d, &v, &e), ERR_FORMAT);
    // Special ids out of range fall back to the default (none here).
    d.n_tokens = 3;
    d.tokens = toks;
    d.bos = 99;
    assert_int_equal(tok_vocab_build(&d, &v, &e), 0);
    assert_int_equal(tok_vocab_bos(v), 1); // SPM default bos = 1
    tok_list l;
    tok_list_init(&l, 1);
    assert_int_equal(tok_tokenize(v, "ab ab", 5, 0, &l, &e), ERR_TOO_LARGE);
    tok_list_free(&l);
    tok_vocab_free(v);
}

/* ------------------------------------------------------------ threads, speed */

typedef struct job {
    const tok_vocab *v;
    const char *text;
    size_t len;
    tok_list out;
    int rc;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    err_msg e;
    tok_list_init(&j->out, 1u << 24);
    j->rc = tok_tokenize(j->v, j->text, j->len, 0, &j->out, &e);
    return NULL;
}

static char *big_text(size_t n)
{
    static const char *const parts[] = {
        "Hello world, it's 2024! ",
        "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE ",
        "\xF0\x9F\xA6\x99 ",
        "\xE6\x88\x91\xE6\x83\xB3 ",
        "  \n\t",
        "don't stop 12345 ",
        "caf\xC3\xA9 hello ",
    };
    char *t = malloc(n + 64);
    size_t o = 0;
    for (size_t k = 0; o < n; k++) {
        const char *p = parts[k % ARRAY_LEN(parts)];
        memcpy(t + o, p, strlen(p));
        o += strlen(p);
    }
    t[o] = 0;
    return t;
}

/* Tokenizes 100 KB twice on two threads at once; results must agree and be fast. */
static void check_vocab_speed_and_threads(const tok_vocab *v, const char *what)
{
    char *text = big_text(100 * 1024);
    size_t len = strlen(text);
    uint64_t t0 = clock_mono_ns();
    job a = {v, text, len, {0}, 0}, b = {v, text, len, {0}, 0};
    run_job(&a);
    uint64_t t1 = clock_mono_ns();
    pthread_t th[2];
    job c = {v, text, len, {0}, 0};
    assert_int_equal(pthread_create(&th[0], NULL, run_job, &b), 0);
    assert_int_equal(pthread_create(&th[1], NULL, run_job, &c), 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(c.rc, 0);
    assert_int_equal(a.out.n, b.out.n);
    assert_int_equal(a.out.n, c.out.n);
    assert_memory_equal(a.out.ids, b.out.ids, a.out.n * sizeof(tok_id));
    assert_memory_equal(a.out.ids, c.out.ids, a.out.n * sizeof(tok_id));
    double ms = (double)(t1 - t0) / 1e6;
    fprintf(stderr, "%s: %zu bytes -> %zu tokens in %.1f ms\n", what, len, a.out.n, ms);
    // "Well under a second" even on a loaded 2-core machine under ASan.
    assert_true(ms < 1000.0);
    tok_list_free(&a.out);
    tok_list_free(&b.out);
    tok_list_free(&c.out);
    free(text);
}

static void test_speed_in_memory(void **state)
{
    (void)state;
    tok_vocab *v = make_spm(); // one 100 KB fragment: the merge heap must be O(n log n)
    check_vocab_speed_and_threads(v, "spm (tiny vocab)");
    tok_vocab_free(v);
    v = make_bpe("llama-bpe");
    check_vocab_speed_and_threads(v, "bpe (tiny vocab)");
    tok_vocab_free(v);
}

static void test_speed_shared_vocabs(void **state)
{
    (void)state;
    const char *shared = getenv("FERRY_SHARED");
    static const char *const names[] = {"llama-spm", "gpt-2", "deepseek-llm", "bert-bge"};
    for (size_t i = 0; shared && i < ARRAY_LEN(names); i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer-tests/ggml-vocab-%s.gguf", shared, names[i]);
        gguf_file *f = NULL;
        err_msg e;
        if (gguf_open(path, &f, &e) != 0) {
            fprintf(stderr, "skipping %s: %s\n", path, e.text);
            continue;
        }
        tok_vocab *v = NULL;
        assert_int_equal(tok_vocab_from_gguf(f, &v, &e), 0);
        gguf_close(f); // the vocab must not refer to the file
        check_vocab_speed_and_threads(v, names[i]);
        // Round trip on valid UTF-8 (SPM strips its prefix space; WordPiece normalizes, skip it).
        if (tok_vocab_kind(v) != TOK_KIND_WPM) {
            static const char *const texts[] = {"Hello world", " x  y\n\tz",
                                                "caf\xC3\xA9 \xF0\x9F\xA6\x99"};
            for (size_t k = 0; k < ARRAY_LEN(texts); k++) {
                tok_list l;
                tokenize(v, texts[k], TOK_ADD_SPECIAL, &l);
                buf out;
                buf_init(&out, 1 << 16);
                assert_int_equal(tok_detokenize(v, l.ids, l.n, TOK_DEC_STRIP_SPACE, &out), 0);
                assert_string_equal(out.data ? out.data : "", texts[k]);
                buf_deinit(&out);
                tok_list_free(&l);
            }
        }
        tok_vocab_free(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_split),
        cmocka_unit_test(test_qwen2_split),
        cmocka_unit_test(test_gpt2_split),
        cmocka_unit_test(test_pre_split_rejects_bad_utf8),
        cmocka_unit_test(test_spm_merges_and_fallback),
        cmocka_unit_test(test_spm_special_tokens),
        cmocka_unit_test(test_decoder_streams_split_utf8),
        cmocka_unit_test(test_bpe_merges),
        cmocka_unit_test(test_wordpiece),
        cmocka_unit_test(test_build_refuses_bad_descriptions),
        cmocka_unit_test(test_speed_in_memory),
        cmocka_unit_test(test_speed_shared_vocabs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
