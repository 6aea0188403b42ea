/*
 * model/kern — compute kernels: quantized matmul and the forward pass's helpers.
 *
 * Two implementations sit behind one table: a portable scalar reference and
 * an AVX2+FMA+F16C one. The table is chosen once, on first use: AVX2 when the
 * CPU has it, unless the environment variable FERRY_SIMD=scalar forces the
 * scalar one (for tests and for comparing paths).
 *
 * Matmul: Y = X·Wᵀ with W (rows × cols) of any supported tensor type and X
 * (n × cols) f32. For quantized W the activations are first quantized per
 * block (32-element blocks with an f32 scale for Q8_0/Q4_0 weights,
 * 256-element super-blocks with an f32 scale and 16-element sums for
 * Q4_K/Q6_K) so each block's dot product is an exact integer sum; F32, F16 and
 * BF16 weights are dotted with the f32 activations directly.
 *
 * BATCH INVARIANCE: the value of Y[i][r] depends only on X row i, W row r and
 * the implementation (scalar or AVX2) — never on n, on which other rows are
 * in the batch, on tiling or on the thread count. Every dot product runs the
 * same instruction sequence in a fixed order wherever it lands in a tile, and
 * no reduction is split across threads. The same holds for every helper
 * below: each output row is a function of its own input row only. The
 * serving engine relies on this for bitwise-equal logits alone or in a batch.
 *
 * Threads: all functions are reentrant; those taking a pool use it as
 * pool_for does (one caller at a time per pool). Nothing here allocates.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"
#include "model/tensor.h"

/* "avx2" or "scalar": the implementation in use (resolves the choice if needed). */
const char *kern_simd_name(void);

/*
 * Switches the implementation: "scalar" or "avx2". Returns 0, ERR_UNSUPPORTED
 * when the CPU lacks AVX2/FMA/F16C, ERR_INVAL for another name. For tests and
 * benchmarks: not safe while other threads run kernels.
 */
int kern_simd_set(const char *name) MUST_USE;

/*
 * A weight matrix: rows × cols elements of type, rows row_bytes apart. After
 * kern_mat_pack, a Q8_0/Q4_0 matrix also holds its rows in groups of 8
 * interleaved rows (layout: kern_int.h), which the AVX2 kernels read instead
 * of data; results are bitwise the same either way (the float order is a
 * function of the values, not of the layout), only faster.
 */
typedef struct kern_mat {
    tensor_type type;
    size_t rows, cols;
    size_t row_bytes; /* stride between rows, >= tensor_row_bytes(type, cols) */
    const void *data; /* borrowed; must outlive the kern_mat's use */
    /* kern_mat_pack's copy (owned; NULL when not packed): rows [0, 8 * pack_groups) */
    const uint8_t *pack;
    size_t pack_groups, pack_group_bytes, pack_bytes;
} kern_mat;

/*
 * Fills m for dense rows (row_bytes = tensor_row_bytes(type, cols)). Returns 0,
 * ERR_UNSUPPORTED for an unsupported type, ERR_FORMAT when cols is not a
 * multiple of the block size (or is 0), ERR_OVERFLOW when rows*row_bytes overflows.
 */
int kern_mat_init(kern_mat *m, tensor_type type, size_t rows, size_t cols, const void *data)
    MUST_USE;

/*
 * Adds the interleaved copy of a Q8_0/Q4_0 matrix's rows (in groups of 8; the
 * rows past the last whole group stay in data only) that the AVX2 matmul reads:
 * one sequential stream per group for decode, and 8 weight rows per vector
 * lane set for the batched kernels. A no-op (0) for other types, for fewer than
 * 8 rows and when already packed. Costs one more copy of the matrix in memory
 * (anonymous pages, advised to be huge pages); data stays borrowed and is
 * still read for the tail rows. Returns 0, ERR_NOMEM or ERR_OVERFLOW.
 * Not thread-safe against kernels using m; undo with kern_mat_unpack.
 */
int kern_mat_pack(kern_mat *m) MUST_USE;

/* Frees kern_mat_pack's copy (no-op when there is none). Returns 0, so that it
 * fits the same callbacks as kern_mat_pack (the model loaders' each_mat). */
int kern_mat_unpack(kern_mat *m);

/*
 * Scratch bytes kern_matmul needs for n activation rows of cols elements with
 * weights of type t (0 for F32/F16/BF16). Includes slack for 64-byte
 * alignment. SIZE_MAX if the size overflows.
 */
size_t kern_scratch_bytes(tensor_type t, size_t cols, size_t n);

/*
 * Y = X·Wᵀ: x is n rows of w->cols f32 (row i at x + i*w->cols), y gets n rows
 * of w->rows f32 (row i at y + i*w->rows). scratch holds at least
 * kern_scratch_bytes(w->type, w->cols, n) bytes (may be NULL for float types).
 * Work is split over weight rows on pool p (NULL = calling thread only); each
 * weight row is read once for all n activation rows. x and y must not overlap.
 */
void kern_matmul(pool *p, const kern_mat *w, const float *x, size_t n, float *y, void *scratch,
                 size_t scratch_bytes);

/* Most matrices one kern_matmul_multi call takes. */
#define KERN_MULTI_MAX 4

/*
 * Scratch bytes kern_matmul_multi needs for these n_mats weights (all with the
 * same cols) and n activation rows: room for each activation format they use
 * (Q8 for Q8_0/Q4_0, Q8K for Q4_K/Q6_K). SIZE_MAX on overflow.
 */
size_t kern_scratch_bytes_multi(const kern_mat *const *w, size_t n_mats, size_t n);

/*
 * Y_k = X·W_kᵀ for k < n_mats (1..KERN_MULTI_MAX) matrices of the same cols,
 * e.g. a layer's Q, K and V, or its gate and up projections: X is quantized
 * once per activation format, and the rows of all matrices are split over
 * pool p in ONE hand-off (a single barrier instead of one per matrix). y[k]
 * gets n rows of w[k]->rows floats. Every result is bitwise what kern_matmul
 * would give for that matrix alone. scratch as kern_scratch_bytes_multi.
 */
void kern_matmul_multi(pool *p, const kern_mat *const *w, float *const *y, size_t n_mats,
                       const float *x, size_t n, void *scratch, size_t scratch_bytes);

/* ---- row helpers for the forward pass (all batch-invariant, see above) ---- */

/* y[i] = x[i] / sqrt(mean(x²) + eps) * w[i], i < n. y may equal x. */
void kern_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps);

/* In-place softmax of x[0..n) (max-subtracted, sum in a fixed order). n >= 1. */
void kern_softmax(float *x, size_t n);

/* out[i] = silu(gate[i]) * up[i] = gate/(1+exp(-gate)) * up. out may equal gate or up. */
void kern_swiglu(float *out, const float *gate, const float *up, size_t n);

/* y[i] = a[i] + b[i]. y may equal a or b. */
void kern_add(float *y, const float *a, const float *b, size_t n);

/* f32 <-> f16 rows (round to nearest even), e.g. for an F16 KV cache. */
void kern_f32_to_f16(uint16_t *dst, const float *src, size_t n);
void kern_f16_to_f32(float *dst, const uint16_t *src, size_t n);

/*
 * RoPE on n_heads heads of head_dim floats stored back to back in x, at
 * position pos: the first rot_dim (even, <= head_dim) dims of each head are
 * rotated by angle pos*freq_scale*freq_base^(-2i/rot_dim) for pair i
 * (computed in double). Normal (llama) ordering rotates pairs (2i, 2i+1);
 * NeoX (qwen2) ordering rotates (i, i + rot_dim/2).
 */
void kern_rope(float *x, size_t n_heads, size_t head_dim, size_t rot_dim, int64_t pos,
               float freq_base, float freq_scale, bool is_neox);

/*
 * Attention scores: out[t] = scale * dot(q, k_t) for t < n_pos, where k_t is the
 * f16 row at k + t*k_stride (elements), head_dim long.
 */
void kern_attn_scores(float *out, const float *q, const uint16_t *k, size_t k_stride,
                      size_t n_pos, size_t head_dim, float scale);

/*
 * Attention output: out[d] = sum over t < n_pos (ascending) of w[t] * v_t[d],
 * v_t the f16 row at v + t*v_stride (elements), d < head_dim. out is overwritten.
 */
void kern_attn_accum(float *out, const float *w, const uint16_t *v, size_t v_stride,
                     size_t n_pos, size_t head_dim);
