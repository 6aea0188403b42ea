/* Unit tests for base/: err table, parsing, buf, arena, str, clock, log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/base.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/str.h"

static void test_err_table(void **state)
{
    (void)state;
    assert_string_equal(err_name(ERR_NOT_FOUND), "not_found");
    assert_int_equal(err_http_status(ERR_NOT_FOUND), 404);
    assert_int_equal(err_http_status(ERR_TOO_LARGE), 413);
    assert_int_equal(err_http_status(ERR_HEADERS_TOO_LARGE), 431);
    assert_string_equal(err_openai_type(ERR_RATE_LIMIT), "rate_limit_error");
    assert_int_equal(err_http_status(12345), 500);
    assert_string_equal(err_name(-1), "unknown_error");
    err_msg e;
    assert_int_equal(err_set(&e, ERR_FORMAT, "bad %s at %d", "thing", 7), ERR_FORMAT);
    assert_string_equal(e.text, "bad thing at 7");
    assert_string_equal(err_text(&e, ERR_FORMAT), "bad thing at 7");
    err_clear(&e);
    assert_string_equal(err_text(&e, ERR_FORMAT), "malformed input");
    assert_int_equal(err_set(NULL, ERR_IO, "x"), ERR_IO);
}

static void test_err_truncates_utf8(void **state)
{
    (void)state;
    char big[ERR_MSG_MAX * 2];
    /* "é" is 2 bytes; fill so the cut lands inside a sequence. */
    size_t n = 0;
    big[n++] = 'a';
    while (n + 2 < sizeof big - 1) {
        big[n++] = (char)0xC3;
        big[n++] = (char)0xA9;
    }
    big[n] = '\0';
    err_msg e;
    err_set(&e, ERR_INVAL, "%s", big);
    size_t len = strlen(e.text);
    assert_true(len < ERR_MSG_MAX);
    /* The last byte must not be a lead byte of a cut sequence. */
    assert_int_not_equal((unsigned char)e.text[len - 1], 0xC3);
}

static void test_parse_i64(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(parse_i64("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_i64("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(parse_i64("101", 0, 100, &v), ERR_OVERFLOW);
    assert_int_equal(parse_i64("99999999999999999999", INT64_MIN, INT64_MAX, &v), ERR_OVERFLOW);
    assert_int_equal(parse_i64("12x", 0, 100, &v), ERR_INVAL);
    assert_int_equal(parse_i64("", 0, 100, &v), ERR_INVAL);
    assert_int_equal(parse_i64(" 1", 0, 100, &v), ERR_INVAL);
    assert_int_equal(parse_i64(NULL, 0, 100, &v), ERR_INVAL);
}

static void test_parse_f64_size_duration(void **state)
{
    (void)state;
    double d;
    assert_int_equal(parse_f64("0.5", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(parse_f64("nan", &d), ERR_INVAL);
    assert_int_equal(parse_f64("1e999", &d), ERR_INVAL);
    assert_int_equal(parse_f64("1.0x", &d), ERR_INVAL);
    uint64_t s;
    assert_int_equal(parse_size("8MiB", UINT64_MAX, &s), 0);
    assert_true(s == 8ull << 20);
    assert_int_equal(parse_size("512", UINT64_MAX, &s), 0);
    assert_true(s == 512);
    assert_int_equal(parse_size("2g", UINT64_MAX, &s), 0);
    assert_true(s == 2ull << 30);
    assert_int_equal(parse_size("2g", 1024, &s), ERR_OVERFLOW);
    assert_int_equal(parse_size("20000000000000gib", UINT64_MAX, &s), ERR_OVERFLOW);
    assert_int_equal(parse_size("3 parsecs", UINT64_MAX, &s), ERR_INVAL);
    assert_int_equal(parse_size("-1", UINT64_MAX, &s), ERR_INVAL);
    uint64_t ns;
    assert_int_equal(parse_duration_ns("250ms", &ns), 0);
    assert_true(ns == 250000000ull);
    assert_int_equal(parse_duration_ns("2", &ns), 0);
    assert_true(ns == 2000000000ull);
    assert_int_equal(parse_duration_ns("1.5m", &ns), 0);
    assert_true(ns == 90000000000ull);
    assert_int_equal(parse_duration_ns("5 weeks", &ns), ERR_INVAL);
    assert_int_equal(parse_duration_ns("-1s", &ns), ERR_INVAL);
}

static void test_checked_math(void **state)
{
    (void)state;
    size_t out;
    assert_true(size_mul_ok(1000, 1000, &out));
    assert_true(out == 1000000);
    assert_false(size_mul_ok(SIZE_MAX / 2 + 1, 2, &out));
    assert_false(size_add_ok(SIZE_MAX, 1, &out));
    uint64_t u;
    assert_false(u64_mul_ok(UINT64_MAX, 3, &u));
    assert_true(u64_add_ok(1, 2, &u) && u == 3);
}

static void test_buf(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 16);
    assert_int_equal(buf_append_str(&b, "hello"), 0);
    assert_int_equal(buf_printf(&b, " %d", 42), 0);
    assert_string_equal(b.data, "hello 42");
    /* The ceiling refuses and leaves contents unchanged. */
    assert_int_equal(buf_append_str(&b, "0123456789"), ERR_TOO_LARGE);
    assert_string_equal(b.data, "hello 42");
    assert_int_equal(buf_printf(&b, "%s", "0123456789"), ERR_TOO_LARGE);
    assert_int_equal(b.len, 8);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append(&b, "0123456789abcdef", 16), 0);
    assert_int_equal(buf_append_char(&b, 'x'), ERR_TOO_LARGE);
    char *p = buf_steal(&b);
    assert_string_equal(p, "0123456789abcdef");
    free(p);
    assert_null(b.data);
    buf_deinit(&b);
}

static void test_buf_json_escape(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 1024);
    const char in[] = "a\"b\\c\n\t\x01 \xC3\xA9 \xFF z";
    assert_int_equal(buf_append_json_str(&b, in, sizeof in - 1), 0);
    assert_string_equal(b.data, "a\\\"b\\\\c\\n\\t\\u0001 \xC3\xA9 \xEF\xBF\xBD z");
    buf_reset(&b);
    /* Overlong encoding and lone surrogate are replaced. */
    const char bad[] = "\xC0\xAF|\xED\xA0\x80";
    assert_int_equal(buf_append_json_str(&b, bad, sizeof bad - 1), 0);
    assert_string_equal(b.data, "\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    buf_deinit(&b);
}

static int cleanup_count;
static int cleanup_order[4];
static void on_free(void *arg)
{
    cleanup_order[cleanup_count++] = (int)(intptr_t)arg;
}

static void test_arena(void **state)
{
    (void)state;
    arena *a = arena_new(64 * 1024);
    assert_non_null(a);
    char *s = arena_strdup(a, "hello");
    assert_string_equal(s, "hello");
    assert_true(((uintptr_t)s & 15) == 0);
    void *big = arena_alloc(a, 20000);
    assert_non_null(big);
    memset(big, 1, 20000);
    char *after = arena_alloc(a, 8); // still bumps in a chunk, not lost
    assert_non_null(after);
    assert_null(arena_alloc(a, 64 * 1024)); // over the ceiling
    assert_null(arena_calloc(a, SIZE_MAX / 2, 4)); // overflow
    int *z = arena_calloc(a, 10, sizeof(int));
    assert_non_null(z);
    for (int i = 0; i < 10; i++)
        assert_int_equal(z[i], 0);
    cleanup_count = 0;
    assert_int_equal(arena_on_free(a, on_free, (void *)1), 0);
    assert_int_equal(arena_on_free(a, on_free, (void *)2), 0);
    assert_true(arena_used(a) > 20000);
    arena_free(a);
    assert_int_equal(cleanup_count, 2);
    assert_int_equal(cleanup_order[0], 2); // last registered runs first
    assert_int_equal(cleanup_order[1], 1);
    arena_free(NULL);
}

static void test_str(void **state)
{
    (void)state;
    str a = STR_LIT("Content-Type");
    assert_true(str_case_eq(a, str_from("content-type")));
    assert_false(str_eq(a, str_from("content-type")));
    assert_true(str_eq_cstr(str_trim(str_from("  x y \t")), "x y"));
    assert_true(str_starts_with(str_from("application/json; charset=utf-8"),
                                STR_LIT("application/json")));
    assert_true(str_eq(str_from(""), (str){NULL, 0}));
}

static void test_clock(void **state)
{
    (void)state;
    char ts[32];
    clock_rfc3339_ms(1768380248123000000ull, ts, sizeof ts);
    assert_string_equal(ts, "2026-01-14T08:44:08.123Z");
    uint64_t a = clock_mono_ns(), b = clock_mono_ns();
    assert_true(b >= a);
    assert_true(clock_wall_ns() > 1700000000ull * 1000000000ull);
}

static void test_log(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    err_msg e;
    assert_int_equal(log_open(path, &e), 0);
    log_set_level(LOG_LEVEL_WARN);
    LOG_INFO("test", "hidden %d", 1);
    LOG_WARN("test", "shown \"%s\"", "q");
    log_set_debug_modules("http,sched");
    assert_true(log_enabled(LOG_LEVEL_DEBUG, "sched"));
    assert_false(log_enabled(LOG_LEVEL_DEBUG, "sch"));
    log_write_fields(LOG_LEVEL_ERROR, "http", "req", "\"status\":500");
    assert_int_equal(log_open(NULL, &e), 0);
    assert_int_equal(log_open("/nonexistent-dir/x.log", &e), ERR_IO);
    assert_non_null(strstr(e.text, "/nonexistent-dir/x.log"));
    log_level l;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("loud", &l), ERR_INVAL);
    log_set_level(LOG_LEVEL_INFO);
    log_set_debug_modules("");

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "\"level\":\"warn\",\"mod\":\"test\",\"msg\":\"shown \\\"q\\\"\"}"));
    assert_true(strncmp(line, "{\"ts\":\"", 7) == 0);
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "\"msg\":\"req\",\"status\":500}"));
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_table),
        cmocka_unit_test(test_err_truncates_utf8),
        cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_parse_f64_size_duration),
        cmocka_unit_test(test_checked_math),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_buf_json_escape),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_str),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
