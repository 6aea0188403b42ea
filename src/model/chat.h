/*
 * model/chat — chat templates: a list of messages -> the prompt text a chat
 * model was trained on.
 *
 * GGUF files carry `tokenizer.chat_template`, a Jinja program. We do not run
 * Jinja: the template is recognised by family from marker strings it contains,
 * and built-in code writes that family's format. An unrecognised template
 * falls back to chatml (chat_detect reports it so the caller can warn).
 *
 * Formats written (<gen> = the generation prompt, added at the end):
 *   chatml   <|im_start|>{role}\n{content}<|im_end|>\n ...   <gen> <|im_start|>assistant\n
 *   llama2   [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 *   llama3   <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ...
 *            <gen> <|start_header_id|>assistant<|end_header_id|>\n\n   (content trimmed)
 *   mistral  [INST] {system}\n\n{user} [/INST] {assistant}</s>[INST] {user} [/INST]
 *   zephyr   <|{role}|>\n{content}</s>\n ...                   <gen> <|assistant|>\n
 *   gemma    <start_of_turn>{user|model}\n{content}<end_of_turn>\n ... (system text is
 *            prepended to the first user turn)     <gen> <start_of_turn>model\n
 *   phi3     <|{role}|>\n{content}<|end|>\n ...                <gen> <|assistant|>\n
 * The BOS token is not written: the tokenizer adds it when the vocab says so.
 * Special markers are plain text here; tokenize the result with special-token
 * parsing on.
 *
 * Pure functions, any thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"
#include "base/buf.h"

typedef enum chat_family {
    CHAT_CHATML = 0,
    CHAT_LLAMA2,
    CHAT_LLAMA3,
    CHAT_MISTRAL,
    CHAT_ZEPHYR,
    CHAT_GEMMA,
    CHAT_PHI3,
} chat_family;

typedef enum chat_role {
    CHAT_ROLE_SYSTEM = 0,
    CHAT_ROLE_USER,
    CHAT_ROLE_ASSISTANT,
} chat_role;

typedef struct chat_msg {
    chat_role role;
    const char *content; // (n) bytes, not necessarily NUL-terminated
    size_t n;
} chat_msg;

/*
 * Recognises the family of a Jinja chat template (NULL or empty: none).
 * Returns true and *out when recognised; false with *out = CHAT_CHATML
 * otherwise (the fallback; the caller logs a warning).
 */
bool chat_detect(const char *tmpl, chat_family *out);

/* Family by name: "chatml" (also "qwen"), "llama2", "llama3", "mistral",
 * "zephyr", "gemma", "phi3". Returns 0 or ERR_INVAL. */
int chat_family_parse(const char *name, chat_family *out) MUST_USE;
const char *chat_family_name(chat_family f);

/*
 * Appends the prompt for msgs[0..n) in family f to out, followed by the
 * generation prompt when add_gen. Returns 0, ERR_INVAL (no messages), or
 * ERR_TOO_LARGE / ERR_NOMEM from out's ceiling.
 */
int chat_apply(chat_family f, const chat_msg *msgs, size_t n, bool add_gen, buf *out) MUST_USE;
