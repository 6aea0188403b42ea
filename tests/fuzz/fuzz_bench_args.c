// FUZZ_MODULES: base
// FUZZ_SOURCES: src/cli/benchargs.c
// FUZZ_SECONDS: 10
// FUZZ_LIBS: jansson
/*
 * The parsers of `ferry bench` (src/cli/benchargs.h) on arbitrary bytes. The
 * first byte (mod 7) picks the parser, the rest is its input:
 *   0  the --prompts JSONL parser (benchargs_prompts_parse)
 *   1  a length spec "L" / "MEAN:STDDEV" (benchargs_len)
 *   2  a --concurrency list (benchargs_loads, integers)
 *   3  a --rate list (benchargs_loads, rates)
 *   4  an --slo spec (benchargs_slo)
 *   5  a price (benchargs_money)
 *   6  an SSE data payload (benchargs_chunk_scan), differentially: it must
 *      accept exactly what jansson accepts as an object and read the same
 *      error / content / usage as the jansson code it replaced (reference()
 *      below, the load loop's former on_event)
 * Each must refuse bad input with an error code and a message, never crash,
 * leak or read out of bounds, and what it accepts must satisfy the documented
 * bounds (checked below). Only benchargs.c is linked (the cli module is the
 * whole program).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/benchargs.h"

static void check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static void fuzz_prompts(const char *d, size_t n)
{
    benchargs_prompts pf = {0};
    err_msg e = {0};
    int rc = benchargs_prompts_parse(&pf, "fuzz.jsonl", d, n, &e);
    if (rc != 0) {
        check(rc < 0 && e.text[0] != 0);
    } else {
        check(pf.n >= 1 && pf.n <= BENCH_PROMPTS_MAX);
    }
    // Accepted lines (all of them on success, those before the bad one on error).
    for (size_t i = 0; i < pf.n; i++) {
        json_t *m = pf.msgs[i];
        check(json_is_array(m) && json_array_size(m) >= 1 &&
              json_array_size(m) <= BENCH_MESSAGES_MAX);
        for (size_t k = 0; k < json_array_size(m); k++)
            check(json_is_string(json_object_get(json_array_get(m, k), "role")));
        check(pf.max_tokens[i] >= 0 && pf.max_tokens[i] <= (int64_t)BENCH_LEN_MAX);
        // What make_body does with it: copy and serialize.
        json_t *c = json_copy(m);
        char *s = json_dumps(c, JSON_COMPACT);
        check(c != NULL && s != NULL);
        free(s);
        json_decref(c);
    }
    benchargs_prompts_free(&pf);
    check(pf.n == 0 && pf.msgs == NULL && pf.max_tokens == NULL);
}

static void fuzz_len(const char *v)
{
    double m = -3, sd = -3;
    err_msg e = {0};
    if (benchargs_len("--input-len", v, &m, &sd, &e) != 0) {
        check(m == -3 && sd == -3 && e.text[0] != 0);
        return;
    }
    check(m >= 1 && m <= BENCH_LEN_MAX && sd >= 0 && sd <= BENCH_LEN_MAX);
}

static void fuzz_loads(const char *v, bool is_integer)
{
    double l[BENCH_POINTS_MAX];
    size_t n = 12345;
    err_msg e = {0};
    if (benchargs_loads(is_integer ? "--concurrency" : "--rate", v, is_integer, l, &n, &e) != 0) {
        check(n == 12345 && e.text[0] != 0);
        return;
    }
    check(n >= 1 && n <= BENCH_POINTS_MAX);
    for (size_t i = 0; i < n; i++) {
        check(l[i] > 0 && isfinite(l[i]));
        if (is_integer)
            check(l[i] == floor(l[i]) && l[i] <= BENCH_CONC_MAX);
        else
            check(l[i] <= BENCH_RATE_MAX);
    }
}

static void fuzz_slo(const char *v)
{
    bench_slo s = {.is_set = false, .ttft_ms = 1, .tpot_ms = 2, .e2e_ms = 3};
    err_msg e = {0};
    if (benchargs_slo(v, &s, &e) != 0) {
        check(!s.is_set && s.ttft_ms == 1 && e.text[0] != 0);
        return;
    }
    check(s.is_set);
    size_t given = 0;
    double b[3] = {s.ttft_ms, s.tpot_ms, s.e2e_ms};
    for (int i = 0; i < 3; i++) {
        if (isnan(b[i]))
            continue;
        given++;
        check(b[i] >= 0 && b[i] <= 86400e3);
    }
    check(given >= 1);
}

/* The former on_event of cmd_bench.c, on jansson: the oracle. */
static int reference(const char *d, size_t n, bench_chunk *out)
{
    json_t *v = json_loadb(d, n, 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return ERR_FORMAT;
    }
    out->has_error = json_object_get(v, "error") != NULL;
    out->prompt_tokens = out->completion_tokens = -1;
    json_t *u = json_object_get(v, "usage");
    if (json_is_object(u)) {
        json_t *pt = json_object_get(u, "prompt_tokens");
        json_t *ct = json_object_get(u, "completion_tokens");
        if (json_is_integer(pt))
            out->prompt_tokens = json_integer_value(pt);
        if (json_is_integer(ct))
            out->completion_tokens = json_integer_value(ct);
    }
    json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
    json_t *dl = json_object_get(ch, "delta");
    json_t *c = json_object_get(dl, "content"), *r = json_object_get(dl, "reasoning_content");
    json_t *t = json_object_get(ch, "text");
    out->has_content = (json_is_string(c) && json_string_length(c) > 0) ||
                       (json_is_string(r) && json_string_length(r) > 0) ||
                       (json_is_string(t) && json_string_length(t) > 0);
    json_decref(v);
    return 0;
}

static void fuzz_chunk(const char *d, size_t n)
{
    bench_chunk a = {0}, b = {0};
    int ra = benchargs_chunk_scan(d, n, &a), rb = reference(d, n, &b);
    if (memchr(d, '\0', n)) {
        // jansson's buffer lexer lets a NUL byte pass after a number ("1\0,"),
        // which JSON forbids; the scanner refuses it. Only "no crash" here.
        return;
    }
    check(ra == rb);
    if (ra == 0)
        check(a.has_error == b.has_error && a.has_content == b.has_content &&
              a.prompt_tokens == b.prompt_tokens && a.completion_tokens == b.completion_tokens);
}

static void fuzz_money(const char *v)
{
    double x = -5;
    err_msg e = {0};
    if (benchargs_money("--price-in", v, &x, &e) != 0) {
        check(x == -5 && e.text[0] != 0);
        return;
    }
    check(x >= 0 && isfinite(x));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int mode = data[0] % 7;
    data++;
    size--;
    if (mode == 0) {
        fuzz_prompts((const char *)data, size);
        return 0;
    }
    if (mode == 6) { // the raw bytes, not NUL-terminated
        char *raw = malloc(size ? size : 1);
        if (!raw)
            return 0;
        memcpy(raw, data, size);
        fuzz_chunk(raw, size);
        free(raw);
        return 0;
    }
    // The flag parsers take NUL-terminated text, as argv gives (a NUL inside ends it).
    char *t = malloc(size + 1);
    if (!t)
        return 0;
    memcpy(t, data, size);
    t[size] = 0;
    if (mode == 1)
        fuzz_len(t);
    else if (mode == 2 || mode == 3)
        fuzz_loads(t, mode == 2);
    else if (mode == 4)
        fuzz_slo(t);
    else
        fuzz_money(t);
    free(t);
    return 0;
}
