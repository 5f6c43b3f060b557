/* test_attacks.c -- attacks/: the eps-ball and [0,1] after every step of every attack, eps = 0, PGD-1 =
 * FGSM bitwise, the true input gradient against central finite differences (with canaries), FGSM on a
 * linear softmax model against its closed form, true = feedback on BP, PGD <= FGSM + 1 point on a trained
 * LeNet-5, the Square query budget, BN statistics untouched, eps parsing, masking flags and CLI errors.
 * Oracles do not share code with attacks/: finite differences on the model's forward (loss in double),
 * the softmax-regression gradient written out here in double, memcmp of the model's buffers. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "attacks/flags.h"
#include "harness/checkpoint.h"
#include "harness/gemm.h"
#include "harness/loss.h"
#include "harness/train.h"
#include "rules/build.h"
#include "tests/test.h"

/* A small conv net with BN in inference mode: norm - conv3x3(3) - BN - tanh - avgpool2 - fc(K=4),
 * input 1x6x6, with non-trivial normalisation and BN running statistics. rule NULL = bp. */
static Model *small_bn_net(const char *rule, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, "custom", 1, 6, 6, 4);
    Model *m = xcalloc(1, sizeof *m);
    model_init(m, &s);
    int x = model_add(m, L_NORM, "norm", -1);
    x = model_add_conv(m, "conv", x, 3, 3, 1, 1, 1);
    x = model_add(m, L_BN, "bn", x);
    x = model_add(m, L_TANH, "", x);
    x = model_add_pool(m, L_AVGPOOL, x, 2, 2);
    x = model_add(m, L_FLATTEN, "", x);
    model_add_linear(m, "fc", x, 4);
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = seed;
    rule_attach(m, rule ? rule_find(rule) : NULL, &ro);
    model_finalize(m, seed);
    rule_init_state(m, &ro);
    m->L[0].mean[0] = 0.3f;
    m->L[0].std[0] = 0.4f;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_BN)
            for (int c = 0; c < m->L[i].c; c++) {
                m->L[i].gamma[c] = 0.7f + 0.4f * c; m->L[i].beta[c] = 0.1f * c - 0.05f;
                m->L[i].run_mean[c] = 0.1f * c - 0.1f; m->L[i].run_var[c] = 0.6f + 0.5f * c;
            }
    return m;
}

static void rand_batch(float *x, int32_t *y, int n, int D, int K, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed, RNG_DATA, 77);
    for (long j = 0; j < (long)n * D; j++) x[j] = rng_uniform(&r);
    for (int i = 0; i < n; i++) y[i] = (int32_t)rng_below(&r, (uint32_t)K);
}

/* ---- finite differences ---- */

/* Sum over the batch of the per-example CE (the attack objective), accumulated in double. */
static double total_loss(Model *m, Work *w, const float *x, const int32_t *y, int n) {
    const float *lg = model_forward(m, w, x, n, FWD_INFER);
    return loss_softmax_ce(lg, y, n, model_out_dim(m), 1.0f, NULL, NULL, NULL) * n;
}

/* Central differences with step h on every input coordinate; returns max |a - fd| / (atol + rtol |fd|). */
static double fd_ratio(Model *m, const float *grad, const float *x0, const int32_t *y, int n, double h, double atol,
                       double rtol) {
    const int D = model_in_dim(m);
    Work *w = work_create(m, n);
    float *x = xmalloc(sizeof(float) * (size_t)n * D);
    memcpy(x, x0, sizeof(float) * (size_t)n * D);
    double worst = 0;
    for (long j = 0; j < (long)n * D; j++) {
        float v = x[j];
        x[j] = v + (float)h;
        double lp = total_loss(m, w, x, y, n);
        x[j] = v - (float)h;
        double lm = total_loss(m, w, x, y, n);
        x[j] = v;
        double fd = (lp - lm) / (2 * h), r = fabs(grad[j] - fd) / (atol + rtol * fabs(fd));
        if (r > worst) worst = r;
    }
    free(x);
    work_free(w);
    return worst;
}

/* the model's input gradient of the summed CE, per-example scale 1 (the one attacks use) */
static void input_grad(Model *m, const float *x, const int32_t *y, int n, int flags, float *g) {
    Work *w = work_create(m, n);
    int K = model_out_dim(m);
    float *dl = xmalloc(sizeof(float) * (size_t)n * K);
    const float *lg = model_forward(m, w, x, n, FWD_INFER);
    loss_softmax_ce(lg, y, n, K, 1.0f, dl, NULL, NULL);
    model_backward(m, w, dl, flags);
    memcpy(g, w->dx, sizeof(float) * (size_t)n * model_in_dim(m));
    free(dl);
    work_free(w);
}

/* Tolerance: float32 forward, loss in double; with h = 1e-3 the rounding error of the logits (~1e-7
 * relative) contributes ~1e-4 to the difference quotient and the curvature term O(h^2) ~1e-6, so
 * atol 5e-4 plus 2% relative passes correct gradients (typical entries 1e-2 .. 1) and fails a sign flip
 * or a missing BN/normalisation factor by orders of magnitude. */
#define FD_H 1e-3
#define FD_ATOL 5e-4
#define FD_RTOL 2e-2

TEST(attack_true_gradient_matches_finite_differences) {
    const char *rules[] = {NULL, "fa", "brsf"};
    for (size_t r = 0; r < ARRAY_LEN(rules); r++) {
        Model *m = small_bn_net(rules[r], 5 + r);
        const int n = 3, D = model_in_dim(m);
        float *x = xmalloc(sizeof(float) * n * D), *g = xmalloc(sizeof(float) * n * D);
        int32_t y[3];
        rand_batch(x, y, n, D, 4, 9 + r);
        input_grad(m, x, y, n, BW_INPUT | BW_TRUE, g);
        double nz = 0;
        for (int j = 0; j < n * D; j++) nz += fabs(g[j]);
        T_ASSERT_MSG(nz > 1e-3, "rule %s: gradient is (almost) all zero", rules[r] ? rules[r] : "bp");
        double ratio = fd_ratio(m, g, x, y, n, FD_H, FD_ATOL, FD_RTOL);
        T_ASSERT_MSG(ratio <= 1, "rule %s: true gradient vs finite differences: worst ratio %.3g", rules[r] ? rules[r] : "bp", ratio);
        /* canary 1: one coordinate with the wrong sign must be flagged */
        int j0 = 0;
        for (int j = 0; j < n * D; j++) if (fabs(g[j]) > fabs(g[j0])) j0 = j;
        g[j0] = -g[j0];
        T_ASSERT_MSG(fd_ratio(m, g, x, y, n, FD_H, FD_ATOL, FD_RTOL) > 1, "canary: a sign-flipped gradient passed");
        /* canary 2: FA's feedback gradient is not the true gradient and must be flagged */
        if (rules[r] && str_eq(rules[r], "fa")) {
            input_grad(m, x, y, n, BW_INPUT, g);
            T_ASSERT_MSG(fd_ratio(m, g, x, y, n, FD_H, FD_ATOL, FD_RTOL) > 1, "canary: FA feedback gradient passed as true");
        }
        free(x); free(g);
        model_free(m);
    }
}

/* ---- FGSM closed form on a linear softmax model ---- */

TEST(attack_fgsm_linear_closed_form) {
    ModelSpec s;
    model_spec_default(&s, "mlp", 1, 4, 5, 3);
    s.hidden[0] = 0; /* no hidden layer: logits = W (x - mean)/std + b */
    Model *m = model_create(&s, NULL, NULL, 3);
    T_ASSERT(m != NULL);
    if (!m) return;
    m->L[0].mean[0] = 0.25f;
    m->L[0].std[0] = 0.5f;
    const Layer *fc = model_param_layer(m, 0);
    const int n = 6, D = 20, K = 3;
    float x[6 * 20], xa[6 * 20];
    int32_t y[6];
    rand_batch(x, y, n, D, K, 4);
    AttackParams p;
    attack_params_default(&p);
    attack_set_eps(&p, "0.1");
    Work *w = work_create(m, n);
    AttackScratch *sc = attack_scratch_create(m, n);
    AttackExample ex[6];
    attack_fgsm(m, w, x, y, n, &p, xa, ex, sc);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        double z[3], mx = -1e300, sum = 0;
        for (int k = 0; k < K; k++) {
            z[k] = fc->b[k];
            for (int j = 0; j < D; j++) z[k] += (double)fc->W[k * D + j] * ((x[i * D + j] - 0.25) / 0.5);
            if (z[k] > mx) mx = z[k];
        }
        for (int k = 0; k < K; k++) sum += exp(z[k] - mx);
        for (int j = 0; j < D; j++) {
            double g = 0;
            for (int k = 0; k < K; k++) g += fc->W[k * D + j] * (exp(z[k] - mx) / sum - (k == y[i])) / 0.5;
            if (fabs(g) < 1e-6) continue; /* sign undecidable in float */
            float e = x[i * D + j] + 0.1f * (g > 0 ? 1.0f : -1.0f);
            e = e < 0 ? 0 : e > 1 ? 1 : e;
            if (xa[i * D + j] != e) test_fail_at(__FILE__, __LINE__, "example %d pixel %d: %.9g != closed form %.9g", i, j, xa[i * D + j], e);
            checked++;
        }
    }
    T_ASSERT(checked > n * D * 9 / 10);
    attack_scratch_free(sc);
    work_free(w);
    model_free(m);
}

/* ---- the eps ball and [0,1] after every step ---- */

typedef struct BallCheck { long calls, bad; double eps; int norm; } BallCheck;

static void ball_hook(void *ctx, const float *x, const float *cur, int n, int D, const AttackParams *p, int step) {
    BallCheck *b = ctx;
    b->calls++;
    for (int i = 0; i < n; i++) {
        double l2 = 0;
        for (int j = 0; j < D; j++) {
            double d = (double)cur[(long)i * D + j] - x[(long)i * D + j];
            l2 += d * d;
            float v = cur[(long)i * D + j];
            if (!(v >= 0.0f && v <= 1.0f) || fabs(d) > b->eps + 1e-7) {
                if (b->bad++ < 3)
                    test_fail_at(__FILE__, __LINE__, "%s step %d example %d pixel %d: x %.9g x_adv %.9g eps %.9g",
                                 attack_name(p), step, i, j, x[(long)i * D + j], v, b->eps);
            }
        }
        if (b->norm == NORM_L2 && sqrt(l2) > b->eps * (1 + 1e-6) + 1e-7 && b->bad++ < 3)
            test_fail_at(__FILE__, __LINE__, "%s step %d example %d: L2 %.9g > eps %.9g", attack_name(p), step, i, sqrt(l2), b->eps);
    }
}

static Dataset synth(int n) {
    Dataset d;
    char name[64];
    snprintf(name, sizeof name, "synthetic:%d:1x16x16:5", n);
    CHECK(dataset_open(name, NULL, SPLIT_TEST, &d) == 0);
    return d;
}

static Model *lenet(const char *rule, int c, int h, int w, int k, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", c, h, w, k);
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = seed;
    return model_create(&s, rule ? rule_find(rule) : NULL, &ro, seed);
}

TEST(attack_every_step_stays_in_ball_and_box) {
    Dataset d = synth(24);
    const char *rules[] = {"bp", "brsf"};
    for (int r = 0; r < 2; r++) {
        Model *m = lenet(rules[r], 1, 16, 16, 5, 2);
        static const char *atk[] = {"fgsm", "pgd", "pgd-l2", "square"};
        for (int a = 0; a < 4; a++)
            for (int v = 0; v < 3; v++) {
                AttackParams p;
                attack_params_default(&p);
                const AttackInfo *ai = attack_find(atk[a]);
                p.kind = ai->kind;
                p.norm = ai->norm;
                attack_set_eps(&p, a == 2 ? "0.5" : "8/255");
                p.steps = 5;
                p.restarts = 2;
                p.queries = 40;
                p.p_init = 0.3;
                p.batch = 10;
                p.targeted = v == 1;
                if (v == 2) { attack_set_grad(&p, "feedback"); p.eot = 2; }
                attack_set_alpha(&p, v == 2 ? "r0.5" : "");
                BallCheck b = {0, 0, p.eps, p.norm};
                EvalCounts c;
                T_ASSERT(attack_evaluate(m, NULL, &d, 0, &p, ball_hook, &b, NULL, &c) == 0);
                long want = p.kind == ATK_FGSM ? 3 : p.kind == ATK_PGD ? 3 * 2 * 6 : 3;
                T_ASSERT_MSG(b.calls >= want, "%s: hook called %ld times, expected at least %ld", atk[a], b.calls, want);
                T_EQ_INT(c.n, 24);
            }
        model_free(m);
    }
    dataset_close(&d);
}

/* canary: the same check against half the budget must catch an FGSM step (run isolated: it records
 * failures on purpose) */
static void ball_canary(void) {
    Dataset d = synth(4);
    Model *m = lenet(NULL, 1, 16, 16, 5, 2);
    AttackParams p;
    attack_params_default(&p);
    attack_set_eps(&p, "8/255");
    BallCheck b = {0, 0, p.eps / 2, NORM_LINF};
    EvalCounts c;
    attack_evaluate(m, NULL, &d, 4, &p, ball_hook, &b, NULL, &c);
    model_free(m);
    dataset_close(&d);
}

TEST(attack_ball_check_canary) { T_ASSERT(test_expect_failure(ball_canary)); }

/* ---- eps = 0, PGD-1 = FGSM, true = feedback on BP ---- */

TEST(attack_eps0_reproduces_clean_accuracy) {
    Dataset d = synth(60);
    Model *m = lenet(NULL, 1, 16, 16, 5, 4);
    static const char *atk[] = {"fgsm", "pgd", "pgd-l2", "square"};
    for (int a = 0; a < 4; a++) {
        AttackParams p;
        attack_params_default(&p);
        p.kind = attack_find(atk[a])->kind;
        p.norm = attack_find(atk[a])->norm;
        attack_set_eps(&p, "0");
        attack_set_alpha(&p, "");
        p.queries = 20;
        EvalCounts c;
        T_ASSERT(attack_evaluate(m, NULL, &d, 0, &p, NULL, NULL, NULL, &c) == 0);
        T_ASSERT_MSG(c.n_robust_ok == c.n_clean_ok && c.n_flipped == 0, "%s eps 0: clean %ld robust %ld flipped %ld", atk[a],
                     c.n_clean_ok, c.n_robust_ok, c.n_flipped);
        T_ASSERT(c.mean_linf == 0);
        AttackResult res = {.p = p, .c = c};
        T_ASSERT(!(attack_flags(&res, 1, 0) & MASK_EPS0));
    }
    double acc = evaluate(m, &d, 64, NULL);
    AttackParams p;
    attack_params_default(&p);
    EvalCounts c;
    attack_evaluate(m, NULL, &d, 0, &p, NULL, NULL, NULL, &c);
    T_NEAR(acc * 60, c.n_clean_ok, 1e-9);
    model_free(m);
    dataset_close(&d);
}

static void run_attack(Model *m, const AttackParams *p, const float *x, const int32_t *y, int n, float *xa,
                       AttackExample *ex) {
    Work *w = work_create(m, n);
    AttackScratch *s = attack_scratch_create(m, n);
    attack_info(p)->fn(m, w, x, y, n, p, xa, ex, s);
    attack_scratch_free(s);
    work_free(w);
}

TEST(attack_pgd_one_step_equals_fgsm) {
    Dataset d = synth(32);
    Model *m = lenet(NULL, 1, 16, 16, 5, 6);
    const int n = 32, D = 256;
    float *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    AttackExample ex[32];
    for (int t = 0; t < 2; t++) {
        AttackParams p;
        attack_params_default(&p);
        attack_set_eps(&p, "8/255");
        p.targeted = t;
        run_attack(m, &p, d.x, d.y, n, a, ex);
        p.kind = ATK_PGD;
        p.steps = 1;
        p.random_start = 0;
        attack_set_alpha(&p, "r1");
        T_ASSERT(p.alpha == p.eps);
        run_attack(m, &p, d.x, d.y, n, b, ex);
        T_ASSERT_MSG(memcmp(a, b, sizeof(float) * n * D) == 0, "targeted %d: PGD-1 differs from FGSM", t);
        long moved = 0;
        for (int j = 0; j < n * D; j++) moved += a[j] != d.x[j];
        T_ASSERT(moved > n * D / 4);
    }
    free(a); free(b);
    model_free(m);
    dataset_close(&d);
}

/* PGD with its batch split over 2 or 3 threads (the input copied, the gradient copied and the step taken by
 * the thread whose slice of the pass computed those examples: work_split) against one thread, on a batch
 * that splits unevenly. Not bitwise: the fully connected layers multiply groups of samples whose sizes
 * follow the split, and the products' rounding follows their sizes (threads.h), so the input gradients
 * agree to rounding. L2 steps along each example's normalised gradient: the adversarials agree to 1e-5.
 * Linf steps along its sign: at most a few coordinates with a gradient near 0 may step the other way.
 * A slice stepped twice, skipped or taken from another example's rows fails both by orders of magnitude. */
static void pgd_threads(Model *m, const Dataset *d, int n, int norm_l2, int T, uint64_t seed, float *xa) {
    AttackParams p;
    attack_params_default(&p);
    p.kind = ATK_PGD;
    p.norm = norm_l2 ? NORM_L2 : NORM_LINF;
    attack_set_eps(&p, norm_l2 ? "0.5" : "8/255");
    attack_set_alpha(&p, "");
    p.steps = 5;
    p.seed = seed;
    AttackExample ex[29];
    blas_set_threads(T);
    Work *w = work_create(m, n);
    blas_set_threads(1);
    CHECK(w->threads == T);
    AttackScratch *s = attack_scratch_create(m, n);
    attack_info(&p)->fn(m, w, d->x, d->y, n, &p, xa, ex, s);
    attack_scratch_free(s);
    work_free(w);
}
static int pgd_threads_match(int norm_l2, int T, uint64_t seed2) {
    const int n = 29, D = 784; /* 28x28: no convolution groups samples (conv.c conv_chunk), which would
                                  make the input gradient depend on the split to rounding (threads.h) */
    Dataset d;
    CHECK(dataset_open("synthetic:29:1x28x28:5", NULL, SPLIT_TEST, &d) == 0);
    Model *m = lenet(NULL, 1, 28, 28, 5, 6);
    float *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    pgd_threads(m, &d, n, norm_l2, 1, 1, a);
    pgd_threads(m, &d, n, norm_l2, T, seed2, b);
    long moved = 0, differ = 0;
    double worst = 0;
    for (long j = 0; j < (long)n * D; j++) {
        moved += a[j] != d.x[j];
        differ += a[j] != b[j];
        if (fabs((double)a[j] - b[j]) > worst) worst = fabs((double)a[j] - b[j]);
    }
    int same = moved > n * D / 4 && (norm_l2 ? worst <= 1e-5 : differ <= n * D / 200);
    free(a); free(b);
    model_free(m);
    dataset_close(&d);
    return same;
}
TEST(attack_pgd_over_threads_equals_one_thread) {
    for (int l2 = 0; l2 < 2; l2++)
        for (int T = 2; T <= 3; T++) T_ASSERT_MSG(pgd_threads_match(l2, T, 1), "%s, %d threads: adversarials differ from one thread's", l2 ? "L2" : "Linf", T);
}
static void pgd_threads_canary(void) { /* another random start must be seen, by either norm */
    T_ASSERT(pgd_threads_match(0, 2, 2) || pgd_threads_match(1, 2, 2));
}
TEST(attack_pgd_threads_check_canary) { T_ASSERT(test_expect_failure(pgd_threads_canary)); }

TEST(attack_bp_true_equals_feedback) {
    Dataset d = synth(16);
    const int n = 16, D = 256;
    float *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    AttackExample ex[16];
    const char *rules[] = {"bp", "brsf"};
    for (int r = 0; r < 2; r++) {
        Model *m = lenet(rules[r], 1, 16, 16, 5, 8);
        AttackParams p;
        attack_params_default(&p);
        p.kind = ATK_PGD;
        attack_set_eps(&p, "16/255");
        attack_set_alpha(&p, "");
        run_attack(m, &p, d.x, d.y, n, a, ex);
        attack_set_grad(&p, "feedback");
        run_attack(m, &p, d.x, d.y, n, b, ex);
        int same = memcmp(a, b, sizeof(float) * n * D) == 0;
        if (r == 0) T_ASSERT_MSG(same, "bp: true and feedback adversarials differ");
        else T_ASSERT_MSG(!same, "canary: brsf feedback adversarials equal the true-gradient ones");
        model_free(m);
    }
    free(a); free(b);
    dataset_close(&d);
}

/* ---- a trained LeNet-5: PGD is at least as strong as FGSM ---- */

TEST(attack_trained_lenet_pgd_not_weaker_than_fgsm) {
    Dataset tr, te;
    int fm = dataset_open("fashion-mnist", NULL, SPLIT_TRAIN, &tr) == 0;
    if (fm) {
        T_ASSERT(dataset_open("fashion-mnist", NULL, SPLIT_TEST, &te) == 0);
        tr.n = 4000;
        te.n = 500;
    } else { /* no Fashion-MNIST on this machine: the synthetic set */
        err_clear();
        T_ASSERT(dataset_open("synthetic:4000:1x28x28:10", NULL, SPLIT_TRAIN, &tr) == 0);
        T_ASSERT(dataset_open("synthetic:500:1x28x28:10", NULL, SPLIT_TEST, &te) == 0);
    }
    Model *m = lenet(NULL, 1, 28, 28, 10, 1);
    dataset_channel_stats(&tr, m->L[0].mean, m->L[0].std);
    TrainOpts o;
    train_opts_default(&o);
    o.epochs = 3;
    o.batch = 64;
    o.lr = 0.02;
    o.probe_n = 0;
    o.quiet = 1;
    T_ASSERT(train_run(m, &tr, NULL, &o, 0, NULL, NULL) == 0);
    double acc = evaluate(m, &te, 250, NULL);
    T_ASSERT_MSG(acc > 0.6, "LeNet-5 trained to only %.1f%%", 100 * acc);
    AttackParams p;
    attack_params_default(&p);
    attack_set_eps(&p, "8/255");
    EvalCounts cf, cp;
    T_ASSERT(attack_evaluate(m, NULL, &te, 0, &p, NULL, NULL, NULL, &cf) == 0);
    p.kind = ATK_PGD;
    p.steps = 10;
    p.random_start = 1;
    attack_set_alpha(&p, "");
    T_NEAR(p.alpha, 2.5 * 8 / 255.0 / 10, 1e-15);
    T_ASSERT(attack_evaluate(m, NULL, &te, 0, &p, NULL, NULL, NULL, &cp) == 0);
    double rf = 100.0 * cf.n_robust_ok / cf.n, rp = 100.0 * cp.n_robust_ok / cp.n;
    printf("    %s LeNet-5: clean %.1f%%, FGSM 8/255 robust %.1f%%, PGD-10 robust %.1f%%\n", fm ? "fashion-mnist" : "synthetic",
           100.0 * cf.n_clean_ok / cf.n, rf, rp);
    T_ASSERT_MSG(rp <= rf + 1, "PGD-10 robust %.2f%% > FGSM %.2f%% + 1", rp, rf);
    T_ASSERT_MSG(rf < 100.0 * cf.n_clean_ok / cf.n, "FGSM did nothing");
    T_EQ_INT(cp.n_zero_grad, 0);
    model_free(m);
    dataset_close(&tr);
    dataset_close(&te);
}

/* ---- Square: the budget, the ball (see the every-step test), batch-size independence ---- */

TEST(attack_square_query_budget) {
    Dataset d = synth(40);
    Model *m = lenet(NULL, 1, 16, 16, 5, 3);
    const int n = 40, D = 256;
    float *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    AttackExample ex[40], ex2[40];
    const char *eps[] = {"0.02", "0.3"};
    for (int e = 0; e < 2; e++) {
        AttackParams p;
        attack_params_default(&p);
        p.kind = ATK_SQUARE;
        attack_set_eps(&p, eps[e]);
        p.queries = 37;
        p.p_init = 0.2;
        run_attack(m, &p, d.x, d.y, n, a, ex);
        int full = 0, early = 0;
        for (int i = 0; i < n; i++) {
            T_ASSERT_MSG(ex[i].queries >= 1 && ex[i].queries <= p.queries, "example %d used %d queries", i, ex[i].queries);
            full += ex[i].queries == p.queries;
            early += ex[i].queries < p.queries;
            if (ex[i].queries < p.queries) T_ASSERT(ex[i].success);
            for (int j = 0; j < D; j++) T_ASSERT(fabsf(a[i * D + j] - d.x[i * D + j]) <= (float)p.eps + 1e-7f);
        }
        if (e == 1) T_ASSERT_MSG(early > 0, "eps 0.3: no example stopped early (success)");
        EvalCounts c;
        p.batch = 7;
        attack_evaluate(m, NULL, &d, 0, &p, NULL, NULL, NULL, &c);
        T_ASSERT(c.queries_max <= p.queries);
        /* batch-size independence: two halves give the same adversarials */
        Work *w = work_create(m, n);
        AttackScratch *s = attack_scratch_create(m, n);
        attack_square(m, w, d.x, d.y, 20, &p, b, ex2, s);
        s->index0 = 20;
        attack_square(m, w, d.x + 20 * D, d.y + 20, 20, &p, b + 20 * D, ex2 + 20, s);
        T_ASSERT_MSG(memcmp(a, b, sizeof(float) * n * D) == 0, "Square depends on the batch split");
        attack_scratch_free(s);
        work_free(w);
        (void)full;
    }
    free(a); free(b);
    model_free(m);
    dataset_close(&d);
}

/* ---- BN running statistics and parameters untouched ---- */

TEST(attack_bn_stats_unchanged) {
    Dataset d = synth(12);
    /* a BN net on 16x16 input: reuse the small net's shape by resizing the data view */
    Model *m = small_bn_net("brsf", 11);
    Dataset v = d;
    v.h = v.w = 6;
    v.n = 12;
    float *xs = xmalloc(sizeof(float) * 12 * 36);
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 36; j++) xs[i * 36 + j] = d.x[i * 256 + j * 7];
    int32_t ys[12];
    for (int i = 0; i < 12; i++) ys[i] = d.y[i] % 4;
    v.x = xs;
    v.y = ys;
    v.classes = 4;
    const Layer *bn = NULL;
    for (int i = 0; i < m->nl; i++) if (m->L[i].kind == L_BN) bn = &m->L[i];
    float mean0[3], var0[3];
    memcpy(mean0, bn->run_mean, sizeof mean0);
    memcpy(var0, bn->run_var, sizeof var0);
    float *params0 = xmalloc(sizeof(float) * m->n_params);
    memcpy(params0, m->params, sizeof(float) * m->n_params);
    static const char *atk[] = {"fgsm", "pgd", "pgd-l2", "square"};
    for (int a = 0; a < 4; a++)
        for (int g = 0; g < 2; g++) {
            AttackParams p;
            attack_params_default(&p);
            p.kind = attack_find(atk[a])->kind;
            p.norm = attack_find(atk[a])->norm;
            attack_set_eps(&p, "0.1");
            attack_set_alpha(&p, "");
            attack_set_grad(&p, g ? "feedback" : "true");
            p.queries = 30;
            EvalCounts c;
            T_ASSERT(attack_evaluate(m, NULL, &v, 0, &p, NULL, NULL, NULL, &c) == 0);
        }
    T_ASSERT(memcmp(mean0, bn->run_mean, sizeof mean0) == 0);
    T_ASSERT(memcmp(var0, bn->run_var, sizeof var0) == 0);
    T_ASSERT(memcmp(params0, m->params, sizeof(float) * m->n_params) == 0);
    /* canary: the hash the evaluator checks does see a one-bit change of a running statistic */
    uint64_t h = attack_model_hash(m);
    uint32_t bits;
    memcpy(&bits, &bn->run_var[1], 4);
    bits ^= 1;
    memcpy(&bn->run_var[1], &bits, 4);
    T_ASSERT(attack_model_hash(m) != h);
    free(params0);
    free(xs);
    model_free(m);
    dataset_close(&d);
}

/* ---- eps text ---- */

TEST(attack_eps_parsing) {
    double v;
    T_ASSERT(attack_parse_eps("--eps", "8/255", &v) == 0 && v == 8.0 / 255.0);
    T_ASSERT(attack_parse_eps("--eps", "0.03", &v) == 0 && v == 0.03);
    T_ASSERT(attack_parse_eps("--eps", "0", &v) == 0 && v == 0);
    T_ASSERT(attack_parse_eps("--eps", "1", &v) == 0 && v == 1);
    T_ASSERT(attack_parse_eps("--eps", "8", &v) < 0);
    T_CONTAINS(err_msg(), "--eps 8: outside [0,1] for [0,1] pixel data; did you mean 8/255?");
    err_clear();
    T_ASSERT(attack_parse_eps("--eps", "1/0", &v) < 0);
    T_CONTAINS(err_msg(), "division by zero");
    err_clear();
    T_ASSERT(attack_parse_eps("--eps", "-0.1", &v) < 0);
    T_CONTAINS(err_msg(), "outside [0,1]");
    err_clear();
    T_ASSERT(attack_parse_eps("--eps", "300/255", &v) < 0);
    err_clear();
    T_ASSERT(attack_parse_eps("--eps", "abc", &v) < 0);
    T_CONTAINS(err_msg(), "expected a number");
    err_clear();
    T_ASSERT(attack_parse_eps("--eps", "nan", &v) < 0);
    err_clear();
    AttackParams p;
    attack_params_default(&p);
    T_ASSERT(attack_set_eps(&p, "8/255") == 0);
    T_ASSERT(str_eq(p.eps_text, "8/255") && p.eps == 8.0 / 255.0);
    p.steps = 10;
    T_ASSERT(attack_set_alpha(&p, "r0.25") == 0 && p.alpha == 0.25 * p.eps && str_eq(p.alpha_text, "r0.25"));
    T_ASSERT(attack_set_alpha(&p, "2/255") == 0 && p.alpha == 2.0 / 255.0);
    T_ASSERT(attack_set_alpha(&p, NULL) == 0 && p.alpha == 2.5 * p.eps / 10 && p.alpha_text[0] == 0);
    T_ASSERT(attack_set_alpha(&p, "rx") < 0);
    err_clear();
    T_ASSERT(attack_set_grad(&p, "transfer:/a/b.ckpt") == 0 && p.grad_source == GRAD_TRANSFER && str_eq(p.transfer_ckpt, "/a/b.ckpt"));
    T_ASSERT(attack_set_grad(&p, "transfer:") < 0);
    err_clear();
    T_ASSERT(attack_set_grad(&p, "sign") < 0);
    err_clear();
}

/* ---- masking flags ---- */

static AttackResult mk(int kind, int norm, int src, double eps, long n, long clean, long robust, long zero) {
    AttackResult r;
    memset(&r, 0, sizeof r);
    attack_params_default(&r.p);
    r.p.kind = kind;
    r.p.norm = norm;
    r.p.grad_source = src;
    r.p.eps = eps;
    if (src == GRAD_TRANSFER) snprintf(r.p.transfer_ckpt, sizeof r.p.transfer_ckpt, "s.ckpt");
    r.c.n = n;
    r.c.n_clean_ok = clean;
    r.c.n_robust_ok = robust;
    r.c.n_zero_grad = zero;
    return r;
}

TEST(attack_masking_flags) {
    AttackResult r[8];
    int n = 0;
    r[n++] = mk(ATK_PGD, NORM_LINF, GRAD_TRUE, 0, 1000, 900, 900, 0);        /* 0: fine */
    r[n++] = mk(ATK_PGD, NORM_LINF, GRAD_TRUE, 0.03, 1000, 900, 300, 0);     /* 1: white-box */
    r[n++] = mk(ATK_PGD, NORM_LINF, GRAD_FEEDBACK, 0.03, 1000, 900, 600, 0); /* 2: feedback gap 30 pts */
    r[n++] = mk(ATK_SQUARE, NORM_LINF, GRAD_TRUE, 0.03, 1000, 900, 250, 0);  /* 3: square stronger */
    r[n++] = mk(ATK_PGD, NORM_LINF, GRAD_TRUE, 0.06, 1000, 900, 400, 3);     /* 4: rises with eps, zero grads */
    r[n++] = mk(ATK_FGSM, NORM_LINF, GRAD_TRUE, 0, 1000, 900, 899, 0);       /* 5: eps 0 mismatch */
    r[n++] = mk(ATK_PGD, NORM_LINF, GRAD_TRANSFER, 0.03, 1000, 900, 295, 0); /* 6: transfer within 1 pt */
    r[n++] = mk(ATK_PGD, NORM_LINF, GRAD_FEEDBACK, 0.06, 1000, 900, 440, 0); /* 7: gap 4 pts: fine */
    unsigned want[8] = {0, 0, MASK_FEEDBACK_GAP, MASK_BLACKBOX_STRONGER, MASK_EPS_RISE | MASK_ZERO_GRAD, MASK_EPS0, 0, 0};
    for (int i = 0; i < n; i++) {
        unsigned f = attack_flags(r, n, i);
        char t[128];
        attack_flags_text(f, t, sizeof t);
        T_ASSERT_MSG(f == want[i], "row %d: flags %#x (%s), want %#x", i, f, t, want[i]);
    }
    char t[128];
    attack_flags_text(MASK_EPS_RISE | MASK_ZERO_GRAD, t, sizeof t);
    T_ASSERT(str_eq(t, "eps-rise,zero-grad"));
    attack_flags_text(0, t, sizeof t);
    T_ASSERT(t[0] == 0);
}

/* ---- the command line ---- */

TEST(attack_cli) {
    char cmd[4096], out[8192], ck[1024];
    snprintf(ck, sizeof ck, "%s/atk_small.ckpt", test_tmpdir());
    Model *m = lenet(NULL, 1, 16, 16, 5, 1);
    CkptMeta meta = {0};
    meta_set(&meta, "dataset", "synthetic:40:1x16x16:5");
    T_ASSERT(ckpt_save(ck, m, &meta) == 0);
    model_free(m);
    int rc;
    T_CLI_FAILS("unknown attack 'nope'; available: fgsm, pgd, pgd-l2, square", "attack --ckpt %s --attack nope --no-db", ck);
    T_CLI_FAILS("did you mean 8/255?", "attack --ckpt %s --attack fgsm --eps 8 --no-db", ck);
    T_CLI_FAILS("missing.ckpt", "attack --ckpt %s/missing.ckpt --attack fgsm --no-db", test_tmpdir());
    T_CLI_FAILS("--ckpt CKPT is required", "attack --attack fgsm --no-db");
    T_CLI_FAILS("--steps does not apply to --attack fgsm", "attack --ckpt %s --attack fgsm --steps 5 --no-db", ck);
    T_CLI_FAILS("use true, feedback or transfer:CKPT", "attack --ckpt %s --attack pgd --grad sideways --no-db", ck);
    /* transfer from the model itself is --grad true under another name: refused unless labelled (a
       transfer matrix's diagonal, what a suite's transfer:RULE gives the RULE model) */
    T_CLI_FAILS("the surrogate is the attacked checkpoint itself", "attack --ckpt %s --attack fgsm --grad true,transfer:%s --no-db", ck, ck);
    /* a working sweep: eps 0 and 8/255, true and feedback, transfer from the model itself (labelled) */
    snprintf(cmd, sizeof cmd, "%s attack --ckpt %s --attack fgsm,pgd --eps 0,8/255 --grad true,feedback,transfer:%s --transfer-label self "
             "--no-db --grid %s/g.png", test_exe(), ck, ck, test_tmpdir());
    rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_CONTAINS(out, " 12 pgd    eps 8/255    grad transfer:");
    T_CONTAINS(out, "robust");
    T_CONTAINS(out, "masking flags");
    snprintf(cmd, sizeof cmd, "%s/g-12.png", test_tmpdir());
    FILE *f = fopen(cmd, "rb");
    T_ASSERT_MSG(f != NULL, "grid %s not written", cmd);
    if (f) fclose(f);
}
