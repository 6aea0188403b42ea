/*
 * http/httpc — many HTTP requests (plain and SSE) from one thread over
 * libcurl's multi interface. See httpc.h for the model and the callback rule.
 *
 * Data structures: every request is an hreq on one of two intrusive lists of
 * the client: `pending` (submitted, not yet handed to curl; submissions from
 * callbacks wait here because curl forbids multi calls inside its own
 * callbacks) and `active` (added to the multi handle). A request leaves both
 * lists only in finish(), which runs its on_done and frees it, so on_done
 * runs exactly once. Invariant: n_in_flight == |pending| + |active|.
 *
 * The SSE parser is incremental over the chunks curl hands to on_write: the
 * bytes of the current line go to `line`, the data of the current event to
 * `ev`; a CR at the end of one chunk followed by LF at the start of the next
 * is one line end (last_cr).
 */
#include "http/httpc.h"

#include <curl/curl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/clock.h"

typedef struct hreq hreq;

struct hreq {
    httpc *c;
    hreq *prev, *next; // on c->pending or c->active
    bool is_active;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body; // request body copy (curl does not copy POSTFIELDS)
    bool is_stream;
    httpc_event_fn on_event;
    httpc_done_fn on_done;
    void *ctx;
    uint64_t t_submit_ns, t_first_ns;
    int mode; // 0: undecided, 1: SSE, 2: plain body
    buf resp; // plain body
    buf line; // current SSE line
    buf ev;   // current SSE event data
    bool has_data, last_cr;
    size_t total_bytes, n_events;
    httpc_kind fail_kind; // set by our callbacks before they make curl stop
    char fail_msg[200];
    char errbuf[CURL_ERROR_SIZE];
};

struct httpc {
    CURLM *multi;
    httpc_config cfg;
    hreq *pending_head, *pending_tail;
    hreq *active;
    size_t n_in_flight;
    bool is_cancelling;
    int64_t next_id;
    atomic_bool woken;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *httpc_kind_name(httpc_kind k)
{
    switch (k) {
    case HTTPC_OK:
        return "ok";
    case HTTPC_CONNECT:
        return "connect";
    case HTTPC_TIMEOUT:
        return "timeout";
    case HTTPC_HTTP:
        return "http";
    case HTTPC_PARSE:
        return "parse";
    case HTTPC_TOO_LARGE:
        return "too_large";
    case HTTPC_CANCELLED:
        return "cancelled";
    case HTTPC_IO:
        return "io";
    }
    return "unknown";
}

void httpc_config_default(httpc_config *c)
{
    c->timeout_ms = 300000;
    c->connect_timeout_ms = 10000;
    c->body_max_bytes = (size_t)64 << 20;
    c->event_max_bytes = (size_t)1 << 20;
    c->max_in_flight = 4096;
}

int httpc_new(const httpc_config *cfg, httpc **out, err_msg *e)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return err_set(e, ERR_INTERNAL, "httpc: curl_global_init failed: %s",
                       curl_easy_strerror(curl_init_rc));
    httpc *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(e, ERR_NOMEM, "httpc: out of memory");
    if (cfg)
        c->cfg = *cfg;
    else
        httpc_config_default(&c->cfg);
    if (c->cfg.max_in_flight == 0)
        c->cfg.max_in_flight = 1;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return err_set(e, ERR_INTERNAL, "httpc: curl_multi_init failed");
    }
    atomic_init(&c->woken, false);
    *out = c;
    return 0;
}

/* --------------------------------------------------------------- lists -- */

static void pending_push(httpc *c, hreq *q)
{
    q->next = NULL;
    q->prev = c->pending_tail;
    if (c->pending_tail)
        c->pending_tail->next = q;
    else
        c->pending_head = q;
    c->pending_tail = q;
}

static void unlink_req(httpc *c, hreq *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else if (q->is_active)
        c->active = q->next;
    else
        c->pending_head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else if (!q->is_active)
        c->pending_tail = q->prev;
    q->prev = q->next = NULL;
}

static void req_free(hreq *q)
{
    if (q->easy)
        curl_easy_cleanup(q->easy);
    curl_slist_free_all(q->hdrs);
    free(q->body);
    buf_deinit(&q->resp);
    buf_deinit(&q->line);
    buf_deinit(&q->ev);
    free(q);
}

/* Takes q off its list (and off curl), runs on_done once, frees q. */
static void finish(httpc *c, hreq *q, httpc_kind kind, long status, const char *msg)
{
    if (q->is_active)
        curl_multi_remove_handle(c->multi, q->easy);
    unlink_req(c, q);
    c->n_in_flight--;
    httpc_result r = {
        .kind = kind,
        .status = status,
        .body = q->resp.data ? q->resp.data : "",
        .body_len = q->resp.len,
        .error = kind == HTTPC_OK ? "" : (msg ? msg : httpc_kind_name(kind)),
        .n_events = q->n_events,
        .t_submit_ns = q->t_submit_ns,
        .t_first_byte_ns = q->t_first_ns,
        .t_done_ns = clock_mono_ns(),
    };
    q->on_done(q->ctx, &r);
    req_free(q);
}

/* ------------------------------------------------------------- parsing -- */

static size_t fail_write(hreq *q, httpc_kind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why we stop the transfer; returning 0 from on_write makes curl end it. */
static size_t fail_write(hreq *q, httpc_kind k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    q->fail_kind = k;
    vsnprintf(q->fail_msg, sizeof q->fail_msg, fmt, ap);
    va_end(ap);
    return 0;
}

static bool is_event_stream(const char *ct)
{
    return ct && strncasecmp(ct, "text/event-stream", 17) == 0 &&
           (ct[17] == 0 || ct[17] == ';' || ct[17] == ' ');
}

/* One complete SSE line. Returns 0, or non-zero when q must stop (fail_kind set). */
static int sse_line(hreq *q, uint64_t t_ns)
{
    const char *p = q->line.data ? q->line.data : "";
    size_t n = q->line.len;
    if (n == 0) { // blank line: dispatch
        if (!q->has_data)
            return 0;
        q->n_events++;
        int rc =
            q->on_event ? q->on_event(q->ctx, q->ev.data ? q->ev.data : "", q->ev.len, t_ns) : 0;
        buf_reset(&q->ev);
        q->has_data = false;
        if (rc) {
            fail_write(q, HTTPC_PARSE, "the event consumer refused event %zu", q->n_events);
            return -1;
        }
        return 0;
    }
    if (p[0] == ':')
        return 0; // comment
    const char *colon = memchr(p, ':', n);
    size_t fn = colon ? (size_t)(colon - p) : n;
    if (fn != 4 || memcmp(p, "data", 4) != 0)
        return 0; // event, id, retry, unknown fields
    const char *v = colon ? colon + 1 : p + n;
    size_t vn = (size_t)(p + n - v);
    if (vn && v[0] == ' ') {
        v++;
        vn--;
    }
    if ((q->has_data && buf_append_char(&q->ev, '\n') != 0) || buf_append(&q->ev, v, vn) != 0) {
        fail_write(q, HTTPC_TOO_LARGE, "an SSE event is larger than %zu bytes", q->ev.max_bytes);
        return -1;
    }
    q->has_data = true;
    return 0;
}

static int sse_feed(hreq *q, const char *p, size_t n, uint64_t t_ns)
{
    size_t i = 0;
    while (i < n) {
        if (q->last_cr) {
            q->last_cr = false;
            if (p[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        if (j > i && buf_append(&q->line, p + i, j - i) != 0) {
            fail_write(q, HTTPC_TOO_LARGE, "an SSE line is larger than %zu bytes",
                       q->line.max_bytes);
            return -1;
        }
        if (j == n)
            return 0; // line continues in the next chunk
        q->last_cr = p[j] == '\r';
        int rc = sse_line(q, t_ns);
        buf_reset(&q->line);
        if (rc)
            return rc;
        i = j + 1;
    }
    return 0;
}

static size_t on_write(char *p, size_t sz, size_t nm, void *arg)
{
    hreq *q = arg;
    size_t n = sz * nm;
    uint64_t t = clock_mono_ns();
    if (!q->t_first_ns)
        q->t_first_ns = t;
    size_t total;
    if (!size_add_ok(q->total_bytes, n, &total) || total > q->c->cfg.body_max_bytes)
        return fail_write(q, HTTPC_TOO_LARGE, "the response is larger than %zu bytes",
                          q->c->cfg.body_max_bytes);
    q->total_bytes = total;
    if (q->mode == 0) {
        long status = 0;
        char *ct = NULL;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(q->easy, CURLINFO_CONTENT_TYPE, &ct);
        q->mode = q->is_stream && status >= 200 && status < 300 && is_event_stream(ct) ? 1 : 2;
    }
    if (q->mode == 2) {
        if (buf_append(&q->resp, p, n) != 0)
            return fail_write(q, HTTPC_TOO_LARGE, "the response is larger than %zu bytes",
                              q->c->cfg.body_max_bytes);
        return n;
    }
    return sse_feed(q, p, n, t) ? 0 : n;
}

/* ------------------------------------------------------------- submit -- */

static bool header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    return colon && colon != h && !strpbrk(h, "\r\n");
}

int64_t httpc_submit(httpc *c, const httpc_request *r, err_msg *e)
{
    if (!r->url || !*r->url || !r->on_done)
        return err_set(e, ERR_INVAL, "httpc: a request needs a URL and an on_done callback");
    if (c->is_cancelling)
        return err_set(e, ERR_CANCELLED, "httpc: the client is cancelling every request");
    if (c->n_in_flight >= c->cfg.max_in_flight)
        return err_set(e, ERR_BUSY, "httpc: %zu requests already in flight (the cap)",
                       c->n_in_flight);
    if (r->api_key && strpbrk(r->api_key, "\r\n"))
        return err_set(e, ERR_INVAL, "httpc: the API key contains a line break");
    for (const char *const *h = r->headers; h && *h; h++)
        if (!header_ok(*h))
            return err_set(e, ERR_INVAL, "httpc: header \"%.80s\" is not \"Name: value\"", *h);
    hreq *q = calloc(1, sizeof *q);
    if (!q)
        return err_set(e, ERR_NOMEM, "httpc: out of memory");
    q->c = c;
    q->is_stream = r->is_stream;
    q->on_event = r->on_event;
    q->on_done = r->on_done;
    q->ctx = r->ctx;
    buf_init(&q->resp, c->cfg.body_max_bytes);
    buf_init(&q->line, c->cfg.event_max_bytes);
    buf_init(&q->ev, c->cfg.event_max_bytes);
    q->easy = curl_easy_init();
    if (!q->easy)
        goto nomem;
    CURL *h = q->easy;
    bool ok = true;
    /* Expect: off, or curl waits up to a second for "100 Continue" on bodies over 1 KiB. */
    q->hdrs = curl_slist_append(NULL, "Expect:");
    ok = ok && q->hdrs;
    if (ok && r->body) {
        char ct[160];
        snprintf(ct, sizeof ct, "Content-Type: %s",
                 r->content_type ? r->content_type : "application/json");
        ok = curl_slist_append(q->hdrs, ct) != NULL;
    }
    if (ok && r->is_stream)
        ok = curl_slist_append(q->hdrs, "Accept: text/event-stream") != NULL;
    if (ok && r->api_key) {
        buf a;
        buf_init(&a, 8192);
        ok = buf_printf(&a, "Authorization: Bearer %s", r->api_key) == 0 &&
             curl_slist_append(q->hdrs, a.data) != NULL;
        buf_deinit(&a);
    }
    for (const char *const *x = r->headers; ok && x && *x; x++)
        ok = curl_slist_append(q->hdrs, *x) != NULL;
    if (!ok)
        goto nomem;
    const char *method = r->method ? r->method : (r->body ? "POST" : "GET");
    if (r->body) {
        q->body = malloc(r->body_len + 1);
        if (!q->body)
            goto nomem;
        memcpy(q->body, r->body, r->body_len);
        q->body[r->body_len] = 0;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    }
    if (strcmp(method, "GET") == 0 && !r->body)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") != 0 || !r->body)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    uint64_t tmo = r->timeout_ms ? r->timeout_ms : c->cfg.timeout_ms;
    if (curl_easy_setopt(h, CURLOPT_URL, r->url) != CURLE_OK) {
        req_free(q);
        return err_set(e, ERR_INVAL, "httpc: bad URL \"%.200s\"", r->url);
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(h, CURLOPT_PRIVATE, q);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)MIN(tmo, (uint64_t)LONG_MAX));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)MIN(c->cfg.connect_timeout_ms, (uint64_t)LONG_MAX));
    q->t_submit_ns = clock_mono_ns();
    pending_push(c, q);
    c->n_in_flight++;
    return ++c->next_id;
nomem:
    req_free(q);
    return err_set(e, ERR_NOMEM, "httpc: out of memory");
}

size_t httpc_in_flight(const httpc *c)
{
    return c->n_in_flight;
}

/* ---------------------------------------------------------------- run -- */

/* Hands pending requests to curl. A request curl refuses ends now. */
static void start_pending(httpc *c)
{
    while (c->pending_head) {
        hreq *q = c->pending_head;
        CURLMcode mc = curl_multi_add_handle(c->multi, q->easy);
        if (mc != CURLM_OK) {
            char msg[200];
            snprintf(msg, sizeof msg, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
            finish(c, q, HTTPC_IO, 0, msg); // still on pending: finish unlinks it
            continue;
        }
        unlink_req(c, q);
        q->is_active = true;
        q->prev = NULL;
        q->next = c->active;
        if (c->active)
            c->active->prev = q;
        c->active = q;
    }
}

static httpc_kind kind_of(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return HTTPC_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTPC_TIMEOUT;
    default:
        return HTTPC_IO;
    }
}

static void complete(httpc *c, hreq *q, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    char msg[300];
    if (q->fail_kind != HTTPC_OK) {
        finish(c, q, q->fail_kind, status, q->fail_msg);
        return;
    }
    if (rc != CURLE_OK) {
        snprintf(msg, sizeof msg, "%s", q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
        finish(c, q, kind_of(rc), status, msg);
        return;
    }
    if (status < 200 || status > 299) {
        snprintf(msg, sizeof msg, "HTTP status %ld", status);
        finish(c, q, HTTPC_HTTP, status, msg);
        return;
    }
    if (q->is_stream && q->mode != 1) {
        char *ct = NULL;
        curl_easy_getinfo(q->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (!is_event_stream(ct)) {
            snprintf(msg, sizeof msg, "a stream was asked for but the answer is %.100s",
                     ct ? ct : "without Content-Type");
            finish(c, q, HTTPC_PARSE, status, msg);
            return;
        }
    }
    if (q->mode == 1 && (q->has_data || q->line.len > 0)) {
        finish(c, q, HTTPC_PARSE, status, "the stream ended inside an event");
        return;
    }
    finish(c, q, HTTPC_OK, status, NULL);
}

static void drain_messages(httpc *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *pv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &pv);
        if (NEVER(!pv))
            continue;
        complete(c, (hreq *)pv, m->data.result);
    }
}

int httpc_run(httpc *c, uint64_t timeout_ms, err_msg *e)
{
    uint64_t deadline = clock_mono_ns() + timeout_ms * 1000000ull;
    for (;;) {
        start_pending(c);
        int running = 0;
        CURLMcode mc = curl_multi_perform(c->multi, &running);
        if (mc != CURLM_OK)
            return err_set(e, ERR_INTERNAL, "httpc: curl_multi_perform: %s",
                           curl_multi_strerror(mc));
        drain_messages(c);
        if (c->n_in_flight == 0 || atomic_exchange(&c->woken, false))
            break;
        uint64_t now = clock_mono_ns();
        if (now >= deadline)
            break;
        if (c->pending_head)
            continue; // callbacks submitted more: start them before sleeping
        uint64_t wait_ms = (deadline - now + 999999) / 1000000;
        mc = curl_multi_poll(c->multi, NULL, 0, (int)MIN(wait_ms, 1000u), NULL);
        if (mc != CURLM_OK)
            return err_set(e, ERR_INTERNAL, "httpc: curl_multi_poll: %s", curl_multi_strerror(mc));
    }
    return (int)MIN(c->n_in_flight, (size_t)INT32_MAX);
}

void httpc_cancel_all(httpc *c)
{
    c->is_cancelling = true;
    while (c->active || c->pending_head) {
        hreq *q = c->active ? c->active : c->pending_head;
        finish(c, q, HTTPC_CANCELLED, 0, "cancelled");
    }
    c->is_cancelling = false;
}

void httpc_wakeup(httpc *c)
{
    atomic_store(&c->woken, true);
    curl_multi_wakeup(c->multi);
}

void httpc_free(httpc *c)
{
    if (!c)
        return;
    httpc_cancel_all(c);
    curl_multi_cleanup(c->multi);
    free(c);
}
