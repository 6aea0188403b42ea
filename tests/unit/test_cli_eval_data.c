/*
 * Unit tests for the `ferry eval` pieces that need no network: the JSONL
 * loader and its line-numbered errors, every local assertion (passing and
 * failing), the json-schema subset, the judge verdict reader, gates, and
 * the per-target / per-tag / paired summaries on hand-built runs.
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

#define near(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

static int load(const char *text, eval_set *s, err_msg *e)
{
    return eval_load_text("d.jsonl", text, strlen(text), s, e);
}

/* Loads text that must fail; checks the code and that e contains want. */
static void load_fails(const char *text, int code, const char *want)
{
    eval_set s;
    err_msg e = {0};
    int rc = load(text, &s, &e);
    if (rc != code || !strstr(e.text, want))
        fail_msg("load: rc %d (want %d), message \"%s\" (want \"%s\")", rc, code, e.text, want);
    assert_null(s.cases);
}

static void test_load_ok(void **state)
{
    (void)state;
    const char *d =
        "{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
        "\"assert\":[{\"type\":\"contains\",\"value\":\"x\"},\"json-valid\"],\"tags\":[\"t1\"]}\n"
        "\n"
        "  {\"prompt\":\"p\",\"reference\":\"r\",\"assert\":[{\"type\":\"similar\","
        "\"threshold\":0.5},{\"type\":\"judge\",\"value\":\"be nice\"}],\"params\":{\"top_p\":1}}"
        "\r\n"
        "{\"id\":7,\"prompt\":\"q\"}";
    eval_set s;
    err_msg e = {0};
    assert_int_equal(load(d, &s, &e), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.cases[0].id, "a");
    assert_int_equal(s.cases[0].line, 1);
    assert_non_null(s.cases[0].messages);
    assert_int_equal(s.cases[0].n_asserts, 2);
    assert_int_equal(s.cases[0].asserts[0].kind, EVAL_CONTAINS);
    assert_int_equal(s.cases[0].asserts[1].kind, EVAL_JSON_VALID);
    assert_string_equal(s.cases[0].tags[0], "t1");
    assert_string_equal(s.cases[1].id, "line 3");
    assert_int_equal(s.cases[1].line, 3);
    assert_string_equal(s.cases[1].prompt, "p");
    assert_string_equal(s.cases[1].reference, "r");
    assert_true(s.cases[1].needs_embed && s.cases[1].needs_judge);
    near(s.cases[1].asserts[0].num, 0.5, 0);
    assert_non_null(s.cases[1].params);
    assert_string_equal(s.cases[2].id, "7");
    assert_int_equal(s.cases[2].n_asserts, 0);
    eval_set_free(&s);
}

static void test_load_errors(void **state)
{
    (void)state;
    load_fails("", ERR_FORMAT, "no cases");
    load_fails("{\"prompt\":\"a\"}\n{\"prompt\":\n", ERR_FORMAT, "d.jsonl:2: invalid JSON");
    load_fails("[1]\n", ERR_FORMAT, "d.jsonl:1: a case must be a JSON object");
    load_fails("{\"prompt\":\"a\"}\n\n{\"prompt\":\"a\",\"asserts\":[]}", ERR_FORMAT,
               "d.jsonl:3: the case has an unknown field \"asserts\"");
    load_fails("{\"reference\":\"a\"}", ERR_FORMAT, "exactly one of \"messages\" and \"prompt\"");
    load_fails("{\"prompt\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               ERR_FORMAT, "exactly one");
    load_fails("{\"messages\":[]}", ERR_FORMAT, "non-empty array");
    load_fails("{\"messages\":[{\"content\":\"x\"}]}", ERR_FORMAT, "message 1");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"contain\",\"value\":\"x\"}]}", ERR_FORMAT,
               "assertion 1: unknown type \"contain\"");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"contains\"}]}", ERR_FORMAT,
               "needs a string \"value\"");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"contains\",\"value\":\"\"}]}", ERR_FORMAT,
               "\"value\" is empty");
    load_fails(
        "{\"prompt\":\"a\",\"assert\":[\"json-valid\",{\"type\":\"regex\",\"value\":\"(a\"}]}",
        ERR_FORMAT, "assertion 2: regex does not compile");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"similar\",\"threshold\":0.5}]}",
               ERR_FORMAT, "needs a \"value\" or the case's \"reference\"");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"similar\",\"value\":\"x\"}]}", ERR_FORMAT,
               "\"threshold\"");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"max-tokens\",\"value\":\"5\"}]}",
               ERR_FORMAT, "needs a number");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"json-schema\",\"value\":"
               "{\"type\":\"object\",\"minProperties\":1}}]}",
               ERR_FORMAT, "keyword \"minProperties\" is not in the supported subset");
    load_fails("{\"prompt\":\"a\",\"assert\":[{\"type\":\"json-schema\",\"value\":"
               "{\"properties\":{\"x\":{\"type\":\"strin\"}}}}]}",
               ERR_FORMAT, "$.properties.x: unknown type \"strin\"");
    load_fails("{\"prompt\":\"a\",\"assert\":[\"contains\"]}", ERR_FORMAT, "bare string");
    load_fails("{\"prompt\":\"a\",\"tags\":[\"x\",\"x\"]}", ERR_FORMAT, "listed twice");
    load_fails("{\"prompt\":\"a\",\"tags\":[\"\"]}", ERR_FORMAT, "tag 1");
    load_fails("{\"prompt\":\"a\",\"params\":{\"model\":\"m\"}}", ERR_FORMAT,
               "may not set \"model\"");
    load_fails("{\"prompt\":\"a\",\"prompt\":\"b\"}", ERR_FORMAT, "d.jsonl:1: invalid JSON");
    err_msg e;
    eval_set s;
    assert_int_equal(eval_load_file("/nonexistent/eval.jsonl", &s, &e), ERR_IO);
    assert_non_null(strstr(e.text, "/nonexistent/eval.jsonl"));
}

/* Checks assertion line `a` (one JSONL case) against output text. */
static bool check(const char *assert_json, const char *text, double ms, int64_t toks, char *detail)
{
    char line[2048];
    snprintf(line, sizeof line, "{\"prompt\":\"p\",\"assert\":[%s]}", assert_json);
    eval_set s;
    err_msg e = {0};
    if (load(line, &s, &e) != 0)
        fail_msg("load %s: %s", line, e.text);
    eval_output o = {text, strlen(text), ms, toks};
    bool ok = eval_check_local(&s.cases[0].asserts[0], &o, detail, EVAL_DETAIL_MAX);
    eval_set_free(&s);
    return ok;
}

static void test_local_assertions(void **state)
{
    (void)state;
    char d[EVAL_DETAIL_MAX];
    assert_true(check("{\"type\":\"equals\",\"value\":\"Paris\"}", "Paris", 1, 1, d));
    assert_false(check("{\"type\":\"equals\",\"value\":\"Paris\"}", "Paris.", 1, 1, d));
    assert_non_null(strstr(d, "expected exactly \"Paris\", got \"Paris.\""));
    assert_true(check("{\"type\":\"contains\",\"value\":\"ari\"}", "Paris", 1, 1, d));
    assert_false(check("{\"type\":\"contains\",\"value\":\"ARI\"}", "Paris", 1, 1, d));
    assert_non_null(strstr(d, "did not find \"ARI\""));
    assert_true(check("{\"type\":\"icontains\",\"value\":\"ARI\"}", "Paris", 1, 1, d));
    /* Unicode case folding: STRASSE folds like straße, Ä like ä */
    assert_true(check("{\"type\":\"icontains\",\"value\":\"STRASSE\"}",
                      "die stra\xc3\x9f"
                      "e",
                      1, 1, d));
    assert_true(
        check("{\"type\":\"icontains\",\"value\":\"\xc3\x84pfel\"}", "\xc3\xa4pfel", 1, 1, d));
    assert_false(check("{\"type\":\"icontains\",\"value\":\"berlin\"}", "Paris", 1, 1, d));
    assert_true(check("{\"type\":\"not-contains\",\"value\":\"sorry\"}", "Paris", 1, 1, d));
    assert_false(check("{\"type\":\"not-contains\",\"value\":\"sorry\"}", "I am sorry", 1, 1, d));
    assert_non_null(strstr(d, "found \"sorry\""));
    assert_true(
        check("{\"type\":\"regex\",\"value\":\"^\\\\d{3}-\\\\d{4}$\"}", "555-1234", 1, 1, d));
    assert_false(
        check("{\"type\":\"regex\",\"value\":\"^\\\\d{3}-\\\\d{4}$\"}", "call 555-1234", 1, 1, d));
    assert_non_null(strstr(d, "does not match"));
    assert_true(check("\"json-valid\"", "{\"a\": [1, 2]}", 1, 1, d));
    assert_true(check("{\"type\":\"json-valid\"}", "42", 1, 1, d));
    assert_false(check("\"json-valid\"", "{\"a\": }", 1, 1, d));
    assert_non_null(strstr(d, "not valid JSON"));
    assert_true(check("{\"type\":\"max-latency-ms\",\"value\":100}", "x", 99.5, 1, d));
    assert_true(check("{\"type\":\"max-latency-ms\",\"value\":100}", "x", 100, 1, d));
    assert_false(check("{\"type\":\"max-latency-ms\",\"value\":100}", "x", 100.5, 1, d));
    assert_non_null(strstr(d, "latency 100.5 ms > 100 ms"));
    assert_true(check("{\"type\":\"max-tokens\",\"value\":8}", "x", 1, 8, d));
    assert_false(check("{\"type\":\"max-tokens\",\"value\":8}", "x", 1, 9, d));
    assert_non_null(strstr(d, "9 completion tokens > 8"));
    assert_false(check("{\"type\":\"max-tokens\",\"value\":8}", "x", 1, -1, d));
    assert_non_null(strstr(d, "no completion token count"));
}

static void test_json_schema(void **state)
{
    (void)state;
    char d[EVAL_DETAIL_MAX];
    const char *schema =
        "{\"type\":\"json-schema\",\"value\":{\"type\":\"object\",\"required\":[\"name\",\"tags\"],"
        "\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
        "\"kind\":{\"enum\":[\"cat\",\"dog\",1]},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"type\":[\"string\",\"null\"]}}},"
        "\"description\":\"a pet\"}}";
    assert_true(check(
        schema, "{\"name\":\"Rex\",\"tags\":[\"a\",null],\"age\":3.0,\"kind\":\"dog\"}", 1, 1, d));
    assert_true(check(schema, "{\"name\":\"Rex\",\"tags\":[],\"kind\":1.0}", 1, 1, d));
    assert_false(check(schema, "{\"name\":\"Rex\"}", 1, 1, d));
    assert_string_equal(d, "$: required key \"tags\" is missing");
    assert_false(check(schema, "{\"name\":5,\"tags\":[]}", 1, 1, d));
    assert_string_equal(d, "$.name: expected string, got integer");
    assert_false(check(schema, "{\"name\":\"a\",\"tags\":[],\"age\":2.5}", 1, 1, d));
    assert_string_equal(d, "$.age: expected integer, got number");
    assert_false(check(schema, "{\"name\":\"a\",\"tags\":[\"x\",3]}", 1, 1, d));
    assert_string_equal(d, "$.tags[1]: integer is not one of the allowed types");
    assert_false(check(schema, "{\"name\":\"a\",\"tags\":[],\"kind\":\"cow\"}", 1, 1, d));
    assert_string_equal(d, "$.kind: value is not one of the 3 enum values");
    assert_false(check(schema, "[1]", 1, 1, d));
    assert_string_equal(d, "$: expected object, got array");
    assert_false(check(schema, "not json", 1, 1, d));
    assert_non_null(strstr(d, "not valid JSON"));
    /* number accepts integers; keywords for objects ignore other types */
    assert_true(check("{\"type\":\"json-schema\",\"value\":{\"type\":\"number\"}}", "3", 1, 1, d));
    assert_true(check("{\"type\":\"json-schema\",\"value\":{\"required\":[\"a\"]}}", "3", 1, 1, d));
}

static void test_verdict(void **state)
{
    (void)state;
    const char *r;
    assert_int_equal(eval_judge_verdict("PASS: the answer names Paris.", &r), 1);
    assert_string_equal(r, "the answer names Paris.");
    assert_int_equal(eval_judge_verdict("  **FAIL** - wrong city", &r), 0);
    assert_string_equal(r, "wrong city");
    assert_int_equal(eval_judge_verdict("pass\nfine", &r), 1);
    assert_string_equal(r, "fine");
    assert_int_equal(eval_judge_verdict("FAIL", &r), 0);
    assert_string_equal(r, "");
    assert_int_equal(eval_judge_verdict("PASSED with honours", &r), -1);
    assert_int_equal(eval_judge_verdict("I think it PASSes", &r), -1);
    assert_int_equal(eval_judge_verdict("", &r), -1);
}

static void test_utf8_trim(void **state)
{
    (void)state;
    char a[] = "ab\xc3\xa9"; // complete 2-byte sequence: kept
    assert_string_equal(eval_utf8_trim(a), "ab\xc3\xa9");
    char b[] = "ab\xc3"; // lead byte alone: cut
    assert_string_equal(eval_utf8_trim(b), "ab");
    char c[] = "x\xe2\x82"; // 2 of 3 bytes of the euro sign: cut
    assert_string_equal(eval_utf8_trim(c), "x");
    char d[] = "x\xf0\x9f\x98\x80"; // complete 4-byte sequence: kept
    assert_string_equal(eval_utf8_trim(d), "x\xf0\x9f\x98\x80");
    char e[] = "x\xf0\x9f\x98"; // 3 of 4: cut
    assert_string_equal(eval_utf8_trim(e), "x");
    char f[] = "";
    assert_string_equal(eval_utf8_trim(f), "");
    /* a failure detail cut by its buffer stays valid UTF-8: 200 two-byte characters */
    char line[1024];
    size_t k = (size_t)snprintf(line, sizeof line,
                                "{\"prompt\":\"p\",\"assert\":[{\"type\":\"equals\",\"value\":\"");
    for (int i = 0; i < 200; i++, k += 2)
        memcpy(line + k, "\xc3\xa9", 2);
    snprintf(line + k, sizeof line - k, "\"}]}");
    eval_set s;
    err_msg err;
    assert_int_equal(load(line, &s, &err), 0);
    char big[601];
    for (int i = 0; i < 300; i++)
        memcpy(big + 2 * i, "\xc3\xa9", 2);
    big[600] = 0;
    eval_output o = {big, strlen(big), 1, 1};
    char detail[62]; // 61 bytes: "expected exactly \"" (18) then 43 bytes of 2-byte characters
    assert_false(eval_check_local(&s.cases[0].asserts[0], &o, detail, sizeof detail));
    json_t *j = json_string(detail); // NULL if the cut left invalid UTF-8
    assert_non_null(j);
    json_decref(j);
    eval_set_free(&s);
}

static void test_gates(void **state)
{
    (void)state;
    eval_gate g[EVAL_GATES_MAX];
    size_t n = 0;
    err_msg e;
    assert_int_equal(eval_gates_parse("pass_rate>=0.9, p99_ms<=2000,cost_per_1k<0.01", g, &n, &e),
                     0);
    assert_int_equal(eval_gates_parse("errors>0", g, &n, &e), 0);
    assert_int_equal(n, 4);
    assert_int_equal(g[0].metric, EVAL_M_PASS_RATE);
    assert_int_equal(g[0].op, EVAL_GE);
    near(g[0].limit, 0.9, 0);
    assert_string_equal(g[1].text, "p99_ms<=2000");
    assert_int_equal(g[2].op, EVAL_LT);
    assert_int_equal(g[3].op, EVAL_GT);
    assert_true(eval_gate_ok(&g[0], 0.9));
    assert_false(eval_gate_ok(&g[0], 0.89));
    assert_false(eval_gate_ok(&g[0], NAN));
    assert_true(eval_gate_ok(&g[1], 2000));
    assert_false(eval_gate_ok(&g[1], 2000.1));
    assert_false(eval_gate_ok(&g[2], 0.01));
    assert_false(eval_gate_ok(&g[3], 0));
    n = 0;
    assert_int_equal(eval_gates_parse("pass_rat>=0.9", g, &n, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "unknown metric \"pass_rat\""));
    assert_int_equal(eval_gates_parse("pass_rate=0.9", g, &n, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "no operator"));
    assert_int_equal(eval_gates_parse("pass_rate>=x", g, &n, &e), ERR_INVAL);
    assert_int_equal(eval_gates_parse("pass_rate>=0.9,", g, &n, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "empty gate"));
}

/* Runs laid out (case, target, repeat) with pass flags from a string of 0/1/e. */
static eval_run *make_runs(const char *flags, size_t n)
{
    eval_run *r = calloc(n, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].done = true;
        r[i].pass = flags[i] == '1';
        r[i].error = flags[i] == 'e';
        r[i].latency_ms = (double)(10 * (i + 1));
        r[i].prompt_tokens = r[i].error ? -1 : 100;
        r[i].completion_tokens = r[i].error ? -1 : 10;
    }
    return r;
}

static void test_summary(void **state)
{
    (void)state;
    /* 4 cases x 2 targets x 1 repeat; tags: c0 {x}, c1 {x, y}, c2 {y}, c3 {} */
    const char *d =
        "{\"prompt\":\"a\",\"tags\":[\"x\"]}\n{\"prompt\":\"b\",\"tags\":[\"y\",\"x\"]}\n"
        "{\"prompt\":\"c\",\"tags\":[\"y\"]}\n{\"prompt\":\"d\"}\n";
    eval_set s;
    err_msg e;
    assert_int_equal(load(d, &s, &e), 0);
    /* (c0: a=1 b=0) (c1: a=1 b=1) (c2: a=0 b=e) (c3: a=1 b=0) */
    eval_run *runs = make_runs("11"
                               "11"
                               "0e"
                               "10",
                               8);
    runs[0].pass = true, runs[1].pass = false; // c0 a=1 b=0
    eval_prices price = {1.0, 2.0};            // per 1M tokens
    eval_target_sum a, b;
    assert_int_equal(eval_summarize_target(&s, runs, 2, 0, 1, &price, &a), 0);
    assert_int_equal(eval_summarize_target(&s, runs, 2, 1, 1, &price, &b), 0);
    assert_int_equal(a.runs, 4);
    assert_int_equal(a.passed, 3);
    near(a.rate, 0.75, 0);
    assert_int_equal(a.errors, 0);
    /* a's latencies are runs 0, 2, 4, 6: 10 30 50 70 ms -> p50 40, p99 = 50 + 0.97*20 */
    near(a.p50_ms, 40.0, 1e-9);
    near(a.p99_ms, 69.4, 1e-9);
    assert_int_equal(a.prompt_tokens, 400);
    assert_int_equal(a.completion_tokens, 40);
    /* cost = (400 * 1 + 40 * 2) / 1e6 = 4.8e-4; per 1K completion tokens = 4.8e-4 * 25 */
    near(a.cost, 4.8e-4, 1e-15);
    near(a.cost_per_1k, 0.012, 1e-12);
    near(a.cost_per_case, 1.2e-4, 1e-15);
    assert_int_equal(b.passed, 1);
    assert_int_equal(b.errors, 1);
    assert_int_equal(b.completion_tokens, 30);
    near(eval_metric_value(&b, EVAL_M_ERRORS), 1.0, 0);
    /* tags sorted: x (c0, c1), y (c1, c2) */
    assert_int_equal(a.n_tags, 2);
    assert_string_equal(a.tags[0].tag, "x");
    assert_int_equal(a.tags[0].runs, 2);
    assert_int_equal(a.tags[0].passed, 2);
    assert_string_equal(a.tags[1].tag, "y");
    assert_int_equal(a.tags[1].passed, 1);
    assert_int_equal(b.tags[0].passed, 1);
    assert_int_equal(b.tags[1].passed, 1);
    /* paired: a wins c0, c3 (a=1, b=0), ties c1, wins c2? a=0, b=0 (error) -> tie */
    eval_pair_sum p;
    assert_int_equal(eval_pair(&s, runs, 2, 0, 1, 1, 1000, 3, &p), 0);
    assert_int_equal(p.won, 2);
    assert_int_equal(p.lost, 0);
    assert_int_equal(p.tied, 2);
    assert_int_equal(p.only_a, 2);
    assert_int_equal(p.only_b, 0);
    near(p.p_value, 0.5, 1e-12); // 2 * 2^-2
    near(p.diff, 0.5, 1e-12);
    assert_true(p.lo <= 0.5 && p.hi >= 0.5);
    eval_target_sum_deinit(&a);
    eval_target_sum_deinit(&b);
    free(runs);

    /* repeats: 4 cases x 2 targets x 3 repeats; case scores by share of passes */
    eval_run *rr = make_runs("111"
                             "000" /* c0: a 3/3, b 0/3 */
                             "110"
                             "100" /* c1: a 2/3, b 1/3 */
                             "100"
                             "110" /* c2: a 1/3, b 2/3 */
                             "101"
                             "011" /* c3: 2/3 each */,
                             24);
    assert_int_equal(eval_pair(&s, rr, 2, 0, 1, 3, 500, 3, &p), 0);
    assert_int_equal(p.won, 2);
    assert_int_equal(p.lost, 1);
    assert_int_equal(p.tied, 1);
    assert_int_equal(p.only_a, 2); // majority: c0, c1 for a only; c2 for b only
    assert_int_equal(p.only_b, 1);
    near(p.diff, (3.0 + 2 + 1 + 2) / 12.0 - (0.0 + 1 + 2 + 2) / 12.0, 1e-12);
    assert_int_equal(eval_summarize_target(&s, rr, 2, 0, 3, &price, &a), 0);
    assert_int_equal(a.runs, 12);
    assert_int_equal(a.passed, 8);
    eval_target_sum_deinit(&a);
    /* interrupted: case 0's second repeat on b never finished: the pair leaves
     * case 0 out, the target summary leaves that run out */
    rr[(0 * 2 + 1) * 3 + 1].done = false;
    assert_int_equal(eval_pair(&s, rr, 2, 0, 1, 3, 500, 3, &p), 0);
    assert_int_equal(p.cases, 3);
    assert_int_equal(p.won, 1);
    assert_int_equal(p.only_a, 1);
    near(p.diff, (2.0 + 1 + 2) / 9.0 - (1.0 + 2 + 2) / 9.0, 1e-12);
    assert_int_equal(eval_summarize_target(&s, rr, 2, 1, 3, &price, &b), 0);
    assert_int_equal(b.runs, 11);
    eval_target_sum_deinit(&b);
    for (size_t i = 0; i < 24; i++)
        rr[i].done = false;
    assert_int_equal(eval_pair(&s, rr, 2, 0, 1, 3, 500, 3, &p), ERR_NOT_FOUND);
    free(rr);
    eval_set_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_ok),          cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_local_assertions), cmocka_unit_test(test_json_schema),
        cmocka_unit_test(test_verdict),          cmocka_unit_test(test_gates),
        cmocka_unit_test(test_summary),          cmocka_unit_test(test_utf8_trim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
