/*
 * End-to-end tests of engine/sched on the real stories260K model (../shared):
 * greedy output equals the reference, 16 concurrent requests (greedy and
 * seeded) give exactly the tokens each gives alone, prefix cache hits, a tiny
 * KV pool preempts yet completes every request identically, cancel frees the
 * blocks within a step, admission control (429), deadlines, too-large
 * prompts, max_tokens and stop strings. Skipped with a message when
 * ../shared is absent.
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
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "engine/sched.h"
#include "model/gguf.h"
#include "model/tok.h"

static char g_path[1024];
static model *g_model;
static gguf_file *g_gguf;
static tok_vocab *g_vocab;

static int group_setup(void **state)
{
    (void)state;
    const char *sh = getenv("FERRY_SHARED");
    snprintf(g_path, sizeof g_path, "%s/models/stories260K/stories260K.gguf",
             sh ? sh : "../shared");
    if (access(g_path, R_OK) != 0) {
        fprintf(stderr, "skipping: %s not found\n", g_path);
        return 0;
    }
    err_msg e;
    if (model_load(g_path, &g_model, &e) != 0 || gguf_open(g_path, &g_gguf, &e) != 0 ||
        tok_vocab_from_gguf(g_gguf, &g_vocab, &e) != 0) {
        fprintf(stderr, "load: %s\n", e.text);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tok_vocab_free(g_vocab);
    gguf_close(g_gguf);
    model_unref(g_model);
    return 0;
}

#define NEED_MODEL()                                                                           \
    do {                                                                                       \
        if (!g_model)                                                                          \
            skip();                                                                            \
    } while (0)

/* ------------------------------------------------------------ collector -- */

typedef struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t toks[1024];
    size_t n;
    char text[8192];
    size_t tn;
    bool done;
    int finish; // sched_finish, or -1 on error
    int err;
    sched_usage u;
    sched *s;
    sched_handle *h;
    bool cancel_after_first;
} collect;

static void c_delta(void *ctx, const sched_delta *d)
{
    collect *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (d->token >= 0 && c->n < 1024)
        c->toks[c->n++] = d->token;
    if (c->tn + d->len < sizeof c->text) {
        memcpy(c->text + c->tn, d->text, d->len);
        c->tn += d->len;
        c->text[c->tn] = '\0';
    }
    bool cancel = c->cancel_after_first && c->n == 1;
    pthread_mutex_unlock(&c->mu);
    if (cancel)
        sched_cancel(c->s, c->h);
}

static void c_end(collect *c, int finish, int err, const sched_usage *u)
{
    pthread_mutex_lock(&c->mu);
    c->done = true;
    c->finish = finish;
    c->err = err;
    c->u = *u;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void c_done(void *ctx, sched_finish why, const sched_usage *u)
{
    c_end(ctx, (int)why, 0, u);
}

static void c_error(void *ctx, int code, const char *msg, const sched_usage *u)
{
    (void)msg;
    c_end(ctx, -1, code, u);
}

static void c_init(collect *c, sched *s)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->s = s;
}

static void c_wait(collect *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        assert_int_equal(pthread_cond_timedwait(&c->cv, &c->mu, &ts), 0);
    pthread_mutex_unlock(&c->mu);
}

static void c_deinit(collect *c)
{
    sched_handle_release(c->h);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

/* ------------------------------------------------------------- helpers -- */

static sched_metrics *g_metrics; // set by test_metrics only

static sched *start(size_t kv_bytes, size_t max_seqs, size_t max_waiting, size_t max_batch)
{
    sched_config cfg = sched_config_default();
    cfg.metrics = g_metrics;
    cfg.vocab = g_vocab;
    cfg.n_threads = 2;
    cfg.kv_cache_bytes = kv_bytes;
    cfg.kv_cache_mb = 4;
    cfg.max_seqs = max_seqs;
    cfg.max_waiting = max_waiting;
    cfg.max_batch_tokens = max_batch;
    cfg.name = "stories260K";
    sched *s = NULL;
    err_msg e;
    int rc = sched_new(g_model, &cfg, &s, &e);
    if (rc != 0)
        fail_msg("sched_new: %s", e.text);
    return s;
}

static sched_request req(const int32_t *prompt, size_t n, size_t max_tokens, float temp,
                         uint64_t seed, collect *c)
{
    sched_request r = {.prompt = prompt, .n_prompt = n};
    r.params = sample_params_default();
    r.params.max_tokens = max_tokens;
    r.params.temperature = temp;
    r.params.seed = seed;
    r.ignore_eos = true; // fixed lengths make the comparisons exact
    r.sink = (sched_sink){.ctx = c, .on_delta = c_delta, .on_done = c_done, .on_error = c_error};
    return r;
}

static void submit_ok(sched *s, const sched_request *r, collect *c)
{
    err_msg e;
    int rc = sched_submit(s, r, &c->h, &e);
    if (rc != 0)
        fail_msg("submit: %s", e.text);
}

/* Prompt i of a family of 16 distinct prompts: BOS then ids from the vocab. */
static size_t prompt_of(int i, int32_t *p)
{
    size_t n = 3 + (size_t)(i * 7) % 29;
    p[0] = 1;
    for (size_t k = 1; k < n; k++)
        p[k] = 260 + (int32_t)((i * 31 + (int)k * 17) % 250);
    return n;
}

static void wait_idle(sched *s)
{
    sched_stats st;
    for (int i = 0; i < 2000; i++) {
        sched_get_stats(s, &st);
        if (st.n_running == 0 && st.n_waiting == 0 && st.kv_usage == 0.0)
            return;
        usleep(1000);
    }
    fail_msg("scheduler did not go idle: running %zu waiting %zu kv %.3f", st.n_running,
             st.n_waiting, st.kv_usage);
}

/* --------------------------------------------------------------- tests -- */

static void test_greedy_reference(void **state)
{
    (void)state;
    NEED_MODEL();
    /* ../shared/models/stories260K/greedy-reference.json, "Once upon a time". */
    static const int32_t prompt[] = {1, 403, 407, 261, 378};
    static const int32_t want[] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                                   401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282};
    sched *s = start(0, 8, 16, 512);
    collect c;
    c_init(&c, s);
    sched_request r = req(prompt, 5, 24, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    c_wait(&c);
    assert_int_equal(c.finish, SCHED_FINISH_LENGTH);
    assert_int_equal(c.n, 24);
    assert_memory_equal(c.toks, want, sizeof want);
    assert_non_null(strstr(c.text, "there was a little girl"));
    assert_int_equal(c.u.prompt_tokens, 5);
    assert_int_equal(c.u.completion_tokens, 24);
    assert_true(c.u.ttft_ns > 0 && c.u.e2e_ns >= c.u.ttft_ns);
    c_deinit(&c);
    wait_idle(s);
    sched_free(s);
}

/* Runs the 16 prompts alone (one after another), then all at once, greedy
 * (even i) and seeded sampling (odd i); every token must match. */
static void run_invariance(size_t kv_bytes, size_t max_seqs, bool expect_preempt,
                           uint64_t max_steps)
{
    enum { N = 16, GEN = 48 };
    int32_t prompts[N][40];
    size_t np[N];
    int32_t alone[N][GEN];
    sched *s = start(kv_bytes, max_seqs, 64, 512);
    for (int i = 0; i < N; i++) {
        np[i] = prompt_of(i, prompts[i]);
        collect c;
        c_init(&c, s);
        sched_request r = req(prompts[i], np[i], GEN, (i & 1) ? 0.8f : 0.0f, 1000 + i, &c);
        submit_ok(s, &r, &c);
        c_wait(&c);
        assert_int_equal(c.n, GEN);
        memcpy(alone[i], c.toks, sizeof alone[i]);
        c_deinit(&c);
    }
    sched_stats before, after;
    wait_idle(s); // the last step's snapshot is published
    sched_get_stats(s, &before);
    collect *cs = calloc(N, sizeof *cs);
    assert_non_null(cs);
    for (int i = 0; i < N; i++) {
        c_init(&cs[i], s);
        sched_request r = req(prompts[i], np[i], GEN, (i & 1) ? 0.8f : 0.0f, 1000 + i, &cs[i]);
        submit_ok(s, &r, &cs[i]);
    }
    for (int i = 0; i < N; i++) {
        c_wait(&cs[i]);
        assert_int_equal(cs[i].finish, SCHED_FINISH_LENGTH);
        assert_int_equal(cs[i].n, GEN);
        if (memcmp(cs[i].toks, alone[i], sizeof alone[i]) != 0)
            fail_msg("request %d: batched tokens differ from its tokens alone", i);
        c_deinit(&cs[i]);
    }
    free(cs);
    wait_idle(s);
    sched_get_stats(s, &after);
    uint64_t steps = after.steps - before.steps;
    printf("16 concurrent requests x %d tokens: %llu steps, %llu preemptions\n", GEN,
           (unsigned long long)steps, (unsigned long long)(after.preemptions - before.preemptions));
    /* Batched: fewer steps than the 16*48 tokens generated. */
    assert_true(steps < max_steps);
    if (expect_preempt)
        assert_true(after.preemptions > before.preemptions);
    assert_int_equal(after.generation_tokens - before.generation_tokens, N * GEN);
    assert_int_equal(after.ttft.n - before.ttft.n, N);
    assert_int_equal(after.tpot.n - before.tpot.n, N);
    assert_int_equal(after.e2e.n - before.e2e.n, N);
    assert_true(after.e2e.count[sched_e2e_n_bounds - 1] <= after.e2e.n);
    assert_true(after.finished_length - before.finished_length == N);
    sched_free(s);
}

static void test_batch_invariance(void **state)
{
    (void)state;
    NEED_MODEL();
    run_invariance(0, 64, false, 16 * 48 / 4);
}

/* A pool of 24 blocks (384 token slots) for 16 sequences of up to ~80 tokens:
 * preemption must happen and every request still completes identically. */
static void test_preemption_tiny_pool(void **state)
{
    (void)state;
    NEED_MODEL();
    size_t tb = llama_kv_token_bytes(model_hparams(g_model));
    run_invariance(24 * 16 * tb, 64, true, 16 * 48);
}

static void test_prefix_cache(void **state)
{
    (void)state;
    NEED_MODEL();
    sched *s = start(0, 8, 16, 512);
    int32_t p[60];
    for (int k = 0; k < 60; k++)
        p[k] = k == 0 ? 1 : 300 + k;
    collect c;
    c_init(&c, s);
    sched_request r = req(p, 50, 4, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    c_wait(&c);
    assert_int_equal(c.u.cached_tokens, 0);
    c_deinit(&c);
    /* Same 48-token "system prompt", different ending. */
    p[49] = 7;
    p[50] = 8;
    c_init(&c, s);
    r = req(p, 52, 4, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    c_wait(&c);
    /* three whole blocks, and p[48] copied from the first request's partial last
     * block (released with it): the prompts differ from p[49] on */
    assert_int_equal(c.u.cached_tokens, 49);
    c_deinit(&c);
    sched_stats st;
    wait_idle(s);
    sched_get_stats(s, &st);
    assert_true(st.prefix_hits_tokens == 49);
    assert_true(st.prefix_queries_tokens == 102);
    sched_free(s);
}

static void test_cancel_frees_blocks(void **state)
{
    (void)state;
    NEED_MODEL();
    sched *s = start(0, 8, 16, 512);
    static const int32_t p[] = {1, 403, 407, 261, 378};
    collect c;
    c_init(&c, s);
    c.cancel_after_first = true;
    sched_request r = req(p, 5, 400, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    c_wait(&c);
    assert_int_equal(c.finish, -1);
    assert_int_equal(c.err, ERR_CANCELLED);
    assert_true(c.n < 400);
    c_deinit(&c);
    wait_idle(s); // blocks back: usage ratio returns to 0
    sched_stats st;
    sched_get_stats(s, &st);
    assert_true(st.finished_cancelled == 1);
    sched_free(s);
}

static void test_admission_limits(void **state)
{
    (void)state;
    NEED_MODEL();
    sched *s = start(0, 1, 2, 512);
    static const int32_t p[] = {1, 403, 407, 261, 378};
    collect a, b, c;
    c_init(&a, s);
    c_init(&b, s);
    c_init(&c, s);
    sched_request r = req(p, 5, 300, 0.0f, 0, &a);
    submit_ok(s, &r, &a);
    for (int i = 0; i < 5000; i++) { // until a runs (it no longer counts as waiting)
        pthread_mutex_lock(&a.mu);
        size_t n = a.n;
        pthread_mutex_unlock(&a.mu);
        if (n > 0)
            break;
        usleep(1000);
    }
    r = req(p, 5, 2, 0.0f, 0, &b);
    submit_ok(s, &r, &b);
    r = req(p, 5, 2, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    collect d;
    c_init(&d, s);
    r = req(p, 5, 2, 0.0f, 0, &d);
    err_msg e;
    assert_int_equal(sched_submit(s, &r, &d.h, &e), ERR_RATE_LIMIT);
    assert_non_null(strstr(e.text, "max_waiting"));
    assert_null(d.h);
    c_wait(&a);
    c_wait(&b);
    c_wait(&c);
    assert_int_equal(b.n, 2);
    c_deinit(&a);
    c_deinit(&b);
    c_deinit(&c);
    c_deinit(&d);

    /* A prompt longer than the context (512) is refused naming the limit. */
    int32_t big[600];
    for (int k = 0; k < 600; k++)
        big[k] = 300;
    c_init(&d, s);
    r = req(big, 600, 2, 0.0f, 0, &d);
    assert_int_equal(sched_submit(s, &r, &d.h, &e), ERR_TOO_LARGE);
    assert_non_null(strstr(e.text, "context length is 512"));
    /* Out-of-vocabulary ids and bad sampling parameters are refused too. */
    big[3] = 9999;
    r = req(big, 5, 2, 0.0f, 0, &d);
    assert_int_equal(sched_submit(s, &r, &d.h, &e), ERR_INVAL);
    r = req(p, 5, 2, -1.0f, 0, &d);
    assert_int_equal(sched_submit(s, &r, &d.h, &e), ERR_INVAL);
    c_deinit(&d);
    sched_free(s);
}

static void test_deadline_stop_length(void **state)
{
    (void)state;
    NEED_MODEL();
    sched *s = start(0, 8, 16, 512);
    static const int32_t p[] = {1, 403, 407, 261, 378};
    collect c;
    c_init(&c, s);
    sched_request r = req(p, 5, 500, 0.0f, 0, &c);
    r.deadline_ns = clock_mono_ns() + 2000000; // 2 ms
    submit_ok(s, &r, &c);
    c_wait(&c);
    assert_int_equal(c.finish, -1);
    assert_int_equal(c.err, ERR_TIMEOUT);
    c_deinit(&c);

    /* A stop string: the text ends before it, finish "stop". */
    c_init(&c, s);
    r = req(p, 5, 60, 0.0f, 0, &c);
    static const char *stop[] = {" little"};
    r.params.stop = stop;
    r.params.n_stop = 1;
    submit_ok(s, &r, &c);
    c_wait(&c);
    assert_int_equal(c.finish, SCHED_FINISH_STOP);
    assert_string_equal(c.text, ", there was a");
    c_deinit(&c);

    /* Without ignore_eos the model ends its story with EOS: finish "stop". */
    c_init(&c, s);
    r = req(p, 5, 400, 0.0f, 0, &c);
    r.ignore_eos = false;
    submit_ok(s, &r, &c);
    c_wait(&c);
    assert_true(c.finish == SCHED_FINISH_STOP || c.finish == SCHED_FINISH_LENGTH);
    if (c.finish == SCHED_FINISH_STOP)
        assert_true(tok_vocab_is_eog(g_vocab, c.toks[c.n - 1]));
    c_deinit(&c);
    wait_idle(s);
    sched_free(s);
}

/* Reads one sample's value out of an exposition: the line starting with key. */
static double metric(const buf *b, const char *key)
{
    const char *p = b->data;
    size_t kl = strlen(key);
    while ((p = strstr(p, key)) != NULL) {
        if ((p == b->data || p[-1] == '\n') && p[kl] == ' ')
            return strtod(p + kl + 1, NULL);
        p += kl;
    }
    fail_msg("metric %s not exposed", key);
    return -1;
}

static void test_metrics(void **state)
{
    (void)state;
    NEED_MODEL();
    obs_registry *reg = obs_registry_new();
    assert_non_null(reg);
    err_msg e;
    assert_int_equal(sched_metrics_new(reg, &g_metrics, &e), 0);
    sched *s = start(0, 8, 16, 512);
    static const int32_t p[] = {1, 403, 407, 261, 378};
    collect c;
    c_init(&c, s);
    sched_request r = req(p, 5, 10, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    c_wait(&c);
    c_deinit(&c);
    c_init(&c, s);
    c.cancel_after_first = true;
    r = req(p, 5, 300, 0.0f, 0, &c);
    submit_ok(s, &r, &c);
    c_wait(&c);
    c_deinit(&c);
    wait_idle(s);
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(obs_expose(reg, &b), 0);
#define M(name) metric(&b, name "{model=\"stories260K\"}")
    assert_true(M("ferry_prompt_tokens_total") == 10);
    assert_true(M("ferry_generation_tokens_total") >= 11);
    assert_true(M("ferry_prefix_cache_queries_total") == 10);
    // 5-token prompts, no full block: the second copies 4 tokens from the first's
    // partial block (the last one is computed for its logits)
    assert_true(M("ferry_prefix_cache_hits_total") == 4);
    assert_true(M("ferry_requests_running") == 0);
    assert_true(M("ferry_requests_waiting") == 0);
    assert_true(M("ferry_kv_cache_usage_ratio") == 0);
    assert_true(M("ferry_preemptions_total") == 0);
    assert_true(M("ferry_time_to_first_token_seconds_count") == 2);
    assert_true(M("ferry_e2e_request_latency_seconds_count") == 2);
    assert_true(M("ferry_time_per_output_token_seconds_count") >= 1);
#undef M
    assert_true(metric(&b, "ferry_requests_finished_total{model=\"stories260K\",reason=\"length\"}") == 1);
    assert_true(metric(&b, "ferry_requests_finished_total{model=\"stories260K\",reason=\"abort\"}") == 1);
    buf_deinit(&b);
    sched_free(s);
    sched_metrics_free(g_metrics);
    g_metrics = NULL;
    obs_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_reference),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_preemption_tiny_pool),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_cancel_frees_blocks),
        cmocka_unit_test(test_admission_limits),
        cmocka_unit_test(test_deadline_stop_length),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
