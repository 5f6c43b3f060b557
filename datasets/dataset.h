/* dataset.h -- one interface for every data format Concord reads.
 *
 * A Dataset is a whole split held in memory as float32 pixels in [0,1], NCHW per sample, and int32
 * labels in [0, classes). Loaders validate everything before returning: on any problem they return -1
 * with err_set("<file>: <problem>; <fix>") and leave *out empty (nothing half-loaded).
 * Not for: shuffling, batching or augmentation (harness/train.c batch_fill), normalisation (the model's first layer).
 */
#ifndef CONCORD_DATASET_H
#define CONCORD_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct Dataset {
    char name[64];              /* "fashion-mnist", "cifar10", "png:DIR", "synthetic" ... */
    char source[512];           /* files or directory it came from */
    int n, c, h, w, classes;
    float *x;                   /* (n, c, h, w) in [0,1] */
    int32_t *y;                 /* (n) */
    char class_names[100][32];  /* optional, "" when unknown */
} Dataset;

enum { SPLIT_TRAIN = 0, SPLIT_TEST = 1 };

/* name: fashion-mnist | mnist | emnist-<sub> | kmnist | cifar10 | cifar100 | cifar100-coarse |
 *       png:DIR (DIR/<class>/<file>.png; DIR/train and DIR/test when present) |
 *       synthetic[:N[:CxHxW[:K]]] (built in, no files; default 2000 samples of 1x28x28, 10 classes)
 * data_dir: NULL for the default location of that dataset (/usr/share/datasets/<fashion-mnist|mnist|
 *   kmnist|emnist|cifar10|cifar100>); IDX files may be .gz or raw; CIFAR files may sit in the archive's
 *   own sub-folder (cifar-10-batches-bin, cifar-100-binary). EMNIST images are transposed upright and
 *   emnist-letters labels shifted to 0..25.
 * png:DIR: classes are the sorted sub-folder names; only *.png files count (other files and hidden
 *   entries are ignored); samples are ordered by class, then file name; the first image decides the
 *   channels (grey or grey+alpha -> 1, else 3) and the others are converted to it; alpha is dropped,
 *   16-bit scaled to 8, palettes expanded; all images must have the same size. */
int dataset_open(const char *name, const char *data_dir, int split, Dataset *out);
/* Every dataset name dataset_open knows, as the commands' --help lists them. */
#define DATASET_NAMES "fashion-mnist | mnist | kmnist | emnist-balanced | emnist-byclass | emnist-bymerge | emnist-digits | " \
                      "emnist-letters | emnist-mnist | cifar10 | cifar100 | cifar100-coarse | png:DIR | synthetic[:N[:CxHxW[:K]]]"

/* A class subset (the paper's protocol: pre-train on some classes, fine-tune on others). list: classes
 * and ranges, "0-4", "5,6,7,8,9", "0-2,7", in the order that relabels them 0..k-1 (at least 2, each
 * existing, none twice). Keeps the examples of those classes in their order, relabels them, keeps their
 * class names, and names the dataset "NAME[CANON]" (CANON: the list with runs written a-b), so runs on
 * a subset never group with runs on the whole set. -1 with err_set on a bad list. */
int dataset_select_classes(Dataset *d, const char *list);
/* dataset_open then, when classes is not NULL or "", dataset_select_classes. */
int dataset_open_classes(const char *name, const char *data_dir, const char *classes, int split, Dataset *out);
/* Parses a class list (as above) for a dataset of `classes` classes (0 = unknown: only syntax and
 * duplicates are checked): sel gets the classes in order, canon the canonical text. 0 or -1 (err_set). */
int dataset_classes_parse(const char *list, int classes, int *sel, int *nsel, char *canon, size_t ncanon);
void dataset_close(Dataset *d);
int dataset_dim(const Dataset *d); /* c*h*w */

/* Seeded, stratification-free split of `src` into train (first) and validation (n_val samples).
 * The permutation comes from rng stream (seed, RNG_SPLIT, 0). Both outputs own their memory. */
void dataset_split(const Dataset *src, int n_val, uint64_t seed, Dataset *train, Dataset *val);
/* Per-channel mean and std over the whole dataset (double accumulation). */
void dataset_channel_stats(const Dataset *d, float *mean /* (c) */, float *std /* (c) */);

/* Write d as a PNG class-folder tree that dataset_open("png:DIR") reads back bit for bit:
 * DIR/<split>/<class>/<index>.png, split "train" or "test"; <class> is the zero-padded label plus the
 * class name ("03_dress") so folder order is label order; <index> is the zero-padded sample index.
 * At most `limit` samples (limit <= 0: all). Needs c == 1 or 3. Written into a temporary directory that
 * is renamed to DIR/<split> when complete; an existing DIR/<split> is an error (never overwritten). */
int dataset_export_png(const Dataset *d, const char *dir, int split, int limit);
/* "train" / "test" -> SPLIT_*, else -1 (no message). */
int dataset_split_parse(const char *s);

#endif
