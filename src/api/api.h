/*
 * api — the HTTP handlers and the one route table (routes.c).
 *
 * api_app is the state handlers share: the metrics registry and the series
 * the server updates, readiness, and the server (for drain state). It lives
 * for the whole process; handlers receive it as their route ctx.
 *
 * JSON endpoints are declared with API_JSON_ROUTE: the server has already
 * checked Content-Type (415) and body size (411/413); the trampoline parses
 * the body with jansson (400 with line and column on invalid JSON) and calls
 * an api_json_fn with an api_call holding the request, its arena and the
 * parsed body. A handler answers with api_respond_json / api_fail (or defers
 * or streams through http/), or returns a negative ERR_* with detail in
 * http_req_err(c->req).
 */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/base.h"
#include "http/http.h"
#include "obs/obs.h"

typedef struct api_app {
    obs_registry *metrics;
    obs_family *http_requests;  // ferry_http_requests_total{route,method,code}
    obs_family *http_duration;  // ferry_http_request_duration_seconds{route}
    obs_series *http_in_flight; // ferry_http_in_flight
    http_server *_Atomic srv;   // set once serving; NULL before (atomic: handlers run first)
    struct api_models *models;  // local models (api/openai_serve.h); NULL = none
    struct gw *gw;              // the request pipeline (gateway/gateway.h); set before serving
    bool debug_routes;          // expose /debug/* (tests, never in production)
    _Atomic bool ready;
    pthread_mutex_t ready_mu;   // guards not_ready
    char not_ready[256];        // why /readyz says 503 while !ready
    _Atomic int debug_sleepers; // running /debug/sleep threads
} api_app;

/*
 * Creates the registry with the HTTP metrics, ferry_build_info and the
 * process metrics; readiness starts false with reason "starting". Returns 0
 * or an ERR_* with e set.
 */
int api_app_init(api_app *app, bool debug_routes, err_msg *e) MUST_USE;
void api_app_free(api_app *app);

/* Marks the process ready (reason NULL) or not ready with a reason shown by
 * /readyz ("store: opening ./ferry-data"). Thread: any. */
void api_set_ready(api_app *app, const char *reason);

/* The route table: builds the router over it (debug routes only when
 * app->debug_routes). The router refers to app; both outlive the server. */
http_router *api_router_new(api_app *app, err_msg *e);

/* The server's on_complete hook: counts the request in the HTTP metrics. */
void api_on_complete(void *app, const http_req_info *info);

/* ------------------------------------------------------- JSON endpoints -- */

typedef struct api_call {
    http_req *req;
    arena *arena;   // the request arena (may be used until the answer)
    json_t *body;   // borrowed: freed after the handler returns; incref to keep
    api_app *app;
} api_call;

typedef int (*api_json_fn)(api_call *c);

typedef struct api_json_route {
    api_json_fn fn;
    api_app *app;
} api_json_route;

/* The http_handler_fn of every JSON route; ctx is an api_json_route. */
int api_json_trampoline(http_req *r, void *ctx);

/* Answers status with v serialized (v is borrowed). Returns 0 or ERR_*. */
int api_respond_json(http_req *r, int status, const json_t *v);
/* Answers an OpenAI-style error naming param (may be NULL) with a formatted
 * message; returns 0 when the answer was queued (so a handler can `return
 * api_fail(...)`). */
int api_fail(http_req *r, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Handlers (health.c, debug.c). ctx is the api_app. */
int api_h_healthz(http_req *r, void *ctx);
int api_h_readyz(http_req *r, void *ctx);
int api_h_metrics(http_req *r, void *ctx);
int api_h_debug_sleep(http_req *r, void *ctx);
int api_h_debug_stream(http_req *r, void *ctx);
int api_h_debug_fail(http_req *r, void *ctx);
int api_h_debug_echo(api_call *c);
