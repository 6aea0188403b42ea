/* Unit tests for the serving keys of cli/config: kv_cache_mb, kv_cache_type,
 * max_batch_tokens, max_seqs, max_waiting and chat_template, each from the
 * file, the environment and a flag, with their validation errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/config.h"

static int load(ferry_config *c, const char *yaml, err_msg *e)
{
    config_defaults(c);
    return config_load_yaml(c, "t.yaml", yaml, strlen(yaml), e);
}

static void test_serving_defaults(void **state)
{
    (void)state;
    ferry_config c;
    config_defaults(&c);
    assert_int_equal(c.kv_cache_mb, 256);
    assert_string_equal(c.kv_cache_type, "f16");
    assert_int_equal(c.max_batch_tokens, 512);
    assert_int_equal(c.max_seqs, 64);
    assert_int_equal(c.max_waiting, 256);
    assert_string_equal(c.chat_template, "");
}

static void test_serving_file(void **state)
{
    (void)state;
    ferry_config c;
    err_msg e;
    const char *y = "kv_cache_mb: 64\n"
                    "kv_cache_type: q8_0\n"
                    "max_batch_tokens: 256\n"
                    "max_seqs: 16\n"
                    "max_waiting: 8\n"
                    "chat_template: tiny=llama3,big=gemma\n";
    assert_int_equal(load(&c, y, &e), 0);
    assert_int_equal(c.kv_cache_mb, 64);
    assert_string_equal(c.kv_cache_type, "q8_0");
    assert_int_equal(c.max_batch_tokens, 256);
    assert_int_equal(c.max_seqs, 16);
    assert_int_equal(c.max_waiting, 8);
    assert_string_equal(c.chat_template, "tiny=llama3,big=gemma");
}

static void test_serving_env_and_flags(void **state)
{
    (void)state;
    ferry_config c;
    err_msg e;
    assert_int_equal(load(&c, "kv_cache_mb: 64\nmax_seqs: 16\n", &e), 0);
    char *env[] = {"FERRY_KV_CACHE_MB=32", "FERRY_KV_CACHE_TYPE=q8_0",
                   "FERRY_MAX_BATCH_TOKENS=128", "FERRY_MAX_WAITING=3",
                   "FERRY_CHAT_TEMPLATE=chatml", NULL};
    assert_int_equal(config_apply_env(&c, env, &e), 0);
    assert_int_equal(c.kv_cache_mb, 32);
    assert_string_equal(c.kv_cache_type, "q8_0");
    assert_int_equal(c.max_batch_tokens, 128);
    assert_int_equal(c.max_seqs, 16); // from the file
    assert_int_equal(c.max_waiting, 3);
    assert_string_equal(c.chat_template, "chatml");
    assert_int_equal(config_apply_flag(&c, "kv-cache-mb", "8", &e), 0);
    assert_int_equal(config_apply_flag(&c, "kv-cache-type", "f16", &e), 0);
    assert_int_equal(config_apply_flag(&c, "max-batch-tokens", "64", &e), 0);
    assert_int_equal(config_apply_flag(&c, "max-seqs", "4", &e), 0);
    assert_int_equal(config_apply_flag(&c, "max-waiting", "2", &e), 0);
    assert_int_equal(config_apply_flag(&c, "chat-template", "a=zephyr", &e), 0);
    assert_int_equal(c.kv_cache_mb, 8);
    assert_string_equal(c.kv_cache_type, "f16");
    assert_int_equal(c.max_batch_tokens, 64);
    assert_int_equal(c.max_seqs, 4);
    assert_int_equal(c.max_waiting, 2);
    assert_string_equal(c.chat_template, "a=zephyr");
}

static void test_serving_errors(void **state)
{
    (void)state;
    ferry_config c;
    err_msg e;
    assert_int_equal(load(&c, "kv_cache_type: q4\n", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "t.yaml:1:1: key kv_cache_type"));
    assert_non_null(strstr(e.text, "f16 or q8_0"));
    assert_int_equal(load(&c, "listen: :1\nkv_cache_mb: 0\n", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "t.yaml:2:1: key kv_cache_mb"));
    assert_int_equal(load(&c, "max_batch_tokens: 70000\n", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "max_batch_tokens"));
    assert_int_equal(load(&c, "max_seqs: 0\n", &e), ERR_INVAL);
    assert_int_equal(load(&c, "max_waiting: -1\n", &e), ERR_INVAL);
    assert_int_equal(load(&c, "chat_template: jinja\n", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "key chat_template"));
    assert_non_null(strstr(e.text, "\"jinja\""));
    assert_int_equal(load(&c, "chat_template: a=llama3,b=nope\n", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "b=nope") || strstr(e.text, "\"nope\""));
    assert_int_equal(load(&c, "chat_template: chatml,a=llama3\n", &e), ERR_INVAL);
    assert_int_equal(load(&c, "chat_template: =llama3\n", &e), ERR_INVAL);
    assert_int_equal(config_apply_flag(&c, "kv-cache-type", "bf16", &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "--kv-cache-type"));
    char *env[] = {"FERRY_MAX_SEQS=many", NULL};
    assert_int_equal(config_apply_env(&c, env, &e), ERR_INVAL);
    assert_non_null(strstr(e.text, "FERRY_MAX_SEQS"));
}

static void test_chat_template_for(void **state)
{
    (void)state;
    char out[32], why[256];
    assert_int_equal(config_chat_template_for("a=llama3,b=gemma", "b", out, sizeof out, why,
                                              sizeof why), 0);
    assert_string_equal(out, "gemma");
    assert_int_equal(config_chat_template_for("a=llama3,b=gemma", "c", out, sizeof out, why,
                                              sizeof why), 0);
    assert_string_equal(out, "");
    assert_int_equal(config_chat_template_for("zephyr", "c", out, sizeof out, why, sizeof why),
                     0);
    assert_string_equal(out, "zephyr");
    assert_int_equal(config_chat_template_for("", "c", out, sizeof out, why, sizeof why), 0);
    assert_string_equal(out, "");
    assert_int_equal(config_chat_template_for("a=", "a", out, sizeof out, why, sizeof why),
                     ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serving_defaults),
        cmocka_unit_test(test_serving_file),
        cmocka_unit_test(test_serving_env_and_flags),
        cmocka_unit_test(test_serving_errors),
        cmocka_unit_test(test_chat_template_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
