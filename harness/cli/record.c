/* record.c -- train/finetune -> results database (results/db.h). See record.h. */
#include "harness/cli/record.h"

#include <math.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli/version.h"
#include "results/db.h"
#include "rules/rule.h"
#include "harness/gemm.h"

/* Canonical configuration: every option of the command, given or defaulted, sorted by name (the
 * option table is fixed, so its order is canonical), as a JSON object of strings. */
static void config_json(const Args *a, char *out, size_t n) {
    size_t l = 0;
    l += (size_t)snprintf(out + l, n - l, "{");
    int first = 1;
    for (int i = 0; i < a->nspec && l < n; i++) {
        const char *nm = a->spec[i].name, *v = arg_str(a, nm);
        if (!v || str_eq(nm, "db") || str_eq(nm, "no-db") || str_eq(nm, "quiet") || str_eq(nm, "threads") ||
            str_eq(nm, "resume") || str_eq(nm, "job-key"))
            continue; /* not part of what the run computes */
        l += (size_t)snprintf(out + l, n - l, "%s\"%s\":\"", first ? "" : ",", nm);
        for (const char *c = v; *c && l + 2 < n; c++) {
            if (*c == '"' || *c == '\\') out[l++] = '\\';
            out[l++] = *c;
        }
        l += (size_t)snprintf(out + l, n - l, "\"");
        first = 0;
    }
    if (l < n) snprintf(out + l, n - l, "}");
}

/* The run that wrote checkpoint file with content hash h (the finetune's parent), or 0. */
static int64_t run_of_ckpt(Db *db, const char *h) {
    sqlite3_stmt *st;
    int64_t id = 0;
    if (sqlite3_prepare_v2(db_sqlite(db), "SELECT run_id FROM artifacts WHERE kind='checkpoint' AND hash=? AND run_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, h, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

int record_begin(Recorder *r, const Args *a, const char *kind, const Model *m, const Dataset *train,
                 const TrainOpts *o, const CkptMeta *meta) {
    memset(r, 0, sizeof *r);
    r->quiet = o->quiet;
    if (arg_flag(a, "no-db")) return 0;
    const char *path = arg_str(a, "db");
    snprintf(r->path, sizeof r->path, "%s", path ? path : db_default_path());
    Db *db;
    if (db_open(r->path, &db) < 0) return -1;
    r->db = db;
    const char *key = arg_str(a, "job-key");
    if (key && db_job_done(db, key) == 1) return 1; /* already finished: the caller skips the work */
    static char cfg[8192];
    config_json(a, cfg, sizeof cfg);
    char model_opts[160];
    snprintf(model_opts, sizeof model_opts, "width=%g;hidden=%s;dropout=%g;head=%s;in=%dx%dx%d;classes=%d", m->spec.width,
             m->spec.hidden, m->spec.dropout, m->spec.head, m->spec.in_c, m->spec.in_h, m->spec.in_w, m->spec.classes);
    const char *ph = meta_get(meta, "parent_hash"), *ep = meta_get(meta, "epoch");
    DbRun run = {
        .job_key = arg_str(a, "job-key"),
        .kind = kind,
        .parent_run = ph ? run_of_ckpt(db, ph) : 0,
        .rule = m->rule_name,
        .rule_opts = m->rule_opts,
        .model = m->spec.arch,
        .model_opts = model_opts,
        .dataset = train->name,
        .data_seed = (int64_t)o->seed,
        .init_seed = meta_get(meta, "init_seed") ? atoll(meta_get(meta, "init_seed")) : (int64_t)o->seed,
        .rule_seed = (int64_t)m->rule_seed,
        .config_json = cfg,
        .git_rev = getenv("CONCORD_GIT_REV") ? getenv("CONCORD_GIT_REV") : concord_git_rev(),
        .blas_core = blas_core(),
        .cpu = cpu_describe(),
        .blas_threads = blas_threads(),
        .resume = arg_flag(a, "resume") && ep && atoi(ep) > 0,
    };
    int64_t id;
    if (db_run_begin(db, &run, &id) < 0) return -1;
    r->run_id = id;
    return 0;
}

int record_epoch(Recorder *r, const EpochStats *s) {
    if (!r->db) return 0;
    return db_run_epoch(r->db, r->run_id, s);
}

int record_end(Recorder *r, const char *status, const char *error, const char *ckpt, double test_acc) {
    if (!r->db) return 0;
    char h[17] = "";
    if (ckpt && file_sha_hex(ckpt, h) < 0) return -1;
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", error ? error : "");
    int rc = db_run_end(r->db, r->run_id, status, error ? saved : NULL, ckpt, ckpt ? h : NULL, test_acc);
    if (rc == 0 && !str_eq(status, "failed") && !r->quiet) printf("results recorded in %s (run %lld)\n", r->path, r->run_id);
    return rc;
}

void record_close(Recorder *r) {
    db_close(r->db);
    r->db = NULL;
}
