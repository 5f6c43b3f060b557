/* attack.c -- the attack table, parameter parsing, FGSM and PGD (Linf, L2), and the evaluation loop.
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
        memcpy(g, w->dx, sizeof(float) * nd);
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
    const float *out = model_forward(m, w, xa, n, FWD_INFER);
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

static void pgd_step(const float *x, float *cur, int n, const AttackParams *p, const AttackScratch *s) {
    const int D = s->D;
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
            v4f g = *(const v4u *)(s->g + j), xv = *(const v4u *)(x + j);
            v4f sg = PGD_SEL(g > z, one, z) - PGD_SEL(g < z, one, z); /* signf: +1, -1, or +0 (zero, NaN) */
            v4f v = *(const v4u *)(cur + j) + av * sg, lo = xv - ev, hi = xv + ev;
            v = PGD_MIN(PGD_MAX(v, lo), hi);
            *(v4u *)(cur + j) = PGD_MIN(PGD_MAX(v, z), one);
        }
#undef PGD_SEL
#undef PGD_MAX
#undef PGD_MIN
        for (; j < nd; j++) {
            float v = cur[j] + alpha * signf(s->g[j]), lo = x[j] - eps, hi = x[j] + eps;
            v = fminf(fmaxf(v, lo), hi);
            cur[j] = clip01(v);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D, *gi = s->g + (size_t)i * D;
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
            pgd_step(x, s->cur, n, p, s);
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

/* ------------------------------------------------------------------ evaluation */

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
static void add_perturbation_norms(const float *x, const float *xa, int D, double *sum_linf, double *sum_l2) {
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
static void progress(const AttackParams *p, long done, long total) {
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
        const float *lg = model_forward(r->target, r->wt, r->x_adv, nb, FWD_INFER);
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
        progress(p, b0 + nb, n);
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
    r.wt = work_create(target, cap);
    r.wc = crafter == target ? r.wt : work_create(crafter, cap);
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
        const float *lg = model_forward(target, r.wt, d->x + (size_t)b0 * D, nb, FWD_INFER);
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
    if (r.wc != r.wt) work_free(r.wc);
    work_free(r.wt);
    return rc;
}

/* ------------------------------------------------------------------ hashing evaluation */

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
    Work *wt = work_create(target, cap), *wc = crafter == target ? wt : work_create(crafter, cap);
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
        const float *out = model_forward(target, wt, x, nb, FWD_INFER);
        hash_pack(out, nb, K, qc + b0);
        if (!p->targeted) codes_from_out(out, nb, K, ref_t + (size_t)b0 * K);
        if (!p->targeted && ref_c != ref_t) codes_from_out(model_forward(crafter, wc, x, nb, FWD_INFER), nb, K, ref_c + (size_t)b0 * K);
        s->index0 = b0;
        ai->fn(crafter, wc, x, y, nb, p, x_adv, ex, s);
        out = model_forward(target, wt, x_adv, nb, FWD_INFER);
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
        progress(p, b0 + nb, N);
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
    if (wc != wt) work_free(wc);
    work_free(wt);
    return 0;
}
