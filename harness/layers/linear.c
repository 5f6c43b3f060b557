/* linear.c -- L_LINEAR: y = x W^T + b (x flattened to (N, IN)); the rule seam: dx = dy B (B = W for bp,
 * the rule's feedback matrix otherwise, W itself with BW_TRUE), or for a direct rule (DFA) dx = e D^T
 * with e the output error; dW = dy^T x and db = sum over the batch of dy, always exact.
 * Also what linear and conv layers share: where a thread's weight gradients go, the DFA projection. */
#include <string.h>

#include "harness/gemm.h"
#include "harness/layers/layer.h"

void layer_grads(Model *m, Work *w, const Layer *L, int t, int zero, float **dW, float **db) {
    long goff = t == 0 ? 0 : (long)(t - 1) * m->n_params;
    *dW = t == 0 ? L->dW : w->gpart + goff + (L->dW - m->grads);
    *db = !L->bias ? NULL : t == 0 ? L->db : w->gpart + goff + (L->db - m->grads);
    if (!zero) return;
    memset(*dW, 0, sizeof(float) * layer_w_n(L));
    if (*db) memset(*db, 0, sizeof(float) * L->c);
}

/* DFA: the input receives D e, D = B shaped (D_in, K), e = the output error */
void layer_direct_dx(Model *m, const Layer *L, const float *dout, float *dx, int assign, long b0, long nb) {
    int K = model_out_dim(m), inn = layer_in_dim(L); /* D e is NCHW-shaped (conv_dnnl.c moves it) */
    gemm(0, 1, (int)nb, inn, K, 1.0f, dout + b0 * K, K, L->B, K, assign ? 0.0f : 1.0f, dx, inn);
}

static void linear_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    if (s.nb <= 0) return;
    for (long b = 0; b < s.nb; b++) memcpy(s.y + b * L->c, L->b, sizeof(float) * L->c);
    gemm(0, 1, (int)s.nb, L->c, (int)s.inn, 1.0f, s.x, (int)s.inn, L->W, (int)s.inn, 1.0f, s.y, L->c);
}

static void linear_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                            long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    const int need_dx = need_dx_of(m, L, flags), want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    const int direct = !(flags & BW_TRUE) && L->fb_direct;
    const float *B = (flags & BW_TRUE) ? L->W : L->B;
    float *dW, *db;
    layer_grads(m, w, L, t, want_params && s.nb == 0 && b0 == bstart, &dW, &db);
    if (s.nb == 0) return;
    if (want_params) {
        gemm(1, 0, L->c, (int)s.inn, (int)s.nb, 1.0f, s.dy, L->c, s.x, (int)s.inn, 0.0f, dW, (int)s.inn);
        for (int c = 0; c < L->c; c++) {
            double sum = 0;
            for (long b = 0; b < s.nb; b++) sum += s.dy[b * L->c + c];
            db[c] = (float)sum;
        }
    }
    if (need_dx && !direct)
        gemm(0, 0, (int)s.nb, (int)s.inn, L->c, 1.0f, s.dy, L->c, B, (int)s.inn, assign ? 0.0f : 1.0f, s.dx, (int)s.inn);
    if (need_dx && direct) layer_direct_dx(m, L, dout, s.dx, assign, b0, s.nb);
}

/* one product over a thread's whole slice: never in sample groups */
static int linear_grouped(const Model *m, const Layer *L, int cap, int backward, int flags) { return 0; }

const LayerOps LAYER_LINEAR = {
    .name = "linear",
    .forward = linear_forward,
    .backward = linear_backward,
    .stores_dx = 1,
    .grouped = linear_grouped,
};
