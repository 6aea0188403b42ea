/*
 * cli/cmd_model — `ferry model info|init|quantize`: inspect a GGUF model,
 * write a model of a real architecture and shape with seeded random weights,
 * and requantize a model.
 *
 * Synthetic weights (`model init`) are deterministic: tensor T of a model made
 * with seed S draws from xoshiro256** seeded through splitmix64 with
 * S ^ fnv1a64(T's name), so a tensor's values depend only on (S, name, shape)
 * and not on the order of writing. Each pair of uniforms u1 in (0,1], u2 in
 * [0,1) (the top 53 bits of a draw, times 2^-53) gives two normals by
 * Box-Muller: r = sqrt(-2 ln u1), r cos(2 pi u2), r sin(2 pi u2); scaled by
 * 0.02. Norm weights are 1.0 and biases 0.0, except in `bert` models, whose
 * biases are drawn like weights and whose LayerNorm weights are 1 + 0.02 N(0,1),
 * so that a reference comparison exercises every term.
 *
 * Files are written tensor by tensor, row by row (a row generated or
 * dequantized, quantized and written), so even the 3B shape needs only a row
 * of memory. The output goes to OUT.tmp and is renamed over OUT when complete.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/base.h"
#include "base/buf.h"
#include "base/str.h"
#include "cli/cli.h"
#include "model/bert.h"
#include "model/gguf.h"
#include "model/tensor.h"

/* llama.cpp's general.file_type values (enum llama_ftype). */
enum {
    FTYPE_ALL_F32 = 0,
    FTYPE_MOSTLY_F16 = 1,
    FTYPE_MOSTLY_Q4_0 = 2,
    FTYPE_MOSTLY_Q8_0 = 7,
    FTYPE_MOSTLY_Q4_K_M = 15,
    FTYPE_MOSTLY_Q6_K = 18,
    FTYPE_MOSTLY_BF16 = 32,
};

/* A target weight format: the type of most 2-D weights, and the file type. */
typedef struct wformat {
    const char *name;
    uint32_t type;
    uint32_t ftype;
} wformat;

static const wformat FORMATS[] = {
    {"f32", TENSOR_F32, FTYPE_ALL_F32},           {"f16", TENSOR_F16, FTYPE_MOSTLY_F16},
    {"bf16", TENSOR_BF16, FTYPE_MOSTLY_BF16},     {"q8_0", TENSOR_Q8_0, FTYPE_MOSTLY_Q8_0},
    {"q4_0", TENSOR_Q4_0, FTYPE_MOSTLY_Q4_0},     {"q4_k", TENSOR_Q4_K, FTYPE_MOSTLY_Q4_K_M},
    {"q4_k_m", TENSOR_Q4_K, FTYPE_MOSTLY_Q4_K_M}, {"q6_k", TENSOR_Q6_K, FTYPE_MOSTLY_Q6_K},
};

static const wformat *format_find(const char *s)
{
    for (size_t i = 0; i < ARRAY_LEN(FORMATS); i++)
        if (strcasecmp(s, FORMATS[i].name) == 0)
            return &FORMATS[i];
    return NULL;
}

static int block_layer(const char *name)
{
    int64_t v;
    const char *p = name + 4, *dot;
    char num[16];
    if (strncmp(name, "blk.", 4) != 0 || !(dot = strchr(p, '.')) || dot - p >= (long)sizeof num)
        return -1;
    memcpy(num, p, (size_t)(dot - p));
    num[dot - p] = 0;
    return parse_i64(num, 0, 1 << 20, &v) == 0 ? (int)v : -1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/*
 * The type a 2-D weight gets in format fmt. For q4_k it follows llama.cpp's
 * Q4_K_M mix: Q6_K for the output matrix (token_embd when tied), and for
 * attn_v and ffn_down in the first and last eighth of the layers and every
 * third layer between; Q4_K elsewhere. A K-quant whose block (256) does not
 * divide the row falls back to the 32-element type of similar size (Q4_K ->
 * Q4_0, Q6_K -> Q8_0), as llama.cpp falls back for such rows.
 */
static uint32_t weight_type(const wformat *fmt, const char *name, uint64_t ne0, int n_layer,
                            bool is_output)
{
    uint32_t t = fmt->type;
    if (t == TENSOR_Q4_K) {
        int il = block_layer(name);
        bool more_bits =
            il >= 0 && (il < n_layer / 8 || il >= 7 * n_layer / 8 || (il - n_layer / 8) % 3 == 2);
        if (is_output ||
            (more_bits && (ends_with(name, "attn_v.weight") || ends_with(name, "ffn_down.weight"))))
            t = TENSOR_Q6_K;
    }
    if (ne0 % TENSOR_QK_K != 0) {
        if (t == TENSOR_Q4_K)
            t = TENSOR_Q4_0;
        else if (t == TENSOR_Q6_K)
            t = TENSOR_Q8_0;
    }
    if (ne0 % TENSOR_QK != 0 && t != TENSOR_F32 && t != TENSOR_F16 && t != TENSOR_BF16)
        t = TENSOR_F16;
    return t;
}

/* ---------------------------------------------------------------- PRNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s[4];
    bool has_spare;
    double spare;
} rng;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(rng *r, uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; // FNV-1a 64
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t x = seed ^ h;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->has_spare = false;
    r->spare = 0.0;
}

static double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1 = (double)((rng_next(r) >> 11) + 1) * 0x1.0p-53; // (0, 1]
    double u2 = (double)(rng_next(r) >> 11) * 0x1.0p-53;       // [0, 1)
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * M_PI * u2);
    r->has_spare = true;
    return rad * cos(2.0 * M_PI * u2);
}

/* ---------------------------------------------------------------- output */

/* Where a model is being written: OUT.tmp, renamed over OUT by out_commit. */
typedef struct out_file {
    char tmp[4096];
    const char *path;
    FILE *fp;
} out_file;

static int out_open(out_file *o, const char *path)
{
    o->path = path;
    int k = snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    if (k < 0 || (size_t)k >= sizeof o->tmp) {
        cli_errorf("model: output path too long: %s", path);
        return 2;
    }
    o->fp = fopen(o->tmp, "wb");
    if (!o->fp) {
        cli_errorf("model: cannot create %s: %s", o->tmp, strerror(errno));
        return 2;
    }
    setvbuf(o->fp, NULL, _IOFBF, 1 << 20);
    return 0;
}

static void out_abort(out_file *o)
{
    if (o->fp) {
        fclose(o->fp);
        o->fp = NULL;
        unlink(o->tmp);
    }
}

static int out_commit(out_file *o)
{
    int rc = fclose(o->fp);
    o->fp = NULL;
    if (rc != 0 || rename(o->tmp, o->path) != 0) {
        cli_errorf("model: cannot write %s: %s", o->path, strerror(errno));
        unlink(o->tmp);
        return 1;
    }
    return 0;
}

/* Per-row scratch: a row of floats and its encoding. */
typedef struct rowbuf {
    float *f;
    void *q;
    size_t cap_elems;
} rowbuf;

static int rowbuf_fit(rowbuf *rb, uint64_t n)
{
    if (n <= rb->cap_elems)
        return 0;
    float *f = realloc(rb->f, (size_t)n * sizeof(float));
    if (!f)
        return ERR_NOMEM;
    rb->f = f;
    void *q = realloc(rb->q, (size_t)n * sizeof(float)); // any encoding is <= 4 bytes/elem
    if (!q)
        return ERR_NOMEM;
    rb->q = q;
    rb->cap_elems = (size_t)n;
    return 0;
}

/* ---------------------------------------------------------------- info */

typedef struct arch_hp {
    uint64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, n_vocab;
} arch_hp;

static int hp_get(const gguf_file *f, const char *arch, const char *key, uint64_t *out, err_msg *e)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v;
    int rc = gguf_get_int(f, k, 1, 1 << 24, &v, e);
    if (rc == 0)
        *out = (uint64_t)v;
    return rc;
}

/*
 * For llama and qwen2 files with tensors: the hyperparameters exist, every
 * tensor the forward pass reads is present with the shape they imply, and the
 * vocab (tokenizer.ggml.tokens) matches token_embd's rows.
 */
static int check_llama_like(const gguf_file *f, const char *arch, arch_hp *hp, err_msg *e)
{
    int rc;
    if ((rc = hp_get(f, arch, "embedding_length", &hp->n_embd, e)) ||
        (rc = hp_get(f, arch, "block_count", &hp->n_layer, e)) ||
        (rc = hp_get(f, arch, "attention.head_count", &hp->n_head, e)) ||
        (rc = hp_get(f, arch, "feed_forward_length", &hp->n_ff, e)))
        return rc;
    if (hp_get(f, arch, "attention.head_count_kv", &hp->n_head_kv, NULL) != 0)
        hp->n_head_kv = hp->n_head;
    if (hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0)
        return err_set(e, ERR_FORMAT,
                       "%s: embedding_length %" PRIu64 " / head_count %" PRIu64
                       " / head_count_kv %" PRIu64 " do not divide evenly",
                       arch, hp->n_embd, hp->n_head, hp->n_head_kv);
    if (gguf_tensor_count(f) == 0)
        return 0; // a vocab-only file
    const gguf_tensor *te = gguf_tensor_find(f, "token_embd.weight");
    if (!te)
        return err_set(e, ERR_NOT_FOUND, "missing tensor \"token_embd.weight\"");
    uint64_t n_vocab = te->ne[1];
    const gguf_value *toks;
    if (gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, NULL) == 0 &&
        gguf_arr_len(toks) != n_vocab)
        return err_set(e, ERR_FORMAT,
                       "vocab/embedding size mismatch: tokenizer.ggml.tokens has %zu tokens but "
                       "token_embd.weight has %" PRIu64 " rows",
                       gguf_arr_len(toks), n_vocab);
    hp->n_vocab = n_vocab;
    uint64_t hd = hp->n_embd / hp->n_head, kv = hd * hp->n_head_kv;
    const gguf_tensor *t;
    char name[96];
#define REQ(nd, a, b, ...)                                                                         \
    do {                                                                                           \
        snprintf(name, sizeof name, __VA_ARGS__);                                                  \
        uint64_t ne_[2] = {(a), (b)};                                                              \
        if ((rc = gguf_require_tensor(f, name, (nd), ne_, &t, e)))                                 \
            return rc;                                                                             \
    } while (0)
    REQ(2, hp->n_embd, n_vocab, "token_embd.weight");
    REQ(1, hp->n_embd, 1, "output_norm.weight");
    if (gguf_tensor_find(f, "output.weight"))
        REQ(2, hp->n_embd, n_vocab, "output.weight");
    bool is_qwen2 = strcmp(arch, "qwen2") == 0;
    for (uint64_t i = 0; i < hp->n_layer; i++) {
        REQ(1, hp->n_embd, 1, "blk.%" PRIu64 ".attn_norm.weight", i);
        REQ(2, hp->n_embd, hp->n_embd, "blk.%" PRIu64 ".attn_q.weight", i);
        REQ(2, hp->n_embd, kv, "blk.%" PRIu64 ".attn_k.weight", i);
        REQ(2, hp->n_embd, kv, "blk.%" PRIu64 ".attn_v.weight", i);
        REQ(2, hp->n_embd, hp->n_embd, "blk.%" PRIu64 ".attn_output.weight", i);
        REQ(1, hp->n_embd, 1, "blk.%" PRIu64 ".ffn_norm.weight", i);
        REQ(2, hp->n_embd, hp->n_ff, "blk.%" PRIu64 ".ffn_gate.weight", i);
        REQ(2, hp->n_embd, hp->n_ff, "blk.%" PRIu64 ".ffn_up.weight", i);
        REQ(2, hp->n_ff, hp->n_embd, "blk.%" PRIu64 ".ffn_down.weight", i);
        if (is_qwen2) {
            REQ(1, hp->n_embd, 1, "blk.%" PRIu64 ".attn_q.bias", i);
            REQ(1, kv, 1, "blk.%" PRIu64 ".attn_k.bias", i);
            REQ(1, kv, 1, "blk.%" PRIu64 ".attn_v.bias", i);
        }
    }
#undef REQ
    return 0;
}

static void json_kv_str(buf *b, const char *key, str v, bool comma)
{
    (void)!buf_printf(b, "%s\"%s\":\"", comma ? "," : "", key);
    (void)!buf_append_json_str(b, v.p ? v.p : "", v.n);
    (void)!buf_append_char(b, '"');
}

/* One scalar or string GGUF value as JSON (an integer, a number, a bool or a string). */
static void json_scalar(buf *b, const gguf_value *v)
{
    int64_t i;
    uint64_t u;
    double d;
    bool t;
    str s;
    if (gguf_value_type(v) == GGUF_TYPE_UINT64 && gguf_value_u64(v, &u) == 0)
        (void)!buf_printf(b, "%" PRIu64, u);
    else if (gguf_value_i64(v, &i) == 0)
        (void)!buf_printf(b, "%" PRId64, i);
    else if (gguf_value_f64(v, &d) == 0)
        (void)!buf_printf(b, isfinite(d) ? "%.17g" : "null", d);
    else if (gguf_value_bool(v, &t) == 0)
        (void)!buf_append_str(b, t ? "true" : "false");
    else if (gguf_value_str(v, &s) == 0) {
        (void)!buf_append_char(b, '"');
        (void)!buf_append_json_str(b, s.p ? s.p : "", s.n);
        (void)!buf_append_char(b, '"');
    } else
        (void)!buf_append_str(b, "null");
}

/*
 * --tensors: "metadata" {key: {"type", "value"}} (arrays: "type" "array", "elem",
 * "n" and "value" with every element; arrays of arrays give only "n") and
 * "tensors" [{"name", "type", "ne", "offset"}] in file order, for comparing
 * ferry's reading of a file with other GGUF tools'.
 */
static void json_layout(buf *b, const gguf_file *f)
{
    (void)!buf_append_str(b, ",\"metadata\":{");
    for (size_t i = 0; i < gguf_kv_count(f); i++) {
        const gguf_value *v = gguf_kv_value(f, i);
        str k = gguf_kv_key(f, i);
        (void)!buf_printf(b, "%s\"", i ? "," : "");
        (void)!buf_append_json_str(b, k.p, k.n);
        gguf_type t = gguf_value_type(v);
        (void)!buf_printf(b, "\":{\"type\":\"%s\"", gguf_type_name(t));
        if (t != GGUF_TYPE_ARRAY) {
            (void)!buf_append_str(b, ",\"value\":");
            json_scalar(b, v);
        } else {
            gguf_type et = gguf_arr_type(v);
            size_t n = gguf_arr_len(v);
            (void)!buf_printf(b, ",\"elem\":\"%s\",\"n\":%zu", gguf_type_name(et), n);
            if (et != GGUF_TYPE_ARRAY) {
                (void)!buf_append_str(b, ",\"value\":[");
                for (size_t j = 0; j < n; j++) {
                    int64_t iv;
                    double dv;
                    str sv;
                    if (j)
                        (void)!buf_append_char(b, ',');
                    if (et == GGUF_TYPE_STRING && gguf_arr_str(v, j, &sv) == 0) {
                        (void)!buf_append_char(b, '"');
                        (void)!buf_append_json_str(b, sv.p ? sv.p : "", sv.n);
                        (void)!buf_append_char(b, '"');
                    } else if (gguf_arr_i64(v, j, &iv) == 0)
                        (void)!buf_printf(b, "%" PRId64, iv);
                    else if (gguf_arr_f64(v, j, &dv) == 0)
                        (void)!buf_printf(b, isfinite(dv) ? "%.17g" : "null", dv);
                    else if (et == GGUF_TYPE_BOOL)
                        (void)!buf_append_str(b, ((const uint8_t *)gguf_arr_data(v))[j] ? "true"
                                                                                      : "false");
                    else
                        (void)!buf_append_str(b, "null");
                }
                (void)!buf_append_char(b, ']');
            }
        }
        (void)!buf_append_char(b, '}');
    }
    (void)!buf_append_str(b, "},\"tensors\":[");
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        (void)!buf_printf(b, "%s{\"name\":\"", i ? "," : "");
        (void)!buf_append_json_str(b, t->name.p, t->name.n);
        (void)!buf_printf(b, "\",\"type\":\"%s\",\"type_id\":%" PRIu32 ",\"ne\":[",
                          tensor_type_name(t->type), t->type);
        for (uint32_t d = 0; d < t->n_dims; d++)
            (void)!buf_printf(b, "%s%" PRIu64, d ? "," : "", t->ne[d]);
        (void)!buf_printf(b, "],\"offset\":%" PRIu64 ",\"size\":%zu}", t->offset, t->size);
    }
    (void)!buf_printf(b, "],\"data_offset\":%zu", gguf_data_offset(f));
}

static int model_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false, has_layout = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--tensors") == 0)
            has_layout = json = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: ferry model info PATH [--json] [--tensors]\n"
                   "Prints architecture, parameter count, tensor types, context length,\n"
                   "vocab size and tokenizer, chat template presence and file size.\n"
                   "--tensors (implies --json) adds every metadata value and every tensor's\n"
                   "name, type, shape (ne), offset and size.\n");
            return 0;
        } else if (argv[i][0] == '-' || path) {
            cli_errorf("model info: unexpected argument %s (see --help)", argv[i]);
            return 2;
        } else
            path = argv[i];
    }
    if (!path) {
        cli_errorf("model info: missing PATH (see --help)");
        return 2;
    }
    gguf_file *f;
    err_msg e;
    err_clear(&e);
    if (gguf_open(path, &f, &e) != 0) {
        cli_errorf("model info: %s: %s", path, e.text);
        return 2;
    }
    str arch = {0}, name = {0}, tok_model = {0}, tok_pre = {0};
    (void)!gguf_get_str(f, "general.architecture", &arch, NULL);
    (void)!gguf_get_str(f, "general.name", &name, NULL);
    (void)!gguf_get_str(f, "tokenizer.ggml.model", &tok_model, NULL);
    (void)!gguf_get_str(f, "tokenizer.ggml.pre", &tok_pre, NULL);
    char arch_z[64] = "";
    snprintf(arch_z, sizeof arch_z, "%.*s", (int)MIN(arch.n, 63), arch.p ? arch.p : "");
    bool has_chat = gguf_find_key(f, "tokenizer.chat_template") >= 0;
    const gguf_value *toks = NULL;
    size_t n_tokens = 0;
    if (gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, NULL) == 0)
        n_tokens = gguf_arr_len(toks);
    int64_t ctx = 0, ftype = -1;
    char k[128];
    snprintf(k, sizeof k, "%s.context_length", arch_z);
    (void)!gguf_get_int(f, k, 0, INT64_MAX, &ctx, NULL);
    (void)!gguf_get_int(f, "general.file_type", 0, 1 << 20, &ftype, NULL);

    arch_hp hp = {0};
    bool is_supported = strcmp(arch_z, "llama") == 0 || strcmp(arch_z, "qwen2") == 0;
    if (is_supported && check_llama_like(f, arch_z, &hp, &e) != 0) {
        cli_errorf("model info: %s: %s", path, e.text);
        gguf_close(f);
        return 2;
    }
    if (strcmp(arch_z, "bert") == 0 && gguf_tensor_count(f) > 0) {
        // an embedding model: the bert loader checks every key, tensor and the tokenizer
        bert_model *bm;
        if (bert_load(path, &bm, &e) != 0) {
            cli_errorf("model info: %s: %s", path, e.text);
            gguf_close(f);
            return 2;
        }
        const bert_hparams *bh = bert_model_hparams(bm);
        hp.n_embd = bh->dim;
        hp.n_layer = bh->n_layer;
        hp.n_head = hp.n_head_kv = bh->n_head;
        hp.n_ff = bh->ffn;
        hp.n_vocab = bh->n_vocab;
        is_supported = true;
        bert_unref(bm);
    }

    uint64_t n_params = 0;
    size_t type_count[64] = {0};
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        n_params += gguf_tensor_nelems(t);
        type_count[t->type < 64 ? t->type : 63]++;
    }
    uint64_t n_vocab = hp.n_vocab ? hp.n_vocab : n_tokens;

    buf b;
    buf_init(&b, has_layout ? (size_t)1 << 30 : (size_t)1 << 20);
    if (json) {
        (void)!buf_printf(&b, "{\"path\":\"");
        (void)!buf_append_json_str(&b, path, strlen(path));
        (void)!buf_printf(&b, "\",\"file_size\":%zu,\"gguf_version\":%" PRIu32 ",\"alignment\":%zu",
                          gguf_file_size(f), gguf_version(f), gguf_alignment(f));
        json_kv_str(&b, "architecture", arch, true);
        (void)!buf_printf(&b, ",\"supported\":%s", is_supported ? "true" : "false");
        json_kv_str(&b, "name", name, true);
        (void)!buf_printf(&b, ",\"parameters\":%" PRIu64 ",\"tensor_count\":%zu,\"tensor_types\":{",
                          n_params, gguf_tensor_count(f));
        bool first = true;
        for (uint32_t t = 0; t < 64; t++) {
            if (!type_count[t])
                continue;
            (void)!buf_printf(&b, "%s\"%s\":%zu", first ? "" : ",", tensor_type_name(t),
                              type_count[t]);
            first = false;
        }
        (void)!buf_printf(&b, "},\"file_type\":%" PRId64 ",\"context_length\":%" PRId64, ftype,
                          ctx);
        if (hp.n_embd)
            (void)!buf_printf(&b,
                              ",\"embedding_length\":%" PRIu64 ",\"block_count\":%" PRIu64
                              ",\"head_count\":%" PRIu64 ",\"head_count_kv\":%" PRIu64
                              ",\"feed_forward_length\":%" PRIu64,
                              hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ff);
        (void)!buf_printf(&b, ",\"vocab_size\":%" PRIu64, n_vocab);
        json_kv_str(&b, "tokenizer", tok_model, true);
        json_kv_str(&b, "tokenizer_pre", tok_pre, true);
        (void)!buf_printf(&b, ",\"chat_template\":%s", has_chat ? "true" : "false");
        if (has_layout)
            json_layout(&b, f);
        (void)!buf_append_str(&b, "}\n");
    } else {
        (void)!buf_printf(&b, "file:            %s (%zu bytes, GGUF v%" PRIu32 ", alignment %zu)\n",
                          path, gguf_file_size(f), gguf_version(f), gguf_alignment(f));
        (void)!buf_printf(&b, "architecture:    %s%s\n", arch.n ? arch_z : "(none)",
                          is_supported || !arch.n ? "" : " (not supported by ferry's engine)");
        if (name.n)
            (void)!buf_printf(&b, "name:            %.*s\n", (int)MIN(name.n, 200), name.p);
        (void)!buf_printf(&b, "parameters:      %" PRIu64 " (%.2f M)\n", n_params,
                          (double)n_params / 1e6);
        (void)!buf_printf(&b, "tensors:         %zu", gguf_tensor_count(f));
        bool first = true;
        for (uint32_t t = 0; t < 64; t++) {
            if (!type_count[t])
                continue;
            (void)!buf_printf(&b, "%s%s: %zu", first ? " (" : ", ", tensor_type_name(t),
                              type_count[t]);
            first = false;
        }
        (void)!buf_printf(&b, "%s\n", first ? "" : ")");
        if (ftype >= 0)
            (void)!buf_printf(&b, "file type:       %" PRId64 "\n", ftype);
        (void)!buf_printf(&b, "context length:  %" PRId64 "\n", ctx);
        if (hp.n_embd)
            (void)!buf_printf(&b,
                              "shape:           hidden %" PRIu64 ", %" PRIu64 " layers, %" PRIu64
                              " heads, %" PRIu64 " KV heads, FFN %" PRIu64 "\n",
                              hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ff);
        (void)!buf_printf(&b, "vocab:           %" PRIu64 " tokens, tokenizer %.*s%s%.*s%s\n",
                          n_vocab, tok_model.n ? (int)MIN(tok_model.n, 64) : 6,
                          tok_model.n ? tok_model.p : "(none)", tok_pre.n ? " (pre " : "",
                          (int)MIN(tok_pre.n, 64), tok_pre.n ? tok_pre.p : "",
                          tok_pre.n ? ")" : "");
        (void)!buf_printf(&b, "chat template:   %s\n", has_chat ? "present" : "absent");
    }
    fwrite(b.data, 1, b.len, stdout);
    buf_deinit(&b);
    gguf_close(f);
    return 0;
}

/* ---------------------------------------------------------------- init */

typedef struct shape {
    const char *name;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab; // n_vocab 0: the tokenizer's
    uint32_t n_ctx;
    bool is_tied;
} shape;

static const shape SHAPES[] = {
    {"tiny", 64, 2, 4, 2, 128, 0, 512, false},
    // rows of 256 and 512: every weight takes its K-quant type (tiny's 64 fall back)
    {"small", 256, 2, 4, 2, 512, 0, 512, false},
    {"tiny-32k", 64, 2, 4, 2, 128, 0, 32768, false}, // tiny with a long context (serving tests)
    {"smollm-135m", 576, 30, 9, 3, 1536, 49152, 2048, true},
    {"qwen2-0.5b", 896, 24, 14, 2, 4864, 151936, 32768, true},
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 2048, false},
    {"llama-3b", 3200, 26, 32, 32, 8640, 32000, 2048, false},
};

/* Shapes of `bert` models (n_head_kv = n_head, n_vocab from the tokenizer). */
static const shape BERT_SHAPES[] = {
    {"tiny", 64, 2, 4, 4, 128, 0, 512, false},
    {"minilm", 384, 6, 12, 12, 1536, 0, 512, false}, // all-MiniLM-L6-v2
};

/*
 * The built-in byte-level BPE vocab: ids 0..255 are the bytes in GPT-2's
 * byte-to-unicode alphabet (id b is byte b), then four specials, then one
 * token per merge below, then unused fillers up to the shape's vocab size.
 */
#define BUILTIN_BOS 256
#define BUILTIN_EOS 257
#define BUILTIN_IM_START 258
#define BUILTIN_IM_END 259
static const char *const BUILTIN_SPECIALS[4] = {"<|begin_of_text|>", "<|end_of_text|>",
                                                "<|im_start|>", "<|im_end|>"};
/* Merges of common English pieces, in rank order; "Ġ" is GPT-2's space. */
static const char *const BUILTIN_MERGES[] = {
    "Ġ t",  "h e",   "Ġ a",   "i n",  "Ġt he", "e r",  "o n", "Ġ s",  "Ġ w",   "r e",    "a n",
    "Ġ o",  "Ġ b",   "o u",   "e d",  "i s",   "n d",  "Ġ c", "i t",  "e n",   "Ġ f",    "Ġ m",
    "o r",  "a t",   "Ġ h",   "in g", "Ġ d",   "Ġ l",  "e s", "Ġ p",  "a r",   "l l",    "Ġo f",
    "Ġa n", "Ġan d", "Ġ i",   "o w",  "Ġ n",   "a s",  "l e", "Ġt o", "Ġ g",   "Ġi n",   "a y",
    "o m",  "Ġ T",   "Ġw as", "Ġh e", "Ġ y",   "Ġ I",  "Ġ S", "a l",  "Ġs he", "Ġ re",   "v e",
    "i d",  "Ġ u",   "e t",   "Ġb e", "Ġs a",  "Ġa s", "Ġ e", "Ġh a", "Ġw it", "Ġwit h", "Ġo n",
    "u t",  "Ġ \"",  "Ġ L",   "Ġ O",  "Ġd ay",
};
static const char *const CHATML_TEMPLATE =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* GPT-2's byte-to-unicode map: printable bytes map to themselves, the rest to 256+k. */
static uint32_t byte_to_cp(int b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF)))
            k++;
    return 256u + (uint32_t)k;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2; // every code point here is < 0x800
}

/*
 * Writes the built-in tokenizer's metadata with n_vocab tokens (0: its
 * natural size, returned in *n_out). Returns 0 or ERR_NOMEM / ERR_INVAL.
 */
static int builtin_vocab(gguf_writer *w, uint32_t n_vocab, uint32_t *n_out)
{
    size_t n_base = 256 + 4 + ARRAY_LEN(BUILTIN_MERGES);
    size_t n = n_vocab ? n_vocab : n_base;
    if (n < n_base)
        return ERR_INVAL;
    char *text = malloc(n * 32); // every token spelling fits in 32 bytes
    str *toks = calloc(n, sizeof(str));
    int32_t *types = calloc(n, sizeof(int32_t));
    str merges[ARRAY_LEN(BUILTIN_MERGES)];
    int rc = ERR_NOMEM;
    if (!text || !toks || !types)
        goto out;
    for (size_t i = 0; i < n; i++) {
        char *p = text + i * 32;
        size_t len;
        if (i < 256) {
            len = utf8_put(byte_to_cp((int)i), p);
            types[i] = 1; // normal
        } else if (i < 260) {
            len = strlen(BUILTIN_SPECIALS[i - 256]);
            memcpy(p, BUILTIN_SPECIALS[i - 256], len);
            types[i] = 3; // control
        } else if (i < n_base) {
            const char *m = BUILTIN_MERGES[i - 260];
            len = 0;
            for (const char *c = m; *c; c++)
                if (*c != ' ')
                    p[len++] = *c;
            merges[i - 260] = str_from(m);
            types[i] = 1;
        } else {
            len = (size_t)snprintf(p, 32, "<|unused_%zu|>", i);
            types[i] = 5; // unused
        }
        toks[i] = (str){p, len};
    }
    rc = gguf_writer_set_str(w, "tokenizer.ggml.model", STR_LIT("gpt2"));
    if (!rc)
        rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", STR_LIT("gpt-2"));
    if (!rc)
        rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, n);
    if (!rc)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n);
    if (!rc)
        rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, ARRAY_LEN(merges));
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", BUILTIN_BOS);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", BUILTIN_EOS);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", BUILTIN_IM_END);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", BUILTIN_EOS);
    if (!rc)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (!rc)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (!rc)
        rc = gguf_writer_set_str(w, "tokenizer.chat_template", str_from(CHATML_TEMPLATE));
    *n_out = (uint32_t)n;
out:
    free(text);
    free(toks);
    free(types);
    return rc;
}

/*
 * The built-in WordPiece vocab for `bert` models made without --vocab: the five
 * BERT specials ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4), every printable
 * ASCII character except upper-case letters (the tokenizer lower-cases), the
 * continuation pieces "##a".."##z" and "##0".."##9", then common English words.
 * Any lower-cased ASCII text tokenizes without [UNK].
 */
static const char *const WPM_WORDS[] = {
    "the",  "of",    "and",   "to",    "in",    "is",    "was",   "for",   "on",    "that",
    "with", "as",    "it",    "by",    "at",    "from",  "he",    "she",   "they",  "we",
    "you",  "this",  "are",   "be",    "or",    "an",    "not",   "but",   "have",  "has",
    "had",  "which", "one",   "all",   "their", "there", "can",   "will",  "more",  "when",
    "who",  "what",  "how",   "new",   "time",  "day",   "year",  "water", "cat",   "dog",
    "house", "city", "world", "model", "text",  "data",  "search", "file", "server", "token",
    "##s",  "##ed",  "##ing", "##er",  "##ly",  "##es",
};
#define WPM_SPECIALS 5

static int builtin_wpm_vocab(gguf_writer *w, uint32_t *n_out)
{
    static const char *const specials[WPM_SPECIALS] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                       "[MASK]"};
    size_t n = WPM_SPECIALS + ('~' - '!' + 1 - 26) + 36 + ARRAY_LEN(WPM_WORDS);
    char *text = malloc(n * 16); // every spelling fits in 16 bytes
    str *toks = calloc(n, sizeof(str));
    int32_t *types = calloc(n, sizeof(int32_t));
    int rc = ERR_NOMEM;
    if (!text || !toks || !types)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < WPM_SPECIALS; i++, k++) {
        toks[k] = str_from(specials[i]);
        types[k] = 3; // control
    }
    for (int c = '!'; c <= '~'; c++) {
        if (c >= 'A' && c <= 'Z')
            continue;
        char *p = text + k * 16;
        p[0] = (char)c;
        toks[k] = (str){p, 1};
        types[k++] = 1;
    }
    for (int c = 0; c < 36; c++) {
        char *p = text + k * 16;
        p[0] = '#';
        p[1] = '#';
        p[2] = (char)(c < 26 ? 'a' + c : '0' + (c - 26));
        toks[k] = (str){p, 3};
        types[k++] = 1;
    }
    for (size_t i = 0; i < ARRAY_LEN(WPM_WORDS); i++, k++) {
        toks[k] = str_from(WPM_WORDS[i]);
        types[k] = 1;
    }
    if (NEVER(k != n)) {
        rc = ERR_INTERNAL;
        goto out;
    }
    rc = gguf_writer_set_str(w, "tokenizer.ggml.model", STR_LIT("bert"));
    if (!rc)
        rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, n);
    if (!rc)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 1);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.cls_token_id", 2);
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 3); // GGUF's spelling
    if (!rc)
        rc = gguf_writer_set_u32(w, "tokenizer.ggml.mask_token_id", 4);
    *n_out = (uint32_t)n;
out:
    free(text);
    free(toks);
    free(types);
    return rc;
}

/* A tensor of the model being made: name, shape, type and how to fill it. */
typedef enum fill { FILL_NORMAL, FILL_ONES, FILL_ZEROS, FILL_NEAR_ONE } fill;

typedef struct plan_tensor {
    char name[GGUF_TENSOR_NAME_MAX + 1];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
    fill how;
} plan_tensor;

typedef struct plan {
    plan_tensor *t;
    size_t n, cap;
} plan;

static int plan_add(plan *p, uint32_t n_dims, uint64_t ne0, uint64_t ne1, fill how, const char *fmt,
                    ...) __attribute__((format(printf, 6, 7)));
static int plan_add(plan *p, uint32_t n_dims, uint64_t ne0, uint64_t ne1, fill how, const char *fmt,
                    ...)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        plan_tensor *nt = realloc(p->t, nc * sizeof *nt);
        if (!nt)
            return ERR_NOMEM;
        p->t = nt;
        p->cap = nc;
    }
    plan_tensor *t = &p->t[p->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->how = how;
    t->type = TENSOR_F32;
    return 0;
}

static int init_usage(FILE *fp)
{
    fprintf(fp,
            "usage: ferry model init --arch llama|qwen2|bert --shape SHAPE --type TYPE\n"
            "                        [--vocab VOCAB.gguf] [--seed S] [--name NAME]\n"
            "                        [--pooling mean|cls] -o OUT.gguf\n"
            "Writes a model of a real architecture and shape with seeded random weights\n"
            "(normal, std 0.02; norms 1.0). SHAPE: tiny (hidden 64, 2 layers, 4 heads, 2 KV\n"
            "heads, FFN 128, the tokenizer's vocab, context 512), tiny-32k (as tiny with\n"
            "context 32768), small (as tiny with hidden 256, FFN 512),\n"
            "smollm-135m, qwen2-0.5b, tinyllama-1.1b, llama-3b. TYPE: f32 f16 bf16 q8_0 q4_0\n"
            "q4_k (a Q4_K_M-style mix) q6_k (rows not a multiple of 256 fall back to q4_0 or\n"
            "q8_0, of 32 to f16). --vocab copies\n"
            "all tokenizer.* metadata from a GGUF (and the vocab size with it); otherwise a\n"
            "built-in byte-level BPE vocab is used, padded to the shape's vocab size.\n"
            "bert (embedding models): SHAPE tiny (hidden 64, 2 layers, 4 heads, FFN 128,\n"
            "512 positions) or minilm (all-MiniLM-L6-v2: 384, 6 layers, 12 heads, FFN 1536,\n"
            "512 positions); --vocab must hold a WordPiece (\"bert\") tokenizer, else a small\n"
            "built-in one is used; --pooling (default mean) sets bert.pooling_type.\n");
    return fp == stdout ? 0 : 2;
}

static int model_init(int argc, char **argv)
{
    const char *arch = NULL, *shape_name = NULL, *type_name = NULL, *vocab_path = NULL,
               *out_path = NULL, *model_name = NULL, *pooling = "mean";
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return init_usage(stdout);
        if (i + 1 >= argc) {
            cli_errorf("model init: %s needs a value (see --help)", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--arch") == 0)
            arch = v;
        else if (strcmp(a, "--shape") == 0)
            shape_name = v;
        else if (strcmp(a, "--type") == 0)
            type_name = v;
        else if (strcmp(a, "--vocab") == 0)
            vocab_path = v;
        else if (strcmp(a, "--name") == 0)
            model_name = v;
        else if (strcmp(a, "--pooling") == 0)
            pooling = v;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
            out_path = v;
        else if (strcmp(a, "--seed") == 0) {
            int64_t s;
            if (parse_i64(v, 0, INT64_MAX, &s) != 0) {
                cli_errorf("model init: --seed %s is not a non-negative integer", v);
                return 2;
            }
            seed = (uint64_t)s;
        } else {
            cli_errorf("model init: unknown option %s (see --help)", a);
            return 2;
        }
    }
    if (!arch || !shape_name || !type_name || !out_path) {
        cli_errorf("model init: --arch, --shape, --type and -o are required (see --help)");
        return 2;
    }
    bool is_bert = strcmp(arch, "bert") == 0;
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0 && !is_bert) {
        cli_errorf("model init: unknown --arch %s (llama, qwen2 or bert)", arch);
        return 2;
    }
    uint32_t pool_type = BERT_POOL_MEAN;
    if (strcmp(pooling, "cls") == 0)
        pool_type = BERT_POOL_CLS;
    else if (strcmp(pooling, "mean") != 0) {
        cli_errorf("model init: unknown --pooling %s (mean or cls)", pooling);
        return 2;
    }
    const shape *sh = NULL;
    const shape *shapes = is_bert ? BERT_SHAPES : SHAPES;
    size_t n_shapes = is_bert ? ARRAY_LEN(BERT_SHAPES) : ARRAY_LEN(SHAPES);
    for (size_t i = 0; i < n_shapes; i++)
        if (strcmp(shape_name, shapes[i].name) == 0)
            sh = &shapes[i];
    if (!sh && is_bert) {
        cli_errorf("model init: unknown --shape %s for bert (tiny, minilm)", shape_name);
        return 2;
    }
    if (!sh) {
        cli_errorf("model init: unknown --shape %s (tiny, tiny-32k, small, smollm-135m, qwen2-0.5b, "
                   "tinyllama-1.1b, llama-3b)",
                   shape_name);
        return 2;
    }
    const wformat *fmt = format_find(type_name);
    if (!fmt) {
        cli_errorf("model init: unknown --type %s (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)",
                   type_name);
        return 2;
    }
    bool is_qwen2 = strcmp(arch, "qwen2") == 0;
    bool is_tied = sh->is_tied || (strcmp(sh->name, "tiny") == 0 && is_qwen2);

    int status = 2;
    err_msg e;
    err_clear(&e);
    gguf_file *vf = NULL;
    gguf_writer *w = gguf_writer_new();
    plan p = {0};
    rowbuf rb = {0};
    out_file of = {0};
    if (!w)
        goto nomem;

    // Tokenizer first: it decides the vocab size.
    uint32_t n_vocab = 0;
    if (vocab_path) {
        if (gguf_open(vocab_path, &vf, &e) != 0) {
            cli_errorf("model init: --vocab %s: %s", vocab_path, e.text);
            goto out;
        }
        const gguf_value *toks;
        if (gguf_get_arr(vf, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, &e) != 0 ||
            gguf_arr_len(toks) == 0 || gguf_arr_len(toks) > (1u << 24)) {
            cli_errorf("model init: --vocab %s: no usable tokenizer.ggml.tokens (%s)", vocab_path,
                       e.text[0] ? e.text : "empty or too large");
            goto out;
        }
        n_vocab = (uint32_t)gguf_arr_len(toks);
        str tm = {0};
        if (is_bert && (gguf_get_str(vf, "tokenizer.ggml.model", &tm, NULL) != 0 ||
                        !str_eq_cstr(tm, "bert"))) {
            cli_errorf("model init: --vocab %s: a bert model needs a WordPiece tokenizer "
                       "(tokenizer.ggml.model \"bert\")", vocab_path);
            goto out;
        }
        for (size_t i = 0; i < gguf_kv_count(vf); i++) {
            str k = gguf_kv_key(vf, i);
            char kz[256];
            if (!str_starts_with(k, STR_LIT("tokenizer.")) || k.n >= sizeof kz)
                continue;
            memcpy(kz, k.p, k.n);
            kz[k.n] = 0;
            if (gguf_writer_set_value(w, kz, gguf_kv_value(vf, i)) != 0)
                goto nomem;
        }
    } else if (is_bert ? builtin_wpm_vocab(w, &n_vocab) != 0
                       : builtin_vocab(w, sh->n_vocab, &n_vocab) != 0) {
        goto nomem;
    }

    char key[128];
    char default_name[128];
    snprintf(default_name, sizeof default_name, "ferry-synthetic-%s-%s-%s", arch, sh->name,
             fmt->name);
#define SET(call)                                                                                  \
    do {                                                                                           \
        if ((call) != 0)                                                                           \
            goto nomem;                                                                            \
    } while (0)
#define AKEY(k) (snprintf(key, sizeof key, "%s.%s", arch, (k)), key)
    SET(gguf_writer_set_str(w, "general.architecture", str_from(arch)));
    SET(gguf_writer_set_str(w, "general.name", str_from(model_name ? model_name : default_name)));
    SET(gguf_writer_set_u32(w, "general.file_type", fmt->ftype));
    SET(gguf_writer_set_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT));
    if (fmt->type != TENSOR_F32 && fmt->type != TENSOR_F16 && fmt->type != TENSOR_BF16)
        SET(gguf_writer_set_u32(w, "general.quantization_version", 2));
    if (is_bert) {
        // the keys and tensors llama.cpp's converter writes for BertModel
        SET(gguf_writer_set_u32(w, AKEY("context_length"), sh->n_ctx));
        SET(gguf_writer_set_u32(w, AKEY("embedding_length"), sh->n_embd));
        SET(gguf_writer_set_u32(w, AKEY("feed_forward_length"), sh->n_ff));
        SET(gguf_writer_set_u32(w, AKEY("block_count"), sh->n_layer));
        SET(gguf_writer_set_u32(w, AKEY("attention.head_count"), sh->n_head));
        SET(gguf_writer_set_f32(w, AKEY("attention.layer_norm_epsilon"), 1e-12f));
        SET(gguf_writer_set_bool(w, AKEY("attention.causal"), false));
        SET(gguf_writer_set_u32(w, AKEY("pooling_type"), pool_type));
        if (!vf || gguf_find_key(vf, "tokenizer.ggml.token_type_count") < 0)
            SET(gguf_writer_set_u32(w, "tokenizer.ggml.token_type_count", 2));
        uint64_t E = sh->n_embd, F = sh->n_ff, V = n_vocab;
        SET(plan_add(&p, 2, E, V, FILL_NORMAL, "token_embd.weight"));
        SET(plan_add(&p, 2, E, 2, FILL_NORMAL, "token_types.weight"));
        SET(plan_add(&p, 2, E, sh->n_ctx, FILL_NORMAL, "position_embd.weight"));
        SET(plan_add(&p, 1, E, 1, FILL_NEAR_ONE, "token_embd_norm.weight"));
        SET(plan_add(&p, 1, E, 1, FILL_NORMAL, "token_embd_norm.bias"));
        for (uint32_t l = 0; l < sh->n_layer; l++) {
            static const char *const attn[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
            for (size_t a = 0; a < ARRAY_LEN(attn); a++) {
                SET(plan_add(&p, 2, E, E, FILL_NORMAL, "blk.%u.%s.weight", l, attn[a]));
                SET(plan_add(&p, 1, E, 1, FILL_NORMAL, "blk.%u.%s.bias", l, attn[a]));
            }
            SET(plan_add(&p, 1, E, 1, FILL_NEAR_ONE, "blk.%u.attn_output_norm.weight", l));
            SET(plan_add(&p, 1, E, 1, FILL_NORMAL, "blk.%u.attn_output_norm.bias", l));
            SET(plan_add(&p, 2, E, F, FILL_NORMAL, "blk.%u.ffn_up.weight", l));
            SET(plan_add(&p, 1, F, 1, FILL_NORMAL, "blk.%u.ffn_up.bias", l));
            SET(plan_add(&p, 2, F, E, FILL_NORMAL, "blk.%u.ffn_down.weight", l));
            SET(plan_add(&p, 1, E, 1, FILL_NORMAL, "blk.%u.ffn_down.bias", l));
            SET(plan_add(&p, 1, E, 1, FILL_NEAR_ONE, "blk.%u.layer_output_norm.weight", l));
            SET(plan_add(&p, 1, E, 1, FILL_NORMAL, "blk.%u.layer_output_norm.bias", l));
        }
    } else {
        SET(gguf_writer_set_u32(w, AKEY("vocab_size"), n_vocab));
        SET(gguf_writer_set_u32(w, AKEY("context_length"), sh->n_ctx));
        SET(gguf_writer_set_u32(w, AKEY("embedding_length"), sh->n_embd));
        SET(gguf_writer_set_u32(w, AKEY("block_count"), sh->n_layer));
        SET(gguf_writer_set_u32(w, AKEY("feed_forward_length"), sh->n_ff));
        SET(gguf_writer_set_u32(w, AKEY("rope.dimension_count"), sh->n_embd / sh->n_head));
        SET(gguf_writer_set_u32(w, AKEY("attention.head_count"), sh->n_head));
        SET(gguf_writer_set_u32(w, AKEY("attention.head_count_kv"), sh->n_head_kv));
        SET(gguf_writer_set_f32(w, AKEY("attention.layer_norm_rms_epsilon"),
                                is_qwen2 ? 1e-6f : 1e-5f));
        SET(gguf_writer_set_f32(w, AKEY("rope.freq_base"), is_qwen2 ? 1000000.0f : 10000.0f));

        // Tensors, in the order llama.cpp's converter writes them.
        uint64_t E = sh->n_embd, KV = (uint64_t)sh->n_embd / sh->n_head * sh->n_head_kv,
                 F = sh->n_ff, V = n_vocab;
        SET(plan_add(&p, 2, E, V, FILL_NORMAL, "token_embd.weight"));
        for (uint32_t l = 0; l < sh->n_layer; l++) {
            SET(plan_add(&p, 1, E, 1, FILL_ONES, "blk.%u.attn_norm.weight", l));
            SET(plan_add(&p, 2, E, E, FILL_NORMAL, "blk.%u.attn_q.weight", l));
            if (is_qwen2)
                SET(plan_add(&p, 1, E, 1, FILL_NORMAL, "blk.%u.attn_q.bias", l));
            SET(plan_add(&p, 2, E, KV, FILL_NORMAL, "blk.%u.attn_k.weight", l));
            if (is_qwen2)
                SET(plan_add(&p, 1, KV, 1, FILL_NORMAL, "blk.%u.attn_k.bias", l));
            SET(plan_add(&p, 2, E, KV, FILL_NORMAL, "blk.%u.attn_v.weight", l));
            if (is_qwen2)
                SET(plan_add(&p, 1, KV, 1, FILL_NORMAL, "blk.%u.attn_v.bias", l));
            SET(plan_add(&p, 2, E, E, FILL_NORMAL, "blk.%u.attn_output.weight", l));
            SET(plan_add(&p, 1, E, 1, FILL_ONES, "blk.%u.ffn_norm.weight", l));
            SET(plan_add(&p, 2, E, F, FILL_NORMAL, "blk.%u.ffn_gate.weight", l));
            SET(plan_add(&p, 2, E, F, FILL_NORMAL, "blk.%u.ffn_up.weight", l));
            SET(plan_add(&p, 2, F, E, FILL_NORMAL, "blk.%u.ffn_down.weight", l));
        }
        SET(plan_add(&p, 1, E, 1, FILL_ONES, "output_norm.weight"));
        if (!is_tied)
            SET(plan_add(&p, 2, E, V, FILL_NORMAL, "output.weight"));
    }
#undef AKEY
#undef SET
    for (size_t i = 0; i < p.n; i++) {
        plan_tensor *t = &p.t[i];
        if (t->n_dims == 2) {
            bool is_out = strcmp(t->name, "output.weight") == 0 ||
                          (is_tied && strcmp(t->name, "token_embd.weight") == 0);
            t->type = weight_type(fmt, t->name, t->ne[0], (int)sh->n_layer, is_out);
        }
        if (gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &e) != 0) {
            cli_errorf("model init: %s", e.text);
            goto out;
        }
    }

    if ((status = out_open(&of, out_path)) != 0)
        goto out;
    status = 1;
    if (gguf_writer_begin(w, of.fp, &e) != 0)
        goto write_fail;
    for (size_t i = 0; i < p.n; i++) {
        const plan_tensor *t = &p.t[i];
        if (rowbuf_fit(&rb, t->ne[0]) != 0)
            goto nomem;
        rng r;
        rng_seed(&r, seed, t->name);
        size_t row_bytes;
        if (tensor_row_bytes((tensor_type)t->type, t->ne[0], &row_bytes) != 0)
            goto write_fail;
        for (uint64_t row = 0; row < t->ne[1]; row++) {
            for (uint64_t j = 0; j < t->ne[0]; j++)
                rb.f[j] = t->how == FILL_ONES       ? 1.0f
                          : t->how == FILL_ZEROS    ? 0.0f
                          : t->how == FILL_NEAR_ONE ? (float)(1.0 + 0.02 * rng_normal(&r))
                                                    : (float)(0.02 * rng_normal(&r));
            tensor_quantize_row((tensor_type)t->type, rb.f, rb.q, (size_t)t->ne[0]);
            if (gguf_writer_write(w, rb.q, row_bytes, &e) != 0)
                goto write_fail;
        }
    }
    if (gguf_writer_finish(w, &e) != 0)
        goto write_fail;
    status = out_commit(&of);
    goto out;

write_fail:
    cli_errorf("model init: writing %s: %s", out_path, e.text[0] ? e.text : "failed");
    status = 1;
    goto out;
nomem:
    cli_errorf("model init: out of memory");
    status = 1;
out:
    out_abort(&of);
    free(rb.f);
    free(rb.q);
    free(p.t);
    gguf_writer_free(w);
    gguf_close(vf);
    return status;
}

/* ---------------------------------------------------------------- quantize */

static int model_quantize(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf(
            "usage: ferry model quantize IN.gguf OUT.gguf TYPE\n"
            "Dequantizes every 2-D weight of IN and quantizes it to TYPE (f32 f16 bf16 q8_0\n"
            "q4_0 q4_k q6_k); 1-D tensors are copied. Metadata is kept, general.file_type updated.\n");
        return 0;
    }
    if (argc != 4) {
        cli_errorf("model quantize: expected IN.gguf OUT.gguf TYPE (see --help)");
        return 2;
    }
    const char *in_path = argv[1], *out_path = argv[2];
    const wformat *fmt = format_find(argv[3]);
    if (!fmt) {
        cli_errorf("model quantize: unknown TYPE %s (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)", argv[3]);
        return 2;
    }
    err_msg e;
    err_clear(&e);
    gguf_file *f;
    if (gguf_open(in_path, &f, &e) != 0) {
        cli_errorf("model quantize: %s: %s", in_path, e.text);
        return 2;
    }
    int status = 1;
    gguf_writer *w = gguf_writer_new();
    rowbuf rb = {0};
    out_file of = {0};
    uint32_t *types = calloc(gguf_tensor_count(f) + 1, sizeof(uint32_t));
    if (!w || !types)
        goto nomem;
    for (size_t i = 0; i < gguf_kv_count(f); i++) {
        str k = gguf_kv_key(f, i);
        char kz[256];
        if (k.n == 0 || k.n >= sizeof kz || memchr(k.p, 0, k.n))
            continue;
        memcpy(kz, k.p, k.n);
        kz[k.n] = 0;
        if (gguf_writer_set_value(w, kz, gguf_kv_value(f, i)) != 0)
            goto nomem;
    }
    if (gguf_writer_set_u32(w, "general.file_type", fmt->ftype) != 0)
        goto nomem;
    bool is_quant = fmt->type != TENSOR_F32 && fmt->type != TENSOR_F16 && fmt->type != TENSOR_BF16;
    if (is_quant && gguf_writer_set_u32(w, "general.quantization_version", 2) != 0)
        goto nomem;
    str arch = {0};
    int64_t n_layer = 0;
    (void)!gguf_get_str(f, "general.architecture", &arch, NULL);
    char k[128];
    snprintf(k, sizeof k, "%.*s.block_count", (int)MIN(arch.n, 64), arch.p ? arch.p : "");
    (void)!gguf_get_int(f, k, 0, 1 << 20, &n_layer, NULL);
    bool is_tied = gguf_tensor_find(f, "output.weight") == NULL;
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char nz[GGUF_TENSOR_NAME_MAX + 1];
        memcpy(nz, t->name.p, t->name.n);
        nz[t->name.n] = 0;
        types[i] = t->type;
        if (t->n_dims >= 2) {
            bool is_out = strcmp(nz, "output.weight") == 0 ||
                          (is_tied && strcmp(nz, "token_embd.weight") == 0);
            types[i] = weight_type(fmt, nz, t->ne[0], (int)n_layer, is_out);
        }
        if (gguf_writer_add_tensor(w, nz, types[i], t->n_dims, t->ne, &e) != 0) {
            cli_errorf("model quantize: %s", e.text);
            status = 2;
            goto out;
        }
    }
    if ((status = out_open(&of, out_path)) != 0)
        goto out;
    status = 1;
    if (gguf_writer_begin(w, of.fp, &e) != 0)
        goto write_fail;
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (types[i] == t->type) { // unchanged: copy the bytes
            if (gguf_writer_write(w, t->data, t->size, &e) != 0)
                goto write_fail;
            continue;
        }
        size_t in_row, out_row;
        if (rowbuf_fit(&rb, t->ne[0]) != 0)
            goto nomem;
        if (tensor_row_bytes((tensor_type)t->type, t->ne[0], &in_row) != 0 ||
            tensor_row_bytes((tensor_type)types[i], t->ne[0], &out_row) != 0)
            goto write_fail;
        uint64_t rows = gguf_tensor_nelems(t) / t->ne[0];
        const uint8_t *src = t->data;
        for (uint64_t r = 0; r < rows; r++) {
            tensor_dequantize_row((tensor_type)t->type, src + r * in_row, rb.f, (size_t)t->ne[0]);
            tensor_quantize_row((tensor_type)types[i], rb.f, rb.q, (size_t)t->ne[0]);
            if (gguf_writer_write(w, rb.q, out_row, &e) != 0)
                goto write_fail;
        }
    }
    if (gguf_writer_finish(w, &e) != 0)
        goto write_fail;
    status = out_commit(&of);
    goto out;

write_fail:
    cli_errorf("model quantize: writing %s: %s", out_path, e.text[0] ? e.text : "failed");
    status = 1;
    goto out;
nomem:
    cli_errorf("model quantize: out of memory");
    status = 1;
out:
    out_abort(&of);
    free(rb.f);
    free(rb.q);
    free(types);
    gguf_writer_free(w);
    gguf_close(f);
    return status;
}

/* ---------------------------------------------------------------- dispatch */

int cli_cmd_model(int argc, char **argv)
{
    const char *usage =
        "usage: ferry model info PATH [--json]\n"
        "       ferry model init --arch A --shape S --type T [--vocab V] [--seed S] -o OUT\n"
        "       ferry model quantize IN OUT TYPE\n"
        "Run a subcommand with --help for details.\n";
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0)
        return model_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "init") == 0)
        return model_init(argc - 1, argv + 1);
    if (strcmp(argv[1], "quantize") == 0)
        return model_quantize(argc - 1, argv + 1);
    cli_errorf("model: unknown subcommand %s (info, init, quantize)", argv[1]);
    return 2;
}
