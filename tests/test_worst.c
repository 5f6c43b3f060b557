/* test_worst.c -- per-example outcomes (results/outcomes.h) and the worst case over every evaluation
 * (results/worst.h): the BLOB round-trips and refuses damage; the worst case over a hand-built set of
 * evaluations equals the per-example AND computed here independently, with the breakdown of what broke
 * each example first; different example sets are never mixed; a real attack's BLOB agrees with its
 * counts. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/outcomes.h"
#include "results/worst.h"
#include "tests/test.h"

enum { N = 40 };

static AttackParams params(int kind, int src, double eps) {
    AttackParams p;
    attack_params_default(&p);
    p.kind = kind;
    p.grad_source = src;
    snprintf(p.eps_text, sizeof p.eps_text, "%g", eps);
    p.eps = eps;
    return p;
}

/* outcomes of n examples: clean[i] known, robust = clean && keep(i) */
static void make_outcomes(AttackOutcome *o, int n, int first, const uint8_t *clean, const uint8_t *keep) {
    for (int i = 0; i < n; i++) {
        memset(&o[i], 0, sizeof o[i]);
        o[i].index = first + i;
        o[i].y = i % 4;
        o[i].pred_clean = clean[i] ? o[i].y : (o[i].y + 1) % 4;
        o[i].clean_ok = clean[i];
        o[i].robust_ok = clean[i] && keep[i];
        o[i].pred_adv = o[i].robust_ok ? o[i].y : (o[i].y + 2) % 4;
    }
}

static void record(Db *db, const char *key, const char *hash, int kind, int src, double eps, const AttackOutcome *o, int n) {
    AttackParams p = params(kind, src, eps);
    EvalCounts c = {0};
    c.n = n;
    for (int i = 0; i < n; i++) { c.n_clean_ok += o[i].clean_ok; c.n_robust_ok += o[i].robust_ok; }
    size_t bytes = outcomes_bytes(OUT_CLASSIFY, n);
    uint8_t *blob = xmalloc(bytes);
    outcomes_encode_classify(o, n, blob);
    DbEval e = {.job_key = key, .target_ckpt = "m.ckpt", .target_hash = hash, .dataset = "synthetic", .outcomes = blob,
                .outcomes_bytes = (long)bytes};
    T_ASSERT_MSG(db_eval_record(db, &e, &p, &c, "", NULL) == 0, "%s", err_msg());
    free(blob);
}

TEST(worst_outcomes_blob_round_trip) {
    uint8_t clean[N], keep[N];
    for (int i = 0; i < N; i++) { clean[i] = i % 5 != 0; keep[i] = i % 3 != 0; }
    AttackOutcome o[N];
    make_outcomes(o, N, 100, clean, keep);
    o[7].zero_grad = 1;
    o[8].stage = 3;
    size_t bytes = outcomes_bytes(OUT_CLASSIFY, N);
    T_EQ_INT(bytes, 16 + 20 * N);
    uint8_t *b = xmalloc(bytes);
    outcomes_encode_classify(o, N, b);
    T_ASSERT(memcmp(b, "CCO1", 4) == 0);
    Outcomes d;
    T_ASSERT(outcomes_decode(b, (long)bytes, 1, &d) == 0);
    T_EQ_INT(d.n, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += d.index[i] != 100 + i || d.y[i] != o[i].y || d.pred_clean[i] != o[i].pred_clean || d.pred_adv[i] != o[i].pred_adv ||
               d.clean_ok[i] != o[i].clean_ok || d.robust_ok[i] != o[i].robust_ok;
    T_EQ_INT(bad, 0);
    T_EQ_INT(d.zero_grad[7], 1);
    T_EQ_INT(d.stage[8], 3);
    outcomes_free(&d);
    /* damage: truncated, wrong magic, robust without clean */
    T_ASSERT(outcomes_decode(b, (long)bytes - 1, 2, &d) < 0);
    T_CONTAINS(err_msg(), "eval 2");
    err_clear();
    b[0] = 'X';
    T_ASSERT(outcomes_decode(b, (long)bytes, 3, &d) < 0);
    err_clear();
    b[0] = 'C';
    b[16 + 20 * 0 + 16] = 2; /* example 0: robust, not clean */
    T_ASSERT(outcomes_decode(b, (long)bytes, 4, &d) < 0);
    err_clear();
    free(b);
    /* hashing records */
    float apc[3] = {0.5f, 0.25f, 1.0f}, apa[3] = {0.125f, 0.0f, 0.75f};
    uint8_t hb[16 + 12 * 3];
    T_EQ_INT(outcomes_bytes(OUT_HASH, 3), sizeof hb);
    outcomes_encode_hash(apc, apa, 3, hb);
    T_ASSERT(outcomes_decode(hb, sizeof hb, 5, &d) == 0);
    T_ASSERT(d.kind == OUT_HASH && d.n == 3 && d.ap_clean[1] == 0.25f && d.ap_adv[2] == 0.75f && d.index[2] == 2);
    outcomes_free(&d);
}

/* three evaluations of one model at eps 0.1, one of another model, one on a different example set, and
 * one without outcomes: the worst case is the AND, per model and example set */
TEST(worst_case_is_the_per_example_and) {
    char path[600];
    snprintf(path, sizeof path, "%s/worst.db", test_tmpdir());
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    uint8_t clean[N], k1[N], k2[N], k3[N];
    Rng r;
    rng_seed(&r, 5, RNG_PROBE, 0);
    for (int i = 0; i < N; i++) {
        clean[i] = rng_below(&r, 10) < 8;
        k1[i] = rng_below(&r, 10) < 6;
        k2[i] = rng_below(&r, 10) < 7;
        k3[i] = rng_below(&r, 10) < 9;
    }
    AttackOutcome o[N];
    make_outcomes(o, N, 0, clean, k1);
    record(db, "a/pgd/true", "hashA", ATK_PGD, GRAD_TRUE, 0.1, o, N);
    make_outcomes(o, N, 0, clean, k2);
    record(db, "a/pgd/feedback", "hashA", ATK_PGD, GRAD_FEEDBACK, 0.1, o, N);
    make_outcomes(o, N, 0, clean, k3);
    record(db, "a/square", "hashA", ATK_SQUARE, GRAD_TRUE, 0.1, o, N);
    make_outcomes(o, 20, 0, clean, k1); /* another example set of the same model: its own row */
    record(db, "a/pgd/true/20", "hashA", ATK_FGSM, GRAD_TRUE, 0.1, o, 20);
    make_outcomes(o, N, 0, clean, k2); /* another model */
    record(db, "b/pgd/true", "hashB", ATK_PGD, GRAD_TRUE, 0.1, o, N);
    AttackParams p = params(ATK_PGD, GRAD_TRUE, 0.1);
    EvalCounts c = {.n = N, .n_clean_ok = 30, .n_robust_ok = 10};
    DbEval old = {.job_key = "a/old", .target_ckpt = "m.ckpt", .target_hash = "hashA", .dataset = "synthetic"};
    T_ASSERT(db_eval_record(db, &old, &p, &c, "", NULL) == 0);
    WorstRow *w = NULL;
    int n = 0;
    T_ASSERT(worst_load(db, &w, &n) == 0);
    T_EQ_INT(n, 3);
    /* the oracle: a plain loop over the three arrays, sharing nothing with worst.c */
    long want_clean = 0, want = 0, first[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        want_clean += clean[i];
        want += clean[i] && k1[i] && k2[i] && k3[i];
        if (clean[i] && !k1[i]) first[0]++;
        else if (clean[i] && !k2[i]) first[1]++;
        else if (clean[i] && !k3[i]) first[2]++;
    }
    int seen_a = 0;
    for (int i = 0; i < n; i++) {
        if (!str_eq(w[i].target_hash, "hashA") || w[i].n != N) continue;
        seen_a = 1;
        T_EQ_INT(w[i].clean, want_clean);
        T_EQ_INT(w[i].robust, want);
        T_EQ_INT(w[i].nevals, 3);
        T_EQ_INT(w[i].no_outcomes, 1);
        char bd[300] = "";
        static const char *const lab[] = {"pgd10/true", "pgd10/feedback", "square/black-box"};
        for (int k = 0; k < 3; k++) /* evaluations that broke nothing first are left out */
            if (first[k]) snprintf(bd + strlen(bd), sizeof bd - strlen(bd), "%s%s %ld", bd[0] ? ", " : "", lab[k], first[k]);
        T_ASSERT_MSG(str_eq(w[i].breakdown, bd), "breakdown '%s', expected '%s'", w[i].breakdown, bd);
        for (int k = 0; k < N; k++)
            T_EQ_INT(w[i].robust_ok[k], clean[k] && k1[k] && k2[k] && k3[k]);
    }
    T_ASSERT(seen_a);
    int sets = 0;
    for (int i = 0; i < n; i++) sets += str_eq(w[i].target_hash, "hashA");
    T_EQ_INT(sets, 2); /* the 20-example evaluation was not mixed in */
    worst_free(w, n);
    /* the report, through the CLI */
    char cmd[1200], out[8192];
    snprintf(cmd, sizeof cmd, "%s query worst --db %s --format csv", test_exe(), path);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "worst_robust");
    T_CONTAINS(out, "different example sets");
    T_CONTAINS(out, "recorded before schema v4");
    db_close(db);
}

/* canary: the AND checker sees a worst case that ignores one evaluation */
static void worst_canary(void) {
    uint8_t a[4] = {1, 1, 1, 0}, b[4] = {1, 0, 1, 0};
    long and_ = 0, only_a = 0;
    for (int i = 0; i < 4; i++) { and_ += a[i] && b[i]; only_a += a[i]; }
    T_EQ_INT(only_a, and_);
}
TEST(worst_checker_canary) { T_ASSERT(test_expect_failure(worst_canary)); }

/* a real attack: the recorded BLOB agrees with the recorded counts, row by row */
TEST(worst_blob_matches_counts_of_a_real_attack) {
    char ck[600], db[600], cmd[2000], out[8192];
    snprintf(ck, sizeof ck, "%s/worst-real.ckpt", test_tmpdir());
    snprintf(db, sizeof db, "%s/worst-real.db", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s train --model lenet5 --dataset synthetic:400:1x16x16:4 --val 50 --epochs 1 --out %s --db %s --quiet",
             test_exe(), ck, db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack fgsm,pgd,square --steps 3 --queries 30 --eps 0.05,0.1 --grad true,feedback"
             " --limit 60 --db %s --quiet", test_exe(), ck, db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    Db *h = NULL;
    T_ASSERT(db_open_readonly(db, &h) == 0);
    if (!h) return;
    sqlite3_stmt *st = NULL;
    int rows = 0;
    if (sqlite3_prepare_v2(db_sqlite(h), "SELECT id, n, n_clean_ok, n_robust_ok, outcomes FROM evals", -1, &st, NULL) == SQLITE_OK)
        while (sqlite3_step(st) == SQLITE_ROW) {
            Outcomes o;
            T_ASSERT(outcomes_decode(sqlite3_column_blob(st, 4), sqlite3_column_bytes(st, 4), sqlite3_column_int64(st, 0), &o) == 0);
            long cl = 0, rb = 0;
            for (long i = 0; i < o.n; i++) { cl += o.clean_ok[i]; rb += o.robust_ok[i]; }
            T_EQ_INT(o.n, sqlite3_column_int64(st, 1));
            T_EQ_INT(cl, sqlite3_column_int64(st, 2));
            T_EQ_INT(rb, sqlite3_column_int64(st, 3));
            outcomes_free(&o);
            rows++;
        }
    sqlite3_finalize(st);
    T_EQ_INT(rows, 10); /* fgsm, pgd x 2 eps x 2 grads, square x 2 eps */
    db_close(h);
    /* the worst case is at most every single evaluation's robust count */
    T_ASSERT(t_sql_long(db, "SELECT COUNT(*) FROM evals") == 10);
    snprintf(cmd, sizeof cmd, "%s query worst --db %s --format csv", test_exe(), db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "lenet5,train,bp,0,linf,0.1,60");
}

/* AutoAttack's component rows (stage k: the ensemble after component k) are recorded with their stage
 * and kept out of the reports: the masking report's Square column is the standalone Square, never
 * AutoAttack's Square row (which is the whole ensemble); a v4 database's component rows recorded by
 * `concord attack` (no job key) are recognised by the v5 migration from their place before the ensemble. */
TEST(autoattack_component_rows_have_a_stage) {
    char ck[600], db[600], cmd[3000], out[65536];
    snprintf(ck, sizeof ck, "%s/aa-stage.ckpt", test_tmpdir());
    snprintf(db, sizeof db, "%s/aa-stage.db", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s train --model mlp --hidden 32 --dataset synthetic:400:1x8x8:4 --val 40 --epochs 2 --out %s"
             " --db %s --quiet && %s attack --ckpt %s --attack square,autoattack --queries 50 --eps 0.1 --limit 40 --db %s --quiet",
             test_exe(), ck, db, test_exe(), ck, db);
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT_MSG(rc == 0, "exit %d: %.2000s", rc, out);
    /* standalone Square (stage 0), then apgd-ce, apgd-t, fab-t, square at stages 1-4, then the ensemble */
    T_EQ_INT(t_sql_long(db, "SELECT count(*) FROM evals"), 6);
    T_EQ_INT(t_sql_long(db, "SELECT group_concat(stage, '') FROM (SELECT stage FROM evals ORDER BY id)"), 12340);
    long sq = t_sql_long(db, "SELECT n_robust_ok FROM evals WHERE attack = 'square' AND stage = 0");
    long aa = t_sql_long(db, "SELECT n_robust_ok FROM evals WHERE attack = 'autoattack'");
    T_ASSERT_MSG(sq > aa, "the test needs Square (50 queries) weaker than AutoAttack: %ld vs %ld", sq, aa);
    /* the masking report's square column: the standalone Square's robust accuracy, not AutoAttack's */
    char want[64];
    snprintf(want, sizeof want, "| %.1f |", 100.0 * sq / 40);
    snprintf(cmd, sizeof cmd, "%s query masking --db %s --format md", test_exe(), db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, want);
    /* back to v4 (no stage column), then reopened: the migration finds the four component rows again */
    sqlite3 *h = NULL;
    T_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
    T_EQ_INT(sqlite3_exec(h, "DROP VIEW eval_view; ALTER TABLE evals DROP COLUMN stage; CREATE VIEW eval_view AS SELECT 1;"
                             " PRAGMA user_version = 4;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    snprintf(cmd, sizeof cmd, "%s db init --db %s", test_exe(), db);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "schema version 5");
    T_EQ_INT(t_sql_long(db, "SELECT group_concat(stage, '') FROM (SELECT stage FROM evals ORDER BY id)"), 12340);
    T_EQ_INT(t_sql_long(db, "SELECT count(*) FROM eval_view WHERE stage > 0"), 4);
}
