/*
 * engine/sched_plan — step composition of the continuous-batching scheduler: which
 * sequences run in the next forward step, with how many tokens each, and who
 * is preempted to make room. Pure with respect to the model: it reads and
 * updates only the sequence lists and the KV block manager, so it is tested
 * alone; the scheduler (sched.c) executes the plan.
 *
 * A sequence holds tokens[0..n_tokens) (prompt, then generated tokens) of
 * which the first n_computed have their KV in the cache. Each step feeds it
 * tokens[n_computed..n_computed+n): a decoding sequence has exactly one token
 * left (the last sampled one), a prefilling one more than one.
 *
 * Rules of sched_plan_step, in order:
 *   1. Decode first: every running sequence with one token left gets that token
 *      (so inter-token latency stays low while long prompts arrive).
 *   2. Prefill chunks: running sequences with a partial prompt get
 *      min(remaining, budget left) tokens, oldest first (chunked prefill).
 *   3. Admission: waiting sequences, in queue order, join while the running set
 *      is below max_seqs and budget is left, each starting with the cached
 *      prefix of its tokens (kv_seq_match_prefix) and a chunk of the rest.
 *      No admission in a step that had to preempt (it would thrash).
 * The budget is max_batch_tokens tokens over all items. Both lists are kept in
 * order (priority descending, then arrival ascending); the running list's tail
 * is therefore the lowest-priority newest sequence: the preemption victim.
 *
 * Preemption: when a running sequence cannot get a block, the tail of the
 * running list is preempted (kv_seq_release, n_computed = 0, moved back to the
 * waiting list at its place by priority and arrival, its item dropped) until
 * the block is found. If the sequence itself is the tail it is preempted; if it
 * is the only running sequence the pool can never hold it and it is put on the
 * exhausted list (the scheduler finishes it with "length").
 *
 * Thread: the scheduler thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kv.h"

typedef struct sched_seq {
    int32_t *tokens;   // (cap) prompt then generated tokens; owned by the caller
    size_t n_tokens;   // tokens known
    size_t n_computed; // tokens whose KV is in the cache
    int32_t kv_id;     // kv slot while running, -1 while waiting
    int priority;      // higher runs first
    uint64_t arrival;  // submission order, unique
    size_t n_cached;   // tokens found in the prefix cache at the last admission
    void *owner;       // the scheduler's request
} sched_seq;

typedef struct sched_limits {
    size_t max_batch_tokens; // tokens per step (default 512)
    size_t max_seqs;         // running sequences (default 64)
} sched_limits;

/* Ordered lists of borrowed sequences, capacity fixed by the caller. */
typedef struct sched_lists {
    sched_seq **running;
    size_t n_running, cap_running; // cap_running >= max_seqs
    sched_seq **waiting;
    size_t n_waiting, cap_waiting; // room for max_waiting + max_seqs (preempted)
} sched_lists;

typedef struct sched_item {
    sched_seq *seq;
    size_t start;     // first token fed: seq->n_computed when planned
    size_t n;         // tokens fed: tokens[start..start+n)
    bool want_logits; // start + n == n_tokens: the step samples for this sequence
} sched_item;

/* One step's plan; arrays sized by the caller (items, preempted and exhausted:
 * max_seqs each). */
typedef struct sched_plan {
    sched_item *items;
    size_t n_items;
    size_t n_tokens;     // sum of items' n
    sched_seq **preempted;
    size_t n_preempted;
    sched_seq **exhausted; // can never fit the pool: finish with "length"
    size_t n_exhausted;
    size_t n_admitted;
} sched_plan;

/*
 * Inserts s into the waiting list at its place by priority then arrival.
 * Returns 0 or ERR_RATE_LIMIT when the list is full.
 */
int sched_wait_push(sched_lists *L, sched_seq *s) MUST_USE;

/* Removes s from whichever list holds it (no-op when in neither). Does not
 * touch the KV cache. */
void sched_list_remove(sched_lists *L, sched_seq *s);

/*
 * Composes the next step by the rules above, reserving every item's KV blocks
 * in kv (so the forward pass can write them) and moving sequences between the
 * lists. out's arrays must hold max_seqs entries. Returns 0, or ERR_BUSY when
 * nothing can run (no items; out->n_exhausted may still be > 0).
 */
int sched_plan_step(sched_lists *L, kv_cache *kv, const sched_limits *lim, sched_plan *out) MUST_USE;

/*
 * Records that the step ran: commits each item's tokens to the KV cache and
 * advances n_computed.
 */
void sched_plan_commit(kv_cache *kv, const sched_plan *out);
