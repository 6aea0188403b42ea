/*
 * http/http_int.h — private to src/http: the front (front.c) that accepts
 * connections and pre-checks first request heads, and what it shares with
 * the libmicrohttpd glue (server.c).
 */
#pragma once

#include <stdint.h>
#include <sys/socket.h>

#include "http/http.h"

typedef struct http_front http_front;

typedef struct http_front_config {
    int listen_fd;              // bound and listening; the front owns it from start
    /* Where a connection whose first head checked out goes (a worker's
     * libmicrohttpd daemon). Takes fd on success (0); on error the front
     * closes fd and releases its counts. Called on the front thread. */
    int (*hand_over)(void *ctx, int fd, const struct sockaddr *sa, socklen_t len);
    void *hand_ctx;
    http_head_limits lim;
    unsigned read_timeout_s;    // total for a first request's head; 0 = none
    unsigned max_connections;   // open connections (front + libmicrohttpd)
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
 * the ones passed on). Call before stopping the daemon. Idempotent; NULL ok. */
void http_front_stop(http_front *f);
/* Stops (if needed) and frees f. Call after the daemon stopped: its
 * connections' CLOSED notifications use f. NULL ok. */
void http_front_free(http_front *f);
/* A connection passed to libmicrohttpd closed (its NOTIFY_CONNECTION
 * CLOSED): releases its place in the connection counts. Thread: any. */
void http_front_conn_closed(http_front *f, const struct sockaddr *sa);
/* When fd (passed to libmicrohttpd) was accepted, clock_mono_ns; 0 if
 * unknown. The first request's deadline counts from there. Thread: any. */
uint64_t http_front_accept_ns(http_front *f, int fd);

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
