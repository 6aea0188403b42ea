#!/usr/bin/env bash
# bench/kern_pair.sh — paired A/B of two versions of a kernel source in ONE process,
# alternating step by step, for a machine whose speed drifts by +-20% over seconds
# (this one: separate runs of the same binary differ by that much; the ratio of
# back-to-back steps does not: an A/A run gives a median of 1.00 with quartiles
# within ~3%).
#
#   mm:   src/model/kern_q8_avx2.c; the Q8_0 matmuls of a smollm-135m step (30
#         layers of q, k, v, o, gate, up, down and the 49,152-row head; 145 MB of
#         packed weights, so they stream from DRAM as in the server) with N
#         activation rows, on THREADS threads (pool chunks as kern_matmul's);
#         the activations are quantized once, outside the timing.
#   attn: src/model/attn_avx2.c; the attention of one decode step (attn_step.sh's:
#         S = 16 sequences x P = 128 positions x 30 layers, F16 K/V in a 256 MiB
#         pool with shuffled blocks), one thread.
# Prints each side's median step time and the median (and quartiles) over steps
# of A's time / B's time: > 1 means B is faster.
# Usage: bench/kern_pair.sh mm|attn A_SOURCE B_SOURCE [N (mm; 16) | P (attn; 128)] [STEPS]
#   A_SOURCE / B_SOURCE: files, or REV:path taken from git (e.g. main:src/model/kern_q8_avx2.c)
#   env THREADS (mm; default 2), BUILD (default build: links its static libraries)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?mm or attn} a=${2:?A source} b=${3:?B source}
build=${BUILD:-$here/build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() { # SOURCE DEST
    if [[ -f $1 ]]; then cp "$1" "$2"; else git -C "$here" show "$1" >"$2"; fi
}
fetch "$a" "$tmp/a.c"
fetch "$b" "$tmp/b.c"
cflags=(-O2 -std=gnu11 -D_GNU_SOURCE -I"$here/src" -I"$here/bench" -mavx2 -mfma -mf16c
        -ffp-contract=off)
libs=("$build/src/model/libferry_model.a" "$build/src/base/libferry_base.a" -lm -lpthread)
# sides SYM:NAME...: compiles a.c as A.o and b.c as B.o, each SYM renamed to NAME
# followed by the side's letter, so that both versions link into one program
sides() {
    for s in A B; do
        local defs=()
        for d in "$@"; do defs+=("-D${d%%:*}=${d#*:}$s"); done
        cc "${cflags[@]}" "${defs[@]}" -c "$tmp/$(tr AB ab <<<"$s").c" -o "$tmp/$s.o"
    done
}
case $mode in
mm)
    sides kern_q8_avx2_mm_q8_0:vq8_ kern_q8_avx2_mm_q4_0:vq4_
    cat >"$tmp/mm.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "bench_cpu.h"
#include "model/kern.h"
#include "model/kern_int.h"
#include "model/tensor.h"

/*
 * mm N STEPS: the Q8_0 matmuls of a smollm-135m step (30 layers of q, k, v, o,
 * gate, up, down and the 49,152-row head) with N activation rows, run by
 * kernel A (vq8_A) and kernel B (vq8_B) in turn, step by step (who goes first
 * alternates), on env THREADS threads with kern_matmul's pool chunks.
 */
void vq8_A(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n, float *y,
           size_t ldy);
void vq8_B(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n, float *y,
           size_t ldy);
typedef void (*mm_fn)(const kern_mat *, size_t, size_t, const kern_act *, size_t, float *,
                      size_t);

typedef struct job {
    mm_fn f;
    const kern_mat *w;
    const kern_act *a;
    size_t n;
    float *y;
} job;

static void rows(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    job *j = arg;
    j->f(j->w, begin, end, j->a, j->n, j->y, j->w->rows);
}

static pool *P;

static void run(mm_fn f, const kern_mat *w, const kern_act *a, size_t n, float *y)
{
    job j = {f, w, a, n, y};
    // kern.c's chunking: rows in multiples of 16, at least 32 KiB x rows of work
    pool_for_min(P, w->rows, 16, (32u << 10) / (w->row_bytes * n) + 1, rows, &j);
}

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static kern_mat mat(size_t rows, size_t cols, float *scratch)
{
    size_t rb;
    kern_mat m;
    uint8_t *w = NULL;
    if (tensor_row_bytes(TENSOR_Q8_0, cols, &rb) ||
        !(w = aligned_alloc(64, (rows * rb + 63) / 64 * 64)))
        exit(1);
    bench_weights(TENSOR_Q8_0, rows, cols, rb, w, scratch, 1);
    if (kern_mat_init(&m, TENSOR_Q8_0, rows, cols, w) || kern_mat_pack(&m))
        exit(1);
    return m;
}

/* x's n rows of cols quantized as kern_matmul does (it quantizes into its scratch:
 * run it once on an 8-row matrix and keep the scratch; the stride is kern.c's). */
static kern_act act(size_t cols, size_t n, const float *x)
{
    size_t sb = kern_scratch_bytes(TENSOR_Q8_0, cols, n);
    uint8_t *s = aligned_alloc(64, (sb + 63) / 64 * 64);
    float *tmp = malloc(cols * sizeof(float)), *y = malloc(8 * n * sizeof(float));
    if (!s || !tmp || !y)
        exit(1);
    kern_mat t = mat(8, cols, tmp);
    kern_matmul(NULL, &t, x, n, y, s, sb);
    return (kern_act){.x = x,
                      .q = (uint8_t *)(((uintptr_t)s + 63) & ~(uintptr_t)63),
                      .q_stride = (kern_act_sb_offset(cols) + cols / 8 + 63) & ~(size_t)63,
                      .cols = cols};
}

int main(int argc, char **argv)
{
    (void)argc;
    size_t n = strtoul(argv[1], NULL, 10);
    int steps = atoi(argv[2]), threads = getenv("THREADS") ? atoi(getenv("THREADS")) : 1;
    enum { L = 30 };
    float *x = malloc(n * 1536 * sizeof(float)), *y = malloc(n * 49152 * sizeof(float));
    double *t[2] = {malloc(steps * sizeof(double)), malloc(steps * sizeof(double))};
    double *r = malloc(steps * sizeof(double));
    if (n < 1 || steps < 1 || !x || !y || !t[0] || !t[1] || !r ||
        (threads > 1 && pool_new(threads, &P)))
        return 1;
    static kern_mat q[L], k[L], v[L], o[L], g[L], u[L], d[L];
    for (int l = 0; l < L; l++) {
        q[l] = mat(576, 576, x), k[l] = mat(192, 576, x), v[l] = mat(192, 576, x);
        o[l] = mat(576, 576, x), g[l] = mat(1536, 576, x), u[l] = mat(1536, 576, x);
        d[l] = mat(576, 1536, x);
    }
    kern_mat h = mat(49152, 576, x);
    srand(7);
    for (size_t i = 0; i < n * 1536; i++)
        x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    kern_act a576 = act(576, n, x), a1536 = act(1536, n, x);
    mm_fn fn[2] = {vq8_A, vq8_B};
    for (int st = -2; st < steps; st++) // two warm-up steps
        for (int side = 0; side < 2; side++) {
            int ve = (st & 1) ? 1 - side : side;
            double t0 = wall();
            for (int l = 0; l < L; l++) {
                run(fn[ve], &q[l], &a576, n, y);
                run(fn[ve], &k[l], &a576, n, y);
                run(fn[ve], &v[l], &a576, n, y);
                run(fn[ve], &o[l], &a576, n, y);
                run(fn[ve], &g[l], &a576, n, y);
                run(fn[ve], &u[l], &a576, n, y);
                run(fn[ve], &d[l], &a1536, n, y);
            }
            run(fn[ve], &h, &a576, n, y);
            if (st >= 0)
                t[ve][st] = wall() - t0;
        }
    for (int i = 0; i < steps; i++)
        r[i] = t[0][i] / t[1][i];
    qsort(r, steps, sizeof *r, cmpd);
    qsort(t[0], steps, sizeof(double), cmpd);
    qsort(t[1], steps, sizeof(double), cmpd);
    double macs = (double)n * (30.0 * (576 * 576 * 2 + 192 * 576 * 2 + 1536 * 576 * 3) +
                               49152.0 * 576);
    printf("A med %.2f ms (%.1f GMAC/s)  B med %.2f ms (%.1f GMAC/s)  B speedup: median %.3f  "
           "[q1 %.3f q3 %.3f]\n",
           t[0][steps / 2] * 1e3, macs / t[0][steps / 2] * 1e-9, t[1][steps / 2] * 1e3,
           macs / t[1][steps / 2] * 1e-9, r[steps / 2], r[steps / 4], r[3 * steps / 4]);
    pool_free(P);
    return 0;
}
C
    cc "${cflags[@]}" "$tmp/mm.c" "$tmp/A.o" "$tmp/B.o" "${libs[@]}" -o "$tmp/pair"
    echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); mm n=${4:-16}," \
        "${THREADS:-2} thread(s); A = $a, B = $b"
    THREADS=${THREADS:-2} "$tmp/pair" "${4:-16}" "${5:-30}"
    ;;
attn)
    sides attn_group_avx2:xattn_ attn_span_avx2:xspan_
    cat >"$tmp/attn.c" <<'C'
#include <stdio.h>
#include <stdlib.h>

#include "attn_step.h"
#include "bench_cpu.h"

void xattn_A(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off, size_t hd,
             const float *q, size_t n_q, float *out, float *scratch);
void xattn_B(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off, size_t hd,
             const float *q, size_t n_q, float *out, float *scratch);

/* attn S P STEPS: kernel A and kernel B in turn, step by step (who goes first alternates) */
int main(int argc, char **argv)
{
    (void)argc;
    size_t S = strtoul(argv[1], NULL, 10), P = strtoul(argv[2], NULL, 10);
    int steps = atoi(argv[3]);
    attn_step a;
    int rc = attn_step_make(&a, S, P);
    if (rc || steps < 1)
        return rc ? rc : 2;
    attn_step_fn fn[2] = {xattn_A, xattn_B};
    double *t[2] = {malloc(steps * sizeof(double)), malloc(steps * sizeof(double))};
    double *r = malloc(steps * sizeof(double));
    if (!t[0] || !t[1] || !r)
        return 1;
    for (int st = -2; st < steps; st++)
        for (int k = 0; k < 2; k++) {
            int ve = (st & 1) ? 1 - k : k;
            double dt = attn_step_run(&a, fn[ve], 0);
            if (st >= 0)
                t[ve][st] = dt;
        }
    for (int i = 0; i < steps; i++)
        r[i] = t[0][i] / t[1][i];
    qsort(r, steps, sizeof *r, cmpd);
    qsort(t[0], steps, sizeof(double), cmpd);
    qsort(t[1], steps, sizeof(double), cmpd);
    printf("A med %.2f ms  B med %.2f ms  B speedup: median %.3f  [q1 %.3f q3 %.3f]\n",
           t[0][steps / 2] * 1e3, t[1][steps / 2] * 1e3, r[steps / 2], r[steps / 4],
           r[3 * steps / 4]);
    return 0;
}
C
    cc "${cflags[@]}" "$tmp/attn.c" "$tmp/A.o" "$tmp/B.o" "${libs[@]}" -o "$tmp/pair"
    echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); attention of a" \
        "decode step, 16 sequences x ${4:-128} positions; A = $a, B = $b"
    "$tmp/pair" 16 "${4:-128}" "${5:-40}"
    ;;
*)
    echo "kern_pair.sh: mode is mm or attn" >&2
    exit 2
    ;;
esac
