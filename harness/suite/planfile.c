/* planfile.c -- plan.tsv, the file `concord job --plan PLAN --index I` reads: written temp-then-rename,
 * read back with every field checked. Format: suite.h. */
#include "harness/suite/suite.h"

#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
/* ---------------------------------------------------------------- plan file */

#define PLAN_MAGIC "#concord-plan\t1"

int suite_plan_write(const SuitePlan *p, const char *path) {
    char tmp[600];
    tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) return err_set("%s: cannot write the plan file; check that the directory is writable", tmp);
    fprintf(f, "%s\n#suite\t%s\n#out\t%s\n#db\t%s\n", PLAN_MAGIC, p->suite_path, p->out_dir, p->db_path);
    fprintf(f, "#index\tkey\tkind\tdeps\tckpt\tdataset\tdesc\targv...\n");
    for (int i = 0; i < p->n; i++) {
        const SuiteJob *j = &p->jobs[i];
        fprintf(f, "%d\t%s\t%s\t", i, j->key, suite_job_kind_name(j->kind));
        if (!j->ndeps) fputc('-', f);
        for (int d = 0; d < j->ndeps; d++) fprintf(f, "%s%d", d ? "," : "", j->deps[d]);
        fprintf(f, "\t%s\t%s\t%s", j->ckpt[0] ? j->ckpt : "-", j->dataset, j->desc);
        for (int a = 0; a < j->argc; a++) fprintf(f, "\t%s", j->argv[a]);
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) { remove(tmp); return err_set("%s: cannot write the plan file (disk full?)", tmp); }
    return file_commit(tmp, path);
}

/* Splits line at tabs in place (strips the newline); returns the field count. */
static int split_tabs(char *line, char **f, int max) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = 0;
        p = t + 1;
    }
    return n;
}

int suite_plan_read(const char *path, SuitePlan *p) {
    memset(p, 0, sizeof *p);
    FILE *f = fopen(path, "r");
    if (!f) return err_set("%s: cannot open the plan file; run concord suite plan FILE --out DIR first", path);
    static char line[1 << 16];
    char *fld[SUITE_MAX_ARGS + 8];
    int ln = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (ln == 1) {
            line[strcspn(line, "\r\n")] = 0;
            if (!str_eq(line, PLAN_MAGIC)) { rc = err_set("%s:1: not a Concord plan file (expected '#concord-plan 1')", path); break; }
            continue;
        }
        int n = split_tabs(line, fld, (int)ARRAY_LEN(fld));
        if (fld[0][0] == '#') {
            if (n >= 2 && str_eq(fld[0], "#suite")) snprintf(p->suite_path, sizeof p->suite_path, "%s", fld[1]);
            if (n >= 2 && str_eq(fld[0], "#out")) snprintf(p->out_dir, sizeof p->out_dir, "%s", fld[1]);
            if (n >= 2 && str_eq(fld[0], "#db")) snprintf(p->db_path, sizeof p->db_path, "%s", fld[1]);
            continue;
        }
        long idx;
        SuiteJob j;
        memset(&j, 0, sizeof j);
        if (n < 8 || parse_int(fld[0], 0, 100000000L, &idx) < 0 || idx != p->n || strlen(fld[1]) >= sizeof j.key) {
            rc = err_set("%s:%d: malformed plan line; regenerate it with concord suite plan", path, ln);
            break;
        }
        snprintf(j.key, sizeof j.key, "%s", fld[1]);
        j.kind = -1;
        for (int k = 0; k < JOB_KIND_COUNT; k++)
            if (str_eq(fld[2], suite_job_kind_name(k))) j.kind = k;
        if (j.kind < 0) { rc = err_set("%s:%d: unknown job kind '%s'", path, ln, fld[2]); break; }
        if (!str_eq(fld[3], "-")) {
            for (char *d = fld[3]; *d && j.ndeps < SUITE_MAX_DEPS;) {
                long v = strtol(d, &d, 10);
                if (v < 0 || v >= idx) { rc = err_set("%s:%d: dependency %ld is not an earlier job", path, ln, v); break; }
                j.deps[j.ndeps++] = (int)v;
                if (*d == ',') d++;
                else break;
            }
            if (rc) break;
        }
        if (!str_eq(fld[4], "-")) snprintf(j.ckpt, sizeof j.ckpt, "%s", fld[4]);
        snprintf(j.dataset, sizeof j.dataset, "%s", fld[5]);
        snprintf(j.desc, sizeof j.desc, "%s", fld[6]);
        for (int a = 7; a < n && j.argc < SUITE_MAX_ARGS - 1; a++) j.argv[j.argc++] = xstrdup(fld[a]);
        j.argv[j.argc] = NULL;
        suite_plan_add(p, &j);
    }
    fclose(f);
    if (!rc && ln == 0) rc = err_set("%s: empty plan file", path);
    if (rc) suite_plan_free(p);
    return rc;
}
