/* stats.c -- exact paired tests, Wilson intervals and the two-level bootstrap. See stats.h for the
 * formulas and docs/statistics.md for the derivations and the simulations that calibrate them.
 *
 * Letters: S seeds, n examples per seed, m non-empty seeds, R bootstrap replicates.
 */
#include "results/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"

#define LN2 0.693147180559945309417232121458
#define LN_2PI 1.837877066409345483560659472811
#define LN_SQRT_2PI 0.918938533204672741780329736406

StatsCounts stats_count(const uint8_t *a, const uint8_t *b, long n) {
    CHECK(n >= 0 && (n == 0 || (a && b)));
    StatsCounts t = {.n = n};
    for (long i = 0; i < n; i++) {
        CHECK(a[i] <= 1 && b[i] <= 1);
        t.robust_a += a[i];
        t.robust_b += b[i];
        t.only_a += a[i] && !b[i];
        t.only_b += !a[i] && b[i];
    }
    return t;
}

void stats_wilson(long k, long n, double z, double *lo, double *hi) {
    CHECK(n >= 0 && k >= 0 && k <= n && z >= 0);
    if (n == 0) { *lo = 0; *hi = 1; return; }
    double N = (double)n, z2 = z * z;
    double centre = ((double)k + z2 / 2) / (N + z2);
    double half = z / (N + z2) * sqrt((double)k * (double)(n - k) / N + z2 / 4);
    /* at k = 0 the two terms are equal in exact arithmetic; rounding must not leave -1e-17 */
    *lo = k == 0 ? 0 : fmax(0, centre - half);
    *hi = k == n ? 1 : fmin(1, centre + half);
}

/* ---- the Binomial(n, 1/2) pmf in log space (Loader 2000, "Fast and accurate computation of binomial
 * probabilities"; the algorithm of R's dbinom): log f(x) = −stirlerr terms − bd0 terms − log sqrt(2π x (n−x)/n),
 * accurate to a few ulps of the exponent for any n, where lgamma differences would lose ~log10(n) digits. */

/* stirlerr(n) = log(n!) − log(sqrt(2π n) (n/e)^n), n ≥ 1 */
static double stirlerr(double n) {
    const double S0 = 1.0 / 12, S1 = 1.0 / 360, S2 = 1.0 / 1260, S3 = 1.0 / 1680, S4 = 1.0 / 1188;
    if (n <= 15) return lgamma(n + 1) - (n + 0.5) * log(n) + n - LN_SQRT_2PI;
    double nn = n * n;
    if (n > 500) return (S0 - S1 / nn) / n;
    if (n > 80) return (S0 - (S1 - S2 / nn) / nn) / n;
    if (n > 35) return (S0 - (S1 - (S2 - S3 / nn) / nn) / nn) / n;
    return (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n;
}

/* bd0(x, np) = x log(x/np) + np − x, by its series when x is close to np (no cancellation) */
static double bd0(double x, double np) {
    if (fabs(x - np) < 0.1 * (x + np)) {
        double v = (x - np) / (x + np), s = (x - np) * v, ej = 2 * x * v, v2 = v * v;
        for (int j = 1; j < 1000; j++) {
            ej *= v2;
            double s1 = s + ej / (2 * j + 1);
            if (s1 == s) return s1;
            s = s1;
        }
        return s;
    }
    return x * log(x / np) + np - x;
}

static double log_dbinom_half(double x, double n) {
    if (x == 0 || x == n) return -n * LN2;
    double np = n / 2;
    double lc = stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, np) - bd0(n - x, np);
    return lc - 0.5 * (LN_2PI + log(x) + log1p(-x / n));
}

/* log P(X ≤ m), X ~ Binomial(n, 1/2), 2m ≤ n: f(m) times 1 + f(m−1)/f(m) + ..., summed from the largest
 * term down (f(j−1)/f(j) = j/(n−j+1) ≤ 1) until the terms stop counting; ~6 sqrt(n) terms at most. */
static double log_binom_lower_half(long m, long n) {
    double sum = 1, t = 1;
    for (long j = m; j >= 1; j--) {
        t *= (double)j / (double)(n - j + 1);
        sum += t;
        if (t < 1e-17 * sum) break;
    }
    return log_dbinom_half((double)m, (double)n) + log(sum);
}

double stats_binom_two_sided(long k, long n) {
    CHECK(n >= 0 && k >= 0 && k <= n);
    if (n == 0) return 1;
    long m = k < n - k ? k : n - k;
    if (2 * m == n) return 1; /* P(X ≤ n/2) > 1/2 */
    double lp = LN2 + log_binom_lower_half(m, n);
    return lp >= 0 ? 1 : exp(lp);
}

double stats_mcnemar_exact(long b, long c) {
    CHECK(b >= 0 && c >= 0);
    return stats_binom_two_sided(b, b + c);
}

double stats_mh_exact(const StatsSeed *seeds, int S) {
    CHECK(S >= 0);
    long b = 0, c = 0;
    for (int s = 0; s < S; s++) {
        StatsCounts t = stats_count(seeds[s].a, seeds[s].b, seeds[s].n);
        b += t.only_a;
        c += t.only_b;
    }
    return stats_mcnemar_exact(b, c);
}

double stats_signflip_examples(const StatsSeed *seeds, int S) {
    CHECK(S >= 0);
    if (S == 0) return 1;
    long n = seeds[0].n;
    for (int s = 0; s < S; s++) CHECK(seeds[s].n == n && (n == 0 || (seeds[s].a && seeds[s].b)));
    if (n == 0) return 1;
    long *h = xcalloc((size_t)S + 1, sizeof(long)); /* (S+1) h[v] = #{i : |d_i| = v} */
    long T = 0, npos = 0, tot = 0;
    for (long i = 0; i < n; i++) {
        long d = 0;
        for (int s = 0; s < S; s++) {
            CHECK(seeds[s].a[i] <= 1 && seeds[s].b[i] <= 1);
            d += (long)seeds[s].a[i] - (long)seeds[s].b[i];
        }
        T += d;
        h[labs(d)]++;
        tot += labs(d);
        if (d > 0) npos++;
    }
    int nmag = 0, vonly = 0;
    for (int v = 1; v <= S; v++)
        if (h[v]) { nmag++; vonly = v; }
    double p;
    if (nmag == 0) p = 1;
    else if (nmag == 1) p = stats_binom_two_sided(npos, h[vonly]); /* T = v (2 #pos − h_v): exact, any n */
    else {
        /* U = sum_v v (2 B_v − h_v), B_v ~ Binomial(h_v, 1/2) independent; P[u + tot] on [−tot, tot] */
        long W = 2 * tot + 1, r = 0;
        double *P = xcalloc((size_t)W, sizeof(double)), *Q = xcalloc((size_t)W, sizeof(double));
        P[tot] = 1;
        for (int v = 1; v <= S; v++) {
            if (!h[v]) continue;
            long hv = h[v], r2 = r + v * hv;
            for (long u = -r2; u <= r2; u++) Q[u + tot] = 0;
            for (long j = 0; j <= hv; j++) {
                double w = exp(log_dbinom_half((double)j, (double)hv));
                long shift = v * (2 * j - hv);
                for (long u = -r; u <= r; u++) Q[u + shift + tot] += w * P[u + tot];
            }
            double *tmp = P; P = Q; Q = tmp;
            r = r2;
        }
        /* two tails, smallest terms first */
        long t = labs(T);
        p = 0;
        if (t == 0) p = 1;
        else {
            for (long u = r; u >= t; u--) p += P[u + tot] + P[-u + tot];
            if (p > 1) p = 1;
        }
        free(P);
        free(Q);
    }
    free(h);
    return p;
}

/* Lemire's multiply-shift draw in [0, n): unbiased, no division on the common path. */
static inline uint32_t stats_below(Rng *g, uint32_t n) {
    uint64_t x = rng_u64(g) >> 32, prod = x * n;
    uint32_t low = (uint32_t)prod;
    if (low < n) {
        uint32_t thresh = (uint32_t)(-n) % n;
        while (low < thresh) {
            x = rng_u64(g) >> 32;
            prod = x * n;
            low = (uint32_t)prod;
        }
    }
    return (uint32_t)(prod >> 32);
}

double stats_signflip_seeds(const StatsSeed *seeds, int S) {
    CHECK(S >= 0);
    double *D = xmalloc(((size_t)S + 1) * sizeof(double)); /* (m) per-seed differences */
    int m = 0;
    double T = 0, absum = 0;
    for (int s = 0; s < S; s++) {
        if (seeds[s].n == 0) continue;
        StatsCounts t = stats_count(seeds[s].a, seeds[s].b, seeds[s].n);
        D[m] = (double)(t.only_a - t.only_b) / (double)t.n;
        T += D[m];
        absum += fabs(D[m]);
        m++;
    }
    double p = 1;
    if (m > 0 && absum > 0) {
        double target = fabs(T) - 1e-9 * absum;
        if (m <= 20) {
            /* patterns e and −e give the same |sum|: enumerate e_{m−1} = +1 only */
            long hits = 0, half = 1L << (m - 1);
            for (long mask = 0; mask < half; mask++) {
                double sum = D[m - 1];
                for (int j = 0; j < m - 1; j++) sum += (mask >> j & 1) ? -D[j] : D[j];
                hits += fabs(sum) >= target;
            }
            p = (double)hits / (double)half;
        } else {
            const long M = 1L << 20;
            Rng g;
            rng_seed(&g, 0, STATS_RNG_SIGNFLIP, 0);
            long hits = 0;
            for (long k = 0; k < M; k++) {
                double sum = 0;
                uint64_t bits = 0;
                for (int j = 0; j < m; j++) {
                    if (j % 64 == 0) bits = rng_u64(&g);
                    sum += (bits >> (j % 64) & 1) ? -D[j] : D[j];
                }
                hits += fabs(sum) >= target;
            }
            p = (double)(1 + hits) / (double)(1 + M);
        }
    }
    free(D);
    return p;
}

/* ---- bootstrap ---- */

/* Binomial(n, p) draws by inversion from the mode outwards (Devroye 1986, §X.4: sequential search in
 * the order m, m+1, m−1, m+2, ...; expected steps ~1.6 sd), with log n! from a table sized once. */
typedef struct BinP { double p, lp, lq, odds; int flip; } BinP; /* p ≤ 1/2 after flip */

static BinP binp_make(double p) {
    BinP b = {.flip = p > 0.5};
    b.p = b.flip ? 1 - p : p;
    if (b.p > 0) {
        b.lp = log(b.p);
        b.lq = log1p(-b.p);
        b.odds = b.p / (1 - b.p);
    }
    return b;
}

static long binom_draw(Rng *g, long n, const BinP *bp, const double *lfact) {
    if (n == 0 || bp->p <= 0) return bp->flip ? n : 0;
    long m = (long)((double)(n + 1) * bp->p), x = -1;
    if (m > n) m = n;
    double f = exp(lfact[n] - lfact[m] - lfact[n - m] + (double)m * bp->lp + (double)(n - m) * bp->lq);
    double u = rng_uniform_d(g);
    if (u < f) x = m;
    else {
        u -= f;
        long lo = m, hi = m;
        double flo = f, fhi = f;
        while (x < 0) {
            if (hi < n) {
                fhi *= (double)(n - hi) / (double)(hi + 1) * bp->odds;
                hi++;
                if (u < fhi) { x = hi; break; }
                u -= fhi;
            }
            if (lo > 0) {
                flo *= (double)lo / (double)(n - lo + 1) / bp->odds;
                lo--;
                if (u < flo) { x = lo; break; }
                u -= flo;
            }
            if (hi == n && lo == 0) x = m; /* u fell in the rounding residue (probability ~1e-15) */
        }
    }
    return bp->flip ? n - x : x;
}

typedef struct BootSeed {
    long n, b, c;   /* examples, discordant counts */
    double D, w;    /* (b − c)/n and the plug-in variance of its resample: ((b + c)/n − D²)/n */
    BinP disc, dir; /* P(discordant) = (b + c)/n; P(only A | discordant) = b/(b + c) */
} BootSeed;

/* Nested design. One replicate: m seeds drawn with replacement; drawn seed s contributes
 * Dbar + cfac (D_s − Dbar) + (D*_s − D_s), where D*_s comes from n_s pairs drawn with replacement. The n_s
 * draws enter only through the counts of (1,0) and (0,1) pairs among them, a multinomial: drawn as
 * Mdisc ~ Binomial(n_s, (b+c)/n_s), then #(1,0) ~ Binomial(Mdisc, b/(b+c)) -- the same distribution as
 * drawing n_s indices, in O(sd) instead of O(n_s). */
static double boot_nested(const StatsSeed *seeds, int S, const StatsBootOpts *o, long R, double *rep) {
    BootSeed *bs = xmalloc(((size_t)S + 1) * sizeof(BootSeed)); /* (m) */
    int m = 0;
    long nmax = 0;
    double Dbar = 0;
    for (int s = 0; s < S; s++) {
        if (seeds[s].n == 0) continue;
        StatsCounts t = stats_count(seeds[s].a, seeds[s].b, seeds[s].n);
        BootSeed *q = &bs[m++];
        q->n = t.n;
        q->b = t.only_a;
        q->c = t.only_b;
        q->D = (double)(q->b - q->c) / (double)q->n;
        q->w = ((double)(q->b + q->c) / (double)q->n - q->D * q->D) / (double)q->n;
        q->disc = binp_make((double)(q->b + q->c) / (double)q->n);
        q->dir = binp_make(q->b + q->c ? (double)q->b / (double)(q->b + q->c) : 0);
        if (q->n > nmax) nmax = q->n;
        Dbar += q->D;
    }
    CHECK(m > 0);
    Dbar /= m;
    /* cfac² · (1/m) sum (D_s − Dbar)² = tau² where tau² = max(0, s_D² − mean w_s), s_D² with divisor m − 1:
     * then Var*(replicate) = (tau² + mean w_s)/m, the moment estimate of Var(Dbar) */
    double ss = 0, wbar = 0, cfac = 1;
    for (int j = 0; j < m; j++) {
        ss += (bs[j].D - Dbar) * (bs[j].D - Dbar);
        wbar += bs[j].w;
    }
    wbar /= m;
    if (!o->plain && m > 1) {
        double tau2 = ss / (m - 1) - wbar;
        cfac = ss > 0 && tau2 > 0 ? sqrt(m * tau2 / ss) : 0;
    }
    double *lfact = xmalloc(((size_t)nmax + 1) * sizeof(double)); /* (nmax+1) log k! */
    for (long k = 0; k <= nmax; k++) lfact[k] = lgamma((double)k + 1);
    for (long r = 0; r < R; r++) {
        Rng g;
        rng_seed(&g, o->seed, STATS_RNG_BOOT, (uint64_t)r);
        double acc = 0;
        for (int j = 0; j < m; j++) {
            const BootSeed *q = &bs[stats_below(&g, (uint32_t)m)];
            long md = binom_draw(&g, q->n, &q->disc, lfact);
            long b1 = binom_draw(&g, md, &q->dir, lfact);
            double Dstar = (double)(2 * b1 - md) / (double)q->n;
            acc += Dbar + cfac * (q->D - Dbar) + (Dstar - q->D);
        }
        rep[r] = acc / m;
    }
    free(lfact);
    free(bs);
    return Dbar;
}

/* Crossed design (every seed on the same n examples). Y_si = a_si − b_si = Ybar + r_s + c_i + e_si (two-way
 * ANOVA without replication). One replicate draws S seed indices and n example indices with replacement
 * (the pigeonhole bootstrap, Owen 2007) and returns Ybar + alpha r̄* + beta c̄* + gamma ē*, the three
 * parts of the drawn grid's mean deviation rescaled so that Var* = (MS_r + MS_c − MS_e)/(S n) with each
 * variance component truncated at 0 (docs/statistics.md). */
static double boot_crossed(const StatsSeed *seeds, int S, const StatsBootOpts *o, long R, double *rep) {
    long n = seeds[0].n;
    for (int s = 0; s < S; s++) CHECK(seeds[s].n == n);
    CHECK(n > 0 && n <= (long)UINT32_MAX && S <= 1 << 20);
    int8_t *Y = xmalloc((size_t)n * (size_t)S);           /* (n, S) */
    double *row = xcalloc((size_t)S, sizeof(double));     /* (S) seed means */
    double *col = xcalloc((size_t)n, sizeof(double));     /* (n) example means */
    long *mult = xmalloc((size_t)S * sizeof(long));       /* (S) multiplicity of each seed in a replicate */
    double Ybar = 0;
    for (long i = 0; i < n; i++)
        for (int s = 0; s < S; s++) {
            CHECK(seeds[s].a[i] <= 1 && seeds[s].b[i] <= 1);
            int8_t y = (int8_t)((int)seeds[s].a[i] - (int)seeds[s].b[i]);
            Y[i * S + s] = y;
            row[s] += y;
            col[i] += y;
            Ybar += y;
        }
    for (int s = 0; s < S; s++) row[s] /= (double)n;
    for (long i = 0; i < n; i++) col[i] /= (double)S;
    Ybar /= (double)S * (double)n;
    double alpha = 1, beta = 1, gamma = 1;
    if (!o->plain && S > 1 && n > 1) {
        double ssr = 0, ssc = 0, sse = 0;
        for (int s = 0; s < S; s++) ssr += (row[s] - Ybar) * (row[s] - Ybar);
        for (long i = 0; i < n; i++) {
            ssc += (col[i] - Ybar) * (col[i] - Ybar);
            for (int s = 0; s < S; s++) {
                double e = Y[i * S + s] - row[s] - col[i] + Ybar;
                sse += e * e;
            }
        }
        double msr = (double)n * ssr / (S - 1), msc = (double)S * ssc / (double)(n - 1);
        double mse = sse / ((double)(S - 1) * (double)(n - 1));
        double tau2 = fmax(0, (msr - mse) / (double)n), sm2 = fmax(0, (msc - mse) / S);
        alpha = ssr > 0 ? sqrt(S * tau2 / ssr) : 0;
        beta = ssc > 0 ? sqrt((double)n * sm2 / ssc) : 0;
        gamma = sqrt((double)S * (double)n / ((double)(S - 1) * (double)(n - 1)));
    }
    for (long r = 0; r < R; r++) {
        Rng g;
        rng_seed(&g, o->seed, STATS_RNG_BOOT, (uint64_t)r);
        memset(mult, 0, (size_t)S * sizeof(long));
        double rowsum = 0;
        for (int j = 0; j < S; j++) {
            uint32_t s = stats_below(&g, (uint32_t)S);
            mult[s]++;
            rowsum += row[s];
        }
        long grid = 0;
        double colsum = 0;
        for (long k = 0; k < n; k++) {
            uint32_t i = stats_below(&g, (uint32_t)n);
            const int8_t *y = Y + (size_t)i * (size_t)S;
            for (int s = 0; s < S; s++) grid += mult[s] * y[s];
            colsum += col[i];
        }
        double raw = (double)grid / ((double)S * (double)n), rowm = rowsum / S, colm = colsum / (double)n;
        rep[r] = Ybar + alpha * (rowm - Ybar) + beta * (colm - Ybar) + gamma * (raw - rowm - colm + Ybar);
    }
    free(mult);
    free(col);
    free(row);
    free(Y);
    return Ybar;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* quantile q of sorted x (R): linear interpolation at position (R − 1) q (Hyndman & Fan 1996, type 7) */
static double quantile_sorted(const double *x, long R, double q) {
    double h = (double)(R - 1) * q;
    long i = (long)floor(h);
    if (i >= R - 1) return x[R - 1];
    return x[i] + (h - (double)i) * (x[i + 1] - x[i]);
}

StatsInterval stats_bootstrap_diff(const StatsSeed *seeds, int S, const StatsBootOpts *opt) {
    StatsBootOpts o = opt ? *opt : (StatsBootOpts){0};
    long R = o.reps > 0 ? o.reps : 2000;
    double level = o.level > 0 ? o.level : 0.95;
    CHECK(S >= 0 && level < 1 && (o.design == STATS_NESTED || o.design == STATS_CROSSED));
    int m = 0;
    for (int s = 0; s < S; s++) m += seeds[s].n > 0;
    if (m == 0) return (StatsInterval){0, -1, 1};
    double *rep = xmalloc((size_t)R * sizeof(double)); /* (R) replicate values */
    StatsInterval out;
    out.est = o.design == STATS_CROSSED ? boot_crossed(seeds, S, &o, R, rep) : boot_nested(seeds, S, &o, R, rep);
    xqsort(rep, (size_t)R, sizeof(double), cmp_double);
    out.lo = quantile_sorted(rep, R, (1 - level) / 2);
    out.hi = quantile_sorted(rep, R, (1 + level) / 2);
    free(rep);
    return out;
}

/* ---- report helpers ---- */

double stats_mean(const double *x, long n) {
    CHECK(n >= 0);
    if (n == 0) return NAN;
    double s = 0;
    for (long i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

double stats_sd(const double *x, long n) {
    CHECK(n >= 0);
    if (n < 2) return NAN;
    double mu = stats_mean(x, n), ss = 0;
    for (long i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
    return sqrt(ss / (double)(n - 1));
}

int stats_masking_seeds(const StatsSeed *seeds, int S, int direction, double min_gap, double alpha) {
    CHECK(S >= 0 && (direction == 1 || direction == -1));
    int k = 0;
    for (int s = 0; s < S; s++) {
        if (seeds[s].n == 0) continue;
        StatsCounts t = stats_count(seeds[s].a, seeds[s].b, seeds[s].n);
        double gap = (double)(t.robust_a - t.robust_b) / (double)t.n;
        if (direction * gap > min_gap && stats_mcnemar_exact(t.only_a, t.only_b) < alpha) k++;
    }
    return k;
}
