/*
 * obs/process — the standard process_* metrics, read from /proc at scrape
 * time (Prometheus client conventions): resident memory from
 * /proc/self/statm, CPU time and start time from /proc/self/stat (fields 14,
 * 15 and 22, in clock ticks; start time is relative to boot, /proc/stat
 * "btime" gives boot in Unix seconds), open fds by listing /proc/self/fd.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obs/obs.h"

typedef struct proc_metrics {
    obs_series *rss, *cpu, *fds, *start;
} proc_metrics;

static proc_metrics g_proc; // one set per process; written at start-up, read by the collector

static int read_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    return 0;
}

static double boot_time_s(void)
{
    static char text[16384];
    static double cached = -1;
    if (cached >= 0)
        return cached;
    if (read_file("/proc/stat", text, sizeof text) != 0)
        return 0;
    const char *p = strstr(text, "\nbtime ");
    cached = p ? strtod(p + 7, NULL) : 0;
    return cached;
}

static void collect(void *ctx)
{
    proc_metrics *m = ctx;
    long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
    char text[1024];
    if (read_file("/proc/self/statm", text, sizeof text) == 0) {
        unsigned long long size = 0, resident = 0;
        if (sscanf(text, "%llu %llu", &size, &resident) == 2)
            obs_gauge_set(m->rss, (double)resident * (double)page);
    }
    if (read_file("/proc/self/stat", text, sizeof text) == 0 && tck > 0) {
        /* Field 2 (comm) may hold spaces and parentheses: start after the last ')'. */
        const char *p = strrchr(text, ')');
        unsigned long long utime = 0, stime = 0, start = 0;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                        "%*d %*d %llu",
                        &utime, &stime, &start) == 3) {
            obs_counter_set(m->cpu, (double)(utime + stime) / (double)tck);
            obs_gauge_set(m->start, boot_time_s() + (double)start / (double)tck);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        obs_gauge_set(m->fds, (double)(n ? n - 1 : 0)); // minus the fd of the listing itself
    }
}

int obs_register_process(obs_registry *r, err_msg *e)
{
    obs_family *rss = obs_family_new(r, OBS_GAUGE, "process_resident_memory_bytes",
                                     "Resident memory size in bytes.", NULL, 0, NULL, 0, 1, e);
    obs_family *cpu = obs_family_new(r, OBS_COUNTER, "process_cpu_seconds_total",
                                     "Total user and system CPU time spent in seconds.", NULL,
                                     0, NULL, 0, 1, e);
    obs_family *fds = obs_family_new(r, OBS_GAUGE, "process_open_fds",
                                     "Number of open file descriptors.", NULL, 0, NULL, 0, 1, e);
    obs_family *st = obs_family_new(r, OBS_GAUGE, "process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.",
                                    NULL, 0, NULL, 0, 1, e);
    if (!rss || !cpu || !fds || !st)
        return e && e->code ? e->code : ERR_INVAL;
    g_proc.rss = obs_series_get(rss, NULL);
    g_proc.cpu = obs_series_get(cpu, NULL);
    g_proc.fds = obs_series_get(fds, NULL);
    g_proc.start = obs_series_get(st, NULL);
    if (!g_proc.rss || !g_proc.cpu || !g_proc.fds || !g_proc.start)
        return err_set(e, ERR_NOMEM, "metrics: out of memory");
    int rc = obs_add_collector(r, collect, &g_proc);
    if (rc)
        return err_set(e, rc, "metrics: too many collectors");
    return 0;
}
