/*
 * Unit tests for model/embed (decoder embeddings) and llama_forward_hidden on
 * the real stories260K model (../shared): the hidden rows times the output
 * matrix are the logits llama_forward gives; a text's vector is unit length,
 * the mean of its hidden rows, and bitwise the same whatever the chunk size
 * (max_batch_tokens) and whatever else is embedded in the call; texts too long
 * are refused by embed_ids and cut by embed_texts; other architectures and
 * bad files are refused with a message. Skipped (passes with a message) when
 * ../shared is absent.
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

#include "model/embed.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/tensor.h"
#include "stories_fx.h"

/* llama_forward_hidden's last row · output matrix == llama_forward's logits. */
static void test_hidden_gives_logits(void **state)
{
    (void)state;
    if (!have_model())
        return;
    err_msg e;
    model *m;
    assert_int_equal(model_load(g_path, &m, &e), 0);
    const llama_hparams *hp = model_hparams(m);
    llama_config cfg = llama_config_default();
    cfg.max_batch_tokens = 16;
    cfg.max_logits = 1;
    cfg.max_ctx = 64;
    llama_ctx *c;
    llama_kv *kv;
    assert_int_equal(llama_ctx_new(m, &cfg, &c, &e), 0);
    assert_int_equal(llama_kv_new(m, 4, 16, &kv, &e), 0);
    int32_t table[4] = {0, 1, 2, 3};
    int32_t toks[9] = {1, 403, 407, 261, 378, 425, 350, 10, 200};
    float *hidden = malloc(9 * hp->dim * sizeof(float));
    float *logits = malloc(hp->n_vocab * sizeof(float));
    float *row = malloc(hp->dim * sizeof(float));
    llama_span sp = {toks, 9, 0, table, 4, 1};
    assert_int_equal(llama_forward_hidden(c, kv, &sp, 1, hidden, &e), 0);
    assert_int_equal(llama_forward(c, kv, &sp, 1, logits, &e), 0);
    const gguf_file *f = model_gguf(m);
    const gguf_tensor *out = gguf_tensor_find(f, "output.weight");
    if (!out)
        out = gguf_tensor_find(f, "token_embd.weight");
    assert_non_null(out);
    size_t rb = 0;
    assert_int_equal(tensor_row_bytes((tensor_type)out->type, hp->dim, &rb), 0);
    const float *h = hidden + 8 * hp->dim;
    double hn = 0;
    for (size_t d = 0; d < hp->dim; d++)
        hn += (double)h[d] * h[d];
    // rmsnorm with unit-ish weights: the rows are far from zero
    assert_true(hn > 1e-3);
    float lo = logits[0], hi = logits[0];
    for (size_t r = 0; r < hp->n_vocab; r++) {
        lo = fminf(lo, logits[r]);
        hi = fmaxf(hi, logits[r]);
    }
    for (size_t r = 0; r < hp->n_vocab; r++) {
        tensor_dequantize_row((tensor_type)out->type, (const uint8_t *)out->data + r * rb, row,
                              hp->dim);
        double s = 0;
        for (size_t d = 0; d < hp->dim; d++)
            s += (double)h[d] * row[d];
        assert_true(fabs(s - logits[r]) <= 1e-3 * (hi - lo));
    }
    // n_logits beyond max_logits is still refused
    sp.n_logits = 2;
    assert_int_equal(llama_forward_hidden(c, kv, &sp, 1, hidden, &e), ERR_INVAL);
    free(hidden);
    free(logits);
    free(row);
    llama_kv_free(kv);
    llama_ctx_free(c);
    model_unref(m);
}

static const char *TEXTS[3] = {"Once upon a time", "Lily and Tom went to the park to play.",
                               "The sun"};

static void test_decoder_embed(void **state)
{
    (void)state;
    if (!have_model())
        return;
    err_msg e;
    embed_model *a, *b;
    embed_config cfg = embed_config_default();
    assert_int_equal(embed_load(g_path, &cfg, &a, &e), 0);
    cfg.max_batch_tokens = 3; // the same texts in chunks of 3 tokens
    assert_int_equal(embed_load(g_path, &cfg, &b, &e), 0);
    assert_true(embed_is_decoder(a));
    assert_string_equal(embed_pooling(a), "last-mean");
    assert_string_equal(embed_arch(a), "llama");
    size_t dim = embed_dim(a);
    assert_int_equal(dim, 64);
    assert_int_equal(embed_n_ctx(a), 512);
    size_t lens[3], ntok[3], cut = 99;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(TEXTS[i]);
    float *va = malloc(3 * dim * sizeof(float)), *vb = malloc(3 * dim * sizeof(float));
    float *one = malloc(dim * sizeof(float));
    assert_int_equal(embed_texts(a, TEXTS, lens, 3, va, ntok, &cut, &e), 0);
    assert_int_equal(cut, 0);
    assert_true(ntok[0] >= 2 && ntok[1] > ntok[0]);
    assert_int_equal(embed_texts(b, TEXTS, lens, 3, vb, NULL, NULL, &e), 0);
    assert_memory_equal(va, vb, 3 * dim * sizeof(float));
    // alone == in the call
    assert_int_equal(embed_texts(a, &TEXTS[1], &lens[1], 1, one, NULL, NULL, &e), 0);
    assert_memory_equal(one, va + dim, dim * sizeof(float));
    double dot01 = 0;
    for (int i = 0; i < 3; i++) {
        double n2 = 0;
        for (size_t d = 0; d < dim; d++)
            n2 += (double)va[i * dim + d] * va[i * dim + d];
        assert_true(fabs(n2 - 1.0) < 1e-5);
    }
    for (size_t d = 0; d < dim; d++)
        dot01 += (double)va[d] * va[dim + d];
    assert_true(dot01 < 0.9999); // different texts, different vectors

    // the vector is the normalized mean of the hidden rows of the text's ids
    const int32_t ids[4] = {1, 403, 407, 261};
    const int32_t *idp = ids;
    size_t n4 = 4;
    assert_int_equal(embed_ids(a, &idp, &n4, 1, one, &e), 0);
    {
        model *m;
        assert_int_equal(model_load(g_path, &m, &e), 0);
        llama_config lc = llama_config_default();
        lc.max_batch_tokens = 4;
        lc.max_logits = 1;
        lc.max_ctx = 16;
        llama_ctx *c;
        llama_kv *kv;
        assert_int_equal(llama_ctx_new(m, &lc, &c, &e), 0);
        assert_int_equal(llama_kv_new(m, 1, 16, &kv, &e), 0);
        int32_t table[1] = {0};
        float h[4 * 64];
        llama_span sp = {ids, 4, 0, table, 1, 0};
        assert_int_equal(llama_forward_hidden(c, kv, &sp, 1, h, &e), 0);
        double mean[64], ss = 0;
        for (size_t d = 0; d < 64; d++) {
            mean[d] = ((double)h[d] + h[64 + d] + h[128 + d] + h[192 + d]) / 4;
            ss += mean[d] * mean[d];
        }
        for (size_t d = 0; d < 64; d++)
            assert_true(fabs(mean[d] / sqrt(ss) - one[d]) < 1e-6);
        llama_kv_free(kv);
        llama_ctx_free(c);
        model_unref(m);
    }

    // limits: ids past the context are refused, texts past it are cut
    size_t big = 600;
    int32_t *many = calloc(big, sizeof *many);
    for (size_t i = 0; i < big; i++)
        many[i] = 300;
    const int32_t *mp = many;
    assert_int_equal(embed_ids(a, &mp, &big, 1, one, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "600 tokens"));
    size_t zero = 0;
    assert_int_equal(embed_ids(a, &mp, &zero, 1, one, &e), ERR_INVAL);
    many[0] = 512; // outside the vocab of 512
    size_t three = 3;
    assert_int_equal(embed_ids(a, &mp, &three, 1, one, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "512"));
    char *text = malloc(4001);
    for (int i = 0; i < 4000; i++)
        text[i] = "ab cd "[i % 6];
    text[4000] = 0;
    const char *tp = text;
    size_t tl = 4000;
    assert_int_equal(embed_texts(a, &tp, &tl, 1, one, ntok, &cut, &e), 0);
    assert_int_equal(cut, 1);
    assert_int_equal(ntok[0], 512);
    free(text);
    free(many);
    free(va);
    free(vb);
    free(one);
    embed_free(a);
    embed_free(b);
}

/* Embeds texts[0..n) one call each into alone (n, dim). */
static void embed_each(embed_model *m, const char *const *texts, const size_t *lens, size_t n,
                       float *alone)
{
    err_msg e;
    size_t dim = embed_dim(m);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(embed_texts(m, &texts[i], &lens[i], 1, alone + i * dim, NULL, NULL, &e),
                         0);
}

/*
 * Packing: many texts in one call run several to a forward step (fewer steps
 * than texts), and every vector is bitwise the one of that text alone; with a
 * small context the KV blocks, not the tokens, end a step, and texts longer
 * than a step run alone in chunks among the packed ones.
 */
static void test_decoder_packed(void **state)
{
    (void)state;
    if (!have_model())
        return;
    enum { N = 40 };
    static const char *words[] = {"Once", "upon", "a",   "time", "Lily",  "saw",
                                  "a",    "big",  "red", "ball", "in",    "the",
                                  "park", "and",  "she", "was",  "happy."};
    char *buf[N];
    const char *texts[N];
    size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        // lengths 1..~140 words: texts 7, 19, 31 are longer than 64 tokens
        size_t nw = (i % 12 == 7) ? 40 + i : 1 + (i * 7) % 11;
        buf[i] = calloc(nw * 8 + 1, 1);
        size_t o = 0;
        for (size_t w = 0; w < nw; w++)
            o += (size_t)snprintf(buf[i] + o, 8, "%s ", words[(i + w * 3) % 17]);
        texts[i] = buf[i];
        lens[i] = o;
    }
    err_msg e;
    embed_config cfg[2] = {embed_config_default(), embed_config_default()};
    cfg[1].max_batch_tokens = 64; // steps of 64 tokens, 8 KV blocks of 16
    cfg[1].max_ctx = 128;
    float *ref = NULL;
    for (int c = 0; c < 2; c++) {
        embed_model *m;
        assert_int_equal(embed_load(g_path, &cfg[c], &m, &e), 0);
        size_t dim = embed_dim(m);
        float *all = malloc(N * dim * sizeof(float)), *alone = malloc(N * dim * sizeof(float));
        size_t ntok[N], cut = 99, longest = 0;
        size_t s0 = embed_forward_steps(m);
        assert_int_equal(embed_texts(m, texts, lens, N, all, ntok, &cut, &e), 0);
        size_t steps = embed_forward_steps(m) - s0;
        assert_int_equal(cut, 0);
        for (size_t i = 0; i < N; i++)
            longest = MAX(longest, ntok[i]);
        if (c == 1)
            assert_true(longest > 64 && longest <= 128);
        // packed: far fewer steps than texts (one step per text before packing)
        assert_true(steps < (c == 0 ? N / 4 : N / 2));
        s0 = embed_forward_steps(m);
        embed_each(m, texts, lens, N, alone);
        assert_true(embed_forward_steps(m) - s0 >= N);
        assert_memory_equal(all, alone, N * dim * sizeof(float));
        if (c == 0)
            ref = all;
        else {
            assert_memory_equal(all, ref, N * dim * sizeof(float)); // and across step sizes
            free(all);
        }
        free(alone);
        embed_free(m);
    }
    free(ref);
    for (size_t i = 0; i < N; i++)
        free(buf[i]);
}

static void test_load_errors(void **state)
{
    (void)state;
    err_msg e;
    embed_model *m = NULL;
    assert_true(embed_load("/nonexistent/x.gguf", NULL, &m, &e) < 0);
    assert_null(m);
    assert_non_null(strstr(e.text, "/nonexistent/x.gguf"));
    // a vocab-only GGUF of another architecture is refused by name
    char tmp[] = "/tmp/ferry-embed-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", STR_LIT("gpt9")), 0);
    FILE *fp = fopen(tmp, "wb");
    assert_non_null(fp);
    assert_int_equal(gguf_writer_write_file(w, fp, NULL, 0, &e), 0);
    fclose(fp);
    gguf_writer_free(w);
    assert_int_equal(embed_load(tmp, NULL, &m, &e), ERR_UNSUPPORTED);
    assert_non_null(strstr(e.text, "gpt9"));
    unlink(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hidden_gives_logits),
        cmocka_unit_test(test_decoder_embed),
        cmocka_unit_test(test_decoder_packed),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
