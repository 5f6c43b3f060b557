/* suite.h -- comparison suites: an INI file declaring a grid, expanded into a plan of jobs.
 *
 * A suite (format: docs/suites.md) declares datasets x models x pretraining rules x fine-tuning rules x
 * seeds x attacks x eps x gradient sources plus shared hyper-parameters. suite_load parses and validates
 * it (every problem is one line "FILE:LINE: what; fix"); suite_plan expands it into jobs:
 *   pretrain (concord train)  ->  finetune (concord finetune --from the pretrain checkpoint)
 *                             ->  attack (one `concord attack` per fine-tuned model and [attack]
 *                                 section, sweeping its attacks x eps x gradient sources so the masking
 *                                 flags compare them; transfer sources add their surrogate as a dependency).
 *                             ->  hash finetune ([hash]: concord finetune --task hash --bits K from the
 *                                 pretrain checkpoint) -> hash attack ([hash-attack NAME] sections).
 * Options of [pretrain], [finetune] and [hash] may be overridden per rule (`lr.dfa = 0.0005`); the
 * override is part of that rule's canonical configuration only.
 * Each job has a STABLE key: a hash of its canonical configuration (sorted key=value lines, numbers
 * normalised, the parent's key included), so it does not depend on the order of keys, sections or list
 * items in the file, nor on where outputs go. Identical jobs (same key) collapse into one.
 * Jobs are ordered by stage (pretrain, finetune, attack), so every dependency has a lower index.
 *
 * The plan file (plan.tsv, written temp-then-rename) is what `concord job --plan PLAN --index I` reads:
 * the local runner and the Slurm engine's array tasks (runner.h) use that same entry point.
 * Not for: running processes (runner.h) or recording results (results/db.h).
 */
#ifndef CONCORD_SUITE_H
#define CONCORD_SUITE_H

#define SUITE_MAX_LIST 32   /* items in one list value */
#define SUITE_MAX_OPTS 48   /* pass-through options per section, per-rule overrides included */
#define SUITE_MAX_ATTACKS 8 /* [attack NAME] + [hash-attack NAME] sections */
#define SUITE_MAX_ARGS 64   /* argv of one job */
#define SUITE_KEY_LEN 20    /* "f-" + 12 hex + NUL, with room */
#define SUITE_MAX_DEPS 8    /* an attack job: its target and up to 7 transfer surrogates */

typedef struct SuiteList { int n, line; char v[SUITE_MAX_LIST][64]; } SuiteList;
/* One option; rule "" = every rule of the section, else a per-rule override written `key.RULE = value`. */
typedef struct SuiteOpt {
    char key[32], rule[16];
    char val[128];              /* canonical; a flag: "1" when set, "" when not */
    int line;
    int flag;                   /* a boolean option: passed on as a bare --key when set */
} SuiteOpt;
typedef struct SuiteOpts { int n; SuiteOpt o[SUITE_MAX_OPTS]; } SuiteOpts;

typedef struct SuiteAttack {
    char name[48];
    int line;
    int hash;                    /* 1: a [hash-attack NAME] section (attacks the [hash] models) */
    SuiteList kinds, eps, grads; /* fgsm|pgd|pgd-l2|square (hash: hash-untargeted|hash-targeted); eps texts;
                                    true|feedback|transfer:RULE|transfer:pretrain (hash: no transfer:pretrain) */
    SuiteOpts opts;              /* steps, alpha, limit ... -> --steps, --alpha, --limit */
} SuiteAttack;

typedef struct Suite {
    char path[512];
    char name[64];
    char data_dir[512];          /* "" = each dataset's standard place */
    SuiteList datasets, models, seeds;
    int has_pretrain, line_pretrain;
    char pre_dataset[64];        /* "" = the fine-tuning dataset */
    char pre_seed[24];           /* "each" (one pretraining per seed) or a fixed seed */
    SuiteList pre_rules;
    SuiteOpts pre;
    SuiteList ft_rules;
    SuiteOpts ft;
    int has_hash, line_hash;     /* [hash]: hashing fine-tunes from the pretraining checkpoint */
    SuiteList hash_rules, hash_bits;
    SuiteOpts hash;
    int natk;
    SuiteAttack atk[SUITE_MAX_ATTACKS];
} Suite;

enum { JOB_TRAIN, JOB_FINETUNE, JOB_ATTACK, JOB_KIND_COUNT };
/* The suite section a planned job comes from (SuiteJob.section): [pretrain], [finetune] (also the
 * from-scratch training jobs), [hash], or the i-th [attack NAME] / [hash-attack NAME] (SEC_ATTACK + i). */
enum { SEC_NONE = -1, SEC_PRETRAIN, SEC_FINETUNE, SEC_HASH, SEC_ATTACK };

typedef struct SuiteJob {
    char key[SUITE_KEY_LEN];
    int kind;                   /* JOB_* */
    int ndeps, deps[SUITE_MAX_DEPS]; /* indices of jobs that must be done first (all lower) */
    char ckpt[512];             /* train/finetune: checkpoint written; attack: "" */
    char desc[160];             /* one human line: "finetune lenet5 usf seed 0 from bp" */
    char dataset[64], data_dir[512]; /* what the job reads (for the fail-fast check) */
    int argc;
    char *argv[SUITE_MAX_ARGS]; /* "train" "--model" "lenet5" ... (owned) */
    int section;                /* SEC_*: where a planned job comes from (SEC_NONE when read from a plan file) */
    int line;                   /* read from a plan file: its line there (0 when planned) */
} SuiteJob;

typedef struct SuitePlan {
    char suite_path[512], out_dir[400], db_path[512];
    int n, cap;
    SuiteJob *jobs;
} SuitePlan;

/* Stage of a job kind for schedulers that run stages one after another (Slurm): 0 train, 1 finetune,
 * 2 attack. Every dependency of a job is in an earlier stage. */
#define SUITE_STAGES 3
int suite_job_stage(const SuiteJob *j);

/* 1 when a suite's [attack] section may name this classification attack (concord attack's table). */
int suite_attack_known(const char *name);
/* Parses and validates FILE. 0, or -1 with err_set("FILE:LINE: problem; fix"). */
int suite_load(const char *path, Suite *s);
/* Expands the grid. out_dir: where checkpoints go (<out_dir>/ckpt/KEY.ckpt); db_path: the results
 * database every job records into. Paths are stored as given (callers pass absolute ones). */
int suite_plan(const Suite *s, const char *out_dir, const char *db_path, SuitePlan *p);
void suite_plan_free(SuitePlan *p);
/* Checks every job's command line with `check` (the commands' own option checks, harness/cli: the suite
 * floor cannot include them), so a bad option value fails at planning, not in the middle of a run. 0, or -1
 * with err_set("FILE:LINE: [section] <the command's message>"), LINE being the option's line when the
 * message names it (--eps -> eps = ...), else the section's. */
typedef int (*SuiteJobCheck)(int argc, char **argv);
int suite_plan_check(const Suite *s, const SuitePlan *p, SuiteJobCheck check);
/* Appends j (the plan takes its argv) unless a job with its key is there already (then j is freed).
 * Returns the job's index. */
int suite_plan_add(SuitePlan *p, SuiteJob *j);
int suite_plan_find(const SuitePlan *p, const char *key); /* index or -1 */
const char *suite_job_kind_name(int kind);               /* "train" | "finetune" | "attack" */
/* The database keys a job records under: its own key for train/finetune (a run) and for an attack with
 * one evaluation; KEY/<attack>/<eps>/<source> per evaluation otherwise (concord attack's convention,
 * source "none" for Square; a transfer source is "transfer:<label>", the label being the surrogate's
 * job key, which the plan passes as --transfer-label). *keys and its strings are malloc'd; returns the count. A job is done when
 * every one of its keys is recorded. */
int suite_job_row_keys(const SuiteJob *j, char ***keys);

/* Plan file (format 2): TSV with a header (format, suite, out, db, job count) and one line per job:
 *   index  key  kind  deps(comma list of indices, "-")  ckpt("-")  dataset  desc  argc  argv...(one per column)
 * Written to a temporary file and renamed into place. suite_plan_read refuses, with "PLAN:LINE: ..." naming the
 * problem, another format version, a missing header, a line cut short (no newline, fewer than argc
 * arguments), a bad index / deps / kind, a job whose command lacks what its kind needs (--db, --job-key =
 * its key; train/finetune: --out = its ckpt; attack: --ckpt, --attack, --eps), and fewer or more jobs than
 * the header says. */
int suite_plan_write(const SuitePlan *p, const char *path);
int suite_plan_read(const char *path, SuitePlan *p);

#endif
