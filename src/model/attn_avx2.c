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
#include <stdint.h>
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

/* Requests the cache lines of one KV head's elements [off, off + hd) of a row,
 * or, with whole > 0, the row's first whole bytes (every KV head's part). */
static ALWAYS_INLINE void prefetch_row(const uint8_t *row, size_t off, size_t head_bytes, bool q8,
                                       size_t hd, size_t whole)
{
    const uint8_t *a, *z;
    if (whole) {
        a = row;
        z = row + whole;
    } else if (q8) {
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
    /* KV head 0 requests the whole rows: the callers (llama.c's attention
     * items, tile-major, whole tiles per pool chunk) run a token's KV heads one
     * after the other on the same thread, so heads 1.. read their parts from
     * L2 instead of each walking the scattered blocks from DRAM again. */
    const size_t whole = off == 0 ? kv->row_bytes : 0;
    attn_rows ak = {0}, av = {0};
    if (pf) {
        // the first positions now, then one position ahead per position scored
        attn_rows_init(&ak, kv, kv->k, blocks, 0);
        attn_rows_init(&av, kv, kv->v, blocks, 0);
        for (size_t j = 0; j < ATTN_PREFETCH_POS; j++) {
            if (j)
                attn_rows_next(&ak), attn_rows_next(&av);
            prefetch_row(ak.row, off, head_bytes, q8, hd, whole);
            prefetch_row(av.row, off, head_bytes, q8, hd, whole);
        }
    }
    for (size_t j = 0; j < n_pos; j++) {
        if (j)
            attn_rows_next(&it);
        if (pf && j + ATTN_PREFETCH_POS < n_pos) {
            attn_rows_next(&ak), attn_rows_next(&av);
            prefetch_row(ak.row, off, head_bytes, q8, hd, whole);
            prefetch_row(av.row, off, head_bytes, q8, hd, whole);
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

/* ------------------------------------------------------------------ attn_span */

/*
 * The hsum8 trees of 8 accumulators at once, in the lanes
 * [p0 p1 p2 p3 | q0 q1 q2 q3] for the pairs (p0, q0) .. (p3, q3): u_k = [p_k lanes
 * l + (l+4) | q_k lanes l + (l+4)], l = 0..3, then two horizontal adds, which is
 * ((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7)) for every accumulator, as hsum8.
 */
static ALWAYS_INLINE __m256 hsum8_x8(__m256 p0, __m256 q0, __m256 p1, __m256 q1, __m256 p2,
                                     __m256 q2, __m256 p3, __m256 q3)
{
    __m256 u0 = _mm256_add_ps(_mm256_permute2f128_ps(p0, q0, 0x20),
                              _mm256_permute2f128_ps(p0, q0, 0x31));
    __m256 u1 = _mm256_add_ps(_mm256_permute2f128_ps(p1, q1, 0x20),
                              _mm256_permute2f128_ps(p1, q1, 0x31));
    __m256 u2 = _mm256_add_ps(_mm256_permute2f128_ps(p2, q2, 0x20),
                              _mm256_permute2f128_ps(p2, q2, 0x31));
    __m256 u3 = _mm256_add_ps(_mm256_permute2f128_ps(p3, q3, 0x20),
                              _mm256_permute2f128_ps(p3, q3, 0x31));
    return _mm256_hadd_ps(_mm256_hadd_ps(u0, u1), _mm256_hadd_ps(u2, u3));
}
/*
 * Scores of one query head qh against the 8 K rows of a tile kf (8, hd), as
 * f32: dst[p] = hsum8(Σ_d q·k_p) * scale with each position's 8-lane FMA chain
 * exactly as scores_pass runs it (d ascending, from zero). The 8 hsum8 are
 * done together: lanes l and l + 4 added (lo + hi halves, two positions per
 * vector), then adjacent pairs twice (hadd), which is hsum8's tree
 * ((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7)) for each position, bit for bit
 * (an IEEE add is commutative); the pairing (0,4) (1,5) (2,6) (3,7) leaves
 * the results in position order.
 */
static ALWAYS_INLINE void span_scores8(const float *qh, const float *kf, size_t hd, __m256 vscale,
                                       float *dst)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0;
    _Pragma("GCC unroll 16")
    for (size_t d = 0; d < hd; d += 8) {
        __m256 qv = _mm256_loadu_ps(qh + d);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 0 * hd + d), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 1 * hd + d), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 2 * hd + d), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 3 * hd + d), a3);
        a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 4 * hd + d), a4);
        a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 5 * hd + d), a5);
        a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 6 * hd + d), a6);
        a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kf + 7 * hd + d), a7);
    }
    _mm256_storeu_ps(dst, _mm256_mul_ps(hsum8_x8(a0, a4, a1, a5, a2, a6, a3, a7), vscale));
}

/*
 * One chunk of NC (<= 8) vectors of a query head's output over cnt converted
 * V rows vf (cnt, hd), columns [d0, d0 + 8 NC): acc = from (or 0 when NULL)
 * then acc = fma(p_t, v_t, acc) for t ascending, the chain accum_pass runs.
 * Then: to_part -> part = acc; else first_run -> out = acc; else out += acc
 * (kern_add's one add per element).
 */
static ALWAYS_INLINE void span_accum_chunk(const size_t NC, const float *vf, size_t hd, size_t d0,
                                           const float *p, size_t cnt, const float *from,
                                           float *part, float *out, bool to_part, bool first_run)
{
    __m256 acc[8];
    _Pragma("GCC unroll 8")
    for (size_t c = 0; c < NC; c++)
        acc[c] = from ? _mm256_loadu_ps(from + d0 + 8 * c) : _mm256_setzero_ps();
    _Pragma("GCC unroll 4")
    for (size_t t = 0; t < cnt; t++) {
        __m256 w = _mm256_broadcast_ss(p + t);
        const float *v = vf + t * hd + d0;
        _Pragma("GCC unroll 8")
        for (size_t c = 0; c < NC; c++)
            acc[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * c), acc[c]);
    }
    _Pragma("GCC unroll 8")
    for (size_t c = 0; c < NC; c++) {
        float *o = (to_part ? part : out) + d0 + 8 * c;
        if (to_part || first_run)
            _mm256_storeu_ps(o, acc[c]);
        else
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[c]));
    }
}

/* A query head's output over one piece of a run (see span_accum_chunk). */
static ALWAYS_INLINE void span_accum(const float *vf, size_t hd, const float *p, size_t cnt, const float *from,
                       float *part, float *out, bool to_part, bool first_run)
{
    size_t d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64)
        span_accum_chunk(8, vf, hd, d0, p, cnt, from, part, out, to_part, first_run);
    switch ((hd - d0) / 8) {
    case 0: break;
    case 1: span_accum_chunk(1, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    case 2: span_accum_chunk(2, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    case 3: span_accum_chunk(3, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    case 4: span_accum_chunk(4, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    case 5: span_accum_chunk(5, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    case 6: span_accum_chunk(6, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    default: span_accum_chunk(7, vf, hd, d0, p, cnt, from, part, out, to_part, first_run); break;
    }
}

/* Makes the compiler load v into a register once instead of folding the load
 * into each FMA that uses it (two loads of the same vector per K row and head
 * pair: the load ports, not the FMAs, bounded the score pass). */
#define KEEP_IN_REG(v) __asm__("" : "+x"(v))

/*
 * span_scores8 for two query heads qa, qb and 4 positions (kf rows 0..3): each
 * K vector loaded once for both (6 loads per 8 FMAs instead of 9). The lane
 * reduction is the same tree, one head per 128-bit half: da[p], db[p].
 */
static ALWAYS_INLINE void span_scores4x2(const float *qa, const float *qb, const float *kf,
                                         size_t hd, __m256 vscale, float *da, float *db)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
           b3 = a0;
    _Pragma("GCC unroll 16")
    for (size_t d = 0; d < hd; d += 8) {
        __m256 qva = _mm256_loadu_ps(qa + d), qvb = _mm256_loadu_ps(qb + d);
        __m256 k = _mm256_loadu_ps(kf + 0 * hd + d);
        KEEP_IN_REG(k);
        a0 = _mm256_fmadd_ps(qva, k, a0);
        b0 = _mm256_fmadd_ps(qvb, k, b0);
        k = _mm256_loadu_ps(kf + 1 * hd + d);
        KEEP_IN_REG(k);
        a1 = _mm256_fmadd_ps(qva, k, a1);
        b1 = _mm256_fmadd_ps(qvb, k, b1);
        k = _mm256_loadu_ps(kf + 2 * hd + d);
        KEEP_IN_REG(k);
        a2 = _mm256_fmadd_ps(qva, k, a2);
        b2 = _mm256_fmadd_ps(qvb, k, b2);
        k = _mm256_loadu_ps(kf + 3 * hd + d);
        KEEP_IN_REG(k);
        a3 = _mm256_fmadd_ps(qva, k, a3);
        b3 = _mm256_fmadd_ps(qvb, k, b3);
    }
    __m256 s = _mm256_mul_ps(hsum8_x8(a0, b0, a1, b1, a2, b2, a3, b3), vscale);
    _mm_storeu_ps(da, _mm256_castps256_ps128(s));
    _mm_storeu_ps(db, _mm256_extractf128_ps(s, 1));
}

/*
 * span_accum_chunk for two query heads over the same cnt positions (NC <= 4
 * vectors each): each V vector loaded once for both. The ends (to_part,
 * first_run) are the same for both heads.
 */
static ALWAYS_INLINE void span_accum_chunk2(const size_t NC, const float *vf, size_t hd,
                                            size_t d0, const float *pa, const float *pb,
                                            size_t cnt, const float *froma, const float *fromb,
                                            float *parta, float *partb, float *outa, float *outb,
                                            bool to_part, bool first_run)
{
    __m256 a[4], b[4];
    _Pragma("GCC unroll 4")
    for (size_t c = 0; c < NC; c++) {
        a[c] = froma ? _mm256_loadu_ps(froma + d0 + 8 * c) : _mm256_setzero_ps();
        b[c] = fromb ? _mm256_loadu_ps(fromb + d0 + 8 * c) : _mm256_setzero_ps();
    }
    _Pragma("GCC unroll 4")
    for (size_t t = 0; t < cnt; t++) {
        __m256 wa = _mm256_broadcast_ss(pa + t), wb = _mm256_broadcast_ss(pb + t);
        const float *v = vf + t * hd + d0;
        _Pragma("GCC unroll 4")
        for (size_t c = 0; c < NC; c++) {
            __m256 vv = _mm256_loadu_ps(v + 8 * c);
            a[c] = _mm256_fmadd_ps(wa, vv, a[c]);
            b[c] = _mm256_fmadd_ps(wb, vv, b[c]);
        }
    }
    _Pragma("GCC unroll 4")
    for (size_t c = 0; c < NC; c++) {
        float *oa = (to_part ? parta : outa) + d0 + 8 * c;
        float *ob = (to_part ? partb : outb) + d0 + 8 * c;
        if (to_part || first_run) {
            _mm256_storeu_ps(oa, a[c]);
            _mm256_storeu_ps(ob, b[c]);
        } else {
            _mm256_storeu_ps(oa, _mm256_add_ps(_mm256_loadu_ps(oa), a[c]));
            _mm256_storeu_ps(ob, _mm256_add_ps(_mm256_loadu_ps(ob), b[c]));
        }
    }
}

/* span_accum for two query heads with the same cnt and ends. */
static ALWAYS_INLINE void span_accum2(const float *vf, size_t hd, const float *pa, const float *pb, size_t cnt,
                        const float *froma, const float *fromb, float *parta, float *partb,
                        float *outa, float *outb, bool to_part, bool first_run)
{
    size_t d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32)
        span_accum_chunk2(4, vf, hd, d0, pa, pb, cnt, froma, fromb, parta, partb, outa, outb,
                          to_part, first_run);
    switch ((hd - d0) / 8) {
    case 0: break;
    case 1:
        span_accum_chunk2(1, vf, hd, d0, pa, pb, cnt, froma, fromb, parta, partb, outa, outb,
                          to_part, first_run);
        break;
    case 2:
        span_accum_chunk2(2, vf, hd, d0, pa, pb, cnt, froma, fromb, parta, partb, outa, outb,
                          to_part, first_run);
        break;
    default:
        span_accum_chunk2(3, vf, hd, d0, pa, pb, cnt, froma, fromb, parta, partb, outa, outb,
                          to_part, first_run);
        break;
    }
}

/* Elements [off, off + hd) of a K or V row as f32, as load8 gives them. */
static ALWAYS_INLINE void convert_row(bool q8, const uint8_t *row, size_t off, size_t hd, float *dst)
{
    if (q8) {
        _Pragma("GCC unroll 16")
        for (size_t d = 0; d < hd; d += 8)
            _mm256_storeu_ps(dst + d, load8(true, row, off + d));
    } else {
        _Pragma("GCC unroll 16")
        for (size_t d = 0; d < hd; d += 8)
            _mm256_storeu_ps(dst + d, load8(false, row, off + d));
    }
}

/* Positions ahead attn_span requests the K and V rows it converts. */
#define SPAN_PREFETCH_POS 8

/* attn_span_avx2's work for a multiple-of-8 head size hd, instantiated for the
 * common constant sizes (loops over hd unrolled) and the cache type q8. */
static ALWAYS_INLINE void span_body(const size_t hd, const bool q8, const attn_kv *kv,
                                    const int32_t *blocks, size_t pos0, size_t n_tok, size_t off,
                                    const float *q, size_t q_stride, size_t n_q, float *out,
                                    size_t out_stride, float *scratch)
{
    const size_t n_last = pos0 + n_tok; // positions the last token sees
    const size_t stride = ((n_last + 7) & ~(size_t)7) + ATTN_SPAN_ROW_PAD;
    float *sc = scratch;                      // (n_tok, n_q, stride): row of (i, h)
    // K and V tiles on a 64-byte boundary: no vector load of them splits a line
    float *kf = sc + n_tok * n_q * stride;    // (8, hd) K rows of one tile
    kf += (64 - (uintptr_t)kf % 64) % 64 / sizeof *kf;
    float *vf = kf + 8 * hd;                  // (ATTN_SPAN_VROWS, hd) V rows
    float *part = vf + ATTN_SPAN_VROWS * hd;  // (n_tok, n_q, hd) chains of a long run
    const float scale = 1.0f / sqrtf((float)hd);
    const __m256 vscale = _mm256_set1_ps(scale);

    /* Scores, 8 positions at a time: token i needs positions < pos0 + i + 1,
     * so a tile starting at jb concerns tokens i >= jb - pos0. Scores of
     * positions past a token's own (the tile's diagonal, or the zero rows
     * past n_last) land in its row's padding and are never read. */
    /* The rows are requested SPAN_PREFETCH_POS positions before they are
     * converted (the table scatters blocks, so the hardware does not). */
    const size_t head_bytes = q8 ? 0 : hd * 2;
    attn_rows it, ahead;
    attn_rows_init(&it, kv, kv->k, blocks, 0);
    attn_rows_init(&ahead, kv, kv->k, blocks, 0);
    for (size_t r = 0; r < SPAN_PREFETCH_POS && r < n_last; r++) {
        if (r)
            attn_rows_next(&ahead);
        prefetch_row(ahead.row, off, head_bytes, q8, hd, 0);
    }
    for (size_t jb = 0; jb < n_last; jb += 8) {
        size_t nb = n_last - jb < 8 ? n_last - jb : 8;
        for (size_t r = 0; r < nb; r++) {
            if (jb + r)
                attn_rows_next(&it);
            if (jb + r + SPAN_PREFETCH_POS < n_last) {
                attn_rows_next(&ahead);
                prefetch_row(ahead.row, off, head_bytes, q8, hd, 0);
            }
            convert_row(q8, it.row, off, hd, kf + r * hd);
        }
        if (nb < 8)
            memset(kf + nb * hd, 0, (8 - nb) * hd * sizeof *kf);
        /* The (token, head) rows f = i * n_q + h concerned, two at a time;
         * (i, h) walked along with f (no division per row). */
        size_t i = jb > pos0 ? jb - pos0 : 0, h = 0;
        size_t f = i * n_q, f_end = n_tok * n_q;
        for (; f + 2 <= f_end; f += 2) {
            const float *qa = q + i * q_stride + h * hd;
            if (++h == n_q)
                h = 0, i++;
            const float *qb = q + i * q_stride + h * hd;
            if (++h == n_q)
                h = 0, i++;
            float *da = sc + f * stride + jb, *db = da + stride;
            span_scores4x2(qa, qb, kf, hd, vscale, da, db);
            span_scores4x2(qa, qb, kf + 4 * hd, hd, vscale, da + 4, db + 4);
        }
        if (f < f_end)
            span_scores8(q + i * q_stride + h * hd, kf, hd, vscale, sc + f * stride + jb);
    }
    for (size_t i = 0; i < n_tok; i++)
        for (size_t h = 0; h < n_q; h++)
            kern_softmax(sc + (i * n_q + h) * stride, pos0 + i + 1);

    /* Weighted V sums, run by run (attn_run_len: the runs attn_group adds),
     * each run in pieces of at most ATTN_SPAN_VROWS converted rows; a chain
     * that spans pieces waits in part. */
    const size_t run = attn_run_len(kv);
    attn_rows_init(&it, kv, kv->v, blocks, 0);
    attn_rows_init(&ahead, kv, kv->v, blocks, 0);
    for (size_t r = 0; r < SPAN_PREFETCH_POS && r < n_last; r++) {
        if (r)
            attn_rows_next(&ahead);
        prefetch_row(ahead.row, off, head_bytes, q8, hd, 0);
    }
    for (size_t j0 = 0; j0 < n_last; j0 += run) {
        size_t run_end = n_last - j0 < run ? n_last : j0 + run;
        for (size_t pc = j0; pc < run_end; pc += ATTN_SPAN_VROWS) {
            size_t pe = run_end - pc < ATTN_SPAN_VROWS ? run_end : pc + ATTN_SPAN_VROWS;
            for (size_t r = pc; r < pe; r++) {
                if (r)
                    attn_rows_next(&it);
                if (r + SPAN_PREFETCH_POS < n_last) {
                    attn_rows_next(&ahead);
                    prefetch_row(ahead.row, off, head_bytes, q8, hd, 0);
                }
                convert_row(q8, it.row, off, hd, vf + (r - pc) * hd);
            }
            /* The (token, head) rows f = i * n_q + h concerned, two at a time
             * when their tokens use as many positions of the piece and both
             * chains end (or go on) alike: all but the diagonal's. */
            size_t ia = pc > pos0 ? pc - pos0 : 0, ha = 0; // (token, head) of row f
            size_t f = ia * n_q, f_end = n_tok * n_q;
            while (f < f_end) {
                size_t n_a = pos0 + ia + 1;                  // token ia's positions
                size_t end_a = n_a < pe ? n_a : pe;          // its last of the piece + 1
                bool to_part = end_a < (n_a < run_end ? n_a : run_end); // goes on after pe
                float *pa = part + f * hd, *oa = out + ia * out_stride + ha * hd;
                const float *wa = sc + f * stride + pc;
                size_t ib = ia, hb = ha + 1; // row f + 1
                if (hb == n_q)
                    hb = 0, ib++;
                if (f + 1 < f_end) {
                    size_t n_b = pos0 + ib + 1;
                    size_t end_b = n_b < pe ? n_b : pe;
                    bool to_part_b = end_b < (n_b < run_end ? n_b : run_end);
                    if (end_b == end_a && to_part_b == to_part) {
                        float *pb = pa + hd;
                        span_accum2(vf, hd, wa, wa + stride, end_a - pc, pc == j0 ? NULL : pa,
                                    pc == j0 ? NULL : pb, pa, pb, oa,
                                    out + ib * out_stride + hb * hd, to_part, j0 == 0);
                        f += 2;
                        ia = ib, ha = hb + 1;
                        if (ha == n_q)
                            ha = 0, ia++;
                        continue;
                    }
                }
                span_accum(vf, hd, wa, end_a - pc, pc == j0 ? NULL : pa, pa, oa, to_part,
                           j0 == 0);
                f++;
                ia = ib, ha = hb;
            }
        }
    }
}

void attn_span_avx2(const attn_kv *kv, const int32_t *blocks, size_t pos0, size_t n_tok,
                    size_t off, size_t hd, const float *q, size_t q_stride, size_t n_q,
                    float *out, size_t out_stride, float *scratch)
{
    if (n_tok == 1 || hd % 8 != 0) { // nothing to share, or a vector tail: per token
        for (size_t i = 0; i < n_tok; i++)
            attn_group_avx2(kv, blocks, pos0 + i + 1, off, hd, q + i * q_stride, n_q,
                            out + i * out_stride, scratch);
        return;
    }
#define SPAN_BODY(HD, Q8) \
    span_body(HD, Q8, kv, blocks, pos0, n_tok, off, q, q_stride, n_q, out, out_stride, scratch)
    if (hd == 64)
        kv->is_q8 ? SPAN_BODY(64, true) : SPAN_BODY(64, false);
    else if (hd == 128)
        kv->is_q8 ? SPAN_BODY(128, true) : SPAN_BODY(128, false);
    else
        kv->is_q8 ? SPAN_BODY(hd, true) : SPAN_BODY(hd, false);
#undef SPAN_BODY
}
