/*
 * Unit tests for model/llama on the real stories260K model (../shared): greedy
 * ids against the reference file, bitwise batch invariance (alone vs batched
 * with three others, chunked prefill, thread count), span validation, and
 * refusal of bad files. Skipped (passes with a message) when ../shared is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/pool.h"
#include "model/llama.h"
#include "stories_fx.h"

/* Identity block tables: sequence s owns blocks [s*per, (s+1)*per). */
enum { NSEQ = 4, BT = 16, PER = 8 };  // 8 blocks of 16 = 128 positions per sequence

static void fx_init(fixture *f, pool *p, size_t max_batch)
{
    fx_open(f, NSEQ, PER, BT, LLAMA_KV_F16, max_batch, max_batch < 64 ? max_batch : 64, p);
}

static void test_greedy_matches_reference(void **state)
{
    (void)state;
    if (!have_model())
        return;
    fixture f;
    fx_init(&f, NULL, 64);
    const llama_hparams *hp = model_hparams(f.m);
    assert_int_equal(hp->n_vocab, 512);
    assert_int_equal(hp->n_layer, 5);
    assert_true(hp->is_tied_output == false);  // the converter wrote output.weight
    // "Once upon a time" -> [1, 403, 407, 261, 378], greedy from greedy-reference.json
    int32_t seq[32] = {1, 403, 407, 261, 378};
    static const int32_t want[] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                                   401, 396, 267, 337, 410, 408, 419, 292};
    float *logits = malloc(f.V * sizeof(float));
    err_msg e;
    llama_span sp = {seq, 5, 0, f.table[0], PER, 1};
    size_t n = 5;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), 0);
        seq[n] = argmax(logits, f.V);
        assert_int_equal(seq[n], want[i]);
        sp.tokens = &seq[n];
        sp.n = 1;
        sp.pos = n;
        n++;
    }
    free(logits);
    fx_free(&f);
}

/* Runs sequence 0 = prompt A (prefill in chunks of `chunk`, then `steps` greedy
 * decode steps), optionally alongside three other sequences with different
 * prompts and chunking, and records every logits row of sequence 0. */
static void run(fixture *f, bool others, size_t chunk, size_t steps, float *rows)
{
    static const int32_t prompts[NSEQ][12] = {
        {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315},
        {1, 68, 80, 80, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 87, 84, 298, 280, 410, 300, 260, 261, 262, 263, 264},
        {1, 300, 301, 302, 303, 304, 0, 0, 0, 0, 0, 0},
    };
    static const size_t plen[NSEQ] = {12, 4, 12, 6};
    int32_t seqs[NSEQ][64];
    size_t len[NSEQ] = {0}, done[NSEQ] = {0};  // tokens known / tokens computed
    for (int s = 0; s < NSEQ; s++) {
        memcpy(seqs[s], prompts[s], plen[s] * sizeof(int32_t));
        len[s] = plen[s];
    }
    float *logits = malloc(NSEQ * f->V * sizeof(float));
    size_t rows_out = 0;
    err_msg e;
    int ns = others ? NSEQ : 1;
    while (len[0] < plen[0] + steps) {
        llama_span sp[NSEQ];
        int map[NSEQ];
        size_t n_sp = 0;
        // put the others first so sequence 0's position in the batch varies
        for (int k = ns - 1; k >= 0; k--) {
            size_t c = k == 0 ? chunk : (size_t)(k + 1);
            size_t n = len[k] - done[k];
            if (n > c)
                n = c;
            bool last = done[k] + n == len[k];
            sp[n_sp] = (llama_span){seqs[k] + done[k], n, done[k], f->table[k], PER, last ? 1 : 0};
            map[n_sp++] = k;
        }
        assert_int_equal(llama_forward(f->c, f->kv, sp, n_sp, logits, &e), 0);
        size_t r = 0;
        for (size_t i = 0; i < n_sp; i++) {
            int k = map[i];
            done[k] += sp[i].n;
            if (sp[i].n_logits) {
                const float *row = logits + r * f->V;
                if (k == 0)
                    memcpy(rows + (rows_out++) * f->V, row, f->V * sizeof(float));
                if (len[k] < 60)
                    seqs[k][len[k]++] = argmax(row, f->V);
                r++;
            }
        }
    }
    free(logits);
}

static void test_batch_invariance(void **state)
{
    (void)state;
    if (!have_model())
        return;
    const size_t steps = 10;
    fixture f;
    fx_init(&f, NULL, 64);
    float *alone = malloc(steps * f.V * sizeof(float));
    float *batched = malloc(steps * f.V * sizeof(float));
    float *chunked = malloc(steps * f.V * sizeof(float));
    float *threaded = malloc(steps * f.V * sizeof(float));
    run(&f, false, 64, steps, alone);
    fx_free(&f);
    fx_init(&f, NULL, 64);
    run(&f, true, 64, steps, batched);
    fx_free(&f);
    fx_init(&f, NULL, 64);
    run(&f, true, 5, steps, chunked);  // prompt of 12 in chunks of 5
    fx_free(&f);
    pool *p = NULL;
    assert_int_equal(pool_new(3, &p), 0);
    fx_init(&f, p, 64);
    run(&f, true, 3, steps, threaded);
    fx_free(&f);
    pool_free(p);
    assert_memory_equal(alone, batched, steps * 512 * sizeof(float));
    assert_memory_equal(alone, chunked, steps * 512 * sizeof(float));
    assert_memory_equal(alone, threaded, steps * 512 * sizeof(float));
    free(alone);
    free(batched);
    free(chunked);
    free(threaded);
}

static void test_span_validation(void **state)
{
    (void)state;
    if (!have_model())
        return;
    fixture f;
    fx_init(&f, NULL, 8);
    float *logits = malloc(8 * f.V * sizeof(float));
    err_msg e;
    int32_t toks[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    llama_span sp = {toks, 9, 0, f.table[0], PER, 1};  // 9 > max_batch_tokens 8
    assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "max_batch_tokens"));
    sp.n = 2;
    sp.n_logits = 3;
    assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), ERR_INVAL);
    sp.n_logits = 1;
    int32_t bad = 512;
    sp.tokens = &bad;
    sp.n = 1;
    assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "vocabulary"));
    sp.tokens = toks;
    sp.pos = 16;  // needs 2 blocks
    sp.n_blocks = 1;
    assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "blocks"));
    int32_t tbl[2] = {0, NSEQ * PER};  // second block outside the pool
    sp.blocks = tbl;
    sp.n_blocks = 2;
    assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "outside the pool"));
    sp.blocks = f.table[0];
    sp.n_blocks = PER;
    sp.pos = PER * BT;  // past max_ctx
    assert_int_equal(llama_forward(f.c, f.kv, &sp, 1, logits, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "context"));
    free(logits);
    fx_free(&f);
}

static void test_load_errors(void **state)
{
    (void)state;
    if (!have_model())
        return;
    model *m = NULL;
    err_msg e;
    assert_true(model_load("/nonexistent/x.gguf", &m, &e) < 0);
    assert_null(m);
    // a truncated copy
    FILE *in = fopen(g_path, "rb");
    assert_non_null(in);
    static char buf[1 << 21];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    char tmp[] = "/tmp/ferry-test-llama-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, n / 2), (ssize_t)(n / 2));
    close(fd);
    assert_true(model_load(tmp, &m, &e) < 0);
    assert_null(m);
    assert_true(strlen(e.text) > 0);
    // architecture renamed in place: "llama" -> "gpt2x" (same length)
    char *a = memmem(buf, n, "general.architecture", 20);
    assert_non_null(a);
    char *v = memmem(a, 64, "llama", 5);
    assert_non_null(v);
    memcpy(v, "gpt2x", 5);
    fd = open(tmp, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);
    assert_int_equal(model_load(tmp, &m, &e), ERR_UNSUPPORTED);
    assert_non_null(strstr(e.text, "gpt2x"));
    memcpy(v, "llama", 5);
    // a missing tensor: rename "blk.4.ffn_norm.weight" -> "blk.4.ffn_morm.weight"
    char *t = memmem(buf, n, "blk.4.ffn_norm.weight", 21);
    assert_non_null(t);
    t[9] = 'm';
    fd = open(tmp, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);
    assert_int_equal(model_load(tmp, &m, &e), ERR_FORMAT);
    assert_non_null(strstr(e.text, "blk.4.ffn_norm.weight"));
    unlink(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_span_validation),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
