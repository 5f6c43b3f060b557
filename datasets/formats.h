/* formats.h -- private to datasets/: the in-memory parsers behind each loader, shared by the file
 * loaders, the tests and the libFuzzer targets (tests/fuzz/). Every parser validates its whole input
 * and either fills *out completely or returns -1 with err_set("<what>: <problem>; <fix>") and leaves
 * *out zeroed. `what` is the file name used in messages.
 * Not for: callers outside datasets/, tests and fuzzers (use dataset.h).
 */
#ifndef CONCORD_FORMATS_H
#define CONCORD_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/dataset.h"

/* Caps that keep a hostile header from asking for absurd memory: at most 2^30 pixel values per split
 * (4 GiB as float32) and 2^24 samples; an image side is at most 16384 pixels. */
#define DATASET_MAX_VALUES (1LL << 30)
#define DATASET_MAX_SAMPLES (1LL << 24)
#define DATASET_MAX_SIDE 16384
#define DATASET_MAX_CLASSES 100 /* = ARRAY_LEN(Dataset.class_names) */

/* Multiply a and b (both >= 0) into *out; -1 (no message) if the product exceeds lim. */
int mul_capped(int64_t a, int64_t b, int64_t lim, int64_t *out);

/* k/255 as float, for k in [0,255]: every loader converts bytes through this one table so a PNG export
 * read back gives bit-identical floats. */
extern const float *const byte_to_unit;
unsigned char unit_to_byte(float v); /* round(v*255), clamped to [0,255]; NaN -> 0 */

/* Zero *d and allocate x (n*c*h*w floats) and y (n labels). Sizes must already be checked. */
void dataset_alloc(Dataset *d, int n, int c, int h, int w, int classes);

/* Check that `path` names a readable regular file (one-line message otherwise: missing, a directory,
 * not readable). hint is appended to the "missing" message (e.g. "pass --data-dir DIR"). */
int file_check_readable(const char *path, const char *hint);
/* Read a whole regular file (at most max bytes) into a fresh buffer. */
int file_read_all(const char *path, size_t max, unsigned char **buf, size_t *len);

/* ---- IDX (MNIST family): big-endian magic 00 00 <type> <ndims>, ndims big-endian u32 dims, data ---- */
typedef struct IdxArray {
    int ndims;
    int64_t dims[4];
    int64_t count;              /* product of dims */
    const unsigned char *data;  /* (count) bytes, points into the parsed buffer */
} IdxArray;
/* Validate the header in buf[0..len) (len may be shorter than the whole file). Returns the header size
 * in bytes and fills a->ndims/dims/count (data = NULL), or -1 with a message. */
int idx_parse_header(const unsigned char *buf, size_t len, const char *what, IdxArray *a);
/* Validate a whole IDX file held in memory: header, then exactly `count` data bytes. */
int idx_parse_mem(const unsigned char *buf, size_t len, const char *what, IdxArray *a);
/* Read an IDX file, gzip-compressed or raw, validated; *buf owns the bytes a->data points into. */
int idx_read_file(const char *path, IdxArray *a, unsigned char **buf);
/* Pair an images array (N,H,W) with a labels array (N) into *out. label_offset is subtracted from
 * every label (EMNIST letters are 1-based); transpose swaps H and W (EMNIST is stored transposed). */
int idx_make_dataset(const IdxArray *img, const char *img_what, const IdxArray *lab, const char *lab_what,
                     int classes, int label_offset, int transpose, Dataset *out);

/* ---- CIFAR binary: records of <label bytes> + 3072 pixel bytes (R plane, G plane, B plane, 32x32) ---- */
enum { CIFAR_10 = 0, CIFAR_100_FINE = 1, CIFAR_100_COARSE = 2 };
/* Check a batch file's bytes: whole records, labels in range. Returns the record count or -1. */
long cifar_check_mem(const unsigned char *buf, size_t len, const char *what, int kind);
/* Convert `nrec` checked records into x (nrec*3072 floats) and y. */
void cifar_fill(const unsigned char *buf, long nrec, int kind, float *x, int32_t *y);
/* check + alloc + fill: one batch file as a whole dataset. */
int cifar_parse_mem(const unsigned char *buf, size_t len, const char *what, int kind, Dataset *out);

/* ---- PNG (libpng) ---- */
typedef struct PngImage {
    int w, h;
    int channels;        /* 1 (grey) or 3 (RGB): alpha is dropped, palette expanded, 16-bit scaled */
    unsigned char *pix;  /* (h, w, channels) row-major, interleaved; owned, free() it */
} PngImage;
/* Decode a PNG held in memory. libpng errors are caught (error callback + setjmp) and reported as
 * "<what>: corrupt PNG (<libpng message>); ...". */
int png_decode_mem(const unsigned char *buf, size_t len, const char *what, PngImage *img);
int png_read_file(const char *path, PngImage *img);

/* ---- PNG class folders ---- */
int pngdir_open(const char *dir, int split, Dataset *out);

/* ---- synthetic ---- */
/* spec: "" or ":N" or ":N:CxHxW" or ":N:CxHxW:K" (the text after "synthetic"). */
int synthetic_open(const char *spec, int split, Dataset *out);

#endif
