/* hash.h -- deep-hashing retrieval, the paper's second task (paper-notes §5).
 *
 * A hashing model ends in linear(K bits) + tanh (ModelSpec.head = "hash", classes = K); its output u in
 * (-1,1)^K is relaxed, the code is b = sign(u) with sign(0) = +1 (a code bit must be +-1), packed one
 * bit per dimension in a uint64_t (bit k set <=> b_k = +1; K <= 64). Hamming distance = popcount(a^b).
 *
 * DPSH loss (Li, Wang, Kang 2016), over the ordered pairs i != j of a batch, s_ij = [y_i == y_j]:
 *   theta_ij = u_i.u_j / 2
 *   L = 1/(n(n-1)) sum_{i!=j} [log(1 + e^theta_ij) - s_ij theta_ij]  +  eta/(nK) sum_i ||b_i - u_i||^2
 *   dL/du_i = 1/(n(n-1)) sum_{j!=i} (sigmoid(theta_ij) - s_ij) u_j  +  2 eta/(nK) (u_i - b_i)
 * (both terms are means, as common DPSH implementations do; with eta/n instead the quantisation term
 * outweighs the pairwise one K-fold and every example collapses to one code: measured mAP 0.10 = chance)
 * (b is treated as a constant: sign has zero gradient almost everywhere).
 *
 * mAP@topk (paper-notes §5): for each query rank the database by Hamming distance, ties keeping
 * database order (a stable counting sort); AP = mean over the relevant items in the top `topk` of
 * (relevant so far / rank); a query with no relevant item in its list scores 0 and still counts.
 * topk <= 0 means the whole database. precision@N: relevant among the first N, / N.
 * Not for: attacks on codes (attacks/), or training loops (train.c calls dpsh_loss).
 */
#ifndef CONCORD_HASH_H
#define CONCORD_HASH_H
#include <stdint.h>

#include "datasets/dataset.h"

double dpsh_loss(const float *u /* (n, K) */, const int32_t *y, int n, int K, double eta, float *du /* (n, K) or NULL */);
void hash_pack(const float *u /* (n, K) */, int n, int K, uint64_t *codes /* (n) */);
/* mean AP over the queries; prec (may be NULL) gets mean precision@prec_n; ap_out (may be NULL; nq) each
 * query's own AP */
double hash_map(const uint64_t *q, const int32_t *qy, int nq, const uint64_t *db, const int32_t *dy, int nd, int K,
                int topk, int prec_n, double *prec, float *ap_out);

/* The retrieval protocol's splits, from one pool (train split then test split of a dataset):
 * `per_class` queries of every class chosen with the seed; the database is the rest of the pool; the
 * training set is `n_train` examples sampled (with the seed) from the database (0 = all of it). */
int hash_splits(const Dataset *train, const Dataset *test, int per_class, int n_train, uint64_t seed,
                Dataset *query, Dataset *database, Dataset *training);
#endif
