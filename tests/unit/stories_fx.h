/*
 * Shared fixture for unit tests on the real stories260K model of ../shared
 * (FERRY_SHARED overrides the path): finding the file (tests skip with a
 * message when it is absent), a model + KV pool + context with identity block
 * tables (sequence s owns blocks [s*per, (s+1)*per)), and argmax.
 * Include after <cmocka.h>; header-only, every function static inline.
 */
#ifndef FERRY_TESTS_STORIES_FX_H
#define FERRY_TESTS_STORIES_FX_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/llama.h"

enum { FX_MAX_SEQ = 8, FX_MAX_PER = 8 };

static char g_path[1024];

/* True when stories260K.gguf is readable (path left in g_path); otherwise
 * prints why the test is skipped. */
static inline bool have_model(void)
{
    const char *sh = getenv("FERRY_SHARED");
    if (!sh)
        sh = "../shared";
    snprintf(g_path, sizeof g_path, "%s/models/stories260K/stories260K.gguf", sh);
    if (access(g_path, R_OK) != 0) {
        fprintf(stderr, "skipping: %s not found\n", g_path);
        return false;
    }
    return true;
}

typedef struct fixture {
    model *m;
    llama_kv *kv;
    llama_ctx *c;
    int32_t table[FX_MAX_SEQ][FX_MAX_PER];
    size_t V;
} fixture;

/* Loads g_path with a KV pool of nseq*per blocks of bt tokens of type t and a
 * context of max_batch tokens, max_logits rows, on pool p (NULL: one thread). */
static inline void fx_open(fixture *f, size_t nseq, size_t per, size_t bt, llama_kv_type t,
                    size_t max_batch, size_t max_logits, pool *p)
{
    err_msg e;
    assert_true(nseq <= FX_MAX_SEQ && per <= FX_MAX_PER);
    memset(f, 0, sizeof *f);
    assert_int_equal(model_load(g_path, &f->m, &e), 0);
    assert_int_equal(llama_kv_new_type(f->m, nseq * per, bt, t, &f->kv, &e), 0);
    assert_int_equal(llama_kv_get_type(f->kv), t);
    llama_config cfg = llama_config_default();
    cfg.max_batch_tokens = max_batch;
    cfg.max_logits = max_logits;
    cfg.max_ctx = per * bt;
    cfg.pool = p;
    assert_int_equal(llama_ctx_new(f->m, &cfg, &f->c, &e), 0);
    for (size_t s = 0; s < nseq; s++)
        for (size_t b = 0; b < per; b++)
            f->table[s][b] = (int32_t)(s * per + b);
    f->V = model_hparams(f->m)->n_vocab;
}

static inline void fx_free(fixture *f)
{
    llama_ctx_free(f->c);
    llama_kv_free(f->kv);
    model_unref(f->m);
}

static inline int32_t argmax(const float *l, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return (int32_t)b;
}

#endif
