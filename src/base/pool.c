/*
 * base/pool — persistent workers, generation counter, futex sleep.
 *
 * Protocol (all atomics seq_cst unless noted):
 *   caller: publish job fields; pending = workers; gen++; if sleepers: wake(gen).
 *   worker: wait until gen != seen (spin, then futex on gen); run chunks;
 *           pending--; the worker that brings it to 0 wakes the caller if it sleeps.
 *   caller: run chunks; wait until pending == 0 (spin, then futex on pending).
 * The sleepers / caller_sleeping flags and the futex value checks form a
 * Dekker pair with the gen / pending updates, so no wake-up is lost.
 */
#include "base/pool.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* About 50-200 us of spinning depending on the CPU's pause latency. */
#define SPIN_ITERS 4096

struct pool {
    int n;             /* participants incl. the caller */
    pthread_t *threads; /* n-1 workers */

    _Atomic uint32_t gen;     /* job generation; futex word for workers */
    _Atomic uint32_t pending; /* workers still in the current job; futex word for caller */
    _Atomic int sleepers;     /* workers inside futex_wait on gen */
    _Atomic int caller_sleeping;
    _Atomic int stop;

    /* current job, written by the caller before gen++ and read after */
    pool_fn fn;
    void *arg;
    size_t total, chunk, nchunks;
    _Atomic size_t next; /* next chunk to take */
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

static void run_chunks(pool *p, int tid)
{
    for (;;) {
        size_t c = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (c >= p->nchunks)
            return;
        size_t begin = c * p->chunk;
        size_t end = begin + p->chunk;
        if (end > p->total)
            end = p->total;
        p->fn(p->arg, begin, end, tid);
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
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen) {
            if (spins < SPIN_ITERS) {
                spins++;
                CPU_RELAX();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        run_chunks(p, tid);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping))
            futex_wake(&p->pending, 1);
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
        atomic_fetch_add(&p->gen, 1);
        futex_wake(&p->gen, INT32_MAX);
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

void pool_for(pool *p, size_t total, size_t grain, pool_fn fn, void *arg)
{
    if (total == 0)
        return;
    if (grain == 0)
        grain = 1;
    if (!p || p->n == 1 || total <= grain) {
        fn(arg, 0, total, 0);
        return;
    }
    size_t want = (size_t)p->n * 4;
    size_t chunk = (total + want - 1) / want;
    chunk = (chunk + grain - 1) / grain * grain;
    p->fn = fn;
    p->arg = arg;
    p->total = total;
    p->chunk = chunk;
    p->nchunks = (total + chunk - 1) / chunk;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store(&p->pending, (uint32_t)(p->n - 1));
    atomic_fetch_add(&p->gen, 1); /* publishes the job (seq_cst) */
    if (atomic_load(&p->sleepers) > 0)
        futex_wake(&p->gen, INT32_MAX);

    run_chunks(p, 0);

    uint32_t left;
    int spins = 0;
    while ((left = atomic_load(&p->pending)) != 0) {
        if (spins < SPIN_ITERS * 4) {
            spins++;
            CPU_RELAX();
            continue;
        }
        atomic_store(&p->caller_sleeping, 1);
        if (atomic_load(&p->pending) != 0)
            futex_wait(&p->pending, left);
        atomic_store(&p->caller_sleeping, 0);
    }
}
