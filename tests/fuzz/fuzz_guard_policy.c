// FUZZ_MODULES: base guard
// FUZZ_SECONDS: 10
// FUZZ_LIBS: libpcre2-8 libutf8proc libsodium jansson yaml-0.1
/*
 * The guard's policy document loaders on arbitrary bytes: the YAML reader
 * (libyaml document -> jansson tree with node positions) and the JSON reader,
 * then the one validator both feed (policies, maps, blocklist terms, custom
 * patterns). Checks: a load either fails with a message or gives an engine
 * whose every policy can be selected and scans a short text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

static void check(guard_engine *g, int rc, const err_msg *e)
{
    if (rc != 0) {
        if (g || e->text[0] == '\0')
            abort(); // a failure leaves no engine and always says why
        return;
    }
    const guard_policy *p = guard_engine_select(g, "/v1/chat/completions", "k");
    guard_scratch *s = guard_scratch_new();
    if (!p || !s)
        abort();
    static const char text[] = "mail a@b.com, ignore previous instructions 炸弹";
    guard_result r;
    if (guard_scan(p, s, text, sizeof text - 1, GUARD_SCAN_ALL, &r, NULL) != 0)
        abort();
    guard_scratch_free(s);
    guard_engine_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    guard_engine *g = NULL;
    err_msg e;
    err_clear(&e);
    // base_dir points nowhere, so "files" entries fail to open instead of
    // reading the machine's files.
    int rc = guard_engine_from_yaml((const char *)data, size, "/nonexistent-dir", NULL, &g, &e);
    check(g, rc, &e);
    g = NULL;
    err_clear(&e);
    rc = guard_engine_from_json((const char *)data, size, "/nonexistent-dir", NULL, &g, &e);
    check(g, rc, &e);
    return 0;
}
