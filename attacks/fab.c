/* fab.c -- FAB-T, the targeted fast adaptive boundary attack (Croce & Hein, "Minimally distorted
 * adversarial examples with a fast adaptive boundary attack", ICML 2020), Linf and L2, configured as
 * AutoAttack runs it (fab_base.py): per target class (the `targets` classes other than y with the
 * highest clean logits), `steps` iterations, alpha_max 0.1, eta 1.05, beta 0.9, the first restart from x
 * itself, later restarts from a random point at distance eps/2. The iteration is in attack.h.
 *
 * FAB is a minimum-norm attack: its iterates are not confined to the eps-ball (only to [0,1]). What it
 * reports is the smallest adversarial it found; that is a success only when it lies inside the ball,
 * otherwise x_adv = x. An example leaves the pack as soon as it has an adversarial inside the ball
 * (AutoAttack keeps shrinking it; for robust accuracy at eps that changes nothing).
 *
 * Packed rows (as apgd.c): xs clean inputs, cur the iterate, g the gradient of z_t - z_y (one backward
 * with dout = e_t - e_y per target direction), prev d_k (the projection of the iterate), gbest d_0 (the
 * projection of x), best the smallest adversarial so far; s->slot[j].res its norm. Shape letters as apgd.c.
 */
#include <math.h>
#include <string.h>

#include "harness/loss.h"
#include "attacks/attack.h"

#define FAB_ALPHA_MAX 0.1 /* largest weight of the step from x (the bias towards the original point) */
#define FAB_ETA 1.05      /* overshoot of the projection */
#define FAB_BETA 0.9      /* backward step towards x after an adversarial iterate */
#define FAB_KEY_TAG (2ULL << 60)

/* |v|_norm of v (D) in double */
static double vnorm(const float *v, int D, int norm) {
    double r = 0;
    for (int d = 0; d < D; d++) {
        double a = fabs((double)v[d]);
        r = norm == NORM_LINF ? (a > r ? a : r) : r + a * a;
    }
    return norm == NORM_LINF ? r : sqrt(r);
}

/* The smallest d with <w, d> = c and 0 <= x + d <= 1. With the coordinates moved in the direction that
 * raises sign(c) <w, d> by u_j in [0, r_j] (r_j: room to the box), the minimiser is u_j = min(t, r_j)
 * (Linf: the dual norm is L1, so every free coordinate moves by the same t) or u_j = min(lambda |w_j|, r_j)
 * (L2: KKT). The scalar solves sum |w_j| u_j = |c|; it is found from below by the fixed-point iteration
 * t <- (|c| - sum_{saturated} |w_j| r_j) / sum_{free} |w_j| (L2: / sum_{free} w_j^2), which never
 * overshoots and whose saturated set only grows, so it ends, exactly, in at most D rounds (3.7 on
 * average on LeNet-5). tmp (3 D floats): per coordinate its threshold (r_j, L2: r_j / |w_j|), |w_j| r_j
 * and |w_j| (L2: w_j^2), so each round is one branch-free pass. */
double fab_project(const float *x, const float *w, double c, int D, int norm, float *d, float *tmp) {
    const double ac = fabs(c);
    const float sg = c >= 0 ? 1.0f : -1.0f;
    float *thr = tmp, *awr = tmp + D, *awf = tmp + 2 * (size_t)D;
    double total = 0, fre0 = 0;
    for (int j = 0; j < D; j++) {
        float aw = fabsf(w[j]), dir = sg * w[j];
        float room = dir > 0 ? 1.0f - x[j] : dir < 0 ? x[j] : 0.0f;
        awr[j] = aw * room;
        awf[j] = norm == NORM_LINF ? aw : aw * aw;
        thr[j] = aw == 0 ? INFINITY : norm == NORM_LINF ? room : room / aw;
        total += awr[j];
        fre0 += awf[j];
    }
    if (ac == 0 || !(fre0 > 0)) {
        memset(d, 0, sizeof(float) * D);
        return 0;
    }
    double t = INFINITY; /* when the hyperplane is out of the box's reach: every coordinate to its bound */
    if (total > ac) {
        t = ac / fre0;
        long prev = 0;
        for (int it = 0; it <= D; it++) {
            double sat[4] = {0, 0, 0, 0}, fre[4] = {0, 0, 0, 0};
            long nsat = 0;
            const float tf = (float)t;
            int j = 0;
            for (; j + 4 <= D; j += 4)
                for (int q = 0; q < 4; q++) {
                    int in = thr[j + q] < tf;
                    sat[q] += in ? awr[j + q] : 0.0f;
                    fre[q] += in ? 0.0f : awf[j + q];
                    nsat += in;
                }
            for (; j < D; j++) {
                int in = thr[j] < tf;
                sat[0] += in ? awr[j] : 0.0f;
                fre[0] += in ? 0.0f : awf[j];
                nsat += in;
            }
            double fs = (fre[0] + fre[1]) + (fre[2] + fre[3]), ss = (sat[0] + sat[1]) + (sat[2] + sat[3]);
            if (nsat == prev || !(fs > 0)) break; /* same saturated set: t is the fixed point */
            prev = nsat;
            t = (ac - ss) / fs;
        }
    }
    for (int j = 0; j < D; j++) {
        float aw = fabsf(w[j]), dir = sg * w[j];
        if (aw == 0) { d[j] = 0; continue; }
        float room = dir > 0 ? 1.0f - x[j] : x[j];
        float cap = norm == NORM_LINF ? (float)t : (float)(t * aw), u = cap < room ? cap : room;
        d[j] = dir > 0 ? u : -u;
    }
    return vnorm(d, D, norm);
}

/* copies packed row j to row k (k < j) */
static void move_row(AttackScratch *s, int k, int j) {
    const size_t D = (size_t)s->D;
    float *bufs[] = {s->xs, s->cur, s->best};
    for (size_t b = 0; b < ARRAY_LEN(bufs); b++) memcpy(bufs[b] + k * D, bufs[b] + j * D, sizeof(float) * D);
    s->slot[k] = s->slot[j];
}

int attack_fab(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
               AttackExample *ex, AttackScratch *s) {
    CHECK(n <= s->cap && n <= w->cap && s->D == model_in_dim(m) && p->objective == OBJ_CE);
    CHECK(p->steps >= 0 && p->restarts >= 1 && p->restarts <= 256);
    const int D = s->D, K = s->K;
    const int T = p->targets < K - 1 ? p->targets : K - 1;
    CHECK(K >= 2 && T >= 1 && T <= 255);
    uint8_t *done = s->best_succ;

    /* examples the crafting model already misclassifies are not attacked (AutoAttack: x_adv = x) */
    const float *lg = model_forward(m, w, x, n, FWD_PREDICT);
    for (int i = 0; i < n; i++) {
        CHECK(y[i] >= 0 && y[i] < K);
        const float *z = lg + (size_t)i * K;
        done[i] = argmax_row(z, K) != y[i];
        ex[i] = (AttackExample){.loss = INFINITY, .zero_grad = 0, .queries = 0, .success = done[i]};
        memcpy(x_adv + (size_t)i * D, x + (size_t)i * D, sizeof(float) * D);
        attack_rank_targets(z, K, y[i], s->order + (size_t)i * K); /* targets by decreasing clean logit */
    }

    for (int ti = 0; ti < T; ti++)
        for (int r = 0; r < p->restarts; r++) {
            int na = 0;
            for (int i = 0; i < n; i++) {
                if (done[i]) continue;
                AttackSlot *sl = &s->slot[na];
                memset(sl, 0, sizeof *sl);
                sl->ex = i;
                sl->y = y[i];
                sl->t = s->order[(size_t)i * K + ti];
                sl->res = INFINITY;
                memcpy(s->xs + (size_t)na * D, x + (size_t)i * D, sizeof(float) * D);
                if (r == 0) {
                    memcpy(s->cur + (size_t)na * D, x + (size_t)i * D, sizeof(float) * D);
                } else {
                    Rng rg;
                    rng_seed(&rg, p->seed, RNG_ATTACK,
                             FAB_KEY_TAG | (uint64_t)attack_index(s, i) << 16 | (uint64_t)ti << 8 | (uint64_t)r);
                    attack_sphere_start(x + (size_t)i * D, s->cur + (size_t)na * D, D, p->norm, 0.5 * p->eps, &rg);
                }
                na++;
            }
            if (!na) goto out;
            for (int k = 0; k < p->steps && na > 0; k++) {
                /* the hyperplane z_t - z_y = 0, linearised at the iterate: <g, v - cur> + df = 0 */
                lg = model_forward(m, w, s->cur, na, FWD_INFER);
                memset(s->dlogits, 0, sizeof(float) * (size_t)na * K);
                for (int j = 0; j < na; j++) {
                    s->dlogits[(size_t)j * K + s->slot[j].t] = 1.0f;
                    s->dlogits[(size_t)j * K + s->slot[j].y] = -1.0f;
                    s->loss[j] = lg[(size_t)j * K + s->slot[j].t] - lg[(size_t)j * K + s->slot[j].y]; /* df */
                }
                attack_input_grad(m, w, s->dlogits, na, p, s, s->g);
                for (int j = 0; j < na; j++) {
                    const float *xs = s->xs + (size_t)j * D, *g = s->g + (size_t)j * D;
                    float *cur = s->cur + (size_t)j * D, *d1 = s->prev + (size_t)j * D, *d0 = s->gbest + (size_t)j * D;
                    AttackSlot *sl = &s->slot[j];
                    if (k == 0 && ti == 0 && r == 0) {
                        int z = 1;
                        for (int d = 0; d < D && z; d++) z = g[d] == 0.0f;
                        ex[sl->ex].zero_grad = z;
                    }
                    double gc = 0, gx = 0;
                    for (int d = 0; d < D; d++) { gc += (double)g[d] * cur[d]; gx += (double)g[d] * xs[d]; }
                    const double df = s->loss[j];
                    double a1 = fab_project(cur, g, -df, D, p->norm, d1, s->ptmp);
                    double a0 = fab_project(xs, g, gc - df - gx, D, p->norm, d0, s->ptmp);
                    a1 = fmax(a1, 1e-8);
                    a0 = fmax(a0, 1e-8);
                    const float al = (float)fmin(fmax(a1 / (a1 + a0), 0.0), FAB_ALPHA_MAX);
                    for (int d = 0; d < D; d++) {
                        float v = (cur[d] + (float)FAB_ETA * d1[d]) * (1.0f - al) + (xs[d] + (float)FAB_ETA * d0[d]) * al;
                        cur[d] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                    }
                }
                if (s->hook) s->hook(s->hook_ctx, s->xs, s->cur, na, D, p, k + 1);
                lg = model_forward(m, w, s->cur, na, FWD_PREDICT);
                int kk = 0;
                for (int j = 0; j < na; j++) {
                    AttackSlot *sl = &s->slot[j];
                    const float *xs = s->xs + (size_t)j * D;
                    float *cur = s->cur + (size_t)j * D;
                    if (argmax_row(lg + (size_t)j * K, K) != sl->y) {
                        for (int d = 0; d < D; d++) s->prev[(size_t)j * D + d] = cur[d] - xs[d];
                        double nr = vnorm(s->prev + (size_t)j * D, D, p->norm);
                        if (nr < sl->res) {
                            sl->res = nr;
                            memcpy(s->best + (size_t)j * D, cur, sizeof(float) * D);
                        }
                        for (int d = 0; d < D; d++) cur[d] = xs[d] + (float)FAB_BETA * (cur[d] - xs[d]);
                    }
                    if (sl->res < ex[sl->ex].loss) ex[sl->ex].loss = (float)sl->res;
                    if (sl->res <= p->eps) { /* broken inside the ball: done */
                        memcpy(x_adv + (size_t)sl->ex * D, s->best + (size_t)j * D, sizeof(float) * D);
                        ex[sl->ex].success = 1;
                        done[sl->ex] = 1;
                        continue;
                    }
                    if (kk != j) move_row(s, kk, j);
                    kk++;
                }
                na = kk;
            }
        }
out:
    return 0;
}
