/*
 * model/simd_avx2.h — inline helpers shared by the AVX2 translation units
 * (kern_avx2.c, kern_gemm_avx2.c, kern_q8_avx2.c, attn_avx2.c). Include it only from files
 * compiled with -mavx2 -mfma -mf16c (the *_avx2.c rule of cmake/ferry.cmake).
 *
 * hsum8 is part of the bitwise batch-invariance rule (docs/internals/kernels.md):
 * the one-row, batched and attention paths all end a pair's accumulator with
 * this one tree, and the scalar paths reproduce it. One definition keeps them
 * from drifting apart.
 */
#ifndef FERRY_MODEL_SIMD_AVX2_H
#define FERRY_MODEL_SIMD_AVX2_H

#include <immintrin.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Fixed-order horizontal sum of 8 floats: ((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7)). */
static ALWAYS_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 sh = _mm_movehdup_ps(s);
    s = _mm_add_ps(s, sh);
    sh = _mm_movehl_ps(sh, s);
    s = _mm_add_ss(s, sh);
    return _mm_cvtss_f32(s);
}

/* Sum of the 8 int32 lanes (exact, so any order). */
static ALWAYS_INLINE int hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

#endif
