/*
 * cli/cmd_eval — the pieces of `ferry eval` (internal to cli/; the user
 * guide is docs/eval.md):
 *
 *   cmd_eval_data.c    the JSONL case loader (line-numbered errors) and the
 *                      assertion checks that need no network
 *   cmd_eval_schema.c  the JSON Schema subset of `json-schema`
 *   cmd_eval_gate.c    --gate parsing and evaluation
 *   cmd_eval_parse.c   flag values (endpoints, --params, --price) and the
 *                      answers read from the network (completion, embeddings,
 *                      judge, error body); fuzzed by tests/fuzz/fuzz_eval_args.c
 *   cmd_eval_sum.c     per-target, per-tag and paired summaries of the runs
 *   cmd_eval_html.c    the --html report, drawn from the JSON report
 *   cmd_eval.c         the command: targets, HTTP runs, similar and judge
 *                      calls, reports (text, --json, --html)
 *
 * Ownership: an eval_set owns every case, string, JSON value and compiled
 * regex it holds; eval_set_free releases all. Nothing here is shared between
 * threads: eval runs all of its requests from one thread.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/buf.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define EVAL_LINE_MAX ((size_t)4 << 20) // bytes of one JSONL line
#define EVAL_CASES_MAX 1000000          // cases in one data file
#define EVAL_ASSERTS_MAX 64             // assertions of one case
#define EVAL_TAGS_MAX 32                // tags of one case
#define EVAL_TAG_BYTES 128              // bytes of one tag
#define EVAL_SCHEMA_DEPTH 32            // nesting of a json-schema
#define EVAL_DETAIL_MAX 320             // bytes of one assertion's explanation
#define EVAL_NAME_MAX 63                // bytes of a --target NAME
#define EVAL_EMBED_DIM_MAX 65536        // components of one embedding
#define EVAL_REASON_MAX 300             // bytes of the judge's reason kept

typedef enum eval_kind {
    EVAL_EQUALS,
    EVAL_CONTAINS,
    EVAL_ICONTAINS,
    EVAL_NOT_CONTAINS,
    EVAL_REGEX,
    EVAL_JSON_VALID,
    EVAL_JSON_SCHEMA,
    EVAL_MAX_LATENCY_MS,
    EVAL_MAX_TOKENS,
    EVAL_SIMILAR,
    EVAL_JUDGE,
    EVAL_KIND_COUNT
} eval_kind;

/* The assertion type's name in the data ("not-contains"). */
const char *eval_kind_name(eval_kind k);

typedef struct eval_assert {
    eval_kind kind;
    char *value;      // text (equals, contains, icontains, not-contains, regex, judge rubric,
                      // similar's reference when given); NULL otherwise
    size_t value_len; // bytes of value (may hold NULs only for equals/contains)
    double num;       // max-latency-ms, max-tokens, similar's threshold
    json_t *schema;   // json-schema (owned)
    pcre2_code *re;   // regex, compiled at load (owned)
} eval_assert;

typedef struct eval_case {
    size_t line;      // 1-based line in the data file
    char *id;         // "id" field, or "line N"
    json_t *messages; // chat messages (owned), or NULL when prompt is used
    char *prompt;     // completion prompt, or NULL
    char *reference;  // optional reference answer
    json_t *params;   // optional object merged into the request body (owned)
    eval_assert *asserts;
    size_t n_asserts;
    char **tags;
    size_t n_tags;
    bool needs_embed, needs_judge;
} eval_case;

typedef struct eval_set {
    eval_case *cases;
    size_t n;
} eval_set;

/*
 * Loads a JSONL data file (format in docs/eval.md). Blank lines are skipped.
 * Returns 0 and fills out (eval_set_free), or ERR_IO / ERR_FORMAT /
 * ERR_TOO_LARGE with e reading "PATH:LINE: what is wrong" for the first bad
 * line. A file without cases is ERR_FORMAT.
 */
int eval_load_file(const char *path, eval_set *out, err_msg *e) MUST_USE;
/* The same on text in memory; name stands for the path in messages. */
int eval_load_text(const char *name, const char *text, size_t len, eval_set *out,
                   err_msg *e) MUST_USE;
/* Frees everything the set holds and zeroes it. NULL or zeroed ok. */
void eval_set_free(eval_set *s);

/* What a target answered for one case run. */
typedef struct eval_output {
    const char *text; // the answer (NUL-terminated)
    size_t len;
    double latency_ms;         // end to end, client side
    int64_t completion_tokens; // from usage; -1 when the server sent none
} eval_output;

/*
 * Checks one assertion that needs no network (every kind but similar and
 * judge) against an output. Returns true when it passes; on failure writes
 * one sentence into detail (capacity cap) naming what was expected.
 */
bool eval_check_local(const eval_assert *a, const eval_output *o, char *detail, size_t cap);

/*
 * Validates a json-schema at load: only the documented subset (type,
 * required, properties, enum, items, plus the annotations title,
 * description, $schema, $id, default, examples) is accepted, so a schema
 * never silently checks less than it says. Returns 0 or ERR_FORMAT with e.
 */
int eval_schema_compile(const json_t *schema, err_msg *e) MUST_USE;
/*
 * Checks value v against a schema accepted by eval_schema_compile. Returns
 * true when it conforms; else writes the first violation with its JSON
 * path ("$.items[2].name: expected string, got number") into detail.
 */
bool eval_schema_check(const json_t *schema, const json_t *v, char *detail, size_t cap);

/*
 * Cuts an incomplete UTF-8 sequence off the end of s (left by a truncating
 * snprintf or strndup), so that the text is valid for JSON. Returns s.
 */
char *eval_utf8_trim(char *s);

/*
 * Reads a judge's answer: after leading whitespace and Markdown marks
 * (* _ # ` " ' >), the word PASS or FAIL (any case) not followed by a letter
 * or digit. Returns 1 (PASS), 0 (FAIL) or -1 (neither); *reason points into
 * text after the verdict and separators (: - . , whitespace and marks).
 */
int eval_judge_verdict(const char *text, const char **reason);

/* --------------------------------------------------------- flag values -- */

/* An endpoint spec "URL,MODEL[,KEY]" (--target after NAME=, --embed, --judge). */
typedef struct eval_endpoint_spec {
    char *url;   // API root, trailing '/' removed (owned)
    char *model; // owned
    char *key;   // owned; NULL when none
} eval_endpoint_spec;

/*
 * Parses "URL,MODEL[,KEY]": URL http:// or https:// with a host, MODEL
 * non-empty, KEY optional, "$VAR" reading the environment variable VAR
 * (unset or empty is an error). flag names the option in e. Fills *out
 * (free with eval_endpoint_spec_free; zeroed on error). Returns 0, ERR_INVAL
 * or ERR_NOMEM.
 */
int eval_endpoint_parse(const char *flag, const char *spec, eval_endpoint_spec *out,
                        err_msg *e) MUST_USE;
void eval_endpoint_spec_free(eval_endpoint_spec *s);
/*
 * The NAME of "NAME=URL,MODEL[,KEY]": 1..EVAL_NAME_MAX bytes of letters,
 * digits, '-', '_', '.'; its length in *name_len (the spec after it starts at
 * spec + *name_len + 1). Returns 0 or ERR_INVAL.
 */
int eval_target_name(const char *spec, size_t *name_len, err_msg *e) MUST_USE;
/*
 * A JSON object of extra request fields (--params, --judge-params): no
 * duplicate keys, none of model/messages/prompt/stream/n. Merged into *out
 * (a new object when *out is NULL; *out owned by the caller). Returns 0,
 * ERR_INVAL or ERR_NOMEM; *out unchanged on error.
 */
int eval_params_parse(const char *flag, const char *text, json_t **out, err_msg *e) MUST_USE;
/* "IN,OUT": two prices in [0, 1e9] USD per 1M tokens. Returns 0 or ERR_INVAL. */
int eval_price_parse(const char *spec, double *in, double *out, err_msg *e) MUST_USE;

/* ------------------------------------------------------------- answers -- */

typedef struct eval_answer {
    char *text;                               // choices[0] text, "" for null (owned)
    int64_t prompt_tokens, completion_tokens; // usage, -1 when absent or negative
} eval_answer;

/*
 * A completion answer (is_chat: choices[0].message.content, else
 * choices[0].text; a string or null) and its usage. Fills *out (out->text
 * to free). Returns 0, ERR_FORMAT ("the answer has no choices[0] text") or
 * ERR_NOMEM.
 */
int eval_answer_parse(const char *body, size_t len, bool is_chat, eval_answer *out,
                      err_msg *e) MUST_USE;
/*
 * An /embeddings answer for [output, reference]: data[] items with index 0
 * and 1 (each at most once; other indices ignored), two arrays of the same
 * length 1..EVAL_EMBED_DIM_MAX of numbers within float range. *xy gets the
 * 2n floats (x then y; malloc'd), *n the length. Returns 0, ERR_FORMAT or
 * ERR_NOMEM.
 */
int eval_embeddings_parse(const char *body, size_t len, float **xy, size_t *n, err_msg *e) MUST_USE;
/*
 * The judge's chat answer: *verdict from eval_judge_verdict on
 * choices[0].message.content, *reason its first EVAL_REASON_MAX bytes after
 * the verdict, never a cut UTF-8 sequence (malloc'd). Returns 0, ERR_FORMAT
 * (no message content) or ERR_NOMEM.
 */
int eval_judge_answer_parse(const char *body, size_t len, int *verdict, char **reason,
                            err_msg *e) MUST_USE;
/*
 * The message of an HTTP error body: error.message when the body is such
 * JSON, else the first 200 bytes of the body; valid UTF-8 either way (bad
 * bytes become '?'), at most cap-1 bytes, in out. Returns out.
 */
const char *eval_error_message(const char *body, size_t len, char *out, size_t cap);

/* ------------------------------------------------------------- gates -- */

typedef enum eval_metric {
    EVAL_M_PASS_RATE,     // passed runs / runs
    EVAL_M_PASS_RATE_LO,  // lower end of the Wilson 95% interval
    EVAL_M_P50_MS,        // latency median, ms
    EVAL_M_P99_MS,        // latency 99th percentile, ms
    EVAL_M_COST,          // total cost of the runs
    EVAL_M_COST_PER_1K,   // cost per 1000 completion tokens
    EVAL_M_COST_PER_CASE, // cost per run
    EVAL_M_ERRORS,        // runs that got no answer
    EVAL_M_COUNT
} eval_metric;

typedef enum eval_op { EVAL_GE, EVAL_LE, EVAL_GT, EVAL_LT } eval_op;

typedef struct eval_gate {
    eval_metric metric;
    eval_op op;
    double limit;
    char text[96]; // the gate as written, trimmed
} eval_gate;

#define EVAL_GATES_MAX 32

/* The metric's name in --gate ("p99_ms"); "?" for values out of range. */
const char *eval_metric_name(eval_metric m);
/*
 * Parses a comma-separated gate list ("pass_rate>=0.9,p99_ms<=2000"),
 * appending to g[*n] (capacity EVAL_GATES_MAX). Returns 0 or ERR_INVAL with
 * e naming the bad gate and the accepted metrics and operators.
 */
int eval_gates_parse(const char *spec, eval_gate *g, size_t *n, err_msg *e) MUST_USE;
/* True when value satisfies the gate (NaN never does). */
bool eval_gate_ok(const eval_gate *g, double value);

/* ----------------------------------------------------------- summary -- */

/* One run: case c on target t, repeat r (index (c * n_targets + t) * repeat + r). */
typedef struct eval_run {
    bool done, pass, error;
    double latency_ms;
    int64_t prompt_tokens, completion_tokens; // -1 unknown
    char *output;                             // owned, NULL on error
    char *fail_detail;                        // owned: "contains: ..." or the error; NULL on pass
    json_t *assert_results;                   // owned array of {type, pass, detail?, score?}
} eval_run;

typedef struct eval_tag_sum {
    char *tag; // borrowed from the set
    size_t runs, passed;
    double rate, lo, hi; // pass rate and its 95% interval (as the target's)
    double n_eff;        // effective sample size of the interval
} eval_tag_sum;

typedef struct eval_target_sum {
    size_t runs, passed, errors;
    double rate, lo, hi;            // pass rate and its 95% interval, clustered by case
    double n_eff;                   // effective sample size behind lo, hi (runs when repeat 1)
    double p50_ms, p99_ms, mean_ms; // over runs that got an answer
    int64_t prompt_tokens, completion_tokens;
    double cost, cost_per_1k, cost_per_case;
    eval_tag_sum *tags; // n_tags entries, sorted by tag
    size_t n_tags;
} eval_target_sum;

typedef struct eval_pair_sum {
    size_t a, b;                   // target indices
    size_t cases, won, lost, tied; // by per-case pass share of a vs b
    size_t only_a, only_b;         // discordant cases by majority pass (McNemar's b and c)
    double p_value;                // McNemar exact, two-sided
    double diff;                   // pass rate of a minus pass rate of b (case mean)
    double lo, hi;                 // bootstrap 95% interval of diff
    size_t resamples;
    uint64_t seed;
} eval_pair_sum;

typedef struct eval_prices {
    double in_per_m, out_per_m; // price per 1M prompt / completion tokens
} eval_prices;

/*
 * Summarizes target t over runs (layout above). Fills *out (its tags array
 * is malloc'd; free with eval_target_sum_deinit). Returns 0 or ERR_NOMEM.
 */
int eval_summarize_target(const eval_set *s, const eval_run *runs, size_t n_targets, size_t t,
                          size_t repeat, const eval_prices *price, eval_target_sum *out) MUST_USE;
/* Frees the tags array of a summary filled by eval_summarize_target. */
void eval_target_sum_deinit(eval_target_sum *ts);
/*
 * Pairs targets a and b case by case: each case's score on a target is its
 * share of passed repeats. won/lost/tied compare the scores; a case counts
 * as passed for McNemar when more than half of its repeats passed; the
 * bootstrap resamples cases (evalstats_bootstrap_diff). Only cases whose
 * runs on both targets are all done count. Returns 0, ERR_NOT_FOUND (no
 * complete case), ERR_INVAL or ERR_NOMEM.
 */
int eval_pair(const eval_set *s, const eval_run *runs, size_t n_targets, size_t a, size_t b,
              size_t repeat, size_t resamples, uint64_t seed, eval_pair_sum *out) MUST_USE;
/* The value of a gate's metric in a target summary. */
double eval_metric_value(const eval_target_sum *ts, eval_metric m);

/* ------------------------------------------------------------- html -- */

/*
 * Writes the self-contained HTML report (cli/report.h: tables and inline SVG
 * charts, no script, nothing fetched at view time) for a JSON report as
 * `--json` writes it, to path (through path.tmp, renamed when complete).
 * Returns 0, or ERR_NOMEM / ERR_TOO_LARGE / ERR_IO with e naming the problem.
 */
int eval_write_html(const json_t *rep, const char *path, err_msg *e) MUST_USE;
