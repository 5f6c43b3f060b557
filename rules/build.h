/* build.h -- models with their learning rule: built fresh from the model zoo (model_create) or rebuilt
 * from a checkpoint (ckpt_load). This sits above both the engine (which never calls rule code) and the
 * rule table: it builds the graph (harness/models.c), attaches the rule (rule_attach fills the engine's
 * feedback seam), finalizes the arena, and draws or reads the rule state.
 * Not for: the checkpoint format itself (harness/checkpoint.h) or the rules' maths (one file per rule family). */
#ifndef CONCORD_RULES_BUILD_H
#define CONCORD_RULES_BUILD_H
#include "harness/checkpoint.h"
#include "rules/rule.h"

/* Builds spec->arch with learning rule `rule` (NULL = bp; ro NULL = default options) attached to every
 * linear/conv layer, then finalizes and draws the rule state. Returns NULL with err_set on an unknown
 * arch or impossible shape. */
Model *model_create(const ModelSpec *spec, const Rule *rule, const RuleOpts *ro, uint64_t init_seed);

/* Rebuilds the model the checkpoint describes, with its own rule (rule/ro NULL) or another one
 * (finetune: rule state absent from the file is drawn fresh). With new_classes > 0 and different from
 * the stored count, the classifier is re-initialised for new_classes (finetune --new-head).
 * want_optim: also restore the optimiser state. */
Model *ckpt_load(const char *path, const Rule *rule, const RuleOpts *ro, int new_classes, int want_optim,
                 CkptMeta *meta_out);
/* Same, and head (NULL = keep) switches the output kind: "softmax" or "hash" (K-bit tanh code layer);
 * a different head or class count re-initialises the last linear layer. */
Model *ckpt_load_head(const char *path, const Rule *rule, const RuleOpts *ro, int new_classes, const char *head,
                      int want_optim, CkptMeta *meta_out);
#endif
