/*
 * cli/cmd_eval — `ferry eval`: run a JSONL data set against one or more
 * OpenAI-compatible targets, judge every answer with its assertions, and
 * report pass rates (Wilson 95% intervals, clustered by case with --repeat),
 * latency, tokens, cost, a per-tag breakdown, a paired comparison of targets
 * (won/lost/tied, McNemar's exact test, bootstrap interval of the pass-rate
 * difference) and go/no-go gates.
 * User guide: docs/eval.md. Pieces: cmd_eval.h.
 *
 * Execution: one thread, one httpc (libcurl multi). A run is (case, target,
 * repeat); up to --concurrency runs are in flight, each in a slot:
 *   stage 1  POST URL/chat/completions (messages) or URL/completions (prompt)
 *            with model, temperature, seed (+ repeat index), max_tokens, then
 *            the target's --params and the case's params merged on top;
 *   stage 2  for each `similar` assertion one POST /embeddings of
 *            [output, reference] on the --embed endpoint, and for each `judge`
 *            assertion one chat request to the --judge endpoint, all at once;
 *   stage 3  every assertion is decided in order; the run passes when it got
 *            an answer and every assertion passed; the slot takes the next run.
 * Runs are ordered repeat-major, then case, then target, so the targets share
 * the concurrency evenly and finish together.
 *
 * Exit status: 0 when every gate passed (or none was given), 1 when a gate
 * failed (each failed gate is named on stderr), 2 on usage or input errors,
 * 130 when interrupted (SIGINT; the reports still cover the finished runs).
 */
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "cli/cli.h"
#include "cli/cmd_eval.h"
#include "cli/evalstats.h"
#include "http/httpc.h"

#define EVAL_TARGETS_MAX 16
#define EVAL_CONCURRENCY_MAX 1024
#define EVAL_REPEAT_MAX 1000
#define EVAL_FAILURES_SHOWN 20
#define EVAL_JUDGE_MAX_TOKENS 256
#define EVAL_JUDGE_PROMPT_MAX ((size_t)16 << 20) // bytes of the judge's user message

/* An endpoint: a target, the embedder or the judge. */
typedef struct endpoint {
    char name[64];
    char *url;      // API root without trailing '/', owned
    char *model;    // owned
    char *key;      // owned, NULL when none
    json_t *params; // extra request fields (owned), NULL when none
    eval_prices price;
    bool has_price;
} endpoint;

typedef struct slot slot;

/* Context of one stage-2 request: which slot and which assertion. */
typedef struct sub {
    slot *s;
    size_t ai;
} sub;

struct slot {
    struct eval *ev;
    size_t run;     // index into ev->runs
    size_t pending; // requests of this run in flight
    bool busy;
    double score[EVAL_ASSERTS_MAX]; // similar: cosine
    int verdict[EVAL_ASSERTS_MAX];  // judge: 1 PASS, 0 FAIL, -1 no verdict, -2 request failed
    char *note[EVAL_ASSERTS_MAX];   // judge reason or error text (owned)
    sub subs[EVAL_ASSERTS_MAX];
};

typedef struct eval {
    eval_set set;
    endpoint targets[EVAL_TARGETS_MAX];
    size_t nt;
    endpoint embed, judge;
    bool has_embed, has_judge;
    double temperature;
    int64_t seed, max_tokens;
    size_t repeat, concurrency, resamples;
    uint64_t boot_seed, timeout_ms;
    eval_prices price;
    eval_gate gates[EVAL_GATES_MAX];
    size_t ngates;
    const char *json_path, *html_path, *data_path;
    bool quiet, is_tty;
    int argc;
    char **argv;

    eval_run *runs;
    size_t nruns, next, finished;
    slot *slots;
    httpc *hc;
    bool stopping;
    uint64_t t_start_ns, t_end_ns;
} eval;

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: ferry eval --data F.jsonl --target NAME=URL,MODEL[,KEY] [--target ...]\n"
        "                  [--seed S] [--temperature T] [--max-tokens N] [--params [NAME=]JSON]\n"
        "                  [--concurrency N] [--repeat K] [--timeout SECONDS]\n"
        "                  [--embed URL,MODEL[,KEY]] [--judge URL,MODEL[,KEY]]\n"
        "                  [--judge-params JSON] [--price-in USD] [--price-out USD]\n"
        "                  [--price NAME=IN,OUT] [--bootstrap N] [--bootstrap-seed S]\n"
        "                  [--gate METRIC>=X,...] [--json FILE] [--html FILE] [--quiet]\n"
        "\n"
        "Runs every case of the JSONL data set (format and assertions in docs/eval.md)\n"
        "on every target, --repeat times, with the same seed (S + repeat index) and\n"
        "temperature (default 0), and reports per target the pass rate with a Wilson\n"
        "95%% interval, latency p50/p99, tokens and cost, a per-tag breakdown, the\n"
        "failing cases with the assertion that failed, and for two or more targets a\n"
        "paired comparison of each against the first (won/lost/tied, McNemar's exact\n"
        "test, bootstrap 95%% interval of the pass-rate difference).\n"
        "  URL        the API root, e.g. http://127.0.0.1:8080/v1; KEY may be $VAR\n"
        "  --params   JSON object merged into every request of target NAME (or all)\n"
        "  --embed    the /v1/embeddings endpoint of `similar` assertions\n"
        "  --judge    the chat model of `judge` assertions (answers PASS or FAIL)\n"
        "  --price-in/--price-out  USD per 1M prompt/completion tokens (all targets);\n"
        "             --price NAME=IN,OUT for one target\n"
        "  --gate     pass_rate, pass_rate_lo, p50_ms, p99_ms, cost, cost_per_1k\n"
        "             (per 1000 completion tokens), cost_per_case, errors with >= <= > <;\n"
        "             every target must meet every gate, else exit 1\n"
        "Defaults: --seed 1 --temperature 0 --max-tokens 256 --concurrency 4\n"
        "--repeat 1 --timeout 300 --bootstrap 10000 --bootstrap-seed 1.\n");
}

/* ---------------------------------------------------------- options -- */

static void endpoint_free(endpoint *p)
{
    free(p->url);
    free(p->model);
    free(p->key);
    json_decref(p->params);
    memset(p, 0, sizeof *p);
}

/* Parses "URL,MODEL[,KEY]" into p (flag names the option in messages). */
static int parse_endpoint(const char *flag, const char *spec, endpoint *p)
{
    eval_endpoint_spec sp;
    err_msg e;
    if (eval_endpoint_parse(flag, spec, &sp, &e) != 0) {
        cli_errorf("eval: %s", e.text);
        return 2;
    }
    p->url = sp.url;
    p->model = sp.model;
    p->key = sp.key;
    return 0;
}

static int parse_target(eval *ev, const char *spec)
{
    if (ev->nt == EVAL_TARGETS_MAX) {
        cli_errorf("eval: more than %d targets", EVAL_TARGETS_MAX);
        return 2;
    }
    size_t nl;
    err_msg e;
    if (eval_target_name(spec, &nl, &e) != 0) {
        cli_errorf("eval: %s", e.text);
        return 2;
    }
    for (size_t t = 0; t < ev->nt; t++) {
        if (strlen(ev->targets[t].name) == nl && memcmp(ev->targets[t].name, spec, nl) == 0) {
            cli_errorf("eval: --target: the name \"%.*s\" is used twice", (int)nl, spec);
            return 2;
        }
    }
    endpoint *p = &ev->targets[ev->nt];
    memcpy(p->name, spec, nl);
    p->name[nl] = 0;
    ev->nt++;
    return parse_endpoint("--target", spec + nl + 1, p);
}

static endpoint *find_target(eval *ev, const char *name, size_t nl)
{
    for (size_t t = 0; t < ev->nt; t++)
        if (strlen(ev->targets[t].name) == nl && memcmp(ev->targets[t].name, name, nl) == 0)
            return &ev->targets[t];
    return NULL;
}

/* Parses a JSON object of extra request fields into *out; reserved keys are refused. */
static int parse_params_json(const char *flag, const char *text, json_t **out)
{
    err_msg e;
    if (eval_params_parse(flag, text, out, &e) != 0) {
        cli_errorf("eval: %s", e.text);
        return 2;
    }
    return 0;
}

/* "--params [NAME=]JSON": deferred until every --target is known. */
static int apply_params(eval *ev, const char *spec)
{
    if (spec[0] == '{') {
        for (size_t t = 0; t < ev->nt; t++)
            if (parse_params_json("--params", spec, &ev->targets[t].params))
                return 2;
        return 0;
    }
    const char *eq = strchr(spec, '=');
    endpoint *p = eq ? find_target(ev, spec, (size_t)(eq - spec)) : NULL;
    if (!p) {
        cli_errorf("eval: --params \"%s\": expected JSON or NAME=JSON with a --target NAME", spec);
        return 2;
    }
    return parse_params_json("--params", eq + 1, &p->params);
}

static int apply_price(eval *ev, const char *spec)
{
    const char *eq = strchr(spec, '=');
    endpoint *p = eq ? find_target(ev, spec, (size_t)(eq - spec)) : NULL;
    err_msg e;
    if (!p) {
        cli_errorf("eval: --price \"%s\": expected NAME=IN,OUT with a --target NAME", spec);
        return 2;
    }
    if (eval_price_parse(eq + 1, &p->price.in_per_m, &p->price.out_per_m, &e) != 0) {
        cli_errorf("eval: --price %s", e.text);
        return 2;
    }
    p->has_price = true;
    return 0;
}

static int num_opt(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (parse_i64(v, lo, hi, out) != 0) {
        cli_errorf("eval: %s \"%s\": expected an integer in [%" PRId64 ", %" PRId64 "]", flag, v,
                   lo, hi);
        return 2;
    }
    return 0;
}

static int real_opt(const char *flag, const char *v, double lo, double hi, double *out)
{
    if (parse_f64(v, out) != 0 || *out < lo || *out > hi) {
        cli_errorf("eval: %s \"%s\": expected a number in [%g, %g]", flag, v, lo, hi);
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------ requests -- */

/* One sentence for a failed request: "HTTP 404: model not found" or the transport error. */
static char *request_error(const httpc_result *res)
{
    char msg[400], inner[300];
    if (res->kind == HTTPC_HTTP)
        snprintf(msg, sizeof msg, "HTTP %ld: %s", res->status,
                 eval_error_message(res->body, res->body_len, inner, sizeof inner));
    else
        snprintf(msg, sizeof msg, "%s: %s", httpc_kind_name(res->kind), res->error);
    return strdup(eval_utf8_trim(msg));
}

static int submit(eval *ev, const endpoint *p, const char *path, json_t *body, httpc_done_fn fn,
                  void *ctx, err_msg *e)
{
    char url[2048];
    if ((size_t)snprintf(url, sizeof url, "%s%s", p->url, path) >= sizeof url)
        return err_set(e, ERR_TOO_LARGE, "the URL %s%s is too long", p->url, path);
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return err_set(e, ERR_NOMEM, "out of memory");
    httpc_request q = {.url = url,
                       .api_key = p->key,
                       .body = text,
                       .body_len = strlen(text),
                       .timeout_ms = ev->timeout_ms,
                       .on_done = fn,
                       .ctx = ctx};
    int64_t id = httpc_submit(ev->hc, &q, e);
    free(text);
    return id < 0 ? (int)id : 0;
}

static void finish_run(slot *s);
static void start_next(eval *ev, slot *s);

/* Stage 2 result: embeddings of [output, reference]. */
static void on_embed(void *ctx, const httpc_result *res)
{
    sub *b = ctx;
    slot *s = b->s;
    s->score[b->ai] = NAN;
    if (res->kind != HTTPC_OK) {
        s->note[b->ai] = request_error(res);
    } else {
        float *x;
        size_t n;
        err_msg e;
        if (eval_embeddings_parse(res->body, res->body_len, &x, &n, &e) != 0) {
            s->note[b->ai] = strdup(e.text);
        } else {
            s->score[b->ai] = evalstats_cosine(x, x + n, n);
            free(x);
        }
    }
    if (--s->pending == 0)
        finish_run(s);
}

/* Stage 2 result: the judge's answer. */
static void on_judge(void *ctx, const httpc_result *res)
{
    sub *b = ctx;
    slot *s = b->s;
    if (res->kind != HTTPC_OK) {
        s->verdict[b->ai] = -2;
        s->note[b->ai] = request_error(res);
    } else {
        err_msg e;
        if (eval_judge_answer_parse(res->body, res->body_len, &s->verdict[b->ai], &s->note[b->ai],
                                    &e) != 0) {
            s->verdict[b->ai] = -2;
            s->note[b->ai] = strdup(e.text);
        }
    }
    if (--s->pending == 0)
        finish_run(s);
}

/* The case's input as text for the judge: the prompt, or "role: content" lines. */
static int input_text(const eval_case *c, buf *b)
{
    if (c->prompt)
        return buf_append_str(b, c->prompt);
    int rc = 0;
    for (size_t i = 0; i < json_array_size(c->messages) && rc == 0; i++) {
        json_t *m = json_array_get(c->messages, i);
        json_t *content = json_object_get(m, "content");
        rc = buf_printf(b, "%s%s: ", i ? "\n" : "", json_string_value(json_object_get(m, "role")));
        if (rc == 0 && json_is_string(content)) {
            rc = buf_append_str(b, json_string_value(content));
        } else { // an array of parts: the text parts
            for (size_t k = 0; k < json_array_size(content) && rc == 0; k++) {
                json_t *t = json_object_get(json_array_get(content, k), "text");
                if (json_is_string(t))
                    rc = buf_append_str(b, json_string_value(t));
            }
        }
    }
    return rc;
}

static const char JUDGE_SYSTEM[] =
    "You are a strict evaluator. Decide whether the RESPONSE satisfies the RUBRIC, given the "
    "INPUT it answers (and the REFERENCE answer when one is shown). Reply with PASS or FAIL "
    "as the first word, then one sentence giving the reason.";

/* The judge's chat request; NULL when out of memory or past the prompt cap. */
static json_t *judge_body(const eval *ev, const eval_case *c, const eval_assert *a,
                          const char *output)
{
    buf u;
    buf_init(&u, EVAL_JUDGE_PROMPT_MAX);
    int rc = buf_printf(&u, "RUBRIC:\n%s\n\nINPUT:\n", a->value);
    if (rc == 0)
        rc = input_text(c, &u);
    if (rc == 0)
        rc = buf_printf(&u, "\n\nRESPONSE:\n%s\n", output);
    if (rc == 0 && c->reference)
        rc = buf_printf(&u, "\nREFERENCE:\n%s\n", c->reference);
    json_t *body = NULL;
    if (rc == 0)
        body = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:f, s:I, s:I}", "model",
                         ev->judge.model, "messages", "role", "system", "content", JUDGE_SYSTEM,
                         "role", "user", "content", u.data, "temperature", 0.0, "seed",
                         (json_int_t)ev->seed, "max_tokens", (json_int_t)EVAL_JUDGE_MAX_TOKENS);
    buf_deinit(&u);
    if (body && ev->judge.params)
        json_object_update(body, ev->judge.params);
    return body;
}

/* Stage 1 result: the target's answer. Starts stage 2 or finishes the run. */
static void on_answer(void *ctx, const httpc_result *res)
{
    slot *s = ctx;
    eval *ev = s->ev;
    eval_run *r = &ev->runs[s->run];
    size_t ci = s->run / (ev->nt * ev->repeat);
    const eval_case *c = &ev->set.cases[ci];
    r->latency_ms = (double)(res->t_done_ns - res->t_submit_ns) / 1e6;
    if (res->kind != HTTPC_OK) {
        r->error = true;
        r->fail_detail = request_error(res);
        finish_run(s);
        return;
    }
    eval_answer ans;
    err_msg pe;
    if (eval_answer_parse(res->body, res->body_len, c->messages != NULL, &ans, &pe) != 0) {
        r->error = true;
        r->fail_detail = strdup(pe.text);
        finish_run(s);
        return;
    }
    r->output = ans.text;
    r->prompt_tokens = ans.prompt_tokens;
    r->completion_tokens = ans.completion_tokens;
    /* stage 2: one request per similar / judge assertion */
    s->pending = 1; // held while submitting, so a synchronous failure cannot finish early
    for (size_t i = 0; i < c->n_asserts && !ev->stopping; i++) {
        const eval_assert *a = &c->asserts[i];
        json_t *body = NULL;
        const endpoint *p = NULL;
        const char *path = NULL;
        httpc_done_fn fn = NULL;
        if (a->kind == EVAL_SIMILAR && ev->has_embed) {
            const char *ref = a->value ? a->value : c->reference;
            body = json_pack("{s:s, s:[s, s]}", "model", ev->embed.model, "input", r->output, ref);
            if (body && ev->embed.params)
                json_object_update(body, ev->embed.params);
            p = &ev->embed;
            path = "/embeddings";
            fn = on_embed;
        } else if (a->kind == EVAL_JUDGE && ev->has_judge) {
            body = judge_body(ev, c, a, r->output);
            p = &ev->judge;
            path = "/chat/completions";
            fn = on_judge;
        } else {
            continue;
        }
        s->subs[i] = (sub){s, i};
        err_msg e;
        int rc = body ? submit(ev, p, path, body, fn, &s->subs[i], &e)
                      : err_set(&e, ERR_NOMEM, "out of memory or the judge prompt is too large");
        json_decref(body);
        if (rc) {
            s->note[i] = strdup(e.text);
            s->verdict[i] = -2;
            s->score[i] = NAN;
        } else {
            s->pending++;
        }
    }
    if (--s->pending == 0)
        finish_run(s);
}

/* Decides every assertion of the slot's run and records the result. */
static void finish_run(slot *s)
{
    eval *ev = s->ev;
    eval_run *r = &ev->runs[s->run];
    size_t ci = s->run / (ev->nt * ev->repeat);
    const eval_case *c = &ev->set.cases[ci];
    if (ev->stopping) { // interrupted: the run is left out of the report
        for (size_t i = 0; i < c->n_asserts; i++) {
            free(s->note[i]);
            s->note[i] = NULL;
        }
        s->busy = false;
        return;
    }
    r->done = true;
    r->assert_results = json_array();
    if (!r->error) {
        bool all = true;
        eval_output o = {r->output, strlen(r->output), r->latency_ms, r->completion_tokens};
        for (size_t i = 0; i < c->n_asserts; i++) {
            const eval_assert *a = &c->asserts[i];
            char detail[EVAL_DETAIL_MAX] = "";
            bool ok;
            json_t *item = json_pack("{s:s}", "type", eval_kind_name(a->kind));
            if (a->kind == EVAL_SIMILAR) {
                if (!ev->has_embed) {
                    ok = false;
                    snprintf(detail, sizeof detail, "no --embed endpoint given");
                } else if (s->note[i]) {
                    ok = false;
                    snprintf(detail, sizeof detail, "embeddings: %s", s->note[i]);
                } else {
                    ok = s->score[i] >= a->num;
                    json_object_set_new(item, "score", json_real(s->score[i]));
                    if (!ok)
                        snprintf(detail, sizeof detail, "cosine %.4f < %g", s->score[i], a->num);
                }
            } else if (a->kind == EVAL_JUDGE) {
                if (!ev->has_judge) {
                    ok = false;
                    snprintf(detail, sizeof detail, "no --judge endpoint given");
                } else {
                    int vd = s->verdict[i];
                    ok = vd == 1;
                    const char *note = s->note[i] ? s->note[i] : "";
                    if (vd == 1)
                        json_object_set_new(item, "reason", json_string(note));
                    else if (vd == 0)
                        snprintf(detail, sizeof detail, "judge: FAIL: %s", note);
                    else if (vd == -1)
                        snprintf(detail, sizeof detail,
                                 "judge answered neither PASS nor FAIL: \"%.80s\"", note);
                    else
                        snprintf(detail, sizeof detail, "judge request: %s", note);
                }
            } else {
                ok = eval_check_local(a, &o, detail, sizeof detail);
            }
            eval_utf8_trim(detail);
            if (item) {
                json_object_set_new(item, "pass", json_boolean(ok));
                if (!ok)
                    json_object_set_new(item, "detail", json_string(detail));
                json_array_append_new(r->assert_results, item);
            }
            if (!ok && all) {
                char first[EVAL_DETAIL_MAX + 40];
                snprintf(first, sizeof first, "%s: %s", eval_kind_name(a->kind), detail);
                r->fail_detail = strdup(eval_utf8_trim(first));
                all = false;
            }
        }
        r->pass = all;
    }
    for (size_t i = 0; i < c->n_asserts; i++) {
        free(s->note[i]);
        s->note[i] = NULL;
    }
    ev->finished++;
    if (ev->is_tty && !ev->quiet) {
        fprintf(stderr, "\r%zu/%zu runs", ev->finished, ev->nruns);
        fflush(stderr);
    }
    s->busy = false;
    start_next(ev, s);
}

static json_t *answer_body(const eval *ev, const eval_case *c, const endpoint *t, size_t repeat)
{
    json_t *b = json_pack("{s:s, s:f, s:I, s:I}", "model", t->model, "temperature", ev->temperature,
                          "seed", (json_int_t)ev->seed + (json_int_t)repeat, "max_tokens",
                          (json_int_t)ev->max_tokens);
    if (!b)
        return NULL;
    if (c->messages)
        json_object_set(b, "messages", c->messages);
    else
        json_object_set_new(b, "prompt", json_string(c->prompt));
    if (t->params)
        json_object_update(b, t->params);
    if (c->params)
        json_object_update(b, c->params);
    return b;
}

/* Puts the next run into slot s (a loop, so refused submits do not recurse). */
static void start_next(eval *ev, slot *s)
{
    while (!ev->stopping && ev->next < ev->nruns) {
        /* run order: repeat-major, then case, then target; index layout is
         * (case, target, repeat) as eval_run documents */
        size_t k = ev->next++;
        size_t per_rep = ev->set.n * ev->nt;
        size_t rep = k / per_rep, ci = (k % per_rep) / ev->nt, t = k % ev->nt;
        size_t idx = (ci * ev->nt + t) * ev->repeat + rep;
        const eval_case *c = &ev->set.cases[ci];
        s->run = idx;
        s->busy = true;
        s->pending = 0;
        for (size_t i = 0; i < EVAL_ASSERTS_MAX; i++) {
            s->score[i] = NAN;
            s->verdict[i] = -2;
        }
        json_t *body = answer_body(ev, c, &ev->targets[t], rep);
        err_msg e;
        int rc =
            body ? submit(ev, &ev->targets[t], c->messages ? "/chat/completions" : "/completions",
                          body, on_answer, s, &e)
                 : err_set(&e, ERR_NOMEM, "out of memory");
        json_decref(body);
        if (rc == 0)
            return;
        eval_run *r = &ev->runs[idx];
        r->done = true;
        r->error = true;
        r->fail_detail = strdup(e.text);
        r->assert_results = json_array();
        ev->finished++;
        s->busy = false;
    }
}

/* ------------------------------------------------------------- report -- */

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static const eval_prices *price_of(const eval *ev, size_t t)
{
    return ev->targets[t].has_price ? &ev->targets[t].price : &ev->price;
}

static json_t *target_json(const eval *ev, size_t t, const eval_target_sum *ts)
{
    const endpoint *p = &ev->targets[t];
    json_t *tags = json_object();
    for (size_t i = 0; i < ts->n_tags; i++) {
        const eval_tag_sum *g = &ts->tags[i];
        json_object_set_new(tags, g->tag,
                            json_pack("{s:I, s:I, s:f, s:[f, f], s:f}", "runs", (json_int_t)g->runs,
                                      "passed", (json_int_t)g->passed, "pass_rate", g->rate, "ci95",
                                      g->lo, g->hi, "ci95_n_eff", g->n_eff));
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:[f, f], s:s, s:f, s:{s:o, s:o, s:o},"
        " s:{s:I, s:I}, s:{s:f, s:f, s:f, s:f, s:f}, s:o}",
        "name", p->name, "url", p->url, "model", p->model, "runs", (json_int_t)ts->runs, "passed",
        (json_int_t)ts->passed, "errors", (json_int_t)ts->errors, "pass_rate", ts->rate, "ci95",
        ts->lo, ts->hi, "ci95_method", ev->repeat > 1 ? "wilson-clustered" : "wilson", "ci95_n_eff",
        ts->n_eff, "latency_ms", "p50", num_or_null(ts->p50_ms), "p99", num_or_null(ts->p99_ms),
        "mean", num_or_null(ts->mean_ms), "tokens", "prompt", (json_int_t)ts->prompt_tokens,
        "completion", (json_int_t)ts->completion_tokens, "cost", "total", ts->cost, "per_1k",
        ts->cost_per_1k, "per_case", ts->cost_per_case, "price_in_per_m", price_of(ev, t)->in_per_m,
        "price_out_per_m", price_of(ev, t)->out_per_m, "tags", tags);
    return o;
}

static json_t *pair_json(const eval *ev, const eval_pair_sum *p)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:f}, s:f,"
                     " s:{s:I, s:I, s:[f, f]}}",
                     "a", ev->targets[p->a].name, "b", ev->targets[p->b].name, "cases",
                     (json_int_t)p->cases, "won", (json_int_t)p->won, "lost", (json_int_t)p->lost,
                     "tied", (json_int_t)p->tied, "mcnemar", "only_a", (json_int_t)p->only_a,
                     "only_b", (json_int_t)p->only_b, "p_value", p->p_value, "diff", p->diff,
                     "bootstrap", "resamples", (json_int_t)p->resamples, "seed",
                     (json_int_t)p->seed, "ci95", p->lo, p->hi);
}

static json_t *runs_json(const eval *ev)
{
    json_t *a = json_array();
    for (size_t ci = 0; ci < ev->set.n; ci++) {
        const eval_case *c = &ev->set.cases[ci];
        for (size_t t = 0; t < ev->nt; t++) {
            for (size_t rep = 0; rep < ev->repeat; rep++) {
                const eval_run *r = &ev->runs[(ci * ev->nt + t) * ev->repeat + rep];
                if (!r->done)
                    continue;
                json_t *o = json_pack(
                    "{s:s, s:I, s:s, s:I, s:b, s:b, s:o, s:o, s:I, s:I, s:o, s:O}", "case", c->id,
                    "line", (json_int_t)c->line, "target", ev->targets[t].name, "repeat",
                    (json_int_t)rep, "pass", r->pass, "error", r->error, "output",
                    r->output ? json_string(r->output) : json_null(), "latency_ms",
                    num_or_null(r->latency_ms), "prompt_tokens", (json_int_t)r->prompt_tokens,
                    "completion_tokens", (json_int_t)r->completion_tokens, "failure",
                    r->fail_detail ? json_string(r->fail_detail) : json_null(), "assertions",
                    r->assert_results ? r->assert_results : json_null());
                if (o)
                    json_array_append_new(a, o);
            }
        }
    }
    return a;
}

typedef struct report {
    eval_target_sum sums[EVAL_TARGETS_MAX];
    eval_pair_sum pairs[EVAL_TARGETS_MAX];
    size_t npairs;
    json_t *gates; // [{gate, target, value, pass}]
    size_t gates_failed;
} report;

static void print_text(const eval *ev, const report *rp, bool interrupted)
{
    printf("ferry eval: %s, %zu cases x %zu target%s x %zu repeat%s (seed %" PRId64
           ", temperature %g)%s\n\n",
           ev->data_path, ev->set.n, ev->nt, ev->nt == 1 ? "" : "s", ev->repeat,
           ev->repeat == 1 ? "" : "s", ev->seed, ev->temperature,
           interrupted ? " -- INTERRUPTED, partial" : "");
    printf("%-16s %9s %6s %17s %9s %9s %8s %8s %12s %12s\n", "target", "pass", "rate", "95% CI",
           "p50 ms", "p99 ms", "tok in", "tok out", "cost", "cost/1K out");
    for (size_t t = 0; t < ev->nt; t++) {
        const eval_target_sum *s = &rp->sums[t];
        char pass[32], ci[40];
        snprintf(pass, sizeof pass, "%zu/%zu", s->passed, s->runs);
        snprintf(ci, sizeof ci, "[%.3f, %.3f]", s->lo, s->hi);
        printf("%-16s %9s %6.3f %17s %9.1f %9.1f %8" PRId64 " %8" PRId64 " %12.6f %12.6f\n",
               ev->targets[t].name, pass, s->rate, ci, s->p50_ms, s->p99_ms, s->prompt_tokens,
               s->completion_tokens, s->cost, s->cost_per_1k);
        if (s->errors)
            printf("%-16s %zu run%s got no answer\n", "", s->errors, s->errors == 1 ? "" : "s");
    }
    if (ev->repeat > 1) {
        printf("(95%% CI clustered by case: %zu repeats of a case are not independent;"
               " effective sample size",
               ev->repeat);
        for (size_t t = 0; t < ev->nt; t++)
            printf("%s %s %.1f", t ? "," : "", ev->targets[t].name, rp->sums[t].n_eff);
        printf(" of %zu runs)\n", ev->set.n * ev->repeat);
    }
    if (rp->sums[0].n_tags) {
        printf("\nby tag (passed/runs, rate)\n%-20s", "tag");
        for (size_t t = 0; t < ev->nt; t++)
            printf(" %18s", ev->targets[t].name);
        printf("\n");
        for (size_t i = 0; i < rp->sums[0].n_tags; i++) {
            printf("%-20s", rp->sums[0].tags[i].tag);
            for (size_t t = 0; t < ev->nt; t++) {
                const eval_tag_sum *g = &rp->sums[t].tags[i];
                char cell[48];
                snprintf(cell, sizeof cell, "%zu/%zu %.3f", g->passed, g->runs, g->rate);
                printf(" %18s", cell);
            }
            printf("\n");
        }
    }
    for (size_t i = 0; i < rp->npairs; i++) {
        const eval_pair_sum *p = &rp->pairs[i];
        printf("\npaired: %s vs %s over %zu cases: won %zu, lost %zu, tied %zu\n",
               ev->targets[p->a].name, ev->targets[p->b].name, p->cases, p->won, p->lost, p->tied);
        printf("  McNemar exact p = %.4g (discordant: %zu pass only on %s, %zu only on %s)\n",
               p->p_value, p->only_a, ev->targets[p->a].name, p->only_b, ev->targets[p->b].name);
        printf("  pass-rate difference %+.3f, bootstrap 95%% CI [%+.3f, %+.3f] (%zu resamples, "
               "seed %" PRIu64 ")\n",
               p->diff, p->lo, p->hi, p->resamples, p->seed);
    }
    size_t nfail = 0;
    for (size_t k = 0; k < ev->nruns; k++)
        nfail += ev->runs[k].done && !ev->runs[k].pass;
    if (nfail) {
        printf("\nfailing runs (%zu%s):\n", nfail,
               nfail > EVAL_FAILURES_SHOWN ? ", first 20; all in --json" : "");
        size_t shown = 0;
        for (size_t ci = 0; ci < ev->set.n && shown < EVAL_FAILURES_SHOWN; ci++) {
            for (size_t t = 0; t < ev->nt && shown < EVAL_FAILURES_SHOWN; t++) {
                for (size_t rep = 0; rep < ev->repeat && shown < EVAL_FAILURES_SHOWN; rep++) {
                    const eval_run *r = &ev->runs[(ci * ev->nt + t) * ev->repeat + rep];
                    if (!r->done || r->pass)
                        continue;
                    const eval_case *c = &ev->set.cases[ci];
                    printf("  %-12s case %s (line %zu", ev->targets[t].name, c->id, c->line);
                    if (ev->repeat > 1)
                        printf(", repeat %zu", rep);
                    printf("): %s\n", r->fail_detail ? r->fail_detail : "failed");
                    shown++;
                }
            }
        }
    }
    if (ev->ngates) {
        printf("\ngates:\n");
        for (size_t i = 0; i < json_array_size(rp->gates); i++) {
            json_t *g = json_array_get(rp->gates, i);
            printf("  %-28s %-16s %12.6g  %s\n", json_string_value(json_object_get(g, "gate")),
                   json_string_value(json_object_get(g, "target")),
                   json_number_value(json_object_get(g, "value")),
                   json_is_true(json_object_get(g, "pass")) ? "ok" : "FAILED");
        }
    }
    fflush(stdout);
}

/* argv[i] as a JSON string, with the KEY of an endpoint spec (the third
 * comma-separated field of --target/--embed/--judge values) replaced, unless
 * it names an environment variable: the report must not carry secrets. */
static json_t *redacted_arg(char **argv, int i)
{
    const char *a = argv[i];
    bool spec =
        i > 0 && (strcmp(argv[i - 1], "--target") == 0 || strcmp(argv[i - 1], "--embed") == 0 ||
                  strcmp(argv[i - 1], "--judge") == 0);
    const char *c1 = spec ? strchr(a, ',') : NULL;
    const char *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c2 || !c2[1] || c2[1] == '$')
        return json_string(a);
    char out[2048];
    snprintf(out, sizeof out, "%.*s,<redacted>", (int)(c2 - a), a);
    return json_string(out);
}

/* The whole report as JSON (the --json file; the HTML is drawn from it). NULL on OOM. */
static json_t *report_json(const eval *ev, const report *rp, bool interrupted)
{
    json_t *argv = json_array();
    for (int i = 0; i < ev->argc; i++)
        json_array_append_new(argv, redacted_arg(ev->argv, i));
    json_t *targets = json_array(), *pairs = json_array();
    for (size_t t = 0; t < ev->nt; t++)
        json_array_append_new(targets, target_json(ev, t, &rp->sums[t]));
    for (size_t i = 0; i < rp->npairs; i++)
        json_array_append_new(pairs, pair_json(ev, &rp->pairs[i]));
    return json_pack(
        "{s:o, s:s, s:{s:I, s:f, s:I, s:I, s:I, s:I}, s:I, s:b, s:f, s:o, s:o, s:O, s:b,"
        " s:o}",
        "command", argv, "data", ev->data_path, "config", "seed", (json_int_t)ev->seed,
        "temperature", ev->temperature, "max_tokens", (json_int_t)ev->max_tokens, "repeat",
        (json_int_t)ev->repeat, "concurrency", (json_int_t)ev->concurrency, "timeout_ms",
        (json_int_t)ev->timeout_ms, "cases", (json_int_t)ev->set.n, "interrupted", interrupted,
        "duration_s", (double)(ev->t_end_ns - ev->t_start_ns) / 1e9, "targets", targets,
        "comparisons", pairs, "gates", rp->gates, "passed", rp->gates_failed == 0, "runs",
        runs_json(ev));
}

static int write_reports(const eval *ev, const report *rp, bool interrupted)
{
    json_t *o = report_json(ev, rp, interrupted);
    if (!o) {
        cli_errorf("eval: out of memory building the report");
        return 2;
    }
    int ret = 0;
    if (ev->json_path &&
        json_dump_file(o, ev->json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(10)) != 0) {
        cli_errorf("eval: cannot write %s", ev->json_path);
        ret = 2;
    }
    err_msg e;
    if (ev->html_path && eval_write_html(o, ev->html_path, &e) != 0) {
        cli_errorf("eval: %s", e.text);
        ret = 2;
    }
    json_decref(o);
    return ret;
}

/* --------------------------------------------------------------- main -- */

static void eval_free(eval *ev)
{
    for (size_t k = 0; k < ev->nruns && ev->runs; k++) {
        free(ev->runs[k].output);
        free(ev->runs[k].fail_detail);
        json_decref(ev->runs[k].assert_results);
    }
    free(ev->runs);
    free(ev->slots);
    for (size_t t = 0; t < ev->nt; t++)
        endpoint_free(&ev->targets[t]);
    endpoint_free(&ev->embed);
    endpoint_free(&ev->judge);
    eval_set_free(&ev->set);
}

static int parse_args(eval *ev, int argc, char **argv)
{
    const char *params[EVAL_TARGETS_MAX + 1], *prices[EVAL_TARGETS_MAX];
    size_t nparams = 0, nprices = 0;
    int64_t x;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--quiet") == 0) {
            ev->quiet = true;
            continue;
        }
        if (i + 1 >= argc) {
            cli_errorf("eval: %s needs a value (see ferry eval --help)", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(a, "--data") == 0)
            ev->data_path = v;
        else if (strcmp(a, "--target") == 0)
            rc = parse_target(ev, v);
        else if (strcmp(a, "--seed") == 0)
            rc = num_opt(a, v, 0, INT64_MAX / 2, &ev->seed);
        else if (strcmp(a, "--temperature") == 0)
            rc = real_opt(a, v, 0, 2, &ev->temperature);
        else if (strcmp(a, "--max-tokens") == 0)
            rc = num_opt(a, v, 1, 1 << 20, &ev->max_tokens);
        else if (strcmp(a, "--concurrency") == 0) {
            rc = num_opt(a, v, 1, EVAL_CONCURRENCY_MAX, &x);
            ev->concurrency = (size_t)x;
        } else if (strcmp(a, "--repeat") == 0) {
            rc = num_opt(a, v, 1, EVAL_REPEAT_MAX, &x);
            ev->repeat = (size_t)x;
        } else if (strcmp(a, "--timeout") == 0) {
            double s;
            rc = real_opt(a, v, 0.001, 86400, &s);
            ev->timeout_ms = (uint64_t)(s * 1000);
        } else if (strcmp(a, "--params") == 0) {
            if (nparams == ARRAY_LEN(params)) {
                cli_errorf("eval: too many --params");
                return 2;
            }
            params[nparams++] = v;
        } else if (strcmp(a, "--price") == 0) {
            if (nprices == ARRAY_LEN(prices)) {
                cli_errorf("eval: too many --price");
                return 2;
            }
            prices[nprices++] = v;
        } else if (strcmp(a, "--embed") == 0) {
            endpoint_free(&ev->embed);
            rc = parse_endpoint(a, v, &ev->embed);
            ev->has_embed = rc == 0;
        } else if (strcmp(a, "--judge") == 0) {
            endpoint_free(&ev->judge);
            rc = parse_endpoint(a, v, &ev->judge);
            ev->has_judge = rc == 0;
        } else if (strcmp(a, "--judge-params") == 0)
            rc = parse_params_json(a, v, &ev->judge.params);
        else if (strcmp(a, "--price-in") == 0)
            rc = real_opt(a, v, 0, 1e9, &ev->price.in_per_m);
        else if (strcmp(a, "--price-out") == 0)
            rc = real_opt(a, v, 0, 1e9, &ev->price.out_per_m);
        else if (strcmp(a, "--bootstrap") == 0) {
            rc = num_opt(a, v, 1, EVALSTATS_BOOTSTRAP_MAX, &x);
            ev->resamples = (size_t)x;
        } else if (strcmp(a, "--bootstrap-seed") == 0) {
            rc = num_opt(a, v, 0, INT64_MAX, &x);
            ev->boot_seed = (uint64_t)x;
        } else if (strcmp(a, "--gate") == 0) {
            err_msg e;
            if (eval_gates_parse(v, ev->gates, &ev->ngates, &e) != 0) {
                cli_errorf("eval: %s", e.text);
                return 2;
            }
        } else if (strcmp(a, "--json") == 0)
            ev->json_path = v;
        else if (strcmp(a, "--html") == 0)
            ev->html_path = v;
        else {
            cli_errorf("eval: unknown option %s (see ferry eval --help)", a);
            return 2;
        }
        if (rc)
            return rc;
    }
    if (!ev->data_path || ev->nt == 0) {
        cli_errorf("eval: --data and at least one --target are required (see ferry eval --help)");
        return 2;
    }
    if (ev->judge.params && !ev->has_judge) {
        cli_errorf("eval: --judge-params without --judge");
        return 2;
    }
    for (size_t i = 0; i < nparams; i++)
        if (apply_params(ev, params[i]))
            return 2;
    for (size_t i = 0; i < nprices; i++)
        if (apply_price(ev, prices[i]))
            return 2;
    return 0;
}

static int build_report(eval *ev, report *rp)
{
    memset(rp, 0, sizeof *rp);
    for (size_t t = 0; t < ev->nt; t++)
        if (eval_summarize_target(&ev->set, ev->runs, ev->nt, t, ev->repeat, price_of(ev, t),
                                  &rp->sums[t]) != 0)
            return ERR_NOMEM;
    for (size_t t = 1; t < ev->nt; t++) {
        /* each target against the first (the baseline): diff = target - baseline */
        int rc = eval_pair(&ev->set, ev->runs, ev->nt, t, 0, ev->repeat, ev->resamples,
                           ev->boot_seed, &rp->pairs[rp->npairs]);
        if (rc == ERR_NOT_FOUND)
            continue; // interrupted before any case finished on both
        if (rc)
            return rc;
        rp->npairs++;
    }
    rp->gates = json_array();
    for (size_t g = 0; g < ev->ngates; g++) {
        for (size_t t = 0; t < ev->nt; t++) {
            double v = eval_metric_value(&rp->sums[t], ev->gates[g].metric);
            bool ok = eval_gate_ok(&ev->gates[g], v);
            rp->gates_failed += !ok;
            json_array_append_new(
                rp->gates, json_pack("{s:s, s:s, s:s, s:o, s:b}", "gate", ev->gates[g].text,
                                     "metric", eval_metric_name(ev->gates[g].metric), "target",
                                     ev->targets[t].name, "value", num_or_null(v), "pass", ok));
        }
    }
    return 0;
}

static void report_free(eval *ev, report *rp)
{
    for (size_t t = 0; t < ev->nt; t++)
        eval_target_sum_deinit(&rp->sums[t]);
    json_decref(rp->gates);
}

int cli_cmd_eval(int argc, char **argv)
{
    eval ev;
    memset(&ev, 0, sizeof ev);
    ev.seed = 1;
    ev.max_tokens = 256;
    ev.concurrency = 4;
    ev.repeat = 1;
    ev.resamples = 10000;
    ev.boot_seed = 1;
    ev.timeout_ms = 300000;
    ev.argc = argc;
    ev.argv = argv;
    int rc = parse_args(&ev, argc, argv);
    if (rc) {
        eval_free(&ev);
        return rc < 0 ? 0 : rc;
    }
    err_msg e;
    if (eval_load_file(ev.data_path, &ev.set, &e) != 0) {
        cli_errorf("eval: %s", e.text);
        eval_free(&ev);
        return 2;
    }
    for (size_t c = 0; c < ev.set.n; c++) {
        if (ev.set.cases[c].needs_embed && !ev.has_embed) {
            cli_errorf("eval: %s:%zu: a `similar` assertion needs --embed URL,MODEL[,KEY]",
                       ev.data_path, ev.set.cases[c].line);
            eval_free(&ev);
            return 2;
        }
        if (ev.set.cases[c].needs_judge && !ev.has_judge) {
            cli_errorf("eval: %s:%zu: a `judge` assertion needs --judge URL,MODEL[,KEY]",
                       ev.data_path, ev.set.cases[c].line);
            eval_free(&ev);
            return 2;
        }
    }
    size_t n;
    if (!size_mul_ok(ev.set.n, ev.nt, &n) || !size_mul_ok(n, ev.repeat, &ev.nruns) ||
        !(ev.runs = calloc(ev.nruns, sizeof *ev.runs)) ||
        !(ev.slots = calloc(ev.concurrency, sizeof *ev.slots))) {
        cli_errorf("eval: out of memory for %zu runs", ev.nruns);
        eval_free(&ev);
        return 2;
    }
    httpc_config hcfg;
    httpc_config_default(&hcfg);
    if (httpc_new(&hcfg, &ev.hc, &e) != 0) {
        cli_errorf("eval: %s", e.text);
        eval_free(&ev);
        return 2;
    }
    ev.is_tty = isatty(STDERR_FILENO);
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    g_interrupted = 0;

    ev.t_start_ns = clock_mono_ns();
    for (size_t i = 0; i < ev.concurrency; i++) {
        ev.slots[i].ev = &ev;
        start_next(&ev, &ev.slots[i]);
    }
    int ret = 0;
    while (httpc_in_flight(ev.hc) > 0) {
        if (g_interrupted) {
            ev.stopping = true;
            httpc_cancel_all(ev.hc);
            break;
        }
        if (httpc_run(ev.hc, 200, &e) < 0) {
            cli_errorf("eval: %s", e.text);
            ev.stopping = true;
            httpc_cancel_all(ev.hc);
            ret = 2;
            break;
        }
    }
    ev.t_end_ns = clock_mono_ns();
    httpc_free(ev.hc);
    ev.hc = NULL;
    sigaction(SIGINT, &old, NULL);
    if (ev.is_tty && !ev.quiet)
        fputc('\n', stderr);
    bool interrupted = g_interrupted != 0;

    report rp;
    if (build_report(&ev, &rp) != 0) {
        cli_errorf("eval: out of memory building the report");
        report_free(&ev, &rp);
        eval_free(&ev);
        return 2;
    }
    if (!ev.quiet)
        print_text(&ev, &rp, interrupted);
    if ((ev.json_path || ev.html_path) && write_reports(&ev, &rp, interrupted) != 0)
        ret = 2;
    for (size_t i = 0; i < json_array_size(rp.gates); i++) {
        json_t *g = json_array_get(rp.gates, i);
        if (json_is_true(json_object_get(g, "pass")))
            continue;
        json_t *val = json_object_get(g, "value");
        char vb[48];
        if (json_is_number(val))
            snprintf(vb, sizeof vb, "%.6g", json_number_value(val));
        else
            snprintf(vb, sizeof vb, "no value");
        cli_errorf("eval: gate failed: %s on target %s (%s)",
                   json_string_value(json_object_get(g, "gate")),
                   json_string_value(json_object_get(g, "target")), vb);
    }
    if (ret == 0 && rp.gates_failed)
        ret = 1;
    if (interrupted)
        ret = 130;
    report_free(&ev, &rp);
    eval_free(&ev);
    return ret;
}
