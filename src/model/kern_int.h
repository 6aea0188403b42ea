/*
 * model/kern_int — private to kern.c / kern_avx2.c: the implementation table
 * and the layout of quantized activation rows.
 *
 * Activation row layout (in scratch, rows KERN_ACT stride apart, 64-aligned):
 *   Q8 (for Q8_0/Q4_0 weights): int8 qs[cols]; float d[cols/32]
 *   Q8K (for Q4_K/Q6_K weights): int8 qs[cols]; float d[cols/256]; int16 bsums[cols/16]
 * with x ≈ d[b] * qs[j] and bsums[s] = sum of the 16 qs of group s. Both
 * implementations quantize identically: d = amax/127, q = round-half-even(x*(127/amax)).
 */
#pragma once

#include "model/kern.h"

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

extern const kern_impl kern_impl_scalar;
/* Defined in kern_avx2.c; only used after a CPU check. */
extern const kern_impl kern_impl_avx2;
