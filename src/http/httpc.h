/*
 * http/httpc — an HTTP client that drives many requests, plain and streamed
 * (Server-Sent Events), from one thread over libcurl's multi interface. It is
 * what the client commands (ferry bench, ferry eval) use to talk to an
 * OpenAI-compatible endpoint.
 *
 * Model: one httpc per thread. httpc_submit queues a one-shot request with
 * two callbacks; httpc_run drives every transfer for up to a given time and
 * runs the callbacks on the calling thread:
 *   on_event(ctx, data, len, t_ns)   once per SSE event that carried data:
 *                                    the payload (its "data:" lines joined by
 *                                    "\n", NUL-terminated, borrowed for the
 *                                    call) and the monotonic time
 *                                    (clock_mono_ns) at which the bytes that
 *                                    completed the event arrived;
 *   on_done(ctx, res)                exactly once when the request ends, for
 *                                    whatever reason (httpc_result below).
 * The callback rule holds: when httpc_submit fails, no callback ever runs;
 * when it succeeds, on_done runs exactly once (from httpc_run,
 * httpc_cancel_all or httpc_free). Callbacks may call httpc_submit (a closed
 * loop submits the next request from on_done); they must not call httpc_run,
 * httpc_cancel_all or httpc_free.
 *
 * SSE parsing follows the WHATWG event-stream rules: lines end in CRLF, LF or
 * CR; "data:" lines (one optional space after the colon is dropped) append to
 * the event's data; a blank line dispatches it; comments (":...") and the
 * other fields (event, id, retry) are skipped; an event without data lines is
 * not reported. A stream is parsed only when the request asked for one
 * (is_stream), the status is 2xx and the Content-Type is text/event-stream;
 * otherwise the body is collected and handed to on_done.
 *
 * Caps: the whole response (headers excluded) may not pass body_max_bytes,
 * nor one SSE event event_max_bytes; past either, the request ends with
 * HTTPC_TOO_LARGE. Every request carries a total timeout.
 *
 * Threads: an httpc and its requests belong to the thread that created it;
 * only httpc_wakeup may be called from another thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

typedef struct httpc httpc;

/* How a request ended. */
typedef enum httpc_kind {
    HTTPC_OK = 0,    // a 2xx answer, stream (if asked) complete
    HTTPC_CONNECT,   // could not resolve or connect (nothing was sent)
    HTTPC_TIMEOUT,   // the request's timeout_ms passed
    HTTPC_HTTP,      // the server answered with a status outside 2xx (body kept)
    HTTPC_PARSE,     // stream malformed: not text/event-stream, cut inside an
                     // event, or on_event refused a payload
    HTTPC_TOO_LARGE, // body_max_bytes or event_max_bytes passed
    HTTPC_CANCELLED, // httpc_cancel_all / httpc_free
    HTTPC_IO,        // any other transport failure (reset, bad reply, ...)
} httpc_kind;

/* Short lowercase name of a kind ("ok", "connect", "timeout", "http", "parse",
 * "too_large", "cancelled", "io"). */
const char *httpc_kind_name(httpc_kind k);

/* What on_done receives; every pointer is borrowed for the call only. */
typedef struct httpc_result {
    httpc_kind kind;
    long status;      // HTTP status, 0 when no response line arrived
    const char *body; // NUL-terminated: the body when not parsed as SSE
                      // (plain answers, error answers); "" for streams
    size_t body_len;
    const char *error;        // one sentence when kind != HTTPC_OK, else ""
    size_t n_events;          // SSE events reported through on_event
    uint64_t t_submit_ns;     // clock_mono_ns when httpc_submit accepted it
    uint64_t t_first_byte_ns; // first response body byte, 0 when none
    uint64_t t_done_ns;       // when it ended
} httpc_result;

/*
 * on_event returns 0 to go on, or non-zero to end the request now with
 * HTTPC_PARSE (the payload was not what the caller expects).
 */
typedef int (*httpc_event_fn)(void *ctx, const char *data, size_t len, uint64_t t_ns);
typedef void (*httpc_done_fn)(void *ctx, const httpc_result *res);

typedef struct httpc_request {
    const char *method;         // "GET", "POST", ...; NULL: POST with a body, else GET
    const char *url;            // absolute http(s) URL (copied)
    const char *api_key;        // NULL, or sent as "Authorization: Bearer <key>"
    const char *const *headers; // NULL, or a NULL-terminated list of "Name: value" (copied)
    const char *body;           // NULL, or body[0..body_len) sent as-is (copied)
    size_t body_len;
    const char *content_type; // of the body; NULL: "application/json"
    bool is_stream;           // parse a text/event-stream answer into on_event
    uint64_t timeout_ms;      // whole request; 0: the client's default
    httpc_event_fn on_event;  // may be NULL
    httpc_done_fn on_done;    // required
    void *ctx;
} httpc_request;

typedef struct httpc_config {
    uint64_t timeout_ms;         // default per-request timeout (300 s)
    uint64_t connect_timeout_ms; // 10 s
    size_t body_max_bytes;       // cap on one response body (64 MiB)
    size_t event_max_bytes;      // cap on one SSE event (1 MiB)
    size_t max_in_flight;        // submits past this are refused with ERR_BUSY (4096)
} httpc_config;

/* Fills c with the defaults above. */
void httpc_config_default(httpc_config *c);

/*
 * Creates a client (c NULL: defaults). Initializes libcurl globally on first
 * use. Returns 0 and the client in *out, or ERR_NOMEM / ERR_INTERNAL with e set.
 */
int httpc_new(const httpc_config *c, httpc **out, err_msg *e) MUST_USE;

/*
 * Ends every request still in flight (on_done with HTTPC_CANCELLED) and frees
 * the client. NULL ok. Not from a callback.
 */
void httpc_free(httpc *c);

/*
 * Queues a request; it starts at the next httpc_run (or right away when
 * called from a callback, at the next turn of the running loop). Returns a
 * positive request id, or ERR_INVAL (no URL, no on_done, bad header),
 * ERR_BUSY (max_in_flight reached) or ERR_NOMEM with e set; then no callback
 * will run.
 */
int64_t httpc_submit(httpc *c, const httpc_request *r, err_msg *e) MUST_USE;

/*
 * Drives the transfers, running callbacks, until no request is in flight,
 * timeout_ms passes, or httpc_wakeup is called. Returns the number of
 * requests still in flight (>= 0), or ERR_INTERNAL with e set when libcurl
 * fails. timeout_ms 0 does one non-blocking turn.
 */
int httpc_run(httpc *c, uint64_t timeout_ms, err_msg *e) MUST_USE;

/* Requests submitted and not yet done. */
size_t httpc_in_flight(const httpc *c);

/*
 * Ends every request in flight now: each gets on_done with HTTPC_CANCELLED
 * (after whatever events already arrived). Requests submitted by those
 * callbacks are cancelled too. Not from a callback.
 */
void httpc_cancel_all(httpc *c);

/*
 * Makes a blocked or future httpc_run return at its next turn. Thread: any
 * (not async-signal-safe: from a signal handler set a flag and let the loop,
 * which never sleeps longer than the timeout it was given, look at it).
 */
void httpc_wakeup(httpc *c);
