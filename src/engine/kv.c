/*
 * engine/kv — paged KV block manager. See kv.h for the data structures and
 * invariants; this file keeps them.
 */
#include "engine/kv.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define NIL (-1)

/* What a block's cached[] says: where the prefix cache knows it from. */
enum {
    NOT_CACHED = 0,   // private, or free
    CACHED_FULL,      // full: in the prefix table (and maybe the child index)
    CACHED_PARTIAL,   // a released sequence's partial last block: in the child index only
};

typedef struct kv_seq {
    bool is_open;
    size_t n_tokens;   // committed tokens
    size_t n_blocks;   // entries used in table
    uint64_t tail_hash; // hash of the last full block (KV_HASH_ROOT if none)
    int32_t *table;    // (max_blocks_per_seq) block ids
} kv_seq;

struct kv_cache {
    kv_config cfg;
    size_t n_blocks;
    size_t bt;          // block_tokens
    size_t max_blocks;  // per sequence: ceil(max_seq_tokens / bt)

    int32_t *ref;        // (n_blocks) reference counts
    uint32_t *fill;      // (n_blocks) token slots written
    uint8_t *cached;     // (n_blocks) NOT_CACHED, CACHED_FULL or CACHED_PARTIAL
    uint64_t *hash;      // (n_blocks) chained hash, valid when CACHED_FULL
    uint64_t *parent;    // (n_blocks) parent chained hash, valid when cached
    int32_t *toks;       // (n_blocks, bt) token ids written in each block

    int32_t *free_stack; // (n_blocks)
    size_t n_free;

    int32_t *lru_prev, *lru_next; // (n_blocks) links of the LRU list
    int32_t lru_head, lru_tail;   // head = least recently used
    size_t n_lru;

    uint64_t *ht_key;   // (ht_cap) chained hash
    int32_t *ht_val;    // (ht_cap) block id, NIL = empty slot
    size_t ht_mask;     // ht_cap - 1, ht_cap a power of two >= 2 * n_blocks

    uint64_t *ch_key;   // (ht_cap) parent chained hash
    int32_t *ch_val;    // (ht_cap) the latest published block with that parent, NIL = empty

    kv_copy *copies;    // (max_seqs) block copies pending for the next forward step
    size_t n_copies;

    kv_seq *seqs;       // (max_seqs)
    int32_t *seq_free;  // (max_seqs) stack of closed slots
    size_t n_seq_free;

    size_t n_used;      // blocks with ref > 0
    size_t n_filled;    // sum of fill over blocks with ref > 0 (fragmentation in O(1))
    uint64_t queries_tokens, hits_tokens, evictions, block_copies;
};

/* ---------------------------------------------------------------- config -- */

int kv_token_bytes(size_t n_layer, size_t n_kv_head, size_t head_dim, kv_type type, size_t *out)
{
    size_t row, n;
    if (n_layer == 0 || n_kv_head == 0 || head_dim == 0)
        return ERR_INVAL;
    if (!size_mul_ok(n_kv_head, head_dim, &row) || !size_mul_ok(row, n_layer, &n) ||
        !size_mul_ok(n, 2, &n))
        return ERR_OVERFLOW;
    if (type == KV_TYPE_F16) {
        if (!size_mul_ok(n, 2, &n))
            return ERR_OVERFLOW;
    } else if (type == KV_TYPE_Q8_0) {
        if (row % 32 != 0)
            return ERR_INVAL;
        if (!size_mul_ok(n / 32, 34, &n))
            return ERR_OVERFLOW;
    } else {
        return ERR_INVAL;
    }
    *out = n;
    return 0;
}

kv_config kv_config_default(void)
{
    return (kv_config){
        .block_tokens = KV_BLOCK_TOKENS_DEFAULT,
        .cache_bytes = (size_t)256 << 20,
        .token_bytes = 0,
        .max_seqs = 64,
        .max_seq_tokens = 4096,
        .prefix_cache = true,
    };
}

static void *xcalloc(size_t n, size_t size, bool *ok)
{
    if (n == 0)
        n = 1;
    void *p = calloc(n, size);
    if (!p)
        *ok = false;
    return p;
}

int kv_cache_new(const kv_config *cfg, kv_cache **out, err_msg *e)
{
    *out = NULL;
    if (cfg->block_tokens == 0 || cfg->token_bytes == 0 || cfg->max_seqs == 0 ||
        cfg->max_seq_tokens == 0)
        return err_set(e, ERR_INVAL, "kv: block_tokens, token_bytes, max_seqs and "
                                     "max_seq_tokens must all be positive");
    if (cfg->max_seqs > INT32_MAX)
        return err_set(e, ERR_INVAL, "kv: max_seqs %zu is too large", cfg->max_seqs);
    size_t block_bytes;
    if (!size_mul_ok(cfg->token_bytes, cfg->block_tokens, &block_bytes))
        return err_set(e, ERR_OVERFLOW, "kv: block of %zu tokens x %zu bytes overflows",
                       cfg->block_tokens, cfg->token_bytes);
    size_t n_blocks = cfg->cache_bytes / block_bytes;
    if (n_blocks < 2)
        return err_set(e, ERR_INVAL,
                       "kv: kv_cache of %zu bytes holds %zu blocks of %zu bytes; at least 2 needed",
                       cfg->cache_bytes, n_blocks, block_bytes);
    if (n_blocks > (size_t)INT32_MAX / 4)
        n_blocks = (size_t)INT32_MAX / 4;

    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv)
        return err_set(e, ERR_NOMEM, "kv: out of memory");
    kv->cfg = *cfg;
    kv->n_blocks = n_blocks;
    kv->bt = cfg->block_tokens;
    kv->max_blocks = (cfg->max_seq_tokens + kv->bt - 1) / kv->bt;
    size_t ht_cap = 16;
    while (ht_cap < 2 * n_blocks)
        ht_cap *= 2;
    kv->ht_mask = ht_cap - 1;

    bool ok = true;
    size_t ntoks;
    if (!size_mul_ok(n_blocks, kv->bt, &ntoks)) {
        free(kv);
        return err_set(e, ERR_OVERFLOW, "kv: pool token count overflows");
    }
    kv->ref = xcalloc(n_blocks, sizeof *kv->ref, &ok);
    kv->fill = xcalloc(n_blocks, sizeof *kv->fill, &ok);
    kv->cached = xcalloc(n_blocks, sizeof *kv->cached, &ok);
    kv->hash = xcalloc(n_blocks, sizeof *kv->hash, &ok);
    kv->parent = xcalloc(n_blocks, sizeof *kv->parent, &ok);
    kv->toks = xcalloc(ntoks, sizeof *kv->toks, &ok);
    kv->free_stack = xcalloc(n_blocks, sizeof *kv->free_stack, &ok);
    kv->lru_prev = xcalloc(n_blocks, sizeof *kv->lru_prev, &ok);
    kv->lru_next = xcalloc(n_blocks, sizeof *kv->lru_next, &ok);
    kv->ht_key = xcalloc(ht_cap, sizeof *kv->ht_key, &ok);
    kv->ht_val = xcalloc(ht_cap, sizeof *kv->ht_val, &ok);
    kv->ch_key = xcalloc(ht_cap, sizeof *kv->ch_key, &ok);
    kv->ch_val = xcalloc(ht_cap, sizeof *kv->ch_val, &ok);
    kv->copies = xcalloc(cfg->max_seqs, sizeof *kv->copies, &ok);
    kv->seqs = xcalloc(cfg->max_seqs, sizeof *kv->seqs, &ok);
    kv->seq_free = xcalloc(cfg->max_seqs, sizeof *kv->seq_free, &ok);
    if (ok) {
        for (size_t i = 0; i < cfg->max_seqs && ok; i++)
            kv->seqs[i].table = xcalloc(kv->max_blocks, sizeof(int32_t), &ok);
    }
    if (!ok) {
        kv_cache_free(kv);
        return err_set(e, ERR_NOMEM, "kv: out of memory for %zu blocks", n_blocks);
    }
    /* Free stack pops block 0 first: fill it in reverse. */
    for (size_t i = 0; i < n_blocks; i++)
        kv->free_stack[i] = (int32_t)(n_blocks - 1 - i);
    kv->n_free = n_blocks;
    kv->lru_head = kv->lru_tail = NIL;
    for (size_t i = 0; i < ht_cap; i++)
        kv->ht_val[i] = kv->ch_val[i] = NIL;
    for (size_t i = 0; i < cfg->max_seqs; i++)
        kv->seq_free[i] = (int32_t)(cfg->max_seqs - 1 - i);
    kv->n_seq_free = cfg->max_seqs;
    *out = kv;
    return 0;
}

void kv_cache_free(kv_cache *kv)
{
    if (!kv)
        return;
    if (kv->seqs)
        for (size_t i = 0; i < kv->cfg.max_seqs; i++)
            free(kv->seqs[i].table);
    free(kv->ref);
    free(kv->fill);
    free(kv->cached);
    free(kv->hash);
    free(kv->parent);
    free(kv->toks);
    free(kv->free_stack);
    free(kv->lru_prev);
    free(kv->lru_next);
    free(kv->ht_key);
    free(kv->ht_val);
    free(kv->ch_key);
    free(kv->ch_val);
    free(kv->copies);
    free(kv->seqs);
    free(kv->seq_free);
    free(kv);
}

size_t kv_n_blocks(const kv_cache *kv)
{
    return kv->n_blocks;
}

size_t kv_block_tokens(const kv_cache *kv)
{
    return kv->bt;
}

int kv_check_fits(const kv_cache *kv, size_t n_tokens, err_msg *e)
{
    if (n_tokens > kv->cfg.max_seq_tokens)
        return err_set(e, ERR_TOO_LARGE,
                       "request needs %zu tokens (prompt + 1 generated) but the context length "
                       "is %zu tokens",
                       n_tokens, kv->cfg.max_seq_tokens);
    size_t need = (n_tokens + kv->bt - 1) / kv->bt;
    if (need > kv->n_blocks)
        return err_set(e, ERR_TOO_LARGE,
                       "request needs %zu tokens = %zu KV blocks of %zu tokens but the KV cache "
                       "holds only %zu blocks (kv_cache_mb = %zu)",
                       n_tokens, need, kv->bt, kv->n_blocks, kv->cfg.cache_bytes >> 20);
    return 0;
}

/* ------------------------------------------------------------ hash table -- */

static uint64_t block_hash(uint64_t parent, const int32_t *toks, size_t n)
{
    /* int32 token ids hashed as stored; every supported host is little-endian,
     * and the hash never leaves the process. */
    return XXH64(toks, n * sizeof *toks, parent);
}

static size_t ht_slot(const kv_cache *kv, uint64_t key)
{
    /* The key is already an xxHash64 output: its low bits are uniform. */
    return (size_t)key & kv->ht_mask;
}

/* Block id cached under key whose parent hash and tokens match, or NIL. */
static int32_t ht_find(const kv_cache *kv, uint64_t key, uint64_t parent, const int32_t *toks)
{
    for (size_t i = ht_slot(kv, key);; i = (i + 1) & kv->ht_mask) {
        int32_t b = kv->ht_val[i];
        if (b == NIL)
            return NIL;
        if (kv->ht_key[i] == key) {
            if (kv->parent[b] == parent &&
                memcmp(kv->toks + (size_t)b * kv->bt, toks, kv->bt * sizeof *toks) == 0)
                return b;
        }
    }
}

static void ht_insert(kv_cache *kv, uint64_t key, int32_t b)
{
    size_t i = ht_slot(kv, key);
    while (kv->ht_val[i] != NIL)
        i = (i + 1) & kv->ht_mask;
    kv->ht_key[i] = key;
    kv->ht_val[i] = b;
}

/* Empties slot hole of an open-addressing table (keys, vals, mask) by
 * backward shift, so every other key stays reachable from its home slot
 * without tombstones. */
static void oa_delete(uint64_t *keys, int32_t *vals, size_t mask, size_t hole)
{
    for (size_t j = (hole + 1) & mask; vals[j] != NIL; j = (j + 1) & mask) {
        size_t home = (size_t)keys[j] & mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool home_between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!home_between) {
            keys[hole] = keys[j];
            vals[hole] = vals[j];
            hole = j;
        }
    }
    vals[hole] = NIL;
}

/* Removes the entry of block b (keyed by kv->hash[b]). */
static void ht_remove(kv_cache *kv, int32_t b)
{
    size_t i = ht_slot(kv, kv->hash[b]);
    while (kv->ht_val[i] != b) {
        ASSERT(kv->ht_val[i] != NIL);
        i = (i + 1) & kv->ht_mask;
    }
    oa_delete(kv->ht_key, kv->ht_val, kv->ht_mask, i);
}

/*
 * The child index: parent chained hash -> the block published last with that
 * parent. It finds the block that continued a cached prefix when the next
 * prompt shares only part of it (or all of it but the last token, which must
 * be computed): kv_seq_match_prefix copies the block's matching tokens.
 */
static size_t ch_slot_of(const kv_cache *kv, uint64_t parent)
{
    size_t i = ht_slot(kv, parent);
    while (kv->ch_val[i] != NIL && kv->ch_key[i] != parent)
        i = (i + 1) & kv->ht_mask;
    return i;
}

/* Drops b from the child index if it is its parent's entry. */
static void ch_forget(kv_cache *kv, int32_t b)
{
    size_t i = ch_slot_of(kv, kv->parent[b]);
    if (kv->ch_val[i] == b)
        oa_delete(kv->ch_key, kv->ch_val, kv->ht_mask, i);
}

/* ------------------------------------------------------------------ LRU -- */

static void lru_unlink(kv_cache *kv, int32_t b)
{
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p != NIL)
        kv->lru_next[p] = n;
    else
        kv->lru_head = n;
    if (n != NIL)
        kv->lru_prev[n] = p;
    else
        kv->lru_tail = p;
    kv->n_lru--;
}

static void lru_push_tail(kv_cache *kv, int32_t b)
{
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = NIL;
    if (kv->lru_tail != NIL)
        kv->lru_next[kv->lru_tail] = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_lru++;
}

/* ------------------------------------------------------------- blocks -- */

static void block_ref(kv_cache *kv, int32_t b)
{
    if (kv->ref[b] == 0) {
        /* A referenced block is never on the free stack, so a 0-ref block taken
         * by reference is an idle cached one. */
        ASSERT(kv->cached[b] != NOT_CACHED);
        lru_unlink(kv, b);
        kv->n_used++;
        kv->n_filled += kv->fill[b];
    }
    kv->ref[b]++;
}

/* An unreferenced block that holds nothing worth keeping. */
static void free_push(kv_cache *kv, int32_t b)
{
    kv->fill[b] = 0;
    kv->free_stack[kv->n_free++] = b;
}

static void block_unref(kv_cache *kv, int32_t b)
{
    ASSERT(kv->ref[b] > 0);
    if (--kv->ref[b] > 0)
        return;
    kv->n_used--;
    kv->n_filled -= kv->fill[b];
    if (kv->cached[b] != NOT_CACHED)
        lru_push_tail(kv, b);
    else
        free_push(kv, b);
}

/* Makes b its parent's child. A partial block it replaces can no longer be
 * found: it leaves the cache (to the free stack now, or when its last
 * reference goes). */
static void ch_put(kv_cache *kv, uint64_t parent, int32_t b)
{
    size_t i = ch_slot_of(kv, parent);
    int32_t old = kv->ch_val[i];
    if (old != NIL && old != b && kv->cached[old] == CACHED_PARTIAL) {
        kv->cached[old] = NOT_CACHED;
        if (kv->ref[old] == 0) {
            lru_unlink(kv, old);
            free_push(kv, old);
        }
    }
    kv->ch_key[i] = parent;
    kv->ch_val[i] = b;
}


/* Takes a block for writing: free stack first, else evicts the LRU head. */
static int32_t block_take(kv_cache *kv)
{
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else {
        b = kv->lru_head;
        ASSERT(b != NIL);
        lru_unlink(kv, b);
        if (kv->cached[b] == CACHED_FULL)
            ht_remove(kv, b);
        ch_forget(kv, b);
        kv->cached[b] = NOT_CACHED;
        kv->evictions++;
    }
    kv->fill[b] = 0;
    kv->ref[b] = 1;
    kv->n_used++;
    return b;
}

/* ---------------------------------------------------------- sequences -- */

static kv_seq *seq_get(const kv_cache *kv, int32_t id)
{
    ASSERT(id >= 0 && (size_t)id < kv->cfg.max_seqs && kv->seqs[id].is_open);
    return &kv->seqs[id];
}

int kv_seq_open(kv_cache *kv, int32_t *out_id)
{
    if (kv->n_seq_free == 0)
        return ERR_BUSY;
    int32_t id = kv->seq_free[--kv->n_seq_free];
    kv_seq *s = &kv->seqs[id];
    s->is_open = true;
    s->n_tokens = 0;
    s->n_blocks = 0;
    s->tail_hash = KV_HASH_ROOT;
    *out_id = id;
    return 0;
}

size_t kv_seq_match_prefix(kv_cache *kv, int32_t id, const int32_t *prompt, size_t n)
{
    kv_seq *s = seq_get(kv, id);
    ASSERT(s->n_tokens == 0 && s->n_blocks == 0);
    if (!kv->cfg.prefix_cache || n == 0)
        return 0;
    /* Leave at least one token to compute: its logits start generation. */
    size_t n_full = (n - 1) / kv->bt;
    if (n_full > kv->max_blocks)
        n_full = kv->max_blocks;
    uint64_t h = KV_HASH_ROOT;
    size_t i = 0;
    for (; i < n_full; i++) {
        const int32_t *t = prompt + i * kv->bt;
        uint64_t key = block_hash(h, t, kv->bt);
        int32_t b = ht_find(kv, key, h, t);
        if (b == NIL)
            break;
        block_ref(kv, b);
        s->table[s->n_blocks++] = b;
        h = key;
    }
    s->n_tokens = i * kv->bt;
    s->tail_hash = h;
    /* The block that continued this prefix last time may share more of the
     * prompt (all of the next block but the last token, when the prompt was
     * seen whole before): its matching tokens are copied into a new block of
     * ours, since ours will go on differently. Copying a block costs far less
     * than computing one token. */
    size_t want = n - 1 - s->n_tokens;
    if (want == 0 || s->n_blocks >= kv->max_blocks)
        return s->n_tokens;
    int32_t c = kv->ch_val[ch_slot_of(kv, h)];
    if (c == NIL)
        return s->n_tokens;
    const int32_t *ct = kv->toks + (size_t)c * kv->bt, *pt = prompt + s->n_tokens;
    size_t m = 0;
    want = MIN(want, (size_t)kv->fill[c]); // a block, or fewer: a partial child
    while (m < want && ct[m] == pt[m])
        m++;
    if (m == 0)
        return s->n_tokens;
    block_ref(kv, c); // held until the copy is done: not evicted for the new block
    if (kv_blocks_available(kv) == 0) {
        block_unref(kv, c);
        return s->n_tokens;
    }
    int32_t d = block_take(kv);
    memcpy(kv->toks + (size_t)d * kv->bt, pt, m * sizeof *pt);
    kv->fill[d] = (uint32_t)m;
    kv->n_filled += m;
    s->table[s->n_blocks++] = d;
    s->n_tokens += m;
    kv->copies[kv->n_copies++] = (kv_copy){.seq = id, .src = c, .dst = d};
    kv->block_copies++;
    return s->n_tokens;
}

size_t kv_pending_copies(const kv_cache *kv, const kv_copy **out)
{
    *out = kv->copies;
    return kv->n_copies;
}

void kv_copies_done(kv_cache *kv)
{
    for (size_t i = 0; i < kv->n_copies; i++)
        block_unref(kv, kv->copies[i].src);
    kv->n_copies = 0;
}

void kv_note_prefix_query(kv_cache *kv, size_t n_query, size_t n_hit)
{
    kv->queries_tokens += n_query;
    kv->hits_tokens += n_hit;
}

size_t kv_seq_blocks_needed(const kv_cache *kv, int32_t id, size_t n_total)
{
    const kv_seq *s = seq_get(kv, id);
    size_t need = (n_total + kv->bt - 1) / kv->bt;
    return need > s->n_blocks ? need - s->n_blocks : 0;
}

size_t kv_blocks_available(const kv_cache *kv)
{
    return kv->n_free + kv->n_lru;
}

int kv_seq_reserve(kv_cache *kv, int32_t id, size_t n_total)
{
    kv_seq *s = seq_get(kv, id);
    if (n_total > kv->cfg.max_seq_tokens)
        return ERR_TOO_LARGE;
    size_t extra = kv_seq_blocks_needed(kv, id, n_total);
    if (extra > kv_blocks_available(kv))
        return ERR_NOMEM;
    for (size_t i = 0; i < extra; i++)
        s->table[s->n_blocks++] = block_take(kv);
    return 0;
}

void kv_seq_commit(kv_cache *kv, int32_t id, const int32_t *tokens, size_t n)
{
    kv_seq *s = seq_get(kv, id);
    ASSERT(s->n_tokens + n <= s->n_blocks * kv->bt);
    for (size_t i = 0; i < n; i++) {
        size_t pos = s->n_tokens++;
        int32_t b = s->table[pos / kv->bt];
        size_t off = pos % kv->bt;
        ASSERT(kv->ref[b] == 1 && kv->cached[b] == NOT_CACHED && kv->fill[b] == off);
        kv->toks[(size_t)b * kv->bt + off] = tokens[i];
        kv->fill[b] = (uint32_t)(off + 1);
        kv->n_filled++;
        if (off + 1 < kv->bt)
            continue;
        /* The block is full: chain its hash, and publish it unless an identical
         * prefix block is already cached (then ours stays private and returns to
         * the free stack when released). */
        const int32_t *t = kv->toks + (size_t)b * kv->bt;
        uint64_t key = block_hash(s->tail_hash, t, kv->bt);
        if (kv->cfg.prefix_cache && ht_find(kv, key, s->tail_hash, t) == NIL) {
            kv->hash[b] = key;
            kv->parent[b] = s->tail_hash;
            kv->cached[b] = CACHED_FULL;
            ht_insert(kv, key, b);
            ch_put(kv, s->tail_hash, b);
        }
        s->tail_hash = key;
    }
}

size_t kv_seq_len(const kv_cache *kv, int32_t id)
{
    return seq_get(kv, id)->n_tokens;
}

const int32_t *kv_seq_table(const kv_cache *kv, int32_t id, size_t *n_blocks)
{
    const kv_seq *s = seq_get(kv, id);
    *n_blocks = s->n_blocks;
    return s->table;
}

void kv_seq_release(kv_cache *kv, int32_t id)
{
    kv_seq *s = seq_get(kv, id);
    /* A copy not done yet would write a block this sequence no longer holds. */
    bool copy_pending = false;
    for (size_t i = 0; i < kv->n_copies;) {
        if (kv->copies[i].seq == id) {
            block_unref(kv, kv->copies[i].src);
            kv->copies[i] = kv->copies[--kv->n_copies];
            copy_pending = true;
        } else {
            i++;
        }
    }
    /* A partial last block that only this sequence holds stays cached as its
     * prefix's child: the next turn of a conversation, or the same prompt again,
     * copies its first tokens instead of computing them. */
    if (kv->cfg.prefix_cache && !copy_pending && s->n_tokens > 0) {
        int32_t b = s->table[(s->n_tokens - 1) / kv->bt]; // its K/V all written
        if (kv->ref[b] == 1 && kv->cached[b] == NOT_CACHED && kv->fill[b] < kv->bt) {
            kv->cached[b] = CACHED_PARTIAL;
            kv->parent[b] = s->tail_hash;
            ch_put(kv, s->tail_hash, b);
        }
    }
    /* Last block first: the LRU then evicts a sequence's tail before the
     * prefix that other requests are likelier to share. */
    for (size_t i = s->n_blocks; i-- > 0;)
        block_unref(kv, s->table[i]);
    s->n_blocks = 0;
    s->n_tokens = 0;
    s->tail_hash = KV_HASH_ROOT;
}

void kv_seq_close(kv_cache *kv, int32_t id)
{
    kv_seq_release(kv, id);
    kv->seqs[id].is_open = false;
    kv->seq_free[kv->n_seq_free++] = id;
}

void kv_get_stats(const kv_cache *kv, kv_stats *out)
{
    out->n_blocks = kv->n_blocks;
    out->n_used = kv->n_used;
    out->n_cached_idle = kv->n_lru;
    out->n_free = kv->n_free;
    out->n_seqs = kv->cfg.max_seqs - kv->n_seq_free;
    out->queries_tokens = kv->queries_tokens;
    out->hits_tokens = kv->hits_tokens;
    out->evictions = kv->evictions;
    out->block_copies = kv->block_copies;
}

double kv_usage_ratio(const kv_cache *kv)
{
    return (double)kv->n_used / (double)kv->n_blocks;
}

double kv_fragmentation(const kv_cache *kv)
{
    /* O(1): n_filled is kept by ref/unref/commit (the scheduler publishes this
     * every step). */
    size_t slots = kv->n_used * kv->bt;
    ASSERT(kv->n_filled <= slots);
    return slots ? (double)(slots - kv->n_filled) / (double)slots : 0.0;
}
