/* status.c -- `concord suite status`: done / running / failed / pending per job, from the database, the
 * Slurm shards and the markers a runner leaves. See runner.h. */
#define _GNU_SOURCE
#include "harness/suite/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "harness/core.h"

/* 1 when some runner holds <out>/.lock, 0 when none, -1 when unknown. */
static int runner_alive(const char *out_dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/.lock", out_dir);
    int fd = open(path, O_RDWR);
    if (fd < 0) return 0;
    int alive = flock(fd, LOCK_EX | LOCK_NB) != 0 ? (errno == EWOULDBLOCK ? 1 : -1) : 0;
    close(fd);
    return alive;
}

int suite_status(SuiteCtx *c, int verbose) {
    Db *db = NULL;
    if (file_exists(c->p.db_path) && db_open_readonly(c->p.db_path, &db) < 0) return -1;
    int alive = runner_alive(c->p.out_dir), queued = suite_slurm_active(&c->p);
    if (queued < 0) {
        fprintf(stderr, "concord: %s (Slurm jobs counted as not running)\n", err_msg());
        err_clear();
        queued = 0;
    }
    if (queued > 0) alive = 1; /* a Slurm submission of this suite is still queued or running */
    int n_done = 0, n_run = 0, n_fail = 0, n_pend = 0, n_intr = 0, n_shard = 0;
    char mk[700];
    for (int i = 0; i < c->p.n; i++) {
        const SuiteJob *j = &c->p.jobs[i];
        const char *st;
        int d = runner_job_done(db, j);
        if (d == 0) {
            char dir[600];
            runner_shard_dir(&c->p, dir, sizeof dir);
            d = runner_shards_job_done(dir, j);
            n_shard += d == 1;
        }
        if (d < 0) { db_close(db); return -1; }
        runner_marker_path(&c->p, j, "running", mk, sizeof mk);
        int running = file_exists(mk);
        runner_marker_path(&c->p, j, "failed", mk, sizeof mk);
        int failed = file_exists(mk);
        if (d) { st = "done"; n_done++; }
        else if (running && alive) { st = "running"; n_run++; }
        else if (failed) { st = "failed"; n_fail++; }
        else if (running) { st = "interrupted"; n_pend++; n_intr++; }
        else { st = "pending"; n_pend++; }
        if (verbose || str_eq(st, "failed"))
            printf("%5d  %-15s %-11s %s%s%s/logs/%s.log\n", i, j->key, st, j->desc, str_eq(st, "failed") ? "  log: " : "  ",
                   c->p.out_dir, j->key);
    }
    db_close(db);
    printf("%s: %d jobs: %d done, %d running, %d failed, %d pending", c->s.path, c->p.n, n_done, n_run, n_fail, n_pend);
    if (n_intr) printf(" (%d of them interrupted)", n_intr);
    printf("%s\n", queued > 0 ? "; Slurm jobs of this suite are queued or running" : alive ? "; a runner is active" : "");
    if (n_shard)
        printf("%d done job%s only in shards so far; the merge job (or concord db merge --into %s %s/shards) puts them in the database\n",
               n_shard, n_shard == 1 ? " is" : "s are", c->p.db_path, c->p.out_dir);
    return 0;
}
