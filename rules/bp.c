/* bp.c -- backpropagation: B is W itself (no copy, no state). */
#include "rules/rule.h"

const Rule RULE_BP = {
    .name = "bp",
    .desc = "backpropagation: feedback B = W",
    .state = "none",
};
