/*
 * api/openai_serve — the OpenAI-compatible endpoints over local models:
 *   GET  /v1/models             loaded models (context length, quant type,
 *                               owner "ferry", chat template family)
 *   POST /v1/chat/completions   messages -> chat template -> scheduler
 *   POST /v1/completions        prompt -> scheduler
 * plus the registry of loaded models (`ferry serve --model NAME=PATH`, once
 * per model), each with its own scheduler thread.
 *
 * Request flow: the handler (an http pool thread) parses and validates the
 * body (400 naming the param), finds the model (404 model_not_found), and
 * hands a gw_request to the pipeline (gateway/gateway.h): input guard (400
 * content_policy_violation with the policy id), retrieval for the "ferry"
 * extension or the route/model option (404 naming an unknown collection),
 * then the model's backend (the engine adapter: chat template, tokenization,
 * the scheduler; 429 with Retry-After when its queue is full, 400 when the
 * prompt can never fit). Guarded tokens come back on the scheduler thread
 * through the request's gw_out, which appends SSE events to the stream
 * (stream: true) or collects the answer and responds at the end; a RAG
 * answer carries "ferry": {"citations": [...]} in the body, or as the last
 * event before [DONE]. An output-guard block ends the stream with an error
 * event (or answers 400). A stream write that finds the client gone cancels
 * the request, so its KV blocks are freed at the next step.
 *
 * A request context (heap, refcounted: handler + sink) outlives the HTTP
 * request arena, because scheduler callbacks may arrive after the
 * connection is gone. Its mutex orders the handler attaching the response
 * (stream or deferred answer) against callbacks that arrive first.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "engine/sched.h"
#include "gateway/backend.h"
#include "http/http.h"
#include "model/chat.h"

#define API_MODELS_MAX 16

typedef struct api_model_spec {
    const char *name;          // the "model" clients ask for
    const char *path;          // GGUF file
    const char *chat_template; // family name overriding the GGUF template; NULL = detect
} api_model_spec;

typedef struct api_models api_models;

/*
 * Loads each model (weights, tokenizer, chat family) and starts its scheduler
 * with base (vocab and name filled in per model; base->pool must be NULL or
 * used by one model only). Returns 0 and *out (api_models_free), or an ERR_*
 * with e naming the model and the problem.
 */
int api_models_load(const api_model_spec *specs, size_t n, const sched_config *base,
                    api_models **out, err_msg *e) MUST_USE;

/* Stops the schedulers (pending requests end with 503) and frees all. NULL ok. */
void api_models_free(api_models *ms);

/* Number of models and the scheduler of model i (for metrics and tests). */
size_t api_models_count(const api_models *ms);
sched *api_models_sched(const api_models *ms, size_t i);
const char *api_models_name(const api_models *ms, size_t i);
/* The backend (gateway/backend.h) of the model called name: 0 and *out (valid
 * while ms lives), or ERR_NOT_FOUND. For the guard's local judge. */
int api_models_backend(const api_models *ms, const char *name, fr_backend *out) MUST_USE;

/* The handlers (routes.c); ctx is the api_app, whose models field holds the
 * loaded models (NULL: none, every model is unknown). */
int api_h_models(http_req *r, void *ctx);
int api_h_chat(http_req *r, void *ctx);
int api_h_completions(http_req *r, void *ctx);
