/* Unit tests for model/chat: template family detection and each built-in format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "model/chat.h"

#define MSG(r, s) {(r), (s), sizeof(s) - 1}

static const chat_msg conv[] = {
    MSG(CHAT_ROLE_SYSTEM, "Be brief."),
    MSG(CHAT_ROLE_USER, "Hi"),
    MSG(CHAT_ROLE_ASSISTANT, "Hello!"),
    MSG(CHAT_ROLE_USER, "2+2?"),
};

static void expect(chat_family f, bool add_gen, const char *want)
{
    buf b;
    buf_init(&b, 4096);
    assert_int_equal(chat_apply(f, conv, 4, add_gen, &b), 0);
    assert_string_equal(b.data, want);
    buf_deinit(&b);
}

static void test_detect(void **state)
{
    (void)state;
    chat_family f;
    /* Snippets of the templates shipped in well-known GGUF files. */
    assert_true(chat_detect("{% for message in messages %}{{'<|im_start|>' + message['role'] "
                            "+ '\\n' + message['content'] + '<|im_end|>' + '\\n'}}",
                            &f));
    assert_int_equal(f, CHAT_CHATML);
    assert_true(chat_detect("{% set content = '<|start_header_id|>' + message['role'] + "
                            "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}",
                            &f));
    assert_int_equal(f, CHAT_LLAMA3);
    assert_true(chat_detect("{{ bos_token + '[INST] ' + '<<SYS>>\\n' + system_message + "
                            "'\\n<</SYS>>\\n\\n' }}",
                            &f));
    assert_int_equal(f, CHAT_LLAMA2);
    assert_true(chat_detect("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + "
                            "message['content'] + ' [/INST]' }}",
                            &f));
    assert_int_equal(f, CHAT_MISTRAL);
    assert_true(chat_detect("{{ '<|user|>\\n' + message['content'] + eos_token }}", &f));
    assert_int_equal(f, CHAT_ZEPHYR);
    assert_true(chat_detect("{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n'}}", &f));
    assert_int_equal(f, CHAT_PHI3);
    assert_true(chat_detect("{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                            "'<end_of_turn>\\n' }}",
                            &f));
    assert_int_equal(f, CHAT_GEMMA);
    assert_false(chat_detect("{{ message.content }}### Response:", &f));
    assert_int_equal(f, CHAT_CHATML);
    assert_false(chat_detect(NULL, &f));
    assert_int_equal(chat_family_parse("qwen", &f), 0);
    assert_int_equal(f, CHAT_CHATML);
    assert_int_equal(chat_family_parse("phi3", &f), 0);
    assert_int_equal(f, CHAT_PHI3);
    assert_int_equal(chat_family_parse("jinja", &f), ERR_INVAL);
    assert_string_equal(chat_family_name(CHAT_GEMMA), "gemma");
}

static void test_formats(void **state)
{
    (void)state;
    expect(CHAT_CHATML, true,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(CHAT_CHATML, false,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n");
    expect(CHAT_LLAMA3, true,
           "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(CHAT_LLAMA2, true,
           "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
    expect(CHAT_MISTRAL, true, "[INST] Be brief.\n\nHi [/INST] Hello!</s>[INST] 2+2? [/INST]");
    expect(CHAT_ZEPHYR, true,
           "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n"
           "<|user|>\n2+2?</s>\n<|assistant|>\n");
    expect(CHAT_PHI3, true,
           "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
           "<|user|>\n2+2?<|end|>\n<|assistant|>\n");
    expect(CHAT_GEMMA, true,
           "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!"
           "<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
}

static void test_limits(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 16);
    assert_int_equal(chat_apply(CHAT_CHATML, conv, 0, true, &b), ERR_INVAL);
    assert_int_equal(chat_apply(CHAT_CHATML, conv, 4, true, &b), ERR_TOO_LARGE);
    buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
