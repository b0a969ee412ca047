/* fuzz_chat.c - libFuzzer target for chat templates (runtime/chat.c): any
 * bytes as a template text to detect, and as a conversation (role and
 * content strings) to render in every style. Checks that detection gives a
 * known style (and a style's own name gives it back), that rendering never
 * reads or writes out of bounds, that the text's length is what strlen
 * says, that every message's content appears in order (trimmed where the
 * style trims), and that the assistant prompt ends the text when asked.
 * Input: NUL-separated strings: the template, then role, content, role,
 * content, ...; the first byte's low bit asks for the assistant prompt. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tern/chat.h"

#define MAX_MSGS 64

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* content as the style writes it: trimmed for llama3 and bitnet */
static void expected(const char *s, int trim, const char **p, size_t *n)
{
    size_t a = 0, b = strlen(s);
    if (trim) {
        while (a < b && is_space(s[a])) a++;
        while (b > a && is_space(s[b - 1])) b--;
    }
    *p = s + a;
    *n = b - a;
}

static void check_style(tern_chat_style style, const tern_chat_msg *msgs, size_t n, int add)
{
    char *out = NULL;
    size_t len = 0;
    tern_error err;
    if (tern_chat_format(style, msgs, n, add, &out, &len, &err) != TERN_OK) abort(); /* valid input */
    if (!out || strlen(out) != len) abort();
    int trim = style == TERN_CHAT_LLAMA3 || style == TERN_CHAT_BITNET;
    const char *at = out;
    for (size_t i = 0; i < n; i++) {
        const char *c;
        size_t cl;
        expected(msgs[i].content, trim, &c, &cl);
        const char *hit = cl ? memmem(at, len - (size_t)(at - out), c, cl) : at;
        if (!hit) abort(); /* every content, in order */
        at = hit + cl;
    }
    if (add) {
        static const char *const tail[TERN_CHAT_STYLE_COUNT] = {
            "assistant: ", "<|start_header_id|>assistant<|end_header_id|>\n\n", "Assistant: ",
            "<|im_start|>assistant\n"};
        size_t tl = strlen(tail[style]);
        if (len < tl || memcmp(out + len - tl, tail[style], tl) != 0) abort();
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int add = data[0] & 1;
    char *buf = malloc(size + 1); /* the strings, NUL-separated and NUL-terminated */
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    buf[size] = 0;
    const char *parts[1 + 2 * MAX_MSGS];
    size_t np = 0;
    for (char *p = buf; p <= buf + size - 1 && np < 1 + 2 * MAX_MSGS; p += strlen(p) + 1) parts[np++] = p;
    tern_chat_style style = tern_chat_detect(parts[0]);
    if ((unsigned)style >= TERN_CHAT_STYLE_COUNT) abort();
    if (tern_chat_detect(tern_chat_style_name(style)) != style) abort();
    tern_chat_msg msgs[MAX_MSGS];
    size_t n = 0;
    for (size_t i = 1; i + 1 < np; i += 2) msgs[n++] = (tern_chat_msg){parts[i], parts[i + 1]};
    for (int s = 0; s < TERN_CHAT_STYLE_COUNT; s++) check_style((tern_chat_style)s, msgs, n, add);
    /* a missing content or role is refused with a message, not a crash */
    if (n) {
        tern_chat_msg bad = {msgs[0].role, NULL};
        char *out = (char *)1;
        tern_error err;
        if (tern_chat_format(style, &bad, 1, add, &out, NULL, &err) != TERN_EINVAL || out || !err.msg[0]) abort();
    }
    free(buf);
    return 0;
}
