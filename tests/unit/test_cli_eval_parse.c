/*
 * Unit tests for cli/cmd_eval_parse: eval's flag-value parsers and the
 * parsers of what comes back over the network, including the cases that
 * once went wrong (a URL without a host, an embedding with a non-number, an
 * error page that is not UTF-8).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cmd_eval.h"

static void test_endpoint(void **state)
{
    (void)state;
    eval_endpoint_spec sp;
    err_msg e = {0};
    assert_int_equal(eval_endpoint_parse("--judge", "http://h:8/v1//,m-8b", &sp, &e), 0);
    assert_string_equal(sp.url, "http://h:8/v1");
    assert_string_equal(sp.model, "m-8b");
    assert_null(sp.key);
    eval_endpoint_spec_free(&sp);
    assert_int_equal(eval_endpoint_parse("--target", "https://a/v1,m,sk-1,2", &sp, &e), 0);
    assert_string_equal(sp.key, "sk-1,2"); // the key is everything after the second comma
    eval_endpoint_spec_free(&sp);
    setenv("FERRY_TEST_EVAL_KEY", "from-env", 1);
    assert_int_equal(eval_endpoint_parse("--embed", "http://a,m,$FERRY_TEST_EVAL_KEY", &sp, &e), 0);
    assert_string_equal(sp.key, "from-env");
    eval_endpoint_spec_free(&sp);
    static const struct {
        const char *spec, *want;
    } bad[] = {
        {"http://a", "expected URL,MODEL[,KEY]"},
        {",m", "expected URL,MODEL[,KEY]"},
        {"http://a,", "the model is empty"},
        {"http://a,,k", "the model is empty"},
        {"ftp://a,m", "must start with http:// or https://"},
        {"http://,m", "name a host"},
        {"https:///,m", "name a host"},
        {"http://a,m,$FERRY_TEST_EVAL_UNSET", "FERRY_TEST_EVAL_UNSET is not set"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err_clear(&e);
        assert_int_equal(eval_endpoint_parse("--judge", bad[i].spec, &sp, &e), ERR_INVAL);
        assert_true(!sp.url && !sp.model && !sp.key);
        if (!strstr(e.text, bad[i].want))
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].spec, e.text, bad[i].want);
    }
}

static void test_target_params_price(void **state)
{
    (void)state;
    size_t nl = 0;
    err_msg e = {0};
    assert_int_equal(eval_target_name("cand-2.x_y=http://h,m", &nl, &e), 0);
    assert_int_equal(nl, 10);
    char name[80];
    memset(name, 'n', 63);
    memcpy(name + 63, "=http://h,m", 12);
    assert_int_equal(eval_target_name(name, &nl, &e), 0);
    assert_int_equal(nl, 63);
    memset(name, 'n', 64);
    memcpy(name + 64, "=http://h,m", 12);
    assert_int_equal(eval_target_name(name, &nl, &e), ERR_INVAL); // one past the limit
    assert_int_equal(eval_target_name("=http://h,m", &nl, &e), ERR_INVAL);
    assert_int_equal(eval_target_name("a b=http://h,m", &nl, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "letters, digits"));

    json_t *p = NULL;
    assert_int_equal(eval_params_parse("--params", "{\"top_p\": 0.5, \"stop\": [\"x\"]}", &p, &e),
                     0);
    assert_int_equal(eval_params_parse("--params", "{\"top_p\": 0.9, \"seed\": 3}", &p, &e), 0);
    assert_true(json_real_value(json_object_get(p, "top_p")) == 0.9); // merged, later wins
    assert_int_equal(json_object_size(p), 3);
    assert_int_equal(eval_params_parse("--params", "{\"stream\": false}", &p, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "may not set \"stream\""));
    assert_int_equal(eval_params_parse("--params", "{\"a\": 1, \"a\": 2}", &p, &e), ERR_INVAL);
    assert_int_equal(eval_params_parse("--params", "[1]", &p, &e), ERR_INVAL);
    assert_int_equal(json_object_size(p), 3); // unchanged by the refusals
    json_decref(p);

    double in = -1, out = -1;
    assert_int_equal(eval_price_parse("0.15,0.6", &in, &out, &e), 0);
    assert_true(in == 0.15 && out == 0.6);
    const char *bad[] = {"1", "1,", ",1", "-1,1", "1,1e10", "nan,1", "1,2,3", "a,b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        in = out = -7;
        assert_int_equal(eval_price_parse(bad[i], &in, &out, &e), ERR_INVAL);
        assert_true(in == -7 && out == -7);
    }
}

static void test_answers(void **state)
{
    (void)state;
    eval_answer a;
    err_msg e = {0};
    const char chat[] = "{\"choices\": [{\"message\": {\"content\": \"Paris\"}}], \"usage\": "
                        "{\"prompt_tokens\": 12, \"completion_tokens\": 2}}";
    assert_int_equal(eval_answer_parse(chat, sizeof chat - 1, true, &a, &e), 0);
    assert_string_equal(a.text, "Paris");
    assert_true(a.prompt_tokens == 12 && a.completion_tokens == 2);
    free(a.text);
    /* the same body as a completion has no text */
    assert_int_equal(eval_answer_parse(chat, sizeof chat - 1, false, &a, &e), ERR_FORMAT);
    assert_string_equal(e.text, "the answer has no choices[0] text");
    const char nul[] = "{\"choices\": [{\"text\": null}], \"usage\": {\"prompt_tokens\": -3}}";
    assert_int_equal(eval_answer_parse(nul, sizeof nul - 1, false, &a, &e), 0);
    assert_true(a.text[0] == 0 && a.prompt_tokens == -1 && a.completion_tokens == -1);
    free(a.text);
    assert_int_equal(eval_answer_parse("not json", 8, true, &a, &e), ERR_FORMAT);

    float *xy;
    size_t n;
    const char emb[] = "{\"data\": [{\"index\": 1, \"embedding\": [0, 2]}, {\"index\": 0, "
                       "\"embedding\": [1, 0]}, {\"index\": 5, \"embedding\": []}]}";
    assert_int_equal(eval_embeddings_parse(emb, sizeof emb - 1, &xy, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_true(xy[0] == 1 && xy[1] == 0 && xy[2] == 0 && xy[3] == 2);
    free(xy);
    static const char *const bad_emb[] = {
        "{\"data\": [{\"index\": 0, \"embedding\": [1, 2]}]}",
        "{\"data\": [{\"index\": 0, \"embedding\": [1]}, {\"index\": 1, \"embedding\": [1, 2]}]}",
        "{\"data\": [{\"index\": 0, \"embedding\": [1]}, {\"index\": 0, \"embedding\": [2]}, "
        "{\"index\": 1, \"embedding\": [3]}]}",
        /* a string component once read as 0 and gave a cosine of the wrong vector */
        "{\"data\": [{\"index\": 0, \"embedding\": [1, \"2\"]}, {\"index\": 1, \"embedding\": "
        "[1, 2]}]}",
        "{\"data\": [{\"index\": 0, \"embedding\": [1e39]}, {\"index\": 1, \"embedding\": [1]}]}",
        "{\"data\": [{\"index\": 0, \"embedding\": []}, {\"index\": 1, \"embedding\": []}]}",
    };
    float sentinel = 0;
    for (size_t i = 0; i < sizeof bad_emb / sizeof *bad_emb; i++) {
        xy = &sentinel; // must come back NULL
        assert_int_equal(eval_embeddings_parse(bad_emb[i], strlen(bad_emb[i]), &xy, &n, &e),
                         ERR_FORMAT);
        assert_null(xy);
    }

    int v;
    char *reason;
    const char judge[] =
        "{\"choices\": [{\"message\": {\"content\": \" **FAIL** - wrong city\"}}]}";
    assert_int_equal(eval_judge_answer_parse(judge, sizeof judge - 1, &v, &reason, &e), 0);
    assert_int_equal(v, 0);
    assert_string_equal(reason, "wrong city");
    free(reason);
    /* a long reason is cut to EVAL_REASON_MAX bytes, back to a whole character:
     * "PASS " then 2-byte characters: 300 bytes of them would end in the middle
     * of one (the reason starts at an odd offset), so 299 are kept */
    char big[1024];
    size_t bl = (size_t)snprintf(big, sizeof big, "%s",
                                 "{\"choices\": [{\"message\": "
                                 "{\"content\": \"PASS x");
    for (int i = 0; i < 200; i++)
        bl += (size_t)snprintf(big + bl, sizeof big - bl, "\xc3\xa9");
    snprintf(big + bl, sizeof big - bl, "\"}}]}");
    assert_int_equal(eval_judge_answer_parse(big, strlen(big), &v, &reason, &e), 0);
    assert_int_equal(v, 1);
    assert_int_equal(strlen(reason), 299);
    free(reason);
    assert_int_equal(eval_judge_answer_parse("{}", 2, &v, &reason, &e), ERR_FORMAT);
    assert_null(reason);

    char msg[64];
    const char err_json[] = "{\"error\": {\"message\": \"model not found\"}}";
    assert_string_equal(eval_error_message(err_json, sizeof err_json - 1, msg, sizeof msg),
                        "model not found");
    const char page[] = "<p>\xe9t\xe9 \xc3\xa9 \xed\xa0\x80 \xf0\x9f\x98\x80 \xc0\xaf</p>";
    assert_string_equal(eval_error_message(page, sizeof page - 1, msg, sizeof msg),
                        "<p>?t? \xc3\xa9 ??"
                        "? \xf0\x9f\x98\x80 ??"
                        "</p>");
    /* a multi-byte character that does not fit is left out whole */
    assert_string_equal(eval_error_message("ab\xf0\x9f\x98\x80", 6, msg, 5), "ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint),
        cmocka_unit_test(test_target_params_price),
        cmocka_unit_test(test_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
