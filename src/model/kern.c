/*
 * model/kern — dispatch, the matmul driver, and the portable scalar reference.
 *
 * The scalar functions are the portable reference. They compute the same
 * integer block sums as the AVX2 ones (kern_avx2.c) and round their float
 * operations in the same order (kern_int.h's float order contract), so the
 * two paths give bitwise-equal results and FERRY_SIMD=scalar reproduces the
 * AVX2 path's tokens exactly.
 * This file is compiled with -ffp-contract=off (src/model/CMakeLists.txt) so
 * the reference never fuses multiply-adds behind our back.
 */
#include "model/kern.h"

#include <math.h>
#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/kern_gemm.h"
#include "model/kern_int.h"

/* ------------------------------------------------------------------ dispatch */

static _Atomic(const kern_impl *) g_impl;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* AVX2 + FMA + F16C, and the OS saves YMM state (cpuid + xgetbv; works with gcc and clang). */
static bool cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c))
        return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    if ((xlo & 6) != 6) /* XMM and YMM state enabled */
        return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return b & (1u << 5);
#else
    return false;
#endif
}

static void impl_choose(void)
{
    const char *env = getenv("FERRY_SIMD");
    const kern_impl *im = &kern_impl_scalar;
    if (!(env && strcmp(env, "scalar") == 0) && cpu_has_avx2())
        im = &kern_impl_avx2;
    atomic_store(&g_impl, im);
}

static const kern_impl *impl_get(void)
{
    const kern_impl *im = atomic_load_explicit(&g_impl, memory_order_acquire);
    if (LIKELY(im != NULL))
        return im;
    pthread_once(&g_once, impl_choose);
    return atomic_load(&g_impl);
}

const char *kern_simd_name(void)
{
    return impl_get()->name;
}

int kern_simd_set(const char *name)
{
    (void)impl_get();
    if (strcmp(name, "scalar") == 0) {
        atomic_store(&g_impl, &kern_impl_scalar);
        return 0;
    }
    if (strcmp(name, "avx2") == 0) {
        if (!cpu_has_avx2())
            return ERR_UNSUPPORTED;
        atomic_store(&g_impl, &kern_impl_avx2);
        return 0;
    }
    return ERR_INVAL;
}

/* ------------------------------------------------------------- matmul driver */

int kern_mat_init(kern_mat *m, tensor_type type, size_t rows, size_t cols, const void *data)
{
    if (!tensor_type_supported(type))
        return ERR_UNSUPPORTED;
    if (cols == 0)
        return ERR_FORMAT;
    size_t rb, total;
    int rc = tensor_row_bytes(type, cols, &rb);
    if (rc)
        return rc;
    if (!size_mul_ok(rb, rows, &total))
        return ERR_OVERFLOW;
    m->type = type;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = rb;
    m->data = data;
    m->pack = NULL;
    m->pack_groups = m->pack_group_bytes = m->pack_bytes = 0;
    return 0;
}

/* Group g's 8 rows of m into dst (kern_int.h's packed layout). */
static void pack_group(const kern_mat *m, size_t g, uint8_t *dst)
{
    const bool q4 = m->type == TENSOR_Q4_0;
    const size_t nb = m->cols / 32, bb = q4 ? 18 : 34, qb = KERN_PACK_QB(q4);
    const size_t bs = KERN_PACK_BS(qb);
    const uint32_t flip = q4 ? 0 : 0x80808080u; // Q8_0: u = w + 128 = w ^ 0x80, two nibbles
    for (size_t r = 0; r < 8; r++) {
        const uint8_t *row = (const uint8_t *)m->data + (8 * g + r) * m->row_bytes;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + b * bb;
            memcpy(dst + b * bs + qb + 2 * r, blk, 2);
            for (size_t k = 0; k < qb / 32; k++) {
                uint32_t v;
                memcpy(&v, blk + 2 + 4 * k, 4);
                v ^= flip;
                memcpy(dst + b * bs + 32 * k + 4 * r, &v, 4);
            }
        }
    }
}

int kern_mat_pack(kern_mat *m)
{
    if (m->pack || m->rows < 8 || (m->type != TENSOR_Q8_0 && m->type != TENSOR_Q4_0))
        return 0;
    const size_t nb = m->cols / 32, qb = KERN_PACK_QB(m->type == TENSOR_Q4_0);
    size_t groups = m->rows / 8, gbytes, total;
    if (!size_mul_ok(nb, KERN_PACK_BS(qb), &gbytes) || !size_add_ok(gbytes, 63, &gbytes))
        return ERR_OVERFLOW;
    gbytes &= ~(size_t)63; // each group 64-aligned
    if (!size_mul_ok(gbytes, groups, &total))
        return ERR_OVERFLOW;
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return ERR_NOMEM;
    (void)madvise(p, total, MADV_HUGEPAGE); // decode streams the whole copy: fewer TLB misses
    for (size_t g = 0; g < groups; g++)
        pack_group(m, g, (uint8_t *)p + g * gbytes);
    m->pack = p;
    m->pack_groups = groups;
    m->pack_group_bytes = gbytes;
    m->pack_bytes = total;
    return 0;
}

int kern_mat_unpack(kern_mat *m)
{
    if (!m->pack)
        return 0;
    munmap((void *)(uintptr_t)m->pack, m->pack_bytes);
    m->pack = NULL;
    m->pack_groups = m->pack_group_bytes = m->pack_bytes = 0;
    return 0;
}

/* Bytes of one quantized activation row, a multiple of 64; 0 for float types. */
static size_t act_stride(tensor_type t, size_t cols)
{
    size_t b;
    switch (t) {
    case TENSOR_Q8_0:
    case TENSOR_Q4_0:
        if (cols > SIZE_MAX / 3)
            return SIZE_MAX;
        b = kern_act_sb_offset(cols) + cols / 8; // + 1 int32 per 32-block
        break;
    case TENSOR_Q4_K:
    case TENSOR_Q6_K:
        b = cols + (cols / 256) * 4 + (cols / 16) * 2;
        break;
    default:
        return 0;
    }
    if (b > SIZE_MAX - 63)
        return SIZE_MAX;
    return (b + 63) & ~(size_t)63;
}

size_t kern_scratch_bytes(tensor_type t, size_t cols, size_t n)
{
    size_t s = act_stride(t, cols), total;
    if (s == 0)
        return 0;
    if (s == SIZE_MAX || !size_mul_ok(s, n, &total) || !size_add_ok(total, 64, &total))
        return SIZE_MAX;
    return total;
}

/* Activation formats: none (float weights), Q8 (32-blocks), Q8K (256-blocks). */
enum { ACT_F32, ACT_Q8, ACT_Q8K, ACT_N };

static int act_format(tensor_type t)
{
    switch (t) {
    case TENSOR_Q8_0:
    case TENSOR_Q4_0:
        return ACT_Q8;
    case TENSOR_Q4_K:
    case TENSOR_Q6_K:
        return ACT_Q8K;
    default:
        return ACT_F32;
    }
}

static kern_mm_fn mm_fn(const kern_impl *im, tensor_type t)
{
    switch (t) {
    case TENSOR_F32:
        return im->mm_f32;
    case TENSOR_F16:
        return im->mm_f16;
    case TENSOR_BF16:
        return im->mm_bf16;
    case TENSOR_Q8_0:
        return im->mm_q8_0;
    case TENSOR_Q4_0:
        return im->mm_q4_0;
    case TENSOR_Q4_K:
        return im->mm_q4_K;
    case TENSOR_Q6_K:
        return im->mm_q6_K;
    }
    return NULL;
}

/* One matmul_multi call: matrices laid end to end in one row space. */
typedef struct mm_job {
    const float *x;
    size_t n, cols;
    size_t n_mats;
    const kern_mat *w[KERN_MULTI_MAX];
    float *y[KERN_MULTI_MAX];
    kern_mm_fn mm[KERN_MULTI_MAX];
    kern_act act[KERN_MULTI_MAX];
    size_t row0[KERN_MULTI_MAX + 1]; // first row of matrix k in the joint row space
    kern_quant_fn quant;             // quant_rows: the format being quantized
    uint8_t *q;
    size_t q_stride;
} mm_job;

static void quant_rows(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    mm_job *j = arg;
    for (size_t i = begin; i < end; i++)
        j->quant(j->x + i * j->cols, j->q + i * j->q_stride, j->cols);
}

static void mm_rows(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    mm_job *j = arg;
    for (size_t k = 0; k < j->n_mats && begin < end; k++) {
        size_t lo = j->row0[k], hi = j->row0[k + 1];
        if (begin >= hi)
            continue;
        size_t e = end < hi ? end : hi;
        j->mm[k](j->w[k], begin - lo, e - lo, &j->act[k], j->n, j->y[k], j->w[k]->rows);
        begin = e;
    }
}

/* Weight rows per pool chunk are a multiple of this (keeps tiles whole). */
#define MM_ROW_GRAIN 16
/*
 * Least work of one pool chunk, in weight bytes times activation rows: 32 KiB
 * streams in about 3 us at a core's share of memory bandwidth, comfortably
 * more than a hand-off (~1 us). Smaller jobs (the K and V of a small model, a
 * tiny test model) run on fewer threads or on the caller alone.
 */
#define MM_CHUNK_WORK_MIN ((size_t)32 << 10)

size_t kern_scratch_bytes_multi(const kern_mat *const *w, size_t n_mats, size_t n)
{
    bool need[ACT_N] = {false};
    size_t cols = n_mats ? w[0]->cols : 0, total = 0;
    for (size_t k = 0; k < n_mats; k++)
        need[act_format(w[k]->type)] = true;
    static const tensor_type rep[ACT_N] = {TENSOR_F32, TENSOR_Q8_0, TENSOR_Q4_K};
    for (int f = ACT_Q8; f < ACT_N; f++) {
        if (!need[f])
            continue;
        size_t b = kern_scratch_bytes(rep[f], cols, n);
        if (b == SIZE_MAX || !size_add_ok(total, b, &total))
            return SIZE_MAX;
    }
    return total;
}

void kern_matmul_multi(pool *p, const kern_mat *const *w, float *const *y, size_t n_mats,
                       const float *x, size_t n, void *scratch, size_t scratch_bytes)
{
    const kern_impl *im = impl_get();
    ASSERT(n_mats >= 1 && n_mats <= KERN_MULTI_MAX);
    if (n == 0)
        return;
    // n >= 8 activation rows: the panel GEMM (kern_gemm.c), bitwise the same results
    if (kern_gemm_multi(im, p, w, y, n_mats, x, n, scratch, scratch_bytes))
        return;
    mm_job j = {.x = x, .n = n, .cols = w[0]->cols, .n_mats = n_mats};
    // quantize x once per activation format, each into its own slice of scratch
    uint8_t *qbase[ACT_N] = {NULL};
    size_t qstride[ACT_N] = {0};
    uint8_t *s = scratch;
    size_t left = scratch_bytes;
    for (size_t k = 0; k < n_mats; k++) {
        ASSERT(w[k]->cols == j.cols);
        int f = act_format(w[k]->type);
        if (f == ACT_F32 || qbase[f])
            continue;
        tensor_type rep = f == ACT_Q8 ? TENSOR_Q8_0 : TENSOR_Q4_K;
        size_t need = kern_scratch_bytes(rep, j.cols, n);
        ASSERT(s != NULL && need != SIZE_MAX && left >= need);
        qbase[f] = (uint8_t *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
        qstride[f] = act_stride(rep, j.cols);
        s += need;
        left -= need;
        j.quant = f == ACT_Q8 ? im->quant_q8 : im->quant_q8K;
        j.q = qbase[f];
        j.q_stride = qstride[f];
        // at least ~4k elements per chunk (~3 us): a single row is quicker to quantize
        // than to hand out, but a batched decode's 16 rows of 576 (~7 us alone,
        // ~120 times a step) are worth two threads
        pool_for_min(p, n, 1, ((size_t)4 << 10) / j.cols + 1, quant_rows, &j);
    }
    (void)left;
    j.row0[0] = 0;
    for (size_t k = 0; k < n_mats; k++) {
        int f = act_format(w[k]->type);
        j.w[k] = w[k];
        j.y[k] = y[k];
        j.mm[k] = mm_fn(im, w[k]->type);
        if (n == 1 && w[k]->type == TENSOR_Q4_K && im->mv_q4_K)
            j.mm[k] = im->mv_q4_K;
        ASSERT(j.mm[k] != NULL);
        j.act[k] = (kern_act){.x = x, .q = qbase[f], .q_stride = qstride[f], .cols = j.cols};
        j.row0[k + 1] = j.row0[k] + w[k]->rows;
    }
    if (j.row0[n_mats] == 0)
        return;
    size_t row_work = w[0]->row_bytes * n; // the rows of all n_mats are alike enough
    size_t min_rows = row_work ? MM_CHUNK_WORK_MIN / row_work + 1 : 1;
    pool_for_min(p, j.row0[n_mats], MM_ROW_GRAIN, min_rows, mm_rows, &j);
}

void kern_matmul(pool *p, const kern_mat *w, const float *x, size_t n, float *y, void *scratch,
                 size_t scratch_bytes)
{
    kern_matmul_multi(p, &w, &y, 1, x, n, scratch, scratch_bytes);
}

/* ---------------------------------------------------------------- helpers */

void kern_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    impl_get()->rmsnorm(y, x, w, n, eps);
}

void kern_softmax(float *x, size_t n)
{
    impl_get()->softmax(x, n);
}

void kern_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    impl_get()->swiglu(out, gate, up, n);
}

void kern_add(float *y, const float *a, const float *b, size_t n)
{
    impl_get()->add(y, a, b, n);
}

void kern_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    impl_get()->f32_to_f16(dst, src, n);
}

void kern_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    impl_get()->f16_to_f32(dst, src, n);
}

void kern_attn_scores(float *out, const float *q, const uint16_t *k, size_t k_stride,
                      size_t n_pos, size_t head_dim, float scale)
{
    impl_get()->attn_scores(out, q, k, k_stride, n_pos, head_dim, scale);
}

void kern_attn_accum(float *out, const float *w, const uint16_t *v, size_t v_stride,
                     size_t n_pos, size_t head_dim)
{
    impl_get()->attn_accum(out, w, v, v_stride, n_pos, head_dim);
}

/* RoPE is cheap next to attention and matmul: one scalar version for both paths. */
void kern_rope(float *x, size_t n_heads, size_t head_dim, size_t rot_dim, int64_t pos,
               float freq_base, float freq_scale, bool is_neox)
{
    ASSERT(rot_dim % 2 == 0 && rot_dim <= head_dim);
    size_t half = rot_dim / 2;
    for (size_t i = 0; i < half; i++) {
        double theta = (double)pos * (double)freq_scale *
                       pow((double)freq_base, -2.0 * (double)i / (double)rot_dim);
        float c = (float)cos(theta), s = (float)sin(theta);
        for (size_t h = 0; h < n_heads; h++) {
            float *v = x + h * head_dim;
            size_t a = is_neox ? i : 2 * i, b = is_neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

/* ======================================================== scalar reference */

static void s_quant_q8(const float *x, uint8_t *dst, size_t cols)
{
    int8_t *qs = (int8_t *)dst;
    float *d = (float *)(dst + cols);
    int32_t *sb = (int32_t *)(dst + kern_act_sb_offset(cols));
    for (size_t b = 0; b < cols / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int j = 0; j < 32; j++)
            qs[32 * b + j] = (int8_t)lrintf(xb[j] * id);
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += qs[32 * b + j];
        sb[b] = 8 * sum;
    }
}

static void s_quant_q8K(const float *x, uint8_t *dst, size_t cols)
{
    int8_t *qs = (int8_t *)dst;
    float *d = (float *)(dst + cols);
    int16_t *bs = (int16_t *)(dst + cols + (cols / 256) * 4);
    for (size_t b = 0; b < cols / 256; b++) {
        const float *xb = x + 256 * b;
        float amax = 0.0f;
        for (int j = 0; j < 256; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int j = 0; j < 256; j++)
            qs[256 * b + j] = (int8_t)lrintf(xb[j] * id);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += qs[256 * b + 16 * g + j];
            bs[16 * b + g] = (int16_t)s;
        }
    }
}

/*
 * The dot products below follow kern_int.h's float order contract: exact
 * integer sums (their own order is free), then fused multiply-adds in the
 * contract's order (Q8_0/Q4_0: one per block; Q4_K/Q6_K: one per lane and
 * block, then kern_hsum8). fmaf is correctly rounded, exactly like the AVX2
 * FMA instruction. The Q8_0/Q4_0 ones read the rows, never kern_mat_pack's
 * copy: the contract does not depend on the layout.
 */
static float s_dot_q8_0(const uint8_t *wrow, const int8_t *xq, const float *xd, size_t nb)
{
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        tensor_block_q8_0 blk;
        memcpy(&blk, wrow + b * sizeof blk, sizeof blk);
        const int8_t *x = xq + 32 * b;
        int s = 0;
        for (int e = 0; e < 32; e++)
            s += blk.qs[e] * x[e];
        acc = fmaf(tensor_f16_to_f32(blk.d) * xd[b], (float)s, acc);
    }
    return acc;
}

static float s_dot_q4_0(const uint8_t *wrow, const int8_t *xq, const float *xd, size_t nb)
{
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        tensor_block_q4_0 blk;
        memcpy(&blk, wrow + b * sizeof blk, sizeof blk);
        const int8_t *x = xq + 32 * b;
        int s = 0;
        for (int e = 0; e < 32; e++) {
            // element e < 16: low nibble of qs[e]; e >= 16: high nibble of qs[e-16]
            int q = e < 16 ? (blk.qs[e] & 0xf) : (blk.qs[e - 16] >> 4);
            s += (q - 8) * x[e];
        }
        acc = fmaf(tensor_f16_to_f32(blk.d) * xd[b], (float)s, acc);
    }
    return acc;
}

static float s_dot_q4_K(const uint8_t *wrow, const int8_t *xq, const float *xd,
                        const int16_t *bsums, size_t nb)
{
    float acc[8] = {0}, accm = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        tensor_block_q4_K blk;
        memcpy(&blk, wrow + b * sizeof blk, sizeof blk);
        const int8_t *x = xq + 256 * b;
        const int16_t *bs = bsums + 16 * b;
        uint8_t sc[8], mn[8];
        int summ = 0;
        for (int j = 0; j < 8; j++) {
            tensor_q4_K_scale_min(j, blk.scales, &sc[j], &mn[j]);
            summ += mn[j] * (bs[2 * j] + bs[2 * j + 1]);
        }
        int lane[8] = {0};
        for (int k = 0; k < 4; k++) {
            // sub-block 2k: low nibbles of qs[32k..], 2k+1: high nibbles
            const uint8_t *q = blk.qs + 32 * k;
            const int8_t *xl = x + 64 * k, *xh = xl + 32;
            for (int l = 0; l < 8; l++) {
                int slo = 0, shi = 0;
                for (int e = 4 * l; e < 4 * l + 4; e++) {
                    slo += (q[e] & 0xf) * xl[e];
                    shi += (q[e] >> 4) * xh[e];
                }
                lane[l] += sc[2 * k] * slo + sc[2 * k + 1] * shi;
            }
        }
        float dx = xd[b];
        float d = tensor_f16_to_f32(blk.d) * dx;
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(d, (float)lane[l], acc[l]);
        accm += tensor_f16_to_f32(blk.dmin) * dx * (float)summ;
    }
    return kern_hsum8(acc) - accm;
}

static float s_dot_q6_K(const uint8_t *wrow, const int8_t *xq, const float *xd,
                        const int16_t *bsums, size_t nb)
{
    float acc[8] = {0};
    for (size_t b = 0; b < nb; b++) {
        tensor_block_q6_K blk;
        memcpy(&blk, wrow + b * sizeof blk, sizeof blk);
        const int8_t *x = xq + 256 * b;
        const int16_t *bs = bsums + 16 * b;
        int lane[8] = {0};
        for (int h = 0; h < 2; h++) {
            for (int k = 0; k < 4; k++) {
                // chunk (h, k): 32 elements at x[128h + 32k], scales 8h+2k (first 16) and +1
                const int8_t *xc = x + 128 * h + 32 * k;
                for (int l = 0; l < 8; l++) {
                    int s = 0;
                    for (int e = 4 * l; e < 4 * l + 4; e++) {
                        uint8_t lo = blk.ql[64 * h + 32 * (k & 1) + e];
                        lo = (k & 2) ? (uint8_t)(lo >> 4) : (uint8_t)(lo & 0xf);
                        int q = lo | (((blk.qh[32 * h + e] >> (2 * k)) & 3) << 4);
                        s += q * xc[e];
                    }
                    lane[l] += blk.scales[8 * h + 2 * k + (l >= 4)] * s;
                }
            }
        }
        // the -32 offset of every value, through the 16-element activation sums
        float d = tensor_f16_to_f32(blk.d) * xd[b];
        for (int l = 0; l < 8; l++) {
            int corr = 32 * (bs[2 * l] * blk.scales[2 * l] + bs[2 * l + 1] * blk.scales[2 * l + 1]);
            acc[l] = fmaf(d, (float)(lane[l] - corr), acc[l]);
        }
    }
    return kern_hsum8(acc);
}

#define S_MM_QUANT(NAME, BLOCK, CALL)                                                            \
    static void NAME(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n,       \
                     float *y, size_t ldy)                                                        \
    {                                                                                             \
        size_t nb = w->cols / (BLOCK);                                                            \
        (void)nb;                                                                                 \
        for (size_t r = r0; r < r1; r++) {                                                        \
            const uint8_t *wrow = (const uint8_t *)w->data + r * w->row_bytes;                    \
            for (size_t i = 0; i < n; i++)                                                        \
                y[i * ldy + r] = CALL;                                                            \
        }                                                                                         \
    }

S_MM_QUANT(s_mm_q8_0, 32, s_dot_q8_0(wrow, kern_act_qs(a, i), kern_act_d(a, i), nb))
S_MM_QUANT(s_mm_q4_0, 32, s_dot_q4_0(wrow, kern_act_qs(a, i), kern_act_d(a, i), nb))
S_MM_QUANT(s_mm_q4_K, 256,
           s_dot_q4_K(wrow, kern_act_qs(a, i), kern_act_d(a, i), kern_act_bsums(a, i), nb))
S_MM_QUANT(s_mm_q6_K, 256,
           s_dot_q6_K(wrow, kern_act_qs(a, i), kern_act_d(a, i), kern_act_bsums(a, i), nb))

/* Float weights: the AVX2 tile_f order (kern_int.h). */
#define S_DOT_FLOAT(NAME, LOAD)                                                                  \
    static float NAME(const uint8_t *wrow, const float *x, size_t n)                             \
    {                                                                                            \
        float a0[8] = {0}, a1[8] = {0}, t[8];                                                    \
        size_t j = 0;                                                                            \
        for (; j + 16 <= n; j += 16)                                                             \
            for (int l = 0; l < 8; l++) {                                                        \
                a0[l] = fmaf(LOAD(wrow, j + l), x[j + l], a0[l]);                                \
                a1[l] = fmaf(LOAD(wrow, j + 8 + l), x[j + 8 + l], a1[l]);                        \
            }                                                                                    \
        for (; j + 8 <= n; j += 8)                                                               \
            for (int l = 0; l < 8; l++)                                                          \
                a0[l] = fmaf(LOAD(wrow, j + l), x[j + l], a0[l]);                                \
        for (int l = 0; l < 8; l++)                                                              \
            t[l] = a0[l] + a1[l];                                                                \
        float s = kern_hsum8(t);                                                                 \
        for (; j < n; j++)                                                                       \
            s += LOAD(wrow, j) * x[j];                                                           \
        return s;                                                                                \
    }

static inline float ld_f32(const uint8_t *row, size_t j)
{
    float v;
    memcpy(&v, row + 4 * j, 4);
    return v;
}

static inline float ld_f16(const uint8_t *row, size_t j)
{
    uint16_t h;
    memcpy(&h, row + 2 * j, 2);
    return tensor_f16_to_f32(h);
}

static inline float ld_bf16(const uint8_t *row, size_t j)
{
    uint16_t h;
    memcpy(&h, row + 2 * j, 2);
    return tensor_bf16_to_f32(h);
}

S_DOT_FLOAT(s_dot_f32, ld_f32)
S_DOT_FLOAT(s_dot_f16, ld_f16)
S_DOT_FLOAT(s_dot_bf16, ld_bf16)

S_MM_QUANT(s_mm_f32, 1, s_dot_f32(wrow, a->x + i * a->cols, a->cols))
S_MM_QUANT(s_mm_f16, 1, s_dot_f16(wrow, a->x + i * a->cols, a->cols))
S_MM_QUANT(s_mm_bf16, 1, s_dot_bf16(wrow, a->x + i * a->cols, a->cols))

/* Sum of x[i]*y[i] in the AVX2 order: 8 fma lanes over 8-steps, hsum8, then the tail. */
static float dot8_f32(const float *x, const float *y, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    float s = kern_hsum8(acc);
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

static void s_rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    float ss = dot8_f32(x, x, n);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * r * w[i];
}

static void s_softmax(float *x, size_t n)
{
    float mx = x[0];
    for (size_t i = 1; i < n; i++)
        mx = fmaxf(mx, x[i]);
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            x[i + l] = kern_exp_poly(x[i + l] - mx);
            acc[l] += x[i + l];
        }
    float sum = kern_hsum8(acc);
    for (; i < n; i++) {
        x[i] = kern_exp_poly(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (i = 0; i < n; i++)
        x[i] *= inv;
}

static void s_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + kern_exp_poly(-g)) * up[i];
    }
}

static void s_add(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static void s_f32_to_f16(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = tensor_f32_to_f16(src[i]);
}

static void s_f16_to_f32(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = tensor_f16_to_f32(src[i]);
}

static void s_attn_scores(float *out, const float *q, const uint16_t *k, size_t k_stride,
                          size_t n_pos, size_t head_dim, float scale)
{
    for (size_t t = 0; t < n_pos; t++) {
        const uint16_t *kt = k + t * k_stride;
        float acc[8] = {0};
        size_t d = 0;
        for (; d + 8 <= head_dim; d += 8)
            for (int l = 0; l < 8; l++)
                acc[l] = fmaf(q[d + l], tensor_f16_to_f32(kt[d + l]), acc[l]);
        float s = kern_hsum8(acc);
        for (; d < head_dim; d++)
            s += q[d] * tensor_f16_to_f32(kt[d]);
        out[t] = s * scale;
    }
}

/* Each out[d] is one fused multiply-add chain over t ascending, as in AVX2. */
static void s_attn_accum(float *out, const float *w, const uint16_t *v, size_t v_stride,
                         size_t n_pos, size_t head_dim)
{
    for (size_t d = 0; d < head_dim; d++)
        out[d] = 0.0f;
    for (size_t t = 0; t < n_pos; t++) {
        const uint16_t *vt = v + t * v_stride;
        float wt = w[t];
        for (size_t d = 0; d < head_dim; d++)
            out[d] = fmaf(wt, tensor_f16_to_f32(vt[d]), out[d]);
    }
}

const kern_impl kern_impl_scalar = {
    .name = "scalar",
    .mm_f32 = s_mm_f32,
    .mm_f16 = s_mm_f16,
    .mm_bf16 = s_mm_bf16,
    .mm_q8_0 = s_mm_q8_0,
    .mm_q4_0 = s_mm_q4_0,
    .mm_q4_K = s_mm_q4_K,
    .mm_q6_K = s_mm_q6_K,
    .quant_q8 = s_quant_q8,
    .quant_q8K = s_quant_q8K,
    .rmsnorm = s_rmsnorm,
    .softmax = s_softmax,
    .swiglu = s_swiglu,
    .add = s_add,
    .f32_to_f16 = s_f32_to_f16,
    .f16_to_f32 = s_f16_to_f32,
    .attn_scores = s_attn_scores,
    .attn_accum = s_attn_accum,
};
