/* dropout.c -- L_DROPOUT: inverted dropout (kept values scaled by 1/(1-p)) in training, the identity in
 * inference. The masks are one random stream keyed by (drop_seed, drop_count, layer), drawn in sample
 * order, so a training forward with p > 0 runs as a whole-batch step; the masks (N, C, H, W) are the
 * layer's scratch w->aux[i]. */
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

static void dropout_work_need(const Layer *L, int cap, WorkNeed *n) { n->aux = out_n(L) * cap; }

static int dropout_batch(const Layer *L, const Work *w, int mode) { return mode == FWD_TRAIN && L->p > 0; }

static void dropout_forward_train(Model *m, Work *w, int i, int mode, int t, int T) {
    if (t != 0) return; /* one random stream in sample order: thread 0 draws every mask */
    Layer *L = &m->L[i];
    long N = w->n * out_n(L);
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    Rng r;
    rng_seed(&r, w->drop_seed, RNG_DROPOUT, w->drop_count * MAX_LAYERS + (uint64_t)i);
    float keep = 1.0f - L->p, sc = 1.0f / keep;
    for (long j = 0; j < N; j++) {
        w->aux[i][j] = rng_uniform(&r) < keep ? sc : 0.0f;
        y[j] = x[j] * w->aux[i][j];
    }
}

static void dropout_forward(Model *m, Work *w, int i, long b0, long b1, int t) { /* inference, or p = 0 */
    Span s = span_of(m, w, i, b0, b1);
    if (s.nb <= 0) return;
    memcpy(s.y, s.x, sizeof(float) * s.nb * s.on);
}

static void dropout_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (!need_dx_of(m, s.L, flags)) return;
    if (w->train && s.L->p > 0) {
        const float *mk = w->aux[i] + b0 * s.on;
        for (long j = 0; j < s.nb * s.on; j++) s.dx[j] += s.dy[j] * mk[j];
    } else {
        row_add(s.dx, s.dy, s.nb * s.on);
    }
}

const LayerOps LAYER_DROPOUT = {
    .name = "dropout",
    .forward = dropout_forward,
    .forward_batch = dropout_forward_train,
    .batch_forward = dropout_batch,
    .backward = dropout_backward,
    .work_need = dropout_work_need,
};
