/*
 * model/attn_int — what attn.c and attn_avx2.c share (private to model/).
 */
#pragma once

#include "model/attn.h"

/* Heads of one group handled per pass over the K/V rows (accumulators in registers). */
#define ATTN_HEADS_PER_PASS 4

/* Positions attention sums before adding the partial sum: a block (F16), or at
 * most ATTN_Q8_RUN positions (Q8_0), the sums the per-head kernels made. */
static inline size_t attn_run_len(const attn_kv *kv)
{
    return kv->is_q8 && kv->block_tokens > ATTN_Q8_RUN ? ATTN_Q8_RUN : kv->block_tokens;
}

/* Walks the rows of consecutive positions of one layer's K or V (one
 * division at the start, none per row). */
typedef struct attn_rows {
    const uint8_t *base;
    const int32_t *blocks;
    size_t bt, row_bytes;
    size_t blk, slot;   // block-table index and slot of the current position
    const uint8_t *row; // its row
} attn_rows;

static inline void attn_rows_init(attn_rows *it, const attn_kv *kv, const uint8_t *base,
                                  const int32_t *blocks, size_t p)
{
    it->base = base;
    it->blocks = blocks;
    it->bt = kv->block_tokens;
    it->row_bytes = kv->row_bytes;
    it->blk = p / it->bt;
    it->slot = p % it->bt;
    it->row = base + ((size_t)blocks[it->blk] * it->bt + it->slot) * it->row_bytes;
}

/* Moves to the next position; the caller guarantees it is covered by the table. */
static inline void attn_rows_next(attn_rows *it)
{
    if (++it->slot == it->bt) {
        it->slot = 0;
        it->blk++;
        it->row = it->base + (size_t)it->blocks[it->blk] * it->bt * it->row_bytes;
    } else {
        it->row += it->row_bytes;
    }
}

/*
 * The AVX2 twin of attn.c's scalar attn_group path (same contract as
 * attn_group; call only when kern's AVX2 implementation is in use). Bitwise
 * the same results as the per-head AVX2 kernels.
 */
void attn_group_avx2(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                     size_t head_dim, const float *q, size_t n_q, float *out, float *scratch);

/* The AVX2 twin of attn_span (same contract; call only when kern's AVX2
 * implementation is in use). */
void attn_span_avx2(const attn_kv *kv, const int32_t *blocks, size_t pos0, size_t n_tok,
                    size_t off, size_t head_dim, const float *q, size_t q_stride, size_t n_q,
                    float *out, size_t out_stride, float *scratch);

/* Floats added to each scores row of attn_span (its stride is the positions
 * rounded up to 8, plus this): rows a multiple of 4 KiB apart would all fall
 * in the same few L1 sets, and the 8-position score tiles written to 48 rows
 * would then evict each other. */
#define ATTN_SPAN_ROW_PAD 16
