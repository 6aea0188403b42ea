/* Unit tests for store: directory creation, schema version, reopen, refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"

static void test_open_creates(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ferry-store-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char dir[256];
    snprintf(dir, sizeof dir, "%s/a/b/data", tmpl);
    err_msg e;
    store *s = store_open(dir, &e);
    assert_non_null(s);
    assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
    store_close(s);
    s = store_open(dir, &e); // reopen: no second migration row, same version
    assert_non_null(s);
    assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
    store_close(s);
    /* A file in the way of the directory. */
    char file[300];
    snprintf(file, sizeof file, "%s/file", tmpl);
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);
    assert_null(store_open(file, &e));
    assert_int_equal(e.code, ERR_IO);
    /* A ferry.db that is not a database. */
    char bad[300], db[320];
    snprintf(bad, sizeof bad, "%s/bad", tmpl);
    s = store_open(bad, &e); // creates it
    assert_non_null(s);
    store_close(s);
    snprintf(db, sizeof db, "%s/ferry.db", bad);
    unlink(db);
    f = fopen(db, "w");
    fputs("this is not sqlite, just text that is long enough to be a header......", f);
    fclose(f);
    assert_null(store_open(bad, &e));
    assert_int_equal(e.code, ERR_FORMAT);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_open_creates)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
