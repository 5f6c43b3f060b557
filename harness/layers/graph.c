/* graph.c -- layers that only shape the graph: L_FLATTEN (a shape change: aliases its input's buffers, see
 * work.c) and L_ADD (the residual sum of two nodes; its gradient goes to both). */
#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"

static void flatten_forward(Model *m, Work *w, int i, long b0, long b1, int t) {}
static void flatten_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                             long bstart, int t) {} /* aliases its input: the gradient is already there */

static void add_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (s.nb <= 0) return;
    const float *x2 = node_act(w, s.L->in2) + b0 * s.on;
    for (long j = 0; j < s.nb * s.on; j++) s.y[j] = s.x[j] + x2[j];
}

/* 1 when the second input's gradient is needed (as need_dx_of for the first) */
int add_need_dx2(const Model *m, const Layer *L, int flags) {
    return L->in2 >= 0 ? (m->need_up[L->in2] && (flags & BW_PARAMS)) || (flags & BW_INPUT) : (flags & BW_INPUT);
}

static void add_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                         long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (need_dx_of(m, s.L, flags)) row_add(s.dx, s.dy, s.nb * s.on);
    if (add_need_dx2(m, s.L, flags)) row_add(node_grad(w, s.L->in2) + b0 * s.on, s.dy, s.nb * s.on);
}

const LayerOps LAYER_FLATTEN = {.name = "flatten", .forward = flatten_forward, .backward = flatten_backward};
const LayerOps LAYER_ADD = {.name = "add", .forward = add_forward, .backward = add_backward};
