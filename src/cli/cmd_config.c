/* cli/cmd_config — `ferry config check FILE`: validates a configuration file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/config.h"

int cli_cmd_config(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: ferry config check FILE\n\n"
               "Validates a ferry YAML configuration file: syntax, known keys, value types\n"
               "and ranges. Prints \"FILE: ok\" and exits 0, or prints FILE:LINE:COLUMN: key\n"
               "K: reason and exits 1. Keys are listed by `ferry serve --help` and in\n"
               "docs/configuration.md.\n");
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "check") != 0) {
        cli_errorf("usage: ferry config check FILE");
        return 2;
    }
    ferry_config c;
    config_defaults(&c);
    err_msg e;
    if (config_load_file(&c, argv[2], &e) != 0) {
        cli_errorf("config: %s", e.text);
        return 1;
    }
    printf("%s: ok\n", argv[2]);
    return 0;
}
