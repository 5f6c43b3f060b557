/* norm.c -- L_NORM, the first layer of every model: y = (x - mean[c]) / std[c] per channel, so data and
 * attacks live in [0,1] pixel space while the network sees normalised inputs. No parameters (mean and
 * std are buffers); dx = dy / std. */
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

static void norm_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    long hw = (long)L->ih * L->iw;
    for (long b = 0; b < s.nb; b++)
        for (int c = 0; c < L->c; c++) {
            const float *xp = s.x + (b * L->c + c) * hw;
            float *yp = s.y + (b * L->c + c) * hw, mu = L->mean[c], inv = 1.0f / L->std[c];
            long j = 0;
            const v4f mv = {mu, mu, mu, mu}, iv = {inv, inv, inv, inv};
            for (; j + 4 <= hw; j += 4) v4_st(yp + j, (v4_ld(xp + j) - mv) * iv);
            for (; j < hw; j++) yp[j] = (xp[j] - mu) * inv;
        }
}

static void norm_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                          long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (!need_dx_of(m, L, flags)) return;
    long hw = (long)L->ih * L->iw;
    for (long b = 0; b < s.nb; b++)
        for (int c = 0; c < L->c; c++) {
            long o = (b * L->c + c) * hw;
            float inv = 1.0f / L->std[c];
            const v4f iv = {inv, inv, inv, inv};
            long j = 0;
            const v4f d0 = {0, 0, 0, 0};
            if (assign) {
                for (; j + 4 <= hw; j += 4) v4_st(s.dx + o + j, d0 + v4_ld(s.dy + o + j) * iv);
                for (; j < hw; j++) s.dx[o + j] = 0.0f + s.dy[o + j] * inv;
                continue;
            }
            for (; j + 4 <= hw; j += 4) v4_st(s.dx + o + j, v4_ld(s.dx + o + j) + v4_ld(s.dy + o + j) * iv);
            for (; j < hw; j++) s.dx[o + j] += s.dy[o + j] * inv;
        }
}

const LayerOps LAYER_NORM = {
    .name = "norm",
    .forward = norm_forward,
    .backward = norm_backward,
    .stores_dx = 1,
};
