/*
 * base/pool — persistent workers, one packed job word, futex sleep.
 *
 * The job word (64 bits) is seq:32 | nchunks:16 | next:16. A participant takes
 * chunk `next` of job `seq` with one compare-and-swap that fails as soon as
 * the caller has moved to another job, so a worker that wakes up late never
 * runs (or reads the fields of) a job it did not claim, and the caller never
 * waits for a worker that took no chunk: completion is counted in chunks
 * (done == nchunks), not in workers. A worker that is descheduled while idle
 * (a loaded machine) therefore costs the caller nothing; only a chunk that a
 * descheduled worker holds does.
 *
 * Protocol (all atomics seq_cst):
 *   caller: done = 0; write the job fields; word = (seq, nchunks, 0);
 *           wake = seq; if sleepers: futex_wake(wake). Then claim chunks like
 *           a worker and wait until done == nchunks (spin, then futex on done).
 *   worker: wait until wake != seen (spin, then futex on wake); claim chunks of
 *           that seq by CAS on the word; after each chunk done++, and the
 *           increment that completes the job wakes the caller if it sleeps.
 * A claimed chunk keeps its job alive (the caller waits for it), so the job
 * fields read after a successful claim are that job's. The sleepers /
 * caller_sleeping flags and the futex value checks form Dekker pairs with the
 * wake / done updates, so no wake-up is lost.
 *
 * Spinning is bounded in time, not in PAUSE instructions: PAUSE takes ~300
 * cycles on this machine's CPUs (and a hypervisor may trap PAUSE loops), so a
 * count would mean very different waits on different hosts.
 */
#include "base/pool.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/*
 * How long an idle worker spins for the next job before it sleeps. A decode
 * step hands the pool a job every few hundred microseconds with a few
 * microseconds of serial work in between, so this covers the gaps inside a
 * step, and a pool idle between steps sleeps within 0.1 ms.
 */
#define WORKER_SPIN_NS 100000
/* How long the caller spins for the last chunks before it sleeps (a chunk
 * held by a descheduled worker can take a whole time slice). */
#define CALLER_SPIN_NS 50000
/* Pauses between clock reads while spinning. */
#define SPIN_CHECK 16

/* Chunks per participant when no minimum chunk size limits them: enough to
 * even out uneven progress, few enough that hand-out costs nothing. */
#define CHUNKS_PER_THREAD 4
/* The job word holds nchunks and next in 16 bits each. */
#define CHUNKS_MAX 0xffffu
/*
 * Guided chunks: each chunk takes 1/(2n) of what is left (at least min_chunk,
 * in whole grains), so the chunks shrink towards the end of a job and the
 * participants finish within about one small chunk of each other. Equal
 * chunks (n x CHUNKS_PER_THREAD of them) left the caller waiting ~5% of a
 * batched decode step for the last one (211 jobs per smollm-135m step).
 * Paired, job by job in one process (16-sequence decode steps): 1.03x; one
 * sequence 1.005-1.015x; 1/(3n) and 1/n both ~1.5% slower than 1/(2n). A job
 * whose guided chunks would number more than GUIDED_MAX (a huge range in
 * small grains) uses equal chunks.
 */
#define GUIDED_MAX 64

struct pool {
    int n;              /* participants incl. the caller */
    pthread_t *threads; /* n-1 workers */

    _Atomic uint64_t word;    /* seq:32 | nchunks:16 | next:16 */
    _Atomic uint32_t wake;    /* seq of the latest job; futex word for workers */
    _Atomic uint32_t done;    /* chunks finished in the current job; futex word for caller */
    _Atomic int sleepers;     /* workers inside futex_wait on wake */
    _Atomic int caller_sleeping;
    _Atomic int stop;
    uint32_t seq; /* caller-only copy of the current job's seq */

    /* current job, written by the caller before word is published; read by a
     * participant only after it has claimed a chunk of that job */
    pool_fn fn;
    void *arg;
    size_t total, chunk;
    size_t nbounds;                /* 0: chunks of `chunk`; else chunk k is [bounds[k], bounds[k+1]) */
    size_t bounds[GUIDED_MAX + 1];
};

typedef struct worker_arg {
    pool *p;
    int tid;
} worker_arg;

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define WORD_SEQ(w) ((uint32_t)((w) >> 32))
#define WORD_NCHUNKS(w) ((uint32_t)((w) >> 16) & 0xffffu)
#define WORD_NEXT(w) ((uint32_t)(w) & 0xffffu)

/* Claims and runs chunks of job seq until none is left (or another job is
 * published). Returns at once for a stale seq. */
static void run_chunks(pool *p, uint32_t seq, int tid)
{
    uint64_t w = atomic_load(&p->word);
    for (;;) {
        if (WORD_SEQ(w) != seq || WORD_NEXT(w) >= WORD_NCHUNKS(w))
            return;
        if (!atomic_compare_exchange_weak(&p->word, &w, w + 1))
            continue; /* w was reloaded */
        uint32_t nch = WORD_NCHUNKS(w);
        size_t begin, end;
        if (p->nbounds) {
            begin = p->bounds[WORD_NEXT(w)];
            end = p->bounds[WORD_NEXT(w) + 1];
        } else {
            begin = (size_t)WORD_NEXT(w) * p->chunk;
            end = begin + p->chunk < p->total ? begin + p->chunk : p->total;
        }
        p->fn(p->arg, begin, end, tid);
        if (atomic_fetch_add(&p->done, 1) + 1 == nch && atomic_load(&p->caller_sleeping))
            futex_wake(&p->done, 1);
        w = atomic_load(&p->word);
    }
}

static void *worker_main(void *varg)
{
    worker_arg *wa = varg;
    pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        uint64_t t0 = 0;
        int spins = 0;
        while ((g = atomic_load(&p->wake)) == seen) {
            if (++spins % SPIN_CHECK) {
                CPU_RELAX();
                continue;
            }
            uint64_t t = mono_ns();
            if (t0 == 0)
                t0 = t;
            if (t - t0 < WORKER_SPIN_NS)
                continue;
            atomic_fetch_add(&p->sleepers, 1);
            futex_wait(&p->wake, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            t0 = 0;
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        run_chunks(p, g, tid);
    }
}

int pool_new(int n_threads, pool **out)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = base_ncpu();
    if (n_threads > POOL_THREADS_MAX)
        return ERR_INVAL;
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return ERR_NOMEM;
    p->n = n_threads;
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return ERR_NOMEM;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        int rc = ENOMEM;
        if (wa) {
            wa->p = p;
            wa->tid = i;
            rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
        }
        if (rc != 0) {
            free(wa);
            p->n = i; /* join only the started ones */
            pool_free(p);
            return rc == ENOMEM ? ERR_NOMEM : ERR_INTERNAL;
        }
    }
    *out = p;
    return 0;
}

void pool_free(pool *p)
{
    if (!p)
        return;
    if (p->n > 1) {
        atomic_store(&p->stop, 1);
        atomic_fetch_add(&p->wake, 1);
        futex_wake(&p->wake, INT32_MAX);
        for (int i = 1; i < p->n; i++)
            pthread_join(p->threads[i - 1], NULL);
    }
    free(p->threads);
    free(p);
}

int pool_threads(const pool *p)
{
    return p ? p->n : 1;
}

void pool_for_min(pool *p, size_t total, size_t grain, size_t min_chunk, pool_fn fn, void *arg)
{
    if (total == 0)
        return;
    if (grain == 0)
        grain = 1;
    if (min_chunk < grain)
        min_chunk = grain;
    size_t want = p ? (size_t)p->n * CHUNKS_PER_THREAD : 1;
    if (total / min_chunk < want)
        want = total / min_chunk;
    if (!p || p->n == 1 || want <= 1 || total <= grain) {
        fn(arg, 0, total, 0);
        return;
    }
    size_t chunk = (total + want - 1) / want;
    chunk = (chunk + grain - 1) / grain * grain;
    if ((total + chunk - 1) / chunk > CHUNKS_MAX) { /* huge ranges: bigger chunks */
        chunk = (total + CHUNKS_MAX - 1) / CHUNKS_MAX;
        chunk = (chunk + grain - 1) / grain * grain;
    }
    uint32_t nch = (uint32_t)((total + chunk - 1) / chunk);
    if (nch <= 1) {
        fn(arg, 0, total, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->total = total;
    p->chunk = chunk;
    p->nbounds = 0;
    size_t b = 0, k = 0, div = 2 * (size_t)p->n;
    p->bounds[0] = 0;
    while (b < total && k < GUIDED_MAX) {
        size_t rem = total - b, c = (rem + div - 1) / div;
        c = (MAX(c, min_chunk) + grain - 1) / grain * grain;
        b += c + min_chunk > rem ? rem : c; // no last chunk under min_chunk
        p->bounds[++k] = b;
    }
    if (b == total && k > 1) {
        p->nbounds = k;
        nch = (uint32_t)k;
    }
    uint32_t seq = ++p->seq;
    if (seq == 0) /* 0 is what a fresh worker has seen */
        seq = ++p->seq;
    atomic_store(&p->done, 0);
    atomic_store(&p->word, (uint64_t)seq << 32 | (uint64_t)nch << 16); /* publishes the job */
    atomic_store(&p->wake, seq);
    if (atomic_load(&p->sleepers) > 0)
        futex_wake(&p->wake, INT32_MAX);

    run_chunks(p, seq, 0);

    uint32_t d;
    uint64_t t0 = 0;
    int spins = 0;
    while ((d = atomic_load(&p->done)) != nch) {
        if (++spins % SPIN_CHECK) {
            CPU_RELAX();
            continue;
        }
        uint64_t t = mono_ns();
        if (t0 == 0)
            t0 = t;
        if (t - t0 < CALLER_SPIN_NS)
            continue;
        atomic_store(&p->caller_sleeping, 1);
        if (atomic_load(&p->done) == d)
            futex_wait(&p->done, d);
        atomic_store(&p->caller_sleeping, 0);
    }
}

void pool_for(pool *p, size_t total, size_t grain, pool_fn fn, void *arg)
{
    pool_for_min(p, total, grain, grain, fn, arg);
}
