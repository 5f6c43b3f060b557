/* db.c -- the results database: schema, migrations, connections and the write API (see db.h).
 *
 * Schema history (PRAGMA user_version):
 *   v1  runs, epochs, alignment, evals (attack parameters + counts), artifacts, view eval_acc.
 *   v2  runs gain model_opts, blas_core, blas_threads; evals gain job_key (UNIQUE), eot, queries, p_init,
 *       queries_max, transfer_run, transfer_hash, flags, host, git_rev; artifacts become unique per
 *       (kind, path) (duplicates dropped, newest kept); views eval_view and run_view replace eval_acc.
 *   v3  the hashing task: runs and evals gain task ('classify' | 'hash'; runs whose model_opts say
 *       head=hash become 'hash'; a hash run's test_acc is its mAP); evals gain bits, topk, n_db, map_clean,
 *       map_adv, prec_clean, prec_adv, tmap_clean, tmap_adv, mean_hamming; eval_view labels hashing
 *       attacks and leaves clean_acc / robust_acc NULL for them; run_view gains task and test_map.
 * A new file is created as v1 and migrated, so every migration runs on every fresh database.
 * Each migration step runs inside the BEGIN IMMEDIATE transaction that bumps user_version, so a crash
 * mid-migration leaves the old version intact and two processes never migrate twice.
 */
#define _POSIX_C_SOURCE 200809L
#include "results/db.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"

struct Db {
    sqlite3 *h;
    char path[1024];
    int ro_immutable;      /* db_open_readonly needed immutable=1 (a read-only directory or mount) */
    int in_memory;         /* db_open_readonly: an older schema, upgraded in a private in-memory copy */
};

enum { DB_RETRY = 1 };     /* a transaction body hit SQLITE_BUSY/LOCKED: roll back and run it again */
#define DB_BUSY_MS 30000   /* busy timeout per statement */
#define DB_MAX_ATTEMPTS 20 /* whole-transaction retries on top of the busy timeout */

static const char *const k_attack_names[] = {"fgsm", "pgd", "square", "apgd", "fab", "autoattack"};
static const char *const k_norm_names[] = {"linf", "l2"};
static const char *const k_grad_names[] = {"true", "feedback", "transfer"};
_Static_assert(ARRAY_LEN(k_attack_names) == ATK_KIND_COUNT, "one name per attack kind");
_Static_assert(ARRAY_LEN(k_grad_names) == GRAD_SOURCE_COUNT, "one name per gradient source");

const char *db_attack_name(int kind) { return kind >= 0 && kind < ATK_KIND_COUNT ? k_attack_names[kind] : "?"; }
const char *db_norm_name(int norm) { return norm >= 0 && norm < (int)ARRAY_LEN(k_norm_names) ? k_norm_names[norm] : "?"; }
const char *db_grad_source_name(int src) { return src >= 0 && src < GRAD_SOURCE_COUNT ? k_grad_names[src] : "?"; }

/* ---- schema ---- */

static const char k_schema_v1[] =
    "CREATE TABLE runs("
    " id INTEGER PRIMARY KEY,"
    " job_key TEXT UNIQUE,"
    " kind TEXT NOT NULL CHECK(kind IN ('train','finetune')),"
    " parent_run INTEGER REFERENCES runs(id),"
    " rule TEXT NOT NULL, rule_opts TEXT NOT NULL DEFAULT '',"
    " model TEXT NOT NULL, dataset TEXT NOT NULL,"
    " data_seed INTEGER, init_seed INTEGER, rule_seed INTEGER,"
    " config_json TEXT, config_hash TEXT,"
    " status TEXT NOT NULL CHECK(status IN ('running','finished','failed','interrupted')),"
    " heartbeat TEXT, host TEXT, git_rev TEXT, started TEXT, finished TEXT,"
    " ckpt_path TEXT, ckpt_hash TEXT, test_acc REAL, val_acc REAL, error TEXT);"
    "CREATE TABLE epochs("
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,"
    " lr REAL, train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, seconds REAL, samples_per_s REAL,"
    " PRIMARY KEY(run_id, epoch));"
    "CREATE TABLE alignment("
    " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL, layer TEXT NOT NULL,"
    " angle_bw REAL, norm_ratio REAL, grad_angle REAL,"
    " PRIMARY KEY(run_id, epoch, layer));"
    "CREATE TABLE evals("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER REFERENCES runs(id),"
    " target_ckpt TEXT, target_hash TEXT, dataset TEXT, split TEXT NOT NULL DEFAULT 'test',"
    " attack TEXT NOT NULL, norm TEXT NOT NULL, eps_text TEXT NOT NULL, eps REAL NOT NULL,"
    " alpha_text TEXT NOT NULL DEFAULT '', alpha REAL, steps INTEGER, restarts INTEGER, random_start INTEGER,"
    " targeted INTEGER NOT NULL DEFAULT 0, target INTEGER, grad_source TEXT NOT NULL, transfer_ckpt TEXT,"
    " seed INTEGER, batch INTEGER,"
    " n INTEGER NOT NULL, n_clean_ok INTEGER NOT NULL, n_robust_ok INTEGER NOT NULL, n_flipped INTEGER,"
    " n_zero_grad INTEGER, mean_linf REAL, mean_l2 REAL, mean_loss REAL, seconds REAL, created TEXT);"
    "CREATE TABLE artifacts("
    " id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id), eval_id INTEGER REFERENCES evals(id),"
    " kind TEXT NOT NULL CHECK(kind IN ('checkpoint','grid','figure','report')),"
    " path TEXT NOT NULL, hash TEXT, created TEXT);"
    "CREATE INDEX evals_run ON evals(run_id);"
    "CREATE VIEW eval_acc AS SELECT id, CASE WHEN n>0 THEN 1.0*n_robust_ok/n END AS robust_acc FROM evals;";

static const char k_migrate_v1_v2[] =
    "ALTER TABLE runs ADD COLUMN model_opts TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE runs ADD COLUMN blas_core TEXT;"
    "ALTER TABLE runs ADD COLUMN blas_threads INTEGER;"
    "ALTER TABLE evals ADD COLUMN job_key TEXT;"
    "ALTER TABLE evals ADD COLUMN eot INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE evals ADD COLUMN queries INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE evals ADD COLUMN p_init REAL;"
    "ALTER TABLE evals ADD COLUMN queries_max INTEGER;"
    "ALTER TABLE evals ADD COLUMN transfer_run INTEGER REFERENCES runs(id);"
    "ALTER TABLE evals ADD COLUMN transfer_hash TEXT;"
    "ALTER TABLE evals ADD COLUMN flags TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE evals ADD COLUMN host TEXT;"
    "ALTER TABLE evals ADD COLUMN git_rev TEXT;"
    "CREATE UNIQUE INDEX evals_job_key ON evals(job_key);"
    /* v1 had no uniqueness on artifacts: keep the newest row per (kind, path) */
    "DELETE FROM artifacts WHERE id NOT IN (SELECT MAX(id) FROM artifacts GROUP BY kind, path);"
    "CREATE UNIQUE INDEX artifacts_kind_path ON artifacts(kind, path);"
    /* v1 knew the surrogate only by path: link it to the run that wrote that checkpoint */
    "UPDATE evals SET transfer_run = (SELECT r.id FROM runs r WHERE r.ckpt_path = evals.transfer_ckpt"
    " ORDER BY r.id DESC LIMIT 1) WHERE grad_source = 'transfer' AND transfer_ckpt IS NOT NULL;"
    "DROP VIEW eval_acc;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule, '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    "CREATE VIEW run_view AS SELECT"
    " r.id, r.job_key, r.kind, r.parent_run, r.rule, r.model, r.dataset, r.data_seed, r.init_seed, r.rule_seed,"
    " r.status, (SELECT COUNT(*) FROM epochs p WHERE p.run_id = r.id) AS epochs, r.test_acc, r.val_acc,"
    " r.started, r.finished, r.heartbeat, r.host, r.error"
    " FROM runs r;";

static const char k_migrate_v2_v3[] =
    "ALTER TABLE runs ADD COLUMN task TEXT NOT NULL DEFAULT 'classify';"
    "UPDATE runs SET task = 'hash' WHERE model_opts LIKE '%head=hash%';"
    "ALTER TABLE evals ADD COLUMN task TEXT NOT NULL DEFAULT 'classify';"
    "ALTER TABLE evals ADD COLUMN bits INTEGER;"
    "ALTER TABLE evals ADD COLUMN topk INTEGER;"
    "ALTER TABLE evals ADD COLUMN n_db INTEGER;"
    "ALTER TABLE evals ADD COLUMN map_clean REAL;"
    "ALTER TABLE evals ADD COLUMN map_adv REAL;"
    "ALTER TABLE evals ADD COLUMN prec_clean REAL;"
    "ALTER TABLE evals ADD COLUMN prec_adv REAL;"
    "ALTER TABLE evals ADD COLUMN tmap_clean REAL;"
    "ALTER TABLE evals ADD COLUMN tmap_adv REAL;"
    "ALTER TABLE evals ADD COLUMN mean_hamming REAL;"
    "DROP VIEW eval_view;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.task, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.task = 'hash' THEN 'hash-' || CASE WHEN e.targeted THEN 'targeted' ELSE 'untargeted' END"
    "  || '-' || CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  ELSE CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule, '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate,"
    " e.bits, e.topk, e.n_db, e.map_clean, e.map_adv, e.prec_clean, e.prec_adv, e.tmap_clean, e.tmap_adv, e.mean_hamming"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    "DROP VIEW run_view;"
    "CREATE VIEW run_view AS SELECT"
    " r.id, r.job_key, r.kind, r.parent_run, r.rule, r.model, r.dataset, r.data_seed, r.init_seed, r.rule_seed,"
    " r.status, (SELECT COUNT(*) FROM epochs p WHERE p.run_id = r.id) AS epochs, r.test_acc, r.val_acc,"
    " r.started, r.finished, r.heartbeat, r.host, r.error, r.task,"
    " CASE WHEN r.task = 'hash' THEN r.test_acc END AS test_map"
    " FROM runs r;";

/* v4: per-example outcomes of every evaluation (results/outcomes.h; older rows keep NULL); a transfer
 * source is labelled by its surrogate's rule AND kind (transfer:bp-pretrain, transfer:bp-finetune: two
 * surrogates are never merged), or its checkpoint hash when no run is known; Square's source is stored
 * as black-box */
static const char k_migrate_v3_v4[] =
    "ALTER TABLE evals ADD COLUMN outcomes BLOB;"
    "ALTER TABLE runs ADD COLUMN cpu TEXT;"
    "UPDATE evals SET grad_source = 'black-box' WHERE attack = 'square';"
    "DROP VIEW eval_view;"
    "CREATE VIEW eval_view AS SELECT"
    " e.id AS eval_id, e.job_key, e.run_id, r.kind, coalesce(r.rule, '?') AS rule, coalesce(r.model, '?') AS model,"
    " coalesce(r.dataset, e.dataset, '?') AS dataset, e.dataset AS eval_dataset, e.split, r.init_seed, r.data_seed, r.rule_seed,"
    " e.target_ckpt, e.task, e.attack, e.norm, e.eps_text, e.eps, e.alpha_text, e.alpha, e.steps, e.restarts, e.eot,"
    " e.queries, e.targeted, e.grad_source, e.transfer_run, s.rule AS source_rule, s.model AS source_model,"
    " CASE WHEN e.task = 'hash' THEN 'hash-' || CASE WHEN e.targeted THEN 'targeted' ELSE 'untargeted' END"
    "  || '-' || CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  ELSE CASE WHEN e.attack = 'pgd' THEN 'pgd' || coalesce(e.steps, '') ELSE e.attack END"
    "  || CASE WHEN e.norm = 'l2' THEN '-l2' ELSE '' END"
    "  || CASE WHEN e.targeted THEN '-targeted' ELSE '' END END AS attack_label,"
    " CASE WHEN e.attack = 'square' THEN 'black-box'"
    "  WHEN e.grad_source = 'transfer' THEN 'transfer:' || coalesce(s.rule || '-' || CASE s.kind WHEN 'train' THEN 'pretrain' ELSE s.kind END,"
    "   'ckpt-' || substr(e.transfer_hash, 1, 8), '?')"
    "  WHEN e.grad_source = 'feedback' AND e.eot > 1 THEN 'feedback-eot' || e.eot"
    "  ELSE e.grad_source END AS source_label,"
    " e.n, e.n_clean_ok, e.n_robust_ok, e.n_flipped, e.n_zero_grad, e.flags, e.seconds, e.created,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_clean_ok / e.n END AS clean_acc,"
    " CASE WHEN e.n > 0 AND e.task = 'classify' THEN 1.0 * e.n_robust_ok / e.n END AS robust_acc,"
    " CASE WHEN e.n_clean_ok > 0 THEN 1.0 - 1.0 * e.n_robust_ok / e.n_clean_ok END AS attack_success_rate,"
    " e.bits, e.topk, e.n_db, e.map_clean, e.map_adv, e.prec_clean, e.prec_adv, e.tmap_clean, e.tmap_adv, e.mean_hamming"
    " FROM evals e LEFT JOIN runs r ON r.id = e.run_id LEFT JOIN runs s ON s.id = e.transfer_run;"
    ;

typedef struct Migration { int from; const char *sql; } Migration;
static const Migration k_migrations[] = {
    {0, k_schema_v1}, {1, k_migrate_v1_v2}, {2, k_migrate_v2_v3}, {3, k_migrate_v3_v4}};
_Static_assert(ARRAY_LEN(k_migrations) == DB_SCHEMA_VERSION, "one migration per schema version");

/* ---- statement helpers: 0 ok, DB_RETRY on busy, -1 with err_set ---- */

static int is_busy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

static int db_fail(Db *db, const char *what) {
    return err_set("%s: %s failed: %s; check the disk and the file's permissions", db->path, what, sqlite3_errmsg(db->h));
}
static int db_exec(Db *db, const char *sql, const char *what) {
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK) return 0;
    if (is_busy(rc)) return DB_RETRY;
    return db_fail(db, what);
}
static int db_prep(Db *db, const char *sql, sqlite3_stmt **st) {
    int rc = sqlite3_prepare_v2(db->h, sql, -1, st, NULL);
    if (rc == SQLITE_OK) return 0;
    if (is_busy(rc)) return DB_RETRY;
    return err_set("%s: cannot prepare a statement (%s); is this a Concord results database?", db->path, sqlite3_errmsg(db->h));
}
/* Steps a statement that returns no row (or one row, when want_row) and finalizes it. */
static int db_step(Db *db, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    int out = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) out = is_busy(rc) ? DB_RETRY : db_fail(db, what);
    sqlite3_finalize(st);
    return out;
}
static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}
static void bind_real(sqlite3_stmt *st, int i, double v) {
    if (isfinite(v)) sqlite3_bind_double(st, i, v);
    else sqlite3_bind_null(st, i);
}
static void bind_id(sqlite3_stmt *st, int i, int64_t id) {
    if (id > 0) sqlite3_bind_int64(st, i, id);
    else sqlite3_bind_null(st, i);
}
/* Prepares sql, binds its parameters in order from the arguments by `types` (one letter each:
 * t text or NULL, d double (not finite -> NULL), x id (<= 0 -> NULL), I int64, i int), steps and
 * finalizes it: the one shape of every single-statement write. 0, DB_RETRY, or -1 naming `what`. */
static int db_run(Db *db, const char *what, const char *sql, const char *types, ...) {
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

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs body inside BEGIN IMMEDIATE ... COMMIT, retrying the whole transaction on SQLITE_BUSY. */
typedef int (*TxBody)(Db *db, void *ctx);
static int db_write(Db *db, TxBody body, void *ctx) {
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
        CHECK(k_migrations[v].from == v);
        char what[64], bump[64];
        snprintf(what, sizeof what, "schema migration v%d->v%d", v, v + 1);
        if ((rc = db_exec(db, k_migrations[v].sql, what))) return rc;
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
static void ro_uri(const char *path, int immutable, char *uri, size_t n) {
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

/* ---- runs ---- */

static const char *host_name(const char *given, char *buf, size_t n) {
    if (given) return given;
    if (gethostname(buf, n) != 0) snprintf(buf, n, "unknown");
    buf[n - 1] = 0;
    return buf;
}

typedef struct RunBeginCtx { const DbRun *r; int64_t id; } RunBeginCtx;

/* The run's task: given, else 'hash' when its model options name the hashing head. */
static const char *run_task(const DbRun *r) {
    if (r->task) return r->task;
    return r->model_opts && strstr(r->model_opts, "head=hash") ? "hash" : "classify";
}

static int run_begin_body(Db *db, void *vctx) {
    RunBeginCtx *c = vctx;
    const DbRun *r = c->r;
    sqlite3_stmt *st = NULL;
    int rc;
    int64_t existing = 0;
    c->id = 0;
    if (r->job_key) {
        if ((rc = db_prep(db, "SELECT id, status FROM runs WHERE job_key = ?", &st))) return rc;
        sqlite3_bind_text(st, 1, r->job_key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            existing = sqlite3_column_int64(st, 0);
            int done = str_eq((const char *)sqlite3_column_text(st, 1), "finished");
            sqlite3_finalize(st);
            if (done)
                return err_set("%s: job '%s' already finished as run %lld; skip it (db_job_done) or use another key",
                               db->path, r->job_key, (long long)existing);
        } else {
            sqlite3_finalize(st);
            if (rc != SQLITE_DONE) return is_busy(rc) ? DB_RETRY : db_fail(db, "looking up a job key");
        }
    }
    char hash[17] = "", hostbuf[256];
    const char *chash = r->config_hash;
    if (!chash && r->config_json) {
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv1a64(r->config_json, strlen(r->config_json), FNV1A_INIT));
        chash = hash;
    }
    static const char cols[] =
        "job_key, kind, parent_run, rule, rule_opts, model, model_opts, dataset, data_seed, init_seed, rule_seed,"
        " config_json, config_hash, status, heartbeat, host, git_rev, blas_core, blas_threads, started, finished,"
        " ckpt_path, ckpt_hash, test_acc, val_acc, error, task, cpu";
    static const char vals[] =
        "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'running', datetime('now'), ?14, ?15, ?16, ?17,"
        " datetime('now'), NULL, NULL, NULL, NULL, ?20, NULL, ?19, ?21";
    char sql[1024];
    if (existing) snprintf(sql, sizeof sql, "UPDATE runs SET (%s) = (%s) WHERE id = ?18", cols, vals);
    else snprintf(sql, sizeof sql, "INSERT INTO runs(%s) VALUES(%s)", cols, vals);
    if ((rc = db_prep(db, sql, &st))) return rc;
    bind_text(st, 1, r->job_key);
    bind_text(st, 2, r->kind ? r->kind : "train");
    bind_id(st, 3, r->parent_run);
    bind_text(st, 4, r->rule ? r->rule : "?");
    bind_text(st, 5, r->rule_opts ? r->rule_opts : "");
    bind_text(st, 6, r->model ? r->model : "?");
    bind_text(st, 7, r->model_opts ? r->model_opts : "");
    bind_text(st, 8, r->dataset ? r->dataset : "?");
    sqlite3_bind_int64(st, 9, r->data_seed);
    sqlite3_bind_int64(st, 10, r->init_seed);
    sqlite3_bind_int64(st, 11, r->rule_seed);
    bind_text(st, 12, r->config_json);
    bind_text(st, 13, chash);
    bind_text(st, 14, host_name(r->host, hostbuf, sizeof hostbuf));
    bind_text(st, 15, r->git_rev);
    bind_text(st, 16, r->blas_core);
    sqlite3_bind_int(st, 17, r->blas_threads);
    if (existing) sqlite3_bind_int64(st, 18, existing);
    bind_text(st, 19, run_task(r));
    bind_text(st, 21, r->cpu);
    /* val_acc: a resumed run keeps the latest one its recorded epochs hold (as if never stopped) */
    if (existing && r->resume) {
        sqlite3_stmt *q = NULL;
        if ((rc = db_prep(db, "SELECT val_acc FROM epochs WHERE run_id = ? AND val_acc IS NOT NULL ORDER BY epoch DESC LIMIT 1", &q))) {
            sqlite3_finalize(st);
            return rc;
        }
        sqlite3_bind_int64(q, 1, existing);
        if (sqlite3_step(q) == SQLITE_ROW) sqlite3_bind_double(st, 20, sqlite3_column_double(q, 0));
        sqlite3_finalize(q);
    }
    if ((rc = db_step(db, st, "recording a run"))) return rc;
    c->id = existing ? existing : sqlite3_last_insert_rowid(db->h);
    if (existing && !r->resume) {
        static const char *const clear[] = {"DELETE FROM epochs WHERE run_id = ?", "DELETE FROM alignment WHERE run_id = ?"};
        for (size_t i = 0; i < ARRAY_LEN(clear); i++) {
            if ((rc = db_run(db, "clearing a rerun's epochs", clear[i], "I", existing))) return rc;
        }
    }
    return 0;
}

int db_run_begin(Db *db, const DbRun *r, int64_t *run_id) {
    CHECK(db && r && run_id);
    if (r->kind && !str_eq(r->kind, "train") && !str_eq(r->kind, "finetune"))
        return err_set("%s: run kind '%s' is not train or finetune", db->path, r->kind);
    if (!str_eq(run_task(r), "classify") && !str_eq(run_task(r), "hash"))
        return err_set("%s: run task '%s' is not classify or hash", db->path, run_task(r));
    RunBeginCtx c = {r, 0};
    if (db_write(db, run_begin_body, &c) < 0) return -1;
    *run_id = c.id;
    return 0;
}

typedef struct IdCtx { int64_t id; } IdCtx;
static int heartbeat_body(Db *db, void *vctx) {
    return db_run(db, "heartbeat", "UPDATE runs SET heartbeat = datetime('now') WHERE id = ?", "I", ((IdCtx *)vctx)->id);
}
int db_run_heartbeat(Db *db, int64_t run_id) {
    IdCtx c = {run_id};
    return db_write(db, heartbeat_body, &c);
}

typedef struct EpochCtx { int64_t id; const EpochStats *s; } EpochCtx;
static int epoch_body(Db *db, void *vctx) {
    EpochCtx *c = vctx;
    const EpochStats *s = c->s;
    int rc = db_run(db, "recording an epoch",
                    "INSERT OR REPLACE INTO epochs(run_id, epoch, lr, train_loss, train_acc, val_loss, val_acc,"
                    " seconds, samples_per_s) VALUES(?,?,?,?,?,?,?,?,?)", "Iiddddddd", c->id, s->epoch, s->lr,
                    s->train_loss, s->train_acc, s->val_loss, s->val_acc, s->seconds, s->samples_per_s);
    for (int i = 0; rc == 0 && i < s->nalign && i < MAX_ALIGN; i++)
        rc = db_run(db, "recording alignment",
                    "INSERT OR REPLACE INTO alignment(run_id, epoch, layer, angle_bw, norm_ratio, grad_angle)"
                    " VALUES(?,?,?,?,?,?)", "Iitddd", c->id, s->epoch, s->align[i].name, s->align[i].angle_bw,
                    s->align[i].norm_ratio, s->align[i].grad_angle);
    if (rc) return rc;
    return db_run(db, "updating a run", "UPDATE runs SET heartbeat = datetime('now'), val_acc = coalesce(?, val_acc) WHERE id = ?",
                  "dI", s->val_acc, c->id);
}
int db_run_epoch(Db *db, int64_t run_id, const EpochStats *s) {
    CHECK(db && s);
    EpochCtx c = {run_id, s};
    return db_write(db, epoch_body, &c);
}

typedef struct ArtCtx { int64_t run_id, eval_id; const char *kind, *path, *hash; } ArtCtx;
static int artifact_body(Db *db, void *vctx) {
    ArtCtx *c = vctx;
    return db_run(db, "recording an artifact",
                  "INSERT INTO artifacts(run_id, eval_id, kind, path, hash, created)"
                  " VALUES(?,?,?,?,?,datetime('now')) ON CONFLICT(kind, path) DO UPDATE SET"
                  " run_id = excluded.run_id, eval_id = excluded.eval_id, hash = excluded.hash,"
                  " created = excluded.created", "xxttt", c->run_id, c->eval_id, c->kind, c->path, c->hash);
}

typedef struct RunEndCtx { int64_t id; const char *status, *error, *ckpt, *hash; double acc; } RunEndCtx;
static int run_end_body(Db *db, void *vctx) {
    RunEndCtx *c = vctx;
    int rc = db_run(db, "ending a run",
                    "UPDATE runs SET status = ?, error = ?, ckpt_path = coalesce(?, ckpt_path),"
                    " ckpt_hash = coalesce(?, ckpt_hash), test_acc = coalesce(?, test_acc),"
                    " finished = datetime('now'), heartbeat = datetime('now') WHERE id = ?",
                    "ttttdI", c->status, c->error, c->ckpt, c->hash, c->acc, c->id);
    if (rc) return rc;
    if (sqlite3_changes(db->h) != 1)
        return err_set("%s: run %lld does not exist; it was not begun in this database", db->path, (long long)c->id);
    if (c->ckpt) {
        ArtCtx a = {c->id, 0, "checkpoint", c->ckpt, c->hash};
        return artifact_body(db, &a);
    }
    return 0;
}
int db_run_end(Db *db, int64_t run_id, const char *status, const char *error, const char *ckpt_path,
               const char *ckpt_hash, double test_acc) {
    CHECK(db && status);
    if (!str_eq(status, "finished") && !str_eq(status, "failed") && !str_eq(status, "interrupted"))
        return err_set("%s: run status '%s' is not finished, failed or interrupted", db->path, status);
    RunEndCtx c = {run_id, status, error, ckpt_path, ckpt_hash, test_acc};
    return db_write(db, run_end_body, &c);
}

typedef struct ReapCtx { double stale; int n; } ReapCtx;
static int reap_body(Db *db, void *vctx) {
    ReapCtx *c = vctx;
    int rc = db_run(db, "marking stale runs",
                    "UPDATE runs SET status = 'interrupted', error = coalesce(error, 'heartbeat stopped (worker killed?)')"
                    " WHERE status = 'running' AND (heartbeat IS NULL OR"
                    " (julianday('now') - julianday(heartbeat)) * 86400.0 > ?)", "d", c->stale);
    if (rc) return rc;
    c->n = sqlite3_changes(db->h);
    return 0;
}
int db_runs_reap(Db *db, double stale_seconds, int *n) {
    ReapCtx c = {stale_seconds, 0};
    if (db_write(db, reap_body, &c) < 0) return -1;
    if (n) *n = c.n;
    return 0;
}

typedef struct MarkCtx { const char *key; int n; } MarkCtx;
static int mark_body(Db *db, void *vctx) {
    MarkCtx *c = vctx;
    int rc = db_run(db, "marking a run interrupted",
                    "UPDATE runs SET status = 'interrupted', heartbeat = datetime('now'),"
                    " error = coalesce(error, 'the worker process died (killed or crashed)')"
                    " WHERE job_key = ? AND status = 'running'", "t", c->key);
    if (rc) return rc;
    c->n = sqlite3_changes(db->h);
    return 0;
}
int db_runs_mark_interrupted(Db *db, const char *job_key, int *n) {
    CHECK(db && job_key);
    MarkCtx c = {job_key, 0};
    if (db_write(db, mark_body, &c) < 0) return -1;
    if (n) *n = c.n;
    return 0;
}

/* ---- evals and artifacts ---- */

/* The run behind a checkpoint: the given id when this database has it, else the newest run whose final
 * checkpoint has that content hash (or, without a hash, that path). 0 = unknown; DB_RETRY on busy. */
static int resolve_run(Db *db, int64_t id, const char *hash, const char *path, int64_t *out) {
    static const char sql[] =
        "SELECT coalesce((SELECT id FROM runs WHERE id = ?1),"
        " (SELECT id FROM runs WHERE ?2 IS NOT NULL AND ckpt_hash = ?2 ORDER BY id DESC LIMIT 1),"
        " (SELECT run_id FROM artifacts WHERE ?2 IS NOT NULL AND kind = 'checkpoint' AND hash = ?2"
        "  AND run_id IS NOT NULL ORDER BY id DESC LIMIT 1),"
        " (SELECT id FROM runs WHERE ?2 IS NULL AND ?3 IS NOT NULL AND ckpt_path = ?3 ORDER BY id DESC LIMIT 1), 0)";
    sqlite3_stmt *st = NULL;
    *out = 0;
    if (id <= 0 && !hash && !path) return 0;
    int rc = db_prep(db, sql, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, hash && *hash ? hash : NULL);
    bind_text(st, 3, path && *path ? path : NULL);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return 0;
    return is_busy(rc) ? DB_RETRY : db_fail(db, "looking up a checkpoint's run");
}

/* one eval row (upserted by job key); *id gets its row id */
static int eval_insert(Db *db, const DbEval *e, const AttackParams *p, const EvalCounts *c, const char *flags, int64_t *id) {
    int64_t run_id = 0, transfer_run = 0;
    int rc = resolve_run(db, e->run_id, e->target_hash, e->target_ckpt, &run_id);
    if (rc == 0 && p->grad_source == GRAD_TRANSFER && p->kind != ATK_SQUARE)
        rc = resolve_run(db, e->transfer_run, e->transfer_hash, p->transfer_ckpt[0] ? p->transfer_ckpt : NULL, &transfer_run);
    if (rc) return rc;
    static const char *const cols[] = {
        "job_key", "run_id", "target_ckpt", "target_hash", "dataset", "split", "attack", "norm", "eps_text", "eps",
        "alpha_text", "alpha", "steps", "restarts", "random_start", "targeted", "target", "grad_source",
        "transfer_ckpt", "transfer_run", "transfer_hash", "eot", "queries", "p_init", "seed", "batch",
        "n", "n_clean_ok", "n_robust_ok", "n_flipped", "n_zero_grad", "mean_linf", "mean_l2", "mean_loss",
        "seconds", "queries_max", "flags", "host", "git_rev", "task", "bits", "topk", "n_db", "map_clean", "map_adv",
        "prec_clean", "prec_adv", "tmap_clean", "tmap_adv", "mean_hamming", "outcomes", "created"};
    enum { NCOL = (int)ARRAY_LEN(cols) };
    char sql[4096];
    int k = snprintf(sql, sizeof sql, "INSERT INTO evals(");
    for (int i = 0; i < NCOL; i++) k += snprintf(sql + k, sizeof sql - (size_t)k, "%s%s", i ? "," : "", cols[i]);
    k += snprintf(sql + k, sizeof sql - (size_t)k, ") VALUES(");
    for (int i = 0; i < NCOL; i++)
        k += snprintf(sql + k, sizeof sql - (size_t)k, "%s%s", i ? "," : "", i == NCOL - 1 ? "datetime('now')" : "?");
    /* same key again: overwrite every column in place, keeping the id (artifacts may point at it) */
    k += snprintf(sql + k, sizeof sql - (size_t)k, ") ON CONFLICT(job_key) DO UPDATE SET ");
    for (int i = 1; i < NCOL; i++)
        k += snprintf(sql + k, sizeof sql - (size_t)k, "%s%s = excluded.%s", i > 1 ? "," : "", cols[i], cols[i]);
    k += snprintf(sql + k, sizeof sql - (size_t)k, " RETURNING id");
    CHECK(k < (int)sizeof sql);
    sqlite3_stmt *st = NULL;
    if ((rc = db_prep(db, sql, &st))) return rc;
    char hostbuf[256];
    int i = 1;
    bind_text(st, i++, e->job_key);
    bind_id(st, i++, run_id);
    bind_text(st, i++, e->target_ckpt);
    bind_text(st, i++, e->target_hash);
    bind_text(st, i++, e->dataset);
    bind_text(st, i++, e->split ? e->split : "test");
    bind_text(st, i++, attack_record_name(p)); /* apgd-ce, apgd-t, fab-t, autoattack... */
    bind_text(st, i++, db_norm_name(p->norm));
    bind_text(st, i++, p->eps_text);
    bind_real(st, i++, p->eps);
    bind_text(st, i++, p->alpha_text);
    bind_real(st, i++, p->alpha);
    sqlite3_bind_int(st, i++, p->steps);
    sqlite3_bind_int(st, i++, p->restarts);
    sqlite3_bind_int(st, i++, p->random_start);
    sqlite3_bind_int(st, i++, p->targeted);
    sqlite3_bind_int(st, i++, p->target);
    bind_text(st, i++, p->kind == ATK_SQUARE ? "black-box" : db_grad_source_name(p->grad_source)); /* Square uses no gradient */
    bind_text(st, i++, p->transfer_ckpt[0] ? p->transfer_ckpt : NULL);
    bind_id(st, i++, transfer_run);
    bind_text(st, i++, e->transfer_hash);
    sqlite3_bind_int(st, i++, p->eot);
    sqlite3_bind_int(st, i++, p->queries);
    bind_real(st, i++, p->p_init);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)p->seed);
    sqlite3_bind_int(st, i++, p->batch);
    sqlite3_bind_int64(st, i++, c->n);
    sqlite3_bind_int64(st, i++, c->n_clean_ok);
    sqlite3_bind_int64(st, i++, c->n_robust_ok);
    sqlite3_bind_int64(st, i++, c->n_flipped);
    sqlite3_bind_int64(st, i++, c->n_zero_grad);
    bind_real(st, i++, c->mean_linf);
    bind_real(st, i++, c->mean_l2);
    bind_real(st, i++, c->mean_loss);
    bind_real(st, i++, c->seconds);
    sqlite3_bind_int64(st, i++, c->queries_max);
    bind_text(st, i++, flags ? flags : "");
    bind_text(st, i++, host_name(e->host, hostbuf, sizeof hostbuf));
    bind_text(st, i++, e->git_rev);
    const HashCounts *hc = e->hash;
    bind_text(st, i++, hc ? "hash" : "classify");
    if (hc) {
        sqlite3_bind_int(st, i++, hc->bits);
        sqlite3_bind_int(st, i++, hc->topk);
        sqlite3_bind_int64(st, i++, hc->n_db);
        const double v[] = {hc->map_clean, hc->map_adv, hc->prec_clean, hc->prec_adv, hc->tmap_clean, hc->tmap_adv, hc->mean_hamming};
        for (size_t j = 0; j < ARRAY_LEN(v); j++) bind_real(st, i++, v[j]);
    } else {
        for (int j = 0; j < 10; j++) sqlite3_bind_null(st, i++);
    }
    if (e->outcomes && e->outcomes_bytes > 0) sqlite3_bind_blob64(st, i++, e->outcomes, (sqlite3_uint64)e->outcomes_bytes, SQLITE_STATIC);
    else sqlite3_bind_null(st, i++);
    CHECK(i == NCOL);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    int out = rc == SQLITE_ROW ? 0 : is_busy(rc) ? DB_RETRY : db_fail(db, "recording an eval");
    sqlite3_finalize(st);
    return out;
}

typedef struct EvalsCtx { const DbEvalRec *r; int n; const char (*hash)[17]; } EvalsCtx;
static int evals_body(Db *db, void *vctx) {
    EvalsCtx *x = vctx;
    for (int i = 0; i < x->n; i++) {
        const DbEvalRec *r = &x->r[i];
        int64_t id = 0;
        int rc = eval_insert(db, &r->e, r->p, r->c, r->flags, &id);
        if (rc) return rc;
        if (r->eval_id) *r->eval_id = id;
        if (r->grid) {
            ArtCtx a = {0, id, "grid", r->grid, x->hash[i]};
            if ((rc = artifact_body(db, &a))) return rc;
        }
    }
    return 0;
}

static int eval_check(Db *db, const DbEvalRec *r) {
    const DbEval *e = &r->e;
    const AttackParams *p = r->p;
    const EvalCounts *c = r->c;
    if ((e->hash != NULL) != (p->objective == OBJ_HASH))
        return err_set("%s: a %s attack recorded %s hashing scores; this is a caller bug", db->path,
                       p->objective == OBJ_HASH ? "hashing" : "classification", e->hash ? "with" : "without");
    if (c->n_robust_ok > c->n_clean_ok || c->n_clean_ok > c->n)
        return err_set("%s: inconsistent eval counts (n %ld, clean-correct %ld, robust-correct %ld); this is an "
                       "attack bug", db->path, c->n, c->n_clean_ok, c->n_robust_ok);
    return 0;
}

int db_evals_record(Db *db, const DbEvalRec *recs, int n) {
    CHECK(db && (recs || n == 0));
    char (*hash)[17] = xcalloc((size_t)(n ? n : 1), sizeof *hash);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        CHECK(recs[i].p && recs[i].c);
        rc = eval_check(db, &recs[i]);
        if (rc == 0 && recs[i].grid) rc = file_sha_hex(recs[i].grid, hash[i]);
    }
    EvalsCtx x = {recs, n, (const char (*)[17])hash};
    if (rc == 0) rc = db_write(db, evals_body, &x);
    free(hash);
    return rc < 0 ? -1 : 0;
}

int db_eval_record(Db *db, const DbEval *e, const AttackParams *p, const EvalCounts *c, const char *flags,
                   int64_t *eval_id) {
    CHECK(db && e && p && c);
    DbEvalRec r = {*e, p, c, flags, NULL, eval_id};
    return db_evals_record(db, &r, 1);
}

int db_artifact(Db *db, int64_t run_id, int64_t eval_id, const char *kind, const char *path, const char *hash) {
    CHECK(db && kind && path);
    if (!str_eq(kind, "checkpoint") && !str_eq(kind, "grid") && !str_eq(kind, "figure") && !str_eq(kind, "report"))
        return err_set("%s: artifact kind '%s' is not checkpoint, grid, figure or report", db->path, kind);
    char h[17];
    if (!hash) {
        if (file_sha_hex(path, h) < 0) return -1;
        hash = h;
    }
    ArtCtx c = {run_id, eval_id, kind, path, hash};
    return db_write(db, artifact_body, &c);
}

int db_job_done(Db *db, const char *job_key) {
    CHECK(db && job_key);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h,
                           "SELECT EXISTS(SELECT 1 FROM runs WHERE job_key = ?1 AND status = 'finished')"
                           " OR EXISTS(SELECT 1 FROM evals WHERE job_key = ?1)", -1, &st, NULL) != SQLITE_OK)
        return err_set("%s: cannot look up job '%s': %s", db->path, job_key, sqlite3_errmsg(db->h));
    sqlite3_bind_text(st, 1, job_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int done = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (done < 0) return err_set("%s: cannot look up job '%s': %s", db->path, job_key, sqlite3_errmsg(db->h));
    return done;
}

/* ---- merging shards ---- */

/* "a, b, c": the columns of main.TABLE except those in skip (NULL-terminated). */
static int table_cols(Db *db, const char *table, const char *const *skip, char *out, size_t cap) {
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA main.table_info(%s)", table);
    sqlite3_stmt *st = NULL;
    int rc = db_prep(db, sql, &st);
    if (rc) return rc;
    size_t k = 0;
    out[0] = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(st, 1);
        int skipped = 0;
        for (int i = 0; skip[i]; i++) skipped |= str_eq(skip[i], c);
        if (skipped) continue;
        k += (size_t)snprintf(out + k, cap - k, "%s%s", k ? ", " : "", c);
        CHECK(k < cap);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : is_busy(rc) ? DB_RETRY : db_fail(db, "reading the table layout");
}

/* Runs sql with up to two int64 parameters (0 = not bound when the statement has fewer). */
static int exec_ids(Db *db, const char *sql, int64_t a, int64_t b, const char *what) {
    sqlite3_stmt *st = NULL;
    int rc = db_prep(db, sql, &st);
    if (rc) return rc;
    if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int64(st, 1, a);
    if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int64(st, 2, b);
    return db_step(db, st, what);
}

typedef struct MergeCtx { DbMergeStats *st; } MergeCtx;

static int merge_runs(Db *db, DbMergeStats *ms) {
    static const char *const skip_runs[] = {"id", "parent_run", NULL};
    static const char *const skip_child[] = {"run_id", NULL};
    char cols[2048], ecols[512], acols[512], sql[6144];
    int rc;
    if ((rc = table_cols(db, "runs", skip_runs, cols, sizeof cols)) || (rc = table_cols(db, "epochs", skip_child, ecols, sizeof ecols)) ||
        (rc = table_cols(db, "alignment", skip_child, acols, sizeof acols)))
        return rc;
    sqlite3_stmt *it = NULL;
    if ((rc = db_prep(db, "SELECT s.id, s.status = 'finished', m.id, m.status = 'finished',"
                          " s.heartbeat IS NOT NULL AND (m.heartbeat IS NULL OR s.heartbeat > m.heartbeat),"
                          " s.job_key IS NULL FROM s.runs s LEFT JOIN main.runs m ON m.job_key = s.job_key ORDER BY s.id", &it)))
        return rc;
    while ((rc = sqlite3_step(it)) == SQLITE_ROW) {
        int64_t sid = sqlite3_column_int64(it, 0), mid = sqlite3_column_int64(it, 2);
        int s_fin = sqlite3_column_int(it, 1), m_fin = sqlite3_column_int(it, 3), newer = sqlite3_column_int(it, 4);
        if (sqlite3_column_int(it, 5)) { ms->unkeyed++; continue; }
        int have = sqlite3_column_type(it, 2) != SQLITE_NULL;
        if (have && (m_fin || (!s_fin && !newer))) { ms->runs_kept++; continue; }
        int r;
        if (have) {
            snprintf(sql, sizeof sql, "UPDATE main.runs SET (%s) = (SELECT %s FROM s.runs WHERE id = ?1) WHERE id = ?2", cols, cols);
            if ((r = exec_ids(db, sql, sid, mid, "merging a run")) ||
                (r = exec_ids(db, "DELETE FROM main.epochs WHERE run_id = ?1", mid, 0, "merging a run")) ||
                (r = exec_ids(db, "DELETE FROM main.alignment WHERE run_id = ?1", mid, 0, "merging a run")))
                { sqlite3_finalize(it); return r; }
            ms->runs_replaced++;
        } else {
            snprintf(sql, sizeof sql, "INSERT INTO main.runs(%s) SELECT %s FROM s.runs WHERE id = ?1", cols, cols);
            if ((r = exec_ids(db, sql, sid, 0, "merging a run"))) { sqlite3_finalize(it); return r; }
            mid = sqlite3_last_insert_rowid(db->h);
            ms->runs_added++;
        }
        snprintf(sql, sizeof sql, "INSERT INTO main.epochs(run_id, %s) SELECT ?2, %s FROM s.epochs WHERE run_id = ?1", ecols, ecols);
        if ((r = exec_ids(db, sql, sid, mid, "merging epochs"))) { sqlite3_finalize(it); return r; }
        snprintf(sql, sizeof sql, "INSERT INTO main.alignment(run_id, %s) SELECT ?2, %s FROM s.alignment WHERE run_id = ?1", acols, acols);
        if ((r = exec_ids(db, sql, sid, mid, "merging alignment"))) { sqlite3_finalize(it); return r; }
        /* the parent: the shard's parent run by its job key (when the shard holds it) */
        if ((r = exec_ids(db, "UPDATE main.runs SET parent_run = (SELECT m.id FROM s.runs p JOIN main.runs m ON m.job_key = p.job_key"
                              " WHERE p.id = (SELECT parent_run FROM s.runs WHERE id = ?1)) WHERE id = ?2", sid, mid, "merging a run")))
            { sqlite3_finalize(it); return r; }
    }
    sqlite3_finalize(it);
    return rc == SQLITE_DONE ? 0 : is_busy(rc) ? DB_RETRY : db_fail(db, "reading the shard's runs");
}

static int merge_evals(Db *db, DbMergeStats *ms) {
    static const char *const skip[] = {"id", "run_id", "transfer_run", NULL};
    char cols[4096], sql[10240];
    int rc = table_cols(db, "evals", skip, cols, sizeof cols);
    if (rc) return rc;
    sqlite3_stmt *it = NULL;
    if ((rc = db_prep(db, "SELECT s.id, m.id, s.job_key IS NULL, s.created IS NOT NULL AND (m.created IS NULL OR s.created > m.created)"
                          " FROM s.evals s LEFT JOIN main.evals m ON m.job_key = s.job_key ORDER BY s.id", &it)))
        return rc;
    while ((rc = sqlite3_step(it)) == SQLITE_ROW) {
        int64_t sid = sqlite3_column_int64(it, 0), mid = sqlite3_column_int64(it, 1);
        if (sqlite3_column_int(it, 2)) { ms->unkeyed++; continue; }
        int have = sqlite3_column_type(it, 1) != SQLITE_NULL, r;
        if (have && !sqlite3_column_int(it, 3)) { ms->evals_kept++; continue; }
        if (have) {
            snprintf(sql, sizeof sql, "UPDATE main.evals SET (%s) = (SELECT %s FROM s.evals WHERE id = ?1), run_id = NULL,"
                     " transfer_run = NULL WHERE id = ?2", cols, cols);
            r = exec_ids(db, sql, sid, mid, "merging an eval");
            ms->evals_replaced++;
        } else {
            snprintf(sql, sizeof sql, "INSERT INTO main.evals(%s) SELECT %s FROM s.evals WHERE id = ?1", cols, cols);
            r = exec_ids(db, sql, sid, 0, "merging an eval");
            ms->evals_added++;
        }
        if (r) { sqlite3_finalize(it); return r; }
    }
    sqlite3_finalize(it);
    return rc == SQLITE_DONE ? 0 : is_busy(rc) ? DB_RETRY : db_fail(db, "reading the shard's evals");
}

static int merge_body(Db *db, void *vctx) {
    DbMergeStats *ms = ((MergeCtx *)vctx)->st;
    memset(ms, 0, sizeof *ms);
    int rc;
    if ((rc = merge_runs(db, ms)) || (rc = merge_evals(db, ms))) return rc;
    /* artifacts: ids through the job keys */
    if ((rc = db_exec(db,
                      "INSERT INTO main.artifacts(run_id, eval_id, kind, path, hash, created)"
                      " SELECT (SELECT m.id FROM s.runs r JOIN main.runs m ON m.job_key = r.job_key WHERE r.id = a.run_id),"
                      " (SELECT m.id FROM s.evals e JOIN main.evals m ON m.job_key = e.job_key WHERE e.id = a.eval_id),"
                      " a.kind, a.path, a.hash, a.created FROM s.artifacts a WHERE 1"
                      " ON CONFLICT(kind, path) DO UPDATE SET run_id = coalesce(excluded.run_id, run_id),"
                      " eval_id = coalesce(excluded.eval_id, eval_id), hash = excluded.hash, created = excluded.created"
                      " WHERE excluded.created > artifacts.created OR artifacts.created IS NULL"
                      " OR coalesce(excluded.run_id, artifacts.run_id) IS NOT artifacts.run_id"
                      " OR coalesce(excluded.eval_id, artifacts.eval_id) IS NOT artifacts.eval_id",
                      "merging artifacts")))
        return rc;
    /* links that could not be made in the shard (a task's shard holds only its own job), or whose target
     * arrived in a later shard: parents by the checkpoint the finetune started from, evals by content hash */
    return db_exec(db,
                   "UPDATE main.runs SET parent_run = (SELECT p.id FROM main.runs p WHERE p.ckpt_path ="
                   " json_extract(runs.config_json, '$.from') ORDER BY p.status = 'finished' DESC, p.id DESC LIMIT 1)"
                   " WHERE parent_run IS NULL AND kind = 'finetune' AND json_valid(config_json)"
                   " AND json_extract(config_json, '$.from') IS NOT NULL"
                   " AND EXISTS(SELECT 1 FROM main.runs p WHERE p.ckpt_path = json_extract(runs.config_json, '$.from'));"
                   "UPDATE main.evals SET run_id = coalesce((SELECT id FROM main.runs WHERE ckpt_hash = evals.target_hash ORDER BY id DESC LIMIT 1),"
                   " (SELECT run_id FROM main.artifacts WHERE kind = 'checkpoint' AND hash = evals.target_hash AND run_id IS NOT NULL"
                   " ORDER BY id DESC LIMIT 1)) WHERE run_id IS NULL AND target_hash IS NOT NULL;"
                   "UPDATE main.evals SET transfer_run = coalesce((SELECT id FROM main.runs WHERE ckpt_hash = evals.transfer_hash ORDER BY id DESC LIMIT 1),"
                   " (SELECT run_id FROM main.artifacts WHERE kind = 'checkpoint' AND hash = evals.transfer_hash AND run_id IS NOT NULL"
                   " ORDER BY id DESC LIMIT 1)) WHERE transfer_run IS NULL AND transfer_hash IS NOT NULL AND grad_source = 'transfer';",
                   "linking merged rows");
}

int db_merge(Db *db, const char *shard_path, DbMergeStats *st) {
    CHECK(db && shard_path && st);
    memset(st, 0, sizeof *st);
    if (str_eq(shard_path, db->path)) return err_set("%s: cannot merge a database into itself", shard_path);
    /* the shard is an input: opened read-only, never written (an older schema is upgraded in a private
       copy, attached from a temporary file beside the target database) */
    Db *shard;
    if (db_open_readonly(shard_path, &shard) < 0) return -1;
    char uri[2200], tmp[1200] = "";
    if (shard->in_memory) {
        snprintf(tmp, sizeof tmp, "%s.merge.%ld.tmp", db->path, (long)getpid());
        sqlite3 *f = NULL;
        sqlite3_backup *b = NULL;
        int ok = sqlite3_open(tmp, &f) == SQLITE_OK && (b = sqlite3_backup_init(f, "main", shard->h, "main")) &&
                 sqlite3_backup_step(b, -1) == SQLITE_DONE;
        if (b) sqlite3_backup_finish(b);
        sqlite3_close(f);
        if (!ok) {
            unlink(tmp);
            db_close(shard);
            return err_set("%s: cannot write a temporary upgraded copy of %s (disk full?)", tmp, shard_path);
        }
        ro_uri(tmp, 0, uri, sizeof uri);
    } else {
        ro_uri(shard_path, shard->ro_immutable, uri, sizeof uri);
    }
    db_close(shard);
    sqlite3_stmt *at = NULL;
    int rc = SQLITE_ERROR;
    if (sqlite3_prepare_v2(db->h, "ATTACH DATABASE ?1 AS s", -1, &at, NULL) == SQLITE_OK) {
        sqlite3_bind_text(at, 1, uri, -1, SQLITE_STATIC);
        rc = sqlite3_step(at);
    }
    sqlite3_finalize(at);
    if (rc != SQLITE_DONE) {
        err_set("%s: cannot attach %s: %s", db->path, shard_path, sqlite3_errmsg(db->h));
        if (tmp[0]) unlink(tmp);
        return -1;
    }
    MergeCtx c = {st};
    rc = db_write(db, merge_body, &c);
    sqlite3_exec(db->h, "DETACH DATABASE s", NULL, NULL, NULL);
    if (tmp[0]) unlink(tmp);
    if (rc < 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", err_msg());
        err_clear();
        return err_set("merging %s: %s", shard_path, msg);
    }
    return 0;
}

int db_seal(const char *path) {
    Db *db;
    if (db_open_existing(path, &db) < 0) return -1;
    int rc = db_exec(db, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE", "sealing the database");
    if (rc == DB_RETRY) rc = err_set("%s: database is locked (SQLITE_BUSY) while sealing it; stop the process writing it", path);
    db_close(db);
    return rc < 0 ? -1 : 0;
}

int db_file_jobs_done(const char *path, char *const *keys, int nkeys) {
    char uri[4200];
    snprintf(uri, sizeof uri, "file:%s?immutable=1", path);
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(uri, &h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        err_set("%s: cannot open the shard: %s", path, h ? sqlite3_errmsg(h) : "out of memory");
        sqlite3_close(h);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int done = 1;
    if (sqlite3_prepare_v2(h, "SELECT EXISTS(SELECT 1 FROM runs WHERE job_key = ?1 AND status = 'finished')"
                              " OR EXISTS(SELECT 1 FROM evals WHERE job_key = ?1)", -1, &st, NULL) != SQLITE_OK) {
        err_set("%s: not a Concord results database (%s); remove it from the shard directory", path, sqlite3_errmsg(h));
        sqlite3_close(h);
        return -1;
    }
    for (int i = 0; i < nkeys && done == 1; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
        done = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    }
    if (done < 0) err_set("%s: cannot read the shard: %s", path, sqlite3_errmsg(h));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return done;
}
