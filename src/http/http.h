/*
 * http — ferry's HTTP/1.1 server (its own connection engine, server.c), the
 * router, and the pieces a handler needs to answer now, later (deferred), or
 * as a stream (SSE).
 *
 * Threads: a fixed pool of I/O workers (threads = cores by default), each
 * running an epoll loop that owns its connections (server.c); a connection
 * is served by one worker, never one thread per connection. Handlers run on
 * those threads and must not block: work that takes time defers (http_defer)
 * and answers from another thread.
 *
 * Connections: a front thread (front.c) accepts, enforces max_connections
 * and per_ip_connections (429/503), and holds each new connection until its
 * first request head is in view and passes http_head_check (else it answers
 * the JSON error itself: 400/408/413/431/501/505); then a worker serves it
 * and every later request on it (the same parser: every error is JSON).
 *
 * One request, in order:
 *   first byte     -> the request is counted in flight
 *   headers        -> request id, traceparent, header size (431), draining
 *                     (503), route (404/405), body length (411/413) and media
 *                     type (415, HTTP_ROUTE_JSON) are checked before any body
 *                     byte is read
 *   body           -> buffered, capped at max_body_bytes (a chunked body past
 *                     the cap gets 413 written mid-upload, then a close)
 *   handler        -> http_respond* now, or http_defer and http_async_* later,
 *                     or http_stream_begin / http_async_stream and writes
 *   completion     -> one JSON request log line, the on_complete hook
 *                     (metrics), the request arena freed
 * read_timeout_s is a deadline for receiving the whole request (from the
 * accept for a first request, from the end of the previous request for a
 * follow-up on a kept-alive connection); past it the client gets a 408 and a
 * close (a connection that sent nothing is closed quietly).
 *
 * Errors are OpenAI-style JSON objects, {"error":{"message","type","param",
 * "code"}}, with the status and type of the ERR_* code (base/err.h). A 5xx
 * body never carries the detail; the detail is logged with the request id.
 * Every response carries X-Request-Id.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/base.h"
#include "base/str.h"

typedef struct http_server http_server;
typedef struct http_req http_req;
typedef struct http_async http_async;
typedef struct http_router http_router;

/* ------------------------------------------------------------- router -- */

/*
 * A handler answers r: it calls http_respond* (or http_defer / a stream) and
 * returns 0, or returns a negative ERR_* without answering and the server
 * sends the error (detail from http_req_err(r) for 4xx; generic for 5xx).
 */
typedef int (*http_handler_fn)(http_req *r, void *ctx);

enum {
    HTTP_ROUTE_JSON = 1u << 0,   // body required, Content-Type application/json (else 415)
    HTTP_ROUTE_PROBE = 1u << 1,  // still served while draining (health, readiness, metrics)
    HTTP_ROUTE_QUIET = 1u << 2,  // request logged at debug level only
    /* Needs what loads after the server is up (models, stores): until
     * http_server_set_loaded, answered 503 code "model_loading" with
     * Retry-After, before the body is read. */
    HTTP_ROUTE_LOADED = 1u << 3,
};

typedef struct http_route {
    const char *method;  // "GET", "POST", ...; a GET route also answers HEAD
    const char *pattern; // "/v1/models/{model}": literal segments and {name} segments
    http_handler_fn fn;
    void *ctx;
    unsigned flags; // HTTP_ROUTE_*
} http_route;

#define HTTP_ROUTES_MAX 256
#define HTTP_SEGMENTS_MAX 16
#define HTTP_PARAMS_MAX 8

typedef struct http_match {
    const http_route *route;
    size_t n_params;
    str names[HTTP_PARAMS_MAX];  // slices into the route pattern
    str values[HTTP_PARAMS_MAX]; // slices into the request path
    char allow[96];              // on ERR_METHOD: "GET, HEAD, POST"
} http_match;

/*
 * Builds a router over routes[0..n) (not copied: the array must outlive the
 * router). Patterns must start with '/', have at most HTTP_SEGMENTS_MAX
 * segments and HTTP_PARAMS_MAX {params}; two routes with the same method and
 * the same shape are refused. Returns NULL with e set (ERR_INVAL, ERR_NOMEM).
 */
http_router *http_router_new(const http_route *routes, size_t n, err_msg *e);
void http_router_free(http_router *rt);

/*
 * Matches method and path (no query string). When several routes match,
 * the one with more literal segments wins ("/v1/models/list" over
 * "/v1/models/{id}"). Returns 0 with m filled, ERR_NOT_FOUND (no route has
 * this path), or ERR_METHOD (the path exists for other methods, listed in
 * m->allow). Thread: any (the router is immutable).
 */
int http_router_match(const http_router *rt, const char *method, str path, http_match *m);

/* ------------------------------------------------------------- server -- */

typedef struct http_req_info {
    const char *method;
    const char *route; // the route pattern, or "unmatched"
    int status;        // 0 when the connection closed before any response
    uint64_t bytes;    // response body bytes handed to the socket layer
    double duration_s;
} http_req_info;

typedef struct http_config {
    const char *host;          // "127.0.0.1", "0.0.0.0", "::1"
    uint16_t port;             // 0 picks a free port (see http_server_port)
    unsigned threads;          // pool size, >= 1
    unsigned max_connections;  // total open connections
    unsigned per_ip_connections; // 0 = no per-IP limit
    uint64_t max_body_bytes;   // larger declared bodies get 413 before they are read
    uint64_t max_header_bytes; // request line + headers; larger gets 431
    unsigned read_timeout_s;   // deadline to receive a request (408); idle keep-alive timeout; 0 = none
    size_t arena_bytes;        // ceiling of each request arena
    bool is_loading;           // start with HTTP_ROUTE_LOADED routes answering 503
    /* Called once per finished request on a pool thread (metrics). May be NULL. */
    void (*on_complete)(void *ctx, const http_req_info *info);
    void *hook_ctx;
} http_config;

/* Fills c with the defaults (threads = cores, 1024 connections, 8 MiB body,
 * 32 KiB headers, 30 s timeout, 16 MiB arena). */
void http_config_default(http_config *c);

/*
 * Starts listening and serving with router rt (which must outlive the
 * server). Returns the server or NULL with e set (ERR_IO: cannot bind, with
 * the address and reason; ERR_INVAL: bad host).
 */
http_server *http_server_start(const http_config *c, const http_router *rt, err_msg *e);
/* The port actually bound. */
uint16_t http_server_port(const http_server *s);
/* Requests between request line and completion, right now. Thread: any. */
int64_t http_server_in_flight(const http_server *s);
/*
 * Begins a graceful stop: new connections are refused (the listening socket
 * closes), requests on open connections get 503 except HTTP_ROUTE_PROBE
 * routes, in-flight requests go on. Idempotent. Thread: any but a pool thread.
 */
void http_server_drain(http_server *s);
bool http_server_draining(const http_server *s);
/*
 * Ends the loading phase (http_config.is_loading): HTTP_ROUTE_LOADED routes
 * are served from now on. Whatever the caller wrote before this call (the
 * loaded models, stores) is visible to the handlers that run after it
 * (release/acquire). Idempotent. Thread: any.
 */
void http_server_set_loaded(http_server *s);
/* Seconds a "model_loading" 503 asks the client to wait (Retry-After). */
#define HTTP_LOADING_RETRY_AFTER_S 1
/*
 * Waits until no request is in flight or grace_ms pass, then answers any
 * still-deferred request with 503, ends open streams, and stops the server
 * and frees it. Returns the number of requests cut short. NULL ok.
 */
int http_server_stop(http_server *s, uint64_t grace_ms);

/* --------------------------------------------------- head pre-check -- */

#define HTTP_HEADERS_MAX 256    // header lines per request; more gets 431
#define HTTP_REQUEST_ID_MAX 128 // kept chars of an incoming X-Request-Id

enum { HTTP_HEAD_MORE = 0, HTTP_HEAD_PASS = 1, HTTP_HEAD_ERROR = 2 };

typedef struct http_head_limits {
    uint64_t max_header_bytes; // request line + headers (+ the empty line)
    uint64_t max_body_bytes;   // declared Content-Length, or chunk sizes summed
} http_head_limits;

typedef struct http_head {
    int code;       // on HTTP_HEAD_ERROR: the ERR_* to answer with
    char msg[160];  // on HTTP_HEAD_ERROR: the message for the client
    char method[33];
    char path[128];                            // cut at 127 chars (for logs)
    char request_id[HTTP_REQUEST_ID_MAX + 1];  // sanitized X-Request-Id, or ""
    size_t head_bytes;                         // on PASS: bytes up to the body
    size_t head_end;   // on PASS: offset of the body in p (leading empty lines included)
    size_t target_off, target_len; // the request target in p (whole, not cut)
    bool is_http10, is_chunked, has_length;
    uint64_t content_length;
} http_head;

/*
 * Checks the first request of p[0..n) (bytes peeked from a new connection)
 * strictly: request line, header lines, Content-Length (digits, one value,
 * at most max_body_bytes: else 413), Transfer-Encoding (only "chunked": else
 * 501; not with Content-Length nor HTTP/1.0), at most max_header_bytes and
 * HTTP_HEADERS_MAX lines (431), HTTP/1.0 or 1.1 (505); for a chunked body,
 * the framing and the summed chunk sizes of the part in view (400/413).
 * Returns HTTP_HEAD_PASS (well-formed as far as can be seen), HTTP_HEAD_MORE
 * (need more bytes; never when is_complete_view, i.e. n is all that can be
 * seen), or HTTP_HEAD_ERROR with h->code and h->msg. h is filled as far as
 * parsed. Pure function; any thread.
 */
int http_head_check(const char *p, size_t n, bool is_complete_view,
                    const http_head_limits *lim, http_head *h);

/* ----------------------------------------------------------- requests -- */

const char *http_req_method(const http_req *r);
/* The path without the query string, percent-decoded (%XX; '+' is kept). */
str http_req_path(const http_req *r);
/* A header value by name (case-insensitive), or NULL. */
const char *http_req_header(const http_req *r, const char *name);
/* A query-string argument (percent- and '+'-decoded), or NULL (also for an
 * argument without '='). Thread: the handler's. */
const char *http_req_query(const http_req *r, const char *name);
/* A {param} of the matched route, or an empty slice. */
str http_req_param(const http_req *r, const char *name);
/* The request body (NUL-terminated; len 0 when none). Valid until completion. */
const char *http_req_body(const http_req *r, size_t *len);
/* The request id (sanitized X-Request-Id or generated, <= 128 chars). */
const char *http_req_id(const http_req *r);
/* The trace id of a valid W3C traceparent header (32 hex), or "". */
const char *http_req_trace_id(const http_req *r);
/* The request arena (created on first use, ceiling arena_bytes); NULL when out of memory. */
arena *http_req_arena(http_req *r);
/* Where a handler puts the detail of an ERR_* it returns (shown to the client for 4xx). */
err_msg *http_req_err(http_req *r);
/* The server the request arrived on (for handlers that need server state). */
http_server *http_req_server(http_req *r);

/*
 * Answers with status, Content-Type ctype and body[0..n) (copied). Extra
 * headers: NULL or "Name: value" lines separated by "\n". Returns 0, or
 * ERR_EXISTS when r already has an answer, ERR_NOMEM. Thread: the handler's.
 */
int http_respond(http_req *r, int status, const char *ctype, const char *body, size_t n,
                 const char *headers);
/*
 * Answers with the OpenAI-style error of code: message msg (NULL: the code's
 * default text; always the default for 5xx), param (NULL -> null), code string
 * code_str (NULL -> err_name(code)). Extra headers as in http_respond.
 */
int http_respond_error(http_req *r, int code, const char *msg, const char *param,
                       const char *code_str, const char *headers);

/*
 * Appends {"error":{"message","type","param","code"}} for code to out: the one
 * error shape of the server, used by every module (api/ included) for answers
 * and for error events inside SSE streams. type comes from the error table;
 * msg NULL or "" -> the code's default text; param NULL -> null; code_str
 * NULL -> err_name(code). msg is used as given (callers hide 5xx detail, as
 * http_respond_error does). Returns 0 or the buf error. Any thread.
 */
struct buf;
int http_error_json(struct buf *out, int code, const char *msg, const char *param,
                    const char *code_str) MUST_USE;

/* --------------------------------------------------- deferred answers -- */

/*
 * Suspends r's connection and returns a handle through which any thread
 * answers later, exactly once, with http_async_respond / http_async_error /
 * http_async_stream. The handler returns 0 right after. The handle is the
 * caller's until that answer (or http_async_release if it gives up, which
 * answers 500). Returns NULL when out of memory (the handler then fails).
 * Thread: the handler's.
 */
http_async *http_defer(http_req *r);
/* Answers a deferred request (body copied). Returns 0, or ERR_CANCELLED when
 * the server already answered it (shutdown); either way the handle is spent. */
int http_async_respond(http_async *a, int status, const char *ctype, const char *body,
                       size_t n);
/* http_async_respond with extra headers ("Name: value" lines separated by
 * "\n", as in http_respond; NULL for none), e.g. Retry-After on a 429. */
int http_async_respond_headers(http_async *a, int status, const char *ctype, const char *body,
                               size_t n, const char *headers);
/* Answers the OpenAI-style error of code (as http_respond_error); a 429 gets
 * "Retry-After: 1". */
int http_async_error(http_async *a, int code, const char *msg, const char *param);
/* Gives the handle back without answering: the client gets a 500. */
void http_async_release(http_async *a);
/*
 * True when the client of a deferred request that is not answered yet has
 * closed or reset its connection, or the server is stopping (the worker
 * watches the socket of a deferred request and says so here at once).
 * Producers of long answers poll it to cancel work nobody will read.
 * Thread: any, while the caller still owns a.
 */
bool http_async_client_gone(http_async *a);

/* ------------------------------------------------------------ streams -- */

/*
 * A streamed body (SSE, chunked transfer). The producer owns its handle:
 * writes append to a pending buffer capped at HTTP_STREAM_PENDING_MAX and
 * wake the connection's worker, which writes them as one chunk on its own
 * thread (once the socket took the previous ones: a slow client backs the
 * producer up to the cap, ERR_BUSY); nothing busy-waits.
 */
typedef struct http_async http_stream;

#define HTTP_STREAM_PENDING_MAX (4u << 20)

/*
 * Starts a streamed answer with status and ctype (text/event-stream adds
 * Cache-Control: no-cache). From a handler (r) or from a deferred handle
 * (http_async_stream, which consumes a and returns the stream handle).
 * Returns NULL when out of memory or a was already answered (a is then spent).
 */
http_stream *http_stream_begin(http_req *r, int status, const char *ctype);
http_stream *http_async_stream(http_async *a, int status, const char *ctype);
/*
 * Appends data[0..n). Returns 0, ERR_BUSY when the pending buffer would pass
 * its cap (the client reads too slowly: back off or cancel), or ERR_CANCELLED
 * when the client went away or the server is stopping. Thread: any.
 */
int http_stream_write(http_stream *s, const void *data, size_t n);
/* Appends one SSE event "data: <data>\n\n" (data must not contain "\n\n"). */
int http_stream_sse(http_stream *s, const char *data, size_t n);
/* True once the client is gone or the server stops (producers should cancel work). */
bool http_stream_cancelled(http_stream *s);
/* Ends the body after the pending bytes and spends the handle. */
void http_stream_end(http_stream *s);
