/*
 * Unit tests for model/gguf: writer -> reader round trip of every value type,
 * streaming writes, every class of malformed input (each prefix of a valid
 * file, bad magic/version, huge counts, overflowing dims, unknown types, bad
 * alignment, overlaps, duplicates), and the real files in ../shared when present.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/buf.h"
#include "model/gguf.h"
#include "model/tensor.h"

/* ---- helpers */

/* Writes w (with data) into a malloc'd buffer; returns it and its size. */
static uint8_t *write_mem(gguf_writer *w, const void *data, size_t n_data, size_t *size)
{
    char *p = NULL;
    size_t n = 0;
    FILE *fp = open_memstream(&p, &n);
    assert_non_null(fp);
    err_msg e;
    int rc = gguf_writer_write_file(w, fp, data, n_data, &e);
    if (rc)
        fail_msg("write failed: %s", e.text);
    fclose(fp);
    *size = n;
    return (uint8_t *)p;
}

/* Opens an exact-size heap copy of p[0..n) so ASan catches any over-read. */
static int open_copy(const uint8_t *p, size_t n, gguf_file **f, uint8_t **copy, err_msg *e)
{
    *copy = malloc(n ? n : 1);
    assert_non_null(*copy);
    if (n)
        memcpy(*copy, p, n);
    return gguf_open_mem(*copy, n, f, e);
}

/* Expects opening p[0..n) to fail with code and a message containing needle. */
static void expect_fail(const uint8_t *p, size_t n, int code, const char *needle)
{
    gguf_file *f = (gguf_file *)1;
    uint8_t *copy;
    err_msg e;
    err_clear(&e);
    int rc = open_copy(p, n, &f, &copy, &e);
    if (rc != code || !strstr(e.text, needle))
        fail_msg("expected %s containing \"%s\", got %s: %s", err_name(code), needle, err_name(rc),
                 e.text);
    assert_null(f);
    assert_null(strchr(e.text, '\n'));
    free(copy);
}

/* A little-endian byte builder for hand-made files. */
typedef struct bb {
    uint8_t b[4096];
    size_t n;
} bb;
static void bb_raw(bb *x, const void *p, size_t n)
{
    assert_true(x->n + n <= sizeof x->b);
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void bb_u32(bb *x, uint32_t v)
{
    bb_raw(x, &v, 4);
}
static void bb_u64(bb *x, uint64_t v)
{
    bb_raw(x, &v, 8);
}
static void bb_str(bb *x, const char *s)
{
    bb_u64(x, strlen(s));
    bb_raw(x, s, strlen(s));
}
static void bb_header(bb *x, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    x->n = 0;
    bb_raw(x, "GGUF", 4);
    bb_u32(x, version);
    bb_u64(x, n_tensors);
    bb_u64(x, n_kv);
}
/* Tensor info with up to 4 dims. */
static void bb_tensor(bb *x, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                      uint64_t offset)
{
    bb_str(x, name);
    bb_u32(x, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        bb_u64(x, ne[d]);
    bb_u32(x, type);
    bb_u64(x, offset);
}
static void bb_pad(bb *x, size_t align)
{
    while (x->n % align)
        x->b[x->n++] = 0;
}

/* ---- a small valid file of everything */

typedef struct sample {
    uint8_t *bytes;
    size_t size;
    float t0[12];
    uint8_t t1[68]; // q8_0: 2 rows of 32
    uint16_t t2[5];
} sample;

static void make_sample(sample *s, uint32_t alignment)
{
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_u8(w, "t.u8", 200), 0);
    assert_int_equal(gguf_writer_set_i8(w, "t.i8", -100), 0);
    assert_int_equal(gguf_writer_set_u16(w, "t.u16", 60000), 0);
    assert_int_equal(gguf_writer_set_i16(w, "t.i16", -30000), 0);
    assert_int_equal(gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    assert_int_equal(gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
    assert_int_equal(gguf_writer_set_f32(w, "t.f32", 1.5f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "t.bool", true), 0);
    assert_int_equal(gguf_writer_set_str(w, "t.str", STR_LIT("héllo")), 0);
    assert_int_equal(gguf_writer_set_u64(w, "t.u64", UINT64_MAX), 0);
    assert_int_equal(gguf_writer_set_i64(w, "t.i64", INT64_MIN), 0);
    assert_int_equal(gguf_writer_set_f64(w, "t.f64", -2.25), 0);
    int32_t ia[3] = {1, -2, 3};
    assert_int_equal(gguf_writer_set_arr(w, "t.arr_i32", GGUF_TYPE_INT32, ia, 3), 0);
    float fa[2] = {0.5f, -0.25f};
    assert_int_equal(gguf_writer_set_arr(w, "t.arr_f32", GGUF_TYPE_FLOAT32, fa, 2), 0);
    str sa[3] = {STR_LIT("a"), STR_LIT(""), STR_LIT("ccc")};
    assert_int_equal(gguf_writer_set_arr_str(w, "t.arr_str", sa, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "t.arr_empty", GGUF_TYPE_UINT8, NULL, 0), 0);
    // Nested: array of 2 arrays: [u8 {7, 8}], [string {"x"}].
    bb nest = {.n = 0};
    bb_u32(&nest, GGUF_TYPE_ARRAY);
    bb_u64(&nest, 2);
    bb_u32(&nest, GGUF_TYPE_UINT8);
    bb_u64(&nest, 2);
    bb_raw(&nest, "\x07\x08", 2);
    bb_u32(&nest, GGUF_TYPE_STRING);
    bb_u64(&nest, 1);
    bb_str(&nest, "x");
    assert_int_equal(gguf_writer_set_raw(w, "t.nested", GGUF_TYPE_ARRAY, nest.b, nest.n), 0);
    assert_int_equal(gguf_writer_set_raw(w, "t.bad", GGUF_TYPE_ARRAY, nest.b, nest.n - 1),
                     ERR_FORMAT);
    // Replacing keeps one copy; removing works.
    assert_int_equal(gguf_writer_set_u32(w, "t.replace", 1), 0);
    assert_int_equal(gguf_writer_set_u32(w, "t.replace", 2), 0);
    assert_int_equal(gguf_writer_set_u32(w, "t.gone", 2), 0);
    assert_int_equal(gguf_writer_remove(w, "t.gone"), 0);
    if (alignment != GGUF_DEFAULT_ALIGNMENT)
        assert_int_equal(gguf_writer_set_u32(w, GGUF_KEY_ALIGNMENT, alignment), 0);
    assert_int_equal(gguf_writer_set_u32(w, GGUF_KEY_ALIGNMENT, 3), ERR_INVAL);

    err_msg e;
    uint64_t ne0[2] = {4, 3}, ne1[2] = {32, 2}, ne2[1] = {5};
    assert_int_equal(gguf_writer_add_tensor(w, "a.weight", TENSOR_F32, 2, ne0, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "b.weight", TENSOR_Q8_0, 2, ne1, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "c.norm", TENSOR_F16, 1, ne2, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "c.norm", TENSOR_F16, 1, ne2, &e), ERR_INVAL);
    uint64_t bad[1] = {33};
    assert_int_not_equal(gguf_writer_add_tensor(w, "d", TENSOR_Q8_0, 1, bad, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "d", 13, 1, bad, &e), ERR_UNSUPPORTED);
    assert_int_equal(gguf_writer_tensor_size(w, 1), 68);

    for (int i = 0; i < 12; i++)
        s->t0[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 68; i++)
        s->t1[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 5; i++)
        s->t2[i] = tensor_f32_to_f16((float)i);
    uint8_t all[48 + 68 + 10];
    memcpy(all, s->t0, 48);
    memcpy(all + 48, s->t1, 68);
    memcpy(all + 116, s->t2, 10);
    s->bytes = write_mem(w, all, sizeof all, &s->size);
    gguf_writer_free(w);
}

static void check_sample(const gguf_file *f, const sample *s, uint32_t alignment)
{
    err_msg e;
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), alignment);
    assert_int_equal(gguf_data_offset(f) % alignment, 0);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    str sv;
    int64_t i64;
    double d;
    assert_int_equal(gguf_get_u32(f, "t.u32", &u32, &e), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_i32(f, "t.i32", &i32, &e), 0);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(gguf_get_u64(f, "t.u64", &u64, &e), 0);
    assert_true(u64 == UINT64_MAX);
    assert_int_equal(gguf_get_f32(f, "t.f32", &f32, &e), 0);
    assert_true(f32 == 1.5f);
    assert_int_equal(gguf_get_bool(f, "t.bool", &b, &e), 0);
    assert_true(b);
    assert_int_equal(gguf_get_str(f, "t.str", &sv, &e), 0);
    assert_true(str_eq_cstr(sv, "héllo"));
    assert_int_equal(gguf_get_int(f, "t.u8", 0, 255, &i64, &e), 0);
    assert_int_equal(i64, 200);
    assert_int_equal(gguf_get_int(f, "t.i8", -128, 127, &i64, &e), 0);
    assert_int_equal(i64, -100);
    assert_int_equal(gguf_get_int(f, "t.u16", 0, 65535, &i64, &e), 0);
    assert_int_equal(i64, 60000);
    assert_int_equal(gguf_get_int(f, "t.i16", INT16_MIN, 0, &i64, &e), 0);
    assert_int_equal(i64, -30000);
    assert_int_equal(gguf_get_int(f, "t.i64", INT64_MIN, 0, &i64, &e), 0);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(gguf_get_int(f, "t.u64", 0, INT64_MAX, &i64, &e), ERR_FORMAT);
    assert_non_null(strstr(e.text, "out of range"));
    assert_int_equal(gguf_get_int(f, "t.u8", 0, 100, &i64, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_int(f, "t.i8", 0, 100, &i64, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_int(f, "t.f32", 0, 100, &i64, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_float(f, "t.f64", &d, &e), 0);
    assert_true(d == -2.25);
    assert_int_equal(gguf_get_float(f, "t.f32", &d, &e), 0);
    assert_true(d == 1.5);
    // Wrong types and missing keys: errors, never aborts.
    assert_int_equal(gguf_get_u32(f, "t.str", &u32, &e), ERR_FORMAT);
    assert_string_equal(e.text, "gguf: metadata key \"t.str\" has type string, expected uint32");
    assert_int_equal(gguf_get_str(f, "t.u32", &sv, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_bool(f, "t.u8", &b, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_u32(f, "nope", &u32, &e), ERR_NOT_FOUND);
    assert_non_null(strstr(e.text, "\"nope\""));
    assert_int_equal(gguf_find_key(f, "nope"), -1);
    assert_true(gguf_find_key(f, "t.u8") >= 0);
    assert_int_equal(gguf_get_u32(f, "t.replace", &u32, &e), 0);
    assert_int_equal(u32, 2);
    assert_null(gguf_find_value(f, "t.gone"));

    const gguf_value *v;
    assert_int_equal(gguf_get_arr(f, "t.arr_i32", GGUF_TYPE_INT32, &v, &e), 0);
    assert_int_equal(gguf_arr_len(v), 3);
    assert_int_equal(gguf_arr_i64(v, 1, &i64), 0);
    assert_int_equal(i64, -2);
    assert_int_equal(gguf_arr_i64(v, 3, &i64), ERR_NOT_FOUND);
    int32_t raw[3];
    memcpy(raw, gguf_arr_data(v), sizeof raw);
    assert_int_equal(raw[2], 3);
    assert_int_equal(gguf_get_arr(f, "t.arr_i32", GGUF_TYPE_STRING, &v, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_arr(f, "t.arr_f32", GGUF_TYPE_COUNT, &v, &e), 0);
    assert_int_equal(gguf_arr_f64(v, 1, &d), 0);
    assert_true(d == -0.25);
    assert_int_equal(gguf_arr_str(v, 0, &sv), ERR_FORMAT);
    assert_int_equal(gguf_get_arr(f, "t.arr_str", GGUF_TYPE_STRING, &v, &e), 0);
    assert_int_equal(gguf_arr_len(v), 3);
    assert_null(gguf_arr_data(v));
    assert_int_equal(gguf_arr_str(v, 2, &sv), 0);
    assert_true(str_eq_cstr(sv, "ccc"));
    assert_int_equal(gguf_arr_str(v, 1, &sv), 0);
    assert_int_equal(sv.n, 0);
    assert_int_equal(gguf_arr_str(v, 3, &sv), ERR_NOT_FOUND);
    assert_int_equal(gguf_get_arr(f, "t.arr_empty", GGUF_TYPE_UINT8, &v, &e), 0);
    assert_int_equal(gguf_arr_len(v), 0);
    assert_int_equal(gguf_get_arr(f, "t.u32", GGUF_TYPE_COUNT, &v, &e), ERR_FORMAT);
    assert_int_equal(gguf_get_arr(f, "t.nested", GGUF_TYPE_ARRAY, &v, &e), 0);
    assert_int_equal(gguf_arr_len(v), 2);
    const gguf_value *c0 = gguf_arr_at(v, 0), *c1 = gguf_arr_at(v, 1);
    assert_non_null(c0);
    assert_non_null(c1);
    assert_null(gguf_arr_at(v, 2));
    assert_int_equal(gguf_arr_type(c0), GGUF_TYPE_UINT8);
    assert_int_equal(gguf_arr_i64(c0, 1, &i64), 0);
    assert_int_equal(i64, 8);
    assert_int_equal(gguf_arr_str(c1, 0, &sv), 0);
    assert_true(str_eq_cstr(sv, "x"));
    assert_int_equal(gguf_arr_type(gguf_find_value(f, "t.u8")), GGUF_TYPE_COUNT);
    assert_int_equal(gguf_value_u64(gguf_find_value(f, "t.i8"), &u64), ERR_FORMAT);
    assert_int_equal(gguf_value_u64(gguf_find_value(f, "t.u64"), &u64), 0);

    assert_int_equal(gguf_tensor_count(f), 3);
    const gguf_tensor *t0 = gguf_tensor_at(f, 0), *t1 = gguf_tensor_find(f, "b.weight"),
                      *t2 = gguf_tensor_find(f, "c.norm");
    assert_non_null(t1);
    assert_non_null(t2);
    assert_null(gguf_tensor_find(f, "b.weigh"));
    assert_true(str_eq_cstr(t0->name, "a.weight"));
    assert_int_equal(t0->n_dims, 2);
    assert_int_equal(t0->ne[0], 4);
    assert_int_equal(t0->ne[1], 3);
    assert_int_equal(t0->ne[2], 1);
    assert_int_equal(t0->size, 48);
    assert_int_equal(t1->type, TENSOR_Q8_0);
    assert_int_equal(t1->size, 68);
    assert_int_equal(t2->size, 10);
    assert_int_equal(gguf_tensor_nelems(t1), 64);
    assert_memory_equal(t0->data, s->t0, 48);
    assert_memory_equal(t1->data, s->t1, 68);
    assert_memory_equal(t2->data, s->t2, 10);
    for (size_t i = 0; i < 3; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_int_equal(t->offset % alignment, 0);
        assert_int_equal(
            ((const uint8_t *)t->data - (const uint8_t *)gguf_file_bytes(f)) % alignment, 0);
    }
    // Every tensor but the last is followed by zero padding up to the next one.
    const uint8_t *pad = (const uint8_t *)t0->data + t0->size;
    while (pad < (const uint8_t *)t1->data)
        assert_int_equal(*pad++, 0);

    const gguf_tensor *rt;
    uint64_t want[2] = {32, 2}, wrong[2] = {32, 3};
    assert_int_equal(gguf_require_tensor(f, "b.weight", 2, want, &rt, &e), 0);
    assert_ptr_equal(rt, t1);
    assert_int_equal(gguf_require_tensor(f, "b.weight", 2, wrong, &rt, &e), ERR_FORMAT);
    assert_string_equal(e.text, "gguf: tensor \"b.weight\" has shape [32 x 2], expected [32 x 3]");
    assert_int_equal(gguf_require_tensor(f, "output.weight", 2, want, &rt, &e), ERR_NOT_FOUND);
    assert_string_equal(e.text, "gguf: missing tensor \"output.weight\"");
}

static void test_round_trip(void **state)
{
    (void)state;
    uint32_t aligns[3] = {32, 64, 1};
    for (int k = 0; k < 3; k++) {
        sample s;
        make_sample(&s, aligns[k]);
        gguf_file *f;
        uint8_t *copy;
        err_msg e;
        if (open_copy(s.bytes, s.size, &f, &copy, &e))
            fail_msg("open failed: %s", e.text);
        check_sample(f, &s, aligns[k]);

        // Copying every value and tensor through a second writer gives the same bytes.
        gguf_writer *w = gguf_writer_new();
        buf data;
        buf_init(&data, 1 << 20);
        for (size_t i = 0; i < gguf_kv_count(f); i++) {
            str key = gguf_kv_key(f, i);
            char kz[64];
            snprintf(kz, sizeof kz, "%.*s", (int)key.n, key.p);
            assert_int_equal(gguf_writer_set_value(w, kz, gguf_kv_value(f, i)), 0);
        }
        for (size_t i = 0; i < gguf_tensor_count(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            char nz[64];
            snprintf(nz, sizeof nz, "%.*s", (int)t->name.n, t->name.p);
            assert_int_equal(gguf_writer_add_tensor(w, nz, t->type, t->n_dims, t->ne, &e), 0);
            assert_int_equal(buf_append(&data, t->data, t->size), 0);
        }
        size_t n2;
        uint8_t *b2 = write_mem(w, data.data, data.len, &n2);
        assert_int_equal(n2, s.size);
        assert_memory_equal(b2, s.bytes, s.size);
        free(b2);
        buf_deinit(&data);
        gguf_writer_free(w);
        gguf_close(f);
        free(copy);
        free(s.bytes);
    }
}

static void test_streaming_writer(void **state)
{
    (void)state;
    gguf_writer *w = gguf_writer_new();
    err_msg e;
    uint64_t ne[1] = {100};
    assert_int_equal(gguf_writer_add_tensor(w, "x", TENSOR_F32, 1, ne, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "y", TENSOR_F32, 1, ne, &e), 0);
    char *p = NULL;
    size_t n = 0;
    FILE *fp = open_memstream(&p, &n);
    assert_int_equal(gguf_writer_write(w, "", 1, &e), ERR_INVAL); // before begin
    assert_int_equal(gguf_writer_begin(w, fp, &e), 0);
    assert_int_equal(gguf_writer_set_u32(w, "late", 1), ERR_INVAL);
    float vals[200];
    for (int i = 0; i < 200; i++)
        vals[i] = (float)i;
    // Pieces that straddle the tensor boundary.
    assert_int_equal(gguf_writer_write(w, vals, 7, &e), 0);
    assert_int_equal(gguf_writer_write(w, (uint8_t *)vals + 7, 500, &e), 0);
    assert_int_equal(gguf_writer_finish(w, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "\"y\" got 107 of its 400 bytes"));
    gguf_writer_free(w);
    fclose(fp);
    free(p);

    w = gguf_writer_new();
    assert_int_equal(gguf_writer_add_tensor(w, "x", TENSOR_F32, 1, ne, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "y", TENSOR_F32, 1, ne, &e), 0);
    fp = open_memstream(&p, &n);
    assert_int_equal(gguf_writer_begin(w, fp, &e), 0);
    assert_int_equal(gguf_writer_write(w, vals, 7, &e), 0);
    assert_int_equal(gguf_writer_write(w, (uint8_t *)vals + 7, 793, &e), 0);
    assert_int_equal(gguf_writer_write(w, vals, 1, &e), ERR_INVAL);
    gguf_writer_free(w);
    fclose(fp);
    free(p);

    w = gguf_writer_new();
    assert_int_equal(gguf_writer_add_tensor(w, "x", TENSOR_F32, 1, ne, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "y", TENSOR_F32, 1, ne, &e), 0);
    fp = open_memstream(&p, &n);
    assert_int_equal(gguf_writer_begin(w, fp, &e), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(gguf_writer_write(w, &vals[i], 4, &e), 0);
    assert_int_equal(gguf_writer_finish(w, &e), 0);
    gguf_writer_free(w);
    fclose(fp);
    gguf_file *f;
    assert_int_equal(gguf_open_mem(p, n, &f, &e), 0);
    assert_memory_equal(gguf_tensor_find(f, "y")->data, vals + 100, 400);
    assert_int_equal(gguf_tensor_find(f, "y")->offset, 416); // 400 padded to 32
    gguf_close(f);
    free(p);
}

/* Every prefix shorter than the end of the last tensor's data is refused cleanly. */
static void test_truncated_prefixes(void **state)
{
    (void)state;
    sample s;
    make_sample(&s, 32);
    gguf_file *f;
    err_msg e;
    assert_int_equal(gguf_open_mem(s.bytes, s.size, &f, &e), 0);
    const gguf_tensor *last = gguf_tensor_find(f, "c.norm");
    size_t data_end = (size_t)((const uint8_t *)last->data - s.bytes) + last->size;
    gguf_close(f);
    for (size_t n = 0; n <= s.size; n++) {
        uint8_t *copy;
        err_clear(&e);
        int rc = open_copy(s.bytes, n, &f, &copy, &e);
        if (n < data_end) {
            if (rc != ERR_FORMAT ||
                (!strstr(e.text, "truncated") && !strstr(e.text, "past end of file") &&
                 !strstr(e.text, "can hold")))
                fail_msg("prefix %zu: %s: %s", n, err_name(rc), e.text);
            assert_null(f);
        } else {
            if (rc)
                fail_msg("prefix %zu: %s", n, e.text);
            gguf_close(f);
        }
        free(copy);
    }
    free(s.bytes);
}

static void test_bad_headers(void **state)
{
    (void)state;
    bb x;
    bb_header(&x, 3, 0, 0);
    {
        gguf_file *f;
        err_msg e;
        assert_int_equal(gguf_open_mem(x.b, x.n, &f, &e), 0); // empty file is valid
        assert_int_equal(gguf_tensor_count(f), 0);
        gguf_close(f);
    }
    x.b[0] = 'X';
    expect_fail(x.b, x.n, ERR_FORMAT, "bad magic");
    expect_fail((const uint8_t *)"PK\x03\x04", 4, ERR_FORMAT, "bad magic");
    expect_fail((const uint8_t *)"GG", 2, ERR_FORMAT, "truncated");
    bb_header(&x, 1, 0, 0);
    expect_fail(x.b, x.n, ERR_UNSUPPORTED, "version 1");
    bb_header(&x, 4, 0, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "unsupported version 4");
    bb_header(&x, 0, 0, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "unsupported version 0");
    bb_header(&x, 0x03000000u, 0, 0);
    expect_fail(x.b, x.n, ERR_UNSUPPORTED, "big-endian");
    bb_header(&x, 2, 0, 0); // v2 reads like v3
    {
        gguf_file *f;
        err_msg e;
        assert_int_equal(gguf_open_mem(x.b, x.n, &f, &e), 0);
        assert_int_equal(gguf_version(f), 2);
        gguf_close(f);
    }
    // Huge counts are refused before any allocation.
    bb_header(&x, 3, 0, UINT64_MAX);
    expect_fail(x.b, x.n, ERR_FORMAT, "metadata pairs");
    bb_header(&x, 3, (uint64_t)1 << 62, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "tensors, more than");
}

static void test_bad_metadata(void **state)
{
    (void)state;
    bb x;
    // String length past end.
    bb_header(&x, 3, 0, 1);
    bb_u64(&x, 1000);
    bb_raw(&x, "abcdefghijklmn", 14);
    expect_fail(x.b, x.n, ERR_FORMAT, "truncated file: the key of metadata pair 0");
    bb_header(&x, 3, 0, 1);
    bb_str(&x, "k");
    bb_u32(&x, GGUF_TYPE_STRING);
    bb_u64(&x, UINT64_MAX);
    bb_raw(&x, "abcdefghijklmn", 14);
    expect_fail(x.b, x.n, ERR_FORMAT, "the value of key \"k\"");
    // Unknown value type.
    bb_header(&x, 3, 0, 1);
    bb_str(&x, "k");
    bb_u32(&x, 13);
    bb_u64(&x, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "unknown value type 13");
    // Array with a huge count, of fixed-size and of variable-size elements.
    uint32_t ets[3] = {GGUF_TYPE_UINT64, GGUF_TYPE_STRING, GGUF_TYPE_ARRAY};
    for (int i = 0; i < 3; i++) {
        bb_header(&x, 3, 0, 1);
        bb_str(&x, "k");
        bb_u32(&x, GGUF_TYPE_ARRAY);
        bb_u32(&x, ets[i]);
        bb_u64(&x, (uint64_t)1 << 61);
        bb_u64(&x, 0);
        expect_fail(x.b, x.n, ERR_FORMAT, "claims 2305843009213693952 elements");
    }
    // Array of unknown element type.
    bb_header(&x, 3, 0, 1);
    bb_str(&x, "k");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u32(&x, 99);
    bb_u64(&x, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "unknown element type 99");
    // Nesting deeper than the limit.
    bb_header(&x, 3, 0, 1);
    bb_str(&x, "k");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    for (int d = 0; d < GGUF_ARRAY_DEPTH_MAX + 1; d++) {
        bb_u32(&x, GGUF_TYPE_ARRAY);
        bb_u64(&x, 1);
    }
    bb_u32(&x, GGUF_TYPE_UINT8);
    bb_u64(&x, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "deeper than the limit");
    // A nested array truncated half way (children are freed: ASan checks leaks).
    bb_header(&x, 3, 0, 1);
    bb_str(&x, "k");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u64(&x, 3);
    bb_u32(&x, GGUF_TYPE_STRING);
    bb_u64(&x, 1);
    bb_str(&x, "abc");
    bb_u32(&x, GGUF_TYPE_UINT32);
    bb_u64(&x, 100);
    bb_u64(&x, 0);
    expect_fail(x.b, x.n, ERR_FORMAT, "truncated");
    // Duplicate keys.
    bb_header(&x, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        bb_str(&x, "dup");
        bb_u32(&x, GGUF_TYPE_UINT8);
        bb_raw(&x, "\x01", 1);
    }
    expect_fail(x.b, x.n, ERR_FORMAT, "duplicate metadata key \"dup\"");
    // Bad alignments: not a power of two, zero, too large, wrong type.
    uint32_t bad_al[3] = {3, 0, 1u << 30};
    for (int i = 0; i < 3; i++) {
        bb_header(&x, 3, 0, 1);
        bb_str(&x, GGUF_KEY_ALIGNMENT);
        bb_u32(&x, GGUF_TYPE_UINT32);
        bb_u32(&x, bad_al[i]);
        expect_fail(x.b, x.n, ERR_FORMAT, "not a power of two");
    }
    bb_header(&x, 3, 0, 1);
    bb_str(&x, GGUF_KEY_ALIGNMENT);
    bb_u32(&x, GGUF_TYPE_UINT64);
    bb_u64(&x, 32);
    expect_fail(x.b, x.n, ERR_FORMAT, "has type uint64, expected uint32");
}

/* A file with one key and the given tensors; data_bytes of data after padding. */
static void tensor_file(bb *x, size_t n, const char *const *names, const uint32_t *n_dims,
                        const uint64_t (*ne)[4], const uint32_t *types, const uint64_t *offs,
                        size_t data_bytes)
{
    bb_header(x, 3, n, 1);
    bb_str(x, "general.architecture");
    bb_u32(x, GGUF_TYPE_STRING);
    bb_str(x, "llama");
    for (size_t i = 0; i < n; i++)
        bb_tensor(x, names[i], n_dims[i], ne[i], types[i], offs[i]);
    bb_pad(x, 32);
    memset(x->b + x->n, 0, data_bytes);
    x->n += data_bytes;
}

static void test_bad_tensors(void **state)
{
    (void)state;
    bb x;
    const char *nm[2] = {"blk.0.attn_k.weight", "b"};
    uint32_t nd[2] = {2, 1};
    uint64_t ne[2][4] = {{8, 4}, {8}};
    uint32_t ty[2] = {TENSOR_F32, TENSOR_F32};
    uint64_t off[2] = {0, 128};
    tensor_file(&x, 2, nm, nd, ne, ty, off, 160);
    {
        gguf_file *f;
        err_msg e;
        assert_int_equal(gguf_open_mem(x.b, x.n, &f, &e), 0);
        gguf_close(f);
    }
    // Past the end of the file by one byte.
    tensor_file(&x, 2, nm, nd, ne, ty, off, 159);
    expect_fail(x.b, x.n, ERR_FORMAT, "tensor \"b\": offset 128 is past end of file");
    // Huge offset (the STYLE.md example).
    off[0] = 5383208929597152;
    tensor_file(&x, 2, nm, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT,
                "tensor \"blk.0.attn_k.weight\": offset 5383208929597152 is past end of file");
    off[0] = UINT64_MAX - 31; // aligned, and offset + size overflows
    tensor_file(&x, 2, nm, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "past end of file");
    // Misaligned offset.
    off[0] = 4;
    tensor_file(&x, 2, nm, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "offset 4 is not a multiple of the alignment 32");
    // Overlap.
    off[0] = 0;
    off[1] = 96;
    tensor_file(&x, 2, nm, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "overlaps tensor \"blk.0.attn_k.weight\"");
    off[1] = 128;
    // Overflowing dimensions.
    uint64_t big[2][4] = {{1ull << 32, 1ull << 32}, {8}};
    tensor_file(&x, 2, nm, nd, big, ty, off, 160);
    expect_fail(x.b, x.n, ERR_OVERFLOW, "dimensions overflow");
    uint64_t big2[2][4] = {{UINT64_MAX, 1}, {8}};
    tensor_file(&x, 2, nm, nd, big2, ty, off, 160);
    expect_fail(x.b, x.n, ERR_OVERFLOW, "dimensions overflow");
    // Product fits in int64 but bytes do not fit.
    uint64_t big3[2][4] = {{1ull << 62, 1}, {8}};
    tensor_file(&x, 2, nm, nd, big3, ty, off, 160);
    expect_fail(x.b, x.n, ERR_OVERFLOW, "");
    uint64_t zero[2][4] = {{8, 0}, {8}};
    tensor_file(&x, 2, nm, nd, zero, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "dimension 1 is 0");
    // Bad dimension count.
    uint32_t nd5[2] = {5, 1};
    tensor_file(&x, 2, nm, nd5, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "has 5 dimensions");
    // Unknown and known-but-unsupported types.
    uint32_t ty99[2] = {99, TENSOR_F32};
    tensor_file(&x, 2, nm, nd, ne, ty99, off, 160);
    expect_fail(x.b, x.n, ERR_UNSUPPORTED, "tensor \"blk.0.attn_k.weight\" has unknown type 99");
    uint32_t ty13[2] = {TENSOR_F32, 13};
    uint64_t ne256[2][4] = {{8, 4}, {256}};
    tensor_file(&x, 2, nm, nd, ne256, ty13, off, 400);
    expect_fail(x.b, x.n, ERR_UNSUPPORTED, "tensor \"b\" has type q5_K (13)");
    // Row not a whole number of blocks.
    uint32_t tyq[2] = {TENSOR_Q8_0, TENSOR_F32};
    uint64_t ne33[2][4] = {{33, 1}, {8}};
    tensor_file(&x, 2, nm, nd, ne33, tyq, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "not a whole number of q8_0 blocks");
    // Duplicate names.
    const char *dup[2] = {"b", "b"};
    tensor_file(&x, 2, dup, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "duplicate tensor name \"b\"");
    // Empty and over-long names.
    const char *longn[2] = {"a",
                            "0123456789012345678901234567890123456789012345678901234567890123"};
    tensor_file(&x, 2, longn, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "name is 64 bytes");
    const char *empty[2] = {"a", ""};
    tensor_file(&x, 2, empty, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "name is 0 bytes");
    // Control characters in names do not break the one-line message.
    const char *ctl[2] = {"a\nb", "b"};
    off[0] = 5383208929597152;
    tensor_file(&x, 2, ctl, nd, ne, ty, off, 160);
    expect_fail(x.b, x.n, ERR_FORMAT, "tensor \"a?b\"");
}

static void test_open_errors(void **state)
{
    (void)state;
    gguf_file *f;
    err_msg e;
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &f, &e), ERR_IO);
    assert_non_null(strstr(e.text, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open("/tmp", &f, &e), ERR_IO);
    char path[] = "/tmp/ferry_gguf_testXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(gguf_open(path, &f, &e), ERR_FORMAT); // empty file
    assert_non_null(strstr(e.text, "truncated"));
    FILE *fp = fdopen(fd, "w");
    fputs("hello, world, not a gguf file at all", fp);
    fclose(fp);
    assert_int_equal(gguf_open(path, &f, &e), ERR_FORMAT);
    assert_non_null(strstr(e.text, "bad magic"));
    // A real file on disk round-trips through mmap.
    sample s;
    make_sample(&s, 32);
    fp = fopen(path, "wb");
    fwrite(s.bytes, 1, s.size, fp);
    fclose(fp);
    assert_int_equal(gguf_open(path, &f, &e), 0);
    check_sample(f, &s, 32);
    gguf_close(f);
    unlink(path);
    free(s.bytes);
}

/* ---- real files from ../shared */

static const char *shared_dir(void)
{
    const char *d = getenv("FERRY_SHARED");
    struct stat st;
    if (!d || stat(d, &st) != 0)
        return NULL;
    return d;
}

static void test_shared_stories(void **state)
{
    (void)state;
    const char *d = shared_dir();
    char path[1024];
    struct stat st;
    if (!d || (snprintf(path, sizeof path, "%s/models/stories260K/stories260K.gguf", d),
               stat(path, &st) != 0)) {
        print_message("SKIP: FERRY_SHARED models/stories260K absent\n");
        skip();
    }
    gguf_file *f;
    err_msg e;
    if (gguf_open(path, &f, &e))
        fail_msg("%s", e.text);
    assert_int_equal(gguf_version(f), 3);
    str arch;
    assert_int_equal(gguf_get_str(f, "general.architecture", &arch, &e), 0);
    assert_true(str_eq_cstr(arch, "llama"));
    int64_t v;
    assert_int_equal(gguf_get_int(f, "llama.block_count", 0, 1000, &v, &e), 0);
    assert_int_equal(v, 5);
    assert_int_equal(gguf_get_int(f, "llama.embedding_length", 0, 100000, &v, &e), 0);
    assert_int_equal(v, 64);
    assert_int_equal(gguf_get_int(f, "llama.context_length", 0, 1 << 30, &v, &e), 0);
    assert_int_equal(v, 512);
    const gguf_value *tok;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &e), 0);
    assert_int_equal(gguf_arr_len(tok), 512);
    str s;
    assert_int_equal(gguf_arr_str(tok, 1, &s), 0);
    assert_true(str_eq_cstr(s, "<s>"));
    const gguf_tensor *t;
    uint64_t ne[2] = {64, 512};
    if (gguf_require_tensor(f, "token_embd.weight", 2, ne, &t, &e))
        fail_msg("%s", e.text);
    assert_int_equal(t->type, TENSOR_F32);
    for (size_t i = 0; i < gguf_tensor_count(f); i++)
        assert_int_equal(gguf_tensor_at(f, i)->type, TENSOR_F32);

    // Rewriting the file with our writer reproduces llama.cpp's bytes exactly:
    // same layout, alignment and padding.
    gguf_writer *w = gguf_writer_new();
    for (size_t i = 0; i < gguf_kv_count(f); i++) {
        str key = gguf_kv_key(f, i);
        char kz[256];
        assert_true(key.n < sizeof kz);
        snprintf(kz, sizeof kz, "%.*s", (int)key.n, key.p);
        assert_int_equal(gguf_writer_set_value(w, kz, gguf_kv_value(f, i)), 0);
    }
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *ti = gguf_tensor_at(f, i);
        char nz[64];
        snprintf(nz, sizeof nz, "%.*s", (int)ti->name.n, ti->name.p);
        assert_int_equal(gguf_writer_add_tensor(w, nz, ti->type, ti->n_dims, ti->ne, &e), 0);
    }
    char *p = NULL;
    size_t n = 0;
    FILE *fp = open_memstream(&p, &n);
    assert_int_equal(gguf_writer_begin(w, fp, &e), 0);
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *ti = gguf_tensor_at(f, i);
        assert_int_equal(gguf_writer_write(w, ti->data, ti->size, &e), 0);
    }
    assert_int_equal(gguf_writer_finish(w, &e), 0);
    fclose(fp);
    assert_int_equal(n, gguf_file_size(f));
    assert_memory_equal(p, gguf_file_bytes(f), n);
    free(p);
    gguf_writer_free(w);
    gguf_close(f);
}

static void test_shared_vocabs(void **state)
{
    (void)state;
    const char *d = shared_dir();
    char dir[1024];
    DIR *dp = NULL;
    if (d) {
        snprintf(dir, sizeof dir, "%s/tokenizer-tests", d);
        dp = opendir(dir);
    }
    if (!dp) {
        print_message("SKIP: FERRY_SHARED tokenizer-tests absent\n");
        skip();
    }
    int n_files = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".gguf") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        gguf_file *f;
        err_msg e;
        if (gguf_open(path, &f, &e))
            fail_msg("%s: %s", path, e.text);
        const gguf_value *tok;
        assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, &e), 0);
        assert_true(gguf_arr_len(tok) > 1000);
        str model;
        assert_int_equal(gguf_get_str(f, "tokenizer.ggml.model", &model, &e), 0);
        if (strcmp(de->d_name, "ggml-vocab-gpt-2.gguf") == 0) {
            assert_int_equal(gguf_arr_len(tok), 50257);
            assert_true(str_eq_cstr(model, "gpt2"));
            const gguf_value *merges;
            assert_int_equal(
                gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges, &e), 0);
            str m0;
            assert_int_equal(gguf_arr_str(merges, 0, &m0), 0);
            assert_true(str_eq_cstr(m0, "Ġ t"));
        }
        gguf_close(f);
        n_files++;
    }
    closedir(dp);
    assert_true(n_files >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),         cmocka_unit_test(test_streaming_writer),
        cmocka_unit_test(test_truncated_prefixes), cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_metadata),       cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_open_errors),        cmocka_unit_test(test_shared_stories),
        cmocka_unit_test(test_shared_vocabs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
