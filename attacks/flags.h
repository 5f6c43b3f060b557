/* flags.h -- gradient-masking flags (issue 5 item 6; Athalye et al. 2018, Carlini et al. 2019 checklist)
 * computed from a list of evaluation results, so `concord attack`, the results queries and the tests
 * share one definition. A flag is a warning that a robustness number may be gradient masking, attached
 * to the result that looks suspicious:
 *
 *   MASK_FEEDBACK_GAP       a feedback-source result whose robust accuracy is more than
 *                           MASK_FEEDBACK_POINTS above the true-source result of the same attack
 *                           (kind, norm, eps, steps, restarts, targeted, loss, AutoAttack stage and
 *                           version, targets, queries) and, with per-example outcomes, significantly so
 *                           (paired exact McNemar p < MASK_FEEDBACK_P: attack_flags_paired);
 *   MASK_BLACKBOX_STRONGER  a standalone Square or transfer result whose robust accuracy is more than
 *                           MASK_BLACKBOX_POINTS below the strongest standalone white-box (true or
 *                           feedback gradient, same norm, same eps, same targeting) result in the list;
 *                           and AutoAttack's own check: its Square component broke at least one example
 *                           that the white-box components before it left robust (on the Square row and
 *                           on the ensemble row of that run);
 *   MASK_EPS_RISE           a PGD, APGD or AutoAttack result whose robust accuracy is more than
 *                           MASK_RISE_POINTS above a result of the same attack at a smaller eps (same
 *                           norm, source, surrogate, steps, restarts, step-size text, targeting, loss,
 *                           stage, version, targets);
 *   MASK_ZERO_GRAD          some example's input gradient was exactly zero at the first step;
 *   MASK_EPS0               eps = 0 and robust-correct != clean-correct (eps 0 must reproduce clean).
 * Accuracies compared are rates (robust-correct / n), in points (percent). Hashing results
 * (p.objective == OBJ_HASH) are compared only with hashing results, on the attacked mAP (h.map_adv,
 * in points) instead of robust accuracy; AutoAttack rows (the ensemble, and its component rows, whose
 * counts are cumulative) are never compared as white-box or black-box results; for them MASK_EPS0 means eps = 0 and map_adv != map_clean,
 * and "white-box" means true or feedback (there is no Square for hashing).
 * Not for: deciding what to run or printing tables.
 */
#ifndef CONCORD_FLAGS_H
#define CONCORD_FLAGS_H
#include <stddef.h>

#include "attacks/attack.h"

#define MASK_FEEDBACK_POINTS 5.0
#define MASK_BLACKBOX_POINTS 1.0
#define MASK_RISE_POINTS 0.5

enum { MASK_FEEDBACK_GAP = 1, MASK_BLACKBOX_STRONGER = 2, MASK_EPS_RISE = 4, MASK_ZERO_GRAD = 8, MASK_EPS0 = 16 };

typedef struct AttackResult {
    AttackParams p;
    EvalCounts c;
    HashCounts h;             /* hashing results only */
    const uint8_t *robust;    /* (c.n) per example: robust-correct, in split order; NULL = counts only */
} AttackResult;

/* Flags (MASK_* bits) of results[i] given every result of the comparison. */
unsigned attack_flags(const AttackResult *results, int n, int i);
/* The same, with MASK_FEEDBACK_GAP as a paired test when both results carry per-example outcomes on the
 * same examples: flagged only when the gap exceeds MASK_FEEDBACK_POINTS AND paired_p(only_feedback,
 * only_true) < MASK_FEEDBACK_P (the exact McNemar of results/stats.h, passed in by the caller; attacks/
 * computes no statistics). Without outcomes it falls back to the gap alone. */
#define MASK_FEEDBACK_P 0.01
unsigned attack_flags_paired(const AttackResult *results, int n, int i, double (*paired_p)(long only_a, long only_b));
/* "feedback-gap,blackbox-stronger,eps-rise,zero-grad,eps0-mismatch" subset; "" when none. */
void attack_flags_text(unsigned flags, char *out, size_t cap);
#endif
