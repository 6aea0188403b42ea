/*
 * Unit tests for rag collections with the built-in lexical embedder: upsert,
 * get, delete, queries in the three modes (the right document first), filter,
 * min_score, save/load round trip and refusal of damaged files.
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
#include <unistd.h>

#include "rag/rag.h"

static const struct {
    const char *id, *text, *meta;
} DOCS[] = {
    {"cats", "# Cats\nCats are small domesticated felines. A cat sleeps most of the day.\n\n"
             "Cats purr when they are content.",
     "{\"topic\":\"animals\"}"},
    {"rust", "# Rust\nRust is a systems programming language. The borrow checker prevents data "
             "races.",
     "{\"topic\":\"code\"}"},
    {"beijing", "北京是中国的首都。北京的天气在秋天很好。故宫在北京。", "{\"topic\":\"city\"}"},
    {"ocean", "The ocean covers most of the planet. Whales live in the ocean.",
     "{\"topic\":\"nature\"}"},
};

static rag_collection *make(void)
{
    rag_embedder emb = rag_embedder_lexical();
    rag_collection_config cfg = rag_collection_config_default();
    cfg.chunk.max_tokens = 24;
    cfg.chunk.overlap_tokens = 4;
    rag_collection *c;
    err_msg e;
    assert_int_equal(rag_collection_new("kb", &cfg, &emb, &c, &e), 0);
    for (size_t i = 0; i < sizeof DOCS / sizeof DOCS[0]; i++) {
        size_t nc = 0, nt = 0;
        assert_int_equal(rag_collection_upsert(c, DOCS[i].id, DOCS[i].text, strlen(DOCS[i].text),
                                               DOCS[i].meta, strlen(DOCS[i].meta), &nc, &nt, &e),
                         0);
        assert_true(nc >= 1);
        assert_true(nt >= 5);
    }
    return c;
}

static void expect_top(rag_collection *c, const char *q, rag_mode mode, const char *doc)
{
    rag_query rq = {q, strlen(q), 3, mode, -INFINITY, NULL, NULL};
    rag_result r[3];
    err_msg e;
    int n = rag_collection_query(c, &rq, r, &e);
    assert_true(n >= 1);
    if (strcmp(r[0].doc_id, doc) != 0)
        fail_msg("query \"%s\" (%s): top is %s, expected %s", q, rag_mode_name(mode),
                 r[0].doc_id, doc);
    // the result's text is the chunk span of its document
    rag_doc_view v;
    assert_int_equal(rag_collection_get(c, r[0].doc_id, &v), 0);
    assert_ptr_equal(r[0].text, v.text + r[0].off);
    assert_true(r[0].off + r[0].len <= v.text_len);
    for (int i = 1; i < n; i++)
        assert_true(r[i].score <= r[i - 1].score);
}

static void test_queries(void **state)
{
    (void)state;
    rag_collection *c = make();
    assert_int_equal(rag_collection_doc_count(c), 4);
    rag_mode modes[] = {RAG_MODE_VECTOR, RAG_MODE_KEYWORD, RAG_MODE_HYBRID};
    for (int m = 0; m < 3; m++) {
        expect_top(c, "why does a cat purr", modes[m], "cats");
        expect_top(c, "borrow checker in rust", modes[m], "rust");
        expect_top(c, "北京的天气", modes[m], "beijing");
        expect_top(c, "whales in the ocean", modes[m], "ocean");
    }
    rag_mode pm;
    assert_int_equal(rag_mode_parse("hybrid", &pm), 0);
    assert_int_equal(pm, RAG_MODE_HYBRID);
    assert_int_equal(rag_mode_parse("fuzzy", &pm), ERR_INVAL);
    rag_collection_free(c);
}

static bool topic_code(void *ctx, const rag_doc_view *d)
{
    (void)ctx;
    return d->meta && strstr(d->meta, "\"code\"") != NULL;
}

static void test_filter_min_score_delete(void **state)
{
    (void)state;
    rag_collection *c = make();
    err_msg e;
    rag_result r[4];
    // a filter keeps only documents it accepts, in every mode
    for (int m = 0; m < 3; m++) {
        rag_query q = {"cat ocean rust", 14, 4, (rag_mode)m, -INFINITY, topic_code, NULL};
        int n = rag_collection_query(c, &q, r, &e);
        assert_true(n >= 1);
        for (int i = 0; i < n; i++)
            assert_string_equal(r[i].doc_id, "rust");
    }
    // min_score drops weak keyword matches
    rag_query q = {"cat", 3, 4, RAG_MODE_KEYWORD, 1000.0, NULL, NULL};
    assert_int_equal(rag_collection_query(c, &q, r, &e), 0);
    q.top_k = 0;
    assert_int_equal(rag_collection_query(c, &q, r, &e), ERR_INVAL);
    // delete removes a document and its chunks from both indexes
    size_t before = rag_collection_chunk_count(c);
    rag_doc_view v;
    assert_int_equal(rag_collection_get(c, "cats", &v), 0);
    size_t cat_chunks = v.n_chunks;
    assert_int_equal(rag_collection_delete(c, "cats"), 0);
    assert_int_equal(rag_collection_delete(c, "cats"), ERR_NOT_FOUND);
    assert_int_equal(rag_collection_get(c, "cats", &v), ERR_NOT_FOUND);
    assert_int_equal(rag_collection_chunk_count(c), before - cat_chunks);
    for (int m = 0; m < 3; m++) {
        rag_query q2 = {"cat purr", 8, 4, (rag_mode)m, -INFINITY, NULL, NULL};
        int n = rag_collection_query(c, &q2, r, &e);
        for (int i = 0; i < n; i++)
            assert_string_not_equal(r[i].doc_id, "cats");
    }
    // upsert replaces: the old text is gone from keyword search
    const char *t = "Rust also names the oxidation of iron.";
    assert_int_equal(rag_collection_upsert(c, "rust", t, strlen(t), NULL, 0, NULL, NULL, &e), 0);
    assert_int_equal(rag_collection_doc_count(c), 3);
    rag_query q3 = {"borrow checker", 14, 4, RAG_MODE_KEYWORD, -INFINITY, NULL, NULL};
    assert_int_equal(rag_collection_query(c, &q3, r, &e), 0);
    assert_int_equal(rag_collection_get(c, "rust", &v), 0);
    assert_null(v.meta);
    // bad ids and names
    assert_int_equal(rag_collection_upsert(c, "", "x", 1, NULL, 0, NULL, NULL, &e), ERR_INVAL);
    rag_embedder emb = rag_embedder_lexical();
    rag_collection_config cfg = rag_collection_config_default();
    rag_collection *bad;
    assert_int_equal(rag_collection_new("../etc", &cfg, &emb, &bad, &e), ERR_INVAL);
    rag_collection_free(c);
}

static void test_save_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-rag-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    rag_collection *c = make();
    err_msg e;
    // a replaced document gets newer chunk labels than the documents after it
    const char *t = "Rust is a language. Its borrow checker prevents data races. Cargo builds.";
    assert_int_equal(rag_collection_upsert(c, "rust", t, strlen(t), "{\"topic\":\"code\"}", 16,
                                           NULL, NULL, &e),
                     0);
    assert_int_equal(rag_collection_save(c, dir, &e), 0);
    rag_embedder emb = rag_embedder_lexical();
    rag_collection *d;
    assert_int_equal(rag_collection_load(dir, "kb", &emb, &d, &e), 0);
    assert_int_equal(rag_collection_doc_count(d), rag_collection_doc_count(c));
    assert_int_equal(rag_collection_chunk_count(d), rag_collection_chunk_count(c));
    // same results, same chunk ids and scores, in every mode
    for (int m = 0; m < 3; m++) {
        rag_query q = {"北京 cat ocean", strlen("北京 cat ocean"), 4, (rag_mode)m, -INFINITY, NULL,
                       NULL};
        rag_result a[4], b[4];
        int na = rag_collection_query(c, &q, a, &e), nb = rag_collection_query(d, &q, b, &e);
        assert_int_equal(na, nb);
        for (int i = 0; i < na; i++) {
            assert_int_equal(a[i].chunk_id, b[i].chunk_id);
            assert_float_equal(a[i].score, b[i].score, 1e-6);
        }
    }
    rag_doc_view v;
    assert_int_equal(rag_collection_get(d, "beijing", &v), 0);
    assert_string_equal(v.meta, "{\"topic\":\"city\"}");
    // an upsert after load gets a fresh chunk id
    assert_int_equal(rag_collection_upsert(d, "new", "Fresh text here.", 16, NULL, 0, NULL, NULL,
                                           &e),
                     0);
    rag_collection_free(d);

    // a different embedder is refused
    rag_embedder other = emb;
    other.dim = 128;
    assert_int_equal(rag_collection_load(dir, "kb", &other, &d, &e), ERR_FORMAT);
    // a truncated docs file is refused with a clear error
    char path[512];
    snprintf(path, sizeof path, "%s/kb.docs", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, sz - 9), 0);
    assert_int_equal(rag_collection_load(dir, "kb", &emb, &d, &e), ERR_FORMAT);
    assert_non_null(strstr(e.text, "kb.docs"));
    // a missing collection
    assert_int_equal(rag_collection_load(dir, "nope", &emb, &d, &e), ERR_IO);
    rag_collection_free(c);
    snprintf(path, sizeof path, "%s/kb.docs", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/kb.hnsw", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queries),
        cmocka_unit_test(test_filter_min_score_delete),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
