/* test_verdict.c -- the verdict (results/verdict.h) on hand-built databases with planted effects:
 * each label (robust gain, worse, masking, no gain) where it must appear, the delta equal to a hand
 * computation, the p-value equal to an independent exact McNemar for one seed, one value per model
 * (a model evaluated twice is one seed, not two), and the methods block. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/outcomes.h"
#include "results/verdict.h"
#include "tests/test.h"

enum { N = 400 };

static int64_t add_run(Db *db, const char *key, const char *kind, const char *rule, long seed) {
    DbRun r = {.job_key = key, .kind = kind, .rule = rule, .model = "lenet5", .dataset = "fmnist[5-9]",
               .data_seed = seed, .config_json = "{\"epochs\":\"2\",\"lr\":\"0.01\"}"};
    int64_t id = 0;
    CHECK(db_run_begin(db, &r, &id) == 0);
    CHECK(db_run_end(db, id, "finished", NULL, NULL, NULL, 0.9) == 0);
    return id;
}

/* one evaluation of run `run`: robust[i] given, clean all correct, n examples from index first */
static void add_eval(Db *db, int64_t run, const char *key, int src, int kind, const uint8_t *robust, int n, int first) {
    AttackOutcome *o = xcalloc((size_t)n, sizeof *o);
    EvalCounts c = {.n = n};
    for (int i = 0; i < n; i++) {
        o[i].index = first + i;
        o[i].y = i % 5;
        o[i].pred_clean = o[i].y;
        o[i].clean_ok = 1;
        o[i].robust_ok = robust[i];
        o[i].pred_adv = robust[i] ? o[i].y : (o[i].y + 1) % 5;
        c.n_clean_ok++;
        c.n_robust_ok += robust[i];
    }
    AttackParams p;
    attack_params_default(&p);
    p.kind = kind;
    p.grad_source = src;
    snprintf(p.eps_text, sizeof p.eps_text, "0.1");
    p.eps = 0.1;
    size_t bytes = outcomes_bytes(OUT_CLASSIFY, n);
    uint8_t *blob = xmalloc(bytes);
    outcomes_encode_classify(o, n, blob);
    DbEval e = {.job_key = key, .run_id = run, .target_ckpt = key, .dataset = "fmnist[5-9]", .outcomes = blob,
                .outcomes_bytes = (long)bytes};
    CHECK(db_eval_record(db, &e, &p, &c, "", NULL) == 0);
    free(blob);
    free(o);
}

/* robust with probability q, from a fixed stream */
static void draw(uint8_t *v, int n, double q, uint64_t key) {
    Rng r;
    rng_seed(&r, 77, RNG_PROBE, key);
    for (int i = 0; i < n; i++) v[i] = rng_uniform_d(&r) < q;
}

/* the verdict as CSV, one line per rule row */
static void verdict_csv(const char *db, char *out, size_t cap) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s query verdict --db %s --format csv", test_exe(), db);
    T_EQ_INT(test_run(cmd, out, cap), 0);
}
static const char *row_of(const char *csv, const char *rule) {
    static char line[4096];
    char pat[64];
    snprintf(pat, sizeof pat, ",%s,", rule);
    const char *p = strstr(csv, pat);
    if (!p) return "";
    while (p > csv && p[-1] != '\n') p--;
    size_t k = strcspn(p, "\n");
    snprintf(line, sizeof line, "%.*s", (int)(k < sizeof line ? k : sizeof line - 1), p);
    return line;
}

/* Planted truth, 3 seeds x 400 examples:
 *   gain:  worst (true) 0.60 vs BP 0.30 -> robust gain
 *   worse: 0.10 vs 0.30 -> worse
 *   mask:  true 0.30 (= BP), feedback 0.90 -> masking
 *   same:  everything 0.30 -> no gain */
TEST(verdict_labels_on_planted_effects) {
    char path[600];
    snprintf(path, sizeof path, "%s/verdict.db", test_tmpdir());
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    uint8_t v[N];
    static const struct { const char *rule; double q_true, q_feedback; } R[] = {
        {"bp", 0.30, -1}, {"gain", 0.60, -1}, {"worse", 0.10, -1}, {"mask", 0.30, 0.90}, {"same", 0.30, 0}};
    for (size_t r = 0; r < ARRAY_LEN(R); r++)
        for (long s = 0; s < 3; s++) {
            char key[64];
            snprintf(key, sizeof key, "%s-%ld", R[r].rule, s);
            int64_t id = add_run(db, key, "finetune", R[r].rule, s);
            draw(v, N, R[r].q_true, r * 100 + (uint64_t)s);
            snprintf(key, sizeof key, "%s-%ld/true", R[r].rule, s);
            add_eval(db, id, key, GRAD_TRUE, ATK_PGD, v, N, 0);
            if (R[r].q_feedback >= 0) {
                /* the feedback attack breaks a subset of what the true gradient breaks: robust under true => under feedback */
                uint8_t f[N];
                draw(f, N, R[r].q_feedback, 1000 + r * 100 + (uint64_t)s); /* q 0: feedback = true exactly */
                for (int i = 0; i < N; i++) f[i] |= v[i];
                snprintf(key, sizeof key, "%s-%ld/feedback", R[r].rule, s);
                add_eval(db, id, key, GRAD_FEEDBACK, ATK_PGD, f, N, 0);
            }
        }
    db_close(db);
    char out[32768];
    verdict_csv(path, out, sizeof out);
    T_CONTAINS(row_of(out, "gain"), "robust gain");
    T_CONTAINS(row_of(out, "worse"), "worse");
    T_CONTAINS(row_of(out, "mask"), "masking");
    T_CONTAINS(row_of(out, "same"), "no gain");
    T_CONTAINS(row_of(out, "mask"), "3/3"); /* every seed's feedback gap > 5 points at p < 0.01 */
    T_CONTAINS(row_of(out, "same"), "0/3");
    /* three seeds cannot make a rule-level claim (sign-flip over seeds: p >= 0.25) and the verdict says so */
    T_CONTAINS(row_of(out, "gain"), "for these models (3 seeds; the rule needs >= 6)");
    T_CONTAINS(out, "\"bp (fine-tuned, baseline)\",3,400");
    /* the methods block names the data, the training and the attacks */
    FILE *f = tmpfile();
    CHECK(f);
    Db *r = NULL;
    T_ASSERT(db_open_readonly(path, &r) == 0);
    if (r) {
        T_ASSERT(verdict_methods(r, f) == 0);
        db_close(r);
    }
    rewind(f);
    char m[8192];
    size_t k = fread(m, 1, sizeof m - 1, f);
    m[k] = 0;
    fclose(f);
    T_CONTAINS(m, "## Methods");
    T_CONTAINS(m, "fmnist[5-9]");
    T_CONTAINS(m, "epochs 2");
    T_CONTAINS(m, "pgd linf eps 0.1");
}

/* one seed: the delta is the hand-computed difference and p the exact McNemar, summed here directly */
TEST(verdict_one_seed_matches_hand_computation) {
    char path[600];
    snprintf(path, sizeof path, "%s/verdict1.db", test_tmpdir());
    Db *db = NULL;
    T_ASSERT(db_open(path, &db) == 0);
    if (!db) return;
    uint8_t a[60], b[60];
    for (int i = 0; i < 60; i++) { a[i] = i < 40; b[i] = i < 30 || (i >= 50 && i < 54); } /* only A: 10, only B: 4 */
    int64_t rb = add_run(db, "bp-0", "finetune", "bp", 0), ra = add_run(db, "r-0", "finetune", "usf", 0);
    add_eval(db, rb, "bp-0/t", GRAD_TRUE, ATK_PGD, b, 60, 0);
    add_eval(db, ra, "r-0/t", GRAD_TRUE, ATK_PGD, a, 60, 0);
    /* the same model evaluated again on a smaller set: one model, one seed, never pooled */
    add_eval(db, ra, "r-0/t-small", GRAD_TRUE, ATK_FGSM, a, 30, 0);
    db_close(db);
    char out[16384];
    verdict_csv(path, out, sizeof out);
    const char *row = row_of(out, "usf");
    /* acc 40/60 - 34/60 = 10 points; McNemar b = 10, c = 4: p = 2 * sum_{k<=4} C(14,k) / 2^14 = 0.1796 */
    double tail = 0, cnk = 1;
    for (int j = 0; j <= 4; j++) { tail += cnk; cnk = cnk * (14 - j) / (j + 1); }
    double p = 2 * tail / 16384.0;
    char want[64];
    snprintf(want, sizeof want, "%.3f", 10.0);
    T_CONTAINS(row, want);
    snprintf(want, sizeof want, "%.4g", p);
    T_CONTAINS(row, want);
    T_ASSERT_MSG(strstr(row, ",1,60,") != NULL, "one seed of 60 examples expected in: %s", row);
}

/* canary: the hand McNemar is not the one-sided tail */
static void verdict_canary(void) {
    double tail = 0, cnk = 1;
    for (int j = 0; j <= 4; j++) { tail += cnk; cnk = cnk * (14 - j) / (j + 1); }
    T_NEAR(tail / 16384.0, 0.17956542968750, 1e-12); /* the two-sided value: a one-sided tail must fail */
}
TEST(verdict_checker_canary) { T_ASSERT(test_expect_failure(verdict_canary)); }

/* the feedback-gap flag is a paired test: a 10-point gap on 20 examples (2 discordant pairs, McNemar
 * p = 0.5) is noise, on 400 examples (40 pairs, p ~ 2e-12) it is masking */
#include "attacks/flags.h"
#include "results/stats.h"
TEST(verdict_feedback_gap_flag_is_a_paired_test) {
    for (int big = 0; big < 2; big++) {
        int n = big ? 400 : 20;
        uint8_t *fb = xcalloc((size_t)n, 1), *tr = xcalloc((size_t)n, 1);
        for (int i = 0; i < n; i++) { tr[i] = i < n / 2; fb[i] = i < n / 2 + n / 10; } /* 50% vs 60% */
        AttackResult r[2];
        memset(r, 0, sizeof r);
        for (int k = 0; k < 2; k++) {
            attack_params_default(&r[k].p);
            r[k].p.kind = ATK_PGD;
            snprintf(r[k].p.eps_text, sizeof r[k].p.eps_text, "0.1");
            r[k].p.eps = 0.1;
            r[k].c.n = r[k].c.n_clean_ok = n;
        }
        r[0].p.grad_source = GRAD_FEEDBACK;
        r[0].c.n_robust_ok = n / 2 + n / 10;
        r[0].robust = fb;
        r[1].p.grad_source = GRAD_TRUE;
        r[1].c.n_robust_ok = n / 2;
        r[1].robust = tr;
        unsigned counts_only = attack_flags(r, 2, 0), paired = attack_flags_paired(r, 2, 0, stats_mcnemar_exact);
        T_ASSERT(counts_only & MASK_FEEDBACK_GAP); /* the gap alone always fires */
        T_EQ_INT(!!(paired & MASK_FEEDBACK_GAP), big);
        free(fb);
        free(tr);
    }
}
