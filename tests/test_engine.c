/* test_engine.c -- the engine against independent oracles: the naive gemm, central finite differences
 * of every layer kind and every model, and checkpoint round trips and corruptions.
 *
 * Finite differences run in float32 (the engine's precision). With a loss J = sum_i r_i y_i, central
 * differences with step h have truncation error O(h^2 |J'''|) and rounding error ~ eps32 * |J| / h.
 * For |J| ~ 10 and h = 1e-2 the rounding term is ~1e-4; we accept |fd - g| <= 2e-3 + 3e-2 |g| per
 * element, and directional derivatives (whole networks) to 3e-2 relative: a wrong gradient (a
 * missing term, a transposed kernel, a sign) is off by O(1) relative, far outside these bands.
 * Inputs are kept away from ReLU/max-pool kinks by construction where it matters. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/checkpoint.h"
#include "harness/gemm.h"
#include "harness/layers/layer.h"
#include "harness/loss.h"
#include "harness/model.h"
#include "harness/threads.h"
#include "harness/train.h"
#include "rules/build.h"
#include "tests/test.h"

/* ------------------------------------------------------------------ gemm */

static void fill(float *p, long n, Rng *r) {
    for (long i = 0; i < n; i++) p[i] = 2 * rng_uniform(r) - 1;
}

static void gemm_case(int ta, int tb, int M, int N, int K, float beta, int corrupt) {
    Rng r;
    rng_seed(&r, 7, 1, (uint64_t)(M * 131 + N * 17 + K));
    int lda = ta ? M + 1 : K + 2, ldb = tb ? K + 3 : N + 1, ldc = N + 2;
    long na = (long)(ta ? K : M) * lda, nb = (long)(tb ? N : K) * ldb, nc = (long)M * ldc;
    float *A = xmalloc(sizeof(float) * na), *B = xmalloc(sizeof(float) * nb), *C = xmalloc(sizeof(float) * nc),
          *C2 = xmalloc(sizeof(float) * nc);
    double *want = xmalloc(sizeof(double) * nc);
    fill(A, na, &r); fill(B, nb, &r); fill(C, nc, &r);
    memcpy(C2, C, sizeof(float) * nc);
    gemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C, ldc);
    gemm_ref(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C2, ldc);
    if (corrupt) C[nc / 2] += 0.1f;
    for (long i = 0; i < nc; i++) want[i] = C2[i];
    /* float32 dot products of length K: error <= K * eps32 * sum|a b| ~ 1e-5 for K < 100 */
    char what[64];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d", ta, tb, M, N, K);
    T_ALLCLOSE(what, C, want, nc, 1e-5 * (K + 1), 1e-5);
    free(A); free(B); free(C); free(C2); free(want);
}

TEST(gemm_matches_naive_reference) {
    static const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {64, 65, 63}, {5, 129, 2}, {1, 300, 9}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
                gemm_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.0f, 0);
                gemm_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, 0);
            }
}

static void gemm_corrupted(void) { gemm_case(0, 1, 9, 11, 13, 0.0f, 1); }
TEST(gemm_canary_detects_corruption) { T_ASSERT(test_expect_failure(gemm_corrupted)); }

/* ------------------------------------------------------------------ finite differences */

typedef struct Probe {
    Model *m;
    Work *w;
    int n, mode;
    float *x;     /* (n, D_in) */
    float *r;     /* (n, K) random output weights: J = sum r * y */
    int32_t *y;   /* labels when use_ce */
    int use_ce;
} Probe;

static double probe_J(Probe *p) {
    float *out = model_forward(p->m, p->w, p->x, p->n, p->mode);
    int K = model_out_dim(p->m);
    if (p->use_ce) return loss_softmax_ce(out, p->y, p->n, K, 1.0f, NULL, NULL, NULL);
    double J = 0;
    for (long i = 0; i < (long)p->n * K; i++) J += (double)p->r[i] * out[i];
    return J;
}

/* analytic gradients of J: params into m->grads, input into w->dx */
static void probe_grad(Probe *p) {
    float *out = model_forward(p->m, p->w, p->x, p->n, p->mode);
    int K = model_out_dim(p->m);
    float *d = xmalloc(sizeof(float) * p->n * K);
    if (p->use_ce) loss_softmax_ce(out, p->y, p->n, K, 1.0f / p->n, d, NULL, NULL);
    else memcpy(d, p->r, sizeof(float) * p->n * K);
    model_backward(p->m, p->w, d, BW_PARAMS | BW_INPUT | BW_TRUE);
    free(d);
}

/* element-wise central differences of J w.r.t. v[idx] for up to `maxk` indices */
static void fd_check_elems(Probe *p, float *v, const float *g, long n, int maxk, double h, const char *what) {
    Rng r;
    rng_seed(&r, 99, 2, (uint64_t)n);
    double *want = xmalloc(sizeof(double) * (maxk + 1));
    float *got = xmalloc(sizeof(float) * (maxk + 1));
    int k = 0;
    for (int t = 0; t < maxk && t < n; t++) {
        long i = n <= maxk ? t : (long)rng_below(&r, (uint32_t)n);
        float save = v[i];
        v[i] = save + (float)h;
        double jp = probe_J(p);
        v[i] = save - (float)h;
        double jm = probe_J(p);
        v[i] = save;
        want[k] = (jp - jm) / (2 * h);
        got[k] = g[i];
        k++;
    }
    T_ALLCLOSE(what, got, want, k, 2e-3, 3e-2);
    free(want);
    free(got);
}

static Probe probe_make(Model *m, int n, int mode, uint64_t seed) {
    Probe p = {m, work_create(m, n), n, mode, NULL, NULL, NULL, 0};
    Rng r;
    rng_seed(&r, seed, 3, 0);
    int D = model_in_dim(m), K = model_out_dim(m);
    p.x = xmalloc(sizeof(float) * n * D);
    p.r = xmalloc(sizeof(float) * n * K);
    p.y = xmalloc(sizeof(int32_t) * n);
    for (long i = 0; i < (long)n * D; i++) p.x[i] = rng_uniform(&r);
    for (long i = 0; i < (long)n * K; i++) p.r[i] = 2 * rng_uniform(&r) - 1;
    for (int i = 0; i < n; i++) p.y[i] = (int32_t)rng_below(&r, (uint32_t)K);
    p.w->drop_seed = 5;
    p.w->drop_count = 1;
    return p;
}
static void probe_free(Probe *p) {
    work_free(p->w);
    free(p->x); free(p->r); free(p->y);
}

/* Check the input gradient and every parameter tensor of m. */
static void fd_check_model(Model *m, int n, int mode, int maxk, double h, const char *label) {
    Probe p = probe_make(m, n, mode, 11);
    probe_grad(&p);
    /* copy analytic gradients: FD forwards would not change them, but be explicit */
    float *gp = xmalloc(sizeof(float) * (m->n_params + 1));
    memcpy(gp, m->grads, sizeof(float) * m->n_params);
    long D = (long)n * model_in_dim(m);
    float *gx = xmalloc(sizeof(float) * D);
    memcpy(gx, p.w->dx, sizeof(float) * D);
    char what[128];
    snprintf(what, sizeof what, "%s d/dx", label);
    fd_check_elems(&p, p.x, gx, D, maxk, h, what);
    for (int t = 0; t < m->ntensors; t++) {
        Tensor *T = &m->tensors[t];
        if (T->kind != TK_PARAM) continue;
        snprintf(what, sizeof what, "%s d/d%s", label, T->name);
        fd_check_elems(&p, T->data, gp + (T->data - m->params), T->n, maxk, h, what);
    }
    free(gp); free(gx);
    probe_free(&p);
}

static ModelSpec spec_of(int c, int h, int w, int k) {
    ModelSpec s;
    model_spec_default(&s, "test", c, h, w, k);
    return s;
}

/* one model per layer kind: norm -> [layer under test] -> linear head (so every kind gets a
 * non-trivial upstream gradient and sits between parameters) */
/* The blocked_* models have >= 16 channels, so their convolutions, batch-norm, pools, ReLU and adds run
 * on channel-blocked tensors through oneDNN (layers/layout.c; 17 and 20 channels leave padding lanes);
 * the others stay NCHW (im2col path). */
typedef enum { TL_LINEAR, TL_CONV, TL_CONV_S2, TL_MAXPOOL, TL_AVGPOOL, TL_GAP, TL_RELU, TL_TANH, TL_BN2D, TL_BN1D,
               TL_DROPOUT, TL_ADD_ID, TL_ADD_PROJ, TL_BLK_CONV_POOL, TL_BLK_BN_RELU_POOL, TL_BLK_RESIDUAL, TL_COUNT } TestLayer;
static const char *TL_NAMES[TL_COUNT] = {"linear", "conv", "conv_stride2_pad1", "maxpool", "avgpool", "gap", "relu", "tanh",
                                         "bn2d", "bn1d", "dropout", "residual_identity", "residual_projection",
                                         "blocked_conv_stride2_pool", "blocked_bn_relu_pools", "blocked_residual_gap"};

static Model *layer_model(TestLayer t) {
    /* on AVX2 oneDNN 2.6 has no kernels for the blocked models' 6x6 maps of 2 channels (the whole model
       would go NCHW): there they take 12x12 inputs of 3 channels */
    const int big = t >= TL_BLK_CONV_POOL && conv_block() == 8;
    ModelSpec s = big ? spec_of(3, 12, 12, 3) : spec_of(2, 6, 6, 3);
    Model *m = xcalloc(1, sizeof *m);
    model_init(m, &s);
    int x = model_add(m, L_NORM, "norm", -1);
    switch (t) {
    case TL_LINEAR: x = model_add_linear(m, "lin", x, 5); break;
    case TL_CONV: x = model_add_conv(m, "conv", x, 3, 3, 1, 0, 1); break;
    case TL_CONV_S2: x = model_add_conv(m, "conv", x, 3, 3, 2, 1, 1); break;
    case TL_MAXPOOL: x = model_add_pool(m, L_MAXPOOL, x, 2, 2); break;
    case TL_AVGPOOL: x = model_add_pool(m, L_AVGPOOL, x, 3, 1); break;
    case TL_GAP: x = model_add(m, L_GAP, "", x); break;
    case TL_RELU: x = model_add(m, L_RELU, "", x); break;
    case TL_TANH: x = model_add(m, L_TANH, "", x); break;
    case TL_BN2D: x = model_add_conv(m, "conv", x, 3, 1, 1, 0, 0); x = model_add(m, L_BN, "bn", x); break;
    case TL_BN1D: x = model_add(m, L_FLATTEN, "", x); x = model_add_linear(m, "lin", x, 4); x = model_add(m, L_BN, "bn", x); break;
    case TL_DROPOUT: x = model_add_dropout(m, x, 0.3f); break;
    case TL_ADD_ID: { int y = model_add_conv(m, "conv", x, 2, 3, 1, 1, 0); x = model_add_add(m, y, x); break; }
    case TL_ADD_PROJ: {
        int y = model_add_conv(m, "conv", x, 4, 3, 2, 1, 0);
        int sc = model_add_conv(m, "short", x, 4, 1, 2, 0, 0);
        x = model_add_add(m, y, sc);
        break;
    }
    case TL_BLK_CONV_POOL: /* a pool that converts to NCHW for the flatten */
        x = model_add_conv(m, "conv", x, 16, 3, 1, 1, 1);
        x = model_add_conv(m, "conv2", x, 17, 3, 2, 1, 1);
        x = model_add_pool(m, L_MAXPOOL, x, 2, 2);
        break;
    case TL_BLK_BN_RELU_POOL:
        x = model_add_conv(m, "conv", x, 16, 3, 1, 1, 0);
        x = model_add(m, L_BN, "bn", x);
        x = model_add(m, L_RELU, "", x);
        x = model_add_pool(m, L_MAXPOOL, x, 2, 2);
        x = model_add_conv(m, "conv2", x, 17, 1, 1, 0, 1);
        x = model_add_pool(m, L_AVGPOOL, x, 2, 1);
        break;
    case TL_BLK_RESIDUAL: {
        x = model_add_conv(m, "conv", x, 16, 3, 1, 1, 0);
        int y = model_add_conv(m, "conv2", x, 16, 3, 1, 1, 0);
        y = model_add(m, L_BN, "bn", y);
        x = model_add(m, L_RELU, "", model_add_add(m, y, x));
        y = model_add_conv(m, "conv3", x, 20, 3, 2, 1, 0);
        int sc = model_add_conv(m, "short", x, 20, 1, 2, 0, 0);
        x = model_add(m, L_GAP, "", model_add_add(m, y, sc));
        break;
    }
    default: CHECK(0);
    }
    x = model_add(m, L_FLATTEN, "", x);
    model_add_linear(m, "head", x, 3);
    RuleOpts ro;
    rule_opts_default(&ro);
    rule_attach(m, NULL, &ro);
    model_finalize(m, 3);
    /* non-trivial normalisation and BN affine parameters */
    for (int c = 0; c < 2; c++) { m->L[0].mean[c] = 0.3f + 0.1f * c; m->L[0].std[c] = 0.5f + 0.2f * c; }
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].kind == L_BN)
            for (int c = 0; c < m->L[i].c; c++) {
                m->L[i].gamma[c] = 0.8f + 0.3f * c; m->L[i].beta[c] = 0.1f * c;
                m->L[i].run_mean[c] = 0.05f * c; m->L[i].run_var[c] = 0.9f + 0.2f * c;
            }
    return m;
}

static void directional_check(Model *m, int n, int mode, double rtol, const char *label);

/* Element-wise differences at h = 1e-2 for the small models; the blocked ones (16-20 channels: more
 * ReLU and max-pool kinks within a step) take directional derivatives at the best of five steps, and are
 * compared element by element with the NCHW path in test_conv_paths.c. */
TEST(layer_gradients_match_finite_differences) {
    for (int t = 0; t < TL_COUNT; t++)
        for (int mode = 0; mode < 2; mode++) {
            Model *m = layer_model((TestLayer)t);
            if (t >= TL_BLK_CONV_POOL) { /* make sure the blocked path is what is checked */
                int blocked = 0;
                for (int i = 0; i < m->nl; i++) blocked += m->L[i].blk > 0;
                T_ASSERT_MSG(blocked > 0, "%s: no layer is channel-blocked", TL_NAMES[t]);
            }
            char label[64];
            snprintf(label, sizeof label, "%s/%s", TL_NAMES[t], mode ? "train" : "infer");
            if (t >= TL_BLK_CONV_POOL) directional_check(m, 4, mode, 1e-2, label);
            else fd_check_model(m, 3, mode, 40, 1e-2, label);
            model_free(m);
        }
}

/* the canary: a checker that passes a wrong gradient is worthless */
static void corrupted_layer_check(void) {
    Model *m = layer_model(TL_CONV);
    Probe p = probe_make(m, 3, FWD_TRAIN, 11);
    probe_grad(&p);
    Layer *conv = model_param_layer(m, 0);
    conv->dW[4] *= 1.5f; /* one wrong element */
    fd_check_elems(&p, conv->W, conv->dW, layer_w_n(conv), 1000, 1e-2, "corrupted conv dW");
    probe_free(&p);
    model_free(m);
}
TEST(gradient_checker_canary_flags_corruption) { T_ASSERT(test_expect_failure(corrupted_layer_check)); }

/* whole networks: directional derivatives along random directions, per parameter tensor and input */
static void directional_check(Model *m, int n, int mode, double rtol, const char *label) {
    Probe p = probe_make(m, n, mode, 21);
    p.use_ce = 1;
    probe_grad(&p);
    float *g = xmalloc(sizeof(float) * m->n_params);
    memcpy(g, m->grads, sizeof(float) * m->n_params);
    long D = (long)n * model_in_dim(m);
    float *gx = xmalloc(sizeof(float) * D);
    memcpy(gx, p.w->dx, sizeof(float) * D);
    Rng r;
    rng_seed(&r, 5, 4, 0);
    int checked = 0, nonzero = 0;
    for (int t = -1; t < m->ntensors; t++) {
        float *v; const float *gv; long cnt;
        char what[128];
        if (t < 0) { v = p.x; gv = gx; cnt = D; snprintf(what, sizeof what, "%s d/dx", label); }
        else {
            Tensor *T = &m->tensors[t];
            if (T->kind != TK_PARAM) continue;
            v = T->data; gv = g + (T->data - m->params); cnt = T->n;
            snprintf(what, sizeof what, "%s d/d%s", label, T->name);
        }
        float *dir = xmalloc(sizeof(float) * cnt), *save = xmalloc(sizeof(float) * cnt);
        memcpy(save, v, sizeof(float) * cnt);
        double gd = 0, nrm = 0;
        for (long i = 0; i < cnt; i++) { dir[i] = 2 * rng_uniform(&r) - 1; nrm += (double)dir[i] * dir[i]; }
        nrm = sqrt(nrm);
        for (long i = 0; i < cnt; i++) { dir[i] = (float)(dir[i] / nrm); gd += (double)gv[i] * dir[i]; }
        /* The best step depends on curvature (train-mode batch-norm over 8 examples is strongly
         * curved): truncation error falls with h, float32 rounding grows as 1/h. Take the step whose
         * difference is closest: a wrong gradient misses at every step. */
        static const double steps[5] = {1e-2, 1e-3, 3e-4, 1e-4, 3e-5};
        double fd = 0;
        for (int k = 0; k < 5; k++) {
            double h = steps[k];
            for (long i = 0; i < cnt; i++) v[i] = save[i] + (float)h * dir[i];
            double jp = probe_J(&p);
            for (long i = 0; i < cnt; i++) v[i] = save[i] - (float)h * dir[i];
            double jm = probe_J(&p);
            double f = (jp - jm) / (2 * h);
            if (k == 0 || fabs(f - gd) < fabs(fd - gd)) fd = f;
        }
        memcpy(v, save, sizeof(float) * cnt);
        float got = (float)gd;
        /* Whole networks stack dozens of float32 layers and (train mode) batch-norm over 8 examples:
         * measured FD noise reaches a few % here, so the band is 2e-3 + 10%. Wiring errors (a lost
         * residual branch, a wrong kernel flip) are O(1) off; the per-layer test above is the tight one
         * (its blocked models: 1%, which a 5% error in one layer's backward exceeds). */
        T_ALLCLOSE(what, &got, &fd, 1, 2e-3, rtol);
        checked++;
        nonzero += fabs(gd) > 1e-7;
        free(dir); free(save);
    }
    T_ASSERT_MSG(nonzero > checked / 2, "%s: gradients are mostly zero (%d of %d)", label, nonzero, checked);
    free(g); free(gx);
    probe_free(&p);
}

TEST(model_gradients_every_architecture) {
    static const struct { const char *arch; int c, h, w; float width; } cases[] = {
        {"mlp", 1, 8, 8, 1}, {"lenet5", 1, 16, 16, 1}, {"alexnet", 3, 8, 8, 0.05f},
        {"vgg16", 3, 32, 32, 0.03f}, {"resnet18", 2, 8, 8, 0.06f}, {"resnet20", 3, 8, 8, 0.25f},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        for (int mode = 0; mode < 2; mode++) {
            ModelSpec s;
            model_spec_default(&s, cases[i].arch, cases[i].c, cases[i].h, cases[i].w, 4);
            s.width = cases[i].width;
            snprintf(s.hidden, sizeof s.hidden, "12,10");
            Model *m = model_create(&s, NULL, NULL, 17);
            T_ASSERT_MSG(m != NULL, "%s: %s", cases[i].arch, err_msg());
            if (!m) continue;
            char label[64];
            snprintf(label, sizeof label, "%s/%s", cases[i].arch, mode ? "train" : "infer");
            directional_check(m, 8, mode, 1e-1, label);
            model_free(m);
        }
}

TEST(lenet5_has_61706_parameters) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", 1, 28, 28, 10);
    Model *m = model_create(&s, NULL, NULL, 0);
    T_EQ_INT(m->n_params, 61706);
    T_EQ_INT(model_nparam_layers(m), 5);
    model_free(m);
    model_spec_default(&s, "mlp", 1, 28, 28, 10);
    m = model_create(&s, NULL, NULL, 0);
    T_EQ_INT(m->n_params, 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
    model_free(m);
}

TEST(softmax_ce_is_stable_and_correct) {
    float z[6] = {1000.0f, 0.0f, -1000.0f, 0.5f, 0.25f, -0.25f};
    int32_t y[2] = {0, 2};
    float d[6], li[2];
    uint8_t ok[2];
    double l = loss_softmax_ce(z, y, 2, 3, 0.5f, d, li, ok);
    T_NEAR(li[0], 0.0, 1e-6);
    double lse = log(exp(0.5) + exp(0.25) + exp(-0.25));
    T_NEAR(li[1], lse + 0.25, 1e-6);
    T_NEAR(l, (lse + 0.25) / 2, 1e-6);
    T_NEAR(d[5], 0.5 * (exp(-0.25 - lse) - 1), 1e-6);
    T_EQ_INT(ok[0], 1);
    T_EQ_INT(ok[1], 0);
    T_ASSERT(isfinite(d[0]) && isfinite(d[2]));
}

/* ------------------------------------------------------------------ checkpoints */

static Model *small_lenet(const char *rule, uint64_t seed) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", 1, 16, 16, 5);
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = seed;
    return model_create(&s, rule_find(rule), &ro, seed);
}

TEST(checkpoint_round_trip_is_bitwise) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt.ckpt", test_tmpdir());
    Model *m = small_lenet("frsf", 3);
    m->L[0].mean[0] = 0.25f; m->L[0].std[0] = 0.5f;
    T_ASSERT(ckpt_save(path, m, NULL) == 0);
    CkptMeta meta;
    Model *m2 = ckpt_load(path, NULL, NULL, 0, 1, &meta);
    T_ASSERT_MSG(m2 != NULL, "%s", err_msg());
    if (!m2) { model_free(m); return; }
    T_ASSERT(str_eq(meta_get(&meta, "rule"), "frsf"));
    T_ASSERT(memcmp(m->arena, m2->arena, sizeof(float) * m->n_arena) == 0);
    Probe p = probe_make(m, 4, FWD_INFER, 1), p2 = probe_make(m2, 4, FWD_INFER, 1);
    float *a = model_forward(m, p.w, p.x, 4, FWD_INFER), *b = model_forward(m2, p2.w, p2.x, 4, FWD_INFER);
    T_ASSERT(memcmp(a, b, sizeof(float) * 4 * 5) == 0);
    char tmp[600];
    tmp_path(path, tmp, sizeof tmp);
    T_ASSERT(access(tmp, F_OK) != 0); /* no temporary left behind */
    probe_free(&p); probe_free(&p2);
    model_free(m); model_free(m2);
}

static void expect_load_error(const char *path, const char *needle) {
    err_clear();
    Model *m = ckpt_load(path, NULL, NULL, 0, 0, NULL);
    T_ASSERT_MSG(m == NULL, "loading %s should fail", path);
    model_free(m);
    T_CONTAINS(err_msg(), needle);
    T_CONTAINS(err_msg(), path);
    T_ASSERT_MSG(strchr(err_msg(), '\n') == NULL, "one line: %s", err_msg());
}

TEST(checkpoint_corruptions_give_one_line_errors) {
    const char *d = test_tmpdir();
    char good[512], p[512], cmd[2200];
    snprintf(good, sizeof good, "%s/good.ckpt", d);
    Model *m = small_lenet("bp", 1);
    T_ASSERT(ckpt_save(good, m, NULL) == 0);
    model_free(m);
    snprintf(p, sizeof p, "%s/missing.ckpt", d);
    expect_load_error(p, "No such file");
    expect_load_error(d, "directory");
    snprintf(p, sizeof p, "%s/trunc.ckpt", d);
    snprintf(cmd, sizeof cmd, "head -c 20000 %s > %s", good, p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "");
    snprintf(p, sizeof p, "%s/text.ckpt", d);
    snprintf(cmd, sizeof cmd, "echo 'not a database at all, just text padding padding padding padding' > %s", p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "not");
    snprintf(p, sizeof p, "%s/foreign.ckpt", d);
    snprintf(cmd, sizeof cmd, "sqlite3 %s 'CREATE TABLE other(x); INSERT INTO other VALUES(1);'", p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "not a Concord checkpoint");
    snprintf(p, sizeof p, "%s/shape.ckpt", d);
    snprintf(cmd, sizeof cmd, "cp %s %s && sqlite3 %s \"UPDATE tensor SET shape='6,1,5,4' WHERE name='conv1.weight'\"", good, p, p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "shape");
    snprintf(p, sizeof p, "%s/blob.ckpt", d);
    snprintf(cmd, sizeof cmd, "cp %s %s && sqlite3 %s \"UPDATE tensor SET data=substr(data,1,10) WHERE name='fc1.weight'\"", good, p, p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "bytes");
    snprintf(p, sizeof p, "%s/format.ckpt", d);
    snprintf(cmd, sizeof cmd, "cp %s %s && sqlite3 %s \"UPDATE meta SET value='concord-checkpoint-99' WHERE key='format'\"", good, p, p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "not supported");
    snprintf(p, sizeof p, "%s/arch.ckpt", d);
    snprintf(cmd, sizeof cmd, "cp %s %s && sqlite3 %s \"UPDATE meta SET value='lenet7' WHERE key='arch'\"", good, p, p);
    T_ASSERT(system(cmd) == 0);
    expect_load_error(p, "lenet7");
}

TEST(cli_reports_bad_checkpoint_and_unknown_rule) {
    T_CLI_FAILS("nope.ckpt", "finetune --from %s/nope.ckpt --rule usf --dataset synthetic:200 --val 20 --no-db", test_tmpdir());
    T_CLI_FAILS("unknown rule 'xyz'", "train --rule xyz --dataset synthetic:200 --val 20 --no-db");
    T_CLI_FAILS("unknown option --bogus", "train --epochs 1 --bogus 3");
}

TEST(divergence_is_detected_and_reported) {
    char out[8192], cmd[1024];
    snprintf(cmd, sizeof cmd, "%s train --model mlp --dataset synthetic:600 --val 100 --epochs 3 --lr 90 --momentum 0.99 --no-db --probe 0", test_exe());
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT(rc != 0);
    T_CONTAINS(out, "diverged");
    T_CONTAINS(out, "epoch");
}

TEST(cli_train_end_to_end_on_synthetic) {
    char out[16384], cmd[1024], ck[512];
    snprintf(ck, sizeof ck, "%s/e2e.ckpt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s train --model lenet5 --dataset synthetic:1200 --val 200 --epochs 3 --lr 0.05 --rule bp --seed 1 --out %s --no-db", test_exe(), ck);
    int rc = test_run(cmd, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_CONTAINS(out, "test accuracy");
    CkptMeta mt;
    T_ASSERT(ckpt_read_meta(ck, &mt) == 0);
    T_ASSERT(str_eq(meta_get(&mt, "epoch"), "3"));
    double acc = meta_get(&mt, "test_acc") ? atof(meta_get(&mt, "test_acc")) : 0;
    T_ASSERT_MSG(acc > 0.5, "synthetic data should be learnable: test accuracy %.3f", acc);
}

TEST(divergence_guard_max_loss) {
    char out[8192], cmd[1024];
    /* cross-entropy starts near log 10 = 2.3: a 0.5 ceiling must stop training at the first batch */
    snprintf(cmd, sizeof cmd, "%s train --model mlp --dataset synthetic:300 --val 50 --epochs 1 --max-loss 0.5 --no-db --probe 0", test_exe());
    int rc = test_run(cmd, out, sizeof out);
    T_ASSERT(rc != 0);
    T_CONTAINS(out, "exceeds --max-loss");
    T_CONTAINS(out, "batch 1");
    snprintf(cmd, sizeof cmd, "%s train --model mlp --dataset synthetic:300 --val 50 --epochs 1 --max-loss 0 --no-db --probe 0", test_exe());
    T_EQ_INT(test_run(cmd, out, sizeof out), 0);
}

/* augmentation: every output pixel is either padding (0) or the source pixel at one fixed offset,
 * horizontally mirrored or not, and the label is untouched */
TEST(augment_random_crop_and_flip) {
    Dataset d = {0};
    d.n = 3; d.c = 3; d.h = 32; d.w = 32; d.classes = 2;
    int D = d.c * d.h * d.w;
    d.x = xmalloc(sizeof(float) * d.n * D);
    d.y = xmalloc(sizeof(int32_t) * d.n);
    for (long i = 0; i < (long)d.n * D; i++) d.x[i] = (float)(i + 1) / (float)(d.n * D + 1); /* all distinct, > 0 */
    for (int i = 0; i < d.n; i++) d.y[i] = i % 2;
    float *out = xmalloc(sizeof(float) * d.n * D);
    int32_t y[3];
    int idx[3] = {0, 1, 2}, moved = 0, flipped = 0;
    for (int ep = 0; ep < 6; ep++) {
        batch_fill(&d, idx, 3, out, y, 1, 9, ep);
        for (int i = 0; i < 3; i++) {
            T_EQ_INT(y[i], d.y[i]);
            const float *src = d.x + (long)i * D, *o = out + (long)i * D;
            int ok = 0;
            for (int flip = 0; flip < 2 && !ok; flip++)
                for (int dy = -4; dy <= 4 && !ok; dy++)
                    for (int dx = -4; dx <= 4 && !ok; dx++) {
                        int good = 1;
                        for (int c = 0; c < 3 && good; c++)
                            for (int r = 0; r < 32 && good; r++)
                                for (int q = 0; q < 32 && good; q++) {
                                    int sy = r + dy, sx = (flip ? 31 - q : q) + dx;
                                    float want = (sy < 0 || sy > 31 || sx < 0 || sx > 31) ? 0.0f : src[(c * 32 + sy) * 32 + sx];
                                    good = o[(c * 32 + r) * 32 + q] == want;
                                }
                        if (good) { ok = 1; moved += dy || dx; flipped += flip; }
                    }
            T_ASSERT_MSG(ok, "example %d epoch %d: not a padded crop/flip of the source", i, ep);
        }
    }
    T_ASSERT(moved > 0 && flipped > 0); /* the augmentation really happens */
    batch_fill(&d, idx, 3, out, y, 0, 9, 0);
    T_ASSERT(memcmp(out, d.x, sizeof(float) * 3 * D) == 0);
    free(out);
    dataset_close(&d);
}

/* ---- the thread pool: hand-offs by polling, sleeping when a wait is long ----
 * Regions of every length around the pool's 200 us polling window and gaps between them as long (so
 * workers fall asleep between regions and the caller while waiting for them): every thread runs every
 * region exactly once, in order, and nothing hangs: a lost wake-up would, so an alarm ends the test binary
 * (non-zero exit) after 60 s; dropping the sleepers' announcement in threads.c hangs it (checked). */
typedef struct { int runs[POOL_MAX]; int region; int bad; long work_us[POOL_MAX]; } PoolProbe;
static void busy_us(long us) {
    double t0 = now_seconds();
    while ((now_seconds() - t0) * 1e6 < us) {}
}
static void task_probe(void *arg, int t, int T) {
    PoolProbe *k = arg;
    if (k->runs[t] != k->region) __atomic_store_n(&k->bad, 1, __ATOMIC_RELAXED); /* missed or repeated a region */
    k->runs[t]++;
    busy_us(k->work_us[t]);
}
TEST(pool_hands_off_every_region_once_polling_or_asleep) {
    const long lens[] = {0, 20, 150, 260, 450};
    alarm(60);
    for (int T = 2; T <= 3; T++) {
        struct Pool *p = pool_create(T);
        PoolProbe k;
        memset(&k, 0, sizeof k);
        for (int r = 0; r < 300; r++) {
            for (int t = 0; t < T; t++) k.work_us[t] = lens[(r * (t + 1) + t) % 5]; /* caller or worker the slow one */
            k.region = r;
            pool_run(p, task_probe, &k);
            for (int t = 0; t < T; t++) T_ASSERT_MSG(k.runs[t] == r + 1, "T=%d region %d: thread %d ran %d regions", T, r, t, k.runs[t]);
            if (r % 7 == 3) busy_us(r % 2 ? 300 : 100); /* a gap past the polling window: workers sleep */
        }
        T_ASSERT(!k.bad);
        pool_free(p);
    }
    alarm(0);
}

/* pool_sync: a barrier inside a region. Each round every thread adds one to a shared count, waits, and
 * must then see all T additions of that round (and not yet any of the next); one thread is slow to arrive
 * (past the 200 us spin: the yielding branch) in some rounds. The canary replaces the barrier by nothing
 * and delays the workers' arrival by 2 ms: thread 0 then reads its own addition only. */
typedef struct { struct Pool *p; int rounds, bad, skip; long count; } SyncProbe;
static void task_sync(void *arg, int t, int T) {
    SyncProbe *k = arg;
    for (int r = 0; r < k->rounds; r++) {
        if (k->skip && t > 0) busy_us(2000);
        else if (r % 5 == (t % 5)) busy_us(r % 2 ? 30 : 260);
        __atomic_add_fetch(&k->count, 1, __ATOMIC_RELAXED);
        if (!k->skip) pool_sync(k->p);
        long c = __atomic_load_n(&k->count, __ATOMIC_RELAXED);
        if (c != (long)(r + 1) * T) __atomic_store_n(&k->bad, 1, __ATOMIC_RELAXED);
        if (!k->skip) pool_sync(k->p); /* nobody starts round r + 1 before everyone has read round r */
    }
}
static void sync_rounds(int T, int skip) {
    SyncProbe k = {pool_create(T), skip ? 1 : 200, 0, skip, 0};
    pool_run(k.p, task_sync, &k);
    T_ASSERT_MSG(!k.bad, "T=%d: a thread passed pool_sync before every thread had arrived", T);
    pool_free(k.p);
}
TEST(pool_sync_holds_every_thread_until_all_arrive) {
    alarm(60);
    for (int T = 2; T <= 4; T++) sync_rounds(T, 0);
    pool_sync(NULL); /* no pool (one thread): returns */
    alarm(0);
}
static void unsynced(void) { sync_rounds(2, 1); }
TEST(pool_sync_canary_flags_a_missing_barrier) { T_ASSERT(test_expect_failure(unsynced)); }

/* The region profile (concord bench --regions): each thread's time inside a region is at least the work it
 * was given (busy_us waits at least that long) and the region's wall time at least its slowest thread's;
 * every region is counted once under its task's name, a run without a pool as one thread; nothing is
 * counted while the profile is off, and turning it on clears it. */
static void task_probe_too(void *arg, int t, int T) { task_probe(arg, t, T); }
TEST(region_profile_counts_every_region_and_each_threads_time) {
    alarm(60);
    struct Pool *p = pool_create(3);
    PoolProbe k;
    memset(&k, 0, sizeof k);
    k.work_us[0] = 100, k.work_us[1] = 2000, k.work_us[2] = 600;
    pool_run(p, task_probe, &k); /* off: not counted */
    k.region++;
    pool_profile(1);
    for (int r = 0; r < 4; r++, k.region++) pool_run(p, task_probe, &k);
    PoolProbe k1;
    memset(&k1, 0, sizeof k1);
    k1.work_us[0] = 300;
    for (int r = 0; r < 2; r++, k1.region++) pool_run(NULL, task_probe_too, &k1);
    RegionProfile rp[4];
    const int n = pool_profile_get(rp, 4);
    pool_profile(0);
    T_EQ_INT(n, 2);
    T_ASSERT(!k.bad && !k1.bad);
    T_ASSERT(strcmp(rp[0].site, "task_probe") == 0);
    T_EQ_INT(rp[0].calls, 4);
    T_EQ_INT(rp[0].threads, 3);
    for (int t = 0; t < 3; t++) {
        T_ASSERT_MSG(rp[0].thread_s[t] >= 4 * k.work_us[t] * 1e-6, "thread %d: %.6f s inside for %ld us x 4", t, rp[0].thread_s[t], k.work_us[t]);
        T_ASSERT(rp[0].wall_s >= rp[0].thread_s[t]);
    }
    T_ASSERT(strcmp(rp[1].site, "task_probe_too") == 0);
    T_EQ_INT(rp[1].calls, 2);
    T_EQ_INT(rp[1].threads, 1);
    T_ASSERT(rp[1].thread_s[0] >= 600e-6 && rp[1].wall_s == rp[1].thread_s[0]);
    pool_run(p, task_probe, &k); /* off again: nothing counted, and on clears the table */
    T_EQ_INT(pool_profile_get(rp, 4), 2);
    pool_profile(1);
    T_EQ_INT(pool_profile_get(rp, 4), 0);
    pool_profile(0);
    pool_free(p);
    alarm(0);
}

/* ------------------------------------------------------------------ predict passes */

/* one small model of every architecture (the predict and backward-row tests) */
static const struct { const char *arch; int c, h, w; float width; } PREDICT_CASES[] = {
    {"mlp", 1, 8, 8, 1}, {"lenet5", 1, 28, 28, 1}, {"alexnet", 3, 8, 8, 0.05f},
    {"vgg16", 3, 32, 32, 0.03f}, {"resnet18", 2, 8, 8, 0.06f}, {"resnet20", 3, 8, 8, 0.25f},
};
static Model *case_model(size_t i) {
    ModelSpec s;
    model_spec_default(&s, PREDICT_CASES[i].arch, PREDICT_CASES[i].c, PREDICT_CASES[i].h, PREDICT_CASES[i].w, 5);
    s.width = PREDICT_CASES[i].width;
    snprintf(s.hidden, sizeof s.hidden, "12,10");
    Model *m = model_create(&s, NULL, NULL, 23);
    T_ASSERT_MSG(m != NULL, "%s: %s", PREDICT_CASES[i].arch, err_msg());
    return m;
}

/* FWD_PREDICT (pass.c) against FWD_INFER on the same Work: every logit bit for bit, for every architecture,
 * at 1 and 2 threads, on a batch that is not a whole number of PASS_GROUP groups. Returns the mismatches. */
static long predict_vs_infer(size_t i, int threads, int n) {
    Model *m = case_model(i);
    if (!m) return 1;
    const int K = model_out_dim(m), D = model_in_dim(m);
    float *x = xmalloc(sizeof(float) * n * D), *want = xmalloc(sizeof(float) * n * K);
    Rng r;
    rng_seed(&r, 29, 3, (uint64_t)n);
    for (long j = 0; j < (long)n * D; j++) x[j] = rng_uniform(&r);
    blas_set_threads(threads);
    Work *w = work_create(m, n + 3);
    blas_set_threads(1);
    memcpy(want, model_forward(m, w, x, n, FWD_INFER), sizeof(float) * n * K);
    const float *got = model_forward(m, w, x, n, FWD_PREDICT);
    long bad = 0;
    for (long j = 0; j < (long)n * K; j++) bad += memcmp(&got[j], &want[j], sizeof(float)) != 0;
    T_EQ_INT(w->predicted, 1);
    model_forward(m, w, x, n, FWD_INFER); /* a backward may follow again */
    T_EQ_INT(w->predicted, 0);
    work_free(w);
    model_free(m);
    free(x); free(want);
    return bad;
}
/* fn(case, threads, samples, variant) == 0 on every PREDICT_CASES model, both convolution paths (oneDNN's
   blocked layers, im2col), ReLUs fused into their neighbours (sharing their rows) and as layers of their
   own, 1 and 2 threads, 1 and 37 samples, variants 0 .. nv-1 (named by vname) */
static void every_case(long (*fn)(size_t, int, int, int), int nv, const char *const *vname, const char *what) {
    for (int path = CONV_DNNL; path <= CONV_IM2COL; path++)
        for (int fuse = 1; fuse >= 0; fuse--) {
            conv_path_set(path);
            relu_fusion_set(fuse);
            for (size_t i = 0; i < ARRAY_LEN(PREDICT_CASES); i++)
                for (int T = 1; T <= 2; T++)
                    for (int n = 1; n <= 37; n += 36)
                        for (int v = 0; v < nv; v++) {
                            long bad = fn(i, T, n, v);
                            T_ASSERT_MSG(bad == 0, "%s (%s, ReLU %s), %d threads, %d samples%s%s: %ld %s",
                                         PREDICT_CASES[i].arch, path == CONV_DNNL ? "oneDNN" : "im2col",
                                         fuse ? "fused" : "a layer", T, n, vname ? ", " : "", vname ? vname[v] : "",
                                         bad, what);
                        }
        }
    conv_path_set(CONV_DNNL);
    relu_fusion_set(1);
}
static long predict_case(size_t i, int T, int n, int v) { return predict_vs_infer(i, T, n); }
TEST(predict_pass_gives_the_inference_logits_bitwise) {
    every_case(predict_case, 1, NULL, "logits differ from FWD_INFER's");
}
/* the canary: a predict pass that keeps no layer's rows (the run's last layer is then overwritten by later
   groups, so the layers after the run read the wrong samples) must be seen by the same comparison */
static void predict_keeping_nothing(void) {
    pass_predict_keep_none(1);
    long bad = predict_vs_infer(1, 1, 37) + predict_vs_infer(5, 2, 37); /* lenet5, resnet20 */
    pass_predict_keep_none(0);
    T_ASSERT_MSG(bad == 0, "%ld logits differ", bad);
}
TEST(predict_pass_canary_flags_rows_not_kept) { T_ASSERT(test_expect_failure(predict_keeping_nothing)); }

/* LeNet-5 (24 samples) on a fresh, zeroed Work: after a forward in `mode` (backward 0), or a training
 * forward and a backward with BW_PARAMS | flags (backward 1), how many samples' rows of conv1's output
 * (forward) or output gradient (backward) hold a non-zero value; -1 when the model cannot be built. */
static long lenet5_conv1_rows(int backward, int mode_or_flags) {
    ModelSpec s;
    model_spec_default(&s, "lenet5", 1, 28, 28, 10);
    Model *m = model_create(&s, NULL, NULL, 3);
    T_ASSERT(m != NULL);
    if (!m) return -1;
    const int n = 24, D = model_in_dim(m), K = model_out_dim(m);
    int conv1 = -1;
    for (int i = 0; i < m->nl && conv1 < 0; i++)
        if (m->L[i].kind == L_CONV) conv1 = i;
    T_ASSERT(conv1 >= 0);
    if (conv1 < 0) { model_free(m); return -1; }
    float *x = xmalloc(sizeof(float) * n * D), *d = xmalloc(sizeof(float) * n * K);
    for (long j = 0; j < (long)n * D; j++) x[j] = 0.25f + 0.5f * (float)((j * 7919) % 101) / 101;
    for (long j = 0; j < (long)n * K; j++) d[j] = (float)((j * 31) % 7) - 3.0f;
    blas_set_threads(1);
    Work *w = work_create(m, n);
    model_forward(m, w, x, n, backward ? FWD_TRAIN : mode_or_flags);
    if (backward) model_backward(m, w, d, BW_PARAMS | mode_or_flags);
    const float *rows = backward ? w->grad[conv1] : w->act[conv1];
    const long on = out_n(&m->L[conv1]);
    long nonzero = 0;
    for (int b = 0; b < n; b++) {
        int any = 0;
        for (long j = 0; j < on && !any; j++) any = rows[b * on + j] != 0;
        nonzero += any;
    }
    work_free(w);
    free(x); free(d);
    model_free(m);
    return nonzero;
}
/* A predict pass really runs in the first group's rows: LeNet-5's conv1 output holds values in the first
 * PASS_GROUP (8) samples' rows only, while an inference pass fills every row. */
TEST(predict_pass_keeps_only_the_first_groups_rows_inside_a_run) {
    T_EQ_INT(lenet5_conv1_rows(0, FWD_PREDICT), 8);
    T_EQ_INT(lenet5_conv1_rows(0, FWD_INFER), 24);
}

/* ------------------------------------------------------------------ wide linear layers on several threads */

/* One training pass (FWD_TRAIN, then BW_PARAMS | BW_INPUT) of `rule` on a fresh model, on a Work of T
 * threads whose weight-gradient partials (w->gpart) hold NaN before the backward: a layer that sums
 * partials must have written them first. What it returns: logits, the input gradient, m->grads, one
 * after the other; *batch_regions: the pass's whole-batch regions (pool profile). */
static float *wide_pass(const char *arch, const char *rule, int T, int n, long *len, long *batch_regions) {
    ModelSpec s;
    model_spec_default(&s, arch, arch[0] == 'm' ? 1 : 3, 8, 8, 4);
    snprintf(s.hidden, sizeof s.hidden, "40,24");
    s.width = 0.1f; /* alexnet: a 51-wide classifier */
    RuleOpts ro;
    rule_opts_default(&ro);
    ro.seed = 5;
    Model *m = model_create(&s, rule_find(rule), &ro, 13);
    CHECK(m != NULL);
    const int K = model_out_dim(m), D = model_in_dim(m);
    float *x = xmalloc(sizeof(float) * n * D), *d = xmalloc(sizeof(float) * n * K);
    int32_t *y = xmalloc(sizeof(int32_t) * n);
    Rng r;
    rng_seed(&r, 31, 3, 0);
    for (long j = 0; j < (long)n * D; j++) x[j] = rng_uniform(&r);
    for (int j = 0; j < n; j++) y[j] = (int32_t)rng_below(&r, (uint32_t)K);
    blas_set_threads(T);
    Work *w = work_create(m, n);
    blas_set_threads(1);
    for (long j = 0; j < (long)(w->threads - 1) * m->n_params; j++) w->gpart[j] = NAN;
    pool_profile(1);
    const float *out = model_forward(m, w, x, n, FWD_TRAIN);
    loss_softmax_ce(out, y, n, K, 1.0f / n, d, NULL, NULL);
    model_refresh_feedback(m);
    model_backward(m, w, d, BW_PARAMS | BW_INPUT);
    RegionProfile rp[16];
    const int ns = pool_profile_get(rp, 16);
    pool_profile(0);
    *batch_regions = 0;
    for (int i = 0; i < ns && i < 16; i++)
        if (strstr(rp[i].site, "_batch")) *batch_regions += rp[i].calls;
    *len = (long)n * K + (long)n * D + m->n_params;
    float *o = xmalloc(sizeof(float) * *len);
    memcpy(o, out, sizeof(float) * n * K);
    memcpy(o + n * K, w->dx, sizeof(float) * n * D);
    memcpy(o + n * K + n * D, m->grads, sizeof(float) * m->n_params);
    work_free(w);
    model_free(m);
    free(x); free(d); free(y);
    return o;
}
static int g_wide_corrupt; /* the canary: one gradient 1% off */
/* at T threads against 1: the same values but for summation order; at T threads twice: bit for bit */
static void wide_compare(const char *arch, const char *rule, int T, int n) {
    long len, len1, batch, batch1;
    float *a = wide_pass(arch, rule, T, n, &len, &batch), *b = wide_pass(arch, rule, T, n, &len1, &batch1);
    float *one = wide_pass(arch, rule, 1, n, &len1, &batch1);
    T_ASSERT_MSG(batch > 0, "%s %s, %d threads: no whole-batch region ran", arch, rule, T);
    T_ASSERT_MSG(memcmp(a, b, sizeof(float) * len) == 0, "%s %s, %d threads: two runs differ", arch, rule, T);
    if (g_wide_corrupt) a[len - 1 - len / 7] *= 1.01f;
    double *ref = xmalloc(sizeof(double) * len), scale = 0;
    for (long j = 0; j < len; j++) { ref[j] = one[j]; scale = fabs(ref[j]) > scale ? fabs(ref[j]) : scale; }
    char what[96];
    snprintf(what, sizeof what, "%s %s, %d threads vs 1: logits, d/dx, d/dparams", arch, rule, T);
    T_ALLCLOSE(what, a, ref, len, 1e-5 * scale, 1e-4);
    free(a); free(b); free(one); free(ref);
}
/* Training on several threads runs linear layers with at least as many outputs as samples over the whole
 * batch, split by output feature (layers/linear.c): the MLP's hidden layers (40 and 24 wide, 20 samples)
 * and AlexNet's classifier, through W (bp), fixed feedback (fa), sign feedback (usf) and the direct
 * projection of the output error (dfa); 2 and 3 threads, and more threads than a layer has outputs. */
TEST(wide_linear_layers_train_over_the_whole_batch_on_several_threads) {
    static const char *rules[] = {"bp", "fa", "usf", "dfa"};
    for (size_t r = 0; r < ARRAY_LEN(rules); r++)
        for (int T = 2; T <= 3; T++) {
            wide_compare("mlp", rules[r], T, 20);
            wide_compare("alexnet", rules[r], T, 20);
        }
    wide_compare("mlp", "bp", 16, 20); /* 16 threads: the 4 classes' layer with rows for 4 of them */
}
static void wide_corrupted(void) {
    g_wide_corrupt = 1;
    wide_compare("mlp", "bp", 2, 20);
    g_wide_corrupt = 0;
}
TEST(wide_linear_canary_flags_one_wrong_gradient) { T_ASSERT(test_expect_failure(wide_corrupted)); }

/* ------------------------------------------------------------------ backward runs sharing gradient rows */

/* A backward pass (pass.c task_bwd_local) keeps the output gradients of a run's inner layers in the rows of
 * the thread's first group; BW_GRADS keeps every row. The same operations on the same values, so the same
 * parameter and input gradients bit for bit. Returns the bits that differ. */
static long bwd_shared_vs_whole(size_t i, int threads, int n, int mode, int flags) {
    Model *m = case_model(i);
    if (!m) return 1;
    const int K = model_out_dim(m), D = model_in_dim(m);
    float *x = xmalloc(sizeof(float) * n * D), *d = xmalloc(sizeof(float) * n * K);
    float *want = xmalloc(sizeof(float) * (m->n_params + (long)n * D));
    Rng r;
    rng_seed(&r, 37, 3, (uint64_t)n);
    for (long j = 0; j < (long)n * D; j++) x[j] = rng_uniform(&r);
    for (long j = 0; j < (long)n * K; j++) d[j] = rng_uniform(&r) - 0.5f;
    blas_set_threads(threads);
    Work *w = work_create(m, n);
    blas_set_threads(1);
    long bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        model_forward(m, w, x, n, mode);
        memset(m->grads, 0, sizeof(float) * m->n_params);
        memset(w->dx, 0, sizeof(float) * n * D);
        model_backward(m, w, d, flags | (pass == 0 ? BW_GRADS : 0));
        float *got = pass == 0 ? want : xmalloc(sizeof(float) * (m->n_params + (long)n * D));
        memcpy(got, m->grads, sizeof(float) * m->n_params);
        memcpy(got + m->n_params, w->dx, sizeof(float) * n * D);
        if (pass == 1) {
            for (long j = 0; j < m->n_params + (long)n * D; j++) bad += memcmp(&got[j], &want[j], sizeof(float)) != 0;
            free(got);
        }
    }
    work_free(w);
    model_free(m);
    free(x); free(d); free(want);
    return bad;
}
static long bwd_shared_case(size_t i, int T, int n, int train) {
    return bwd_shared_vs_whole(i, T, n, train ? FWD_TRAIN : FWD_INFER, train ? BW_PARAMS | BW_INPUT : BW_INPUT | BW_TRUE);
}
/* every case of every_case, for a training pass (weight and input gradients) and an attack's (input
   gradient through W) */
TEST(backward_runs_share_gradient_rows_with_the_same_bits) {
    static const char *const passes[] = {"attack", "training"};
    every_case(bwd_shared_case, 2, passes, "gradients differ from BW_GRADS'");
}
/* the canary: a run that shares every gradient's rows (the run's top layer then reads rows its writer,
   outside the run, never wrote there) must be seen by the same comparison */
static void bwd_sharing_everything(void) {
    pass_bwd_shift_all(1);
    long bad = bwd_shared_case(1, 1, 37, 1) + bwd_shared_case(5, 2, 37, 0);
    pass_bwd_shift_all(0);
    T_ASSERT_MSG(bad == 0, "%ld gradients differ", bad);
}
TEST(backward_rows_canary_flags_a_gradient_shared_too_far) { T_ASSERT(test_expect_failure(bwd_sharing_everything)); }

/* The rows really are shared: LeNet-5's conv1 output gradient holds values in the first PASS_GROUP (8)
 * samples' rows only after a training backward, in every row with BW_GRADS. */
TEST(backward_runs_keep_inner_gradients_in_the_first_groups_rows) {
    T_EQ_INT(lenet5_conv1_rows(1, 0), 8);
    T_EQ_INT(lenet5_conv1_rows(1, BW_GRADS), 24);
}
