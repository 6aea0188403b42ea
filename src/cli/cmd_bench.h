/*
 * cli/cmd_bench — internals shared by the files of `ferry bench`
 * (docs/bench.md is the user guide and the JSON schema):
 *   cmd_bench.c          flags, prompts, the load loop (closed and open), SIGINT
 *   benchargs.c          the parsers of flag values and of --prompts (fuzzed alone)
 *   cmd_bench_out.c      per-point statistics, console table, JSON and HTML output
 *   cmd_bench_compare.c  `ferry bench compare A.json B.json ...`
 *
 * Data: a bench_run holds the points of the sweep; a bench_point holds one
 * bench_rec per request that was sent (in submission order) and every
 * inter-token gap of its successful requests. Times are milliseconds.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "cli/benchargs.h"

#define BENCH_ITL_MAX ((size_t)20 << 20) // gaps kept per point (160 MiB of doubles)

/* Why a request did not count as a success (the JSON "errors" keys). */
typedef enum bench_err {
    BENCH_OK = 0,
    BENCH_E_CONNECT,
    BENCH_E_TIMEOUT,
    BENCH_E_HTTP,
    BENCH_E_PARSE,
    BENCH_E_TOO_LARGE,
    BENCH_E_IO,
    BENCH_E_STREAM,    // the server sent an error object inside the stream
    BENCH_E_CANCELLED, // cut by Ctrl-C
    BENCH_E_COUNT
} bench_err;

const char *bench_err_name(bench_err e);

typedef struct bench_rec {
    double t_start_ms; // submit time from the start of the point
    double ttft_ms;    // first content chunk (stream) or whole answer (no stream); NaN if none
    double e2e_ms;
    double tpot_ms; // (e2e - ttft) / (output_tokens - 1); NaN when < 2 tokens or no stream
    double itl_max_ms;
    size_t n_chunks;       // chunks that carried content
    int64_t prompt_tokens; // from usage; -1 when the server gave none
    int64_t output_tokens; // usage.completion_tokens, else n_chunks
    bool has_usage;
    bool is_done; // finished (any outcome)
    bench_err err;
    long status;
    size_t itl_from, itl_n; // this request's gaps in the point's itl[]
} bench_rec;

typedef struct bench_point {
    bool is_open; // open loop (rate) or closed loop (concurrency)
    double load;  // concurrency or requests/s
    bool interrupted;
    double duration_s; // start of the point to its last completion (or the interrupt)
    bench_rec *recs;
    size_t n_recs, cap_recs;
    double *itl;
    size_t n_itl, cap_itl;
    bool itl_truncated;
} bench_point;

typedef struct bench_cfg {
    const char *url, *model, *api_key;
    bool is_stream, ignore_eos;
    double in_mean, in_sd, out_mean, out_sd; // synthetic lengths
    size_t shared_prefix;
    const char *prompts_file;
    uint64_t seed;
    int64_t num_requests; // 0: not bounded by count
    double duration_s;    // 0: not bounded by time
    double timeout_s;
    bench_slo slo;
    double price_in, price_out, hourly; // NaN when not given
    bool is_open;
    double loads[BENCH_POINTS_MAX];
    size_t n_loads;
    double temperature; // NaN: not sent
} bench_cfg;

typedef struct bench_run {
    bench_cfg cfg;
    char *command; // the full command line
    char started_at[32];
    json_t *server_models; // the /v1/models answer (owned), or NULL
    bench_point points[BENCH_POINTS_MAX];
    size_t n_points;
    bool interrupted;
} bench_run;

/* Percentile summary of v[0..n) (sorted in place): NaN fields when n == 0. */
typedef struct bench_dist {
    size_t n;
    double mean, p50, p90, p99, min, max;
} bench_dist;

void bench_dist_of(double *v, size_t n, bench_dist *d);
/* Linear interpolation between closest ranks of sorted v (numpy's default). */
double bench_quantile(const double *sorted, size_t n, double q);

/* The summary of one point, as written to JSON and the console. */
typedef struct bench_summary {
    size_t total, ok, failed, cancelled;
    size_t errors[BENCH_E_COUNT];
    int64_t in_tokens, out_tokens;
    const char *token_source; // "usage", "chunks", "mixed" or "none"
    double req_per_s, out_tok_per_s, in_tok_per_s;
    bench_dist ttft, itl, tpot, e2e;
    size_t good;
    double good_share, good_rate;
    double cost_total, cost_per_req, cost_per_1k_out; // NaN without prices
} bench_summary;

/* Computes s from p (allocates and frees scratch). Returns 0 or ERR_NOMEM. */
int bench_summarize(const bench_run *run, const bench_point *p, bench_summary *s);

/* Prints the per-point table to f. */
void bench_print_table(const bench_run *run, FILE *f);
/* Writes the JSON report to path (0, or ERR_IO / ERR_NOMEM with e set). */
int bench_write_json(const bench_run *run, const char *path, err_msg *e);
/* Writes the HTML report to path. */
int bench_write_html(const bench_run *run, const char *path, err_msg *e);
/* Writes buf b to path (temporary name + rename). */
int bench_write_file(const char *path, const buf *b, err_msg *e);

/* `ferry bench compare ...` (argv[0] = "compare"). */
int bench_compare_main(int argc, char **argv);
