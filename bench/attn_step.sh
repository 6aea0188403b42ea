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
#include <stdio.h>
#include <stdlib.h>

#include "attn_step.h"

int main(int argc, char **argv)
{
    (void)argc;
    size_t S = strtoul(argv[1], NULL, 10), P = strtoul(argv[2], NULL, 10);
    int reps = (int)strtol(argv[3], NULL, 10);
    attn_step a;
    int rc = attn_step_make(&a, S, P);
    if (rc || reps < 1)
        return rc ? rc : 2;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = attn_step_run(&a, attn_group, getenv("HOT") != NULL);
        if (t < best)
            best = t;
    }
    double mb = (double)(S * P * a.L * a.rowb * 2) / 1e6;
    printf("attention of one decode step, %zu sequences x %zu positions x %zu layers: best of "
           "%d %.2f ms (one thread), %.1f MB of K/V read, %.2f GB/s%s\n",
           S, P, a.L, reps, best * 1e3, mb, mb / 1e3 / best, getenv("HOT") ? " (HOT: cached)" : "");
    return 0;
}
C
cc -O2 -I"$here/src" -I"$here/bench" "$tmp/attn_step.c" "$build/src/model/libferry_model.a" \
    "$build/src/base/libferry_base.a" -lm -lpthread -o "$tmp/attn_step"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/attn_step" "$s" "$p" "$reps"
