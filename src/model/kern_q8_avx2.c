/*
 * model/kern_q8_avx2 — the AVX2 Q8_0 / Q4_0 matmul, one activation row
 * (decode) or many (prefill, batched decode). Compiled with -mavx2 -mfma -mf16c
 * and -ffp-contract=off; entered only after kern.c chose kern_impl_avx2.
 *
 * FLOAT ORDER (kern_int.h): one float per (weight row, activation row);
 * per block b in order, acc = fma(dw_b * dx_b, (float)S_b, acc) with S_b the
 * exact integer sum of the block. Everything else here is integer work, exact
 * in any order, so the layout and the tiling are free: that is what makes the
 * kernels below fast and every result bitwise the same as kern.c's s_dot_*.
 *
 * PACKED GROUPS (kern_mat_pack, layout in kern_int.h): one vector of a group
 * block holds 4 consecutive elements of each of 8 weight rows. Broadcasting
 * the activation's 4 matching bytes to all lanes, one maddubs gives the 8
 * rows' partial sums; summed over the block's vectors they give the 8 rows'
 * S_b in one vector, and ONE convert, multiply and fma serve 8 (row,
 * activation row) pairs. maddubs wants one unsigned operand: Q4_0 has
 * unsigned nibbles q (w = q - 8), and Q8_0 is packed as u = w + 128 = 16h + l,
 * two unsigned nibbles, so w·x = 16 (h·x) + l·x - 128 x. Each maddubs pair sum
 * is then at most 2*15*127 = 3810 and the 8 of a block add up in int16
 * (<= 30480) before one madd widens them. The -8 / -128 offsets are one
 * subtraction of the activation's per-block sum (kern_act_sb: 8 * sum of x)
 * per block. That is how decode (both types) and batched Q4_0 run.
 *
 * Batched Q8_0 (gks) uses the sign trick instead: w = u ^ 0x80, and
 * maddubs(|w|, sign(x, w)) per 4 elements of the 8 rows, widened by madd and
 * added in int32: one maddubs instead of two per 32 elements, no nibble
 * masks, no offset correction. It issues more multiply-pipe operations (sign,
 * maddubs, madd against two maddubs) but fewer in all, and measured faster on
 * every batch size (bench/kern_pair.sh mm, paired: n = 16 1.13-1.17x on two
 * threads, 1.14x on one; n = 4 1.06x, 64 1.12x, 256 1.22x).
 *
 * Rows outside whole packed groups of [r0, r1) (an unpacked matrix, the rows
 * after the last group, a range that splits a group) run row by row
 * (rows_plain), with the same float sequence.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "model/kern_int.h"
#include "model/simd_avx2.h"

/*
 * Keeps an integer accumulation a chain: without it GCC reassociates the sums
 * of a block into a tree, computing all products first, and spills them.
 */
#define CHAIN(v) __asm__("" : "+x"(v))

/* The 4 bytes at p in all 8 lanes (one broadcast load). */
static ALWAYS_INLINE __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

static ALWAYS_INLINE float f16s(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* ------------------------------------------------------------ row by row */

/* S_b of one Q8_0 / Q4_0 block of a row (blk) against 32 activation bytes x. */
static ALWAYS_INLINE int block_isum(const uint8_t *blk, const int8_t *x, const int is_q4)
{
    __m256i q;
    if (is_q4) {
        __m128i t = _mm_loadu_si128((const __m128i *)(blk + 2));
        q = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
        q = _mm256_sub_epi8(_mm256_and_si256(q, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
    } else {
        q = _mm256_loadu_si256((const __m256i *)(blk + 2));
    }
    __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xv, q));
    return hsum_i32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Weight rows [ra, rb) of the row layout against activation rows 0..n-1. */
static void rows_plain(const kern_mat *w, size_t ra, size_t rb, const kern_act *a, size_t n,
                       float *y, size_t ldy, const int is_q4)
{
    const size_t bb = is_q4 ? 18 : 34, nb = w->cols / 32;
    for (size_t r = ra; r < rb; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        for (size_t i = 0; i < n; i++) {
            const int8_t *xq = kern_act_qs(a, i);
            const float *xd = kern_act_d(a, i);
            float acc = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * bb;
                float s = (float)block_isum(blk, xq + 32 * b, is_q4);
                acc = fmaf(f16s(blk) * xd[b], s, acc);
            }
            y[i * ldy + r] = acc;
        }
    }
}

/* --------------------------------------------------------- packed groups */

/* The batched kernels' weight stream: requests into L2 the lines from past *pq
 * up to *pq + step (not at or past end), and advances *pq by step. */
static ALWAYS_INLINE void stream_prefetch(const uint8_t **pq, size_t step, const uint8_t *end)
{
    const uint8_t *nq = *pq + step;
    for (uintptr_t l = ((uintptr_t)*pq | 63) + 1; l <= (uintptr_t)nq && l < (uintptr_t)end;
         l += 64)
        _mm_prefetch((const char *)l, _MM_HINT_T1);
    *pq = nq;
}

/*
 * R packed groups (bases g[k], output rows yr[k]..yr[k]+7) × C activation rows
 * i..i+C-1, all nb blocks. Prefetch, per block: pf == PF_AHEAD requests each
 * group's block pf_off bytes ahead, but not at or past pf_end[k] (decode);
 * pf == PF_STREAM advances the stream pointer *pfp by pf_step bytes and
 * requests the lines it passes into L2, not at or past pf_end[0] (batched).
 */
enum { PF_AHEAD = 1, PF_STREAM };

static ALWAYS_INLINE void gk(const int R, const int C, const int is_q4, const int pf,
                             const uint8_t *const *g, const size_t *yr, size_t nb,
                             const kern_act *a, size_t i, float *y, size_t ldy, size_t pf_off,
                             const uint8_t *const *pf_end, const uint8_t **pfp, size_t pf_step)
{
    const uint8_t *pq = pf == PF_STREAM ? *pfp : NULL;
    const size_t qb = KERN_PACK_QB(is_q4), bs = KERN_PACK_BS(qb);
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    const int8_t *xq[8];
    const float *xd[8];
    const int32_t *xs[8];
    __m256 acc[4][8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        xq[c] = kern_act_qs(a, i + (size_t)c);
        xd[c] = kern_act_d(a, i + (size_t)c);
        xs[c] = kern_act_sb(a, i + (size_t)c);
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            acc[k][c] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        __m256i s[4][8];
        const size_t qo = b * bs;
        if (pf == PF_STREAM) {
            stream_prefetch(&pq, pf_step, pf_end[0]);
        } else if (pf == PF_AHEAD) {
#pragma GCC unroll 4
            for (int k = 0; k < R; k++) {
                const uint8_t *p = g[k] + qo + pf_off;
                if (p < pf_end[k]) // the block's lines ahead, stopping at the stream's end
#pragma GCC unroll 4
                    for (size_t l = 0; l < bs; l += 64)
                        _mm_prefetch((const char *)p + l, _MM_HINT_T0);
            }
        }
        // Q4_0: vector j < 4 holds elements 4j.. (low nibbles) and 16+4j.. (high),
        // all summed in sl. Q8_0: u = w + 128 = 16 h + l, vector j < 8 holds
        // elements 4j..4j+3 in both nibbles: w·x = 16 (h·x) + l·x - 128 x, the
        // h sums in sh.
        __m256i sl[4][8], sh[4][8];
#pragma GCC unroll 4
        for (int k = 0; k < R; k++)
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                sl[k][c] = sh[k][c] = _mm256_setzero_si256();
        const int nj = is_q4 ? 4 : 8;
#pragma GCC unroll 8
        for (int j = 0; j < nj; j++) {
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < R; k++) {
                __m256i p = _mm256_loadu_si256((const __m256i *)(g[k] + qo + 32 * j));
                lo[k] = _mm256_and_si256(p, m4);
                hi[k] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
            }
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                __m256i xl = bcast4(xq[c] + 32 * b + 4 * j);
                __m256i xh = is_q4 ? bcast4(xq[c] + 32 * b + 16 + 4 * j) : xl;
#pragma GCC unroll 4
                for (int k = 0; k < R; k++) {
                    sl[k][c] = _mm256_add_epi16(sl[k][c], _mm256_maddubs_epi16(lo[k], xl));
                    CHAIN(sl[k][c]);
                    __m256i ph = _mm256_maddubs_epi16(hi[k], xh);
                    if (is_q4) {
                        sl[k][c] = _mm256_add_epi16(sl[k][c], ph);
                        CHAIN(sl[k][c]);
                    } else {
                        sh[k][c] = _mm256_add_epi16(sh[k][c], ph);
                        CHAIN(sh[k][c]);
                    }
                }
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            // 8 times the sum of the block's x (Q4_0: w = q - 8; Q8_0: w = u - 128,
            // taken off the high nibbles' sums before they are scaled by 16)
            __m256i corr = _mm256_set1_epi32(xs[c][b]);
#pragma GCC unroll 4
            for (int k = 0; k < R; k++) {
                __m256i t = _mm256_madd_epi16(sl[k][c], ones);
                if (is_q4)
                    s[k][c] = _mm256_sub_epi32(t, corr);
                else
                    s[k][c] = _mm256_add_epi32(
                        t, _mm256_slli_epi32(
                               _mm256_sub_epi32(_mm256_madd_epi16(sh[k][c], ones), corr), 4));
            }
        }
#pragma GCC unroll 4
        for (int k = 0; k < R; k++) {
            __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g[k] + qo + qb)));
#pragma GCC unroll 8
            for (int c = 0; c < C; c++)
                acc[k][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(xd[c] + b)),
                                            _mm256_cvtepi32_ps(s[k][c]), acc[k][c]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; k++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            _mm256_storeu_ps(y + (i + (size_t)c) * ldy + yr[k], acc[k][c]);
    if (pf == PF_STREAM)
        *pfp = pq;
}

/*
 * Batched Q8_0, one packed group x C activation rows, by the sign trick:
 * w = u ^ 0x80 (the pack's unsigned byte back to signed), then per 4 elements
 * of the 8 rows maddubs(|w|, sign(x, w)) = pair sums of w·x (|w·x| pairs <=
 * 2*128*127 = 32512: no saturation), widened at once by madd with ones and
 * added in int32. No nibbles, no offset correction.
 */
static ALWAYS_INLINE void gks(const int C, const uint8_t *gp, size_t yr, size_t nb,
                              const kern_act *a, size_t i, float *y, size_t ldy,
                              const uint8_t *pf_end, const uint8_t **pfp, size_t pf_step)
{
    const uint8_t *pq = *pfp;
    const size_t qb = KERN_PACK_QB(0), bs = KERN_PACK_BS(qb);
    const __m256i ones = _mm256_set1_epi16(1), m80 = _mm256_set1_epi8((char)0x80);
    const int8_t *xq[8];
    const float *xd[8];
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        xq[c] = kern_act_qs(a, i + (size_t)c);
        xd[c] = kern_act_d(a, i + (size_t)c);
        acc[c] = _mm256_setzero_ps();
    }
    for (size_t b = 0; b < nb; b++) {
        const size_t qo = b * bs;
        stream_prefetch(&pq, pf_step, pf_end);
        __m256i si[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(gp + qo + 32 * j)), m80);
            __m256i aw = _mm256_abs_epi8(w);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                __m256i p = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(xq[c] + 32 * b + 4 * j), w)),
                    ones);
                si[c] = j == 0 ? p : _mm256_add_epi32(si[c], p);
                CHAIN(si[c]);
            }
        }
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gp + qo + qb)));
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(xd[c] + b)),
                                     _mm256_cvtepi32_ps(si[c]), acc[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        _mm256_storeu_ps(y + (i + (size_t)c) * ldy + yr, acc[c]);
    *pfp = pq;
}

/*
 * Decode (n = 1) over packed groups [g0, g1): MV_R SEQUENTIAL STREAMS. The
 * groups are cut into MV_R stretches and each pass computes one group of
 * every stretch, so each stream walks its stretch front to back (two fma
 * chains in flight, and the hardware prefetcher follows a few long streams);
 * software prefetch runs MV_PF_BYTES ahead in each (the hardware one alone
 * does not run far enough ahead to keep a core busy) and never past the
 * stretch's end. The first MV_PF_BYTES of every stretch are fetched up front.
 * 1-thread smollm-135m Q8_0 decode (bench-model -t 1, 3 alternated rounds on
 * a noisy machine): 3 streams 81 tok/s, 2 and 4 streams 74-75; prefetching
 * into L2 instead (T1), or 3 or 12 KiB ahead, no better.
 */
#define MV_PF_BYTES ((size_t)6144)

#define MV_R 3
static ALWAYS_INLINE void mv_groups(const kern_mat *w, size_t g0, size_t g1, const kern_act *a,
                                    float *y, const int is_q4)
{
    const size_t gb = w->pack_group_bytes, nb = w->cols / 32;
    const size_t q = (g1 - g0) / MV_R;
    const uint8_t *base = w->pack + g0 * gb;
    if (q > 0) {
        const uint8_t *g[MV_R], *end[MV_R];
        size_t yr[MV_R];
        size_t ahead = MV_PF_BYTES < q * gb ? MV_PF_BYTES : q * gb;
        for (int k = 0; k < MV_R; k++) {
            end[k] = base + ((size_t)k + 1) * q * gb;
            for (size_t o = 0; o < ahead; o += 64)
                _mm_prefetch((const char *)base + (size_t)k * q * gb + o, _MM_HINT_T0);
        }
        for (size_t t = 0; t < q; t++) {
            for (int k = 0; k < MV_R; k++) {
                g[k] = base + ((size_t)k * q + t) * gb;
                yr[k] = 8 * (g0 + (size_t)k * q + t);
            }
            gk(MV_R, 1, is_q4, PF_AHEAD, g, yr, nb, a, 0, y, 0, MV_PF_BYTES, end, NULL, 0);
        }
    }
    for (size_t t = g0 + MV_R * q; t < g1; t++) {
        const uint8_t *g[1] = {w->pack + t * gb}, *end[1] = {w->pack + g1 * gb};
        size_t yr[1] = {8 * t};
        gk(1, 1, is_q4, PF_AHEAD, g, yr, nb, a, 0, y, 0, MV_PF_BYTES, end, NULL, 0);
    }
}

/*
 * Batched (n >= 2) over packed groups [g0, g1). Blocking:
 *  - activation rows are taken A_BLOCK_BYTES at a time (L2-sized) and the
 *    weight groups pass over each block, so with long prompts the weights,
 *    not the activations, stream from L3/memory;
 *  - G_TILE groups form a tile that activation rows pass over G_C at a time
 *    (1 group x G_C micro-kernels), so the tile is re-read from L1/L2;
 *  - the weights are prefetched into L2 as one stream, ST_DIST bytes ahead of
 *    the tile being computed, spread evenly over all the passes of a tile
 *    (pf_step bytes per block of every pass). Prefetching the next tiles
 *    into L1 during the first pass only, as before, left the first pass
 *    waiting with few activation rows (batched decode: 4 passes at n = 16).
 *    With gk's shorter Q8_0 correction, 1.06-1.07x on the matmuls of a
 *    smollm-135m step at n = 16, one and two threads (bench/kern_pair.sh mm:
 *    the two kernels alternated step by step in one process). 8 or 32 KiB
 *    ahead, L1 instead of L2, 1 or 4 groups per tile: within +-2.5% of this.
 */
#define G_TILE 2
/* G_C 3: ~10% slower; 5, 6 and 2 groups x 2..3 rows: within noise (bench-kern -n 64). With
 * gks (fewer registers per row) 6 and 8 rows measured 0.99x and 0.97x, G_TILE 1 and 4 1.00x
 * and 0.98x (kern_pair, n = 16). */
#define G_C 4
#define A_BLOCK_BYTES ((size_t)192 << 10)
#define ST_DIST ((size_t)16 << 10)

static ALWAYS_INLINE void mm_tile(const int C, const int is_q4, const kern_mat *w, size_t gt,
                                  size_t ge, const kern_act *a, size_t i, float *y, size_t ldy,
                                  const uint8_t *const *end, const uint8_t **pfp, size_t pf_step)
{
    const size_t gb = w->pack_group_bytes, nb = w->cols / 32;
    if (!is_q4) {
        for (size_t t = gt; t < ge; t++)
            gks(C, w->pack + t * gb, 8 * t, nb, a, i, y, ldy, end[0], pfp, pf_step);
        return;
    }
    for (size_t t = gt; t < ge; t++) {
        const uint8_t *g[1] = {w->pack + t * gb};
        size_t yr[1] = {8 * t};
        gk(1, C, is_q4, PF_STREAM, g, yr, nb, a, i, y, ldy, 0, end, pfp, pf_step);
    }
}

static ALWAYS_INLINE void mm_groups(const kern_mat *w, size_t g0, size_t g1, const kern_act *a,
                                    size_t n, float *y, size_t ldy, const int is_q4)
{
    const size_t gb = w->pack_group_bytes;
    size_t mc = A_BLOCK_BYTES / a->q_stride / G_C * G_C;
    mc = mc < G_C ? G_C : mc;
    const uint8_t *first = w->pack + g0 * gb, *end[1] = {w->pack + g1 * gb};
    // the first ST_DIST bytes now: the stream runs that far ahead
    size_t ahead = ST_DIST < (size_t)(end[0] - first) ? ST_DIST : (size_t)(end[0] - first);
    for (size_t o = 0; o < ahead; o += 64)
        _mm_prefetch((const char *)first + o, _MM_HINT_T0);
    const uint8_t *pfp = first;
    for (size_t i0 = 0; i0 < n; i0 += mc) {
        size_t i1 = i0 + mc < n ? i0 + mc : n;
        size_t passes = (i1 - i0 + G_C - 1) / G_C;
        size_t pf_step = (KERN_PACK_BS(KERN_PACK_QB(is_q4)) + passes - 1) / passes;
        for (size_t gt = g0; gt < g1; gt += G_TILE) {
            size_t ge = gt + G_TILE < g1 ? gt + G_TILE : g1;
            const uint8_t *want = w->pack + gt * gb + ST_DIST; // never behind
            pfp = pfp < want ? want : pfp;
            for (size_t i = i0; i < i1; i += G_C) {
                switch (i1 - i < G_C ? i1 - i : G_C) {
                case 4:
                    mm_tile(4, is_q4, w, gt, ge, a, i, y, ldy, end, &pfp, pf_step);
                    break;
                case 3:
                    mm_tile(3, is_q4, w, gt, ge, a, i, y, ldy, end, &pfp, pf_step);
                    break;
                case 2:
                    mm_tile(2, is_q4, w, gt, ge, a, i, y, ldy, end, &pfp, pf_step);
                    break;
                default:
                    mm_tile(1, is_q4, w, gt, ge, a, i, y, ldy, end, &pfp, pf_step);
                    break;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ entry */

static ALWAYS_INLINE void mm_any(const kern_mat *w, size_t r0, size_t r1, const kern_act *a,
                                 size_t n, float *y, size_t ldy, const int is_q4)
{
    // whole packed groups inside [r0, r1); the rest row by row
    size_t g0 = (r0 + 7) / 8, g1 = r1 / 8;
    if (!w->pack || g1 > w->pack_groups)
        g1 = w->pack ? w->pack_groups : 0;
    if (g0 >= g1) {
        rows_plain(w, r0, r1, a, n, y, ldy, is_q4);
        return;
    }
    rows_plain(w, r0, 8 * g0, a, n, y, ldy, is_q4);
    if (n == 1)
        mv_groups(w, g0, g1, a, y, is_q4);
    else
        mm_groups(w, g0, g1, a, n, y, ldy, is_q4);
    rows_plain(w, 8 * g1, r1, a, n, y, ldy, is_q4);
}

void kern_q8_avx2_mm_q8_0(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                          float *y, size_t ldy)
{
    mm_any(w, r0, r1, a, n, y, ldy, 0);
}

void kern_q8_avx2_mm_q4_0(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,
                          float *y, size_t ldy)
{
    mm_any(w, r0, r1, a, n, y, ldy, 1);
}
