/*
 * gateway/engine — the local engine behind the backend seam: an fr_backend
 * over one model's scheduler (engine/sched.h), without changing engine/.
 *
 * generate: chat template (chat) or raw prompt, tokenization, the context
 * check (ERR_TOO_LARGE naming the length, as OpenAI's context_length_exceeded
 * says it), the default max_tokens (what is left of the context), then
 * sched_submit with a trampoline sink. Each generation is an fr_gen on the
 * heap owned by the trampoline: freed after the terminal callback returned.
 * Logprobs are turned into token texts on the scheduler thread (into the
 * gen's scratch buffer) before the sink sees them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "gateway/gateway.h"

#define PROMPT_TEXT_MAX ((size_t)16 << 20) // bytes of a templated prompt
#define LP_TEXT_MAX ((size_t)1 << 20)      // bytes of one token's logprob texts

struct gw_engine {
    sched *s;
    const tok_vocab *vocab;
    chat_family fam;
    size_t ctx;
};

struct fr_gen {
    gw_engine *g;
    sched_handle *h;
    fr_sink sink;
    buf lp_text; // scratch: token texts of one delta's logprobs
};

static void gen_free(struct fr_gen *x)
{
    sched_handle_release(x->h);
    buf_deinit(&x->lp_text);
    free(x);
}

static fr_usage usage_of(const sched_usage *u)
{
    return (fr_usage){.prompt_tokens = u->prompt_tokens,
                      .completion_tokens = u->completion_tokens,
                      .cached_tokens = u->cached_tokens};
}

/* Fills lp with the texts of r's token and alternatives (in x->lp_text). */
static int logprobs_of(struct fr_gen *x, const sample_result *r, fr_logprobs *lp)
{
    size_t offs[2 * (FR_TOP_LOGPROBS_MAX + 1)];
    size_t k = 0;
    buf_reset(&x->lp_text);
    for (int j = -1; j < r->n_top && j < FR_TOP_LOGPROBS_MAX; j++) {
        int32_t id = j < 0 ? r->token : r->top_token[j];
        offs[k++] = x->lp_text.len;
        int rc = tok_detokenize(x->g->vocab, &id, 1, TOK_DEC_SPECIAL, &x->lp_text);
        if (rc)
            return rc;
        offs[k++] = x->lp_text.len;
    }
    const char *base = x->lp_text.data ? x->lp_text.data : "";
    memset(lp, 0, sizeof *lp);
    lp->text = base + offs[0];
    lp->n = offs[1] - offs[0];
    lp->logprob = r->logprob;
    lp->n_top = MIN(r->n_top, FR_TOP_LOGPROBS_MAX);
    for (int j = 0; j < lp->n_top; j++) {
        lp->top_text[j] = base + offs[2 + 2 * j];
        lp->top_n[j] = offs[3 + 2 * j] - offs[2 + 2 * j];
        lp->top_logprob[j] = r->top_logprob[j];
    }
    return 0;
}

static void t_delta(void *ctx, const sched_delta *d)
{
    struct fr_gen *x = ctx;
    fr_logprobs lp;
    bool has_lp = d->lp && logprobs_of(x, d->lp, &lp) == 0;
    x->sink.on_delta(x->sink.ctx, d->text, d->len, has_lp ? &lp : NULL);
}

static void t_done(void *ctx, sched_finish why, const sched_usage *u)
{
    struct fr_gen *x = ctx;
    fr_usage fu = usage_of(u);
    x->sink.on_done(x->sink.ctx, why == SCHED_FINISH_LENGTH ? FR_FINISH_LENGTH : FR_FINISH_STOP,
                    &fu);
    gen_free(x);
}

static void t_error(void *ctx, int code, const char *msg, const sched_usage *u)
{
    struct fr_gen *x = ctx;
    fr_usage fu = usage_of(u);
    fr_error fe = {code, msg};
    x->sink.on_error(x->sink.ctx, &fe, &fu);
    gen_free(x);
}

/* Turns p into prompt token ids in list. */
static int tokenize(gw_engine *g, const fr_gen_params *p, tok_list *list, err_msg *e)
{
    int rc;
    if (p->is_chat) {
        buf t;
        buf_init(&t, PROMPT_TEXT_MAX);
        rc = chat_apply(g->fam, p->msgs, p->n_msgs, true, &t);
        if (rc == 0)
            rc = tok_tokenize(g->vocab, t.data ? t.data : "", t.len,
                              TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, list, e);
        else
            err_set(e, rc, "the templated conversation is over %zu bytes", PROMPT_TEXT_MAX);
        buf_deinit(&t);
    } else {
        rc = tok_tokenize(g->vocab, p->prompt ? p->prompt : "", p->prompt_len, TOK_ADD_SPECIAL,
                          list, e);
    }
    return rc;
}

static int eng_generate(void *self, const fr_gen_params *p, fr_sink sink, fr_handle *out,
                        err_msg *e)
{
    gw_engine *g = self;
    *out = NULL;
    tok_list list;
    tok_list_init(&list, g->ctx + 1);
    int rc = tokenize(g, p, &list, e);
    if (rc == ERR_TOO_LARGE || (rc == 0 && list.n + 1 > g->ctx)) {
        err_set(e, ERR_TOO_LARGE,
                "This model's maximum context length is %zu tokens; the prompt has %s%zu", g->ctx,
                rc ? "more than " : "", list.n);
        tok_list_free(&list);
        return ERR_TOO_LARGE;
    }
    if (rc != 0) {
        tok_list_free(&list);
        return rc;
    }
    sample_params sp = p->sp;
    if (sp.max_tokens == 0) {
        size_t left = g->ctx - list.n;
        sp.max_tokens = left < SAMPLE_MAX_TOKENS_MAX ? left : SAMPLE_MAX_TOKENS_MAX;
    }
    struct fr_gen *x = calloc(1, sizeof *x);
    if (!x) {
        tok_list_free(&list);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    x->g = g;
    x->sink = sink;
    buf_init(&x->lp_text, LP_TEXT_MAX);
    sched_request sr = {
        .prompt = list.ids,
        .n_prompt = list.n,
        .params = sp,
        .priority = p->priority,
        .deadline_ns = p->deadline_ns,
        .ignore_eos = p->ignore_eos,
        .sink = {.ctx = x, .on_delta = t_delta, .on_done = t_done, .on_error = t_error},
    };
    /* The handle must be known before the first callback (the caller may
     * cancel from on_delta): sched_submit stores x->h before the scheduler
     * can see the request, and *out is set first. */
    *out = x;
    rc = sched_submit(g->s, &sr, &x->h, e);
    tok_list_free(&list);
    if (rc != 0) {
        *out = NULL;
        buf_deinit(&x->lp_text);
        free(x);
        return rc;
    }
    return 0;
}

static void eng_cancel(void *self, fr_handle h)
{
    gw_engine *g = self;
    if (h && h->h)
        sched_cancel(g->s, h->h);
}

static int eng_embed(void *self, const char *const *texts, size_t n, fr_embeddings *out, err_msg *e)
{
    (void)self;
    (void)texts;
    (void)n;
    memset(out, 0, sizeof *out);
    return err_set(e, ERR_UNSUPPORTED,
                   "this model does not embed; use the embedding model or the lexical embedder");
}

static const fr_backend_ops ENGINE_OPS = {eng_generate, eng_cancel, eng_embed};

int gw_engine_new(sched *s, const tok_vocab *vocab, chat_family fam, gw_engine **out, err_msg *e)
{
    *out = NULL;
    gw_engine *g = calloc(1, sizeof *g);
    if (!g)
        return err_set(e, ERR_NOMEM, "out of memory");
    g->s = s;
    g->vocab = vocab;
    g->fam = fam;
    g->ctx = sched_max_ctx(s);
    *out = g;
    return 0;
}

void gw_engine_free(gw_engine *g)
{
    free(g);
}

fr_backend gw_engine_backend(gw_engine *g)
{
    return (fr_backend){&ENGINE_OPS, g};
}
