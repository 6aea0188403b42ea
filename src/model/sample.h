/*
 * model/sample — turning a row of logits into the next token, per request.
 *
 * Two objects:
 *   - sample_seq: one per request. Its parameters (temperature, top-k/p, min-p,
 *     penalties, logit bias, seed, stop strings, max tokens), its PRNG state
 *     (xoshiro256** seeded from the request seed with splitmix64, so the same seed
 *     gives the same tokens whatever else runs), the tokens seen so far (for
 *     penalties) and the stop-string matcher's held-back text.
 *   - sample_scratch: n_vocab-sized work arrays, one per sampling thread (the
 *     scheduler thread), allocated once; sampling itself allocates nothing.
 *
 * The pipeline of sample_next, in this fixed order:
 *   1. logit bias            l[t] += bias[t]
 *   2. repetition penalty    for t among the last penalty_last_n tokens (prompt and
 *                            generated): l[t] = l[t] > 0 ? l[t] / rp : l[t] * rp
 *   3. presence / frequency  for t generated c[t] > 0 times:
 *                            l[t] -= presence + c[t] * frequency   (OpenAI's formula)
 *   4. temperature 0         -> argmax (lowest id on ties); done
 *   5. top-k                 keep the k largest (ties broken by lower id)
 *   6. temperature           p = softmax(l / T)
 *   7. top-p                 keep the smallest prefix (by descending p) whose mass >= top_p
 *   8. min-p                 keep p >= min_p * p_max
 *   9. draw                  u in [0,1) from the PRNG, walk the kept tokens in
 *                            descending-p order until the cumulative mass exceeds u*sum
 * Log-probabilities reported for the API are those of the raw logits (log-softmax
 * of the row as given, before bias, penalties and temperature), as vLLM reports them.
 *
 * Stop strings are matched on detokenized text across token boundaries: text that
 * could still be the start of a stop string is held back (at most the longest stop
 * string minus one byte), so the caller never streams text that a later token turns
 * into a stop. The matched stop string itself is not emitted.
 *
 * Threads: a sample_seq and a sample_scratch are used by one thread at a time.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define SAMPLE_TOP_LOGPROBS_MAX 5
#define SAMPLE_STOP_MAX 8           // stop strings per request (OpenAI allows 4)
#define SAMPLE_STOP_BYTES_MAX 256   // longest stop string in bytes
#define SAMPLE_BIAS_MAX 1024        // logit bias entries per request
#define SAMPLE_MAX_TOKENS_MAX 1048576

typedef struct sample_bias {
    int32_t token;
    float bias;  // added to the logit; OpenAI's range is [-100, 100]
} sample_bias;

typedef struct sample_params {
    float temperature;         // 0 = greedy; default 1
    int32_t top_k;             // 0 = off (default)
    float top_p;               // 1 = off (default); (0, 1]
    float min_p;               // 0 = off (default); [0, 1]
    float repetition_penalty;  // 1 = off (default); > 0
    int32_t penalty_last_n;    // window of the repetition penalty; default 64, 0 = none
    float presence_penalty;    // 0 = off (default); [-2, 2] in OpenAI's API
    float frequency_penalty;   // 0 = off (default); [-2, 2] in OpenAI's API
    uint64_t seed;             // PRNG seed; default 0
    const sample_bias *bias;   // borrowed during sample_seq_new only (copied)
    size_t n_bias;
    const char *const *stop;   // borrowed during sample_seq_new only (copied)
    size_t n_stop;
    size_t max_tokens;         // generated tokens at most; default 256
    int n_top_logprobs;        // 0..SAMPLE_TOP_LOGPROBS_MAX alternatives to report
    bool want_logprobs;        // fill sample_result.logprob (and the alternatives)
} sample_params;

/* The defaults listed beside each field of sample_params. */
sample_params sample_params_default(void);

typedef struct sample_result {
    int32_t token;
    float logprob;  // log p(token) under the raw logits; 0 unless want_logprobs
    int n_top;      // number of alternatives filled (n_top_logprobs, or fewer if n_vocab is)
    int32_t top_token[SAMPLE_TOP_LOGPROBS_MAX];      // by descending raw logit, ties by id
    float top_logprob[SAMPLE_TOP_LOGPROBS_MAX];
} sample_result;

/* What sample_accept says about the sequence after a token. */
typedef enum sample_status {
    SAMPLE_CONTINUE = 0,
    SAMPLE_STOP = 1,    // a stop string matched (finish_reason "stop")
    SAMPLE_LENGTH = 2,  // max_tokens reached (finish_reason "length")
} sample_status;

typedef struct sample_seq sample_seq;
typedef struct sample_scratch sample_scratch;

/*
 * Creates the sampling state of one request for a model with n_vocab tokens.
 * Validates p: ranges above, bias tokens in [0, n_vocab), at most SAMPLE_STOP_MAX
 * non-empty stop strings of at most SAMPLE_STOP_BYTES_MAX bytes, max_tokens in
 * [1, SAMPLE_MAX_TOKENS_MAX]. Returns 0 and a new object the caller frees with
 * sample_seq_free, or ERR_INVAL (e names the parameter) / ERR_NOMEM.
 */
int sample_seq_new(const sample_params *p, int32_t n_vocab, sample_seq **out, err_msg *e) MUST_USE;
void sample_seq_free(sample_seq *s);

/*
 * Records prompt tokens for the repetition penalty window (only the last
 * penalty_last_n are kept). Tokens outside [0, n_vocab) give ERR_INVAL.
 */
int sample_seq_add_prompt(sample_seq *s, const int32_t *ids, size_t n) MUST_USE;

/* Number of tokens accepted so far. */
size_t sample_seq_generated(const sample_seq *s);

/* Work arrays for n_vocab; one per sampling thread. 0, ERR_INVAL or ERR_NOMEM. */
int sample_scratch_new(int32_t n_vocab, sample_scratch **out) MUST_USE;
void sample_scratch_free(sample_scratch *sc);

/*
 * Picks the next token from logits (n_vocab floats, not modified) with the
 * pipeline above and fills *out. Advances the PRNG when temperature > 0. Does
 * not record the token: call sample_accept with it. sc must have been made for
 * the same n_vocab. Returns 0, or ERR_INVAL when no token survives (all logits
 * -inf or NaN).
 */
int sample_next(sample_seq *s, sample_scratch *sc, const float *logits,
                sample_result *out) MUST_USE;

/*
 * Records token (its detokenized bytes text[0..n), possibly empty while the
 * detokenizer holds back a partial UTF-8 character) and runs the stop matcher.
 * Writes to out the bytes now safe to stream (*out_n of them; out_cap must be at
 * least n + SAMPLE_STOP_BYTES_MAX). Returns SAMPLE_CONTINUE, SAMPLE_STOP (out
 * holds the text before the stop string; the rest is dropped), SAMPLE_LENGTH
 * (max_tokens reached; held-back text is flushed into out), or ERR_INVAL
 * (token out of range, out_cap too small, or the sequence already finished).
 */
int sample_accept(sample_seq *s, int32_t token, const char *text, size_t n, char *out,
                  size_t out_cap, size_t *out_n) MUST_USE;

/*
 * Ends the sequence for another reason (end-of-generation token, cancel): writes
 * the held-back text to out (at most SAMPLE_STOP_BYTES_MAX bytes; out_cap must
 * allow that) and returns the number of bytes written.
 */
size_t sample_flush(sample_seq *s, char *out, size_t out_cap);
