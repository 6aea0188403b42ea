/*
 * base/err — the one table of error codes.
 *
 * Fallible functions return 0 on success or a negative ERR_* code. Detail goes
 * into an optional caller-owned err_msg (a fixed buffer, no allocation, no
 * globals), written as one sentence that names the thing, the value and the
 * limit. Every row maps a code to its name, default message, HTTP status and
 * OpenAI error "type", so any layer can turn an error into a response.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

/* X(code, name, value, message, http_status, openai_type) */
#define ERR_MAP(X)                                                                              \
    X(ERR_INVAL, "invalid_argument", -1000, "invalid argument", 400, "invalid_request_error")  \
    X(ERR_NOMEM, "out_of_memory", -1001, "out of memory", 503, "server_error")                 \
    X(ERR_TOO_LARGE, "too_large", -1002, "too large", 413, "invalid_request_error")            \
    X(ERR_NOT_FOUND, "not_found", -1003, "not found", 404, "invalid_request_error")            \
    X(ERR_IO, "io_error", -1004, "input/output error", 500, "server_error")                    \
    X(ERR_FORMAT, "bad_format", -1005, "malformed input", 400, "invalid_request_error")        \
    X(ERR_UNSUPPORTED, "unsupported", -1006, "unsupported", 400, "invalid_request_error")      \
    X(ERR_OVERFLOW, "overflow", -1007, "arithmetic overflow", 400, "invalid_request_error")    \
    X(ERR_TIMEOUT, "timeout", -1008, "timed out", 408, "invalid_request_error")                \
    X(ERR_RATE_LIMIT, "rate_limited", -1009, "rate limit reached", 429, "rate_limit_error")    \
    X(ERR_UNAVAILABLE, "unavailable", -1010, "service unavailable", 503, "server_error")       \
    X(ERR_INTERNAL, "internal_error", -1011, "internal error", 500, "server_error")            \
    X(ERR_AUTH, "unauthorized", -1012, "authentication required", 401, "authentication_error") \
    X(ERR_FORBIDDEN, "forbidden", -1013, "forbidden", 403, "permission_error")                 \
    X(ERR_METHOD, "method_not_allowed", -1014, "method not allowed", 405,                      \
      "invalid_request_error")                                                                  \
    X(ERR_LENGTH_REQUIRED, "length_required", -1015, "length required", 411,                   \
      "invalid_request_error")                                                                  \
    X(ERR_MEDIA_TYPE, "unsupported_media_type", -1016, "unsupported media type", 415,          \
      "invalid_request_error")                                                                  \
    X(ERR_HEADERS_TOO_LARGE, "headers_too_large", -1017, "request headers too large", 431,     \
      "invalid_request_error")                                                                  \
    X(ERR_PAYMENT, "budget_exceeded", -1018, "budget exceeded", 402, "insufficient_quota")     \
    X(ERR_CANCELLED, "cancelled", -1019, "cancelled", 499, "invalid_request_error")            \
    X(ERR_BUSY, "busy", -1020, "server busy", 503, "server_error")                             \
    X(ERR_EXISTS, "already_exists", -1021, "already exists", 409, "invalid_request_error")     \
    X(ERR_CONFLICT, "conflict", -1022, "conflict", 409, "invalid_request_error")               \
    X(ERR_POLICY, "content_policy_violation", -1023, "content policy violation", 400,          \
      "invalid_request_error")                                                                  \
    X(ERR_UPSTREAM, "upstream_error", -1024, "upstream error", 502, "server_error")            \
    X(ERR_EOF, "end_of_input", -1025, "unexpected end of input", 400, "invalid_request_error") \
    X(ERR_NOT_IMPLEMENTED, "not_implemented", -1026, "not implemented", 501,                    \
      "invalid_request_error")                                                                  \
    X(ERR_HTTP_VERSION, "http_version_not_supported", -1027, "HTTP version not supported", 505, \
      "invalid_request_error")

enum err_code {
#define ERR_ENUM_(code, name, value, msg, status, type) code = (value),
    ERR_MAP(ERR_ENUM_)
#undef ERR_ENUM_
};

/* Name of a code ("invalid_argument"); "unknown_error" for values not in the table. */
const char *err_name(int code);
/* Default one-line message of a code. */
const char *err_str(int code);
/* HTTP status a code maps to; 500 for unknown codes. */
int err_http_status(int code);
/* OpenAI error "type" string of a code; "server_error" for unknown codes. */
const char *err_openai_type(int code);

#define ERR_MSG_MAX 512

/* Caller-owned detail for an error: a code and one sentence. */
typedef struct err_msg {
    int code;
    char text[ERR_MSG_MAX];
} err_msg;

/*
 * Records code and a printf-formatted sentence in e (which may be NULL) and
 * returns code, so callers can write `return err_set(e, ERR_FORMAT, "...")`.
 * Text longer than ERR_MSG_MAX-1 is cut at a UTF-8 boundary.
 */
int err_set(err_msg *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_setv(err_msg *e, int code, const char *fmt, va_list ap);

/* Clears e (code 0, empty text). e may be NULL. */
void err_clear(err_msg *e);

/* The detail text of e if set, else err_str(code). Never NULL. */
const char *err_text(const err_msg *e, int code);
