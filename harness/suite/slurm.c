/* slurm.c -- the Slurm engine of `concord suite run --engine slurm` (docs/slurm.md): job arrays per stage
 * under MaxArraySize, afterany between stages, a final merge job; tasks record into shards. See runner.h. */
#define _GNU_SOURCE
#include "harness/suite/runner.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/core.h"

/* 'text' with single quotes for sh; paths with a single quote are refused by the caller. */
static void sh_quote(FILE *f, const char *text) { fprintf(f, "'%s'", text); }

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
int suite_slurm_active(const SuitePlan *p) {
    long ids[4096];
    int n = read_job_ids(p, ids, (int)ARRAY_LEN(ids));
    if (!n) return 0;
    static char out[1 << 20];
    char *argv[] = {"squeue", "--me", "-h", "-o", "%F", NULL};
    int rc = runner_run_capture(argv, out, sizeof out);
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
    int rc = runner_run_capture(args, out, sizeof out);
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
    int rc = runner_run_capture(argv, out, sizeof out);
    if (rc < 0) return -1;
    if (rc != 0) return err_set("scontrol show config failed (exit %d); is slurmctld reachable (scontrol ping)?", rc);
    const char *k = strstr(out, "MaxArraySize");
    if (!k || !strchr(k, '=')) return err_set("scontrol show config does not list MaxArraySize; pass --array-size N");
    *n = strtol(strchr(k, '=') + 1, NULL, 10);
    if (*n < 1) return err_set("scontrol show config: MaxArraySize = %ld; job arrays are disabled on this cluster", *n);
    return 0;
}

int suite_run_slurm(SuiteCtx *c, const SlurmOpts *o) {
    const SuitePlan *p = &c->p;
    long cpus = o->cpus, chunk = o->array_size;
    char dir[600], shards[600], self[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/slurm", p->out_dir);
    runner_shard_dir(p, shards, sizeof shards);
    if (dir_create(dir) < 0 || dir_create(shards) < 0) return -1;
    snprintf(dir, sizeof dir, "%s/logs", p->out_dir);
    if (dir_create(dir) < 0) return -1;
    snprintf(dir, sizeof dir, "%s/ckpt", p->out_dir);
    if (dir_create(dir) < 0) return -1;
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) return err_set("cannot find the concord executable (/proc/self/exe): %s", strerror(errno));
    self[sl] = 0;
    if (strchr(self, '\'') || strchr(p->out_dir, '\'') || strchr(p->db_path, '\''))
        return err_set("%s: paths with a single quote cannot go into the batch scripts; use another --out", p->out_dir);
    int resume = o->resume;
    int active = suite_slurm_active(p);
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
        int mr = runner_run_capture(margv, mout, sizeof mout);
        if (mr != 0) { if (mr > 0) err_set("merging the shards of %s failed (exit %d); see the message above", shards, mr); goto out; }
        printf("%s", mout);
    }
    int n = p->n, ndone = 0;
    int *missing = xcalloc((size_t)(n ? n : 1), sizeof *missing);
    for (int i = 0; i < n; i++) {
        int d = runner_job_done(db, &p->jobs[i]);
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
            if (o->partition) { snprintf(part, sizeof part, "--partition=%s", o->partition); sargs[na++] = part; }
            if (o->time) { snprintf(tim, sizeof tim, "--time=%s", o->time); sargs[na++] = tim; }
            if (o->mem) { snprintf(mem, sizeof mem, "--mem=%s", o->mem); sargs[na++] = mem; }
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
        if (o->partition) { snprintf(part, sizeof part, "--partition=%s", o->partition); sargs[na++] = part; }
        if (o->time) { snprintf(tim, sizeof tim, "--time=%s", o->time); sargs[na++] = tim; }
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
