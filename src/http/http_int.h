/*
 * http/http_int.h — private to src/http: the request parser (head.c), the
 * front (front.c) that accepts connections and pre-checks first request
 * heads, and what they share with the connection engine (server.c).
 */
#pragma once

#include <stdint.h>
#include <sys/socket.h>

#include "http/http.h"

typedef struct http_front http_front;

/* ---------------------------------------------------- parser (head.c) -- */

/* Where one header line's name and (trimmed) value are in the head. */
typedef struct http_field {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} http_field;

/*
 * Parses the request head at the start of p[0..n) with the rules of
 * http_head_check (without looking at the body): HTTP_HEAD_PASS with h
 * filled (h->head_end: where the body starts) and fields[0..*n_fields)
 * (fields has room for HTTP_HEADERS_MAX), HTTP_HEAD_MORE (the head does not
 * end within n bytes, which are at most max_header_bytes), or
 * HTTP_HEAD_ERROR with h->code and h->msg. Pure; any thread.
 */
int http_head_parse(const char *p, size_t n, const http_head_limits *lim, http_head *h,
                    http_field *fields, size_t *n_fields);

/* State of one chunked body's decoding (caller-allocated; no resources). */
typedef struct http_chunked {
    uint64_t left;        // data bytes left in the current chunk
    uint64_t total;       // chunk sizes summed so far
    uint64_t trailer_bytes;
    int state;
} http_chunked;

void http_chunked_init(http_chunked *c);
/*
 * Decodes the next bytes p[0..n) of a chunked body: chunk-size lines with
 * extensions, data, CRLF after data, last-chunk, trailer fields (checked as
 * header lines, at most max_header_bytes in all). The decoded data goes to
 * out[0..*out_n) (out may be p itself: it never runs ahead of the input; NULL
 * checks framing only). *used: input bytes consumed. Returns
 *   HTTP_HEAD_PASS  the body ended at p[*used] (what follows is the next request);
 *   HTTP_HEAD_MORE  p[*used..n) is an incomplete size or trailer line (at
 *                   most CHUNK line caps long): call again with it followed
 *                   by more bytes;
 *   HTTP_HEAD_ERROR h->code (ERR_FORMAT 400, ERR_TOO_LARGE 413 past
 *                   max_body_bytes, ERR_HEADERS_TOO_LARGE 431) and h->msg.
 * The verdict does not depend on how the body is split across calls. Pure.
 */
int http_chunked_decode(http_chunked *c, const char *p, size_t n, char *out,
                        const http_head_limits *lim, size_t *used, size_t *out_n, http_head *h);

typedef struct http_front_config {
    int listen_fd;              // bound and listening; the front owns it from start
    /* Where a connection whose first head checked out goes (a worker):
     * t0_ns is the accept time (the first request's deadline counts from
     * it). Takes fd on success (0); on error the front closes fd and
     * releases its counts. Called on the front thread. */
    int (*hand_over)(void *ctx, int fd, const struct sockaddr *sa, socklen_t len,
                     uint64_t t0_ns);
    void *hand_ctx;
    http_head_limits lim;
    unsigned read_timeout_s;    // total for a first request's head; 0 = none
    unsigned max_connections;   // open connections (front + workers)
    unsigned per_ip_connections;// 0 = none
    void (*on_complete)(void *ctx, const http_req_info *info); // may be NULL
    void *hook_ctx;
} http_front_config;

/* Starts the front thread. Returns 0 or ERR_NOMEM / ERR_IO with e set; on
 * error the listening socket is closed. */
int http_front_start(const http_front_config *c, http_front **out, err_msg *e);
/* Stops accepting: the listening socket is closed. Thread: any. */
void http_front_drain(http_front *f);
/* Stops the thread and closes the connections the front still holds (not
 * the ones passed on). Call before stopping the workers. Idempotent; NULL ok. */
void http_front_stop(http_front *f);
/* Stops (if needed) and frees f. Call after the workers stopped: their
 * closes use f. NULL ok. */
void http_front_free(http_front *f);
/* A connection passed to a worker closed (or lingers after its last
 * answer): releases its place in the connection counts. Thread: any. */
void http_front_conn_closed(http_front *f, const struct sockaddr *sa);

/* "host:port" or "[v6]:port" of sa into out; "-" for other families. */
void http_sockaddr_str(const struct sockaddr *sa, char *out, size_t cap);
/* Fills out with a fresh 32-hex request id (33 bytes). Thread: any. */
void http_make_id(char *out);
/* The reason phrase of an HTTP status ("Bad Request"), "" if unknown. */
const char *http_reason(int status);
/*
 * Formats a whole "Connection: close" error response into out (status of
 * code, JSON body, X-Request-Id id). Returns 0 or the buf error; *body_len
 * gets the body size.
 */
int http_raw_error(struct buf *out, int code, const char *msg, const char *id,
                   size_t *body_len);
