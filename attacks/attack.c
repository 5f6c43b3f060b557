/* attack.c -- the attack table, parameter parsing, FGSM and PGD (Linf, L2); the evaluation loop is
 * evaluate.c, hashing hash_eval.c.
 * See attack.h for the formulas. Shape letters: N batch, D = C*H*W input floats, K classes. */
#include "attacks/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness/hash.h"
#include "harness/loss.h"
#include "harness/train.h"
#include "attacks/evalrun.h"

#define AU_PGD (AU_STEPS | AU_ALPHA | AU_RESTARTS | AU_RANDOM_START | AU_GRAD)
#define AU_APGD (AU_STEPS | AU_RESTARTS | AU_GRAD)
#define AU_AA (AU_STEPS | AU_RESTARTS | AU_GRAD | AU_QUERIES | AU_TARGETS | AU_VERSION)
/* name, kind, norm, fn, uses, description, objective, targeted (hashing), loss (APGD), default steps, default queries */
const AttackInfo ATTACKS[] = {
    {"fgsm", ATK_FGSM, NORM_LINF, attack_fgsm, AU_GRAD | AU_TARGET, "fast gradient sign, one Linf step of size eps", OBJ_CE, 0,
     0, 1, 0},
    {"pgd", ATK_PGD, NORM_LINF, attack_pgd, AU_PGD | AU_TARGET, "projected gradient descent, Linf ball", OBJ_CE, 0, 0, 10, 0},
    {"pgd-l2", ATK_PGD, NORM_L2, attack_pgd, AU_PGD | AU_TARGET, "projected gradient descent, L2 ball (normalised gradient steps)",
     OBJ_CE, 0, 0, 10, 0},
    {"square", ATK_SQUARE, NORM_LINF, attack_square, AU_QUERIES | AU_TARGET,
     "Square attack: score-based random search on the margin loss, Linf, no gradients (AutoAttack's configuration)", OBJ_CE,
     0, 0, 0, 1000},
    {"square-l2", ATK_SQUARE, NORM_L2, attack_square, AU_QUERIES | AU_TARGET,
     "Square attack, L2 (centre-weighted windows at constant norm eps), no gradients", OBJ_CE, 0, 0, 0, 1000},
    {"apgd-ce", ATK_APGD, NORM_LINF, attack_apgd, AU_APGD, "APGD on cross-entropy, Linf (step-size free PGD)", OBJ_CE, 0,
     LOSS_CE, 100, 0},
    {"apgd-ce-l2", ATK_APGD, NORM_L2, attack_apgd, AU_APGD, "APGD on cross-entropy, L2", OBJ_CE, 0, LOSS_CE, 100, 0},
    {"apgd-dlr", ATK_APGD, NORM_LINF, attack_apgd, AU_APGD, "APGD on the DLR loss (shift/scale invariant), Linf", OBJ_CE, 0,
     LOSS_DLR, 100, 0},
    {"apgd-dlr-l2", ATK_APGD, NORM_L2, attack_apgd, AU_APGD, "APGD on the DLR loss, L2", OBJ_CE, 0, LOSS_DLR, 100, 0},
    {"apgd-t", ATK_APGD, NORM_LINF, attack_apgd, AU_APGD | AU_TARGETS,
     "APGD on the targeted DLR loss, one run per top class (--targets), Linf", OBJ_CE, 0, LOSS_DLR_T, 100, 0},
    {"apgd-t-l2", ATK_APGD, NORM_L2, attack_apgd, AU_APGD | AU_TARGETS, "APGD on the targeted DLR loss, L2", OBJ_CE, 0,
     LOSS_DLR_T, 100, 0},
    {"fab-t", ATK_FAB, NORM_LINF, attack_fab, AU_APGD | AU_TARGETS,
     "FAB-T: targeted fast adaptive boundary (minimum-norm) attack, Linf, success only inside the ball", OBJ_CE, 0, 0, 100, 0},
    {"fab-t-l2", ATK_FAB, NORM_L2, attack_fab, AU_APGD | AU_TARGETS, "FAB-T, L2", OBJ_CE, 0, 0, 100, 0},
    {"autoattack", ATK_AUTOATTACK, NORM_LINF, NULL, AU_AA,
     "AutoAttack, Linf: standard = APGD-CE, APGD-T, FAB-T, Square on what stays robust; rand = APGD-CE, APGD-DLR, eot 20",
     OBJ_CE, 0, 0, 100, 5000},
    {"autoattack-l2", ATK_AUTOATTACK, NORM_L2, NULL, AU_AA, "AutoAttack, L2", OBJ_CE, 0, 0, 100, 5000},
    {"hash-untargeted", ATK_PGD, NORM_LINF, attack_pgd, AU_PGD,
     "hashing, PGD-Linf driving the query's code inner product with its clean code towards -K", OBJ_HASH, 0, 0, 100, 0},
    {"hash-targeted", ATK_PGD, NORM_LINF, attack_pgd, AU_PGD,
     "hashing, PGD-Linf driving the query's code towards a seeded target class's mean database code", OBJ_HASH, 1, 0, 100, 0},
};
const int N_ATTACKS = (int)ARRAY_LEN(ATTACKS);

const AttackInfo *attack_find(const char *name) {
    for (int i = 0; i < N_ATTACKS; i++)
        if (str_eq(ATTACKS[i].name, name)) return &ATTACKS[i];
    return NULL;
}

const AttackInfo *attack_info(const AttackParams *p) {
    for (int i = 0; i < N_ATTACKS; i++) {
        const AttackInfo *a = &ATTACKS[i];
        if (a->kind != p->kind || (p->kind != ATK_FGSM && a->norm != p->norm) || a->objective != p->objective) continue;
        if (a->objective == OBJ_HASH && a->targeted != (p->targeted != 0)) continue;
        if (a->kind == ATK_APGD && a->loss != p->loss) continue;
        return a;
    }
    return NULL;
}

void attack_params_apply(AttackParams *p, const AttackInfo *ai) {
    p->kind = ai->kind;
    p->norm = ai->norm;
    p->objective = ai->objective;
    p->loss = ai->loss;
    if (ai->objective == OBJ_HASH) { p->targeted = ai->targeted; p->target = -1; }
}

const char *attack_name(const AttackParams *p) {
    const AttackInfo *ai = attack_info(p);
    return ai ? ai->name : "?";
}

static const char *const VERSION_NAMES[AA_VERSION_COUNT] = {"standard", "rand"};
_Static_assert(ARRAY_LEN(VERSION_NAMES) == AA_VERSION_COUNT, "VERSION_NAMES must match the AA_* enum");
const char *attack_version_name(int v) { return v >= 0 && v < AA_VERSION_COUNT ? VERSION_NAMES[v] : "?"; }

const char *attack_record_name(const AttackParams *p) {
    static const char *const APGD_NAMES[LOSS_COUNT] = {"apgd-ce", "apgd-dlr", "apgd-t"};
    _Static_assert(ARRAY_LEN(APGD_NAMES) == LOSS_COUNT, "one APGD name per loss");
    switch (p->kind) {
    case ATK_FGSM: return "fgsm";
    case ATK_PGD: return "pgd";
    case ATK_SQUARE: return "square";
    case ATK_APGD: return p->loss >= 0 && p->loss < LOSS_COUNT ? APGD_NAMES[p->loss] : "?";
    case ATK_FAB: return "fab-t";
    case ATK_AUTOATTACK: return p->version == AA_RAND ? "autoattack-rand" : "autoattack";
    default: return "?";
    }
}

int attack_check(const AttackParams *p, int K) {
    const char *nm = attack_name(p);
    if (p->objective == OBJ_HASH && p->kind != ATK_FGSM && p->kind != ATK_PGD)
        return err_set("%s: a classification attack; hashing models take hash-untargeted or hash-targeted", nm);
    if (p->objective != OBJ_CE) return 0;
    if (K < 2) return err_set("%s: the model has %d class; attacks need at least 2", nm, K);
    int uses_targets = (p->kind == ATK_APGD && p->loss == LOSS_DLR_T) || p->kind == ATK_FAB ||
                       (p->kind == ATK_AUTOATTACK && p->version == AA_STANDARD);
    if (uses_targets && (p->targets < 1 || p->targets > 255))
        return err_set("%s: --targets %d: give 1 to 255 target classes (at most K-1 = %d are used)", nm, p->targets, K - 1);
    if ((p->kind == ATK_APGD || p->kind == ATK_FAB || p->kind == ATK_AUTOATTACK) && (p->restarts < 1 || p->restarts > 256))
        return err_set("%s: --restarts %d: give 1 to 256", nm, p->restarts);
    if (p->kind == ATK_APGD && p->loss == LOSS_DLR && K < 3)
        return err_set("%s: the DLR loss needs at least 3 classes (it divides by z_pi1 - z_pi3); the model has %d; "
                       "use apgd-ce", nm, K);
    if (p->kind == ATK_APGD && p->loss == LOSS_DLR_T && K < 4)
        return err_set("%s: the targeted DLR loss needs at least 4 classes (it uses z_pi4); the model has %d; use apgd-ce "
                       "or fab-t", nm, K);
    if (p->kind == ATK_AUTOATTACK && p->version == AA_STANDARD && K < 4)
        return err_set("%s: the standard version runs APGD-T, whose targeted DLR loss needs at least 4 classes; the model "
                       "has %d; run apgd-ce, fab-t and square separately", nm, K);
    if (p->kind == ATK_AUTOATTACK && p->version == AA_RAND && K < 3)
        return err_set("%s: the rand version runs APGD-DLR, which needs at least 3 classes; the model has %d", nm, K);
    if (p->kind == ATK_AUTOATTACK && (p->version < 0 || p->version >= AA_VERSION_COUNT))
        return err_set("%s: unknown version %d; use standard or rand", nm, p->version);
    return 0;
}

static const char *const GRAD_NAMES[GRAD_SOURCE_COUNT] = {"true", "feedback", "transfer"};
_Static_assert(ARRAY_LEN(GRAD_NAMES) == GRAD_SOURCE_COUNT, "GRAD_NAMES must match the GRAD_* enum");

const char *attack_grad_name(int src) { return src >= 0 && src < GRAD_SOURCE_COUNT ? GRAD_NAMES[src] : "?"; }

void attack_params_default(AttackParams *p) {
    memset(p, 0, sizeof *p);
    p->kind = ATK_FGSM;
    p->norm = NORM_LINF;
    snprintf(p->eps_text, sizeof p->eps_text, "0");
    p->steps = 10;
    p->restarts = 1;
    p->random_start = 1;
    p->target = -1;
    p->grad_source = GRAD_TRUE;
    p->eot = 1;
    p->queries = 1000;
    p->p_init = 0.8;
    p->batch = 256;
    p->loss = LOSS_CE;
    p->targets = 9;
    p->version = AA_STANDARD;
}

/* ------------------------------------------------------------------ parsing */

int attack_parse_eps(const char *what, const char *text, double *out) {
    if (!text || !*text) return err_set("%s: empty value; give a number in [0,1] such as 8/255 or 0.03", what);
    const char *slash = strchr(text, '/');
    double v;
    if (slash) {
        char num[64];
        size_t ln = (size_t)(slash - text);
        double a, b;
        if (ln == 0 || ln >= sizeof num) return err_set("%s %s: expected a number or a fraction such as 8/255", what, text);
        memcpy(num, text, ln);
        num[ln] = 0;
        if (parse_double(num, &a) < 0 || parse_double(slash + 1, &b) < 0)
            return err_set("%s %s: expected a number or a fraction such as 8/255", what, text);
        if (b == 0) return err_set("%s %s: division by zero; give a fraction such as 8/255", what, text);
        v = a / b;
    } else if (parse_double(text, &v) < 0) {
        return err_set("%s %s: expected a number or a fraction such as 8/255", what, text);
    }
    if (!isfinite(v)) return err_set("%s %s: not a finite number", what, text);
    if (v < 0 || v > 1) {
        if (v > 1 && v <= 255 && !slash)
            return err_set("%s %s: outside [0,1] for [0,1] pixel data; did you mean %s/255?", what, text, text);
        return err_set("%s %s: outside [0,1] for [0,1] pixel data", what, text);
    }
    *out = v;
    return 0;
}

int attack_set_eps(AttackParams *p, const char *text) {
    double v;
    if (attack_parse_eps("--eps", text, &v) < 0) return -1;
    if (strlen(text) >= sizeof p->eps_text) return err_set("--eps %s: too long", text);
    snprintf(p->eps_text, sizeof p->eps_text, "%s", text);
    p->eps = v;
    return 0;
}

int attack_set_alpha(AttackParams *p, const char *text) {
    if (!text) text = "";
    if (strlen(text) >= sizeof p->alpha_text) return err_set("--alpha %s: too long", text);
    snprintf(p->alpha_text, sizeof p->alpha_text, "%s", text);
    if (!*text) {
        p->alpha = p->steps > 0 ? 2.5 * p->eps / p->steps : p->eps;
        return 0;
    }
    if (text[0] == 'r') {
        double r;
        if (parse_double(text + 1, &r) < 0 || !isfinite(r) || r < 0 || r > 100)
            return err_set("--alpha %s: a relative step is r<factor of eps>, e.g. r0.25", text);
        p->alpha = r * p->eps;
        return 0;
    }
    double v;
    if (attack_parse_eps("--alpha", text, &v) < 0) return -1;
    p->alpha = v;
    return 0;
}

int attack_set_grad(AttackParams *p, const char *text) {
    p->transfer_ckpt[0] = 0;
    if (str_eq(text, "true")) p->grad_source = GRAD_TRUE;
    else if (str_eq(text, "feedback")) p->grad_source = GRAD_FEEDBACK;
    else if (strncmp(text, "transfer:", 9) == 0 && text[9]) {
        if (strlen(text + 9) >= sizeof p->transfer_ckpt) return err_set("--grad %s: checkpoint path too long", text);
        p->grad_source = GRAD_TRANSFER;
        snprintf(p->transfer_ckpt, sizeof p->transfer_ckpt, "%s", text + 9);
    } else
        return err_set("--grad %s: use true, feedback or transfer:CKPT", text);
    return 0;
}

/* ------------------------------------------------------------------ scratch */

AttackScratch *attack_scratch_create(const Model *m, int cap) {
    CHECK(cap > 0);
    AttackScratch *s = xcalloc(1, sizeof *s);
    s->cap = cap;
    s->D = model_in_dim(m);
    s->K = model_out_dim(m);
    size_t nd = (size_t)cap * s->D;
    s->g = xmalloc(sizeof(float) * nd);
    s->gsum = xmalloc(sizeof(float) * nd);
    s->cur = xmalloc(sizeof(float) * nd);
    s->best = xmalloc(sizeof(float) * nd);
    s->xs = xmalloc(sizeof(float) * nd);
    s->prev = xmalloc(sizeof(float) * nd);
    s->gbest = xmalloc(sizeof(float) * nd);
    s->tile = xmalloc(sizeof(float) * (size_t)m->spec.in_h * m->spec.in_w);
    s->ptmp = xmalloc(sizeof(float) * 3 * (size_t)s->D);
    s->dlogits = xmalloc(sizeof(float) * (size_t)cap * s->K);
    s->loss = xmalloc(sizeof(float) * cap);
    s->best_loss = xmalloc(sizeof(float) * cap);
    s->ok = xmalloc((size_t)cap);
    s->best_succ = xmalloc((size_t)cap);
    s->yt = xmalloc(sizeof(int32_t) * cap);
    s->active = xmalloc(sizeof(int32_t) * cap);
    s->order = xmalloc(sizeof(int32_t) * (size_t)cap * s->K);
    s->slot = xmalloc(sizeof(AttackSlot) * cap);
    s->rng = xmalloc(sizeof(Rng) * cap);
    s->objective = attack_objective_ce;
    return s;
}

void attack_scratch_free(AttackScratch *s) {
    if (!s) return;
    free(s->g); free(s->gsum); free(s->cur); free(s->best); free(s->dlogits);
    free(s->xs); free(s->prev); free(s->gbest); free(s->tile); free(s->ptmp);
    free(s->loss); free(s->best_loss); free(s->ok); free(s->best_succ);
    free(s->yt); free(s->active); free(s->order); free(s->slot); free(s->rng);
    free(s);
}

/* ------------------------------------------------------------------ gradient attacks */

/* branch-free (minss/maxss, vectorisable): the branchy form mispredicted on ~20% of mlp PGD time */
static inline float clip01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }
static inline float signf(float v) { return (float)((v > 0.0f) - (v < 0.0f)); }

/* s->yt: the label the loss is taken on (classification); other objectives get y unchanged. */
static void set_targets(const int32_t *y, int n, const AttackParams *p, AttackScratch *s) {
    if (s->objective != attack_objective_ce) {
        memcpy(s->yt, y, sizeof(int32_t) * (size_t)n);
        return;
    }
    for (int i = 0; i < n; i++) {
        CHECK(y[i] >= 0 && y[i] < s->K);
        if (!p->targeted) s->yt[i] = y[i];
        else if (p->target >= 0) { CHECK(p->target < s->K); s->yt[i] = p->target; }
        else s->yt[i] = (y[i] + 1) % s->K;
    }
}

void attack_objective_ce(void *ctx, const AttackParams *p, const float *out, const int32_t *yt, int n, int K,
                         long index0, float *loss, uint8_t *ok, float *dout) {
    loss_softmax_ce(out, yt, n, K, 1.0f, dout, loss, ok);
    for (int i = 0; i < n; i++) {
        if (p->targeted) loss[i] = -loss[i];
        else ok[i] = !ok[i];
    }
    if (dout && p->targeted)
        for (long j = 0; j < (long)n * K; j++) dout[j] = -dout[j];
}

void attack_objective_hash(void *ctx, const AttackParams *p, const float *out, const int32_t *yt, int n, int K,
                           long index0, float *loss, uint8_t *ok, float *dout) {
    const HashObjective *h = ctx;
    CHECK(h && h->ref && index0 >= 0 && index0 + n <= h->n);
    const double sgn = p->targeted ? 1.0 : -1.0;
    for (int i = 0; i < n; i++) {
        const float *u = out + (size_t)i * K, *r = h->ref + (size_t)(index0 + i) * K;
        double ip = 0;
        int ham = 0;
        for (int k = 0; k < K; k++) {
            ip += (double)u[k] * r[k];
            ham += (u[k] >= 0.0f ? 1.0f : -1.0f) != r[k]; /* code bit: sign(0) = +1 (hash.h) */
        }
        loss[i] = (float)(sgn * ip / K);
        ok[i] = p->targeted ? 2 * ham < K : 2 * ham > K;
        if (dout)
            for (int k = 0; k < K; k++) dout[(size_t)i * K + k] = (float)(sgn * r[k] / K);
    }
}

void attack_input_grad(Model *m, Work *w, const float *dout, int n, const AttackParams *p, AttackScratch *s, float *g) {
    size_t nd = (size_t)n * s->D;
    if (p->grad_source != GRAD_FEEDBACK) {
        model_backward(m, w, dout, BW_INPUT | BW_TRUE);
        work_copy(w, n, s->D, g, w->dx); /* by the threads whose slices of the pass wrote w->dx */
        return;
    }
    /* through the rule's feedback: a fresh draw per backward (brSF), averaged over eot draws */
    int eot = p->eot > 0 ? p->eot : 1;
    for (int e = 0; e < eot; e++) {
        model_refresh_feedback(m);
        model_backward(m, w, dout, BW_INPUT);
        if (eot == 1) { memcpy(g, w->dx, sizeof(float) * nd); return; }
        if (e == 0) memcpy(s->gsum, w->dx, sizeof(float) * nd);
        else for (size_t j = 0; j < nd; j++) s->gsum[j] += w->dx[j];
    }
    for (size_t j = 0; j < nd; j++) g[j] = s->gsum[j] / (float)eot;
}

/* The objective at xa (n, D): s->loss (n), s->ok (n) from s->objective. With grad: its ascent direction
 * into s->g (n, D), through W (true) or the rule's feedback. */
static void objective(Model *m, Work *w, const float *xa, int n, const AttackParams *p, AttackScratch *s, int grad) {
    CHECK(!s->index || s->objective == attack_objective_ce); /* other objectives index their data by index0 */
    const float *out = model_forward(m, w, xa, n, grad ? FWD_INFER : FWD_PREDICT);
    s->objective(s->objective_ctx, p, out, s->yt, n, s->K, s->index0, s->loss, s->ok, grad ? s->dlogits : NULL);
    if (grad) attack_input_grad(m, w, s->dlogits, n, p, s, s->g);
}

static void note_zero_grad(const AttackScratch *s, int n, AttackExample *ex) {
    for (int i = 0; i < n; i++) {
        const float *g = s->g + (size_t)i * s->D;
        int z = 1;
        for (int j = 0; j < s->D && z; j++) z = g[j] == 0.0f;
        ex[i].zero_grad = z;
    }
}

int attack_fgsm(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                AttackExample *ex, AttackScratch *s) {
    CHECK(n <= s->cap && n <= w->cap && s->D == model_in_dim(m));
    const int D = s->D;
    const float eps = (float)p->eps;
    set_targets(y, n, p, s);
    objective(m, w, x, n, p, s, 1);
    note_zero_grad(s, n, ex);
    for (long j = 0; j < (long)n * D; j++) x_adv[j] = clip01(x[j] + eps * signf(s->g[j]));
    if (s->hook) s->hook(s->hook_ctx, x, x_adv, n, D, p, 1);
    objective(m, w, x_adv, n, p, s, 0);
    for (int i = 0; i < n; i++) { ex[i].loss = s->loss[i]; ex[i].success = s->ok[i]; ex[i].queries = 0; }
    return 0;
}

/* Random start: Linf, uniform in the box; L2, uniform in the ball (normal direction, radius eps*u^(1/D)). */
static void random_start(const float *x, float *cur, int n, const AttackParams *p, AttackScratch *s, int restart) {
    const int D = s->D;
    const float eps = (float)p->eps;
    for (int i = 0; i < n; i++) {
        Rng r;
        rng_seed(&r, p->seed, RNG_ATTACK, (uint64_t)attack_index(s, i) * 1024u + (uint64_t)restart);
        const float *xi = x + (size_t)i * D;
        float *ci = cur + (size_t)i * D;
        if (p->norm == NORM_LINF) {
            for (int j = 0; j < D; j++) ci[j] = clip01(xi[j] + eps * (2.0f * rng_uniform(&r) - 1.0f));
        } else {
            double nn = 0;
            for (int j = 0; j < D; j++) { ci[j] = rng_normal(&r); nn += (double)ci[j] * ci[j]; }
            double rad = p->eps * pow(rng_uniform_d(&r), 1.0 / D), f = nn > 0 ? rad / sqrt(nn) : 0;
            for (int j = 0; j < D; j++) ci[j] = clip01(xi[j] + (float)(ci[j] * f));
        }
    }
}

/* one PGD step on examples [b0, b1): cur += alpha sign(g) (Linf) or alpha g/|g| (L2), projected */
static void pgd_step(const float *x, float *cur, long b0, long b1, const AttackParams *p, const AttackScratch *s) {
    const int D = s->D;
    const int n = (int)(b1 - b0);
    x += b0 * D;
    cur += b0 * D;
    const float *gv = s->g + b0 * D;
    const float eps = (float)p->eps, alpha = (float)p->alpha;
    if (p->norm == NORM_LINF) {
        /* 4 at a time: GCC did not inline fminf/fmaxf (a libm call each, per element: callgrind, 20% of
           an mlp PGD run with attack_pgd). PGD_MAX/PGD_MIN are glibc's fmaxf/fminf exactly (x86-64:
           maxss/minss when ordered, the other operand when one is NaN), so results are bitwise unchanged. */
        typedef float v4f __attribute__((vector_size(16)));
        typedef int v4i __attribute__((vector_size(16)));
        typedef float v4u __attribute__((vector_size(16), aligned(4), may_alias));
#define PGD_SEL(m, a, b) ((v4f)(((v4i)(a) & (m)) | ((v4i)(b) & ~(m))))
#define PGD_MAX(a, b) PGD_SEL(((a) > (b)) | ((b) != (b)), a, b)
#define PGD_MIN(a, b) PGD_SEL(((a) < (b)) | ((b) != (b)), a, b)
        const v4f z = {0, 0, 0, 0}, one = {1, 1, 1, 1}, av = {alpha, alpha, alpha, alpha}, ev = {eps, eps, eps, eps};
        const long nd = (long)n * D;
        long j = 0;
        for (; j + 4 <= nd; j += 4) {
            v4f g = *(const v4u *)(gv + j), xv = *(const v4u *)(x + j);
            v4f sg = PGD_SEL(g > z, one, z) - PGD_SEL(g < z, one, z); /* signf: +1, -1, or +0 (zero, NaN) */
            v4f v = *(const v4u *)(cur + j) + av * sg, lo = xv - ev, hi = xv + ev;
            v = PGD_MIN(PGD_MAX(v, lo), hi);
            *(v4u *)(cur + j) = PGD_MIN(PGD_MAX(v, z), one);
        }
#undef PGD_SEL
#undef PGD_MAX
#undef PGD_MIN
        for (; j < nd; j++) {
            float v = cur[j] + alpha * signf(gv[j]), lo = x[j] - eps, hi = x[j] + eps;
            v = fminf(fmaxf(v, lo), hi);
            cur[j] = clip01(v);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D, *gi = gv + (size_t)i * D;
        float *ci = cur + (size_t)i * D;
        double gn = 0, dn = 0;
        for (int j = 0; j < D; j++) gn += (double)gi[j] * gi[j];
        gn = sqrt(gn);
        double f = gn > 0 ? p->alpha / gn : 0;
        for (int j = 0; j < D; j++) {
            ci[j] = ci[j] + (float)(gi[j] * f) - xi[j]; /* the perturbation, projected below */
            dn += (double)ci[j] * ci[j];
        }
        dn = sqrt(dn);
        double sc = dn > p->eps ? p->eps / dn : 1.0;
        for (int j = 0; j < D; j++) ci[j] = clip01(xi[j] + (float)(ci[j] * sc));
    }
}

typedef struct { const float *x; float *cur; const AttackParams *p; const AttackScratch *s; } PgdStep;
static void pgd_step_slice(void *ctx, long b0, long b1) {
    const PgdStep *k = ctx;
    pgd_step(k->x, k->cur, b0, b1, k->p, k->s);
}

int attack_pgd(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
               AttackExample *ex, AttackScratch *s) {
    CHECK(n <= s->cap && n <= w->cap && s->D == model_in_dim(m));
    CHECK(p->steps >= 0 && p->restarts >= 1 && p->restarts <= 1024);
    const int D = s->D;
    const size_t nd = (size_t)n * D;
    set_targets(y, n, p, s);
    /* without a random start every restart is the same deterministic run */
    int restarts = p->random_start ? p->restarts : 1;
    for (int i = 0; i < n; i++) ex[i].zero_grad = 0;
    for (int r = 0; r < restarts; r++) {
        if (p->random_start) random_start(x, s->cur, n, p, s, r);
        else memcpy(s->cur, x, sizeof(float) * nd);
        if (s->hook) s->hook(s->hook_ctx, x, s->cur, n, D, p, 0);
        for (int k = 0; k < p->steps; k++) {
            objective(m, w, s->cur, n, p, s, 1);
            if (r == 0 && k == 0) note_zero_grad(s, n, ex);
            PgdStep st = {x, s->cur, p, s}; /* per example: each thread steps the examples its slice computed */
            work_split(w, n, pgd_step_slice, &st);
            if (s->hook) s->hook(s->hook_ctx, x, s->cur, n, D, p, k + 1);
        }
        objective(m, w, s->cur, n, p, s, 0);
        /* worst case per example: the first successful restart, else the highest objective */
        for (int i = 0; i < n; i++) {
            int take = r == 0 || (!s->best_succ[i] && (s->ok[i] || s->loss[i] > s->best_loss[i]));
            if (!take) continue;
            s->best_succ[i] = s->ok[i];
            s->best_loss[i] = s->loss[i];
            memcpy(x_adv + (size_t)i * D, s->cur + (size_t)i * D, sizeof(float) * D);
        }
    }
    for (int i = 0; i < n; i++) { ex[i].loss = s->best_loss[i]; ex[i].success = s->best_succ[i]; ex[i].queries = 0; }
    return 0;
}
