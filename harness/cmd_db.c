/* cmd_db.c -- `concord db init|info`: create / migrate a results database and show what it holds.
 * Not for: reports (concord query) or figures (concord plot). */
#define _POSIX_C_SOURCE 200809L
#include <sqlite3.h>
#include <stdio.h>

#include "../results/db.h"
#include "cli.h"
#include "commands.h"
#include "core.h"

static const char k_usage[] =
    "init|info [--db PATH]\n\n"
    "  init  create the database (or migrate it to the current schema) and print its path and version\n"
    "  info  schema version and row counts of every table, runs by status\n"
    "  The schema is documented in docs/results.md.";

static const OptSpec k_opts[] = {
    {"db", "PATH", "results database (default $CONCORD_DB, else out/concord.db)", NULL},
    {0},
};

int cmd_db(int argc, char **argv) {
    Args a;
    int rc = args_parse(&a, "db", k_usage, k_opts, argc, argv);
    if (rc == 1) return 0;
    if (rc < 0) return err_die();
    if (a.npos != 1 || (!str_eq(a.pos[0], "init") && !str_eq(a.pos[0], "info"))) {
        err_set("concord db: expected one subcommand, init or info (see concord db --help)");
        return err_die();
    }
    const char *path = arg_str(&a, "db");
    if (!path) path = db_default_path();
    int init = str_eq(a.pos[0], "init");
    Db *db = NULL;
    if ((init ? db_open(path, &db) : db_open_existing(path, &db)) < 0) return err_die();
    if (init) {
        printf("database %s ready (schema version %d)\n", db_path(db), db_schema_version(db));
        db_close(db);
        return 0;
    }
    printf("database        %s\n", db_path(db));
    printf("schema version  %d (this build: %d)\n", db_schema_version(db), DB_SCHEMA_VERSION);
    static const char *const tables[] = {"runs", "epochs", "alignment", "evals", "artifacts"};
    for (size_t i = 0; i < ARRAY_LEN(tables); i++) {
        long n = db_count(db, tables[i]);
        if (n < 0) { db_close(db); return err_die(); }
        printf("%-15s %ld rows\n", tables[i], n);
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db_sqlite(db), "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status", -1, &st,
                           NULL) != SQLITE_OK) {
        err_set("%s: %s", db_path(db), sqlite3_errmsg(db_sqlite(db)));
        db_close(db);
        return err_die();
    }
    printf("runs by status ");
    int any = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        printf("%s %s %lld", any ? "," : "", sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1));
        any = 1;
    }
    printf("%s\n", any ? "" : " (none)");
    sqlite3_finalize(st);
    db_close(db);
    return 0;
}
