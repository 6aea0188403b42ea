/*
 * model/embed — bert encoders and decoders (llama, qwen2) as embedders
 * (contract and pooling rule in embed.h).
 *
 * A decoder embedder holds, besides the model: a llama_ctx for max_batch_tokens
 * tokens and max_ctx positions, KV storage of max_ctx positions in blocks of
 * EMBED_KV_BLOCK (identity block table), the hidden rows of one step
 * (max_batch_tokens, dim), a double accumulator (dim) and a span array
 * (max_batch_tokens).
 *
 * Texts that fit one step (at most max_batch_tokens tokens) are packed: as
 * many consecutive ones as fit the step's tokens and the pool's blocks run
 * as the spans of one forward step, each from position 0 on its own run of
 * blocks. A longer text runs alone, fed from position 0 in chunks. Either way
 * a text's hidden rows are added to the accumulator in token order, so the
 * sum, and the vector, do not depend on the chunk size or on the texts
 * packed beside it beyond the forward pass's own batch invariance (every row
 * of a step is computed by the same kernels whatever the other rows are):
 * the vectors are bitwise those of one text per call (unit test).
 */
#include "model/embed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/bert.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/tok.h"

#define EMBED_KV_BLOCK 16

struct embed_model {
    bool is_decoder;
    const char *arch; // static: "bert", "llama", "qwen2"
    size_t dim, n_ctx;
    // bert
    bert_model *bm;
    bert_ctx *bc;
    // decoder
    model *dm;
    llama_ctx *dc;
    llama_kv *kv;
    tok_vocab *vocab;
    int32_t *table;  // (n_blocks) identity block table
    size_t n_blocks;
    size_t max_batch;
    float *hidden;   // (max_batch, dim) hidden rows of one step
    double *acc;     // (dim) running sum of a text's hidden rows
    llama_span *spans; // (max_batch) the texts packed into one step
    uint32_t n_vocab;
    size_t steps; // forward steps run (embed_forward_steps)
};

embed_config embed_config_default(void)
{
    embed_config c;
    memset(&c, 0, sizeof c);
    return c;
}

static int load_bert(embed_model *m, const char *path, const embed_config *cfg, err_msg *e)
{
    int rc = bert_load(path, &m->bm, e);
    if (rc < 0)
        return rc;
    bert_config bc = bert_config_default();
    if (cfg->max_batch_tokens)
        bc.max_batch_tokens = cfg->max_batch_tokens;
    bc.pool = cfg->pool;
    if ((rc = bert_ctx_new(m->bm, &bc, &m->bc, e)) < 0)
        return rc;
    const bert_hparams *hp = bert_model_hparams(m->bm);
    m->arch = "bert";
    m->dim = hp->dim;
    m->n_ctx = hp->n_ctx;
    return 0;
}

static int load_decoder(embed_model *m, const char *path, const embed_config *cfg, err_msg *e)
{
    int rc = model_load(path, &m->dm, e);
    if (rc < 0)
        return rc;
    const llama_hparams *hp = model_hparams(m->dm);
    m->is_decoder = true;
    m->arch = hp->arch == LLAMA_ARCH_QWEN2 ? "qwen2" : "llama";
    m->dim = hp->dim;
    size_t ctx = cfg->max_ctx;
    if (ctx == 0)
        ctx = MIN((size_t)hp->n_ctx_train, (size_t)EMBED_DEC_CTX_DEFAULT);
    if (ctx == 0 || ctx > LLAMA_CTX_MAX)
        return err_set(e, ERR_INVAL, "embed: max_ctx %zu is outside [1, %u]", ctx, LLAMA_CTX_MAX);
    m->n_ctx = ctx;
    llama_config lc = llama_config_default();
    if (cfg->max_batch_tokens)
        lc.max_batch_tokens = cfg->max_batch_tokens;
    lc.max_batch_tokens = MIN(lc.max_batch_tokens, ctx);
    lc.max_ctx = ctx;
    lc.max_logits = 1; // no logits are computed; the smallest legal value
    lc.pool = cfg->pool;
    m->max_batch = lc.max_batch_tokens;
    if ((rc = llama_ctx_new(m->dm, &lc, &m->dc, e)) < 0)
        return rc;
    m->n_blocks = (ctx + EMBED_KV_BLOCK - 1) / EMBED_KV_BLOCK;
    if ((rc = llama_kv_new(m->dm, m->n_blocks, EMBED_KV_BLOCK, &m->kv, e)) < 0)
        return rc;
    if ((rc = tok_vocab_from_gguf(model_gguf(m->dm), &m->vocab, e)) < 0)
        return rc;
    size_t hidden_n;
    if (!size_mul_ok(m->max_batch, m->dim, &hidden_n) ||
        !size_mul_ok(hidden_n, sizeof(float), &hidden_n))
        return err_set(e, ERR_OVERFLOW, "embed: hidden rows of %zu tokens overflow",
                       m->max_batch);
    m->table = malloc(m->n_blocks * sizeof *m->table);
    m->hidden = malloc(hidden_n);
    m->acc = malloc(m->dim * sizeof *m->acc);
    m->spans = malloc(m->max_batch * sizeof *m->spans);
    m->n_vocab = hp->n_vocab;
    if (!m->table || !m->hidden || !m->acc || !m->spans)
        return err_set(e, ERR_NOMEM, "embed: out of memory for a batch of %zu tokens",
                       m->max_batch);
    for (size_t b = 0; b < m->n_blocks; b++)
        m->table[b] = (int32_t)b;
    return 0;
}

int embed_load(const char *path, const embed_config *cfg, embed_model **out, err_msg *e)
{
    *out = NULL;
    embed_config def = embed_config_default();
    if (!cfg)
        cfg = &def;
    gguf_file *f;
    int rc = gguf_open(path, &f, e);
    if (rc < 0)
        return rc;
    str arch = {0};
    (void)!gguf_get_str(f, "general.architecture", &arch, NULL);
    bool is_bert = str_eq_cstr(arch, "bert");
    bool is_dec = str_eq_cstr(arch, "llama") || str_eq_cstr(arch, "qwen2");
    if (!is_bert && !is_dec) {
        rc = err_set(e, ERR_UNSUPPORTED, "embed: architecture \"%.*s\" cannot embed (bert, "
                     "llama or qwen2)", (int)MIN(arch.n, (size_t)64), arch.n ? arch.p : "");
        gguf_close(f);
        return rc;
    }
    gguf_close(f);
    embed_model *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "embed: out of memory");
    rc = is_bert ? load_bert(m, path, cfg, e) : load_decoder(m, path, cfg, e);
    if (rc < 0) {
        embed_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void embed_free(embed_model *m)
{
    if (!m)
        return;
    bert_ctx_free(m->bc);
    bert_unref(m->bm);
    llama_ctx_free(m->dc);
    llama_kv_free(m->kv);
    model_unref(m->dm);
    tok_vocab_free(m->vocab);
    free(m->table);
    free(m->hidden);
    free(m->acc);
    free(m->spans);
    free(m);
}

size_t embed_dim(const embed_model *m)
{
    return m->dim;
}

size_t embed_n_ctx(const embed_model *m)
{
    return m->n_ctx;
}

bool embed_is_decoder(const embed_model *m)
{
    return m->is_decoder;
}

const char *embed_pooling(const embed_model *m)
{
    if (m->is_decoder)
        return "last-mean";
    return bert_model_hparams(m->bm)->pooling == BERT_POOL_CLS ? "cls" : "mean";
}

const char *embed_arch(const embed_model *m)
{
    return m->arch;
}

const struct tok_vocab *embed_vocab(const embed_model *m)
{
    return m->is_decoder ? m->vocab : bert_model_vocab(m->bm);
}

size_t embed_forward_steps(const embed_model *m)
{
    return m->steps;
}

const struct gguf_file *embed_gguf(const embed_model *m)
{
    return m->is_decoder ? model_gguf(m->dm) : bert_model_gguf(m->bm);
}

/* Zeroes the accumulator of one text. */
static void acc_clear(embed_model *m)
{
    for (size_t d = 0; d < m->dim; d++)
        m->acc[d] = 0.0;
}

/* Adds rows h (n, dim) to the accumulator, in row order, in double. */
static void acc_add(embed_model *m, const float *h, size_t n)
{
    const size_t dim = m->dim;
    for (size_t t = 0; t < n; t++)
        for (size_t d = 0; d < dim; d++)
            m->acc[d] += (double)h[t * dim + d];
}

/* out (dim) = (acc / n) / ||acc / n||: the pooled vector of a text of n tokens. */
static void acc_finish(embed_model *m, size_t n, float *out)
{
    const size_t dim = m->dim;
    double ss = 0.0;
    for (size_t d = 0; d < dim; d++) {
        m->acc[d] /= (double)n;
        ss += m->acc[d] * m->acc[d];
    }
    double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
    for (size_t d = 0; d < dim; d++)
        out[d] = (float)(m->acc[d] * inv);
}

/* One decoder text longer than a step, alone, in chunks of max_batch tokens. */
static int dec_long(embed_model *m, size_t idx, const int32_t *ids, size_t n, float *out,
                    err_msg *e)
{
    acc_clear(m);
    for (size_t pos = 0; pos < n; pos += m->max_batch) {
        llama_span sp = {ids + pos, MIN(m->max_batch, n - pos), pos, m->table, m->n_blocks, 0};
        err_msg fe;
        err_clear(&fe);
        int rc = llama_forward_hidden(m->dc, m->kv, &sp, 1, m->hidden, &fe);
        m->steps++;
        if (rc < 0)
            return err_set(e, rc, "embed: sequence %zu: %s", idx, fe.text);
        acc_add(m, m->hidden, sp.n);
    }
    acc_finish(m, n, out);
    return 0;
}

/*
 * Texts first..: packs as many consecutive texts of at most max_batch tokens as
 * fit one step (tokens and KV blocks), runs them as the spans of one forward
 * step and pools each. Returns the number of texts done (>= 1) or an error.
 */
static int dec_packed(embed_model *m, size_t first, const int32_t *const *ids, const size_t *lens,
                      size_t n, float *out, err_msg *e)
{
    size_t tok = 0, blk = 0, k = first;
    while (k < n && lens[k] <= m->max_batch) {
        size_t nb = (lens[k] + EMBED_KV_BLOCK - 1) / EMBED_KV_BLOCK;
        if (tok + lens[k] > m->max_batch || blk + nb > m->n_blocks)
            break;
        m->spans[k - first] = (llama_span){ids[k], lens[k], 0, m->table + blk, nb, 0};
        tok += lens[k];
        blk += nb;
        k++;
    }
    if (NEVER(k == first))
        return ERR_INTERNAL;
    err_msg fe;
    err_clear(&fe);
    int rc = llama_forward_hidden(m->dc, m->kv, m->spans, k - first, m->hidden, &fe);
    m->steps++;
    if (rc < 0)
        return err_set(e, rc, "embed: sequences %zu..%zu: %s", first, k - 1, fe.text);
    const float *h = m->hidden;
    for (size_t i = first; i < k; i++) {
        acc_clear(m);
        acc_add(m, h, lens[i]);
        acc_finish(m, lens[i], out + i * m->dim);
        h += lens[i] * m->dim;
    }
    return (int)(k - first);
}

/* Decoder texts: checks every sequence, then runs them packed (or alone when long). */
static int dec_ids(embed_model *m, const int32_t *const *ids, const size_t *lens, size_t n,
                   float *out, err_msg *e)
{
    for (size_t i = 0; i < n; i++) {
        if (lens[i] == 0 || lens[i] > m->n_ctx)
            return err_set(e, ERR_INVAL, "embed: sequence %zu has %zu tokens (1..%zu allowed)", i,
                           lens[i], m->n_ctx);
        for (size_t j = 0; j < lens[i]; j++)
            if (ids[i][j] < 0 || (uint32_t)ids[i][j] >= m->n_vocab)
                return err_set(e, ERR_INVAL,
                               "embed: sequence %zu: token id %d at %zu is "
                               "outside the vocabulary of %u",
                               i, (int)ids[i][j], j, m->n_vocab);
    }
    size_t i = 0;
    while (i < n) {
        if (lens[i] > m->max_batch) {
            int rc = dec_long(m, i, ids[i], lens[i], out + i * m->dim, e);
            if (rc < 0)
                return rc;
            i++;
            continue;
        }
        int done = dec_packed(m, i, ids, lens, n, out, e);
        if (done < 0)
            return done;
        i += (size_t)done;
    }
    return 0;
}

int embed_ids(embed_model *m, const int32_t *const *ids, const size_t *lens, size_t n,
              float *out, err_msg *e)
{
    if (!m->is_decoder)
        return bert_embed_ids(m->bc, ids, lens, n, out, e);
    return dec_ids(m, ids, lens, n, out, e);
}

int embed_texts(embed_model *m, const char *const *texts, const size_t *lens, size_t n,
                float *out, size_t *n_tokens, size_t *n_cut, err_msg *e)
{
    if (!m->is_decoder)
        return bert_embed_texts(m->bc, texts, lens, n, out, n_tokens, n_cut, e);
    int rc = 0;
    size_t cut = 0, nn = n ? n : 1;
    tok_list *lists = calloc(nn, sizeof *lists);
    const int32_t **ids = calloc(nn, sizeof *ids);
    size_t *nl = calloc(nn, sizeof *nl);
    if (!lists || !ids || !nl) {
        rc = err_set(e, ERR_NOMEM, "embed: out of memory for %zu texts", n);
        goto out;
    }
    // tokenize all first, so the texts can be packed into forward steps
    for (size_t i = 0; i < n; i++) {
        tok_list_init(&lists[i], TOK_MAX_TEXT_BYTES);
        if ((rc = tok_tokenize(m->vocab, texts[i], lens[i], TOK_ADD_SPECIAL, &lists[i], e)) < 0)
            goto out;
        if (lists[i].n == 0) {
            rc = err_set(e, ERR_INVAL, "embed: text %zu has no tokens", i);
            goto out;
        }
        if (lists[i].n > m->n_ctx) {
            lists[i].n = m->n_ctx;
            cut++;
        }
        ids[i] = lists[i].ids;
        nl[i] = lists[i].n;
        if (n_tokens)
            n_tokens[i] = lists[i].n;
    }
    if ((rc = dec_ids(m, ids, nl, n, out, e)) == 0 && n_cut)
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
