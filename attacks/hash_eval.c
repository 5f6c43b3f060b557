/* hash_eval.c -- attacking deep-hashing retrieval: the queries are attacked, the database stays clean,
 * and the attacked queries' mAP is scored against it (attack_hash_evaluate). See attack.h. */
#include "attacks/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/evalrun.h"
#include "harness/hash.h"
#include "harness/loss.h"
#include "harness/train.h"

/* centers (C, K): sign of the mean database code of each class (sign(0) = +1), from packed codes. */
static void class_centers(const uint64_t *codes, const int32_t *y, int nd, int C, int K, float *centers) {
    long *sum = xcalloc((size_t)C * K, sizeof(long));
    for (int d = 0; d < nd; d++)
        for (int k = 0; k < K; k++) sum[(size_t)y[d] * K + k] += (codes[d] >> k) & 1 ? 1 : -1;
    for (long j = 0; j < (long)C * K; j++) centers[j] = sum[j] >= 0 ? 1.0f : -1.0f;
    free(sum);
}

/* rows (n, K) of +-1 from the outputs (n, K): the code bits as floats */
static void codes_from_out(const float *out, int n, int K, float *rows) {
    for (long j = 0; j < (long)n * K; j++) rows[j] = out[j] >= 0.0f ? 1.0f : -1.0f;
}

int attack_hash_evaluate(Model *target, Model *crafter, const Dataset *q, const Dataset *db, const uint64_t *db_codes,
                         int limit, int topk, const AttackParams *p, AttackStepHook hook, void *hook_ctx,
                         EvalCounts *c, HashCounts *h) {
    return attack_hash_evaluate_ex(target, crafter, q, db, db_codes, limit, topk, p, hook, hook_ctx, c, h, NULL, NULL);
}

int attack_hash_evaluate_ex(Model *target, Model *crafter, const Dataset *q, const Dataset *db, const uint64_t *db_codes,
                         int limit, int topk, const AttackParams *p, AttackStepHook hook, void *hook_ctx,
                         EvalCounts *c, HashCounts *h, float *ap_clean, float *ap_adv) {
    if (!crafter) crafter = target;
    const AttackInfo *ai = attack_info(p);
    CHECK(ai && p->objective == OBJ_HASH && p->kind != ATK_SQUARE);
    const int D = model_in_dim(target), K = model_out_dim(target);
    if (!str_eq(target->spec.head, "hash"))
        return err_set("the attacked model has head '%s'; hashing attacks need a hashing model (--task hash)", target->spec.head);
    if (K < 1 || K > 64) return err_set("hashing model with %d bits; codes are at most 64 bits", K);
    if (crafter != target && (!str_eq(crafter->spec.head, "hash") || model_out_dim(crafter) != K || model_in_dim(crafter) != D))
        return err_set("%s: the surrogate must be a hashing model with the target's input and %d bits", p->transfer_ckpt, K);
    if (dataset_dim(q) != D || dataset_dim(db) != D || q->c != target->spec.in_c)
        return err_set("%s: examples are %dx%dx%d but the model expects %dx%dx%d", q->name, q->c, q->h, q->w,
                       target->spec.in_c, target->spec.in_h, target->spec.in_w);
    if (q->classes != db->classes) return err_set("%s and %s have different class counts", q->name, db->name);
    const int C = db->classes;
    if (p->targeted && C < 2) return err_set("%s: a targeted hashing attack needs at least 2 classes", db->name);
    int N = limit > 0 && limit < q->n ? limit : q->n;
    memset(c, 0, sizeof *c);
    memset(h, 0, sizeof *h);
    h->bits = K;
    h->topk = topk;
    h->n_db = db->n;
    h->map_clean = h->map_adv = h->prec_clean = h->prec_adv = h->tmap_clean = h->tmap_adv = NAN;
    if (N <= 0) return 0;
    for (int i = 0; i < N; i++)
        if (q->y[i] < 0 || q->y[i] >= C) return err_set("%s: query %d has label %d outside 0..%d", q->name, i, q->y[i], C - 1);
    int cap = p->batch > 0 ? p->batch : 256;
    if (cap > N) cap = N;

    const uint64_t h_target = attack_model_hash(target), h_crafter = attack_model_hash(crafter);
    const uint64_t fb_target = target->fb_count, fb_crafter = crafter->fb_count;
    /* reference codes by query index: on the target (to score success) and on the crafter (to attack) */
    float *ref_t = xmalloc(sizeof(float) * (size_t)N * K);
    float *ref_c = crafter == target ? ref_t : xmalloc(sizeof(float) * (size_t)N * K);
    int32_t *tcls = NULL;
    if (p->targeted) {
        tcls = xmalloc(sizeof(int32_t) * (size_t)N);
        for (int i = 0; i < N; i++) {
            Rng r;
            rng_seed(&r, p->seed, RNG_HASH, (1ULL << 32) + (uint64_t)i);
            tcls[i] = (int32_t)((q->y[i] + 1 + (int)rng_below(&r, (uint32_t)(C - 1))) % C);
        }
        float *cen = xmalloc(sizeof(float) * (size_t)C * K);
        class_centers(db_codes, db->y, db->n, C, K, cen);
        for (int i = 0; i < N; i++) memcpy(ref_t + (size_t)i * K, cen + (size_t)tcls[i] * K, sizeof(float) * K);
        if (ref_c != ref_t) {
            uint64_t *cc = xmalloc(sizeof(uint64_t) * (size_t)(db->n + 1));
            model_codes(crafter, db, cap, cc);
            class_centers(cc, db->y, db->n, C, K, cen);
            for (int i = 0; i < N; i++) memcpy(ref_c + (size_t)i * K, cen + (size_t)tcls[i] * K, sizeof(float) * K);
            free(cc);
        }
        free(cen);
    }
    HashObjective ho_c = {ref_c, N}, ho_t = {ref_t, N};
    Work *wt = work_take(target, cap), *wc = crafter == target ? wt : work_take(crafter, cap);
    work_fix_weights(wt, 1); /* checked below: attacks never change a model */
    work_fix_weights(wc, 1);
    AttackScratch *s = attack_scratch_create(crafter, cap);
    s->hook = hook;
    s->hook_ctx = hook_ctx;
    s->objective = attack_objective_hash;
    s->objective_ctx = &ho_c;
    float *x_adv = xmalloc(sizeof(float) * (size_t)cap * D), *loss_i = xmalloc(sizeof(float) * cap);
    uint8_t *ok = xmalloc((size_t)cap);
    uint64_t *qc = xmalloc(sizeof(uint64_t) * (size_t)N), *qa = xmalloc(sizeof(uint64_t) * (size_t)N);
    AttackExample *ex = xcalloc((size_t)cap, sizeof *ex);
    double t0 = now_seconds(), sum_linf = 0, sum_l2 = 0, sum_loss = 0, sum_ham = 0;
    long n_success = 0;

    for (int b0 = 0; b0 < N; b0 += cap) {
        int nb = N - b0 < cap ? N - b0 : cap;
        const float *x = q->x + (size_t)b0 * D;
        const int32_t *y = q->y + b0;
        const float *out = model_forward(target, wt, x, nb, FWD_PREDICT);
        hash_pack(out, nb, K, qc + b0);
        if (!p->targeted) codes_from_out(out, nb, K, ref_t + (size_t)b0 * K);
        if (!p->targeted && ref_c != ref_t) codes_from_out(model_forward(crafter, wc, x, nb, FWD_PREDICT), nb, K, ref_c + (size_t)b0 * K);
        s->index0 = b0;
        ai->fn(crafter, wc, x, y, nb, p, x_adv, ex, s);
        out = model_forward(target, wt, x_adv, nb, FWD_PREDICT);
        hash_pack(out, nb, K, qa + b0);
        attack_objective_hash(&ho_t, p, out, y, nb, K, b0, loss_i, ok, NULL);
        for (int i = 0; i < nb; i++) {
            sum_loss += loss_i[i];
            n_success += ok[i];
            c->n_flipped += qa[b0 + i] != qc[b0 + i];
            sum_ham += __builtin_popcountll(qa[b0 + i] ^ qc[b0 + i]);
            c->n_zero_grad += ex[i].zero_grad;
            const float *xi = x + (size_t)i * D, *xa = x_adv + (size_t)i * D;
            add_perturbation_norms(xi, xa, D, &sum_linf, &sum_l2);
        }
        attack_progress(p, b0 + nb, N);
    }
    c->n = N;
    c->n_clean_ok = N;
    c->n_robust_ok = N - n_success;
    c->mean_linf = sum_linf / N;
    c->mean_l2 = sum_l2 / N;
    c->mean_loss = sum_loss / N;
    h->mean_hamming = sum_ham / N;
    h->map_clean = hash_map(qc, q->y, N, db_codes, db->y, db->n, K, topk, HASH_PREC_N, &h->prec_clean, ap_clean);
    h->map_adv = hash_map(qa, q->y, N, db_codes, db->y, db->n, K, topk, HASH_PREC_N, &h->prec_adv, ap_adv);
    if (p->targeted) {
        h->tmap_clean = hash_map(qc, tcls, N, db_codes, db->y, db->n, K, topk, 0, NULL, NULL);
        h->tmap_adv = hash_map(qa, tcls, N, db_codes, db->y, db->n, K, topk, 0, NULL, NULL);
    }
    c->seconds = now_seconds() - t0;

    CHECK(attack_model_hash(target) == h_target);
    CHECK(attack_model_hash(crafter) == h_crafter);
    target->fb_count = fb_target;
    crafter->fb_count = fb_crafter;

    free(x_adv); free(loss_i); free(ok); free(qc); free(qa); free(ex); free(tcls);
    if (ref_c != ref_t) free(ref_c);
    free(ref_t);
    attack_scratch_free(s);
    if (wc != wt) work_give(crafter, wc);
    work_give(target, wt);
    return 0;
}
