/*
 * model/bert — loading `bert` GGUF embedding models and the batched encoder
 * pass (the formulas are in bert.h).
 *
 * Sections: loading (metadata, tensors, tokenizer) · context (buffers) · the
 * encoder pass, one function per step · pooling and the text entry point.
 *
 * Shapes in comments: B = tokens in the batch (all texts back to back),
 * dim, ffn from bert_hparams. Weight matrices have ne = [n_in, n_out]: n_out
 * rows of n_in elements, y = W x (+ b).
 */
#include "model/bert.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/kern.h"
#include "model/tensor.h"
#include "model/tok.h"

/* ================================================================ the model */

typedef struct bert_weight {
    tensor_type type;
    size_t n_in, n_out;
    size_t row_bytes;
    const uint8_t *data;
    kern_mat km; // the same matrix as the kernels see it
} bert_weight;

typedef struct bert_layer {
    bert_weight wq, wk, wv, wo;      // (dim, dim)
    const float *bq, *bk, *bv, *bo;  // (dim)
    const float *ln1_w, *ln1_b;      // attn_output_norm (dim)
    bert_weight w_up;                // (ffn, dim)
    const float *b_up;               // (ffn)
    bert_weight w_down;              // (dim, ffn)
    const float *b_down;             // (dim)
    const float *ln2_w, *ln2_b;      // layer_output_norm (dim)
} bert_layer;

struct bert_model {
    atomic_int refs;
    gguf_file *f;
    tok_vocab *vocab;
    bert_hparams hp;
    bert_weight tok_embd;            // (n_vocab, dim)
    bert_weight pos_embd;            // (n_ctx, dim)
    const float *type0;              // (dim) row 0 of token_types
    const float *ln0_w, *ln0_b;      // token_embd_norm (dim)
    bert_layer *layers;              // (n_layer)
    float *vecs;                     // every f32 vector above, one allocation
    size_t n_vecs, cap_vecs;
};

static int hp_u32(const gguf_file *f, const char *key, int64_t lo, int64_t hi, int64_t def,
                  uint32_t *out, err_msg *e)
{
    char k[96];
    snprintf(k, sizeof k, "bert.%s", key);
    int64_t v;
    int rc = gguf_get_int(f, k, lo, hi, &v, e);
    if (rc == ERR_NOT_FOUND) {
        if (def < 0)
            return err_set(e, ERR_FORMAT, "bert: missing metadata key \"%s\"", k);
        v = def;
    } else if (rc < 0) {
        return rc;
    }
    *out = (uint32_t)v;
    return 0;
}

static int read_hparams(const gguf_file *f, bert_hparams *hp, err_msg *e)
{
    str arch = {0};
    int rc = gguf_get_str(f, "general.architecture", &arch, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_FORMAT, "bert: missing metadata key \"general.architecture\"");
    if (rc < 0)
        return rc;
    if (!str_eq_cstr(arch, "bert"))
        return err_set(e, ERR_UNSUPPORTED, "bert: architecture \"%.*s\" is not bert",
                       (int)MIN(arch.n, 64), arch.p);
    memset(hp, 0, sizeof *hp);
    uint32_t pool_type = BERT_POOL_MEAN;
    if ((rc = hp_u32(f, "embedding_length", 1, 65536, -1, &hp->dim, e)) ||
        (rc = hp_u32(f, "block_count", 1, 1024, -1, &hp->n_layer, e)) ||
        (rc = hp_u32(f, "attention.head_count", 1, 1024, -1, &hp->n_head, e)) ||
        (rc = hp_u32(f, "feed_forward_length", 1, 1 << 20, -1, &hp->ffn, e)) ||
        (rc = hp_u32(f, "context_length", 1, 1 << 20, -1, &hp->n_ctx, e)) ||
        (rc = hp_u32(f, "pooling_type", 0, 1000, BERT_POOL_MEAN, &pool_type, e)))
        return rc;
    if (hp->dim % hp->n_head != 0)
        return err_set(e, ERR_FORMAT, "bert: embedding_length %u is not a multiple of "
                       "head_count %u", hp->dim, hp->n_head);
    hp->head_dim = hp->dim / hp->n_head;
    if (pool_type != BERT_POOL_MEAN && pool_type != BERT_POOL_CLS)
        return err_set(e, ERR_UNSUPPORTED, "bert: pooling_type %u is not supported (1 mean, "
                       "2 cls are)", pool_type);
    hp->pooling = (bert_pooling)pool_type;
    double eps = 1e-12;
    rc = gguf_get_float(f, "bert.attention.layer_norm_epsilon", &eps, e);
    if (rc < 0 && rc != ERR_NOT_FOUND)
        return rc;
    if (!(eps > 0 && eps < 1))
        return err_set(e, ERR_FORMAT, "bert: attention.layer_norm_epsilon %g is outside (0, 1)",
                       eps);
    hp->ln_eps = (float)eps;
    err_clear(e);
    return 0;
}

static int get_weight(const gguf_file *f, const char *name, size_t n_in, size_t n_out,
                      bert_weight *w, err_msg *e)
{
    const uint64_t ne[2] = {n_in, n_out};
    const gguf_tensor *t;
    int rc = gguf_require_tensor(f, name, 2, ne, &t, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_FORMAT, "bert: missing tensor \"%s\"", name);
    if (rc < 0)
        return rc;
    if (!tensor_type_supported(t->type))
        return err_set(e, ERR_UNSUPPORTED, "bert: tensor \"%s\" has type %s, which the kernels "
                       "do not support", name, tensor_type_name(t->type));
    w->type = (tensor_type)t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    if ((rc = tensor_row_bytes(w->type, n_in, &w->row_bytes)) < 0)
        return err_set(e, rc, "bert: tensor \"%s\": rows of %zu elements do not fit type %s",
                       name, n_in, tensor_type_name(t->type));
    w->data = t->data;
    if ((rc = kern_mat_init(&w->km, w->type, n_out, n_in, t->data)) < 0)
        return err_set(e, rc, "bert: tensor \"%s\" cannot be used by the kernels", name);
    return 0;
}

/* Copies the vector tensor name (n elements, float type) into m->vecs. */
static int get_vec(bert_model *m, const char *name, size_t n, const float **out, err_msg *e)
{
    const uint64_t ne[1] = {n};
    const gguf_tensor *t;
    int rc = gguf_require_tensor(m->f, name, 1, ne, &t, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_FORMAT, "bert: missing tensor \"%s\"", name);
    if (rc < 0)
        return rc;
    if (tensor_type_block_elems((tensor_type)t->type) != 1 || !tensor_type_supported(t->type))
        return err_set(e, ERR_UNSUPPORTED, "bert: vector \"%s\" has type %s (f32, f16, bf16 are "
                       "supported)", name, tensor_type_name(t->type));
    if (NEVER(m->n_vecs + n > m->cap_vecs))
        return err_set(e, ERR_INTERNAL, "bert: vector space exhausted at \"%s\"", name);
    float *dst = m->vecs + m->n_vecs;
    tensor_dequantize_row((tensor_type)t->type, t->data, dst, n);
    m->n_vecs += n;
    *out = dst;
    return 0;
}

static int load_tensors(bert_model *m, err_msg *e)
{
    bert_hparams *hp = &m->hp;
    const gguf_file *f = m->f;
    const gguf_tensor *te = gguf_tensor_find(f, "token_embd.weight");
    if (!te)
        return err_set(e, ERR_FORMAT, "bert: missing tensor \"token_embd.weight\"");
    if (te->n_dims != 2 || te->ne[0] != hp->dim || te->ne[1] < 1 || te->ne[1] > INT32_MAX)
        return err_set(e, ERR_FORMAT, "bert: tensor \"token_embd.weight\" has shape [%llu, %llu], "
                       "expected [%u, n_vocab]", (unsigned long long)te->ne[0],
                       (unsigned long long)te->ne[1], hp->dim);
    hp->n_vocab = (uint32_t)te->ne[1];
    const gguf_tensor *tt = gguf_tensor_find(f, "token_types.weight");
    if (!tt)
        return err_set(e, ERR_FORMAT, "bert: missing tensor \"token_types.weight\"");
    if (tt->n_dims != 2 || tt->ne[0] != hp->dim || tt->ne[1] < 1 || tt->ne[1] > 1024)
        return err_set(e, ERR_FORMAT, "bert: tensor \"token_types.weight\" has shape [%llu, %llu], "
                       "expected [%u, 1..1024]", (unsigned long long)tt->ne[0],
                       (unsigned long long)tt->ne[1], hp->dim);
    if (!tensor_type_supported(tt->type))
        return err_set(e, ERR_UNSUPPORTED, "bert: tensor \"token_types.weight\" has type %s, "
                       "which the kernels do not support", tensor_type_name(tt->type));
    hp->n_token_types = (uint32_t)tt->ne[1];

    // f32 vectors: type row, 2 embedding norms, per layer 4 biases of dim, 4 norms, 2 FFN biases
    size_t per_layer = 9 * (size_t)hp->dim + hp->ffn;
    m->cap_vecs = 3 * (size_t)hp->dim + per_layer * hp->n_layer;
    m->vecs = malloc(m->cap_vecs * sizeof(float));
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->vecs || !m->layers)
        return err_set(e, ERR_NOMEM, "bert: out of memory");
    float *type0 = m->vecs;
    tensor_dequantize_row((tensor_type)tt->type, tt->data, type0, hp->dim);
    m->type0 = type0;
    m->n_vecs = hp->dim;

    int rc;
    if ((rc = get_weight(f, "token_embd.weight", hp->dim, hp->n_vocab, &m->tok_embd, e)) ||
        (rc = get_weight(f, "position_embd.weight", hp->dim, hp->n_ctx, &m->pos_embd, e)) ||
        (rc = get_vec(m, "token_embd_norm.weight", hp->dim, &m->ln0_w, e)) ||
        (rc = get_vec(m, "token_embd_norm.bias", hp->dim, &m->ln0_b, e)))
        return rc;
    char n[GGUF_TENSOR_NAME_MAX + 1];
#define NAME(s) (snprintf(n, sizeof n, "blk.%u." s, l), n)
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        bert_layer *L = &m->layers[l];
        size_t D = hp->dim, F = hp->ffn;
        if ((rc = get_weight(f, NAME("attn_q.weight"), D, D, &L->wq, e)) ||
            (rc = get_vec(m, NAME("attn_q.bias"), D, &L->bq, e)) ||
            (rc = get_weight(f, NAME("attn_k.weight"), D, D, &L->wk, e)) ||
            (rc = get_vec(m, NAME("attn_k.bias"), D, &L->bk, e)) ||
            (rc = get_weight(f, NAME("attn_v.weight"), D, D, &L->wv, e)) ||
            (rc = get_vec(m, NAME("attn_v.bias"), D, &L->bv, e)) ||
            (rc = get_weight(f, NAME("attn_output.weight"), D, D, &L->wo, e)) ||
            (rc = get_vec(m, NAME("attn_output.bias"), D, &L->bo, e)) ||
            (rc = get_vec(m, NAME("attn_output_norm.weight"), D, &L->ln1_w, e)) ||
            (rc = get_vec(m, NAME("attn_output_norm.bias"), D, &L->ln1_b, e)) ||
            (rc = get_weight(f, NAME("ffn_up.weight"), D, F, &L->w_up, e)) ||
            (rc = get_vec(m, NAME("ffn_up.bias"), F, &L->b_up, e)) ||
            (rc = get_weight(f, NAME("ffn_down.weight"), F, D, &L->w_down, e)) ||
            (rc = get_vec(m, NAME("ffn_down.bias"), D, &L->b_down, e)) ||
            (rc = get_vec(m, NAME("layer_output_norm.weight"), D, &L->ln2_w, e)) ||
            (rc = get_vec(m, NAME("layer_output_norm.bias"), D, &L->ln2_b, e)))
            return rc;
    }
#undef NAME
    return 0;
}

static int load_vocab(bert_model *m, err_msg *e)
{
    int rc = tok_vocab_from_gguf(m->f, &m->vocab, e);
    if (rc == ERR_NOT_FOUND)
        return err_set(e, ERR_FORMAT, "bert: the file has no tokenizer (tokenizer.ggml.*)");
    if (rc < 0)
        return rc;
    if (tok_vocab_kind(m->vocab) != TOK_KIND_WPM)
        return err_set(e, ERR_UNSUPPORTED, "bert: tokenizer.ggml.model is not \"bert\" "
                       "(WordPiece)");
    if (tok_vocab_n_tokens(m->vocab) != m->hp.n_vocab)
        return err_set(e, ERR_FORMAT, "bert: vocab/embedding size mismatch: the tokenizer has "
                       "%zu tokens but token_embd.weight has %u rows",
                       tok_vocab_n_tokens(m->vocab), m->hp.n_vocab);
    return 0;
}

/* Calls fn on every layer matmul weight of m (the embeddings are only looked up
 * by row), stopping at the first error. */
static int each_mat(bert_model *m, int (*fn)(kern_mat *))
{
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && m->layers && i < m->hp.n_layer; i++) {
        bert_layer *L = &m->layers[i];
        kern_mat *ks[] = {&L->wq.km, &L->wk.km, &L->wv.km, &L->wo.km, &L->w_up.km, &L->w_down.km};
        for (size_t k = 0; rc == 0 && k < sizeof ks / sizeof ks[0]; k++)
            rc = fn(ks[k]);
    }
    return rc;
}

static void bert_free(bert_model *m)
{
    if (!m)
        return;
    (void)each_mat(m, kern_mat_unpack);
    tok_vocab_free(m->vocab);
    free(m->layers);
    free(m->vecs);
    gguf_close(m->f);
    free(m);
}

int bert_load(const char *path, bert_model **out, err_msg *e)
{
    *out = NULL;
    bert_model *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "bert: out of memory");
    atomic_init(&m->refs, 1);
    int rc;
    if ((rc = gguf_open(path, &m->f, e)) < 0 || (rc = read_hparams(m->f, &m->hp, e)) < 0 ||
        (rc = load_tensors(m, e)) < 0 || (rc = load_vocab(m, e)) < 0) {
        bert_free(m);
        return rc;
    }
    // the AVX2 Q8_0/Q4_0 kernels' layout (kern_mat_pack); the results do not change
    if ((rc = each_mat(m, kern_mat_pack)) < 0) {
        bert_free(m);
        return err_set(e, rc, "bert: out of memory for the packed weights");
    }
    *out = m;
    return 0;
}

bert_model *bert_ref(bert_model *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void bert_unref(bert_model *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        bert_free(m);
}

const bert_hparams *bert_model_hparams(const bert_model *m)
{
    return &m->hp;
}

const struct gguf_file *bert_model_gguf(const bert_model *m)
{
    return m->f;
}

const struct tok_vocab *bert_model_vocab(const bert_model *m)
{
    return m->vocab;
}

/* ================================================================ context */

#define BERT_BATCH_MAX 65536

struct bert_ctx {
    bert_model *m;
    bert_config cfg;
    size_t n_threads;
    uint32_t *seq_of;  // (B) text index (within the batch) of each token
    size_t *seq_start; // (B + 1) first token of each text in the batch
    float *x;          // (B, dim) residual stream
    float *q, *k, *v;  // (B, dim)
    float *att;        // (B, dim) attention output, heads concatenated
    float *tmp;        // (B, dim)
    float *hb;         // (B, ffn)
    float *scores;     // (threads, n_ctx)
    void *mm_scratch;  // kern_matmul's quantized activations for B rows, largest weight
    size_t mm_scratch_bytes;
};

/* Largest kern_matmul scratch of a batch of B rows over every layer weight; SIZE_MAX on
 * overflow. */
static size_t ctx_scratch_bytes(const bert_model *m, size_t B)
{
    size_t mx = 0;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const bert_layer *L = &m->layers[l];
        const bert_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_up, &L->w_down};
        for (size_t i = 0; i < ARRAY_LEN(ws); i++) {
            size_t b = kern_scratch_bytes(ws[i]->type, ws[i]->n_in, B);
            if (b == SIZE_MAX)
                return SIZE_MAX;
            mx = MAX(mx, b);
        }
    }
    return mx;
}

bert_config bert_config_default(void)
{
    bert_config c;
    c.max_batch_tokens = 2048;
    c.pool = NULL;
    return c;
}

void bert_ctx_free(bert_ctx *c)
{
    if (!c)
        return;
    free(c->seq_of);
    free(c->seq_start);
    free(c->x);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->tmp);
    free(c->hb);
    free(c->mm_scratch);
    free(c->scores);
    bert_unref(c->m);
    free(c);
}

/* n floats, or NULL when n*sizeof(float) overflows or allocation fails. */
static float *falloc(size_t a, size_t b)
{
    size_t n;
    if (!size_mul_ok(a, b, &n) || !size_mul_ok(n, sizeof(float), &n))
        return NULL;
    return malloc(n ? n : 1);
}

int bert_ctx_new(bert_model *m, const bert_config *cfg, bert_ctx **out, err_msg *e)
{
    *out = NULL;
    const bert_hparams *hp = &m->hp;
    bert_config c = *cfg;
    if (c.max_batch_tokens < hp->n_ctx)
        c.max_batch_tokens = hp->n_ctx; // a whole text always fits one batch
    if (c.max_batch_tokens > BERT_BATCH_MAX)
        return err_set(e, ERR_INVAL, "bert: max_batch_tokens %zu exceeds %d (context %u)",
                       c.max_batch_tokens, BERT_BATCH_MAX, hp->n_ctx);
    size_t B = c.max_batch_tokens, nt = (size_t)pool_threads(c.pool);
    bert_ctx *x = calloc(1, sizeof *x);
    if (!x)
        return err_set(e, ERR_NOMEM, "bert: out of memory");
    x->cfg = c;
    x->n_threads = nt;
    x->seq_of = malloc(B * sizeof *x->seq_of);
    x->seq_start = malloc((B + 1) * sizeof *x->seq_start);
    x->x = falloc(B, hp->dim);
    x->q = falloc(B, hp->dim);
    x->k = falloc(B, hp->dim);
    x->v = falloc(B, hp->dim);
    x->att = falloc(B, hp->dim);
    x->tmp = falloc(B, hp->dim);
    x->hb = falloc(B, hp->ffn);
    x->mm_scratch_bytes = ctx_scratch_bytes(m, B);
    if (x->mm_scratch_bytes == SIZE_MAX) {
        free(x);
        return err_set(e, ERR_OVERFLOW, "bert: kernel scratch for %zu tokens overflows", B);
    }
    x->mm_scratch = x->mm_scratch_bytes ? malloc(x->mm_scratch_bytes) : NULL;
    x->scores = falloc(nt, hp->n_ctx);
    x->m = bert_ref(m);
    if (!x->seq_of || !x->seq_start || !x->x || !x->q || !x->k || !x->v || !x->att || !x->tmp ||
        !x->hb || !x->scores || (x->mm_scratch_bytes && !x->mm_scratch)) {
        bert_ctx_free(x);
        return err_set(e, ERR_NOMEM, "bert: out of memory for a batch of %zu tokens", B);
    }
    *out = x;
    return 0;
}

const bert_model *bert_ctx_model(const bert_ctx *c)
{
    return c->m;
}

/* ================================================================ the encoder pass */

/*
 * Y (n, n_out) = X (n, n_in) · Wᵀ + b through kern_matmul: each weight row is
 * read once for every token of the batch, and each output depends only on its
 * own row of X (kern's batch invariance), so a text's embedding does not
 * depend on which texts share its batch or on the thread count.
 */
static void matmul(bert_ctx *c, const bert_weight *w, const float *b, const float *X, size_t n,
                   float *Y)
{
    bool small = (uint64_t)w->n_out * w->n_in * n < 65536;
    kern_matmul(small ? NULL : c->cfg.pool, &w->km, X, n, Y, c->mm_scratch, c->mm_scratch_bytes);
    for (size_t t = 0; t < n; t++)
        kern_add(Y + t * w->n_out, Y + t * w->n_out, b, w->n_out);
}

/* x (n, dim) = LN(x) per row: (x - mean) / sqrt(var + eps) * w + b (two-pass variance). */
static void layernorm(float *x, const float *w, const float *b, size_t n, size_t dim, float eps)
{
    for (size_t t = 0; t < n; t++) {
        float *r = x + t * dim;
        double mean = 0;
        for (size_t i = 0; i < dim; i++)
            mean += r[i];
        mean /= (double)dim;
        double var = 0;
        for (size_t i = 0; i < dim; i++) {
            double d = r[i] - mean;
            var += d * d;
        }
        var /= (double)dim;
        float inv = (float)(1.0 / sqrt(var + eps));
        for (size_t i = 0; i < dim; i++)
            r[i] = ((float)(r[i] - mean)) * inv * w[i] + b[i];
    }
}

/* x = gelu(x) = x/2 (1 + erf(x/√2)) elementwise. */
static void gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

typedef struct attn_job {
    bert_ctx *c;
} attn_job;

/*
 * Items are (token, head): out = Σ_j softmax_j(q·k_j / sqrt(head_dim)) v_j over
 * the tokens j of the token's own text, in order.
 */
static void attention_items(void *arg, size_t begin, size_t end, int tid)
{
    bert_ctx *c = ((const attn_job *)arg)->c;
    const bert_hparams *hp = &c->m->hp;
    size_t hd = hp->head_dim, D = hp->dim;
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = c->scores + (size_t)tid * hp->n_ctx;
    for (size_t it = begin; it < end; it++) {
        size_t t = it / hp->n_head, h = it % hp->n_head;
        size_t s0 = c->seq_start[c->seq_of[t]], s1 = c->seq_start[c->seq_of[t] + 1];
        const float *q = c->q + t * D + h * hd;
        float mx = -INFINITY;
        for (size_t j = s0; j < s1; j++) {
            const float *kr = c->k + j * D + h * hd;
            float d = 0;
            for (size_t i = 0; i < hd; i++)
                d += q[i] * kr[i];
            d *= scale;
            sc[j - s0] = d;
            if (d > mx)
                mx = d;
        }
        float sum = 0;
        for (size_t j = 0; j < s1 - s0; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float *o = c->att + t * D + h * hd;
        memset(o, 0, hd * sizeof *o);
        for (size_t j = s0; j < s1; j++) {
            const float *vr = c->v + j * D + h * hd;
            float p = sc[j - s0];
            for (size_t i = 0; i < hd; i++)
                o[i] += p * vr[i];
        }
        float inv = 1.0f / sum;
        for (size_t i = 0; i < hd; i++)
            o[i] *= inv;
    }
}

static void attention(bert_ctx *c, size_t n_tok, size_t n_seq)
{
    attn_job j = {c};
    uint64_t work = 0;
    for (size_t s = 0; s < n_seq; s++) {
        uint64_t len = c->seq_start[s + 1] - c->seq_start[s];
        work += 2 * len * len * c->m->hp.dim;
    }
    pool_for(work < 65536 ? NULL : c->cfg.pool, n_tok * c->m->hp.n_head, 1, attention_items, &j);
}

/* y (n, len) += x (n, len). */
static void add_into(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

/*
 * One batch: texts ids[0..n) (already validated), writing n pooled,
 * normalized rows to out. seq_start/seq_of describe the packing.
 */
static void encode_batch(bert_ctx *c, const int32_t *const *ids, const size_t *lens, size_t n,
                         float *out)
{
    bert_model *m = c->m;
    const bert_hparams *hp = &m->hp;
    size_t D = hp->dim, F = hp->ffn, T = 0;
    for (size_t s = 0; s < n; s++) {
        c->seq_start[s] = T;
        for (size_t i = 0; i < lens[s]; i++)
            c->seq_of[T + i] = (uint32_t)s;
        T += lens[s];
    }
    c->seq_start[n] = T;

    // embeddings: x = LN0(tok[id] + pos[p] + type[0]), pos rows borrowed via c->tmp
    for (size_t s = 0; s < n; s++) {
        for (size_t p = 0; p < lens[s]; p++) {
            float *xr = c->x + (c->seq_start[s] + p) * D;
            const bert_weight *te = &m->tok_embd, *pe = &m->pos_embd;
            tensor_dequantize_row(te->type, te->data + (size_t)ids[s][p] * te->row_bytes, xr, D);
            tensor_dequantize_row(pe->type, pe->data + p * pe->row_bytes, c->tmp, D);
            for (size_t i = 0; i < D; i++)
                xr[i] += c->tmp[i] + m->type0[i];
        }
    }
    layernorm(c->x, m->ln0_w, m->ln0_b, T, D, hp->ln_eps);

    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const bert_layer *L = &m->layers[l];
        matmul(c, &L->wq, L->bq, c->x, T, c->q);
        matmul(c, &L->wk, L->bk, c->x, T, c->k);
        matmul(c, &L->wv, L->bv, c->x, T, c->v);
        attention(c, T, n);
        matmul(c, &L->wo, L->bo, c->att, T, c->tmp);
        add_into(c->x, c->tmp, T * D);
        layernorm(c->x, L->ln1_w, L->ln1_b, T, D, hp->ln_eps);
        matmul(c, &L->w_up, L->b_up, c->x, T, c->hb);
        gelu(c->hb, T * F);
        matmul(c, &L->w_down, L->b_down, c->hb, T, c->tmp);
        add_into(c->x, c->tmp, T * D);
        layernorm(c->x, L->ln2_w, L->ln2_b, T, D, hp->ln_eps);
    }

    // pooling and L2 normalization (sums in double: the mean of up to n_ctx rows)
    for (size_t s = 0; s < n; s++) {
        float *o = out + s * D;
        const float *x0 = c->x + c->seq_start[s] * D;
        size_t len = lens[s];
        double norm = 0;
        for (size_t i = 0; i < D; i++) {
            double v;
            if (hp->pooling == BERT_POOL_CLS) {
                v = x0[i];
            } else {
                v = 0;
                for (size_t p = 0; p < len; p++)
                    v += x0[p * D + i];
                v /= (double)len;
            }
            o[i] = (float)v;
            norm += v * v;
        }
        if (norm > 0) {
            float inv = (float)(1.0 / sqrt(norm));
            for (size_t i = 0; i < D; i++)
                o[i] *= inv;
        }
    }
}

int bert_embed_ids(bert_ctx *c, const int32_t *const *ids, const size_t *lens, size_t n,
                   float *out, err_msg *e)
{
    const bert_hparams *hp = &c->m->hp;
    for (size_t s = 0; s < n; s++) {
        if (lens[s] < 1 || lens[s] > hp->n_ctx)
            return err_set(e, ERR_INVAL, "bert: text %zu has %zu tokens (1..%u allowed)", s,
                           lens[s], hp->n_ctx);
        for (size_t i = 0; i < lens[s]; i++)
            if (ids[s][i] < 0 || (uint32_t)ids[s][i] >= hp->n_vocab)
                return err_set(e, ERR_INVAL, "bert: text %zu: token id %d at %zu is outside "
                               "[0, %u)", s, (int)ids[s][i], i, hp->n_vocab);
    }
    // pack consecutive texts into batches of at most max_batch_tokens (each text fits one)
    size_t s = 0;
    while (s < n) {
        size_t tok = 0, k = s;
        while (k < n && tok + lens[k] <= c->cfg.max_batch_tokens)
            tok += lens[k++];
        encode_batch(c, ids + s, lens + s, k - s, out + s * hp->dim);
        s = k;
    }
    return 0;
}

int bert_embed_texts(bert_ctx *c, const char *const *texts, const size_t *lens, size_t n,
                     float *out, size_t *n_tokens, size_t *n_cut, err_msg *e)
{
    const bert_hparams *hp = &c->m->hp;
    const tok_vocab *v = c->m->vocab;
    int rc = 0;
    tok_list *lists = calloc(n ? n : 1, sizeof *lists);
    const int32_t **ids = calloc(n ? n : 1, sizeof *ids);
    size_t *nl = calloc(n ? n : 1, sizeof *nl);
    size_t cut = 0;
    if (!lists || !ids || !nl) {
        rc = err_set(e, ERR_NOMEM, "bert: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        tok_list_init(&lists[i], TOK_MAX_TEXT_BYTES);
        if ((rc = tok_tokenize(v, texts[i], lens[i], TOK_ADD_SPECIAL, &lists[i], e)) < 0)
            goto out;
        if (lists[i].n == 0) { // cannot happen with [CLS]/[SEP], but never embed nothing
            rc = err_set(e, ERR_INVAL, "bert: text %zu has no tokens", i);
            goto out;
        }
        if (lists[i].n > hp->n_ctx) {
            tok_id sep = tok_vocab_sep(v);
            lists[i].n = hp->n_ctx;
            if (sep >= 0)
                lists[i].ids[hp->n_ctx - 1] = sep;
            cut++;
        }
        ids[i] = lists[i].ids;
        nl[i] = lists[i].n;
        if (n_tokens)
            n_tokens[i] = lists[i].n;
    }
    rc = bert_embed_ids(c, ids, nl, n, out, e);
    if (n_cut)
        *n_cut = cut;
out:
    if (lists)
        for (size_t i = 0; i < n; i++)
            tok_list_free(&lists[i]);
    free(lists);
    free(ids);
    free(nl);
    return rc;
}
