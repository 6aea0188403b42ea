/*
 * model/embed — one embedding model behind one interface: a `bert` encoder
 * (model/bert) or a decoder (`llama`, `qwen2`: model/llama) used as an
 * embedder.
 *
 * Decoder embeddings are the mean-pooled last hidden state: a text is
 * tokenized as the vocab's add_bos/add_eos flags say (the ids of `ferry
 * tokenize --bos`), run causally through the decoder from position 0, and the
 * final-norm hidden rows of all its tokens (llama_forward_hidden: the residual
 * stream after the last layer times output_norm, what the output matrix would
 * read) are averaged in double in token order, then scaled to unit L2 norm.
 * A text longer than the context is cut to its first n_ctx tokens. Texts of
 * at most max_batch_tokens tokens are packed several to a forward step (each
 * its own sequence from position 0); a longer text runs alone in chunks of
 * max_batch_tokens. A text's vector never depends on the other texts of the
 * call or on the chunk size: it is bitwise the vector of that text alone.
 *
 * Objects: an embed_model owns the loaded model, the forward buffers and the
 * tokenizer; it is used by one thread at a time (callers that share one lock
 * it). Nothing is allocated per call except the token list of a text.
 * docs/internals/embed.md has the details.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"

struct gguf_file;
struct tok_vocab;

typedef struct embed_model embed_model;

#define EMBED_DEC_CTX_DEFAULT 2048 // longest decoder text (tokens) unless configured

typedef struct embed_config {
    size_t max_batch_tokens; // tokens per forward step (default 512 decoder, 2048 bert)
    size_t max_ctx;          // decoder: longest text in tokens (default min(the model's
                             // context_length, EMBED_DEC_CTX_DEFAULT)); bert: ignored (n_ctx)
    pool *pool;              // borrowed compute pool (NULL: the calling thread only)
} embed_config;

/* All fields 0/NULL: the defaults named above. */
embed_config embed_config_default(void);

/*
 * Loads the GGUF at path as an embedder: architecture bert through bert_load,
 * llama or qwen2 through model_load (pooling "last-mean"). Refuses other
 * architectures (ERR_UNSUPPORTED, named) and everything the loaders refuse,
 * with their one sentence in e. Returns 0 and *out (embed_free).
 */
int embed_load(const char *path, const embed_config *cfg, embed_model **out, err_msg *e)
    MUST_USE;
/* Frees the model and its buffers. NULL ok. */
void embed_free(embed_model *m);

/* Vector length: the model's hidden size. */
size_t embed_dim(const embed_model *m);
/* Longest text in tokens (a longer one is cut). */
size_t embed_n_ctx(const embed_model *m);
/* True for llama/qwen2 models. */
bool embed_is_decoder(const embed_model *m);
/* "mean" or "cls" (bert, from metadata), "last-mean" (decoders). Static string. */
const char *embed_pooling(const embed_model *m);
/* The architecture: "bert", "llama" or "qwen2". Static string. */
const char *embed_arch(const embed_model *m);
/* The tokenizer; borrowed, valid until embed_free; thread-safe to use. */
const struct tok_vocab *embed_vocab(const embed_model *m);
/* Forward steps run so far (decoders; bert: 0). For tests and benchmarks. */
size_t embed_forward_steps(const embed_model *m);
/* The GGUF file (metadata); borrowed like embed_vocab. */
const struct gguf_file *embed_gguf(const embed_model *m);

/*
 * Embeds n token sequences: ids[i][0..lens[i]) (1..n_ctx tokens, below the
 * vocab size). Writes n rows of embed_dim floats to out, pooled and unit L2
 * norm. Returns 0 or ERR_INVAL (e names the sequence and the bad length or
 * id). Thread: one at a time per model.
 */
int embed_ids(embed_model *m, const int32_t *const *ids, const size_t *lens, size_t n,
              float *out, err_msg *e) MUST_USE;

/*
 * Tokenizes and embeds n texts (texts[i], lens[i] bytes): bert as
 * bert_embed_texts does; decoders with the vocab's BOS/EOS flags, a text over
 * n_ctx tokens cut to its first n_ctx. n_tokens (may be NULL) receives the
 * tokens used per text, n_cut (may be NULL) the number of texts cut. Returns
 * 0, ERR_INVAL (a text with no tokens at all, e.g. empty without BOS),
 * ERR_TOO_LARGE (a text over the tokenizer's limit), ERR_NOMEM, or the errors
 * of embed_ids. Thread: one at a time per model.
 */
int embed_texts(embed_model *m, const char *const *texts, const size_t *lens, size_t n,
                float *out, size_t *n_tokens, size_t *n_cut, err_msg *e) MUST_USE;
