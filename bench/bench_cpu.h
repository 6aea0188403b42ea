/*
 * bench/bench_cpu.h — helpers shared by the C programs the bench/*.sh scripts
 * compile (gemm_cpu.sh, matvec_cpu.sh, attn_prefill.sh): CPU time, the
 * double comparison for qsort medians, and seeded test weights. Header-only.
 */
#ifndef FERRY_BENCH_CPU_H
#define FERRY_BENCH_CPU_H

#include <stdlib.h>
#include <time.h>

#include "model/tensor.h"

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

/*
 * rows quantized rows of type t (row_bytes rb) into w from seeded random
 * weights (srand(1), uniform ±0.02), using x (cols floats) as scratch; then x
 * gets n_x * cols activations uniform in ±0.5 (x must hold that many).
 */
static void bench_weights(tensor_type t, size_t rows, size_t cols, size_t rb, uint8_t *w,
                          float *x, size_t n_x)
{
    srand(1);
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < cols; i++)
            x[i] = ((float)rand() / (float)RAND_MAX - 0.5f) * 0.04f;
        tensor_quantize_row(t, x, w + r * rb, cols);
    }
    for (size_t i = 0; i < n_x * cols; i++)
        x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
}

#endif
