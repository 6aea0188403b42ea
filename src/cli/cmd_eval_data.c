/*
 * cli/cmd_eval_data — the `ferry eval` data file and the assertion checks
 * that need no network.
 *
 * A data file is JSONL: one JSON object per line (blank lines skipped),
 *   {"id"?: str, "messages": [{"role", "content"}...] | "prompt": str,
 *    "reference"?: str, "assert"?: [assertion...], "tags"?: [str...],
 *    "params"?: {extra request fields}}
 * and an assertion is {"type": KIND, ...} with the fields its kind needs
 * (docs/eval.md lists them), or the bare string "json-valid". Everything is
 * checked at load (unknown fields, wrong types, regexes compiled, schemas
 * validated), so a run never starts on a data file that cannot be judged.
 * The first bad line is reported as "PATH:LINE: what is wrong".
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

#include "cli/cmd_eval.h"

#define EVAL_FILE_MAX ((size_t)1 << 30) // bytes of a data file

static const char *const KIND_NAMES[EVAL_KIND_COUNT] = {
    [EVAL_EQUALS] = "equals",
    [EVAL_CONTAINS] = "contains",
    [EVAL_ICONTAINS] = "icontains",
    [EVAL_NOT_CONTAINS] = "not-contains",
    [EVAL_REGEX] = "regex",
    [EVAL_JSON_VALID] = "json-valid",
    [EVAL_JSON_SCHEMA] = "json-schema",
    [EVAL_MAX_LATENCY_MS] = "max-latency-ms",
    [EVAL_MAX_TOKENS] = "max-tokens",
    [EVAL_SIMILAR] = "similar",
    [EVAL_JUDGE] = "judge",
};

const char *eval_kind_name(eval_kind k)
{
    return (unsigned)k < EVAL_KIND_COUNT ? KIND_NAMES[k] : "?";
}

/* Request fields eval sets itself; a case's params may not replace them. */
static const char *const RESERVED_PARAMS[] = {"model", "messages", "prompt", "stream", "n"};

/* ------------------------------------------------------------ freeing -- */

static void case_free(eval_case *c)
{
    free(c->id);
    json_decref(c->messages);
    free(c->prompt);
    free(c->reference);
    json_decref(c->params);
    for (size_t i = 0; i < c->n_asserts; i++) {
        free(c->asserts[i].value);
        json_decref(c->asserts[i].schema);
        pcre2_code_free(c->asserts[i].re);
    }
    free(c->asserts);
    for (size_t i = 0; i < c->n_tags; i++)
        free(c->tags[i]);
    free(c->tags);
    memset(c, 0, sizeof *c);
}

void eval_set_free(eval_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        case_free(&s->cases[i]);
    free(s->cases);
    s->cases = NULL;
    s->n = 0;
}

/* ------------------------------------------------------------ parsing -- */

/* Error context of one line. */
typedef struct lctx {
    const char *name;
    size_t line;
    err_msg *e;
} lctx;

static int lerr(const lctx *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lerr(const lctx *l, const char *fmt, ...)
{
    char what[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return err_set(l->e, ERR_FORMAT, "%s:%zu: %s", l->name, l->line, what);
}

static char *dup_json_str(const json_t *v)
{
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, json_string_value(v), n);
        s[n] = 0;
    }
    return s;
}

static int parse_kind(const char *name, eval_kind *out)
{
    for (int k = 0; k < EVAL_KIND_COUNT; k++) {
        if (strcmp(name, KIND_NAMES[k]) == 0) {
            *out = (eval_kind)k;
            return 0;
        }
    }
    return ERR_INVAL;
}

/* Accepts only the listed keys in object o (what: "assertion 2"). */
static int only_keys(const lctx *l, const json_t *o, const char *what, const char *const *keys,
                     size_t nkeys)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool ok = false;
        for (size_t i = 0; i < nkeys && !ok; i++)
            ok = strcmp(k, keys[i]) == 0;
        if (!ok) {
            char list[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < nkeys && used < sizeof list; i++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", keys[i]);
                if (w < 0)
                    break;
                used += (size_t)w;
            }
            return lerr(l, "%s has an unknown field \"%s\" (expected: %s)", what, k, list);
        }
    }
    return 0;
}

static int compile_regex(const lctx *l, eval_assert *a, size_t ai)
{
    int code;
    PCRE2_SIZE off;
    a->re = pcre2_compile((PCRE2_SPTR)a->value, a->value_len, PCRE2_UTF, &code, &off, NULL);
    if (!a->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return lerr(l, "assertion %zu: regex does not compile at offset %zu: %s", ai + 1,
                    (size_t)off, (const char *)msg);
    }
    return 0;
}

static int parse_assert(const lctx *l, const json_t *v, size_t ai, eval_assert *a)
{
    char what[32];
    snprintf(what, sizeof what, "assertion %zu", ai + 1);
    if (json_is_string(v)) {
        if (parse_kind(json_string_value(v), &a->kind) != 0 || a->kind != EVAL_JSON_VALID)
            return lerr(l,
                        "%s: only \"json-valid\" may be written as a bare string; write "
                        "{\"type\": \"%s\", ...}",
                        what, json_string_value(v));
        return 0;
    }
    if (!json_is_object(v))
        return lerr(l, "%s must be an object {\"type\": ..., ...}", what);
    const json_t *t = json_object_get(v, "type");
    if (!json_is_string(t))
        return lerr(l, "%s has no \"type\" string", what);
    if (parse_kind(json_string_value(t), &a->kind) != 0)
        return lerr(l,
                    "%s: unknown type \"%s\" (expected equals, contains, icontains, "
                    "not-contains, regex, json-valid, json-schema, max-latency-ms, max-tokens, "
                    "similar, judge)",
                    what, json_string_value(t));
    const json_t *val = json_object_get(v, "value");
    static const char *const K_VALUE[] = {"type", "value"};
    static const char *const K_NONE[] = {"type"};
    static const char *const K_SIMILAR[] = {"type", "value", "threshold"};
    int rc;
    switch (a->kind) {
    case EVAL_EQUALS:
    case EVAL_CONTAINS:
    case EVAL_ICONTAINS:
    case EVAL_NOT_CONTAINS:
    case EVAL_REGEX:
    case EVAL_JUDGE:
        if ((rc = only_keys(l, v, what, K_VALUE, ARRAY_LEN(K_VALUE))))
            return rc;
        if (!json_is_string(val))
            return lerr(l, "%s (%s) needs a string \"value\"%s", what, eval_kind_name(a->kind),
                        a->kind == EVAL_JUDGE ? " (the rubric)" : "");
        if (a->kind != EVAL_EQUALS && a->kind != EVAL_JUDGE && json_string_length(val) == 0)
            return lerr(l, "%s (%s): \"value\" is empty", what, eval_kind_name(a->kind));
        if (!(a->value = dup_json_str(val)))
            return err_set(l->e, ERR_NOMEM, "%s:%zu: out of memory", l->name, l->line);
        a->value_len = json_string_length(val);
        if (a->kind == EVAL_REGEX)
            return compile_regex(l, a, ai);
        return 0;
    case EVAL_JSON_VALID:
        return only_keys(l, v, what, K_NONE, ARRAY_LEN(K_NONE));
    case EVAL_JSON_SCHEMA: {
        if ((rc = only_keys(l, v, what, K_VALUE, ARRAY_LEN(K_VALUE))))
            return rc;
        if (!json_is_object(val))
            return lerr(l, "%s (json-schema) needs an object \"value\" (the schema)", what);
        err_msg se;
        if (eval_schema_compile(val, &se) != 0)
            return lerr(l, "%s (json-schema): %s", what, se.text);
        a->schema = json_incref((json_t *)val);
        return 0;
    }
    case EVAL_MAX_LATENCY_MS:
    case EVAL_MAX_TOKENS:
        if ((rc = only_keys(l, v, what, K_VALUE, ARRAY_LEN(K_VALUE))))
            return rc;
        if (!json_is_number(val) || json_number_value(val) < 0)
            return lerr(l, "%s (%s) needs a number \"value\" >= 0", what, eval_kind_name(a->kind));
        a->num = json_number_value(val);
        return 0;
    case EVAL_SIMILAR: {
        if ((rc = only_keys(l, v, what, K_SIMILAR, ARRAY_LEN(K_SIMILAR))))
            return rc;
        const json_t *th = json_object_get(v, "threshold");
        if (!json_is_number(th) || json_number_value(th) < -1 || json_number_value(th) > 1)
            return lerr(l, "%s (similar) needs a number \"threshold\" in [-1, 1] (cosine)", what);
        a->num = json_number_value(th);
        if (val) {
            if (!json_is_string(val))
                return lerr(l, "%s (similar): \"value\" (the reference) must be a string", what);
            if (!(a->value = dup_json_str(val)))
                return err_set(l->e, ERR_NOMEM, "%s:%zu: out of memory", l->name, l->line);
            a->value_len = json_string_length(val);
        }
        return 0;
    }
    case EVAL_KIND_COUNT:
        break;
    }
    return lerr(l, "%s: internal error", what);
}

static int parse_messages(const lctx *l, json_t *m)
{
    if (!json_is_array(m) || json_array_size(m) == 0)
        return lerr(l, "\"messages\" must be a non-empty array of {\"role\", \"content\"}");
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *x = json_array_get(m, i);
        if (!json_is_object(x) || !json_is_string(json_object_get(x, "role")))
            return lerr(l, "message %zu must be an object with a string \"role\"", i + 1);
        json_t *c = json_object_get(x, "content");
        if (!json_is_string(c) && !json_is_array(c))
            return lerr(l, "message %zu needs a \"content\" string (or array of parts)", i + 1);
    }
    return 0;
}

static int parse_case(const lctx *l, json_t *o, eval_case *c)
{
    static const char *const KEYS[] = {"id",     "messages", "prompt", "reference",
                                       "assert", "tags",     "params"};
    int rc;
    if (!json_is_object(o))
        return lerr(l, "a case must be a JSON object");
    if ((rc = only_keys(l, o, "the case", KEYS, ARRAY_LEN(KEYS))))
        return rc;
    c->line = l->line;
    json_t *id = json_object_get(o, "id"), *msgs = json_object_get(o, "messages");
    json_t *prompt = json_object_get(o, "prompt"), *ref = json_object_get(o, "reference");
    json_t *as = json_object_get(o, "assert"), *tags = json_object_get(o, "tags");
    json_t *params = json_object_get(o, "params");
    if (id && !json_is_string(id) && !json_is_integer(id))
        return lerr(l, "\"id\" must be a string or an integer");
    char idbuf[64];
    if (json_is_string(id))
        c->id = dup_json_str(id);
    else {
        if (id)
            snprintf(idbuf, sizeof idbuf, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        else
            snprintf(idbuf, sizeof idbuf, "line %zu", l->line);
        c->id = strdup(idbuf);
    }
    if (!c->id)
        return err_set(l->e, ERR_NOMEM, "out of memory");
    if ((msgs != NULL) == (prompt != NULL))
        return lerr(l, "a case needs exactly one of \"messages\" and \"prompt\"");
    if (msgs) {
        if ((rc = parse_messages(l, msgs)))
            return rc;
        c->messages = json_incref(msgs);
    } else {
        if (!json_is_string(prompt))
            return lerr(l, "\"prompt\" must be a string");
        if (!(c->prompt = dup_json_str(prompt)))
            return err_set(l->e, ERR_NOMEM, "out of memory");
    }
    if (ref) {
        if (!json_is_string(ref))
            return lerr(l, "\"reference\" must be a string");
        if (!(c->reference = dup_json_str(ref)))
            return err_set(l->e, ERR_NOMEM, "out of memory");
    }
    if (params) {
        if (!json_is_object(params))
            return lerr(l, "\"params\" must be an object of request fields");
        for (size_t i = 0; i < ARRAY_LEN(RESERVED_PARAMS); i++)
            if (json_object_get(params, RESERVED_PARAMS[i]))
                return lerr(l, "\"params\" may not set \"%s\" (eval sets it)", RESERVED_PARAMS[i]);
        c->params = json_incref(params);
    }
    if (as) {
        if (!json_is_array(as))
            return lerr(l, "\"assert\" must be an array of assertions");
        size_t n = json_array_size(as);
        if (n > EVAL_ASSERTS_MAX)
            return lerr(l, "\"assert\" has %zu assertions; the limit is %d", n, EVAL_ASSERTS_MAX);
        if (n && !(c->asserts = calloc(n, sizeof *c->asserts)))
            return err_set(l->e, ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            c->n_asserts = i + 1; // so case_free releases what a failure leaves behind
            if ((rc = parse_assert(l, json_array_get(as, i), i, &c->asserts[i])))
                return rc;
            eval_assert *a = &c->asserts[i];
            if (a->kind == EVAL_SIMILAR) {
                if (!a->value && !c->reference)
                    return lerr(l,
                                "assertion %zu (similar) needs a \"value\" or the case's "
                                "\"reference\" to compare with",
                                i + 1);
                c->needs_embed = true;
            }
            if (a->kind == EVAL_JUDGE)
                c->needs_judge = true;
        }
    }
    if (tags) {
        if (!json_is_array(tags))
            return lerr(l, "\"tags\" must be an array of strings");
        size_t n = json_array_size(tags);
        if (n > EVAL_TAGS_MAX)
            return lerr(l, "\"tags\" has %zu tags; the limit is %d", n, EVAL_TAGS_MAX);
        if (n && !(c->tags = calloc(n, sizeof *c->tags)))
            return err_set(l->e, ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(tags, i);
            if (!json_is_string(t) || json_string_length(t) == 0 ||
                json_string_length(t) > EVAL_TAG_BYTES)
                return lerr(l, "tag %zu must be a string of 1 to %d bytes", i + 1, EVAL_TAG_BYTES);
            for (size_t j = 0; j < c->n_tags; j++)
                if (strcmp(c->tags[j], json_string_value(t)) == 0)
                    return lerr(l, "tag \"%s\" is listed twice", json_string_value(t));
            if (!(c->tags[c->n_tags] = dup_json_str(t)))
                return err_set(l->e, ERR_NOMEM, "out of memory");
            c->n_tags++;
        }
    }
    return 0;
}

int eval_load_text(const char *name, const char *text, size_t len, eval_set *out, err_msg *e)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    lctx l = {name, 0, e};
    const char *p = text, *end = text + len;
    int rc = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        l.line++;
        size_t n = (size_t)(le - p);
        const char *q = p;
        p = nl ? nl + 1 : end;
        while (n && (q[n - 1] == '\r' || q[n - 1] == ' ' || q[n - 1] == '\t'))
            n--;
        while (n && (*q == ' ' || *q == '\t')) {
            q++;
            n--;
        }
        if (n == 0)
            continue;
        if (n > EVAL_LINE_MAX) {
            rc = err_set(e, ERR_TOO_LARGE, "%s:%zu: the line is %zu bytes; the limit is %zu", name,
                         l.line, n, EVAL_LINE_MAX);
            goto fail;
        }
        if (out->n == EVAL_CASES_MAX) {
            rc = err_set(e, ERR_TOO_LARGE, "%s:%zu: more than %d cases", name, l.line,
                         EVAL_CASES_MAX);
            goto fail;
        }
        json_error_t je;
        json_t *o = json_loadb(q, n, JSON_REJECT_DUPLICATES, &je);
        if (!o) {
            rc = lerr(&l, "invalid JSON at column %d: %s", je.column, je.text);
            goto fail;
        }
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            eval_case *nv = realloc(out->cases, nc * sizeof *nv);
            if (!nv) {
                json_decref(o);
                rc = err_set(e, ERR_NOMEM, "%s:%zu: out of memory", name, l.line);
                goto fail;
            }
            out->cases = nv;
            cap = nc;
        }
        eval_case *c = &out->cases[out->n++];
        memset(c, 0, sizeof *c);
        rc = parse_case(&l, o, c);
        json_decref(o);
        if (rc)
            goto fail;
    }
    if (out->n == 0) {
        rc = err_set(e, ERR_FORMAT, "%s: no cases (one JSON object per line expected)", name);
        goto fail;
    }
    return 0;
fail:
    eval_set_free(out);
    return rc;
}

int eval_load_file(const char *path, eval_set *out, err_msg *e)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    buf b;
    buf_init(&b, EVAL_FILE_MAX);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if ((rc = buf_append(&b, chunk, n)) != 0) {
            rc = err_set(e, rc, "%s: larger than %zu bytes", path, EVAL_FILE_MAX);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = err_set(e, ERR_IO, "%s: read error", path);
    fclose(f);
    if (!rc)
        rc = eval_load_text(path, b.data ? b.data : "", b.len, out, e);
    buf_deinit(&b);
    return rc;
}

/* ------------------------------------------------------------- checks -- */

/* Unicode case folding (utf8proc); NULL when s is not valid UTF-8 or on OOM. */
static char *casefold(const char *s, size_t n)
{
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &out,
                                      UTF8PROC_CASEFOLD | UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    if (r < 0)
        return NULL;
    return (char *)out;
}

/* Quotes up to 60 bytes of s for a message, cut at a UTF-8 boundary. */
static void quote(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = n > 60 ? 60 : n;
    while (k < n && k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    snprintf(out, cap, "\"%.*s\"%s", (int)k, s, k < n ? "..." : "");
}

char *eval_utf8_trim(char *s)
{
    size_t n = strlen(s), i = n;
    /* back over at most 3 continuation bytes to the sequence's lead byte */
    while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return s;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
    if (want == 1)
        return s; // ASCII last: nothing pending (stray continuation bytes are the
                  // caller's input, not a cut)
    if (want == 0 || n - (i - 1) < want)
        s[i - 1] = 0;
    return s;
}

static bool fail_with(char *detail, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_with(char *detail, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, cap, fmt, ap);
    va_end(ap);
    eval_utf8_trim(detail);
    return false;
}

bool eval_check_local(const eval_assert *a, const eval_output *o, char *detail, size_t cap)
{
    char q[80], q2[80];
    if (cap)
        detail[0] = 0;
    quote(o->text, o->len, q2, sizeof q2);
    switch (a->kind) {
    case EVAL_EQUALS:
        if (o->len == a->value_len && memcmp(o->text, a->value, o->len) == 0)
            return true;
        quote(a->value, a->value_len, q, sizeof q);
        return fail_with(detail, cap, "expected exactly %s, got %s", q, q2);
    case EVAL_CONTAINS:
    case EVAL_NOT_CONTAINS: {
        bool has = memmem(o->text, o->len, a->value, a->value_len) != NULL;
        if (has == (a->kind == EVAL_CONTAINS))
            return true;
        quote(a->value, a->value_len, q, sizeof q);
        return fail_with(detail, cap, "%s %s in %s", has ? "found" : "did not find", q, q2);
    }
    case EVAL_ICONTAINS: {
        char *h = casefold(o->text, o->len), *n = casefold(a->value, a->value_len);
        bool has = h && n && strstr(h, n) != NULL;
        free(h);
        free(n);
        if (has)
            return true;
        quote(a->value, a->value_len, q, sizeof q);
        return fail_with(detail, cap, "did not find %s (ignoring case) in %s", q, q2);
    }
    case EVAL_REGEX: {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(a->re, NULL);
        if (!md)
            return fail_with(detail, cap, "out of memory");
        int r = pcre2_match(a->re, (PCRE2_SPTR)o->text, o->len, 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (r >= 0)
            return true;
        quote(a->value, a->value_len, q, sizeof q);
        if (r == PCRE2_ERROR_NOMATCH)
            return fail_with(detail, cap, "regex %s does not match %s", q, q2);
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(r, msg, sizeof msg);
        return fail_with(detail, cap, "regex %s: %s", q, (const char *)msg);
    }
    case EVAL_JSON_VALID:
    case EVAL_JSON_SCHEMA: {
        json_error_t je;
        json_t *v = json_loadb(o->text, o->len, JSON_DECODE_ANY, &je);
        if (!v)
            return fail_with(detail, cap, "not valid JSON (column %d: %s): %s", je.column, je.text,
                             q2);
        bool ok = a->kind == EVAL_JSON_VALID || eval_schema_check(a->schema, v, detail, cap);
        json_decref(v);
        return ok;
    }
    case EVAL_MAX_LATENCY_MS:
        if (o->latency_ms <= a->num)
            return true;
        return fail_with(detail, cap, "latency %.1f ms > %g ms", o->latency_ms, a->num);
    case EVAL_MAX_TOKENS:
        if (o->completion_tokens < 0)
            return fail_with(detail, cap, "the server reported no completion token count");
        if ((double)o->completion_tokens <= a->num)
            return true;
        return fail_with(detail, cap, "%" PRId64 " completion tokens > %g", o->completion_tokens,
                         a->num);
    case EVAL_SIMILAR:
    case EVAL_JUDGE:
    case EVAL_KIND_COUNT:
        break;
    }
    return fail_with(detail, cap, "%s needs the network (not a local check)",
                     eval_kind_name(a->kind));
}

/* ------------------------------------------------------------- judge -- */

static bool is_mark(char ch)
{
    return ch == '*' || ch == '_' || ch == '#' || ch == '`' || ch == '"' || ch == '\'' || ch == '>';
}

int eval_judge_verdict(const char *text, const char **reason)
{
    const char *p = text;
    while (*p && (isspace((unsigned char)*p) || is_mark(*p)))
        p++;
    int verdict;
    if (strncasecmp(p, "PASS", 4) == 0)
        verdict = 1;
    else if (strncasecmp(p, "FAIL", 4) == 0)
        verdict = 0;
    else {
        *reason = p;
        return -1;
    }
    if (isalnum((unsigned char)p[4])) {
        *reason = p;
        return -1;
    }
    p += 4;
    while (*p && (isspace((unsigned char)*p) || is_mark(*p) || *p == ':' || *p == '-' ||
                  *p == '.' || *p == ','))
        p++;
    *reason = p;
    return verdict;
}
