/*
 * http/server — ferry's HTTP/1.1 connection engine: I/O workers, the
 * connection state machine, request life cycle, limits, errors, request ids,
 * request logs, deferred answers and streams.
 *
 * Threads. The front (front.c) accepts connections, counts them against the
 * limits, pre-checks the first head and hands each connection to a worker
 * (round-robin, through the worker's queue and eventfd). Each worker is one
 * thread with its own epoll set (edge-triggered, EPOLLIN|EPOLLOUT|EPOLLRDHUP
 * registered once) that owns its connections outright: reading, parsing,
 * handlers, writing, timers. Nothing else touches a connection.
 *
 * A connection (hconn) runs this state machine:
 *   HEAD    bytes of a request head arrive in c->in; http_head_parse (head.c)
 *           refuses anything malformed (JSON 400/413/431/501/505), on every
 *           request of the connection;
 *   BODY    by Content-Length or through the incremental chunked decoder
 *           (every framing error a JSON 400, wherever it occurs; 413 past
 *           max_body_bytes); 411/413/415 and the route come before the body;
 *   HANDLER the handler deferred its answer (http_defer) or streams: the
 *           answer comes from another thread through the http_async handle;
 *   WRITE   the answer's bytes are being written (writev of head + body;
 *           EAGAIN -> wait for EPOLLOUT), then the request completes (log
 *           line, on_complete hook) and the connection goes back to HEAD
 *           (keep-alive, pipelined bytes already buffered are parsed at once)
 *           or lingers (Connection: close, errors);
 *   LINGER  answered and shut for writing: what the client still sends is
 *           read and dropped (up to 1 MiB, 2 s) so the close sends FIN, not
 *           RST, before the client has read the answer;
 *   DEAD    the client left while a producer still holds the request's
 *           handle: the socket is closed, the request (and its arena) lives
 *           until the producer answers or ends.
 *
 * Deadlines: read_timeout_s is a total deadline per request, from the accept
 * (first request) or from the end of the previous answer (follow-ups), over
 * HEAD and BODY: a request that sent something gets a JSON 408, an idle
 * connection is closed quietly. A blocked write waits at most read_timeout_s
 * without progress. Each worker keeps one list of its timed connections
 * sorted by deadline (every deadline is "now + a constant" when set, so an
 * insertion walks from the tail and nearly always stops at once): no system
 * call per request for timing.
 *
 * http_async (deferred answers and streams) is shared between the worker and
 * a producer thread: a mutex, a reference count (the producer's until it
 * answers or ends, the request's until completion, one per pending worker
 * notification). Producers never touch the connection: they leave the answer
 * or the stream bytes in the handle and put it on the owning worker's ready
 * list (once; eventfd write when the list was empty). Lock order:
 * s->async_mu -> a->mu -> w->mu.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/str.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/http_int.h"

#define REQUEST_ID_MAX HTTP_REQUEST_ID_MAX
#define IN_BUF_MIN (4u * 1024)      // a connection's first input buffer
#define IN_BODY_BUF (64u * 1024)    // grown to this while a body streams in
#define LINGER_MS 2000
#define LINGER_DRAIN_BYTES (1u << 20)
#define LINGER_MAX 512              // lingering sockets per worker; past that, plain close
#define OUT_KEEP_MAX (64u * 1024)   // output buffers larger than this are freed after use
#define EVENTS_MAX 256
#define RUN_ROUNDS_MAX 32           // read/parse/write rounds per connection per turn

enum { CS_HEAD = 0, CS_BODY, CS_HANDLER, CS_WRITE, CS_LINGER, CS_DEAD };

struct hconn;
struct http_worker;

struct http_req {
    http_server *srv;
    struct hconn *c;
    const char *method;
    str path;          // percent-decoded, without the query string
    uint64_t t0;
    http_match match;
    buf body;
    arena *arena;
    char id[REQUEST_ID_MAX + 1];
    char trace_id[33];
    int status;        // the answer's status; 0 = none
    uint64_t bytes;    // body bytes of the answer
    bool answered;     // an answer is queued or a deferred/stream handle exists
    http_async *async;
    err_msg err;
    /* the head: a copy in c->hbuf, values NUL-terminated in place */
    const char *head;
    http_field fields[HTTP_HEADERS_MAX];
    size_t n_fields;
    const char *query; // after '?' (not NUL-terminated), or NULL
    size_t query_len;
    bool has_query_args;
    buf qargs;         // decoded "key\0value\0" pairs (first http_req_query)
    bool is_head_method, is_http10, is_chunked, has_body, keep_alive;
    uint64_t body_left;
    http_chunked ck;
    char method_buf[33];
};

/* What a producer needs to know of its request to write the answer's head. */
typedef struct http_req_flags {
    bool is_http10, is_head_method, keep_alive;
} http_req_flags;

struct http_async {
    pthread_mutex_t mu;
    http_req_flags flags;     // set at creation
    int refs;                 // under mu
    http_server *srv;
    struct http_worker *worker;
    struct hconn *conn;       // the worker's; only the worker follows it (while !gone)
    bool answered;            // an answer (or a stream) was given
    bool has_answer;          // resp_* hold a whole answer for the worker to write
    bool streaming;
    bool ended;               // the producer ended the stream (or the server did)
    bool gone;                // the request completed: the handle is detached
    bool peer_gone;           // the client closed or reset its connection
    bool stopping;            // server stop: writes fail
    bool ready_queued;        // on the worker's ready list
    bool close_after;         // the answer says Connection: close
    int status;
    char ctype[96];
    buf resp_head, resp_body; // a whole answer (has_answer)
    buf pending;              // stream bytes not yet taken by the worker
    uint64_t bytes;           // stream body bytes taken
    uint64_t answer_bytes;    // body bytes of a whole answer
    char id[REQUEST_ID_MAX + 1];
    struct http_async *ready_next; // the worker's ready list (under w->mu)
    http_async *prev, *next;  // server list, under srv->async_mu
};

/* A connection the front handed over, waiting for its worker. */
typedef struct handed_conn {
    int fd;
    socklen_t len;
    uint64_t t0_ns;
    struct sockaddr_storage sa;
} handed_conn;

typedef struct hconn {
    struct http_worker *w;
    int fd;
    int state;
    struct sockaddr_storage sa;
    char client[64];
    /* input: unconsumed bytes are in[in_pos..in_len) */
    char *in;
    size_t in_pos, in_len, in_cap;
    size_t scan_pos;          // head bytes already looked at without a '\n'
    bool can_read;            // an edge said readable and no short read since
    bool rd_eof, rd_err;
    /* the current request */
    http_req req;
    bool has_req;
    uint64_t ready_ns;        // when the current request's deadline started
    buf hbuf;                 // the head copy
    buf pbuf;                 // the decoded path
    /* output: ob[ob_off..) then bb[bb_off..) */
    buf ob, bb;
    size_t ob_off, bb_off;
    bool resp_started;        // the answer's head is queued
    bool resp_complete;       // all of the answer is queued
    bool close_after;
    bool is_released;         // its place in the front's counts is given back
    /* timer */
    uint64_t deadline_ns;
    bool in_timer;
    struct hconn *tprev, *tnext;
    /* every connection of the worker */
    struct hconn *prev, *next;
    bool in_again;
    struct hconn *again_next;
    size_t drained;
} hconn;

typedef struct http_worker {
    http_server *srv;
    int ep;
    int wake_fd;
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu;      // guards q*, ready
    handed_conn *q;          // ring of q_cap
    size_t q_head, q_len, q_cap;
    http_async *ready;       // producers' notifications
    /* worker thread only */
    hconn *conns;
    hconn *timer_head, *timer_tail;
    hconn *again;
    size_t n_lingering;
    http_field scratch_fields[HTTP_HEADERS_MAX];
} http_worker;

struct http_server {
    http_worker *workers;
    unsigned n_workers;
    _Atomic unsigned next_worker;
    _Atomic bool workers_stop;
    http_front *front;
    http_config cfg;
    http_head_limits lim;
    size_t in_max;            // a connection's input buffer ceiling
    const http_router *rt;
    uint16_t port;
    _Atomic int64_t in_flight;
    _Atomic bool draining;
    _Atomic bool loading;
    pthread_mutex_t async_mu; // guards asyncs
    http_async *asyncs;
};

static char g_wake_tag;

/* Per-thread scratch of the workers (the threads that run handlers and
 * write log lines), freed when a worker ends. */
static _Thread_local buf tl_line, tl_err;

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


/* ------------------------------------------------------ formatting -- */

/* Appends the decimal digits of v to p; returns the count. */
static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static int append_u64(buf *b, uint64_t v)
{
    char tmp[20];
    return buf_append(b, tmp, put_u64(tmp, v));
}

static int append_lit(buf *b, const char *s, size_t n)
{
    return buf_append(b, s, n);
}
#define APPEND_LIT(b, s) append_lit((b), (s), sizeof(s) - 1)

static const char *reason_of(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Content";
    case 502: return "Bad Gateway";
    case 504: return "Gateway Timeout";
    default: return http_reason(status);
    }
}

/* "Date: Sun, 29 Nov 2026 16:20:00 GMT\r\n", cached per thread per second. */
static const char *date_line(size_t *len)
{
    static _Thread_local char line[48];
    static _Thread_local time_t at = -1;
    static _Thread_local size_t n;
    time_t now = (time_t)(clock_wall_ns() / 1000000000ull);
    if (now != at) {
        static const char days[] = "SunMonTueWedThuFriSat";
        static const char mons[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
        struct tm tm;
        gmtime_r(&now, &tm);
        char *p = line;
        memcpy(p, "Date: ", 6);
        p += 6;
        memcpy(p, days + 3 * (tm.tm_wday % 7), 3);
        p += 3;
        *p++ = ',';
        *p++ = ' ';
        *p++ = (char)('0' + tm.tm_mday / 10);
        *p++ = (char)('0' + tm.tm_mday % 10);
        *p++ = ' ';
        memcpy(p, mons + 3 * (tm.tm_mon % 12), 3);
        p += 3;
        *p++ = ' ';
        p += put_u64(p, (uint64_t)(tm.tm_year + 1900));
        *p++ = ' ';
        int f[3] = {tm.tm_hour, tm.tm_min, tm.tm_sec};
        for (int i = 0; i < 3; i++) {
            *p++ = (char)('0' + f[i] / 10);
            *p++ = (char)('0' + f[i] % 10);
            *p++ = i < 2 ? ':' : ' ';
        }
        memcpy(p, "GMT\r\n", 5);
        p += 5;
        n = (size_t)(p - line);
        at = now;
    }
    *len = n;
    return line;
}

static bool has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, tok, tl) == 0)
            return true;
        p = e;
    }
    return false;
}

/*
 * The answer's head into o: status line, Date, Content-Type, Content-Length
 * (unless has_len is false), X-Request-Id, the extra "Name: value" lines
 * (separated by '\n'; a "Connection: close" among them sets *close), then
 * Connection as the answer needs it. Returns 0 or the buf error.
 */
static int put_head(buf *o, int status, const char *ctype, const char *id, bool has_len,
                    uint64_t len, const char *extra, bool *close, bool is_http10,
                    const char *more)
{
    int rc = APPEND_LIT(o, "HTTP/1.1 ");
    char st[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10), ' '};
    if (!rc)
        rc = buf_append(o, st, 4);
    if (!rc)
        rc = buf_append_str(o, reason_of(status));
    if (!rc)
        rc = APPEND_LIT(o, "\r\n");
    size_t dl;
    const char *d = date_line(&dl);
    if (!rc)
        rc = buf_append(o, d, dl);
    if (!rc && ctype && *ctype) {
        rc = APPEND_LIT(o, "Content-Type: ");
        if (!rc)
            rc = buf_append_str(o, ctype);
        if (!rc)
            rc = APPEND_LIT(o, "\r\n");
    }
    if (!rc && has_len) {
        rc = APPEND_LIT(o, "Content-Length: ");
        if (!rc)
            rc = append_u64(o, len);
        if (!rc)
            rc = APPEND_LIT(o, "\r\n");
    }
    if (!rc) {
        rc = APPEND_LIT(o, "X-Request-Id: ");
        if (!rc)
            rc = buf_append_str(o, id);
        if (!rc)
            rc = APPEND_LIT(o, "\r\n");
    }
    while (!rc && extra && *extra) {
        const char *nl = strchr(extra, '\n');
        size_t n = nl ? (size_t)(nl - extra) : strlen(extra);
        while (n && extra[n - 1] == '\r')
            n--;
        const char *colon = memchr(extra, ':', n);
        if (colon && colon > extra && !memchr(extra, '\r', n)) {
            if ((size_t)(colon - extra) == 10 && strncasecmp(extra, "Connection", 10) == 0) {
                const char *v = colon + 1;
                while (v < extra + n && (*v == ' ' || *v == '\t'))
                    v++;
                if ((size_t)(extra + n - v) >= 5 && strncasecmp(v, "close", 5) == 0)
                    *close = true;
            } else {
                rc = buf_append(o, extra, n);
                if (!rc)
                    rc = APPEND_LIT(o, "\r\n");
            }
        }
        extra = nl ? nl + 1 : NULL;
    }
    if (!rc && more)
        rc = buf_append_str(o, more);
    if (!rc && *close)
        rc = APPEND_LIT(o, "Connection: close\r\n");
    else if (!rc && is_http10)
        rc = APPEND_LIT(o, "Connection: keep-alive\r\n");
    if (!rc)
        rc = APPEND_LIT(o, "\r\n");
    return rc;
}

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* ------------------------------------------------------- the log line -- */

/* Appends s[0..n) as the inside of a JSON string: plain ASCII is copied,
 * anything else goes through buf_append_json_str. */
static int put_json_str(buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            return buf_append_json_str(b, s, n);
    }
    return buf_append(b, s, n);
}

/* "2026-11-29T07:15:38.270Z" of wall_ns into out (25 bytes with the NUL);
 * the date and time part is cached per thread per second. */
static void put_ts(char *out, uint64_t wall_ns)
{
    static _Thread_local char sec[20];
    static _Thread_local uint64_t at = UINT64_MAX;
    uint64_t s = wall_ns / 1000000000ull;
    if (s != at) {
        time_t t = (time_t)s;
        struct tm tm;
        gmtime_r(&t, &tm);
        int f[6] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                    tm.tm_sec};
        char *p = sec;
        p += put_u64(p, (uint64_t)f[0] % 10000);
        for (int i = 1; i < 6; i++) {
            *p++ = "--T::"[i - 1];
            *p++ = (char)('0' + f[i] / 10);
            *p++ = (char)('0' + f[i] % 10);
        }
        at = s;
    }
    memcpy(out, sec, 19);
    unsigned ms = (unsigned)(wall_ns / 1000000ull % 1000);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
}

/* One request line, formatted by hand and written with one write(2). */
static void log_request(http_req *r, const char *route, uint64_t dur_ns, const char *client)
{
    bool quiet = r->match.route && (r->match.route->flags & HTTP_ROUTE_QUIET);
    log_level lvl = quiet ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
    if (!log_enabled(lvl, "http"))
        return;
    buf_reset(&tl_line);
    if (!tl_line.max_bytes)
        buf_init(&tl_line, 16 * 1024);
    char ts[25];
    put_ts(ts, clock_wall_ns());
    buf *b = &tl_line;
    int rc = APPEND_LIT(b, "{\"ts\":\"");
    if (!rc)
        rc = buf_append(b, ts, 24);
    if (!rc)
        rc = APPEND_LIT(b, "\",\"level\":\"");
    if (!rc)
        rc = buf_append_str(b, log_level_name(lvl));
    if (!rc)
        rc = APPEND_LIT(b, "\",\"mod\":\"http\",\"msg\":\"request\",\"request_id\":\"");
    if (!rc)
        rc = buf_append_str(b, r->id[0] ? r->id : "-");
    if (!rc)
        rc = APPEND_LIT(b, "\",\"trace_id\":\"");
    if (!rc)
        rc = buf_append_str(b, r->trace_id);
    if (!rc)
        rc = APPEND_LIT(b, "\",\"method\":\"");
    if (!rc)
        rc = put_json_str(b, r->method, strlen(r->method));
    if (!rc)
        rc = APPEND_LIT(b, "\",\"route\":\"");
    if (!rc)
        rc = put_json_str(b, route, strlen(route));
    if (!rc)
        rc = APPEND_LIT(b, "\",\"path\":\"");
    if (!rc)
        rc = put_json_str(b, r->path.p, MIN(r->path.n, (size_t)512));
    if (!rc)
        rc = APPEND_LIT(b, "\",\"status\":");
    if (!rc)
        rc = append_u64(b, (uint64_t)(r->status > 0 ? r->status : 0));
    if (!rc)
        rc = APPEND_LIT(b, ",\"bytes\":");
    if (!rc)
        rc = append_u64(b, r->bytes);
    if (!rc)
        rc = APPEND_LIT(b, ",\"duration_ms\":");
    uint64_t us = dur_ns / 1000;
    char frac[4] = {'.', (char)('0' + us % 1000 / 100), (char)('0' + us % 100 / 10),
                    (char)('0' + us % 10)};
    if (!rc)
        rc = append_u64(b, us / 1000);
    if (!rc)
        rc = buf_append(b, frac, 4);
    if (!rc)
        rc = APPEND_LIT(b, ",\"client\":\"");
    if (!rc)
        rc = buf_append_str(b, client);
    if (!rc)
        rc = APPEND_LIT(b, "\"}\n");
    if (!rc)
        log_write_line(b->data, b->len);
}

/* ------------------------------------------------------------- workers -- */

static void wake_worker(http_worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n; // a full counter already wakes it
}

static void timer_del(hconn *c)
{
    if (!c->in_timer)
        return;
    http_worker *w = c->w;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        w->timer_head = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        w->timer_tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->in_timer = false;
}

/* Sets c's deadline (UINT64_MAX: none), keeping the list sorted. */
static void timer_set(hconn *c, uint64_t deadline_ns)
{
    timer_del(c);
    c->deadline_ns = deadline_ns;
    if (deadline_ns == UINT64_MAX)
        return;
    http_worker *w = c->w;
    hconn *after = w->timer_tail;
    while (after && after->deadline_ns > deadline_ns)
        after = after->tprev;
    c->tprev = after;
    c->tnext = after ? after->tnext : w->timer_head;
    if (c->tnext)
        c->tnext->tprev = c;
    else
        w->timer_tail = c;
    if (after)
        after->tnext = c;
    else
        w->timer_head = c;
    c->in_timer = true;
}

static uint64_t read_deadline(http_server *s, uint64_t from_ns)
{
    return s->cfg.read_timeout_s ? from_ns + (uint64_t)s->cfg.read_timeout_s * 1000000000ull
                                 : UINT64_MAX;
}

/* Gives c's place in the connection counts back (once). */
static void release(hconn *c)
{
    if (c->is_released)
        return;
    c->is_released = true;
    http_front_conn_closed(c->w->srv->front, (const struct sockaddr *)&c->sa);
}

static void again_push(hconn *c)
{
    if (c->in_again)
        return;
    c->in_again = true;
    c->again_next = c->w->again;
    c->w->again = c;
}

/* ------------------------------------------------------------ requests -- */

/* The first byte of a request arrived: counted in flight from here. */
static void req_start(hconn *c)
{
    http_req *r = &c->req;
    c->has_req = true;
    r->srv = c->w->srv;
    r->c = c;
    r->t0 = clock_mono_ns();
    r->method = "-";
    r->path = STR_LIT("-");
    r->match.route = NULL;
    r->match.n_params = 0;
    r->id[0] = '\0';
    r->trace_id[0] = '\0';
    r->status = 0;
    r->bytes = 0;
    r->answered = false;
    r->async = NULL;
    r->head = NULL;
    r->n_fields = 0;
    r->query = NULL;
    r->query_len = 0;
    r->has_query_args = false;
    r->is_head_method = r->is_http10 = r->is_chunked = r->has_body = false;
    r->keep_alive = true;
    r->body_left = 0;
    err_clear(&r->err);
    atomic_fetch_add(&r->srv->in_flight, 1);
}

static void async_unref(http_async *a);

/* Logs, hooks and resets the current request; uncounts it. */
static void finish_request(hconn *c)
{
    if (!c->has_req)
        return;
    http_req *r = &c->req;
    http_server *s = r->srv;
    if (r->async) {
        http_async *a = r->async;
        pthread_mutex_lock(&a->mu);
        a->gone = true;
        if (a->streaming)
            r->bytes = a->bytes;
        pthread_mutex_unlock(&a->mu);
        r->async = NULL;
        async_unref(a);
    }
    uint64_t dur = clock_mono_ns() - r->t0;
    const char *route = r->match.route ? r->match.route->pattern : "unmatched";
    log_request(r, route, dur, c->client);
    if (s->cfg.on_complete) {
        http_req_info info = {r->method, route, r->status, r->bytes, (double)dur * 1e-9};
        s->cfg.on_complete(s->cfg.hook_ctx, &info);
    }
    if (r->body.cap > OUT_KEEP_MAX)
        buf_deinit(&r->body);
    else
        buf_reset(&r->body);
    if (r->qargs.cap)
        buf_deinit(&r->qargs);
    arena_free(r->arena);
    r->arena = NULL;
    c->has_req = false;
    atomic_fetch_sub(&s->in_flight, 1); // release: the stopper sees what handlers did
}

/* Frees c (its request finished, its socket closed). */
static void conn_free(hconn *c)
{
    http_worker *w = c->w;
    timer_del(c);
    if (c->in_again) {
        hconn **pp = &w->again;
        while (*pp && *pp != c)
            pp = &(*pp)->again_next;
        if (*pp)
            *pp = c->again_next;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->state == CS_LINGER)
        w->n_lingering--;
    free(c->in);
    buf_deinit(&c->hbuf);
    buf_deinit(&c->pbuf);
    buf_deinit(&c->ob);
    buf_deinit(&c->bb);
    buf_deinit(&c->req.body);
    buf_deinit(&c->req.qargs);
    free(c);
}

static void close_fd(hconn *c)
{
    if (c->fd >= 0) {
        close(c->fd); // also leaves the epoll set
        c->fd = -1;
    }
    release(c);
}

/*
 * The connection ends now (error, client gone, timeout, stop). A request
 * whose handle a producer still holds keeps living (DEAD) until the producer
 * answers or ends, so whatever it uses (its arena) stays valid; the client
 * is told through the handle (peer_gone). Returns false when c was freed.
 */
static bool conn_close(hconn *c)
{
    close_fd(c);
    if (c->has_req && c->req.async) {
        http_async *a = c->req.async;
        pthread_mutex_lock(&a->mu);
        bool held = !a->has_answer && !(a->streaming && a->ended) && !a->stopping &&
                    !atomic_load_explicit(&c->w->srv->workers_stop, memory_order_relaxed);
        a->peer_gone = true;
        pthread_mutex_unlock(&a->mu);
        if (held) {
            timer_del(c);
            c->state = CS_DEAD;
            return true;
        }
    }
    finish_request(c);
    conn_free(c);
    return false;
}

/* ---------------------------------------------------------- answers -- */

enum { STEP_WAIT = 0, STEP_PROGRESS = 1, STEP_GONE = 2 };

/* Resets the output for a new answer. */
static void out_reset(hconn *c)
{
    if (c->ob.cap > OUT_KEEP_MAX)
        buf_deinit(&c->ob);
    else
        buf_reset(&c->ob);
    if (c->bb.cap > OUT_KEEP_MAX)
        buf_deinit(&c->bb);
    else
        buf_reset(&c->bb);
    c->ob_off = c->bb_off = 0;
}

static bool out_pending(const hconn *c)
{
    return c->ob_off < c->ob.len || c->bb_off < c->bb.len;
}

/* Queues a whole answer on c (handler thread = worker). */
static int queue_answer(hconn *c, int status, const char *ctype, const char *body, size_t n,
                        const char *extra)
{
    http_req *r = &c->req;
    bool close = !r->keep_alive || c->close_after;
    bool has_body = status_has_body(status);
    size_t mark = c->ob.len;
    int rc = put_head(&c->ob, status, ctype, r->id, has_body, n, extra, &close, r->is_http10,
                      NULL);
    if (!rc && has_body && !r->is_head_method && n)
        rc = buf_append(&c->bb, body, n);
    if (rc) {
        c->ob.len = mark;
        buf_reset(&c->bb);
        return rc == ERR_TOO_LARGE ? ERR_NOMEM : rc;
    }
    c->close_after = close;
    c->resp_started = c->resp_complete = true;
    r->answered = true;
    r->status = status;
    r->bytes = n;
    return 0;
}

int http_respond(http_req *r, int status, const char *ctype, const char *body, size_t n,
                 const char *headers)
{
    if (r->answered)
        return ERR_EXISTS;
    return queue_answer(r->c, status, ctype, body ? body : "", n, headers);
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
    if (status >= 500 && msg && *msg && status != 503)
        LOG_ERROR("http", "request %s: %s", r->id, msg);
    buf *b = &tl_err; // reused: no allocation per error
    if (!b->max_bytes)
        buf_init(b, 64 * 1024);
    buf_reset(b);
    int rc = error_body(b, code, msg, param, code_str);
    if (!rc)
        rc = http_respond(r, status, "application/json", b->data, b->len, headers);
    return rc;
}

/* An error found by the engine itself (framing, limits, deadline): the JSON
 * error of code, then the connection closes. Starts a request for the log
 * when none is (e.g. a timeout with only a partial head). Returns
 * STEP_PROGRESS, or STEP_GONE when c was freed. */
static int engine_error(hconn *c, int code, const char *msg, const char *id)
{
    if (!c->has_req)
        req_start(c);
    http_req *r = &c->req;
    if (r->answered) // mid-answer: nothing else can be said
        return conn_close(c) ? STEP_PROGRESS : STEP_GONE;
    if (!r->id[0]) {
        if (id && id[0])
            memcpy(r->id, id, sizeof r->id);
        else
            http_make_id(r->id);
    }
    c->close_after = true;
    out_reset(c);
    if (http_respond_error(r, code, msg, NULL, NULL, NULL) != 0)
        return conn_close(c) ? STEP_PROGRESS : STEP_GONE;
    timer_del(c);
    c->state = CS_WRITE;
    return STEP_PROGRESS;
}

/* ------------------------------------------------------------- output -- */

/* Writes what is queued (writev of head + body). Returns 0 when all is
 * written, 1 when the socket is full (EPOLLOUT will come), -1 when the
 * client is gone. */
static int flush_out(hconn *c)
{
    while (out_pending(c)) {
        struct iovec iov[2];
        int n = 0;
        if (c->ob_off < c->ob.len)
            iov[n++] = (struct iovec){c->ob.data + c->ob_off, c->ob.len - c->ob_off};
        if (c->bb_off < c->bb.len)
            iov[n++] = (struct iovec){c->bb.data + c->bb_off, c->bb.len - c->bb_off};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* an answer making no progress for read_timeout_s: the client
                 * does not read (HEAD/BODY keep their request deadline) */
                if (c->state == CS_WRITE || c->state == CS_HANDLER)
                    timer_set(c, read_deadline(c->w->srv, clock_mono_ns()));
                return 1;
            }
            return -1;
        }
        size_t k = (size_t)w, a = MIN(k, c->ob.len - c->ob_off);
        c->ob_off += a;
        c->bb_off += k - a;
    }
    if (c->state == CS_WRITE || c->state == CS_HANDLER)
        timer_del(c);
    out_reset(c);
    return 0;
}

/* The answer is all written: the request completes; the connection waits
 * for the next one or lingers. Returns false when c was freed. */
static bool complete(hconn *c)
{
    finish_request(c);
    c->resp_started = c->resp_complete = false;
    http_server *s = c->w->srv;
    if (c->close_after || c->rd_eof || c->rd_err) {
        http_worker *w = c->w;
        release(c);
        if (c->rd_eof || c->rd_err || w->n_lingering >= LINGER_MAX ||
            shutdown(c->fd, SHUT_WR) != 0)
            return conn_close(c);
        c->state = CS_LINGER;
        c->drained = 0;
        w->n_lingering++;
        timer_set(c, clock_mono_ns() + (uint64_t)LINGER_MS * 1000000ull);
        return true;
    }
    c->state = CS_HEAD;
    c->scan_pos = 0;
    c->ready_ns = clock_mono_ns();
    timer_set(c, read_deadline(s, c->ready_ns));
    return true;
}

/* ------------------------------------------------------------ asyncs -- */

static http_async *async_new(http_req *r, int refs)
{
    http_async *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->mu, NULL);
    a->refs = refs;
    a->srv = r->srv;
    a->worker = r->c->w;
    a->conn = r->c;
    a->flags = (http_req_flags){r->is_http10, r->is_head_method, r->keep_alive};
    buf_init(&a->resp_head, 64 * 1024);
    buf_init(&a->resp_body, SIZE_MAX / 2);
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
    buf_deinit(&a->resp_head);
    buf_deinit(&a->resp_body);
    buf_deinit(&a->pending);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* Under a->mu: puts a on its worker's ready list (once) and wakes it. */
static void notify_locked(http_async *a)
{
    if (a->ready_queued || a->gone)
        return;
    a->ready_queued = true;
    a->refs++; // the list's, dropped by the worker
    http_worker *w = a->worker;
    pthread_mutex_lock(&w->mu);
    bool was_empty = w->ready == NULL;
    a->ready_next = w->ready;
    w->ready = a;
    pthread_mutex_unlock(&w->mu);
    if (was_empty)
        wake_worker(w);
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
    return a;
}

/* Under a->mu: a whole answer into a->resp_*, or the canned 500 when that
 * fails. Returns the first error. */
static int set_answer_locked(http_async *a, const http_req_flags *f, int status,
                             const char *ctype, const char *body, size_t n, const char *extra)
{
    static const char fallback[] =
        "{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\","
        "\"param\":null,\"code\":\"internal_error\"}}";
    bool close = !f->keep_alive;
    bool has_body = status_has_body(status);
    int rc = put_head(&a->resp_head, status, ctype, a->id, has_body, n, extra, &close,
                      f->is_http10, NULL);
    if (!rc && has_body && !f->is_head_method && n)
        rc = buf_append(&a->resp_body, body, n);
    if (rc) {
        buf_reset(&a->resp_head);
        buf_reset(&a->resp_body);
        close = true;
        status = 500;
        n = sizeof fallback - 1;
        if (put_head(&a->resp_head, 500, "application/json", a->id, true, n, NULL, &close,
                     f->is_http10, NULL) == 0 &&
            !f->is_head_method)
            (void)!buf_append(&a->resp_body, fallback, n);
    }
    a->answered = a->has_answer = true;
    a->status = status;
    a->answer_bytes = n;
    a->close_after = close;
    notify_locked(a);
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
    int rc = ERR_CANCELLED;
    if (!a->answered && !a->gone)
        rc = set_answer_locked(a, &a->flags, status, ctype, body ? body : "", n, headers);
    pthread_mutex_unlock(&a->mu);
    async_unref(a);
    return rc;
}

int http_async_error(http_async *a, int code, const char *msg, const char *param)
{
    buf b;
    buf_init(&b, 64 * 1024);
    int rc = error_body(&b, code, msg, param, NULL);
    if (rc) {
        buf_deinit(&b);
        http_async_release(a);
        return rc;
    }
    /* A 429 always says when to come back. */
    rc = http_async_respond_headers(a, err_http_status(code), "application/json", b.data, b.len,
                                    err_http_status(code) == 429 ? "Retry-After: 1" : NULL);
    buf_deinit(&b);
    return rc;
}

void http_async_release(http_async *a)
{
    (void)http_async_error(a, ERR_INTERNAL, NULL, NULL);
}

bool http_async_client_gone(http_async *a)
{
    pthread_mutex_lock(&a->mu);
    bool gone = a->gone || a->stopping || a->peer_gone;
    pthread_mutex_unlock(&a->mu);
    return gone;
}

/* --------------------------------------------------------------- streams -- */

static int stream_setup(http_async *a, int status, const char *ctype)
{
    pthread_mutex_lock(&a->mu);
    if (a->answered || a->gone) {
        pthread_mutex_unlock(&a->mu);
        return ERR_CANCELLED;
    }
    a->answered = true;
    a->streaming = true;
    a->status = status;
    size_t n = ctype ? MIN(strlen(ctype), sizeof a->ctype - 1) : 0;
    memcpy(a->ctype, ctype ? ctype : "", n);
    a->ctype[n] = '\0';
    notify_locked(a);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

http_stream *http_stream_begin(http_req *r, int status, const char *ctype)
{
    if (r->answered)
        return NULL;
    http_async *a = async_new(r, 2); // producer + request
    if (!a)
        return NULL;
    (void)stream_setup(a, status, ctype); // fresh: cannot be answered yet
    r->async = a;
    r->answered = true;
    return a;
}

http_stream *http_async_stream(http_async *a, int status, const char *ctype)
{
    if (stream_setup(a, status, ctype) == 0)
        return a;
    async_unref(a);
    return NULL;
}

int http_stream_write(http_stream *s, const void *data, size_t n)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->gone || s->stopping || s->ended || s->peer_gone)
        rc = ERR_CANCELLED;
    else if (s->pending.len + n > HTTP_STREAM_PENDING_MAX)
        rc = ERR_BUSY;
    else {
        rc = buf_append(&s->pending, data, n);
        if (rc == ERR_TOO_LARGE)
            rc = ERR_BUSY;
        if (!rc)
            notify_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int http_stream_sse(http_stream *s, const char *data, size_t n)
{
    /* One write so an event is never split by the pending buffer's cap. */
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

bool http_stream_cancelled(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool c = s->gone || s->stopping || s->peer_gone;
    pthread_mutex_unlock(&s->mu);
    return c;
}

void http_stream_end(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    notify_locked(s);
    pthread_mutex_unlock(&s->mu);
    async_unref(s);
}

/* Swaps the contents of x and y; each keeps its ceiling. */
static void swap_data(buf *x, buf *y)
{
    buf t = *x;
    x->data = y->data;
    x->len = y->len;
    x->cap = y->cap;
    y->data = t.data;
    y->len = t.len;
    y->cap = t.cap;
}

/* Worker: moves what the producer left in the handle into c's output (only
 * when the output is drained, so a slow client backs the producer up to
 * HTTP_STREAM_PENDING_MAX). Returns true when something changed. */
static bool pull_async(hconn *c)
{
    http_req *r = &c->req;
    http_async *a = r->async;
    bool progress = false;
    out_reset(c);
    pthread_mutex_lock(&a->mu);
    if (a->has_answer && !c->resp_started) {
        swap_data(&c->ob, &a->resp_head);
        swap_data(&c->bb, &a->resp_body);
        c->close_after |= a->close_after;
        r->status = a->status;
        r->bytes = a->answer_bytes;
        c->resp_started = c->resp_complete = true;
        c->state = CS_WRITE;
        progress = true;
    } else if (a->streaming && !c->resp_complete) {
        bool chunked = !r->is_http10;
        if (!c->resp_started) {
            bool close = !r->keep_alive || r->is_http10;
            bool sse = strncmp(a->ctype, "text/event-stream", 17) == 0;
            const char *more = chunked ? (sse ? "Cache-Control: no-cache\r\nX-Accel-Buffering: "
                                                "no\r\nTransfer-Encoding: chunked\r\n"
                                              : "Transfer-Encoding: chunked\r\n")
                                       : (sse ? "Cache-Control: no-cache\r\nX-Accel-Buffering: "
                                                "no\r\n"
                                              : NULL);
            if (put_head(&c->ob, a->status, a->ctype, a->id, false, 0, NULL, &close, false,
                         more) != 0) {
                a->peer_gone = true; // cannot answer: the producer stops
                pthread_mutex_unlock(&a->mu);
                return false;
            }
            c->close_after |= close;
            r->status = a->status;
            c->resp_started = true;
            progress = true;
        }
        if (a->pending.len && !r->is_head_method) {
            int rc = 0;
            if (chunked) {
                static const char hex[] = "0123456789abcdef";
                char h[20];
                size_t k = 0, v = a->pending.len;
                char tmp[16];
                size_t t = 0;
                do {
                    tmp[t++] = hex[v & 15];
                    v >>= 4;
                } while (v);
                while (t)
                    h[k++] = tmp[--t];
                h[k++] = '\r';
                h[k++] = '\n';
                rc = buf_append(&c->ob, h, k);
            }
            if (!rc)
                rc = buf_append(&c->ob, a->pending.data, a->pending.len);
            if (!rc && chunked)
                rc = APPEND_LIT(&c->ob, "\r\n");
            if (!rc) {
                a->bytes += a->pending.len;
                buf_reset(&a->pending);
                progress = true;
            }
        } else if (a->pending.len) {
            buf_reset(&a->pending); // HEAD: no body
        }
        if ((a->ended || a->stopping) && !a->pending.len) {
            if (chunked && !r->is_head_method)
                (void)!APPEND_LIT(&c->ob, "0\r\n\r\n");
            if (!chunked)
                c->close_after = true;
            c->resp_complete = true;
            c->state = CS_WRITE;
            progress = true;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return progress;
}

/* ----------------------------------------------------- request access -- */

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
    size_t nl = strlen(name);
    for (size_t i = 0; i < r->n_fields; i++) {
        const http_field *f = &r->fields[i];
        if (f->name_len == nl && strncasecmp(r->head + f->name_off, name, nl) == 0)
            return r->head + f->value_off;
    }
    return NULL;
}

/* Appends p[0..n) percent-decoded ('+' as a space when is_form) to b. */
static int append_decoded(buf *b, const char *p, size_t n, bool is_form)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%' && i + 2 < n && str_hexval((unsigned char)p[i + 1]) >= 0 &&
            str_hexval((unsigned char)p[i + 2]) >= 0) {
            ch = (char)(str_hexval((unsigned char)p[i + 1]) * 16 + str_hexval((unsigned char)p[i + 2]));
            i += 2;
        } else if (ch == '+' && is_form) {
            ch = ' ';
        }
        int rc = buf_append_char(b, ch);
        if (rc)
            return rc;
    }
    return 0;
}

/* Decodes the query string once into r->qargs: "key\0=value\0" per
 * argument ("key\0-\0" for one without '='). */
static void query_parse(http_req *r)
{
    r->has_query_args = true;
    buf_init(&r->qargs, (size_t)r->srv->cfg.max_header_bytes * 2 + 64);
    const char *p = r->query, *end = r->query + r->query_len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (e > p) {
            const char *ke = eq ? eq : e;
            int rc = append_decoded(&r->qargs, p, (size_t)(ke - p), true);
            if (!rc)
                rc = buf_append(&r->qargs, eq ? "\0=" : "\0-", 2);
            if (!rc && eq)
                rc = append_decoded(&r->qargs, eq + 1, (size_t)(e - eq - 1), true);
            if (!rc)
                rc = buf_append_char(&r->qargs, '\0');
            if (rc)
                return;
        }
        p = e + 1;
    }
}

const char *http_req_query(const http_req *rc, const char *name)
{
    http_req *r = (http_req *)rc; // decoded lazily, on the handler's thread
    if (!r->query)
        return NULL;
    if (!r->has_query_args)
        query_parse(r);
    const char *p = r->qargs.data, *end = p ? p + r->qargs.len : NULL;
    while (p && p < end) {
        size_t kl = strlen(p);
        const char *flag = p + kl + 1;
        if (flag >= end)
            break;
        const char *v = flag + 1;
        size_t vl = strlen(v);
        if (strcmp(p, name) == 0)
            return *flag == '=' ? v : NULL;
        p = v + vl + 1;
    }
    return NULL;
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

/* ------------------------------------------------------ before the body -- */

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

/* The head is in: checks everything that can be checked before the body
 * (the head parser did the syntax, Content-Length and 413). Returns true
 * when it answered (an error). */
static bool begin(http_req *r)
{
    http_server *s = r->srv;
    sanitize_id(http_req_header(r, "X-Request-Id"), r->id);
    if (!r->id[0])
        http_make_id(r->id);
    parse_traceparent(http_req_header(r, "traceparent"), r->trace_id);
    if (!r->is_http10 && !http_req_header(r, "Host")) { // RFC 9112 3.2: a MUST
        http_respond_error(r, ERR_FORMAT, "an HTTP/1.1 request needs a Host header", NULL,
                           NULL, r->has_body ? "Connection: close" : NULL);
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
    if (!r->has_body && !r->is_chunked && method_has_body(r->method) &&
        !http_req_header(r, "Content-Length")) {
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

/* ------------------------------------------------------------- parsing -- */


static void to_handler(hconn *c)
{
    http_req *r = &c->req;
    timer_del(c);
    c->state = CS_HANDLER;
    dispatch(r);
    if (r->async)
        return; // answered through the handle (conn_run pulls it)
    if (!r->answered) { // not even an error could be queued
        c->close_after = true;
        return;
    }
    c->state = CS_WRITE;
}

/* A complete head at in[in_pos..): the request is set up from it. */
static int on_head(hconn *c, const http_head *h, const http_field *fields, size_t nf)
{
    http_req *r = &c->req;
    const char *p = c->in + c->in_pos;
    size_t start = h->head_end - h->head_bytes;
    buf_reset(&c->hbuf);
    buf_reset(&c->pbuf);
    if (buf_append(&c->hbuf, p + start, h->head_bytes) != 0) {
        return engine_error(c, ERR_NOMEM, NULL, h->request_id);
    }
    char *hd = c->hbuf.data;
    r->head = hd;
    for (size_t i = 0; i < nf; i++) {
        http_field f = fields[i];
        f.name_off -= (uint32_t)start;
        f.value_off -= (uint32_t)start;
        hd[f.value_off + f.value_len] = '\0'; // a CR, LF or trailing space: not a value byte
        r->fields[i] = f;
    }
    r->n_fields = nf;
    c->in_pos += h->head_end;
    memcpy(r->method_buf, h->method, sizeof r->method_buf);
    r->method = r->method_buf;
    const char *t = hd + (h->target_off - start);
    size_t tl = h->target_len;
    const char *q = memchr(t, '?', tl);
    size_t pl = q ? (size_t)(q - t) : tl;
    if (q) {
        r->query = q + 1;
        r->query_len = tl - pl - 1;
    }
    if (append_decoded(&c->pbuf, t, pl, false) != 0) {
        return engine_error(c, ERR_NOMEM, NULL, h->request_id);
    }
    r->path = (str){c->pbuf.data ? c->pbuf.data : "", c->pbuf.len};
    r->is_http10 = h->is_http10;
    r->is_chunked = h->is_chunked;
    r->body_left = h->has_length ? h->content_length : 0;
    r->has_body = h->is_chunked || r->body_left > 0;
    r->is_head_method = strcmp(r->method, "HEAD") == 0;
    const char *conn_hdr = http_req_header(r, "Connection");
    r->keep_alive = r->is_http10 ? (conn_hdr && has_token(conn_hdr, "keep-alive"))
                                 : !(conn_hdr && has_token(conn_hdr, "close"));
    if (r->is_chunked)
        http_chunked_init(&r->ck);
    if (begin(r)) {
        /* answered before the body: a body not read would be taken for the
         * next request, so the connection closes after this answer */
        if (r->has_body)
            c->close_after = true;
        timer_del(c);
        c->state = CS_WRITE;
        return STEP_PROGRESS;
    }
    if (!r->has_body) {
        to_handler(c);
        return STEP_PROGRESS;
    }
    const char *expect = http_req_header(r, "Expect");
    if (expect && !r->is_http10 && strcasecmp(expect, "100-continue") == 0 &&
        c->in_pos == c->in_len)
        (void)!APPEND_LIT(&c->ob, "HTTP/1.1 100 Continue\r\n\r\n");
    c->state = CS_BODY;
    return STEP_PROGRESS;
}

static int step_head(hconn *c)
{
    http_server *s = c->w->srv;
    if (!c->has_req) // empty lines between requests (RFC 9112 2.2) start none
        while (c->in_pos < c->in_len &&
               (c->in[c->in_pos] == '\n' || c->in[c->in_pos] == '\r'))
            c->in_pos++;
    size_t avail = c->in_len - c->in_pos;
    if (!avail) {
        if (c->rd_eof) { // the client is done
            (void)conn_close(c);
            return STEP_GONE;
        }
        return STEP_WAIT;
    }
    if (!c->has_req)
        req_start(c);
    const char *p = c->in + c->in_pos;
    /* Parse again only when a line ended (or the head outgrew its limit):
     * a head dribbled byte by byte is not re-parsed for every byte. */
    if (c->scan_pos && c->scan_pos <= avail && !c->rd_eof && avail <= s->lim.max_header_bytes &&
        !memchr(p + c->scan_pos, '\n', avail - c->scan_pos)) {
        c->scan_pos = avail;
        return STEP_WAIT;
    }
    c->scan_pos = avail;
    http_head h;
    size_t nf = 0;
    int rc = http_head_parse(p, avail, &s->lim, &h, c->w->scratch_fields, &nf);
    if (rc == HTTP_HEAD_PASS)
        return on_head(c, &h, c->w->scratch_fields, nf);
    if (rc == HTTP_HEAD_ERROR) {
        return engine_error(c, h.code, h.msg, h.request_id);
    }
    if (c->rd_eof) {
        return engine_error(c, ERR_FORMAT, "the request ended before its head did", h.request_id);
    }
    return STEP_WAIT;
}

static int step_body(hconn *c)
{
    http_req *r = &c->req;
    http_server *s = c->w->srv;
    size_t avail = c->in_len - c->in_pos;
    char *p = c->in + c->in_pos;
    if (r->is_chunked) {
        if (!avail && !c->rd_eof)
            return STEP_WAIT;
        size_t used = 0, out_n = 0;
        http_head h;
        int rc = http_chunked_decode(&r->ck, p, avail, p, &s->lim, &used, &out_n, &h);
        int arc = out_n ? buf_append(&r->body, p, out_n) : 0;
        c->in_pos += used;
        if (arc) {
            if (arc == ERR_TOO_LARGE)
                return engine_error(c, ERR_TOO_LARGE, "the chunked body is over the limit",
                                    NULL);
            return engine_error(c, ERR_NOMEM, NULL, NULL);
        }
        if (rc == HTTP_HEAD_ERROR) {
            return engine_error(c, h.code, h.msg, NULL);
        }
        if (rc == HTTP_HEAD_PASS) {
            to_handler(c);
            return STEP_PROGRESS;
        }
        if (c->rd_eof) {
            return engine_error(c, ERR_FORMAT, "the request ended before its body did", NULL);
        }
        return used ? STEP_PROGRESS : STEP_WAIT;
    }
    size_t take = (size_t)MIN(r->body_left, (uint64_t)avail);
    if (take) {
        if (buf_append(&r->body, p, take) != 0) {
            return engine_error(c, ERR_NOMEM, NULL, NULL);
        }
        c->in_pos += take;
        r->body_left -= take;
    }
    if (!r->body_left) {
        to_handler(c);
        return STEP_PROGRESS;
    }
    if (c->rd_eof) {
        return engine_error(c, ERR_FORMAT, "the request ended before its body did", NULL);
    }
    return take ? STEP_PROGRESS : STEP_WAIT;
}

/* ------------------------------------------------------------ reading -- */

/* One recv into c->in. Returns 1 when something changed (bytes, EOF,
 * error), 0 when there is nothing to read now or no room. */
static int read_in(hconn *c)
{
    if (!c->can_read || c->rd_eof || c->rd_err || c->fd < 0)
        return 0;
    http_server *s = c->w->srv;
    if (c->in_pos == c->in_len)
        c->in_pos = c->in_len = 0;
    if (c->in_len == c->in_cap) {
        size_t want = c->state == CS_BODY ? MAX(IN_BODY_BUF, c->in_cap) : c->in_cap * 2;
        if (c->in_pos > 0 && (c->in_len - c->in_pos) * 2 <= c->in_cap) {
            memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
            c->in_len -= c->in_pos;
            c->in_pos = 0;
        } else if (c->in_cap < s->in_max) {
            size_t cap = MIN(MAX(want, (size_t)IN_BUF_MIN), s->in_max);
            char *n = realloc(c->in, cap);
            if (!n)
                return 0;
            c->in = n;
            c->in_cap = cap;
        } else if (c->in_pos > 0) {
            memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
            c->in_len -= c->in_pos;
            c->in_pos = 0;
        } else {
            return 0; // full: read again once the parser consumed some
        }
    }
    size_t room = c->in_cap - c->in_len;
    ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
        if ((size_t)n < room)
            c->can_read = false; // drained; the next bytes raise a new edge
        return 1;
    }
    if (n == 0) {
        c->rd_eof = true;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->can_read = false;
        return 0;
    }
    if (errno == EINTR)
        return 1;
    c->rd_err = true;
    return 1;
}

/* Lingering: reads and drops. Returns false when c was freed. */
static bool linger_read(hconn *c)
{
    char sink[16384];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) {
            c->drained += (size_t)n;
            if (c->drained < LINGER_DRAIN_BYTES)
                continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return true;
        }
        (void)conn_close(c);
        return false;
    }
}

/* ----------------------------------------------------- the state machine -- */

/*
 * Runs c as far as it goes now: writes what is queued, completes answered
 * requests, reads, parses, dispatches. Bounded per call (RUN_ROUNDS_MAX);
 * a connection with more to do goes on the worker's again list. Returns
 * false when c was freed.
 */
static bool conn_run(hconn *c)
{
    for (int round = 0;; round++) {
        if (c->state == CS_LINGER)
            return linger_read(c);
        if (c->state == CS_DEAD)
            return true;
        if (round == RUN_ROUNDS_MAX) {
            again_push(c);
            return true;
        }
        bool progress = false;
        if (out_pending(c)) {
            int f = flush_out(c);
            if (f < 0) {
                (void)conn_close(c);
                return false;
            }
            progress = f == 0;
        }
        if (!out_pending(c)) {
            if (c->state == CS_HANDLER && c->req.async && pull_async(c))
                progress = true;
            if (out_pending(c))
                continue;
            if (c->state == CS_WRITE && c->resp_complete) {
                if (!complete(c))
                    return false;
                if (c->state == CS_LINGER)
                    continue;
                progress = true;
            } else if (c->state == CS_HANDLER && !c->req.async && c->close_after) {
                (void)conn_close(c); // no answer could be queued
                return false;
            }
        }
        if (read_in(c))
            progress = true;
        if (c->rd_err) {
            (void)conn_close(c);
            return false;
        }
        if (c->state == CS_HEAD || c->state == CS_BODY) {
            int st = c->state == CS_HEAD ? step_head(c) : step_body(c);
            if (st == STEP_GONE)
                return false;
            if (st == STEP_PROGRESS)
                progress = true;
        } else if (c->rd_eof && c->state == CS_HANDLER) {
            (void)conn_close(c); // the client left before its answer: cancel
            return false;
        }
        if (!progress)
            return true;
    }
}

/* ------------------------------------------------------------- timers -- */

static void on_deadline(hconn *c)
{
    http_server *s = c->w->srv;
    if ((c->state == CS_HEAD && c->has_req) || c->state == CS_BODY) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request was not received within %u s",
                 s->cfg.read_timeout_s);
        if (engine_error(c, ERR_TIMEOUT, msg, NULL) == STEP_GONE)
            return;
        /* A client still sending is not read any more: the answer goes
         * out, then the connection lingers and closes. */
        (void)conn_run(c);
        return;
    }
    /* idle keep-alive, a blocked write, the end of lingering */
    (void)conn_close(c);
}

static void expire(http_worker *w, uint64_t now)
{
    while (w->timer_head && w->timer_head->deadline_ns <= now) {
        hconn *c = w->timer_head;
        timer_del(c);
        on_deadline(c);
    }
}

/* ------------------------------------------------------------- workers -- */

/* The front's hand_over: queues fd on the next worker, round-robin. */
static int hand_over(void *ctx, int fd, const struct sockaddr *sa, socklen_t len, uint64_t t0_ns)
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
    h->t0_ns = t0_ns;
    memcpy(&h->sa, sa, len);
    bool was_empty = w->q_len++ == 0 && w->ready == NULL;
    pthread_mutex_unlock(&w->mu);
    if (was_empty) // else a wake-up is pending already
        wake_worker(w);
    return 0;
}

static void conn_add(http_worker *w, const handed_conn *h)
{
    http_server *s = w->srv;
    hconn *c = calloc(1, sizeof *c);
    if (c)
        c->in = malloc(IN_BUF_MIN);
    if (!c || !c->in) {
        if (c)
            free(c);
        close(h->fd);
        http_front_conn_closed(s->front, (const struct sockaddr *)&h->sa);
        return;
    }
    c->w = w;
    c->fd = h->fd;
    c->in_cap = IN_BUF_MIN;
    c->can_read = true;
    memcpy(&c->sa, &h->sa, h->len);
    http_sockaddr_str((const struct sockaddr *)&c->sa, c->client, sizeof c->client);
    buf_init(&c->hbuf, (size_t)s->lim.max_header_bytes + 8);
    buf_init(&c->pbuf, (size_t)s->lim.max_header_bytes + 8);
    buf_init(&c->ob, HTTP_STREAM_PENDING_MAX + 2 * 64 * 1024);
    buf_init(&c->bb, SIZE_MAX / 2);
    buf_init(&c->req.body, (size_t)s->cfg.max_body_bytes);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    c->state = CS_HEAD;
    c->ready_ns = h->t0_ns ? h->t0_ns : clock_mono_ns();
    timer_set(c, read_deadline(s, c->ready_ns));
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd,
                  &(struct epoll_event){.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                        .data.ptr = c}) != 0) {
        (void)conn_close(c);
        return;
    }
    (void)conn_run(c); // its head is most likely here already
}

/* On the worker: what the front handed over and what producers left. */
static void take_wakeups(http_worker *w, bool stopping)
{
    uint64_t v;
    ssize_t n = read(w->wake_fd, &v, sizeof v);
    (void)n;
    pthread_mutex_lock(&w->mu);
    http_async *ready = w->ready;
    w->ready = NULL;
    pthread_mutex_unlock(&w->mu);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        if (w->q_len == 0) {
            pthread_mutex_unlock(&w->mu);
            break;
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
        conn_add(w, &h);
    }
    while (ready) {
        http_async *a = ready;
        ready = a->ready_next;
        pthread_mutex_lock(&a->mu);
        a->ready_queued = false;
        bool gone = a->gone;
        hconn *c = a->conn;
        bool done = a->has_answer || (a->streaming && (a->ended || a->stopping));
        pthread_mutex_unlock(&a->mu);
        if (!gone) {
            if (c->state == CS_DEAD) {
                if (done || stopping) { // the producer let go: the request ends
                    finish_request(c);
                    conn_free(c);
                }
            } else if (!stopping) {
                (void)conn_run(c);
            }
        }
        async_unref(a); // the list's
    }
}

static void *worker_main(void *arg)
{
    http_worker *w = arg;
    http_server *s = w->srv;
    struct epoll_event evs[EVENTS_MAX];
    while (!atomic_load_explicit(&s->workers_stop, memory_order_acquire)) {
        int ms = -1;
        if (w->again) {
            ms = 0;
        } else if (w->timer_head) {
            uint64_t now = clock_mono_ns(), dl = w->timer_head->deadline_ns;
            ms = dl <= now ? 0 : (int)MIN((dl - now + 999999) / 1000000, (uint64_t)60000);
        }
        int n = epoll_wait(w->ep, evs, EVENTS_MAX, ms);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &g_wake_tag) {
                take_wakeups(w, false);
                continue;
            }
            hconn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                c->can_read = true;
            (void)conn_run(c);
        }
        hconn *again = w->again;
        w->again = NULL;
        while (again) {
            hconn *c = again;
            again = c->again_next;
            c->in_again = false;
            (void)conn_run(c);
        }
        if (w->timer_head)
            expire(w, clock_mono_ns());
    }
    /* Stopping: every connection closes; requests still open finish. */
    while (w->conns) {
        hconn *c = w->conns;
        close_fd(c);
        finish_request(c);
        conn_free(c);
    }
    take_wakeups(w, true);
    buf_deinit(&tl_line);
    buf_deinit(&tl_err);
    return NULL;
}

/* Stops and joins the worker threads. */
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

static void workers_free(http_server *s)
{
    for (unsigned i = 0; s->workers && i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        if (w->wake_fd >= 0 && s->front)
            take_wakeups(w, true);
        if (w->ep >= 0)
            close(w->ep);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        free(w->q);
        pthread_mutex_destroy(&w->mu);
    }
    free(s->workers);
    s->workers = NULL;
}

static int workers_start(http_server *s, const http_config *c, err_msg *e)
{
    s->n_workers = c->threads;
    s->workers = calloc(s->n_workers, sizeof *s->workers);
    if (!s->workers)
        return err_set(e, ERR_NOMEM, "http: out of memory");
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        w->srv = s;
        w->wake_fd = w->ep = -1;
        pthread_mutex_init(&w->mu, NULL);
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        w->q_cap = (size_t)c->max_connections + 64;
        w->q = calloc(w->q_cap, sizeof *w->q);
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!w->q || w->wake_fd < 0 || w->ep < 0)
            return err_set(e, ERR_NOMEM, "http: out of memory or descriptors for a worker");
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake_fd,
                      &(struct epoll_event){.events = EPOLLIN, .data.ptr = &g_wake_tag}) != 0)
            return err_set(e, ERR_IO, "http: epoll: %s", strerror(errno));
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        http_worker *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return err_set(e, ERR_IO, "http: cannot start an I/O thread");
        w->has_thread = true;
    }
    return 0;
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

http_server *http_server_start(const http_config *c, const http_router *rt, err_msg *e)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sslen;
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
    s->lim = (http_head_limits){MIN(c->max_header_bytes, (uint64_t)64 << 20), c->max_body_bytes};
    s->in_max = (size_t)s->lim.max_header_bytes + 64 * 1024;
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
        .lim = s->lim,
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
    static const char body[] =
        "{\"error\":{\"message\":\"the server is shutting down\",\"type\":"
        "\"server_error\",\"param\":null,\"code\":\"shutting_down\"}}";
    int cut = 0;
    pthread_mutex_lock(&s->async_mu);
    for (http_async *a = s->asyncs; a; a = a->next) {
        pthread_mutex_lock(&a->mu);
        if (!a->gone) {
            if (!a->answered) {
                (void)set_answer_locked(a, &a->flags, 503, "application/json", body,
                                        sizeof body - 1, "Connection: close");
                cut++;
            } else if (a->streaming && !a->ended) {
                cut++;
            }
            a->stopping = true;
            notify_locked(a);
        }
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_unlock(&s->async_mu);
    uint64_t last = clock_mono_ns() + 2000000000ull; // let them flush, briefly
    while (atomic_load(&s->in_flight) > 0 && clock_mono_ns() < last)
        sleep_ms(10);
    int64_t left = atomic_load(&s->in_flight);
    if (left > 0)
        cut += (int)left;
    http_front_stop(s->front); // nothing more is handed over
    workers_join(s);           // each closes its connections
    workers_free(s);
    http_front_free(s->front);
    pthread_mutex_destroy(&s->async_mu);
    free(s);
    return cut;
}
