/* batchnorm.c -- L_BN: batch-norm over channels (1-d when H = W = 1), PyTorch semantics: in training the
 * batch statistics (biased variance) normalise and the running statistics move by momentum 0.1
 * (unbiased variance), frozen layers keep theirs; in inference the running statistics are constants.
 * eps 1e-5. Training needs the whole batch (statistics; a weight gradient): it runs split by channel
 * block, between the per-sample runs (pass.c); inference is per sample.
 * Works on NCHW and channel-blocked tensors alike (a plain tensor is blocks of one channel); padding
 * lanes stay zero (gamma, beta and 1/std are 0 there). x-hat is recomputed from the input in the
 * backward pass (the same float operations as the forward, so the same values) rather than stored.
 * Its scratch (w->aux[i]): the mean and 1/std used by the last training forward, (cp) each. */
#include <math.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

#define BN_MEAN(w, i) ((w)->aux[i])
#define BN_INVSTD(w, L, i) ((w)->aux[i] + (L)->cp)
#define BN_EPS 1e-5f
#define VMAX 16

static void bn_work_need(const Layer *L, int cap, WorkNeed *n) { n->aux = 2L * L->cp; }

/* lanes per block: the layout's block, 1 for NCHW */
static inline int lanes(const Layer *L) { return L->blk ? L->blk : 1; }

/* ---- training forward on channel blocks [k0, k1): statistics, running statistics, y ---- */
static inline __attribute__((always_inline)) void bn_fwd_train_blocks(Layer *L, Work *w, int i, const float *x,
                                                                       float *y, int k0, int k1, const int V) {
    const int n = w->n;
    const long hw = (long)L->h * L->w, on = out_n(L), M = n * hw;
    const float mom = 0.1f;
    for (int k = k0; k < k1; k++) {
        double s[VMAX] = {0}, ss[VMAX] = {0};
        for (int b = 0; b < n; b++) {
            const float *xp = x + b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) s[v] += xp[q * V + v];
        }
        double mu[VMAX];
        for (int v = 0; v < V; v++) mu[v] = s[v] / M;
        for (int b = 0; b < n; b++) {
            const float *xp = x + b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) { double d = xp[q * V + v] - mu[v]; ss[v] += d * d; }
        }
        float mean[VMAX], inv[VMAX], g[VMAX], be[VMAX];
        for (int v = 0; v < V; v++) {
            const int c = k * V + v;
            if (c >= L->c) { mean[v] = inv[v] = g[v] = be[v] = 0; }
            else {
                double var = ss[v] / M;
                mean[v] = (float)mu[v];
                inv[v] = (float)(1.0 / sqrt(var + BN_EPS));
                g[v] = L->gamma[c];
                be[v] = L->beta[c];
                if (!L->frozen) { /* PyTorch: running_var uses the unbiased variance */
                    L->run_mean[c] = (1 - mom) * L->run_mean[c] + mom * (float)mu[v];
                    L->run_var[c] = (1 - mom) * L->run_var[c] + mom * (float)(M > 1 ? ss[v] / (M - 1) : var);
                }
            }
            BN_MEAN(w, i)[c] = mean[v];
            BN_INVSTD(w, L, i)[c] = inv[v];
        }
        for (int b = 0; b < n; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) {
                    float t = (x[o + q * V + v] - mean[v]) * inv[v];
                    y[o + q * V + v] = g[v] * t + be[v];
                }
        }
    }
}

static void bn_forward_batch(Model *m, Work *w, int i, int mode, int t, int T) {
    Layer *L = &m->L[i];
    const int V = lanes(L);
    long k0, k1;
    split_range(L->cp / V, t, T, &k0, &k1);
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    if (V == 16) bn_fwd_train_blocks(L, w, i, x, y, (int)k0, (int)k1, 16);
    else if (V == 8) bn_fwd_train_blocks(L, w, i, x, y, (int)k0, (int)k1, 8);
    else bn_fwd_train_blocks(L, w, i, x, y, (int)k0, (int)k1, 1);
}

/* the per-channel affine map of inference, y = x a + c (a = gamma / std, c = beta - mean a, kept as
 * gamma * ((x - mean) / std) + beta to round as PyTorch does) */
static inline __attribute__((always_inline)) void bn_fwd_infer(const Layer *L, const float *x, float *y, long nb,
                                                                const int V) {
    const long hw = (long)L->h * L->w, on = out_n(L);
    for (int k = 0; k < L->cp / V; k++) {
        float mean[VMAX], inv[VMAX], g[VMAX], be[VMAX];
        for (int v = 0; v < V; v++) {
            int c = k * V + v;
            int real = c < L->c;
            mean[v] = real ? L->run_mean[c] : 0;
            inv[v] = real ? 1.0f / sqrtf(L->run_var[c] + BN_EPS) : 0;
            g[v] = real ? L->gamma[c] : 0;
            be[v] = real ? L->beta[c] : 0;
        }
        for (long b = 0; b < nb; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) y[o + q * V + v] = g[v] * ((x[o + q * V + v] - mean[v]) * inv[v]) + be[v];
        }
    }
}

static void bn_forward(Model *m, Work *w, int i, long b0, long b1, int t) { /* inference */
    Span s = span_of(m, w, i, b0, b1);
    const int V = lanes(s.L);
    if (s.nb <= 0) return;
    if (V == 16) bn_fwd_infer(s.L, s.x, s.y, s.nb, 16);
    else if (V == 8) bn_fwd_infer(s.L, s.x, s.y, s.nb, 8);
    else bn_fwd_infer(s.L, s.x, s.y, s.nb, 1);
}

/* ---- backward over the whole batch (training, or a weight gradient wanted) on blocks [k0, k1) ---- */
static inline __attribute__((always_inline)) void bn_bwd_blocks(Model *m, Work *w, int i, int flags, int assign,
                                                                int k0, int k1, const int V) {
    Layer *L = &m->L[i];
    const int n = w->n;
    const float *dy = w->grad[i], *x = node_act(w, L->in);
    float *dx = node_grad(w, L->in);
    const int need_dx = need_dx_of(m, L, flags);
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    const long hw = (long)L->h * L->w, on = out_n(L), M = n * hw;
    for (int k = k0; k < k1; k++) {
        float mean[VMAX], inv[VMAX], g[VMAX];
        for (int v = 0; v < V; v++) {
            int c = k * V + v, real = c < L->c;
            if (w->train) { mean[v] = BN_MEAN(w, i)[c]; inv[v] = BN_INVSTD(w, L, i)[c]; }
            else { mean[v] = real ? L->run_mean[c] : 0; inv[v] = real ? 1.0f / sqrtf(L->run_var[c] + BN_EPS) : 0; }
            g[v] = real ? L->gamma[c] * inv[v] : 0;
        }
        double sdy[VMAX] = {0}, sdyx[VMAX] = {0};
        for (int b = 0; b < n; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) {
                    float d = dy[o + q * V + v], xh = (x[o + q * V + v] - mean[v]) * inv[v];
                    sdy[v] += d;
                    sdyx[v] += (double)d * xh;
                }
        }
        for (int v = 0; v < V && want_params; v++)
            if (k * V + v < L->c) { L->dgamma[k * V + v] = (float)sdyx[v]; L->dbeta[k * V + v] = (float)sdy[v]; }
        if (!need_dx) continue;
        float a[VMAX], bq[VMAX];
        for (int v = 0; v < V; v++) { a[v] = w->train ? (float)(sdy[v] / M) : 0; bq[v] = w->train ? (float)(sdyx[v] / M) : 0; }
        for (int b = 0; b < n; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) {
                    const long j = o + q * V + v;
                    /* batch statistics: dx = g/M (M dy - sum dy - xhat sum dy xhat); running: g dy */
                    float xh = (x[j] - mean[v]) * inv[v];
                    float r = w->train ? g[v] * (dy[j] - a[v] - xh * bq[v]) : g[v] * dy[j];
                    dx[j] = assign ? 0.0f + r : dx[j] + r;
                }
        }
    }
}

static void bn_backward_batch(Model *m, Work *w, int i, int flags, int assign, int t, int T) {
    const Layer *L = &m->L[i];
    const int V = lanes(L);
    long k0, k1;
    split_range(L->cp / V, t, T, &k0, &k1);
    if (V == 16) bn_bwd_blocks(m, w, i, flags, assign, (int)k0, (int)k1, 16);
    else if (V == 8) bn_bwd_blocks(m, w, i, flags, assign, (int)k0, (int)k1, 8);
    else bn_bwd_blocks(m, w, i, flags, assign, (int)k0, (int)k1, 1);
}

/* ---- inference backward without parameter gradients: per sample, dx (+)= gamma / std * dy ---- */
static inline __attribute__((always_inline)) void bn_bwd_infer(const Layer *L, const float *dy, float *dx, long nb,
                                                                int assign, const int V) {
    const long hw = (long)L->h * L->w, on = out_n(L);
    for (int k = 0; k < L->cp / V; k++) {
        float g[VMAX];
        for (int v = 0; v < V; v++) {
            int c = k * V + v;
            g[v] = c < L->c ? L->gamma[c] * (1.0f / sqrtf(L->run_var[c] + BN_EPS)) : 0;
        }
        for (long b = 0; b < nb; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) {
                    float r = g[v] * dy[o + q * V + v];
                    dx[o + q * V + v] = assign ? 0.0f + r : dx[o + q * V + v] + r;
                }
        }
    }
}

static void bn_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                        long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (!need_dx_of(m, s.L, flags) || s.nb <= 0) return;
    const int V = lanes(s.L);
    if (V == 16) bn_bwd_infer(s.L, s.dy, s.dx, s.nb, assign, 16);
    else if (V == 8) bn_bwd_infer(s.L, s.dy, s.dx, s.nb, assign, 8);
    else bn_bwd_infer(s.L, s.dy, s.dx, s.nb, assign, 1);
}

static int bn_batch_forward(const Layer *L, int mode) { return mode == FWD_TRAIN; }
/* a weight gradient sums over the batch, in either mode */
static int bn_batch_backward(const Layer *L, int train, int flags) {
    return train || ((flags & BW_PARAMS) && L->trainable && !L->frozen);
}

const LayerOps LAYER_BN = {
    .name = "batchnorm",
    .forward = bn_forward,
    .forward_batch = bn_forward_batch,
    .batch_forward = bn_batch_forward,
    .backward = bn_backward,
    .backward_batch = bn_backward_batch,
    .batch_backward = bn_batch_backward,
    .stores_dx = 1,
    .work_need = bn_work_need,
};
