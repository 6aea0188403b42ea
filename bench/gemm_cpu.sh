#!/usr/bin/env bash
# bench/gemm_cpu.sh — the batched matmul (kern_matmul, n activation rows) in
# multiply-adds per CPU-second, on the weight shapes of smollm-135m and
# tinyllama-1.1b, for n = 1, 4, 16, 64, 512; optionally A/B against a second
# build of the same tree (BASE_BUILD), the two alternated round by round.
#
# Each case: a (rows x cols) matrix of seeded random weights (Q8_0 or Q4_0),
# n seeded random activation rows, kern_matmul on a pool of THREADS threads
# (1 = the calling thread alone), repeated for about 0.1 s of CPU time per
# batch, timed with the process CPU clock (all threads: CLOCK_PROCESS_CPUTIME_ID);
# the median of 5 batches, then the median over ROUNDS rounds. CPU time is the
# figure that holds up on a shared machine; wall-clock rates do not. "all" is
# the sum of the case's MACs over the sum of its CPU times (the shapes weighted
# as in one layer: q, o, k, v, gate, up, down; the lm head counts once, and
# only for n <= 16: serving asks for logits of every decode row, prefill only
# of the last row).
# Links the built static libraries, so build first (cmake --build build).
# Usage: bench/gemm_cpu.sh [BUILD_DIR] [TYPES] [NS] [THREADS] [SHAPES] [BASE_BUILD] [ROUNDS]
#   defaults: build "q8_0 q4_0" "1 4 16 64 512" 1 "smollm tinyllama" "" 3
set -euo pipefail
build=${1:-build}
types=${2:-q8_0 q4_0}
ns=${3:-1 4 16 64 512}
threads=${4:-1}
shapes=${5:-smollm tinyllama}
base=${6:-}
rounds=${7:-3}
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/gemm.c" <<'C'
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "bench_cpu.h"
#include "model/kern.h"
#include "model/tensor.h"

typedef struct shape {
    const char *name;
    size_t rows, cols, max_n; // max_n: the matrix is used for n <= max_n only
} shape;

/* CPU seconds per call (median of 5 batches of ~0.2 s). */
static double time_case(pool *p, const kern_mat *m, const float *x, size_t n, float *y, void *s,
                        size_t sb)
{
    kern_matmul(p, m, x, n, y, s, sb); // warm-up
    double t0 = cpu_s();
    kern_matmul(p, m, x, n, y, s, sb);
    double one = cpu_s() - t0;
    int reps = one > 0 ? (int)(0.1 / one) + 1 : 100;
    double v[5];
    for (int k = 0; k < 5; k++) {
        t0 = cpu_s();
        for (int i = 0; i < reps; i++)
            kern_matmul(p, m, x, n, y, s, sb);
        v[k] = (cpu_s() - t0) / reps;
    }
    qsort(v, 5, sizeof *v, cmpd);
    return v[2];
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    const char *tn = argv[1], *sn = argv[2];
    size_t n = strtoul(argv[3], NULL, 10);
    int threads = (int)strtol(argv[4], NULL, 10);
    tensor_type t = !strcmp(tn, "q8_0") ? TENSOR_Q8_0 : TENSOR_Q4_0;
    static const shape smollm[] = {{"qo", 576, 576, 1 << 20},     {"kv", 192, 576, 1 << 20},
                                   {"gate/up", 1536, 576, 1 << 20}, {"down", 576, 1536, 1 << 20},
                                   {"lm_head", 49152, 576, 16},     {NULL, 0, 0, 0}};
    static const shape tiny[] = {{"qo", 2048, 2048, 1 << 20},     {"kv", 256, 2048, 1 << 20},
                                 {"gate/up", 5632, 2048, 1 << 20}, {"down", 2048, 5632, 1 << 20},
                                 {"lm_head", 32000, 2048, 16},     {NULL, 0, 0, 0}};
    const shape *sh = !strcmp(sn, "smollm") ? smollm : tiny;
    // per layer: q, o, k, v, gate, up, down
    static const int weight[] = {2, 2, 2, 1, 1};
    pool *p = NULL;
    if (threads > 1 && pool_new(threads, &p))
        return 1;
    double macs_all = 0, cpu_all = 0;
    for (int k = 0; sh[k].name; k++) {
        if (n > sh[k].max_n)
            continue;
        size_t rows = sh[k].rows, cols = sh[k].cols, rb;
        if (tensor_row_bytes(t, cols, &rb))
            return 1;
        uint8_t *w = aligned_alloc(64, (rows * rb + 63) / 64 * 64);
        float *x = malloc(n * cols * 4), *y = malloc(n * rows * 4);
        if (!w || !x || !y)
            return 1;
        bench_weights(t, rows, cols, rb, w, x, n);
        kern_mat m;
        if (kern_mat_init(&m, t, rows, cols, w) || kern_mat_pack(&m)) // as the model loaders do
            return 1;
        size_t sb = kern_scratch_bytes(t, cols, n);
        void *s = aligned_alloc(64, (sb + 63) / 64 * 64);
        double c = time_case(p, &m, x, n, y, s, sb), macs = (double)rows * cols * n;
        printf("%s %.3f\n", sh[k].name, macs / c * 1e-9);
        macs_all += weight[k] * macs;
        cpu_all += weight[k] * c;
        kern_mat_unpack(&m);
        free(w);
        free(x);
        free(y);
        free(s);
    }
    printf("all %.3f\n", macs_all / cpu_all * 1e-9);
    pool_free(p);
    return 0;
}
C
builds=("$build")
[[ -n $base ]] && builds=("$base" "$build")
tag_of() { if [[ $1 == "$base" ]]; then echo before; else echo after; fi; }
for b in "${builds[@]}"; do
    cc -O2 -std=c11 -I"$src/src" -I"$src/bench" "$tmp/gemm.c" "$b/src/model/libferry_model.a" \
        "$b/src/base/libferry_base.a" -lm -lpthread -o "$tmp/gemm_$(tag_of "$b")"
done
echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); $threads thread(s)," \
    "SIMD ${FERRY_SIMD:-auto}; GMAC per CPU-second, median of $rounds round(s)"
for s in $shapes; do
    for t in $types; do
        for n in $ns; do
            for ((r = 0; r < rounds; r++)); do
                for b in "${builds[@]}"; do
                    tag=$(tag_of "$b")
                    "$tmp/gemm_$tag" "$t" "$s" "$n" "$threads" | sed "s|^|$s $t $n $tag |"
                done
            done
        done
    done
done >"$tmp/out"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/out" <<'EOF'
import collections, statistics, sys
d = collections.defaultdict(list)
keys = []
for line in open(sys.argv[1]):
    s, t, n, tag, name, v = line.split()
    k = (s, t, int(n))
    if k not in keys:
        keys.append(k)
    d[k, tag, name].append(float(v))
for k in keys:
    row = f"{k[1]:5s} {k[0]:9s} n={k[2]:<4d}"
    for nm in ["qo", "kv", "gate/up", "down", "lm_head", "all"]:
        a = d.get((k, "after", nm))
        if not a:
            continue
        m = statistics.median(a)
        b = d.get((k, "before", nm))
        if b:
            mb = statistics.median(b)
            row += f"  {nm} {mb:.1f}->{m:.1f} ({m / mb:.2f}x)"
        else:
            row += f"  {nm} {m:5.1f}"
    print(row)
EOF
