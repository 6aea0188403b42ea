/*
 * store — durable state behind one handle. The embedded default is SQLite in
 * the data directory (DIR/ferry.db, WAL journal). This first piece opens the
 * database, creates the directory, and keeps a schema_version table that
 * later migrations advance; the tables of keys, usage, jobs and the rest
 * arrive with their modules.
 *
 * Schema (version 1):
 *   CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)
 *   -- one row per applied migration; the current version is MAX(version).
 */
#pragma once

#include "base/base.h"

typedef struct store store;

#define STORE_SCHEMA_VERSION 1

/*
 * Creates dir (and missing parents, mode 0750) when absent, opens or creates
 * dir/ferry.db and brings its schema to STORE_SCHEMA_VERSION. Returns the
 * store or NULL with e set: ERR_IO (cannot create the directory or open the
 * file, with the path and reason), ERR_FORMAT (not a ferry database, or a
 * schema newer than this binary). Thread: any; the store is used from one
 * thread at a time until the modules that share it add their own locking.
 */
store *store_open(const char *dir, err_msg *e);
/* Closes the database. NULL ok. */
void store_close(store *s);
/* The schema version recorded in the database, or a negative ERR_* code. */
int store_schema_version(store *s);
/* The database file path. */
const char *store_path(const store *s);
