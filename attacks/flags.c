/* flags.c -- see flags.h */
#include "attacks/flags.h"

#include <math.h>
#include <string.h>

/* the score an attack drives down: robust accuracy, or the attacked mAP for hashing, in points */
static double robust_pts(const AttackResult *r) {
    if (r->p.objective == OBJ_HASH) return 100.0 * r->h.map_adv;
    return r->c.n ? 100.0 * r->c.n_robust_ok / r->c.n : 0;
}
static int same_eps(const AttackParams *a, const AttackParams *b) { return fabs(a->eps - b->eps) < 1e-12; }
static int white_box(const AttackParams *p) { return p->kind != ATK_SQUARE && p->grad_source != GRAD_TRANSFER; }

unsigned attack_flags(const AttackResult *r, int n, int i) {
    CHECK(i >= 0 && i < n);
    const AttackParams *p = &r[i].p;
    const double acc = robust_pts(&r[i]);
    unsigned f = 0;
    if (r[i].c.n_zero_grad > 0) f |= MASK_ZERO_GRAD;
    if (p->eps == 0 && (p->objective == OBJ_HASH ? r[i].h.map_adv != r[i].h.map_clean : r[i].c.n_robust_ok != r[i].c.n_clean_ok))
        f |= MASK_EPS0;
    for (int j = 0; j < n; j++) {
        if (j == i || r[j].p.objective != p->objective) continue;
        const AttackParams *q = &r[j].p;
        const double other = robust_pts(&r[j]);
        if (p->grad_source == GRAD_FEEDBACK && q->grad_source == GRAD_TRUE && p->kind == q->kind &&
            p->norm == q->norm && same_eps(p, q) && p->steps == q->steps && p->restarts == q->restarts &&
            p->targeted == q->targeted && acc > other + MASK_FEEDBACK_POINTS)
            f |= MASK_FEEDBACK_GAP;
        if (!white_box(p) && white_box(q) && p->norm == q->norm && same_eps(p, q) && p->targeted == q->targeted &&
            acc < other - MASK_BLACKBOX_POINTS) {
            /* compare with the strongest white-box result at this eps */
            double best = other;
            for (int k = 0; k < n; k++)
                if (white_box(&r[k].p) && r[k].p.objective == p->objective && r[k].p.norm == p->norm && same_eps(&r[k].p, p) &&
                    r[k].p.targeted == p->targeted && robust_pts(&r[k]) < best)
                    best = robust_pts(&r[k]);
            if (acc < best - MASK_BLACKBOX_POINTS) f |= MASK_BLACKBOX_STRONGER;
        }
        if (p->kind == ATK_PGD && q->kind == ATK_PGD && p->norm == q->norm && q->eps < p->eps &&
            !same_eps(p, q) && p->grad_source == q->grad_source && str_eq(p->transfer_ckpt, q->transfer_ckpt) &&
            p->steps == q->steps && p->restarts == q->restarts && str_eq(p->alpha_text, q->alpha_text) &&
            p->targeted == q->targeted && p->target == q->target && acc > other + MASK_RISE_POINTS)
            f |= MASK_EPS_RISE;
    }
    return f;
}

void attack_flags_text(unsigned flags, char *out, size_t cap) {
    static const struct { unsigned bit; const char *name; } N[] = {
        {MASK_FEEDBACK_GAP, "feedback-gap"}, {MASK_BLACKBOX_STRONGER, "blackbox-stronger"},
        {MASK_EPS_RISE, "eps-rise"},         {MASK_ZERO_GRAD, "zero-grad"},
        {MASK_EPS0, "eps0-mismatch"},
    };
    CHECK(cap > 0);
    out[0] = 0;
    for (size_t i = 0; i < ARRAY_LEN(N); i++) {
        if (!(flags & N[i].bit)) continue;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", l ? "," : "", N[i].name);
    }
}
