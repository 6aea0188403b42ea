/*
 * gateway — the request pipeline (floor 5). Every generation request walks
 * the same stages (ARCHITECTURE.md, "The request, end to end"):
 *
 *   api/ parses JSON into a gw_request
 *     -> guard in     guard_req_check_input per message: block (ERR_POLICY,
 *                     400 content_policy_violation + policy id), redact
 *                     (typed placeholders go to the model), flag (audit +
 *                     metric), off
 *     -> retrieve     optional: a collection (request extension or the
 *                     route/model option) is queried for the last user
 *                     message; each chunk passes guard_req_check_chunk
 *                     (dropped or quoted as data over the injection
 *                     threshold); kept chunks fill the prompt template and
 *                     become the request's citations
 *     -> execute      the backend (fr_backend: the local engine today)
 *     <- guard out    every delta goes through guard_stream_feed (hold-back
 *                     window; placeholders restored when the policy says so);
 *                     at the end guard_stream_finish; a block cancels the
 *                     generation and ends it with ERR_POLICY
 *   -> the caller's gw_out (api/ writes SSE or the JSON body)
 *
 * Objects:
 *   gw           the pipeline: guard engine (borrowed), retriever, RAG
 *                template and per-route/model options, metrics. Immutable
 *                after gw_new; shared by all threads.
 *   gw_run       one request in flight (heap, refcounted: the backend sink
 *                and the caller). Holds the guard request state (redaction
 *                map: memory only, wiped when the run is freed), the output
 *                filter and the citations.
 *   gw_engine    the local engine behind the backend seam (engine.c).
 *   gw_judge     the optional model judge of the guard (judge.c).
 *
 * Threads: gw_submit runs on an HTTP thread, or, when a judge may block it
 * (gw_defers), on one of the pipeline's workers (gw_post);
 * deltas arrive on the backend's thread; gw_run_cancel from any thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/base.h"
#include "engine/sched.h"
#include "gateway/backend.h"
#include "guard/guard.h"
#include "model/chat.h"
#include "model/tok.h"
#include "obs/obs.h"

/* ------------------------------------------------------------ engine -- */

typedef struct gw_engine gw_engine;

/*
 * The backend of one local model: s is its scheduler, vocab its tokenizer,
 * fam its chat template family (all borrowed; they must outlive the engine
 * and every generation). Returns 0 and *out (gw_engine_free), or ERR_NOMEM.
 */
int gw_engine_new(sched *s, const tok_vocab *vocab, chat_family fam, gw_engine **out,
                  err_msg *e) MUST_USE;
void gw_engine_free(gw_engine *g);
/* The engine as an fr_backend (valid while g lives). */
fr_backend gw_engine_backend(gw_engine *g);

/* ------------------------------------------------------------- judge -- */

typedef struct gw_judge gw_judge;

#define GW_JUDGE_TIMEOUT_MS_DEFAULT 10000

/*
 * The guard's model judge: target is a local model name (bound later with
 * gw_judge_bind) or the root of an OpenAI-compatible API
 * ("http://host:port/v1"; remote_model names the model there). It asks the
 * model a classification prompt (docs/guard.md) and reads "yes"/"no" or a
 * number in [0, 1] from the answer. Counts ferry_guard_judge_calls_total
 * {result=ok|error|unparsed} in metrics (may be NULL). Returns 0 and *out
 * (gw_judge_free after the guard engine using it), or ERR_INVAL / ERR_NOMEM.
 */
int gw_judge_new(const char *target, const char *remote_model, uint64_t timeout_ms,
                 obs_registry *metrics, gw_judge **out, err_msg *e) MUST_USE;
void gw_judge_free(gw_judge *j);
/* True when the target is a local model name (then bind it before serving). */
bool gw_judge_is_local(const gw_judge *j);
const char *gw_judge_target(const gw_judge *j);
/* Binds the local model's backend (start-up only). */
void gw_judge_bind(gw_judge *j, fr_backend be);
/* The guard_judge_fn: ctx is the gw_judge. Blocks up to the timeout. */
int gw_judge_score(void *ctx, const char *text, size_t len, double rule_score, double *out_score);

/* ---------------------------------------------------------- retrieval -- */

/* A retrieved chunk as the retriever reports it (borrowed for the callback). */
typedef struct gw_chunk {
    uint64_t chunk_id;
    const char *doc_id;
    size_t off, len;  // the chunk's bytes in its document
    const char *text; // (len) bytes
    double score;
} gw_chunk;

typedef void (*gw_chunk_fn)(void *ctx, const gw_chunk *c);

/*
 * The knowledge base as the pipeline sees it (the registry and its lock live
 * in api/collections.c): runs a hybrid query of top_k over collection and
 * calls each(each_ctx, chunk) per result, best first, under its lock. Returns
 * the number of results, ERR_NOT_FOUND (no such collection), or the query's
 * errors, with e set.
 */
typedef int (*gw_retrieve_fn)(void *ctx, const char *collection, const char *query, size_t len,
                              size_t top_k, gw_chunk_fn each, void *each_ctx, err_msg *e);

/* One source of an answer (owned by its run). index is its [n] in the prompt. */
typedef struct gw_citation {
    size_t index;
    uint64_t chunk_id;
    const char *doc_id;
    size_t off, len; // span in the document (bytes)
    double score;
    const char *text; // (text_len) the text the model saw (after the guard)
    size_t text_len;
} gw_citation;

/* -------------------------------------------------------------- pipeline -- */

#define GW_RAG_TOP_K_DEFAULT 5
#define GW_RAG_TOP_K_MAX 50
#define GW_RAG_ROUTES_MAX 32
#define GW_RAG_TEMPLATE_MAX ((size_t)64 << 10)
#define GW_NAME_MAX 128

/* The default RAG prompt template: {sources} and {question} are replaced. */
extern const char GW_RAG_TEMPLATE_DEFAULT[];

/* A route- or model-level RAG option: requests to target use collection. */
typedef struct gw_rag_route {
    char target[GW_NAME_MAX]; // a route path ("/v1/chat/completions") or a model name
    char collection[GW_NAME_MAX];
    size_t top_k;
} gw_rag_route;

typedef struct gw_config {
    const guard_engine *guard; // borrowed; NULL: no guard stage
    obs_registry *metrics;     // guard decision counters; may be NULL
    gw_retrieve_fn retrieve;   // NULL: RAG requests are refused (ERR_UNSUPPORTED)
    void *retrieve_ctx;
    const char *rag_template;       // copied; NULL: GW_RAG_TEMPLATE_DEFAULT
    const gw_rag_route *rag_routes; // copied
    size_t n_rag_routes;
    size_t workers; // threads for requests whose stages may block (a judge); 0: none
} gw_config;

#define GW_WORKERS_MAX 64
#define GW_QUEUE_MAX 1024 // requests waiting for a worker; one more is ERR_RATE_LIMIT

/*
 * Parses the config option "TARGET=COLLECTION[:TOP_K],..." into out (cap
 * entries). Returns the count, or ERR_INVAL with e naming the bad entry.
 */
int gw_rag_routes_parse(const char *s, gw_rag_route *out, size_t cap, err_msg *e) MUST_USE;

typedef struct gw gw;

/*
 * The pipeline. Registers ferry_guard_decisions_total{detector,action,stage}
 * in cfg->metrics (start-up only). Checks the template has {sources} and
 * {question} (ERR_INVAL). Returns 0 and *out (gw_free after the last run), or
 * ERR_INVAL / ERR_NOMEM with e set.
 */
int gw_new(const gw_config *cfg, gw **out, err_msg *e) MUST_USE;
/* Stops the workers (after the queued jobs ran) and frees p. NULL ok. */
void gw_free(gw *p);

/*
 * The pipeline's workers: when the guard has a model judge, gw_submit may
 * block for the judge's timeout, and HTTP threads must not; callers then run
 * gw_submit through gw_post on one of cfg->workers threads. gw_defers says
 * whether to. gw_post returns 0 (fn(arg) runs exactly once, on a worker),
 * ERR_RATE_LIMIT (GW_QUEUE_MAX jobs waiting) or ERR_UNAVAILABLE (no workers,
 * or stopping); on an error fn never runs. gw_stop runs what is queued, then
 * joins the workers (shutdown, before the backends go); later posts fail.
 */
bool gw_defers(const gw *p);
int gw_post(gw *p, void (*fn)(void *), void *arg) MUST_USE;
void gw_stop(gw *p);

/* The request as the pipeline sees it (the fr_request of the map). Every
 * pointer is borrowed for the duration of gw_submit. */
typedef struct gw_request {
    const char *request_id; // for audit records and logs
    const char *route;      // "/v1/chat/completions"
    const char *api_key;    // the bearer key; NULL when none
    const char *model;      // the model name the client asked for
    fr_backend backend;
    fr_gen_params gen;      // messages or prompt and sampling
    const char *collection; // request extension ferry.collection; NULL: route/model option
    size_t top_k;           // 0: the option's or GW_RAG_TOP_K_DEFAULT
} gw_request;

/* Where the guarded output goes. Called on the backend's thread; the callback
 * rule of fr_sink holds (one terminal call). On ERR_POLICY the error carries
 * the policy id (gw_run_policy_id). */
typedef struct gw_out {
    void *ctx;
    void (*on_delta)(void *ctx, const char *text, size_t len, const fr_logprobs *lp);
    void (*on_done)(void *ctx, fr_finish reason, const fr_usage *usage);
    void (*on_error)(void *ctx, const fr_error *err, const fr_usage *usage);
} gw_out;

typedef struct gw_run gw_run;

/* Why gw_submit refused, beside its ERR_* and e. */
typedef struct gw_refusal {
    char policy_id[GW_NAME_MAX]; // ERR_POLICY: the policy that blocked
    const char *param;           // the request field at fault, or NULL
    const char *code;            // OpenAI error code string, or NULL
} gw_refusal;

/*
 * Runs the stages up to execute and starts the generation. Returns 0 and
 * *run (the caller holds one reference: gw_run_release), after which the
 * callback rule holds for out; or an ERR_* with no callback: ERR_POLICY
 * (why->policy_id; answer with gw_policy_error_json), ERR_NOT_FOUND (unknown
 * collection, named in e), ERR_UNSUPPORTED (logprobs asked while the output
 * guard runs: token texts would bypass it; why->param "logprobs"), the backend's refusals
 * (ERR_TOO_LARGE, ERR_INVAL, ERR_RATE_LIMIT ...), ERR_NOMEM. a is the request arena (scratch for
 * rewritten messages). Thread: an HTTP thread, or a worker (gw_post).
 */
int gw_submit(gw *p, const gw_request *rq, arena *a, gw_out out, gw_run **run, gw_refusal *why,
              err_msg *e) MUST_USE;

/* Asks the backend to stop (client gone); the terminal callback still comes.
 * A no-op after the run ended. Thread: any, including inside out's callbacks. */
void gw_run_cancel(gw_run *r);
/* Drops the caller's reference. Thread: any. */
void gw_run_release(gw_run *r);
/* The sources used (n in *n), fixed at submit; valid while the caller holds
 * its reference. */
const gw_citation *gw_run_citations(const gw_run *r, size_t *n);
/* True when the request went through retrieval (citations are reported, maybe none). */
bool gw_run_has_rag(const gw_run *r);
/* The id of the policy applied, or NULL when no guard runs. */
const char *gw_run_policy_id(const gw_run *r);

/* The body of a blocked request (guard_error_json of the policy by id). */
int gw_policy_error_json(const gw *p, const char *policy_id, buf *out) MUST_USE;
