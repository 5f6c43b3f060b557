/* local.c -- the local engine of `concord suite run`: a process pool on this machine, each child running
 * `concord job --plan PLAN --index I --threads T` (see runner.h), jobs x threads = cores, dependencies
 * respected, finished jobs skipped, a progress bar on a terminal. */
#define _GNU_SOURCE
#include "harness/suite/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "datasets/dataset.h"
#include "harness/core.h"

enum { ST_PENDING, ST_RUNNING, ST_DONE, ST_SKIPPED, ST_FAILED, ST_BLOCKED };

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

typedef struct Pool {
    SuiteCtx *c;
    Db *db;
    int jobs, threads, tty;
    int out_tty;                  /* stdout is a terminal too: the bar stands for the "done" lines */
    double kind_sum[JOB_KIND_COUNT]; /* seconds of the jobs of each kind finished by this runner */
    int kind_n[JOB_KIND_COUNT];
    double eta, eta_at;           /* the smoothed ETA shown, and when it was computed (0: none yet) */
    int *st;
    pid_t *pid;
    double *t0, start;
    int nrun, ndone, nskip, nfail, nblock;
    char bar_text[160];
} Pool;

static void pool_line_clear(Pool *P) {
    if (P->tty) fputs("\r\033[K", stderr);
}

/* Seconds of work left over the pool's slots: every job not finished at the mean duration of the jobs of
 * its kind (training, fine-tuning, attack) finished by this runner (the mean over all kinds where a kind has
 * none yet), less what the running ones have already spent. Jobs skipped as already done count for nothing,
 * so a resumed suite is estimated from its own jobs. -1 before the first job ends. */
static double pool_eta(const Pool *P, double now) {
    double all = 0;
    int alln = 0;
    for (int k = 0; k < JOB_KIND_COUNT; k++) { all += P->kind_sum[k]; alln += P->kind_n[k]; }
    if (!alln) return -1;
    double left = 0;
    for (int i = 0; i < P->c->p.n; i++) {
        if (P->st[i] != ST_PENDING && P->st[i] != ST_RUNNING) continue;
        int k = P->c->p.jobs[i].kind;
        double mean = P->kind_n[k] ? P->kind_sum[k] / P->kind_n[k] : all / alln;
        double rest = P->st[i] == ST_RUNNING ? mean - (now - P->t0[i]) : mean;
        left += rest > 0 ? rest : 0;
    }
    return left / (P->jobs > 0 ? P->jobs : 1);
}

static void pool_draw(Pool *P) {
    if (!P->tty) return;
    int n = P->c->p.n, fin = P->ndone + P->nskip + P->nfail + P->nblock, w = 30, k = n ? fin * w / n : w;
    char bar[64], el[32], eta[48] = "";
    for (int i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
    bar[w] = 0;
    double now = now_seconds(), e = now - P->start;
    runner_fmt_dur(e, el, sizeof el);
    double raw = pool_eta(P, now);
    if (raw >= 0 && fin < n) {
        /* smoothed: the previous estimate counted down, pulled a fifth of the way towards the new one each draw,
           so one quick or slow job (the first attacks after a resume of finished training) does not swing it */
        if (P->eta_at > 0) {
            double prev = P->eta - (now - P->eta_at);
            P->eta = 0.8 * (prev > 0 ? prev : 0) + 0.2 * raw;
        } else {
            P->eta = raw;
        }
        P->eta_at = now;
        char t[32];
        runner_fmt_dur(P->eta, t, sizeof t);
        snprintf(eta, sizeof eta, "  eta %s", t);
    }
    fprintf(stderr, "\r\033[K[%s] %d/%d  run %d  fail %d  %s%s  %.40s", bar, fin, n, P->nrun, P->nfail, el, eta, P->bar_text);
    fflush(stderr);
}

/* One finished-job line: failures always (on stderr, above the bar); "done" lines on stdout, except when
 * stdout and stderr are both the terminal (the bar counts them there). Redirect stdout while stderr is a
 * terminal and the file gets every line, the terminal the bar. */
static void pool_report(Pool *P, int i, const char *what, const char *extra) {
    const SuiteJob *j = &P->c->p.jobs[i];
    int fin = P->ndone + P->nskip + P->nfail + P->nblock;
    if (P->tty && P->out_tty && str_eq(what, "done")) return;
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
    runner_marker_path(p, j, "failed", mk, sizeof mk);
    unlink(mk);
    runner_marker_write(p, j, "running", NULL);
    int fd = runner_job_log_open(p, i, NULL, log, sizeof log);
    if (fd < 0) return -1;
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
    runner_marker_path(p, j, "running", mk, sizeof mk);
    runner_fmt_dur(now_seconds() - P->t0[i], dur, sizeof dur);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok) {
        int d = runner_job_done(P->db, j);
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
        P->kind_sum[j->kind] += now_seconds() - P->t0[i];
        P->kind_n[j->kind]++;
        pool_report(P, i, "done", dur);
        return;
    }
    if (g_stop) { P->st[i] = ST_PENDING; return; } /* stopped by us: neither done nor failed */
    P->st[i] = ST_FAILED;
    P->nfail++;
    runner_marker_write(p, j, "failed", extra);
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

int suite_run_local(SuiteCtx *c, int jobs, int threads, long stale) {
    char logs[600], lockp[600];
    snprintf(logs, sizeof logs, "%s/logs", c->p.out_dir);
    snprintf(lockp, sizeof lockp, "%s/ckpt", c->p.out_dir);
    if (dir_create(logs) < 0 || dir_create(lockp) < 0) return -1;
    snprintf(lockp, sizeof lockp, "%s/.lock", c->p.out_dir);
    int lock = open(lockp, O_RDWR | O_CREAT, 0666);
    if (lock < 0) return err_set("%s: cannot create the lock file: %s", lockp, strerror(errno));
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
        close(lock);
        return err_set("%s: another concord suite run is using %s; wait for it or stop it first", lockp, c->p.out_dir);
    }
    if (suite_plan_write(&c->p, c->plan_path) < 0) { close(lock); return -1; }

    Pool P = {.c = c, .jobs = jobs, .threads = threads, .tty = isatty(2), .out_tty = isatty(1)};
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
        runner_marker_path(&c->p, j, "running", mk, sizeof mk);
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
        int d = runner_job_done(P.db, &c->p.jobs[i]);
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
        runner_fmt_dur(now_seconds() - P.start, el, sizeof el);
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
