/*
 * api/routes — the one place where routes are declared. Add a line here for
 * a new endpoint; nothing else registers routes.
 */
#include <stdlib.h>

#include "api/api.h"
#include "api/collections.h"
#include "api/openai_serve.h"

/* A JSON endpoint that needs what loads after the server is up. */
#define JSON_LOADED (HTTP_ROUTE_JSON | HTTP_ROUTE_LOADED)

/* Every JSON route's trampoline context; filled at router construction. */
static api_json_route g_debug_echo;

http_router *api_router_new(api_app *app, err_msg *e)
{
    g_debug_echo = (api_json_route){api_h_debug_echo, app};
    /* The table is static so the router (which keeps pointers into it) can
     * outlive this call; ctx fields are filled below. */
    static http_route routes[] = {
        // method, pattern, handler, ctx, flags
        /* HTTP_ROUTE_LOADED: needs the models, the pipeline or the collections,
         * which load after the server is up (503 model_loading until then). */
        {"GET", "/healthz", api_h_healthz, NULL, HTTP_ROUTE_PROBE},
        {"GET", "/readyz", api_h_readyz, NULL, HTTP_ROUTE_PROBE},
        {"GET", "/metrics", api_h_metrics, NULL, HTTP_ROUTE_PROBE},
        {"GET", "/v1/models", api_h_models, NULL, HTTP_ROUTE_LOADED},
        {"POST", "/v1/chat/completions", api_h_chat, NULL, JSON_LOADED},
        {"POST", "/v1/completions", api_h_completions, NULL, JSON_LOADED},
        {"POST", "/v1/embeddings", api_h_embeddings, NULL, JSON_LOADED},
        {"POST", "/v1/collections", api_h_coll_create, NULL, JSON_LOADED},
        {"GET", "/v1/collections", api_h_coll_list, NULL, HTTP_ROUTE_LOADED},
        {"GET", "/v1/collections/{c}", api_h_coll_get, NULL, HTTP_ROUTE_LOADED},
        {"DELETE", "/v1/collections/{c}", api_h_coll_delete, NULL, HTTP_ROUTE_LOADED},
        {"POST", "/v1/collections/{c}/documents", api_h_docs_upsert, NULL, JSON_LOADED},
        {"GET", "/v1/collections/{c}/documents/{id}", api_h_doc_get, NULL, HTTP_ROUTE_LOADED},
        {"DELETE", "/v1/collections/{c}/documents/{id}", api_h_doc_delete, NULL, HTTP_ROUTE_LOADED},
        {"POST", "/v1/collections/{c}/query", api_h_coll_query, NULL, JSON_LOADED},
        /* Debug routes (debug_routes: true only; tests): keep them last. */
        {"POST", "/debug/sleep", api_h_debug_sleep, NULL, 0},
        {"GET", "/debug/stream", api_h_debug_stream, NULL, 0},
        {"GET", "/debug/fail", api_h_debug_fail, NULL, 0},
        {"POST", "/debug/echo", api_json_trampoline, &g_debug_echo, HTTP_ROUTE_JSON},
    };
    const size_t n_debug = 4;
    size_t n = sizeof routes / sizeof routes[0];
    for (size_t i = 0; i < n; i++)
        if (routes[i].fn != api_json_trampoline)
            routes[i].ctx = app;
    if (!app->debug_routes)
        n -= n_debug;
    return http_router_new(routes, n, e);
}
