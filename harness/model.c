/* model.c -- graph building, the arena, forward and backward of every layer kind. See model.h.
 *
 * Backward convention: each layer ADDS its contribution to its inputs' gradients (nodes read by several
 * layers, e.g. residual branches, simply accumulate). The FIRST layer to write a gradient buffer in a
 * backward pass ("assign", see bwd_plan) starts it instead: it stores 0 + its contribution, natively
 * (ReLU, max-pool 2x2, linear/conv products with beta 0, padded col2im) or by zeroing its own slice just
 * before adding; only buffers no assigning layer writes are zeroed up front. Same values, bit for bit
 * (0 + v is kept as an addition, so -0 still becomes +0), without a pass over every buffer.
 * Parameter gradients are written (not accumulated): each parameter is used once per pass.
 */
#include "harness/model.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "harness/gemm.h"

/* ------------------------------------------------------------------ building */

void model_init(Model *m, const ModelSpec *spec) {
    memset(m, 0, sizeof *m);
    m->spec = *spec;
}

static Layer *in_shape(Model *m, int in, int *c, int *h, int *w) {
    CHECK(in >= -1 && in < m->nl);
    if (in < 0) { *c = m->spec.in_c; *h = m->spec.in_h; *w = m->spec.in_w; return NULL; }
    Layer *p = &m->L[in];
    *c = p->c; *h = p->h; *w = p->w;
    return p;
}

int model_add(Model *m, LayerKind kind, const char *name, int in) {
    CHECK(m->nl < MAX_LAYERS);
    CHECK(m->arena == NULL);
    Layer *L = &m->L[m->nl];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->in = in;
    L->in2 = -2;
    L->pidx = -1;
    snprintf(L->name, sizeof L->name, "%s", name ? name : "");
    in_shape(m, in, &L->ic, &L->ih, &L->iw);
    L->c = L->ic; L->h = L->ih; L->w = L->iw;
    switch (kind) {
    case L_GAP: L->h = L->w = 1; break;
    case L_FLATTEN: L->c = L->ic * L->ih * L->iw; L->h = L->w = 1; break;
    case L_BN: case L_NORM: L->trainable = (kind == L_BN); break;
    default: break;
    }
    return m->nl++;
}

int model_add_linear(Model *m, const char *name, int in, int out_features) {
    int i = model_add(m, L_LINEAR, name, in);
    Layer *L = &m->L[i];
    L->c = out_features; L->h = L->w = 1;
    L->bias = 1;
    L->trainable = 1;
    return i;
}

int model_add_conv(Model *m, const char *name, int in, int oc, int k, int stride, int pad, int bias) {
    int i = model_add(m, L_CONV, name, in);
    Layer *L = &m->L[i];
    L->k = k; L->stride = stride; L->pad = pad; L->bias = bias;
    L->c = oc;
    L->h = (L->ih + 2 * pad - k) / stride + 1;
    L->w = (L->iw + 2 * pad - k) / stride + 1;
    CHECK(L->h > 0 && L->w > 0);
    L->trainable = 1;
    return i;
}

int model_add_pool(Model *m, LayerKind kind, int in, int k, int stride) {
    int i = model_add(m, kind, "", in);
    Layer *L = &m->L[i];
    L->k = k; L->stride = stride;
    L->h = (L->ih - k) / stride + 1;
    L->w = (L->iw - k) / stride + 1;
    CHECK(L->h > 0 && L->w > 0);
    return i;
}

int model_add_add(Model *m, int a, int b) {
    int i = model_add(m, L_ADD, "", a);
    Layer *L = &m->L[i];
    L->in2 = b;
    int c, h, w;
    in_shape(m, b, &c, &h, &w);
    CHECK(c == L->c && h == L->h && w == L->w);
    return i;
}

int model_add_dropout(Model *m, int in, float p) {
    int i = model_add(m, L_DROPOUT, "", in);
    m->L[i].p = p;
    return i;
}

long layer_w_n(const Layer *L) {
    if (L->kind == L_LINEAR) return (long)L->c * L->ic * L->ih * L->iw;
    if (L->kind == L_CONV) return (long)L->c * L->ic * L->k * L->k;
    return 0;
}
int layer_in_dim(const Layer *L) { return L->ic * L->ih * L->iw; }
int layer_fan_in(const Layer *L) { return L->kind == L_CONV ? L->ic * L->k * L->k : layer_in_dim(L); }
int layer_fan_out(const Layer *L) { return L->kind == L_CONV ? L->c * L->k * L->k : L->c; }
static long out_n(const Layer *L) { return (long)L->c * L->h * L->w; }

static void add_tensor(Model *m, const char *prefix, const char *suffix, float *data, int kind, int ndim,
                       int s0, int s1, int s2, int s3) {
    CHECK(m->ntensors < MAX_TENSORS);
    Tensor *t = &m->tensors[m->ntensors++];
    snprintf(t->name, sizeof t->name, "%s%s%s", prefix, *prefix && *suffix ? "." : "", suffix);
    t->ndim = ndim;
    int s[4] = {s0, s1, s2, s3};
    t->n = 1;
    for (int d = 0; d < ndim; d++) { t->shape[d] = s[d]; t->n *= s[d]; }
    t->data = data;
    t->kind = kind;
}

void model_finalize(Model *m, uint64_t init_seed) {
    CHECK(m->arena == NULL && m->nl > 0);
    m->out = m->nl - 1;
    /* 1. sizes */
    long np = 0, nbuf = 0, nrule = 0;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (L->kind == L_LINEAR || L->kind == L_CONV) {
            np += layer_w_n(L) + (L->bias ? L->c : 0);
            nrule += L->rstate_n + L->fb_n;
        } else if (L->kind == L_BN) {
            np += 2L * L->c;
            nbuf += 2L * L->c;
        } else if (L->kind == L_NORM) {
            nbuf += 2L * L->c;
        }
    }
    m->n_params = np;
    m->n_arena = 4 * np + nbuf + nrule;
    m->arena = xcalloc((size_t)m->n_arena, sizeof(float));
    m->params = m->arena;
    m->grads = m->params + np;
    m->opt_m = m->grads + np;
    m->opt_v = m->opt_m + np;
    float *buf = m->opt_v + np, *rbuf = buf + nbuf;
    /* 2. pointers, tensors and PyTorch-default initialisation */
    long off = 0;
    int pidx = 0;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        Rng r;
        rng_seed(&r, init_seed, RNG_INIT, (uint64_t)i);
        if (L->kind == L_LINEAR || L->kind == L_CONV) {
            long wn = layer_w_n(L);
            L->pidx = pidx++;
            L->W = m->params + off; L->dW = m->grads + off; off += wn;
            if (L->bias) { L->b = m->params + off; L->db = m->grads + off; off += L->c; }
            /* kaiming_uniform(a = sqrt 5): bound 1/sqrt(fan_in), the same for the bias */
            float bound = 1.0f / sqrtf((float)layer_fan_in(L));
            for (long j = 0; j < wn; j++) L->W[j] = (2 * rng_uniform(&r) - 1) * bound;
            for (int j = 0; L->bias && j < L->c; j++) L->b[j] = (2 * rng_uniform(&r) - 1) * bound;
            if (L->kind == L_LINEAR) add_tensor(m, L->name, "weight", L->W, TK_PARAM, 2, L->c, layer_in_dim(L), 0, 0);
            else add_tensor(m, L->name, "weight", L->W, TK_PARAM, 4, L->c, L->ic, L->k, L->k);
            if (L->bias) add_tensor(m, L->name, "bias", L->b, TK_PARAM, 1, L->c, 0, 0, 0);
            L->B = L->W;
            L->rstate = L->rstate_n ? rbuf : NULL;
            rbuf += L->rstate_n;
            if (L->fb_n) {
                L->B = rbuf;
                rbuf += L->fb_n;
            }
            if (L->rstate_n) {
                char nm[64];
                snprintf(nm, sizeof nm, "rule.%s", L->name);
                add_tensor(m, nm, "state", L->rstate, TK_RULE, 1, (int)L->rstate_n, 0, 0, 0);
            }
        } else if (L->kind == L_BN) {
            L->gamma = m->params + off; L->dgamma = m->grads + off; off += L->c;
            L->beta = m->params + off; L->dbeta = m->grads + off; off += L->c;
            L->run_mean = buf; buf += L->c;
            L->run_var = buf; buf += L->c;
            for (int j = 0; j < L->c; j++) { L->gamma[j] = 1; L->run_var[j] = 1; }
            add_tensor(m, L->name, "weight", L->gamma, TK_PARAM, 1, L->c, 0, 0, 0);
            add_tensor(m, L->name, "bias", L->beta, TK_PARAM, 1, L->c, 0, 0, 0);
            add_tensor(m, L->name, "running_mean", L->run_mean, TK_BUFFER, 1, L->c, 0, 0, 0);
            add_tensor(m, L->name, "running_var", L->run_var, TK_BUFFER, 1, L->c, 0, 0, 0);
        } else if (L->kind == L_NORM) {
            L->mean = buf; buf += L->c;
            L->std = buf; buf += L->c;
            for (int j = 0; j < L->c; j++) { L->mean[j] = 0; L->std[j] = 1; }
            add_tensor(m, L->name, "mean", L->mean, TK_BUFFER, 1, L->c, 0, 0, 0);
            add_tensor(m, L->name, "std", L->std, TK_BUFFER, 1, L->c, 0, 0, 0);
        }
    }
    CHECK(off == np);
    CHECK(rbuf == m->arena + m->n_arena);
    add_tensor(m, "", "optim.m", m->opt_m, TK_OPTIM, 1, (int)np, 0, 0, 0);
    add_tensor(m, "", "optim.v", m->opt_v, TK_OPTIM, 1, (int)np, 0, 0, 0);
    model_set_frozen(m, 0);
}

void model_free(Model *m) {
    if (!m) return;
    free(m->arena);
    free(m);
}

int model_in_dim(const Model *m) { return m->spec.in_c * m->spec.in_h * m->spec.in_w; }
int model_out_dim(const Model *m) {
    const Layer *L = &m->L[m->nl - 1];
    return L->c * L->h * L->w;
}
int model_nparam_layers(const Model *m) {
    int n = 0;
    for (int i = 0; i < m->nl; i++) n += (m->L[i].kind == L_LINEAR || m->L[i].kind == L_CONV);
    return n;
}
Layer *model_param_layer(Model *m, int pidx) {
    for (int i = 0; i < m->nl; i++)
        if ((m->L[i].kind == L_LINEAR || m->L[i].kind == L_CONV) && m->L[i].pidx == pidx) return &m->L[i];
    return NULL;
}
Tensor *model_tensor(Model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}
long model_flops(const Model *m) {
    long f = 0;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        if (L->kind == L_LINEAR || L->kind == L_CONV) f += 2 * layer_w_n(L) * (long)L->h * L->w;
    }
    return f;
}

/* Freeze the first `first_n` linear/conv layers and every BN layer before the last frozen one. */
void model_set_frozen(Model *m, int first_n) {
    int last = -1;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        L->frozen = 0;
        if ((L->kind == L_LINEAR || L->kind == L_CONV) && L->pidx < first_n) { L->frozen = 1; last = i; }
    }
    for (int i = 0; i < last; i++)
        if (m->L[i].kind == L_BN) m->L[i].frozen = 1;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        int up = L->trainable && !L->frozen;
        if (L->in >= 0) up |= m->need_up[L->in];
        if (L->kind == L_ADD && L->in2 >= 0) up |= m->need_up[L->in2];
        m->need_up[i] = up;
    }
}

/* ------------------------------------------------------------------ threads
 *
 * Parallelism: a Work splits every batch across `threads` pthreads (the OpenBLAS thread count when
 * the Work was created, i.e. `--threads`), and OpenBLAS itself runs single-threaded during a pass, so
 * there is never a second pool competing for the cores. Samples are independent in every layer but
 * batch-norm in any mode and dropout's forward in training (its mask is one sequential random stream):
 * a run of sample-local layers executes as ONE parallel region (each thread carries its own samples
 * through all of them, no barrier in between); batch-norm runs channel-parallel and dropout's forward
 * serially, between regions. Weight gradients: thread 0 writes m->grads, thread t > 0 its own partial
 * block, summed after the pass (so with several threads the summation order over samples differs
 * from the one-thread order: results agree to rounding, not bitwise; tests run with one thread). */

#define POOL_MAX 16

typedef void (*TaskFn)(void *arg, int t, int T);

struct Pool {
    int T;
    pthread_t th[POOL_MAX];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    TaskFn fn;
    void *arg;
    unsigned gen;
    int pending, quit;
};

typedef struct { struct Pool *p; int t; } PoolArg;

static void *pool_main(void *a) {
    struct Pool *p = ((PoolArg *)a)->p;
    int t = ((PoolArg *)a)->t;
    free(a);
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) { pthread_mutex_unlock(&p->mu); return NULL; }
        seen = p->gen;
        TaskFn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, t, p->T);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

static struct Pool *pool_create(int T) {
    struct Pool *p = xcalloc(1, sizeof *p);
    p->T = T;
    CHECK(pthread_mutex_init(&p->mu, NULL) == 0);
    CHECK(pthread_cond_init(&p->go, NULL) == 0 && pthread_cond_init(&p->done, NULL) == 0);
    for (int t = 1; t < T; t++) {
        PoolArg *a = xmalloc(sizeof *a);
        a->p = p;
        a->t = t;
        CHECK(pthread_create(&p->th[t], NULL, pool_main, a) == 0);
    }
    return p;
}

static void pool_free(struct Pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->T; t++) pthread_join(p->th[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

/* fn(arg, t, T) for t = 0..T-1; the caller is thread 0. Returns when all are done. */
static void run_par(Work *w, TaskFn fn, void *arg) {
    struct Pool *p = w->pool;
    if (!p) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->T - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->T);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void split(long n, int t, int T, long *a, long *b) {
    *a = n * t / T;
    *b = n * (t + 1) / T;
}

/* ------------------------------------------------------------------ workspace */

/* Convolutions run im2col + gemm one sample at a time: the sample's column matrix stays in the L2
 * cache (no (K_col, N*P) matrix travels through memory), and the product (OC, P) is already NCHW, so
 * neither the output nor the incoming gradient is reshuffled. Only layers with tiny outputs (P < 64
 * pixels, e.g. the last stages of vgg16 at 32x32) group samples into chunks, so that each product
 * still has >= 64 columns; chunks go through w->tmp. (perf, lenet5 training: one sample per product
 * was as fast as or faster than 4-sample chunks, the reshuffle costing what larger products saved.) */
#define CHUNK_COLS 64
static int conv_chunk(const Layer *L, int cap) {
    long P = (long)L->h * L->w;
    long s = (CHUNK_COLS + P - 1) / P;
    if (s > cap) s = cap;
    return (int)(s < 1 ? 1 : s);
}

/* floats of im2col_s1's zero-bordered copy of one sample (0: not used for this layer) */
/* at most this many floats of forward column matrices are kept per Work for the backward pass. OFF (0):
 * measured wall-clock, lenet5 training 1 thread, keeping both convs' columns (17.7 MiB per batch) was
 * 15-20% SLOWER (14.1-16.5k vs 18.3-18.7k samples/s) although callgrind counted 11% fewer instructions:
 * streaming the cached columns through L3/memory costs more than recomputing them from an L2-resident
 * sample. Kept as a knob for machines with other cache/memory balances. */
#define COLCACHE_BUDGET 0L

static long im2col_pad_n(const Layer *L) {
    return L->stride == 1 && L->pad > 0 ? (long)L->ic * (L->ih + 2 * L->pad) * (L->iw + 2 * L->pad) : 0;
}

Work *work_create(const Model *m, int cap) {
    Work *w = xcalloc(1, sizeof *w);
    w->cap = cap;
    int T = blas_threads();
    if (T < 1) T = 1;
    if (T > POOL_MAX) T = POOL_MAX;
    if (T > cap) T = cap;
    w->threads = T;
    long nf = 2L * cap * model_in_dim(m), ni = 0, col = 0, tmp = 0;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        long o = out_n(L) * cap;
        if (L->kind != L_FLATTEN) nf += 2 * o;
        if (L->kind == L_MAXPOOL) ni += o;
        if (L->kind == L_BN) nf += o + 2L * L->c;
        if (L->kind == L_DROPOUT) nf += o;
        if (L->kind == L_CONV) {
            long S = conv_chunk(L, cap), P = (long)L->h * L->w;
            if ((long)L->ic * L->k * L->k * S * P > col) col = (long)L->ic * L->k * L->k * S * P;
            if ((long)L->c * S * P > tmp) tmp = (long)L->c * S * P;
            if (im2col_pad_n(L) > tmp) tmp = im2col_pad_n(L); /* im2col_s1's buffer (one-sample chunks) */
            if ((long)L->c * L->ic * L->k * L->k > tmp) tmp = (long)L->c * L->ic * L->k * L->k; /* a dW term */
        }
    }
    w->col_n = col;
    w->tmp_n = tmp;
    nf += T * (col + tmp) + (long)(T - 1) * m->n_params;
    w->mem = xcalloc((size_t)nf, sizeof(float));
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
        if (L->kind == L_FLATTEN) {
            w->act[i] = L->in < 0 ? w->x : w->act[L->in];
            w->grad[i] = L->in < 0 ? w->dx : w->grad[L->in];
            continue;
        }
        w->act[i] = p; p += o;
        w->grad[i] = p; p += o;
        if (L->kind == L_MAXPOOL) { w->argmax[i] = q; q += o; }
        if (L->kind == L_BN) {
            w->bn_xhat[i] = p; p += o;
            w->bn_mean[i] = p; p += L->c;
            w->bn_invstd[i] = p; p += L->c;
        }
        if (L->kind == L_DROPOUT) { w->mask[i] = p; p += o; }
    }
    CHECK(p == w->mem + nf);
    /* Column cache: training recomputed every conv's im2col in backward for the weight gradient
       (callgrind, lenet5 training: im2col was 22% of the instructions, half of it in backward). Keep the
       forward columns instead, for the conv layers in graph order while the total stays within
       COLCACHE_BUDGET floats (a separate calloc, so a Work that never trains never touches its pages). */
    long cc = 0;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        if (L->kind != L_CONV) continue;
        long sz = (long)cap * L->ic * L->k * L->k * L->h * L->w;
        if (cc + sz <= COLCACHE_BUDGET) cc += sz;
    }
    w->ccmem = cc ? xcalloc((size_t)cc, sizeof(float)) : NULL;
    cc = 0;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        if (L->kind != L_CONV) continue;
        long sz = (long)cap * L->ic * L->k * L->k * L->h * L->w;
        if (cc + sz <= COLCACHE_BUDGET) { w->colcache[i] = w->ccmem + cc; cc += sz; }
    }
    /* OpenBLAS 0.3.21 builds its small-matrix sgemm kernels for these cores only */
    const char *core = blas_core();
    w->dw_split = core && (strcasecmp(core, "cooperlake") == 0 || strcasecmp(core, "skylakex") == 0 ||
                           strcasecmp(core, "sapphirerapids") == 0);
    w->pool = T > 1 ? pool_create(T) : NULL;
    return w;
}

void work_free(Work *w) {
    if (!w) return;
    pool_free(w->pool);
    free(w->mem);
    free(w->ccmem);
    free(w->imem);
    free(w);
}

/* ------------------------------------------------------------------ element-wise kernels
 * The build is plain -O2, where GCC 12 vectorises (almost) nothing, so the loops that dominate the
 * element-wise time (measured with perf: ReLU, im2col/col2im rows, bias adds) use GCC vector
 * extensions, 4 floats at a time (SSE2, the x86-64 baseline), with exactly the scalar semantics:
 * no reassociation, NaN handled as in the scalar code. */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4), may_alias)); /* unaligned access */
static inline v4f v4_ld(const float *p) { return *(const v4u *)p; }
static inline void v4_st(float *p, v4f v) { *(v4u *)p = v; }

/* Copies of 10-32 floats (im2col rows): GCC would turn this loop into a memcpy call, whose call and
 * dispatch cost more than the copy (perf: 14% of lenet5 training in __memmove); the empty asm keeps
 * the loop a loop. */
static inline void row_copy(float *restrict d, const float *restrict s, long n) {
    if (n < 4) {
        for (long j = 0; j < n; j++) d[j] = s[j];
        return;
    }
    /* two vectors per iteration, then the last vector overlapping the previous ones (no scalar tail):
       callgrind, lenet5 training: the one-vector loop spent 3 branch/compare instructions per vector */
    long j = 0;
    for (; j + 8 < n; j += 8) {
        v4f a = v4_ld(s + j), b = v4_ld(s + j + 4);
        __asm__("" : "+x"(a));
        v4_st(d + j, a);
        v4_st(d + j + 4, b);
    }
    if (j + 4 < n) {
        v4f a = v4_ld(s + j);
        __asm__("" : "+x"(a));
        v4_st(d + j, a);
    }
    v4_st(d + n - 4, v4_ld(s + n - 4));
}
static inline void row_add(float *restrict d, const float *restrict s, long n) { /* d += s */
    long j = 0;
    for (; j + 4 <= n; j += 4) v4_st(d + j, v4_ld(d + j) + v4_ld(s + j));
    for (; j < n; j++) d[j] += s[j];
}
static inline void row_add_scalar(float *restrict d, const float *restrict s, float a, long n) { /* d = s + a */
    long j = 0;
    v4f av = {a, a, a, a};
    for (; j + 4 <= n; j += 4) v4_st(d + j, v4_ld(s + j) + av);
    for (; j < n; j++) d[j] = s[j] + a;
}
/* y = x > 0 ? x : 0 (NaN -> 0, as the comparison is false) */
static void relu_fwd(const float *restrict x, float *restrict y, long n) {
    long j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4) {
        v4f v = v4_ld(x + j);
        v4_st(y + j, (v4f)((v4i)v & (v > z)));
    }
    for (; j < n; j++) y[j] = x[j] > 0 ? x[j] : 0.0f;
}
/* dx += y > 0 ? dy : 0 */
static void relu_bwd(const float *restrict y, const float *restrict dy, float *restrict dx, long n) {
    long j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4) {
        v4f g = (v4f)((v4i)v4_ld(dy + j) & (v4_ld(y + j) > z));
        v4_st(dx + j, v4_ld(dx + j) + g);
    }
    for (; j < n; j++) dx[j] += y[j] > 0 ? dy[j] : 0.0f;
}
/* dx = 0 + (y > 0 ? dy : 0): relu_bwd into a zeroed dx, without reading dx */
static void relu_bwd_store(const float *restrict y, const float *restrict dy, float *restrict dx, long n) {
    long j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4) v4_st(dx + j, z + (v4f)((v4i)v4_ld(dy + j) & (v4_ld(y + j) > z)));
    for (; j < n; j++) dx[j] = 0.0f + (y[j] > 0 ? dy[j] : 0.0f);
}
/* sum in double with four independent accumulators (the adds no longer wait on each other) */
static double sum_f64(const float *x, long n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    long j = 0;
    for (; j + 4 <= n; j += 4) { a0 += x[j]; a1 += x[j + 1]; a2 += x[j + 2]; a3 += x[j + 3]; }
    for (; j < n; j++) a0 += x[j];
    return (a0 + a1) + (a2 + a3);
}

/* ------------------------------------------------------------------ conv helpers */

/* im2col of ns consecutive samples starting at x, NP = ns*P:
 * col[(c*K + ki)*K + kj][b*P + oy*OW + ox] = x[b][c][oy*s - pad + ki][ox*s - pad + kj] (0 outside) */
static void im2col(const Layer *L, int ns, const float *x, float *col) {
    const int K = L->k, OW = L->w, IW = L->iw, P = L->h * OW, NP = ns * P, s = L->stride;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + (long)((c * K + ki) * K + kj) * NP;
                const int x0 = kj - L->pad; /* ix = ox*s + x0 */
                /* valid ox: 0 <= ox*s + x0 < IW */
                int lo = x0 >= 0 ? 0 : (-x0 + s - 1) / s;
                int hi = IW - x0 <= 0 ? 0 : (IW - x0 + s - 1) / s;
                if (hi > OW) hi = OW;
                if (lo > hi) lo = hi;
                for (int b = 0; b < ns; b++) {
                    const float *xp = x + ((long)b * L->ic + c) * L->ih * IW;
                    float *r = row + (long)b * P;
                    for (int oy = 0; oy < L->h; oy++) {
                        int iy = oy * s - L->pad + ki;
                        float *ro = r + oy * OW;
                        if (iy < 0 || iy >= L->ih) { memset(ro, 0, sizeof(float) * OW); continue; }
                        const float *xr = xp + (long)iy * IW + x0;
                        for (int ox = 0; ox < lo; ox++) ro[ox] = 0.0f;
                        if (s == 1) row_copy(ro + lo, xr + lo, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++) ro[ox] = xr[ox * s];
                        for (int ox = hi; ox < OW; ox++) ro[ox] = 0.0f;
                    }
                }
            }
}

static void im2col_rows(const Layer *L, const float *src, int PH, int PW, float *col) {
    const int K = L->k, OW = L->w, P = L->h * OW;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + (long)((c * K + ki) * K + kj) * P;
                const float *sp = src + ((long)c * PH + ki) * PW + kj;
                for (int oy = 0; oy < L->h; oy++) row_copy(row + oy * OW, sp + (long)oy * PW, OW);
            }
}
/* im2col of ONE sample for stride 1: with pad > 0 the sample is first copied into a zero-bordered
 * buffer xpad (IC, IH+2pad, IW+2pad), so every column-matrix row is a plain copy of OW floats with no
 * bounds logic (perf: im2col was 19% of lenet5 PGD, mostly the per-row clipping of the padded conv1). */
static void im2col_s1(const Layer *L, const float *x, float *xpad, float *col) {
    const int pad = L->pad, PH = L->ih + 2 * pad, PW = L->iw + 2 * pad;
    if (pad == 0) { im2col_rows(L, x, L->ih, L->iw, col); return; }
    memset(xpad, 0, sizeof(float) * L->ic * PH * PW);
    for (int c = 0; c < L->ic; c++)
        for (int iy = 0; iy < L->ih; iy++)
            row_copy(xpad + ((long)c * PH + iy + pad) * PW + pad, x + ((long)c * L->ih + iy) * L->iw, L->iw);
    im2col_rows(L, xpad, PH, PW, col);
}
/* dx += col2im(dcol) for ONE sample, stride 1: the adjoint of im2col_s1 (full-row adds into the
 * zero-bordered buffer xpad, then its interior into dx; no per-row clipping) */
static void col2im_s1_add(const Layer *L, const float *col, float *xpad, float *dx, int assign) {
    const int K = L->k, pad = L->pad, PH = L->ih + 2 * pad, PW = L->iw + 2 * pad, OW = L->w, P = L->h * OW;
    float *dst = pad ? xpad : dx;
    if (pad) memset(xpad, 0, sizeof(float) * L->ic * PH * PW);
    else if (assign) memset(dx, 0, sizeof(float) * L->ic * L->ih * L->iw);
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = col + (long)((c * K + ki) * K + kj) * P;
                float *dp = dst + ((long)c * PH + ki) * PW + kj;
                for (int oy = 0; oy < L->h; oy++) row_add(dp + (long)oy * PW, row + oy * OW, OW);
            }
    if (!pad) return;
    for (int c = 0; c < L->ic; c++)
        for (int iy = 0; iy < L->ih; iy++) {
            float *d = dx + ((long)c * L->ih + iy) * L->iw;
            const float *sp = xpad + ((long)c * PH + iy + pad) * PW + pad;
            if (assign) row_add_scalar(d, sp, 0.0f, L->iw); /* = 0 + v, as adding into a zeroed dx */
            else row_add(d, sp, L->iw);
        }
}
/* dx += col2im(dcol) for ns samples: the adjoint of im2col */
static void col2im_add(const Layer *L, int ns, const float *col, float *dx) {
    const int K = L->k, OW = L->w, IW = L->iw, P = L->h * OW, NP = ns * P, s = L->stride;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = col + (long)((c * K + ki) * K + kj) * NP;
                const int x0 = kj - L->pad;
                int lo = x0 >= 0 ? 0 : (-x0 + s - 1) / s;
                int hi = IW - x0 <= 0 ? 0 : (IW - x0 + s - 1) / s;
                if (hi > OW) hi = OW;
                if (lo > hi) lo = hi;
                for (int b = 0; b < ns; b++) {
                    float *xp = dx + ((long)b * L->ic + c) * L->ih * IW;
                    const float *r = row + (long)b * P;
                    for (int oy = 0; oy < L->h; oy++) {
                        int iy = oy * s - L->pad + ki;
                        if (iy < 0 || iy >= L->ih) continue;
                        float *xr = xp + (long)iy * IW + x0;
                        const float *ro = r + oy * OW;
                        if (s == 1)
                            row_add(xr + lo, ro + lo, hi - lo);
                        else
                            for (int ox = lo; ox < hi; ox++) xr[ox * s] += ro[ox];
                    }
                }
            }
}

/* ------------------------------------------------------------------ forward */

static const float *node_act(const Work *w, int i) { return i < 0 ? w->x : w->act[i]; }
static float *node_grad(Work *w, int i) { return i < 0 ? w->dx : w->grad[i]; }

/* max over a k x k window; NaN wins (PyTorch propagates NaN); ties keep the first in row-major order */
#define POOL_TAKE(idx) do { float v_ = xp[idx]; int k_ = (v_ > bv) | (isnan(v_) & !isnan(bv)); \
                            bv = k_ ? v_ : bv; best = k_ ? (idx) : best; } while (0)

/* Layer i on samples [b0, b1) (every kind but batch-norm and training-mode dropout); t = thread. */
static void fwd_local(Model *m, Work *w, int i, long b0, long b1, int t) {
    Layer *L = &m->L[i];
    const long nb = b1 - b0;
    long on = out_n(L), inn = (long)L->ic * L->ih * L->iw;
    const float *x = node_act(w, L->in) + b0 * inn;
    float *y = w->act[i] + b0 * on;
    if (nb <= 0) return;
    switch (L->kind) {
    case L_NORM: {
        long hw = (long)L->ih * L->iw;
        for (long b = 0; b < nb; b++)
            for (int c = 0; c < L->c; c++) {
                const float *xp = x + (b * L->c + c) * hw;
                float *yp = y + (b * L->c + c) * hw, mu = L->mean[c], inv = 1.0f / L->std[c];
                long j = 0;
                const v4f mv = {mu, mu, mu, mu}, iv = {inv, inv, inv, inv};
                for (; j + 4 <= hw; j += 4) v4_st(yp + j, (v4_ld(xp + j) - mv) * iv);
                for (; j < hw; j++) yp[j] = (xp[j] - mu) * inv;
            }
        break;
    }
    case L_LINEAR:
        for (long b = 0; b < nb; b++) memcpy(y + b * L->c, L->b, sizeof(float) * L->c);
        gemm(0, 1, (int)nb, L->c, (int)inn, 1.0f, x, (int)inn, L->W, (int)inn, 1.0f, y, L->c);
        break;
    case L_CONV: {
        const int P = L->h * L->w, KC = L->ic * L->k * L->k, S = conv_chunk(L, w->cap);
        float *col = w->col + t * w->col_n, *tmp = w->tmp + t * w->tmp_n;
        for (long s = 0; s < nb; s += S) {
            int ns = (int)(nb - s < S ? nb - s : S), NP = ns * P;
            float *ys = y + s * on;
            if (w->colcache[i] && w->train == FWD_TRAIN) col = w->colcache[i] + (b0 + s) * KC * P;
            if (ns == 1 && L->stride == 1) im2col_s1(L, x + s * inn, tmp, col);
            else im2col(L, ns, x + s * inn, col);
            if (ns == 1) { /* one sample: the product is already NCHW */
                for (int c = 0; c < L->c; c++) {
                    float bias = L->bias ? L->b[c] : 0.0f, *yc = ys + (long)c * P;
                    const v4f bv = {bias, bias, bias, bias};
                    int p = 0;
                    for (; p + 4 <= P; p += 4) v4_st(yc + p, bv);
                    for (; p < P; p++) yc[p] = bias;
                }
                gemm(0, 0, L->c, P, KC, 1.0f, L->W, KC, col, P, 1.0f, ys, P);
                continue;
            }
            gemm(0, 0, L->c, NP, KC, 1.0f, L->W, KC, col, NP, 0.0f, tmp, NP);
            for (int b = 0; b < ns; b++)
                for (int c = 0; c < L->c; c++) {
                    const float *tp = tmp + (long)c * NP + (long)b * P;
                    float *yp = ys + ((long)b * L->c + c) * P, bias = L->bias ? L->b[c] : 0.0f;
                    row_add_scalar(yp, tp, bias, P);
                }
        }
        break;
    }
    case L_MAXPOOL:
    case L_AVGPOOL: {
        int32_t *am = w->argmax[i] ? w->argmax[i] + b0 * on : NULL;
        const int IW = L->iw, OW = L->w;
        float inv = 1.0f / (float)(L->k * L->k);
        for (long bc = 0; bc < nb * L->c; bc++) {
            const float *xp = x + bc * L->ih * IW;
            long ob = bc * L->h * OW;
            if (L->kind == L_MAXPOOL && L->k == 2 && L->stride == 2) {
                /* the common case as a tournament, (0 vs 1) and (2 vs 3) then the winners: the same
                   winner as the row-major scan below (first maximum; first NaN), with shorter chains */
                for (int oy = 0; oy < L->h; oy++) {
                    const float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
                    float *yo = y + ob + oy * OW;
                    int32_t *ao = am + ob + oy * OW, base = 2 * oy * IW;
                    int ox = 0;
                    for (; ox + 4 <= OW; ox += 4) { /* 4 outputs at once; masks are 0 / -1 */
                        const float *p0 = r0 + 2 * ox, *p1 = r1 + 2 * ox;
                        v4f v0 = {p0[0], p0[2], p0[4], p0[6]}, v1 = {p0[1], p0[3], p0[5], p0[7]};
                        v4f v2 = {p1[0], p1[2], p1[4], p1[6]}, v3 = {p1[1], p1[3], p1[5], p1[7]};
                        v4i t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0)), t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
                        v4f a = (v4f)(((v4i)v1 & t1) | ((v4i)v0 & ~t1)), c = (v4f)(((v4i)v3 & t3) | ((v4i)v2 & ~t3));
                        v4i i0 = {base + 2 * ox, base + 2 * ox + 2, base + 2 * ox + 4, base + 2 * ox + 6};
                        v4i ia = i0 - t1, ic = i0 + IW - t3;
                        v4i tc = (c > a) | ((c != c) & (a == a));
                        v4_st(yo + ox, (v4f)(((v4i)c & tc) | ((v4i)a & ~tc)));
                        v4i best = (ic & tc) | (ia & ~tc);
                        memcpy(ao + ox, &best, sizeof best);
                    }
                    for (; ox < OW; ox++) {
                        float v0 = r0[2 * ox], v1 = r0[2 * ox + 1], v2 = r1[2 * ox], v3 = r1[2 * ox + 1];
                        int t1 = (v1 > v0) | ((v1 != v1) & (v0 == v0)), t3 = (v3 > v2) | ((v3 != v3) & (v2 == v2));
                        float a = t1 ? v1 : v0, c = t3 ? v3 : v2;
                        int ia = base + 2 * ox + t1, ic = base + 2 * ox + IW + t3;
                        int tc = (c > a) | ((c != c) & (a == a));
                        yo[ox] = tc ? c : a;
                        ao[ox] = tc ? ic : ia;
                    }
                }
                continue;
            }
            for (int oy = 0; oy < L->h; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    int y0 = oy * L->stride, x0 = ox * L->stride;
                    if (L->kind == L_MAXPOOL) {
                        int best = y0 * IW + x0;
                        float bv = xp[best];
                        for (int ky = 0; ky < L->k; ky++)
                            for (int kx = 0; kx < L->k; kx++) POOL_TAKE((y0 + ky) * IW + x0 + kx);
                        y[ob + oy * OW + ox] = bv;
                        am[ob + oy * OW + ox] = best;
                    } else {
                        float s = 0;
                        for (int ky = 0; ky < L->k; ky++)
                            for (int kx = 0; kx < L->k; kx++) s += xp[(y0 + ky) * IW + x0 + kx];
                        y[ob + oy * OW + ox] = s * inv;
                    }
                }
        }
        break;
    }
    case L_GAP: {
        long hw = (long)L->ih * L->iw;
        for (long j = 0; j < nb * L->c; j++) {
            double s = 0;
            for (long q = 0; q < hw; q++) s += x[j * hw + q];
            y[j] = (float)(s / hw);
        }
        break;
    }
    case L_RELU:
        relu_fwd(x, y, nb * on);
        break;
    case L_TANH:
        for (long j = 0; j < nb * on; j++) y[j] = tanhf(x[j]);
        break;
    case L_DROPOUT: /* inference, or p = 0 */
        memcpy(y, x, sizeof(float) * nb * on);
        break;
    case L_FLATTEN:
        break;
    case L_ADD: {
        const float *x2 = node_act(w, L->in2) + b0 * on;
        for (long j = 0; j < nb * on; j++) y[j] = x[j] + x2[j];
        break;
    }
    default: CHECK(0);
    }
}

/* batch-norm forward on channels [c0, c1) */
static void bn_forward(Model *m, Work *w, int i, int mode, int c0, int c1) {
    Layer *L = &m->L[i];
    const int n = w->n;
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    long hw = (long)L->h * L->w, M = n * hw;
    const float eps = 1e-5f, mom = 0.1f;
    for (int c = c0; c < c1; c++) {
        float mean, invstd;
        if (mode == FWD_TRAIN) {
            double s = 0, ss = 0;
            for (int b = 0; b < n; b++) {
                const float *xp = x + ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) s += xp[q];
            }
            double mu = s / M;
            for (int b = 0; b < n; b++) {
                const float *xp = x + ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) { double d = xp[q] - mu; ss += d * d; }
            }
            double var = ss / M;
            mean = (float)mu;
            invstd = (float)(1.0 / sqrt(var + eps));
            if (!L->frozen) { /* PyTorch: running_var uses the unbiased variance */
                L->run_mean[c] = (1 - mom) * L->run_mean[c] + mom * (float)mu;
                L->run_var[c] = (1 - mom) * L->run_var[c] + mom * (float)(M > 1 ? ss / (M - 1) : var);
            }
        } else {
            mean = L->run_mean[c];
            invstd = 1.0f / sqrtf(L->run_var[c] + eps);
        }
        w->bn_mean[i][c] = mean;
        w->bn_invstd[i][c] = invstd;
        const float g = L->gamma[c], be = L->beta[c];
        float *xh = w->bn_xhat[i];
        for (int b = 0; b < n; b++) {
            long o = ((long)b * L->c + c) * hw;
            for (long q = 0; q < hw; q++) {
                float v = (x[o + q] - mean) * invstd;
                xh[o + q] = v;
                y[o + q] = g * v + be;
            }
        }
    }
}

static void dropout_train_forward(Model *m, Work *w, int i) {
    Layer *L = &m->L[i];
    long N = w->n * out_n(L);
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    Rng r;
    rng_seed(&r, w->drop_seed, RNG_DROPOUT, w->drop_count * MAX_LAYERS + (uint64_t)i);
    float keep = 1.0f - L->p, sc = 1.0f / keep;
    for (long j = 0; j < N; j++) {
        w->mask[i][j] = rng_uniform(&r) < keep ? sc : 0.0f;
        y[j] = x[j] * w->mask[i][j];
    }
}

/* layers that need the whole batch at once */
static int fwd_global(const Layer *L, int mode) {
    return L->kind == L_BN || (L->kind == L_DROPOUT && mode == FWD_TRAIN && L->p > 0);
}

typedef struct { Model *m; Work *w; int i0, i1, mode, flags; const float *dout; const unsigned char *asg; } Task;

/* Layers computed sample by sample (no product over the batch): a run of them is carried through in
 * groups of FWD_GROUP samples, so a group's activations stay in the L2 cache from one layer to the next
 * instead of each layer streaming the whole slice through memory. Linear layers (one product over the
 * slice) and grouped convolutions (conv_chunk > 1) keep the whole slice: every value is computed exactly
 * as before. */
#define FWD_GROUP 8
static int per_sample(const Layer *L, int cap) {
    return L->kind != L_LINEAR && (L->kind != L_CONV || conv_chunk(L, cap) == 1);
}
static void task_fwd_local(void *arg, int t, int T) {
    Task *k = arg;
    long b0, b1;
    split(k->w->n, t, T, &b0, &b1);
    for (int i = k->i0; i < k->i1;) {
        int j = i;
        while (j < k->i1 && per_sample(&k->m->L[j], k->w->cap)) j++;
        if (j - i < 2) { fwd_local(k->m, k->w, i, b0, b1, t); i++; continue; }
        for (long g = b0; g < b1; g += FWD_GROUP)
            for (int l = i; l < j; l++) fwd_local(k->m, k->w, l, g, g + FWD_GROUP < b1 ? g + FWD_GROUP : b1, t);
        i = j;
    }
}
static void task_bn_fwd(void *arg, int t, int T) {
    Task *k = arg;
    long c0, c1;
    split(k->m->L[k->i0].c, t, T, &c0, &c1);
    bn_forward(k->m, k->w, k->i0, k->mode, (int)c0, (int)c1);
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

float *model_forward(Model *m, Work *w, const float *x, int n, int mode) {
    CHECK(n > 0 && n <= w->cap);
    w->n = n;
    w->train = mode;
    if (x != w->x) memcpy(w->x, x, sizeof(float) * (size_t)n * model_in_dim(m));
    int bt = blas_single_begin(w);
    for (int i = 0; i < m->nl;) {
        Task k = {m, w, i, i + 1, mode, 0, NULL, NULL};
        if (fwd_global(&m->L[i], mode)) {
            if (m->L[i].kind == L_BN) run_par(w, task_bn_fwd, &k);
            else dropout_train_forward(m, w, i);
            i++;
            continue;
        }
        while (k.i1 < m->nl && !fwd_global(&m->L[k.i1], mode)) k.i1++;
        run_par(w, task_fwd_local, &k);
        i = k.i1;
    }
    blas_single_end(bt);
    return w->act[m->out];
}

/* ------------------------------------------------------------------ backward */

void model_rebuild_feedback(Model *m) {
    if (m->fb_rebuild) m->fb_rebuild(m);
}

int model_feedback_changes(const Model *m) {
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].fb_refresh) return 1;
    return 0;
}

void model_refresh_feedback(Model *m) {
    m->fb_count++;
    model_rebuild_feedback(m);
}

enum { ASG_IN = 1, ASG_ZERO = 2 };
/* layers that can store (rather than add) their input gradient themselves; the others zero their slice */
static int assign_native(const Layer *L) {
    return L->kind == L_NORM || L->kind == L_LINEAR || L->kind == L_CONV || L->kind == L_MAXPOOL || L->kind == L_RELU;
}
/* 2x2 stride-2 max-pool whose windows cover its input exactly */
static int pool2_tiles(const Layer *L) {
    return L->k == 2 && L->stride == 2 && L->ih == 2 * L->h && L->iw == 2 * L->w;
}

static int need_dx_of(const Model *m, const Layer *L, int flags) {
    return L->in < 0 ? (flags & BW_INPUT) != 0 : (m->need_up[L->in] && (flags & BW_PARAMS)) || (flags & BW_INPUT);
}

/* Layer i on samples [b0, b1) (every kind but batch-norm). Weight gradients of this thread's samples
 * go to m->grads (t = 0) or to the thread's partial block; bstart = the thread's first sample (a conv
 * layer may be called group by group: its weight gradient starts at bstart and accumulates after). */
static void bwd_local(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1, long bstart,
                      int t) {
    Layer *L = &m->L[i];
    const long nb = b1 - b0;
    long on = out_n(L), inn = (long)L->ic * L->ih * L->iw;
    const float *x = node_act(w, L->in) + b0 * inn, *dy = w->grad[i] + b0 * on;
    const int need_dx = need_dx_of(m, L, flags);
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    float *dx = node_grad(w, L->in) + b0 * inn;
    if (assign && need_dx && !assign_native(L)) { /* first writer without a storing form: zero its slice */
        memset(dx, 0, sizeof(float) * nb * inn);
        assign = 0;
    }
    switch (L->kind) {
    case L_NORM:
        if (need_dx) {
            long hw = (long)L->ih * L->iw;
            for (long b = 0; b < nb; b++)
                for (int c = 0; c < L->c; c++) {
                    long o = (b * L->c + c) * hw;
                    float inv = 1.0f / L->std[c];
                    const v4f iv = {inv, inv, inv, inv};
                    long j = 0;
                    const v4f d0 = {0, 0, 0, 0};
                    if (assign) {
                        for (; j + 4 <= hw; j += 4) v4_st(dx + o + j, d0 + v4_ld(dy + o + j) * iv);
                        for (; j < hw; j++) dx[o + j] = 0.0f + dy[o + j] * inv;
                        continue;
                    }
                    for (; j + 4 <= hw; j += 4) v4_st(dx + o + j, v4_ld(dx + o + j) + v4_ld(dy + o + j) * iv);
                    for (; j < hw; j++) dx[o + j] += dy[o + j] * inv;
                }
        }
        break;
    case L_LINEAR:
    case L_CONV: {
        const int direct = !(flags & BW_TRUE) && L->fb_direct;
        const float *B = (flags & BW_TRUE) ? L->W : L->B;
        long goff = t == 0 ? 0 : (long)(t - 1) * m->n_params;
        float *dW = t == 0 ? L->dW : w->gpart + goff + (L->dW - m->grads);
        float *db = !L->bias ? NULL : t == 0 ? L->db : w->gpart + goff + (L->db - m->grads);
        if (want_params && nb == 0 && b0 == bstart) {
            memset(dW, 0, sizeof(float) * layer_w_n(L));
            if (db) memset(db, 0, sizeof(float) * L->c);
        }
        if (nb == 0) break;
        if (L->kind == L_LINEAR) {
            if (want_params) {
                gemm(1, 0, L->c, (int)inn, (int)nb, 1.0f, dy, L->c, x, (int)inn, 0.0f, dW, (int)inn);
                for (int c = 0; c < L->c; c++) {
                    double s = 0;
                    for (long b = 0; b < nb; b++) s += dy[b * L->c + c];
                    db[c] = (float)s;
                }
            }
            if (need_dx && !direct) gemm(0, 0, (int)nb, (int)inn, L->c, 1.0f, dy, L->c, B, (int)inn, assign ? 0.0f : 1.0f, dx, (int)inn);
        } else {
            const int P = L->h * L->w, KC = L->ic * L->k * L->k, S = conv_chunk(L, w->cap);
            float *col = w->col + t * w->col_n, *tmp = w->tmp + t * w->tmp_n;
            for (long s = 0; s < nb; s += S) {
                int ns = (int)(nb - s < S ? nb - s : S), NP = ns * P;
                const float *g = dy + s * on; /* (OC, NP) layout needed: one sample already is */
                if (ns > 1) {
                    for (int b = 0; b < ns; b++)
                        for (int c = 0; c < L->c; c++) row_copy(tmp + (long)c * NP + (long)b * P, g + ((long)b * L->c + c) * P, P);
                    g = tmp;
                }
                if (want_params) {
                    const float *cols = col;
                    if (w->colcache[i] && w->train == FWD_TRAIN) cols = w->colcache[i] + (b0 + s) * KC * P;
                    else if (ns == 1 && L->stride == 1) im2col_s1(L, x + s * inn, tmp, col);
                    else im2col(L, ns, x + s * inn, col);
                    const int first = b0 + s == bstart;
                    if (first || ns > 1 || !w->dw_split || (double)L->c * KC * NP > 1e6) gemm(0, 1, L->c, KC, NP, 1.0f, g, NP, cols, NP, first ? 0.0f : 1.0f, dW, KC);
                    else { /* dW += this sample's product, formed with beta 0 in tmp (free when ns == 1): with
                              beta 1 OpenBLAS 0.3.21 sends e.g. lenet5 conv2's 16x150x100 product down its
                              packing path (perf: sgemm_incopy 6% of lenet5 training); beta 0 takes the
                              small-matrix kernel (M*N*K <= 1e6, where it applies). Only on the cores that have those
                              kernels (w->dw_split), where the values are bitwise unchanged; elsewhere (e.g.
                              OpenBLAS's Haswell kernels) it would only add work and round differently. */
                        gemm(0, 1, L->c, KC, NP, 1.0f, g, NP, cols, NP, 0.0f, tmp, KC);
                        row_add(dW, tmp, (long)L->c * KC);
                    }
                    if (db)
                        for (int c = 0; c < L->c; c++) {
                            db[c] = (first ? 0.0f : db[c]) + (float)sum_f64(g + (long)c * NP, NP);
                        }
                }
                if (need_dx && !direct) {
                    gemm(1, 0, KC, NP, L->c, 1.0f, B, KC, g, NP, 0.0f, col, NP);
                    if (ns == 1 && L->stride == 1) col2im_s1_add(L, col, tmp, dx + s * inn, assign);
                    else {
                        if (assign) memset(dx + s * inn, 0, sizeof(float) * ns * inn);
                        col2im_add(L, ns, col, dx + s * inn);
                    }
                }
            }
        }
        /* DFA: the input receives D e, D = B shaped (D_in, K), e = the output error */
        if (need_dx && direct) {
            int K = model_out_dim(m);
            gemm(0, 1, (int)nb, (int)inn, K, 1.0f, dout + b0 * K, K, L->B, K, assign ? 0.0f : 1.0f, dx, (int)inn);
        }
        break;
    }
    case L_MAXPOOL:
        if (need_dx) {
            const int32_t *am = w->argmax[i] + b0 * on;
            long ihw = (long)L->ih * L->iw, ohw = (long)L->h * L->w;
            if (assign && !pool2_tiles(L)) { memset(dx, 0, sizeof(float) * nb * inn); assign = 0; }
            if (assign) { /* 2x2 windows tile the input: each window stores 0 + dy at its winner, 0 elsewhere */
                const int IW = L->iw, OW = L->w;
                for (long bc = 0; bc < nb * L->c; bc++) {
                    float *xp = dx + bc * ihw;
                    const float *gp = dy + bc * ohw;
                    const int32_t *ap = am + bc * ohw;
                    for (int oy = 0; oy < L->h; oy++) {
                        float *r0 = xp + 2 * oy * IW, *r1 = r0 + IW;
                        const int base = 2 * oy * IW;
                        for (int ox = 0; ox < OW; ox++) {
                            const int k = ap[oy * OW + ox] - base - 2 * ox; /* 0, 1, IW, IW + 1 */
                            const float g = 0.0f + gp[oy * OW + ox];
                            r0[2 * ox] = k == 0 ? g : 0.0f;
                            r0[2 * ox + 1] = k == 1 ? g : 0.0f;
                            r1[2 * ox] = k == IW ? g : 0.0f;
                            r1[2 * ox + 1] = k == IW + 1 ? g : 0.0f;
                        }
                    }
                }
                break;
            }
            for (long bc = 0; bc < nb * L->c; bc++)
                for (long j = 0; j < ohw; j++) dx[bc * ihw + am[bc * ohw + j]] += dy[bc * ohw + j];
        }
        break;
    case L_AVGPOOL:
        if (need_dx) {
            float inv = 1.0f / (float)(L->k * L->k);
            for (long bc = 0; bc < nb * L->c; bc++) {
                float *xp = dx + bc * L->ih * L->iw;
                const float *yp = dy + bc * L->h * L->w;
                for (int oy = 0; oy < L->h; oy++)
                    for (int ox = 0; ox < L->w; ox++) {
                        float g = yp[oy * L->w + ox] * inv;
                        for (int ky = 0; ky < L->k; ky++)
                            for (int kx = 0; kx < L->k; kx++)
                                xp[(oy * L->stride + ky) * L->iw + ox * L->stride + kx] += g;
                    }
            }
        }
        break;
    case L_GAP:
        if (need_dx) {
            long hw = (long)L->ih * L->iw;
            for (long j = 0; j < nb * L->c; j++) {
                float g = dy[j] / (float)hw;
                for (long q = 0; q < hw; q++) dx[j * hw + q] += g;
            }
        }
        break;
    case L_RELU:
        if (need_dx) {
            const float *y = w->act[i] + b0 * on;
            if (assign) relu_bwd_store(y, dy, dx, nb * on);
            else relu_bwd(y, dy, dx, nb * on);
        }
        break;
    case L_TANH:
        if (need_dx) {
            const float *y = w->act[i] + b0 * on;
            for (long j = 0; j < nb * on; j++) dx[j] += dy[j] * (1.0f - y[j] * y[j]);
        }
        break;
    case L_DROPOUT:
        if (need_dx) {
            if (w->train && L->p > 0) {
                const float *mk = w->mask[i] + b0 * on;
                for (long j = 0; j < nb * on; j++) dx[j] += dy[j] * mk[j];
            } else {
                row_add(dx, dy, nb * on);
            }
        }
        break;
    case L_FLATTEN: /* aliases its input: the gradient is already there */
        break;
    case L_ADD:
        if (need_dx) row_add(dx, dy, nb * on);
        if (L->in2 >= 0 ? (m->need_up[L->in2] && (flags & BW_PARAMS)) || (flags & BW_INPUT) : (flags & BW_INPUT)) {
            row_add(node_grad(w, L->in2) + b0 * on, dy, nb * on);
        }
        break;
    default: CHECK(0);
    }
}

/* batch-norm backward on channels [c0, c1) */
static void bn_backward(Model *m, Work *w, int i, int flags, int c0, int c1) {
    Layer *L = &m->L[i];
    const int n = w->n;
    const float *dy = w->grad[i], *xh = w->bn_xhat[i];
    float *dx = node_grad(w, L->in);
    const int need_dx = need_dx_of(m, L, flags);
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    long hw = (long)L->h * L->w, M = n * hw;
    for (int c = c0; c < c1; c++) {
        double sdy = 0, sdyx = 0;
        for (int b = 0; b < n; b++) {
            long o = ((long)b * L->c + c) * hw;
            for (long q = 0; q < hw; q++) { sdy += dy[o + q]; sdyx += (double)dy[o + q] * xh[o + q]; }
        }
        if (want_params) { L->dgamma[c] = (float)sdyx; L->dbeta[c] = (float)sdy; }
        if (!need_dx) continue;
        float g = L->gamma[c] * w->bn_invstd[i][c];
        if (w->train) { /* batch statistics: dx = g/M (M dy - sum dy - xhat sum dy xhat) */
            float a = (float)(sdy / M), bq = (float)(sdyx / M);
            for (int b = 0; b < n; b++) {
                long o = ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) dx[o + q] += g * (dy[o + q] - a - xh[o + q] * bq);
            }
        } else { /* running statistics are constants */
            for (int b = 0; b < n; b++) {
                long o = ((long)b * L->c + c) * hw;
                for (long q = 0; q < hw; q++) dx[o + q] += g * dy[o + q];
            }
        }
    }
}

static void task_bwd_init(void *arg, int t, int T) {
    Task *k = arg;
    Model *m = k->m;
    Work *w = k->w;
    long b0, b1;
    split(w->n, t, T, &b0, &b1);
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind != L_FLATTEN && (k->asg[i] & ASG_ZERO)) {
            long on = out_n(&m->L[i]);
            memset(w->grad[i] + b0 * on, 0, sizeof(float) * (b1 - b0) * on);
        }
    long D = model_in_dim(m), K = out_n(&m->L[m->out]);
    if ((k->flags & BW_INPUT) && (k->asg[MAX_LAYERS] & ASG_ZERO)) memset(w->dx + b0 * D, 0, sizeof(float) * (b1 - b0) * D);
    memcpy(w->grad[m->out] + b0 * K, k->dout + b0 * K, sizeof(float) * (b1 - b0) * K);
}
/* layers i1-1 down to i0; runs of per-sample layers group by group, as in task_fwd_local (a conv with a
 * direct rule is not grouped: its projection is one product over the slice) */
static int per_sample_bwd(const Layer *L, int cap) {
    return per_sample(L, cap) && !(L->kind == L_CONV && L->fb_direct);
}
static void task_bwd_local(void *arg, int t, int T) {
    Task *k = arg;
    long b0, b1;
    split(k->w->n, t, T, &b0, &b1);
    for (int i = k->i1 - 1; i >= k->i0;) {
        int j = i;
        while (j >= k->i0 && per_sample_bwd(&k->m->L[j], k->w->cap)) j--;
        if (i - j < 2) {
            bwd_local(k->m, k->w, i, k->dout, k->flags, k->asg[i] & ASG_IN, b0, b1, b0, t);
            i--;
            continue;
        }
        long g = b0;
        do /* at least once: a thread without samples still zeroes its weight-gradient partials */
            for (int l = i; l > j; l--)
                bwd_local(k->m, k->w, l, k->dout, k->flags, k->asg[l] & ASG_IN, g, g + FWD_GROUP < b1 ? g + FWD_GROUP : b1, b0, t);
        while ((g += FWD_GROUP) < b1);
        i = j;
    }
}
static void task_bn_bwd(void *arg, int t, int T) {
    Task *k = arg;
    long c0, c1;
    split(k->m->L[k->i0].c, t, T, &c0, &c1);
    bn_backward(k->m, k->w, k->i0, k->flags, (int)c0, (int)c1);
}
/* m->grads += the other threads' partial weight gradients, each layer's range split across threads */
static void task_reduce(void *arg, int t, int T) {
    Task *k = arg;
    Model *m = k->m;
    Work *w = k->w;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if ((L->kind != L_LINEAR && L->kind != L_CONV) || L->frozen) continue;
        long off = L->dW - m->grads, len = layer_w_n(L) + (L->bias ? L->c : 0), j0, j1; /* W then b */
        split(len, t, T, &j0, &j1);
        for (int u = 1; u < w->threads; u++) {
            const float *src = w->gpart + (long)(u - 1) * m->n_params + off;
            float *dst = m->grads + off;
            for (long j = j0; j < j1; j++) dst[j] += src[j];
        }
    }
}

/* The gradient buffer layer i's input gradient goes to (flatten aliases its input's); MAX_LAYERS = w->dx */
static int grad_buf(const Model *m, int i) {
    while (i >= 0 && m->L[i].kind == L_FLATTEN) i = m->L[i].in;
    return i < 0 ? MAX_LAYERS : i;
}
/* asg[i] & ASG_IN: layer i is the first writer of its input's gradient buffer in this pass and starts it
 * (bwd_local); asg[b] & ASG_ZERO: buffer b (a node, or MAX_LAYERS = w->dx) is zeroed up front because its
 * first writer cannot start it (batch-norm, residual add) or nothing writes it (kept zero, as before). */
static void bwd_plan(const Model *m, int flags, unsigned char *asg) {
    unsigned char seen[MAX_LAYERS + 1];
    memset(seen, 0, sizeof seen);
    for (int b = 0; b <= MAX_LAYERS; b++) asg[b] = 0;
    for (int i = m->nl - 1; i >= 0; i--) {
        const Layer *L = &m->L[i];
        if (L->kind == L_FLATTEN) continue;
        int bufs[2] = {-1, -1};
        if (need_dx_of(m, L, flags)) bufs[0] = grad_buf(m, L->in);
        if (L->kind == L_ADD && (L->in2 >= 0 ? (m->need_up[L->in2] && (flags & BW_PARAMS)) || (flags & BW_INPUT) : (flags & BW_INPUT)))
            bufs[1] = grad_buf(m, L->in2);
        for (int u = 0; u < 2; u++) {
            int b = bufs[u];
            if (b < 0 || seen[b]) continue;
            seen[b] = 1;
            if (u == 0 && L->kind != L_BN && L->kind != L_ADD) asg[i] |= ASG_IN;
            else asg[b] |= ASG_ZERO;
        }
    }
    for (int b = 0; b <= MAX_LAYERS; b++)
        if (!seen[b]) asg[b] |= ASG_ZERO;
}

void model_backward(Model *m, Work *w, const float *dout, int flags) {
    int bt = blas_single_begin(w);
    unsigned char asg[MAX_LAYERS + 1];
    bwd_plan(m, flags, asg);
    Task k = {m, w, 0, 0, w->train, flags, dout, asg};
    run_par(w, task_bwd_init, &k);
    for (int i = m->nl - 1; i >= 0;) {
        k.i1 = i + 1;
        if (m->L[i].kind == L_BN) {
            k.i0 = i;
            run_par(w, task_bn_bwd, &k);
            i--;
            continue;
        }
        k.i0 = i;
        while (k.i0 > 0 && m->L[k.i0 - 1].kind != L_BN) k.i0--;
        run_par(w, task_bwd_local, &k);
        i = k.i0 - 1;
    }
    if ((flags & BW_PARAMS) && w->threads > 1) run_par(w, task_reduce, &k);
    blas_single_end(bt);
}

int model_find_nonfinite(const Model *m, const Work *w) {
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        long n = out_n(L) * (w ? w->n : 0);
        for (long j = 0; w && j < n; j++)
            if (!isfinite(w->act[i][j])) return i;
        if (L->W)
            for (long j = 0; j < layer_w_n(L); j++)
                if (!isfinite(L->W[j])) return i;
    }
    return -1;
}
