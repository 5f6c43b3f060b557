/* conv_wino.h -- 3x3 and 5x5 stride-1 convolutions on channel-blocked tensors by Winograd's F(2x2, 3x3), F(4x4, 3x3)
 * and F(2x2, 5x5): see conv_wino.c. */
#ifndef CONCORD_CONV_WINO_H
#define CONCORD_CONV_WINO_H

/* 0 when CONCORD_WINO=0 (for measuring: every layer then takes its direct path) */
int wino_enabled(void);

/* tiles per round of n^2 products (n = k + m - 1; the rows of each): the scratch holds their transforms */
#define WINO_TILES 128

/* U (n^2, C, K), n = k + m - 1, from W (K, C, k, k), k 3 or 5 (m 2), or 3 (m 2 or 4); flip: U (n^2, K, C) for the input gradient (W
 * turned 180 degrees) */
void wino_weights(float *U, const float *W, int K, int C, int k, int m, int flip);
/* floats of the scratch wino_conv needs (C: the blocked input channels, padding lanes included) */
long wino_buf_n(int C, int K, int k, int m);
/* the convolution wino_conv runs: x (N, C/V, ih, iw, V) -> y (N, K/V, h, w, V), k x k (3 or 5), stride 1,
 * zero padding pad (h + k - 1 <= ih + 2 pad, the same for w); the sums run over the first cr <= C input
 * channels (the others are padding lanes); C and K multiples of V (8 or 16) */
typedef struct WinoGeom {
    int C, cr, K, ih, iw, h, w, pad, k, V;
    int m; /* outputs per tile side: 2 (F(2x2, kxk); 0 means 2 too) or 4 (F(4x4, 3x3), k 3 only) */
} WinoGeom;
/* y = that convolution of x through U ((k+1)^2, cr, K), + bias (K) or not, then ReLU if relu; buf:
 * wino_buf_n(C, K, k) floats */
void wino_conv(float *y, const float *x, const float *U, const float *bias, int relu, long N, const WinoGeom *g,
               float *buf);

/* the weight gradient of that convolution (cr = C: no padding lanes): dW (K, C, k, k) and db (K, or NULL) =
 * the sums over the N images of x (N, C/V, ih, iw, V) times dy (N, K/V, h, w, V), by the same transforms
 * (see conv_wino.c); add: 1 adds them to dW and db, 0 stores them; buf: wino_dw_buf_n(C, K, k) floats */
long wino_dw_buf_n(int C, int K, int k, int m);
void wino_dw(float *dW, float *db, const float *x, const float *dy, long N, const WinoGeom *g, int add, float *buf);

#endif
