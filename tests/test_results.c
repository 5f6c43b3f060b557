/* test_results.c -- the results database (schema, migration, concurrency), the query reports and the
 * gnuplot figures. The fixture database is built in code through the public API; expected numbers are
 * worked out by hand below (e.g. robust accuracies 40 and 50 -> "45.0 ± 7.1", sample sd).
 */
#define _POSIX_C_SOURCE 200809L
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/cli/commands.h"
#include "harness/core.h"
#include "results/db.h"
#include "results/plot.h"
#include "results/query.h"
#include "tests/test.h"

/* ---- helpers ---- */

static void tpath(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", test_tmpdir(), name); }

/* Runs a command entry point in a child with stdout/stderr captured into files; returns its exit status. */
static int run_cmd(int (*fn)(int, char **), char **argv, char **out, char **err) {
    char po[512], pe[512];
    static int k;
    snprintf(po, sizeof po, "%s/cmd-%d.out", test_tmpdir(), ++k);
    snprintf(pe, sizeof pe, "%s/cmd-%d.err", test_tmpdir(), k);
    int argc = 0;
    while (argv[argc]) argc++;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(po, "w", stdout) || !freopen(pe, "w", stderr)) _exit(99);
        err_clear();
        int rc = fn(argc, argv);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    *out = t_slurp(po, NULL);
    *err = t_slurp(pe, NULL);
    if (!*out) *out = xstrdup("");
    if (!*err) *err = xstrdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static AttackParams atk(int kind, int src, const char *eps_text, double eps) {
    AttackParams p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.norm = NORM_LINF;
    snprintf(p.eps_text, sizeof p.eps_text, "%s", eps_text);
    p.eps = eps;
    p.steps = kind == ATK_PGD ? 10 : 1;
    p.restarts = 1;
    p.grad_source = src;
    p.eot = 1;
    p.seed = 7;
    p.batch = 50;
    p.target = -1;
    if (kind == ATK_SQUARE) { p.queries = 1000; p.p_init = 0.05; }
    return p;
}
static EvalCounts counts(long n, long clean, long robust) {
    EvalCounts c = {0};
    c.n = n;
    c.n_clean_ok = clean;
    c.n_robust_ok = robust;
    c.n_flipped = clean - robust;
    c.mean_linf = 0.1;
    c.seconds = 0.5;
    return c;
}

/* The fixture: a BP pretraining run and fine-tunes with bp and usf, two seeds each. Per fine-tune run
 * (n = 100 test examples):
 *   test_acc   bp 88, 90      usf 86, 87        -> clean  bp 89.0 ± 1.4, usf 86.5 ± 0.7
 *   fgsm true eps 0.1         bp 40, 50  usf 60, 64  -> 45.0 ± 7.1, 62.0 ± 2.8
 *   fgsm true eps 0 (= clean) bp 88, 90  usf 86, 87
 *   fgsm feedback eps 0.1     bp 40, 50  usf 80, 84  -> 45.0 ± 7.1, 82.0 ± 2.8 (flag on usf)
 *   fgsm transfer (from the bp seed-1 fine-tune) eps 0.1: bp 70, 72  usf 75, 77 -> 71.0 ± 1.4, 76.0 ± 1.4
 *   square eps 0.1            bp 55, 57  usf 66, 68  -> 56.0 ± 1.4, 67.0 ± 1.4
 * Two epochs per fine-tune with alignment rows for layers conv1 and fc1. */
static void fixture(const char *path, int with_transfer) {
    Db *db = NULL;
    unlink(path);
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    DbRun pre = {.job_key = "pre", .kind = "train", .rule = "bp", .model = "lenet5", .dataset = "fashion-mnist",
                 .data_seed = 1, .init_seed = 1, .rule_seed = 1, .config_json = "{\"lr\":0.01}", .git_rev = "abc",
                 .blas_core = "Haswell", .blas_threads = 1};
    int64_t pre_id = 0;
    T_ASSERT(db_run_begin(db, &pre, &pre_id) == 0);
    T_ASSERT(db_run_end(db, pre_id, "finished", NULL, "pre.ckpt", "h-pre", 0.90) == 0);
    const char *rules[2] = {"bp", "usf"};
    const int test_acc[2][2] = {{88, 90}, {86, 87}};
    const int rob_true[2][2] = {{40, 50}, {60, 64}}, rob_fb[2][2] = {{40, 50}, {80, 84}};
    const int rob_tr[2][2] = {{70, 72}, {75, 77}}, rob_sq[2][2] = {{55, 57}, {66, 68}};
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < 2; s++) {
            char key[64], ckpt[64], hash[64];
            snprintf(key, sizeof key, "ft-%s-%d", rules[r], s + 1);
            snprintf(ckpt, sizeof ckpt, "ft-%s-%d.ckpt", rules[r], s + 1);
            snprintf(hash, sizeof hash, "h-%s-%d", rules[r], s + 1);
            DbRun ft = {.job_key = key, .kind = "finetune", .parent_run = pre_id, .rule = rules[r], .model = "lenet5",
                        .dataset = "fashion-mnist", .data_seed = s + 1, .init_seed = 1, .rule_seed = s + 1,
                        .config_json = "{}", .blas_threads = 1};
            int64_t id = 0;
            T_ASSERT(db_run_begin(db, &ft, &id) == 0);
            for (int e = 1; e <= 2; e++) {
                EpochStats st;
                memset(&st, 0, sizeof st);
                st.epoch = e;
                st.epochs = 2;
                st.lr = 0.01;
                st.train_loss = 1.0 / e;
                st.train_acc = 0.70 + 0.1 * e + 0.01 * r;
                st.val_acc = 0.68 + 0.1 * e;
                st.val_loss = 0.9 / e;
                st.seconds = 1;
                st.samples_per_s = 1000;
                st.nalign = 2;
                snprintf(st.align[0].name, sizeof st.align[0].name, "conv1");
                snprintf(st.align[1].name, sizeof st.align[1].name, "fc1");
                for (int l = 0; l < 2; l++) {
                    st.align[l].angle_bw = r ? 37.0 + l + s : 0;
                    st.align[l].norm_ratio = r ? 0.9 : 1.0;
                    st.align[l].grad_angle = r ? 20.0 + 10 * l + e : 0;
                }
                T_ASSERT(db_run_epoch(db, id, &st) == 0);
            }
            T_ASSERT(db_run_end(db, id, "finished", NULL, ckpt, hash, test_acc[r][s] / 100.0) == 0);
            struct { AttackParams p; int robust; const char *flags; } ev[5] = {
                {atk(ATK_FGSM, GRAD_TRUE, "0.1", 0.1), rob_true[r][s], ""},
                {atk(ATK_FGSM, GRAD_TRUE, "0", 0), test_acc[r][s], ""},
                {atk(ATK_FGSM, GRAD_FEEDBACK, "0.1", 0.1), rob_fb[r][s], r ? "feedback>true" : ""},
                {atk(ATK_FGSM, GRAD_TRANSFER, "0.1", 0.1), rob_tr[r][s], ""},
                {atk(ATK_SQUARE, GRAD_TRUE, "0.1", 0.1), rob_sq[r][s], ""},
            };
            snprintf(ev[3].p.transfer_ckpt, sizeof ev[3].p.transfer_ckpt, "ft-bp-1.ckpt");
            for (int k = 0; k < 5; k++) {
                if (k == 3 && !with_transfer) continue;
                char ekey[96];
                snprintf(ekey, sizeof ekey, "%s/e%d", key, k);
                /* run_id deliberately 0: the eval finds its run from the checkpoint hash */
                DbEval de = {.job_key = ekey, .target_ckpt = ckpt, .target_hash = hash,
                             .transfer_hash = k == 3 ? "h-bp-1" : NULL, .dataset = "fashion-mnist"};
                EvalCounts c = counts(100, test_acc[r][s], ev[k].robust);
                T_ASSERT(db_eval_record(db, &de, &ev[k].p, &c, ev[k].flags, NULL) == 0);
            }
        }
    if (test_failed_now()) fprintf(stderr, "    fixture: %s\n", err_msg());
    db_close(db);
}

/* ---- db_ ---- */

TEST(db_schema_create) {
    char path[512];
    tpath(path, sizeof path, "sub/dir/new.db"); /* parent directories are created */
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    T_EQ_INT(db_schema_version(db), DB_SCHEMA_VERSION);
    const char *const objs[] = {"runs", "epochs", "alignment", "evals", "artifacts", "eval_view", "run_view"};
    for (size_t i = 0; i < ARRAY_LEN(objs); i++) T_EQ_INT(db_count(db, objs[i]), 0);
    db_close(db);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'evals_job_key'"), 1);
    char jm[600];
    snprintf(jm, sizeof jm, "sqlite3 '%s' 'PRAGMA journal_mode'", path);
    char out[256];
    T_EQ_INT(test_run(jm, out, sizeof out), 0);
    T_CONTAINS(out, "wal");
    /* reopening an up-to-date database changes nothing */
    T_ASSERT(db_open(path, &db) == 0);
    T_EQ_INT(db_schema_version(db), DB_SCHEMA_VERSION);
    db_close(db);
    /* errors: a directory, a missing file for db_open_existing, a foreign SQLite file, a newer schema */
    T_ASSERT(db_open(test_tmpdir(), &db) < 0);
    T_CONTAINS(err_msg(), "is a directory");
    err_clear();
    tpath(path, sizeof path, "missing.db");
    T_ASSERT(db_open_existing(path, &db) < 0);
    T_CONTAINS(err_msg(), "no such database");
    err_clear();
    tpath(path, sizeof path, "foreign.db");
    sqlite3 *h = NULL;
    sqlite3_open(path, &h);
    sqlite3_exec(h, "CREATE TABLE t(x); PRAGMA user_version=0", NULL, NULL, NULL);
    sqlite3_close(h);
    T_ASSERT(db_open(path, &db) < 0);
    T_CONTAINS(err_msg(), "not a results database");
    err_clear();
    tpath(path, sizeof path, "newer.db");
    sqlite3_open(path, &h);
    sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL);
    sqlite3_close(h);
    T_ASSERT(db_open(path, &db) < 0);
    T_CONTAINS(err_msg(), "newer than this build");
    err_clear();
}

/* A version-1 database written by hand (the schema as it was shipped), with data, then opened. */
TEST(db_migrate_v1) {
    char path[512];
    tpath(path, sizeof path, "v1.db");
    unlink(path);
    sqlite3 *h = NULL;
    T_EQ_INT(sqlite3_open(path, &h), SQLITE_OK);
    static const char v1[] =
        "CREATE TABLE runs(id INTEGER PRIMARY KEY, job_key TEXT UNIQUE,"
        " kind TEXT NOT NULL CHECK(kind IN ('train','finetune')), parent_run INTEGER REFERENCES runs(id),"
        " rule TEXT NOT NULL, rule_opts TEXT NOT NULL DEFAULT '', model TEXT NOT NULL, dataset TEXT NOT NULL,"
        " data_seed INTEGER, init_seed INTEGER, rule_seed INTEGER, config_json TEXT, config_hash TEXT,"
        " status TEXT NOT NULL CHECK(status IN ('running','finished','failed','interrupted')),"
        " heartbeat TEXT, host TEXT, git_rev TEXT, started TEXT, finished TEXT,"
        " ckpt_path TEXT, ckpt_hash TEXT, test_acc REAL, val_acc REAL, error TEXT);"
        "CREATE TABLE epochs(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,"
        " lr REAL, train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, seconds REAL, samples_per_s REAL,"
        " PRIMARY KEY(run_id, epoch));"
        "CREATE TABLE alignment(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
        " epoch INTEGER NOT NULL, layer TEXT NOT NULL, angle_bw REAL, norm_ratio REAL, grad_angle REAL,"
        " PRIMARY KEY(run_id, epoch, layer));"
        "CREATE TABLE evals(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
        " target_ckpt TEXT, target_hash TEXT, dataset TEXT, split TEXT NOT NULL DEFAULT 'test',"
        " attack TEXT NOT NULL, norm TEXT NOT NULL, eps_text TEXT NOT NULL, eps REAL NOT NULL,"
        " alpha_text TEXT NOT NULL DEFAULT '', alpha REAL, steps INTEGER, restarts INTEGER, random_start INTEGER,"
        " targeted INTEGER NOT NULL DEFAULT 0, target INTEGER, grad_source TEXT NOT NULL, transfer_ckpt TEXT,"
        " seed INTEGER, batch INTEGER, n INTEGER NOT NULL, n_clean_ok INTEGER NOT NULL, n_robust_ok INTEGER NOT NULL,"
        " n_flipped INTEGER, n_zero_grad INTEGER, mean_linf REAL, mean_l2 REAL, mean_loss REAL, seconds REAL,"
        " created TEXT);"
        "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
        " eval_id INTEGER REFERENCES evals(id), kind TEXT NOT NULL CHECK(kind IN ('checkpoint','grid','figure','report')),"
        " path TEXT NOT NULL, hash TEXT, created TEXT);"
        "CREATE INDEX evals_run ON evals(run_id);"
        "CREATE VIEW eval_acc AS SELECT id, CASE WHEN n>0 THEN 1.0*n_robust_ok/n END AS robust_acc FROM evals;"
        "INSERT INTO runs(id, job_key, kind, rule, model, dataset, status, ckpt_path, test_acc)"
        " VALUES(1, 'a', 'train', 'bp', 'mlp', 'synthetic', 'finished', 'bp.ckpt', 0.9),"
        "       (2, 'b', 'finetune', 'usf', 'mlp', 'synthetic', 'finished', 'usf.ckpt', 0.8);"
        "INSERT INTO epochs(run_id, epoch, train_acc) VALUES(1, 1, 0.5), (1, 2, 0.7);"
        "INSERT INTO evals(run_id, attack, norm, eps_text, eps, grad_source, transfer_ckpt, n, n_clean_ok, n_robust_ok)"
        " VALUES(2, 'pgd', 'linf', '8/255', 0.0313725, 'transfer', 'bp.ckpt', 100, 80, 30),"
        "       (2, 'fgsm', 'linf', '0.1', 0.1, 'true', NULL, 100, 80, 20);"
        "INSERT INTO artifacts(run_id, kind, path, hash) VALUES(1, 'checkpoint', 'bp.ckpt', 'old'),"
        " (1, 'checkpoint', 'bp.ckpt', 'new'), (2, 'checkpoint', 'usf.ckpt', 'x');"
        "PRAGMA user_version=1;";
    char *e = NULL;
    T_EQ_INT(sqlite3_exec(h, v1, NULL, NULL, &e), SQLITE_OK);
    if (e) { fprintf(stderr, "    %s\n", e); sqlite3_free(e); }
    sqlite3_close(h);
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) { fprintf(stderr, "    %s\n", err_msg()); return; }
    T_EQ_INT(db_schema_version(db), DB_SCHEMA_VERSION);
    T_EQ_INT(db_count(db, "runs"), 2);
    T_EQ_INT(db_count(db, "epochs"), 2);
    T_EQ_INT(db_count(db, "evals"), 2);
    T_EQ_INT(db_count(db, "artifacts"), 2); /* the duplicate (kind, path) collapsed to the newest */
    db_close(db);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM artifacts WHERE path = 'bp.ckpt' AND hash = 'new'"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'eval_acc'"), 0);
    T_EQ_INT(t_sql_long(path, "SELECT transfer_run FROM evals WHERE grad_source = 'transfer'"), 1); /* linked by path */
    T_EQ_INT(t_sql_long(path, "SELECT eot FROM evals WHERE attack = 'fgsm'"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM eval_view WHERE source_label = 'transfer:bp-pretrain' AND attack_label = 'pgd'"), 1); /* steps unknown in v1 */
    T_EQ_INT(t_sql_long(path, "SELECT round(1000 * attack_success_rate) FROM eval_view WHERE attack = 'fgsm'"), 750);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM eval_view WHERE source_label = 'transfer:bp-pretrain'"), 1);
    /* the migrated database takes v2 writes: an eval with a job key, twice */
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    AttackParams p = atk(ATK_PGD, GRAD_TRUE, "8/255", 8 / 255.0);
    EvalCounts c = counts(100, 80, 10);
    DbEval de = {.job_key = "k", .run_id = 2};
    T_ASSERT(db_eval_record(db, &de, &p, &c, "", NULL) == 0);
    T_ASSERT(db_eval_record(db, &de, &p, &c, "", NULL) == 0);
    T_EQ_INT(db_count(db, "evals"), 3);
    db_close(db);
}

TEST(db_run_lifecycle) {
    char path[512];
    tpath(path, sizeof path, "life.db");
    unlink(path);
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    DbRun r = {.job_key = "job1", .kind = "train", .rule = "fa", .model = "mlp", .dataset = "synthetic",
               .config_json = "{\"a\":1}", .blas_threads = 2};
    int64_t id = 0, id2 = 0;
    T_ASSERT(db_run_begin(db, &r, &id) == 0);
    T_ASSERT(id > 0);
    T_EQ_INT(db_job_done(db, "job1"), 0);
    EpochStats st;
    memset(&st, 0, sizeof st);
    st.epoch = 1;
    st.train_acc = 0.5;
    st.val_acc = NAN; /* no validation set: stored as NULL */
    st.nalign = 1;
    snprintf(st.align[0].name, sizeof st.align[0].name, "fc1");
    st.align[0].angle_bw = 45;
    T_ASSERT(db_run_epoch(db, id, &st) == 0);
    T_ASSERT(db_run_epoch(db, id, &st) == 0); /* the same epoch again replaces, never duplicates */
    T_ASSERT(db_run_heartbeat(db, id) == 0);
    T_EQ_INT(db_count(db, "epochs"), 1);
    T_EQ_INT(db_count(db, "alignment"), 1);
    T_ASSERT(db_run_end(db, id, "failed", "diverged", NULL, NULL, NAN) == 0);
    /* a rerun of the failed job replaces its row in place and clears its epochs */
    T_ASSERT(db_run_begin(db, &r, &id2) == 0);
    T_EQ_INT(id2, id);
    T_EQ_INT(db_count(db, "runs"), 1);
    T_EQ_INT(db_count(db, "epochs"), 0);
    /* with resume, an unfinished run keeps its epochs */
    T_ASSERT(db_run_epoch(db, id, &st) == 0);
    r.resume = 1;
    T_ASSERT(db_run_begin(db, &r, &id2) == 0);
    T_EQ_INT(db_count(db, "epochs"), 1);
    T_ASSERT(db_run_end(db, id, "finished", NULL, "m.ckpt", "abcd", 0.75) == 0);
    T_EQ_INT(db_job_done(db, "job1"), 1);
    T_ASSERT(db_run_begin(db, &r, &id2) < 0); /* finished: refused */
    T_CONTAINS(err_msg(), "already finished");
    err_clear();
    T_ASSERT(db_run_end(db, 999, "finished", NULL, NULL, NULL, 0.5) < 0);
    T_CONTAINS(err_msg(), "does not exist");
    err_clear();
    T_ASSERT(db_run_end(db, id, "done", NULL, NULL, NULL, 0.5) < 0);
    err_clear();
    /* a stale running run is reaped */
    DbRun r2 = {.kind = "train", .rule = "bp", .model = "mlp", .dataset = "synthetic"};
    T_ASSERT(db_run_begin(db, &r2, &id2) == 0);
    int n = -1;
    T_ASSERT(db_runs_reap(db, 3600, &n) == 0);
    T_EQ_INT(n, 0);
    T_ASSERT(db_runs_reap(db, -1, &n) == 0);
    T_EQ_INT(n, 1);
    db_close(db);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs WHERE status = 'interrupted'"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs WHERE id = 1 AND val_acc IS NULL AND round(test_acc * 100) = 75"
                            " AND blas_threads = 2 AND length(config_hash) = 16 AND host IS NOT NULL"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM artifacts WHERE kind = 'checkpoint' AND run_id = 1 AND hash = 'abcd'"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM alignment WHERE layer = 'fc1' AND angle_bw = 45"), 1);
}

TEST(db_eval_upsert) {
    char path[512];
    tpath(path, sizeof path, "fx-upsert.db");
    fixture(path, 1);
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    T_EQ_INT(db_count(db, "evals"), 20);
    T_EQ_INT(db_job_done(db, "ft-usf-2/e0"), 1);
    T_EQ_INT(db_job_done(db, "ft-usf-2"), 1);
    T_EQ_INT(db_job_done(db, "nope"), 0);
    /* the same key again with other counts: one row, same id, new values */
    AttackParams p = atk(ATK_FGSM, GRAD_TRUE, "0.1", 0.1);
    EvalCounts c = counts(100, 87, 11);
    DbEval de = {.job_key = "ft-usf-2/e0", .target_hash = "h-usf-2"};
    int64_t id1 = 0, id2 = 0;
    T_ASSERT(db_eval_record(db, &de, &p, &c, "zero-grad", &id1) == 0);
    c.n_robust_ok = 12;
    T_ASSERT(db_eval_record(db, &de, &p, &c, "zero-grad", &id2) == 0);
    T_EQ_INT(id1, id2);
    T_EQ_INT(db_count(db, "evals"), 20);
    /* bad counts are refused */
    c.n_robust_ok = 99;
    T_ASSERT(db_eval_record(db, &de, &p, &c, "", NULL) < 0);
    err_clear();
    T_ASSERT(db_artifact(db, 0, id1, "grid", "/nonexistent/grid.png", NULL) < 0); /* hash of a missing file */
    err_clear();
    T_ASSERT(db_artifact(db, 0, id1, "weird", "x", "h") < 0);
    err_clear();
    db_close(db);
    T_EQ_INT(t_sql_long(path, "SELECT n_robust_ok FROM evals WHERE job_key = 'ft-usf-2/e0'"), 12);
    /* runs were found from the checkpoint hashes, the transfer surrogate from its hash */
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM evals WHERE run_id IS NULL"), 0);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM eval_view WHERE grad_source = 'transfer' AND source_label = 'transfer:bp-finetune'"), 4);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM eval_view WHERE attack = 'square' AND source_label = 'black-box'"), 4);
    T_EQ_INT(t_sql_long(path, "SELECT round(10000 * attack_success_rate) FROM eval_view WHERE job_key = 'ft-bp-1/e0'"),
             5455); /* 1 - 40/88 */
}

/* Four processes write at once: shared job keys (every process tries them) and private ones. */
TEST(db_concurrent_writers) {
    char path[512];
    tpath(path, sizeof path, "conc.db");
    unlink(path);
    enum { NPROC = 4, NSHARED = 15, NOWN = 15, NFREE = 4 };
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        fflush(stdout);
        fflush(stderr);
        pids[p] = fork();
        if (pids[p] != 0) continue;
        Db *db = NULL;
        if (db_open(path, &db) < 0) { fprintf(stderr, "child %d: %s\n", p, err_msg()); _exit(1); }
        int bad = 0;
        for (int i = 0; i < NSHARED + NOWN + NFREE && !bad; i++) {
            char key[64];
            const char *k = key;
            if (i < NSHARED) snprintf(key, sizeof key, "shared-%d", i);
            else if (i < NSHARED + NOWN) snprintf(key, sizeof key, "own-%d-%d", p, i);
            else k = NULL;
            if (k && db_job_done(db, k) == 1) continue;
            DbRun r = {.job_key = k, .kind = "train", .rule = "bp", .model = "mlp", .dataset = "synthetic", .data_seed = p};
            int64_t id;
            if (db_run_begin(db, &r, &id) < 0) {
                if (k && db_job_done(db, k) == 1) { err_clear(); continue; } /* another process finished it */
                bad = 1;
                break;
            }
            EpochStats st;
            memset(&st, 0, sizeof st);
            st.epoch = 1;
            st.nalign = 1;
            snprintf(st.align[0].name, sizeof st.align[0].name, "fc");
            bad |= db_run_epoch(db, id, &st) < 0;
            bad |= db_run_end(db, id, "finished", NULL, NULL, NULL, 0.5) < 0;
            char ekey[80];
            snprintf(ekey, sizeof ekey, "%s-eval", k ? k : "free");
            AttackParams ap = atk(ATK_FGSM, GRAD_TRUE, "0.1", 0.1);
            EvalCounts c = counts(10, 5, 2);
            DbEval de = {.job_key = k ? ekey : NULL, .run_id = id};
            bad |= db_eval_record(db, &de, &ap, &c, "", NULL) < 0;
        }
        if (bad) fprintf(stderr, "child %d: %s\n", p, err_msg());
        db_close(db);
        _exit(bad);
    }
    for (int p = 0; p < NPROC; p++) {
        int st = 0;
        waitpid(pids[p], &st, 0);
        T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    long runs = NSHARED + NPROC * NOWN + NPROC * NFREE;
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs"), runs);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(DISTINCT job_key) FROM runs"), NSHARED + NPROC * NOWN);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs WHERE status <> 'finished'"), 0);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM epochs"), runs);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM alignment"), runs);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM evals WHERE job_key LIKE 'shared-%'"), NSHARED);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM evals WHERE job_key LIKE 'own-%'"), NPROC * NOWN);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM evals WHERE job_key IS NULL"), NPROC * NFREE);
}

/* ---- query_ ---- */

static void report_str(const char *path, const char *report, int fmt, char **out) {
    Db *db = NULL;
    *out = NULL;
    T_ASSERT(db_open_existing(path, &db) == 0);
    if (!db) return;
    size_t n = 0;
    FILE *f = open_memstream(out, &n);
    int rc = query_report(db, report, fmt, f);
    fclose(f);
    T_ASSERT_MSG(rc == 0, "report %s: %s", report, err_msg());
    db_close(db);
}

static int python_json_ok(const char *text) {
    if (test_run("python3 -c 'pass'", NULL, 0) != 0) return 1; /* no python: nothing to check with */
    char p[512], cmd[700];
    tpath(p, sizeof p, "check.json");
    FILE *f = fopen(p, "w");
    if (!f) return 0;
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' '%s'", p);
    return test_run(cmd, NULL, 0) == 0;
}

TEST(query_table) {
    char path[512];
    tpath(path, sizeof path, "fx-table.db");
    fixture(path, 1);
    char *s = NULL;
    report_str(path, "table", QF_TEXT, &s);
    if (s) {
        T_CONTAINS(s, "== fashion-mnist / lenet5 / finetune: robust accuracy % under fgsm (true gradient) ==");
        T_CONTAINS(s, "89.0 ± 1.4"); /* bp clean */
        T_CONTAINS(s, "86.5 ± 0.7"); /* usf clean */
        T_CONTAINS(s, "45.0 ± 7.1");
        T_CONTAINS(s, "62.0 ± 2.8");
        T_CONTAINS(s, "82.0 ± 2.8"); /* usf under its feedback gradient */
        T_CONTAINS(s, "76.0 ± 1.4"); /* usf under transfer from bp */
        T_CONTAINS(s, "(transfer:bp-finetune gradient)");
        T_CONTAINS(s, "eps=0.1");
        /* the pre-training run is the baseline row of its fine-tunes' table, first */
        T_CONTAINS(s, "bp (pretrained)      1    -        90.0           -           -");
        T_ASSERT(strstr(s, "bp (pretrained)") < strstr(s, "\nbp  "));
        T_ASSERT(strstr(s, "/ train: clean accuracy %") == NULL);
        T_ASSERT(strstr(s, "eps=0 ") != NULL);
        /* rows in rule order: bp before usf */
        T_ASSERT(strstr(s, "bp ") && strstr(s, "usf ") && strstr(s, "bp ") < strstr(s, "usf "));
    }
    free(s);
    report_str(path, "table", QF_MD, &s);
    if (s) {
        T_CONTAINS(s, "| rule | seeds | n | clean | eps=0 | eps=0.1 |");
        T_CONTAINS(s, "| usf | 2 | 100 | 86.5 ± 0.7 | 86.5 ± 0.7 | 62.0 ± 2.8 |");
        T_CONTAINS(s, "| bp (pretrained) | 1 | - | 90.0 | - | - |"); /* one seed: no sd; not attacked */
    }
    free(s);
    report_str(path, "table", QF_CSV, &s);
    if (s) {
        T_CONTAINS(s, "dataset,model,kind,rule,runs,clean,clean_sd,fgsm|true|0,fgsm|true|0_sd,fgsm|true|0.1,fgsm|true|0.1_sd");
        T_CONTAINS(s, "fashion-mnist,lenet5,finetune,bp,2,89.000,1.414,89.000,1.414,45.000,7.071");
        T_CONTAINS(s, "fashion-mnist,lenet5,finetune,bp (pretrained),1,90.000,,"); /* sd empty for one seed */
    }
    free(s);
    report_str(path, "table", QF_JSON, &s);
    if (s) {
        T_CONTAINS(s, "\"rule\": \"usf\"");
        T_CONTAINS(s, "\"fgsm|true|0.1\": 62.000, \"fgsm|true|0.1_sd\": 2.828");
        T_CONTAINS(s, "\"square|black-box|0.1\": 67.000");
        T_CONTAINS(s, "\"clean_sd\": null");
        T_ASSERT_MSG(python_json_ok(s), "table json does not parse: %.300s", s);
    }
    free(s);
}

TEST(query_curve_masking_alignment_runs) {
    char path[512];
    tpath(path, sizeof path, "fx-reports.db");
    fixture(path, 1);
    char *s = NULL;
    static const char *const reports[] = {"curve", "masking", "alignment", "runs"};
    for (size_t r = 0; r < ARRAY_LEN(reports); r++)
        for (int f = 0; f < QF_COUNT; f++) {
            report_str(path, reports[r], f, &s);
            if (!s) continue;
            T_ASSERT_MSG(strlen(s) > 40, "%s format %d: almost empty: %s", reports[r], f, s);
            if (f == QF_JSON) T_ASSERT_MSG(python_json_ok(s), "%s json does not parse: %.300s", reports[r], s);
            free(s);
        }
    report_str(path, "curve", QF_CSV, &s);
    if (s) {
        T_CONTAINS(s, "dataset,model,kind,rule,attack,source,eps_text,eps,n,robust_acc,robust_acc_sd,attack_success,attack_success_sd");
        /* bp true eps 0.1: robust 40, 50; success 1-40/88 = 54.545, 1-50/90 = 44.444 -> mean 49.495 sd 7.142 */
        T_CONTAINS(s, "fashion-mnist,lenet5,finetune,bp,fgsm,true,0.1,0.1,2,45.000,7.071,49.495,7.142");
    }
    free(s);
    report_str(path, "masking", QF_TEXT, &s);
    if (s) {
        T_CONTAINS(s, "true");
        T_CONTAINS(s, "feedback");
        T_CONTAINS(s, "transfer:bp-finetune");
        T_CONTAINS(s, "square");
        T_CONTAINS(s, "feedback: feedback>true");
    }
    free(s);
    report_str(path, "masking", QF_MD, &s);
    if (s) T_CONTAINS(s, "| usf | fgsm | 0.1 | 62.0 ± 2.8 | 82.0 ± 2.8 | 76.0 ± 1.4 | 67.0 ± 1.4 | feedback: feedback>true |");
    free(s);
    report_str(path, "alignment", QF_CSV, &s);
    if (s) {
        T_CONTAINS(s, "dataset,model,kind,rule,layer,epoch,runs,angle_bw_deg,angle_bw_deg_sd,norm_ratio,norm_ratio_sd,grad_angle_deg,grad_angle_deg_sd");
        /* usf conv1 epoch 2: angle_bw 37, 38 -> 37.5 ± 0.707; grad 22 both */
        T_CONTAINS(s, "fashion-mnist,lenet5,finetune,usf,conv1,2,2,37.5000,0.7071,0.900000,0.000000,22.0000,0.0000");
    }
    free(s);
    report_str(path, "alignment", QF_TEXT, &s);
    if (s) T_ASSERT(strstr(s, "conv1") && strstr(s, "fc1") && strstr(s, "conv1") < strstr(s, "fc1"));
    free(s);
    report_str(path, "runs", QF_TEXT, &s);
    if (s) {
        T_CONTAINS(s, "ft-usf-2");
        T_CONTAINS(s, "finished");
        T_CONTAINS(s, "87.00");
    }
    free(s);
    report_str(path, "runs", QF_JSON, &s);
    if (s) T_CONTAINS(s, "\"id\": 5, \"job_key\": \"ft-usf-2\", \"kind\": \"finetune\", \"parent\": 1");
    free(s);
    /* an empty database: headers only, a note on stderr, no failure */
    char empty[512];
    tpath(empty, sizeof empty, "empty.db");
    Db *db = NULL;
    T_ASSERT(db_open(empty, &db) == 0);
    db_close(db);
    report_str(empty, "table", QF_JSON, &s);
    if (s) T_CONTAINS(s, "[]");
    free(s);
}

TEST(query_sql_and_errors) {
    char path[512];
    tpath(path, sizeof path, "fx-sql.db");
    fixture(path, 0);
    Db *db = NULL;
    T_ASSERT(db_open_existing(path, &db) == 0);
    if (!db) return;
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    T_ASSERT(query_sql(db, "SELECT rule, COUNT(*) AS n, 'a,b' AS t FROM runs GROUP BY rule ORDER BY rule", QF_CSV, f) == 0);
    T_ASSERT(query_sql(db, "SELECT rule, COUNT(*) AS n FROM runs GROUP BY rule ORDER BY rule;", QF_JSON, f) == 0);
    fclose(f);
    T_CONTAINS(s, "rule,n,t\nbp,3,\"a,b\"\nusf,2,\"a,b\"\n");
    T_CONTAINS(s, "{\"rule\": \"bp\", \"n\": 3}");
    free(s);
    f = fopen("/dev/null", "w");
    T_ASSERT(query_sql(db, "DELETE FROM runs", QF_TEXT, f) < 0);
    T_CONTAINS(err_msg(), "read-only");
    err_clear();
    T_ASSERT(query_sql(db, "SELECT 1; SELECT 2", QF_TEXT, f) < 0);
    T_CONTAINS(err_msg(), "one statement");
    err_clear();
    T_ASSERT(query_sql(db, "SELEC nonsense", QF_TEXT, f) < 0);
    err_clear();
    T_ASSERT(query_report(db, "nope", QF_TEXT, f) < 0);
    T_CONTAINS(err_msg(), "table, curve, masking, alignment, runs");
    err_clear();
    int fmt;
    T_ASSERT(query_format_parse("xml", &fmt) < 0);
    err_clear();
    fclose(f);
    db_close(db);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs"), 5); /* the DELETE did not run */
}

/* The command-line faces: concord query / db / plot, run in a child process. */
TEST(query_cli) {
    char path[512];
    tpath(path, sizeof path, "fx-cli.db");
    fixture(path, 1);
    char *out, *err;
    char *a1[] = {"table", "--db", path, "--format", "md", NULL};
    T_EQ_INT(run_cmd(cmd_query, a1, &out, &err), 0);
    T_CONTAINS(out, "45.0 ± 7.1");
    free(out); free(err);
    char *a2[] = {"bogus", "--db", path, NULL};
    T_EQ_INT(run_cmd(cmd_query, a2, &out, &err), 1);
    T_CONTAINS(err, "concord: concord query: unknown report 'bogus'; use one of: table, curve, masking, alignment, runs, hash-table, worst, verdict");
    T_ASSERT(strchr(err, '\n') == err + strlen(err) - 1); /* one line */
    T_EQ_INT(strlen(out), 0);
    free(out); free(err);
    char *a3[] = {"--sql", "SELECT COUNT(*) AS n FROM evals", "--db", path, "--format", "csv", NULL};
    T_EQ_INT(run_cmd(cmd_query, a3, &out, &err), 0);
    T_CONTAINS(out, "n\n20\n");
    free(out); free(err);
    char *a4[] = {"runs", "--db", path, "--format", "yaml", NULL};
    T_EQ_INT(run_cmd(cmd_query, a4, &out, &err), 1);
    T_CONTAINS(err, "unknown format 'yaml'");
    free(out); free(err);
    char missing[512];
    tpath(missing, sizeof missing, "nope/missing.db");
    char *a5[] = {"runs", "--db", missing, NULL};
    T_EQ_INT(run_cmd(cmd_query, a5, &out, &err), 1);
    T_CONTAINS(err, "no such database");
    free(out); free(err);
    char *a6[] = {"--help", NULL};
    T_EQ_INT(run_cmd(cmd_query, a6, &out, &err), 0);
    T_CONTAINS(out, "masking");
    free(out); free(err);
    char *a7[] = {"info", "--db", path, NULL};
    T_EQ_INT(run_cmd(cmd_db, a7, &out, &err), 0);
    T_CONTAINS(out, "schema version  5");
    T_CONTAINS(out, "evals           20 rows");
    T_CONTAINS(out, "finished 5");
    free(out); free(err);
    char fresh[512];
    tpath(fresh, sizeof fresh, "cli/fresh.db");
    char *a8[] = {"init", "--db", fresh, NULL};
    T_EQ_INT(run_cmd(cmd_db, a8, &out, &err), 0);
    T_CONTAINS(out, "schema version 5");
    free(out); free(err);
    char *a9[] = {"frobnicate", NULL};
    T_EQ_INT(run_cmd(cmd_db, a9, &out, &err), 1);
    T_CONTAINS(err, "init, info or check");
    free(out); free(err);
}

/* ---- plot_ ---- */

static unsigned be32(const unsigned char *p) { return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3]; }

/* Checks the PNG signature and IHDR; records a failure and returns 0 when the file is not a PNG. */
static int check_png(const char *path, unsigned *w, unsigned *h) {
    size_t n = 0;
    char *b = t_slurp(path, &n);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int ok = b && n > 33 && memcmp(b, sig, 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0;
    T_ASSERT_MSG(ok, "%s: not a PNG (size %zu)", path, n);
    if (ok) {
        *w = be32((const unsigned char *)b + 16);
        *h = be32((const unsigned char *)b + 20);
    }
    free(b);
    return ok;
}
static void check_pdf(const char *path) {
    size_t n = 0;
    char *b = t_slurp(path, &n);
    T_ASSERT_MSG(b && n > 1000 && memcmp(b, "%PDF-", 5) == 0, "%s: not a PDF (size %zu)", path, n);
    free(b);
}
/* The size the script asked pngcairo for. */
static void gp_png_size(const char *gp, unsigned *w, unsigned *h) {
    char *b = t_slurp(gp, NULL);
    *w = *h = 0;
    const char *s = b ? strstr(b, "pngcairo noenhanced size ") : NULL;
    T_ASSERT_MSG(s != NULL, "%s: no pngcairo size", gp);
    if (s) T_EQ_INT(sscanf(s, "pngcairo noenhanced size %u,%u", w, h), 2);
    free(b);
}

static void check_figure(const char *dir, const char *name) {
    char png[700], pdf[700], gp[700];
    snprintf(png, sizeof png, "%s/%s.png", dir, name);
    snprintf(pdf, sizeof pdf, "%s/%s.pdf", dir, name);
    snprintf(gp, sizeof gp, "%s/%s.gp", dir, name);
    unsigned w = 0, h = 0, gw = 0, gh = 0;
    if (!check_png(png, &w, &h)) return;
    gp_png_size(gp, &gw, &gh);
    T_EQ_INT(w, gw);
    T_EQ_INT(h, gh);
    T_ASSERT(w >= 400 && h >= 300);
    check_pdf(pdf);
}

static void canary_png(void) {
    unsigned w, h;
    char p[512];
    tpath(p, sizeof p, "not-a-png.png");
    FILE *f = fopen(p, "w");
    if (f) { fputs("%PDF-1.5 this is not a png at all, padded to more than 33 bytes", f); fclose(f); }
    check_png(p, &w, &h);
}

TEST(plot_figures) {
    if (test_run("command -v gnuplot", NULL, 0) != 0) {
        T_ASSERT_MSG(0, "gnuplot is not installed; run scripts/deps.sh build");
        return;
    }
    T_ASSERT_MSG(test_expect_failure(canary_png), "canary: the PNG checker accepted a non-PNG file");
    char path[512], dir[512];
    tpath(path, sizeof path, "fx-plot.db");
    tpath(dir, sizeof dir, "figs/out");
    fixture(path, 1);
    Db *db = NULL;
    T_ASSERT(db_open_existing(path, &db) == 0);
    if (!db) return;
    PlotOpts o = {dir, NULL, 1};
    int n = 0;
    long arts = db_count(db, "artifacts");
    int rc = plot_all(db, &o, &n);
    T_ASSERT_MSG(rc == 0, "plot_all: %s", err_msg());
    /* one (dataset family, model) group: robust_eps, training, alignment (usf; BP is not drawn); the one
     * transfer surrogate is a table in the report, not a heatmap; no per-example outcomes: no verdict */
    T_EQ_INT(n, 3);
    static const char *const figs[] = {"robust_eps", "training", "alignment"};
    for (size_t i = 0; i < ARRAY_LEN(figs); i++) check_figure(dir, figs[i]);
    T_EQ_INT(db_count(db, "artifacts"), arts); /* plotting only reads */
    /* the robust_eps script: 4 panels (fgsm true, feedback, transfer:bp; square) and the legend panel in 2 rows of 3,
     * a fixed style per rule; evaluations without per-example outcomes have no interval (NaN NaN) */
    char gp[700];
    snprintf(gp, sizeof gp, "%s/robust_eps.gp", dir);
    char *b = t_slurp(gp, NULL);
    if (b) {
        T_CONTAINS(b, "set multiplot layout 2,3");
        T_CONTAINS(b, "set linetype 1 lc rgb \"#000000\" dt 1");
        T_CONTAINS(b, "set linetype 4 lc rgb \"#009E73\" dt 4");
        T_CONTAINS(b, "$d1 << EOD");
        T_CONTAINS(b, "0.1 45 NaN NaN");
        T_CONTAINS(b, "title \"fgsm (transfer:bp-finetune)\"");
        T_CONTAINS(b, "using 1:2 with linespoints lt 4 title \"usf\"");
        T_CONTAINS(b, "NaN with linespoints lt 4 title \"usf\""); /* the legend panel */
        T_ASSERT(strstr(b, "errorlines") == NULL);
        T_ASSERT(strstr(b, "± sd") == NULL);
    }
    free(b);
    /* the script alone re-renders the figure (no database): remove the images, run gnuplot in dir */
    char cmd[1400], png[700], out[2048];
    snprintf(png, sizeof png, "%s/robust_eps.png", dir);
    unlink(png);
    snprintf(cmd, sizeof cmd, "%s/robust_eps.pdf", dir);
    unlink(cmd);
    char moved[700];
    snprintf(moved, sizeof moved, "%s.moved", path);
    T_EQ_INT(rename(path, moved), 0); /* prove the database is not needed */
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot robust_eps.gp", dir);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    check_figure(dir, "robust_eps");
    T_EQ_INT(rename(moved, path), 0);
    /* no leftovers from temp-then-rename */
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c tmp", dir);
    test_run(cmd, out, sizeof out);
    T_EQ_INT(atoi(out), 0);
    db_close(db);
}

TEST(plot_multi_group_and_skips) {
    if (test_run("command -v gnuplot", NULL, 0) != 0) { T_ASSERT_MSG(0, "gnuplot is not installed"); return; }
    char path[512], dir[512];
    tpath(path, sizeof path, "fx-plot2.db");
    tpath(dir, sizeof dir, "figs2");
    fixture(path, 0); /* no transfer evals: the transfer matrix is skipped */
    Db *db = NULL;
    T_ASSERT(db_open_existing(path, &db) == 0);
    if (!db) return;
    /* a second (dataset, model, kind) group: a cifar10 run with epochs */
    DbRun r = {.kind = "train", .rule = "frsf", .model = "resnet20", .dataset = "cifar10"};
    int64_t id = 0;
    T_ASSERT(db_run_begin(db, &r, &id) == 0);
    EpochStats st;
    memset(&st, 0, sizeof st);
    st.epoch = 1;
    st.train_acc = 0.3;
    st.val_acc = 0.25;
    T_ASSERT(db_run_epoch(db, id, &st) == 0);
    PlotOpts o = {dir, NULL, 1};
    int n = 0;
    T_ASSERT(plot_all(db, &o, &n) == 0);
    T_EQ_INT(n, 4); /* robust_eps, training x 2 groups, alignment */
    /* two groups: every figure is named by its group, also those only one group has (one scheme per call) */
    check_figure(dir, "training-cifar10_resnet20");
    check_figure(dir, "training-fashion-mnist_lenet5");
    check_figure(dir, "robust_eps-fashion-mnist_lenet5");
    check_figure(dir, "alignment-fashion-mnist_lenet5");
    char p[700];
    snprintf(p, sizeof p, "%s/transfer-fashion-mnist_lenet5.png", dir);
    T_ASSERT(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/robust_eps.png", dir);
    T_ASSERT(access(p, F_OK) != 0);
    db_close(db);
    /* an empty database draws nothing and succeeds */
    char empty[512];
    tpath(empty, sizeof empty, "empty-plot.db");
    T_ASSERT(db_open(empty, &db) == 0);
    T_ASSERT(plot_all(db, &o, &n) == 0);
    T_EQ_INT(n, 0);
    db_close(db);
}

TEST(plot_gnuplot_missing) {
    char path[512], dir[512];
    tpath(path, sizeof path, "fx-nognuplot.db");
    tpath(dir, sizeof dir, "figs-none");
    fixture(path, 0);
    Db *db = NULL;
    T_ASSERT(db_open_existing(path, &db) == 0);
    if (!db) return;
    PlotOpts o = {dir, "/nonexistent/bin/gnuplot", 1};
    T_ASSERT(plot_all(db, &o, NULL) < 0);
    T_CONTAINS(err_msg(), "gnuplot not found");
    T_CONTAINS(err_msg(), "install gnuplot-nox (scripts/deps.sh does)");
    err_clear();
    /* PATH without gnuplot */
    char emptydir[512];
    tpath(emptydir, sizeof emptydir, "emptybin");
    mkdir(emptydir, 0777);
    char *saved = getenv("PATH") ? xstrdup(getenv("PATH")) : NULL;
    setenv("PATH", emptydir, 1);
    o.gnuplot = NULL;
    T_ASSERT(plot_all(db, &o, NULL) < 0);
    T_CONTAINS(err_msg(), "gnuplot not found; install gnuplot-nox (scripts/deps.sh does)");
    err_clear();
    if (saved) { setenv("PATH", saved, 1); free(saved); }
    T_ASSERT(access(dir, F_OK) != 0); /* nothing was written */
    db_close(db);
    /* through the command: one line, non-zero exit */
    char *out, *err;
    char *a[] = {"--db", path, "--out", dir, "--gnuplot", "/nonexistent/gnuplot", NULL};
    T_EQ_INT(run_cmd(cmd_plot, a, &out, &err), 1);
    T_CONTAINS(err, "concord: gnuplot not found at /nonexistent/gnuplot; install gnuplot-nox (scripts/deps.sh does)\n");
    free(out); free(err);
}

TEST(plot_report_md) {
    if (test_run("command -v gnuplot", NULL, 0) != 0) { T_ASSERT_MSG(0, "gnuplot is not installed"); return; }
    char path[512], dir[512], rep[512];
    tpath(path, sizeof path, "fx-report.db");
    tpath(dir, sizeof dir, "rep/figures");
    tpath(rep, sizeof rep, "rep/report.md");
    fixture(path, 1);
    char *out, *err;
    char *a[] = {"--db", path, "--out", dir, "--report", rep, "--quiet", NULL};
    char before[17], after[17];
    CHECK(file_sha_hex(path, before) == 0);
    T_EQ_INT(run_cmd(cmd_plot, a, &out, &err), 0);
    CHECK(file_sha_hex(path, after) == 0);
    T_ASSERT_MSG(str_eq(before, after), "concord plot changed the database file");
    T_CONTAINS(out, "3 figures in");
    T_CONTAINS(out, "report: ");
    free(out); free(err);
    char *b = t_slurp(rep, NULL);
    T_ASSERT(b != NULL);
    if (b) {
        T_CONTAINS(b, "## Clean and robust accuracy");
        T_CONTAINS(b, "| bp | 2 | 100 | 89.0 ± 1.4 | 89.0 ± 1.4 | 45.0 ± 7.1 |");
        T_CONTAINS(b, "## Gradient masking");
        T_CONTAINS(b, "| usf | fgsm | 0.1 | 62.0 ± 2.8 | 82.0 ± 2.8 | 76.0 ± 1.4 | 67.0 ± 1.4 | feedback: feedback>true |");
        T_CONTAINS(b, "| finetune | finished | 4 |");
        T_CONTAINS(b, "## Transfer attacks"); /* one surrogate: a table, not a heatmap */
        T_CONTAINS(b, "| usf | 76.0 ± 1.4 |");
        T_CONTAINS(b, "![robust_eps.png](figures/robust_eps.png)"); /* relative to the report */
    }
    free(b);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM artifacts WHERE kind = 'report'"), 0);
}

/* ---- the hashing task: v2 -> v3 migration, hash-table, report, figure ---- */

/* A version-2 database by hand: the v2 tables (views reduced to what v2 -> v3 replaces), a hashing run
 * (model_opts head=hash, its mAP in test_acc), a classifier run and a classification eval. */
TEST(db_migrate_v2_v3) {
    char path[512];
    tpath(path, sizeof path, "v2.db");
    unlink(path);
    sqlite3 *h = NULL;
    T_EQ_INT(sqlite3_open(path, &h), SQLITE_OK);
    static const char v2[] =
        "CREATE TABLE runs(id INTEGER PRIMARY KEY, job_key TEXT UNIQUE,"
        " kind TEXT NOT NULL CHECK(kind IN ('train','finetune')), parent_run INTEGER REFERENCES runs(id),"
        " rule TEXT NOT NULL, rule_opts TEXT NOT NULL DEFAULT '', model TEXT NOT NULL, dataset TEXT NOT NULL,"
        " data_seed INTEGER, init_seed INTEGER, rule_seed INTEGER, config_json TEXT, config_hash TEXT,"
        " status TEXT NOT NULL CHECK(status IN ('running','finished','failed','interrupted')),"
        " heartbeat TEXT, host TEXT, git_rev TEXT, started TEXT, finished TEXT,"
        " ckpt_path TEXT, ckpt_hash TEXT, test_acc REAL, val_acc REAL, error TEXT,"
        " model_opts TEXT NOT NULL DEFAULT '', blas_core TEXT, blas_threads INTEGER);"
        "CREATE TABLE epochs(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,"
        " lr REAL, train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, seconds REAL, samples_per_s REAL,"
        " PRIMARY KEY(run_id, epoch));"
        "CREATE TABLE alignment(run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
        " epoch INTEGER NOT NULL, layer TEXT NOT NULL, angle_bw REAL, norm_ratio REAL, grad_angle REAL,"
        " PRIMARY KEY(run_id, epoch, layer));"
        "CREATE TABLE evals(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
        " target_ckpt TEXT, target_hash TEXT, dataset TEXT, split TEXT NOT NULL DEFAULT 'test',"
        " attack TEXT NOT NULL, norm TEXT NOT NULL, eps_text TEXT NOT NULL, eps REAL NOT NULL,"
        " alpha_text TEXT NOT NULL DEFAULT '', alpha REAL, steps INTEGER, restarts INTEGER, random_start INTEGER,"
        " targeted INTEGER NOT NULL DEFAULT 0, target INTEGER, grad_source TEXT NOT NULL, transfer_ckpt TEXT,"
        " seed INTEGER, batch INTEGER, n INTEGER NOT NULL, n_clean_ok INTEGER NOT NULL, n_robust_ok INTEGER NOT NULL,"
        " n_flipped INTEGER, n_zero_grad INTEGER, mean_linf REAL, mean_l2 REAL, mean_loss REAL, seconds REAL,"
        " created TEXT, job_key TEXT, eot INTEGER NOT NULL DEFAULT 1, queries INTEGER NOT NULL DEFAULT 0, p_init REAL,"
        " queries_max INTEGER, transfer_run INTEGER REFERENCES runs(id), transfer_hash TEXT,"
        " flags TEXT NOT NULL DEFAULT '', host TEXT, git_rev TEXT);"
        "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
        " eval_id INTEGER REFERENCES evals(id), kind TEXT NOT NULL CHECK(kind IN ('checkpoint','grid','figure','report')),"
        " path TEXT NOT NULL, hash TEXT, created TEXT);"
        "CREATE INDEX evals_run ON evals(run_id);"
        "CREATE UNIQUE INDEX evals_job_key ON evals(job_key);"
        "CREATE UNIQUE INDEX artifacts_kind_path ON artifacts(kind, path);"
        "CREATE VIEW eval_view AS SELECT e.id AS eval_id FROM evals e;"
        "CREATE VIEW run_view AS SELECT r.id FROM runs r;"
        "INSERT INTO runs(id, job_key, kind, rule, model, dataset, status, ckpt_path, ckpt_hash, test_acc, model_opts)"
        " VALUES(1, 'cls', 'train', 'bp', 'lenet5', 'fashion-mnist', 'finished', 'c.ckpt', 'hc', 0.9,"
        "  'width=1;hidden=256,256;dropout=0.5;head=softmax;in=1x28x28;classes=10'),"
        "       (2, 'hsh', 'finetune', 'usf', 'lenet5', 'fashion-mnist', 'finished', 'h.ckpt', 'hh', 0.61,"
        "  'width=1;hidden=256,256;dropout=0.5;head=hash;in=1x28x28;classes=32');"
        "INSERT INTO evals(run_id, job_key, attack, norm, eps_text, eps, steps, grad_source, n, n_clean_ok, n_robust_ok)"
        " VALUES(1, 'e1', 'pgd', 'linf', '8/255', 0.0313725, 10, 'true', 100, 80, 30);"
        "PRAGMA user_version=2;";
    char *e = NULL;
    T_EQ_INT(sqlite3_exec(h, v2, NULL, NULL, &e), SQLITE_OK);
    if (e) { fprintf(stderr, "    %s\n", e); sqlite3_free(e); }
    sqlite3_close(h);
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) { fprintf(stderr, "    %s\n", err_msg()); return; }
    T_EQ_INT(db_schema_version(db), DB_SCHEMA_VERSION); /* v2 -> v3 -> v4 */
    T_EQ_INT(db_count(db, "runs"), 2);
    T_EQ_INT(db_count(db, "evals"), 1);
    /* v4: every older row kept, with no per-example outcomes (NULL, which reports say) */
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM evals WHERE outcomes IS NULL AND job_key = 'e1' AND n_robust_ok = 30"), 1);
    /* a hashing eval on the hashing run, recorded twice under one key: one row, and the job is done */
    AttackParams p = atk(ATK_PGD, GRAD_TRUE, "8/255", 8 / 255.0);
    p.objective = OBJ_HASH;
    p.steps = 100;
    EvalCounts c = counts(50, 50, 40);
    HashCounts hc = {.bits = 32, .topk = 0, .n_db = 6900, .map_clean = 0.61, .map_adv = 0.42, .prec_clean = 0.7,
                     .prec_adv = 0.5, .tmap_clean = NAN, .tmap_adv = NAN, .mean_hamming = 7.5};
    DbEval de = {.job_key = "h/e", .target_ckpt = "h.ckpt", .target_hash = "hh", .hash = &hc};
    T_ASSERT(db_eval_record(db, &de, &p, &c, "", NULL) == 0);
    T_ASSERT(db_eval_record(db, &de, &p, &c, "", NULL) == 0);
    T_EQ_INT(db_count(db, "evals"), 2);
    T_EQ_INT(db_job_done(db, "h/e"), 1);
    /* a classification eval without scores is fine; hashing params without scores are refused */
    DbEval bad = {.job_key = "h/bad", .target_hash = "hh"};
    T_ASSERT(db_eval_record(db, &bad, &p, &c, "", NULL) < 0);
    T_CONTAINS(err_msg(), "caller bug");
    err_clear();
    T_EQ_INT(db_job_done(db, "h/bad"), 0);
    db_close(db);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs WHERE task = 'hash' AND id = 2"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM runs WHERE task = 'classify' AND id = 1"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT round(1000 * test_map) FROM run_view WHERE id = 2"), 610);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM run_view WHERE id = 1 AND test_map IS NULL"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT round(1000 * robust_acc) FROM eval_view WHERE job_key = 'e1'"), 300); /* v2 eval kept */
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM eval_view WHERE job_key = 'e1' AND task = 'classify' AND map_adv IS NULL"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM eval_view WHERE job_key = 'h/e' AND task = 'hash' AND robust_acc IS NULL"
                            " AND attack_label = 'hash-untargeted-pgd100' AND rule = 'usf' AND bits = 32"), 1);
    T_EQ_INT(t_sql_long(path, "SELECT round(1000 * map_adv) FROM evals WHERE job_key = 'h/e'"), 420);
    T_EQ_INT(t_sql_long(path, "SELECT round(100 * attack_success_rate) FROM eval_view WHERE job_key = 'h/e'"), 20);
    T_EQ_INT(t_sql_long(path, "SELECT COUNT(*) FROM evals WHERE job_key = 'h/e' AND tmap_adv IS NULL"), 1); /* NaN -> NULL */
    /* a new run with head=hash in its model options is a hashing run */
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    DbRun r = {.kind = "finetune", .rule = "bp", .model = "mlp", .dataset = "synthetic", .model_opts = "head=hash;classes=16"};
    int64_t id = 0;
    T_ASSERT(db_run_begin(db, &r, &id) == 0);
    db_close(db);
    char q[200];
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM runs WHERE id = %lld AND task = 'hash'", (long long)id);
    T_EQ_INT(t_sql_long(path, q), 1);
}

/* The hashing fixture: the classification fixture plus hashing fine-tunes bp and usf (two seeds, 32
 * bits) with run mAP bp 60, 62 / usf 58, 59 and attacked mAP (hash-untargeted, 100 steps):
 *   eps 8/255 true      bp 30, 34  usf 40, 42  -> 32.00 ± 2.83, 41.00 ± 1.41
 *   eps 8/255 feedback  bp 30, 34  usf 55, 57  -> 32.00 ± 2.83, 56.00 ± 1.41
 *   eps 0 true          bp 60, 62  usf 58, 59 */
static void hash_fixture(const char *path) {
    fixture(path, 1);
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    const char *rules[2] = {"bp", "usf"};
    const int map[2][2] = {{60, 62}, {58, 59}}, adv_t[2][2] = {{30, 34}, {40, 42}}, adv_f[2][2] = {{30, 34}, {55, 57}};
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < 2; s++) {
            char key[64], ckpt[64], hash[64];
            snprintf(key, sizeof key, "hash-%s-%d", rules[r], s + 1);
            snprintf(ckpt, sizeof ckpt, "hash-%s-%d.ckpt", rules[r], s + 1);
            snprintf(hash, sizeof hash, "hh-%s-%d", rules[r], s + 1);
            DbRun ft = {.job_key = key, .kind = "finetune", .rule = rules[r], .model = "lenet5", .dataset = "fashion-mnist",
                        .data_seed = s + 1, .model_opts = "width=1;head=hash;in=1x28x28;classes=32"};
            int64_t id = 0;
            T_ASSERT(db_run_begin(db, &ft, &id) == 0);
            EpochStats st;
            memset(&st, 0, sizeof st);
            st.epoch = 1;
            st.train_acc = NAN;
            st.val_acc = 0.5 + 0.01 * r;
            T_ASSERT(db_run_epoch(db, id, &st) == 0);
            T_ASSERT(db_run_end(db, id, "finished", NULL, ckpt, hash, map[r][s] / 100.0) == 0);
            struct { const char *eps_text; double eps; int src, adv; } ev[3] = {
                {"8/255", 8 / 255.0, GRAD_TRUE, adv_t[r][s]}, {"8/255", 8 / 255.0, GRAD_FEEDBACK, adv_f[r][s]},
                {"0", 0, GRAD_TRUE, map[r][s]}};
            for (int k = 0; k < 3; k++) {
                AttackParams p = atk(ATK_PGD, ev[k].src, ev[k].eps_text, ev[k].eps);
                p.objective = OBJ_HASH;
                p.steps = 100;
                EvalCounts c = counts(100, 100, 100 - k);
                HashCounts hc = {.bits = 32, .n_db = 69000, .map_clean = map[r][s] / 100.0, .map_adv = ev[k].adv / 100.0,
                                 .prec_clean = 0.7, .prec_adv = 0.5, .tmap_clean = NAN, .tmap_adv = NAN, .mean_hamming = 3};
                char ekey[96];
                snprintf(ekey, sizeof ekey, "%s/e%d", key, k);
                DbEval de = {.job_key = ekey, .target_ckpt = ckpt, .target_hash = hash, .dataset = "fashion-mnist",
                             .split = "query", .hash = &hc};
                T_ASSERT(db_eval_record(db, &de, &p, &c, "", NULL) == 0);
            }
        }
    if (test_failed_now()) fprintf(stderr, "    hash fixture: %s\n", err_msg());
    db_close(db);
}

TEST(query_hash_table) {
    char path[512];
    tpath(path, sizeof path, "fx-hash.db");
    hash_fixture(path);
    char *s = NULL;
    report_str(path, "hash-table", QF_TEXT, &s);
    if (s) {
        T_CONTAINS(s, "== fashion-mnist / lenet5 / finetune / 32 bits: mAP % under hash-untargeted-pgd100 (true gradient) ==");
        T_CONTAINS(s, "(feedback gradient)");
        T_CONTAINS(s, "61.00 ± 1.41"); /* bp clean mAP */
        T_CONTAINS(s, "58.50 ± 0.71"); /* usf clean mAP */
        T_CONTAINS(s, "32.00 ± 2.83");
        T_CONTAINS(s, "41.00 ± 1.41");
        T_CONTAINS(s, "56.00 ± 1.41");
        T_ASSERT(strstr(s, "89.0") == NULL); /* no classification rows */
    }
    free(s);
    report_str(path, "hash-table", QF_MD, &s);
    if (s) {
        T_CONTAINS(s, "| rule | seeds | n | clean | eps=0 | eps=8/255 |");
        T_CONTAINS(s, "| usf | 2 | 100 | 58.50 ± 0.71 | 58.50 ± 0.71 | 41.00 ± 1.41 |");
    }
    free(s);
    report_str(path, "hash-table", QF_CSV, &s);
    if (s) {
        T_CONTAINS(s, "dataset,model,kind,rule,runs,clean,clean_sd,hash-untargeted-pgd100|true|0,");
        T_CONTAINS(s, "fashion-mnist,lenet5,finetune / 32 bits,bp,2,61.0000,1.4142,61.0000,1.4142,32.0000,2.8284");
    }
    free(s);
    report_str(path, "hash-table", QF_JSON, &s);
    if (s) {
        T_CONTAINS(s, "\"hash-untargeted-pgd100|feedback|8/255\": 56.0000");
        T_ASSERT_MSG(python_json_ok(s), "hash-table json does not parse: %.300s", s);
    }
    free(s);
    /* the classification reports do not see the hashing runs or evals */
    report_str(path, "table", QF_TEXT, &s);
    if (s) { T_ASSERT(strstr(s, "bits") == NULL && strstr(s, "hash-untargeted") == NULL); }
    free(s);
    report_str(path, "curve", QF_CSV, &s);
    if (s) T_ASSERT(strstr(s, "hash-") == NULL);
    free(s);
    report_str(path, "masking", QF_CSV, &s);
    if (s) T_ASSERT(strstr(s, "hash-") == NULL);
    free(s);
    /* no hashing data: the header and a note, no failure */
    char plain[512];
    tpath(plain, sizeof plain, "fx-nohash.db");
    fixture(plain, 0);
    report_str(plain, "hash-table", QF_MD, &s);
    if (s) T_CONTAINS(s, "| dataset | model | kind | rule | runs | clean |");
    free(s);
    char *out, *err;
    char *a[] = {"hash-table", "--db", path, "--format", "md", NULL};
    T_EQ_INT(run_cmd(cmd_query, a, &out, &err), 0);
    T_CONTAINS(out, "| bp | 2 | 100 | 61.00 ± 1.41 |");
    free(out); free(err);
}

TEST(plot_hash_figure_and_report) {
    if (test_run("command -v gnuplot", NULL, 0) != 0) { T_ASSERT_MSG(0, "gnuplot is not installed"); return; }
    char path[512], dir[512], rep[512];
    tpath(path, sizeof path, "fx-hash-plot.db");
    tpath(dir, sizeof dir, "hrep/figures");
    tpath(rep, sizeof rep, "hrep/report.md");
    hash_fixture(path);
    char *out, *err;
    char *a[] = {"--db", path, "--out", dir, "--report", rep, "--quiet", NULL};
    char before[17], after[17];
    CHECK(file_sha_hex(path, before) == 0);
    T_EQ_INT(run_cmd(cmd_plot, a, &out, &err), 0);
    CHECK(file_sha_hex(path, after) == 0);
    T_ASSERT_MSG(str_eq(before, after), "concord plot changed the database file");
    /* robust_eps, alignment, training (classification and hashing fine-tunes as panels of one figure),
     * hash_map_eps; one transfer surrogate: a table */
    T_CONTAINS(out, "4 figures in");
    free(out); free(err);
    check_figure(dir, "hash_map_eps");
    check_figure(dir, "training");
    char gp[700];
    snprintf(gp, sizeof gp, "%s/hash_map_eps.gp", dir);
    char *b = t_slurp(gp, NULL);
    if (b) {
        T_CONTAINS(b, "title \"hash-untargeted-pgd100 (feedback), 32 bits\"");
        T_CONTAINS(b, " 56 54.5857864 57.4142136"); /* mean 56, sd 1.41 over two seeds: the band */
        T_CONTAINS(b, "using 1:2 with linespoints lt 4 title \"usf\"");
        T_CONTAINS(b, "set xtics (\"0\" 0, \"8/255\" 0.031372549)"); /* the grid as it was written */
        T_CONTAINS(b, "set ylabel \"mAP (%)\"");
    }
    free(b);
    b = t_slurp(rep, NULL);
    T_ASSERT(b != NULL);
    if (b) {
        T_CONTAINS(b, "## Hashing retrieval: mAP under attack");
        T_CONTAINS(b, "| usf | 2 | 100 | 58.50 ± 0.71 | 56.00 ± 1.41 |"); /* the feedback block: eps 8/255 only */
        T_CONTAINS(b, "| bp | 2 | 100 | 89.0 ± 1.4 | 89.0 ± 1.4 | 45.0 ± 7.1 |"); /* the classification table unchanged */
        T_CONTAINS(b, "![hash_map_eps.png](figures/hash_map_eps.png)");
    }
    free(b);
    /* without hashing data the report has no hashing section and the figure is skipped */
    char plain[512], rep2[512], dir2[512];
    tpath(plain, sizeof plain, "fx-hash-none.db");
    tpath(rep2, sizeof rep2, "hrep/plain.md");
    tpath(dir2, sizeof dir2, "hrep/plainfig");
    fixture(plain, 1);
    char *a2[] = {"--db", plain, "--out", dir2, "--report", rep2, "--quiet", NULL};
    T_EQ_INT(run_cmd(cmd_plot, a2, &out, &err), 0);
    T_CONTAINS(err, "no hashing evals");
    T_CONTAINS(err, "skipping hash_map_eps");
    free(out); free(err);
    b = t_slurp(rep2, NULL);
    if (b) T_ASSERT(strstr(b, "Hashing retrieval") == NULL);
    free(b);
}
