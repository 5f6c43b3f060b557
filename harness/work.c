/* work.c -- a model's workspace: every activation, gradient and scratch buffer for a maximum batch size,
 * sized once from the layer kinds' needs (layers/layer.h, work_need) and allocated in one block, plus the
 * thread pool the passes split batches over (threads.h). Forward and backward never allocate. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "harness/gemm.h"
#include "harness/layers/layer.h"
#include "harness/threads.h"

/* what a Work's layout and layer state depend on: every layer's graph, geometry, storage, fusion and
 * rule-seam shape (the fields from kind to bias) and its trainable/frozen/direct flags. Not the values
 * or the address of its parameters: a Work never keeps a weight across calls unless weights_fixed. */
static uint64_t work_sig(const Model *m) {
    uint64_t h = fnv1a64(&m->nl, sizeof m->nl, FNV1A_INIT);
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        const int f[3] = {L->trainable, L->frozen, L->fb_direct};
        h = fnv1a64(L, offsetof(Layer, p), h);
        h = fnv1a64(f, sizeof f, h);
    }
    return h;
}

#define SCRATCH_GAP (64 * 1024) /* floats: 256 KiB between threads' scratch blocks (see work_create) */

static int threads_for(int cap) {
    int T = blas_threads();
    if (T < 1) T = 1;
    if (T > POOL_MAX) T = POOL_MAX;
    if (T > cap) T = cap;
    return T;
}

Work *work_create(const Model *m, int cap) {
    Work *w = xcalloc(1, sizeof *w);
    w->cap = cap;
    w->sig = work_sig(m);
    const int T = threads_for(cap);
    w->threads = T;
    long nf = 2L * cap * model_in_dim(m), ni = 0, col = 0, tmp = 0;
    WorkNeed need[MAX_LAYERS];
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        const LayerOps *ops = LAYER_OPS[L->kind];
        memset(&need[i], 0, sizeof need[i]);
        if (ops->work_need) ops->work_need(L, cap, &need[i]);
        if (L->kind != L_FLATTEN && !L->fused) nf += 2 * out_n(L) * cap; /* output and gradient (flatten, fused ReLUs alias) */
        nf += need[i].aux;
        ni += need[i].iaux;
        if (need[i].col > col) col = need[i].col;
        if (need[i].tmp > tmp) tmp = need[i].tmp;
    }
    /* With several threads, each thread's scratch block ends SCRATCH_GAP floats before the next one
       starts. Without the gap, the im2col of each thread ran at about half its one-thread speed while the
       other thread ran beside it (lenet5 PGD-10, 2 threads: im2col 0.066-0.072 s per thread against
       0.036 s serialised). With a gap of 256 KiB it runs at full speed: 5.2k -> 6.6k images/s,
       scripts/two_works.c. Gaps of 4 KiB and 64 KiB did not help both threads. Cause not pinned down; a
       likely one is hardware prefetchers streaming into the other thread's scratch, which huge pages let
       them do past 4 KiB. */
    if (T > 1) {
        col += SCRATCH_GAP;
        tmp += SCRATCH_GAP;
    }
    w->col_n = col;
    w->tmp_n = tmp;
    nf += T * (col + tmp) + (long)(T - 1) * m->n_params;
    w->mem_n = (size_t)nf * sizeof(float);
    w->mem = big_alloc(w->mem_n);
    w->imem = xcalloc((size_t)(ni ? ni : 1), sizeof(int32_t));
    float *p = w->mem;
    int32_t *q = w->imem;
    w->x = p; p += (long)cap * model_in_dim(m);
    w->dx = p; p += (long)cap * model_in_dim(m);
    w->col = p; p += T * col;
    w->tmp = p; p += T * tmp;
    w->gpart = p; p += (long)(T - 1) * m->n_params;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        long o = out_n(L) * cap;
        if (shares_rows(L)) {
            w->act[i] = L->in < 0 ? w->x : w->act[L->in];
            w->grad[i] = L->in < 0 ? w->dx : w->grad[L->in];
            continue;
        }
        w->act[i] = p; p += o;
        w->grad[i] = p; p += o;
        if (need[i].iaux) { w->iaux[i] = q; q += need[i].iaux; }
        if (need[i].aux) { w->aux[i] = p; p += need[i].aux; }
    }
    CHECK(p == w->mem + nf);
    w->pool = T > 1 ? pool_create(T) : NULL;
    for (int i = 0; i < m->nl; i++)
        if (LAYER_OPS[m->L[i].kind]->work_init) {
            w->lx_kind[i] = m->L[i].kind;
            LAYER_OPS[m->L[i].kind]->work_init(m, w, i);
        }
    return w;
}

void work_free(Work *w) {
    if (!w) return;
    for (int i = 0; i < MAX_LAYERS; i++)
        if (w->lx[i]) LAYER_OPS[w->lx_kind[i]]->work_fini(w, i);
    conv_dnnl_work_free(w);
    pool_free(w->pool);
    big_free(w->mem, w->mem_n);
    free(w->imem);
    free(w);
}

Work *work_take(Model *m, int cap) {
    Work *w = __atomic_exchange_n(&m->wcache, NULL, __ATOMIC_ACQ_REL);
    if (w && w->cap == cap && w->threads == threads_for(cap) && w->sig == work_sig(m)) {
        w->n = 0;
        w->train = 0;
        w->predicted = 0;
        w->drop_seed = w->drop_count = 0;
        w->weights_fixed = 0;
        w->wgen++;
        return w;
    }
    work_free(w);
    return work_create(m, cap);
}

void work_give(Model *m, Work *w) {
    if (!w) return;
    w->weights_fixed = 0;
    w->wgen++;
    work_free(__atomic_exchange_n(&m->wcache, w, __ATOMIC_ACQ_REL));
}

void work_fix_weights(Work *w, int on) {
    w->weights_fixed = on;
    w->wgen++;
}

typedef struct { long n; SliceFn fn; void *ctx; } SplitTask;
static void task_split(void *arg, int t, int T) {
    const SplitTask *k = arg;
    long b0, b1;
    split_range(k->n, t, T, &b0, &b1);
    if (b1 > b0) k->fn(k->ctx, b0, b1);
}
void work_split(Work *w, long n, SliceFn fn, void *ctx) {
    SplitTask k = {n, fn, ctx};
    pool_run(w->pool, task_split, &k);
}

typedef struct { float *dst; const float *src; long D; } RowCopy;
static void copy_rows(void *ctx, long b0, long b1) {
    const RowCopy *c = ctx;
    memcpy(c->dst + b0 * c->D, c->src + b0 * c->D, sizeof(float) * (b1 - b0) * c->D);
}
void work_copy(Work *w, long n, long D, float *dst, const float *src) {
    RowCopy c = {dst, src, D};
    work_split(w, n, copy_rows, &c);
}
