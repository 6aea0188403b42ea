/*
 * engine/sched_plan — step composition. See plan.h for the rules; this file keeps
 * the lists ordered and the KV reservations in step with the items.
 */
#include "engine/sched_plan.h"

#include <string.h>

/* True when a should run before b: priority descending, then arrival. */
static bool before(const sched_seq *a, const sched_seq *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->arrival < b->arrival;
}

static void list_insert(sched_seq **v, size_t *n, sched_seq *s)
{
    size_t i = *n;
    while (i > 0 && before(s, v[i - 1]))
        i--;
    memmove(v + i + 1, v + i, (*n - i) * sizeof *v);
    v[i] = s;
    (*n)++;
}

static bool list_remove(sched_seq **v, size_t *n, sched_seq *s)
{
    for (size_t i = 0; i < *n; i++) {
        if (v[i] == s) {
            memmove(v + i, v + i + 1, (*n - i - 1) * sizeof *v);
            (*n)--;
            return true;
        }
    }
    return false;
}

int sched_wait_push(sched_lists *L, sched_seq *s)
{
    if (L->n_waiting >= L->cap_waiting)
        return ERR_RATE_LIMIT;
    list_insert(L->waiting, &L->n_waiting, s);
    return 0;
}

void sched_list_remove(sched_lists *L, sched_seq *s)
{
    if (!list_remove(L->running, &L->n_running, s))
        list_remove(L->waiting, &L->n_waiting, s);
}

/* Drops s's item from the plan (it was preempted after being planned). */
static void drop_item(sched_plan *out, const sched_seq *s)
{
    for (size_t i = 0; i < out->n_items; i++) {
        if (out->items[i].seq == s) {
            out->n_tokens -= out->items[i].n;
            memmove(out->items + i, out->items + i + 1,
                    (out->n_items - i - 1) * sizeof *out->items);
            out->n_items--;
            return;
        }
    }
}

/* Moves the running tail back to waiting, freeing its blocks. */
static sched_seq *preempt_tail(sched_lists *L, kv_cache *kv, sched_plan *out)
{
    sched_seq *v = L->running[--L->n_running];
    drop_item(out, v);
    kv_seq_close(kv, v->kv_id);
    v->kv_id = -1;
    v->n_computed = 0;
    /* The waiting list always has room for every running sequence. */
    list_insert(L->waiting, &L->n_waiting, v);
    out->preempted[out->n_preempted++] = v;
    return v;
}

/* Token slots s could reach right now: its blocks plus every available one. */
static size_t reachable(const kv_cache *kv, const sched_seq *s)
{
    size_t held;
    kv_seq_table(kv, s->kv_id, &held);
    return (held + kv_blocks_available(kv)) * kv_block_tokens(kv);
}

/*
 * Reserves blocks for up to want tokens of running sequence s, preempting the
 * running tail while none can be had. Returns the tokens granted (>= 1), or 0
 * when s itself was preempted or exhausted (it is no longer running).
 */
static size_t grant(sched_lists *L, kv_cache *kv, sched_plan *out, sched_seq *s, size_t want)
{
    for (;;) {
        size_t cap = reachable(kv, s);
        size_t n = want;
        if (s->n_computed + n > cap)
            n = cap > s->n_computed ? cap - s->n_computed : 0;
        if (n > 0 && kv_seq_reserve(kv, s->kv_id, s->n_computed + n) == 0)
            return n;
        if (L->running[L->n_running - 1] == s) {
            if (L->n_running == 1) {
                /* Nothing else holds blocks, yet s does not fit: it never will. */
                L->n_running--;
                kv_seq_close(kv, s->kv_id);
                s->kv_id = -1;
                out->exhausted[out->n_exhausted++] = s;
            } else {
                preempt_tail(L, kv, out);
            }
            return 0;
        }
        preempt_tail(L, kv, out);
    }
}

static void add_item(sched_plan *out, sched_seq *s, size_t n)
{
    out->items[out->n_items++] = (sched_item){
        .seq = s,
        .start = s->n_computed,
        .n = n,
        .want_logits = s->n_computed + n == s->n_tokens,
    };
    out->n_tokens += n;
}

int sched_plan_step(sched_lists *L, kv_cache *kv, const sched_limits *lim, sched_plan *out)
{
    out->n_items = out->n_tokens = out->n_preempted = out->n_exhausted = out->n_admitted = 0;
    size_t budget = lim->max_batch_tokens;

    /* 1. Decode tokens of running sequences, oldest first. grant() may shrink
     * the list from the tail, so walk by index and re-read n_running. */
    for (size_t i = 0; i < L->n_running && budget > 0;) {
        sched_seq *s = L->running[i];
        ASSERT(s->n_tokens > s->n_computed);
        if (s->n_tokens - s->n_computed != 1) {
            i++;
            continue;
        }
        if (grant(L, kv, out, s, 1) == 0)
            continue; // s left the list (it was the tail): i now points past the end
        add_item(out, s, 1);
        budget--;
        i++;
    }

    /* 2. Prefill chunks of running sequences with a partial prompt. */
    for (size_t i = 0; i < L->n_running && budget > 0;) {
        sched_seq *s = L->running[i];
        size_t left = s->n_tokens - s->n_computed;
        if (left == 1) {
            i++;
            continue;
        }
        size_t n = grant(L, kv, out, s, MIN(left, budget));
        if (n == 0)
            continue;
        add_item(out, s, n);
        budget -= n;
        i++;
    }

    /* 3. Admission, in waiting-list order; stops at the first that cannot start
     * so a large request is not starved by smaller ones behind it. */
    while (out->n_preempted == 0 && L->n_waiting > 0 && L->n_running < lim->max_seqs &&
           budget > 0) {
        sched_seq *s = L->waiting[0];
        int32_t id;
        if (kv_seq_open(kv, &id) != 0)
            break;
        s->kv_id = id;
        s->n_cached = kv_seq_match_prefix(kv, id, s->tokens, s->n_tokens);
        s->n_computed = s->n_cached;
        size_t left = s->n_tokens - s->n_computed;
        size_t n = MIN(left, budget);
        size_t cap = reachable(kv, s);
        if (s->n_computed + n > cap)
            n = cap > s->n_computed ? cap - s->n_computed : 0;
        if (n == 0 || kv_seq_reserve(kv, id, s->n_computed + n) != 0) {
            kv_seq_close(kv, id);
            s->kv_id = -1;
            s->n_computed = 0;
            break;
        }
        kv_note_prefix_query(kv, s->n_tokens, s->n_cached);
        list_remove(L->waiting, &L->n_waiting, s);
        list_insert(L->running, &L->n_running, s);
        add_item(out, s, n);
        out->n_admitted++;
        budget -= n;
    }
    return out->n_items > 0 ? 0 : ERR_BUSY;
}

void sched_plan_commit(kv_cache *kv, const sched_plan *out)
{
    for (size_t i = 0; i < out->n_items; i++) {
        sched_seq *s = out->items[i].seq;
        ASSERT(s->n_computed == out->items[i].start);
        kv_seq_commit(kv, s->kv_id, s->tokens + s->n_computed, out->items[i].n);
        s->n_computed += out->items[i].n;
    }
}
