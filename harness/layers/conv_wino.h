/* conv_wino.h -- 3x3 stride-1 pad-1 convolutions on channel-blocked tensors by Winograd's F(2x2, 3x3):
 * see conv_wino.c. */
#ifndef CONCORD_CONV_WINO_H
#define CONCORD_CONV_WINO_H

/* tiles per round of 16 products (the rows of each): the scratch holds their transforms */
#ifndef WINO_TILES
#define WINO_TILES 128
#endif

/* U (16, C, K) from W (K, C, 3, 3); flip: U (16, K, C) for the input gradient (W turned 180 degrees) */
void wino_weights(float *U, const float *W, int K, int C, int flip);
/* floats of the scratch wino_conv needs */
long wino_buf_n(int C, int K, int V);
/* y (N, K/V, H, W, V) = conv3x3(x (N, C/V, H, W, V), pad 1) through U (16, C, K), + bias (K) or not,
 * then ReLU if relu; C and K multiples of V (8 or 16); buf: wino_buf_n(C, K, V) floats */
void wino_conv(float *y, const float *x, const float *U, const float *bias, int relu, long N, int C, int K, int H,
               int W, int V, float *buf);

#endif
