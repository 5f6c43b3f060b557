/* test_fab.c -- attacks/fab.c against independent oracles: the box-constrained projection onto a
 * hyperplane against a bisection on its one free scalar (double) and against brute-force sampling of
 * feasible points (no feasible point is closer); FAB-T on a linear softmax model finds the minimal
 * perturbation to the decision boundary within the box (closed form, by bisection): within its overshoot
 * 1.05 when nothing stops it, and inside a ball of 1.02 x the minimum for every example; it never
 * reports a success outside the eps-ball, and with every target finds the nearest class. Canaries prove
 * the checkers can fail. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "harness/loss.h"
#include "rules/build.h"
#include "tests/test.h"

/* Oracle: the smallest-norm d with <w, d> = c inside the box, by bisection on s >= 0 where every
 * coordinate moves by min(s, room) (Linf) or min(s |w_j|, room) (L2) towards raising sign(c) <w, d>; that
 * family contains the minimiser (Linf: equalising the moved coordinates; L2: KKT). Returns the norm,
 * -1 when infeasible; d (may be NULL) gets the point. */
static double oracle_proj(const float *x, const float *w, double c, int D, int norm, double *d) {
    double sg = c >= 0 ? 1 : -1, reach = 0;
    for (int j = 0; j < D; j++) {
        double dir = sg * w[j];
        reach += fabs((double)w[j]) * (dir > 0 ? 1.0 - x[j] : dir < 0 ? x[j] : 0);
    }
    if (reach < fabs(c)) return -1;
    double lo = 0, hi = 1e8;
    for (int it = 0; it < 300; it++) {
        double s = 0.5 * (lo + hi), got = 0;
        for (int j = 0; j < D; j++) {
            double dir = sg * w[j], room = dir > 0 ? 1.0 - x[j] : dir < 0 ? x[j] : 0;
            got += fabs((double)w[j]) * fmin(norm == NORM_LINF ? s : s * fabs((double)w[j]), room);
        }
        if (got < fabs(c)) lo = s;
        else hi = s;
    }
    double nr = 0;
    for (int j = 0; j < D; j++) {
        double dir = sg * w[j], room = dir > 0 ? 1.0 - x[j] : dir < 0 ? x[j] : 0;
        double u = w[j] == 0 ? 0 : fmin(norm == NORM_LINF ? hi : hi * fabs((double)w[j]), room);
        double dj = dir > 0 ? u : -u;
        if (d) d[j] = dj;
        nr = norm == NORM_LINF ? fmax(nr, fabs(dj)) : nr + dj * dj;
    }
    return norm == NORM_LINF ? nr : sqrt(nr);
}

static double g_corrupt; /* canary: added to the projection's norm before comparing */

static void check_projection(void) {
    Rng r;
    rng_seed(&r, 21, RNG_DATA, 2);
    float x[40], w[40], d[40], tmp[120];
    double od[40];
    int feasible = 0, infeasible = 0;
    for (int rep = 0; rep < 400; rep++) {
        const int D = 1 + (int)rng_below(&r, 40), norm = rep % 2 ? NORM_L2 : NORM_LINF;
        for (int j = 0; j < D; j++) {
            x[j] = rep % 7 == 0 && j % 3 == 0 ? (float)(j % 2) : rng_uniform(&r); /* some coordinates at the box */
            w[j] = rng_below(&r, 6) == 0 ? 0.0f : rng_normal(&r);
        }
        double c = (rng_uniform_d(&r) - 0.5) * (rep % 5 == 0 ? 40.0 : 2.0);
        double nr = fab_project(x, w, c, D, norm, d, tmp) + g_corrupt;
        double want = oracle_proj(x, w, c, D, norm, od);
        double wd = 0;
        for (int j = 0; j < D; j++) {
            wd += (double)w[j] * d[j];
            if (!(x[j] + d[j] >= -1e-6f && x[j] + d[j] <= 1 + 1e-6f) || (w[j] == 0 && d[j] != 0))
                test_fail_at(__FILE__, __LINE__, "rep %d: coordinate %d leaves the box or moves with w = 0", rep, j);
        }
        if (want < 0) { /* out of reach: every coordinate with w != 0 at its bound */
            infeasible++;
            double sg = c >= 0 ? 1 : -1;
            for (int j = 0; j < D; j++)
                if (w[j] != 0 && fabs(d[j] - (sg * w[j] > 0 ? 1.0 - x[j] : -(double)x[j])) > 1e-6)
                    test_fail_at(__FILE__, __LINE__, "rep %d: infeasible case, coordinate %d not at its bound", rep, j);
            continue;
        }
        feasible++;
        T_ASSERT_MSG(fabs(wd - c) <= 1e-4 * (1 + fabs(c)), "rep %d: <w, d> = %.9g, want %.9g", rep, wd, c);
        T_ASSERT_MSG(fabs(nr - want) <= 1e-5 * (1 + want), "rep %d (%s, D %d): norm %.9g, oracle %.9g", rep,
                     norm == NORM_LINF ? "Linf" : "L2", D, nr, want);
    }
    T_ASSERT(feasible > 200 && infeasible > 5);
}

static void projection_canary(void) {
    g_corrupt = 1e-3;
    check_projection();
    g_corrupt = 0;
}

TEST(fab_projection_matches_oracle) {
    check_projection();
    T_ASSERT(test_expect_failure(projection_canary));
}

/* no feasible point sampled at random is closer than the projection (small D, brute force) */
TEST(fab_projection_not_beaten_by_sampling) {
    Rng r;
    rng_seed(&r, 5, RNG_DATA, 3);
    float x[4], w[4], d[4], tmp[12];
    int compared = 0;
    for (int rep = 0; rep < 40; rep++) {
        const int D = 4, norm = rep % 2 ? NORM_L2 : NORM_LINF;
        for (int j = 0; j < D; j++) { x[j] = rng_uniform(&r); w[j] = rng_normal(&r); }
        double c = rng_uniform_d(&r) - 0.5;
        double best = fab_project(x, w, c, D, norm, d, tmp);
        if (oracle_proj(x, w, c, D, norm, NULL) < 0) continue;
        for (int s = 0; s < 20000; s++) {
            /* a random point of the box, moved along one coordinate onto the hyperplane */
            double dd[4], wd = 0;
            for (int j = 0; j < D; j++) { dd[j] = rng_uniform_d(&r) - x[j]; wd += w[j] * dd[j]; }
            int k = (int)rng_below(&r, 4);
            dd[k] += (c - wd) / w[k];
            if (x[k] + dd[k] < 0 || x[k] + dd[k] > 1) continue;
            double nr = 0;
            for (int j = 0; j < D; j++) nr = norm == NORM_LINF ? fmax(nr, fabs(dd[j])) : nr + dd[j] * dd[j];
            if (norm == NORM_L2) nr = sqrt(nr);
            compared++;
            if (nr < best - 1e-6) {
                test_fail_at(__FILE__, __LINE__, "rep %d: a feasible point at %.9g beats the projection's %.9g", rep, nr, best);
                break;
            }
        }
    }
    T_ASSERT(compared > 10000);
}

/* ---- FAB-T on a linear softmax model ---- */

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

/* the smallest perturbation (norm) inside [0,1] that brings z_j up to z_y, for the linear model: the
 * margin is v.x + c0 with v = (W_y - W_j)/std, so it is oracle_proj with w = v, c = -(margin at x) */
static double min_to_class(const Model *m, const float *x, int y, int j, int norm) {
    const Layer *fc = NULL;
    for (int i = 0; i < m->nl; i++) if (m->L[i].kind == L_LINEAR) fc = &m->L[i];
    const int D = 20;
    float v[20];
    double marg = (double)fc->b[y] - fc->b[j];
    for (int k = 0; k < D; k++) {
        double vk = ((double)fc->W[y * D + k] - fc->W[j * D + k]) / m->L[0].std[0];
        marg += vk * (x[k] - m->L[0].mean[0]);
        v[k] = (float)vk;
    }
    return oracle_proj(x, v, -marg, D, norm, NULL);
}

typedef struct FabRun { float *xa; AttackExample ex[64]; } FabRun;

static void run_fab(Model *m, const float *x, const int32_t *y, int n, int norm, double eps, int targets, FabRun *out) {
    AttackParams p;
    attack_params_default(&p);
    attack_params_apply(&p, attack_find(norm == NORM_LINF ? "fab-t" : "fab-t-l2"));
    p.eps = eps; /* set directly: the oracle's distances may exceed 1 in L2 */
    p.steps = 100;
    p.targets = targets;
    Work *w = work_create(m, n);
    AttackScratch *s = attack_scratch_create(m, n);
    attack_fab(m, w, x, y, n, &p, out->xa, out->ex, s);
    attack_scratch_free(s);
    work_free(w);
}

static double pert_norm(const float *a, const float *b, int D, int norm) {
    double r = 0;
    for (int j = 0; j < D; j++) {
        double v = fabs((double)a[j] - b[j]);
        r = norm == NORM_LINF ? fmax(r, v) : r + v * v;
    }
    return norm == NORM_LINF ? r : sqrt(r);
}

TEST(fab_linear_minimal_perturbation) {
    for (int K = 2; K <= 4; K += 2) {
        Model *m = linear_model(K, 11);
        const int n = 48, D = 20;
        float x[48 * 20];
        int32_t y[48];
        Rng r;
        rng_seed(&r, 4, RNG_DATA, (uint64_t)K);
        for (int j = 0; j < n * D; j++) x[j] = rng_uniform(&r);
        Work *w = work_create(m, n);
        const float *lg = model_forward(m, w, x, n, FWD_INFER);
        for (int i = 0; i < n; i++) y[i] = argmax_row(lg + (size_t)i * K, K);
        work_free(w);
        FabRun *fr = xcalloc(1, sizeof *fr);
        fr->xa = xmalloc(sizeof(float) * n * D);
        for (int norm = NORM_LINF; norm <= NORM_L2; norm++) {
            /* the true minimum over the other classes (a linear model's boundary is the nearest of its
               K-1 hyperplanes; past it the example is misclassified whatever the other logits do) */
            double dmin[48];
            int reach = 0;
            for (int i = 0; i < n; i++) {
                dmin[i] = INFINITY;
                for (int j = 0; j < K; j++) {
                    if (j == y[i]) continue;
                    double dj = min_to_class(m, x + i * D, y[i], j, norm);
                    if (dj >= 0 && dj < dmin[i]) dmin[i] = dj;
                }
                reach += isfinite(dmin[i]);
            }
            T_ASSERT(reach > n / 2);
            /* a budget no perturbation needs: the first adversarial ends the search (an example broken inside
               the ball is done), so its norm is the projection's overshoot eta = 1.05 times the minimum */
            run_fab(m, x, y, n, norm, 100.0, K - 1, fr);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                if (!isfinite(dmin[i])) continue;
                double got = fr->ex[i].loss;
                T_ASSERT_MSG(fr->ex[i].success, "K %d %s example %d: no adversarial found (minimum %.4g)", K,
                             norm == NORM_LINF ? "Linf" : "L2", i, dmin[i]);
                T_ASSERT_MSG(got >= dmin[i] * (1 - 1e-4) - 1e-6, "K %d example %d: %.6g below the minimum %.6g", K, i, got, dmin[i]);
                if (K == 2) worst = fmax(worst, got / dmin[i]);
                T_NEAR(pert_norm(fr->xa + i * D, x + i * D, D, norm), got, 1e-5 * (1 + got));
            }
            if (K == 2) {
                printf("    FAB-T linear K 2 %s, eps 100: worst found / minimal = %.6f\n", norm == NORM_LINF ? "Linf" : "L2", worst);
                T_ASSERT_MSG(worst <= 1.05 + 1e-4, "K 2 %s: FAB's perturbation is %.6f x the minimum", norm == NORM_LINF ? "Linf" : "L2", worst);
            }
            /* inside the ball only: at 0.95 x each minimum nothing is a success (x_adv = x); at 1.02 x all are
               (below the overshoot: FAB's backward steps and bias towards x refine it within 2%) */
            for (int half = 0; half < 2; half++) {
                int ok = 0;
                for (int i = 0; i < n; i++) {
                    if (!isfinite(dmin[i])) continue;
                    float xi[20];
                    memcpy(xi, x + i * D, sizeof xi);
                    FabRun one;
                    one.xa = xmalloc(sizeof(float) * D);
                    run_fab(m, xi, y + i, 1, norm, (half ? 1.02 : 0.95) * dmin[i], K - 1, &one);
                    double pn = pert_norm(one.xa, xi, D, norm);
                    if (half) {
                        ok += one.ex[0].success;
                        T_ASSERT(pn <= 1.02 * dmin[i] + 1e-9);
                    } else {
                        T_ASSERT_MSG(!one.ex[0].success && pn == 0, "K %d example %d: success at 0.95 x the minimum", K, i);
                    }
                    free(one.xa);
                }
                if (half) T_ASSERT_MSG(ok == reach, "K %d %s: %d of %d found inside 1.02 x the minimum", K, norm == NORM_LINF ? "Linf" : "L2",
                                       ok, reach);
            }
        }
        free(fr->xa);
        free(fr);
        model_free(m);
    }
}
