/*
 * ferry bench — load test of an OpenAI-compatible chat endpoint (ferry
 * itself, vLLM, llama.cpp, a hosted API), from the client side of real
 * streams. docs/bench.md is the user guide, metric definitions and JSON schema.
 *
 *   ferry bench --url URL --model M [--api-key K]
 *               [--concurrency 1,4,16 | --rate 2,5,10] [--num-requests N] [--duration S]
 *               [--input-len L[:SD]] [--output-len L[:SD]] [--seed S]
 *               [--prompts FILE.jsonl] [--shared-prefix-len N] [--no-stream]
 *               [--slo ttft=500ms,tpot=50ms,e2e=10s]
 *               [--price-in P --price-out P | --hourly-cost H]
 *               [--json FILE] [--html FILE]
 *   ferry bench compare A.json B.json ... [--html FILE]
 *
 * One thread drives every request through http/httpc (libcurl multi). A
 * point of the sweep is either a closed loop (C requests always in flight: a
 * finished request submits the next) or an open loop (Poisson arrivals at
 * rate R, exponential gaps from the seeded generator, whatever is in flight).
 * A point ends after N requests and/or S seconds of submitting, once the
 * requests in flight have finished (each has its timeout). Prompts depend
 * only on --seed and the request's index in the point, so every point and
 * every run with the same flags sends the same prompts.
 *
 * Ctrl-C: the handler only sets a flag; the loop (which never waits more than
 * 100 ms) cancels what is in flight, marks the point interrupted, writes the
 * reports with what was measured and exits 130. A second Ctrl-C kills.
 */
#include "cli/cmd_bench.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/clock.h"
#include "base/str.h"
#include "cli/benchargs.h"
#include "cli/cli.h"
#include "http/httpc.h"

#define BENCH_RUN_MS 100 // longest wait of the loop between looks at the Ctrl-C flag

static volatile sig_atomic_t g_stop;

static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL); // a second Ctrl-C ends the process at once
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: ferry bench --url URL --model M [--api-key K] [options]\n"
        "       ferry bench compare A.json B.json ... [--html FILE]\n"
        "Load test of an OpenAI-compatible chat endpoint; URL is the API root\n"
        "(http://127.0.0.1:8080/v1). Load (one sweep):\n"
        "  --concurrency 1,4,16   closed loop: that many requests always in flight (default 1)\n"
        "  --rate 2,5,10          open loop: Poisson arrivals, requests/s\n"
        "  --num-requests N       requests per point (default 50 unless --duration)\n"
        "  --duration S           seconds of submitting per point (30s, 2m)\n"
        "Prompts:\n"
        "  --input-len L[:SD]     synthetic prompt words (~tokens), fixed or normal (default 128)\n"
        "  --output-len L[:SD]    max_tokens asked (default 128)\n"
        "  --seed S               prompts and arrivals are a function of it (default 1)\n"
        "  --prompts FILE.jsonl   {\"messages\":[...]} or {\"prompt\":\"...\"} per line, in order\n"
        "  --shared-prefix-len N  a common system prompt of N words before every prompt\n"
        "  --no-stream            plain answers (TTFT = end-to-end, no ITL)\n"
        "  --ignore-eos           send ignore_eos (vLLM/ferry) so answers have output-len tokens\n"
        "  --temperature T        sent when given\n"
        "  --timeout S            per request (default 300s)\n"
        "Results:\n"
        "  --slo ttft=500ms,tpot=50ms,e2e=10s   goodput: share and rate of requests meeting all\n"
        "  --price-in P --price-out P   USD per 1M tokens (an API); or --hourly-cost H (own "
        "hardware)\n"
        "  --json FILE  --html FILE     reports (every point, every metric; HTML has charts)\n"
        "Prints a table per point. Exit 0 when some request succeeded, 1 when none did,\n"
        "2 on usage errors, 130 after Ctrl-C (the reports hold what was measured).\n");
}

/* ----------------------------------------------------------- randomness -- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) // (0, 1)
{
    return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(uint64_t *s)
{
    double u = uniform01(s), v = uniform01(s);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static size_t draw_len(uint64_t *s, double mean, double sd)
{
    double x = sd > 0 ? mean + sd * normal(s) : mean;
    x = round(x);
    return x < 1 ? 1 : x > BENCH_LEN_MAX ? (size_t)BENCH_LEN_MAX : (size_t)x;
}

/* Short common English words: about one token each in English BPE vocabularies. */
static const char *const WORDS[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "that",  "for",  "it",   "as",    "was",
    "with",  "be",    "by",    "on",    "not",   "he",    "this",  "are",  "or",   "his",   "from",
    "at",    "which", "but",   "have",  "an",    "had",   "they",  "you",  "were", "their", "one",
    "all",   "we",    "can",   "her",   "has",   "there", "been",  "if",   "more", "when",  "will",
    "would", "who",   "so",    "no",    "time",  "day",   "water", "long", "down", "work",  "part",
    "new",   "way",   "man",   "year",  "good",  "world", "life",  "old",  "city", "road",  "tree",
    "house", "light", "small", "large", "river", "cat",   "dog",   "sun"};

static int add_words(buf *b, uint64_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *w = WORDS[splitmix(s) % ARRAY_LEN(WORDS)];
        if ((i && buf_append_char(b, ' ')) || buf_append_str(b, w))
            return ERR_TOO_LARGE;
    }
    return 0;
}

/* --------------------------------------------------------------- state -- */

typedef struct bench {
    bench_run *run;
    benchargs_prompts pf;
    char *shared; // the shared system prompt, or NULL
    char chat_url[2048], models_url[2048];
    httpc *hc;
    bench_point *p; // the point being run
    uint64_t t0_ns; // its start
    int64_t n_submitted;
    uint64_t last_done_ns;
    bool is_tty;
    uint64_t last_progress_ns;
    bool failed_submit;
} bench;

typedef struct req_ctx {
    bench *b;
    size_t idx; // in b->p->recs
    uint64_t t_submit_ns, t_first_ns, t_last_ns;
    double *gaps;
    size_t n_gaps, cap_gaps;
    size_t n_chunks;
    int64_t usage_in, usage_out;
    bool stream_err;
} req_ctx;

static bool may_submit(const bench *b)
{
    const bench_cfg *c = &b->run->cfg;
    if (g_stop || b->failed_submit)
        return false;
    if (c->num_requests && b->n_submitted >= c->num_requests)
        return false;
    if (c->duration_s > 0 && (double)(clock_mono_ns() - b->t0_ns) / 1e9 >= c->duration_s)
        return false;
    return true;
}

/* The request body of the index-th request of a point (malloc'd). */
static char *make_body(bench *b, size_t index)
{
    const bench_cfg *c = &b->run->cfg;
    uint64_t s = c->seed * 0x9E3779B97F4A7C15ull + index + 1;
    json_t *msgs;
    size_t max_tokens;
    if (b->pf.n) {
        msgs = json_copy(b->pf.msgs[index % b->pf.n]);
        int64_t mt = b->pf.max_tokens[index % b->pf.n];
        max_tokens = mt ? (size_t)mt : draw_len(&s, c->out_mean, c->out_sd);
    } else {
        size_t in = draw_len(&s, c->in_mean, c->in_sd);
        max_tokens = draw_len(&s, c->out_mean, c->out_sd);
        buf u;
        buf_init(&u, (size_t)64 << 20);
        if (add_words(&u, &s, in)) {
            buf_deinit(&u);
            return NULL;
        }
        msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", u.data ? u.data : "");
        buf_deinit(&u);
    }
    if (msgs && b->shared)
        json_array_insert_new(msgs, 0,
                              json_pack("{s:s,s:s}", "role", "system", "content", b->shared));
    json_t *req = json_pack("{s:s,s:o,s:I,s:b}", "model", c->model, "messages", msgs, "max_tokens",
                            (json_int_t)max_tokens, "stream", c->is_stream);
    if (!req)
        return NULL;
    if (c->is_stream)
        json_object_set_new(req, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (c->ignore_eos)
        json_object_set_new(req, "ignore_eos", json_true());
    if (!isnan(c->temperature))
        json_object_set_new(req, "temperature", json_real(c->temperature));
    char *out = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return out;
}

/* Reads usage.prompt_tokens / completion_tokens when present. */
static void read_usage(req_ctx *q, json_t *v)
{
    json_t *u = json_object_get(v, "usage");
    if (!json_is_object(u))
        return;
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt))
        q->usage_in = json_integer_value(pt);
    if (json_is_integer(ct))
        q->usage_out = json_integer_value(ct);
}

static int on_event(void *ctx, const char *data, size_t len, uint64_t t_ns)
{
    req_ctx *q = ctx;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return 0;
    bench_chunk ch;
    if (benchargs_chunk_scan(data, len, &ch) != 0)
        return 1; // not a JSON object: HTTPC_PARSE
    if (ch.has_error) {
        q->stream_err = true;
        return 1;
    }
    if (ch.prompt_tokens >= 0)
        q->usage_in = ch.prompt_tokens;
    if (ch.completion_tokens >= 0)
        q->usage_out = ch.completion_tokens;
    if (ch.has_content) {
        if (!q->t_first_ns) {
            q->t_first_ns = t_ns;
        } else {
            if (q->n_gaps == q->cap_gaps) {
                size_t nc = q->cap_gaps ? q->cap_gaps * 2 : 64;
                double *ng = realloc(q->gaps, nc * sizeof *ng);
                if (!ng)
                    return 1;
                q->gaps = ng;
                q->cap_gaps = nc;
            }
            q->gaps[q->n_gaps++] = (double)(t_ns - q->t_last_ns) / 1e6;
        }
        q->t_last_ns = t_ns;
        q->n_chunks++;
    }
    return 0;
}

static bench_err err_of(httpc_kind k)
{
    switch (k) {
    case HTTPC_OK:
        return BENCH_OK;
    case HTTPC_CONNECT:
        return BENCH_E_CONNECT;
    case HTTPC_TIMEOUT:
        return BENCH_E_TIMEOUT;
    case HTTPC_HTTP:
        return BENCH_E_HTTP;
    case HTTPC_PARSE:
        return BENCH_E_PARSE;
    case HTTPC_TOO_LARGE:
        return BENCH_E_TOO_LARGE;
    case HTTPC_CANCELLED:
        return BENCH_E_CANCELLED;
    case HTTPC_IO:
        return BENCH_E_IO;
    }
    return BENCH_E_IO;
}

static int submit_next(bench *b);

static void on_done(void *ctx, const httpc_result *res)
{
    req_ctx *q = ctx;
    bench *b = q->b;
    bench_point *p = b->p;
    bench_rec *r = &p->recs[q->idx];
    r->is_done = true;
    r->status = res->status;
    r->err = q->stream_err ? BENCH_E_STREAM : err_of(res->kind);
    r->e2e_ms = (double)(res->t_done_ns - q->t_submit_ns) / 1e6;
    if (r->err == BENCH_OK && !b->run->cfg.is_stream) {
        json_t *v = json_loadb(res->body, res->body_len, 0, NULL);
        json_t *msg = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "message");
        json_t *c = json_object_get(msg, "content");
        if (!json_is_object(v))
            r->err = BENCH_E_PARSE;
        read_usage(q, v);
        q->n_chunks = json_is_string(c) && json_string_length(c) > 0 ? 1 : 0;
        q->t_first_ns = res->t_done_ns;
        json_decref(v);
    }
    r->n_chunks = q->n_chunks;
    r->has_usage = q->usage_out >= 0;
    r->prompt_tokens = q->usage_in;
    r->output_tokens = q->usage_out >= 0 ? q->usage_out : (int64_t)q->n_chunks;
    r->ttft_ms = q->t_first_ns ? (double)(q->t_first_ns - q->t_submit_ns) / 1e6 : NAN;
    r->tpot_ms = NAN;
    r->itl_max_ms = NAN;
    if (r->err == BENCH_OK && b->run->cfg.is_stream && r->output_tokens >= 2 && q->t_first_ns)
        r->tpot_ms = (r->e2e_ms - r->ttft_ms) / (double)(r->output_tokens - 1);
    if (r->err == BENCH_OK && q->n_gaps) {
        size_t need;
        if (!size_add_ok(p->n_itl, q->n_gaps, &need) || need > BENCH_ITL_MAX) {
            p->itl_truncated = true;
        } else {
            if (need > p->cap_itl) {
                size_t nc = MAX(need, p->cap_itl * 2);
                double *ni = realloc(p->itl, nc * sizeof *ni);
                if (ni) {
                    p->itl = ni;
                    p->cap_itl = nc;
                }
            }
            if (need <= p->cap_itl) {
                memcpy(p->itl + p->n_itl, q->gaps, q->n_gaps * sizeof *q->gaps);
                r->itl_from = p->n_itl;
                r->itl_n = q->n_gaps;
                p->n_itl = need;
            } else {
                p->itl_truncated = true;
            }
        }
        r->itl_max_ms = 0;
        for (size_t i = 0; i < q->n_gaps; i++)
            r->itl_max_ms = MAX(r->itl_max_ms, q->gaps[i]);
    }
    b->last_done_ns = res->t_done_ns;
    free(q->gaps);
    free(q);
    if (!p->is_open && may_submit(b))
        (void)submit_next(b);
}

/* Submits the next request of the point. Returns 0 or an error (then stops the point). */
static int submit_next(bench *b)
{
    bench_point *p = b->p;
    if (p->n_recs == p->cap_recs) {
        size_t nc = p->cap_recs ? p->cap_recs * 2 : 256;
        bench_rec *nr = realloc(p->recs, nc * sizeof *nr);
        if (!nr)
            goto fail;
        p->recs = nr;
        p->cap_recs = nc;
    }
    req_ctx *q = calloc(1, sizeof *q);
    char *body = q ? make_body(b, (size_t)b->n_submitted) : NULL;
    if (!body) {
        free(q);
        goto fail;
    }
    q->b = b;
    q->idx = p->n_recs;
    q->usage_in = q->usage_out = -1;
    bench_rec *r = &p->recs[p->n_recs];
    memset(r, 0, sizeof *r);
    r->ttft_ms = r->tpot_ms = r->itl_max_ms = NAN;
    r->prompt_tokens = -1;
    q->t_submit_ns = clock_mono_ns();
    r->t_start_ms = (double)(q->t_submit_ns - b->t0_ns) / 1e6;
    httpc_request hr = {
        .url = b->chat_url,
        .api_key = b->run->cfg.api_key,
        .body = body,
        .body_len = strlen(body),
        .is_stream = b->run->cfg.is_stream,
        .timeout_ms = (uint64_t)(b->run->cfg.timeout_s * 1000),
        .on_event = on_event,
        .on_done = on_done,
        .ctx = q,
    };
    err_msg e;
    p->n_recs++;
    int64_t id = httpc_submit(b->hc, &hr, &e);
    free(body);
    if (id < 0) {
        p->n_recs--;
        free(q);
        cli_errorf("bench: %s", e.text);
        b->failed_submit = true;
        return (int)id;
    }
    b->n_submitted++;
    return 0;
fail:
    cli_errorf("bench: out of memory building request %lld", (long long)b->n_submitted);
    b->failed_submit = true;
    return ERR_NOMEM;
}

/* ------------------------------------------------------------ progress -- */

static void progress(bench *b, size_t point_i, bool final)
{
    if (!b->is_tty)
        return;
    uint64_t now = clock_mono_ns();
    if (!final && now - b->last_progress_ns < 250000000ull)
        return;
    b->last_progress_ns = now;
    const bench_point *p = b->p;
    size_t done = 0, errs = 0, n = 0;
    double *tt = malloc((p->n_recs + 1) * sizeof *tt);
    for (size_t i = 0; i < p->n_recs; i++) {
        const bench_rec *r = &p->recs[i];
        if (!r->is_done)
            continue;
        done++;
        if (r->err)
            errs++;
        else if (tt && !isnan(r->ttft_ms))
            tt[n++] = r->ttft_ms;
    }
    double el = (double)(now - b->t0_ns) / 1e9;
    double p50 = tt && n ? cli_median(tt, n) : NAN;
    free(tt);
    fprintf(stderr,
            "\r\033[K[%zu/%zu %s=%g] %zu/%lld done, %.1f req/s, p50 TTFT %.0f ms, %zu errors",
            point_i + 1, b->run->cfg.n_loads, p->is_open ? "rate" : "c", p->load, done,
            (long long)b->n_submitted, el > 0 ? (double)done / el : 0.0, p50, errs);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ----------------------------------------------------------------- run -- */

static int run_point(bench *b, size_t pi)
{
    bench_run *run = b->run;
    bench_point *p = &run->points[pi];
    memset(p, 0, sizeof *p);
    p->is_open = run->cfg.is_open;
    p->load = run->cfg.loads[pi];
    run->n_points = pi + 1;
    b->p = p;
    b->n_submitted = 0;
    b->t0_ns = clock_mono_ns();
    b->last_done_ns = b->t0_ns;
    err_msg e;
    int rc = 0;
    if (!p->is_open) {
        for (size_t i = 0; i < (size_t)p->load && may_submit(b); i++)
            if (submit_next(b))
                break;
        while (!g_stop && httpc_in_flight(b->hc) > 0) {
            if ((rc = httpc_run(b->hc, BENCH_RUN_MS, &e)) < 0)
                break;
            rc = 0;
            progress(b, pi, false);
        }
    } else {
        uint64_t s = run->cfg.seed ^ 0xA5A5A5A5DEADBEEFull;
        uint64_t next = b->t0_ns; // the first request goes at once
        for (;;) {
            if (g_stop)
                break;
            uint64_t now = clock_mono_ns();
            while (next <= now && may_submit(b)) {
                if (submit_next(b))
                    break;
                next += (uint64_t)(-log(uniform01(&s)) / p->load * 1e9);
            }
            bool more = may_submit(b);
            if (!more && httpc_in_flight(b->hc) == 0)
                break;
            uint64_t wait_ms = BENCH_RUN_MS;
            now = clock_mono_ns();
            if (more)
                wait_ms = next > now ? MIN((next - now) / 1000000, (uint64_t)BENCH_RUN_MS) : 0;
            if ((rc = httpc_run(b->hc, wait_ms, &e)) < 0)
                break;
            rc = 0;
            progress(b, pi, false);
        }
    }
    if (rc < 0)
        cli_errorf("bench: %s", e.text);
    uint64_t end = b->last_done_ns;
    if (g_stop) {
        httpc_cancel_all(b->hc); // each in-flight request ends as "cancelled"
        p->interrupted = true;
        run->interrupted = true;
        end = clock_mono_ns();
    }
    p->duration_s = (double)(end - b->t0_ns) / 1e9;
    progress(b, pi, true);
    return rc;
}

static void models_done(void *ctx, const httpc_result *res)
{
    bench_run *run = ctx;
    if (res->kind == HTTPC_OK || res->kind == HTTPC_HTTP) {
        json_t *v = json_loadb(res->body, res->body_len, 0, NULL);
        run->server_models = v ? v : json_string(res->body);
    } else {
        fprintf(stderr, "ferry: bench: warning: GET /models failed: %s\n", res->error);
        run->server_models =
            json_pack("{s:s,s:s}", "error", httpc_kind_name(res->kind), "message", res->error);
    }
}

/* Fetches URL/models; keeps the parsed answer (or its text) in run->server_models. */
static void fetch_models(bench *b)
{
    httpc_request hr = {.url = b->models_url,
                        .api_key = b->run->cfg.api_key,
                        .timeout_ms = 30000,
                        .on_done = models_done,
                        .ctx = b->run};
    err_msg e;
    if (httpc_submit(b->hc, &hr, &e) < 0)
        return;
    while (httpc_in_flight(b->hc) > 0 && !g_stop)
        if (httpc_run(b->hc, BENCH_RUN_MS, &e) < 0)
            break;
    if (g_stop)
        httpc_cancel_all(b->hc);
}

/* -------------------------------------------------------------- flags -- */

static char *join_argv(int argc, char **argv)
{
    buf b;
    buf_init(&b, (size_t)1 << 20);
    int rc = buf_append_str(&b, "ferry");
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        bool plain = *a && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789-_=.,:/@%+") == strlen(a);
        rc = buf_append_char(&b, ' ');
        if (!rc && plain) {
            rc = buf_append_str(&b, a);
        } else if (!rc) {
            rc = buf_append_char(&b, '\'');
            for (const char *c = a; *c && !rc; c++)
                rc = *c == '\'' ? buf_append_str(&b, "'\\''") : buf_append_char(&b, *c);
            if (!rc)
                rc = buf_append_char(&b, '\'');
        }
    }
    if (rc) {
        buf_deinit(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Hides the API key in the recorded command line. */
static void redact_key(char *cmd, const char *key)
{
    if (!key || !*key)
        return;
    size_t kl = strlen(key);
    for (char *p = strstr(cmd, key); p; p = strstr(p + kl, key))
        memset(p, '*', kl);
}

static int parse_flags(int argc, char **argv, bench_cfg *c, const char **json_path,
                       const char **html_path)
{
    memset(c, 0, sizeof *c);
    c->is_stream = true;
    c->in_mean = c->out_mean = 128;
    c->seed = 1;
    c->timeout_s = 300;
    c->price_in = c->price_out = c->hourly = c->temperature = NAN;
    c->slo.ttft_ms = c->slo.tpot_ms = c->slo.e2e_ms = NAN;
    bool have_conc = false, have_rate = false;
    err_msg e;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--no-stream") == 0) {
            c->is_stream = false;
            continue;
        }
        if (strcmp(a, "--ignore-eos") == 0) {
            c->ignore_eos = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            cli_errorf("bench: %s \"%s\" (see ferry bench --help)",
                       strncmp(a, "--", 2) ? "unexpected argument" : "missing value after", a);
            return ERR_INVAL;
        }
        const char *v = argv[++i];
        int64_t n;
        uint64_t ns;
        if (strcmp(a, "--url") == 0) {
            c->url = v;
        } else if (strcmp(a, "--model") == 0) {
            c->model = v;
        } else if (strcmp(a, "--api-key") == 0) {
            c->api_key = v;
        } else if (strcmp(a, "--concurrency") == 0) {
            if (benchargs_loads(a, v, true, c->loads, &c->n_loads, &e))
                goto bad;
            have_conc = true;
            c->is_open = false;
        } else if (strcmp(a, "--rate") == 0) {
            if (benchargs_loads(a, v, false, c->loads, &c->n_loads, &e))
                goto bad;
            have_rate = true;
            c->is_open = true;
        } else if (strcmp(a, "--num-requests") == 0) {
            if (parse_i64(v, 1, 100000000, &n)) {
                cli_errorf("bench: --num-requests wants an integer in 1..100000000, got \"%s\"", v);
                return ERR_INVAL;
            }
            c->num_requests = n;
        } else if (strcmp(a, "--duration") == 0 || strcmp(a, "--timeout") == 0) {
            if (parse_duration_ns(v, &ns) || ns == 0 || ns > 7ull * 86400 * 1000000000ull) {
                cli_errorf("bench: %s wants a duration (30s, 2m, 1h; at most a week), got \"%s\"",
                           a, v);
                return ERR_INVAL;
            }
            *(strcmp(a, "--duration") == 0 ? &c->duration_s : &c->timeout_s) = (double)ns / 1e9;
        } else if (strcmp(a, "--input-len") == 0) {
            if (benchargs_len(a, v, &c->in_mean, &c->in_sd, &e))
                goto bad;
        } else if (strcmp(a, "--output-len") == 0) {
            if (benchargs_len(a, v, &c->out_mean, &c->out_sd, &e))
                goto bad;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_i64(v, 0, INT64_MAX, &n)) {
                cli_errorf("bench: --seed wants a non-negative integer, got \"%s\"", v);
                return ERR_INVAL;
            }
            c->seed = (uint64_t)n;
        } else if (strcmp(a, "--prompts") == 0) {
            c->prompts_file = v;
        } else if (strcmp(a, "--shared-prefix-len") == 0) {
            if (parse_i64(v, 0, (int64_t)BENCH_LEN_MAX, &n)) {
                cli_errorf("bench: --shared-prefix-len wants an integer in 0..%.0f, got \"%s\"",
                           BENCH_LEN_MAX, v);
                return ERR_INVAL;
            }
            c->shared_prefix = (size_t)n;
        } else if (strcmp(a, "--slo") == 0) {
            if (benchargs_slo(v, &c->slo, &e))
                goto bad;
        } else if (strcmp(a, "--price-in") == 0) {
            if (benchargs_money(a, v, &c->price_in, &e))
                goto bad;
        } else if (strcmp(a, "--price-out") == 0) {
            if (benchargs_money(a, v, &c->price_out, &e))
                goto bad;
        } else if (strcmp(a, "--hourly-cost") == 0) {
            if (benchargs_money(a, v, &c->hourly, &e))
                goto bad;
        } else if (strcmp(a, "--temperature") == 0) {
            if (parse_f64(v, &c->temperature) || !(c->temperature >= 0 && c->temperature <= 2)) {
                cli_errorf("bench: --temperature wants a number in [0, 2], got \"%s\"", v);
                return ERR_INVAL;
            }
        } else if (strcmp(a, "--json") == 0) {
            *json_path = v;
        } else if (strcmp(a, "--html") == 0) {
            *html_path = v;
        } else {
            cli_errorf("bench: unknown flag %s (see ferry bench --help)", a);
            return ERR_INVAL;
        }
    }
    if (!c->url || !c->model) {
        cli_errorf("bench: --url and --model are required (see ferry bench --help)");
        return ERR_INVAL;
    }
    if (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0) {
        cli_errorf("bench: --url wants an http:// or https:// API root, got \"%s\"", c->url);
        return ERR_INVAL;
    }
    if (have_conc && have_rate) {
        cli_errorf("bench: give --concurrency or --rate, not both (one sweep per run)");
        return ERR_INVAL;
    }
    if (!have_conc && !have_rate) {
        c->loads[0] = 1;
        c->n_loads = 1;
    }
    if (!isnan(c->hourly) && (!isnan(c->price_in) || !isnan(c->price_out))) {
        cli_errorf("bench: give --price-in/--price-out (an API) or --hourly-cost (own hardware), "
                   "not both");
        return ERR_INVAL;
    }
    if (isnan(c->hourly) && (isnan(c->price_in) != isnan(c->price_out))) {
        cli_errorf("bench: --price-in and --price-out go together");
        return ERR_INVAL;
    }
    if (!c->num_requests && c->duration_s == 0)
        c->num_requests = 50;
    return 0;
bad:
    cli_errorf("bench: %s", e.text);
    return ERR_INVAL;
}

/* ---------------------------------------------------------------- main -- */

static int write_reports(bench_run *run, const char *json_path, const char *html_path)
{
    err_msg e;
    int rc = 0;
    if (json_path && bench_write_json(run, json_path, &e)) {
        cli_errorf("bench: %s", e.text);
        rc = 1;
    }
    if (html_path && bench_write_html(run, html_path, &e)) {
        cli_errorf("bench: %s", e.text);
        rc = 1;
    }
    return rc;
}

static void run_free(bench_run *run)
{
    for (size_t i = 0; i < run->n_points; i++) {
        free(run->points[i].recs);
        free(run->points[i].itl);
    }
    json_decref(run->server_models);
    free(run->command);
    free(run);
}

int cli_cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "compare") == 0)
        return bench_compare_main(argc - 1, argv + 1);
    bench_run *run = calloc(1, sizeof *run);
    if (!run) {
        cli_errorf("bench: out of memory");
        return 1;
    }
    const char *json_path = NULL, *html_path = NULL;
    int rc = parse_flags(argc, argv, &run->cfg, &json_path, &html_path);
    if (rc) {
        free(run);
        return rc > 0 ? 0 : 2;
    }
    bench b = {.run = run};
    run->command = join_argv(argc, argv);
    if (!run->command) {
        free(run);
        cli_errorf("bench: out of memory");
        return 1;
    }
    redact_key(run->command, run->cfg.api_key);
    clock_rfc3339_ms(clock_wall_ns(), run->started_at, sizeof run->started_at);
    err_msg e;
    if (run->cfg.prompts_file && benchargs_prompts_load(&b.pf, run->cfg.prompts_file, &e)) {
        cli_errorf("bench: %s", e.text);
        benchargs_prompts_free(&b.pf);
        run_free(run);
        return 2;
    }
    if (run->cfg.shared_prefix) {
        buf s;
        buf_init(&s, (size_t)64 << 20);
        uint64_t seed = run->cfg.seed ^ 0x5EED5EED5EED5EEDull;
        if (add_words(&s, &seed, run->cfg.shared_prefix)) {
            buf_deinit(&s);
            benchargs_prompts_free(&b.pf);
            run_free(run);
            cli_errorf("bench: out of memory");
            return 1;
        }
        b.shared = buf_steal(&s);
    }
    size_t ul = strlen(run->cfg.url);
    while (ul > 0 && run->cfg.url[ul - 1] == '/')
        ul--;
    snprintf(b.chat_url, sizeof b.chat_url, "%.*s/chat/completions", (int)MIN(ul, (size_t)2000),
             run->cfg.url);
    snprintf(b.models_url, sizeof b.models_url, "%.*s/models", (int)MIN(ul, (size_t)2000),
             run->cfg.url);
    httpc_config hc;
    httpc_config_default(&hc);
    hc.timeout_ms = (uint64_t)(run->cfg.timeout_s * 1000);
    if (httpc_new(&hc, &b.hc, &e)) {
        cli_errorf("bench: %s", e.text);
        free(b.shared);
        benchargs_prompts_free(&b.pf);
        run_free(run);
        return 1;
    }
    b.is_tty = isatty(STDERR_FILENO);
    g_stop = 0;
    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);

    fetch_models(&b);
    for (size_t i = 0; i < run->cfg.n_loads && !g_stop && !b.failed_submit; i++)
        if (run_point(&b, i) < 0)
            break;
    if (g_stop)
        run->interrupted = true; // also when Ctrl-C came before the first point
    sigaction(SIGINT, &old_sa, NULL);
    httpc_free(b.hc);
    free(b.shared);
    benchargs_prompts_free(&b.pf);

    bench_print_table(run, stdout);
    int wrc = write_reports(run, json_path, html_path);
    size_t ok = 0;
    for (size_t i = 0; i < run->n_points; i++)
        for (size_t k = 0; k < run->points[i].n_recs; k++)
            ok += run->points[i].recs[k].err == BENCH_OK;
    bool interrupted = run->interrupted;
    run_free(run);
    if (interrupted) {
        fprintf(stderr, "ferry: bench: interrupted; the reports hold what was measured\n");
        return 130;
    }
    return wrc ? 1 : ok ? 0 : 1;
}
