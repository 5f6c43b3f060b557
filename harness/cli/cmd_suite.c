/* cmd_suite.c -- `concord suite plan|run|status FILE`: options in, the planner and the engines of
 * harness/suite/ called, the plan printed. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"
#include "harness/suite/runner.h"

static const OptSpec SUITE_OPTS[] = {
    {"engine", "local|slurm", "run: a local process pool, or Slurm job arrays (docs/slurm.md)", "local"},
    {"resume", NULL, "run: continue a suite (slurm: merge the shards, submit only the jobs missing from the database; "
                     "local: always the case)", NULL},
    {"partition", "P", "slurm: sbatch --partition", NULL},
    {"time", "T", "slurm: sbatch --time per array task (e.g. 2:00:00)", NULL},
    {"mem", "M", "slurm: sbatch --mem per array task (e.g. 8G)", NULL},
    {"cpus-per-task", "C", "slurm: sbatch --cpus-per-task, also the OpenBLAS threads of each task", "1"},
    {"array-size", "N", "slurm: tasks per array (default: MaxArraySize from scontrol show config)", NULL},
    {"out", "DIR", "output directory: plan, checkpoints, logs (default out/<suite name>)", NULL},
    {"db", "PATH", "results database (default <out>/concord.db)", NULL},
    {"data-dir", "DIR", "where the dataset files are (overrides [suite] data-dir)", NULL},
    {"jobs", "N", "run: parallel jobs (default: cores / threads)", NULL},
    {"threads", "N", "run: OpenBLAS threads per job (default: cores / jobs, at least 1)", NULL},
    {"stale", "SECONDS", "run: mark 'running' rows whose heartbeat is older than this as interrupted", "900"},
    {"verbose", NULL, "status: list every job with its state", NULL},
    {0},
};
static const char *SUITE_USAGE = "plan|run|status FILE [--out DIR] [--db DB] [--jobs N] [--threads N] [--engine local|slurm [--resume] "
                                  "[--partition P] [--time T] [--mem M] [--cpus-per-task C]]";

static void print_plan(const SuitePlan *p) {
    int count[JOB_KIND_COUNT] = {0};
    printf("%5s  %-15s %-8s %-9s %s\n", "index", "key", "kind", "deps", "job");
    for (int i = 0; i < p->n; i++) {
        const SuiteJob *j = &p->jobs[i];
        char deps[128] = "-";
        for (int d = 0, k = 0; d < j->ndeps; d++) k += snprintf(deps + k, sizeof deps - (size_t)k, "%s%d", d ? "," : "", j->deps[d]);
        printf("%5d  %-15s %-8s %-9s %s\n", i, j->key, suite_job_kind_name(j->kind), deps, j->desc);
        count[j->kind]++;
    }
    long runs = 0, evals = 0;
    for (int i = 0; i < p->n; i++) {
        char **k;
        int nk = suite_job_row_keys(&p->jobs[i], &k);
        if (p->jobs[i].kind == JOB_ATTACK) evals += nk;
        else runs += nk;
        for (int r = 0; r < nk; r++) free(k[r]);
        free(k);
    }
    printf("%d jobs: %d train, %d finetune, %d attack; they record %ld runs and %ld evals\n", p->n, count[JOB_TRAIN],
           count[JOB_FINETUNE], count[JOB_ATTACK], runs, evals);
}

static int suite_cmd_plan(SuiteCtx *c) {
    print_plan(&c->p);
    if (suite_plan_write(&c->p, c->plan_path) < 0) return -1;
    printf("plan: %s\n(run one job: concord job --plan %s --index I; all: concord suite run %s)\n", c->plan_path,
           c->plan_path, c->s.path);
    return 0;
}

/* processes x OpenBLAS threads = cores */
static int run_local(SuiteCtx *c, const Args *a) {
    long jobs = 0, threads = 0, stale, ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nc = ncpu > 0 ? (int)ncpu : 1;
    if (arg_set(a, "jobs") && arg_int(a, "jobs", 1, 1024, &jobs) < 0) return -1;
    if (arg_set(a, "threads") && arg_int(a, "threads", 1, 256, &threads) < 0) return -1;
    if (arg_int(a, "stale", 0, 100000000L, &stale) < 0) return -1;
    if (!jobs && !threads) { jobs = nc; threads = 1; }
    else if (!threads) threads = nc / jobs > 0 ? nc / jobs : 1;
    else if (!jobs) jobs = nc / threads > 0 ? nc / threads : 1;

    return suite_run_local(c, (int)jobs, (int)threads, stale);
}

static int run_slurm(SuiteCtx *c, const Args *a) {
    SlurmOpts o = {.resume = arg_flag(a, "resume"), .partition = arg_str(a, "partition"), .time = arg_str(a, "time"),
                   .mem = arg_str(a, "mem")};
    if (arg_int(a, "cpus-per-task", 1, 1024, &o.cpus) < 0) return -1;
    if (arg_set(a, "array-size") && arg_int(a, "array-size", 1, 100000000L, &o.array_size) < 0) return -1;
    static const char *const local_only[] = {"jobs", "threads"};
    for (size_t i = 0; i < ARRAY_LEN(local_only); i++)
        if (arg_set(a, local_only[i]))
            return err_set("--%s applies to --engine local; with Slurm use --cpus-per-task (threads per task)", local_only[i]);
    return suite_run_slurm(c, &o);
}

int cmd_suite(int argc, char **argv) {
    Args a;
    int pr = args_parse_pos(&a, "suite", SUITE_USAGE, SUITE_OPTS, 2, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    if (a.npos != 2 || (!str_eq(a.pos[0], "plan") && !str_eq(a.pos[0], "run") && !str_eq(a.pos[0], "status"))) {
        err_set("usage: concord suite %s (see concord suite --help and docs/suites.md)", SUITE_USAGE);
        return err_die();
    }
    const char *sub = a.pos[0];
    /* an option of another subcommand would be silently ignored */
    static const char *const run_only[] = {"engine", "resume", "partition", "time", "mem", "cpus-per-task", "array-size", "jobs",
                                           "threads", "stale"};
    for (size_t i = 0; i < ARRAY_LEN(run_only); i++)
        if (!str_eq(sub, "run") && arg_set(&a, run_only[i])) {
            err_set("concord suite %s: --%s applies to concord suite run", sub, run_only[i]);
            return err_die();
        }
    if (!str_eq(sub, "status") && arg_flag(&a, "verbose")) {
        err_set("concord suite %s: --verbose applies to concord suite status", sub);
        return err_die();
    }
    SuiteCtx *c = xcalloc(1, sizeof *c);
    int rc = suite_ctx_load(c, a.pos[1], arg_str(&a, "out"), arg_str(&a, "db"), arg_str(&a, "data-dir"), !str_eq(sub, "status"));
    if (rc == 0) rc = suite_plan_check(&c->s, &c->p, cmd_job_check); /* every option as its command checks it */
    if (rc == 0) {
        if (str_eq(sub, "plan")) rc = suite_cmd_plan(c);
        else if (str_eq(sub, "status")) rc = suite_status(c, arg_flag(&a, "verbose"));
        else if (str_eq(arg_str(&a, "engine"), "slurm")) rc = run_slurm(c, &a);
        else if (str_eq(arg_str(&a, "engine"), "local")) {
            static const char *const slurm_only[] = {"partition", "time", "mem", "cpus-per-task", "array-size"};
            for (size_t i = 0; i < ARRAY_LEN(slurm_only) && rc == 0; i++)
                if (arg_set(&a, slurm_only[i])) rc = err_set("--%s applies to --engine slurm", slurm_only[i]);
            if (rc == 0) rc = run_local(c, &a);
        }
        else rc = err_set("--engine %s: use local (a process pool on this machine) or slurm", arg_str(&a, "engine"));
    }
    suite_plan_free(&c->p);
    free(c);
    return rc < 0 ? err_die() : 0;
}
