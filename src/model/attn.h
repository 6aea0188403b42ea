/*
 * model/attn — causal attention of one sequence's query heads over a paged
 * KV cache (F16 or Q8_0 rows), one KV head and all the query heads that share
 * it (grouped-query attention) per call.
 *
 * Layout read: position p of the sequence lives in block blocks[p / block_tokens]
 * at slot p % block_tokens; the row of (block b, slot s) of one layer starts at
 * layer_base + (b * block_tokens + s) * row_bytes. A row is kv_dim elements:
 * F16 values, or kv_dim / 32 Q8_0 blocks (f16 scale d, 32 int8 q; value d * q).
 * The KV head's elements are [off, off + head_dim) of each row.
 *
 * Formula, per query head h of the group, positions j = 0 .. n_pos-1:
 *   s_j   = (q_h · k_j) / sqrt(head_dim)
 *   p     = softmax(s)                          (kern_softmax)
 *   out_h = Σ_j p_j v_j, summed over each run of positions (a KV block, or for
 *           Q8_0 at most ATTN_Q8_RUN positions of one) in ascending j, then
 *           the runs added in order.
 * Reading each K and V row once for the whole group is the point: with
 * n_head / n_kv_head query heads per KV head the cache is read that many
 * times fewer than per head. Q8_0 values are dequantized in registers (no
 * staging copy); each is rounded to f16 (d * q, then to f16) so the results are
 * the same as those of an F16 cache holding the dequantized rows.
 *
 * Numerics: every output is bitwise the same as kern_attn_scores /
 * kern_softmax / kern_attn_accum applied per head (8-lane FMA dot with
 * kern_hsum8 order; one FMA chain per output element), for the kern
 * implementation in use (AVX2, or scalar with FERRY_SIMD=scalar): results do
 * not depend on the group size, the batch or the thread (batch invariance).
 *
 * attn_span does the same for several consecutive query tokens of one sequence
 * (a prefill chunk): each K and V row is converted to f32 once for all of them
 * and all their heads, then every (token, head) runs the same FMA chains on
 * it, so each token's output is bitwise the one attn_group gives it alone.
 *
 * Threads: pure functions of their arguments; scratch is the caller's.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Positions of a Q8_0 cache whose V rows are summed before the partial sums are added. */
#define ATTN_Q8_RUN 64

/* One layer of a paged K/V cache, as attention reads it. */
typedef struct attn_kv {
    const uint8_t *k, *v; // layer bases (see the layout above)
    size_t row_bytes;     // bytes of one K or V row
    size_t block_tokens;  // positions per block
    bool is_q8;           // rows are Q8_0 blocks, else f16 values
} attn_kv;

/* Floats of scratch attn_group needs for n_q heads, n_pos_max positions, head_dim. */
size_t attn_scratch_floats(size_t n_q, size_t n_pos_max, size_t head_dim);

/*
 * Attention of n_q query heads q (n_q, head_dim) over positions 0..n_pos-1 of the
 * sequence whose block table is blocks, KV head at element offset off: out
 * (n_q, head_dim). n_pos >= 1; blocks must cover n_pos positions. For Q8_0,
 * off + head_dim <= the row's elements (multiples of 32 need not align with
 * the head). scratch holds attn_scratch_floats(n_q, n_pos, head_dim) floats.
 * Uses the AVX2 path when kern_simd_name() is "avx2", else the scalar one.
 */
void attn_group(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                size_t head_dim, const float *q, size_t n_q, float *out, float *scratch);

/* V rows attn_span converts at a time (a longer run continues its FMA chains
 * through memory, which changes no bit). */
#define ATTN_SPAN_VROWS 64

/*
 * Floats of scratch attn_span needs for n_tok query tokens of n_q heads whose
 * last token sees n_pos_max positions (pos0 + n_tok): the scores (n_tok, n_q,
 * n_pos_max rounded up to 8 plus a pad), one K tile (8, head_dim), ATTN_SPAN_VROWS V rows,
 * the partial sums (n_tok, n_q, head_dim) and 16 to align the tiles. At least
 * attn_scratch_floats(n_q, n_pos_max, head_dim). SIZE_MAX on overflow.
 */
size_t attn_span_scratch_floats(size_t n_tok, size_t n_q, size_t n_pos_max, size_t head_dim);

/*
 * Causal attention of n_tok >= 1 consecutive query tokens of one sequence:
 * token i (0 <= i < n_tok) is at position pos0 + i and attends positions
 * 0 .. pos0 + i; its n_q query heads are q + i * q_stride (n_q, head_dim) and
 * its output goes to out + i * out_stride (n_q, head_dim). blocks must cover
 * pos0 + n_tok positions (the tokens' own K/V rows already stored). scratch
 * holds attn_span_scratch_floats(n_tok, n_q, pos0 + n_tok, head_dim) floats.
 * Each token's output is bitwise what attn_group(kv, blocks, pos0 + i + 1,
 * off, head_dim, q_i, n_q, out_i, scratch) gives, on the AVX2 and the scalar
 * path alike. With n_tok == 1 it is attn_group.
 */
void attn_span(const attn_kv *kv, const int32_t *blocks, size_t pos0, size_t n_tok, size_t off,
               size_t head_dim, const float *q, size_t q_stride, size_t n_q, float *out,
               size_t out_stride, float *scratch);
