/*
 * cli/benchargs — the parsers of `ferry bench`'s flag values and of its
 * --prompts file, apart from the load loop so that they can be unit-tested
 * and fuzzed alone (tests/unit/test_cli_benchargs.c,
 * tests/fuzz/fuzz_bench_args.c). docs/bench.md is the user guide.
 *
 *   length    "L" or "MEAN:STDDEV"          --input-len, --output-len
 *   loads     "1,4,16" (integers) or "2,0.5,10" (rates)   --concurrency, --rate
 *   slo       "ttft=500ms,tpot=50ms,e2e=10s" (any non-empty subset, each once)
 *   money     a non-negative number         --price-in, --price-out, --hourly-cost
 *   prompts   JSONL, one {"messages": [...]} or {"prompt": "..."} per line,
 *             optional "max_tokens"; blank lines skipped
 *
 * Every parser takes NUL-terminated text (the prompts parser a byte range),
 * refuses anything it does not fully understand with ERR_INVAL / ERR_FORMAT /
 * ERR_TOO_LARGE and one sentence in the caller's err_msg naming the value,
 * never truncates silently, and leaves its outputs untouched on error unless
 * said otherwise. Pure functions (no globals, no I/O except
 * benchargs_prompts_load), safe on any thread.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define BENCH_LEN_MAX 1000000.0          // longest synthetic prompt / answer, words or tokens
#define BENCH_CONC_MAX 4096              // largest --concurrency value
#define BENCH_RATE_MAX 1e6               // largest --rate value, requests/s
#define BENCH_POINTS_MAX 64              // values in one --concurrency / --rate sweep
#define BENCH_ARG_MAX 1023               // bytes of one list or SLO flag value
#define BENCH_PROMPTS_MAX 1000000        // lines of a --prompts file
#define BENCH_LINE_MAX ((size_t)4 << 20) // bytes of one --prompts line
#define BENCH_MESSAGES_MAX 4096          // messages of one --prompts line

/* Goodput bounds: NaN where --slo gives none. */
typedef struct bench_slo {
    bool is_set;
    double ttft_ms, tpot_ms, e2e_ms; // NaN: no bound on that metric
} bench_slo;

/*
 * "L" or "MEAN:STDDEV": 1 <= MEAN <= BENCH_LEN_MAX, 0 <= STDDEV <=
 * BENCH_LEN_MAX (STDDEV 0 when not given). flag names the flag in the error.
 * Returns 0 or ERR_INVAL.
 */
int benchargs_len(const char *flag, const char *v, double *mean, double *sd, err_msg *e) MUST_USE;

/*
 * A comma-separated list of 1..BENCH_POINTS_MAX positive numbers into
 * loads[0..*n): integers in 1..BENCH_CONC_MAX when is_integer (--concurrency),
 * else rates in (0, BENCH_RATE_MAX]. No empty item, no spaces. loads must hold
 * BENCH_POINTS_MAX values. Returns 0 or ERR_INVAL.
 */
int benchargs_loads(const char *flag, const char *v, bool is_integer, double *loads, size_t *n,
                    err_msg *e) MUST_USE;

/*
 * "ttft=DUR,tpot=DUR,e2e=DUR", any non-empty subset in any order, each key at
 * most once; DUR as parse_duration_ns ("500ms", "2s", bare seconds), at most
 * a day. Sets s (is_set true, NaN for the bounds not given). Returns 0 or
 * ERR_INVAL.
 */
int benchargs_slo(const char *v, bench_slo *s, err_msg *e) MUST_USE;

/* A finite number >= 0 (USD). Returns 0 or ERR_INVAL. */
int benchargs_money(const char *flag, const char *v, double *out, err_msg *e) MUST_USE;

/* The prompts of a --prompts file. */
typedef struct benchargs_prompts {
    json_t **msgs;       // (n) arrays of chat messages (owned references)
    int64_t *max_tokens; // (n) per line, 0 when the line gives none
    size_t n, cap;
} benchargs_prompts;

/*
 * Adds one line (len bytes, no NUL needed; trailing CR/LF and surrounding
 * whitespace ignored; a blank line adds nothing) to pf. The line is
 * {"messages": [...]} — 1..BENCH_MESSAGES_MAX objects, each with a string
 * "role" — or {"prompt": "..."} (one user message); an optional "max_tokens"
 * is an integer in 1..BENCH_LEN_MAX. name and lineno label the error.
 * Returns 0, or ERR_FORMAT, ERR_TOO_LARGE (line past BENCH_LINE_MAX, more
 * than BENCH_PROMPTS_MAX prompts) or ERR_NOMEM; pf is unchanged on error.
 */
int benchargs_prompts_add_line(benchargs_prompts *pf, const char *name, size_t lineno,
                               const char *line, size_t len, err_msg *e) MUST_USE;

/*
 * Parses a whole JSONL text (len bytes, '\n'-separated) into pf, which must
 * be zeroed. At least one prompt is required. Returns 0 or the first line's
 * error; on error pf holds what was read before it (free it either way).
 */
int benchargs_prompts_parse(benchargs_prompts *pf, const char *name, const char *text, size_t len,
                            err_msg *e) MUST_USE;

/*
 * Reads the file at path into pf (zeroed) as benchargs_prompts_parse, in
 * 64 KiB pieces with at most BENCH_LINE_MAX + 1 bytes of a line held (a
 * longer line is refused by number, not read whole). ERR_IO if unreadable.
 */
int benchargs_prompts_load(benchargs_prompts *pf, const char *path, err_msg *e) MUST_USE;

/* Releases what pf holds and zeroes it. */
void benchargs_prompts_free(benchargs_prompts *pf);

/* What ferry bench needs from one SSE data line of a streamed answer. */
typedef struct bench_chunk {
    bool has_error;   // the object has an "error" member (any value)
    bool has_content; // choices[0].delta.content, choices[0].delta.reasoning_content or
                      // choices[0].text is a non-empty string
    int64_t prompt_tokens, completion_tokens; // usage.* when integers, else -1
} bench_chunk;

/*
 * Reads one SSE data payload (len bytes) without building a JSON tree: the
 * per-chunk hot path of the load loop (jansson's decode was half of the
 * client's CPU). It accepts exactly what json_loadb(p, len, 0) accepts and
 * is a JSON object — RFC 8259 with jansson's limits: strings valid UTF-8 with
 * no \u0000 and no lone surrogate escape, integers within int64, reals
 * within double range, nesting at most 2048 — and reads each member the way
 * json_object_get does (a key given twice: the last one counts).
 * tests/fuzz/fuzz_bench_args.c checks it against jansson on arbitrary bytes.
 * Returns 0 with *out filled, or ERR_FORMAT (not such an object).
 */
int benchargs_chunk_scan(const char *p, size_t len, bench_chunk *out) MUST_USE;
