/* batchnorm.c -- L_BN: batch-norm over channels (1-d when H = W = 1), PyTorch semantics: in training the
 * batch statistics (biased variance) normalise and the running statistics move by momentum 0.1
 * (unbiased variance), frozen layers keep theirs; in inference the running statistics are constants.
 * eps 1e-5. Needs the whole batch: runs channel-parallel, between the per-sample runs (pass.c).
 * Its scratch (w->aux[i]): x-hat (N, C, H, W), then the mean and 1/std used, (C) each. */
#include <math.h>

#include "harness/layers/layer.h"

#define BN_XHAT(w, i) ((w)->aux[i])
#define BN_MEAN(w, L, i) ((w)->aux[i] + (long)(w)->cap * out_n(L))
#define BN_INVSTD(w, L, i) (BN_MEAN(w, L, i) + (L)->c)

static void bn_work_need(const Layer *L, int cap, WorkNeed *n) { n->aux = out_n(L) * cap + 2L * L->c; }

/* batch-norm forward on channels [c0, c1) */
static void bn_forward_channels(Model *m, Work *w, int i, int mode, int c0, int c1) {
    Layer *L = &m->L[i];
    const int n = w->n;
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    long hw = (long)L->h * L->w, M = n * hw;
    const float eps = 1e-5f, mom = 0.1f;
    for (int c = c0; c < c1; c++) {
        float mean, invstd;
        if (mode == FWD_TRAIN) {
            double s = 0, ss = 0;
            for (int b = 0; b < n; b++) {
                const float *xp = x + ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) s += xp[q];
            }
            double mu = s / M;
            for (int b = 0; b < n; b++) {
                const float *xp = x + ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) { double d = xp[q] - mu; ss += d * d; }
            }
            double var = ss / M;
            mean = (float)mu;
            invstd = (float)(1.0 / sqrt(var + eps));
            if (!L->frozen) { /* PyTorch: running_var uses the unbiased variance */
                L->run_mean[c] = (1 - mom) * L->run_mean[c] + mom * (float)mu;
                L->run_var[c] = (1 - mom) * L->run_var[c] + mom * (float)(M > 1 ? ss / (M - 1) : var);
            }
        } else {
            mean = L->run_mean[c];
            invstd = 1.0f / sqrtf(L->run_var[c] + eps);
        }
        BN_MEAN(w, L, i)[c] = mean;
        BN_INVSTD(w, L, i)[c] = invstd;
        const float g = L->gamma[c], be = L->beta[c];
        float *xh = BN_XHAT(w, i);
        for (int b = 0; b < n; b++) {
            long o = ((long)b * L->c + c) * hw;
            for (long q = 0; q < hw; q++) {
                float v = (x[o + q] - mean) * invstd;
                xh[o + q] = v;
                y[o + q] = g * v + be;
            }
        }
    }
}

static void bn_forward(Model *m, Work *w, int i, int mode, int t, int T) {
    long c0, c1;
    split_range(m->L[i].c, t, T, &c0, &c1);
    bn_forward_channels(m, w, i, mode, (int)c0, (int)c1);
}

/* batch-norm backward on channels [c0, c1) */
static void bn_backward_channels(Model *m, Work *w, int i, int flags, int c0, int c1) {
    Layer *L = &m->L[i];
    const int n = w->n;
    const float *dy = w->grad[i], *xh = BN_XHAT(w, i);
    float *dx = node_grad(w, L->in);
    const int need_dx = need_dx_of(m, L, flags);
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    long hw = (long)L->h * L->w, M = n * hw;
    for (int c = c0; c < c1; c++) {
        double sdy = 0, sdyx = 0;
        for (int b = 0; b < n; b++) {
            long o = ((long)b * L->c + c) * hw;
            for (long q = 0; q < hw; q++) { sdy += dy[o + q]; sdyx += (double)dy[o + q] * xh[o + q]; }
        }
        if (want_params) { L->dgamma[c] = (float)sdyx; L->dbeta[c] = (float)sdy; }
        if (!need_dx) continue;
        float g = L->gamma[c] * BN_INVSTD(w, L, i)[c];
        if (w->train) { /* batch statistics: dx = g/M (M dy - sum dy - xhat sum dy xhat) */
            float a = (float)(sdy / M), bq = (float)(sdyx / M);
            for (int b = 0; b < n; b++) {
                long o = ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) dx[o + q] += g * (dy[o + q] - a - xh[o + q] * bq);
            }
        } else { /* running statistics are constants */
            for (int b = 0; b < n; b++) {
                long o = ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) dx[o + q] += g * dy[o + q];
            }
        }
    }
}

static void bn_backward(Model *m, Work *w, int i, int flags, int t, int T) {
    long c0, c1;
    split_range(m->L[i].c, t, T, &c0, &c1);
    bn_backward_channels(m, w, i, flags, (int)c0, (int)c1);
}

static int always(const Layer *L, int mode) { return 1; }

const LayerOps LAYER_BN = {
    .name = "batchnorm",
    .forward_batch = bn_forward,
    .batch_forward = always,
    .backward_batch = bn_backward,
    .work_need = bn_work_need,
};
