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

#include "../datasets/dataset.h"
#include "../results/db.h"
#include "cli.h"
#include "commands.h"
#include "core.h"
#include "suite.h"

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

/* ---------------------------------------------------------------- loading a suite with its paths */

static const OptSpec SUITE_OPTS[] = {
    {"out", "DIR", "output directory: plan, checkpoints, logs (default out/<suite name>)", NULL},
    {"db", "PATH", "results database (default <out>/concord.db)", NULL},
    {"data-dir", "DIR", "where the dataset files are (overrides [suite] data-dir)", NULL},
    {"jobs", "N", "run: parallel jobs (default: cores / threads)", NULL},
    {"threads", "N", "run: OpenBLAS threads per job (default: cores / jobs, at least 1)", NULL},
    {"stale", "SECONDS", "run: mark 'running' rows whose heartbeat is older than this as interrupted", "900"},
    {"verbose", NULL, "status: list every job with its state", NULL},
    {0},
};
static const char *SUITE_USAGE = "plan|run|status FILE [--out DIR] [--db DB] [--jobs N] [--threads N]";

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
    printf("%d jobs: %d train, %d finetune, %d attack\n", p->n, count[JOB_TRAIN], count[JOB_FINETUNE], count[JOB_ATTACK]);
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
    int alive = runner_alive(c->p.out_dir);
    int n_done = 0, n_run = 0, n_fail = 0, n_pend = 0, n_intr = 0;
    char mk[700];
    for (int i = 0; i < c->p.n; i++) {
        const SuiteJob *j = &c->p.jobs[i];
        const char *st;
        int d = job_done(db, j);
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
    printf("%s\n", alive ? "; a runner is active" : "");
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
        else rc = suite_cmd_run(c, &a);
    }
    suite_plan_free(&c->p);
    free(c);
    return rc < 0 ? err_die() : 0;
}

/* ---------------------------------------------------------------- job: one plan entry */

int cmd_job(int argc, char **argv) {
    static const OptSpec opts[] = {
        {"plan", "PLAN", "plan file written by concord suite plan|run", NULL},
        {"index", "I", "which job of the plan to run (0-based)", NULL},
        {"threads", "N", "OpenBLAS threads (0 = OpenBLAS default)", "0"},
        {"dry-run", NULL, "print the command line instead of running it", NULL},
        {0},
    };
    Args a;
    int pr = args_parse(&a, "job", "--plan PLAN --index I [--threads N]", opts, argc, argv);
    if (pr) return pr > 0 ? 0 : err_die();
    if (!arg_str(&a, "plan") || !arg_str(&a, "index")) { err_set("concord job: --plan PLAN and --index I are required"); return err_die(); }
    long idx, threads;
    if (arg_int(&a, "index", 0, 100000000L, &idx) < 0 || arg_int(&a, "threads", 0, 256, &threads) < 0) return err_die();
    SuitePlan p;
    if (suite_plan_read(arg_str(&a, "plan"), &p) < 0) return err_die();
    if (idx >= p.n) {
        err_set("%s: --index %ld is out of range; the plan has %d jobs (0..%d)", arg_str(&a, "plan"), idx, p.n, p.n - 1);
        suite_plan_free(&p);
        return err_die();
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
