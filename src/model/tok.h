/*
 * model/tok — tokenizers from GGUF metadata: SentencePiece-style ("llama"),
 * byte-level BPE ("gpt2") and WordPiece ("bert"), plus a streaming-safe
 * detokenizer.
 *
 * A tok_vocab is built once from a plain description (tok_vocab_desc: token
 * strings, scores, token types, merges, special ids, flags, pre-tokenizer
 * name) and is then immutable: any number of threads may tokenize and decode
 * with one vocab at the same time. Every tokenize call allocates its own
 * scratch (symbols, heap, PCRE2 match data) and frees it before returning.
 * The vocab copies every string it is given, so the description (and the
 * GGUF file it came from) may go away after tok_vocab_build().
 *
 * Behaviour follows llama.cpp's tokenizers (which reproduce the Hugging Face
 * ones) so that the vectors in ../shared/tokenizer-tests match exactly; the
 * details, and where we deliberately differ, are in docs/internals/tokenizers.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/str.h"

typedef int32_t tok_id;
#define TOK_NULL ((tok_id)-1)  // "no token"
#define TOK_UNSET ((tok_id)-2) // in a description: use the tokenizer kind's default

/* Limits on what a vocab may hold (a larger file is refused, never trusted). */
#define TOK_MAX_TOKENS (1u << 24)
#define TOK_MAX_MERGES (1u << 24)
#define TOK_MAX_TOKEN_BYTES 65535u
/* Longest text one tokenize call accepts (bytes). */
#define TOK_MAX_TEXT_BYTES ((size_t)256 << 20)

typedef enum tok_kind {
    TOK_KIND_SPM = 1, // tokenizer.ggml.model = "llama": SentencePiece BPE with scores
    TOK_KIND_BPE = 2, // "gpt2": byte-level BPE with merge ranks
    TOK_KIND_WPM = 3, // "bert": WordPiece
} tok_kind;

/* tokenizer.ggml.token_type values (GGUF / llama.cpp numbering). */
typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type;

/* Pre-tokenizers of byte-level BPE vocabs (tokenizer.ggml.pre). */
typedef enum tok_pre {
    TOK_PRE_DEFAULT = 0, // "default" or absent: llama.cpp's fallback regex set
    TOK_PRE_GPT2,        // "gpt-2", "mpt", "olmo", "phi-2", "jais", ...
    TOK_PRE_LLAMA3,      // "llama-bpe", "llama3", "llama-v3", "falcon3", "dbrx", "smaug-bpe"
    TOK_PRE_QWEN2,       // "qwen2", "deepseek-r1-qwen", "stablelm2"
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_FALCON,
    TOK_PRE_STARCODER, // "starcoder", "refact", "command-r", "smollm", "codeshell", ...
    TOK_PRE_COUNT_
} tok_pre;

/*
 * What a vocab is built from. Call tok_vocab_desc_init() first: it leaves
 * every special id at TOK_UNSET and every flag at -1 ("not given"), which
 * tok_vocab_build() replaces by the defaults of the kind and pre-tokenizer
 * (as llama.cpp does), so a loader only sets what its file states.
 */
typedef struct tok_vocab_desc {
    tok_kind kind;
    str pre;  // tokenizer.ggml.pre; empty = "default" (BPE only)
    str name; // general.name; selects llama.cpp's per-model token attributes (phi-3)
    size_t n_tokens;
    const str *tokens;    // (n_tokens) token text, UTF-8
    const float *scores;  // (n_tokens) or NULL = all 0 (SPM merge priority)
    const int32_t *types; // (n_tokens) tok_type values, or NULL = all NORMAL
    size_t n_merges;      // BPE only
    const str *merges;    // (n_merges) "left right", rank = index
    tok_id bos, eos, unk, sep, pad, cls, mask, eot, eom;
    int add_bos, add_eos, add_sep; // -1 = default of the kind
    int add_space_prefix;          // SPM: prefix a space to text (default 1)
    int wpm_lowercase;             // WPM: lower-case the text (default 1)
    int wpm_strip_accents;         // WPM: NFD and drop combining marks (default 1)
} tok_vocab_desc;

typedef struct tok_vocab tok_vocab;

/* Fills d with an empty description of the given kind (see above). */
void tok_vocab_desc_init(tok_vocab_desc *d, tok_kind kind);

/* Maps a tokenizer.ggml.pre name to its pre-tokenizer. Returns 0 or ERR_UNSUPPORTED. */
int tok_pre_from_name(str name, tok_pre *out);

/*
 * Builds an immutable vocab from d (copying all strings): the token hash,
 * the merge ranks, the special-token list, decoded pieces, and the compiled
 * (JIT) pre-tokenizer regexes. Returns 0 and *out (free with tok_vocab_free),
 * or ERR_INVAL / ERR_UNSUPPORTED / ERR_TOO_LARGE / ERR_FORMAT / ERR_NOMEM with
 * a sentence in e (a special id out of range, an unknown pre-tokenizer, a
 * token over TOK_MAX_TOKEN_BYTES, a merge without a space, ...).
 */
int tok_vocab_build(const tok_vocab_desc *d, tok_vocab **out, err_msg *e);

typedef struct gguf_file gguf_file;

/*
 * Builds a vocab from the tokenizer.ggml.* keys of an open GGUF file (model,
 * pre, tokens, scores, token_type, merges, the special ids, add_bos_token,
 * add_eos_token, add_sep_token, add_space_prefix) and general.name. The
 * vocab does not refer to f afterwards. Returns 0, or ERR_NOT_FOUND (no
 * tokenizer.ggml.model / tokens), ERR_UNSUPPORTED (a tokenizer model or
 * pre-tokenizer we do not implement, named in e), ERR_FORMAT (wrong value
 * types, array lengths that disagree) or the errors of tok_vocab_build.
 */
int tok_vocab_from_gguf(const gguf_file *f, tok_vocab **out, err_msg *e);

/* Frees a vocab; v may be NULL. No tokenize call may be running on it. */
void tok_vocab_free(tok_vocab *v);

/* Accessors; all are O(1) and thread-safe. */
tok_kind tok_vocab_kind(const tok_vocab *v);
tok_pre tok_vocab_pre(const tok_vocab *v);
size_t tok_vocab_n_tokens(const tok_vocab *v);
/* Token text as stored (not decoded); an empty slice for an id out of range. */
str tok_vocab_text(const tok_vocab *v, tok_id id);
/* tok_type of a token; TOK_TYPE_UNDEFINED for an id out of range. */
tok_type tok_vocab_type(const tok_vocab *v, tok_id id);
float tok_vocab_score(const tok_vocab *v, tok_id id);
/* Id of a token whose text is exactly s, or TOK_NULL. */
tok_id tok_vocab_find(const tok_vocab *v, str s);
tok_id tok_vocab_bos(const tok_vocab *v);
tok_id tok_vocab_eos(const tok_vocab *v);
tok_id tok_vocab_eot(const tok_vocab *v);
tok_id tok_vocab_unk(const tok_vocab *v);
tok_id tok_vocab_sep(const tok_vocab *v);
tok_id tok_vocab_pad(const tok_vocab *v);
bool tok_vocab_add_bos(const tok_vocab *v);
bool tok_vocab_add_eos(const tok_vocab *v);
/* True for tokens that end a generation: eos, eot, eom and known end-of-turn texts. */
bool tok_vocab_is_eog(const tok_vocab *v, tok_id id);
/* True for control and unknown tokens (not rendered unless asked). */
bool tok_vocab_is_control(const tok_vocab *v, tok_id id);

/* A growable id list with a ceiling (max ids), caller-owned. */
typedef struct tok_list {
    tok_id *ids;
    size_t n;
    size_t cap;
    size_t max;
} tok_list;

void tok_list_init(tok_list *l, size_t max);
void tok_list_free(tok_list *l);
/* Appends one id. Returns 0, ERR_TOO_LARGE (past max) or ERR_NOMEM. */
int tok_list_push(tok_list *l, tok_id id);

/* tok_tokenize flags */
#define TOK_ADD_SPECIAL 1u   // add BOS/EOS (BERT: CLS/SEP) as the vocab's flags say
#define TOK_PARSE_SPECIAL 2u // recognise the text of control tokens ("<s>", "<|im_end|>")

/*
 * Tokenizes len bytes of text and appends the ids to out. User-defined
 * tokens (type 4) are always matched in the text, before pre-tokenization,
 * as Hugging Face added tokens are; control and unknown tokens only with
 * TOK_PARSE_SPECIAL. Invalid UTF-8 never fails: SPM byte-falls-back on the
 * raw bytes, BPE and WordPiece see U+FFFD for each bad byte.
 * Returns 0, or ERR_TOO_LARGE (text over TOK_MAX_TEXT_BYTES, or out->max
 * reached; out then holds a prefix), ERR_NOMEM, ERR_INTERNAL (regex engine).
 * Thread-safe: v is only read.
 */
int tok_tokenize(const tok_vocab *v, const char *text, size_t len, unsigned flags, tok_list *out,
                 err_msg *e);

/*
 * Pre-tokenizer split only (BPE vocabs' regex sequence, before byte mapping
 * and merges): appends the (offset, length) of each piece of text to
 * offs/lens, up to cap pieces. Returns the number of pieces (which may
 * exceed cap: call again with more room) or a negative ERR_*. Text must be
 * valid UTF-8 (ERR_INVAL otherwise). For tests and for tools that show the
 * split.
 */
long tok_pre_split(tok_pre pre, const char *text, size_t len, size_t *offs, size_t *lens,
                   size_t cap, err_msg *e);

/*
 * Streaming detokenizer: one per sequence. It turns ids into UTF-8 and holds
 * back an incomplete multi-byte character (SPM byte tokens <0xE2><0x82><0xAC>,
 * BPE tokens that end inside a character) until the rest arrives, so every
 * byte it hands out is valid UTF-8; a byte that cannot start or continue a
 * character becomes U+FFFD. Not thread-safe (one owner), but many decoders
 * may share a vocab.
 */
typedef struct tok_decoder {
    const tok_vocab *v;
    unsigned flags;
    uint8_t pend[4]; // bytes of an incomplete character
    uint8_t npend;
    uint8_t need; // total length of that character
    bool started; // some byte has been emitted (leading-space rule done)
} tok_decoder;

/* tok_decoder_init flags */
#define TOK_DEC_SPECIAL 1u     // render control/unknown tokens' text (else nothing)
#define TOK_DEC_STRIP_SPACE 2u // the ids start a text: drop the SPM/WordPiece leading space

void tok_decoder_init(tok_decoder *d, const tok_vocab *v, unsigned flags);
/*
 * Appends the complete characters that id finishes to out. Returns 0,
 * ERR_INVAL (id out of range: nothing appended) or buf's ERR_TOO_LARGE /
 * ERR_NOMEM.
 */
int tok_decoder_push(tok_decoder *d, tok_id id, buf *out);
/* End of sequence: a held-back incomplete character becomes U+FFFD. Returns 0 or buf errors. */
int tok_decoder_flush(tok_decoder *d, buf *out);

/* Decodes a whole id sequence (a decoder from start to flush) into out. */
int tok_detokenize(const tok_vocab *v, const tok_id *ids, size_t n, unsigned dec_flags, buf *out);
