/* Unit tests for api/openai: request parsing and validation (the param named
 * in each error), and the response / SSE chunk / error shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "api/openai.h"

static arena *A;

static int setup(void **state)
{
    (void)state;
    A = arena_new(1 << 20);
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    arena_free(A);
    return 0;
}

static int parse(api_kind k, const char *body, api_gen_req *r, api_error *err)
{
    return api_gen_parse(k, body, strlen(body), A, r, err);
}

/* Expects body to be refused with code, naming param. */
static void refused(api_kind k, const char *body, int code, const char *param)
{
    api_gen_req r;
    api_error err;
    int rc = parse(k, body, &r, &err);
    if (rc != code || strcmp(err.param, param) != 0)
        fail_msg("%s: got %d param '%s' (%s), want %d '%s'", body, rc, err.param, err.msg.text,
                 code, param);
}

static void test_chat_full(void **state)
{
    (void)state;
    api_gen_req r;
    api_error err;
    const char *body =
        "{\"model\":\"m1\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"
        "{\"type\":\"text\",\"text\":\"there\"}]},{\"role\":\"assistant\",\"content\":null},"
        "{\"role\":\"developer\",\"content\":\"x\"}],"
        "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"seed\":-3,"
        "\"stop\":[\"a\",\"bc\"],\"presence_penalty\":1,\"frequency_penalty\":-1,"
        "\"logit_bias\":{\"5\":-100,\"7\":2.5},\"logprobs\":true,\"top_logprobs\":3,\"n\":1,"
        "\"user\":\"u\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"priority\":2,\"unknown_field\":{\"ignored\":1}}";
    assert_int_equal(parse(API_CHAT, body, &r, &err), 0);
    assert_string_equal(r.model, "m1");
    assert_int_equal(r.n_msgs, 4);
    assert_int_equal(r.msgs[0].role, CHAT_ROLE_SYSTEM);
    assert_int_equal(r.msgs[1].n, 8);
    assert_memory_equal(r.msgs[1].content, "Hi there", 8);
    assert_int_equal(r.msgs[2].n, 0);
    assert_int_equal(r.msgs[3].role, CHAT_ROLE_SYSTEM);
    assert_int_equal(r.sp.max_tokens, 7);
    assert_true(r.sp.temperature == 0.5f && r.sp.top_p == 0.9f);
    assert_true(r.sp.seed == (uint64_t)-3);
    assert_int_equal(r.sp.n_stop, 2);
    assert_string_equal(r.sp.stop[1], "bc");
    assert_true(r.sp.presence_penalty == 1.0f && r.sp.frequency_penalty == -1.0f);
    assert_int_equal(r.sp.n_bias, 2);
    assert_true(r.sp.want_logprobs);
    assert_int_equal(r.sp.n_top_logprobs, 3);
    assert_true(r.is_stream && r.include_usage);
    assert_string_equal(r.user, "u");
    assert_int_equal(r.priority, 2);
}

static void test_completion(void **state)
{
    (void)state;
    api_gen_req r;
    api_error err;
    assert_int_equal(parse(API_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"Once\"],\"logprobs\":2,"
                                           "\"max_tokens\":5,\"stop\":\"\\n\"}",
                           &r, &err),
                     0);
    assert_string_equal(r.prompt, "Once");
    assert_int_equal(r.sp.max_tokens, 5);
    assert_true(r.sp.want_logprobs);
    assert_int_equal(r.sp.n_top_logprobs, 2);
    assert_int_equal(r.sp.n_stop, 1);
    /* Defaults: max_tokens 0 = not given, temperature 1. */
    assert_int_equal(parse(API_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\"}", &r, &err), 0);
    assert_int_equal(r.sp.max_tokens, 0);
    assert_true(r.sp.temperature == 1.0f);
    assert_false(r.is_stream);
}

static void test_refusals(void **state)
{
    (void)state;
    refused(API_CHAT, "not json", ERR_FORMAT, "");
    refused(API_CHAT, "[1]", ERR_FORMAT, "");
    refused(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", ERR_INVAL,
            "model");
    refused(API_CHAT, "{\"model\":3}", ERR_INVAL, "model");
    refused(API_CHAT, "{\"model\":\"m\"}", ERR_INVAL, "messages");
    refused(API_CHAT, "{\"model\":\"m\",\"messages\":[]}", ERR_INVAL, "messages");
    refused(API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"king\",\"content\":\"x\"}]}",
            ERR_INVAL, "messages[0].role");
    refused(API_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
            ERR_UNSUPPORTED, "messages[0].role");
    refused(API_CHAT,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
            "{\"role\":\"user\",\"content\":5}]}",
            ERR_INVAL, "messages[1].content");
    refused(API_CHAT,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
            ERR_INVAL, "messages[0].content");
#define CHAT(extra) "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]," extra "}"
    refused(API_CHAT, CHAT("\"temperature\":3"), ERR_INVAL, "temperature");
    refused(API_CHAT, CHAT("\"temperature\":\"hot\""), ERR_INVAL, "temperature");
    refused(API_CHAT, CHAT("\"top_p\":0"), ERR_INVAL, "top_p");
    refused(API_CHAT, CHAT("\"max_tokens\":0"), ERR_INVAL, "max_tokens");
    refused(API_CHAT, CHAT("\"max_tokens\":1.5"), ERR_INVAL, "max_tokens");
    refused(API_CHAT, CHAT("\"max_completion_tokens\":-1"), ERR_INVAL, "max_completion_tokens");
    refused(API_CHAT, CHAT("\"n\":2"), ERR_UNSUPPORTED, "n");
    refused(API_CHAT, CHAT("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), ERR_INVAL, "stop");
    refused(API_CHAT, CHAT("\"stop\":[\"\"]"), ERR_INVAL, "stop");
    refused(API_CHAT, CHAT("\"stop\":7"), ERR_INVAL, "stop");
    refused(API_CHAT, CHAT("\"presence_penalty\":2.5"), ERR_INVAL, "presence_penalty");
    refused(API_CHAT, CHAT("\"frequency_penalty\":-9"), ERR_INVAL, "frequency_penalty");
    refused(API_CHAT, CHAT("\"logit_bias\":{\"abc\":1}"), ERR_INVAL, "logit_bias");
    refused(API_CHAT, CHAT("\"logit_bias\":{\"1\":101}"), ERR_INVAL, "logit_bias");
    refused(API_CHAT, CHAT("\"logprobs\":1"), ERR_INVAL, "logprobs");
    refused(API_CHAT, CHAT("\"top_logprobs\":6,\"logprobs\":true"), ERR_INVAL, "top_logprobs");
    refused(API_CHAT, CHAT("\"top_logprobs\":2"), ERR_INVAL, "top_logprobs");
    refused(API_CHAT, CHAT("\"stream\":\"yes\""), ERR_INVAL, "stream");
    refused(API_CHAT, CHAT("\"stream_options\":{\"include_usage\":true}"), ERR_INVAL,
            "stream_options");
    refused(API_CHAT, CHAT("\"stream\":true,\"stream_options\":{\"include_usage\":1}"), ERR_INVAL,
            "stream_options.include_usage");
    refused(API_CHAT, CHAT("\"seed\":\"x\""), ERR_INVAL, "seed");
    refused(API_CHAT, CHAT("\"user\":1"), ERR_INVAL, "user");
    refused(API_COMPLETION, "{\"model\":\"m\"}", ERR_INVAL, "prompt");
    refused(API_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", ERR_INVAL, "prompt");
    refused(API_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"logprobs\":6}", ERR_INVAL,
            "logprobs");
}

/* Every output is valid JSON with OpenAI's field names. */
static json_t *load(const char *s, size_t n)
{
    json_error_t je;
    json_t *o = json_loadb(s, n, 0, &je);
    if (!o)
        fail_msg("invalid JSON (%s): %.*s", je.text, (int)n, s);
    return o;
}

static json_t *load_sse(const buf *b)
{
    assert_true(b->len > 8 && memcmp(b->data, "data: ", 6) == 0);
    assert_memory_equal(b->data + b->len - 2, "\n\n", 2);
    return load(b->data + 6, b->len - 8);
}

static void test_shapes(void **state)
{
    (void)state;
    api_meta m = {.id = "chatcmpl-1", .created = 1700000000, .model = "tiny",
                  .fingerprint = "fp_ferry"};
    buf b;
    buf_init(&b, 1 << 16);
    api_logprob lp = {.text = "Hi\"", .n = 3, .logprob = -0.5f, .n_top = 1,
                      .top_text = {"Hi\""}, .top_n = {3}, .top_logprob = {-0.5f}};
    assert_int_equal(api_sse_chunk(&b, API_CHAT, &m, true, "Hi\"", 3, &lp, 1, NULL, true), 0);
    json_t *o = load_sse(&b);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion.chunk");
    json_t *c0 = json_array_get(json_object_get(o, "choices"), 0);
    json_t *delta = json_object_get(c0, "delta");
    assert_string_equal(json_string_value(json_object_get(delta, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(delta, "content")), "Hi\"");
    assert_true(json_is_null(json_object_get(c0, "finish_reason")));
    assert_true(json_is_null(json_object_get(o, "usage")));
    json_t *lpc = json_array_get(json_object_get(json_object_get(c0, "logprobs"), "content"), 0);
    assert_true(json_real_value(json_object_get(lpc, "logprob")) == -0.5);
    assert_int_equal(json_array_size(json_object_get(lpc, "bytes")), 3);
    json_decref(o);

    buf_reset(&b);
    assert_int_equal(api_sse_chunk(&b, API_CHAT, &m, false, "", 0, NULL, 0, "length", false), 0);
    o = load_sse(&b);
    c0 = json_array_get(json_object_get(o, "choices"), 0);
    assert_int_equal(json_object_size(json_object_get(c0, "delta")), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "length");
    assert_null(json_object_get(o, "usage"));
    json_decref(o);

    buf_reset(&b);
    api_usage u = {.prompt_tokens = 10, .completion_tokens = 4, .cached_tokens = 8};
    assert_int_equal(api_sse_usage(&b, API_CHAT, &m, &u), 0);
    o = load_sse(&b);
    assert_int_equal(json_array_size(json_object_get(o, "choices")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "usage"),
                                                        "total_tokens")),
                     14);
    json_decref(o);

    buf_reset(&b);
    assert_int_equal(api_sse_done(&b), 0);
    assert_string_equal(b.data, "data: [DONE]\n\n");

    buf_reset(&b);
    assert_int_equal(api_response(&b, API_CHAT, &m, "4", 1, NULL, 0, "stop", &u), 0);
    o = load(b.data, b.len);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion");
    c0 = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c0, "message"), "content")), "4");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(o, "usage"), "prompt_tokens_details"),
                         "cached_tokens")),
                     8);
    json_decref(o);

    buf_reset(&b);
    m.id = "cmpl-1";
    assert_int_equal(api_response(&b, API_COMPLETION, &m, "ab", 2, &lp, 1, "stop", &u), 0);
    o = load(b.data, b.len);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "text_completion");
    c0 = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "ab");
    assert_int_equal(json_array_size(json_object_get(json_object_get(c0, "logprobs"),
                                                     "token_logprobs")),
                     1);
    json_decref(o);

    buf_deinit(&b);

    char id[48], id2[48];
    api_make_id("chatcmpl", id, sizeof id);
    api_make_id("chatcmpl", id2, sizeof id2);
    assert_int_equal(strlen(id), 9 + 24);
    assert_string_not_equal(id, id2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_full),
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_shapes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
