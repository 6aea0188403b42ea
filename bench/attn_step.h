/*
 * bench/attn_step.h — the attention of one decode step on the smollm-135m shape,
 * shared by the programs bench/attn_step.sh and bench/kern_pair.sh (attn) compile:
 * S sequences at P positions over 30 layers (3 KV heads of 64, 3 query heads per
 * KV head), F16 K/V in a 256 MiB paged pool (advised onto huge pages unless env
 * NOHUGE is set) with a shuffled block table, run as llama.c's attention items
 * call attn_group: per (token, KV head). Header-only.
 */
#ifndef FERRY_BENCH_ATTN_STEP_H
#define FERRY_BENCH_ATTN_STEP_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "model/attn.h"

typedef struct attn_step {
    size_t S, P, L, nkv, hd, grp, bt, dim, rowb, nb, layer;
    uint8_t *k, *v;
    int32_t *perm;
    float *q, *out, *scr;
} attn_step;

/* attn_group's signature (the AVX2 twins under other names have it too). */
typedef void (*attn_step_fn)(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off,
                             size_t head_dim, const float *q, size_t n_q, float *out,
                             float *scratch);

static double attn_step_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Returns 0, 1 when out of memory, 2 when S sequences of P positions do not fit. */
static int attn_step_make(attn_step *a, size_t S, size_t P)
{
    a->S = S, a->P = P, a->L = 30, a->nkv = 3, a->hd = 64, a->grp = 3, a->bt = 16;
    a->dim = a->nkv * a->grp * a->hd;
    a->rowb = a->nkv * a->hd * 2;
    size_t nblk = ((size_t)256 << 20) / (a->rowb * 2 * a->L * a->bt);
    a->nb = (P + a->bt - 1) / a->bt;
    a->layer = nblk * a->bt * a->rowb;
    if (S * a->nb > nblk || P == 0)
        return 2;
    size_t all = a->layer * a->L;
    a->k = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    a->v = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a->k == MAP_FAILED || a->v == MAP_FAILED)
        return 1;
    if (!getenv("NOHUGE")) {
        madvise(a->k, all, MADV_HUGEPAGE);
        madvise(a->v, all, MADV_HUGEPAGE);
    }
    for (size_t i = 0; i < all / 2; i++) { // small f16 values
        ((uint16_t *)(void *)a->k)[i] = (uint16_t)(0x3000 | (i & 0x3ff));
        ((uint16_t *)(void *)a->v)[i] = (uint16_t)(0x2c00 | (i & 0x1ff));
    }
    a->perm = malloc(nblk * sizeof *a->perm);
    a->q = malloc(S * a->dim * sizeof *a->q);
    a->out = malloc(S * a->dim * sizeof *a->out);
    a->scr = malloc(attn_scratch_floats(a->grp, P, a->hd) * sizeof *a->scr);
    if (!a->perm || !a->q || !a->out || !a->scr)
        return 1;
    srand(1);
    for (size_t i = 0; i < nblk; i++)
        a->perm[i] = (int32_t)i;
    for (size_t i = nblk - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        int32_t t = a->perm[i];
        a->perm[i] = a->perm[j];
        a->perm[j] = t;
    }
    for (size_t i = 0; i < S * a->dim; i++)
        a->q[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    return 0;
}

/* Seconds of one step with fn; hot: every layer reads layer 0's rows (all in cache). */
static double attn_step_run(const attn_step *a, attn_step_fn fn, int hot)
{
    double t0 = attn_step_now();
    for (size_t l = 0; l < a->L; l++) {
        size_t ll = hot ? 0 : l;
        attn_kv akv = {.k = a->k + ll * a->layer, .v = a->v + ll * a->layer,
                       .row_bytes = a->rowb, .block_tokens = a->bt, .is_q8 = false};
        for (size_t s = 0; s < a->S; s++)
            for (size_t g = 0; g < a->nkv; g++)
                fn(&akv, a->perm + s * a->nb, a->P, g * a->hd, a->hd,
                   a->q + s * a->dim + g * a->grp * a->hd, a->grp,
                   a->out + s * a->dim + g * a->grp * a->hd, a->scr);
    }
    return attn_step_now() - t0;
}

#endif
