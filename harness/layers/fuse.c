/* fuse.c -- ReLUs folded into the layer before or after them, so that a ReLU costs no pass of its own over
 * its tensor, forward or backward (model_finalize calls fuse_plan after layout_plan).
 *
 *   relu_in:  a max-pool that is the ReLU's only reader takes the max of ReLU(x), i.e. max(0, max x):
 *             forward and backward cost what the pool alone costs (max(relu(x)) = relu(max x), and the
 *             winner is the same: the first maximum among the positive inputs, NaN never winning);
 *   relu_out: a batch-norm, residual add or blocked convolution (oneDNN eltwise post-op) whose only reader
 *             is the ReLU writes ReLU(y); its backward masks its output gradient by y > 0 itself.
 * The fused ReLU layer stays in the graph (checkpoints, names, the layer table are unchanged), does
 * nothing, and aliases its input's buffers. Measured: docs/performance.md. */
#include "harness/layers/layer.h"

static int g_fuse = 1;
void relu_fusion_set(int on) { g_fuse = on; }

/* readers of node i */
static int readers(const Model *m, int i, int *only) {
    int n = 0;
    for (int j = 0; j < m->nl; j++) {
        const Layer *L = &m->L[j];
        int r = (L->in == i) + (L->kind == L_ADD && L->in2 == i);
        if (r) *only = j;
        n += r;
    }
    return n;
}

void fuse_plan(Model *m) {
    for (int i = 0; i < m->nl; i++) m->L[i].fused = m->L[i].relu_in = m->L[i].relu_out = 0;
    if (!g_fuse) return;
    for (int r = 0; r < m->nl; r++) {
        Layer *R = &m->L[r];
        if (R->kind != L_RELU || R->in < 0 || r == m->out) continue;
        Layer *P = &m->L[R->in];
        int only_p, only_r = -1;
        if (readers(m, R->in, &only_p) != 1 || P->fused) continue;
        if (readers(m, r, &only_r) == 1 && m->L[only_r].kind == L_MAXPOOL) {
            m->L[only_r].relu_in = 1;
            R->fused = 1;
        } else if (P->kind == L_BN || P->kind == L_ADD || (P->kind == L_CONV && P->blk)) {
            P->relu_out = 1;
            R->fused = 1;
        }
    }
}
