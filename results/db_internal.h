/* db_internal.h -- what the results-database files share (db.c opens and migrates, db_schema.c holds the
 * schema, db_record.c writes runs and evaluations, db_merge.c merges shards); nothing outside results/db*.c
 * includes it. Statement helpers return 0, DB_RETRY on SQLITE_BUSY/LOCKED (the transaction is rolled back
 * and run again by db_write), or -1 with err_set. */
#ifndef CONCORD_DB_INTERNAL_H
#define CONCORD_DB_INTERNAL_H
#include <sqlite3.h>

#include "results/db.h"

struct Db {
    sqlite3 *h;
    char path[1024];
    int ro_immutable;      /* db_open_readonly needed immutable=1 (a read-only directory or mount) */
    int in_memory;         /* db_open_readonly: an older schema, upgraded in a private in-memory copy */
};

enum { DB_RETRY = 1 };     /* a transaction body hit SQLITE_BUSY/LOCKED: roll back and run it again */
#define DB_BUSY_MS 30000   /* busy timeout per statement */
#define DB_MAX_ATTEMPTS 20 /* whole-transaction retries on top of the busy timeout */

/* the schema: migration v -> v + 1 is DB_MIGRATIONS[v] (db_schema.c) */
typedef struct DbMigration { int from; const char *sql; } DbMigration;
extern const DbMigration DB_MIGRATIONS[];

int is_busy(int rc);
int db_fail(Db *db, const char *what);
int db_exec(Db *db, const char *sql, const char *what);
int db_prep(Db *db, const char *sql, sqlite3_stmt **st);
/* steps a statement that returns no row (or one row) and finalizes it */
int db_step(Db *db, sqlite3_stmt *st, const char *what);
void bind_text(sqlite3_stmt *st, int i, const char *s);   /* NULL -> NULL */
void bind_real(sqlite3_stmt *st, int i, double v);        /* not finite -> NULL */
void bind_id(sqlite3_stmt *st, int i, int64_t id);        /* <= 0 -> NULL */
/* prepare, bind by `types` (t text, d double, x id, I int64, i int), step, finalize: one write */
int db_run(Db *db, const char *what, const char *sql, const char *types, ...);
void sleep_ms(long ms);
/* runs body inside BEGIN IMMEDIATE ... COMMIT, retrying the whole transaction on SQLITE_BUSY */
typedef int (*TxBody)(Db *db, void *ctx);
int db_write(Db *db, TxBody body, void *ctx);
/* "file:PATH?mode=ro[&immutable=1]" with the path URI-escaped */
void ro_uri(const char *path, int immutable, char *uri, size_t n);
/* an artifact row upsert inside a transaction (db_record.c) */
typedef struct ArtCtx { int64_t run_id, eval_id; const char *kind, *path, *hash; } ArtCtx;
int artifact_body(Db *db, void *vctx);
#endif
