/*
 * model/tensor — element types of weight tensors and their block layouts.
 *
 * Type ids are GGML's (the numbers stored in GGUF tensor infos), so a GGUF
 * reader can cast the on-disk id straight to tensor_type after checking
 * tensor_type_supported(). Quantized types store a row as a run of blocks;
 * the layouts below are bit-compatible with ggml/GGUF files in the wild:
 *
 *   Q8_0  32 elems, 34 bytes:  f16 d; int8 qs[32]              x = d*q
 *   Q4_0  32 elems, 18 bytes:  f16 d; uint8 qs[16]             x = d*(nib-8)
 *         element j (0..15) is the low nibble of qs[j], element j+16 the high one
 *   Q4_K 256 elems, 144 bytes: f16 d; f16 dmin; uint8 scales[12]; uint8 qs[128]
 *         8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m packed
 *         in scales[12]; x = d*sc*nib - dmin*m. qs holds 4 chunks of 32 bytes;
 *         chunk c gives sub-block 2c (low nibbles) and 2c+1 (high nibbles)
 *   Q6_K 256 elems, 210 bytes: uint8 ql[128]; uint8 qh[64]; int8 scales[16]; f16 d
 *         16 sub-blocks of 16, x = d*scales[s]*(q-32), q 6 bits (4 in ql, 2 in qh)
 *   F16 / BF16 / F32: one element per "block".
 * docs/internals/kernels.md draws the Q4_K and Q6_K bit layouts in full.
 *
 * Everything here is pure and thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"

/* The supported element types; values are GGML type ids. */
typedef enum tensor_type {
    TENSOR_F32 = 0,
    TENSOR_F16 = 1,
    TENSOR_Q4_0 = 2,
    TENSOR_Q8_0 = 8,
    TENSOR_Q4_K = 12,
    TENSOR_Q6_K = 14,
    TENSOR_BF16 = 30,
} tensor_type;

#define TENSOR_QK 32   /* elements per Q8_0 / Q4_0 block */
#define TENSOR_QK_K 256 /* elements per K-quant super-block */

/* Block structs (packed by construction: every member is naturally aligned). */
typedef struct tensor_block_q8_0 {
    uint16_t d; /* f16 scale */
    int8_t qs[TENSOR_QK];
} tensor_block_q8_0;

typedef struct tensor_block_q4_0 {
    uint16_t d; /* f16 scale */
    uint8_t qs[TENSOR_QK / 2];
} tensor_block_q4_0;

typedef struct tensor_block_q4_K {
    uint16_t d;    /* f16 scale of the 6-bit sub-block scales */
    uint16_t dmin; /* f16 scale of the 6-bit sub-block mins */
    uint8_t scales[12];
    uint8_t qs[TENSOR_QK_K / 2];
} tensor_block_q4_K;

typedef struct tensor_block_q6_K {
    uint8_t ql[TENSOR_QK_K / 2]; /* low 4 bits */
    uint8_t qh[TENSOR_QK_K / 4]; /* high 2 bits */
    int8_t scales[TENSOR_QK_K / 16];
    uint16_t d; /* f16 super-block scale */
} tensor_block_q6_K;

_Static_assert(sizeof(tensor_block_q8_0) == 34, "q8_0 block size");
_Static_assert(sizeof(tensor_block_q4_0) == 18, "q4_0 block size");
_Static_assert(sizeof(tensor_block_q4_K) == 144, "q4_K block size");
_Static_assert(sizeof(tensor_block_q6_K) == 210, "q6_K block size");

/* True when t is one of the tensor_type values above. */
bool tensor_type_supported(uint32_t t);

/*
 * GGML name of any known GGML type id ("f32", "q4_K", "iq2_xxs", ...), also for
 * ids this engine cannot compute, so errors can name them; "unknown" otherwise.
 * Returns a static string.
 */
const char *tensor_type_name(uint32_t t);

/*
 * Elements and bytes per block of type t. Known-but-unsupported GGML ids also
 * answer (so a file's layout can be checked before it is refused); 0 for ids
 * that GGML does not define.
 */
size_t tensor_type_block_elems(tensor_type t);
size_t tensor_type_block_bytes(tensor_type t);

/*
 * Bytes of a row of n_elems elements of type t into *out. Returns 0,
 * ERR_UNSUPPORTED for an unknown id, ERR_FORMAT when n_elems is not a multiple
 * of the block size, ERR_OVERFLOW when the size does not fit in size_t.
 */
int tensor_row_bytes(tensor_type t, uint64_t n_elems, size_t *out) MUST_USE;

/*
 * Dequantizes n elements (a multiple of the block size of t, a supported type)
 * from src to dst. src need not be aligned.
 */
void tensor_dequantize_row(tensor_type t, const void *src, float *dst, size_t n);

/*
 * Quantizes n f32 elements (a multiple of the block size of t, a supported
 * type) into tensor_row_bytes(t, n) bytes at dst, with reference quantizers
 * (round-to-nearest, deterministic, single-threaded). F32/F16/BF16 convert.
 */
void tensor_quantize_row(tensor_type t, const float *src, void *dst, size_t n);

/* ---- scalar f16 / bf16 conversions (IEEE binary16, round-to-nearest-even) ---- */

static inline uint32_t tensor_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float tensor_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f16 bits to f32, exact (subnormals, infinities and NaNs included). */
static inline float tensor_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return tensor_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return tensor_bits_f32(sign);
        /* subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return tensor_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* f32 to f16 bits, round-to-nearest-even; overflow gives inf, NaN stays NaN. */
static inline uint16_t tensor_f32_to_f16(float f)
{
    uint32_t u = tensor_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
    if (a >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below the smallest normal f16 (2^-14): subnormal or 0 */
        if (a < 0x33000000u) /* < 2^-25: rounds to 0 (2^-25 exactly ties to even 0) */
            return sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24: value = m * 2^(e-150), target unit 2^-24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits */
    uint32_t r = a + 0xfff + ((a >> 13) & 1);
    r -= (uint32_t)(127 - 15) << 23;
    return (uint16_t)(sign | (r >> 13));
}

/* bf16 bits to f32, exact. */
static inline float tensor_bf16_to_f32(uint16_t h)
{
    return tensor_bits_f32((uint32_t)h << 16);
}

/* f32 to bf16 bits, round-to-nearest-even; NaN stays a (quiet) NaN. */
static inline uint16_t tensor_f32_to_bf16(float f)
{
    uint32_t u = tensor_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/*
 * The 6-bit scale and min of sub-block j (0..7) of a Q4_K block, unpacked from
 * its 12 scale bytes: sub-blocks 0..3 keep theirs in the low 6 bits of bytes
 * j and j+4; sub-blocks 4..7 split theirs into a nibble in byte j+4 and the
 * top 2 bits of bytes j-4 (scale) and j (min).
 */
static inline void tensor_q4_K_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}
