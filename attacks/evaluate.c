/* evaluate.c -- an attack run over a dataset: crafting on the crafter, judging on the target, per-example
 * outcomes and counts, the parameter-hash check that attacks never change a model, refusal of NaN/Inf
 * outputs; the AutoAttack cascade's shared loop (evalrun.h). See attack.h. */
#include "attacks/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/evalrun.h"
#include "harness/hash.h"
#include "harness/loss.h"
#include "harness/train.h"

uint64_t attack_model_hash(const Model *m) {
    uint64_t h = FNV1A_INIT;
    for (int i = 0; i < m->ntensors; i++) {
        const Tensor *t = &m->tensors[i];
        if (t->kind != TK_PARAM && t->kind != TK_BUFFER) continue;
        h = fnv1a64(t->name, strlen(t->name), h);
        h = fnv1a64(t->data, sizeof(float) * (size_t)t->n, h);
    }
    return h;
}

void attack_keep_init(AttackKeep *k, int cap, int D) {
    memset(k, 0, sizeof *k);
    k->cap = cap;
    k->D = D;
    k->x = xmalloc(sizeof(float) * (size_t)cap * D);
    k->x_adv = xmalloc(sizeof(float) * (size_t)cap * D);
    k->y = xmalloc(sizeof(int32_t) * cap);
    k->pred_clean = xmalloc(sizeof(int32_t) * cap);
    k->pred_adv = xmalloc(sizeof(int32_t) * cap);
}

void attack_keep_free(AttackKeep *k) {
    free(k->x); free(k->x_adv); free(k->y); free(k->pred_clean); free(k->pred_adv);
    memset(k, 0, sizeof *k);
}

/* adds ||xa - x||_inf and ||xa - x||_2 of one example to the running sums */
void add_perturbation_norms(const float *x, const float *xa, int D, double *sum_linf, double *sum_l2) {
    double li = 0, l2 = 0;
    for (int j = 0; j < D; j++) {
        double dv = (double)xa[j] - x[j];
        if (fabs(dv) > li) li = fabs(dv);
        l2 += dv * dv;
    }
    *sum_linf += li;
    *sum_l2 += sqrt(l2);
}

/* the progress display of this process (attack_progress_set) */
static AttackProgressFn g_progress;
static void *g_progress_ctx;
void attack_progress_set(AttackProgressFn fn, void *ctx) {
    g_progress = fn;
    g_progress_ctx = ctx;
}
void attack_progress(const AttackParams *p, long done, long total) {
    if (g_progress) g_progress(g_progress_ctx, p, done, total);
}

void evalrun_attack(EvalRun *r, const AttackParams *p, const long *idx, int n, int stage, EvalSums *sums) {
    const AttackInfo *ai = attack_info(p);
    CHECK(ai && ai->fn && p->objective == OBJ_CE);
    const int D = r->D, K = r->K;
    AttackScratch *s = r->s;
    for (int b0 = 0; b0 < n; b0 += r->cap) {
        int nb = n - b0 < r->cap ? n - b0 : r->cap;
        for (int j = 0; j < nb; j++) {
            long i = idx ? idx[b0 + j] : b0 + j;
            r->ib[j] = i;
            memcpy(r->xb + (size_t)j * D, r->d->x + (size_t)i * D, sizeof(float) * D);
            r->yb[j] = r->d->y[i];
        }
        s->index = r->ib;
        s->index0 = r->ib[0];
        ai->fn(r->crafter, r->wc, r->xb, r->yb, nb, p, r->x_adv, r->ex, s);
        const float *lg = model_forward(r->target, r->wt, r->x_adv, nb, FWD_PREDICT);
        for (int j = 0; j < nb; j++) r->nonfinite += !rows_finite(lg + (size_t)j * K, 1, K);
        double mean = loss_softmax_ce(lg, r->yb, nb, K, 1.0f, NULL, r->loss_i, r->ok);
        if (sums) sums->loss += mean * nb;
        for (int j = 0; j < nb; j++) {
            AttackOutcome *o = &r->per[r->ib[j]];
            const float *xi = r->xb + (size_t)j * D, *xa = r->x_adv + (size_t)j * D;
            double li = 0, l2 = 0;
            add_perturbation_norms(xi, xa, D, &li, &l2);
            int was_robust = o->robust_ok;
            o->pred_adv = argmax_row(lg + (size_t)j * K, K);
            o->robust_ok = o->clean_ok && r->ok[j];
            o->zero_grad |= (uint8_t)(r->ex[j].zero_grad != 0);
            o->linf = (float)li;
            o->l2 = (float)l2;
            o->loss = r->loss_i[j];
            if (stage && was_robust && !o->robust_ok && !o->stage) o->stage = (int8_t)stage;
            if (sums) {
                sums->n++;
                sums->flipped += o->pred_adv != o->pred_clean;
                sums->zero_grad += r->ex[j].zero_grad;
                if (r->ex[j].queries > sums->queries_max) sums->queries_max = r->ex[j].queries;
                sums->linf += li;
                sums->l2 += l2;
            }
            AttackKeep *k = r->keep;
            if (k && r->ib[j] < k->cap) {
                memcpy(k->x_adv + (size_t)r->ib[j] * D, xa, sizeof(float) * D);
                k->pred_adv[r->ib[j]] = o->pred_adv;
            }
        }
        attack_progress(p, b0 + nb, n);
    }
    s->index = NULL;
}

void evalrun_counts(const EvalRun *r, EvalCounts *c) {
    memset(c, 0, sizeof *c);
    double li = 0, l2 = 0, loss = 0;
    for (int i = 0; i < r->N; i++) {
        const AttackOutcome *o = &r->per[i];
        c->n_clean_ok += o->clean_ok;
        c->n_robust_ok += o->robust_ok;
        c->n_flipped += o->pred_adv != o->pred_clean;
        c->n_zero_grad += o->zero_grad;
        li += o->linf;
        l2 += o->l2;
        loss += o->loss;
    }
    c->n = r->N;
    if (r->N) { c->mean_linf = li / r->N; c->mean_l2 = l2 / r->N; c->mean_loss = loss / r->N; }
}

int attack_evaluate(Model *target, Model *crafter, const Dataset *d, int limit, const AttackParams *p,
                    AttackStepHook hook, void *hook_ctx, AttackKeep *keep, EvalCounts *out) {
    return attack_evaluate_ex(target, crafter, d, limit, p, hook, hook_ctx, keep, out, NULL, NULL);
}

int rows_finite(const float *v, long n, int K) {
    for (long j = 0; j < n * K; j++)
        if (!isfinite(v[j])) return 0;
    return 1;
}

/* the attacked model, for messages */
static const char *target_name(const Model *m) { return m->spec.arch; }

int attack_evaluate_ex(Model *target, Model *crafter, const Dataset *d, int limit, const AttackParams *p,
                       AttackStepHook hook, void *hook_ctx, AttackKeep *keep, EvalCounts *out, AttackOutcome *per,
                       AttackStages *stages) {
    if (!crafter) crafter = target;
    const AttackInfo *ai = attack_info(p);
    CHECK(ai && p->objective == OBJ_CE);
    const int D = model_in_dim(target), K = model_out_dim(target);
    if (dataset_dim(d) != D || d->c != target->spec.in_c)
        return err_set("%s: examples are %dx%dx%d but the model expects %dx%dx%d", d->name, d->c, d->h, d->w,
                       target->spec.in_c, target->spec.in_h, target->spec.in_w);
    if (model_in_dim(crafter) != D || model_out_dim(crafter) != K)
        return err_set("%s: the surrogate model's input or class count differs from the target's", p->transfer_ckpt);
    if (d->classes > K) return err_set("%s has %d classes but the model only %d", d->name, d->classes, K);
    if (p->targeted && p->target >= K) return err_set("--target %d: the model has %d classes (0..%d)", p->target, K, K - 1);
    if (attack_check(p, K) < 0) return -1;
    int N = limit > 0 && limit < d->n ? limit : d->n;
    memset(out, 0, sizeof *out);
    if (stages) memset(stages, 0, sizeof *stages);
    if (keep) keep->n = 0;
    if (N <= 0) return 0;
    int cap = p->batch > 0 ? p->batch : 256;
    if (cap > N) cap = N;

    const uint64_t h_target = attack_model_hash(target), h_crafter = attack_model_hash(crafter);
    const uint64_t fb_target = target->fb_count, fb_crafter = crafter->fb_count;
    EvalRun r = {.target = target, .crafter = crafter, .d = d, .N = N, .cap = cap, .D = D, .K = K, .keep = keep};
    r.wt = work_take(target, cap);
    r.wc = crafter == target ? r.wt : work_take(crafter, cap);
    work_fix_weights(r.wt, 1); /* checked below: attacks never change a model */
    work_fix_weights(r.wc, 1);
    r.s = attack_scratch_create(crafter, cap);
    r.s->hook = hook;
    r.s->hook_ctx = hook_ctx;
    r.xb = xmalloc(sizeof(float) * (size_t)cap * D);
    r.x_adv = xmalloc(sizeof(float) * (size_t)cap * D);
    r.yb = xmalloc(sizeof(int32_t) * cap);
    r.ib = xmalloc(sizeof(long) * cap);
    r.loss_i = xmalloc(sizeof(float) * cap);
    r.ok = xmalloc((size_t)cap);
    r.ex = xcalloc((size_t)cap, sizeof *r.ex);
    r.per = per ? per : xmalloc(sizeof(AttackOutcome) * (size_t)N);
    double t0 = now_seconds();

    /* clean predictions of the target; an example not attacked keeps x_adv = x */
    for (int b0 = 0; b0 < N; b0 += cap) {
        int nb = N - b0 < cap ? N - b0 : cap;
        const float *lg = model_forward(target, r.wt, d->x + (size_t)b0 * D, nb, FWD_PREDICT);
        for (int j = 0; j < nb; j++) r.nonfinite += !rows_finite(lg + (size_t)j * K, 1, K);
        loss_softmax_ce(lg, d->y + b0, nb, K, 1.0f, NULL, r.loss_i, NULL);
        for (int j = 0; j < nb; j++) {
            AttackOutcome *o = &r.per[b0 + j];
            memset(o, 0, sizeof *o);
            o->index = b0 + j;
            o->y = d->y[b0 + j];
            o->pred_clean = o->pred_adv = argmax_row(lg + (size_t)j * K, K);
            o->clean_ok = o->robust_ok = o->pred_clean == o->y;
            o->loss = r.loss_i[j];
        }
    }
    if (keep) {
        keep->n = N < keep->cap ? N : keep->cap;
        for (int k = 0; k < keep->n; k++) {
            memcpy(keep->x + (size_t)k * D, d->x + (size_t)k * D, sizeof(float) * D);
            memcpy(keep->x_adv + (size_t)k * D, d->x + (size_t)k * D, sizeof(float) * D);
            keep->y[k] = d->y[k];
            keep->pred_clean[k] = keep->pred_adv[k] = r.per[k].pred_clean;
        }
    }

    int rc = 0;
    if (r.nonfinite) { /* a diverged model: no attack number means anything */
        rc = err_set("%s: the model's outputs are NaN/Inf on %ld of the first %d test examples before any attack: it "
                     "diverged; retrain it (a lower --lr)", target_name(target), r.nonfinite, N);
        goto done;
    }
    if (p->kind == ATK_AUTOATTACK) {
        autoattack_run(&r, p, out, stages);
    } else {
        EvalSums sm = {0};
        evalrun_attack(&r, p, NULL, N, 0, &sm);
        for (int i = 0; i < N; i++) {
            out->n_clean_ok += r.per[i].clean_ok;
            out->n_robust_ok += r.per[i].robust_ok;
        }
        out->n = N;
        out->n_flipped = sm.flipped;
        out->n_zero_grad = sm.zero_grad;
        out->queries_max = sm.queries_max;
        out->mean_linf = sm.linf / N;
        out->mean_l2 = sm.l2 / N;
        out->mean_loss = sm.loss / N;
    }
    out->seconds = now_seconds() - t0;
    if (r.nonfinite)
        rc = err_set("%s: the model's outputs became NaN/Inf on %ld adversarial example%s (%s, eps %s): the evaluation is not "
                     "a number; nothing was recorded", target_name(target), r.nonfinite, r.nonfinite == 1 ? "" : "s",
                     attack_name(p), p->eps_text);
done:
    /* attacks never change the models: parameters and BN running statistics must be bit-identical.
     * The feedback draw counter is restored so every evaluation sees the same brSF draws. */
    CHECK(attack_model_hash(target) == h_target);
    CHECK(attack_model_hash(crafter) == h_crafter);
    target->fb_count = fb_target;
    crafter->fb_count = fb_crafter;

    free(r.xb); free(r.x_adv); free(r.yb); free(r.ib); free(r.loss_i); free(r.ok); free(r.ex);
    if (r.per != per) free(r.per);
    attack_scratch_free(r.s);
    if (r.wc != r.wt) work_give(crafter, r.wc);
    work_give(target, r.wt);
    return rc;
}
