/*
 * engine/kv — the paged KV cache manager: which fixed-size block of the KV pool
 * holds which tokens of which sequence.
 *
 * The pool is n_blocks blocks of block_tokens token slots (16 by default),
 * sized from kv_cache_mb and the model's per-token KV bytes. This module owns
 * the bookkeeping only: block ids, reference counts, per-sequence block tables,
 * the prefix cache and the LRU of evictable blocks. The K/V bytes themselves
 * live in the forward pass's paged storage, indexed by the same block ids.
 *
 * Data structures (all sized at kv_cache_new, nothing allocated afterwards):
 *   - per block: refcount, fill (token slots written), the block's token ids,
 *     and, once full, its chained hash;
 *   - free stack: blocks with refcount 0 that hold nothing worth keeping;
 *   - LRU list (doubly linked through per-block prev/next): blocks with
 *     refcount 0 that are in the prefix cache; the head is evicted first;
 *   - prefix hash table (open addressing, linear probing, backward-shift
 *     delete): chained hash -> block id;
 *   - child index (open addressing, same size): parent chained hash -> the
 *     block published last with that parent (a full block, or the partial last
 *     block of a released sequence, kept idle in the LRU for this index only);
 *   - pending block copies (at most one per sequence slot);
 *   - per sequence slot: block table (int32 block ids), committed tokens, the
 *     hash of its last full block.
 *
 * Chained hash of a full block i of a sequence:
 *   h_i = XXH64(tokens of block i as int32 little-endian, seed = h_{i-1}),
 *   h_{-1} = KV_HASH_ROOT.
 * So equal hashes mean equal whole prefixes, not just equal blocks. A lookup
 * also compares the stored parent hash and token ids, so a 64-bit collision
 * cannot hand a sequence someone else's KV.
 *
 * Invariants:
 *   - a block is in exactly one of: free stack, LRU list, referenced
 *     (refcount > 0);
 *   - only full blocks are hashed, and a full block is never written again, so
 *     sharing a block between sequences needs no copy-on-write; reusing the
 *     first tokens of a cached block (kv_seq_match_prefix's child index:
 *     parent hash -> the block published last after it) copies them;
 *   - a sequence's block table covers at least its committed tokens.
 *
 * Thread: a kv_cache belongs to one scheduler thread; nothing here locks.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define KV_BLOCK_TOKENS_DEFAULT 16
#define KV_HASH_ROOT 0x6665727279u // "ferry"

typedef enum kv_type {
    KV_TYPE_F16 = 0,  // 2 bytes per element
    KV_TYPE_Q8_0 = 1, // blocks of 32: f16 scale + 32 int8 = 34 bytes per 32 elements
} kv_type;

typedef struct kv_config {
    size_t block_tokens;   // token slots per block (default 16)
    size_t cache_bytes;    // bytes of KV pool (kv_cache_mb * 2^20)
    size_t token_bytes;    // KV bytes per token over all layers (kv_token_bytes)
    size_t max_seqs;       // sequence slots (scheduler's max_seqs plus headroom)
    size_t max_seq_tokens; // context length: a sequence never holds more tokens
    bool prefix_cache;     // register full blocks for reuse (default true)
} kv_config;

typedef struct kv_stats {
    size_t n_blocks;          // pool size
    size_t n_used;            // blocks with refcount > 0
    size_t n_cached_idle;     // blocks in the LRU (refcount 0, reusable by prefix)
    size_t n_free;            // blocks on the free stack
    size_t n_seqs;            // open sequences
    uint64_t queries_tokens;  // prompt tokens looked up in the prefix cache
    uint64_t hits_tokens;     // of which found cached
    uint64_t evictions;       // cached blocks evicted to make room
    uint64_t block_copies;    // blocks copied to reuse part of a cached block
} kv_stats;

/* A KV block copy the forward pass must do before it reads the sequence. */
typedef struct kv_copy {
    int32_t seq;      // the sequence slot that gets dst
    int32_t src, dst; // block ids
} kv_copy;

typedef struct kv_cache kv_cache;

/*
 * Per-token KV bytes of a model: n_layer x n_kv_head x head_dim x 2 (K and V)
 * x bytes per element of type (F16: 2; Q8_0: 34/32, head_dim*n_kv_head must be
 * a multiple of 32). Returns 0 or ERR_OVERFLOW / ERR_INVAL (Q8_0 row not a
 * multiple of 32, or a zero dimension).
 */
int kv_token_bytes(size_t n_layer, size_t n_kv_head, size_t head_dim, kv_type type,
                   size_t *out) MUST_USE;

/* Defaults: 16-token blocks, 256 MiB, 64 sequences, 4096 tokens, prefix cache on.
 * token_bytes stays 0 and must be set. */
kv_config kv_config_default(void);

/*
 * Creates a manager for cache_bytes / (token_bytes * block_tokens) blocks.
 * Returns 0 and *out (free with kv_cache_free), ERR_INVAL with detail in e when
 * a field is zero or the pool holds fewer than two blocks, ERR_OVERFLOW, or
 * ERR_NOMEM. Thread: any; the result belongs to the caller's thread.
 */
int kv_cache_new(const kv_config *cfg, kv_cache **out, err_msg *e) MUST_USE;
/* Frees the manager and every sequence slot. NULL ok. */
void kv_cache_free(kv_cache *kv);

/* Number of blocks in the pool / token slots per block. */
size_t kv_n_blocks(const kv_cache *kv);
size_t kv_block_tokens(const kv_cache *kv);

/*
 * Checks that a sequence of n_tokens (prompt + at least one generated token)
 * could ever be held: within max_seq_tokens and within the whole pool.
 * Returns 0, or ERR_TOO_LARGE with e naming the limit (context length, or the
 * pool size in blocks and kv_cache bytes).
 */
int kv_check_fits(const kv_cache *kv, size_t n_tokens, err_msg *e) MUST_USE;

/*
 * Opens a sequence slot with no tokens. Returns 0 and *out_id in
 * [0, max_seqs), or ERR_BUSY when every slot is taken.
 */
int kv_seq_open(kv_cache *kv, int32_t *out_id) MUST_USE;

/*
 * For an empty sequence about to prefill prompt[0..n): takes a reference on
 * every cached block of the longest cached full-block prefix, leaving at least
 * one prompt token to compute (its logits are needed). Then, if the block
 * published last after that prefix (by any sequence) starts with more of the
 * prompt, its matching tokens (at most up to the last prompt token) are taken
 * too: a new block of the sequence gets them, and the K/V bytes must be copied
 * (kv_pending_copies) before a forward step reads the sequence. Returns the
 * number of prompt tokens now present (0 when nothing hit), which the caller
 * skips computing. Never fails. Does not count: the caller calls
 * kv_note_prefix_query once the sequence is really admitted.
 */
size_t kv_seq_match_prefix(kv_cache *kv, int32_t id, const int32_t *prompt, size_t n);

/*
 * The block copies kv_seq_match_prefix asked for since the last
 * kv_copies_done (*out borrowed until then): the caller copies the K/V of
 * every src block to its dst block, then calls kv_copies_done, which drops the
 * references that kept the sources from being evicted meanwhile. Releasing a
 * sequence cancels its pending copy.
 */
size_t kv_pending_copies(const kv_cache *kv, const kv_copy **out);
void kv_copies_done(kv_cache *kv);

/* Adds a lookup of n_query prompt tokens of which n_hit were cached to the
 * queries_tokens / hits_tokens counters. */
void kv_note_prefix_query(kv_cache *kv, size_t n_query, size_t n_hit);

/*
 * Additional blocks id needs to hold n_total tokens (0 if it already does).
 */
size_t kv_seq_blocks_needed(const kv_cache *kv, int32_t id, size_t n_total);

/* Blocks that an allocation could take right now: free stack + idle cached. */
size_t kv_blocks_available(const kv_cache *kv);

/*
 * Grows id's block table to cover n_total tokens, taking free blocks first and
 * then evicting idle cached blocks least recently used first. All or nothing:
 * returns 0, ERR_NOMEM when the pool cannot supply the blocks right now
 * (nothing changed: the scheduler preempts and retries), or ERR_TOO_LARGE when
 * n_total exceeds max_seq_tokens.
 */
int kv_seq_reserve(kv_cache *kv, int32_t id, size_t n_total) MUST_USE;

/*
 * Records that the KV of tokens[0..n) has been written at positions
 * len..len+n of id (len = kv_seq_len before the call). Blocks that become full
 * are entered into the prefix cache. The table must already cover len+n
 * (ASSERTed: the caller reserved).
 */
void kv_seq_commit(kv_cache *kv, int32_t id, const int32_t *tokens, size_t n);

/* Tokens committed to id. */
size_t kv_seq_len(const kv_cache *kv, int32_t id);

/*
 * Borrowed block table of id: *n_blocks ids, valid until the next reserve,
 * release or close of id.
 */
const int32_t *kv_seq_table(const kv_cache *kv, int32_t id, size_t *n_blocks);

/*
 * Drops id's references (its tokens and blocks) but keeps the slot open and
 * empty (preemption: the sequence will be recomputed). Full hashed blocks go
 * to the LRU tail, last block first, so a sequence's tail is evicted before
 * its prefix; so does the partial block holding the last token (the child
 * index finds it); other blocks go back to the free stack.
 */
void kv_seq_release(kv_cache *kv, int32_t id);

/* kv_seq_release, then closes the slot. */
void kv_seq_close(kv_cache *kv, int32_t id);

/* Counters and gauges; see kv_stats. */
void kv_get_stats(const kv_cache *kv, kv_stats *out);

/* Share of the pool referenced by sequences, in [0, 1]. */
double kv_usage_ratio(const kv_cache *kv);

/*
 * KV memory wasted to fragmentation: token slots in referenced blocks that
 * hold no token, divided by all token slots in referenced blocks (0 when
 * nothing is referenced). Shared blocks count once.
 */
double kv_fragmentation(const kv_cache *kv);
