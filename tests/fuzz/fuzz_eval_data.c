// FUZZ_MODULES: base
// FUZZ_SOURCES: src/cli/cmd_eval_data.c src/cli/cmd_eval_schema.c src/cli/cmd_eval_gate.c
// FUZZ_SECONDS: 15
// FUZZ_LIBS: jansson libpcre2-8 libutf8proc
/*
 * The parsers of `ferry eval` on arbitrary bytes. The first byte (mod 4)
 * picks the parser, the rest is its input:
 *   0  the JSONL case loader (eval_load_text); every case it accepts then
 *      has each of its local assertions checked against an answer taken from
 *      the case itself, so the loaded values (compiled regexes, schemas,
 *      numbers) are exercised, not just parsed
 *   1  the --gate list (eval_gates_parse)
 *   2  a json-schema (first line) and a value (the rest): eval_schema_compile,
 *      then eval_schema_check when the schema is accepted
 *   3  the judge verdict reader (eval_judge_verdict), then the UTF-8-safe
 *      cut of the reason it returns (eval_utf8_trim)
 * Each must refuse bad input with an error (message set), never crash,
 * leak or read out of bounds; the invariants below hold on success.
 * The cli module is not linked whole (it is the entire program): run.sh
 * compiles just the three eval source files named above.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_eval.h"

static void check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static void fuzz_load(const uint8_t *d, size_t n)
{
    eval_set s;
    err_msg e = {0};
    int rc = eval_load_text("fuzz.jsonl", (const char *)d, n, &s, &e);
    if (rc != 0) {
        check(rc < 0 && e.text[0] != 0 && s.n == 0 && s.cases == NULL);
        return;
    }
    check(s.n > 0);
    for (size_t i = 0; i < s.n; i++) {
        const eval_case *c = &s.cases[i];
        check(c->id != NULL && c->line >= 1);
        check((c->messages != NULL) != (c->prompt != NULL));
        check(c->n_asserts <= EVAL_ASSERTS_MAX && c->n_tags <= EVAL_TAGS_MAX);
        // The answer: the reference, else the prompt, else a fixed text; capped
        // so that a pathological regex stays quick.
        const char *ans = c->reference ? c->reference : c->prompt ? c->prompt : "{\"name\": 1}";
        size_t len = strlen(ans);
        if (len > 512)
            len = 512;
        char *text = malloc(len + 1);
        check(text != NULL);
        memcpy(text, ans, len);
        text[len] = 0;
        eval_output o = {.text = text, .len = len, .latency_ms = 12.5, .completion_tokens = 7};
        for (size_t a = 0; a < c->n_asserts; a++) {
            char detail[EVAL_DETAIL_MAX];
            detail[0] = 0;
            check(eval_kind_name(c->asserts[a].kind) != NULL);
            bool pass = eval_check_local(&c->asserts[a], &o, detail, sizeof detail);
            check(pass || detail[0] != 0);
            check(strlen(detail) < sizeof detail);
        }
        free(text);
    }
    eval_set_free(&s);
    check(s.n == 0 && s.cases == NULL);
}

static void fuzz_gates(const char *spec)
{
    eval_gate g[EVAL_GATES_MAX];
    size_t n = 0;
    err_msg e = {0};
    int rc = eval_gates_parse(spec, g, &n, &e);
    check(n <= EVAL_GATES_MAX);
    if (rc != 0) {
        check(rc < 0 && e.text[0] != 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        check((int)g[i].metric >= 0 && g[i].metric < EVAL_M_COUNT);
        check(strcmp(eval_metric_name(g[i].metric), "?") != 0);
        check(memchr(g[i].text, 0, sizeof g[i].text) != NULL);
        check(!eval_gate_ok(&g[i], NAN));
        (void)eval_gate_ok(&g[i], g[i].limit);
    }
}

static void fuzz_schema(const char *d, size_t n)
{
    const char *nl = memchr(d, '\n', n);
    size_t sn = nl ? (size_t)(nl - d) : n;
    json_t *schema = json_loadb(d, sn, JSON_DECODE_ANY, NULL);
    if (!schema)
        return;
    err_msg e = {0};
    int rc = eval_schema_compile(schema, &e);
    if (rc != 0) {
        check(rc < 0 && e.text[0] != 0);
    } else if (nl) {
        json_t *v = json_loadb(nl + 1, n - sn - 1, JSON_DECODE_ANY, NULL);
        if (v) {
            char detail[EVAL_DETAIL_MAX];
            detail[0] = 0;
            bool ok = eval_schema_check(schema, v, detail, sizeof detail);
            check(ok || detail[0] != 0);
            check(strlen(detail) < sizeof detail);
            json_decref(v);
        }
    }
    json_decref(schema);
}

static void fuzz_judge(const char *t, size_t n)
{
    const char *reason = NULL;
    int v = eval_judge_verdict(t, &reason);
    check(v >= -1 && v <= 1);
    check(reason != NULL && reason >= t && reason <= t + n);
    // What on_judge keeps of the reason: at most 300 bytes, never a cut UTF-8
    // sequence. The judge's text came through jansson, so it is valid UTF-8; then
    // the kept prefix must be valid too and lose at most 3 bytes (json_stringn
    // validates UTF-8). Other bytes: only a prefix, no crash.
    size_t rl = strlen(reason);
    char *kept = strndup(reason, rl > 300 ? 300 : rl);
    if (!kept)
        return;
    size_t before = strlen(kept);
    check(eval_utf8_trim(kept) == kept);
    size_t after = strlen(kept);
    check(after <= before && memcmp(kept, reason, after) == 0);
    json_t *valid_in = json_stringn(reason, rl);
    if (valid_in) {
        json_t *valid_out = json_string(kept);
        check(valid_out != NULL && before - after <= 3);
        json_decref(valid_out);
        json_decref(valid_in);
    }
    free(kept);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int mode = data[0] % 4;
    data++;
    size--;
    if (mode == 0) {
        fuzz_load(data, size);
        return 0;
    }
    // The other parsers take NUL-terminated text (a NUL inside ends it).
    char *t = malloc(size + 1);
    if (!t)
        return 0;
    memcpy(t, data, size);
    t[size] = 0;
    if (mode == 1)
        fuzz_gates(t);
    else if (mode == 2)
        fuzz_schema(t, size);
    else
        fuzz_judge(t, strlen(t));
    free(t);
    return 0;
}
