/*
 * engine/sched — the continuous-batching scheduler: one thread per loaded
 * model runs the step loop over many requests.
 *
 *   io threads --sched_submit--> MPSC submit stack + eventfd --> sched thread
 *   sched thread: drain submissions, reap cancelled/expired requests,
 *                 sched_plan_step (decode first, chunked prefill, admission,
 *                 preemption), ONE llama_forward for the whole batch,
 *                 sample per sequence (own seeded PRNG), detokenize, deliver
 *                 to the request's sink; finished sequences leave the batch.
 *
 * Hand-offs: submissions go through a lock-free MPSC stack (Treiber push,
 * the scheduler takes the whole stack with one atomic exchange) and an eventfd
 * wake-up; cancellation is an atomic flag on the request plus a wake-up. Tokens
 * go out through the request's sink, called on the scheduler thread: sinks must
 * not block (they queue bytes and wake their connection).
 *
 * Callback rule: when sched_submit returns 0, exactly one terminal callback
 * (on_done or on_error) runs later, after any on_delta calls, and nothing runs
 * after it. When it returns an error, no callback ever runs.
 *
 * Request lifetime: sched_submit hands back a handle holding a reference; the
 * scheduler holds another until the terminal callback has returned. The caller
 * drops its reference with sched_handle_release (after the terminal callback,
 * or at any time after sched_cancel).
 *
 * Admission control: at most max_waiting requests may wait (submitted, not yet
 * running); one more gets ERR_RATE_LIMIT. A request whose prompt can never fit
 * (context length or the whole KV pool) gets ERR_TOO_LARGE naming the limit.
 * A request with a deadline still running at that time ends with on_error
 * (ERR_TIMEOUT). priority: higher is scheduled first (default 0).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"
#include "engine/kv.h"
#include "obs/obs.h"
#include "model/llama.h"
#include "model/sample.h"
#include "model/tok.h"

typedef enum sched_finish {
    SCHED_FINISH_STOP = 0,   // end-of-generation token or stop string
    SCHED_FINISH_LENGTH = 1, // max_tokens, context length, or KV pool
} sched_finish;

typedef struct sched_usage {
    size_t prompt_tokens;
    size_t completion_tokens;
    size_t cached_tokens;  // prompt tokens found in the prefix cache at admission
    uint64_t queued_ns;    // submit to first admission
    uint64_t ttft_ns;      // submit to first token
    uint64_t e2e_ns;       // submit to finish
} sched_usage;

/* One generated token as delivered. text may be empty while a multi-byte
 * character or a possible stop string is held back. */
typedef struct sched_delta {
    int32_t token;
    const char *text; // borrowed for the duration of the callback
    size_t len;
    const sample_result *lp; // logprobs; NULL unless requested
} sched_delta;

typedef struct sched_sink {
    void *ctx;
    void (*on_delta)(void *ctx, const sched_delta *d);
    void (*on_done)(void *ctx, sched_finish reason, const sched_usage *u);
    void (*on_error)(void *ctx, int code, const char *msg, const sched_usage *u);
} sched_sink;

/*
 * The engine's metric families in a registry, shared by every model's
 * scheduler (label model; ferry_requests_finished_total also has reason):
 * ferry_time_to_first_token_seconds, ferry_time_per_output_token_seconds,
 * ferry_e2e_request_latency_seconds (histograms), ferry_prompt_tokens_total,
 * ferry_generation_tokens_total, ferry_prefix_cache_hits_total,
 * ferry_prefix_cache_queries_total (tokens), ferry_preemptions_total,
 * ferry_scheduler_steps_total,
 * ferry_requests_finished_total{reason=stop|length|abort|error} (counters),
 * ferry_requests_running, ferry_requests_waiting, ferry_kv_cache_usage_ratio,
 * ferry_kv_cache_fragmentation_ratio (gauges).
 */
typedef struct sched_metrics sched_metrics;

/* Registers the families in r (start-up only). Returns 0 and *out (free with
 * sched_metrics_free after every scheduler using it), or an ERR_* with e. */
int sched_metrics_new(obs_registry *r, sched_metrics **out, err_msg *e) MUST_USE;
void sched_metrics_free(sched_metrics *m);

typedef struct sched_config {
    size_t max_batch_tokens; // tokens per step (default 512)
    size_t max_seqs;         // running sequences (default 64)
    size_t max_waiting;      // queued requests before ERR_RATE_LIMIT (default 256)
    size_t kv_cache_mb;      // KV pool (default 256)
    size_t kv_cache_bytes;   // KV pool in bytes, overrides kv_cache_mb when non-zero
    size_t block_tokens;     // KV block size (default 16)
    kv_type kv_type;         // KV element type: KV_TYPE_F16 (default) or KV_TYPE_Q8_0
    bool prefix_cache;       // default true
    size_t max_ctx;          // context length; 0 = the model's training context
    pool *pool;              // borrowed compute pool (one caller at a time: not shared
                             // between schedulers); NULL = own pool of n_threads
    int n_threads;           // own pool's threads; 0 = cores
    const tok_vocab *vocab;  // borrowed, must outlive the scheduler: detokenization
                             // and end-of-generation tokens (tok_vocab_is_eog)
    const char *name;        // model name for logs and the metric label (copied)
    sched_metrics *metrics;  // borrowed, may be NULL (no metrics)
} sched_config;

/* The defaults beside each field. */
sched_config sched_config_default(void);

typedef struct sched sched;
typedef struct sched_handle sched_handle;

/*
 * Creates the scheduler of model m (taking a reference): KV pool, forward
 * context, sampling scratch, all allocated for the configured worst case, and
 * starts its thread. Returns 0 and *out (stop and free with sched_free), or
 * ERR_INVAL / ERR_NOMEM / ERR_IO with detail in e.
 */
int sched_new(model *m, const sched_config *cfg, sched **out, err_msg *e) MUST_USE;

/*
 * Stops the thread (requests still queued or running end with on_error
 * ERR_UNAVAILABLE) and frees everything. NULL ok. Not from a sink.
 */
void sched_free(sched *s);

typedef struct sched_request {
    const int32_t *prompt; // (n_prompt) token ids, copied
    size_t n_prompt;       // >= 1
    sample_params params;  // copied (bias, stop strings too)
    int priority;          // higher first; default 0
    uint64_t deadline_ns;  // clock_mono_ns() deadline; 0 = none
    bool ignore_eos;       // keep generating past end-of-generation tokens
    sched_sink sink;
} sched_request;

/*
 * Queues a request. Validates it synchronously: prompt tokens in range,
 * sampling parameters (sample_seq_new), and that prompt + 1 token can ever fit
 * (ERR_TOO_LARGE naming the context length or the KV pool); ERR_RATE_LIMIT
 * when max_waiting requests are already waiting; ERR_UNAVAILABLE when the
 * scheduler is stopping. Returns 0 and *out (release with
 * sched_handle_release); *out is stored before the scheduler can see the
 * request, so sink callbacks may read it from there (e.g. to cancel). On error
 * *out is NULL. Any thread; never blocks on the scheduler.
 */
int sched_submit(sched *s, const sched_request *r, sched_handle **out, err_msg *e) MUST_USE;

/*
 * Asks the scheduler to drop the request: within one step its blocks are
 * freed and the terminal callback on_error(ERR_CANCELLED) runs, unless the
 * request had already ended. Any thread; does not block.
 */
void sched_cancel(sched *s, sched_handle *h);

/* Drops the caller's reference. Any thread. */
void sched_handle_release(sched_handle *h);

/* A cumulative latency histogram (Prometheus semantics: count[i] = observations
 * <= bound[i]; the +Inf bucket is n). Bounds are the SCHED_*_BUCKETS lists. */
#define SCHED_HIST_MAX 16
typedef struct sched_hist {
    uint64_t count[SCHED_HIST_MAX];
    uint64_t n;
    double sum; // seconds
} sched_hist;

/* Bucket bounds in seconds (vLLM's, so dashboards carry over); n_bounds each. */
extern const double sched_ttft_bounds[];
extern const double sched_tpot_bounds[];
extern const double sched_e2e_bounds[];
extern const size_t sched_ttft_n_bounds, sched_tpot_n_bounds, sched_e2e_n_bounds;

/* A snapshot of the scheduler's state, for metrics and tests. */
typedef struct sched_stats {
    size_t n_running;
    size_t n_waiting;        // including preempted, plus not yet drained
    double kv_usage;         // kv_usage_ratio
    double kv_fragmentation; // kv_fragmentation (at the last step)
    size_t kv_blocks;
    uint64_t prefix_queries_tokens, prefix_hits_tokens;
    uint64_t preemptions;
    uint64_t steps;
    uint64_t prompt_tokens, generation_tokens;
    uint64_t finished_stop, finished_length, finished_cancelled, finished_error;
    sched_hist ttft;  // submit to first token, per request that produced one
    sched_hist tpot;  // (e2e - ttft) / (tokens - 1), per request with >= 2 tokens
    sched_hist e2e;   // submit to end, per finished request (any reason)
} sched_stats;

/* Copies the latest snapshot (published by the scheduler after each step).
 * Any thread. */
void sched_get_stats(sched *s, sched_stats *out);

/* The model's n_vocab and the resolved context length. Any thread. */
int32_t sched_n_vocab(const sched *s);
size_t sched_max_ctx(const sched *s);
