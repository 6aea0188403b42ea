/*
 * cli — the ferry command line. main.c dispatches argv[1] through the table
 * in commands.def; each command lives in its own cli/cmd_<name>.c.
 */
#pragma once

#include <stddef.h>

#define CLI_CMD(name, fn, help) int fn(int argc, char **argv);
#include "cli/commands.def"
#undef CLI_CMD

/* qsort comparator for doubles, ascending (benchmark figures). */
int cli_cmp_double(const void *a, const void *b);
/* Median of v[0..n) (n >= 1); sorts v in place. */
double cli_median(double *v, size_t n);

/* Prints "ferry: <msg>\n" to stderr; for one-line command-line errors. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
