/*
 * cli/cmd_serve — `ferry serve`: configuration, logging, the HTTP server, the
 * store, readiness and signals.
 *
 * Signals are blocked in every thread (the mask is set before any thread
 * starts) and taken synchronously by the main thread with sigwait, so no
 * work happens in a signal handler: SIGHUP reopens the log file;
 * SIGTERM/SIGINT drain (listener closed, /readyz 503 at once), wait up to
 * shutdown_grace_s for in-flight requests, then exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/openai_serve.h"
#include "engine/sched.h"
#include "base/log.h"
#include "cli/cli.h"
#include "cli/config.h"
#include "http/http.h"
#include "api/collections.h"
#include "gateway/gateway.h"
#include "guard/guard.h"
#include "store/store.h"

extern char **environ;

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry serve [--config FILE] [--OPTION VALUE]...\n\n"
               "Serves the HTTP API (health, readiness, metrics, the OpenAI-compatible\n"
               "/v1/models, /v1/chat/completions and /v1/completions over the models given\n"
               "with --model [NAME=]PATH, once per model, each with its own scheduler) with\n"
               "the embedded store (SQLite under --data).\n\n"
               "  --config FILE              YAML configuration file (see docs/configuration.md)\n"
               "  --help                     this text\n\n"
               "Every key can be set in the file, by flag or by environment variable;\n"
               "a flag beats the environment, which beats the file, which beats the default.\n\n");
    config_print_help(f);
}

/* Builds the configuration from file, environment and flags. Returns 0, 1
 * (--help printed) or 2 (usage error, message printed). */
static int build_config(int argc, char **argv, ferry_config *cfg)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                cli_errorf("serve: --config needs a file");
                return 2;
            }
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }
    config_defaults(cfg);
    err_msg e;
    if (!file)
        file = getenv("FERRY_CONFIG");
    if (file && config_load_file(cfg, file, &e) != 0) {
        cli_errorf("serve: %s", e.text);
        return 2;
    }
    if (config_apply_env(cfg, environ, &e) != 0) {
        cli_errorf("serve: %s", e.text);
        return 2;
    }
    bool models_from_flags = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            cli_errorf("serve: unexpected argument \"%s\" (see ferry serve --help)", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) {
            cli_errorf("serve: unknown option %s (see ferry serve --help)", a);
            return 2;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        if (!config_flag_known(name)) {
            cli_errorf("serve: unknown option --%s (see ferry serve --help)", name);
            return 2;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && !config_flag_is_bool(name)) {
            if (i + 1 >= argc) {
                cli_errorf("serve: --%s needs a value", name);
                return 2;
            }
            value = argv[++i];
        }
        if (strcmp(name, "model") == 0 && !models_from_flags) {
            cfg->n_models = 0; // flags replace the file's and environment's list
            models_from_flags = true;
        }
        if (config_apply_flag(cfg, name, value, &e) != 0) {
            cli_errorf("serve: %s", e.text);
            return 2;
        }
    }
    return 0;
}

#define GW_JUDGE_WORKERS 4 // pipeline workers when a judge may block a request

/* Reads the RAG template file into a malloc'ed string (*out; NULL for none). */
static int read_template(const char *path, char **out)
{
    *out = NULL;
    if (!path[0])
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_errorf("serve: rag_template %s: cannot open it", path);
        return 2;
    }
    char *t = calloc(1, GW_RAG_TEMPLATE_MAX + 2);
    size_t n = t ? fread(t, 1, GW_RAG_TEMPLATE_MAX + 1, f) : 0;
    fclose(f);
    if (!t || n > GW_RAG_TEMPLATE_MAX) {
        free(t);
        cli_errorf("serve: rag_template %s: over %zu bytes", path, GW_RAG_TEMPLATE_MAX);
        return 2;
    }
    *out = t;
    return 0;
}

/* The work of build_pipeline, which frees what this made when it fails. */
static int pipeline_from_config(const ferry_config *cfg, api_app *app, gw_judge **judge,
                                guard_engine **ge)
{
    err_msg e;
    err_clear(&e);
    if (cfg->guard_judge[0]) {
        if (!cfg->guard_policy[0]) {
            cli_errorf("serve: guard_judge needs guard_policy (the judge only runs inside it)");
            return 2;
        }
        if (gw_judge_new(cfg->guard_judge, cfg->guard_judge_model,
                         (uint64_t)cfg->guard_judge_timeout_ms, app->metrics, judge, &e) != 0) {
            cli_errorf("serve: %s", e.text);
            return 2;
        }
        if (gw_judge_is_local(*judge)) {
            fr_backend be;
            if (api_models_backend(app->models, cfg->guard_judge, &be) != 0) {
                cli_errorf("serve: guard_judge %s: no model of that name is served (give a "
                           "--model NAME=PATH or an http:// URL)",
                           cfg->guard_judge);
                return 2;
            }
            gw_judge_bind(*judge, be);
        }
    }
    if (cfg->guard_policy[0]) {
        guard_config gc = guard_config_default();
        if (*judge) {
            gc.judge = gw_judge_score;
            gc.judge_ctx = *judge;
        }
        if (guard_engine_load(cfg->guard_policy, &gc, ge, &e) != 0) {
            cli_errorf("serve: guard_policy %s: %s", cfg->guard_policy, e.text);
            return 2;
        }
    }
    gw_rag_route routes[GW_RAG_ROUTES_MAX];
    int nr = gw_rag_routes_parse(cfg->rag, routes, GW_RAG_ROUTES_MAX, &e);
    if (nr < 0) {
        cli_errorf("serve: %s", e.text);
        return 2;
    }
    char *tmpl;
    int rc = read_template(cfg->rag_template, &tmpl);
    if (rc)
        return rc;
    gw_config gc = {.guard = *ge,
                    .metrics = app->metrics,
                    .retrieve = api_kb_retrieve,
                    .rag_template = tmpl,
                    .rag_routes = routes,
                    .n_rag_routes = (size_t)nr,
                    /* A judge may block gw_submit for its timeout: run it off the
                     * HTTP threads. */
                    .workers = *judge ? GW_JUDGE_WORKERS : 0};
    rc = gw_new(&gc, &app->gw, &e);
    free(tmpl);
    if (rc != 0) {
        cli_errorf("serve: %s", e.text);
        return 2;
    }
    if (*ge)
        LOG_INFO("serve", "guard: policy file %s%s%s", cfg->guard_policy,
                 *judge ? ", judge " : "", *judge ? cfg->guard_judge : "");
    return 0;
}

/* Builds app->gw from the guard and RAG keys. Returns 0, or 2 with a message
 * printed (a bad policy file, judge or option refuses to start) and nothing
 * left allocated. */
static int build_pipeline(const ferry_config *cfg, api_app *app, gw_judge **judge,
                          guard_engine **ge)
{
    int rc = pipeline_from_config(cfg, app, judge, ge);
    if (rc) {
        guard_engine_free(*ge);
        gw_judge_free(*judge);
        *ge = NULL;
        *judge = NULL;
    }
    return rc;
}

int cli_cmd_serve(int argc, char **argv)
{
    ferry_config cfg;
    int rc = build_config(argc, argv, &cfg);
    if (rc)
        return rc == 1 ? 0 : 2;
    /* --model [NAME=]PATH: NAME defaults to the file name without ".gguf". */
    static char names[CONFIG_MODELS_MAX][256];
    static char tpls[CONFIG_MODELS_MAX][32];
    api_model_spec specs[CONFIG_MODELS_MAX];
    for (int i = 0; i < cfg.n_models; i++) {
        const char *m = cfg.models[i], *eq = strchr(m, '=');
        const char *path = eq ? eq + 1 : m;
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t nl = eq ? (size_t)(eq - m) : strlen(base);
        if (!eq && nl > 5 && strcmp(base + nl - 5, ".gguf") == 0)
            nl -= 5;
        if (nl == 0 || nl >= sizeof names[i] || !*path) {
            cli_errorf("serve: --model %s: expected [NAME=]PATH", m);
            return 2;
        }
        memcpy(names[i], eq ? m : base, nl);
        names[i][nl] = '\0';
        specs[i] = (api_model_spec){.name = names[i], .path = path};
        char why[400];
        if (config_chat_template_for(cfg.chat_template, names[i], tpls[i], sizeof tpls[i], why,
                                     sizeof why) != 0) {
            cli_errorf("serve: chat_template: %s", why);
            return 2;
        }
        if (tpls[i][0])
            specs[i].chat_template = tpls[i];
    }
    /* chat_template NAME=FAMILY must name a served model. */
    for (const char *p = cfg.chat_template; *p;) {
        const char *comma = strchr(p, ','), *eq = strchr(p, '=');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (eq && (!comma || eq < comma)) {
            size_t nl = (size_t)(eq - p);
            bool found = false;
            for (int i = 0; i < cfg.n_models && !found; i++)
                found = strlen(names[i]) == nl && memcmp(names[i], p, nl) == 0;
            if (!found) {
                cli_errorf("serve: chat_template: no model is named \"%.*s\"", (int)nl, p);
                return 2;
            }
        }
        p += len;
        if (*p == ',')
            p++;
    }
    err_msg e;
    log_level lvl;
    if (log_level_parse(cfg.log_level, &lvl) != 0) {
        cli_errorf("serve: bad log level \"%s\"", cfg.log_level);
        return 2;
    }
    log_set_level(lvl);
    log_set_debug_modules(cfg.log_debug_modules);
    if (log_open(cfg.log_file, &e) != 0) {
        cli_errorf("serve: %s", e.text);
        return 2;
    }

    /* Block the signals we wait for before any thread exists, so every
     * thread inherits the mask and only sigwait below sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    static api_app app; // handlers keep pointers to it until exit
    if (api_app_init(&app, cfg.debug_routes, &e) != 0) {
        cli_errorf("serve: %s", e.text);
        return 1;
    }
    sched_metrics *sm = NULL;
    if (cfg.n_models > 0) {
        if (sched_metrics_new(app.metrics, &sm, &e) != 0) {
            cli_errorf("serve: %s", e.text);
            return 1;
        }
        sched_config sc = sched_config_default();
        sc.metrics = sm;
        sc.kv_cache_mb = (size_t)cfg.kv_cache_mb;
        sc.kv_type = strcmp(cfg.kv_cache_type, "q8_0") == 0 ? KV_TYPE_Q8_0 : KV_TYPE_F16;
        sc.max_batch_tokens = (size_t)cfg.max_batch_tokens;
        sc.max_seqs = (size_t)cfg.max_seqs;
        sc.max_waiting = (size_t)cfg.max_waiting;
        if (sc.max_seqs > sc.max_batch_tokens) {
            cli_errorf("serve: max_seqs (%zu) exceeds max_batch_tokens (%zu)", sc.max_seqs,
                       sc.max_batch_tokens);
            return 2;
        }
        if (api_models_load(specs, (size_t)cfg.n_models, &sc, &app.models, &e) != 0) {
            cli_errorf("serve: %s", e.text);
            return 2;
        }
    }
    /* The pipeline: guard (policy file, optional judge), retrieval, RAG options. */
    gw_judge *judge = NULL;
    guard_engine *ge = NULL;
    if ((rc = build_pipeline(&cfg, &app, &judge, &ge)) != 0)
        return rc;
    http_router *rt = api_router_new(&app, &e);
    if (!rt) {
        cli_errorf("serve: %s", e.text);
        return 1;
    }
    http_config hc;
    http_config_default(&hc);
    hc.host = cfg.host;
    hc.port = cfg.port;
    if (cfg.threads > 0)
        hc.threads = (unsigned)cfg.threads;
    hc.max_connections = (unsigned)cfg.max_connections;
    hc.per_ip_connections = (unsigned)cfg.per_ip_connections;
    hc.max_body_bytes = cfg.max_body_bytes;
    hc.max_header_bytes = cfg.max_header_bytes;
    hc.read_timeout_s = (unsigned)cfg.read_timeout_s;
    hc.on_complete = api_on_complete;
    hc.hook_ctx = &app;
    api_set_ready(&app, "starting");
    http_server *srv = http_server_start(&hc, rt, &e);
    if (!srv) {
        cli_errorf("serve: %s", e.text);
        return 1;
    }
    app.srv = srv;
    char fields[512];
    snprintf(fields, sizeof fields,
             "\"host\":\"%s\",\"port\":%u,\"threads\":%u,\"max_connections\":%u,"
             "\"version\":\"%s\",\"commit\":\"%s\",\"debug_routes\":%s",
             cfg.host, http_server_port(srv), hc.threads, hc.max_connections, FERRY_VERSION,
             FERRY_COMMIT, cfg.debug_routes ? "true" : "false");
    log_write_fields(LOG_LEVEL_INFO, "serve", "listening", fields);

    /* Readiness waits for the store (and, later, models). */
    char reason[CONFIG_STR_MAX + 32];
    snprintf(reason, sizeof reason, "store: opening %s", cfg.data);
    api_set_ready(&app, reason);
    store *st = store_open(cfg.data, &e);
    if (!st) {
        LOG_ERROR("serve", "%s", e.text);
        cli_errorf("serve: %s", e.text);
        http_server_stop(srv, 0);
        return 1;
    }
    LOG_INFO("serve", "store ready: %s (schema %d)", store_path(st), store_schema_version(st));
    // collections persist under DATA/collections; embeddings use the configured model
    if (api_kb_init(cfg.data, cfg.embedding_model, app.metrics, &e) != 0) {
        LOG_ERROR("serve", "%s", e.text);
        cli_errorf("serve: %s", e.text);
        http_server_stop(srv, 0);
        store_close(st);
        return 2;
    }
    api_set_ready(&app, NULL);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            int r = log_reopen();
            LOG_INFO("serve", "SIGHUP: log reopened%s", r ? " (failed; kept the old file)" : "");
            continue;
        }
        break; // SIGTERM or SIGINT
    }
    int64_t n = http_server_in_flight(srv);
    http_server_drain(srv);
    snprintf(fields, sizeof fields, "\"in_flight\":%lld,\"grace_s\":%lld", (long long)n,
             (long long)cfg.shutdown_grace_s);
    log_write_fields(LOG_LEVEL_INFO, "serve", "draining", fields);
    /* Generations end before the server goes: their sinks write to live
     * streams and deferred answers. Wait out the grace period for them, then
     * stop the schedulers (what is left ends with 503). */
    if (app.models) {
        for (int64_t ms = 0; ms < cfg.shutdown_grace_s * 1000 && http_server_in_flight(srv) > 0;
             ms += 20)
            usleep(20000);
        gw_stop(app.gw); // pipeline workers submit to the schedulers: stop them first
        api_models_free(app.models);
        app.models = NULL;
    }
    int cut = http_server_stop(srv, (uint64_t)cfg.shutdown_grace_s * 1000);
    app.srv = NULL;
    snprintf(fields, sizeof fields, "\"cut_short\":%d", cut);
    log_write_fields(LOG_LEVEL_INFO, "serve", "stopped", fields);
    store_close(st);
    api_kb_free();
    api_models_free(app.models);
    app.models = NULL;
    gw_free(app.gw);
    app.gw = NULL;
    guard_engine_free(ge);
    gw_judge_free(judge);
    sched_metrics_free(sm);
    http_router_free(rt);
    api_app_free(&app);
    return 0;
}
