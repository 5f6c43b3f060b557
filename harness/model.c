/* model.c -- a model as a graph of layers over one parameter arena: building, sizing and allocating the
 * arena (parameters, gradients and optimiser state each one contiguous block), PyTorch-default
 * initialisation, the checkpoint tensor list, freezing, the rule seam's calls and the non-finite check.
 * See model.h. The layer kinds' computations are in layers/, the passes in pass.c, workspaces in work.c. */
#include "harness/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/layers/layer.h"

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
long layer_out_n(const Layer *L) { return (long)L->cp * L->h * L->w; }

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

long model_graph_params(const Model *m) {
    long np = 0;
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        if (L->kind == L_LINEAR || L->kind == L_CONV) np += layer_w_n(L) + (L->bias ? L->c : 0);
        else if (L->kind == L_BN) np += 2L * L->c;
    }
    return np;
}

#define ARENA_BIG (1L << 20) /* floats */

void model_finalize(Model *m, uint64_t init_seed) {
    CHECK(m->arena == NULL && m->nl > 0);
    m->out = m->nl - 1;
    /* 1. sizes */
    long np = model_graph_params(m), nbuf = 0, nrule = 0;
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (L->kind == L_LINEAR || L->kind == L_CONV) nrule += L->rstate_n + L->fb_n;
        else if (L->kind == L_BN || L->kind == L_NORM) nbuf += 2L * L->c;
    }
    m->n_params = np;
    m->n_arena = 4 * np + nbuf + nrule;
    /* a large arena on transparent huge pages, as a Work's (vgg16's 15M parameters: 240 MB whose first
       touch, 4 KiB at a time, fell inside the first training steps) */
    m->arena = m->n_arena >= ARENA_BIG ? big_alloc(sizeof(float) * (size_t)m->n_arena)
                                       : xcalloc((size_t)m->n_arena, sizeof(float));
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
    layout_plan(m);
    fuse_plan(m);
}

void model_free(Model *m) {
    if (!m) return;
    work_free(m->wcache);
    if (m->n_arena >= ARENA_BIG) big_free(m->arena, sizeof(float) * (size_t)m->n_arena);
    else free(m->arena);
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

/* ------------------------------------------------------------------ the rule seam */

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

/* ------------------------------------------------------------------ checks */

int model_find_nonfinite(const Model *m, const Work *w) {
    for (int i = 0; i < m->nl; i++) {
        const Layer *L = &m->L[i];
        long n = layer_out_n(L) * (w ? w->n : 0);
        for (long j = 0; w && j < n; j++)
            if (!isfinite(w->act[i][j])) return i;
        if (L->W)
            for (long j = 0; j < layer_w_n(L); j++)
                if (!isfinite(L->W[j])) return i;
    }
    return -1;
}

const char *model_nonfinite_tensor(const Model *m) {
    for (int i = 0; i < m->ntensors; i++) {
        const Tensor *t = &m->tensors[i];
        if (t->kind != TK_PARAM && t->kind != TK_BUFFER) continue;
        for (long j = 0; j < t->n; j++)
            if (!isfinite(t->data[j])) return t->name;
    }
    return NULL;
}
