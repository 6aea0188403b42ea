/*
 * model/kern_avx2 — AVX2+FMA+F16C kernels (compiled with -mavx2 -mfma -mf16c
 * and -ffp-contract=off; entered only after kern.c's CPU check).
 *
 * Matmul tiles: a micro-kernel computes R weight rows × C activation rows at
 * once so each loaded weight block serves C activation rows. Every (weight
 * row, activation row) pair keeps its own accumulator and runs exactly the
 * same instruction sequence whatever R and C are (the tile shapes are
 * compile-time constants of one always-inlined function), and the final
 * horizontal sum is one fixed tree. That is the batch-invariance rule: the
 * result of a pair never depends on its neighbours in the tile.
 *
 * Integer block sums use the maddubs/madd idiom: _mm256_maddubs_epi16 takes
 * an unsigned and a signed byte vector, so signed×signed products (Q8_0, Q4_0)
 * use |w| and sign(x, w); the unsigned nibbles of Q4_K and 6-bit values of
 * Q6_K go in directly, with their offsets (-32 for Q6_K) or mins (Q4_K)
 * applied through the activation's 16-element sums.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "model/kern_gemm.h"
#include "model/kern_int.h"
#include "model/simd_avx2.h"


static ALWAYS_INLINE float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static ALWAYS_INLINE float f16s(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* ----------------------------------------------------- activation quantizers */

/* 32 f32 -> 32 int8 (x*id rounded half-even, like lrintf), in element order. */
static ALWAYS_INLINE __m256i quant32(const float *x, __m256 vid)
{
    __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
    __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
    __m256i v2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
    __m256i v3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
    __m256i p01 = _mm256_packs_epi32(v0, v1);
    __m256i p23 = _mm256_packs_epi32(v2, v3);
    __m256i p = _mm256_packs_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static ALWAYS_INLINE float amax_n(const float *x, size_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (size_t j = 0; j < n; j += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    return hmax8(m);
}

static void v_quant_q8(const float *x, uint8_t *dst, size_t cols)
{
    int8_t *qs = (int8_t *)dst;
    float *d = (float *)(dst + cols);
    int32_t *sb = (int32_t *)(dst + kern_act_sb_offset(cols));
    const __m256i ones8 = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
    for (size_t b = 0; b < cols / 32; b++) {
        float amax = amax_n(x + 32 * b, 32);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256i q = quant32(x + 32 * b, _mm256_set1_ps(id));
        _mm256_store_si256((__m256i *)(qs + 32 * b), q);
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones);
        sb[b] = 8 * hsum_i32(s);
    }
}

static void v_quant_q8K(const float *x, uint8_t *dst, size_t cols)
{
    int8_t *qs = (int8_t *)dst;
    float *d = (float *)(dst + cols);
    int16_t *bs = (int16_t *)(dst + cols + (cols / 256) * 4);
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (size_t b = 0; b < cols / 256; b++) {
        float amax = amax_n(x + 256 * b, 256);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        for (int k = 0; k < 8; k++) {
            __m256i q = quant32(x + 256 * b + 32 * k, vid);
            _mm256_store_si256((__m256i *)(qs + 256 * b + 32 * k), q);
            /* pair sums (i16), then 16-element sums of each 128-bit half */
            __m256i s16 = _mm256_maddubs_epi16(ones8, q);
            __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
            s32 = _mm256_hadd_epi32(s32, s32);
            s32 = _mm256_hadd_epi32(s32, s32);
            bs[16 * b + 2 * k] = (int16_t)_mm256_extract_epi32(s32, 0);
            bs[16 * b + 2 * k + 1] = (int16_t)_mm256_extract_epi32(s32, 4);
        }
    }
}

/* ------------------------------------------------------------ Q8_0 and Q4_0 */

/* The Q8_0/Q4_0 matmul, one row or many, is in kern_q8_avx2.c. */

/* Weight rows per L1-resident tile; activation rows stream through it in groups of 4. */
#define W_TILE 16

/* ----------------------------------------------------------------- Q4_K */

static ALWAYS_INLINE void tile_q4_K(const int C, const kern_mat *w, size_t r, const kern_act *a,
                                    size_t i, float *y, size_t ldy)
{
    const size_t nb = w->cols / 256;
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    const int8_t *xq[4];
    const float *xd[4];
    const int16_t *xs[4];
    __m256 acc[4];
    float accm[4];
    const __m256i m4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        xq[c] = kern_act_qs(a, i + (size_t)c);
        xd[c] = kern_act_d(a, i + (size_t)c);
        xs[c] = kern_act_bsums(a, i + (size_t)c);
        acc[c] = _mm256_setzero_ps();
        accm[c] = 0.0f;
    }
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 144;
        float d = f16s(blk), dmin = f16s(blk + 2);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            tensor_q4_K_scale_min(j, blk + 4, &sc[j], &mn[j]);
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            sumi[c] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * k));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i slo = _mm256_set1_epi16(sc[2 * k]);
            __m256i shi = _mm256_set1_epi16(sc[2 * k + 1]);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                const int8_t *x = xq[c] + 256 * b + 64 * k;
                __m256i xlo = _mm256_load_si256((const __m256i *)x);
                __m256i xhi = _mm256_load_si256((const __m256i *)(x + 32));
                __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xlo), slo);
                __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xhi), shi);
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(plo, phi));
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const int16_t *bs = xs[c] + 16 * b;
            int summ = 0;
            for (int j = 0; j < 8; j++)
                summ += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
            float dx = xd[c][b];
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            accm[c] += dmin * dx * (float)summ;
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
        y[(i + (size_t)c) * ldy + r] = hsum8(acc[c]) - accm[c];
}

/*
 * The 8 sub-block scales and 8 mins of a Q4_K block (12 packed bytes, see
 * tensor_q4_K_scale_min) as bytes sc[0..8) and mn[0..8), unpacked with 32-bit
 * word operations instead of 16 scalar extractions:
 *   sc[0..3] = s[0..3] & 63              mn[0..3] = s[4..7] & 63
 *   sc[4..7] = s[8..11] & 15 | (s[0..3] >> 6) << 4
 *   mn[4..7] = s[8..11] >> 4 | (s[4..7] >> 6) << 4
 */
static ALWAYS_INLINE void q4_K_scales(const uint8_t *s12, uint8_t sc[8], uint8_t mn[8])
{
    uint32_t u0, u1, u2;
    memcpy(&u0, s12, 4);
    memcpy(&u1, s12 + 4, 4);
    memcpy(&u2, s12 + 8, 4);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    uint32_t s_lo = u0 & m6, s_hi = (u2 & m4) | (((u0 >> 6) & m2) << 4);
    uint32_t n_lo = u1 & m6, n_hi = ((u2 >> 4) & m4) | (((u1 >> 6) & m2) << 4);
    memcpy(sc, &s_lo, 4);
    memcpy(sc + 4, &s_hi, 4);
    memcpy(mn, &n_lo, 4);
    memcpy(mn + 4, &n_hi, 4);
}

/*
 * One activation row against R Q4_K weight rows (decode's matvec): bitwise the
 * same per pair as tile_q4_K (the same integer lane sums, fma and accm
 * updates), but the scales are unpacked by q4_K_scales and broadcast by byte
 * shuffles, the mins' sum is one multiply-add of the activation's 16-element
 * sums against the mins (each twice), the activation loads serve R rows, and
 * the weights are prefetched ~3 KiB ahead per row.
 */
static ALWAYS_INLINE void mv_q4_K(const int R, const kern_mat *w, size_t r, size_t rs,
                                  const kern_act *a, size_t i, float *y, size_t ldy)
{
    const size_t nb = w->cols / 256;
    const uint8_t *row[2];
    __m256 acc[2];
    float accm[2];
    const int8_t *xq = kern_act_qs(a, i);
    const float *xd = kern_act_d(a, i);
    const int16_t *xs = kern_act_bsums(a, i);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    /* shuffle controls: int16 lanes all = scale 2k (lo) or 2k+1 (hi), from sc16 */
    const __m256i bc0 = _mm256_set1_epi16(0x0100), bc1 = _mm256_set1_epi16(0x0302);
#pragma GCC unroll 2
    for (int k = 0; k < R; k++) {
        row[k] = (const uint8_t *)w->data + (r + (size_t)k * rs) * w->row_bytes;
        acc[k] = _mm256_setzero_ps();
        accm[k] = 0.0f;
    }
    for (size_t b = 0; b < nb; b++) {
        __m256i bs = _mm256_loadu_si256((const __m256i *)(xs + 16 * b));
        float dx = xd[b];
        __m256i sumi[2], sc16[2];
        float d[2], dmin[2];
        int summ[2];
#pragma GCC unroll 2
        for (int k = 0; k < R; k++) {
            const uint8_t *blk = row[k] + b * 144;
            _mm_prefetch((const char *)blk + 24 * 144, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + 24 * 144 + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)blk + 24 * 144 + 128, _MM_HINT_T0);
            d[k] = f16s(blk);
            dmin[k] = f16s(blk + 2);
            uint8_t sc[8], mn[8];
            q4_K_scales(blk + 4, sc, mn);
            uint64_t sc8, mn8;
            memcpy(&sc8, sc, 8);
            memcpy(&mn8, mn, 8);
            /* scales as int16 in both 128-bit halves; mins as int16, each twice */
            sc16[k] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
            __m128i mn2 = _mm_unpacklo_epi8(_mm_cvtsi64_si128((long long)mn8),
                                            _mm_cvtsi64_si128((long long)mn8));
            summ[k] = hsum_i32(_mm256_madd_epi16(bs, _mm256_cvtepu8_epi16(mn2)));
            sumi[k] = _mm256_setzero_si256();
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const int8_t *x = xq + 256 * b + 64 * j;
            __m256i xlo = _mm256_load_si256((const __m256i *)x);
            __m256i xhi = _mm256_load_si256((const __m256i *)(x + 32));
            __m256i clo = _mm256_add_epi16(bc0, _mm256_set1_epi16((short)(0x0404 * j)));
            __m256i chi = _mm256_add_epi16(bc1, _mm256_set1_epi16((short)(0x0404 * j)));
#pragma GCC unroll 2
            for (int k = 0; k < R; k++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(row[k] + b * 144 + 16 + 32 * j));
                __m256i lo = _mm256_and_si256(q, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                __m256i slo = _mm256_shuffle_epi8(sc16[k], clo);
                __m256i shi = _mm256_shuffle_epi8(sc16[k], chi);
                __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xlo), slo);
                __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xhi), shi);
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(plo, phi));
            }
        }
#pragma GCC unroll 2
        for (int k = 0; k < R; k++) {
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d[k] * dx), _mm256_cvtepi32_ps(sumi[k]),
                                     acc[k]);
            accm[k] += dmin[k] * dx * (float)summ[k];
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < R; k++)
        y[i * ldy + r + (size_t)k * rs] = hsum8(acc[k]) - accm[k];
}

/*
 * Decode's Q4_K matvec over one pool chunk: two HALF STREAMS (rows t and h+t
 * of a chunk of 2h rows, each half walked front to back), for the reason
 * mv_chunk gives for Q8_0/Q4_0; the first 24 blocks of each half are
 * prefetched at the start. Bitwise the same per pair as mv_q4_K over adjacent
 * rows and tile_q4_K.
 */
static void v_mv_q4_K(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                      float *y, size_t ldy)
{
    (void)n;
    const size_t h = (r1 - r0) / 2, rb = w->row_bytes;
    const uint8_t *lo = (const uint8_t *)w->data + r0 * rb;
    if (h > 0) {
        size_t ahead = 24 * 144 < h * rb ? 24 * 144 : h * rb;
        for (int k = 0; k < 2; k++)
            for (size_t o = 0; o < ahead; o += 64)
                _mm_prefetch((const char *)lo + (size_t)k * h * rb + o, _MM_HINT_T0);
        for (size_t t = 0; t < h; t++)
            mv_q4_K(2, w, r0 + t, h, a, 0, y, ldy);
    }
    if (r0 + 2 * h < r1)
        mv_q4_K(1, w, r1 - 1, 1, a, 0, y, ldy);
}

static void v_mm_q4_K(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                      float *y, size_t ldy)
{
    for (size_t rt = r0; rt < r1; rt += 16) {
        size_t re = rt + 16 < r1 ? rt + 16 : r1;
        size_t i = 0;
        for (; i + 4 <= n; i += 4)
            for (size_t r = rt; r < re; r++)
                tile_q4_K(4, w, r, a, i, y, ldy);
        for (; i < n; i++) {
            size_t r = rt;
            for (; r + 2 <= re; r += 2)
                mv_q4_K(2, w, r, 1, a, i, y, ldy);
            for (; r < re; r++)
                mv_q4_K(1, w, r, 1, a, i, y, ldy);
        }
    }
}

/* ----------------------------------------------------------------- Q6_K */

static ALWAYS_INLINE void tile_q6_K(const int C, const kern_mat *w, size_t r, const kern_act *a,
                                    size_t i, float *y, size_t ldy)
{
    const size_t nb = w->cols / 256;
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    const int8_t *xq[4];
    const float *xd[4];
    const int16_t *xs[4];
    __m256 acc[4];
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        xq[c] = kern_act_qs(a, i + (size_t)c);
        xd[c] = kern_act_d(a, i + (size_t)c);
        xs[c] = kern_act_bsums(a, i + (size_t)c);
        acc[c] = _mm256_setzero_ps();
    }
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * 210;
        if (C == 1) { // decode's matvec: fetch ~3 KiB ahead (as kern_q8_avx2.c does)
#pragma GCC unroll 4
            for (int o = 0; o < 256; o += 64)
                _mm_prefetch((const char *)blk + 16 * 210 + o, _MM_HINT_T0);
        }
        const int8_t *scales = (const int8_t *)(blk + 192);
        float d = f16s(blk + 208);
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            sumi[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_and_si256(qh, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                int s = 8 * h + 2 * k;
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(scales[s + 1]),
                                               _mm_set1_epi16(scales[s]));
#pragma GCC unroll 4
                for (int c = 0; c < C; c++) {
                    __m256i x = _mm256_load_si256(
                        (const __m256i *)(xq[c] + 256 * b + 128 * h + 32 * k));
                    sumi[c] = _mm256_add_epi32(
                        sumi[c], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], x), scv));
                }
            }
        }
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)scales));
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            __m256i bs = _mm256_loadu_si256((const __m256i *)(xs[c] + 16 * b));
            __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
            __m256i t = _mm256_sub_epi32(sumi[c], corr);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd[c][b]), _mm256_cvtepi32_ps(t), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
        y[(i + (size_t)c) * ldy + r] = hsum8(acc[c]);
}

/* ------------------------------------------------------- F32 / F16 / BF16 */

enum { FT_F32, FT_F16, FT_BF16 };

static ALWAYS_INLINE __m256 load_w8(const uint8_t *row, size_t j, const int ft)
{
    if (ft == FT_F32)
        return _mm256_loadu_ps((const float *)(const void *)(row + 4 * j));
    __m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * j));
    if (ft == FT_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static ALWAYS_INLINE float load_w1(const uint8_t *row, size_t j, const int ft)
{
    if (ft == FT_F32) {
        float v;
        memcpy(&v, row + 4 * j, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, row + 2 * j, 2);
    return ft == FT_F16 ? _cvtsh_ss(h) : tensor_bf16_to_f32(h);
}

static ALWAYS_INLINE void tile_f(const int C, const int ft, const kern_mat *w, size_t r,
                                 const kern_act *a, size_t i, float *y, size_t ldy)
{
    const size_t n = w->cols;
    const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
    const float *x[4];
    __m256 acc0[4], acc1[4];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        x[c] = a->x + (i + (size_t)c) * n;
        acc0[c] = _mm256_setzero_ps();
        acc1[c] = _mm256_setzero_ps();
    }
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 w0 = load_w8(row, j, ft), w1 = load_w8(row, j + 8, ft);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[c] + j), acc0[c]);
            acc1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[c] + j + 8), acc1[c]);
        }
    }
    size_t j8 = j;
    for (; j + 8 <= n; j += 8) {
        __m256 w0 = load_w8(row, j, ft);
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[c] + j), acc0[c]);
    }
    (void)j8;
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        float s = hsum8(_mm256_add_ps(acc0[c], acc1[c]));
        for (size_t t = j; t < n; t++)
            s += load_w1(row, t, ft) * x[c][t];
        y[(i + (size_t)c) * ldy + r] = s;
    }
}

/* Drivers for the one-weight-row tiles: 4 activation rows at a time, then singles. */
#define MM_ROWWISE(NAME, TILE_CALL4, TILE_CALL1)                                                 \
    static void NAME(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,       \
                     float *y, size_t ldy)                                                        \
    {                                                                                             \
        for (size_t rt = r0; rt < r1; rt += W_TILE) {                                             \
            size_t re = rt + W_TILE < r1 ? rt + W_TILE : r1;                                      \
            size_t i = 0;                                                                         \
            for (; i + 4 <= n; i += 4)                                                            \
                for (size_t r = rt; r < re; r++)                                                  \
                    TILE_CALL4;                                                                   \
            for (; i < n; i++)                                                                    \
                for (size_t r = rt; r < re; r++)                                                  \
                    TILE_CALL1;                                                                   \
        }                                                                                         \
    }

MM_ROWWISE(v_mm_q6_K, tile_q6_K(4, w, r, a, i, y, ldy), tile_q6_K(1, w, r, a, i, y, ldy))
MM_ROWWISE(v_mm_f32, tile_f(4, FT_F32, w, r, a, i, y, ldy), tile_f(1, FT_F32, w, r, a, i, y, ldy))
MM_ROWWISE(v_mm_f16, tile_f(4, FT_F16, w, r, a, i, y, ldy), tile_f(1, FT_F16, w, r, a, i, y, ldy))
MM_ROWWISE(v_mm_bf16, tile_f(4, FT_BF16, w, r, a, i, y, ldy),
           tile_f(1, FT_BF16, w, r, a, i, y, ldy))

/* ------------------------------------------------------------------ helpers */

/*
 * exp(x) for 8 floats: n = round(x*log2 e), r = x - n*ln2 (two-part), a
 * degree-6 polynomial for e^r (Cephes' expf coefficients), times 2^n.
 * Relative error about 2 ulp; x < -87.3 gives 0, x > 88.7 gives +inf.
 * kern_exp_poly (kern_int.h) is its scalar twin, operation for operation.
 */
static ALWAYS_INLINE __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.7f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n in two steps so n = 128 (x near 88.7) does not overflow the exponent field */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    res = _mm256_andnot_ps(under, res);
    return _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), over);
}

static void v_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = hsum8(acc);
    for (; i < n; i++)
        ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 vr = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vr),
                                              _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * r * w[i];
}

static void v_softmax(float *x, size_t n)
{
    size_t i = 0;
    float mx = x[0];
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8)
            m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        mx = hmax8(m);
    }
    for (; i < n; i++)
        mx = fmaxf(mx, x[i]);
    __m256 vmx = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum8(acc);
    for (; i < n; i++) {
        x[i] = kern_exp_poly(x[i] - mx);
        sum += x[i];
    }
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++)
        x[i] *= 1.0f / sum;
}

static void v_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_xor_ps(g, neg));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + kern_exp_poly(-g)) * up[i];
    }
}

static void v_add(float *y, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++)
        y[i] = a[i] + b[i];
}

static void v_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

static void v_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = _cvtsh_ss(src[i]);
}

static void v_attn_scores(float *out, const float *q, const uint16_t *k, size_t k_stride,
                          size_t n_pos, size_t head_dim, float scale)
{
    for (size_t t = 0; t < n_pos; t++) {
        const uint16_t *kt = k + t * k_stride;
        __m256 acc = _mm256_setzero_ps();
        size_t d = 0;
        for (; d + 8 <= head_dim; d += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d),
                                  _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kt + d))), acc);
        float s = hsum8(acc);
        for (; d < head_dim; d++)
            s += q[d] * _cvtsh_ss(kt[d]);
        out[t] = s * scale;
    }
}

static void v_attn_accum(float *out, const float *w, const uint16_t *v, size_t v_stride,
                         size_t n_pos, size_t head_dim)
{
    size_t d = 0;
    for (; d + 32 <= head_dim; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t t = 0; t < n_pos; t++) {
            const uint16_t *vt = v + t * v_stride + d;
            __m256 wt = _mm256_set1_ps(w[t]);
            a0 = _mm256_fmadd_ps(wt, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)vt)), a0);
            a1 = _mm256_fmadd_ps(wt, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vt + 8))), a1);
            a2 = _mm256_fmadd_ps(wt, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vt + 16))), a2);
            a3 = _mm256_fmadd_ps(wt, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vt + 24))), a3);
        }
        _mm256_storeu_ps(out + d, a0);
        _mm256_storeu_ps(out + d + 8, a1);
        _mm256_storeu_ps(out + d + 16, a2);
        _mm256_storeu_ps(out + d + 24, a3);
    }
    for (; d + 8 <= head_dim; d += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (size_t t = 0; t < n_pos; t++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[t]),
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + t * v_stride + d))), a0);
        _mm256_storeu_ps(out + d, a0);
    }
    for (; d < head_dim; d++) {
        float s = 0.0f;
        for (size_t t = 0; t < n_pos; t++)
            s = fmaf(w[t], _cvtsh_ss(v[t * v_stride + d]), s);
        out[d] = s;
    }
}

const kern_impl kern_impl_avx2 = {
    .name = "avx2",
    .mm_f32 = v_mm_f32,
    .mm_f16 = v_mm_f16,
    .mm_bf16 = v_mm_bf16,
    .mm_q8_0 = kern_q8_avx2_mm_q8_0,
    .mm_q4_0 = kern_q8_avx2_mm_q4_0,
    .mv_q4_K = v_mv_q4_K,
    .mm_q4_K = v_mm_q4_K,
    .mm_q6_K = v_mm_q6_K,
    .quant_q8 = v_quant_q8,
    .quant_q8K = v_quant_q8K,
    .rmsnorm = v_rmsnorm,
    .softmax = v_softmax,
    .swiglu = v_swiglu,
    .add = v_add,
    .f32_to_f16 = v_f32_to_f16,
    .f16_to_f32 = v_f16_to_f32,
    .attn_scores = v_attn_scores,
    .attn_accum = v_attn_accum,
};
