/* checkpoint.h -- models as SQLite files (format: docs/checkpoint.md).
 *   meta(key TEXT PRIMARY KEY, value TEXT)           model spec, rule and options, epoch, seeds, parent...
 *   tensor(name TEXT PRIMARY KEY, shape TEXT, data BLOB)  little-endian float32, PyTorch layouts
 * Saving writes a temporary file and renames it: a crash never leaves half a checkpoint.
 * Loading validates everything and reports problems as one line naming the file. Rebuilding a model with
 * its learning rule from a checkpoint is ckpt_load (rules/build.h), above both the engine and the rules.
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
 * training counters (step, fb_count) and the `extra` meta; a key of extra that the model's own keys
 * already set is ignored (the live value wins). */
int ckpt_save(const char *path, const Model *m, const CkptMeta *extra);
/* Reads only the meta table. */
int ckpt_read_meta(const char *path, CkptMeta *out);
/* The model specification the meta describes (arch, input shape, classes, width, hidden, dropout, head);
 * -1 with err_set naming the file when a required key is missing or invalid or the arch is unknown. */
int ckpt_meta_spec(const CkptMeta *mt, const char *path, ModelSpec *s);
/* An integer meta value in [lo, hi]; -1 with err_set naming the file and key otherwise. */
int ckpt_meta_long(const CkptMeta *mt, const char *key, const char *path, long lo, long hi, long *v);
/* Fills every tensor of m that skip (NULL = none) does not exclude from the file: each must be present,
 * of the model's shape and size, and finite; -1 with err_set naming the file and tensor otherwise.
 * Building the model and choosing what to skip (a new head, another rule's state) is rules/build.h's. */
typedef int (*CkptSkipFn)(const Tensor *t, void *ctx);
int ckpt_read_tensors(const char *path, Model *m, CkptSkipFn skip, void *ctx);
#endif
