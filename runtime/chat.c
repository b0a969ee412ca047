/* chat.c - chat template detection and rendering. Owns the style table:
 * each style is a turn pattern (prefix, role, separator, content, suffix)
 * plus the assistant prompt, so rendering is one loop for every style. */
#include <stdlib.h>
#include <string.h>

#include "tern/chat.h"
#include "tern/checked.h"

typedef struct chat_style {
    const char *name;
    const char *pre;  /* before the role */
    const char *sep;  /* between role and content */
    const char *post; /* after the content */
    const char *prompt;
    int capitalize; /* role as Jinja's |capitalize writes it */
    int trim;       /* content as Jinja's |trim writes it */
} chat_style;

static const chat_style styles[TERN_CHAT_STYLE_COUNT] = {
    [TERN_CHAT_PLAIN] = {"plain", "", ": ", "\n", "assistant: ", 0, 0},
    [TERN_CHAT_LLAMA3] = {"llama3", "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
                          "<|start_header_id|>assistant<|end_header_id|>\n\n", 0, 1},
    [TERN_CHAT_BITNET] = {"bitnet", "", ": ", "<|eot_id|>", "Assistant: ", 1, 1},
    [TERN_CHAT_CHATML] = {"chatml", "<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n", 0, 0},
};

const char *tern_chat_style_name(tern_chat_style style)
{
    if ((unsigned)style >= TERN_CHAT_STYLE_COUNT) return "?";
    return styles[style].name;
}

tern_chat_style tern_chat_detect(const char *t)
{
    if (!t) return TERN_CHAT_PLAIN;
    for (int i = 0; i < TERN_CHAT_STYLE_COUNT; i++)
        if (strcmp(t, styles[i].name) == 0) return (tern_chat_style)i;
    /* llama.cpp's order: ChatML before Llama 3 headers */
    if (strstr(t, "<|im_start|>")) return TERN_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return TERN_CHAT_LLAMA3;
    if (strstr(t, "<|eot_id|>") && strstr(t, "Assistant: ")) return TERN_CHAT_BITNET;
    return TERN_CHAT_PLAIN;
}

/* A growing text; on overflow or a failed allocation it stops growing and
 * remembers that (checked once at the end). */
typedef struct text {
    char *p;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *s, size_t n)
{
    size_t need;
    if (t->failed || tern_add_overflows(t->len, n, &need) || tern_add_overflows(need, 1, &need)) {
        t->failed = 1;
        return;
    }
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            t->failed = 1;
            return;
        }
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Jinja's |trim strips Unicode white space; the ASCII set covers what chat
 * messages carry. */
static void put_content(text *t, const char *s, int trim)
{
    size_t a = 0, b = strlen(s);
    if (trim) {
        while (a < b && is_space(s[a])) a++;
        while (b > a && is_space(s[b - 1])) b--;
    }
    put(t, s + a, b - a);
}

/* Jinja's |capitalize: first letter upper case, the rest lower (ASCII). */
static void put_role(text *t, const char *role, int capitalize)
{
    if (!capitalize) {
        puts_(t, role);
        return;
    }
    for (size_t i = 0; role[i]; i++) {
        char c = role[i];
        if (i == 0 && c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        else if (i > 0 && c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        put(t, &c, 1);
    }
}

tern_status tern_chat_format(tern_chat_style style, const tern_chat_msg *msgs, size_t n,
                             int add_assistant_prompt, char **out, size_t *out_len, tern_error *err)
{
    if (!out) return tern_error_set(err, TERN_EINVAL, "tern_chat_format: out is NULL");
    *out = NULL;
    if (out_len) *out_len = 0;
    if ((unsigned)style >= TERN_CHAT_STYLE_COUNT)
        return tern_error_set(err, TERN_EINVAL, "tern_chat_format: unknown chat style %d", (int)style);
    if (n && !msgs) return tern_error_set(err, TERN_EINVAL, "tern_chat_format: msgs is NULL with n = %zu", n);
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return tern_error_set(err, TERN_EINVAL, "tern_chat_format: message %zu has a NULL %s", i,
                                  msgs[i].role ? "content" : "role");
    const chat_style *st = &styles[style];
    text t = {0};
    put(&t, "", 0); /* an empty conversation is still a text */
    for (size_t i = 0; i < n; i++) {
        puts_(&t, st->pre);
        put_role(&t, msgs[i].role, st->capitalize);
        puts_(&t, st->sep);
        put_content(&t, msgs[i].content, st->trim);
        puts_(&t, st->post);
    }
    if (add_assistant_prompt) puts_(&t, st->prompt);
    if (t.failed) {
        free(t.p);
        return tern_error_set(err, TERN_ENOMEM, "tern_chat_format: out of memory for %zu messages", n);
    }
    *out = t.p;
    if (out_len) *out_len = t.len;
    return TERN_OK;
}
