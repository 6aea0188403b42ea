/*
 * api/openai — the OpenAI wire format of chat completions and completions:
 * request bodies -> api_gen_req (validated, every field named in errors), and
 * the response, SSE chunk, usage, model list and error JSON shapes.
 *
 * Pure functions over caller-owned memory: parsing copies what it keeps into
 * the request arena; serialization appends to a capped buf. No HTTP here; the
 * handlers (openai_handlers.c) glue these to the router and the scheduler.
 *
 * Request fields accepted (both endpoints unless noted):
 *   model (required), messages (chat; system/developer/user/assistant, content a
 *   string, null for assistant, or an array of {"type":"text","text":...} parts),
 *   prompt (completions; a string or an array of one string), max_tokens,
 *   max_completion_tokens (chat), temperature [0,2], top_p (0,1], seed, stop
 *   (string or array of at most 4), presence_penalty and frequency_penalty [-2,2],
 *   logit_bias ({"token id": -100..100}), logprobs (chat: bool; completions:
 *   integer 0..5), top_logprobs (chat, 0..5, needs logprobs), n (1 only), user,
 *   stream, stream_options.include_usage (needs stream); extensions as in vLLM:
 *   top_k, min_p, repetition_penalty, priority, ignore_eos; ferry's own "ferry":
 *   {"collection": name, "top_k": 1..50} asks for retrieval (RAG, gateway/).
 * Unknown fields are ignored, as OpenAI's own clients expect of servers.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/base.h"
#include "base/buf.h"
#include "model/chat.h"
#include "model/sample.h"

typedef enum api_kind {
    API_CHAT = 0,       // POST /v1/chat/completions
    API_COMPLETION = 1, // POST /v1/completions
} api_kind;

#define API_STOP_MAX 4 // OpenAI's limit on stop sequences
#define API_MESSAGES_MAX 4096
#define API_PARAM_MAX 64
#define API_RAG_TOP_K_MAX 50 // ferry.top_k at most (GW_RAG_TOP_K_MAX)

typedef struct api_gen_req {
    api_kind kind;
    const char *model;
    chat_msg *msgs; // (n_msgs) chat only; contents in the arena
    size_t n_msgs;
    const char *prompt; // completions only
    size_t prompt_len;
    sample_params sp;     // max_tokens 0 = not given (the handler picks the default)
    bool is_stream;
    bool include_usage;
    bool ignore_eos;
    int priority;
    const char *user;
    const char *rag_collection; // extension "ferry": {"collection", "top_k"}; NULL: none
    size_t rag_top_k;           // 0: not given
} api_gen_req;

/* Why a request was refused: code (ERR_INVAL...), the parameter (may be
 * empty) and one sentence. */
typedef struct api_error {
    int code;
    char param[API_PARAM_MAX];
    err_msg msg;
} api_error;

/*
 * Parses and validates a request body of kind k. Strings and arrays are
 * copied into a (the request arena). Returns 0, or a negative ERR_* with
 * err->param naming the field and err->msg the reason: ERR_FORMAT (not JSON,
 * not an object), ERR_INVAL (a field of the wrong type or out of range, a
 * missing required field), ERR_UNSUPPORTED (n > 1, tool messages), ERR_NOMEM /
 * ERR_TOO_LARGE (arena). Thread: any.
 */
int api_gen_parse(api_kind k, const char *body, size_t len, arena *a, api_gen_req *out,
                  api_error *err) MUST_USE;

/* What every response and chunk repeats. */
typedef struct api_meta {
    const char *id;    // "chatcmpl-..." / "cmpl-..."
    int64_t created;   // Unix seconds
    const char *model; // the name the client asked for
    const char *fingerprint;
} api_meta;

typedef struct api_usage {
    size_t prompt_tokens, completion_tokens, cached_tokens;
} api_usage;

/* One token's log-probabilities, with the text of each token. */
typedef struct api_logprob {
    const char *text; // (n) the token's text
    size_t n;
    float logprob;
    int n_top;
    const char *top_text[SAMPLE_TOP_LOGPROBS_MAX];
    size_t top_n[SAMPLE_TOP_LOGPROBS_MAX];
    float top_logprob[SAMPLE_TOP_LOGPROBS_MAX];
} api_logprob;

/* finish_reason: NULL (still going), "stop" or "length". */

/*
 * Appends one SSE event "data: {chunk}\n\n" of kind k: for chat a delta with
 * the role (when with_role) and the content text[0..n) (content omitted when
 * n == 0 and !with_role, giving the empty delta {} of a final chunk), logprobs
 * (lp[0..n_lp)) and finish_reason; for completions choices[0].text. When include_usage, the
 * chunk carries "usage":null as OpenAI's do. Returns 0 or buf errors.
 */
int api_sse_chunk(buf *b, api_kind k, const api_meta *m, bool with_role, const char *text,
                  size_t n, const api_logprob *lp, size_t n_lp, const char *finish,
                  bool include_usage) MUST_USE;

/* Appends the final usage chunk ("choices":[], "usage":{...}) as an SSE event. */
int api_sse_usage(buf *b, api_kind k, const api_meta *m, const api_usage *u) MUST_USE;

/* Appends "data: [DONE]\n\n". */
int api_sse_done(buf *b) MUST_USE;

/*
 * Appends a whole non-streaming response: chat.completion with
 * choices[0].message, or text_completion with choices[0].text; logprobs when
 * lp != NULL (n_lp entries; chat: {"content":[...]}, completions: tokens /
 * token_logprobs / top_logprobs / text_offset); usage. Returns 0 or buf errors.
 */
int api_response(buf *b, api_kind k, const api_meta *m, const char *text, size_t n,
                 const api_logprob *lp, size_t n_lp, const char *finish,
                 const api_usage *u) MUST_USE;

/* Fills a random request id "<prefix>-<24 hex>" into out (cap >= 40). */
void api_make_id(const char *prefix, char *out, size_t cap);
