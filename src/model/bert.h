/*
 * model/bert — BERT-family embedding models (GGUF architecture `bert`, as
 * llama.cpp's converter writes all-MiniLM-L6-v2, bge-small and the like).
 *
 * The file: metadata bert.embedding_length, bert.block_count,
 * bert.attention.head_count, bert.feed_forward_length,
 * bert.attention.layer_norm_epsilon, bert.context_length, bert.pooling_type
 * (0 none, 1 mean, 2 cls; absent = mean) and a WordPiece tokenizer
 * (tokenizer.ggml.model "bert"). Tensors, ne = [n_in, n_out]:
 *
 *   token_embd.weight          [dim, n_vocab]
 *   token_types.weight         [dim, n_token_types]   (type 0 is used)
 *   position_embd.weight       [dim, n_ctx]           absolute, learned
 *   token_embd_norm.{weight,bias}  [dim]              LayerNorm after the sum
 *   blk.L.attn_{q,k,v}.{weight,bias}      [dim, dim], [dim]
 *   blk.L.attn_output.{weight,bias}       [dim, dim], [dim]
 *   blk.L.attn_output_norm.{weight,bias}  [dim]
 *   blk.L.ffn_up.{weight,bias}            [dim, ffn], [ffn]
 *   blk.L.ffn_down.{weight,bias}          [ffn, dim], [dim]
 *   blk.L.layer_output_norm.{weight,bias} [dim]
 *
 * The computation (post-norm encoder, bidirectional attention within each
 * text, x = (T, dim) for a text of T tokens):
 *
 *   x  = LN(tok[id] + pos[p] + type[0]) ;  LN(v) = (v - mean) / sqrt(var + eps) * w + b
 *   per layer: a = softmax(q kᵀ / sqrt(head_dim)) v per head, q/k/v = x Wᵀ + b
 *              x = LN_attn(x + a Woᵀ + bo)
 *              x = LN_out(x + gelu(x Wupᵀ + bup) Wdownᵀ + bdown)
 *              gelu(v) = v/2 (1 + erf(v/√2))  (the exact form BERT was trained with)
 *   pooled = mean of x over the text's tokens ([CLS] and [SEP] included) or
 *            x[0] (CLS pooling), then scaled to unit L2 norm.
 *
 * Objects: a bert_model is immutable after bert_load (mmap'd weights, small
 * f32 copies of vectors, the tokenizer) and refcounted; a bert_ctx holds the
 * activation buffers of the worst-case batch and belongs to one thread.
 * Several texts are embedded in one batch: every weight matrix is read once
 * per layer for all tokens of all texts; attention stays within a text.
 * docs/internals/rag.md describes where embeddings go next.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"

struct gguf_file;
struct tok_vocab;

typedef enum bert_pooling {
    BERT_POOL_NONE = 0, // llama.cpp's "none": refused by bert_load (one vector per text here)
    BERT_POOL_MEAN = 1,
    BERT_POOL_CLS = 2,
} bert_pooling;

typedef struct bert_hparams {
    uint32_t n_vocab;       // rows of token_embd
    uint32_t dim;           // embedding_length
    uint32_t n_layer;       // block_count
    uint32_t n_head;        // attention.head_count
    uint32_t head_dim;      // dim / n_head
    uint32_t ffn;           // feed_forward_length
    uint32_t n_ctx;         // context_length = rows of position_embd (longest text, tokens)
    uint32_t n_token_types; // rows of token_types
    float ln_eps;           // attention.layer_norm_epsilon (default 1e-12)
    bert_pooling pooling;   // pooling_type (default mean)
} bert_hparams;

typedef struct bert_model bert_model;

/*
 * Maps the GGUF file at path and builds a bert model. Refuses, with one
 * sentence in e: an unreadable or malformed file (the GGUF reader's
 * ERR_IO/ERR_FORMAT), another architecture (ERR_UNSUPPORTED, named), a
 * missing or misshapen tensor or key (ERR_FORMAT, named), pooling "none" or
 * an unknown pooling type (ERR_UNSUPPORTED), a weight type the kernels cannot
 * use, a tokenizer that is not WordPiece or whose size differs from
 * token_embd's rows. Returns 0 and *out with one reference (bert_unref).
 */
int bert_load(const char *path, bert_model **out, err_msg *e) MUST_USE;
/* Takes a reference; returns m. Any thread. */
bert_model *bert_ref(bert_model *m);
/* Drops a reference; the last one unmaps and frees. NULL ok. Any thread. */
void bert_unref(bert_model *m);

/* Shapes; borrowed, valid while a reference is held. */
const bert_hparams *bert_model_hparams(const bert_model *m);
/* The GGUF file (metadata); borrowed like bert_model_hparams. */
const struct gguf_file *bert_model_gguf(const bert_model *m);
/* The WordPiece tokenizer; borrowed like bert_model_hparams; thread-safe to use. */
const struct tok_vocab *bert_model_vocab(const bert_model *m);

typedef struct bert_config {
    size_t max_batch_tokens; // tokens per forward batch (default 2048, raised to n_ctx)
    pool *pool;              // borrowed compute pool (NULL: the calling thread only)
} bert_config;

/* The defaults above. */
bert_config bert_config_default(void);

typedef struct bert_ctx bert_ctx;

/*
 * Allocates the buffers of one batch of cfg->max_batch_tokens tokens and
 * takes a reference on m. Returns 0 and *out (bert_ctx_free), ERR_INVAL
 * (limits out of range), ERR_OVERFLOW or ERR_NOMEM.
 */
int bert_ctx_new(bert_model *m, const bert_config *cfg, bert_ctx **out, err_msg *e) MUST_USE;
/* Frees the buffers and drops the model reference. NULL ok. */
void bert_ctx_free(bert_ctx *c);
const bert_model *bert_ctx_model(const bert_ctx *c);

/*
 * Embeds n token sequences: seq i is ids[i][0..lens[i]) (1..n_ctx tokens, ids
 * below n_vocab, normally [CLS] ... [SEP]). Writes n rows of dim floats to out,
 * each pooled and L2-normalized. Texts are packed into batches of at most
 * max_batch_tokens tokens. Returns 0 or ERR_INVAL (e names the sequence and the
 * bad length or id); on error out is unspecified. Thread: the ctx's owner.
 */
int bert_embed_ids(bert_ctx *c, const int32_t *const *ids, const size_t *lens, size_t n,
                   float *out, err_msg *e) MUST_USE;

/*
 * Tokenizes each of the n texts (texts[i], lens[i] bytes) as the model's
 * tokenizer does with special tokens ([CLS] text [SEP]), cuts a text longer
 * than n_ctx tokens to its first n_ctx - 1 tokens plus [SEP], and embeds them
 * all as bert_embed_ids does. n_tokens (may be NULL) receives the token count
 * after cutting of every text, n_cut (may be NULL) the number of texts cut.
 * Returns 0, or ERR_NOMEM / ERR_TOO_LARGE (a text over the tokenizer's limit)
 * / the errors of bert_embed_ids. Thread: the ctx's owner.
 */
int bert_embed_texts(bert_ctx *c, const char *const *texts, const size_t *lens, size_t n,
                     float *out, size_t *n_tokens, size_t *n_cut, err_msg *e) MUST_USE;
