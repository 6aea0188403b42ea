#!/usr/bin/env bash
# bench/matvec_cpu.sh — decode's matvec (one activation row) per CPU-second, one thread.
#
# For each weight type: a 2048-column matrix of HOT KiB (fits L2: the kernel's
# compute cost) and of COLD KiB (far past L3: weights stream from memory, as in
# decode), kern_matmul with n = 1 on the calling thread (the only thread), timed
# with the process CPU clock, median of 7 batches. CPU time is the
# figure that holds up on a shared machine; wall-clock GB/s does not.
# Links the built static libraries, so build first (cmake --build build).
# Usage: bench/matvec_cpu.sh [BUILD_DIR] [TYPES] [HOT_KIB] [COLD_KIB]
set -euo pipefail
build=${1:-build}
types=${2:-q8_0 q4_0 q4_K q6_K}
hot=${3:-256}
cold=${4:-131072}
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/mv.c" <<'C'
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_cpu.h"
#include "model/kern.h"
#include "model/tensor.h"

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *tn = argv[1];
    size_t kib = strtoul(argv[2], NULL, 10), cols = 2048, rb;
    tensor_type t = !strcmp(tn, "q8_0")   ? TENSOR_Q8_0
                    : !strcmp(tn, "q4_0") ? TENSOR_Q4_0
                    : !strcmp(tn, "q4_K") ? TENSOR_Q4_K
                                          : TENSOR_Q6_K;
    if (tensor_row_bytes(t, cols, &rb))
        return 1;
    size_t rows = kib * 1024 / rb < 16 ? 16 : kib * 1024 / rb, bytes = rows * rb;
    uint8_t *w = aligned_alloc(64, (bytes + 63) / 64 * 64);
    float *x = malloc(cols * 4), *y = malloc(rows * 4);
    if (!w || !x || !y)
        return 1;
    bench_weights(t, rows, cols, rb, w, x, 1);
    kern_mat m;
    if (kern_mat_init(&m, t, rows, cols, w) || kern_mat_pack(&m)) // as the model loaders do
        return 1;
    size_t sb = kern_scratch_bytes(t, cols, 1);
    void *s = malloc(sb);
    int reps = (int)(2e9 / (double)bytes) + 1;
    reps = reps > 2000 ? 2000 : reps;
    double v[7];
    for (int k = 0; k < 7; k++) {
        double t0 = cpu_s();
        for (int i = 0; i < reps; i++)
            kern_matmul(NULL, &m, x, 1, y, s, sb);
        v[k] = (cpu_s() - t0) / reps;
    }
    qsort(v, 7, sizeof *v, cmpd);
    printf("%-5s %8zu KiB  %6.2f GB/s per CPU-second  %5.2f ns per 32 weights  [%s]\n", tn,
           bytes / 1024, (double)bytes / v[3] * 1e-9, v[3] * 1e9 / ((double)rows * cols / 32.0),
           kern_simd_name());
    kern_mat_unpack(&m);
    return 0;
}
C
cc -O2 -std=c11 -I"$src/src" -I"$src/bench" "$tmp/mv.c" "$build/src/model/libferry_model.a" \
    "$build/src/base/libferry_base.a" -lm -lpthread -o "$tmp/mv"
echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg)"
for t in $types; do
    "$tmp/mv" "$t" "$hot"
    "$tmp/mv" "$t" "$cold"
done
