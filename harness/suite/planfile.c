/* planfile.c -- plan.tsv, the file `concord job --plan PLAN --index I` reads: written temp-then-rename,
 * read back with every field checked (a job line is a command line that will be exec'd: one cut short
 * or edited by hand must not run with what is left of it). Format: suite.h. */
#include "harness/suite/suite.h"

#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
/* ---------------------------------------------------------------- plan file */

#define PLAN_MAGIC "#concord-plan"
#define PLAN_VERSION 2
#define PLAN_FIXED 8 /* index key kind deps ckpt dataset desc argc, then argc argv columns */

int suite_plan_write(const SuitePlan *p, const char *path) {
    char tmp[600];
    tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set("%s: cannot write the plan file; check that the directory is writable", tmp);
    fprintf(f, "%s\t%d\n#suite\t%s\n#out\t%s\n#db\t%s\n#jobs\t%d\n", PLAN_MAGIC, PLAN_VERSION, p->suite_path, p->out_dir,
            p->db_path, p->n);
    fprintf(f, "#index\tkey\tkind\tdeps\tckpt\tdataset\tdesc\targc\targv...\n");
    for (int i = 0; i < p->n; i++) {
        const SuiteJob *j = &p->jobs[i];
        fprintf(f, "%d\t%s\t%s\t", i, j->key, suite_job_kind_name(j->kind));
        if (!j->ndeps) fputc('-', f);
        for (int d = 0; d < j->ndeps; d++) fprintf(f, "%s%d", d ? "," : "", j->deps[d]);
        char desc[sizeof j->desc]; /* human text: a tab in it would shift every column after it */
        snprintf(desc, sizeof desc, "%s", j->desc);
        for (char *c = desc; *c; c++)
            if (*c == '\t' || *c == '\n' || *c == '\r') *c = ' ';
        fprintf(f, "\t%s\t%s\t%s\t%d", j->ckpt[0] ? j->ckpt : "-", j->dataset, desc, j->argc);
        for (int a = 0; a < j->argc; a++) fprintf(f, "\t%s", j->argv[a]);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) { remove(tmp); return err_set("%s: cannot write the plan file (disk full?)", tmp); }
    return file_commit(tmp, path);
}

/* Splits line at tabs in place (the newline already stripped); returns the field count, max + 1 when
 * there are more fields than max. */
static int split_tabs(char *line, char **f, int max) {
    int n = 0;
    for (char *p = line;;) {
        if (n == max) return max + 1;
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = 0;
        p = t + 1;
    }
    return n;
}

/* The value after `--name` in argv, or NULL. */
static const char *argv_opt(const SuiteJob *j, const char *name) {
    for (int i = 1; i + 1 < j->argc; i++)
        if (strncmp(j->argv[i], "--", 2) == 0 && str_eq(j->argv[i] + 2, name)) return j->argv[i + 1];
    return NULL;
}

/* "-" or a comma list of distinct earlier indices. 0, or -1 with why. */
static int parse_deps(char *text, long idx, SuiteJob *j, char *why, size_t n) {
    if (str_eq(text, "-")) return 0;
    for (char *d = text;;) {
        char *comma = strchr(d, ',');
        if (comma) *comma = 0;
        long v;
        if (parse_int(d, 0, 100000000L, &v) < 0) { snprintf(why, n, "dependency '%s' is not an index", d); return -1; }
        if (v >= idx) { snprintf(why, n, "dependency %ld is not an earlier job", v); return -1; }
        for (int k = 0; k < j->ndeps; k++)
            if (j->deps[k] == v) { snprintf(why, n, "dependency %ld is listed twice", v); return -1; }
        if (j->ndeps == SUITE_MAX_DEPS) { snprintf(why, n, "more than %d dependencies", SUITE_MAX_DEPS); return -1; }
        j->deps[j->ndeps++] = (int)v;
        if (!comma) return 0;
        d = comma + 1;
    }
}

/* What a job's command line needs for its kind: the command itself, --db, --job-key = its key;
 * train/finetune: --out = its checkpoint; attack: --ckpt. 0, or -1 with why. */
static int check_job_argv(const SuiteJob *j, char *why, size_t n) {
    const char *kind = suite_job_kind_name(j->kind), *v;
    if (!j->argc || !str_eq(j->argv[0], kind)) { snprintf(why, n, "a %s job whose command is '%s'", kind, j->argc ? j->argv[0] : ""); return -1; }
    if (!(v = argv_opt(j, "db")) || !*v) { snprintf(why, n, "job %s has no --db", j->key); return -1; }
    if (!(v = argv_opt(j, "job-key")) || !str_eq(v, j->key)) {
        snprintf(why, n, "job %s has %s%s", j->key, v ? "--job-key " : "no --job-key", v ? v : "");
        return -1;
    }
    if (j->kind == JOB_ATTACK) {
        if (j->ckpt[0]) { snprintf(why, n, "attack job %s names a checkpoint it writes ('%s')", j->key, j->ckpt); return -1; }
        static const char *const need[] = {"ckpt", "attack", "eps"}; /* suite_job_row_keys reads --attack and --eps */
        for (size_t i = 0; i < ARRAY_LEN(need); i++)
            if (!argv_opt(j, need[i])) { snprintf(why, n, "attack job %s has no --%s", j->key, need[i]); return -1; }
        return 0;
    }
    if (!j->ckpt[0]) { snprintf(why, n, "%s job %s names no checkpoint", kind, j->key); return -1; }
    if (!(v = argv_opt(j, "out")) || !str_eq(v, j->ckpt)) {
        snprintf(why, n, "%s job %s has %s%s (its checkpoint is %s)", kind, j->key, v ? "--out " : "no --out", v ? v : "", j->ckpt);
        return -1;
    }
    return 0;
}

int suite_plan_read(const char *path, SuitePlan *p) {
    memset(p, 0, sizeof *p);
    if (file_not_dir(path, "plan file") < 0) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return err_set("%s: cannot open the plan file; run concord suite plan FILE --out DIR first", path);
    static char line[1 << 16];
    char *fld[PLAN_FIXED + SUITE_MAX_ARGS];
    int ln = 0, rc = 0, have_out = 0, have_db = 0;
    long njobs = -1;
    char why[700] = "";
    while (fgets(line, sizeof line, f)) {
        ln++;
        size_t len = strlen(line);
        if (!len || line[len - 1] != '\n') {
            snprintf(why, sizeof why, feof(f) ? "the line is cut short (no newline at the end of the file)" : "the line is too long");
            break;
        }
        line[--len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        int n = split_tabs(line, fld, (int)ARRAY_LEN(fld));
        if (ln == 1) {
            long v;
            if (n != 2 || !str_eq(fld[0], PLAN_MAGIC)) {
                rc = err_set("%s:1: not a Concord plan file (expected '%s %d'); pass the plan.tsv concord suite plan wrote", path,
                             PLAN_MAGIC, PLAN_VERSION);
                break;
            }
            if (parse_int(fld[1], 0, 1000000L, &v) < 0 || v != PLAN_VERSION) {
                rc = err_set("%s:1: plan format '%s', this concord reads format %d; regenerate the plan with concord suite plan", path,
                             fld[1], PLAN_VERSION);
                break;
            }
            continue;
        }
        if (fld[0][0] == '#') {
            if (p->n) { snprintf(why, sizeof why, "a header line after the jobs"); break; }
            if (str_eq(fld[0], "#index")) continue; /* the column names */
            if (n != 2) { snprintf(why, sizeof why, "header '%s' needs exactly one value", fld[0]); break; }
            if (str_eq(fld[0], "#suite")) snprintf(p->suite_path, sizeof p->suite_path, "%s", fld[1]);
            else if (str_eq(fld[0], "#out")) have_out = snprintf(p->out_dir, sizeof p->out_dir, "%s", fld[1]) > 0;
            else if (str_eq(fld[0], "#db")) have_db = snprintf(p->db_path, sizeof p->db_path, "%s", fld[1]) > 0;
            else if (str_eq(fld[0], "#jobs")) {
                if (parse_int(fld[1], 0, 100000000L, &njobs) < 0) { snprintf(why, sizeof why, "#jobs '%s' is not a count", fld[1]); break; }
            } else {
                snprintf(why, sizeof why, "unknown header '%s'", fld[0]);
                break;
            }
            continue;
        }
        if (!have_out || !have_db || njobs < 0) { snprintf(why, sizeof why, "a job before the #out, #db and #jobs headers"); break; }
        SuiteJob j;
        memset(&j, 0, sizeof j);
        j.section = SEC_NONE;
        j.line = ln;
        long idx, argc;
        if (n < PLAN_FIXED + 1) { snprintf(why, sizeof why, "%d fields, a job line has at least %d", n, PLAN_FIXED + 1); break; }
        if (parse_int(fld[0], 0, 100000000L, &idx) < 0 || idx != p->n) {
            snprintf(why, sizeof why, "index '%s' where job %d was expected", fld[0], p->n);
            break;
        }
        if (!fld[1][0] || strlen(fld[1]) >= sizeof j.key || strspn(fld[1], "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(fld[1])) {
            snprintf(why, sizeof why, "job %ld: '%.40s' is not a job key", idx, fld[1]);
            break;
        }
        snprintf(j.key, sizeof j.key, "%s", fld[1]);
        j.kind = -1;
        for (int k = 0; k < JOB_KIND_COUNT; k++)
            if (str_eq(fld[2], suite_job_kind_name(k))) j.kind = k;
        if (j.kind < 0) { snprintf(why, sizeof why, "job %ld: unknown job kind '%s'", idx, fld[2]); break; }
        char dwhy[200];
        if (parse_deps(fld[3], idx, &j, dwhy, sizeof dwhy) < 0) { snprintf(why, sizeof why, "job %ld: %s", idx, dwhy); break; }
        if (!str_eq(fld[4], "-")) {
            if (strlen(fld[4]) >= sizeof j.ckpt) { snprintf(why, sizeof why, "job %ld: the checkpoint path is too long", idx); break; }
            snprintf(j.ckpt, sizeof j.ckpt, "%s", fld[4]);
        }
        snprintf(j.dataset, sizeof j.dataset, "%s", fld[5]);
        snprintf(j.desc, sizeof j.desc, "%s", fld[6]);
        if (parse_int(fld[7], 1, SUITE_MAX_ARGS - 1, &argc) < 0) {
            snprintf(why, sizeof why, "job %ld: argument count '%s' is not in 1..%d", idx, fld[7], SUITE_MAX_ARGS - 1);
            break;
        }
        if (n != PLAN_FIXED + argc) {
            snprintf(why, sizeof why, "job %ld: %d arguments, the line says %ld (cut short or edited)", idx, n - PLAN_FIXED, argc);
            break;
        }
        for (int a = 0; a < argc; a++) {
            if (!fld[PLAN_FIXED + a][0]) { snprintf(why, sizeof why, "job %ld: argument %d is empty", idx, a); break; }
            j.argv[j.argc++] = xstrdup(fld[PLAN_FIXED + a]);
        }
        j.argv[j.argc] = NULL;
        if (!why[0]) check_job_argv(&j, why, sizeof why);
        if (!why[0] && suite_plan_find(p, j.key) >= 0) snprintf(why, sizeof why, "job %ld: key %s is listed twice", idx, j.key);
        if (why[0]) {
            for (int a = 0; a < j.argc; a++) free(j.argv[a]);
            break;
        }
        suite_plan_add(p, &j);
    }
    if (!rc && !why[0] && ferror(f)) rc = err_set("%s: cannot read the plan file", path);
    fclose(f);
    if (!rc && why[0])
        rc = err_set("%s:%d: %s; the plan is damaged or was edited: regenerate it with concord suite plan%s%s", path, ln, why,
                     p->suite_path[0] ? " " : "", p->suite_path);
    if (!rc && ln == 0) rc = err_set("%s: empty plan file; regenerate it with concord suite plan", path);
    if (!rc && (!have_out || !have_db || njobs < 0))
        rc = err_set("%s: the #out, #db or #jobs header is missing; regenerate the plan with concord suite plan", path);
    if (!rc && p->n != njobs)
        rc = err_set("%s: %d jobs, the header says %ld: the file is cut short; regenerate it with concord suite plan%s%s", path, p->n,
                     njobs, p->suite_path[0] ? " " : "", p->suite_path);
    if (rc) suite_plan_free(p);
    return rc;
}
