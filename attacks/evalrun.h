/* evalrun.h -- internal to attacks/: the buffers of one classification evaluation, shared by
 * attack_evaluate_ex (attack.c) and the AutoAttack cascade (autoattack.c). Sized once per evaluation;
 * nothing here allocates per batch or per step. Not for callers outside attacks/ (use attack.h).
 * Shape letters: N examples evaluated, cap rows per batch, D = C*H*W, K classes. */
#ifndef CONCORD_EVALRUN_H
#define CONCORD_EVALRUN_H
#include "attacks/attack.h"

typedef struct EvalRun {
    Model *target, *crafter;  /* judged on target, crafted on crafter (== target unless transfer) */
    Work *wt, *wc;            /* wc == wt when crafter == target */
    AttackScratch *s;         /* sized for the crafter, cap rows */
    const Dataset *d;
    int N, cap, D, K;
    float *xb, *x_adv;        /* (cap, D) the gathered clean rows of a batch, their adversarials */
    int32_t *yb;              /* (cap) labels of the gathered rows */
    long *ib;                 /* (cap) dataset indices of the gathered rows */
    float *loss_i;            /* (cap) CE of the target at x_adv */
    uint8_t *ok;              /* (cap) target still correct at x_adv */
    AttackExample *ex;        /* (cap) what the attack reported */
    AttackOutcome *per;       /* (N) per example, in split order */
    AttackKeep *keep;         /* may be NULL: the first keep->cap examples for a grid */
    long nonfinite;           /* examples whose target outputs were NaN/Inf (clean or adversarial) */
} EvalRun;

/* Tells the display set by attack_progress_set that `done` of `total` examples of this pass are attacked. */
void attack_progress(const AttackParams *p, long done, long total);
/* adds the Linf and L2 norms of xa - x (D floats) to the sums */
void add_perturbation_norms(const float *x, const float *xa, int D, double *sum_linf, double *sum_l2);
/* 1 when every one of the n rows of K values is finite */
int rows_finite(const float *v, long n, int K);

/* Running sums of one attack pass, in the order the examples were attacked (attack_evaluate's counts
 * come from these, so they are the same bits as before per-example outcomes existed). */
typedef struct EvalSums {
    long n, flipped, zero_grad, queries_max;
    double linf, l2, loss;
} EvalSums;

/* Attacks the examples idx[0..n) of the split (idx NULL: 0..n-1), cap rows at a time, with p's AttackFn
 * on the crafter; judges each adversarial on the target and writes per[idx]: pred_adv, robust_ok, norms,
 * loss; zero_grad |= the attack's; stage = `stage` when the example is broken now and was not before.
 * Updates keep for indices below keep->cap. Adds to sums (may be NULL). */
void evalrun_attack(EvalRun *r, const AttackParams *p, const long *idx, int n, int stage, EvalSums *sums);
/* Counts over per[0..N) (n, clean, robust, flipped, zero-grad, mean norms and loss; seconds and
 * queries_max are left 0). */
void evalrun_counts(const EvalRun *r, EvalCounts *c);
/* The AutoAttack cascade of p on every example the target classifies correctly: out = the ensemble's
 * counts, st (may be NULL) each component's. */
void autoattack_run(EvalRun *r, const AttackParams *p, EvalCounts *out, AttackStages *st);
#endif
