/*
 * guard/yaml — the policy document in YAML: libyaml's document loader turns
 * it into the same jansson tree the JSON reader makes, so one validator
 * serves both, and every node's line and column go into a position map for
 * the error messages ("policy.yaml:12:14: policy "support": actions.email:
 * must be one of off, flag, redact, block").
 *
 * Why not libcyaml, like the server config (src/cli/config.c): the policy has
 * maps with free keys (routes and API keys to policy ids, actions per type),
 * which a fixed cyaml schema cannot express, and the guard keeps one
 * validator for JSON and YAML instead of two.
 *
 * Scalars follow the YAML 1.2 core schema, not 1.1: only true/false are
 * booleans, so `email: off` is the action "off", not false. Plain scalars
 * that read fully as numbers are numbers; null, ~ and empty plain scalars
 * are null; quoted and block scalars are strings. Duplicate keys are errors.
 * Limits: nesting 64, 4,000,000 nodes after alias expansion (an alias bomb
 * fails instead of growing), keys are plain strings.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "guard/guard_int.h"

#define YAML_DEPTH_MAX 64
#define YAML_NODES_MAX 4000000u

typedef struct conv {
    yaml_document_t *doc;
    guard_pos_map *pm;
    const char *file;
    size_t nodes;
    err_msg *e;
} conv;

static int pos_add(guard_pos_map *pm, const json_t *node, const yaml_mark_t *m)
{
    if (!pm)
        return 0;
    if (pm->n == pm->cap) {
        size_t cap = pm->cap ? pm->cap * 2 : 64;
        guard_pos *p = realloc(pm->ents, cap * sizeof *p);
        if (!p)
            return ERR_NOMEM;
        pm->ents = p;
        pm->cap = cap;
    }
    pm->ents[pm->n++] = (guard_pos){node, (uint32_t)m->line + 1, (uint32_t)m->column + 1};
    return 0;
}

void guard_pos_map_free(guard_pos_map *pm)
{
    free(pm->ents);
    memset(pm, 0, sizeof *pm);
}

bool guard_pos_find(const guard_pos_map *pm, const void *node, uint32_t *line, uint32_t *col)
{
    if (!pm || !node)
        return false;
    for (size_t i = 0; i < pm->n; i++)
        if (pm->ents[i].node == node) {
            *line = pm->ents[i].line;
            *col = pm->ents[i].col;
            return true;
        }
    return false;
}

static int fail_at(conv *c, const yaml_mark_t *m, const char *what)
{
    return err_set(c->e, ERR_FORMAT, "guard: %s:%zu:%zu: %s", c->file, (size_t)m->line + 1,
                   (size_t)m->column + 1, what);
}

/* A plain scalar that reads fully as a number (YAML 1.2 core schema). */
static json_t *number_of(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return NULL;
    char tmp[72];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    size_t i = (tmp[0] == '-' || tmp[0] == '+') ? 1 : 0;
    if (i == n || !((tmp[i] >= '0' && tmp[i] <= '9') || tmp[i] == '.'))
        return NULL;
    bool integral = true;
    for (size_t k = i; k < n; k++) {
        char ch = tmp[k];
        if (ch == '.' || ch == 'e' || ch == 'E')
            integral = false;
        else if (!((ch >= '0' && ch <= '9') || ch == '-' || ch == '+'))
            return NULL;
    }
    char *end = NULL;
    errno = 0;
    if (integral) {
        long long v = strtoll(tmp, &end, 10);
        if (errno || *end)
            return NULL;
        return json_integer((json_int_t)v);
    }
    double d = strtod(tmp, &end);
    if (errno || *end)
        return NULL;
    return json_real(d);
}

static json_t *scalar(const yaml_node_t *node)
{
    const char *s = (const char *)node->data.scalar.value;
    size_t n = node->data.scalar.length;
    if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (n == 0 || (n == 1 && s[0] == '~') || (n == 4 && memcmp(s, "null", 4) == 0))
            return json_null();
        if (n == 4 && memcmp(s, "true", 4) == 0)
            return json_true();
        if (n == 5 && memcmp(s, "false", 5) == 0)
            return json_false();
        json_t *num = number_of(s, n);
        if (num)
            return num;
    }
    return json_stringn(s, n);
}

static int convert(conv *c, yaml_node_t *node, int depth, json_t **out)
{
    *out = NULL;
    if (depth > YAML_DEPTH_MAX)
        return fail_at(c, &node->start_mark, "nesting deeper than 64 levels");
    if (++c->nodes > YAML_NODES_MAX)
        return fail_at(c, &node->start_mark, "more than 4,000,000 nodes (aliases expanded)");
    json_t *j = NULL;
    int rc = 0;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        j = scalar(node);
        break;
    case YAML_SEQUENCE_NODE:
        j = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             j && it < node->data.sequence.items.top; it++) {
            json_t *v;
            yaml_node_t *child = yaml_document_get_node(c->doc, *it);
            if (!child || (rc = convert(c, child, depth + 1, &v)))
                break;
            if (json_array_append_new(j, v)) {
                rc = ERR_NOMEM;
                break;
            }
        }
        break;
    case YAML_MAPPING_NODE:
        j = json_object();
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
             j && pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
            yaml_node_t *vn = yaml_document_get_node(c->doc, pr->value);
            if (!k || !vn)
                break;
            if (k->type != YAML_SCALAR_NODE) {
                rc = fail_at(c, &k->start_mark, "a key must be a string");
                break;
            }
            char key[256];
            size_t kn = k->data.scalar.length;
            if (kn >= sizeof key || memchr(k->data.scalar.value, '\0', kn)) {
                rc = fail_at(c, &k->start_mark, "a key is longer than 255 bytes");
                break;
            }
            memcpy(key, k->data.scalar.value, kn);
            key[kn] = '\0';
            if (json_object_get(j, key)) {
                char m[320];
                snprintf(m, sizeof m, "duplicate key \"%s\"", key);
                rc = fail_at(c, &k->start_mark, m);
                break;
            }
            json_t *v;
            if ((rc = convert(c, vn, depth + 1, &v)))
                break;
            if (json_object_set_new(j, key, v)) {
                rc = ERR_NOMEM;
                break;
            }
        }
        break;
    default:
        return fail_at(c, &node->start_mark, "empty node");
    }
    if (rc == 0 && !j)
        rc = ERR_NOMEM;
    if (rc == 0)
        rc = pos_add(c->pm, j, &node->start_mark);
    if (rc) {
        json_decref(j);
        if (rc == ERR_NOMEM && (!c->e || c->e->code != ERR_NOMEM))
            return err_set(c->e, rc, "guard: %s: out of memory reading YAML", c->file);
        return rc;
    }
    *out = j;
    return 0;
}

int guard_yaml_load(const char *text, size_t len, const char *file, json_t **out,
                    guard_pos_map *pm, err_msg *e)
{
    *out = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return err_set(e, ERR_NOMEM, "guard: out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = err_set(e, ERR_FORMAT, "guard: %s:%zu:%zu: %s%s%s", file,
                         (size_t)parser.problem_mark.line + 1,
                         (size_t)parser.problem_mark.column + 1,
                         parser.problem ? parser.problem : "YAML syntax error",
                         parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc;
    if (!root) {
        rc = err_set(e, ERR_FORMAT, "guard: %s: the policy document is empty", file);
    } else {
        conv c = {&doc, pm, file, 0, e};
        rc = convert(&c, root, 0, out);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
