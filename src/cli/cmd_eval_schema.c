/*
 * cli/cmd_eval_schema — the JSON Schema subset of the `json-schema`
 * assertion. Keywords, with JSON Schema's meaning:
 *   type        "string" "number" "integer" "boolean" "object" "array" "null",
 *               or an array of them; "integer" accepts numbers with no
 *               fractional part (1.0 too), "number" accepts integers
 *   enum        the value equals one of the listed values (numbers compare
 *               by value, so 1 equals 1.0)
 *   required    for objects: every listed key is present
 *   properties  for objects: each present key listed here matches its schema
 *   items       for arrays: every element matches the schema
 * plus annotations that check nothing: title, description, $schema, $id,
 * default, examples. Any other keyword is refused at load (eval_schema_compile)
 * so that a schema never silently checks less than it says. Like JSON Schema,
 * a keyword for objects (or arrays) says nothing about values of other types.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cmd_eval.h"

static const char *const TYPES[] = {"string", "number", "integer", "boolean",
                                    "object", "array",  "null"};
static const char *const ANNOTATIONS[] = {"title", "description", "$schema",
                                          "$id",   "default",     "examples"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

static int compile_at(const json_t *s, const char *path, int depth, err_msg *e)
{
    if (depth > EVAL_SCHEMA_DEPTH)
        return err_set(e, ERR_FORMAT, "schema nested deeper than %d at %s", EVAL_SCHEMA_DEPTH,
                       path);
    if (!json_is_object(s))
        return err_set(e, ERR_FORMAT, "schema at %s must be an object", path);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        if (in_list(k, ANNOTATIONS, ARRAY_LEN(ANNOTATIONS)))
            continue;
        if (strcmp(k, "type") == 0) {
            if (json_is_string(v)) {
                if (!in_list(json_string_value(v), TYPES, ARRAY_LEN(TYPES)))
                    return err_set(e, ERR_FORMAT, "%s: unknown type \"%s\"", path,
                                   json_string_value(v));
            } else if (json_is_array(v) && json_array_size(v) > 0) {
                for (size_t i = 0; i < json_array_size(v); i++) {
                    json_t *t = json_array_get(v, i);
                    if (!json_is_string(t) || !in_list(json_string_value(t), TYPES, 7))
                        return err_set(e, ERR_FORMAT, "%s: \"type\" item %zu is not a type name",
                                       path, i + 1);
                }
            } else {
                return err_set(e, ERR_FORMAT, "%s: \"type\" must be a type name or an array", path);
            }
        } else if (strcmp(k, "enum") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0)
                return err_set(e, ERR_FORMAT, "%s: \"enum\" must be a non-empty array", path);
        } else if (strcmp(k, "required") == 0) {
            if (!json_is_array(v))
                return err_set(e, ERR_FORMAT, "%s: \"required\" must be an array of names", path);
            for (size_t i = 0; i < json_array_size(v); i++)
                if (!json_is_string(json_array_get(v, i)))
                    return err_set(e, ERR_FORMAT, "%s: \"required\" item %zu is not a string", path,
                                   i + 1);
        } else if (strcmp(k, "properties") == 0) {
            if (!json_is_object(v))
                return err_set(e, ERR_FORMAT, "%s: \"properties\" must be an object", path);
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv)
            {
                char sub[256];
                snprintf(sub, sizeof sub, "%s.properties.%s", path, pk);
                int rc = compile_at(pv, sub, depth + 1, e);
                if (rc)
                    return rc;
            }
        } else if (strcmp(k, "items") == 0) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.items", path);
            int rc = compile_at(v, sub, depth + 1, e);
            if (rc)
                return rc;
        } else {
            return err_set(e, ERR_FORMAT,
                           "%s: keyword \"%s\" is not in the supported subset (type, required, "
                           "properties, enum, items)",
                           path, k);
        }
    }
    return 0;
}

int eval_schema_compile(const json_t *schema, err_msg *e)
{
    return compile_at(schema, "$", 0, e);
}

static const char *type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static bool type_ok(const char *t, const json_t *v)
{
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    return strcmp(t, type_of(v)) == 0;
}

/* JSON equality where numbers compare by value (JSON Schema's enum). */
static bool value_eq(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

static bool failf(char *d, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool failf(char *d, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, cap, fmt, ap);
    va_end(ap);
    eval_utf8_trim(d);
    return false;
}

static bool check_at(const json_t *s, const json_t *v, const char *path, char *d, size_t cap)
{
    const json_t *t = json_object_get(s, "type");
    if (json_is_string(t) && !type_ok(json_string_value(t), v))
        return failf(d, cap, "%s: expected %s, got %s", path, json_string_value(t), type_of(v));
    if (json_is_array(t)) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(t) && !ok; i++)
            ok = type_ok(json_string_value(json_array_get(t, i)), v);
        if (!ok)
            return failf(d, cap, "%s: %s is not one of the allowed types", path, type_of(v));
    }
    const json_t *en = json_object_get(s, "enum");
    if (en) {
        bool ok = false;
        for (size_t i = 0; i < json_array_size(en) && !ok; i++)
            ok = value_eq(json_array_get(en, i), v);
        if (!ok)
            return failf(d, cap, "%s: value is not one of the %zu enum values", path,
                         json_array_size(en));
    }
    if (json_is_object(v)) {
        const json_t *req = json_object_get(s, "required");
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *k = json_string_value(json_array_get(req, i));
            if (!json_object_get(v, k))
                return failf(d, cap, "%s: required key \"%s\" is missing", path, k);
        }
        const json_t *props = json_object_get(s, "properties");
        const char *pk;
        json_t *ps;
        json_object_foreach((json_t *)props, pk, ps)
        {
            const json_t *x = json_object_get(v, pk);
            if (!x)
                continue;
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", path, pk);
            if (!check_at(ps, x, sub, d, cap))
                return false;
        }
    }
    const json_t *items = json_object_get(s, "items");
    if (json_is_array(v) && items) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (!check_at(items, json_array_get(v, i), sub, d, cap))
                return false;
        }
    }
    return true;
}

bool eval_schema_check(const json_t *schema, const json_t *v, char *detail, size_t cap)
{
    return check_at(schema, v, "$", detail, cap);
}
