/* api/app — shared handler state, the HTTP metrics hook, JSON helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "base/buf.h"

static void collect_in_flight(void *ctx)
{
    api_app *app = ctx;
    http_server *srv = app->srv; // one atomic load
    obs_gauge_set(app->http_in_flight, srv ? (double)http_server_in_flight(srv) : 0.0);
}

int api_app_init(api_app *app, bool debug_routes, err_msg *e)
{
    memset(app, 0, sizeof *app);
    pthread_mutex_init(&app->ready_mu, NULL);
    snprintf(app->not_ready, sizeof app->not_ready, "starting");
    app->debug_routes = debug_routes;
    app->metrics = obs_registry_new();
    if (!app->metrics)
        return err_set(e, ERR_NOMEM, "metrics: out of memory");
    static const char *const req_labels[] = {"route", "method", "code"};
    static const char *const route_label[] = {"route"};
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,   0.5,   1,      2.5,   5,    10,    30,    60};
    static const char *const build_labels[] = {"version", "commit"};
    app->http_requests = obs_family_new(app->metrics, OBS_COUNTER, "ferry_http_requests_total",
                                        "HTTP requests by route pattern, method and status.",
                                        req_labels, 3, NULL, 0, 4096, e);
    if (!app->http_requests)
        return e->code;
    app->http_duration = obs_family_new(
        app->metrics, OBS_HISTOGRAM, "ferry_http_request_duration_seconds",
        "Time from request line to completion, by route pattern.", route_label, 1, bounds,
        sizeof bounds / sizeof bounds[0], HTTP_ROUTES_MAX + 1, e);
    if (!app->http_duration)
        return e->code;
    obs_family *inflight = obs_family_new(app->metrics, OBS_GAUGE, "ferry_http_in_flight",
                                          "HTTP requests received and not yet completed.", NULL,
                                          0, NULL, 0, 1, e);
    obs_family *build = obs_family_new(app->metrics, OBS_GAUGE, "ferry_build_info",
                                       "Build version and commit; the value is always 1.",
                                       build_labels, 2, NULL, 0, 1, e);
    if (!inflight || !build)
        return e->code;
    app->http_in_flight = obs_series_get(inflight, NULL);
    const char *bv[] = {FERRY_VERSION, FERRY_COMMIT};
    obs_gauge_set(obs_series_get(build, bv), 1);
    int rc = obs_add_collector(app->metrics, collect_in_flight, app);
    if (rc)
        return err_set(e, rc, "metrics: cannot add collector");
    return obs_register_process(app->metrics, e);
}

void api_app_free(api_app *app)
{
    obs_registry_free(app->metrics);
    app->metrics = NULL;
    pthread_mutex_destroy(&app->ready_mu);
}

void api_set_ready(api_app *app, const char *reason)
{
    pthread_mutex_lock(&app->ready_mu);
    snprintf(app->not_ready, sizeof app->not_ready, "%s", reason ? reason : "");
    atomic_store(&app->ready, reason == NULL);
    pthread_mutex_unlock(&app->ready_mu);
}

static const char *method_label(const char *m)
{
    static const char *const known[] = {"GET",    "HEAD",    "POST",  "PUT",    "DELETE",
                                        "PATCH",  "OPTIONS", "TRACE", "CONNECT"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "other"; // client-chosen methods must not create series
}

void api_on_complete(void *ctx, const http_req_info *info)
{
    api_app *app = ctx;
    char code[8];
    snprintf(code, sizeof code, "%d", info->status);
    const char *v[] = {info->route, method_label(info->method), code};
    obs_counter_add(obs_series_get(app->http_requests, v), 1);
    const char *rv[] = {info->route};
    obs_hist_observe(obs_series_get(app->http_duration, rv), info->duration_s);
}

int api_respond_json(http_req *r, int status, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    if (!text)
        return ERR_NOMEM;
    int rc = http_respond(r, status, "application/json", text, strlen(text), NULL);
    free(text);
    return rc;
}

int api_fail(http_req *r, int code, const char *param, const char *fmt, ...)
{
    char msg[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int rc = http_respond_error(r, code, msg, param, NULL, NULL);
    return rc ? rc : 0;
}

int api_json_trampoline(http_req *r, void *ctx)
{
    const api_json_route *jr = ctx;
    size_t len;
    const char *body = http_req_body(r, &len);
    json_error_t je;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!v)
        return api_fail(r, ERR_FORMAT, NULL, "invalid JSON at line %d column %d: %s", je.line,
                        je.column, je.text);
    api_call c = {r, http_req_arena(r), v, jr->app};
    int rc = c.arena ? jr->fn(&c) : ERR_NOMEM;
    json_decref(v);
    return rc;
}
