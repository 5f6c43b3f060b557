/* model.c -- graph building, the arena, forward and backward of every layer kind. See model.h.
 *
 * Backward convention: at the start every gradient buffer is zeroed; each layer ADDS its contribution
 * to its inputs' gradients (nodes read by several layers, e.g. residual branches, simply accumulate).
 * Parameter gradients are written (not accumulated): each parameter is used once per pass.
 */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../rules/rule.h"
#include "gemm.h"

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
            if (L->rule) {
                L->rstate_n = L->rule->state_n ? L->rule->state_n(L, model_out_dim(m)) : 0;
                nrule += L->rstate_n;
                if (L->rule->own_B) nrule += L->rule->direct ? (long)layer_in_dim(L) * model_out_dim(m) : layer_w_n(L);
            }
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
            if (L->rule) {
                L->rstate = L->rstate_n ? rbuf : NULL;
                rbuf += L->rstate_n;
                if (L->rule->own_B) {
                    L->B = rbuf;
                    rbuf += L->rule->direct ? (long)layer_in_dim(L) * model_out_dim(m) : wn;
                }
                if (L->rstate_n) {
                    char nm[64];
                    snprintf(nm, sizeof nm, "rule.%s", L->name);
                    add_tensor(m, nm, "state", L->rstate, TK_RULE, 1, (int)L->rstate_n, 0, 0, 0);
                }
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

/* ------------------------------------------------------------------ workspace */

static long conv_col_n(const Layer *L, int n) { return (long)L->ic * L->k * L->k * n * L->h * L->w; }
static long conv_tmp_n(const Layer *L, int n) { return (long)L->c * n * L->h * L->w; }

Work *work_create(const Model *m, int cap) {
    Work *w = xcalloc(1, sizeof *w);
    w->cap = cap;
    long nf = 2L * cap * model_in_dim(m), ni = 0, col = 0, tmp = 0;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        long o = out_n(L) * cap;
        if (L->kind != L_FLATTEN) nf += 2 * o;
        if (L->kind == L_MAXPOOL) ni += o;
        if (L->kind == L_BN) nf += o + 2L * L->c;
        if (L->kind == L_DROPOUT) nf += o;
        if (L->kind == L_CONV) {
            if (conv_col_n(L, cap) > col) col = conv_col_n(L, cap);
            if (conv_tmp_n(L, cap) > tmp) tmp = conv_tmp_n(L, cap);
        }
    }
    nf += col + tmp;
    w->mem = xcalloc((size_t)nf, sizeof(float));
    w->imem = xcalloc((size_t)(ni ? ni : 1), sizeof(int32_t));
    float *p = w->mem;
    int32_t *q = w->imem;
    w->x = p; p += (long)cap * model_in_dim(m);
    w->dx = p; p += (long)cap * model_in_dim(m);
    w->col = p; p += col;
    w->tmp = p; p += tmp;
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
    return w;
}

void work_free(Work *w) {
    if (!w) return;
    free(w->mem);
    free(w->imem);
    free(w);
}

/* ------------------------------------------------------------------ conv helpers */

/* col (IC*K*K, N*P): col[(c*K + ki)*K + kj][n*P + oy*OW + ox] = x[n][c][oy*s - pad + ki][ox*s - pad + kj] */
static void im2col(const Layer *L, int n, const float *x, float *col) {
    int K = L->k, P = L->h * L->w, NP = n * P;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                float *row = col + (long)((c * K + ki) * K + kj) * NP;
                for (int b = 0; b < n; b++) {
                    const float *xp = x + ((long)b * L->ic + c) * L->ih * L->iw;
                    float *r = row + (long)b * P;
                    for (int oy = 0; oy < L->h; oy++) {
                        int iy = oy * L->stride - L->pad + ki;
                        float *ro = r + oy * L->w;
                        if (iy < 0 || iy >= L->ih) { memset(ro, 0, sizeof(float) * L->w); continue; }
                        const float *xr = xp + (long)iy * L->iw;
                        if (L->stride == 1) {
                            int x0 = kj - L->pad; /* ix = ox + x0 */
                            for (int ox = 0; ox < L->w; ox++) {
                                int ix = ox + x0;
                                ro[ox] = (ix >= 0 && ix < L->iw) ? xr[ix] : 0.0f;
                            }
                        } else {
                            for (int ox = 0; ox < L->w; ox++) {
                                int ix = ox * L->stride - L->pad + kj;
                                ro[ox] = (ix >= 0 && ix < L->iw) ? xr[ix] : 0.0f;
                            }
                        }
                    }
                }
            }
}

/* dx += col2im(dcol): the adjoint of im2col */
static void col2im_add(const Layer *L, int n, const float *col, float *dx) {
    int K = L->k, P = L->h * L->w, NP = n * P;
    for (int c = 0; c < L->ic; c++)
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *row = col + (long)((c * K + ki) * K + kj) * NP;
                for (int b = 0; b < n; b++) {
                    float *xp = dx + ((long)b * L->ic + c) * L->ih * L->iw;
                    const float *r = row + (long)b * P;
                    for (int oy = 0; oy < L->h; oy++) {
                        int iy = oy * L->stride - L->pad + ki;
                        if (iy < 0 || iy >= L->ih) continue;
                        float *xr = xp + (long)iy * L->iw;
                        const float *ro = r + oy * L->w;
                        for (int ox = 0; ox < L->w; ox++) {
                            int ix = ox * L->stride - L->pad + kj;
                            if (ix >= 0 && ix < L->iw) xr[ix] += ro[ox];
                        }
                    }
                }
            }
}

/* ------------------------------------------------------------------ forward */

static const float *node_act(const Work *w, int i) { return i < 0 ? w->x : w->act[i]; }
static float *node_grad(Work *w, int i) { return i < 0 ? w->dx : w->grad[i]; }

static void fwd_layer(Model *m, Work *w, int i, int mode) {
    Layer *L = &m->L[i];
    int n = w->n;
    const float *x = node_act(w, L->in);
    float *y = w->act[i];
    long on = out_n(L), inn = (long)L->ic * L->ih * L->iw;
    switch (L->kind) {
    case L_NORM: {
        long hw = (long)L->ih * L->iw;
        for (int b = 0; b < n; b++)
            for (int c = 0; c < L->c; c++) {
                const float *xp = x + ((long)b * L->c + c) * hw;
                float *yp = y + ((long)b * L->c + c) * hw, mu = L->mean[c], inv = 1.0f / L->std[c];
                for (long j = 0; j < hw; j++) yp[j] = (xp[j] - mu) * inv;
            }
        break;
    }
    case L_LINEAR:
        for (int b = 0; b < n; b++) memcpy(y + (long)b * L->c, L->b, sizeof(float) * L->c);
        gemm(0, 1, n, L->c, (int)inn, 1.0f, x, (int)inn, L->W, (int)inn, 1.0f, y, L->c);
        break;
    case L_CONV: {
        int P = L->h * L->w, NP = n * P, KC = L->ic * L->k * L->k;
        im2col(L, n, x, w->col);
        gemm(0, 0, L->c, NP, KC, 1.0f, L->W, KC, w->col, NP, 0.0f, w->tmp, NP);
        for (int b = 0; b < n; b++)
            for (int c = 0; c < L->c; c++) {
                const float *t = w->tmp + (long)c * NP + (long)b * P;
                float *yp = y + ((long)b * L->c + c) * P, bias = L->bias ? L->b[c] : 0.0f;
                for (int p = 0; p < P; p++) yp[p] = t[p] + bias;
            }
        break;
    }
    case L_MAXPOOL:
    case L_AVGPOOL: {
        int32_t *am = w->argmax[i];
        float inv = 1.0f / (float)(L->k * L->k);
        for (int b = 0; b < n; b++)
            for (int c = 0; c < L->c; c++) {
                const float *xp = x + ((long)b * L->c + c) * L->ih * L->iw;
                long ob = ((long)b * L->c + c) * L->h * L->w;
                for (int oy = 0; oy < L->h; oy++)
                    for (int ox = 0; ox < L->w; ox++) {
                        int y0 = oy * L->stride, x0 = ox * L->stride;
                        if (L->kind == L_MAXPOOL) {
                            int best = y0 * L->iw + x0;
                            float bv = xp[best];
                            for (int ky = 0; ky < L->k; ky++)
                                for (int kx = 0; kx < L->k; kx++) {
                                    int idx = (y0 + ky) * L->iw + x0 + kx;
                                    if (xp[idx] > bv || (isnan(xp[idx]) && !isnan(bv))) { bv = xp[idx]; best = idx; }
                                }
                            y[ob + oy * L->w + ox] = bv;
                            am[ob + oy * L->w + ox] = best;
                        } else {
                            float s = 0;
                            for (int ky = 0; ky < L->k; ky++)
                                for (int kx = 0; kx < L->k; kx++) s += xp[(y0 + ky) * L->iw + x0 + kx];
                            y[ob + oy * L->w + ox] = s * inv;
                        }
                    }
            }
        break;
    }
    case L_GAP: {
        long hw = (long)L->ih * L->iw;
        for (long j = 0; j < (long)n * L->c; j++) {
            double s = 0;
            for (long t = 0; t < hw; t++) s += x[j * hw + t];
            y[j] = (float)(s / hw);
        }
        break;
    }
    case L_RELU:
        for (long j = 0; j < n * on; j++) y[j] = x[j] > 0 ? x[j] : 0.0f;
        break;
    case L_TANH:
        for (long j = 0; j < n * on; j++) y[j] = tanhf(x[j]);
        break;
    case L_BN: {
        long hw = (long)L->h * L->w, M = n * hw;
        const float eps = 1e-5f, mom = 0.1f;
        for (int c = 0; c < L->c; c++) {
            float mean, invstd;
            if (mode == FWD_TRAIN) {
                double s = 0, ss = 0;
                for (int b = 0; b < n; b++) {
                    const float *xp = x + ((long)b * L->c + c) * hw;
                    for (long t = 0; t < hw; t++) s += xp[t];
                }
                double mu = s / M;
                for (int b = 0; b < n; b++) {
                    const float *xp = x + ((long)b * L->c + c) * hw;
                    for (long t = 0; t < hw; t++) { double d = xp[t] - mu; ss += d * d; }
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
            for (int b = 0; b < n; b++) {
                long o = ((long)b * L->c + c) * hw;
                for (long t = 0; t < hw; t++) {
                    float xh = (x[o + t] - mean) * invstd;
                    w->bn_xhat[i][o + t] = xh;
                    y[o + t] = L->gamma[c] * xh + L->beta[c];
                }
            }
        }
        break;
    }
    case L_DROPOUT:
        if (mode == FWD_TRAIN && L->p > 0) {
            Rng r;
            rng_seed(&r, w->drop_seed, RNG_DROPOUT, w->drop_count * MAX_LAYERS + (uint64_t)i);
            float keep = 1.0f - L->p, sc = 1.0f / keep;
            for (long j = 0; j < n * on; j++) {
                w->mask[i][j] = rng_uniform(&r) < keep ? sc : 0.0f;
                y[j] = x[j] * w->mask[i][j];
            }
        } else {
            memcpy(y, x, sizeof(float) * n * on);
        }
        break;
    case L_FLATTEN:
        break;
    case L_ADD: {
        const float *x2 = node_act(w, L->in2);
        for (long j = 0; j < n * on; j++) y[j] = x[j] + x2[j];
        break;
    }
    default: CHECK(0);
    }
}

float *model_forward(Model *m, Work *w, const float *x, int n, int mode) {
    CHECK(n > 0 && n <= w->cap);
    w->n = n;
    w->train = mode;
    if (x != w->x) memcpy(w->x, x, sizeof(float) * (size_t)n * model_in_dim(m));
    for (int i = 0; i < m->nl; i++) fwd_layer(m, w, i, mode);
    return w->act[m->out];
}

/* ------------------------------------------------------------------ backward */

void model_rebuild_feedback(Model *m) {
    RuleOpts ro;
    rule_opts_from_text(&ro, m->rule_opts);
    ro.seed = m->rule_seed;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (!L->rule || !L->rule->refresh) continue;
        Rng r;
        rng_seed(&r, m->rule_seed, RNG_RULE, (m->fb_count << 8) | (uint64_t)L->pidx);
        RuleCtx ctx = {&ro, model_out_dim(m), &r};
        L->rule->refresh(L, &ctx);
    }
}

void model_refresh_feedback(Model *m) {
    m->fb_count++;
    model_rebuild_feedback(m);
}

static void bwd_layer(Model *m, Work *w, int i, const float *dout, int flags) {
    Layer *L = &m->L[i];
    int n = w->n;
    const float *x = node_act(w, L->in), *dy = w->grad[i];
    int need_dx = L->in < 0 ? (flags & BW_INPUT) != 0 : (m->need_up[L->in] && (flags & BW_PARAMS)) || (flags & BW_INPUT);
    int want_params = (flags & BW_PARAMS) && L->trainable && !L->frozen;
    float *dx = node_grad(w, L->in);
    long on = out_n(L), inn = (long)L->ic * L->ih * L->iw;
    switch (L->kind) {
    case L_NORM:
        if (need_dx) {
            long hw = (long)L->ih * L->iw;
            for (int b = 0; b < n; b++)
                for (int c = 0; c < L->c; c++) {
                    long o = ((long)b * L->c + c) * hw;
                    float inv = 1.0f / L->std[c];
                    for (long j = 0; j < hw; j++) dx[o + j] += dy[o + j] * inv;
                }
        }
        break;
    case L_LINEAR:
    case L_CONV: {
        const int direct = !(flags & BW_TRUE) && L->rule && L->rule->direct;
        const float *B = (flags & BW_TRUE) ? L->W : L->B;
        if (L->kind == L_LINEAR) {
            if (want_params) {
                gemm(1, 0, L->c, (int)inn, n, 1.0f, dy, L->c, x, (int)inn, 0.0f, L->dW, (int)inn);
                for (int c = 0; c < L->c; c++) {
                    double s = 0;
                    for (int b = 0; b < n; b++) s += dy[(long)b * L->c + c];
                    L->db[c] = (float)s;
                }
            }
            if (need_dx && !direct) gemm(0, 0, n, (int)inn, L->c, 1.0f, dy, L->c, B, (int)inn, 1.0f, dx, (int)inn);
        } else {
            int P = L->h * L->w, NP = n * P, KC = L->ic * L->k * L->k;
            for (int b = 0; b < n; b++)
                for (int c = 0; c < L->c; c++)
                    memcpy(w->tmp + (long)c * NP + (long)b * P, dy + ((long)b * L->c + c) * P, sizeof(float) * P);
            if (want_params) {
                im2col(L, n, x, w->col);
                gemm(0, 1, L->c, KC, NP, 1.0f, w->tmp, NP, w->col, NP, 0.0f, L->dW, KC);
                if (L->bias)
                    for (int c = 0; c < L->c; c++) {
                        double s = 0;
                        const float *t = w->tmp + (long)c * NP;
                        for (long j = 0; j < NP; j++) s += t[j];
                        L->db[c] = (float)s;
                    }
            }
            if (need_dx && !direct) {
                gemm(1, 0, KC, NP, L->c, 1.0f, B, KC, w->tmp, NP, 0.0f, w->col, NP);
                col2im_add(L, n, w->col, dx);
            }
        }
        /* DFA: the input receives D e, D = B shaped (D_in, K), e = the output error */
        if (need_dx && direct) {
            int K = model_out_dim(m);
            gemm(0, 1, n, (int)inn, K, 1.0f, dout, K, L->B, K, 1.0f, dx, (int)inn);
        }
        break;
    }
    case L_MAXPOOL:
        if (need_dx) {
            const int32_t *am = w->argmax[i];
            long ihw = (long)L->ih * L->iw, ohw = (long)L->h * L->w;
            for (long bc = 0; bc < (long)n * L->c; bc++)
                for (long j = 0; j < ohw; j++) dx[bc * ihw + am[bc * ohw + j]] += dy[bc * ohw + j];
        }
        break;
    case L_AVGPOOL:
        if (need_dx) {
            float inv = 1.0f / (float)(L->k * L->k);
            for (long bc = 0; bc < (long)n * L->c; bc++) {
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
            for (long j = 0; j < (long)n * L->c; j++) {
                float g = dy[j] / (float)hw;
                for (long t = 0; t < hw; t++) dx[j * hw + t] += g;
            }
        }
        break;
    case L_RELU:
        if (need_dx) {
            const float *y = w->act[i];
            for (long j = 0; j < n * on; j++) dx[j] += y[j] > 0 ? dy[j] : 0.0f;
        }
        break;
    case L_TANH:
        if (need_dx) {
            const float *y = w->act[i];
            for (long j = 0; j < n * on; j++) dx[j] += dy[j] * (1.0f - y[j] * y[j]);
        }
        break;
    case L_BN: {
        long hw = (long)L->h * L->w, M = n * hw;
        const float *xh = w->bn_xhat[i];
        for (int c = 0; c < L->c; c++) {
            double sdy = 0, sdyx = 0;
            for (int b = 0; b < n; b++) {
                long o = ((long)b * L->c + c) * hw;
                for (long t = 0; t < hw; t++) { sdy += dy[o + t]; sdyx += (double)dy[o + t] * xh[o + t]; }
            }
            if (want_params) { L->dgamma[c] = (float)sdyx; L->dbeta[c] = (float)sdy; }
            if (!need_dx) continue;
            float g = L->gamma[c] * w->bn_invstd[i][c];
            if (w->train) { /* batch statistics: dx = g/M (M dy - sum dy - xhat sum dy xhat) */
                float a = (float)(sdy / M), bq = (float)(sdyx / M);
                for (int b = 0; b < n; b++) {
                    long o = ((long)b * L->c + c) * hw;
                    for (long t = 0; t < hw; t++) dx[o + t] += g * (dy[o + t] - a - xh[o + t] * bq);
                }
            } else { /* running statistics are constants */
                for (int b = 0; b < n; b++) {
                    long o = ((long)b * L->c + c) * hw;
                    for (long t = 0; t < hw; t++) dx[o + t] += g * dy[o + t];
                }
            }
        }
        break;
    }
    case L_DROPOUT:
        if (need_dx) {
            if (w->train && L->p > 0)
                for (long j = 0; j < n * on; j++) dx[j] += dy[j] * w->mask[i][j];
            else
                for (long j = 0; j < n * on; j++) dx[j] += dy[j];
        }
        break;
    case L_FLATTEN: /* aliases its input: the gradient is already there */
        break;
    case L_ADD:
        if (need_dx)
            for (long j = 0; j < n * on; j++) dx[j] += dy[j];
        if (L->in2 >= 0 ? (m->need_up[L->in2] && (flags & BW_PARAMS)) || (flags & BW_INPUT) : (flags & BW_INPUT)) {
            float *dx2 = node_grad(w, L->in2);
            for (long j = 0; j < n * on; j++) dx2[j] += dy[j];
        }
        break;
    default: CHECK(0);
    }
}

void model_backward(Model *m, Work *w, const float *dout, int flags) {
    int n = w->n;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind != L_FLATTEN) memset(w->grad[i], 0, sizeof(float) * n * out_n(&m->L[i]));
    if (flags & BW_INPUT) memset(w->dx, 0, sizeof(float) * (size_t)n * model_in_dim(m));
    memcpy(w->grad[m->out], dout, sizeof(float) * n * out_n(&m->L[m->out]));
    for (int i = m->nl - 1; i >= 0; i--) bwd_layer(m, w, i, dout, flags);
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
