// FUZZ_MODULES: base
// FUZZ_SOURCES: src/api/openai.c src/model/chat.c src/model/sample.c
// FUZZ_SECONDS: 10
// FUZZ_LIBS: jansson
/*
 * The OpenAI request parser (api_gen_parse) on arbitrary bodies, for chat and
 * completions, in a small arena (so the size limits trip too), the chat
 * templates on what it accepts, and chat_detect on the body as a template. Checks: a refusal has an error code and a
 * message; an accepted chat request has 1..API_MESSAGES_MAX messages whose
 * contents are in bounds, a completion a prompt; every family's template
 * renders the messages; the response writer gives valid JSON around the
 * parsed prompt.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/openai.h"
#include "base/arena.h"
#include "model/chat.h"

static void check(api_kind k, const char *body, size_t n)
{
    arena *a = arena_new(64 * 1024);
    if (!a)
        return;
    api_gen_req r;
    api_error err;
    memset(&err, 0, sizeof err);
    int rc = api_gen_parse(k, body, n, a, &r, &err);
    if (rc != 0) {
        if (rc >= 0 || err.msg.text[0] == '\0' || !memchr(err.param, '\0', sizeof err.param))
            abort();
        arena_free(a);
        return;
    }
    if (!r.model)
        abort();
    buf out;
    buf_init(&out, 4u << 20);
    if (k == API_CHAT) {
        if (r.n_msgs == 0 || r.n_msgs > API_MESSAGES_MAX || !r.msgs)
            abort();
        size_t total = 0;
        for (size_t i = 0; i < r.n_msgs; i++) {
            if (r.msgs[i].n && !r.msgs[i].content)
                abort();
            total += r.msgs[i].n;
        }
        if (total > n)
            abort(); // contents come from the body: never longer than it
        for (int f = CHAT_CHATML; f <= CHAT_PHI3; f++) {
            buf_reset(&out);
            if (chat_apply((chat_family)f, r.msgs, r.n_msgs, true, &out) != 0)
                abort();
        }
    } else if (!r.prompt) {
        abort();
    }
    buf_reset(&out);
    api_meta m = {"cmpl-x", 1, r.model, "fp"};
    const char *text = k == API_CHAT ? r.msgs[r.n_msgs - 1].content : r.prompt;
    size_t tn = k == API_CHAT ? r.msgs[r.n_msgs - 1].n : r.prompt_len;
    api_usage u = {1, 2, 0};
    if (api_response(&out, k, &m, text ? text : "", text ? tn : 0, NULL, 0, "stop", &u) == 0) {
        json_error_t je;
        json_t *j = json_loadb(out.data, out.len, 0, &je);
        if (!j)
            abort(); // the writer escapes whatever the parser accepted
        json_decref(j);
    }
    buf_deinit(&out);
    arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    char *p = malloc(size + 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    p[size] = '\0';
    chat_family fam;
    bool known = chat_detect(p, &fam); // the body as a Jinja template, too
    if (!known && fam != CHAT_CHATML)
        abort();
    check(API_CHAT, p, size);
    check(API_COMPLETION, p, size);
    free(p);
    return 0;
}
