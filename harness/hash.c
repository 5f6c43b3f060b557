/* hash.c -- see hash.h */
#include "harness/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"

static double softplus(double t) { return t > 0 ? t + log1p(exp(-t)) : log1p(exp(t)); }
static double sigmoid(double t) { return t >= 0 ? 1 / (1 + exp(-t)) : exp(t) / (1 + exp(t)); }

double dpsh_loss(const float *u, const int32_t *y, int n, int K, double eta, float *du) {
    double pair = 0, quant = 0, np = n > 1 ? (double)n * (n - 1) : 1;
    if (du) memset(du, 0, sizeof(float) * (size_t)n * K);
    for (int i = 0; i < n; i++) {
        const float *ui = u + (long)i * K;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            const float *uj = u + (long)j * K;
            double th = 0;
            for (int k = 0; k < K; k++) th += (double)ui[k] * uj[k];
            th *= 0.5;
            double s = y[i] == y[j];
            pair += softplus(th) - s * th;
            if (du) {
                float g = (float)((sigmoid(th) - s) / np);
                float *di = du + (long)i * K;
                for (int k = 0; k < K; k++) di[k] += g * uj[k];
            }
        }
        for (int k = 0; k < K; k++) {
            double b = ui[k] >= 0 ? 1.0 : -1.0, d = b - ui[k];
            quant += d * d;
            if (du) du[(long)i * K + k] += (float)(2 * eta / ((double)n * K) * (ui[k] - b));
        }
    }
    return pair / np + eta * quant / ((double)n * K);
}

void hash_pack(const float *u, int n, int K, uint64_t *codes) {
    CHECK(K >= 1 && K <= 64);
    for (int i = 0; i < n; i++) {
        uint64_t c = 0;
        for (int k = 0; k < K; k++)
            if (u[(long)i * K + k] >= 0) c |= 1ULL << k;
        codes[i] = c;
    }
}

double hash_map(const uint64_t *q, const int32_t *qy, int nq, const uint64_t *db, const int32_t *dy, int nd, int K,
                int topk, int prec_n, double *prec, float *ap_out) {
    if (topk <= 0 || topk > nd) topk = nd;
    int *order = xmalloc(sizeof(int) * (size_t)(nd ? nd : 1));
    uint8_t *dist = xmalloc((size_t)(nd ? nd : 1));
    double sum_ap = 0, sum_prec = 0;
    for (int a = 0; a < nq; a++) {
        int count[66] = {0};
        for (int d = 0; d < nd; d++) {
            dist[d] = (uint8_t)__builtin_popcountll(q[a] ^ db[d]);
            count[dist[d] + 1]++;
        }
        for (int h = 1; h <= K + 1; h++) count[h] += count[h - 1];
        for (int d = 0; d < nd; d++) order[count[dist[d]]++] = d; /* stable: database order within a distance */
        double hits = 0, ap = 0;
        for (int r = 0; r < topk; r++)
            if (dy[order[r]] == qy[a]) { hits++; ap += hits / (r + 1); }
        sum_ap += hits > 0 ? ap / hits : 0;
        if (ap_out) ap_out[a] = (float)(hits > 0 ? ap / hits : 0);
        if (prec && prec_n > 0) {
            int m = prec_n < nd ? prec_n : nd, rel = 0;
            for (int r = 0; r < m; r++) rel += dy[order[r]] == qy[a];
            sum_prec += (double)rel / prec_n;
        }
    }
    free(order);
    free(dist);
    if (prec) *prec = nq ? sum_prec / nq : 0;
    return nq ? sum_ap / nq : 0;
}

static void take(const Dataset *tr, const Dataset *te, const int *idx, int n, Dataset *out, const char *what) {
    memset(out, 0, sizeof *out);
    *out = *tr;
    snprintf(out->name, sizeof out->name, "%.40s/%s", tr->name, what);
    int D = dataset_dim(tr);
    out->n = n;
    out->x = xmalloc(sizeof(float) * (size_t)(n ? n : 1) * D);
    out->y = xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        int j = idx[i];
        const Dataset *src = j < tr->n ? tr : te;
        int k = j < tr->n ? j : j - tr->n;
        memcpy(out->x + (long)i * D, src->x + (long)k * D, sizeof(float) * D);
        out->y[i] = src->y[k];
    }
}

int hash_splits(const Dataset *train, const Dataset *test, int per_class, int n_train, uint64_t seed,
                Dataset *query, Dataset *database, Dataset *training) {
    if (dataset_dim(train) != dataset_dim(test) || train->classes != test->classes)
        return err_set("%s: train and test splits differ in shape or classes", train->name);
    int n = train->n + test->n, K = train->classes;
    int *perm = xmalloc(sizeof(int) * n), *qi = xmalloc(sizeof(int) * n), *di = xmalloc(sizeof(int) * n);
    int *taken = xcalloc((size_t)K, sizeof(int));
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r;
    rng_seed(&r, seed, RNG_HASH, 0);
    rng_shuffle(&r, perm, n);
    int nq = 0, nd = 0;
    for (int t = 0; t < n; t++) {
        int j = perm[t], y = j < train->n ? train->y[j] : test->y[j - train->n];
        if (taken[y] < per_class) { taken[y]++; qi[nq++] = j; }
        else di[nd++] = j;
    }
    for (int c = 0; c < K; c++)
        if (taken[c] < per_class) {
            free(perm); free(qi); free(di); free(taken);
            return err_set("%s: class %d has fewer than %d examples for the query set; lower --queries-per-class", train->name, c, per_class);
        }
    /* database in pool order (stable ranking ties are then reproducible), training sampled from it */
    char *isdb = xcalloc((size_t)n, 1);
    for (int i = 0; i < nd; i++) isdb[di[i]] = 1;
    nd = 0;
    for (int j = 0; j < n; j++) if (isdb[j]) di[nd++] = j;
    free(isdb);
    take(train, test, qi, nq, query, "query");
    take(train, test, di, nd, database, "database");
    int nt = n_train > 0 && n_train < nd ? n_train : nd;
    int *ti = xmalloc(sizeof(int) * nd);
    memcpy(ti, di, sizeof(int) * nd);
    rng_seed(&r, seed, RNG_HASH, 1);
    rng_shuffle(&r, ti, nd);
    take(train, test, ti, nt, training, "train");
    free(ti); free(perm); free(qi); free(di); free(taken);
    return 0;
}
