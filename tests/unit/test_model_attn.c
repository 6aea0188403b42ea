/*
 * Unit tests for model/attn: grouped-query attention over a paged F16 or
 * Q8_0 cache gives, bit for bit, what the per-head kernels give (the path the
 * forward pass used before: kern_attn_scores, kern_softmax, kern_attn_accum
 * per block, partial sums added, Q8_0 rows staged as f16 runs of at most
 * ATTN_Q8_RUN positions), for group sizes 1..9 (more than one pass of
 * ATTN_HEADS_PER_PASS heads), head sizes with and without vector tails, KV
 * heads not aligned to Q8_0 blocks, block sizes 1..80, positions across block
 * boundaries and a shuffled block table; on the scalar path and, when the CPU
 * has it, the AVX2 path. And attn_span (several consecutive query tokens of a
 * sequence at once) gives every token, bit for bit, what attn_group gives it
 * alone: T = 1..40 tokens, first positions 0..130 (tiles of 8 positions, Q8_0
 * runs of ATTN_Q8_RUN and blocks crossed mid-span), group sizes 1..9, head
 * sizes with a vector tail (the per-token fallback), of 64 and of 128 (more
 * than one register chunk), blocks of 1, 16 and 80 positions (an F16 run
 * longer than ATTN_SPAN_VROWS, continued through memory).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/attn.h"
#include "model/kern.h"
#include "model/tensor.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rng_u01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_normal(void)
{
    double u = rng_u01(), v = rng_u01();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

typedef struct cache {
    size_t n_blocks, bt, kv_dim, row_bytes;
    bool is_q8;
    uint8_t *k, *v;      // one layer: (n_blocks, bt, row_bytes)
    int32_t *table;      // shuffled block ids of the sequence
} cache;

/* A filled one-layer cache of n_pos positions with a shuffled block table. */
static void cache_make(cache *c, size_t n_pos, size_t bt, size_t kv_dim, bool is_q8)
{
    c->bt = bt;
    c->kv_dim = kv_dim;
    c->is_q8 = is_q8;
    c->row_bytes = is_q8 ? kv_dim / 32 * sizeof(tensor_block_q8_0) : kv_dim * 2;
    size_t need = (n_pos + bt - 1) / bt;
    c->n_blocks = need + 3;
    c->k = calloc(c->n_blocks * bt, c->row_bytes);
    c->v = calloc(c->n_blocks * bt, c->row_bytes);
    c->table = malloc(need * sizeof *c->table);
    assert_non_null(c->k);
    assert_non_null(c->v);
    assert_non_null(c->table);
    int32_t *ids = malloc(c->n_blocks * sizeof *ids);
    for (size_t i = 0; i < c->n_blocks; i++)
        ids[i] = (int32_t)i;
    for (size_t i = c->n_blocks - 1; i > 0; i--) {
        size_t j = (size_t)(rng_u01() * (double)(i + 1));
        int32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    memcpy(c->table, ids, need * sizeof *ids);
    free(ids);
    float *row = malloc(kv_dim * sizeof *row);
    for (size_t r = 0; r < c->n_blocks * bt; r++) {
        for (int half = 0; half < 2; half++) {
            for (size_t i = 0; i < kv_dim; i++)
                row[i] = rng_normal() * (half ? 1.0f : 0.5f);
            uint8_t *dst = (half ? c->v : c->k) + r * c->row_bytes;
            if (is_q8)
                tensor_quantize_row(TENSOR_Q8_0, row, dst, kv_dim);
            else
                kern_f32_to_f16((uint16_t *)(void *)dst, row, kv_dim);
        }
    }
    free(row);
}

static void cache_free(cache *c)
{
    free(c->k);
    free(c->v);
    free(c->table);
}

static const uint8_t *row_of(const cache *c, const uint8_t *base, size_t p)
{
    return base + ((size_t)c->table[p / c->bt] * c->bt + p % c->bt) * c->row_bytes;
}

/* Position p's head segment [off, off+hd) as f16 (a Q8_0 row dequantized, as staged). */
static void f16_segment(const cache *c, const uint8_t *base, size_t p, size_t off, size_t hd,
                        uint16_t *out)
{
    const uint8_t *r = row_of(c, base, p);
    if (!c->is_q8) {
        memcpy(out, r + off * 2, hd * 2);
        return;
    }
    float *all = malloc(c->kv_dim * sizeof *all);
    tensor_dequantize_row(TENSOR_Q8_0, r, all, c->kv_dim);
    kern_f32_to_f16(out, all + off, hd);
    free(all);
}

/* The per-head reference: the forward pass's attention before model/attn. */
static void reference(const cache *c, size_t n_pos, size_t off, size_t hd, const float *q,
                      size_t n_q, float *out)
{
    float scale = 1.0f / sqrtf((float)hd);
    size_t run = c->is_q8 && c->bt > ATTN_Q8_RUN ? ATTN_Q8_RUN : c->bt;
    float *sc = malloc(n_pos * sizeof *sc), *part = malloc(hd * sizeof *part);
    uint16_t *ks = malloc(n_pos * hd * 2), *vs = malloc(n_pos * hd * 2);
    for (size_t p = 0; p < n_pos; p++) {
        f16_segment(c, c->k, p, off, hd, ks + p * hd);
        f16_segment(c, c->v, p, off, hd, vs + p * hd);
    }
    for (size_t h = 0; h < n_q; h++) {
        kern_attn_scores(sc, q + h * hd, ks, hd, n_pos, hd, scale);
        kern_softmax(sc, n_pos);
        float *o = out + h * hd;
        for (size_t j = 0; j < n_pos; j += run) {
            size_t cnt = n_pos - j < run ? n_pos - j : run;
            if (j == 0) {
                kern_attn_accum(o, sc, vs, hd, cnt, hd);
            } else {
                kern_attn_accum(part, sc + j, vs + j * hd, hd, cnt, hd);
                kern_add(o, o, part, hd);
            }
        }
    }
    free(sc);
    free(part);
    free(ks);
    free(vs);
}

static void check_case(size_t n_pos, size_t bt, size_t hd, size_t n_kv, size_t n_q, bool is_q8)
{
    size_t kv_dim = hd * n_kv;
    if (is_q8 && kv_dim % 32)
        return;
    cache c;
    cache_make(&c, n_pos, bt, kv_dim, is_q8);
    attn_kv kv = {.k = c.k, .v = c.v, .row_bytes = c.row_bytes, .block_tokens = bt,
                  .is_q8 = is_q8};
    float *q = malloc(n_q * hd * sizeof *q);
    float *want = malloc(n_q * hd * sizeof *want), *got = malloc(n_q * hd * sizeof *got);
    float *scratch = malloc(attn_scratch_floats(n_q, n_pos, hd) * sizeof *scratch);
    for (size_t i = 0; i < n_q * hd; i++)
        q[i] = rng_normal();
    for (size_t g = 0; g < n_kv; g += (n_kv > 2 ? 3 : 1)) { // heads 0, 3, 6 of 8: unaligned
        reference(&c, n_pos, g * hd, hd, q, n_q, want);
        memset(got, 0xff, n_q * hd * sizeof *got);
        attn_group(&kv, c.table, n_pos, g * hd, hd, q, n_q, got, scratch);
        for (size_t i = 0; i < n_q * hd; i++) {
            if (memcmp(&want[i], &got[i], sizeof(float)) != 0) {
                fail_msg("%s %s: n_pos %zu bt %zu hd %zu kv head %zu/%zu group %zu: element %zu "
                         "is %.9g, per-head kernels give %.9g", kern_simd_name(),
                         is_q8 ? "q8_0" : "f16", n_pos, bt, hd, g, n_kv, n_q, i,
                         (double)got[i], (double)want[i]);
            }
        }
    }
    free(q);
    free(want);
    free(got);
    free(scratch);
    cache_free(&c);
}

static void sweep(void)
{
    static const size_t pos[] = {1, 17, 65, 130};
    static const size_t bts[] = {1, 16, 80};
    static const size_t hds[] = {8, 12, 24, 64};
    static const size_t grp[] = {1, 3, 4, 5, 9};
    for (size_t a = 0; a < sizeof pos / sizeof *pos; a++)
        for (size_t b = 0; b < sizeof bts / sizeof *bts; b++)
            for (size_t d = 0; d < sizeof hds / sizeof *hds; d++)
                for (size_t g = 0; g < sizeof grp / sizeof *grp; g++)
                    for (int q8 = 0; q8 < 2; q8++)
                        check_case(pos[a], bts[b], hds[d], hds[d] % 32 ? 8 : 2, grp[g], q8);
}

static void test_scalar(void **state)
{
    (void)state;
    assert_int_equal(kern_simd_set("scalar"), 0);
    sweep();
}

static void test_avx2(void **state)
{
    (void)state;
    if (kern_simd_set("avx2") != 0) {
        fprintf(stderr, "skipping the AVX2 half: the CPU has no AVX2/FMA/F16C\n");
        return;
    }
    sweep();
}

/* The scalar and AVX2 paths agree with each other too (each already equals its
 * per-head kernels; kern's own tests make those equal across paths). */
static void test_paths_agree(void **state)
{
    (void)state;
    if (kern_simd_set("avx2") != 0)
        return;
    cache c;
    size_t hd = 64, n_pos = 77, n_q = 3;
    cache_make(&c, n_pos, 16, 3 * hd, true);
    attn_kv kv = {.k = c.k, .v = c.v, .row_bytes = c.row_bytes, .block_tokens = 16,
                  .is_q8 = true};
    float q[3 * 64], a[3 * 64], b[3 * 64];
    float *scratch = malloc(attn_scratch_floats(n_q, n_pos, hd) * sizeof *scratch);
    for (size_t i = 0; i < n_q * hd; i++)
        q[i] = rng_normal();
    attn_group(&kv, c.table, n_pos, hd, hd, q, n_q, a, scratch);
    assert_int_equal(kern_simd_set("scalar"), 0);
    attn_group(&kv, c.table, n_pos, hd, hd, q, n_q, b, scratch);
    assert_memory_equal(a, b, sizeof a);
    free(scratch);
    cache_free(&c);
}

/* attn_span over tokens pos0 .. pos0 + n_tok - 1 of cache c (KV head g) against
 * attn_group per token. */
static void check_span(const cache *c, size_t pos0, size_t n_tok, size_t hd, size_t g,
                       size_t n_q)
{
    size_t n_last = pos0 + n_tok;
    attn_kv kv = {.k = c->k, .v = c->v, .row_bytes = c->row_bytes, .block_tokens = c->bt,
                  .is_q8 = c->is_q8};
    size_t qs = n_q * hd + 5; // a token's stride: not a multiple of the head
    float *q = malloc(n_tok * qs * sizeof *q);
    float *want = malloc(n_tok * qs * sizeof *want), *got = malloc(n_tok * qs * sizeof *got);
    size_t nsc = attn_span_scratch_floats(n_tok, n_q, n_last, hd);
    assert_true(nsc >= attn_scratch_floats(n_q, n_last, hd));
    float *scratch = malloc(nsc * sizeof *scratch);
    assert_non_null(q);
    assert_non_null(want);
    assert_non_null(got);
    assert_non_null(scratch);
    for (size_t i = 0; i < n_tok * qs; i++)
        q[i] = rng_normal();
    memset(want, 0xee, n_tok * qs * sizeof *want);
    for (size_t i = 0; i < n_tok; i++)
        attn_group(&kv, c->table, pos0 + i + 1, g * hd, hd, q + i * qs, n_q, want + i * qs,
                   scratch);
    memset(got, 0xee, n_tok * qs * sizeof *got);
    memset(scratch, 0xff, nsc * sizeof *scratch); // NaNs: scratch must be written before read
    attn_span(&kv, c->table, pos0, n_tok, g * hd, hd, q, qs, n_q, got, qs, scratch);
    for (size_t i = 0; i < n_tok * qs; i++)
        if (memcmp(&want[i], &got[i], sizeof(float)) != 0)
            fail_msg("attn_span %s %s: pos0 %zu n_tok %zu bt %zu hd %zu group %zu: token %zu "
                     "element %zu is %.9g, attn_group gives %.9g", kern_simd_name(),
                     c->is_q8 ? "q8_0" : "f16", pos0, n_tok, c->bt, hd, n_q, i / qs, i % qs,
                     (double)got[i], (double)want[i]);
    free(q);
    free(want);
    free(got);
    free(scratch);
}

/* full: every combination (the AVX2 path); else a few (the scalar attn_span is
 * attn_group per token, and the scalar attn_group is slow). */
static void span_sweep(bool full)
{
    static const size_t pos0s[] = {0, 5, 60, 130};
    static const size_t n_toks[] = {1, 2, 3, 5, 7, 8, 9, 16, 23, 40};
    static const size_t bts[] = {1, 16, 80};
    static const size_t hds[] = {12, 64, 128};
    static const size_t grp[] = {1, 3, 8};
    for (size_t b = 0; b < sizeof bts / sizeof *bts; b++)
        for (size_t d = 0; d < sizeof hds / sizeof *hds; d++)
            for (int q8 = 0; q8 < 2; q8++) {
                size_t hd = hds[d], n_kv = hd % 32 ? 8 : 2;
                if (q8 && hd * n_kv % 32)
                    continue;
                cache c;
                cache_make(&c, 170, bts[b], hd * n_kv, q8);
                for (size_t a = 0; a < sizeof pos0s / sizeof *pos0s; a++)
                    for (size_t n = 0; n < sizeof n_toks / sizeof *n_toks; n++)
                        for (size_t g = 0; g < sizeof grp / sizeof *grp; g++)
                            if (full || (a == 2 && n % 4 == 1 && g == 1))
                                check_span(&c, pos0s[a], n_toks[n], hd, n_kv - 1, grp[g]);
                if (hd == 64) {
                    check_span(&c, 3, 33, hd, 0, 9); // a group of 9, the first KV head
                    check_span(&c, 0, 70, hd, 1, 3); // one span from position 0 to 69
                }
                cache_free(&c);
            }
}

static void test_span_scalar(void **state)
{
    (void)state;
    assert_int_equal(kern_simd_set("scalar"), 0);
    span_sweep(false);
}

static void test_span_avx2(void **state)
{
    (void)state;
    if (kern_simd_set("avx2") != 0) {
        fprintf(stderr, "skipping the AVX2 half: the CPU has no AVX2/FMA/F16C\n");
        return;
    }
    span_sweep(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_span_scalar),
        cmocka_unit_test(test_span_avx2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
