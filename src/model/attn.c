/*
 * model/attn — grouped-query attention over a paged F16/Q8_0 KV cache: the
 * dispatch and the scalar path (the reference the AVX2 path is tested
 * against). See attn.h for the layout, the formula and the numerics.
 */
#include "model/attn.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "model/attn_int.h"
#include "model/kern.h"
#include "model/kern_int.h"
#include "model/tensor.h"

size_t attn_scratch_floats(size_t n_q, size_t n_pos_max, size_t head_dim)
{
    return n_q * (n_pos_max + head_dim); // scores (n_q, n_pos) + partial sums (n_q, head_dim)
}

/* Element e of a row: the f16 value, or the Q8_0 value d * q rounded to f16
 * (what staging a Q8_0 row into an f16 buffer gave). */
static inline float kv_elem(bool is_q8, const uint8_t *row, size_t e)
{
    if (!is_q8) {
        uint16_t h;
        memcpy(&h, row + e * sizeof h, sizeof h);
        return tensor_f16_to_f32(h);
    }
    const uint8_t *b = row + e / TENSOR_QK * sizeof(tensor_block_q8_0);
    uint16_t dh;
    memcpy(&dh, b, sizeof dh);
    float d = tensor_f16_to_f32(dh);
    int8_t qv = (int8_t)b[sizeof dh + e % TENSOR_QK];
    return tensor_f16_to_f32(tensor_f32_to_f16(d * (float)qv));
}

/* sc (n_q, n_pos) = scale * q_h · k_j, as kern_impl_scalar's attn_scores. */
static void scores_scalar(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                          size_t hd, const float *q, size_t n_q, float scale, float *sc)
{
    attn_rows it;
    attn_rows_init(&it, kv, kv->k, blocks, 0);
    for (size_t j = 0; j < n_pos; j++) {
        if (j)
            attn_rows_next(&it);
        for (size_t h = 0; h < n_q; h++) {
            const float *qh = q + h * hd;
            float acc[8] = {0};
            size_t d = 0;
            for (; d + 8 <= hd; d += 8)
                for (int l = 0; l < 8; l++)
                    acc[l] = fmaf(qh[d + l], kv_elem(kv->is_q8, it.row, off + d + l), acc[l]);
            float s = kern_hsum8(acc);
            for (; d < hd; d++)
                s += qh[d] * kv_elem(kv->is_q8, it.row, off + d);
            sc[h * n_pos + j] = s * scale;
        }
    }
}

/* dst (n_q, hd) = Σ_{t < cnt} p_h[j0 + t] v_{j0+t}: one fmaf chain per element. */
static void accum_scalar(const attn_kv *kv, const int32_t *blocks, size_t j0, size_t cnt,
                         size_t off, size_t hd, const float *p, size_t n_pos, size_t n_q,
                         float *dst)
{
    for (size_t i = 0; i < n_q * hd; i++)
        dst[i] = 0.0f;
    attn_rows it;
    attn_rows_init(&it, kv, kv->v, blocks, j0);
    for (size_t t = 0; t < cnt; t++) {
        if (t)
            attn_rows_next(&it);
        for (size_t d = 0; d < hd; d++) {
            float vd = kv_elem(kv->is_q8, it.row, off + d);
            for (size_t h = 0; h < n_q; h++)
                dst[h * hd + d] = fmaf(p[h * n_pos + j0 + t], vd, dst[h * hd + d]);
        }
    }
}

static void group_scalar(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                         size_t hd, const float *q, size_t n_q, float *out, float *scratch)
{
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = scratch, *part = scratch + n_q * n_pos;
    scores_scalar(kv, blocks, n_pos, off, hd, q, n_q, scale, sc);
    for (size_t h = 0; h < n_q; h++)
        kern_softmax(sc + h * n_pos, n_pos);
    size_t run = attn_run_len(kv);
    for (size_t j = 0; j < n_pos; j += run) {
        size_t cnt = n_pos - j < run ? n_pos - j : run;
        accum_scalar(kv, blocks, j, cnt, off, hd, sc, n_pos, n_q, j == 0 ? out : part);
        if (j)
            for (size_t h = 0; h < n_q; h++)
                kern_add(out + h * hd, out + h * hd, part + h * hd, hd);
    }
}

void attn_group(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                size_t head_dim, const float *q, size_t n_q, float *out, float *scratch)
{
    const char *simd = kern_simd_name();
    if (simd[0] == 'a') // "avx2"
        attn_group_avx2(kv, blocks, n_pos, off, head_dim, q, n_q, out, scratch);
    else
        group_scalar(kv, blocks, n_pos, off, head_dim, q, n_q, out, scratch);
}

size_t attn_span_scratch_floats(size_t n_tok, size_t n_q, size_t n_pos_max, size_t head_dim)
{
    // scores (n_tok, n_q, stride) + K tile (8, hd) + V rows (ATTN_SPAN_VROWS, hd)
    // + partial sums (n_tok, n_q, hd) + 16 to align the tiles to 64 bytes
    size_t stride, heads, a, b, c, n;
    if (!size_add_ok(n_pos_max, 7 + ATTN_SPAN_ROW_PAD, &stride) ||
        !size_mul_ok(n_tok, n_q, &heads) || !size_mul_ok(heads, stride & ~(size_t)7, &a) ||
        !size_mul_ok(8 + ATTN_SPAN_VROWS, head_dim, &b) || !size_mul_ok(heads, head_dim, &c) ||
        !size_add_ok(a, b, &n) || !size_add_ok(n, c, &n) || !size_add_ok(n, 16, &n))
        return SIZE_MAX;
    return n;
}

void attn_span(const attn_kv *kv, const int32_t *blocks, size_t pos0, size_t n_tok, size_t off,
               size_t head_dim, const float *q, size_t q_stride, size_t n_q, float *out,
               size_t out_stride, float *scratch)
{
    const char *simd = kern_simd_name();
    if (simd[0] == 'a') { // "avx2"
        attn_span_avx2(kv, blocks, pos0, n_tok, off, head_dim, q, q_stride, n_q, out,
                       out_stride, scratch);
        return;
    }
    /* The scalar path is the reference and the fallback, not a speed path:
     * each token on its own, as attn_group computes it. */
    for (size_t i = 0; i < n_tok; i++)
        group_scalar(kv, blocks, pos0 + i + 1, off, head_dim, q + i * q_stride, n_q,
                     out + i * out_stride, scratch);
}
