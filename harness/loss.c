/* loss.c -- see loss.h */
#include "harness/loss.h"

#include <math.h>

#include "harness/core.h"

int argmax_row(const float *v, int K) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

double loss_softmax_ce(const float *logits, const int32_t *y, int n, int K, float scale, float *dlogits,
                       float *loss_i, uint8_t *correct) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (long)i * K;
        CHECK(y[i] >= 0 && y[i] < K);
        double mx = z[0];
        for (int k = 1; k < K; k++) if (z[k] > mx) mx = z[k];
        double s = 0;
        for (int k = 0; k < K; k++) s += exp(z[k] - mx);
        double lse = mx + log(s), li = lse - z[y[i]];
        total += li;
        if (loss_i) loss_i[i] = (float)li;
        if (correct) correct[i] = argmax_row(z, K) == y[i];
        if (dlogits) {
            float *d = dlogits + (long)i * K;
            for (int k = 0; k < K; k++) d[k] = (float)(exp(z[k] - lse) - (k == y[i])) * scale;
        }
    }
    return n ? total / n : 0;
}
