// FUZZ_MODULES: base guard
// FUZZ_SECONDS: 15
// FUZZ_LIBS: libpcre2-8 libutf8proc libsodium jansson yaml-0.1
/*
 * Every guard detector on arbitrary bytes: the PII/secret candidate pass and
 * validators, custom PCRE2 patterns, normalization + blocklist automaton,
 * injection rules with encoded-payload decoding, redaction + restore, and the
 * stream filter fed the same bytes in pieces whose sizes come from the input.
 * Checks: spans lie inside the text and are ordered; the stream either blocks
 * or emits; restore of a redaction round-trips to the original.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "guard/guard.h"

static guard_engine *g_eng;

static const char POLICY[] =
    "{\"id\":\"fz\",\"pii\":\"redact\",\"secrets\":\"redact\","
    "\"actions\":{\"ipv4\":\"redact\",\"ipv6\":\"redact\",\"injection\":\"flag\"},"
    "\"stream\":{\"window\":24},"
    "\"custom\":[{\"name\":\"order\",\"pattern\":\"ORD-\\\\d{4,}\",\"action\":\"redact\"}],"
    "\"blocklist\":{\"terms\":[\"bomb\",\"炸弹\",\"project falcon\",\"a\",\"ab\",\"abc\"]}}";

static int judge(void *ctx, const char *t, size_t n, double rule, double *out)
{
    (void)ctx;
    (void)t;
    *out = n % 2 ? rule : 1 - rule;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_eng) {
        guard_config cfg = guard_config_default();
        cfg.judge = judge;
        if (guard_engine_from_json(POLICY, sizeof POLICY - 1, NULL, &cfg, &g_eng, NULL) != 0)
            abort();
    }
    const char *t = (const char *)data;
    const guard_policy *p = guard_engine_select(g_eng, NULL, NULL);
    guard_req *r = guard_req_new(g_eng, p, "fz", NULL, NULL);
    if (!r)
        return 0;
    guard_result res;
    if (guard_scan(p, guard_req_scratch(r), t, size, GUARD_SCAN_ALL, &res, NULL) == 0) {
        for (size_t i = 0; i < res.n_entities; i++) {
            const guard_span *s = &res.entities[i];
            if (s->start >= s->end || s->end > size)
                abort();
            if (i && s->start < res.entities[i - 1].end)
                abort(); // overlaps are resolved
        }
        for (size_t i = 0; i < res.n_terms; i++)
            if (res.terms[i].start >= res.terms[i].end || res.terms[i].end > size)
                abort();
        if (!(res.inj_score >= 0 && res.inj_score <= 1))
            abort();
        if (guard_cp_offset(t, size, size) > size)
            abort();
    }
    buf red, back;
    buf_init(&red, 1 << 22);
    buf_init(&back, 1 << 22);
    if (guard_req_check_input(r, t, size, &red, NULL, NULL) == 0) {
        // Placeholders restore to the input unless the input itself held
        // placeholder-like text or blocklist terms (those are not restorable).
        if (guard_req_restore(r, red.data ? red.data : "", red.len, &back) == 0 &&
            memchr(data, '[', size) == NULL && res.n_terms == 0 &&
            (back.len != size || (size && memcmp(back.data, data, size) != 0)))
            abort();
    }
    guard_stream *st = guard_stream_new(r);
    if (st) {
        buf out;
        buf_init(&out, 1 << 22);
        size_t pos = 0, k = 0;
        int rc = 0;
        while (pos < size && rc == 0) {
            size_t n = 1 + (data[k++ % size] % 17);
            if (n > size - pos)
                n = size - pos;
            rc = guard_stream_feed(st, t + pos, n, &out);
            pos += n;
        }
        if (rc == 0)
            (void)guard_stream_finish(st, &out);
        if (guard_stream_emitted(st) > size)
            abort();
        buf_deinit(&out);
        guard_stream_free(st);
    }
    buf n;
    buf_init(&n, 1 << 22);
    (void)guard_normalize(t, size, &n);
    buf_deinit(&n);
    buf_deinit(&red);
    buf_deinit(&back);
    guard_req_free(r);
    return 0;
}
