/*
 * ferry bench-model — engine speed without HTTP.
 *
 * Measures, on one model and thread count:
 *   prefill  one forward step of -p random tokens from an empty context (like
 *            llama-bench's pp), tokens per second;
 *   decode   -n single-token steps from an empty context, each feeding the argmax
 *            of the previous step (like llama-bench's tg), tokens per second;
 *   copy     the machine's memory copy bandwidth, measured here with the same
 *            threads (bytes read + bytes written per second, STREAM's convention);
 *   roofline decode tokens/s if every step only streamed the weights at copy
 *            bandwidth: bandwidth / weight bytes read per token; decode is
 *            reported as a share of it.
 *   cpu      process CPU seconds (all threads, spinning included) per decoded
 *            token: unlike tokens/s it holds up on a loaded machine, where the
 *            threads are descheduled for part of the wall time.
 * Each figure is the median of --runs runs (default 3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/clock.h"
#include "base/pool.h"
#include "cli/cli.h"
#include "model/llama.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry bench-model -m MODEL [-p 512] [-n 128] [-t N] [--runs 3] [--json]\n"
               "                         [--no-copy]\n"
               "  prefill and decode tokens/s (median of --runs) and decode as a share of the\n"
               "  memory-bandwidth roofline (weight bytes per token vs measured copy bandwidth),\n"
               "  and decode CPU time per token (all threads); --no-copy skips the bandwidth\n"
               "  probe (no roofline figures: quicker A/B runs)\n");
}

typedef struct copy_job {
    char *dst;
    const char *src;
} copy_job;

static void copy_chunk(void *arg, size_t begin, size_t end, int tid)
{
    (void)tid;
    copy_job *j = arg;
    memcpy(j->dst + begin, j->src + begin, end - begin);
}

/*
 * Copy bandwidth in bytes/s (read + write, STREAM's convention), median of 5
 * copies of 256 MiB (far past the caches) split into one chunk per thread of
 * p. One chunk per thread keeps each memcpy call at 256/threads MiB, far above
 * glibc's non-temporal threshold (3/4 of the shared cache), so the stores
 * bypass the caches and the bus carries exactly the bytes counted here (a
 * cached copy would also read every destination line first: 3 bytes moved
 * per 2 counted, and a roofline too low). Returns 0 when memory is short.
 */
static double copy_bandwidth(pool *p, char *a, char *b, size_t n)
{
    copy_job j = {b, a};
    size_t per = n / (size_t)pool_threads(p);
    double v[5];
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = clock_mono_ns();
        pool_for(p, n, per, copy_chunk, &j);
        v[i] = 2.0 * (double)n / ((double)(clock_mono_ns() - t0) * 1e-9);
    }
    return cli_median(v, 5);
}

/* CPU nanoseconds used by every thread of this process so far. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int32_t argmax(const float *l, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (l[i] > l[b])
            b = i;
    return (int32_t)b;
}

int cli_cmd_bench_model(int argc, char **argv)
{
    const char *path = NULL;
    int64_t n_prompt = 512, n_gen = 128, n_threads = 0, runs = 3;
    bool json = false, copy = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--no-copy")) {
            copy = false;
        } else if (!strcmp(a, "-m") && has) {
            path = argv[++i];
        } else if (!strcmp(a, "-p") && has) {
            if (parse_i64(argv[++i], 1, LLAMA_BATCH_MAX, &n_prompt)) {
                cli_errorf("bench-model: -p %s: expected 1..%d", argv[i], LLAMA_BATCH_MAX);
                return 2;
            }
        } else if (!strcmp(a, "-n") && has) {
            if (parse_i64(argv[++i], 1, 1 << 16, &n_gen)) {
                cli_errorf("bench-model: -n %s: expected 1..65536", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "-t") && has) {
            if (parse_i64(argv[++i], 1, POOL_THREADS_MAX, &n_threads)) {
                cli_errorf("bench-model: -t %s: expected 1..%d", argv[i], POOL_THREADS_MAX);
                return 2;
            }
        } else if (!strcmp(a, "--runs") && has) {
            if (parse_i64(argv[++i], 1, 100, &runs)) {
                cli_errorf("bench-model: --runs %s: expected 1..100", argv[i]);
                return 2;
            }
        } else {
            cli_errorf("bench-model: unknown or incomplete option \"%s\" (see --help)", a);
            return 2;
        }
    }
    if (!path) {
        cli_errorf("bench-model: -m MODEL is required");
        return 2;
    }

    int ret = 1;
    err_msg e;
    err_clear(&e);
    model *m = NULL;
    pool *p = NULL;
    llama_ctx *c = NULL;
    llama_kv *kv = NULL;
    int32_t *toks = NULL, *table = NULL;
    float *logits = NULL;
    double *pre = NULL, *dec = NULL, *dcpu = NULL, *cbw = NULL;
    char *ca = NULL, *cb = NULL;
    int rc = model_load(path, &m, &e);
    if (rc < 0) {
        cli_errorf("%s", err_text(&e, rc));
        return 2;
    }
    const llama_hparams *hp = model_hparams(m);
    if (pool_new((int)n_threads, &p) < 0) {
        cli_errorf("bench-model: cannot start %d threads", (int)n_threads);
        goto out;
    }
    size_t ctx = (size_t)(n_prompt > n_gen ? n_prompt : n_gen) + 1;
    llama_config cfg = llama_config_default();
    cfg.max_batch_tokens = (size_t)n_prompt;
    cfg.max_ctx = ctx;
    cfg.max_logits = 1;
    cfg.pool = p;
    size_t nb = (ctx + LLAMA_KV_BLOCK_TOKENS_DEFAULT - 1) / LLAMA_KV_BLOCK_TOKENS_DEFAULT;
    if ((rc = llama_ctx_new(m, &cfg, &c, &e)) < 0 ||
        (rc = llama_kv_new(m, nb, LLAMA_KV_BLOCK_TOKENS_DEFAULT, &kv, &e)) < 0) {
        cli_errorf("%s", err_text(&e, rc));
        goto out;
    }
    toks = malloc((size_t)n_prompt * sizeof *toks);
    table = malloc(nb * sizeof *table);
    logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    pre = malloc((size_t)runs * sizeof *pre);
    dec = malloc((size_t)runs * sizeof *dec);
    dcpu = malloc((size_t)runs * sizeof *dcpu);
    cbw = malloc((size_t)runs * sizeof *cbw);
    if (!toks || !table || !logits || !pre || !dec || !dcpu || !cbw) {
        cli_errorf("bench-model: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nb; i++)
        table[i] = (int32_t)i;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < n_prompt; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % hp->n_vocab);
    }
    /* the copy probe runs before every run and the roofline uses the median of
     * those probes: on a shared machine one probe can land in a busy second */
    const size_t copy_n = (size_t)256 << 20;
    if (copy) {
        ca = malloc(copy_n);
        cb = malloc(copy_n);
        if (!ca || !cb) {
            cli_errorf("bench-model: out of memory for the copy probe (2 x 256 MiB)");
            goto out;
        }
        memset(ca, 1, copy_n);
        memset(cb, 2, copy_n);
        copy_job warm = {cb, ca};
        pool_for(p, copy_n, copy_n / (size_t)pool_threads(p), copy_chunk, &warm);
    }
    for (int64_t r = 0; r < runs; r++) {
        if (copy)
            cbw[r] = copy_bandwidth(p, ca, cb, copy_n);
        llama_span sp = {toks, (size_t)n_prompt, 0, table, nb, 1};
        uint64_t t0 = clock_mono_ns();
        if ((rc = llama_forward(c, kv, &sp, 1, logits, &e)) < 0)
            goto fwd_fail;
        pre[r] = (double)n_prompt / ((double)(clock_mono_ns() - t0) * 1e-9);
        int32_t t = toks[0];
        t0 = clock_mono_ns();
        uint64_t c0 = cpu_ns();
        for (int64_t i = 0; i < n_gen; i++) {
            llama_span d = {&t, 1, (size_t)i, table, nb, 1};
            if ((rc = llama_forward(c, kv, &d, 1, logits, &e)) < 0)
                goto fwd_fail;
            t = argmax(logits, hp->n_vocab);
        }
        dec[r] = (double)n_gen / ((double)(clock_mono_ns() - t0) * 1e-9);
        dcpu[r] = (double)(cpu_ns() - c0) * 1e-6 / (double)n_gen;
    }
    double pp = cli_median(pre, (size_t)runs), tg = cli_median(dec, (size_t)runs);
    double tcpu = cli_median(dcpu, (size_t)runs);
    double bw = 0, bw_lo = 0, bw_hi = 0;
    if (copy) {
        bw_lo = bw_hi = cbw[0];
        for (int64_t r = 1; r < runs; r++) {
            bw_lo = cbw[r] < bw_lo ? cbw[r] : bw_lo;
            bw_hi = cbw[r] > bw_hi ? cbw[r] : bw_hi;
        }
        bw = cli_median(cbw, (size_t)runs);
    }
    uint64_t wb = model_weight_bytes_per_token(m);
    double roof = bw > 0 ? bw / (double)wb : 0;
    double share = roof > 0 ? tg / roof : 0;
    if (json) {
        printf("{\"model\":\"%s\",\"threads\":%d,\"n_prompt\":%lld,\"n_gen\":%lld,\"runs\":%lld,"
               "\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,\"weight_bytes_per_token\":%llu,"
               "\"decode_cpu_ms_per_tok\":%.3f,\"copy_bandwidth_gb_s\":%.3f,"
               "\"copy_bandwidth_min_gb_s\":%.3f,\"copy_bandwidth_max_gb_s\":%.3f,"
               "\"roofline_tok_s\":%.2f,\"roofline_share\":%.4f}\n",
               path, pool_threads(p), (long long)n_prompt, (long long)n_gen, (long long)runs, pp,
               tg, (unsigned long long)wb, tcpu, bw * 1e-9, bw_lo * 1e-9, bw_hi * 1e-9, roof,
               share);
    } else {
        printf("model            %s\n", path);
        printf("threads          %d\n", pool_threads(p));
        printf("prefill-%-8lld %.2f tok/s (median of %lld)\n", (long long)n_prompt, pp,
               (long long)runs);
        printf("decode-%-9lld %.2f tok/s (median of %lld)\n", (long long)n_gen, tg,
               (long long)runs);
        printf("decode CPU       %.3f ms/token, all threads (median of %lld)\n", tcpu,
               (long long)runs);
        printf("weights/token    %.1f MB\n", (double)wb * 1e-6);
        printf("copy bandwidth   %.2f GB/s (read + write; median of %lld probes, %.2f-%.2f)\n",
               bw * 1e-9, (long long)runs, bw_lo * 1e-9, bw_hi * 1e-9);
        printf("roofline         %.2f tok/s; decode is %.1f%% of it\n", roof, 100.0 * share);
    }
    ret = 0;
    goto out;
fwd_fail:
    cli_errorf("%s", err_text(&e, rc));
out:
    free(pre);
    free(dec);
    free(dcpu);
    free(cbw);
    free(ca);
    free(cb);
    free(logits);
    free(table);
    free(toks);
    llama_kv_free(kv);
    llama_ctx_free(c);
    pool_free(p);
    model_unref(m);
    return ret;
}
