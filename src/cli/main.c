/*
 * ferry — entry point. Dispatches `ferry <command> ...` through the table in
 * cli/commands.def. No business logic here.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct cmd {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmd;

static const cmd cmds[] = {
#define CLI_CMD(name, fn, help) {name, fn, help},
#include "cli/commands.def"
#undef CLI_CMD
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n`ferry <command> --help` describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0)
        name = "version";
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    cli_errorf("unknown command \"%s\" (see ferry --help)", name);
    return 2;
}
