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
/* standalone gradient attacks through the attacked model (AutoAttack contains Square, and its component
   rows carry cumulative counts: neither is compared as white-box or black-box) */
static int white_box(const AttackParams *p) {
    return p->kind != ATK_SQUARE && p->kind != ATK_AUTOATTACK && p->grad_source != GRAD_TRANSFER && p->stage == 0;
}
static int black_box(const AttackParams *p) {
    return (p->kind == ATK_SQUARE || p->grad_source == GRAD_TRANSFER) && p->kind != ATK_AUTOATTACK && p->stage == 0;
}
/* the same attack configuration apart from the gradient source */
static int same_config(const AttackParams *a, const AttackParams *b) {
    return a->kind == b->kind && a->norm == b->norm && same_eps(a, b) && a->steps == b->steps && a->restarts == b->restarts &&
           a->targeted == b->targeted && a->loss == b->loss && a->stage == b->stage && a->version == b->version &&
           a->targets == b->targets && a->queries == b->queries;
}
/* two rows of one AutoAttack run (its components and the ensemble row) */
static int same_aa_run(const AttackResult *a, const AttackResult *b) {
    const AttackParams *p = &a->p, *q = &b->p;
    return same_eps(p, q) && p->norm == q->norm && p->grad_source == q->grad_source &&
           str_eq(p->transfer_ckpt, q->transfer_ckpt) && p->version == q->version && p->seed == q->seed &&
           a->c.n == b->c.n && a->c.n_clean_ok == b->c.n_clean_ok;
}

unsigned attack_flags(const AttackResult *r, int n, int i) { return attack_flags_paired(r, n, i, NULL); }

/* the feedback gap of r[i] (feedback) over r[j] (true) is significant on their paired outcomes */
static int gap_significant(const AttackResult *fb, const AttackResult *tr, double (*paired_p)(long, long)) {
    if (!paired_p || !fb->robust || !tr->robust || fb->c.n != tr->c.n) return 1; /* counts only: the gap decides */
    long only_fb = 0, only_tr = 0;
    for (long k = 0; k < fb->c.n; k++) {
        only_fb += fb->robust[k] && !tr->robust[k];
        only_tr += tr->robust[k] && !fb->robust[k];
    }
    return paired_p(only_fb, only_tr) < MASK_FEEDBACK_P;
}

unsigned attack_flags_paired(const AttackResult *r, int n, int i, double (*paired_p)(long only_a, long only_b)) {
    CHECK(i >= 0 && i < n);
    const AttackParams *p = &r[i].p;
    const double acc = robust_pts(&r[i]);
    unsigned f = 0;
    if (r[i].c.n_zero_grad > 0) f |= MASK_ZERO_GRAD;
    if (p->eps == 0 && (p->objective == OBJ_HASH ? r[i].h.map_adv != r[i].h.map_clean : r[i].c.n_robust_ok != r[i].c.n_clean_ok))
        f |= MASK_EPS0;
    /* AutoAttack's own check (check_square_sr): its Square component broke examples the white-box
       components before it left robust; flagged on that Square row and on the ensemble row of the run */
    if (p->objective == OBJ_CE && (p->kind == ATK_AUTOATTACK || (p->kind == ATK_SQUARE && p->stage > 1)))
        for (int j = 0; j < n; j++) {
            const AttackResult *sq = &r[j];
            if (sq->p.kind != ATK_SQUARE || sq->p.stage < 2 || !same_aa_run(&r[i], sq) || (p->stage && j != i)) continue;
            for (int k = 0; k < n; k++)
                if (r[k].p.stage == sq->p.stage - 1 && same_aa_run(sq, &r[k]) && sq->c.n_robust_ok < r[k].c.n_robust_ok)
                    f |= MASK_BLACKBOX_STRONGER;
        }
    for (int j = 0; j < n; j++) {
        if (j == i || r[j].p.objective != p->objective) continue;
        const AttackParams *q = &r[j].p;
        const double other = robust_pts(&r[j]);
        if (p->grad_source == GRAD_FEEDBACK && q->grad_source == GRAD_TRUE && same_config(p, q) &&
            acc > other + MASK_FEEDBACK_POINTS && gap_significant(&r[i], &r[j], paired_p))
            f |= MASK_FEEDBACK_GAP;
        if (black_box(p) && white_box(q) && p->norm == q->norm && same_eps(p, q) && p->targeted == q->targeted &&
            acc < other - MASK_BLACKBOX_POINTS) {
            /* compare with the strongest white-box result at this eps */
            double best = other;
            for (int k = 0; k < n; k++)
                if (white_box(&r[k].p) && r[k].p.objective == p->objective && r[k].p.norm == p->norm && same_eps(&r[k].p, p) &&
                    r[k].p.targeted == p->targeted && robust_pts(&r[k]) < best)
                    best = robust_pts(&r[k]);
            if (acc < best - MASK_BLACKBOX_POINTS) f |= MASK_BLACKBOX_STRONGER;
        }
        if ((p->kind == ATK_PGD || p->kind == ATK_APGD || p->kind == ATK_AUTOATTACK) && q->kind == p->kind &&
            p->norm == q->norm && q->eps < p->eps && !same_eps(p, q) && p->grad_source == q->grad_source &&
            str_eq(p->transfer_ckpt, q->transfer_ckpt) && p->steps == q->steps && p->restarts == q->restarts &&
            str_eq(p->alpha_text, q->alpha_text) && p->targeted == q->targeted && p->target == q->target &&
            p->loss == q->loss && p->stage == q->stage && p->version == q->version && p->targets == q->targets &&
            acc > other + MASK_RISE_POINTS)
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
