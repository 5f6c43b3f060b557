/* fa.c -- feedback alignment (Lillicrap et al. 2016): B = R, random, drawn once like W's
 * PyTorch-default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), never updated. B points at R: no copy. */
#include <math.h>

#include "rules/rule.h"

static long fa_state_n(const Layer *L, int classes) { return layer_w_n(L); }

static void fa_init(Layer *L, const RuleCtx *c) {
    float bound = 1.0f / sqrtf((float)layer_fan_in(L));
    for (long j = 0; j < L->rstate_n; j++) L->rstate[j] = (2 * rng_uniform(c->rng) - 1) * bound;
    L->B = L->rstate;
}

const Rule RULE_FA = {
    .name = "fa",
    .desc = "feedback alignment: fixed random B drawn once",
    .state = "R (shape of W), fixed",
    .state_n = fa_state_n,
    .init = fa_init,
};
