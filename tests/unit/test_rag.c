/*
 * Unit tests for rag: sentence rules (English and Chinese), chunk boundaries,
 * BM25 on a hand-computed example, reciprocal rank fusion order; and the
 * model/lex terms and lexical embedder they rely on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lex.h"
#include "rag/rag.h"

static size_t ends_of(const char *s, size_t *ends, size_t cap)
{
    return rag_sentence_ends(s, strlen(s), ends, cap);
}

/* The sentence i of s as a NUL-terminated copy (static buffer). */
static const char *sentence(const char *s, const size_t *ends, size_t i)
{
    static char b[512];
    size_t a = i ? ends[i - 1] : 0;
    while (s[a] == ' ' || s[a] == '\n')
        a++;
    snprintf(b, sizeof b, "%.*s", (int)(ends[i] - a), s + a);
    return b;
}

static void test_sentences_english(void **state)
{
    (void)state;
    size_t e[16];
    const char *s = "Dr. Smith paid $3.50 at 10 a.m. today. He left! Did he? Yes.";
    assert_int_equal(ends_of(s, e, 16), 4);
    assert_string_equal(sentence(s, e, 0), "Dr. Smith paid $3.50 at 10 a.m. today.");
    assert_string_equal(sentence(s, e, 1), "He left!");
    assert_string_equal(sentence(s, e, 2), "Did he?");
    assert_string_equal(sentence(s, e, 3), "Yes.");

    const char *t = "Use tools, e.g. hammers. J. Smith said \"stop.\" Then (he went.) Pi is 3.14159 "
                    "and more";
    assert_int_equal(ends_of(t, e, 16), 4);
    assert_string_equal(sentence(t, e, 0), "Use tools, e.g. hammers.");
    assert_string_equal(sentence(t, e, 1), "J. Smith said \"stop.\"");
    assert_string_equal(sentence(t, e, 2), "Then (he went.)");
    assert_string_equal(sentence(t, e, 3), "Pi is 3.14159 and more"); // no terminator: to the end
    assert_int_equal(ends_of("Wait... what?! ok", e, 16), 3);
    assert_int_equal(ends_of("   ", e, 16), 0);
}

static void test_sentences_chinese(void **state)
{
    (void)state;
    size_t e[16];
    const char *s = "今天天气很好。我们去公园吧！你来吗？好的；走";
    assert_int_equal(ends_of(s, e, 16), 5);
    assert_string_equal(sentence(s, e, 0), "今天天气很好。");
    assert_string_equal(sentence(s, e, 1), "我们去公园吧！");
    assert_string_equal(sentence(s, e, 2), "你来吗？");
    assert_string_equal(sentence(s, e, 3), "好的；");
    assert_string_equal(sentence(s, e, 4), "走");
    const char *q = "他说：“你好。”然后走了。English too. 再见";
    assert_int_equal(ends_of(q, e, 16), 4);
    assert_string_equal(sentence(q, e, 0), "他说：“你好。”");
    assert_string_equal(sentence(q, e, 1), "然后走了。");
    assert_string_equal(sentence(q, e, 2), "English too.");
    assert_string_equal(sentence(q, e, 3), "再见");
    // a cap smaller than the count still counts them all
    assert_int_equal(rag_sentence_ends(s, strlen(s), e, 2), 5);
}

/* Checks the invariants every chunking must hold. */
static void check_chunks(const char *doc, const rag_chunk *c, size_t n, size_t budget)
{
    size_t len = strlen(doc);
    for (size_t i = 0; i < n; i++) {
        assert_true(c[i].len > 0);
        assert_true(c[i].off + c[i].len <= len);
        assert_true(c[i].n_tokens <= budget);
        assert_int_equal(c[i].n_tokens, rag_approx_tokens(doc + c[i].off, c[i].len));
        assert_true(doc[c[i].off] != ' ' && doc[c[i].off] != '\n');
        if (i)
            assert_true(c[i].off > c[i - 1].off); // progress
    }
}

static void test_chunks_english(void **state)
{
    (void)state;
    const char *doc = "# Intro\n"
                      "Ferry serves models. It also routes requests. Caches help a lot.\n"
                      "\n"
                      "Second paragraph starts here. It has two sentences.\n"
                      "\n"
                      "## Details\n"
                      "Chunking keeps offsets. Every chunk knows its document. Overlap repeats "
                      "the last sentence. Budgets are in tokens.\n";
    rag_chunk_config cfg = rag_chunk_config_default();
    cfg.max_tokens = 16;
    cfg.overlap_tokens = 6;
    rag_chunk *c;
    size_t n;
    assert_int_equal(rag_chunk_text(doc, strlen(doc), &cfg, &c, &n, NULL), 0);
    check_chunks(doc, c, n, cfg.max_tokens);
    assert_true(n >= 4);
    // the first chunk starts with the heading, the "## Details" heading starts a chunk
    assert_memory_equal(doc + c[0].off, "# Intro\nFerry serves models.", 28);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (strncmp(doc + c[i].off, "## Details", 10) == 0)
            found = true;
    assert_true(found);
    // every chunk ends at a sentence end or a heading line's end
    for (size_t i = 0; i < n; i++) {
        char last = doc[c[i].off + c[i].len - 1];
        assert_true(last == '.' || last == 's' /* "# Intro"/"## Details" end in a letter */ ||
                    last == 'o');
    }
    // overlap: within the Details section consecutive chunks share a sentence
    size_t shared = 0;
    for (size_t i = 1; i < n; i++)
        if (c[i].off < c[i - 1].off + c[i - 1].len)
            shared++;
    assert_true(shared >= 1);
    free(c);

    // no overlap: chunks tile the sentences without sharing
    cfg.overlap_tokens = 0;
    assert_int_equal(rag_chunk_text(doc, strlen(doc), &cfg, &c, &n, NULL), 0);
    for (size_t i = 1; i < n; i++)
        assert_true(c[i].off >= c[i - 1].off + c[i - 1].len);
    free(c);

    // bad budgets and empty text
    cfg.max_tokens = 4;
    assert_int_equal(rag_chunk_text(doc, strlen(doc), &cfg, &c, &n, NULL), ERR_INVAL);
    cfg.max_tokens = 16;
    cfg.overlap_tokens = 8;
    assert_int_equal(rag_chunk_text(doc, strlen(doc), &cfg, &c, &n, NULL), ERR_INVAL);
    cfg.overlap_tokens = 0;
    assert_int_equal(rag_chunk_text(" \n\n ", 4, &cfg, &c, &n, NULL), 0);
    assert_int_equal(n, 0);
    free(c);
}

/* Regressions: an overlong heading line (fuzz) is cut to the budget; a 1 MiB sentence without
 * punctuation is chunked in linear time (the splitter once recounted the piece per term). */
static void test_chunks_overlong(void **state)
{
    (void)state;
    size_t n1 = 200 * 6 + 2, n2 = (size_t)1 << 20;
    char *h = malloc(n1 + 1), *big = malloc(n2 + 1);
    assert_non_null(h);
    assert_non_null(big);
    memcpy(h, "# ", 2);
    for (size_t i = 2; i + 6 <= n1; i += 6)
        memcpy(h + i, "word. ", 6);
    h[n1] = 0;
    for (size_t i = 0; i < n2; i++)
        big[i] = i % 5 == 4 ? ' ' : 'a';
    big[n2] = 0;
    rag_chunk_config cfg = rag_chunk_config_default();
    cfg.max_tokens = 40;
    cfg.overlap_tokens = 4;
    rag_chunk *c;
    size_t n;
    assert_int_equal(rag_chunk_text(h, strlen(h), &cfg, &c, &n, NULL), 0);
    check_chunks(h, c, n, cfg.max_tokens);
    assert_true(n >= 5);
    free(c);
    assert_int_equal(rag_chunk_text(big, n2, &cfg, &c, &n, NULL), 0);
    check_chunks(big, c, n, cfg.max_tokens);
    assert_true(n >= n2 / 5 / 40);
    free(c);
    free(h);
    free(big);
}

static void test_chunks_chinese(void **state)
{
    (void)state;
    // 6 sentences of 9-10 characters (tokens) each
    const char *doc = "北京今天的天气很好。上海明天可能下雨。广州一直都很热！"
                      "深圳的科技公司很多。杭州的西湖很美丽？成都的火锅很好吃。";
    rag_chunk_config cfg = rag_chunk_config_default();
    cfg.max_tokens = 24;
    cfg.overlap_tokens = 10;
    rag_chunk *c;
    size_t n;
    assert_int_equal(rag_chunk_text(doc, strlen(doc), &cfg, &c, &n, NULL), 0);
    check_chunks(doc, c, n, cfg.max_tokens);
    assert_true(n >= 3);
    size_t e[16];
    size_t ne = ends_of(doc, e, 16);
    assert_int_equal(ne, 6);
    for (size_t i = 0; i < n; i++) {
        // starts at a sentence start and ends at a sentence end
        bool starts = c[i].off == 0, ends = false;
        for (size_t k = 0; k < ne; k++) {
            if (e[k] == c[i].off)
                starts = true;
            if (e[k] == c[i].off + c[i].len)
                ends = true;
        }
        assert_true(starts);
        assert_true(ends);
    }
    assert_memory_equal(doc + c[0].off, "北京今天的天气很好。上海明天可能下雨。", c[0].len);
    // with overlap 10 the second chunk repeats the first chunk's last sentence
    assert_memory_equal(doc + c[1].off, "上海明天可能下雨。", strlen("上海明天可能下雨。"));
    free(c);

    // one sentence longer than the budget is cut at term (character) boundaries
    const char *longs = "一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十。";
    cfg.max_tokens = 10;
    cfg.overlap_tokens = 0;
    assert_int_equal(rag_chunk_text(longs, strlen(longs), &cfg, &c, &n, NULL), 0);
    check_chunks(longs, c, n, cfg.max_tokens);
    assert_true(n >= 3);
    free(c);
}

/*
 * BM25, k1 = 1.2, b = 0.75, by hand. Documents (terms):
 *   1: "cat sat mat"  (|D| = 3)     2: "cat cat dog" (|D| = 3)     3: "dog runs" (|D| = 2)
 * N = 3, avgdl = 8/3.
 * idf(cat) = idf(dog) = ln(1 + (3 - 2 + 0.5)/(2 + 0.5)) = ln 1.6 = 0.4700036
 * idf(runs) = ln(1 + (3 - 1 + 0.5)/(1 + 0.5)) = ln(8/3) = 0.9808293
 * norm(|D| = 3) = 1 - 0.75 + 0.75 * 3/(8/3) = 1.09375;  norm(|D| = 2) = 0.8125
 * query "cat":
 *   doc 1: 0.4700036 * 1 * 2.2 / (1 + 1.2 * 1.09375) = 0.4700036 * 2.2 / 2.3125 = 0.4471386
 *   doc 2: 0.4700036 * 2 * 2.2 / (2 + 1.3125)        = 0.4700036 * 4.4 / 3.3125 = 0.6243067
 *   -> [2, 1]
 * query "Dog RUNS" (lower-cased):
 *   doc 2: dog only, as doc 1 for cat = 0.4471386
 *   doc 3: (0.4700036 + 0.9808293) * 2.2 / (1 + 1.2 * 0.8125) = 1.4508329 * 2.2 / 1.975
 *          = 1.6161176
 *   -> [3, 2]
 */
static void test_bm25_hand(void **state)
{
    (void)state;
    rag_bm25_config cfg = rag_bm25_config_default();
    assert_true(cfg.k1 == 1.2 && cfg.b == 0.75);
    rag_bm25 *x;
    assert_int_equal(rag_bm25_new(&cfg, &x, NULL), 0);
    assert_int_equal(rag_bm25_add(x, 1, "cat sat mat", 11), 0);
    assert_int_equal(rag_bm25_add(x, 2, "Cat, cat; dog.", 14), 0);
    assert_int_equal(rag_bm25_add(x, 3, "dog runs", 8), 0);
    assert_int_equal(rag_bm25_count(x), 3);
    rag_hit h[4];
    assert_int_equal(rag_bm25_search(x, "cat", 3, 4, NULL, h), 2);
    assert_int_equal(h[0].label, 2);
    assert_float_equal(h[0].score, 0.6243067, 1e-6);
    assert_int_equal(h[1].label, 1);
    assert_float_equal(h[1].score, 0.4471386, 1e-6);
    assert_int_equal(rag_bm25_search(x, "Dog RUNS", 8, 4, NULL, h), 2);
    assert_int_equal(h[0].label, 3);
    assert_float_equal(h[0].score, 1.6161176, 1e-6);
    assert_int_equal(h[1].label, 2);
    assert_float_equal(h[1].score, 0.4471386, 1e-6);
    // k limits, unknown terms score nothing
    assert_int_equal(rag_bm25_search(x, "cat", 3, 1, NULL, h), 1);
    assert_int_equal(h[0].label, 2);
    assert_int_equal(rag_bm25_search(x, "zebra", 5, 4, NULL, h), 0);
    assert_int_equal(rag_bm25_search(x, "cat", 3, 0, NULL, h), ERR_INVAL);
    // removal changes N and avgdl: now docs 1 and 3, "cat" only in doc 1
    assert_int_equal(rag_bm25_remove(x, 2), 0);
    assert_int_equal(rag_bm25_remove(x, 2), ERR_NOT_FOUND);
    assert_int_equal(rag_bm25_search(x, "cat", 3, 4, NULL, h), 1);
    assert_int_equal(h[0].label, 1);
    // re-adding (upsert) replaces a document's text
    assert_int_equal(rag_bm25_add(x, 1, "dog", 3), 0);
    assert_int_equal(rag_bm25_count(x), 2);
    assert_int_equal(rag_bm25_search(x, "cat", 3, 4, NULL, h), 0);
    rag_bm25_free(x);
}

/* Many labels through the open-addressing label map: add, remove every third, re-add some. */
static void test_bm25_many(void **state)
{
    (void)state;
    rag_bm25_config cfg = rag_bm25_config_default();
    rag_bm25 *x;
    assert_int_equal(rag_bm25_new(&cfg, &x, NULL), 0);
    char t[64], q[32];
    for (uint64_t i = 0; i < 3000; i++) {
        int k = snprintf(t, sizeof t, "w%llu common", (unsigned long long)(i * 7919));
        assert_int_equal(rag_bm25_add(x, i * 7919, t, (size_t)k), 0);
    }
    for (uint64_t i = 0; i < 3000; i += 3)
        assert_int_equal(rag_bm25_remove(x, i * 7919), 0);
    for (uint64_t i = 0; i < 3000; i += 9) {
        int k = snprintf(t, sizeof t, "w%llu again", (unsigned long long)(i * 7919));
        assert_int_equal(rag_bm25_add(x, i * 7919, t, (size_t)k), 0);
    }
    assert_int_equal(rag_bm25_count(x), 2000 + 334);
    rag_hit h[2];
    for (uint64_t i = 0; i < 3000; i++) {
        int k = snprintf(q, sizeof q, "w%llu", (unsigned long long)(i * 7919));
        int n = rag_bm25_search(x, q, (size_t)k, 2, NULL, h);
        bool present = i % 3 != 0 || i % 9 == 0;
        assert_int_equal(n, present ? 1 : 0);
        if (present)
            assert_int_equal(h[0].label, i * 7919);
        assert_int_equal(rag_bm25_remove(x, i * 7919), present ? 0 : ERR_NOT_FOUND);
    }
    assert_int_equal(rag_bm25_count(x), 0);
    rag_bm25_free(x);
}

static bool only_even(void *ctx, uint64_t label)
{
    (void)ctx;
    return label % 2 == 0;
}

/*
 * CJK: character bigrams. Docs 1 "北京天气很好" (bigrams 北京 京天 天气 气很 很好, |D| = 5),
 * 2 "上海天气" (上海 海天 天气, |D| = 3); N = 2, avgdl = 4. Query "天气": n = 2,
 * idf = ln(1 + 0.5/2.5) = ln 1.2 = 0.1823216
 *   doc 1: 0.1823216 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 5/4)) = 0.1654051
 *   doc 2: 0.1823216 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3/4)) = 0.2030924   -> [2, 1]
 */
static void test_bm25_cjk(void **state)
{
    (void)state;
    rag_bm25_config cfg = rag_bm25_config_default();
    rag_bm25 *x;
    assert_int_equal(rag_bm25_new(&cfg, &x, NULL), 0);
    const char *d1 = "北京天气很好", *d2 = "上海天气";
    assert_int_equal(rag_bm25_add(x, 1, d1, strlen(d1)), 0);
    assert_int_equal(rag_bm25_add(x, 2, d2, strlen(d2)), 0);
    rag_hit h[4];
    assert_int_equal(rag_bm25_search(x, "天气", strlen("天气"), 4, NULL, h), 2);
    assert_int_equal(h[0].label, 2);
    assert_float_equal(h[0].score, 0.2030924, 1e-6);
    assert_int_equal(h[1].label, 1);
    assert_float_equal(h[1].score, 0.1654051, 1e-6);
    // "北京" matches only doc 1; a lone "京" character is not an index term of doc 1
    assert_int_equal(rag_bm25_search(x, "北京?", strlen("北京?"), 4, NULL, h), 1);
    assert_int_equal(h[0].label, 1);
    assert_int_equal(rag_bm25_search(x, "京", strlen("京"), 4, NULL, h), 0);
    // filter
    vec_filter f = {only_even, NULL};
    assert_int_equal(rag_bm25_search(x, "天气", strlen("天气"), 4, &f, h), 1);
    assert_int_equal(h[0].label, 2);
    rag_bm25_free(x);
}

/*
 * RRF, k = 60: a = [10, 20, 30], b = [30, 10, 40]
 *   10: 1/61 + 1/62 = 0.0325217   30: 1/63 + 1/61 = 0.0322664
 *   20: 1/62 = 0.0161290          40: 1/63 = 0.0158730      -> [10, 30, 20, 40]
 */
static void test_rrf(void **state)
{
    (void)state;
    rag_hit a[] = {{10, 0.9}, {20, 0.5}, {30, 0.1}}, b[] = {{30, 5}, {10, 4}, {40, 3}}, o[8];
    assert_int_equal(rag_rrf(a, 3, b, 3, RAG_RRF_K, 8, o), 4);
    uint64_t want[] = {10, 30, 20, 40};
    for (int i = 0; i < 4; i++)
        assert_int_equal(o[i].label, want[i]);
    assert_float_equal(o[0].score, 1.0 / 61 + 1.0 / 62, 1e-12);
    assert_float_equal(o[3].score, 1.0 / 63, 1e-12);
    assert_int_equal(rag_rrf(a, 3, b, 3, RAG_RRF_K, 2, o), 2);
    assert_int_equal(rag_rrf(a, 0, b, 0, RAG_RRF_K, 2, o), 0);
    // equal fused scores tie by smaller label
    rag_hit c[] = {{7, 1}}, d[] = {{3, 1}};
    assert_int_equal(rag_rrf(c, 1, d, 1, RAG_RRF_K, 2, o), 2);
    assert_int_equal(o[0].label, 3);
}

static float dotf(const float *a, const float *b, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void test_lex(void **state)
{
    (void)state;
    const char *s = "Hello, WORLD! 你好世界 café42";
    size_t pos = 0;
    lex_term t;
    const char *want[] = {"Hello", "WORLD", "你", "好", "世", "界", "café42"};
    for (size_t i = 0; i < 7; i++) {
        assert_true(lex_next(s, strlen(s), &pos, &t));
        assert_int_equal(t.len, strlen(want[i]));
        assert_memory_equal(s + t.off, want[i], t.len);
        assert_int_equal(t.is_cjk, i >= 2 && i <= 5);
    }
    assert_false(lex_next(s, strlen(s), &pos, &t));
    char low[16];
    assert_int_equal(lex_lower("ÉCOLE", strlen("ÉCOLE"), low, sizeof low), strlen("école"));
    assert_memory_equal(low, "école", strlen("école"));

    float a[LEX_EMBED_DIM], b[LEX_EMBED_DIM], c[LEX_EMBED_DIM], d[LEX_EMBED_DIM];
    const char *x = "The cat sat on the mat", *y = "the cats sat on a mat", *z = "Stock prices fell";
    lex_embed(x, strlen(x), a, LEX_EMBED_DIM);
    lex_embed(y, strlen(y), b, LEX_EMBED_DIM);
    lex_embed(z, strlen(z), c, LEX_EMBED_DIM);
    assert_float_equal(dotf(a, a, LEX_EMBED_DIM), 1.0, 1e-5);
    assert_true(dotf(a, b, LEX_EMBED_DIM) > 0.5);
    assert_true(fabsf(dotf(a, c, LEX_EMBED_DIM)) < 0.3);
    lex_embed(x, strlen(x), d, LEX_EMBED_DIM); // deterministic
    assert_memory_equal(a, d, sizeof a);
    const char *p = "北京天气很好", *q = "北京的天气", *r = "上海股票下跌";
    lex_embed(p, strlen(p), a, LEX_EMBED_DIM);
    lex_embed(q, strlen(q), b, LEX_EMBED_DIM);
    lex_embed(r, strlen(r), c, LEX_EMBED_DIM);
    assert_true(dotf(a, b, LEX_EMBED_DIM) > dotf(a, c, LEX_EMBED_DIM) + 0.3f);
    lex_embed("", 0, a, LEX_EMBED_DIM);
    assert_float_equal(dotf(a, a, LEX_EMBED_DIM), 0.0, 0);
    assert_int_equal(lex_count_terms(s, strlen(s)), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentences_english), cmocka_unit_test(test_sentences_chinese),
        cmocka_unit_test(test_chunks_english),    cmocka_unit_test(test_chunks_chinese),
        cmocka_unit_test(test_chunks_overlong),   cmocka_unit_test(test_bm25_many),
        cmocka_unit_test(test_bm25_hand),         cmocka_unit_test(test_bm25_cjk),
        cmocka_unit_test(test_rrf),               cmocka_unit_test(test_lex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
