/* test_apgd.c -- attacks/apgd.c against independent oracles: the checkpoints w_j against the formula
 * evaluated in double (steps 1-5, 10, 100, ...); DLR and targeted DLR against their definitions (sorting
 * in double) and their logit gradients against central finite differences of those definitions; their
 * shift/scale invariance; on a linear softmax model (an mlp with no hidden layer, 2 classes), APGD-CE breaks
 * exactly the examples whose closed-form box-and-ball worst case is misclassified (Linf: coordinate-wise
 * corner; L2: the KKT point clip(-lambda v) with lambda by bisection); true = feedback on a BP model (bitwise).
 * Each checker has a canary that proves it can fail. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "harness/loss.h"
#include "rules/build.h"
#include "tests/test.h"

/* ---- checkpoints ---- */

/* the paper's formula in double: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06),
 * w_j = ceil(p_j N) (1e-9 absorbs 0.22 * 100 = 22.000000000000004), distinct, <= N */
static int oracle_checkpoints(int N, int *w, int use_floor) {
    double pp = 0, p = 0.22;
    int n = 0;
    for (;;) {
        double v = p * N;
        int wj = use_floor ? (int)floor(v + 1e-9) : (int)ceil(v - 1e-9);
        if (wj > N) break;
        if (wj >= 1 && (n == 0 || wj > w[n - 1])) w[n++] = wj;
        double d = fmax(p - pp - 0.03, 0.06);
        pp = p;
        p += d;
    }
    return n;
}

static const int CK_STEPS[] = {1, 2, 3, 4, 5, 7, 10, 37, 100, 1000};

static void check_checkpoints(int use_floor) {
    for (size_t k = 0; k < ARRAY_LEN(CK_STEPS); k++) {
        int N = CK_STEPS[k], a[64], b[64];
        int na = apgd_checkpoints(N, a, 64), nb = oracle_checkpoints(N, b, use_floor);
        int same = na == nb;
        for (int i = 0; same && i < na; i++) same = a[i] == b[i];
        T_ASSERT_MSG(same, "steps %d: %d checkpoints (first %d, last %d) vs the formula's %d (first %d, last %d)", N, na,
                     na ? a[0] : -1, na ? a[na - 1] : -1, nb, nb ? b[0] : -1, nb ? b[nb - 1] : -1);
    }
}

static void checkpoints_floor_canary(void) { check_checkpoints(1); }

TEST(apgd_checkpoints_match_formula) {
    check_checkpoints(0);
    int w[64];
    static const int w100[] = {22, 41, 57, 70, 80, 87, 93, 99}, w10[] = {3, 5, 6, 7, 8, 9, 10};
    T_EQ_INT(apgd_checkpoints(100, w, 64), 8);
    for (int i = 0; i < 8; i++) T_EQ_INT(w[i], w100[i]);
    T_EQ_INT(apgd_checkpoints(10, w, 64), 7);
    for (int i = 0; i < 7; i++) T_EQ_INT(w[i], w10[i]);
    T_EQ_INT(apgd_checkpoints(1, w, 64), 1);
    T_EQ_INT(w[0], 1);
    T_EQ_INT(apgd_checkpoints(0, w, 64), 0);
    /* canary: w_j = floor(p_j N) is a different schedule and must be caught */
    T_ASSERT(test_expect_failure(checkpoints_floor_canary));
}

/* ---- DLR ---- */

/* the definitions, in double, by sorting a copy */
static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}
static double dlr_def(const double *z, int K, int y, int t) {
    double s[64];
    memcpy(s, z, sizeof(double) * K);
    qsort(s, (size_t)K, sizeof(double), cmp_desc);
    if (t < 0) {
        double other = -INFINITY;
        for (int k = 0; k < K; k++)
            if (k != y && z[k] > other) other = z[k];
        return -(z[y] - other) / (s[0] - s[2] + 1e-12);
    }
    return -(z[y] - z[t]) / (s[0] - 0.5 * (s[2] + s[3]) + 1e-12);
}

/* random logits whose pairwise gaps exceed 0.05 (so a finite-difference step of 1e-4 never reorders them) */
static void spread_logits(Rng *r, double *z, int K) {
    for (;;) {
        for (int k = 0; k < K; k++) z[k] = 6.0 * rng_uniform_d(r) - 3.0;
        double gap = INFINITY;
        for (int a = 0; a < K; a++)
            for (int b = a + 1; b < K; b++) gap = fmin(gap, fabs(z[a] - z[b]));
        if (gap > 0.05) return;
    }
}

/* worst |dz - fd| / (1e-5 + 1e-3 |fd|) of dz against central differences of the definition */
static double dlr_fd_ratio(const double *z, int K, int y, int t, const float *dz) {
    double worst = 0, zz[64];
    memcpy(zz, z, sizeof(double) * K);
    for (int k = 0; k < K; k++) {
        const double h = 1e-4;
        zz[k] = z[k] + h;
        double lp = dlr_def(zz, K, y, t);
        zz[k] = z[k] - h;
        double lm = dlr_def(zz, K, y, t);
        zz[k] = z[k];
        double fd = (lp - lm) / (2 * h), r = fabs(dz[k] - fd) / (1e-5 + 1e-3 * fabs(fd));
        if (r > worst) worst = r;
    }
    return worst;
}

TEST(apgd_dlr_matches_definition_and_finite_differences) {
    Rng r;
    rng_seed(&r, 7, RNG_DATA, 1);
    static const int Ks[] = {3, 4, 5, 10};
    int checked = 0;
    for (size_t a = 0; a < ARRAY_LEN(Ks); a++)
        for (int rep = 0; rep < 25; rep++) {
            const int K = Ks[a];
            double z[64];
            float zf[64], dz[64], dz2[64];
            spread_logits(&r, z, K);
            for (int k = 0; k < K; k++) { zf[k] = (float)z[k]; z[k] = zf[k]; }
            int y = (int)rng_below(&r, (uint32_t)K);
            for (int targeted = 0; targeted < 2; targeted++) {
                if (targeted && K < 4) continue;
                int t = targeted ? (y + 1 + (int)rng_below(&r, (uint32_t)(K - 1))) % K : -1;
                double L = attack_dlr(zf, K, y, t, dz), want = dlr_def(z, K, y, t);
                T_ASSERT_MSG(fabs(L - want) <= 1e-9 * (1 + fabs(want)), "K %d y %d t %d: DLR %.12g, definition %.12g", K, y, t, L,
                             want);
                T_ASSERT(attack_dlr(zf, K, y, t, NULL) == L);
                double ratio = dlr_fd_ratio(z, K, y, t, dz);
                T_ASSERT_MSG(ratio <= 1, "K %d y %d t %d: DLR gradient vs finite differences, worst ratio %.3g", K, y, t, ratio);
                /* canary: one wrong entry must be caught (+0.5 too: with K = 3 and y the smallest logit the
                   loss is the constant 1 and its gradient exactly zero) */
                memcpy(dz2, dz, sizeof(float) * K);
                int kk = 0;
                for (int k = 1; k < K; k++) if (fabsf(dz[k]) > fabsf(dz[kk])) kk = k;
                dz2[kk] = -dz2[kk] + 0.5f;
                T_ASSERT_MSG(dlr_fd_ratio(z, K, y, t, dz2) > 1, "canary: a corrupted DLR gradient passed");
                /* invariant to shifting and (positively) scaling the logits: a model cannot hide behind scale */
                float zs[64];
                for (int k = 0; k < K; k++) zs[k] = 3.0f * zf[k] + 11.0f;
                T_NEAR(attack_dlr(zs, K, y, t, NULL), L, 1e-5 * (1 + fabs(L)));
                checked++;
            }
        }
    T_ASSERT(checked > 150);
}

/* ---- a linear softmax model: APGD-CE breaks exactly what the closed form says is breakable ---- */

/* an mlp with no hidden layer on 1x4x5 inputs, 2 classes: logits = W (x - mean)/std + b */
static Model *linear_model(int K, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, "mlp", 1, 4, 5, K);
    s.hidden[0] = 0;
    Model *m = model_create(&s, NULL, NULL, seed);
    CHECK(m);
    m->L[0].mean[0] = 0.4f;
    m->L[0].std[0] = 0.3f;
    return m;
}

/* Worst case of the margin z_y - z_o over {x' : |x' - x| <= eps (norm), 0 <= x' <= 1} for the linear
 * model, in double: margin(x') = v.x' + c0, v = (W_y - W_o)/std. Linf: each coordinate to the end of its
 * interval that lowers v_k x'_k. L2: d_k = clip(-lambda v_k, -x_k, 1 - x_k), the smallest lambda >= 0 with
 * |d|_2 = eps, by bisection (lambda = inf when the box corner is within eps). */
static double worst_margin(const Model *m, const float *x, int y, int o, int norm, double eps) {
    const Layer *fc = NULL;
    for (int i = 0; i < m->nl; i++) if (m->L[i].kind == L_LINEAR) fc = &m->L[i];
    const int D = 20;
    const double mu = m->L[0].mean[0], sd = m->L[0].std[0];
    double v[20], marg = (double)fc->b[y] - fc->b[o];
    for (int k = 0; k < D; k++) {
        v[k] = ((double)fc->W[y * D + k] - fc->W[o * D + k]) / sd;
        marg -= v[k] * mu;
    }
    if (norm == NORM_LINF) {
        for (int k = 0; k < D; k++) {
            double lo = fmax(x[k] - eps, 0.0), hi = fmin(x[k] + eps, 1.0);
            marg += v[k] * (v[k] > 0 ? lo : hi);
        }
        return marg;
    }
    double lam_lo = 0, lam_hi = 1e6;
    for (int it = 0; it < 200; it++) {
        double lam = 0.5 * (lam_lo + lam_hi), nn = 0;
        for (int k = 0; k < D; k++) {
            double d = fmin(fmax(-lam * v[k], -(double)x[k]), 1.0 - x[k]);
            nn += d * d;
        }
        if (sqrt(nn) > eps) lam_hi = lam;
        else lam_lo = lam;
    }
    for (int k = 0; k < D; k++) marg += v[k] * (x[k] + fmin(fmax(-lam_lo * v[k], -(double)x[k]), 1.0 - x[k]));
    return marg;
}

typedef struct LinCase { Model *m; float x[128 * 20]; int32_t y[128]; int n; } LinCase;

/* attacks the linear case with APGD-CE (steps) and counts disagreements with the closed form;
 * returns how many examples were decidable (|worst margin| > 1e-3) */
static int linear_check(LinCase *lc, int norm, double eps, int steps, int *breakable, int *mismatch) {
    AttackParams p;
    attack_params_default(&p);
    attack_params_apply(&p, attack_find(norm == NORM_LINF ? "apgd-ce" : "apgd-ce-l2"));
    p.eps = eps;
    p.steps = steps;
    Work *w = work_create(lc->m, lc->n);
    AttackScratch *s = attack_scratch_create(lc->m, lc->n);
    float *xa = xmalloc(sizeof(float) * 128 * 20);
    AttackExample ex[128];
    attack_apgd(lc->m, w, lc->x, lc->y, lc->n, &p, xa, ex, s);
    const float *lg = model_forward(lc->m, w, lc->x, lc->n, FWD_INFER);
    int decided = 0;
    *breakable = *mismatch = 0;
    for (int i = 0; i < lc->n; i++) {
        if (argmax_row(lg + 2 * i, 2) != lc->y[i]) continue; /* clean-misclassified: not attacked */
        double wm = worst_margin(lc->m, lc->x + 20 * i, lc->y[i], 1 - lc->y[i], norm, eps);
        if (fabs(wm) < 1e-3) continue;
        decided++;
        int can = wm < 0;
        *breakable += can;
        if (can != ex[i].success) {
            if ((*mismatch)++ < 3)
                test_fail_at(__FILE__, __LINE__, "%s eps %.3f example %d: worst margin %.4g but APGD success %d",
                             norm == NORM_LINF ? "Linf" : "L2", eps, i, wm, ex[i].success);
        }
    }
    free(xa);
    attack_scratch_free(s);
    work_free(w);
    return decided;
}

static LinCase *g_lc;
static void linear_weak_canary(void) { /* APGD with no step: only its random start; it must miss some */
    int b, mm;
    linear_check(g_lc, NORM_LINF, 0.08, 0, &b, &mm);
}

TEST(apgd_linear_model_breaks_exactly_the_breakable) {
    LinCase *lc = xcalloc(1, sizeof *lc);
    lc->m = linear_model(2, 5);
    lc->n = 128;
    Rng r;
    rng_seed(&r, 3, RNG_DATA, 9);
    for (int j = 0; j < lc->n * 20; j++) lc->x[j] = rng_uniform(&r);
    const float *lg;
    Work *w = work_create(lc->m, lc->n);
    lg = model_forward(lc->m, w, lc->x, lc->n, FWD_INFER);
    for (int i = 0; i < lc->n; i++) lc->y[i] = argmax_row(lg + 2 * i, 2); /* every example clean-correct */
    work_free(w);
    static const struct { int norm; double eps; } C[] = {{NORM_LINF, 0.03}, {NORM_LINF, 0.08}, {NORM_L2, 0.15}, {NORM_L2, 0.4}};
    for (size_t c = 0; c < ARRAY_LEN(C); c++) {
        int b, mm, dec = linear_check(lc, C[c].norm, C[c].eps, 100, &b, &mm);
        printf("    linear, %s eps %.2f: %d of %d decidable examples breakable, %d mismatches\n", C[c].norm == NORM_LINF ? "Linf" : "L2",
               C[c].eps, b, dec, mm);
        T_ASSERT_MSG(dec >= 100, "only %d decidable examples", dec);
        T_ASSERT_MSG(b >= dec / 10 && b <= dec - dec / 10, "eps %.2f: %d of %d breakable: the case does not discriminate", C[c].eps,
                     b, dec);
        T_EQ_INT(mm, 0);
    }
    g_lc = lc;
    T_ASSERT(test_expect_failure(linear_weak_canary));
    model_free(lc->m);
    free(lc);
}

/* ---- true = feedback on BP, bitwise; brSF's feedback differs ---- */

static Model *lenet16(const char *rule, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", 1, 16, 16, 5);
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = seed;
    return model_create(&s, rule ? rule_find(rule) : NULL, &ro, seed);
}

TEST(apgd_bp_true_equals_feedback) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:24:1x16x16:5", NULL, SPLIT_TEST, &d) == 0);
    const int n = 24, D = 256;
    float *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    AttackExample ex[24];
    static const char *names[] = {"apgd-ce", "apgd-t-l2", "fab-t"};
    const char *rules[] = {"bp", "brsf"};
    for (int rr = 0; rr < 2; rr++)
        for (size_t k = 0; k < ARRAY_LEN(names); k++) {
            Model *m = lenet16(rules[rr], 8);
            AttackParams p;
            attack_params_default(&p);
            attack_params_apply(&p, attack_find(names[k]));
            attack_set_eps(&p, p.norm == NORM_L2 ? "0.5" : "16/255");
            p.steps = 8;
            p.targets = 2;
            Work *w = work_create(m, n);
            AttackScratch *s = attack_scratch_create(m, n);
            attack_info(&p)->fn(m, w, d.x, d.y, n, &p, a, ex, s);
            attack_set_grad(&p, "feedback");
            attack_info(&p)->fn(m, w, d.x, d.y, n, &p, b, ex, s);
            int same = memcmp(a, b, sizeof(float) * n * D) == 0;
            if (rr == 0) T_ASSERT_MSG(same, "%s on bp: true and feedback adversarials differ", names[k]);
            else T_ASSERT_MSG(!same, "canary: %s on brsf: feedback adversarials equal the true-gradient ones", names[k]);
            attack_scratch_free(s);
            work_free(w);
            model_free(m);
        }
    free(a); free(b);
    dataset_close(&d);
}

/* ---- batch-size independence and restarts: an example's result does not depend on its batch ---- */

TEST(apgd_batch_split_independent) {
    Dataset d;
    T_ASSERT(dataset_open("synthetic:30:1x16x16:5", NULL, SPLIT_TEST, &d) == 0);
    Model *m = lenet16(NULL, 3);
    const int n = 30, D = 256;
    float *a = xmalloc(sizeof(float) * n * D), *b = xmalloc(sizeof(float) * n * D);
    AttackExample ea[30], eb[30];
    AttackParams p;
    attack_params_default(&p);
    attack_params_apply(&p, attack_find("apgd-t"));
    attack_set_eps(&p, "8/255");
    p.steps = 10;
    p.restarts = 2;
    p.targets = 3;
    Work *w = work_create(m, n);
    AttackScratch *s = attack_scratch_create(m, n);
    attack_apgd(m, w, d.x, d.y, n, &p, a, ea, s);
    attack_apgd(m, w, d.x, d.y, 11, &p, b, eb, s);
    s->index0 = 11;
    attack_apgd(m, w, d.x + 11 * D, d.y + 11, n - 11, &p, b + 11 * D, eb + 11, s);
    T_ASSERT_MSG(memcmp(a, b, sizeof(float) * n * D) == 0, "APGD-T depends on the batch split");
    for (int i = 0; i < n; i++) T_EQ_INT(ea[i].success, eb[i].success);
    attack_scratch_free(s);
    work_free(w);
    free(a); free(b);
    model_free(m);
    dataset_close(&d);
}
