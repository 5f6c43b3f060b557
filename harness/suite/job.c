/* job.c -- the entry point every worker runs: `concord job --plan PLAN --index I` (the local pool's
 * children) and, with --map and --shard-dir, a Slurm array task. See runner.h. */
#define _GNU_SOURCE
#include "harness/suite/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/core.h"

int suite_map_index(const char *map, long line, long *idx) {
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
int suite_job_run_sharded(const SuitePlan *p, long idx, const char *shard_dir, long threads, int dry) {
    const SuiteJob *j = &p->jobs[idx];
    char done[700], mk[700];
    snprintf(done, sizeof done, "%s/slurm/done.txt", p->out_dir);
    int d = listed_done(done, j->key) ? 1 : runner_shards_job_done(shard_dir, j);
    if (d < 0) return -1;
    if (d) { printf("job %ld %s already done: %s\n", idx, j->key, j->desc); return 0; }
    for (int k = 0; k < j->ndeps; k++) {
        const SuiteJob *dj = &p->jobs[j->deps[k]];
        int dd = listed_done(done, dj->key) ? 1 : runner_shards_job_done(shard_dir, dj);
        if (dd < 0) return -1;
        if (dd && dj->ckpt[0] && !file_exists(dj->ckpt)) dd = 0;
        if (!dd) {
            err_set("job %ld %s needs job %d %s (%s) first; it is not done (no finished shard in %s); it failed or did not run: "
                    "see concord suite status, then submit again with --resume", idx, j->key, j->deps[k], dj->key, dj->desc, shard_dir);
            runner_marker_write(p, j, "failed", err_msg());
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
    int n = runner_job_argv(j, threads, local, args, thr);
    char log[700];
    snprintf(log, sizeof log, "%s/logs/%s.log", p->out_dir, j->key);
    printf("job %ld %s: %s\nshard: %s -> %s\nlog: %s\n$", idx, j->key, j->desc, local, dest, log);
    for (int i = 0; i < n; i++) printf(" %s", args[i]);
    printf("\n");
    fflush(stdout);
    if (dry) return 0;
    if (runner_job_dirs(p, j) < 0) return -1;
    /* the job's own output goes to logs/KEY.log, as with the local engine (appended per attempt) */
    int fd = runner_job_log_open(p, idx, tag, log, sizeof log);
    if (fd < 0) return -1;
    runner_marker_path(p, j, "failed", mk, sizeof mk);
    unlink(mk);
    runner_marker_write(p, j, "running", NULL);
    runner_marker_path(p, j, "running", mk, sizeof mk);
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
        runner_marker_write(p, j, "failed", why);
        if (rc == 0) rc = err_set("job %ld %s (%s) failed: %s; log: %s", idx, j->key, j->desc, why, log);
    }
    return rc;
}

int suite_job_run(const SuitePlan *p, long idx, long threads, int dry) {
    const SuiteJob *j = &p->jobs[idx];
    Db *db = NULL;
    int rc = -1, done;
    if (db_open(p->db_path, &db) < 0) goto out;
    if ((done = runner_job_done(db, j)) < 0) goto out;
    if (done) {
        printf("job %ld %s already done: %s\n", idx, j->key, j->desc);
        rc = 0;
        goto out;
    }
    for (int d = 0; d < j->ndeps; d++) {
        const SuiteJob *dj = &p->jobs[j->deps[d]];
        int dd = runner_job_done(db, dj);
        if (dd < 0) goto out;
        if (!dd) {
            err_set("job %ld %s needs job %d %s (%s) first; it is not done in %s", idx, j->key, j->deps[d], dj->key, dj->desc, p->db_path);
            goto out;
        }
    }
    db_close(db);
    db = NULL;
    char *args[SUITE_MAX_ARGS + 4];
    char thr[24];
    int n = runner_job_argv(j, threads, NULL, args, thr);
    printf("job %ld %s: %s\n$", idx, j->key, j->desc);
    for (int i = 0; i < n; i++) printf(" %s", args[i]);
    printf("\n");
    fflush(stdout);
    if (dry) { rc = 0; goto out; }
    if (runner_job_dirs(p, j) < 0) goto out;
    execv("/proc/self/exe", args);
    err_set("cannot run /proc/self/exe: %s", strerror(errno));
out:
    db_close(db);
    return rc;
}
