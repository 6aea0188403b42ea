/*
 * vector internals shared by the module's files: the label map, the HNSW
 * struct (read by hnsw_io.c) and small helpers. Not part of the API.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "vector/vector.h"

/* Floats per stored row: dim rounded up to 16 (64 bytes), padding zeroed, so
 * kernels run on whole 64-byte blocks and every row starts 64-byte aligned. */
static inline size_t vec_row_floats(size_t dim)
{
    return (dim + 15) & ~(size_t)15;
}

/* 64-byte aligned, zeroed allocation of n bytes (n rounded up); NULL on failure. */
void *vec_alloc64(size_t n);
/* Grows a vec_alloc64 block from old_n to new_n bytes, zeroing the new part. */
void *vec_realloc64(void *p, size_t old_n, size_t new_n);

/* True when all n values are finite. */
bool vec_all_finite(const float *v, size_t n);

/* --- label map: open addressing, uint64 label -> uint32 slot ------------- */

typedef struct vec_map_entry {
    uint64_t key;
    uint32_t val;
    uint32_t state;  // 0 empty, 1 full, 2 removed
} vec_map_entry;

typedef struct vec_map {
    vec_map_entry *e;
    size_t cap;    // power of two, or 0
    size_t used;   // full entries
    size_t dirty;  // full + removed (probe-chain length driver)
} vec_map;

void vec_map_init(vec_map *m);
void vec_map_deinit(vec_map *m);
/* Returns true and sets *val when key is present. */
bool vec_map_get(const vec_map *m, uint64_t key, uint32_t *val);
/* Inserts or overwrites. Returns 0 or ERR_NOMEM. */
int vec_map_put(vec_map *m, uint64_t key, uint32_t val) MUST_USE;
/* Removes key; returns true when it was present. */
bool vec_map_del(vec_map *m, uint64_t key);
/* Bytes held. */
size_t vec_map_bytes(const vec_map *m);

/* --- HNSW ---------------------------------------------------------------- */

typedef struct hnsw_scratch hnsw_scratch;

/*
 * Locks: write_mu serializes writers (add, delete, save); it protects map,
 * rng, n_deleted updates, the label/level/vector stores of new nodes and all
 * link writes. grow_lock is held shared by every search and exclusively only
 * while the arrays are reallocated (by a writer that already holds write_mu).
 * Link words and list counts are atomics: a writer stores them with release
 * order after the node they point at is complete, a search loads them with
 * acquire order, so a search sees either the old or the new list entry, each
 * naming a complete node. pool_mu protects the free scratch list.
 */
struct hnsw_index {
    size_t dim, row;           // row = vec_row_floats(dim)
    vec_metric metric;
    size_t M, M0, efc;         // M0 = 2*M
    double level_mult;         // 1/ln(M)
    uint64_t seed, rng;
    vec_kernels k;

    size_t cap;                // node slots allocated
    _Atomic uint32_t n;        // node slots published (live + tombstones)
    float *vecs;               // (cap, row), 64-byte aligned
    _Atomic uint32_t *links0;  // (cap, 1 + M0): [count, ids...]
    _Atomic uint32_t **upper;  // (cap) -> (level, 1 + M) or NULL for level-0 nodes
    uint8_t *levels;           // (cap)
    _Atomic uint8_t *deleted;  // (cap) 1 = tombstone
    uint64_t *labels;          // (cap)
    _Atomic uint64_t entry;    // entry point id << 32 | max level; UINT32_MAX id = empty
    _Atomic size_t n_deleted;
    size_t upper_bytes;

    vec_map map;               // live labels only

    pthread_mutex_t write_mu;
    pthread_rwlock_t grow_lock;
    pthread_mutex_t pool_mu;
    hnsw_scratch *pool;        // free scratches (pool_mu)
    size_t pool_bytes;
    hnsw_scratch *ws;          // the writer's scratch (write_mu)
};

#define HNSW_EMPTY UINT32_MAX

static inline uint64_t hnsw_entry_pack(uint32_t id, uint32_t level)
{
    return ((uint64_t)id << 32) | level;
}

/* Allocates an index shell for cfg (validated) with capacity slots. */
int hnsw_alloc(const hnsw_config *cfg, hnsw_index **out, err_msg *e);
/* Rebuilds the label map from labels/deleted of nodes [0, n). ERR_FORMAT on a duplicate. */
int hnsw_rebuild_map(hnsw_index *x, err_msg *e);
