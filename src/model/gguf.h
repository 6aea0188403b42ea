/*
 * model/gguf — reader and writer of GGUF files (versions 2 and 3), the format
 * llama.cpp and ggml use for model weights and their metadata.
 *
 * The layout, as ggml writes it out in its gguf.h (all integers little-endian,
 * no padding anywhere except before the tensor data):
 *
 *   header
 *     char     magic[4]            "GGUF"
 *     uint32   version             2 or 3 (1 used 32-bit counts; refused)
 *     uint64   n_tensors
 *     uint64   n_kv
 *   n_kv key/value pairs
 *     gguf_string key              uint64 len, then len bytes (no NUL)
 *     uint32   value_type          a gguf_type below
 *     value                        u8/i8/bool: 1 byte; u16/i16: 2; u32/i32/f32: 4;
 *                                  u64/i64/f64: 8; string: gguf_string;
 *                                  array: uint32 elem_type, uint64 n, n elements
 *                                  (elements of any type, arrays nest)
 *   n_tensors tensor infos
 *     gguf_string name             at most GGUF_TENSOR_NAME_MAX bytes, unique
 *     uint32   n_dims              1..4
 *     uint64   ne[n_dims]          elements per dimension, ne[0] varies fastest
 *     uint32   type                a GGML type id (tensor_type in model/tensor.h)
 *     uint64   offset              from the start of the data section, a
 *                                  multiple of the alignment
 *   padding                        zero bytes up to a multiple of the alignment
 *   tensor data                    each tensor's bytes at its offset, each
 *                                  padded with zeros to the alignment
 *
 * The alignment is the uint32 key "general.alignment" (default 32), a power of
 * two. A row of ne[0] elements takes tensor_row_bytes(type, ne[0]) bytes; the
 * tensor takes that times ne[1]*ne[2]*ne[3].
 *
 * The reader maps the file read-only (or borrows caller memory) and validates
 * every count, length, offset and size against the file size with checked
 * arithmetic before using it, so a truncated or hostile file gives an error
 * naming the problem, never a crash. docs/internals/gguf.md lists the rules.
 * Strings handed out are str slices into the mapping: they live as long as the
 * gguf_file and are not NUL-terminated. Numeric data (array elements, tensor
 * data) may be unaligned in the mapping; read it with memcpy or the typed
 * getters. Tensor data is aligned to the file's alignment relative to the
 * start of the file, so with mmap (page aligned) it is aligned in memory too.
 *
 * A gguf_file is immutable after open: any number of threads may read it at
 * once. The writer is single-threaded.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"
#include "base/str.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3            /* what the writer writes */
#define GGUF_DEFAULT_ALIGNMENT 32 /* when "general.alignment" is absent */
#define GGUF_ALIGNMENT_MAX 65536  /* larger alignments are refused as insane */
#define GGUF_DIMS_MAX 4           /* GGML_MAX_DIMS */
#define GGUF_TENSOR_NAME_MAX 63   /* GGML_MAX_NAME - 1: names are 64-byte C strings there */
#define GGUF_ARRAY_DEPTH_MAX 8    /* nesting limit of arrays in arrays */
#define GGUF_KEY_ALIGNMENT "general.alignment"

/* Metadata value types, as numbered in the file. */
typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT = 13 /* not a type: one past the last */
} gguf_type;

/* "uint32", "string", "array", ...; "invalid" for values outside the enum. */
const char *gguf_type_name(uint32_t t);
/* Encoded size of one element of a fixed-size type; 0 for string, array, invalid. */
size_t gguf_type_size(uint32_t t);

typedef struct gguf_file gguf_file;
/* One metadata value (scalar, string or array), owned by its gguf_file. */
typedef struct gguf_value gguf_value;

/*
 * A tensor's info and data, owned by its gguf_file (valid until gguf_close).
 * ne[] beyond n_dims are 1. size is the tensor's bytes (without padding);
 * data points into the mapping at the tensor's first byte.
 */
typedef struct gguf_tensor {
    str name;
    uint32_t type; /* a supported tensor_type id (checked at open) */
    uint32_t n_dims;
    uint64_t ne[GGUF_DIMS_MAX];
    uint64_t offset; /* from the start of the data section */
    size_t size;
    const void *data;
} gguf_tensor;

/* ---------------------------------------------------------------- reading */

/*
 * Maps the file at path read-only and parses and validates it. On success
 * *out is a new gguf_file the caller must gguf_close. On failure returns
 * ERR_IO (open/stat/mmap failed), ERR_FORMAT (malformed file: truncated, bad
 * magic, bad version, value past end, ...), ERR_UNSUPPORTED (a tensor of a
 * type ferry cannot compute, a big-endian file), ERR_OVERFLOW (sizes that do
 * not fit) or ERR_NOMEM, with one sentence in e (may be NULL); *out is NULL.
 * Thread-safe (no shared state).
 */
int gguf_open(const char *path, gguf_file **out, err_msg *e) MUST_USE;

/*
 * Like gguf_open on n bytes at p, which the caller keeps alive and unchanged
 * until gguf_close (nothing is copied). For tests and fuzzing.
 */
int gguf_open_mem(const void *p, size_t n, gguf_file **out, err_msg *e) MUST_USE;

/* Unmaps and frees f. NULL is fine. Every pointer handed out by f dies here. */
void gguf_close(gguf_file *f);

/* File version (2 or 3), total size in bytes, alignment, data section offset. */
uint32_t gguf_version(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);
size_t gguf_data_offset(const gguf_file *f);
/* The whole file's bytes (the mapping). */
const void *gguf_file_bytes(const gguf_file *f);

/* ---- metadata */

/* Number of key/value pairs; keys are unique. */
size_t gguf_kv_count(const gguf_file *f);
/* Key i (< gguf_kv_count) as a slice into the mapping. */
str gguf_kv_key(const gguf_file *f, size_t i);
/* Value of key i (< gguf_kv_count), borrowed from f. */
const gguf_value *gguf_kv_value(const gguf_file *f, size_t i);
/* Index of key, or -1 when absent. O(log n_kv). */
int64_t gguf_find_key(const gguf_file *f, const char *key);
/* Value of key, or NULL when absent. */
const gguf_value *gguf_find_value(const gguf_file *f, const char *key);

/*
 * Type-checked getters by key. Each returns 0 and sets *out, ERR_NOT_FOUND when
 * the key is absent, or ERR_FORMAT when its value has another type (naming the
 * key and both types in e, which may be NULL). They never abort.
 * gguf_get_int accepts any integer type (u8..i64, and bool is not an integer)
 * whose value lies in [min, max], else ERR_FORMAT ("out of range").
 * gguf_get_float accepts f32 and f64.
 */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, err_msg *e) MUST_USE;
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, err_msg *e) MUST_USE;
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, err_msg *e) MUST_USE;
int gguf_get_f32(const gguf_file *f, const char *key, float *out, err_msg *e) MUST_USE;
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, err_msg *e) MUST_USE;
int gguf_get_str(const gguf_file *f, const char *key, str *out, err_msg *e) MUST_USE;
int gguf_get_int(const gguf_file *f, const char *key, int64_t min, int64_t max, int64_t *out,
                 err_msg *e) MUST_USE;
int gguf_get_float(const gguf_file *f, const char *key, double *out, err_msg *e) MUST_USE;
/*
 * The array under key: 0 with *out set, ERR_NOT_FOUND, or ERR_FORMAT when the
 * value is not an array or (elem_type < GGUF_TYPE_COUNT) its elements are not
 * of elem_type. Pass GGUF_TYPE_COUNT to accept any element type.
 */
int gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type, const gguf_value **out,
                 err_msg *e) MUST_USE;

/* ---- values (all borrowed from the gguf_file; v must not be NULL) */

gguf_type gguf_value_type(const gguf_value *v);
/* Any integer value (u8..i64) as int64/uint64: 0, or ERR_FORMAT (not an integer
 * or out of range of the output type). */
int gguf_value_i64(const gguf_value *v, int64_t *out) MUST_USE;
int gguf_value_u64(const gguf_value *v, uint64_t *out) MUST_USE;
/* f32 or f64 value: 0 or ERR_FORMAT. */
int gguf_value_f64(const gguf_value *v, double *out) MUST_USE;
/* bool value: 0 or ERR_FORMAT. Any non-zero byte reads as true. */
int gguf_value_bool(const gguf_value *v, bool *out) MUST_USE;
/* string value: 0 or ERR_FORMAT. */
int gguf_value_str(const gguf_value *v, str *out) MUST_USE;
/*
 * The value's encoding as it sits in the file, without its uint32 type tag:
 * for an array the elem_type, count and elements. Feed it to
 * gguf_writer_set_raw to copy a value verbatim.
 */
void gguf_value_raw(const gguf_value *v, const void **p, size_t *n);

/* Element type of an array value; GGUF_TYPE_COUNT when v is not an array. */
gguf_type gguf_arr_type(const gguf_value *v);
/* Element count of an array value; 0 when v is not an array. */
size_t gguf_arr_len(const gguf_value *v);
/*
 * First element of an array of a fixed-size type (elements are packed,
 * little-endian, possibly unaligned: use memcpy); NULL for arrays of strings
 * or arrays, and for non-arrays.
 */
const void *gguf_arr_data(const gguf_value *v);
/* Element i of an array of strings: 0, or ERR_FORMAT (not a string array) or
 * ERR_NOT_FOUND (i out of range). O(1). */
int gguf_arr_str(const gguf_value *v, size_t i, str *out) MUST_USE;
/* Element i of an array of integers (any integer type) as int64: 0, ERR_FORMAT
 * (not an integer array, or a u64 above INT64_MAX), ERR_NOT_FOUND (range). */
int gguf_arr_i64(const gguf_value *v, size_t i, int64_t *out) MUST_USE;
/* Element i of an array of f32 or f64 as double: 0, ERR_FORMAT, ERR_NOT_FOUND. */
int gguf_arr_f64(const gguf_value *v, size_t i, double *out) MUST_USE;
/* Element i of an array of arrays; NULL when v is not one or i is out of range. */
const gguf_value *gguf_arr_at(const gguf_value *v, size_t i);

/* ---- tensors */

size_t gguf_tensor_count(const gguf_file *f);
/* Tensor i (< gguf_tensor_count), in file order. */
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
/* The tensor named name, or NULL. O(log n_tensors). */
const gguf_tensor *gguf_tensor_find(const gguf_file *f, const char *name);
/* Elements of t: the product of ne (cannot overflow: checked at open). */
uint64_t gguf_tensor_nelems(const gguf_tensor *t);

/*
 * Looks up a tensor a model needs and checks its type-independent shape:
 * n_dims dimensions (1..4) equal to ne[0..n_dims-1]. Returns 0 with *out set,
 * ERR_NOT_FOUND ("missing tensor "x"") or ERR_FORMAT (naming the tensor, the
 * shape found and the shape expected), with the sentence in e.
 */
int gguf_require_tensor(const gguf_file *f, const char *name, uint32_t n_dims, const uint64_t *ne,
                        const gguf_tensor **out, err_msg *e) MUST_USE;

/* ---------------------------------------------------------------- writing */

/*
 * gguf_writer builds a GGUF v3 file in two phases and streams tensor data so
 * a model never has to sit in memory whole:
 *   1. gguf_writer_set_* and gguf_writer_add_tensor declare metadata and
 *      tensor infos (name, type, shape); offsets follow from sizes.
 *   2. gguf_writer_begin writes header, metadata, tensor infos and padding to
 *      a FILE; gguf_writer_write then takes the tensor data in file order, in
 *      pieces of any size, padding each tensor to the alignment;
 *      gguf_writer_finish checks that every byte arrived and flushes.
 * Setting a key again replaces its value (keeping its position). Setting
 * "general.alignment" (uint32, a power of two <= GGUF_ALIGNMENT_MAX) before
 * the first add_tensor changes the alignment. Calls after an error keep
 * returning errors. Single-threaded.
 */
typedef struct gguf_writer gguf_writer;

/* A new empty writer, or NULL when out of memory. Free with gguf_writer_free. */
gguf_writer *gguf_writer_new(void);
/* Frees w (does not close the FILE given to begin). NULL is fine. */
void gguf_writer_free(gguf_writer *w);

/* Scalar setters. Return 0, ERR_NOMEM, or ERR_INVAL (empty key, alignment
 * that is not a power of two, or called after begin). */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v) MUST_USE;
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v) MUST_USE;
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v) MUST_USE;
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v) MUST_USE;
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) MUST_USE;
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) MUST_USE;
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v) MUST_USE;
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) MUST_USE;
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) MUST_USE;
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v) MUST_USE;
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v) MUST_USE;
int gguf_writer_set_str(gguf_writer *w, const char *key, str v) MUST_USE;
/* Array of n elements of a fixed-size elem_type, packed little-endian at data. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *data,
                        size_t n) MUST_USE;
/* Array of n strings. */
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const str *v, size_t n) MUST_USE;
/*
 * A value of any type (nested arrays included) from its encoding without the
 * type tag (as gguf_value_raw gives it). The encoding is parsed and must be
 * exactly n bytes long, else ERR_FORMAT. Copies the bytes.
 */
int gguf_writer_set_raw(gguf_writer *w, const char *key, gguf_type type, const void *p,
                        size_t n) MUST_USE;
/* Copies value v (from any gguf_file) under key. */
int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v) MUST_USE;
/* Removes key if present. Returns 0 either way (ERR_INVAL after begin). */
int gguf_writer_remove(gguf_writer *w, const char *key) MUST_USE;

/*
 * Declares the next tensor: name (1..GGUF_TENSOR_NAME_MAX bytes, unique),
 * a supported tensor_type id, n_dims (1..4) and ne[0..n_dims-1] (each >= 1,
 * ne[0] a multiple of the type's block size). Returns 0, or ERR_INVAL /
 * ERR_UNSUPPORTED / ERR_OVERFLOW / ERR_NOMEM with the reason in e.
 */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const uint64_t *ne, err_msg *e) MUST_USE;
/* Bytes of tensor data expected for declared tensor i; 0 when out of range. */
size_t gguf_writer_tensor_size(const gguf_writer *w, size_t i);

/*
 * Writes everything before the tensor data to fp (which the caller owns and
 * keeps open until finish). Returns 0, or ERR_IO / ERR_INVAL (called twice).
 */
int gguf_writer_begin(gguf_writer *w, FILE *fp, err_msg *e) MUST_USE;
/*
 * Appends n bytes of tensor data, continuing the current tensor in declaration
 * order; a tensor is padded as soon as its last byte arrives. More bytes than
 * the tensors declared give ERR_INVAL; a write failure ERR_IO.
 */
int gguf_writer_write(gguf_writer *w, const void *p, size_t n, err_msg *e) MUST_USE;
/* Checks that all tensor data arrived (ERR_INVAL naming the first tensor that
 * is short) and flushes fp (ERR_IO). */
int gguf_writer_finish(gguf_writer *w, err_msg *e) MUST_USE;

/*
 * Convenience for small files: runs begin, writes the n_data bytes at data
 * (all tensors concatenated without padding, in order), and finish.
 */
int gguf_writer_write_file(gguf_writer *w, FILE *fp, const void *data, size_t n_data,
                           err_msg *e) MUST_USE;
