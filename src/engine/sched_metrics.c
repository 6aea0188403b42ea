/*
 * engine/sched_metrics — the engine's Prometheus families (see sched.h) and
 * the per-model series a scheduler updates: counters and gauges once per
 * step from the deltas of its stats, histograms once per finished request.
 * All updates are obs's lock-free atomics, on the scheduler thread.
 */
#include "engine/sched_metrics.h"

#include <stdlib.h>
#include <string.h>

struct sched_metrics {
    obs_family *ttft, *tpot, *e2e;
    obs_family *prompt, *gen, *hits, *queries, *preempt, *finished, *steps;
    obs_family *running, *waiting, *usage, *frag;
};

int sched_metrics_new(obs_registry *r, sched_metrics **out, err_msg *e)
{
    *out = NULL;
    sched_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "out of memory");
    static const char *const lm[] = {"model"};
    static const char *const lmr[] = {"model", "reason"};
    const size_t cap = 64; // series per family: models (x4 reasons)
#define FAM(field, type, name, help, labels, nl, b, nb)                                        \
    do {                                                                                       \
        m->field = obs_family_new(r, type, name, help, labels, nl, b, nb, cap, e);             \
        if (!m->field)                                                                         \
            goto fail;                                                                         \
    } while (0)
    FAM(ttft, OBS_HISTOGRAM, "ferry_time_to_first_token_seconds",
        "Time from submission to the first generated token.", lm, 1, sched_ttft_bounds,
        sched_ttft_n_bounds);
    FAM(tpot, OBS_HISTOGRAM, "ferry_time_per_output_token_seconds",
        "Mean time per generated token after the first, per request.", lm, 1, sched_tpot_bounds,
        sched_tpot_n_bounds);
    FAM(e2e, OBS_HISTOGRAM, "ferry_e2e_request_latency_seconds",
        "Time from submission to the end of the request.", lm, 1, sched_e2e_bounds,
        sched_e2e_n_bounds);
    FAM(prompt, OBS_COUNTER, "ferry_prompt_tokens_total", "Prompt tokens of admitted requests.",
        lm, 1, NULL, 0);
    FAM(gen, OBS_COUNTER, "ferry_generation_tokens_total", "Generated tokens.", lm, 1, NULL, 0);
    FAM(hits, OBS_COUNTER, "ferry_prefix_cache_hits_total",
        "Prompt tokens found in the prefix cache.", lm, 1, NULL, 0);
    FAM(queries, OBS_COUNTER, "ferry_prefix_cache_queries_total",
        "Prompt tokens looked up in the prefix cache.", lm, 1, NULL, 0);
    FAM(preempt, OBS_COUNTER, "ferry_preemptions_total",
        "Sequences preempted (blocks freed, recomputed later) for lack of KV blocks.", lm, 1,
        NULL, 0);
    FAM(steps, OBS_COUNTER, "ferry_scheduler_steps_total",
        "Forward steps run (one per batch: continuous batching makes this fewer than the "
        "tokens generated).", lm, 1, NULL, 0);
    FAM(finished, OBS_COUNTER, "ferry_requests_finished_total",
        "Finished requests by reason: stop, length, abort (cancelled), error.", lmr, 2, NULL, 0);
    FAM(running, OBS_GAUGE, "ferry_requests_running", "Sequences in the running batch.", lm, 1,
        NULL, 0);
    FAM(waiting, OBS_GAUGE, "ferry_requests_waiting",
        "Requests waiting to run (queued or preempted).", lm, 1, NULL, 0);
    FAM(usage, OBS_GAUGE, "ferry_kv_cache_usage_ratio",
        "Share of KV cache blocks referenced by sequences.", lm, 1, NULL, 0);
    FAM(frag, OBS_GAUGE, "ferry_kv_cache_fragmentation_ratio",
        "Allocated KV token slots holding no token / allocated slots.", lm, 1, NULL, 0);
#undef FAM
    *out = m;
    return 0;
fail:
    free(m);
    return e && e->code ? e->code : ERR_NOMEM;
}

void sched_metrics_free(sched_metrics *m)
{
    free(m);
}

void sched_series_init(sched_series *ss, sched_metrics *m, const char *model_name)
{
    memset(ss, 0, sizeof *ss);
    if (!m)
        return;
    const char *lm[] = {model_name};
    ss->ttft = obs_series_get(m->ttft, lm);
    ss->tpot = obs_series_get(m->tpot, lm);
    ss->e2e = obs_series_get(m->e2e, lm);
    ss->prompt = obs_series_get(m->prompt, lm);
    ss->gen = obs_series_get(m->gen, lm);
    ss->hits = obs_series_get(m->hits, lm);
    ss->queries = obs_series_get(m->queries, lm);
    ss->preempt = obs_series_get(m->preempt, lm);
    ss->steps = obs_series_get(m->steps, lm);
    ss->running = obs_series_get(m->running, lm);
    ss->waiting = obs_series_get(m->waiting, lm);
    ss->usage = obs_series_get(m->usage, lm);
    ss->frag = obs_series_get(m->frag, lm);
    static const char *const reasons[SCHED_REASONS] = {"stop", "length", "abort", "error"};
    for (int i = 0; i < SCHED_REASONS; i++) {
        const char *lr[] = {model_name, reasons[i]};
        ss->finished[i] = obs_series_get(m->finished, lr);
    }
    /* Export zeros from the start, so "did it move" questions have a baseline. */
    obs_counter_add(ss->prompt, 0);
}
