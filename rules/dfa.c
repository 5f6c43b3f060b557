/* dfa.c -- direct feedback alignment (Nokland 2016): a fixed random D_l (D_in x K) carries the output
 * error e straight to the input of every linear/conv layer: the layer below then receives D_l e, and
* its delta is (D_l e) * f'(a_l) after the nonlinearity's exact backward. D is Xavier-uniform over its
 * shape, U(-a, a) with a = sqrt(6/(D_in + K)): with U(-1/sqrt K, 1/sqrt K) every layer receives an error
 * as large as e itself, and LeNet-5 diverges at lr 0.01 (measured: loss 5e25 after one epoch). The projection uses the CURRENT pass's e (passed to the backward call):
 * there is no stored error, so nothing is stale at evaluation time and any batch size works. */
#include <math.h>

#include "rules/rule.h"

static long dfa_state_n(const Layer *L, int classes) { return (long)layer_in_dim(L) * classes; }

static void dfa_init(Layer *L, const RuleCtx *c) {
    float bound = sqrtf(6.0f / (float)(layer_in_dim(L) + c->classes));
    for (long j = 0; j < L->rstate_n; j++) L->rstate[j] = (2 * rng_uniform(c->rng) - 1) * bound;
    L->B = L->rstate;
}

const Rule RULE_DFA = {
    .name = "dfa",
    .desc = "direct feedback alignment: fixed random D projects the output error to every layer",
    .state = "D (D_in x classes), fixed",
    .direct = 1,
    .state_n = dfa_state_n,
    .init = dfa_init,
};
