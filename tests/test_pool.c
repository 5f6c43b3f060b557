/* test_pool.c -- the 2x2 max-pool's branch-free vector code (layers/pool.c) against a naive scan: the
 * output is the first maximum of each window in row-major order (a NaN wins, the first NaN if several),
 * of ReLU(x) when a ReLU is fused into the pool; the winner's input gets 0 + the output's gradient (none
 * where the fused ReLU gates it), every other input +0. Bit for bit, on inputs full of ties, signed
 * zeros and NaNs, in NCHW (row widths that leave 0..3 windows after the last group of four) and on
 * channel-blocked tensors (blocked to blocked, and blocked to NCHW before a flatten); NCHW at every
 * vector level of kernels.c (rows of up to 16 windows run in AVX2 or AVX-512 where the CPU has them;
 * odd sizes leave inputs no window covers; with AVX-512, rows of up to 8 windows that tile their inputs
 * go R = 16 / OW rows at once, LeNet-5's 10x10 plane in groups of 3 and 2 rows). */
#include <stdlib.h>
#include <string.h>

#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"
#include "harness/model.h"
#include "rules/build.h"
#include "tests/test.h"

static uint32_t bits(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static int g_corrupt; /* the canary: one wrong winner gradient */

/* maxpool layer i of m after a forward and a backward through w (n samples): 0 when it matches the scan */
static int check_pool(Model *m, Work *w, int i, int n) {
    const Layer *L = &m->L[i];
    const long ihw = (long)L->ih * L->iw, ohw = (long)L->h * L->w;
    const float *x = node_act(w, L->in), *y = w->act[i], *dy = w->grad[i];
    float *dx = node_grad(w, L->in);
    if (g_corrupt) dx[blk_off(L->iblk, ihw, 0, 0)] += 1.0f;
    int bad = 0;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < L->c; c++)
            for (int oy = 0; oy < L->h; oy++)
                for (int ox = 0; ox < L->w; ox++) {
                    long win = -1;
                    float best = 0;
                    for (int ky = 0; ky < 2; ky++)
                        for (int kx = 0; kx < 2; kx++) {
                            const long q = blk_off(L->iblk, ihw, c, (long)(2 * oy + ky) * L->iw + 2 * ox + kx);
                            float v = x[b * in_n(L) + q];
                            if (L->relu_in) v = v > 0 ? v : 0.0f;
                            if (win < 0 || (v != v && best == best) || v > best) { win = q; best = v; }
                        }
                    const long o = b * out_n(L) + blk_off(L->blk, ohw, c, (long)oy * L->w + ox);
                    if (bits(y[o]) != bits(best)) bad++;
                    const float g = L->relu_in && !(y[o] > 0) ? 0.0f : 0.0f + dy[o];
                    for (int ky = 0; ky < 2; ky++)
                        for (int kx = 0; kx < 2; kx++) {
                            const long q = blk_off(L->iblk, ihw, c, (long)(2 * oy + ky) * L->iw + 2 * ox + kx);
                            if (bits(dx[b * in_n(L) + q]) != bits(q == win ? g : 0.0f)) bad++;
                        }
                }
    return bad;
}

/* input values: ties everywhere, signed zeros, NaNs (NCHW models only: a convolution spreads a NaN) */
static void fill(float *x, long n, int nan) {
    static const float V[] = {-1.0f, 0.0f, -0.0f, 0.5f, 0.5f, 1.0f, 2.0f, -2.0f};
    Rng r;
    rng_seed(&r, 5, 1, 0);
    for (long j = 0; j < n; j++) {
        const uint32_t k = rng_below(&r, nan ? 10 : 8);
        x[j] = k < 8 ? V[k] : __builtin_nanf("");
    }
}

/* norm -> [relu] -> maxpool 2x2 -> flatten -> linear (NCHW); or the blocked chain: 3x3 conv (identity
 * on 16 or 19 channels, from 3) -> [relu] -> maxpool (blocked) -> 3x3 conv -> maxpool (converts to NCHW) -> ... */
static void pool_case(int C, int H, int W, int relu, int blocked) {
    const int Cin = blocked ? 3 : C; /* oneDNN's kernels for a plain input want few channels */
    ModelSpec s;
    model_spec_default(&s, "test", Cin, H, W, 3);
    Model *m = xcalloc(1, sizeof *m);
    model_init(m, &s);
    int x = model_add(m, L_NORM, "norm", -1), pools[2], np = 0;
    if (blocked) {
        x = model_add_conv(m, "conv", x, C, 3, 1, 1, 0);
        if (relu) x = model_add(m, L_RELU, "", x);
        x = pools[np++] = model_add_pool(m, L_MAXPOOL, x, 2, 2);
        x = model_add_conv(m, "conv2", x, C, 3, 1, 1, 0);
        x = pools[np++] = model_add_pool(m, L_MAXPOOL, x, 2, 2);
    } else {
        if (relu) x = model_add(m, L_RELU, "", x);
        x = pools[np++] = model_add_pool(m, L_MAXPOOL, x, 2, 2);
    }
    x = model_add(m, L_FLATTEN, "", x);
    model_add_linear(m, "head", x, 3);
    RuleOpts ro;
    rule_opts_default(&ro);
    rule_attach(m, NULL, &ro);
    model_finalize(m, 3);
    for (int c = 0; c < Cin; c++) { m->L[0].mean[c] = 0.0f; m->L[0].std[c] = 1.0f; }
    /* 3x3 convolutions with only a centre tap, output channel o = input channel o % ic times a power of
       two: exact copies of finite inputs, ties kept */
    static const float SCALE[] = {1.0f, 2.0f, -1.0f, 0.5f};
    for (int i = 0; i < m->nl; i++) {
        Layer *L = &m->L[i];
        if (L->kind != L_CONV) continue;
        memset(L->W, 0, sizeof(float) * (size_t)L->c * L->ic * 9);
        for (int o = 0; o < L->c; o++) L->W[((long)o * L->ic + o % L->ic) * 9 + 4] = SCALE[o % 4];
    }
    if (blocked) T_ASSERT_MSG(m->L[pools[0]].blk && m->L[pools[0]].iblk && !m->L[pools[1]].blk && m->L[pools[1]].iblk,
                              "blocked case %dx%dx%d: layouts %d/%d %d/%d", C, H, W, m->L[pools[0]].iblk,
                              m->L[pools[0]].blk, m->L[pools[1]].iblk, m->L[pools[1]].blk);
    if (relu) T_ASSERT_MSG(m->L[pools[0]].relu_in, "the ReLU is fused into the pool");
    const int n = 5, D = model_in_dim(m), K = 3;
    float *in = xmalloc(sizeof(float) * n * D), *d = xmalloc(sizeof(float) * n * K);
    fill(in, (long)n * D, !blocked);
    for (int j = 0; j < n * K; j++) d[j] = (j % 3 == 0 ? -0.25f : 0.5f) + 0.125f * (j % 5);
    Work *w = work_create(m, n);
    model_forward(m, w, in, n, FWD_INFER);
    model_backward(m, w, d, BW_INPUT | BW_TRUE | BW_GRADS); /* check_pool reads the pool's gradients */
    for (int k = 0; k < np; k++) {
        const int bad = check_pool(m, w, pools[k], n);
        T_ASSERT_MSG(bad == 0, "max-pool %d of %s %dx%dx%d relu %d: %d values differ from the scan", k,
                     blocked ? "blocked" : "NCHW", C, H, W, relu, bad);
    }
    work_free(w);
    free(in); free(d);
    model_free(m);
}

TEST(maxpool_matches_the_row_major_scan_bit_for_bit) {
    static const int HW[][2] = {{2, 2}, {2, 8}, {4, 10}, {5, 11}, {4, 14}, {2, 16}, {6, 18}, {4, 22}, {28, 28}, {4, 30}, {2, 32}, {4, 34}, {3, 6},
                                   /* rows of <= 8 windows tiling their inputs, in groups of 16 / OW rows (AVX-512) */
                                   {10, 10}, {9, 10}, {8, 6}, {16, 4}, {12, 14}, {34, 2}};
    for (int l = 0; l <= kernels_level_max(); l++) { /* the 4-lane code; rows of <= 16 windows in AVX2 and AVX-512 */
        kernels_level_set(l);
        for (size_t k = 0; k < ARRAY_LEN(HW); k++)
            for (int relu = 0; relu < 2; relu++) pool_case(3, HW[k][0], HW[k][1], relu, 0);
    }
    kernels_level_set(-1);
    for (int relu = 0; relu < 2; relu++) {
        pool_case(16, 8, 8, relu, 1);
        pool_case(19, 8, 12, relu, 1);
    }
}

static void corrupted_pool(void) {
    g_corrupt = 1;
    pool_case(3, 4, 10, 1, 0);
    g_corrupt = 0;
}
TEST(maxpool_check_canary_flags_one_wrong_gradient) { T_ASSERT(test_expect_failure(corrupted_pool)); }
