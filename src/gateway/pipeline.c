/*
 * gateway/pipeline — guard in -> retrieve -> execute -> guard out (the stage
 * list and the contracts are in gateway.h; docs/internals/gateway.md has the
 * run's life and locking).
 *
 * A run is refcounted: the caller's reference (dropped with gw_run_release)
 * and the backend sink's (dropped after the terminal callback). Its mutex
 * orders gw_run_cancel (any thread) against the terminal callback, because
 * the backend's handle is only valid until that callback has returned.
 * Everything else in a run is touched by one thread at a time: gw_submit's
 * thread before the backend sees the request, the backend's thread after.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "gateway/gateway.h"

#define TEXT_MAX ((size_t)16 << 20)   // bytes of one guarded message or prompt
#define EMIT_MAX ((size_t)16 << 20)   // bytes the output guard releases at once
#define SOURCES_MAX ((size_t)4 << 20) // bytes of the sources block of a RAG prompt

const char GW_RAG_TEMPLATE_DEFAULT[] =
    "Answer the question using only the sources below. Cite the sources you use by their "
    "numbers in square brackets, like [1] or [2]. If the sources do not contain the answer, "
    "say that you do not know.\n\nSources:\n{sources}\nQuestion: {question}";

/* A job for the pipeline's workers. */
typedef struct gw_job {
    void (*fn)(void *);
    void *arg;
} gw_job;

struct gw {
    /* Workers (n_workers threads; none when the pipeline never blocks). */
    pthread_t workers[GW_WORKERS_MAX];
    size_t n_workers;
    /* Set once in gw_new (workers were configured) and never changed, so
     * gw_defers reads it without the lock; gw_post still refuses after gw_stop. */
    bool defers;
    pthread_mutex_t mu; // guards the queue below and is_stopping
    pthread_cond_t cv;
    gw_job *q; // ring of GW_QUEUE_MAX
    size_t q_head, q_len;
    bool is_stopping;

    const guard_engine *guard;
    obs_family *decisions; // ferry_guard_decisions_total{detector,action,stage}
    gw_retrieve_fn retrieve;
    void *retrieve_ctx;
    char *tmpl;
    gw_rag_route routes[GW_RAG_ROUTES_MAX];
    size_t n_routes;
};

struct gw_run {
    atomic_int refs;
    pthread_mutex_t mu; // guards is_ended against gw_run_cancel
    bool is_ended;
    gw *p;
    fr_backend be;
    fr_handle h;
    gw_out out;
    guard_req *gr;    // NULL without a guard
    guard_stream *gs; // NULL without a guard
    const guard_policy *pol;
    bool is_blocked;    // the output guard refused: ends with ERR_POLICY
    buf emit;           // scratch: bytes the output guard releases
    gw_citation *cites; // (n_cites) and their strings, one malloc
    size_t n_cites;
    bool has_rag;
    char request_id[129];
};

/* ------------------------------------------------------------ config -- */

int gw_rag_routes_parse(const char *s, gw_rag_route *out, size_t cap, err_msg *e)
{
    size_t n = 0;
    const char *p = s ? s : "";
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            if (!eq || eq == p || eq == p + len - 1)
                return err_set(e, ERR_INVAL, "rag entry \"%.*s\" is not TARGET=COLLECTION[:TOP_K]",
                               (int)len, p);
            if (n == cap)
                return err_set(e, ERR_INVAL, "rag: more than %zu entries", cap);
            gw_rag_route *r = &out[n];
            size_t tl = (size_t)(eq - p);
            const char *cs = eq + 1;
            size_t cl = len - tl - 1;
            const char *colon = memchr(cs, ':', cl);
            r->top_k = GW_RAG_TOP_K_DEFAULT;
            if (colon) {
                char num[16];
                size_t nl = cl - (size_t)(colon - cs) - 1;
                char *stop;
                if (nl == 0 || nl >= sizeof num)
                    return err_set(e, ERR_INVAL, "rag entry \"%.*s\": bad top_k", (int)len, p);
                memcpy(num, colon + 1, nl);
                num[nl] = 0;
                long k = strtol(num, &stop, 10);
                if (*stop || k < 1 || k > GW_RAG_TOP_K_MAX)
                    return err_set(e, ERR_INVAL, "rag entry \"%.*s\": top_k must be 1 to %d",
                                   (int)len, p, GW_RAG_TOP_K_MAX);
                r->top_k = (size_t)k;
                cl = (size_t)(colon - cs);
            }
            if (tl >= sizeof r->target || cl == 0 || cl >= sizeof r->collection)
                return err_set(e, ERR_INVAL, "rag entry \"%.*s\": names must be 1 to %d bytes",
                               (int)len, p, GW_NAME_MAX - 1);
            memcpy(r->target, p, tl);
            r->target[tl] = 0;
            memcpy(r->collection, cs, cl);
            r->collection[cl] = 0;
            n++;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return (int)n;
}

static void *worker_main(void *arg)
{
    gw *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->q_len == 0 && !p->is_stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->q_len == 0)
            break; // stopping and drained
        gw_job j = p->q[p->q_head];
        p->q_head = (p->q_head + 1) % GW_QUEUE_MAX;
        p->q_len--;
        pthread_mutex_unlock(&p->mu);
        j.fn(j.arg);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

bool gw_defers(const gw *p)
{
    return p->defers;
}

int gw_post(gw *p, void (*fn)(void *), void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (p->is_stopping || p->n_workers == 0)
        rc = ERR_UNAVAILABLE;
    else if (p->q_len == GW_QUEUE_MAX)
        rc = ERR_RATE_LIMIT;
    else {
        p->q[(p->q_head + p->q_len) % GW_QUEUE_MAX] = (gw_job){fn, arg};
        p->q_len++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void gw_stop(gw *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->is_stopping = true;
    pthread_cond_broadcast(&p->cv);
    size_t n = p->n_workers;
    p->n_workers = 0;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < n; i++)
        pthread_join(p->workers[i], NULL);
}

int gw_new(const gw_config *cfg, gw **out, err_msg *e)
{
    *out = NULL;
    const char *t = cfg->rag_template ? cfg->rag_template : GW_RAG_TEMPLATE_DEFAULT;
    if (strlen(t) > GW_RAG_TEMPLATE_MAX)
        return err_set(e, ERR_INVAL, "rag template: %zu bytes (limit %zu)", strlen(t),
                       GW_RAG_TEMPLATE_MAX);
    if (!strstr(t, "{sources}") || !strstr(t, "{question}"))
        return err_set(e, ERR_INVAL, "rag template: must contain {sources} and {question}");
    if (cfg->n_rag_routes > GW_RAG_ROUTES_MAX)
        return err_set(e, ERR_INVAL, "rag: %zu routes (limit %d)", cfg->n_rag_routes,
                       GW_RAG_ROUTES_MAX);
    if (cfg->workers > GW_WORKERS_MAX)
        return err_set(e, ERR_INVAL, "pipeline: %zu workers (limit %d)", cfg->workers,
                       GW_WORKERS_MAX);
    gw *p = calloc(1, sizeof *p);
    if (!p || !(p->tmpl = strdup(t))) {
        free(p);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->guard = cfg->guard;
    p->retrieve = cfg->retrieve;
    p->retrieve_ctx = cfg->retrieve_ctx;
    for (size_t i = 0; i < cfg->n_rag_routes; i++)
        p->routes[i] = cfg->rag_routes[i];
    p->n_routes = cfg->n_rag_routes;
    if (cfg->metrics) {
        static const char *const labels[] = {"detector", "action", "stage"};
        p->decisions = obs_family_new(cfg->metrics, OBS_COUNTER, "ferry_guard_decisions_total",
                                      "Guard findings by detector, action taken and stage "
                                      "(input, chunk, output).",
                                      labels, 3, NULL, 0, 256, e);
        if (!p->decisions) {
            gw_free(p);
            return e->code;
        }
    }
    if (cfg->workers > 0) {
        if (!(p->q = calloc(GW_QUEUE_MAX, sizeof *p->q))) {
            gw_free(p);
            return err_set(e, ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < cfg->workers; i++) {
            if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
                gw_free(p);
                return err_set(e, ERR_NOMEM, "pipeline: cannot start worker threads");
            }
            p->n_workers++;
        }
        p->defers = true;
    }
    *out = p;
    return 0;
}

void gw_free(gw *p)
{
    if (!p)
        return;
    gw_stop(p);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->q);
    free(p->tmpl);
    free(p);
}

int gw_policy_error_json(const gw *p, const char *policy_id, buf *out)
{
    const guard_policy *pol = p->guard ? guard_engine_policy(p->guard, policy_id) : NULL;
    if (!pol)
        return ERR_INTERNAL;
    return guard_error_json(pol, out);
}

/* ------------------------------------------------------------- audit -- */

/* Every guard finding: one log line (never the text) and the counter. */
static void audit(void *ctx, const guard_audit *a)
{
    gw *p = ctx;
    const char *act = guard_action_name(a->action);
    const char *v[] = {a->detector, act, a->stage};
    if (p->decisions) // NULL without a registry
        obs_counter_add(obs_series_get(p->decisions, v), 1);
    if (!log_enabled(LOG_LEVEL_INFO, "guard"))
        return;
    buf f;
    buf_init(&f, 2048);
    int rc = buf_append_str(&f, "\"request_id\":\"");
    if (!rc)
        rc = buf_append_json_str(&f, a->request_id, strlen(a->request_id));
    if (!rc)
        rc = buf_append_str(&f, "\",\"policy\":\"");
    if (!rc)
        rc = buf_append_json_str(&f, a->policy_id, strlen(a->policy_id));
    if (!rc)
        rc = buf_printf(&f,
                        "\",\"stage\":\"%s\",\"detector\":\"%s\",\"type\":\"%s\",\"action\":\"%s\","
                        "\"span_bytes\":%zu,\"score\":%.3f,\"hash\":\"%s\"",
                        a->stage, a->detector, a->type, act, a->span_bytes, a->score, a->hash_hex);
    if (!rc)
        log_write_fields(a->action == GUARD_BLOCK ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, "guard",
                         "guard decision", f.data);
    buf_deinit(&f);
}

/* ---------------------------------------------------------------- run -- */

static void run_unref(gw_run *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    guard_stream_free(r->gs);
    guard_req_free(r->gr); // wipes the redaction map
    buf_deinit(&r->emit);
    free(r->cites);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void gw_run_release(gw_run *r)
{
    if (r)
        run_unref(r);
}

void gw_run_cancel(gw_run *r)
{
    pthread_mutex_lock(&r->mu);
    if (!r->is_ended && r->h)
        r->be.ops->cancel(r->be.self, r->h);
    pthread_mutex_unlock(&r->mu);
}

const gw_citation *gw_run_citations(const gw_run *r, size_t *n)
{
    *n = r->n_cites;
    return r->cites;
}

bool gw_run_has_rag(const gw_run *r)
{
    return r->has_rag;
}

const char *gw_run_policy_id(const gw_run *r)
{
    return r->pol ? guard_policy_id(r->pol) : NULL;
}

/* The output guard refused: stop the generation; the terminal callback
 * reports ERR_POLICY. Runs on the backend's thread before that callback. */
static void block_output(gw_run *r)
{
    r->is_blocked = true;
    if (r->h)
        r->be.ops->cancel(r->be.self, r->h);
}

static void s_delta(void *ctx, const char *text, size_t len, const fr_logprobs *lp)
{
    gw_run *r = ctx;
    if (r->is_blocked)
        return;
    if (!r->gs) {
        r->out.on_delta(r->out.ctx, text, len, lp);
        return;
    }
    buf_reset(&r->emit);
    int rc = len ? guard_stream_feed(r->gs, text, len, &r->emit) : 0;
    if (rc != 0) {
        /* ERR_POLICY, or ERR_TOO_LARGE (held text past its cap), treated as a block;
         * ERR_NOMEM too: unfiltered text must not go out. */
        block_output(r);
        return;
    }
    if (r->emit.len || lp)
        r->out.on_delta(r->out.ctx, r->emit.data ? r->emit.data : "", r->emit.len, lp);
}

static void mark_ended(gw_run *r)
{
    pthread_mutex_lock(&r->mu);
    r->is_ended = true;
    pthread_mutex_unlock(&r->mu);
}

static void policy_error(gw_run *r, const fr_usage *u)
{
    fr_error fe = {ERR_POLICY, "content policy violation"};
    r->out.on_error(r->out.ctx, &fe, u);
}

static void s_done(void *ctx, fr_finish why, const fr_usage *u)
{
    gw_run *r = ctx;
    if (r->gs && !r->is_blocked) {
        buf_reset(&r->emit);
        if (guard_stream_finish(r->gs, &r->emit) != 0)
            r->is_blocked = true;
        else if (r->emit.len)
            r->out.on_delta(r->out.ctx, r->emit.data, r->emit.len, NULL);
    }
    mark_ended(r);
    if (r->is_blocked)
        policy_error(r, u);
    else
        r->out.on_done(r->out.ctx, why, u);
    run_unref(r);
}

static void s_error(void *ctx, const fr_error *err, const fr_usage *u)
{
    gw_run *r = ctx;
    mark_ended(r);
    if (r->is_blocked) // the cancel was ours
        policy_error(r, u);
    else
        r->out.on_error(r->out.ctx, err, u);
    run_unref(r);
}

/* False when every output detector of pol is off: the stream then passes
 * through without the hold-back window. (Injection is never scored on
 * output; placeholders only exist when some type redacts.) */
static bool output_guarded(const guard_policy *pol)
{
    for (int t = 0; t < GUARD_N_BUILTIN; t++)
        if (guard_policy_action(pol, (guard_type)t, 0) != GUARD_OFF)
            return true;
    if (guard_policy_term_count(pol) > 0 &&
        guard_policy_action(pol, GUARD_T_BLOCKLIST, 0) != GUARD_OFF)
        return true;
    for (size_t i = 0; i < guard_policy_custom_count(pol); i++)
        if (guard_policy_action(pol, GUARD_T_CUSTOM, i) != GUARD_OFF)
            return true;
    return false;
}

/* ----------------------------------------------------------- guard in -- */

/* Checks text through the input guard; *out gets the text to forward (arena). */
static int guard_text(guard_req *gr, arena *a, const char *text, size_t len, const char **out,
                      size_t *out_len, err_msg *e)
{
    buf b;
    buf_init(&b, TEXT_MAX);
    int rc = guard_req_check_input(gr, text ? text : "", len, &b, NULL, e);
    if (rc == 0) {
        char *c = arena_strndup(a, b.data ? b.data : "", b.len);
        if (!c)
            rc = ERR_NOMEM;
        *out = c;
        *out_len = b.len;
    }
    buf_deinit(&b);
    return rc;
}

/* ------------------------------------------------------------ retrieve -- */

typedef struct got_chunk {
    gw_chunk c; // strings malloc'ed
} got_chunk;

typedef struct got {
    got_chunk *v;
    size_t n, cap;
    int rc;
} got;

static void each_chunk(void *ctx, const gw_chunk *c)
{
    got *g = ctx;
    if (g->rc)
        return;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        got_chunk *v = realloc(g->v, cap * sizeof *v);
        if (!v) {
            g->rc = ERR_NOMEM;
            return;
        }
        g->v = v;
        g->cap = cap;
    }
    got_chunk *k = &g->v[g->n];
    k->c = *c;
    k->c.doc_id = strdup(c->doc_id ? c->doc_id : "");
    k->c.text = strndup(c->text ? c->text : "", c->len);
    if (!k->c.doc_id || !k->c.text) {
        free((char *)k->c.doc_id);
        free((char *)k->c.text);
        g->rc = ERR_NOMEM;
        return;
    }
    g->n++;
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free((char *)g->v[i].c.doc_id);
        free((char *)g->v[i].c.text);
    }
    free(g->v);
}

/* The collection and top_k of a request: its extension, else the first
 * route/model option naming its model or route. Returns false when none. */
static bool rag_target(const gw *p, const gw_request *rq, const char **coll, size_t *top_k)
{
    if (rq->collection) {
        *coll = rq->collection;
        *top_k = rq->top_k ? rq->top_k : GW_RAG_TOP_K_DEFAULT;
        return true;
    }
    for (size_t i = 0; i < p->n_routes; i++) {
        const gw_rag_route *o = &p->routes[i];
        if ((rq->model && strcmp(o->target, rq->model) == 0) ||
            (rq->route && strcmp(o->target, rq->route) == 0)) {
            *coll = o->collection;
            *top_k = rq->top_k ? rq->top_k : o->top_k;
            return true;
        }
    }
    return false;
}

/* Appends tmpl with {sources} and {question} replaced. */
static int render(buf *out, const char *tmpl, const char *src, size_t src_n, const char *q,
                  size_t q_n)
{
    int rc = 0;
    const char *s = tmpl;
    while (*s && !rc) {
        if (strncmp(s, "{sources}", 9) == 0) {
            rc = buf_append(out, src, src_n);
            s += 9;
        } else if (strncmp(s, "{question}", 10) == 0) {
            rc = buf_append(out, q, q_n);
            s += 10;
        } else {
            rc = buf_append_char(out, *s++);
        }
    }
    return rc;
}

/*
 * Retrieval: queries the collection with question, passes each chunk through
 * the chunk guard, fills r's citations and renders the prompt into *out_text
 * (arena). Returns 0 or an ERR_* with e set (ERR_NOT_FOUND: no collection).
 */
static int retrieve(gw *p, gw_run *r, const char *coll, size_t top_k, const char *question,
                    size_t q_len, arena *a, const char **out_text, size_t *out_len, err_msg *e)
{
    if (!p->retrieve)
        return err_set(e, ERR_UNSUPPORTED, "retrieval is not available on this server");
    got g = {0};
    int n = p->retrieve(p->retrieve_ctx, coll, question, q_len, top_k, each_chunk, &g, e);
    if (n >= 0 && g.rc)
        n = err_set(e, g.rc, "out of memory");
    if (n < 0) {
        got_free(&g);
        return n;
    }
    buf src, gtext, prompt;
    buf_init(&src, SOURCES_MAX);
    buf_init(&gtext, TEXT_MAX);
    buf_init(&prompt, TEXT_MAX);
    /* Citation texts go into one block after the array: measure first. */
    size_t kept = 0, bytes = 0;
    bool *keep = calloc(g.n ? g.n : 1, sizeof *keep);
    size_t *toff = calloc(g.n ? g.n : 1, sizeof *toff), *tlen = calloc(g.n ? g.n : 1, sizeof *tlen);
    int rc = keep && toff && tlen ? 0 : ERR_NOMEM;
    for (size_t i = 0; i < g.n && !rc; i++) {
        const gw_chunk *c = &g.v[i].c;
        guard_chunk_verdict v = GUARD_CHUNK_KEEP;
        size_t at = gtext.len;
        if (r->gr) {
            rc = guard_req_check_chunk(r->gr, c->text, c->len, &gtext, &v, e);
            if (rc)
                break;
        } else if ((rc = buf_append(&gtext, c->text, c->len)) != 0) {
            break;
        }
        if (v == GUARD_CHUNK_DROP) {
            gtext.len = at; // nothing of a dropped chunk is used
            continue;
        }
        keep[i] = true;
        toff[i] = at;
        tlen[i] = gtext.len - at;
        kept++;
        rc = buf_printf(&src, "[%zu] ", kept);
        if (!rc)
            rc = buf_append(&src, gtext.data + at, gtext.len - at);
        if (!rc)
            rc = buf_append_str(&src, "\n\n");
        bytes += strlen(c->doc_id) + 1 + (gtext.len - at) + 1;
    }
    if (!rc && kept == 0)
        rc = buf_append_str(&src, "(no sources were found)\n\n");
    if (!rc)
        rc = render(&prompt, p->tmpl, src.data, src.len, question, q_len);
    if (!rc) {
        size_t head = kept * sizeof(gw_citation);
        r->cites = kept ? malloc(head + bytes) : NULL;
        if (kept && !r->cites)
            rc = ERR_NOMEM;
        char *mem = r->cites ? (char *)r->cites + head : NULL;
        for (size_t i = 0, k = 0; i < g.n && !rc; i++) {
            if (!keep[i])
                continue;
            const gw_chunk *c = &g.v[i].c;
            gw_citation *ct = &r->cites[k++];
            size_t dl = strlen(c->doc_id);
            memcpy(mem, c->doc_id, dl + 1);
            ct->doc_id = mem;
            mem += dl + 1;
            memcpy(mem, gtext.data + toff[i], tlen[i]);
            mem[tlen[i]] = 0;
            ct->text = mem;
            ct->text_len = tlen[i];
            mem += tlen[i] + 1;
            ct->index = k;
            ct->chunk_id = c->chunk_id;
            ct->off = c->off;
            ct->len = c->len;
            ct->score = c->score;
        }
        r->n_cites = kept;
    }
    if (!rc) {
        char *t = arena_strndup(a, prompt.data ? prompt.data : "", prompt.len);
        if (!t)
            rc = ERR_NOMEM;
        *out_text = t;
        *out_len = prompt.len;
    }
    if (rc && !e->text[0])
        err_set(e, rc, "retrieval: %s", err_str(rc));
    free(keep);
    free(toff);
    free(tlen);
    buf_deinit(&src);
    buf_deinit(&gtext);
    buf_deinit(&prompt);
    got_free(&g);
    return rc;
}

/* -------------------------------------------------------------- submit -- */

int gw_submit(gw *p, const gw_request *rq, arena *a, gw_out out, gw_run **runp, gw_refusal *why,
              err_msg *e)
{
    *runp = NULL;
    memset(why, 0, sizeof *why);
    err_clear(e);
    gw_run *r = calloc(1, sizeof *r);
    if (!r)
        return err_set(e, ERR_NOMEM, "out of memory");
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->mu, NULL);
    r->p = p;
    r->be = rq->backend;
    r->out = out;
    buf_init(&r->emit, EMIT_MAX);
    snprintf(r->request_id, sizeof r->request_id, "%s", rq->request_id ? rq->request_id : "");
    fr_gen_params gp = rq->gen;
    int rc = 0;

    /* guard in */
    if (p->guard) {
        r->pol = guard_engine_select(p->guard, rq->route, rq->api_key);
        r->gr = guard_req_new(p->guard, r->pol, r->request_id, audit, p);
        if (!r->gr) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (gp.is_chat) {
            chat_msg *m = arena_calloc(a, gp.n_msgs ? gp.n_msgs : 1, sizeof *m);
            if (!m) {
                rc = err_set(e, ERR_NOMEM, "out of memory");
                goto fail;
            }
            for (size_t i = 0; i < gp.n_msgs && !rc; i++) {
                m[i] = gp.msgs[i];
                rc = guard_text(r->gr, a, gp.msgs[i].content, gp.msgs[i].n, &m[i].content, &m[i].n,
                                e);
            }
            gp.msgs = m;
        } else {
            rc = guard_text(r->gr, a, gp.prompt, gp.prompt_len, &gp.prompt, &gp.prompt_len, e);
        }
        if (rc == ERR_POLICY) {
            snprintf(why->policy_id, sizeof why->policy_id, "%s", guard_policy_id(r->pol));
            why->code = "content_policy_violation";
            err_set(e, ERR_POLICY, "content policy violation");
        }
        if (rc)
            goto fail;
    }

    /* retrieve */
    const char *coll;
    size_t top_k;
    if (rag_target(p, rq, &coll, &top_k)) {
        const char *q = NULL, *text = NULL;
        size_t qn = 0, tn = 0;
        ssize_t last = -1;
        if (gp.is_chat) {
            for (size_t i = 0; i < gp.n_msgs; i++)
                if (gp.msgs[i].role == CHAT_ROLE_USER)
                    last = (ssize_t)i;
            if (last < 0) {
                why->param = "messages";
                rc = err_set(e, ERR_INVAL, "retrieval needs a user message to search for");
                goto fail;
            }
            q = gp.msgs[last].content;
            qn = gp.msgs[last].n;
        } else {
            q = gp.prompt;
            qn = gp.prompt_len;
        }
        r->has_rag = true;
        rc = retrieve(p, r, coll, top_k, q ? q : "", qn, a, &text, &tn, e);
        if (rc == ERR_NOT_FOUND) {
            why->param = "ferry.collection";
            why->code = "collection_not_found";
        }
        if (rc)
            goto fail;
        if (gp.is_chat) {
            chat_msg *m = arena_calloc(a, gp.n_msgs, sizeof *m);
            if (!m) {
                rc = err_set(e, ERR_NOMEM, "out of memory");
                goto fail;
            }
            memcpy(m, gp.msgs, gp.n_msgs * sizeof *m);
            m[last].content = text;
            m[last].n = tn;
            gp.msgs = m;
        } else {
            gp.prompt = text;
            gp.prompt_len = tn;
        }
    }

    /* execute, with the output guard on the sink (unless it has nothing to do) */
    if (r->gr && output_guarded(r->pol)) {
        /* Logprobs carry token texts (and alternatives) the filter never sees:
         * a redacted or blocked span would leave through them. */
        if (gp.sp.want_logprobs) {
            why->param = "logprobs";
            rc = err_set(e, ERR_UNSUPPORTED,
                         "logprobs cannot be returned while the output guard (policy \"%s\") "
                         "filters the answer: token texts would bypass it",
                         guard_policy_id(r->pol));
            goto fail;
        }
        if (!(r->gs = guard_stream_new(r->gr))) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    atomic_store(&r->refs, 2); // the caller's and the sink's
    fr_sink sink = {r, s_delta, s_done, s_error};
    /* The caller may need the run inside its first callback (to cancel). */
    *runp = r;
    rc = r->be.ops->generate(r->be.self, &gp, sink, &r->h, e);
    if (rc) {
        *runp = NULL;
        atomic_store(&r->refs, 1); // no callback will come
        goto fail;
    }
    return 0;
fail:
    run_unref(r);
    return rc;
}
