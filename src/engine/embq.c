/*
 * engine/embq — the embedding batcher (contract in embq.h).
 *
 * Jobs sit in a singly linked FIFO under q->mu. The thread takes a prefix of
 * the FIFO whose texts add up to at most max_batch_texts (always at least one
 * job), gathers their text pointers into one array, calls the embedder once
 * into a scratch matrix, and scatters the rows back. Scratch arrays grow to
 * the largest batch seen and are reused.
 */
#include "engine/embq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

typedef struct job {
    struct job *next;
    const char *const *texts;
    const size_t *lens;
    size_t n;
    float *out;
    size_t *ntok;
    embq_done_fn done;
    void *ctx;
} job;

struct embq {
    embq_config cfg;
    char name[128];
    embq_fn fn;
    void *fn_ctx;
    pthread_t thread;
    pthread_mutex_t mu; // guards head, tail, waiting, stop
    pthread_cond_t cv;
    job *head, *tail;
    size_t waiting;
    bool stop;
    /* The thread's scratch (only it touches these). */
    const char **bt;
    size_t *bl, *bn;
    float *bo;
    size_t cap_texts;
    /* Metrics (NULL when none). */
    obs_series *m_req, *m_texts, *m_batch, *m_wait;
};

static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

embq_config embq_config_default(void)
{
    return (embq_config){.name = "", .dim = 0, .max_batch_texts = 64, .max_waiting = 1024};
}

static int grow(embq *q, size_t n, err_msg *e)
{
    if (n <= q->cap_texts)
        return 0;
    size_t rows;
    if (!size_mul_ok(n, q->cfg.dim, &rows) || !size_mul_ok(rows, sizeof(float), &(size_t){0}))
        return err_set(e, ERR_OVERFLOW, "embedding batch too large");
    const char **bt = realloc(q->bt, n * sizeof *bt);
    if (bt)
        q->bt = bt;
    size_t *bl = realloc(q->bl, n * sizeof *bl);
    if (bl)
        q->bl = bl;
    size_t *bn = realloc(q->bn, n * sizeof *bn);
    if (bn)
        q->bn = bn;
    float *bo = realloc(q->bo, rows * sizeof *bo);
    if (bo)
        q->bo = bo;
    if (!bt || !bl || !bn || !bo)
        return err_set(e, ERR_NOMEM, "embedding batch: out of memory");
    q->cap_texts = n;
    return 0;
}

/* Runs one embedder call over jobs first..(count of them) linked by next. */
static int run_batch(embq *q, job *first, size_t njobs, err_msg *e)
{
    size_t total = 0;
    job *j = first;
    for (size_t k = 0; k < njobs; k++, j = j->next)
        total += j->n;
    int rc = grow(q, total, e);
    if (rc < 0)
        return rc;
    size_t at = 0;
    j = first;
    for (size_t k = 0; k < njobs; k++, j = j->next) {
        memcpy(q->bt + at, j->texts, j->n * sizeof *q->bt);
        memcpy(q->bl + at, j->lens, j->n * sizeof *q->bl);
        at += j->n;
    }
    err_clear(e);
    rc = q->fn(q->fn_ctx, q->bt, q->bl, total, q->bo, q->bn, e);
    if (rc < 0)
        return rc;
    if (q->m_batch)
        obs_hist_observe(q->m_batch, (double)total);
    at = 0;
    j = first;
    for (size_t k = 0; k < njobs; k++, j = j->next) {
        memcpy(j->out, q->bo + at * q->cfg.dim, j->n * q->cfg.dim * sizeof *j->out);
        if (j->ntok)
            memcpy(j->ntok, q->bn + at, j->n * sizeof *j->ntok);
        at += j->n;
    }
    return 0;
}

static void finish(job *j, int rc, const err_msg *e)
{
    j->done(j->ctx, rc, e);
    free(j);
}

static void *thread_main(void *arg)
{
    embq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->stop)
            break;
        // take a FIFO prefix within the text budget (at least one job)
        job *first = q->head, *last = first;
        size_t njobs = 1, texts = first->n;
        while (last->next && texts + last->next->n <= q->cfg.max_batch_texts) {
            last = last->next;
            texts += last->n;
            njobs++;
        }
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        q->waiting -= njobs;
        if (q->m_wait)
            obs_gauge_set(q->m_wait, (double)q->waiting);
        pthread_mutex_unlock(&q->mu);

        err_msg e;
        int rc = run_batch(q, first, njobs, &e);
        if (rc < 0 && njobs > 1) {
            // isolate the failure: every job alone, so only the bad one fails
            for (job *j = first, *next; j; j = next) {
                next = j->next;
                j->next = NULL;
                err_msg je;
                int jr = run_batch(q, j, 1, &je);
                finish(j, jr, &je);
            }
        } else {
            for (job *j = first, *next; j; j = next) {
                next = j->next;
                finish(j, rc, &e);
            }
        }
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Frees q's memory and sync objects (its thread is not running). */
static void destroy(embq *q)
{
    free(q->bt);
    free(q->bl);
    free(q->bn);
    free(q->bo);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int embq_new(const embq_config *cfg, embq_fn fn, void *fn_ctx, embq **out, err_msg *e)
{
    *out = NULL;
    if (!cfg || !fn || cfg->dim == 0 || cfg->max_batch_texts == 0 || cfg->max_waiting == 0)
        return err_set(e, ERR_INVAL, "embedding queue: dim, max_batch_texts and max_waiting "
                                     "must be positive");
    embq *q = calloc(1, sizeof *q);
    if (!q)
        return err_set(e, ERR_NOMEM, "embedding queue: out of memory");
    q->cfg = *cfg;
    snprintf(q->name, sizeof q->name, "%s", cfg->name ? cfg->name : "");
    q->cfg.name = q->name;
    q->fn = fn;
    q->fn_ctx = fn_ctx;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    int rc = grow(q, cfg->max_batch_texts, e);
    if (rc == 0 && cfg->metrics) {
        static const char *const lm[] = {"model"};
        const char *v[] = {q->name};
        obs_family *f[4] = {
            obs_family_new(cfg->metrics, OBS_COUNTER, "ferry_embedding_requests_total",
                           "Embedding jobs completed (requests and collection writes).", lm, 1,
                           NULL, 0, 16, e),
            obs_family_new(cfg->metrics, OBS_COUNTER, "ferry_embedding_texts_total",
                           "Texts embedded.", lm, 1, NULL, 0, 16, e),
            obs_family_new(cfg->metrics, OBS_HISTOGRAM, "ferry_embedding_batch_texts",
                           "Texts per embedding forward call (batched across requests).", lm,
                           1, batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0], 16, e),
            obs_family_new(cfg->metrics, OBS_GAUGE, "ferry_embedding_waiting",
                           "Embedding jobs waiting for the model.", lm, 1, NULL, 0, 16, e)};
        if (!f[0] || !f[1] || !f[2] || !f[3])
            rc = e->code;
        else {
            q->m_req = obs_series_get(f[0], v);
            q->m_texts = obs_series_get(f[1], v);
            q->m_batch = obs_series_get(f[2], v);
            q->m_wait = obs_series_get(f[3], v);
        }
    }
    if (rc == 0 && pthread_create(&q->thread, NULL, thread_main, q) != 0)
        rc = err_set(e, ERR_IO, "embedding queue: cannot start its thread: %s", strerror(errno));
    if (rc < 0) {
        destroy(q);
        return rc;
    }
    LOG_INFO("embq", "embedding queue for %s: batches of up to %zu texts", q->name,
             q->cfg.max_batch_texts);
    *out = q;
    return 0;
}

void embq_free(embq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    job *rest = q->head;
    q->head = q->tail = NULL;
    q->waiting = 0;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    err_msg e;
    err_set(&e, ERR_CANCELLED, "the embedding model is shutting down");
    for (job *j = rest, *next; j; j = next) {
        next = j->next;
        finish(j, ERR_CANCELLED, &e);
    }
    destroy(q);
}

int embq_submit(embq *q, const char *const *texts, const size_t *lens, size_t n, float *out,
                size_t *ntok, embq_done_fn done, void *ctx)
{
    if (!q || !texts || !lens || n == 0 || !out || !done)
        return ERR_INVAL;
    job *j = malloc(sizeof *j);
    if (!j)
        return ERR_NOMEM;
    *j = (job){NULL, texts, lens, n, out, ntok, done, ctx};
    pthread_mutex_lock(&q->mu);
    int rc = q->stop ? ERR_CANCELLED : q->waiting >= q->cfg.max_waiting ? ERR_RATE_LIMIT : 0;
    if (rc == 0) {
        if (q->tail)
            q->tail->next = j;
        else
            q->head = j;
        q->tail = j;
        q->waiting++;
        if (q->m_wait)
            obs_gauge_set(q->m_wait, (double)q->waiting);
        if (q->m_req) {
            obs_counter_add(q->m_req, 1);
            obs_counter_add(q->m_texts, (double)n);
        }
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (rc < 0)
        free(j);
    return rc;
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    err_msg e;
} waiter;

static void wake(void *ctx, int rc, const err_msg *e)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (rc < 0 && e)
        w->e = *e;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int embq_embed(embq *q, const char *const *texts, const size_t *lens, size_t n, float *out,
               size_t *ntok, err_msg *e)
{
    waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, {0}};
    int rc = embq_submit(q, texts, lens, n, out, ntok, wake, &w);
    if (rc < 0)
        return err_set(e, rc, rc == ERR_RATE_LIMIT ? "the embedding queue is full"
                              : rc == ERR_CANCELLED ? "the embedding model is shutting down"
                                                    : "cannot queue the embedding job");
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (w.rc < 0)
        *e = w.e;
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return w.rc;
}
