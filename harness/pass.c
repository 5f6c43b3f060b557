/* pass.c -- forward and backward passes: the layer kinds' operations (layers/layer.h) scheduled over a
 * Work's threads (threads.h). See model.h for the API.
 *
 * Scheduling: samples are independent in every kind but the whole-batch ones (batch-norm; dropout's
 * training forward; on several threads, a training pass's linear layers at least as wide as the batch,
 * split by output feature, layers/linear.c). A run of per-sample layers executes as ONE parallel region:
 * each thread carries its slice of the batch through all of them, in groups of PASS_GROUP samples where the
 * kinds allow (so a group's activations stay in the L2 cache from one layer to the next), with no barrier
 * in between; whole-batch layers run between regions, split by the kind itself (batch-norm: by sample, its
 * partial sums met at a barrier inside the region, threads.h pool_sync). OpenBLAS runs single-threaded
 * during a pass when the Work has threads of its own.
 *
 * Backward convention: each layer ADDS its contribution to its inputs' gradients (nodes read by several
 * layers, e.g. residual branches, simply accumulate). The FIRST layer to write a gradient buffer in a
 * backward pass ("assign", see bwd_plan) starts it instead: it stores 0 + its contribution, natively
 * (kinds with stores_dx: ReLU, max-pool 2x2, linear/conv products with beta 0, padded col2im) or by
 * zeroing its own slice just before adding; only buffers no assigning layer writes are zeroed up front.
 * Same values, bit for bit (0 + v is kept as an addition, so -0 still becomes +0), without a pass over
 * every buffer. Parameter gradients are written (not accumulated): each parameter is used once per pass.
 *
 * A predict pass (FWD_PREDICT, model.h) runs each group of a thread's samples through a run in the rows of
 * the thread's first group (g_rows_back, layer.h): a group's activations then overwrite the last group's,
 * still in the cache, instead of going to fresh memory (perf, 1 thread pinned, 5 alternated pairs: Square on
 * the demo's LeNet-5 0-9% faster, median 4%, on a Fashion-MNIST ResNet-20 3-16%, median 10%; a whole
 * AutoAttack 0-4%: docs/performance.md, seventeenth round). The run's last layer, the model's output and
 * any layer a later layer reads keep their own rows. A backward run does the same with the output gradients
 * of its inner layers, those no layer outside the run writes or reads (run_shifted; BW_GRADS keeps every
 * row for callers that read w->grad): LeNet-5 training and PGD-10 on AVX-512 5-6% faster, medians of
 * pinned pairs (docs/performance.md, eighteenth round).
 */
#include <string.h>

#include "harness/gemm.h"
#include "harness/layers/layer.h"
#include "harness/threads.h"

#define PASS_GROUP 8

_Thread_local const long *g_rows_back;

typedef struct {
    Model *m;
    Work *w;
    int i0, i1, mode, flags;
    const float *dout;
    const unsigned char *asg;
    const float *x; /* forward: the caller's input, copied into w->x slice by slice in the first region */
    int predict;    /* forward: FWD_PREDICT (mode is then FWD_INFER) */
} Task;

static int batch_forward(const Layer *L, const Work *w, int mode) {
    const LayerOps *ops = LAYER_OPS[L->kind];
    return ops->batch_forward && ops->batch_forward(L, w, mode);
}
static int grouped(const Model *m, const Layer *L, int cap, int backward, int flags) {
    const LayerOps *ops = LAYER_OPS[L->kind];
    return !ops->grouped || ops->grouped(m, L, cap, backward, flags);
}
/* layer L's backward runs over the whole batch (backward_batch) in this mode, on Work w */
static int batch_backward(const Layer *L, const Work *w, int train, int flags) {
    const LayerOps *ops = LAYER_OPS[L->kind];
    return ops->backward_batch && (!ops->batch_backward || ops->batch_backward(L, w, train, flags));
}

/* ------------------------------------------------------------------ prepare */

/* every layer's prepare op, the layers dealt round-robin to the threads */
static void task_prepare(void *arg, int t, int T) {
    Task *k = arg;
    for (int i = 0, j = 0; i < k->m->nl; i++) {
        const LayerOps *ops = LAYER_OPS[k->m->L[i].kind];
        if (!ops->prepare) continue;
        if (j++ % T == t) ops->prepare(k->m, k->w, i, k->mode, k->flags, t);
    }
}
static void prepare(Model *m, Work *w, int backward, int flags) {
    int any = 0;
    for (int i = 0; i < m->nl && !any; i++) any = LAYER_OPS[m->L[i].kind]->prepare != NULL;
    if (!any) return;
    Task k = {m, w, 0, m->nl, backward, flags, NULL, NULL, NULL, 0};
    pool_run(w->pool, task_prepare, &k);
}

/* ------------------------------------------------------------------ forward */

/* a fused ReLU (layers/fuse.c) is done by its neighbour: nothing to run, either way */
static void layer_forward(Model *m, Work *w, int i, long b0, long b1, int t) {
    if (!m->L[i].fused) LAYER_OPS[m->L[i].kind]->forward(m, w, i, b0, b1, t);
}

static void copy_input(const Task *k, long b0, long b1) {
    const long D = model_in_dim(k->m);
    if (b1 > b0) memcpy(k->w->x + b0 * D, k->x + b0 * D, sizeof(float) * (b1 - b0) * D);
}
static int g_keep_none; /* tests: keep no layer's rows (pass_predict_keep_none), the canary's fault */
void pass_predict_keep_none(int on) { g_keep_none = on; }
/* node x (and, through shared buffers, the layer whose rows it uses) is read outside the run from layer i on */
static void keep(const Model *m, int i, int x, unsigned char *kept) {
    for (; x >= i; x = m->L[x].in) {
        kept[x] = 1;
        if (!shares_rows(&m->L[x])) break;
    }
}
/* kept[l] for the run [i, j) of a predict pass: layer l's output keeps its own rows (what the layers after
 * the run read, and the model's output) */
static void run_kept(const Model *m, int i, int j, unsigned char *kept) {
    memset(kept, 0, MAX_LAYERS);
    if (g_keep_none) return;
    keep(m, i, m->out, kept);
    for (int u = j; u < m->nl; u++) {
        keep(m, i, m->L[u].in, kept);
        if (m->L[u].kind == L_ADD) keep(m, i, m->L[u].in2, kept);
    }
}
/* the layers of the run [i, j) over samples [b0, b1) in groups of PASS_GROUP; in a predict pass every group
 * in the first one's rows, but for the kept layers */
static void run_groups(const Task *k, int i, int j, long b0, long b1, int t) {
    Model *m = k->m;
    long back[MAX_LAYERS];
    unsigned char kept[MAX_LAYERS];
    if (k->predict) {
        run_kept(m, i, j, kept);
        memset(back, 0, sizeof back);
        g_rows_back = back;
    }
    for (long g = b0; g < b1; g += PASS_GROUP) {
        for (int l = i; l < j && k->predict; l++) {
            const Layer *L = &m->L[l];
            back[l] = shares_rows(L) ? (L->in >= 0 ? back[L->in] : 0) : kept[l] ? 0 : g - b0;
        }
        for (int l = i; l < j; l++) layer_forward(m, k->w, l, g, g + PASS_GROUP < b1 ? g + PASS_GROUP : b1, t);
    }
    g_rows_back = NULL;
}
static void task_fwd_local(void *arg, int t, int T) {
    Task *k = arg;
    long b0, b1;
    split_range(k->w->n, t, T, &b0, &b1);
    if (k->x) copy_input(k, b0, b1); /* each thread its own samples, into its own cache */
    for (int i = k->i0; i < k->i1;) {
        int j = i;
        while (j < k->i1 && grouped(k->m, &k->m->L[j], k->w->cap, 0, 0)) j++;
        if (j - i < 2) { layer_forward(k->m, k->w, i, b0, b1, t); i++; continue; }
        run_groups(k, i, j, b0, b1, t);
        i = j;
    }
}
static void task_fwd_batch(void *arg, int t, int T) {
    Task *k = arg;
    LAYER_OPS[k->m->L[k->i0].kind]->forward_batch(k->m, k->w, k->i0, k->mode, t, T);
}

/* OpenBLAS runs single-threaded while the Work's own threads split the batch. */
static int blas_single_begin(const Work *w) {
    if (w->threads <= 1) return 0;
    int bt = blas_threads();
    if (bt != 1) blas_set_threads(1);
    return bt;
}
static void blas_single_end(int bt) {
    if (bt > 1) blas_set_threads(bt);
}

static _Atomic long long g_fwd_samples, g_bwd_samples; /* model_pass_counts: statistics only (concord bench) */
void model_pass_counts(long long *fwd, long long *bwd) { *fwd = g_fwd_samples; *bwd = g_bwd_samples; }

float *model_forward(Model *m, Work *w, const float *x, int n, int mode) {
    CHECK(n > 0 && n <= w->cap);
    CHECK(mode == FWD_INFER || mode == FWD_TRAIN || mode == FWD_PREDICT);
    g_fwd_samples += n;
    const int predict = mode == FWD_PREDICT;
    if (predict) mode = FWD_INFER;
    w->n = n;
    w->train = mode;
    w->predicted = predict;
    const float *src = x != w->x ? x : NULL; /* copied by the first region (or before a whole-batch one) */
    int bt = blas_single_begin(w);
    prepare(m, w, 0, 0);
    for (int i = 0; i < m->nl;) {
        Task k = {m, w, i, i + 1, mode, 0, NULL, NULL, src, predict};
        src = NULL;
        if (batch_forward(&m->L[i], w, mode)) {
            if (k.x) work_copy(w, n, model_in_dim(m), w->x, k.x);
            pool_run(w->pool, task_fwd_batch, &k);
            i++;
            continue;
        }
        while (k.i1 < m->nl && !batch_forward(&m->L[k.i1], w, mode)) k.i1++;
        pool_run(w->pool, task_fwd_local, &k);
        i = k.i1;
    }
    blas_single_end(bt);
    return w->act[m->out];
}

/* ------------------------------------------------------------------ backward */

enum { ASG_IN = 1, ASG_ZERO = 2 };

/* layer i on samples [b0, b1): the first writer of its input's gradient without a storing form zeroes
 * its slice first */
static void backward_local(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                           long bstart, int t) {
    const Layer *L = &m->L[i];
    const LayerOps *ops = LAYER_OPS[L->kind];
    if (L->fused) return;
    if (assign && !ops->stores_dx && need_dx_of(m, L, flags)) {
        long inn = in_n(L);
        memset(node_grad(w, L->in) + grad_row(L->in, b0) * inn, 0, sizeof(float) * (b1 - b0) * inn);
        assign = 0;
    }
    ops->backward(m, w, i, dout, flags, assign, b0, b1, bstart, t);
}

static void task_bwd_init(void *arg, int t, int T) {
    Task *k = arg;
    Model *m = k->m;
    Work *w = k->w;
    long b0, b1;
    split_range(w->n, t, T, &b0, &b1);
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind != L_FLATTEN && !m->L[i].fused && (k->asg[i] & ASG_ZERO)) {
            long on = out_n(&m->L[i]);
            memset(w->grad[i] + b0 * on, 0, sizeof(float) * (b1 - b0) * on);
        }
    long D = model_in_dim(m), K = out_n(&m->L[m->out]);
    if ((k->flags & BW_INPUT) && (k->asg[MAX_LAYERS] & ASG_ZERO)) memset(w->dx + b0 * D, 0, sizeof(float) * (b1 - b0) * D);
    memcpy(w->grad[m->out] + b0 * K, k->dout + b0 * K, sizeof(float) * (b1 - b0) * K);
}
/* The gradient buffer layer i's input gradient goes to (flatten aliases its input's); MAX_LAYERS = w->dx */
static int grad_buf(const Model *m, int i) {
    while (i >= 0 && shares_rows(&m->L[i])) i = m->L[i].in;
    return i < 0 ? MAX_LAYERS : i;
}
/* A backward run's output gradients that no layer outside the run writes or reads (pass.c's bwd_plan gives
 * each a storing first writer inside it) live, group by group, in the rows of the thread's first group
 * (g_grad_back, layers/layer.h), as a predict pass's activations do: each group's gradients overwrite the
 * last group's, still in cache, instead of going to fresh rows. BW_GRADS keeps them all. */
_Thread_local const long *g_grad_back;
static int g_shift_all; /* tests: shift every gradient of a run (pass_bwd_shift_all), the canary's fault */
void pass_bwd_shift_all(int on) { g_shift_all = on; }
/* sh[l] for the layers (lo, hi] of a backward run: layer l's output gradient rows may be shared */
static void run_shifted(const Model *m, const unsigned char *asg, int lo, int hi, unsigned char *sh) {
    memset(sh, 0, MAX_LAYERS);
    for (int l = lo + 1; l <= hi; l++)
        sh[l] = !shares_rows(&m->L[l]) && (g_shift_all || (l != m->out && !(asg[l] & ASG_ZERO)));
    if (g_shift_all) return;
    for (int u = 0; u < m->nl; u++) { /* a writer outside the run keeps the rows it writes */
        if (u > lo && u <= hi) continue;
        const Layer *U = &m->L[u];
        const int b = grad_buf(m, U->in), b2 = U->kind == L_ADD ? grad_buf(m, U->in2) : MAX_LAYERS;
        if (b < MAX_LAYERS) sh[b] = 0;
        if (b2 < MAX_LAYERS) sh[b2] = 0;
    }
}
/* layers i1-1 down to i0; runs of groupable layers group by group, as in task_fwd_local */
static void task_bwd_local(void *arg, int t, int T) {
    Task *k = arg;
    long b0, b1;
    split_range(k->w->n, t, T, &b0, &b1);
    for (int i = k->i1 - 1; i >= k->i0;) {
        int j = i;
        while (j >= k->i0 && grouped(k->m, &k->m->L[j], k->w->cap, 1, k->flags)) j--;
        if (i - j < 2) {
            backward_local(k->m, k->w, i, k->dout, k->flags, k->asg[i] & ASG_IN, b0, b1, b0, t);
            i--;
            continue;
        }
        long back[MAX_LAYERS];
        unsigned char sh[MAX_LAYERS];
        const int shift = !(k->flags & BW_GRADS);
        if (shift) {
            run_shifted(k->m, k->asg, j, i, sh);
            memset(back, 0, sizeof back);
            g_grad_back = back;
        }
        long g = b0;
        do { /* at least once: a thread without samples still zeroes its weight-gradient partials */
            for (int l = j + 1; l <= i && shift; l++) {
                const Layer *L = &k->m->L[l];
                back[l] = shares_rows(L) ? (L->in >= 0 ? back[L->in] : 0) : sh[l] ? g - b0 : 0;
            }
            for (int l = i; l > j; l--)
                backward_local(k->m, k->w, l, k->dout, k->flags, k->asg[l] & ASG_IN, g,
                               g + PASS_GROUP < b1 ? g + PASS_GROUP : b1, b0, t);
        } while ((g += PASS_GROUP) < b1);
        g_grad_back = NULL;
        i = j;
    }
}
static void task_bwd_batch(void *arg, int t, int T) {
    Task *k = arg;
    LAYER_OPS[k->m->L[k->i0].kind]->backward_batch(k->m, k->w, k->i0, k->flags, k->asg[k->i0] & ASG_IN, t, T);
}
/* m->grads += the other threads' partial weight gradients, each layer's range split across threads in
 * cache lines, as the optimiser's step splits it (train.c): each thread then updates what it summed. A
 * layer whose backward ran over the whole batch (linear in training) wrote m->grads itself: no partials. */
static void task_reduce(void *arg, int t, int T) {
    Task *k = arg;
    Model *m = k->m;
    Work *w = k->w;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if ((L->kind != L_LINEAR && L->kind != L_CONV) || L->frozen || batch_backward(L, w, k->mode, k->flags)) continue;
        long off = L->dW - m->grads, len = layer_w_n(L) + (L->bias ? L->c : 0), j0, j1; /* W then b */
        split_lines(len, t, T, &j0, &j1);
        for (int u = 1; u < w->threads; u++) {
            const float *src = w->gpart + (long)(u - 1) * m->n_params + off;
            float *dst = m->grads + off;
            for (long j = j0; j < j1; j++) dst[j] += src[j];
        }
    }
}

/* asg[i] & ASG_IN: layer i is the first writer of its input's gradient buffer in this pass and starts it
 * (backward_local); asg[b] & ASG_ZERO: buffer b (a node, or MAX_LAYERS = w->dx) is zeroed up front
 * because its first writer cannot start it (a whole-batch kind, or the residual add, which writes two
 * buffers) or nothing writes it (kept zero, as before). */
static void bwd_plan(const Model *m, const Work *w, int flags, int train, unsigned char *asg) {
    unsigned char seen[MAX_LAYERS + 1];
    memset(seen, 0, sizeof seen);
    for (int b = 0; b <= MAX_LAYERS; b++) asg[b] = 0;
    for (int i = m->nl - 1; i >= 0; i--) {
        const Layer *L = &m->L[i];
        if (shares_rows(L)) continue;
        const LayerOps *ops = LAYER_OPS[L->kind];
        const int can_start = L->kind != L_ADD && (batch_backward(L, w, train, flags) ? ops->stores_dx : ops->backward != NULL);
        int bufs[2] = {-1, -1};
        if (need_dx_of(m, L, flags)) bufs[0] = grad_buf(m, L->in);
        if (L->kind == L_ADD && add_need_dx2(m, L, flags)) bufs[1] = grad_buf(m, L->in2); /* the only two-input node */
        for (int u = 0; u < 2; u++) {
            int b = bufs[u];
            if (b < 0 || seen[b]) continue;
            seen[b] = 1;
            if (u == 0 && can_start) asg[i] |= ASG_IN;
            else asg[b] |= ASG_ZERO;
        }
    }
    for (int b = 0; b <= MAX_LAYERS; b++)
        if (!seen[b]) asg[b] |= ASG_ZERO;
}

void model_backward(Model *m, Work *w, const float *dout, int flags) {
    CHECK(!w->predicted); /* a FWD_PREDICT forward keeps no whole activations to go back through */
    g_bwd_samples += w->n;
    int bt = blas_single_begin(w);
    prepare(m, w, 1, flags);
    unsigned char asg[MAX_LAYERS + 1];
    bwd_plan(m, w, flags, w->train, asg);
    Task k = {m, w, 0, 0, w->train, flags, dout, asg, NULL, 0};
    pool_run(w->pool, task_bwd_init, &k);
    for (int i = m->nl - 1; i >= 0;) {
        k.i1 = i + 1;
        if (batch_backward(&m->L[i], w, w->train, flags)) {
            k.i0 = i;
            pool_run(w->pool, task_bwd_batch, &k);
            i--;
            continue;
        }
        k.i0 = i;
        while (k.i0 > 0 && !batch_backward(&m->L[k.i0 - 1], w, w->train, flags)) k.i0--;
        pool_run(w->pool, task_bwd_local, &k);
        i = k.i0 - 1;
    }
    if ((flags & BW_PARAMS) && w->threads > 1) pool_run(w->pool, task_reduce, &k);
    blas_single_end(bt);
}
