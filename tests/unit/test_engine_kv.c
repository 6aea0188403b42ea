/* Unit tests for engine/kv: block allocator, prefix hashing and reuse, LRU
 * eviction, preemption with a tiny pool, fragmentation accounting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kv.h"

#define BT 16

/* A pool of n_blocks 16-token blocks with 1 byte per token (bookkeeping only). */
static kv_cache *pool(size_t n_blocks, size_t max_seqs, size_t max_seq_tokens)
{
    kv_config c = kv_config_default();
    c.token_bytes = 1;
    c.cache_bytes = n_blocks * BT;
    c.max_seqs = max_seqs;
    c.max_seq_tokens = max_seq_tokens;
    kv_cache *kv = NULL;
    err_msg e;
    assert_int_equal(kv_cache_new(&c, &kv, &e), 0);
    assert_int_equal(kv_n_blocks(kv), n_blocks);
    return kv;
}

/* Every block is in exactly one of free / idle cached / used. */
static void check_accounting(const kv_cache *kv)
{
    kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_free + st.n_cached_idle + st.n_used, st.n_blocks);
}

/* Reserves and commits toks[0..n) onto sequence id. */
static void feed(kv_cache *kv, int32_t id, const int32_t *toks, size_t n)
{
    size_t len = kv_seq_len(kv, id);
    assert_int_equal(kv_seq_reserve(kv, id, len + n), 0);
    kv_seq_commit(kv, id, toks, n);
    assert_int_equal(kv_seq_len(kv, id), len + n);
}

static void seq_tokens(int32_t *t, size_t n, int32_t base)
{
    for (size_t i = 0; i < n; i++)
        t[i] = base + (int32_t)i;
}

static void test_token_bytes(void **state)
{
    (void)state;
    size_t n = 0;
    /* tiny: 2 layers, 2 KV heads, head_dim 16: 2*2*16*2*2 = 256 bytes per token */
    assert_int_equal(kv_token_bytes(2, 2, 16, KV_TYPE_F16, &n), 0);
    assert_int_equal(n, 256);
    /* smollm-135m: 30 layers, 3 KV heads of 64 */
    assert_int_equal(kv_token_bytes(30, 3, 64, KV_TYPE_F16, &n), 0);
    assert_int_equal(n, 30 * 3 * 64 * 2 * 2);
    assert_int_equal(kv_token_bytes(30, 3, 64, KV_TYPE_Q8_0, &n), 0);
    assert_int_equal(n, 30 * 3 * 64 * 2 / 32 * 34);
    assert_int_equal(kv_token_bytes(2, 1, 16, KV_TYPE_Q8_0, &n), ERR_INVAL);
    assert_int_equal(kv_token_bytes(0, 1, 16, KV_TYPE_F16, &n), ERR_INVAL);
    assert_int_equal(kv_token_bytes(SIZE_MAX / 2, 4, 64, KV_TYPE_F16, &n), ERR_OVERFLOW);
}

static void test_new_rejects(void **state)
{
    (void)state;
    kv_config c = kv_config_default();
    kv_cache *kv = NULL;
    err_msg e;
    assert_int_equal(kv_cache_new(&c, &kv, &e), ERR_INVAL); // token_bytes 0
    c.token_bytes = 1 << 20;
    c.cache_bytes = 1 << 20; // one 16-token block does not fit
    assert_int_equal(kv_cache_new(&c, &kv, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "at least 2"));
    assert_null(kv);
}

static void test_allocator(void **state)
{
    (void)state;
    kv_cache *kv = pool(8, 4, 1024);
    int32_t a, b;
    assert_int_equal(kv_seq_open(kv, &a), 0);
    assert_int_equal(kv_seq_open(kv, &b), 0);
    assert_int_not_equal(a, b);
    assert_int_equal(kv_seq_blocks_needed(kv, a, 0), 0);
    assert_int_equal(kv_seq_blocks_needed(kv, a, 1), 1);
    assert_int_equal(kv_seq_blocks_needed(kv, a, 33), 3);
    assert_int_equal(kv_seq_reserve(kv, a, 33), 0);
    assert_int_equal(kv_seq_reserve(kv, b, 80), 0);
    size_t na, nb;
    const int32_t *ta = kv_seq_table(kv, a, &na);
    const int32_t *tb = kv_seq_table(kv, b, &nb);
    assert_int_equal(na, 3);
    assert_int_equal(nb, 5);
    /* All 8 ids distinct and in range. */
    int seen[8] = {0};
    for (size_t i = 0; i < na; i++)
        seen[ta[i]]++;
    for (size_t i = 0; i < nb; i++)
        seen[tb[i]]++;
    for (int i = 0; i < 8; i++)
        assert_int_equal(seen[i], 1);
    assert_true(kv_usage_ratio(kv) == 1.0);
    assert_int_equal(kv_blocks_available(kv), 0);
    /* All or nothing: a failed reserve changes nothing. */
    assert_int_equal(kv_seq_reserve(kv, a, 49), ERR_NOMEM);
    kv_seq_table(kv, a, &na);
    assert_int_equal(na, 3);
    /* Past the context length. */
    assert_int_equal(kv_seq_reserve(kv, a, 1025), ERR_TOO_LARGE);
    check_accounting(kv);
    kv_seq_close(kv, b);
    assert_int_equal(kv_blocks_available(kv), 5); // no tokens committed: not cached
    kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_free, 5);
    assert_int_equal(st.n_seqs, 1);
    kv_seq_close(kv, a);
    assert_true(kv_usage_ratio(kv) == 0.0);
    check_accounting(kv);
    /* Sequence slots run out. */
    int32_t ids[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(kv_seq_open(kv, &ids[i]), 0);
    int32_t x;
    assert_int_equal(kv_seq_open(kv, &x), ERR_BUSY);
    kv_cache_free(kv);
}

static void test_check_fits(void **state)
{
    (void)state;
    kv_cache *kv = pool(4, 2, 100);
    err_msg e;
    assert_int_equal(kv_check_fits(kv, 64, &e), 0);
    assert_int_equal(kv_check_fits(kv, 101, &e), ERR_TOO_LARGE);
    assert_non_null(strstr(e.text, "context length is 100"));
    kv_cache_free(kv);
    kv = pool(4, 2, 1000);
    assert_int_equal(kv_check_fits(kv, 65, &e), ERR_TOO_LARGE);
    assert_non_null(strstr(e.text, "holds only 4 blocks"));
    kv_cache_free(kv);
}

static void test_prefix_reuse(void **state)
{
    (void)state;
    kv_cache *kv = pool(32, 8, 4096);
    int32_t p[100];
    seq_tokens(p, 100, 1000);
    int32_t a;
    assert_int_equal(kv_seq_open(kv, &a), 0);
    assert_int_equal(kv_seq_match_prefix(kv, a, p, 40), 0); // cold cache
    feed(kv, a, p, 40); // blocks: [0,16) [16,32) full, [32,40) partial
    size_t na;
    const int32_t *ta = kv_seq_table(kv, a, &na);
    int32_t a0 = ta[0], a1 = ta[1], a2 = ta[2];

    /* Same 32-token prefix, different continuation: two blocks reused, while
     * A is still running (shared, refcount 2). */
    int32_t q[50];
    memcpy(q, p, 32 * sizeof *q);
    seq_tokens(q + 32, 18, 5000);
    int32_t b;
    assert_int_equal(kv_seq_open(kv, &b), 0);
    assert_int_equal(kv_seq_match_prefix(kv, b, q, 50), 32);
    size_t nb;
    const int32_t *tb = kv_seq_table(kv, b, &nb);
    assert_int_equal(nb, 2);
    assert_int_equal(tb[0], a0);
    assert_int_equal(tb[1], a1);
    assert_int_equal(kv_seq_len(kv, b), 32);
    feed(kv, b, q + 32, 18);
    tb = kv_seq_table(kv, b, &nb);
    assert_int_not_equal(tb[2], a2); // the partial block is never shared
    check_accounting(kv);

    /* A prompt of exactly two full blocks shares only the first: the last
     * token must be computed for its logits. The other 15 tokens of the second
     * block are copied from A's (the block published after the first one) into
     * a block of C's own; closing C before the copy is done cancels it. */
    int32_t c;
    const kv_copy *cp;
    assert_int_equal(kv_seq_open(kv, &c), 0);
    assert_int_equal(kv_seq_match_prefix(kv, c, p, 32), 31);
    size_t nc;
    const int32_t *tc = kv_seq_table(kv, c, &nc);
    assert_int_equal(nc, 2);
    assert_int_equal(tc[0], a0);
    assert_int_not_equal(tc[1], a1);
    assert_int_equal(kv_pending_copies(kv, &cp), 1);
    assert_int_equal(cp[0].seq, c);
    assert_int_equal(cp[0].src, a1);
    assert_int_equal(cp[0].dst, tc[1]);
    kv_stats cs;
    kv_get_stats(kv, &cs);
    assert_true(cs.block_copies == 1);
    check_accounting(kv);
    kv_seq_close(kv, c);
    assert_int_equal(kv_pending_copies(kv, &cp), 0);
    check_accounting(kv);

    /* Chaining: the same second block after a different first block misses;
     * the first block's tokens before the difference are copied. */
    int32_t r[40];
    memcpy(r, p, 40 * sizeof *r);
    r[3] = -7;
    int32_t d;
    assert_int_equal(kv_seq_open(kv, &d), 0);
    assert_int_equal(kv_seq_match_prefix(kv, d, r, 40), 3);
    const int32_t *td = kv_seq_table(kv, d, &nc);
    assert_int_equal(nc, 1);
    assert_int_not_equal(td[0], a0);
    assert_int_equal(kv_pending_copies(kv, &cp), 1);
    assert_int_equal(cp[0].src, a0);
    kv_copies_done(kv);
    assert_int_equal(kv_pending_copies(kv, &cp), 0);
    kv_seq_close(kv, d);
    check_accounting(kv);

    /* After both finish, the blocks stay cached (idle) and are found again:
     * the full ones, and the partial last blocks as their prefixes' children
     * (A's p[32,40), B's q[48,50), and D's 3 copied tokens after the root). */
    kv_seq_close(kv, a);
    kv_seq_close(kv, b);
    assert_true(kv_usage_ratio(kv) == 0.0);
    kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_cached_idle, 6); // p[0,16), p[16,32), q[32,48) + 3 partial
    int32_t e2;
    assert_int_equal(kv_seq_open(kv, &e2), 0);
    /* three full blocks, and q[48] from B's partial block (q[49] is computed) */
    assert_int_equal(kv_seq_match_prefix(kv, e2, q, 50), 49);
    assert_int_equal(kv_pending_copies(kv, &cp), 1);
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_cached_idle, 2);
    assert_int_equal(st.n_used, 5); // 3 shared, the copy's source (held) and destination
    kv_copies_done(kv);
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_used, 4);
    assert_true(st.hits_tokens == 0);
    kv_note_prefix_query(kv, 50, 49);
    kv_get_stats(kv, &st);
    assert_true(st.hits_tokens == 49 && st.queries_tokens == 50);
    check_accounting(kv);
    kv_seq_close(kv, e2);

    /* Two identical prompts prefilled side by side: the second's full block is
     * not published twice, and both release cleanly. */
    int32_t f, g;
    int32_t s[20];
    seq_tokens(s, 20, 90000);
    assert_int_equal(kv_seq_open(kv, &f), 0);
    assert_int_equal(kv_seq_open(kv, &g), 0);
    assert_int_equal(kv_seq_match_prefix(kv, f, s, 20), 0);
    assert_int_equal(kv_seq_match_prefix(kv, g, s, 20), 0);
    feed(kv, f, s, 20);
    feed(kv, g, s, 20);
    kv_seq_close(kv, f);
    kv_seq_close(kv, g);
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_cached_idle, 7); // 6 before; s[0,16) took D's place as the root's
    // child, G's s[16,20) took F's: D's and F's partial blocks went back to the free stack
    check_accounting(kv);
    kv_cache_free(kv);
}

/* A conversation's next turn: the first turn's partial last block (released
 * with the sequence) is found as its prefix's child, and its tokens are copied;
 * a preempted sequence's partial block is kept the same way. */
static void test_partial_block_reuse(void **state)
{
    (void)state;
    kv_cache *kv = pool(16, 4, 4096);
    int32_t t1[40], a, b;
    seq_tokens(t1, 40, 7000);
    assert_int_equal(kv_seq_open(kv, &a), 0);
    assert_int_equal(kv_seq_match_prefix(kv, a, t1, 20), 0);
    feed(kv, a, t1, 20); // turn 1: a full block and 4 tokens
    kv_seq_close(kv, a);
    kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_cached_idle, 2);
    /* turn 2 = turn 1 + 20 more tokens: 16 shared, 4 copied, 19 computed */
    assert_int_equal(kv_seq_open(kv, &b), 0);
    assert_int_equal(kv_seq_match_prefix(kv, b, t1, 40), 20);
    const kv_copy *cp;
    assert_int_equal(kv_pending_copies(kv, &cp), 1);
    kv_copies_done(kv);
    assert_int_equal(kv_seq_reserve(kv, b, 40), 0);
    kv_seq_commit(kv, b, t1 + 20, 20);
    check_accounting(kv);
    /* preempted: its partial block [32,40) stays cached, the recompute copies it */
    kv_seq_release(kv, b);
    assert_int_equal(kv_seq_match_prefix(kv, b, t1, 40), 39);
    kv_copies_done(kv);
    check_accounting(kv);
    kv_seq_close(kv, b);
    check_accounting(kv);
    kv_cache_free(kv);
}

static void test_prefix_cache_off(void **state)
{
    (void)state;
    kv_config c = kv_config_default();
    c.token_bytes = 1;
    c.cache_bytes = 8 * BT;
    c.prefix_cache = false;
    kv_cache *kv = NULL;
    assert_int_equal(kv_cache_new(&c, &kv, NULL), 0);
    int32_t p[40], a, b;
    seq_tokens(p, 40, 1);
    assert_int_equal(kv_seq_open(kv, &a), 0);
    feed(kv, a, p, 40);
    kv_seq_close(kv, a);
    assert_int_equal(kv_seq_open(kv, &b), 0);
    assert_int_equal(kv_seq_match_prefix(kv, b, p, 40), 0);
    kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_free, 8);
    kv_cache_free(kv);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    kv_cache *kv = pool(6, 4, 4096);
    int32_t pa[32], pb[32], pc[64];
    seq_tokens(pa, 32, 100);
    seq_tokens(pb, 32, 200);
    seq_tokens(pc, 64, 300);
    int32_t a, b;
    assert_int_equal(kv_seq_open(kv, &a), 0);
    feed(kv, a, pa, 32);
    kv_seq_close(kv, a); // A's 2 blocks idle, least recent
    assert_int_equal(kv_seq_open(kv, &b), 0);
    feed(kv, b, pb, 32);
    kv_seq_close(kv, b); // B's 2 blocks idle, more recent
    kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.n_cached_idle, 4);
    assert_int_equal(st.n_free, 2);

    /* Touch A again (hit moves it out of, then back to the tail of, the LRU). */
    int32_t a2;
    int32_t pa_long[33];
    memcpy(pa_long, pa, sizeof pa);
    pa_long[32] = 1;
    assert_int_equal(kv_seq_open(kv, &a2), 0);
    assert_int_equal(kv_seq_match_prefix(kv, a2, pa_long, 33), 32);
    kv_seq_close(kv, a2);

    /* C needs 3 blocks: 2 free + 1 evicted. B is now least recent, and within
     * B the tail block goes first, so B's first block survives. */
    int32_t c;
    assert_int_equal(kv_seq_open(kv, &c), 0);
    assert_int_equal(kv_seq_reserve(kv, c, 48), 0);
    kv_get_stats(kv, &st);
    assert_true(st.evictions == 1);
    int32_t probe;
    int32_t pb_long[33];
    memcpy(pb_long, pb, sizeof pb);
    pb_long[32] = 1;
    assert_int_equal(kv_seq_open(kv, &probe), 0);
    assert_int_equal(kv_seq_match_prefix(kv, probe, pb_long, 33), 16);
    kv_seq_close(kv, probe);
    assert_int_equal(kv_seq_open(kv, &probe), 0);
    assert_int_equal(kv_seq_match_prefix(kv, probe, pa_long, 33), 32);
    kv_seq_close(kv, probe);
    check_accounting(kv);
    kv_seq_close(kv, c);
    kv_cache_free(kv);
}

/* The scheduler's preemption at the kv level: a tiny pool runs out, the
 * newest sequence is released, the older one continues, and the preempted one
 * is recomputed afterwards (finding its prefix cached when it survived). */
static void test_preemption_tiny_pool(void **state)
{
    (void)state;
    kv_cache *kv = pool(4, 4, 4096);
    int32_t old_t[40], new_t[20];
    seq_tokens(old_t, 40, 10);
    seq_tokens(new_t, 20, 500);
    int32_t old_s, new_s;
    assert_int_equal(kv_seq_open(kv, &old_s), 0);
    assert_int_equal(kv_seq_open(kv, &new_s), 0);
    feed(kv, old_s, old_t, 32);
    feed(kv, new_s, new_t, 20);
    assert_int_equal(kv_blocks_available(kv), 0);
    /* old grows past its second block: no block left. */
    assert_int_equal(kv_seq_reserve(kv, old_s, 33), ERR_NOMEM);
    kv_seq_release(kv, new_s); // preempt the newest
    assert_int_equal(kv_seq_len(kv, new_s), 0);
    assert_int_equal(kv_seq_reserve(kv, old_s, 33), 0);
    kv_seq_commit(kv, old_s, old_t + 32, 8);
    check_accounting(kv);
    kv_seq_close(kv, old_s); // old finishes
    /* The preempted sequence comes back for recompute: its full first block
     * was left cached (idle), so only the rest is computed again. */
    size_t hit = kv_seq_match_prefix(kv, new_s, new_t, 20);
    assert_int_equal(hit, 16);
    assert_int_equal(kv_seq_reserve(kv, new_s, 20), 0);
    kv_seq_commit(kv, new_s, new_t + hit, 20 - hit);
    check_accounting(kv);
    kv_seq_close(kv, new_s);
    kv_cache_free(kv);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* 32 requests of mixed prompt and output lengths live at once: the slots
 * allocated but not holding a token stay under 5% (the goal). */
static void test_fragmentation(void **state)
{
    (void)state;
    kv_cache *kv = pool(4096, 64, 8192);
    int32_t ids[32];
    static int32_t toks[2048];
    size_t total = 0;
    for (int i = 0; i < 32; i++) {
        size_t prompt = 16 + rnd() % 600, gen = 1 + rnd() % 256;
        size_t n = prompt + gen;
        total += n;
        seq_tokens(toks, n, i * 10000);
        assert_int_equal(kv_seq_open(kv, &ids[i]), 0);
        feed(kv, ids[i], toks, prompt);
        for (size_t g = 0; g < gen; g++)
            feed(kv, ids[i], toks + prompt + g, 1); // decode, one token a step
    }
    double frag = kv_fragmentation(kv);
    printf("kv fragmentation with 32 mixed-length requests (%zu tokens): %.2f%%\n", total,
           frag * 100);
    assert_true(frag > 0.0 && frag < 0.05);
    /* Shared prefixes count once and are full, so they waste nothing. */
    for (int i = 0; i < 32; i++)
        kv_seq_close(kv, ids[i]);
    assert_true(kv_fragmentation(kv) == 0.0);
    kv_cache_free(kv);
}

/* kv_fragmentation (kept incrementally) against a recount from the open
 * sequences' tables: a block holds min(bt, len - i*bt) tokens of a sequence
 * whose i-th block it is; shared blocks count once. */
static void check_fragmentation(const kv_cache *kv, const int32_t *ids, const bool *open, int n)
{
    static uint32_t fill[64];
    static bool used[64];
    memset(fill, 0, sizeof fill);
    memset(used, 0, sizeof used);
    size_t uniq = 0, filled = 0;
    for (int s = 0; s < n; s++) {
        if (!open[s])
            continue;
        size_t nb, len = kv_seq_len(kv, ids[s]);
        const int32_t *t = kv_seq_table(kv, ids[s], &nb);
        for (size_t i = 0; i < nb; i++) {
            assert_true(t[i] >= 0 && t[i] < 64);
            size_t have = len > i * BT ? len - i * BT : 0;
            if (have > BT)
                have = BT;
            if (!used[t[i]]) {
                used[t[i]] = true;
                uniq++;
            }
            if (have > fill[t[i]])
                fill[t[i]] = (uint32_t)have;
        }
    }
    for (int b = 0; b < 64; b++)
        filled += fill[b];
    double want = uniq ? (double)(uniq * BT - filled) / (double)(uniq * BT) : 0.0;
    assert_true(kv_fragmentation(kv) == want);
}

/* What the forward pass would have written in each of the 24 blocks' slots
 * (the token at that position), and the scheduler's copies. */
static int32_t shadow[24][BT];

static void shadow_commit(kv_cache *kv, int32_t id, const int32_t *toks, size_t n)
{
    size_t len = kv_seq_len(kv, id), nb;
    const int32_t *t = kv_seq_table(kv, id, &nb);
    for (size_t i = 0; i < n; i++)
        shadow[t[(len + i) / BT]][(len + i) % BT] = toks[i];
    kv_seq_commit(kv, id, toks, n);
}

static void shadow_copies(kv_cache *kv)
{
    const kv_copy *cp;
    size_t n = kv_pending_copies(kv, &cp);
    for (size_t i = 0; i < n; i++)
        memcpy(shadow[cp[i].dst], shadow[cp[i].src], sizeof shadow[0]);
    kv_copies_done(kv);
}

/* Random opens, prefix matches (with the copies they ask for, done before the
 * sequences are read, or cancelled by a close), growth, releases and closes on
 * a small pool against the accounting invariant, exercising hash-table and
 * child-index deletes; every sequence must read its own tokens at every
 * position it holds. */
static void test_random_ops(void **state)
{
    (void)state;
    kv_cache *kv = pool(24, 6, 256);
    int32_t ids[6];
    bool open[6] = {0};
    int32_t prompts[4][128];
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 128; i++)
            prompts[p][i] = (i < 40) ? i : p * 1000 + i; // 2.5 shared blocks
    size_t which[6] = {0};
    uint64_t partial = 0;
    for (int step = 0; step < 4000; step++) {
        shadow_copies(kv);
        for (int q = 0; q < 6; q++) {
            if (!open[q])
                continue;
            size_t nb, len = kv_seq_len(kv, ids[q]);
            const int32_t *t = kv_seq_table(kv, ids[q], &nb);
            for (size_t i = 0; i < len; i++)
                assert_int_equal(shadow[t[i / BT]][i % BT], prompts[which[q]][i]);
        }
        int s = (int)(rnd() % 6);
        if (!open[s]) {
            assert_int_equal(kv_seq_open(kv, &ids[s]), 0);
            open[s] = true;
            which[s] = rnd() % 4;
            size_t n = 1 + rnd() % 128;
            size_t hit = kv_seq_match_prefix(kv, ids[s], prompts[which[s]], n);
            assert_true(hit < n);
            partial += hit % BT != 0;
            if (rnd() % 8 == 0) { // closed before the step that would copy
                kv_seq_close(kv, ids[s]);
                open[s] = false;
                check_accounting(kv);
            }
            continue;
        }
        size_t len = kv_seq_len(kv, ids[s]);
        uint32_t op = rnd() % 10;
        if (op < 7 && len < 128) {
            size_t n = 1 + rnd() % (128 - len);
            if (n > 20)
                n = 20;
            int rc = kv_seq_reserve(kv, ids[s], len + n);
            if (rc == 0)
                shadow_commit(kv, ids[s], prompts[which[s]] + len, n);
            else
                assert_int_equal(rc, ERR_NOMEM);
        } else if (op < 8) {
            kv_seq_release(kv, ids[s]);
            kv_seq_close(kv, ids[s]);
            open[s] = false;
        } else {
            kv_seq_close(kv, ids[s]);
            open[s] = false;
        }
        check_accounting(kv);
        check_fragmentation(kv, ids, open, 6);
    }
    for (int s = 0; s < 6; s++)
        if (open[s])
            kv_seq_close(kv, ids[s]);
    check_accounting(kv);
    assert_true(partial > 100); // the copies were exercised
    kv_cache_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_bytes),     cmocka_unit_test(test_new_rejects),
        cmocka_unit_test(test_allocator),       cmocka_unit_test(test_check_fits),
        cmocka_unit_test(test_prefix_reuse),    cmocka_unit_test(test_partial_block_reuse),
        cmocka_unit_test(test_prefix_cache_off),
        cmocka_unit_test(test_lru_eviction),    cmocka_unit_test(test_preemption_tiny_pool),
        cmocka_unit_test(test_fragmentation),   cmocka_unit_test(test_random_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
