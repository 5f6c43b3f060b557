/* train.h -- the one trainer every rule feeds: SGD (momentum, weight decay, Nesterov) or Adam; constant,
 * step or cosine learning-rate schedules; seeded shuffling keyed by (seed, epoch); per-epoch loss,
 * accuracy, held-out accuracy and per-layer alignment metrics; NaN/Inf detection.
 * The trainer never looks at a rule's name: it refreshes feedback and runs the engine's backward.
 * Not for: choosing data or writing results (callers pass datasets and an epoch hook). */
#ifndef CONCORD_TRAIN_H
#define CONCORD_TRAIN_H
#include "datasets/dataset.h"
#include "harness/model.h"

enum { OPT_SGD, OPT_ADAM };
enum { TASK_CLASSIFY, TASK_HASH }; /* softmax cross-entropy, or DPSH on a tanh code layer (hash.h) */
enum { SCHED_CONST, SCHED_STEP, SCHED_COSINE };

typedef struct TrainOpts {
    int epochs, batch;
    double lr, momentum, weight_decay;
    int nesterov, optimizer, schedule;
    int step_size; double gamma;        /* step schedule: lr *= gamma every step_size epochs */
    double beta1, beta2, adam_eps;
    uint64_t seed;                      /* data seed: shuffling, dropout, augmentation */
    int augment;                        /* random crop (pad 4) + horizontal flip */
    int probe_n;                        /* alignment probe batch size (0 = off) */
    int quiet;
    int task;                           /* TASK_* */
    double hash_eta;                    /* DPSH quantisation weight */
    double max_loss;                    /* a batch loss above this is divergence (0 = only NaN/Inf) */
    /* progress display (the command line's; NULL = none): called after every batch with the epoch (0-based),
       the batches done in it and its batch count. Never changes what is trained. */
    void (*on_batch)(void *ctx, int epoch, long done, long nbatches);
    void *batch_ctx;
} TrainOpts;
void train_opts_default(TrainOpts *o);

#define MAX_ALIGN 64
typedef struct LayerAlign { char name[48]; double angle_bw, norm_ratio, grad_angle; } LayerAlign;
typedef struct EpochStats {
    int epoch, epochs;
    double lr, train_loss, train_acc, val_loss, val_acc, seconds, samples_per_s; /* hash task: train_acc NaN, val_acc = val mAP */
    int nalign;
    LayerAlign align[MAX_ALIGN];
} EpochStats;
/* Called after every epoch; returning -1 (with err_set) stops training with that error. */
typedef int (*EpochHook)(void *ctx, Model *m, const EpochStats *s);

/* Trains epochs [start_epoch, o->epochs). val may be NULL. Returns 0, or -1 with err_set (divergence
 * names the epoch, step and layer). */
int train_run(Model *m, const Dataset *train, const Dataset *val, const TrainOpts *o, int start_epoch,
              EpochHook hook, void *ctx);
/* Accuracy in inference mode; *loss (may be NULL) gets the mean loss. */
double evaluate(Model *m, const Dataset *d, int batch, double *loss);
/* Hashing: codes of every example of d (inference mode), packed as in hash.h. */
void model_codes(Model *m, const Dataset *d, int batch, uint64_t *codes);
/* Hashing: mAP@topk of queries q against database db (both encoded by m); prec gets precision@prec_n. */
double evaluate_map(Model *m, const Dataset *q, const Dataset *db, int topk, int prec_n, double *prec);
/* Alignment metrics of every linear/conv layer on the probe (n examples of d from index 0). */
int alignment_metrics(Model *m, Work *w, const Dataset *d, int n, int task, double eta, LayerAlign *out, float *scratch);
long alignment_scratch_n(const Model *m, int n);
/* angle between two vectors in degrees (NaN when either is zero) and the norm ratio |a| / |b| (NaN when
 * |b| = 0), accumulated in double */
double vec_angle_deg(const float *a, const float *b, long n);
double vec_norm_ratio(const float *a, const float *b, long n);
/* One optimiser step on m->grads (frozen layers untouched), split over w's threads (w NULL: this thread). */
void optimizer_step(Model *m, Work *w, const TrainOpts *o, double lr);
double lr_at(const TrainOpts *o, int epoch);
/* Copies examples idx[0..n) of d into x (n, D), augmenting when asked (keyed by seed/epoch/index). */
void batch_fill(const Dataset *d, const int *idx, int n, float *x, int32_t *y, int augment, uint64_t seed, int epoch);
#endif
