/* runner.h -- running a suite's plan: the local process pool (local.c), the Slurm engine (slurm.c), the
 * job entry point every worker runs (job.c), `suite status` (status.c), and what they share (runner.c).
 *
 * Every job runs through ONE entry point, `concord job --plan PLAN --index I` (suite_job_run), which
 * checks the database, then execs the job's own train / finetune / attack command line with its
 * --job-key and --db. The local engine is a process pool of such children; a Slurm array task runs the
 * same entry point with --map and --shard-dir (suite_job_run_sharded). Restart safety comes from the
 * pieces underneath, not from a runner's memory: job keys are UNIQUE in the results database (a rerun
 * resets an unfinished row in place), checkpoints are written temp-then-rename after every epoch and
 * training jobs always pass --resume, and evals are upserted by key. So after a kill -9 of the runner and
 * its children at any moment, running the suite again skips what is recorded as done and redoes the
 * rest, with no duplicated and no lost rows.
 *
 * Files under the output directory: plan.tsv (the plan), ckpt/KEY.ckpt, logs/KEY.log (appended per
 * attempt), logs/KEY.running and logs/KEY.failed (markers for `suite status`), .lock (held by a runner).
 *
 * The Slurm engine (docs/slurm.md) submits the jobs missing from the database as job arrays, one or more
 * per stage (chunks under MaxArraySize), each stage after the previous ones (--dependency=afterany),
 * then one merge job. An array task runs
 * `concord job --plan PLAN --map MAP --index $SLURM_ARRAY_TASK_ID --shard-dir DIR`: line I of MAP is the
 * plan index; the job records into its own SQLite file on local disk ($TMPDIR), which is sealed and moved
 * into DIR (shards/KEY.ARRAYJOB_TASK.db) when it ends, so hosts never share a SQLite file. Dependencies
 * are checked against slurm/done.txt (the keys already in the database at submission) and the shards.
 * The merge job runs `concord db merge --into DB DIR`. Extra files: slurm/ (scripts, maps, done.txt,
 * jobs.txt with the submitted job ids), shards/, logs/slurm-*.out.
 *
 * May use: the suite planner (suite.h), the results database (results/db.h), datasets (to fail fast),
 * core. Not for: option parsing (harness/cli/cmd_suite.c, cmd_job.c).
 */
#ifndef CONCORD_RUNNER_H
#define CONCORD_RUNNER_H
#include <stddef.h>

#include "harness/suite/suite.h"
#include "results/db.h"

/* A suite file with its resolved paths and its plan. */
typedef struct SuiteCtx {
    Suite s;
    SuitePlan p;
    char plan_path[600];
} SuiteCtx;

/* Parses FILE, resolves the output directory (absolute; created with its ckpt/ and logs/ when `create`;
 * NULL = out/<suite name>)
 * and the database (NULL = <out>/concord.db), data_dir (NULL = the suite's), and plans. */
int suite_ctx_load(SuiteCtx *c, const char *file, const char *out, const char *db, const char *data_dir, int create);

/* ---- engines ---- */
/* The local process pool: `jobs` children at a time, each with `threads` OpenBLAS threads; 'running'
 * rows whose heartbeat is older than `stale` seconds are marked interrupted first. */
int suite_run_local(SuiteCtx *c, int jobs, int threads, long stale);

typedef struct SlurmOpts {
    long cpus;                       /* --cpus-per-task, also each task's OpenBLAS threads */
    long array_size;                 /* tasks per array; 0 = MaxArraySize from scontrol */
    int resume;                      /* merge the shards, submit only the missing jobs */
    const char *partition, *time, *mem; /* sbatch options, NULL = not given */
} SlurmOpts;
int suite_run_slurm(SuiteCtx *c, const SlurmOpts *o);
/* How many of this suite's submitted Slurm jobs are still queued or running (squeue --me); 0 when none
 * were submitted, -1 when squeue fails. */
int suite_slurm_active(const SuitePlan *p);

/* Counts done / running / failed / pending from the database, the shards and the markers. */
int suite_status(SuiteCtx *c, int verbose);

/* ---- the job entry point (concord job) ---- */
/* Runs job idx of p (execs its command line; returns only on error or when it is done/dry). */
int suite_job_run(const SuitePlan *p, long idx, long threads, int dry);
/* The same as a Slurm array task: dependencies from done.txt and the shards, records into its own
 * database on local disk, moved into shard_dir when the job ends. */
int suite_job_run_sharded(const SuitePlan *p, long idx, const char *shard_dir, long threads, int dry);
/* Line `line` (0-based) of an array map: the plan index that array task runs. */
int suite_map_index(const char *map, long line, long *idx);

/* ---- shared by the engines (runner.c) ---- */
/* logs/KEY.EXT under the output directory; runner_marker_write creates it holding `text` (NULL: empty). */
void runner_marker_path(const SuitePlan *p, const SuiteJob *j, const char *ext, char *out, size_t n);
void runner_marker_write(const SuitePlan *p, const SuiteJob *j, const char *ext, const char *text);
void runner_fmt_dur(double s, char *out, size_t n);   /* "42s", "3m05s", "1h02m" */
void runner_shard_dir(const SuitePlan *p, char *out, size_t n);
/* Creates what job j writes into: <out>/logs and its checkpoint's directory (suite plan made them; a plan
 * copied elsewhere or a cleaned output directory may lack them). 0, or -1 with err_set. */
int runner_job_dirs(const SuitePlan *p, const SuiteJob *j);
/* Done = recorded as done in the database (db may be NULL: nothing is done); a train/finetune job also
 * needs its checkpoint on disk. 1 done, 0 not, -1 error (a finished run whose checkpoint vanished). */
int runner_job_done(Db *db, const SuiteJob *j);
/* 1 when some shard of DIR named KEY.*.db records the whole job as done, 0 when none, -1 on error. */
int runner_shards_job_done(const char *dir, const SuiteJob *j);
/* Runs argv (searched in PATH) with stdout captured into out (NUL-terminated, stderr passed through);
 * returns the exit status, or -1 with err_set when it cannot run. */
int runner_run_capture(char *const argv[], char *out, size_t cap);
/* Opens logs/KEY.log for appending and writes the attempt's header line ("==== time  job I KEY: desc",
 * with " (Slurm task TAG)" when tag is given); returns the descriptor, or -1 with err_set. */
int runner_job_log_open(const SuitePlan *p, long idx, const char *tag, char *log, size_t n);
/* The job's command line: "concord" ARGV..., --db replaced by db_override when given, then
 * --threads N (N > 0; OPENBLAS_NUM_THREADS is set to match). args: room for SUITE_MAX_ARGS + 4; thr holds
 * the thread count text. Returns the argument count (args[n] = NULL). */
int runner_job_argv(const SuiteJob *j, long threads, const char *db_override, char **args, char thr[24]);

#endif
