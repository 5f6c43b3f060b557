/* cmd_job.c -- `concord job --plan PLAN --index I [--map MAP --shard-dir DIR]`: one job of a suite plan,
 * the entry point of every suite worker (harness/suite/job.c does the work). */
#include <stdio.h>

#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"
#include "harness/suite/runner.h"

int cmd_job(int argc, char **argv) {
    static const OptSpec opts[] = {
        {"plan", "PLAN", "plan file written by concord suite plan|run", NULL},
        {"index", "I", "which job of the plan to run (0-based)", NULL},
        {"threads", "N", "OpenBLAS threads (0 = OpenBLAS default)", "0"},
        {"map", "MAP", "array map: --index is a line of MAP (0-based) holding the plan index (Slurm arrays)", NULL},
        {"shard-dir", "DIR", "record into a database on local disk ($TMPDIR) and move it into DIR at the end (Slurm)", NULL},
        {"dry-run", NULL, "print the command line instead of running it", NULL},
        {0},
    };
    Args a;
    int pr = args_parse(&a, "job", "--plan PLAN --index I [--map MAP] [--shard-dir DIR] [--threads N]", opts, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    if (!arg_str(&a, "plan") || !arg_str(&a, "index")) { err_set("concord job: --plan PLAN and --index I are required"); return err_die(); }
    long idx, threads;
    if (arg_int(&a, "index", 0, 100000000L, &idx) < 0 || arg_int(&a, "threads", 0, 256, &threads) < 0) return err_die();
    if (arg_str(&a, "map") && suite_map_index(arg_str(&a, "map"), idx, &idx) < 0) return err_die();
    SuitePlan p;
    if (suite_plan_read(arg_str(&a, "plan"), &p) < 0) return err_die();
    if (idx >= p.n) {
        err_set("%s: --index %ld is out of range; the plan has %d jobs (0..%d)", arg_str(&a, "plan"), idx, p.n, p.n - 1);
        suite_plan_free(&p);
        return err_die();
    }
    if (cmd_job_check(p.jobs[idx].argc, p.jobs[idx].argv) < 0) { /* an edited plan: refuse before any work */
        char why[600];
        snprintf(why, sizeof why, "%s", err_msg());
        err_clear();
        err_set("%s:%d: job %ld: %s; regenerate the plan with concord suite plan", arg_str(&a, "plan"), p.jobs[idx].line, idx, why);
        suite_plan_free(&p);
        return err_die();
    }
    if (arg_str(&a, "shard-dir")) {
        int r = suite_job_run_sharded(&p, idx, arg_str(&a, "shard-dir"), threads, arg_flag(&a, "dry-run"));
        suite_plan_free(&p);
        return r < 0 ? err_die() : 0;
    }
    int rc = suite_job_run(&p, idx, threads, arg_flag(&a, "dry-run"));
    suite_plan_free(&p);
    return rc < 0 ? err_die() : 0;
}

int cmd_job_check(int argc, char **argv) {
    if (argc < 1) return err_set("a job with an empty command line");
    if (str_eq(argv[0], "train")) return cmd_train_check(0, argc - 1, argv + 1);
    if (str_eq(argv[0], "finetune")) return cmd_train_check(1, argc - 1, argv + 1);
    if (str_eq(argv[0], "attack")) return cmd_attack_check(argc - 1, argv + 1);
    return err_set("'%s' is not a job command (train, finetune or attack)", argv[0]);
}
