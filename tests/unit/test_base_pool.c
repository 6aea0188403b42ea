/* Unit tests for base/pool: coverage of ranges, barriers, chunking, sleep when idle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/pool.h"

typedef struct visit_ctx {
    _Atomic int *hits;
    size_t grain;
    size_t total;
    int threads;
    _Atomic int bad;
    _Atomic int tid_seen[POOL_THREADS_MAX];
} visit_ctx;

static void visit(void *arg, size_t begin, size_t end, int tid)
{
    visit_ctx *c = arg;
    if (begin >= end || end > c->total || begin % c->grain != 0 || tid < 0 || tid >= c->threads)
        atomic_store(&c->bad, 1);
    if (tid >= 0 && tid < POOL_THREADS_MAX)
        atomic_store(&c->tid_seen[tid], 1);
    for (size_t i = begin; i < end; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

static void check_pool(int threads, size_t total, size_t grain, int rounds)
{
    pool *p = NULL;
    assert_int_equal(pool_new(threads, &p), 0);
    assert_int_equal(pool_threads(p), threads);
    visit_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->hits = calloc(total + 1, sizeof *c->hits);
    assert_non_null(c->hits);
    c->grain = grain ? grain : 1;
    c->total = total;
    c->threads = threads;
    for (int r = 0; r < rounds; r++) {
        pool_for(p, total, grain, visit, c);
        /* barrier: every index has been visited exactly r+1 times on return */
        for (size_t i = 0; i < total; i++)
            if (atomic_load(&c->hits[i]) != r + 1)
                fail_msg("threads %d total %zu round %d: index %zu hit %d times", threads,
                         total, r, i, atomic_load(&c->hits[i]));
    }
    assert_int_equal(atomic_load(&c->bad), 0);
    free(c->hits);
    free(c);
    pool_free(p);
}

static void test_pool_coverage(void **state)
{
    (void)state;
    check_pool(1, 1000, 1, 3);
    check_pool(2, 1000, 1, 200);
    check_pool(2, 7, 4, 50);
    check_pool(3, 1001, 16, 50);
    check_pool(8, 4096, 32, 50); /* oversubscribed on a 2-core machine */
    check_pool(2, 1, 1, 10);
}

static void test_pool_many_small_ops(void **state)
{
    (void)state;
    /* a decode step issues hundreds of small ops back to back */
    check_pool(2, 64, 4, 5000);
}

typedef struct min_ctx {
    size_t total, min_chunk;
    _Atomic int calls, short_calls, bad_tid;
    _Atomic int *hits;
} min_ctx;

static void min_visit(void *arg, size_t begin, size_t end, int tid)
{
    min_ctx *c = arg;
    atomic_fetch_add(&c->calls, 1);
    if (end - begin < c->min_chunk && end != c->total)
        atomic_fetch_add(&c->short_calls, 1);
    if (tid < 0 || tid >= 4)
        atomic_store(&c->bad_tid, 1);
    for (size_t i = begin; i < end; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

/* One pool_for_min call: every index once, at most total/min_chunk chunks, and
 * none shorter than min_chunk but the last. Returns the number of calls. */
static int run_min(pool *p, size_t total, size_t grain, size_t min_chunk)
{
    min_ctx c = {.total = total, .min_chunk = min_chunk < grain ? grain : min_chunk};
    c.hits = calloc(total + 1, sizeof *c.hits);
    assert_non_null(c.hits);
    pool_for_min(p, total, grain, min_chunk, min_visit, &c);
    for (size_t i = 0; i < total; i++)
        if (atomic_load(&c.hits[i]) != 1)
            fail_msg("total %zu min %zu: index %zu hit %d times", total, min_chunk, i,
                     atomic_load(&c.hits[i]));
    assert_int_equal(atomic_load(&c.short_calls), 0);
    assert_int_equal(atomic_load(&c.bad_tid), 0);
    int calls = atomic_load(&c.calls);
    size_t most = total / c.min_chunk ? total / c.min_chunk : 1;
    if ((size_t)calls > most)
        fail_msg("total %zu min %zu: %d chunks, at most %zu allowed", total, min_chunk, calls,
                 most);
    free(c.hits);
    return calls;
}

static void test_pool_min_chunk(void **state)
{
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_new(3, &p), 0);
    /* below two chunks' worth: one call on the calling thread */
    assert_int_equal(run_min(p, 100, 1, 100), 1);
    assert_int_equal(run_min(p, 199, 1, 100), 1);
    assert_int_equal(run_min(p, 1000, 1, 300), 3);
    /* guided, 1/6 of what is left in whole grains: 176 144 128 96 80 64 64 48 48 32
     * 32 16 16 16 16 and the last 24 (8 left would be under a grain) */
    assert_int_equal(run_min(p, 1000, 16, 1), 16);
    run_min(p, 4096, 16, 512);
    run_min(p, 5, 1, 0);
    /* back to back, sizes and minimums changing, as a decode step does */
    uint64_t x = 12345;
    for (int r = 0; r < 3000; r++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t total = 1 + (size_t)(x >> 33) % 700, min_chunk = (size_t)(x >> 20) % 90;
        size_t grain = 1 + (size_t)(x >> 12) % 4;
        run_min(p, total, grain, min_chunk);
    }
    pool_free(p);
}

static void sum_fn(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    _Atomic uint64_t *s = arg;
    uint64_t local = 0;
    for (size_t i = begin; i < end; i++)
        local += i;
    atomic_fetch_add(s, local);
}

static void test_pool_null_and_empty(void **state)
{
    (void)state;
    _Atomic uint64_t s = 0;
    pool_for(NULL, 100, 1, sum_fn, &s);
    assert_int_equal(atomic_load(&s), 4950);
    assert_int_equal(pool_threads(NULL), 1);
    pool *p = NULL;
    assert_int_equal(pool_new(2, &p), 0);
    atomic_store(&s, 0);
    pool_for(p, 0, 1, sum_fn, &s);
    assert_int_equal(atomic_load(&s), 0);
    pool_for(p, 100, 0, sum_fn, &s);
    assert_int_equal(atomic_load(&s), 4950);
    pool_free(p);
    pool_free(NULL);
    assert_int_equal(pool_new(POOL_THREADS_MAX + 1, &p), ERR_INVAL);
    assert_null(p);
    assert_int_equal(pool_new(0, &p), 0); /* default: one per CPU */
    assert_int_equal(pool_threads(p), base_ncpu());
    pool_free(p);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Idle workers go to sleep: a 200 ms pause burns far less than 200 ms of CPU per
 * worker, and the pool still runs jobs after waking up. */
static void test_pool_sleeps_when_idle(void **state)
{
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_new(4, &p), 0);
    _Atomic uint64_t s = 0;
    pool_for(p, 1000, 1, sum_fn, &s);
    usleep(20 * 1000); /* let the spin phase end */
    double c0 = cpu_seconds();
    usleep(200 * 1000);
    double used = cpu_seconds() - c0;
    if (used > 0.05)
        fail_msg("idle pool used %.3f s of CPU in 0.2 s", used);
    atomic_store(&s, 0);
    pool_for(p, 1000, 1, sum_fn, &s);
    assert_int_equal(atomic_load(&s), 499500);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_coverage),
        cmocka_unit_test(test_pool_many_small_ops),
        cmocka_unit_test(test_pool_null_and_empty),
        cmocka_unit_test(test_pool_min_chunk),
        cmocka_unit_test(test_pool_sleeps_when_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
