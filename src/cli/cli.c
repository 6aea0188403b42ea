/* cli — shared helpers for subcommands, and `ferry version`. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>

void cli_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ferry: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("ferry %s (commit %s)\n", FERRY_VERSION, FERRY_COMMIT);
    return 0;
}
