/* conv_wino.c -- 3x3, stride 1, pad 1 convolutions of channel-blocked tensors by Winograd's F(2x2, 3x3)
 * (Lavin and Gray 2016): each 2x2 output tile is A^T [ (G g G^T) . (B^T d B) ] A over a 4x4 input tile d,
 * so the 36 multiply-adds per tile and channel pair of the direct form become 16 — one product per
 * position xi of the 4x4 transformed tile: M[xi] (tiles, K) = X[xi] (tiles, C) U[xi] (C, K), through
 * gemm(). The transforms of inputs and outputs are adds on V-float vectors (V = the channel block: 8 or
 * 16, the tensors' innermost dimension), so they run across channels.
 *
 * It does in 16 products what oneDNN's direct kernels do in 36 (both at close to the CPU's peak), which
 * matters on AVX2, where oneDNN 2.6 has no Winograd kernels of its own. The rounding differs from the
 * direct sum (a few float ulps of the inputs' magnitudes); the tests bound it against double sums.
 *
 * Used by conv_dnnl.c for the forward pass and the input gradient (the input gradient of a 3x3 pad-1
 * convolution is the same convolution of dy with the weights flipped and transposed: wino_weights(flip)).
 * The weight gradient stays oneDNN's. Touches only its arguments. */
#include "harness/layers/conv_wino.h"

#include <string.h>

#include "harness/core.h"
#include "harness/gemm.h"
#include "harness/layers/kernels.h"

/* U[xi][c][k] (16, C, K) = G g G^T of g = W[k][c] (oihw: K, C, 3, 3); with flip, the input gradient's
 * weights: U[xi][k][c] (16, K, C) from g = W[k][c] turned by 180 degrees */
void wino_weights(float *U, const float *W, int K, int C, int flip) {
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            const float *w = W + ((long)k * C + c) * 9;
            float g[3][3], t[4][3], u[4][4];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = flip ? w[(2 - i) * 3 + (2 - j)] : w[i * 3 + j];
            for (int j = 0; j < 3; j++) { /* G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 */
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                u[i][0] = t[i][0];
                u[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                u[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                u[i][3] = t[i][2];
            }
            const long at = flip ? (long)k * C + c : (long)c * K + k;
            for (int xi = 0; xi < 16; xi++) U[(long)xi * C * K + at] = u[xi / 4][xi % 4];
        }
}

long wino_buf_n(int C, int K, int V) { return 16L * WINO_TILES * (C + K) + 16L * V; }

/* the transforms for one channel block of V lanes; V is a constant in each instance (8 or 16) */
#define LANES(V, body)                                                                                       \
    for (int l = 0; l < V; l++) { body; }

static inline __attribute__((always_inline)) void in_tile(float *X /* (16, TB, C) */, long TB, int C, long tl,
                                                          int cb, const float *xb /* (H, W, V) */, int H, int W,
                                                          int y0, int x0, const int V) {
    float d[4][4][16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            const int r = y0 + i, q = x0 + j;
            if (r >= 0 && r < H && q >= 0 && q < W) memcpy(d[i][j], xb + ((long)r * W + q) * V, sizeof(float) * V);
            else memset(d[i][j], 0, sizeof(float) * V);
        }
    float t[4][4][16];
    for (int j = 0; j < 4; j++) /* B^T d: rows d0-d2, d1+d2, d2-d1, d1-d3 */
        LANES(V, t[0][j][l] = d[0][j][l] - d[2][j][l]; t[1][j][l] = d[1][j][l] + d[2][j][l];
              t[2][j][l] = d[2][j][l] - d[1][j][l]; t[3][j][l] = d[1][j][l] - d[3][j][l])
    float *o = X + tl * C + (long)cb * V;
    const long s = TB * C;
    for (int i = 0; i < 4; i++) /* (B^T d) B, stored at xi = 4i + j */
        LANES(V, o[(4 * i + 0) * s + l] = t[i][0][l] - t[i][2][l]; o[(4 * i + 1) * s + l] = t[i][1][l] + t[i][2][l];
              o[(4 * i + 2) * s + l] = t[i][2][l] - t[i][1][l]; o[(4 * i + 3) * s + l] = t[i][1][l] - t[i][3][l])
}

static inline __attribute__((always_inline)) void out_tile(float *yb /* (H, W, V) */, int H, int W, int y0, int x0,
                                                           const float *M /* (16, TB, K) */, long TB, int K, long tl,
                                                           int kb, const float *bias, int relu, const int V) {
    const float *m = M + tl * K + (long)kb * V;
    const long s = TB * K;
    float t[2][4][16];
    for (int j = 0; j < 4; j++) /* A^T m: rows m0+m1+m2, m1-m2-m3 */
        LANES(V, t[0][j][l] = m[(0 + j) * s + l] + m[(4 + j) * s + l] + m[(8 + j) * s + l];
              t[1][j][l] = m[(4 + j) * s + l] - m[(8 + j) * s + l] - m[(12 + j) * s + l])
    for (int i = 0; i < 2; i++) {
        if (y0 + i >= H) break;
        float o[2][16];
        LANES(V, o[0][l] = t[i][0][l] + t[i][1][l] + t[i][2][l]; o[1][l] = t[i][1][l] - t[i][2][l] - t[i][3][l])
        for (int j = 0; j < 2; j++) {
            if (x0 + j >= W) break;
            float *p = yb + ((long)(y0 + i) * W + x0 + j) * V;
            if (bias) LANES(V, o[j][l] += bias[(long)kb * V + l])
            if (relu) LANES(V, p[l] = o[j][l] > 0.0f ? o[j][l] : 0.0f)
            else LANES(V, p[l] = o[j][l])
        }
    }
}

#define WINO_BODY(V)                                                                                          \
    const int th = (H + 1) / 2, tw = (W + 1) / 2, CB = C / V, KB = K / V;                                   \
    const long tpi = (long)th * tw, T = N * tpi, hw = (long)H * W;                                           \
    float *X = buf, *M = buf + 16L * WINO_TILES * C;                                                         \
    for (long t0 = 0; t0 < T; t0 += WINO_TILES) {                                                             \
        const long TB = T - t0 < WINO_TILES ? T - t0 : WINO_TILES;                                            \
        for (long tl = 0; tl < TB; tl++) {                                                                    \
            const long tg = t0 + tl, n = tg / tpi, r = tg % tpi;                                              \
            const int y0 = 2 * (int)(r / tw) - 1, x0 = 2 * (int)(r % tw) - 1;                                 \
            for (int cb = 0; cb < CB; cb++)                                                                   \
                in_tile(X, TB, C, tl, cb, x + (n * CB + cb) * hw * V, H, W, y0, x0, V);                       \
        }                                                                                                     \
        for (int xi = 0; xi < 16; xi++)                                                                       \
            gemm(0, 0, (int)TB, K, C, 1.0f, X + xi * TB * C, C, U + (long)xi * C * K, K, 0.0f, M + xi * TB * K, K); \
        for (long tl = 0; tl < TB; tl++) {                                                                    \
            const long tg = t0 + tl, n = tg / tpi, r = tg % tpi;                                              \
            const int y0 = 2 * (int)(r / tw), x0 = 2 * (int)(r % tw);                                         \
            for (int kb = 0; kb < KB; kb++)                                                                   \
                out_tile(y + (n * KB + kb) * hw * V, H, W, y0, x0, M, TB, K, tl, kb, bias, relu, V);          \
        }                                                                                                     \
    }

typedef void (*WinoFn)(float *y, const float *x, const float *U, const float *bias, int relu, long N, int C, int K,
                       int H, int W, float *buf);
#define WINO_FN(name, V, target)                                                                              \
    target static void name(float *y, const float *x, const float *U, const float *bias, int relu, long N,   \
                            int C, int K, int H, int W, float *buf) {                                         \
        WINO_BODY(V)                                                                                          \
    }
WINO_FN(wino8_sse2, 8, )
WINO_FN(wino16_sse2, 16, )
WINO_FN(wino8_avx2, 8, __attribute__((target("avx2,fma"))))
WINO_FN(wino16_avx2, 16, __attribute__((target("avx2,fma"))))
WINO_FN(wino8_avx512, 8, __attribute__((target("avx512f"))))
WINO_FN(wino16_avx512, 16, __attribute__((target("avx512f"))))
static const WinoFn WINO[3][2] = {{wino8_sse2, wino16_sse2}, {wino8_avx2, wino16_avx2}, {wino8_avx512, wino16_avx512}};

void wino_conv(float *y, const float *x, const float *U, const float *bias, int relu, long N, int C, int K, int H,
               int W, int V, float *buf) {
    CHECK((V == 8 || V == 16) && C % V == 0 && K % V == 0);
    WINO[kernels_level()][V == 16](y, x, U, bias, relu, N, C, K, H, W, buf);
}
