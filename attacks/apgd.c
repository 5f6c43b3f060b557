/* apgd.c -- APGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
 * parameter-free attacks", ICML 2020, Algorithm 1), Linf and L2, on CE, DLR or targeted DLR, with
 * restarts and targets: the step-size-free PGD that AutoAttack is built on. The formulas are in attack.h.
 *
 * Layout: the examples still unbroken are packed into the first `na` slots of the scratch's (cap, D)
 * buffers (xs clean, cur x_k, prev x_{k-1}, best x_max, g the gradient at x_k, gbest the gradient at
 * x_max) and s->slot (step size, loss bookkeeping). An example leaves the pack at its first
 * misclassified iterate (that iterate is its adversarial), so later steps, restarts and targets cost
 * nothing for it; the pack is compacted in place, stably. Nothing allocates.
 * Random starts are keyed by (seed, RNG_ATTACK, example index, target run, restart): results do not
 * depend on the batch size or on which other examples are still being attacked.
 * Shape letters: n rows, na packed rows, D = C*H*W, K classes.
 */
#include <math.h>
#include <string.h>

#include "harness/loss.h"
#include "attacks/attack.h"

#define APGD_RHO 0.75      /* condition 1: fewer than rho of the steps since the last checkpoint raised the loss */
#define APGD_MOMENTUM 0.75 /* x_{k+1} = P(x_k + a (z_{k+1} - x_k) + (1 - a)(x_k - x_{k-1})), a = 0.75 (1 at k = 0) */
#define APGD_MAX_CHECKPOINTS 32
#define APGD_KEY_TAG (1ULL << 60) /* keeps APGD's streams apart from PGD's (index * 1024 + restart) */

int apgd_checkpoints(int steps, int *w, int cap) {
    /* p_j in hundredths, so w_j = ceil(p_j steps / 100) is exact integer arithmetic (0.22 * 100 in double
       is 22.000000000000004, whose ceil is 23) */
    int n = 0;
    long pp = 0, pc = 22;
    while (steps > 0) {
        long wj = (pc * steps + 99) / 100;
        if (wj > steps) break;
        if (n == 0 || wj > w[n - 1]) {
            CHECK(n < cap);
            w[n++] = (int)wj;
        }
        long d = pc - pp - 3;
        pp = pc;
        pc += d > 6 ? d : 6;
    }
    return n;
}

/* indices of the 4 largest logits, decreasing (ties: the lower index first); unused entries -1 */
static void top4(const float *z, int K, int *top) {
    top[0] = top[1] = top[2] = top[3] = -1;
    for (int k = 0; k < K; k++) {
        int at = 4;
        while (at > 0 && (top[at - 1] < 0 || z[k] > z[top[at - 1]])) at--;
        if (at == 4) continue;
        for (int q = 3; q > at; q--) top[q] = top[q - 1];
        top[at] = k;
    }
}

double attack_dlr(const float *z, int K, int y, int t, float *dz) {
    int top[4];
    CHECK(y >= 0 && y < K);
    top4(z, K, top);
    double num, den, loss;
    if (dz) memset(dz, 0, sizeof(float) * K);
    if (t < 0) {
        CHECK(K >= 3);
        int m = top[0] == y ? top[1] : top[0]; /* max over i != y */
        num = (double)z[y] - z[m];
        den = (double)z[top[0]] - z[top[2]] + 1e-12;
        loss = -num / den;
        if (dz) {
            double g = num / (den * den);
            dz[y] += (float)(-1.0 / den);
            dz[m] += (float)(1.0 / den);
            dz[top[0]] += (float)g;
            dz[top[2]] -= (float)g;
        }
    } else {
        CHECK(K >= 4 && t < K && t != y);
        num = (double)z[y] - z[t];
        den = (double)z[top[0]] - 0.5 * ((double)z[top[2]] + z[top[3]]) + 1e-12;
        loss = -num / den;
        if (dz) {
            double g = num / (den * den);
            dz[y] += (float)(-1.0 / den);
            dz[t] += (float)(1.0 / den);
            dz[top[0]] += (float)g;
            dz[top[2]] -= (float)(0.5 * g);
            dz[top[3]] -= (float)(0.5 * g);
        }
    }
    return loss;
}

/* The loss of the packed rows at s->cur: s->loss, s->ok (misclassified) and, with grad, s->g. */
static void apgd_eval(Model *m, Work *w, const AttackParams *p, AttackScratch *s, int na, int grad) {
    const int K = s->K;
    const float *lg = model_forward(m, w, s->cur, na, grad ? FWD_INFER : FWD_PREDICT);
    if (p->loss == LOSS_CE) {
        loss_softmax_ce(lg, s->yt, na, K, 1.0f, s->dlogits, s->loss, s->ok);
        for (int j = 0; j < na; j++) s->ok[j] = !s->ok[j];
    } else {
        for (int j = 0; j < na; j++) {
            const float *z = lg + (size_t)j * K;
            s->loss[j] = (float)attack_dlr(z, K, s->slot[j].y, p->loss == LOSS_DLR_T ? s->slot[j].t : -1,
                                           s->dlogits + (size_t)j * K);
            s->ok[j] = argmax_row(z, K) != s->slot[j].y;
        }
    }
    if (grad) attack_input_grad(m, w, s->dlogits, na, p, s, s->g);
}

/* min(max(v, lo), hi) without a libm call per element (fminf/fmaxf are not inlined without -ffast-math) */
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* v <- P(v): into the eps-ball around x, then into [0,1] (Linf: per coordinate; L2: AutoAttack's
 * x + (v - x) min(1, eps / |v - x|_2), then clipped, which only shortens the perturbation) */
static void project(const float *x, float *v, int D, int norm, float eps) {
    if (norm == NORM_LINF) {
        for (int d = 0; d < D; d++) v[d] = clampf(clampf(v[d], x[d] - eps, x[d] + eps), 0.0f, 1.0f);
        return;
    }
    double nn = 0;
    for (int d = 0; d < D; d++) nn += (double)(v[d] - x[d]) * (v[d] - x[d]);
    nn = sqrt(nn);
    float sc = nn > eps ? (float)(eps / nn) : 1.0f;
    for (int d = 0; d < D; d++) v[d] = clampf(x[d] + (v[d] - x[d]) * sc, 0.0f, 1.0f);
}

/* One step of every packed row: z = P(x_k + eta dir(g)), x_{k+1} = P(x_k + a (z - x_k) + (1-a)(x_k - x_{k-1})).
 * dir = sign(g) (Linf) or g / |g|_2 (L2). s->gsum holds z. */
static void apgd_step(const AttackParams *p, AttackScratch *s, int na, int first) {
    const int D = s->D;
    const float eps = (float)p->eps, a = first ? 1.0f : (float)APGD_MOMENTUM;
    for (int j = 0; j < na; j++) {
        const float *xs = s->xs + (size_t)j * D, *g = s->g + (size_t)j * D;
        float *cur = s->cur + (size_t)j * D, *prev = s->prev + (size_t)j * D, *z = s->gsum + (size_t)j * D;
        const float eta = s->slot[j].eta;
        if (p->norm == NORM_LINF) {
            for (int d = 0; d < D; d++) z[d] = cur[d] + eta * (float)((g[d] > 0.0f) - (g[d] < 0.0f));
        } else {
            double gn = 0;
            for (int d = 0; d < D; d++) gn += (double)g[d] * g[d];
            float f = gn > 0 ? (float)(eta / sqrt(gn)) : 0.0f;
            for (int d = 0; d < D; d++) z[d] = cur[d] + f * g[d];
        }
        project(xs, z, D, p->norm, eps);
        for (int d = 0; d < D; d++) z[d] = cur[d] + a * (z[d] - cur[d]) + (1.0f - a) * (cur[d] - prev[d]);
        project(xs, z, D, p->norm, eps);
        memcpy(prev, cur, sizeof(float) * D);
        memcpy(cur, z, sizeof(float) * D);
    }
}

/* copies packed row j to row k (k < j) */
static void move_row(AttackScratch *s, int k, int j) {
    const size_t D = (size_t)s->D;
    float *bufs[] = {s->xs, s->cur, s->prev, s->best, s->g, s->gbest};
    for (size_t b = 0; b < ARRAY_LEN(bufs); b++) memcpy(bufs[b] + k * D, bufs[b] + j * D, sizeof(float) * D);
    s->slot[k] = s->slot[j];
    s->yt[k] = s->yt[j];
    s->loss[k] = s->loss[j];
}

/* Records every packed row whose iterate is misclassified (s->ok) as broken: its iterate becomes x_adv.
 * Returns the new pack size (stable compaction). */
static int settle(AttackScratch *s, int na, float *x_adv, AttackExample *ex, uint8_t *done) {
    const int D = s->D;
    int k = 0;
    for (int j = 0; j < na; j++) {
        const int e = s->slot[j].ex;
        if (s->ok[j]) {
            memcpy(x_adv + (size_t)e * D, s->cur + (size_t)j * D, sizeof(float) * D);
            ex[e].success = 1;
            if (s->loss[j] > ex[e].loss) ex[e].loss = s->loss[j];
            done[e] = 1;
            continue;
        }
        if (k != j) move_row(s, k, j);
        k++;
    }
    return k;
}

/* classes other than y by decreasing clean logit (ties: lower index first) into order (K-1) */
void attack_rank_targets(const float *z, int K, int y, int32_t *order) {
    int n = 0;
    for (int k = 0; k < K; k++) {
        if (k == y) continue;
        int at = n++;
        while (at > 0 && z[k] > z[order[at - 1]]) { order[at] = order[at - 1]; at--; }
        order[at] = k;
    }
}

void attack_sphere_start(const float *x, float *cur, int D, int norm, double eps, Rng *r) {
    double nn = 0;
    for (int d = 0; d < D; d++) {
        cur[d] = norm == NORM_LINF ? 2.0f * rng_uniform(r) - 1.0f : rng_normal(r);
        nn = norm == NORM_LINF ? fmax(nn, fabs(cur[d])) : nn + (double)cur[d] * cur[d];
    }
    if (norm == NORM_L2) nn = sqrt(nn);
    float f = nn > 0 ? (float)(eps / nn) : 0.0f;
    for (int d = 0; d < D; d++) cur[d] = clampf(x[d] + f * cur[d], 0.0f, 1.0f);
}

int attack_apgd(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                AttackExample *ex, AttackScratch *s) {
    CHECK(n <= s->cap && n <= w->cap && s->D == model_in_dim(m) && p->objective == OBJ_CE);
    CHECK(p->steps >= 0 && p->restarts >= 1 && p->restarts <= 256 && p->loss >= 0 && p->loss < LOSS_COUNT);
    const int D = s->D, K = s->K;
    int T = 1;
    if (p->loss == LOSS_DLR_T) {
        T = p->targets < K - 1 ? p->targets : K - 1;
        CHECK(K >= 4 && T >= 1 && T <= 255);
    }
    CHECK(p->loss != LOSS_DLR || K >= 3);
    int wck[APGD_MAX_CHECKPOINTS];
    const int nck = apgd_checkpoints(p->steps, wck, APGD_MAX_CHECKPOINTS);
    uint8_t *done = s->best_succ;

    /* examples the crafting model already misclassifies are not attacked (AutoAttack: x_adv = x) */
    const float *lg = model_forward(m, w, x, n, FWD_PREDICT);
    for (int i = 0; i < n; i++) {
        CHECK(y[i] >= 0 && y[i] < K);
        const float *z = lg + (size_t)i * K;
        done[i] = argmax_row(z, K) != y[i];
        ex[i] = (AttackExample){.loss = -INFINITY, .zero_grad = 0, .queries = 0, .success = done[i]};
        s->best_loss[i] = -INFINITY;
        memcpy(x_adv + (size_t)i * D, x + (size_t)i * D, sizeof(float) * D);
        if (p->loss == LOSS_DLR_T) attack_rank_targets(z, K, y[i], s->order + (size_t)i * K);
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
                sl->t = p->loss == LOSS_DLR_T ? s->order[(size_t)i * K + ti] : -1;
                s->yt[na] = y[i];
                memcpy(s->xs + (size_t)na * D, x + (size_t)i * D, sizeof(float) * D);
                Rng rg;
                rng_seed(&rg, p->seed, RNG_ATTACK,
                         APGD_KEY_TAG | (uint64_t)attack_index(s, i) << 16 | (uint64_t)ti << 8 | (uint64_t)r);
                attack_sphere_start(x + (size_t)i * D, s->cur + (size_t)na * D, D, p->norm, p->eps, &rg);
                na++;
            }
            if (!na) goto out;
            if (s->hook) s->hook(s->hook_ctx, s->xs, s->cur, na, D, p, 0);
            apgd_eval(m, w, p, s, na, p->steps > 0);
            for (int j = 0; j < na; j++) {
                AttackSlot *sl = &s->slot[j];
                if (ti == 0 && r == 0 && p->steps > 0) {
                    const float *g = s->g + (size_t)j * D;
                    int z = 1;
                    for (int d = 0; d < D && z; d++) z = g[d] == 0.0f;
                    ex[sl->ex].zero_grad = z;
                }
                sl->eta = (float)(2.0 * p->eps);
                sl->lprev = sl->lbest = sl->lcheck = s->loss[j];
                memcpy(s->best + (size_t)j * D, s->cur + (size_t)j * D, sizeof(float) * D);
                memcpy(s->prev + (size_t)j * D, s->cur + (size_t)j * D, sizeof(float) * D);
                if (p->steps > 0) memcpy(s->gbest + (size_t)j * D, s->g + (size_t)j * D, sizeof(float) * D);
            }
            na = settle(s, na, x_adv, ex, done);
            int ck = 0, wprev = 0;
            for (int k = 0; k < p->steps && na > 0; k++) {
                apgd_step(p, s, na, k == 0);
                if (s->hook) s->hook(s->hook_ctx, s->xs, s->cur, na, D, p, k + 1);
                const int grad = k + 1 < p->steps; /* the last iterate's gradient would never be used */
                apgd_eval(m, w, p, s, na, grad);
                for (int j = 0; j < na; j++) {
                    AttackSlot *sl = &s->slot[j];
                    const float L = s->loss[j];
                    sl->nincr += L > sl->lprev;
                    sl->lprev = L;
                    if (L > sl->lbest) {
                        sl->lbest = L;
                        memcpy(s->best + (size_t)j * D, s->cur + (size_t)j * D, sizeof(float) * D);
                        if (grad) memcpy(s->gbest + (size_t)j * D, s->g + (size_t)j * D, sizeof(float) * D);
                    }
                }
                na = settle(s, na, x_adv, ex, done);
                if (ck < nck && k + 1 == wck[ck]) {
                    const double need = APGD_RHO * (wck[ck] - wprev);
                    for (int j = 0; j < na; j++) {
                        AttackSlot *sl = &s->slot[j];
                        /* condition 1: too few steps raised the loss; condition 2: the step size was not
                           halved at the previous checkpoint and the best loss has not moved since */
                        int halve = sl->nincr < need || (!sl->reduced && !(sl->lbest > sl->lcheck));
                        if (halve) {
                            sl->eta *= 0.5f;
                            memcpy(s->cur + (size_t)j * D, s->best + (size_t)j * D, sizeof(float) * D);
                            memcpy(s->g + (size_t)j * D, s->gbest + (size_t)j * D, sizeof(float) * D);
                            sl->lprev = sl->lbest;
                        }
                        sl->reduced = halve;
                        sl->nincr = 0;
                        sl->lcheck = sl->lbest;
                    }
                    wprev = wck[ck++];
                }
            }
            /* unbroken: keep the best point of the run with the highest loss */
            for (int j = 0; j < na; j++) {
                const AttackSlot *sl = &s->slot[j];
                if (!(sl->lbest > s->best_loss[sl->ex])) continue;
                s->best_loss[sl->ex] = sl->lbest;
                memcpy(x_adv + (size_t)sl->ex * D, s->best + (size_t)j * D, sizeof(float) * D);
            }
        }
out:
    for (int i = 0; i < n; i++)
        if (!done[i] && s->best_loss[i] > ex[i].loss) ex[i].loss = s->best_loss[i];
    return 0;
}
