/*
 * guard — guardrails: detectors (PII, secrets, custom patterns, blocklists,
 * prompt injection) and the policies that turn their findings into actions.
 *
 * A pure library: no HTTP, no threads of its own, no globals beyond a lazily
 * built, immutable Unicode table. The pipeline uses it at three points:
 *
 *   request text     guard_req_check_input()   allow | redact | flag | ERR_POLICY
 *   retrieved chunk  guard_req_check_chunk()   keep | drop | quote as data
 *   output stream    guard_stream_feed/finish  safe bytes to emit | ERR_POLICY
 *
 * and `ferry guard scan` runs exactly the same calls on stdin.
 *
 * Objects:
 *   guard_engine   a compiled policy set (policies, automata, compiled
 *                  patterns, the audit hash key). Immutable after load:
 *                  share it between threads freely; free it after the last
 *                  request using it has finished.
 *   guard_policy   one policy of an engine (borrowed, lives as long as it).
 *   guard_scratch  per-thread working memory for scans (normalization maps,
 *                  span arrays). Not thread-safe; reuse it across calls.
 *   guard_req      per-request state: the redaction map (placeholders ->
 *                  originals, in memory only, never stored), the request id,
 *                  the audit sink. One thread at a time.
 *   guard_stream   a stateful output filter of one request.
 *
 * Offsets: every span is in bytes of the scanned text. guard_cp_offset()
 * converts to Unicode code points for JSON output.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/buf.h"

/* ---- types and actions -------------------------------------------------- */

/* Entity types. Custom patterns use GUARD_T_CUSTOM plus their index. */
typedef enum guard_type {
    GUARD_T_EMAIL = 0,
    GUARD_T_PHONE,
    GUARD_T_CN_ID,
    GUARD_T_CREDIT_CARD,
    GUARD_T_IBAN,
    GUARD_T_IPV4,
    GUARD_T_IPV6,
    GUARD_T_API_KEY,
    GUARD_T_PRIVATE_KEY,
    GUARD_T_CUSTOM,    // custom PCRE2 pattern; guard_span.sub = pattern index
    GUARD_T_BLOCKLIST, // blocklist term; guard_span.sub = term id
    GUARD_T_COUNT_
} guard_type;

#define GUARD_N_BUILTIN GUARD_T_CUSTOM // the built-in entity types come first

/* Name used in JSON, policies and placeholders ("email"; "EMAIL" upper-cased). */
const char *guard_type_name(guard_type t);
/* Detector family of a type: "pii", "secrets", "custom", "blocklist". */
const char *guard_type_detector(guard_type t);
/* Parses a type name; returns 0 or ERR_INVAL. */
int guard_type_parse(const char *s, guard_type *out) MUST_USE;

/* Ordered by severity: a text's action is the most severe of its findings. */
typedef enum guard_action {
    GUARD_OFF = 0, // detector not run
    GUARD_ALLOW,   // nothing found (only as a decision, never configured)
    GUARD_FLAG,    // log + metric + audit only
    GUARD_REDACT,  // replace spans with typed placeholders [EMAIL_1]
    GUARD_BLOCK,   // refuse: ERR_POLICY, 400 content_policy_violation
} guard_action;

const char *guard_action_name(guard_action a); // "off" "allow" "flag" "redact" "block"
/* Parses "off|flag|redact|block". Returns 0 or ERR_INVAL. */
int guard_action_parse(const char *s, guard_action *out) MUST_USE;

/* ---- engine and policies ------------------------------------------------ */

typedef struct guard_engine guard_engine;
typedef struct guard_policy guard_policy;
typedef struct guard_scratch guard_scratch;
typedef struct guard_req guard_req;
typedef struct guard_stream guard_stream;

/*
 * The optional model judge. Called with the text and its rule score; writes
 * its own attack probability in [0,1] to *out_score and returns 0, or returns
 * a negative ERR_* (then the rule score stands). Only called when the rule
 * score is >= the policy's judge_threshold, so its cost stays bounded. It runs
 * on the calling thread; a remote judge must enforce its own timeout.
 */
typedef int (*guard_judge_fn)(void *ctx, const char *text, size_t len, double rule_score,
                              double *out_score);

/* One audit record: never the matched text, only a keyed hash of it. */
typedef struct guard_audit {
    const char *request_id; // "" when none
    const char *policy_id;
    const char *stage;    // "input", "chunk", "output"
    const char *detector; // "pii" "secrets" "custom" "blocklist" "injection"
    const char *type;     // entity type or custom name; "injection" for injection
    guard_action action;
    size_t span_bytes; // length of the matched span in bytes
    double score;      // injection score; 1 for validated entities
    char hash_hex[33]; // BLAKE2b-128 keyed hash of the matched bytes, hex
} guard_audit;

typedef void (*guard_audit_fn)(void *ctx, const guard_audit *rec);

/* Engine-wide options. */
typedef struct guard_config {
    size_t text_max_bytes; // largest text scanned at once (default 16 MiB)
    size_t spans_max;      // most spans per scan (default 65536)
    uint8_t audit_key[32]; // key for audit hashes, used when has_audit_key
    bool has_audit_key;    // false: a random per-process key (libsodium)
    guard_judge_fn judge;  // optional model judge (may be NULL)
    void *judge_ctx;
} guard_config;

/* Defaults: 16 MiB texts, 65536 spans, random audit key, no judge. */
guard_config guard_config_default(void);

/*
 * Builds an engine from a policy document (JSON text, format in docs/guard.md).
 * base_dir resolves relative "file" paths inside it (NULL = current dir).
 * Returns 0 and *out (caller frees with guard_engine_free), or ERR_FORMAT /
 * ERR_INVAL / ERR_NOMEM / ERR_IO / ERR_TOO_LARGE with the place in e.
 * Any thread; the result is immutable and thread-safe.
 */
int guard_engine_from_json(const char *json, size_t len, const char *base_dir,
                           const guard_config *cfg, guard_engine **out, err_msg *e) MUST_USE;
/*
 * Same, from a YAML document (the same keys; YAML 1.2 core scalars, so
 * `email: off` is the action "off"). Errors carry "policy:LINE:COL: ".
 */
int guard_engine_from_yaml(const char *yaml, size_t len, const char *base_dir,
                           const guard_config *cfg, guard_engine **out, err_msg *e) MUST_USE;
/*
 * Same, reading the document from path (relative files resolve beside it):
 * JSON when the name ends in .json, YAML when it ends in .yaml/.yml, else
 * JSON when the text starts with '{' and YAML otherwise. Errors name the
 * file, and for YAML the line and column of the offending value:
 * `guard: p.yaml:7:12: policy "support": actions.email: must be one of ...`.
 */
int guard_engine_load(const char *path, const guard_config *cfg, guard_engine **out,
                      err_msg *e) MUST_USE;
/* The built-in default policy "default" (see docs/guard.md), no blocklist. */
int guard_engine_default(const guard_config *cfg, guard_engine **out, err_msg *e) MUST_USE;
void guard_engine_free(guard_engine *g);

/*
 * The policy for a request: the key's policy if the key is mapped, else the
 * route's, else the default one. key and route may be NULL. Never NULL; the
 * pointer lives as long as the engine.
 */
const guard_policy *guard_engine_select(const guard_engine *g, const char *route,
                                        const char *key);
/* Policy by id, or NULL. */
const guard_policy *guard_engine_policy(const guard_engine *g, const char *id);
/* The policy's id (borrowed). */
const char *guard_policy_id(const guard_policy *p);
/* Configured action of a type for this policy (custom: of pattern `sub`). */
guard_action guard_policy_action(const guard_policy *p, guard_type t, size_t sub);
/* Name of custom pattern i, or NULL. Number of custom patterns / terms. */
const char *guard_policy_custom_name(const guard_policy *p, size_t i);
size_t guard_policy_custom_count(const guard_policy *p);
size_t guard_policy_term_count(const guard_policy *p);

/* ---- scanning ----------------------------------------------------------- */

typedef struct guard_span {
    size_t start, end; // bytes of the scanned text, end exclusive
    guard_type type;
    uint32_t sub; // custom pattern index or blocklist term id
} guard_span;

typedef struct guard_result {
    const guard_span *entities; // PII, secrets, custom; sorted by start
    size_t n_entities;
    const guard_span *terms; // blocklist hits, sorted by start
    size_t n_terms;
    double inj_score;   // [0,1], after the judge if it ran
    double inj_rule;    // the rule score alone
    bool inj_attack;    // inj_score >= threshold
    bool judge_called;  // the judge ran for this text
    guard_action action; // the decision for this text under the policy
} guard_result;

/* Scratch memory for scans; NULL when out of memory. One thread at a time. */
guard_scratch *guard_scratch_new(void);
void guard_scratch_free(guard_scratch *s);

/* What to run: used by the stream filter (no injection on output). */
enum {
    GUARD_SCAN_ENTITIES = 1,
    GUARD_SCAN_BLOCKLIST = 2,
    GUARD_SCAN_INJECTION = 4,
    GUARD_SCAN_ALL = 7,
};

/*
 * Runs the policy's detectors (those not "off", within `what`) over text and
 * decides the action. The arrays in *out point into s and stay valid until
 * the next scan with s. Returns 0, or ERR_TOO_LARGE (text or span cap),
 * ERR_NOMEM. Pure: no audit, no request state. Thread: the owner of s.
 */
int guard_scan(const guard_policy *p, guard_scratch *s, const char *text, size_t len,
               unsigned what, guard_result *out, err_msg *e) MUST_USE;

/* Code-point index of byte offset off in text (invalid bytes count as one). */
size_t guard_cp_offset(const char *text, size_t len, size_t off);

/* ---- requests ----------------------------------------------------------- */

/*
 * Per-request state. request_id may be NULL. audit may be NULL (no records).
 * Returns NULL when out of memory. The redaction map lives only here and is
 * wiped (sodium_memzero) by guard_req_free.
 */
guard_req *guard_req_new(const guard_engine *g, const guard_policy *p, const char *request_id,
                         guard_audit_fn audit, void *audit_ctx);
void guard_req_free(guard_req *r);
/*
 * Starts a new request on r, keeping its scratch memory: the redaction map is
 * wiped and the placeholder counters restart. For batch callers (`ferry guard
 * scan --lines`) that handle one text per request. request_id may be NULL.
 */
void guard_req_reset(guard_req *r, const char *request_id);
/* The request's scratch (for callers that want guard_scan on the same thread). */
guard_scratch *guard_req_scratch(guard_req *r);

/*
 * Checks request text. Returns 0 with the text to forward appended to out
 * (redacted when the policy says so; unchanged when allowed or flagged), or
 * ERR_POLICY when blocked (out unchanged; answer with guard_error_json), or
 * ERR_TOO_LARGE / ERR_NOMEM. Every finding is audited. res (may be NULL)
 * receives the scan result. Same call for every message of a request: the
 * placeholders number on across calls.
 */
int guard_req_check_input(guard_req *r, const char *text, size_t len, buf *out,
                          guard_result *res, err_msg *e) MUST_USE;

typedef enum guard_chunk_verdict {
    GUARD_CHUNK_KEEP = 0,  // use as is (after redaction, if any)
    GUARD_CHUNK_DROP = 1,  // leave the chunk out
    GUARD_CHUNK_QUOTE = 2, // out holds the chunk quoted as inert data
} guard_chunk_verdict;

/*
 * Checks a retrieved chunk for indirect injection (and the policy's PII /
 * blocklist rules). Above the injection threshold the chunk is dropped or
 * quoted as data per the policy's "retrieved" setting. Returns 0 and the
 * verdict (out holds the text to use unless DROP), or an error as above.
 */
int guard_req_check_chunk(guard_req *r, const char *text, size_t len, buf *out,
                          guard_chunk_verdict *verdict, err_msg *e) MUST_USE;

/*
 * Replaces the request's placeholders ([EMAIL_1] ...) in text by the
 * originals, appending to out. Returns 0, ERR_TOO_LARGE or ERR_NOMEM.
 */
int guard_req_restore(guard_req *r, const char *text, size_t len, buf *out) MUST_USE;

/*
 * The body of a blocked request:
 * {"error":{"message":"content policy violation","type":"invalid_request_error",
 *  "param":null,"code":"content_policy_violation","policy_id":"<id>"}}
 * No detail about what matched. The HTTP status is err_http_status(ERR_POLICY).
 */
int guard_error_json(const guard_policy *p, buf *out) MUST_USE;

/* ---- output stream ------------------------------------------------------ */

/*
 * An output filter of request r (r must outlive it). Holds back the last
 * `stream_window` bytes of the policy so a term or secret split across chunks
 * is still caught. Returns NULL when out of memory.
 */
guard_stream *guard_stream_new(guard_req *r);
void guard_stream_free(guard_stream *s);
/*
 * Feeds one chunk of model output. Appends the bytes that are now safe to
 * emit to out (redacted per policy, placeholders restored when the policy
 * says "restore"), and returns 0; or returns ERR_POLICY: the stream must end
 * with an error event, nothing more is emitted, and everything emitted so far
 * lies before the held-back window. ERR_TOO_LARGE when the held text passes
 * its cap (a private key block that never ends), which callers treat as block.
 */
int guard_stream_feed(guard_stream *s, const char *chunk, size_t len, buf *out) MUST_USE;
/* End of output: scans and emits what was held. Same returns as feed. */
int guard_stream_finish(guard_stream *s, buf *out) MUST_USE;
/* Bytes emitted so far (for tests of the hold-back bound). */
size_t guard_stream_emitted(const guard_stream *s);

/* ---- validators (exposed for tests and for other modules) --------------- */

bool guard_luhn_ok(const char *digits, size_t n);
/* Card number (digits only) with a known issuer prefix and length, Luhn ok. */
bool guard_card_ok(const char *digits, size_t n);
/* 18-char Chinese resident id: region, plausible birth date, MOD 11-2 digit. */
bool guard_cn_id_ok(const char *s, size_t n);
/* IBAN without spaces: country length and mod 97 == 1. */
bool guard_iban_ok(const char *s, size_t n);
bool guard_ipv4_ok(const char *s, size_t n);
bool guard_ipv6_ok(const char *s, size_t n);

/* ---- normalization (exposed for tests and the blocklist tools) ---------- */

/*
 * Normalizes text as the blocklist sees it: NFKC, case fold, full-width to
 * half-width, zero-width and other default-ignorable characters removed,
 * spaces/punctuation between CJK characters removed, spaced-out letters
 * ("b o m b") joined. Appends to out. Returns 0, ERR_TOO_LARGE or ERR_NOMEM.
 */
int guard_normalize(const char *text, size_t len, buf *out) MUST_USE;
