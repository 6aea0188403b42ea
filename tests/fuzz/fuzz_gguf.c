// FUZZ_MODULES: base model
// FUZZ_SECONDS: 60
// FUZZ_LIBS: libpcre2-8 libutf8proc
/*
 * libFuzzer harness for the GGUF reader: any byte string must either be
 * refused with an error or parse into a file whose every value, array element
 * and tensor byte can be read without leaving the input. Accepted files are
 * also copied through the writer and re-read, which must succeed and give the
 * same counts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk_value(const gguf_value *v)
{
    int64_t i64;
    uint64_t u64;
    double d;
    bool b;
    str s;
    if (gguf_value_i64(v, &i64) == 0)
        sink += (uint64_t)i64;
    if (gguf_value_u64(v, &u64) == 0)
        sink += u64;
    if (gguf_value_f64(v, &d) == 0)
        sink += (uint64_t)(d == d);
    if (gguf_value_bool(v, &b) == 0)
        sink += b;
    if (gguf_value_str(v, &s) == 0 && s.n)
        sink += (uint8_t)s.p[s.n - 1];
    size_t n = gguf_arr_len(v);
    for (size_t i = 0; i < n; i++) {
        if (gguf_arr_str(v, i, &s) == 0 && s.n)
            sink += (uint8_t)s.p[0] + (uint8_t)s.p[s.n - 1];
        if (gguf_arr_i64(v, i, &i64) == 0)
            sink += (uint64_t)i64;
        if (gguf_arr_f64(v, i, &d) == 0)
            sink += (uint64_t)(d == d);
        const gguf_value *c = gguf_arr_at(v, i);
        if (c)
            walk_value(c);
    }
    if (n && gguf_arr_data(v))
        sink += ((const uint8_t *)gguf_arr_data(v))[n * gguf_type_size(gguf_arr_type(v)) - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f;
    err_msg e;
    if (gguf_open_mem(data, size, &f, &e) != 0) {
        if (!e.text[0] || strchr(e.text, '\n'))
            abort(); // every refusal carries one line of detail
        return 0;
    }
    int64_t i64;
    str s;
    (void)gguf_get_int(f, "general.alignment", 0, INT64_MAX, &i64, NULL);
    (void)gguf_get_str(f, "general.architecture", &s, NULL);
    gguf_writer *w = gguf_writer_new();
    int rc = w ? 0 : -1;
    for (size_t i = 0; i < gguf_kv_count(f); i++) {
        str key = gguf_kv_key(f, i);
        const gguf_value *v = gguf_kv_value(f, i);
        walk_value(v);
        char kz[128];
        // Keys with NULs or over 127 bytes cannot go through the C-string API: skip.
        if (key.n == 0 || key.n >= sizeof kz || memchr(key.p, 0, key.n))
            continue;
        memcpy(kz, key.p, key.n);
        kz[key.n] = 0;
        if (!rc && gguf_writer_set_value(w, kz, v) != 0)
            abort(); // a value the reader accepted must be accepted by the writer
    }
    size_t nt = gguf_tensor_count(f);
    for (size_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        sink += p[0] + p[t->size - 1] + gguf_tensor_nelems(t);
        char nz[GGUF_TENSOR_NAME_MAX + 1];
        memcpy(nz, t->name.p, t->name.n);
        nz[t->name.n] = 0;
        if (gguf_tensor_find(f, nz) == NULL && !memchr(t->name.p, 0, t->name.n))
            abort();
        if (!rc && !memchr(t->name.p, 0, t->name.n))
            rc = gguf_writer_add_tensor(w, nz, t->type, t->n_dims, t->ne, NULL);
        else
            rc = -1;
    }
    if (!rc) {
        char *out = NULL;
        size_t n_out = 0;
        FILE *fp = open_memstream(&out, &n_out);
        if (fp && gguf_writer_begin(w, fp, NULL) == 0) {
            for (size_t i = 0; i < nt && !rc; i++) {
                const gguf_tensor *t = gguf_tensor_at(f, i);
                rc = gguf_writer_write(w, t->data, t->size, NULL);
            }
            if (!rc && gguf_writer_finish(w, NULL) == 0) {
                fclose(fp);
                fp = NULL;
                gguf_file *g;
                if (gguf_open_mem(out, n_out, &g, &e) != 0)
                    abort(); // the writer produced a file the reader refuses
                if (gguf_tensor_count(g) != nt)
                    abort();
                gguf_close(g);
            }
        }
        if (fp)
            fclose(fp);
        free(out);
    }
    gguf_writer_free(w);
    gguf_close(f);
    return 0;
}
