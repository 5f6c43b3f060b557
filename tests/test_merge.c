/* test_merge.c -- shard databases and `concord db merge`: rows matched by job key, ids remapped (parent
 * runs, eval targets and surrogates, artifacts), a finished row replacing a failed one, rows without a key
 * skipped, a second merge changing nothing; db_runs_mark_interrupted; and the real Slurm end-to-end test
 * (tests/slurm_e2e.sh) that runs whenever slurm-wlm and munge are installed or installable. */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/core.h"
#include "results/db.h"
#include "tests/test.h"

/* A content fingerprint of every table (ids included), to prove a merge changed nothing. */
static unsigned long long fingerprint(const char *db) {
    static const char *const tables[] = {"runs", "epochs", "alignment", "evals", "artifacts"};
    sqlite3 *h;
    unsigned long long f = FNV1A_INIT;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) { sqlite3_close(h); return 0; }
    for (size_t t = 0; t < ARRAY_LEN(tables); t++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY 1, 2", tables[t]);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) { f = 0; break; }
        while (sqlite3_step(st) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                f = fnv1a64(v ? (const char *)v : "\x01NULL", v ? strlen((const char *)v) : 5, f);
                f = fnv1a64("|", 1, f);
            }
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return f;
}

static int64_t add_run(Db *db, const char *key, const char *kind, const char *from, const char *status, const char *ckpt,
                       const char *hash, int epochs) {
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"rule\":\"bp\"%s%s%s}", from ? ",\"from\":\"" : "", from ? from : "", from ? "\"" : "");
    DbRun r = {.job_key = key, .kind = kind, .rule = "bp", .model = "mlp", .dataset = "synthetic", .config_json = cfg};
    int64_t id = 0;
    T_ASSERT(db_run_begin(db, &r, &id) == 0);
    for (int e = 1; e <= epochs; e++) {
        EpochStats st;
        memset(&st, 0, sizeof st);
        st.epoch = e;
        st.epochs = epochs;
        st.train_loss = 1.0 / e;
        st.nalign = 1;
        snprintf(st.align[0].name, sizeof st.align[0].name, "fc1");
        st.align[0].angle_bw = 10 * e;
        T_ASSERT(db_run_epoch(db, id, &st) == 0);
    }
    if (status) T_ASSERT(db_run_end(db, id, status, NULL, ckpt, hash, 0.5) == 0);
    return id;
}

static void add_eval(Db *db, const char *key, const char *target_hash, const char *transfer_hash) {
    AttackParams p;
    attack_params_default(&p);
    attack_set_eps(&p, "0.1");
    p.kind = ATK_FGSM;
    if (transfer_hash) {
        p.grad_source = GRAD_TRANSFER;
        snprintf(p.transfer_ckpt, sizeof p.transfer_ckpt, "/o/ckpt/sur.ckpt");
    }
    EvalCounts c = {0};
    c.n = 10;
    c.n_clean_ok = 8;
    c.n_robust_ok = 3;
    DbEval e = {.job_key = key, .target_ckpt = "/o/ckpt/ft.ckpt", .target_hash = target_hash, .transfer_hash = transfer_hash};
    T_ASSERT(db_eval_record(db, &e, &p, &c, "", NULL) == 0);
}

TEST(db_merge_shards) {
    char dir[512], a[600], b[600], c[600], d[600], main_db[600];
    snprintf(dir, sizeof dir, "%s/merge", test_tmpdir());
    CHECK(mkdir(dir, 0777) == 0);
    snprintf(a, sizeof a, "%s/t-pre.1_0.db", dir);   /* the pretraining task */
    snprintf(b, sizeof b, "%s/f-ft.2_0.db", dir);    /* the fine-tune, first attempt: failed */
    snprintf(c, sizeof c, "%s/f-ft.3_0.db", dir);    /* the fine-tune, second attempt: finished */
    snprintf(d, sizeof d, "%s/a-atk.4_0.db", dir);   /* its attack, one eval against a surrogate, one unkeyed */
    snprintf(main_db, sizeof main_db, "%s/main.db", test_tmpdir());
    Db *db;
    T_ASSERT(db_open(a, &db) == 0);
    int64_t pre = add_run(db, "t-pre", "train", NULL, "finished", "/o/ckpt/pre.ckpt", "hpre", 2);
    T_ASSERT(db_artifact(db, pre, 0, "grid", "/o/grid-pre.png", "g1") == 0);
    db_close(db);
    T_ASSERT(db_open(b, &db) == 0);
    add_run(db, "f-ft", "finetune", "/o/ckpt/pre.ckpt", "failed", NULL, NULL, 1);
    db_close(db);
    T_ASSERT(db_open(c, &db) == 0);
    add_run(db, "x-pad", "train", NULL, NULL, NULL, NULL, 0); /* shifts ids: the shard's ids mean nothing in main */
    add_run(db, "f-ft", "finetune", "/o/ckpt/pre.ckpt", "finished", "/o/ckpt/ft.ckpt", "hft", 3);
    add_run(db, "f-sur", "finetune", "/o/ckpt/pre.ckpt", "finished", "/o/ckpt/sur.ckpt", "hsur", 1);
    /* x-pad stays 'running': the runner that saw its worker die marks it */
    int changed = -1;
    T_ASSERT(db_runs_mark_interrupted(db, "x-pad", &changed) == 0 && changed == 1);
    T_ASSERT(db_runs_mark_interrupted(db, "f-ft", &changed) == 0 && changed == 0); /* finished: left alone */
    db_close(db);
    T_ASSERT(db_open(d, &db) == 0);
    add_eval(db, "a-atk/fgsm/0.1/true", "hft", NULL);
    add_eval(db, "a-atk/fgsm/0.1/transfer:f-sur", "hft", "hsur");
    add_eval(db, NULL, "hft", NULL);
    db_close(db);
    /* shards merged in an awkward order: the attack before its target, the failed attempt last */
    const char *order[] = {d, a, c, b};
    T_ASSERT(db_open(main_db, &db) == 0);
    DbMergeStats st;
    int unkeyed = 0;
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        T_ASSERT_MSG(db_merge(db, order[i], &st) == 0, "%s", err_msg());
        unkeyed += st.unkeyed;
        if (order[i] == b) { T_EQ_INT(st.runs_kept, 1); T_EQ_INT(st.runs_added, 0); } /* failed does not replace finished */
    }
    T_EQ_INT(unkeyed, 1);
    db_close(db);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM runs"), 4);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM runs WHERE job_key = 'f-ft' AND status = 'finished'"), 1);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM runs WHERE job_key = 'x-pad' AND status = 'interrupted'"), 1);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM epochs e JOIN runs r ON r.id = e.run_id WHERE r.job_key = 'f-ft'"), 3);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM alignment a JOIN runs r ON r.id = a.run_id WHERE r.job_key = 't-pre'"), 2);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM runs f JOIN runs p ON p.id = f.parent_run WHERE f.kind = 'finetune' AND p.job_key = 't-pre'"), 2);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM evals"), 2);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM evals e JOIN runs r ON r.id = e.run_id WHERE r.job_key = 'f-ft'"), 2);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM evals e JOIN runs r ON r.id = e.transfer_run WHERE r.job_key = 'f-sur'"), 1);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM artifacts a JOIN runs r ON r.id = a.run_id WHERE r.job_key = 't-pre'"), 2);
    T_EQ_INT(t_sql_long(main_db, "SELECT COUNT(*) FROM artifacts a JOIN runs r ON r.id = a.run_id WHERE a.kind = 'checkpoint' AND r.job_key = 'f-ft'"), 1);
    /* a second merge of everything (also through the CLI, a directory) changes nothing */
    unsigned long long f0 = fingerprint(main_db);
    T_ASSERT(f0 != 0);
    T_ASSERT(db_open(main_db, &db) == 0);
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        T_ASSERT(db_merge(db, order[i], &st) == 0);
        T_EQ_INT(st.runs_added + st.runs_replaced + st.evals_added + st.evals_replaced, 0);
    }
    db_close(db);
    T_ASSERT(fingerprint(main_db) == f0);
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "%s db merge --into %s %s", test_exe(), main_db, dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "merged 4 shards");
    T_CONTAINS(out, "runs 0 added, 0 replaced, 5 kept; evals 0 added, 0 replaced, 2 kept");
    T_ASSERT(fingerprint(main_db) == f0);
    /* errors: a missing shard, no --into, a database into itself */
    snprintf(cmd, sizeof cmd, "%s db merge --into %s %s/nope.db", test_exe(), main_db, dir);
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "no such shard file or directory");
    snprintf(cmd, sizeof cmd, "%s db merge %s", test_exe(), a);
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--into DB is required");
    T_ASSERT(db_open(main_db, &db) == 0);
    T_ASSERT(db_merge(db, main_db, &st) < 0);
    T_CONTAINS(err_msg(), "into itself");
    err_clear();
    db_close(db);
    /* a sealed shard reads without a lock or side files */
    T_ASSERT(db_seal(c) == 0);
    char *keys[] = {"f-ft", "f-sur"}, *missing[] = {"f-ft", "nope"}, side[700];
    T_EQ_INT(db_file_jobs_done(c, keys, 2), 1);
    T_EQ_INT(db_file_jobs_done(c, missing, 2), 0);
    snprintf(side, sizeof side, "%s-wal", c);
    T_ASSERT(access(side, F_OK) != 0);
}

/* Engine options are checked before anything runs (no Slurm needed). */
TEST(slurm_engine_options) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "%s suite run suites/tiny.ini --out %s/eng --partition x", test_exe(), test_tmpdir());
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--partition applies to --engine slurm");
    snprintf(cmd, sizeof cmd, "%s suite run suites/tiny.ini --out %s/eng --engine slurm --jobs 2", test_exe(), test_tmpdir());
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--jobs applies to --engine local");
    snprintf(cmd, sizeof cmd, "%s suite run suites/tiny.ini --out %s/eng --engine pbs", test_exe(), test_tmpdir());
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--engine pbs: use local");
    /* the array entry point maps task ids through the map file, and refuses a line that is not there */
    snprintf(cmd, sizeof cmd, "%s suite plan suites/tiny.ini --out %s/eng > /dev/null && printf '5\n0\n' > %s/eng/m.map && "
             "%s job --plan %s/eng/plan.tsv --map %s/eng/m.map --index 1 --shard-dir %s/eng/shards --dry-run",
             test_exe(), test_tmpdir(), test_tmpdir(), test_exe(), test_tmpdir(), test_tmpdir(), test_tmpdir());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "job 0 ");
    T_CONTAINS(out, "/eng/shards/");
    T_CONTAINS(out, "/concord-shard-"); /* the job records into its local shard, not the suite's database */
    snprintf(cmd, sizeof cmd, "%s job --plan %s/eng/plan.tsv --map %s/eng/m.map --index 0 --shard-dir %s/eng/shards --dry-run",
             test_exe(), test_tmpdir(), test_tmpdir(), test_tmpdir());
    T_ASSERT(test_run(cmd, out, sizeof out) != 0); /* job 5 is an attack: its fine-tune is not done */
    T_CONTAINS(out, "needs job");
    snprintf(cmd, sizeof cmd, "%s job --plan %s/eng/plan.tsv --map %s/eng/m.map --index 2 --dry-run", test_exe(), test_tmpdir(), test_tmpdir());
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "no plan index on line 3");
}

/* The Slurm engine on a real single-node cluster: tests/slurm_e2e.sh (about 20 s once installed). */
TEST(slurm_e2e) {
    char cmd[1024];
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "sh tests/slurm_e2e.sh %s", test_exe());
    int rc = test_run(cmd, out, sizeof out);
    if (rc == 77) {
        fprintf(stderr, "    SKIPPED slurm_e2e: %s", strstr(out, "SKIPPED") ? strstr(out, "SKIPPED") : out);
        return;
    }
    T_ASSERT_MSG(rc == 0, "tests/slurm_e2e.sh exit %d:\n%s", rc, out);
    T_CONTAINS(out, "a second merge changes nothing");
}
