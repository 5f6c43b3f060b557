/* loss.h -- softmax cross-entropy, numerically stable (max-subtracted log-sum-exp in double).
 * Returns the mean loss over the n examples. dlogits (n, K), may be NULL: (softmax - onehot) * scale
 * (scale = 1/n for the mean loss, 1 for per-example sums as attacks use). loss_i (n), may be NULL.
 * correct (n), may be NULL: 1 where argmax(logits) == y (ties: the lowest index wins). */
#ifndef CONCORD_LOSS_H
#define CONCORD_LOSS_H
#include <stdint.h>
double loss_softmax_ce(const float *logits, const int32_t *y, int n, int K, float scale, float *dlogits,
                       float *loss_i, uint8_t *correct);
int argmax_row(const float *v, int K);
#endif
