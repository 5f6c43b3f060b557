/* batchnorm.c -- L_BN: batch-norm over channels (1-d when H = W = 1), PyTorch semantics: in training the
 * batch statistics (biased variance) normalise and the running statistics move by momentum 0.1
 * (unbiased variance), frozen layers keep theirs; in inference the running statistics are constants.
 * eps 1e-5. Training needs the whole batch (statistics; a weight gradient): it runs between the
 * per-sample runs (pass.c), each thread on its own samples (the ones it carried through the layers
 * before), with per-thread partial sums met at a barrier (pool_sync); inference is per sample.
 * (Split by channel block instead, ResNet-20's 16-channel stage was one block of 16 lanes with AVX-512:
 * one thread did all of its batch-norm while the other waited.)
 * Works on NCHW and channel-blocked tensors alike (a plain tensor is blocks of one channel); padding
 * lanes stay zero (gamma, beta and 1/std are 0 there). x-hat is recomputed from the input in the
 * backward pass (the same float operations as the forward, so the same values) rather than stored.
 * With relu_out (fuse.c) it writes ReLU(y) and masks its output gradient by y > 0 itself.
 * Its scratch (w->aux[i]): the mean and 1/std used by the last training forward, (cp) each; w->tmp holds
 * each thread's partial sums during a whole-batch op.
 *
 * The loops over a channel block's samples (blk_*) are written twice: for NCHW (V = 1) as scalar loops,
 * for blocks of 8 or 16 lanes with GCC vector types, the double sums in registers (GCC's own
 * vectorisation of the scalar form kept each lane's sum in memory: a load and a store per add). Measured:
 * no faster on one thread (the loops stream whole-batch activations: memory-bound), batch-norm's share of
 * a ResNet-20 training profile 20% -> 18%. Both forms do the same IEEE operations in the same order per
 * lane (one sum per lane, sample by sample; no FMA: -std=c11 keeps contraction off), so every form and
 * level gives the same bits; test_conv_paths checks them against each other. The ops are compiled twice,
 * for the x86-64 baseline and for AVX2 (kernels_level() >= 1). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"
#include "harness/threads.h"

#define BN_MEAN(w, i) ((w)->aux[i])
#define BN_INVSTD(w, L, i) ((w)->aux[i] + (L)->cp)
#define BN_EPS 1e-5f
#define VMAX 16

/* aux: the statistics; tmp (per thread): 2 cp doubles of partial sums, + 2 floats to align them */
static void bn_work_need(const Layer *L, int cap, WorkNeed *n) {
    n->aux = 2L * L->cp;
    n->tmp = 4L * L->cp + 2;
}

/* dy through the fused ReLU (y > 0), and dx stored or added */
static inline float relu_gate(float dy, float y, int relu) {
    /* y is a ReLU output (+0 or > 0, never NaN): y > 0 exactly when its bits but the sign are not all 0,
       an integer test (a float compare, which may trap, is not needed) */
    uint32_t yb, db;
    memcpy(&yb, &y, 4);
    memcpy(&db, &dy, 4);
    db &= -(uint32_t)((yb & 0x7fffffffu) != 0);
    float z;
    memcpy(&z, &db, 4);
    return relu ? z : dy;
}
static inline float put(float old, float r, int assign) { return (assign ? 0.0f : old) + r; }

/* lanes per block: the layout's block, 1 for NCHW */
static inline int lanes(const Layer *L) { return L->blk ? L->blk : 1; }

/* Thread t's partial sums in a whole-batch op, 2 cp doubles (w->tmp is per thread, bn_work_need) */
static double *bn_part(Work *w, int t) {
    return (double *)(((uintptr_t)(w->tmp + (long)t * w->tmp_n) + 7) & ~(uintptr_t)7);
}
/* sum over the threads' partials, in thread order (one thread: its own sum, as it was) */
static inline double bn_total(const double *const *part, int T, long j) {
    double s = part[0][j];
    for (int u = 1; u < T; u++) s += part[u][j];
    return s;
}

/* 1 / std from the running variance, channel c (0 on a padding lane) */
static inline float run_inv(const Layer *L, int c) { return c < L->c ? 1.0f / sqrtf(L->run_var[c] + BN_EPS) : 0; }

static int g_bn_scalar; /* tests: the scalar loops for blocks too (bn_scalar_set) */
void bn_scalar_set(int on) { g_bn_scalar = on; }

/* ---- one channel block over samples [b0, b1): x + b * on + off is sample b's block, hw pixels of V lanes ----
 * Scalar forms (any V), then vector forms (V = 8 or 16: NV = V / 8 vectors of 8 floats). */
#define AI static inline __attribute__((always_inline))
#define BLK_FOR \
    for (long b = b0; b < b1; b++) \
        for (long q = 0, o_ = b * on + off; q < hw; q++) \
            for (int v = 0; v < V; v++)
#define J (o_ + q * V + v)

AI void blk_sum_s(const float *x, long b0, long b1, long on, long off, long hw, const int V, double *s) {
    double a[VMAX] = {0};
    BLK_FOR a[v] += x[J];
    for (int v = 0; v < V; v++) s[v] = a[v];
}
AI void blk_ssq_s(const float *x, long b0, long b1, long on, long off, long hw, const int V, const double *mu,
                  double *ss) {
    double a[VMAX] = {0};
    BLK_FOR { double d = x[J] - mu[v]; a[v] += d * d; }
    for (int v = 0; v < V; v++) ss[v] = a[v];
}
/* y = g ((x - mean) inv) + be, ReLU'd when relu */
AI void blk_affine_s(const float *x, float *y, long b0, long b1, long on, long off, long hw, const int V,
                     const float *mean, const float *inv, const float *g, const float *be, const int relu) {
    BLK_FOR {
        float r = g[v] * ((x[J] - mean[v]) * inv[v]) + be[v];
        y[J] = relu ? (r > 0 ? r : 0.0f) : r;
    }
}
/* sdy = sum of d, sdyx = sum of d x-hat (d: dy through the ReLU) */
AI void blk_bsum_s(const float *dy, const float *y, const float *x, long b0, long b1, long on, long off, long hw,
                   const int V, const float *mean, const float *inv, const int relu, double *sdy, double *sdyx) {
    double a[VMAX] = {0}, c[VMAX] = {0};
    BLK_FOR {
        float d = relu_gate(dy[J], y[J], relu), xh = (x[J] - mean[v]) * inv[v];
        a[v] += d;
        c[v] += (double)d * xh;
    }
    for (int v = 0; v < V; v++) { sdy[v] = a[v]; sdyx[v] = c[v]; }
}
/* dx (+)= g (d - a - x-hat bq) with batch statistics (train), g d with running ones */
AI void blk_dx_s(const float *dy, const float *y, const float *x, float *dx, long b0, long b1, long on, long off,
                 long hw, const int V, const float *mean, const float *inv, const float *g, const float *a,
                 const float *bq, const int relu, const int train, const int assign) {
    BLK_FOR {
        float d = relu_gate(dy[J], y[J], relu);
        float r = train ? g[v] * (d - a[v] - ((x[J] - mean[v]) * inv[v]) * bq[v]) : g[v] * d;
        dx[J] = put(dx[J], r, assign);
    }
}
#undef J
#undef BLK_FOR

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4), may_alias));
#define LD(p) ((v8f)(*(const v8fu *)(p)))
#define ST(p, v) (*(v8fu *)(p) = (v))
#define LO(u) __builtin_convertvector(__builtin_shufflevector((u), (u), 0, 1, 2, 3), v4d)
#define HI(u) __builtin_convertvector(__builtin_shufflevector((u), (u), 4, 5, 6, 7), v4d)
#define SPLAT8(a) ((v8f){(a), (a), (a), (a), (a), (a), (a), (a)})
/* lanes [8h, 8h + 8) of a per-lane array, as a vector */
#define LV(arr, h) LD((arr) + 8 * (h))
/* every pixel of the block in samples [b0, b1), o_ its first lane (the loops over the block's vectors,
   h = 0 and for 16 lanes h = 1, are inside or around it) */
#define FOR_SAMPLES \
    for (long b = b0; b < b1; b++) \
        for (long q = 0, o_ = b * on + off; q < hw; q++, o_ += V)
/* ReLU's gate on 8 lanes: dy where y's bits but the sign are not all zero, else +0 */
#define GATE(dyv, yv) ((v8f)((v8i)(dyv) & (((v8i)(yv) & 0x7fffffff) != 0)))

/* a vector of 4 sums into a per-lane array (a macro: a function taking a 32-byte vector draws GCC's ABI note) */
#define store4(d, a) do { const v4d t_ = (a); memcpy((d), &t_, sizeof t_); } while (0)

AI void blk_sum_v(const float *x, long b0, long b1, long on, long off, long hw, const int V, double *s) {
    v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    FOR_SAMPLES {
        v8f u = LD(x + o_);
        a0 += LO(u);
        a1 += HI(u);
        if (V == 16) {
            v8f u2 = LD(x + o_ + 8);
            a2 += LO(u2);
            a3 += HI(u2);
        }
    }
    store4(s, a0); store4(s + 4, a1);
    if (V == 16) { store4(s + 8, a2); store4(s + 12, a3); }
}
AI void blk_ssq_v(const float *x, long b0, long b1, long on, long off, long hw, const int V, const double *mu,
                  double *ss) {
    v4d m[4], a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    memcpy(m, mu, sizeof(double) * V);
    FOR_SAMPLES {
        v8f u = LD(x + o_);
        v4d d0 = LO(u) - m[0], d1 = HI(u) - m[1];
        a0 += d0 * d0;
        a1 += d1 * d1;
        if (V == 16) {
            v8f u2 = LD(x + o_ + 8);
            v4d d2 = LO(u2) - m[2], d3 = HI(u2) - m[3];
            a2 += d2 * d2;
            a3 += d3 * d3;
        }
    }
    store4(ss, a0); store4(ss + 4, a1);
    if (V == 16) { store4(ss + 8, a2); store4(ss + 12, a3); }
}
AI void blk_affine_v(const float *x, float *y, long b0, long b1, long on, long off, long hw, const int V,
                     const float *mean, const float *inv, const float *g, const float *be, const int relu) {
    for (int h = 0; h < V / 8; h++) {
        const v8f mv = LV(mean, h), iv = LV(inv, h), gv = LV(g, h), bv = LV(be, h);
        FOR_SAMPLES {
            v8f r = gv * ((LD(x + o_ + 8 * h) - mv) * iv) + bv;
            if (relu) r = (v8f)((v8i)r & (r > 0)); /* NaN and -0 become +0, as r > 0 ? r : 0 */
            ST(y + o_ + 8 * h, r);
        }
    }
}
AI void blk_bsum_v(const float *dy, const float *y, const float *x, long b0, long b1, long on, long off, long hw,
                   const int V, const float *mean, const float *inv, const int relu, double *sdy, double *sdyx) {
    v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
    const v8f m0 = LV(mean, 0), i0 = LV(inv, 0);
    v8f m1 = m0, i1 = i0;
    if (V == 16) m1 = LV(mean, 1), i1 = LV(inv, 1);
    FOR_SAMPLES {
        v8f d = relu ? GATE(LD(dy + o_), LD(y + o_)) : LD(dy + o_), xh = (LD(x + o_) - m0) * i0;
        a0 += LO(d);
        a1 += HI(d);
        c0 += LO(d) * LO(xh);
        c1 += HI(d) * HI(xh);
        if (V == 16) {
            v8f d2 = relu ? GATE(LD(dy + o_ + 8), LD(y + o_ + 8)) : LD(dy + o_ + 8), xh2 = (LD(x + o_ + 8) - m1) * i1;
            a2 += LO(d2);
            a3 += HI(d2);
            c2 += LO(d2) * LO(xh2);
            c3 += HI(d2) * HI(xh2);
        }
    }
    store4(sdy, a0); store4(sdy + 4, a1); store4(sdyx, c0); store4(sdyx + 4, c1);
    if (V == 16) { store4(sdy + 8, a2); store4(sdy + 12, a3); store4(sdyx + 8, c2); store4(sdyx + 12, c3); }
}
AI void blk_dx_v(const float *dy, const float *y, const float *x, float *dx, long b0, long b1, long on, long off,
                 long hw, const int V, const float *mean, const float *inv, const float *g, const float *a,
                 const float *bq, const int relu, const int train, const int assign) {
    for (int h = 0; h < V / 8; h++) {
        const v8f mv = LV(mean, h), iv = LV(inv, h), gv = LV(g, h), av = LV(a, h), bv = LV(bq, h);
        FOR_SAMPLES {
            const long j = o_ + 8 * h;
            v8f d = relu ? GATE(LD(dy + j), LD(y + j)) : LD(dy + j);
            v8f r = train ? gv * (d - av - ((LD(x + j) - mv) * iv) * bv) : gv * d;
            ST(dx + j, (assign ? SPLAT8(0.0f) : LD(dx + j)) + r);
        }
    }
}
#undef FOR_SAMPLES

/* the form for V: vectors for blocks of 8 or 16 lanes (unless a test asks for the scalar one) */
#define BLK(name, V, ...) do { \
        if ((V) >= 8 && !g_bn_scalar) name##_v(__VA_ARGS__); else name##_s(__VA_ARGS__); \
    } while (0)

/* ---- training forward on samples [b0, b1), all channels: statistics, running statistics, y ----
 * Three steps: each thread sums its samples per channel (partials), pool_sync, each totals them into the
 * mean and sums its squared deviations, pool_sync, each totals those into 1/std and normalises its
 * samples; thread 0 alone writes the statistics and the running statistics. Summed in double, in sample
 * order within a thread and thread order across them: one thread sums as a single loop would. */
AI void bn_fwd_train(Layer *L, Work *w, int i, const float *x, float *y, long b0, long b1, int t, int T, const int V,
                     const int relu) {
    const int n = w->n, nk = L->cp / V;
    const long hw = (long)L->h * L->w, on = out_n(L), M = n * hw, cp = L->cp;
    const float mom = 0.1f;
    const double *part[POOL_MAX];
    for (int u = 0; u < T; u++) part[u] = bn_part(w, u);
    double *mine = bn_part(w, t); /* (2, cp): sums, then sums of squared deviations */
    for (int k = 0; k < nk; k++) BLK(blk_sum, V, x, b0, b1, on, k * hw * V, hw, V, mine + k * V);
    pool_sync(w->pool);
    for (int k = 0; k < nk; k++) {
        double mu[VMAX];
        for (int v = 0; v < V; v++) mu[v] = bn_total(part, T, k * V + v) / M;
        BLK(blk_ssq, V, x, b0, b1, on, k * hw * V, hw, V, mu, mine + cp + k * V);
    }
    pool_sync(w->pool);
    for (int k = 0; k < nk; k++) {
        float mean[VMAX], inv[VMAX], g[VMAX], be[VMAX];
        for (int v = 0; v < V; v++) {
            const int c = k * V + v;
            if (c >= L->c) { mean[v] = inv[v] = g[v] = be[v] = 0; }
            else {
                const double mu = bn_total(part, T, c) / M, ss = bn_total(part, T, cp + c), var = ss / M;
                mean[v] = (float)mu;
                inv[v] = (float)(1.0 / sqrt(var + BN_EPS));
                g[v] = L->gamma[c];
                be[v] = L->beta[c];
                if (t == 0 && !L->frozen) { /* PyTorch: running_var uses the unbiased variance */
                    L->run_mean[c] = (1 - mom) * L->run_mean[c] + mom * (float)mu;
                    L->run_var[c] = (1 - mom) * L->run_var[c] + mom * (float)(M > 1 ? ss / (M - 1) : var);
                }
            }
            if (t == 0) {
                BN_MEAN(w, i)[c] = mean[v];
                BN_INVSTD(w, L, i)[c] = inv[v];
            }
        }
        BLK(blk_affine, V, x, y, b0, b1, on, k * hw * V, hw, V, mean, inv, g, be, relu);
    }
}

AI void bn_forward_batch_body(Model *m, Work *w, int i, int mode, int t, int T) {
    Layer *L = &m->L[i];
    const int V = lanes(L);
    long b0, b1;
    split_range(w->n, t, T, &b0, &b1);
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    /* V and the fused ReLU as constants */
#define BN_FT(V_, R_) bn_fwd_train(L, w, i, x, y, b0, b1, t, T, V_, R_)
    if (V == 16) { if (L->relu_out) BN_FT(16, 1); else BN_FT(16, 0); }
    else if (V == 8) { if (L->relu_out) BN_FT(8, 1); else BN_FT(8, 0); }
    else { if (L->relu_out) BN_FT(1, 1); else BN_FT(1, 0); }
#undef BN_FT
}

/* the per-channel affine map of inference, y = g ((x - mean) / std) + beta as PyTorch rounds it */
AI void bn_fwd_infer(const Layer *L, const float *x, float *y, long nb, const int V, const int relu) {
    const long hw = (long)L->h * L->w, on = out_n(L);
    for (int k = 0; k < L->cp / V; k++) {
        float mean[VMAX], inv[VMAX], g[VMAX], be[VMAX];
        for (int v = 0; v < V; v++) {
            int c = k * V + v;
            int real = c < L->c;
            mean[v] = real ? L->run_mean[c] : 0;
            inv[v] = run_inv(L, c);
            g[v] = real ? L->gamma[c] : 0;
            be[v] = real ? L->beta[c] : 0;
        }
        BLK(blk_affine, V, x, y, 0, nb, on, k * hw * V, hw, V, mean, inv, g, be, relu);
    }
}

AI void bn_forward_body(Model *m, Work *w, int i, long b0, long b1, int t) { /* inference */
    Span s = span_of(m, w, i, b0, b1);
    const int V = lanes(s.L);
    if (s.nb <= 0) return;
#define BN_FI(V_, R_) bn_fwd_infer(s.L, s.x, s.y, s.nb, V_, R_)
    if (V == 16) { if (s.L->relu_out) BN_FI(16, 1); else BN_FI(16, 0); }
    else if (V == 8) { if (s.L->relu_out) BN_FI(8, 1); else BN_FI(8, 0); }
    else { if (s.L->relu_out) BN_FI(1, 1); else BN_FI(1, 0); }
#undef BN_FI
}

/* ---- backward over the whole batch (training, or a weight gradient wanted) on samples [b0, b1) ----
 * Each thread sums dy and dy x-hat over its samples (partials), pool_sync, each totals them; thread 0
 * writes the parameter gradients, each thread its samples' dx. */
AI void bn_stats(const Model *m, const Work *w, int i, int k, const int V, const int train, float *mean, float *inv,
                 float *g) {
    const Layer *L = &m->L[i];
    for (int v = 0; v < V; v++) {
        int c = k * V + v, real = c < L->c;
        if (train) { mean[v] = BN_MEAN(w, i)[c]; inv[v] = BN_INVSTD(w, L, i)[c]; }
        else { mean[v] = real ? L->run_mean[c] : 0; inv[v] = run_inv(L, c); }
        g[v] = real ? L->gamma[c] * inv[v] : 0;
    }
}
AI void bn_bwd(Model *m, Work *w, int i, int flags, const int assign, long b0, long b1, int t, int T, const int V,
               const int relu, const int train) {
    Layer *L = &m->L[i];
    const int n = w->n, nk = L->cp / V;
    const float *dy = w->grad[i], *x = node_act(w, L->in), *y = w->act[i];
    float *dx = node_grad(w, L->in);
    const int need_dx = need_dx_of(m, L, flags);
    const int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    const long hw = (long)L->h * L->w, on = out_n(L), M = n * hw, cp = L->cp;
    const double *part[POOL_MAX];
    for (int u = 0; u < T; u++) part[u] = bn_part(w, u);
    double *mine = bn_part(w, t); /* (2, cp): sums of dy, of dy x-hat */
    float mean[VMAX], inv[VMAX], g[VMAX];
    for (int k = 0; k < nk; k++) {
        bn_stats(m, w, i, k, V, train, mean, inv, g);
        BLK(blk_bsum, V, dy, y, x, b0, b1, on, k * hw * V, hw, V, mean, inv, relu, mine + k * V, mine + cp + k * V);
    }
    pool_sync(w->pool);
    for (int c = 0; c < L->c && want_params && t == 0; c++) {
        L->dgamma[c] = (float)bn_total(part, T, cp + c);
        L->dbeta[c] = (float)bn_total(part, T, c);
    }
    if (!need_dx) return;
    for (int k = 0; k < nk; k++) {
        bn_stats(m, w, i, k, V, train, mean, inv, g);
        float a[VMAX], bq[VMAX];
        for (int v = 0; v < V; v++) {
            a[v] = train ? (float)(bn_total(part, T, k * V + v) / M) : 0;
            bq[v] = train ? (float)(bn_total(part, T, cp + k * V + v) / M) : 0;
        }
        /* batch statistics: dx = g/M (M dy - sum dy - xhat sum dy xhat); running: g dy */
        BLK(blk_dx, V, dy, y, x, dx, b0, b1, on, k * hw * V, hw, V, mean, inv, g, a, bq, relu, train, assign);
    }
}

AI void bn_backward_batch_body(Model *m, Work *w, int i, int flags, int assign, int t, int T) {
    const Layer *L = &m->L[i];
    const int V = lanes(L);
    long b0, b1;
    split_range(w->n, t, T, &b0, &b1);
    const int r = L->relu_out, tr = w->train;
#define BN_B(V_) do { \
        if (assign) { if (r) { if (tr) BN_BB(V_, 1, 1, 1); else BN_BB(V_, 1, 1, 0); } else { if (tr) BN_BB(V_, 1, 0, 1); else BN_BB(V_, 1, 0, 0); } } \
        else { if (r) { if (tr) BN_BB(V_, 0, 1, 1); else BN_BB(V_, 0, 1, 0); } else { if (tr) BN_BB(V_, 0, 0, 1); else BN_BB(V_, 0, 0, 0); } } \
    } while (0)
#define BN_BB(V_, A_, R_, T_) bn_bwd(m, w, i, flags, A_, b0, b1, t, T, V_, R_, T_)
    if (V == 16) BN_B(16);
    else if (V == 8) BN_B(8);
    else BN_B(1);
#undef BN_BB
#undef BN_B
}

/* ---- inference backward without parameter gradients: per sample, dx (+)= gamma / std * dy ---- */
AI void bn_bwd_infer(const Layer *L, const float *dy, const float *y, float *dx, long nb, const int assign,
                     const int V, const int relu) {
    const long hw = (long)L->h * L->w, on = out_n(L);
    for (int k = 0; k < L->cp / V; k++) {
        float g[VMAX], zero[VMAX] = {0};
        for (int v = 0; v < V; v++) {
            int c = k * V + v;
            g[v] = c < L->c ? L->gamma[c] * run_inv(L, c) : 0;
        }
        BLK(blk_dx, V, dy, y, NULL, dx, 0, nb, on, k * hw * V, hw, V, zero, zero, g, zero, zero, relu, 0, assign);
    }
}

AI void bn_backward_body(Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                         long bstart, int t) {
    Span s = span_of(m, w, i, b0, b1);
    if (!need_dx_of(m, s.L, flags) || s.nb <= 0) return;
    const int V = lanes(s.L);
    const int r = s.L->relu_out;
#define BN_BI(V_) do { \
        if (assign) { if (r) BN_BII(V_, 1, 1); else BN_BII(V_, 1, 0); } else { if (r) BN_BII(V_, 0, 1); else BN_BII(V_, 0, 0); } \
    } while (0)
#define BN_BII(V_, A_, R_) bn_bwd_infer(s.L, s.dy, s.y, s.dx, s.nb, A_, V_, R_)
    if (V == 16) BN_BI(16);
    else if (V == 8) BN_BI(8);
    else BN_BI(1);
#undef BN_BII
#undef BN_BI
}

/* every op for the x86-64 baseline and for AVX2 (the same code: GCC splits the 32-byte vectors into
 * SSE2 pairs for the first) */
#define BN_LEVELS(ret, name, params, args) \
    static ret name##_base params { name##_body args; } \
    __attribute__((target("avx2"))) static ret name##_avx2 params { name##_body args; } \
    static ret name params { if (kernels_level() >= 1) name##_avx2 args; else name##_base args; }
BN_LEVELS(void, bn_forward_batch, (Model *m, Work *w, int i, int mode, int t, int T), (m, w, i, mode, t, T))
BN_LEVELS(void, bn_forward, (Model *m, Work *w, int i, long b0, long b1, int t), (m, w, i, b0, b1, t))
BN_LEVELS(void, bn_backward_batch, (Model *m, Work *w, int i, int flags, int assign, int t, int T),
          (m, w, i, flags, assign, t, T))
BN_LEVELS(void, bn_backward, (Model *m, Work *w, int i, const float *dout, int flags, int assign, long b0, long b1,
                              long bstart, int t), (m, w, i, dout, flags, assign, b0, b1, bstart, t))
#undef BN_LEVELS

static int bn_batch_forward(const Layer *L, const Work *w, int mode) { return mode == FWD_TRAIN; }
/* a weight gradient sums over the batch, in either mode */
static int bn_batch_backward(const Layer *L, const Work *w, int train, int flags) {
    return train || ((flags & BW_PARAMS) && L->trainable && !L->frozen);
}

const LayerOps LAYER_BN = {
    .name = "batchnorm",
    .forward = bn_forward,
    .forward_batch = bn_forward_batch,
    .batch_forward = bn_batch_forward,
    .backward = bn_backward,
    .backward_batch = bn_backward_batch,
    .batch_backward = bn_batch_backward,
    .stores_dx = 1,
    .work_need = bn_work_need,
};
