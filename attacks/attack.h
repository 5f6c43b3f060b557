/* attack.h -- adversarial attacks: each is a function of a model, a batch and one parameter struct.
 * The same AttackParams struct is what gets printed and recorded in the results database.
 * Inputs live in [0,1]; attacks run the model in inference mode and compute only input gradients.
 * Definitions: shared/paper-notes.md §4 and §7; docs/attacks.md lists every attack with its defaults.
 *
 *   FGSM      x' = clip01(x + eps * sign(g))                                  (Goodfellow et al. 2015)
 *   PGD-Linf  x0 = clip01(x + U(-eps,eps)) (random start), x_{k+1} = clip01(clip_[x-eps,x+eps](x_k + alpha sign g))
 *   PGD-L2    x0 = clip01(x + d), d uniform in the L2 ball; x_{k+1} = clip01(x + P_eps(x_k + alpha g/|g|_2 - x))
 *             (Madry et al. 2018). Default alpha = 2.5 eps / steps; "r0.25" means 0.25 eps.
 *             Restarts keep, per example, the first successful final iterate, else the highest loss.
 *   APGD      (Croce & Hein, ICML 2020, Algorithm 1; apgd.c) Linf or L2; random start on the sphere
 *             of radius eps; step eta = 2 eps halved at the checkpoints w_j = ceil(p_j steps), p_0 = 0,
 *             p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), when fewer than rho = 0.75 of
 *             the steps since the previous checkpoint raised the loss, or when neither eta nor the best
 *             loss changed since then; a halving restarts the iterate from the best point. Momentum
 *             0.75. Losses (AttackParams.loss): CE; DLR = -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3 + 1e-12);
 *             targeted DLR = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12) (pi: logits sorted
 *             decreasing), one run per target t among the `targets` other classes with the highest
 *             clean logits. Success = misclassified. An example stops at its first misclassified
 *             iterate; restarts and targets only run on examples not yet broken.
 *   FAB-T     (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast adaptive
 *             boundary attack"; fab.c) targeted minimum-norm attack, Linf or L2, as AutoAttack runs it:
 *             per target (top `targets` classes by clean logit), `steps` iterations of: linearise
 *             z_t - z_y at x_k, project x_k and x on that hyperplane inside [0,1] (d_k, d_0), x_{k+1} =
 *             clip01((1-a)(x_k + 1.05 d_k) + a (x + 1.05 d_0)), a = min(|d_k|/(|d_k|+|d_0|), 0.1); on a
 *             misclassified x_{k+1} keep it when its norm is the smallest so far and step back to
 *             x + 0.9 (x_{k+1} - x). The first restart starts at x, later ones at a random point at
 *             distance eps/2. Success only when the smallest adversarial found lies inside the eps-ball;
 *             otherwise x_adv = x. Its iterates are a minimum-norm search and may leave the ball.
 *   Square    score-based attack on the margin loss (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020;
 *             square.c), configured as AutoAttack runs it. Linf: vertical-stripe init, then random
 *             squares of side round(sqrt(p H W)) set to +-eps per channel; L2: the paper's
 *             centre-weighted windows moved between two squares at constant norm eps. Kept when they
 *             lower the margin; p = p_init (0.8) halved after iterations 10, 50, 200, 500, 1000, 2000,
 *             4000, 6000, 8000; stops per example at success or at `queries` model evaluations (the
 *             init counts as one).
 *   AutoAttack (Croce & Hein 2020; autoattack.c) an evaluation, not an AttackFn: standard = APGD-CE,
 *             APGD-T, FAB-T, Square, each on the examples still robust (on the attacked model) after
 *             the ones before; rand = APGD-CE and APGD-DLR with eot 20. See attack_evaluate_ex.
 * g is the ascent direction of the objective: untargeted, d CE(y)/dx; targeted, -d CE(t)/dx with the
 * per-example loss scale (1, not 1/n). sign(0) = 0.
 *
 * Objectives (AttackParams.objective; the gradient attacks FGSM and PGD take their loss from the
 * scratch's objective callback, so one PGD serves both tasks):
 *   OBJ_CE    classification, softmax cross-entropy as above (attack_objective_ce).
 *   OBJ_HASH  deep hashing (paper-notes §5; the model ends in tanh, u = output in (-1,1)^K, code
 *             b = sign(u)); per query a reference code r in {-1,+1}^K (attack_objective_hash):
 *             untargeted (HAG-style, Yang et al. 2018): r = the clean code of the query on the crafting
 *               model; J = -u.r / K (maximised: drives u.r towards -K); success: Hamming(b, r) > K/2;
 *             targeted: r = sign(mean database code of a target class != the query's label, drawn with
 *               the seed per query); J = u.r / K; success: Hamming(b, r) < K/2.
 *             dJ/du = -+r/K. Only the queries are attacked; database codes stay clean
 *             (attack_hash_evaluate scores the attacked queries' mAP against the clean database).
 *             APGD, FAB, Square and AutoAttack are classification attacks only.
 *
 * Gradient sources (grad_source): GRAD_TRUE, the exact input gradient through W (BW_TRUE); GRAD_FEEDBACK,
 * through the model's own rule (model_refresh_feedback before every backward, so brSF redraws; `eot`
 * draws averaged per step); GRAD_TRANSFER: the caller crafts on a surrogate model with the true
 * gradient (attack_evaluate does this) and evaluates on the target. Square ignores grad_source (it
 * queries the crafting model: the surrogate under transfer).
 *
 * Memory: an AttackScratch is sized once per evaluation (attack_scratch_create); attack functions
 * never allocate. The model's parameters and BN running statistics are never written: attack_evaluate
 * hashes them before and after and aborts (CHECK) if a single bit changed.
 * Not for: deciding what is "robust" beyond the counts (flags.h flags gradient masking), or I/O.
 */
#ifndef CONCORD_ATTACK_H
#define CONCORD_ATTACK_H
#include "datasets/dataset.h"
#include "harness/model.h"

enum { ATK_FGSM, ATK_PGD, ATK_SQUARE, ATK_APGD, ATK_FAB, ATK_AUTOATTACK, ATK_KIND_COUNT };
enum { NORM_LINF, NORM_L2 };
enum { LOSS_CE, LOSS_DLR, LOSS_DLR_T, LOSS_COUNT };   /* APGD's loss */
enum { AA_STANDARD, AA_RAND, AA_VERSION_COUNT };      /* AutoAttack's version */
#define AA_MAX_STAGES 4                               /* components of one AutoAttack version, at most */
enum { GRAD_TRUE, GRAD_FEEDBACK, GRAD_TRANSFER, GRAD_SOURCE_COUNT };
enum { OBJ_CE, OBJ_HASH, OBJ_COUNT };

typedef struct AttackParams {
    int kind;                 /* ATK_* */
    int norm;                 /* NORM_LINF | NORM_L2 */
    char eps_text[32];        /* as typed: "8/255", "0.1" */
    double eps;               /* its value */
    char alpha_text[32];      /* step size as typed ("" = default 2.5*eps/steps; "r0.25" = 0.25*eps) */
    double alpha;             /* resolved absolute step size */
    int steps, restarts, random_start;
    int targeted, target;     /* targeted: class `target` (-1 = (y+1) mod K) */
    int grad_source;          /* GRAD_* */
    char transfer_ckpt[512];  /* surrogate checkpoint for GRAD_TRANSFER */
    int eot;                  /* feedback draws averaged per step (brSF), >= 1 */
    int queries;              /* Square: query budget per example */
    double p_init;            /* Square: initial fraction of pixels per square */
    uint64_t seed;
    int batch;
    int objective;            /* OBJ_CE | OBJ_HASH */
    int loss;                 /* APGD: LOSS_CE | LOSS_DLR | LOSS_DLR_T (the name carries it: apgd-ce...) */
    int targets;              /* APGD-T, FAB-T, AutoAttack: target classes per example (top by clean logit;
                                 at most K-1 are used), default 9 */
    int version;              /* AutoAttack: AA_STANDARD | AA_RAND */
    int stage;                /* 0: a standalone evaluation. k >= 1: the k-th component of an AutoAttack run,
                                 whose counts are the ensemble's after that component (cumulative: robust =
                                 still robust after components 1..k) */
} AttackParams;

typedef struct EvalCounts {
    long n, n_clean_ok, n_robust_ok, n_flipped, n_zero_grad;
    double mean_linf, mean_l2, mean_loss, seconds;
    long queries_max;         /* Square: the most queries one example used */
} EvalCounts;

/* Hashing scores of one evaluation (attack_hash_evaluate); mAP and precision as fractions. */
#define HASH_PREC_N 100
typedef struct HashCounts {
    int bits, topk;           /* code length; mAP@topk (0 = the whole database) */
    long n_db;                /* database size */
    double map_clean, map_adv;    /* mAP of the clean / attacked queries against the clean database */
    double prec_clean, prec_adv;  /* precision@HASH_PREC_N, same */
    double tmap_clean, tmap_adv;  /* targeted: mAP with the target class as the relevant one (NaN untargeted) */
    double mean_hamming;      /* mean Hamming distance between a query's clean and attacked code (target model) */
} HashCounts;

/* What an attack reports per example. */
typedef struct AttackExample {
    float loss;               /* objective at x_adv on the attacked model (CE; targeted: -CE(t); Square: margin;
                                 APGD: its loss, the highest over runs; FAB: the smallest adversarial norm found,
                                 INFINITY when none) */
    int zero_grad;            /* the input gradient was all zero at the first step */
    int queries;              /* Square: model evaluations spent on this example */
    int success;              /* the attacked model misclassifies x_adv (targeted: predicts the target) */
} AttackExample;

/* Test hook: called after every step of every attack (PGD: the random start and each step, per
 * restart; FGSM: its one step; Square: the init and every iteration; APGD: the random start and each
 * step, per target and restart; FAB: each iteration, per target and restart) with the current iterate.
 * APGD and FAB attack only the examples still unbroken, packed: x and x_cur then hold those n rows (x is
 * their clean inputs, in the same order). FAB's iterates stay in [0,1] but may leave the eps-ball (see
 * the header). */
typedef void (*AttackStepHook)(void *ctx, const float *x, const float *x_cur, int n, int D, const AttackParams *p,
                               int step);

/* An attack objective: from the crafting model's outputs out (n, K) at the current iterate of the batch
 * whose first example has dataset index index0, writes loss (n) (the objective, maximised), ok (n)
 * (success) and, when dout is not NULL, dout (n, K) = d loss_i / d out_i. yt (n): the labels the loss is
 * taken on (set_targets: y, or the target class). ctx: the callback's own data. */
typedef void (*AttackObjectiveFn)(void *ctx, const AttackParams *p, const float *out, const int32_t *yt, int n, int K,
                                  long index0, float *loss, uint8_t *ok, float *dout);
/* Classification: CE(y), or -CE(t) when targeted, per-example scale 1; ok = misclassified / target hit. */
void attack_objective_ce(void *ctx, const AttackParams *p, const float *out, const int32_t *yt, int n, int K,
                         long index0, float *loss, uint8_t *ok, float *dout);
/* Hashing (see the header): ctx is a HashObjective. */
typedef struct HashObjective {
    const float *ref;         /* (N, K) reference codes in {-1,+1}, indexed by dataset index */
    long n;                   /* rows of ref */
} HashObjective;
void attack_objective_hash(void *ctx, const AttackParams *p, const float *out, const int32_t *yt, int n, int K,
                           long index0, float *loss, uint8_t *ok, float *dout);

/* Per-example state of an APGD or FAB run (one slot per example still attacked). */
typedef struct AttackSlot {
    int32_t ex;               /* row of the example in the attack's batch */
    int32_t y, t;             /* label, target class (APGD-T, FAB-T) */
    int32_t nincr;            /* APGD: steps since the last checkpoint that raised the loss */
    int32_t reduced;          /* APGD: the step size was halved at the last checkpoint */
    float eta;                /* APGD: step size */
    float lprev, lbest, lcheck; /* APGD: loss at the previous iterate, best loss, best loss at the last checkpoint */
    double res;               /* FAB: norm of the smallest adversarial found in this run (INFINITY: none) */
} AttackSlot;

typedef struct AttackScratch {
    int cap, D, K;
    long index0;              /* dataset index of the batch's first example: random streams are keyed
                                 by (seed, RNG_ATTACK, example index), so results do not depend on batch size */
    const long *index;        /* (cap) dataset index of each row when the batch is not contiguous (AutoAttack
                                 attacks the still-robust examples); NULL = index0 + row */
    AttackStepHook hook;      /* NULL = none */
    void *hook_ctx;
    AttackObjectiveFn objective; /* attack_objective_ce unless the caller sets another */
    void *objective_ctx;
    float *g, *gsum, *cur, *best, *dlogits; /* (cap, D) x4 then (cap, K) */
    float *xs, *prev, *gbest; /* (cap, D) APGD/FAB: packed clean inputs, previous iterate (FAB: d_k), gradient at
                                 the best point (FAB: d_0) */
    float *tile;              /* (H*W) Square L2: the window pattern */
    float *ptmp;              /* (3 D) FAB: the projection's scratch */
    float *loss, *best_loss;  /* (cap) */
    uint8_t *ok, *best_succ;  /* (cap) */
    int32_t *yt;              /* (cap) label the loss is taken on (y, or the target) */
    int32_t *active;          /* (cap) Square: examples still being attacked */
    int32_t *order;           /* (cap, K) APGD-T/FAB-T: classes other than y by decreasing clean logit */
    AttackSlot *slot;         /* (cap) APGD/FAB */
    Rng *rng;                 /* (cap) per-example streams */
} AttackScratch;
/* The dataset index of row i of the current batch. */
static inline long attack_index(const AttackScratch *s, int i) { return s->index ? s->index[i] : s->index0 + i; }
/* objective = attack_objective_ce, objective_ctx NULL. */
AttackScratch *attack_scratch_create(const Model *m, int cap);
void attack_scratch_free(AttackScratch *s);

/* Every attack: x (n, D) clean inputs in [0,1], y (n) labels; writes x_adv (n, D) and ex (n).
 * w must have capacity >= n; s sized for m with cap >= n. Returns 0 (attacks cannot fail at run time;
 * bad parameters are a bug: CHECK). */
typedef int (*AttackFn)(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p,
                        float *x_adv, AttackExample *ex, AttackScratch *s);
int attack_fgsm(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                AttackExample *ex, AttackScratch *s);
int attack_pgd(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
               AttackExample *ex, AttackScratch *s);
int attack_square(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                  AttackExample *ex, AttackScratch *s);
int attack_apgd(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
                AttackExample *ex, AttackScratch *s);
int attack_fab(Model *m, Work *w, const float *x, const int32_t *y, int n, const AttackParams *p, float *x_adv,
               AttackExample *ex, AttackScratch *s);

/* Pieces the attacks share (and the tests check against their definitions). */
/* The input gradient g (n, D) of the loss whose logit gradient is dout (n, K), at the point of the last
 * forward of m on w: through W (true, transfer), or through the rule's feedback with a fresh draw per
 * backward, averaged over p->eot draws. Uses s->gsum. */
void attack_input_grad(Model *m, Work *w, const float *dout, int n, const AttackParams *p, AttackScratch *s, float *g);
/* DLR loss of the logits z (K) for label y; t < 0: untargeted -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3 + 1e-12)
 * (K >= 3); t >= 0: targeted -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12) (K >= 4). dz (K, may be NULL):
 * its gradient (ties broken towards the lower index). Computed in double. */
double attack_dlr(const float *z, int K, int y, int t, float *dz);
/* APGD's checkpoints for `steps` iterations: the distinct w_j = ceil(p_j steps) in [1, steps], increasing,
 * into w (cap entries); returns how many. */
int apgd_checkpoints(int steps, int *w, int cap);
/* Square's p at iteration it (0-based, the init not counted): AutoAttack's piecewise schedule. */
double square_p_schedule(double p_init, int it);
/* The K-1 classes other than y by decreasing logit z (ties: the lower index first) into order (K-1):
 * the targets of APGD-T and FAB-T, in AutoAttack's order. */
void attack_rank_targets(const float *z, int K, int y, int32_t *order);
/* A random start on the sphere of radius eps around x (Linf: u uniform in [-1,1]^D scaled to max |u| = 1;
 * L2: a Gaussian direction), clipped to [0,1] (clipping only shortens the perturbation). */
void attack_sphere_start(const float *x, float *cur, int D, int norm, double eps, Rng *r);
/* FAB's box-constrained projection: the d of smallest norm (NORM_LINF or NORM_L2) with <w, d> = c and
 * 0 <= x + d <= 1 (coordinates with w = 0 stay); when no such d exists, the one that gets <w, d> closest to
 * c (every coordinate at its bound). tmp: 3 D floats of scratch. Returns the norm of d. */
double fab_project(const float *x, const float *w, double c, int D, int norm, float *d, float *tmp);

/* The table. `uses` says which AttackParams fields apply (AU_*), for usage text and for
 * rejecting options that would be silently ignored. */
enum { AU_STEPS = 1, AU_ALPHA = 2, AU_RESTARTS = 4, AU_RANDOM_START = 8, AU_GRAD = 16, AU_QUERIES = 32, AU_TARGET = 64,
       AU_TARGETS = 128, AU_VERSION = 256 };
typedef struct AttackInfo {
    const char *name;         /* CLI name: fgsm | pgd | pgd-l2 | square | square-l2 | apgd-ce | apgd-dlr | apgd-t |
                                 fab-t | autoattack (each L2 variant: -l2) | hash-untargeted | hash-targeted */
    int kind, norm;
    AttackFn fn;              /* NULL for autoattack (an evaluation: attack_evaluate_ex runs it) */
    unsigned uses;
    const char *desc;
    int objective;            /* OBJ_CE | OBJ_HASH: the task the attack applies to */
    int targeted;             /* OBJ_HASH entries: the targeted variant (the name carries it) */
    int loss;                 /* ATK_APGD: LOSS_* */
    int steps, queries;       /* defaults of AttackParams.steps / queries for this attack (0: not used) */
} AttackInfo;
extern const AttackInfo ATTACKS[];
extern const int N_ATTACKS;
const AttackInfo *attack_find(const char *name);             /* NULL if unknown */
const AttackInfo *attack_info(const AttackParams *p);        /* entry for p->kind / p->norm / p->loss */
/* Applies an entry to p: kind, norm, objective, loss (and the hashing variant's targeting). */
void attack_params_apply(AttackParams *p, const AttackInfo *ai);

/* Defaults: FGSM, Linf, objective OBJ_CE, eps 0, steps 10, restarts 1, random start, untargeted (target -1), true
 * gradient, eot 1, queries 1000, p_init 0.8 (AutoAttack's), seed 0, batch 256, loss CE, targets 9, version standard,
 * stage 0. */
void attack_params_default(AttackParams *p);
/* "8/255", "0.03", "1e-2" -> value in [0,1]. `what` names the option in messages ("--eps").
 * 0, or -1 with err_set ("--eps 8: outside [0,1] for [0,1] pixel data; did you mean 8/255?"). */
int attack_parse_eps(const char *what, const char *text, double *out);
/* Sets eps_text and eps. */
int attack_set_eps(AttackParams *p, const char *text);
/* Sets alpha_text (may be NULL or "" = default) and resolves p->alpha from p->eps and p->steps:
 * "" -> 2.5 eps / steps, "rX" -> X eps, else an absolute value in [0,1]. Call after eps and steps. */
int attack_set_alpha(AttackParams *p, const char *text);
/* "true" | "feedback" | "transfer:CKPT" -> grad_source (+ transfer_ckpt). */
int attack_set_grad(AttackParams *p, const char *text);
const char *attack_grad_name(int src);                       /* "true" | "feedback" | "transfer" */
/* Human name of an AttackParams: its table name ("fgsm", "pgd-l2", "apgd-t", "autoattack-l2", ...). */
const char *attack_name(const AttackParams *p);
/* The name recorded in the database's `attack` column (the norm has its own column): "fgsm", "pgd",
 * "square", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "autoattack", "autoattack-rand". A component row of
 * an AutoAttack run (stage >= 1) carries its component's name. */
const char *attack_record_name(const AttackParams *p);
/* "standard" | "rand" */
const char *attack_version_name(int version);
/* Refuses what cannot run on a model with K classes: the DLR losses need K >= 3 (targeted: K >= 4),
 * AutoAttack standard needs K >= 4 (APGD-T), rand K >= 3; targets >= 1; a hashing objective with an
 * attack that has none. 0, or -1 with err_set (one line naming the attack and the fix). */
int attack_check(const AttackParams *p, int K);

/* Content hash of every parameter and buffer (BN running statistics, normalisation constants). */
uint64_t attack_model_hash(const Model *m);

/* What attack_evaluate keeps for a grid: the first `cap` examples. */
typedef struct AttackKeep {
    int cap, n, D;
    float *x, *x_adv;         /* (cap, D) */
    int32_t *y, *pred_clean, *pred_adv; /* (cap) */
} AttackKeep;
void attack_keep_init(AttackKeep *k, int cap, int D);
void attack_keep_free(AttackKeep *k);

/* What an evaluation yields per attacked example (attack_evaluate_ex), in split order. For the lead's
 * per-example storage: which examples an attack breaks, and (AutoAttack) which component broke them. */
typedef struct AttackOutcome {
    int32_t index;            /* the example's index in the split */
    int32_t y;                /* its label */
    int32_t pred_clean;       /* target's prediction on the clean input */
    int32_t pred_adv;         /* target's prediction on the adversarial input kept */
    uint8_t clean_ok;         /* pred_clean == y */
    uint8_t robust_ok;        /* clean_ok and pred_adv == y */
    uint8_t zero_grad;        /* the crafting gradient was all zero at the first step */
    int8_t stage;             /* AutoAttack: component (1..n) whose adversarial broke it; 0 = not broken, or not
                                 an AutoAttack evaluation */
    float linf, l2;           /* norms of x_adv - x */
    float loss;               /* CE of the target at x_adv */
} AttackOutcome;

/* An AutoAttack evaluation's components, in order (attack_evaluate_ex). */
typedef struct AttackStages {
    int n;                            /* components run (0: not an AutoAttack evaluation) */
    AttackParams p[AA_MAX_STAGES];    /* each one's parameters (p[k].stage = k + 1) */
    EvalCounts c[AA_MAX_STAGES];      /* the ensemble's counts after it (cumulative; seconds: its own time) */
    long attacked[AA_MAX_STAGES];     /* examples it attacked (still robust before it) */
    long broke[AA_MAX_STAGES];        /* of those, how many it broke */
} AttackStages;

/* Evaluates attack p on the first `limit` examples of d (limit <= 0: all) against `target`.
 * crafter: the model the adversarials are crafted on (NULL = target; GRAD_TRANSFER passes the
 * surrogate, which is attacked with its true gradient). Clean and adversarial predictions, the mean
 * loss and flips are measured on target. keep (may be NULL) receives the first examples; hook (may
 * be NULL) sees every step. Checks (CHECK) that neither model's parameters or buffers changed.
 * Returns 0, or -1 with err_set when the data does not fit the model. */
int attack_evaluate(Model *target, Model *crafter, const Dataset *d, int limit, const AttackParams *p,
                    AttackStepHook hook, void *hook_ctx, AttackKeep *keep, EvalCounts *out);
/* The same, plus what each example did: per (N = the examples evaluated, may be NULL) in split order,
 * and for p->kind == ATK_AUTOATTACK, stages (may be NULL) gets each component's parameters and the
 * ensemble's counts after it. AutoAttack attacks only the examples the target classifies correctly, each
 * component only those no earlier component broke (judged on the target); an example's x_adv is the
 * adversarial of the component that broke it, else the last component's output. out is the ensemble's. */
int attack_evaluate_ex(Model *target, Model *crafter, const Dataset *d, int limit, const AttackParams *p,
                       AttackStepHook hook, void *hook_ctx, AttackKeep *keep, EvalCounts *out, AttackOutcome *per,
                       AttackStages *stages);
/* The components of AutoAttack p (p->version, p->norm, p->steps, p->restarts, p->targets, p->queries, p->eot)
 * into comp (AA_MAX_STAGES); returns how many. Standard: APGD-CE, APGD-T, FAB-T, Square; rand: APGD-CE,
 * APGD-DLR (eot as given; cmd_attack defaults it to 20). */
int autoattack_stages(const AttackParams *p, AttackParams *comp);

/* Hashing evaluation: attack p (p->objective == OBJ_HASH, FGSM or PGD) on the first `limit` queries of
 * q (limit <= 0: all) against `target`, a hashing model (tanh head, K = model_out_dim <= 64 bits).
 * db_codes (db->n): the target's clean database codes (model_codes), computed once by the caller for a
 * sweep. crafter: as in attack_evaluate (NULL = target); it supplies the reference codes (the query's
 * clean code on the crafter; targeted: the crafter's database class means, computed here when crafter
 * != target). Targets: class (y + 1 + u) mod C with u uniform in [0, C-2] from (seed, RNG_HASH, query
 * index), C = db->classes. Scores: h (mAP@topk, precision@HASH_PREC_N of clean and attacked queries
 * against db_codes, relevance = same label; targeted also with relevance = the target class) and c,
 * the classification-shaped counts the database stores for every eval: n queries, n_clean_ok = n,
 * n_robust_ok = queries the attack did not succeed on, n_flipped = queries whose code changed (any bit),
 * n_zero_grad, mean_linf/l2, mean_loss (the objective on the target). Checks (CHECK) that neither model
 * changed. Returns 0, or -1 with err_set when data, models or codes do not fit. */
int attack_hash_evaluate(Model *target, Model *crafter, const Dataset *q, const Dataset *db, const uint64_t *db_codes,
                         int limit, int topk, const AttackParams *p, AttackStepHook hook, void *hook_ctx,
                         EvalCounts *c, HashCounts *h);
/* The same, plus each query's average precision, clean and attacked, into ap_clean / ap_adv (the queries
 * evaluated; either may be NULL): the per-example outcomes of a hashing evaluation. */
int attack_hash_evaluate_ex(Model *target, Model *crafter, const Dataset *q, const Dataset *db, const uint64_t *db_codes,
                            int limit, int topk, const AttackParams *p, AttackStepHook hook, void *hook_ctx,
                            EvalCounts *c, HashCounts *h, float *ap_clean, float *ap_adv);

/* Progress of the evaluations run in this process, for a command line's display (NULL = none): fn is called
 * after every attacked batch with the attack and the examples done out of the current pass's total (an
 * AutoAttack component attacks only the examples still robust: one pass per component). It never changes a
 * result. */
typedef void (*AttackProgressFn)(void *ctx, const AttackParams *p, long done, long total);
void attack_progress_set(AttackProgressFn fn, void *ctx);

/* Writes an adversarial-example grid with png_write: a caption line on top (NULL = none; e.g. the attack,
 * eps and gradient source), then labelled rows clean / perturbation xK (amplified to the full grey range,
 * K = 1/(2 eps)) / adversarial; "Y <class>" and "P <class>" under clean images and "P <class>" under
 * adversarial ones, green when correct, red when wrong, with the dataset's class names (class_names NULL or
 * an empty name: the class number). 0, or -1 with err_set. */
int attack_grid_png(const char *path, const AttackKeep *k, int c, int h, int w, double eps, const char (*class_names)[32],
                    const char *caption);

#endif
