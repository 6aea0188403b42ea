/*
 * engine/embq — batches embedding requests through one engine thread per
 * embedding model.
 *
 *   io threads --embq_submit--> FIFO (mutex + condvar) --> embq thread
 *   embq thread: takes every waiting job up to max_batch_texts texts, runs ONE
 *                embedder call over all their texts, copies each job's rows
 *                back and calls its done callback.
 *
 * So concurrent /v1/embeddings requests and collection ingests share forward
 * passes instead of queueing on a lock, and no HTTP thread runs a model. When
 * a batch of several jobs fails (one text the model refuses), each job is
 * run again alone, so one bad input fails only its own request.
 *
 * Callback rule: when embq_submit returns 0, done runs exactly once, later, on
 * the embq thread (or on the thread calling embq_free, with ERR_CANCELLED).
 * The texts, lens, out and ntok of a job stay the caller's and must live until
 * then. When embq_submit fails, done never runs.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "obs/obs.h"

/*
 * The embedder: writes n rows of dim floats to out and, when ntok is not NULL,
 * each text's token count to ntok[i]. Called on the embq thread only.
 */
typedef int (*embq_fn)(void *ctx, const char *const *texts, const size_t *lens, size_t n,
                       float *out, size_t *ntok, err_msg *e);

/* A job's end: rc 0 (out and ntok filled) or a negative ERR_* with e. */
typedef void (*embq_done_fn)(void *ctx, int rc, const err_msg *e);

typedef struct embq_config {
    const char *name;       // model name for logs and the metrics' model label
    size_t dim;             // floats per embedding (> 0)
    size_t max_batch_texts; // texts per embedder call (default 64; a larger job runs alone)
    size_t max_waiting;     // jobs waiting at once (default 1024); one more: ERR_RATE_LIMIT
    obs_registry *metrics;  // NULL: no metrics
} embq_config;

/* The defaults above (name and dim must be set by the caller). */
embq_config embq_config_default(void);

typedef struct embq embq;

/*
 * Starts the queue's thread. fn/fn_ctx must stay valid until embq_free.
 * Metrics (when cfg->metrics): ferry_embedding_requests_total{model},
 * ferry_embedding_texts_total{model}, ferry_embedding_batch_texts{model}
 * (histogram of texts per embedder call), ferry_embedding_waiting{model}.
 * Returns 0 and *out, or ERR_INVAL / ERR_NOMEM / ERR_IO (thread).
 */
int embq_new(const embq_config *cfg, embq_fn fn, void *fn_ctx, embq **out, err_msg *e) MUST_USE;

/*
 * Stops the thread after the batch in progress; jobs still waiting end with
 * ERR_CANCELLED (their done runs on this thread). NULL ok.
 */
void embq_free(embq *q);

/*
 * Queues n texts (n >= 1) whose rows go to out[0 .. n*dim) and token counts
 * to ntok[0..n) (NULL: not wanted). Returns 0 (done will run), ERR_INVAL,
 * ERR_RATE_LIMIT (max_waiting reached) or ERR_CANCELLED (stopping).
 * Thread: any.
 */
int embq_submit(embq *q, const char *const *texts, const size_t *lens, size_t n, float *out,
                size_t *ntok, embq_done_fn done, void *ctx) MUST_USE;

/* embq_submit, then waits for the job: returns its rc (e gets its message). */
int embq_embed(embq *q, const char *const *texts, const size_t *lens, size_t n, float *out,
               size_t *ntok, err_msg *e) MUST_USE;
