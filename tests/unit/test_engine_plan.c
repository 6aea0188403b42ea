/* Unit tests for engine/sched_plan: scheduler step composition (decode first,
 * chunked prefill within the token budget, max_seqs, priority, prefix reuse at
 * admission, preemption of the newest sequence, exhausted pool). The plan is
 * pure with respect to the model: these tests drive it with the real KV block
 * manager and append a fixed token where the scheduler would sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine/sched_plan.h"

#define MAXS 8
#define CAP 4096

typedef struct world {
    kv_cache *kv;
    sched_limits lim;
    sched_lists L;
    sched_seq *run[MAXS], *wait[64];
    sched_item items[MAXS];
    sched_seq *pre[MAXS], *exh[MAXS];
    sched_plan out;
    sched_seq seqs[16];
    int32_t toks[16][CAP];
    uint64_t arrivals;
} world;

static world *world_new(size_t n_blocks, size_t max_batch, size_t max_seqs)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    kv_config c = kv_config_default();
    c.token_bytes = 1;
    c.cache_bytes = n_blocks * 16;
    c.max_seqs = MAXS;
    c.max_seq_tokens = CAP;
    assert_int_equal(kv_cache_new(&c, &w->kv, NULL), 0);
    w->lim = (sched_limits){.max_batch_tokens = max_batch, .max_seqs = max_seqs};
    w->L = (sched_lists){.running = w->run, .cap_running = MAXS, .waiting = w->wait,
                         .cap_waiting = 64};
    w->out = (sched_plan){.items = w->items, .preempted = w->pre, .exhausted = w->exh};
    return w;
}

static void world_free(world *w)
{
    kv_cache_free(w->kv);
    free(w);
}

/* Submits sequence i with an n-token prompt whose ids start at base. */
static sched_seq *submit(world *w, int i, size_t n, int32_t base, int priority)
{
    sched_seq *s = &w->seqs[i];
    for (size_t k = 0; k < n; k++)
        w->toks[i][k] = base + (int32_t)k;
    *s = (sched_seq){.tokens = w->toks[i], .n_tokens = n, .kv_id = -1, .priority = priority,
                     .arrival = w->arrivals++};
    assert_int_equal(sched_wait_push(&w->L, s), 0);
    return s;
}

/* Plans a step, commits it, and appends token 7 to every sequence whose
 * prompt is complete (where the scheduler samples). */
static int step(world *w)
{
    int rc = sched_plan_step(&w->L, w->kv, &w->lim, &w->out);
    sched_plan_commit(w->kv, &w->out);
    for (size_t i = 0; i < w->out.n_items; i++) {
        sched_item *it = &w->out.items[i];
        if (it->want_logits)
            it->seq->tokens[it->seq->n_tokens++] = 7;
    }
    return rc;
}

static size_t item_n(const world *w, const sched_seq *s)
{
    for (size_t i = 0; i < w->out.n_items; i++)
        if (w->out.items[i].seq == s)
            return w->out.items[i].n;
    return 0;
}

static void finish(world *w, sched_seq *s)
{
    sched_list_remove(&w->L, s);
    if (s->kv_id >= 0)
        kv_seq_close(w->kv, s->kv_id);
    s->kv_id = -1;
}

static void test_decode_first_then_chunked_prefill(void **state)
{
    (void)state;
    world *w = world_new(1024, 512, 8);
    sched_seq *a = submit(w, 0, 10, 100, 0);
    sched_seq *b = submit(w, 1, 20, 200, 0);
    sched_seq *c = submit(w, 2, 30, 300, 0);
    assert_int_equal(step(w), 0); // all three prefilled whole in one step
    assert_int_equal(w->out.n_items, 3);
    assert_int_equal(w->out.n_admitted, 3);
    assert_int_equal(w->out.n_tokens, 60);
    assert_true(w->out.items[0].want_logits && w->out.items[2].want_logits);

    sched_seq *d = submit(w, 3, 1200, 1000, 0); // a long prompt arrives
    assert_int_equal(step(w), 0);
    /* Decode tokens first, then a 509-token chunk of d. */
    assert_int_equal(w->out.n_items, 4);
    assert_ptr_equal(w->out.items[0].seq, a);
    assert_ptr_equal(w->out.items[1].seq, b);
    assert_ptr_equal(w->out.items[2].seq, c);
    assert_int_equal(item_n(w, a), 1);
    assert_int_equal(item_n(w, d), 509);
    assert_false(w->out.items[3].want_logits);
    assert_int_equal(w->out.n_tokens, 512);

    assert_int_equal(step(w), 0);
    assert_int_equal(item_n(w, a), 1);
    assert_int_equal(item_n(w, d), 509);
    assert_int_equal(d->n_computed, 1018);
    assert_int_equal(step(w), 0);
    assert_int_equal(item_n(w, d), 182); // the rest, with logits
    assert_true(w->out.items[3].want_logits);
    assert_int_equal(w->out.n_tokens, 185);
    assert_int_equal(step(w), 0);
    assert_int_equal(w->out.n_tokens, 4); // everyone decodes
    assert_int_equal(item_n(w, d), 1);
    world_free(w);
}

static void test_max_seqs_and_budget(void **state)
{
    (void)state;
    world *w = world_new(1024, 64, 3);
    for (int i = 0; i < 5; i++)
        submit(w, i, 10, i * 100, 0);
    assert_int_equal(step(w), 0);
    assert_int_equal(w->out.n_admitted, 3);
    assert_int_equal(w->L.n_running, 3);
    assert_int_equal(w->L.n_waiting, 2);
    finish(w, &w->seqs[1]);
    assert_int_equal(step(w), 0);
    /* 2 decodes + the next waiting sequence joins. */
    assert_int_equal(w->out.n_admitted, 1);
    assert_int_equal(item_n(w, &w->seqs[3]), 10);
    assert_int_equal(item_n(w, &w->seqs[4]), 0);
    /* The budget splits a prompt: 2 decodes leave 62. */
    sched_seq *big = submit(w, 5, 100, 5000, 0);
    finish(w, &w->seqs[0]);
    finish(w, &w->seqs[4]); // still waiting: just leaves the queue
    assert_int_equal(step(w), 0);
    assert_int_equal(item_n(w, big), 62);
    assert_int_equal(w->out.n_tokens, 64);
    world_free(w);
}

static void test_priority_order(void **state)
{
    (void)state;
    world *w = world_new(1024, 512, 2);
    sched_seq *lo = submit(w, 0, 10, 0, 0);
    sched_seq *hi = submit(w, 1, 10, 100, 5);
    sched_seq *mid = submit(w, 2, 10, 200, 1);
    assert_int_equal(step(w), 0);
    assert_int_equal(w->out.n_admitted, 2);
    assert_int_not_equal(item_n(w, hi), 0);
    assert_int_not_equal(item_n(w, mid), 0);
    assert_int_equal(item_n(w, lo), 0);
    assert_ptr_equal(w->L.running[0], hi);
    world_free(w);
}

static void test_prefix_reuse_at_admission(void **state)
{
    (void)state;
    world *w = world_new(1024, 512, 8);
    sched_seq *a = submit(w, 0, 100, 0, 0);
    assert_int_equal(step(w), 0);
    /* Same 100-token system prompt, different question. */
    sched_seq *b = submit(w, 1, 120, 0, 0);
    for (int k = 100; k < 120; k++)
        b->tokens[k] = 9000 + k;
    assert_int_equal(step(w), 0);
    assert_int_equal(b->n_cached, 96); // six full blocks
    assert_int_equal(item_n(w, b), 24);
    assert_int_equal(item_n(w, a), 1);
    kv_stats st;
    kv_get_stats(w->kv, &st);
    assert_true(st.queries_tokens == 220 && st.hits_tokens == 96);
    world_free(w);
}

/* A tiny pool: two sequences decode until the pool is full; the newest is
 * preempted (not failed), the oldest continues, and when it finishes the
 * preempted one comes back and recomputes, reusing its cached prefix. */
static void test_preemption_tiny_pool(void **state)
{
    (void)state;
    world *w = world_new(6, 512, 8);
    sched_seq *a = submit(w, 0, 40, 0, 0);    // 3 blocks
    sched_seq *b = submit(w, 1, 40, 1000, 0); // 3 blocks
    assert_int_equal(step(w), 0);
    assert_int_equal(w->L.n_running, 2);
    /* Both hold 41 tokens (40 + 1 sampled); decode fills slots 40..47. */
    size_t steps = 0;
    while (w->out.n_preempted == 0) {
        assert_int_equal(step(w), 0);
        assert_true(++steps < 20);
    }
    assert_ptr_equal(w->out.preempted[0], b);
    assert_int_equal(b->kv_id, -1);
    assert_int_equal(b->n_computed, 0);
    assert_int_equal(w->L.n_waiting, 1);
    assert_int_equal(w->L.n_running, 1);
    assert_int_equal(item_n(w, a), 1);
    assert_int_equal(w->out.n_admitted, 0);
    size_t b_tokens = b->n_tokens; // its generated tokens are kept
    assert_true(b_tokens > 41);
    /* a keeps decoding alone; b cannot come back while a holds the pool. */
    for (int k = 0; k < 3; k++) {
        assert_int_equal(step(w), 0);
        assert_int_equal(item_n(w, b), 0);
    }
    finish(w, a);
    assert_int_equal(step(w), 0);
    assert_int_equal(w->out.n_admitted, 1);
    assert_true(b->n_cached >= 16);
    assert_int_equal(b->n_cached + item_n(w, b), b_tokens);
    assert_int_equal(b->n_tokens, b_tokens + 1);
    world_free(w);
}

/* A sequence alone in the pool that outgrows it is reported exhausted. */
static void test_exhausted(void **state)
{
    (void)state;
    world *w = world_new(2, 512, 8);
    sched_seq *a = submit(w, 0, 31, 0, 0);
    assert_int_equal(step(w), 0);
    assert_int_equal(step(w), 0); // token 32 fills the second block
    assert_int_equal(step(w), ERR_BUSY);
    assert_int_equal(w->out.n_exhausted, 1);
    assert_ptr_equal(w->out.exhausted[0], a);
    assert_int_equal(w->L.n_running, 0);
    assert_int_equal(kv_usage_ratio(w->kv) == 0.0, 1);
    world_free(w);
}

static void test_waiting_limit(void **state)
{
    (void)state;
    world *w = world_new(64, 512, 8);
    w->L.cap_waiting = 2;
    submit(w, 0, 5, 0, 0);
    submit(w, 1, 5, 0, 0);
    sched_seq x = {.n_tokens = 5, .kv_id = -1, .arrival = 99};
    assert_int_equal(sched_wait_push(&w->L, &x), ERR_RATE_LIMIT);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_first_then_chunked_prefill),
        cmocka_unit_test(test_max_seqs_and_budget),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_prefix_reuse_at_admission),
        cmocka_unit_test(test_preemption_tiny_pool),
        cmocka_unit_test(test_exhausted),
        cmocka_unit_test(test_waiting_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
