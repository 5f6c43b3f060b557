/* db_merge.c -- merging shard databases (one per Slurm array task) into one by job key, sealing a shard,
 * and reading a sealed shard's done keys without locking. See db.h and docs/slurm.md. */
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
