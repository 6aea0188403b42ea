/*
 * model/kern_gemm — the panel matmul path for n >= 8 activation rows of
 * Q4_K weights (prefill and batched decode), private to model/kern*.c.
 *
 * kern_matmul_multi hands a call with n >= KERN_GEMM_COLS activation rows to
 * kern_gemm_multi (the one hook in kern.c). It quantizes the activations once
 * into PANELS of 8 rows interleaved so that one 256-bit vector holds the same
 * 4-element lane group of 8 different rows, and runs a micro-kernel of 1 weight
 * row x 8 activation rows: each weight block is decoded once for the 8 rows,
 * the block scale product d*dx is one vector multiply for all 8 pairs, and the
 * 8 accumulators (one per lane group, each holding 8 pairs) stay in registers.
 * The rows that do not fill a panel (n mod 8), and every type without a panel
 * kernel (Q8_0/Q4_0: kern_q8_avx2.c packs the weights instead; float weights),
 * keep kern.c's row layout and go through the implementation's mm_* functions.
 *
 * BATCH INVARIANCE: every (weight row, activation row) pair runs exactly the
 * float operations of kern_int.h's order contract — per block, per lane l,
 * acc[l] = fma(d*dx, (float)exact_int_sum_l, acc[l]), then the hsum8 tree —
 * only the lanes of a vector hold different pairs instead of different lane
 * groups. So a row's result is bitwise the matvec's (n = 1) result, whatever n
 * and whatever the position of the row in a panel; and the scalar functions of
 * kern_gemm.c do the same operations as kern_gemm_avx2.c (FERRY_SIMD=scalar is
 * bitwise equal). tests/unit/test_model_gemm.c checks both for every type and
 * n = 1..33.
 *
 * Panel layout (in kern_matmul's scratch: a panel of 8 rows occupies exactly
 * the 8 row strides kern.c's layout gives them, so the scratch size is unchanged;
 * blocks are 32-byte aligned):
 *   Q8K (Q4_K/Q6_K weights), per 256-element block, KERN_GEMM_Q8K_BLOCK bytes:
 *     int8  qs[8 chunks][8 lane groups][8 rows][4]  element 32c+4l+e
 *     f32   d[8 rows]
 *     int16 bs[8 chunks][8 rows][2]   the 16-element sums of chunk c's halves
 */
#pragma once

#include <stdbool.h>

#include "model/kern_int.h"

/* Activation rows per panel (the 8 lanes of a vector). */
#define KERN_GEMM_COLS 8

#define KERN_GEMM_Q8K_BLOCK 2336 /* 2048 + 32 + 256 */
#define KERN_GEMM_Q8K_D 2048
#define KERN_GEMM_Q8K_BS 2080

/*
 * Computes y[c*ldy + r] for weight rows r in [r0, r1) and the 8 activation
 * rows c < 8 of one panel.
 */
typedef void (*kern_gemm_fn)(const kern_mat *w, size_t r0, size_t r1, const uint8_t *panel,
                             float *y, size_t ldy);

typedef struct kern_gemm_impl {
    kern_gemm_fn q4_K, q6_K; // Q8_0/Q4_0 have no panel kernel: kern_q8_avx2.c packs the weights
} kern_gemm_impl;

extern const kern_gemm_impl kern_gemm_scalar;
/* Defined in kern_gemm_avx2.c; used only when kern.c chose kern_impl_avx2. */
extern const kern_gemm_impl kern_gemm_avx2;

/*
 * kern_matmul_multi for n >= KERN_GEMM_COLS: same arguments, same results
 * (bitwise), with im the implementation kern.c chose. Returns false, doing
 * nothing, when n is smaller (the caller runs its matvec path then).
 * Called by kern_matmul_multi only; same threading rules.
 */
bool kern_gemm_multi(const kern_impl *im, pool *p, const kern_mat *const *w, float *const *y,
                     size_t n_mats, const float *x, size_t n, void *scratch,
                     size_t scratch_bytes);
