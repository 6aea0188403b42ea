// FUZZ_MODULES: base
// FUZZ_SECONDS: 10
// FUZZ_LIBS: libcurl
/*
 * The SSE parser of http/httpc (sse_feed / sse_line, static in httpc.c, so
 * the file is included here; no network and no curl handle are used) on
 * arbitrary response bytes. Input: byte 0 picks the line/event cap (small
 * caps reach the ERR_TOO_LARGE paths), byte 1 seeds the chunking, the rest
 * is the response body. The body is fed twice, once whole and once cut into
 * random chunks (CR LF may straddle two chunks), and both feeds must give
 * the same events, the same stop and the same failure kind. Every event's
 * data holds no CR, and an event whose data is "STOP" is refused by the
 * consumer, which must end the feed with HTTPC_PARSE.
 */
#include "http/httpc.c"

#include <stdint.h>

static void check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

typedef struct sink {
    buf log; // for each event: its length (size_t) then its bytes
    size_t n;
} sink;

static int on_ev(void *ctx, const char *data, size_t len, uint64_t t_ns)
{
    (void)t_ns;
    sink *s = ctx;
    check(memchr(data, '\r', len) == NULL);
    check(data[len] == 0); // the event text is NUL-terminated for the consumer
    s->n++;
    check(buf_append(&s->log, &len, sizeof len) == 0);
    check(buf_append(&s->log, data, len) == 0);
    return len == 4 && memcmp(data, "STOP", 4) == 0;
}

typedef struct outcome {
    int rc;
    httpc_kind kind;
    size_t n_events;
} outcome;

static outcome feed(const uint8_t *d, size_t n, size_t cap, uint64_t seed, bool chunked, sink *s)
{
    hreq *q = calloc(1, sizeof *q);
    check(q != NULL);
    buf_init(&q->line, cap);
    buf_init(&q->ev, cap);
    q->on_event = on_ev;
    q->ctx = s;
    q->fail_kind = HTTPC_OK;
    int rc = 0;
    size_t i = 0;
    while (i < n && rc == 0) {
        size_t k = n - i;
        if (chunked) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t c = (size_t)(seed >> 59) + 1; // 1..32 bytes
            if (c < k)
                k = c;
        }
        rc = sse_feed(q, (const char *)d + i, k, 1);
        i += k;
    }
    outcome o = {rc != 0, rc ? q->fail_kind : HTTPC_OK, q->n_events};
    check(o.n_events == s->n);
    check(!o.rc || q->fail_msg[0] != 0);
    req_free(q);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t caps[4] = {8, 64, 1024, (size_t)1 << 20};
    size_t cap = caps[data[0] % 4];
    uint64_t seed = data[1];
    data += 2;
    size -= 2;
    sink a = {0}, b = {0};
    buf_init(&a.log, (size_t)64 << 20);
    buf_init(&b.log, (size_t)64 << 20);
    outcome oa = feed(data, size, cap, seed, false, &a);
    outcome ob = feed(data, size, cap, seed, true, &b);
    check(oa.rc == ob.rc && oa.kind == ob.kind && oa.n_events == ob.n_events);
    check(a.log.len == b.log.len && (a.log.len == 0 || memcmp(a.log.data, b.log.data, a.log.len) == 0));
    if (oa.rc)
        check(oa.kind == HTTPC_PARSE || oa.kind == HTTPC_TOO_LARGE);
    buf_deinit(&a.log);
    buf_deinit(&b.log);
    return 0;
}
