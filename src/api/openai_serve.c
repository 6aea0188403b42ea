/*
 * api/openai_serve — OpenAI-compatible handlers over the local schedulers.
 * See openai_serve.h for the flow and the request-context ownership rules.
 */
#include "api/openai_serve.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api.h"
#include "api/collections.h"
#include "api/openai.h"
#include "base/buf.h"
#include "base/log.h"
#include "gateway/gateway.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/tensor.h"
#include "model/tok.h"

#define ANSWER_MAX ((size_t)16 << 20)      // bytes of a non-streamed answer

typedef struct api_model {
    char name[128];
    model *m;
    gguf_file *g;
    tok_vocab *vocab;
    sched *s;
    gw_engine *eng; // the scheduler behind the backend seam (gateway/)
    chat_family fam;
    bool is_fam_fallback;
    size_t ctx;
    char quant[24];
    int64_t created;
} api_model;

struct api_models {
    api_model v[API_MODELS_MAX];
    size_t n;
};

/* ------------------------------------------------------------ registry -- */

/* The quantization a file mostly uses: general.file_type when present, else
 * the type of the first layer's query weight. */
static void quant_name(const gguf_file *g, char *out, size_t cap)
{
    static const struct {
        int64_t ft;
        const char *name;
    } ftypes[] = {{0, "f32"},   {1, "f16"},    {2, "q4_0"},   {7, "q8_0"},  {14, "q4_K_S"},
                  {15, "q4_K_M"}, {18, "q6_K"}, {32, "bf16"}};
    int64_t ft;
    err_msg e;
    if (gguf_get_int(g, "general.file_type", 0, 1 << 20, &ft, &e) == 0) {
        for (size_t i = 0; i < ARRAY_LEN(ftypes); i++) {
            if (ftypes[i].ft == ft) {
                snprintf(out, cap, "%s", ftypes[i].name);
                return;
            }
        }
    }
    for (size_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (str_eq_cstr(t->name, "blk.0.attn_q.weight")) {
            snprintf(out, cap, "%s", tensor_type_name(t->type));
            return;
        }
    }
    snprintf(out, cap, "unknown");
}

static void model_deinit(api_model *am)
{
    gw_engine_free(am->eng);
    sched_free(am->s);
    tok_vocab_free(am->vocab);
    gguf_close(am->g);
    model_unref(am->m);
    memset(am, 0, sizeof *am);
}

static int model_init(api_model *am, const api_model_spec *sp, const sched_config *base,
                      err_msg *e)
{
    int rc;
    if (!sp->name || !*sp->name || strlen(sp->name) >= sizeof am->name)
        return err_set(e, ERR_INVAL, "model name \"%s\" must be 1 to %zu bytes",
                       sp->name ? sp->name : "", sizeof am->name - 1);
    snprintf(am->name, sizeof am->name, "%s", sp->name);
    if ((rc = model_load(sp->path, &am->m, e)) != 0)
        return rc;
    if ((rc = gguf_open(sp->path, &am->g, e)) != 0)
        return rc;
    if ((rc = tok_vocab_from_gguf(am->g, &am->vocab, e)) != 0)
        return rc;
    if (sp->chat_template) {
        if (chat_family_parse(sp->chat_template, &am->fam) != 0)
            return err_set(e, ERR_INVAL,
                           "model %s: chat_template \"%s\" is not one of chatml, qwen, llama2, "
                           "llama3, mistral, zephyr, gemma, phi3",
                           am->name, sp->chat_template);
    } else {
        str t = {0};
        err_msg ignore;
        bool has = gguf_get_str(am->g, "tokenizer.chat_template", &t, &ignore) == 0;
        char *tmpl = has ? strndup(t.p, t.n) : NULL;
        am->is_fam_fallback = !chat_detect(tmpl, &am->fam);
        free(tmpl);
        if (am->is_fam_fallback)
            LOG_WARN("api", "model %s: %s chat template; using chatml", am->name,
                     has ? "unrecognised" : "no");
    }
    quant_name(am->g, am->quant, sizeof am->quant);
    sched_config cfg = *base;
    cfg.vocab = am->vocab;
    cfg.name = am->name;
    if ((rc = sched_new(am->m, &cfg, &am->s, e)) != 0)
        return rc;
    if ((rc = gw_engine_new(am->s, am->vocab, am->fam, &am->eng, e)) != 0)
        return rc;
    am->ctx = sched_max_ctx(am->s);
    am->created = (int64_t)time(NULL);
    return 0;
}

int api_models_load(const api_model_spec *specs, size_t n, const sched_config *base,
                    api_models **out, err_msg *e)
{
    *out = NULL;
    if (n == 0 || n > API_MODELS_MAX)
        return err_set(e, ERR_INVAL, "%zu models given; 1 to %d can be served", n,
                       API_MODELS_MAX);
    if (n > 1 && base->pool)
        return err_set(e, ERR_INVAL, "a compute pool cannot be shared by %zu schedulers", n);
    api_models *ms = calloc(1, sizeof *ms);
    if (!ms)
        return err_set(e, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (specs[j].name && specs[i].name && strcmp(specs[i].name, specs[j].name) == 0) {
                api_models_free(ms);
                return err_set(e, ERR_INVAL, "model name \"%s\" is given twice", specs[i].name);
            }
        int rc = model_init(&ms->v[i], &specs[i], base, e);
        if (rc != 0) {
            model_deinit(&ms->v[i]);
            api_models_free(ms);
            return rc;
        }
        ms->n++;
        LOG_INFO("api", "model %s: %s, context %zu, %s, chat template %s", ms->v[i].name,
                 specs[i].path, ms->v[i].ctx, ms->v[i].quant, chat_family_name(ms->v[i].fam));
    }
    *out = ms;
    return 0;
}

void api_models_free(api_models *ms)
{
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++)
        model_deinit(&ms->v[i]);
    free(ms);
}

size_t api_models_count(const api_models *ms)
{
    return ms->n;
}

sched *api_models_sched(const api_models *ms, size_t i)
{
    return ms->v[i].s;
}

const char *api_models_name(const api_models *ms, size_t i)
{
    return ms->v[i].name;
}

int api_models_backend(const api_models *ms, const char *name, fr_backend *out)
{
    for (size_t i = 0; ms && i < ms->n; i++)
        if (strcmp(ms->v[i].name, name) == 0) {
            *out = gw_engine_backend(ms->v[i].eng);
            return 0;
        }
    return ERR_NOT_FOUND;
}

static api_model *find_model(api_models *ms, const char *name)
{
    if (!ms)
        return NULL;
    for (size_t i = 0; i < ms->n; i++)
        if (strcmp(ms->v[i].name, name) == 0)
            return &ms->v[i];
    return NULL;
}

/* ------------------------------------------------------- GET /v1/models -- */

int api_h_models(http_req *r, void *ctx)
{
    api_models *ms = ((api_app *)ctx)->models;
    buf b;
    buf_init(&b, 1 << 20);
    int rc = buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; ms && i < ms->n && rc == 0; i++) {
        const api_model *m = &ms->v[i];
        rc = buf_append_str(&b, i ? ",{\"id\":\"" : "{\"id\":\"");
        if (!rc)
            rc = buf_append_json_str(&b, m->name, strlen(m->name));
        if (!rc)
            rc = buf_printf(&b,
                            "\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"ferry\","
                            "\"context_length\":%zu,\"max_model_len\":%zu,\"quantization\":\"%s\","
                            "\"chat_template\":\"%s\"",
                            (long long)m->created, m->ctx, m->ctx, m->quant,
                            chat_family_name(m->fam));
        if (!rc && m->is_fam_fallback)
            rc = buf_append_str(&b, ",\"chat_template_warning\":\"the model's chat template was "
                                    "not recognised; chatml is used\"");
        if (!rc)
            rc = buf_append_char(&b, '}');
    }
    // the embedders behind /v1/embeddings and collections (api/collections.c)
    if (!rc)
        rc = api_kb_models_json(&b, ms && ms->n);
    if (!rc)
        rc = buf_append_str(&b, "]}");
    if (!rc)
        rc = http_respond(r, 200, "application/json", b.data, b.len, NULL);
    buf_deinit(&b);
    return rc;
}

/* -------------------------------------------------- generation requests -- */

/* One token's logprobs kept for a non-streamed answer: texts as offsets into
 * req_ctx.lp_text (which moves while it grows). */
typedef struct lp_rec {
    size_t off, n;
    float logprob;
    int n_top;
    size_t top_off[FR_TOP_LOGPROBS_MAX], top_n[FR_TOP_LOGPROBS_MAX];
    float top_logprob[FR_TOP_LOGPROBS_MAX];
} lp_rec;

typedef struct req_ctx {
    atomic_int refs; // handler + sink
    pthread_mutex_t mu; // orders the handler's attach against sink callbacks
    api_kind kind;
    bool is_stream, include_usage, want_lp;
    gw *gw;
    gw_run *run; // set by gw_submit before the first callback can run
    char id[48];
    char model_name[128];
    char fingerprint[48];
    int64_t created;

    /* Guarded by mu. */
    bool is_attached;   // the handler has set up stream or async
    http_stream *stream;
    http_async *async;
    bool is_ended;      // the terminal callback ran
    bool is_error;
    int err_code;
    char err_text[256];
    fr_finish why;
    fr_usage u;
    buf pending;  // stream: SSE bytes produced before attach
    buf text;     // non-stream: the answer so far
    lp_rec *lps;  // non-stream logprobs (n_lp of cap_lp), texts in lp_text
    size_t n_lp, cap_lp;
    buf lp_text;
    buf chunk;    // scratch: one SSE event or the response body
    bool is_cancel_sent;
} req_ctx;

static void ctx_unref(req_ctx *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    gw_run_release(c->run);
    pthread_mutex_destroy(&c->mu);
    buf_deinit(&c->pending);
    buf_deinit(&c->text);
    buf_deinit(&c->chunk);
    buf_deinit(&c->lp_text);
    free(c->lps);
    free(c);
}

static api_meta meta_of(const req_ctx *c)
{
    return (api_meta){.id = c->id, .created = c->created, .model = c->model_name,
                      .fingerprint = c->fingerprint};
}

static api_logprob api_lp_of(const fr_logprobs *f)
{
    api_logprob a;
    memset(&a, 0, sizeof a);
    a.text = f->text;
    a.n = f->n;
    a.logprob = f->logprob;
    a.n_top = f->n_top;
    for (int j = 0; j < f->n_top; j++) {
        a.top_text[j] = f->top_text[j];
        a.top_n[j] = f->top_n[j];
        a.top_logprob[j] = f->top_logprob[j];
    }
    return a;
}

/* Non-stream: keeps one token's logprobs (texts copied). mu held. */
static void keep_lp(req_ctx *c, const fr_logprobs *f)
{
    if (c->n_lp == c->cap_lp) {
        size_t cap = c->cap_lp ? c->cap_lp * 2 : 64;
        lp_rec *v = cap <= SAMPLE_MAX_TOKENS_MAX ? realloc(c->lps, cap * sizeof *v) : NULL;
        if (!v)
            return;
        c->lps = v;
        c->cap_lp = cap;
    }
    lp_rec *r = &c->lps[c->n_lp];
    r->off = c->lp_text.len;
    r->n = f->n;
    if (buf_append(&c->lp_text, f->text, f->n) != 0)
        return;
    r->logprob = f->logprob;
    r->n_top = f->n_top;
    for (int j = 0; j < f->n_top; j++) {
        r->top_off[j] = c->lp_text.len;
        r->top_n[j] = f->top_n[j];
        r->top_logprob[j] = f->top_logprob[j];
        if (buf_append(&c->lp_text, f->top_text[j], f->top_n[j]) != 0)
            return;
    }
    c->n_lp++;
}

/* Stream: hands chunk bytes to the client, or keeps them until attach.
 * Called with mu held. A client that is gone cancels the request. */
static void emit_bytes(req_ctx *c, const char *p, size_t n)
{
    if (!c->is_attached) {
        if (buf_append(&c->pending, p, n) != 0 && !c->is_cancel_sent) {
            gw_run_cancel(c->run);
            c->is_cancel_sent = true;
        }
        return;
    }
    if (!c->stream)
        return;
    int rc = http_stream_write(c->stream, p, n);
    if (rc != 0 && !c->is_cancel_sent) {
        /* ERR_CANCELLED: the client went away; ERR_BUSY: it reads so slowly that
         * the pending cap is reached, and the scheduler must not wait for it. */
        gw_run_cancel(c->run);
        c->is_cancel_sent = true;
    }
}

static void on_delta(void *ctx, const char *text, size_t len, const fr_logprobs *lp)
{
    req_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->is_stream) {
        api_meta m = meta_of(c);
        bool has_lp = c->want_lp && lp;
        api_logprob alp;
        if (has_lp)
            alp = api_lp_of(lp);
        if (len > 0 || has_lp) {
            buf_reset(&c->chunk);
            if (api_sse_chunk(&c->chunk, c->kind, &m, false, text, len, has_lp ? &alp : NULL,
                              has_lp ? 1 : 0, NULL, c->include_usage) == 0)
                emit_bytes(c, c->chunk.data, c->chunk.len);
        }
    } else {
        if (buf_append(&c->text, text, len) != 0 && !c->is_cancel_sent) {
            gw_run_cancel(c->run); // the answer outgrew ANSWER_MAX
            c->is_cancel_sent = true;
        }
        /* A client that hung up on a deferred answer cancels it, as a failed
         * stream write does: its blocks are freed at the next step. */
        if (c->async && !c->is_cancel_sent && http_async_client_gone(c->async)) {
            gw_run_cancel(c->run);
            c->is_cancel_sent = true;
        }
        if (c->want_lp && lp)
            keep_lp(c, lp);
    }
    pthread_mutex_unlock(&c->mu);
}

static const char *finish_name(fr_finish why)
{
    return why == FR_FINISH_LENGTH ? "length" : "stop";
}

static api_usage usage_of(const req_ctx *c)
{
    return (api_usage){.prompt_tokens = c->u.prompt_tokens,
                       .completion_tokens = c->u.completion_tokens,
                       .cached_tokens = c->u.cached_tokens};
}

/* Appends "ferry":{"citations":[...]} (the sources a RAG answer used). */
static int put_ferry(buf *b, const gw_citation *ct, size_t n)
{
    int rc = buf_append_str(b, "\"ferry\":{\"citations\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        rc = buf_printf(b, "%s{\"index\":%zu,\"chunk_id\":%llu,\"document_id\":\"", i ? "," : "",
                        ct[i].index, (unsigned long long)ct[i].chunk_id);
        if (!rc)
            rc = buf_append_json_str(b, ct[i].doc_id, strlen(ct[i].doc_id));
        if (!rc)
            rc = buf_printf(b, "\",\"score\":%.6g,\"offset\":%zu,\"length\":%zu,\"text\":\"",
                            ct[i].score, ct[i].off, ct[i].len);
        if (!rc)
            rc = buf_append_json_str(b, ct[i].text, ct[i].text_len);
        if (!rc)
            rc = buf_append_str(b, "\"}");
    }
    if (!rc)
        rc = buf_append_str(b, "]}");
    return rc;
}

/* Stream: the citations as one chunk event with no choices. */
static int sse_citations(req_ctx *c, buf *b)
{
    size_t n;
    const gw_citation *ct = gw_run_citations(c->run, &n);
    int rc = buf_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":\"",
                        c->id, c->kind == API_CHAT ? "chat.completion.chunk" : "text_completion",
                        (long long)c->created);
    if (!rc)
        rc = buf_append_json_str(b, c->model_name, strlen(c->model_name));
    if (!rc)
        rc = buf_append_str(b, "\",\"choices\":[],");
    if (!rc)
        rc = put_ferry(b, ct, n);
    if (!rc)
        rc = buf_append_str(b, "}\n\n");
    return rc;
}

/* The error body of an ERR_POLICY ending (the policy id, nothing matched). */
static int policy_body(req_ctx *c, buf *b)
{
    const char *pid = gw_run_policy_id(c->run);
    return pid ? gw_policy_error_json(c->gw, pid, b)
               : http_error_json(b, ERR_POLICY, NULL, NULL, NULL);
}

/* Stream: the closing events (finish chunk or error, citations, usage,
 * [DONE]). mu held. */
static void stream_close_events(req_ctx *c)
{
    api_meta m = meta_of(c);
    buf_reset(&c->chunk);
    int rc;
    if (c->is_error) {
        rc = buf_append_str(&c->chunk, "data: ");
        if (!rc)
            rc = c->err_code == ERR_POLICY
                     ? policy_body(c, &c->chunk)
                     : http_error_json(&c->chunk, c->err_code,
                                       err_http_status(c->err_code) >= 500 ? NULL : c->err_text,
                                       NULL, NULL); // a 5xx shows only its code's text
        if (!rc)
            rc = buf_append_str(&c->chunk, "\n\n");
    } else {
        rc = api_sse_chunk(&c->chunk, c->kind, &m, false, "", 0, NULL, 0, finish_name(c->why),
                           c->include_usage);
    }
    // asked of the run: a short answer can end before gw_submit has returned
    if (!rc && gw_run_has_rag(c->run) && !c->is_error)
        rc = sse_citations(c, &c->chunk);
    if (!rc && c->include_usage) {
        api_usage u = usage_of(c);
        rc = api_sse_usage(&c->chunk, c->kind, &m, &u);
    }
    if (!rc)
        rc = api_sse_done(&c->chunk);
    if (!rc)
        emit_bytes(c, c->chunk.data, c->chunk.len);
}

/* Non-stream: the whole response body into chunk. mu held. Returns 0 or an ERR_*. */
static int build_answer(req_ctx *c)
{
    api_meta m = meta_of(c);
    api_usage u = usage_of(c);
    buf_reset(&c->chunk);
    api_logprob *lp = NULL;
    if (c->want_lp) {
        lp = calloc(c->n_lp ? c->n_lp : 1, sizeof *lp);
        if (!lp)
            return ERR_NOMEM;
        const char *base = c->lp_text.data ? c->lp_text.data : "";
        for (size_t i = 0; i < c->n_lp; i++) {
            const lp_rec *r = &c->lps[i];
            lp[i].text = base + r->off;
            lp[i].n = r->n;
            lp[i].logprob = r->logprob;
            lp[i].n_top = r->n_top;
            for (int j = 0; j < r->n_top; j++) {
                lp[i].top_text[j] = base + r->top_off[j];
                lp[i].top_n[j] = r->top_n[j];
                lp[i].top_logprob[j] = r->top_logprob[j];
            }
        }
    }
    int rc = api_response(&c->chunk, c->kind, &m, c->text.data ? c->text.data : "", c->text.len,
                          lp, c->n_lp, finish_name(c->why), &u);
    free(lp);
    if (!rc && gw_run_has_rag(c->run) && c->chunk.len > 0 &&
        c->chunk.data[c->chunk.len - 1] == '}') {
        // the response object gains "ferry": {"citations": [...]} as its last member
        size_t n;
        const gw_citation *ct = gw_run_citations(c->run, &n);
        c->chunk.len--;
        rc = buf_append_char(&c->chunk, ',');
        if (!rc)
            rc = put_ferry(&c->chunk, ct, n);
        if (!rc)
            rc = buf_append_char(&c->chunk, '}');
    }
    return rc;
}

/* Answers a deferred non-stream request from the terminal callback. mu held. */
static void answer_async(req_ctx *c)
{
    if (!c->async)
        return;
    if (c->is_error && c->err_code == ERR_POLICY) {
        buf_reset(&c->chunk);
        if (policy_body(c, &c->chunk) == 0)
            http_async_respond(c->async, err_http_status(ERR_POLICY), "application/json",
                               c->chunk.data, c->chunk.len);
        else
            http_async_error(c->async, ERR_POLICY, NULL, NULL);
    } else if (c->is_error) {
        http_async_error(c->async, c->err_code, c->err_text, NULL);
    } else if (build_answer(c) == 0) {
        http_async_respond(c->async, 200, "application/json", c->chunk.data, c->chunk.len);
    } else {
        http_async_error(c->async, ERR_NOMEM, NULL, NULL);
    }
    c->async = NULL;
}

static void on_end(req_ctx *c)
{
    if (c->is_attached) {
        if (c->is_stream) {
            stream_close_events(c);
            if (c->stream) {
                http_stream_end(c->stream);
                c->stream = NULL;
            }
        } else {
            answer_async(c);
        }
    } else if (c->is_stream) {
        stream_close_events(c); // into pending; the handler sends it
    }
}

static void on_done(void *ctx, fr_finish why, const fr_usage *u)
{
    req_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->is_ended = true;
    c->why = why;
    c->u = *u;
    on_end(c);
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
}

static void on_error(void *ctx, const fr_error *err, const fr_usage *u)
{
    req_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->is_ended = true;
    c->is_error = true;
    c->err_code = err->code;
    snprintf(c->err_text, sizeof c->err_text, "%s", err->msg ? err->msg : "");
    c->u = *u;
    on_end(c);
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
}

static int respond_err(http_req *r, int code, const char *msg, const char *param,
                       const char *code_str)
{
    const char *headers = code == ERR_RATE_LIMIT ? "Retry-After: 1" : NULL;
    int status_code = code;
    /* The issue asks for 400 (OpenAI's context_length_exceeded), not 413. */
    if (code == ERR_TOO_LARGE)
        status_code = ERR_INVAL;
    return http_respond_error(r, status_code, msg, param, code_str, headers);
}

/* The bearer key of the request ("Authorization: Bearer K"), or NULL. */
static const char *bearer_key(http_req *r)
{
    const char *h = http_req_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}

/* The answer to a request the pipeline refused before generating: status,
 * body (the guard's for ERR_POLICY, else the OpenAI error shape) and whether
 * it is a 429 (Retry-After). Returns 0 or buf errors. */
static int refusal_body(gw *p, int rc, const gw_refusal *why, const char *msg, api_kind kind,
                        int *status, buf *b)
{
    if (rc == ERR_POLICY) {
        *status = err_http_status(ERR_POLICY);
        return gw_policy_error_json(p, why->policy_id, b);
    }
    const char *prompt_param = kind == API_CHAT ? "messages" : "prompt";
    const char *param = why->param                  ? why->param
                        : rc == ERR_TOO_LARGE       ? prompt_param
                        : strstr(msg, "logit_bias") ? "logit_bias"
                        : strstr(msg, "max_tokens") ? "max_tokens"
                        : strstr(msg, "stop")       ? "stop"
                                                    : NULL;
    const char *code_str = rc == ERR_TOO_LARGE ? "context_length_exceeded" : why->code;
    /* The issue asks for 400 (OpenAI's context_length_exceeded), not 413. */
    int code = rc == ERR_TOO_LARGE ? ERR_INVAL : rc;
    *status = err_http_status(code);
    return http_error_json(b, code, *status >= 500 ? NULL : msg, param, code_str);
}

static int respond_refusal(http_req *r, gw *p, int rc, const gw_refusal *why, const char *msg,
                           api_kind kind)
{
    buf b;
    buf_init(&b, 8192);
    int status;
    int wr = refusal_body(p, rc, why, msg, kind, &status, &b);
    if (!wr)
        wr = http_respond(r, status, "application/json", b.data, b.len,
                          rc == ERR_RATE_LIMIT ? "Retry-After: 1" : NULL);
    buf_deinit(&b);
    return wr;
}

/* Stream: starts the SSE body on s (role chunk, what came before). mu held. */
static void attach_stream(req_ctx *c, http_stream *s)
{
    c->stream = s;
    c->is_attached = true;
    if (!c->stream) {
        gw_run_cancel(c->run);
        c->is_cancel_sent = true;
        return;
    }
    if (c->kind == API_CHAT) {
        api_meta m = meta_of(c);
        buf_reset(&c->chunk);
        if (api_sse_chunk(&c->chunk, c->kind, &m, true, "", 0, NULL, 0, NULL,
                          c->include_usage) == 0)
            emit_bytes(c, c->chunk.data, c->chunk.len);
    }
    if (c->pending.len)
        emit_bytes(c, c->pending.data, c->pending.len);
    buf_deinit(&c->pending);
    if (c->is_ended) {
        http_stream_end(c->stream);
        c->stream = NULL;
    }
}

/* A request whose pipeline stages may block (the guard's judge) runs
 * gw_submit on a pipeline worker; the HTTP request stays deferred (its arena
 * and headers live until it is answered). */
typedef struct gen_job {
    req_ctx *c;
    gw_request rq;
    arena *a;
} gen_job;

static void job_run(void *arg)
{
    gen_job *j = arg;
    req_ctx *c = j->c;
    gw_refusal why;
    err_msg e;
    err_clear(&e);
    int rc = gw_submit(c->gw, &j->rq, j->a, (gw_out){c, on_delta, on_done, on_error}, &c->run,
                       &why, &e);
    if (rc != 0) {
        atomic_store(&c->refs, 1); // no callback will run: the sink's ref is void
        buf b;
        buf_init(&b, 8192);
        int status;
        if (refusal_body(c->gw, rc, &why, e.text, c->kind, &status, &b) == 0)
            http_async_respond_headers(c->async, status, "application/json", b.data, b.len,
                                       rc == ERR_RATE_LIMIT ? "Retry-After: 1" : NULL);
        else
            http_async_error(c->async, ERR_NOMEM, NULL, NULL);
        buf_deinit(&b);
        c->async = NULL;
        ctx_unref(c);
        free(j);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (c->is_stream) {
        http_async *as = c->async;
        c->async = NULL;
        attach_stream(c, http_async_stream(as, 200, "text/event-stream"));
    } else {
        c->is_attached = true;
        if (c->is_ended)
            answer_async(c);
    }
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
    free(j);
}

static int h_generate(http_req *r, api_app *app, api_kind kind)
{
    api_models *ms = app->models;
    size_t len;
    const char *body = http_req_body(r, &len);
    arena *a = http_req_arena(r);
    if (!a)
        return ERR_NOMEM;
    api_gen_req g;
    api_error perr;
    int rc = api_gen_parse(kind, body, len, a, &g, &perr);
    if (rc != 0)
        return respond_err(r, rc, perr.msg.text, perr.param, NULL);
    api_model *am = find_model(ms, g.model);
    if (!am) {
        char msg[256];
        snprintf(msg, sizeof msg, "The model '%.150s' does not exist", g.model);
        return http_respond_error(r, ERR_NOT_FOUND, msg, "model", "model_not_found", NULL);
    }
    if (!app->gw)
        return http_respond_error(r, ERR_UNAVAILABLE, NULL, NULL, NULL, NULL);

    req_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return ERR_NOMEM;
    atomic_init(&c->refs, 2);
    pthread_mutex_init(&c->mu, NULL);
    c->kind = kind;
    c->is_stream = g.is_stream;
    c->include_usage = g.include_usage;
    c->want_lp = g.sp.want_logprobs;
    c->gw = app->gw;
    c->created = (int64_t)time(NULL);
    api_make_id(kind == API_CHAT ? "chatcmpl" : "cmpl", c->id, sizeof c->id);
    snprintf(c->model_name, sizeof c->model_name, "%s", am->name);
    snprintf(c->fingerprint, sizeof c->fingerprint, "fp_ferry_%s", FERRY_COMMIT);
    buf_init(&c->pending, HTTP_STREAM_PENDING_MAX);
    buf_init(&c->text, ANSWER_MAX);
    buf_init(&c->chunk, ANSWER_MAX * 2);
    buf_init(&c->lp_text, ANSWER_MAX);

    gw_request rq = {
        .request_id = http_req_id(r),
        .route = kind == API_CHAT ? "/v1/chat/completions" : "/v1/completions",
        .api_key = bearer_key(r),
        .model = am->name,
        .backend = gw_engine_backend(am->eng),
        .gen = {.is_chat = kind == API_CHAT,
                .msgs = g.msgs,
                .n_msgs = g.n_msgs,
                .prompt = g.prompt,
                .prompt_len = g.prompt_len,
                .sp = g.sp,
                .priority = g.priority,
                .ignore_eos = g.ignore_eos},
        .collection = g.rag_collection,
        .top_k = g.rag_top_k,
    };

    if (gw_defers(app->gw)) {
        /* Everything rq points at lives in the request (arena, headers) until
         * the deferred answer; the job owns the handler's reference. */
        gen_job *j = malloc(sizeof *j);
        c->async = j ? http_defer(r) : NULL;
        if (!c->async) {
            free(j);
            atomic_store(&c->refs, 1);
            ctx_unref(c);
            return ERR_NOMEM;
        }
        *j = (gen_job){c, rq, a};
        rc = gw_post(app->gw, job_run, j);
        if (rc != 0) {
            free(j);
            http_async_error(c->async, rc, NULL, NULL);
            c->async = NULL;
            atomic_store(&c->refs, 1);
            ctx_unref(c);
        }
        return 0;
    }

    gw_refusal why;
    err_msg *e = http_req_err(r);
    rc = gw_submit(app->gw, &rq, a, (gw_out){c, on_delta, on_done, on_error}, &c->run, &why, e);
    if (rc != 0) {
        atomic_store(&c->refs, 1); // no callback will run: the sink's ref is void
        ctx_unref(c);
        return respond_refusal(r, app->gw, rc, &why, e->text, kind);
    }

    pthread_mutex_lock(&c->mu);
    rc = 0;
    if (c->is_stream) {
        http_stream *st = http_stream_begin(r, 200, "text/event-stream");
        attach_stream(c, st);
        if (!st)
            rc = ERR_NOMEM;
    } else if (c->is_ended) {
        c->is_attached = true;
        if (c->is_error && c->err_code == ERR_POLICY) {
            buf_reset(&c->chunk);
            rc = policy_body(c, &c->chunk);
            if (!rc)
                rc = http_respond(r, err_http_status(ERR_POLICY), "application/json",
                                  c->chunk.data, c->chunk.len, NULL);
        } else if (c->is_error) {
            rc = respond_err(r, c->err_code, c->err_text, NULL, NULL);
        } else if ((rc = build_answer(c)) == 0) {
            rc = http_respond(r, 200, "application/json", c->chunk.data, c->chunk.len, NULL);
        }
    } else {
        c->async = http_defer(r);
        c->is_attached = true;
        if (!c->async) {
            gw_run_cancel(c->run);
            c->is_cancel_sent = true;
            rc = ERR_NOMEM;
        }
    }
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
    return rc;
}

int api_h_chat(http_req *r, void *ctx)
{
    return h_generate(r, ctx, API_CHAT);
}

int api_h_completions(http_req *r, void *ctx)
{
    return h_generate(r, ctx, API_COMPLETION);
}
