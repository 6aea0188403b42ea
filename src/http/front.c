/*
 * http/front — the thread that accepts connections and holds each new one
 * until its first request head is in and checked (http_head_check on bytes
 * peeked with MSG_PEEK, so nothing is consumed), then hands it to a worker
 * (server.c), whose connection engine reads and parses the same bytes.
 *
 * What it enforces, answering with the server's JSON errors:
 *   - a malformed head or chunked framing in view: 400/413/431/501/505;
 *   - read_timeout_s as a total deadline for the head (slowloris clients
 *     that dribble bytes): 408 once any byte arrived, a quiet close if none;
 *   - max_connections and per_ip_connections over every open connection
 *     (here or in the workers): 503 / 429, then close.
 * An answered connection is shut for writing and lingers up to LINGER_MS,
 * reading and dropping what the client still sends, so the close does not
 * reset the connection before the client has read the answer.
 *
 * Data: two FIFO lists (waiting heads; lingering), each sorted by deadline
 * because every entry of a list gets the same timeout; the per-IP counts
 * are an open-addressing table under a mutex (the workers release their
 * connections through http_front_conn_closed).
 * Follow-up requests on a kept-alive connection are the workers' alone.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/http_int.h"

#define BODY_VIEW_BYTES (64u * 1024) // chunked framing checked in this much past the head
#define LINGER_MS 2000
#define LINGER_DRAIN_BYTES (1u << 20)
#define LINGER_MAX 512               // lingering sockets at most; past that, plain close

enum { FC_HEAD = 0, FC_LINGER };

typedef struct fconn {
    int fd;
    int state;
    uint64_t t0_ns, deadline_ns;
    size_t seen; // bytes peeked so far
    size_t drained;
    struct sockaddr_storage sa;
    socklen_t salen;
    struct fconn *prev, *next;
} fconn;

typedef struct flist {
    fconn *head, *tail;
    size_t n;
} flist;

typedef struct ip_slot {
    uint8_t key[17]; // family byte + address
    uint32_t count;  // 0 = empty
} ip_slot;

struct http_front {
    http_front_config cfg;
    int ep, wake_fd;
    pthread_t thread;
    _Atomic bool stop, drain;
    bool listening;
    uint64_t accept_pause_until;
    flist heads, lingers;
    char *view; // peek buffer: max_header_bytes + BODY_VIEW_BYTES + 1
    size_t view_cap;
    _Atomic int64_t open; // connections open here or in the workers
    pthread_mutex_t ip_mu;
    ip_slot *ips; // under ip_mu; power-of-two size
    size_t ips_cap;
};

static char g_listen_tag, g_wake_tag;

/* ----------------------------------------------------------- helpers -- */

void http_sockaddr_str(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "";
    snprintf(out, cap, "-");
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    }
}

const char *http_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

int http_raw_error(buf *out, int code, const char *msg, const char *id, size_t *body_len)
{
    buf body;
    buf_init(&body, 4096);
    int status = err_http_status(code);
    int rc = http_error_json(&body, code, msg, NULL, NULL);
    if (!rc)
        rc = buf_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\nX-Request-Id: %s\r\n\r\n",
                        status, http_reason(status), body.len, id);
    if (!rc)
        rc = buf_append(out, body.data, body.len);
    *body_len = body.len;
    buf_deinit(&body);
    return rc;
}

static void list_push(flist *l, fconn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->n++;
}

static void list_del(flist *l, fconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

static size_t key_hash(const uint8_t key[17])
{
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (int i = 0; i < 17; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h;
}

static size_t ip_key(const struct sockaddr *sa, uint8_t key[17])
{
    memset(key, 0, 17);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        key[0] = 6;
        memcpy(key + 1, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
    return key_hash(key);
}

/* Under ip_mu: the slot of key, or the empty slot where it would go. */
static size_t ip_find(http_front *f, const uint8_t key[17], size_t h)
{
    size_t mask = f->ips_cap - 1, i = h & mask;
    while (f->ips[i].count && memcmp(f->ips[i].key, key, 17) != 0)
        i = (i + 1) & mask;
    return i;
}

/* Takes a place for sa; false when its address is at the per-IP limit. */
static bool ip_take(http_front *f, const struct sockaddr *sa)
{
    if (!f->cfg.per_ip_connections)
        return true;
    uint8_t key[17];
    size_t h = ip_key(sa, key);
    bool ok = true;
    pthread_mutex_lock(&f->ip_mu);
    size_t i = ip_find(f, key, h);
    if (f->ips[i].count >= f->cfg.per_ip_connections) {
        ok = false;
    } else {
        memcpy(f->ips[i].key, key, 17);
        f->ips[i].count++;
    }
    pthread_mutex_unlock(&f->ip_mu);
    return ok;
}

static void ip_release(http_front *f, const struct sockaddr *sa)
{
    if (!f->cfg.per_ip_connections)
        return;
    uint8_t key[17];
    size_t h = ip_key(sa, key);
    pthread_mutex_lock(&f->ip_mu);
    size_t mask = f->ips_cap - 1, i = ip_find(f, key, h);
    if (f->ips[i].count && --f->ips[i].count == 0) {
        /* Backward-shift deletion keeps every probe chain unbroken. */
        size_t j = i;
        for (;;) {
            j = (j + 1) & mask;
            if (!f->ips[j].count)
                break;
            size_t home = key_hash(f->ips[j].key) & mask;
            bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (between)
                continue;
            f->ips[i] = f->ips[j];
            f->ips[j].count = 0;
            i = j;
        }
    }
    pthread_mutex_unlock(&f->ip_mu);
}

/* Releases c's place in the counts (not for lingering ones: released already). */
static void release(http_front *f, fconn *c)
{
    ip_release(f, (const struct sockaddr *)&c->sa);
    atomic_fetch_sub(&f->open, 1);
}

static void close_conn(http_front *f, fconn *c)
{
    list_del(c->state == FC_HEAD ? &f->heads : &f->lingers, c);
    if (c->state == FC_HEAD)
        release(f, c);
    close(c->fd); // also leaves the epoll set
    free(c);
}

static void log_answer(http_front *f, const fconn *c, const http_head *h, int status,
                       size_t bytes, const char *id)
{
    double dur = (double)(clock_mono_ns() - c->t0_ns) * 1e-9;
    const char *method = h && h->method[0] ? h->method : "-";
    if (f->cfg.on_complete) {
        http_req_info info = {method, "unmatched", status, bytes, dur};
        f->cfg.on_complete(f->cfg.hook_ctx, &info);
    }
    if (!log_enabled(LOG_LEVEL_INFO, "http"))
        return;
    char host[64] = "-";
    http_sockaddr_str((const struct sockaddr *)&c->sa, host, sizeof host);
    buf b;
    buf_init(&b, 4096);
    int rc = buf_printf(&b, "\"request_id\":\"%s\",\"trace_id\":\"\",\"method\":\"", id);
    if (!rc)
        rc = buf_append_json_str(&b, method, strlen(method));
    if (!rc)
        rc = buf_append_str(&b, "\",\"route\":\"unmatched\",\"path\":\"");
    if (!rc && h)
        rc = buf_append_json_str(&b, h->path, strlen(h->path));
    if (!rc)
        rc = buf_printf(&b, "\",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%.3f,\"client\":\"%s\"",
                        status, bytes, dur * 1e3, host);
    if (!rc)
        log_write_fields(LOG_LEVEL_INFO, "http", "request", b.data);
    buf_deinit(&b);
}

/* Writes the JSON error of code to c, shuts it for writing and lets it
 * linger (or closes it when too many linger). c leaves the head list. */
static void answer(http_front *f, fconn *c, int code, const char *msg, const http_head *h)
{
    char id[HTTP_REQUEST_ID_MAX + 1];
    if (h && h->request_id[0])
        memcpy(id, h->request_id, sizeof id);
    else
        http_make_id(id);
    buf out;
    buf_init(&out, 8192);
    size_t body_len = 0;
    int status = err_http_status(code);
    if (http_raw_error(&out, code, msg, id, &body_len) == 0) {
        /* A fresh socket's send buffer takes this whole; if not, the client
         * gets a cut answer, never a blocked front. */
        ssize_t w = send(c->fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    buf_deinit(&out);
    log_answer(f, c, h, status, body_len, id);
    if (c->state == FC_HEAD) {
        list_del(&f->heads, c);
        release(f, c);
    }
    if (f->lingers.n >= LINGER_MAX || shutdown(c->fd, SHUT_WR) != 0) {
        close(c->fd);
        free(c);
        return;
    }
    c->state = FC_LINGER;
    c->deadline_ns = clock_mono_ns() + (uint64_t)LINGER_MS * 1000000ull;
    list_push(&f->lingers, c);
}

/* The head checked out: hand the connection to a worker. */
static void pass(http_front *f, fconn *c)
{
    list_del(&f->heads, c);
    epoll_ctl(f->ep, EPOLL_CTL_DEL, c->fd, NULL);
    /* From here a worker owns the socket; its close releases the counts
     * (http_front_conn_closed). */
    int rc = f->cfg.hand_over(f->cfg.hand_ctx, c->fd, (const struct sockaddr *)&c->sa, c->salen,
                              c->t0_ns);
    if (rc != 0) {
        LOG_WARN("http", "no worker took a connection: %s", err_name(rc));
        close(c->fd);
        release(f, c);
    }
    free(c);
}

static void on_head_readable(http_front *f, fconn *c, uint32_t events)
{
    ssize_t n = recv(c->fd, f->view, f->view_cap, MSG_PEEK);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            close_conn(f, c);
        return;
    }
    if (n == 0) { // the client left before a whole head
        close_conn(f, c);
        return;
    }
    c->seen = (size_t)n;
    http_head h;
    bool full = (size_t)n >= f->view_cap;
    int rc = http_head_check(f->view, (size_t)n, full, &f->cfg.lim, &h);
    if (rc == HTTP_HEAD_PASS) {
        pass(f, c);
    } else if (rc == HTTP_HEAD_ERROR) {
        answer(f, c, h.code, h.msg, &h);
    } else if (events & (EPOLLRDHUP | EPOLLHUP)) {
        answer(f, c, ERR_FORMAT, "the request ended before its head did", &h);
    }
}

static void on_linger_readable(http_front *f, fconn *c)
{
    char sink[16384];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) {
            c->drained += (size_t)n;
            if (c->drained < LINGER_DRAIN_BYTES)
                continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        close_conn(f, c);
        return;
    }
}

static void refuse(http_front *f, fconn *c, int code, const char *msg)
{
    /* Not in a list nor counted yet: answer() expects a lingering-to-be conn. */
    c->state = FC_LINGER;
    if (epoll_ctl(f->ep, EPOLL_CTL_ADD, c->fd,
                  &(struct epoll_event){.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                        .data.ptr = c}) != 0) {
        close(c->fd);
        free(c);
        return;
    }
    answer(f, c, code, msg, NULL);
}

static void accept_some(http_front *f)
{
    for (int k = 0; k < 64; k++) {
        fconn *c = calloc(1, sizeof *c);
        if (!c)
            return;
        c->salen = sizeof c->sa;
        c->fd = accept4(f->cfg.listen_fd, (struct sockaddr *)&c->sa, &c->salen,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c->fd < 0) {
            int e = errno;
            free(c);
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment rather than
                 * spin on a listening socket that stays readable. */
                LOG_WARN("http", "accept: %s; pausing accepts for 100 ms", strerror(e));
                epoll_ctl(f->ep, EPOLL_CTL_DEL, f->cfg.listen_fd, NULL);
                f->accept_pause_until = clock_mono_ns() + 100000000ull;
            }
            return;
        }
        c->t0_ns = clock_mono_ns();
        if (atomic_load(&f->open) >= (int64_t)f->cfg.max_connections) {
            refuse(f, c, ERR_UNAVAILABLE, "too many open connections");
            continue;
        }
        if (!ip_take(f, (const struct sockaddr *)&c->sa)) {
            char msg[96];
            snprintf(msg, sizeof msg, "too many open connections from this address (limit %u)",
                     f->cfg.per_ip_connections);
            refuse(f, c, ERR_RATE_LIMIT, msg);
            continue;
        }
        atomic_fetch_add(&f->open, 1);
        c->state = FC_HEAD;
        c->deadline_ns = f->cfg.read_timeout_s
                             ? c->t0_ns + (uint64_t)f->cfg.read_timeout_s * 1000000000ull
                             : UINT64_MAX;
        list_push(&f->heads, c);
        /* Edge-triggered: peeking leaves the bytes in the socket, so only new
         * bytes may wake us. Adding a socket with bytes waiting reports them. */
        if (epoll_ctl(f->ep, EPOLL_CTL_ADD, c->fd,
                      &(struct epoll_event){.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                            .data.ptr = c}) != 0)
            close_conn(f, c);
    }
}

static void expire(http_front *f, uint64_t now)
{
    while (f->heads.head && f->heads.head->deadline_ns <= now) {
        fconn *c = f->heads.head;
        if (c->seen) {
            char msg[96];
            snprintf(msg, sizeof msg, "the request was not received within %u s",
                     f->cfg.read_timeout_s);
            answer(f, c, ERR_TIMEOUT, msg, NULL);
        } else {
            close_conn(f, c); // nothing was sent: nobody to answer
        }
    }
    while (f->lingers.head && f->lingers.head->deadline_ns <= now)
        close_conn(f, f->lingers.head);
}

static int next_timeout_ms(http_front *f, uint64_t now)
{
    uint64_t t = UINT64_MAX;
    if (f->heads.head)
        t = f->heads.head->deadline_ns;
    if (f->lingers.head && f->lingers.head->deadline_ns < t)
        t = f->lingers.head->deadline_ns;
    if (f->accept_pause_until && f->accept_pause_until < t)
        t = f->accept_pause_until;
    if (t == UINT64_MAX)
        return -1;
    if (t <= now)
        return 0;
    uint64_t ms = (t - now + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

static void stop_listening(http_front *f)
{
    if (!f->listening)
        return;
    epoll_ctl(f->ep, EPOLL_CTL_DEL, f->cfg.listen_fd, NULL);
    close(f->cfg.listen_fd);
    f->listening = false;
    f->accept_pause_until = 0;
}

static void *front_main(void *arg)
{
    http_front *f = arg;
    struct epoll_event evs[64];
    while (!atomic_load(&f->stop)) {
        uint64_t now = clock_mono_ns();
        if (f->accept_pause_until && now >= f->accept_pause_until && f->listening) {
            f->accept_pause_until = 0;
            epoll_ctl(f->ep, EPOLL_CTL_ADD, f->cfg.listen_fd,
                      &(struct epoll_event){.events = EPOLLIN, .data.ptr = &g_listen_tag});
        }
        int n = epoll_wait(f->ep, evs, 64, next_timeout_ms(f, now));
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &g_wake_tag) {
                uint64_t v;
                ssize_t r = read(f->wake_fd, &v, sizeof v);
                (void)r;
                if (atomic_load(&f->drain))
                    stop_listening(f);
            } else if (p == &g_listen_tag) {
                if (f->listening)
                    accept_some(f);
            } else {
                fconn *c = p;
                if (c->state == FC_HEAD)
                    on_head_readable(f, c, evs[i].events);
                else
                    on_linger_readable(f, c);
            }
        }
        expire(f, clock_mono_ns());
    }
    return NULL;
}

/* ------------------------------------------------------------- public -- */

int http_front_start(const http_front_config *c, http_front **out, err_msg *e)
{
    *out = NULL;
    http_front *f = calloc(1, sizeof *f);
    if (!f) {
        close(c->listen_fd);
        return err_set(e, ERR_NOMEM, "http: out of memory");
    }
    f->cfg = *c;
    f->ep = f->wake_fd = -1;
    f->listening = true;
    pthread_mutex_init(&f->ip_mu, NULL);
    f->view_cap = (size_t)MIN(c->lim.max_header_bytes, (uint64_t)64 << 20) + BODY_VIEW_BYTES;
    f->view = malloc(f->view_cap + 1);
    f->ips_cap = 64;
    while (f->ips_cap < (size_t)c->max_connections * 2)
        f->ips_cap *= 2;
    f->ips = calloc(f->ips_cap, sizeof *f->ips);
    int rc = ERR_NOMEM;
    if (!f->view || !f->ips) {
        err_set(e, rc, "http: out of memory for the front");
        goto fail;
    }
    f->ep = epoll_create1(EPOLL_CLOEXEC);
    f->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rc = ERR_IO;
    if (f->ep < 0 || f->wake_fd < 0 ||
        epoll_ctl(f->ep, EPOLL_CTL_ADD, f->wake_fd,
                  &(struct epoll_event){.events = EPOLLIN, .data.ptr = &g_wake_tag}) != 0 ||
        epoll_ctl(f->ep, EPOLL_CTL_ADD, c->listen_fd,
                  &(struct epoll_event){.events = EPOLLIN, .data.ptr = &g_listen_tag}) != 0) {
        err_set(e, rc, "http: epoll: %s", strerror(errno));
        goto fail;
    }
    /* Published before the thread starts: it hands connections to workers
     * whose callbacks reach the front through *out (the server's field). */
    *out = f;
    if (pthread_create(&f->thread, NULL, front_main, f) != 0) {
        *out = NULL;
        err_set(e, rc, "http: cannot start the front thread");
        goto fail;
    }
    return 0;
fail:
    close(c->listen_fd);
    if (f->ep >= 0)
        close(f->ep);
    if (f->wake_fd >= 0)
        close(f->wake_fd);
    free(f->view);
    free(f->ips);
    pthread_mutex_destroy(&f->ip_mu);
    free(f);
    return rc;
}

static void wake(http_front *f)
{
    uint64_t one = 1;
    ssize_t w = write(f->wake_fd, &one, sizeof one);
    (void)w;
}

void http_front_drain(http_front *f)
{
    if (!f || atomic_exchange(&f->drain, true))
        return;
    wake(f);
}

void http_front_stop(http_front *f)
{
    if (!f || atomic_exchange(&f->stop, true))
        return;
    wake(f);
    pthread_join(f->thread, NULL);
    stop_listening(f);
    while (f->heads.head)
        close_conn(f, f->heads.head);
    while (f->lingers.head)
        close_conn(f, f->lingers.head);
}

void http_front_free(http_front *f)
{
    if (!f)
        return;
    http_front_stop(f);
    close(f->ep);
    close(f->wake_fd);
    free(f->view);
    free(f->ips);
    pthread_mutex_destroy(&f->ip_mu);
    free(f);
}

void http_front_conn_closed(http_front *f, const struct sockaddr *sa)
{
    if (sa)
        ip_release(f, sa);
    atomic_fetch_sub(&f->open, 1);
}
