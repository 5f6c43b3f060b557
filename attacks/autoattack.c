/* autoattack.c -- AutoAttack (Croce & Hein, ICML 2020; fra31/auto-attack's run_standard_evaluation):
 * an ensemble of parameter-free attacks run in sequence, each only on the examples still robust after
 * the ones before, so the robust accuracy is the per-example worst case over the components.
 *
 *   standard: APGD-CE (steps, restarts), APGD-T (targeted DLR, `targets` classes), FAB-T (`targets`
 *             classes), Square (`queries`, p_init), all with AutoAttack's defaults: 100 steps, 1 restart,
 *             9 targets, 5,000 queries, p_init 0.8 (cmd_attack supplies them; the struct carries them).
 *   rand:     APGD-CE and APGD-DLR with eot draws per gradient (AutoAttack: 20), for randomized
 *             gradients: here brSF's feedback, a fresh draw per backward.
 * Robustness is judged on the target model (under transfer every component crafts on the surrogate);
 * only examples the target classifies correctly are attacked, as AutoAttack does. Each component is an
 * AttackFn run through evalrun_attack on the still-robust indices, so its per-example streams (keyed by
 * the example's index) are the ones a standalone run of that component would use: the ensemble breaks
 * exactly the union of what its components break alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/evalrun.h"

int autoattack_stages(const AttackParams *p, AttackParams *comp) {
    CHECK(p->kind == ATK_AUTOATTACK);
    AttackParams b = *p;
    b.targeted = 0;
    b.target = -1;
    b.random_start = 1;
    b.alpha_text[0] = 0;
    b.alpha = 0;
    int n = 0;
    /* APGD-CE */
    comp[n] = b;
    comp[n].kind = ATK_APGD;
    comp[n].loss = LOSS_CE;
    n++;
    if (p->version == AA_STANDARD) {
        comp[n] = b; /* APGD-T */
        comp[n].kind = ATK_APGD;
        comp[n].loss = LOSS_DLR_T;
        n++;
        comp[n] = b; /* FAB-T: its first restart starts at x */
        comp[n].kind = ATK_FAB;
        comp[n].random_start = 0;
        n++;
        comp[n] = b; /* Square: no gradient */
        comp[n].kind = ATK_SQUARE;
        comp[n].steps = 0;
        comp[n].restarts = 1;
        comp[n].random_start = 0;
        comp[n].eot = 1;
        n++;
    } else {
        CHECK(p->version == AA_RAND);
        comp[n] = b; /* APGD-DLR */
        comp[n].kind = ATK_APGD;
        comp[n].loss = LOSS_DLR;
        n++;
    }
    CHECK(n <= AA_MAX_STAGES);
    for (int k = 0; k < n; k++) {
        AttackParams *c = &comp[k];
        c->stage = k + 1;
        if (c->kind != ATK_SQUARE) { c->queries = 0; c->p_init = 0; }
        if (c->kind == ATK_APGD) { snprintf(c->alpha_text, sizeof c->alpha_text, "r2"); c->alpha = 2 * c->eps; }
        if (!(c->kind == ATK_FAB || (c->kind == ATK_APGD && c->loss == LOSS_DLR_T))) c->targets = 0;
    }
    return n;
}

void autoattack_run(EvalRun *r, const AttackParams *p, EvalCounts *out, AttackStages *st) {
    AttackParams comp[AA_MAX_STAGES];
    const int n = autoattack_stages(p, comp);
    long *left = xmalloc(sizeof(long) * (size_t)r->N);
    int nleft = 0;
    for (int i = 0; i < r->N; i++)
        if (r->per[i].clean_ok) left[nleft++] = i;
    if (st) {
        memset(st, 0, sizeof *st);
        st->n = n;
    }
    long qmax = 0;
    for (int k = 0; k < n; k++) {
        double t0 = now_seconds();
        EvalSums sm = {0};
        const int attacked = nleft;
        if (nleft > 0) evalrun_attack(r, &comp[k], left, nleft, k + 1, &sm);
        int keep = 0;
        for (int j = 0; j < nleft; j++)
            if (r->per[left[j]].robust_ok) left[keep++] = left[j];
        nleft = keep;
        if (sm.queries_max > qmax) qmax = sm.queries_max;
        if (st) {
            st->p[k] = comp[k];
            evalrun_counts(r, &st->c[k]);
            st->c[k].seconds = now_seconds() - t0;
            st->c[k].queries_max = sm.queries_max;
            st->attacked[k] = attacked;
            st->broke[k] = attacked - nleft;
        }
    }
    evalrun_counts(r, out);
    out->queries_max = qmax;
    free(left);
}
