/* im2col.h -- column matrices for convolution as a product (conv.c): a conv of a sample with weights
 * (OC, KC) is W x col, col of shape (KC, P), KC = IC*K*K, P = OH*OW output pixels; the input gradient
 * is col2im(B^T x dy). Everything here is exact data movement (copies, zero fill, adds in one fixed
 * order), so results do not depend on which variant ran. */
#ifndef CONCORD_IM2COL_H
#define CONCORD_IM2COL_H
#include "harness/model.h"

/* im2col of ns consecutive samples starting at x into col (KC, ns*P):
 * col[(c*K + ki)*K + kj][b*P + oy*OW + ox] = x[b][c][oy*s - pad + ki][ox*s - pad + kj] (0 outside) */
void im2col(const Layer *L, int ns, const float *x, float *col);
/* the same for ONE sample at stride 1, through the zero-bordered copy xpad (IC, IH+2pad, IW+2pad) when
 * pad > 0, so every row is a plain copy */
void im2col_s1(const Layer *L, const float *x, float *xpad, float *col);
/* dx += col2im(col) for ONE sample at stride 1 (the adjoint of im2col_s1; assign: dx = 0 + ...), row by
 * row, the rows in vectors where col2im_s1_vectors says so */
void col2im_s1_add(const Layer *L, const float *col, float *xpad, float *dx, int assign);
/* whether col2im_s1_add adds its rows in the CPU's wider vectors (AVX-512: rows of up to 32 floats; AVX2:
 * of at least 8) */
int col2im_s1_vectors(const Layer *L);
/* the same from the wide column matrix (KC, OH*PW), PW = IW + 2 pad: a pixel's column at oy*PW + ox,
 * zeros in the PW - OW extra columns of each output row */
void col2im_wide_add(const Layer *L, const float *dcol, float *xpad, float *dx, int assign);
/* dx += col2im(col) for ns samples (the adjoint of im2col) */
void col2im_add(const Layer *L, int ns, const float *col, float *dx);
#endif
