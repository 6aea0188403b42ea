/*
 * obs — the Prometheus metrics registry: counters, gauges and histograms with
 * labels, and the text exposition format 0.0.4.
 *
 * A registry owns families (one metric name, its type, help and label names);
 * a family owns series (one set of label values). Series are found by their
 * label values in a fixed-size open-addressing table whose slots are atomic
 * pointers: lookup of an existing series takes no lock, creating a new series
 * takes the family's mutex once. Values are atomics (doubles stored as their
 * bit pattern and updated with compare-and-swap), so the hot path
 * (obs_series_get on an existing series, then obs_counter_add / obs_gauge_add /
 * obs_hist_observe) is lock-free.
 *
 * Invariants:
 *  - A family holds at most max_series series (cardinality cap). Past the cap
 *    obs_series_get returns NULL and every update function ignores NULL, so an
 *    unbounded label (a client-chosen value) can never grow memory.
 *  - Series are never removed; pointers stay valid until obs_registry_free.
 *  - Families and series are exposed in creation order.
 *  - Families and collectors may be added while the registry is scraped
 *    (they take the scrape lock; models and stores load after the server
 *    is up); series may be created from any thread at any time.
 *
 * Exposition (https://prometheus.io/docs/instrumenting/exposition_formats/):
 *   # HELP <name> <help, with \ and newline escaped>
 *   # TYPE <name> counter|gauge|histogram
 *   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
 * Histograms expose <name>_bucket{...,le="<bound>"} (cumulative, ending with
 * le="+Inf"), <name>_sum and <name>_count.
 */
#pragma once

#include <stddef.h>

#include "base/base.h"
#include "base/buf.h"

typedef enum obs_type {
    OBS_COUNTER = 0,
    OBS_GAUGE = 1,
    OBS_HISTOGRAM = 2,
} obs_type;

#define OBS_LABELS_MAX 8         // labels per family
#define OBS_BUCKETS_MAX 32       // histogram bounds per family (plus +Inf)
#define OBS_LABEL_VALUE_MAX 256  // bytes of one label value; longer values are cut
#define OBS_SERIES_MAX 65536     // hard ceiling on max_series

typedef struct obs_registry obs_registry;
typedef struct obs_family obs_family;
typedef struct obs_series obs_series;

/* Creates an empty registry. Returns NULL when out of memory. */
obs_registry *obs_registry_new(void);
/* Frees the registry, its families and series. NULL ok. No thread may still use it. */
void obs_registry_free(obs_registry *r);

/*
 * Registers a family. name and label names must be valid Prometheus names
 * ([a-zA-Z_:][a-zA-Z0-9_:]*, labels [a-zA-Z_][a-zA-Z0-9_]*, not "le" on a
 * histogram, not starting with "__"); help is any text. buckets (histograms
 * only) are n_buckets strictly increasing finite upper bounds; +Inf is
 * implied. max_series is the cardinality cap (1..OBS_SERIES_MAX). Strings are
 * copied. Returns the family (owned by r) or NULL with e set: ERR_INVAL for a
 * bad name, duplicate family, bad buckets or limits; ERR_NOMEM.
 * Thread: any (takes the scrape lock; not from inside a collector).
 */
obs_family *obs_family_new(obs_registry *r, obs_type t, const char *name, const char *help,
                           const char *const *label_names, size_t n_labels,
                           const double *buckets, size_t n_buckets, size_t max_series,
                           err_msg *e);

/*
 * Returns the series of f with these label values (n_labels of them, in the
 * family's label order; NULL values mean ""), creating it on first use.
 * Values longer than OBS_LABEL_VALUE_MAX bytes are cut. Returns NULL when the
 * family is at its cardinality cap or memory is out (updates on NULL are
 * no-ops). Lock-free when the series exists. Thread: any.
 */
obs_series *obs_series_get(obs_family *f, const char *const *label_values);

/* Adds v (>= 0; negative values are ignored) to a counter. s may be NULL. Thread: any. */
void obs_counter_add(obs_series *s, double v);
/* Sets a counter to an absolute value read elsewhere (process CPU seconds); for
 * collectors only. s may be NULL. */
void obs_counter_set(obs_series *s, double v);
/* Sets / adds to a gauge. s may be NULL. Thread: any. */
void obs_gauge_set(obs_series *s, double v);
void obs_gauge_add(obs_series *s, double v);
/* Records one observation in a histogram. NaN is ignored. s may be NULL. Thread: any. */
void obs_hist_observe(obs_series *s, double v);
/* Current value of a counter or gauge series (for tests); 0 for NULL. */
double obs_value(const obs_series *s);

/*
 * Registers fn(ctx) to run at the start of every obs_expose, to refresh
 * values read from elsewhere (process metrics). Returns 0 or ERR_NOMEM /
 * ERR_TOO_LARGE (at most 16 collectors). Thread: any but a collector.
 */
int obs_add_collector(obs_registry *r, void (*fn)(void *ctx), void *ctx) MUST_USE;

/*
 * Appends the whole registry in text format 0.0.4 to out. Families without
 * series are skipped. Returns 0 or the buf error (ERR_TOO_LARGE, ERR_NOMEM).
 * Thread: any; concurrent scrapes are serialized by a registry lock (scrapes
 * are rare; updates never take it).
 */
int obs_expose(obs_registry *r, buf *out) MUST_USE;

/* The Content-Type of obs_expose's output. */
#define OBS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Registers the standard process metrics, refreshed at each scrape from
 * /proc/self: process_resident_memory_bytes, process_cpu_seconds_total,
 * process_open_fds, process_start_time_seconds. Returns 0 or an ERR_* with e set.
 */
int obs_register_process(obs_registry *r, err_msg *e) MUST_USE;

/* Appends v the way the exposition writes numbers: integers without a
 * fraction, others in the shortest form that reads back exactly, and
 * +Inf / -Inf / NaN. */
int obs_format_number(buf *out, double v) MUST_USE;
