/* attack.h -- adversarial attacks: each is a function of a model, a batch and one parameter struct.
 * The same AttackParams struct is what gets printed and recorded in the results database.
 * Inputs live in [0,1]; attacks run the model in inference mode and compute only input gradients.
 * Definitions: shared/paper-notes.md §4.
 *
 *   FGSM      x' = clip01(x + eps * sign(g))                                  (Goodfellow et al. 2015)
 *   PGD-Linf  x0 = clip01(x + U(-eps,eps)) (random start), x_{k+1} = clip01(clip_[x-eps,x+eps](x_k + alpha sign g))
 *   PGD-L2    x0 = clip01(x + d), d uniform in the L2 ball; x_{k+1} = clip01(x + P_eps(x_k + alpha g/|g|_2 - x))
 *             (Madry et al. 2018). Default alpha = 2.5 eps / steps; "r0.25" means 0.25 eps.
 *             Restarts keep, per example, the first successful final iterate, else the highest loss.
 *   Square    score-based Linf attack on the margin loss (Andriushchenko et al. 2020): vertical-stripe
 *             init, then random squares of side sqrt(p h w) set to +-eps per channel, kept when they
 *             lower the margin; p halves on the paper's schedule; stops per example at success or at
 *             `queries` model evaluations (the init counts as one).
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
 *
 * Gradient sources (grad_source): GRAD_TRUE, the exact input gradient through W (BW_TRUE); GRAD_FEEDBACK,
 * through the model's own rule (model_refresh_feedback before every backward, so brSF redraws; `eot`
 * draws averaged per step); GRAD_TRANSFER: the caller crafts on a surrogate model with the true
 * gradient (attack_evaluate does this) and evaluates on the target. Square ignores grad_source.
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

enum { ATK_FGSM, ATK_PGD, ATK_SQUARE, ATK_KIND_COUNT };
enum { NORM_LINF, NORM_L2 };
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
    float loss;               /* objective at x_adv on the attacked model (CE; targeted: -CE(t); Square: margin) */
    int zero_grad;            /* the input gradient was all zero at the first step */
    int queries;              /* Square: model evaluations spent on this example */
    int success;              /* the attacked model misclassifies x_adv (targeted: predicts the target) */
} AttackExample;

/* Test hook: called after every step of every attack (PGD: the random start and each step, per
 * restart; FGSM: its one step; Square: the init and every iteration) with the current iterate. */
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

typedef struct AttackScratch {
    int cap, D, K;
    long index0;              /* dataset index of the batch's first example: random streams are keyed
                                 by (seed, RNG_ATTACK, example index), so results do not depend on batch size */
    AttackStepHook hook;      /* NULL = none */
    void *hook_ctx;
    AttackObjectiveFn objective; /* attack_objective_ce unless the caller sets another */
    void *objective_ctx;
    float *g, *gsum, *cur, *best, *dlogits; /* (cap, D) x4 then (cap, K) */
    float *loss, *best_loss;  /* (cap) */
    uint8_t *ok, *best_succ;  /* (cap) */
    int32_t *yt;              /* (cap) label the loss is taken on (y, or the target) */
    int32_t *active;          /* (cap) Square: examples still being attacked */
    Rng *rng;                 /* (cap) per-example streams */
} AttackScratch;
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

/* The table. `uses` says which AttackParams fields apply (AU_*), for usage text and for
 * rejecting options that would be silently ignored. */
enum { AU_STEPS = 1, AU_ALPHA = 2, AU_RESTARTS = 4, AU_RANDOM_START = 8, AU_GRAD = 16, AU_QUERIES = 32, AU_TARGET = 64 };
typedef struct AttackInfo {
    const char *name;         /* CLI name: fgsm | pgd | pgd-l2 | square | hash-untargeted | hash-targeted */
    int kind, norm;
    AttackFn fn;
    unsigned uses;
    const char *desc;
    int objective;            /* OBJ_CE | OBJ_HASH: the task the attack applies to */
    int targeted;             /* OBJ_HASH entries: the targeted variant (the name carries it) */
} AttackInfo;
extern const AttackInfo ATTACKS[];
extern const int N_ATTACKS;
const AttackInfo *attack_find(const char *name);             /* NULL if unknown */
const AttackInfo *attack_info(const AttackParams *p);        /* entry for p->kind / p->norm */

/* Defaults: FGSM, Linf, objective OBJ_CE, eps 0, steps 10, restarts 1, random start, untargeted (target -1), true
 * gradient, eot 1, queries 1000, p_init 0.05, seed 0, batch 256. */
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
/* Human name of an AttackParams: "fgsm", "pgd", "pgd-l2", "square", "hash-untargeted", "hash-targeted". */
const char *attack_name(const AttackParams *p);

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

/* Evaluates attack p on the first `limit` examples of d (limit <= 0: all) against `target`.
 * crafter: the model the adversarials are crafted on (NULL = target; GRAD_TRANSFER passes the
 * surrogate, which is attacked with its true gradient). Clean and adversarial predictions, the mean
 * loss and flips are measured on target. keep (may be NULL) receives the first examples; hook (may
 * be NULL) sees every step. Checks (CHECK) that neither model's parameters or buffers changed.
 * Returns 0, or -1 with err_set when the data does not fit the model. */
int attack_evaluate(Model *target, Model *crafter, const Dataset *d, int limit, const AttackParams *p,
                    AttackStepHook hook, void *hook_ctx, AttackKeep *keep, EvalCounts *out);

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

/* Writes an adversarial-example grid (rows: clean, perturbation amplified to the full grey range,
 * adversarial; "y<label> p<pred>" under clean images and "p<pred>" under adversarial ones, green when
 * correct, red when wrong) with png_write. 0, or -1 with err_set. */
int attack_grid_png(const char *path, const AttackKeep *k, int c, int h, int w, double eps);

#endif
