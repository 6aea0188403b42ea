/* Unit tests for engine/embq: the embedding batcher. The embedder is the real
 * built-in lexical embedder (model/lex), wrapped to record the batch sizes it
 * is called with, to hold its first call until jobs have piled up, and to
 * refuse a marked text (as a model refuses an input it cannot take). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/embq.h"
#include "model/lex.h"

#define DIM 384

typedef struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hold;        // the first call blocks until released
    bool holding;     // the first call is blocked now
    size_t calls, max_n, total;
} rec;

static int lex_fn(void *ctx, const char *const *texts, const size_t *lens, size_t n,
                  float *out, size_t *ntok, err_msg *e)
{
    rec *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->calls++;
    r->total += n;
    if (n > r->max_n)
        r->max_n = n;
    if (r->hold) {
        r->holding = true;
        pthread_cond_broadcast(&r->cv);
        while (r->hold)
            pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++)
        if (lens[i] == 3 && memcmp(texts[i], "BAD", 3) == 0)
            return err_set(e, ERR_TOO_LARGE, "text %zu refused", i);
    for (size_t i = 0; i < n; i++) {
        lex_embed(texts[i], lens[i], out + i * DIM, DIM);
        if (ntok)
            ntok[i] = lex_count_terms(texts[i], lens[i]);
    }
    return 0;
}

static rec *rec_new(bool hold)
{
    rec *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->hold = hold;
    return r;
}

static void rec_wait_holding(rec *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->holding)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void rec_release(rec *r)
{
    pthread_mutex_lock(&r->mu);
    r->hold = false;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void rec_free(rec *r)
{
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static embq *new_q(rec *r, size_t max_batch, size_t max_waiting)
{
    embq_config c = embq_config_default();
    c.name = "lex-test";
    c.dim = DIM;
    c.max_batch_texts = max_batch;
    c.max_waiting = max_waiting;
    embq *q = NULL;
    err_msg e;
    assert_int_equal(embq_new(&c, lex_fn, r, &q, &e), 0);
    return q;
}

static void assert_row(const float *got, const char *text)
{
    float want[DIM];
    lex_embed(text, strlen(text), want, DIM);
    assert_memory_equal(got, want, sizeof want);
}

static void test_single_blocking(void **st)
{
    (void)st;
    rec *r = rec_new(false);
    embq *q = new_q(r, 64, 16);
    const char *t[] = {"hello world", "a second, longer text about rivers"};
    size_t l[] = {strlen(t[0]), strlen(t[1])}, nt[2];
    float out[2 * DIM];
    err_msg e;
    assert_int_equal(embq_embed(q, t, l, 2, out, nt, &e), 0);
    assert_row(out, t[0]);
    assert_row(out + DIM, t[1]);
    assert_int_equal(nt[0], lex_count_terms(t[0], l[0]));
    assert_int_equal(r->calls, 1);
    embq_free(q);
    rec_free(r);
}

typedef struct slot {
    const char *t[3];
    size_t l[3];
    float out[3 * DIM];
    atomic_int rc;
    atomic_bool done;
} slot;

static void on_done(void *ctx, int rc, const err_msg *e)
{
    (void)e;
    slot *s = ctx;
    atomic_store(&s->rc, rc);
    atomic_store(&s->done, true);
}

static void wait_done(slot *s)
{
    for (int i = 0; i < 5000 && !atomic_load(&s->done); i++)
        usleep(1000);
    assert_true(atomic_load(&s->done));
}

/* Jobs that arrive while the model is busy share the next call, FIFO, within
 * the text budget; every row lands in its own job. */
static void test_batches_across_jobs(void **st)
{
    (void)st;
    rec *r = rec_new(true);
    embq *q = new_q(r, 8, 64);
    static char words[12][32];
    slot *s = calloc(6, sizeof *s);
    // job 0 is taken alone and held; jobs 1..5 (3 texts each) pile up behind it
    for (int j = 0; j < 6; j++) {
        for (int k = 0; k < 3; k++) {
            int w = (j * 3 + k) % 12;
            snprintf(words[w], sizeof words[w], "text number %d about %s", w,
                     w % 2 ? "cats" : "ships");
            s[j].t[k] = words[w];
            s[j].l[k] = strlen(words[w]);
        }
        assert_int_equal(embq_submit(q, s[j].t, s[j].l, 3, s[j].out, NULL, on_done, &s[j]), 0);
        if (j == 0)
            rec_wait_holding(r);
    }
    rec_release(r);
    for (int j = 0; j < 6; j++) {
        wait_done(&s[j]);
        assert_int_equal(atomic_load(&s[j].rc), 0);
        for (int k = 0; k < 3; k++)
            assert_row(s[j].out + k * DIM, s[j].t[k]);
    }
    // 1 call for job 0, then 5 jobs of 3 texts in batches of <= 8 texts: 2+2+1 jobs
    assert_int_equal(r->calls, 4);
    assert_int_equal(r->max_n, 6);
    assert_int_equal(r->total, 18);
    embq_free(q);
    free(s);
    rec_free(r);
}

/* A batch that fails is retried job by job: only the job with the bad text fails. */
static void test_failure_isolated(void **st)
{
    (void)st;
    rec *r = rec_new(true);
    embq *q = new_q(r, 64, 64);
    slot *s = calloc(4, sizeof *s);
    const char *texts[4] = {"first", "good one", "BAD", "also good"};
    for (int j = 0; j < 4; j++) {
        s[j].t[0] = texts[j];
        s[j].l[0] = strlen(texts[j]);
        assert_int_equal(embq_submit(q, s[j].t, s[j].l, 1, s[j].out, NULL, on_done, &s[j]), 0);
        if (j == 0)
            rec_wait_holding(r);
    }
    rec_release(r);
    for (int j = 0; j < 4; j++)
        wait_done(&s[j]);
    assert_int_equal(atomic_load(&s[0].rc), 0);
    assert_int_equal(atomic_load(&s[1].rc), 0);
    assert_int_equal(atomic_load(&s[2].rc), ERR_TOO_LARGE);
    assert_int_equal(atomic_load(&s[3].rc), 0);
    assert_row(s[1].out, "good one");
    assert_row(s[3].out, "also good");
    embq_free(q);
    free(s);
    rec_free(r);
}

static void *free_q(void *q)
{
    embq_free(q);
    return NULL;
}

/* The waiting limit refuses one job too many; freeing cancels what waits. */
static void test_limit_and_cancel(void **st)
{
    (void)st;
    rec *r = rec_new(true);
    embq *q = new_q(r, 1, 2);
    slot *s = calloc(4, sizeof *s);
    for (int j = 0; j < 4; j++) {
        s[j].t[0] = "x";
        s[j].l[0] = 1;
    }
    assert_int_equal(embq_submit(q, s[0].t, s[0].l, 1, s[0].out, NULL, on_done, &s[0]), 0);
    rec_wait_holding(r); // job 0 is running, no longer waiting
    assert_int_equal(embq_submit(q, s[1].t, s[1].l, 1, s[1].out, NULL, on_done, &s[1]), 0);
    assert_int_equal(embq_submit(q, s[2].t, s[2].l, 1, s[2].out, NULL, on_done, &s[2]), 0);
    assert_int_equal(embq_submit(q, s[3].t, s[3].l, 1, s[3].out, NULL, on_done, &s[3]),
                     ERR_RATE_LIMIT);
    assert_int_equal(embq_submit(q, s[3].t, s[3].l, 0, s[3].out, NULL, on_done, &s[3]),
                     ERR_INVAL);
    // free from another thread while the first call is held, then release it
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_q, q), 0);
    // the queue refuses new work once embq_free has taken the waiting jobs
    int rc = 0;
    for (int i = 0; i < 5000; i++) {
        rc = embq_submit(q, s[3].t, s[3].l, 1, s[3].out, NULL, on_done, &s[3]);
        if (rc == ERR_CANCELLED)
            break;
        assert_int_equal(rc, ERR_RATE_LIMIT);
        usleep(1000);
    }
    assert_int_equal(rc, ERR_CANCELLED);
    rec_release(r);
    pthread_join(t, NULL);
    assert_true(atomic_load(&s[0].done));
    assert_int_equal(atomic_load(&s[0].rc), 0);
    assert_int_equal(atomic_load(&s[1].rc), ERR_CANCELLED);
    assert_int_equal(atomic_load(&s[2].rc), ERR_CANCELLED);
    assert_false(atomic_load(&s[3].done));
    free(s);
    rec_free(r);
}

static void test_bad_config(void **st)
{
    (void)st;
    embq_config c = embq_config_default();
    embq *q = (embq *)1;
    err_msg e;
    assert_int_equal(embq_new(&c, lex_fn, NULL, &q, &e), ERR_INVAL); // dim 0
    assert_null(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_blocking),
        cmocka_unit_test(test_batches_across_jobs),
        cmocka_unit_test(test_failure_isolated),
        cmocka_unit_test(test_limit_and_cancel),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
