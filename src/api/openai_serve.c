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
#include <time.h>

#include "api/api.h"
#include "api/collections.h"
#include "api/openai.h"
#include "base/buf.h"
#include "base/log.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/tensor.h"
#include "model/tok.h"

#define PROMPT_TEXT_MAX ((size_t)16 << 20) // bytes of a templated prompt
#define ANSWER_MAX ((size_t)16 << 20)      // bytes of a non-streamed answer
#define CHUNK_MAX ((size_t)1 << 20)        // bytes of one SSE event

typedef struct api_model {
    char name[128];
    model *m;
    gguf_file *g;
    tok_vocab *vocab;
    sched *s;
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

typedef struct req_ctx {
    atomic_int refs; // handler + sink
    pthread_mutex_t mu; // orders the handler's attach against sink callbacks
    api_kind kind;
    bool is_stream, include_usage, want_lp;
    api_model *mdl;
    sched_handle *h;
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
    sched_finish why;
    sched_usage u;
    buf pending;  // stream: SSE bytes produced before attach
    buf text;     // non-stream: the answer so far
    sample_result *lps; // non-stream logprobs (n_lp of cap_lp)
    size_t n_lp, cap_lp;
    bool is_lp_truncated;
    buf chunk;    // scratch: one SSE event or the response body
    buf tokbuf;   // scratch: token texts for logprobs
    bool is_cancel_sent;
} req_ctx;

static void ctx_unref(req_ctx *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    sched_handle_release(c->h);
    pthread_mutex_destroy(&c->mu);
    buf_deinit(&c->pending);
    buf_deinit(&c->text);
    buf_deinit(&c->chunk);
    buf_deinit(&c->tokbuf);
    free(c->lps);
    free(c);
}

static api_meta meta_of(const req_ctx *c)
{
    return (api_meta){.id = c->id, .created = c->created, .model = c->model_name,
                      .fingerprint = c->fingerprint};
}

/* Converts sample results to api_logprob entries whose texts live in tokbuf. */
static int build_lp(req_ctx *c, const sample_result *res, size_t n, api_logprob *out)
{
    buf_reset(&c->tokbuf);
    /* Offsets first (tokbuf may move while growing), pointers after. */
    size_t *offs = calloc(n * (SAMPLE_TOP_LOGPROBS_MAX + 1) * 2 + 1, sizeof *offs);
    if (!offs)
        return ERR_NOMEM;
    int rc = 0;
    size_t k = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        for (int j = -1; j < res[i].n_top && !rc; j++) {
            int32_t id = j < 0 ? res[i].token : res[i].top_token[j];
            offs[k++] = c->tokbuf.len;
            rc = tok_detokenize(c->mdl->vocab, &id, 1, TOK_DEC_SPECIAL, &c->tokbuf);
            offs[k++] = c->tokbuf.len;
        }
    }
    if (rc) {
        free(offs);
        return rc;
    }
    const char *base = c->tokbuf.data ? c->tokbuf.data : "";
    k = 0;
    for (size_t i = 0; i < n; i++) {
        api_logprob *e = &out[i];
        e->text = base + offs[k];
        e->n = offs[k + 1] - offs[k];
        k += 2;
        e->logprob = res[i].logprob;
        e->n_top = res[i].n_top;
        for (int j = 0; j < res[i].n_top; j++) {
            e->top_text[j] = base + offs[k];
            e->top_n[j] = offs[k + 1] - offs[k];
            e->top_logprob[j] = res[i].top_logprob[j];
            k += 2;
        }
    }
    free(offs);
    return 0;
}

/* Stream: hands chunk bytes to the client, or keeps them until attach.
 * Called with mu held. A client that is gone cancels the request. */
static void emit_bytes(req_ctx *c, const char *p, size_t n)
{
    if (!c->is_attached) {
        if (buf_append(&c->pending, p, n) != 0 && !c->is_cancel_sent) {
            sched_cancel(c->mdl->s, c->h);
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
        sched_cancel(c->mdl->s, c->h);
        c->is_cancel_sent = true;
    }
}

static void on_delta(void *ctx, const sched_delta *d)
{
    req_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->is_stream) {
        api_meta m = meta_of(c);
        api_logprob lp;
        bool has_lp = c->want_lp && d->lp && build_lp(c, d->lp, 1, &lp) == 0;
        if (d->len > 0 || has_lp) {
            buf_reset(&c->chunk);
            if (api_sse_chunk(&c->chunk, c->kind, &m, false, d->text, d->len, has_lp ? &lp : NULL,
                              has_lp ? 1 : 0, NULL, c->include_usage) == 0)
                emit_bytes(c, c->chunk.data, c->chunk.len);
        }
    } else {
        if (buf_append(&c->text, d->text, d->len) != 0 && !c->is_cancel_sent) {
            sched_cancel(c->mdl->s, c->h); // the answer outgrew ANSWER_MAX
            c->is_cancel_sent = true;
        }
        if (c->want_lp && d->lp) {
            if (c->n_lp == c->cap_lp) {
                size_t cap = c->cap_lp ? c->cap_lp * 2 : 64;
                sample_result *v = cap <= SAMPLE_MAX_TOKENS_MAX
                                       ? realloc(c->lps, cap * sizeof *v)
                                       : NULL;
                if (v) {
                    c->lps = v;
                    c->cap_lp = cap;
                }
            }
            if (c->n_lp < c->cap_lp)
                c->lps[c->n_lp++] = *d->lp;
            else
                c->is_lp_truncated = true;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static const char *finish_name(sched_finish why)
{
    return why == SCHED_FINISH_LENGTH ? "length" : "stop";
}

static api_usage usage_of(const req_ctx *c)
{
    return (api_usage){.prompt_tokens = c->u.prompt_tokens,
                       .completion_tokens = c->u.completion_tokens,
                       .cached_tokens = c->u.cached_tokens};
}

/* Stream: the closing events (finish chunk or error, usage, [DONE]). mu held. */
static void stream_close_events(req_ctx *c)
{
    api_meta m = meta_of(c);
    buf_reset(&c->chunk);
    int rc;
    if (c->is_error) {
        rc = buf_append_str(&c->chunk, "data: ");
        if (!rc)
            rc = api_error_json(&c->chunk, c->err_code, c->err_text, NULL, NULL);
        if (!rc)
            rc = buf_append_str(&c->chunk, "\n\n");
    } else {
        rc = api_sse_chunk(&c->chunk, c->kind, &m, false, "", 0, NULL, 0, finish_name(c->why),
                           c->include_usage);
    }
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
        if (!lp || build_lp(c, c->lps, c->n_lp, lp) != 0) {
            free(lp);
            return ERR_NOMEM;
        }
    }
    int rc = api_response(&c->chunk, c->kind, &m, c->text.data ? c->text.data : "", c->text.len,
                          lp, c->n_lp, finish_name(c->why), &u);
    free(lp);
    return rc;
}

/* Answers a deferred non-stream request from the terminal callback. mu held. */
static void answer_async(req_ctx *c)
{
    if (!c->async)
        return;
    if (c->is_error) {
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

static void on_done(void *ctx, sched_finish why, const sched_usage *u)
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

static void on_error(void *ctx, int code, const char *msg, const sched_usage *u)
{
    req_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->is_ended = true;
    c->is_error = true;
    c->err_code = code;
    snprintf(c->err_text, sizeof c->err_text, "%s", msg);
    c->u = *u;
    on_end(c);
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
}

/* Turns the parsed request into prompt token ids in list. */
static int build_prompt(api_model *am, const api_gen_req *g, tok_list *list, http_req *r)
{
    err_msg *e = http_req_err(r);
    int rc;
    if (g->kind == API_CHAT) {
        buf t;
        buf_init(&t, PROMPT_TEXT_MAX);
        rc = chat_apply(am->fam, g->msgs, g->n_msgs, true, &t);
        if (rc == 0)
            rc = tok_tokenize(am->vocab, t.data ? t.data : "", t.len,
                              TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, list, e);
        buf_deinit(&t);
    } else {
        rc = tok_tokenize(am->vocab, g->prompt, g->prompt_len, TOK_ADD_SPECIAL, list, e);
    }
    return rc;
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

static int h_generate(http_req *r, api_models *ms, api_kind kind)
{
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
    const char *prompt_param = kind == API_CHAT ? "messages" : "prompt";
    tok_list list;
    tok_list_init(&list, am->ctx + 1);
    rc = build_prompt(am, &g, &list, r);
    if (rc == ERR_TOO_LARGE || (rc == 0 && list.n + 1 > am->ctx)) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %zu tokens; the prompt has %s%zu",
                 am->ctx, rc ? "more than " : "", list.n);
        tok_list_free(&list);
        return respond_err(r, ERR_TOO_LARGE, msg, prompt_param, "context_length_exceeded");
    }
    if (rc != 0) {
        tok_list_free(&list);
        return respond_err(r, rc, http_req_err(r)->text, prompt_param, NULL);
    }
    if (g.sp.max_tokens == 0) {
        size_t left = am->ctx - list.n;
        g.sp.max_tokens = left < SAMPLE_MAX_TOKENS_MAX ? left : SAMPLE_MAX_TOKENS_MAX;
    }

    req_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        tok_list_free(&list);
        return ERR_NOMEM;
    }
    atomic_init(&c->refs, 2);
    pthread_mutex_init(&c->mu, NULL);
    c->kind = kind;
    c->is_stream = g.is_stream;
    c->include_usage = g.include_usage;
    c->want_lp = g.sp.want_logprobs;
    c->mdl = am;
    c->created = (int64_t)time(NULL);
    api_make_id(kind == API_CHAT ? "chatcmpl" : "cmpl", c->id, sizeof c->id);
    snprintf(c->model_name, sizeof c->model_name, "%s", am->name);
    snprintf(c->fingerprint, sizeof c->fingerprint, "fp_ferry_%s", FERRY_COMMIT);
    buf_init(&c->pending, HTTP_STREAM_PENDING_MAX);
    buf_init(&c->text, ANSWER_MAX);
    buf_init(&c->chunk, ANSWER_MAX * 2);
    buf_init(&c->tokbuf, CHUNK_MAX);

    sched_request sr = {
        .prompt = list.ids,
        .n_prompt = list.n,
        .params = g.sp,
        .priority = g.priority,
        .ignore_eos = g.ignore_eos,
        .sink = {.ctx = c, .on_delta = on_delta, .on_done = on_done, .on_error = on_error},
    };
    err_msg se;
    rc = sched_submit(am->s, &sr, &c->h, &se);
    tok_list_free(&list);
    if (rc != 0) {
        atomic_store(&c->refs, 1); // no callback will run: the sink's ref is void
        ctx_unref(c);
        const char *param = strstr(se.text, "logit_bias")   ? "logit_bias"
                            : strstr(se.text, "max_tokens") ? "max_tokens"
                            : strstr(se.text, "stop")       ? "stop"
                            : rc == ERR_TOO_LARGE           ? prompt_param
                                                            : NULL;
        return respond_err(r, rc, se.text, param,
                           rc == ERR_TOO_LARGE ? "context_length_exceeded" : NULL);
    }

    pthread_mutex_lock(&c->mu);
    rc = 0;
    if (c->is_stream) {
        c->stream = http_stream_begin(r, 200, "text/event-stream");
        c->is_attached = true;
        if (!c->stream) {
            sched_cancel(am->s, c->h);
            c->is_cancel_sent = true;
            rc = ERR_NOMEM;
        } else {
            if (kind == API_CHAT) {
                api_meta m = meta_of(c);
                buf_reset(&c->chunk);
                if (api_sse_chunk(&c->chunk, kind, &m, true, "", 0, NULL, 0, NULL,
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
    } else if (c->is_ended) {
        c->is_attached = true;
        if (c->is_error)
            rc = respond_err(r, c->err_code, c->err_text, NULL, NULL);
        else if ((rc = build_answer(c)) == 0)
            rc = http_respond(r, 200, "application/json", c->chunk.data, c->chunk.len, NULL);
    } else {
        c->async = http_defer(r);
        c->is_attached = true;
        if (!c->async) {
            sched_cancel(am->s, c->h);
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
    return h_generate(r, ((api_app *)ctx)->models, API_CHAT);
}

int api_h_completions(http_req *r, void *ctx)
{
    return h_generate(r, ((api_app *)ctx)->models, API_COMPLETION);
}
