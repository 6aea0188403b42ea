/*
 * vector — nearest-neighbour indexes over float vectors: an HNSW graph index
 * (hnsw_*), a flat exact index (flat_*) and the distance kernels (vec_*).
 *
 * A pure compute library: no JSON, no HTTP, no globals. Vectors are identified
 * by caller-chosen 64-bit labels; adding an existing label replaces its vector.
 *
 * Distances: smaller is closer.
 *   VEC_METRIC_L2      squared Euclidean distance  sum (a_i - b_i)^2
 *   VEC_METRIC_IP      1 - <a, b>                  (inner product, vectors as given)
 *   VEC_METRIC_COSINE  1 - <a, b> / (|a| |b|)      (vectors are L2-normalized on insert
 *                                                   and queries on search; a zero vector
 *                                                   stays zero, at distance 1 from all)
 *
 * Threads: see each index's section below. docs/internals/vector.md describes
 * the data structures, the file format and the invariants.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define VEC_DIM_MAX 16384          // largest dimension accepted (files and API)
#define HNSW_M_MIN 2
#define HNSW_M_MAX 128             // level-0 lists hold 2*M ids
#define HNSW_EF_MAX 16384          // cap on ef_search, ef_construction and k
#define HNSW_LEVEL_MAX 31          // levels are drawn from -ln(U)/ln(M), capped here
#define HNSW_NODES_MAX (1u << 30)  // node slots (live + tombstones) per index

typedef enum vec_metric {
    VEC_METRIC_L2 = 0,
    VEC_METRIC_IP = 1,
    VEC_METRIC_COSINE = 2,
} vec_metric;

/* Parses "l2", "ip" or "cosine". Returns 0 or ERR_INVAL. */
int vec_metric_parse(const char *s, vec_metric *out) MUST_USE;
/* "l2", "ip", "cosine"; "unknown" for other values. */
const char *vec_metric_name(vec_metric m);

/* ---------------------------------------------------------------- kernels */

/* A distance kernel over n floats; a and b need no particular alignment. */
typedef float (*vec_dist_fn)(const float *a, const float *b, size_t n);

typedef struct vec_kernels {
    vec_dist_fn l2sq;  // sum (a_i - b_i)^2
    vec_dist_fn dot;   // sum a_i b_i
    const char *name;  // "avx2" or "scalar"
} vec_kernels;

/*
 * Fills out with the fastest kernels this CPU runs: AVX2+FMA when the CPU has
 * both, else scalar. FERRY_SIMD=scalar in the environment forces scalar.
 * Called once per index at creation; thread-safe (reads the environment).
 */
void vec_kernels_select(vec_kernels *out);
/* The plain C reference kernels. */
void vec_kernels_scalar(vec_kernels *out);
/* The AVX2+FMA kernels. Returns false (out untouched) when the CPU lacks them. */
bool vec_kernels_avx2(vec_kernels *out);
/* Scales v (n floats) to unit L2 norm; leaves a zero vector as is. */
void vec_normalize(float *v, size_t n);

/* ---------------------------------------------------------------- filters */

/*
 * A metadata predicate: true when the vector with this label may be returned.
 * Called from the searching thread, possibly many times per search; it must
 * not call back into the index. ctx is the caller's.
 */
typedef bool (*vec_filter_fn)(void *ctx, uint64_t label);

typedef struct vec_filter {
    vec_filter_fn fn;
    void *ctx;
} vec_filter;

/* One search result. */
typedef struct vec_hit {
    uint64_t label;
    float dist;  // distance under the index metric (see the top of this file)
} vec_hit;

/* ---------------------------------------------------------------- flat index */

/*
 * flat_index — exact search by scanning every vector. For small collections
 * and as ground truth for the HNSW index. Vectors are stored contiguously,
 * 64-byte aligned rows. Threads: searches may run concurrently with each
 * other; add/delete need exclusive access (the caller's lock).
 */
typedef struct flat_index flat_index;

/* Creates an empty index for dim-dimensional vectors (1..VEC_DIM_MAX).
 * Returns 0, ERR_INVAL (dim, metric) or ERR_NOMEM, with detail in e. */
int flat_index_new(size_t dim, vec_metric metric, flat_index **out, err_msg *e) MUST_USE;
/* Frees the index. NULL is ok. */
void flat_index_free(flat_index *x);
/* Adds v (dim floats, copied) under label, replacing any vector with that label.
 * Returns 0, ERR_INVAL (non-finite value), ERR_TOO_LARGE or ERR_NOMEM. */
int flat_index_add(flat_index *x, uint64_t label, const float *v, err_msg *e) MUST_USE;
/* Removes label. Returns 0 or ERR_NOT_FOUND. */
int flat_index_delete(flat_index *x, uint64_t label, err_msg *e) MUST_USE;
/*
 * Writes the k nearest vectors to q that pass filter (NULL: all) into out
 * (k slots), closest first, ties by smaller label. Returns the number written
 * (< k when fewer vectors match) or ERR_INVAL (k is 0 or above HNSW_EF_MAX).
 */
int flat_index_search(const flat_index *x, const float *q, size_t k, const vec_filter *filter,
                      vec_hit *out, err_msg *e) MUST_USE;
/* Number of vectors. */
size_t flat_index_count(const flat_index *x);

/* ---------------------------------------------------------------- HNSW index */

/*
 * hnsw_index — Hierarchical Navigable Small World graph (Malkov & Yashunin).
 *
 * Threads: any number of searches run concurrently with each other and with
 * one writer at a time (add, delete, save); writers serialize on an internal
 * mutex. Searches never see a half-inserted node. The index may be freed only
 * when no other call on it is running.
 */
typedef struct hnsw_index hnsw_index;

typedef struct hnsw_config {
    size_t dim;              // 1..VEC_DIM_MAX
    vec_metric metric;
    size_t M;                // links per node on upper levels (2*M on level 0); 2..HNSW_M_MAX
    size_t ef_construction;  // candidate list size while inserting; M..HNSW_EF_MAX
    size_t capacity;         // node slots reserved up front (grows by doubling when full)
    uint64_t seed;           // seeds the level generator: same inserts, same graph
} hnsw_config;

/* dim 0 (must be set), metric L2, M 16, ef_construction 200, capacity 1024, seed 42. */
hnsw_config hnsw_config_default(void);

/* Creates an empty index. Returns 0, ERR_INVAL (a config value out of range,
 * named in e) or ERR_NOMEM. */
int hnsw_index_new(const hnsw_config *cfg, hnsw_index **out, err_msg *e) MUST_USE;
/* Frees the index and everything it owns. NULL is ok. No call may be running. */
void hnsw_index_free(hnsw_index *x);

/*
 * Inserts v (dim floats, copied) under label. If label is present, this is an
 * update: the old node becomes a tombstone (links repaired as by delete) and a
 * new node carries the label. Returns 0, ERR_INVAL (non-finite value),
 * ERR_TOO_LARGE (HNSW_NODES_MAX slots used) or ERR_NOMEM. Writer; thread-safe.
 */
int hnsw_index_add(hnsw_index *x, uint64_t label, const float *v, err_msg *e) MUST_USE;
/*
 * Deletes label: its node becomes a tombstone (still traversed, never
 * returned) and every neighbour that linked to it gets a new list chosen by
 * the neighbour heuristic from its other links and the deleted node's links.
 * Returns 0 or ERR_NOT_FOUND. Writer; thread-safe.
 */
int hnsw_index_delete(hnsw_index *x, uint64_t label, err_msg *e) MUST_USE;
/* True when label is present (not deleted). Thread-safe. */
bool hnsw_index_contains(hnsw_index *x, uint64_t label);

/* Optional counters a search fills in (for tests and benchmarks). */
typedef struct hnsw_search_stats {
    size_t distances;  // distance computations
    bool exact_scan;   // the filter looked selective and the search scanned instead
} hnsw_search_stats;

typedef struct hnsw_search_params {
    size_t ef;                 // candidate list size; raised to k when smaller (0 = k)
    const vec_filter *filter;  // NULL: every live vector may be returned
    /*
     * With a filter, the share of vectors passing it is estimated from a fixed
     * sample; below this share (default 0.02 when 0) the search scans every
     * vector exactly instead of walking the graph. Negative: never scan.
     */
    double scan_below;
    hnsw_search_stats *stats;  // NULL or filled in
} hnsw_search_params;

/*
 * Writes up to k nearest live vectors to q (dim floats) that pass the filter
 * into out (k slots), closest first. Non-matching and deleted nodes are
 * traversed but never returned. p may be NULL (ef = k, no filter). Returns the
 * number written or ERR_INVAL (k is 0 or above HNSW_EF_MAX) or ERR_NOMEM
 * (scratch). Thread-safe, concurrent with other searches and with a writer.
 */
int hnsw_index_search(hnsw_index *x, const float *q, size_t k, const hnsw_search_params *p,
                      vec_hit *out, err_msg *e) MUST_USE;

/* Live vectors (not counting tombstones). Thread-safe. */
size_t hnsw_index_count(hnsw_index *x);
/* Tombstones (deleted or replaced nodes still in the graph). Thread-safe. */
size_t hnsw_index_deleted(hnsw_index *x);
/* Bytes of memory the index holds (storage, graph, label map, scratch). Thread-safe. */
size_t hnsw_index_memory_bytes(hnsw_index *x);
/* The configuration the index runs with (capacity is the current one). Thread-safe. */
hnsw_config hnsw_index_config(hnsw_index *x);

/*
 * Writes the index to path: to "path.tmp" first, fsynced, renamed over path,
 * then the directory fsynced, so a crash leaves either the old file or the new
 * one, never a mix. Format in docs/internals/vector.md (magic, version, dims,
 * metric, counts, sections, xxHash64 of everything before the trailer).
 * Returns 0 or ERR_IO (path named in e). Writer: blocks add/delete meanwhile,
 * not searches.
 */
int hnsw_index_save(hnsw_index *x, const char *path, err_msg *e) MUST_USE;
/*
 * Reads an index written by hnsw_index_save. Every count, size and offset is
 * validated (checked arithmetic against the file size), then the checksum,
 * then the graph (link targets, levels, entry point, unique labels). Returns
 * 0, ERR_IO (cannot open/read), ERR_FORMAT (damaged, truncated or not an
 * index file: e says what), ERR_UNSUPPORTED (newer version) or ERR_NOMEM.
 */
int hnsw_index_load(const char *path, hnsw_index **out, err_msg *e) MUST_USE;
