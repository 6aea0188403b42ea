/*
 * cli/cmd_guard — `ferry guard scan` and `ferry guard eval`.
 *
 * scan runs guard_req_check_input on stdin: the very call the request pipeline
 * makes, with the same policy file, so a batch check or a tuning run sees what
 * the server would do. eval scores the detectors on a labelled JSONL set
 * (format in docs/guard.md) and prints precision, recall and F1 per detector
 * and type. jansson comes in through the guard module's link interface.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "guard/guard.h"

#define LINE_MAX_BYTES (16u * 1024 * 1024)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ferry guard scan [--json] [--lines] [--redact] [--audit] [--policy F]\n"
            "                        [--route R] [--key K]\n"
            "       ferry guard eval --data F.jsonl [--policy F] [--json] [--errors]\n"
            "\n"
            "scan  reads stdin (one text, or one per line with --lines) and applies the\n"
            "      guard policy (built-in default, or --policy F: YAML or JSON, see\n"
            "      docs/guard.md). Prints the decision per\n"
            "      text; --json prints {\"action\", \"injection\", \"entities\", \"blocklist\"}\n"
            "      with offsets in Unicode code points; --redact adds the redacted text;\n"
            "      --audit writes the audit records (JSON lines) to stderr.\n"
            "      Exit 0 when nothing was blocked, 1 when some text was blocked.\n"
            "eval  precision, recall and F1 per detector and type on labelled data\n"
            "      (format in docs/guard.md); --errors lists every miss on stderr.\n");
}

/* Code-point offsets for increasing byte offsets without rescanning. */
typedef struct cp_cursor {
    const char *t;
    size_t len, byte, cp;
} cp_cursor;

static size_t cp_at(cp_cursor *c, size_t off)
{
    if (off < c->byte) {
        c->byte = 0;
        c->cp = 0;
    }
    c->cp += guard_cp_offset(c->t + c->byte, c->len - c->byte, off - c->byte);
    c->byte = off;
    return c->cp;
}

static const char *span_name(const guard_policy *p, const guard_span *sp)
{
    if (sp->type == GUARD_T_CUSTOM)
        return guard_policy_custom_name(p, sp->sub);
    return guard_type_name(sp->type);
}

static void audit_print(void *ctx, const guard_audit *a)
{
    (void)ctx;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:f, s:s}", "request_id",
                          a->request_id, "policy_id", a->policy_id, "stage", a->stage, "detector",
                          a->detector, "type", a->type, "action", guard_action_name(a->action),
                          "span_bytes", (json_int_t)a->span_bytes, "score", a->score, "hash",
                          a->hash_hex);
    if (!o)
        return;
    json_dumpf(o, stderr, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(4));
    fputc('\n', stderr);
    json_decref(o);
}

typedef struct scan_opts {
    bool json, redact, audit;
} scan_opts;

/* A JSON number as jansson prints it with JSON_REAL_PRECISION(4): "%.4g",
 * ".0" added to integral values, exponent without '+' and leading zeros. */
static int emit_real(buf *b, double v)
{
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, "%.4g", v);
    if (n <= 0 || (size_t)n >= sizeof tmp)
        return ERR_INTERNAL;
    char out[56];
    size_t w = 0;
    bool dot = false;
    for (int i = 0; i < n; i++) {
        char c = tmp[i];
        if (c == '.' || c == 'e')
            dot = true;
        if (c == 'e') {
            out[w++] = 'e';
            i++;
            if (tmp[i] == '-')
                out[w++] = '-';
            else if (tmp[i] != '+')
                i--;
            while (i + 1 < n - 1 && tmp[i + 1] == '0')
                i++;
            continue;
        }
        out[w++] = c;
    }
    if (!dot) {
        out[w++] = '.';
        out[w++] = '0';
    }
    return buf_append(b, out, w);
}

/* Appends the decimal digits of v (no printf: at --lines rates formatting
 * the offsets through vfprintf cost more than some detectors). */
static int emit_uint(buf *b, size_t v)
{
    char tmp[24];
    size_t k = sizeof tmp;
    do {
        tmp[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + k, sizeof tmp - k);
}

/* Appends "<pre><a>, \"end\": <b>}" for a span. */
static int emit_span_end(buf *j, size_t a, size_t b)
{
    int rc = emit_uint(j, a);
    if (rc == 0)
        rc = buf_append_str(j, ", \"end\": ");
    if (rc == 0)
        rc = emit_uint(j, b);
    if (rc == 0)
        rc = buf_append_char(j, '}');
    return rc;
}

/* One text as one JSON line:
 * {"action": "...", "injection": {"score": S, "attack": B},
 *  "entities": [{"type": "...", "start": N, "end": N}, ...],
 *  "blocklist": [{"term_id": N, "start": N, "end": N}, ...]} (+ "redacted").
 * Written by hand rather than through jansson: at --lines rates building a
 * tree per line cost as much as a detector. */
static int emit_line(buf *j, const guard_policy *p, const guard_result *res, const char *text,
                     size_t len, const buf *redacted)
{
    cp_cursor cc = {text, len, 0, 0};
    int rc = buf_append_str(j, "{\"action\": \"");
    if (rc == 0)
        rc = buf_append_str(j, guard_action_name(res->action));
    if (rc == 0)
        rc = buf_append_str(j, "\", \"injection\": {\"score\": ");
    if (rc == 0)
        rc = res->inj_score == 0 ? buf_append_str(j, "0.0") : emit_real(j, res->inj_score);
    if (rc == 0)
        rc = buf_append_str(j, res->inj_attack ? ", \"attack\": true}, \"entities\": ["
                                               : ", \"attack\": false}, \"entities\": [");
    for (size_t i = 0; rc == 0 && i < res->n_entities; i++) {
        const guard_span *sp = &res->entities[i];
        size_t a = cp_at(&cc, sp->start), b = cp_at(&cc, sp->end);
        const char *nm = span_name(p, sp);
        rc = buf_append_str(j, i ? ", {\"type\": \"" : "{\"type\": \"");
        if (rc == 0)
            rc = buf_append_json_str(j, nm, strlen(nm));
        if (rc == 0)
            rc = buf_append_str(j, "\", \"start\": ");
        if (rc == 0)
            rc = emit_span_end(j, a, b);
    }
    if (rc == 0)
        rc = buf_append_str(j, "], \"blocklist\": [");
    cc = (cp_cursor){text, len, 0, 0};
    for (size_t i = 0; rc == 0 && i < res->n_terms; i++) {
        const guard_span *sp = &res->terms[i];
        size_t a = cp_at(&cc, sp->start), b = cp_at(&cc, sp->end);
        rc = buf_append_str(j, i ? ", {\"term_id\": " : "{\"term_id\": ");
        if (rc == 0)
            rc = emit_uint(j, sp->sub);
        if (rc == 0)
            rc = buf_append_str(j, ", \"start\": ");
        if (rc == 0)
            rc = emit_span_end(j, a, b);
    }
    if (rc == 0)
        rc = buf_append_str(j, "]");
    if (rc == 0 && redacted) {
        rc = buf_append_str(j, ", \"redacted\": \"");
        if (rc == 0)
            rc = buf_append_json_str(j, redacted->data ? redacted->data : "", redacted->len);
        if (rc == 0)
            rc = buf_append_str(j, "\"");
    }
    if (rc == 0)
        rc = buf_append_str(j, "}\n");
    return rc;
}

/* Per-run buffers, reused from text to text. */
typedef struct scan_bufs {
    buf out;  // text forwarded (redacted)
    buf line; // the JSON line
} scan_bufs;

/* One text = one request (r is reset, keeping its scratch memory).
 * Returns 1 when blocked, 0 otherwise, 2 on error. */
static int scan_one(guard_req *r, const guard_policy *p, const scan_opts *o, scan_bufs *sb,
                    const char *text, size_t len, size_t idx)
{
    char rid[32] = "scan-";
    char dig[24];
    size_t k = sizeof dig;
    do {
        dig[--k] = (char)('0' + idx % 10);
        idx /= 10;
    } while (idx);
    memcpy(rid + 5, dig + k, sizeof dig - k);
    rid[5 + sizeof dig - k] = '\0';
    guard_req_reset(r, rid);
    buf *out = &sb->out;
    buf_reset(out);
    // Redaction grows a text by at most a placeholder per finding.
    out->max_bytes = len * 4 + 4096;
    guard_result res;
    err_msg e;
    err_clear(&e);
    int rc = guard_req_check_input(r, text, len, out, &res, &e);
    if (rc && rc != ERR_POLICY) {
        cli_errorf("%s", err_text(&e, rc));
        return 2;
    }
    if (o->json) {
        buf_reset(&sb->line);
        int wr = emit_line(&sb->line, p, &res, text, len, o->redact && rc == 0 ? out : NULL);
        if (wr) {
            cli_errorf("guard scan: cannot format the result (%s)", err_str(wr));
            return 2;
        }
        fwrite(sb->line.data, 1, sb->line.len, stdout);
    } else {
        const char *act = guard_action_name(res.action);
        cp_cursor cc = {text, len, 0, 0};
        printf("action: %s\ninjection: %.4f%s\n", act, res.inj_score,
               res.inj_attack ? " (attack)" : "");
        for (size_t i = 0; i < res.n_entities; i++) {
            const guard_span *sp = &res.entities[i];
            size_t a = cp_at(&cc, sp->start), b = cp_at(&cc, sp->end);
            printf("entity: %s %zu-%zu\n", span_name(p, sp), a, b);
        }
        cc = (cp_cursor){text, len, 0, 0};
        for (size_t i = 0; i < res.n_terms; i++) {
            const guard_span *sp = &res.terms[i];
            size_t a = cp_at(&cc, sp->start), b = cp_at(&cc, sp->end);
            printf("blocklist: term %u %zu-%zu\n", sp->sub, a, b);
        }
        if (o->redact && rc == 0 && res.action == GUARD_REDACT)
            printf("redacted: %.*s\n", (int)out->len, out->data ? out->data : "");
    }
    return rc == ERR_POLICY ? 1 : 0;
}

static int load_engine(const char *policy, guard_engine **g)
{
    err_msg e;
    err_clear(&e);
    guard_config cfg = guard_config_default();
    int rc = policy ? guard_engine_load(policy, &cfg, g, &e) : guard_engine_default(&cfg, g, &e);
    if (rc) {
        cli_errorf("%s", err_text(&e, rc));
        return 2;
    }
    return 0;
}

static int cmd_scan(int argc, char **argv)
{
    scan_opts o = {false, false, false};
    bool lines = false;
    const char *policy = NULL, *route = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0)
            o.json = true;
        else if (strcmp(a, "--lines") == 0)
            lines = true;
        else if (strcmp(a, "--redact") == 0)
            o.redact = true;
        else if (strcmp(a, "--audit") == 0)
            o.audit = true;
        else if (strcmp(a, "--policy") == 0 && i + 1 < argc)
            policy = argv[++i];
        else if (strcmp(a, "--route") == 0 && i + 1 < argc)
            route = argv[++i];
        else if (strcmp(a, "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            cli_errorf("guard scan: unknown or incomplete option \"%s\" (see --help)", a);
            return 2;
        }
    }
    guard_engine *g = NULL;
    int rc = load_engine(policy, &g);
    if (rc)
        return rc;
    const guard_policy *p = guard_engine_select(g, route, key);
    guard_req *r = guard_req_new(g, p, NULL, o.audit ? audit_print : NULL, NULL);
    if (!r) {
        cli_errorf("guard: out of memory");
        guard_engine_free(g);
        return 2;
    }
    int status = 0;
    scan_bufs sb;
    buf_init(&sb.out, 4096);
    buf_init(&sb.line, LINE_MAX_BYTES * 8);
    if (lines) {
        char *line = NULL;
        size_t cap = 0, idx = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
            int rs = scan_one(r, p, &o, &sb, line, (size_t)n, idx++);
            if (rs == 2) {
                status = 2;
                break;
            }
            status |= rs;
        }
        free(line);
    } else {
        buf in;
        buf_init(&in, LINE_MAX_BYTES);
        char tmp[65536];
        size_t n;
        while ((n = fread(tmp, 1, sizeof tmp, stdin)) > 0) {
            if (buf_append(&in, tmp, n) != 0) {
                cli_errorf("guard scan: input over %u bytes", LINE_MAX_BYTES);
                buf_deinit(&in);
                buf_deinit(&sb.out);
                buf_deinit(&sb.line);
                guard_req_free(r);
                guard_engine_free(g);
                return 2;
            }
        }
        status = scan_one(r, p, &o, &sb, in.data ? in.data : "", in.len, 0);
        buf_deinit(&in);
    }
    buf_deinit(&sb.out);
    buf_deinit(&sb.line);
    fflush(stdout);
    guard_req_free(r);
    guard_engine_free(g);
    return status;
}

/* ---- eval ------------------------------------------------------------------- */

typedef struct stat_row {
    char detector[16];
    char type[40];
    size_t tp, fp, fn;
} stat_row;

typedef struct stats {
    stat_row rows[96];
    size_t n;
} stats;

static stat_row *row(stats *s, const char *det, const char *type)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->rows[i].detector, det) == 0 && strcmp(s->rows[i].type, type) == 0)
            return &s->rows[i];
    if (s->n == ARRAY_LEN(s->rows))
        return &s->rows[s->n - 1];
    stat_row *r = &s->rows[s->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->detector, sizeof r->detector, "%s", det);
    snprintf(r->type, sizeof r->type, "%s", type);
    return r;
}

/* Byte offset of code point index cp in text, or SIZE_MAX when past the end. */
static size_t cp_to_byte(const char *t, size_t len, size_t cp)
{
    size_t i = 0, k = 0;
    while (k < cp && i < len) {
        unsigned char c = (unsigned char)t[i];
        size_t step = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        i += step;
        k++;
    }
    return k == cp && i <= len ? i : SIZE_MAX;
}

typedef struct gold {
    const char *type;
    size_t start, end;
    bool used;
} gold;

static const char *detector_of(const guard_policy *p, const char *type)
{
    guard_type t;
    if (guard_type_parse(type, &t) == 0)
        return guard_type_detector(t);
    for (size_t i = 0; i < guard_policy_custom_count(p); i++)
        if (strcmp(guard_policy_custom_name(p, i), type) == 0)
            return "custom";
    return "unknown";
}

static int eval_line(const guard_policy *p, guard_scratch *sc, json_t *o, size_t lineno,
                     stats *st, bool errors)
{
    const char *text;
    size_t len;
    json_t *jt = json_object_get(o, "text");
    if (!json_is_string(jt)) {
        cli_errorf("guard eval: line %zu: \"text\" must be a string", lineno);
        return 2;
    }
    text = json_string_value(jt);
    len = json_string_length(jt);
    guard_result res;
    err_msg e;
    err_clear(&e);
    int rc = guard_scan(p, sc, text, len, GUARD_SCAN_ALL, &res, &e);
    if (rc) {
        cli_errorf("guard eval: line %zu: %s", lineno, err_text(&e, rc));
        return 2;
    }
    // Injection: one binary label per text.
    json_t *ji = json_object_get(o, "injection");
    bool want = ji && json_is_true(ji);
    stat_row *ri = row(st, "injection", "injection");
    if (want && res.inj_attack)
        ri->tp++;
    else if (want)
        ri->fn++;
    else if (res.inj_attack)
        ri->fp++;
    if (errors && want != res.inj_attack)
        fprintf(stderr, "line %zu: injection %s (score %.3f): %.120s\n", lineno,
                want ? "missed" : "false alarm", res.inj_score, text);
    // Entities: same type and overlapping span, matched one to one.
    gold golds[256];
    size_t ng = 0;
    json_t *je = json_object_get(o, "entities");
    size_t i;
    json_t *x;
    json_array_foreach(je, i, x)
    {
        const char *type = json_string_value(json_object_get(x, "type"));
        if (!type || ng == ARRAY_LEN(golds)) {
            cli_errorf("guard eval: line %zu: entity %zu needs a \"type\"", lineno, i);
            return 2;
        }
        json_t *jv = json_object_get(x, "value");
        size_t a, b;
        if (json_is_string(jv)) {
            const char *v = json_string_value(jv);
            const char *f = strstr(text, v);
            if (!f || json_string_length(jv) == 0) {
                cli_errorf("guard eval: line %zu: value \"%s\" is not in the text", lineno, v);
                return 2;
            }
            a = (size_t)(f - text);
            b = a + json_string_length(jv);
        } else {
            json_t *js = json_object_get(x, "start"), *jn = json_object_get(x, "end");
            if (!json_is_integer(js) || !json_is_integer(jn) || json_integer_value(js) < 0 ||
                json_integer_value(jn) < json_integer_value(js)) {
                cli_errorf("guard eval: line %zu: entity %zu needs \"value\" or start <= end",
                           lineno, i);
                return 2;
            }
            a = cp_to_byte(text, len, (size_t)json_integer_value(js));
            b = cp_to_byte(text, len, (size_t)json_integer_value(jn));
            if (a == SIZE_MAX || b == SIZE_MAX) {
                cli_errorf("guard eval: line %zu: entity %zu is past the end of the text", lineno,
                           i);
                return 2;
            }
        }
        golds[ng++] = (gold){type, a, b, false};
    }
    for (size_t k = 0; k < res.n_entities; k++) {
        const guard_span *sp = &res.entities[k];
        const char *type = span_name(p, sp);
        bool hit = false;
        for (size_t gi = 0; gi < ng && !hit; gi++) {
            gold *gd = &golds[gi];
            if (!gd->used && strcmp(gd->type, type) == 0 && sp->start < gd->end &&
                gd->start < sp->end) {
                gd->used = true;
                hit = true;
            }
        }
        stat_row *r = row(st, detector_of(p, type), type);
        if (hit) {
            r->tp++;
        } else {
            r->fp++;
            if (errors)
                fprintf(stderr, "line %zu: false %s: \"%.*s\"\n", lineno, type,
                        (int)(sp->end - sp->start), text + sp->start);
        }
    }
    for (size_t gi = 0; gi < ng; gi++) {
        if (golds[gi].used)
            continue;
        row(st, detector_of(p, golds[gi].type), golds[gi].type)->fn++;
        if (errors)
            fprintf(stderr, "line %zu: missed %s: \"%.*s\"\n", lineno, golds[gi].type,
                    (int)(golds[gi].end - golds[gi].start), text + golds[gi].start);
    }
    // Blocklist: expected term ids vs found ids, per text.
    json_t *jb = json_object_get(o, "blocklist");
    if (guard_policy_term_count(p) > 0) {
        stat_row *rb = row(st, "blocklist", "blocklist");
        size_t want_ids[64], nw = 0;
        json_array_foreach(jb, i, x)
        {
            if (json_is_integer(x) && nw < ARRAY_LEN(want_ids))
                want_ids[nw++] = (size_t)json_integer_value(x);
        }
        bool seen[64] = {false};
        for (size_t k = 0; k < res.n_terms; k++) {
            size_t id = res.terms[k].sub;
            bool dup = false;
            for (size_t q = 0; q < k; q++)
                dup |= res.terms[q].sub == id;
            if (dup)
                continue;
            bool hit = false;
            for (size_t q = 0; q < nw; q++)
                if (want_ids[q] == id) {
                    seen[q] = true;
                    hit = true;
                }
            if (hit) {
                rb->tp++;
            } else {
                rb->fp++;
                if (errors)
                    fprintf(stderr, "line %zu: false blocklist term %zu: %.120s\n", lineno, id,
                            text);
            }
        }
        for (size_t q = 0; q < nw; q++)
            if (!seen[q]) {
                rb->fn++;
                if (errors)
                    fprintf(stderr, "line %zu: missed blocklist term %zu: %.120s\n", lineno,
                            want_ids[q], text);
            }
    }
    return 0;
}

static double ratio(size_t a, size_t b)
{
    return b ? (double)a / (double)b : 1.0;
}

static void add_into(stat_row *d, const stat_row *s)
{
    d->tp += s->tp;
    d->fp += s->fp;
    d->fn += s->fn;
}

static int cmd_eval(int argc, char **argv)
{
    const char *data = NULL, *policy = NULL;
    bool json = false, errors = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(a, "--policy") == 0 && i + 1 < argc)
            policy = argv[++i];
        else if (strcmp(a, "--json") == 0)
            json = true;
        else if (strcmp(a, "--errors") == 0)
            errors = true;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            cli_errorf("guard eval: unknown or incomplete option \"%s\" (see --help)", a);
            return 2;
        }
    }
    if (!data) {
        cli_errorf("guard eval: --data F.jsonl is required");
        return 2;
    }
    FILE *f = fopen(data, "rb");
    if (!f) {
        cli_errorf("guard eval: cannot open %s", data);
        return 2;
    }
    guard_engine *g = NULL;
    int rc = load_engine(policy, &g);
    if (rc) {
        fclose(f);
        return rc;
    }
    const guard_policy *p = guard_engine_select(g, NULL, NULL);
    guard_scratch *sc = guard_scratch_new();
    stats *st = calloc(1, sizeof *st);
    char *line = NULL;
    size_t cap = 0, lineno = 0, texts = 0;
    ssize_t n;
    rc = sc && st ? 0 : 2;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n <= 1 || line[0] == '#')
            continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)n, 0, &je);
        if (!o || !json_is_object(o)) {
            cli_errorf("guard eval: %s line %zu: %s", data, lineno, o ? "not an object" : je.text);
            json_decref(o);
            rc = 2;
            break;
        }
        rc = eval_line(p, sc, o, lineno, st, errors);
        json_decref(o);
        texts++;
    }
    free(line);
    fclose(f);
    if (rc == 0) {
        // Totals per detector family, after the per-type rows.
        stats tot = {0};
        for (size_t i = 0; i < st->n; i++)
            if (strcmp(st->rows[i].detector, st->rows[i].type) != 0)
                add_into(row(&tot, st->rows[i].detector, "*"), &st->rows[i]);
        json_t *rows = json_array();
        if (!json)
            printf("%-10s %-14s %6s %6s %6s %9s %9s %9s\n", "detector", "type", "tp", "fp", "fn",
                   "precision", "recall", "f1");
        for (int pass = 0; pass < 2; pass++) {
            stats *S = pass == 0 ? st : &tot;
            for (size_t i = 0; i < S->n; i++) {
                stat_row *r = &S->rows[i];
                double pr = ratio(r->tp, r->tp + r->fp), re = ratio(r->tp, r->tp + r->fn);
                double f1 = pr + re > 0 ? 2 * pr * re / (pr + re) : 0;
                if (json)
                    json_array_append_new(
                        rows, json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f}", "detector",
                                        r->detector, "type", r->type, "tp", (json_int_t)r->tp,
                                        "fp", (json_int_t)r->fp, "fn", (json_int_t)r->fn,
                                        "precision", pr, "recall", re, "f1", f1));
                else
                    printf("%-10s %-14s %6zu %6zu %6zu %9.3f %9.3f %9.3f\n", r->detector,
                           r->type, r->tp, r->fp, r->fn, pr, re, f1);
            }
        }
        if (json) {
            json_t *o = json_pack("{s:I, s:s, s:o}", "texts", (json_int_t)texts, "policy",
                                  guard_policy_id(p), "rows", rows);
            json_dumpf(o, stdout, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(4));
            fputc('\n', stdout);
            json_decref(o);
        } else {
            json_decref(rows);
            printf("texts: %zu, policy: %s\n", texts, guard_policy_id(p));
        }
    }
    free(st);
    guard_scratch_free(sc);
    guard_engine_free(g);
    return rc;
}

int cli_cmd_guard(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "scan") == 0)
        return cmd_scan(argc - 1, argv + 1);
    if (strcmp(argv[1], "eval") == 0)
        return cmd_eval(argc - 1, argv + 1);
    cli_errorf("guard: unknown subcommand \"%s\" (scan, eval)", argv[1]);
    return 2;
}
