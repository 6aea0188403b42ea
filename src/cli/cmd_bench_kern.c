/*
 * ferry bench-kern — micro-benchmark of the matmul kernels.
 *
 * For each weight type, in one run and with the same threads:
 *   read     the machine's read bandwidth: summing a 256 MiB buffer (bytes/s);
 *   matvec   n = 1 over a weight matrix of about 256 MiB (far larger than the
 *            caches, so weights stream from memory as in decode): weight
 *            bytes per second, and that as a share of the read bandwidth;
 *   matmul   n activation rows (default 512) against a 5632 x 2048 matrix (the
 *            TinyLlama FFN shape, as in prefill): multiply-adds per second.
 * Each figure is the median of --runs runs (default 5). The machine is shared,
 * so figures vary between runs; compare ratios measured in the same run.
 */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/clock.h"
#include "base/pool.h"
#include "cli/cli.h"
#include "model/kern.h"
#include "model/tensor.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry bench-kern [-t N] [-n ROWS] [--runs 5] [--type T[,T...]] [--mib 256]\n"
               "  matvec weight streaming GB/s against read bandwidth, and matmul GMAC/s,\n"
               "  per weight type (default q4_0,q8_0,q4_K,q6_K,f16); FERRY_SIMD=scalar for\n"
               "  the scalar path\n");
}

typedef struct read_job {
    const uint64_t *buf;
    uint64_t sums[POOL_THREADS_MAX];
} read_job;

static void read_chunk(void *arg, size_t begin, size_t end, int tid)
{
    read_job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = begin;
    for (; i + 4 <= end; i += 4) {
        s0 += j->buf[i];
        s1 += j->buf[i + 1];
        s2 += j->buf[i + 2];
        s3 += j->buf[i + 3];
    }
    for (; i < end; i++)
        s0 += j->buf[i];
    j->sums[tid] += s0 + s1 + s2 + s3;
}

/* Read bandwidth in bytes/s: median of runs sums over a 256 MiB buffer. */
static double read_bandwidth(pool *p, int runs)
{
    const size_t n = ((size_t)256 << 20) / 8;
    uint64_t *buf = malloc(n * 8);
    if (!buf)
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = i;
    read_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(buf);
        return 0;
    }
    j->buf = buf;
    double v[64];
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = clock_mono_ns();
        pool_for(p, n, 1 << 16, read_chunk, j);
        v[r] = (double)(n * 8) / ((double)(clock_mono_ns() - t0) * 1e-9);
    }
    uint64_t s = 0;
    for (int t = 0; t < POOL_THREADS_MAX; t++)
        s += j->sums[t];
    if (s == 1) /* keep the sums alive */
        fprintf(stderr, "#");
    free(buf);
    free(j);
    return cli_median(v, (size_t)runs);
}

/* CPU seconds of the whole process (all threads); under a loaded machine the
 * work per CPU-second is the steadier figure. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill_random(float *x, size_t n, uint64_t *st)
{
    for (size_t i = 0; i < n; i++) {
        *st = *st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(*st >> 40) / 16777216.0f - 0.5f) * 0.1f;
    }
}

/* A rows x cols matrix of type t with random quantized rows (one row quantized, repeated
 * with small changes is enough for timing: the bytes are what matter). */
static uint8_t *make_matrix(tensor_type t, size_t rows, size_t cols, size_t *row_bytes)
{
    if (tensor_row_bytes(t, cols, row_bytes))
        return NULL;
    uint8_t *w = malloc(*row_bytes * rows);
    float *tmp = malloc(cols * sizeof(float));
    if (!w || !tmp) {
        free(w);
        free(tmp);
        return NULL;
    }
    uint64_t st = 42;
    uint8_t *proto = malloc(*row_bytes * 16);
    if (!proto) {
        free(w);
        free(tmp);
        return NULL;
    }
    for (size_t r = 0; r < 16; r++) {
        fill_random(tmp, cols, &st);
        tensor_quantize_row(t, tmp, proto + r * *row_bytes, cols);
    }
    for (size_t r = 0; r < rows; r++)
        memcpy(w + r * *row_bytes, proto + (r % 16) * *row_bytes, *row_bytes);
    free(proto);
    free(tmp);
    return w;
}

static int bench_type(pool *p, tensor_type t, size_t n_rows, int runs, size_t mib, double read_bw)
{
    const size_t cols = 2048;
    size_t rb = 0;
    /* matvec over ~mib MiB of weights */
    if (tensor_row_bytes(t, cols, &rb))
        return ERR_INVAL;
    size_t rows = (mib << 20) / rb;
    if (rows < 5632)
        rows = 5632;
    uint8_t *w = make_matrix(t, rows, cols, &rb);
    float *x = malloc(n_rows * cols * sizeof(float));
    float *y = malloc((rows > 5632 * n_rows ? rows : 5632 * n_rows) * sizeof(float));
    size_t sb = kern_scratch_bytes(t, cols, n_rows);
    void *scratch = sb ? malloc(sb) : NULL;
    if (!w || !x || !y || (sb && !scratch)) {
        free(w);
        free(x);
        free(y);
        free(scratch);
        return ERR_NOMEM;
    }
    uint64_t st = 7;
    fill_random(x, n_rows * cols, &st);
    kern_mat m;
    if (kern_mat_init(&m, t, rows, cols, w) || kern_mat_pack(&m))
        return ERR_INTERNAL;
    double v[64], vc[64];
    kern_matmul(p, &m, x, 1, y, scratch, sb); /* warm-up, fault pages */
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = clock_mono_ns();
        kern_matmul(p, &m, x, 1, y, scratch, sb);
        v[r] = (double)(rows * rb) / ((double)(clock_mono_ns() - t0) * 1e-9);
    }
    double mv = cli_median(v, (size_t)runs);
    /* matmul: 5632 x 2048, n_rows activation rows */
    kern_mat_unpack(&m);
    kern_mat m2;
    if (kern_mat_init(&m2, t, 5632, cols, w) || kern_mat_pack(&m2))
        return ERR_INTERNAL;
    kern_matmul(p, &m2, x, n_rows, y, scratch, sb);
    int mruns = runs < 3 ? runs : 3;
    for (int r = 0; r < mruns; r++) {
        uint64_t t0 = clock_mono_ns();
        double c0 = cpu_s();
        kern_matmul(p, &m2, x, n_rows, y, scratch, sb);
        double macs = (double)(5632 * cols * n_rows);
        vc[r] = macs / (cpu_s() - c0);
        v[r] = macs / ((double)(clock_mono_ns() - t0) * 1e-9);
    }
    double mm = cli_median(v, (size_t)mruns), mmc = cli_median(vc, (size_t)mruns);
    printf("%-5s matvec %6.2f GB/s (%5.1f%% of read)   matmul n=%zu %7.2f GMAC/s wall, %6.2f "
           "GMAC per CPU-second\n",
           tensor_type_name(t), mv * 1e-9, 100.0 * mv / read_bw, n_rows, mm * 1e-9, mmc * 1e-9);
    fflush(stdout);
    kern_mat_unpack(&m2);
    free(w);
    free(x);
    free(y);
    free(scratch);
    return 0;
}

static int parse_type(const char *s, size_t len, tensor_type *out)
{
    for (uint32_t id = 0; id < 64; id++) {
        const char *nm = tensor_type_name(id);
        if (tensor_type_supported(id) && strlen(nm) == len && strncmp(nm, s, len) == 0) {
            *out = (tensor_type)id;
            return 0;
        }
    }
    return ERR_INVAL;
}

int cli_cmd_bench_kern(int argc, char **argv)
{
    int64_t n_threads = 0, n_rows = 512, runs = 5, mib = 256;
    const char *types = "q4_0,q8_0,q4_K,q6_K,f16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-t") && has) {
            if (parse_i64(argv[++i], 1, POOL_THREADS_MAX, &n_threads)) {
                cli_errorf("bench-kern: -t %s: expected 1..%d", argv[i], POOL_THREADS_MAX);
                return 2;
            }
        } else if (!strcmp(a, "-n") && has) {
            if (parse_i64(argv[++i], 1, 4096, &n_rows)) {
                cli_errorf("bench-kern: -n %s: expected 1..4096", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--runs") && has) {
            if (parse_i64(argv[++i], 1, 63, &runs)) {
                cli_errorf("bench-kern: --runs %s: expected 1..63", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--mib") && has) {
            if (parse_i64(argv[++i], 16, 4096, &mib)) {
                cli_errorf("bench-kern: --mib %s: expected 16..4096", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--type") && has) {
            types = argv[++i];
        } else {
            cli_errorf("bench-kern: unexpected argument %s (see --help)", a);
            return 2;
        }
    }
    tensor_type list[16];
    size_t nt = 0;
    for (const char *s = types; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (nt == ARRAY_LEN(list) || parse_type(s, len, &list[nt])) {
            cli_errorf("bench-kern: --type %s: expected a list of f32,f16,bf16,q8_0,q4_0,q4_K,q6_K",
                       types);
            return 2;
        }
        nt++;
        s = e ? e + 1 : s + len;
    }
    pool *p = NULL;
    if (pool_new((int)n_threads, &p)) {
        cli_errorf("bench-kern: cannot start %lld threads", (long long)n_threads);
        return 1;
    }
    double rbw = read_bandwidth(p, (int)runs);
    printf("simd %s, %d threads, read bandwidth %.2f GB/s\n", kern_simd_name(), pool_threads(p),
           rbw * 1e-9);
    int rc = 0;
    for (size_t k = 0; k < nt && rc == 0; k++)
        rc = bench_type(p, list[k], (size_t)n_rows, (int)runs, (size_t)mib, rbw);
    pool_free(p);
    if (rc) {
        cli_errorf("bench-kern: %s", err_str(rc));
        return 1;
    }
    return 0;
}
