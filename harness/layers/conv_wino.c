/* conv_wino.c -- k x k (3 or 5), stride-1, zero-padded convolutions of channel-blocked tensors by
 * Winograd's minimal filtering F(2x2, kxk) (Lavin and Gray 2016): each 2x2 output tile is
 * A^T [ (G g G^T) . (B^T d B) ] A over an n x n input tile d (n = k + 1), so the 4 k^2 multiply-adds per
 * tile and channel pair of the direct form become n^2 — one product per position xi of the transformed
 * tile: M[xi] (tiles, K) = X[xi] (tiles, C) U[xi] (C, K), through gemm(). 3x3: 16 instead of 36; 5x5: 36
 * instead of 100. The transforms of inputs and outputs are adds on V-float vectors (V = the channel block:
 * 8 or 16, the tensors' innermost dimension), so they run across channels.
 *
 * Matrices (Toom-Cook with the points 0, 1, -1 [, 2, -2] and infinity; verified exactly, in fractions, by
 * a generator that solved for B^T given A^T and G): F(2, 3) as in Lavin and Gray; F(2, 5):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0 0 0; -1/6 x5; -1/6 1/6 -1/6 1/6 -1/6; 1/24 1/12 1/6 1/3 2/3; 1/24 -1/12 1/6 -1/3 2/3;
 *          0 0 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]
 * (the test checks the whole convolution against sums in double, so a wrong entry fails it).
 *
 * It does in fewer products what oneDNN's direct kernels do (both at close to the CPU's peak), which
 * matters on AVX2, where oneDNN 2.6 has no Winograd kernels of its own. The rounding differs from the
 * direct sum (a few float ulps of the terms' magnitudes; 5x5's larger transform entries give more); the
 * tests bound it against double sums.
 *
 * Used by conv_dnnl.c for the forward pass and the input gradient (the input gradient of a stride-1
 * "same" convolution is the same convolution of dy with the weights turned 180 degrees and transposed:
 * wino_weights(flip)) and for the weight gradient (wino_dw, below: the forward pass's transforms taken
 * back through the chain rule; on the AVX2 Zen 3 it took vgg16's training from 39.5-45.8 to
 * 54.9-55.9 samples/s, alexnet's 81-82 -> 101-102, alternated twice; on AVX-512 too since the thirteenth
 * round). Also used by conv.c, on CPUs with AVX2 but not AVX-512, for the forward pass of LeNet-5's unpadded conv2 (6 inputs in a block of 8: WinoGeom's cr). Touches
 * only its arguments (and reads CONCORD_WINO once: wino_enabled). */
#include "harness/layers/conv_wino.h"

#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "harness/gemm.h"
#include "harness/layers/kernels.h"

/* The three forms, by kind: 0 F(2x2, 3x3), 1 F(2x2, 5x5), 2 F(4x4, 3x3) (n = 6 as F(2, 5): the same points,
 * the same B^T; 36 products per 4x4 outputs instead of 4 x 16: the GEMMs 1.78x smaller, the rounding a
 * little larger). Kernel size R, output tile MO, input tile n: */
#define KR(kd) ((kd) == 1 ? 5 : 3)
#define KM(kd) ((kd) == 2 ? 4 : 2)
#define KN(kd) ((kd) == 0 ? 4 : 6)
static int kind_of(int k, int m) {
    CHECK((k == 3 || k == 5) && (m == 2 || m == 4) && !(k == 5 && m == 4));
    return k == 5 ? 1 : m == 4 ? 2 : 0;
}

/* G of F(2, 3), F(2, 5) and F(4, 3), in double: the weight transform is computed in double and rounded once */
static const double G3[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G5[6][5] = {{1.0 / 4, 0, 0, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
                                {0, 0, 0, 0, 1}};
static const double G43[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                 {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

/* U[xi][c][k] (n^2, C, K) = G g G^T of g = W[k][c] (oihw: K, C, k, k); with flip, the input gradient's
 * weights: U[xi][k][c] (n^2, K, C) from g = W[k][c] turned by 180 degrees */
/* G of F(2, 3) on a column (a0, a1, a2), in double: the generic loop's sums in its order, its products by
 * 1 and 1/2 exact (the same values but for the sign of a zero) */
#define G3COL(o, a0, a1, a2)                                                                                 \
    (o[0] = (a0), o[1] = 0.5 * (a0) + 0.5 * (a1) + 0.5 * (a2), o[2] = 0.5 * (a0) - 0.5 * (a1) + 0.5 * (a2),   \
     o[3] = (a2))

/* G of F(4, 3) on a column */
#define G43COL(o, a0, a1, a2)                                                                                \
    (o[0] = (a0) / 4, o[1] = -((a0) + (a1) + (a2)) / 6, o[2] = -((a0) - (a1) + (a2)) / 6,                     \
     o[3] = (a0) / 24 + (a1) / 12 + (a2) / 6, o[4] = (a0) / 24 - (a1) / 12 + (a2) / 6, o[5] = (a2))

/* 3x3: the same transform, unrolled, four (o, c) pairs at once in double vectors (the same operations as
 * the scalar form on each lane, so the same bits; the generic loop cost vgg16's training 5% of its time,
 * twice a batch). In the order U is written: (c, o) for the forward form (U[xi][c][o]: the K rows of W it
 * reads, 36 bytes each, stay in L2 from one c to the next), (o, c) flipped; with the other order each
 * float stored was a cache line, 21 ms per 512x512 layer on the Zen 3 (now 4) */
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f_ __attribute__((vector_size(16), aligned(4), may_alias));
static inline __attribute__((always_inline)) void wino_weights3_body(float *U, const float *W, int K, int C, int flip,
                                                                    const int NN) {
    const long cs = (long)C * K;
    const int na = flip ? K : C, nb = flip ? C : K;
    for (int a = 0; a < na; a++)
        for (int b = 0; b < nb; b += 4) {
            const int lanes = nb - b < 4 ? nb - b : 4;
            v4d g[3][3] = {{{0}}}, t[6][3], u[6], c4[6];
            for (int l = 0; l < lanes; l++) {
                const int o = flip ? a : b + l, c = flip ? b + l : a;
                const float *w = W + ((long)o * C + c) * 9;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) g[i][j][l] = flip ? w[(2 - i) * 3 + (2 - j)] : w[i * 3 + j];
            }
            for (int j = 0; j < 3; j++) { /* G g, column j */
                if (NN == 4) G3COL(c4, g[0][j], g[1][j], g[2][j]);
                else G43COL(c4, g[0][j], g[1][j], g[2][j]);
                for (int i = 0; i < NN; i++) t[i][j] = c4[i];
            }
            float *out = U + (long)a * nb + b; /* U[xi][a][b]: (c, o) or, flipped, (o, c) */
            for (int i = 0; i < NN; i++) { /* (G g) G^T, row i */
                if (NN == 4) G3COL(u, t[i][0], t[i][1], t[i][2]);
                else G43COL(u, t[i][0], t[i][1], t[i][2]);
                for (int j = 0; j < NN; j++) {
                    const v4f_ f = __builtin_convertvector(u[j], v4f_);
                    if (lanes == 4) *(v4f_ *)(out + (i * NN + j) * cs) = f;
                    else
                        for (int l = 0; l < lanes; l++) out[(i * NN + j) * cs + l] = f[l];
                }
            }
        }
}
static void wino_weights3_sse2(float *U, const float *W, int K, int C, int flip, int m) {
    if (m == 2) wino_weights3_body(U, W, K, C, flip, 4);
    else wino_weights3_body(U, W, K, C, flip, 6);
}
__attribute__((target("avx2"))) static void wino_weights3_avx2(float *U, const float *W, int K, int C, int flip, int m) {
    if (m == 2) wino_weights3_body(U, W, K, C, flip, 4);
    else wino_weights3_body(U, W, K, C, flip, 6);
}
static void wino_weights3(float *U, const float *W, int K, int C, int flip, int m) {
    if (kernels_level() >= 1) wino_weights3_avx2(U, W, K, C, flip, m);
    else wino_weights3_sse2(U, W, K, C, flip, m);
}

void wino_weights(float *U, const float *W, int K, int C, int k, int m, int flip) {
    kind_of(k, m);
    if (k == 3) {
        wino_weights3(U, W, K, C, flip, m);
        return;
    }
    const int n = k + 1;
    const double *G = &G5[0][0];
    for (int o = 0; o < K; o++)
        for (int c = 0; c < C; c++) {
            const float *w = W + ((long)o * C + c) * k * k;
            double g[5][5], t[6][5];
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) g[i][j] = flip ? w[(k - 1 - i) * k + (k - 1 - j)] : w[i * k + j];
            for (int i = 0; i < n; i++) /* G g */
                for (int j = 0; j < k; j++) {
                    double a = 0;
                    for (int l = 0; l < k; l++) a += G[i * k + l] * g[l][j];
                    t[i][j] = a;
                }
            const long at = flip ? (long)o * C + c : (long)c * K + o;
            for (int i = 0; i < n; i++) /* (G g) G^T */
                for (int j = 0; j < n; j++) {
                    double a = 0;
                    for (int l = 0; l < k; l++) a += t[i][l] * G[j * k + l];
                    U[(long)(i * n + j) * C * K + at] = (float)a;
                }
        }
}

/* The products of both forms. Below AVX-512, OpenBLAS for all but the smallest: on the AVX2 Zen 3, one
 * thread, libxsmm (gemm()'s choice up to 2^25 multiply-adds) ran the forward products (128 tiles x C x K)
 * at 68 GFLOP/s for 128 channels and 49 for 512 where OpenBLAS ran 86-89, and the weight gradient's (K x
 * C x 512 tiles, A transposed) at 48-56 where OpenBLAS ran 83-92; libxsmm won only at 64 channels (95
 * against 80). On AVX-512 gemm() decides, as measured there. */
#define WINO_XSMM_MAX (1L << 20)
static void wgemm(int ta, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                  int ldc) {
    if (kernels_level() < 2 && (long)M * N * K > WINO_XSMM_MAX) gemm_blas(ta, 0, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    else gemm(ta, 0, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

/* the transformed tiles of position xi start SKEW floats (a cache line) past a multiple of the rows:
 * without it the n^2 streams an input or output transform writes or reads are a multiple of 4 KiB apart
 * and all fall in one L1 set */
#define SKEW 16
long wino_buf_n(int C, int K, int k, int m) {
    const long n = KN(kind_of(k, m));
    return n * n * (WINO_TILES * (long)(C + K) + 2 * SKEW);
}

/* the transforms, on 8-float vectors: V / 8 of them per channel block (V is a constant in each instance);
 * the build's baseline (SSE2) splits each in two, the AVX2 and AVX-512 instances take one register */
/* the tile loops fully unrolled (-O2 does not): the tiles stay in registers, no index arithmetic */
#define UNROLL _Pragma("GCC unroll 8")
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));
#define LD(p) (*(const v8 *)(p))
#define ST(p, v) (*(v8 *)(p) = (v))

/* the n x n input tile at (y0, x0) of one channel block, zero outside the map */
#define LOAD_TILE(d, n)                                                                                      \
    UNROLL for (int i = 0; i < n; i++)                                                                              \
        UNROLL for (int j = 0; j < n; j++) {                                                                        \
            const int r_ = y0 + i, q_ = x0 + j;                                                              \
            d[i][j] = r_ >= 0 && r_ < IH && q_ >= 0 && q_ < IW ? LD(xb + ((long)r_ * IW + q_) * V + h) : (v8){0}; \
        }

/* MO x MO outputs (o[i][j], i rows) + bias, ReLU, into the map where they fall in it */
static inline __attribute__((always_inline)) void store_out(float *yb, int H, int W, int y0, int x0, int h, int V,
                                                            v8 o[4][4], const float *bias, int relu, const int MO) {
    const v8 b = bias ? LD(bias + h) : (v8){0};
    UNROLL for (int i = 0; i < MO; i++)
        UNROLL for (int j = 0; j < MO; j++) {
            if (y0 + i >= H || x0 + j >= W) continue;
            v8 v = o[i][j];
            if (bias) v += b;
            if (relu) v = (v8)((__typeof__(v > v))(v > (v8){0}) & (__typeof__(v > v))v);
            ST(yb + ((long)(y0 + i) * W + x0 + j) * V + h, v);
        }
}

/* B^T and A^T of F(2, 3) and F(2, 5) on a column (or row) a of n = k + 1 vectors: the same formulas both
 * ways; B^T gives n, A^T two */
#define BT3(o, a) (o[0] = a[0] - a[2], o[1] = a[1] + a[2], o[2] = a[2] - a[1], o[3] = a[1] - a[3])
/* The six-point forms share their sums (Lavin and Gray's grouping): rows 1-2 of B^T are (a4 - 4 a2) +- (a3 -
 * 4 a1), rows 3-4 (a4 - a2) +- 2 (a3 - a1); A^T's rows are sums of a1 +- a2 and a3 +- a4. 19 operations for
 * BT5 instead of 28, 13 for AT43 instead of 20 (the same values in real arithmetic, rounded differently:
 * the test bounds both against sums in double). */
#define BT5(o, a)                                                                                            \
    do {                                                                                                     \
        const __typeof__(a[0]) t1_ = a[4] - 4 * a[2], t2_ = a[3] - 4 * a[1], t3_ = a[4] - a[2],               \
                               t4_ = 2 * (a[3] - a[1]);                                                      \
        o[0] = 4 * a[0] - 5 * a[2] + a[4], o[1] = t1_ + t2_, o[2] = t1_ - t2_, o[3] = t3_ + t4_,            \
        o[4] = t3_ - t4_, o[5] = 4 * a[1] - 5 * a[3] + a[5];                                                 \
    } while (0)
#define AT3(o0, o1, a) (o0 = a[0] + a[1] + a[2], o1 = a[1] - a[2] - a[3])
#define AT5(o0, o1, a)                                                                                       \
    do {                                                                                                     \
        const __typeof__(a[0]) s12_ = a[1] + a[2], s34_ = a[3] + a[4];                                       \
        o0 = a[0] + s12_ + s34_, o1 = (a[1] - a[2]) + 2 * (a[3] - a[4]) + a[5];                              \
    } while (0)
/* A^T of F(4, 3): four outputs, into o[0..3] */
#define AT43(o, a)                                                                                           \
    do {                                                                                                     \
        const __typeof__(a[0]) s12_ = a[1] + a[2], d12_ = a[1] - a[2], s34_ = a[3] + a[4], d34_ = a[3] - a[4]; \
        o[0] = a[0] + s12_ + s34_, o[1] = d12_ + 2 * d34_, o[2] = s12_ + 4 * s34_, o[3] = d12_ + 8 * d34_ + a[5]; \
    } while (0)

/* the input transform of one tile and channel block: X[xi][tl][cb*V..] = (B^T d B)[xi], xi = n i + j,
 * the positions s floats apart, d the tile at (y0, x0) of the input map, zero outside it; n (4 or 6) and V
 * are constants in each instance */
static inline __attribute__((always_inline)) void in_tile(float *X /* (n^2, TB, C) */, long s, long tl, int C,
                                                         int cb, const float *xb /* (IH, IW, V) */, int IH, int IW,
                                                         int y0, int x0, const int n, const int V) {
    for (int h = 0; h < V; h += 8) {
        v8 d[6][6], t[6][6], c[6], u[6];
        LOAD_TILE(d, n)
        UNROLL for (int j = 0; j < n; j++) { /* B^T d, column j */
            UNROLL for (int i = 0; i < n; i++) c[i] = d[i][j];
            if (n == 4) BT3(u, c);
            else BT5(u, c);
            UNROLL for (int i = 0; i < n; i++) t[i][j] = u[i];
        }
        float *o = X + tl * C + (long)cb * V + h;
        UNROLL for (int i = 0; i < n; i++) { /* (B^T d) B, row i */
            if (n == 4) BT3(u, t[i]);
            else BT5(u, t[i]);
            UNROLL for (int j = 0; j < n; j++) ST(o + (n * i + j) * s, u[j]);
        }
    }
}

/* the output transform of one tile and output-channel block: A^T M A, + bias, ReLU, into the map */
static inline __attribute__((always_inline)) void out_tile(float *yb /* (H, W, V) */, int H, int W, int y0, int x0,
                                                          const float *M /* (n^2, TB, K) */, long s, long tl, int K,
                                                          int kb, const float *bias, int relu, const int KD,
                                                          const int V) {
    const int n = KN(KD), MO = KM(KD);
    for (int h = 0; h < V; h += 8) {
        const float *m = M + tl * K + (long)kb * V + h;
        v8 t[4][6], o[4][4], c[6], r4[4];
        UNROLL for (int j = 0; j < n; j++) { /* A^T m, column j */
            UNROLL for (int i = 0; i < n; i++) c[i] = LD(m + (n * i + j) * s);
            if (KD == 0) AT3(t[0][j], t[1][j], c);
            else if (KD == 1) AT5(t[0][j], t[1][j], c);
            else {
                AT43(r4, c);
                UNROLL for (int i = 0; i < 4; i++) t[i][j] = r4[i];
            }
        }
        UNROLL for (int i = 0; i < MO; i++) {
            if (KD == 0) AT3(o[i][0], o[i][1], t[i]);
            else if (KD == 1) AT5(o[i][0], o[i][1], t[i]);
            else AT43(o[i], t[i]);
        }
        store_out(yb, H, W, y0, x0, h, V, o, bias ? bias + (long)kb * V : NULL, relu, MO);
    }
}

#define WINO_BODY(V, KD)                                                                                     \
    const int C = g->C, cr = g->cr, K = g->K, IH = g->ih, IW = g->iw, OH = g->h, OW = g->w, pad = g->pad;     \
    const int MO = KM(KD), th = (OH + MO - 1) / MO, tw = (OW + MO - 1) / MO, CB = C / V, KB = K / V;         \
    const long tpi = (long)th * tw, T = N * tpi, ihw = (long)IH * IW, ohw = (long)OH * OW;                   \
    const int NP = KN(KD) * KN(KD);                                                                           \
    float *X = buf, *M = buf + (long)NP * (WINO_TILES * C + SKEW);                                            \
    for (long t0 = 0; t0 < T; t0 += WINO_TILES) {                                                             \
        const long TB = T - t0 < WINO_TILES ? T - t0 : WINO_TILES;                                            \
        for (long tl = 0; tl < TB; tl++) {                                                                    \
            const long tg = t0 + tl, n = tg / tpi, r = tg % tpi;                                              \
            const int y0 = MO * (int)(r / tw) - pad, x0 = MO * (int)(r % tw) - pad;                           \
            for (int cb = 0; cb < CB; cb++)                                                                   \
                in_tile(X, TB * C + SKEW, tl, C, cb, x + (n * CB + cb) * ihw * V, IH, IW, y0, x0, KN(KD), V); \
        }                                                                                                     \
        for (int xi = 0; xi < NP; xi++) /* the first cr channels of each row: the rest are padding lanes */  \
            wgemm(0, (int)TB, K, cr, X + xi * (TB * C + SKEW), C, U + (long)xi * cr * K, K, 0.0f,              \
                  M + xi * (TB * K + SKEW), K);                                                               \
        for (long tl = 0; tl < TB; tl++) {                                                                    \
            const long tg = t0 + tl, n = tg / tpi, r = tg % tpi;                                              \
            const int y0 = MO * (int)(r / tw), x0 = MO * (int)(r % tw);                                       \
            for (int kb = 0; kb < KB; kb++)                                                                   \
                out_tile(y + (n * KB + kb) * ohw * V, OH, OW, y0, x0, M, TB * K + SKEW, tl, K, kb, bias, relu, KD, V); \
        }                                                                                                     \
    }

typedef void (*WinoFn)(float *y, const float *x, const float *U, const float *bias, int relu, long N,
                       const WinoGeom *g, float *buf);
#define WINO_FN(name, V, KD, target)                                                                          \
    target static void name(float *y, const float *x, const float *U, const float *bias, int relu, long N,   \
                            const WinoGeom *g, float *buf) {                                                  \
        WINO_BODY(V, KD)                                                                                      \
    }
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))
/* every level and block for kind KD */
#define WINO_FNS(KD)                                                                                          \
    WINO_FN(w##KD##v8_sse2, 8, KD, )                                                                          \
    WINO_FN(w##KD##v16_sse2, 16, KD, )                                                                        \
    WINO_FN(w##KD##v8_avx2, 8, KD, AVX2)                                                                      \
    WINO_FN(w##KD##v16_avx2, 16, KD, AVX2)                                                                    \
    WINO_FN(w##KD##v8_avx512, 8, KD, AVX512)                                                                  \
    WINO_FN(w##KD##v16_avx512, 16, KD, AVX512)
WINO_FNS(0)
WINO_FNS(1)
WINO_FNS(2)
/* by kind, vector level, block (8, 16) */
static const WinoFn WINO[3][3][2] = {
    {{w0v8_sse2, w0v16_sse2}, {w0v8_avx2, w0v16_avx2}, {w0v8_avx512, w0v16_avx512}},
    {{w1v8_sse2, w1v16_sse2}, {w1v8_avx2, w1v16_avx2}, {w1v8_avx512, w1v16_avx512}},
    {{w2v8_sse2, w2v16_sse2}, {w2v8_avx2, w2v16_avx2}, {w2v8_avx512, w2v16_avx512}},
};

/* ------------------------------------------------------------------ the weight gradient
 *
 * The forward pass is y = A^T [U . (B^T d B)] A per tile with U = G g G^T, so, by the chain rule through
 * the same linear maps, dL/dU[xi] (C, K) = sum over tiles of (B^T d B)[xi] (the input tile's transform,
 * as the forward pass makes it) times (A dy A^T)[xi] (the output gradient's 2x2 tile taken back to n x n),
 * one product per position xi with the tiles as the inner dimension, and dL/dg = G^T dL/dU G. It is the
 * exact gradient of the convolution (in real arithmetic, as the forward pass is its exact value), rounded
 * differently from a direct sum; the test bounds it against sums in double. */

/* A of F(2, 3) and F(2, 5) on a pair p[0..1], of F(4, 3) on four p[0..3]: the n values A p */
#define AC3(o, p) (o[0] = p[0], o[1] = p[0] + p[1], o[2] = p[0] - p[1], o[3] = -(p[1]))
#define AC5(o, p) (o[0] = p[0], o[1] = p[0] + p[1], o[2] = p[0] - p[1], o[3] = p[0] + 2 * p[1], o[4] = p[0] - 2 * p[1], o[5] = p[1])
/* the even and odd points' sums shared, as in AT43: 11 operations instead of 18 */
#define AC43(o, p)                                                                                           \
    do {                                                                                                     \
        const __typeof__(p[0]) e_ = p[0] + p[2], d_ = p[1] + p[3], f_ = p[0] + 4 * p[2], g_ = 2 * p[1] + 8 * p[3]; \
        o[0] = p[0], o[1] = e_ + d_, o[2] = e_ - d_, o[3] = f_ + g_, o[4] = f_ - g_, o[5] = p[3];           \
    } while (0)

#define AC(KD, o, p)                                                                                         \
    do {                                                                                                     \
        if ((KD) == 0) AC3(o, p);                                                                            \
        else if ((KD) == 1) AC5(o, p);                                                                       \
        else AC43(o, p);                                                                                     \
    } while (0)

/* the output gradient's transform of one tile and output-channel block: D[xi][tl][kb*V..] = (A e A^T)[xi], e
 * the MO x MO output gradients at (y0, x0), zero outside the map; their sum added to acc (the bias gradient) */
static inline __attribute__((always_inline)) void dy_tile(float *D /* (n^2, TB, K) */, long s, long tl, int K, int kb,
                                                         const float *gb /* (H, W, V) */, int H, int W, int y0,
                                                         int x0, float *acc /* (K) */, const int KD, const int V) {
    const int n = KN(KD), MO = KM(KD);
    for (int h = 0; h < V; h += 8) {
        v8 e[4][4], t[4][6], u[6], c[6], p[4], sum = {0};
        UNROLL for (int i = 0; i < MO; i++)
            UNROLL for (int j = 0; j < MO; j++) {
                e[i][j] = y0 + i < H && x0 + j < W ? LD(gb + ((long)(y0 + i) * W + x0 + j) * V + h) : (v8){0};
                sum += e[i][j];
            }
        ST(acc + (long)kb * V + h, LD(acc + (long)kb * V + h) + sum);
        UNROLL for (int i = 0; i < MO; i++) { /* e A^T, row i */
            AC(KD, u, e[i]);
            UNROLL for (int j = 0; j < n; j++) t[i][j] = u[j];
        }
        float *o = D + tl * K + (long)kb * V + h;
        UNROLL for (int j = 0; j < n; j++) { /* A (e A^T), column j */
            UNROLL for (int i = 0; i < MO; i++) p[i] = t[i][j];
            AC(KD, c, p);
            UNROLL for (int i = 0; i < n; i++) ST(o + (n * i + j) * s, c[i]);
        }
    }
}

/* the scratch of wino_dw: the bias gradient's sums (K doubles, K floats), then the transforms of WINO_DW_TILES
 * tiles of the input (n^2 rows of C) and of the output gradient (n^2 rows of K), then Z (n^2, K, C) */
#define WINO_DW_TILES 512 /* tiles per round: Z is read and written once a round */
long wino_dw_buf_n(int C, int K, int k, int m) {
    const long np = (long)KN(kind_of(k, m)) * KN(kind_of(k, m));
    return 3L * K + np * (WINO_DW_TILES * (long)(C + K) + 2 * SKEW) + np * C * K;
}

#define WINO_DW_BODY(V, KD)                                                                                  \
    const int C = g->C, K = g->K, IH = g->ih, IW = g->iw, OH = g->h, OW = g->w, pad = g->pad;                 \
    const int MO = KM(KD), th = (OH + MO - 1) / MO, tw = (OW + MO - 1) / MO, CB = C / V, KB = K / V;         \
    const long tpi = (long)th * tw, T = N * tpi, ihw = (long)IH * IW, ohw = (long)OH * OW;                   \
    const int NP = KN(KD) * KN(KD);                                                                           \
    const long sx = WINO_DW_TILES * (long)C + SKEW, sd = WINO_DW_TILES * (long)K + SKEW;                            \
    double *dsum = (double *)buf;                                                                             \
    float *acc = buf + 2L * K, *X = acc + K, *D = X + NP * sx, *Z = D + NP * sd;                              \
    for (int o = 0; o < K; o++) dsum[o] = 0;                                                                  \
    for (long t0 = 0; t0 < T; t0 += WINO_DW_TILES) {                                                             \
        const long TB = T - t0 < WINO_DW_TILES ? T - t0 : WINO_DW_TILES;                                            \
        memset(acc, 0, sizeof(float) * K);                                                                    \
        for (long tl = 0; tl < TB; tl++) {                                                                    \
            const long tg = t0 + tl, n = tg / tpi, r = tg % tpi;                                              \
            const int y0 = MO * (int)(r / tw), x0 = MO * (int)(r % tw);                                       \
            for (int cb = 0; cb < CB; cb++)                                                                   \
                in_tile(X, sx, tl, C, cb, x + (n * CB + cb) * ihw * V, IH, IW, y0 - pad, x0 - pad, KN(KD), V); \
            for (int kb = 0; kb < KB; kb++)                                                                   \
                dy_tile(D, sd, tl, K, kb, dy + (n * KB + kb) * ohw * V, OH, OW, y0, x0, acc, KD, V);          \
        }                                                                                                     \
        for (int xi = 0; xi < NP; xi++) /* Z[xi] (K, C) (+)= D[xi]^T X[xi] */                                \
            wgemm(1, K, C, (int)TB, D + xi * sd, K, X + xi * sx, C, t0 ? 1.0f : 0.0f, Z + (long)xi * K * C, C);   \
        for (int o = 0; o < K; o++) dsum[o] += acc[o];                                                        \
    }

typedef void (*WinoDwFn)(const float *x, const float *dy, long N, const WinoGeom *g, float *buf);
#define WINO_DW_FN(name, V, KD, target)                                                                       \
    target static void name(const float *x, const float *dy, long N, const WinoGeom *g, float *buf) {         \
        WINO_DW_BODY(V, KD)                                                                                   \
    }
#define WINO_DW_FNS(KD)                                                                                       \
    WINO_DW_FN(d##KD##v8_sse2, 8, KD, )                                                                       \
    WINO_DW_FN(d##KD##v16_sse2, 16, KD, )                                                                     \
    WINO_DW_FN(d##KD##v8_avx2, 8, KD, AVX2)                                                                   \
    WINO_DW_FN(d##KD##v16_avx2, 16, KD, AVX2)                                                                 \
    WINO_DW_FN(d##KD##v8_avx512, 8, KD, AVX512)                                                               \
    WINO_DW_FN(d##KD##v16_avx512, 16, KD, AVX512)
WINO_DW_FNS(0)
WINO_DW_FNS(1)
WINO_DW_FNS(2)
static const WinoDwFn WINO_DW[3][3][2] = {
    {{d0v8_sse2, d0v16_sse2}, {d0v8_avx2, d0v16_avx2}, {d0v8_avx512, d0v16_avx512}},
    {{d1v8_sse2, d1v16_sse2}, {d1v8_avx2, d1v16_avx2}, {d1v8_avx512, d1v16_avx512}},
    {{d2v8_sse2, d2v16_sse2}, {d2v8_avx2, d2v16_avx2}, {d2v8_avx512, d2v16_avx512}},
};

void wino_dw(float *dW, float *db, const float *x, const float *dy, long N, const WinoGeom *g, int add, float *buf) {
    const int k = g->k, V = g->V, C = g->C, K = g->K, kd = kind_of(k, g->m ? g->m : 2), n = KN(kd), kk = k * k;
    CHECK((V == 8 || V == 16) && C % V == 0 && K % V == 0 && g->cr == C);
    CHECK(g->pad >= 0 && g->h >= 1 && g->w >= 1 && g->h + k - 1 <= g->ih + 2 * g->pad && g->w + k - 1 <= g->iw + 2 * g->pad);
    WINO_DW[kd][kernels_level()][V == 16](x, dy, N, g, buf);
    const double *dsum = (const double *)buf, *G = kd == 0 ? &G3[0][0] : kd == 1 ? &G5[0][0] : &G43[0][0];
    const float *Z = buf + 3L * K + (long)n * n * (WINO_DW_TILES * (long)(C + K) + 2 * SKEW);
    const long zs = (long)C * K; /* Z[xi][o][c] at xi zs + o C + c */
    for (int o = 0; o < K; o++) {
        if (db) db[o] = add ? db[o] + (float)dsum[o] : (float)dsum[o];
        if (kd == 0) { /* G^T of F(2, 3) on a column (z0..z3): (z0 + z1/2 + z2/2, z1/2 - z2/2, z1/2 + z2/2 + z3) */
            for (int c = 0; c < C; c++) {
                const float *z = Z + (long)o * C + c;
                double t[3][4];
                for (int j = 0; j < 4; j++) {
                    const double a0 = z[j * zs], a1 = 0.5 * z[(4 + j) * zs], a2 = 0.5 * z[(8 + j) * zs],
                                 a3 = z[(12 + j) * zs];
                    t[0][j] = a0 + a1 + a2, t[1][j] = a1 - a2, t[2][j] = a1 + a2 + a3;
                }
                float *w = dW + ((long)o * C + c) * 9;
                for (int i = 0; i < 3; i++) {
                    const double a0 = t[i][0], a1 = 0.5 * t[i][1], a2 = 0.5 * t[i][2], a3 = t[i][3];
                    const double v[3] = {a0 + a1 + a2, a1 - a2, a1 + a2 + a3};
                    for (int j = 0; j < 3; j++) w[i * 3 + j] = add ? w[i * 3 + j] + (float)v[j] : (float)v[j];
                }
            }
            continue;
        }
        for (int c = 0; c < C; c++) { /* dW[o][c] (+)= G^T Z[.][o][c] G, in double, rounded once */
            const float *z = Z + (long)o * C + c;
            double t[5][6];
            for (int i = 0; i < k; i++) /* G^T z */
                for (int j = 0; j < n; j++) {
                    double a = 0;
                    for (int l = 0; l < n; l++) a += G[l * k + i] * z[(l * n + j) * zs];
                    t[i][j] = a;
                }
            float *w = dW + ((long)o * C + c) * kk;
            for (int i = 0; i < k; i++) /* (G^T z) G */
                for (int j = 0; j < k; j++) {
                    double a = 0;
                    for (int l = 0; l < n; l++) a += t[i][l] * G[l * k + j];
                    w[i * k + j] = add ? w[i * k + j] + (float)a : (float)a;
                }
        }
    }
}

int wino_enabled(void) {
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("CONCORD_WINO");
        off = e && str_eq(e, "0");
    }
    return !off;
}

void wino_conv(float *y, const float *x, const float *U, const float *bias, int relu, long N, const WinoGeom *g,
               float *buf) {
    const int k = g->k, V = g->V, kd = kind_of(k, g->m ? g->m : 2);
    CHECK((V == 8 || V == 16) && g->C % V == 0 && g->K % V == 0 && g->cr >= 1 && g->cr <= g->C);
    CHECK(g->pad >= 0 && g->h >= 1 && g->w >= 1 && g->h + k - 1 <= g->ih + 2 * g->pad && g->w + k - 1 <= g->iw + 2 * g->pad);
    WINO[kd][kernels_level()][V == 16](y, x, U, bias, relu, N, g, buf);
}
