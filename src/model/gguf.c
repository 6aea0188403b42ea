/*
 * model/gguf — GGUF v2/v3 reader (mmap, validating) and streaming writer.
 * The format and the validation rules are in gguf.h and docs/internals/gguf.md.
 *
 * Reader invariants, established once by parse() before any pointer is handed
 * out: every value, string and array lies inside the file; keys and tensor
 * names are unique; every tensor has 1..4 dimensions of at least 1 element
 * whose product fits in int64, a supported type, an aligned offset, and bytes
 * that lie inside the file without overlapping another tensor's.
 */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/tensor.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "gguf.c reads little-endian directly");

/* Smallest encodings, used to bound counts by the bytes left before allocating. */
#define MIN_KV_BYTES 13     /* key length (8) + type (4) + a 1-byte value */
#define MIN_TENSOR_BYTES 32 /* name length (8) + n_dims (4) + ne[0] (8) + type (4) + offset (8) */
#define MIN_STRING_BYTES 8
#define MIN_ARRAY_BYTES 12 /* elem_type (4) + count (8) */
#define HEADER_BYTES 24

struct gguf_value {
    uint32_t type;
    uint32_t elem_type; // arrays only
    uint64_t n;         // arrays: element count
    const uint8_t *enc; // encoding after the type tag
    size_t enc_len;
    const uint8_t *data;     // scalar bytes, string bytes, or first array element
    size_t data_len;         // string length
    str *strs;               // arrays of strings: n slices
    struct gguf_value *arrs; // arrays of arrays: n values
};

typedef struct gguf_kv {
    str key;
    gguf_value v;
} gguf_kv;

struct gguf_file {
    const uint8_t *base;
    size_t size;
    bool is_mapped;
    uint32_t version;
    size_t alignment;
    size_t data_off;
    gguf_kv *kvs;
    size_t n_kv;
    size_t *kv_by_key; // kv indices sorted by key
    gguf_tensor *tensors;
    size_t n_tensors;
    size_t *t_by_name; // tensor indices sorted by name
};

static const char *const type_names[GGUF_TYPE_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};
static const uint8_t type_sizes[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? type_names[t] : "invalid";
}

size_t gguf_type_size(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? type_sizes[t] : 0;
}

/*
 * Copies at most 64 bytes of s into buf for an error message, replacing
 * control and non-ASCII bytes by '?' so the message stays one printable line.
 */
static const char *printable(str s, char *buf, size_t cap)
{
    size_t n = MIN(s.n, MIN(cap - 4, (size_t)64));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        buf[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (n < s.n) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- reader */

/* A bounds-checked cursor over the file; every read names what it reads. */
typedef struct rd {
    const uint8_t *p;
    size_t size;
    size_t pos;
    err_msg *e;
} rd;

static int rd_need(rd *r, uint64_t n, const char *what)
{
    if (n > r->size - r->pos)
        return err_set(r->e, ERR_FORMAT,
                       "gguf: truncated file: %s at offset %zu needs %" PRIu64
                       " bytes, but the file is %zu bytes",
                       what, r->pos, n, r->size);
    return 0;
}

static int rd_u32(rd *r, uint32_t *out, const char *what)
{
    int rc = rd_need(r, 4, what);
    if (rc)
        return rc;
    memcpy(out, r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *out, const char *what)
{
    int rc = rd_need(r, 8, what);
    if (rc)
        return rc;
    memcpy(out, r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

static int rd_str(rd *r, str *out, const char *what)
{
    uint64_t n;
    int rc = rd_u64(r, &n, what);
    if (rc)
        return rc;
    rc = rd_need(r, n, what);
    if (rc)
        return rc;
    out->p = (const char *)r->p + r->pos;
    out->n = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

static void value_free(gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY)
        return;
    free(v->strs);
    if (v->arrs) {
        for (uint64_t i = 0; i < v->n; i++)
            value_free(&v->arrs[i]);
        free(v->arrs);
    }
    v->strs = NULL;
    v->arrs = NULL;
}

/* Parses a value of type at r's position into *v; what names it for errors. */
static int parse_value(rd *r, uint32_t type, int depth, gguf_value *v, const char *what)
{
    memset(v, 0, sizeof *v);
    v->type = type;
    size_t start = r->pos;
    v->enc = r->p + start;
    int rc;
    if (type >= GGUF_TYPE_COUNT)
        return err_set(r->e, ERR_FORMAT, "gguf: %s has unknown value type %" PRIu32, what, type);
    if (type == GGUF_TYPE_STRING) {
        str s;
        if ((rc = rd_str(r, &s, what)))
            return rc;
        v->data = (const uint8_t *)s.p;
        v->data_len = s.n;
    } else if (type == GGUF_TYPE_ARRAY) {
        if (depth >= GGUF_ARRAY_DEPTH_MAX)
            return err_set(r->e, ERR_FORMAT, "gguf: %s nests arrays deeper than the limit of %d",
                           what, GGUF_ARRAY_DEPTH_MAX);
        uint32_t et;
        uint64_t n;
        if ((rc = rd_u32(r, &et, what)) || (rc = rd_u64(r, &n, what)))
            return rc;
        if (et >= GGUF_TYPE_COUNT)
            return err_set(r->e, ERR_FORMAT,
                           "gguf: %s is an array of unknown element type %" PRIu32, what, et);
        v->elem_type = et;
        v->data = r->p + r->pos;
        size_t left = r->size - r->pos;
        if (type_sizes[et]) {
            uint64_t bytes;
            if (!u64_mul_ok(n, type_sizes[et], &bytes) || bytes > left)
                return err_set(r->e, ERR_FORMAT,
                               "gguf: truncated file: %s claims %" PRIu64 " elements of %s, "
                               "more than the %zu bytes left in the file",
                               what, n, type_names[et], left);
            r->pos += (size_t)bytes;
            v->n = n;
        } else {
            size_t min = et == GGUF_TYPE_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES;
            if (n > left / min)
                return err_set(r->e, ERR_FORMAT,
                               "gguf: truncated file: %s claims %" PRIu64 " elements of %s, "
                               "more than the %zu bytes left in the file",
                               what, n, type_names[et], left);
            // n * (16 or sizeof(gguf_value)) is now bounded by a small multiple of the file size.
            if (et == GGUF_TYPE_STRING) {
                if (n && !(v->strs = malloc((size_t)n * sizeof(str))))
                    return err_set(r->e, ERR_NOMEM, "gguf: out of memory for %s", what);
                v->n = n;
                for (uint64_t i = 0; i < n; i++)
                    if ((rc = rd_str(r, &v->strs[i], what)))
                        return rc;
            } else {
                if (n && !(v->arrs = calloc((size_t)n, sizeof(gguf_value))))
                    return err_set(r->e, ERR_NOMEM, "gguf: out of memory for %s", what);
                for (uint64_t i = 0; i < n; i++) {
                    uint32_t t2;
                    v->n = i; // only parsed children are freed on error
                    if ((rc = rd_need(r, MIN_ARRAY_BYTES, what)))
                        return rc;
                    t2 = GGUF_TYPE_ARRAY;
                    if ((rc = parse_value(r, t2, depth + 1, &v->arrs[i], what))) {
                        value_free(&v->arrs[i]);
                        return rc;
                    }
                }
                v->n = n;
            }
        }
    } else {
        if ((rc = rd_need(r, type_sizes[type], what)))
            return rc;
        v->data = r->p + r->pos;
        r->pos += type_sizes[type];
    }
    v->enc_len = r->pos - start;
    return 0;
}

static int cmp_str(str a, str b)
{
    int c = memcmp(a.p, b.p, MIN(a.n, b.n));
    if (c)
        return c;
    return a.n < b.n ? -1 : a.n > b.n;
}

static int cmp_kv_idx(const void *a, const void *b, void *ctx)
{
    const gguf_kv *kvs = ctx;
    return cmp_str(kvs[*(const size_t *)a].key, kvs[*(const size_t *)b].key);
}

static int cmp_tensor_name(const void *a, const void *b, void *ctx)
{
    const gguf_tensor *ts = ctx;
    return cmp_str(ts[*(const size_t *)a].name, ts[*(const size_t *)b].name);
}

static int cmp_tensor_off(const void *a, const void *b, void *ctx)
{
    const gguf_tensor *ts = ctx;
    uint64_t x = ts[*(const size_t *)a].offset, y = ts[*(const size_t *)b].offset;
    return x < y ? -1 : x > y;
}

static int parse_kvs(gguf_file *f, rd *r, uint64_t n_kv)
{
    err_msg *e = r->e;
    char what[160], kb[80];
    int rc;
    if (n_kv && !(f->kvs = calloc((size_t)n_kv, sizeof(gguf_kv))))
        return err_set(e, ERR_NOMEM, "gguf: out of memory for %" PRIu64 " metadata pairs", n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        uint32_t type;
        snprintf(what, sizeof what, "the key of metadata pair %" PRIu64, i);
        if ((rc = rd_str(r, &kv->key, what)))
            return rc;
        snprintf(what, sizeof what, "the value of key \"%s\"", printable(kv->key, kb, sizeof kb));
        if ((rc = rd_u32(r, &type, what)))
            return rc;
        rc = parse_value(r, type, 0, &kv->v, what);
        f->n_kv = (size_t)i + 1; // so gguf_close frees what this value allocated
        if (rc)
            return rc;
    }
    if (f->n_kv && !(f->kv_by_key = malloc(f->n_kv * sizeof(size_t))))
        return err_set(e, ERR_NOMEM, "gguf: out of memory");
    for (size_t i = 0; i < f->n_kv; i++)
        f->kv_by_key[i] = i;
    if (f->n_kv > 1)
        qsort_r(f->kv_by_key, f->n_kv, sizeof(size_t), cmp_kv_idx, f->kvs);
    for (size_t i = 1; i < f->n_kv; i++)
        if (str_eq(f->kvs[f->kv_by_key[i]].key, f->kvs[f->kv_by_key[i - 1]].key))
            return err_set(e, ERR_FORMAT, "gguf: duplicate metadata key \"%s\"",
                           printable(f->kvs[f->kv_by_key[i]].key, kb, sizeof kb));

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_value *av = gguf_find_value(f, GGUF_KEY_ALIGNMENT);
    if (av) {
        uint32_t a;
        if (av->type != GGUF_TYPE_UINT32)
            return err_set(e, ERR_FORMAT, "gguf: %s has type %s, expected uint32",
                           GGUF_KEY_ALIGNMENT, gguf_type_name(av->type));
        memcpy(&a, av->data, 4);
        if (a == 0 || (a & (a - 1)) != 0 || a > GGUF_ALIGNMENT_MAX)
            return err_set(e, ERR_FORMAT,
                           "gguf: %s is %" PRIu32 ", not a power of two between 1 and %d",
                           GGUF_KEY_ALIGNMENT, a, GGUF_ALIGNMENT_MAX);
        f->alignment = a;
    }
    return 0;
}

static int parse_tensor_info(gguf_file *f, rd *r, uint64_t i)
{
    err_msg *e = r->e;
    gguf_tensor *t = &f->tensors[i];
    char what[160], nb[80];
    int rc;
    snprintf(what, sizeof what, "the name of tensor %" PRIu64, i);
    if ((rc = rd_str(r, &t->name, what)))
        return rc;
    const char *nm = printable(t->name, nb, sizeof nb);
    if (t->name.n == 0 || t->name.n > GGUF_TENSOR_NAME_MAX)
        return err_set(e, ERR_FORMAT,
                       "gguf: tensor %" PRIu64 " \"%s\": name is %zu bytes, outside 1..%d", i, nm,
                       t->name.n, GGUF_TENSOR_NAME_MAX);
    snprintf(what, sizeof what, "the info of tensor \"%s\"", nm);
    if ((rc = rd_u32(r, &t->n_dims, what)))
        return rc;
    if (t->n_dims < 1 || t->n_dims > GGUF_DIMS_MAX)
        return err_set(e, ERR_FORMAT,
                       "gguf: tensor \"%s\" has %" PRIu32 " dimensions, outside 1..%d", nm,
                       t->n_dims, GGUF_DIMS_MAX);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_DIMS_MAX; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims)
            continue;
        if ((rc = rd_u64(r, &t->ne[d], what)))
            return rc;
        if (t->ne[d] == 0)
            return err_set(e, ERR_FORMAT, "gguf: tensor \"%s\": dimension %" PRIu32 " is 0", nm, d);
        if (!u64_mul_ok(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return err_set(e, ERR_OVERFLOW,
                           "gguf: tensor \"%s\": dimensions overflow (ne[%" PRIu32 "] = %" PRIu64
                           " makes more than 2^63 elements)",
                           nm, d, t->ne[d]);
    }
    if ((rc = rd_u32(r, &t->type, what)) || (rc = rd_u64(r, &t->offset, what)))
        return rc;
    if (!tensor_type_supported(t->type)) {
        const char *tn = tensor_type_name(t->type);
        if (strcmp(tn, "unknown") == 0)
            return err_set(e, ERR_UNSUPPORTED, "gguf: tensor \"%s\" has unknown type %" PRIu32, nm,
                           t->type);
        return err_set(e, ERR_UNSUPPORTED,
                       "gguf: tensor \"%s\" has type %s (%" PRIu32
                       "), which ferry does not support",
                       nm, tn, t->type);
    }
    size_t row;
    rc = tensor_row_bytes((tensor_type)t->type, t->ne[0], &row);
    if (rc == ERR_FORMAT)
        return err_set(e, ERR_FORMAT,
                       "gguf: tensor \"%s\": row of %" PRIu64
                       " elements is not a whole number of %s blocks",
                       nm, t->ne[0], tensor_type_name(t->type));
    if (rc)
        return err_set(e, rc, "gguf: tensor \"%s\": row of %" PRIu64 " %s elements is too large",
                       nm, t->ne[0], tensor_type_name(t->type));
    if (!size_mul_ok(row, (size_t)(nel / t->ne[0]), &t->size))
        return err_set(e, ERR_OVERFLOW, "gguf: tensor \"%s\": byte size overflows", nm);
    if (t->offset % f->alignment != 0)
        return err_set(e, ERR_FORMAT,
                       "gguf: tensor \"%s\": offset %" PRIu64
                       " is not a multiple of the alignment %zu",
                       nm, t->offset, f->alignment);
    return 0;
}

static int parse_tensors(gguf_file *f, rd *r, uint64_t n_tensors)
{
    err_msg *e = r->e;
    char nb[80], nb2[80];
    int rc;
    if (n_tensors && !(f->tensors = calloc((size_t)n_tensors, sizeof(gguf_tensor))))
        return err_set(e, ERR_NOMEM, "gguf: out of memory for %" PRIu64 " tensors", n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++)
        if ((rc = parse_tensor_info(f, r, i)))
            return rc;
    f->n_tensors = (size_t)n_tensors;

    // The data section starts at the next multiple of the alignment (a file of
    // metadata only may end before it).
    size_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    if (!size_add_ok(r->pos, pad, &f->data_off))
        return err_set(e, ERR_OVERFLOW, "gguf: data offset overflows");
    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t start, end;
        const char *nm = printable(t->name, nb, sizeof nb);
        if (!u64_add_ok(f->data_off, t->offset, &start) || !u64_add_ok(start, t->size, &end) ||
            end > f->size)
            return err_set(e, ERR_FORMAT,
                           "gguf: tensor \"%s\": offset %" PRIu64
                           " is past end of file (%zu bytes): its %zu bytes would start at "
                           "file offset %zu + %" PRIu64,
                           nm, t->offset, f->size, t->size, f->data_off, t->offset);
        t->data = f->base + start;
    }

    size_t *by_off = NULL;
    if (f->n_tensors) {
        f->t_by_name = malloc(f->n_tensors * sizeof(size_t));
        by_off = malloc(f->n_tensors * sizeof(size_t));
        if (!f->t_by_name || !by_off) {
            free(by_off);
            return err_set(e, ERR_NOMEM, "gguf: out of memory");
        }
    }
    for (size_t i = 0; i < f->n_tensors; i++)
        f->t_by_name[i] = by_off[i] = i;
    if (f->n_tensors > 1) {
        qsort_r(f->t_by_name, f->n_tensors, sizeof(size_t), cmp_tensor_name, f->tensors);
        qsort_r(by_off, f->n_tensors, sizeof(size_t), cmp_tensor_off, f->tensors);
    }
    rc = 0;
    for (size_t i = 1; i < f->n_tensors && !rc; i++) {
        const gguf_tensor *a = &f->tensors[f->t_by_name[i - 1]], *b = &f->tensors[f->t_by_name[i]];
        if (str_eq(a->name, b->name))
            rc = err_set(e, ERR_FORMAT, "gguf: duplicate tensor name \"%s\"",
                         printable(b->name, nb, sizeof nb));
    }
    for (size_t i = 1; i < f->n_tensors && !rc; i++) {
        const gguf_tensor *a = &f->tensors[by_off[i - 1]], *b = &f->tensors[by_off[i]];
        if (a->offset + a->size > b->offset) // cannot overflow: both lie inside the file
            rc = err_set(e, ERR_FORMAT,
                         "gguf: tensor \"%s\": offset %" PRIu64
                         " overlaps tensor \"%s\" (offset %" PRIu64 ", %zu bytes)",
                         printable(b->name, nb, sizeof nb), b->offset,
                         printable(a->name, nb2, sizeof nb2), a->offset, a->size);
    }
    free(by_off);
    return rc;
}

static int parse(gguf_file *f, err_msg *e)
{
    rd r = {.p = f->base, .size = f->size, .pos = 0, .e = e};
    int rc;
    if (f->size < 4)
        return err_set(e, ERR_FORMAT,
                       "gguf: truncated file: %zu bytes, shorter than the %d-byte GGUF header",
                       f->size, HEADER_BYTES);
    if (memcmp(f->base, GGUF_MAGIC, 4) != 0) {
        uint32_t m;
        memcpy(&m, f->base, 4);
        return err_set(e, ERR_FORMAT,
                       "gguf: bad magic 0x%08" PRIx32 " (expected \"GGUF\"): not a GGUF file", m);
    }
    if (f->size < HEADER_BYTES)
        return err_set(e, ERR_FORMAT,
                       "gguf: truncated file: %zu bytes, shorter than the %d-byte GGUF header",
                       f->size, HEADER_BYTES);
    r.pos = 4;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u32(&r, &version, "the version")))
        return rc;
    if (version == 1)
        return err_set(e, ERR_UNSUPPORTED,
                       "gguf: version 1 is not supported (ferry reads versions 2 and 3)");
    if (version != 2 && version != 3) {
        uint32_t sw = __builtin_bswap32(version);
        if (sw >= 1 && sw <= 3)
            return err_set(e, ERR_UNSUPPORTED,
                           "gguf: big-endian GGUF (version %" PRIu32 ") is not supported", sw);
        return err_set(e, ERR_FORMAT,
                       "gguf: unsupported version %" PRIu32 " (ferry reads versions 2 and 3)",
                       version);
    }
    f->version = version;
    if ((rc = rd_u64(&r, &n_tensors, "the tensor count")) ||
        (rc = rd_u64(&r, &n_kv, "the metadata count")))
        return rc;
    size_t left = f->size - r.pos;
    if (n_kv > left / MIN_KV_BYTES)
        return err_set(e, ERR_FORMAT,
                       "gguf: truncated file: header claims %" PRIu64
                       " metadata pairs, more than the %zu bytes after it can hold",
                       n_kv, left);
    if (n_tensors > left / MIN_TENSOR_BYTES)
        return err_set(e, ERR_FORMAT,
                       "gguf: truncated file: header claims %" PRIu64
                       " tensors, more than the %zu bytes after it can hold",
                       n_tensors, left);
    if ((rc = parse_kvs(f, &r, n_kv)))
        return rc;
    return parse_tensors(f, &r, n_tensors);
}

static int open_common(gguf_file *f, gguf_file **out, err_msg *e)
{
    int rc = parse(f, e);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int gguf_open_mem(const void *p, size_t n, gguf_file **out, err_msg *e)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return err_set(e, ERR_NOMEM, "gguf: out of memory");
    f->base = p;
    f->size = p ? n : 0;
    return open_common(f, out, e);
}

int gguf_open(const char *path, gguf_file **out, err_msg *e)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_IO, "gguf: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = err_set(e, ERR_IO, "gguf: cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_IO, "gguf: %s is not a regular file", path);
    }
    if (st.st_size < HEADER_BYTES) {
        // Read what is there so the error says "bad magic" rather than
        // "truncated" for short non-GGUF files; mmap of 0 bytes would fail.
        uint8_t small[HEADER_BYTES];
        ssize_t got = pread(fd, small, sizeof small, 0);
        close(fd);
        if (got < 0)
            return err_set(e, ERR_IO, "gguf: cannot read %s: %s", path, strerror(errno));
        gguf_file tmp = {.base = small, .size = (size_t)got};
        int rc = parse(&tmp, e);
        if (rc == 0) // only possible if the file grew after fstat
            rc = err_set(e, ERR_IO, "gguf: %s changed while being opened", path);
        return rc;
    }
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return err_set(e, ERR_NOMEM, "gguf: out of memory");
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        free(f);
        return err_set(e, ERR_IO, "gguf: cannot map %s: %s", path, strerror(errno));
    }
    f->base = m;
    f->is_mapped = true;
    return open_common(f, out, e);
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_kv; i++)
        value_free(&f->kvs[i].v);
    free(f->kvs);
    free(f->kv_by_key);
    free(f->tensors);
    free(f->t_by_name);
    if (f->is_mapped)
        munmap((void *)f->base, f->size);
    free(f);
}

uint32_t gguf_version(const gguf_file *f)
{
    return f->version;
}
size_t gguf_file_size(const gguf_file *f)
{
    return f->size;
}
size_t gguf_alignment(const gguf_file *f)
{
    return f->alignment;
}
size_t gguf_data_offset(const gguf_file *f)
{
    return f->data_off;
}
const void *gguf_file_bytes(const gguf_file *f)
{
    return f->base;
}

size_t gguf_kv_count(const gguf_file *f)
{
    return f->n_kv;
}

str gguf_kv_key(const gguf_file *f, size_t i)
{
    ASSERT(i < f->n_kv);
    return f->kvs[i].key;
}

const gguf_value *gguf_kv_value(const gguf_file *f, size_t i)
{
    ASSERT(i < f->n_kv);
    return &f->kvs[i].v;
}

int64_t gguf_find_key(const gguf_file *f, const char *key)
{
    str k = str_from(key);
    size_t lo = 0, hi = f->n_kv;
    // kv_by_key may be incomplete while parse_kvs runs: it is only used after sorting.
    if (!f->kv_by_key)
        return -1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_str(f->kvs[f->kv_by_key[mid]].key, k);
        if (c == 0)
            return (int64_t)f->kv_by_key[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const gguf_value *gguf_find_value(const gguf_file *f, const char *key)
{
    int64_t i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kvs[i].v;
}

/* ---- values */

gguf_type gguf_value_type(const gguf_value *v)
{
    return (gguf_type)v->type;
}

static bool is_int_type(uint32_t t)
{
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* Reads an integer element of type t at p as a sign flag and magnitude-free pair. */
static void read_int(uint32_t t, const uint8_t *p, int64_t *s, uint64_t *u, bool *is_neg)
{
    *is_neg = false;
    switch (t) {
    case GGUF_TYPE_UINT8:
        *u = p[0];
        break;
    case GGUF_TYPE_INT8:
        *s = (int8_t)p[0];
        *is_neg = *s < 0;
        *u = (uint64_t)*s;
        break;
    case GGUF_TYPE_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        *u = x;
        break;
    }
    case GGUF_TYPE_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        *s = x;
        *is_neg = x < 0;
        *u = (uint64_t)*s;
        break;
    }
    case GGUF_TYPE_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        *u = x;
        break;
    }
    case GGUF_TYPE_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        *s = x;
        *is_neg = x < 0;
        *u = (uint64_t)*s;
        break;
    }
    case GGUF_TYPE_UINT64:
        memcpy(u, p, 8);
        break;
    default: {
        int64_t x;
        memcpy(&x, p, 8);
        *s = x;
        *is_neg = x < 0;
        *u = (uint64_t)x;
        break;
    }
    }
    if (!*is_neg)
        *s = (int64_t)*u; // may wrap for u64 > INT64_MAX; callers check
}

static int elem_i64(uint32_t t, const uint8_t *p, int64_t *out)
{
    int64_t s = 0;
    uint64_t u = 0;
    bool neg;
    read_int(t, p, &s, &u, &neg);
    if (!neg && u > (uint64_t)INT64_MAX)
        return ERR_FORMAT;
    *out = neg ? s : (int64_t)u;
    return 0;
}

int gguf_value_i64(const gguf_value *v, int64_t *out)
{
    if (!is_int_type(v->type))
        return ERR_FORMAT;
    return elem_i64(v->type, v->data, out);
}

int gguf_value_u64(const gguf_value *v, uint64_t *out)
{
    if (!is_int_type(v->type))
        return ERR_FORMAT;
    int64_t s = 0;
    uint64_t u = 0;
    bool neg;
    read_int(v->type, v->data, &s, &u, &neg);
    if (neg)
        return ERR_FORMAT;
    *out = u;
    return 0;
}

static int elem_f64(uint32_t t, const uint8_t *p, double *out)
{
    if (t == GGUF_TYPE_FLOAT32) {
        float x;
        memcpy(&x, p, 4);
        *out = x;
        return 0;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        memcpy(out, p, 8);
        return 0;
    }
    return ERR_FORMAT;
}

int gguf_value_f64(const gguf_value *v, double *out)
{
    return elem_f64(v->type, v->data, out);
}

int gguf_value_bool(const gguf_value *v, bool *out)
{
    if (v->type != GGUF_TYPE_BOOL)
        return ERR_FORMAT;
    *out = v->data[0] != 0;
    return 0;
}

int gguf_value_str(const gguf_value *v, str *out)
{
    if (v->type != GGUF_TYPE_STRING)
        return ERR_FORMAT;
    out->p = (const char *)v->data;
    out->n = v->data_len;
    return 0;
}

void gguf_value_raw(const gguf_value *v, const void **p, size_t *n)
{
    *p = v->enc;
    *n = v->enc_len;
}

gguf_type gguf_arr_type(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? (gguf_type)v->elem_type : GGUF_TYPE_COUNT;
}

size_t gguf_arr_len(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? (size_t)v->n : 0;
}

const void *gguf_arr_data(const gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY || !type_sizes[v->elem_type])
        return NULL;
    return v->data;
}

int gguf_arr_str(const gguf_value *v, size_t i, str *out)
{
    if (v->type != GGUF_TYPE_ARRAY || v->elem_type != GGUF_TYPE_STRING)
        return ERR_FORMAT;
    if (i >= v->n)
        return ERR_NOT_FOUND;
    *out = v->strs[i];
    return 0;
}

int gguf_arr_i64(const gguf_value *v, size_t i, int64_t *out)
{
    if (v->type != GGUF_TYPE_ARRAY || !is_int_type(v->elem_type))
        return ERR_FORMAT;
    if (i >= v->n)
        return ERR_NOT_FOUND;
    return elem_i64(v->elem_type, v->data + i * type_sizes[v->elem_type], out);
}

int gguf_arr_f64(const gguf_value *v, size_t i, double *out)
{
    if (v->type != GGUF_TYPE_ARRAY ||
        (v->elem_type != GGUF_TYPE_FLOAT32 && v->elem_type != GGUF_TYPE_FLOAT64))
        return ERR_FORMAT;
    if (i >= v->n)
        return ERR_NOT_FOUND;
    return elem_f64(v->elem_type, v->data + i * type_sizes[v->elem_type], out);
}

const gguf_value *gguf_arr_at(const gguf_value *v, size_t i)
{
    if (v->type != GGUF_TYPE_ARRAY || v->elem_type != GGUF_TYPE_ARRAY || i >= v->n)
        return NULL;
    return &v->arrs[i];
}

/* ---- key getters */

static int get_typed(const gguf_file *f, const char *key, uint32_t type, const gguf_value **v,
                     err_msg *e)
{
    *v = gguf_find_value(f, key);
    if (!*v)
        return err_set(e, ERR_NOT_FOUND, "gguf: missing metadata key \"%s\"", key);
    if ((*v)->type != type)
        return err_set(e, ERR_FORMAT, "gguf: metadata key \"%s\" has type %s, expected %s", key,
                       gguf_type_name((*v)->type), gguf_type_name(type));
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_UINT32, &v, e);
    if (!rc)
        memcpy(out, v->data, 4);
    return rc;
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_INT32, &v, e);
    if (!rc)
        memcpy(out, v->data, 4);
    return rc;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_UINT64, &v, e);
    if (!rc)
        memcpy(out, v->data, 8);
    return rc;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_FLOAT32, &v, e);
    if (!rc)
        memcpy(out, v->data, 4);
    return rc;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_BOOL, &v, e);
    if (!rc)
        *out = v->data[0] != 0;
    return rc;
}

int gguf_get_str(const gguf_file *f, const char *key, str *out, err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_STRING, &v, e);
    if (!rc)
        *out = (str){(const char *)v->data, v->data_len};
    return rc;
}

int gguf_get_int(const gguf_file *f, const char *key, int64_t min, int64_t max, int64_t *out,
                 err_msg *e)
{
    const gguf_value *v = gguf_find_value(f, key);
    if (!v)
        return err_set(e, ERR_NOT_FOUND, "gguf: missing metadata key \"%s\"", key);
    if (!is_int_type(v->type))
        return err_set(e, ERR_FORMAT, "gguf: metadata key \"%s\" has type %s, expected an integer",
                       key, gguf_type_name(v->type));
    int64_t s = 0;
    uint64_t u = 0;
    bool neg;
    read_int(v->type, v->data, &s, &u, &neg);
    if ((!neg && u > (uint64_t)INT64_MAX) || (neg ? s : (int64_t)u) < min ||
        (neg ? s : (int64_t)u) > max) {
        if (neg)
            return err_set(e, ERR_FORMAT,
                           "gguf: metadata key \"%s\" is %" PRId64 ", out of range %" PRId64
                           "..%" PRId64,
                           key, s, min, max);
        return err_set(e, ERR_FORMAT,
                       "gguf: metadata key \"%s\" is %" PRIu64 ", out of range %" PRId64
                       "..%" PRId64,
                       key, u, min, max);
    }
    *out = neg ? s : (int64_t)u;
    return 0;
}

int gguf_get_float(const gguf_file *f, const char *key, double *out, err_msg *e)
{
    const gguf_value *v = gguf_find_value(f, key);
    if (!v)
        return err_set(e, ERR_NOT_FOUND, "gguf: missing metadata key \"%s\"", key);
    if (elem_f64(v->type, v->data, out) != 0)
        return err_set(e, ERR_FORMAT, "gguf: metadata key \"%s\" has type %s, expected a float",
                       key, gguf_type_name(v->type));
    return 0;
}

int gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type, const gguf_value **out,
                 err_msg *e)
{
    const gguf_value *v;
    int rc = get_typed(f, key, GGUF_TYPE_ARRAY, &v, e);
    if (rc)
        return rc;
    if (elem_type < GGUF_TYPE_COUNT && v->elem_type != (uint32_t)elem_type)
        return err_set(e, ERR_FORMAT,
                       "gguf: metadata key \"%s\" is an array of %s, expected an array of %s", key,
                       gguf_type_name(v->elem_type), gguf_type_name(elem_type));
    *out = v;
    return 0;
}

/* ---- tensors */

size_t gguf_tensor_count(const gguf_file *f)
{
    return f->n_tensors;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
    ASSERT(i < f->n_tensors);
    return &f->tensors[i];
}

const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name)
{
    str k = str_from(name);
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = &f->tensors[f->t_by_name[mid]];
        int c = cmp_str(t->name, k);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t gguf_tensor_nelems(const gguf_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

static void fmt_shape(char *b, size_t cap, uint32_t n_dims, const uint64_t *ne)
{
    size_t used = 0;
    b[0] = '\0';
    for (uint32_t d = 0; d < n_dims && used < cap; d++) {
        int k = snprintf(b + used, cap - used, "%s%" PRIu64, d ? " x " : "[", ne[d]);
        if (k < 0)
            return;
        used += (size_t)k;
    }
    if (used < cap)
        snprintf(b + used, cap - used, "]");
}

int gguf_require_tensor(const gguf_file *f, const char *name, uint32_t n_dims, const uint64_t *ne,
                        const gguf_tensor **out, err_msg *e)
{
    ASSERT(n_dims >= 1 && n_dims <= GGUF_DIMS_MAX);
    *out = NULL;
    const gguf_tensor *t = gguf_tensor_find(f, name);
    if (!t)
        return err_set(e, ERR_NOT_FOUND, "gguf: missing tensor \"%s\"", name);
    bool ok = true;
    for (uint32_t d = 0; d < GGUF_DIMS_MAX; d++)
        ok = ok && t->ne[d] == (d < n_dims ? ne[d] : 1);
    if (!ok) {
        char have[128], want[128];
        fmt_shape(have, sizeof have, t->n_dims, t->ne);
        fmt_shape(want, sizeof want, n_dims, ne);
        return err_set(e, ERR_FORMAT, "gguf: tensor \"%s\" has shape %s, expected %s", name, have,
                       want);
    }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------------- writer */

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *enc;
    size_t enc_len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[GGUF_DIMS_MAX];
    uint64_t offset;
    size_t size;
} wtensor;

enum { W_DECLARE, W_DATA, W_DONE, W_FAILED };

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
    size_t alignment;
    int state;
    FILE *fp;
    size_t cur;         // tensor receiving data
    size_t cur_written; // bytes of it written so far
};

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].enc);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_t; i++)
        free(w->ts[i].name);
    free(w->ts);
    free(w);
}

/* Stores (key, type, enc) taking ownership of enc (freed on failure too). */
static int w_put(gguf_writer *w, const char *key, uint32_t type, uint8_t *enc, size_t enc_len)
{
    if (w->state != W_DECLARE || !key || !key[0]) {
        free(enc);
        return ERR_INVAL;
    }
    if (strcmp(key, GGUF_KEY_ALIGNMENT) == 0) {
        uint32_t a = 0;
        if (type == GGUF_TYPE_UINT32)
            memcpy(&a, enc, 4);
        if (type != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)) || a > GGUF_ALIGNMENT_MAX) {
            free(enc);
            return ERR_INVAL;
        }
        w->alignment = a;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].enc);
            w->kvs[i].type = type;
            w->kvs[i].enc = enc;
            w->kvs[i].enc_len = enc_len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *nk = realloc(w->kvs, nc * sizeof *nk);
        if (!nk) {
            free(enc);
            return ERR_NOMEM;
        }
        w->kvs = nk;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) {
        free(enc);
        return ERR_NOMEM;
    }
    w->kvs[w->n_kv++] = (wkv){k, type, enc, enc_len};
    return 0;
}

static int w_scalar(gguf_writer *w, const char *key, uint32_t type, const void *p)
{
    size_t n = type_sizes[type];
    uint8_t *enc = malloc(n);
    if (!enc)
        return ERR_NOMEM;
    memcpy(enc, p, n);
    return w_put(w, key, type, enc, n);
}

int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v)
{
    return w_scalar(w, key, GGUF_TYPE_UINT8, &v);
}
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v)
{
    return w_scalar(w, key, GGUF_TYPE_INT8, &v);
}
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v)
{
    return w_scalar(w, key, GGUF_TYPE_UINT16, &v);
}
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v)
{
    return w_scalar(w, key, GGUF_TYPE_INT16, &v);
}
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return w_scalar(w, key, GGUF_TYPE_UINT32, &v);
}
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return w_scalar(w, key, GGUF_TYPE_INT32, &v);
}
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    return w_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return w_scalar(w, key, GGUF_TYPE_BOOL, &b);
}
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return w_scalar(w, key, GGUF_TYPE_UINT64, &v);
}
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v)
{
    return w_scalar(w, key, GGUF_TYPE_INT64, &v);
}
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v)
{
    return w_scalar(w, key, GGUF_TYPE_FLOAT64, &v);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, str v)
{
    size_t n;
    if (!size_add_ok(v.n, 8, &n))
        return ERR_TOO_LARGE;
    uint8_t *enc = malloc(n);
    if (!enc)
        return ERR_NOMEM;
    uint64_t len = v.n;
    memcpy(enc, &len, 8);
    if (v.n)
        memcpy(enc + 8, v.p, v.n);
    return w_put(w, key, GGUF_TYPE_STRING, enc, n);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data,
                        size_t n)
{
    if ((uint32_t)elem_type >= GGUF_TYPE_COUNT || !type_sizes[elem_type])
        return ERR_INVAL;
    size_t bytes, total;
    if (!size_mul_ok(n, type_sizes[elem_type], &bytes) || !size_add_ok(bytes, 12, &total))
        return ERR_TOO_LARGE;
    uint8_t *enc = malloc(total);
    if (!enc)
        return ERR_NOMEM;
    uint32_t et = elem_type;
    uint64_t cnt = n;
    memcpy(enc, &et, 4);
    memcpy(enc + 4, &cnt, 8);
    if (bytes)
        memcpy(enc + 12, data, bytes);
    return w_put(w, key, GGUF_TYPE_ARRAY, enc, total);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const str *v, size_t n)
{
    size_t total = 12;
    for (size_t i = 0; i < n; i++)
        if (!size_add_ok(total, 8, &total) || !size_add_ok(total, v[i].n, &total))
            return ERR_TOO_LARGE;
    uint8_t *enc = malloc(total);
    if (!enc)
        return ERR_NOMEM;
    uint32_t et = GGUF_TYPE_STRING;
    uint64_t cnt = n;
    memcpy(enc, &et, 4);
    memcpy(enc + 4, &cnt, 8);
    size_t pos = 12;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = v[i].n;
        memcpy(enc + pos, &len, 8);
        pos += 8;
        if (v[i].n)
            memcpy(enc + pos, v[i].p, v[i].n);
        pos += v[i].n;
    }
    return w_put(w, key, GGUF_TYPE_ARRAY, enc, total);
}

int gguf_writer_set_raw(gguf_writer *w, const char *key, gguf_type type, const void *p, size_t n)
{
    // Validate by parsing: the bytes must be exactly one well-formed value.
    rd r = {.p = p, .size = n, .pos = 0, .e = NULL};
    gguf_value v;
    int rc = parse_value(&r, type, 0, &v, "raw value");
    value_free(&v);
    if (rc || r.pos != n)
        return ERR_FORMAT;
    uint8_t *enc = malloc(n ? n : 1);
    if (!enc)
        return ERR_NOMEM;
    if (n)
        memcpy(enc, p, n);
    return w_put(w, key, type, enc, n);
}

int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v)
{
    return gguf_writer_set_raw(w, key, (gguf_type)v->type, v->enc, v->enc_len);
}

int gguf_writer_remove(gguf_writer *w, const char *key)
{
    if (w->state != W_DECLARE)
        return ERR_INVAL;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].key);
            free(w->kvs[i].enc);
            memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof(wkv));
            w->n_kv--;
            break;
        }
    }
    if (strcmp(key, GGUF_KEY_ALIGNMENT) == 0)
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, err_msg *e)
{
    if (w->state != W_DECLARE)
        return err_set(e, ERR_INVAL, "gguf: add_tensor after the data was begun");
    size_t nl = name ? strlen(name) : 0;
    if (nl == 0 || nl > GGUF_TENSOR_NAME_MAX)
        return err_set(e, ERR_INVAL, "gguf: tensor name of %zu bytes is outside 1..%d", nl,
                       GGUF_TENSOR_NAME_MAX);
    if (!tensor_type_supported(type))
        return err_set(e, ERR_UNSUPPORTED,
                       "gguf: tensor \"%s\": type %s (%" PRIu32 ") is not supported", name,
                       tensor_type_name(type), type);
    if (n_dims < 1 || n_dims > GGUF_DIMS_MAX)
        return err_set(e, ERR_INVAL, "gguf: tensor \"%s\": %" PRIu32 " dimensions, outside 1..%d",
                       name, n_dims, GGUF_DIMS_MAX);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return err_set(e, ERR_INVAL, "gguf: duplicate tensor name \"%s\"", name);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        t.ne[d] = ne[d];
        if (ne[d] == 0 || !u64_mul_ok(nel, ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return err_set(e, ERR_OVERFLOW, "gguf: tensor \"%s\": bad or overflowing dimensions",
                           name);
    }
    size_t row;
    int rc = tensor_row_bytes((tensor_type)type, ne[0], &row);
    if (rc)
        return err_set(e, rc,
                       "gguf: tensor \"%s\": row of %" PRIu64 " elements does not fit type %s",
                       name, ne[0], tensor_type_name(type));
    if (!size_mul_ok(row, (size_t)(nel / ne[0]), &t.size))
        return err_set(e, ERR_OVERFLOW, "gguf: tensor \"%s\": byte size overflows", name);
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->ts, nc * sizeof *nt);
        if (!nt)
            return err_set(e, ERR_NOMEM, "gguf: out of memory");
        w->ts = nt;
        w->cap_t = nc;
    }
    if (!(t.name = strdup(name)))
        return err_set(e, ERR_NOMEM, "gguf: out of memory");
    w->ts[w->n_t++] = t;
    return 0;
}

size_t gguf_writer_tensor_size(const gguf_writer *w, size_t i)
{
    return i < w->n_t ? w->ts[i].size : 0;
}

static int w_out(gguf_writer *w, const void *p, size_t n, err_msg *e)
{
    if (n && fwrite(p, 1, n, w->fp) != n) {
        w->state = W_FAILED;
        return err_set(e, ERR_IO, "gguf: write failed: %s", strerror(errno));
    }
    return 0;
}

static int w_pad(gguf_writer *w, uint64_t pos, err_msg *e)
{
    static const uint8_t zeros[GGUF_ALIGNMENT_MAX];
    size_t pad = (size_t)((w->alignment - pos % w->alignment) % w->alignment);
    return w_out(w, zeros, pad, e);
}

int gguf_writer_begin(gguf_writer *w, FILE *fp, err_msg *e)
{
    if (w->state != W_DECLARE)
        return err_set(e, ERR_INVAL, "gguf: writer begun twice or after an error");
    w->fp = fp;
    // Offsets: each tensor starts at the previous one's end rounded up to the alignment.
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->ts[i].offset = off;
        uint64_t padded =
            w->ts[i].size + (w->alignment - w->ts[i].size % w->alignment) % w->alignment;
        if (!u64_add_ok(off, padded, &off))
            return err_set(e, ERR_OVERFLOW, "gguf: tensor data size overflows");
    }
    w->state = W_DATA;
    uint32_t version = GGUF_VERSION;
    uint64_t nt = w->n_t, nkv = w->n_kv;
    uint64_t pos = 0;
    int rc;
#define OUT(p, n)                                                                                  \
    do {                                                                                           \
        if ((rc = w_out(w, (p), (n), e)))                                                          \
            return rc;                                                                             \
        pos += (n);                                                                                \
    } while (0)
    OUT(GGUF_MAGIC, 4);
    OUT(&version, 4);
    OUT(&nt, 8);
    OUT(&nkv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kvs[i].key);
        OUT(&kl, 8);
        OUT(w->kvs[i].key, (size_t)kl);
        OUT(&w->kvs[i].type, 4);
        OUT(w->kvs[i].enc, w->kvs[i].enc_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->ts[i];
        uint64_t nl = strlen(t->name);
        OUT(&nl, 8);
        OUT(t->name, (size_t)nl);
        OUT(&t->n_dims, 4);
        OUT(t->ne, (size_t)t->n_dims * 8);
        OUT(&t->type, 4);
        OUT(&t->offset, 8);
    }
#undef OUT
    if ((rc = w_pad(w, pos, e)))
        return rc;
    w->cur = 0;
    w->cur_written = 0;
    // Zero-byte tensors cannot exist (dimensions are >= 1), so no tensor is complete yet.
    return 0;
}

int gguf_writer_write(gguf_writer *w, const void *p, size_t n, err_msg *e)
{
    if (w->state != W_DATA)
        return err_set(e, ERR_INVAL, "gguf: write outside begin..finish");
    const uint8_t *b = p;
    while (n > 0) {
        if (w->cur >= w->n_t) {
            w->state = W_FAILED;
            return err_set(e, ERR_INVAL, "gguf: %zu bytes of tensor data more than declared", n);
        }
        wtensor *t = &w->ts[w->cur];
        size_t take = MIN(n, t->size - w->cur_written);
        int rc = w_out(w, b, take, e);
        if (rc)
            return rc;
        b += take;
        n -= take;
        w->cur_written += take;
        if (w->cur_written == t->size) {
            if ((rc = w_pad(w, t->size, e)))
                return rc;
            w->cur++;
            w->cur_written = 0;
        }
    }
    return 0;
}

int gguf_writer_finish(gguf_writer *w, err_msg *e)
{
    if (w->state != W_DATA)
        return err_set(e, ERR_INVAL, "gguf: finish without begin, or after an error");
    if (w->cur < w->n_t) {
        w->state = W_FAILED;
        return err_set(e, ERR_INVAL, "gguf: tensor \"%s\" got %zu of its %zu bytes",
                       w->ts[w->cur].name, w->cur_written, w->ts[w->cur].size);
    }
    if (fflush(w->fp) != 0 || ferror(w->fp)) {
        w->state = W_FAILED;
        return err_set(e, ERR_IO, "gguf: write failed: %s", strerror(errno));
    }
    w->state = W_DONE;
    return 0;
}

int gguf_writer_write_file(gguf_writer *w, FILE *fp, const void *data, size_t n_data, err_msg *e)
{
    int rc = gguf_writer_begin(w, fp, e);
    if (!rc)
        rc = gguf_writer_write(w, data, n_data, e);
    if (!rc)
        rc = gguf_writer_finish(w, e);
    return rc;
}
