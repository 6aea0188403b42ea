/*
 * model/kern_gemm_avx2 — AVX2+FMA+F16C panel kernels for n >= 8 activation
 * rows (compiled with -mavx2 -mfma -mf16c and -ffp-contract=off; used only when
 * kern.c chose its AVX2 table; panel layout: kern_gemm.h). Q8_0/Q4_0 have their
 * own kernels over kern_mat_pack's groups (kern_q8_avx2.c).
 *
 * 1 weight row x 8 activation rows. Lane c of every vector is
 * activation row c, so for lane group l (elements 4l..4l+3 of a 32-element
 * chunk) one maddubs + madd gives the exact 4-element integer sums of all 8
 * pairs, and acc[l] = fma(d*dx, (float)sum, acc[l]) is kern_int.h's per-lane
 * operation for all 8 pairs at once; the end is the hsum8 tree taken across
 * acc[0..8). Each pair therefore sees exactly the float operations of the
 * matvec tiles in kern_avx2.c (bitwise batch invariance).
 *
 * Blocking: for GEMM_RB weight rows at a time, K is walked in chunks of
 * GEMM_KC elements; the panel's chunk (4-9 KiB) stays in L1 while the rows
 * pass over it, and each row's 8 accumulators are parked in a small stack
 * array between chunks (a store and reload are exact, so blocking never
 * changes a bit).
 */
#include <immintrin.h>
#include <string.h>

#include "model/kern_gemm.h"
#include "model/simd_avx2.h"


#define GEMM_RB 16  /* weight rows sharing one K chunk of the panel */
#define GEMM_KC 512 /* elements per K chunk */

static ALWAYS_INLINE __m256i bcast4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/*
 * The hsum8 tree across 8 accumulators, ((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7)),
 * minus sub (Q4_K's mins; NULL: none), stored to y[c*ldy + r] for c < 8.
 */
static ALWAYS_INLINE void store_tree(const __m256 a[8], const __m256 *sub, float *y, size_t ldy,
                                     size_t r)
{
    __m256 t0 = _mm256_add_ps(a[0], a[4]), t1 = _mm256_add_ps(a[1], a[5]);
    __m256 t2 = _mm256_add_ps(a[2], a[6]), t3 = _mm256_add_ps(a[3], a[7]);
    __m256 s = _mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3));
    if (sub)
        s = _mm256_sub_ps(s, *sub);
    _Alignas(32) float v[8];
    _mm256_store_ps(v, s);
    for (size_t c = 0; c < 8; c++)
        y[c * ldy + r] = v[c];
}

/* ------------------------------------------------------------ Q4_K / Q6_K */

/*
 * One 256-element block of a Q4_K (is_q6 = 0) or Q6_K row against a Q8K panel
 * block. The weights are first decoded to 256 unsigned bytes in element order
 * (chunk c = elements 32c..32c+31), with one int16 scale vector per
 * 16-element half; lane group l of chunk c then gives 8 pairs' scaled
 * 4-element sums with one maddubs + madd.
 */
static ALWAYS_INLINE void qk_block(const int is_q6, const uint8_t *blk, const uint8_t *pb,
                                   __m256 acc[8], __m256 *accm)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    _Alignas(32) uint8_t wq[256];
    __m256i sv[16]; // sv[2c] scale of chunk c's first half, sv[2c+1] of its second
    __m256 dx = _mm256_load_ps((const float *)(pb + KERN_GEMM_Q8K_D));
    __m256 d;
    const int8_t *scales = NULL;
    if (!is_q6) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            tensor_q4_K_scale_min(j, blk + 4, &sc[j], &mn[j]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * k));
            _mm256_store_si256((__m256i *)(wq + 64 * k), _mm256_and_si256(q, m4));
            _mm256_store_si256((__m256i *)(wq + 64 * k + 32),
                               _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        }
        for (int c = 0; c < 8; c++)
            sv[2 * c] = sv[2 * c + 1] = _mm256_set1_epi16(sc[c]);
        d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss((uint16_t)(blk[0] | blk[1] << 8))), dx);
        // mins: summ = sum_c mn[c] * (bs[2c] + bs[2c+1]); accm += (dmin*dx) * summ
        __m256i summ = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i bs = _mm256_load_si256((const __m256i *)(pb + KERN_GEMM_Q8K_BS + 32 * c));
            summ = _mm256_add_epi32(summ, _mm256_madd_epi16(bs, _mm256_set1_epi16(mn[c])));
        }
        __m256 dmin = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss((uint16_t)(blk[2] | blk[3] << 8))), dx);
        *accm = _mm256_add_ps(*accm, _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(summ)));
    } else {
        const __m256i m30 = _mm256_set1_epi8(0x30);
        scales = (const int8_t *)(blk + 192);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
            uint8_t *o = wq + 128 * h;
            _mm256_store_si256((__m256i *)o,
                               _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)));
            _mm256_store_si256((__m256i *)(o + 32),
                               _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)));
            _mm256_store_si256(
                (__m256i *)(o + 64),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_and_si256(qh, m30)));
            _mm256_store_si256(
                (__m256i *)(o + 96),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)));
        }
        for (int s = 0; s < 16; s++)
            sv[s] = _mm256_set1_epi16(scales[s]);
        d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss((uint16_t)(blk[208] | blk[209] << 8))), dx);
    }
#pragma GCC unroll 8
    for (int l = 0; l < 8; l++) {
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i x = _mm256_load_si256((const __m256i *)(pb + 256 * c + 32 * l));
            __m256i p = _mm256_maddubs_epi16(bcast4(wq + 32 * c + 4 * l), x);
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sv[2 * c + (l >= 4)]));
        }
        if (is_q6) { // the -32 of every value: 32 * (bs[2l]*sc[2l] + bs[2l+1]*sc[2l+1])
            __m256i bs = _mm256_load_si256((const __m256i *)(pb + KERN_GEMM_Q8K_BS + 32 * l));
            uint32_t pr = (uint16_t)(int16_t)scales[2 * l] |
                          (uint32_t)(uint16_t)(int16_t)scales[2 * l + 1] << 16;
            __m256i corr = _mm256_madd_epi16(bs, _mm256_set1_epi32((int32_t)pr));
            sum = _mm256_sub_epi32(sum, _mm256_slli_epi32(corr, 5));
        }
        acc[l] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[l]);
    }
}

static ALWAYS_INLINE void gemm_qk(const int is_q6, const kern_mat *w, size_t r0, size_t r1,
                                  const uint8_t *panel, float *y, size_t ldy)
{
    const size_t nb = w->cols / 256, bb = is_q6 ? 210 : 144, kc = GEMM_KC / 256;
    __m256 park[GEMM_RB][9];
    for (size_t rb = r0; rb < r1; rb += GEMM_RB) {
        size_t re = rb + GEMM_RB < r1 ? rb + GEMM_RB : r1;
        for (size_t k0 = 0; k0 < nb; k0 += kc) {
            size_t k1 = k0 + kc < nb ? k0 + kc : nb;
            for (size_t r = rb; r < re; r++) {
                const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
                __m256 acc[8], accm;
#pragma GCC unroll 8
                for (int l = 0; l < 8; l++)
                    acc[l] = k0 ? park[r - rb][l] : _mm256_setzero_ps();
                accm = k0 ? park[r - rb][8] : _mm256_setzero_ps();
                for (size_t b = k0; b < k1; b++)
                    qk_block(is_q6, row + b * bb, panel + b * KERN_GEMM_Q8K_BLOCK, acc, &accm);
                if (k1 == nb) {
                    store_tree(acc, is_q6 ? NULL : &accm, y, ldy, r);
                } else {
#pragma GCC unroll 8
                    for (int l = 0; l < 8; l++)
                        park[r - rb][l] = acc[l];
                    park[r - rb][8] = accm;
                }
            }
        }
    }
}

static void v_gemm_q4_K(const kern_mat *w, size_t r0, size_t r1, const uint8_t *panel, float *y,
                        size_t ldy)
{
    gemm_qk(0, w, r0, r1, panel, y, ldy);
}


/*
 * Only where the panel kernel beats kern_avx2.c's tiles (docs/BENCHMARKS.md,
 * "Batched matmul"); NULL keeps the matvec tiles for that type. Q8_0/Q4_0 run
 * kern_q8_avx2.c's packed kernels (their float order has no lanes); the Q6_K
 * instance of gemm_qk (is_q6) is not in the table until it beats the tile.
 */
const kern_gemm_impl kern_gemm_avx2 = {
    .q4_K = v_gemm_q4_K,
    .q6_K = NULL,
};
