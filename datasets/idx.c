/* idx.c -- IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST), gzip or raw, read through zlib.
 * Format (LeCun, http://yann.lecun.com/exdb/mnist/): magic 00 00 <type> <ndims> big-endian, then ndims
 * big-endian u32 sizes, then the data row-major. Concord reads type 0x08 (unsigned byte): images are
 * (N, H, W), labels (N).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "harness/core.h"
#include "datasets/formats.h"

static const char *idx_type_name(int t) {
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return NULL;
    }
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int idx_parse_header(const unsigned char *buf, size_t len, const char *what, IdxArray *a) {
    memset(a, 0, sizeof *a);
    if (len < 4)
        return err_set("%s: truncated: %zu bytes, too short for the 4-byte IDX magic; re-download the file",
                       what, len);
    if (buf[0] != 0 || buf[1] != 0) {
        /* A little-endian writer produces <ndims> <type> 00 00. */
        if (buf[2] == 0 && buf[3] == 0 && idx_type_name(buf[1]) && buf[0] >= 1 && buf[0] <= 4)
            return err_set("%s: byte-swapped IDX magic %02x %02x %02x %02x (written little-endian); "
                           "IDX headers are big-endian (00 00 %02x %02x): rewrite the file big-endian",
                           what, buf[0], buf[1], buf[2], buf[3], buf[1], buf[0]);
        return err_set("%s: not an IDX file (magic %02x %02x %02x %02x, expected 00 00 08 <ndims>); "
                       "check that this is an MNIST-format file", what, buf[0], buf[1], buf[2], buf[3]);
    }
    int type = buf[2], nd = buf[3];
    if (!idx_type_name(type))
        return err_set("%s: not an IDX file (unknown data type 0x%02x in the magic); check that this is an "
                       "MNIST-format file", what, type);
    if (type != 0x08)
        return err_set("%s: IDX data type 0x%02x (%s) is not supported; Concord reads unsigned-byte (0x08) "
                       "IDX files as in MNIST", what, type, idx_type_name(type));
    if (nd < 1 || nd > 4)
        return err_set("%s: IDX header has %d dimensions; expected 1 (labels) or 3 (images)", what, nd);
    size_t hdr = 4 + 4 * (size_t)nd;
    if (len < hdr)
        return err_set("%s: truncated: the IDX header needs %zu bytes but the file has %zu; re-download "
                       "the file", what, hdr, len);
    int64_t count = 1;
    for (int i = 0; i < nd; i++) {
        uint32_t d = be32(buf + 4 + 4 * i);
        a->dims[i] = d;
        if (mul_capped(count, d, DATASET_MAX_VALUES, &count) != 0)
            return err_set("%s: IDX dimensions are too large (dimension %d is %u; more than %lld values in "
                           "all); the header is corrupt or the file is not for Concord",
                           what, i, d, (long long)DATASET_MAX_VALUES);
    }
    a->ndims = nd;
    a->count = count;
    return (int)hdr;
}

static int dims_str(const IdxArray *a, char *s, size_t n) {
    size_t k = 0;
    for (int i = 0; i < a->ndims && k < n; i++)
        k += (size_t)snprintf(s + k, n - k, "%s%lld", i ? "x" : "", (long long)a->dims[i]);
    return 0;
}

static int idx_size_error(const IdxArray *a, const char *what, size_t have, int extra) {
    char d[96];
    dims_str(a, d, sizeof d);
    if (!extra)
        return err_set("%s: truncated: the header says %s = %lld data bytes but only %zu are present; "
                       "re-download the file", what, d, (long long)a->count, have);
    return err_set("%s: %zu bytes of unexpected data after the %lld bytes the header (%s) describes; the "
                   "header is wrong or the file is not an IDX file", what, have, (long long)a->count, d);
}

int idx_parse_mem(const unsigned char *buf, size_t len, const char *what, IdxArray *a) {
    int hdr = idx_parse_header(buf, len, what, a);
    if (hdr < 0) return -1;
    size_t have = len - (size_t)hdr;
    if ((uint64_t)have != (uint64_t)a->count) {
        int extra = (uint64_t)have > (uint64_t)a->count;
        IdxArray t = *a;
        memset(a, 0, sizeof *a);
        return idx_size_error(&t, what, extra ? have - (size_t)t.count : have, extra);
    }
    a->data = buf + hdr;
    return 0;
}

/* gzread in large chunks (gzread's length is an unsigned int). Returns bytes read or -1 on a zlib error. */
static int64_t gz_read_n(gzFile g, unsigned char *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > (1u << 30)) want = 1u << 30;
        int k = gzread(g, p + got, (unsigned)want);
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (int64_t)got;
}

static int gz_fail(gzFile g, const char *path) {
    int zerr = 0;
    const char *m = gzerror(g, &zerr);
    if (zerr == Z_ERRNO)
        return err_set("%s: read error: %s; check the file and the disk", path, strerror(errno));
    return err_set("%s: corrupt gzip data (%s); re-download the file", path, m && *m ? m : "zlib error");
}

int idx_read_file(const char *path, IdxArray *a, unsigned char **out) {
    memset(a, 0, sizeof *a);
    *out = NULL;
    if (file_check_readable(path, NULL) != 0) return -1;
    gzFile g = gzopen(path, "rb");
    if (!g) return err_set("%s: cannot open: %s; check its permissions", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(g, 1u << 18);
    unsigned char head[4 + 16];
    int rc = -1;
    unsigned char *buf = NULL;
    int64_t k = gz_read_n(g, head, 4);
    if (k < 0) { gz_fail(g, path); goto done; }
    if (k < 4) { idx_parse_header(head, (size_t)k, path, a); goto done; }
    size_t hdr = 4;
    if (head[0] == 0 && head[1] == 0 && head[3] >= 1 && head[3] <= 4) {
        int64_t m = gz_read_n(g, head + 4, 4 * (size_t)head[3]);
        if (m < 0) { gz_fail(g, path); goto done; }
        hdr += (size_t)m;
    }
    if (idx_parse_header(head, hdr, path, a) < 0) goto done;
    buf = xmalloc(hdr + (size_t)a->count);
    memcpy(buf, head, hdr);
    int64_t got = gz_read_n(g, buf + hdr, (size_t)a->count);
    if (got < 0) { gz_fail(g, path); goto done; }
    if (got < a->count) { idx_size_error(a, path, (size_t)got, 0); goto done; }
    unsigned char extra[4096];
    int64_t more = gz_read_n(g, extra, sizeof extra);
    if (more < 0) { gz_fail(g, path); goto done; }
    if (more > 0) {
        /* count the excess for the message, but stop after 1 MiB: a gzip bomb must not keep us busy */
        size_t total = (size_t)more;
        while (total < (1u << 20) && (more = gz_read_n(g, extra, sizeof extra)) > 0) total += (size_t)more;
        if (more < 0) { gz_fail(g, path); goto done; }
        if (total >= (1u << 20)) {
            char d[96];
            dims_str(a, d, sizeof d);
            err_set("%s: more than 1 MiB of unexpected data after the %lld bytes the header (%s) describes; the "
                    "header is wrong or the file is not an IDX file", path, (long long)a->count, d);
            goto done;
        }
        idx_size_error(a, path, total, 1);
        goto done;
    }
    if (idx_parse_mem(buf, hdr + (size_t)a->count, path, a) < 0) goto done;
    rc = 0;
done:
    gzclose(g);
    if (rc != 0) {
        free(buf);
        memset(a, 0, sizeof *a);
        return -1;
    }
    *out = buf;
    return 0;
}

int idx_make_dataset(const IdxArray *img, const char *img_what, const IdxArray *lab, const char *lab_what,
                     int classes, int label_offset, int transpose, Dataset *out) {
    memset(out, 0, sizeof *out);
    CHECK(classes >= 1 && classes <= DATASET_MAX_CLASSES);
    if (img->ndims != 3)
        return err_set("%s: an image file must have 3 dimensions (N, H, W) but this one has %d; did you "
                       "swap the images and labels files?", img_what, img->ndims);
    if (lab->ndims != 1)
        return err_set("%s: a labels file must have 1 dimension (N) but this one has %d; did you swap the "
                       "images and labels files?", lab_what, lab->ndims);
    int64_t n = img->dims[0], h = img->dims[1], w = img->dims[2];
    if (n < 1) return err_set("%s: the file holds no images; re-download it", img_what);
    if (n > DATASET_MAX_SAMPLES)
        return err_set("%s: %lld images is more than Concord's limit of %lld per split; split the file",
                       img_what, (long long)n, (long long)DATASET_MAX_SAMPLES);
    if (h < 1 || w < 1 || h > DATASET_MAX_SIDE || w > DATASET_MAX_SIDE)
        return err_set("%s: image size %lldx%lld is out of range (1..%d per side); the header is corrupt",
                       img_what, (long long)h, (long long)w, DATASET_MAX_SIDE);
    if (lab->dims[0] != n)
        return err_set("%s: %lld labels but %s has %lld images; use the labels file that belongs to these "
                       "images", lab_what, (long long)lab->dims[0], img_what, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        int v = (int)lab->data[i] - label_offset;
        if (v < 0 || v >= classes)
            return err_set("%s: label %d at index %lld is out of range %d..%d; the labels file does not "
                           "belong to this dataset", lab_what, lab->data[i], (long long)i, label_offset,
                           classes - 1 + label_offset);
    }
    dataset_alloc(out, (int)n, 1, (int)h, (int)w, classes);
    const unsigned char *src = img->data;
    size_t hw = (size_t)h * (size_t)w;
    for (int64_t i = 0; i < n; i++) {
        float *dst = out->x + (size_t)i * hw;
        const unsigned char *s = src + (size_t)i * hw;
        if (!transpose) {
            for (size_t j = 0; j < hw; j++) dst[j] = byte_to_unit[s[j]];
        } else { /* stored column-major: pixel (r, c) of the upright image is s[c*h + r] */
            for (int64_t r = 0; r < w; r++)
                for (int64_t c = 0; c < h; c++) dst[r * h + c] = byte_to_unit[s[c * w + r]];
        }
        out->y[i] = (int32_t)lab->data[i] - label_offset;
    }
    if (transpose) { out->h = (int)w; out->w = (int)h; }
    return 0;
}
