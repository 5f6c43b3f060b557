/* act.c -- element-wise activations: L_RELU (y = max(x, 0); NaN -> 0) and L_TANH. No parameters. */
#include <math.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

/* y = x > 0 ? x : 0 (NaN -> 0, as the comparison is false) */
static void relu_fwd(const float *restrict x, float *restrict y, long n) {
    long j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4) {
        v4f v = v4_ld(x + j);
        v4_st(y + j, (v4f)((v4i)v & (v > z)));
    }
    for (; j < n; j++) y[j] = x[j] > 0 ? x[j] : 0.0f;
}
/* dx += y > 0 ? dy : 0 */
static void relu_bwd(const float *restrict y, const float *restrict dy, float *restrict dx, long n) {
    long j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4) {
        v4f g = (v4f)((v4i)v4_ld(dy + j) & (v4_ld(y + j) > z));
        v4_st(dx + j, v4_ld(dx + j) + g);
    }
    for (; j < n; j++) dx[j] += y[j] > 0 ? dy[j] : 0.0f;
}
/* dx = 0 + (y > 0 ? dy : 0): relu_bwd into a zeroed dx, without reading dx */
static void relu_bwd_store(const float *restrict y, const float *restrict dy, float *restrict dx, long n) {
    long j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4) v4_st(dx + j, z + (v4f)((v4i)v4_ld(dy + j) & (v4_ld(y + j) > z)));
    for (; j < n; j++) dx[j] = 0.0f + (y[j] > 0 ? dy[j] : 0.0f);
}

static void relu_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (s.nb <= 0) return;
    relu_fwd(s.x, s.y, s.nb * s.on);
}

static void relu_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                          long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (!need_dx_of(m, s.L, flags)) return;
    if (assign) relu_bwd_store(s.y, s.dy, s.dx, s.nb * s.on);
    else relu_bwd(s.y, s.dy, s.dx, s.nb * s.on);
}

static void tanh_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (s.nb <= 0) return;
    for (long j = 0; j < s.nb * s.on; j++) s.y[j] = tanhf(s.x[j]);
}

static void tanh_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                          long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (!need_dx_of(m, s.L, flags)) return;
    for (long j = 0; j < s.nb * s.on; j++) s.dx[j] += s.dy[j] * (1.0f - s.y[j] * s.y[j]);
}

const LayerOps LAYER_RELU = {.name = "relu", .forward = relu_forward, .backward = relu_backward, .stores_dx = 1};
const LayerOps LAYER_TANH = {.name = "tanh", .forward = tanh_forward, .backward = tanh_backward};
