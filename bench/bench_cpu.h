/*
 * bench/bench_cpu.h — helpers shared by the C programs the bench/*.sh scripts
 * compile (gemm_cpu.sh, matvec_cpu.sh, attn_prefill.sh): CPU time and the
 * double comparison for qsort medians. Header-only; include after <time.h>.
 */
#ifndef FERRY_BENCH_CPU_H
#define FERRY_BENCH_CPU_H

#include <time.h>

/* CPU seconds of the whole process (every thread, spinning included): the figure
 * that holds up on a shared machine, where wall-clock rates do not. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* qsort comparison of doubles, ascending. */
static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
