/* square.c -- the Square attack, Linf and L2 (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020,
 * Algorithms 1-3), configured as AutoAttack runs it (autoattack/square.py with resc_schedule=False): a
 * gradient-free check that robustness is not gradient masking.
 *
 * Per example: margin m(x) = z_y - max_{k!=y} z_k (targeted: max_{k!=t} z_k - z_t), the loss minimised.
 * p(it) = p_init halved after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (AutoAttack: on
 * the iteration count itself, not rescaled to the budget; p_init 0.8 there and by default here).
 *   Linf: x_best = clip01(x + vertical stripes of +-eps per (channel, column)); each iteration draws a
 *     square of side s = round(sqrt(p H W)) (1 <= s <= min(H,W)-1) at a uniform position and, per channel,
 *     one value in {-eps, +eps}; the candidate is x_best with that window set to clip01(x + value).
 *   L2: x_best = clip01(x + eps * delta / |delta|_2), delta a grid of (H/5)-sized windows, each the
 *     paper's centre-weighted pattern eta (two opposite-signed rectangles of concentric 1/(k+1)^2 rings,
 *     transposed with probability 1/2) with a random sign per channel; each iteration draws two windows
 *     of odd side s = max(round(sqrt(p H W)), 3) and moves the perturbation mass of both into the first
 *     (a fresh eta pattern plus the old direction there, rescaled so the whole perturbation keeps norm
 *     eps), then x_new = clip01(x + eps * delta / |delta|_2).
 * A candidate replaces x_best when its margin is lower. An example stops when it is misclassified
 * (targeted: predicted as the target) or has spent `queries` model evaluations, the init included
 * (AutoAttack allows queries + 1). Only still-active examples go through the model (packed into one
 * batch). Draws are per example, keyed by (seed, RNG_ATTACK, example index): AutoAttack draws one
 * window per iteration for its whole batch; window positions here are uniform over all H-s+1 places
 * (AutoAttack's randint excludes the last one).
 */
#include <math.h>
#include <string.h>

#include "harness/loss.h"
#include "attacks/attack.h"

double square_p_schedule(double p_init, int it) {
    static const int edge[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
    double p = p_init;
    for (int i = 0; i < (int)ARRAY_LEN(edge); i++)
        if (it > edge[i]) p = p_init / (double)(2 << i);
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

static inline float clip01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

/* The L2 window pattern of side s into e (s x s, row-major), unit L2 norm: the top s/2 rows hold
 * rectangles(s/2, s), the rest -rectangles(s - s/2, s); transposed when `flip`. rectangles(a, b): an
 * a x b block that adds 1/(k+1)^2 on the k-th concentric rectangle around its centre, k = 0.. */
static void eta_pattern(int s, int flip, float *e, float *tmp) {
    for (int half = 0; half < 2; half++) {
        int a = half ? s - s / 2 : s / 2, r0 = half ? s / 2 : 0;
        float sg = half ? -1.0f : 1.0f;
        for (int i = 0; i < a * s; i++) tmp[i] = 0;
        int ch = a / 2 + 1, cw = s / 2 + 1, lo_h = ch - 1, lo_w = cw - 1, kmax = ch > cw ? ch : cw;
        for (int k = 0; k < kmax; k++, lo_h--, lo_w--) {
            float v = 1.0f / (float)((k + 1) * (k + 1));
            int h0 = lo_h > 0 ? lo_h : 0, h1 = lo_h + 2 * k + 1 < a ? lo_h + 2 * k + 1 : a;
            int w0 = lo_w > 0 ? lo_w : 0, w1 = lo_w + 2 * k + 1 < s ? lo_w + 2 * k + 1 : s;
            for (int i = h0; i < h1; i++)
                for (int j = w0; j < w1; j++) tmp[i * s + j] += v;
        }
        double nn = 0;
        for (int i = 0; i < a * s; i++) nn += (double)tmp[i] * tmp[i];
        float f = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
        for (int i = 0; i < a; i++)
            for (int j = 0; j < s; j++) e[(r0 + i) * s + j] = sg * tmp[i * s + j] * f;
    }
    double nn = 0;
    for (int i = 0; i < s * s; i++) nn += (double)e[i] * e[i];
    float f = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
    for (int i = 0; i < s * s; i++) e[i] *= f;
    if (flip)
        for (int i = 0; i < s; i++)
            for (int j = i + 1; j < s; j++) { float t = e[i * s + j]; e[i * s + j] = e[j * s + i]; e[j * s + i] = t; }
}

/* cand = clip01(x + eps * delta / |delta|_2) */
static void l2_candidate(const float *x, const float *delta, int D, double eps, float *cand) {
    double nn = 0;
    for (int j = 0; j < D; j++) nn += (double)delta[j] * delta[j];
    float f = (float)(eps / (sqrt(nn) + 1e-12));
    for (int j = 0; j < D; j++) cand[j] = clip01(x[j] + f * delta[j]);
}

/* The L2 init of one example: the grid of eta windows, signed per (window, channel). */
static void l2_init(const float *x, float *cur, float *delta, int C, int H, int W, double eps, Rng *r, float *e,
                    float *tmp) {
    const int D = C * H * W;
    int s = H / 5 > 0 ? H / 5 : 1;
    memset(delta, 0, sizeof(float) * D);
    int sp = (H - s * 5) / 2 > 0 ? (H - s * 5) / 2 : 0;
    for (int vh = sp; vh + s <= H; vh += s)
        for (int vw = sp; vw + s <= W; vw += s) {
            eta_pattern(s, (int)rng_below(r, 2), e, tmp);
            for (int c = 0; c < C; c++) {
                float sg = rng_below(r, 2) ? 1.0f : -1.0f;
                for (int i = 0; i < s; i++)
                    for (int j = 0; j < s; j++) delta[((long)c * H + vh + i) * W + vw + j] += sg * e[i * s + j];
            }
        }
    l2_candidate(x, delta, D, eps, cur);
}

/* One L2 proposal for one example: delta = x_best - x, the windows (vh, vw) and (vh2, vw2) of side s. */
static void l2_propose(const float *x, const float *best, float *cand, float *delta, int C, int H, int W, int s,
                       double eps, Rng *r, float *e, float *tmp) {
    const int D = C * H * W;
    for (int j = 0; j < D; j++) delta[j] = best[j] - x[j];
    int vh = (int)rng_below(r, (uint32_t)(H - s + 1)), vw = (int)rng_below(r, (uint32_t)(W - s + 1));
    int vh2 = (int)rng_below(r, (uint32_t)(H - s + 1)), vw2 = (int)rng_below(r, (uint32_t)(W - s + 1));
    eta_pattern(s, (int)rng_below(r, 2), e, tmp);
    double n_img = 0, n_win = 0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                double v = delta[((long)c * H + i) * W + j];
                n_img += v * v;
                int in1 = i >= vh && i < vh + s && j >= vw && j < vw + s, in2 = i >= vh2 && i < vh2 + s && j >= vw2 && j < vw2 + s;
                if (in1 || in2) n_win += v * v;
            }
    /* the budget the moved mass may use: what the windows held plus what is left of eps, per channel */
    double scale = sqrt(fmax(eps * eps - n_img, 0.0) / C + n_win);
    for (int c = 0; c < C; c++) {
        float sg = rng_below(r, 2) ? 1.0f : -1.0f;
        double n1 = 0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                double v = delta[((long)c * H + vh + i) * W + vw + j];
                n1 += v * v;
            }
        n1 = sqrt(n1);
        double nn = 0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                float v = sg * e[i * s + j] + (float)(delta[((long)c * H + vh + i) * W + vw + j] / (1e-12 + n1));
                tmp[i * s + j] = v;
                nn += (double)v * v;
            }
        float f = (float)(scale / (1e-12 + sqrt(nn)));
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) delta[((long)c * H + vh2 + i) * W + vw2 + j] = 0.0f;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) delta[((long)c * H + vh + i) * W + vw + j] = tmp[i * s + j] * f;
    }
    l2_candidate(x, delta, D, eps, cand);
}

int attack_square(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                  AttackExample *ex, AttackScratch *s) {
    CHECK(n <= s->cap && n <= w->cap && s->D == model_in_dim(m));
    CHECK(p->queries >= 1 && p->p_init > 0 && p->p_init <= 1);
    const int D = s->D, K = s->K, C = m->spec.in_c, H = m->spec.in_h, W = m->spec.in_w;
    const float eps = (float)p->eps;
    const int l2 = p->norm == NORM_L2;
    /* e: the eta window (s x s <= H*W floats) in s->tile; its scratch half in s->prev (row 0) */
    float *e = s->tile, *etmp = s->prev;
    for (int i = 0; i < n; i++) {
        CHECK(y[i] >= 0 && y[i] < K);
        s->yt[i] = !p->targeted ? y[i] : p->target >= 0 ? p->target : (y[i] + 1) % K;
        rng_seed(&s->rng[i], p->seed, RNG_ATTACK, (uint64_t)attack_index(s, i));
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float *ci = s->cur + (size_t)i * D;
        if (l2) {
            l2_init(xi, ci, s->gsum, C, H, W, p->eps, &s->rng[i], e, etmp);
            continue;
        }
        for (int c = 0; c < C; c++) /* vertical stripes */
            for (int col = 0; col < W; col++) {
                float v = rng_below(&s->rng[i], 2) ? eps : -eps;
                for (int r = 0; r < H; r++) {
                    long j = ((long)c * H + r) * W + col;
                    ci[j] = clip01(xi[j] + v);
                }
            }
    }
    const float *lg = model_forward(m, w, s->cur, n, FWD_PREDICT);
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
        double pp = square_p_schedule(p->p_init, it);
        int side = (int)lround(sqrt(pp * H * W));
        if (l2) {
            if (side < 3) side = 3;
            if (side % 2 == 0) side++;
            if (side > minhw) side = minhw % 2 ? minhw : minhw - 1;
            if (side < 1) side = 1;
        } else {
            if (side > minhw - 1) side = minhw - 1;
            if (side < 1) side = 1;
        }
        for (int a = 0; a < na; a++) {
            int i = s->active[a];
            Rng *r = &s->rng[i];
            const float *xi = x + (size_t)i * D, *ci = s->cur + (size_t)i * D;
            float *cand = s->g + (size_t)a * D;
            if (l2) {
                l2_propose(xi, ci, cand, s->gsum, C, H, W, side, p->eps, r, e, etmp);
                continue;
            }
            memcpy(cand, ci, sizeof(float) * D);
            int vh = (int)rng_below(r, (uint32_t)(H - side + 1)), vw = (int)rng_below(r, (uint32_t)(W - side + 1));
            /* redraw the signs while the window would not change at all (the paper's reference code; bounded) */
            for (int tries = 0; tries < 16; tries++) {
                int changed = 0;
                for (int c = 0; c < C; c++) {
                    float v = rng_below(r, 2) ? eps : -eps;
                    for (int yy = vh; yy < vh + side; yy++)
                        for (int xx = vw; xx < vw + side; xx++) {
                            long j = ((long)c * H + yy) * W + xx;
                            float nv = clip01(xi[j] + v);
                            changed |= fabsf(nv - ci[j]) >= 1e-7f;
                            cand[j] = nv;
                        }
                }
                if (changed) break;
            }
        }
        lg = model_forward(m, w, s->g, na, FWD_PREDICT);
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
