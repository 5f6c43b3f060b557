/* test_hash_attacks.c -- hashing attacks (attacks/attack.h, OBJ_HASH): the objective's input gradient
 * against central finite differences of the objective written out here in double (with a canary), the
 * eps-ball and [0,1] after every step, eps = 0 leaves mAP unchanged, true = feedback on BP (and not on
 * uSF), PGD-1 = FGSM for the hashing objective, and the untargeted / targeted attacks on a DPSH model
 * trained here on a few thousand Fashion-MNIST examples (synthetic data when Fashion-MNIST is absent). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "attacks/flags.h"
#include "harness/checkpoint.h"
#include "harness/hash.h"
#include "harness/train.h"
#include "rules/build.h"
#include "tests/test.h"

/* A hashing model: arch with a linear(bits) + tanh head. */
static Model *hash_model(const char *arch, const char *rule, int c, int h, int w, int bits, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, arch, c, h, w, bits);
    snprintf(s.head, sizeof s.head, "hash");
    snprintf(s.hidden, sizeof s.hidden, "32");
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = seed;
    Model *m = model_create(&s, rule ? rule_find(rule) : NULL, &ro, seed);
    CHECK(m);
    return m;
}

static Dataset synth(int n, const char *shape, int classes) {
    Dataset d;
    char name[64];
    snprintf(name, sizeof name, "synthetic:%d:%s:%d", n, shape, classes);
    CHECK(dataset_open(name, NULL, SPLIT_TEST, &d) == 0);
    return d;
}

static void hash_params(AttackParams *p, int targeted, const char *eps, int steps) {
    attack_params_default(p);
    p->kind = ATK_PGD;
    p->objective = OBJ_HASH;
    p->targeted = targeted;
    p->steps = steps;
    attack_set_eps(p, eps);
    attack_set_alpha(p, "");
}

/* ---- the objective's gradient ---- */

/* J = sum_i sgn * u_i . r_i / K in double, from the model's forward (the oracle of the attack's gradient). */
static double objective_sum(Model *m, Work *w, const float *x, const float *ref, int n, int K, int targeted) {
    const float *u = model_forward(m, w, x, n, FWD_INFER);
    double s = 0;
    for (long j = 0; j < (long)n * K; j++) s += (double)u[j] * ref[j];
    return (targeted ? s : -s) / K;
}

/* the attack's input gradient: attack_objective_hash's dout through the model's exact backward */
static void hash_grad(Model *m, const float *x, const float *ref, int n, int targeted, float *g) {
    const int K = model_out_dim(m), D = model_in_dim(m);
    Work *w = work_create(m, n);
    AttackParams p;
    hash_params(&p, targeted, "0", 1);
    HashObjective ho = {ref, n};
    float *loss = xmalloc(sizeof(float) * n), *dout = xmalloc(sizeof(float) * (size_t)n * K);
    uint8_t *ok = xmalloc((size_t)n);
    const float *u = model_forward(m, w, x, n, FWD_INFER);
    attack_objective_hash(&ho, &p, u, NULL, n, K, 0, loss, ok, dout);
    model_backward(m, w, dout, BW_INPUT | BW_TRUE);
    memcpy(g, w->dx, sizeof(float) * (size_t)n * D);
    free(loss); free(dout); free(ok);
    work_free(w);
}

static double fd_worst(Model *m, const float *g, const float *x0, const float *ref, int n, int targeted) {
    const int D = model_in_dim(m), K = model_out_dim(m);
    const double h = 1e-3;
    Work *w = work_create(m, n);
    float *x = xmalloc(sizeof(float) * (size_t)n * D);
    memcpy(x, x0, sizeof(float) * (size_t)n * D);
    double worst = 0;
    for (long j = 0; j < (long)n * D; j++) {
        float v = x[j];
        x[j] = v + (float)h;
        double lp = objective_sum(m, w, x, ref, n, K, targeted);
        x[j] = v - (float)h;
        double lm = objective_sum(m, w, x, ref, n, K, targeted);
        x[j] = v;
        double fd = (lp - lm) / (2 * h), r = fabs(g[j] - fd) / (2e-4 + 2e-2 * fabs(fd));
        if (r > worst) worst = r;
    }
    free(x);
    work_free(w);
    return worst;
}

TEST(attack_hash_objective_gradient_matches_finite_differences) {
    for (int targeted = 0; targeted < 2; targeted++) {
        Model *m = hash_model("mlp", NULL, 1, 5, 5, 12, 3 + targeted);
        const int n = 3, D = model_in_dim(m), K = model_out_dim(m);
        Dataset d = synth(n, "1x5x5", 3);
        float *ref = xmalloc(sizeof(float) * n * K), *g = xmalloc(sizeof(float) * n * D);
        Rng r;
        rng_seed(&r, 11, RNG_DATA, (uint64_t)targeted);
        for (int j = 0; j < n * K; j++) ref[j] = rng_below(&r, 2) ? 1.0f : -1.0f;
        hash_grad(m, d.x, ref, n, targeted, g);
        double nz = 0;
        for (int j = 0; j < n * D; j++) nz += fabs(g[j]);
        T_ASSERT_MSG(nz > 1e-4, "targeted %d: gradient is (almost) all zero", targeted);
        double worst = fd_worst(m, g, d.x, ref, n, targeted);
        T_ASSERT_MSG(worst <= 1, "targeted %d: hashing objective gradient vs finite differences: worst ratio %.3g", targeted, worst);
        /* canary: the untargeted and targeted objectives have opposite gradients; the other one must fail */
        for (int j = 0; j < n * D; j++) g[j] = -g[j];
        T_ASSERT_MSG(fd_worst(m, g, d.x, ref, n, targeted) > 1, "canary: a negated gradient passed");
        free(ref); free(g);
        dataset_close(&d);
        model_free(m);
    }
}

/* ---- eps ball and box after every step ---- */

typedef struct Ball { long calls, bad; double eps; } Ball;
static void ball_hook(void *ctx, const float *x, const float *cur, int n, int D, const AttackParams *p, int step) {
    Ball *b = ctx;
    b->calls++;
    for (long j = 0; j < (long)n * D; j++) {
        double dv = (double)cur[j] - x[j];
        if (!(cur[j] >= 0.0f && cur[j] <= 1.0f) || fabs(dv) > b->eps + 1e-7) {
            if (b->bad++ < 3)
                test_fail_at(__FILE__, __LINE__, "%s step %d value %ld: x %.9g x_adv %.9g eps %.9g", attack_name(p), step, j,
                             x[j], cur[j], b->eps);
        }
    }
}

TEST(attack_hash_every_step_stays_in_ball_and_box) {
    Dataset q = synth(30, "1x8x8", 4), db = synth(120, "1x8x8", 4);
    Model *bp = hash_model("mlp", NULL, 1, 8, 8, 16, 1), *brsf = hash_model("mlp", "brsf", 1, 8, 8, 16, 2);
    uint64_t *codes = xmalloc(sizeof(uint64_t) * db.n);
    model_codes(brsf, &db, 64, codes);
    for (int v = 0; v < 6; v++) {
        AttackParams p;
        hash_params(&p, v & 1, "8/255", 6);
        p.restarts = 2;
        p.batch = 11;
        p.eot = 2;
        Model *crafter = NULL;
        if (v / 2 == 1) attack_set_grad(&p, "feedback");
        if (v / 2 == 2) { attack_set_grad(&p, "transfer:bp"); crafter = bp; }
        Ball b = {0, 0, p.eps};
        EvalCounts c;
        HashCounts h;
        T_ASSERT(attack_hash_evaluate(brsf, crafter, &q, &db, codes, 0, 0, &p, ball_hook, &b, &c, &h) == 0);
        T_ASSERT_MSG(b.calls >= 3 * 2 * 7, "variant %d: hook called %ld times", v, b.calls);
        T_EQ_INT(c.n, 30);
        T_EQ_INT(h.n_db, 120);
        T_EQ_INT(h.bits, 16);
        T_ASSERT(c.mean_linf <= p.eps + 1e-7);
        T_ASSERT(h.map_clean >= 0 && h.map_clean <= 1 && h.map_adv >= 0 && h.map_adv <= 1);
        T_ASSERT(p.targeted ? isfinite(h.tmap_adv) : isnan(h.tmap_adv));
    }
    free(codes);
    model_free(bp);
    model_free(brsf);
    dataset_close(&q);
    dataset_close(&db);
}

/* canary for the hook: against half the budget the same check must fail */
static void ball_canary(void) {
    Dataset q = synth(6, "1x8x8", 4), db = synth(40, "1x8x8", 4);
    Model *m = hash_model("mlp", NULL, 1, 8, 8, 16, 1);
    uint64_t codes[40];
    model_codes(m, &db, 40, codes);
    AttackParams p;
    hash_params(&p, 0, "8/255", 3);
    Ball b = {0, 0, p.eps / 2};
    EvalCounts c;
    HashCounts h;
    attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, ball_hook, &b, &c, &h);
    model_free(m);
    dataset_close(&q);
    dataset_close(&db);
}
TEST(attack_hash_ball_check_canary) { T_ASSERT(test_expect_failure(ball_canary)); }

/* ---- eps 0, true = feedback on BP, PGD-1 = FGSM ---- */

TEST(attack_hash_eps0_leaves_map_unchanged) {
    Dataset q = synth(40, "1x8x8", 4), db = synth(200, "1x8x8", 4);
    Model *m = hash_model("mlp", "usf", 1, 8, 8, 24, 5);
    uint64_t *codes = xmalloc(sizeof(uint64_t) * db.n);
    model_codes(m, &db, 64, codes);
    double want = evaluate_map(m, &q, &db, 0, 0, NULL);
    for (int v = 0; v < 4; v++) {
        AttackParams p;
        hash_params(&p, v & 1, "0", 5);
        if (v >= 2) attack_set_grad(&p, "feedback");
        EvalCounts c;
        HashCounts h;
        T_ASSERT(attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, NULL, NULL, &c, &h) == 0);
        T_ASSERT_MSG(h.map_adv == h.map_clean && h.prec_adv == h.prec_clean, "variant %d: eps 0 mAP %.9g -> %.9g", v,
                     h.map_clean, h.map_adv);
        T_NEAR(h.map_clean, want, 1e-12);
        T_EQ_INT(c.n_flipped, 0);
        T_ASSERT(c.mean_linf == 0 && h.mean_hamming == 0);
        if (p.targeted) T_ASSERT(h.tmap_adv == h.tmap_clean);
        AttackResult r = {.p = p, .c = c, .h = h};
        T_ASSERT(!(attack_flags(&r, 1, 0) & MASK_EPS0));
        r.h.map_adv += 0.01; /* the flag fires when eps 0 changes the mAP */
        T_ASSERT(attack_flags(&r, 1, 0) & MASK_EPS0);
    }
    free(codes);
    model_free(m);
    dataset_close(&q);
    dataset_close(&db);
}

/* every adversarial example of an evaluation, through the hook's last step */
typedef struct Grab { float *x; long n, cap; int steps; } Grab;
static void grab_hook(void *ctx, const float *x, const float *cur, int n, int D, const AttackParams *p, int step) {
    Grab *g = ctx;
    if (step != p->steps) return;
    CHECK(g->n + (long)n * D <= g->cap);
    memcpy(g->x + g->n, cur, sizeof(float) * (size_t)n * D);
    g->n += (long)n * D;
}

TEST(attack_hash_bp_true_equals_feedback) {
    Dataset q = synth(24, "1x16x16", 4), db = synth(100, "1x16x16", 4);
    const char *rules[] = {"bp", "usf"};
    for (int r = 0; r < 2; r++) {
        Model *m = hash_model("lenet5", rules[r], 1, 16, 16, 16, 7);
        uint64_t *codes = xmalloc(sizeof(uint64_t) * db.n);
        model_codes(m, &db, 64, codes);
        const long cap = (long)q.n * model_in_dim(m);
        Grab a = {xmalloc(sizeof(float) * cap), 0, cap, 0}, b = {xmalloc(sizeof(float) * cap), 0, cap, 0};
        for (int t = 0; t < 2; t++) {
            AttackParams p;
            hash_params(&p, t, "16/255", 4);
            EvalCounts c1, c2;
            HashCounts h1, h2;
            a.n = b.n = 0;
            T_ASSERT(attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, grab_hook, &a, &c1, &h1) == 0);
            attack_set_grad(&p, "feedback");
            T_ASSERT(attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, grab_hook, &b, &c2, &h2) == 0);
            int same = a.n == b.n && memcmp(a.x, b.x, sizeof(float) * (size_t)a.n) == 0;
            if (r == 0) {
                T_ASSERT_MSG(same, "bp targeted %d: true and feedback adversarials differ", t);
                T_ASSERT(h1.map_adv == h2.map_adv && c1.n_robust_ok == c2.n_robust_ok);
            } else {
                T_ASSERT_MSG(!same, "canary: usf feedback adversarials equal the true-gradient ones (targeted %d)", t);
            }
        }
        free(a.x); free(b.x); free(codes);
        model_free(m);
    }
    dataset_close(&q);
    dataset_close(&db);
}

TEST(attack_hash_pgd_one_step_equals_fgsm) {
    Dataset d = synth(16, "1x8x8", 4);
    Model *m = hash_model("mlp", NULL, 1, 8, 8, 16, 9);
    const int n = 16, D = model_in_dim(m), K = model_out_dim(m);
    float *ref = xmalloc(sizeof(float) * n * K), *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    Work *w = work_create(m, n);
    const float *u = model_forward(m, w, d.x, n, FWD_INFER);
    for (int j = 0; j < n * K; j++) ref[j] = u[j] >= 0 ? 1.0f : -1.0f;
    HashObjective ho = {ref, n};
    AttackScratch *s = attack_scratch_create(m, n);
    s->objective = attack_objective_hash;
    s->objective_ctx = &ho;
    AttackExample ex[16];
    AttackParams p;
    hash_params(&p, 0, "8/255", 1);
    p.kind = ATK_FGSM;
    attack_fgsm(m, w, d.x, d.y, n, &p, a, ex, s);
    p.kind = ATK_PGD;
    p.random_start = 0;
    attack_set_alpha(&p, "r1");
    attack_pgd(m, w, d.x, d.y, n, &p, b, ex, s);
    T_ASSERT_MSG(memcmp(a, b, sizeof(float) * n * D) == 0, "hashing PGD-1 differs from FGSM");
    /* the step goes against the clean code: every moved pixel moved by eps in the sign of -dJ/dx's opposite */
    float *g = xmalloc(sizeof(float) * n * D);
    hash_grad(m, d.x, ref, n, 0, g);
    long checked = 0, wrong = 0;
    for (int j = 0; j < n * D; j++) {
        float want = d.x[j] + (float)p.eps * (float)((g[j] > 0) - (g[j] < 0));
        if (want < 0 || want > 1) continue;
        checked++;
        wrong += a[j] != want;
    }
    T_ASSERT(checked > n * D / 2);
    T_EQ_INT(wrong, 0);
    free(g); free(ref); free(a); free(b);
    attack_scratch_free(s);
    work_free(w);
    model_free(m);
    dataset_close(&d);
}

/* ---- a trained DPSH model: the attacks do what they claim ---- */

TEST(attack_hash_trained_bp_model) {
    Dataset tr, te, q, db, train;
    int fm = dataset_open("fashion-mnist", NULL, SPLIT_TRAIN, &tr) == 0;
    if (fm) {
        T_ASSERT(dataset_open("fashion-mnist", NULL, SPLIT_TEST, &te) == 0);
        tr.n = 5000;
        te.n = 1000;
    } else {
        err_clear();
        T_ASSERT(dataset_open("synthetic:5000:1x28x28:10", NULL, SPLIT_TRAIN, &tr) == 0);
        T_ASSERT(dataset_open("synthetic:1000:1x28x28:10", NULL, SPLIT_TEST, &te) == 0);
    }
    T_ASSERT(hash_splits(&tr, &te, 20, 3000, 1, &q, &db, &train) == 0);
    Model *m = hash_model("lenet5", NULL, 1, 28, 28, 32, 1);
    dataset_channel_stats(&train, m->L[0].mean, m->L[0].std);
    TrainOpts o;
    train_opts_default(&o);
    o.task = TASK_HASH;
    o.optimizer = OPT_ADAM;
    o.lr = 0.001;
    o.epochs = 5;
    o.batch = 64;
    o.probe_n = 0;
    o.quiet = 1;
    T_ASSERT(train_run(m, &train, NULL, &o, 0, NULL, NULL) == 0);
    uint64_t *codes = xmalloc(sizeof(uint64_t) * db.n);
    model_codes(m, &db, 256, codes);
    double clean = evaluate_map(m, &q, &db, 0, 0, NULL);
    T_ASSERT_MSG(clean > 0.3, "the DPSH model reached only mAP %.3f", clean);
    AttackParams p;
    EvalCounts c;
    HashCounts h8, h1, ht;
    /* 8/255 moves a weak 5-epoch model's codes by ~1 bit, within mAP noise on 200 queries: 16/255 is checked */
    hash_params(&p, 0, "16/255", 20);
    T_ASSERT(attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, NULL, NULL, &c, &h8) == 0);
    hash_params(&p, 0, "0.1", 20);
    T_ASSERT(attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, NULL, NULL, &c, &h1) == 0);
    T_EQ_INT(c.n_zero_grad, 0);
    hash_params(&p, 1, "0.1", 20);
    EvalCounts ct;
    T_ASSERT(attack_hash_evaluate(m, NULL, &q, &db, codes, 0, 0, &p, NULL, NULL, &ct, &ht) == 0);
    printf("    %s 32-bit DPSH LeNet-5: mAP clean %.4f; untargeted 16/255 %.4f, 0.1 %.4f (hamming %.1f); targeted 0.1 "
           "mAP %.4f, target-class mAP %.4f -> %.4f\n", fm ? "fashion-mnist" : "synthetic", h8.map_clean, h8.map_adv,
           h1.map_adv, h1.mean_hamming, ht.map_adv, ht.tmap_clean, ht.tmap_adv);
    T_NEAR(h8.map_clean, clean, 1e-12);
    T_ASSERT_MSG(h8.map_adv < h8.map_clean, "untargeted 16/255 did not lower mAP (%.4f -> %.4f)", h8.map_clean, h8.map_adv);
    T_ASSERT_MSG(h1.map_adv < h1.map_clean - 0.05, "untargeted 0.1 lowered mAP only %.4f -> %.4f", h1.map_clean, h1.map_adv);
    T_ASSERT_MSG(h1.map_adv <= h8.map_adv, "a larger budget gave a higher mAP");
    T_ASSERT_MSG(ht.tmap_adv > ht.tmap_clean + 0.03, "targeted 0.1 did not pull the codes to the target class (%.4f -> %.4f)",
                 ht.tmap_clean, ht.tmap_adv);
    T_ASSERT(ht.map_adv < ht.map_clean);
    free(codes);
    model_free(m);
    dataset_close(&q); dataset_close(&db); dataset_close(&train);
    dataset_close(&tr); dataset_close(&te);
}

/* ---- the command line ---- */

TEST(attack_hash_cli) {
    char cmd[4096], out[16384], ck[1024], sur[1024], dbp[1024];
    snprintf(ck, sizeof ck, "%s/hash_small.ckpt", test_tmpdir());
    snprintf(sur, sizeof sur, "%s/hash_sur.ckpt", test_tmpdir());
    snprintf(dbp, sizeof dbp, "%s/hash_cli.db", test_tmpdir());
    for (int k = 0; k < 2; k++) {
        Model *m = hash_model("mlp", k ? "usf" : NULL, 1, 8, 8, 16, 3 + k);
        CkptMeta meta = {0};
        meta_set(&meta, "dataset", "synthetic:200:1x8x8:4");
        meta_set(&meta, "task", "hash");
        meta_set(&meta, "data_seed", "2");
        meta_set(&meta, "queries_per_class", "5");
        T_ASSERT(ckpt_save(k ? sur : ck, m, &meta) == 0);
        model_free(m);
    }
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack pgd --no-db", test_exe(), ck);
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--attack pgd: the checkpoint is a hashing model; use hash-untargeted or hash-targeted");
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack hash-targeted --target 3 --no-db", test_exe(), ck);
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--target does not apply to --attack hash-targeted");
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --task classify --no-db", test_exe(), ck);
    T_ASSERT(test_run(cmd, out, sizeof out) != 0);
    T_CONTAINS(out, "--task classify but the model's head is 'hash'");
    /* a sweep recorded twice under one job key: 2 attacks x 2 eps x 2 sources = 8 rows, no duplicates */
    for (int rep = 0; rep < 2; rep++) {
        snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack hash-untargeted,hash-targeted --eps 0,16/255 --grad true,transfer:%s"
                 " --steps 5 --db %s --job-key hj", test_exe(), ck, sur, dbp);
        int rc = test_run(cmd, out, sizeof out);
        T_EQ_INT(rc, 0);
    }
    T_CONTAINS(out, "20 queries against 380 clean database codes");
    T_CONTAINS(out, "  8 hash-targeted   eps 16/255   grad transfer:");
    T_CONTAINS(out, "target-mAP");
    T_CONTAINS(out, "recorded 8 evaluations");
    snprintf(cmd, sizeof cmd, "sqlite3 %s \"SELECT COUNT(*), SUM(task = 'hash'), SUM(split = 'query'), SUM(steps = 5),"
             " SUM(map_adv = map_clean AND eps = 0) FROM evals\"", dbp);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "8|8|8|8|4");
    snprintf(cmd, sizeof cmd, "%s query hash-table --db %s", test_exe(), dbp);
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
    T_CONTAINS(out, "mAP % under hash-targeted-pgd5 (transfer:ckpt-");
}
