/* test_autoattack.c -- the AutoAttack ensemble, Square as AutoAttack configures it, and what every new
 * attack shares: every iterate inside the eps-ball (Linf and L2) and [0,1] (FAB's minimum-norm iterates:
 * [0,1], and its successes inside the ball), eps = 0 reproducing clean accuracy, the ensemble never
 * reporting an example robust that one of its components breaks alone (per example), the per-example
 * outcomes agreeing with the counts, a trained LeNet-5 (APGD-CE <= PGD-10 + 0.5 points, AutoAttack <=
 * APGD-CE), the refusals (DLR with too few classes), the masking flags of an AutoAttack run, and the
 * command line with its database rows. Oracles: AutoAttack's published schedule table, the definitions
 * of the ball, standalone runs of each component, counts recomputed here from the outcomes. */
#define _POSIX_C_SOURCE 200809L
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "attacks/flags.h"
#include "harness/checkpoint.h"
#include "harness/loss.h"
#include "harness/train.h"
#include "rules/build.h"
#include "tests/test.h"

static Model *lenet(const char *rule, int h, int k, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", 1, h, h, k);
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = seed;
    return model_create(&s, rule ? rule_find(rule) : NULL, &ro, seed);
}

/* params of table entry `name` with small budgets for tests */
static AttackParams small(const char *name, const char *eps) {
    AttackParams p;
    attack_params_default(&p);
    const AttackInfo *ai = attack_find(name);
    CHECK(ai);
    attack_params_apply(&p, ai);
    attack_set_eps(&p, eps);
    p.steps = 6;
    p.restarts = 2;
    p.targets = 2;
    p.queries = 30;
    p.batch = 10;
    return p;
}

/* ---- Square: AutoAttack's schedule ---- */

TEST(square_schedule_is_autoattacks) {
    /* autoattack/square.py p_selection with resc_schedule=False: p_init while it <= 10, /2 to 50, /4 to 200,
       /8 to 500, /16 to 1000, /32 to 2000, /64 to 4000, /128 to 6000, /256 to 8000, /512 after */
    static const struct { int it; double div; } T[] = {
        {0, 1},      {10, 1},     {11, 2},     {50, 2},     {51, 4},     {200, 4},    {201, 8},   {500, 8},
        {501, 16},   {1000, 16},  {1001, 32},  {2000, 32},  {2001, 64},  {4000, 64},  {4001, 128}, {4999, 128},
        {6000, 128}, {6001, 256}, {8000, 256}, {8001, 512}, {20000, 512},
    };
    for (size_t i = 0; i < ARRAY_LEN(T); i++) T_NEAR(square_p_schedule(0.8, T[i].it), 0.8 / T[i].div, 1e-15);
    AttackParams p;
    attack_params_default(&p);
    T_NEAR(p.p_init, 0.8, 0);
    T_EQ_INT(attack_find("autoattack")->queries, 5000);
}

/* ---- the ball and the box after every step ---- */

typedef struct BallCheck { long calls, bad, fab_out; double eps; } BallCheck;

static void ball_hook(void *ctx, const float *x, const float *cur, int n, int D, const AttackParams *p, int step) {
    BallCheck *b = ctx;
    b->calls++;
    for (int i = 0; i < n; i++) {
        double l2 = 0, li = 0;
        for (int j = 0; j < D; j++) {
            float v = cur[(long)i * D + j];
            double d = (double)v - x[(long)i * D + j];
            l2 += d * d;
            li = fmax(li, fabs(d));
            if (!(v >= 0.0f && v <= 1.0f) && b->bad++ < 3)
                test_fail_at(__FILE__, __LINE__, "%s (stage %d) step %d example %d pixel %d: %.9g outside [0,1]", attack_name(p),
                             p->stage, step, i, j, v);
        }
        double nr = p->norm == NORM_L2 ? sqrt(l2) : li;
        int out = p->norm == NORM_L2 ? nr > b->eps * (1 + 1e-6) + 1e-7 : nr > b->eps + 1e-7;
        if (out && p->kind == ATK_FAB) { b->fab_out++; continue; } /* a minimum-norm search: allowed */
        if (out && b->bad++ < 3)
            test_fail_at(__FILE__, __LINE__, "%s (stage %d) step %d example %d: norm %.9g > eps %.9g", attack_name(p), p->stage, step,
                         i, nr, b->eps);
    }
}

static const char *NEW_ATTACKS[] = {"apgd-ce", "apgd-ce-l2", "apgd-dlr", "apgd-dlr-l2", "apgd-t", "apgd-t-l2", "fab-t",
                                    "fab-t-l2", "square", "square-l2", "autoattack", "autoattack-l2"};

TEST(attack_new_every_step_stays_in_ball_and_box) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:24:1x16x16:5", NULL, SPLIT_TEST, &d) == 0);
    const char *rules[] = {"bp", "brsf"};
    for (int r = 0; r < 2; r++) {
        Model *m = lenet(rules[r], 16, 5, 2);
        for (size_t a = 0; a < ARRAY_LEN(NEW_ATTACKS); a++)
            for (int v = 0; v < 3; v++) {
                AttackParams p = small(NEW_ATTACKS[a], strstr(NEW_ATTACKS[a], "-l2") ? "0.5" : "8/255");
                if (v == 1) { attack_set_grad(&p, "feedback"); p.eot = 2; }
                if (v == 2) { p.version = AA_RAND; attack_set_grad(&p, "feedback"); }
                if (v == 2 && p.kind != ATK_AUTOATTACK) continue;
                BallCheck b = {0, 0, 0, p.eps};
                AttackOutcome per[24];
                EvalCounts c;
                T_ASSERT(attack_evaluate_ex(m, NULL, &d, 0, &p, ball_hook, &b, NULL, &c, per, NULL) == 0);
                T_ASSERT_MSG(b.calls >= 2, "%s: hook called %ld times", NEW_ATTACKS[a], b.calls);
                T_EQ_INT(c.n, 24);
                /* what the attack returns is inside the ball, FAB's included */
                for (int i = 0; i < 24; i++) {
                    double nr = p.norm == NORM_L2 ? per[i].l2 : per[i].linf;
                    T_ASSERT_MSG(nr <= p.eps * (1 + 1e-5) + 1e-6, "%s example %d: returned norm %.9g > eps %.9g", NEW_ATTACKS[a], i, nr,
                                 p.eps);
                }
            }
        model_free(m);
    }
    dataset_close(&d);
}

/* ---- eps = 0 ---- */

TEST(attack_new_eps0_reproduces_clean_accuracy) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:40:1x16x16:5", NULL, SPLIT_TEST, &d) == 0);
    Model *m = lenet(NULL, 16, 5, 4);
    for (size_t a = 0; a < ARRAY_LEN(NEW_ATTACKS); a++)
        for (int v = 0; v < 2; v++) {
            AttackParams p = small(NEW_ATTACKS[a], "0");
            if (v == 1 && p.kind != ATK_AUTOATTACK) continue;
            if (v == 1) p.version = AA_RAND;
            EvalCounts c;
            T_ASSERT(attack_evaluate(m, NULL, &d, 0, &p, NULL, NULL, NULL, &c) == 0);
            T_ASSERT_MSG(c.n_robust_ok == c.n_clean_ok && c.n_flipped == 0 && c.mean_linf == 0,
                         "%s eps 0: clean %ld robust %ld flipped %ld linf %g", NEW_ATTACKS[a], c.n_clean_ok, c.n_robust_ok, c.n_flipped,
                         c.mean_linf);
            AttackResult res = {.p = p, .c = c};
            T_ASSERT(!(attack_flags(&res, 1, 0) & MASK_EPS0));
        }
    model_free(m);
    dataset_close(&d);
}

/* ---- refusals ---- */

TEST(attack_dlr_needs_enough_classes) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:8:1x16x16:2", NULL, SPLIT_TEST, &d) == 0);
    Model *m2 = lenet(NULL, 16, 2, 1), *m3 = lenet(NULL, 16, 3, 1);
    EvalCounts c;
    AttackParams p = small("apgd-dlr", "8/255");
    T_ASSERT(attack_evaluate(m2, NULL, &d, 0, &p, NULL, NULL, NULL, &c) < 0);
    T_CONTAINS(err_msg(), "apgd-dlr: the DLR loss needs at least 3 classes");
    err_clear();
    p = small("apgd-t", "8/255");
    T_ASSERT(attack_evaluate(m3, NULL, &d, 0, &p, NULL, NULL, NULL, &c) < 0);
    T_CONTAINS(err_msg(), "apgd-t: the targeted DLR loss needs at least 4 classes");
    err_clear();
    p = small("autoattack", "8/255");
    T_ASSERT(attack_evaluate(m3, NULL, &d, 0, &p, NULL, NULL, NULL, &c) < 0);
    T_CONTAINS(err_msg(), "needs at least 4 classes");
    err_clear();
    p.version = AA_RAND;
    T_ASSERT(attack_evaluate(m3, NULL, &d, 0, &p, NULL, NULL, NULL, &c) == 0); /* APGD-DLR: 3 classes suffice */
    p = small("apgd-ce", "8/255");
    T_ASSERT(attack_evaluate(m2, NULL, &d, 0, &p, NULL, NULL, NULL, &c) == 0);
    p = small("fab-t", "8/255");
    T_ASSERT(attack_evaluate(m2, NULL, &d, 0, &p, NULL, NULL, NULL, &c) == 0);
    model_free(m2);
    model_free(m3);
    dataset_close(&d);
}

/* ---- a trained LeNet-5, shared by the tests below (trained once) ---- */

static Model *g_net;
static Dataset g_te;
static int g_fm;

static void free_trained(void) {
    model_free(g_net);
    dataset_close(&g_te);
}

static Model *trained_lenet(void) {
    if (g_net) return g_net;
    atexit(free_trained);
    Dataset tr;
    g_fm = dataset_open("fashion-mnist", NULL, SPLIT_TRAIN, &tr) == 0;
    if (g_fm) {
        CHECK(dataset_open("fashion-mnist", NULL, SPLIT_TEST, &g_te) == 0);
        tr.n = 4000;
        g_te.n = 500;
    } else { /* no Fashion-MNIST on this machine: the synthetic set */
        err_clear();
        CHECK(dataset_open("synthetic:4000:1x28x28:10", NULL, SPLIT_TRAIN, &tr) == 0);
        CHECK(dataset_open("synthetic:500:1x28x28:10", NULL, SPLIT_TEST, &g_te) == 0);
    }
    g_net = lenet(NULL, 28, 10, 1);
    dataset_channel_stats(&tr, g_net->L[0].mean, g_net->L[0].std);
    TrainOpts o;
    train_opts_default(&o);
    o.epochs = 3;
    o.batch = 64;
    o.lr = 0.02;
    o.probe_n = 0;
    o.quiet = 1;
    CHECK(train_run(g_net, &tr, NULL, &o, 0, NULL, NULL) == 0);
    dataset_close(&tr);
    return g_net;
}

/* the counts attack_evaluate reports, recomputed from the per-example outcomes */
static void check_outcomes(const char *what, const AttackOutcome *per, int N, const EvalCounts *c) {
    long clean = 0, robust = 0, flipped = 0;
    for (int i = 0; i < N; i++) {
        T_ASSERT_MSG(per[i].index == i, "%s: outcome %d has index %d", what, i, per[i].index);
        T_ASSERT(per[i].clean_ok == (per[i].pred_clean == per[i].y));
        T_ASSERT(per[i].robust_ok == (per[i].clean_ok && per[i].pred_adv == per[i].y));
        clean += per[i].clean_ok;
        robust += per[i].robust_ok;
        flipped += per[i].pred_adv != per[i].pred_clean;
    }
    T_ASSERT_MSG(clean == c->n_clean_ok && robust == c->n_robust_ok && flipped == c->n_flipped,
                 "%s: outcomes give clean %ld robust %ld flipped %ld, counts %ld %ld %ld", what, clean, robust, flipped, c->n_clean_ok,
                 c->n_robust_ok, c->n_flipped);
}

TEST(autoattack_never_more_robust_than_a_component) {
    Model *m = trained_lenet();
    const int N = 60;
    AttackParams p = small("autoattack", "8/255");
    p.steps = 15;
    p.restarts = 1;
    p.targets = 3;
    p.queries = 200;
    p.batch = 32;
    AttackOutcome *aa = xmalloc(sizeof(AttackOutcome) * N), *one = xmalloc(sizeof(AttackOutcome) * N);
    AttackStages st;
    EvalCounts c;
    T_ASSERT(attack_evaluate_ex(m, NULL, &g_te, N, &p, NULL, NULL, NULL, &c, aa, &st) == 0);
    check_outcomes("autoattack", aa, N, &c);
    T_EQ_INT(st.n, 4);
    T_ASSERT(st.p[0].kind == ATK_APGD && st.p[0].loss == LOSS_CE && st.p[1].loss == LOSS_DLR_T && st.p[2].kind == ATK_FAB &&
             st.p[3].kind == ATK_SQUARE);
    long before = c.n_clean_ok;
    int not_union = 0;
    for (int k = 0; k < st.n; k++) {
        /* the cascade's bookkeeping: counts after each stage, who broke what */
        long by_k = 0;
        for (int i = 0; i < N; i++) by_k += aa[i].stage == k + 1;
        T_EQ_INT(by_k, st.broke[k]);
        T_EQ_INT(st.attacked[k], before);
        T_EQ_INT(st.c[k].n_robust_ok, before - st.broke[k]);
        before = st.c[k].n_robust_ok;
        /* the component alone, on the same examples */
        AttackParams q = st.p[k];
        q.stage = 0;
        EvalCounts c1;
        T_ASSERT(attack_evaluate_ex(m, NULL, &g_te, N, &q, NULL, NULL, NULL, &c1, one, NULL) == 0);
        check_outcomes(attack_name(&q), one, N, &c1);
        T_ASSERT_MSG(c.n_robust_ok <= c1.n_robust_ok, "autoattack robust %ld > %s alone %ld", c.n_robust_ok, attack_name(&q),
                     c1.n_robust_ok);
        for (int i = 0; i < N; i++) {
            T_ASSERT_MSG(aa[i].robust_ok <= one[i].robust_ok, "example %d: robust under autoattack, broken by %s alone", i,
                         attack_name(&q));
            if (!one[i].robust_ok && one[i].clean_ok && aa[i].stage > k + 1) not_union++;
        }
        printf("    %-8s alone: robust %ld of %d; in the cascade it broke %ld of %ld\n", attack_name(&q), c1.n_robust_ok, N, st.broke[k],
               st.attacked[k]);
    }
    T_EQ_INT(c.n_robust_ok, st.c[st.n - 1].n_robust_ok);
    T_ASSERT(c.n_robust_ok < c.n_clean_ok);
    /* each component's per-example streams are the standalone ones: a component breaks in the cascade
       exactly what it breaks alone among what is left */
    T_EQ_INT(not_union, 0);
    free(aa);
    free(one);
}

TEST(autoattack_trained_lenet_apgd_and_autoattack_not_weaker) {
    Model *m = trained_lenet();
    double t0 = now_seconds();
    AttackParams p;
    attack_params_default(&p);
    attack_set_eps(&p, "8/255");
    p.kind = ATK_PGD;
    p.steps = 10;
    attack_set_alpha(&p, "");
    EvalCounts cp, ca, caa;
    T_ASSERT(attack_evaluate(m, NULL, &g_te, 0, &p, NULL, NULL, NULL, &cp) == 0);
    AttackParams q;
    attack_params_default(&q);
    attack_params_apply(&q, attack_find("apgd-ce"));
    attack_set_eps(&q, "8/255");
    q.steps = 100;
    AttackOutcome *pa = xmalloc(sizeof(AttackOutcome) * g_te.n);
    T_ASSERT(attack_evaluate_ex(m, NULL, &g_te, 0, &q, NULL, NULL, NULL, &ca, pa, NULL) == 0);
    double acc_clean = 100.0 * cp.n_clean_ok / cp.n, rp = 100.0 * cp.n_robust_ok / cp.n, ra = 100.0 * ca.n_robust_ok / ca.n;
    T_ASSERT_MSG(acc_clean > 60, "LeNet-5 trained to only %.1f%%", acc_clean);
    T_ASSERT_MSG(ra <= rp + 0.5, "APGD-CE robust %.2f%% > PGD-10 %.2f%% + 0.5", ra, rp);
    T_ASSERT_MSG(ra < acc_clean, "APGD-CE did nothing");
    /* AutoAttack, as published (100 steps, 9 targets, 5000 queries), on the first 50 of these examples */
    const int NA = 50;
    AttackParams aa;
    attack_params_default(&aa);
    attack_params_apply(&aa, attack_find("autoattack"));
    attack_set_eps(&aa, "8/255");
    aa.steps = 100;
    aa.queries = 5000;
    AttackOutcome *po = xmalloc(sizeof(AttackOutcome) * NA);
    T_ASSERT(attack_evaluate_ex(m, NULL, &g_te, NA, &aa, NULL, NULL, NULL, &caa, po, NULL) == 0);
    long apgd_first = 0, worse = 0;
    for (int i = 0; i < NA; i++) {
        apgd_first += pa[i].robust_ok;
        worse += po[i].robust_ok && !pa[i].robust_ok;
    }
    printf("    %s LeNet-5, eps 8/255: clean %.1f%%, PGD-10 robust %.1f%%, APGD-CE %.1f%% (n %ld); first %d: APGD-CE %ld, "
           "AutoAttack %ld robust (%.1f s)\n",
           g_fm ? "fashion-mnist" : "synthetic", acc_clean, rp, ra, cp.n, NA, apgd_first, caa.n_robust_ok, now_seconds() - t0);
    T_ASSERT_MSG(caa.n_robust_ok <= apgd_first, "AutoAttack robust %ld > APGD-CE %ld on the same %d examples", caa.n_robust_ok,
                 apgd_first, NA);
    T_EQ_INT(worse, 0);
    T_EQ_INT(caa.n_zero_grad, 0);
    free(pa);
    free(po);
}

/* a surrogate identical to the target: transfer reproduces the direct result, component by component */
TEST(autoattack_transfer_from_identical_surrogate) {
    Model *m = trained_lenet();
    Model *copy = lenet(NULL, 28, 10, 1);
    memcpy(copy->arena, m->arena, sizeof(float) * (size_t)m->n_arena);
    AttackParams p = small("autoattack", "0.1");
    p.restarts = 1;
    AttackStages s1, s2;
    EvalCounts c1, c2;
    T_ASSERT(attack_evaluate_ex(m, NULL, &g_te, 30, &p, NULL, NULL, NULL, &c1, NULL, &s1) == 0);
    p.grad_source = GRAD_TRANSFER;
    snprintf(p.transfer_ckpt, sizeof p.transfer_ckpt, "copy");
    T_ASSERT(attack_evaluate_ex(m, copy, &g_te, 30, &p, NULL, NULL, NULL, &c2, NULL, &s2) == 0);
    T_EQ_INT(c1.n_robust_ok, c2.n_robust_ok);
    for (int k = 0; k < s1.n; k++) T_EQ_INT(s1.broke[k], s2.broke[k]);
    model_free(copy);
}

/* ---- masking flags of an AutoAttack run ---- */

TEST(autoattack_masking_flags) {
    AttackResult r[6];
    memset(r, 0, sizeof r);
    AttackParams aa;
    attack_params_default(&aa);
    attack_params_apply(&aa, attack_find("autoattack"));
    aa.eps = 0.1;
    AttackParams comp[AA_MAX_STAGES];
    int n = autoattack_stages(&aa, comp);
    T_EQ_INT(n, 4);
    long robust[] = {400, 380, 380, 370};
    for (int k = 0; k < n; k++) {
        r[k].p = comp[k];
        r[k].c.n = 1000;
        r[k].c.n_clean_ok = 900;
        r[k].c.n_robust_ok = robust[k];
    }
    r[4].p = aa;
    r[4].c = r[3].c;
    /* a standalone Square far weaker than the ensemble: no black-box flag on either (the ensemble has Square) */
    attack_params_default(&r[5].p);
    attack_params_apply(&r[5].p, attack_find("square"));
    r[5].p.eps = 0.1;
    r[5].c.n = 1000;
    r[5].c.n_clean_ok = 900;
    r[5].c.n_robust_ok = 600;
    unsigned want[6] = {0, 0, 0, MASK_BLACKBOX_STRONGER, MASK_BLACKBOX_STRONGER, 0};
    for (int i = 0; i < 6; i++) T_ASSERT_MSG(attack_flags(r, 6, i) == want[i], "row %d: flags %#x want %#x", i, attack_flags(r, 6, i), want[i]);
    /* Square broke nothing more: no flag */
    r[3].c.n_robust_ok = r[4].c.n_robust_ok = 380;
    for (int i = 0; i < 6; i++) T_EQ_INT(attack_flags(r, 6, i), 0);
    /* feedback far above true for the same ensemble: feedback-gap */
    AttackResult g[2];
    memset(g, 0, sizeof g);
    g[0].p = g[1].p = aa;
    g[1].p.grad_source = GRAD_FEEDBACK;
    g[0].c.n = g[1].c.n = 1000;
    g[0].c.n_clean_ok = g[1].c.n_clean_ok = 900;
    g[0].c.n_robust_ok = 100;
    g[1].c.n_robust_ok = 500;
    T_EQ_INT(attack_flags(g, 2, 1), MASK_FEEDBACK_GAP);
    T_EQ_INT(attack_flags(g, 2, 0), 0);
}

/* ---- the command line and the database rows ---- */

static int count_rows(const char *db, const char *where) {
    sqlite3 *h;
    if (sqlite3_open(db, &h) != SQLITE_OK) return -1;
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM evals WHERE %s", where);
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

TEST(autoattack_cli) {
    char cmd[4096], out[16384], ck[1024], db[1024];
    snprintf(ck, sizeof ck, "%s/aa_small.ckpt", test_tmpdir());
    snprintf(db, sizeof db, "%s/aa.db", test_tmpdir());
    Model *m = lenet(NULL, 16, 5, 1);
    CkptMeta meta = {0};
    meta_set(&meta, "dataset", "synthetic:40:1x16x16:5");
    T_ASSERT(ckpt_save(ck, m, &meta) == 0);
    model_free(m);
    int rc;
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack autoattack --eps 8/255,0.1 --steps 5 --queries 40 --targets 2 --grad true,feedback "
             "--db %s", test_exe(), ck, db);
    rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_CONTAINS(out, "  1.apgd-ce eps 8/255");
    T_CONTAINS(out, "  4.square eps 0.1");
    T_CONTAINS(out, "autoattack(standard) eps 8/255 grad true: clean");
    T_CONTAINS(out, "recorded 20 evaluations");
    T_CONTAINS(out, "broken by apgd-ce ");
    /* the ensemble's one-line summary is the last line printed */
    size_t L = strlen(out);
    while (L > 0 && out[L - 1] == '\n') out[--L] = 0;
    const char *last = strrchr(out, '\n');
    last = last ? last + 1 : out;
    T_ASSERT_MSG(strncmp(last, "autoattack(standard) eps 0.1 grad feedback: clean ", 50) == 0, "last line: %s", last);
    T_CONTAINS(last, "robust ");
    T_EQ_INT(count_rows(db, "attack = 'autoattack'"), 4);
    T_EQ_INT(count_rows(db, "attack = 'apgd-ce' AND steps = 5"), 4);
    T_EQ_INT(count_rows(db, "attack = 'apgd-t'"), 4);
    T_EQ_INT(count_rows(db, "attack = 'fab-t'"), 4);
    T_EQ_INT(count_rows(db, "attack = 'square' AND queries = 40"), 4);
    /* under a suite job key every row has its own key: the Square rows of the true and the feedback run too */
    snprintf(db, sizeof db, "%s/aa_keys.db", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack autoattack --eps 0.1 --steps 3 --queries 20 --targets 2 --grad true,feedback "
             "--limit 12 --job-key J --db %s --quiet", test_exe(), ck, db);
    rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_EQ_INT(count_rows(db, "job_key LIKE 'J/%'"), 10);
    T_EQ_INT(count_rows(db, "job_key = 'J/autoattack.square/0.1/feedback'"), 1);
    T_EQ_INT(count_rows(db, "job_key = 'J/autoattack/0.1/true'"), 1);
    /* rand: APGD-CE and APGD-DLR, eot 20 through the feedback path */
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack autoattack --version rand --eps 8/255 --steps 3 --grad feedback --limit 8 --no-db",
             test_exe(), ck);
    rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_CONTAINS(out, "  2.apgd-dlr");
    T_CONTAINS(out, "autoattack(rand) eps 8/255 grad feedback (eot 20): clean");
    /* standalone attacks, L2 names */
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack apgd-ce,apgd-t-l2,fab-t,square-l2 --eps 0.1 --steps 4 --queries 20 --limit 10 --no-db",
             test_exe(), ck);
    rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_CONTAINS(out, "apgd-t-l2 eps 0.1");
    /* refusals */
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack pgd --targets 3 --no-db", test_exe(), ck);
    rc = test_run(cmd, out, sizeof out);
    T_ASSERT(rc != 0);
    T_CONTAINS(out, "--targets does not apply to --attack pgd");
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack autoattack --version fast --no-db", test_exe(), ck);
    rc = test_run(cmd, out, sizeof out);
    T_ASSERT(rc != 0);
    T_CONTAINS(out, "--version fast: use standard or rand");
    snprintf(ck, sizeof ck, "%s/aa_two.ckpt", test_tmpdir());
    m = lenet(NULL, 16, 2, 1);
    meta_set(&meta, "dataset", "synthetic:40:1x16x16:2");
    T_ASSERT(ckpt_save(ck, m, &meta) == 0);
    model_free(m);
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack pgd,apgd-dlr --no-db", test_exe(), ck);
    rc = test_run(cmd, out, sizeof out);
    T_ASSERT(rc != 0);
    T_CONTAINS(out, "apgd-dlr: the DLR loss needs at least 3 classes");
    T_ASSERT_MSG(!strstr(out, " 1 pgd"), "the refusal came after work had started: %s", out);
}
