/*
 * cli/config — the key table, the YAML reader and the three other origins.
 *
 * Reading a file: (1) libyaml walks the events, recording the line and column
 * of every key and refusing syntax errors, unknown keys and wrong node kinds
 * with their position; (2) libcyaml maps the document onto raw_* structs of
 * strings (the schema below mirrors the table); (3) each present string is
 * parsed by the key's type, and errors carry the position from (1).
 */
#include "cli/config.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/buf.h"
#include "base/log.h"
#include "model/chat.h"

typedef enum ktype {
    K_STR, K_INT, K_SIZE, K_BOOL, K_LEVEL, K_LISTEN, K_LIST,
    K_KVTYPE,  // "f16" or "q8_0"
    K_CHATTPL, // FAMILY, or NAME=FAMILY[,NAME=FAMILY]...
} ktype;

/* Raw shapes libcyaml fills: every scalar is kept as text. */
typedef struct raw_http {
    char *max_connections, *per_ip_connections, *max_body_bytes, *max_header_bytes,
        *read_timeout_s, *shutdown_grace_s, *debug_routes;
} raw_http;
typedef struct raw_log {
    char *level, *file, *debug_modules;
} raw_log;
typedef struct raw_cfg {
    char *listen, *data, *threads, *embedding_model;
    char *guard_policy, *guard_judge, *guard_judge_model, *guard_judge_timeout_ms;
    char *rag, *rag_template;
    char *kv_cache_mb, *kv_cache_type, *max_batch_tokens, *max_seqs, *max_waiting,
        *chat_template;
    char **models;
    unsigned models_count;
    raw_http *http;
    raw_log *log;
} raw_cfg;

enum { SEC_TOP, SEC_HTTP, SEC_LOG };

typedef struct key_def {
    const char *path; // YAML key ("http.max_body_bytes")
    const char *flag; // command-line flag without "--"
    const char *env;  // environment variable
    ktype type;
    const char *def;
    int64_t min, max; // K_INT range; K_SIZE max
    int sec;          // section of the raw struct
    size_t raw_off;   // offset of the char * in the section's raw struct
    size_t off;       // offset of the value in ferry_config
    size_t cap;       // K_STR: size of the char array
    const char *help;
} key_def;

#define CF(m) offsetof(ferry_config, m), sizeof(((ferry_config *)0)->m)
#define RT(m) SEC_TOP, offsetof(raw_cfg, m)
#define RH(m) SEC_HTTP, offsetof(raw_http, m)
#define RL(m) SEC_LOG, offsetof(raw_log, m)

static const key_def keys[] = {
    {"listen", "listen", "FERRY_LISTEN", K_LISTEN, "127.0.0.1:8080", 0, 0, RT(listen),
     CF(listen), "address and port to serve on, HOST:PORT or [IPv6]:PORT (port 0: any free)"},
    {"data", "data", "FERRY_DATA", K_STR, "./ferry-data", 0, 0, RT(data), CF(data),
     "data directory: the SQLite database and other state (created if absent)"},
    {"models", "model", "FERRY_MODELS", K_LIST, "", 0, 0, RT(models), CF(models),
     "models to serve, [NAME=]PATH; repeat the flag, comma-separate the variable; each "
     "model gets its own scheduler"},
    {"embedding_model", "embedding-model", "FERRY_EMBEDDING_MODEL", K_STR, "", 0, 0,
     RT(embedding_model), CF(embedding_model),
     "a bert GGUF embedding model behind /v1/embeddings and collections (empty: the built-in "
     "lexical embedder only)"},
    {"guard_policy", "guard-policy", "FERRY_GUARD_POLICY", K_STR, "", 0, 0, RT(guard_policy),
     CF(guard_policy),
     "guard policy file (YAML or JSON, docs/guard.md) applied to chat and completions per "
     "route and API key (empty: no guard)"},
    {"guard_judge", "guard-judge", "FERRY_GUARD_JUDGE", K_STR, "", 0, 0, RT(guard_judge),
     CF(guard_judge),
     "the guard's model judge: a served model's name, or an OpenAI-compatible API root "
     "(http://HOST:PORT/v1) (empty: rule scores only)"},
    {"guard_judge_model", "guard-judge-model", "FERRY_GUARD_JUDGE_MODEL", K_STR, "", 0, 0,
     RT(guard_judge_model), CF(guard_judge_model),
     "the model name to ask at a remote guard_judge URL"},
    {"guard_judge_timeout_ms", "guard-judge-timeout-ms", "FERRY_GUARD_JUDGE_TIMEOUT_MS", K_INT,
     "10000", 1, 600000, RT(guard_judge_timeout_ms), CF(guard_judge_timeout_ms),
     "how long one judge call may take; past it the rule score stands"},
    {"rag", "rag", "FERRY_RAG", K_STR, "", 0, 0, RT(rag), CF(rag),
     "retrieval for every request to a route or model: TARGET=COLLECTION[:TOP_K], "
     "comma-separated (TARGET: /v1/chat/completions, /v1/completions or a model name)"},
    {"rag_template", "rag-template", "FERRY_RAG_TEMPLATE", K_STR, "", 0, 0, RT(rag_template),
     CF(rag_template),
     "file with the RAG prompt template ({sources} and {question} are replaced; empty: the "
     "built-in one that asks for answers from the sources cited as [1], [2])"},
    {"threads", "threads", "FERRY_THREADS", K_INT, "0", 0, 1024, RT(threads), CF(threads),
     "HTTP worker threads (0: one per core)"},
    {"kv_cache_mb", "kv-cache-mb", "FERRY_KV_CACHE_MB", K_INT, "256", 1, 1 << 20,
     RT(kv_cache_mb), CF(kv_cache_mb),
     "KV cache pool of each model in MiB (paged in blocks of 16 tokens)"},
    {"kv_cache_type", "kv-cache-type", "FERRY_KV_CACHE_TYPE", K_KVTYPE, "f16", 0, 0,
     RT(kv_cache_type), CF(kv_cache_type),
     "KV cache element type: f16, or q8_0 (about half the memory per block)"},
    {"max_batch_tokens", "max-batch-tokens", "FERRY_MAX_BATCH_TOKENS", K_INT, "512", 1, 65536,
     RT(max_batch_tokens), CF(max_batch_tokens),
     "tokens per scheduler step (decode tokens plus prefill chunks), per model"},
    {"max_seqs", "max-seqs", "FERRY_MAX_SEQS", K_INT, "64", 1, 4096, RT(max_seqs), CF(max_seqs),
     "sequences running at once per model (at most max_batch_tokens)"},
    {"max_waiting", "max-waiting", "FERRY_MAX_WAITING", K_INT, "256", 1, 1000000,
     RT(max_waiting), CF(max_waiting),
     "requests queued per model before new ones get 429 with Retry-After"},
    {"chat_template", "chat-template", "FERRY_CHAT_TEMPLATE", K_CHATTPL, "", 0, 0,
     RT(chat_template), CF(chat_template),
     "chat template family overriding the GGUF's: FAMILY for every model, or "
     "NAME=FAMILY,... per model (chatml, qwen, llama2, llama3, mistral, zephyr, gemma, phi3)"},
    {"http.max_connections", "max-connections", "FERRY_HTTP_MAX_CONNECTIONS", K_INT, "1024", 1,
     1000000, RH(max_connections), CF(max_connections), "open connections at most"},
    {"http.per_ip_connections", "per-ip-connections", "FERRY_HTTP_PER_IP_CONNECTIONS", K_INT,
     "0", 0, 1000000, RH(per_ip_connections), CF(per_ip_connections),
     "open connections per client IP at most (0: no per-IP limit)"},
    {"http.max_body_bytes", "max-body-bytes", "FERRY_HTTP_MAX_BODY_BYTES", K_SIZE, "8MiB", 0,
     (int64_t)1 << 40, RH(max_body_bytes), CF(max_body_bytes),
     "request bodies larger than this get 413 before they are read"},
    {"http.max_header_bytes", "max-header-bytes", "FERRY_HTTP_MAX_HEADER_BYTES", K_SIZE,
     "32KiB", 1024, 16 << 20, RH(max_header_bytes), CF(max_header_bytes),
     "request line plus headers larger than this get 431"},
    {"http.read_timeout_s", "read-timeout-s", "FERRY_HTTP_READ_TIMEOUT_S", K_INT, "30", 0, 86400,
     RH(read_timeout_s), CF(read_timeout_s),
     "a request not fully received this many seconds after it began gets 408; "
     "also the idle keep-alive timeout (0: never)"},
    {"http.shutdown_grace_s", "shutdown-grace-s", "FERRY_HTTP_SHUTDOWN_GRACE_S", K_INT, "30", 0,
     86400, RH(shutdown_grace_s), CF(shutdown_grace_s),
     "on SIGTERM/SIGINT, how long in-flight requests may take to finish"},
    {"http.debug_routes", "debug-routes", "FERRY_HTTP_DEBUG_ROUTES", K_BOOL, "false", 0, 0,
     RH(debug_routes), CF(debug_routes),
     "serve /debug/* test routes (sleep, stream, fail, echo); never in production"},
    {"log.level", "log-level", "FERRY_LOG_LEVEL", K_LEVEL, "info", 0, 0, RL(level),
     CF(log_level), "debug, info, warn, error or off"},
    {"log.file", "log-file", "FERRY_LOG_FILE", K_STR, "stderr", 0, 0, RL(file), CF(log_file),
     "log destination: stderr or a file path (reopened on SIGHUP)"},
    {"log.debug_modules", "log-debug-modules", "FERRY_LOG_DEBUG_MODULES", K_STR, "", 0, 0,
     RL(debug_modules), CF(log_debug_modules),
     "comma-separated modules logged at debug whatever the level (e.g. http,sched)"},
};

static const char *const sections[] = {"http", "log"};

/* ----------------------------------------------------------- values -- */

int config_chat_template_for(const char *spec, const char *model, char *out, size_t cap,
                             char *why, size_t why_cap)
{
    if (out && cap)
        out[0] = '\0';
    bool has_all = false;
    for (const char *p = spec; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[160];
        if (len == 0 || len >= sizeof item) {
            snprintf(why, why_cap, "\"%s\" is not FAMILY or NAME=FAMILY,...", spec);
            return ERR_INVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *eq = strchr(item, '=');
        const char *fam = eq ? eq + 1 : item;
        if (eq)
            *eq = '\0';
        chat_family f;
        if ((eq && eq == item) || chat_family_parse(fam, &f) != 0) {
            snprintf(why, why_cap,
                     "\"%.*s\" is not FAMILY or NAME=FAMILY (families: chatml, qwen, llama2, "
                     "llama3, mistral, zephyr, gemma, phi3)", (int)len, p);
            return ERR_INVAL;
        }
        if (!eq && (has_all || p != spec || comma)) {
            snprintf(why, why_cap, "a bare family (\"%s\") applies to every model and cannot "
                     "be combined with others", item);
            return ERR_INVAL;
        }
        has_all = !eq;
        if (model && out && (!eq || strcmp(item, model) == 0))
            snprintf(out, cap, "%s", fam);
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ERR_INVAL;
}

/* Splits "HOST:PORT" / "[V6]:PORT" / ":PORT" into c->host and c->port. */
static int parse_listen(ferry_config *c, const char *s, char *why, size_t why_cap)
{
    const char *host = s, *colon;
    size_t hn;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') {
            snprintf(why, why_cap, "\"%s\" is not [IPv6]:PORT", s);
            return ERR_INVAL;
        }
        host = s + 1;
        hn = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            snprintf(why, why_cap, "\"%s\" is not HOST:PORT", s);
            return ERR_INVAL;
        }
        hn = (size_t)(colon - s);
    }
    int64_t port;
    if (parse_i64(colon + 1, 0, 65535, &port) != 0) {
        snprintf(why, why_cap, "port \"%s\" is not a number in [0, 65535]", colon + 1);
        return ERR_INVAL;
    }
    if (hn >= sizeof c->host) {
        snprintf(why, why_cap, "host is too long");
        return ERR_INVAL;
    }
    if (hn == 0) {
        snprintf(c->host, sizeof c->host, "0.0.0.0");
    } else {
        memcpy(c->host, host, hn);
        c->host[hn] = '\0';
        if (strcmp(c->host, "localhost") == 0)
            snprintf(c->host, sizeof c->host, "127.0.0.1");
    }
    c->port = (uint16_t)port;
    return 0;
}

/* Sets key k from text. On error writes the reason (without origin) to why. */
static int set_value(ferry_config *c, const key_def *k, const char *v, char *why, size_t why_cap)
{
    char *base = (char *)c;
    switch (k->type) {
    case K_STR:
    case K_LEVEL:
    case K_LISTEN:
    case K_KVTYPE:
    case K_CHATTPL: {
        if (strlen(v) >= k->cap) {
            snprintf(why, why_cap, "value is longer than %zu bytes", k->cap - 1);
            return ERR_INVAL;
        }
        if (k->type == K_LEVEL) {
            log_level l;
            if (log_level_parse(v, &l) != 0) {
                snprintf(why, why_cap, "\"%s\" is not one of debug, info, warn, error, off", v);
                return ERR_INVAL;
            }
        }
        if (k->type == K_LISTEN && parse_listen(c, v, why, why_cap) != 0)
            return ERR_INVAL;
        if (k->type == K_KVTYPE && strcmp(v, "f16") != 0 && strcmp(v, "q8_0") != 0) {
            snprintf(why, why_cap, "\"%s\" is not f16 or q8_0", v);
            return ERR_INVAL;
        }
        if (k->type == K_CHATTPL && config_chat_template_for(v, NULL, NULL, 0, why, why_cap) != 0)
            return ERR_INVAL;
        snprintf(base + k->off, k->cap, "%s", v);
        return 0;
    }
    case K_INT: {
        int64_t x;
        if (parse_i64(v, k->min, k->max, &x) != 0) {
            snprintf(why, why_cap, "\"%s\" is not an integer in [%lld, %lld]", v,
                     (long long)k->min, (long long)k->max);
            return ERR_INVAL;
        }
        memcpy(base + k->off, &x, sizeof x);
        return 0;
    }
    case K_SIZE: {
        uint64_t x;
        if (parse_size(v, (uint64_t)k->max, &x) != 0 || x < (uint64_t)k->min) {
            snprintf(why, why_cap,
                     "\"%s\" is not a size in [%lld, %lld] bytes (units: k, m, g, KiB, MiB, GiB)",
                     v, (long long)k->min, (long long)k->max);
            return ERR_INVAL;
        }
        memcpy(base + k->off, &x, sizeof x);
        return 0;
    }
    case K_BOOL: {
        bool b;
        if (parse_bool(v, &b) != 0) {
            snprintf(why, why_cap, "\"%s\" is not true or false", v);
            return ERR_INVAL;
        }
        memcpy(base + k->off, &b, sizeof b);
        return 0;
    }
    case K_LIST: {
        if (c->n_models >= CONFIG_MODELS_MAX) {
            snprintf(why, why_cap, "more than %d models", CONFIG_MODELS_MAX);
            return ERR_INVAL;
        }
        if (!*v || strlen(v) >= CONFIG_STR_MAX) {
            snprintf(why, why_cap, "a model must be a non-empty [NAME=]PATH shorter than %d bytes",
                     CONFIG_STR_MAX);
            return ERR_INVAL;
        }
        snprintf(c->models[c->n_models++], CONFIG_STR_MAX, "%s", v);
        return 0;
    }
    }
    return ERR_INTERNAL;
}

void config_defaults(ferry_config *c)
{
    memset(c, 0, sizeof *c);
    char why[256];
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (keys[i].type != K_LIST) {
            int rc = set_value(c, &keys[i], keys[i].def, why, sizeof why);
            ASSERT(rc == 0); // the table's defaults are valid
            (void)rc;
        }
}

/* --------------------------------------------------------- positions -- */

#define POS_MAX 256

typedef struct pos_entry {
    char path[96];
    int line, col; // 1-based
} pos_entry;

typedef struct pos_table {
    pos_entry e[POS_MAX];
    size_t n;
} pos_table;

static const key_def *find_key(const char *path)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (strcmp(keys[i].path, path) == 0)
            return &keys[i];
    return NULL;
}

static bool is_section(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(sections); i++)
        if (strcmp(sections[i], name) == 0)
            return true;
    return false;
}

static const pos_entry *find_pos(const pos_table *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].path, path) == 0)
            return &t->e[i];
    return NULL;
}

/*
 * Walks the document: top level must be a mapping (or empty); its keys are
 * table keys or sections; section values are mappings of table keys; "models"
 * is a sequence of scalars; every other value is a scalar.
 */
static int scan_yaml(const char *name, const char *text, size_t len, pos_table *pt, err_msg *e)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return err_set(e, ERR_NOMEM, "%s: out of memory", name);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0;
    /* depth 0: stream/document; 1: top mapping; 2: inside a section mapping or
     * the models sequence. */
    int depth = 0;
    bool expect_key[3] = {false, false, false};
    char section[32] = "";
    char pending[96] = ""; // the key whose value comes next
    int pline = 0, pcol = 0;
    bool in_models = false;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = err_set(e, ERR_FORMAT, "%s:%zu:%zu: YAML syntax error: %s%s%s", name,
                         p.problem_mark.line + 1, p.problem_mark.column + 1,
                         p.problem ? p.problem : "invalid YAML", p.context ? " " : "",
                         p.context ? p.context : "");
            break;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        yaml_event_type_t t = ev.type;
        bool done = t == YAML_STREAM_END_EVENT;
        if (t == YAML_ALIAS_EVENT) {
            rc = err_set(e, ERR_FORMAT, "%s:%d:%d: aliases are not supported", name, line, col);
        } else if (t == YAML_MAPPING_START_EVENT) {
            if (depth == 0) {
                depth = 1;
                expect_key[1] = true;
            } else if (depth == 1 && !expect_key[1] && is_section(pending)) {
                depth = 2;
                expect_key[2] = true;
                snprintf(section, sizeof section, "%s", pending);
            } else {
                rc = err_set(e, ERR_FORMAT, "%s:%d:%d: key %s: expected a single value, not a mapping",
                             name, line, col, pending[0] ? pending : "(top)");
            }
        } else if (t == YAML_MAPPING_END_EVENT) {
            if (depth == 2) {
                depth = 1;
                section[0] = '\0';
                expect_key[1] = true;
            } else {
                depth = 0;
            }
        } else if (t == YAML_SEQUENCE_START_EVENT) {
            if (depth == 1 && !expect_key[1] && strcmp(pending, "models") == 0) {
                in_models = true;
                depth = 2;
            } else {
                rc = err_set(e, ERR_FORMAT, "%s:%d:%d: key %s: expected a single value, not a list",
                             name, line, col, pending[0] ? pending : "(top)");
            }
        } else if (t == YAML_SEQUENCE_END_EVENT) {
            in_models = false;
            depth = 1;
            expect_key[1] = true;
        } else if (t == YAML_SCALAR_EVENT) {
            const char *v = (const char *)ev.data.scalar.value;
            if (depth == 0) {
                if (ev.data.scalar.length)
                    rc = err_set(e, ERR_FORMAT, "%s:%d:%d: the file must be a mapping of keys",
                                 name, line, col);
            } else if (in_models) {
                // list entries: values, checked later
            } else if (expect_key[depth]) {
                char path[96];
                if (depth == 2)
                    snprintf(path, sizeof path, "%s.%.60s", section, v);
                else
                    snprintf(path, sizeof path, "%.80s", v);
                if (!find_key(path) && !(depth == 1 && is_section(path))) {
                    rc = err_set(e, ERR_FORMAT, "%s:%d:%d: key %s: unknown key", name, line, col,
                                 path);
                } else if (find_pos(pt, path)) {
                    rc = err_set(e, ERR_FORMAT, "%s:%d:%d: key %s: given twice", name, line, col,
                                 path);
                } else if (pt->n < POS_MAX) {
                    pos_entry *pe = &pt->e[pt->n++];
                    snprintf(pe->path, sizeof pe->path, "%s", path);
                    pe->line = line;
                    pe->col = col;
                }
                snprintf(pending, sizeof pending, "%s", path);
                pline = line;
                pcol = col;
                expect_key[depth] = false;
            } else {
                if (depth == 1 && is_section(pending) && ev.data.scalar.length)
                    rc = err_set(e, ERR_FORMAT, "%s:%d:%d: key %s: expected a mapping of keys",
                                 name, line, col, pending);
                if (depth == 1 && strcmp(pending, "models") == 0 && ev.data.scalar.length)
                    rc = err_set(e, ERR_FORMAT, "%s:%d:%d: key models: expected a list", name,
                                 line, col);
                expect_key[depth] = true;
            }
        }
        (void)pline;
        (void)pcol;
        yaml_event_delete(&ev);
        if (rc || done)
            break;
    }
    yaml_parser_delete(&p);
    return rc;
}

/* ------------------------------------------------------------ cyaml -- */

#define SF(name, st, m) CYAML_FIELD_STRING_PTR(name, CYAML_FLAG_OPTIONAL, st, m, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t http_fields[] = {
    SF("max_connections", raw_http, max_connections),
    SF("per_ip_connections", raw_http, per_ip_connections),
    SF("max_body_bytes", raw_http, max_body_bytes),
    SF("max_header_bytes", raw_http, max_header_bytes),
    SF("read_timeout_s", raw_http, read_timeout_s),
    SF("shutdown_grace_s", raw_http, shutdown_grace_s),
    SF("debug_routes", raw_http, debug_routes),
    CYAML_FIELD_END};
static const cyaml_schema_field_t log_fields[] = {
    SF("level", raw_log, level), SF("file", raw_log, file),
    SF("debug_modules", raw_log, debug_modules), CYAML_FIELD_END};
static const cyaml_schema_value_t model_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED)};
static const cyaml_schema_field_t top_fields[] = {
    SF("listen", raw_cfg, listen),
    SF("data", raw_cfg, data),
    SF("threads", raw_cfg, threads),
    SF("embedding_model", raw_cfg, embedding_model),
    SF("guard_policy", raw_cfg, guard_policy),
    SF("guard_judge", raw_cfg, guard_judge),
    SF("guard_judge_model", raw_cfg, guard_judge_model),
    SF("guard_judge_timeout_ms", raw_cfg, guard_judge_timeout_ms),
    SF("rag", raw_cfg, rag),
    SF("rag_template", raw_cfg, rag_template),
    SF("kv_cache_mb", raw_cfg, kv_cache_mb),
    SF("kv_cache_type", raw_cfg, kv_cache_type),
    SF("max_batch_tokens", raw_cfg, max_batch_tokens),
    SF("max_seqs", raw_cfg, max_seqs),
    SF("max_waiting", raw_cfg, max_waiting),
    SF("chat_template", raw_cfg, chat_template),
    CYAML_FIELD_SEQUENCE("models", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, raw_cfg, models,
                         &model_entry, 0, CONFIG_MODELS_MAX),
    CYAML_FIELD_MAPPING_PTR("http", CYAML_FLAG_OPTIONAL, raw_cfg, http, http_fields),
    CYAML_FIELD_MAPPING_PTR("log", CYAML_FLAG_OPTIONAL, raw_cfg, log, log_fields),
    CYAML_FIELD_END};
static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, raw_cfg, top_fields)};

typedef struct cy_log {
    buf text;
} cy_log;

static void cy_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    (void)level;
    cy_log *l = ctx;
    char line[512];
    vsnprintf(line, sizeof line, fmt, args);
    for (char *p = line; *p; p++)
        if (*p == '\n')
            *p = ' ';
    if (buf_append_str(&l->text, line) != 0)
        return; // keep what fits
}

static int apply_raw(ferry_config *c, const char *name, const raw_cfg *raw, const pos_table *pt,
                     err_msg *e)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const key_def *k = &keys[i];
        const pos_entry *pe = find_pos(pt, k->path);
        int line = pe ? pe->line : 0, col = pe ? pe->col : 0;
        char why[400];
        if (k->type == K_LIST) {
            c->n_models = 0;
            for (unsigned j = 0; j < raw->models_count; j++)
                if (set_value(c, k, raw->models[j] ? raw->models[j] : "", why, sizeof why))
                    return err_set(e, ERR_INVAL, "%s:%d:%d: key %s: %s", name, line, col,
                                   k->path, why);
            continue;
        }
        const void *sec = k->sec == SEC_TOP ? (const void *)raw
                          : k->sec == SEC_HTTP ? (const void *)raw->http
                                               : (const void *)raw->log;
        if (!sec)
            continue;
        const char *v;
        memcpy(&v, (const char *)sec + k->raw_off, sizeof v);
        if (!v)
            continue;
        if (set_value(c, k, v, why, sizeof why))
            return err_set(e, ERR_INVAL, "%s:%d:%d: key %s: %s", name, line, col, k->path, why);
    }
    return 0;
}

int config_load_yaml(ferry_config *c, const char *name, const char *text, size_t len, err_msg *e)
{
    if (len > CONFIG_FILE_MAX)
        return err_set(e, ERR_TOO_LARGE, "%s: the file is %zu bytes, the limit is %u", name, len,
                       CONFIG_FILE_MAX);
    pos_table *pt = calloc(1, sizeof *pt);
    if (!pt)
        return err_set(e, ERR_NOMEM, "%s: out of memory", name);
    int rc = scan_yaml(name, text, len, pt, e);
    if (rc) {
        free(pt);
        return rc;
    }
    /* An empty document (or only comments) sets nothing; libcyaml would
     * refuse it, so stop here. */
    if (pt->n == 0) {
        free(pt);
        return 0;
    }
    cy_log log;
    buf_init(&log.text, 4096);
    cyaml_config_t cc = {
        .log_fn = cy_log_fn,
        .log_ctx = &log,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
    };
    raw_cfg *raw = NULL;
    cyaml_err_t err = cyaml_load_data((const uint8_t *)text, len, &cc, &top_schema,
                                      (cyaml_data_t **)&raw, NULL);
    if (err != CYAML_OK) {
        /* The scan above catches what we know of; this is the rest (e.g.
         * more list entries than allowed), with libcyaml's own backtrace,
         * which names the line and column. */
        rc = err_set(e, ERR_FORMAT, "%s: %s%s%s", name, cyaml_strerror(err),
                     log.text.len ? ": " : "", log.text.len ? log.text.data : "");
    } else {
        rc = apply_raw(c, name, raw, pt, e);
        cyaml_free(&cc, &top_schema, raw, 0);
    }
    buf_deinit(&log.text);
    free(pt);
    return rc;
}

int config_load_file(ferry_config *c, const char *path, err_msg *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    buf b;
    buf_init(&b, CONFIG_FILE_MAX);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((rc = buf_append(&b, chunk, n)) != 0)
            break;
    bool read_err = ferror(f);
    fclose(f);
    if (rc == ERR_TOO_LARGE)
        rc = err_set(e, ERR_TOO_LARGE, "%s: the file is larger than %u bytes", path,
                     CONFIG_FILE_MAX);
    else if (rc)
        rc = err_set(e, rc, "%s: out of memory", path);
    else if (read_err)
        rc = err_set(e, ERR_IO, "%s: read error", path);
    else
        rc = config_load_yaml(c, path, b.data ? b.data : "", b.len, e);
    buf_deinit(&b);
    return rc;
}

int config_apply_env(ferry_config *c, char *const *envp, err_msg *e)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const key_def *k = &keys[i];
        size_t nl = strlen(k->env);
        for (char *const *ep = envp; ep && *ep; ep++) {
            if (strncmp(*ep, k->env, nl) != 0 || (*ep)[nl] != '=')
                continue;
            const char *v = *ep + nl + 1;
            char why[400];
            if (k->type == K_LIST) {
                c->n_models = 0;
                char item[CONFIG_STR_MAX];
                for (const char *p = v; *p;) {
                    const char *comma = strchr(p, ',');
                    size_t len = comma ? (size_t)(comma - p) : strlen(p);
                    if (len >= sizeof item)
                        len = sizeof item - 1;
                    memcpy(item, p, len);
                    item[len] = '\0';
                    if (set_value(c, k, item, why, sizeof why))
                        return err_set(e, ERR_INVAL, "environment %s: %s", k->env, why);
                    p = comma ? comma + 1 : p + strlen(p);
                }
            } else if (set_value(c, k, v, why, sizeof why)) {
                return err_set(e, ERR_INVAL, "environment %s: %s", k->env, why);
            }
        }
    }
    return 0;
}

static const key_def *find_flag(const char *flag)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (strcmp(keys[i].flag, flag) == 0)
            return &keys[i];
    return NULL;
}

bool config_flag_known(const char *flag)
{
    return find_flag(flag) != NULL;
}

bool config_flag_is_bool(const char *flag)
{
    const key_def *k = find_flag(flag);
    return k && k->type == K_BOOL;
}

int config_apply_flag(ferry_config *c, const char *flag, const char *value, err_msg *e)
{
    const key_def *k = find_flag(flag);
    if (!k)
        return err_set(e, ERR_NOT_FOUND, "unknown option --%s", flag);
    if (!value) {
        if (k->type != K_BOOL)
            return err_set(e, ERR_INVAL, "--%s needs a value", flag);
        value = "true";
    }
    char why[400];
    if (set_value(c, k, value, why, sizeof why))
        return err_set(e, ERR_INVAL, "--%s: %s", flag, why);
    return 0;
}

void config_print_help(FILE *f)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        const key_def *k = &keys[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", k->flag, k->type == K_BOOL ? "" : " V");
        fprintf(f, "  %-26s %s\n", flag, k->help);
        fprintf(f, "  %-26s key %s, env %s, default %s\n", "", k->path, k->env,
                k->def[0] ? k->def : "(none)");
    }
}
