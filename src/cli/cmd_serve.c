/*
 * cli/cmd_serve — `ferry serve`: configuration, logging, the HTTP server, the
 * store, readiness and signals.
 *
 * Start-up order: configuration and logging; the HTTP server (health,
 * readiness and metrics answer at once; routes marked HTTP_ROUTE_LOADED
 * answer 503 model_loading with Retry-After); then a loader thread loads the
 * models, the pipeline, the store and the collections, with /readyz saying
 * which step runs ("not ready: models: loading tiny"), and finally opens the
 * model routes and turns /readyz 200. A failed step is logged, shown by
 * /readyz, printed as one line on stderr, and the process exits non-zero
 * (2 for bad input such as a model file, 1 for a store it cannot open).
 *
 * Signals are blocked in every thread (the mask is set before any thread
 * starts) and taken synchronously by the main thread with sigwait, so no
 * work happens in a signal handler: SIGHUP reopens the log file;
 * SIGTERM/SIGINT drain (listener closed, /readyz 503 at once), wait up to
 * shutdown_grace_s for in-flight requests, then exit 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/openai_serve.h"
#include "engine/sched.h"
#include "base/clock.h"
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

/* ------------------------------------------------------------ loader -- */

/* What loads after the server is up (models, pipeline, store, collections),
 * on its own thread, and how it ended. The main thread reads the results
 * after joining it. */
typedef struct loader {
    const ferry_config *cfg;
    api_app *app;
    const api_model_spec *specs;
    sched_metrics *sm;
    sched_config sc;
    http_server *srv;
    uint64_t delay_ms;        // FERRY_TEST_LOAD_DELAY_MS (tests only)
    pthread_t main_thread, thread;
    _Atomic bool stop;        // SIGTERM while loading: skip the steps left
    _Atomic bool is_done;
    int exit_rc;              // 0 loaded (or stopped), else the exit code
    store *st;
    gw_judge *judge;
    guard_engine *ge;
    bool has_kb;
} loader;

#define TEST_LOAD_DELAY_MAX_MS 600000

/* FERRY_TEST_LOAD_DELAY_MS: the loader sleeps this long before loading, so
 * tests can watch the loading phase (readyz 503, model routes 503) of a
 * tiny model that would load in milliseconds. Returns 0 or 2 (bad value). */
static int test_load_delay(uint64_t *ms)
{
    *ms = 0;
    const char *v = getenv("FERRY_TEST_LOAD_DELAY_MS");
    int64_t x;
    if (!v || !*v)
        return 0;
    if (parse_i64(v, 0, TEST_LOAD_DELAY_MAX_MS, &x) != 0) {
        cli_errorf("serve: FERRY_TEST_LOAD_DELAY_MS \"%s\" is not 0..%d", v,
                   TEST_LOAD_DELAY_MAX_MS);
        return 2;
    }
    *ms = (uint64_t)x;
    return 0;
}

/* Records a failed step: /readyz shows why, the log has it, stderr gets the
 * one line (already printed when printed is set). */
static void load_failed(loader *ld, int exit_rc, const char *why, bool printed)
{
    char reason[300];
    snprintf(reason, sizeof reason, "load failed: %s", why);
    api_set_ready(ld->app, reason);
    LOG_ERROR("serve", "%s", reason);
    if (!printed)
        cli_errorf("serve: %s", why);
    ld->exit_rc = exit_rc;
}

static bool load_step(loader *ld, const char *reason)
{
    if (atomic_load(&ld->stop))
        return false;
    api_set_ready(ld->app, reason);
    return true;
}

static void load_all(loader *ld)
{
    const ferry_config *cfg = ld->cfg;
    api_app *app = ld->app;
    err_msg e;
    err_clear(&e);
    char reason[CONFIG_STR_MAX + 64];
    uint64_t t0 = clock_mono_ns();
    if (cfg->n_models > 0) {
        size_t k = (size_t)snprintf(reason, sizeof reason, "models: loading");
        for (int i = 0; i < cfg->n_models && k < sizeof reason; i++)
            k += (size_t)snprintf(reason + k, sizeof reason - k, "%s %s", i ? "," : "",
                                  ld->specs[i].name);
        if (!load_step(ld, reason))
            return;
    }
    for (uint64_t slept = 0; slept < ld->delay_ms && !atomic_load(&ld->stop); slept += 10)
        usleep(10000);
    if (cfg->n_models > 0) {
        if (!load_step(ld, reason))
            return;
        if (api_models_load(ld->specs, (size_t)cfg->n_models, &ld->sc, &app->models, &e) != 0) {
            /* Some reader errors name no file ("gguf: unsupported version 0"):
             * then say which model was loading. */
            bool named = false;
            for (int i = 0; i < cfg->n_models && !named; i++)
                named = strstr(e.text, ld->specs[i].path) != NULL;
            char why[ERR_MSG_MAX + CONFIG_STR_MAX];
            if (named || cfg->n_models != 1)
                snprintf(why, sizeof why, "%s", e.text);
            else
                snprintf(why, sizeof why, "model %s (%s): %s", ld->specs[0].name,
                         ld->specs[0].path, e.text);
            load_failed(ld, 2, why, false);
            return;
        }
    }
    /* The pipeline: guard (policy file, optional judge), retrieval, RAG options. */
    if (!load_step(ld, "pipeline: loading the guard policy and RAG options"))
        return;
    int rc = build_pipeline(cfg, app, &ld->judge, &ld->ge);
    if (rc) {
        load_failed(ld, rc, "the pipeline configuration was refused (see stderr)", true);
        return;
    }
    snprintf(reason, sizeof reason, "store: opening %s", cfg->data);
    if (!load_step(ld, reason))
        return;
    ld->st = store_open(cfg->data, &e);
    if (!ld->st) {
        load_failed(ld, 1, e.text, false);
        return;
    }
    LOG_INFO("serve", "store ready: %s (schema %d)", store_path(ld->st),
             store_schema_version(ld->st));
    // collections persist under DATA/collections; embeddings use the configured model
    if (!load_step(ld, cfg->embedding_model[0] ? "collections: loading the embedding model"
                                               : "collections: loading"))
        return;
    if (api_kb_init(cfg->data, cfg->embedding_model, app->metrics, &e) != 0) {
        load_failed(ld, 2, e.text, false);
        return;
    }
    ld->has_kb = true;
    http_server_set_loaded(ld->srv); // publishes app->models, app->gw and the collections
    api_set_ready(app, NULL);
    char fields[64];
    snprintf(fields, sizeof fields, "\"load_ms\":%.1f", (double)(clock_mono_ns() - t0) * 1e-6);
    log_write_fields(LOG_LEVEL_INFO, "serve", "ready", fields);
}

static void *load_main(void *arg)
{
    loader *ld = arg;
    load_all(ld);
    atomic_store(&ld->is_done, true);
    pthread_kill(ld->main_thread, SIGUSR1); // sigwait in the main thread takes it
    return NULL;
}

/* Frees what the loader made (after the schedulers stopped). */
static void loader_free(loader *ld)
{
    store_close(ld->st);
    ld->st = NULL;
    if (ld->has_kb)
        api_kb_free();
    ld->has_kb = false;
    api_models_free(ld->app->models);
    ld->app->models = NULL;
    gw_free(ld->app->gw);
    ld->app->gw = NULL;
    guard_engine_free(ld->ge);
    ld->ge = NULL;
    gw_judge_free(ld->judge);
    ld->judge = NULL;
    sched_metrics_free(ld->sm);
    ld->sm = NULL;
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
    /* A model file that cannot be opened is refused before the server
     * starts (the common typo, one line, nothing else printed); what is
     * wrong inside a file shows when the loader reads it. */
    for (int i = 0; i < cfg.n_models; i++) {
        if (access(specs[i].path, R_OK) != 0) {
            cli_errorf("serve: gguf: cannot open %s: %s", specs[i].path, strerror(errno));
            return 2;
        }
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
     * thread inherits the mask and only sigwait below sees them. SIGUSR1 is
     * the loader's "done" (loaded, or failed). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    static api_app app; // handlers keep pointers to it until exit
    if (api_app_init(&app, cfg.debug_routes, &e) != 0) {
        cli_errorf("serve: %s", e.text);
        return 1;
    }
    static loader ld;
    memset(&ld, 0, sizeof ld);
    ld.cfg = &cfg;
    ld.app = &app;
    ld.specs = specs;
    if (cfg.n_models > 0) {
        if (sched_metrics_new(app.metrics, &ld.sm, &e) != 0) {
            cli_errorf("serve: %s", e.text);
            return 1;
        }
        sched_config sc = sched_config_default();
        sc.metrics = ld.sm;
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
        ld.sc = sc;
    }
    if ((rc = test_load_delay(&ld.delay_ms)) != 0)
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
    hc.is_loading = true; // model routes answer 503 model_loading until the loader is done
    api_set_ready(&app, "starting");
    /* The server first: /healthz, /readyz and /metrics answer while the
     * models and stores load (the issue: readyz 503 with the reason until
     * everything configured is loaded). */
    http_server *srv = http_server_start(&hc, rt, &e);
    if (!srv) {
        cli_errorf("serve: %s", e.text);
        return 1;
    }
    app.srv = srv;
    ld.srv = srv;
    char fields[512];
    snprintf(fields, sizeof fields,
             "\"host\":\"%s\",\"port\":%u,\"threads\":%u,\"max_connections\":%u,"
             "\"version\":\"%s\",\"commit\":\"%s\",\"debug_routes\":%s",
             cfg.host, http_server_port(srv), hc.threads, hc.max_connections, FERRY_VERSION,
             FERRY_COMMIT, cfg.debug_routes ? "true" : "false");
    log_write_fields(LOG_LEVEL_INFO, "serve", "listening", fields);

    ld.main_thread = pthread_self();
    bool loading = pthread_create(&ld.thread, NULL, load_main, &ld) == 0;
    if (!loading) {
        cli_errorf("serve: cannot start the loader thread");
        http_server_stop(srv, 0);
        return 1;
    }

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            int r = log_reopen();
            LOG_INFO("serve", "SIGHUP: log reopened%s", r ? " (failed; kept the old file)" : "");
            continue;
        }
        if (sig == SIGUSR1) {
            if (!loading || !atomic_load(&ld.is_done))
                continue;
            pthread_join(ld.thread, NULL);
            loading = false;
            if (ld.exit_rc == 0)
                continue;
            /* Load failed: the loader printed the one-line reason and /readyz
             * says it; nothing was served from what did not load. */
            http_server_stop(srv, 0);
            app.srv = NULL;
            loader_free(&ld);
            http_router_free(rt);
            api_app_free(&app);
            return ld.exit_rc;
        }
        break; // SIGTERM or SIGINT
    }
    int64_t n = http_server_in_flight(srv);
    http_server_drain(srv);
    snprintf(fields, sizeof fields, "\"in_flight\":%lld,\"grace_s\":%lld", (long long)n,
             (long long)cfg.shutdown_grace_s);
    log_write_fields(LOG_LEVEL_INFO, "serve", "draining", fields);
    if (loading) {
        /* Stopped while loading: the step under way finishes (a model load
         * cannot be interrupted), the rest is skipped. */
        atomic_store(&ld.stop, true);
        pthread_join(ld.thread, NULL);
    }
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
    loader_free(&ld);
    http_router_free(rt);
    api_app_free(&app);
    return 0;
}
