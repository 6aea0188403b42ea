/*
 * cli/cmd_bench_index — `ferry bench-index`: builds an HNSW index from a
 * .fvecs base file, runs the .fvecs queries at each ef and reports recall@k
 * against the .ivecs ground truth, queries/s and p50/p99 latency, plus build
 * time and index memory. Files are the TEXMEX formats: per vector an int32
 * dimension then that many float32 (.fvecs) or int32 (.ivecs), little-endian.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/buf.h"
#include "base/clock.h"
#include "cli/cli.h"
#include "vector/vector.h"

#define BENCH_EF_MAX_COUNT 32
#define BENCH_FILE_MAX ((uint64_t)16 << 30)  // 16 GiB per input file

static const char *bench_index_usage =
    "usage: ferry bench-index --base B.fvecs --queries Q.fvecs --truth T.ivecs\n"
    "                         --metric l2|ip|cosine [--M 16] [--ef-construction 200]\n"
    "                         [--ef 10,16,32,64,128,256] [-k 10] [-t THREADS]\n"
    "                         [--runs 5] [--save F] [--load F] [--json]\n"
    "Builds an HNSW index (one thread) and prints, per ef, recall@k against the\n"
    "ground truth, queries/s (median of --runs timed passes after a warm-up pass,\n"
    "queries spread over -t threads) and p50/p99 latency, plus build time and\n"
    "index memory. --save writes the built index to F; --load reads F instead of\n"
    "building (build time is then the load time). --json prints one JSON object\n"
    "per line instead.\n";

typedef struct vecs_file {
    size_t n, d;
    void *data;  // (n, d) float or int32, dimension words stripped
} vecs_file;

/* Reads a .fvecs/.ivecs file; every record must have the same dimension. */
static int read_vecs(const char *path, vecs_file *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_errorf("cannot open %s", path);
        return ERR_IO;
    }
    int rc = ERR_FORMAT;
    unsigned char *raw = NULL;
    if (fseek(f, 0, SEEK_END) != 0)
        goto out;
    long sz = ftell(f);
    if (sz < 4 || (uint64_t)sz > BENCH_FILE_MAX || fseek(f, 0, SEEK_SET) != 0) {
        cli_errorf("%s: size %ld is not a vecs file (4 bytes .. 16 GiB)", path, sz);
        goto out;
    }
    raw = malloc((size_t)sz);
    if (!raw || fread(raw, 1, (size_t)sz, f) != (size_t)sz) {
        cli_errorf("%s: cannot read %ld bytes", path, sz);
        goto out;
    }
    int32_t d;
    memcpy(&d, raw, 4);
    size_t rec;
    if (d < 1 || d > VEC_DIM_MAX || !size_mul_ok((size_t)d + 1, 4, &rec) ||
        (size_t)sz % rec != 0) {
        cli_errorf("%s: dimension %d does not fit the file size %ld", path, d, sz);
        goto out;
    }
    size_t n = (size_t)sz / rec;
    for (size_t i = 0; i < n; i++) {
        int32_t di;
        memcpy(&di, raw + i * rec, 4);
        if (di != d) {
            cli_errorf("%s: vector %zu has dimension %d, the first has %d", path, i, di, d);
            goto out;
        }
        /* Strip the dimension word in place: record i moves to i * d * 4. */
        memmove(raw + i * (size_t)d * 4, raw + i * rec + 4, (size_t)d * 4);
    }
    out->n = n;
    out->d = (size_t)d;
    out->data = raw;
    raw = NULL;
    rc = 0;
out:
    free(raw);
    fclose(f);
    return rc;
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            int64_t v;
            char *p = line + 6, *end;
            while (*p == ' ' || *p == '\t')
                p++;
            end = strchr(p, ' ');
            if (end)
                *end = '\0';
            if (parse_i64(p, 0, INT64_MAX, &v) == 0)
                kb = (size_t)v;
        }
    }
    fclose(f);
    return kb * 1024;
}

typedef struct bench_job {
    hnsw_index *idx;
    const vecs_file *q;
    size_t k, ef, first, last;
    vec_hit *hits;     // (nq, k)
    int *nhits;        // (nq)
    double *lat_us;    // (nq)
    int rc;
} bench_job;

static void *run_queries(void *arg)
{
    bench_job *j = arg;
    hnsw_search_params p = {.ef = j->ef};
    const float *qv = j->q->data;
    for (size_t i = j->first; i < j->last; i++) {
        uint64_t t0 = clock_mono_ns();
        int r = hnsw_index_search(j->idx, qv + i * j->q->d, j->k, &p, j->hits + i * j->k, NULL);
        j->lat_us[i] = (double)(clock_mono_ns() - t0) / 1e3;
        if (r < 0) {
            j->rc = r;
            return NULL;
        }
        j->nhits[i] = r;
    }
    return NULL;
}

/* One pass over all queries on t threads; returns wall seconds or < 0 on error. */
static double pass(hnsw_index *idx, const vecs_file *q, size_t k, size_t ef, int t, vec_hit *hits,
                   int *nhits, double *lat)
{
    bench_job jobs[256];
    pthread_t th[256];
    uint64_t t0 = clock_mono_ns();
    for (int i = 0; i < t; i++) {
        jobs[i] = (bench_job){idx, q, k, ef, q->n * (size_t)i / (size_t)t,
                              q->n * (size_t)(i + 1) / (size_t)t, hits, nhits, lat, 0};
        if (t == 1)
            run_queries(&jobs[i]);
        else if (pthread_create(&th[i], NULL, run_queries, &jobs[i]) != 0)
            return -1;
    }
    if (t > 1)
        for (int i = 0; i < t; i++)
            pthread_join(th[i], NULL);
    double s = (double)(clock_mono_ns() - t0) / 1e9;
    for (int i = 0; i < t; i++)
        if (jobs[i].rc)
            return -1;
    return s;
}

/* CPU seconds used by this process so far (all threads). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_size_arg(const char *flag, const char *v, int64_t lo, int64_t hi, size_t *out)
{
    int64_t x;
    if (!v || parse_i64(v, lo, hi, &x) != 0) {
        cli_errorf("%s wants an integer in %lld..%lld", flag, (long long)lo, (long long)hi);
        return ERR_INVAL;
    }
    *out = (size_t)x;
    return 0;
}

int cli_cmd_bench_index(int argc, char **argv)
{
    const char *base_p = NULL, *query_p = NULL, *truth_p = NULL, *metric_s = NULL;
    const char *ef_s = "10,16,32,64,128,256", *save_p = NULL, *load_p = NULL;
    size_t M = 16, efc = 200, k = 10, threads = 1, runs = 5;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(bench_index_usage, stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        } else if (!v) {
            cli_errorf("%s needs a value (see ferry bench-index --help)", a);
            return 2;
        } else if (strcmp(a, "--base") == 0) {
            base_p = v;
        } else if (strcmp(a, "--queries") == 0) {
            query_p = v;
        } else if (strcmp(a, "--truth") == 0) {
            truth_p = v;
        } else if (strcmp(a, "--metric") == 0) {
            metric_s = v;
        } else if (strcmp(a, "--save") == 0) {
            save_p = v;
        } else if (strcmp(a, "--load") == 0) {
            load_p = v;
        } else if (strcmp(a, "--ef") == 0) {
            ef_s = v;
        } else if (strcmp(a, "--M") == 0) {
            rc = parse_size_arg(a, v, HNSW_M_MIN, HNSW_M_MAX, &M);
        } else if (strcmp(a, "--ef-construction") == 0) {
            rc = parse_size_arg(a, v, 1, HNSW_EF_MAX, &efc);
        } else if (strcmp(a, "-k") == 0) {
            rc = parse_size_arg(a, v, 1, HNSW_EF_MAX, &k);
        } else if (strcmp(a, "-t") == 0) {
            rc = parse_size_arg(a, v, 1, 256, &threads);
        } else if (strcmp(a, "--runs") == 0) {
            rc = parse_size_arg(a, v, 1, 1000, &runs);
        } else {
            cli_errorf("unknown option %s (see ferry bench-index --help)", a);
            return 2;
        }
        if (rc)
            return 2;
        i++;
    }
    vec_metric metric;
    if (!base_p || !query_p || !truth_p || !metric_s) {
        cli_errorf("--base, --queries, --truth and --metric are required (see --help)");
        return 2;
    }
    if (vec_metric_parse(metric_s, &metric) != 0) {
        cli_errorf("--metric wants l2, ip or cosine, not \"%s\"", metric_s);
        return 2;
    }
    size_t efs[BENCH_EF_MAX_COUNT], nef = 0;
    {
        char tmp[512];
        if (strlen(ef_s) >= sizeof tmp) {
            cli_errorf("--ef list is too long");
            return 2;
        }
        memcpy(tmp, ef_s, strlen(ef_s) + 1);
        for (char *p = tmp; *p;) {
            char *c = strchr(p, ',');
            if (c)
                *c = '\0';
            if (nef == BENCH_EF_MAX_COUNT) {
                cli_errorf("--ef wants at most %d comma-separated values", BENCH_EF_MAX_COUNT);
                return 2;
            }
            if (parse_size_arg("--ef", p, 1, HNSW_EF_MAX, &efs[nef++]) != 0)
                return 2; // named by parse_size_arg
            if (!c)
                break;
            p = c + 1;
        }
    }

    int status = 2;
    vecs_file base = {0}, q = {0}, truth = {0};
    hnsw_index *idx = NULL;
    vec_hit *hits = NULL;
    int *nhits = NULL;
    double *lat = NULL, *passes = NULL, *cpus = NULL;
    if (read_vecs(base_p, &base) || read_vecs(query_p, &q) || read_vecs(truth_p, &truth))
        goto out;
    if (q.d != base.d || truth.n < q.n || truth.d < k) {
        cli_errorf("files disagree: base dim %zu, query dim %zu, %zu queries, %zu truth rows of "
                   "%zu (need k=%zu)",
                   base.d, q.d, q.n, truth.n, truth.d, k);
        goto out;
    }
    if (base.n == 0 || q.n == 0 || base.n > HNSW_NODES_MAX) {
        cli_errorf("need 1..%u base vectors and at least one query", HNSW_NODES_MAX);
        goto out;
    }
    if (efc < M) {
        cli_errorf("--ef-construction %zu is below --M %zu", efc, M);
        goto out;
    }
    hits = malloc(q.n * k * sizeof *hits);
    nhits = calloc(q.n, sizeof *nhits);
    lat = malloc(q.n * runs * sizeof *lat);
    passes = malloc(runs * sizeof *passes);
    cpus = malloc(runs * sizeof *cpus);
    if (!hits || !nhits || !lat || !passes || !cpus) {
        cli_errorf("out of memory");
        goto out;
    }

    vec_kernels kern;
    vec_kernels_select(&kern);
    hnsw_config cfg = hnsw_config_default();
    cfg.dim = base.d;
    cfg.metric = metric;
    cfg.M = M;
    cfg.ef_construction = efc;
    cfg.capacity = base.n;
    err_msg e;
    size_t rss0 = rss_bytes();
    uint64_t t0 = clock_mono_ns();
    double cpu0 = cpu_s();
    if (load_p) {
        if (hnsw_index_load(load_p, &idx, &e) != 0) {
            cli_errorf("%s", e.text);
            goto out;
        }
        hnsw_config lc = hnsw_index_config(idx);
        if (lc.dim != base.d || lc.metric != metric || hnsw_index_count(idx) != base.n) {
            cli_errorf("%s does not hold these %zu vectors of %zu dims (%s)", load_p, base.n,
                       base.d, vec_metric_name(metric));
            goto out;
        }
        M = lc.M;
        efc = lc.ef_construction;
    } else {
        if (hnsw_index_new(&cfg, &idx, &e) != 0) {
            cli_errorf("%s", e.text);
            goto out;
        }
        const float *bv = base.data;
        for (size_t i = 0; i < base.n; i++) {
            if (hnsw_index_add(idx, i, bv + i * base.d, &e) != 0) {
                cli_errorf("%s", e.text);
                status = 1;
                goto out;
            }
        }
    }
    double build_s = (double)(clock_mono_ns() - t0) / 1e9, build_cpu_s = cpu_s() - cpu0;
    if (save_p && hnsw_index_save(idx, save_p, &e) != 0) {
        cli_errorf("%s", e.text);
        status = 1;
        goto out;
    }
    size_t rss1 = rss_bytes();
    double mem_mib = (double)hnsw_index_memory_bytes(idx) / (1 << 20);
    double rss_mib = (double)(rss1 > rss0 ? rss1 - rss0 : 0) / (1 << 20);
    if (json)
        printf("{\"n\":%zu,\"dim\":%zu,\"queries\":%zu,\"metric\":\"%s\",\"M\":%zu,\"efc\":%zu,"
               "\"kernels\":\"%s\",\"build_s\":%.3f,\"build_cpu_s\":%.3f,\"index_mib\":%.1f,"
               "\"index_rss_mib\":%.1f}\n",
               base.n, base.d, q.n, vec_metric_name(metric), M, efc, kern.name, build_s,
               build_cpu_s, mem_mib, rss_mib);
    else
        printf("base %zu x %zu, %zu queries, metric %s, M %zu, ef_construction %zu, kernels %s\n"
               "build %.2f s (%.2f CPU s, %.0f vectors/s), index memory %.1f MiB (RSS +%.1f MiB)\n\n"
               "%6s %10s %12s %12s %10s %10s\n",
               base.n, base.d, q.n, vec_metric_name(metric), M, efc, kern.name, build_s,
               build_cpu_s, base.n / build_s, mem_mib, rss_mib, "ef", "recall@k", "queries/s", "q/cpu-s", "p50 us",
               "p99 us");
    fflush(stdout);

    const int32_t *gt = truth.data;
    for (size_t ei = 0; ei < nef; ei++) {
        size_t ef = efs[ei];
        /* Warm-up pass, also the one recall is computed from. */
        if (pass(idx, &q, k, ef, (int)threads, hits, nhits, lat) < 0) {
            cli_errorf("search failed at ef %zu", ef);
            status = 1;
            goto out;
        }
        size_t found = 0;
        for (size_t i = 0; i < q.n; i++)
            for (int j = 0; j < nhits[i]; j++)
                for (size_t t = 0; t < k; t++)
                    if ((int64_t)gt[i * truth.d + t] == (int64_t)hits[i * k + (size_t)j].label) {
                        found++;
                        break;
                    }
        double recall = (double)found / (double)(q.n * k);
        for (size_t r = 0; r < runs; r++) {
            double c0 = cpu_s();
            passes[r] = pass(idx, &q, k, ef, (int)threads, hits, nhits, lat + r * q.n);
            if (passes[r] < 0) {
                cli_errorf("search failed at ef %zu", ef);
                status = 1;
                goto out;
            }
            cpus[r] = cpu_s() - c0;
        }
        qsort(passes, runs, sizeof *passes, cli_cmp_double);
        qsort(cpus, runs, sizeof *cpus, cli_cmp_double);
        /* Queries per CPU-second and thread: less sensitive to a busy machine than wall time. */
        double qps_cpu = (double)q.n / cpus[runs / 2] * (double)threads;
        qsort(lat, q.n * runs, sizeof *lat, cli_cmp_double);
        double qps = (double)q.n / passes[runs / 2], qps_best = (double)q.n / passes[0];
        double p50 = lat[q.n * runs / 2], p99 = lat[(size_t)((double)(q.n * runs) * 0.99)];
        if (json)
            printf("{\"ef\":%zu,\"k\":%zu,\"threads\":%zu,\"recall\":%.4f,\"qps_median\":%.1f,"
                   "\"qps_best\":%.1f,\"qps_cpu\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
                   ef, k, threads, recall, qps, qps_best, qps_cpu, p50, p99);
        else
            printf("%6zu %10.4f %12.0f %12.0f %10.1f %10.1f\n", ef, recall, qps, qps_cpu, p50, p99);
        fflush(stdout);
    }
    status = 0;
out:
    hnsw_index_free(idx);
    free(base.data);
    free(q.data);
    free(truth.data);
    free(hits);
    free(nhits);
    free(lat);
    free(passes);
    free(cpus);
    return status;
}
