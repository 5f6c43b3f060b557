/* test_kernels.c -- Concord's own vector levels (layers/kernels.c) and the col2im forms of the im2col path
 * (layers/im2col.c), bit for bit: run_add at every level this CPU has (sse2, avx2, avx512) against one
 * scalar add per float, on lengths around every vector width, with signed zeros,
 * infinities and NaNs; col2im_s1_add (the row-by-row adjoint of im2col) and col2im_wide_add (from the
 * wide column matrix) against the index formula, for padded and unpadded stride-1 layers, storing and
 * accumulating, at every level; the direct weight gradient and the direct convolution (layers/conv_direct.c)
 * against sums in double, and its 16-channel form against its own FMA chain;
 * im2col_s1's rows at every level against the index formula; sums_f64's rows against sum_f64; dy's
 * transposed and widened layouts against their index formulas;
 * layout_move's AVX2 turns (layers/layout.c) against its one-by-one loop. Canaries: a wrong float in each
 * comparison is caught. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/layers/conv_direct.h"
#include "harness/layers/im2col.h"
#include "harness/layers/kernels.h"
#include "harness/layers/layer.h"
#include "tests/test.h"

static uint32_t bits(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}
static void fill(float *x, long n, uint64_t seed) {
    static const float S[] = {0.0f, -0.0f, 1.0f / 0.0f, -1.0f / 0.0f, 0.0f / 0.0f};
    Rng r;
    rng_seed(&r, seed, 2, 0);
    for (long j = 0; j < n; j++) x[j] = rng_below(&r, 8) == 0 ? S[rng_below(&r, 5)] : rng_uniform(&r) * 4.0f - 2.0f;
}

static int g_corrupt;

/* lengths 0..70 and a few long ones, at offsets 0..3 (unaligned starts); returns the mismatches */
static long check_runs(int level) {
    kernels_level_set(level);
    enum { N = 700 };
    float s[N + 8], d0[N + 8], d[N + 8];
    long bad = 0;
    static const long LONG[] = {127, 128, 129, 255, 511, 600, 693};
    for (int k = 0; k < 71 + (int)ARRAY_LEN(LONG); k++) {
        const long n = k < 71 ? k : LONG[k - 71];
        for (int off = 0; off < 4; off++) {
            fill(s, N + 8, (uint64_t)(n * 4 + off));
            fill(d0, N + 8, (uint64_t)(n * 4 + off + 7777));
            memcpy(d, d0, sizeof d);
            run_add(d + off, s + off, n);
            if (g_corrupt && n == 128) d[off + 127] += 1.0f;
            for (long j = 0; j < N + 8; j++) {
                const long i = j - off;
                const float want = i >= 0 && i < n ? d0[j] + s[j] : d0[j];
                bad += bits(d[j]) != bits(want);
            }
        }
    }
    return bad;
}

/* a checker of one vector level (returns its mismatches; g_corrupt spoils one value): run at every level
 * the CPU has, and its canary, run at the highest level with g_corrupt set */
typedef long (*LevelCheck)(int level);
static void at_every_level(LevelCheck check, const char *what) {
    for (int l = 0; l <= kernels_level_max(); l++) {
        long bad = check(l);
        T_ASSERT_MSG(bad == 0, "level %s: %ld %s differ", kernels_level_name(l), bad, what);
    }
    kernels_level_set(-1);
}
static LevelCheck g_check;
static void corrupted_check(void) {
    g_corrupt = 1;
    T_ASSERT(g_check(kernels_level_max()) == 0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
static int canary_fails(LevelCheck check) {
    g_check = check;
    return test_expect_failure(corrupted_check);
}

TEST(kernels_every_level_adds_the_same_bits) {
    at_every_level(check_runs, "floats of the scalar add");
    T_ASSERT_MSG(kernels_level_max() >= 0 && kernels_level_max() <= 2, "level %d", kernels_level_max());
}
TEST(kernels_canary_flags_one_wrong_float) { T_ASSERT(canary_fails(check_runs)); }

/* sums_f64 (four rows at a time, double vectors) against sum_f64 row by row, bit for bit, at every level:
 * 1-9 rows (whole groups of four and the rest), lengths 0-70, infinities, NaNs and signed zeros in some
 * rows; returns the mismatching sums */
static long check_sums(int level) {
    kernels_level_set(level);
    enum { LD = 73, R = 9 };
    float x[R * LD];
    double out[R];
    long bad = 0;
    for (int n = 0; n <= 70; n++)
        for (int rows = 1; rows <= R; rows++) {
            fill(x, R * LD, (uint64_t)(n * 16 + rows));
            for (int j = 0; j < R * LD; j++) {
                if (n % 3 && !(x[j] - x[j] == 0.0f)) x[j] = 0.125f * (float)(j % 7); /* mostly finite rows */
                x[j] = ldexpf(x[j], (j * 37) % 61 - 30); /* magnitudes 2^-30..2^30: the order of the adds shows */
            }
            sums_f64(x, rows, n, LD, out);
            if (g_corrupt && n == 40 && rows == 5) out[4] = nextafter(out[4], 1e300);
            for (int r = 0; r < rows; r++) {
                const double want = sum_f64(x + r * LD, n);
                /* NaN for NaN: which operand's payload an add keeps is the compiler's choice */
                bad += isnan(want) ? !isnan(out[r]) : memcmp(&want, &out[r], sizeof want) != 0;
            }
        }
    return bad;
}
TEST(sums_f64_rows_are_sum_f64_bit_for_bit_at_every_level) { at_every_level(check_sums, "sums"); }
TEST(sums_f64_canary_flags_one_wrong_sum) { T_ASSERT(canary_fails(check_sums)); }

/* col2im_s1_add (its rows in AVX-512 masked adds, AVX2 overlapping adds or 4-float adds) and
 * col2im_wide_add (fed the wide column matrix: zeros in the extra columns) against the index formula,
 * added one float at a time in the same order: into the zero-bordered buffer by (c, ki, kj, oy, ox), then
 * its interior into dx (0 + v when assigning); unpadded, straight into dx. Returns the mismatching floats. */
static long check_col2im(int ic, int ih, int iw, int k, int pad, int assign, int level) {
    kernels_level_set(level);
    Layer L;
    memset(&L, 0, sizeof L);
    L.ic = ic; L.ih = ih; L.iw = iw; L.k = k; L.pad = pad; L.stride = 1;
    L.h = ih + 2 * pad - k + 1; L.w = iw + 2 * pad - k + 1; L.c = 3;
    const int KC = ic * k * k, P = L.h * L.w, PH = ih + 2 * pad, PW = iw + 2 * pad, Q = L.h * PW;
    const long xn = (long)ic * ih * iw, pn = (long)ic * PH * PW;
    float *col = xmalloc(sizeof(float) * KC * P), *wide = xmalloc(sizeof(float) * KC * Q);
    float *want = xmalloc(sizeof(float) * xn);
    float *dx0 = xmalloc(sizeof(float) * xn), *dx1 = xmalloc(sizeof(float) * xn), *xpad = xmalloc(sizeof(float) * (pn + 1));
    float *ref = xmalloc(sizeof(float) * pn);
    fill(col, (long)KC * P, (uint64_t)(ic * 1000 + ih * 10 + iw * 7 + pad));
    for (long j = 0; j < (long)KC * P; j++) /* finite: a NaN would spread to every value it touches */
        if (!(col[j] - col[j] == 0.0f)) col[j] = 0.25f;
    for (int r = 0; r < KC; r++)
        for (int oy = 0; oy < L.h; oy++)
            for (int x = 0; x < PW; x++) wide[(long)r * Q + oy * PW + x] = x < L.w ? col[(long)r * P + oy * L.w + x] : 0.0f;
    fill(dx0, xn, 99);
    for (long j = 0; j < xn; j++) /* accumulating into -0 is the one case the extra zeros may change */
        if (dx0[j] == 0.0f || !(dx0[j] - dx0[j] == 0.0f)) dx0[j] = 0.5f;
    memcpy(dx1, dx0, sizeof(float) * xn);
    memcpy(want, dx0, sizeof(float) * xn);
    for (long j = 0; j < pn; j++) ref[j] = 0.0f;
    if (!pad && assign) memset(want, 0, sizeof(float) * xn);
    float *acc = pad ? ref : want; /* (ic, PH, PW); PH = ih, PW = iw unpadded */
    for (int c = 0; c < ic; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++)
                for (int oy = 0; oy < L.h; oy++)
                    for (int ox = 0; ox < L.w; ox++)
                        acc[((long)c * PH + oy + ki) * PW + ox + kj] +=
                            col[(((long)c * k + ki) * k + kj) * P + (long)oy * L.w + ox];
    for (int c = 0; pad && c < ic; c++)
        for (int y = 0; y < ih; y++)
            for (int x = 0; x < iw; x++) {
                const float v = ref[((long)c * PH + y + pad) * PW + x + pad];
                float *d = &want[((long)c * ih + y) * iw + x];
                *d = assign ? v + 0.0f : *d + v;
            }
    col2im_s1_add(&L, col, xpad, dx0, assign);
    col2im_wide_add(&L, wide, xpad, dx1, assign);
    if (g_corrupt) dx1[xn / 2] += 1.0f;
    long bad = 0;
    for (long j = 0; j < xn; j++) bad += (bits(dx0[j]) != bits(want[j])) + (bits(dx1[j]) != bits(want[j]));
    free(col); free(wide); free(want); free(dx0); free(dx1); free(xpad); free(ref);
    return bad;
}
static const int COL2IM[][5] = { /* ic, ih, iw, k, pad */
    {1, 28, 28, 5, 2}, {6, 14, 14, 5, 0}, {2, 7, 9, 3, 1}, {3, 5, 5, 5, 0}, {1, 12, 30, 5, 4}, {4, 8, 8, 1, 0}, {2, 6, 11, 3, 2},
};
/* the shapes above, and output rows 1 to 40 wide (every case of the vector rows) */
TEST(col2im_rows_and_wide_are_the_index_formula_at_every_level) {
    for (int l = 0; l <= kernels_level_max(); l++) {
        for (size_t i = 0; i < ARRAY_LEN(COL2IM); i++)
            for (int assign = 0; assign < 2; assign++) {
                const int *c = COL2IM[i];
                long bad = check_col2im(c[0], c[1], c[2], c[3], c[4], assign, l);
                T_ASSERT_MSG(bad == 0, "level %s, ic %d %dx%d k %d pad %d assign %d: %ld values differ", kernels_level_name(l),
                             c[0], c[1], c[2], c[3], c[4], assign, bad);
            }
        for (int ow = 1; ow <= 40; ow++)
            for (int pad = 0; pad <= 2; pad += 2) {
                const int k = ow % 2 ? 5 : 3, ic = 1 + ow % 3, iw = ow + k - 1 - 2 * pad, ih = 5 + ow % 5;
                if (iw < 1) continue;
                long bad = check_col2im(ic, ih, iw, k, pad, ow % 3 == 0, l);
                T_ASSERT_MSG(bad == 0, "level %s, ic %d %dx%d k %d pad %d: %ld values differ",
                             kernels_level_name(l), ic, ih, iw, k, pad, bad);
            }
    }
    kernels_level_set(-1);
}
static void corrupted_col2im(void) {
    g_corrupt = 1;
    T_ASSERT(check_col2im(6, 14, 14, 5, 0, 1, kernels_level_max()) == 0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
TEST(col2im_canary_flags_one_wrong_value) { T_ASSERT(test_expect_failure(corrupted_col2im)); }

/* im2col_s1 (its rows in AVX-512 masked moves, AVX2 overlapping moves or 4-float copies) against the index
 * formula, bit for bit (NaNs, infinities, signed zeros), at every level; output rows 1 to 40 wide, padded
 * and not; the floats after the matrix must stay untouched. Returns the mismatches. */
static long check_im2col(int ic, int ih, int iw, int k, int pad, int level) {
    kernels_level_set(level);
    Layer L;
    memset(&L, 0, sizeof L);
    L.ic = ic; L.ih = ih; L.iw = iw; L.k = k; L.pad = pad; L.stride = 1;
    L.h = ih + 2 * pad - k + 1; L.w = iw + 2 * pad - k + 1; L.c = 2;
    const long KC = (long)ic * k * k, P = (long)L.h * L.w, xn = (long)ic * ih * iw, G = 40;
    float *x = xmalloc(sizeof(float) * xn), *col = xmalloc(sizeof(float) * (KC * P + G));
    float *xpad = xmalloc(sizeof(float) * ic * (ih + 2 * pad) * (iw + 2 * pad) + 1);
    fill(x, xn, (uint64_t)(ic * 7 + iw * 100 + pad));
    for (long j = 0; j < KC * P + G; j++) col[j] = 7.0f;
    im2col_s1(&L, x, xpad, col);
    if (g_corrupt) col[KC * P / 2] = -col[KC * P / 2];
    long bad = 0;
    for (int c = 0; c < ic; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++)
                for (int oy = 0; oy < L.h; oy++)
                    for (int ox = 0; ox < L.w; ox++) {
                        const int iy = oy - pad + ki, ix = ox - pad + kj;
                        const float want = iy < 0 || iy >= ih || ix < 0 || ix >= iw ? 0.0f : x[((long)c * ih + iy) * iw + ix];
                        bad += bits(col[(((long)c * k + ki) * k + kj) * P + (long)oy * L.w + ox]) != bits(want);
                    }
    for (long j = KC * P; j < KC * P + G; j++) bad += col[j] != 7.0f;
    free(x); free(col); free(xpad);
    return bad;
}
TEST(im2col_rows_are_the_index_formula_at_every_level) {
    for (int l = 0; l <= kernels_level_max(); l++)
        for (int ow = 1; ow <= 40; ow++)
            for (int pad = 0; pad <= 2; pad += 2) {
                const int k = ow % 2 ? 5 : 3, ic = 1 + ow % 3, iw = ow + k - 1 - 2 * pad, ih = 5 + ow % 5;
                if (iw < 1) continue;
                long bad = check_im2col(ic, ih, iw, k, pad, l);
                T_ASSERT_MSG(bad == 0, "level %s, ic %d %dx%d k %d pad %d: %ld values differ", kernels_level_name(l), ic, ih,
                             iw, k, pad, bad);
            }
    kernels_level_set(-1);
}
static void corrupted_im2col(void) {
    g_corrupt = 1;
    T_ASSERT(check_im2col(6, 14, 14, 5, 0, kernels_level_max()) == 0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
TEST(im2col_canary_flags_one_wrong_value) { T_ASSERT(test_expect_failure(corrupted_im2col)); }

/* transpose_rows and widen_rows (dy's two layouts for the weight and input gradients) against their index
 * formulas, bit for bit, at every level: 1-48 channels (multiples of 16 take the gathers), rows 1-32
 * wide widened to up to 32, padding channels; the floats after the output stay untouched. Returns the
 * mismatches. */
static long check_dy_layouts(int level) {
    kernels_level_set(level);
    enum { G = 40 };
    long bad = 0;
    static const int CS[] = {1, 3, 6, 15, 16, 17, 32, 40, 48};
    for (size_t i = 0; i < ARRAY_LEN(CS); i++) {
        const int C = CS[i];
        const int H = 1 + C % 7, W = 1 + (C * 5) % 32, GW = W + C % 3 > 32 ? 32 : W + C % 3, CP = C + C % 2;
        const long NP = (long)H * W, nt = NP * C, nw = (long)CP * H * GW;
        float *g = xmalloc(sizeof(float) * NP * C), *t = xmalloc(sizeof(float) * (nt + G)), *d = xmalloc(sizeof(float) * (nw + G));
        fill(g, NP * C, (uint64_t)C);
        for (long j = 0; j < nt + G; j++) t[j] = 7.0f;
        for (long j = 0; j < nw + G; j++) d[j] = 7.0f;
        transpose_rows(g, C, NP, t);
        widen_rows(g, C, CP, H, W, GW, d);
        if (g_corrupt) t[nt / 2] = -t[nt / 2];
        for (int c = 0; c < C; c++)
            for (long p = 0; p < NP; p++) bad += bits(t[p * C + c]) != bits(g[(long)c * NP + p]);
        for (int c = 0; c < CP; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < GW; x++) {
                    const float want = c < C && x < W ? g[((long)c * H + y) * W + x] : 0.0f;
                    bad += bits(d[((long)c * H + y) * GW + x]) != bits(want);
                }
        for (long j = 0; j < G; j++) bad += (t[nt + j] != 7.0f) + (d[nw + j] != 7.0f);
        free(g); free(t); free(d);
    }
    return bad;
}
TEST(dy_transpose_and_widen_are_their_index_formulas_at_every_level) { at_every_level(check_dy_layouts, "values"); }
TEST(dy_layouts_canary_flags_one_wrong_value) { T_ASSERT(canary_fails(check_dy_layouts)); }

/* direct_dw (layers/conv_direct.c) against sums in double, at every level that has it (avx2, avx512), for
 * the shapes it is built for: K 3 and 5, output rows 1-32 wide (one, two or four vectors), padded and
 * not, one to three input channels, one to eight output channels, storing and accumulating. */
static double check_dw(int ic, int ih, int iw, int k, int pad, int oc, int acc, int level) {
    kernels_level_set(level);
    const int OH = ih + 2 * pad - k + 1, OW = iw + 2 * pad - k + 1, PW = iw + 2 * pad, H = ih + 2 * pad;
    const int GW = direct_row(OW), CP = direct_c_pad(oc), KC = ic * k * k;
    float *x = xmalloc(sizeof(float) * ic * ih * iw), *in = xmalloc(sizeof(float) * direct_border_n(ic, ih, pad, PW));
    float *g = xmalloc(sizeof(float) * oc * OH * OW), *gw = xmalloc(sizeof(float) * CP * OH * GW);
    float *dwt = xmalloc(sizeof(float) * KC * oc);
    Rng r;
    rng_seed(&r, (uint64_t)(ic * 97 + ih * 13 + k * 5 + pad + oc * 1000), 4, 0);
    for (long j = 0; j < (long)ic * ih * iw; j++) x[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < (long)oc * OH * OW; j++) g[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < (long)KC * oc; j++) dwt[j] = acc ? 0.25f * (float)(j % 7) : 99.0f;
    memset(gw, 0, sizeof(float) * CP * OH * GW);
    for (int o = 0; o < oc; o++)
        for (int y = 0; y < OH; y++) memcpy(gw + ((long)o * OH + y) * GW, g + ((long)o * OH + y) * OW, sizeof(float) * OW);
    direct_border(x, ic, ih, iw, pad, PW, in);
    direct_dw(in, ic, H, PW, gw, oc, k, OH, OW, dwt, acc);
    if (g_corrupt) dwt[KC * oc / 2] += 1e-3f;
    double worst = 0;
    for (int o = 0; o < oc; o++)
        for (int c = 0; c < ic; c++)
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++) {
                    double s = 0, mag = 0;
                    for (int y = 0; y < OH; y++)
                        for (int xx = 0; xx < OW; xx++) {
                            const int iy = y + ki - pad, ix = xx + kj - pad;
                            const double v = iy >= 0 && iy < ih && ix >= 0 && ix < iw ? x[((long)c * ih + iy) * iw + ix] : 0.0;
                            s += (double)g[((long)o * OH + y) * OW + xx] * v;
                            mag += fabs((double)g[((long)o * OH + y) * OW + xx] * v);
                        }
                    const long at = (((long)c * k + ki) * k + kj) * oc + o;
                    if (acc) s += 0.25 * (double)(at % 7);
                    const double err = fabs(dwt[at] - s) / (1e-6 * (mag + 1.0));
                    worst = err > worst ? err : worst;
                }
    free(x); free(in); free(g); free(gw); free(dwt);
    return worst; /* in units of 1e-6 of the sum of |terms|: <= 1 passes */
}
static const int DW[][6] = { /* ic, ih, iw, k, pad, oc */
    {1, 28, 28, 5, 2, 6}, {1, 16, 16, 5, 2, 6}, {2, 9, 13, 3, 1, 5}, {3, 7, 7, 5, 0, 8}, {1, 34, 34, 3, 0, 1},
    {2, 5, 5, 5, 2, 7}, {1, 12, 20, 5, 1, 2}, {2, 6, 6, 3, 0, 3},
};
TEST(direct_weight_gradient_matches_double_sums) {
    for (int l = 1; l <= kernels_level_max(); l++)
        for (size_t i = 0; i < ARRAY_LEN(DW); i++)
            for (int acc = 0; acc < 2; acc++) {
                const int *c = DW[i];
                double e = check_dw(c[0], c[1], c[2], c[3], c[4], c[5], acc, l);
                T_ASSERT_MSG(e <= 1.0, "level %s, ic %d %dx%d k %d pad %d oc %d acc %d: error %.3g x 1e-6 of the terms",
                             kernels_level_name(l), c[0], c[1], c[2], c[3], c[4], c[5], acc, e);
            }
    if (kernels_level_max() < 1) test_skip("no AVX2 + FMA on this CPU: the direct weight gradient is never used");
    kernels_level_set(-1);
}
static void corrupted_dw(void) {
    g_corrupt = 1;
    T_ASSERT(check_dw(1, 28, 28, 5, 2, 6, 0, kernels_level_max()) <= 1.0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
TEST(direct_weight_gradient_canary_flags_one_wrong_value) {
    if (kernels_level_max() < 1) { test_skip("no AVX2 + FMA on this CPU"); return; }
    T_ASSERT(test_expect_failure(corrupted_dw));
}

/* direct_dw16 (16 output channels per vector, AVX-512) against the operation order it claims, bit for bit:
 * per element one fmaf chain over the pixels in order, from 0 or the stored value (fmaf rounds once, as
 * the vector FMA does); and against sums in double. K 3 and 5, padded (bordered input wider than needed)
 * and not, 16 and 32 output channels, 1-6 input channels, storing and accumulating. Returns the number
 * of elements off either oracle. */
static long check_dw16(int ic, int ih, int iw, int k, int pad, int oc, int acc) {
    const int OH = ih + 2 * pad - k + 1, OW = iw + 2 * pad - k + 1, PW = iw + 2 * pad + 3, H = ih + 2 * pad;
    const long KC = (long)ic * k * k, P = (long)OH * OW;
    float *x = xmalloc(sizeof(float) * ic * ih * iw), *in = xmalloc(sizeof(float) * direct_border_n(ic, ih, pad, PW));
    float *gT = xmalloc(sizeof(float) * P * oc), *dwt = xmalloc(sizeof(float) * KC * oc);
    Rng r;
    rng_seed(&r, (uint64_t)(ic * 31 + ih * 7 + k + pad * 3 + oc * 100 + acc), 5, 0);
    for (long j = 0; j < (long)ic * ih * iw; j++) x[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < P * oc; j++) gT[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < KC * oc; j++) dwt[j] = acc ? 0.25f * (float)(j % 7) - 0.5f : 99.0f;
    direct_border(x, ic, ih, iw, pad, PW, in);
    direct_dw16(in, ic, H, PW, gT, oc, k, OH, OW, dwt, acc);
    if (g_corrupt) dwt[KC * oc / 2] = nextafterf(dwt[KC * oc / 2], 1e30f);
    long bad = 0;
    for (int o = 0; o < oc; o++)
        for (int c = 0; c < ic; c++)
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++) {
                    const long at = (((long)c * k + ki) * k + kj) * oc + o;
                    float f = acc ? 0.25f * (float)(at % 7) - 0.5f : 0.0f;
                    double s = f, mag = fabs(s);
                    for (int y = 0; y < OH; y++)
                        for (int xx = 0; xx < OW; xx++) {
                            const float v = in[((long)c * H + y + ki) * PW + xx + kj], g = gT[((long)y * OW + xx) * oc + o];
                            f = fmaf(v, g, f);
                            s += (double)v * g;
                            mag += fabs((double)v * g);
                        }
                    bad += bits(f) != bits(dwt[at]) || fabs(dwt[at] - s) > 1e-6 * (mag + 1.0);
                }
    free(x); free(in); free(gT); free(dwt);
    return bad;
}
static const int DW16[][6] = { /* ic, ih, iw, k, pad, oc */
    {6, 14, 14, 5, 0, 16}, {1, 9, 9, 3, 1, 16}, {3, 7, 11, 5, 2, 32}, {2, 5, 5, 5, 0, 16}, {4, 6, 13, 3, 0, 32},
};
TEST(direct_weight_gradient_16_channels_is_its_fma_chain_bit_for_bit) {
    if (kernels_level_max() < 2) { test_skip("no AVX-512 on this CPU: direct_dw16 is never used"); return; }
    kernels_level_set(2);
    for (size_t i = 0; i < ARRAY_LEN(DW16); i++)
        for (int acc = 0; acc < 2; acc++) {
            const int *c = DW16[i];
            long bad = check_dw16(c[0], c[1], c[2], c[3], c[4], c[5], acc);
            T_ASSERT_MSG(bad == 0, "ic %d %dx%d k %d pad %d oc %d acc %d: %ld values off", c[0], c[1], c[2], c[3], c[4],
                         c[5], acc, bad);
        }
    T_ASSERT(!direct_dw16_ok(5, 24) && !direct_dw16_ok(7, 16)); /* what it is not built for goes elsewhere */
    kernels_level_set(-1);
}
static void corrupted_dw16(void) {
    g_corrupt = 1;
    kernels_level_set(2);
    T_ASSERT(check_dw16(6, 14, 14, 5, 0, 16, 1) == 0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
TEST(direct_weight_gradient_16_canary_flags_one_ulp) {
    if (kernels_level_max() < 2) { test_skip("no AVX-512 on this CPU"); return; }
    T_ASSERT(test_expect_failure(corrupted_dw16));
}

/* layout_move's assigning moves between NCHW and blocks of 8 (turned 8 x 8 at a time in AVX2) against the
 * one-by-one loop (level sse2), bit for bit: channels 1-19 (padding lanes, whole blocks past C), maps of
 * 1-196 pixels (tails of 1-7), both directions, signed zeros, infinities, NaNs; the destination starts as
 * garbage, so a lane or a padding value left unwritten differs. Returns the mismatches. */
static long check_turn(int level, int C, long HW, int to_blocked) {
    const int CP = (C + 7) / 8 * 8 + (C == 8 ? 8 : 0); /* C = 8: a whole block of padding past it */
    const long nb = 3, n = nb * CP * HW;
    float *src = xmalloc(sizeof(float) * n), *d0 = xmalloc(sizeof(float) * n), *d1 = xmalloc(sizeof(float) * n);
    fill(src, n, (uint64_t)(C * 1000 + HW));
    for (long j = 0; j < n; j++) d0[j] = d1[j] = 12345.0f + (float)j;
    const int dv = to_blocked ? 8 : 0, sv = to_blocked ? 0 : 8, scp = to_blocked ? C : CP, dcp = to_blocked ? CP : C;
    kernels_level_set(0);
    layout_move(d0, dv, dcp, src, sv, scp, C, HW, nb, 1);
    kernels_level_set(level);
    layout_move(d1, dv, dcp, src, sv, scp, C, HW, nb, 1);
    kernels_level_set(-1);
    if (g_corrupt) d1[n / 2 - 1] += 1.0f;
    long bad = 0;
    for (long j = 0; j < nb * dcp * HW; j++) bad += bits(d0[j]) != bits(d1[j]);
    free(src); free(d0); free(d1);
    return bad;
}
static long check_turns(void) {
    static const int CS[] = {1, 3, 6, 8, 13, 16, 19};
    static const long HWS[] = {1, 7, 8, 9, 25, 100, 196};
    long bad = 0;
    for (int l = 1; l <= kernels_level_max(); l++)
        for (size_t c = 0; c < ARRAY_LEN(CS); c++)
            for (size_t h = 0; h < ARRAY_LEN(HWS); h++)
                for (int dir = 0; dir < 2; dir++) bad += check_turn(l, CS[c], HWS[h], dir);
    return bad;
}
TEST(layout_move_turned_is_the_one_by_one_move) { T_EQ_INT(check_turns(), 0); }
static void corrupted_turns(void) {
    g_corrupt = 1;
    long bad = check_turn(kernels_level_max(), 6, 196, 1);
    g_corrupt = 0;
    T_EQ_INT(bad, 0);
}
TEST(layout_move_canary_flags_one_wrong_float) {
    if (kernels_level_max() < 1) return; /* no AVX2: nothing turned, nothing to compare */
    T_ASSERT(test_expect_failure(corrupted_turns));
}

/* the direct convolution (layers/conv_direct.c: direct_conv, AVX2 + FMA) against sums in double: y = bias
 * (or the stored y, with acc) + the correlation of a bordered input; the error of each output in units of
 * 1e-6 of the sum of |terms| (+1). Shapes: LeNet-5's conv1 forward (1 -> 6, 28 wide) and input gradient
 * (6 -> 1 over dy bordered by 2), 3 and 2 output channels (the other blocks), widths 24-32, heights that
 * leave remainder rows. */
static double check_dc(int ic, int oh, int ow, int oc, int bias, int acc) {
    const int k = 5, H = oh + k - 1, PW = ow + k - 1, kk = k * k;
    float *x = xmalloc(sizeof(float) * ic * (H - 2) * (PW - 2)), *in = xmalloc(sizeof(float) * direct_border_n(ic, H - 2, 1, PW));
    float *W = xmalloc(sizeof(float) * oc * ic * kk), *b = xmalloc(sizeof(float) * oc), *y = xmalloc(sizeof(float) * oc * oh * ow);
    Rng r;
    rng_seed(&r, (uint64_t)(ic * 31 + oh * 7 + ow * 3 + oc * 101 + acc), 5, 0);
    for (long j = 0; j < (long)ic * (H - 2) * (PW - 2); j++) x[j] = rng_uniform(&r) * 2.0f - 1.0f;
    for (long j = 0; j < (long)oc * ic * kk; j++) W[j] = rng_uniform(&r) - 0.5f;
    for (int j = 0; j < oc; j++) b[j] = rng_uniform(&r) - 0.5f;
    for (long j = 0; j < (long)oc * oh * ow; j++) y[j] = acc ? 0.125f * (float)(j % 9) : 99.0f;
    direct_border(x, ic, H - 2, PW - 2, 1, PW, in); /* a border of 1 inside the k - 1 the sum reaches */
    direct_conv(y, in, ic, H, PW, W, bias ? b : NULL, oc, k, oh, ow, acc);
    if (g_corrupt) y[(long)oc * oh * ow / 2] += 1e-3f;
    double worst = 0;
    for (int o = 0; o < oc; o++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const long at = ((long)o * oh + i) * ow + j;
                double s = (bias ? b[o] : 0.0) + (acc ? 0.125 * (double)(at % 9) : 0.0), mag = fabs(s);
                for (int c = 0; c < ic; c++)
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) {
                            const double t = (double)W[((long)o * ic + c) * kk + u * k + v] * in[((long)c * H + i + u) * PW + j + v];
                            s += t;
                            mag += fabs(t);
                        }
                const double err = fabs(y[at] - s) / (1e-6 * (mag + 1.0));
                worst = err > worst ? err : worst;
            }
    free(x); free(in); free(W); free(b); free(y);
    return worst;
}
static const int DC[][4] = { /* ic, oh, ow, oc */
    {1, 28, 28, 6}, {6, 28, 28, 1}, {2, 7, 24, 3}, {3, 9, 32, 2}, {1, 5, 25, 6}, {4, 3, 30, 1},
};
TEST(direct_conv_matches_double_sums) {
    if (kernels_level_max() < 1) return; /* no AVX2: conv.c never calls it */
    kernels_level_set(1);
    for (size_t s = 0; s < ARRAY_LEN(DC); s++)
        for (int mode = 0; mode < 3; mode++) { /* bias; no bias; accumulating */
            const double e = check_dc(DC[s][0], DC[s][1], DC[s][2], DC[s][3], mode == 0, mode == 2);
            T_ASSERT_MSG(e <= 1.0, "direct_conv ic %d %dx%d oc %d mode %d: error %.3g x 1e-6 of the terms", DC[s][0], DC[s][1],
                         DC[s][2], DC[s][3], mode, e);
        }
    kernels_level_set(-1);
}
static void corrupted_dc(void) {
    g_corrupt = 1;
    kernels_level_set(1);
    const double e = check_dc(1, 28, 28, 6, 1, 0);
    kernels_level_set(-1);
    g_corrupt = 0;
    T_ASSERT_MSG(e <= 1.0, "canary: error %.3g", e);
}
TEST(direct_conv_canary_flags_one_wrong_output) {
    if (kernels_level_max() < 1) return;
    T_ASSERT(test_expect_failure(corrupted_dc));
}
