/* table.c -- the layer-kind table: the one place a layer kind is registered (a kind = its LayerKind
 * value in model.h, one LayerOps in a file of this folder, one line here). */
#include "harness/layers/layer.h"

extern const LayerOps LAYER_NORM, LAYER_LINEAR, LAYER_CONV, LAYER_MAXPOOL, LAYER_AVGPOOL, LAYER_GAP, LAYER_RELU,
    LAYER_TANH, LAYER_BN, LAYER_DROPOUT, LAYER_FLATTEN, LAYER_ADD;

const LayerOps *const LAYER_OPS[L_KIND_COUNT] = {
    [L_NORM] = &LAYER_NORM,       [L_LINEAR] = &LAYER_LINEAR,   [L_CONV] = &LAYER_CONV,
    [L_MAXPOOL] = &LAYER_MAXPOOL, [L_AVGPOOL] = &LAYER_AVGPOOL, [L_GAP] = &LAYER_GAP,
    [L_RELU] = &LAYER_RELU,       [L_TANH] = &LAYER_TANH,       [L_BN] = &LAYER_BN,
    [L_DROPOUT] = &LAYER_DROPOUT, [L_FLATTEN] = &LAYER_FLATTEN, [L_ADD] = &LAYER_ADD,
};
_Static_assert(L_KIND_COUNT == 12, "a new LayerKind needs its LayerOps registered in LAYER_OPS");
