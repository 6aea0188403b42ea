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

/* --------------------------------------------------------- chunk scan -- */

/*
 * A recursive-descent JSON reader over the bytes, allocating nothing. It
 * mirrors jansson's decoder on what it accepts (see benchargs.h) and, for
 * the few members ferry bench reads, keeps only what json_object_get would
 * return: each occurrence of a key resets what an earlier one set.
 */

#define CHUNK_DEPTH_MAX 2048 // jansson's JSON_PARSER_MAX_DEPTH: values nested at most this deep

typedef struct scan {
    const unsigned char *p, *end;
    int depth;
} scan;

/* What a value is asked to yield, by its place in the chunk. */
typedef enum want {
    W_NONE,     // validate only
    W_USAGE,    // the top-level "usage": an object with token counts
    W_COUNT,    // usage.prompt_tokens / completion_tokens: an integer
    W_CHOICES,  // the top-level "choices": element 0 matters
    W_CHOICE0,  // choices[0]: "delta" and "text"
    W_DELTA,    // choices[0].delta: "content" and "reasoning_content"
    W_NONEMPTY, // a string whose being non-empty matters
} want;

/* What the walk found (last occurrence wins at each level). */
typedef struct found {
    bool has_error;
    bool has_usage; // the last "usage" was an object
    int64_t pt, ct;
    bool delta_content, delta_reasoning, text; // non-empty strings at their places
    int64_t count;                             // W_COUNT result, -1 when not an integer
    bool nonempty;                             // W_NONEMPTY result
} found;

static int scan_value(scan *s, want w, found *f);

static void skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629) at p, or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t k = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (k == 0 || (size_t)(end - p) < k)
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (k == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)))
        return 0; // overlong, or a UTF-16 surrogate
    if (k == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)))
        return 0; // overlong, or past U+10FFFF
    return k;
}

/*
 * A string at s->p (the opening quote). Copies up to cap bytes of its
 * decoded text into key (when given; cap 0 otherwise) and sets *n to the
 * decoded length. Returns 0 or -1.
 */
static int scan_string(scan *s, char *key, size_t cap, size_t *n)
{
    size_t len = 0;
    s->p++; // the quote
    while (s->p < s->end) {
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            *n = len;
            return 0;
        }
        if (c < 0x20)
            return -1; // a raw control character
        if (c == '\\') {
            if (s->end - s->p < 2)
                return -1;
            unsigned e = s->p[1];
            char one = 0;
            switch (e) {
            case '"':
                one = '"';
                break;
            case '\\':
                one = '\\';
                break;
            case '/':
                one = '/';
                break;
            case 'b':
                one = '\b';
                break;
            case 'f':
                one = '\f';
                break;
            case 'n':
                one = '\n';
                break;
            case 'r':
                one = '\r';
                break;
            case 't':
                one = '\t';
                break;
            case 'u':
                break;
            default:
                return -1;
            }
            if (one) {
                if (len < cap)
                    key[len] = one;
                len++;
                s->p += 2;
                continue;
            }
            uint32_t cp, lo;
            if (s->end - s->p < 6 || hex4(s->p + 2, &cp))
                return -1;
            s->p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) { // a high surrogate needs its low half
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || hex4(s->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                s->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
                return -1; // a lone low surrogate; \u0000 (jansson refuses it by default)
            }
            size_t k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (len < cap)
                key[len] = (char)(k == 1 ? cp : 0xFF); // only ASCII can match a key we read
            len += k;
            continue;
        }
        size_t k = c < 0x80 ? 1 : utf8_len(s->p, s->end);
        if (k == 0)
            return -1;
        if (len < cap)
            key[len] = (char)(k == 1 ? c : 0xFF);
        len += k;
        s->p += k;
    }
    return -1; // unterminated
}

/* A number at s->p; *count its value when it is an integer (else -1). */
static int scan_number(scan *s, int64_t *count)
{
    const unsigned char *start = s->p;
    bool neg = false;
    if (s->p < s->end && *s->p == '-') {
        neg = true;
        s->p++;
    }
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
        return -1;
    uint64_t mag = 0;
    bool big = false; // past int64's range, for an integer
    if (*s->p == '0') {
        s->p++;
        if (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            return -1; // a leading zero
    } else {
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
            unsigned d = *s->p++ - '0';
            if (mag > (UINT64_MAX - d) / 10)
                big = true;
            else
                mag = mag * 10 + d;
        }
    }
    bool is_real = false;
    if (s->p < s->end && *s->p == '.') {
        is_real = true;
        s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
            return -1;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        is_real = true;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
            return -1;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    }
    *count = -1;
    if (!is_real) {
        if (big || mag > (uint64_t)INT64_MAX + (neg ? 1 : 0))
            return -1; // jansson: "too big integer"
        *count = neg ? (mag ? (int64_t)(0 - mag) : 0) : (int64_t)mag;
        return 0;
    }
    // A real that overflows a double is an error (jansson: "real number
    // overflow"); underflow to 0 is not. Only strtod knows, on a copy.
    size_t n = (size_t)(s->p - start);
    char small[128], *t = n < sizeof small ? small : malloc(n + 1);
    if (!t)
        return -1;
    memcpy(t, start, n);
    t[n] = 0;
    errno = 0;
    double v = strtod(t, NULL);
    bool overflow = errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL);
    if (t != small)
        free(t);
    return overflow ? -1 : 0;
}

static int scan_literal(scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

/* The member key of an object at what level w, mapped to what its value should yield. */
static want member_want(want w, const char *key, size_t n, found *f, int64_t **count_slot,
                        bool **flag_slot)
{
    *count_slot = NULL;
    *flag_slot = NULL;
#define KEY_IS(lit) (n == sizeof(lit) - 1 && memcmp(key, lit, n) == 0)
    switch (w) {
    case W_NONE: // the top level (the caller passes W_NONE only below it)
        break;
    case W_USAGE:
        if (KEY_IS("prompt_tokens")) {
            *count_slot = &f->pt;
            return W_COUNT;
        }
        if (KEY_IS("completion_tokens")) {
            *count_slot = &f->ct;
            return W_COUNT;
        }
        break;
    case W_CHOICE0:
        if (KEY_IS("delta")) {
            f->delta_content = f->delta_reasoning = false; // a later delta replaces
            return W_DELTA;
        }
        if (KEY_IS("text")) {
            *flag_slot = &f->text;
            return W_NONEMPTY;
        }
        break;
    case W_DELTA:
        if (KEY_IS("content")) {
            *flag_slot = &f->delta_content;
            return W_NONEMPTY;
        }
        if (KEY_IS("reasoning_content")) {
            *flag_slot = &f->delta_reasoning;
            return W_NONEMPTY;
        }
        break;
    default:
        break;
    }
#undef KEY_IS
    return W_NONE;
}

/* An object at s->p ('{'). top: the chunk itself, whose members are read by name. */
static int scan_object(scan *s, want w, bool top, found *f)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
            return -1;
        char key[24];
        size_t kn;
        if (scan_string(s, key, sizeof key, &kn))
            return -1;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        skip_ws(s);
        int64_t *count_slot = NULL;
        bool *flag_slot = NULL;
        want mw = W_NONE;
        if (top) {
            if (kn == 5 && memcmp(key, "error", 5) == 0) {
                f->has_error = true;
            } else if (kn == 5 && memcmp(key, "usage", 5) == 0) {
                f->has_usage = false; // this occurrence decides
                f->pt = f->ct = -1;
                mw = W_USAGE;
            } else if (kn == 7 && memcmp(key, "choices", 7) == 0) {
                f->delta_content = f->delta_reasoning = f->text = false;
                mw = W_CHOICES;
            }
        } else if (kn <= sizeof key) {
            mw = member_want(w, key, kn, f, &count_slot, &flag_slot);
        }
        if (count_slot)
            *count_slot = -1;
        if (flag_slot)
            *flag_slot = false;
        if (scan_value(s, mw, f))
            return -1;
        if (count_slot)
            *count_slot = f->count;
        if (flag_slot)
            *flag_slot = f->nonempty;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
    }
}

static int scan_array(scan *s, want w, found *f)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (size_t i = 0;; i++) {
        skip_ws(s);
        // choices[0] is read; every other element only validated
        if (scan_value(s, w == W_CHOICES && i == 0 ? W_CHOICE0 : W_NONE, f))
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
    }
}

static int scan_value(scan *s, want w, found *f)
{
    if (++s->depth > CHUNK_DEPTH_MAX)
        return -1;
    f->count = -1;
    f->nonempty = false;
    int rc;
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '{':
        rc = scan_object(s, w, false, f);
        if (!rc && w == W_USAGE)
            f->has_usage = true;
        break;
    case '[':
        rc = scan_array(s, w, f);
        break;
    case '"': {
        size_t n;
        rc = scan_string(s, NULL, 0, &n);
        f->nonempty = !rc && w == W_NONEMPTY && n > 0;
        break;
    }
    case 't':
        rc = scan_literal(s, "true", 4);
        break;
    case 'f':
        rc = scan_literal(s, "false", 5);
        break;
    case 'n':
        rc = scan_literal(s, "null", 4);
        break;
    default: {
        int64_t v;
        rc = scan_number(s, &v);
        if (!rc && w == W_COUNT)
            f->count = v;
        break;
    }
    }
    // A nested value's results must not leak into its parent's member: only
    // the values asked for set count / nonempty.
    if (w != W_COUNT)
        f->count = -1;
    if (w != W_NONEMPTY)
        f->nonempty = false;
    s->depth--;
    return rc;
}

int benchargs_chunk_scan(const char *p, size_t len, bench_chunk *out)
{
    scan s = {(const unsigned char *)p, (const unsigned char *)p + len, 0};
    found f = {.pt = -1, .ct = -1};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return ERR_FORMAT; // jansson wants '[' or '{', and then an object here
    s.depth = 1;
    if (scan_object(&s, W_NONE, true, &f))
        return ERR_FORMAT;
    skip_ws(&s);
    if (s.p != s.end)
        return ERR_FORMAT; // jansson: "end of file expected"
    out->has_error = f.has_error;
    out->has_content = f.delta_content || f.delta_reasoning || f.text;
    out->prompt_tokens = f.has_usage ? f.pt : -1;
    out->completion_tokens = f.has_usage ? f.ct : -1;
    return 0;
}
