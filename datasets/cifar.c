/* cifar.c -- CIFAR-10 and CIFAR-100 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html).
 * CIFAR-10: records of 1 label byte + 3072 pixel bytes; CIFAR-100: coarse label byte, fine label byte,
 * 3072 pixel bytes. Pixels are the R plane, then G, then B, each 32x32 row-major: already CHW.
 */
#include <string.h>

#include "harness/core.h"
#include "datasets/formats.h"

enum { CIFAR_PIX = 3072 };

static int cifar_label_bytes(int kind) { return kind == CIFAR_10 ? 1 : 2; }
static int cifar_classes(int kind) { return kind == CIFAR_10 ? 10 : kind == CIFAR_100_FINE ? 100 : 20; }

long cifar_check_mem(const unsigned char *buf, size_t len, const char *what, int kind) {
    CHECK(kind == CIFAR_10 || kind == CIFAR_100_FINE || kind == CIFAR_100_COARSE);
    size_t rec = (size_t)cifar_label_bytes(kind) + CIFAR_PIX;
    const char *fmt = kind == CIFAR_10 ? "CIFAR-10" : "CIFAR-100";
    if (len == 0) return err_set("%s: empty file; re-download the %s binary version", what, fmt);
    if (len % rec != 0)
        return err_set("%s: truncated or not a %s binary batch: %zu bytes is not a whole number of %zu-byte "
                       "records (%zu bytes left over); re-download the %s binary version",
                       what, fmt, len, rec, len % rec, fmt);
    size_t nrec = len / rec;
    if (nrec > (size_t)DATASET_MAX_SAMPLES)
        return err_set("%s: %zu records is more than Concord's limit of %lld per split", what, nrec,
                       (long long)DATASET_MAX_SAMPLES);
    for (size_t i = 0; i < nrec; i++) {
        const unsigned char *r = buf + i * rec;
        /* CIFAR-100 records carry both labels: check both so a CIFAR-10 file is caught either way. */
        for (int b = 0; b < cifar_label_bytes(kind); b++) {
            int lim = kind == CIFAR_10 ? 10 : b == 0 ? 20 : 100;
            if (r[b] >= lim)
                return err_set("%s: %s label %d in record %zu is out of range 0..%d; this is not a %s binary "
                               "batch (CIFAR-10 and CIFAR-100 files are not interchangeable)",
                               what, kind == CIFAR_10 ? "class" : b == 0 ? "coarse" : "fine", r[b], i,
                               lim - 1, kind == CIFAR_10 ? "CIFAR-10" : "CIFAR-100");
        }
    }
    return (long)nrec;
}

void cifar_fill(const unsigned char *buf, long nrec, int kind, float *x, int32_t *y) {
    size_t lb = (size_t)cifar_label_bytes(kind), rec = lb + CIFAR_PIX;
    for (long i = 0; i < nrec; i++) {
        const unsigned char *r = buf + (size_t)i * rec;
        y[i] = kind == CIFAR_100_FINE ? r[1] : r[0];
        float *dst = x + (size_t)i * CIFAR_PIX;
        for (int j = 0; j < CIFAR_PIX; j++) dst[j] = byte_to_unit[r[lb + j]];
    }
}

int cifar_parse_mem(const unsigned char *buf, size_t len, const char *what, int kind, Dataset *out) {
    memset(out, 0, sizeof *out);
    long n = cifar_check_mem(buf, len, what, kind);
    if (n < 0) return -1;
    dataset_alloc(out, (int)n, 3, 32, 32, cifar_classes(kind));
    cifar_fill(buf, n, kind, out->x, out->y);
    return 0;
}
