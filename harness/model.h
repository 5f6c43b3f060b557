/* model.h -- networks as a small graph of layers over one parameter arena, and their workspaces.
 *
 * Shape letters: N batch, C channels, H height, W width, K classes (or hash bits), D = C*H*W.
 * Tensors are float32, NCHW, row-major. PyTorch layouts: linear weight (OUT, IN), conv weight
 * (OC, IC, KH, KW), so checkpoints are readable elsewhere (docs/checkpoint.md).
 *
 * A model is built by appending layers (model_add_*), then model_finalize() sizes and allocates one
 * arena: trainable parameters, their gradients and the optimiser state are each ONE contiguous block
 * (the optimiser and checkpoints are flat loops); running statistics, normalisation constants, rule
 * state and feedback matrices live in the same arena. A Work holds every activation and gradient for
 * a maximum batch size, allocated once; forward/backward never allocate.
 *
 * The rule seam: a linear or conv layer sends its input gradient through L->B (the feedback matrix its
 * learning rule supplies; for bp, B == W, no copy), or, for a "direct" rule (DFA), projects the output
 * error e straight to its input with L->B shaped (D_in, K). Weight and bias gradients are always the
 * exact local ones. BW_TRUE ignores the rule and uses W: the exact gradient attacks need.
 * The engine never calls into rules/: a rule (rules/rule.h, rule_attach) fills the seam's fields of each
 * layer (state size, own B size, direct, refresh) and the model's fb_rebuild before model_finalize; the
 * engine sizes the arena from them and calls fb_rebuild when feedback must be redrawn.
 * Not for: data loading, losses (loss.h), optimisers (train.h), files (checkpoint.h).
 */
#ifndef CONCORD_MODEL_H
#define CONCORD_MODEL_H

#include <stdint.h>

#include "harness/core.h"

typedef enum {
    L_NORM,    /* per-channel (x - mean) / std; the first layer of every model */
    L_LINEAR,  /* y = x W^T + b, input flattened */
    L_CONV,    /* 2-d convolution, any kernel/stride/padding, via im2col + gemm */
    L_MAXPOOL, /* k x k, stride s */
    L_AVGPOOL, /* k x k, stride s */
    L_GAP,     /* global average pool to (C, 1, 1) */
    L_RELU,
    L_TANH,
    L_BN,      /* batch-norm over channels (1-d when H = W = 1) */
    L_DROPOUT, /* inverted dropout, identity in inference */
    L_FLATTEN, /* shape change only: aliases its input's buffers */
    L_ADD,     /* residual sum of two nodes */
    L_KIND_COUNT
} LayerKind;

struct Rule;

typedef struct Layer {
    LayerKind kind;
    char name[48];           /* PyTorch-style parameter prefix: "conv1", "layer1.0.bn1" */
    int in, in2;             /* input node indices; -1 = model input; in2 only for L_ADD */
    int ic, ih, iw;          /* input shape per sample */
    int c, h, w;             /* output shape per sample */
    int k, stride, pad;      /* conv / pool geometry */
    /* storage in a Work (layers/layout.c, set by model_finalize): 0 = NCHW; V = channel blocks of V
       (nChwVc: (N, cp/V, H, W, V)), the layout the convolution kernels run in */
    int blk, iblk;           /* layout of the output / of the input */
    int cp, icp;             /* output / input channels as stored: c / ic rounded up to the block (the
                                padding lanes always hold zeros) */
    /* ReLUs folded into a neighbour (layers/fuse.c, set by model_finalize): a fused ReLU does nothing and
       aliases its input's buffers (as flatten does); its producer applies it to its output (relu_out) or
       its one consumer to what it reads (relu_in) */
    int fused, relu_in, relu_out;
    int bias;                /* linear/conv: has a bias */
    float p;                 /* dropout probability */
    int trainable;           /* has parameters in the trainable block */
    int frozen;              /* parameters not updated (finetune --freeze) */
    int pidx;                /* index among linear/conv layers, -1 otherwise */
    /* parameters (pointers into the model arena) */
    float *W;                /* linear (c, D_in); conv (c, ic, k, k) */
    float *b;                /* (c) */
    float *dW, *db;          /* same shapes, in the gradient block */
    float *gamma, *beta, *dgamma, *dbeta; /* batch-norm (c) */
    float *run_mean, *run_var;            /* batch-norm running statistics (c) */
    float *mean, *std;                    /* L_NORM constants (c) */
    /* the rule seam (filled by rules/ before model_finalize; see the header) */
    const struct Rule *rule; /* the layer's rule: opaque to the engine */
    long rstate_n;           /* floats of persistent rule state (R, M, D...) */
    long fb_n;               /* floats of a B of the layer's own (0: B is W, or the rule points it at its state) */
    int fb_direct;           /* DFA-style: the input receives B e, B shaped (D_in, K), instead of B^T delta */
    int fb_refresh;          /* B is rebuilt (Model.fb_rebuild) before every backward that uses feedback */
    float *B;                /* feedback: == W for bp; own buffer otherwise; (D_in, K) for direct */
    float *rstate;           /* the persistent rule state, rstate_n floats in the arena */
    float rscale;            /* scalar state some rules keep (uSF s) */
} Layer;

typedef struct Tensor {      /* a named view into the arena, for checkpoints */
    char name[64];
    int ndim, shape[4];
    long n;
    float *data;
    int kind;                /* TK_PARAM, TK_BUFFER, TK_OPTIM, TK_RULE */
} Tensor;
enum { TK_PARAM, TK_BUFFER, TK_OPTIM, TK_RULE };

typedef struct ModelSpec {   /* everything needed to rebuild a model; stored in checkpoints */
    char arch[32];           /* mlp | lenet5 | alexnet | vgg16 | resnet18 | resnet20 */
    int in_c, in_h, in_w, classes;
    float width;             /* channel multiplier (conv nets), 1 by default */
    char hidden[64];         /* mlp hidden widths, "256,256" */
    float dropout;           /* alexnet/vgg classifier dropout, 0.5 by default */
    char head[16];           /* "softmax" (classification) or "hash" (tanh head, classes = bits) */
} ModelSpec;

#define MAX_LAYERS 160
#define MAX_TENSORS 512

typedef struct Model {
    ModelSpec spec;
    int nl;
    Layer L[MAX_LAYERS];
    int out;                 /* output node (logits) */
    long n_params;           /* trainable floats */
    float *params, *grads;   /* (n_params) each, contiguous */
    float *opt_m, *opt_v;    /* optimiser state (n_params) each */
    float *arena;            /* the one allocation */
    long n_arena;
    int ntensors;
    Tensor tensors[MAX_TENSORS];
    /* rule bookkeeping (set by rules/ rule_attach) */
    const struct Rule *rule; /* the model's training rule (layers may differ: --last-layer-bp); opaque here */
    char rule_name[16];      /* its name, for checkpoints and logs */
    void (*fb_rebuild)(struct Model *m); /* recompute every layer's B for draw fb_count (NULL: nothing to do) */
    char rule_opts[256];     /* canonical text of the rule options */
    uint64_t rule_seed;
    uint64_t fb_count;       /* feedback refreshes so far (keys brSF redraws; saved for exact resume) */
    long step;               /* optimiser steps so far */
    int need_up[MAX_LAYERS]; /* node has a trainable, unfrozen layer at or before it */
    struct Work *wcache;     /* the Work its last train/attack run gave back (work_give), or NULL */
} Model;

typedef struct Work {
    int cap, n;              /* capacity and current batch size */
    float *act[MAX_LAYERS];  /* (N, c, h, w) outputs */
    float *grad[MAX_LAYERS]; /* (N, c, h, w) gradients w.r.t. outputs */
    float *x;                /* (N, D_in) the input batch */
    float *dx;               /* (N, D_in) gradient w.r.t. the input */
    float *col, *tmp;        /* conv scratch per thread: (K_col, S*P) and (OC, S*P), S = samples per chunk */
    float *aux[MAX_LAYERS];        /* a layer kind's own scratch (layers/: batch-norm x-hat and statistics, dropout masks) */
    int32_t *iaux[MAX_LAYERS];     /* the same in int32 (max-pool winners) */
    int train;               /* mode of the last forward: FWD_TRAIN or FWD_INFER (FWD_PREDICT is FWD_INFER here) */
    int predicted;           /* the last forward was FWD_PREDICT: its activations are not whole (no backward) */
    uint64_t drop_seed, drop_count; /* dropout masks are keyed by (drop_seed, drop_count, layer); the
                                       trainer sets drop_count = optimiser step, so resumes are exact */
    float *mem; int32_t *imem;
    size_t mem_n;            /* bytes of mem (big_alloc) */
    /* batch splitting (threads.h): `threads` pthreads, fixed when the Work is created */
    int threads;             /* blas_threads() at work_create, clamped to [1, 16] and to cap */
    long col_n, tmp_n;       /* per-thread conv scratch: w->col + t*col_n, w->tmp + t*tmp_n */
    float *gpart;            /* (threads-1, n_params) weight-gradient partials of threads 1.. */
    void *lx[MAX_LAYERS];    /* a layer kind's own state in this Work (a convolution's oneDNN primitives) */
    int lx_kind[MAX_LAYERS]; /* the kind that made lx[i] (work_free calls its work_fini) */
    void *dnnl;              /* per-thread oneDNN streams and scratchpads (layers/conv_dnnl.c); NULL: unused */
    uint64_t sig;            /* work_sig of the model it was made for (work_take reuses it only for that) */
    /* weights_fixed: the caller promises W (and B for a given m->fb_count) do not change until it clears
       the flag (an attack); a layer may then keep its weights' reordered copies between passes.
       wgen changes whenever the promise starts or ends, so copies made under another promise are stale. */
    int weights_fixed;
    unsigned wgen;
    struct Pool *pool;       /* the worker threads; NULL when threads == 1 */
} Work;

/* ---- building ---- */
void model_init(Model *m, const ModelSpec *spec);                 /* empty graph */
int model_add(Model *m, LayerKind kind, const char *name, int in); /* returns node index */
int model_add_linear(Model *m, const char *name, int in, int out_features);
int model_add_conv(Model *m, const char *name, int in, int oc, int k, int stride, int pad, int bias);
int model_add_pool(Model *m, LayerKind kind, int in, int k, int stride);
int model_add_add(Model *m, int a, int b);
int model_add_dropout(Model *m, int in, float p);
void model_finalize(Model *m, uint64_t init_seed);   /* allocate, PyTorch-default init (rules attached first) */
void model_free(Model *m);

/* The model zoo (models.c): builds spec->arch's graph, NOT finalized (a rule is attached next, then
 * model_finalize; rules/build.h model_create does all three). NULL with err_set on an unknown arch or an
 * impossible shape. */
Model *model_build(const ModelSpec *spec);
long model_graph_params(const Model *m); /* parameters of a built graph (before model_finalize sizes the arena) */
typedef struct ArchInfo {
    const char *name, *desc;
    const char *opts;        /* the ModelSpec options it reads besides shape and classes: "hidden", "width dropout" */
} ArchInfo;
extern const ArchInfo ARCHS[];
extern const int N_ARCHS;
const ArchInfo *model_arch_find(const char *name);          /* NULL if unknown */
/* Model options ("hidden", "width", "dropout"): 1 when arch reads opt, 0 when it does not, -1 when opt is
 * not a model option at all. */
int model_arch_uses(const ArchInfo *arch, const char *opt);
/* "256,256" -> widths (at most max); the count, or -1 with err_set (an empty, non-decimal or zero width).
 * "none" (or "") is no hidden layer: a linear model. */
#define MODEL_MAX_HIDDEN 32
int model_hidden_parse(const char *text, int *widths, int max);
void model_spec_default(ModelSpec *s, const char *arch, int c, int h, int w, int classes);

long model_flops(const Model *m);  /* forward multiply-adds x 2, per sample */
long layer_out_n(const Layer *L);    /* floats of one sample's output in a Work (padding lanes included) */
/* shape facts of a linear/conv layer */
long layer_w_n(const Layer *L);      /* elements of W */
int layer_fan_in(const Layer *L);    /* IN, or IC*KH*KW */
int layer_fan_out(const Layer *L);   /* OUT, or OC*KH*KW */
int layer_in_dim(const Layer *L);    /* ic*ih*iw */
int model_in_dim(const Model *m);
int model_out_dim(const Model *m);
int model_nparam_layers(const Model *m);
Layer *model_param_layer(Model *m, int pidx); /* the pidx-th linear/conv layer */
void model_set_frozen(Model *m, int first_n); /* freeze the first N linear/conv layers (and BN between) */
Tensor *model_tensor(Model *m, const char *name);

/* The convolution path of models finalized from now on: CONV_DNNL (oneDNN's direct kernels on
 * channel-blocked tensors, the default) or CONV_IM2COL (im2col + OpenBLAS on NCHW: the reference the
 * tests compare with; CONCORD_CONV=im2col selects it at start-up). layers/conv_dnnl.c. */
enum { CONV_DNNL, CONV_IM2COL };
void conv_path_set(int path);
int conv_path(void);
/* the instruction set oneDNN's convolution kernels use here (ONEDNN_MAX_CPU_ISA caps it): "avx2",
 * "avx512_core"... (layers/conv_dnnl.c) */
const char *conv_isa_name(void);
/* the vector level of Concord's own kernels (layers/kernels.c: the direct convolution, long adds and
 * copies): "sse2", "avx2" or "avx512", the CPU's capped by CONCORD_ISA */
const char *kernels_isa_name(void);
/* Fold ReLUs into their neighbours in models finalized from now on (1, the default; 0: every ReLU a layer
 * of its own, the reference the tests compare with). layers/fuse.c. */
void relu_fusion_set(int on);

/* ---- running ---- */
/* A Work uses blas_threads() threads (--threads) by splitting each batch; OpenBLAS runs one thread
 * inside a pass. See threads.h. */
Work *work_create(const Model *m, int cap);
void work_free(Work *w);
/* work_take: the model's kept Work when it was made for this model's layers with capacity cap and
 * the current thread count (reset: no dropout key, weights not fixed), otherwise a new one; work_give:
 * keep w on the model for the next take (freeing what was kept), freed by model_free. A kept Work
 * saves mapping and zero-filling the workspace (and oneDNN's set-up) on every run and attack. */
Work *work_take(Model *m, int cap);
void work_give(Model *m, Work *w);
void work_fix_weights(Work *w, int on); /* see Work.weights_fixed */
/* fn(ctx, b0, b1) on every thread's share of [0, n), split as a pass splits a batch of n (thread t of T:
 * [n t / T, n (t+1) / T)), the caller being thread 0. For the per-sample work around a pass (filling a
 * batch, an attack's steps): each thread touches the samples its slice of the pass reads and writes, in
 * its own cache, instead of the calling thread doing all of it while the others wait. */
typedef void (*SliceFn)(void *ctx, long b0, long b1);
void work_split(Work *w, long n, SliceFn fn, void *ctx);
/* dst = src for n rows of D floats, each thread copying the rows of its slice (work_split) */
void work_copy(Work *w, long n, long D, float *dst, const float *src);

/* FWD_PREDICT: an inference pass that no backward pass follows (Square's queries, accuracy): a thread
 * carries each group of its samples through a run of per-sample layers in the rows of its first group
 * (pass.c), so the layers inside a run keep only that group's activations; the logits, and whatever a layer
 * after the run reads, are whole. The same floating-point operations as FWD_INFER, so the same logits,
 * bit for bit (tests/test_engine.c: predict_pass_*); model_backward after it is a bug (CHECK). */
enum { FWD_INFER = 0, FWD_TRAIN = 1, FWD_PREDICT = 2 };
void pass_predict_keep_none(int on); /* tests only: a predict pass keeps no layer's rows (a canary's fault) */
void pass_bwd_shift_all(int on);     /* tests only: a backward run shares every gradient's rows (a canary's fault) */
/* x: (n, D_in) in [0,1]. Returns the logits (n, K) (== w->act[m->out]). */
float *model_forward(Model *m, Work *w, const float *x, int n, int mode);

enum {
    BW_PARAMS = 1, /* exact local weight/bias/BN gradients into m->grads */
    BW_INPUT = 2,  /* gradient w.r.t. the model input into w->dx */
    BW_TRUE = 4,   /* input gradients through W (exact), ignoring every layer's rule */
    BW_GRADS = 8,  /* every layer's output gradient kept whole in w->grad (for callers that read them) */
};
/* dout: (n, K) gradient w.r.t. the logits (the output error e). Uses the mode of the last forward. */
void model_backward(Model *m, Work *w, const float *dout, int flags);
/* Samples through model_forward / model_backward since the process started, every Work together
 * (`concord bench` reports the gradient steps an attack took per image from them) */
void model_pass_counts(long long *fwd, long long *bwd);

/* Refresh every layer's feedback matrix from its rule: the next draw (fb_count + 1) (called by the trainer
 * before each backward that uses feedback; attacks with gradient source "feedback" call it per step). */
void model_refresh_feedback(Model *m);
/* Recompute every B for the current draw (m->fb_count) without advancing it (after loading). */
void model_rebuild_feedback(Model *m);
/* 1 when some layer's B must be rebuilt before a feedback backward (uSF, brSF, frSF). */
int model_feedback_changes(const Model *m);

/* non-finite detection: returns the index of the first layer whose output or parameters hold NaN/Inf,
 * or -1. */
int model_find_nonfinite(const Model *m, const Work *w);
/* The first parameter or buffer tensor (batch-norm statistics, normalisation) holding NaN/Inf, or NULL. */
const char *model_nonfinite_tensor(const Model *m);

#endif
