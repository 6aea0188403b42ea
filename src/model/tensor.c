/*
 * model/tensor — type table, row sizes, reference (de)quantizers.
 * Layouts are described in tensor.h and docs/internals/kernels.md.
 */
#include "model/tensor.h"

#include <math.h>

typedef struct type_info {
    const char *name;
    uint16_t block_elems;
    uint16_t block_bytes;
} type_info;

/* Every GGML type id known today; ids 4, 5 and 31..33, 36..38 were removed upstream. */
static const type_info TYPES[] = {
    [0] = {"f32", 1, 4},
    [1] = {"f16", 1, 2},
    [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},
    [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},
    [9] = {"q8_1", 32, 36},
    [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},
    [12] = {"q4_K", 256, 144},
    [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},
    [15] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98},
    [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},
    [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136},
    [24] = {"i8", 1, 1},
    [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},
    [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},
    [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},
    [39] = {"mxfp4", 32, 17},
};

static const type_info *info_of(uint32_t t)
{
    if (t >= ARRAY_LEN(TYPES) || TYPES[t].name == NULL)
        return NULL;
    return &TYPES[t];
}

bool tensor_type_supported(uint32_t t)
{
    switch (t) {
    case TENSOR_F32:
    case TENSOR_F16:
    case TENSOR_Q4_0:
    case TENSOR_Q8_0:
    case TENSOR_Q4_K:
    case TENSOR_Q6_K:
    case TENSOR_BF16:
        return true;
    default:
        return false;
    }
}

const char *tensor_type_name(uint32_t t)
{
    const type_info *ti = info_of(t);
    return ti ? ti->name : "unknown";
}

size_t tensor_type_block_elems(tensor_type t)
{
    const type_info *ti = info_of((uint32_t)t);
    return ti ? ti->block_elems : 0;
}

size_t tensor_type_block_bytes(tensor_type t)
{
    const type_info *ti = info_of((uint32_t)t);
    return ti ? ti->block_bytes : 0;
}

int tensor_row_bytes(tensor_type t, uint64_t n_elems, size_t *out)
{
    const type_info *ti = info_of((uint32_t)t);
    if (!ti)
        return ERR_UNSUPPORTED;
    if (n_elems % ti->block_elems != 0)
        return ERR_FORMAT;
    uint64_t bytes;
    if (!u64_mul_ok(n_elems / ti->block_elems, ti->block_bytes, &bytes) || bytes > SIZE_MAX)
        return ERR_OVERFLOW;
    *out = (size_t)bytes;
    return 0;
}

/* ---------------------------------------------------------------- dequantize */

static void dequant_q8_0(const tensor_block_q8_0 *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = tensor_f16_to_f32(b[i].d);
        for (int j = 0; j < TENSOR_QK; j++)
            y[i * TENSOR_QK + j] = d * (float)b[i].qs[j];
    }
}

static void dequant_q4_0(const tensor_block_q4_0 *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = tensor_f16_to_f32(b[i].d);
        float *o = y + i * TENSOR_QK;
        for (int j = 0; j < TENSOR_QK / 2; j++) {
            o[j] = d * (float)((b[i].qs[j] & 0xf) - 8);
            o[j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_K(const tensor_block_q4_K *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = tensor_f16_to_f32(b[i].d);
        float dmin = tensor_f16_to_f32(b[i].dmin);
        float *o = y + i * TENSOR_QK_K;
        for (int c = 0; c < 4; c++) {
            uint8_t sc0, m0, sc1, m1;
            tensor_q4_K_scale_min(2 * c, b[i].scales, &sc0, &m0);
            tensor_q4_K_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
            float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
            const uint8_t *q = b[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                o[64 * c + l] = d0 * (float)(q[l] & 0xf) - mm0;
                o[64 * c + 32 + l] = d1 * (float)(q[l] >> 4) - mm1;
            }
        }
    }
}

/* The 6-bit quant (0..63) of element e (0..255) of a Q6_K block. */
static int q6_K_get(const tensor_block_q6_K *b, int e)
{
    int h = e / 128, k = (e % 128) / 32, l = e % 32;
    uint8_t lo = b->ql[64 * h + 32 * (k & 1) + l];
    lo = (k & 2) ? (uint8_t)(lo >> 4) : (uint8_t)(lo & 0xf);
    int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return lo | (hi << 4);
}

static void dequant_q6_K(const tensor_block_q6_K *b, float *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        float d = tensor_f16_to_f32(b[i].d);
        float *o = y + i * TENSOR_QK_K;
        for (int e = 0; e < TENSOR_QK_K; e++)
            o[e] = d * (float)b[i].scales[e / 16] * (float)(q6_K_get(&b[i], e) - 32);
    }
}

void tensor_dequantize_row(tensor_type t, const void *src, float *dst, size_t n)
{
    ASSERT(tensor_type_supported(t));
    ASSERT(n % tensor_type_block_elems(t) == 0);
    switch (t) {
    case TENSOR_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case TENSOR_F16: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = tensor_f16_to_f32(h);
        }
        break;
    }
    case TENSOR_BF16: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = tensor_bf16_to_f32(h);
        }
        break;
    }
    /* Quantized rows: blocks are byte-aligned structs; copy through a local
     * block when src is misaligned so no unaligned struct access happens. */
    case TENSOR_Q8_0:
    case TENSOR_Q4_0:
    case TENSOR_Q4_K:
    case TENSOR_Q6_K: {
        size_t be = tensor_type_block_elems(t), bb = tensor_type_block_bytes(t);
        size_t nb = n / be;
        const uint8_t *s = src;
        for (size_t i = 0; i < nb; i++) {
            union {
                tensor_block_q8_0 q8;
                tensor_block_q4_0 q4;
                tensor_block_q4_K q4k;
                tensor_block_q6_K q6k;
            } blk;
            memcpy(&blk, s + i * bb, bb);
            float *o = dst + i * be;
            if (t == TENSOR_Q8_0)
                dequant_q8_0(&blk.q8, o, 1);
            else if (t == TENSOR_Q4_0)
                dequant_q4_0(&blk.q4, o, 1);
            else if (t == TENSOR_Q4_K)
                dequant_q4_K(&blk.q4k, o, 1);
            else
                dequant_q6_K(&blk.q6k, o, 1);
        }
        break;
    }
    }
}

/* ------------------------------------------------------------------ quantize */

static int nearest(float x)
{
    return (int)lrintf(x);
}

static void quant_q8_0(const float *x, tensor_block_q8_0 *b)
{
    float amax = 0.0f;
    for (int j = 0; j < TENSOR_QK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = tensor_f32_to_f16(d);
    for (int j = 0; j < TENSOR_QK; j++)
        b->qs[j] = (int8_t)nearest(x[j] * id);
}

static void quant_q4_0(const float *x, tensor_block_q4_0 *b)
{
    /* The signed value of largest magnitude maps to -8, so the other side
     * reaches at most +7 (after clamping): ggml's convention. */
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < TENSOR_QK; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            vmax = x[j];
        }
    }
    float d = vmax / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = tensor_f32_to_f16(d);
    for (int j = 0; j < TENSOR_QK / 2; j++) {
        int q0 = (int)(x[j] * id + 8.5f);
        int q1 = (int)(x[j + 16] * id + 8.5f);
        q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
        q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/*
 * Fits x[0..n) ≈ scale*q - min with q in [0, nmax], scale >= 0, min >= 0 (the
 * affine form of Q4_K sub-blocks). Tries a few grid scales around the plain
 * range/nmax one and keeps the least-squares refit with the smallest error.
 */
static void fit_affine(const float *x, int n, int nmax, float *scale_out, float *min_out)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (lo > 0.0f)
        lo = 0.0f;
    if (hi <= lo) {
        *scale_out = 0.0f;
        *min_out = -lo;
        return;
    }
    float best_scale = (hi - lo) / (float)nmax, best_min = -lo, best_err = INFINITY;
    for (int step = -6; step <= 6; step++) {
        float iscale = ((float)nmax + 0.1f * (float)step) / (hi - lo);
        /* assign levels, then least-squares (scale, offset) for those levels */
        float sl = 0, sl2 = 0, sx = 0, slx = 0;
        int lv[TENSOR_QK_K];
        for (int i = 0; i < n; i++) {
            int l = nearest(iscale * (x[i] - lo));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            lv[i] = l;
            sl += (float)l;
            sl2 += (float)(l * l);
            sx += x[i];
            slx += (float)l * x[i];
        }
        float det = (float)n * sl2 - sl * sl;
        float s, off;
        if (det > 0.0f) {
            s = ((float)n * slx - sl * sx) / det;
            off = (sl2 * sx - sl * slx) / det;
        } else {
            s = 1.0f / iscale;
            off = lo;
        }
        if (off > 0.0f) { /* min must be >= 0: refit scale with offset 0 */
            off = 0.0f;
            s = sl2 > 0.0f ? slx / sl2 : 0.0f;
        }
        if (s < 0.0f)
            continue;
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = s * (float)lv[i] + off - x[i];
            err += diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best_scale = s;
            best_min = -off;
        }
    }
    *scale_out = best_scale;
    *min_out = best_min;
}

static void quant_q4_K(const float *x, tensor_block_q4_K *b)
{
    float sc[8], mn[8], max_sc = 0.0f, max_mn = 0.0f;
    for (int j = 0; j < 8; j++) {
        fit_affine(x + 32 * j, 32, 15, &sc[j], &mn[j]);
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    float d = max_sc / 63.0f, dmin = max_mn / 63.0f;
    b->d = tensor_f32_to_f16(d);
    b->dmin = tensor_f32_to_f16(dmin);
    float id = d > 0.0f ? 1.0f / d : 0.0f, idmin = dmin > 0.0f ? 1.0f / dmin : 0.0f;
    uint8_t qsc[8], qmn[8];
    for (int j = 0; j < 8; j++) {
        int a = nearest(sc[j] * id), m = nearest(mn[j] * idmin);
        qsc[j] = (uint8_t)(a > 63 ? 63 : a < 0 ? 0 : a);
        qmn[j] = (uint8_t)(m > 63 ? 63 : m < 0 ? 0 : m);
    }
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            b->scales[j] = qsc[j];
            b->scales[j + 4] = qmn[j];
        } else {
            b->scales[j + 4] = (uint8_t)((qsc[j] & 0xf) | ((qmn[j] & 0xf) << 4));
            b->scales[j - 4] |= (uint8_t)((qsc[j] >> 4) << 6);
            b->scales[j] |= (uint8_t)((qmn[j] >> 4) << 6);
        }
    }
    /* Requantize against the scales the decoder will actually see. */
    float df = tensor_f16_to_f32(b->d), dminf = tensor_f16_to_f32(b->dmin);
    uint8_t q[TENSOR_QK_K];
    for (int j = 0; j < 8; j++) {
        uint8_t s6, m6;
        tensor_q4_K_scale_min(j, b->scales, &s6, &m6);
        float ds = df * s6, dm = dminf * m6;
        for (int l = 0; l < 32; l++) {
            int v = ds > 0.0f ? nearest((x[32 * j + l] + dm) / ds) : 0;
            q[32 * j + l] = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
        }
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

/*
 * Symmetric fit of x[0..16) ≈ scale*q, q in [-32, 31]: the value of largest
 * magnitude maps to -32 (ggml's sign convention); a few nearby scales are
 * tried and the least-squares refit with the smallest error is kept.
 */
static float fit_symmetric(const float *x, int n)
{
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    }
    if (amax == 0.0f)
        return 0.0f;
    float best = vmax / -32.0f, best_err = INFINITY;
    for (int step = -5; step <= 5; step++) {
        float iscale = -(32.0f + 0.1f * (float)step) / vmax;
        float slx = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest(iscale * x[i]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            slx += (float)l * x[i];
            sl2 += (float)(l * l);
        }
        if (sl2 <= 0.0f)
            continue;
        float s = slx / sl2, err = 0;
        for (int i = 0; i < n; i++) {
            float r = s != 0.0f ? x[i] / s : 0.0f;
            int l = nearest(r);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            float diff = s * (float)l - x[i];
            err += diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best = s;
        }
    }
    return best;
}

static void quant_q6_K(const float *x, tensor_block_q6_K *b)
{
    float sc[16], max_sc = 0.0f, amax_sc = 0.0f;
    for (int s = 0; s < 16; s++) {
        sc[s] = fit_symmetric(x + 16 * s, 16);
        if (fabsf(sc[s]) > amax_sc) {
            amax_sc = fabsf(sc[s]);
            max_sc = sc[s];
        }
    }
    uint8_t q[TENSOR_QK_K];
    if (amax_sc == 0.0f) {
        memset(b, 0, sizeof *b);
        memset(q, 32, sizeof q);
    } else {
        float iscale = -128.0f / max_sc;
        b->d = tensor_f32_to_f16(1.0f / iscale);
        for (int s = 0; s < 16; s++) {
            int v = nearest(iscale * sc[s]);
            b->scales[s] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
        }
        float df = tensor_f16_to_f32(b->d);
        for (int s = 0; s < 16; s++) {
            float ds = df * (float)b->scales[s];
            for (int l = 0; l < 16; l++) {
                int v = ds != 0.0f ? nearest(x[16 * s + l] / ds) : 0;
                v = v < -32 ? -32 : v > 31 ? 31 : v;
                q[16 * s + l] = (uint8_t)(v + 32);
            }
        }
    }
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = q + 128 * h + l;
            uint8_t q1 = p[0], q2 = p[32], q3 = p[64], q4 = p[96];
            b->ql[64 * h + l] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
            b->ql[64 * h + 32 + l] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
            b->qh[32 * h + l] =
                (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

void tensor_quantize_row(tensor_type t, const float *src, void *dst, size_t n)
{
    ASSERT(tensor_type_supported(t));
    ASSERT(n % tensor_type_block_elems(t) == 0);
    uint8_t *d = dst;
    switch (t) {
    case TENSOR_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case TENSOR_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = tensor_f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case TENSOR_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = tensor_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case TENSOR_Q8_0:
    case TENSOR_Q4_0:
    case TENSOR_Q4_K:
    case TENSOR_Q6_K: {
        size_t be = tensor_type_block_elems(t), bb = tensor_type_block_bytes(t);
        for (size_t i = 0; i < n / be; i++) {
            union {
                tensor_block_q8_0 q8;
                tensor_block_q4_0 q4;
                tensor_block_q4_K q4k;
                tensor_block_q6_K q6k;
            } blk;
            const float *x = src + i * be;
            if (t == TENSOR_Q8_0)
                quant_q8_0(x, &blk.q8);
            else if (t == TENSOR_Q4_0)
                quant_q4_0(x, &blk.q4);
            else if (t == TENSOR_Q4_K)
                quant_q4_K(x, &blk.q4k);
            else
                quant_q6_K(x, &blk.q6k);
            memcpy(d + i * bb, &blk, bb);
        }
        break;
    }
    }
}
