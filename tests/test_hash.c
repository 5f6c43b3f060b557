/* test_hash.c -- retrieval metrics and the DPSH loss against independent oracles. */
#include <stdlib.h>
#include <string.h>

#include "harness/core.h"
#include "harness/hash.h"
#include "tests/test.h"

/* brute force: full distance list, stable sort by (distance, index) with qsort, AP as in §5 */
typedef struct { int d, i; } DI;
static int cmp_di(const void *a, const void *b) {
    const DI *x = a, *y = b;
    return x->d != y->d ? x->d - y->d : x->i - y->i;
}
static double brute_map(const uint64_t *q, const int32_t *qy, int nq, const uint64_t *db, const int32_t *dy, int nd, int topk) {
    DI *v = xmalloc(sizeof(DI) * nd);
    double s = 0;
    for (int a = 0; a < nq; a++) {
        for (int d = 0; d < nd; d++) {
            int h = 0;
            for (int k = 0; k < 64; k++) h += ((q[a] >> k) & 1) != ((db[d] >> k) & 1);
            v[d] = (DI){h, d};
        }
        qsort(v, nd, sizeof(DI), cmp_di);
        int m = topk > 0 && topk < nd ? topk : nd;
        double hits = 0, ap = 0;
        for (int r = 0; r < m; r++)
            if (dy[v[r].i] == qy[a]) { hits++; ap += hits / (r + 1); }
        s += hits ? ap / hits : 0;
    }
    free(v);
    return s / nq;
}

TEST(hash_map_matches_brute_force_on_random_codes) {
    Rng r;
    rng_seed(&r, 1, 1, 1);
    enum { NQ = 40, ND = 500, K = 12 };
    uint64_t q[NQ], db[ND];
    int32_t qy[NQ], dy[ND];
    for (int i = 0; i < NQ; i++) { q[i] = rng_u64(&r) & ((1ULL << K) - 1); qy[i] = (int32_t)rng_below(&r, 5); }
    for (int i = 0; i < ND; i++) { db[i] = rng_u64(&r) & ((1ULL << K) - 1); dy[i] = (int32_t)rng_below(&r, 5); }
    for (int topk = 0; topk <= 100; topk += 50) {
        double got = hash_map(q, qy, NQ, db, dy, ND, K, topk, 0, NULL, NULL), want = brute_map(q, qy, NQ, db, dy, ND, topk);
        T_NEAR(got, want, 1e-12);
    }
}

TEST(hash_map_hand_made_cases) {
    /* all relevant items first -> 1.0 */
    uint64_t q[1] = {0}, db[4] = {0, 0, 0xF, 0xF};
    int32_t qy[1] = {1}, dy[4] = {1, 1, 2, 2};
    T_NEAR(hash_map(q, qy, 1, db, dy, 4, 4, 0, 0, NULL, NULL), 1.0, 1e-12);
    /* ties keep database order: the irrelevant item at distance 0 comes first -> AP = (1/2 + 2/3)/2 */
    int32_t dy2[4] = {3, 1, 1, 2};
    uint64_t db2[4] = {0, 0, 0, 0xF};
    T_NEAR(hash_map(q, qy, 1, db2, dy2, 4, 4, 0, 0, NULL, NULL), (0.5 + 2.0 / 3) / 2, 1e-12);
    /* no relevant item: 0, and it still counts in the mean */
    uint64_t q2[2] = {0, 0};
    int32_t qy2[2] = {1, 7};
    T_NEAR(hash_map(q2, qy2, 2, db, dy, 4, 4, 0, 0, NULL, NULL), 0.5, 1e-12);
    /* precision@N */
    double p;
    hash_map(q, qy, 1, db2, dy2, 4, 4, 0, 2, &p, NULL);
    T_NEAR(p, 0.5, 1e-12);
}

static void wrong_map(void) {
    uint64_t q[1] = {0}, db[2] = {0, 1};
    int32_t qy[1] = {1}, dy[2] = {2, 1};
    T_NEAR(hash_map(q, qy, 1, db, dy, 2, 4, 0, 0, NULL, NULL), 1.0, 1e-12); /* the relevant item is second: AP 0.5 */
}
TEST(hash_map_checker_canary) { T_ASSERT(test_expect_failure(wrong_map)); }

TEST(hash_dpsh_gradient_matches_finite_differences) {
    enum { N = 6, K = 5 };
    float u[N * K], du[N * K];
    int32_t y[N] = {0, 1, 0, 2, 1, 0};
    Rng r;
    rng_seed(&r, 3, 3, 3);
    for (int i = 0; i < N * K; i++) u[i] = 1.8f * rng_uniform(&r) - 0.9f;
    for (int i = 0; i < N * K; i++) if (fabsf(u[i]) < 0.05f) u[i] = 0.3f; /* away from sign's jump */
    double eta = 0.1;
    dpsh_loss(u, y, N, K, eta, du);
    double want[N * K];
    for (int i = 0; i < N * K; i++) {
        float s = u[i];
        const float h = 1e-3f;
        u[i] = s + h;
        double lp = dpsh_loss(u, y, N, K, eta, NULL);
        u[i] = s - h;
        double lm = dpsh_loss(u, y, N, K, eta, NULL);
        u[i] = s;
        want[i] = (lp - lm) / (2.0 * h);
    }
    /* the loss is computed in double from float inputs: FD error ~ h^2 and 1e-16/h, tolerance 1e-4 */
    T_ALLCLOSE("dpsh du", du, want, N * K, 1e-4, 1e-3);
    double nz = 0;
    for (int i = 0; i < N * K; i++) nz += fabs(du[i]);
    T_ASSERT(nz > 1e-3);
}

TEST(hash_splits_follow_the_protocol) {
    Dataset tr, te, q, db, t;
    T_ASSERT(dataset_open("synthetic:600", NULL, SPLIT_TRAIN, &tr) == 0);
    T_ASSERT(dataset_open("synthetic:600", NULL, SPLIT_TEST, &te) == 0);
    T_ASSERT(hash_splits(&tr, &te, 10, 200, 5, &q, &db, &t) == 0);
    T_EQ_INT(q.n, 10 * tr.classes);
    T_EQ_INT(db.n, tr.n + te.n - q.n);
    T_EQ_INT(t.n, 200);
    int per[100] = {0};
    for (int i = 0; i < q.n; i++) per[q.y[i]]++;
    for (int c = 0; c < tr.classes; c++) T_EQ_INT(per[c], 10);
    dataset_close(&q); dataset_close(&db); dataset_close(&t);
    T_ASSERT(hash_splits(&tr, &te, 100000, 0, 5, &q, &db, &t) < 0);
    T_CONTAINS(err_msg(), "fewer than");
    dataset_close(&tr); dataset_close(&te);
}
