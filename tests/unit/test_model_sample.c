/* Unit tests for model/sample: each pipeline stage, reproducibility, stop strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sample.h"

#define V 8

static sample_seq *mk(const sample_params *p)
{
    sample_seq *s = NULL;
    err_msg e;
    assert_int_equal(sample_seq_new(p, V, &s, &e), 0);
    return s;
}

static sample_scratch *mksc(void)
{
    sample_scratch *sc = NULL;
    assert_int_equal(sample_scratch_new(V, &sc), 0);
    return sc;
}

static int32_t next(sample_seq *s, sample_scratch *sc, const float *l)
{
    sample_result r;
    assert_int_equal(sample_next(s, sc, l, &r), 0);
    return r.token;
}

static void accept_tok(sample_seq *s, int32_t t)
{
    char out[SAMPLE_STOP_BYTES_MAX + 8];
    size_t n;
    assert_true(sample_accept(s, t, "", 0, out, sizeof out, &n) >= 0);
}

static void test_greedy_and_ties(void **state)
{
    (void)state;
    sample_params p = sample_params_default();
    p.temperature = 0;
    sample_seq *s = mk(&p);
    sample_scratch *sc = mksc();
    float l[V] = {0.1f, 2.0f, -1.0f, 2.0f, 0.0f, NAN, 1.0f, -INFINITY};
    assert_int_equal(next(s, sc, l), 1);  // tie 1 vs 3: lower id
    sample_seq_free(s);
    sample_scratch_free(sc);
}

/* Both paths on one row of n logits against a plain scan: the first index of
 * the largest (NaN read as -inf), or ERR_INVAL when nothing is above -inf. */
static void check_greedy(sample_seq *fast, sample_seq *slow, sample_scratch *sc, const float *l,
                         int32_t n)
{
    int32_t want = -1;
    float wv = -INFINITY;
    for (int32_t t = 0; t < n; t++) {
        float v = isnan(l[t]) ? -INFINITY : l[t];
        if (v > wv) {
            want = t;
            wv = v;
        }
    }
    sample_result a, b;
    int ra = sample_next(fast, sc, l, &a), rb = sample_next(slow, sc, l, &b);
    assert_int_equal(ra, rb);
    if (want < 0) {
        assert_int_equal(ra, ERR_INVAL);
        return;
    }
    assert_int_equal(ra, 0);
    assert_int_equal(a.token, want);
    assert_int_equal(b.token, want);
}

/* Temperature 0 without bias or penalties reads the logits in place (one
 * pass); with a zero bias the general path (scrubbed copy, then argmax) runs.
 * Both must pick the first index of the largest logit, NaN read as -inf, and
 * both refuse a row with no finite-or-+inf logit. */
static void test_greedy_fast_path(void **state)
{
    (void)state;
    sample_params p = sample_params_default();
    p.temperature = 0;
    sample_seq *fast = mk(&p);
    sample_bias zero[] = {{7, 0.0f}};
    p.bias = zero;
    p.n_bias = 1;
    sample_seq *slow = mk(&p);
    sample_scratch *sc = mksc();
    const float pool[] = {NAN, -INFINITY, INFINITY, 0.0f, -0.0f, 1.0f, 1.0f, -3.0f, 2.5f};
    uint32_t x = 12345;
    for (int trial = 0; trial < 20000; trial++) {
        float l[V];
        for (int t = 0; t < V; t++) {
            x = x * 1103515245u + 12345u;
            l[t] = pool[(x >> 16) % (sizeof pool / sizeof *pool)];
        }
        check_greedy(fast, slow, sc, l, V);
    }
    sample_seq_free(fast);
    sample_seq_free(slow);
    sample_scratch_free(sc);
}

/* The same at vocabulary sizes with whole 64-logit blocks and a tail (the
 * blocked argmax): the maximum in a block, in the tail, tied across blocks and
 * the tail, only NaN and -inf, a lone +inf; the fast and the general path. */
static void test_greedy_large_vocab(void **state)
{
    (void)state;
    const int32_t sizes[] = {1, 63, 64, 65, 200, 49152, 49155};
    uint32_t x = 777;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int32_t n = sizes[si];
        sample_params p = sample_params_default();
        p.temperature = 0;
        sample_seq *fast = NULL, *slow = NULL;
        sample_scratch *sc = NULL;
        err_msg e;
        assert_int_equal(sample_seq_new(&p, n, &fast, &e), 0);
        sample_bias zero[] = {{0, 0.0f}};
        p.bias = zero;
        p.n_bias = 1;
        assert_int_equal(sample_seq_new(&p, n, &slow, &e), 0);
        assert_int_equal(sample_scratch_new(n, &sc), 0);
        float *l = malloc((size_t)n * sizeof *l);
        assert_non_null(l);
        for (int trial = 0; trial < 60; trial++) {
            int kind = trial % 6;
            for (int32_t t = 0; t < n; t++) {
                x = x * 1103515245u + 12345u;
                l[t] = kind == 4 ? ((x >> 16) & 1 ? NAN : -INFINITY)
                                 : (float)((x >> 16) % 1000) / 100.0f - 5.0f;
            }
            x = x * 1103515245u + 12345u;
            int32_t at = (int32_t)((x >> 8) % (uint32_t)n);
            if (kind == 1)
                l[at] = 50.0f; // one clear maximum anywhere
            else if (kind == 2) {
                l[at] = 50.0f; // tied: the lower index wins
                l[n - 1] = 50.0f;
            } else if (kind == 3)
                l[at] = INFINITY;
            else if (kind == 5)
                l[at] = NAN;
            check_greedy(fast, slow, sc, l, n);
        }
        free(l);
        sample_seq_free(fast);
        sample_seq_free(slow);
        sample_scratch_free(sc);
    }
}

static void test_bias_and_penalties(void **state)
{
    (void)state;
    float l[V] = {1.0f, 2.0f, 1.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    sample_params p = sample_params_default();
    p.temperature = 0;
    sample_bias b[] = {{2, 1.0f}};
    p.bias = b;
    p.n_bias = 1;
    sample_seq *s = mk(&p);
    sample_scratch *sc = mksc();
    assert_int_equal(next(s, sc, l), 2);  // 1.5 + 1 > 2
    sample_seq_free(s);

    // frequency penalty: each occurrence of a generated token subtracts 0.6
    p = sample_params_default();
    p.temperature = 0;
    p.frequency_penalty = 0.6f;
    s = mk(&p);
    assert_int_equal(next(s, sc, l), 1);
    accept_tok(s, 1);
    assert_int_equal(next(s, sc, l), 2);  // 2 - 0.6 = 1.4 < 1.5
    accept_tok(s, 2);
    assert_int_equal(next(s, sc, l), 1);  // 1.4 beats 0.9 and 1.0
    sample_seq_free(s);

    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.6f;
    s = mk(&p);
    accept_tok(s, 1);
    assert_int_equal(next(s, sc, l), 2);  // 2 - 0.6 = 1.4 < 1.5
    accept_tok(s, 2);
    assert_int_equal(next(s, sc, l), 1);  // 1.4 beats 0.9 and 1.0
    sample_seq_free(s);

    // repetition penalty over the prompt window: positive logits divided
    p = sample_params_default();
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = 2;
    s = mk(&p);
    int32_t prompt[] = {1, 0, 6};  // window keeps 0 and 6 only
    assert_int_equal(sample_seq_add_prompt(s, prompt, 3), 0);
    assert_int_equal(next(s, sc, l), 1);
    accept_tok(s, 1);  // window now 6, 1
    assert_int_equal(next(s, sc, l), 2);  // 2/2 = 1 < 1.5
    sample_seq_free(s);
    sample_scratch_free(sc);
}

static void test_seed_reproducible_and_distribution(void **state)
{
    (void)state;
    float l[V] = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 0.0f, 0.3f, 1.5f};
    sample_params p = sample_params_default();
    p.seed = 42;
    sample_scratch *sc = mksc();
    int32_t a[64], b[64];
    sample_seq *s = mk(&p);
    for (int i = 0; i < 64; i++)
        a[i] = next(s, sc, l);
    sample_seq_free(s);
    s = mk(&p);
    for (int i = 0; i < 64; i++)
        b[i] = next(s, sc, l);
    sample_seq_free(s);
    assert_memory_equal(a, b, sizeof a);
    p.seed = 43;
    s = mk(&p);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += next(s, sc, l) == a[i];
    sample_seq_free(s);
    assert_true(same < 64);

    // empirical frequencies follow softmax within a loose bound
    p.seed = 7;
    s = mk(&p);
    int cnt[V] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++)
        cnt[next(s, sc, l)]++;
    sample_seq_free(s);
    double z = 0;
    for (int t = 0; t < V; t++)
        z += exp(l[t]);
    for (int t = 0; t < V; t++)
        assert_true(fabs(cnt[t] / (double)N - exp(l[t]) / z) < 0.02);
    sample_scratch_free(sc);
}

static void test_top_k_top_p_min_p(void **state)
{
    (void)state;
    float l[V] = {0.0f, 1.0f, 3.0f, 0.5f, -1.0f, 0.0f, 2.9f, 1.5f};
    sample_scratch *sc = mksc();
    sample_params p = sample_params_default();
    p.top_k = 2;
    p.seed = 1;
    sample_seq *s = mk(&p);
    for (int i = 0; i < 200; i++) {
        int32_t t = next(s, sc, l);
        assert_true(t == 2 || t == 6);
    }
    sample_seq_free(s);

    // top_p 0.5: p(2) ~ 0.39, p(6) ~ 0.35, so {2, 6} is the smallest prefix >= 0.5
    p = sample_params_default();
    p.top_p = 0.5f;
    s = mk(&p);
    int seen6 = 0;
    for (int i = 0; i < 200; i++) {
        int32_t t = next(s, sc, l);
        assert_true(t == 2 || t == 6);
        seen6 += t == 6;
    }
    assert_true(seen6 > 0);
    sample_seq_free(s);

    // min_p 0.5: keeps p >= 0.5 p_max, i.e. l >= 3 + ln 0.5 = 2.307 -> {2, 6}
    p = sample_params_default();
    p.min_p = 0.5f;
    s = mk(&p);
    for (int i = 0; i < 200; i++) {
        int32_t t = next(s, sc, l);
        assert_true(t == 2 || t == 6);
    }
    sample_seq_free(s);

    // low temperature concentrates on the argmax
    p = sample_params_default();
    p.temperature = 0.01f;
    s = mk(&p);
    for (int i = 0; i < 50; i++)
        assert_int_equal(next(s, sc, l), 2);
    sample_seq_free(s);
    sample_scratch_free(sc);
}

static void test_top_p_large_vocab(void **state)
{
    (void)state;
    // top-p over a vocabulary larger than the first sorted chunk (64)
    enum { BIG = 5000 };
    float *l = malloc(BIG * sizeof *l);
    for (int t = 0; t < BIG; t++)
        l[t] = (float)((t * 7919) % BIG) / 1000.0f;  // a permutation of 0..4.999
    sample_scratch *sc = NULL;
    assert_int_equal(sample_scratch_new(BIG, &sc), 0);
    sample_params p = sample_params_default();
    p.top_p = 0.9f;
    sample_seq *s = NULL;
    assert_int_equal(sample_seq_new(&p, BIG, &s, NULL), 0);
    // the kept set: largest logits whose mass reaches 0.9
    double z = 0;
    for (int t = 0; t < BIG; t++)
        z += exp(l[t]);
    // sorted values are 4.999, 4.998, ...: find the cutoff value
    double cum = 0, cut = 0;
    for (int i = 0; i < BIG; i++) {
        double v = (BIG - 1 - i) / 1000.0;
        cum += exp(v);
        if (cum >= 0.9 * z) {
            cut = v;
            break;
        }
    }
    for (int i = 0; i < 300; i++) {
        sample_result r;
        assert_int_equal(sample_next(s, sc, l, &r), 0);
        assert_true(l[r.token] >= cut - 1e-6);
    }
    sample_seq_free(s);
    sample_scratch_free(sc);
    free(l);
}

static void test_logprobs(void **state)
{
    (void)state;
    float l[V] = {0.0f, 1.0f, 3.0f, 0.5f, -1.0f, 0.0f, 2.9f, 1.5f};
    sample_params p = sample_params_default();
    p.temperature = 0;
    p.want_logprobs = true;
    p.n_top_logprobs = 5;
    sample_seq *s = mk(&p);
    sample_scratch *sc = mksc();
    sample_result r;
    assert_int_equal(sample_next(s, sc, l, &r), 0);
    double z = 0;
    for (int t = 0; t < V; t++)
        z += exp(l[t]);
    assert_int_equal(r.token, 2);
    assert_true(fabs(r.logprob - (3.0 - log(z))) < 1e-5);
    assert_int_equal(r.n_top, 5);
    int32_t want[5] = {2, 6, 7, 1, 3};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r.top_token[i], want[i]);
        assert_true(fabs(r.top_logprob[i] - (l[want[i]] - log(z))) < 1e-5);
    }
    sample_seq_free(s);
    sample_scratch_free(sc);
}

static size_t feed(sample_seq *s, const char *piece, char *acc, size_t *acc_n, int *status)
{
    char out[64 + SAMPLE_STOP_BYTES_MAX];
    size_t n = 0;
    *status = sample_accept(s, 3, piece, strlen(piece), out, sizeof out, &n);
    memcpy(acc + *acc_n, out, n);
    *acc_n += n;
    acc[*acc_n] = 0;
    return n;
}

static void test_stop_strings(void **state)
{
    (void)state;
    const char *stops[] = {"END", "\n\n"};
    sample_params p = sample_params_default();
    p.stop = stops;
    p.n_stop = 2;
    sample_seq *s = mk(&p);
    char acc[256];
    size_t acc_n = 0;
    int st;
    feed(s, "hello E", acc, &acc_n, &st);
    assert_int_equal(st, SAMPLE_CONTINUE);
    assert_string_equal(acc, "hello ");  // "E" is held back
    feed(s, "N", acc, &acc_n, &st);
    assert_string_equal(acc, "hello ");
    feed(s, "Dx more", acc, &acc_n, &st);  // stop across three tokens
    assert_int_equal(st, SAMPLE_STOP);
    assert_string_equal(acc, "hello ");
    assert_int_equal(sample_accept(s, 1, "", 0, acc, sizeof acc, &acc_n), ERR_INVAL);
    sample_seq_free(s);

    // a held prefix that turns out not to be a stop is released
    s = mk(&p);
    acc_n = 0;
    feed(s, "a\n", acc, &acc_n, &st);
    assert_string_equal(acc, "a");
    feed(s, "b", acc, &acc_n, &st);
    assert_string_equal(acc, "a\nb");
    feed(s, "EN", acc, &acc_n, &st);
    char out[SAMPLE_STOP_BYTES_MAX];
    size_t n = sample_flush(s, out, sizeof out);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "EN", 2);
    sample_seq_free(s);
}

static void test_max_tokens(void **state)
{
    (void)state;
    const char *stops[] = {"zz"};
    sample_params p = sample_params_default();
    p.max_tokens = 3;
    p.stop = stops;
    p.n_stop = 1;
    sample_seq *s = mk(&p);
    char acc[64];
    size_t acc_n = 0;
    int st;
    feed(s, "a", acc, &acc_n, &st);
    assert_int_equal(st, SAMPLE_CONTINUE);
    feed(s, "b", acc, &acc_n, &st);
    assert_int_equal(st, SAMPLE_CONTINUE);
    feed(s, "cz", acc, &acc_n, &st);  // last token: held "z" is flushed
    assert_int_equal(st, SAMPLE_LENGTH);
    assert_string_equal(acc, "abcz");
    assert_int_equal(sample_seq_generated(s), 3);
    sample_seq_free(s);
}

static void test_invalid_params(void **state)
{
    (void)state;
    sample_seq *s = NULL;
    err_msg e;
    sample_params p = sample_params_default();
    p.temperature = -1;
    assert_int_equal(sample_seq_new(&p, V, &s, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "temperature"));
    p = sample_params_default();
    p.top_p = 0;
    assert_int_equal(sample_seq_new(&p, V, &s, &e), ERR_INVAL);
    p = sample_params_default();
    sample_bias b[] = {{V, 1.0f}};
    p.bias = b;
    p.n_bias = 1;
    assert_int_equal(sample_seq_new(&p, V, &s, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "logit_bias"));
    p = sample_params_default();
    const char *stops[] = {""};
    p.stop = stops;
    p.n_stop = 1;
    assert_int_equal(sample_seq_new(&p, V, &s, &e), ERR_INVAL);
    p = sample_params_default();
    p.max_tokens = 0;
    assert_int_equal(sample_seq_new(&p, V, &s, &e), ERR_INVAL);
    p = sample_params_default();
    p.n_top_logprobs = 6;
    assert_int_equal(sample_seq_new(&p, V, &s, &e), ERR_INVAL);
    assert_null(s);
    // all logits -inf: nothing to sample
    p = sample_params_default();
    s = mk(&p);
    sample_scratch *sc = mksc();
    float l[V];
    for (int i = 0; i < V; i++)
        l[i] = -INFINITY;
    sample_result r;
    assert_int_equal(sample_next(s, sc, l, &r), ERR_INVAL);
    sample_seq_free(s);
    sample_scratch_free(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_greedy_fast_path),
        cmocka_unit_test(test_greedy_large_vocab),
        cmocka_unit_test(test_bias_and_penalties),
        cmocka_unit_test(test_seed_reproducible_and_distribution),
        cmocka_unit_test(test_top_k_top_p_min_p),
        cmocka_unit_test(test_top_p_large_vocab),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_invalid_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
