#!/usr/bin/env bash
# bench/step_pair.sh — the engine's batched-decode scaling without the server:
# llama_forward decode steps of S sequences and of 1 sequence, alternated step by
# step in one process (the machine's speed drifts by +-20% over seconds here, so
# only back-to-back steps compare), on THREADS threads. Each sequence first
# prefills a 64-token prompt; the steps then decode 1 token per sequence each.
# Prints the median step times, the aggregate tokens/s of each, and the median
# over step pairs of S * t(1) / t(S): the c16 / c1 figure of issue 4 for the
# engine alone (bench/serving.sh measures it through HTTP, with admission).
#
# Usage: bench/step_pair.sh MODEL.gguf [S (16)] [PAIRS (192)]
#   env THREADS (default 2), BUILD (default build: links its static libraries)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
model=${1:?model.gguf}
S=${2:-16}
pairs=${3:-192}
build=${BUILD:-$here/build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/step.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/err.h"
#include "base/pool.h"
#include "bench_cpu.h"
#include "model/llama.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, const err_msg *e)
{
    fprintf(stderr, "step_pair: %s: %s\n", what, e ? e->text : "failed");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *path = argv[1];
    int S = atoi(argv[2]), N = atoi(argv[3]), threads = atoi(argv[4]);
    enum { P = 64 };
    if (S < 1 || S > 64 || N < 1)
        die("arguments", NULL);
    err_msg e;
    err_clear(&e);
    model *m;
    pool *p;
    llama_ctx *c;
    llama_kv *kv;
    if (model_load(path, &m, &e) < 0)
        die("load", &e);
    const llama_hparams *hp = model_hparams(m);
    if (pool_new(threads, &p) < 0)
        die("pool", NULL);
    llama_config cfg = llama_config_default();
    cfg.pool = p;
    cfg.max_ctx = P + (size_t)N + 1;
    cfg.max_logits = 64;
    if (llama_ctx_new(m, &cfg, &c, &e) < 0)
        die("ctx", &e);
    // S sequences for the batched steps, one more for the single ones
    size_t bt = 16, per = (P + (size_t)N + bt) / bt + 1, nseq = (size_t)S + 1;
    if (llama_kv_new(m, per * nseq, bt, &kv, &e) < 0)
        die("kv", &e);
    int32_t *tab = malloc(per * nseq * sizeof *tab), *toks = malloc(P * nseq * sizeof *toks);
    float *lg = malloc((size_t)S * hp->n_vocab * sizeof *lg);
    double *t1 = malloc(N * sizeof(double)), *ts = malloc(N * sizeof(double)),
           *r = malloc(N * sizeof(double));
    llama_span *sp = malloc(nseq * sizeof *sp);
    size_t *pos = malloc(nseq * sizeof *pos);
    if (!tab || !toks || !lg || !t1 || !ts || !r || !sp || !pos)
        die("out of memory", NULL);
    for (size_t i = 0; i < per * nseq; i++)
        tab[i] = (int32_t)i;
    uint64_t x = 1;
    for (size_t i = 0; i < P * nseq; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % hp->n_vocab);
    }
    for (size_t s = 0; s < nseq; s++) {
        sp[0] = (llama_span){toks + P * s, P, 0, tab + per * s, per, 1};
        if (llama_forward(c, kv, sp, 1, lg, &e) < 0)
            die("prefill", &e);
        pos[s] = P;
    }
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 2; k++) { // who goes first alternates
            if ((k == 0) == (i % 2 == 0)) {
                for (int s = 0; s < S; s++)
                    sp[s] = (llama_span){&toks[P * s], 1, pos[s]++, tab + per * s, per, 1};
                double a = now();
                if (llama_forward(c, kv, sp, (size_t)S, lg, &e) < 0)
                    die("step", &e);
                ts[i] = now() - a;
            } else {
                sp[0] = (llama_span){&toks[P * S], 1, pos[S]++, tab + per * S, per, 1};
                double a = now();
                if (llama_forward(c, kv, sp, 1, lg, &e) < 0)
                    die("step", &e);
                t1[i] = now() - a;
            }
        }
        r[i] = S * t1[i] / ts[i];
    }
    qsort(t1, N, sizeof *t1, cmpd);
    qsort(ts, N, sizeof *ts, cmpd);
    qsort(r, N, sizeof *r, cmpd);
    printf("1-sequence step %.2f ms (%.1f tok/s); %d-sequence step %.2f ms (%.1f tok/s); "
           "%d x t(1) / t(%d): median %.2f [q1 %.2f q3 %.2f] over %d pairs\n",
           t1[N / 2] * 1e3, 1 / t1[N / 2], S, ts[N / 2] * 1e3, S / ts[N / 2], S, S, r[N / 2],
           r[N / 4], r[3 * N / 4], N);
    return 0;
}
C
cc -O2 -std=gnu11 -D_GNU_SOURCE -I"$here/src" -I"$here/bench" "$tmp/step.c" "$build/src/model/libferry_model.a" \
    "$build/src/base/libferry_base.a" -lm -lpthread -o "$tmp/step"
echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); $model, S=$S," \
    "${THREADS:-2} thread(s)"
"$tmp/step" "$model" "$S" "$pairs" "${THREADS:-2}"
