/* record.h -- what train/finetune write to the results database (results/db.h), in one place:
 * a run row at the start (status running), epoch and alignment rows after every epoch, and the end
 * (finished/failed, checkpoint and its hash, test accuracy). --no-db turns it off. */
#ifndef CONCORD_RECORD_H
#define CONCORD_RECORD_H
#include "datasets/dataset.h"
#include "harness/checkpoint.h"
#include "harness/cli/cli.h"
#include "harness/train.h"

typedef struct Recorder {
    void *db;          /* Db*, NULL when recording is off */
    long long run_id;
    char path[512];
    int quiet;         /* 1: no "results recorded" line (--quiet) */
} Recorder;

/* 0, -1 with err_set, or 1 when --job-key names a run that already finished (nothing to do). */
int record_begin(Recorder *r, const Args *a, const char *kind, const Model *m, const Dataset *train,
                 const TrainOpts *o, const CkptMeta *meta);
int record_epoch(Recorder *r, const EpochStats *s);
int record_end(Recorder *r, const char *status, const char *error, const char *ckpt, double test_acc);
void record_close(Recorder *r);
#endif
