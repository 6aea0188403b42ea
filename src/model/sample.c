/*
 * model/sample — the sampler (see sample.h for the pipeline and its order).
 *
 * Candidates are token ids in sc->idx ordered by a total order "better": higher
 * adjusted logit first, lower id on ties. Every selection and sort uses that order,
 * so the kept set and the walk order of the draw depend only on the logits, never
 * on the algorithm's pivots: the same seed gives the same token.
 */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sample_seq {
    sample_params p;  // bias and stop pointers below replace the caller's
    int32_t n_vocab;
    sample_bias *bias;
    size_t n_bias;
    char *stop[SAMPLE_STOP_MAX];
    size_t stop_len[SAMPLE_STOP_MAX];
    size_t n_stop;
    uint64_t rng[4];       // xoshiro256** state
    int32_t *gen;          // (max_tokens) generated tokens
    size_t n_gen;
    int32_t *tail;         // (penalty_last_n) ring of the last prompt tokens
    size_t n_tail, tail_pos;
    char held[SAMPLE_STOP_BYTES_MAX];  // text that may start a stop string
    size_t n_held;
    bool is_finished;
};

struct sample_scratch {
    int32_t n_vocab;
    float *l;      // (n_vocab) adjusted logits
    int32_t *idx;  // (n_vocab) candidate ids
    int32_t *cnt;  // (n_vocab) occurrence counts; all zero between calls
    double *w;     // (n_vocab) exp((l - max) / T) of each candidate token, by token id
};

sample_params sample_params_default(void)
{
    sample_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.repetition_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.max_tokens = 256;
    return p;
}

/* ---- PRNG: splitmix64 to seed, xoshiro256** to draw ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(xoshiro_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- lifecycle ---- */

static bool finite_in(float v, float lo, float hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

int sample_seq_new(const sample_params *p, int32_t n_vocab, sample_seq **out, err_msg *e)
{
    *out = NULL;
    if (n_vocab <= 0)
        return err_set(e, ERR_INVAL, "sample: vocabulary size %d must be positive", (int)n_vocab);
    if (!finite_in(p->temperature, 0.0f, 100.0f))
        return err_set(e, ERR_INVAL, "sample: temperature %g is outside [0, 100]",
                       (double)p->temperature);
    if (p->top_k < 0)
        return err_set(e, ERR_INVAL, "sample: top_k %d is negative", (int)p->top_k);
    if (!finite_in(p->top_p, 0.0f, 1.0f) || p->top_p == 0.0f)
        return err_set(e, ERR_INVAL, "sample: top_p %g is outside (0, 1]", (double)p->top_p);
    if (!finite_in(p->min_p, 0.0f, 1.0f))
        return err_set(e, ERR_INVAL, "sample: min_p %g is outside [0, 1]", (double)p->min_p);
    if (!finite_in(p->repetition_penalty, 1e-3f, 1e3f))
        return err_set(e, ERR_INVAL, "sample: repetition_penalty %g is outside [0.001, 1000]",
                       (double)p->repetition_penalty);
    if (p->penalty_last_n < 0 || p->penalty_last_n > 1 << 20)
        return err_set(e, ERR_INVAL, "sample: penalty_last_n %d is outside [0, 1048576]",
                       (int)p->penalty_last_n);
    if (!finite_in(p->presence_penalty, -100.0f, 100.0f))
        return err_set(e, ERR_INVAL, "sample: presence_penalty %g is outside [-100, 100]",
                       (double)p->presence_penalty);
    if (!finite_in(p->frequency_penalty, -100.0f, 100.0f))
        return err_set(e, ERR_INVAL, "sample: frequency_penalty %g is outside [-100, 100]",
                       (double)p->frequency_penalty);
    if (p->max_tokens < 1 || p->max_tokens > SAMPLE_MAX_TOKENS_MAX)
        return err_set(e, ERR_INVAL, "sample: max_tokens %zu is outside [1, %d]", p->max_tokens,
                       SAMPLE_MAX_TOKENS_MAX);
    if (p->n_top_logprobs < 0 || p->n_top_logprobs > SAMPLE_TOP_LOGPROBS_MAX)
        return err_set(e, ERR_INVAL, "sample: top_logprobs %d is outside [0, %d]",
                       p->n_top_logprobs, SAMPLE_TOP_LOGPROBS_MAX);
    if (p->n_bias > SAMPLE_BIAS_MAX)
        return err_set(e, ERR_INVAL, "sample: %zu logit_bias entries, limit %d", p->n_bias,
                       SAMPLE_BIAS_MAX);
    for (size_t i = 0; i < p->n_bias; i++) {
        if (p->bias[i].token < 0 || p->bias[i].token >= n_vocab)
            return err_set(e, ERR_INVAL, "sample: logit_bias token %d is outside [0, %d)",
                           (int)p->bias[i].token, (int)n_vocab);
        if (!finite_in(p->bias[i].bias, -100.0f, 100.0f))
            return err_set(e, ERR_INVAL, "sample: logit_bias value %g for token %d is outside "
                           "[-100, 100]", (double)p->bias[i].bias, (int)p->bias[i].token);
    }
    if (p->n_stop > SAMPLE_STOP_MAX)
        return err_set(e, ERR_INVAL, "sample: %zu stop strings, limit %d", p->n_stop,
                       SAMPLE_STOP_MAX);
    for (size_t i = 0; i < p->n_stop; i++) {
        size_t n = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (n == 0)
            return err_set(e, ERR_INVAL, "sample: stop string %zu is empty", i);
        if (n > SAMPLE_STOP_BYTES_MAX)
            return err_set(e, ERR_INVAL, "sample: stop string %zu is %zu bytes, limit %d", i, n,
                           SAMPLE_STOP_BYTES_MAX);
    }

    sample_seq *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, ERR_NOMEM, "sample: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->gen = malloc(p->max_tokens * sizeof *s->gen);
    if (p->penalty_last_n > 0)
        s->tail = malloc((size_t)p->penalty_last_n * sizeof *s->tail);
    if (p->n_bias)
        s->bias = malloc(p->n_bias * sizeof *s->bias);
    if (!s->gen || (p->penalty_last_n > 0 && !s->tail) || (p->n_bias && !s->bias))
        goto nomem;
    if (p->n_bias)
        memcpy(s->bias, p->bias, p->n_bias * sizeof *s->bias);
    s->n_bias = p->n_bias;
    for (size_t i = 0; i < p->n_stop; i++) {
        s->stop_len[i] = strlen(p->stop[i]);
        s->stop[i] = malloc(s->stop_len[i]);
        if (!s->stop[i])
            goto nomem;
        memcpy(s->stop[i], p->stop[i], s->stop_len[i]);
        s->n_stop = i + 1;
    }
    s->p.bias = NULL;
    s->p.stop = NULL;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return 0;
nomem:
    sample_seq_free(s);
    return err_set(e, ERR_NOMEM, "sample: out of memory");
}

void sample_seq_free(sample_seq *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_stop; i++)
        free(s->stop[i]);
    free(s->bias);
    free(s->tail);
    free(s->gen);
    free(s);
}

int sample_seq_add_prompt(sample_seq *s, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return ERR_INVAL;
    size_t cap = (size_t)s->p.penalty_last_n;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        s->tail[s->tail_pos] = ids[i];
        s->tail_pos = (s->tail_pos + 1) % cap;
        if (s->n_tail < cap)
            s->n_tail++;
    }
    return 0;
}

size_t sample_seq_generated(const sample_seq *s)
{
    return s->n_gen;
}

int sample_scratch_new(int32_t n_vocab, sample_scratch **out)
{
    *out = NULL;
    if (n_vocab <= 0)
        return ERR_INVAL;
    sample_scratch *sc = calloc(1, sizeof *sc);
    if (!sc)
        return ERR_NOMEM;
    sc->n_vocab = n_vocab;
    sc->l = malloc((size_t)n_vocab * sizeof *sc->l);
    sc->idx = malloc((size_t)n_vocab * sizeof *sc->idx);
    sc->cnt = calloc((size_t)n_vocab, sizeof *sc->cnt);
    sc->w = malloc((size_t)n_vocab * sizeof *sc->w);
    if (!sc->l || !sc->idx || !sc->cnt || !sc->w) {
        sample_scratch_free(sc);
        return ERR_NOMEM;
    }
    *out = sc;
    return 0;
}

void sample_scratch_free(sample_scratch *sc)
{
    if (!sc)
        return;
    free(sc->l);
    free(sc->idx);
    free(sc->cnt);
    free(sc->w);
    free(sc);
}

/* ---- ordering helpers ---- */

/* The total order: a before b when its logit is higher, or equal with a lower id. */
static inline bool better(const float *l, int32_t a, int32_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

static void swap_i32(int32_t *a, int32_t *b)
{
    int32_t t = *a;
    *a = *b;
    *b = t;
}

/* Sorts idx[0..n) by `better` (quicksort, insertion sort below 16). */
static void sort_cands(const float *l, int32_t *idx, size_t n)
{
    while (n > 16) {
        size_t mid = n / 2;
        // median of three to the front as pivot
        if (better(l, idx[mid], idx[0]))
            swap_i32(&idx[mid], &idx[0]);
        if (better(l, idx[n - 1], idx[0]))
            swap_i32(&idx[n - 1], &idx[0]);
        if (better(l, idx[n - 1], idx[mid]))
            swap_i32(&idx[n - 1], &idx[mid]);
        swap_i32(&idx[0], &idx[mid]);  // pivot = median, now at 0
        int32_t pv = idx[0];
        size_t store = 1;
        for (size_t i = 1; i < n; i++)
            if (better(l, idx[i], pv))
                swap_i32(&idx[i], &idx[store++]);
        swap_i32(&idx[0], &idx[store - 1]);
        // recurse on the smaller side, loop on the larger
        size_t left = store - 1, right = n - store;
        if (left < right) {
            sort_cands(l, idx, left);
            idx += store;
            n = right;
        } else {
            sort_cands(l, idx + store, right);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        int32_t v = idx[i];
        size_t j = i;
        while (j > 0 && better(l, v, idx[j - 1])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

/* Reorders idx[0..n) so that its k best (by `better`) come first, in any order. */
static void select_top(const float *l, int32_t *idx, size_t n, size_t k)
{
    size_t lo = 0, hi = n;  // the k-th best lies in [lo, hi)
    while (hi - lo > 1 && k > lo && k < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (better(l, idx[mid], idx[lo]))
            swap_i32(&idx[mid], &idx[lo]);
        if (better(l, idx[hi - 1], idx[lo]))
            swap_i32(&idx[hi - 1], &idx[lo]);
        if (better(l, idx[hi - 1], idx[mid]))
            swap_i32(&idx[hi - 1], &idx[mid]);
        swap_i32(&idx[lo], &idx[mid]);
        int32_t pv = idx[lo];
        size_t store = lo + 1;
        for (size_t i = lo + 1; i < hi; i++)
            if (better(l, idx[i], pv))
                swap_i32(&idx[i], &idx[store++]);
        swap_i32(&idx[lo], &idx[store - 1]);
        size_t pivot_pos = store - 1;  // everything before it is better
        if (pivot_pos == k || pivot_pos + 1 == k)
            return;
        if (pivot_pos > k)
            hi = pivot_pos;
        else
            lo = pivot_pos + 1;
    }
}

/* ---- the pipeline ---- */

static void raw_logprobs(const sample_seq *s, const float *logits, sample_result *out)
{
    int32_t V = s->n_vocab;
    float mx = -INFINITY;
    for (int32_t t = 0; t < V; t++)
        if (logits[t] > mx)
            mx = logits[t];
    double z = 0;
    for (int32_t t = 0; t < V; t++)
        if (logits[t] > -INFINITY)  // NaN and -inf contribute nothing
            z += exp((double)logits[t] - (double)mx);
    double lse = (double)mx + log(z);
    out->logprob = (float)((double)logits[out->token] - lse);
    if (!(logits[out->token] > -INFINITY))
        out->logprob = -INFINITY;
    int n = s->p.n_top_logprobs;
    if (n > V)
        n = V;
    out->n_top = 0;
    // insertion into a list of at most 5, by descending logit then id
    for (int32_t t = 0; t < V; t++) {
        float v = logits[t];
        if (isnan(v))
            continue;
        int pos = out->n_top;
        while (pos > 0 && v > logits[out->top_token[pos - 1]])
            pos--;
        if (pos >= n)
            continue;
        int last = out->n_top < n ? out->n_top : n - 1;
        for (int j = last; j > pos; j--)
            out->top_token[j] = out->top_token[j - 1];
        out->top_token[pos] = t;
        if (out->n_top < n)
            out->n_top++;
    }
    for (int j = 0; j < out->n_top; j++)
        out->top_logprob[j] = (float)((double)logits[out->top_token[j]] - lse);
}

static void apply_penalties(sample_seq *s, sample_scratch *sc)
{
    float *l = sc->l;
    int32_t *cnt = sc->cnt;
    float rp = s->p.repetition_penalty;
    size_t last_n = (size_t)s->p.penalty_last_n;
    if (rp != 1.0f && last_n > 0) {
        // the window: the last last_n tokens of prompt tail followed by generated
        size_t from_gen = s->n_gen < last_n ? s->n_gen : last_n;
        size_t from_tail = last_n - from_gen < s->n_tail ? last_n - from_gen : s->n_tail;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < from_tail + from_gen; i++) {
                int32_t t;
                if (i < from_tail) {
                    size_t cap = last_n;
                    t = s->tail[(s->tail_pos + cap - from_tail + i) % cap];
                } else {
                    t = s->gen[s->n_gen - from_gen + (i - from_tail)];
                }
                if (pass == 0 && cnt[t] == 0) {
                    l[t] = l[t] > 0 ? l[t] / rp : l[t] * rp;
                    cnt[t] = 1;
                } else if (pass == 1) {
                    cnt[t] = 0;
                }
            }
        }
    }
    float pres = s->p.presence_penalty, freq = s->p.frequency_penalty;
    if (pres != 0.0f || freq != 0.0f) {
        for (size_t i = 0; i < s->n_gen; i++)
            cnt[s->gen[i]]++;
        for (size_t i = 0; i < s->n_gen; i++) {
            int32_t t = s->gen[i];
            if (cnt[t] > 0) {
                l[t] -= pres + (float)cnt[t] * freq;
                cnt[t] = 0;
            }
        }
    }
}

/* True when apply_penalties would change a logit. */
static bool has_penalties(const sample_seq *s)
{
    return (s->p.repetition_penalty != 1.0f && s->p.penalty_last_n > 0) ||
           s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f;
}

/*
 * The first index of the largest of x[0..n) (NaN never wins; -1 when nothing
 * is above -inf). The maxima of 64-element blocks come from 8
 * independent lanes (`a > m ? a : m` compiles to packed max instructions; a
 * running compare-and-branch over the vocabulary took ~30 us a row at 49k
 * tokens, on the scheduler's critical path every step), then the first block
 * holding the overall maximum is searched for its first index of it.
 */
#define ARGMAX_BLOCK 64
static int32_t argmax_first(const float *x, int32_t n)
{
    float top = -INFINITY;
    int32_t top_block = -1, nb = n / ARGMAX_BLOCK;
    for (int32_t b = 0; b < nb; b++) {
        const float *xb = x + (size_t)b * ARGMAX_BLOCK;
        float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                      -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        for (int i = 0; i < ARGMAX_BLOCK; i += 8)
            for (int k = 0; k < 8; k++)
                m[k] = xb[i + k] > m[k] ? xb[i + k] : m[k];
        float bm = m[0];
        for (int k = 1; k < 8; k++)
            bm = m[k] > bm ? m[k] : bm;
        if (bm > top) { // strictly: the first block that holds the maximum
            top = bm;
            top_block = b;
        }
    }
    int32_t from = top_block < 0 ? 0 : top_block * ARGMAX_BLOCK;
    int32_t to = top_block < 0 ? 0 : from + ARGMAX_BLOCK;
    int32_t best = -1;
    for (int32_t t = from; t < to; t++)
        if (x[t] == top) {
            best = t;
            break;
        }
    for (int32_t t = nb * ARGMAX_BLOCK; t < n; t++) // the tail after the whole blocks
        if (x[t] > top) {
            top = x[t];
            best = t;
        }
    return best;
}

/*
 * Temperature 0 with nothing to adjust: the first index of the largest logit,
 * read in place (NaN never compares greater, as the -inf it is read as in the
 * general path), in one pass instead of a copy and a second pass.
 */
static int greedy_raw(const sample_seq *s, const float *logits, sample_result *out)
{
    int32_t best = argmax_first(logits, s->n_vocab);
    if (best < 0)
        return ERR_INVAL;
    out->token = best;
    if (s->p.want_logprobs)
        raw_logprobs(s, logits, out);
    return 0;
}

int sample_next(sample_seq *s, sample_scratch *sc, const float *logits, sample_result *out)
{
    ASSERT(sc->n_vocab == s->n_vocab);
    int32_t V = s->n_vocab;
    float *l = sc->l;
    memset(out, 0, sizeof *out);
    if (s->p.temperature == 0.0f && s->n_bias == 0 && !has_penalties(s))
        return greedy_raw(s, logits, out);
    for (int32_t t = 0; t < V; t++)
        l[t] = isnan(logits[t]) ? -INFINITY : logits[t];
    for (size_t i = 0; i < s->n_bias; i++)
        l[s->bias[i].token] += s->bias[i].bias;
    apply_penalties(s, sc);

    if (s->p.temperature == 0.0f) {
        int32_t best = argmax_first(l, V);
        if (best < 0)
            return ERR_INVAL;
        out->token = best;
        if (s->p.want_logprobs)
            raw_logprobs(s, logits, out);
        return 0;
    }

    // candidates: every token with a finite adjusted logit
    int32_t *idx = sc->idx;
    size_t n = 0;
    for (int32_t t = 0; t < V; t++)
        if (l[t] > -INFINITY)
            idx[n++] = t;
    if (n == 0)
        return ERR_INVAL;
    size_t n_sorted = 0;  // idx[0..n_sorted) is sorted by `better`
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        select_top(l, idx, n, (size_t)s->p.top_k);
        n = (size_t)s->p.top_k;
        sort_cands(l, idx, n);
        n_sorted = n;
    }
    float mx = l[idx[0]];
    for (size_t i = 1; i < n; i++)
        if (l[idx[i]] > mx)
            mx = l[idx[i]];
    double inv_t = 1.0 / (double)s->p.temperature;
    /* Each candidate's weight is computed once (an exp per token of the
     * vocabulary was the step's largest serial cost) and kept by token id, so
     * the reorderings below keep it; the sums run in the same order over the
     * same values as before. */
    double *w = sc->w;
    double z = 0;
    for (size_t i = 0; i < n; i++) {
        w[idx[i]] = exp(((double)l[idx[i]] - mx) * inv_t);
        z += w[idx[i]];
    }

    if (s->p.top_p < 1.0f) {
        // grow a sorted prefix until its mass reaches top_p: sorting all of a large
        // vocabulary for every token would dominate the step
        double target = (double)s->p.top_p * z, cum = 0;
        size_t keep = n, i = 0, chunk = 64;
        while (i < n) {
            if (i >= n_sorted) {
                size_t m = n - n_sorted < chunk ? n - n_sorted : chunk;
                select_top(l, idx + n_sorted, n - n_sorted, m);
                sort_cands(l, idx + n_sorted, m);
                n_sorted += m;
                chunk *= 4;
            }
            cum += w[idx[i]];
            i++;
            if (cum >= target) {
                keep = i;
                break;
            }
        }
        n = keep;
    }
    if (s->p.min_p > 0.0f) {
        // p >= min_p * p_max  <=>  l >= mx + T * log(min_p), kept in order
        double floor_l = (double)mx + (double)s->p.temperature * log((double)s->p.min_p);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if ((double)l[idx[i]] >= floor_l)
                idx[kept++] = idx[i];
        n = kept;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += w[idx[i]];
    double u = rng_uniform(s->rng) * sum, cum = 0;
    int32_t pick = idx[n - 1];
    for (size_t i = 0; i < n; i++) {
        cum += w[idx[i]];
        if (u < cum) {
            pick = idx[i];
            break;
        }
    }
    out->token = pick;
    if (s->p.want_logprobs)
        raw_logprobs(s, logits, out);
    return 0;
}

/* ---- stop strings ---- */

/* Length of the longest suffix of p[0..n) that is a proper prefix of a stop string. */
static size_t partial_stop_suffix(const sample_seq *s, const char *p, size_t n)
{
    size_t best = 0;
    for (size_t k = 0; k < s->n_stop; k++) {
        size_t m = s->stop_len[k] - 1 < n ? s->stop_len[k] - 1 : n;
        for (size_t len = m; len > best; len--)
            if (memcmp(p + n - len, s->stop[k], len) == 0) {
                best = len;
                break;
            }
    }
    return best;
}

int sample_accept(sample_seq *s, int32_t token, const char *text, size_t n, char *out,
                  size_t out_cap, size_t *out_n)
{
    *out_n = 0;
    if (s->is_finished || token < 0 || token >= s->n_vocab)
        return ERR_INVAL;
    if (out_cap < n || out_cap - n < SAMPLE_STOP_BYTES_MAX)
        return ERR_INVAL;
    s->gen[s->n_gen++] = token;
    // pending = held ++ text, built in out
    memcpy(out, s->held, s->n_held);
    if (n)
        memcpy(out + s->n_held, text, n);
    size_t pn = s->n_held + n;
    s->n_held = 0;
    if (s->n_stop) {
        size_t first = SIZE_MAX;
        for (size_t k = 0; k < s->n_stop; k++) {
            size_t sl = s->stop_len[k];
            for (size_t i = 0; i + sl <= pn && i < first; i++)
                if (memcmp(out + i, s->stop[k], sl) == 0) {
                    first = i;
                    break;
                }
        }
        if (first != SIZE_MAX) {
            *out_n = first;
            s->is_finished = true;
            return SAMPLE_STOP;
        }
        if (s->n_gen < s->p.max_tokens) {
            size_t h = partial_stop_suffix(s, out, pn);
            memcpy(s->held, out + pn - h, h);
            s->n_held = h;
            pn -= h;
        }
    }
    *out_n = pn;
    if (s->n_gen >= s->p.max_tokens) {
        s->is_finished = true;
        return SAMPLE_LENGTH;
    }
    return SAMPLE_CONTINUE;
}

size_t sample_flush(sample_seq *s, char *out, size_t out_cap)
{
    size_t n = s->n_held < out_cap ? s->n_held : out_cap;
    memcpy(out, s->held, n);
    s->n_held = 0;
    s->is_finished = true;
    return n;
}
