/*
 * model/kern_gemm_avx2 — AVX2+FMA+F16C batched matmul kernels (compiled with
 * -mavx2 -mfma -mf16c and -ffp-contract=off; used only when kern.c chose its
 * AVX2 table): the Q8_0/Q4_0 row tiles behind kern_impl_avx2.mm_q8_0/mm_q4_0
 * (kern.c's activation row layout, any n), and the panel kernels for n >= 8
 * (panel layout: kern_gemm.h).
 *
 * Row tiles (tile_q8): R weight rows × C activation rows at once, so each
 * loaded weight block serves C activation rows. Every (weight row, activation
 * row) pair keeps its own accumulator and runs exactly the same instruction
 * sequence whatever R and C are (compile-time constants of one always-inlined
 * function), ending in one fixed hsum8 tree; n = 1 goes to kern_avx2.c's
 * matvec (kern_avx2_mv_q8), bitwise the same per pair.
 *
 * Panel kernels:
 * 1 weight row x 8 activation rows. Lane c of every vector is
 * activation row c, so for lane group l (elements 4l..4l+3 of a 32-element
 * chunk) one maddubs + madd gives the exact 4-element integer sums of all 8
 * pairs, and acc[l] = fma(dw*dx, (float)sum, acc[l]) is kern_int.h's per-lane
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

/* ------------------------------------------------- Q8_0 / Q4_0 row tiles */

/* The f16 scale at p in all 8 lanes (broadcast, then one conversion). */
static ALWAYS_INLINE __m256 f16_bcast(const uint8_t *p)
{
    int16_t h;
    memcpy(&h, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(h));
}

/*
 * The 32 weights of block b of a Q8_0 row (signed), or of a Q4_0 row as the
 * UNSIGNED nibbles 0..15 (the -8 offset is applied to the integer sums via the
 * activations, see tile_q8), in element order: the low nibbles of qs[0..16)
 * are elements 0..15, the high nibbles elements 16..31.
 */
static ALWAYS_INLINE __m256i load_w32(const uint8_t *row, size_t b, int is_q4)
{
    if (is_q4) {
        __m128i t = _mm_loadu_si128((const __m128i *)(row + b * 18 + 2));
        __m256i w = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
        return _mm256_and_si256(w, _mm256_set1_epi8(0x0f));
    }
    return _mm256_loadu_si256((const __m256i *)(row + b * 34 + 2));
}

/*
 * The largest micro-tile: TILE_R weight rows x TILE_C activation rows (12
 * accumulators). Measured against 2x4, 2x5, 2x7, 2x8, 3x4, 3x5, 4x4 and 1x8
 * in one process, alternated (L2-resident and streamed shapes of smollm and
 * tinyllama, both types): 2x6 was 2-7% faster than the old 2x4, the others
 * within noise of 2x6 or slower (docs/BENCHMARKS.md, "Batched matmul").
 */
#define TILE_R 2
#define TILE_C 6

/*
 * R (<= TILE_R) weight rows × C (<= TILE_C) activation rows of Q8_0/Q4_0
 * blocks. Per block and pair, lane l gets the exact integer sum of elements
 * 4l..4l+3 (maddubs + madd):
 *   Q8_0: |w| · sign(x, w)  (maddubs wants one unsigned operand);
 *   Q4_0: q · x - 8 · (x_4l + .. + x_4l+3), q the unsigned nibble, the
 *         activation's 4-sums precomputed by the quantizer (kern_act_s4).
 * Then acc = fma(dw * dx, (float)sum, acc), and hsum8 at the end (kern_int.h).
 * With do_pf, each weight block of row r+k also prefetches the same block
 * pf_bytes further on (the next tile's rows).
 */
static ALWAYS_INLINE void tile_q8(const int R, const int C, const int is_q4, const int do_pf,
                                  const kern_mat *w, size_t r, const kern_act *a, size_t i,
                                  float *y, size_t ldy, size_t pf_bytes)
{
    const size_t bb = is_q4 ? 18 : 34;
    const size_t nb = w->cols / 32;
    const uint8_t *wr[4];
    const int8_t *xq[TILE_C];
    const float *xd[TILE_C];
    const int32_t *xs[TILE_C];
    __m256 acc[TILE_R][TILE_C];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
        wr[k] = (const uint8_t *)w->data + (r + (size_t)k) * w->row_bytes;
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        xq[c] = kern_act_qs(a, i + (size_t)c);
        xd[c] = kern_act_d(a, i + (size_t)c);
        xs[c] = kern_act_s4(a, i + (size_t)c);
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            acc[k][c] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        __m256i aw[4], sw[4];
        __m256 dw[4];
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            if (do_pf)
                _mm_prefetch((const char *)wr[k] + pf_bytes + b * bb, _MM_HINT_T0);
            sw[k] = load_w32(wr[k], b, is_q4);
            if (!is_q4)
                aw[k] = _mm256_sign_epi8(sw[k], sw[k]);
            dw[k] = f16_bcast(wr[k] + b * bb);
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            __m256i x = _mm256_load_si256((const __m256i *)(xq[c] + 32 * b));
            __m256 dx = _mm256_broadcast_ss(xd[c] + b);
            __m256i corr = _mm256_setzero_si256();
            if (is_q4) // 8 * (sum of x over each lane's 4 elements), from the quantizer
                corr = _mm256_load_si256((const __m256i *)(xs[c] + 8 * b));
#pragma GCC unroll 4
            for (int k = 0; k < R; k++) {
                __m256i s32;
                if (is_q4)
                    s32 = _mm256_sub_epi32(
                        _mm256_madd_epi16(_mm256_maddubs_epi16(sw[k], x), ones), corr);
                else
                    s32 = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(aw[k], _mm256_sign_epi8(x, sw[k])), ones);
                acc[k][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw[k], dx), _mm256_cvtepi32_ps(s32),
                                            acc[k][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            y[(i + (size_t)c) * ldy + r + (size_t)k] = hsum8(acc[k][c]);
}

/*
 * Blocking (measured in docs/BENCHMARKS.md, "Batched matmul"):
 *  - W_TILE weight rows form a tile; activation rows pass over it TILE_C at a
 *    time (2x6 micro-tiles), so the tile's rows are re-read from L1, not memory;
 *  - K is not blocked: with tinyllama's 5632-column rows the tile and 4
 *    activation rows no longer fit L1, but parking the accumulators between
 *    K chunks of 8-32 blocks measured 3-25% slower than reading from L2;
 *  - activation rows are taken A_BLOCK_BYTES at a time (L2-sized) and the
 *    weight rows pass over each block, so with long prompts the weights, not
 *    the activations, stream from L3/memory;
 *  - while the first group of an activation block runs over a tile, the
 *    next tile's weight rows are prefetched (the lm head and every matrix
 *    with few activation rows stream their weights from memory).
 */
#define W_TILE 16
#define A_BLOCK_BYTES ((size_t)192 << 10)

/* One group of C (1..TILE_C) activation rows against the tile's rows [rt, re). */
static ALWAYS_INLINE void group_q8(const int C, const int is_q4, const int do_pf,
                                   const kern_mat *w, size_t rt, size_t re, const kern_act *a,
                                   size_t i, float *y, size_t ldy, size_t pf_bytes)
{
    size_t r = rt;
    for (; r + TILE_R <= re; r += TILE_R)
        tile_q8(TILE_R, C, is_q4, do_pf, w, r, a, i, y, ldy, pf_bytes);
    for (; r < re; r++)
        tile_q8(1, C, is_q4, do_pf, w, r, a, i, y, ldy, pf_bytes);
}

/* group_q8 with C a run-time count c (1..TILE_C). */
static ALWAYS_INLINE void group_any(size_t c, const int is_q4, const int do_pf,
                                    const kern_mat *w, size_t rt, size_t re, const kern_act *a,
                                    size_t i, float *y, size_t ldy, size_t pf_bytes)
{
    switch (c) {
    case 6:
        group_q8(6, is_q4, do_pf, w, rt, re, a, i, y, ldy, pf_bytes);
        break;
    case 5:
        group_q8(5, is_q4, do_pf, w, rt, re, a, i, y, ldy, pf_bytes);
        break;
    case 4:
        group_q8(4, is_q4, do_pf, w, rt, re, a, i, y, ldy, pf_bytes);
        break;
    case 3:
        group_q8(3, is_q4, do_pf, w, rt, re, a, i, y, ldy, pf_bytes);
        break;
    case 2:
        group_q8(2, is_q4, do_pf, w, rt, re, a, i, y, ldy, pf_bytes);
        break;
    default:
        group_q8(1, is_q4, do_pf, w, rt, re, a, i, y, ldy, pf_bytes);
        break;
    }
}

static ALWAYS_INLINE void mm_q8_any(const kern_mat *w, size_t r0, size_t r1, const kern_act *a,
                                    size_t n, float *y, size_t ldy, const int is_q4)
{
    if (n == 1) { // decode's matvec (kern_avx2.c)
        kern_avx2_mv_q8(w, r0, r1, a, 0, y, ldy, is_q4);
        return;
    }
    size_t mc = A_BLOCK_BYTES / a->q_stride / TILE_C * TILE_C;
    mc = mc < TILE_C ? TILE_C : mc;
    const size_t pf_bytes = W_TILE * w->row_bytes;
    for (size_t i0 = 0; i0 < n; i0 += mc) {
        size_t i1 = i0 + mc < n ? i0 + mc : n;
        for (size_t rt = r0; rt < r1; rt += W_TILE) {
            size_t re = rt + W_TILE < r1 ? rt + W_TILE : r1;
            bool pf = re < r1;
            for (size_t i = i0; i < i1; i += TILE_C) {
                size_t c = i1 - i < TILE_C ? i1 - i : TILE_C;
                if (pf)
                    group_any(c, is_q4, 1, w, rt, re, a, i, y, ldy, pf_bytes);
                else
                    group_any(c, is_q4, 0, w, rt, re, a, i, y, ldy, 0);
                pf = false;
            }
        }
    }
}

void kern_gemm_avx2_mm_q8_0(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                            float *y, size_t ldy)
{
    mm_q8_any(w, r0, r1, a, n, y, ldy, 0);
}

void kern_gemm_avx2_mm_q4_0(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                            float *y, size_t ldy)
{
    mm_q8_any(w, r0, r1, a, n, y, ldy, 1);
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
 * "Batched matmul"); NULL keeps the matvec tiles for that type. Q8_0/Q4_0
 * panel kernels measured 0.9-1.0x of the tiles and were removed; the Q6_K
 * instance of gemm_qk (is_q6) is not in the table until it beats the tile.
 */
const kern_gemm_impl kern_gemm_avx2 = {
    .q8_0 = NULL,
    .q4_0 = NULL,
    .q4_K = v_gemm_q4_K,
    .q6_K = NULL,
};
