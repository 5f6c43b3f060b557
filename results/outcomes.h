/* outcomes.h -- the per-example outcomes of one evaluation, as the BLOB stored in evals.outcomes
 * (schema v4, docs/results.md). Every evaluation recorded since v4 carries one; older ones have NULL.
 *
 * Format "concord-outcomes-1", little-endian, no padding:
 *   header, 16 bytes: magic "CCO1"; kind u32 (1 classification, 2 hashing); n u32 (records);
 *                     record size u32 (20 for classification, 12 for hashing)
 *   classification record, 20 bytes, in split order:
 *       index u32 (the example's index in the split), y i32 (label), pred_clean i32, pred_adv i32,
 *       flags u8 (bit 0: clean correct, bit 1: robust correct = clean correct and pred_adv == y,
 *                 bit 2: the crafting gradient was zero), stage u8 (AutoAttack: the component 1..n
 *                 that broke it, 0 none), 2 zero bytes
 *   hashing record, 12 bytes: index u32 (the query's index), ap_clean f32, ap_adv f32 (average
 *       precision of the clean and the attacked query against the clean database)
 * Not for: computing worst cases (worst.h) or statistics (stats.h).
 */
#ifndef CONCORD_OUTCOMES_H
#define CONCORD_OUTCOMES_H
#include <stddef.h>
#include <stdint.h>

#include "attacks/attack.h"

enum { OUT_CLASSIFY = 1, OUT_HASH = 2 };
#define OUT_HEADER 16
#define OUT_REC_CLASSIFY 20
#define OUT_REC_HASH 12

/* Bytes of the BLOB for n records of a kind. */
size_t outcomes_bytes(int kind, long n);
/* Writes the BLOB of n classification outcomes into out (outcomes_bytes(OUT_CLASSIFY, n) bytes). */
void outcomes_encode_classify(const AttackOutcome *o, long n, uint8_t *out);
/* The same for AutoAttack's component k (1..): the ensemble after that component, i.e. an example counts
 * as broken when its stage is 1..k (its adversarial prediction then), else as the clean prediction. */
void outcomes_encode_classify_stage(const AttackOutcome *o, long n, int k, uint8_t *out);
/* Writes the BLOB of n hashing outcomes: query i is index i. */
void outcomes_encode_hash(const float *ap_clean, const float *ap_adv, long n, uint8_t *out);

/* The robust-correct bit of each of the n records of a classification BLOB into robust (n). */
void outcomes_robust(const uint8_t *blob, long n, uint8_t *robust);

/* A decoded BLOB: arrays of n (owned; outcomes_free). Classification fills index, y, pred_clean,
 * pred_adv, clean_ok, robust_ok, zero_grad, stage; hashing fills index, ap_clean, ap_adv. */
typedef struct Outcomes {
    int kind;
    long n;
    int32_t *index, *y, *pred_clean, *pred_adv;
    uint8_t *clean_ok, *robust_ok, *zero_grad, *stage;
    float *ap_clean, *ap_adv;
} Outcomes;
/* 0, or -1 with err_set ("outcomes BLOB of eval ID: ...") when it is not a well-formed BLOB. */
int outcomes_decode(const void *blob, long bytes, long eval_id, Outcomes *out);
void outcomes_free(Outcomes *o);
#endif
