/*
 * obs — registry, series table and exposition. See obs.h for the model.
 *
 * Series table: slots[cap] of atomic pointers, cap a power of two >= 2 *
 * max_series, probed linearly from hash(label values). A slot goes from NULL
 * to a series exactly once (under f->lock, store-release); readers
 * load-acquire and never see a half-built series. order[] lists series in
 * creation order; n_order is published after the slot so the exposition sees
 * only complete series.
 */
#include "obs/obs.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct obs_series {
    _Atomic uint64_t bits;    // counter / gauge value as the bit pattern of a double
    _Atomic uint64_t sum;     // histogram: sum of observations (double bits)
    _Atomic uint64_t *counts; // histogram: (n_buckets + 1) non-cumulative counts
    uint64_t hash;
    const struct obs_family *fam; // for histogram bounds
    char *values[OBS_LABELS_MAX];
};

struct obs_family {
    obs_type type;
    char *name;
    char *help;
    size_t n_labels;
    char *labels[OBS_LABELS_MAX];
    size_t n_buckets;
    double buckets[OBS_BUCKETS_MAX];
    size_t max_series;
    size_t cap;                   // slots, a power of two
    _Atomic(obs_series *) *slots; // (cap)
    obs_series **order;           // (max_series) creation order
    _Atomic size_t n_order;
    pthread_mutex_t lock; // serializes series creation (slots writes, order, n_order)
};

#define COLLECTORS_MAX 16
#define FAMILIES_MAX 256

struct obs_registry {
    obs_family *fams[FAMILIES_MAX];
    size_t n_fams;
    struct {
        void (*fn)(void *);
        void *ctx;
    } coll[COLLECTORS_MAX];
    size_t n_coll;
    pthread_mutex_t scrape_lock; // one exposition at a time (collectors write shared series)
};

static inline double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}
static inline uint64_t to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

obs_registry *obs_registry_new(void)
{
    obs_registry *r = calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->scrape_lock, NULL);
    return r;
}

static void series_free(obs_series *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < OBS_LABELS_MAX; i++)
        free(s->values[i]);
    free(s->counts);
    free(s);
}

static void family_free(obs_family *f)
{
    if (!f)
        return;
    size_t n = atomic_load(&f->n_order);
    for (size_t i = 0; i < n; i++)
        series_free(f->order[i]);
    free(f->order);
    free(f->slots);
    free(f->name);
    free(f->help);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void obs_registry_free(obs_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_fams; i++)
        family_free(r->fams[i]);
    pthread_mutex_destroy(&r->scrape_lock);
    free(r);
}

static bool valid_name(const char *s, bool allow_colon)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* obs_family_new under r->scrape_lock: families may be created while the
 * registry is scraped (models load after the server is up), and a scrape
 * walks fams[] under that lock. */
static obs_family *family_new_locked(obs_registry *r, obs_type t, const char *name,
                                     const char *help, const char *const *label_names,
                                     size_t n_labels, const double *buckets, size_t n_buckets,
                                     size_t max_series, err_msg *e)
{
    if (!valid_name(name, true)) {
        err_set(e, ERR_INVAL, "metrics: \"%s\" is not a valid metric name", name ? name : "");
        return NULL;
    }
    if (r->n_fams >= FAMILIES_MAX) {
        err_set(e, ERR_INVAL, "metrics: more than %d families", FAMILIES_MAX);
        return NULL;
    }
    for (size_t i = 0; i < r->n_fams; i++)
        if (strcmp(r->fams[i]->name, name) == 0) {
            err_set(e, ERR_INVAL, "metrics: family \"%s\" is registered twice", name);
            return NULL;
        }
    if (n_labels > OBS_LABELS_MAX) {
        err_set(e, ERR_INVAL, "metrics: %s has %zu labels, the limit is %d", name, n_labels,
                OBS_LABELS_MAX);
        return NULL;
    }
    for (size_t i = 0; i < n_labels; i++) {
        const char *l = label_names[i];
        if (!valid_name(l, false) || strncmp(l, "__", 2) == 0 ||
            (t == OBS_HISTOGRAM && strcmp(l, "le") == 0)) {
            err_set(e, ERR_INVAL, "metrics: %s: \"%s\" is not a valid label name", name,
                    l ? l : "");
            return NULL;
        }
    }
    if (t == OBS_HISTOGRAM) {
        if (n_buckets == 0 || n_buckets > OBS_BUCKETS_MAX) {
            err_set(e, ERR_INVAL, "metrics: %s needs 1..%d buckets, got %zu", name,
                    OBS_BUCKETS_MAX, n_buckets);
            return NULL;
        }
        for (size_t i = 0; i < n_buckets; i++)
            if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
                err_set(e, ERR_INVAL, "metrics: %s: buckets must be finite and increasing",
                        name);
                return NULL;
            }
    } else if (n_buckets) {
        err_set(e, ERR_INVAL, "metrics: %s: only histograms have buckets", name);
        return NULL;
    }
    if (max_series == 0 || max_series > OBS_SERIES_MAX) {
        err_set(e, ERR_INVAL, "metrics: %s: max_series must be 1..%d", name, OBS_SERIES_MAX);
        return NULL;
    }
    obs_family *f = calloc(1, sizeof *f);
    if (!f)
        goto nomem;
    pthread_mutex_init(&f->lock, NULL);
    f->type = t;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->n_labels = n_labels;
    for (size_t i = 0; i < n_labels; i++)
        if (!(f->labels[i] = strdup(label_names[i]))) {
            f->n_labels = i;
            goto nomem;
        }
    f->n_buckets = n_buckets;
    if (n_buckets)
        memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
    f->max_series = max_series;
    f->cap = 4;
    while (f->cap < 2 * max_series)
        f->cap *= 2;
    f->slots = calloc(f->cap, sizeof *f->slots);
    f->order = calloc(max_series, sizeof *f->order);
    if (!f->name || !f->help || !f->slots || !f->order)
        goto nomem;
    r->fams[r->n_fams++] = f;
    return f;
nomem:
    family_free(f);
    err_set(e, ERR_NOMEM, "metrics: out of memory registering %s", name);
    return NULL;
}

obs_family *obs_family_new(obs_registry *r, obs_type t, const char *name, const char *help,
                           const char *const *label_names, size_t n_labels,
                           const double *buckets, size_t n_buckets, size_t max_series,
                           err_msg *e)
{
    pthread_mutex_lock(&r->scrape_lock);
    obs_family *f = family_new_locked(r, t, name, help, label_names, n_labels, buckets,
                                      n_buckets, max_series, e);
    pthread_mutex_unlock(&r->scrape_lock);
    return f;
}

static uint64_t hash_values(size_t n, const char *const *v)
{
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < n; i++) {
        const char *s = v[i] ? v[i] : "";
        for (size_t j = 0; s[j] && j < OBS_LABEL_VALUE_MAX; j++) {
            h ^= (unsigned char)s[j];
            h *= 1099511628211ull;
        }
        h ^= 0xff; // separator: ("ab","") and ("a","b") differ
        h *= 1099511628211ull;
    }
    return h;
}

/* Compares a stored (already cut) value with a caller's value cut the same way. */
static bool value_eq(const char *stored, const char *v)
{
    v = v ? v : "";
    size_t n = strnlen(v, OBS_LABEL_VALUE_MAX);
    return strlen(stored) == n && memcmp(stored, v, n) == 0;
}

static bool series_match(const obs_family *f, const obs_series *s, uint64_t h,
                         const char *const *v)
{
    if (s->hash != h)
        return false;
    for (size_t i = 0; i < f->n_labels; i++)
        if (!value_eq(s->values[i], v[i]))
            return false;
    return true;
}

obs_series *obs_series_get(obs_family *f, const char *const *label_values)
{
    static const char *const none[1] = {NULL};
    const char *const *v = f->n_labels ? label_values : none;
    uint64_t h = hash_values(f->n_labels, v);
    size_t mask = f->cap - 1;
    size_t i = (size_t)h & mask;
    for (size_t probes = 0; probes < f->cap; probes++, i = (i + 1) & mask) {
        obs_series *s = atomic_load_explicit(&f->slots[i], memory_order_acquire);
        if (!s)
            break;
        if (series_match(f, s, h, v))
            return s;
    }
    /* Not found: create under the lock, re-probing since another thread may
     * have created it meanwhile. */
    pthread_mutex_lock(&f->lock);
    obs_series *found = NULL;
    i = (size_t)h & mask;
    for (;; i = (i + 1) & mask) {
        obs_series *s = atomic_load_explicit(&f->slots[i], memory_order_relaxed);
        if (!s)
            break;
        if (series_match(f, s, h, v)) {
            found = s;
            break;
        }
    }
    if (!found && atomic_load(&f->n_order) < f->max_series) {
        obs_series *s = calloc(1, sizeof *s);
        bool ok = s != NULL;
        for (size_t k = 0; ok && k < f->n_labels; k++) {
            const char *x = v[k] ? v[k] : "";
            ok = (s->values[k] = strndup(x, OBS_LABEL_VALUE_MAX)) != NULL;
        }
        if (ok && f->type == OBS_HISTOGRAM)
            ok = (s->counts = calloc(f->n_buckets + 1, sizeof *s->counts)) != NULL;
        if (ok) {
            s->hash = h;
            s->fam = f;
            // Table is at most half full (cap >= 2*max_series), so slot i is free.
            atomic_store_explicit(&f->slots[i], s, memory_order_release);
            size_t n = atomic_load(&f->n_order);
            f->order[n] = s;
            atomic_store_explicit(&f->n_order, n + 1, memory_order_release);
            found = s;
        } else {
            series_free(s);
        }
    }
    pthread_mutex_unlock(&f->lock);
    return found;
}

static void add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, to_bits(from_bits(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void obs_counter_add(obs_series *s, double v)
{
    if (s && v >= 0)
        add_double(&s->bits, v);
}

void obs_counter_set(obs_series *s, double v)
{
    if (s)
        atomic_store_explicit(&s->bits, to_bits(v), memory_order_relaxed);
}

void obs_gauge_set(obs_series *s, double v)
{
    if (s)
        atomic_store_explicit(&s->bits, to_bits(v), memory_order_relaxed);
}

void obs_gauge_add(obs_series *s, double v)
{
    if (s)
        add_double(&s->bits, v);
}

double obs_value(const obs_series *s)
{
    return s ? from_bits(atomic_load_explicit(&s->bits, memory_order_relaxed)) : 0.0;
}

void obs_hist_observe(obs_series *s, double v)
{
    if (!s || !s->counts || isnan(v))
        return;
    const obs_family *f = s->fam;
    size_t b = 0;
    while (b < f->n_buckets && v > f->buckets[b]) // le: upper bounds are inclusive
        b++;
    atomic_fetch_add_explicit(&s->counts[b], 1, memory_order_relaxed);
    add_double(&s->sum, v);
}

int obs_add_collector(obs_registry *r, void (*fn)(void *ctx), void *ctx)
{
    int rc = 0;
    pthread_mutex_lock(&r->scrape_lock); // a scrape may be running the collectors
    if (r->n_coll >= COLLECTORS_MAX) {
        rc = ERR_TOO_LARGE;
    } else {
        r->coll[r->n_coll].fn = fn;
        r->coll[r->n_coll].ctx = ctx;
        r->n_coll++;
    }
    pthread_mutex_unlock(&r->scrape_lock);
    return rc;
}

/* ------------------------------------------------------------ exposition -- */

#define TRY(x)                                                                                 \
    do {                                                                                       \
        int rc_ = (x);                                                                         \
        if (rc_)                                                                               \
            return rc_;                                                                        \
    } while (0)

int obs_format_number(buf *out, double v)
{
    if (isnan(v))
        return buf_append_str(out, "NaN");
    if (isinf(v))
        return buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 1e15)
        return buf_printf(out, "%.0f", v);
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return buf_append_str(out, tmp);
}

/* HELP text escapes backslash and newline; label values also escape the quote. */
static int put_escaped(buf *out, const char *s, bool quote)
{
    for (; *s; s++) {
        int rc;
        if (*s == '\\')
            rc = buf_append_str(out, "\\\\");
        else if (*s == '\n')
            rc = buf_append_str(out, "\\n");
        else if (quote && *s == '"')
            rc = buf_append_str(out, "\\\"");
        else
            rc = buf_append_char(out, *s);
        TRY(rc);
    }
    return 0;
}

/* Writes name{labels[,le="bound"]}. */
static int put_series_name(buf *out, const obs_family *f, const char *suffix,
                           const obs_series *s, const char *le)
{
    TRY(buf_append_str(out, f->name));
    TRY(buf_append_str(out, suffix));
    if (f->n_labels == 0 && !le)
        return 0;
    TRY(buf_append_char(out, '{'));
    for (size_t i = 0; i < f->n_labels; i++) {
        TRY(buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]));
        TRY(put_escaped(out, s->values[i], true));
        TRY(buf_append_char(out, '"'));
    }
    if (le)
        TRY(buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le));
    return buf_append_char(out, '}');
}

static int expose_family(buf *out, const obs_family *f)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    size_t n = atomic_load_explicit(&f->n_order, memory_order_acquire);
    if (n == 0)
        return 0;
    TRY(buf_printf(out, "# HELP %s ", f->name));
    TRY(put_escaped(out, f->help, false));
    TRY(buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]));
    for (size_t k = 0; k < n; k++) {
        const obs_series *s = f->order[k];
        if (f->type != OBS_HISTOGRAM) {
            TRY(put_series_name(out, f, "", s, NULL));
            TRY(buf_append_char(out, ' '));
            TRY(obs_format_number(out, obs_value(s)));
            TRY(buf_append_char(out, '\n'));
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; b <= f->n_buckets; b++) {
            cum += atomic_load_explicit(&s->counts[b], memory_order_relaxed);
            buf le;
            buf_init(&le, 64);
            int rc = b < f->n_buckets ? obs_format_number(&le, f->buckets[b])
                                      : buf_append_str(&le, "+Inf");
            if (!rc)
                rc = put_series_name(out, f, "_bucket", s, le.data);
            buf_deinit(&le);
            TRY(rc);
            TRY(buf_printf(out, " %llu\n", (unsigned long long)cum));
        }
        TRY(put_series_name(out, f, "_sum", s, NULL));
        TRY(buf_append_char(out, ' '));
        TRY(obs_format_number(out, from_bits(atomic_load_explicit(&s->sum, memory_order_relaxed))));
        TRY(buf_append_char(out, '\n'));
        TRY(put_series_name(out, f, "_count", s, NULL));
        TRY(buf_printf(out, " %llu\n", (unsigned long long)cum));
    }
    return 0;
}

int obs_expose(obs_registry *r, buf *out)
{
    pthread_mutex_lock(&r->scrape_lock);
    for (size_t i = 0; i < r->n_coll; i++)
        r->coll[i].fn(r->coll[i].ctx);
    int rc = 0;
    for (size_t i = 0; i < r->n_fams && !rc; i++)
        rc = expose_family(out, r->fams[i]);
    pthread_mutex_unlock(&r->scrape_lock);
    return rc;
}
