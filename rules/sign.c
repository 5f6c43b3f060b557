/* sign.c -- the sign-symmetry family (Liao et al. 2016; Moskovitz et al. 2018; Xiao et al. 2018):
 *   usf : B = s * sign(W), recomputed from the current W before every backward pass;
 *   brsf: B = |M_t| * sign(W), M_t redrawn at every refresh (every batch);
 *   frsf: B = |M| * sign(W), M drawn once, signs follow W.
 * sign(0) = 0. Scales (paper-notes §2): xavier s = sqrt(2/(fan_in+fan_out)) (default, BioTorch);
 * he-fanout s = sqrt(2/fan_out) (Xiao et al.); none s = 1 (Liao et al.); wstd = std of W; meanabs =
 * mean |W| (the least-squares best s for W ~ s sign(W)); the last two are recomputed from the current W.
 * Magnitudes: uniform |U(-a, a)|, a = sqrt(6/(fan_in+fan_out)) (same RMS as xavier s), or halfnormal
 * |N(0, s^2)| with s = sqrt(2/(fan_in+fan_out)). */
#include <math.h>

#include "rules/rule.h"

static inline float sgn(float w) { return (float)((w > 0) - (w < 0)); }

static float usf_scale(const Layer *L, int kind) {
    long n = layer_w_n(L);
    double fi = layer_fan_in(L), fo = layer_fan_out(L), s = 0, ss = 0;
    switch (kind) {
    case USF_XAVIER: return (float)sqrt(2.0 / (fi + fo));
    case USF_HE_FANOUT: return (float)sqrt(2.0 / fo);
    case USF_NONE: return 1.0f;
    case USF_WSTD:
        for (long j = 0; j < n; j++) s += L->W[j];
        s /= n;
        for (long j = 0; j < n; j++) ss += (L->W[j] - s) * (L->W[j] - s);
        return (float)sqrt(ss / (n > 1 ? n - 1 : 1));
    case USF_MEANABS:
        for (long j = 0; j < n; j++) s += fabsf(L->W[j]);
        return (float)(s / n);
    }
    CHECK(0);
    return 0;
}

/* B = magnitude * sign(W), the whole family's feedback: the magnitude of element j is mag[j] (frSF's
 * fixed |M|), else a fresh draw from r (brSF's |M_t|), else the scalar s (uSF). */
static void signed_feedback(Layer *L, float s, const float *mag, int draw_kind, Rng *r);

static void usf_refresh(Layer *L, const RuleCtx *c) {
    L->rscale = usf_scale(L, c->o->usf_scale);
    signed_feedback(L, L->rscale, NULL, 0, NULL);
}

static float magnitude(const Layer *L, int kind, Rng *r) {
    double fi = layer_fan_in(L), fo = layer_fan_out(L);
    if (kind == MAG_UNIFORM) return fabsf((2 * rng_uniform(r) - 1) * (float)sqrt(6.0 / (fi + fo)));
    return fabsf(rng_normal(r) * (float)sqrt(2.0 / (fi + fo)));
}

static long w_state_n(const Layer *L, int classes) { return layer_w_n(L); }

static void frsf_init(Layer *L, const RuleCtx *c) {
    for (long j = 0; j < L->rstate_n; j++) L->rstate[j] = magnitude(L, c->o->magnitude, c->rng);
}
static void signed_feedback(Layer *L, float s, const float *mag, int draw_kind, Rng *r) {
    long n = layer_w_n(L);
    for (long j = 0; j < n; j++) L->B[j] = (mag ? mag[j] : r ? magnitude(L, draw_kind, r) : s) * sgn(L->W[j]);
}

static void frsf_refresh(Layer *L, const RuleCtx *c) { signed_feedback(L, 0, L->rstate, 0, NULL); }
static void brsf_refresh(Layer *L, const RuleCtx *c) { signed_feedback(L, 0, NULL, c->o->magnitude, c->rng); }

const Rule RULE_USF = {
    .name = "usf",
    .desc = "uniform sign-concordant feedback: B = s*sign(W), every step",
    .state = "scale s (from --usf-scale)",
    .own_B = 1,
    .refresh = usf_refresh,
};
const Rule RULE_BRSF = {
    .name = "brsf",
    .desc = "batchwise random-magnitude sign feedback: B = |M_t|*sign(W), M_t redrawn each batch",
    .state = "none (M_t drawn from the rule stream)",
    .own_B = 1,
    .refresh = brsf_refresh,
};
const Rule RULE_FRSF = {
    .name = "frsf",
    .desc = "fixed random-magnitude sign feedback: B = |M|*sign(W), M drawn once",
    .state = "|M| (shape of W), fixed",
    .own_B = 1,
    .state_n = w_state_n,
    .init = frsf_init,
    .refresh = frsf_refresh,
};
