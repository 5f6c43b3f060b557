/* db_record.c -- what train/finetune and attack commands write: runs (begin, epochs, end, reaping dead
 * workers), evaluations with their per-example outcomes (one transaction per command), artifacts, and the
 * done check of a job key. See db.h. */
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


int artifact_body(Db *db, void *vctx) {
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
        "prec_clean", "prec_adv", "tmap_clean", "tmap_adv", "mean_hamming", "outcomes", "stage", "created"};
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
    sqlite3_bind_int(st, i++, p->stage); /* 0, or k: AutoAttack's ensemble after its k-th component */
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
