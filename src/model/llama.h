/*
 * model/llama — the `llama` and `qwen2` forward pass over GGUF weights.
 *
 * Three objects, so that weights, scratch and KV have the owners they need:
 *
 *   model      the weights: a read-only mmap of the GGUF file plus small f32
 *              copies of the norm vectors and biases. Immutable after
 *              model_load, refcounted (model_ref / model_unref, atomic), shared by
 *              any number of threads and contexts; the last unref unmaps.
 *   llama_kv   paged K/V storage in F16: n_blocks blocks of block_tokens token
 *              slots, per layer. It knows nothing of sequences: the caller
 *              (engine/kv, or a trivial table for one sequence) decides which
 *              blocks hold which positions of which sequence and passes block
 *              tables to llama_forward, which only writes and reads K/V rows
 *              through them.
 *   llama_ctx  the activation buffers of one forward pass for the configured
 *              worst case (max_batch_tokens tokens, max_ctx positions), all
 *              allocated by llama_ctx_new; llama_forward allocates nothing. One
 *              ctx per thread that runs forward passes (the scheduler thread).
 *
 * One forward step takes a batch of spans. A span is a run of consecutive tokens
 * of one sequence: tokens[0..n) at positions pos..pos+n-1, whose sequence already
 * has its K/V for positions 0..pos-1 in the blocks of its table. A decoding
 * sequence is a span of one token; a prefill chunk a longer one. Per layer the
 * step computes Q, K, V for every token of the batch with one matmul per weight
 * (so each weight matrix is read once per step for the whole batch), writes the
 * K/V rows of every token into its block, then runs causal attention for each
 * token over positions 0..its own, per sequence, in position order.
 *
 * Bitwise batch invariance: every per-token computation (embedding, RMSNorm,
 * matmul rows, RoPE, attention over its own sequence's positions in a fixed
 * order, SwiGLU, logits) depends only on that token's inputs and its sequence's
 * K/V, and the matmul kernels reduce each row in an order independent of how
 * many rows are computed together. So a sequence's logits are the same bits
 * whether it runs alone or among others, and whether its prompt was fed in one
 * chunk or several.
 *
 * docs/internals/engine-forward.md describes the pass step by step.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"

struct gguf_file;

typedef enum llama_arch {
    LLAMA_ARCH_LLAMA = 0,  // RoPE on adjacent pairs (x[2i], x[2i+1])
    LLAMA_ARCH_QWEN2 = 1,  // NeoX RoPE on (x[i], x[i + rope_dim/2]); q/k/v biases
} llama_arch;

/* Shapes and constants of a loaded model (read from GGUF metadata and tensors). */
typedef struct llama_hparams {
    llama_arch arch;
    uint32_t n_vocab;      // rows of token_embd
    uint32_t dim;          // embedding_length
    uint32_t n_layer;      // block_count
    uint32_t n_head;       // attention.head_count
    uint32_t n_kv_head;    // attention.head_count_kv (GQA: n_head / n_kv_head per group)
    uint32_t head_dim;     // dim / n_head
    uint32_t kv_dim;       // n_kv_head * head_dim
    uint32_t ffn;          // feed_forward_length
    uint32_t n_ctx_train;  // context_length
    uint32_t rope_dim;     // rope.dimension_count (default head_dim)
    float rope_base;       // rope.freq_base (default 10000)
    float rope_scale;      // position divisor from rope.scaling (linear); 1 = none
    float rms_eps;         // attention.layer_norm_rms_epsilon (default 1e-5)
    bool is_neox;          // RoPE ordering: true for qwen2
    bool has_qkv_bias;     // qwen2
    bool is_tied_output;   // no output.weight: logits use token_embd
} llama_hparams;

typedef struct model model;

#define LLAMA_CTX_MAX (1u << 20)           // positions per sequence, hard limit
#define LLAMA_BATCH_MAX 65536              // tokens per step, hard limit
#define LLAMA_KV_BLOCK_TOKENS_DEFAULT 16

/*
 * Maps the GGUF file at path and builds a model of architecture llama or qwen2.
 * Refuses, with one sentence in e naming the thing: an unreadable or malformed
 * file (ERR_IO / ERR_FORMAT from the GGUF reader), an architecture other than
 * llama/qwen2 (ERR_UNSUPPORTED, naming it), a weight of a type the kernels cannot
 * use (ERR_UNSUPPORTED, naming tensor and type), a missing tensor or metadata key
 * (ERR_FORMAT, naming it), shapes that disagree with the metadata, a tokenizer
 * vocabulary whose size differs from the embedding's rows (ERR_FORMAT, naming
 * both sizes). Returns 0 and *out with one reference (release with model_unref).
 */
int model_load(const char *path, model **out, err_msg *e) MUST_USE;

/* Takes another reference; returns m. Any thread. */
model *model_ref(model *m);
/* Drops a reference; the last one frees the model and unmaps its file. NULL ok. */
void model_unref(model *m);

/* The model's shapes; borrowed, valid while the caller holds a reference. */
const llama_hparams *model_hparams(const model *m);
/* The model's GGUF file (metadata, tokenizer); borrowed like model_hparams. */
const struct gguf_file *model_gguf(const model *m);
/*
 * Bytes of weights one decode step reads: every matrix of every layer plus the
 * output matrix (the embedding row read per token is negligible and not counted).
 * The numerator of the memory-bandwidth roofline.
 */
uint64_t model_weight_bytes_per_token(const model *m);
/* Parameter count (elements of all tensors). */
uint64_t model_n_params(const model *m);

/* ---------------------------------------------------------------- KV storage */

typedef struct llama_kv llama_kv;

/* Element type of the K/V storage. */
typedef enum llama_kv_type {
    LLAMA_KV_F16 = 0,  // 2 bytes per element
    LLAMA_KV_Q8_0 = 1, // each K or V row in blocks of 32: f16 scale + 32 int8 (34 bytes)
} llama_kv_type;

/*
 * Bytes of K and V for one token over all layers (F16): the engine sizes its
 * block pool with it (equals engine/kv's kv_token_bytes for KV_TYPE_F16).
 */
size_t llama_kv_token_bytes(const llama_hparams *hp);
/*
 * The same for type t; 0 when the shape cannot be stored as t (Q8_0 needs kv_dim
 * a multiple of 32). Equals engine/kv's kv_token_bytes for the same type.
 */
size_t llama_kv_token_bytes_type(const llama_hparams *hp, llama_kv_type t);

/*
 * Allocates paged K/V storage for m: n_blocks blocks of block_tokens slots, F16,
 * laid out (n_layer, n_blocks, block_tokens, kv_dim) for K and again for V, so a
 * block of one layer is contiguous. Contents start as zeros. Returns 0 and *out
 * (free with llama_kv_free), ERR_INVAL (zero sizes), ERR_OVERFLOW or ERR_NOMEM.
 * The storage is not tied to m beyond its shape: use it only with m.
 */
int llama_kv_new(const model *m, size_t n_blocks, size_t block_tokens, llama_kv **out,
                 err_msg *e) MUST_USE;
/*
 * llama_kv_new with element type t. Q8_0 rows are quantized when written
 * (tensor_quantize_row) and dequantized per block of positions when attention
 * reads them; ERR_INVAL (named in e) when kv_dim is not a multiple of 32.
 */
int llama_kv_new_type(const model *m, size_t n_blocks, size_t block_tokens, llama_kv_type t,
                      llama_kv **out, err_msg *e) MUST_USE;
llama_kv_type llama_kv_get_type(const llama_kv *kv);
/* Bytes of K/V storage allocated (both halves, all layers). */
size_t llama_kv_bytes(const llama_kv *kv);
void llama_kv_free(llama_kv *kv);
size_t llama_kv_n_blocks(const llama_kv *kv);
size_t llama_kv_block_tokens(const llama_kv *kv);
/*
 * Copies block src to block dst in every layer (copy-on-write of a shared partial
 * block). Returns 0 or ERR_INVAL (ids out of range).
 */
int llama_kv_copy_block(llama_kv *kv, int32_t dst, int32_t src) MUST_USE;

/* ---------------------------------------------------------------- forward */

typedef struct llama_config {
    size_t max_batch_tokens;  // tokens per llama_forward (default 512)
    size_t max_ctx;           // positions per sequence (default: the model's n_ctx_train,
                              // at most LLAMA_CTX_MAX)
    size_t max_logits;        // logits rows per llama_forward (default 64)
    pool *pool;               // borrowed compute pool for the parallel loops of a step
                              // (NULL, the default: the calling thread only); it must
                              // outlive the ctx, and have the same thread count at every
                              // step
} llama_config;

/* The defaults listed beside each field (max_ctx = 0 means "the model's"). The
 * results do not depend on the pool or its thread count. */
llama_config llama_config_default(void);

typedef struct llama_ctx llama_ctx;

/*
 * Allocates every buffer a forward pass needs for cfg's worst case and takes a
 * reference on m. Returns 0 and *out (free with llama_ctx_free), ERR_INVAL
 * (limits out of range, named in e), ERR_OVERFLOW or ERR_NOMEM.
 */
int llama_ctx_new(model *m, const llama_config *cfg, llama_ctx **out, err_msg *e) MUST_USE;
/* Frees the buffers and drops the model reference. NULL ok. */
void llama_ctx_free(llama_ctx *c);
/* The configuration in effect (max_ctx resolved). */
const llama_config *llama_ctx_config(const llama_ctx *c);
const model *llama_ctx_model(const llama_ctx *c);

/* A run of consecutive tokens of one sequence in a batch (see the top comment). */
typedef struct llama_span {
    const int32_t *tokens;   // (n) token ids
    size_t n;                // >= 1
    size_t pos;              // position of tokens[0]; K/V of 0..pos-1 already stored
    const int32_t *blocks;   // block table: blocks[p / block_tokens] holds position p
    size_t n_blocks;         // must cover positions 0..pos+n-1
    size_t n_logits;         // logits wanted for the last n_logits tokens (0..n)
} llama_span;

/*
 * Runs one forward step over spans[0..n_spans) (at most max_batch_tokens tokens in
 * all, positions below max_ctx, distinct sequences; spans need not be sorted).
 * Writes K/V rows of every token into kv, and the logits of the requested rows to
 * logits (sum of n_logits rows of n_vocab floats, at most max_logits rows, in span
 * order, each span's rows in position order). Returns 0, or ERR_INVAL with e
 * naming the offending span (token id out of range, empty span, block table too
 * short, block id out of range, positions past max_ctx, too many tokens or
 * logits); on error nothing useful has been written. Thread: the ctx's owner;
 * kv must not be used by another thread meanwhile.
 */
int llama_forward(llama_ctx *c, llama_kv *kv, const llama_span *spans, size_t n_spans,
                  float *logits, err_msg *e) MUST_USE;

/*
 * The same step as llama_forward, but instead of logits it writes the last
 * hidden state of every token of the batch: the residual stream after the last
 * layer, RMS-normed with output_norm (the rows llama_forward would multiply by
 * the output matrix). hidden gets one row of dim floats per token, for all
 * tokens of all spans in span order (sum of spans[i].n rows, at most
 * max_batch_tokens). The spans' n_logits must still be within max_logits (0 is
 * fine) and are otherwise ignored. K/V rows are written as llama_forward writes
 * them. Errors and thread as llama_forward. Used for decoder embeddings
 * (model/embed.h: mean-pooled last hidden state).
 */
int llama_forward_hidden(llama_ctx *c, llama_kv *kv, const llama_span *spans, size_t n_spans,
                         float *hidden, err_msg *e) MUST_USE;
