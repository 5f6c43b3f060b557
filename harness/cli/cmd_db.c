/* cmd_db.c -- `concord db init|info|check|merge`: create / migrate a results database, show what it holds,
 * check it for damage, and merge shard databases (one per Slurm array task) into it by job key
 * (docs/slurm.md). info and check only read (the file is opened read-only).
 * Not for: reports (concord query) or figures (concord plot). */
#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "results/db.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"

static const char k_usage[] =
    "init|info|check [--db PATH] | merge --into DB SHARD...\n\n"
    "  init   create the database (or migrate it to the current schema) and print its path and version\n"
    "  info   schema version and row counts of every table, runs by status (read-only)\n"
    "  check  PRAGMA integrity_check: every problem, exit 1 when the file is damaged (read-only)\n"
    "  merge  copy the keyed rows of each SHARD (a database file, or a directory: every *.db in it) into DB,\n"
    "         matched by job key; running it again changes nothing (docs/slurm.md)\n"
    "  The schema is documented in docs/results.md.";

static const OptSpec k_opts[] = {
    {"db", "PATH", "results database (default $CONCORD_DB, else out/concord.db)", NULL},
    {"into", "DB", "merge: the database to merge into (created when missing)", NULL},
    {"quiet", NULL, "merge: only the total line", NULL},
    {0},
};

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Merges one shard file; prints its line. */
static int merge_one(Db *db, const char *path, int quiet, DbMergeStats *tot) {
    DbMergeStats st;
    if (db_merge(db, path, &st) < 0) return -1;
    if (!quiet)
        printf("%s: runs %d added, %d replaced, %d kept; evals %d added, %d replaced, %d kept%s\n", path, st.runs_added,
               st.runs_replaced, st.runs_kept, st.evals_added, st.evals_replaced, st.evals_kept,
               st.unkeyed ? " (rows without a job key skipped)" : "");
    tot->runs_added += st.runs_added;
    tot->runs_replaced += st.runs_replaced;
    tot->runs_kept += st.runs_kept;
    tot->evals_added += st.evals_added;
    tot->evals_replaced += st.evals_replaced;
    tot->evals_kept += st.evals_kept;
    tot->unkeyed += st.unkeyed;
    return 0;
}

static int db_merge_cmd(const Args *a) {
    const char *into = arg_str(a, "into");
    if (!into) return err_set("concord db merge: --into DB is required (the database the shards go into)");
    if (a->npos < 2) return err_set("concord db merge: no SHARD given; pass shard files or a shard directory");
    int quiet = arg_flag(a, "quiet"), nfiles = 0;
    Db *db;
    if (db_open(into, &db) < 0) return -1;
    DbMergeStats tot = {0};
    int rc = 0;
    for (int i = 1; i < a->npos && rc == 0; i++) {
        struct stat sb;
        if (stat(a->pos[i], &sb) != 0) { rc = err_set("%s: no such shard file or directory", a->pos[i]); break; }
        if (!S_ISDIR(sb.st_mode)) {
            rc = merge_one(db, a->pos[i], quiet, &tot);
            nfiles++;
            continue;
        }
        /* a directory: its *.db files in name order (hidden files are shards still being copied in) */
        DIR *d = opendir(a->pos[i]);
        if (!d) { rc = err_set("%s: cannot read the shard directory", a->pos[i]); break; }
        int n = 0, cap = 16;
        char **names = xcalloc((size_t)cap, sizeof *names);
        for (struct dirent *e; (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (e->d_name[0] == '.' || len < 4 || strcmp(e->d_name + len - 3, ".db") != 0) continue;
            if (n == cap) {
                cap *= 2;
                char **nn = realloc(names, (size_t)cap * sizeof *nn);
                CHECK(nn);
                names = nn;
            }
            names[n++] = xstrdup(e->d_name);
        }
        closedir(d);
        xqsort(names, (size_t)n, sizeof *names, cmp_names);
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", a->pos[i], names[k]);
            if (rc == 0) { rc = merge_one(db, path, quiet, &tot); nfiles++; }
            free(names[k]);
        }
        free(names);
    }
    if (rc == 0)
        printf("merged %d shard%s into %s: runs %d added, %d replaced, %d kept; evals %d added, %d replaced, %d kept%s\n", nfiles,
               nfiles == 1 ? "" : "s", db_path(db), tot.runs_added, tot.runs_replaced, tot.runs_kept, tot.evals_added,
               tot.evals_replaced, tot.evals_kept, tot.unkeyed ? "; rows without a job key were skipped" : "");
    db_close(db);
    return rc;
}

int cmd_db(int argc, char **argv) {
    Args a;
    int rc = args_parse_pos(&a, "db", k_usage, k_opts, (int)ARRAY_LEN(a.pos), argc, argv);
    if (rc == 1) return 0;
    if (rc < 0) return err_die();
    if (a.npos >= 1 && str_eq(a.pos[0], "merge")) return db_merge_cmd(&a) < 0 ? err_die() : 0;
    if (arg_flag(&a, "quiet") || arg_set(&a, "into")) { /* merge's options: elsewhere they would be ignored */
        err_set("concord db: --%s applies to db merge", arg_flag(&a, "quiet") ? "quiet" : "into");
        return err_die();
    }
    if (a.npos != 1 || (!str_eq(a.pos[0], "init") && !str_eq(a.pos[0], "info") && !str_eq(a.pos[0], "check"))) {
        err_set("concord db: expected one subcommand, init, info or check (or merge --into DB SHARD...; see concord db --help)");
        return err_die();
    }
    const char *path = arg_str(&a, "db");
    if (!path) path = db_default_path();
    if (str_eq(a.pos[0], "check")) {
        int bad = db_check(path, stdout);
        if (bad < 0) return err_die();
        if (bad) { err_set("%s: the database is damaged (problems listed above); restore it from a copy", path); return err_die(); }
        return 0;
    }
    int init = str_eq(a.pos[0], "init");
    Db *db = NULL;
    if ((init ? db_open(path, &db) : db_open_readonly(path, &db)) < 0) return err_die();
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
