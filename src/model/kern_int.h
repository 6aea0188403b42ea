/*
 * model/kern_int — private to kern.c / kern_avx2.c: the implementation table
 * and the layout of quantized activation rows.
 *
 * Activation row layout (in scratch, rows KERN_ACT stride apart, 64-aligned):
 *   Q8 (for Q8_0/Q4_0 weights): int8 qs[cols]; float d[cols/32]; then at
 *      kern_act_sb_offset(cols) (32-aligned) int32 sb[cols/32], with
 *      sb[b] = 8 * (qs[32b] + .. + qs[32b+31]): the Q4_0 kernels' -8 offset,
 *      once per activation instead of once per weight row
 *   Q8K (for Q4_K/Q6_K weights): int8 qs[cols]; float d[cols/256]; int16 bsums[cols/16]
 * with x ≈ d[b] * qs[j] and bsums[s] = sum of the 16 qs of group s. Both
 * implementations quantize identically: d = amax/127, q = round-half-even(x*(127/amax)).
 */
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model/kern.h"

/*
 * FLOAT ORDER CONTRACT (both implementations follow it, so FERRY_SIMD=scalar
 * and AVX2 give bitwise-equal results; kern.c spells each one out in scalar C):
 *  - An 8-lane accumulator acc[0..8) is reduced by kern_hsum8:
 *    ((a0+a4) + (a1+a5)) + ((a2+a6) + (a3+a7)).
 *  - Q8_0/Q4_0 dot: ONE float accumulator per (weight row, activation row);
 *    for blocks b = 0, 1, .. in order, S_b = the exact integer sum over the
 *    block's 32 elements of w·x (Q4_0: w = nibble - 8), and
 *    acc = fma(dw_b * dx_b, (float)S_b, acc); the result is acc. |S_b| <=
 *    32*128*127 < 2^24, so the conversion is exact, and nothing in the result
 *    depends on how S_b was summed, on the weight layout (rows or kern_mat_pack's
 *    groups) or on which rows are computed together.
 *  - Q4_K: lane l sums, over the block's four 64-element halves k, the
 *    sub-block scale times elements 64k+4l..+3 and 64k+32+4l..+3 (integers);
 *    acc[l] = fma(d * dx, lane, acc[l]); the mins go into one float
 *    accm += (dmin * dx) * summ; result hsum8(acc) - accm.
 *  - Q6_K: lane l sums scale × q·x over elements 32c+4l..+3 of every 32-chunk c
 *    (the scale of the chunk's half that holds lane l), minus
 *    32 * (bsums[2l]*scale[2l] + bsums[2l+1]*scale[2l+1]); acc as Q8_0.
 *  - F32/F16/BF16 dot: two 8-lane fma accumulators over 16-element steps
 *    (elements j+l and j+8+l), then one more 8-step into the first, then
 *    hsum8 of their lane sums, then the tail added one product at a time.
 *  - exp is kern_exp_poly, lane by lane (also for tails).
 */

/* ((a0+a4) + (a1+a5)) + ((a2+a6) + (a3+a7)): the AVX2 horizontal-sum tree. */
static inline float kern_hsum8(const float a[8])
{
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s1) + (s2 + s3);
}

/*
 * exp(x): n = round(x*log2 e), r = x - n*ln2 (two-part, fused), a degree-6
 * polynomial for e^r (Cephes' expf coefficients), times 2^n in two steps.
 * Relative error about 2 ulp; x < -87.3 gives 0, x > 88.7 gives +inf. The
 * lane-for-lane twin of kern_avx2.c's exp8 (same operations, same rounding:
 * fmaf is exact-rounded whether it compiles to an instruction or to libm).
 */
static inline float kern_exp_poly(float x)
{
    const float lo = -87.3f, hi = 88.7f;
    bool under = x < lo, over = x > hi;
    float xc = x > lo ? x : lo; // _mm256_max_ps(x, lo)
    xc = xc < hi ? xc : hi;     // _mm256_min_ps(xc, hi)
    float n = rintf(xc * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, xc);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r + 1.0f);
    int32_t ni = (int32_t)n, n1 = ni >> 1, n2 = ni - n1; // arithmetic shift, as srai
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float res = (p * s1) * s2;
    if (under)
        res = 0.0f;
    if (over)
        res = INFINITY;
    return res;
}

typedef struct kern_act {
    const float *x;    /* f32 rows (float weights), ldx = cols */
    const uint8_t *q;  /* quantized rows (quantized weights) */
    size_t q_stride;   /* bytes between quantized rows */
    size_t cols;
} kern_act;

static inline const int8_t *kern_act_qs(const kern_act *a, size_t i)
{
    return (const int8_t *)(a->q + i * a->q_stride);
}
static inline const float *kern_act_d(const kern_act *a, size_t i)
{
    return (const float *)(a->q + i * a->q_stride + a->cols);
}
/* Byte offset of a Q8 activation row's sb sums: after qs and d, 32-aligned. */
static inline size_t kern_act_sb_offset(size_t cols)
{
    return (cols + (cols / 32) * 4 + 31) & ~(size_t)31;
}
static inline const int32_t *kern_act_sb(const kern_act *a, size_t i)
{
    return (const int32_t *)(a->q + i * a->q_stride + kern_act_sb_offset(a->cols));
}

/*
 * kern_mat_pack's layout of a Q8_0/Q4_0 matrix. Group g (rows 8g..8g+7) starts
 * at pack + g * pack_group_bytes (64-aligned) and holds its nb = cols/32 blocks
 * one after the other, KERN_PACK_BS bytes each (one sequential stream):
 *   qs, KERN_PACK_QB bytes: byte 32k + 4r + e is byte 4k + e of row 8g+r's
 *       block qs, k < 8 (Q8_0: element 4k+e, stored as w + 128 = w ^ 0x80, an
 *       unsigned byte: two unsigned nibbles for maddubs) or k < 4 (Q4_0: its low
 *       nibble is element 4k+e, its high nibble element 16+4k+e);
 *   then uint16 d[8] (f16): the 8 rows' scales of the block.
 * So one 32-byte vector holds 4 consecutive elements of each of the 8 rows.
 * (The scales in a separate array at the group's start made decode ~15% slower:
 * a second, interleaved stream per group.)
 */
#define KERN_PACK_QB(is_q4) ((is_q4) ? (size_t)128 : (size_t)256)
#define KERN_PACK_BS(qb) ((qb) + 16)
static inline const int16_t *kern_act_bsums(const kern_act *a, size_t i)
{
    return (const int16_t *)(a->q + i * a->q_stride + a->cols + (a->cols / 256) * 4);
}

/* Computes y[i*ldy + r] for r in [r0, r1), i < n. */
typedef void (*kern_mm_fn)(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                           float *y, size_t ldy);
/* Quantizes one activation row of cols f32 into dst (layout above). */
typedef void (*kern_quant_fn)(const float *x, uint8_t *dst, size_t cols);

typedef struct kern_impl {
    const char *name;
    kern_mm_fn mm_f32, mm_f16, mm_bf16, mm_q8_0, mm_q4_0, mm_q4_K, mm_q6_K;
    /* n == 1 (decode) of Q4_K over a whole chunk of rows, when the table has one;
     * otherwise kern.c calls mm_q4_K with n = 1. Bitwise the same results. */
    kern_mm_fn mv_q4_K;
    kern_quant_fn quant_q8, quant_q8K;
    void (*rmsnorm)(float *y, const float *x, const float *w, size_t n, float eps);
    void (*softmax)(float *x, size_t n);
    void (*swiglu)(float *out, const float *gate, const float *up, size_t n);
    void (*add)(float *y, const float *a, const float *b, size_t n);
    void (*f32_to_f16)(uint16_t *dst, const float *src, size_t n);
    void (*f16_to_f32)(float *dst, const uint16_t *src, size_t n);
    void (*attn_scores)(float *out, const float *q, const uint16_t *k, size_t k_stride,
                        size_t n_pos, size_t head_dim, float scale);
    void (*attn_accum)(float *out, const float *w, const uint16_t *v, size_t v_stride,
                       size_t n_pos, size_t head_dim);
} kern_impl;

/*
 * The AVX2 Q8_0 / Q4_0 matmul (kern_q8_avx2.c), any n (n = 1: decode's
 * streaming matvec): kern_mm_fn semantics, kern_int.h's order contract, packed
 * groups where the matrix has them and whole groups lie in [r0, r1), row by
 * row elsewhere. Only after kern.c chose kern_impl_avx2; reentrant.
 */
void kern_q8_avx2_mm_q8_0(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                          float *y, size_t ldy);
void kern_q8_avx2_mm_q4_0(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                          float *y, size_t ldy);

extern const kern_impl kern_impl_scalar;
/* Defined in kern_avx2.c; only used after a CPU check. */
extern const kern_impl kern_impl_avx2;
