/*
 * cli/config — ferry serve's configuration: one YAML file, every key also a
 * flag and a FERRY_* environment variable. Precedence: flag > environment >
 * file > default. One table (config.c) lists every key with its YAML path,
 * flag, variable, type, default and help; --help and docs/configuration.md
 * follow it.
 *
 * The file is read with libyaml for positions (a syntax error, an unknown key
 * and a bad value are reported as FILE:LINE:COLUMN: key K: reason) and mapped
 * onto structs by libcyaml. Values are validated by the same code whatever
 * their origin.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/base.h"

#define CONFIG_MODELS_MAX 16
#define CONFIG_STR_MAX 1024
#define CONFIG_FILE_MAX (1u << 20) // a config file larger than 1 MiB is refused

typedef struct ferry_config {
    char listen[CONFIG_STR_MAX]; // "HOST:PORT"
    char host[256];              // parsed from listen
    uint16_t port;
    char data[CONFIG_STR_MAX];
    char models[CONFIG_MODELS_MAX][CONFIG_STR_MAX];
    int n_models;
    char embedding_model[CONFIG_STR_MAX]; // bert GGUF for embeddings; "" = lexical only
    char guard_policy[CONFIG_STR_MAX];      // guard policy file (JSON); "" = no guard
    char guard_judge[CONFIG_STR_MAX];       // judge: model name or API root URL; "" = none
    char guard_judge_model[256];            // model name at a remote judge URL
    int64_t guard_judge_timeout_ms;
    char rag[CONFIG_STR_MAX];               // TARGET=COLLECTION[:TOP_K],...
    char rag_template[CONFIG_STR_MAX];      // template file; "" = built-in
    int64_t threads; // 0 = number of cores
    int64_t kv_cache_mb;        // per model
    char kv_cache_type[16];     // "f16" or "q8_0"
    int64_t max_batch_tokens;   // per scheduler step
    int64_t max_seqs;
    int64_t max_waiting;
    char chat_template[CONFIG_STR_MAX]; // "" | FAMILY | NAME=FAMILY,...
    int64_t max_connections;
    int64_t per_ip_connections;
    uint64_t max_body_bytes;
    uint64_t max_header_bytes;
    int64_t read_timeout_s;
    int64_t shutdown_grace_s;
    bool debug_routes;
    char log_level[16];
    char log_file[CONFIG_STR_MAX];
    char log_debug_modules[256];
} ferry_config;

/* Fills c with every key's default. */
void config_defaults(ferry_config *c);

/*
 * Applies the YAML file at path onto c. Returns 0, or ERR_IO (cannot read),
 * ERR_TOO_LARGE (over CONFIG_FILE_MAX), ERR_FORMAT (YAML syntax, unknown key,
 * wrong node type) or ERR_INVAL (bad value), with e->text naming the file,
 * line, column and key.
 */
int config_load_file(ferry_config *c, const char *path, err_msg *e) MUST_USE;
/* Same, from a buffer; name is used in messages in place of a path. */
int config_load_yaml(ferry_config *c, const char *name, const char *text, size_t len,
                     err_msg *e) MUST_USE;

/* Applies FERRY_* variables from envp (NULL-terminated "NAME=value"). */
int config_apply_env(ferry_config *c, char *const *envp, err_msg *e) MUST_USE;

/*
 * Sets one key from a command-line flag (name without "--"). value may be
 * NULL for a boolean flag ("--debug-routes" = true). Returns 0, ERR_NOT_FOUND
 * (no such flag) or ERR_INVAL.
 */
int config_apply_flag(ferry_config *c, const char *flag, const char *value, err_msg *e) MUST_USE;
/* True when flag takes no value (booleans). */
bool config_flag_is_bool(const char *flag);
/* True when flag names a key. */
bool config_flag_known(const char *flag);

/*
 * Reads a chat_template value: "" (none), FAMILY (every model) or
 * NAME=FAMILY,... . Checks its syntax and family names (ERR_INVAL, reason in
 * why); when model and out are given, writes the family that applies to model
 * (or "" when none) to out[cap].
 */
int config_chat_template_for(const char *spec, const char *model, char *out, size_t cap,
                             char *why, size_t why_cap) MUST_USE;

/* Writes the key table for --help: flag, variable, YAML key, default, help. */
void config_print_help(FILE *f);
