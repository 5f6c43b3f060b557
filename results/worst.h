/* worst.h -- the per-example worst case over every evaluation of a model (`concord query worst`).
 *
 * For one attacked model (its run, or its checkpoint's content hash when no run is known), one eps, one
 * norm and one split, an example counts as robust only if it is classified correctly by the clean model
 * and under EVERY evaluation recorded for that model on the same examples: every attack, every gradient
 * source (true, feedback, transfer) and the gradient-free ones. That per-example AND is the number that
 * settles whether a rule's robustness is real: a model that only looks robust through its feedback path
 * loses the examples the true gradient (or a surrogate, or Square) breaks.
 *
 * Evaluations are combined only on identical example sets (same indices of the same split); a model
 * evaluated on two different sets gets one row per set. Evaluations recorded before per-example
 * outcomes existed (schema < 4: outcomes NULL) cannot be combined and are counted apart. The breakdown
 * says which evaluation broke each example first, in the order they were recorded (like AutoAttack's
 * log): "apgd-ce/true 412, square/black-box 3".
 * Not for: statistics across seeds or against BP (verdict.h).
 */
#ifndef CONCORD_WORST_H
#define CONCORD_WORST_H
#include <stdint.h>
#include <stdio.h>

#include "results/db.h"

typedef struct WorstRow {
    int64_t run_id;           /* 0: no run known (checkpoint hash only) */
    char target_hash[20];
    char dataset[64], model[64], kind[48], rule[32];
    char ckpt[64];            /* the attacked checkpoint's file name (names a model without a recorded run) */
    long seed;                /* the run's data seed, -1 unknown */
    char eps_text[32], norm[8], split[16];
    double eps;
    int set;                  /* 0, 1, ...: which example set of this model/eps (several only when they differ) */
    long n, clean, robust;    /* examples; clean-correct; robust under every evaluation */
    int nevals;               /* evaluations combined */
    long no_outcomes;         /* evaluations of this model/eps/norm without per-example outcomes (not combined) */
    char breakdown[1024];     /* "attack/source count, ..." in recording order; evaluations that broke none left out */
    int32_t *index;           /* (n) the examples' indices in the split */
    uint8_t *clean_ok, *robust_ok; /* (n) per example: clean correct, robust under every evaluation */
} WorstRow;

/* Every (model, eps, norm, split, example set) with per-example outcomes, ordered by dataset, model,
 * kind, rule, seed, norm, eps. *rows malloc'd (worst_free). 0, or -1 with err_set. */
int worst_load(Db *db, WorstRow **rows, int *n);
void worst_free(WorstRow *rows, int n);
/* The worst-case robust accuracy (%) of the models of one (dataset, model, kind, rule) at eps_text (any
 * norm given as NULL), as mean and sample sd over those models (one value per model: its first example
 * set). n = 0 when none. */
typedef struct WorstStat { double mean, sd; long n; } WorstStat;
WorstStat worst_stat(const WorstRow *w, int n, const char *dataset, const char *model, const char *kind, const char *rule,
                     const char *eps_text, const char *norm);
/* Prints the `worst` report (query.h formats). */
int worst_report(Db *db, int fmt, FILE *out);
#endif
