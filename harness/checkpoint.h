/* checkpoint.h -- models as SQLite files (format: docs/checkpoint.md).
 *   meta(key TEXT PRIMARY KEY, value TEXT)           model spec, rule and options, epoch, seeds, parent...
 *   tensor(name TEXT PRIMARY KEY, shape TEXT, data BLOB)  little-endian float32, PyTorch layouts
 * Saving writes a temporary file and renames it: a crash never leaves half a checkpoint.
 * Loading validates everything and reports problems as one line naming the file.
 */
#ifndef CONCORD_CHECKPOINT_H
#define CONCORD_CHECKPOINT_H
#include "harness/model.h"

#define CKPT_FORMAT "concord-checkpoint-1"
#define CKPT_MAX_META 48

typedef struct CkptMeta { int n; char key[CKPT_MAX_META][48]; char val[CKPT_MAX_META][512]; } CkptMeta;
void meta_set(CkptMeta *mt, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *meta_get(const CkptMeta *mt, const char *key); /* NULL when absent */

/* Saves every tensor of m (parameters, buffers, rule state, optimiser state) plus the spec, rule and
 * `extra` meta. */
int ckpt_save(const char *path, const Model *m, const CkptMeta *extra);
/* Reads only the meta table. */
int ckpt_read_meta(const char *path, CkptMeta *out);
/* Rebuilds the model the checkpoint describes, with its own rule (rule/ro NULL) or another one
 * (finetune: rule state absent from the file is drawn fresh). With new_classes > 0 and different from
 * the stored count, the classifier is re-initialised for new_classes (finetune --new-head).
 * want_optim: also restore the optimiser state. */
Model *ckpt_load(const char *path, const struct Rule *rule, const struct RuleOpts *ro, int new_classes,
                 int want_optim, CkptMeta *meta_out);
/* Same, and head (NULL = keep) switches the output kind: "softmax" or "hash" (K-bit tanh code layer);
 * a different head or class count re-initialises the last linear layer. */
Model *ckpt_load_head(const char *path, const struct Rule *rule, const struct RuleOpts *ro, int new_classes,
                      const char *head, int want_optim, CkptMeta *meta_out);
#endif
