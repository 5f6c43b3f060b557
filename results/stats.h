/* stats.h -- the statistics the verdict uses: is rule A's robust accuracy different from BP's (B)?
 *
 * Input: per-example binary outcomes (1 = still classified correctly under attack, "robust") of two
 * models A and B on the SAME test examples, one StatsSeed per seed (a seed = one independently trained
 * pair of models), and single proportions k/n. docs/statistics.md explains each statistic, what it
 * assumes, which one the verdict uses to claim a difference, and the simulations that calibrate them.
 *
 * Letters: S seeds; per seed n examples; b = pairs robust only under A ("only_a"), c = only under B.
 * Two designs for several seeds (docs/statistics.md, "Nested or crossed"):
 *   nested   every seed has its own examples (n may differ between seeds);
 *   crossed  every seed is evaluated on the same n examples in the same order (what `concord attack
 *            --limit N` does: the first N test images for every seed).
 * Every function is pure (no global state); the bootstrap is deterministic given its seed.
 * Not for: reading the database or printing (query.c), or deciding the verdict's wording.
 */
#ifndef CONCORD_STATS_H
#define CONCORD_STATS_H

#include <stdint.h>

#define STATS_Z95 1.959963984540054 /* Phi^-1(0.975) */

/* Purposes of this module's random streams (rng_seed's second key; beyond core.h's RNG_* range). */
enum { STATS_RNG_BOOT = 101, STATS_RNG_SIGNFLIP = 102 };

/* One seed's paired outcomes: a[i], b[i] in {0, 1}, i < n (n may be 0). */
typedef struct StatsSeed {
    const uint8_t *a; /* (n) model A (the rule) */
    const uint8_t *b; /* (n) model B (the BP baseline), same examples in the same order */
    long n;
} StatsSeed;

/* The 2x2 table of one seed's pairs. */
typedef struct StatsCounts {
    long n, robust_a, robust_b; /* robust_a = sum a[i], robust_b = sum b[i] */
    long only_a, only_b;        /* discordant pairs: b = #(a=1, b=0), c = #(a=0, b=1) */
} StatsCounts;

StatsCounts stats_count(const uint8_t *a, const uint8_t *b, long n);

/* ---- single proportions ---- */

/* Wilson score interval (Wilson 1927): centre (k + z²/2)/(n + z²), half-width
 * z/(n + z²)·sqrt(k(n−k)/n + z²/4); k = 0 gives lo = 0 exactly, k = n gives hi = 1. n = 0: [0, 1]. */
void stats_wilson(long k, long n, double z, double *lo, double *hi);

/* ---- exact paired tests (p-values, two-sided) ---- */

/* Exact two-sided binomial test of p = 1/2: min(1, 2·P(X ≤ min(k, n−k))), X ~ Binomial(n, 1/2).
 * Log-space saddle-point pmf (Loader 2000) and a backward tail sum: relative error ~1e-12 for any
 * n < 2^53 (time O(sqrt(n))); p-values below ~1e-308 underflow towards 0. n = 0: 1. */
double stats_binom_two_sided(long k, long n);

/* Exact McNemar (McNemar 1947): b pairs robust only under A, c only under B;
 * p = stats_binom_two_sided(b, b + c). b + c = 0: 1. */
double stats_mcnemar_exact(long b, long c);

/* Stratified exact McNemar (the exact conditional Mantel–Haenszel test, Mantel & Haenszel 1959, with
 * each pair a stratum): under H0 every discordant pair of every seed is a fair coin, so
 * sum_s b_s ~ Binomial(sum_s (b_s + c_s), 1/2); p = stats_binom_two_sided(sum b_s, sum (b_s + c_s)).
 * Example-level, NESTED design (seeds on the same examples count one example S times: use
 * stats_signflip_examples). S = 0 or no discordant pair: 1. */
double stats_mh_exact(const StatsSeed *seeds, int S);

/* Exact sign-flip test over examples for the CROSSED design (all seeds on the same n examples):
 * d_i = sum_s (a_si − b_si); T = sum_i d_i; p = P(|sum_i e_i d_i| ≥ |T|) over the 2^n equally likely
 * signs e_i = ±1 (Fisher 1935's paired randomisation test), computed exactly by convolving the
 * Binomial(h_v, 1/2) counts of each magnitude v = |d_i|. S = 1 gives stats_mcnemar_exact exactly.
 * Example-level. Time O(n · sum|d_i|). Every seed must have the same n (CHECK). */
double stats_signflip_examples(const StatsSeed *seeds, int S);

/* Exact sign-flip (permutation) test over seeds (Fisher 1935): D_s = (b_s − c_s)/n_s,
 * T = sum_s D_s, p = #{e in {±1}^S : |sum e_s D_s| ≥ |T|} / 2^S, all 2^S patterns for S ≤ 20 (ties
 * within 1e-9·sum|D_s| count as extreme); S > 20: (1 + hits)/(1 + 2^20) over 2^20 random patterns from
 * a fixed stream. Seed-level; in the crossed design it is conditional on the shared test set. The
 * smallest attainable p is 2^(1−S): S ≥ 6 seeds for p < 0.05. Seeds with n = 0 are left out; none: 1. */
double stats_signflip_seeds(const StatsSeed *seeds, int S);

/* ---- bootstrap interval of the difference in robust accuracy A − B ---- */

typedef enum { STATS_NESTED = 0, STATS_CROSSED = 1 } StatsDesign;

typedef struct StatsBootOpts {
    long reps;          /* replicates; 0 -> 2000 */
    double level;       /* coverage; 0 -> 0.95 */
    uint64_t seed;      /* random stream key: replicate r draws from rng_seed(seed, STATS_RNG_BOOT, r) */
    StatsDesign design; /* STATS_CROSSED needs the same n for every seed (CHECK) */
    int plain;          /* 1: the textbook scheme without the variance matching (for comparison only) */
} StatsBootOpts;

typedef struct StatsInterval { double est, lo, hi; } StatsInterval;

/* Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) of theta = mean_s (acc_A,s − acc_B,s), each
 * seed weighted equally. One replicate draws S seeds with replacement and, for each drawn seed, n pairs
 * with replacement (nested: each drawn seed its own draw; crossed: one draw of example indices shared by
 * all drawn seeds, Owen 2007's pigeonhole bootstrap); a pair keeps A and B together. The between-seed,
 * between-example and residual parts of each replicate's deviation are rescaled so the replicates'
 * variance equals the unbiased ANOVA estimate of Var(est) (Davison & Hinkley 1997, §3.8: the plain
 * two-stage scheme counts the within-seed variance twice); docs/statistics.md derives the factors.
 * S = 1 is the plain example bootstrap. Interval = quantiles (1 ± level)/2 of the replicates (linear
 * interpolation between order statistics). Seeds with n = 0 are left out; none left: {0, −1, 1}.
 * Allocates its workspace once per call; opt NULL = defaults. */
StatsInterval stats_bootstrap_diff(const StatsSeed *seeds, int S, const StatsBootOpts *opt);

/* ---- report helpers ---- */

double stats_mean(const double *x, long n); /* sum x_i / n; n = 0: NaN */
double stats_sd(const double *x, long n);   /* sqrt(sum (x_i − mean)² / (n − 1)), two-pass; n < 2: NaN */

/* The "k/S seeds" count: seeds with direction·(acc_A − acc_B) > min_gap (a proportion: 0.05 = 5 points)
 * and stats_mcnemar_exact(b, c) < alpha; direction +1 (A above B) or −1. E.g. gradient masking: A =
 * outcomes under the feedback-source attack, B = the true-source attack on the same model,
 * stats_masking_seeds(seeds, S, +1, 0.05, 0.01). Seeds with n = 0 never count. */
int stats_masking_seeds(const StatsSeed *seeds, int S, int direction, double min_gap, double alpha);

#endif
