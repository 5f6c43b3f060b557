/* conv_wino.h -- 3x3 and 5x5 stride-1 "same" convolutions on channel-blocked tensors by Winograd's
 * F(2x2, 3x3) and F(2x2, 5x5): see conv_wino.c. */
#ifndef CONCORD_CONV_WINO_H
#define CONCORD_CONV_WINO_H

/* tiles per round of (k+1)^2 products (the rows of each): the scratch holds their transforms */
#define WINO_TILES 128

/* U ((k+1)^2, C, K) from W (K, C, k, k), k 3 or 5; flip: U ((k+1)^2, K, C) for the input gradient (W
 * turned 180 degrees) */
void wino_weights(float *U, const float *W, int K, int C, int k, int flip);
/* floats of the scratch wino_conv needs */
long wino_buf_n(int C, int K, int k);
/* y (N, K/V, H, W, V) = conv kxk (x (N, C/V, H, W, V), stride 1, pad k/2) through U ((k+1)^2, C, K),
 * + bias (K) or not, then ReLU if relu; C and K multiples of V (8 or 16); buf: wino_buf_n(C, K, k) floats */
void wino_conv(float *y, const float *x, const float *U, const float *bias, int relu, long N, int C, int K, int H,
               int W, int k, int V, float *buf);

#endif
