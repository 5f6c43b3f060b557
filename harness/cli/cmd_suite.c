/* cmd_suite.c -- `concord suite plan|run|status FILE` and `concord job --plan PLAN --index I`.
 *
 * The runner is a local process pool. Every job is a child process running
 * `concord job --plan PLAN --index I --threads T` (the same entry point a Slurm array task would use),
 * which checks the database, then execs the job's own train / finetune / attack command line with its
 * --job-key and --db. Restart safety comes from the pieces underneath, not from the runner's memory:
 * job keys are UNIQUE in the results database (a rerun resets an unfinished row in place), checkpoints
 * are written temp-then-rename after every epoch and training jobs always pass --resume, and evals are
 * upserted by key. So after a kill -9 of the runner and its children at any moment, running the suite
 * again skips what is recorded as done and redoes the rest, with no duplicated and no lost rows.
 *
 * Files under the output directory: plan.tsv (the plan), ckpt/KEY.ckpt, logs/KEY.log (appended per
 * attempt), logs/KEY.running and logs/KEY.failed (markers for `suite status`), .lock (held by a runner).
 *
 * The Slurm engine (--engine slurm, docs/slurm.md) submits the jobs missing from the database as job
 * arrays, one or more per stage (chunks under MaxArraySize), each stage after the previous ones
 * (--dependency=afterany), then one merge job. An array task runs
 * `concord job --plan PLAN --map MAP --index $SLURM_ARRAY_TASK_ID --shard-dir DIR`: line I of MAP is the
 * plan index; the job records into its own SQLite file on local disk ($TMPDIR), which is sealed and moved
 * into DIR (shards/KEY.ARRAYJOB_TASK.db) when it ends, so hosts never share a SQLite file. Dependencies
 * are checked against slurm/done.txt (the keys already in the database at submission) and the shards.
 * The merge job runs `concord db merge --into DB DIR`. Extra files: slurm/ (scripts, maps, done.txt,
 * jobs.txt with the submitted job ids), shards/, logs/slurm-*.out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "datasets/dataset.h"
#include "results/db.h"
#include "harness/cli/cli.h"
#include "harness/cli/commands.h"
#include "harness/core.h"
#include "harness/suite/suite.h"

/* ---------------------------------------------------------------- small helpers */

static int mkdir_p(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return err_set("%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return err_set("%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static void marker_path(const SuitePlan *p, const SuiteJob *j, const char *ext, char *out, size_t n) {
    snprintf(out, n, "%s/logs/%s.%s", p->out_dir, j->key, ext);
}

static int cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void fmt_dur(double s, char *out, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, n, "%lds", t);
}

/* Done = recorded as done in the database; a train/finetune job also needs its checkpoint on disk.
 * 1 done, 0 not, -1 error (a finished run whose checkpoint vanished is an error: its dependents could
 * never start). */
static int job_done(Db *db, const SuiteJob *j) {
    if (!db) return 0;
    char **keys;
    int nk = suite_job_row_keys(j, &keys), d = 1;
    for (int i = 0; i < nk && d == 1; i++) d = db_job_done(db, keys[i]);
    for (int i = 0; i < nk; i++) free(keys[i]);
    free(keys);
    if (d <= 0) return d;
    if (j->ckpt[0] && !file_exists(j->ckpt))
        return err_set("%s: job %s (%s) is recorded as finished but its checkpoint is missing; restore the file or "
                       "use a fresh --db", j->ckpt, j->key, j->desc);
    return 1;
}

/* ---------------------------------------------------------------- shards (the Slurm engine) */

static void shard_dir_of(const SuitePlan *p, char *out, size_t n) { snprintf(out, n, "%s/shards", p->out_dir); }

/* 1 when some shard of DIR named KEY.*.db records the whole job as done, 0 when none, -1 on error. */
static int shards_job_done(const char *dir, const SuiteJob *j) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **keys;
    int nk = suite_job_row_keys(j, &keys), done = 0;
    size_t kl = strlen(j->key);
    for (struct dirent *e; done == 0 && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, j->key, kl) != 0 || e->d_name[kl] != '.' || len < 4 || strcmp(e->d_name + len - 3, ".db") != 0) continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        done = db_file_jobs_done(path, keys, nk);
    }
    closedir(d);
    for (int i = 0; i < nk; i++) free(keys[i]);
    free(keys);
    if (done == 1 && j->ckpt[0] && !file_exists(j->ckpt))
        return err_set("%s: job %s (%s) is recorded as finished in a shard but its checkpoint is missing; restore the file",
                       j->ckpt, j->key, j->desc);
    return done;
}

/* Runs argv (searched in PATH) with stdout captured into out (NUL-terminated, stderr passed through);
 * returns the exit status, or -1 with err_set when it cannot run. */
static int run_capture(char *const argv[], char *out, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return err_set("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fds[0]); close(fds[1]); return err_set("cannot start %s: %s", argv[0], strerror(errno)); }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        dprintf(2, "concord: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t k = 0;
    for (;;) {
        char buf[4096];
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++)
            if (k + 1 < cap) out[k++] = buf[i];
    }
    out[k] = 0;
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return err_set("waitpid: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return err_set("%s: not found; is Slurm installed here (sh scripts/deps.sh slurm)?", argv[0]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* The Slurm job ids a previous submission recorded (slurm/jobs.txt); returns the count. */
static int read_job_ids(const SuitePlan *p, long *ids, int cap) {
    char path[600];
    snprintf(path, sizeof path, "%s/slurm/jobs.txt", p->out_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    char line[256];
    while (n < cap && fgets(line, sizeof line, f)) {
        long id = strtol(line, NULL, 10);
        if (id > 0) ids[n++] = id;
    }
    fclose(f);
    return n;
}

/* How many of this suite's submitted Slurm jobs are still queued or running (squeue --me); 0 when none
 * were submitted, -1 when squeue fails. */
static int slurm_active(const SuitePlan *p) {
    long ids[4096];
    int n = read_job_ids(p, ids, (int)ARRAY_LEN(ids));
    if (!n) return 0;
    static char out[1 << 20];
    char *argv[] = {"squeue", "--me", "-h", "-o", "%F", NULL};
    int rc = run_capture(argv, out, sizeof out);
    if (rc != 0) {
        if (rc > 0) err_set("squeue failed (exit %d); is slurmctld reachable?", rc);
        return -1;
    }
    int active = 0;
    for (char *l = out; *l;) {
        long id = strtol(l, &l, 10);
        for (int i = 0; i < n; i++) active += id > 0 && ids[i] == id;
        while (*l && *l != '\n') l++;
        if (*l) l++;
    }
    return active;
}

/* ---------------------------------------------------------------- loading a suite with its paths */

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

typedef struct Ctx {
    Suite s;
    SuitePlan p;
    char plan_path[600];
} Ctx;

/* Parses FILE, resolves the output directory (absolute, created when `create`) and plans. */
static int ctx_load(Ctx *c, const Args *a, const char *file, int create) {
    if (suite_load(file, &c->s) < 0) return -1;
    if (arg_str(a, "data-dir")) snprintf(c->s.data_dir, sizeof c->s.data_dir, "%s", arg_str(a, "data-dir"));
    char out[512], abs_out[PATH_MAX], db[PATH_MAX + 32];
    if (arg_str(a, "out")) snprintf(out, sizeof out, "%s", arg_str(a, "out"));
    else snprintf(out, sizeof out, "out/%s", c->s.name);
    if (create && mkdir_p(out) < 0) return -1;
    if (!realpath(out, abs_out)) {
        /* status/plan without the directory: make it absolute by hand */
        char cwd[PATH_MAX];
        if (out[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(abs_out, sizeof abs_out, "%s", out);
        else snprintf(abs_out, sizeof abs_out, "%.2000s/%.1000s", cwd, out);
    }
    if (strlen(abs_out) >= sizeof c->p.out_dir - 64)
        return err_set("%s: the output path is too long; pass a shorter --out", abs_out);
    if (strpbrk(abs_out, ",\t\n"))
        return err_set("%s: the output path contains a comma, tab or newline (attack lists are comma-separated); pass another --out", abs_out);
    if (arg_str(a, "db")) {
        const char *d = arg_str(a, "db");
        char cwd[PATH_MAX];
        if (d[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(db, sizeof db, "%s", d);
        else snprintf(db, sizeof db, "%.2000s/%.1000s", cwd, d);
    } else {
        snprintf(db, sizeof db, "%s/concord.db", abs_out);
    }
    if (strlen(db) >= sizeof c->p.db_path) return err_set("%s: the database path is too long", db);
    if (suite_plan(&c->s, abs_out, db, &c->p) < 0) return -1;
    snprintf(c->plan_path, sizeof c->plan_path, "%s/plan.tsv", abs_out);
    return 0;
}

/* ---------------------------------------------------------------- plan */

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

static int suite_cmd_plan(Ctx *c) {
    print_plan(&c->p);
    if (suite_plan_write(&c->p, c->plan_path) < 0) return -1;
    printf("plan: %s\n(run one job: concord job --plan %s --index I; all: concord suite run %s)\n", c->plan_path,
           c->plan_path, c->s.path);
    return 0;
}

/* ---------------------------------------------------------------- status */

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

static int suite_cmd_status(Ctx *c, int verbose) {
    Db *db = NULL;
    if (file_exists(c->p.db_path) && db_open_existing(c->p.db_path, &db) < 0) return -1;
    int alive = runner_alive(c->p.out_dir), queued = slurm_active(&c->p);
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
        int d = job_done(db, j);
        if (d == 0) {
            char dir[600];
            shard_dir_of(&c->p, dir, sizeof dir);
            d = shards_job_done(dir, j);
            n_shard += d == 1;
        }
        if (d < 0) { db_close(db); return -1; }
        marker_path(&c->p, j, "running", mk, sizeof mk);
        int running = file_exists(mk);
        marker_path(&c->p, j, "failed", mk, sizeof mk);
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

/* ---------------------------------------------------------------- run: the process pool */

enum { ST_PENDING, ST_RUNNING, ST_DONE, ST_SKIPPED, ST_FAILED, ST_BLOCKED };

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

typedef struct Pool {
    Ctx *c;
    Db *db;
    int jobs, threads, tty;
    int *st;
    pid_t *pid;
    double *t0, start;
    int nrun, ndone, nskip, nfail, nblock;
    char bar_text[160];
} Pool;

static void pool_line_clear(Pool *P) {
    if (P->tty) fputs("\r\033[K", stderr);
}

static void pool_draw(Pool *P) {
    if (!P->tty) return;
    int n = P->c->p.n, fin = P->ndone + P->nskip + P->nfail + P->nblock, w = 30, k = n ? fin * w / n : w;
    char bar[64], el[32], eta[48] = "";
    for (int i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
    bar[w] = 0;
    double e = now_seconds() - P->start;
    fmt_dur(e, el, sizeof el);
    if (P->ndone > 0 && fin < n) {
        char t[32];
        fmt_dur(e / P->ndone * (n - fin), t, sizeof t);
        snprintf(eta, sizeof eta, "  eta %s", t);
    }
    fprintf(stderr, "\r\033[K[%s] %d/%d  run %d  fail %d  %s%s  %.40s", bar, fin, n, P->nrun, P->nfail, el, eta, P->bar_text);
    fflush(stderr);
}

/* One finished-job line (plain mode: every job; terminal: failures only, above the bar). */
static void pool_report(Pool *P, int i, const char *what, const char *extra) {
    const SuiteJob *j = &P->c->p.jobs[i];
    int fin = P->ndone + P->nskip + P->nfail + P->nblock;
    if (P->tty && str_eq(what, "done")) return;
    pool_line_clear(P);
    FILE *f = str_eq(what, "done") ? stdout : stderr;
    fprintf(f, "[%d/%d] %-7s %s %s%s%s\n", fin, P->c->p.n, what, j->key, j->desc, extra ? "  " : "", extra ? extra : "");
    fflush(f);
    pool_draw(P);
}

static int pool_start(Pool *P, int i) {
    const SuitePlan *p = &P->c->p;
    const SuiteJob *j = &p->jobs[i];
    char log[700], mk[700], idx[24], thr[24];
    snprintf(log, sizeof log, "%s/logs/%s.log", p->out_dir, j->key);
    marker_path(p, j, "failed", mk, sizeof mk);
    unlink(mk);
    marker_path(p, j, "running", mk, sizeof mk);
    int m = open(mk, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (m >= 0) close(m);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd < 0) return err_set("%s: cannot open the job log: %s", log, strerror(errno));
    time_t now = time(NULL);
    char stamp[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&now));
    dprintf(fd, "==== %s  job %d %s: %s\n", stamp, i, j->key, j->desc);
    snprintf(idx, sizeof idx, "%d", i);
    snprintf(thr, sizeof thr, "%d", P->threads);
    char *argv[] = {"concord", "job", "--plan", P->c->plan_path, "--index", idx, "--threads", thr, NULL};
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fd); return err_set("cannot start a job process: %s", strerror(errno)); }
    if (pid == 0) {
        /* child: die with the runner, even when only the runner is killed */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(143);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) { dup2(nul, 0); close(nul); }
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execv("/proc/self/exe", argv);
        dprintf(2, "concord: cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    close(fd);
    P->pid[i] = pid;
    P->t0[i] = now_seconds();
    P->st[i] = ST_RUNNING;
    P->nrun++;
    snprintf(P->bar_text, sizeof P->bar_text, "%s", j->desc);
    return 0;
}

static void pool_finished(Pool *P, int i, int status) {
    const SuitePlan *p = &P->c->p;
    const SuiteJob *j = &p->jobs[i];
    char mk[700], extra[900], dur[32];
    P->nrun--;
    P->pid[i] = 0;
    marker_path(p, j, "running", mk, sizeof mk);
    fmt_dur(now_seconds() - P->t0[i], dur, sizeof dur);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok) {
        int d = job_done(P->db, j);
        if (d < 0) { snprintf(extra, sizeof extra, "(%s)", err_msg()); err_clear(); ok = 0; }
        else if (!d) { snprintf(extra, sizeof extra, "exited 0 but recorded nothing under its key"); ok = 0; }
    } else if (WIFEXITED(status)) {
        snprintf(extra, sizeof extra, "exit %d", WEXITSTATUS(status));
    } else {
        snprintf(extra, sizeof extra, "killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    unlink(mk);
    /* a training job that died (signal, crash) leaves its run 'running': say precisely that it stopped */
    if (!ok && j->kind != JOB_ATTACK && db_runs_mark_interrupted(P->db, j->key, NULL) < 0) {
        fprintf(stderr, "concord: %s\n", err_msg());
        err_clear();
    }
    if (ok) {
        P->st[i] = ST_DONE;
        P->ndone++;
        pool_report(P, i, "done", dur);
        return;
    }
    if (g_stop) { P->st[i] = ST_PENDING; return; } /* stopped by us: neither done nor failed */
    P->st[i] = ST_FAILED;
    P->nfail++;
    marker_path(p, j, "failed", mk, sizeof mk);
    FILE *f = fopen(mk, "w");
    if (f) { fprintf(f, "%s\n", extra); fclose(f); }
    char msg[1500];
    snprintf(msg, sizeof msg, "%s after %s; log: %s/logs/%s.log", extra, dur, p->out_dir, j->key);
    pool_report(P, i, "FAILED", msg);
}

/* Fail fast on data that is not there, before any job starts (CIFAR-10 files for paper.ini...). */
static int check_datasets(Pool *P) {
    const SuitePlan *p = &P->c->p;
    for (int i = 0; i < p->n; i++) {
        const SuiteJob *j = &p->jobs[i];
        if (P->st[i] != ST_PENDING || j->kind == JOB_ATTACK) continue;
        int seen = 0;
        for (int k = 0; k < i && !seen; k++)
            seen = P->st[k] == ST_PENDING && p->jobs[k].kind != JOB_ATTACK && str_eq(p->jobs[k].dataset, j->dataset) &&
                   str_eq(p->jobs[k].data_dir, j->data_dir);
        if (seen) continue;
        Dataset d;
        if (dataset_open(j->dataset, j->data_dir[0] ? j->data_dir : NULL, SPLIT_TEST, &d) < 0) {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s", err_msg());
            err_clear();
            return err_set("%s: dataset %s is not available: %s ([suite] data-dir works too)",
                           P->c->s.path, j->dataset, msg);
        }
        dataset_close(&d);
    }
    return 0;
}

static int suite_cmd_run(Ctx *c, const Args *a) {
    long jobs = 0, threads = 0, stale;
    int nc = cores();
    if (arg_set(a, "jobs") && arg_int(a, "jobs", 1, 1024, &jobs) < 0) return -1;
    if (arg_set(a, "threads") && arg_int(a, "threads", 1, 256, &threads) < 0) return -1;
    if (arg_int(a, "stale", 0, 100000000L, &stale) < 0) return -1;
    /* processes x OpenBLAS threads = cores */
    if (!jobs && !threads) { jobs = nc; threads = 1; }
    else if (!threads) threads = nc / jobs > 0 ? nc / jobs : 1;
    else if (!jobs) jobs = nc / threads > 0 ? nc / threads : 1;

    char logs[600], lockp[600];
    snprintf(logs, sizeof logs, "%s/logs", c->p.out_dir);
    snprintf(lockp, sizeof lockp, "%s/ckpt", c->p.out_dir);
    if (mkdir_p(logs) < 0 || mkdir_p(lockp) < 0) return -1;
    snprintf(lockp, sizeof lockp, "%s/.lock", c->p.out_dir);
    int lock = open(lockp, O_RDWR | O_CREAT, 0666);
    if (lock < 0) return err_set("%s: cannot create the lock file: %s", lockp, strerror(errno));
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
        close(lock);
        return err_set("%s: another concord suite run is using %s; wait for it or stop it first", lockp, c->p.out_dir);
    }
    if (suite_plan_write(&c->p, c->plan_path) < 0) { close(lock); return -1; }

    Pool P = {.c = c, .jobs = (int)jobs, .threads = (int)threads, .tty = isatty(2)};
    int n = c->p.n, rc = -1, reaped = 0;
    P.st = xcalloc((size_t)(n ? n : 1), sizeof *P.st);
    P.pid = xcalloc((size_t)(n ? n : 1), sizeof *P.pid);
    P.t0 = xcalloc((size_t)(n ? n : 1), sizeof *P.t0);
    if (db_open(c->p.db_path, &P.db) < 0) goto out;
    /* jobs a previous runner of this directory left running (their .running marker is still there; we hold
     * the lock, so that runner is dead): their runs are interrupted, whatever their heartbeat says */
    for (int i = 0; i < n; i++) {
        char mk[700];
        const SuiteJob *j = &c->p.jobs[i];
        marker_path(&c->p, j, "running", mk, sizeof mk);
        if (!file_exists(mk)) continue;
        int changed = 0;
        if (j->kind != JOB_ATTACK && db_runs_mark_interrupted(P.db, j->key, &changed) < 0) goto out;
        reaped += changed;
        unlink(mk);
    }
    {
        int stale_n = 0; /* and, for runners elsewhere that share the database, stale heartbeats */
        if (db_runs_reap(P.db, (double)stale, &stale_n) < 0) goto out;
        reaped += stale_n;
    }
    for (int i = 0; i < n; i++) {
        int d = job_done(P.db, &c->p.jobs[i]);
        if (d < 0) goto out;
        if (d) { P.st[i] = ST_SKIPPED; P.nskip++; }
    }
    if (check_datasets(&P) < 0) goto out;
    printf("suite %s: %d jobs, %d already done; %d at a time x %d OpenBLAS thread%s\n", c->s.name, n, P.nskip, P.jobs,
           P.threads, P.threads > 1 ? "s" : "");
    if (reaped) printf("marked %d 'running' row%s of dead workers as interrupted\n", reaped, reaped > 1 ? "s" : "");
    printf("out: %s  db: %s\n", c->p.out_dir, c->p.db_path);
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    P.start = now_seconds();
    double last_draw = 0;
    for (;;) {
        if (g_stop) break;
        /* dependents of failed jobs can never run */
        for (int i = 0; i < n; i++) {
            if (P.st[i] != ST_PENDING) continue;
            for (int d = 0; d < c->p.jobs[i].ndeps; d++) {
                int s = P.st[c->p.jobs[i].deps[d]];
                if (s == ST_FAILED || s == ST_BLOCKED) { P.st[i] = ST_BLOCKED; P.nblock++; break; }
            }
        }
        for (int i = 0; i < n && P.nrun < P.jobs; i++) {
            if (P.st[i] != ST_PENDING) continue;
            int ready = 1;
            for (int d = 0; d < c->p.jobs[i].ndeps; d++) {
                int s = P.st[c->p.jobs[i].deps[d]];
                ready &= s == ST_DONE || s == ST_SKIPPED;
            }
            if (ready && pool_start(&P, i) < 0) goto stop;
        }
        if (P.nrun == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < n; i++)
                if (P.st[i] == ST_RUNNING && P.pid[i] == pid) pool_finished(&P, i, status);
            continue;
        }
        if (pid < 0 && errno != EINTR && errno != ECHILD) { err_set("waitpid: %s", strerror(errno)); goto stop; }
        if (now_seconds() - last_draw > 0.5) { pool_draw(&P); last_draw = now_seconds(); }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    rc = 0;
stop:
    if (P.nrun > 0) {
        /* SIGINT/SIGTERM (or an error): stop the children, wait for them */
        if (!g_stop) g_stop = SIGTERM;
        for (int i = 0; i < n; i++)
            if (P.st[i] == ST_RUNNING) kill(P.pid[i], SIGTERM);
        while (P.nrun > 0) {
            int status;
            pid_t pid = waitpid(-1, &status, 0);
            if (pid < 0 && errno == ECHILD) break;
            for (int i = 0; i < n; i++)
                if (pid > 0 && P.st[i] == ST_RUNNING && P.pid[i] == pid) pool_finished(&P, i, status);
        }
    }
    pool_line_clear(&P);
    {
        char el[32];
        fmt_dur(now_seconds() - P.start, el, sizeof el);
        int pend = n - P.ndone - P.nskip - P.nfail - P.nblock;
        printf("suite %s: %d done now, %d already done, %d failed, %d blocked by failures, %d not run; %s\n", c->s.name,
               P.ndone, P.nskip, P.nfail, P.nblock, pend, el);
        if (P.nfail) {
            printf("failed jobs (logs):\n");
            for (int i = 0; i < n; i++)
                if (P.st[i] == ST_FAILED) printf("  %s  %s  %s/logs/%s.log\n", c->p.jobs[i].key, c->p.jobs[i].desc, c->p.out_dir, c->p.jobs[i].key);
        }
        printf("database: %s\n", c->p.db_path);
        if (g_stop) {
            printf("stopped by signal %d; run the same command again to continue\n", (int)g_stop);
            rc = err_set("suite %s: interrupted", c->s.name);
        } else if (rc == 0 && (P.nfail || P.nblock)) {
            rc = err_set("suite %s: %d job%s failed (logs above); fix the cause and run the suite again: finished jobs are skipped",
                         c->s.name, P.nfail, P.nfail == 1 ? "" : "s");
        }
    }
out:
    fflush(stdout); /* the summary before the one-line error on stderr */
    db_close(P.db);
    free(P.st);
    free(P.pid);
    free(P.t0);
    close(lock);
    return rc;
}

/* ---------------------------------------------------------------- run: the Slurm engine */

/* 'text' with single quotes for sh; paths with a single quote are refused by the caller. */
static void sh_quote(FILE *f, const char *text) { fprintf(f, "'%s'", text); }

static int write_script(const char *path, const char *comment, char *const *argv, int array) {
    char tmp[700];
    tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set("%s: cannot write a Slurm batch script: %s", tmp, strerror(errno));
    fprintf(f, "#!/bin/sh\n# %s\n# written by concord suite run --engine slurm; submitted with sbatch (options on its command line)\nexec", comment);
    for (int i = 0; argv[i]; i++) {
        fputc(' ', f);
        sh_quote(f, argv[i]);
    }
    if (array) fprintf(f, " --index \"$SLURM_ARRAY_TASK_ID\"");
    fputc('\n', f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return err_set("%s: cannot write a Slurm batch script (disk full?)", tmp);
    chmod(tmp, 0755);
    return file_commit(tmp, path);
}

/* sbatch ARGS... SCRIPT; *id gets the job id. */
static int sbatch(char **args, int n, long *id) {
    char out[512];
    args[n] = NULL;
    int rc = run_capture(args, out, sizeof out);
    if (rc < 0) return -1;
    char *end;
    *id = strtol(out, &end, 10);
    if (rc != 0 || *id <= 0) return err_set("sbatch failed (exit %d): %s; its message is above", rc, out[0] ? out : "no job id");
    return 0;
}

/* slurm/jobs.txt: the ids submitted so far (rewritten after every sbatch, so a submission that fails
 * half-way still knows what it queued). */
static int write_job_ids(const SuitePlan *p, const long *ids, int n) {
    char path[700], tmp[800];
    snprintf(path, sizeof path, "%s/slurm/jobs.txt", p->out_dir);
    tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set("%s: cannot write: %s", tmp, strerror(errno));
    for (int i = 0; i < n; i++) fprintf(f, "%ld\n", ids[i]);
    if (fclose(f) != 0) return err_set("%s: cannot write (disk full?)", tmp);
    return file_commit(tmp, path);
}

/* MaxArraySize from `scontrol show config` (task ids run 0..MaxArraySize-1). */
static int slurm_max_array(long *n) {
    static char out[1 << 18];
    char *argv[] = {"scontrol", "show", "config", NULL};
    int rc = run_capture(argv, out, sizeof out);
    if (rc < 0) return -1;
    if (rc != 0) return err_set("scontrol show config failed (exit %d); is slurmctld reachable (scontrol ping)?", rc);
    const char *k = strstr(out, "MaxArraySize");
    if (!k || !strchr(k, '=')) return err_set("scontrol show config does not list MaxArraySize; pass --array-size N");
    *n = strtol(strchr(k, '=') + 1, NULL, 10);
    if (*n < 1) return err_set("scontrol show config: MaxArraySize = %ld; job arrays are disabled on this cluster", *n);
    return 0;
}

static int suite_cmd_slurm(Ctx *c, const Args *a) {
    const SuitePlan *p = &c->p;
    long cpus, chunk = 0;
    if (arg_int(a, "cpus-per-task", 1, 1024, &cpus) < 0) return -1;
    if (arg_set(a, "array-size") && arg_int(a, "array-size", 1, 100000000L, &chunk) < 0) return -1;
    static const char *const local_only[] = {"jobs", "threads"};
    for (size_t i = 0; i < ARRAY_LEN(local_only); i++)
        if (arg_set(a, local_only[i]))
            return err_set("--%s applies to --engine local; with Slurm use --cpus-per-task (threads per task)", local_only[i]);
    char dir[600], shards[600], self[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/slurm", p->out_dir);
    shard_dir_of(p, shards, sizeof shards);
    if (mkdir_p(dir) < 0 || mkdir_p(shards) < 0) return -1;
    snprintf(dir, sizeof dir, "%s/logs", p->out_dir);
    if (mkdir_p(dir) < 0) return -1;
    snprintf(dir, sizeof dir, "%s/ckpt", p->out_dir);
    if (mkdir_p(dir) < 0) return -1;
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return err_set("cannot find the concord executable (/proc/self/exe): %s", strerror(errno));
    self[sl] = 0;
    if (strchr(self, '\'') || strchr(p->out_dir, '\'') || strchr(p->db_path, '\''))
        return err_set("%s: paths with a single quote cannot go into the batch scripts; use another --out", p->out_dir);
    int resume = arg_flag(a, "resume");
    int active = slurm_active(p);
    if (active < 0) return -1;
    if (active > 0)
        return err_set("%s: %d Slurm job%s of an earlier submission of this suite %s still queued or running (squeue --me); "
                       "wait for them or scancel them, then run again with --resume", p->out_dir, active, active == 1 ? "" : "s",
                       active == 1 ? "is" : "are");
    Db *db = NULL;
    int rc = -1, nids = 0;
    long ids[4096];
    if (db_open(p->db_path, &db) < 0) return -1;
    if (!chunk && slurm_max_array(&chunk) < 0) goto out;
    if (suite_plan_write(p, c->plan_path) < 0) goto out;
    /* --resume: what earlier tasks recorded goes into the database first */
    DIR *sd = opendir(shards);
    int nshards = 0;
    for (struct dirent *e; sd && (e = readdir(sd));) nshards += e->d_name[0] != '.' && strstr(e->d_name, ".db") != NULL;
    if (sd) closedir(sd);
    if (resume && nshards) {
        char *margv[] = {self, "db", "merge", "--into", (char *)p->db_path, shards, "--quiet", NULL};
        char mout[4096];
        int mr = run_capture(margv, mout, sizeof mout);
        if (mr != 0) { if (mr > 0) err_set("merging the shards of %s failed (exit %d); see the message above", shards, mr); goto out; }
        printf("%s", mout);
    }
    int n = p->n, ndone = 0;
    int *missing = xcalloc((size_t)(n ? n : 1), sizeof *missing);
    for (int i = 0; i < n; i++) {
        int d = job_done(db, &p->jobs[i]);
        if (d < 0) { free(missing); goto out; }
        missing[i] = !d;
        ndone += d;
    }
    if (!resume && (ndone || nshards)) {
        free(missing);
        err_set("%s: %d of the suite's jobs are already recorded in %s%s; pass --resume to submit only the missing ones",
                c->s.path, ndone, p->db_path, nshards ? " (and its shard directory is not empty)" : "");
        goto out;
    }
    if (ndone == n) {
        free(missing);
        printf("suite %s: all %d jobs are already done in %s; nothing to submit\n", c->s.name, n, p->db_path);
        rc = 0;
        goto out;
    }
    /* the keys a task may rely on without reading the database (it never opens the shared SQLite file) */
    {
        char path[700], tmp[800];
        snprintf(path, sizeof path, "%s/slurm/done.txt", p->out_dir);
        tmp_path(path, tmp, sizeof tmp);
        FILE *f = fopen(tmp, "w");
        if (!f) { free(missing); err_set("%s: cannot write: %s", tmp, strerror(errno)); goto out; }
        for (int i = 0; i < n; i++)
            if (!missing[i]) fprintf(f, "%s\n", p->jobs[i].key);
        if (fclose(f) != 0 || file_commit(tmp, path) < 0) { free(missing); err_set("%s: cannot write", path); goto out; }
    }
    static const char *const stage_name[SUITE_STAGES] = {"train", "finetune", "attack"};
    int narrays = 0, nsub = 0;
    char depbuf[65536], cpus_s[24], thr[24], arr[48], name[160], outp[700];
    snprintf(cpus_s, sizeof cpus_s, "--cpus-per-task=%ld", cpus);
    snprintf(thr, sizeof thr, "%ld", cpus);
    for (int stage = 0; stage < SUITE_STAGES; stage++) {
        int *idx = xcalloc((size_t)n, sizeof *idx), m = 0;
        for (int i = 0; i < n; i++)
            if (missing[i] && suite_job_stage(&p->jobs[i]) == stage) idx[m++] = i;
        int prev = nids; /* every array of this stage waits for all earlier stages */
        for (int c0 = 0, k = 0; c0 < m; c0 += (int)chunk, k++) {
            int cn = m - c0 < chunk ? m - c0 : (int)chunk;
            char map[700], script[700], tmp[800], comment[1200];
            snprintf(map, sizeof map, "%s/slurm/%s-%d.map", p->out_dir, stage_name[stage], k);
            snprintf(script, sizeof script, "%s/slurm/%s-%d.sh", p->out_dir, stage_name[stage], k);
            tmp_path(map, tmp, sizeof tmp);
            FILE *f = fopen(tmp, "w");
            if (!f) { free(idx); free(missing); err_set("%s: cannot write: %s", tmp, strerror(errno)); goto out; }
            for (int t = 0; t < cn; t++) fprintf(f, "%d\n", idx[c0 + t]);
            if (fclose(f) != 0 || file_commit(tmp, map) < 0) { free(idx); free(missing); goto out; }
            snprintf(comment, sizeof comment, "suite %s, stage %s, array %d: task I runs the plan job on line I of %s", c->s.name,
                     stage_name[stage], k, map);
            char *jargv[] = {self, "job", "--plan", c->plan_path, "--map", map, "--shard-dir", shards, "--threads", thr, NULL};
            if (write_script(script, comment, jargv, 1) < 0) { free(idx); free(missing); goto out; }
            char *sargs[32];
            int na = 0;
            snprintf(arr, sizeof arr, "--array=0-%d", cn - 1);
            snprintf(name, sizeof name, "--job-name=concord-%s-%s", c->s.name, stage_name[stage]);
            snprintf(outp, sizeof outp, "--output=%s/logs/slurm-%%A_%%a.out", p->out_dir);
            sargs[na++] = "sbatch";
            sargs[na++] = "--parsable";
            sargs[na++] = arr;
            sargs[na++] = name;
            sargs[na++] = outp;
            sargs[na++] = cpus_s;
            if (prev > 0) {
                int w = snprintf(depbuf, sizeof depbuf, "--dependency=afterany");
                for (int d = 0; d < prev; d++) w += snprintf(depbuf + w, sizeof depbuf - (size_t)w, ":%ld", ids[d]);
                sargs[na++] = depbuf;
            }
            char part[160], tim[80], mem[80];
            if (arg_str(a, "partition")) { snprintf(part, sizeof part, "--partition=%s", arg_str(a, "partition")); sargs[na++] = part; }
            if (arg_str(a, "time")) { snprintf(tim, sizeof tim, "--time=%s", arg_str(a, "time")); sargs[na++] = tim; }
            if (arg_str(a, "mem")) { snprintf(mem, sizeof mem, "--mem=%s", arg_str(a, "mem")); sargs[na++] = mem; }
            sargs[na++] = script;
            CHECK(nids < (int)ARRAY_LEN(ids));
            if (sbatch(sargs, na, &ids[nids]) < 0 || write_job_ids(p, ids, nids + 1) < 0) { free(idx); free(missing); goto out; }
            printf("submitted %s stage, array %d: Slurm job %ld, %d task%s\n", stage_name[stage], k, ids[nids], cn, cn == 1 ? "" : "s");
            nids++;
            narrays++;
            nsub += cn;
        }
        free(idx);
    }
    free(missing);
    /* the merge: after every array, whatever their outcome */
    {
        char script[700];
        snprintf(script, sizeof script, "%s/slurm/merge.sh", p->out_dir);
        char *margv[] = {self, "db", "merge", "--into", (char *)p->db_path, shards, NULL};
        if (write_script(script, "merges every shard into the suite's database (idempotent: safe to run again)", margv, 0) < 0) goto out;
        char *sargs[16];
        int na = 0, w = snprintf(depbuf, sizeof depbuf, "--dependency=afterany");
        for (int d = 0; d < nids; d++) w += snprintf(depbuf + w, sizeof depbuf - (size_t)w, ":%ld", ids[d]);
        snprintf(name, sizeof name, "--job-name=concord-%s-merge", c->s.name);
        snprintf(outp, sizeof outp, "--output=%s/logs/slurm-merge-%%j.out", p->out_dir);
        sargs[na++] = "sbatch";
        sargs[na++] = "--parsable";
        sargs[na++] = name;
        sargs[na++] = outp;
        sargs[na++] = depbuf;
        char part[160], tim[80];
        if (arg_str(a, "partition")) { snprintf(part, sizeof part, "--partition=%s", arg_str(a, "partition")); sargs[na++] = part; }
        if (arg_str(a, "time")) { snprintf(tim, sizeof tim, "--time=%s", arg_str(a, "time")); sargs[na++] = tim; }
        sargs[na++] = script;
        CHECK(nids < (int)ARRAY_LEN(ids));
        if (sbatch(sargs, na, &ids[nids]) < 0 || write_job_ids(p, ids, nids + 1) < 0) goto out;
        printf("submitted the merge: Slurm job %ld (after all arrays)\n", ids[nids]);
        nids++;
    }
    printf("suite %s: %d job%s submitted in %d array%s (%d already done); out: %s  db: %s\n"
           "follow: concord suite status %s --out %s   (logs: %s/logs/slurm-*.out)\n",
           c->s.name, nsub, nsub == 1 ? "" : "s", narrays, narrays == 1 ? "" : "s", ndone, p->out_dir, p->db_path, c->s.path,
           p->out_dir, p->out_dir);
    rc = 0;
out:
    if (rc < 0 && nids > 0) {
        printf("submitted before the failure:");
        for (int i = 0; i < nids; i++) printf(" %ld", ids[i]);
        printf(" (listed in %s/slurm/jobs.txt; scancel them, or let them run and use --resume later)\n", p->out_dir);
    }
    fflush(stdout);
    db_close(db);
    return rc;
}

int cmd_suite(int argc, char **argv) {
    Args a;
    int pr = args_parse(&a, "suite", SUITE_USAGE, SUITE_OPTS, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    if (a.npos != 2 || (!str_eq(a.pos[0], "plan") && !str_eq(a.pos[0], "run") && !str_eq(a.pos[0], "status"))) {
        err_set("usage: concord suite %s (see concord suite --help and docs/suites.md)", SUITE_USAGE);
        return err_die();
    }
    const char *sub = a.pos[0];
    Ctx *c = xcalloc(1, sizeof *c);
    int rc = ctx_load(c, &a, a.pos[1], !str_eq(sub, "status"));
    if (rc == 0) {
        if (str_eq(sub, "plan")) rc = suite_cmd_plan(c);
        else if (str_eq(sub, "status")) rc = suite_cmd_status(c, arg_flag(&a, "verbose"));
        else if (str_eq(arg_str(&a, "engine"), "slurm")) rc = suite_cmd_slurm(c, &a);
        else if (str_eq(arg_str(&a, "engine"), "local")) {
            static const char *const slurm_only[] = {"partition", "time", "mem", "cpus-per-task", "array-size"};
            for (size_t i = 0; i < ARRAY_LEN(slurm_only) && rc == 0; i++)
                if (arg_set(&a, slurm_only[i])) rc = err_set("--%s applies to --engine slurm", slurm_only[i]);
            if (rc == 0) rc = suite_cmd_run(c, &a);
        }
        else rc = err_set("--engine %s: use local (a process pool on this machine) or slurm", arg_str(&a, "engine"));
    }
    suite_plan_free(&c->p);
    free(c);
    return rc < 0 ? err_die() : 0;
}

/* ---------------------------------------------------------------- job: one plan entry */

/* Line `line` (0-based) of an array map: the plan index that array task runs. */
static int map_index(const char *map, long line, long *idx) {
    FILE *f = fopen(map, "r");
    if (!f) return err_set("%s: cannot open the array map: %s", map, strerror(errno));
    char buf[64];
    long ln = 0;
    int found = 0;
    while (fgets(buf, sizeof buf, f))
        if (ln++ == line) { found = parse_int(strtok(buf, "\r\n") ? buf : "", 0, 100000000L, idx) == 0; break; }
    fclose(f);
    if (!found) return err_set("%s: no plan index on line %ld (array task %ld); regenerate the submission", map, line + 1, line);
    return 0;
}

/* 1 when key is listed in DONE (one key a line), 0 when not. */
static int listed_done(const char *done, const char *key) {
    FILE *f = fopen(done, "r");
    if (!f) return 0;
    char line[128];
    int hit = 0;
    while (!hit && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        hit = str_eq(line, key);
    }
    fclose(f);
    return hit;
}

static volatile sig_atomic_t g_job_sig;
static void on_job_signal(int sig) { g_job_sig = sig; }

/* Copies src to dst (another filesystem, usually) through dst's temporary name, then renames. */
static int copy_file(const char *src, const char *dst) {
    char tmp[1300];
    const char *slash = strrchr(dst, '/');
    snprintf(tmp, sizeof tmp, "%.*s.%s.tmp", slash ? (int)(slash - dst + 1) : 0, dst, slash ? slash + 1 : dst);
    FILE *in = fopen(src, "rb");
    if (!in) return err_set("%s: cannot read the shard: %s", src, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) { fclose(in); return err_set("%s: cannot write into the shard directory: %s", tmp, strerror(errno)); }
    char buf[1 << 16];
    size_t r;
    int bad = 0;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0) bad |= fwrite(buf, 1, r, out) != r;
    bad |= ferror(in);
    fclose(in);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0) bad = 1;
    if (fclose(out) != 0 || bad) { unlink(tmp); return err_set("%s: cannot copy the shard (disk full?)", tmp); }
    if (rename(tmp, dst) != 0) { unlink(tmp); return err_set("%s: cannot rename the shard into place: %s", dst, strerror(errno)); }
    return 0;
}

/* A job as a Slurm array task: dependencies from done.txt and the shards, the job's own database on local
 * disk, moved into shard_dir when the job ends (also when it fails or is stopped: its 'failed' row counts). */
static int job_sharded(const SuitePlan *p, long idx, const char *shard_dir, long threads, int dry) {
    const SuiteJob *j = &p->jobs[idx];
    char done[700], mk[700];
    snprintf(done, sizeof done, "%s/slurm/done.txt", p->out_dir);
    int d = listed_done(done, j->key) ? 1 : shards_job_done(shard_dir, j);
    if (d < 0) return -1;
    if (d) { printf("job %ld %s already done: %s\n", idx, j->key, j->desc); return 0; }
    for (int k = 0; k < j->ndeps; k++) {
        const SuiteJob *dj = &p->jobs[j->deps[k]];
        int dd = listed_done(done, dj->key) ? 1 : shards_job_done(shard_dir, dj);
        if (dd < 0) return -1;
        if (dd && dj->ckpt[0] && !file_exists(dj->ckpt)) dd = 0;
        if (!dd) {
            err_set("job %ld %s needs job %d %s (%s) first; it is not done (no finished shard in %s); it failed or did not run: "
                    "see concord suite status, then submit again with --resume", idx, j->key, j->deps[k], dj->key, dj->desc, shard_dir);
            marker_path(p, j, "failed", mk, sizeof mk);
            FILE *f = fopen(mk, "w");
            if (f) { fprintf(f, "%s\n", err_msg()); fclose(f); }
            return -1;
        }
    }
    const char *tdir = getenv("TMPDIR");
    const char *ajob = getenv("SLURM_ARRAY_JOB_ID"), *atask = getenv("SLURM_ARRAY_TASK_ID");
    char tag[96], local[1024], dest[1200], thr[24];
    if (ajob && atask) snprintf(tag, sizeof tag, "%s_%s", ajob, atask);
    else snprintf(tag, sizeof tag, "p%ld", (long)getpid());
    snprintf(local, sizeof local, "%s/concord-shard-%s-%s-%ld.db", tdir && *tdir ? tdir : "/tmp", j->key, tag, (long)getpid());
    snprintf(dest, sizeof dest, "%s/%s.%s.db", shard_dir, j->key, tag);
    char *args[SUITE_MAX_ARGS + 4];
    int n = 0;
    args[n++] = "concord";
    for (int i = 0; i < j->argc; i++) {
        args[n++] = j->argv[i];
        if (str_eq(j->argv[i], "--db") && i + 1 < j->argc) { args[n++] = local; i++; }
    }
    if (threads > 0) {
        snprintf(thr, sizeof thr, "%ld", threads);
        setenv("OPENBLAS_NUM_THREADS", thr, 1);
        args[n++] = "--threads";
        args[n++] = thr;
    }
    args[n] = NULL;
    char log[700];
    snprintf(log, sizeof log, "%s/logs/%s.log", p->out_dir, j->key);
    printf("job %ld %s: %s\nshard: %s -> %s\nlog: %s\n$", idx, j->key, j->desc, local, dest, log);
    for (int i = 0; i < n; i++) printf(" %s", args[i]);
    printf("\n");
    fflush(stdout);
    if (dry) return 0;
    /* the job's own output goes to logs/KEY.log, as with the local engine (appended per attempt) */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd < 0) return err_set("%s: cannot open the job log: %s", log, strerror(errno));
    {
        time_t now = time(NULL);
        char stamp[64];
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&now));
        dprintf(fd, "==== %s  job %ld %s (Slurm task %s): %s\n", stamp, idx, j->key, tag, j->desc);
    }
    marker_path(p, j, "failed", mk, sizeof mk);
    unlink(mk);
    marker_path(p, j, "running", mk, sizeof mk);
    int m = open(mk, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (m >= 0) close(m);
    /* Slurm stops a task with SIGTERM (scancel, time limit): pass it on, then still seal and move the shard */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_job_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fd); return err_set("cannot start the job process: %s", strerror(errno)); }
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execv("/proc/self/exe", args);
        dprintf(2, "concord: cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    close(fd);
    int status = 0, sent = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return err_set("waitpid: %s", strerror(errno));
        if (g_job_sig && !sent) { kill(pid, g_job_sig); sent = 1; }
    }
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0, rc = 0;
    if (file_exists(local)) {
        if (j->kind != JOB_ATTACK && !ok) {
            Db *sdb;
            if (db_open_existing(local, &sdb) == 0) { db_runs_mark_interrupted(sdb, j->key, NULL); db_close(sdb); }
            err_clear();
        }
        if (db_seal(local) < 0 || copy_file(local, dest) < 0) rc = -1;
        else printf("shard moved to %s\n", dest);
        unlink(local);
        char side[1100];
        snprintf(side, sizeof side, "%s-wal", local);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", local);
        unlink(side);
    }
    unlink(mk);
    if (!ok || rc < 0) {
        char why[200];
        if (!ok && WIFEXITED(status)) snprintf(why, sizeof why, "exit %d", WEXITSTATUS(status));
        else if (!ok) snprintf(why, sizeof why, "killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        else snprintf(why, sizeof why, "%s", err_msg());
        marker_path(p, j, "failed", mk, sizeof mk);
        FILE *f = fopen(mk, "w");
        if (f) { fprintf(f, "%s\n", why); fclose(f); }
        if (rc == 0) rc = err_set("job %ld %s (%s) failed: %s; log: %s", idx, j->key, j->desc, why, log);
    }
    return rc;
}

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
    if (arg_str(&a, "map") && map_index(arg_str(&a, "map"), idx, &idx) < 0) return err_die();
    SuitePlan p;
    if (suite_plan_read(arg_str(&a, "plan"), &p) < 0) return err_die();
    if (idx >= p.n) {
        err_set("%s: --index %ld is out of range; the plan has %d jobs (0..%d)", arg_str(&a, "plan"), idx, p.n, p.n - 1);
        suite_plan_free(&p);
        return err_die();
    }
    if (arg_str(&a, "shard-dir")) {
        int r = job_sharded(&p, idx, arg_str(&a, "shard-dir"), threads, arg_flag(&a, "dry-run"));
        suite_plan_free(&p);
        return r < 0 ? err_die() : 0;
    }
    const SuiteJob *j = &p.jobs[idx];
    Db *db = NULL;
    int rc = -1, done;
    if (db_open(p.db_path, &db) < 0) goto out;
    if ((done = job_done(db, j)) < 0) goto out;
    if (done) {
        printf("job %ld %s already done: %s\n", idx, j->key, j->desc);
        rc = 0;
        goto out;
    }
    for (int d = 0; d < j->ndeps; d++) {
        const SuiteJob *dj = &p.jobs[j->deps[d]];
        int dd = job_done(db, dj);
        if (dd < 0) goto out;
        if (!dd) {
            err_set("job %ld %s needs job %d %s (%s) first; it is not done in %s", idx, j->key, j->deps[d], dj->key, dj->desc, p.db_path);
            goto out;
        }
    }
    db_close(db);
    db = NULL;
    char *args[SUITE_MAX_ARGS + 4];
    char thr[24];
    int n = 0;
    args[n++] = "concord";
    for (int i = 0; i < j->argc; i++) args[n++] = j->argv[i];
    if (threads > 0) {
        snprintf(thr, sizeof thr, "%ld", threads);
        setenv("OPENBLAS_NUM_THREADS", thr, 1);
        args[n++] = "--threads";
        args[n++] = thr;
    }
    args[n] = NULL;
    printf("job %ld %s: %s\n$", idx, j->key, j->desc);
    for (int i = 0; i < n; i++) printf(" %s", args[i]);
    printf("\n");
    fflush(stdout);
    if (arg_flag(&a, "dry-run")) { rc = 0; goto out; }
    execv("/proc/self/exe", args);
    err_set("cannot run /proc/self/exe: %s", strerror(errno));
out:
    db_close(db);
    suite_plan_free(&p);
    return rc < 0 ? err_die() : 0;
}
