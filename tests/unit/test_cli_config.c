/* Unit tests for cli/config: defaults, file/env/flag precedence, and each
 * error path with its file, line, column and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/config.h"

static int load(ferry_config *c, const char *yaml, err_msg *e)
{
    config_defaults(c);
    return config_load_yaml(c, "t.yaml", yaml, strlen(yaml), e);
}

static void test_defaults(void **state)
{
    (void)state;
    ferry_config c;
    config_defaults(&c);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.data, "./ferry-data");
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.per_ip_connections, 0);
    assert_true(c.max_body_bytes == 8u << 20);
    assert_true(c.max_header_bytes == 32u << 10);
    assert_int_equal(c.read_timeout_s, 30);
    assert_int_equal(c.shutdown_grace_s, 30);
    assert_false(c.debug_routes);
    assert_string_equal(c.log_level, "info");
    assert_string_equal(c.log_file, "stderr");
    assert_int_equal(c.n_models, 0);
}

static void test_full_file(void **state)
{
    (void)state;
    ferry_config c;
    err_msg e;
    const char *y = "# comment\n"
                    "listen: \"[::1]:9000\"\n"
                    "data: /var/lib/ferry\n"
                    "threads: 4\n"
                    "models:\n  - tiny=/m/tiny.gguf\n  - /m/other.gguf\n"
                    "http:\n"
                    "  max_connections: 10\n"
                    "  per_ip_connections: 5\n"
                    "  max_body_bytes: 1MiB\n"
                    "  max_header_bytes: 8k\n"
                    "  read_timeout_s: 7\n"
                    "  shutdown_grace_s: 3\n"
                    "  debug_routes: yes\n"
                    "log:\n"
                    "  level: debug\n"
                    "  file: /tmp/x.log\n"
                    "  debug_modules: http,mhd\n";
    assert_int_equal(load(&c, y, &e), 0);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.data, "/var/lib/ferry");
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[0], "tiny=/m/tiny.gguf");
    assert_int_equal(c.max_connections, 10);
    assert_int_equal(c.per_ip_connections, 5);
    assert_true(c.max_body_bytes == 1u << 20);
    assert_true(c.max_header_bytes == 8192);
    assert_int_equal(c.read_timeout_s, 7);
    assert_int_equal(c.shutdown_grace_s, 3);
    assert_true(c.debug_routes);
    assert_string_equal(c.log_level, "debug");
    assert_string_equal(c.log_debug_modules, "http,mhd");
    /* empty and comment-only files set nothing */
    assert_int_equal(load(&c, "", &e), 0);
    assert_int_equal(load(&c, "# nothing\n", &e), 0);
    assert_int_equal(c.port, 8080);
}

/* Each error names the file, line, column and key. */
static void expect_err(const char *yaml, int code, const char *where, const char *what)
{
    ferry_config c;
    err_msg e;
    int rc = load(&c, yaml, &e);
    if (rc != code || !strstr(e.text, where) || !strstr(e.text, what))
        fail_msg("yaml %s: rc %d, message \"%s\"; wanted %d with \"%s\" and \"%s\"", yaml, rc,
                 e.text, code, where, what);
}

static void test_errors(void **state)
{
    (void)state;
    expect_err("listen: \"unclosed\n", ERR_FORMAT, "t.yaml:", "syntax error");
    expect_err("listen: b\n  c: d\n", ERR_FORMAT, "t.yaml:2:4", "syntax error");
    expect_err("listen: x:1\nbogus: 1\n", ERR_FORMAT, "t.yaml:2:1: key bogus", "unknown key");
    expect_err("http:\n  max_conections: 5\n", ERR_FORMAT, "t.yaml:2:3: key http.max_conections",
               "unknown key");
    expect_err("threads: 1\nthreads: 2\n", ERR_FORMAT, "t.yaml:2:1: key threads", "twice");
    expect_err("threads: [1, 2]\n", ERR_FORMAT, "key threads", "not a list");
    expect_err("threads:\n  a: 1\n", ERR_FORMAT, "key threads", "not a mapping");
    expect_err("http: 5\n", ERR_FORMAT, "t.yaml:1:7: key http", "mapping of keys");
    expect_err("models: one.gguf\n", ERR_FORMAT, "key models", "expected a list");
    expect_err("- a\n- b\n", ERR_FORMAT, "t.yaml:1:1", "not a list");
    expect_err("just text\n", ERR_FORMAT, "t.yaml:1:1", "mapping of keys");
    expect_err("a: &x 1\nb: *x\n", ERR_FORMAT, "t.yaml:1:1: key a", "unknown key");
    expect_err("log:\n  level: &l debug\n  file: *l\n", ERR_FORMAT, "t.yaml:3:9", "aliases");
    /* values: type and range, with the key's position */
    expect_err("threads: many\n", ERR_INVAL, "t.yaml:1:1: key threads", "not an integer");
    expect_err("\nthreads: 5000\n", ERR_INVAL, "t.yaml:2:1: key threads", "[0, 1024]");
    expect_err("http:\n  max_body_bytes: 12 parsecs\n", ERR_INVAL,
               "t.yaml:2:3: key http.max_body_bytes", "not a size");
    expect_err("http:\n  max_header_bytes: 100\n", ERR_INVAL, "key http.max_header_bytes",
               "[1024,");
    expect_err("http:\n  debug_routes: maybe\n", ERR_INVAL, "t.yaml:2:3: key http.debug_routes",
               "true or false");
    expect_err("log:\n  level: loud\n", ERR_INVAL, "t.yaml:2:3: key log.level", "one of debug");
    expect_err("listen: localhost\n", ERR_INVAL, "t.yaml:1:1: key listen", "HOST:PORT");
    expect_err("listen: 1.2.3.4:70000\n", ERR_INVAL, "key listen", "[0, 65535]");
    expect_err("listen: \"[::1:80\"\n", ERR_INVAL, "key listen", "[IPv6]:PORT");
    expect_err("models:\n  - \"\"\n", ERR_INVAL, "key models", "non-empty");
    expect_err("models: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]\n", ERR_FORMAT,
               "t.yaml", "");
    /* the limit and one past it */
    ferry_config c;
    err_msg e;
    assert_int_equal(load(&c, "threads: 1024\n", &e), 0);
    expect_err("threads: 1025\n", ERR_INVAL, "key threads", "[0, 1024]");
    assert_int_equal(load(&c, "http:\n  max_header_bytes: 1024\n", &e), 0);
    expect_err("http:\n  max_header_bytes: 1023\n", ERR_INVAL, "key http.max_header_bytes", "");
}

static void test_file_errors(void **state)
{
    (void)state;
    ferry_config c;
    config_defaults(&c);
    err_msg e;
    assert_int_equal(config_load_file(&c, "/nonexistent/ferry.yaml", &e), ERR_IO);
    assert_non_null(strstr(e.text, "/nonexistent/ferry.yaml"));
    char path[] = "/tmp/ferry-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("http:\n  read_timeout_s: -1\n", f);
    fclose(f);
    assert_int_equal(config_load_file(&c, path, &e), ERR_INVAL);
    char want[128];
    snprintf(want, sizeof want, "%s:2:3: key http.read_timeout_s", path);
    assert_non_null(strstr(e.text, want));
    /* over the size cap */
    f = fopen(path, "w");
    for (int i = 0; i < 120000; i++)
        fputs("# padding\n", f);
    fclose(f);
    assert_int_equal(config_load_file(&c, path, &e), ERR_TOO_LARGE);
    unlink(path);
}

static void test_precedence(void **state)
{
    (void)state;
    ferry_config c;
    err_msg e;
    assert_int_equal(load(&c, "threads: 2\nhttp:\n  read_timeout_s: 5\n  max_connections: 9\n", &e),
                     0);
    char *env[] = {"FERRY_THREADS=3", "FERRY_HTTP_READ_TIMEOUT_S=6", "UNRELATED=1",
                   "FERRY_MODELS=a.gguf,b=c.gguf", NULL};
    assert_int_equal(config_apply_env(&c, env, &e), 0);
    assert_int_equal(config_apply_flag(&c, "threads", "4", &e), 0);
    assert_int_equal(c.threads, 4);          // flag > env > file
    assert_int_equal(c.read_timeout_s, 6);   // env > file
    assert_int_equal(c.max_connections, 9);  // file > default
    assert_int_equal(c.shutdown_grace_s, 30); // default
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[1], "b=c.gguf");
    /* boolean flags take no value; others need one */
    assert_true(config_flag_is_bool("debug-routes"));
    assert_int_equal(config_apply_flag(&c, "debug-routes", NULL, &e), 0);
    assert_true(c.debug_routes);
    assert_int_equal(config_apply_flag(&c, "debug-routes", "false", &e), 0);
    assert_false(c.debug_routes);
    assert_int_equal(config_apply_flag(&c, "threads", NULL, &e), ERR_INVAL);
    assert_int_equal(config_apply_flag(&c, "nope", "1", &e), ERR_NOT_FOUND);
    assert_int_equal(config_apply_flag(&c, "max-body-bytes", "2g", &e), 0);
    assert_true(c.max_body_bytes == 2ull << 30);
    assert_int_equal(config_apply_flag(&c, "listen", ":0", &e), 0);
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.port, 0);
    /* errors from the environment and flags name their origin */
    char *bad[] = {"FERRY_HTTP_MAX_CONNECTIONS=0", NULL};
    assert_int_equal(config_apply_env(&c, bad, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "environment FERRY_HTTP_MAX_CONNECTIONS"));
    assert_int_equal(config_apply_flag(&c, "log-level", "shout", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "--log-level"));
}

static void test_help(void **state)
{
    (void)state;
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    config_print_help(f);
    fclose(f);
    assert_non_null(strstr(text, "--max-body-bytes V"));
    assert_non_null(strstr(text, "FERRY_HTTP_SHUTDOWN_GRACE_S"));
    assert_non_null(strstr(text, "key log.file"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_precedence),  cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
