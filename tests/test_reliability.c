/* test_reliability.c -- the numbers survive a hostile machine (issue "trust the numbers after a crash"):
 * a diverged model is never called finished and cannot be attacked; commands that only read never
 * write, also on a read-only file; a command's records are all-or-nothing (a full disk, a kill); a
 * damaged database is refused before anything is written. Each case checks the exit status, the one-line
 * message, and the bytes or rows left behind. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/core.h"
#include "tests/test.h"

static void tp(char *out, size_t n, const char *name) { snprintf(out, n, "%s/rel-%s", test_tmpdir(), name); }

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[8192], out[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = test_run(cmd, out, sizeof out);
    if (rc != 0) fprintf(stderr, "    (%s: exit %d: %.300s)\n", cmd, rc, out);
    return rc;
}

/* a small trained LeNet-5 and a results database holding its run and two evaluations */
static void make_model_and_db(const char *ck, const char *db) {
    if (access(ck, F_OK) == 0) return;
    CHECK(sh("%s train --model lenet5 --dataset synthetic:400:1x16x16:4 --val 50 --epochs 1 --batch 32 --out %s --db %s"
             " --job-key rel-train --quiet", test_exe(), ck, db) == 0);
    CHECK(sh("%s attack --ckpt %s --attack fgsm --eps 0,0.05 --limit 50 --db %s --job-key rel-fgsm --quiet", test_exe(), ck,
             db) == 0);
}

static void hash_of(const char *path, char out[17]) {
    if (file_sha_hex(path, out) < 0) { out[0] = 0; err_clear(); }
}

TEST(reliability_diverged_model_is_never_finished) {
    char db[600], ck[600];
    tp(db, sizeof db, "div.db");
    tp(ck, sizeof ck, "div.ckpt");
    /* finite training losses, NaN outputs in inference mode (batch-norm statistics blown up) */
    T_CLI_FAILS("training diverged", "train --model resnet20 --width 0.25 --dataset synthetic:300:3x32x32:4 --val 50 --epochs 1"
                " --lr 100 --out %s --db %s --job-key div", ck, db);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM runs WHERE job_key = 'div' AND status = 'failed'"), 1);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM runs WHERE status = 'finished'"), 0);
    /* no validation set: the test loss is the last line of defence */
    T_CLI_FAILS("test loss is NaN", "train --model resnet20 --width 0.25 --dataset synthetic:300:3x32x32:4 --val 0 --epochs 1"
                " --lr 100 --no-db --probe 0");
}

TEST(reliability_attack_refuses_non_finite_outputs) {
    char ck[600], db[600], bad[600];
    tp(ck, sizeof ck, "model.ckpt");
    tp(db, sizeof db, "model.db");
    tp(bad, sizeof bad, "overflow.ckpt");
    make_model_and_db(ck, db);
    /* fc2's bias and fc3's weights at 3e38: finite (the loader accepts them); the logits overflow to Inf */
    CHECK(sh("cp %s %s && for i in $(seq 336); do printf '\\346\\261\\141\\177'; done > %s.big && sqlite3 %s"
             " \"UPDATE tensor SET data = substr(readfile('%s.big'), 1, length(data)) WHERE name IN ('fc2.bias', 'fc3.weight')\"",
             ck, bad, bad, bad, bad) == 0);
    long before = t_sql_long(db, "SELECT COUNT(*) FROM evals");
    T_CLI_FAILS("NaN/Inf", "attack --ckpt %s --attack pgd --steps 2 --eps 0.05 --limit 20 --db %s", bad, db);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals"), before);
}

/* Read-only commands on a file nobody may write: as root, the commands run as user nobody
 * (setpriv), so the file's permissions apply. */
TEST(reliability_read_only_commands_never_write) {
    char ck[600], db[600], dir[600], ro[700], figs[700], h0[17], h1[17], cmd[4096], out[16384];
    tp(ck, sizeof ck, "model.ckpt");
    tp(db, sizeof db, "model.db");
    tp(dir, sizeof dir, "ro");
    make_model_and_db(ck, db);
    snprintf(ro, sizeof ro, "%s/results.db", dir);
    snprintf(figs, sizeof figs, "%s/figs", test_tmpdir());
    /* a sealed copy (no -wal, no -shm beside it) in a directory nobody may write */
    CHECK(sh("rm -rf %s && mkdir -p %s %s && cp %s %s && %s db info --db %s >/dev/null && chmod 777 %s", dir, dir, figs, db,
             ro, test_exe(), ro, figs) == 0);
    CHECK(sh("sqlite3 %s 'PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=WAL;' >/dev/null && rm -f %s-wal %s-shm"
             " && chmod 444 %s && chmod 555 %s", ro, ro, ro, ro, dir) == 0);
    const char *as = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
    hash_of(ro, h0);
    static const char *const reads[] = {"query table --db %s", "query runs --db %s", "query masking --db %s --format csv",
                                        "db info --db %s", "db check --db %s"};
    for (size_t i = 0; i < ARRAY_LEN(reads); i++) {
        char args[1200];
        snprintf(args, sizeof args, reads[i], ro);
        snprintf(cmd, sizeof cmd, "%s%s %s", as, test_exe(), args);
        int rc = test_run(cmd, out, sizeof out);
        T_ASSERT_MSG(rc == 0, "concord %s on a read-only database: exit %d: %.400s", args, rc, out);
    }
    if (test_run("command -v gnuplot", NULL, 0) == 0) {
        snprintf(cmd, sizeof cmd, "%s%s plot --db %s --out %s --report %s/report.md --quiet", as, test_exe(), ro, figs, figs);
        int rc = test_run(cmd, out, sizeof out);
        T_ASSERT_MSG(rc == 0, "concord plot on a read-only database: exit %d: %.400s", rc, out);
    }
    hash_of(ro, h1);
    T_ASSERT_MSG(h0[0] && str_eq(h0, h1), "a read-only command changed %s", ro);
    snprintf(cmd, sizeof cmd, "ls %s", dir);
    test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(!strstr(out, "-wal") && !strstr(out, "-shm") && !strstr(out, "tmp"), "files appeared beside it: %s", out);
    CHECK(sh("chmod 755 %s", dir) == 0);
    /* a writing command on it fails with the reason, not with a crash */
    snprintf(cmd, sizeof cmd, "%s%s attack --ckpt %s --attack fgsm --eps 0.05 --limit 10 --db %s", as, test_exe(), ck, ro);
    if (*as) T_ASSERT(test_run(cmd, out, sizeof out) != 0);
}

TEST(reliability_a_checkpoint_is_not_a_results_database) {
    char ck[600], db[600], cp[700], h0[17], h1[17];
    tp(ck, sizeof ck, "model.ckpt");
    tp(db, sizeof db, "model.db");
    make_model_and_db(ck, db);
    snprintf(cp, sizeof cp, "%s.copy", ck);
    CHECK(sh("cp %s %s", ck, cp) == 0);
    hash_of(cp, h0);
    T_CLI_FAILS("is a Concord checkpoint", "query runs --db %s", cp);
    T_CLI_FAILS("is a Concord checkpoint", "db info --db %s", cp);
    T_CLI_FAILS("is a Concord checkpoint", "db merge --into %s/rel-merged.db %s", test_tmpdir(), cp);
    T_CLI_FAILS("is a Concord checkpoint", "attack --ckpt %s --attack fgsm --eps 0.05 --limit 10 --db %s", ck, cp);
    hash_of(cp, h1);
    T_ASSERT_MSG(str_eq(h0, h1), "the checkpoint's bytes changed (its content hash keys its runs)");
    char side[800];
    snprintf(side, sizeof side, "%s-wal", cp);
    T_ASSERT_MSG(access(side, F_OK) != 0, "a -wal file appeared beside the checkpoint");
}

/* all or nothing: a full disk while recording, and a kill after some evaluations were computed */
TEST(reliability_attack_records_all_or_nothing) {
    char ck[600], db[600], cap[64];
    tp(ck, sizeof ck, "model.ckpt");
    tp(db, sizeof db, "aon.db");
    make_model_and_db(ck, db);
    CHECK(sh("%s db init --db %s >/dev/null", test_exe(), db) == 0);
    long pages = t_sql_long(db, "PRAGMA page_count");
    snprintf(cap, sizeof cap, "%ld", pages); /* no room for a single new page */
    /* 40 rows with long job keys: more than the free room of the database's pages */
    const char *atk = "attack --ckpt %s --attack fgsm,pgd --steps 2 --eps 0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.1"
                      " --grad true,feedback --limit 20 --db %s --job-key all-or-nothing-attack-with-a-long-job-key";
    for (int attempt = 0; attempt < 3; attempt++) {
        char args[2000], cmd[4096], out[16384];
        snprintf(args, sizeof args, atk, ck, db);
        snprintf(cmd, sizeof cmd, "CONCORD_DB_MAX_PAGES=%s %s %s", cap, test_exe(), args);
        int rc = test_run(cmd, out, sizeof out);
        T_ASSERT_MSG(rc != 0, "a full database accepted the records: %.300s", out);
        T_CONTAINS(out, "full");
        T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals"), 0);
    }
    /* killed (SIGKILL) after 3 of its 40 evaluations were computed: nothing recorded */
    char args[2000], cmd[4096], out[16384];
    snprintf(args, sizeof args, atk, ck, db);
    snprintf(cmd, sizeof cmd, "CONCORD_FAULT=eval:3 %s %s", test_exe(), args);
    T_EQ_INT(test_run(cmd, out, sizeof out), 128 + 9);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals"), 0);
    /* with room, the same command records each of its 40 rows exactly once */
    snprintf(cmd, sizeof cmd, "%s %s", test_exe(), args);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(*) FROM evals"), 40);
    T_EQ_INT(t_sql_long(db, "SELECT COUNT(DISTINCT attack || eps || grad_source) FROM evals"), 40);
}

TEST(reliability_damaged_database_is_refused_before_writing) {
    char ck[600], db[600], bad[700], h0[17], h1[17], cmd[4096], out[16384];
    tp(ck, sizeof ck, "model.ckpt");
    tp(db, sizeof db, "model.db");
    make_model_and_db(ck, db);
    snprintf(bad, sizeof bad, "%s/rel-damaged.db", test_tmpdir());
    /* a sealed copy with random bytes over its second and third pages (the schema page stays readable) */
    CHECK(sh("cp %s %s && sqlite3 %s 'PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;' >/dev/null"
             " && dd if=/dev/urandom of=%s bs=4096 seek=1 count=2 conv=notrunc 2>/dev/null", db, bad, bad, bad) == 0);
    hash_of(bad, h0);
    T_CLI_FAILS("damaged", "attack --ckpt %s --attack fgsm --eps 0.05 --limit 10 --db %s", ck, bad);
    T_CLI_FAILS("damaged", "train --model mlp --hidden 8 --dataset synthetic:100:1x8x8:4 --val 20 --epochs 1 --db %s", bad);
    hash_of(bad, h1);
    T_ASSERT_MSG(str_eq(h0, h1), "a damaged database was written to");
    /* db check lists the problems and exits 1; on the intact file it says ok */
    snprintf(cmd, sizeof cmd, "%s db check --db %s", test_exe(), bad);
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "damaged");
    snprintf(cmd, sizeof cmd, "%s db check --db %s", test_exe(), db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "ok");
}
