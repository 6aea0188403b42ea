/* api/health — liveness, readiness and the metrics scrape. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "base/buf.h"

int api_h_healthz(http_req *r, void *ctx)
{
    (void)ctx;
    static const char body[] = "{\"status\":\"ok\"}";
    return http_respond(r, 200, "application/json", body, sizeof body - 1, NULL);
}

int api_h_readyz(http_req *r, void *ctx)
{
    api_app *app = ctx;
    char reason[300];
    const char *code = "not_ready";
    if (http_server_draining(http_req_server(r))) {
        snprintf(reason, sizeof reason, "not ready: shutting down");
        code = "shutting_down";
    } else if (atomic_load(&app->ready)) {
        static const char body[] = "{\"status\":\"ready\"}";
        return http_respond(r, 200, "application/json", body, sizeof body - 1, NULL);
    } else {
        pthread_mutex_lock(&app->ready_mu);
        snprintf(reason, sizeof reason, "not ready: %s", app->not_ready);
        pthread_mutex_unlock(&app->ready_mu);
    }
    /* 503 with the reason: built here, not through http_respond_error, whose
     * 5xx bodies never carry detail; the reason is not an internal secret. */
    buf b;
    buf_init(&b, 2048);
    int rc = http_error_json(&b, ERR_UNAVAILABLE, reason, NULL, code);
    if (!rc)
        rc = http_respond(r, 503, "application/json", b.data, b.len, NULL);
    buf_deinit(&b);
    return rc;
}

int api_h_metrics(http_req *r, void *ctx)
{
    api_app *app = ctx;
    buf b;
    buf_init(&b, 64u << 20);
    int rc = obs_expose(app->metrics, &b);
    if (!rc)
        rc = http_respond(r, 200, OBS_CONTENT_TYPE, b.data ? b.data : "", b.len, NULL);
    buf_deinit(&b);
    return rc;
}
