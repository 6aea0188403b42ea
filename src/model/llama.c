/*
 * model/llama — loading llama/qwen2 GGUF models and the batched forward pass.
 *
 * Sections: model loading (metadata, tensors, checks) · paged KV storage ·
 * context (buffers) · the forward pass, one function per step.
 *
 * Shapes in comments: B = tokens in the step, R = logits rows, dim, kv_dim,
 * ffn, n_vocab from llama_hparams. Weight matrices are GGUF tensors with
 * ne = [n_in, n_out]: n_out rows of n_in elements, and y = W x.
 */
#include "model/llama.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/attn.h"
#include "model/gguf.h"
#include "model/kern.h"
#include "model/tensor.h"

/* Least multiply-adds of attention per pool chunk (~5 us of work). */
#define ATTN_CHUNK_WORK_MIN 16384

/* Query heads (tokens x heads of one KV head) one attn_span call serves: each
 * converted K/V row is used this many times, which hides the conversion (smollm
 * shape, 128-token prefill: 4% fewer instructions than with 24); more only
 * grows the scores scratch (48 x max_ctx floats per thread) and coarsens the
 * split over threads. */
#define ATTN_TILE_QUERY_HEADS 48

/* ================================================================ the model */

/* A weight matrix in the mapping: n_out rows of n_in elements of type. */
typedef struct llama_weight {
    tensor_type type;
    size_t n_in, n_out;
    size_t row_bytes;
    const uint8_t *data;
    kern_mat km;  // the same matrix as the kernels see it
} llama_weight;

typedef struct llama_layer {
    const float *attn_norm;   // (dim)
    llama_weight wq;          // (dim, dim)
    llama_weight wk, wv;      // (kv_dim, dim)
    llama_weight wo;          // (dim, dim)
    const float *bq;          // (dim), qwen2 only
    const float *bk, *bv;     // (kv_dim), qwen2 only
    const float *ffn_norm;    // (dim)
    llama_weight w_gate;      // (ffn, dim)
    llama_weight w_up;        // (ffn, dim)
    llama_weight w_down;      // (dim, ffn)
} llama_layer;

struct model {
    atomic_int refs;
    gguf_file *f;
    llama_hparams hp;
    llama_weight tok_embd;    // (n_vocab, dim)
    const float *out_norm;    // (dim)
    llama_weight output;      // (n_vocab, dim); tok_embd when tied
    const float *rope_freqs;  // (rope_dim / 2) divisors of the frequencies, or NULL
    llama_layer *layers;      // (n_layer)
    float *vecs;              // one allocation: every f32 vector above
    size_t n_vecs, cap_vecs;  // floats used / allocated in vecs
    uint64_t weight_bytes;    // read per decode token
};

/* Reads an integer hyperparameter "<arch>.<key>" in [lo, hi]; def when absent
 * (def < 0: required). */
static int hp_int(const gguf_file *f, const char *arch, const char *key, int64_t lo, int64_t hi,
                  int64_t def, uint32_t *out, err_msg *e)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    int64_t v;
    int rc = gguf_get_int(f, name, lo, hi, &v, e);
    if (rc == ERR_NOT_FOUND) {
        if (def < 0)
            return err_set(e, ERR_FORMAT, "model: missing metadata key \"%s\"", name);
        v = def;
    } else if (rc < 0) {
        return rc;
    }
    *out = (uint32_t)v;
    return 0;
}

static int hp_float(const gguf_file *f, const char *arch, const char *key, double def,
                    float *out, err_msg *e)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    double v;
    int rc = gguf_get_float(f, name, &v, e);
    if (rc == ERR_NOT_FOUND)
        v = def;
    else if (rc < 0)
        return rc;
    if (!isfinite(v))
        return err_set(e, ERR_FORMAT, "model: metadata \"%s\" is not finite", name);
    *out = (float)v;
    return 0;
}

static int read_hparams(const gguf_file *f, llama_hparams *hp, const char **arch_out, err_msg *e)
{
    memset(hp, 0, sizeof *hp);
    str a;
    int rc = gguf_get_str(f, "general.architecture", &a, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_FORMAT, "model: missing metadata key \"general.architecture\"");
    if (rc < 0)
        return rc;
    if (str_eq_cstr(a, "llama")) {
        hp->arch = LLAMA_ARCH_LLAMA;
        *arch_out = "llama";
    } else if (str_eq_cstr(a, "qwen2")) {
        hp->arch = LLAMA_ARCH_QWEN2;
        hp->is_neox = true;
        *arch_out = "qwen2";
    } else {
        return err_set(e, ERR_UNSUPPORTED,
                       "model: architecture \"%.*s\" is not supported (llama, qwen2 are)",
                       (int)(a.n > 64 ? 64 : a.n), a.p);
    }
    const char *arch = *arch_out;
    const int64_t big = 1 << 20;
    if ((rc = hp_int(f, arch, "embedding_length", 1, big, -1, &hp->dim, e)) ||
        (rc = hp_int(f, arch, "block_count", 1, 4096, -1, &hp->n_layer, e)) ||
        (rc = hp_int(f, arch, "attention.head_count", 1, 4096, -1, &hp->n_head, e)) ||
        (rc = hp_int(f, arch, "feed_forward_length", 1, big, -1, &hp->ffn, e)) ||
        (rc = hp_int(f, arch, "context_length", 1, LLAMA_CTX_MAX, 2048, &hp->n_ctx_train, e)) ||
        (rc = hp_int(f, arch, "attention.head_count_kv", 1, 4096, hp->n_head, &hp->n_kv_head,
                     e)))
        return rc;
    if (hp->dim % hp->n_head)
        return err_set(e, ERR_FORMAT, "model: embedding_length %u is not a multiple of "
                       "head_count %u", hp->dim, hp->n_head);
    if (hp->n_head % hp->n_kv_head)
        return err_set(e, ERR_FORMAT, "model: head_count %u is not a multiple of "
                       "head_count_kv %u", hp->n_head, hp->n_kv_head);
    hp->head_dim = hp->dim / hp->n_head;
    hp->kv_dim = hp->n_kv_head * hp->head_dim;
    if ((rc = hp_int(f, arch, "rope.dimension_count", 2, hp->head_dim, hp->head_dim,
                     &hp->rope_dim, e)))
        return rc;
    if (hp->rope_dim % 2)
        return err_set(e, ERR_FORMAT, "model: rope.dimension_count %u is odd", hp->rope_dim);
    if ((rc = hp_float(f, arch, "rope.freq_base", 10000.0, &hp->rope_base, e)) ||
        (rc = hp_float(f, arch, "attention.layer_norm_rms_epsilon", 1e-5, &hp->rms_eps, e)))
        return rc;
    if (!(hp->rope_base > 0) || !(hp->rms_eps > 0))
        return err_set(e, ERR_FORMAT, "model: rope.freq_base %g and rms epsilon %g must be "
                       "positive", (double)hp->rope_base, (double)hp->rms_eps);
    // RoPE scaling: linear divides positions by the factor; other kinds are refused
    hp->rope_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    str st = {0};
    rc = gguf_get_str(f, key, &st, e);
    if (rc < 0 && rc != ERR_NOT_FOUND)
        return rc;
    float factor = 0;
    if ((rc = hp_float(f, arch, "rope.scaling.factor", 0.0, &factor, e)))
        return rc;
    if (st.n == 0) {  // older files: rope.scale_linear
        if ((rc = hp_float(f, arch, "rope.scale_linear", 0.0, &factor, e)))
            return rc;
        if (factor > 0)
            st = STR_LIT("linear");
    }
    if (st.n && !str_eq_cstr(st, "none")) {
        if (!str_eq_cstr(st, "linear"))
            return err_set(e, ERR_UNSUPPORTED, "model: rope scaling \"%.*s\" is not supported "
                           "(none, linear are)", (int)(st.n > 32 ? 32 : st.n), st.p);
        if (factor > 0)
            hp->rope_scale = factor;
    }
    return 0;
}

/* Looks up a weight matrix of n_out rows of n_in elements. */
static int get_weight(const gguf_file *f, const char *name, size_t n_in, size_t n_out,
                      llama_weight *w, err_msg *e)
{
    const uint64_t ne[2] = {n_in, n_out};
    const gguf_tensor *t;
    int rc = gguf_require_tensor(f, name, 2, ne, &t, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_FORMAT, "model: missing tensor \"%s\"", name);
    if (rc < 0)
        return rc;
    if (!tensor_type_supported(t->type))
        return err_set(e, ERR_UNSUPPORTED, "model: tensor \"%s\" has type %s, which the "
                       "kernels do not support", name, tensor_type_name(t->type));
    w->type = (tensor_type)t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    if ((rc = tensor_row_bytes(w->type, n_in, &w->row_bytes)) < 0)
        return err_set(e, rc, "model: tensor \"%s\": rows of %zu elements do not fit type %s",
                       name, n_in, tensor_type_name(t->type));
    w->data = t->data;
    if ((rc = kern_mat_init(&w->km, w->type, n_out, n_in, t->data)) < 0)
        return err_set(e, rc, "model: tensor \"%s\" (%s, %zu x %zu) cannot be used by the "
                       "kernels", name, tensor_type_name(t->type), n_out, n_in);
    return 0;
}

/* Copies a vector tensor of n elements (any supported type) into m->vecs. *out
 * stays NULL when the tensor is absent and optional. */
static int get_vec(model *m, const char *name, size_t n, bool optional, const float **out,
                   err_msg *e)
{
    *out = NULL;
    const uint64_t ne[1] = {n};
    const gguf_tensor *t;
    int rc = gguf_require_tensor(m->f, name, 1, ne, &t, e);
    if (rc == ERR_NOT_FOUND) {
        if (optional)
            return 0;
        return err_set(e, ERR_FORMAT, "model: missing tensor \"%s\"", name);
    }
    if (rc < 0)
        return rc;
    if (tensor_type_block_elems((tensor_type)t->type) != 1 || !tensor_type_supported(t->type))
        return err_set(e, ERR_UNSUPPORTED, "model: vector \"%s\" has type %s (f32, f16, bf16 "
                       "are supported)", name, tensor_type_name(t->type));
    if (NEVER(m->n_vecs + n > m->cap_vecs))
        return err_set(e, ERR_INTERNAL, "model: vector space exhausted at \"%s\"", name);
    float *dst = m->vecs + m->n_vecs;
    tensor_dequantize_row((tensor_type)t->type, t->data, dst, n);
    m->n_vecs += n;
    *out = dst;
    return 0;
}

static uint64_t weight_bytes(const llama_weight *w)
{
    return (uint64_t)w->row_bytes * w->n_out;
}

static int load_tensors(model *m, err_msg *e)
{
    const llama_hparams *hp = &m->hp;
    const gguf_file *f = m->f;
    const gguf_tensor *te = gguf_tensor_find(f, "token_embd.weight");
    if (!te)
        return err_set(e, ERR_FORMAT, "model: missing tensor \"token_embd.weight\"");
    if (te->n_dims != 2 || te->ne[0] != hp->dim || te->ne[1] < 1 || te->ne[1] > INT32_MAX)
        return err_set(e, ERR_FORMAT, "model: tensor \"token_embd.weight\" has shape "
                       "[%llu, %llu], expected [%u, n_vocab]", (unsigned long long)te->ne[0],
                       (unsigned long long)te->ne[1], hp->dim);
    m->hp.n_vocab = (uint32_t)te->ne[1];
    int rc = get_weight(f, "token_embd.weight", hp->dim, hp->n_vocab, &m->tok_embd, e);
    if (rc < 0)
        return rc;

    // the tokenizer must describe exactly the embedding's rows
    const gguf_value *toks;
    rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks, e);
    if (rc == 0 && gguf_arr_len(toks) != hp->n_vocab)
        return err_set(e, ERR_FORMAT, "model: vocabulary size mismatch: tokenizer.ggml.tokens "
                       "has %zu tokens but token_embd.weight has %u rows", gguf_arr_len(toks),
                       hp->n_vocab);
    if (rc < 0 && rc != ERR_NOT_FOUND)
        return rc;

    // all f32 vectors in one allocation: norms, biases, rope factors
    size_t per_layer = 2 * (size_t)hp->dim + (size_t)hp->dim + 2 * (size_t)hp->kv_dim;
    m->cap_vecs = (size_t)hp->n_layer * per_layer + hp->dim + hp->rope_dim;
    m->vecs = malloc(m->cap_vecs * sizeof(float));
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->vecs || !m->layers)
        return err_set(e, ERR_NOMEM, "model: out of memory for %u layers", hp->n_layer);

    if ((rc = get_vec(m, "output_norm.weight", hp->dim, false, &m->out_norm, e)) < 0)
        return rc;
    if (gguf_tensor_find(f, "output.weight")) {
        if ((rc = get_weight(f, "output.weight", hp->dim, hp->n_vocab, &m->output, e)) < 0)
            return rc;
    } else {
        m->output = m->tok_embd;
        m->hp.is_tied_output = true;
    }
    if ((rc = get_vec(m, "rope_freqs.weight", hp->rope_dim / 2, true, &m->rope_freqs, e)) < 0)
        return rc;
    m->weight_bytes = weight_bytes(&m->output);

    for (uint32_t i = 0; i < hp->n_layer; i++) {
        llama_layer *L = &m->layers[i];
        char n[96];
#define W_(field, nm, in, out)                                                         \
    do {                                                                               \
        snprintf(n, sizeof n, "blk.%u." nm ".weight", i);                              \
        if ((rc = get_weight(f, n, (in), (out), &L->field, e)) < 0)                    \
            return rc;                                                                 \
        m->weight_bytes += weight_bytes(&L->field);                                    \
    } while (0)
#define V_(field, nm, suffix, len, opt)                                                \
    do {                                                                               \
        snprintf(n, sizeof n, "blk.%u." nm "." suffix, i);                             \
        if ((rc = get_vec(m, n, (len), (opt), &L->field, e)) < 0)                      \
            return rc;                                                                 \
    } while (0)
        V_(attn_norm, "attn_norm", "weight", hp->dim, false);
        W_(wq, "attn_q", hp->dim, hp->dim);
        W_(wk, "attn_k", hp->dim, hp->kv_dim);
        W_(wv, "attn_v", hp->dim, hp->kv_dim);
        W_(wo, "attn_output", hp->dim, hp->dim);
        bool bias = hp->arch == LLAMA_ARCH_QWEN2;
        V_(bq, "attn_q", "bias", hp->dim, !bias);
        V_(bk, "attn_k", "bias", hp->kv_dim, !bias);
        V_(bv, "attn_v", "bias", hp->kv_dim, !bias);
        V_(ffn_norm, "ffn_norm", "weight", hp->dim, false);
        W_(w_gate, "ffn_gate", hp->dim, hp->ffn);
        W_(w_up, "ffn_up", hp->dim, hp->ffn);
        W_(w_down, "ffn_down", hp->ffn, hp->dim);
#undef W_
#undef V_
        if (L->bq || L->bk || L->bv) {
            if (!L->bq || !L->bk || !L->bv)
                return err_set(e, ERR_FORMAT, "model: layer %u has some but not all of the "
                               "attn_q/attn_k/attn_v biases", i);
            m->hp.has_qkv_bias = true;
        }
    }
    return 0;
}

/*
 * Calls fn on every matmul weight of m, stopping at the first error: the output
 * and the layers' (not the embedding table, which is only looked up by row; a
 * tied output is its own kern_mat copy of it).
 */
static int each_mat(model *m, int (*fn)(kern_mat *))
{
    int rc = fn(&m->output.km);
    for (uint32_t i = 0; rc == 0 && m->layers && i < m->hp.n_layer; i++) {
        llama_layer *L = &m->layers[i];
        kern_mat *ks[] = {&L->wq.km,     &L->wk.km,   &L->wv.km,    &L->wo.km,
                          &L->w_gate.km, &L->w_up.km, &L->w_down.km};
        for (size_t k = 0; rc == 0 && k < sizeof ks / sizeof ks[0]; k++)
            rc = fn(ks[k]);
    }
    return rc;
}

/*
 * kern_mat_pack and then drop the mapped pages of the rows the packed copy now
 * serves: the model's mapping is gguf_open's read-only private file mapping, so
 * MADV_DONTNEED only unmaps them (a later read, e.g. an embedding lookup of a
 * tied output, faults them back from the page cache) and the process does not
 * hold every packed matrix twice (tinyllama-1.1b Q8_0: 2.2 -> 1.2 GB resident).
 */
static int pack_one(kern_mat *k)
{
    int rc = kern_mat_pack(k);
    if (rc < 0 || !k->pack)
        return rc;
    uintptr_t pg = 4096, lo = (uintptr_t)k->data, hi = lo + k->pack_groups * 8 * k->row_bytes;
    lo = (lo + pg - 1) & ~(pg - 1); // whole pages inside the packed rows only
    hi &= ~(pg - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    return 0;
}

static void model_free(model *m)
{
    if (!m)
        return;
    (void)each_mat(m, kern_mat_unpack);
    free(m->layers);
    free(m->vecs);
    gguf_close(m->f);
    free(m);
}

int model_load(const char *path, model **out, err_msg *e)
{
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "model: out of memory");
    atomic_init(&m->refs, 1);
    const char *arch = NULL;
    int rc = gguf_open(path, &m->f, e);
    if (rc < 0)
        goto fail;
    if ((rc = read_hparams(m->f, &m->hp, &arch, e)) < 0)
        goto fail;
    if ((rc = load_tensors(m, e)) < 0)
        goto fail;
    // the AVX2 Q8_0/Q4_0 kernels' layout (kern_mat_pack); the results do not change
    if ((rc = each_mat(m, pack_one)) < 0) {
        err_set(e, rc, "model: out of memory for the packed weights");
        goto fail;
    }
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc;
}

model *model_ref(model *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void model_unref(model *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        model_free(m);
}

const llama_hparams *model_hparams(const model *m)
{
    return &m->hp;
}

const struct gguf_file *model_gguf(const model *m)
{
    return m->f;
}

uint64_t model_weight_bytes_per_token(const model *m)
{
    return m->weight_bytes;
}

uint64_t model_n_params(const model *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < gguf_tensor_count(m->f); i++)
        n += gguf_tensor_nelems(gguf_tensor_at(m->f, i));
    return n;
}

/* ================================================================ paged KV storage */

struct llama_kv {
    size_t n_layer, n_blocks, block_tokens, kv_dim;
    llama_kv_type type;
    size_t row_bytes;     // bytes of one K or V row: kv_dim * 2 (F16), kv_dim / 32 * 34 (Q8_0)
    size_t layer_stride;  // F16: elements per layer: n_blocks * block_tokens * kv_dim
    size_t bytes;         // both halves
    uint16_t *k;          // F16: (n_layer, n_blocks, block_tokens, kv_dim)
    uint16_t *v;          // F16: (n_layer, n_blocks, block_tokens, kv_dim)
    uint8_t *k8, *v8;     // Q8_0: (n_layer, n_blocks, block_tokens, row_bytes)
};

/* Bytes of one K (or V) row of kv_dim elements stored as t; 0 when impossible. */
static size_t kv_row_bytes(size_t kv_dim, llama_kv_type t)
{
    if (t == LLAMA_KV_F16)
        return kv_dim * sizeof(uint16_t);
    if (t == LLAMA_KV_Q8_0 && kv_dim % TENSOR_QK == 0)
        return kv_dim / TENSOR_QK * sizeof(tensor_block_q8_0);
    return 0;
}

size_t llama_kv_token_bytes(const llama_hparams *hp)
{
    return llama_kv_token_bytes_type(hp, LLAMA_KV_F16);
}

size_t llama_kv_token_bytes_type(const llama_hparams *hp, llama_kv_type t)
{
    return (size_t)hp->n_layer * kv_row_bytes(hp->kv_dim, t) * 2;
}

int llama_kv_new(const model *m, size_t n_blocks, size_t block_tokens, llama_kv **out,
                 err_msg *e)
{
    return llama_kv_new_type(m, n_blocks, block_tokens, LLAMA_KV_F16, out, e);
}

/*
 * Zeroed memory for the K/V pool, straight from mmap: page-aligned (so every
 * F16 or Q8_0 row that is a multiple of 64 bytes starts a cache line, and one
 * KV head of a row spans no extra line), advised to be backed by transparent
 * huge pages, and faulted in now. Attention reads a sequence's K/V block by
 * block from all over the pool: with 4 KiB pages nearly every block is a TLB
 * miss and a page walk whose tables are themselves not cached (a 256 MiB pool
 * has 64 Ki page-table entries); with THP off the advice changes nothing.
 * Faulting in at creation: a lazily touched pool zeroed 2 MiB pages in the
 * middle of decode steps (a block spans every layer's region, so a fresh block
 * could fault dozens; ~1% of a serving run's CPU until the pool had been
 * cycled once), and memory the machine cannot give shows up here, at load,
 * instead of as an OOM kill while requests run. NULL when out of memory.
 */
static uint8_t *kv_mem_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, n, MADV_HUGEPAGE);
    if (madvise(p, n, MADV_POPULATE_WRITE) != 0 && errno == ENOMEM) {
        munmap(p, n); // (EINVAL: a kernel before 5.14; the pool faults in lazily)
        return NULL;
    }
    return p;
}

int llama_kv_new_type(const model *m, size_t n_blocks, size_t block_tokens, llama_kv_type t,
                      llama_kv **out, err_msg *e)
{
    *out = NULL;
    if (n_blocks == 0 || block_tokens == 0 || n_blocks > INT32_MAX)
        return err_set(e, ERR_INVAL, "kv: %zu blocks of %zu tokens is not a valid pool",
                       n_blocks, block_tokens);
    const llama_hparams *hp = &m->hp;
    size_t rb = kv_row_bytes(hp->kv_dim, t);
    if (rb == 0)
        return err_set(e, ERR_INVAL, "kv: a K/V row of %u elements cannot be stored as %s "
                       "(q8_0 needs a multiple of 32)", hp->kv_dim,
                       t == LLAMA_KV_Q8_0 ? "q8_0" : "this type");
    size_t rows, per_layer, total;
    if (!size_mul_ok(n_blocks, block_tokens, &rows) ||
        !size_mul_ok(rows, hp->kv_dim, &per_layer) ||
        !size_mul_ok(rows, hp->n_layer, &total) || !size_mul_ok(total, rb, &total) ||
        !size_mul_ok(total, 2, &total))
        return err_set(e, ERR_OVERFLOW, "kv: %zu blocks of %zu tokens overflow", n_blocks,
                       block_tokens);
    llama_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return err_set(e, ERR_NOMEM, "kv: out of memory");
    kv->n_layer = hp->n_layer;
    kv->n_blocks = n_blocks;
    kv->block_tokens = block_tokens;
    kv->kv_dim = hp->kv_dim;
    kv->type = t;
    kv->row_bytes = rb;
    kv->layer_stride = per_layer;
    kv->bytes = total;
    uint8_t *mem = kv_mem_alloc(total);
    if (!mem) {
        free(kv);
        return err_set(e, ERR_NOMEM, "kv: out of memory for %zu bytes of KV", total);
    }
    if (t == LLAMA_KV_F16) {
        kv->k = (uint16_t *)(void *)mem;
        kv->v = kv->k + total / 2 / sizeof(uint16_t);
    } else {
        kv->k8 = mem;
        kv->v8 = mem + total / 2;
    }
    *out = kv;
    return 0;
}

llama_kv_type llama_kv_get_type(const llama_kv *kv)
{
    return kv->type;
}

size_t llama_kv_bytes(const llama_kv *kv)
{
    return kv->bytes;
}

void llama_kv_free(llama_kv *kv)
{
    if (!kv)
        return;
    munmap(kv->k ? (void *)kv->k : (void *)kv->k8, kv->bytes);
    free(kv);
}

size_t llama_kv_n_blocks(const llama_kv *kv)
{
    return kv->n_blocks;
}

size_t llama_kv_block_tokens(const llama_kv *kv)
{
    return kv->block_tokens;
}

int llama_kv_copy_block(llama_kv *kv, int32_t dst, int32_t src)
{
    if (dst < 0 || src < 0 || (size_t)dst >= kv->n_blocks || (size_t)src >= kv->n_blocks)
        return ERR_INVAL;
    size_t blk = kv->block_tokens * kv->row_bytes; // bytes of one block of one layer
    uint8_t *k = kv->k ? (uint8_t *)kv->k : kv->k8, *v = kv->v ? (uint8_t *)kv->v : kv->v8;
    for (size_t l = 0; l < kv->n_layer; l++) {
        size_t base = l * kv->n_blocks * blk;
        memcpy(k + base + (size_t)dst * blk, k + base + (size_t)src * blk, blk);
        memcpy(v + base + (size_t)dst * blk, v + base + (size_t)src * blk, blk);
    }
    return 0;
}

/* K (or V) row of layer l, position p of the sequence whose table is blocks. */
static inline uint16_t *kv_row(const llama_kv *kv, uint16_t *base, size_t l,
                               const int32_t *blocks, size_t p)
{
    size_t b = (size_t)blocks[p / kv->block_tokens];
    return base + l * kv->layer_stride + (b * kv->block_tokens + p % kv->block_tokens) * kv->kv_dim;
}

/* Q8_0 K (or V) row of layer l, position p. */
static inline uint8_t *kv_row8(const llama_kv *kv, uint8_t *base, size_t l, const int32_t *blocks,
                               size_t p)
{
    size_t b = (size_t)blocks[p / kv->block_tokens];
    size_t row = (l * kv->n_blocks + b) * kv->block_tokens + p % kv->block_tokens;
    return base + row * kv->row_bytes;
}

/* Layer l of the cache as model/attn reads it. */
static attn_kv attn_view(const llama_kv *kv, size_t l)
{
    size_t layer_bytes = kv->n_blocks * kv->block_tokens * kv->row_bytes;
    const uint8_t *k = kv->k ? (const uint8_t *)kv->k : kv->k8;
    const uint8_t *v = kv->v ? (const uint8_t *)kv->v : kv->v8;
    return (attn_kv){.k = k + l * layer_bytes, .v = v + l * layer_bytes,
                     .row_bytes = kv->row_bytes, .block_tokens = kv->block_tokens,
                     .is_q8 = kv->type == LLAMA_KV_Q8_0};
}

/* ================================================================ context */

/* Consecutive query tokens [t0, t0 + n) of one span: one attn_span call per KV head. */
typedef struct attn_tile {
    size_t t0, n;
    uint64_t work; // positions attended, summed over the tokens
} attn_tile;


struct llama_ctx {
    model *m;
    llama_config cfg;
    // per token of the step
    int32_t *tok;       // (B) token ids
    int32_t *pos;       // (B) positions
    uint32_t *span;     // (B) span index of each token
    float *rope;        // (B, rope_dim) cos, sin pairs per frequency
    float *x;           // (B, dim) residual stream
    float *xb;          // (B, dim) normed input of a sub-layer
    float *q;           // (B, dim) queries
    float *k, *v;       // (B, kv_dim) keys and values of this step
    float *att;         // (B, dim) attention output (heads concatenated)
    float *xb2;         // (B, dim) sub-layer output before the residual add
    float *hb, *hb2;    // (B, ffn) gate and up projections
    float *xo;          // (max_logits, dim) final normed rows that want logits
    float *scores;      // (n_threads, scores_floats) attention scratch of one
                        // (tile of tokens, KV head) item
    size_t scores_floats; // attn_span_scratch_floats(tile_tokens, group, max_ctx, head_dim)
    size_t tile_tokens; // query tokens of one sequence per attention item
    attn_tile *tiles;   // (max_batch_tokens) attention items of a step, heaviest first
    size_t n_tiles;     // tiles of this step
    uint64_t attn_work; // positions attended by this step's tokens, summed
    size_t n_threads;   // participants of cfg.pool
    void *mm_scratch;   // kern_matmul's quantized activations, for the largest case
    size_t mm_scratch_bytes;
};

/* Largest kern_matmul(_multi) scratch of a step: B rows through every layer
 * weight group (Q+K+V and gate+up share one quantized input), and max_logits
 * rows through the output matrix. SIZE_MAX on overflow. */
static size_t ctx_scratch_bytes(const model *m, size_t B, size_t max_logits)
{
    size_t mx = kern_scratch_bytes(m->output.type, m->output.n_in, max_logits);
    for (uint32_t l = 0; l < m->hp.n_layer && mx != SIZE_MAX; l++) {
        const llama_layer *L = &m->layers[l];
        const kern_mat *qkv[] = {&L->wq.km, &L->wk.km, &L->wv.km};
        const kern_mat *gu[] = {&L->w_gate.km, &L->w_up.km};
        size_t b[] = {kern_scratch_bytes_multi(qkv, 3, B), kern_scratch_bytes_multi(gu, 2, B),
                      kern_scratch_bytes(L->wo.type, L->wo.n_in, B),
                      kern_scratch_bytes(L->w_down.type, L->w_down.n_in, B)};
        for (size_t i = 0; i < ARRAY_LEN(b); i++)
            if (b[i] == SIZE_MAX || b[i] > mx)
                mx = b[i];
    }
    return mx;
}

llama_config llama_config_default(void)
{
    llama_config c;
    c.max_batch_tokens = 512;
    c.max_ctx = 0;
    c.max_logits = 64;
    c.pool = NULL;
    return c;
}

int llama_ctx_new(model *m, const llama_config *cfg, llama_ctx **out, err_msg *e)
{
    *out = NULL;
    const llama_hparams *hp = &m->hp;
    llama_config c = *cfg;
    if (c.max_ctx == 0)
        c.max_ctx = hp->n_ctx_train;
    if (c.max_ctx > LLAMA_CTX_MAX)
        return err_set(e, ERR_INVAL, "llama: max_ctx %zu exceeds %u", c.max_ctx, LLAMA_CTX_MAX);
    if (c.max_batch_tokens < 1 || c.max_batch_tokens > LLAMA_BATCH_MAX)
        return err_set(e, ERR_INVAL, "llama: max_batch_tokens %zu is outside [1, %d]",
                       c.max_batch_tokens, LLAMA_BATCH_MAX);
    if (c.max_logits < 1 || c.max_logits > c.max_batch_tokens)
        return err_set(e, ERR_INVAL, "llama: max_logits %zu is outside [1, max_batch_tokens]",
                       c.max_logits);
    size_t B = c.max_batch_tokens;
    size_t nt = (size_t)pool_threads(c.pool);
    llama_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return err_set(e, ERR_NOMEM, "llama: out of memory");
    x->cfg = c;
    x->n_threads = nt;
    x->tok = malloc(B * sizeof *x->tok);
    x->pos = malloc(B * sizeof *x->pos);
    x->span = malloc(B * sizeof *x->span);
    x->rope = malloc(B * hp->rope_dim * sizeof(float));
    x->x = malloc(B * hp->dim * sizeof(float));
    x->xb = malloc(B * hp->dim * sizeof(float));
    x->q = malloc(B * hp->dim * sizeof(float));
    x->k = malloc(B * hp->kv_dim * sizeof(float));
    x->v = malloc(B * hp->kv_dim * sizeof(float));
    x->att = malloc(B * hp->dim * sizeof(float));
    x->xb2 = malloc(B * hp->dim * sizeof(float));
    x->hb = malloc(B * hp->ffn * sizeof(float));
    x->hb2 = malloc(B * hp->ffn * sizeof(float));
    x->xo = malloc(c.max_logits * hp->dim * sizeof(float));
    size_t grp = hp->n_head / hp->n_kv_head;
    x->tile_tokens = (ATTN_TILE_QUERY_HEADS + grp - 1) / grp;
    x->scores_floats = attn_span_scratch_floats(x->tile_tokens, grp, c.max_ctx, hp->head_dim);
    size_t scores_bytes;
    if (x->scores_floats == SIZE_MAX ||
        !size_mul_ok(nt * sizeof(float), x->scores_floats, &scores_bytes)) {
        llama_ctx_free(x);
        return err_set(e, ERR_OVERFLOW, "llama: attention scratch for %zu positions overflows",
                       c.max_ctx);
    }
    x->scores = malloc(scores_bytes);
    x->tiles = malloc(B * sizeof *x->tiles);
    x->mm_scratch_bytes = ctx_scratch_bytes(m, B, c.max_logits);
    if (x->mm_scratch_bytes == SIZE_MAX) {
        llama_ctx_free(x);
        return err_set(e, ERR_OVERFLOW, "llama: matmul scratch for %zu tokens overflows", B);
    }
    x->mm_scratch = x->mm_scratch_bytes ? malloc(x->mm_scratch_bytes) : NULL;
    if (!x->tok || !x->pos || !x->span || !x->rope || !x->x || !x->xb || !x->q || !x->k ||
        !x->v || !x->att || !x->xb2 || !x->hb || !x->hb2 || !x->xo || !x->scores ||
        !x->tiles || (x->mm_scratch_bytes && !x->mm_scratch)) {
        llama_ctx_free(x);
        return err_set(e, ERR_NOMEM, "llama: out of memory for a batch of %zu tokens", B);
    }
    x->m = model_ref(m);
    *out = x;
    return 0;
}

void llama_ctx_free(llama_ctx *c)
{
    if (!c)
        return;
    free(c->tok);
    free(c->pos);
    free(c->span);
    free(c->rope);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->xb2);
    free(c->hb);
    free(c->hb2);
    free(c->xo);
    free(c->scores);
    free(c->tiles);
    free(c->mm_scratch);
    model_unref(c->m);
    free(c);
}

const llama_config *llama_ctx_config(const llama_ctx *c)
{
    return &c->cfg;
}

const model *llama_ctx_model(const llama_ctx *c)
{
    return c->m;
}

/* ================================================================ the forward pass */

/*
 * Y (n, w->n_out) = X (n, w->n_in) · Wᵀ with kern_matmul: every weight row is read
 * once for all n rows, and each output element is computed by the same fixed
 * instruction sequence whatever n, tiling and thread count are (batch
 * invariance). By far the most time of a step is spent here.
 */
static void matmul(llama_ctx *c, const llama_weight *w, const float *X, size_t n, float *Y)
{
    // kern sizes the pool chunks (small matrices stay on this thread)
    kern_matmul(c->cfg.pool, &w->km, X, n, Y, c->mm_scratch, c->mm_scratch_bytes);
}

/*
 * Y_k (n, w_k->n_out) = X (n, n_in) · W_kᵀ for the k matrices of one input (Q, K,
 * V; gate, up): X is quantized once and all their rows go to the pool in one
 * hand-off, so a decode step pays one barrier per group instead of per matrix.
 * Bitwise the same as k separate matmul calls.
 */
static void matmul_group(llama_ctx *c, const llama_weight *const *w, float *const *Y, size_t k,
                         const float *X, size_t n)
{
    const kern_mat *km[KERN_MULTI_MAX];
    for (size_t i = 0; i < k; i++)
        km[i] = &w[i]->km;
    kern_matmul_multi(c->cfg.pool, km, Y, k, X, n, c->mm_scratch, c->mm_scratch_bytes);
}

/* out (n, dim) = x / sqrt(mean(x²) + eps) * g, per row. out may equal x. */
static void rmsnorm(const float *x, const float *g, size_t n, size_t dim, float eps, float *out)
{
    for (size_t t = 0; t < n; t++)
        kern_rmsnorm(out + t * dim, x + t * dim, g, dim, eps);
}

/* y (n, len) += b, per row. */
static void add_bias(float *y, const float *b, size_t n, size_t len)
{
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < len; i++)
            y[t * len + i] += b[i];
}

/*
 * RoPE tables for the step: for token t and frequency i < rope_dim/2,
 *   theta = pos_t / rope_scale * rope_base^(-2i / rope_dim) [/ rope_freqs[i]]
 * rope (B, rope_dim) holds cos(theta), sin(theta) interleaved. Computed in
 * double so the table does not depend on the order positions arrive in.
 */
static void rope_tables(llama_ctx *c, size_t n)
{
    const llama_hparams *hp = &c->m->hp;
    size_t half = hp->rope_dim / 2;
    for (size_t t = 0; t < n; t++) {
        double p = (double)c->pos[t] / (double)hp->rope_scale;
        for (size_t i = 0; i < half; i++) {
            double inv = pow((double)hp->rope_base, -2.0 * (double)i / (double)hp->rope_dim);
            if (c->m->rope_freqs)
                inv /= (double)c->m->rope_freqs[i];
            double th = p * inv;
            c->rope[t * hp->rope_dim + 2 * i] = (float)cos(th);
            c->rope[t * hp->rope_dim + 2 * i + 1] = (float)sin(th);
        }
    }
}

/*
 * Rotates the first rope_dim dims of each head of x (n, n_heads * head_dim):
 *   llama (normal): pairs (x[2i], x[2i+1])
 *   qwen2 (NeoX):   pairs (x[i], x[i + rope_dim/2])
 *   (a, b) -> (a cos - b sin, a sin + b cos)
 */
static void rope_row(const llama_ctx *c, float *x, size_t t, size_t n_heads)
{
    const llama_hparams *hp = &c->m->hp;
    size_t half = hp->rope_dim / 2, hd = hp->head_dim;
    const float *cs = c->rope + t * hp->rope_dim;
    for (size_t h = 0; h < n_heads; h++) {
        float *v = x + (t * n_heads + h) * hd;
        for (size_t i = 0; i < half; i++) {
            size_t ia = hp->is_neox ? i : 2 * i, ib = hp->is_neox ? i + half : 2 * i + 1;
            float a = v[ia], b = v[ib], co = cs[2 * i], si = cs[2 * i + 1];
            v[ia] = a * co - b * si;
            v[ib] = a * si + b * co;
        }
    }
}

/* Stores token t's K/V rows (kv_dim each) at its position, as F16 or Q8_0. */
static void kv_store_row(llama_ctx *c, llama_kv *kv, size_t l, const llama_span *spans, size_t t)
{
    size_t kd = kv->kv_dim;
    const llama_span *s = &spans[c->span[t]];
    size_t p = (size_t)c->pos[t];
    if (kv->type == LLAMA_KV_Q8_0) {
        tensor_quantize_row(TENSOR_Q8_0, c->k + t * kd, kv_row8(kv, kv->k8, l, s->blocks, p), kd);
        tensor_quantize_row(TENSOR_Q8_0, c->v + t * kd, kv_row8(kv, kv->v8, l, s->blocks, p), kd);
        return;
    }
    kern_f32_to_f16(kv_row(kv, kv->k, l, s->blocks, p), c->k + t * kd, kd);
    kern_f32_to_f16(kv_row(kv, kv->v, l, s->blocks, p), c->v + t * kd, kd);
}

/*
 * The per-token work between the matmuls of a layer, split over the pool by
 * tokens (each token's rows are computed whole by one call, so the split
 * changes no bit; a step of a few tokens stays on the calling thread):
 *   ROWS_NORM      xb[t] = rmsnorm(x[t]) * g
 *   ROWS_QKV       q, k, v [t] += biases; RoPE on q[t] and k[t]; K/V rows of t
 *                  stored in the cache
 *   ROWS_ADD_NORM  x[t] += xb2[t]; then, when g is set, xb[t] = rmsnorm(x[t]) * g
 *   ROWS_SWIGLU    hb[t] = silu(hb[t]) * hb2[t]
 * Serial, these took ~6% of a prefill step's wall time on 2 threads (the other
 * thread waiting).
 */
typedef enum { ROWS_NORM, ROWS_QKV, ROWS_ADD_NORM, ROWS_SWIGLU } rows_op;

typedef struct rows_job {
    llama_ctx *c;
    rows_op op;
    const float *g;          // ROWS_NORM, ROWS_ADD_NORM: the norm's weights (or NULL)
    const llama_layer *L;    // ROWS_QKV
    llama_kv *kv;            // ROWS_QKV
    size_t l;                // ROWS_QKV
    const llama_span *spans; // ROWS_QKV
} rows_job;

/* Least tokens per pool chunk of each rows_op (a chunk worth a few microseconds:
 * a hand-off costs about one). */
static const size_t rows_chunk_min[] = {
    [ROWS_NORM] = 16, [ROWS_QKV] = 4, [ROWS_ADD_NORM] = 12, [ROWS_SWIGLU] = 4};

static void rows_run(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    const rows_job *jb = arg;
    llama_ctx *c = jb->c;
    const llama_hparams *hp = &c->m->hp;
    size_t dim = hp->dim, kvd = hp->kv_dim, ffn = hp->ffn;
    for (size_t t = begin; t < end; t++) {
        switch (jb->op) {
        case ROWS_NORM:
            kern_rmsnorm(c->xb + t * dim, c->x + t * dim, jb->g, dim, hp->rms_eps);
            break;
        case ROWS_QKV:
            if (jb->L->bq) {
                add_bias(c->q + t * dim, jb->L->bq, 1, dim);
                add_bias(c->k + t * kvd, jb->L->bk, 1, kvd);
                add_bias(c->v + t * kvd, jb->L->bv, 1, kvd);
            }
            rope_row(c, c->q, t, hp->n_head);
            rope_row(c, c->k, t, hp->n_kv_head);
            kv_store_row(c, jb->kv, jb->l, jb->spans, t);
            break;
        case ROWS_ADD_NORM:
            kern_add(c->x + t * dim, c->x + t * dim, c->xb2 + t * dim, dim);
            if (jb->g)
                kern_rmsnorm(c->xb + t * dim, c->x + t * dim, jb->g, dim, hp->rms_eps);
            break;
        case ROWS_SWIGLU:
            kern_swiglu(c->hb + t * ffn, c->hb + t * ffn, c->hb2 + t * ffn, ffn);
            break;
        }
    }
}

static void rows(llama_ctx *c, size_t n, rows_job jb)
{
    jb.c = c;
    pool_for_min(c->cfg.pool, n, 1, rows_chunk_min[jb.op], rows_run, &jb);
}

typedef struct attn_job {
    llama_ctx *c;
    attn_kv akv; // the layer's K/V as attn_span reads them
    const llama_span *spans;
} attn_job;

/* Attention of items [begin, end), item = tile * n_kv_head + KV head: the
 * tile's tokens and the n_head / n_kv_head query heads sharing that KV head, in
 * one attn_span call (each K/V row converted once for all of them). */
static void attention_items(void *arg, size_t begin, size_t end, int tid)
{
    const attn_job *jb = arg;
    llama_ctx *c = jb->c;
    const llama_hparams *hp = &c->m->hp;
    size_t hd = hp->head_dim, grp = hp->n_head / hp->n_kv_head, dim = hp->dim;
    float *scratch = c->scores + (size_t)tid * c->scores_floats;
    for (size_t it = begin; it < end; it++) {
        const attn_tile *tl = &c->tiles[it / hp->n_kv_head];
        size_t t = tl->t0, g = it % hp->n_kv_head;
        size_t col = t * dim + g * grp * hd; // the group's first query head
        attn_span(&jb->akv, jb->spans[c->span[t]].blocks, (size_t)c->pos[t], tl->n, g * hd, hd,
                  c->q + col, dim, grp, c->att + col, dim, scratch);
    }
}

/* Heavier tiles first (ties in batch order), so the pool's last chunks are the
 * small ones and the threads finish together. */
static int tile_cmp(const void *a, const void *b)
{
    const attn_tile *x = a, *y = b;
    if (x->work != y->work)
        return x->work > y->work ? -1 : 1;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

/*
 * Causal attention of every token over its own sequence's positions 0..pos:
 *   out_h = Σ_j softmax_j(q_h · k_j / sqrt(head_dim)) v_j, for query head h and KV
 *   head h / (n_head / n_kv_head), j in position order.
 * att (n, dim) gets the heads concatenated. The tokens of a span (consecutive
 * positions of one sequence) are cut into tiles of tile_tokens; each (tile,
 * KV head) is one item computed whole by one thread, and model/attn gives
 * every token the bits attn_group gives it alone, so the result depends
 * neither on the split nor on the tiling (a prefill chunked by other traffic
 * gets the same bits).
 */
static void attention(llama_ctx *c, const llama_kv *kv, size_t l, const llama_span *spans)
{
    attn_job j = {c, attn_view(kv, l), spans};
    // multiply-adds: 2 * dim per (token, position); chunks of at least
    // ATTN_CHUNK_WORK_MIN of them (a hand-off costs ~1 us)
    size_t items = c->n_tiles * c->m->hp.n_kv_head;
    uint64_t per_item = 2 * (uint64_t)c->m->hp.dim * c->attn_work / items + 1;
    size_t min_items = (size_t)(ATTN_CHUNK_WORK_MIN / per_item) + 1;
    // with several tiles, whole tiles per chunk: a token's KV heads then run
    // back to back on one thread (attn_avx2's first KV head prefetches the
    // whole K/V rows for the others); a lone tile's heads are still split
    size_t grain = c->n_tiles >= 4 ? c->m->hp.n_kv_head : 1;
    pool_for_min(c->cfg.pool, items, grain, min_items, attention_items, &j);
}

/* Cuts the step's n tokens into attention tiles (the same for every layer),
 * heaviest first, with the total positions attended. */
static void plan_tiles(llama_ctx *c, size_t n)
{
    size_t n_tiles = 0;
    uint64_t work = 0; // positions attended over all tokens
    for (size_t t = 0; t < n;) {
        size_t e = t + 1; // the span's tokens are consecutive, at consecutive positions
        while (e < n && e - t < c->tile_tokens && c->span[e] == c->span[t])
            e++;
        uint64_t p0 = (uint64_t)c->pos[t], m = e - t;
        uint64_t w = m * p0 + m * (m + 1) / 2;
        c->tiles[n_tiles++] = (attn_tile){.t0 = t, .n = e - t, .work = w};
        work += w;
        t = e;
    }
    qsort(c->tiles, n_tiles, sizeof *c->tiles, tile_cmp);
    c->n_tiles = n_tiles;
    c->attn_work = work;
}

/* Checks the spans and lays out tok/pos/span per token. Returns the token count. */
static int plan_tokens(llama_ctx *c, const llama_kv *kv, const llama_span *spans,
                       size_t n_spans, size_t *n_tok, size_t *n_rows, err_msg *e)
{
    const llama_hparams *hp = &c->m->hp;
    size_t B = 0, R = 0;
    if (kv->kv_dim != hp->kv_dim || kv->n_layer != hp->n_layer)
        return err_set(e, ERR_INVAL, "llama: KV storage was made for another model shape");
    for (size_t i = 0; i < n_spans; i++) {
        const llama_span *s = &spans[i];
        if (s->n == 0 || s->n_logits > s->n)
            return err_set(e, ERR_INVAL, "llama: span %zu has %zu tokens and wants %zu logits",
                           i, s->n, s->n_logits);
        if (s->n > c->cfg.max_batch_tokens - B)
            return err_set(e, ERR_INVAL, "llama: batch exceeds max_batch_tokens %zu at span %zu",
                           c->cfg.max_batch_tokens, i);
        if (s->n_logits > c->cfg.max_logits - R)
            return err_set(e, ERR_INVAL, "llama: batch wants more than max_logits %zu rows",
                           c->cfg.max_logits);
        if (s->pos > c->cfg.max_ctx || s->n > c->cfg.max_ctx - s->pos)
            return err_set(e, ERR_INVAL, "llama: span %zu reaches position %zu, context is %zu",
                           i, s->pos + s->n, c->cfg.max_ctx);
        size_t end = s->pos + s->n;
        size_t need = (end + kv->block_tokens - 1) / kv->block_tokens;
        if (s->n_blocks < need)
            return err_set(e, ERR_INVAL, "llama: span %zu needs %zu blocks for %zu positions, "
                           "its table has %zu", i, need, end, s->n_blocks);
        for (size_t b = 0; b < need; b++)
            if (s->blocks[b] < 0 || (size_t)s->blocks[b] >= kv->n_blocks)
                return err_set(e, ERR_INVAL, "llama: span %zu: block id %d outside the pool "
                               "of %zu", i, (int)s->blocks[b], kv->n_blocks);
        for (size_t j = 0; j < s->n; j++) {
            if (s->tokens[j] < 0 || (uint32_t)s->tokens[j] >= hp->n_vocab)
                return err_set(e, ERR_INVAL, "llama: span %zu: token id %d outside the "
                               "vocabulary of %u", i, (int)s->tokens[j], hp->n_vocab);
            c->tok[B + j] = s->tokens[j];
            c->pos[B + j] = (int32_t)(s->pos + j);
            c->span[B + j] = (uint32_t)i;
        }
        B += s->n;
        R += s->n_logits;
    }
    *n_tok = B;
    *n_rows = R;
    return 0;
}

/* The step behind llama_forward and llama_forward_hidden: with hidden set it
 * writes the final-norm rows of every token there instead of computing logits. */
static int forward(llama_ctx *c, llama_kv *kv, const llama_span *spans, size_t n_spans,
                   float *logits, float *hidden, err_msg *e)
{
    const model *m = c->m;
    const llama_hparams *hp = &m->hp;
    size_t B = 0, R = 0;
    int rc = plan_tokens(c, kv, spans, n_spans, &B, &R, e);
    if (rc < 0)
        return rc;
    if (B == 0)
        return 0;
    size_t dim = hp->dim;

    // x (B, dim) = token_embd[tok]
    for (size_t t = 0; t < B; t++)
        tensor_dequantize_row(m->tok_embd.type,
                              m->tok_embd.data + (size_t)c->tok[t] * m->tok_embd.row_bytes,
                              c->x + t * dim, dim);
    rope_tables(c, B);
    plan_tiles(c, B);

    // xb (B, dim) = the first layer's attention norm; later layers get theirs
    // from the previous layer's last residual add
    rows(c, B, (rows_job){.op = ROWS_NORM, .g = m->layers[0].attn_norm});
    for (size_t l = 0; l < hp->n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        // attention block
        {  // q (B, dim), k (B, kv_dim), v (B, kv_dim)
            const llama_weight *w[] = {&L->wq, &L->wk, &L->wv};
            float *y[] = {c->q, c->k, c->v};
            matmul_group(c, w, y, 3, c->xb, B);
        }
        // biases, RoPE, K/V rows into the cache
        rows(c, B, (rows_job){.op = ROWS_QKV, .L = L, .kv = kv, .l = l, .spans = spans});
        attention(c, kv, l, spans);
        matmul(c, &L->wo, c->att, B, c->xb2);  // (B, dim)
        // x += xb2; xb = ffn norm of x
        rows(c, B, (rows_job){.op = ROWS_ADD_NORM, .g = L->ffn_norm});
        // feed-forward block
        {  // hb (B, ffn) gate, hb2 (B, ffn) up
            const llama_weight *w[] = {&L->w_gate, &L->w_up};
            float *y[] = {c->hb, c->hb2};
            matmul_group(c, w, y, 2, c->xb, B);
        }
        rows(c, B, (rows_job){.op = ROWS_SWIGLU});
        matmul(c, &L->w_down, c->hb, B, c->xb2);  // (B, dim)
        // x += xb2; xb = the next layer's attention norm of x
        const float *g_next = l + 1 < hp->n_layer ? m->layers[l + 1].attn_norm : NULL;
        rows(c, B, (rows_job){.op = ROWS_ADD_NORM, .g = g_next});
    }

    if (hidden) {  // (B, dim) final-norm hidden state of every token, in batch order
        rmsnorm(c->x, m->out_norm, B, dim, hp->rms_eps, hidden);
        return 0;
    }
    // logits (R, n_vocab) for the last n_logits tokens of each span
    if (R == 0)
        return 0;
    size_t r = 0, t0 = 0;
    for (size_t i = 0; i < n_spans; i++) {
        for (size_t j = spans[i].n - spans[i].n_logits; j < spans[i].n; j++)
            memcpy(c->xo + (r++) * dim, c->x + (t0 + j) * dim, dim * sizeof(float));
        t0 += spans[i].n;
    }
    rmsnorm(c->xo, m->out_norm, R, dim, hp->rms_eps, c->xo);
    matmul(c, &m->output, c->xo, R, logits);
    return 0;
}

int llama_forward(llama_ctx *c, llama_kv *kv, const llama_span *spans, size_t n_spans,
                  float *logits, err_msg *e)
{
    return forward(c, kv, spans, n_spans, logits, NULL, e);
}

int llama_forward_hidden(llama_ctx *c, llama_kv *kv, const llama_span *spans, size_t n_spans,
                         float *hidden, err_msg *e)
{
    return forward(c, kv, spans, n_spans, NULL, hidden, e);
}
