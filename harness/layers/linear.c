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

/* What the sample split (linear_forward/backward) and the feature split (the _batch ops below) share: */
/* y[:, c0:c1] = x W[c0:c1]^T + b[c0:c1] for nb samples; x (nb, inn), y (nb, c) */
static void fwd_cols(const Layer *L, const float *x, float *y, long nb, long inn, long c0, long c1) {
    for (long b = 0; b < nb; b++) memcpy(y + b * L->c + c0, L->b + c0, sizeof(float) * (c1 - c0));
    gemm(0, 1, (int)nb, (int)(c1 - c0), (int)inn, 1.0f, x, (int)inn, L->W + c0 * inn, (int)inn, 1.0f, y + c0, L->c);
}
/* dW rows [c0, c1) = dy[:, c0:c1]^T x and db[c0, c1) = their sums over n samples (into dW, db as given) */
static void params_rows(const Layer *L, const float *dy, const float *x, long n, long inn, long c0, long c1,
                        float *dW, float *db) {
    gemm(1, 0, (int)(c1 - c0), (int)inn, (int)n, 1.0f, dy + c0, L->c, x, (int)inn, 0.0f, dW + c0 * inn, (int)inn);
    for (long c = c0; c < c1; c++) {
        double sum = 0;
        for (long b = 0; b < n; b++) sum += dy[b * L->c + c];
        db[c] = (float)sum;
    }
}
/* dx (+)= dy B for nb samples (dy, dx at the first of them), or DFA's projection of the output error
   dout (whole, row b0 first) */
static void dx_rows(Model *m, const Layer *L, const float *dy, const float *dout, float *dx, long b0, long nb,
                    long inn, int flags, int assign) {
    if ((flags & BW_TRUE) || !L->fb_direct)
        gemm(0, 0, (int)nb, (int)inn, L->c, 1.0f, dy, L->c, (flags & BW_TRUE) ? L->W : L->B, (int)inn,
             assign ? 0.0f : 1.0f, dx, (int)inn);
    else
        layer_direct_dx(m, L, dout, dx, assign, b0, nb);
}

static void linear_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (s.nb > 0) fwd_cols(s.L, s.x, s.y, s.nb, s.inn, 0, s.L->c);
}

static void linear_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                            long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const Layer *L = s.L;
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    float *dW, *db;
    layer_grads(m, w, L, t, want_params && s.nb == 0 && b0 == bstart, &dW, &db);
    if (s.nb == 0) return;
    if (want_params) params_rows(L, s.dy, s.x, s.nb, s.inn, 0, L->c, dW, db);
    if (need_dx_of(m, L, flags)) dx_rows(m, L, s.dy, dout, s.dx, b0, s.nb, s.inn, flags, assign);
}

/* A training pass on several threads runs a trainable linear layer with at least as many outputs as the
 * batch has samples over the whole batch, thread t of T taking the output features [c0, c1) (split_range
 * of c): the forward's product and the weight gradient read and write only those rows of W and dW, about
 * the rows the optimiser step updates on that thread (split_lines of W then b, train.c), so no thread sums
 * partial weight gradients (pass.c task_reduce skips the layer) and a row of W stays in one core's cache
 * from the step to the next forward; each thread reads the whole input instead of its half. That pays
 * where W (c x in) outweighs the batch's input (n x in): the MLP's 256-wide layers, AlexNet's 512-wide
 * classifier (2 threads, Fashion-MNIST MLP training 125k -> 145k samples/s natively, docs/performance.md,
 * eighteenth round). LeNet-5 at batch 128 (layers 120, 84 and 10 wide) keeps its sample split: with every
 * linear layer split by feature it measured no gain, only more barriers. The input gradient, which reads
 * all of B, is split by sample as in linear_backward. */
static int wide_in_training(const Layer *L, const Work *w) {
    return w->threads > 1 && L->c >= w->n && L->trainable && !L->frozen;
}
static int linear_batch_forward(const Layer *L, const Work *w, int mode) {
    return mode == FWD_TRAIN && wide_in_training(L, w);
}
static int linear_batch_backward(const Layer *L, const Work *w, int train, int flags) {
    return train == FWD_TRAIN && (flags & BW_PARAMS) && wide_in_training(L, w);
}
static void linear_forward_batch(Model *m, Work *w, int i, int mode, int t, int T) {
    const Layer *L = &m->L[i];
    long c0, c1;
    split_range(L->c, t, T, &c0, &c1);
    if (c1 > c0) fwd_cols(L, node_act(w, L->in), w->act[i], w->n, in_n(L), c0, c1);
}
static void linear_backward_batch(Model *m, Work *w, int i, int flags, int assign, int t, int T) {
    const Layer *L = &m->L[i];
    const long n = w->n, inn = in_n(L);
    const float *dy = w->grad[i]; /* (n, c) */
    long c0, c1, b0, b1;
    split_range(L->c, t, T, &c0, &c1);
    if (c1 > c0) params_rows(L, dy, node_act(w, L->in), n, inn, c0, c1, L->dW, L->db);
    split_range(n, t, T, &b0, &b1);
    /* DFA: the output error, as pass.c's task_bwd_init copied it into the output layer's gradient */
    if (b1 > b0 && need_dx_of(m, L, flags))
        dx_rows(m, L, dy + b0 * L->c, w->grad[m->out], node_grad(w, L->in) + b0 * inn, b0, b1 - b0, inn, flags, assign);
}

/* one product over a thread's whole slice: never in sample groups */
static int linear_grouped(const Model *m, const Layer *L, int cap, int backward, int flags) { return 0; }

const LayerOps LAYER_LINEAR = {
    .name = "linear",
    .forward = linear_forward,
    .forward_batch = linear_forward_batch,
    .batch_forward = linear_batch_forward,
    .backward = linear_backward,
    .backward_batch = linear_backward_batch,
    .batch_backward = linear_batch_backward,
    .stores_dx = 1,
    .grouped = linear_grouped,
};
