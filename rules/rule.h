/* rule.h -- the learning-rule table. One rule = one way of building a layer's feedback matrix B.
 *
 * Every rule keeps the local weight gradient exact (dW = delta h^T); only the error sent DOWN differs
 * (paper-notes §2). A rule is a small struct of function pointers; NULL means "nothing to do":
 *   state_n  floats of persistent state a layer needs (FA's R, frSF's M, DFA's D), saved in checkpoints;
 *   init     draws that state once (rng stream keyed by rule seed and layer);
 *   refresh  rebuilds L->B from W and the state before a backward pass that uses feedback
 *            (uSF: s*sign(W) every step; brSF: fresh |M_t| * sign(W); frSF: |M| * sign(W)).
 * own_B: the rule needs a B buffer of its own (else B == W, or B == state for FA).
 * direct: DFA-style: the layer sends D e (output error projected straight down) to its input, with
 *         D = L->B shaped (D_in, K), instead of B^T delta.
 * The trainer and engine never branch on a rule's name. Adding a rule: one file + one table line.
 */
#ifndef CONCORD_RULE_H
#define CONCORD_RULE_H

#include "harness/model.h"

enum { USF_XAVIER, USF_HE_FANOUT, USF_NONE, USF_WSTD, USF_MEANABS, USF_SCALE_COUNT };
enum { MAG_UNIFORM, MAG_HALFNORMAL, MAG_COUNT };
enum { RESAMPLE_BATCH, RESAMPLE_FORWARD, RESAMPLE_COUNT };
extern const char *const USF_SCALE_NAMES[USF_SCALE_COUNT];
extern const char *const MAG_NAMES[MAG_COUNT];
extern const char *const RESAMPLE_NAMES[RESAMPLE_COUNT];

typedef struct RuleOpts {
    int usf_scale;      /* USF_* */
    int magnitude;      /* MAG_* (brsf, frsf) */
    int last_layer_bp;  /* exact BP in the classifier (Xiao et al.) */
    int resample;       /* RESAMPLE_* (brsf) */
    uint64_t seed;      /* rule seed, separate from data and init seeds */
} RuleOpts;

typedef struct RuleCtx {  /* what a rule may read while building feedback */
    const RuleOpts *o;
    int classes;
    Rng *rng;             /* a stream keyed by (seed, RNG_RULE, draw, layer) */
} RuleCtx;

typedef struct Rule {
    const char *name, *desc, *state;
    int own_B, direct;
    long (*state_n)(const Layer *L, int classes);
    void (*init)(Layer *L, const RuleCtx *c);
    void (*refresh)(Layer *L, const RuleCtx *c);
} Rule;

extern const Rule *const RULES[];
extern const int N_RULES;
const Rule *rule_find(const char *name); /* NULL if unknown */
int rule_opts_parse(RuleOpts *o, const char *key, const char *val); /* 0, or -1 with err_set */
void rule_opts_default(RuleOpts *o);
void rule_opts_format(const RuleOpts *o, char *out, size_t n);     /* canonical "k=v;k=v" text */
int rule_opts_from_text(RuleOpts *o, const char *text);            /* inverse of format */

/* Attach rule r (NULL = bp) to every linear/conv layer of m (bp for the last one when o->last_layer_bp):
 * fills the engine's seam (model.h: each layer's state and B sizes, direct, refresh; m->fb_rebuild).
 * Must be called before model_finalize (state sizes are part of the arena). */
void rule_attach(Model *m, const Rule *r, const RuleOpts *o);
/* Draw every layer's rule state (after model_finalize), then build every B. */
void rule_init_state(Model *m, const RuleOpts *o);

#endif
