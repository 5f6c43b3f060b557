/* attack.h -- adversarial attacks: each is a function of a model, a batch and one parameter struct.
 * The same AttackParams struct is what gets printed and recorded in the results database.
 * Inputs live in [0,1]; attacks run the model in inference mode and compute only input gradients.
 * Not for: training, or deciding what is "robust" (evaluation counts live in EvalCounts). */
#ifndef CONCORD_ATTACK_H
#define CONCORD_ATTACK_H
#include "../datasets/dataset.h"
#include "../harness/model.h"

enum { ATK_FGSM, ATK_PGD, ATK_SQUARE, ATK_KIND_COUNT };
enum { NORM_LINF, NORM_L2 };
enum { GRAD_TRUE, GRAD_FEEDBACK, GRAD_TRANSFER, GRAD_SOURCE_COUNT };

typedef struct AttackParams {
    int kind;                 /* ATK_* */
    int norm;                 /* NORM_LINF | NORM_L2 */
    char eps_text[32];        /* as typed: "8/255", "0.1" */
    double eps;               /* its value */
    char alpha_text[32];      /* step size as typed ("" = default 2.5*eps/steps; "r0.25" = 0.25*eps) */
    double alpha;             /* resolved absolute step size */
    int steps, restarts, random_start;
    int targeted, target;     /* targeted: class `target` (-1 = (y+1) mod K) */
    int grad_source;          /* GRAD_* */
    char transfer_ckpt[512];  /* surrogate checkpoint for GRAD_TRANSFER */
    int eot;                  /* feedback draws averaged per step (brSF), >= 1 */
    int queries;              /* Square: query budget per example */
    double p_init;            /* Square: initial fraction of pixels per square */
    uint64_t seed;
    int batch;
} AttackParams;

typedef struct EvalCounts {
    long n, n_clean_ok, n_robust_ok, n_flipped, n_zero_grad;
    double mean_linf, mean_l2, mean_loss, seconds;
    long queries_max;         /* Square: the most queries one example used */
} EvalCounts;

#endif
