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
case $mode in
mm)
    for s in A B; do
        cc "${cflags[@]}" -Dkern_q8_avx2_mm_q8_0=v${s}_q8 -Dkern_q8_avx2_mm_q4_0=v${s}_q4 \
            -c "$tmp/$(tr AB ab <<<"$s").c" -o "$tmp/$s.o"
    done
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
/* mm N STEPS [LAYERS]: the Q8_0 matmuls of a smollm-135m step (30 layers of q, k, v, o, gate,
 * up, down and the 49,152-row head) with n activation rows, run by kernel A (vA_q8) and
 * kernel B (vB_q8) in turn, step by step, on env THREADS threads. */
void vA_q8(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n, float *y, size_t ldy);
void vB_q8(const kern_mat *w, size_t r0, size_t r1, const kern_act *a, size_t n, float *y, size_t ldy);
typedef void (*mmfn)(const kern_mat *, size_t, size_t, const kern_act *, size_t, float *, size_t);
typedef struct { mmfn f; const kern_mat *w; const kern_act *a; size_t n; float *y; } job;
static void cb(void *arg, size_t b, size_t e, int tid) { (void)tid; job *j = arg; j->f(j->w, b, e, j->a, j->n, j->y, j->w->rows); }
static pool *P;
static void run(mmfn f, const kern_mat *w, const kern_act *a, size_t n, float *y)
{
    job j = {f, w, a, n, y};
    size_t min_rows = (32u << 10) / (w->row_bytes * n) + 1;
    if (P) pool_for_min(P, w->rows, 16, min_rows, cb, &j); else f(w, 0, w->rows, a, n, y, w->rows);
}
static double wall(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static kern_mat mk(size_t rows, size_t cols, float *x)
{
    size_t rb; if (tensor_row_bytes(TENSOR_Q8_0, cols, &rb)) exit(1);
    uint8_t *w = aligned_alloc(64, (rows * rb + 63) / 64 * 64);
    bench_weights(TENSOR_Q8_0, rows, cols, rb, w, x, 1);
    kern_mat m; if (kern_mat_init(&m, TENSOR_Q8_0, rows, cols, w) || kern_mat_pack(&m)) exit(1);
    return m;
}
static kern_act act_for(size_t cols, size_t n, float *x)
{
    /* kern_matmul on a tiny matrix quantizes x into the scratch: keep that */
    size_t sb = kern_scratch_bytes(TENSOR_Q8_0, cols, n);
    uint8_t *s = aligned_alloc(64, (sb + 63) / 64 * 64);
    float *tmp = malloc(cols * 4);
    kern_mat t = mk(8, cols, tmp);
    float *y = malloc(8 * n * 4);
    kern_matmul(NULL, &t, x, n, y, s, sb);
    size_t stride = (kern_act_sb_offset(cols) + cols / 8 + 63) & ~(size_t)63;
    kern_act a = {.x = x, .q = (uint8_t *)(((uintptr_t)s + 63) & ~(uintptr_t)63), .q_stride = stride, .cols = cols};
    return a;
}
int main(int argc, char **argv)
{
    size_t n = strtoul(argv[1], 0, 10); int steps = atoi(argv[2]);
    int nl = argc > 3 ? atoi(argv[3]) : 30; int head = getenv("NOHEAD") ? 0 : 1;
    enum { L = 30 };
    float *x = malloc(n * 1536 * 4 + 1536 * 8), *y = malloc(n * 49152 * 4);
    kern_mat q[L], k[L], v[L], o[L], g[L], u[L], d[L], h;
    for (int l = 0; l < nl; l++) { q[l] = mk(576, 576, x); k[l] = mk(192, 576, x); v[l] = mk(192, 576, x);
        o[l] = mk(576, 576, x); g[l] = mk(1536, 576, x); u[l] = mk(1536, 576, x); d[l] = mk(576, 1536, x); }
    h = mk(49152, 576, x);
    srand(7);
    for (size_t i = 0; i < n * 1536; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    kern_act a576 = act_for(576, n, x), a1536 = act_for(1536, n, x);
    mmfn fn[2] = {vA_q8, vB_q8};
    if (getenv("THREADS") && atoi(getenv("THREADS")) > 1 && pool_new(atoi(getenv("THREADS")), &P)) return 1;
    double *t[2] = {malloc(steps * 8), malloc(steps * 8)};
    for (int st = -2; st < steps; st++)
        for (int vv = 0; vv < 2; vv++) {
            int ve = (st & 1) ? 1 - vv : vv; // alternate who goes first
            mmfn f = fn[ve];
            double t0 = wall();
            for (int l0 = 0; l0 < L; l0++) {
                int l = l0 % nl;
                run(f, &q[l], &a576, n, y);
                run(f, &k[l], &a576, n, y);
                run(f, &v[l], &a576, n, y);
                run(f, &o[l], &a576, n, y);
                run(f, &g[l], &a576, n, y);
                run(f, &u[l], &a576, n, y);
                run(f, &d[l], &a1536, n, y);
            }
            if (head) run(f, &h, &a576, n, y);
            if (st >= 0) t[ve][st] = wall() - t0;
        }
    double *r = malloc(steps * 8);
    for (int s = 0; s < steps; s++) r[s] = t[0][s] / t[1][s];
    qsort(r, steps, 8, cmpd); qsort(t[0], steps, 8, cmpd); qsort(t[1], steps, 8, cmpd);
    double macs = n * (30.0 * (576*576*2 + 192*576*2 + 1536*576*3) + head * 49152.0 * 576);
    printf("A med %.2f ms (%.1f GMAC/s)  B med %.2f ms (%.1f GMAC/s)  B speedup: median %.3f  [q1 %.3f q3 %.3f]\n",
        t[0][steps/2]*1e3, macs/t[0][steps/2]*1e-9, t[1][steps/2]*1e3, macs/t[1][steps/2]*1e-9, r[steps/2], r[steps/4], r[3*steps/4]);
    return 0;
}
C
    cc "${cflags[@]}" "$tmp/mm.c" "$tmp/A.o" "$tmp/B.o" "${libs[@]}" -o "$tmp/pair"
    echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); mm n=${4:-16}," \
        "${THREADS:-2} thread(s); A = $a, B = $b"
    THREADS=${THREADS:-2} "$tmp/pair" "${4:-16}" "${5:-30}"
    ;;
attn)
    for s in A B; do
        cc "${cflags[@]}" -Dattn_group_avx2=x${s}_attn -Dattn_span_avx2=x${s}_span \
            -c "$tmp/$(tr AB ab <<<"$s").c" -o "$tmp/$s.o"
    done
    cat >"$tmp/attn.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "model/attn.h"
#include "model/attn_int.h"
void xA_attn(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off, size_t hd, const float *q, size_t n_q, float *out, float *scratch);
void xB_attn(const attn_kv *kv, const int32_t *blocks, size_t n_pos, size_t off, size_t hd, const float *q, size_t n_q, float *out, float *scratch);
static int cmpd(const void *a, const void *b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}

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
    if (S * nb > nblk || P == 0 || reps < 1 || reps > 1000)
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
    double tv[2][1000];
    for (int r = 0; r < 2 * reps; r++) {
        int ve = (r / 2 & 1) ? 1 - r % 2 : r % 2;
        void (*fn)(const attn_kv *, const int32_t *, size_t, size_t, size_t, const float *, size_t, float *, float *) = ve ? xB_attn : xA_attn;
        double t0 = now_s();
        for (size_t l = 0; l < L; l++) {
            size_t ll = getenv("HOT") ? 0 : l;
            attn_kv akv = {.k = k + ll * layer, .v = v + ll * layer, .row_bytes = rowb,
                           .block_tokens = bt, .is_q8 = false};
            for (size_t s = 0; s < S; s++)
                for (size_t g = 0; g < nkv; g++)
                    fn(&akv, perm + s * nb, P, g * hd, hd, q + s * dim + g * grp * hd,
                               grp, out + s * dim + g * grp * hd, scr);
        }
        double t = now_s() - t0;
        tv[ve][r / 2] = t;
        if (t < best)
            best = t;
    }
    { double rr[1000]; for (int i = 0; i < reps; i++) rr[i] = tv[0][i] / tv[1][i];
      qsort(rr, reps, 8, cmpd); qsort(tv[0], reps, 8, cmpd); qsort(tv[1], reps, 8, cmpd);
      printf("A med %.2f ms  B med %.2f ms  B speedup median %.3f [q1 %.3f q3 %.3f]\n", tv[0][reps/2]*1e3, tv[1][reps/2]*1e3, rr[reps/2], rr[reps/4], rr[3*reps/4]); }
    double mb = (double)(S * P * L * rowb * 2) / 1e6;
    printf("attention of one decode step, %zu sequences x %zu positions x %zu layers: best of "
           "%d %.2f ms (one thread), %.1f MB of K/V read, %.2f GB/s%s\n",
           S, P, L, reps, best * 1e3, mb, mb / 1e3 / best, getenv("HOT") ? " (HOT: cached)" : "");
    return 0;
}
C
    cc "${cflags[@]}" "$tmp/attn.c" "$tmp/A.o" "$tmp/B.o" "${libs[@]}" -o "$tmp/pair"
    echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg); attention of a" \
        "decode step, 16 sequences x ${4:-128} positions; A = $a, B = $b"
    "$tmp/pair" 16 "${4:-128}" "${5:-40}" | head -1
    ;;
*)
    echo "kern_pair.sh: mode is mm or attn" >&2
    exit 2
    ;;
esac
