/*
 * model/chat — built-in chat formats, chosen by the family a GGUF chat
 * template belongs to. See chat.h for each format.
 */
#include "model/chat.h"

#include <string.h>

static const char *const family_names[] = {
    [CHAT_CHATML] = "chatml", [CHAT_LLAMA2] = "llama2", [CHAT_LLAMA3] = "llama3",
    [CHAT_MISTRAL] = "mistral", [CHAT_ZEPHYR] = "zephyr", [CHAT_GEMMA] = "gemma",
    [CHAT_PHI3] = "phi3",
};

const char *chat_family_name(chat_family f)
{
    return (size_t)f < ARRAY_LEN(family_names) ? family_names[f] : "chatml";
}

int chat_family_parse(const char *name, chat_family *out)
{
    if (!name)
        return ERR_INVAL;
    if (strcmp(name, "qwen") == 0 || strcmp(name, "qwen2") == 0) {
        *out = CHAT_CHATML;
        return 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(family_names); i++) {
        if (strcmp(name, family_names[i]) == 0) {
            *out = (chat_family)i;
            return 0;
        }
    }
    return ERR_INVAL;
}

bool chat_detect(const char *t, chat_family *out)
{
    *out = CHAT_CHATML;
    if (!t || !*t)
        return false;
    /* Most specific markers first: several families share "[INST]" or "<|user|>". */
    if (strstr(t, "<|im_start|>"))
        *out = CHAT_CHATML;
    else if (strstr(t, "<|start_header_id|>"))
        *out = CHAT_LLAMA3;
    else if (strstr(t, "<start_of_turn>"))
        *out = CHAT_GEMMA;
    else if (strstr(t, "<|user|>") && strstr(t, "<|end|>"))
        *out = CHAT_PHI3;
    else if (strstr(t, "<|user|>"))
        *out = CHAT_ZEPHYR;
    else if (strstr(t, "[INST]") && strstr(t, "<<SYS>>"))
        *out = CHAT_LLAMA2;
    else if (strstr(t, "[INST]"))
        *out = CHAT_MISTRAL;
    else
        return false;
    return true;
}

static const char *role_name(chat_role r)
{
    switch (r) {
    case CHAT_ROLE_SYSTEM:
        return "system";
    case CHAT_ROLE_USER:
        return "user";
    case CHAT_ROLE_ASSISTANT:
        return "assistant";
    }
    return "user";
}

/* Content without leading and trailing ASCII whitespace. */
static void trimmed(const chat_msg *m, const char **p, size_t *n)
{
    const char *s = m->content;
    size_t len = m->n;
    while (len && strchr(" \t\r\n", s[0])) {
        s++;
        len--;
    }
    while (len && strchr(" \t\r\n", s[len - 1]))
        len--;
    *p = s;
    *n = len;
}

#define PUT(s)                                                                                 \
    do {                                                                                       \
        if ((rc = buf_append_str(out, (s))) != 0)                                              \
            return rc;                                                                         \
    } while (0)
#define PUTN(s, n)                                                                             \
    do {                                                                                       \
        if ((rc = buf_append(out, (s), (n))) != 0)                                             \
            return rc;                                                                         \
    } while (0)

/* Families whose turns are "<open role>\n{content}<close>\n". */
static int apply_tagged(chat_family f, const chat_msg *msgs, size_t n, bool add_gen, buf *out)
{
    int rc;
    for (size_t i = 0; i < n; i++) {
        const chat_msg *m = &msgs[i];
        const char *role = role_name(m->role);
        switch (f) {
        case CHAT_CHATML:
            PUT("<|im_start|>");
            PUT(role);
            PUT("\n");
            PUTN(m->content, m->n);
            PUT("<|im_end|>\n");
            break;
        case CHAT_ZEPHYR:
        case CHAT_PHI3:
            PUT("<|");
            PUT(role);
            PUT("|>\n");
            PUTN(m->content, m->n);
            PUT(f == CHAT_PHI3 ? "<|end|>\n" : "</s>\n");
            break;
        case CHAT_LLAMA3: {
            const char *p;
            size_t len;
            trimmed(m, &p, &len);
            PUT("<|start_header_id|>");
            PUT(role);
            PUT("<|end_header_id|>\n\n");
            PUTN(p, len);
            PUT("<|eot_id|>");
            break;
        }
        default:
            return ERR_INVAL;
        }
    }
    if (add_gen) {
        switch (f) {
        case CHAT_CHATML:
            PUT("<|im_start|>assistant\n");
            break;
        case CHAT_LLAMA3:
            PUT("<|start_header_id|>assistant<|end_header_id|>\n\n");
            break;
        default:
            PUT("<|assistant|>\n");
            break;
        }
    }
    return 0;
}

/* Gemma has no system role: system text opens the first user turn. */
static int apply_gemma(const chat_msg *msgs, size_t n, bool add_gen, buf *out)
{
    int rc;
    const chat_msg *sys = NULL;
    for (size_t i = 0; i < n; i++) {
        const chat_msg *m = &msgs[i];
        if (m->role == CHAT_ROLE_SYSTEM) {
            sys = m;
            continue;
        }
        const char *p;
        size_t len;
        trimmed(m, &p, &len);
        PUT("<start_of_turn>");
        PUT(m->role == CHAT_ROLE_ASSISTANT ? "model" : "user");
        PUT("\n");
        if (sys && m->role == CHAT_ROLE_USER) {
            const char *sp;
            size_t sl;
            trimmed(sys, &sp, &sl);
            PUTN(sp, sl);
            PUT("\n\n");
            sys = NULL;
        }
        PUTN(p, len);
        PUT("<end_of_turn>\n");
    }
    if (add_gen)
        PUT("<start_of_turn>model\n");
    return 0;
}

/* Llama 2 and Mistral: [INST] ... [/INST] turns; the system text goes inside
 * the first one (in <<SYS>> for Llama 2). */
static int apply_inst(chat_family f, const chat_msg *msgs, size_t n, buf *out)
{
    int rc;
    bool in_turn = false, first = true;
    const chat_msg *sys = NULL;
    for (size_t i = 0; i < n; i++) {
        const chat_msg *m = &msgs[i];
        const char *p;
        size_t len;
        trimmed(m, &p, &len);
        if (m->role == CHAT_ROLE_SYSTEM) {
            sys = m;
            continue;
        }
        if (m->role == CHAT_ROLE_USER) {
            if (!in_turn) {
                PUT(first ? "[INST] " : (f == CHAT_LLAMA2 ? "<s>[INST] " : "[INST] "));
                in_turn = true;
            }
            if (sys) {
                const char *sp;
                size_t sl;
                trimmed(sys, &sp, &sl);
                if (f == CHAT_LLAMA2) {
                    PUT("<<SYS>>\n");
                    PUTN(sp, sl);
                    PUT("\n<</SYS>>\n\n");
                } else {
                    PUTN(sp, sl);
                    PUT("\n\n");
                }
                sys = NULL;
            }
            PUTN(p, len);
            PUT(" [/INST]");
            in_turn = false;
            first = false;
        } else {
            PUT(" ");
            PUTN(p, len);
            PUT(f == CHAT_LLAMA2 ? " </s>" : "</s>");
        }
    }
    if (sys) { // a system message with no user turn after it
        const char *sp;
        size_t sl;
        trimmed(sys, &sp, &sl);
        PUT("[INST] ");
        PUTN(sp, sl);
        PUT(" [/INST]");
    }
    return 0;
}

int chat_apply(chat_family f, const chat_msg *msgs, size_t n, bool add_gen, buf *out)
{
    if (n == 0)
        return ERR_INVAL;
    switch (f) {
    case CHAT_GEMMA:
        return apply_gemma(msgs, n, add_gen, out);
    case CHAT_LLAMA2:
    case CHAT_MISTRAL:
        /* The generation prompt is the closing [/INST] of the last user turn. */
        return apply_inst(f, msgs, n, out);
    default:
        return apply_tagged(f, msgs, n, add_gen, out);
    }
}
