// FUZZ_MODULES: base
// FUZZ_SOURCES: src/cli/cmd_bench_compare.c src/cli/cmd_bench_out.c src/cli/report.c src/cli/cli.c src/cli/benchargs.c
// FUZZ_SECONDS: 10
// FUZZ_LIBS: jansson
/*
 * `ferry bench compare` on an arbitrary report file: the same bytes read as
 * two runs side by side, with the text table and the HTML report written.
 * Checks: exit status 0 (a report), 1 (the HTML could not be written) or 2
 * (not a report, with a one-line message); never a crash on any JSON shape,
 * number or string where a report has others.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/cmd_bench.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("report", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        // the table and the one-line refusals go to /dev/null through stdio;
        // file descriptor 2 stays for libFuzzer's and the sanitizers' reports
        FILE *null = fopen("/dev/null", "w");
        if (!null || !freopen("/dev/null", "w", stdout))
            abort();
        stderr = null;
    }
    if (size > 256 * 1024)
        return 0;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    char a0[] = "compare", a3[] = "--html", a4[] = "/dev/null";
    char *argv[] = {a0, path, path, a3, a4, NULL};
    int rc = bench_compare_main(5, argv);
    if (rc != 0 && rc != 1 && rc != 2)
        abort();
    return 0;
}
