/*
 * cli — the ferry command line. main.c dispatches argv[1] through the table
 * in commands.def; each command lives in its own cli/cmd_<name>.c.
 */
#pragma once

#define CLI_CMD(name, fn, help) int fn(int argc, char **argv);
#include "cli/commands.def"
#undef CLI_CMD

/* Prints "ferry: <msg>\n" to stderr; for one-line command-line errors. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
