/* layer.h -- the layer kinds: one table of operations per LayerKind (table.c is the only place a kind is
 * registered), one file per family of kinds. Internal to the engine: model.c sizes the arena, work.c
 * the workspace and pass.c schedules forward and backward passes through this table; nothing outside
 * harness/ includes it.
 *
 * Conventions every kind follows (pass.c, "Backward convention"):
 *   - forward writes the layer's output w->act[i] for samples [b0, b1) (or, for a whole-batch kind, the
 *     part t of T it owns), reading its input node_act(w, L->in);
 *   - backward ADDS its contribution to its input's gradient node_grad(w, L->in) for samples [b0, b1);
 *     with `assign` it is the first writer of that buffer in this pass and STORES 0 + its contribution
 *     instead (only kinds with stores_dx are ever asked to: the others get a zeroed slice);
 *   - weight gradients are WRITTEN (not accumulated) into m->grads for thread 0 and into the thread's
 *     partial block w->gpart for thread t > 0 (layer_grads), starting at the thread's first sample bstart;
 *     a whole-batch backward that writes its own part of m->grads (linear) says so to pass.c's
 *     task_reduce through its batch_backward;
 *   - nothing allocates: scratch comes from the Work, sized by work_need.
 *   - a node is stored NCHW or channel-blocked (Layer.blk, layout.c): a kind that keeps its input's
 *     layout reads and writes both, with the padding lanes (channels c..cp-1) kept at zero;
 *   - passes may call prepare (before a pass: e.g. reorder the weights for the kernels) and kinds may keep
 *     state in the Work (work_init/work_fini, w->lx[i]).
 * Shape letters: N batch, C channels, H, W, P = H*W output pixels, KC = IC*K*K (a conv's column rows),
 * V the channel block, cp the channels as stored.
 */
#ifndef CONCORD_LAYER_H
#define CONCORD_LAYER_H
#include "harness/model.h"

/* What a layer kind needs in a Work with capacity cap, beyond its output and output-gradient buffers. */
typedef struct WorkNeed {
    long aux;                /* floats of per-layer scratch (w->aux[i]) */
    long iaux;               /* int32s of per-layer scratch (w->iaux[i]) */
    long col, tmp;           /* per-thread shared scratch the kind needs at most (w->col, w->tmp) */
} WorkNeed;

typedef struct LayerOps {
    const char *name;
    /* samples [b0, b1) on thread t (every kind; for whole-batch kinds, their per-sample mode) */
    void (*forward)(Model *m, Work *w, int i, long b0, long b1, int t);
    /* the whole batch, part t of T (batch-norm: a channel range; dropout in training: thread 0 draws the
       masks; linear in training on several threads: a range of output features); used instead of forward
       when batch_forward(L, w, mode) says so (w: the pass's Work, its threads and batch). NULL: never */
    void (*forward_batch)(Model *m, Work *w, int i, int mode, int t, int T);
    int (*batch_forward)(const Layer *L, const Work *w, int mode);
    /* samples [b0, b1) on thread t, bstart = the thread's first sample; NULL when backward_batch is used */
    void (*backward)(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1, long bstart,
                     int t);
    /* the whole batch, part t of T (batch-norm), assign as for backward; NULL: none */
    void (*backward_batch)(Model *m, Work *w, int i, int flags, int assign, int t, int T);
    /* can store (rather than add) its input gradient as the first writer of the buffer */
    int stores_dx;
    /* the whole batch in backward_batch when this says so (NULL: always, if backward_batch is set) */
    int (*batch_backward)(const Layer *L, const Work *w, int train, int flags);
    /* 0 when the kind must see a thread's whole slice at once (one product over the slice) rather than
       groups of PASS_GROUP samples; NULL = always groups. backward: asked for the backward pass with flags */
    int (*grouped)(const Model *m, const Layer *L, int cap, int backward, int flags);
    /* extra Work memory; NULL = none */
    void (*work_need)(const Layer *L, int cap, WorkNeed *n);
    /* the kind's own state in a Work (w->lx[i]), made by work_create and freed by work_free; NULL = none */
    void (*work_init)(const Model *m, Work *w, int i);
    void (*work_fini)(Work *w, int i);
    /* once before each pass, on thread t (layers spread over the Work's threads): backward 0/1, flags of
       the backward pass; NULL = nothing to do */
    void (*prepare)(Model *m, Work *w, int i, int backward, int flags, int t);
} LayerOps;

extern const LayerOps *const LAYER_OPS[L_KIND_COUNT]; /* table.c; indexed by LayerKind */

/* ---- what the kinds share ---- */
static inline long out_n(const Layer *L) { return (long)L->cp * L->h * L->w; }   /* per sample, as stored */
static inline long in_n(const Layer *L) { return (long)L->icp * L->ih * L->iw; }  /* per sample, as stored */
static inline int round_up_blk(int c, int v) { return v ? (c + v - 1) / v * v : c; }
/* offset of channel c at pixel q (of HW) within one sample stored with block V (0: NCHW) */
static inline long blk_off(int V, long HW, int c, long q) {
    return V ? ((long)(c / V) * HW + q) * V + c % V : (long)c * HW + q;
}
/* a flatten, or a ReLU folded into its neighbour: no buffers of its own, its input's (work.c) */
static inline int shares_rows(const Layer *L) { return L->kind == L_FLATTEN || L->fused; }
static inline const float *node_act(const Work *w, int i) { return i < 0 ? w->x : w->act[i]; }
/* In a FWD_PREDICT pass (model.h), this thread's groups of samples share the rows of its first group in the
 * layers inside a run (pass.c): g_rows_back[i] is how many rows before a sample's own row layer i's output
 * is (0 for the layers whose rows are kept); NULL outside such a run, and always in a backward pass. */
extern _Thread_local const long *g_rows_back;
/* the row layer i's output (-1: the input) of sample b is stored in */
static inline long act_row(int i, long b) { return i >= 0 && g_rows_back ? b - g_rows_back[i] : b; }
static inline float *node_grad(Work *w, int i) { return i < 0 ? w->dx : w->grad[i]; }
/* Likewise in a backward pass (pass.c task_bwd_local): g_grad_back[i] is how many rows before a sample's own
 * row the gradient w.r.t. node i's output is kept (0 but for the layers inside a run whose every writer and
 * reader is in it); NULL outside such a run. */
extern _Thread_local const long *g_grad_back;
/* the row the gradient w.r.t. node i's output (-1: the input, w->dx) of sample b is stored in */
static inline long grad_row(int i, long b) { return i >= 0 && g_grad_back ? b - g_grad_back[i] : b; }
/* layer L's input gradient is needed in this pass (for the input, or for a trainable layer below) */
static inline int need_dx_of(const Model *m, const Layer *L, int flags) {
    return L->in < 0 ? (flags & BW_INPUT) != 0 : (m->need_up[L->in] && (flags & BW_PARAMS)) || (flags & BW_INPUT);
}
/* part t of T of [0, n) */
static inline void split_range(long n, int t, int T, long *a, long *b) {
    *a = n * t / T;
    *b = n * (t + 1) / T;
}
/* split_range in whole cache lines of 16 floats: thread t's share of a parameter range [0, n), so that
 * two threads never write one line (the gradient sum and the optimiser step, both per element) */
static inline void split_lines(long n, int t, int T, long *a, long *b) {
    long q = (n + 15) / 16, a16 = q * t / T * 16, b16 = q * (t + 1) / T * 16;
    *a = a16 < n ? a16 : n;
    *b = b16 < n ? b16 : n;
}
/* layer i on samples [b0, b1): where its input, output and their gradients are */
typedef struct Span {
    Layer *L;
    long nb, on, inn;        /* samples; floats per output sample; floats per input sample */
    const float *x;          /* (nb, inn) input */
    float *y;                /* (nb, on) output */
    const float *dy;         /* (nb, on) gradient w.r.t. the output (backward) */
    float *dx;               /* (nb, inn) gradient w.r.t. the input (backward) */
} Span;
static inline Span span_of(Model *m, Work *w, int i, long b0, long b1) {
    Span s;
    s.L = &m->L[i];
    s.nb = b1 - b0;
    s.on = out_n(s.L);
    s.inn = in_n(s.L);
    s.x = node_act(w, s.L->in) + act_row(s.L->in, b0) * s.inn;
    s.y = w->act[i] + act_row(i, b0) * s.on;
    s.dy = w->grad[i] + (g_grad_back ? b0 - g_grad_back[i] : b0) * s.on; /* grad_row(i, b0), i >= 0 */
    s.dx = node_grad(w, s.L->in) + grad_row(s.L->in, b0) * s.inn;
    return s;
}

/* where thread t writes layer L's weight and bias gradients (db NULL without a bias); zero: clear them
 * (a thread without samples still contributes its partial block) */
void layer_grads(Model *m, Work *w, const Layer *L, int t, int zero, float **dW, float **db);
/* a direct (DFA) rule: dx (+)= dout D^T for samples [b0, b1), D = L->B shaped (D_in, K) */
void layer_direct_dx(Model *m, const Layer *L, const float *dout, float *dx, int assign, long b0, long nb);

/* L_ADD: the second input's gradient is needed (graph.c) */
int add_need_dx2(const Model *m, const Layer *L, int flags);
/* samples per conv product: 1, or enough that P * S >= 64 columns (conv.c) */
int conv_chunk(const Layer *L, int cap);
/* the channel block of the convolution path in use: V > 0 for oneDNN's blocked kernels, 0 for the
 * im2col + gemm path (conv_dnnl.c; CONCORD_CONV=im2col or conv_path_set) */
int conv_block(void);
/* batch-norm's loops: 1 = the scalar form for channel blocks too (tests compare it with the vector form) */
void bn_scalar_set(int on);
/* fuse.c: set every layer's fused/relu_in/relu_out (model_finalize calls it, after layout_plan) */
void fuse_plan(Model *m);
/* layout.c: set every layer's blk/iblk/cp/icp (model_finalize calls it) */
void layout_plan(Model *m);
/* layout.c, for the tests: convolutions with outputs of at most max_hw pixels count as having no oneDNN
 * kernels (0: none), as vgg16's 2x2 maps do with AVX2 only */
void layout_refuse_set(int max_hw);
/* layout.c: dst (+)= src for nb samples of C channels x HW pixels, src stored with block sv (0: NCHW) and
 * scp channels, dst with dv and dcp; assign: dst = 0 + src, and a blocked dst's padding lanes = 0 */
void layout_move(float *dst, int dv, int dcp, const float *src, int sv, int scp, int C, long HW, long nb, int assign);
/* conv_dnnl.c: 1 when oneDNN has optimised kernels for layer L in its planned layouts */
int conv_dnnl_supported(const Layer *L);
/* conv_dnnl.c: the Work's oneDNN streams and scratchpads (work_free) */
void conv_dnnl_work_free(Work *w);

#endif
