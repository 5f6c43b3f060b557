/* square.c -- the Square attack, Linf (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020, Alg. 1 and
 * their reference code): a gradient-free check that robustness is not gradient masking.
 *
 * Per example: x_best = clip01(x + vertical stripes of +-eps per (channel, column)); margin
 * m(x) = z_y - max_{k!=y} z_k (targeted: max_{k!=t} z_k - z_t). Each iteration draws a square of side
 * s = round(sqrt(p * H * W)) (1 <= s <= min(H,W)-1) at a uniform position and, per channel, one value
 * in {-eps, +eps}; the candidate is x_best with that window set to clip01(x + value); it replaces x_best
 * when its margin is lower. p follows the paper's piecewise schedule (p_init halved at 10, 50, 200,
 * 500, 1000, 2000, 4000, 6000, 8000 per 10000 of the budget). An example stops when it is
 * misclassified (targeted: predicted as the target) or has spent `queries` model evaluations, the init
 * included. Only still-active examples are sent through the model (packed into one batch).
 */
#include <math.h>
#include <string.h>

#include "harness/loss.h"
#include "attacks/attack.h"

static double p_schedule(double p_init, int it, int n_iters) {
    int t = (int)((double)it / n_iters * 10000);
    static const int edge[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
    double p = p_init;
    for (int i = 0; i < (int)ARRAY_LEN(edge); i++)
        if (t > edge[i]) p = p_init / (double)(2 << i);
    return p;
}

static float margin(const float *z, int K, int yt, int targeted) {
    float other = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != yt && z[k] > other) other = z[k];
    return targeted ? other - z[yt] : z[yt] - other;
}

/* success: argmax (lowest index on ties, as loss.h) differs from y, or equals the target */
static int succeeded(const float *z, int K, int yt, int targeted) {
    int a = argmax_row(z, K);
    return targeted ? a == yt : a != yt;
}

int attack_square(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                  AttackExample *ex, AttackScratch *s) {
    CHECK(n <= s->cap && n <= w->cap && s->D == model_in_dim(m));
    CHECK(p->queries >= 1 && p->p_init > 0 && p->p_init <= 1);
    const int D = s->D, K = s->K, C = m->spec.in_c, H = m->spec.in_h, W = m->spec.in_w;
    const float eps = (float)p->eps;
    for (int i = 0; i < n; i++) {
        CHECK(y[i] >= 0 && y[i] < K);
        s->yt[i] = !p->targeted ? y[i] : p->target >= 0 ? p->target : (y[i] + 1) % K;
        rng_seed(&s->rng[i], p->seed, RNG_ATTACK, (uint64_t)(s->index0 + i));
    }
    /* init: vertical stripes */
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float *ci = s->cur + (size_t)i * D;
        for (int c = 0; c < C; c++)
            for (int col = 0; col < W; col++) {
                float v = rng_below(&s->rng[i], 2) ? eps : -eps;
                for (int r = 0; r < H; r++) {
                    long j = ((long)c * H + r) * W + col;
                    ci[j] = xi[j] + v < 0.0f ? 0.0f : xi[j] + v > 1.0f ? 1.0f : xi[j] + v;
                }
            }
    }
    const float *lg = model_forward(m, w, s->cur, n, FWD_INFER);
    for (int i = 0; i < n; i++) {
        s->best_loss[i] = margin(lg + (size_t)i * K, K, s->yt[i], p->targeted);
        s->best_succ[i] = (uint8_t)succeeded(lg + (size_t)i * K, K, s->yt[i], p->targeted);
        ex[i].queries = 1;
        ex[i].zero_grad = 0;
    }
    if (s->hook) s->hook(s->hook_ctx, x, s->cur, n, D, p, 0);

    const int n_iters = p->queries - 1, minhw = H < W ? H : W;
    for (int it = 0; it < n_iters; it++) {
        int na = 0;
        for (int i = 0; i < n; i++)
            if (!s->best_succ[i] && ex[i].queries < p->queries) s->active[na++] = i;
        if (!na) break;
        double pp = p_schedule(p->p_init, it, n_iters);
        int side = (int)lround(sqrt(pp * H * W));
        if (side > minhw - 1) side = minhw - 1;
        if (side < 1) side = 1;
        for (int a = 0; a < na; a++) {
            int i = s->active[a];
            Rng *r = &s->rng[i];
            const float *xi = x + (size_t)i * D, *ci = s->cur + (size_t)i * D;
            float *cand = s->g + (size_t)a * D;
            memcpy(cand, ci, sizeof(float) * D);
            int vh = (int)rng_below(r, (uint32_t)(H - side + 1)), vw = (int)rng_below(r, (uint32_t)(W - side + 1));
            /* redraw the signs while the window would not change at all (reference code; bounded) */
            for (int tries = 0; tries < 16; tries++) {
                int changed = 0;
                for (int c = 0; c < C; c++) {
                    float v = rng_below(r, 2) ? eps : -eps;
                    for (int yy = vh; yy < vh + side; yy++)
                        for (int xx = vw; xx < vw + side; xx++) {
                            long j = ((long)c * H + yy) * W + xx;
                            float nv = xi[j] + v < 0.0f ? 0.0f : xi[j] + v > 1.0f ? 1.0f : xi[j] + v;
                            changed |= fabsf(nv - ci[j]) >= 1e-7f;
                            cand[j] = nv;
                        }
                }
                if (changed) break;
            }
        }
        lg = model_forward(m, w, s->g, na, FWD_INFER);
        for (int a = 0; a < na; a++) {
            int i = s->active[a];
            const float *z = lg + (size_t)a * K;
            ex[i].queries++;
            float mg = margin(z, K, s->yt[i], p->targeted);
            if (mg < s->best_loss[i]) {
                s->best_loss[i] = mg;
                s->best_succ[i] = (uint8_t)succeeded(z, K, s->yt[i], p->targeted);
                memcpy(s->cur + (size_t)i * D, s->g + (size_t)a * D, sizeof(float) * D);
            }
        }
        if (s->hook) s->hook(s->hook_ctx, x, s->cur, n, D, p, it + 1);
    }
    memcpy(x_adv, s->cur, sizeof(float) * (size_t)n * D);
    for (int i = 0; i < n; i++) { ex[i].loss = s->best_loss[i]; ex[i].success = s->best_succ[i]; }
    return 0;
}
