// FUZZ_MODULES: base
// FUZZ_SOURCES: src/cli/cmd_eval_parse.c src/cli/cmd_eval_data.c src/cli/cmd_eval_schema.c
// FUZZ_SECONDS: 10
// FUZZ_LIBS: jansson libpcre2-8 libutf8proc
/*
 * The parsers of `ferry eval` other than the data file (fuzz_eval_data has
 * that): flag values and the answers read from the network
 * (src/cli/cmd_eval_parse.c). The first byte (mod 8) picks the parser, the
 * second is a parameter (is_chat, a buffer size), the rest is its input:
 *   0  an endpoint spec URL,MODEL[,KEY] (eval_endpoint_parse)
 *   1  a --target NAME= prefix (eval_target_name)
 *   2  --params JSON, parsed into a fresh object and merged into one that
 *      already holds a key (eval_params_parse)
 *   3  a --price IN,OUT (eval_price_parse)
 *   4  a completion answer, chat or text (eval_answer_parse)
 *   5  an /embeddings answer (eval_embeddings_parse)
 *   6  the judge's answer (eval_judge_answer_parse)
 *   7  an HTTP error body (eval_error_message)
 * Bad input must give an error with a message, never a crash, leak or
 * out-of-bounds read; what is accepted must satisfy the contracts checked
 * below, in particular that every text handed out is valid UTF-8 (it goes
 * into the JSON report; json_string validates).
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

static bool is_utf8(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

static void fuzz_endpoint(const char *t)
{
    eval_endpoint_spec sp;
    err_msg e = {0};
    if (eval_endpoint_parse("--judge", t, &sp, &e) != 0) {
        check(e.text[0] != 0 && !sp.url && !sp.model && !sp.key);
        return;
    }
    size_t ul = strlen(sp.url);
    size_t scheme = strncmp(sp.url, "https://", 8) == 0 ? 8 : 7;
    check(strncmp(sp.url, "http", 4) == 0 && ul > scheme && sp.url[ul - 1] != '/');
    check(sp.model[0] != 0 && !strchr(sp.model, ','));
    check(!strchr(sp.url, ',') && strncmp(t, sp.url, ul) == 0);
    check(!sp.key || sp.key[0] != 0);
    eval_endpoint_spec_free(&sp);
}

static void fuzz_target_name(const char *t)
{
    size_t nl = 999;
    err_msg e = {0};
    if (eval_target_name(t, &nl, &e) != 0) {
        check(e.text[0] != 0 && nl == 999);
        return;
    }
    check(nl >= 1 && nl <= EVAL_NAME_MAX && t[nl] == '=');
    for (size_t i = 0; i < nl; i++)
        check(t[i] != '=' && t[i] != ',' && t[i] != '/');
}

static void fuzz_params(const char *t)
{
    static const char *const reserved[] = {"model", "messages", "prompt", "stream", "n"};
    err_msg e = {0};
    json_t *fresh = NULL;
    if (eval_params_parse("--params", t, &fresh, &e) != 0) {
        check(fresh == NULL && e.text[0] != 0);
    } else {
        check(json_is_object(fresh));
        for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
            check(json_object_get(fresh, reserved[i]) == NULL);
        json_decref(fresh);
    }
    json_t *old = json_pack("{s:i}", "zz_kept_key_zz", 7);
    check(old != NULL);
    json_t *keep = old;
    int rc = eval_params_parse("--params", t, &old, &e);
    check(old == keep); // merged in place, never replaced
    if (rc != 0)
        check(json_object_size(old) == 1);
    json_decref(old);
}

static void fuzz_price(const char *t)
{
    double in = -1, out = -1;
    err_msg e = {0};
    if (eval_price_parse(t, &in, &out, &e) != 0) {
        check(in == -1 && out == -1 && e.text[0] != 0);
        return;
    }
    check(in >= 0 && in <= 1e9 && out >= 0 && out <= 1e9);
}

static void fuzz_answer(const char *d, size_t n, bool is_chat)
{
    eval_answer a;
    err_msg e = {0};
    if (eval_answer_parse(d, n, is_chat, &a, &e) != 0) {
        check(a.text == NULL && e.text[0] != 0);
        return;
    }
    check(a.text != NULL && is_utf8(a.text));
    check(a.prompt_tokens >= -1 && a.completion_tokens >= -1);
    free(a.text);
}

static void fuzz_embeddings(const char *d, size_t n)
{
    float *xy = NULL;
    size_t dim = 0;
    err_msg e = {0};
    if (eval_embeddings_parse(d, n, &xy, &dim, &e) != 0) {
        check(xy == NULL && dim == 0 && e.text[0] != 0);
        return;
    }
    check(xy != NULL && dim >= 1 && dim <= EVAL_EMBED_DIM_MAX);
    // What evalstats_cosine computes, in double: finite for finite floats.
    double dot = 0, nx = 0, ny = 0;
    for (size_t i = 0; i < dim; i++) {
        check(isfinite(xy[i]) && isfinite(xy[dim + i]));
        dot += (double)xy[i] * xy[dim + i];
        nx += (double)xy[i] * xy[i];
        ny += (double)xy[dim + i] * xy[dim + i];
    }
    if (nx > 0 && ny > 0) {
        double c = dot / (sqrt(nx) * sqrt(ny));
        check(isfinite(c) && c >= -1.000001 && c <= 1.000001);
    }
    free(xy);
}

static void fuzz_judge_answer(const char *d, size_t n)
{
    int verdict = 5;
    char *reason = NULL;
    err_msg e = {0};
    if (eval_judge_answer_parse(d, n, &verdict, &reason, &e) != 0) {
        check(reason == NULL && e.text[0] != 0);
        return;
    }
    check(verdict >= -1 && verdict <= 1);
    check(reason != NULL && strlen(reason) <= EVAL_REASON_MAX && is_utf8(reason));
    free(reason);
}

static void fuzz_error_message(const char *d, size_t n, size_t cap)
{
    char *out = malloc(cap ? cap : 1);
    check(out != NULL);
    if (cap)
        memset(out, 'x', cap);
    const char *r = eval_error_message(d, n, out, cap);
    check(r == out);
    if (cap) {
        check(memchr(out, 0, cap) != NULL);
        check(is_utf8(out));
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int mode = data[0] % 8;
    uint8_t param = data[1];
    data += 2;
    size -= 2;
    // The raw-bytes parsers see the input as is (not NUL-terminated).
    char *raw = malloc(size ? size : 1);
    if (!raw)
        return 0;
    memcpy(raw, data, size);
    if (mode == 4)
        fuzz_answer(raw, size, param & 1);
    else if (mode == 5)
        fuzz_embeddings(raw, size);
    else if (mode == 6)
        fuzz_judge_answer(raw, size);
    else if (mode == 7)
        fuzz_error_message(raw, size, param);
    free(raw);
    if (mode >= 4)
        return 0;
    // The flag parsers take NUL-terminated text, as argv gives.
    char *t = malloc(size + 1);
    if (!t)
        return 0;
    memcpy(t, data, size);
    t[size] = 0;
    if (mode == 0)
        fuzz_endpoint(t);
    else if (mode == 1)
        fuzz_target_name(t);
    else if (mode == 2)
        fuzz_params(t);
    else
        fuzz_price(t);
    free(t);
    return 0;
}
