/*
 * model/attn_avx2 — the AVX2/F16C path of grouped-query attention (attn.h):
 * each K and V row is loaded and converted once for up to
 * ATTN_HEADS_PER_PASS query heads. Q8_0 rows are dequantized in registers
 * (int8 -> f32, times the block scale, rounded to f16 and back, as a staged
 * f16 row would be). Per element the instruction sequence is that of
 * kern_avx2.c's attn_scores / attn_accum, so results are bitwise the same.
 * Compiled with -mavx2 -mfma -mf16c and -ffp-contract=off (the tails are
 * written as separate multiply and add, as in kern_avx2.c).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "model/attn_int.h"
#include "model/kern.h"
#include "model/tensor.h"
#include "model/simd_avx2.h"

/* The per-pass bodies are instantiated for each constant head count and cache
 * type, so the accumulators stay in registers. */

/* One Q8_0 value d * q rounded to f16 and back. */
static inline float q8_elem(const uint8_t *row, size_t e)
{
    const uint8_t *b = row + e / TENSOR_QK * sizeof(tensor_block_q8_0);
    uint16_t dh;
    memcpy(&dh, b, sizeof dh);
    float v = _cvtsh_ss(dh) * (float)(int8_t)b[sizeof dh + e % TENSOR_QK];
    return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT));
}

/* Elements e..e+7 of a row as f32 (Q8_0: each d * q rounded to f16). */
static ALWAYS_INLINE __m256 load8(bool is_q8, const uint8_t *row, size_t e)
{
    if (!is_q8)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * e)));
    size_t i = e % TENSOR_QK;
    if (i + 8 <= TENSOR_QK) {
        const uint8_t *b = row + e / TENSOR_QK * sizeof(tensor_block_q8_0);
        uint16_t dh;
        memcpy(&dh, b, sizeof dh);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
        __m128i q8 = _mm_loadl_epi64((const __m128i *)(const void *)(b + sizeof dh + i));
        __m256 v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)));
        return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    float t[8]; // the 8 straddle two Q8_0 blocks (a head not aligned to 8 elements)
    for (int l = 0; l < 8; l++)
        t[l] = q8_elem(row, e + (size_t)l);
    return _mm256_loadu_ps(t);
}

static ALWAYS_INLINE float elem1(bool is_q8, const uint8_t *row, size_t e)
{
    if (!is_q8) {
        uint16_t h;
        memcpy(&h, row + 2 * e, sizeof h);
        return _cvtsh_ss(h);
    }
    return q8_elem(row, e);
}

/* Positions ahead whose K and V rows scores_pass requests from memory: 4 (16
 * cache lines of an F16 64-element head in flight) read a decode step's KV
 * fastest of 4/8/16/32 (16 sequences x 128 positions x 30 layers of the
 * smollm shape from a 256 MiB pool: 28-33 ms per step on one thread without,
 * 15-16 ms with; 12-15 ms on huge pages). */
#define ATTN_PREFETCH_POS 4

/* Requests the cache lines of one KV head's elements [off, off + hd) of a row. */
static ALWAYS_INLINE void prefetch_row(const uint8_t *row, size_t off, size_t head_bytes, bool q8,
                                       size_t hd)
{
    const uint8_t *a, *z;
    if (q8) {
        a = row + off / TENSOR_QK * sizeof(tensor_block_q8_0);
        z = row + (off + hd + TENSOR_QK - 1) / TENSOR_QK * sizeof(tensor_block_q8_0);
    } else {
        a = row + off * 2;
        z = a + head_bytes;
    }
    for (const uint8_t *p = a; p < z; p += 64)
        _mm_prefetch((const char *)p, _MM_HINT_T0);
    _mm_prefetch((const char *)(z - 1), _MM_HINT_T0); // a head not aligned to a line
}

/* sc[h * n_pos + j] for heads h0..h0+G-1 (G <= ATTN_HEADS_PER_PASS). */
static ALWAYS_INLINE void scores_pass(const bool q8, const size_t G, const attn_kv *kv,
                                      const int32_t *blocks, size_t n_pos, size_t off, size_t hd,
                                      const float *q, size_t h0, float scale, float *sc)
{
    const size_t hd8 = hd & ~(size_t)7;
    attn_rows it;
    attn_rows_init(&it, kv, kv->k, blocks, 0);
    /* The K and V rows of position j + ATTN_PREFETCH_POS are requested while
     * position j is scored (the first pass only): the rows of a sequence are
     * scattered over the pool block by block, so the hardware prefetcher does
     * not run ahead, and a decode step reads most of them from DRAM. */
    const bool pf = h0 == 0 && n_pos > ATTN_PREFETCH_POS;
    const size_t head_bytes = q8 ? 0 : hd * 2;
    attn_rows ak = {0}, av = {0};
    if (pf) {
        // the first positions now, then one position ahead per position scored
        attn_rows_init(&ak, kv, kv->k, blocks, 0);
        attn_rows_init(&av, kv, kv->v, blocks, 0);
        for (size_t j = 0; j < ATTN_PREFETCH_POS; j++) {
            if (j)
                attn_rows_next(&ak), attn_rows_next(&av);
            prefetch_row(ak.row, off, head_bytes, q8, hd);
            prefetch_row(av.row, off, head_bytes, q8, hd);
        }
    }
    for (size_t j = 0; j < n_pos; j++) {
        if (j)
            attn_rows_next(&it);
        if (pf && j + ATTN_PREFETCH_POS < n_pos) {
            attn_rows_next(&ak), attn_rows_next(&av);
            prefetch_row(ak.row, off, head_bytes, q8, hd);
            prefetch_row(av.row, off, head_bytes, q8, hd);
        }
        __m256 acc[ATTN_HEADS_PER_PASS];
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++)
            acc[h] = _mm256_setzero_ps();
        for (size_t d = 0; d < hd8; d += 8) {
            __m256 k = load8(q8, it.row, off + d);
            _Pragma("GCC unroll 4")
            for (size_t h = 0; h < G; h++)
                acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (h0 + h) * hd + d), k, acc[h]);
        }
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++) {
            const float *qh = q + (h0 + h) * hd;
            float s = hsum8(acc[h]);
            for (size_t d = hd8; d < hd; d++)
                s += qh[d] * elem1(q8, it.row, off + d);
            sc[(h0 + h) * n_pos + j] = s * scale;
        }
    }
}

/* dst (heads h0..h0+G-1, hd) = Σ_{t < cnt} p_h[j0 + t] v_{j0+t}, one FMA chain per
 * element starting from 0. */
static ALWAYS_INLINE void accum_pass(const bool q8, const size_t G, const attn_kv *kv,
                                     const int32_t *blocks, size_t j0, size_t cnt, size_t off,
                                     size_t hd, const float *p, size_t n_pos, size_t h0,
                                     float *dst)
{
    attn_rows it;
    size_t d = 0;
    for (; d + 16 <= hd; d += 16) {
        __m256 a[ATTN_HEADS_PER_PASS][2];
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++)
            a[h][0] = a[h][1] = _mm256_setzero_ps();
        attn_rows_init(&it, kv, kv->v, blocks, j0);
        for (size_t t = 0; t < cnt; t++) {
            if (t)
                attn_rows_next(&it);
            __m256 v0 = load8(q8, it.row, off + d), v1 = load8(q8, it.row, off + d + 8);
            _Pragma("GCC unroll 4")
            for (size_t h = 0; h < G; h++) {
                __m256 w = _mm256_set1_ps(p[(h0 + h) * n_pos + j0 + t]);
                a[h][0] = _mm256_fmadd_ps(w, v0, a[h][0]);
                a[h][1] = _mm256_fmadd_ps(w, v1, a[h][1]);
            }
        }
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++) {
            _mm256_storeu_ps(dst + (h0 + h) * hd + d, a[h][0]);
            _mm256_storeu_ps(dst + (h0 + h) * hd + d + 8, a[h][1]);
        }
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a[ATTN_HEADS_PER_PASS];
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++)
            a[h] = _mm256_setzero_ps();
        attn_rows_init(&it, kv, kv->v, blocks, j0);
        for (size_t t = 0; t < cnt; t++) {
            if (t)
                attn_rows_next(&it);
            __m256 v0 = load8(q8, it.row, off + d);
            _Pragma("GCC unroll 4")
            for (size_t h = 0; h < G; h++)
                a[h] = _mm256_fmadd_ps(_mm256_set1_ps(p[(h0 + h) * n_pos + j0 + t]), v0, a[h]);
        }
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++)
            _mm256_storeu_ps(dst + (h0 + h) * hd + d, a[h]);
    }
    for (; d < hd; d++) {
        float s[ATTN_HEADS_PER_PASS] = {0};
        attn_rows_init(&it, kv, kv->v, blocks, j0);
        for (size_t t = 0; t < cnt; t++) {
            if (t)
                attn_rows_next(&it);
            float vd = elem1(q8, it.row, off + d);
            _Pragma("GCC unroll 4")
            for (size_t h = 0; h < G; h++)
                s[h] = fmaf(p[(h0 + h) * n_pos + j0 + t], vd, s[h]);
        }
        _Pragma("GCC unroll 4")
        for (size_t h = 0; h < G; h++)
            dst[(h0 + h) * hd + d] = s[h];
    }
}

/* scores_pass / accum_pass for a constant (cache type, head count) pair. */
#define INSTANCES(Q8, NAME)                                                                    \
    static void scores_##NAME(size_t G, const attn_kv *kv, const int32_t *blocks,              \
                              size_t n_pos, size_t off, size_t hd, const float *q, size_t h0,  \
                              float scale, float *sc)                                          \
    {                                                                                          \
        switch (G) {                                                                           \
        case 1: scores_pass(Q8, 1, kv, blocks, n_pos, off, hd, q, h0, scale, sc); break;       \
        case 2: scores_pass(Q8, 2, kv, blocks, n_pos, off, hd, q, h0, scale, sc); break;       \
        case 3: scores_pass(Q8, 3, kv, blocks, n_pos, off, hd, q, h0, scale, sc); break;       \
        default: scores_pass(Q8, 4, kv, blocks, n_pos, off, hd, q, h0, scale, sc); break;      \
        }                                                                                      \
    }                                                                                          \
    static void accum_##NAME(size_t G, const attn_kv *kv, const int32_t *blocks, size_t j0,    \
                             size_t cnt, size_t off, size_t hd, const float *p, size_t n_pos,  \
                             size_t h0, float *dst)                                            \
    {                                                                                          \
        switch (G) {                                                                           \
        case 1: accum_pass(Q8, 1, kv, blocks, j0, cnt, off, hd, p, n_pos, h0, dst); break;     \
        case 2: accum_pass(Q8, 2, kv, blocks, j0, cnt, off, hd, p, n_pos, h0, dst); break;     \
        case 3: accum_pass(Q8, 3, kv, blocks, j0, cnt, off, hd, p, n_pos, h0, dst); break;     \
        default: accum_pass(Q8, 4, kv, blocks, j0, cnt, off, hd, p, n_pos, h0, dst); break;    \
        }                                                                                      \
    }
INSTANCES(false, f16)
INSTANCES(true, q8)
#undef INSTANCES

void attn_group_avx2(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                     size_t hd, const float *q, size_t n_q, float *out, float *scratch)
{
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = scratch, *part = scratch + n_q * n_pos;
    for (size_t h0 = 0; h0 < n_q; h0 += ATTN_HEADS_PER_PASS) {
        size_t G = n_q - h0 < ATTN_HEADS_PER_PASS ? n_q - h0 : ATTN_HEADS_PER_PASS;
        (kv->is_q8 ? scores_q8 : scores_f16)(G, kv, blocks, n_pos, off, hd, q, h0, scale, sc);
    }
    for (size_t h = 0; h < n_q; h++)
        kern_softmax(sc + h * n_pos, n_pos);
    size_t run = attn_run_len(kv);
    for (size_t j = 0; j < n_pos; j += run) {
        size_t cnt = n_pos - j < run ? n_pos - j : run;
        float *dst = j == 0 ? out : part;
        for (size_t h0 = 0; h0 < n_q; h0 += ATTN_HEADS_PER_PASS) {
            size_t G = n_q - h0 < ATTN_HEADS_PER_PASS ? n_q - h0 : ATTN_HEADS_PER_PASS;
            (kv->is_q8 ? accum_q8 : accum_f16)(G, kv, blocks, j, cnt, off, hd, sc, n_pos, h0,
                                               dst);
        }
        if (j)
            for (size_t h = 0; h < n_q; h++)
                kern_add(out + h * hd, out + h * hd, part + h * hd, hd);
    }
}
