/*
 * base/pool — a persistent compute thread pool with a parallel-for.
 *
 * pool_new(n) starts n-1 worker threads once; the thread that calls pool_for
 * is the n-th participant. pool_for(p, total, grain, fn, arg) cuts [0, total)
 * into chunks (multiples of grain except the last), hands them out through an
 * atomic counter, and returns when every chunk has run: it is a barrier.
 * No thread is created and nothing is allocated per call.
 *
 * Idle workers spin briefly (so back-to-back ops in a decode step do not pay
 * a wake-up) and then sleep on a futex, so an idle pool uses no CPU. The
 * caller waits for chunks, not for workers: a worker that took no chunk of a
 * job (descheduled, or still asleep) never delays it. pool_for_min sets a
 * minimum chunk size so small jobs are not split finer than pays off (a job
 * of one chunk runs on the calling thread, with no hand-off at all).
 *
 * Chunk boundaries depend only on (total, grain, thread count), never on timing,
 * and which thread runs a chunk is irrelevant to a correct fn: kernels that
 * compute each output in one call are bitwise independent of the thread count.
 *
 * Threads: pool_for and pool_free may be called by one thread at a time (the
 * pool's owner, e.g. a model's scheduler thread); fn must not call pool_for
 * on the same pool.
 */
#pragma once

#include <stddef.h>

#include "base/base.h"

typedef struct pool pool;

/*
 * fn runs chunk [begin, end) of a pool_for range; tid in [0, pool_threads)
 * names the participant (0 = the calling thread), e.g. to pick per-thread
 * scratch. A chunk never runs twice and chunks of one call may run in any order.
 */
typedef void (*pool_fn)(void *arg, size_t begin, size_t end, int tid);

#define POOL_THREADS_MAX 256

/*
 * Creates a pool of n_threads participants (the caller plus n_threads-1
 * workers); n_threads <= 0 means base_ncpu(). Returns 0, ERR_INVAL when
 * n_threads > POOL_THREADS_MAX, ERR_NOMEM, or ERR_INTERNAL when a thread
 * cannot be started. The caller owns *out and frees it with pool_free.
 */
int pool_new(int n_threads, pool **out) MUST_USE;

/* Stops and joins the workers and frees p. p may be NULL. */
void pool_free(pool *p);

/* Number of participants (workers + caller); 1 for p == NULL. */
int pool_threads(const pool *p);

/*
 * Runs fn over [0, total) in chunks that are multiples of grain (grain 0
 * counts as 1) and shrink towards the end (each about 1/(2*threads) of what
 * is left, so the participants finish together; equal chunks of about
 * total/(4*threads) when that would take more than 64), on all participants,
 * and returns when all chunks are done. total == 0 returns at once. p == NULL runs fn
 * once over the whole range on the calling thread.
 */
void pool_for(pool *p, size_t total, size_t grain, pool_fn fn, void *arg);

/*
 * pool_for with chunks of at least min_chunk items (except the last): at most
 * total/min_chunk chunks, so a job worth fewer than two chunks runs as one
 * call fn(arg, 0, total, 0) on the calling thread. Callers pick min_chunk so
 * one chunk is worth more than a hand-off (a few microseconds of work).
 * min_chunk < grain counts as grain; otherwise as pool_for.
 */
void pool_for_min(pool *p, size_t total, size_t grain, size_t min_chunk, pool_fn fn, void *arg);
