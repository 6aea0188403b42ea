/*
 * http/server — libmicrohttpd glue: request life cycle, limits, errors,
 * request ids, request logs, deferred answers and streams.
 *
 * Life of an http_req: created by the URI log callback (the request line has
 * arrived; counted in flight), filled by the access handler (headers, body),
 * answered by a handler, freed by the completion callback (logged, hooked,
 * uncounted). libmicrohttpd calls all three on the connection's pool thread.
 *
 * http_async (deferred answers and streams) is shared between that thread and
 * a producer thread, so it has a mutex and a reference count: one reference
 * for the producer (until it answers / ends), one for the request (until
 * completion) and, for streams, one for the libmicrohttpd response (until it
 * is destroyed). Resuming a suspended connection is done by whoever flips
 * `suspended` from true to false under the mutex, so it happens exactly once.
 * libmicrohttpd never closes a suspended connection, so conn is valid while
 * suspended; once the request completes, `gone` is set and conn is not used.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/http_int.h"

#define REQUEST_ID_MAX HTTP_REQUEST_ID_MAX

enum { RS_NEW = 0, RS_BODY, RS_DONE };

struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    const char *method; // libmicrohttpd's, valid until completion
    str path;
    uint64_t t0;
    uint64_t deadline_ns;   // read_timeout_s after the request began (UINT64_MAX: none)
    unsigned timeout_s;     // the connection's libmicrohttpd timeout we last set
    uint64_t body_over;     // body bytes dropped past max_body_bytes (after a 413)
    int state;
    http_match match;
    buf body;
    arena *arena;
    char id[REQUEST_ID_MAX + 1];
    char trace_id[33];
    int status;      // the answer's status; 0 = none
    uint64_t bytes;  // body bytes of the answer
    bool answered;   // a response is queued or a deferred/stream handle exists
    http_async *async;
    err_msg err;
};

struct http_async {
    pthread_mutex_t mu;
    int refs; // under mu
    http_server *srv;
    struct http_worker *worker;   // whose daemon has conn: woken after a resume
    http_req *req;                // NULL once the request completed
    struct MHD_Connection *conn;  // valid while !gone
    bool suspended;               // we suspended conn and nobody resumed it yet
    bool answered;                // a response (or the stream's) is queued
    bool streaming;
    bool ended;    // producer ended the stream (or the server did)
    bool gone;     // request completed: conn is no longer ours
    bool stopping; // server stop cut this short: writes fail
    bool queuing;  // the claimant of the answer is queuing it (outside mu): no resume yet
    struct http_async *stop_next; // http_server_stop's list of answers it claimed
    buf pending;   // stream bytes not yet handed to libmicrohttpd
    size_t off;    // consumed prefix of pending
    uint64_t bytes;
    char id[REQUEST_ID_MAX + 1];
    http_async *prev, *next; // server list, under srv->async_mu
};

/*
 * Per-connection state (libmicrohttpd's socket context), on its worker's
 * thread only. cur: the request whose line has arrived and which has not
 * completed (libmicrohttpd does not always report completion for a request
 * the client abandons inside its headers, seen with 0.9.75 under rapid
 * connect/close, so the connection's close finishes it instead).
 *
 * read_timeout_s is a total deadline per request, counted from ready_ns: the
 * accept for the first request (whose head the front times), the end of the
 * previous request for a follow-up on a kept-alive connection. From that end
 * until its headers are complete (begin), a follow-up's connection is in
 * its worker's wait list (FIFO, so sorted by deadline): libmicrohttpd calls
 * nothing of ours while a head trickles in and its own timeout is one of
 * inactivity, so the worker expires the list itself (expire_heads).
 */
typedef struct conn_state {
    struct http_req *cur;
    struct http_worker *w;
    int fd;
    uint64_t ready_ns;
    uint64_t rx0;     // TCP bytes received at ready_ns (follow-ups): a partial head or none
    bool is_waiting;  // in w's wait list
    struct conn_state *wprev, *wnext;
} conn_state;

/* A connection the front handed over, waiting for its worker to add it. */
typedef struct handed_conn {
    int fd;
    socklen_t len;
    struct sockaddr_storage sa;
} handed_conn;

/*
 * One I/O thread and its libmicrohttpd daemon, run in libmicrohttpd's
 * external-event mode with epoll: the thread waits with poll() on the
 * daemon's epoll fd (poll does not consume its edge-triggered events) and
 * its own eventfd, then calls MHD_run, which calls epoll_wait with a zero
 * timeout. libmicrohttpd 0.9.75 calls epoll_wait again after a call that
 * returned exactly 128 events, with the same timeout: with a zero timeout
 * that second call returns at once, so a worker whose 128 connections are
 * all ready is not put to sleep with them unserved (the stall that made
 * its internal epoll pool unusable; docs/internals/http.md).
 * The front hands connections over through q (MHD_add_connection is not
 * thread-safe in external mode, so only the worker calls it).
 */
typedef struct http_worker {
    http_server *srv;
    struct MHD_Daemon *d;
    int epoll_fd; // the daemon's (MHD_DAEMON_INFO_EPOLL_FD)
    int wake_fd;  // eventfd: handed connections, stop
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu; // guards q, q_head, q_len
    handed_conn *q;     // ring of q_cap
    size_t q_head, q_len, q_cap;
    conn_state *wait_head, *wait_tail; // follow-up heads in progress (worker thread only)
} http_worker;

struct http_server {
    http_worker *workers;
    unsigned n_workers;
    _Atomic unsigned next_worker; // round-robin hand-over
    _Atomic bool workers_stop;
    http_front *front;
    http_config cfg;
    const http_router *rt;
    uint16_t port;
    _Atomic int64_t in_flight;
    _Atomic bool draining;
    _Atomic bool loading; // HTTP_ROUTE_LOADED routes answer 503 model_loading
    bool quiesced;
    pthread_mutex_t async_mu; // guards asyncs list
    http_async *asyncs;
};

/* ---------------------------------------------------------------- ids -- */

static _Thread_local uint64_t tl_rng[2];

static uint64_t rng_next(void)
{
    if (UNLIKELY(tl_rng[0] == 0 && tl_rng[1] == 0)) {
        if (getrandom(tl_rng, sizeof tl_rng, 0) != (ssize_t)sizeof tl_rng) {
            tl_rng[0] = clock_wall_ns() ^ (uint64_t)(uintptr_t)&tl_rng;
            tl_rng[1] = clock_mono_ns() | 1;
        }
    }
    /* xorshift128+: ids must be unique, not secret. */
    uint64_t a = tl_rng[0], b = tl_rng[1];
    tl_rng[0] = b;
    a ^= a << 23;
    tl_rng[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return tl_rng[1] + b;
}

void http_make_id(char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t x = rng_next(), y = rng_next();
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(x >> (i * 4)) & 15];
        out[16 + i] = hex[(y >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

/* Keeps [A-Za-z0-9._:/+=@-] of an incoming X-Request-Id, at most 128 of them,
 * so the id is safe in headers, logs and JSON. */
static void sanitize_id(const char *in, char *out)
{
    size_t n = 0;
    for (; in && *in && n < REQUEST_ID_MAX; in++) {
        char c = *in;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("._:/+=@-", c))
            out[n++] = c;
    }
    out[n] = '\0';
}

static bool all_hex(const char *p, size_t n, bool *all_zero)
{
    *all_zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (c != '0')
            *all_zero = false;
    }
    return true;
}

/* W3C Trace Context: version "-" trace-id(32 hex) "-" parent-id(16 hex) "-" flags(2 hex).
 * Version ff is invalid; version 00 has exactly 55 chars; later versions may
 * append "-..." fields. All-zero ids are invalid. */
static void parse_traceparent(const char *tp, char *trace_id)
{
    trace_id[0] = '\0';
    if (!tp)
        return;
    size_t n = strlen(tp);
    bool zero;
    if (n < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
        return;
    if (!all_hex(tp, 2, &zero) || (tp[0] == 'f' && tp[1] == 'f'))
        return;
    if (tp[0] == '0' && tp[1] == '0' && n != 55)
        return;
    if (n > 55 && tp[55] != '-')
        return;
    if (!all_hex(tp + 3, 32, &zero) || zero)
        return;
    if (!all_hex(tp + 36, 16, &zero) || zero)
        return;
    if (!all_hex(tp + 53, 2, &zero))
        return;
    memcpy(trace_id, tp + 3, 32);
    trace_id[32] = '\0';
}

/* ------------------------------------------------------------ answers -- */

int http_error_json(buf *out, int code, const char *msg, const char *param, const char *code_str)
{
    const char *c = code_str ? code_str : err_name(code);
    if (!msg || !*msg)
        msg = err_str(code);
    int rc = buf_append_str(out, "{\"error\":{\"message\":\"");
    if (!rc)
        rc = buf_append_json_str(out, msg, strlen(msg));
    if (!rc)
        rc = buf_printf(out, "\",\"type\":\"%s\",\"param\":", err_openai_type(code));
    if (!rc && param && *param) {
        rc = buf_append_char(out, '"');
        if (!rc)
            rc = buf_append_json_str(out, param, strlen(param));
        if (!rc)
            rc = buf_append_char(out, '"');
    } else if (!rc) {
        rc = buf_append_str(out, "null");
    }
    if (!rc)
        rc = buf_append_str(out, ",\"code\":\"");
    if (!rc)
        rc = buf_append_json_str(out, c, strlen(c));
    if (!rc)
        rc = buf_append_str(out, "\"}}");
    return rc;
}

/* Adds "Name: value" lines of extra (separated by '\n') to resp. */
static int add_extra_headers(struct MHD_Response *resp, const char *extra)
{
    while (extra && *extra) {
        const char *nl = strchr(extra, '\n');
        size_t len = nl ? (size_t)(nl - extra) : strlen(extra);
        const char *colon = memchr(extra, ':', len);
        if (colon) {
            char name[128], value[1024];
            size_t nn = (size_t)(colon - extra);
            const char *v = colon + 1;
            while (v < extra + len && *v == ' ')
                v++;
            size_t vn = (size_t)(extra + len - v);
            if (nn == 0 || nn >= sizeof name || vn >= sizeof value)
                return ERR_INVAL;
            memcpy(name, extra, nn);
            name[nn] = '\0';
            memcpy(value, v, vn);
            value[vn] = '\0';
            if (MHD_add_response_header(resp, name, value) != MHD_YES)
                return ERR_INVAL;
        }
        extra = nl ? nl + 1 : NULL;
    }
    return 0;
}

static struct MHD_Response *make_response(const char *id, const char *ctype, const char *body,
                                          size_t n, const char *extra)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n, (void *)(uintptr_t)(body ? body : ""),
                                        MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return NULL;
    if ((ctype && MHD_add_response_header(resp, "Content-Type", ctype) != MHD_YES) ||
        MHD_add_response_header(resp, "X-Request-Id", id) != MHD_YES ||
        add_extra_headers(resp, extra) != 0) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

int http_respond(http_req *r, int status, const char *ctype, const char *body, size_t n,
                 const char *headers)
{
    if (r->answered)
        return ERR_EXISTS;
    struct MHD_Response *resp = make_response(r->id, ctype, body, n, headers);
    if (!resp)
        return ERR_NOMEM;
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp); // the connection holds its own reference
    if (ok != MHD_YES)
        return ERR_INTERNAL;
    r->answered = true;
    r->status = status;
    r->bytes = n;
    return 0;
}

/* Builds the error body into b: 5xx never shows msg. */
static int error_body(buf *b, int code, const char *msg, const char *param, const char *code_str)
{
    int status = err_http_status(code);
    if (status >= 500 || !msg || !*msg)
        msg = err_str(code);
    return http_error_json(b, code, msg, param, code_str);
}

int http_respond_error(http_req *r, int code, const char *msg, const char *param,
                       const char *code_str, const char *headers)
{
    int status = err_http_status(code);
    if (status >= 500 && msg && *msg && err_http_status(code) != 503)
        LOG_ERROR("http", "request %s: %s", r->id, msg);
    buf b;
    buf_init(&b, 8192);
    int rc = error_body(&b, code, msg, param, code_str);
    if (!rc)
        rc = http_respond(r, status, "application/json", b.data, b.len, headers);
    buf_deinit(&b);
    return rc;
}

/* ------------------------------------------------------------ asyncs -- */

/* The worker whose daemon runs conn (a handful of workers: a scan). */
static struct http_worker *worker_of(http_server *s, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON);
    for (unsigned i = 0; ci && i < s->n_workers; i++)
        if (s->workers[i].d == ci->daemon)
            return &s->workers[i];
    return NULL;
}

static http_async *async_new(http_req *r, int refs)
{
    http_async *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->mu, NULL);
    a->refs = refs;
    a->srv = r->srv;
    a->worker = worker_of(r->srv, r->conn);
    a->req = r;
    a->conn = r->conn;
    buf_init(&a->pending, HTTP_STREAM_PENDING_MAX);
    memcpy(a->id, r->id, sizeof a->id);
    http_server *s = r->srv;
    pthread_mutex_lock(&s->async_mu);
    a->next = s->asyncs;
    if (s->asyncs)
        s->asyncs->prev = a;
    s->asyncs = a;
    pthread_mutex_unlock(&s->async_mu);
    return a;
}

static void async_unref(http_async *a)
{
    pthread_mutex_lock(&a->mu);
    int left = --a->refs;
    pthread_mutex_unlock(&a->mu);
    if (left > 0)
        return;
    http_server *s = a->srv;
    pthread_mutex_lock(&s->async_mu);
    if (a->prev)
        a->prev->next = a->next;
    else
        s->asyncs = a->next;
    if (a->next)
        a->next->prev = a->prev;
    pthread_mutex_unlock(&s->async_mu);
    buf_deinit(&a->pending);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static void wake_worker(struct http_worker *w);

/* Under a->mu: resumes the connection if we suspended it. In external-event
 * mode libmicrohttpd has no inter-thread channel of its own, so the worker
 * that runs the connection's daemon is woken to process the resume. */
static void resume_locked(http_async *a)
{
    if (a->suspended && !a->gone && !a->queuing) {
        a->suspended = false;
        MHD_resume_connection(a->conn);
        if (a->worker)
            wake_worker(a->worker);
    }
}

http_async *http_defer(http_req *r)
{
    if (r->answered)
        return NULL;
    http_async *a = async_new(r, 2); // producer + request
    if (!a)
        return NULL;
    r->async = a;
    r->answered = true;
    pthread_mutex_lock(&a->mu);
    MHD_suspend_connection(r->conn);
    a->suspended = true;
    pthread_mutex_unlock(&a->mu);
    return a;
}

/*
 * Lock order. libmicrohttpd calls stream_read with the response's mutex held,
 * and stream_read takes a->mu (then libmicrohttpd's connection-list mutex, to
 * suspend). So a->mu is never held across a libmicrohttpd call that takes a
 * response's mutex (MHD_queue_response, MHD_destroy_response): an answer is
 * claimed under a->mu (answered, queuing), queued outside it, and finished
 * under it again (queuing cleared, connection resumed). While queuing is
 * set nobody resumes the connection, so the claimant's conn stays valid
 * (suspended, or the handler's own). Order: response mutex -> a->mu ->
 * libmicrohttpd's connection lists; s->async_mu -> a->mu.
 */

/* Under a->mu: makes the caller the one to answer a. */
static bool claim_locked(http_async *a)
{
    if (a->answered || a->gone)
        return false;
    a->answered = true;
    a->queuing = true;
    return true;
}

/* Not under a->mu, with the claim: queues a buffer answer on a->conn. */
static int queue_buffer(http_async *a, int status, const char *ctype, const char *body,
                        size_t n, const char *extra)
{
    struct MHD_Response *resp = make_response(a->id, ctype, body, n, extra);
    if (!resp)
        return ERR_NOMEM;
    enum MHD_Result ok = MHD_queue_response(a->conn, (unsigned)status, resp);
    MHD_destroy_response(resp); // the connection holds its own reference
    return ok == MHD_YES ? 0 : ERR_INTERNAL;
}

/* Under a->mu: ends a claim. When an answer was queued, records it and
 * resumes the connection; when none could be, the connection stays
 * suspended until the server stops (there is nothing to send). */
static void claim_done_locked(http_async *a, bool is_queued, int status, uint64_t bytes)
{
    a->queuing = false;
    if (!is_queued)
        return;
    if (a->req) {
        a->req->status = status;
        a->req->bytes = bytes;
    }
    resume_locked(a);
}

/* With the claim: queues status/body, or the canned 500 when that fails. */
static int answer_claimed(http_async *a, int status, const char *ctype, const char *body,
                          size_t n, const char *extra)
{
    static const char fallback[] =
        "{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\","
        "\"param\":null,\"code\":\"internal_error\"}}";
    int rc = queue_buffer(a, status, ctype, body, n, extra);
    bool queued = rc == 0;
    if (!queued && queue_buffer(a, 500, "application/json", fallback, sizeof fallback - 1,
                                NULL) == 0) { // do not leave the client hanging
        queued = true;
        status = 500;
        n = sizeof fallback - 1;
    }
    pthread_mutex_lock(&a->mu);
    claim_done_locked(a, queued, status, n);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int http_async_respond(http_async *a, int status, const char *ctype, const char *body, size_t n)
{
    return http_async_respond_headers(a, status, ctype, body, n, NULL);
}

int http_async_respond_headers(http_async *a, int status, const char *ctype, const char *body,
                               size_t n, const char *headers)
{
    pthread_mutex_lock(&a->mu);
    bool mine = claim_locked(a);
    pthread_mutex_unlock(&a->mu);
    int rc = mine ? answer_claimed(a, status, ctype, body, n, headers) : ERR_CANCELLED;
    async_unref(a);
    return rc;
}

int http_async_error(http_async *a, int code, const char *msg, const char *param)
{
    buf b;
    buf_init(&b, 8192);
    int rc = error_body(&b, code, msg, param, NULL);
    if (rc) {
        buf_deinit(&b);
        http_async_release(a);
        return rc;
    }
    /* A 429 always says when to come back (the producer has no other way
     * to add the header through this call). */
    rc = http_async_respond_headers(a, err_http_status(code), "application/json", b.data, b.len,
                                    err_http_status(code) == 429 ? "Retry-After: 1" : NULL);
    buf_deinit(&b);
    return rc;
}

void http_async_release(http_async *a)
{
    (void)http_async_error(a, ERR_INTERNAL, NULL, NULL);
}

/* --------------------------------------------------------------- streams -- */

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_async *a = cls;
    pthread_mutex_lock(&a->mu);
    ssize_t rv;
    if (a->pending.len > a->off) {
        size_t n = MIN(max, a->pending.len - a->off);
        memcpy(out, a->pending.data + a->off, n);
        a->off += n;
        if (a->off == a->pending.len) {
            buf_reset(&a->pending);
            a->off = 0;
        }
        a->bytes += n;
        rv = (ssize_t)n;
    } else if (a->ended || a->stopping) {
        rv = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing to send: park the connection until the producer writes. */
        MHD_suspend_connection(a->conn);
        a->suspended = true;
        rv = 0;
    }
    pthread_mutex_unlock(&a->mu);
    return rv;
}

static void stream_free(void *cls)
{
    async_unref(cls); // the response's reference
}

/* Queues the stream response on a (a handler's connection, or a suspended
 * deferred one, then resumed when resume is set). Not under a->mu: destroying
 * a response that was never queued calls stream_free, which takes it. */
static int stream_queue(http_async *a, int status, const char *ctype, bool resume)
{
    pthread_mutex_lock(&a->mu);
    a->refs++; // the response's, dropped by stream_free
    pthread_mutex_unlock(&a->mu);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, a,
                                          stream_free);
    if (!resp) {
        async_unref(a);
        return ERR_NOMEM;
    }
    bool sse = ctype && strncmp(ctype, "text/event-stream", 17) == 0;
    if ((ctype && MHD_add_response_header(resp, "Content-Type", ctype) != MHD_YES) ||
        MHD_add_response_header(resp, "X-Request-Id", a->id) != MHD_YES ||
        (sse && (MHD_add_response_header(resp, "Cache-Control", "no-cache") != MHD_YES ||
                 MHD_add_response_header(resp, "X-Accel-Buffering", "no") != MHD_YES))) {
        MHD_destroy_response(resp);
        return ERR_NOMEM;
    }
    pthread_mutex_lock(&a->mu);
    bool mine = claim_locked(a);
    pthread_mutex_unlock(&a->mu);
    int rc = ERR_CANCELLED;
    if (mine) {
        /* Outside a->mu (lock order above). */
        rc = MHD_queue_response(a->conn, (unsigned)status, resp) == MHD_YES ? 0 : ERR_INTERNAL;
        pthread_mutex_lock(&a->mu);
        a->queuing = false;
        if (rc == 0) {
            a->streaming = true;
            if (a->req)
                a->req->status = status;
            if (resume || a->stopping)
                resume_locked(a); // the reader runs and parks the connection again if empty
        } else {
            a->answered = false; // not answered: the caller's error path answers
        }
        pthread_mutex_unlock(&a->mu);
    }
    MHD_destroy_response(resp); // queued: the connection keeps its reference
    return rc;
}

http_stream *http_stream_begin(http_req *r, int status, const char *ctype)
{
    if (r->answered)
        return NULL;
    http_async *a = async_new(r, 2); // producer + request
    if (!a)
        return NULL;
    if (stream_queue(a, status, ctype, false) != 0) {
        /* Not answered: drop both references; the handler's error path answers. */
        async_unref(a);
        async_unref(a);
        return NULL;
    }
    r->async = a;
    r->answered = true;
    return a;
}

http_stream *http_async_stream(http_async *a, int status, const char *ctype)
{
    int rc = stream_queue(a, status, ctype, true);
    if (rc == 0)
        return a;
    if (rc == ERR_CANCELLED)
        async_unref(a);
    else
        http_async_release(a);
    return NULL;
}

int http_stream_write(http_stream *s, const void *data, size_t n)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->gone || s->stopping || s->ended)
        rc = ERR_CANCELLED;
    else if (s->pending.len - s->off + n > HTTP_STREAM_PENDING_MAX)
        rc = ERR_BUSY;
    else {
        if (s->off && s->pending.len + n > HTTP_STREAM_PENDING_MAX) {
            /* Compact: move the unsent tail to the front. */
            memmove(s->pending.data, s->pending.data + s->off, s->pending.len - s->off);
            s->pending.len -= s->off;
            s->off = 0;
        }
        rc = buf_append(&s->pending, data, n);
        if (rc == ERR_TOO_LARGE)
            rc = ERR_BUSY;
        if (!rc)
            resume_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int http_stream_sse(http_stream *s, const char *data, size_t n)
{
    /* One write so an event is never split between the pending buffer's cap. */
    size_t total;
    if (!size_add_ok(n, 8, &total))
        return ERR_TOO_LARGE;
    char stackbuf[1024];
    char *p = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (!p)
        return ERR_NOMEM;
    memcpy(p, "data: ", 6);
    memcpy(p + 6, data, n);
    memcpy(p + 6 + n, "\n\n", 2);
    int rc = http_stream_write(s, p, total);
    if (p != stackbuf)
        free(p);
    return rc;
}

bool http_async_client_gone(http_async *a)
{
    pthread_mutex_lock(&a->mu);
    bool gone = a->gone || a->stopping;
    if (!gone && !a->answered && a->suspended) {
        /* Suspended: libmicrohttpd polls nothing, so look at the socket. A
         * peer that closed reads as 0 bytes, one that reset as an error;
         * pipelined bytes or nothing (EAGAIN) mean it is still there. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(a->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) {
            char byte;
            ssize_t n = recv(ci->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
            gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return gone;
}

bool http_stream_cancelled(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool c = s->gone || s->stopping;
    pthread_mutex_unlock(&s->mu);
    return c;
}

void http_stream_end(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    resume_locked(s);
    pthread_mutex_unlock(&s->mu);
    async_unref(s);
}

/* ------------------------------------------------------------ requests -- */

const char *http_req_method(const http_req *r)
{
    return r->method;
}
str http_req_path(const http_req *r)
{
    return r->path;
}
const char *http_req_header(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
const char *http_req_query(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}
str http_req_param(const http_req *r, const char *name)
{
    for (size_t i = 0; i < r->match.n_params; i++)
        if (str_eq_cstr(r->match.names[i], name))
            return r->match.values[i];
    return (str){"", 0};
}
const char *http_req_body(const http_req *r, size_t *len)
{
    *len = r->body.len;
    return r->body.data ? r->body.data : "";
}
const char *http_req_id(const http_req *r)
{
    return r->id;
}
const char *http_req_trace_id(const http_req *r)
{
    return r->trace_id;
}
arena *http_req_arena(http_req *r)
{
    if (!r->arena)
        r->arena = arena_new(r->srv->cfg.arena_bytes);
    return r->arena;
}
err_msg *http_req_err(http_req *r)
{
    return &r->err;
}
http_server *http_req_server(http_req *r)
{
    return r->srv;
}

typedef struct hdr_sum {
    uint64_t bytes;
} hdr_sum;

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    hdr_sum *h = cls;
    h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4; // ": " and CRLF
    return MHD_YES;
}

static bool media_is_json(const char *ct)
{
    if (!ct)
        return false;
    str s = str_trim(str_from(ct));
    const char *semi = memchr(s.p, ';', s.n);
    if (semi)
        s.n = (size_t)(semi - s.p);
    s = str_trim(s);
    return str_case_eq(s, STR_LIT("application/json"));
}

static bool method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

static conn_state *conn_state_of(struct MHD_Connection *conn);
static void wait_del(conn_state *cs);

/* Headers are in: checks everything that can be checked before the body.
 * Returns true when it answered (an error). */
static bool begin(http_req *r)
{
    http_server *s = r->srv;
    conn_state *cs = conn_state_of(r->conn);
    if (cs)
        wait_del(cs); // the head is in
    const char *rid = http_req_header(r, "X-Request-Id");
    sanitize_id(rid, r->id);
    if (!r->id[0])
        http_make_id(r->id);
    parse_traceparent(http_req_header(r, "traceparent"), r->trace_id);

    hdr_sum h = {strlen(r->method) + r->path.n + 12};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, sum_header, &h);
    if (h.bytes > s->cfg.max_header_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg, "request headers are %llu bytes, the limit is %llu",
                 (unsigned long long)h.bytes, (unsigned long long)s->cfg.max_header_bytes);
        http_respond_error(r, ERR_HEADERS_TOO_LARGE, msg, NULL, NULL, "Connection: close");
        return true;
    }
    int rc = http_router_match(s->rt, r->method, r->path, &r->match);
    if (rc == ERR_NOT_FOUND) {
        char msg[200];
        snprintf(msg, sizeof msg, "no route for %s %.*s", r->method,
                 (int)MIN(r->path.n, (size_t)120), r->path.p);
        http_respond_error(r, ERR_NOT_FOUND, msg, NULL, NULL, NULL);
        return true;
    }
    if (rc == ERR_METHOD) {
        char msg[220], hdr[128];
        snprintf(msg, sizeof msg, "%s is not allowed on %.*s; allowed: %s", r->method,
                 (int)MIN(r->path.n, (size_t)120), r->path.p, r->match.allow);
        snprintf(hdr, sizeof hdr, "Allow: %s", r->match.allow);
        http_respond_error(r, ERR_METHOD, msg, NULL, NULL, hdr);
        return true;
    }
    unsigned flags = r->match.route->flags;
    if (atomic_load(&s->draining) && !(flags & HTTP_ROUTE_PROBE)) {
        http_respond_error(r, ERR_UNAVAILABLE, "the server is shutting down", NULL,
                           "shutting_down", "Connection: close");
        return true;
    }
    if ((flags & HTTP_ROUTE_LOADED) &&
        atomic_load_explicit(&s->loading, memory_order_acquire)) {
        /* Built here, not by http_respond_error, which hides 5xx messages:
         * this one tells the client what to do. Before the body: a client
         * retrying a large upload sends it once more, not twice. */
        buf b;
        buf_init(&b, 1024);
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Retry-After: %d%s", HTTP_LOADING_RETRY_AFTER_S,
                 method_has_body(r->method) ? "\nConnection: close" : "");
        if (http_error_json(&b, ERR_UNAVAILABLE,
                            "the server is still loading its models and stores; retry "
                            "shortly (GET /readyz says what is loading)",
                            NULL, "model_loading") == 0)
            http_respond(r, 503, "application/json", b.data, b.len, hdr);
        buf_deinit(&b);
        return true;
    }
    const char *cl = http_req_header(r, "Content-Length");
    const char *te = http_req_header(r, "Transfer-Encoding");
    bool chunked = te && strstr(te, "chunked");
    if (cl) {
        uint64_t n;
        if (parse_size(cl, UINT64_MAX, &n) != 0 || cl[0] < '0' || cl[0] > '9' ||
            cl[strspn(cl, "0123456789")] != '\0') {
            http_respond_error(r, ERR_INVAL, "Content-Length is not a number", NULL, NULL,
                               "Connection: close");
            return true;
        }
        if (n > s->cfg.max_body_bytes) {
            char msg[160];
            snprintf(msg, sizeof msg, "the body is %llu bytes, the limit is %llu",
                     (unsigned long long)n, (unsigned long long)s->cfg.max_body_bytes);
            http_respond_error(r, ERR_TOO_LARGE, msg, NULL, NULL, "Connection: close");
            return true;
        }
    } else if (!chunked && method_has_body(r->method)) {
        http_respond_error(r, ERR_LENGTH_REQUIRED,
                           "a request body needs a Content-Length header", NULL, NULL,
                           "Connection: close");
        return true;
    }
    if ((flags & HTTP_ROUTE_JSON) && !media_is_json(http_req_header(r, "Content-Type"))) {
        http_respond_error(r, ERR_MEDIA_TYPE, "the body must be application/json",
                           NULL, NULL, "Connection: close");
        return true;
    }
    buf_init(&r->body, (size_t)s->cfg.max_body_bytes);
    return false;
}

static void dispatch(http_req *r)
{
    const http_route *rt = r->match.route;
    if ((rt->flags & HTTP_ROUTE_JSON) && r->body.len == 0) {
        http_respond_error(r, ERR_INVAL, "the request body is empty; a JSON object is expected",
                           NULL, NULL, NULL);
        return;
    }
    err_clear(&r->err);
    int rc = rt->fn(r, rt->ctx);
    if (r->answered)
        return;
    if (rc == 0) {
        LOG_ERROR("http", "request %s: handler for %s returned without answering", r->id,
                  rt->pattern);
        rc = ERR_INTERNAL;
    }
    int status = err_http_status(rc);
    if (status >= 500 && status != 503)
        LOG_ERROR("http", "request %s: %s %s failed: %s", r->id, r->method, rt->pattern,
                  err_text(&r->err, rc));
    /* 5xx detail was logged above and never reaches the client. */
    const char *msg = status < 500 && r->err.code == rc && r->err.text[0] ? r->err.text : NULL;
    http_respond_error(r, rc, msg, NULL, NULL, NULL);
}

/* Writes the whole "Connection: close" JSON error of code straight to r's
 * socket, for the moments libmicrohttpd cannot queue an answer (mid-body,
 * or a connection it is closing). Best effort, never blocks; the caller
 * then has libmicrohttpd close the connection. */
static void raw_answer(http_req *r, int code, const char *msg)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    if (!r->id[0])
        http_make_id(r->id);
    buf out;
    buf_init(&out, 8192);
    size_t body_len = 0;
    if (http_raw_error(&out, code, msg, r->id, &body_len) == 0) {
        ssize_t w = send(ci->connect_fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            r->status = err_http_status(code);
            r->bytes = body_len;
            r->answered = true;
        }
    }
    buf_deinit(&out);
}

static void set_conn_timeout(http_req *r, unsigned secs)
{
    if (secs == r->timeout_s)
        return;
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, secs);
    r->timeout_s = secs;
}

/* read_timeout_s is a deadline for the whole request, but libmicrohttpd's
 * timeout is one of inactivity: shorten the connection's to what is left,
 * so a client that goes quiet is cut at the deadline too. */
static void tighten_timeout(http_req *r, uint64_t now)
{
    if (r->deadline_ns == UINT64_MAX || now >= r->deadline_ns)
        return;
    uint64_t left_s = (r->deadline_ns - now + 999999999ull) / 1000000000ull;
    if (left_s < r->timeout_s)
        set_conn_timeout(r, (unsigned)MAX(left_s, (uint64_t)1));
}

static bool past_deadline(http_req *r, uint64_t now)
{
    if (now < r->deadline_ns)
        return false;
    char msg[96];
    snprintf(msg, sizeof msg, "the request was not received within %u s",
             r->srv->cfg.read_timeout_s);
    raw_answer(r, ERR_TIMEOUT, msg);
    return true;
}

/* Body bytes libmicrohttpd still hands over after a 413 are dropped up to
 * this much, so a client that keeps sending can read the answer before the
 * close; past it the connection is closed at once. */
#define BODY_DISCARD_MAX (1u << 20)

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)cls;
    (void)version;
    http_req *r = *req_cls;
    if (!r)
        return MHD_NO; // the URI callback failed to allocate: close
    if (r->state == RS_NEW) {
        r->state = RS_BODY;
        r->conn = conn;
        r->method = method;
        r->path = str_from(url);
        if (begin(r))
            set_conn_timeout(r, r->srv->cfg.read_timeout_s);
        else
            tighten_timeout(r, clock_mono_ns());
        return MHD_YES;
    }
    if (r->state == RS_BODY) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (n) {
            uint64_t now = clock_mono_ns();
            if (r->body_over) {
                r->body_over += n;
                return r->body_over > BODY_DISCARD_MAX ? MHD_NO : MHD_YES;
            }
            if (past_deadline(r, now))
                return MHD_NO;
            int rc = buf_append(&r->body, upload_data, n);
            if (rc != 0) {
                /* A chunked body past max_body_bytes (a declared length
                 * was checked before the body): libmicrohttpd cannot queue
                 * an answer mid-upload, so the 413 goes straight out and
                 * the rest of the body is dropped, then the connection
                 * closes. */
                char msg[160];
                snprintf(msg, sizeof msg, "the chunked body is over %llu bytes, the limit",
                         (unsigned long long)r->srv->cfg.max_body_bytes);
                if (rc == ERR_TOO_LARGE)
                    raw_answer(r, ERR_TOO_LARGE, msg);
                else
                    raw_answer(r, ERR_NOMEM, NULL);
                r->body_over = n;
                return MHD_YES;
            }
            tighten_timeout(r, now);
            return MHD_YES;
        }
        if (r->body_over)
            return MHD_NO; // answered already: close
        r->state = RS_DONE;
        set_conn_timeout(r, r->srv->cfg.read_timeout_s);
        dispatch(r);
        return MHD_YES;
    }
    return MHD_YES;
}


static conn_state *conn_state_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* TCP payload bytes received on fd so far (0 when unknown). */
static uint64_t tcp_bytes_received(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return 0;
    return ti.tcpi_bytes_received;
}

static void wait_del(conn_state *cs)
{
    if (!cs->is_waiting)
        return;
    http_worker *w = cs->w;
    if (cs->wprev)
        cs->wprev->wnext = cs->wnext;
    else
        w->wait_head = cs->wnext;
    if (cs->wnext)
        cs->wnext->wprev = cs->wprev;
    else
        w->wait_tail = cs->wprev;
    cs->wprev = cs->wnext = NULL;
    cs->is_waiting = false;
}

/* The previous request ended: the next one's deadline starts now. */
static void wait_push(conn_state *cs, uint64_t now)
{
    http_worker *w = cs->w;
    wait_del(cs);
    cs->ready_ns = now;
    if (!w || !w->srv->cfg.read_timeout_s)
        return;
    /* Bytes libmicrohttpd has consumed: received minus still queued (the
     * client may already have sent the next head, even before this
     * notification on a loaded machine). */
    int inq = 0;
    cs->rx0 = tcp_bytes_received(cs->fd);
    if (ioctl(cs->fd, FIONREAD, &inq) == 0 && inq > 0 && (uint64_t)inq <= cs->rx0)
        cs->rx0 -= (uint64_t)inq;
    cs->wprev = w->wait_tail;
    cs->wnext = NULL;
    if (w->wait_tail)
        w->wait_tail->wnext = cs;
    else
        w->wait_head = cs;
    w->wait_tail = cs;
    cs->is_waiting = true;
}

/* On the worker: follow-up heads not complete read_timeout_s after the
 * previous request ended. One that sent something gets a JSON 408; then the
 * socket is shut down, so libmicrohttpd sees the end and closes the
 * connection (its close notification finishes the request). */
static void expire_heads(http_worker *w, uint64_t now)
{
    http_server *s = w->srv;
    uint64_t to = (uint64_t)s->cfg.read_timeout_s * 1000000000ull;
    while (w->wait_head && w->wait_head->ready_ns + to <= now) {
        conn_state *cs = w->wait_head;
        wait_del(cs);
        bool has_sent = cs->cur || tcp_bytes_received(cs->fd) != cs->rx0;
        if (has_sent) {
            char msg[96];
            snprintf(msg, sizeof msg, "the request was not received within %u s",
                     s->cfg.read_timeout_s);
            if (cs->cur) {
                raw_answer(cs->cur, ERR_TIMEOUT, msg);
            } else {
                char id[HTTP_REQUEST_ID_MAX + 1];
                http_make_id(id);
                buf out;
                buf_init(&out, 8192);
                size_t body_len = 0;
                if (http_raw_error(&out, ERR_TIMEOUT, msg, id, &body_len) == 0) {
                    ssize_t wr = send(cs->fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                    (void)wr;
                }
                buf_deinit(&out);
                if (s->cfg.on_complete) {
                    http_req_info info = {"-", "unmatched", 408, body_len,
                                          (double)(now - cs->ready_ns) * 1e-9};
                    s->cfg.on_complete(s->cfg.hook_ctx, &info);
                }
                LOG_INFO("http", "request %s: a follow-up head was not received within %u s", id,
                         s->cfg.read_timeout_s);
            }
        }
        /* Read what is queued so the close sends FIN, not RST, before the
         * client has read the answer (best effort). */
        char sink[16384];
        for (int i = 0; i < 64 && recv(cs->fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
            ;
        shutdown(cs->fd, SHUT_RDWR);
    }
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)uri;
    http_server *s = cls;
    http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = s;
    r->conn = conn;
    r->t0 = clock_mono_ns();
    r->method = "-";
    r->path = STR_LIT("-");
    conn_state *cs = conn_state_of(conn);
    uint64_t start = r->t0;
    if (cs) {
        cs->cur = r;
        /* From the accept (first request) or the previous request's end. */
        if (cs->ready_ns && cs->ready_ns < start)
            start = cs->ready_ns;
    }
    r->timeout_s = s->cfg.read_timeout_s;
    r->deadline_ns = s->cfg.read_timeout_s
                         ? start + (uint64_t)s->cfg.read_timeout_s * 1000000000ull
                         : UINT64_MAX;
    atomic_fetch_add(&s->in_flight, 1);
    return r;
}

static void client_addr(struct MHD_Connection *conn, char *out, size_t cap)
{
    snprintf(out, cap, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr)
        http_sockaddr_str(ci->client_addr, out, cap);
}

/* The request stalled before an answer: write a 408 ourselves (libmicrohttpd
 * closes timed-out connections silently). Best effort, never blocks. */
static void send_408(http_req *r)
{
    char text[96];
    snprintf(text, sizeof text, "the request was not received within %u s",
             r->srv->cfg.read_timeout_s);
    raw_answer(r, ERR_TIMEOUT, text);
}

static void log_request(http_req *r, const char *route, double dur_s)
{
    bool quiet = r->match.route && (r->match.route->flags & HTTP_ROUTE_QUIET);
    log_level lvl = quiet ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
    if (!log_enabled(lvl, "http"))
        return;
    char client[80];
    client_addr(r->conn, client, sizeof client);
    buf f;
    buf_init(&f, 4096);
    int rc = buf_printf(&f, "\"request_id\":\"%s\",\"trace_id\":\"%s\",\"method\":\"",
                        r->id[0] ? r->id : "-", r->trace_id);
    if (!rc)
        rc = buf_append_json_str(&f, r->method, strlen(r->method));
    if (!rc)
        rc = buf_append_str(&f, "\",\"route\":\"");
    if (!rc)
        rc = buf_append_json_str(&f, route, strlen(route));
    if (!rc)
        rc = buf_append_str(&f, "\",\"path\":\"");
    if (!rc)
        rc = buf_append_json_str(&f, r->path.p, MIN(r->path.n, (size_t)512));
    if (!rc)
        rc = buf_printf(&f, "\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"client\":\"%s\"",
                        r->status, (unsigned long long)r->bytes, dur_s * 1e3, client);
    if (!rc)
        log_write_fields(lvl, "http", "request", f.data);
    buf_deinit(&f);
}

/* Logs, hooks, frees and uncounts r. */
static void finish_request(http_server *s, http_req *r)
{
    if (r->async) {
        http_async *a = r->async;
        pthread_mutex_lock(&a->mu);
        a->gone = true;
        a->req = NULL;
        if (a->streaming)
            r->bytes = a->bytes;
        pthread_mutex_unlock(&a->mu);
        async_unref(a);
    }
    double dur = (double)(clock_mono_ns() - r->t0) * 1e-9;
    const char *route = r->match.route ? r->match.route->pattern : "unmatched";
    log_request(r, route, dur);
    if (s->cfg.on_complete) {
        http_req_info info = {r->method, route, r->status, r->bytes, dur};
        s->cfg.on_complete(s->cfg.hook_ctx, &info);
    }
    buf_deinit(&r->body);
    arena_free(r->arena);
    free(r);
    atomic_fetch_sub(&s->in_flight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)conn;
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_state *cs = calloc(1, sizeof(conn_state)); // NULL: requests are then untracked
        *socket_context = cs;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        uint64_t t = ci ? http_front_accept_ns(s->front, ci->connect_fd) : 0;
        if (cs) {
            cs->w = worker_of(s, conn);
            cs->fd = ci ? ci->connect_fd : -1;
            cs->ready_ns = t ? t : clock_mono_ns();
        }
        return;
    }
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    http_front_conn_closed(s->front, ai ? ai->client_addr : NULL);
    conn_state *cs = *socket_context;
    *socket_context = NULL;
    if (!cs)
        return;
    wait_del(cs);
    if (cs->cur)
        finish_request(s, cs->cur);
    free(cs);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_req *r = *req_cls;
    if (!r)
        return;
    *req_cls = NULL;
    conn_state *cs = conn_state_of(conn);
    if (cs && cs->cur == r)
        cs->cur = NULL;
    if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED && !r->answered)
        send_408(r);
    finish_request(s, r);
    if (cs && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        wait_push(cs, clock_mono_ns()); // kept alive: the next head is timed from now
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!log_enabled(LOG_LEVEL_DEBUG, "mhd"))
        return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_write(LOG_LEVEL_DEBUG, "mhd", "%s", msg);
}

/* -------------------------------------------------------------- server -- */

void http_config_default(http_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->threads = (unsigned)base_ncpu();
    c->max_connections = 1024;
    c->per_ip_connections = 0;
    c->max_body_bytes = 8u << 20;
    c->max_header_bytes = 32u << 10;
    c->read_timeout_s = 30;
    c->arena_bytes = 16u << 20;
}

/* Opens the listening socket on ss (non-blocking, SO_REUSEADDR, backlog
 * 1024). Returns the fd or -1 with e set. */
static int listen_on(const struct sockaddr_storage *ss, socklen_t len, const http_config *c,
                     err_msg *e)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 1024) != 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        err_set(e, ERR_IO, "http: cannot listen on %s:%u: %s", c->host, c->port,
                strerror(saved));
        return -1;
    }
    return fd;
}

/* ----------------------------------------------------------- workers -- */

static void wake_worker(http_worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n; // a full counter already wakes it
}

/* The front's hand_over: queues fd on the next worker, round-robin. */
static int hand_over(void *ctx, int fd, const struct sockaddr *sa, socklen_t len)
{
    http_server *s = ctx;
    if (len > (socklen_t)sizeof(struct sockaddr_storage))
        return ERR_INVAL;
    unsigned k = atomic_fetch_add_explicit(&s->next_worker, 1, memory_order_relaxed);
    http_worker *w = &s->workers[k % s->n_workers];
    pthread_mutex_lock(&w->mu);
    if (w->q_len == w->q_cap) {
        pthread_mutex_unlock(&w->mu);
        return ERR_BUSY;
    }
    handed_conn *h = &w->q[(w->q_head + w->q_len) % w->q_cap];
    h->fd = fd;
    h->len = len;
    memcpy(&h->sa, sa, len);
    bool was_empty = w->q_len++ == 0;
    pthread_mutex_unlock(&w->mu);
    if (was_empty) // else a wake-up is pending already
        wake_worker(w);
    return 0;
}

/* On the worker: adds what the front handed over to the daemon (or, when
 * stopping, closes it). */
static void take_handed(http_worker *w, bool stopping)
{
    uint64_t v;
    ssize_t n = read(w->wake_fd, &v, sizeof v);
    (void)n;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (w->q_len == 0) {
            pthread_mutex_unlock(&w->mu);
            return;
        }
        handed_conn h = w->q[w->q_head];
        w->q_head = (w->q_head + 1) % w->q_cap;
        w->q_len--;
        pthread_mutex_unlock(&w->mu);
        if (stopping) {
            close(h.fd);
            http_front_conn_closed(w->srv->front, (const struct sockaddr *)&h.sa);
            continue;
        }
        /* On failure libmicrohttpd has closed the socket; no CLOSED
         * notification will come, so release its place here. */
        if (MHD_add_connection(w->d, h.fd, (const struct sockaddr *)&h.sa, h.len) != MHD_YES) {
            LOG_WARN("http", "libmicrohttpd refused a connection: %s", strerror(errno));
            http_front_conn_closed(w->srv->front, (const struct sockaddr *)&h.sa);
        }
    }
}

static void *worker_main(void *arg)
{
    http_worker *w = arg;
    http_server *s = w->srv;
    while (!atomic_load_explicit(&s->workers_stop, memory_order_acquire)) {
        MHD_UNSIGNED_LONG_LONG to;
        int ms = -1;
        if (MHD_get_timeout(w->d, &to) == MHD_YES)
            ms = to > 60000 ? 60000 : (int)to;
        if (w->wait_head) {
            uint64_t now = clock_mono_ns();
            uint64_t dl = w->wait_head->ready_ns + (uint64_t)s->cfg.read_timeout_s * 1000000000ull;
            int left = dl <= now ? 0 : (int)MIN((dl - now + 999999) / 1000000, (uint64_t)60000);
            if (ms < 0 || left < ms)
                ms = left;
        }
        struct pollfd p[2] = {{.fd = w->epoll_fd, .events = POLLIN},
                              {.fd = w->wake_fd, .events = POLLIN}};
        if (poll(p, 2, ms) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            take_handed(w, false);
        if (w->wait_head)
            expire_heads(w, clock_mono_ns());
        /* Non-blocking: epoll_wait(0), then every ready connection, resumed
         * connections and timeouts. */
        MHD_run(w->d);
    }
    return NULL;
}

/* Stops and joins the worker threads (the daemons stay: stopped after). */
static void workers_join(http_server *s)
{
    atomic_store_explicit(&s->workers_stop, true, memory_order_release);
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        if (!w->has_thread)
            continue;
        wake_worker(w);
        pthread_join(w->thread, NULL);
        w->has_thread = false;
    }
}

/* Stops the daemons (their connections close: callbacks run on this thread)
 * and frees the workers. The threads must be joined. */
static void workers_free(http_server *s)
{
    for (unsigned i = 0; s->workers && i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        if (w->wake_fd >= 0 && s->front)
            take_handed(w, true);
        if (w->d)
            MHD_stop_daemon(w->d);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        free(w->q);
        pthread_mutex_destroy(&w->mu);
    }
    free(s->workers);
    s->workers = NULL;
}

/* Starts n daemons (external epoll mode) and their threads. */
static int workers_start(http_server *s, const http_config *c, err_msg *e)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    /* libmicrohttpd keeps the request line and headers in the connection's
     * memory pool: room for a head at our limit (HTTP_HEADERS_MAX lines of
     * bookkeeping included) on follow-up requests too, so that we, not it,
     * answer oversized ones (with a JSON 431). */
    size_t mem = (size_t)MIN(c->max_header_bytes, (uint64_t)64 << 20) * 2 +
                 HTTP_HEADERS_MAX * 64 + 64 * 1024;
    /* The front enforces max_connections over everything open; each daemon's
     * own limit only backs it up. */
    unsigned mhd_limit = c->max_connections > UINT32_MAX - 64 ? c->max_connections
                                                                : c->max_connections + 64;
    s->n_workers = c->threads;
    s->workers = calloc(s->n_workers, sizeof *s->workers);
    if (!s->workers)
        return err_set(e, ERR_NOMEM, "http: out of memory");
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        w->srv = s;
        w->wake_fd = -1;
        pthread_mutex_init(&w->mu, NULL);
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        w->q_cap = (size_t)c->max_connections + 64;
        w->q = calloc(w->q_cap, sizeof *w->q);
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (!w->q || w->wake_fd < 0)
            return err_set(e, ERR_NOMEM, "http: out of memory or descriptors for a worker");
        errno = 0;
        w->d = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, s, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->read_timeout_s,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
            on_connection, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
        if (!w->d) {
            int saved = errno;
            return err_set(e, ERR_IO, "http: cannot start libmicrohttpd: %s",
                           saved ? strerror(saved) : "refused to start");
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_EPOLL_FD);
        if (!di || di->epoll_fd < 0)
            return err_set(e, ERR_IO, "http: libmicrohttpd has no epoll descriptor");
        w->epoll_fd = di->epoll_fd;
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return err_set(e, ERR_IO, "http: cannot start an I/O thread");
        w->has_thread = true;
    }
    return 0;
}

http_server *http_server_start(const http_config *c, const http_router *rt, err_msg *e)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sslen;
    /* No listening socket of libmicrohttpd's: the front accepts, checks the
     * first head and hands the connection to a worker (front.c). */
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, c->host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(c->port);
        sslen = sizeof *in4;
    } else if (inet_pton(AF_INET6, c->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(c->port);
        sslen = sizeof *in6;
    } else {
        err_set(e, ERR_INVAL, "listen: \"%s\" is not an IPv4 or IPv6 address", c->host);
        return NULL;
    }
    if (c->threads < 1 || c->max_connections < 1) {
        err_set(e, ERR_INVAL, "http: threads and max_connections must be at least 1");
        return NULL;
    }
    int lfd = listen_on(&ss, sslen, c, e);
    if (lfd < 0)
        return NULL;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    uint16_t port = c->port;
    if (getsockname(lfd, (struct sockaddr *)&bound, &blen) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        close(lfd);
        err_set(e, ERR_NOMEM, "http: out of memory");
        return NULL;
    }
    s->cfg = *c;
    s->rt = rt;
    s->port = port;
    atomic_init(&s->loading, c->is_loading);
    pthread_mutex_init(&s->async_mu, NULL);
    if (workers_start(s, c, e) != 0) {
        close(lfd);
        workers_join(s);
        workers_free(s);
        pthread_mutex_destroy(&s->async_mu);
        free(s);
        return NULL;
    }
    http_front_config fc = {
        .listen_fd = lfd,
        .hand_over = hand_over,
        .hand_ctx = s,
        .lim = {c->max_header_bytes, c->max_body_bytes},
        .read_timeout_s = c->read_timeout_s,
        .max_connections = c->max_connections,
        .per_ip_connections = c->per_ip_connections,
        .on_complete = c->on_complete,
        .hook_ctx = c->hook_ctx,
    };
    if (http_front_start(&fc, &s->front, e) != 0) {
        workers_join(s);
        workers_free(s);
        pthread_mutex_destroy(&s->async_mu);
        free(s);
        return NULL;
    }
    return s;
}

uint16_t http_server_port(const http_server *s)
{
    return s->port;
}

int64_t http_server_in_flight(const http_server *s)
{
    return atomic_load(&s->in_flight);
}

void http_server_drain(http_server *s)
{
    if (atomic_exchange(&s->draining, true))
        return;
    http_front_drain(s->front);
    s->quiesced = true;
}

bool http_server_draining(const http_server *s)
{
    return atomic_load(&s->draining);
}

void http_server_set_loaded(http_server *s)
{
    atomic_store_explicit(&s->loading, false, memory_order_release);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int http_server_stop(http_server *s, uint64_t grace_ms)
{
    if (!s)
        return 0;
    http_server_drain(s);
    uint64_t deadline = clock_mono_ns() + grace_ms * 1000000ull;
    while (atomic_load(&s->in_flight) > 0 && clock_mono_ns() < deadline)
        sleep_ms(10);
    /* Grace is over: answer what is still deferred, end open streams. */
    int cut = 0;
    http_async *claimed = NULL; // answers we took from their producers (one ref each)
    pthread_mutex_lock(&s->async_mu);
    for (http_async *a = s->asyncs; a; a = a->next) {
        pthread_mutex_lock(&a->mu);
        if (!a->gone) {
            a->stopping = true;
            if (claim_locked(a)) {
                a->refs++;
                a->stop_next = claimed;
                claimed = a;
                cut++;
            } else if (a->streaming && !a->ended) {
                cut++;
            }
            resume_locked(a); // no-op for the claimed: resumed once their answer is queued
        }
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_unlock(&s->async_mu);
    /* Queued outside both locks (lock order above). */
    while (claimed) {
        static const char body[] =
            "{\"error\":{\"message\":\"the server is shutting down\",\"type\":"
            "\"server_error\",\"param\":null,\"code\":\"shutting_down\"}}";
        http_async *a = claimed;
        claimed = a->stop_next;
        (void)answer_claimed(a, 503, "application/json", body, sizeof body - 1,
                             "Connection: close");
        async_unref(a);
    }
    uint64_t last = clock_mono_ns() + 2000000000ull; // let them flush, briefly
    while (atomic_load(&s->in_flight) > 0 && clock_mono_ns() < last)
        sleep_ms(10);
    int64_t left = atomic_load(&s->in_flight);
    if (left > 0)
        cut += (int)left;
    http_front_stop(s->front); // nothing more is handed over
    workers_join(s);
    workers_free(s);           // stops the daemons: their closes release front counts
    http_front_free(s->front);
    pthread_mutex_destroy(&s->async_mu);
    free(s);
    return cut;
}
