/* conv_direct.h -- the weight gradient of a stride-1 convolution with few output channels and narrow
 * output rows (LeNet-5's conv1: 6 channels of 28x28) as direct dot products in AVX2+FMA or AVX-512
 * (kernels.c picks the level). conv.c says when it is used and why. */
#ifndef CONCORD_CONV_DIRECT_H
#define CONCORD_CONV_DIRECT_H

/* widest output row (two AVX-512 vectors, four AVX2 ones), the kernel sizes K it is built for, and the
 * most output channels worth it */
#define DIRECT_MAX_W 32
#define DIRECT_MAX_C 8
int direct_dw_k(int k);
/* floats per widened dy row (16 or 32) for outputs OW wide; output channels dy must be padded to */
int direct_row(int ow);
int direct_c_pad(int oc);

/* dst (C, H + 2*pad, PW) = src (C, H, W) with a zero border of pad (left, top) and zeros to the right
 * (PW >= W + 2*pad), then DIRECT_SLACK zeros (read past the last row); direct_border_n: its floats */
#define DIRECT_SLACK 64
void direct_border(const float *src, int C, int H, int W, int pad, int PW, float *dst);
long direct_border_n(int C, int H, int pad, int PW);

/* dWt[((c*K + ki)*K + kj)*OC + o] (=, or += with acc) sum over y < OH, x < OW of
 *     dy[o][y][x] * in[c][y + ki][x + kj]
 * in: a direct_border'ed input (IC, H, PW), H >= OH + K - 1, PW >= OW + K - 1; gw: dy widened,
 * (direct_c_pad(OC), OH, direct_row(OW)), zero past OW and in the padding channels (so the columns the
 * vectors read past OW add exact zeros, the input there being finite). Needs kernels_level() >= 1 and
 * direct_dw_k(K) (CHECKed). */
void direct_dw(const float *in, int IC, int H, int PW, const float *gw, int OC, int K, int OH, int OW, float *dWt,
               int acc);

/* the same sums for OC a multiple of 16, vectorised over the output channels: dWt as above (=, or += with
 * acc), from in (IC, H, PW) (H >= OH + K - 1, PW >= OW + K - 1: the sample or its bordered copy) and
 * gT = dy transposed, (OH*OW, OC); per element in pixel order from 0 (or the stored value), one fused
 * multiply-add each: the bits of the product col x gT in libxsmm. AVX-512 only; K 3 or 5
 * (direct_dw16_ok; CHECKed). conv.c: LeNet-5's conv2 (16 channels of 10x10). */
int direct_dw16_ok(int K, int OC);
void direct_dw16(const float *in, int IC, int H, int PW, const float *gT, int OC, int K, int OH, int OW, float *dWt,
                 int acc);

/* y (OC, OH, OW) (=, or += with acc) bias (or 0) + the stride-1 correlation of in, a direct_border'ed
 * input (IC, H, PW), H >= OH + K - 1, PW >= OW + K - 1, with W (OC, IC, K, K); for K = 5 and rows of 24
 * to 32 columns (direct_conv_ok), in AVX2 + FMA (kernels_level() >= 1; CHECKed). conv.c: LeNet-5's conv1
 * on AVX2-only CPUs, forward and input gradient. */
int direct_conv_ok(int K, int OC, int OW);
void direct_conv(float *y, const float *in, int IC, int H, int PW, const float *W, const float *bias, int OC, int K,
                 int OH, int OW, int acc);
#endif
