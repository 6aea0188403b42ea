/*
 * api/debug — routes for tests, served only with debug_routes: true. They
 * exercise the generic machinery later endpoints use: a deferred answer from
 * another thread (/debug/sleep), an SSE stream fed by a producer thread
 * (/debug/stream), a handler failure whose detail must not leak
 * (/debug/fail), and the JSON endpoint path (/debug/echo).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"

#define DEBUG_SLEEPERS_MAX 64
#define DEBUG_SLEEP_MS_MAX 600000

typedef struct sleeper {
    api_app *app;
    http_async *a;      // deferred answer (sleep), or NULL
    http_stream *s;     // stream (stream), or NULL
    int64_t ms, n;
} sleeper;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *sleep_main(void *p)
{
    sleeper *w = p;
    sleep_ms(w->ms);
    char body[64];
    int n = snprintf(body, sizeof body, "{\"slept_ms\":%lld}", (long long)w->ms);
    (void)http_async_respond(w->a, 200, "application/json", body, (size_t)n);
    atomic_fetch_sub(&w->app->debug_sleepers, 1);
    free(w);
    return NULL;
}

static void *stream_main(void *p)
{
    sleeper *w = p;
    char ev[64];
    for (int64_t i = 0; i < w->n && !http_stream_cancelled(w->s); i++) {
        if (w->ms)
            sleep_ms(w->ms);
        int n = snprintf(ev, sizeof ev, "{\"i\":%lld}", (long long)i);
        if (http_stream_sse(w->s, ev, (size_t)n) != 0)
            break;
    }
    (void)http_stream_sse(w->s, "[DONE]", 6);
    http_stream_end(w->s);
    atomic_fetch_sub(&w->app->debug_sleepers, 1);
    free(w);
    return NULL;
}

/* Parses query argument name as an integer in [0, max] (default def). */
static int query_int(http_req *r, const char *name, int64_t def, int64_t max, int64_t *out)
{
    const char *v = http_req_query(r, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (parse_i64(v, 0, max, out) != 0)
        return err_set(http_req_err(r), ERR_INVAL, "%s must be an integer in [0, %lld]", name,
                       (long long)max);
    return 0;
}

static int start_worker(api_app *app, sleeper *w, void *(*fn)(void *))
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    int rc = pthread_create(&t, &at, fn, w);
    pthread_attr_destroy(&at);
    (void)app;
    return rc;
}

static bool take_slot(api_app *app)
{
    if (atomic_fetch_add(&app->debug_sleepers, 1) >= DEBUG_SLEEPERS_MAX) {
        atomic_fetch_sub(&app->debug_sleepers, 1);
        return false;
    }
    return true;
}

int api_h_debug_sleep(http_req *r, void *ctx)
{
    api_app *app = ctx;
    int64_t ms;
    int rc = query_int(r, "ms", 100, DEBUG_SLEEP_MS_MAX, &ms);
    if (rc)
        return rc;
    if (!take_slot(app))
        return err_set(http_req_err(r), ERR_BUSY, "too many debug sleepers");
    sleeper *w = calloc(1, sizeof *w);
    if (!w) {
        atomic_fetch_sub(&app->debug_sleepers, 1);
        return ERR_NOMEM;
    }
    w->app = app;
    w->ms = ms;
    w->a = http_defer(r);
    if (!w->a) {
        free(w);
        atomic_fetch_sub(&app->debug_sleepers, 1);
        return ERR_NOMEM;
    }
    if (start_worker(app, w, sleep_main) != 0) {
        http_async_release(w->a); // answers 500
        free(w);
        atomic_fetch_sub(&app->debug_sleepers, 1);
    }
    return 0;
}

int api_h_debug_stream(http_req *r, void *ctx)
{
    api_app *app = ctx;
    int64_t n, ms;
    int rc = query_int(r, "n", 5, 100000, &n);
    if (!rc)
        rc = query_int(r, "ms", 0, 10000, &ms);
    if (rc)
        return rc;
    if (!take_slot(app))
        return err_set(http_req_err(r), ERR_BUSY, "too many debug streams");
    sleeper *w = calloc(1, sizeof *w);
    if (!w || !(w->s = http_stream_begin(r, 200, "text/event-stream"))) {
        free(w);
        atomic_fetch_sub(&app->debug_sleepers, 1);
        return ERR_NOMEM;
    }
    w->app = app;
    w->n = n;
    w->ms = ms;
    if (start_worker(app, w, stream_main) != 0) {
        http_stream_end(w->s);
        free(w);
        atomic_fetch_sub(&app->debug_sleepers, 1);
    }
    return 0;
}

int api_h_debug_fail(http_req *r, void *ctx)
{
    (void)ctx;
    return err_set(http_req_err(r), ERR_INTERNAL,
                   "debug failure: sqlite said 'disk I/O error' at /secret/path/ferry.db");
}

int api_h_debug_echo(api_call *c)
{
    if (!json_is_object(c->body))
        return api_fail(c->req, ERR_INVAL, NULL, "the body must be a JSON object");
    json_t *out = json_pack("{s:O,s:s}", "echo", c->body, "request_id", http_req_id(c->req));
    if (!out)
        return ERR_NOMEM;
    int rc = api_respond_json(c->req, 200, out);
    json_decref(out);
    return rc;
}
