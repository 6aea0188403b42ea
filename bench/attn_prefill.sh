#!/usr/bin/env bash
# bench/attn_prefill.sh — CPU time of a prefill's attention alone (model/attn):
# one sequence of P prompt tokens, run in chunks of C tokens (a chunk attends to
# the cache the earlier chunks filled), over all layers of a model shape, one
# thread. Two ways, alternated in one process so the machine's load hits both:
#   group  attn_group per (token, KV head): the forward pass before attn_span
#   span   attn_span per (tile of ceil(48 / group) tokens, KV head), as
#          llama.c's attention() calls it now
# and checks that both give the same bits. Prints the median CPU time (of REPS
# rounds, CLOCK_PROCESS_CPUTIME_ID) per prompt token and the ratio.
# SHAPE: smollm-135m (30 layers, 3 KV heads of 64, group 3) or tinyllama-1.1b
# (22 layers, 4 KV heads of 64, group 8); KV: f16 (the default cache) or q8_0.
# Usage: bench/attn_prefill.sh [BUILD_DIR] [SHAPE] [KV] [P] [C] [REPS]
#        (defaults build smollm-135m f16 512 512 5)
# Figures: docs/BENCHMARKS.md (prefill attention), docs/internals/engine-forward.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shape=${2:-smollm-135m} kvt=${3:-f16} p=${4:-512} chunk=${5:-512} reps=${6:-5}
case $shape in
smollm-135m) dims="30 3 3 64" ;;
tinyllama-1.1b) dims="22 4 8 64" ;;
*) echo "attn_prefill: unknown shape $shape (smollm-135m, tinyllama-1.1b)" >&2; exit 2 ;;
esac
case $kvt in f16) q8=0 ;; q8_0) q8=1 ;; *) echo "attn_prefill: KV f16 or q8_0" >&2; exit 2 ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/attn_prefill.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/attn.h"
#include "bench_cpu.h"
#include "model/kern.h"
#include "model/tensor.h"

int main(int argc, char **argv)
{
    if (argc != 10)
        return 2;
    size_t L = strtoul(argv[1], NULL, 10), nkv = strtoul(argv[2], NULL, 10);
    size_t grp = strtoul(argv[3], NULL, 10), hd = strtoul(argv[4], NULL, 10);
    int q8 = (int)strtol(argv[5], NULL, 10);
    size_t P = strtoul(argv[6], NULL, 10), C = strtoul(argv[7], NULL, 10);
    int reps = (int)strtol(argv[8], NULL, 10);
    (void)argv[9];
    const size_t bt = 16, kvd = nkv * hd, dim = nkv * grp * hd;
    const char *te = getenv("TILE"); // tokens per tile; default as llama.c picks them
    size_t tile = te ? strtoul(te, NULL, 10) : 0;
    if (tile == 0)
        tile = (48 + grp - 1) / grp;
    if (P == 0 || C == 0 || reps < 1 || (q8 && kvd % 32))
        return 2;
    size_t rowb = q8 ? kvd / 32 * sizeof(tensor_block_q8_0) : kvd * 2;
    size_t nb = (P + bt - 1) / bt, layer = nb * bt * rowb;
    uint8_t *k = malloc(layer * L), *v = malloc(layer * L);
    int32_t *blocks = malloc(nb * sizeof *blocks);
    float *q = malloc(P * dim * sizeof *q), *o1 = malloc(P * dim * sizeof *o1);
    float *o2 = malloc(P * dim * sizeof *o2), *row = malloc(kvd * sizeof *row);
    size_t nsc = attn_span_scratch_floats(tile, grp, P, hd);
    float *scr = malloc(nsc * sizeof *scr);
    if (!k || !v || !blocks || !q || !o1 || !o2 || !row || !scr)
        return 1;
    for (size_t b = 0; b < nb; b++) // blocks in reverse: a table that is not the identity
        blocks[b] = (int32_t)(nb - 1 - b);
    uint32_t s = 12345;
    for (size_t r = 0; r < nb * bt * L; r++)
        for (int half = 0; half < 2; half++) {
            for (size_t i = 0; i < kvd; i++) {
                s = s * 1664525u + 1013904223u;
                row[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (half ? 1.0f : 2.0f);
            }
            uint8_t *dst = (half ? v : k) + r * rowb;
            if (q8)
                tensor_quantize_row(TENSOR_Q8_0, row, dst, kvd);
            else
                kern_f32_to_f16((uint16_t *)(void *)dst, row, kvd);
        }
    for (size_t i = 0; i < P * dim; i++) {
        s = s * 1664525u + 1013904223u;
        q[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 4.0f;
    }
    double *tg = malloc((size_t)reps * sizeof *tg), *ts = malloc((size_t)reps * sizeof *ts);
    for (int r = 0; r < reps; r++) {
        for (int way = 0; way < 2; way++) {
            float *out = way ? o2 : o1;
            double t0 = cpu_s();
            for (size_t l = 0; l < L; l++) {
                attn_kv akv = {.k = k + l * layer, .v = v + l * layer, .row_bytes = rowb,
                               .block_tokens = bt, .is_q8 = q8 != 0};
                for (size_t c0 = 0; c0 < P; c0 += C) {
                    size_t n = P - c0 < C ? P - c0 : C;
                    for (size_t g = 0; g < nkv; g++) {
                        if (way == 0) {
                            for (size_t t = c0; t < c0 + n; t++)
                                attn_group(&akv, blocks, t + 1, g * hd, hd,
                                           q + t * dim + g * grp * hd, grp,
                                           out + t * dim + g * grp * hd, scr);
                        } else {
                            for (size_t t = c0; t < c0 + n; t += tile) {
                                size_t m = c0 + n - t < tile ? c0 + n - t : tile;
                                attn_span(&akv, blocks, t, m, g * hd, hd,
                                          q + t * dim + g * grp * hd, dim, grp,
                                          out + t * dim + g * grp * hd, dim, scr);
                            }
                        }
                    }
                }
            }
            (way ? ts : tg)[r] = cpu_s() - t0;
        }
    }
    if (memcmp(o1, o2, P * dim * sizeof *o1) != 0) {
        fprintf(stderr, "attn_prefill: attn_span and attn_group outputs differ\n");
        return 1;
    }
    qsort(tg, (size_t)reps, sizeof *tg, cmpd);
    qsort(ts, (size_t)reps, sizeof *ts, cmpd);
    double mg = tg[reps / 2], ms = ts[reps / 2];
    printf("%s, %s KV, %zu prompt tokens in chunks of %zu, %zu layers, one thread, "
           "median of %d (%s):\n", argv[9], q8 ? "q8_0" : "f16", P, C, L, reps, kern_simd_name());
    printf("  attn_group per token      %8.2f ms CPU  %7.2f us/token\n", mg * 1e3, mg * 1e6 / (double)P);
    printf("  attn_span, %2zu-token tiles %8.2f ms CPU  %7.2f us/token\n", tile, ms * 1e3,
           ms * 1e6 / (double)P);
    printf("  CPU ratio group / span    %8.2fx  (outputs bitwise equal)\n", mg / ms);
    return 0;
}
C
cc -O2 -I"$here/src" -I"$here/bench" "$tmp/attn_prefill.c" "$build/src/model/libferry_model.a" \
    "$build/src/base/libferry_base.a" -lm -lpthread -o "$tmp/attn_prefill"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
${PERF:-} "$tmp/attn_prefill" $dims "$q8" "$p" "$chunk" "$reps" "$shape"
