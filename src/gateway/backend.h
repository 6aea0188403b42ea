/*
 * gateway/backend — the seam between the pipeline and whatever produces
 * tokens: the local engine (gateway/engine.c wraps engine/sched) or, later, a
 * remote provider (upstream/). The pipeline only ever talks to an fr_backend.
 *
 * Tokens flow one way: backend thread -> fr_sink -> output guard -> the
 * caller's writer. Sinks run on the backend's thread (the scheduler thread for
 * the engine) and must not block.
 *
 * Callback rule (as libuv's): when generate returns 0, the sink gets any
 * number of on_delta calls and then exactly one terminal call (on_done or
 * on_error), and nothing after it; when generate returns an error, the sink is
 * never called.
 *
 * Handle lifetime: *out is stored before the first callback can run. The
 * handle stays valid until the terminal callback has returned; cancel may be
 * called at any time before the terminal callback has *started* (callers
 * serialize the two with their own lock: see gateway/pipeline.c), including
 * from inside on_delta. After cancel the terminal callback still comes
 * (on_error with ERR_CANCELLED unless the generation had already ended).
 *
 * Differences from the map in ARCHITECTURE.md: generate takes an err_msg for
 * the detail of a synchronous refusal, and backends are passed as a value
 * pair {ops, self} (fr_backend).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "model/chat.h"
#include "model/sample.h"

typedef enum fr_finish {
    FR_FINISH_STOP = 0,   // end-of-generation token or stop string
    FR_FINISH_LENGTH = 1, // max_tokens or the context
} fr_finish;

typedef struct fr_usage {
    size_t prompt_tokens;
    size_t completion_tokens;
    size_t cached_tokens;
} fr_usage;

typedef struct fr_error {
    int code;        // negative ERR_*
    const char *msg; // one sentence; borrowed for the callback
} fr_error;

#define FR_TOP_LOGPROBS_MAX SAMPLE_TOP_LOGPROBS_MAX

/* One generated token's log-probabilities with token texts (borrowed for the
 * callback). */
typedef struct fr_logprobs {
    const char *text; // (n) the token's text
    size_t n;
    float logprob;
    int n_top;
    const char *top_text[FR_TOP_LOGPROBS_MAX];
    size_t top_n[FR_TOP_LOGPROBS_MAX];
    float top_logprob[FR_TOP_LOGPROBS_MAX];
} fr_logprobs;

typedef struct fr_sink { /* where a generation streams to */
    void *ctx;
    /* text may be empty (a token held back by the backend); lp NULL unless asked. */
    void (*on_delta)(void *ctx, const char *text, size_t len, const fr_logprobs *lp);
    void (*on_done)(void *ctx, fr_finish reason, const fr_usage *usage);
    void (*on_error)(void *ctx, const fr_error *err, const fr_usage *usage);
} fr_sink;

/* What to generate. Everything is borrowed for the duration of generate. */
typedef struct fr_gen_params {
    bool is_chat;         // msgs (chat template applied) or prompt (raw text)
    const chat_msg *msgs; // (n_msgs)
    size_t n_msgs;
    const char *prompt; // (prompt_len)
    size_t prompt_len;
    sample_params sp;     // max_tokens 0: up to the end of the context
    int priority;         // higher first
    uint64_t deadline_ns; // clock_mono_ns() deadline; 0 = none
    bool ignore_eos;
} fr_gen_params;

typedef struct fr_gen *fr_handle;

typedef struct fr_embeddings {
    float *data; // (n, dim), malloc'ed: the caller frees
    size_t n, dim;
} fr_embeddings;

typedef struct fr_backend_ops {
    /*
     * Starts a generation streaming to sink. Returns 0 and *out (see the
     * handle rules above), or a negative ERR_* with e set and no callback:
     * ERR_TOO_LARGE (the prompt can never fit; e names the context length),
     * ERR_INVAL (a bad sampling parameter), ERR_RATE_LIMIT (queue full),
     * ERR_UNAVAILABLE (stopping), ERR_NOMEM. Thread: any; never blocks.
     */
    int (*generate)(void *self, const fr_gen_params *p, fr_sink sink, fr_handle *out, err_msg *e);
    /* Client went away: stop and free everything (the terminal callback still comes). */
    void (*cancel)(void *self, fr_handle h);
    /* Embeds n texts into *out. Returns 0 or an ERR_* (ERR_UNSUPPORTED: this backend
     * does not embed). */
    int (*embed)(void *self, const char *const *texts, size_t n, fr_embeddings *out, err_msg *e);
} fr_backend_ops;

/* A backend: its operations and its state. Both outlive every generation. */
typedef struct fr_backend {
    const fr_backend_ops *ops;
    void *self;
} fr_backend;
