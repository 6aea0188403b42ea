/*
 * Unit tests for model/kern: the scalar and AVX2 paths give BITWISE-equal
 * results (kern_int.h's float order contract), for every matmul weight type on
 * shapes with and without SIMD tails, for 1..9 activation rows, and for every
 * row helper the forward pass uses (rmsnorm, softmax, swiglu, attention,
 * f16 conversion) on lengths around the vector width; and end to end, a small
 * llama and a qwen2 model holding every weight type (Q4_K, Q6_K, Q8_0, Q4_0,
 * F16, BF16, F32) give bitwise-equal logits and the same greedy tokens on both
 * paths. FERRY_SIMD=scalar reproducing AVX2 tokens exactly rests on this.
 * Skipped without AVX2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pool.h"
#include "model/gguf.h"
#include "model/kern.h"
#include "model/llama.h"
#include "model/tensor.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double rng_u01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_normal(void)
{
    double u = rng_u01(), v = rng_u01();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static bool have_avx2(void)
{
    if (kern_simd_set("avx2") != 0) {
        fprintf(stderr, "skipping: the CPU has no AVX2/FMA/F16C\n");
        return false;
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
    return true;
}

/* Index of the first differing float (bit pattern), or -1. */
static long first_diff(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            return (long)i;
    return -1;
}

static void check_same(const float *s, const float *v, size_t n, const char *what, size_t arg)
{
    long i = first_diff(s, v, n);
    if (i >= 0)
        fail_msg("%s (%zu): element %ld scalar %.9g avx2 %.9g", what, arg, i, (double)s[i],
                 (double)v[i]);
}

static const tensor_type TYPES[] = {TENSOR_F32, TENSOR_F16, TENSOR_BF16, TENSOR_Q8_0,
                                    TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};

/* One matmul shape on both paths; pool p for the AVX2 run (threads must not matter). */
static void mm_both(tensor_type t, size_t rows, size_t cols, size_t n, pool *p)
{
    size_t rb = 0;
    assert_int_equal(tensor_row_bytes(t, cols, &rb), 0);
    uint8_t *w = malloc(rb * rows);
    float *x = malloc(n * cols * sizeof(float)), *tmp = malloc(cols * sizeof(float));
    float *ys = malloc(n * rows * sizeof(float)), *yv = malloc(n * rows * sizeof(float));
    size_t sb = kern_scratch_bytes(t, cols, n);
    void *scratch = sb ? malloc(sb) : NULL;
    assert_true(w && x && tmp && ys && yv && (!sb || scratch));
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < cols; j++)
            tmp[j] = rng_normal() * 0.05f;
        tensor_quantize_row(t, tmp, w + r * rb, cols);
    }
    for (size_t i = 0; i < n * cols; i++)
        x[i] = rng_normal() * (i % 97 == 0 ? 30.0f : 1.0f); // outliers, as real activations
    for (size_t j = 0; j < cols && j < 40; j++)
        x[j] = 0.0f; // an all-zero activation block
    kern_mat m;
    assert_int_equal(kern_mat_init(&m, t, rows, cols, w), 0);
    assert_int_equal(kern_simd_set("scalar"), 0);
    kern_matmul(NULL, &m, x, n, ys, scratch, sb);
    assert_int_equal(kern_simd_set("avx2"), 0);
    kern_matmul(p, &m, x, n, yv, scratch, sb);
    assert_int_equal(kern_simd_set("scalar"), 0);
    char what[96];
    snprintf(what, sizeof what, "matmul %s %zux%zu n", tensor_type_name(t), rows, cols);
    check_same(ys, yv, n * rows, what, n);
    free(w);
    free(x);
    free(tmp);
    free(ys);
    free(yv);
    free(scratch);
}

static void test_matmul_bitwise(void **state)
{
    (void)state;
    if (!have_avx2())
        return;
    pool *p = NULL;
    assert_int_equal(pool_new(2, &p), 0);
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++) {
        tensor_type t = TYPES[k];
        size_t be = tensor_type_block_elems(t);
        // float types: tails after 16- and 8-steps; quantized: 1..several blocks
        const size_t cols_f[] = {8, 24, 200, 203, 576};
        const size_t cols_q32[] = {32, 96, 576};
        const size_t cols_qk[] = {256, 768};
        const size_t *cols = be == 1 ? cols_f : be == 32 ? cols_q32 : cols_qk;
        size_t nc = be == 1 ? 5 : be == 32 ? 3 : 2;
        for (size_t c = 0; c < nc; c++)
            for (size_t n = 1; n <= 9; n += (n < 5 ? 1 : 4))
                mm_both(t, 37, cols[c], n, n % 2 ? p : NULL);
    }
    pool_free(p);
}

typedef void (*row_fn)(float *y, const float *x, size_t n);

static void run_rmsnorm(float *y, const float *x, size_t n)
{
    float w[512];
    for (size_t i = 0; i < n; i++)
        w[i] = 1.0f + 0.01f * (float)i;
    kern_rmsnorm(y, x, w, n, 1e-5f);
}
static void run_softmax(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = 12.0f * x[i];
    if (n > 3)
        y[3] = -INFINITY; // a masked entry
    kern_softmax(y, n);
}
static void run_swiglu(float *y, const float *x, size_t n)
{
    float g[512];
    for (size_t i = 0; i < n; i++)
        g[i] = 9.0f * x[(i * 7) % n]; // large |g| too: exp under/overflow ranges
    kern_swiglu(y, g, x, n);
}
static void run_f16(float *y, const float *x, size_t n)
{
    uint16_t h[512];
    kern_f32_to_f16(h, x, n);
    kern_f16_to_f32(y, h, n);
}
/* attention with head_dim n over 13 positions (stride n + 8): scores, softmax, accum */
static void run_attn(float *y, const float *x, size_t n)
{
    enum { T = 13 };
    uint16_t kv[T * 520];
    float sc[T];
    size_t st = n + 8;
    for (size_t i = 0; i < T * st; i++)
        kv[i] = tensor_f32_to_f16(x[(i * 5) % n] * 0.7f);
    kern_attn_scores(sc, x, kv, st, T, n, 0.125f);
    kern_softmax(sc, T);
    kern_attn_accum(y, sc, kv, st, T, n);
    for (int t = 0; t < T; t++)
        y[n + (size_t)t] = sc[t];
}

static void test_helpers_bitwise(void **state)
{
    (void)state;
    if (!have_avx2())
        return;
    const struct {
        const char *name;
        row_fn fn;
    } fns[] = {{"rmsnorm", run_rmsnorm}, {"softmax", run_softmax}, {"swiglu", run_swiglu},
               {"f16", run_f16},         {"attention", run_attn}};
    const size_t lens[] = {1, 5, 8, 9, 16, 31, 64, 100, 203, 500};
    float x[512], ys[600], yv[600];
    for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++) {
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            size_t n = lens[k];
            for (size_t i = 0; i < n; i++)
                x[i] = rng_normal();
            size_t ny = n + (fns[f].fn == run_attn ? 13 : 0);
            memset(ys, 0, sizeof ys);
            memset(yv, 0, sizeof yv);
            assert_int_equal(kern_simd_set("scalar"), 0);
            fns[f].fn(ys, x, n);
            assert_int_equal(kern_simd_set("avx2"), 0);
            fns[f].fn(yv, x, n);
            assert_int_equal(kern_simd_set("scalar"), 0);
            check_same(ys, yv, ny, fns[f].name, n);
        }
    }
}

/* exp over its whole range, incl. both clamps, through softmax's and swiglu's kernels. */
static void test_exp_range_bitwise(void **state)
{
    (void)state;
    if (!have_avx2())
        return;
    enum { N = 4099 };
    float *g = malloc(N * sizeof(float)), *one = malloc(N * sizeof(float));
    float *ys = malloc(N * sizeof(float)), *yv = malloc(N * sizeof(float));
    assert_true(g && one && ys && yv);
    for (int i = 0; i < N; i++) {
        g[i] = -100.0f + 200.0f * (float)i / (N - 1);
        one[i] = 1.0f;
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
    kern_swiglu(ys, g, one, N);
    assert_int_equal(kern_simd_set("avx2"), 0);
    kern_swiglu(yv, g, one, N);
    assert_int_equal(kern_simd_set("scalar"), 0);
    check_same(ys, yv, N, "swiglu range", N);
    free(g);
    free(one);
    free(ys);
    free(yv);
}


/* kern_matmul_multi (mixed types, odd row counts, 1..5 rows, threads) equals separate calls. */
static void test_matmul_multi(void **state)
{
    (void)state;
    enum { COLS = 512, K = 4 };
    const tensor_type types[K] = {TENSOR_Q4_K, TENSOR_Q8_0, TENSOR_Q6_K, TENSOR_F16};
    const size_t rows[K] = {37, 16, 5, 23};
    uint8_t *wd[K];
    kern_mat m[K];
    const kern_mat *mp[K];
    float *ya[K], *yb[K];
    float *x = malloc(5 * COLS * sizeof(float)), *tmp = malloc(COLS * sizeof(float));
    assert_true(x && tmp);
    for (size_t i = 0; i < 5 * COLS; i++)
        x[i] = rng_normal();
    for (int k = 0; k < K; k++) {
        size_t rb = 0;
        assert_int_equal(tensor_row_bytes(types[k], COLS, &rb), 0);
        wd[k] = malloc(rb * rows[k]);
        ya[k] = malloc(5 * rows[k] * sizeof(float));
        yb[k] = malloc(5 * rows[k] * sizeof(float));
        assert_true(wd[k] && ya[k] && yb[k]);
        for (size_t r = 0; r < rows[k]; r++) {
            for (size_t j = 0; j < COLS; j++)
                tmp[j] = 0.05f * rng_normal();
            tensor_quantize_row(types[k], tmp, wd[k] + r * rb, COLS);
        }
        assert_int_equal(kern_mat_init(&m[k], types[k], rows[k], COLS, wd[k]), 0);
        mp[k] = &m[k];
    }
    size_t sb = kern_scratch_bytes_multi(mp, K, 5);
    assert_true(sb >= kern_scratch_bytes(TENSOR_Q4_K, COLS, 5) +
                          kern_scratch_bytes(TENSOR_Q8_0, COLS, 5));
    void *scratch = malloc(sb);
    assert_non_null(scratch);
    pool *p = NULL;
    assert_int_equal(pool_new(3, &p), 0);
    for (int impl = 0; impl < 2; impl++) {
        if (impl == 1 && kern_simd_set("avx2") != 0)
            break;
        for (size_t n = 1; n <= 5; n += 2) {
            for (int k = 0; k < K; k++)
                kern_matmul(NULL, &m[k], x, n, ya[k], scratch, sb);
            kern_matmul_multi(p, mp, yb, K, x, n, scratch, sb);
            for (int k = 0; k < K; k++)
                check_same(ya[k], yb[k], n * rows[k], "matmul_multi", (size_t)k);
        }
    }
    assert_int_equal(kern_simd_set("scalar"), 0);
    pool_free(p);
    free(scratch);
    for (int k = 0; k < K; k++) {
        free(wd[k]);
        free(ya[k]);
        free(yb[k]);
    }
    free(x);
    free(tmp);
}

/* ------------------------------------------------- end to end: a forward pass */

enum { M_DIM = 256, M_HEADS = 4, M_KV = 2, M_FFN = 512, M_VOCAB = 300, M_LAYERS = 2 };

/* Writes one tensor of n_out rows of n_in normal(0, std) values as type t. */
static void put_weight(gguf_writer *w, FILE *data, const char *name, tensor_type t,
                       size_t n_in, size_t n_out, float std)
{
    err_msg e;
    uint64_t ne[2] = {n_in, n_out};
    uint32_t nd = n_out == 1 ? 1 : 2;
    assert_int_equal(gguf_writer_add_tensor(w, name, t, nd, ne, &e), 0);
    size_t rb = 0;
    assert_int_equal(tensor_row_bytes(t, n_in, &rb), 0);
    float *row = malloc(n_in * sizeof(float));
    uint8_t *q = malloc(rb);
    assert_true(row && q);
    for (size_t r = 0; r < n_out; r++) {
        for (size_t j = 0; j < n_in; j++)
            row[j] = nd == 1 ? 1.0f + std * rng_normal() : std * rng_normal();
        tensor_quantize_row(t, row, q, n_in);
        assert_int_equal(fwrite(q, 1, rb, data), rb);
    }
    free(row);
    free(q);
}

/* A 2-layer model of arch "llama" or "qwen2" using every weight type, at path. */
static void write_model(const char *path, const char *arch)
{
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    char key[96];
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", str_from(arch)), 0);
#define KEY_U32(k, v)                                                                            \
    do {                                                                                         \
        snprintf(key, sizeof key, "%s.%s", arch, k);                                             \
        assert_int_equal(gguf_writer_set_u32(w, key, v), 0);                                     \
    } while (0)
    KEY_U32("embedding_length", M_DIM);
    KEY_U32("block_count", M_LAYERS);
    KEY_U32("attention.head_count", M_HEADS);
    KEY_U32("attention.head_count_kv", M_KV);
    KEY_U32("feed_forward_length", M_FFN);
    KEY_U32("context_length", 256);
#undef KEY_U32
    // tensor data goes to a temporary file first; the writer wants it after the header
    FILE *data = tmpfile();
    assert_non_null(data);
    size_t kvd = M_DIM / M_HEADS * M_KV;
    bool qwen = strcmp(arch, "qwen2") == 0;
    put_weight(w, data, "token_embd.weight", TENSOR_Q4_K, M_DIM, M_VOCAB, 0.5f);
    put_weight(w, data, "output_norm.weight", TENSOR_F32, M_DIM, 1, 0.1f);
    put_weight(w, data, "output.weight", TENSOR_Q6_K, M_DIM, M_VOCAB, 0.05f);
    static const tensor_type lt[2][7] = {
        {TENSOR_Q4_K, TENSOR_Q6_K, TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_F16, TENSOR_BF16, TENSOR_Q6_K},
        {TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_F32, TENSOR_Q4_K, TENSOR_Q4_0, TENSOR_Q8_0, TENSOR_F16}};
    for (int l = 0; l < M_LAYERS; l++) {
        char n[64];
#define W(nm, t, in, out, sd)                                                                    \
    do {                                                                                         \
        snprintf(n, sizeof n, "blk.%d.%s", l, nm);                                               \
        put_weight(w, data, n, t, in, out, sd);                                                  \
    } while (0)
        W("attn_norm.weight", TENSOR_F32, M_DIM, 1, 0.1f);
        W("attn_q.weight", lt[l][0], M_DIM, M_DIM, 0.08f);
        W("attn_k.weight", lt[l][1], M_DIM, kvd, 0.08f);
        W("attn_v.weight", lt[l][2], M_DIM, kvd, 0.08f);
        W("attn_output.weight", lt[l][3], M_DIM, M_DIM, 0.05f);
        if (qwen) {
            W("attn_q.bias", TENSOR_F32, M_DIM, 1, 0.1f);
            W("attn_k.bias", TENSOR_F32, kvd, 1, 0.1f);
            W("attn_v.bias", TENSOR_F32, kvd, 1, 0.1f);
        }
        W("ffn_norm.weight", TENSOR_F32, M_DIM, 1, 0.1f);
        W("ffn_gate.weight", lt[l][4], M_DIM, M_FFN, 0.05f);
        W("ffn_up.weight", lt[l][5], M_DIM, M_FFN, 0.05f);
        W("ffn_down.weight", lt[l][6], M_FFN, M_DIM, 0.05f);
#undef W
    }
    long nbytes = ftell(data);
    assert_true(nbytes > 0);
    uint8_t *buf = malloc((size_t)nbytes);
    assert_non_null(buf);
    rewind(data);
    assert_int_equal(fread(buf, 1, (size_t)nbytes, data), (size_t)nbytes);
    fclose(data);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    err_msg e;
    assert_int_equal(gguf_writer_write_file(w, fp, buf, (size_t)nbytes, &e), 0);
    assert_int_equal(fclose(fp), 0);
    free(buf);
    gguf_writer_free(w);
}

static int32_t argmax(const float *l, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return (int32_t)b;
}

enum { G_PROMPT = 19, G_STEPS = 24, G_BT = 16, G_BLOCKS = 4 };

/* Prefill a fixed prompt, then G_STEPS greedy steps; every logits row into rows
 * (G_STEPS + 1 rows of M_VOCAB), the generated ids into toks. */
static void generate(model *m, pool *p, float *rows, int32_t *toks)
{
    err_msg e;
    llama_kv *kv = NULL;
    llama_ctx *c = NULL;
    assert_int_equal(llama_kv_new(m, G_BLOCKS, G_BT, &kv, &e), 0);
    llama_config cfg = llama_config_default();
    cfg.max_batch_tokens = 32;
    cfg.max_logits = 1;
    cfg.max_ctx = G_BLOCKS * G_BT;
    cfg.pool = p;
    assert_int_equal(llama_ctx_new(m, &cfg, &c, &e), 0);
    int32_t table[G_BLOCKS] = {2, 0, 3, 1}, seq[G_PROMPT + G_STEPS];
    for (int i = 0; i < G_PROMPT; i++)
        seq[i] = (int32_t)((i * 37 + 11) % M_VOCAB);
    llama_span sp = {seq, G_PROMPT, 0, table, G_BLOCKS, 1};
    for (int s = 0; s <= G_STEPS; s++) {
        assert_int_equal(llama_forward(c, kv, &sp, 1, rows + (size_t)s * M_VOCAB, &e), 0);
        if (s == G_STEPS)
            break;
        size_t at = sp.pos + sp.n;
        toks[s] = seq[at] = argmax(rows + (size_t)s * M_VOCAB, M_VOCAB);
        sp.tokens = &seq[at];
        sp.pos = at;
        sp.n = 1;
    }
    llama_ctx_free(c);
    llama_kv_free(kv);
}

static void test_forward_bitwise(void **state)
{
    (void)state;
    if (!have_avx2())
        return;
    pool *p = NULL;
    assert_int_equal(pool_new(2, &p), 0);
    const char *archs[] = {"llama", "qwen2"};
    size_t nrows = (size_t)(G_STEPS + 1) * M_VOCAB;
    float *rs = malloc(nrows * sizeof(float)), *rv = malloc(nrows * sizeof(float));
    assert_true(rs && rv);
    for (int a = 0; a < 2; a++) {
        char path[] = "/tmp/ferry-kern-simd-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        write_model(path, archs[a]);
        model *m = NULL;
        err_msg e;
        int rc = model_load(path, &m, &e);
        if (rc)
            fail_msg("model_load: %s", e.text);
        int32_t ts[G_STEPS], tv[G_STEPS];
        assert_int_equal(kern_simd_set("scalar"), 0);
        generate(m, NULL, rs, ts);
        assert_int_equal(kern_simd_set("avx2"), 0);
        generate(m, p, rv, tv);
        assert_int_equal(kern_simd_set("scalar"), 0);
        assert_memory_equal(ts, tv, sizeof ts);
        check_same(rs, rv, nrows, archs[a], 0);
        // the model is not degenerate: greedy does not repeat one token
        int distinct = 0;
        for (int i = 0; i < G_STEPS; i++)
            distinct += i == 0 || tv[i] != tv[i - 1];
        assert_true(distinct > 3);
        model_unref(m);
        unlink(path);
    }
    free(rs);
    free(rv);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_bitwise),
        cmocka_unit_test(test_helpers_bitwise),
        cmocka_unit_test(test_exp_range_bitwise),
        cmocka_unit_test(test_matmul_multi),
        cmocka_unit_test(test_forward_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
