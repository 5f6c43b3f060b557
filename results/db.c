/* db.c -- the results database: connections (read-write with identification and an integrity check
 * before the first write; read-only that never writes), migration, and the statement helpers the other
 * results/db*.c files share. See db.h; the schema is db_schema.c, writes db_record.c, merges db_merge.c. */
#define _POSIX_C_SOURCE 200809L
#include "results/db_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"

/* ---- statement helpers: 0 ok, DB_RETRY on busy, -1 with err_set ---- */

int is_busy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

int db_fail(Db *db, const char *what) {
    return err_set("%s: %s failed: %s; check the disk and the file's permissions", db->path, what, sqlite3_errmsg(db->h));
}
int db_exec(Db *db, const char *sql, const char *what) {
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK) return 0;
    if (is_busy(rc)) return DB_RETRY;
    return db_fail(db, what);
}
int db_prep(Db *db, const char *sql, sqlite3_stmt **st) {
    int rc = sqlite3_prepare_v2(db->h, sql, -1, st, NULL);
    if (rc == SQLITE_OK) return 0;
    if (is_busy(rc)) return DB_RETRY;
    return err_set("%s: cannot prepare a statement (%s); is this a Concord results database?", db->path, sqlite3_errmsg(db->h));
}
/* Steps a statement that returns no row (or one row, when want_row) and finalizes it. */
int db_step(Db *db, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    int out = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) out = is_busy(rc) ? DB_RETRY : db_fail(db, what);
    sqlite3_finalize(st);
    return out;
}
void bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}
void bind_real(sqlite3_stmt *st, int i, double v) {
    if (isfinite(v)) sqlite3_bind_double(st, i, v);
    else sqlite3_bind_null(st, i);
}
void bind_id(sqlite3_stmt *st, int i, int64_t id) {
    if (id > 0) sqlite3_bind_int64(st, i, id);
    else sqlite3_bind_null(st, i);
}
/* Prepares sql, binds its parameters in order from the arguments by `types` (one letter each:
 * t text or NULL, d double (not finite -> NULL), x id (<= 0 -> NULL), I int64, i int), steps and
 * finalizes it: the one shape of every single-statement write. 0, DB_RETRY, or -1 naming `what`. */
int db_run(Db *db, const char *what, const char *sql, const char *types, ...) {
    sqlite3_stmt *st = NULL;
    int rc = db_prep(db, sql, &st);
    if (rc) return rc;
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        switch (types[i]) {
        case 't': bind_text(st, i + 1, va_arg(ap, const char *)); break;
        case 'd': bind_real(st, i + 1, va_arg(ap, double)); break;
        case 'x': bind_id(st, i + 1, va_arg(ap, int64_t)); break;
        case 'I': sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t)); break;
        case 'i': sqlite3_bind_int(st, i + 1, va_arg(ap, int)); break;
        default: CHECK(0);
        }
    }
    va_end(ap);
    return db_step(db, st, what);
}

void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs body inside BEGIN IMMEDIATE ... COMMIT, retrying the whole transaction on SQLITE_BUSY. */
int db_write(Db *db, TxBody body, void *ctx) {
    for (int attempt = 0; attempt < DB_MAX_ATTEMPTS; attempt++) {
        int rc = db_exec(db, "BEGIN IMMEDIATE", "BEGIN IMMEDIATE");
        if (rc < 0) return -1;
        if (rc == DB_RETRY) { sleep_ms(50 + 25 * attempt); continue; }
        rc = body(db, ctx);
        if (rc == 0) {
            rc = db_exec(db, "COMMIT", "COMMIT");
            if (rc == 0) return 0;
        }
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        if (rc < 0) return -1;
        sleep_ms(50 + 25 * attempt);
    }
    return err_set("%s: database stayed locked for minutes (SQLITE_BUSY); another process holds a write "
                   "transaction open: stop it or use another --db", db->path);
}

/* ---- open / migrate ---- */

const char *db_default_path(void) {
    const char *e = getenv("CONCORD_DB");
    return e && *e ? e : "out/concord.db";
}

static int read_version(Db *db, int *v) {
    sqlite3_stmt *st = NULL;
    int rc = db_prep(db, "PRAGMA user_version", &st);
    if (rc) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return 0;
    if (is_busy(rc)) return DB_RETRY;
    return err_set("%s: cannot read the schema version (%s); the file is not an SQLite database", db->path,
                   sqlite3_errmsg(db->h));
}

static int migrate_body(Db *db, void *ctx) {
    (void)ctx;
    int v = 0, rc = read_version(db, &v);
    if (rc) return rc;
    if (v > DB_SCHEMA_VERSION)
        return err_set("%s: schema version %d is newer than this build (%d); update concord", db->path, v,
                       DB_SCHEMA_VERSION);
    if (v == 0) { /* a version-0 file must be empty: refuse to build on someone else's tables */
        sqlite3_stmt *st = NULL;
        if ((rc = db_prep(db, "SELECT COUNT(*) FROM sqlite_master", &st))) return rc;
        int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (n != 0) return err_set("%s: has tables but no Concord schema version; not a results database", db->path);
    }
    for (; v < DB_SCHEMA_VERSION; v++) {
        CHECK(DB_MIGRATIONS[v].from == v);
        char what[64], bump[64];
        snprintf(what, sizeof what, "schema migration v%d->v%d", v, v + 1);
        if ((rc = db_exec(db, DB_MIGRATIONS[v].sql, what))) return rc;
        snprintf(bump, sizeof bump, "PRAGMA user_version=%d", v + 1);
        if ((rc = db_exec(db, bump, what))) return rc;
    }
    return 0;
}

/* What a file is, read without writing a byte: 0 when it is a Concord results database this build can
 * use (*v its schema version; 0 = a new, empty file), -1 with err_set naming the file otherwise (tables
 * of something else, such as a checkpoint; a newer schema; not SQLite; damaged). */
static int identify_read(Db *db, int *v);
static int identify(Db *db, int *v) {
    /* one read transaction: the version and the table count from the same snapshot (two statements
     * could straddle another process's migration commit: version 0, then its tables) */
    if (sqlite3_exec(db->h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return err_set("%s: cannot begin reading (%s)", db->path, sqlite3_errmsg(db->h));
    int rc = identify_read(db, v);
    /* on failure the callers read sqlite3_errcode (read-only: retry immutable?) and close the handle, which
     * ends the transaction: a COMMIT here would overwrite that code */
    if (rc == 0) sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
    return rc;
}
static int identify_read(Db *db, int *v) {
    int rc = read_version(db, v);
    if (rc == DB_RETRY) return err_set("%s: database is locked (SQLITE_BUSY); stop the process holding it", db->path);
    if (rc) return -1;
    if (*v > DB_SCHEMA_VERSION)
        return err_set("%s: schema version %d is newer than this build (%d); update concord", db->path, *v, DB_SCHEMA_VERSION);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, "SELECT COUNT(*), SUM(name = 'meta') + SUM(name = 'tensor') FROM sqlite_master", -1, &st,
                           NULL) != SQLITE_OK)
        return err_set("%s: not a readable database (%s)", db->path, sqlite3_errmsg(db->h));
    int n = -1, ckpt = 0;
    if (sqlite3_step(st) == SQLITE_ROW) { n = sqlite3_column_int(st, 0); ckpt = sqlite3_column_int(st, 1) == 2; }
    sqlite3_finalize(st);
    if (n < 0) return err_set("%s: not a readable database (%s)", db->path, sqlite3_errmsg(db->h));
    if (*v == 0 && n > 0)
        return err_set("%s: %s; not a results database (pass the database the runs were recorded in)", db->path,
                       ckpt ? "is a Concord checkpoint" : "has tables but no Concord schema version");
    return 0;
}

/* PRAGMA quick_check: 0 when it says ok, else -1 naming the first problem (before anything is written). */
static int quick_check(Db *db) {
    sqlite3_stmt *st = NULL;
    char first[300] = "";
    int ok = 0;
    if (sqlite3_prepare_v2(db->h, "PRAGMA quick_check(1)", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            snprintf(first, sizeof first, "%s", t ? t : "");
            ok = str_eq(first, "ok");
        } else {
            snprintf(first, sizeof first, "%s", sqlite3_errmsg(db->h));
        }
    } else {
        snprintf(first, sizeof first, "%s", sqlite3_errmsg(db->h));
    }
    sqlite3_finalize(st);
    if (ok) return 0;
    return err_set("%s: the database is damaged (%s); nothing was written: restore it from a copy or use another --db "
                   "(concord db check --db %s lists every problem)", db->path, first, db->path);
}

static int db_open_impl(const char *path, int create, Db **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return err_set("%s: is a directory; --db wants a file path", path);
    } else if (!create) {
        return err_set("%s: no such database; run a train/attack command or `concord db init --db %s` first", path, path);
    } else if (dir_create_parent(path) < 0) {
        return -1;
    }
    Db *db = xcalloc(1, sizeof *db);
    snprintf(db->path, sizeof db->path, "%s", path);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
        err_set("%s: cannot open database: %s", path, db->h ? sqlite3_errmsg(db->h) : "out of memory");
        db_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, DB_BUSY_MS);
    /* before the first write (WAL, pragmas, migration): is it ours, and is it whole? */
    int v = -1, rc = identify(db, &v);
    if (rc == 0 && v > 0) rc = quick_check(db);
    /* journal_mode=WAL needs a moment of exclusive access on a brand-new file: retry while busy */
    for (int attempt = 0; rc == 0; attempt++) {
        rc = db_exec(db, "PRAGMA journal_mode=WAL", "enabling WAL");
        if (rc != DB_RETRY || attempt + 1 == DB_MAX_ATTEMPTS) break;
        rc = 0; /* (SQLite answers busy at once here, without the busy handler, while another opener holds the file) */
        sleep_ms(50 + 25 * attempt);
    }
    if (rc == DB_RETRY) rc = err_set("%s: database is locked (SQLITE_BUSY) while enabling WAL; stop the process holding it", path);
    if (rc == 0) rc = db_exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL", "setting pragmas");
    /* crash tests (harness/core.h): $CONCORD_DB_MAX_PAGES caps the file as a full disk would (SQLITE_FULL) */
    const char *cap = getenv("CONCORD_DB_MAX_PAGES");
    if (rc == 0 && cap && *cap) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA max_page_count=%ld", atol(cap));
        rc = db_exec(db, pragma, "capping the database");
    }
    if (rc == 0) {
        rc = read_version(db, &v);
        if (rc == 0 && v != DB_SCHEMA_VERSION) rc = db_write(db, migrate_body, NULL);
    }
    if (rc != 0) {
        if (rc == DB_RETRY) err_set("%s: database is locked (SQLITE_BUSY); stop the process holding it", path);
        db_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

/* "file:PATH?mode=ro[&immutable=1]" with the path URI-escaped */
void ro_uri(const char *path, int immutable, char *uri, size_t n) {
    size_t k = (size_t)snprintf(uri, n, "file:");
    for (const char *c = path; *c && k + 4 < n; c++)
        k += (size_t)((*c == '?' || *c == '#' || *c == '%') ? snprintf(uri + k, n - k, "%%%02X", (unsigned char)*c)
                                                            : snprintf(uri + k, n - k, "%c", *c));
    snprintf(uri + k, n - k, "?mode=ro%s", immutable ? "&immutable=1" : "");
}

/* The file read-only: mode=ro (no WAL switch, no migration, no write of any kind); when its directory or
 * file is read-only and a WAL database cannot get its -shm index, immutable=1 (no locking: nothing may
 * be writing it). An older schema is copied into memory and migrated there, so old databases can be
 * queried without being changed. */
int db_open_readonly(const char *path, Db **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set("%s: no such database; pass the --db the runs were recorded in", path);
    if (S_ISDIR(sb.st_mode)) return err_set("%s: is a directory; --db wants a file path", path);
    Db *db = xcalloc(1, sizeof *db);
    snprintf(db->path, sizeof db->path, "%s", path);
    int v = -1, rc = -1;
    for (int immutable = 0; immutable < 2 && rc != 0; immutable++) {
        char uri[2200];
        ro_uri(path, immutable, uri, sizeof uri);
        db->ro_immutable = immutable;
        sqlite3_close(db->h);
        db->h = NULL;
        if (sqlite3_open_v2(uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) continue;
        sqlite3_busy_timeout(db->h, DB_BUSY_MS);
        err_clear();
        rc = identify(db, &v);
        if (rc != 0 && (sqlite3_errcode(db->h) & 0xff) != SQLITE_CANTOPEN && (sqlite3_errcode(db->h) & 0xff) != SQLITE_READONLY)
            break; /* a real answer (not ours, newer, damaged): no second try */
    }
    if (rc == 0 && v == 0) rc = err_set("%s: an empty database (no results recorded yet)", path);
    if (rc == 0 && v < DB_SCHEMA_VERSION) { /* migrate a private in-memory copy */
        sqlite3 *mem = NULL;
        sqlite3_backup *b = NULL;
        if (sqlite3_open(":memory:", &mem) != SQLITE_OK || !(b = sqlite3_backup_init(mem, "main", db->h, "main")) ||
            sqlite3_backup_step(b, -1) != SQLITE_DONE) {
            rc = err_set("%s: cannot read the database to upgrade schema version %d in memory: %s", path, v,
                         sqlite3_errmsg(mem ? mem : db->h));
        }
        if (b) sqlite3_backup_finish(b);
        sqlite3_close(db->h);
        db->h = mem;
        db->in_memory = 1;
        if (rc == 0) rc = db_write(db, migrate_body, NULL) < 0 ? -1 : 0;
    }
    if (rc != 0) {
        db_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int db_check(const char *path, FILE *f) {
    struct stat sb;
    if (stat(path, &sb) != 0 || S_ISDIR(sb.st_mode)) return err_set("%s: no such database file", path);
    sqlite3 *h = NULL;
    for (int immutable = 0; immutable < 2; immutable++) { /* as db_open_readonly: immutable on a read-only mount */
        char uri[2200];
        ro_uri(path, immutable, uri, sizeof uri);
        sqlite3_close(h);
        h = NULL;
        if (sqlite3_open_v2(uri, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) continue;
        int rc = sqlite3_exec(h, "PRAGMA schema_version", NULL, NULL, NULL);
        if ((rc & 0xff) != SQLITE_CANTOPEN && (rc & 0xff) != SQLITE_READONLY) break;
    }
    if (!h) return err_set("%s: cannot open it read-only", path);
    sqlite3_stmt *st = NULL;
    int bad = 0, rows = 0, rc;
    if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
        fprintf(f, "%s: %s\n", path, sqlite3_errmsg(h));
        sqlite3_close(h);
        return 1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        rows++;
        if (!str_eq(t, "ok")) { bad = 1; fprintf(f, "%s: %s\n", path, t ? t : "?"); }
    }
    if (rc != SQLITE_DONE) { bad = 1; fprintf(f, "%s: %s\n", path, sqlite3_errmsg(h)); }
    sqlite3_finalize(st);
    sqlite3_close(h);
    if (!bad && rows) fprintf(f, "%s: ok (PRAGMA integrity_check)\n", path);
    return bad || !rows;
}

int db_open(const char *path, Db **out) { return db_open_impl(path, 1, out); }
int db_open_existing(const char *path, Db **out) { return db_open_impl(path, 0, out); }

void db_close(Db *db) {
    if (!db) return;
    if (db->h) sqlite3_close(db->h);
    free(db);
}
const char *db_path(const Db *db) { return db->path; }
struct sqlite3 *db_sqlite(Db *db) { return db->h; }

int db_schema_version(Db *db) {
    int v = -1;
    return read_version(db, &v) == 0 ? v : -1;
}

long db_count(Db *db, const char *table) {
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM \"%s\"", table);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        err_set("%s: cannot count %s: %s", db->path, table, sqlite3_errmsg(db->h));
        return -1;
    }
    long n = sqlite3_step(st) == SQLITE_ROW ? (long)sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (n < 0) err_set("%s: cannot count %s: %s", db->path, table, sqlite3_errmsg(db->h));
    return n;
}
