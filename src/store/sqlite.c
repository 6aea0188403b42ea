/* store/sqlite — the SQLite store: directory, file, pragmas, migrations. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"

struct store {
    sqlite3 *db;
    char path[4096];
};

/* mkdir -p with mode 0750. Returns 0 or errno. */
static int mkdirs(const char *dir)
{
    char tmp[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof tmp)
        return ENAMETOOLONG;
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
                return errno;
            tmp[i] = c;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

static int exec(store *s, const char *sql, err_msg *e)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = err_set(e, ERR_IO, "store: %s: %s", s->path, msg ? msg : "sqlite error");
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int store_schema_version(store *s)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(version),0) FROM schema_version", -1, &st,
                           NULL) != SQLITE_OK)
        return ERR_FORMAT;
    int v = ERR_IO;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

store *store_open(const char *dir, err_msg *e)
{
    int en = mkdirs(dir);
    if (en) {
        err_set(e, ERR_IO, "store: cannot create data directory \"%s\": %s", dir, strerror(en));
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(e, ERR_NOMEM, "store: out of memory");
        return NULL;
    }
    int n = snprintf(s->path, sizeof s->path, "%s/ferry.db", dir);
    if (n < 0 || (size_t)n >= sizeof s->path) {
        err_set(e, ERR_IO, "store: data directory path is too long");
        free(s);
        return NULL;
    }
    if (sqlite3_open_v2(s->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "store: cannot open %s: %s", s->path,
                s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
             e) ||
        exec(s,
             "CREATE TABLE IF NOT EXISTS schema_version ("
             " version INTEGER NOT NULL, applied_at TEXT NOT NULL)",
             e)) {
        if (e && strstr(e->text, "not a database"))
            e->code = ERR_FORMAT;
        store_close(s);
        return NULL;
    }
    int v = store_schema_version(s);
    if (v < 0) {
        err_set(e, ERR_FORMAT, "store: %s has no readable schema_version table", s->path);
        store_close(s);
        return NULL;
    }
    if (v > STORE_SCHEMA_VERSION) {
        err_set(e, ERR_FORMAT,
                "store: %s has schema version %d, this ferry knows up to %d (downgrade?)",
                s->path, v, STORE_SCHEMA_VERSION);
        store_close(s);
        return NULL;
    }
    if (v < 1 && exec(s,
                      "BEGIN; INSERT INTO schema_version VALUES "
                      "(1, strftime('%Y-%m-%dT%H:%M:%fZ','now')); COMMIT;",
                      e)) {
        store_close(s);
        return NULL;
    }
    return s;
}

void store_close(store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

const char *store_path(const store *s)
{
    return s->path;
}
