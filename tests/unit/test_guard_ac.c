/* Unit tests for guard/ac (the blocklist and injection-keyword automaton):
 * the optimized walk (code-point steps, rows only for some states, exception
 * nodes and table, interleaved parts with cuts at character starts, hit
 * buffers that overflow) against a straightforward reference — every pattern
 * looked for at every byte with memcmp, the same word-boundary rule — on
 * random mixed English/Chinese text with evasions and invalid bytes; and the
 * whole scan (normalization + automaton + offset map) against the reference
 * on the normalized text; the encoded-payload pass against its per-byte
 * reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "guard/guard_int.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 11) % n);
}

/* Pieces that text and patterns are made of: ASCII syllables and
 * punctuation, a few CJK ideographs (so terms recur), other scripts, a 4-byte
 * character. */
static const char *const PIECES[] = {
    "ka", "lo", "ter", "zor", "vak", "a",  "b",  "x",  "1",  "42", " ", " ", ".", ",",  "-",  "'",
    "<|", "|>", "中",  "文",  "炸",  "弹", "国", "人", "的", "é",  "ß", "ж", "😀", "！", "，",
};
#define NPIECES (sizeof PIECES / sizeof *PIECES)

static void rand_text(buf *b, size_t n_pieces, bool invalid)
{
    for (size_t i = 0; i < n_pieces; i++) {
        if (invalid && rnd(40) == 0) {
            static const unsigned char bad[] = {0x80, 0xBF, 0xC3, 0xE4, 0xE4, 0xB8, 0xF0, 0xFF};
            char c = (char)bad[rnd(sizeof bad)];
            assert_int_equal(buf_append(b, &c, 1), 0);
            continue;
        }
        assert_int_equal(buf_append_str(b, PIECES[rnd(NPIECES)]), 0);
    }
}

static bool word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

typedef struct hit {
    uint32_t pat;
    size_t start, end;
} hit;

typedef struct hits {
    hit *h;
    size_t n, cap;
} hits;

static void hits_push(hits *hs, uint32_t pat, size_t start, size_t end)
{
    if (hs->n == hs->cap) {
        hs->cap = hs->cap ? hs->cap * 2 : 64;
        hs->h = realloc(hs->h, hs->cap * sizeof *hs->h);
        assert_non_null(hs->h);
    }
    hs->h[hs->n++] = (hit){pat, start, end};
}

static int on_hit(void *ctx, uint32_t pat, size_t start, size_t end)
{
    hits_push(ctx, pat, start, end);
    return 0;
}

static int hit_cmp(const void *x, const void *y)
{
    const hit *a = x, *b = y;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    if (a->start != b->start)
        return a->start < b->start ? -1 : 1;
    return a->pat < b->pat ? -1 : a->pat > b->pat;
}

/* The reference: every pattern at every byte, with the automaton's rule for
 * patterns that begin/end with a letter or digit (a boundary: a non-word
 * byte on that side, or source bytes the normalizer dropped there). */
static void reference(const char *const *pats, const size_t *lens, size_t np, const char *text,
                      size_t len, const norm_buf *nb, hits *out)
{
    const unsigned char *t = (const unsigned char *)text;
    for (size_t p = 0; p < np; p++) {
        size_t m = lens[p];
        if (m == 0 || m > len)
            continue;
        const unsigned char *q = (const unsigned char *)pats[p];
        for (size_t i = 0; i + m <= len; i++) {
            if (memcmp(t + i, q, m) != 0)
                continue;
            size_t e = i + m;
            if (word_byte(q[0]) && i > 0 && word_byte(t[i - 1]) && word_byte(t[i]) &&
                !(nb && norm_gap_before(nb, i)))
                continue;
            if (word_byte(q[m - 1]) && e < len && word_byte(t[e - 1]) && word_byte(t[e]) &&
                !(nb && norm_gap_before(nb, e)))
                continue;
            hits_push(out, (uint32_t)p, i, e);
        }
    }
    if (out->n)
        qsort(out->h, out->n, sizeof *out->h, hit_cmp);
}

static void compare(const hits *got, hits *want, const char *what, size_t iter)
{
    for (size_t i = 1; i < got->n; i++)
        assert_true(got->h[i].end >= got->h[i - 1].end); // reported in order of end
    hits sorted = {0};
    for (size_t i = 0; i < got->n; i++)
        hits_push(&sorted, got->h[i].pat, got->h[i].start, got->h[i].end);
    if (sorted.n)
        qsort(sorted.h, sorted.n, sizeof *sorted.h, hit_cmp);
    bool same = sorted.n == want->n;
    for (size_t i = 0; same && i < sorted.n; i++)
        same = hit_cmp(&sorted.h[i], &want->h[i]) == 0;
    if (!same)
        fprintf(stderr, "%s %zu: %zu hits, reference %zu\n", what, iter, sorted.n, want->n);
    assert_true(same);
    free(sorted.h);
}

/* Random pattern sets over the same pieces; some mixed ASCII/CJK (exception
 * table of states with rows), single characters (dense hits: buffers
 * overflow), duplicates. */
static size_t rand_patterns(char **pats, size_t *lens, size_t max)
{
    size_t np = 1 + rnd((uint32_t)max);
    for (size_t p = 0; p < np; p++) {
        buf b;
        buf_init(&b, 256);
        size_t k = 1 + rnd(rnd(4) == 0 ? 1 : 5);
        if (p > 0 && rnd(30) == 0) { // a duplicate
            assert_int_equal(buf_append(&b, pats[p - 1], lens[p - 1]), 0);
        } else {
            for (size_t i = 0; i < k; i++)
                assert_int_equal(buf_append_str(&b, PIECES[rnd(NPIECES)]), 0);
        }
        pats[p] = malloc(b.len + 1);
        assert_non_null(pats[p]);
        memcpy(pats[p], b.data ? b.data : "", b.len);
        pats[p][b.len] = '\0';
        lens[p] = b.len;
        buf_deinit(&b);
    }
    return np;
}

static void test_ac_vs_reference(void **state)
{
    (void)state;
    char *pats[300];
    size_t lens[300];
    size_t iters = 260;
    for (size_t it = 0; it < iters; it++) {
        size_t np = rand_patterns(pats, lens, it % 3 == 0 ? 300 : 12);
        ac_auto a;
        err_msg e;
        err_clear(&e);
        assert_int_equal(ac_build((const char *const *)pats, lens, np, &a, &e), 0);
        buf t;
        buf_init(&t, 1 << 22);
        // Mostly short texts (the plain walk), some long ones (windows of
        // interleaved parts), the last few over one window.
        size_t n_pieces = it % 10 == 0 ? 2000 + rnd(20000) : rnd(400);
        if (it >= iters - 3)
            n_pieces = 60000;
        rand_text(&t, n_pieces, it % 2 == 0);
        hits got = {0}, want = {0};
        const char *text = t.data ? t.data : "";
        assert_int_equal(ac_search(&a, text, t.len, NULL, on_hit, &got), 0);
        reference((const char *const *)pats, lens, np, text, t.len, NULL, &want);
        compare(&got, &want, "raw", it);
        free(got.h);
        free(want.h);
        buf_deinit(&t);
        ac_free(&a);
        for (size_t p = 0; p < np; p++)
            free(pats[p]);
    }
}

/* Evasions of a term: full-width letters, zero-width characters, spaced-out
 * letters, punctuation between CJK characters, upper case. */
static void evade(buf *b, const char *term)
{
    size_t n = strlen(term);
    int how = (int)rnd(5);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)term[i];
        size_t cl = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (how == 0 && c >= 'a' && c <= 'z') { // full-width
            char fw[3] = {(char)0xEF, (char)(0xBC + ((c - 'a' + 0x41) >> 6)),
                          (char)(0x80 | ((c - 'a' + 0x41) & 0x3F))};
            assert_int_equal(buf_append(b, fw, 3), 0);
        } else if (how == 4 && c >= 'a' && c <= 'z') {
            char up = (char)(c - 32);
            assert_int_equal(buf_append(b, &up, 1), 0);
        } else {
            assert_int_equal(buf_append(b, term + i, cl), 0);
        }
        i += cl;
        if (i < n) {
            if (how == 1)
                assert_int_equal(buf_append_str(b, "\xe2\x80\x8b"), 0); // zero-width space
            else if (how == 2)
                assert_int_equal(buf_append_str(b, " "), 0);
            else if (how == 3)
                assert_int_equal(buf_append_str(b, c >= 0x80 ? "，" : "."), 0);
        }
    }
}

static void test_scan_vs_reference(void **state)
{
    (void)state;
    static const char *const TERMS[] = {"bomb", "kill",  "zorvak", "炸弹", "中国人",
                                        "文的", "ka lo", "x1",     "ßé",   "😀中"};
    size_t nt = sizeof TERMS / sizeof *TERMS;
    buf doc;
    buf_init(&doc, 4096);
    assert_int_equal(buf_append_str(&doc, "{\"id\":\"t\",\"blocklist\":{\"terms\":["), 0);
    for (size_t i = 0; i < nt; i++)
        assert_int_equal(buf_printf(&doc, "%s\"%s\"", i ? "," : "", TERMS[i]), 0);
    assert_int_equal(buf_append_str(&doc, "]}}"), 0);
    guard_engine *g = NULL;
    err_msg e;
    err_clear(&e);
    assert_int_equal(guard_engine_from_json(doc.data, doc.len, NULL, NULL, &g, &e), 0);
    buf_deinit(&doc);
    const guard_policy *p = guard_engine_select(g, NULL, NULL);
    guard_scratch *s = guard_scratch_new();
    assert_non_null(s);
    // The reference looks for the normalized terms in the normalized text.
    char *npats[16];
    size_t nlens[16];
    norm_buf nb = {0};
    for (size_t i = 0; i < nt; i++) {
        assert_int_equal(norm_run(TERMS[i], strlen(TERMS[i]), &nb), 0);
        npats[i] = malloc(nb.n + 1);
        memcpy(npats[i], nb.p, nb.n);
        nlens[i] = nb.n;
    }
    size_t found = 0;
    for (size_t it = 0; it < 400; it++) {
        buf t;
        buf_init(&t, 1 << 20);
        size_t parts = it % 20 == 0 ? 400 : 1 + rnd(12);
        for (size_t k = 0; k < parts; k++) {
            if (rnd(3) == 0)
                evade(&t, TERMS[rnd((uint32_t)nt)]);
            else
                rand_text(&t, 1 + rnd(8), it % 4 == 0);
            if (rnd(2))
                assert_int_equal(buf_append_str(&t, rnd(2) ? " " : "。"), 0);
        }
        const char *text = t.data ? t.data : "";
        guard_result r;
        assert_int_equal(guard_scan(p, s, text, t.len, GUARD_SCAN_BLOCKLIST, &r, &e), 0);
        assert_int_equal(norm_run(text, t.len, &nb), 0);
        hits want = {0};
        reference((const char *const *)npats, nlens, nt, nb.p, nb.n, &nb, &want);
        // Map the reference's normalized offsets back to the source and put
        // both in the scan's order (start, end, term).
        hits got = {0}, mapped = {0};
        for (size_t i = 0; i < want.n; i++)
            hits_push(&mapped, want.h[i].pat, norm_src_start(&nb, want.h[i].start),
                      norm_src_end(&nb, want.h[i].end - 1));
        for (size_t i = 0; i < r.n_terms; i++)
            hits_push(&got, r.terms[i].sub, r.terms[i].start, r.terms[i].end);
        if (mapped.n)
            qsort(mapped.h, mapped.n, sizeof *mapped.h, hit_cmp);
        if (got.n)
            qsort(got.h, got.n, sizeof *got.h, hit_cmp);
        if (got.n != mapped.n)
            fprintf(stderr, "scan %zu: %zu terms, reference %zu\n", it, got.n, mapped.n);
        assert_int_equal(got.n, mapped.n);
        for (size_t i = 0; i < got.n; i++)
            assert_int_equal(hit_cmp(&got.h[i], &mapped.h[i]), 0);
        found += got.n;
        free(got.h);
        free(mapped.h);
        free(want.h);
        buf_deinit(&t);
    }
    assert_true(found > 100); // the evasions were caught, not just agreed on
    for (size_t i = 0; i < nt; i++)
        free(npats[i]);
    norm_buf_deinit(&nb);
    guard_scratch_free(s);
    guard_engine_free(g);
}

/* Build limits and odd inputs: no patterns, empty patterns, a pattern of
 * invalid bytes (pseudo code points: matches the same bytes), text of only
 * continuation bytes. */
static void test_ac_edges(void **state)
{
    (void)state;
    ac_auto a;
    assert_int_equal(ac_build(NULL, NULL, 0, &a, NULL), 0);
    hits got = {0};
    assert_int_equal(ac_search(&a, "abc", 3, NULL, on_hit, &got), 0);
    assert_int_equal(got.n, 0);
    ac_free(&a);
    const char *pats[] = {"", "\xB8\xAD", "\xff", "中"};
    size_t lens[] = {0, 2, 1, 3};
    assert_int_equal(ac_build(pats, lens, 4, &a, NULL), 0);
    const char *t = "\x80\x80\xB8\xAD\xff中\xE4\xB8";
    assert_int_equal(ac_search(&a, t, strlen(t), NULL, on_hit, &got), 0);
    // "\xB8\xAD" as stray bytes matches; inside "中" it does not (a character).
    assert_int_equal(got.n, 3);
    assert_int_equal(got.h[0].pat, 1);
    assert_int_equal(got.h[0].end, 4);
    assert_int_equal(got.h[1].pat, 2);
    assert_int_equal(got.h[2].pat, 3);
    assert_int_equal(got.h[2].end, 8);
    free(got.h);
    ac_free(&a);
}

/* Matches that end just after a part's cut (and so start exactly maxlen - 1
 * bytes before it) must be found by the part, once: plant the longest pattern
 * to end at each cut + d of texts walked in interleaved parts (a window is
 * cut at len * k / 4; 64 KiB windows). */
static void test_ac_cuts(void **state)
{
    (void)state;
    const char *pats[] = {"-.-.-.-.-.-.-", "-.-", "中-"};
    size_t lens[] = {13, 3, 4};
    ac_auto a;
    assert_int_equal(ac_build(pats, lens, 3, &a, NULL), 0);
    size_t sizes[] = {1000, 4096, 65536 + 5000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        for (int d = -2; d <= 3; d++) {
            size_t L = sizes[si];
            char *t = malloc(L);
            assert_non_null(t);
            memset(t, 'q', L);
            size_t w1 = L < 65536 ? L : 65536;
            for (size_t k = 1; k < 8; k++) {
                size_t w0 = k < 4 ? 0 : 65536, wl = k < 4 ? w1 : L - 65536;
                size_t c = w0 + wl * (k % 4) / 4;
                if (k % 4 == 0 || c + (size_t)(d + 1) < 13 || c + (size_t)d + 1 > L)
                    continue;
                memcpy(t + c + (size_t)(d + 1) - 13, pats[0], 13);
            }
            hits got = {0}, want = {0};
            assert_int_equal(ac_search(&a, t, L, NULL, on_hit, &got), 0);
            reference(pats, lens, 3, t, L, NULL, &want);
            assert_true(want.n > 0);
            compare(&got, &want, "cuts", si * 10 + (size_t)(d + 2));
            free(got.h);
            free(want.h);
            free(t);
        }
    }
    ac_free(&a);
}

/* The encoded-payload pass (skips 9 bytes where no run of 9+ can start)
 * against the straightforward per-byte pass, on random text mixing prose,
 * CJK, base64 / hex / %-encoded payloads of injection phrases, '=' padding,
 * broken %-escapes and runs of 8, 9 and 10 bytes. */
static void test_encoded_vs_reference(void **state)
{
    (void)state;
    static const char *const P[] = {
        "SWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM=", // base64 of an override
        "aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw",
        "69676e6f72652070726576696f757320696e737472756374696f6e73", // hex
        "%69%67%6e%6f%72%65%20%61%6c%6c%20%72%75%6c%65%73",         // %-encoded
        "%zz%41%42",
        "abcdefgh",
        "abcdefghi",
        "abcdefghij",
        "a.b~c-d_e",
        "Zm9v====",
        "12345678",
        "123456789",
        "the",
        "ka lo ",
        " ",
        "中文字符",
        "，",
        "%",
        "=",
        "/+",
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo",
        "x%41%42%43y",
    };
    inj_set *is = NULL;
    assert_int_equal(inj_set_new(&is, NULL), 0);
    inj_match m;
    inj_match_init(&m);
    size_t nonzero = 0;
    for (size_t it = 0; it < 3000; it++) {
        buf t;
        buf_init(&t, 1 << 20);
        size_t parts = it % 100 == 0 ? 3000 : rnd(30);
        for (size_t k = 0; k < parts; k++)
            assert_int_equal(buf_append_str(&t, P[rnd(sizeof P / sizeof *P)]), 0);
        const char *text = t.data ? t.data : "";
        for (int depth = 1; depth <= 2; depth++) {
            double want = inj_encoded_score_ref(is, text, t.len, depth);
            double got = inj_match_score(is, &m, text, t.len, depth); // no rule fired: enc only
            if (got != want)
                fprintf(stderr, "encoded %zu: %.6f, reference %.6f\n", it, got, want);
            assert_true(got == want);
            nonzero += want > 0;
        }
        buf_deinit(&t);
    }
    assert_true(nonzero > 100);
    inj_set_free(is);
}

/* The normalizer's fast paths (ASCII words lower-cased 16 bytes at a time,
 * CJK runs copied, inline decode) against the same normalizer taking every
 * character the general way: the same bytes, and every output byte maps to
 * the same source range, with the same dropped-byte boundaries. Random text
 * with evasions, combining marks, invalid bytes. */
static void test_norm_vs_reference(void **state)
{
    (void)state;
    static const char *const X[] = {
        "ＢＯＭＢ", "\xe2\x80\x8b", "e\xcc\x81",
        "ﬁ",        "Ａ",           "\t",
        "\r\n",     "  ",           "Cafe",
        "ABCdef",   "ÉCOLE",        "k.i.l.l",
        "b o m b",  "中。文",       "炸 弹",
        "、",       "：",           "ｶ",
        "가",       "\x01",         "AbCdEfGhIjKlMnOpQrStUvWxYz",
        "ZZ Top",   "@[`{",         "中文中文中文中文中文",
        "x1y2z3",   "\xe4\xb8",     "\xed\xa0\x80",
    };
    norm_buf a = {0}, b = {0};
    size_t checked = 0;
    for (size_t it = 0; it < 3000; it++) {
        buf t;
        buf_init(&t, 1 << 20);
        size_t parts = it % 100 == 0 ? 2000 : rnd(40);
        for (size_t k = 0; k < parts; k++) {
            if (rnd(3) == 0)
                assert_int_equal(buf_append_str(&t, X[rnd(sizeof X / sizeof *X)]), 0);
            else
                rand_text(&t, 1, it % 3 == 0);
        }
        const char *text = t.data ? t.data : "";
        assert_int_equal(norm_run(text, t.len, &a), 0);
        assert_int_equal(norm_run_ref(text, t.len, &b), 0);
        if (a.n != b.n || memcmp(a.p, b.p, a.n) != 0)
            fprintf(stderr, "norm %zu: [%.*s] vs reference [%.*s]\n", it, (int)MIN(a.n, 200), a.p,
                    (int)MIN(b.n, 200), b.p);
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.p, b.p, a.n);
        for (size_t k = 0; k < a.n; k++) {
            assert_int_equal(norm_src_start(&a, k), norm_src_start(&b, k));
            assert_int_equal(norm_src_end(&a, k), norm_src_end(&b, k));
            if (k > 0)
                assert_int_equal(norm_gap_before(&a, k), norm_gap_before(&b, k));
        }
        checked += a.n;
        buf_deinit(&t);
    }
    assert_true(checked > 10000);
    norm_buf_deinit(&a);
    norm_buf_deinit(&b);
}

/* guard_cp_offset (8 ASCII bytes at a time, 3-byte characters inline)
 * against counting utf8_dec steps, at every offset of random text with
 * invalid bytes. */
static void test_cp_offset_vs_reference(void **state)
{
    (void)state;
    for (size_t it = 0; it < 300; it++) {
        buf t;
        buf_init(&t, 1 << 16);
        rand_text(&t, rnd(120), it % 2 == 0);
        const unsigned char *u = (const unsigned char *)(t.data ? t.data : "");
        size_t n = 0, i = 0;
        for (size_t off = 0; off <= t.len + 1; off++) {
            while (i < off && i < t.len) { // the reference: count decode steps
                int32_t cp;
                i += utf8_dec(u + i, t.len - i, &cp);
                n++;
            }
            assert_int_equal(guard_cp_offset((const char *)u, t.len, off), n);
        }
        buf_deinit(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ac_vs_reference),
        cmocka_unit_test(test_scan_vs_reference),
        cmocka_unit_test(test_ac_edges),
        cmocka_unit_test(test_ac_cuts),
        cmocka_unit_test(test_encoded_vs_reference),
        cmocka_unit_test(test_norm_vs_reference),
        cmocka_unit_test(test_cp_offset_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
