/* tern/chat.h - chat templates: a conversation as one prompt text.
 *
 * tern does not run Jinja. Like llama.cpp's llm_chat_detect_template, it
 * recognises the few formats its models use from substrings of the GGUF's
 * tokenizer.chat_template and renders them in C:
 *
 *   TERN_CHAT_LLAMA3  <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
 *                     prompt: <|start_header_id|>assistant<|end_header_id|>\n\n
 *                     (content trimmed, as the Llama 3 template and llama.cpp do)
 *   TERN_CHAT_BITNET  Role: CONTENT<|eot_id|>   (role capitalised: System, User, Assistant)
 *                     prompt: "Assistant: "
 *                     (content trimmed; what BitNet b1.58 2B4T's own template renders)
 *   TERN_CHAT_CHATML  <|im_start|>ROLE\nCONTENT<|im_end|>\n
 *                     prompt: <|im_start|>assistant\n
 *   TERN_CHAT_PLAIN   ROLE: CONTENT\n    prompt: "assistant: "   (the default)
 *
 * No BOS is written: the tokenizer adds it. The text holds special tokens as
 * text, so tokenize it with special-token parsing on.
 *
 * On BitNet: the 2B4T template (Hugging Face tokenizer_config.json) renders
 * each turn as role|capitalize + ": " + content|trim + "<|eot_id|>", which is
 * what tern produces. llama.cpp-family "bitnet" code (ik_llama.cpp's
 * LLM_CHAT_TEMPLATE_BITNET, selectable by name only) differs: it writes no
 * <|eot_id|> after system and assistant turns, puts "<|eot_id|>Assistant: "
 * after every user turn whatever add_assistant_prompt says, and does not
 * trim. For a single user message with no surrounding white space both
 * give the same text.
 *
 * Multi-turn chat that keeps the KV cache: format the whole history each
 * turn, tokenize it, and evaluate only the tokens after the longest common
 * prefix with what the session already holds (graphs/chat.lua does this).
 * Trimming and retokenization make the text-level delta unreliable, so tern
 * offers no delta formatter on purpose. */
#ifndef TERN_CHAT_H
#define TERN_CHAT_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_chat_msg {
    const char *role;    /* "system", "user", "assistant" (others are written as given) */
    const char *content; /* UTF-8, NUL-terminated */
} tern_chat_msg;

typedef enum tern_chat_style {
    TERN_CHAT_PLAIN = 0, /* the default when nothing is recognised */
    TERN_CHAT_LLAMA3,
    TERN_CHAT_BITNET,
    TERN_CHAT_CHATML,
    TERN_CHAT_STYLE_COUNT
} tern_chat_style;

/* The style of a Jinja template text (NULL or empty: PLAIN). A style's name
 * ("llama3", "bitnet", "chatml", "plain") selects it too, so a command-line
 * override can go through the same call. Checked in this order: a name,
 * "<|im_start|>" (ChatML), "<|start_header_id|>" (Llama 3), "<|eot_id|>"
 * with "Assistant: " (BitNet 2B4T), else PLAIN. */
tern_chat_style tern_chat_detect(const char *template_text);

/* "llama3", "bitnet", "chatml", "plain"; "?" for an unknown value. */
const char *tern_chat_style_name(tern_chat_style style);

/* Renders msgs[0..n) in style, then the assistant prompt when
 * add_assistant_prompt is nonzero. *out receives a malloc'ed NUL-terminated
 * text (the caller frees it), *out_len its length (out_len may be NULL).
 * TERN_EINVAL on an unknown style or a NULL role or content (naming the
 * message), TERN_ENOMEM when the text cannot be had. */
tern_status tern_chat_format(tern_chat_style style, const tern_chat_msg *msgs, size_t n,
                             int add_assistant_prompt, char **out, size_t *out_len, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif
