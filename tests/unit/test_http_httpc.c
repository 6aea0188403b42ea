/* Unit tests for http/httpc against the project's own HTTP server started in
 * this process on a free loopback port (no mocks of curl): plain answers with
 * headers and body, SSE parsing (CRLF/CR/LF, multi-line data, comments, other
 * fields, events split across TCP segments) with per-event timestamps, every
 * error kind (connect, timeout, http, parse, too_large, cancelled), many
 * concurrent streams from one thread, submits from on_done, and wakeup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/http.h"
#include "http/httpc.h"

/* ------------------------------------------------------------ the server -- */

static http_server *g_srv;
static http_router *g_rt;
static char g_base[64];
static atomic_int g_threads;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int h_echo(http_req *r, void *ctx)
{
    (void)ctx;
    size_t n;
    const char *body = http_req_body(r, &n);
    const char *auth = http_req_header(r, "Authorization");
    const char *x = http_req_header(r, "X-Test");
    buf b;
    buf_init(&b, 1 << 20);
    int rc = buf_printf(&b, "%s|auth=%s|x=%s|body=%.*s", http_req_method(r), auth ? auth : "-",
                        x ? x : "-", (int)n, body);
    if (!rc)
        rc = http_respond(r, 200, "text/plain", b.data, b.len, NULL);
    buf_deinit(&b);
    return rc;
}

typedef struct streamer {
    http_stream *s;
    int n;
    unsigned ms;
    bool tricky;
} streamer;

static void *stream_main(void *arg)
{
    streamer *w = arg;
    int rc = 0;
    if (w->tricky) {
        /* Each piece is written after a pause so it travels in its own segment. */
        static const char *const pieces[] = {
            ": a comment\n\n",                            // no data: not an event
            "data: zero\n\n",                             // "zero"
            "data:one\r\n\r\n",                           // "one" (no space after the colon)
            "data: a\ndata: b\n\n",                       // "a\nb"
            "event: x\nid: 7\nretry: 5\ndata: three\r\r", // "three" (CR line ends)
            "da",
            "ta: fo",
            "ur\r",
            "\n\r",
            "\n",       // "four", split everywhere incl. CR|LF
            "data\n\n", // "" (a field without colon: empty data)
        };
        for (size_t i = 0; i < ARRAY_LEN(pieces) && !rc; i++) {
            rc = http_stream_write(w->s, pieces[i], strlen(pieces[i]));
            sleep_ms(w->ms);
        }
    } else {
        for (int i = 0; i < w->n && !rc; i++) {
            char ev[64];
            int k = snprintf(ev, sizeof ev, "data: {\"i\":%d}\n\n", i);
            rc = http_stream_write(w->s, ev, (size_t)k);
            if (w->ms)
                sleep_ms(w->ms);
        }
    }
    http_stream_end(w->s);
    free(w);
    atomic_fetch_sub(&g_threads, 1);
    return NULL;
}

static int query_num(http_req *r, const char *name, int dflt)
{
    const char *v = http_req_query(r, name);
    int64_t x;
    if (!v || parse_i64(v, 0, 1 << 24, &x) != 0)
        return dflt;
    return (int)x;
}

static int h_sse(http_req *r, void *ctx)
{
    (void)ctx;
    streamer *w = calloc(1, sizeof *w);
    if (!w)
        return ERR_NOMEM;
    w->n = query_num(r, "n", 5);
    w->ms = (unsigned)query_num(r, "ms", 0);
    w->tricky = query_num(r, "tricky", 0) != 0;
    w->s = http_stream_begin(r, 200, "text/event-stream");
    if (!w->s) {
        free(w);
        return ERR_NOMEM;
    }
    atomic_fetch_add(&g_threads, 1);
    pthread_t t;
    if (pthread_create(&t, NULL, stream_main, w) != 0) {
        atomic_fetch_sub(&g_threads, 1);
        http_stream_end(w->s);
        free(w);
        return 0;
    }
    pthread_detach(t);
    return 0;
}

static int h_cut(http_req *r, void *ctx)
{
    (void)ctx;
    http_stream *s = http_stream_begin(r, 200, "text/event-stream");
    if (!s)
        return ERR_NOMEM;
    int rc = http_stream_write(s, "data: whole\n\ndata: partial\n", 27);
    http_stream_end(s);
    return rc == 0 ? 0 : 0;
}

static int h_json(http_req *r, void *ctx)
{
    (void)ctx;
    return http_respond(r, 200, "application/json", "{\"ok\":true}", 11, NULL);
}

static int h_big(http_req *r, void *ctx)
{
    (void)ctx;
    size_t n = (size_t)query_num(r, "n", 1000);
    char *p = malloc(n);
    if (!p)
        return ERR_NOMEM;
    memset(p, 'x', n);
    int rc = http_respond(r, 200, "text/plain", p, n, NULL);
    free(p);
    return rc;
}

/* Deferred and not answered until teardown (the handles are ours until then). */
static pthread_mutex_t g_hang_lock = PTHREAD_MUTEX_INITIALIZER;
static http_async *g_hang[64];
static size_t g_n_hang;

static int h_hang(http_req *r, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&g_hang_lock);
    bool room = g_n_hang < ARRAY_LEN(g_hang);
    http_async *a = room ? http_defer(r) : NULL;
    if (a)
        g_hang[g_n_hang++] = a;
    pthread_mutex_unlock(&g_hang_lock);
    return a ? 0 : ERR_BUSY;
}

static const http_route routes[] = {
    {"POST", "/echo", h_echo, NULL, 0}, {"PUT", "/echo", h_echo, NULL, 0},
    {"GET", "/echo", h_echo, NULL, 0},  {"GET", "/sse", h_sse, NULL, 0},
    {"POST", "/sse", h_sse, NULL, 0},   {"GET", "/cut", h_cut, NULL, 0},
    {"GET", "/json", h_json, NULL, 0},  {"GET", "/big", h_big, NULL, 0},
    {"GET", "/hang", h_hang, NULL, 0},
};

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    err_msg e;
    g_rt = http_router_new(routes, ARRAY_LEN(routes), &e);
    assert_non_null(g_rt);
    http_config hc;
    http_config_default(&hc);
    hc.host = "127.0.0.1";
    hc.port = 0;
    hc.threads = 2;
    g_srv = http_server_start(&hc, g_rt, &e);
    if (!g_srv)
        fail_msg("server: %s", e.text);
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%u", (unsigned)http_server_port(g_srv));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 500 && atomic_load(&g_threads) > 0; i++)
        sleep_ms(10);
    pthread_mutex_lock(&g_hang_lock);
    for (size_t i = 0; i < g_n_hang; i++)
        (void)http_async_error(g_hang[i], ERR_UNAVAILABLE, NULL, NULL);
    g_n_hang = 0;
    pthread_mutex_unlock(&g_hang_lock);
    http_server_stop(g_srv, 100);
    http_router_free(g_rt);
    return 0;
}

/* ------------------------------------------------------------- helpers -- */

#define EV_MAX 256

typedef struct rec {
    int done;
    httpc_result res;
    char body[4096];
    char error[300];
    int n_ev;
    char ev[EV_MAX][64];
    uint64_t ev_t[EV_MAX];
    int refuse_at; // on_event returns 1 at this event (1-based), 0 never
} rec;

static int on_ev(void *ctx, const char *data, size_t len, uint64_t t)
{
    rec *r = ctx;
    assert_int_equal(strlen(data), len); // NUL-terminated, no embedded NUL here
    if (r->n_ev < EV_MAX) {
        snprintf(r->ev[r->n_ev], sizeof r->ev[0], "%s", data);
        r->ev_t[r->n_ev] = t;
    }
    r->n_ev++;
    return r->refuse_at && r->n_ev == r->refuse_at;
}

static void on_done(void *ctx, const httpc_result *res)
{
    rec *r = ctx;
    r->done++;
    r->res = *res;
    snprintf(r->body, sizeof r->body, "%s", res->body);
    snprintf(r->error, sizeof r->error, "%s", res->error);
    r->res.body = r->body;
    r->res.error = r->error;
}

static httpc *client(void)
{
    httpc *c;
    err_msg e;
    assert_int_equal(httpc_new(NULL, &c, &e), 0);
    return c;
}

static void url(char *out, size_t n, const char *path)
{
    snprintf(out, n, "%s%s", g_base, path);
}

/* Submits one request and runs until it is done (at most 10 s). */
static void run_one(httpc *c, httpc_request *q, rec *r)
{
    err_msg e;
    q->on_event = on_ev;
    q->on_done = on_done;
    q->ctx = r;
    int64_t id = httpc_submit(c, q, &e);
    assert_true(id > 0);
    uint64_t t0 = clock_mono_ns();
    while (!r->done && clock_mono_ns() - t0 < 10000000000ull)
        assert_true(httpc_run(c, 1000, &e) >= 0);
    assert_int_equal(r->done, 1);
    assert_int_equal(httpc_in_flight(c), 0);
}

/* --------------------------------------------------------------- tests -- */

static void test_plain(void **state)
{
    (void)state;
    httpc *c = client();
    char u[128];
    url(u, sizeof u, "/echo");
    const char *hdrs[] = {"X-Test: yes", NULL};
    rec r = {0};
    httpc_request q = {
        .url = u, .api_key = "sk-123", .headers = hdrs, .body = "{\"a\":1}", .body_len = 7};
    run_one(c, &q, &r);
    assert_int_equal(r.res.kind, HTTPC_OK);
    assert_int_equal(r.res.status, 200);
    assert_string_equal(r.body, "POST|auth=Bearer sk-123|x=yes|body={\"a\":1}");
    assert_int_equal(r.res.body_len, strlen(r.body));
    assert_string_equal(r.error, "");
    assert_true(r.res.t_submit_ns <= r.res.t_first_byte_ns &&
                r.res.t_first_byte_ns <= r.res.t_done_ns);
    /* GET without body, PUT with one (custom method) */
    rec g = {0};
    httpc_request qg = {.url = u};
    run_one(c, &qg, &g);
    assert_string_equal(g.body, "GET|auth=-|x=-|body=");
    rec p = {0};
    httpc_request qp = {
        .url = u, .method = "PUT", .body = "zz", .body_len = 2, .content_type = "text/plain"};
    run_one(c, &qp, &p);
    assert_string_equal(p.body, "PUT|auth=-|x=-|body=zz");
    /* a body over 1 KiB goes without a 100-continue wait */
    char big[5000];
    memset(big, 'b', sizeof big);
    rec b = {0};
    httpc_request qb = {.url = u, .body = big, .body_len = sizeof big};
    uint64_t t0 = clock_mono_ns();
    run_one(c, &qb, &b);
    assert_true(clock_mono_ns() - t0 < 800000000ull);
    assert_int_equal(b.res.kind, HTTPC_OK);
    assert_int_equal(b.res.body_len, strlen("POST|auth=-|x=-|body=") + sizeof big);
    httpc_free(c);
}

static void test_sse_parsing(void **state)
{
    (void)state;
    httpc *c = client();
    char u[128];
    url(u, sizeof u, "/sse?tricky=1&ms=15");
    rec r = {0};
    httpc_request q = {.url = u, .is_stream = true};
    run_one(c, &q, &r);
    assert_int_equal(r.res.kind, HTTPC_OK);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.n_ev, 6);
    assert_int_equal(r.res.n_events, 6);
    assert_string_equal(r.ev[0], "zero");
    assert_string_equal(r.ev[1], "one");
    assert_string_equal(r.ev[2], "a\nb");
    assert_string_equal(r.ev[3], "three");
    assert_string_equal(r.ev[4], "four");
    assert_string_equal(r.ev[5], "");
    assert_int_equal(r.res.body_len, 0);
    /* every event carries its own arrival time: ordered, and the writer's pauses show */
    for (int i = 1; i < r.n_ev; i++)
        assert_true(r.ev_t[i] >= r.ev_t[i - 1]);
    assert_true(r.ev_t[5] - r.res.t_submit_ns >= 10 * 15000000ull); // 10 pauses before it
    assert_true(r.ev_t[0] >= r.res.t_first_byte_ns && r.ev_t[5] <= r.res.t_done_ns);
    httpc_free(c);
}

static void test_sse_post_timing(void **state)
{
    (void)state;
    httpc *c = client();
    char u[128];
    url(u, sizeof u, "/sse?n=4&ms=30");
    rec r = {0};
    httpc_request q = {.url = u, .is_stream = true, .body = "{}", .body_len = 2};
    run_one(c, &q, &r);
    assert_int_equal(r.res.kind, HTTPC_OK);
    assert_int_equal(r.n_ev, 4);
    assert_string_equal(r.ev[3], "{\"i\":3}");
    /* The writer pauses 30 ms after each event; a loaded server may coalesce
     * events into one segment, so only the last event's time is certain: it
     * was written at least 90 ms after the request went out. */
    for (int i = 1; i < 4; i++)
        assert_true(r.ev_t[i] >= r.ev_t[i - 1]);
    assert_true(r.ev_t[3] - r.res.t_submit_ns >= 90000000ull);
    httpc_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    httpc *c = client();
    char u[128];
    /* http: the server's 404 JSON is the body */
    url(u, sizeof u, "/nope");
    rec r = {0};
    httpc_request q = {.url = u, .is_stream = true};
    run_one(c, &q, &r);
    assert_int_equal(r.res.kind, HTTPC_HTTP);
    assert_int_equal(r.res.status, 404);
    assert_non_null(strstr(r.body, "\"error\""));
    assert_non_null(strstr(r.error, "404"));
    /* parse: a stream was asked for, JSON came back */
    url(u, sizeof u, "/json");
    rec p = {0};
    httpc_request qp = {.url = u, .is_stream = true};
    run_one(c, &qp, &p);
    assert_int_equal(p.res.kind, HTTPC_PARSE);
    assert_int_equal(p.res.status, 200);
    assert_string_equal(p.body, "{\"ok\":true}");
    /* the same URL without is_stream is fine */
    rec p2 = {0};
    httpc_request qp2 = {.url = u};
    run_one(c, &qp2, &p2);
    assert_int_equal(p2.res.kind, HTTPC_OK);
    /* parse: the stream stops inside an event; the whole one was delivered */
    url(u, sizeof u, "/cut");
    rec cu = {0};
    httpc_request qc = {.url = u, .is_stream = true};
    run_one(c, &qc, &cu);
    assert_int_equal(cu.res.kind, HTTPC_PARSE);
    assert_int_equal(cu.n_ev, 1);
    assert_string_equal(cu.ev[0], "whole");
    assert_non_null(strstr(cu.error, "inside an event"));
    /* parse: the consumer refuses the second event; the transfer stops there */
    url(u, sizeof u, "/sse?n=50&ms=5");
    rec rf = {.refuse_at = 2};
    httpc_request qr = {.url = u, .is_stream = true};
    run_one(c, &qr, &rf);
    assert_int_equal(rf.res.kind, HTTPC_PARSE);
    assert_int_equal(rf.n_ev, 2);
    /* connect: nothing listens on port 1 */
    rec cn = {0};
    httpc_request qn = {.url = "http://127.0.0.1:1/x"};
    run_one(c, &qn, &cn);
    assert_int_equal(cn.res.kind, HTTPC_CONNECT);
    assert_int_equal(cn.res.status, 0);
    assert_true(cn.error[0] != 0);
    /* timeout: the server never answers */
    url(u, sizeof u, "/hang");
    rec t = {0};
    httpc_request qt = {.url = u, .timeout_ms = 200};
    uint64_t t0 = clock_mono_ns();
    run_one(c, &qt, &t);
    uint64_t took = clock_mono_ns() - t0;
    assert_int_equal(t.res.kind, HTTPC_TIMEOUT);
    assert_true(took >= 180000000ull && took < 3000000000ull);
    httpc_free(c);
}

static void test_caps(void **state)
{
    (void)state;
    httpc_config cfg;
    httpc_config_default(&cfg);
    cfg.body_max_bytes = 10000;
    cfg.event_max_bytes = 6;
    httpc *c;
    err_msg e;
    assert_int_equal(httpc_new(&cfg, &c, &e), 0);
    char u[128];
    /* exactly at the cap: fine; one past: too_large */
    url(u, sizeof u, "/big?n=10000");
    rec a = {0};
    httpc_request qa = {.url = u};
    run_one(c, &qa, &a);
    assert_int_equal(a.res.kind, HTTPC_OK);
    assert_int_equal(a.res.body_len, 10000);
    url(u, sizeof u, "/big?n=10001");
    rec b = {0};
    httpc_request qb = {.url = u};
    run_one(c, &qb, &b);
    assert_int_equal(b.res.kind, HTTPC_TOO_LARGE);
    /* an event of 7 bytes ({"i":0}) is past event_max_bytes = 6 */
    url(u, sizeof u, "/sse?n=3");
    rec s = {0};
    httpc_request qs = {.url = u, .is_stream = true};
    run_one(c, &qs, &s);
    assert_int_equal(s.res.kind, HTTPC_TOO_LARGE);
    assert_int_equal(s.n_ev, 0);
    httpc_free(c);
}

static void test_refused_submits(void **state)
{
    (void)state;
    httpc_config cfg;
    httpc_config_default(&cfg);
    cfg.max_in_flight = 1;
    httpc *c;
    err_msg e;
    assert_int_equal(httpc_new(&cfg, &c, &e), 0);
    rec r = {0};
    httpc_request bad = {.url = NULL, .on_done = on_done, .ctx = &r};
    assert_int_equal(httpc_submit(c, &bad, &e), ERR_INVAL);
    const char *hdrs[] = {"no colon here", NULL};
    char u[128];
    url(u, sizeof u, "/echo");
    httpc_request bad2 = {.url = u, .headers = hdrs, .on_done = on_done, .ctx = &r};
    assert_int_equal(httpc_submit(c, &bad2, &e), ERR_INVAL);
    httpc_request bad3 = {.url = u, .api_key = "a\r\nX: y", .on_done = on_done, .ctx = &r};
    assert_int_equal(httpc_submit(c, &bad3, &e), ERR_INVAL);
    httpc_request ok = {.url = u, .on_done = on_done, .ctx = &r};
    assert_true(httpc_submit(c, &ok, &e) > 0);
    rec r2 = {0};
    httpc_request two = {.url = u, .on_done = on_done, .ctx = &r2};
    assert_int_equal(httpc_submit(c, &two, &e), ERR_BUSY);
    while (httpc_in_flight(c))
        assert_true(httpc_run(c, 1000, &e) >= 0);
    assert_int_equal(r.done, 1); // only the accepted one ran on_done
    assert_int_equal(r2.done, 0);
    httpc_free(c);
}

/* Many streams at once from this one thread. */
static void test_concurrent_streams(void **state)
{
    (void)state;
    enum { N = 40 };
    httpc *c = client();
    char u[128];
    url(u, sizeof u, "/sse?n=20&ms=2");
    static rec rs[N];
    memset(rs, 0, sizeof rs);
    err_msg e;
    for (int i = 0; i < N; i++) {
        httpc_request q = {
            .url = u, .is_stream = true, .on_event = on_ev, .on_done = on_done, .ctx = &rs[i]};
        assert_true(httpc_submit(c, &q, &e) > 0);
    }
    assert_int_equal(httpc_in_flight(c), N);
    uint64_t t0 = clock_mono_ns();
    while (httpc_in_flight(c) && clock_mono_ns() - t0 < 20000000000ull)
        assert_true(httpc_run(c, 500, &e) >= 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs[i].done, 1);
        assert_int_equal(rs[i].res.kind, HTTPC_OK);
        assert_int_equal(rs[i].n_ev, 20);
        assert_string_equal(rs[i].ev[19], "{\"i\":19}");
    }
    httpc_free(c);
}

/* A closed loop: each on_done submits the next request, 5 in a row. */
typedef struct chain {
    httpc *c;
    const char *url;
    int left, done;
    httpc_kind last;
} chain;

static void chain_done(void *ctx, const httpc_result *res)
{
    chain *ch = ctx;
    ch->done++;
    ch->last = res->kind;
    if (res->kind == HTTPC_OK && --ch->left > 0) {
        httpc_request q = {.url = ch->url, .on_done = chain_done, .ctx = ch};
        err_msg e;
        assert_true(httpc_submit(ch->c, &q, &e) > 0);
    }
}

static void test_submit_from_callback(void **state)
{
    (void)state;
    httpc *c = client();
    char u[128];
    url(u, sizeof u, "/json");
    chain ch = {.c = c, .url = u, .left = 5};
    httpc_request q = {.url = u, .on_done = chain_done, .ctx = &ch};
    err_msg e;
    assert_true(httpc_submit(c, &q, &e) > 0);
    assert_int_equal(httpc_run(c, 10000, &e), 0);
    assert_int_equal(ch.done, 5);
    assert_int_equal(ch.last, HTTPC_OK);
    httpc_free(c);
}

static void test_cancel_and_wakeup(void **state)
{
    (void)state;
    httpc *c = client();
    char u[128];
    url(u, sizeof u, "/hang");
    rec r[3];
    memset(r, 0, sizeof r);
    err_msg e;
    for (int i = 0; i < 3; i++) {
        httpc_request q = {.url = u, .on_done = on_done, .ctx = &r[i]};
        assert_true(httpc_submit(c, &q, &e) > 0);
    }
    /* run returns at its deadline with the requests still in flight */
    uint64_t t0 = clock_mono_ns();
    assert_int_equal(httpc_run(c, 150, &e), 3);
    assert_true(clock_mono_ns() - t0 >= 140000000ull);
    /* a wakeup before run makes it return at its first turn */
    httpc_wakeup(c);
    t0 = clock_mono_ns();
    assert_int_equal(httpc_run(c, 5000, &e), 3);
    assert_true(clock_mono_ns() - t0 < 1000000000ull);
    httpc_cancel_all(c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].res.kind, HTTPC_CANCELLED);
    }
    assert_int_equal(httpc_in_flight(c), 0);
    /* httpc_free cancels what is left, including never-started submits */
    rec last = {0};
    httpc_request q = {.url = u, .on_done = on_done, .ctx = &last};
    assert_true(httpc_submit(c, &q, &e) > 0);
    httpc_free(c);
    assert_int_equal(last.done, 1);
    assert_int_equal(last.res.kind, HTTPC_CANCELLED);
    assert_string_equal(httpc_kind_name(HTTPC_TOO_LARGE), "too_large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_sse_parsing),
        cmocka_unit_test(test_sse_post_timing),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_refused_submits),
        cmocka_unit_test(test_concurrent_streams),
        cmocka_unit_test(test_submit_from_callback),
        cmocka_unit_test(test_cancel_and_wakeup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
