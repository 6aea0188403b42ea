/*
 * api/openai — OpenAI request parsing (jansson) and response writing (buf).
 * See openai.h for the fields and shapes.
 */
#include "api/openai.h"

#include "base/clock.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* ------------------------------------------------------------- parsing -- */

static int fail(api_error *err, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(api_error *err, int code, const char *param, const char *fmt, ...)
{
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    err_setv(&err->msg, code, fmt, ap);
    va_end(ap);
    return code;
}

static int nomem(api_error *err)
{
    return fail(err, ERR_NOMEM, NULL, "the request does not fit in its memory limit");
}

/* A number field in [lo, hi]; absent leaves *out unchanged. */
static int get_num(json_t *o, const char *key, double lo, double hi, float *out, api_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, ERR_INVAL, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return fail(err, ERR_INVAL, key, "'%s' is %g; it must be in [%g, %g]", key, d, lo, hi);
    *out = (float)d;
    return 0;
}

/* An integer field in [lo, hi]; *given tells whether it was there. */
static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   bool *given, api_error *err)
{
    json_t *v = json_object_get(o, key);
    if (given)
        *given = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return fail(err, ERR_INVAL, key, "'%s' must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(err, ERR_INVAL, key,
                    "'%s' is %lld; it must be in [%lld, %lld]", key, (long long)x,
                    (long long)lo, (long long)hi);
    *out = x;
    if (given)
        *given = true;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, api_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(err, ERR_INVAL, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int dup_str(arena *a, json_t *v, const char **out, size_t *n, api_error *err)
{
    size_t len = json_string_length(v);
    char *s = arena_strndup(a, json_string_value(v), len);
    if (!s)
        return nomem(err);
    *out = s;
    if (n)
        *n = len;
    return 0;
}

/* Message content: a string, null, or an array of text parts (joined). */
static int parse_content(arena *a, json_t *c, size_t idx, chat_msg *m, api_error *err)
{
    char param[API_PARAM_MAX];
    snprintf(param, sizeof param, "messages[%zu].content", idx);
    if (!c || json_is_null(c)) {
        if (m->role != CHAT_ROLE_ASSISTANT)
            return fail(err, ERR_INVAL, param, "'%s' is required", param);
        m->content = "";
        m->n = 0;
        return 0;
    }
    if (json_is_string(c))
        return dup_str(a, c, &m->content, &m->n, err);
    if (!json_is_array(c))
        return fail(err, ERR_INVAL, param, "'%s' must be a string or an array of text parts",
                    param);
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 || !json_is_string(text))
            return fail(err, ERR_INVAL, param,
                        "'%s' part %zu must be {\"type\": \"text\", \"text\": string}", param, i);
        if (!size_add_ok(total, json_string_length(text), &total))
            return nomem(err);
    }
    char *s = arena_alloc(a, total + 1);
    if (!s)
        return nomem(err);
    size_t off = 0;
    json_array_foreach(c, i, part) {
        json_t *text = json_object_get(part, "text");
        size_t len = json_string_length(text);
        memcpy(s + off, json_string_value(text), len);
        off += len;
    }
    s[off] = '\0';
    m->content = s;
    m->n = total;
    return 0;
}

static int parse_messages(arena *a, json_t *msgs, api_gen_req *out, api_error *err)
{
    if (!msgs)
        return fail(err, ERR_INVAL, "messages", "'messages' is required");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(err, ERR_INVAL, "messages", "'messages' must be a non-empty array");
    size_t n = json_array_size(msgs);
    if (n > API_MESSAGES_MAX)
        return fail(err, ERR_INVAL, "messages", "%zu messages; the limit is %d", n,
                    API_MESSAGES_MAX);
    out->msgs = arena_calloc(a, n, sizeof *out->msgs);
    if (!out->msgs)
        return nomem(err);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char param[API_PARAM_MAX];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role))
            return fail(err, ERR_INVAL, param, "'%s' must be a string", param);
        const char *r = json_string_value(role);
        chat_msg *cm = &out->msgs[i];
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0)
            cm->role = CHAT_ROLE_SYSTEM;
        else if (strcmp(r, "user") == 0)
            cm->role = CHAT_ROLE_USER;
        else if (strcmp(r, "assistant") == 0)
            cm->role = CHAT_ROLE_ASSISTANT;
        else if (strcmp(r, "tool") == 0 || strcmp(r, "function") == 0)
            return fail(err, ERR_UNSUPPORTED, param, "'%s' messages are not supported", r);
        else
            return fail(err, ERR_INVAL, param,
                        "'%s' must be one of system, developer, user, assistant", param);
        int rc = parse_content(a, json_object_get(m, "content"), i, cm, err);
        if (rc)
            return rc;
    }
    out->n_msgs = n;
    return 0;
}

static int parse_stop(arena *a, json_t *o, api_gen_req *out, api_error *err)
{
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v))
        return 0;
    const char **stops = arena_calloc(a, API_STOP_MAX, sizeof *stops);
    if (!stops)
        return nomem(err);
    size_t n = 0;
    if (json_is_string(v)) {
        if (dup_str(a, v, &stops[0], NULL, err))
            return err->code;
        n = 1;
    } else if (json_is_array(v)) {
        if (json_array_size(v) > API_STOP_MAX)
            return fail(err, ERR_INVAL, "stop", "'stop' has %zu sequences; the limit is %d",
                        json_array_size(v), API_STOP_MAX);
        size_t i;
        json_t *s;
        json_array_foreach(v, i, s) {
            if (!json_is_string(s))
                return fail(err, ERR_INVAL, "stop", "'stop' must be a string or an array of "
                                                    "strings");
            if (dup_str(a, s, &stops[n++], NULL, err))
                return err->code;
        }
    } else {
        return fail(err, ERR_INVAL, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0 || len > SAMPLE_STOP_BYTES_MAX)
            return fail(err, ERR_INVAL, "stop", "stop sequence %zu must be 1 to %d bytes", i,
                        SAMPLE_STOP_BYTES_MAX);
    }
    out->sp.stop = stops;
    out->sp.n_stop = n;
    return 0;
}

static int parse_bias(arena *a, json_t *o, api_gen_req *out, api_error *err)
{
    json_t *v = json_object_get(o, "logit_bias");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return fail(err, ERR_INVAL, "logit_bias", "'logit_bias' must be an object of token id "
                                                  "to bias");
    size_t n = json_object_size(v);
    if (n > SAMPLE_BIAS_MAX)
        return fail(err, ERR_INVAL, "logit_bias", "'logit_bias' has %zu entries; the limit is %d",
                    n, SAMPLE_BIAS_MAX);
    sample_bias *b = arena_calloc(a, n ? n : 1, sizeof *b);
    if (!b)
        return nomem(err);
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(v, key, val) {
        int64_t id;
        if (parse_i64(key, 0, INT32_MAX, &id) != 0)
            return fail(err, ERR_INVAL, "logit_bias", "'logit_bias' key \"%s\" is not a token id",
                        key);
        if (!json_is_number(val) || !(fabs(json_number_value(val)) <= 100))
            return fail(err, ERR_INVAL, "logit_bias",
                        "'logit_bias' value for token %s must be a number in [-100, 100]", key);
        b[i++] = (sample_bias){.token = (int32_t)id, .bias = (float)json_number_value(val)};
    }
    out->sp.bias = b;
    out->sp.n_bias = i;
    return 0;
}

/* The ferry extension: "ferry": {"collection": "kb", "top_k": 5} (RAG). */
static int parse_ferry(arena *a, json_t *o, api_gen_req *out, api_error *err)
{
    json_t *f = json_object_get(o, "ferry");
    if (!f || json_is_null(f))
        return 0;
    if (!json_is_object(f))
        return fail(err, ERR_INVAL, "ferry", "'ferry' must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(f, k, v)
    {
        if (strcmp(k, "collection") != 0 && strcmp(k, "top_k") != 0)
            return fail(err, ERR_INVAL, "ferry", "'ferry.%.40s' is not known (collection, top_k)",
                        k);
    }
    json_t *c = json_object_get(f, "collection");
    if (c && !json_is_null(c)) {
        if (!json_is_string(c) || json_string_length(c) == 0 || json_string_length(c) > 127)
            return fail(err, ERR_INVAL, "ferry.collection",
                        "'ferry.collection' must be a collection name of 1 to 127 bytes");
        int rc = dup_str(a, c, &out->rag_collection, NULL, err);
        if (rc)
            return rc;
    }
    int64_t x = 0;
    bool given;
    int rc = get_int(f, "top_k", 1, API_RAG_TOP_K_MAX, &x, &given, err);
    if (rc) {
        snprintf(err->param, sizeof err->param, "ferry.top_k");
        return rc;
    }
    if (given)
        out->rag_top_k = (size_t)x;
    return 0;
}

static int parse_fields(api_kind k, json_t *o, arena *a, api_gen_req *out, api_error *err)
{
    int rc;
    json_t *model = json_object_get(o, "model");
    if (!model)
        return fail(err, ERR_INVAL, "model", "'model' is required");
    if (!json_is_string(model))
        return fail(err, ERR_INVAL, "model", "'model' must be a string");
    if ((rc = dup_str(a, model, &out->model, NULL, err)))
        return rc;

    if (k == API_CHAT) {
        if ((rc = parse_messages(a, json_object_get(o, "messages"), out, err)))
            return rc;
    } else {
        json_t *p = json_object_get(o, "prompt");
        if (p && json_is_array(p) && json_array_size(p) == 1 &&
            json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (!p)
            return fail(err, ERR_INVAL, "prompt", "'prompt' is required");
        if (!json_is_string(p))
            return fail(err, ERR_INVAL, "prompt",
                        "'prompt' must be a string or an array of one string");
        if ((rc = dup_str(a, p, &out->prompt, &out->prompt_len, err)))
            return rc;
    }

    int64_t x;
    bool given;
    if ((rc = get_int(o, "max_tokens", 1, SAMPLE_MAX_TOKENS_MAX, &x, &given, err)))
        return rc;
    if (given)
        out->sp.max_tokens = (size_t)x;
    if (k == API_CHAT) {
        if ((rc = get_int(o, "max_completion_tokens", 1, SAMPLE_MAX_TOKENS_MAX, &x, &given,
                          err)))
            return rc;
        if (given)
            out->sp.max_tokens = (size_t)x;
    }
    if ((rc = get_num(o, "temperature", 0, 2, &out->sp.temperature, err)) ||
        (rc = get_num(o, "top_p", 0, 1, &out->sp.top_p, err)) ||
        (rc = get_num(o, "presence_penalty", -2, 2, &out->sp.presence_penalty, err)) ||
        (rc = get_num(o, "frequency_penalty", -2, 2, &out->sp.frequency_penalty, err)) ||
        (rc = get_num(o, "min_p", 0, 1, &out->sp.min_p, err)) ||
        (rc = get_num(o, "repetition_penalty", 0.001, 1000, &out->sp.repetition_penalty, err)))
        return rc;
    if (out->sp.top_p <= 0)
        return fail(err, ERR_INVAL, "top_p", "'top_p' must be greater than 0");
    if ((rc = get_int(o, "top_k", -1, INT32_MAX, &x, &given, err)))
        return rc;
    if (given)
        out->sp.top_k = x < 0 ? 0 : (int32_t)x;
    /* OpenAI seeds are 64-bit; jansson integers are too. */
    if ((rc = get_int(o, "seed", INT64_MIN, INT64_MAX, &x, &given, err)))
        return rc;
    if (given)
        out->sp.seed = (uint64_t)x;
    if ((rc = get_int(o, "n", 1, 128, &x, &given, err)))
        return rc;
    if (given && x != 1)
        return fail(err, ERR_UNSUPPORTED, "n", "'n' must be 1: several choices per request are "
                                               "not implemented");
    if ((rc = get_int(o, "priority", -1000, 1000, &x, &given, err)))
        return rc;
    if (given)
        out->priority = (int)x;
    if ((rc = get_bool(o, "ignore_eos", &out->ignore_eos, err)))
        return rc;

    if (k == API_CHAT) {
        bool lp = false;
        if ((rc = get_bool(o, "logprobs", &lp, err)))
            return rc;
        out->sp.want_logprobs = lp;
        if ((rc = get_int(o, "top_logprobs", 0, SAMPLE_TOP_LOGPROBS_MAX, &x, &given, err)))
            return rc;
        if (given) {
            if (!lp && x > 0)
                return fail(err, ERR_INVAL, "top_logprobs",
                            "'top_logprobs' needs 'logprobs' set to true");
            out->sp.n_top_logprobs = (int)x;
        }
    } else {
        if ((rc = get_int(o, "logprobs", 0, SAMPLE_TOP_LOGPROBS_MAX, &x, &given, err)))
            return rc;
        if (given) {
            out->sp.want_logprobs = true;
            out->sp.n_top_logprobs = (int)x;
        }
    }

    if ((rc = get_bool(o, "stream", &out->is_stream, err)))
        return rc;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!out->is_stream)
            return fail(err, ERR_INVAL, "stream_options",
                        "'stream_options' is only allowed when 'stream' is true");
        if (!json_is_object(so))
            return fail(err, ERR_INVAL, "stream_options", "'stream_options' must be an object");
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu)) {
            if (!json_is_boolean(iu))
                return fail(err, ERR_INVAL, "stream_options.include_usage",
                            "'stream_options.include_usage' must be true or false");
            out->include_usage = json_is_true(iu);
        }
    }
    json_t *user = json_object_get(o, "user");
    if (user && !json_is_null(user)) {
        if (!json_is_string(user))
            return fail(err, ERR_INVAL, "user", "'user' must be a string");
        if ((rc = dup_str(a, user, &out->user, NULL, err)))
            return rc;
    }
    if ((rc = parse_stop(a, o, out, err)) || (rc = parse_bias(a, o, out, err)))
        return rc;
    return parse_ferry(a, o, out, err);
}

int api_gen_parse(api_kind k, const char *body, size_t len, arena *a, api_gen_req *out,
                  api_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->kind = k;
    out->sp = sample_params_default();
    out->sp.max_tokens = 0;
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return fail(err, ERR_FORMAT, NULL, "the body is not valid JSON: %s at line %d column %d",
                    je.text, je.line, je.column);
    int rc;
    if (!json_is_object(o))
        rc = fail(err, ERR_FORMAT, NULL, "the body must be a JSON object");
    else
        rc = parse_fields(k, o, a, out, err);
    json_decref(o);
    return rc;
}

/* ------------------------------------------------------------- writing -- */

#define TRY(x)                                                                                 \
    do {                                                                                       \
        int rc_ = (x);                                                                         \
        if (rc_)                                                                               \
            return rc_;                                                                        \
    } while (0)

static int put_str(buf *b, const char *s, size_t n)
{
    TRY(buf_append_char(b, '"'));
    TRY(buf_append_json_str(b, s, n));
    return buf_append_char(b, '"');
}

static int put_float(buf *b, float x)
{
    /* JSON has no infinities: a -inf logprob (probability 0) becomes -9999. */
    if (!isfinite(x))
        x = -9999.0f;
    return buf_printf(b, "%.6g", (double)x);
}

static int put_head(buf *b, api_kind k, const api_meta *m, bool is_chunk)
{
    const char *object = k == API_CHAT ? (is_chunk ? "chat.completion.chunk" : "chat.completion")
                                       : "text_completion";
    TRY(buf_append_str(b, "{\"id\":"));
    TRY(put_str(b, m->id, strlen(m->id)));
    TRY(buf_printf(b, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object,
                   (long long)m->created));
    TRY(put_str(b, m->model, strlen(m->model)));
    TRY(buf_append_str(b, ",\"system_fingerprint\":"));
    return put_str(b, m->fingerprint, strlen(m->fingerprint));
}

static int put_usage(buf *b, const api_usage *u)
{
    return buf_printf(b,
                      "{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":%zu}}",
                      u->prompt_tokens, u->completion_tokens,
                      u->prompt_tokens + u->completion_tokens, u->cached_tokens);
}

static int put_bytes(buf *b, const char *s, size_t n)
{
    TRY(buf_append_char(b, '['));
    for (size_t i = 0; i < n; i++)
        TRY(buf_printf(b, i ? ",%u" : "%u", (unsigned)(unsigned char)s[i]));
    return buf_append_char(b, ']');
}

/* Chat logprobs: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]} */
static int put_chat_logprobs(buf *b, const api_logprob *lp, size_t n)
{
    TRY(buf_append_str(b, "{\"content\":["));
    for (size_t i = 0; i < n; i++) {
        const api_logprob *e = &lp[i];
        TRY(buf_append_str(b, i ? ",{\"token\":" : "{\"token\":"));
        TRY(put_str(b, e->text, e->n));
        TRY(buf_append_str(b, ",\"logprob\":"));
        TRY(put_float(b, e->logprob));
        TRY(buf_append_str(b, ",\"bytes\":"));
        TRY(put_bytes(b, e->text, e->n));
        TRY(buf_append_str(b, ",\"top_logprobs\":["));
        for (int j = 0; j < e->n_top; j++) {
            TRY(buf_append_str(b, j ? ",{\"token\":" : "{\"token\":"));
            TRY(put_str(b, e->top_text[j], e->top_n[j]));
            TRY(buf_append_str(b, ",\"logprob\":"));
            TRY(put_float(b, e->top_logprob[j]));
            TRY(buf_append_str(b, ",\"bytes\":"));
            TRY(put_bytes(b, e->top_text[j], e->top_n[j]));
            TRY(buf_append_char(b, '}'));
        }
        TRY(buf_append_str(b, "]}"));
    }
    return buf_append_str(b, "]}");
}

/* Completions logprobs: tokens, token_logprobs, top_logprobs, text_offset. */
static int put_cmpl_logprobs(buf *b, const api_logprob *lp, size_t n, size_t offset0)
{
    TRY(buf_append_str(b, "{\"tokens\":["));
    for (size_t i = 0; i < n; i++) {
        if (i)
            TRY(buf_append_char(b, ','));
        TRY(put_str(b, lp[i].text, lp[i].n));
    }
    TRY(buf_append_str(b, "],\"token_logprobs\":["));
    for (size_t i = 0; i < n; i++) {
        if (i)
            TRY(buf_append_char(b, ','));
        TRY(put_float(b, lp[i].logprob));
    }
    TRY(buf_append_str(b, "],\"top_logprobs\":["));
    for (size_t i = 0; i < n; i++) {
        TRY(buf_append_str(b, i ? ",{" : "{"));
        for (int j = 0; j < lp[i].n_top; j++) {
            if (j)
                TRY(buf_append_char(b, ','));
            TRY(put_str(b, lp[i].top_text[j], lp[i].top_n[j]));
            TRY(buf_append_char(b, ':'));
            TRY(put_float(b, lp[i].top_logprob[j]));
        }
        TRY(buf_append_char(b, '}'));
    }
    TRY(buf_append_str(b, "],\"text_offset\":["));
    size_t off = offset0;
    for (size_t i = 0; i < n; i++) {
        TRY(buf_printf(b, i ? ",%zu" : "%zu", off));
        off += lp[i].n;
    }
    return buf_append_str(b, "]}");
}

static int put_finish(buf *b, const char *finish)
{
    if (!finish)
        return buf_append_str(b, "null");
    return put_str(b, finish, strlen(finish));
}

int api_sse_chunk(buf *b, api_kind k, const api_meta *m, bool with_role, const char *text,
                  size_t n, const api_logprob *lp, size_t n_lp, const char *finish,
                  bool include_usage)
{
    TRY(buf_append_str(b, "data: "));
    TRY(put_head(b, k, m, true));
    TRY(buf_append_str(b, ",\"choices\":[{\"index\":0,"));
    if (k == API_CHAT) {
        TRY(buf_append_str(b, "\"delta\":{"));
        bool comma = false;
        if (with_role) {
            TRY(buf_append_str(b, "\"role\":\"assistant\""));
            comma = true;
        }
        if (n > 0 || with_role) {
            if (comma)
                TRY(buf_append_char(b, ','));
            TRY(buf_append_str(b, "\"content\":"));
            TRY(put_str(b, text, n));
        }
        TRY(buf_append_str(b, "},\"logprobs\":"));
        if (lp && n_lp)
            TRY(put_chat_logprobs(b, lp, n_lp));
        else
            TRY(buf_append_str(b, "null"));
    } else {
        TRY(buf_append_str(b, "\"text\":"));
        TRY(put_str(b, text, n));
        TRY(buf_append_str(b, ",\"logprobs\":"));
        if (lp && n_lp)
            TRY(put_cmpl_logprobs(b, lp, n_lp, 0));
        else
            TRY(buf_append_str(b, "null"));
    }
    TRY(buf_append_str(b, ",\"finish_reason\":"));
    TRY(put_finish(b, finish));
    TRY(buf_append_str(b, "}]"));
    if (include_usage)
        TRY(buf_append_str(b, ",\"usage\":null"));
    return buf_append_str(b, "}\n\n");
}

int api_sse_usage(buf *b, api_kind k, const api_meta *m, const api_usage *u)
{
    TRY(buf_append_str(b, "data: "));
    TRY(put_head(b, k, m, true));
    TRY(buf_append_str(b, ",\"choices\":[],\"usage\":"));
    TRY(put_usage(b, u));
    return buf_append_str(b, "}\n\n");
}

int api_sse_done(buf *b)
{
    return buf_append_str(b, "data: [DONE]\n\n");
}

int api_response(buf *b, api_kind k, const api_meta *m, const char *text, size_t n,
                 const api_logprob *lp, size_t n_lp, const char *finish, const api_usage *u)
{
    TRY(put_head(b, k, m, false));
    TRY(buf_append_str(b, ",\"choices\":[{\"index\":0,"));
    if (k == API_CHAT) {
        TRY(buf_append_str(b, "\"message\":{\"role\":\"assistant\",\"content\":"));
        TRY(put_str(b, text, n));
        TRY(buf_append_str(b, "},\"logprobs\":"));
        if (lp)
            TRY(put_chat_logprobs(b, lp, n_lp));
        else
            TRY(buf_append_str(b, "null"));
    } else {
        TRY(buf_append_str(b, "\"text\":"));
        TRY(put_str(b, text, n));
        TRY(buf_append_str(b, ",\"logprobs\":"));
        if (lp)
            TRY(put_cmpl_logprobs(b, lp, n_lp, 0));
        else
            TRY(buf_append_str(b, "null"));
    }
    TRY(buf_append_str(b, ",\"finish_reason\":"));
    TRY(put_finish(b, finish));
    TRY(buf_append_str(b, "}],\"usage\":"));
    TRY(put_usage(b, u));
    return buf_append_char(b, '}');
}

void api_make_id(const char *prefix, char *out, size_t cap)
{
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* Ids need to be unique, not secret: fall back to the clock. */
        uint64_t t = clock_mono_ns() ^ clock_wall_ns();
        memcpy(r, &t, sizeof t);
        memset(r + 8, 0, 4);
    }
    size_t n = (size_t)snprintf(out, cap, "%s-", prefix);
    for (size_t i = 0; i < sizeof r && n + 2 < cap; i++, n += 2)
        snprintf(out + n, cap - n, "%02x", r[i]);
}
