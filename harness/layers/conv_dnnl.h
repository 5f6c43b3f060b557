/* conv_dnnl.h -- the oneDNN path of L_CONV (conv_dnnl.c): what conv.c calls for a layer whose output is
 * channel-blocked (layout.c). Same contracts as the LayerOps entries of the same names (layer.h). */
#ifndef CONCORD_CONV_DNNL_H
#define CONCORD_CONV_DNNL_H
#include "harness/layers/layer.h"

void conv_dnnl_forward(Model *m, Work *w, int i, long b0, long b1, int t);
void conv_dnnl_backward(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                        long bstart, int t);
int conv_dnnl_grouped(const Model *m, const Layer *L, int cap, int backward, int flags);
void conv_dnnl_work_need(const Layer *L, int cap, WorkNeed *n);
void conv_dnnl_init(const Model *m, Work *w, int i);
void conv_dnnl_fini(Work *w, int i);
void conv_dnnl_prepare(Model *m, Work *w, int i, int backward, int flags, int t);
long conv_dnnl_dw_n(const Layer *L);
#endif
