/* batchnorm.c -- L_BN: batch-norm over channels (1-d when H = W = 1), PyTorch semantics: in training the
 * batch statistics (biased variance) normalise and the running statistics move by momentum 0.1
 * (unbiased variance), frozen layers keep theirs; in inference the running statistics are constants.
 * eps 1e-5. Training needs the whole batch (statistics; a weight gradient): it runs split by channel
 * block, between the per-sample runs (pass.c); inference is per sample.
 * Works on NCHW and channel-blocked tensors alike (a plain tensor is blocks of one channel); padding
 * lanes stay zero (gamma, beta and 1/std are 0 there). x-hat is recomputed from the input in the
 * backward pass (the same float operations as the forward, so the same values) rather than stored.
 * With relu_out (fuse.c) it writes ReLU(y) and masks its output gradient by y > 0 itself.
 * Its scratch (w->aux[i]): the mean and 1/std used by the last training forward, (cp) each. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

#define BN_MEAN(w, i) ((w)->aux[i])
#define BN_INVSTD(w, L, i) ((w)->aux[i] + (L)->cp)
#define BN_EPS 1e-5f
#define VMAX 16

static void bn_work_need(const Layer *L, int cap, WorkNeed *n) { n->aux = 2L * L->cp; }

/* dy through the fused ReLU (y > 0), and dx stored or added: every load unconditional and the choices
 * selects, so the lane loops vectorise */
static inline float relu_gate(float dy, float y, int relu) {
    /* y is a ReLU output (+0 or > 0, never NaN): y > 0 exactly when its bits but the sign are not all 0,
       an integer test GCC turns into a vector select (a float compare, which may trap, it will not) */
    uint32_t yb, db;
    memcpy(&yb, &y, 4);
    memcpy(&db, &dy, 4);
    db &= -(uint32_t)((yb & 0x7fffffffu) != 0);
    float z;
    memcpy(&z, &db, 4);
    return relu ? z : dy;
}
static inline float put(float old, float r, int assign) { return (assign ? 0.0f : old) + r; }

/* lanes per block: the layout's block, 1 for NCHW */
static inline int lanes(const Layer *L) { return L->blk ? L->blk : 1; }

/* ---- training forward on channel blocks [k0, k1): statistics, running statistics, y ---- */
static inline __attribute__((always_inline)) void bn_fwd_train_blocks(Layer *L, Work *w, int i, const float *x,
                                                                       float *y, int k0, int k1, const int V,
                                                                       const int relu) {
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
                    float t = (x[o + q * V + v] - mean[v]) * inv[v], r = g[v] * t + be[v];
                    y[o + q * V + v] = relu ? (r > 0 ? r : 0.0f) : r;
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
    /* V and the fused ReLU as constants: GCC (-O2, trapping math) vectorises only branch-free lane loops */
#define BN_FT(V_, R_) bn_fwd_train_blocks(L, w, i, x, y, (int)k0, (int)k1, V_, R_)
    if (V == 16) { if (L->relu_out) BN_FT(16, 1); else BN_FT(16, 0); }
    else if (V == 8) { if (L->relu_out) BN_FT(8, 1); else BN_FT(8, 0); }
    else { if (L->relu_out) BN_FT(1, 1); else BN_FT(1, 0); }
#undef BN_FT
}

/* the per-channel affine map of inference, y = x a + c (a = gamma / std, c = beta - mean a, kept as
 * gamma * ((x - mean) / std) + beta to round as PyTorch does) */
static inline __attribute__((always_inline)) void bn_fwd_infer(const Layer *L, const float *x, float *y, long nb,
                                                                const int V, const int relu) {
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
                for (int v = 0; v < V; v++) {
                    float r = g[v] * ((x[o + q * V + v] - mean[v]) * inv[v]) + be[v];
                    y[o + q * V + v] = relu ? (r > 0 ? r : 0.0f) : r;
                }
        }
    }
}

static void bn_forward(Model *m, Work *w, int i, long b0, long b1, int t) { /* inference */
    Span s = span_of(m, w, i, b0, b1);
    const int V = lanes(s.L);
    if (s.nb <= 0) return;
#define BN_FI(V_, R_) bn_fwd_infer(s.L, s.x, s.y, s.nb, V_, R_)
    if (V == 16) { if (s.L->relu_out) BN_FI(16, 1); else BN_FI(16, 0); }
    else if (V == 8) { if (s.L->relu_out) BN_FI(8, 1); else BN_FI(8, 0); }
    else { if (s.L->relu_out) BN_FI(1, 1); else BN_FI(1, 0); }
#undef BN_FI
}

/* ---- backward over the whole batch (training, or a weight gradient wanted) on blocks [k0, k1) ---- */
static inline __attribute__((always_inline)) void bn_bwd_blocks(Model *m, Work *w, int i, int flags, const int assign,
                                                                int k0, int k1, const int V, const int relu,
                                                                const int train) {
    Layer *L = &m->L[i];
    const int n = w->n;
    const float *dy = w->grad[i], *x = node_act(w, L->in), *y = w->act[i];
    float *dx = node_grad(w, L->in);
    const int need_dx = need_dx_of(m, L, flags);
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    const long hw = (long)L->h * L->w, on = out_n(L), M = n * hw;
    for (int k = k0; k < k1; k++) {
        float mean[VMAX], inv[VMAX], g[VMAX];
        for (int v = 0; v < V; v++) {
            int c = k * V + v, real = c < L->c;
            if (train) { mean[v] = BN_MEAN(w, i)[c]; inv[v] = BN_INVSTD(w, L, i)[c]; }
            else { mean[v] = real ? L->run_mean[c] : 0; inv[v] = real ? 1.0f / sqrtf(L->run_var[c] + BN_EPS) : 0; }
            g[v] = real ? L->gamma[c] * inv[v] : 0;
        }
        double sdy[VMAX] = {0}, sdyx[VMAX] = {0};
        for (int b = 0; b < n; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) {
                    float d = relu_gate(dy[o + q * V + v], y[o + q * V + v], relu);
                    float xh = (x[o + q * V + v] - mean[v]) * inv[v];
                    sdy[v] += d;
                    sdyx[v] += (double)d * xh;
                }
        }
        for (int v = 0; v < V && want_params; v++)
            if (k * V + v < L->c) { L->dgamma[k * V + v] = (float)sdyx[v]; L->dbeta[k * V + v] = (float)sdy[v]; }
        if (!need_dx) continue;
        float a[VMAX], bq[VMAX];
        for (int v = 0; v < V; v++) { a[v] = train ? (float)(sdy[v] / M) : 0; bq[v] = train ? (float)(sdyx[v] / M) : 0; }
        for (int b = 0; b < n; b++) {
            const long o = b * on + (long)k * hw * V;
            for (long q = 0; q < hw; q++)
                for (int v = 0; v < V; v++) {
                    const long j = o + q * V + v;
                    /* batch statistics: dx = g/M (M dy - sum dy - xhat sum dy xhat); running: g dy */
                    float xh = (x[j] - mean[v]) * inv[v], d = relu_gate(dy[j], y[j], relu);
                    float r = train ? g[v] * (d - a[v] - xh * bq[v]) : g[v] * d;
                    dx[j] = put(dx[j], r, assign);
                }
        }
    }
}

static void bn_backward_batch(Model *m, Work *w, int i, int flags, int assign, int t, int T) {
    const Layer *L = &m->L[i];
    const int V = lanes(L);
    long k0, k1;
    split_range(L->cp / V, t, T, &k0, &k1);
    const int r = L->relu_out, tr = w->train;
#define BN_B(V_) do { \
        if (assign) { if (r) { if (tr) BN_BB(V_, 1, 1, 1); else BN_BB(V_, 1, 1, 0); } else { if (tr) BN_BB(V_, 1, 0, 1); else BN_BB(V_, 1, 0, 0); } } \
        else { if (r) { if (tr) BN_BB(V_, 0, 1, 1); else BN_BB(V_, 0, 1, 0); } else { if (tr) BN_BB(V_, 0, 0, 1); else BN_BB(V_, 0, 0, 0); } } \
    } while (0)
#define BN_BB(V_, A_, R_, T_) bn_bwd_blocks(m, w, i, flags, A_, (int)k0, (int)k1, V_, R_, T_)
    if (V == 16) BN_B(16);
    else if (V == 8) BN_B(8);
    else BN_B(1);
#undef BN_BB
#undef BN_B
}

/* ---- inference backward without parameter gradients: per sample, dx (+)= gamma / std * dy ---- */
static inline __attribute__((always_inline)) void bn_bwd_infer(const Layer *L, const float *dy, const float *y,
                                                                float *dx, long nb, const int assign, const int V,
                                                                const int relu) {
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
                    const long j = o + q * V + v;
                    float r = g[v] * relu_gate(dy[j], y[j], relu);
                    dx[j] = put(dx[j], r, assign);
                }
        }
    }
}

static void bn_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                        long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (!need_dx_of(m, s.L, flags) || s.nb <= 0) return;
    const int V = lanes(s.L);
    const int r = s.L->relu_out;
#define BN_BI(V_) do { \
        if (assign) { if (r) BN_BII(V_, 1, 1); else BN_BII(V_, 1, 0); } else { if (r) BN_BII(V_, 0, 1); else BN_BII(V_, 0, 0); } \
    } while (0)
#define BN_BII(V_, A_, R_) bn_bwd_infer(s.L, s.dy, s.y, s.dx, s.nb, A_, V_, R_)
    if (V == 16) BN_BI(16);
    else if (V == 8) BN_BI(8);
    else BN_BI(1);
#undef BN_BII
#undef BN_BI
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
