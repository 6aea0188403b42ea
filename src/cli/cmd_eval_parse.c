/*
 * cli/cmd_eval_parse — the parsers of `ferry eval` that are not the data
 * file: flag values (--target/--embed/--judge endpoints, --params JSON,
 * --price) and the answers that come back over the network (a target's
 * completion, an /embeddings answer, the judge's answer, an error body).
 * Pure functions of their input (apart from the $VAR lookup of a key), so
 * tests/fuzz/fuzz_eval_args.c can drive them on arbitrary bytes.
 *
 * Every text these parsers hand out is valid UTF-8 (jansson validates what
 * it decodes; raw error bodies are sanitized), because it ends up in the
 * JSON report, which refuses anything else.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_eval.h"

void eval_endpoint_spec_free(eval_endpoint_spec *s)
{
    free(s->url);
    free(s->model);
    free(s->key);
    memset(s, 0, sizeof *s);
}

int eval_endpoint_parse(const char *flag, const char *spec, eval_endpoint_spec *out, err_msg *e)
{
    memset(out, 0, sizeof *out);
    const char *c1 = strchr(spec, ',');
    if (!c1 || c1 == spec)
        return err_set(e, ERR_INVAL, "%s \"%.200s\": expected URL,MODEL[,KEY]", flag, spec);
    const char *m = c1 + 1, *c2 = strchr(m, ',');
    size_t ml = c2 ? (size_t)(c2 - m) : strlen(m);
    if (ml == 0)
        return err_set(e, ERR_INVAL, "%s \"%.200s\": the model is empty", flag, spec);
    size_t ul = (size_t)(c1 - spec);
    while (ul > 0 && spec[ul - 1] == '/')
        ul--;
    size_t scheme = strncmp(spec, "http://", 7) == 0    ? 7
                    : strncmp(spec, "https://", 8) == 0 ? 8
                                                        : 0;
    if (scheme == 0 || ul <= scheme)
        return err_set(e, ERR_INVAL,
                       "%s \"%.200s\": the URL must start with http:// or https:// and name a host",
                       flag, spec);
    const char *k = NULL;
    if (c2 && c2[1]) {
        k = c2 + 1;
        if (k[0] == '$') {
            k = getenv(k + 1);
            if (!k || !*k)
                return err_set(e, ERR_INVAL, "%s: environment variable %.100s is not set", flag,
                               c2 + 2);
        }
    }
    out->url = strndup(spec, ul);
    out->model = strndup(m, ml);
    out->key = k ? strdup(k) : NULL;
    if (!out->url || !out->model || (k && !out->key)) {
        eval_endpoint_spec_free(out);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    return 0;
}

int eval_target_name(const char *spec, size_t *name_len, err_msg *e)
{
    const char *eq = strchr(spec, '=');
    size_t nl = eq ? (size_t)(eq - spec) : 0;
    if (!eq || nl == 0 || nl > EVAL_NAME_MAX)
        return err_set(e, ERR_INVAL,
                       "--target \"%.200s\": expected NAME=URL,MODEL[,KEY] (NAME 1 to %d bytes)",
                       spec, EVAL_NAME_MAX);
    for (size_t i = 0; i < nl; i++) {
        char ch = spec[i];
        if (!(ch == '-' || ch == '_' || ch == '.' || (ch >= '0' && ch <= '9') ||
              (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            return err_set(e, ERR_INVAL,
                           "--target \"%.200s\": NAME may hold letters, digits, - _ . only", spec);
    }
    *name_len = nl;
    return 0;
}

int eval_params_parse(const char *flag, const char *text, json_t **out, err_msg *e)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(v)) {
        json_decref(v);
        return err_set(e, ERR_INVAL, "%s: expected a JSON object (%s)", flag,
                       v ? "not an object" : je.text);
    }
    static const char *const reserved[] = {"model", "messages", "prompt", "stream", "n"};
    for (size_t i = 0; i < ARRAY_LEN(reserved); i++) {
        if (json_object_get(v, reserved[i])) {
            json_decref(v);
            return err_set(e, ERR_INVAL, "%s may not set \"%s\" (eval sets it)", flag, reserved[i]);
        }
    }
    if (*out) {
        int rc = json_object_update(*out, v);
        json_decref(v);
        return rc ? err_set(e, ERR_NOMEM, "out of memory") : 0;
    }
    *out = v;
    return 0;
}

int eval_price_parse(const char *spec, double *in, double *out, err_msg *e)
{
    const char *comma = strchr(spec, ',');
    char a[64], b[64];
    double x, y;
    if (!comma || (size_t)(comma - spec) >= sizeof a || strlen(comma + 1) >= sizeof b)
        goto bad;
    memcpy(a, spec, (size_t)(comma - spec));
    a[comma - spec] = 0;
    memcpy(b, comma + 1, strlen(comma + 1) + 1);
    if (parse_f64(a, &x) || parse_f64(b, &y) || !(x >= 0 && x <= 1e9) || !(y >= 0 && y <= 1e9))
        goto bad;
    *in = x;
    *out = y;
    return 0;
bad:
    return err_set(e, ERR_INVAL,
                   "\"%.200s\": expected IN,OUT, two prices in [0, 1e9] USD per 1M tokens", spec);
}

/* ------------------------------------------------------------ answers -- */

int eval_answer_parse(const char *body, size_t len, bool is_chat, eval_answer *out, err_msg *e)
{
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = -1;
    json_t *v = json_loadb(body ? body : "", len, 0, NULL);
    json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
    json_t *text = is_chat ? json_object_get(json_object_get(ch, "message"), "content")
                           : json_object_get(ch, "text");
    if (!ch || (!json_is_string(text) && !json_is_null(text))) {
        json_decref(v);
        return err_set(e, ERR_FORMAT, "the answer has no choices[0] text");
    }
    // jansson refuses \u0000 by default, so the text is a C string.
    out->text = strdup(json_is_string(text) ? json_string_value(text) : "");
    json_t *u = json_object_get(v, "usage");
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt) && json_integer_value(pt) >= 0)
        out->prompt_tokens = json_integer_value(pt);
    if (json_is_integer(ct) && json_integer_value(ct) >= 0)
        out->completion_tokens = json_integer_value(ct);
    json_decref(v);
    if (!out->text)
        return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

int eval_embeddings_parse(const char *body, size_t len, float **xy, size_t *n_out, err_msg *e)
{
    *xy = NULL;
    *n_out = 0;
    json_t *v = json_loadb(body ? body : "", len, 0, NULL);
    json_t *data = json_object_get(v, "data");
    json_t *vec[2] = {NULL, NULL};
    int rc = 0;
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *d = json_array_get(data, i);
        json_t *idx = json_object_get(d, "index");
        if (!json_is_integer(idx))
            continue;
        json_int_t k = json_integer_value(idx);
        if (k < 0 || k > 1)
            continue;
        if (vec[k]) {
            rc = err_set(e, ERR_FORMAT, "the embeddings answer gives index %d twice", (int)k);
            goto out;
        }
        vec[k] = json_object_get(d, "embedding");
    }
    size_t n = json_array_size(vec[0]);
    if (!json_is_array(vec[0]) || !json_is_array(vec[1]) || n == 0 ||
        n != json_array_size(vec[1]) || n > EVAL_EMBED_DIM_MAX) {
        rc = err_set(e, ERR_FORMAT,
                     "the embeddings answer lacks two vectors of one length (1 to %d)",
                     EVAL_EMBED_DIM_MAX);
        goto out;
    }
    float *x = malloc(2 * n * sizeof *x);
    if (!x) {
        rc = err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < 2 && !rc; k++) {
        for (size_t i = 0; i < n; i++) {
            json_t *c = json_array_get(vec[k], i);
            double f = json_number_value(c);
            // A component past float's range would make the cosine inf/NaN.
            if (!json_is_number(c) || !(fabs(f) <= 3.0e38)) {
                rc = err_set(e, ERR_FORMAT,
                             "the embeddings answer: component %zu of vector %zu is not a finite "
                             "float",
                             i, k);
                break;
            }
            x[k * n + i] = (float)f;
        }
    }
    if (rc) {
        free(x);
        goto out;
    }
    *xy = x;
    *n_out = n;
out:
    json_decref(v);
    return rc;
}

int eval_judge_answer_parse(const char *body, size_t len, int *verdict, char **reason, err_msg *e)
{
    *verdict = -1;
    *reason = NULL;
    json_t *v = json_loadb(body ? body : "", len, 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "message");
    const char *text = json_string_value(json_object_get(msg, "content"));
    if (!text) {
        json_decref(v);
        return err_set(e, ERR_FORMAT, "the judge's answer has no message content");
    }
    const char *r;
    *verdict = eval_judge_verdict(text, &r);
    size_t rl = strlen(r);
    *reason = strndup(r, rl > EVAL_REASON_MAX ? EVAL_REASON_MAX : rl);
    json_decref(v);
    if (!*reason)
        return err_set(e, ERR_NOMEM, "out of memory");
    eval_utf8_trim(*reason);
    return 0;
}

/* Copies up to cap-1 bytes of s (n bytes) into out as valid UTF-8: every byte
 * that does not start a well-formed sequence (RFC 3629) becomes '?', a NUL
 * ends the text, and a sequence is never cut. */
static void utf8_sanitize(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && s[i] && o + 1 < cap;) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t k = p[0] < 0x80                    ? 1
                   : p[0] >= 0xC2 && p[0] <= 0xDF ? 2
                   : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
                   : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4
                                                  : 0;
        bool ok = k > 0 && i + k <= n;
        for (size_t j = 1; ok && j < k; j++)
            ok = (p[j] & 0xC0) == 0x80;
        // Overlong 3/4-byte forms, UTF-16 surrogates, past U+10FFFF.
        if (ok && k == 3)
            ok = !(p[0] == 0xE0 && p[1] < 0xA0) && !(p[0] == 0xED && p[1] >= 0xA0);
        if (ok && k == 4)
            ok = !(p[0] == 0xF0 && p[1] < 0x90) && !(p[0] == 0xF4 && p[1] >= 0x90);
        if (!ok) {
            out[o++] = '?';
            i++;
            continue;
        }
        if (o + k >= cap)
            break;
        memcpy(out + o, p, k);
        o += k;
        i += k;
    }
    out[o] = 0;
}

const char *eval_error_message(const char *body, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return out;
    json_t *v = json_loadb(body ? body : "", len, 0, NULL);
    json_t *m = json_object_get(json_object_get(v, "error"), "message");
    if (json_is_string(m))
        utf8_sanitize(json_string_value(m), json_string_length(m), out, cap);
    else
        utf8_sanitize(body ? body : "", len > 200 ? 200 : len, out, cap);
    json_decref(v);
    return out;
}
