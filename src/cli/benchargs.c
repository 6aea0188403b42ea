/*
 * cli/benchargs — `ferry bench`'s flag-value and --prompts parsers (see
 * benchargs.h for the grammar of each). Every value is checked whole: a list
 * or SLO longer than BENCH_ARG_MAX is refused, not cut, and numbers go
 * through parse_f64 / parse_duration_ns, which refuse trailing garbage,
 * NaN and infinities.
 */
#include "cli/benchargs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/str.h"

int benchargs_len(const char *flag, const char *v, double *mean, double *sd, err_msg *e)
{
    char tmp[64];
    size_t vl = strlen(v);
    double m = 0, s = 0;
    if (vl >= sizeof tmp)
        goto bad;
    memcpy(tmp, v, vl + 1);
    char *colon = strchr(tmp, ':');
    if (colon)
        *colon = 0;
    if (parse_f64(tmp, &m) || !(m >= 1 && m <= BENCH_LEN_MAX))
        goto bad;
    if (colon && (parse_f64(colon + 1, &s) || !(s >= 0 && s <= BENCH_LEN_MAX)))
        goto bad;
    *mean = m;
    *sd = s;
    return 0;
bad:
    return err_set(e, ERR_INVAL,
                   "%s wants LEN or MEAN:STDDEV with 1 <= LEN <= %.0f and 0 <= STDDEV <= %.0f, "
                   "got \"%.80s\"",
                   flag, BENCH_LEN_MAX, BENCH_LEN_MAX, v);
}

/* Ends tok at its first comma; returns what follows it, or NULL. */
static char *split_comma(char *tok)
{
    char *c = strchr(tok, ',');
    if (!c)
        return NULL;
    *c = 0;
    return c + 1;
}

int benchargs_loads(const char *flag, const char *v, bool is_integer, double *loads, size_t *n,
                    err_msg *e)
{
    char tmp[BENCH_ARG_MAX + 1];
    double got[BENCH_POINTS_MAX];
    size_t k = 0, vl = strlen(v);
    if (vl >= sizeof tmp)
        goto bad;
    memcpy(tmp, v, vl + 1);
    for (char *tok = tmp, *next; tok; tok = next) {
        next = split_comma(tok);
        double x;
        if (k == BENCH_POINTS_MAX || parse_f64(tok, &x) || !(x > 0))
            goto bad;
        if (is_integer ? (x != floor(x) || x > BENCH_CONC_MAX) : x > BENCH_RATE_MAX)
            goto bad;
        got[k++] = x;
    }
    memcpy(loads, got, k * sizeof *got);
    *n = k;
    return 0;
bad:
    if (is_integer)
        return err_set(e, ERR_INVAL,
                       "%s wants a comma-separated list of at most %d integers in 1..%d, got "
                       "\"%.80s\"",
                       flag, BENCH_POINTS_MAX, BENCH_CONC_MAX, v);
    return err_set(e, ERR_INVAL,
                   "%s wants a comma-separated list of at most %d rates in (0, %.0f] requests/s, "
                   "got \"%.80s\"",
                   flag, BENCH_POINTS_MAX, BENCH_RATE_MAX, v);
}

int benchargs_slo(const char *v, bench_slo *s, err_msg *e)
{
    char tmp[BENCH_ARG_MAX + 1];
    size_t vl = strlen(v);
    bench_slo r = {.is_set = true, .ttft_ms = NAN, .tpot_ms = NAN, .e2e_ms = NAN};
    if (vl >= sizeof tmp)
        goto bad;
    memcpy(tmp, v, vl + 1);
    for (char *tok = tmp, *next; tok; tok = next) {
        next = split_comma(tok);
        char *eq = strchr(tok, '=');
        uint64_t ns;
        if (!eq)
            goto bad;
        *eq = 0;
        // A day bounds every SLO anyone means; past it the flag is a typo.
        if (parse_duration_ns(eq + 1, &ns) || ns > 86400ull * 1000000000ull)
            goto bad;
        double *slot = strcmp(tok, "ttft") == 0   ? &r.ttft_ms
                       : strcmp(tok, "tpot") == 0 ? &r.tpot_ms
                       : strcmp(tok, "e2e") == 0  ? &r.e2e_ms
                                                  : NULL;
        if (!slot || !isnan(*slot)) // unknown key, or one given twice
            goto bad;
        *slot = (double)ns / 1e6;
    }
    *s = r;
    return 0;
bad:
    return err_set(e, ERR_INVAL,
                   "--slo wants ttft=DUR,tpot=DUR,e2e=DUR (any of them, each once; DUR like "
                   "500ms or 2s, at most 24h), got \"%.80s\"",
                   v);
}

int benchargs_money(const char *flag, const char *v, double *out, err_msg *e)
{
    double x;
    if (parse_f64(v, &x) || !(x >= 0))
        return err_set(e, ERR_INVAL, "%s wants a non-negative number, got \"%.80s\"", flag, v);
    *out = x;
    return 0;
}

/* ------------------------------------------------------------- prompts -- */

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The messages of one line (a new reference), or NULL with e set. */
static json_t *line_messages(json_t *v, const char *where, err_msg *e)
{
    if (!json_is_object(v)) {
        err_set(e, ERR_FORMAT, "%s: expected {\"messages\": [...]} or {\"prompt\": \"...\"}",
                where);
        return NULL;
    }
    json_t *m = json_object_get(v, "messages"), *p = json_object_get(v, "prompt");
    if (m && p) {
        err_set(e, ERR_FORMAT, "%s: give \"messages\" or \"prompt\", not both", where);
        return NULL;
    }
    if (json_is_string(p))
        return json_pack("[{s:s,s:O}]", "role", "user", "content", p);
    size_t n = json_array_size(m);
    if (!json_is_array(m) || n == 0 || n > BENCH_MESSAGES_MAX) {
        err_set(e, ERR_FORMAT,
                "%s: expected {\"messages\": [1 to %d messages]} or {\"prompt\": \"...\"}", where,
                BENCH_MESSAGES_MAX);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "role"))) {
            err_set(e, ERR_FORMAT, "%s: message %zu is not an object with a string \"role\"", where,
                    i + 1);
            return NULL;
        }
    }
    return json_incref(m);
}

int benchargs_prompts_add_line(benchargs_prompts *pf, const char *name, size_t lineno,
                               const char *line, size_t len, err_msg *e)
{
    char where[320];
    snprintf(where, sizeof where, "%.256s:%zu", name, lineno);
    if (len > BENCH_LINE_MAX)
        return err_set(e, ERR_TOO_LARGE, "%s: line longer than %zu bytes", where, BENCH_LINE_MAX);
    // JSON whitespace (space, tab, CR, LF) around the object is not part of it.
    str t = {line, len};
    while (t.n && is_json_ws(t.p[t.n - 1]))
        t.n--;
    while (t.n && is_json_ws(t.p[0])) {
        t.p++;
        t.n--;
    }
    if (t.n == 0)
        return 0;
    if (pf->n == BENCH_PROMPTS_MAX)
        return err_set(e, ERR_TOO_LARGE, "%.256s: more than %d prompts", name, BENCH_PROMPTS_MAX);
    json_error_t je;
    json_t *v = json_loadb(t.p, t.n, JSON_DECODE_ANY, &je);
    if (!v)
        return err_set(e, ERR_FORMAT, "%s: %s", where, je.text);
    json_t *mt = json_object_get(v, "max_tokens");
    json_t *msgs = line_messages(v, where, e);
    int rc = 0;
    if (!msgs) {
        rc = ERR_FORMAT;
        goto out;
    }
    if (mt && (!json_is_integer(mt) || json_integer_value(mt) < 1 ||
               json_integer_value(mt) > (json_int_t)BENCH_LEN_MAX)) {
        rc = err_set(e, ERR_FORMAT, "%s: \"max_tokens\" must be an integer in 1..%.0f", where,
                     BENCH_LEN_MAX);
        goto out;
    }
    if (pf->n == pf->cap) {
        size_t cap = pf->cap ? pf->cap * 2 : 64;
        json_t **nm = realloc(pf->msgs, cap * sizeof *nm);
        if (nm)
            pf->msgs = nm;
        int64_t *nt = realloc(pf->max_tokens, cap * sizeof *nt);
        if (nt)
            pf->max_tokens = nt;
        if (!nm || !nt) {
            rc = err_set(e, ERR_NOMEM, "%s: out of memory", where);
            goto out;
        }
        pf->cap = cap;
    }
    pf->msgs[pf->n] = msgs;
    pf->max_tokens[pf->n++] = mt ? (int64_t)json_integer_value(mt) : 0;
    msgs = NULL;
out:
    json_decref(msgs);
    json_decref(v);
    return rc;
}

int benchargs_prompts_parse(benchargs_prompts *pf, const char *name, const char *text, size_t len,
                            err_msg *e)
{
    size_t lineno = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        int rc = benchargs_prompts_add_line(pf, name, ++lineno, text + i, end - i, e);
        if (rc)
            return rc;
        i = end + 1;
    }
    if (pf->n == 0)
        return err_set(e, ERR_FORMAT, "%.256s holds no prompt", name);
    return 0;
}

int benchargs_prompts_load(benchargs_prompts *pf, const char *path, err_msg *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(e, ERR_IO, "cannot open --prompts %.256s: %s", path, strerror(errno));
    /* Lines are gathered in a buffer that never grows past BENCH_LINE_MAX + 1
     * bytes (getline would take a multi-gigabyte line whole before its length
     * could be refused). */
    buf line;
    buf_init(&line, BENCH_LINE_MAX + 1);
    char chunk[65536];
    size_t n, lineno = 0;
    int rc = 0;
    bool is_long = false; // the current line went past the limit
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        for (size_t i = 0; i < n && !rc;) {
            const char *nl = memchr(chunk + i, '\n', n - i);
            size_t k = nl ? (size_t)(nl - chunk) - i : n - i;
            if (!is_long && buf_append(&line, chunk + i, k) != 0)
                is_long = true;
            i += k;
            if (!nl)
                break;
            i++; // the newline
            lineno++;
            rc = is_long ? err_set(e, ERR_TOO_LARGE, "%.256s:%zu: line longer than %zu bytes", path,
                                   lineno, BENCH_LINE_MAX)
                         : benchargs_prompts_add_line(pf, path, lineno, line.data ? line.data : "",
                                                      line.len, e);
            buf_reset(&line);
        }
    }
    if (!rc && ferror(f))
        rc = err_set(e, ERR_IO, "reading --prompts %.256s: %s", path, strerror(errno));
    if (!rc && (line.len > 0 || is_long)) // a last line without a newline
        rc = is_long ? err_set(e, ERR_TOO_LARGE, "%.256s:%zu: line longer than %zu bytes", path,
                               lineno + 1, BENCH_LINE_MAX)
                     : benchargs_prompts_add_line(pf, path, lineno + 1, line.data, line.len, e);
    buf_deinit(&line);
    fclose(f);
    if (!rc && pf->n == 0)
        rc = err_set(e, ERR_FORMAT, "%.256s holds no prompt", path);
    return rc;
}

void benchargs_prompts_free(benchargs_prompts *pf)
{
    for (size_t i = 0; i < pf->n; i++)
        json_decref(pf->msgs[i]);
    free(pf->msgs);
    free(pf->max_tokens);
    memset(pf, 0, sizeof *pf);
}
