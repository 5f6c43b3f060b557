/* graph.c -- layers that only shape the graph: L_FLATTEN (a shape change: aliases its input's buffers, see
 * work.c) and L_ADD (the residual sum of two nodes; its gradient goes to both; with relu_out, fuse.c, it
 * writes ReLU(sum) and masks its gradient by sum > 0). */
#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

static void flatten_forward(Model *m, Work *w, int i, long b0, long b1, int t) {}
static void flatten_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {} /* aliases its input: the gradient is already there */

static void add_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (s.nb <= 0) return;
    const float *x2 = node_act(w, s.L->in2) + act_row(s.L->in2, b0) * s.on;
    const long n = s.nb * s.on;
    long j = 0;
    if (s.L->relu_out) {
        const v4f z = {0, 0, 0, 0};
        for (; j + 4 <= n; j += 4) {
            v4f v = v4_ld(s.x + j) + v4_ld(x2 + j);
            v4_st(s.y + j, (v4f)((v4i)v & (v > z)));
        }
        for (; j < n; j++) { float v = s.x[j] + x2[j]; s.y[j] = v > 0 ? v : 0.0f; }
        return;
    }
    for (; j + 4 <= n; j += 4) v4_st(s.y + j, v4_ld(s.x + j) + v4_ld(x2 + j));
    for (; j < n; j++) s.y[j] = s.x[j] + x2[j];
}

/* 1 when the second input's gradient is needed (as need_dx_of for the first) */
int add_need_dx2(const Model *m, const Layer *L, int flags) {
    return L->in2 >= 0 ? (m->need_up[L->in2] && (flags & BW_PARAMS)) || (flags & BW_INPUT) : (flags & BW_INPUT);
}

static void add_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                         long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    const long n = s.nb * s.on;
    if (s.L->relu_out) { /* the ReLU's backward, in place: this layer is its output gradient's only reader */
        float *g = w->grad[i] + grad_row(i, b0) * s.on;
        const v4f z = {0, 0, 0, 0};
        long j = 0;
        for (; j + 4 <= n; j += 4) v4_st(g + j, (v4f)((v4i)v4_ld(g + j) & (v4_ld(s.y + j) > z)));
        for (; j < n; j++) g[j] = s.y[j] > 0 ? g[j] : 0.0f;
    }
    if (need_dx_of(m, s.L, flags)) row_add(s.dx, s.dy, n);
    if (add_need_dx2(m, s.L, flags)) row_add(node_grad(w, s.L->in2) + grad_row(s.L->in2, b0) * s.on, s.dy, n);
}

const LayerOps LAYER_FLATTEN = {.name = "flatten", .forward = flatten_forward, .backward = flatten_backward};
const LayerOps LAYER_ADD = {.name = "add", .forward = add_forward, .backward = add_backward};
