/*
 * guard/stream — the output guard on a token stream.
 *
 * State: `pend`, the model text not yet emitted, and `ctx`, the last CTX_MAX
 * emitted bytes (so word boundaries before pend are seen). Each feed scans
 * ctx + pend (entities and blocklist; no injection on output) and emits all
 * but the last `window` bytes of pend, moving the cut back so it never falls
 * inside a finding, inside an ASCII token that is still growing at the end of
 * the text (a key, a JWT, a placeholder), or inside a UTF-8 sequence.
 *
 * Why the window bounds a leak: a match of at most `window` bytes that
 * completes in this feed started after the previous cut (the previous cut left
 * at least `window` bytes held), so none of it was emitted; when it is a block,
 * the stream ends here and what was sent is exactly the text before it.
 * Longer secrets are held as growing tokens (ASCII runs up to TOKEN_MAX) or,
 * for PEM blocks, as a finding that extends to the end of the text until its
 * END line arrives; the held text is capped by the policy's stream.max_held.
 */
#include <stdlib.h>
#include <string.h>

#include "guard/guard_int.h"

#define CTX_MAX 64
#define TOKEN_MAX 4096

struct guard_stream {
    guard_req *r;
    buf pend;
    buf scan;
    char ctx[CTX_MAX];
    size_t ctx_n;
    size_t emitted;
    int state; // 0 open, ERR_POLICY blocked, ERR_TOO_LARGE overflowed, 1 finished
};

guard_stream *guard_stream_new(guard_req *r)
{
    guard_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->r = r;
    const guard_policy *p = guard_req_policy_(r);
    buf_init(&s->pend, p->stream_max);
    buf_init(&s->scan, p->stream_max + CTX_MAX);
    return s;
}

void guard_stream_free(guard_stream *s)
{
    if (!s)
        return;
    buf_deinit(&s->pend);
    buf_deinit(&s->scan);
    free(s);
}

size_t guard_stream_emitted(const guard_stream *s)
{
    return s->emitted;
}

static bool tok_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7F;
}

/* Moves cut back out of findings that straddle it; returns the new cut. */
static size_t avoid_findings(const guard_result *R, size_t base, size_t cut)
{
    bool moved = true;
    while (moved) {
        moved = false;
        for (size_t i = 0; i < R->n_entities + R->n_terms; i++) {
            const guard_span *sp =
                i < R->n_entities ? &R->entities[i] : &R->terms[i - R->n_entities];
            size_t to = sp->start > base ? sp->start : base;
            if (sp->start < cut && sp->end > cut && to < cut) {
                cut = to; // strictly decreasing: the loop ends
                moved = true;
            }
        }
    }
    return cut;
}

static int process(guard_stream *s, bool final, buf *out)
{
    guard_req *r = s->r;
    const guard_policy *p = guard_req_policy_(r);
    buf_reset(&s->scan);
    int rc = buf_append(&s->scan, s->ctx, s->ctx_n);
    if (rc == 0 && s->pend.len)
        rc = buf_append(&s->scan, s->pend.data, s->pend.len);
    if (rc)
        return s->state = rc;
    const char *t = s->scan.data ? s->scan.data : "";
    size_t n = s->scan.len, base = s->ctx_n;
    guard_result R;
    rc = guard_scan(p, guard_req_scratch(r), t, n, GUARD_SCAN_ENTITIES | GUARD_SCAN_BLOCKLIST, &R,
                    NULL);
    if (rc)
        return s->state = rc;
    // A block anywhere in the held text ends the stream.
    bool block = false;
    for (size_t i = 0; i < R.n_entities; i++)
        if (R.entities[i].end > base &&
            guard_policy_action(p, R.entities[i].type, R.entities[i].sub) == GUARD_BLOCK)
            block = true;
    for (size_t i = 0; i < R.n_terms; i++)
        if (R.terms[i].end > base && p->act_blocklist == GUARD_BLOCK)
            block = true;
    if (block) {
        guard_req_audit_(r, t, n, &R, base, n);
        return s->state = ERR_POLICY;
    }
    size_t cut = n;
    if (!final) {
        cut = n > base + p->stream_window ? n - p->stream_window : base;
        cut = avoid_findings(&R, base, cut);
        // An ASCII token still growing at the end of the text is held whole.
        if (cut > base && cut < n) {
            size_t j = cut;
            while (j < n && tok_byte((unsigned char)t[j]))
                j++;
            if (j == n) {
                size_t k = cut;
                while (k > base && tok_byte((unsigned char)t[k - 1]) && cut - k < TOKEN_MAX)
                    k--;
                if (k == base || !tok_byte((unsigned char)t[k - 1]))
                    cut = k;
            }
        }
        while (cut > base && cut < n && ((unsigned char)t[cut] & 0xC0) == 0x80)
            cut--;
    }
    if (cut > base) {
        size_t mark = out->len;
        rc = guard_req_emit_(r, t, &R, base, cut, out);
        if (rc) {
            out->len = mark;
            return s->state = rc;
        }
        guard_req_audit_(r, t, n, &R, base, cut);
        s->emitted += cut - base;
        size_t keep = cut < CTX_MAX ? cut : CTX_MAX;
        memcpy(s->ctx, t + cut - keep, keep);
        s->ctx_n = keep;
        size_t rest = n - cut;
        memmove(s->pend.data, t + cut, rest);
        s->pend.len = rest;
        if (s->pend.data)
            s->pend.data[rest] = '\0';
    }
    return 0;
}

int guard_stream_feed(guard_stream *s, const char *chunk, size_t len, buf *out)
{
    if (s->state)
        return s->state < 0 ? s->state : ERR_INVAL;
    int rc = buf_append(&s->pend, chunk, len);
    if (rc)
        return s->state = rc;
    return process(s, false, out);
}

int guard_stream_finish(guard_stream *s, buf *out)
{
    if (s->state)
        return s->state < 0 ? s->state : ERR_INVAL;
    int rc = process(s, true, out);
    if (rc == 0)
        s->state = 1;
    return rc;
}
