/* db.h -- the results database: the ONE module that owns Concord's SQLite schema (docs/results.md).
 *
 * Every train / finetune run, every epoch's metrics, every attack evaluation and every artifact
 * (checkpoint, PNG grid, figure, report) is a row here. The schema is versioned with PRAGMA user_version
 * and migrated forward when a database is opened (a new file is built as v1 and then migrated, so the
 * migration path runs every time, not only on old files).
 *
 * Concurrency: connections use WAL, a 30 s busy timeout, and BEGIN IMMEDIATE for every write
 * transaction (retried on SQLITE_BUSY), so several processes may write one database at once.
 * Idempotence: runs and evals carry an optional job_key (UNIQUE). Recording the same key twice never
 * produces two rows: an eval is upserted in place, and a run that did not finish is reset in place
 * (same id). That is also what makes a future `db merge` of shards idempotent.
 *
 * Accuracies (and mAP, precision) are stored as fractions in [0,1]; NaN is stored as NULL. Tasks: a run or
 * eval is 'classify' or 'hash' (deep-hashing retrieval); a hash run's test_acc holds its mAP, and a hash
 * eval keeps its scores in the map_* / prec_* columns (DbEval.hash). Times are UTC text
 * 'YYYY-MM-DD HH:MM:SS' (SQLite's datetime('now')).
 * Not for: rendering (query.h prints reports, plot.h draws figures) or deciding what to run.
 */
#ifndef CONCORD_DB_H
#define CONCORD_DB_H
#include <stdint.h>
#include <stdio.h>

#include "attacks/attack.h"
#include "harness/train.h"

#define DB_SCHEMA_VERSION 5

typedef struct Db Db;
struct sqlite3;

/* One training or fine-tuning run. Strings may be NULL (stored as NULL, or "" for the option texts);
 * the caller keeps ownership. */
typedef struct DbRun {
    const char *job_key;      /* stable key from the suite planner; NULL = an ad-hoc run */
    const char *kind;         /* "train" | "finetune" */
    int64_t parent_run;       /* the pretraining run a finetune starts from; 0 = none */
    const char *rule;         /* bp | fa | dfa | usf | brsf | frsf | ... */
    const char *rule_opts;    /* canonical text of the rule's options */
    const char *model;        /* model spec name, e.g. "lenet5" */
    const char *model_opts;
    const char *dataset;
    int64_t data_seed, init_seed, rule_seed;
    const char *config_json;  /* canonical configuration as JSON */
    const char *config_hash;  /* NULL = fnv1a64 of config_json as 16 hex digits */
    const char *host;         /* NULL = gethostname() */
    const char *git_rev;
    const char *blas_core;    /* OpenBLAS core name (openblas_get_corename) */
    const char *cpu;          /* cpu_describe(): model name and vector extensions */
    int blas_threads;
    int resume;               /* 1: when an unfinished row with this job_key exists, keep its epoch and
                                 alignment rows (training resumes from a checkpoint); 0: clear them */
    const char *task;         /* "classify" | "hash"; NULL = "hash" when model_opts contains head=hash,
                                 else "classify". A hash run's test_acc is its mAP. */
} DbRun;

/* Who was attacked, on what; the attack itself is an AttackParams, the outcome an EvalCounts. */
typedef struct DbEval {
    const char *job_key;      /* NULL = ad hoc; a key given twice replaces that eval's row (same id) */
    int64_t run_id;           /* run that produced the target model; 0 (or an id this database does not
                                 hold) = looked up by target_hash, then target_ckpt, among finished runs */
    const char *target_ckpt;  /* the attacked checkpoint */
    const char *target_hash;  /* its content hash (file_sha_hex) */
    int64_t transfer_run;     /* run that produced the surrogate (GRAD_TRANSFER); 0 = looked up the same
                                 way from transfer_hash / AttackParams.transfer_ckpt */
    const char *transfer_hash;
    const char *dataset;      /* data the attack ran on; NULL = the run's dataset */
    const char *split;        /* "test" | "val" | ...; NULL = "test" */
    const char *host, *git_rev; /* host NULL = gethostname() */
    const HashCounts *hash;   /* hashing evals (AttackParams.objective == OBJ_HASH): the mAP scores; NULL
                                 for classification (a mismatch with the objective is refused) */
    const void *outcomes;     /* the per-example BLOB (results/outcomes.h), or NULL */
    long outcomes_bytes;
} DbEval;

/* The path used when --db is not given: $CONCORD_DB if set and non-empty, else "out/concord.db". */
const char *db_default_path(void);

/* Opens (creating the file and its parent directory if needed) and migrates to DB_SCHEMA_VERSION.
 * A database newer than this build is refused. 0, or -1 with err_set naming the file. */
int db_open(const char *path, Db **out);
/* Same, but a missing file is an error ("no such database") instead of being created.
 * Both refuse, before writing anything, a file that is not a results database (a checkpoint, another
 * program's tables), a newer schema, and a database that fails PRAGMA quick_check. */
int db_open_existing(const char *path, Db **out);
/* For commands that only read (query, plot, db info/check, suite status): never writes the file (no WAL
 * switch, no migration: an older schema is upgraded in a private in-memory copy) and works on a
 * read-only file or mount. Refuses what db_open refuses, and an empty file. */
int db_open_readonly(const char *path, Db **out);
/* PRAGMA integrity_check on the file, read-only: prints every problem to f; 0 when it is ok, 1 when
 * damaged, -1 with err_set when it cannot be checked. */
int db_check(const char *path, FILE *f);
void db_close(Db *db); /* NULL is fine */
const char *db_path(const Db *db);
struct sqlite3 *db_sqlite(Db *db); /* the raw connection, for read-only queries (query.c, plot.c) */
int db_schema_version(Db *db);     /* PRAGMA user_version, -1 on error */

/* Inserts a run with status 'running' and started = heartbeat = now. With a job_key already present:
 * an unfinished row (running / failed / interrupted) is reset in place and keeps its id; a finished
 * one is an error (callers check db_job_done first). *run_id gets the row id. */
int db_run_begin(Db *db, const DbRun *r, int64_t *run_id);
/* heartbeat = now (call every epoch or minute; a stale heartbeat marks a dead worker). */
int db_run_heartbeat(Db *db, int64_t run_id);
/* One transaction: the epoch row, one alignment row per s->align[i], runs.val_acc and the heartbeat.
 * Re-recording an epoch (after a resume) replaces its rows. */
int db_run_epoch(Db *db, int64_t run_id, const EpochStats *s);
/* Closes a run: status "finished" | "failed" | "interrupted", error text (NULL when none), the final
 * checkpoint (path and hash, NULL when none; also recorded as an artifact) and test accuracy (NaN =
 * unknown). finished = now. */
int db_run_end(Db *db, int64_t run_id, const char *status, const char *error, const char *ckpt_path,
               const char *ckpt_hash, double test_acc);
/* Marks 'running' runs whose heartbeat is older than stale_seconds as 'interrupted' (a worker that was
 * killed never ends its run). *n (may be NULL) gets how many. */
int db_runs_reap(Db *db, double stale_seconds, int *n);

/* Marks the run with this job_key 'interrupted' if it is still 'running' (a runner saw its worker die);
 * finished and failed rows are left alone. *n (may be NULL) gets 1 when a row changed, else 0. */
int db_runs_mark_interrupted(Db *db, const char *job_key, int *n);

/* Merging shards (a Slurm array task records into its own SQLite file, docs/slurm.md).
 * db_merge copies one shard's keyed rows into db, in one write transaction, by job key:
 *   - a run is taken when db has no run with its key, or db's is unfinished and the shard's is finished
 *     or has a newer heartbeat; it keeps db's id when it replaces one, and brings its epoch and
 *     alignment rows (db's rows for that run are replaced);
 *   - an eval is taken when db has none with its key or the shard's is newer (created);
 *   - artifacts are upserted by (kind, path);
 *   - ids are remapped: a run's parent, an eval's target and surrogate runs are looked up in db (by job
 *     key, checkpoint path and content hash), also for rows merged earlier whose parent arrived later.
 * Rows without a job key cannot be matched and are skipped (counted). Merging the same shard twice
 * changes nothing. The shard is only read (an older schema is upgraded in a temporary copy). */
typedef struct DbMergeStats {
    int runs_added, runs_replaced, runs_kept; /* kept: db already had an equal or better row */
    int evals_added, evals_replaced, evals_kept;
    int unkeyed;                              /* shard rows without a job key, skipped */
} DbMergeStats;
int db_merge(Db *db, const char *shard_path, DbMergeStats *st);
/* 1 when the database FILE (a sealed shard, opened read-only and immutable: no lock, no -wal/-shm file,
 * safe from many hosts) records every key as done (a finished run or an eval), 0 when not, -1 on error. */
int db_file_jobs_done(const char *path, char *const *keys, int nkeys);
/* Makes a database file self-contained before it is copied (WAL checkpointed into the main file,
 * journal mode DELETE), e.g. a shard after a killed writer. 0 or -1 with err_set. */
int db_seal(const char *path);

/* Records one finished evaluation: every AttackParams field, the counts, and the masking flags the
 * attack module computed (text, NULL or "" = none). With e->job_key already present the row is
 * replaced in place. *eval_id (may be NULL) gets the row id. */
int db_eval_record(Db *db, const DbEval *e, const AttackParams *p, const EvalCounts *c, const char *flags,
                   int64_t *eval_id);
/* Everything one attack command records, as ONE transaction: every eval row and its grid artifact, or
 * nothing (a full disk, a lock that never clears, a kill: no half of a command's rows is ever left). */
typedef struct DbEvalRec {
    DbEval e;
    const AttackParams *p;
    const EvalCounts *c;
    const char *flags;        /* masking flags, NULL or "" = none */
    const char *grid;         /* an adversarial-example grid PNG to record as its artifact, or NULL */
    int64_t *eval_id;         /* receives the row id (may be NULL) */
} DbEvalRec;
int db_evals_record(Db *db, const DbEvalRec *recs, int n);

/* Records a file: kind "checkpoint" | "grid" | "figure" | "report"; run_id / eval_id 0 = none; hash
 * NULL = computed from the file now. One row per (kind, path): recording it again updates it. */
int db_artifact(Db *db, int64_t run_id, int64_t eval_id, const char *kind, const char *path, const char *hash);

/* 1 when a finished run or a recorded eval with that job_key exists, 0 when not, -1 on error. */
int db_job_done(Db *db, const char *job_key);

/* Names stored for the AttackParams enums ("fgsm", "linf", "true"...); "?" when out of range. */
const char *db_attack_name(int kind);
const char *db_norm_name(int norm);
const char *db_grad_source_name(int src);

/* Row count of a table or view (for `db info` and tests); -1 on error. */
long db_count(Db *db, const char *table);

#endif
