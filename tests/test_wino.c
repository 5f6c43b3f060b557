/* test_wino.c -- the Winograd F(2x2, 3x3), F(2x2, 5x5) and F(4x4, 3x3) convolutions (layers/conv_wino.c)
 * against the direct stride-1 "same" convolution summed in double, on channel-blocked tensors: the forward
 * pass (bias, ReLU), the input gradient (the weights flipped and transposed: wino_weights(flip)) and the
 * weight gradient (wino_dw), blocks of 8 and
 * 16, maps of 1x1 to 16x14 (odd sizes leave partial tiles), more images than one round of WINO_TILES
 * tiles, at every vector level this CPU has; also unpadded ("valid") convolutions and input channels that
 * leave padding lanes, as conv.c runs LeNet-5's conv2 (the lanes hold NaN: a sum that read them fails).
 * Each output's error is measured against the sum of |terms| of its direct sum (the scale float rounding
 * works on). Canaries: one wrong output, one wrong weight gradient is caught. */
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "harness/layers/conv_wino.h"
#include "harness/layers/kernels.h"
#include "tests/test.h"

static int g_corrupt;

/* x blocked (N, ceil(C/V), H, W, V) at (n, c, i, j) */
static long at(int V, int C, int H, int W, long n, int c, int i, int j) {
    const int CB = (C + V - 1) / V;
    return (((n * CB + c / V) * H + i) * W + j) * V + c % V;
}

/* max over outputs of |wino - direct| / (1e-6 * sum |terms| + 1e-30): 1 is one millionth of the terms.
 * The convolution: C input channels on H x W maps (blocked, the padding lanes of the last block NaN: the
 * sums must not read them), zero padding pad (-1: "same", k/2), K outputs. */
static double check(int k, int m, int V, long N, int C, int K, int H, int W, int pad, int bias, int relu, int flip,
                    int level) {
    kernels_level_set(level);
    Rng r;
    rng_seed(&r, (uint64_t)(k * 7919 + m * 31 + V * 1000003 + N * 10007 + C * 101 + K * 13 + H * 7 + W + flip), 3, 0);
    const int kk = k * k, p = pad < 0 ? k / 2 : pad, OH = H + 2 * p - k + 1, OW = W + 2 * p - k + 1;
    /* the convolution as run: input channels Ci, outputs Co; with flip the layer's weights are (Ci, Co, 3, 3) */
    const int Ci = C, Co = K, CP = (C + V - 1) / V * V;
    float *x = xmalloc(sizeof(float) * N * CP * H * W), *y = xmalloc(sizeof(float) * N * Co * OH * OW);
    float *Wt = xmalloc(sizeof(float) * Ci * Co * kk), *b = xmalloc(sizeof(float) * Co);
    const int nt = k + m - 1; /* the transformed tile's side */
    float *U = xmalloc(sizeof(float) * nt * nt * Ci * Co), *buf = xmalloc(sizeof(float) * wino_buf_n(CP, Co, k, m));
    for (long j = 0; j < N * CP * H * W; j++) { /* channel (j / (H W V)) % (CP / V) * V + j % V */
        const long c = j / ((long)H * W * V) % (CP / V) * V + j % V;
        x[j] = c < Ci ? rng_uniform(&r) * 2.0f - 1.0f : NAN;
    }
    for (long j = 0; j < (long)Ci * Co * kk; j++) Wt[j] = (rng_uniform(&r) * 2.0f - 1.0f) * 0.5f;
    for (int j = 0; j < Co; j++) b[j] = rng_uniform(&r) - 0.5f;
    if (flip) wino_weights(U, Wt, Ci, Co, k, m, 1); /* a layer of Ci outputs and Co inputs: its input gradient */
    else wino_weights(U, Wt, Co, Ci, k, m, 0);
    const WinoGeom g = {CP, Ci, Co, H, W, OH, OW, p, k, V, m};
    wino_conv(y, x, U, bias ? b : NULL, relu, N, &g, buf);
    if (g_corrupt) y[at(V, Co, OH, OW, N - 1, Co - 1, OH - 1, OW - 1)] += 1e-3f;
    double worst = 0;
    for (long n = 0; n < N; n++)
        for (int o = 0; o < Co; o++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    double s = bias ? b[o] : 0, a = bias ? fabs(b[o]) : 0;
                    for (int c = 0; c < Ci; c++)
                        for (int u = 0; u < k; u++)
                            for (int v = 0; v < k; v++) {
                                const int ii = i + u - p, jj = j + v - p;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                /* forward: W[o][c][u][v]; the input gradient of a layer with weights
                                   (Ci, Co, 3, 3): sum over its outputs c of W[c][o] turned 180 degrees */
                                const double w = flip ? Wt[((long)c * Co + o) * kk + (k - 1 - u) * k + (k - 1 - v)]
                                                      : Wt[((long)o * Ci + c) * kk + u * k + v];
                                const double t = w * x[at(V, Ci, H, W, n, c, ii, jj)];
                                s += t;
                                a += fabs(t);
                            }
                    if (relu && s < 0) s = 0;
                    const float v = y[at(V, Co, OH, OW, n, o, i, j)];
                    const double e = isfinite(v) ? fabs(v - s) / (1e-6 * a + 1e-30) : INFINITY;
                    if (e > worst) worst = e;
                }
    free(x); free(y); free(Wt); free(b); free(U); free(buf);
    return worst;
}

/* V, N, C (inputs), K (outputs), H, W, pad (-1: "same") */
static const int SHAPES[][7] = {
    {8, 1, 8, 8, 1, 1, -1}, {8, 2, 16, 8, 2, 2, -1}, {8, 3, 8, 24, 5, 7, -1}, {16, 2, 16, 32, 8, 8, -1},
    {16, 1, 32, 16, 9, 3, -1}, {8, 5, 8, 16, 16, 14, -1} /* 5 x 56 tiles: three rounds of WINO_TILES */,
    {16, 40, 16, 16, 4, 4, -1} /* 160 tiles: two rounds, the second short */,
    /* unpadded, and channels that leave padding lanes (NaN here): LeNet-5's conv2 (6 -> 16, 14x14 -> 10x10,
       5x5) as conv.c runs it, odd outputs, one padding of 1 */
    {8, 6, 6, 16, 14, 14, 0}, {8, 3, 5, 8, 9, 11, 0}, {16, 2, 19, 16, 7, 8, 1}, {8, 2, 13, 8, 6, 6, 0},
};

/* the forms: kernel size, outputs per tile side, bounds in millionths of the terms for the convolution and
 * for the weight gradient (measured worst: F(2x2, 3x3) 0.14 and 0.05, F(2x2, 5x5) 1.4 and 0.36, F(4x4, 3x3)
 * 2.9 and 0.15: its points +-2 and larger tiles round more; WINO_PRINT=1 prints each) */
static const struct { int k, m; double bound, dw_bound; } FORMS[] = {{3, 2, 1.0, 0.5}, {5, 2, 4.0, 2.0}, {3, 4, 8.0, 1.0}};

static void run_all(void) {
    for (size_t f = 0; f < ARRAY_LEN(FORMS); f++)
        for (int l = 0; l <= kernels_level_max(); l++)
            for (size_t s = 0; s < ARRAY_LEN(SHAPES); s++)
                for (int mode = 0; mode < 3; mode++) { /* forward + bias, forward + bias + ReLU, input gradient */
                    const int *c = SHAPES[s], k = FORMS[f].k, m = FORMS[f].m;
                    if (c[4] + 2 * (c[6] < 0 ? k / 2 : c[6]) < k || c[5] + 2 * (c[6] < 0 ? k / 2 : c[6]) < k) continue;
                    double e = check(k, m, c[0], c[1], c[2], c[3], c[4], c[5], c[6], mode < 2, mode == 1, mode == 2, l);
                    if (getenv("WINO_PRINT")) fprintf(stderr, "FWD %d %d %g\n", k, m, e);
                    T_ASSERT_MSG(e <= FORMS[f].bound,
                                 "F(%dx%d, %dx%d), level %s, V %d N %d C %d K %d %dx%d pad %d, %s: error %.3g x 1e-6 of the terms", m,
                                 m, k, k, kernels_level_name(l), c[0], c[1], c[2], c[3], c[4], c[5], c[6],
                                 mode == 2 ? "input gradient" : mode ? "forward + ReLU" : "forward", e);
                }
    kernels_level_set(-1);
}

TEST(winograd_matches_direct_sums_in_double) { run_all(); }

/* the weight gradient (wino_dw): max over weights and biases of |wino - sum in double| / (1e-6 * sum |terms|
 * + 1e-30), after adding to dW and db what was there (add = 1) or storing (add = 0). A weight's terms are
 * those of its whole k x k block (Winograd mixes the block's taps: a tap that only padding reaches, whose
 * sum is exactly 0, gets the rounding of its neighbours') and the value added to. */
static double check_dw(int k, int m, int V, long N, int C, int K, int H, int W, int add, int level) {
    kernels_level_set(level);
    Rng r;
    rng_seed(&r, (uint64_t)(k * 31 + m * 17 + V * 1009 + N * 7 + C * 3 + K * 5 + H * 11 + W * 13 + add), 4, 0);
    const int kk = k * k, p = k / 2;
    float *x = xmalloc(sizeof(float) * N * C * H * W), *dy = xmalloc(sizeof(float) * N * K * H * W);
    float *dW = xmalloc(sizeof(float) * K * C * kk), *db = xmalloc(sizeof(float) * K);
    float *dW0 = xmalloc(sizeof(float) * K * C * kk), *db0 = xmalloc(sizeof(float) * K);
    float *buf = xmalloc(sizeof(float) * wino_dw_buf_n(C, K, k, m));
    for (long j = 0; j < N * C * H * W; j++) x[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < N * K * H * W; j++) dy[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < (long)K * C * kk; j++) dW0[j] = dW[j] = add ? rng_uniform(&r) - 0.5f : NAN;
    for (int j = 0; j < K; j++) db0[j] = db[j] = add ? rng_uniform(&r) - 0.5f : NAN;
    const WinoGeom g = {C, C, K, H, W, H, W, p, k, V, m};
    wino_dw(dW, db, x, dy, N, &g, add, buf);
    if (g_corrupt) dW[(long)K * C * kk - 1] += 1e-3f;
    double worst = 0;
    for (int o = 0; o < K; o++) {
        double s = add ? db0[o] : 0, a = fabs(s);
        for (long n = 0; n < N; n++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) s += dy[at(V, K, H, W, n, o, i, j)], a += fabs(dy[at(V, K, H, W, n, o, i, j)]);
        const double e = isfinite(db[o]) ? fabs(db[o] - s) / (1e-6 * a + 1e-30) : INFINITY;
        if (e > worst) worst = e;
        for (int c = 0; c < C; c++) {
            double ss[25], blk = 0; /* the k x k block's sums and the sum of all their |terms| */
            for (int u = 0; u < k; u++)
                for (int v = 0; v < k; v++) { /* dW[o][c][u][v] = sum of dy[o](i, j) x[c](i + u - p, j + v - p) */
                    const long wi = ((long)o * C + c) * kk + u * k + v;
                    s = add ? dW0[wi] : 0, a = fabs(s);
                    for (long n = 0; n < N; n++)
                        for (int i = 0; i < H; i++)
                            for (int j = 0; j < W; j++) {
                                const int ii = i + u - p, jj = j + v - p;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                const double t = (double)dy[at(V, K, H, W, n, o, i, j)] * x[at(V, C, H, W, n, c, ii, jj)];
                                s += t;
                                a += fabs(t);
                            }
                    ss[u * k + v] = s;
                    blk += a;
                }
            for (int j = 0; j < kk; j++) {
                const float v = dW[((long)o * C + c) * kk + j];
                const double e2 = isfinite(v) ? fabs(v - ss[j]) / (1e-6 * blk + 1e-30) : INFINITY;
                if (e2 > worst) worst = e2;
            }
        }
    }
    free(x); free(dy); free(dW); free(db); free(dW0); free(db0); free(buf);
    return worst;
}

/* V, N, C, K, H, W: odd maps (partial tiles), one map of 1x1, more tiles than a round of wino_dw's */
static const int DW_SHAPES[][6] = {{8, 1, 8, 8, 1, 1}, {8, 2, 16, 8, 2, 2}, {8, 3, 8, 24, 5, 7},
                                   {16, 2, 16, 32, 8, 8}, {16, 1, 32, 16, 9, 3}, {8, 5, 8, 16, 16, 14},
                                   {16, 40, 16, 16, 4, 4}, {8, 12, 8, 8, 16, 16} /* 768 tiles: two rounds */};

static void run_all_dw(void) {
    for (size_t f = 0; f < ARRAY_LEN(FORMS); f++)
        for (int l = 0; l <= kernels_level_max(); l++)
            for (size_t s = 0; s < ARRAY_LEN(DW_SHAPES); s++)
                for (int add = 0; add < 2; add++) {
                    const int *c = DW_SHAPES[s], k = FORMS[f].k, m = FORMS[f].m;
                    double e = check_dw(k, m, c[0], c[1], c[2], c[3], c[4], c[5], add, l);
                    if (getenv("WINO_PRINT")) fprintf(stderr, "DW %d %d %g\n", k, m, e);
                    T_ASSERT_MSG(e <= FORMS[f].dw_bound,
                                 "F(%dx%d, %dx%d) weight gradient, level %s, V %d N %d C %d K %d %dx%d, %s: error %.3g x "
                                 "1e-6 of the terms", m, m, k, k, kernels_level_name(l), c[0], c[1], c[2], c[3], c[4], c[5],
                                 add ? "added" : "stored", e);
                }
    kernels_level_set(-1);
}
TEST(winograd_weight_gradient_matches_sums_in_double) { run_all_dw(); }

static void corrupted_dw(void) {
    g_corrupt = 1;
    double e = check_dw(3, 2, 8, 2, 8, 8, 4, 4, 0, 0);
    T_ASSERT_MSG(e <= 0.5, "canary: error %.3g", e);
    g_corrupt = 0;
}
TEST(winograd_weight_gradient_canary_flags_one_wrong_weight) { T_ASSERT(test_expect_failure(corrupted_dw)); }

static void corrupted(void) {
    g_corrupt = 1;
    double e = check(5, 2, 8, 2, 16, 8, 2, 2, -1, 1, 0, 0, 0);
    T_ASSERT_MSG(e <= 1.0, "canary: error %.3g", e);
    g_corrupt = 0;
}
TEST(winograd_canary_flags_one_wrong_output) { T_ASSERT(test_expect_failure(corrupted)); }
