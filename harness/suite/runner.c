/* runner.c -- what the local pool, the Slurm engine, the job entry point and status share. See runner.h. */
#define _GNU_SOURCE
#include "harness/suite/runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/core.h"

void runner_marker_path(const SuitePlan *p, const SuiteJob *j, const char *ext, char *out, size_t n) {
    snprintf(out, n, "%s/logs/%s.%s", p->out_dir, j->key, ext);
}

void runner_marker_write(const SuitePlan *p, const SuiteJob *j, const char *ext, const char *text) {
    char mk[700];
    runner_marker_path(p, j, ext, mk, sizeof mk);
    FILE *f = fopen(mk, "w");
    if (!f) return; /* a marker is a hint for `suite status`; the database is what counts */
    if (text) fprintf(f, "%s\n", text);
    fclose(f);
}

void runner_fmt_dur(double s, char *out, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, n, "%lds", t);
}

void runner_shard_dir(const SuitePlan *p, char *out, size_t n) { snprintf(out, n, "%s/shards", p->out_dir); }

int runner_job_dirs(const SuitePlan *p, const SuiteJob *j) {
    char logs[600];
    snprintf(logs, sizeof logs, "%s/logs", p->out_dir);
    if (dir_create(logs) < 0) return -1;
    return j->ckpt[0] ? dir_create_parent(j->ckpt) : 0;
}

int runner_job_done(Db *db, const SuiteJob *j) {
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

int runner_shards_job_done(const char *dir, const SuiteJob *j) {
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

int runner_run_capture(char *const argv[], char *out, size_t cap) {
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

int suite_ctx_load(SuiteCtx *c, const char *file, const char *out_arg, const char *db_arg, const char *data_dir, int create) {
    if (suite_load(file, &c->s) < 0) return -1;
    if (data_dir) snprintf(c->s.data_dir, sizeof c->s.data_dir, "%s", data_dir);
    char out[512], abs_out[PATH_MAX], db[PATH_MAX + 32];
    if (out_arg) snprintf(out, sizeof out, "%s", out_arg);
    else snprintf(out, sizeof out, "out/%s", c->s.name);
    if (create && dir_create(out) < 0) return -1;
    if (create) { /* what the jobs write into: a job run alone (concord job) does not create them */
        char sub[600];
        snprintf(sub, sizeof sub, "%s/ckpt", out);
        if (dir_create(sub) < 0) return -1;
        snprintf(sub, sizeof sub, "%s/logs", out);
        if (dir_create(sub) < 0) return -1;
    }
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
    if (db_arg) {
        const char *d = db_arg;
        char cwd[PATH_MAX];
        if (d[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(db, sizeof db, "%s", d);
        else snprintf(db, sizeof db, "%.2000s/%.1000s", cwd, d);
    } else {
        snprintf(db, sizeof db, "%s/concord.db", abs_out);
    }
    if (strlen(db) >= sizeof c->p.db_path) return err_set("%s: the database path is too long", db);
    /* both go into the tab-separated plan file, one line per job */
    if (strpbrk(db, "\t\n\r")) return err_set("%s: the database path contains a tab or newline; pass another --db", db);
    if (strpbrk(file, "\t\n\r")) return err_set("%s: the suite file's path contains a tab or newline; rename it", file);
    if (suite_plan(&c->s, abs_out, db, &c->p) < 0) return -1;
    snprintf(c->plan_path, sizeof c->plan_path, "%s/plan.tsv", abs_out);
    return 0;
}

int runner_job_log_open(const SuitePlan *p, long idx, const char *tag, char *log, size_t n) {
    const SuiteJob *j = &p->jobs[idx];
    snprintf(log, n, "%s/logs/%s.log", p->out_dir, j->key);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd < 0) return err_set("%s: cannot open the job log: %s", log, strerror(errno));
    time_t now = time(NULL);
    char stamp[64], task[120] = "";
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime(&now));
    if (tag) snprintf(task, sizeof task, " (Slurm task %s)", tag);
    dprintf(fd, "==== %s  job %ld %s%s: %s\n", stamp, idx, j->key, task, j->desc);
    return fd;
}

int runner_job_argv(const SuiteJob *j, long threads, const char *db_override, char **args, char thr[24]) {
    int n = 0;
    args[n++] = "concord";
    for (int i = 0; i < j->argc; i++) {
        args[n++] = j->argv[i];
        if (db_override && str_eq(j->argv[i], "--db") && i + 1 < j->argc) { args[n++] = (char *)db_override; i++; }
    }
    if (threads > 0) {
        snprintf(thr, 24, "%ld", threads);
        setenv("OPENBLAS_NUM_THREADS", thr, 1);
        args[n++] = "--threads";
        args[n++] = thr;
    }
    args[n] = NULL;
    return n;
}
