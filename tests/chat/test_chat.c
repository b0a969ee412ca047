/* test_chat.c - chat template detection on real template texts and the
 * exact text of each style for one conversation. */
#include <stdlib.h>

#include "common/testutil.h"
#include "tern/chat.h"

/* Meta-Llama-3-8B-Instruct's tokenizer.chat_template */
static const char llama3_tmpl[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content "
    "}}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' "
    "}}{% endif %}";

/* microsoft/bitnet-b1.58-2B-4T's tokenizer.chat_template */
static const char bitnet_tmpl[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if "
    "loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
    "add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

/* a ChatML template (Qwen2 style) */
static const char chatml_tmpl[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Vicuna: "ASSISTANT: " but no <|eot_id|>, so not BitNet */
static const char vicuna_tmpl[] =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + "
    "'\\n' }}{% else %}{{ 'ASSISTANT: ' + message['content'] + '</s>\\n' }}{% endif %}{% endfor %}";

START_TEST(test_detect)
{
    ck_assert_int_eq(tern_chat_detect(llama3_tmpl), TERN_CHAT_LLAMA3);
    ck_assert_int_eq(tern_chat_detect(bitnet_tmpl), TERN_CHAT_BITNET);
    ck_assert_int_eq(tern_chat_detect(chatml_tmpl), TERN_CHAT_CHATML);
    ck_assert_int_eq(tern_chat_detect(vicuna_tmpl), TERN_CHAT_PLAIN);
    ck_assert_int_eq(tern_chat_detect("\xff\xfe garbage {{ }} <|eot_id"), TERN_CHAT_PLAIN);
    ck_assert_int_eq(tern_chat_detect(""), TERN_CHAT_PLAIN);
    ck_assert_int_eq(tern_chat_detect(NULL), TERN_CHAT_PLAIN);
    /* names select a style directly */
    ck_assert_int_eq(tern_chat_detect("llama3"), TERN_CHAT_LLAMA3);
    ck_assert_int_eq(tern_chat_detect("bitnet"), TERN_CHAT_BITNET);
    ck_assert_int_eq(tern_chat_detect("chatml"), TERN_CHAT_CHATML);
    ck_assert_int_eq(tern_chat_detect("plain"), TERN_CHAT_PLAIN);
    ck_assert_int_eq(tern_chat_detect("Llama3"), TERN_CHAT_PLAIN);
    ck_assert_str_eq(tern_chat_style_name(TERN_CHAT_BITNET), "bitnet");
    ck_assert_str_eq(tern_chat_style_name(TERN_CHAT_STYLE_COUNT), "?");
    ck_assert_str_eq(tern_chat_style_name((tern_chat_style)-1), "?");
}
END_TEST

static const tern_chat_msg convo[3] = {
    {"system", "You are a helpful assistant."},
    {"user", " What is 2+2? \n"},
    {"assistant", "4"},
};

static void expect(tern_chat_style st, int prompt, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    tern_error err = {0};
    ck_assert_msg(tern_chat_format(st, convo, 3, prompt, &out, &len, &err) == TERN_OK, "%s", err.msg);
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(len, strlen(want));
    free(out);
}

START_TEST(test_format_llama3)
{
    expect(TERN_CHAT_LLAMA3, 1,
           "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(TERN_CHAT_LLAMA3, 0,
           "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>");
}
END_TEST

START_TEST(test_format_bitnet)
{
    expect(TERN_CHAT_BITNET, 1,
           "System: You are a helpful assistant.<|eot_id|>User: What is 2+2?<|eot_id|>Assistant: 4<|eot_id|>"
           "Assistant: ");
    expect(TERN_CHAT_BITNET, 0,
           "System: You are a helpful assistant.<|eot_id|>User: What is 2+2?<|eot_id|>Assistant: 4<|eot_id|>");
    /* the single-turn prompt of the 2B4T model card (BOS comes from the tokenizer) */
    const tern_chat_msg one = {"user", "Hey, are you conscious? Can you talk to me?"};
    char *out = NULL;
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_BITNET, &one, 1, 1, &out, NULL, NULL), TERN_OK);
    ck_assert_str_eq(out, "User: Hey, are you conscious? Can you talk to me?<|eot_id|>Assistant: ");
    free(out);
    /* |capitalize lowers the rest of the role */
    const tern_chat_msg odd = {"TOOL", "x"};
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_BITNET, &odd, 1, 0, &out, NULL, NULL), TERN_OK);
    ck_assert_str_eq(out, "Tool: x<|eot_id|>");
    free(out);
}
END_TEST

START_TEST(test_format_chatml)
{
    expect(TERN_CHAT_CHATML, 1,
           "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\n What is 2+2? \n<|im_end|>\n"
           "<|im_start|>assistant\n4<|im_end|>\n"
           "<|im_start|>assistant\n");
}
END_TEST

START_TEST(test_format_plain)
{
    expect(TERN_CHAT_PLAIN, 1,
           "system: You are a helpful assistant.\n"
           "user:  What is 2+2? \n\n"
           "assistant: 4\n"
           "assistant: ");
}
END_TEST

START_TEST(test_format_errors)
{
    char *out = (char *)1;
    size_t len = 7;
    tern_error err = {0};
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_STYLE_COUNT, convo, 3, 1, &out, &len, &err), TERN_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(err.msg, "tern_chat_format: unknown chat style 4");
    const tern_chat_msg bad[2] = {{"user", "hi"}, {"assistant", NULL}};
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_LLAMA3, bad, 2, 1, &out, &len, &err), TERN_EINVAL);
    ck_assert_str_eq(err.msg, "tern_chat_format: message 1 has a NULL content");
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_LLAMA3, NULL, 2, 1, &out, &len, &err), TERN_EINVAL);
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_LLAMA3, convo, 3, 1, NULL, &len, &err), TERN_EINVAL);
    /* no messages: the prompt alone, or an empty text */
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_CHATML, NULL, 0, 1, &out, &len, &err), TERN_OK);
    ck_assert_str_eq(out, "<|im_start|>assistant\n");
    free(out);
    ck_assert_int_eq(tern_chat_format(TERN_CHAT_CHATML, NULL, 0, 0, &out, &len, &err), TERN_OK);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(len, 0);
    free(out);
}
END_TEST

Suite *chat_suite(void)
{
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("chat");
    tcase_add_test(tc, test_detect);
    tcase_add_test(tc, test_format_llama3);
    tcase_add_test(tc, test_format_bitnet);
    tcase_add_test(tc, test_format_chatml);
    tcase_add_test(tc, test_format_plain);
    tcase_add_test(tc, test_format_errors);
    suite_add_tcase(s, tc);
    return s;
}
