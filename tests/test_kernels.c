/* test_kernels.c -- Concord's own vector levels (layers/kernels.c) and the wide col2im of the im2col path
 * (layers/im2col.c), bit for bit: run_add at every level this CPU has (sse2, avx2, avx512) against one
 * scalar add per float, on lengths around every vector width, with signed zeros,
 * infinities and NaNs; col2im_wide_add, fed the wide column matrix (zeros in the extra columns), against
 * col2im_s1_add, the row-by-row adjoint of im2col, for padded and unpadded stride-1 layers, storing and
 * accumulating, at every level. Canaries: a wrong float in either comparison is caught. */
#include <stdlib.h>
#include <string.h>

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

TEST(kernels_every_level_adds_the_same_bits) {
    for (int l = 0; l <= kernels_level_max(); l++) {
        long bad = check_runs(l);
        T_ASSERT_MSG(bad == 0, "level %s: %ld floats differ from the scalar add", kernels_level_name(l), bad);
    }
    T_ASSERT_MSG(kernels_level_max() >= 0 && kernels_level_max() <= 2, "level %d", kernels_level_max());
    kernels_level_set(-1);
}
static void corrupted_runs(void) {
    g_corrupt = 1;
    T_ASSERT(check_runs(kernels_level_max()) == 0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
TEST(kernels_canary_flags_one_wrong_float) { T_ASSERT(test_expect_failure(corrupted_runs)); }

/* col2im_wide_add against col2im_s1_add for a stride-1 layer; returns the mismatching floats */
static long check_wide(int ic, int ih, int iw, int k, int pad, int assign, int level) {
    kernels_level_set(level);
    Layer L;
    memset(&L, 0, sizeof L);
    L.ic = ic; L.ih = ih; L.iw = iw; L.k = k; L.pad = pad; L.stride = 1;
    L.h = ih + 2 * pad - k + 1; L.w = iw + 2 * pad - k + 1; L.c = 3;
    const int KC = ic * k * k, P = L.h * L.w, PW = iw + 2 * pad, Q = L.h * PW;
    const long xn = (long)ic * ih * iw, pn = (long)ic * (ih + 2 * pad) * PW;
    float *col = xmalloc(sizeof(float) * KC * P), *wide = xmalloc(sizeof(float) * KC * Q);
    float *dx0 = xmalloc(sizeof(float) * xn), *dx1 = xmalloc(sizeof(float) * xn), *xpad = xmalloc(sizeof(float) * (pn + 1));
    fill(col, (long)KC * P, (uint64_t)(ic * 1000 + ih * 10 + pad));
    for (long j = 0; j < (long)KC * P; j++) /* finite: a NaN would spread to every value it touches */
        if (!(col[j] - col[j] == 0.0f)) col[j] = 0.25f;
    for (int r = 0; r < KC; r++)
        for (int oy = 0; oy < L.h; oy++)
            for (int x = 0; x < PW; x++) wide[(long)r * Q + oy * PW + x] = x < L.w ? col[(long)r * P + oy * L.w + x] : 0.0f;
    fill(dx0, xn, 99);
    for (long j = 0; j < xn; j++) /* accumulating into -0 is the one case the extra zeros may change */
        if (dx0[j] == 0.0f || !(dx0[j] - dx0[j] == 0.0f)) dx0[j] = 0.5f;
    memcpy(dx1, dx0, sizeof(float) * xn);
    col2im_s1_add(&L, col, xpad, dx0, assign);
    col2im_wide_add(&L, wide, xpad, dx1, assign);
    if (g_corrupt) dx1[xn / 2] += 1.0f;
    long bad = 0;
    for (long j = 0; j < xn; j++) bad += bits(dx0[j]) != bits(dx1[j]);
    free(col); free(wide); free(dx0); free(dx1); free(xpad);
    return bad;
}
static const int WIDE[][5] = { /* ic, ih, iw, k, pad */
    {1, 28, 28, 5, 2}, {6, 14, 14, 5, 0}, {2, 7, 9, 3, 1}, {3, 5, 5, 5, 0}, {1, 12, 30, 5, 4}, {4, 8, 8, 1, 0}, {2, 6, 11, 3, 2},
};
TEST(col2im_wide_is_bitwise_the_row_by_row_col2im) {
    for (int l = 0; l <= kernels_level_max(); l++)
        for (size_t i = 0; i < ARRAY_LEN(WIDE); i++)
            for (int assign = 0; assign < 2; assign++) {
                const int *c = WIDE[i];
                long bad = check_wide(c[0], c[1], c[2], c[3], c[4], assign, l);
                T_ASSERT_MSG(bad == 0, "level %s, ic %d %dx%d k %d pad %d assign %d: %ld values differ", kernels_level_name(l),
                             c[0], c[1], c[2], c[3], c[4], assign, bad);
            }
    kernels_level_set(-1);
}
static void corrupted_wide(void) {
    g_corrupt = 1;
    T_ASSERT(check_wide(6, 14, 14, 5, 0, 1, kernels_level_max()) == 0);
    g_corrupt = 0;
    kernels_level_set(-1);
}
TEST(col2im_wide_canary_flags_one_wrong_value) { T_ASSERT(test_expect_failure(corrupted_wide)); }
