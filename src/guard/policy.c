/*
 * guard/policy — the policy document (JSON, via jansson) and the engine.
 *
 * The config loader (libcyaml) had not landed when this was written, so the
 * guard reads its own JSON file; docs/guard.md has the format. Unknown keys
 * are errors (a typo must not silently turn a detector off). Every error names
 * the policy and the key: `guard: policy "strict": actions.email: "redakt" is
 * not one of off, flag, redact, block`.
 *
 * Blocklist term ids are 0-based, in order: the inline "terms" array, then
 * each file's lines (blank lines and '#' comments skipped).
 */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "guard/guard_int.h"

#define TERMS_MAX 1000000
#define TERM_BYTES_MAX 1024
#define CUSTOM_MAX 64
#define CUSTOM_NAME_MAX 32
#define POLICIES_MAX 256
#define MAP_MAX 65536
#define TERMS_FILE_MAX (64u * 1024 * 1024)

static const char *const TYPE_NAMES[GUARD_T_COUNT_] = {
    "email", "phone", "cn_id",       "credit_card", "iban",      "ipv4",
    "ipv6",  "api_key", "private_key", "custom",    "blocklist",
};

const char *guard_type_name(guard_type t)
{
    return (unsigned)t < GUARD_T_COUNT_ ? TYPE_NAMES[t] : "unknown";
}

const char *guard_type_detector(guard_type t)
{
    switch (t) {
    case GUARD_T_API_KEY:
    case GUARD_T_PRIVATE_KEY:
        return "secrets";
    case GUARD_T_CUSTOM:
        return "custom";
    case GUARD_T_BLOCKLIST:
        return "blocklist";
    default:
        return "pii";
    }
}

int guard_type_parse(const char *s, guard_type *out)
{
    for (int i = 0; i < GUARD_T_COUNT_; i++)
        if (strcmp(s, TYPE_NAMES[i]) == 0) {
            *out = (guard_type)i;
            return 0;
        }
    return ERR_INVAL;
}

const char *guard_action_name(guard_action a)
{
    static const char *const n[] = {"off", "allow", "flag", "redact", "block"};
    return (unsigned)a <= GUARD_BLOCK ? n[a] : "unknown";
}

int guard_action_parse(const char *s, guard_action *out)
{
    static const struct {
        const char *n;
        guard_action a;
    } t[] = {{"off", GUARD_OFF}, {"flag", GUARD_FLAG}, {"redact", GUARD_REDACT},
             {"block", GUARD_BLOCK}};
    for (size_t i = 0; i < ARRAY_LEN(t); i++)
        if (strcmp(s, t[i].n) == 0) {
            *out = t[i].a;
            return 0;
        }
    return ERR_INVAL;
}

guard_config guard_config_default(void)
{
    guard_config c;
    memset(&c, 0, sizeof c);
    c.text_max_bytes = 16u * 1024 * 1024;
    c.spans_max = 65536;
    return c;
}

void policy_defaults(guard_policy *p)
{
    memset(p, 0, sizeof *p);
    for (int t = GUARD_T_EMAIL; t <= GUARD_T_IBAN; t++)
        p->act[t] = GUARD_REDACT;
    p->act[GUARD_T_IPV4] = GUARD_FLAG;
    p->act[GUARD_T_IPV6] = GUARD_FLAG;
    p->act[GUARD_T_API_KEY] = GUARD_BLOCK;
    p->act[GUARD_T_PRIVATE_KEY] = GUARD_BLOCK;
    p->act_blocklist = GUARD_BLOCK;
    p->act_injection = GUARD_BLOCK;
    p->inj_threshold = 0.5;
    p->judge_threshold = 0.3;
    p->judge_on = true;
    p->decode_depth = 2;
    p->restore = true;
    p->stream_window = 256;
    p->stream_max = 64 * 1024;
    p->retrieved_quote = false;
}

void policy_deinit(guard_policy *p)
{
    free(p->id);
    for (size_t i = 0; i < p->n_custom; i++) {
        free(p->custom[i].name);
        free(p->custom[i].placeholder);
        pcre2_code_free(p->custom[i].re);
    }
    free(p->custom);
    pcre2_match_context_free(p->mctx);
    ac_free(&p->terms);
    memset(p, 0, sizeof *p);
}

/* ---- loading --------------------------------------------------------------- */

/* Where a document came from, for messages: file (NULL: in memory) and the
 * node positions (YAML only; jansson keeps none). */
typedef struct doc_src {
    const char *file;
    const guard_pos_map *pm;
} doc_src;

/* "file:line:col: ", "file: " or "" for a node of the document. */
static const char *where(const doc_src *d, const void *node, char *out, size_t cap)
{
    uint32_t line, col;
    if (d && d->pm && guard_pos_find(d->pm, node, &line, &col))
        snprintf(out, cap, "%s:%u:%u: ", d->file ? d->file : "policy", line, col);
    else if (d && d->file)
        snprintf(out, cap, "%s: ", d->file);
    else
        out[0] = '\0';
    return out;
}

typedef struct loader {
    const char *base_dir;
    const char *pid; // policy id for messages
    err_msg *e;
    const doc_src *src;
    const json_t *cur; // the node being checked (its position goes into messages)
    // growing list of normalized terms
    char **terms;
    size_t *lens;
    size_t n, cap;
} loader;

static int bad(loader *L, const char *key, const char *what)
{
    char w[512];
    return err_set(L->e, ERR_FORMAT, "guard: %spolicy \"%s\": %s: %s",
                   where(L->src, L->cur, w, sizeof w), L->pid, key, what);
}

static int get_action(loader *L, json_t *v, const char *key, guard_action *out)
{
    L->cur = v;
    if (!json_is_string(v) || guard_action_parse(json_string_value(v), out) != 0)
        return bad(L, key, "must be one of off, flag, redact, block");
    return 0;
}

static int get_num(loader *L, json_t *v, const char *key, double lo, double hi, double *out)
{
    L->cur = v;
    if (!json_is_number(v))
        return bad(L, key, "must be a number");
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        char m[96];
        snprintf(m, sizeof m, "%g is outside [%g, %g]", d, lo, hi);
        return bad(L, key, m);
    }
    *out = d;
    return 0;
}

static int add_term(loader *L, const char *s, size_t n, norm_buf *nb)
{
    if (L->n >= TERMS_MAX)
        return err_set(L->e, ERR_TOO_LARGE, "guard: policy \"%s\": more than %d blocklist terms",
                       L->pid, TERMS_MAX);
    if (n > TERM_BYTES_MAX)
        return err_set(L->e, ERR_TOO_LARGE,
                       "guard: policy \"%s\": blocklist term %zu is %zu bytes (limit %d)", L->pid,
                       L->n, n, TERM_BYTES_MAX);
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 64;
        char **t = realloc(L->terms, cap * sizeof *t);
        if (!t)
            return ERR_NOMEM;
        L->terms = t;
        size_t *l = realloc(L->lens, cap * sizeof *l);
        if (!l)
            return ERR_NOMEM;
        L->lens = l;
        L->cap = cap;
    }
    int rc = norm_run(s, n, nb);
    if (rc)
        return rc;
    // Trim separators the normalizer kept at the ends (" term " == "term").
    size_t a = 0, b = nb->n;
    while (a < b && nb->p[a] == ' ')
        a++;
    while (b > a && nb->p[b - 1] == ' ')
        b--;
    char *c = malloc(b - a + 1);
    if (!c)
        return ERR_NOMEM;
    memcpy(c, nb->p + a, b - a);
    c[b - a] = '\0';
    L->terms[L->n] = c;
    L->lens[L->n] = b - a;
    L->n++;
    return 0;
}

static int read_terms_file(loader *L, const char *name, norm_buf *nb)
{
    char path[4096];
    if (name[0] == '/' || !L->base_dir)
        snprintf(path, sizeof path, "%s", name);
    else
        snprintf(path, sizeof path, "%s/%s", L->base_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        char w[512];
        return err_set(L->e, ERR_IO, "guard: %spolicy \"%s\": cannot open blocklist file %s",
                       where(L->src, L->cur, w, sizeof w), L->pid, path);
    }
    char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        total += (size_t)n;
        if (total > TERMS_FILE_MAX) {
            rc = err_set(L->e, ERR_TOO_LARGE, "guard: blocklist file %s is over %u bytes", path,
                         TERMS_FILE_MAX);
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        size_t a = 0;
        while (a < (size_t)n && (line[a] == ' ' || line[a] == '\t'))
            a++;
        if (a == (size_t)n || line[a] == '#')
            continue;
        rc = add_term(L, line + a, (size_t)n - a, nb);
        if (rc)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

static int load_custom(loader *L, guard_policy *p, json_t *arr)
{
    if (!json_is_array(arr))
        return bad(L, "custom", "must be an array of {name, pattern, action}");
    size_t n = json_array_size(arr);
    if (n > CUSTOM_MAX)
        return bad(L, "custom", "more than 64 patterns");
    p->custom = calloc(n ? n : 1, sizeof *p->custom);
    if (!p->custom)
        return ERR_NOMEM;
    p->mctx = pcre2_match_context_create(NULL);
    if (!p->mctx)
        return ERR_NOMEM;
    pcre2_set_match_limit(p->mctx, 1000000);
    pcre2_set_depth_limit(p->mctx, 10000);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        L->cur = o;
        const char *name = NULL, *pat = NULL, *act = "flag";
        if (!json_is_object(o) || json_unpack(o, "{s:s, s:s, s?:s !}", "name", &name, "pattern",
                                              &pat, "action", &act) != 0)
            return bad(L, "custom", "each entry is {\"name\": s, \"pattern\": s, \"action\": s}");
        size_t nl = strlen(name);
        if (nl == 0 || nl > CUSTOM_NAME_MAX)
            return bad(L, "custom.name", "must be 1-32 characters");
        for (size_t k = 0; k < nl; k++)
            if (!((name[k] >= 'a' && name[k] <= 'z') || (name[k] >= '0' && name[k] <= '9') ||
                  name[k] == '_'))
                return bad(L, "custom.name", "must be lower-case letters, digits and '_'");
        guard_type bt;
        if (guard_type_parse(name, &bt) == 0)
            return bad(L, "custom.name", "must not be a built-in type name");
        guard_custom *cu = &p->custom[p->n_custom];
        if (guard_action_parse(act, &cu->action) != 0)
            return bad(L, "custom.action", "must be one of off, flag, redact, block");
        int ec;
        PCRE2_SIZE eo;
        cu->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                               PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!cu->re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            char w[512];
            return err_set(L->e, ERR_FORMAT,
                           "guard: %spolicy \"%s\": custom pattern \"%s\": %s at offset %zu",
                           where(L->src, L->cur, w, sizeof w), L->pid, name, (const char *)msg,
                           (size_t)eo);
        }
        (void)pcre2_jit_compile(cu->re, PCRE2_JIT_COMPLETE); // falls back to the interpreter
        cu->name = strdup(name);
        cu->placeholder = strdup(name);
        if (!cu->name || !cu->placeholder) {
            pcre2_code_free(cu->re);
            free(cu->name);
            free(cu->placeholder);
            return ERR_NOMEM;
        }
        for (char *q = cu->placeholder; *q; q++)
            if (*q >= 'a' && *q <= 'z')
                *q = (char)(*q - 32);
        p->n_custom++;
    }
    return 0;
}


static int load_policy(const guard_engine *g, json_t *o, const char *base_dir,
                       const doc_src *src, guard_policy *p, err_msg *e)
{
    policy_defaults(p);
    p->g = g;
    loader L = {base_dir, "?", e, src, o, NULL, NULL, 0, 0};
    char w[512];
    norm_buf nb = {0};
    int rc = 0;
    if (!json_is_object(o))
        return err_set(e, ERR_FORMAT, "guard: %sa policy must be an object",
                       where(src, o, w, sizeof w));
    json_t *id = json_object_get(o, "id");
    if (id && !json_is_string(id))
        return err_set(e, ERR_FORMAT, "guard: %spolicy \"id\" must be a string",
                       where(src, id, w, sizeof w));
    p->id = strdup(id ? json_string_value(id) : "default");
    if (!p->id)
        return ERR_NOMEM;
    L.pid = p->id;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        L.cur = v;
        if (strcmp(key, "id") == 0) {
            continue;
        } else if (strcmp(key, "pii") == 0) {
            guard_action a;
            if ((rc = get_action(&L, v, key, &a)))
                goto out;
            for (int t = GUARD_T_EMAIL; t <= GUARD_T_IPV6; t++)
                p->act[t] = a;
        } else if (strcmp(key, "secrets") == 0) {
            guard_action a;
            if ((rc = get_action(&L, v, key, &a)))
                goto out;
            p->act[GUARD_T_API_KEY] = p->act[GUARD_T_PRIVATE_KEY] = a;
        } else if (strcmp(key, "restore") == 0) {
            if (!json_is_boolean(v)) {
                rc = bad(&L, key, "must be true or false");
                goto out;
            }
            p->restore = json_is_true(v);
        } else if (strcmp(key, "retrieved") == 0) {
            const char *s = json_string_value(v);
            if (!s || (strcmp(s, "drop") != 0 && strcmp(s, "quote") != 0)) {
                rc = bad(&L, key, "must be \"drop\" or \"quote\"");
                goto out;
            }
            p->retrieved_quote = strcmp(s, "quote") == 0;
        } else if (strcmp(key, "custom") == 0) {
            if ((rc = load_custom(&L, p, v)))
                goto out;
        } else if (strcmp(key, "actions") == 0) {
            if (!json_is_object(v)) {
                rc = bad(&L, key, "must be an object");
                goto out;
            }
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                L.cur = v2;
                char kk[96];
                snprintf(kk, sizeof kk, "actions.%s", k2);
                guard_action a;
                if ((rc = get_action(&L, v2, kk, &a)))
                    goto out;
                guard_type t;
                if (strcmp(k2, "injection") == 0)
                    p->act_injection = a;
                else if (strcmp(k2, "blocklist") == 0)
                    p->act_blocklist = a;
                else if (guard_type_parse(k2, &t) == 0 && t < GUARD_N_BUILTIN)
                    p->act[t] = a;
                else {
                    rc = bad(&L, kk, "unknown detector (see docs/guard.md)");
                    goto out;
                }
            }
        } else if (strcmp(key, "injection") == 0) {
            if (!json_is_object(v)) {
                rc = bad(&L, key, "must be an object");
                goto out;
            }
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                L.cur = v2;
                double d;
                if (strcmp(k2, "threshold") == 0) {
                    if ((rc = get_num(&L, v2, "injection.threshold", 0, 1, &d)))
                        goto out;
                    p->inj_threshold = d;
                } else if (strcmp(k2, "judge_threshold") == 0) {
                    if ((rc = get_num(&L, v2, "injection.judge_threshold", 0, 1, &d)))
                        goto out;
                    p->judge_threshold = d;
                } else if (strcmp(k2, "decode_depth") == 0) {
                    if ((rc = get_num(&L, v2, "injection.decode_depth", 0, 4, &d)))
                        goto out;
                    p->decode_depth = (int)d;
                } else if (strcmp(k2, "judge") == 0) {
                    if (!json_is_boolean(v2)) {
                        rc = bad(&L, "injection.judge", "must be true or false");
                        goto out;
                    }
                    p->judge_on = json_is_true(v2);
                } else {
                    rc = bad(&L, "injection", "unknown key (threshold, judge_threshold, judge, "
                                              "decode_depth)");
                    goto out;
                }
            }
        } else if (strcmp(key, "stream") == 0) {
            if (!json_is_object(v)) {
                rc = bad(&L, key, "must be an object");
                goto out;
            }
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                L.cur = v2;
                double d;
                if (strcmp(k2, "window") == 0) {
                    if ((rc = get_num(&L, v2, "stream.window", 16, 65536, &d)))
                        goto out;
                    p->stream_window = (size_t)d;
                } else if (strcmp(k2, "max_held") == 0) {
                    if ((rc = get_num(&L, v2, "stream.max_held", 1024, 16777216, &d)))
                        goto out;
                    p->stream_max = (size_t)d;
                } else {
                    rc = bad(&L, "stream", "unknown key (window, max_held)");
                    goto out;
                }
            }
        } else if (strcmp(key, "blocklist") == 0) {
            if (!json_is_object(v)) {
                rc = bad(&L, key, "must be an object {terms, files}");
                goto out;
            }
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                L.cur = v2;
                if (strcmp(k2, "terms") != 0 && strcmp(k2, "files") != 0) {
                    rc = bad(&L, "blocklist", "unknown key (terms, files)");
                    goto out;
                }
                if (!json_is_array(v2)) {
                    rc = bad(&L, "blocklist", "terms and files must be arrays of strings");
                    goto out;
                }
            }
            json_t *terms = json_object_get(v, "terms"), *files = json_object_get(v, "files");
            size_t i;
            json_t *x;
            json_array_foreach(terms, i, x)
            {
                L.cur = x;
                if (!json_is_string(x)) {
                    rc = bad(&L, "blocklist.terms", "must be strings");
                    goto out;
                }
                if ((rc = add_term(&L, json_string_value(x), json_string_length(x), &nb)))
                    goto out;
            }
            json_array_foreach(files, i, x)
            {
                L.cur = x;
                if (!json_is_string(x)) {
                    rc = bad(&L, "blocklist.files", "must be strings");
                    goto out;
                }
                if ((rc = read_terms_file(&L, json_string_value(x), &nb)))
                    goto out;
            }
        } else {
            rc = bad(&L, key, "unknown key (see docs/guard.md)");
            goto out;
        }
    }
    if (L.n > 0) {
        // Terms first, then the injection keywords: a scan walks one automaton.
        const char *const *kw;
        const size_t *kwl;
        size_t nkw = inj_keywords(g->inj, &kw, &kwl);
        size_t total = L.n + nkw;
        if (total > L.cap) {
            char **t = realloc(L.terms, total * sizeof *t);
            if (t)
                L.terms = t;
            size_t *l = t ? realloc(L.lens, total * sizeof *l) : NULL;
            if (l)
                L.lens = l;
            if (!t || !l) {
                rc = ERR_NOMEM;
                goto out;
            }
            L.cap = total;
        }
        for (size_t i = 0; i < nkw; i++) {
            L.terms[L.n + i] = (char *)kw[i];
            L.lens[L.n + i] = kwl[i];
        }
        rc = ac_build((const char *const *)L.terms, L.lens, total, &p->terms, e);
        if (rc)
            goto out;
        p->n_terms = L.n;
        p->has_terms = true;
    }
out:
    for (size_t i = 0; i < L.n; i++)
        free(L.terms[i]);
    free(L.terms);
    free(L.lens);
    norm_buf_deinit(&nb);
    if (rc == ERR_NOMEM && e && e->code != ERR_NOMEM)
        err_set(e, rc, "guard: out of memory loading policy \"%s\"", p->id ? p->id : "?");
    return rc;
}

void guard_engine_free(guard_engine *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_pol; i++)
        policy_deinit(&g->pol[i]);
    free(g->pol);
    for (size_t i = 0; i < g->n_routes; i++)
        free(g->routes[i].name);
    for (size_t i = 0; i < g->n_keys; i++)
        free(g->keys[i].name);
    free(g->routes);
    free(g->keys);
    inj_set_free(g->inj);
    sodium_memzero(g->key, sizeof g->key);
    free(g);
}

static int find_policy(const guard_engine *g, const char *id, size_t *out)
{
    for (size_t i = 0; i < g->n_pol; i++)
        if (strcmp(g->pol[i].id, id) == 0) {
            *out = i;
            return 0;
        }
    return ERR_NOT_FOUND;
}

static int load_map(guard_engine *g, json_t *o, const char *what, const doc_src *src,
                    guard_map_ent **out, size_t *n, err_msg *e)
{
    char w[512];
    if (!o)
        return 0;
    if (!json_is_object(o))
        return err_set(e, ERR_FORMAT, "guard: %s\"%s\" must be a map of name -> policy id",
                       where(src, o, w, sizeof w), what);
    size_t cnt = json_object_size(o);
    if (cnt > MAP_MAX)
        return err_set(e, ERR_TOO_LARGE, "guard: \"%s\" has %zu entries (limit %d)", what, cnt,
                       MAP_MAX);
    *out = calloc(cnt ? cnt : 1, sizeof **out);
    if (!*out)
        return ERR_NOMEM;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t idx;
        if (!json_is_string(v) || find_policy(g, json_string_value(v), &idx) != 0)
            return err_set(e, ERR_FORMAT,
                           "guard: %s%s \"%s\": names no policy in \"policies\"",
                           where(src, v, w, sizeof w), what, k);
        (*out)[*n].name = strdup(k);
        if (!(*out)[*n].name)
            return ERR_NOMEM;
        (*out)[*n].policy = idx;
        (*n)++;
    }
    return 0;
}

static int engine_from_root(json_t *root, const char *base_dir, const doc_src *src,
                            const guard_config *cfg, guard_engine **out, err_msg *e)
{
    char w[512];
    *out = NULL;
    if (sodium_init() < 0)
        return err_set(e, ERR_INTERNAL, "guard: libsodium failed to initialize");
    guard_engine *g = calloc(1, sizeof *g);
    if (!g)
        return err_set(e, ERR_NOMEM, "guard: out of memory");
    g->cfg = cfg ? *cfg : guard_config_default();
    if (g->cfg.text_max_bytes == 0 || g->cfg.text_max_bytes > UINT32_MAX - 1)
        g->cfg.text_max_bytes = 16u * 1024 * 1024;
    if (g->cfg.spans_max == 0)
        g->cfg.spans_max = 65536;
    if (g->cfg.has_audit_key)
        memcpy(g->key, g->cfg.audit_key, sizeof g->key);
    else
        randombytes_buf(g->key, sizeof g->key);
    sodium_memzero(g->cfg.audit_key, sizeof g->cfg.audit_key);
    int rc = inj_set_new(&g->inj, e);
    if (rc)
        goto fail;
    if (!json_is_object(root)) {
        rc = err_set(e, ERR_FORMAT, "guard: %sthe policy document must be an object (a map)",
                     where(src, root, w, sizeof w));
        goto fail;
    }
    json_t *pols = json_object_get(root, "policies");
    if (!pols) {
        // A single policy object.
        g->pol = calloc(1, sizeof *g->pol);
        if (!g->pol) {
            rc = ERR_NOMEM;
            goto fail;
        }
        g->n_pol = 1;
        rc = load_policy(g, root, base_dir, src, &g->pol[0], e);
        if (rc)
            goto fail;
        *out = g;
        return 0;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "policies") && strcmp(k, "default") && strcmp(k, "routes") &&
            strcmp(k, "keys")) {
            rc = err_set(e, ERR_FORMAT,
                         "guard: %sunknown top-level key \"%s\" (policies, default, routes, keys)",
                         where(src, v, w, sizeof w), k);
            goto fail;
        }
    }
    size_t np = json_array_size(pols);
    if (!json_is_array(pols) || np == 0 || np > POLICIES_MAX) {
        rc = err_set(e, ERR_FORMAT, "guard: %s\"policies\" must be a list of 1-%d policies",
                     where(src, pols, w, sizeof w), POLICIES_MAX);
        goto fail;
    }
    g->pol = calloc(np, sizeof *g->pol);
    if (!g->pol) {
        rc = ERR_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < np; i++) {
        g->n_pol = i + 1;
        rc = load_policy(g, json_array_get(pols, i), base_dir, src, &g->pol[i], e);
        if (rc)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->pol[j].id, g->pol[i].id) == 0) {
                rc = err_set(e, ERR_FORMAT, "guard: %spolicy id \"%s\" appears twice",
                             where(src, json_array_get(pols, i), w, sizeof w), g->pol[i].id);
                goto fail;
            }
    }
    json_t *def = json_object_get(root, "default");
    if (def) {
        if (!json_is_string(def) || find_policy(g, json_string_value(def), &g->def) != 0) {
            rc = err_set(e, ERR_FORMAT, "guard: %s\"default\" must name a policy in \"policies\"",
                         where(src, def, w, sizeof w));
            goto fail;
        }
    }
    rc = load_map(g, json_object_get(root, "routes"), "routes", src, &g->routes, &g->n_routes, e);
    if (rc)
        goto fail;
    rc = load_map(g, json_object_get(root, "keys"), "keys", src, &g->keys, &g->n_keys, e);
    if (rc)
        goto fail;
    *out = g;
    return 0;
fail:
    guard_engine_free(g);
    if (rc == ERR_NOMEM && e && e->code != ERR_NOMEM)
        err_set(e, rc, "guard: out of memory loading the policy document");
    return rc;
}

int guard_engine_from_json(const char *json, size_t len, const char *base_dir,
                           const guard_config *cfg, guard_engine **out, err_msg *e)
{
    json_error_t je;
    *out = NULL;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return err_set(e, ERR_FORMAT, "guard: policy JSON line %d column %d: %s", je.line,
                       je.column, je.text);
    int rc = engine_from_root(root, base_dir, NULL, cfg, out, e);
    json_decref(root);
    return rc;
}

int guard_engine_from_yaml(const char *yaml, size_t len, const char *base_dir,
                           const guard_config *cfg, guard_engine **out, err_msg *e)
{
    *out = NULL;
    json_t *root = NULL;
    guard_pos_map pm = {0};
    int rc = guard_yaml_load(yaml, len, "policy", &root, &pm, e);
    if (rc == 0) {
        doc_src src = {"policy", &pm};
        rc = engine_from_root(root, base_dir, &src, cfg, out, e);
    }
    json_decref(root);
    guard_pos_map_free(&pm);
    return rc;
}

#define POLICY_FILE_MAX (64u * 1024 * 1024)

/* YAML unless the name ends in .json, or (no .yaml/.yml either) the text
 * starts with '{'. */
static bool is_yaml(const char *path, const char *text, size_t len)
{
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0)
        return false;
    if ((n >= 5 && strcmp(path + n - 5, ".yaml") == 0) ||
        (n >= 4 && strcmp(path + n - 4, ".yml") == 0))
        return true;
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    return !(i < len && text[i] == '{');
}

int guard_engine_load(const char *path, const guard_config *cfg, guard_engine **out, err_msg *e)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "guard: cannot open policy file %s", path);
    buf text;
    buf_init(&text, POLICY_FILE_MAX);
    char tmp[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(tmp, 1, sizeof tmp, f)) > 0)
        rc = buf_append(&text, tmp, n);
    bool rerr = ferror(f);
    fclose(f);
    if (rc || rerr) {
        buf_deinit(&text);
        if (rc == ERR_TOO_LARGE)
            return err_set(e, rc, "guard: policy file %s is over %u bytes", path,
                           POLICY_FILE_MAX);
        return err_set(e, rc ? rc : ERR_IO, "guard: cannot read policy file %s", path);
    }
    const char *t = text.data ? text.data : "";
    json_t *root = NULL;
    guard_pos_map pm = {0};
    doc_src src = {path, NULL};
    if (is_yaml(path, t, text.len)) {
        rc = guard_yaml_load(t, text.len, path, &root, &pm, e);
        src.pm = &pm;
    } else {
        json_error_t je;
        root = json_loadb(t, text.len, JSON_REJECT_DUPLICATES, &je);
        if (!root)
            rc = err_set(e, ERR_FORMAT, "guard: %s:%d:%d: %s", path, je.line, je.column,
                         je.text);
    }
    buf_deinit(&text);
    if (rc == 0) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        const char *base = ".";
        if (slash) {
            *slash = '\0';
            base = slash == dir ? "/" : dir;
        }
        rc = engine_from_root(root, base, &src, cfg, out, e);
    }
    json_decref(root);
    guard_pos_map_free(&pm);
    return rc;
}

int guard_engine_default(const guard_config *cfg, guard_engine **out, err_msg *e)
{
    static const char doc[] = "{\"id\": \"default\"}";
    return guard_engine_from_json(doc, sizeof doc - 1, NULL, cfg, out, e);
}

const guard_policy *guard_engine_select(const guard_engine *g, const char *route, const char *key)
{
    if (key)
        for (size_t i = 0; i < g->n_keys; i++)
            if (strcmp(g->keys[i].name, key) == 0)
                return &g->pol[g->keys[i].policy];
    if (route)
        for (size_t i = 0; i < g->n_routes; i++)
            if (strcmp(g->routes[i].name, route) == 0)
                return &g->pol[g->routes[i].policy];
    return &g->pol[g->def];
}

const guard_policy *guard_engine_policy(const guard_engine *g, const char *id)
{
    size_t i;
    return find_policy(g, id, &i) == 0 ? &g->pol[i] : NULL;
}

const char *guard_policy_id(const guard_policy *p)
{
    return p->id;
}

guard_action guard_policy_action(const guard_policy *p, guard_type t, size_t sub)
{
    if (t < GUARD_N_BUILTIN)
        return p->act[t];
    if (t == GUARD_T_CUSTOM)
        return sub < p->n_custom ? p->custom[sub].action : GUARD_OFF;
    if (t == GUARD_T_BLOCKLIST)
        return p->has_terms ? p->act_blocklist : GUARD_OFF;
    return GUARD_OFF;
}

const char *guard_policy_custom_name(const guard_policy *p, size_t i)
{
    return i < p->n_custom ? p->custom[i].name : NULL;
}

size_t guard_policy_custom_count(const guard_policy *p)
{
    return p->n_custom;
}

size_t guard_policy_term_count(const guard_policy *p)
{
    return p->n_terms;
}
