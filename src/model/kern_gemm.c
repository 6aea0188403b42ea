/*
 * model/kern_gemm — the n >= 8 matmul driver (panel packing, work split) and
 * the portable scalar panel kernels (see kern_gemm.h for the panel layout and
 * the batch-invariance argument).
 *
 * The scalar kernels decode each weight block once for the 8 rows of a panel
 * and then run, per (weight row, activation row) pair, the float operations of
 * kern_int.h's order contract in the same order as kern.c's s_dot_* and as
 * kern_gemm_avx2.c's vector lanes. This file is compiled with
 * -ffp-contract=off (src/model/CMakeLists.txt): fmaf is the only fusion.
 */
#include "model/kern_gemm.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ panel packing */

/* Quantizer scratch for one block (kern_int.h's row layout with cols = 32 or 256). */
#define QTMP_BYTES 320

/* Row r (< 8) of a Q8K panel: each 256-block is quantized by the implementation's
 * own quantizer (the quants of kern.c's layout, bit for bit) and scattered into
 * the interleaved places. */
static void pack_q8K(kern_quant_fn quant, const float *x, size_t cols, uint8_t *panel, size_t r)
{
    _Alignas(64) uint8_t tmp[QTMP_BYTES];
    for (size_t b = 0; b < cols / 256; b++) {
        quant(x + 256 * b, tmp, 256);
        uint8_t *pb = panel + b * KERN_GEMM_Q8K_BLOCK;
        for (size_t c = 0; c < 8; c++) {
            for (size_t l = 0; l < 8; l++)
                memcpy(pb + c * 256 + (l * 8 + r) * 4, tmp + 32 * c + 4 * l, 4);
            // bsums 2c and 2c+1 (int16 each) at 256 + 4 bytes of d
            memcpy(pb + KERN_GEMM_Q8K_BS + (c * 8 + r) * 4, tmp + 260 + 4 * c, 4);
        }
        memcpy(pb + KERN_GEMM_Q8K_D + 4 * r, tmp + 256, 4);
    }
}

/* ----------------------------------------------------------------- driver */

enum { FMT_F32, FMT_Q8, FMT_Q8K, FMT_N };

typedef struct gemm_job {
    const float *x;
    size_t n, cols, n_mats;
    size_t n_panels[KERN_MULTI_MAX];      // full panels of matrix k: rows [0, 8*n_panels)
    const kern_mat *w[KERN_MULTI_MAX];
    float *y[KERN_MULTI_MAX];
    kern_gemm_fn gemm[KERN_MULTI_MAX];    // NULL for float weights
    kern_mm_fn mm[KERN_MULTI_MAX];        // the matvec tiles: tail rows, float weights
    kern_act act[KERN_MULTI_MAX];         // tail rows (quantized) or all rows (float)
    const uint8_t *panel[KERN_MULTI_MAX]; // panel 0 of the matrix's format
    size_t pstride[KERN_MULTI_MAX];       // bytes between panels (8 row strides)
    size_t row0[KERN_MULTI_MAX + 1];      // first row of matrix k in the joint row space
    // the quantization pass of one format
    kern_quant_fn quant;
    int fmt;
    size_t q_panels; // rows [0, 8*q_panels) go into panels, the rest keep kern.c's layout
    uint8_t *q;
    size_t q_stride;
} gemm_job;

static void quant_rows(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    gemm_job *j = arg;
    size_t full = j->q_panels * KERN_GEMM_COLS;
    for (size_t i = begin; i < end; i++) {
        const float *xr = j->x + i * j->cols;
        if (i >= full) { // a tail row keeps kern.c's row layout, at its own row stride
            j->quant(xr, j->q + i * j->q_stride, j->cols);
            continue;
        }
        uint8_t *panel = j->q + (i / KERN_GEMM_COLS) * KERN_GEMM_COLS * j->q_stride;
        ASSERT(j->fmt == FMT_Q8K); // no Q8 panel kernels (kern_gemm_impl)
        pack_q8K(j->quant, xr, j->cols, panel, i % KERN_GEMM_COLS);
    }
}

/*
 * Weight rows per pass over the panels: their bytes stay in L2 while every
 * panel streams past them once (kern_gemm_avx2.c blocks over K inside it).
 */
#define GEMM_ROW_BLOCK 32

static void mm_rows(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    gemm_job *j = arg;
    for (size_t k = 0; k < j->n_mats && begin < end; k++) {
        size_t lo = j->row0[k], hi = j->row0[k + 1];
        if (begin >= hi)
            continue;
        size_t e = end < hi ? end : hi;
        size_t a = begin - lo, b = e - lo, ldy = j->w[k]->rows;
        size_t full = j->n_panels[k] * KERN_GEMM_COLS;
        begin = e;
        for (size_t rb = a; full && rb < b; rb += GEMM_ROW_BLOCK) {
            size_t re = rb + GEMM_ROW_BLOCK < b ? rb + GEMM_ROW_BLOCK : b;
            for (size_t g = 0; g < j->n_panels[k]; g++)
                j->gemm[k](j->w[k], rb, re, j->panel[k] + g * j->pstride[k],
                           j->y[k] + g * KERN_GEMM_COLS * ldy, ldy);
        }
        if (j->n > full)
            j->mm[k](j->w[k], a, b, &j->act[k], j->n - full, j->y[k] + full * ldy, ldy);
    }
}

static int fmt_of(tensor_type t)
{
    switch (t) {
    case TENSOR_Q8_0:
    case TENSOR_Q4_0:
        return FMT_Q8;
    case TENSOR_Q4_K:
    case TENSOR_Q6_K:
        return FMT_Q8K;
    default:
        return FMT_F32;
    }
}

static void pick(const kern_impl *im, const kern_gemm_impl *gi, tensor_type t, kern_mm_fn *mm,
                 kern_gemm_fn *gemm)
{
    *gemm = NULL;
    switch (t) {
    case TENSOR_F32:
        *mm = im->mm_f32;
        break;
    case TENSOR_F16:
        *mm = im->mm_f16;
        break;
    case TENSOR_BF16:
        *mm = im->mm_bf16;
        break;
    case TENSOR_Q8_0:
        *mm = im->mm_q8_0;
        break;
    case TENSOR_Q4_0:
        *mm = im->mm_q4_0;
        break;
    case TENSOR_Q4_K:
        *mm = im->mm_q4_K;
        *gemm = gi->q4_K;
        break;
    case TENSOR_Q6_K:
        *mm = im->mm_q6_K;
        *gemm = gi->q6_K;
        break;
    }
}

/* Weight rows per pool chunk are a multiple of this (as kern.c's matvec split). */
#define GEMM_ROW_GRAIN 16
/*
 * Least work of one pool chunk, in weight bytes times activation rows, as
 * kern.c's MM_CHUNK_WORK_MIN: a batch of a small model (its K and V, a tiny
 * test model) is not cut finer than a hand-off is worth.
 */
#define GEMM_CHUNK_WORK_MIN ((size_t)32 << 10)

static size_t gemm_rows_min(const kern_mat *w0, size_t n)
{
    size_t work = w0->row_bytes * n; // the rows of all matrices are alike enough
    return work ? GEMM_CHUNK_WORK_MIN / work + 1 : 1;
}

bool kern_gemm_multi(const kern_impl *im, pool *p, const kern_mat *const *w, float *const *y,
                     size_t n_mats, const float *x, size_t n, void *scratch,
                     size_t scratch_bytes)
{
    if (n < KERN_GEMM_COLS)
        return false;
    const kern_gemm_impl *gi = im == &kern_impl_avx2 ? &kern_gemm_avx2 : &kern_gemm_scalar;
    gemm_job j = {.x = x, .n = n, .cols = w[0]->cols, .n_mats = n_mats};
    // a format is packed into panels only when every matrix using it has a panel kernel
    bool panels[FMT_N] = {false, true, true};
    for (size_t k = 0; k < n_mats; k++) {
        kern_mm_fn mm;
        kern_gemm_fn g;
        pick(im, gi, w[k]->type, &mm, &g);
        if (!g)
            panels[fmt_of(w[k]->type)] = false;
    }
    // one slice of scratch per activation format, in order of first use (as kern.c)
    uint8_t *qbase[FMT_N] = {NULL};
    size_t qstride[FMT_N] = {0};
    uint8_t *s = scratch;
    size_t left = scratch_bytes;
    for (size_t k = 0; k < n_mats; k++) {
        ASSERT(w[k]->cols == j.cols);
        int f = fmt_of(w[k]->type);
        if (f == FMT_F32 || qbase[f])
            continue;
        tensor_type rep = f == FMT_Q8 ? TENSOR_Q8_0 : TENSOR_Q4_K;
        size_t need = kern_scratch_bytes(rep, j.cols, n);
        ASSERT(s != NULL && need != SIZE_MAX && left >= need);
        qbase[f] = (uint8_t *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
        // kern.c's row stride: the size for one row less its alignment slack
        qstride[f] = kern_scratch_bytes(rep, j.cols, 1) - 64;
        s += need;
        left -= need;
        j.fmt = f;
        j.quant = f == FMT_Q8 ? im->quant_q8 : im->quant_q8K;
        j.q = qbase[f];
        j.q_stride = qstride[f];
        j.q_panels = panels[f] ? n / KERN_GEMM_COLS : 0;
        // whole panels per chunk, and at least ~16k elements (a hand-off costs more)
        pool_for_min(p, n, KERN_GEMM_COLS, ((size_t)16 << 10) / j.cols + 1, quant_rows, &j);
    }
    j.row0[0] = 0;
    for (size_t k = 0; k < n_mats; k++) {
        int f = fmt_of(w[k]->type);
        j.w[k] = w[k];
        j.y[k] = y[k];
        pick(im, gi, w[k]->type, &j.mm[k], &j.gemm[k]);
        ASSERT(j.mm[k] != NULL);
        j.n_panels[k] = panels[f] ? n / KERN_GEMM_COLS : 0;
        size_t full = j.n_panels[k] * KERN_GEMM_COLS;
        if (f == FMT_F32) {
            j.act[k] = (kern_act){.x = x, .cols = j.cols};
        } else {
            j.panel[k] = qbase[f];
            j.pstride[k] = KERN_GEMM_COLS * qstride[f];
            j.act[k] = (kern_act){.x = x + full * j.cols, .q = qbase[f] + full * qstride[f],
                                  .q_stride = qstride[f], .cols = j.cols};
        }
        j.row0[k + 1] = j.row0[k] + w[k]->rows;
    }
    if (j.row0[n_mats] > 0)
        pool_for_min(p, j.row0[n_mats], GEMM_ROW_GRAIN, gemm_rows_min(w[0], n), mm_rows, &j);
    return true;
}

/* ========================================================= scalar kernels */

/* Stores the 8 results of a pair row: the hsum8 tree of each pair's lanes. */
static void store8(float acc[8][8], const float *sub, float *y, size_t ldy, size_t r)
{
    for (size_t c = 0; c < 8; c++) {
        float a[8];
        for (int l = 0; l < 8; l++)
            a[l] = acc[l][c];
        float v = kern_hsum8(a);
        y[c * ldy + r] = sub ? v - sub[c] : v;
    }
}

/* The panel's 16-element sums of chunk c, row r: bs[2c] and bs[2c+1]. */
static void bs_pair(const uint8_t *pb, size_t c, size_t r, int16_t out[2])
{
    memcpy(out, pb + KERN_GEMM_Q8K_BS + (c * 8 + r) * 4, 4);
}

static void s_gemm_q4_K(const kern_mat *w, size_t r0, size_t r1, const uint8_t *panel, float *y,
                        size_t ldy)
{
    const size_t nb = w->cols / 256;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        float acc[8][8] = {{0}}, accm[8] = {0};
        for (size_t b = 0; b < nb; b++) {
            tensor_block_q4_K blk;
            memcpy(&blk, row + b * sizeof blk, sizeof blk);
            const uint8_t *pb = panel + b * KERN_GEMM_Q8K_BLOCK;
            uint8_t sc[8], mn[8], q[256];
            for (int jj = 0; jj < 8; jj++)
                tensor_q4_K_scale_min(jj, blk.scales, &sc[jj], &mn[jj]);
            for (int k = 0; k < 4; k++) // chunk 2k: low nibbles of qs[32k..], 2k+1: high
                for (int e = 0; e < 32; e++) {
                    q[64 * k + e] = blk.qs[32 * k + e] & 0xf;
                    q[64 * k + 32 + e] = blk.qs[32 * k + e] >> 4;
                }
            float dd = tensor_f16_to_f32(blk.d), dmin = tensor_f16_to_f32(blk.dmin);
            for (size_t c = 0; c < 8; c++) {
                int lane[8] = {0}, summ = 0;
                for (size_t ch = 0; ch < 8; ch++) {
                    int16_t bs[2];
                    bs_pair(pb, ch, c, bs);
                    summ += mn[ch] * (bs[0] + bs[1]);
                    for (size_t l = 0; l < 8; l++) {
                        const int8_t *xq = (const int8_t *)pb + ch * 256 + (l * 8 + c) * 4;
                        int s = 0;
                        for (int e = 0; e < 4; e++)
                            s += q[32 * ch + 4 * l + (size_t)e] * xq[e];
                        lane[l] += sc[ch] * s;
                    }
                }
                float dx;
                memcpy(&dx, pb + KERN_GEMM_Q8K_D + 4 * c, 4);
                float d = dd * dx;
                for (int l = 0; l < 8; l++)
                    acc[l][c] = fmaf(d, (float)lane[l], acc[l][c]);
                accm[c] += dmin * dx * (float)summ;
            }
        }
        store8(acc, accm, y, ldy, r);
    }
}

static void s_gemm_q6_K(const kern_mat *w, size_t r0, size_t r1, const uint8_t *panel, float *y,
                        size_t ldy)
{
    const size_t nb = w->cols / 256;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
        float acc[8][8] = {{0}};
        for (size_t b = 0; b < nb; b++) {
            tensor_block_q6_K blk;
            memcpy(&blk, row + b * sizeof blk, sizeof blk);
            const uint8_t *pb = panel + b * KERN_GEMM_Q8K_BLOCK;
            uint8_t q[256];
            for (int h = 0; h < 2; h++) // element 128h + 32k + e, as kern.c's s_dot_q6_K
                for (int k = 0; k < 4; k++)
                    for (int e = 0; e < 32; e++) {
                        uint8_t lo = blk.ql[64 * h + 32 * (k & 1) + e];
                        lo = (k & 2) ? (uint8_t)(lo >> 4) : (uint8_t)(lo & 0xf);
                        q[128 * h + 32 * k + e] =
                            (uint8_t)(lo | (((blk.qh[32 * h + e] >> (2 * k)) & 3) << 4));
                    }
            float dd = tensor_f16_to_f32(blk.d);
            for (size_t c = 0; c < 8; c++) {
                int lane[8] = {0};
                for (size_t ch = 0; ch < 8; ch++) // chunk ch = 4h + k, scales 2ch and 2ch+1
                    for (size_t l = 0; l < 8; l++) {
                        const int8_t *xq = (const int8_t *)pb + ch * 256 + (l * 8 + c) * 4;
                        int s = 0;
                        for (int e = 0; e < 4; e++)
                            s += q[32 * ch + 4 * l + (size_t)e] * xq[e];
                        lane[l] += blk.scales[2 * ch + (l >= 4)] * s;
                    }
                float dx;
                memcpy(&dx, pb + KERN_GEMM_Q8K_D + 4 * c, 4);
                float d = dd * dx;
                for (size_t l = 0; l < 8; l++) {
                    int16_t bs[2];
                    bs_pair(pb, l, c, bs);
                    int corr = 32 * (bs[0] * blk.scales[2 * l] + bs[1] * blk.scales[2 * l + 1]);
                    acc[l][c] = fmaf(d, (float)(lane[l] - corr), acc[l][c]);
                }
            }
        }
        store8(acc, NULL, y, ldy, r);
    }
}

const kern_gemm_impl kern_gemm_scalar = {
    .q4_K = s_gemm_q4_K,
    .q6_K = s_gemm_q6_K,
};
