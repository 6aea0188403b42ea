/*
 * base/log — one JSON object per line, to stderr or a file.
 *
 *   {"ts":"2026-01-14T08:44:08.123Z","level":"warn","mod":"gateway","msg":"..."}
 *
 * The level is tested before anything is formatted. Lines are written with a
 * single write(2) so lines from different threads never interleave. Thread-safe.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

#include "base/base.h"

typedef enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_OFF = 4,
} log_level;

/* Parses "debug|info|warn|error|off". Returns 0 or ERR_INVAL. */
int log_level_parse(const char *s, log_level *out) MUST_USE;
const char *log_level_name(log_level l);

/* Sets the minimum level written (default info). */
void log_set_level(log_level l);
/* Modules (comma-separated, e.g. "http,sched") logged at debug whatever the level. */
void log_set_debug_modules(const char *csv);
/*
 * Sends lines to path (appended, created 0640) or to stderr when path is NULL
 * or "-" or "stderr". Returns 0 or ERR_IO with detail in e; on error the old
 * destination is kept.
 */
int log_open(const char *path, err_msg *e) MUST_USE;
/* Reopens the current file (after rotation, on SIGHUP). Safe to call from a
 * normal thread, not from a signal handler. */
int log_reopen(void);
/* True when a line of this level and module would be written. */
bool log_enabled(log_level l, const char *mod);

/* Writes a line with msg formatted from fmt. Use the LOG_* macros instead. */
void log_write(log_level l, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Writes a line whose extra members are fields: a string of JSON members
 * without braces ("\"status\":200,\"route\":\"/healthz\""), or NULL.
 */
void log_write_fields(log_level l, const char *mod, const char *msg, const char *fields);

/*
 * Writes one whole line (JSON object and '\n', formatted by the caller) with
 * one write(2), as the other calls do. For hot paths that format by hand
 * (the HTTP request line); the caller checks log_enabled first.
 */
void log_write_line(const char *line, size_t n);

#define LOG_AT_(lvl, mod, ...)                                                                  \
    do {                                                                                        \
        if (log_enabled((lvl), (mod)))                                                         \
            log_write((lvl), (mod), __VA_ARGS__);                                               \
    } while (0)
#define LOG_DEBUG(mod, ...) LOG_AT_(LOG_LEVEL_DEBUG, mod, __VA_ARGS__)
#define LOG_INFO(mod, ...) LOG_AT_(LOG_LEVEL_INFO, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...) LOG_AT_(LOG_LEVEL_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(mod, ...) LOG_AT_(LOG_LEVEL_ERROR, mod, __VA_ARGS__)
