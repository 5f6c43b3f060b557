/* test_stats.c -- results/stats.c against hand computations, an exact-arithmetic reference script,
 * naive oracles that share no code with it, and simulations with a known truth.
 *
 * Reference numbers: `/usr/bin/python3 scripts/stats_reference.py` (exact fractions / math.comb, and
 * mpmath at 60 digits for n = 10^6 and 10^7); its output is pasted below next to each use.
 * Simulations: docs/statistics.md ("Simulations") defines the model and the true difference; each
 * simulation test prints what it measured, and `CONCORD_STATS_TABLE=1 make test T=stats_table` prints the
 * wider tables of the doc (about a minute; skipped otherwise).
 */
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "results/stats.h"
#include "tests/test.h"

/* ------------------------------------------------------------------ helpers */

/* relative closeness for p-values: |got − want| ≤ rtol·want (want > 0) */
#define T_REL(got, want, rtol)                                                                  \
    do { double _g = (double)(got), _w = (double)(want);                                       \
         if (!(fabs(_g - _w) <= (rtol) * fabs(_w)))                                             \
             test_fail_at(__FILE__, __LINE__, "%s ~ %s: %.17g vs %.17g (rel %.2g, tol %.2g)", #got, #want, \
                          _g, _w, fabs(_g - _w) / fabs(_w), (double)(rtol)); } while (0)

static StatsSeed seed_of(const uint8_t *a, const uint8_t *b, long n) { return (StatsSeed){a, b, n}; }

/* n pairs with exactly n11, n10, n01 of each kind (the rest 0,0), in a shuffled order */
static void make_pairs(uint8_t *a, uint8_t *b, long n, long n11, long n10, long n01, Rng *g) {
    CHECK(n11 + n10 + n01 <= n);
    for (long i = 0; i < n; i++) {
        a[i] = i < n11 + n10;
        b[i] = i < n11 || (i >= n11 + n10 && i < n11 + n10 + n01);
    }
    for (long i = n - 1; i > 0; i--) {
        long j = (long)rng_below(g, (uint32_t)i + 1);
        uint8_t t = a[i]; a[i] = a[j]; a[j] = t;
        t = b[i]; b[i] = b[j]; b[j] = t;
    }
}

/* ------------------------------------------------------------------ Wilson */

/* Expected values: scripts/stats_reference.py (mpmath, 60 digits), z = 1.959963984540054:
 *   wilson(0,10)  0.0                  0.2775327998628892
 *   wilson(10,10) 0.7224672001371108   1.0
 *   wilson(7,20)  0.18119182410108206  0.56714572331476374
 * By hand for (7,20): z² = 3.8414588, centre = (7 + 1.9207294)/23.8414588 = 0.3741688,
 * half = 1.959964/23.8414588 · sqrt(7·13/20 + 0.9603647) = 0.0822085 · 2.3474170 = 0.1929770. */
static void check_wilson(long k, long n, double lo, double hi, double want_lo, double want_hi) {
    T_ASSERT_MSG(fabs(lo - want_lo) <= 1e-12 && fabs(hi - want_hi) <= 1e-12,
                 "wilson(%ld,%ld) = [%.17g, %.17g], want [%.17g, %.17g]", k, n, lo, hi, want_lo, want_hi);
}

TEST(stats_wilson_hand_values) {
    double lo, hi;
    stats_wilson(0, 10, STATS_Z95, &lo, &hi);
    check_wilson(0, 10, lo, hi, 0.0, 0.2775327998628892);
    T_ASSERT(lo == 0.0); /* exactly, not -1e-17 */
    stats_wilson(10, 10, STATS_Z95, &lo, &hi);
    check_wilson(10, 10, lo, hi, 0.7224672001371108, 1.0);
    T_ASSERT(hi == 1.0);
    stats_wilson(7, 20, STATS_Z95, &lo, &hi);
    check_wilson(7, 20, lo, hi, 0.18119182410108206, 0.56714572331476374);
    stats_wilson(0, 0, STATS_Z95, &lo, &hi); /* n = 0: no information */
    T_ASSERT(lo == 0.0 && hi == 1.0);
    /* naive oracle: the textbook formula, written out again (p̂ ± ...)/(1 + z²/n) */
    for (long n = 1; n <= 60; n++)
        for (long k = 0; k <= n; k++) {
            double z = STATS_Z95, ph = (double)k / n, d = 1 + z * z / n;
            double c = (ph + z * z / (2.0 * n)) / d, h = z / d * sqrt(ph * (1 - ph) / n + z * z / (4.0 * n * n));
            stats_wilson(k, n, z, &lo, &hi);
            T_ASSERT_MSG(fabs(lo - fmax(0, c - h)) < 1e-13 && fabs(hi - fmin(1, c + h)) < 1e-13,
                         "wilson(%ld,%ld) [%.17g, %.17g] vs naive [%.17g, %.17g]", k, n, lo, hi, c - h, c + h);
        }
}

/* canary: the Wald interval p̂ ± z sqrt(p̂(1−p̂)/n) for (7,20) must be caught by the same check */
static void wilson_canary(void) {
    double ph = 7.0 / 20, h = STATS_Z95 * sqrt(ph * (1 - ph) / 20);
    check_wilson(7, 20, ph - h, ph + h, 0.18119182410108206, 0.56714572331476374);
}
TEST(stats_wilson_canary) { T_ASSERT(test_expect_failure(wilson_canary)); }

/* ------------------------------------------------------------------ binomial test, McNemar */

typedef struct PRef { long k, n; double p; } PRef;

/* scripts/stats_reference.py: exact fractions for n ≤ 10^4, mpmath 60 digits for n = 10^6, 10^7 */
static const PRef binom_refs[] = {
    {5200, 10000, 6.5935155986724421e-5},
    {4800, 10000, 6.5935155986724421e-5},
    {5100, 10000, 0.046585527704947389},
    {0, 997, 1.4932217896051502e-300},
    {499500, 1000000, 0.31779469136330554},
    {499000, 1000000, 0.045608299865382086},
    {497000, 1000000, 1.9851497639230208e-9},
    {490000, 1000000, 5.5443632876992246e-89},
    {483500, 1000000, 7.6049115564086369e-239},
    {482800, 1000000, 2.3222577898304465e-259},
    {481600, 1000000, 1.6439328130273481e-296},
    {481500, 1000000, 1.0164156538835261e-299},
    {4995000, 10000000, 0.0015671019056953985},
    {4990000, 10000000, 2.5448004911551731e-10},
};

/* McNemar (b, c) -> binomial test of b out of b + c, exact fractions */
static const PRef mcnemar_refs[] = {
    {0, 0, 1.0},   {1, 0, 1.0},     {5, 0, 0.0625},  {3, 7, 0.34375},
    {10, 2, 0.03857421875},         {15, 30, 0.035697803555194696},
    {0, 12, 0.00048828125},         {25, 25, 1.0},   {40, 20, 0.01348929373119186},
    {6, 5, 1.0},
};

typedef double (*PFn)(long k, long n);
static PFn g_binom = stats_binom_two_sided;

static void check_binom_refs(void) {
    for (size_t i = 0; i < ARRAY_LEN(binom_refs); i++) T_REL(g_binom(binom_refs[i].k, binom_refs[i].n), binom_refs[i].p, 1e-9);
    /* below 1e-300: 2.0152453207941339e-431 and 2.5147293453303229e-646 (exact) -> 0 or subnormal */
    T_ASSERT(g_binom(100, 2000) >= 0 && g_binom(100, 2000) < 1e-300);
    T_ASSERT(g_binom(150, 3000) >= 0 && g_binom(150, 3000) < 1e-300);
}

TEST(stats_binom_reference_values) {
    double t0 = now_seconds();
    check_binom_refs();
    for (size_t i = 0; i < ARRAY_LEN(mcnemar_refs); i++)
        T_REL(stats_mcnemar_exact(mcnemar_refs[i].k, mcnemar_refs[i].n), mcnemar_refs[i].p, 1e-12);
    T_ASSERT(stats_binom_two_sided(0, 0) == 1.0);
    T_ASSERT(stats_binom_two_sided(500000, 1000000) == 1.0);
    T_ASSERT(stats_binom_two_sided(0, 2000) == 0.0 || stats_binom_two_sided(0, 2000) < 1e-300);
    /* symmetric in k <-> n − k, monotone away from n/2 */
    double prev = 1;
    for (long k = 500000; k >= 470000; k -= 1000) {
        double p = stats_binom_two_sided(k, 1000000);
        T_ASSERT(p <= prev);
        T_ASSERT(p == stats_binom_two_sided(1000000 - k, 1000000));
        prev = p;
    }
    /* n = 10^9 stays fast: ~6 sqrt(n) terms */
    double p = stats_binom_two_sided(499990000, 1000000000);
    T_ASSERT(p > 0 && p < 1);
    T_ASSERT(now_seconds() - t0 < 2.0);
}

/* canaries: a realistic bug (tail without its own term, P(X < m)) and a 1e-5 relative error (the
 * contract is 1e-6) must both fail the reference check */
static double binom_strict_tail(long k, long n) {
    long m = k < n - k ? k : n - k;
    if (m == 0) return 0; /* P(X < 0) */
    double p = stats_binom_two_sided(m - 1, n);
    return p;
}
static double binom_off_1e5(long k, long n) { return stats_binom_two_sided(k, n) * (1 + 1e-5); }
static void binom_canary_tail(void) { g_binom = binom_strict_tail; check_binom_refs(); g_binom = stats_binom_two_sided; }
static void binom_canary_1e5(void) { g_binom = binom_off_1e5; check_binom_refs(); g_binom = stats_binom_two_sided; }
TEST(stats_binom_canary) {
    T_ASSERT(test_expect_failure(binom_canary_tail));
    T_ASSERT(test_expect_failure(binom_canary_1e5));
}

/* Naive double oracle: Pascal's triangle in double (exact below 2^53: C(56, 28) ≈ 7.6e15), the tail by
 * direct summation, divided by 2^n (exact). Shares nothing with the log-space implementation. */
static double pascal[57][57];
static void pascal_init(void) {
    for (int i = 0; i <= 56; i++) {
        pascal[i][0] = pascal[i][i] = 1;
        for (int j = 1; j < i; j++) pascal[i][j] = pascal[i - 1][j - 1] + pascal[i - 1][j];
    }
}
static double naive_binom_p(long k, long n) {
    if (pascal[0][0] == 0) pascal_init();
    long m = k < n - k ? k : n - k;
    double s = 0;
    for (long j = 0; j <= m; j++) s += pascal[n][j];
    double p = 2 * s / ldexp(1.0, (int)n);
    return p > 1 ? 1 : p;
}

static void check_against_naive(PFn f) {
    for (long n = 0; n <= 56; n++)
        for (long k = 0; k <= n; k++) {
            double want = naive_binom_p(k, n), got = f(k, n);
            T_ASSERT_MSG(fabs(got - want) <= 1e-12 * want, "binom(%ld,%ld) = %.17g, naive %.17g", k, n, got, want);
        }
}
static double mcnemar_as_binom(long k, long n) { return stats_mcnemar_exact(k, n - k); }
TEST(stats_binom_naive_oracle) {
    check_against_naive(stats_binom_two_sided);
    check_against_naive(mcnemar_as_binom);
}
/* canary: forgetting the min(k, n−k) (one tail from k) must fail the same comparison */
static double binom_no_min(long k, long n) {
    if (2 * k >= n) return 1;
    return stats_binom_two_sided(k, n);
}
static double binom_one_sided(long k, long n) { double p = stats_binom_two_sided(k, n); return p < 1 ? p / 2 : p; }
static void naive_canary_min(void) { check_against_naive(binom_no_min); }
static void naive_canary_half(void) { check_against_naive(binom_one_sided); }
TEST(stats_binom_naive_canary) {
    T_ASSERT(test_expect_failure(naive_canary_min));
    T_ASSERT(test_expect_failure(naive_canary_half));
}

/* ------------------------------------------------------------------ stratified and sign-flip tests */

TEST(stats_mh_exact_vs_convolution_oracle) {
    /* oracle: under H0 each seed's b_s ~ Binomial(m_s, 1/2) independently; convolve the per-seed pmfs
     * (Pascal / 2^m) and take min(1, 2 P(B ≤ min(b, m − b))) */
    Rng g;
    rng_seed(&g, 11, RNG_PROBE, 0);
    pascal_init();
    uint8_t a[4][200], b[4][200];
    for (int trial = 0; trial < 40; trial++) {
        StatsSeed seeds[4];
        long mtot = 0, btot = 0;
        double pmf[60] = {1}, nxt[60];
        int S = 1 + (int)rng_below(&g, 4);
        for (int s = 0; s < S; s++) {
            long n = 50 + rng_below(&g, 150), n10 = rng_below(&g, 9), n01 = rng_below(&g, 6), n11 = rng_below(&g, 30);
            make_pairs(a[s], b[s], n, n11, n10, n01, &g);
            seeds[s] = seed_of(a[s], b[s], n);
            long ms = n10 + n01;
            memset(nxt, 0, sizeof nxt);
            for (long x = 0; x <= mtot; x++)
                for (long j = 0; j <= ms; j++) nxt[x + j] += pmf[x] * pascal[ms][j] / ldexp(1.0, (int)ms);
            mtot += ms;
            btot += n10;
            memcpy(pmf, nxt, sizeof pmf);
        }
        long lo = btot < mtot - btot ? btot : mtot - btot;
        double tail = 0;
        for (long x = 0; x <= lo; x++) tail += pmf[x];
        double want = fmin(1, 2 * tail);
        T_ASSERT_MSG(fabs(stats_mh_exact(seeds, S) - want) <= 1e-12 * want, "trial %d: %.17g vs %.17g", trial,
                     stats_mh_exact(seeds, S), want);
    }
    T_ASSERT(stats_mh_exact(NULL, 0) == 1.0);
    uint8_t z = 0;
    StatsSeed empty = seed_of(&z, &z, 0);
    T_ASSERT(stats_mh_exact(&empty, 1) == 1.0);
}

/* oracle for stats_signflip_examples: enumerate every sign pattern of the non-zero d_i */
static double signflip_enum(const long *d, int k) {
    long T = 0;
    for (int i = 0; i < k; i++) T += d[i];
    long hits = 0;
    for (long mask = 0; mask < 1L << k; mask++) {
        long s = 0;
        for (int i = 0; i < k; i++) s += (mask >> i & 1) ? -d[i] : d[i];
        hits += labs(s) >= labs(T);
    }
    return (double)hits / (double)(1L << k);
}

TEST(stats_signflip_examples_vs_enumeration) {
    Rng g;
    rng_seed(&g, 12, RNG_PROBE, 0);
    enum { S = 4, N = 60 };
    uint8_t a[S][N], b[S][N];
    for (int trial = 0; trial < 30; trial++) {
        int Suse = 1 + trial % S;
        /* ~16 examples with d != 0 so the enumeration stays at 2^16 */
        for (int s = 0; s < Suse; s++)
            for (int i = 0; i < N; i++) {
                int active = i < 16;
                double u = rng_uniform_d(&g);
                a[s][i] = b[s][i] = (uint8_t)(u < 0.5);
                if (active && rng_uniform_d(&g) < 0.6) { a[s][i] = u < 0.6 + 0.05 * (trial % 3); b[s][i] = !a[s][i]; }
            }
        StatsSeed seeds[S];
        for (int s = 0; s < Suse; s++) seeds[s] = seed_of(a[s], b[s], N);
        long d[N];
        int k = 0;
        for (int i = 0; i < N; i++) {
            long di = 0;
            for (int s = 0; s < Suse; s++) di += (long)a[s][i] - (long)b[s][i];
            if (di) d[k++] = di;
        }
        CHECK(k <= 20);
        double want = signflip_enum(d, k), got = stats_signflip_examples(seeds, Suse);
        T_ASSERT_MSG(fabs(got - want) <= 1e-12 * want, "trial %d (S=%d, k=%d): %.17g vs %.17g", trial, Suse, k, got, want);
    }
    /* S = 1 is exactly McNemar, for any n */
    static uint8_t a1[5000], b1[5000];
    make_pairs(a1, b1, 5000, 2000, 610, 540, &g);
    StatsSeed one = seed_of(a1, b1, 5000);
    T_REL(stats_signflip_examples(&one, 1), stats_mcnemar_exact(610, 540), 1e-14);
    T_ASSERT(stats_signflip_examples(NULL, 0) == 1.0);
}

/* oracle for stats_signflip_seeds: recursion over the signs (not the bit-mask enumeration) */
static long flips_rec(const double *D, int S, int j, double sum, double target) {
    if (j == S) return fabs(sum) >= target;
    return flips_rec(D, S, j + 1, sum + D[j], target) + flips_rec(D, S, j + 1, sum - D[j], target);
}

/* seeds whose difference is exactly k/n: n = 1000, only_a = k (k may be negative: only_b = −k) */
static void seeds_with_diffs(const int *k, int S, uint8_t (*a)[1000], uint8_t (*b)[1000], StatsSeed *seeds, Rng *g) {
    for (int s = 0; s < S; s++) {
        make_pairs(a[s], b[s], 1000, 400, k[s] > 0 ? k[s] : 0, k[s] < 0 ? -k[s] : 0, g);
        seeds[s] = seed_of(a[s], b[s], 1000);
    }
}

TEST(stats_signflip_seeds_hand_values) {
    static uint8_t a[24][1000], b[24][1000];
    StatsSeed seeds[24];
    Rng g;
    rng_seed(&g, 13, RNG_PROBE, 0);
    /* one seed: both patterns reach |D|: p = 1 */
    int k1[] = {50};
    seeds_with_diffs(k1, 1, a, b, seeds, &g);
    T_ASSERT(stats_signflip_seeds(seeds, 1) == 1.0);
    /* D = (0.10, 0.05): sums ±0.15 (2 of 4 patterns reach 0.15), ±0.05: p = 2/4 */
    int k2[] = {100, 50};
    seeds_with_diffs(k2, 2, a, b, seeds, &g);
    T_NEAR(stats_signflip_seeds(seeds, 2), 0.5, 1e-15);
    /* six positive distinct differences: only +all and −all reach the total: p = 2/64 */
    int k6[] = {10, 20, 30, 40, 50, 60};
    seeds_with_diffs(k6, 6, a, b, seeds, &g);
    T_NEAR(stats_signflip_seeds(seeds, 6), 2.0 / 64, 1e-15);
    /* D = (0.03, 0.02, −0.01): T = 0.04; |sums| of the 8 patterns: 0.04 0.02 0.06 0.00 and negatives,
     * 0.04 and 0.06 reach it: p = 4/8 */
    int k3[] = {30, 20, -10};
    seeds_with_diffs(k3, 3, a, b, seeds, &g);
    T_NEAR(stats_signflip_seeds(seeds, 3), 0.5, 1e-15);
    /* a seed with n = 0 is left out */
    seeds[3] = seed_of(a[0], b[0], 0);
    T_NEAR(stats_signflip_seeds(seeds, 4), 0.5, 1e-15);
    /* random differences against the recursion, S up to 12 */
    for (int trial = 0; trial < 20; trial++) {
        int S = 1 + trial % 12, k[12];
        for (int s = 0; s < S; s++) k[s] = (int)rng_below(&g, 121) - 40;
        seeds_with_diffs(k, S, a, b, seeds, &g);
        double D[12], T = 0, ab = 0;
        for (int s = 0; s < S; s++) { D[s] = k[s] / 1000.0; T += D[s]; ab += fabs(D[s]); }
        double want = ab > 0 ? (double)flips_rec(D, S, 0, 0, fabs(T) - 1e-9 * ab) / (double)(1L << S) : 1;
        T_NEAR(stats_signflip_seeds(seeds, S), want, 1e-15);
    }
    /* S = 22 > 20: Monte Carlo over 2^20 patterns agrees with the full enumeration (2^22 patterns) within
     * 5 sd of the Monte Carlo error sqrt(p(1−p)/2^20) ≤ 4.9e-4 */
    int k22[22];
    for (int s = 0; s < 22; s++) k22[s] = (int)rng_below(&g, 81) - 30;
    seeds_with_diffs(k22, 22, a, b, seeds, &g);
    double D[22], T = 0, ab = 0;
    for (int s = 0; s < 22; s++) { D[s] = k22[s] / 1000.0; T += D[s]; ab += fabs(D[s]); }
    double want = (double)flips_rec(D, 22, 0, 0, fabs(T) - 1e-9 * ab) / (double)(1L << 22);
    T_NEAR(stats_signflip_seeds(seeds, 22), want, 2.5e-3);
    T_ASSERT(stats_signflip_seeds(NULL, 0) == 1.0);
}

TEST(stats_masking_seeds_counts) {
    static uint8_t a[4][1000], b[4][1000];
    StatsSeed seeds[4];
    Rng g;
    rng_seed(&g, 14, RNG_PROBE, 0);
    /* gaps +8 points (b=100,c=20: p ≈ 5e-14), +8 points with many discordant pairs (b=300, c=220:
     * p ≈ 5e-4), +3 points (p ≈ 0.04 but gap too small), −9 points (wrong direction) */
    make_pairs(a[0], b[0], 1000, 400, 100, 20, &g);
    make_pairs(a[1], b[1], 1000, 100, 300, 220, &g);
    make_pairs(a[2], b[2], 1000, 400, 80, 50, &g);
    make_pairs(a[3], b[3], 1000, 400, 10, 100, &g);
    for (int s = 0; s < 4; s++) seeds[s] = seed_of(a[s], b[s], 1000);
    T_EQ_INT(stats_masking_seeds(seeds, 4, +1, 0.05, 0.01), 2);
    T_EQ_INT(stats_masking_seeds(seeds, 4, +1, 0.05, 1e-6), 1);
    T_EQ_INT(stats_masking_seeds(seeds, 4, -1, 0.05, 0.01), 1);
    T_EQ_INT(stats_masking_seeds(seeds, 4, +1, 0.02, 0.05), 3);
    seeds[0].n = 0;
    T_EQ_INT(stats_masking_seeds(seeds, 4, +1, 0.05, 0.01), 1);
}

TEST(stats_mean_sd) {
    double x[] = {40, 50}, y[] = {2, 4, 4, 4, 5, 5, 7, 9};
    T_NEAR(stats_mean(x, 2), 45, 1e-15);
    T_NEAR(stats_sd(x, 2), sqrt(50.0), 1e-13); /* ((−5)² + 5²)/1 = 50 */
    T_NEAR(stats_mean(y, 8), 5, 1e-15);
    T_NEAR(stats_sd(y, 8), sqrt(32.0 / 7), 1e-13); /* sum of squares 32, n − 1 = 7 */
    T_ASSERT(isnan(stats_mean(x, 0)) && isnan(stats_sd(x, 1)) && isnan(stats_sd(x, 0)));
    double big[] = {1e9 + 1, 1e9 + 2, 1e9 + 3}; /* two-pass: no cancellation */
    T_NEAR(stats_sd(big, 3), 1.0, 1e-9);
}

/* ------------------------------------------------------------------ bootstrap: edge cases */

TEST(stats_bootstrap_edge_cases) {
    static uint8_t a[3][800], b[3][800];
    Rng g;
    rng_seed(&g, 15, RNG_PROBE, 0);
    StatsBootOpts o = {.reps = 500, .seed = 1};
    /* no data: the whole range of a difference */
    StatsInterval iv = stats_bootstrap_diff(NULL, 0, &o);
    T_ASSERT(iv.est == 0 && iv.lo == -1 && iv.hi == 1);
    StatsSeed e = seed_of(a[0], b[0], 0);
    iv = stats_bootstrap_diff(&e, 1, &o);
    T_ASSERT(iv.est == 0 && iv.lo == -1 && iv.hi == 1);
    /* all-equal outcomes: width 0, both designs, one or several seeds */
    StatsSeed seeds[3];
    for (int s = 0; s < 3; s++) {
        make_pairs(a[s], b[s], 800, 300 + 50 * s, 0, 0, &g);
        seeds[s] = seed_of(a[s], b[s], 800);
    }
    for (int design = 0; design < 2; design++)
        for (int S = 1; S <= 3; S++) {
            o.design = (StatsDesign)design;
            iv = stats_bootstrap_diff(seeds, S, &o);
            T_ASSERT_MSG(iv.est == 0 && iv.lo == 0 && iv.hi == 0, "design %d S %d: %g [%g, %g]", design, S, iv.est, iv.lo, iv.hi);
        }
    /* ... and every test gives p = 1 */
    T_ASSERT(stats_mh_exact(seeds, 3) == 1.0 && stats_signflip_examples(seeds, 3) == 1.0 && stats_signflip_seeds(seeds, 3) == 1.0);
    T_EQ_INT(stats_masking_seeds(seeds, 3, +1, 0.0, 1.0), 0);
    /* A always robust, B never: exactly 1 */
    for (int s = 0; s < 3; s++) make_pairs(a[s], b[s], 800, 0, 800, 0, &g);
    for (int design = 0; design < 2; design++) {
        o.design = (StatsDesign)design;
        iv = stats_bootstrap_diff(seeds, 3, &o);
        T_ASSERT(iv.est == 1 && iv.lo == 1 && iv.hi == 1);
    }
    /* seeds with different n: the estimate weights seeds equally (mean of 0.1, 0.0, −0.05), not pooled */
    o.design = STATS_NESTED;
    make_pairs(a[0], b[0], 300, 100, 60, 30, &g); /* +0.10 */
    make_pairs(a[1], b[1], 500, 100, 40, 40, &g); /* 0 */
    make_pairs(a[2], b[2], 800, 100, 40, 80, &g); /* −0.05 */
    seeds[0].n = 300; seeds[1].n = 500; seeds[2].n = 800;
    iv = stats_bootstrap_diff(seeds, 3, &o);
    T_NEAR(iv.est, (0.1 + 0.0 - 0.05) / 3, 1e-15);
    T_ASSERT(iv.lo < iv.est && iv.est < iv.hi);
    /* deterministic given the seed; another seed gives another interval; more replicates extend the stream */
    StatsInterval iv2 = stats_bootstrap_diff(seeds, 3, &o);
    T_ASSERT(iv2.lo == iv.lo && iv2.hi == iv.hi);
    o.seed = 2;
    iv2 = stats_bootstrap_diff(seeds, 3, &o);
    T_ASSERT(iv2.lo != iv.lo || iv2.hi != iv.hi);
    /* opt NULL: 2000 replicates, 95 % */
    iv = stats_bootstrap_diff(seeds, 1, NULL);
    T_NEAR(iv.est, 0.1, 1e-15);
    T_ASSERT(iv.lo > 0 && iv.hi < 0.2);
    /* a higher level gives a wider interval */
    StatsBootOpts o99 = {.reps = 2000, .level = 0.99};
    StatsInterval w = stats_bootstrap_diff(seeds, 1, &o99);
    T_ASSERT(w.lo < iv.lo && w.hi > iv.hi);
}

/* ------------------------------------------------------------------ bootstrap vs a literal oracle */

/* The oracle draws indices literally: seeds with replacement, then n_s example indices with replacement
 * within each drawn seed, the same index for A and B (plain two-stage scheme); `unpaired` draws A's and
 * B's indices separately (the bug the check must catch). Returns the interval at 95 %. */
static int g_unpaired;
static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}
static StatsInterval oracle_boot(const StatsSeed *seeds, int S, long R, uint64_t key) {
    double *rep = xmalloc(sizeof(double) * (size_t)R);
    Rng g;
    rng_seed(&g, key, RNG_PROBE, 99);
    for (long r = 0; r < R; r++) {
        double acc = 0;
        for (int j = 0; j < S; j++) {
            const StatsSeed *q = &seeds[rng_below(&g, (uint32_t)S)];
            long sa = 0, sb = 0;
            for (long k = 0; k < q->n; k++) {
                uint32_t i = rng_below(&g, (uint32_t)q->n);
                sa += q->a[i];
                sb += q->b[g_unpaired ? rng_below(&g, (uint32_t)q->n) : i];
            }
            acc += (double)(sa - sb) / (double)q->n;
        }
        rep[r] = acc / S;
    }
    qsort(rep, (size_t)R, sizeof(double), cmp_d);
    StatsInterval iv = {0, rep[(long)(0.025 * (R - 1))], rep[(long)(0.975 * (R - 1))]};
    free(rep);
    return iv;
}

static uint8_t ob_a[3][900], ob_b[3][900];
static StatsSeed ob_seeds[3];
/* Percentile endpoints from 20,000 replicates have a Monte Carlo sd of about 0.02·sd(replicates); the
 * endpoints must agree within 0.08·sd(replicates) (≈ 4 of those sd), where sd is estimated from the
 * implementation's interval width / 3.92. Unpaired resampling inflates the width by ~2x. */
static void check_boot_vs_oracle(int S) {
    StatsBootOpts o = {.reps = 20000, .seed = 5, .plain = 1};
    StatsInterval got = stats_bootstrap_diff(ob_seeds, S, &o), want = oracle_boot(ob_seeds, S, 20000, 6);
    double sd = (got.hi - got.lo) / 3.92;
    T_ASSERT_MSG(fabs(got.lo - want.lo) < 0.08 * sd && fabs(got.hi - want.hi) < 0.08 * sd,
                 "S=%d: [%.5f, %.5f] vs literal oracle [%.5f, %.5f]", S, got.lo, got.hi, want.lo, want.hi);
}
static void oracle_setup(void) {
    Rng g;
    rng_seed(&g, 16, RNG_PROBE, 0);
    make_pairs(ob_a[0], ob_b[0], 900, 350, 130, 80, &g);
    make_pairs(ob_a[1], ob_b[1], 400, 150, 50, 40, &g);
    make_pairs(ob_a[2], ob_b[2], 650, 250, 100, 50, &g);
    ob_seeds[0] = seed_of(ob_a[0], ob_b[0], 900);
    ob_seeds[1] = seed_of(ob_a[1], ob_b[1], 400);
    ob_seeds[2] = seed_of(ob_a[2], ob_b[2], 650);
}
TEST(stats_bootstrap_vs_literal_oracle) {
    oracle_setup();
    check_boot_vs_oracle(1); /* single seed: examples only */
    check_boot_vs_oracle(3); /* seeds of 900, 400, 650 examples */
}
static void unpaired_canary(void) { g_unpaired = 1; check_boot_vs_oracle(1); g_unpaired = 0; }
TEST(stats_bootstrap_oracle_canary) {
    oracle_setup();
    T_ASSERT(test_expect_failure(unpaired_canary));
}

/* ------------------------------------------------------------------ simulations with a known truth */

/* A simulated study (docs/statistics.md, "Simulations"): S seeds. Seed s has population robust
 * accuracies pB_s = pB + sdB·N(0,1) and pA_s = pB_s + delta + tau·N(0,1), so the true difference the
 * bootstrap targets is theta = E_s[pA_s − pB_s] = delta (over training seeds and test examples). A pair's
 * four outcomes have probabilities p11 = pA pB + phi sqrt(pA(1−pA) pB(1−pB)), p10 = pA − p11,
 * p01 = pB − p11 (phi = correlation of A's and B's outcomes on an example). Nested: every seed draws its
 * own n_s ~ U[nmin, nmax] examples. Crossed: one n for all seeds; each example is "sticky" with
 * probability lambda and then uses one uniform U_i in every seed (so the same examples are discordant in
 * the same direction across seeds), else a fresh uniform per seed; either way each (s, i) outcome has
 * exactly seed s's probabilities. */
typedef struct Sim {
    int S, crossed;
    long nmin, nmax;
    double pB, sdB, delta, tau, phi, lambda;
} Sim;

typedef struct SimBuf {
    uint8_t *a, *b;     /* (S, nmax) */
    double *U;          /* (nmax) shared uniforms */
    uint8_t *sticky;    /* (nmax) */
    StatsSeed seeds[32];
} SimBuf;

static void simbuf_init(SimBuf *w, const Sim *c) {
    CHECK(c->S <= 32);
    w->a = xmalloc((size_t)c->S * (size_t)c->nmax);
    w->b = xmalloc((size_t)c->S * (size_t)c->nmax);
    w->U = xmalloc(sizeof(double) * (size_t)c->nmax);
    w->sticky = xmalloc((size_t)c->nmax);
}
static void simbuf_free(SimBuf *w) { free(w->a); free(w->b); free(w->U); free(w->sticky); }

static void sim_study(const Sim *c, uint64_t key, long study, SimBuf *w) {
    Rng g;
    rng_seed(&g, key, RNG_PROBE, (uint64_t)study);
    long nshared = c->nmin + (long)rng_below(&g, (uint32_t)(c->nmax - c->nmin + 1));
    if (c->crossed)
        for (long i = 0; i < nshared; i++) {
            w->sticky[i] = rng_uniform_d(&g) < c->lambda;
            w->U[i] = rng_uniform_d(&g);
        }
    for (int s = 0; s < c->S; s++) {
        long n = c->crossed ? nshared : c->nmin + (long)rng_below(&g, (uint32_t)(c->nmax - c->nmin + 1));
        double pB = c->pB + c->sdB * rng_normal(&g), pA = pB + c->delta + c->tau * rng_normal(&g);
        pA = fmin(fmax(pA, 0.01), 0.99);
        pB = fmin(fmax(pB, 0.01), 0.99);
        double p11 = pA * pB + c->phi * sqrt(pA * (1 - pA) * pB * (1 - pB));
        p11 = fmin(fmax(p11, fmax(0, pA + pB - 1)), fmin(pA, pB));
        double p10 = pA - p11, p01 = pB - p11;
        uint8_t *a = w->a + (size_t)s * (size_t)c->nmax, *b = w->b + (size_t)s * (size_t)c->nmax;
        for (long i = 0; i < n; i++) {
            double u = c->crossed && w->sticky[i] ? w->U[i] : rng_uniform_d(&g);
            /* order 10 | 11 | 00 | 01 */
            if (u < p10) { a[i] = 1; b[i] = 0; }
            else if (u < p10 + p11) { a[i] = 1; b[i] = 1; }
            else if (u < 1 - p01) { a[i] = 0; b[i] = 0; }
            else { a[i] = 0; b[i] = 1; }
        }
        w->seeds[s] = seed_of(a, b, n);
    }
}

/* Coverage: fraction of studies whose interval contains delta; intervals kept for the canary. */
typedef struct Cover { long studies; double *lo, *hi, truth, shift; } Cover;

static double coverage_of(const Cover *cv) {
    long in = 0;
    for (long k = 0; k < cv->studies; k++) {
        double half = (cv->hi[k] - cv->lo[k]) / 2;
        in += cv->lo[k] + cv->shift * half <= cv->truth && cv->truth <= cv->hi[k] + cv->shift * half;
    }
    return (double)in / (double)cv->studies;
}

static double run_coverage(const Sim *c, long studies, long reps, StatsDesign design, int plain, uint64_t key,
                           Cover *keep, double *mean_width) {
    SimBuf w;
    simbuf_init(&w, c);
    Cover cv = {studies, xmalloc(sizeof(double) * (size_t)studies), xmalloc(sizeof(double) * (size_t)studies), c->delta, 0};
    double width = 0;
    for (long k = 0; k < studies; k++) {
        sim_study(c, key, k, &w);
        StatsBootOpts o = {.reps = reps, .seed = (uint64_t)k, .design = design, .plain = plain};
        StatsInterval iv = stats_bootstrap_diff(w.seeds, c->S, &o);
        cv.lo[k] = iv.lo;
        cv.hi[k] = iv.hi;
        width += iv.hi - iv.lo;
    }
    simbuf_free(&w);
    double cover = coverage_of(&cv);
    if (mean_width) *mean_width = width / (double)studies;
    if (keep) *keep = cv;
    else { free(cv.lo); free(cv.hi); }
    return cover;
}

/* 1,000 studies: a true 95 % coverage gives a binomial sd of 0.69 points, so [93, 97] is ±2.9 sd */
static Cover g_cover;
static void check_coverage(void) {
    double cv = coverage_of(&g_cover);
    T_ASSERT_MSG(cv >= 0.93 && cv <= 0.97, "coverage %.3f outside [0.93, 0.97]", cv);
}
static void coverage_canary(void) { g_cover.shift = 0.5; check_coverage(); g_cover.shift = 0; }

/* The calibration setting: 5 seeds, 300..1000 examples each, A 0.55 vs B 0.50 (sd 1 point across seeds),
 * true-difference sd 0.5 points across seeds, outcome correlation 0.6. */
static const Sim sim_nested = {.S = 5, .nmin = 300, .nmax = 1000, .pB = 0.50, .sdB = 0.01, .delta = 0.05,
                               .tau = 0.005, .phi = 0.6};
static const Sim sim_crossed = {.S = 5, .crossed = 1, .nmin = 300, .nmax = 600, .pB = 0.50, .sdB = 0.01,
                                .delta = 0.05, .tau = 0.005, .phi = 0.6, .lambda = 0.5};

TEST(stats_sim_bootstrap_coverage_nested) {
    double t0 = now_seconds();
    double cover = run_coverage(&sim_nested, 1000, 1000, STATS_NESTED, 0, 2024, &g_cover, NULL);
    printf("    nested, 5 seeds x 300..1000 examples, 1000 studies x 1000 replicates: coverage %.1f %% (%.2f s)\n",
           100 * cover, now_seconds() - t0);
    check_coverage();
    T_ASSERT(test_expect_failure(coverage_canary));
    free(g_cover.lo);
    free(g_cover.hi);
    /* the plain two-stage scheme counts the within-seed variance twice: measured, documented over-coverage */
    double plain = run_coverage(&sim_nested, 1000, 1000, STATS_NESTED, 1, 2024, NULL, NULL);
    printf("    same studies, plain two-stage bootstrap: coverage %.1f %%\n", 100 * plain);
    T_ASSERT_MSG(plain > 0.97, "plain two-stage coverage %.3f: expected above the 97 %% band", plain);
}

TEST(stats_sim_bootstrap_coverage_crossed) {
    double t0 = now_seconds();
    double cover = run_coverage(&sim_crossed, 1000, 500, STATS_CROSSED, 0, 2025, &g_cover, NULL);
    printf("    crossed, 5 seeds x 300..600 shared examples (half sticky), 1000 studies x 500 replicates: "
           "coverage %.1f %% (%.2f s)\n", 100 * cover, now_seconds() - t0);
    check_coverage();
    T_ASSERT(test_expect_failure(coverage_canary));
    free(g_cover.lo);
    free(g_cover.hi);
    /* the nested scheme on shared examples ignores that the same examples recur in every seed */
    double nested = run_coverage(&sim_crossed, 1000, 500, STATS_NESTED, 0, 2025, NULL, NULL);
    printf("    same studies, nested scheme: coverage %.1f %%\n", 100 * nested);
    T_ASSERT_MSG(nested < 0.93, "nested scheme on crossed data: coverage %.3f, expected < 0.93", nested);
}

/* Rejection rates of the paired tests over simulated studies, and of the verdict's rule-level criterion
 * (docs/statistics.md, "What the verdict uses"): the bootstrap interval of the design excludes 0 AND the
 * sign-flip test over seeds gives p < alpha. The p-values are kept per test so the canaries can feed the
 * same check a wrong p-value (the interval enters as p = 0 when it excludes 0, else 1). */
enum { PT_MCNEMAR, PT_MH, PT_FLIP_SEEDS, PT_FLIP_EXAMPLES, PT_BOOT, PT_VERDICT, PT_COUNT };
static const char *pt_name[PT_COUNT] = {"McNemar (seed 0)", "stratified exact McNemar", "sign-flip over seeds",
                                        "sign-flip over examples", "bootstrap CI excludes 0",
                                        "verdict: CI and sign-flip seeds"};
typedef struct Rates { long studies; int crossed, boot; double *p[PT_COUNT]; double scale; } Rates;

static double rate_of(const Rates *r, int t, double alpha) {
    long k = 0;
    for (long i = 0; i < r->studies; i++) k += r->p[t][i] * r->scale < alpha;
    return (double)k / (double)r->studies;
}

/* reps = 0: no bootstrap (PT_BOOT and PT_VERDICT left at 1) */
static Rates run_rates(const Sim *c, long studies, uint64_t key, long reps) {
    Rates r = {studies, c->crossed, reps > 0, {0}, 1};
    for (int t = 0; t < PT_COUNT; t++) r.p[t] = xmalloc(sizeof(double) * (size_t)studies);
    SimBuf w;
    simbuf_init(&w, c);
    for (long k = 0; k < studies; k++) {
        sim_study(c, key, k, &w);
        StatsCounts t0 = stats_count(w.seeds[0].a, w.seeds[0].b, w.seeds[0].n);
        r.p[PT_MCNEMAR][k] = stats_mcnemar_exact(t0.only_a, t0.only_b);
        r.p[PT_MH][k] = stats_mh_exact(w.seeds, c->S);
        r.p[PT_FLIP_SEEDS][k] = stats_signflip_seeds(w.seeds, c->S);
        r.p[PT_FLIP_EXAMPLES][k] = c->crossed ? stats_signflip_examples(w.seeds, c->S) : 1;
        r.p[PT_BOOT][k] = r.p[PT_VERDICT][k] = 1;
        if (reps > 0) {
            StatsBootOpts o = {.reps = reps, .seed = (uint64_t)k, .design = c->crossed ? STATS_CROSSED : STATS_NESTED};
            StatsInterval iv = stats_bootstrap_diff(w.seeds, c->S, &o);
            r.p[PT_BOOT][k] = iv.lo > 0 || iv.hi < 0 ? 0 : 1;
            r.p[PT_VERDICT][k] = fmax(r.p[PT_BOOT][k], r.p[PT_FLIP_SEEDS][k]);
        }
    }
    simbuf_free(&w);
    return r;
}
static void rates_free(Rates *r) { for (int t = 0; t < PT_COUNT; t++) free(r->p[t]); }
static void rates_print(const Rates *r, const char *what) {
    for (int t = 0; t < PT_COUNT; t++)
        if ((t != PT_FLIP_EXAMPLES || r->crossed) && (t < PT_BOOT || r->boot))
            printf("    %s: %-32s rejects %5.1f %% at 0.05\n", what, pt_name[t], 100 * rate_of(r, t, 0.05));
}

/* Under H0 a level-0.05 test rejects at most 5 % of studies; with N studies the binomial sd at 5 % is
 * sqrt(0.05·0.95/N) (0.49 points for 2,000, 0.69 for 1,000): the bound is 5 % + 3 sd. */
static Rates g_rates;
static int g_rate_test;
static void check_level(void) {
    double r = rate_of(&g_rates, g_rate_test, 0.05), bound = 0.05 + 3 * sqrt(0.05 * 0.95 / (double)g_rates.studies);
    T_ASSERT_MSG(r <= bound, "%s rejects %.3f of studies under H0 (bound %.3f)", pt_name[g_rate_test], r, bound);
}
static void level_canary(void) { g_rates.scale = 0.5; check_level(); g_rates.scale = 1; } /* one-sided p as two-sided */

/* H0: both models of every seed have the same population robust accuracy (tau = 0), 6 seeds. */
static const Sim sim_h0 = {.S = 6, .nmin = 300, .nmax = 1000, .pB = 0.50, .sdB = 0.01, .delta = 0, .tau = 0, .phi = 0.6};
static const Sim sim_h0_crossed = {.S = 6, .crossed = 1, .nmin = 300, .nmax = 1000, .pB = 0.50, .sdB = 0.01,
                                   .delta = 0, .tau = 0, .phi = 0.6, .lambda = 0.5};
/* H0 at the rule level only: every seed's models differ (tau = 2 points) but the differences average 0 */
static const Sim sim_h0_tau = {.S = 6, .nmin = 300, .nmax = 1000, .pB = 0.50, .sdB = 0.01, .delta = 0, .tau = 0.02, .phi = 0.6};

TEST(stats_sim_type1) {
    double t0 = now_seconds();
    g_rates = run_rates(&sim_h0, 2000, 3030, 0);
    rates_print(&g_rates, "H0, nested, 6 seeds");
    for (g_rate_test = PT_MCNEMAR; g_rate_test <= PT_FLIP_SEEDS; g_rate_test++) check_level();
    g_rate_test = PT_MH;
    T_ASSERT(test_expect_failure(level_canary));
    rates_free(&g_rates);

    /* crossed (the same examples in every seed), with the verdict's criterion (bootstrap of 400 replicates) */
    g_rates = run_rates(&sim_h0_crossed, 1000, 3031, 400);
    rates_print(&g_rates, "H0, crossed, 6 seeds");
    g_rate_test = PT_FLIP_EXAMPLES;
    check_level();
    T_ASSERT(test_expect_failure(level_canary));
    g_rate_test = PT_BOOT;
    check_level();
    g_rate_test = PT_VERDICT;
    check_level();
    /* documented: on a shared test set the stratified McNemar counts a sticky example once per seed, and
     * the sign-flip over seeds is conditional on the test set; both reject far more than 5 % */
    double mh = rate_of(&g_rates, PT_MH, 0.05), fs = rate_of(&g_rates, PT_FLIP_SEEDS, 0.05);
    T_ASSERT_MSG(mh > 0.15 && fs > 0.15, "crossed H0: stratified McNemar %.3f, sign-flip seeds %.3f, expected > 0.15", mh, fs);
    rates_free(&g_rates);

    g_rates = run_rates(&sim_h0_tau, 2000, 3032, 0);
    rates_print(&g_rates, "H0 for the rule, seeds vary (tau 2 pts)");
    g_rate_test = PT_FLIP_SEEDS;
    check_level();
    mh = rate_of(&g_rates, PT_MH, 0.05);
    T_ASSERT_MSG(mh > 0.12, "stratified McNemar with seed variation rejects %.3f, expected > 0.12", mh);
    rates_free(&g_rates);
    printf("    (%.2f s)\n", now_seconds() - t0);
}

/* Power at a true 5-point difference (A 0.55, B 0.50, phi 0.6, tau 0.5 points), n = 1000 per seed.
 * Expected for one seed: p10 = 0.1257, p01 = 0.0757, ~201 discordant pairs of which a fraction 0.624
 * favour A (sd 6.9 pairs); the exact test at 0.05 rejects beyond ~114.5 of 201: power ≈ Phi((125.7 −
 * 114.5)/6.9) ≈ 0.95. We assert > 0.90 for McNemar; more seeds only add power: > 0.99 pooled over 6 seeds
 * and > 0.95 for the sign-flip test over 6 seeds (all 6 differences positive: p = 2/64). */
static const Sim sim_h1 = {.S = 6, .nmin = 1000, .nmax = 1000, .pB = 0.50, .sdB = 0.01, .delta = 0.05, .tau = 0.005, .phi = 0.6};
static const Sim sim_h1_crossed = {.S = 6, .crossed = 1, .nmin = 1000, .nmax = 1000, .pB = 0.50, .sdB = 0.01,
                                   .delta = 0.05, .tau = 0.005, .phi = 0.6, .lambda = 0.5};
static double g_power_min;
static void check_power(void) {
    double r = rate_of(&g_rates, g_rate_test, 0.05);
    T_ASSERT_MSG(r > g_power_min, "%s power %.3f, expected > %.2f", pt_name[g_rate_test], r, g_power_min);
}
static void power_canary(void) { g_rates.scale = 3; check_power(); g_rates.scale = 1; } /* a Bonferroni-x3 test */

TEST(stats_sim_power) {
    double t0 = now_seconds();
    g_rates = run_rates(&sim_h1, 1000, 4040, 0);
    rates_print(&g_rates, "5-point difference, nested, n = 1000");
    g_rate_test = PT_MCNEMAR; g_power_min = 0.90; check_power();
    T_ASSERT(test_expect_failure(power_canary));
    g_rate_test = PT_MH; g_power_min = 0.99; check_power();
    g_rate_test = PT_FLIP_SEEDS; g_power_min = 0.95; check_power();
    rates_free(&g_rates);
    g_rates = run_rates(&sim_h1_crossed, 1000, 4041, 0);
    rates_print(&g_rates, "5-point difference, crossed, n = 1000");
    g_rate_test = PT_FLIP_EXAMPLES; g_power_min = 0.99; check_power();
    rates_free(&g_rates);
    printf("    (%.2f s)\n", now_seconds() - t0);
}

/* ------------------------------------------------------------------ the doc's tables (opt-in) */

/* CONCORD_STATS_TABLE=1 make test T=stats_table prints the tables of docs/statistics.md ("Simulations"):
 * bootstrap coverage over designs x seeds x seed-to-seed sd, and rejection rates of every test and of the
 * verdict's criterion under H0 and H1. About two minutes; without the variable the test only says so. */
TEST(stats_table) {
    if (!getenv("CONCORD_STATS_TABLE")) {
        printf("    skipped: CONCORD_STATS_TABLE=1 prints the tables of docs/statistics.md (~2 min)\n");
        return;
    }
    double t0 = now_seconds();
    printf("\n| design | seeds | tau (pts) | coverage, matched | mean width (pts) | coverage, plain | mean width (pts) |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    static const int Ss[] = {1, 2, 3, 5, 10};
    static const double taus[] = {0, 0.005, 0.02};
    for (int design = 0; design < 2; design++)
        for (size_t i = 0; i < ARRAY_LEN(Ss); i++)
            for (size_t j = 0; j < ARRAY_LEN(taus); j++) {
                Sim c = design ? sim_crossed : sim_nested;
                c.S = Ss[i];
                c.tau = taus[j];
                long reps = design ? 500 : 1000;
                double wm, wp;
                double cm = run_coverage(&c, 1000, reps, (StatsDesign)design, 0, 5050 + 10 * i + j, NULL, &wm);
                double cp = run_coverage(&c, 1000, reps, (StatsDesign)design, 1, 5050 + 10 * i + j, NULL, &wp);
                printf("| %s | %d | %.1f | %.1f | %.2f | %.1f | %.2f |\n", design ? "crossed" : "nested", c.S,
                       100 * c.tau, 100 * cm, 100 * wm, 100 * cp, 100 * wp);
                fflush(stdout);
            }
    printf("\n(coverage table: %.0f s)\n", now_seconds() - t0);

    typedef struct { const char *name; Sim c; } Scenario;
    Scenario sc[] = {
        {"H0, nested, tau 0", sim_h0},
        {"H0, nested, tau 2 pts", sim_h0_tau},
        {"H0, crossed, tau 0", sim_h0_crossed},
        {"H0, crossed, tau 2 pts", sim_h0_crossed},
        {"H1 5 pts, nested, n 1000", sim_h1},
        {"H1 5 pts, crossed, n 1000", sim_h1_crossed},
        {"H1 2 pts, nested, n 1000", sim_h1},
        {"H1 2 pts, crossed, n 1000", sim_h1_crossed},
        {"H1 5 pts, crossed, n 1000, 3 seeds", sim_h1_crossed},
    };
    sc[3].c.tau = 0.02;
    sc[6].c.delta = sc[7].c.delta = 0.02;
    sc[8].c.S = 3;
    printf("\n| scenario (6 seeds unless said) | McNemar seed 0 | stratified McNemar | sign-flip seeds | sign-flip examples | CI excludes 0 | verdict |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < ARRAY_LEN(sc); i++) {
        Rates r = run_rates(&sc[i].c, 2000, 6060 + i, 500);
        printf("| %s | %.1f | %.1f | %.1f | ", sc[i].name, 100 * rate_of(&r, PT_MCNEMAR, 0.05), 100 * rate_of(&r, PT_MH, 0.05),
               100 * rate_of(&r, PT_FLIP_SEEDS, 0.05));
        if (r.crossed) printf("%.1f", 100 * rate_of(&r, PT_FLIP_EXAMPLES, 0.05));
        else printf("n/a");
        printf(" | %.1f | %.1f |\n", 100 * rate_of(&r, PT_BOOT, 0.05), 100 * rate_of(&r, PT_VERDICT, 0.05));
        fflush(stdout);
        rates_free(&r);
    }
    /* the exact example-level test's level, measured tighter (no bootstrap: cheap) */
    Rates r = run_rates(&sim_h0_crossed, 20000, 7070, 0);
    printf("\nsign-flip over examples, crossed H0, 20000 studies: %.2f %%\n", 100 * rate_of(&r, PT_FLIP_EXAMPLES, 0.05));
    rates_free(&r);
    printf("(all tables: %.0f s)\n", now_seconds() - t0);
}
