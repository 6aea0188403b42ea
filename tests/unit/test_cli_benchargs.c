/*
 * Unit tests for cli/benchargs: every flag-value parser of `ferry bench` and
 * the --prompts JSONL parser, at their limits and one past them, with the
 * error text checked where it tells the user something.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/benchargs.h"

static void test_len(void **state)
{
    (void)state;
    double m = -1, sd = -1;
    err_msg e = {0};
    assert_int_equal(benchargs_len("--input-len", "128", &m, &sd, &e), 0);
    assert_true(m == 128 && sd == 0);
    assert_int_equal(benchargs_len("--input-len", "512:64.5", &m, &sd, &e), 0);
    assert_true(m == 512 && sd == 64.5);
    assert_int_equal(benchargs_len("--output-len", "1", &m, &sd, &e), 0);
    assert_true(m == 1);
    assert_int_equal(benchargs_len("--output-len", "1000000:1000000", &m, &sd, &e), 0);
    assert_true(m == BENCH_LEN_MAX && sd == BENCH_LEN_MAX);
    /* refused: outputs untouched, the flag and value named */
    const char *bad[] = {"", "0", "1000001", "-5", "nan", "inf", "12x", "12:", ":3", "12:-1",
                         "12:1e7", "1:2:3", " 12", "12 ", "12,3", "1e400", "12:nan",
                         /* 64 bytes: would once have been cut to a valid 63-byte prefix */
                         "1000000:000000000000000000000000000000000000000000000000000000000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        m = sd = -7;
        err_clear(&e);
        assert_int_equal(benchargs_len("--input-len", bad[i], &m, &sd, &e), ERR_INVAL);
        assert_true(m == -7 && sd == -7);
        assert_non_null(strstr(e.text, "--input-len wants LEN or MEAN:STDDEV"));
    }
}

static void test_loads(void **state)
{
    (void)state;
    double l[BENCH_POINTS_MAX];
    size_t n = 99;
    err_msg e = {0};
    assert_int_equal(benchargs_loads("--concurrency", "1,4,16,64", true, l, &n, &e), 0);
    assert_int_equal(n, 4);
    assert_true(l[0] == 1 && l[1] == 4 && l[2] == 16 && l[3] == 64);
    assert_int_equal(benchargs_loads("--concurrency", "4096", true, l, &n, &e), 0);
    assert_true(n == 1 && l[0] == 4096);
    assert_int_equal(benchargs_loads("--rate", "0.5,2,1000000", false, l, &n, &e), 0);
    assert_true(n == 3 && l[0] == 0.5 && l[2] == 1e6);
    /* exactly BENCH_POINTS_MAX values, then one more */
    char list[1024] = "";
    for (int i = 1; i <= BENCH_POINTS_MAX; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i > 1 ? "," : "", i);
    assert_int_equal(benchargs_loads("--concurrency", list, true, l, &n, &e), 0);
    assert_int_equal(n, BENCH_POINTS_MAX);
    assert_true(l[BENCH_POINTS_MAX - 1] == BENCH_POINTS_MAX);
    snprintf(list + strlen(list), sizeof list - strlen(list), ",65");
    n = 7;
    assert_int_equal(benchargs_loads("--concurrency", list, true, l, &n, &e), ERR_INVAL);
    assert_int_equal(n, 7);
    const char *bad_conc[] = {"",   "0",  "4097", "1.5", "-1",  "1,,2",
                              "1,", ",1", "1, 2", "a",   "nan", "inf"};
    for (size_t i = 0; i < sizeof bad_conc / sizeof *bad_conc; i++) {
        err_clear(&e);
        assert_int_equal(benchargs_loads("--concurrency", bad_conc[i], true, l, &n, &e), ERR_INVAL);
        assert_non_null(strstr(e.text, "integers in 1..4096"));
    }
    const char *bad_rate[] = {"", "0", "-2", "1000001", "2,,5", "1e400", "inf", "2;5"};
    for (size_t i = 0; i < sizeof bad_rate / sizeof *bad_rate; i++) {
        err_clear(&e);
        assert_int_equal(benchargs_loads("--rate", bad_rate[i], false, l, &n, &e), ERR_INVAL);
        assert_non_null(strstr(e.text, "--rate wants"));
    }
    /* longer than BENCH_ARG_MAX: refused whole, not cut */
    char big[BENCH_ARG_MAX + 8];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(benchargs_loads("--rate", big, false, l, &n, &e), ERR_INVAL);
}

static void test_slo(void **state)
{
    (void)state;
    bench_slo s;
    err_msg e = {0};
    assert_int_equal(benchargs_slo("ttft=500ms,tpot=50ms,e2e=10s", &s, &e), 0);
    assert_true(s.is_set && s.ttft_ms == 500 && s.tpot_ms == 50 && s.e2e_ms == 10000);
    assert_int_equal(benchargs_slo("e2e=1.5", &s, &e), 0);
    assert_true(isnan(s.ttft_ms) && isnan(s.tpot_ms) && s.e2e_ms == 1500);
    assert_int_equal(benchargs_slo("tpot=0ms", &s, &e), 0); // an impossible SLO is allowed
    assert_true(s.tpot_ms == 0);
    assert_int_equal(benchargs_slo("ttft=24h", &s, &e), 0);
    const char *bad[] = {"",         "ttft",     "ttft=",          "ttft=5x",  "foo=1s",
                         "ttft=1s,", ",ttft=1s", "ttft=-1s",       "TTFT=1s",  "ttft=1s,ttft=2s",
                         "ttft=25h", "ttft =1s", "ttft=1s;e2e=2s", "ttft=nan", "e2e=inf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bench_slo t = {.is_set = false, .ttft_ms = 1, .tpot_ms = 2, .e2e_ms = 3};
        err_clear(&e);
        assert_int_equal(benchargs_slo(bad[i], &t, &e), ERR_INVAL);
        assert_true(!t.is_set && t.ttft_ms == 1 && t.tpot_ms == 2 && t.e2e_ms == 3);
        assert_non_null(strstr(e.text, "--slo wants"));
    }
}

static void test_money(void **state)
{
    (void)state;
    double x = -1;
    err_msg e = {0};
    assert_int_equal(benchargs_money("--price-in", "0", &x, &e), 0);
    assert_true(x == 0);
    assert_int_equal(benchargs_money("--price-in", "2.5e-1", &x, &e), 0);
    assert_true(x == 0.25);
    const char *bad[] = {"", "-0.01", "nan", "inf", "1$", "$1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        x = 9;
        assert_int_equal(benchargs_money("--hourly-cost", bad[i], &x, &e), ERR_INVAL);
        assert_true(x == 9);
        assert_non_null(strstr(e.text, "--hourly-cost wants a non-negative number"));
    }
}

static void test_prompts(void **state)
{
    (void)state;
    benchargs_prompts pf = {0};
    err_msg e = {0};
    const char ok[] = "{\"prompt\": \"hi\"}\r\n"
                      "\n"
                      "   \t\n"
                      "  {\"messages\": [{\"role\": \"system\", \"content\": \"s\"},"
                      " {\"role\": \"user\", \"content\": \"u\"}], \"max_tokens\": 7}  \n"
                      "{\"prompt\": \"last\", \"max_tokens\": 1000000}"; // no final newline
    assert_int_equal(benchargs_prompts_parse(&pf, "p.jsonl", ok, sizeof ok - 1, &e), 0);
    assert_int_equal(pf.n, 3);
    assert_int_equal(json_array_size(pf.msgs[0]), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(pf.msgs[0], 0), "role")),
                        "user");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(pf.msgs[0], 0), "content")), "hi");
    assert_int_equal(json_array_size(pf.msgs[1]), 2);
    assert_true(pf.max_tokens[0] == 0 && pf.max_tokens[1] == 7 && pf.max_tokens[2] == 1000000);
    benchargs_prompts_free(&pf);
    assert_true(pf.n == 0 && pf.msgs == NULL);

    /* each bad line is refused, naming file and line, and adds nothing */
    static const struct {
        const char *line, *want;
    } bad[] = {
        {"{\"prompt\": 5}", "expected {\"messages\""},
        {"[1]", "expected {\"messages\""},
        {"\"text\"", "expected {\"messages\""},
        {"{\"messages\": []}", "1 to 4096 messages"},
        {"{\"messages\": {}}", "1 to 4096 messages"},
        {"{\"messages\": [1]}", "message 1 is not an object"},
        {"{\"messages\": [{\"role\": \"user\"}, {\"content\": \"x\"}]}", "message 2 is not"},
        {"{\"prompt\": \"a\", \"messages\": [{\"role\": \"user\"}]}", "not both"},
        {"{\"prompt\": \"a\", \"max_tokens\": 0}", "\"max_tokens\" must be an integer"},
        {"{\"prompt\": \"a\", \"max_tokens\": 1000001}", "\"max_tokens\" must be an integer"},
        {"{\"prompt\": \"a\", \"max_tokens\": 2.5}", "\"max_tokens\" must be an integer"},
        {"{\"prompt\": \"a\"", "p.jsonl:2:"},
        {"{\"prompt\": \"a\"} x", "p.jsonl:2:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"prompt\": \"first\"}\n%s\n{\"prompt\": \"third\"}\n",
                 bad[i].line);
        err_clear(&e);
        int rc = benchargs_prompts_parse(&pf, "p.jsonl", text, strlen(text), &e);
        assert_int_equal(rc, ERR_FORMAT);
        assert_int_equal(pf.n, 1); // the first line only
        assert_non_null(strstr(e.text, "p.jsonl:2: "));
        if (!strstr(e.text, bad[i].want))
            fail_msg("line %zu: %s: error \"%s\" lacks \"%s\"", i, bad[i].line, e.text,
                     bad[i].want);
        benchargs_prompts_free(&pf);
    }

    /* no prompt at all */
    assert_int_equal(benchargs_prompts_parse(&pf, "p.jsonl", "\n \n", 3, &e), ERR_FORMAT);
    assert_non_null(strstr(e.text, "p.jsonl holds no prompt"));
    benchargs_prompts_free(&pf);

    /* a line of exactly BENCH_LINE_MAX bytes is read; one byte more is too large */
    size_t big = BENCH_LINE_MAX;
    char *line = malloc(big + 1);
    assert_non_null(line);
    memset(line, 'a', big);
    memcpy(line, "{\"prompt\": \"", 12);
    memcpy(line + big - 2, "\"}", 2);
    assert_int_equal(benchargs_prompts_add_line(&pf, "p", 1, line, big, &e), 0);
    assert_int_equal(pf.n, 1);
    line[big] = ' ';
    assert_int_equal(benchargs_prompts_add_line(&pf, "p", 2, line, big + 1, &e), ERR_TOO_LARGE);
    assert_int_equal(pf.n, 1);
    assert_non_null(strstr(e.text, "p:2: line longer than 4194304 bytes"));
    free(line);
    benchargs_prompts_free(&pf);
}

static void test_prompts_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-benchargs-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "{\"prompt\": \"a\"}\n{\"messages\": [{\"role\": \"user\", \"content\": "
                        "\"b\"}]}\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    benchargs_prompts pf = {0};
    err_msg e = {0};
    assert_int_equal(benchargs_prompts_load(&pf, path, &e), 0);
    assert_int_equal(pf.n, 2);
    benchargs_prompts_free(&pf);

    /* a last line without a newline counts; CRLF files read as well */
    fd = open(path, O_WRONLY | O_TRUNC);
    const char crlf[] = "{\"prompt\": \"a\"}\r\n\r\n{\"prompt\": \"b\"}";
    assert_int_equal(write(fd, crlf, sizeof crlf - 1), (ssize_t)(sizeof crlf - 1));
    close(fd);
    assert_int_equal(benchargs_prompts_load(&pf, path, &e), 0);
    assert_int_equal(pf.n, 2);
    benchargs_prompts_free(&pf);

    /* line 2 is 5 MiB: refused by its number, read in bounded pieces (the old
     * getline took any line whole first); also when it is the last, unterminated */
    for (int terminated = 0; terminated < 2; terminated++) {
        fd = open(path, O_WRONLY | O_TRUNC);
        const char first[] = "{\"prompt\": \"a\"}\n";
        assert_int_equal(write(fd, first, sizeof first - 1), (ssize_t)(sizeof first - 1));
        size_t big = (size_t)5 << 20;
        char *junk = malloc(big);
        assert_non_null(junk);
        memset(junk, 'x', big);
        assert_int_equal(write(fd, junk, big), (ssize_t)big);
        free(junk);
        if (terminated)
            assert_int_equal(write(fd, "\n", 1), 1);
        close(fd);
        err_clear(&e);
        assert_int_equal(benchargs_prompts_load(&pf, path, &e), ERR_TOO_LARGE);
        assert_non_null(strstr(e.text, ":2: line longer than 4194304 bytes"));
        benchargs_prompts_free(&pf);
    }
    unlink(path);
    assert_int_equal(benchargs_prompts_load(&pf, path, &e), ERR_IO);
    assert_non_null(strstr(e.text, "cannot open --prompts /tmp/ferry-benchargs-"));
    benchargs_prompts_free(&pf);
}

static void test_chunk_scan(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int rc;
        bool error, content;
        int64_t pt, ct;
    } cases[] = {
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}", 0, false, true, -1, -1},
        {"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}", 0, false, false,
         -1, -1},
        {"{\"choices\":[{\"delta\":{\"reasoning_content\":\"\\u00e9\"}}]}", 0, false, true, -1, -1},
        {"{\"choices\":[{\"text\":\"x\"}]}", 0, false, true, -1, -1},
        {"{\"choices\":[{\"text\":\"\"},{\"text\":\"x\"}]}", 0, false, false, -1, -1}, // [0] only
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7}}", 0, false,
         false, 12, 7},
        {"{\"usage\":{\"prompt_tokens\":12.0,\"completion_tokens\":-7}}", 0, false, false, -1, -7},
        /* a key given twice: the last counts, as with json_object_get */
        {"{\"usage\":{\"prompt_tokens\":5},\"usage\":null}", 0, false, false, -1, -1},
        {"{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"choices\":[{}]}", 0, false, false, -1,
         -1},
        {"{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"\"}}]}", 0, false, false, -1,
         -1},
        /* escaped keys are the same keys */
        {"{\"\\u0063hoices\":[{\"delta\":{\"content\":\"y\"}}],\"\\u0065rror\":null}", 0, true,
         true, -1, -1},
        {"{\"error\":{\"message\":\"boom\"}}", 0, true, false, -1, -1},
        /* what jansson refuses */
        {"[{\"choices\":[]}]", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":1} x", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":9223372036854775808}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":1e309}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":\"\\udc00\"}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":\"\\u0000\"}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":\"\xed\xa0\x80\"}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":01}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":\"x\ty\"}", ERR_FORMAT, false, false, 0, 0},
        {"{\"a\":tru}", ERR_FORMAT, false, false, 0, 0},
        {"", ERR_FORMAT, false, false, 0, 0},
        /* what it accepts */
        {"{\"a\":[-0,0.5e-400,-9223372036854775808,\"\\ud83d\\ude00\"]}", 0, false, false, -1, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bench_chunk c = {0};
        int rc = benchargs_chunk_scan(cases[i].json, strlen(cases[i].json), &c);
        if (rc != cases[i].rc)
            fail_msg("case %zu %s: rc %d", i, cases[i].json, rc);
        if (rc == 0 && (c.has_error != cases[i].error || c.has_content != cases[i].content ||
                        c.prompt_tokens != cases[i].pt || c.completion_tokens != cases[i].ct))
            fail_msg("case %zu %s: error %d content %d pt %lld ct %lld", i, cases[i].json,
                     c.has_error, c.has_content, (long long)c.prompt_tokens,
                     (long long)c.completion_tokens);
    }
    /* nesting: values at most 2048 deep, as jansson */
    for (int depth = 2046; depth <= 2049; depth++) {
        char *t = malloc((size_t)depth * 2 + 16);
        assert_non_null(t);
        size_t n = (size_t)snprintf(t, 16, "{\"a\":");
        for (int i = 0; i < depth - 1; i++)
            t[n++] = '[';
        for (int i = 0; i < depth - 1; i++)
            t[n++] = ']';
        t[n++] = '}';
        bench_chunk c;
        // depth counts the top object: {"a": [ x (depth-1) ]} nests depth values
        assert_int_equal(benchargs_chunk_scan(t, n, &c), depth <= 2048 ? 0 : ERR_FORMAT);
        free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_len),        cmocka_unit_test(test_loads),
        cmocka_unit_test(test_slo),        cmocka_unit_test(test_money),
        cmocka_unit_test(test_prompts),    cmocka_unit_test(test_prompts_file),
        cmocka_unit_test(test_chunk_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
