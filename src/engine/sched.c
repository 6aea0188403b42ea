/*
 * engine/sched — the scheduler thread and its hand-offs. See sched.h for the
 * contract, sched_plan.h for how a step is composed.
 *
 * Ownership: a sched_handle is shared by the submitter and the scheduler
 * (atomic refcount). Its mutable generation state (tokens, sampler, held
 * text) is touched only by the scheduler thread after submission; the
 * submitter touches only `is_cancelled` (atomic) and its reference.
 *
 * Lock: `stats_lock` protects `pub` (the snapshot sched_get_stats copies); it
 * is taken once per step by the scheduler and by readers, never per token.
 */
#include "engine/sched.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "engine/sched_metrics.h"
#include "engine/sched_plan.h"

/* Bytes one token can decode to (its text plus a completed held-back
 * character), and sample_accept's out_cap for that. */
#define PIECE_MAX (TOK_MAX_TOKEN_BYTES + 8)
#define DELTA_MAX (PIECE_MAX + SAMPLE_STOP_BYTES_MAX)

struct sched_handle {
    atomic_int refs;
    atomic_bool is_cancelled;
    sched_handle *next_submit; // MPSC stack link
    sched *owner;

    /* Scheduler-thread state from here on. */
    sched_seq ps;      // plan view: tokens, n_tokens, n_computed, kv_id, ...
    size_t cap_tokens; // capacity of ps.tokens: min(max_ctx, prompt + max_tokens) + 1
    size_t n_prompt;
    sample_seq *ss;
    sched_sink sink;
    uint64_t deadline_ns, t_submit, t_admit, t_first;
    bool ignore_eos, want_logprobs;
    bool is_queued;   // counted in n_queued (not yet admitted once)
    bool is_admitted; // admitted at least once (cached_tokens recorded)
    size_t cached_tokens;
    size_t n_generated;
    tok_decoder dec;  // streaming detokenizer: holds back incomplete UTF-8
};

struct sched {
    model *m;
    llama_ctx *ctx;
    pool *own_pool; // compute pool when the config lent none
    llama_kv *lkv;
    kv_cache *kv;
    pool *pool;        // the compute pool of the forward pass (lent or own)
    sample_scratch **scs; // (pool threads) sampling scratch per participant
    size_t n_scs;
    sched_config cfg;
    char name[64];
    buf piece;  // (PIECE_MAX) text of the token being delivered
    char *out;  // (DELTA_MAX) text released by the stop-string matcher
    size_t max_ctx;
    int32_t n_vocab;

    sched_limits lim;
    sched_lists L;
    sched_seq **run, **wait;
    sched_plan plan;
    sched_item *items;
    sched_seq **preempted, **exhausted;
    llama_span *spans; // (max_seqs)
    float *logits;     // (max_seqs, n_vocab)
    sched_handle **rows; // (max_seqs) the request of each logits row of the step
    sample_result *res;  // (max_seqs) its sampled token
    int *res_rc;         // (max_seqs) sample_next's return

    _Atomic(sched_handle *) submit_head;
    atomic_size_t n_queued; // submitted and never admitted: the max_waiting count
    atomic_bool is_stopping;
    uint64_t n_arrivals; // scheduler thread
    int efd;
    pthread_t thread;
    bool has_thread;

    sched_series ms;  // metric series of this model (no-ops without a registry)
    sched_stats last; // stats at the previous publish: metric deltas

    pthread_mutex_t stats_lock;
    sched_stats pub; // guarded by stats_lock
    sched_stats st;  // scheduler thread's working copy
};

sched_config sched_config_default(void)
{
    return (sched_config){
        .max_batch_tokens = 512,
        .max_seqs = 64,
        .max_waiting = 256,
        .kv_cache_mb = 256,
        .block_tokens = KV_BLOCK_TOKENS_DEFAULT,
        .kv_type = KV_TYPE_F16,
        .prefix_cache = true,
        .max_ctx = 0,
        .n_threads = 0,
        .name = "model",
    };
}

/* ------------------------------------------------------------- handles -- */

static void handle_free(sched_handle *h)
{
    sample_seq_free(h->ss);
    free(h->ps.tokens);
    free(h);
}

void sched_handle_release(sched_handle *h)
{
    if (h && atomic_fetch_sub(&h->refs, 1) == 1)
        handle_free(h);
}

static void wake(sched *s)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the scheduler will wake. */
    ssize_t rc = write(s->efd, &one, sizeof one);
    (void)rc;
}

void sched_cancel(sched *s, sched_handle *h)
{
    atomic_store(&h->is_cancelled, true);
    wake(s);
}

/* --------------------------------------------------------------- submit -- */

int sched_submit(sched *s, const sched_request *r, sched_handle **out, err_msg *e)
{
    *out = NULL;
    if (atomic_load(&s->is_stopping))
        return err_set(e, ERR_UNAVAILABLE, "model %s is shutting down", s->name);
    if (r->n_prompt == 0)
        return err_set(e, ERR_INVAL, "the prompt is empty");
    if (!r->sink.on_delta || !r->sink.on_done || !r->sink.on_error)
        return err_set(e, ERR_INVAL, "sched: sink callbacks missing");
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->n_vocab)
            return err_set(e, ERR_INVAL, "prompt token %d at %zu is outside the vocabulary (%d)",
                           r->prompt[i], i, s->n_vocab);
    size_t n_min;
    if (!size_add_ok(r->n_prompt, 1, &n_min))
        return err_set(e, ERR_TOO_LARGE, "prompt too long");
    int rc = kv_check_fits(s->kv, n_min, e);
    if (rc != 0)
        return rc;

    sched_handle *h = calloc(1, sizeof *h);
    if (!h)
        return err_set(e, ERR_NOMEM, "out of memory");
    rc = sample_seq_new(&r->params, s->n_vocab, &h->ss, e);
    if (rc != 0)
        goto fail;
    rc = sample_seq_add_prompt(h->ss, r->prompt, r->n_prompt);
    if (rc != 0) {
        err_set(e, rc, "prompt tokens rejected by the sampler");
        goto fail;
    }
    size_t want = r->n_prompt + r->params.max_tokens; // max_tokens <= 2^20: no overflow
    h->cap_tokens = MIN(want, s->max_ctx) + 1;
    h->ps.tokens = malloc(h->cap_tokens * sizeof *h->ps.tokens);
    if (!h->ps.tokens) {
        rc = err_set(e, ERR_NOMEM, "out of memory for %zu tokens", h->cap_tokens);
        goto fail;
    }
    memcpy(h->ps.tokens, r->prompt, r->n_prompt * sizeof *r->prompt);
    h->ps.n_tokens = h->n_prompt = r->n_prompt;
    h->ps.kv_id = -1;
    h->ps.priority = r->priority;
    h->ps.owner = h;
    h->sink = r->sink;
    h->deadline_ns = r->deadline_ns;
    h->ignore_eos = r->ignore_eos;
    h->want_logprobs = r->params.want_logprobs;
    tok_decoder_init(&h->dec, s->cfg.vocab, 0);
    h->owner = s;
    h->t_submit = clock_mono_ns();
    h->is_queued = true;
    atomic_init(&h->refs, 2);
    atomic_init(&h->is_cancelled, false);

    /* Admission control: count first, undo when over the limit. */
    if (atomic_fetch_add(&s->n_queued, 1) >= s->cfg.max_waiting) {
        atomic_fetch_sub(&s->n_queued, 1);
        rc = err_set(e, ERR_RATE_LIMIT, "model %s has %zu requests waiting (max_waiting)",
                     s->name, s->cfg.max_waiting);
        goto fail;
    }
    /* *out is written before the push publishes h, so a sink callback that
     * reads the handle from where the caller stored it (to cancel) sees it. */
    *out = h;
    /* Treiber push: lock-free for any number of producers. */
    sched_handle *head = atomic_load(&s->submit_head);
    do {
        h->next_submit = head;
    } while (!atomic_compare_exchange_weak(&s->submit_head, &head, h));
    wake(s);
    return 0;
fail:
    handle_free(h);
    return rc;
}

/* ------------------------------------------------------ request endings -- */

const double sched_ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                    0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0};
const double sched_tpot_bounds[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                    0.3,  0.4,   0.5,  0.75,  1.0, 2.5};
const double sched_e2e_bounds[] = {0.3, 0.5,  0.8,  1.0,  1.5,  2.0,  2.5, 5.0,
                                   10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0};
_Static_assert(ARRAY_LEN(sched_ttft_bounds) <= SCHED_HIST_MAX, "ttft buckets");
_Static_assert(ARRAY_LEN(sched_tpot_bounds) <= SCHED_HIST_MAX, "tpot buckets");
_Static_assert(ARRAY_LEN(sched_e2e_bounds) <= SCHED_HIST_MAX, "e2e buckets");
const size_t sched_ttft_n_bounds = ARRAY_LEN(sched_ttft_bounds);
const size_t sched_tpot_n_bounds = ARRAY_LEN(sched_tpot_bounds);
const size_t sched_e2e_n_bounds = ARRAY_LEN(sched_e2e_bounds);

static void hist_observe(sched_hist *h, const double *bounds, size_t nb, double v)
{
    for (size_t i = 0; i < nb; i++)
        if (v <= bounds[i])
            h->count[i]++;
    h->n++;
    h->sum += v;
}

/* Records the request's latencies in the histograms. */
static void observe(sched *s, const sched_usage *u, size_t n_generated, int reason)
{
    if (u->ttft_ns) {
        double ttft = (double)u->ttft_ns / 1e9;
        hist_observe(&s->st.ttft, sched_ttft_bounds, sched_ttft_n_bounds, ttft);
        obs_hist_observe(s->ms.ttft, ttft);
        if (n_generated >= 2) {
            double tpot = (double)(u->e2e_ns - u->ttft_ns) / 1e9 / (double)(n_generated - 1);
            hist_observe(&s->st.tpot, sched_tpot_bounds, sched_tpot_n_bounds, tpot);
            obs_hist_observe(s->ms.tpot, tpot);
        }
    }
    double e2e = (double)u->e2e_ns / 1e9;
    hist_observe(&s->st.e2e, sched_e2e_bounds, sched_e2e_n_bounds, e2e);
    obs_hist_observe(s->ms.e2e, e2e);
    obs_counter_add(s->ms.finished[reason], 1);
}

static void fill_usage(const sched_handle *h, sched_usage *u)
{
    uint64_t now = clock_mono_ns();
    *u = (sched_usage){
        .prompt_tokens = h->n_prompt,
        .completion_tokens = h->n_generated,
        .cached_tokens = h->cached_tokens,
        .queued_ns = h->t_admit ? h->t_admit - h->t_submit : now - h->t_submit,
        .ttft_ns = h->t_first ? h->t_first - h->t_submit : 0,
        .e2e_ns = now - h->t_submit,
    };
}

/* Takes h out of the lists and the KV cache (it may be in neither). */
static void detach(sched *s, sched_handle *h)
{
    sched_list_remove(&s->L, &h->ps);
    if (h->ps.kv_id >= 0) {
        kv_seq_close(s->kv, h->ps.kv_id);
        h->ps.kv_id = -1;
    }
    if (h->is_queued) {
        h->is_queued = false;
        atomic_fetch_sub(&s->n_queued, 1);
    }
}

static void publish(sched *s);

/* The request's final event goes out after publish: a client that has its
 * answer reads metrics that count it (its tokens, its finish reason). */
static void end_done(sched *s, sched_handle *h, sched_finish why)
{
    detach(s, h);
    sched_usage u;
    fill_usage(h, &u);
    observe(s, &u, h->n_generated,
            why == SCHED_FINISH_STOP ? SCHED_REASON_STOP : SCHED_REASON_LENGTH);
    if (why == SCHED_FINISH_STOP)
        s->st.finished_stop++;
    else
        s->st.finished_length++;
    publish(s);
    h->sink.on_done(h->sink.ctx, why, &u);
    sched_handle_release(h);
}

static void end_error(sched *s, sched_handle *h, int code, const char *msg)
{
    detach(s, h);
    sched_usage u;
    fill_usage(h, &u);
    observe(s, &u, h->n_generated,
            code == ERR_CANCELLED ? SCHED_REASON_ABORT : SCHED_REASON_ERROR);
    if (code == ERR_CANCELLED)
        s->st.finished_cancelled++;
    else
        s->st.finished_error++;
    publish(s);
    h->sink.on_error(h->sink.ctx, code, msg, &u);
    sched_handle_release(h);
}

/* ------------------------------------------------------ the step loop -- */

/* Moves every submitted request into the waiting list, in submission order. */
static void drain(sched *s)
{
    sched_handle *h = atomic_exchange(&s->submit_head, NULL);
    sched_handle *rev = NULL;
    while (h) {
        sched_handle *next = h->next_submit;
        h->next_submit = rev;
        rev = h;
        h = next;
    }
    for (h = rev; h; h = h->next_submit) {
        h->ps.arrival = ++s->n_arrivals; // unique, in submission order
        /* cap_waiting = max_waiting + max_seqs: admission control bounded the
         * queued count, preempted sequences use the rest. */
        if (sched_wait_push(&s->L, &h->ps) != 0)
            end_error(s, h, ERR_RATE_LIMIT, "the waiting queue is full");
    }
}

/* Ends cancelled and expired requests, running or waiting. */
static void reap(sched *s)
{
    uint64_t now = 0;
    sched_seq **lists[2] = {s->L.running, s->L.waiting};
    size_t *counts[2] = {&s->L.n_running, &s->L.n_waiting};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < *counts[l];) {
            sched_handle *h = lists[l][i]->owner;
            if (atomic_load_explicit(&h->is_cancelled, memory_order_relaxed)) {
                end_error(s, h, ERR_CANCELLED, "the request was cancelled");
                continue; // the list shifted into slot i
            }
            if (h->deadline_ns) {
                if (!now)
                    now = clock_mono_ns();
                if (now >= h->deadline_ns) {
                    end_error(s, h, ERR_TIMEOUT, "the request deadline passed");
                    continue;
                }
            }
            i++;
        }
    }
}

/* Samples the logits rows [begin, end) of the step, each with its request's
 * own sampler (thread-independent results) and this participant's scratch. */
static void sample_rows(void *arg, size_t begin, size_t end, int tid)
{
    sched *s = arg;
    for (size_t r = begin; r < end; r++)
        s->res_rc[r] = sample_next(s->rows[r]->ss, s->scs[tid],
                                   s->logits + r * (size_t)s->n_vocab, &s->res[r]);
}

/* Detokenizes and delivers h's next token, sampled into res (rc: sample_next's
 * return). Ends the request when it finishes. */
static void emit(sched *s, sched_handle *h, const sample_result *resp, int rc)
{
    sample_result res = *resp;
    if (rc != 0) {
        end_error(s, h, ERR_INTERNAL, "sampling failed: no token has a finite logit");
        return;
    }
    int32_t tok = res.token;
    if (!h->t_first)
        h->t_first = clock_mono_ns();
    h->n_generated++;
    s->st.generation_tokens++;
    h->ps.tokens[h->ps.n_tokens++] = tok;

    char *out = s->out;
    size_t n_out = 0;
    sched_delta d = {.token = tok, .text = out, .len = 0, .lp = h->want_logprobs ? &res : NULL};
    if (!h->ignore_eos && tok_vocab_is_eog(s->cfg.vocab, tok)) {
        d.len = sample_flush(h->ss, out, DELTA_MAX);
        h->sink.on_delta(h->sink.ctx, &d);
        end_done(s, h, SCHED_FINISH_STOP);
        return;
    }
    buf_reset(&s->piece);
    if (tok_decoder_push(&h->dec, tok, &s->piece) != 0)
        buf_reset(&s->piece); // cannot happen within PIECE_MAX: stream nothing
    int st = sample_accept(h->ss, tok, s->piece.data ? s->piece.data : "", s->piece.len, out,
                           DELTA_MAX, &n_out);
    if (st < 0) {
        end_error(s, h, ERR_INTERNAL, "sampler refused the token");
        return;
    }
    d.len = n_out;
    h->sink.on_delta(h->sink.ctx, &d);
    if (st == SAMPLE_STOP) {
        end_done(s, h, SCHED_FINISH_STOP);
    } else if (st == SAMPLE_LENGTH || h->ps.n_tokens >= h->cap_tokens) {
        if (st != SAMPLE_LENGTH) {
            /* The context is full before max_tokens: flush what is held. */
            d.len = sample_flush(h->ss, out, DELTA_MAX);
            d.lp = NULL;
            if (d.len)
                h->sink.on_delta(h->sink.ctx, &d);
        }
        end_done(s, h, SCHED_FINISH_LENGTH);
    }
}

static void publish(sched *s)
{
    kv_stats ks;
    kv_get_stats(s->kv, &ks);
    s->st.n_running = s->L.n_running;
    s->st.n_waiting = s->L.n_waiting;
    s->st.kv_usage = kv_usage_ratio(s->kv);
    s->st.kv_fragmentation = kv_fragmentation(s->kv);
    s->st.kv_blocks = ks.n_blocks;
    s->st.prefix_queries_tokens = ks.queries_tokens;
    s->st.prefix_hits_tokens = ks.hits_tokens;
    pthread_mutex_lock(&s->stats_lock);
    s->pub = s->st;
    pthread_mutex_unlock(&s->stats_lock);

    /* Metrics: counters by their deltas since the last publish, gauges set. */
    const sched_stats *a = &s->last, *b = &s->st;
    obs_counter_add(s->ms.prompt, (double)(b->prompt_tokens - a->prompt_tokens));
    obs_counter_add(s->ms.gen, (double)(b->generation_tokens - a->generation_tokens));
    obs_counter_add(s->ms.hits, (double)(b->prefix_hits_tokens - a->prefix_hits_tokens));
    obs_counter_add(s->ms.queries, (double)(b->prefix_queries_tokens - a->prefix_queries_tokens));
    obs_counter_add(s->ms.preempt, (double)(b->preemptions - a->preemptions));
    obs_counter_add(s->ms.steps, (double)(b->steps - a->steps));
    obs_gauge_set(s->ms.running, (double)b->n_running);
    size_t q = atomic_load(&s->n_queued);
    obs_gauge_set(s->ms.waiting, (double)MAX(q, b->n_waiting));
    obs_gauge_set(s->ms.usage, b->kv_usage);
    obs_gauge_set(s->ms.frag, b->kv_fragmentation);
    s->last = s->st;
}

/* One scheduler iteration. Returns true when a forward step ran. */
static bool step(sched *s)
{
    uint64_t t_plan = clock_mono_ns();
    drain(s);
    reap(s);
    int rc = sched_plan_step(&s->L, s->kv, &s->lim, &s->plan);
    s->st.preemptions += s->plan.n_preempted;
    /* Admitted prompts that reuse the first tokens of a cached block get them
     * copied into a block of their own before the forward pass reads them. */
    const kv_copy *cp;
    size_t n_cp = kv_pending_copies(s->kv, &cp);
    for (size_t i = 0; i < n_cp; i++) {
        int crc = llama_kv_copy_block(s->lkv, cp[i].dst, cp[i].src);
        ASSERT(crc == 0); // both pools have the same number of blocks
        (void)crc;
    }
    kv_copies_done(s->kv);
    for (size_t i = 0; i < s->plan.n_exhausted; i++) {
        sched_handle *h = s->plan.exhausted[i]->owner;
        sched_delta d = {.token = -1, .text = s->out};
        d.len = sample_flush(h->ss, s->out, DELTA_MAX);
        if (d.len)
            h->sink.on_delta(h->sink.ctx, &d);
        LOG_WARN("sched", "model %s: a sequence of %zu tokens outgrew the KV pool", s->name,
                 h->ps.n_tokens);
        end_done(s, h, SCHED_FINISH_LENGTH);
    }
    if (rc != 0) {
        publish(s);
        return false;
    }
    uint64_t now = clock_mono_ns();
    size_t n_logits = 0;
    for (size_t i = 0; i < s->plan.n_items; i++) {
        const sched_item *it = &s->plan.items[i];
        sched_handle *h = it->seq->owner;
        if (h->is_queued) {
            h->is_queued = false;
            atomic_fetch_sub(&s->n_queued, 1);
        }
        if (!h->is_admitted) {
            h->is_admitted = true;
            h->t_admit = now;
            h->cached_tokens = it->seq->n_cached;
            s->st.prompt_tokens += h->n_prompt;
        }
        size_t nb;
        const int32_t *table = kv_seq_table(s->kv, it->seq->kv_id, &nb);
        s->spans[i] = (llama_span){
            .tokens = it->seq->tokens + it->start,
            .n = it->n,
            .pos = it->start,
            .blocks = table,
            .n_blocks = nb,
            .n_logits = it->want_logits ? 1 : 0,
        };
        n_logits += s->spans[i].n_logits;
    }
    err_msg e;
    uint64_t t0 = clock_mono_ns();
    rc = llama_forward(s->ctx, s->lkv, s->spans, s->plan.n_items, s->logits, &e);
    s->st.steps++;
    uint64_t t1 = clock_mono_ns();
    if (rc != 0) {
        /* Cannot happen with a valid plan; end the step's requests rather than
         * loop on the same failure. */
        LOG_ERROR("sched", "model %s: forward step failed: %s", s->name, err_text(&e, rc));
        for (size_t i = 0; i < s->plan.n_items; i++)
            end_error(s, s->plan.items[i].seq->owner, ERR_INTERNAL, "forward pass failed");
        publish(s);
        return true;
    }
    sched_plan_commit(s->kv, &s->plan);
    size_t row = 0;
    for (size_t i = 0; i < s->plan.n_items; i++)
        if (s->plan.items[i].want_logits)
            s->rows[row++] = s->plan.items[i].seq->owner;
    ASSERT(row == n_logits);
    /* Sampling runs on the compute pool, a row per sequence (a full pass over
     * the vocabulary each, more with temperature: exp of every candidate);
     * delivery stays here, in batch order. */
    pool_for(n_logits > 1 ? s->pool : NULL, n_logits, 1, sample_rows, s);
    uint64_t t2 = clock_mono_ns();
    for (row = 0; row < n_logits; row++)
        emit(s, s->rows[row], &s->res[row], s->res_rc[row]);
    publish(s);
    /* One line per step with --log-debug-modules sched: what the step held and
     * where its time went (planning before the forward pass; sampling, then
     * delivery and publishing, after it), to see how decode and prefill share
     * the steps and what the scheduler itself costs. */
    LOG_DEBUG("sched",
              "model %s: step %" PRIu64 ": %zu tokens, %zu sequences, %zu logits rows, "
              "%zu admitted, %zu waiting; plan %.3f ms, forward %.2f ms, sample %.3f ms, deliver "
              "%.3f ms",
              s->name, s->st.steps, s->plan.n_tokens, s->plan.n_items, n_logits, s->plan.n_admitted,
              s->L.n_waiting, (double)(t0 - t_plan) / 1e6, (double)(t1 - t0) / 1e6,
              (double)(t2 - t1) / 1e6, (double)(clock_mono_ns() - t2) / 1e6);
    return true;
}

static bool any_deadline(const sched *s)
{
    for (size_t i = 0; i < s->L.n_waiting; i++)
        if (((sched_handle *)s->L.waiting[i]->owner)->deadline_ns)
            return true;
    return false;
}

static void *sched_main(void *arg)
{
    sched *s = arg;
    while (!atomic_load(&s->is_stopping)) {
        if (step(s))
            continue;
        /* Idle (or blocked on KV): sleep until a submission or cancel arrives;
         * poll now and then while something waits with a deadline. */
        struct pollfd p = {.fd = s->efd, .events = POLLIN};
        int timeout_ms = (s->L.n_waiting > 0 && any_deadline(s)) ? 20 : -1;
        if (s->L.n_waiting > 0 && s->L.n_running == 0)
            timeout_ms = 20; // cannot happen for long: admission retries
        int n = poll(&p, 1, timeout_ms);
        if (n > 0) {
            uint64_t v;
            ssize_t rc = read(s->efd, &v, sizeof v);
            (void)rc;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ lifecycle -- */

int sched_new(model *m, const sched_config *cfg, sched **out, err_msg *e)
{
    *out = NULL;
    if (!cfg->vocab)
        return err_set(e, ERR_INVAL, "sched: a tokenizer vocabulary is required");
    if (cfg->max_seqs == 0 || cfg->max_batch_tokens == 0 || cfg->max_seqs > 4096 ||
        cfg->max_batch_tokens > LLAMA_BATCH_MAX)
        return err_set(e, ERR_INVAL,
                       "max_seqs must be in [1, 4096] and max_batch_tokens in [1, %d]",
                       LLAMA_BATCH_MAX);
    if (cfg->max_seqs > cfg->max_batch_tokens)
        return err_set(e, ERR_INVAL, "max_seqs (%zu) exceeds max_batch_tokens (%zu)",
                       cfg->max_seqs, cfg->max_batch_tokens);
    sched *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, ERR_NOMEM, "out of memory");
    s->efd = -1;
    s->cfg = *cfg;
    buf_init(&s->piece, PIECE_MAX);
    snprintf(s->name, sizeof s->name, "%s", cfg->name ? cfg->name : "model");
    s->cfg.name = s->name;
    pthread_mutex_init(&s->stats_lock, NULL);
    atomic_init(&s->submit_head, NULL);
    atomic_init(&s->n_queued, 0);
    atomic_init(&s->is_stopping, false);
    int rc;

    const llama_hparams *hp = model_hparams(m);
    s->n_vocab = (int32_t)hp->n_vocab;
    llama_config lc = llama_config_default();
    lc.max_batch_tokens = cfg->max_batch_tokens;
    lc.max_ctx = cfg->max_ctx;
    lc.max_logits = cfg->max_seqs;
    if (cfg->pool) {
        lc.pool = cfg->pool;
    } else {
        rc = pool_new(cfg->n_threads, &s->own_pool);
        if (rc != 0) {
            err_set(e, rc, "sched: cannot start %d compute threads", cfg->n_threads);
            goto fail;
        }
        lc.pool = s->own_pool;
    }
    s->pool = lc.pool;
    rc = llama_ctx_new(m, &lc, &s->ctx, e);
    if (rc != 0)
        goto fail;
    s->m = model_ref(m);
    s->max_ctx = llama_ctx_config(s->ctx)->max_ctx;

    kv_config kc = kv_config_default();
    kc.block_tokens = cfg->block_tokens;
    llama_kv_type lt = cfg->kv_type == KV_TYPE_Q8_0 ? LLAMA_KV_Q8_0 : LLAMA_KV_F16;
    kc.token_bytes = llama_kv_token_bytes_type(hp, lt);
    if (kc.token_bytes == 0) {
        rc = err_set(e, ERR_INVAL, "model %s: kv_cache_type q8_0 needs K/V rows of a multiple of "
                     "32 elements; this model's are %u", s->name, hp->kv_dim);
        goto fail;
    }
    if (cfg->kv_cache_bytes) {
        kc.cache_bytes = cfg->kv_cache_bytes;
    } else if (!size_mul_ok(cfg->kv_cache_mb, (size_t)1 << 20, &kc.cache_bytes)) {
        rc = err_set(e, ERR_INVAL, "kv_cache_mb %zu is too large", cfg->kv_cache_mb);
        goto fail;
    }
    kc.max_seqs = cfg->max_seqs;
    kc.max_seq_tokens = s->max_ctx;
    kc.prefix_cache = cfg->prefix_cache;
    rc = kv_cache_new(&kc, &s->kv, e);
    if (rc != 0)
        goto fail;
    rc = llama_kv_new_type(m, kv_n_blocks(s->kv), cfg->block_tokens, lt, &s->lkv, e);
    if (rc != 0)
        goto fail;
    s->n_scs = (size_t)pool_threads(s->pool);
    s->scs = calloc(s->n_scs, sizeof *s->scs);
    if (!s->scs) {
        rc = err_set(e, ERR_NOMEM, "sched: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < s->n_scs; i++) {
        rc = sample_scratch_new(s->n_vocab, &s->scs[i]);
        if (rc != 0) {
            err_set(e, rc, "sched: sampling scratch for %d tokens", s->n_vocab);
            goto fail;
        }
    }

    size_t ms = cfg->max_seqs, cap_wait = cfg->max_waiting + cfg->max_seqs, nlog;
    if (!size_mul_ok(ms, (size_t)s->n_vocab, &nlog)) {
        rc = err_set(e, ERR_OVERFLOW, "sched: logits buffer overflows");
        goto fail;
    }
    s->run = calloc(ms, sizeof *s->run);
    s->wait = calloc(cap_wait, sizeof *s->wait);
    s->items = calloc(ms, sizeof *s->items);
    s->preempted = calloc(ms, sizeof *s->preempted);
    s->exhausted = calloc(ms, sizeof *s->exhausted);
    s->spans = calloc(ms, sizeof *s->spans);
    s->logits = calloc(nlog, sizeof *s->logits);
    s->rows = calloc(ms, sizeof *s->rows);
    s->res = calloc(ms, sizeof *s->res);
    s->res_rc = calloc(ms, sizeof *s->res_rc);
    s->out = malloc(DELTA_MAX);
    if (!s->run || !s->wait || !s->items || !s->preempted || !s->exhausted || !s->spans ||
        !s->logits || !s->rows || !s->res || !s->res_rc || !s->out) {
        rc = err_set(e, ERR_NOMEM, "sched: out of memory");
        goto fail;
    }
    /* Reserve the piece buffer now so delivery never allocates. */
    if (buf_append(&s->piece, s->out, PIECE_MAX) != 0) {
        rc = err_set(e, ERR_NOMEM, "sched: out of memory");
        goto fail;
    }
    buf_reset(&s->piece);
    s->lim = (sched_limits){.max_batch_tokens = cfg->max_batch_tokens, .max_seqs = ms};
    s->L = (sched_lists){.running = s->run, .cap_running = ms, .waiting = s->wait,
                         .cap_waiting = cap_wait};
    s->plan = (sched_plan){.items = s->items, .preempted = s->preempted,
                           .exhausted = s->exhausted};

    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        rc = err_set(e, ERR_IO, "sched: eventfd: %s", strerror(errno));
        goto fail;
    }
    sched_series_init(&s->ms, cfg->metrics, s->name);
    publish(s);
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        rc = err_set(e, ERR_NOMEM, "sched: cannot start the scheduler thread");
        goto fail;
    }
    s->has_thread = true;
    LOG_INFO("sched", "model %s: %zu KV blocks of %zu tokens (%s, %zu bytes), context %zu, "
                      "max_seqs %zu, max_batch_tokens %zu, max_waiting %zu",
             s->name, kv_n_blocks(s->kv), cfg->block_tokens,
             lt == LLAMA_KV_Q8_0 ? "q8_0" : "f16", llama_kv_bytes(s->lkv), s->max_ctx, ms,
             cfg->max_batch_tokens, cfg->max_waiting);
    *out = s;
    return 0;
fail:
    sched_free(s);
    return rc;
}

void sched_free(sched *s)
{
    if (!s)
        return;
    atomic_store(&s->is_stopping, true);
    if (s->has_thread) {
        wake(s);
        pthread_join(s->thread, NULL);
    }
    /* The thread is gone: end what is left from this thread. */
    if (s->kv) {
        drain(s);
        while (s->L.n_running > 0)
            end_error(s, s->L.running[0]->owner, ERR_UNAVAILABLE, "the model was unloaded");
        while (s->L.n_waiting > 0)
            end_error(s, s->L.waiting[0]->owner, ERR_UNAVAILABLE, "the model was unloaded");
    }
    if (s->efd >= 0)
        close(s->efd);
    free(s->run);
    free(s->wait);
    free(s->items);
    free(s->preempted);
    free(s->exhausted);
    free(s->spans);
    free(s->logits);
    free(s->rows);
    free(s->res);
    free(s->res_rc);
    free(s->out);
    buf_deinit(&s->piece);
    for (size_t i = 0; s->scs && i < s->n_scs; i++)
        sample_scratch_free(s->scs[i]);
    free(s->scs);
    llama_kv_free(s->lkv);
    kv_cache_free(s->kv);
    llama_ctx_free(s->ctx);
    pool_free(s->own_pool);
    model_unref(s->m);
    pthread_mutex_destroy(&s->stats_lock);
    free(s);
}

void sched_get_stats(sched *s, sched_stats *out)
{
    pthread_mutex_lock(&s->stats_lock);
    *out = s->pub;
    pthread_mutex_unlock(&s->stats_lock);
    /* Requests still in the submit stack are waiting too. */
    size_t q = atomic_load(&s->n_queued);
    if (q > out->n_waiting)
        out->n_waiting = q;
}

int32_t sched_n_vocab(const sched *s)
{
    return s->n_vocab;
}

size_t sched_max_ctx(const sched *s)
{
    return s->max_ctx;
}
