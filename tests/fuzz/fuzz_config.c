// FUZZ_MODULES: base
// FUZZ_SOURCES: src/cli/config.c src/model/chat.c
// FUZZ_SECONDS: 10
// FUZZ_LIBS: libcyaml yaml-0.1
/*
 * The `ferry serve` configuration file reader (YAML through libcyaml, with
 * line/column positions for errors) on arbitrary bytes, then the per-model
 * chat_template spec resolver on a line of it. Checks: a refusal always says
 * why; an accepted file leaves every string NUL-terminated in its field, a
 * port in range and counts within their caps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/config.h"

#define TERMINATED(f) (memchr((f), '\0', sizeof(f)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *p = malloc(size + 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    p[size] = '\0';
    static ferry_config c;
    config_defaults(&c);
    err_msg e;
    memset(&e, 0, sizeof e);
    int rc = config_load_yaml(&c, "fuzz.yaml", p, size, &e);
    if (rc != 0) {
        if (rc >= 0 || e.text[0] == '\0')
            abort();
    } else {
        if (!TERMINATED(c.listen) || !TERMINATED(c.host) || !TERMINATED(c.data) ||
            !TERMINATED(c.chat_template) || !TERMINATED(c.kv_cache_type) ||
            !TERMINATED(c.log_level) || !TERMINATED(c.rag) || !TERMINATED(c.guard_policy))
            abort();
        if (c.n_models < 0 || c.n_models > CONFIG_MODELS_MAX)
            abort();
        for (int i = 0; i < c.n_models; i++)
            if (!TERMINATED(c.models[i]))
                abort();
    }
    // the first line as a chat_template spec ("FAMILY" or "NAME=FAMILY,...")
    char spec[256];
    size_t n = strcspn(p, "\n");
    if (n >= sizeof spec)
        n = sizeof spec - 1;
    memcpy(spec, p, n);
    spec[n] = '\0';
    char out[64], why[256];
    why[0] = '\0';
    rc = config_chat_template_for(spec, "demo", out, sizeof out, why, sizeof why);
    if (rc < 0 && why[0] == '\0')
        abort();
    if (rc == 0 && !TERMINATED(out))
        abort();
    free(p);
    return 0;
}
