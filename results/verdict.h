/* verdict.h -- the answer Concord exists to give: does fine-tuning with rule R make the network more
 * robust than fine-tuning with BP, or does it only look that way? (`concord query verdict`, the first
 * section of the generated report.)
 *
 * Units. One trained model (a run) is one replicate: every number is first reduced to one value per
 * model, then compared across seeds. A model evaluated on several example sets contributes its largest
 * set (the latest when two are equal); the others are never pooled in. Per model, eps and norm, from
 * the per-example outcomes (outcomes.h):
 *   source S (true, feedback, transfer:..., black-box): robust = correct under EVERY evaluation through S;
 *   worst case: robust = correct under every evaluation of the model (worst.h).
 * Pairs. Rule R's fine-tuned model of seed s is paired with BP's fine-tuned model of the same seed, on the
 * same examples; BP under source S is BP's own evaluations through S when it has them, else through the
 * true gradient (BP's feedback IS its true gradient).
 * Statistics (stats.h, docs/statistics.md), per (rule, eps, source) over the S paired seeds:
 *   delta = mean over seeds of acc_R − acc_BP, in points, with a 95% bootstrap interval that resamples
 *     seeds and examples (crossed design when every seed has the same examples, else nested);
 *   p = the exact example-level paired test (sign-flip over examples in the crossed design, the
 *     stratified exact McNemar in the nested one; exact McNemar for one seed);
 *   p_seeds = the exact sign-flip test over seeds (its smallest value is 2^(1-S): fewer than 6 seeds can
 *     never reach 0.05).
 *   A difference is "shown" when the interval excludes 0 and p < 0.05; it holds "for the rule" when also
 *   p_seeds < 0.05, else only "for these models".
 * Masking, per model: feedback vs true on the same examples (exact McNemar), flagged when the feedback
 *   gradient leaves more than 5 points more examples robust and p < 0.01; reported as "k/N seeds".
 * Label, per (dataset, model, rule, eps, norm):
 *   robust gain  the worst-case delta is shown > 0;
 *   worse        the worst-case delta is shown < 0;
 *   masking      not above BP in the worst case, but shown > 0 through the feedback gradient (or
 *                another non-true source);
 *   no gain      otherwise.
 * Not for: drawing (plot.h draws verdict_compute's numbers) or single-model reports (worst.h).
 */
#ifndef CONCORD_VERDICT_H
#define CONCORD_VERDICT_H
#include <stdio.h>

#include "results/db.h"

/* One comparison of a rule's models with BP's (points; see Statistics above). S = 0: none made. */
typedef struct VerdictDelta {
    int S;                     /* paired seeds */
    long n;                    /* examples per seed (the first seed's) */
    double acc_rule, acc_bp;   /* mean robust accuracy (%) over the seeds */
    double d, lo, hi;          /* delta = rule - BP and its 95% bootstrap interval */
    double p, p_seeds;         /* exact example-level paired test; sign-flip test over seeds */
    int shown, rule_level;     /* interval excludes 0 and p < 0.05; and p_seeds < 0.05 */
} VerdictDelta;

#define VERDICT_MAX_SRC 16
/* One row of the verdict: one (dataset, model, norm, eps, rule, kind). */
typedef struct VerdictRow {
    char dataset[64], model[64], norm[8], eps_text[32], rule[32], kind[16];
    char label[64];            /* the rule as shown: "usf", "bp (fine-tuned, baseline)", "bp (pretrained)" */
    double eps;
    int baseline;              /* BP's fine-tunes or a pretrained model: absolute numbers only */
    int seeds;                 /* models of this rule */
    long n;                    /* examples of the first model */
    double clean, worst;       /* mean over the models (%): clean accuracy, worst-case robust accuracy */
    int paired;                /* 0: no BP fine-tune of the same seed on the same examples ("no BP pair") */
    VerdictDelta clean_d, worst_d;
    VerdictDelta by_src[VERDICT_MAX_SRC]; /* per source of VerdictSet.src (S = 0 where absent) */
    int mask_k, mask_n;        /* masking: seeds flagged / seeds with both feedback and true (mask_n = 0: none) */
    char verdict[16];          /* "robust gain", "worse", "masking", "no gain", "baseline", "no BP pair" */
    char evidence[96];         /* "for the rule (6 seeds)", "for these models (...)", ... ("" for baselines) */
} VerdictRow;

/* Every row of the verdict, in report order, with the sources seen (true, feedback..., transfer...,
 * black-box, in that order). */
typedef struct VerdictSet {
    VerdictRow *rows;
    int n;
    int nsrc;
    char src[VERDICT_MAX_SRC][64];
    long unpaired;             /* models left out: no BP fine-tune of the same seed on the same examples */
    long other_sets;           /* evaluations on a smaller (or earlier) example set of the same model, left out */
} VerdictSet;

/* Computes the verdict (what verdict_report prints; plot.h draws it). 0, or -1 with err_set. */
int verdict_compute(Db *db, VerdictSet *out);
void verdict_set_free(VerdictSet *v);

/* Prints the verdict table (query.h formats); notes (what was left out and why) go to stderr.
 * 0, or -1 with err_set. */
int verdict_report(Db *db, int fmt, FILE *out);
/* Prints the methods block (markdown): data and subsets, split sizes, epochs, optimiser and learning
 * rates per rule, attack parameters, surrogates, seeds, examples attacked, git revision, CPU and BLAS
 * core, as recorded in the database. */
int verdict_methods(Db *db, FILE *out);
#endif
