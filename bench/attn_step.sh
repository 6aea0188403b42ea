#!/usr/bin/env bash
# bench/attn_step.sh — the attention of one decode step, alone (model/attn): S
# sequences at P positions each, over all 30 layers of the smollm-135m shape (3 KV
# heads of 64, 3 query heads per KV head), F16 K/V in a 256 MiB paged pool with a
# shuffled block table, one thread, as attention() calls attn_group per (token,
# KV head). Prints the best of REPS steps and the KV bytes that step reads; HOT=1
# reads layer 0's rows for every layer (all in cache: the compute alone); the pool
# is advised onto huge pages as llama_kv_new_type does (NOHUGE=1: 4 KiB pages).
# Figures: docs/internals/engine-forward.md, docs/BENCHMARKS.md (serving step).
# Usage: bench/attn_step.sh [BUILD_DIR] [S] [P] [REPS]   (defaults build 16 128 40)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
s=${2:-16} p=${3:-128} reps=${4:-40}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/attn_step.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "model/attn.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t S = strtoul(argv[1], NULL, 10), P = strtoul(argv[2], NULL, 10);
    int reps = (int)strtol(argv[3], NULL, 10);
    const size_t L = 30, nkv = 3, hd = 64, grp = 3, bt = 16, dim = nkv * grp * hd;
    size_t rowb = nkv * hd * 2, nblk = ((size_t)256 << 20) / (rowb * 2 * L * bt);
    size_t nb = (P + bt - 1) / bt, layer = nblk * bt * rowb;
    if (S * nb > nblk || P == 0 || reps < 1)
        return 2;
    uint8_t *k = mmap(NULL, layer * L, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *v = mmap(NULL, layer * L, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (k == MAP_FAILED || v == MAP_FAILED)
        return 1;
    if (!getenv("NOHUGE")) {
        madvise(k, layer * L, MADV_HUGEPAGE);
        madvise(v, layer * L, MADV_HUGEPAGE);
    }
    for (size_t i = 0; i < layer * L / 2; i++) { // small f16 values
        ((uint16_t *)(void *)k)[i] = (uint16_t)(0x3000 | (i & 0x3ff));
        ((uint16_t *)(void *)v)[i] = (uint16_t)(0x2c00 | (i & 0x1ff));
    }
    int32_t *perm = malloc(nblk * sizeof *perm);
    float *q = malloc(S * dim * sizeof *q), *out = malloc(S * dim * sizeof *out);
    float *scr = malloc(attn_scratch_floats(grp, P, hd) * sizeof *scr);
    if (!perm || !q || !out || !scr)
        return 1;
    srand(1);
    for (size_t i = 0; i < nblk; i++)
        perm[i] = (int32_t)i;
    for (size_t i = nblk - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < S * dim; i++)
        q[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (size_t l = 0; l < L; l++) {
            size_t ll = getenv("HOT") ? 0 : l;
            attn_kv akv = {.k = k + ll * layer, .v = v + ll * layer, .row_bytes = rowb,
                           .block_tokens = bt, .is_q8 = false};
            for (size_t s = 0; s < S; s++)
                for (size_t g = 0; g < nkv; g++)
                    attn_group(&akv, perm + s * nb, P, g * hd, hd, q + s * dim + g * grp * hd,
                               grp, out + s * dim + g * grp * hd, scr);
        }
        double t = now_s() - t0;
        if (t < best)
            best = t;
    }
    double mb = (double)(S * P * L * rowb * 2) / 1e6;
    printf("attention of one decode step, %zu sequences x %zu positions x %zu layers: best of "
           "%d %.2f ms (one thread), %.1f MB of K/V read, %.2f GB/s%s\n",
           S, P, L, reps, best * 1e3, mb, mb / 1e3 / best, getenv("HOT") ? " (HOT: cached)" : "");
    return 0;
}
C
cc -O2 -I"$here/src" "$tmp/attn_step.c" "$build/src/model/libferry_model.a" \
    "$build/src/base/libferry_base.a" -lm -lpthread -o "$tmp/attn_step"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/attn_step" "$s" "$p" "$reps"
